-- The PostgreSQL twin of internal/sqlite/migrations/0007_call_slots.sql.
-- A tenant's limit of calls at once (tenants[].sip.maxCalls) across every
-- node: a call matched under a limit of N holds one of the tenant's slots
-- 0..N-1, and no two ONGOING transfers of a tenant hold the same slot.
-- A slot frees itself when its transfer leaves ONGOING, whatever moves it
-- (the call's end, a takeover, the backstop sweep). NULL: matched without
-- a limit.
ALTER TABLE transfers ADD COLUMN call_slot INTEGER;
CREATE UNIQUE INDEX transfers_call_slot ON transfers (tenant_id, call_slot)
    WHERE status = 'ONGOING' AND call_slot IS NOT NULL;
