-- Full passes (see src/store/full_pass.rs): a connector that lists every record of a kind
-- (an upstream without a deletion feed) brackets the listing with begin/end. The ids the pass
-- sees are remembered here, in the store rather than in the connector's memory, until the pass
-- ends; then the installation's live records of that kind that the pass did not see are
-- tombstoned and the pass's rows are deleted. A pass that never ends deletes nothing; the next
-- pass of the same installation and kind replaces it.
CREATE TABLE full_passes (
    pass_id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    installation_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    run_id TEXT,
    started_at BIGINT NOT NULL,
    UNIQUE (installation_id, kind)
);

CREATE TABLE full_pass_seen (
    pass_id TEXT NOT NULL,
    external_id TEXT NOT NULL,
    PRIMARY KEY (pass_id, external_id)
);
