//! Datetime parsing and `DATETIME_DIFF` units. Everything is in UTC.

use jiff::civil::DateTime;
use jiff::tz::TimeZone;
use jiff::{Timestamp, Unit, ZonedDateTimeDifference};

/// Parses text as a datetime: an RFC 3339 timestamp with an offset
/// (`2026-03-01T09:30:00Z`, `2026-03-01T10:30:00+01:00`), a date-time without offset
/// (`2026-03-01T09:30:00`, read as UTC) or a date (`2026-03-01`, midnight UTC). Surrounding
/// whitespace is ignored.
pub(crate) fn parse_datetime(text: &str) -> Option<Timestamp> {
    let text = text.trim();
    if let Ok(timestamp) = text.parse::<Timestamp>() {
        return Some(timestamp);
    }
    let civil = text.parse::<DateTime>().ok()?;
    civil
        .to_zoned_datetime(TimeZone::UTC)
        .ok()
        .map(|zoned| zoned.timestamp())
}

/// Midnight UTC of the day of `now`.
pub(crate) fn start_of_day(now: Timestamp) -> Option<Timestamp> {
    now.to_zoned_datetime(TimeZone::UTC)
        .start_of_day()
        .ok()
        .map(|zoned| zoned.timestamp())
}

/// A `DATETIME_DIFF` unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DatetimeUnit {
    Milliseconds,
    Seconds,
    Minutes,
    Hours,
    Days,
    Weeks,
    Months,
    Quarters,
    Years,
}

/// The accepted spellings, for error messages.
pub(crate) const UNIT_SPELLINGS: &str = "milliseconds/ms, seconds/s, minutes/m, hours/h, \
     days/d, weeks/w, months/M, quarters/Q, years/y";

impl DatetimeUnit {
    /// Parses a unit: a long name, singular or plural, in any case (`days`, `Day`), or an
    /// Airtable abbreviation, case-sensitive because `m` is minutes and `M` is months.
    pub(crate) fn parse(text: &str) -> Option<DatetimeUnit> {
        let short = match text {
            "ms" => Some(DatetimeUnit::Milliseconds),
            "s" => Some(DatetimeUnit::Seconds),
            "m" => Some(DatetimeUnit::Minutes),
            "h" => Some(DatetimeUnit::Hours),
            "d" => Some(DatetimeUnit::Days),
            "w" => Some(DatetimeUnit::Weeks),
            "M" => Some(DatetimeUnit::Months),
            "Q" => Some(DatetimeUnit::Quarters),
            "y" => Some(DatetimeUnit::Years),
            _ => None,
        };
        if short.is_some() {
            return short;
        }
        let lower = text.to_ascii_lowercase();
        let singular = lower.strip_suffix('s').unwrap_or(&lower);
        Some(match singular {
            "millisecond" => DatetimeUnit::Milliseconds,
            "second" => DatetimeUnit::Seconds,
            "minute" => DatetimeUnit::Minutes,
            "hour" => DatetimeUnit::Hours,
            "day" => DatetimeUnit::Days,
            "week" => DatetimeUnit::Weeks,
            "month" => DatetimeUnit::Months,
            "quarter" => DatetimeUnit::Quarters,
            "year" => DatetimeUnit::Years,
            _ => return None,
        })
    }
}

/// `a − b` in whole `unit`s, truncated toward zero. Calendar units (months, quarters, years)
/// are counted on the UTC calendar, stepping from `b` toward `a`.
pub(crate) fn datetime_diff(a: Timestamp, b: Timestamp, unit: DatetimeUnit) -> Result<f64, String> {
    let seconds_per = |unit: DatetimeUnit| match unit {
        DatetimeUnit::Minutes => 60,
        DatetimeUnit::Hours => 3_600,
        DatetimeUnit::Days => 86_400,
        DatetimeUnit::Weeks => 604_800,
        _ => 1,
    };
    match unit {
        DatetimeUnit::Milliseconds => {
            // At most ~6e17 ms between jiff's bounds: exact in f64 up to 2^53, close beyond.
            Ok(a.duration_since(b).as_millis() as f64)
        }
        DatetimeUnit::Seconds
        | DatetimeUnit::Minutes
        | DatetimeUnit::Hours
        | DatetimeUnit::Days
        | DatetimeUnit::Weeks => Ok((a.duration_since(b).as_secs() / seconds_per(unit)) as f64),
        DatetimeUnit::Months | DatetimeUnit::Quarters | DatetimeUnit::Years => {
            let calendar = if unit == DatetimeUnit::Years {
                Unit::Year
            } else {
                Unit::Month
            };
            let a = a.to_zoned_datetime(TimeZone::UTC);
            let b = b.to_zoned_datetime(TimeZone::UTC);
            // Counted from `b` to `a`: whole calendar units added to `b` (clamping the day to
            // the month's end) without passing `a`.
            let span = b
                .until(
                    ZonedDateTimeDifference::new(&a)
                        .largest(calendar)
                        .smallest(calendar),
                )
                .map_err(|error| format!("DATETIME_DIFF failed: {error}"))?;
            Ok(match unit {
                DatetimeUnit::Years => f64::from(span.get_years()),
                DatetimeUnit::Quarters => f64::from(span.get_months() / 3),
                _ => f64::from(span.get_months()),
            })
        }
    }
}
