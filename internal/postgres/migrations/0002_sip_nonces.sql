-- The PostgreSQL twin of internal/sqlite/migrations/0002_sip_nonces.sql.
-- SIP digest authentication (internal/sip/digest). Nonces are signed with a
-- key every node shares, and each one is accepted once: sip_nonces remembers
-- the used ones until they expire. Times are microseconds since the epoch.

CREATE TABLE sip_settings (
    name  TEXT  COLLATE "C" PRIMARY KEY,
    value BYTEA NOT NULL
);

CREATE TABLE sip_nonces (
    nonce      TEXT   COLLATE "C" PRIMARY KEY,
    expires_at BIGINT NOT NULL
);
CREATE INDEX sip_nonces_expiry ON sip_nonces (expires_at);
