-- OAuth: pending authorizations (state -> tenant + installation, the sealed PKCE verifier),
-- a cross-process refresh claim on each credential row, and why an installation is not active.

CREATE TABLE oauth_states (
    state_hash TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    installation_id TEXT NOT NULL REFERENCES installations (id),
    pkce_verifier TEXT,
    redirect_uri TEXT NOT NULL,
    token_url TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);

CREATE INDEX oauth_states_by_expiry ON oauth_states (expires_at);

ALTER TABLE credentials ADD COLUMN refresh_claim_until BIGINT;

ALTER TABLE installations ADD COLUMN status_reason TEXT;
