-- The marketplace registry: publishers (token hashes only), certification reports submitted
-- by `ivory certify`, and listings, each tied to the passing report of exactly its manifest
-- and source.

CREATE TABLE publishers (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    token_hash TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);

CREATE TABLE certification_reports (
    id TEXT PRIMARY KEY,
    publisher_id TEXT NOT NULL REFERENCES publishers (id),
    connector_id TEXT NOT NULL,
    version TEXT NOT NULL,
    manifest_digest TEXT NOT NULL,
    source_digest TEXT NOT NULL,
    passed BIGINT NOT NULL,
    report TEXT NOT NULL,
    submitted_at BIGINT NOT NULL
);

CREATE INDEX certification_reports_by_digest
    ON certification_reports (connector_id, version, manifest_digest, source_digest);

CREATE TABLE listings (
    connector_id TEXT NOT NULL,
    version TEXT NOT NULL,
    publisher_id TEXT NOT NULL REFERENCES publishers (id),
    manifest TEXT NOT NULL,
    manifest_digest TEXT NOT NULL,
    source_digest TEXT NOT NULL,
    report_id TEXT NOT NULL REFERENCES certification_reports (id),
    published_at BIGINT NOT NULL,
    PRIMARY KEY (connector_id, version)
);
