//! When an installation's next scheduled sync is due (pure: no clock, no store).
//!
//! Every installation syncs on an interval, the platform setting `schedule` (`15m` unless the
//! tenant admin sets another: `ivory install … --setting schedule=1h`, or `off`). Thousands of
//! installations on the same interval must not all start in the same second, so each start is
//! delayed by a jitter: a fraction of the interval (at most a tenth, and at most a minute)
//! derived from the installation id and its previous start. It is deterministic — a restarted
//! scheduler computes the same due time — and different for every installation and every run.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use sha2::{Digest, Sha256};

/// The installation setting holding the sync interval.
pub const SCHEDULE_SETTING: &str = "schedule";

/// Settings every installation accepts, whatever its connector declares.
pub const PLATFORM_SETTINGS: &[&str] = &[SCHEDULE_SETTING];

/// The interval when the installation sets none.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(15 * 60);

/// The largest jitter added to a start.
pub const MAX_JITTER: Duration = Duration::from_secs(60);

/// Parses a schedule: `off` (no scheduled syncs), or a positive number with a unit `s`, `m`,
/// `h` or `d` (`90s`, `15m`, `1h`, `1d`). `Ok(None)` for `off`.
pub fn parse_schedule(text: &str) -> Result<Option<Duration>, String> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    let bad =
        || format!("{text:?} is not a schedule: use off, or a number with s, m, h or d (15m)");
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().map_err(|_| bad())?;
    let unit_seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    if number == 0 {
        return Err(format!("{text:?}: the interval must be longer than zero"));
    }
    let seconds = number
        .checked_mul(unit_seconds)
        .filter(|s| *s <= 366 * 86_400)
        .ok_or_else(|| format!("{text:?}: the interval must be at most a year"))?;
    Ok(Some(Duration::from_secs(seconds)))
}

/// The interval of an installation's settings: the default when unset, `None` when `off` (or,
/// defensively, unparsable — validation refuses those at install).
pub fn interval_of(schedule: Option<&str>) -> Option<Duration> {
    match schedule {
        None => Some(DEFAULT_INTERVAL),
        Some(text) => parse_schedule(text).ok().flatten(),
    }
}

/// The jitter of one start: a deterministic fraction of `min(interval / 10, MAX_JITTER)`,
/// from the installation id and the previous start (`None` for the first).
pub fn jitter(
    installation: &str,
    previous_start: Option<Timestamp>,
    interval: Duration,
) -> Duration {
    let span = (interval / 10).min(MAX_JITTER);
    let mut hash = Sha256::new();
    hash.update(installation.as_bytes());
    hash.update(
        previous_start
            .map_or(-1, Timestamp::as_millisecond)
            .to_le_bytes(),
    );
    let digest = hash.finalize();
    let mut word = [0u8; 8];
    word.copy_from_slice(&digest[..8]);
    // 53 bits: an exactly representable fraction in [0, 1).
    let fraction = (u64::from_le_bytes(word) >> 11) as f64 / (1u64 << 53) as f64;
    span.mul_f64(fraction)
}

/// When the next sync of `installation` is due: its previous start plus the interval plus the
/// jitter, or — never synced — `first_eligible` (when the scheduler started, say) plus the
/// jitter. `None` when its schedule is off.
pub fn next_due(
    installation: &str,
    schedule: Option<&str>,
    previous_start: Option<Timestamp>,
    first_eligible: Timestamp,
) -> Option<Timestamp> {
    let interval = interval_of(schedule)?;
    let jitter = jitter(installation, previous_start, interval);
    let base = match previous_start {
        Some(start) => after(start, interval),
        None => first_eligible,
    };
    Some(after(base, jitter))
}

/// `at + duration`, saturating at the end of time (the one helper for due times, claims and
/// leases).
pub fn after(at: Timestamp, duration: Duration) -> Timestamp {
    SignedDuration::try_from(duration)
        .ok()
        .and_then(|d| at.checked_add(d).ok())
        .unwrap_or(Timestamp::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(seconds: i64) -> Timestamp {
        Timestamp::from_second(seconds).expect("valid")
    }

    #[test]
    fn parses_the_units_and_refuses_the_rest() {
        assert_eq!(parse_schedule("90s"), Ok(Some(Duration::from_secs(90))));
        assert_eq!(parse_schedule("15m"), Ok(Some(Duration::from_secs(900))));
        assert_eq!(parse_schedule(" 2h "), Ok(Some(Duration::from_secs(7200))));
        assert_eq!(parse_schedule("1d"), Ok(Some(Duration::from_secs(86_400))));
        assert_eq!(parse_schedule("OFF"), Ok(None));
        for bad in [
            "", "15", "m", "15 m", "15min", "-5m", "1.5h", "0s", "9999999d",
        ] {
            let error = parse_schedule(bad).expect_err(bad);
            assert!(
                error.contains(&format!("{:?}", bad.trim())),
                "{bad}: {error}"
            );
        }
    }

    #[test]
    fn unset_is_the_default_and_off_is_never() {
        assert_eq!(interval_of(None), Some(DEFAULT_INTERVAL));
        assert_eq!(interval_of(Some("off")), None);
        assert_eq!(next_due("inst_a", Some("off"), None, ts(0)), None);
    }

    #[test]
    fn the_next_start_is_interval_plus_a_bounded_deterministic_jitter() {
        let previous = ts(1_000_000);
        let due = next_due("inst_a", Some("15m"), Some(previous), ts(0)).expect("due");
        let after = due.duration_since(previous);
        assert!(after >= SignedDuration::from_secs(900), "{after:?}");
        assert!(after < SignedDuration::from_secs(900 + 60), "{after:?}");
        assert_eq!(
            Some(due),
            next_due("inst_a", Some("15m"), Some(previous), ts(0)),
            "a restarted scheduler computes the same due time"
        );
        // A short interval jitters by at most a tenth of it.
        let due = next_due("inst_a", Some("10s"), Some(previous), ts(0)).expect("due");
        assert!(due.duration_since(previous) < SignedDuration::from_secs(11));
    }

    #[test]
    fn installations_on_one_interval_are_spread_out() {
        let start = ts(2_000_000);
        let mut dues: Vec<i64> = (0..200)
            .map(|i| {
                next_due(&format!("inst_{i}"), None, None, start)
                    .expect("due")
                    .duration_since(start)
                    .as_millis() as i64
            })
            .collect();
        dues.sort_unstable();
        dues.dedup();
        assert!(dues.len() > 190, "200 installations share few start times");
        assert!(dues.iter().all(|ms| (0..60_000).contains(ms)));
        let spread = dues.last().expect("some") - dues.first().expect("some");
        assert!(
            spread > 45_000,
            "starts bunch within {spread} ms of the minute"
        );
    }
}
