-- Custom object definitions, workflows and their runs (see src/objects/ and src/workflows/).
-- Portable SQL: TEXT ids, BIGINT epoch milliseconds, JSON as TEXT, BIGINT 0/1 booleans.

-- The current definition of each object kind of a tenant (the kind namespace is the tenant's,
-- as for records), owned by the installation that provisioned it. `spec` is the JSON of the
-- manifest's ObjectSpec; `version` is bumped on every change.
CREATE TABLE object_definitions (
    tenant_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    installation_id TEXT NOT NULL,
    version BIGINT NOT NULL,
    spec TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, kind)
);

-- Every version of every definition, append-only (`spec` NULL: the kind was removed).
CREATE TABLE object_definition_versions (
    tenant_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    version BIGINT NOT NULL,
    installation_id TEXT NOT NULL,
    spec TEXT,
    breaking BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, kind, version)
);

-- A fresh random stamp per tenant whenever its definitions or workflows change: compiled
-- catalogs are cached in memory under the stamp, so a write reads one row to know whether
-- its cache is current (and a tenant without a row has nothing to compute).
CREATE TABLE object_catalog_stamps (
    tenant_id TEXT PRIMARY KEY,
    stamp TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- Workflows, per installation. A workflow dropped from the manifest is disabled, not deleted,
-- so its runs keep their definition. `locator` is the JSON pointer into a webhook payload
-- that names the record the event is about.
CREATE TABLE workflows (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    installation_id TEXT NOT NULL,
    name TEXT NOT NULL,
    version BIGINT NOT NULL,
    spec TEXT NOT NULL,
    trigger_type TEXT NOT NULL,
    trigger_key TEXT NOT NULL,
    locator TEXT,
    enabled BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (installation_id, name)
);

CREATE INDEX workflows_by_tenant ON workflows (tenant_id, enabled);

-- One row per trigger: a webhook delivery or a record condition's false-to-true transition.
-- UNIQUE (workflow_id, delivery_id) is what makes a delivery trigger a workflow at most once.
-- `payload` keeps the triggering event, so a failed run can be retried without it.
CREATE TABLE workflow_runs (
    id TEXT PRIMARY KEY,
    workflow_id TEXT NOT NULL REFERENCES workflows (id),
    workflow_name TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    installation_id TEXT NOT NULL,
    trigger_type TEXT NOT NULL,
    trigger_key TEXT NOT NULL,
    delivery_id TEXT NOT NULL,
    subject_kind TEXT,
    subject_id TEXT,
    payload TEXT NOT NULL,
    depth BIGINT NOT NULL,
    status TEXT NOT NULL,
    error TEXT,
    attempts BIGINT NOT NULL,
    log TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    finished_at BIGINT,
    UNIQUE (workflow_id, delivery_id)
);

CREATE INDEX workflow_runs_by_tenant ON workflow_runs (tenant_id, created_at);
CREATE INDEX workflow_runs_by_status ON workflow_runs (tenant_id, status);

-- Whether a record-condition workflow's condition held at the record's last write, and how
-- many times it went from false to true (the transition number is the run's delivery id).
CREATE TABLE workflow_condition_states (
    workflow_id TEXT NOT NULL REFERENCES workflows (id),
    external_id TEXT NOT NULL,
    holds BIGINT NOT NULL,
    transitions BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (workflow_id, external_id)
);
