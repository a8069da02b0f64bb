-- The PostgreSQL twin of internal/sqlite/migrations/0006_nodes.sql.
-- Node leases (DESIGN.md "Multi-node"): each node holds one row, renewed by
-- its heartbeat; epoch grows at every start under the same id, and rows are
-- never deleted, so an epoch is never handed out twice. Unlike every other
-- time in the schema, lease times are the database's own clock
-- (clock_timestamp()), never a node's, so nodes whose clocks disagree still
-- agree on whose lease is current: they are timestamptz.
CREATE TABLE nodes (
    id          TEXT        COLLATE "C" PRIMARY KEY,
    epoch       BIGINT      NOT NULL,
    acquired_at TIMESTAMPTZ NOT NULL,
    renewed_at  TIMESTAMPTZ NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL,
    released_at TIMESTAMPTZ            -- NULL unless released on a clean exit
);

-- The lease of the node that took a transfer's call: '' and 0 until it is
-- matched, and for calls matched without a lease (before this migration,
-- or by a node running without one), which the maxCallDuration backstop
-- completes. Constant defaults: adding them rewrites no row.
ALTER TABLE transfers ADD COLUMN owner_node TEXT NOT NULL DEFAULT '';
ALTER TABLE transfers ADD COLUMN owner_epoch BIGINT NOT NULL DEFAULT 0;
