-- SIP digest authentication (internal/sip/digest). Nonces are signed with a
-- key every node shares, and each one is accepted once: sip_nonces remembers
-- the used ones until they expire. Times are microseconds since the epoch.

CREATE TABLE sip_settings (
    name  TEXT PRIMARY KEY,
    value BLOB NOT NULL
);

CREATE TABLE sip_nonces (
    nonce      TEXT    PRIMARY KEY,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX sip_nonces_expiry ON sip_nonces (expires_at);
