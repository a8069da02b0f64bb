-- Node leases (DESIGN.md "Multi-node"): each node holds one row, renewed by
-- its heartbeat; epoch grows at every start under the same id, and rows are
-- never deleted, so an epoch is never handed out twice. Times are
-- microseconds since the Unix epoch on the node's clock: a SQLite store
-- serves one node.
CREATE TABLE nodes (
    id          TEXT    PRIMARY KEY,
    epoch       INTEGER NOT NULL,
    acquired_at INTEGER NOT NULL,
    renewed_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    released_at INTEGER NOT NULL DEFAULT 0  -- 0 unless released on a clean exit
) WITHOUT ROWID;

-- The lease of the node that took a transfer's call: '' and 0 until it is
-- matched, and for calls matched without a lease (before this migration,
-- or by a node running without one), which the maxCallDuration backstop
-- completes.
ALTER TABLE transfers ADD COLUMN owner_node TEXT NOT NULL DEFAULT '';
ALTER TABLE transfers ADD COLUMN owner_epoch INTEGER NOT NULL DEFAULT 0;
