//! Outbound: platform-side edits go to HubSpot through the batch endpoints, at most 100 per
//! call, paced like every request; created contacts get their HubSpot ids written back.
//!
//! - Pending changes are read oldest edit first, a batch at a time
//!   ([`Context::pending_changes`]); conflicts were already decided while pulling, so what is
//!   still pending is pushed.
//! - **Updates** (`POST …/batch/update`, retried like a read: setting the same values twice is
//!   harmless). The writable synced properties are sent (`null` clears the value). Each change
//!   HubSpot confirms is acknowledged in one transaction per batch; ids HubSpot reports as
//!   missing (207) stay pending and are named in the run's notes.
//! - **Creates** (`POST …/batch/create`, *not* retried after a 5xx: a create is not
//!   idempotent). First, the batch's emails are searched for (`email IN …`): a contact that
//!   already exists (our own create whose write-back a crash lost, or the same person added in
//!   HubSpot meanwhile) is linked instead of created again — an identical one is simply linked,
//!   a different one is a conflict decided by the policy. The rest are created and linked to the
//!   ids HubSpot returns, matched by email (HubSpot's emails are unique per account; results
//!   are not assumed to come in input order). Contacts without an email are created one per
//!   call, so the single result is theirs. A 409 (an email taken by a contact the search index
//!   does not show yet) leaves the batch pending for the next sync and says so in the notes.

use std::collections::{HashMap, HashSet};

use ivory_sdk::conflict::Outcome;
use ivory_sdk::context::{ChangeKey, Disposition, OutboundCommit, PlatformChange, UpstreamLink};
use ivory_sdk::{Context, Error, FetchError};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::contact::{
    CONTACT_KIND, Contact, PROPERTIES, email_of, same_writable, writable_properties,
};
use crate::pull::search;

/// The batch update endpoint.
pub const BATCH_UPDATE_PATH: &str = "/crm/v3/objects/contacts/batch/update";
/// The batch create endpoint.
pub const BATCH_CREATE_PATH: &str = "/crm/v3/objects/contacts/batch/create";
/// HubSpot's limit on inputs per batch call.
pub const MAX_BATCH: usize = 100;

#[derive(Debug, Deserialize)]
struct BatchResponse {
    #[serde(default)]
    results: Vec<Contact>,
    #[serde(default)]
    errors: Vec<BatchError>,
}

#[derive(Debug, Deserialize)]
struct BatchError {
    #[serde(default)]
    message: String,
    #[serde(default)]
    context: HashMap<String, Vec<String>>,
}

/// Pushes every pending platform-side change of contacts (see the module doc).
pub(crate) async fn push(
    ctx: &mut Context,
    batch_size: usize,
    notes: &mut Vec<String>,
) -> Result<(), Error> {
    let batch_size = batch_size.clamp(1, MAX_BATCH);
    let mut after: Option<ChangeKey> = None;
    loop {
        let changes = ctx
            .pending_changes(CONTACT_KIND, after.as_ref(), batch_size)
            .await?;
        let Some(last) = changes.last() else {
            return Ok(());
        };
        after = Some(last.key());
        let full = changes.len() >= batch_size;
        let (creates, updates): (Vec<_>, Vec<_>) =
            changes.into_iter().partition(PlatformChange::is_new);
        update(ctx, updates, notes).await?;
        create(ctx, creates, notes).await?;
        if !full {
            return Ok(());
        }
    }
}

/// Pushes changes of contacts that exist in HubSpot (at most one batch).
async fn update(
    ctx: &mut Context,
    changes: Vec<PlatformChange>,
    notes: &mut Vec<String>,
) -> Result<(), Error> {
    if changes.is_empty() {
        return Ok(());
    }
    let inputs: Vec<Value> = changes
        .iter()
        .map(|c| json!({"id": c.id, "properties": writable_properties(&c.data)}))
        .collect();
    let response: BatchResponse = ctx
        .post(BATCH_UPDATE_PATH)
        .json(&json!({"inputs": inputs}))
        .retry_safe()
        .send()
        .await?
        .json()?;
    let confirmed: HashSet<&str> = response.results.iter().map(|c| c.id.as_str()).collect();
    let commit = OutboundCommit {
        links: Vec::new(),
        acks: changes
            .iter()
            .filter(|c| confirmed.contains(c.id.as_str()))
            .map(|c| c.ack(&c.id, Disposition::Pushed))
            .collect(),
    };
    ctx.commit_outbound(&commit).await?;
    for error in response.errors {
        let ids = error.context.get("ids").cloned().unwrap_or_default();
        notes.push(format!(
            "HubSpot did not update contact(s) {} ({}); the edits stay pending",
            ids.join(", "),
            error.message
        ));
    }
    Ok(())
}

/// Creates contacts that exist on the platform only (at most one batch), linking each to its
/// HubSpot id.
async fn create(
    ctx: &mut Context,
    changes: Vec<PlatformChange>,
    notes: &mut Vec<String>,
) -> Result<(), Error> {
    if changes.is_empty() {
        return Ok(());
    }
    let existing = existing_by_email(ctx, &changes).await?;
    let mut link_then_update = Vec::new();
    let mut with_email = Vec::new();
    let mut without_email = Vec::new();
    let mut emails = HashSet::new();
    for change in changes {
        let Some(email) = email_of(&change.data) else {
            without_email.push(change);
            continue;
        };
        if let Some(found) = existing.get(&email) {
            if let Some(change) = link_existing(ctx, change, found).await? {
                link_then_update.push(change);
            }
        } else if emails.insert(email.clone()) {
            with_email.push(change);
        } else {
            notes.push(format!(
                "contact {} has the same email as another new contact ({email}); it is created by a later sync, linked to the same HubSpot contact",
                change.id
            ));
        }
    }
    update(ctx, link_then_update, notes).await?;
    create_batch(ctx, with_email, notes).await?;
    for change in without_email {
        create_batch(ctx, vec![change], notes).await?;
    }
    Ok(())
}

/// HubSpot's contacts with the emails of these new contacts, by lowercased email.
async fn existing_by_email(
    ctx: &Context,
    changes: &[PlatformChange],
) -> Result<HashMap<String, Contact>, Error> {
    let emails: Vec<String> = changes
        .iter()
        .filter_map(|c| email_of(&c.data))
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    if emails.is_empty() {
        return Ok(HashMap::new());
    }
    let body = json!({
        "filterGroups": [{"filters": [{"propertyName": "email", "operator": "IN", "values": emails}]}],
        "properties": PROPERTIES,
        "limit": 200,
    });
    let page = search(ctx, &body).await?;
    Ok(page
        .results
        .into_iter()
        .filter_map(|c| c.email().map(|e| (e, c)))
        .collect())
}

/// Links a new platform contact to the HubSpot contact that already has its email. Returns the
/// change to push as an update when the platform's version is to be written upstream.
async fn link_existing(
    ctx: &mut Context,
    change: PlatformChange,
    found: &Contact,
) -> Result<Option<PlatformChange>, Error> {
    let found_at = found.modified()?;
    let mut link = UpstreamLink {
        kind: CONTACT_KIND.to_owned(),
        platform_id: change.id.clone(),
        upstream_id: found.id.clone(),
        source_updated_at: found_at,
        data: None,
    };
    if same_writable(&found.data(), &change.data) {
        // Already there (a create whose write-back was lost): link, done.
        let ack = change.ack(&found.id, Disposition::Pushed);
        ctx.commit_outbound(&OutboundCommit {
            links: vec![link],
            acks: vec![ack],
        })
        .await?;
        return Ok(None);
    }
    match ctx
        .resolve_conflict(found_at, change.platform_updated_at)
        .outcome
    {
        Outcome::SourceWins => {
            link.data = Some(found.data());
            let ack = change.ack(&found.id, Disposition::Superseded);
            ctx.commit_outbound(&OutboundCommit {
                links: vec![link],
                acks: vec![ack],
            })
            .await?;
            Ok(None)
        }
        Outcome::PlatformWins => {
            ctx.commit_outbound(&OutboundCommit {
                links: vec![link],
                acks: Vec::new(),
            })
            .await?;
            Ok(Some(PlatformChange {
                id: found.id.clone(),
                source_updated_at: Some(found_at),
                ..change
            }))
        }
    }
}

/// One batch create; links each result to its platform record (by email, or by position for a
/// single input).
async fn create_batch(
    ctx: &mut Context,
    changes: Vec<PlatformChange>,
    notes: &mut Vec<String>,
) -> Result<(), Error> {
    if changes.is_empty() {
        return Ok(());
    }
    let inputs: Vec<Value> = changes
        .iter()
        .map(|c| json!({"properties": writable_properties(&c.data)}))
        .collect();
    let sent = ctx
        .post(BATCH_CREATE_PATH)
        .json(&json!({"inputs": inputs}))
        .send()
        .await;
    let response: BatchResponse = match sent {
        Ok(response) => response.json()?,
        Err(FetchError::Status {
            status: 409, body, ..
        }) => {
            notes.push(format!(
                "HubSpot refused to create {} contact(s): {body}; they stay pending and are linked by a later sync",
                changes.len()
            ));
            return Ok(());
        }
        Err(error) => return Err(error.into()),
    };
    let mut by_email: HashMap<String, &Contact> = response
        .results
        .iter()
        .filter_map(|c| c.email().map(|e| (e, c)))
        .collect();
    let single = (changes.len() == 1)
        .then(|| response.results.first())
        .flatten();
    let mut commit = OutboundCommit::default();
    for change in &changes {
        let created = match email_of(&change.data) {
            Some(email) => by_email.remove(&email),
            None => single,
        };
        let Some(created) = created else {
            return Err(Error::Upstream(format!(
                "HubSpot's batch create returned no contact for platform record {}",
                change.id
            )));
        };
        commit.links.push(UpstreamLink {
            kind: CONTACT_KIND.to_owned(),
            platform_id: change.id.clone(),
            upstream_id: created.id.clone(),
            source_updated_at: created.modified()?,
            data: None,
        });
        commit
            .acks
            .push(change.ack(&created.id, Disposition::Pushed));
    }
    ctx.commit_outbound(&commit).await
}
