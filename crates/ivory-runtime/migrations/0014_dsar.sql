-- DSAR erasure suppressions (PLATFORM.md §2): what an erasure removed must not come back with
-- the next sync. A row matches upserted records either by one record (`id:<kind>:<external id>`)
-- or by a contact's email (`email:<sha256 hex of tenant ':' lowercased email>`, never the email
-- itself). `mode` is the erasure's: `delete` skips matching upserts, `anonymize` stores them with
-- their personal fields stripped (financial kinds are always anonymized, whatever the mode).
CREATE TABLE dsar_suppressions (
    tenant_id TEXT NOT NULL,
    match_key TEXT NOT NULL,
    mode TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, match_key)
);
