-- The persisted webhook replay cache: one row per accepted delivery per installation, until
-- its replay window closes. Shared by every `ivory serve` process on the same store.
CREATE TABLE webhook_replays (
    installation_id TEXT NOT NULL,
    replay_key TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (installation_id, replay_key)
);

CREATE INDEX webhook_replays_by_expiry ON webhook_replays (expires_at);
