//! The connector's opaque cursor: where the backfill is, or the last event applied.
//!
//! Stored by the platform as an `opaque_token` (this JSON, as text), committed with each page.

use serde::{Deserialize, Serialize};

/// Where a Stripe sync resumes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub enum StripeCursor {
    /// Paging `/v1/invoices` (newest first) after `after`; events newer than `since_event`
    /// are applied once the backfill is done.
    Backfill {
        /// The last invoice id of the last committed page.
        after: Option<String>,
        /// The newest invoice event when the backfill started (`None`: there was none).
        since_event: Option<EventMark>,
    },
    /// Following `/v1/events` forward from `last`.
    Events {
        /// The newest event applied (`None`: none yet; start from the oldest kept).
        last: Option<EventMark>,
    },
}

/// An event id and its creation time (to know when Stripe's 30-day retention passed it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventMark {
    /// `evt_…`.
    pub id: String,
    /// Unix seconds.
    pub created: i64,
}

impl StripeCursor {
    /// Reads a committed cursor; `None` for an unreadable one (a full re-pull follows).
    pub fn decode(text: &str) -> Option<Self> {
        serde_json::from_str(text).ok()
    }

    /// The text committed as the opaque token.
    pub fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let cursor = StripeCursor::Backfill {
            after: Some("in_1".into()),
            since_event: Some(EventMark {
                id: "evt_1".into(),
                created: 5,
            }),
        };
        assert_eq!(StripeCursor::decode(&cursor.encode()), Some(cursor));
        assert_eq!(StripeCursor::decode("garbage"), None);
    }
}
