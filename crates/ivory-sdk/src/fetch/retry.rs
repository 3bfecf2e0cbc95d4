//! The retry decision, as a pure function.
//!
//! [`RetryPolicy::decide`] looks at one attempt's outcome (a status and its `Retry-After`, or a
//! transport failure), whether the request is idempotent, and how many retries were already
//! made, and answers [`Decision::Accept`], [`Decision::Retry`] with a delay, or
//! [`Decision::GiveUp`] with the reason. The fetch loop only executes these decisions.
//!
//! - **429**: retried whatever the method (the request was not processed). `Retry-After` in
//!   delta-seconds or HTTP-date form is honoured exactly; without one, exponential backoff with
//!   full jitter. A `Retry-After` longer than [`RetryPolicy::max_retry_after`] gives up at once
//!   rather than parking a sync for hours.
//! - **408, 500, 502, 503, 504** and transport failures after the request may have been sent:
//!   retried only for idempotent requests (GET, HEAD, PUT, DELETE, OPTIONS, or any request
//!   with an idempotency key). A connection that could not be established is always safe to
//!   retry.
//! - Anything else is accepted and handed to the caller.
//! - At most [`RetryPolicy::max_retries`] retries; then a typed error says what happened.

use std::time::Duration;

use jiff::Timestamp;

/// What one attempt produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome<'a> {
    /// The upstream answered.
    Status {
        /// HTTP status code.
        status: u16,
        /// The raw `Retry-After` header, if any.
        retry_after: Option<&'a str>,
    },
    /// The connection could not be established: the request was never sent.
    ConnectFailed,
    /// The request may have been sent, but no complete response came back.
    TransportFailed,
}

/// Why a request is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryReason {
    /// 429, waiting as the upstream asked.
    RateLimitedRetryAfter,
    /// 429 without a usable `Retry-After`: backoff.
    RateLimitedBackoff,
    /// A 5xx or 408.
    ServerError,
    /// A connection or transport failure.
    Transport,
}

/// Why the fetch loop stops retrying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GiveUp {
    /// Every retry was used.
    Exhausted,
    /// The upstream asked us to wait longer than the policy allows.
    RetryAfterTooLong(Duration),
    /// The failure is not retryable for this (non-idempotent) request.
    NotIdempotent,
}

/// The decision for one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Hand the response to the caller.
    Accept,
    /// Wait `delay`, then send again.
    Retry {
        /// How long to wait.
        delay: Duration,
        /// Why.
        reason: RetryReason,
    },
    /// Stop and report an error.
    GiveUp(GiveUp),
}

/// How the fetch loop retries. The defaults suit SaaS APIs.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// The first backoff step (doubled per retry, then fully jittered).
    pub base_delay: Duration,
    /// The largest backoff step.
    pub max_delay: Duration,
    /// The longest `Retry-After` honoured; a longer one fails the request.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 6,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(60),
            max_retry_after: Duration::from_secs(15 * 60),
        }
    }
}

impl RetryPolicy {
    /// Decides what to do after an attempt. `retries` is how many retries were already made,
    /// `jitter` a uniform sample from `[0, 1)`, `now` the wall time (for HTTP-date
    /// `Retry-After`).
    pub fn decide(
        &self,
        outcome: Outcome<'_>,
        idempotent: bool,
        retries: u32,
        now: Timestamp,
        jitter: f64,
    ) -> Decision {
        let (retryable, reason, asked) = match outcome {
            Outcome::Status {
                status: 429,
                retry_after,
            } => match retry_after.and_then(|v| parse_retry_after(v, now)) {
                Some(wait) => (true, RetryReason::RateLimitedRetryAfter, Some(wait)),
                None => (true, RetryReason::RateLimitedBackoff, None),
            },
            Outcome::Status {
                status: 408 | 500 | 502 | 503 | 504,
                retry_after,
            } => {
                if !idempotent {
                    return Decision::Accept;
                }
                let asked = retry_after.and_then(|v| parse_retry_after(v, now));
                (true, RetryReason::ServerError, asked)
            }
            Outcome::Status { .. } => return Decision::Accept,
            Outcome::ConnectFailed => (true, RetryReason::Transport, None),
            Outcome::TransportFailed => (idempotent, RetryReason::Transport, None),
        };
        if !retryable {
            return Decision::GiveUp(GiveUp::NotIdempotent);
        }
        if retries >= self.max_retries {
            return Decision::GiveUp(GiveUp::Exhausted);
        }
        if let Some(wait) = asked {
            if wait > self.max_retry_after {
                return Decision::GiveUp(GiveUp::RetryAfterTooLong(wait));
            }
            return Decision::Retry {
                delay: wait,
                reason,
            };
        }
        Decision::Retry {
            delay: self.backoff(retries, jitter),
            reason,
        }
    }

    /// Full-jitter exponential backoff: uniform in `[0, min(max_delay, base · 2^retries))`.
    pub fn backoff(&self, retries: u32, jitter: f64) -> Duration {
        let ceiling = self
            .base_delay
            .saturating_mul(2u32.saturating_pow(retries.min(31)))
            .min(self.max_delay);
        ceiling.mul_f64(jitter.clamp(0.0, 1.0))
    }
}

/// Parses a `Retry-After` value: delta-seconds (`"7"`, also `"1.5"`) or an HTTP-date
/// (`"Sun, 06 Nov 1994 08:49:37 GMT"`, relative to `now`; a date in the past means no wait).
/// Returns `None` for anything else.
pub fn parse_retry_after(value: &str, now: Timestamp) -> Option<Duration> {
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    if value.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        let seconds: f64 = value.parse().ok()?;
        return Duration::try_from_secs_f64(seconds).ok();
    }
    let at = jiff::fmt::rfc2822::DateTimeParser::new()
        .parse_timestamp(value)
        .ok()?;
    let delta = at.duration_since(now);
    if delta.is_negative() {
        Some(Duration::ZERO)
    } else {
        Duration::try_from(delta).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn now() -> Timestamp {
        "1994-11-06T08:49:30Z".parse().expect("ts")
    }

    fn status(status: u16, retry_after: Option<&str>) -> Outcome<'_> {
        Outcome::Status {
            status,
            retry_after,
        }
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("7", now()), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after(" 0 ", now()), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("1.5", now()),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now()),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:00 GMT", now()),
            Some(Duration::ZERO)
        );
        for bad in [
            "",
            "soon",
            "-3",
            "7s",
            "1.2.3",
            "Sun, 99 Nov 1994 08:49:37 GMT",
        ] {
            assert_eq!(parse_retry_after(bad, now()), None, "{bad:?}");
        }
    }

    #[test]
    fn decisions_table() {
        let p = RetryPolicy::default();
        let retry = |delay: u64, reason| Decision::Retry {
            delay: Duration::from_secs(delay),
            reason,
        };
        let cases: Vec<(Outcome<'_>, bool, u32, Decision)> = vec![
            (status(200, None), true, 0, Decision::Accept),
            (status(404, None), true, 0, Decision::Accept),
            (status(401, None), true, 0, Decision::Accept),
            (
                status(429, Some("7")),
                true,
                0,
                retry(7, RetryReason::RateLimitedRetryAfter),
            ),
            (
                status(429, Some("7")),
                false,
                0,
                retry(7, RetryReason::RateLimitedRetryAfter),
            ),
            (
                status(429, Some("7")),
                true,
                6,
                Decision::GiveUp(GiveUp::Exhausted),
            ),
            (
                status(429, Some("7200")),
                true,
                0,
                Decision::GiveUp(GiveUp::RetryAfterTooLong(Duration::from_secs(7200))),
            ),
            (
                status(503, Some("3")),
                true,
                1,
                retry(3, RetryReason::ServerError),
            ),
            (status(500, None), false, 0, Decision::Accept),
            (
                Outcome::ConnectFailed,
                false,
                0,
                Decision::Retry {
                    delay: Duration::from_millis(250),
                    reason: RetryReason::Transport,
                },
            ),
            (
                Outcome::TransportFailed,
                false,
                0,
                Decision::GiveUp(GiveUp::NotIdempotent),
            ),
            (
                Outcome::TransportFailed,
                true,
                6,
                Decision::GiveUp(GiveUp::Exhausted),
            ),
        ];
        for (outcome, idempotent, retries, expected) in cases {
            assert_eq!(
                p.decide(outcome, idempotent, retries, now(), 0.5),
                expected,
                "{outcome:?} idempotent={idempotent} retries={retries}"
            );
        }
    }

    proptest! {
        #[test]
        fn backoff_is_bounded_and_retries_are_finite(retries in 0u32..100, jitter in 0.0f64..1.0) {
            let p = RetryPolicy::default();
            prop_assert!(p.backoff(retries, jitter) <= p.max_delay);
            let d = p.decide(status(503, None), true, retries, now(), jitter);
            if retries >= p.max_retries {
                prop_assert_eq!(d, Decision::GiveUp(GiveUp::Exhausted));
            }
        }

        #[test]
        fn retry_after_parser_never_panics(value in "\\PC{0,40}") {
            let _ = parse_retry_after(&value, now());
        }
    }
}
