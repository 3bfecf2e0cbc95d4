//! The marketplace registry: publishers authenticate with a token (only its SHA-256 is
//! stored), `ivory certify` submits reports, and a listing is published only with a
//! **passing** report, submitted by the same publisher, whose digests match exactly the
//! manifest and the connector source being published. Change one byte of the source after
//! certifying and publishing is refused.
//!
//! Digests: the manifest's is SHA-256 over its canonical JSON (parsed, then serialized with
//! the schema's field order, so formatting does not matter); the source's is SHA-256 over the
//! sorted list of `(relative path, SHA-256 of the file)` of every file under the connector's
//! directory, skipping `target/`, `.git/` and `node_modules/`.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ivory_sdk::Secret;
use ivory_sdk::manifest::Manifest;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::Row;

use crate::store::audit::{Actor, AuditAction, AuditEvent, emit};
use crate::store::{Store, StoreError, from_ms, query_error, to_ms};

/// The tenant id under which marketplace audit events are recorded.
pub const MARKETPLACE_TENANT: &str = "marketplace";

/// One check of a certification report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckResult {
    /// The check's name (`requests per minute`, `secret scan`, …).
    pub name: String,
    /// Whether it passed.
    pub passed: bool,
    /// What was measured or found.
    pub evidence: String,
}

/// A certification report, as `ivory certify` produces it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificationReport {
    /// The connector id.
    pub connector_id: String,
    /// Its version.
    pub version: String,
    /// [`manifest_digest`] of the certified manifest.
    pub manifest_digest: String,
    /// [`source_digest`] of the certified source tree.
    pub source_digest: String,
    /// True when every check passed.
    pub passed: bool,
    /// The checks.
    pub checks: Vec<CheckResult>,
    /// When it was produced.
    pub generated_at: Timestamp,
}

/// A publisher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publisher {
    /// Id (`pub_…`).
    pub id: String,
    /// Name.
    pub name: String,
}

/// A published listing.
#[derive(Debug, Clone, PartialEq)]
pub struct Listing {
    /// The connector id.
    pub connector_id: String,
    /// The version.
    pub version: String,
    /// The manifest.
    pub manifest: Manifest,
    /// The publisher.
    pub publisher_id: String,
    /// The report it was published with.
    pub report_id: String,
    /// When.
    pub published_at: Timestamp,
}

/// Why publishing was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// The token matches no publisher.
    #[error("the publisher token is not known to the marketplace")]
    UnknownToken,
    /// No passing report of this publisher matches these digests.
    #[error(
        "no passing certification report of {connector_id} {version} matches this manifest ({manifest_digest}) and source ({source_digest}); run `ivory certify` on exactly what you publish"
    )]
    NotCertified {
        /// The connector.
        connector_id: String,
        /// The version.
        version: String,
        /// The digest of the manifest being published.
        manifest_digest: String,
        /// The digest of the source being published.
        source_digest: String,
    },
    /// This version is already listed (versions are immutable).
    #[error("{connector_id} {version} is already published; publish a new version")]
    AlreadyPublished {
        /// The connector.
        connector_id: String,
        /// The version.
        version: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The digest of a manifest: `sha256:` + hex over its canonical JSON.
pub fn manifest_digest(manifest: &Manifest) -> Result<String, StoreError> {
    let json = serde_json::to_vec(manifest).map_err(|e| StoreError::Invalid {
        what: "manifest",
        message: e.to_string(),
    })?;
    Ok(format!("sha256:{}", sha256_hex(&json)))
}

/// The digest of a connector's source tree rooted at `dir`.
pub fn source_digest(dir: &Path) -> std::io::Result<String> {
    let mut files = Vec::new();
    collect(dir, dir, &mut files)?;
    files.sort();
    let mut hasher = Sha256::new();
    for (path, digest) in files {
        hasher.update(path.as_bytes());
        hasher.update([0]);
        hasher.update(digest.as_bytes());
        hasher.update([b'\n']);
    }
    Ok(format!("sha256:{}", hex::encode(hasher.finalize())))
}

fn collect(root: &Path, dir: &Path, files: &mut Vec<(String, String)>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let kind = entry.file_type()?;
        if kind.is_dir() {
            if matches!(name.as_ref(), "target" | ".git" | "node_modules") {
                continue;
            }
            collect(root, &entry.path(), files)?;
        } else if kind.is_file() {
            let path = entry.path();
            let relative = path
                .strip_prefix(root)
                .unwrap_or(&path)
                .to_string_lossy()
                .replace('\\', "/");
            files.push((relative, sha256_hex(&std::fs::read(&path)?)));
        }
    }
    Ok(())
}

fn token_hash(token: &str) -> String {
    sha256_hex(token.as_bytes())
}

impl Store {
    /// Registers a publisher and returns its token (shown once; only its hash is kept).
    pub async fn create_publisher(
        &self,
        name: &str,
        now: Timestamp,
    ) -> Result<(Publisher, Secret), StoreError> {
        if name.trim().is_empty() {
            return Err(StoreError::Invalid {
                what: "publisher name",
                message: "must not be empty".into(),
            });
        }
        let id = format!("pub_{}", uuid::Uuid::now_v7().simple());
        let token = Secret::new(format!(
            "ivp_{}",
            URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
        ));
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO publishers (id, name, token_hash, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(&id)
        .bind(name)
        .bind(token_hash(token.expose()))
        .bind(to_ms(now))
        .execute(&mut *tx)
        .await
        .map_err(|e| match &e {
            sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Invalid {
                what: "publisher name",
                message: format!("{name:?} is taken"),
            },
            _ => query_error("create publisher")(e),
        })?;
        emit(
            &mut tx,
            &AuditEvent::new(
                MARKETPLACE_TENANT,
                &Actor::Agent("ivory-cli".into()),
                AuditAction::Create,
                "publisher",
                Some(&id),
                now,
            ),
        )
        .await?;
        tx.commit().await.map_err(query_error("commit"))?;
        Ok((
            Publisher {
                id,
                name: name.to_owned(),
            },
            token,
        ))
    }

    /// The publisher a token belongs to.
    pub async fn publisher_for_token(
        &self,
        token: &Secret,
    ) -> Result<Option<Publisher>, StoreError> {
        let row = sqlx::query("SELECT id, name FROM publishers WHERE token_hash = $1")
            .bind(token_hash(token.expose()))
            .fetch_optional(self.pool())
            .await
            .map_err(query_error("find publisher"))?;
        row.map(|row| {
            Ok(Publisher {
                id: row.try_get("id").map_err(query_error("read publisher"))?,
                name: row.try_get("name").map_err(query_error("read publisher"))?,
            })
        })
        .transpose()
    }

    /// Stores a report submitted by `publisher`; returns its id.
    pub async fn submit_report(
        &self,
        publisher: &Publisher,
        report: &CertificationReport,
        now: Timestamp,
    ) -> Result<String, StoreError> {
        let id = format!("rep_{}", uuid::Uuid::now_v7().simple());
        let json = serde_json::to_string(report).map_err(|e| StoreError::Invalid {
            what: "report",
            message: e.to_string(),
        })?;
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO certification_reports (id, publisher_id, connector_id, version, manifest_digest, \
             source_digest, passed, report, submitted_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&id)
        .bind(&publisher.id)
        .bind(&report.connector_id)
        .bind(&report.version)
        .bind(&report.manifest_digest)
        .bind(&report.source_digest)
        .bind(i64::from(report.passed))
        .bind(json)
        .bind(to_ms(now))
        .execute(&mut *tx)
        .await
        .map_err(query_error("store report"))?;
        emit(
            &mut tx,
            &AuditEvent::new(MARKETPLACE_TENANT, &Actor::Agent(publisher.id.clone()), AuditAction::Create, "certification_report", Some(&id), now)
                .with_diff(serde_json::json!({"after": {"connector": report.connector_id, "version": report.version, "passed": report.passed}})),
        )
        .await?;
        tx.commit().await.map_err(query_error("commit"))?;
        Ok(id)
    }

    /// Publishes `manifest` (whose source tree has `source_digest`) for the token's publisher.
    pub async fn publish(
        &self,
        token: &Secret,
        manifest: &Manifest,
        source_digest: &str,
        now: Timestamp,
    ) -> Result<Listing, PublishError> {
        let publisher = self
            .publisher_for_token(token)
            .await?
            .ok_or(PublishError::UnknownToken)?;
        let manifest_digest = manifest_digest(manifest)?;
        let report_id: Option<String> = sqlx::query_scalar(
            "SELECT id FROM certification_reports WHERE publisher_id = $1 AND connector_id = $2 \
             AND version = $3 AND manifest_digest = $4 AND source_digest = $5 AND passed = 1 \
             ORDER BY submitted_at DESC LIMIT 1",
        )
        .bind(&publisher.id)
        .bind(&manifest.id)
        .bind(&manifest.version)
        .bind(&manifest_digest)
        .bind(source_digest)
        .fetch_optional(self.pool())
        .await
        .map_err(query_error("find report"))?;
        let Some(report_id) = report_id else {
            return Err(PublishError::NotCertified {
                connector_id: manifest.id.clone(),
                version: manifest.version.clone(),
                manifest_digest,
                source_digest: source_digest.to_owned(),
            });
        };
        let manifest_json = serde_json::to_string(manifest).map_err(|e| StoreError::Invalid {
            what: "manifest",
            message: e.to_string(),
        })?;
        let mut tx = self.begin_write().await?;
        let inserted = sqlx::query(
            "INSERT INTO listings (connector_id, version, publisher_id, manifest, manifest_digest, \
             source_digest, report_id, published_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (connector_id, version) DO NOTHING",
        )
        .bind(&manifest.id)
        .bind(&manifest.version)
        .bind(&publisher.id)
        .bind(manifest_json)
        .bind(&manifest_digest)
        .bind(source_digest)
        .bind(&report_id)
        .bind(to_ms(now))
        .execute(&mut *tx)
        .await
        .map_err(query_error("publish"))?;
        if inserted.rows_affected() != 1 {
            return Err(PublishError::AlreadyPublished {
                connector_id: manifest.id.clone(),
                version: manifest.version.clone(),
            });
        }
        emit(
            &mut tx,
            &AuditEvent::new(MARKETPLACE_TENANT, &Actor::Agent(publisher.id.clone()), AuditAction::Create, "listing", Some(&format!("{}@{}", manifest.id, manifest.version)), now)
                .with_diff(serde_json::json!({"after": {"report": report_id, "manifest_digest": manifest_digest, "source_digest": source_digest}})),
        )
        .await?;
        tx.commit().await.map_err(query_error("commit"))?;
        Ok(Listing {
            connector_id: manifest.id.clone(),
            version: manifest.version.clone(),
            manifest: manifest.clone(),
            publisher_id: publisher.id,
            report_id,
            published_at: now,
        })
    }

    /// The newest published version of a listing.
    pub async fn latest_listing(&self, connector_id: &str) -> Result<Option<Listing>, StoreError> {
        let rows = sqlx::query(
            "SELECT connector_id, version, publisher_id, manifest, report_id, published_at FROM listings WHERE connector_id = $1",
        )
        .bind(connector_id)
        .fetch_all(self.pool())
        .await
        .map_err(query_error("read listings"))?;
        let mut best: Option<(semver::Version, Listing)> = None;
        for row in rows {
            let read = query_error("read listing");
            let version: String = row.try_get("version").map_err(read)?;
            let manifest: String = row.try_get("manifest").map_err(read)?;
            let listing = Listing {
                connector_id: row.try_get("connector_id").map_err(read)?,
                version: version.clone(),
                manifest: serde_json::from_str(&manifest).map_err(|e| StoreError::Corrupt {
                    what: "listing manifest",
                    message: e.to_string(),
                })?,
                publisher_id: row.try_get("publisher_id").map_err(read)?,
                report_id: row.try_get("report_id").map_err(read)?,
                published_at: from_ms(row.try_get("published_at").map_err(read)?)?,
            };
            let parsed = semver::Version::parse(&version).unwrap_or(semver::Version::new(0, 0, 0));
            if best.as_ref().is_none_or(|(v, _)| parsed > *v) {
                best = Some((parsed, listing));
            }
        }
        Ok(best.map(|(_, listing)| listing))
    }
}
