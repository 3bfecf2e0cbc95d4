-- Foundation schema. Portable SQL (SQLite and PostgreSQL): TEXT ids, BIGINT epoch
-- milliseconds, JSON stored as TEXT.

CREATE TABLE tenants (
    id TEXT PRIMARY KEY,
    created_at BIGINT NOT NULL
);

CREATE TABLE installations (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    connector_id TEXT NOT NULL,
    connector_version TEXT NOT NULL,
    manifest TEXT NOT NULL,
    settings TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (tenant_id, connector_id)
);

-- Opaque for now; the credentials vault encrypts the payload per installation.
CREATE TABLE credentials (
    installation_id TEXT PRIMARY KEY REFERENCES installations (id),
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    version BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- One committed cursor per installation (JSON of ivory_sdk::Cursor).
CREATE TABLE cursors (
    installation_id TEXT PRIMARY KEY REFERENCES installations (id),
    cursor TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- Records are keyed by tenant first: a query that forgets the tenant cannot use the key.
CREATE TABLE records (
    tenant_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    external_id TEXT NOT NULL,
    installation_id TEXT NOT NULL,
    data TEXT NOT NULL,
    source_updated_at BIGINT,
    platform_updated_at BIGINT,
    synced_at BIGINT NOT NULL,
    version BIGINT NOT NULL,
    deleted_at BIGINT,
    PRIMARY KEY (tenant_id, kind, external_id)
);

CREATE TABLE sync_runs (
    id TEXT PRIMARY KEY,
    installation_id TEXT NOT NULL REFERENCES installations (id),
    tenant_id TEXT NOT NULL,
    status TEXT NOT NULL,
    full_refresh BIGINT NOT NULL,
    started_at BIGINT NOT NULL,
    finished_at BIGINT,
    records_created BIGINT NOT NULL DEFAULT 0,
    records_updated BIGINT NOT NULL DEFAULT 0,
    records_unchanged BIGINT NOT NULL DEFAULT 0,
    records_deleted BIGINT NOT NULL DEFAULT 0,
    pages BIGINT NOT NULL DEFAULT 0,
    requests BIGINT NOT NULL DEFAULT 0,
    retries BIGINT NOT NULL DEFAULT 0,
    responses_429 BIGINT NOT NULL DEFAULT 0,
    slept_ms BIGINT NOT NULL DEFAULT 0,
    cursor TEXT,
    error TEXT
);

CREATE INDEX sync_runs_by_installation ON sync_runs (installation_id, started_at);

-- At most one running sync per installation: a lease with a fencing check on every commit.
CREATE TABLE sync_locks (
    installation_id TEXT PRIMARY KEY REFERENCES installations (id),
    run_id TEXT NOT NULL,
    holder TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
