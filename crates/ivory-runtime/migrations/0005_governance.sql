-- Install governance: what each installation's admin consented to, its webhook secret, and
-- the transactional outbox through which every audit event leaves (PLATFORM.md §1).

ALTER TABLE installations ADD COLUMN consent TEXT;
ALTER TABLE installations ADD COLUMN webhook_secret TEXT;
ALTER TABLE installations ADD COLUMN webhook_secret_source TEXT;

-- Rows are only ever inserted (and later marked sent by the relay): the audit trail is
-- append-only. `payload` is the platform's audit envelope (JSON).
CREATE TABLE outbox (
    id TEXT PRIMARY KEY,
    topic TEXT NOT NULL,
    event_type TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    sent_at BIGINT
);

CREATE INDEX outbox_pending ON outbox (sent_at, created_at);
CREATE INDEX outbox_by_tenant ON outbox (tenant_id, created_at);
