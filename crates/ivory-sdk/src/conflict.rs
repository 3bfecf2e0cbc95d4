//! Conflicts of bidirectional sync: which version of a record is kept when it changed on
//! **both** sides since the last sync.
//!
//! A record is *in conflict* when the upstream changed it since the platform last stored the
//! upstream's version (the upstream's last-modified time is newer than the record's stored
//! `source_updated_at`) **and** a platform-side edit of it has not been pushed yet (see
//! [`crate::context::PlatformChange`]). A record changed on one side only is no conflict: the
//! change simply flows to the other side.
//!
//! [`resolve`] decides a conflict from the manifest's `conflictPolicy` and the two timestamps.
//! It is pure and total, so the same inputs give the same outcome on every run, on every
//! machine:
//!
//! | policy | outcome |
//! |---|---|
//! | `source_wins` | [`Outcome::SourceWins`], always |
//! | `platform_wins` | [`Outcome::PlatformWins`], always |
//! | `newest_wins` | the side with the later timestamp; **equal timestamps: the source wins** ([`TIE_WINNER`]) |
//!
//! **The tie rule.** Timestamps are compared at millisecond precision (the precision of the
//! store and of the upstreams we sync; anything finer is noise), and a tie goes to the source,
//! every time. Why the source: the upstream is the system of record of a synced object; taking
//! its version on a tie means the sync converges without a write upstream (no push, no echo of
//! our own write coming back as a newer upstream change).
//!
//! `newest_wins` compares two clocks (the upstream's and the platform's): skew between them
//! shifts the outcome of near-simultaneous edits, which is why a listing that uses it should say
//! so. Every decision is counted ([`ConflictCounts`]) and recorded on the sync run, so an
//! operator can see how many conflicts each side won and how many were ties.
//!
//! ```
//! use ivory_sdk::conflict::{resolve, Outcome, Rule};
//! use ivory_sdk::manifest::ConflictPolicy;
//! let t: jiff::Timestamp = "2026-03-01T10:00:00Z".parse().unwrap();
//! let r = resolve(ConflictPolicy::NewestWins, t, t);
//! assert_eq!((r.outcome, r.rule), (Outcome::SourceWins, Rule::Tie));
//! ```

use jiff::Timestamp;
use serde::Serialize;

pub use crate::manifest::ConflictPolicy;

/// Which version of a record in conflict is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The upstream's version is kept: it overwrites the platform's record, and the platform's
    /// unpushed edit is dropped (never pushed).
    SourceWins,
    /// The platform's version is kept: the upstream's version is not stored, and the platform's
    /// edit is pushed upstream, overwriting the upstream's change.
    PlatformWins,
}

/// What decided an [`Outcome`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// The policy names the winner whatever the timestamps (`source_wins`, `platform_wins`).
    Policy,
    /// `newest_wins`, and one side changed strictly later.
    Newer,
    /// `newest_wins` with equal timestamps: the tie rule ([`TIE_WINNER`]).
    Tie,
}

/// The decision on one conflict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Resolution {
    /// Which version is kept.
    pub outcome: Outcome,
    /// Why.
    pub rule: Rule,
}

/// Who wins a `newest_wins` conflict whose two timestamps are equal (to the millisecond).
pub const TIE_WINNER: Outcome = Outcome::SourceWins;

/// Decides a conflict: `source_updated_at` is the upstream's last-modified time of its version,
/// `platform_updated_at` the time of the platform-side edit. Pure: see the module doc for the
/// table and the tie rule.
pub fn resolve(
    policy: ConflictPolicy,
    source_updated_at: Timestamp,
    platform_updated_at: Timestamp,
) -> Resolution {
    match policy {
        ConflictPolicy::SourceWins => Resolution {
            outcome: Outcome::SourceWins,
            rule: Rule::Policy,
        },
        ConflictPolicy::PlatformWins => Resolution {
            outcome: Outcome::PlatformWins,
            rule: Rule::Policy,
        },
        ConflictPolicy::NewestWins => {
            let (source, platform) = (
                source_updated_at.as_millisecond(),
                platform_updated_at.as_millisecond(),
            );
            match source.cmp(&platform) {
                std::cmp::Ordering::Greater => Resolution {
                    outcome: Outcome::SourceWins,
                    rule: Rule::Newer,
                },
                std::cmp::Ordering::Less => Resolution {
                    outcome: Outcome::PlatformWins,
                    rule: Rule::Newer,
                },
                std::cmp::Ordering::Equal => Resolution {
                    outcome: TIE_WINNER,
                    rule: Rule::Tie,
                },
            }
        }
    }
}

/// Conflicts decided in one sync, per outcome (as `ivory sync --json` prints them under
/// `conflicts`, and as the sync run records them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ConflictCounts {
    /// Conflicts the upstream's version won.
    pub source_wins: u64,
    /// Conflicts the platform's version won.
    pub platform_wins: u64,
    /// Of all the above, those decided by the tie rule (equal timestamps under `newest_wins`).
    pub ties: u64,
}

impl ConflictCounts {
    /// Counts one decision.
    pub fn record(&mut self, resolution: Resolution) {
        match resolution.outcome {
            Outcome::SourceWins => self.source_wins += 1,
            Outcome::PlatformWins => self.platform_wins += 1,
        }
        if resolution.rule == Rule::Tie {
            self.ties += 1;
        }
    }

    /// Conflicts decided.
    pub fn total(&self) -> u64 {
        self.source_wins + self.platform_wins
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64) -> Timestamp {
        Timestamp::from_millisecond(ms).expect("timestamp")
    }

    #[test]
    fn the_policy_table() {
        use ConflictPolicy::{NewestWins, PlatformWins, SourceWins};
        use Outcome as O;
        // (policy, source ms, platform ms, outcome, rule)
        let table = [
            (SourceWins, 2, 1, O::SourceWins, Rule::Policy),
            (SourceWins, 1, 2, O::SourceWins, Rule::Policy),
            (SourceWins, 1, 1, O::SourceWins, Rule::Policy),
            (PlatformWins, 2, 1, O::PlatformWins, Rule::Policy),
            (PlatformWins, 1, 2, O::PlatformWins, Rule::Policy),
            (PlatformWins, 1, 1, O::PlatformWins, Rule::Policy),
            (NewestWins, 2, 1, O::SourceWins, Rule::Newer),
            (NewestWins, 1, 2, O::PlatformWins, Rule::Newer),
            (NewestWins, 1, 1, O::SourceWins, Rule::Tie),
            (NewestWins, 0, 0, O::SourceWins, Rule::Tie),
            (NewestWins, -5, 7, O::PlatformWins, Rule::Newer),
        ];
        for (policy, source, platform, outcome, rule) in table {
            assert_eq!(
                resolve(policy, at(source), at(platform)),
                Resolution { outcome, rule },
                "{policy:?} source={source} platform={platform}"
            );
        }
    }

    #[test]
    fn ties_are_judged_to_the_millisecond_and_always_go_to_the_source() {
        let base: Timestamp = "2026-03-01T10:00:00.123Z".parse().expect("ts");
        let finer = base
            .checked_add(jiff::SignedDuration::from_micros(900))
            .expect("ts");
        for _ in 0..3 {
            let r = resolve(ConflictPolicy::NewestWins, finer, base);
            assert_eq!((r.outcome, r.rule), (TIE_WINNER, Rule::Tie));
            let r = resolve(ConflictPolicy::NewestWins, base, finer);
            assert_eq!((r.outcome, r.rule), (TIE_WINNER, Rule::Tie));
        }
    }

    #[test]
    fn counts_per_outcome() {
        let mut counts = ConflictCounts::default();
        counts.record(resolve(ConflictPolicy::NewestWins, at(1), at(1)));
        counts.record(resolve(ConflictPolicy::NewestWins, at(1), at(2)));
        counts.record(resolve(ConflictPolicy::SourceWins, at(1), at(2)));
        assert_eq!(
            counts,
            ConflictCounts {
                source_wins: 2,
                platform_wins: 1,
                ties: 1
            }
        );
        assert_eq!(counts.total(), 3);
        assert_eq!(
            serde_json::to_value(counts).expect("json"),
            serde_json::json!({"source_wins": 2, "platform_wins": 1, "ties": 1})
        );
    }
}
