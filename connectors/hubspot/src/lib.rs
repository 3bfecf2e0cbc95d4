//! # HubSpot Contact Sync
//!
//! The reference connector for `oauth2`, an `updated_at` watermark, bidirectional sync and the
//! `newest_wins` conflict policy. Each sync **pulls, then pushes**:
//!
//! 1. **Pull** ([`pull`]): contacts changed since the watermark minus the lookback, through
//!    HubSpot's search API in windows on `lastmodifieddate` — a fresh search per page, opened at
//!    the last timestamp reached, so HubSpot's 10,000-results-per-search cap never bites and
//!    contacts edited during the read cannot hide others; more contacts on one timestamp than
//!    fit a page are read by `hs_object_id`. The watermark is committed as each window
//!    completes. Contacts with a pending platform-side edit are checked for conflicts on the
//!    way in. Then the archived list tombstones deleted contacts.
//! 2. **Push** ([`push`]): platform-side edits not yet acknowledged, through the batch update
//!    and create endpoints (at most 100 per call); created contacts take their HubSpot ids.
//!
//! **Conflicts.** A contact changed on both sides since the last sync is decided by the
//! manifest's policy ([`ivory_sdk::conflict`]): `newest_wins` compares HubSpot's
//! `lastmodifieddate` with the time of the platform edit, to the millisecond, and **a tie goes
//! to HubSpot**, always. The policy comes from the manifest through the context, so the same
//! code runs `source_wins` and `platform_wins` too. Counts per outcome land on the sync run.
//!
//! **Rate.** All I/O goes through the context's paced fetcher at the manifest's 240 requests
//! per minute, evenly spaced (251 ms apart): 4 a second against search's 5/s, so it takes a
//! quarter of a second of network bunching to reach a sixth in one second (at 300/min, 5 ms
//! would), and about 40 in any 10 s against a public app's 110. A 429 is waited out (HubSpot
//! sends no `Retry-After` on search: backoff) and retried; nothing is lost.
//!
//! **Auth.** The tenant's OAuth grant; the platform refreshes it (before expiry, and once on a
//! 401) at the current token endpoint, `https://api.hubapi.com/oauth/v3/token` (v1 is
//! deprecated).

pub mod contact;
pub mod pull;
pub mod push;

use std::sync::OnceLock;

use ivory_sdk::manifest::{Manifest, ValidationMode};
use ivory_sdk::{Connector, Context, Error, SyncResult};

pub use contact::{CONTACT_KIND, PROPERTIES, READ_ONLY, parse_time, writable_properties};

/// The connector's manifest, as shipped.
pub const MANIFEST_JSON: &str = include_str!("../manifest.json");
/// HubSpot's largest search page.
pub const MAX_SEARCH_PAGE: u32 = 200;

/// The parsed manifest.
pub fn manifest() -> &'static Manifest {
    static MANIFEST: OnceLock<Manifest> = OnceLock::new();
    MANIFEST.get_or_init(
        || match Manifest::parse(MANIFEST_JSON, ValidationMode::Production) {
            Ok(manifest) => manifest,
            Err(error) => panic!("the shipped HubSpot manifest must be valid: {error}"),
        },
    )
}

/// The HubSpot connector.
#[derive(Debug, Clone)]
pub struct HubSpotConnector {
    /// Contacts per search page (HubSpot allows 1–200).
    pub search_page_size: u32,
    /// Inputs per batch call (HubSpot allows 1–100).
    pub batch_size: usize,
}

impl Default for HubSpotConnector {
    fn default() -> Self {
        Self {
            search_page_size: MAX_SEARCH_PAGE,
            batch_size: push::MAX_BATCH,
        }
    }
}

impl Connector for HubSpotConnector {
    async fn sync(&self, ctx: &mut Context) -> Result<SyncResult, Error> {
        let mut notes = Vec::new();
        pull::pull(ctx, self.search_page_size.clamp(1, MAX_SEARCH_PAGE)).await?;
        pull::reflect_archived(ctx).await?;
        push::push(ctx, self.batch_size, &mut notes).await?;
        let conflicts = ctx.conflicts();
        if conflicts.total() > 0 {
            notes.push(format!(
                "{} contact(s) changed on both sides ({}): HubSpot's version kept for {}, the platform's for {} ({} tie(s), decided for HubSpot)",
                conflicts.total(),
                ctx.conflict_policy().as_str(),
                conflicts.source_wins,
                conflicts.platform_wins,
                conflicts.ties
            ));
        }
        Ok(SyncResult { notes })
    }
}
