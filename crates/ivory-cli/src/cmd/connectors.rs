//! The connectors this binary knows by id.
//!
//! The reference connectors (`stripe`, `hubspot`, `airtable`), and the two example
//! connectors of the testkit (one per cursor kind), which talk to the fake items API (`ivory
//! demo` starts one):
//! `example-items` writes kind `item`, `example-changes` kind `item_change`.

use std::sync::Arc;

use ivory_sdk::DynConnector;
use ivory_sdk::manifest::{CursorKind, Manifest};
use ivory_testkit::connectors::{ChangesConnector, ItemsConnector, items_manifest};

/// A built-in connector: its manifest and its implementation.
pub(crate) struct Builtin {
    pub(crate) manifest: Manifest,
    pub(crate) connector: Arc<dyn DynConnector>,
}

/// Ids of the built-in connectors.
pub(crate) const BUILTIN_IDS: &[&str] = &[
    "stripe",
    "hubspot",
    "airtable",
    "example-items",
    "example-changes",
];

/// The built-in connector with this id.
pub(crate) fn builtin(id: &str) -> Option<Builtin> {
    match id {
        "stripe" => Some(Builtin {
            manifest: ivory_connector_stripe::manifest().clone(),
            connector: Arc::new(ivory_connector_stripe::StripeConnector::default()),
        }),
        "hubspot" => Some(Builtin {
            manifest: ivory_connector_hubspot::manifest().clone(),
            connector: Arc::new(ivory_connector_hubspot::HubSpotConnector::default()),
        }),
        "airtable" => Some(Builtin {
            manifest: ivory_connector_airtable::manifest().clone(),
            connector: Arc::new(ivory_connector_airtable::AirtableConnector::default()),
        }),
        "example-items" => Some(Builtin {
            manifest: items_manifest("example-items", CursorKind::OpaqueToken, 6000),
            connector: Arc::new(ItemsConnector {
                page_size: 100,
                kind: "item",
            }),
        }),
        "example-changes" => Some(Builtin {
            manifest: items_manifest("example-changes", CursorKind::UpdatedAt, 6000),
            connector: Arc::new(ChangesConnector {
                page_size: 100,
                kind: "item_change",
            }),
        }),
        _ => None,
    }
}
