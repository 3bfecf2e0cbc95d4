-- Every verified webhook delivery, stored before it is answered 2xx. The same upstream event
-- (a legitimate retry, re-signed) is stored once per installation.
CREATE TABLE webhook_deliveries (
    id TEXT PRIMARY KEY,
    installation_id TEXT NOT NULL REFERENCES installations (id),
    tenant_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    event_type TEXT,
    payload TEXT NOT NULL,
    status TEXT NOT NULL,
    error TEXT,
    received_at BIGINT NOT NULL,
    UNIQUE (installation_id, event_id)
);
