-- Outbound sync (see src/store/outbound.rs). Portable SQL: TEXT ids, BIGINT epoch ms.

-- Which platform-side edit of each record has been dealt with: pushed upstream, or superseded
-- by the upstream's version under the conflict policy. A record is *pending* while its
-- `platform_updated_at` is newer than its `acked_platform_at` (or it has no row here). Per
-- record rather than one "last push" timestamp per installation: an edit stamped before a push
-- read the store but committed after it would fall behind such a watermark and be lost.
CREATE TABLE outbound_acks (
    tenant_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    external_id TEXT NOT NULL,
    installation_id TEXT NOT NULL,
    acked_platform_at BIGINT NOT NULL,
    disposition TEXT NOT NULL,
    acked_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, kind, external_id)
);

-- Pending changes are found by their edit time; synced records (never edited on the platform)
-- stay out of this index.
CREATE INDEX records_platform_edits ON records (tenant_id, kind, platform_updated_at)
    WHERE platform_updated_at IS NOT NULL;

-- What each sync run did in the outbound direction, and its conflicts per outcome.
ALTER TABLE sync_runs ADD COLUMN conflicts_source_wins BIGINT NOT NULL DEFAULT 0;
ALTER TABLE sync_runs ADD COLUMN conflicts_platform_wins BIGINT NOT NULL DEFAULT 0;
ALTER TABLE sync_runs ADD COLUMN conflicts_ties BIGINT NOT NULL DEFAULT 0;
ALTER TABLE sync_runs ADD COLUMN outbound_pushed BIGINT NOT NULL DEFAULT 0;
ALTER TABLE sync_runs ADD COLUMN outbound_created BIGINT NOT NULL DEFAULT 0;
ALTER TABLE sync_runs ADD COLUMN outbound_superseded BIGINT NOT NULL DEFAULT 0;
