-- Times are microseconds since the Unix epoch, UTC; 0 means "never".

CREATE TABLE transfers (
    tenant_id                TEXT    NOT NULL,
    id                       TEXT    NOT NULL,
    external_conversation_id TEXT    NOT NULL,
    type                     TEXT    NOT NULL,
    status                   TEXT    NOT NULL,
    input_context            TEXT,            -- JSON, NULL when absent
    output_context           TEXT,            -- JSON, NULL until completed
    country                  TEXT    NOT NULL DEFAULT '',
    transfer_number          TEXT,            -- leased E.164, PHONE_NUMBER only
    return_uri               TEXT    NOT NULL DEFAULT '',
    return_transfer_type     TEXT    NOT NULL DEFAULT '',
    return_auth_username     TEXT    NOT NULL DEFAULT '',
    return_auth_password     TEXT    NOT NULL DEFAULT '',
    created_at               INTEGER NOT NULL,
    expires_at               INTEGER NOT NULL,
    call_received_at         INTEGER NOT NULL DEFAULT 0,
    completed_at             INTEGER NOT NULL DEFAULT 0,
    number_released_at       INTEGER NOT NULL DEFAULT 0,  -- when it left ACTIVE, releasing its number
    request_hash             TEXT    NOT NULL,
    PRIMARY KEY (tenant_id, id)
) WITHOUT ROWID;  -- rows live in the primary key's b-tree: one b-tree fewer per insert

-- Invariant 1, enforced by the database too: a number is held by at most one ACTIVE transfer.
CREATE UNIQUE INDEX transfers_active_number ON transfers (transfer_number)
    WHERE status = 'ACTIVE' AND transfer_number IS NOT NULL;
CREATE INDEX transfers_active_expiry ON transfers (expires_at) WHERE status = 'ACTIVE';
CREATE INDEX transfers_newest ON transfers (tenant_id, created_at DESC, id DESC);
CREATE INDEX transfers_conversation ON transfers (tenant_id, external_conversation_id, created_at DESC, id DESC);

CREATE TABLE numbers (
    e164             TEXT    PRIMARY KEY,
    country          TEXT    NOT NULL,
    tenant_id        TEXT    NOT NULL DEFAULT '',   -- '' shared by all tenants
    leased_tenant    TEXT,                          -- NULL when not leased
    leased_transfer  TEXT,
    leased_until     INTEGER NOT NULL DEFAULT 0,
    released_at      INTEGER NOT NULL DEFAULT 0,
    quarantine_until INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX numbers_lease_order ON numbers (country, tenant_id, released_at);

CREATE TABLE api_keys (
    id          TEXT    PRIMARY KEY,
    tenant_id   TEXT    NOT NULL,
    name        TEXT    NOT NULL DEFAULT '',
    secret_hash BLOB    NOT NULL,
    scopes      TEXT    NOT NULL DEFAULT '',       -- space separated
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX api_keys_tenant ON api_keys (tenant_id, created_at);
