//! Inbound: contacts changed since the watermark, read through the search API in windows, with
//! conflicts against pending platform-side edits resolved as they arrive; then deletions.
//!
//! ## Windows
//! A *window* is one search: `lastmodifieddate >= t` (or `> t`), sorted by `lastmodifieddate`
//! ascending, one page of up to 200 contacts. When the page is full, the window closes at the
//! last timestamp reached and the next one opens there ([`next_window`]); the contacts at that
//! timestamp are read again and recognised by id, never skipped. After each window the
//! watermark is committed ([`Context::complete_window`]): every contact modified before the last
//! timestamp reached is stored by then, so a crash re-reads at most the window in flight.
//!
//! ## Why every page is a new search (the 10,000-result cap, and drift)
//! HubSpot refuses to page one search past 10,000 results, and the usual workaround is to close
//! the window at the last timestamp reached and reopen it there. We apply it at every page
//! rather than every 10,000 results, because paging *within* a search is by offset (`after` is
//! an integer) over a live index: a contact edited while we page leaves its place and moves to
//! the end, everything after it moves up by one, and the contact that moved into the page
//! already read is never returned. A fresh search per page is keyed on the timestamp, which
//! nothing can move backwards, so the read is exact whatever happens upstream meanwhile, and
//! the cap is never reached. The cost is re-reading the contacts that share the last timestamp
//! of a page (usually one).
//!
//! ## More contacts on one timestamp than fit a page
//! A full page whose contacts all carry the window's opening timestamp cannot advance the
//! window. That timestamp is then *split* (upstreams.md 2.4): `lastmodifieddate = t` and
//! `hs_object_id > last id`, sorted by `hs_object_id`, page after page, each again a fresh
//! search (keyset, not offset). Then the window reopens *after* `t`. Ten thousand contacts
//! imported at the same millisecond are read 200 at a time like any others.
//!
//! ## The lookback
//! HubSpot's search index shows a change a few moments after it is made; a change that lands in
//! the index after we read past its timestamp would be missed. Each sync therefore starts at the
//! committed watermark minus the manifest's `lookbackSeconds` ([`Context::watermark`]); what it
//! re-reads is absorbed by idempotent upserts.
//!
//! ## Conflicts
//! For each page, the pending platform-side edits of its contacts are looked up. A contact with
//! a pending edit whose HubSpot version is not newer than the one stored keeps the edit (it is
//! pushed later). One changed on both sides is decided by [`Context::resolve_conflict`]: when
//! HubSpot's version wins, the edit is acknowledged as superseded *before* the upstream version
//! is upserted (a crash in between re-pulls the window, and the upsert happens then); when the
//! platform's wins, the upstream version is not stored and the edit is pushed.
//!
//! ## Deletions
//! Search never returns archived contacts. The archived list (`GET
//! /crm/v3/objects/contacts?archived=true`, opaque `after`) is read after the windows and every
//! contact in it is tombstoned (a no-op for those already tombstoned). HubSpot keeps archived
//! contacts restorable for 90 days, which bounds that list; a restored contact comes back
//! through search with a new `lastmodifieddate`, and its upsert clears the tombstone.

use std::collections::{HashMap, HashSet};
use std::pin::pin;

use futures::TryStreamExt;
use ivory_sdk::conflict::Outcome;
use ivory_sdk::context::{Disposition, OutboundCommit, PlatformChange};
use ivory_sdk::pagination::{PageLimits, hubspot_list};
use ivory_sdk::{Context, Error};
use jiff::Timestamp;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::contact::{CONTACT_KIND, Contact, PROPERTIES};

/// The search endpoint.
pub const SEARCH_PATH: &str = "/crm/v3/objects/contacts/search";
/// The list endpoint (archived contacts).
pub const LIST_PATH: &str = "/crm/v3/objects/contacts";

/// Where a window opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lower {
    /// `lastmodifieddate >= t`.
    From(Timestamp),
    /// `lastmodifieddate > t` (after a split timestamp has been read).
    After(Timestamp),
}

/// What to do after a window's page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// The page was not full: everything is read.
    Done,
    /// Open the next window here.
    Reopen(Lower),
    /// A full page at the window's opening timestamp: read that timestamp by `hs_object_id`.
    SplitTie(Timestamp),
    /// The upstream returned a page that does not advance (not sorted as asked).
    Stuck,
}

/// Decides the next window from the current one and its page (pure). `last` is the
/// `lastmodifieddate` of the page's last contact.
pub fn next_window(
    lower: Option<Lower>,
    page_len: usize,
    page_size: usize,
    last: Option<Timestamp>,
) -> Next {
    if page_len < page_size {
        return Next::Done;
    }
    let Some(last) = last else {
        return Next::Stuck;
    };
    match lower {
        None => Next::Reopen(Lower::From(last)),
        Some(Lower::From(t)) if last == t => Next::SplitTie(t),
        Some(Lower::From(t) | Lower::After(t)) if last > t => Next::Reopen(Lower::From(last)),
        Some(_) => Next::Stuck,
    }
}

/// The search body of a window (pure).
pub fn window_query(lower: Option<Lower>, page_size: u32) -> Value {
    let filter_groups = match lower {
        None => json!([]),
        Some(Lower::From(t)) => json!([{"filters": [
            {"propertyName": "lastmodifieddate", "operator": "GTE", "value": t.as_millisecond().to_string()}
        ]}]),
        Some(Lower::After(t)) => json!([{"filters": [
            {"propertyName": "lastmodifieddate", "operator": "GT", "value": t.as_millisecond().to_string()}
        ]}]),
    };
    json!({
        "filterGroups": filter_groups,
        "sorts": [{"propertyName": "lastmodifieddate", "direction": "ASCENDING"}],
        "properties": PROPERTIES,
        "limit": page_size,
    })
}

/// The search body of one page of a split timestamp (pure).
pub fn tie_query(at: Timestamp, after_id: Option<u64>, page_size: u32) -> Value {
    let mut filters = vec![json!(
        {"propertyName": "lastmodifieddate", "operator": "EQ", "value": at.as_millisecond().to_string()}
    )];
    if let Some(id) = after_id {
        filters.push(
            json!({"propertyName": "hs_object_id", "operator": "GT", "value": id.to_string()}),
        );
    }
    json!({
        "filterGroups": [{"filters": filters}],
        "sorts": [{"propertyName": "hs_object_id", "direction": "ASCENDING"}],
        "properties": PROPERTIES,
        "limit": page_size,
    })
}

/// The contacts already handled at the newest timestamp reached, so that the next window, which
/// opens at that timestamp, does not handle them twice (nor count their conflicts twice). At
/// most a page of ids.
#[derive(Debug, Default)]
pub(crate) struct Boundary {
    at: Option<Timestamp>,
    ids: HashSet<String>,
}

impl Boundary {
    fn seen(&self, id: &str, at: Timestamp) -> bool {
        self.at == Some(at) && self.ids.contains(id)
    }

    fn note(&mut self, id: &str, at: Timestamp) {
        if self.at.is_none_or(|current| at > current) {
            self.at = Some(at);
            self.ids.clear();
        }
        if self.at == Some(at) {
            self.ids.insert(id.to_owned());
        }
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct SearchPage {
    #[serde(default)]
    pub(crate) results: Vec<Contact>,
}

/// One search request, paced like every request, retried like a read.
pub(crate) async fn search(ctx: &Context, body: &Value) -> Result<SearchPage, Error> {
    let page: SearchPage = ctx
        .post(SEARCH_PATH)
        .json(body)
        .retry_safe()
        .send()
        .await?
        .json()?;
    ctx.fetcher().count_page();
    Ok(page)
}

/// Reads every contact changed since the watermark (see the module doc).
pub(crate) async fn pull(ctx: &mut Context, page_size: u32) -> Result<(), Error> {
    let size = usize::try_from(page_size).unwrap_or(usize::MAX);
    let mut lower = ctx.watermark().map(Lower::From);
    let mut boundary = Boundary::default();
    loop {
        let page = search(ctx, &window_query(lower, page_size)).await?;
        let len = page.results.len();
        let last = page.results.last().map(Contact::modified).transpose()?;
        accept(ctx, page.results, &mut boundary, Noting::On).await?;
        ctx.complete_window().await?;
        match next_window(lower, len, size, last) {
            Next::Done => return Ok(()),
            Next::Reopen(next) => lower = Some(next),
            Next::SplitTie(at) => {
                split(ctx, at, page_size, &mut boundary).await?;
                lower = Some(Lower::After(at));
            }
            Next::Stuck => {
                return Err(Error::Upstream(format!(
                    "the contact search did not advance past {lower:?}: results are not sorted by lastmodifieddate"
                )));
            }
        }
    }
}

/// Reads every contact modified exactly at `at`, by `hs_object_id`.
async fn split(
    ctx: &mut Context,
    at: Timestamp,
    page_size: u32,
    boundary: &mut Boundary,
) -> Result<(), Error> {
    let size = usize::try_from(page_size).unwrap_or(usize::MAX);
    let mut after_id = None;
    loop {
        let page = search(ctx, &tie_query(at, after_id, page_size)).await?;
        let len = page.results.len();
        let last_id = page.results.last().map(Contact::numeric_id).transpose()?;
        // Keyset paging: nothing of this split is read twice; only what the window read at
        // `at` before the split is recognised.
        accept(ctx, page.results, boundary, Noting::Off).await?;
        ctx.complete_window().await?;
        if len < size {
            return Ok(());
        }
        match (last_id, after_id) {
            (Some(last), Some(previous)) if last <= previous => {
                return Err(Error::Upstream(format!(
                    "the contact search at {at} did not advance past hs_object_id {previous}"
                )));
            }
            (Some(last), _) => after_id = Some(last),
            (None, _) => return Ok(()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Noting {
    On,
    Off,
}

/// Stages a page of contacts, deciding conflicts with pending platform-side edits.
async fn accept(
    ctx: &mut Context,
    contacts: Vec<Contact>,
    boundary: &mut Boundary,
    noting: Noting,
) -> Result<(), Error> {
    let mut fresh = Vec::with_capacity(contacts.len());
    for contact in contacts {
        let at = contact.modified()?;
        if boundary.seen(&contact.id, at) {
            continue;
        }
        if noting == Noting::On {
            boundary.note(&contact.id, at);
        }
        fresh.push((contact, at));
    }
    let ids: Vec<String> = fresh.iter().map(|(c, _)| c.id.clone()).collect();
    let pending: HashMap<String, PlatformChange> = ctx
        .pending_changes_for(CONTACT_KIND, &ids)
        .await?
        .into_iter()
        .map(|change| (change.id.clone(), change))
        .collect();
    let mut records = Vec::with_capacity(fresh.len());
    let mut superseded = OutboundCommit::default();
    for (contact, at) in fresh {
        let Some(change) = pending.get(&contact.id) else {
            records.push(contact.record()?);
            continue;
        };
        let changed_upstream = change.source_updated_at.is_none_or(|stored| at > stored);
        if !changed_upstream {
            // Re-read (lookback) with the platform's edit still pending: the edit stands.
            continue;
        }
        match ctx.resolve_conflict(at, change.platform_updated_at).outcome {
            Outcome::SourceWins => {
                superseded
                    .acks
                    .push(change.ack(&change.id, Disposition::Superseded));
                records.push(contact.record()?);
            }
            Outcome::PlatformWins => {}
        }
    }
    // The acknowledgement first: see the module doc.
    ctx.commit_outbound(&superseded).await?;
    ctx.upsert(CONTACT_KIND, records).await
}

/// Tombstones the contacts HubSpot lists as archived.
pub(crate) async fn reflect_archived(ctx: &mut Context) -> Result<(), Error> {
    let mut pages = pin!(hubspot_list::<Contact>(
        ctx.fetcher(),
        LIST_PATH.into(),
        vec![
            ("archived".into(), "true".into()),
            ("properties".into(), "hs_object_id".into()),
        ],
        100,
        None,
        PageLimits::default(),
    ));
    while let Some(page) = pages.try_next().await? {
        ctx.delete(CONTACT_KIND, page.items.into_iter().map(|c| c.id))
            .await?;
    }
    ctx.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ms: i64) -> Timestamp {
        Timestamp::from_millisecond(ms).expect("ts")
    }

    #[test]
    fn the_window_table() {
        use Lower::{After, From};
        // (lower, page length, last timestamp) with pages of 200.
        let table = [
            (None, 0, None, Next::Done),
            (None, 199, Some(t(5)), Next::Done),
            (None, 200, Some(t(5)), Next::Reopen(From(t(5)))),
            (Some(From(t(3))), 200, Some(t(5)), Next::Reopen(From(t(5)))),
            (Some(From(t(5))), 200, Some(t(5)), Next::SplitTie(t(5))),
            (Some(After(t(5))), 200, Some(t(6)), Next::Reopen(From(t(6)))),
            (Some(After(t(5))), 200, Some(t(5)), Next::Stuck),
            (Some(From(t(5))), 200, Some(t(4)), Next::Stuck),
            (Some(From(t(5))), 200, None, Next::Stuck),
            (Some(From(t(5))), 3, Some(t(5)), Next::Done),
        ];
        for (lower, len, last, expected) in table {
            assert_eq!(
                next_window(lower, len, 200, last),
                expected,
                "{lower:?} {len} {last:?}"
            );
        }
    }

    #[test]
    fn queries_filter_in_epoch_milliseconds() {
        let q = window_query(Some(Lower::From(t(1_772_323_200_042))), 200);
        assert_eq!(q["filterGroups"][0]["filters"][0]["operator"], "GTE");
        assert_eq!(q["filterGroups"][0]["filters"][0]["value"], "1772323200042");
        assert_eq!(q["sorts"][0]["propertyName"], "lastmodifieddate");
        assert_eq!(q["limit"], 200);
        assert!(q.get("after").is_none(), "never an offset");
        let q = window_query(Some(Lower::After(t(7))), 50);
        assert_eq!(q["filterGroups"][0]["filters"][0]["operator"], "GT");
        assert_eq!(window_query(None, 10)["filterGroups"], json!([]));
        let q = tie_query(t(7), Some(512), 200);
        assert_eq!(q["filterGroups"][0]["filters"][0]["operator"], "EQ");
        assert_eq!(q["filterGroups"][0]["filters"][1]["value"], "512");
        assert_eq!(q["sorts"][0]["propertyName"], "hs_object_id");
        assert_eq!(
            tie_query(t(7), None, 200)["filterGroups"][0]["filters"]
                .as_array()
                .map(Vec::len),
            Some(1)
        );
    }

    #[test]
    fn the_boundary_remembers_the_newest_timestamp_only() {
        let mut b = Boundary::default();
        b.note("1", t(5));
        b.note("2", t(5));
        assert!(b.seen("1", t(5)) && b.seen("2", t(5)));
        assert!(
            !b.seen("1", t(6)),
            "a newer version of a seen contact is new"
        );
        b.note("3", t(6));
        assert!(!b.seen("1", t(5)) && b.seen("3", t(6)));
        b.note("4", t(4));
        assert!(!b.seen("4", t(4)));
    }
}
