-- Conversations (DESIGN.md invariant 7): the transfers of a tenant that
-- share an external_conversation_id are the legs of one conversation, which
-- also keeps the agent's state and a log of events. Times are microseconds
-- since the Unix epoch, UTC.

-- How a completed transfer's hand-back went: JSON, NULL until known.
ALTER TABLE transfers ADD COLUMN return_result TEXT;

-- A conversation has at most one leg ONGOING; matching a leg looks for
-- another one here. Rows stay in it only while their call is live.
CREATE INDEX transfers_live_leg ON transfers (tenant_id, external_conversation_id)
    WHERE status = 'ONGOING';

CREATE TABLE conversations (
    tenant_id   TEXT    NOT NULL,
    external_id TEXT    NOT NULL,
    state       TEXT,                        -- the agent's JSON, NULL until it saves one
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    next_seq    INTEGER NOT NULL DEFAULT 0,  -- seq of the next event
    PRIMARY KEY (tenant_id, external_id)
) WITHOUT ROWID;

-- Events in the order they were recorded: seq, not at, orders them, so
-- events with equal timestamps keep their order.
CREATE TABLE conversation_events (
    tenant_id   TEXT    NOT NULL,
    external_id TEXT    NOT NULL,
    seq         INTEGER NOT NULL,
    at          INTEGER NOT NULL,
    transfer_id TEXT    NOT NULL DEFAULT '',
    type        TEXT    NOT NULL,
    data        TEXT,                        -- JSON object of strings, NULL when none
    PRIMARY KEY (tenant_id, external_id, seq)
) WITHOUT ROWID;
