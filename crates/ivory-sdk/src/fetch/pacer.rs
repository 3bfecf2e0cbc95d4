//! Request pacing: GCRA (the generic cell rate algorithm) over the declared
//! `rateLimitPerMinute`, plus a shared "blocked until" for an upstream's `Retry-After`.
//!
//! The decision is pure ([`Gcra::reserve`] takes `now` and returns how long to wait); the
//! [`Pacer`] wraps it in a mutex and sleeps on the injected [`Clock`].
//!
//! **Guarantee.** With a declared rate `R` per minute and a burst `b` (default 1), no 60-second
//! window, as the upstream counts it, ever holds more than `R` requests:
//! - the emission interval is `60 s / (R − b + 1)`: a burst is paid for by a slightly slower
//!   steady rate, never by exceeding the declaration (a plain token bucket with burst `b` at
//!   `R/min` would allow `R + b − 1` in a window);
//! - it carries a [`SAFETY_MARGIN`] of 0.5 %, because an upstream counting a trailing minute
//!   with both ends included sees `R + 1` requests when they are spaced exactly `60 s / R`;
//! - a timer that wakes late moves every later slot by its lateness ([`Gcra::delay`]), so the
//!   spacing holds between *actual* sends, not just scheduled ones.
//!
//! The cost is a steady rate of `R / 1.005` (99.5 % of the declaration).

use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::Duration;

use crate::clock::Clock;

/// The share of the emission interval added as a safety margin (per mille).
pub const SAFETY_MARGIN: u64 = 5;

/// Pure GCRA state: the theoretical arrival time of the next request.
#[derive(Debug, Clone)]
pub struct Gcra {
    interval: Duration,
    tolerance: Duration,
    tat: Option<Duration>,
    blocked_until: Duration,
}

impl Gcra {
    /// A limiter for `per_minute` requests per minute with bursts of up to `burst`
    /// (clamped to `per_minute`).
    pub fn new(per_minute: NonZeroU32, burst: NonZeroU32) -> Self {
        let rate = per_minute.get();
        let burst = burst.get().min(rate);
        let steady = rate - burst + 1;
        // Rounded up to the nanosecond (a truncated interval would let `steady + 1` requests fit
        // in a minute), plus the safety margin.
        let nanos = (60_000_000_000u64 * (1000 + SAFETY_MARGIN)).div_ceil(1000 * u64::from(steady));
        let interval = Duration::from_nanos(nanos);
        Self {
            interval,
            tolerance: interval * (burst - 1),
            tat: None,
            blocked_until: Duration::ZERO,
        }
    }

    /// The steady-state spacing between requests.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// How far ahead of its theoretical time a request may go (the burst: `(b − 1) ×
    /// interval`).
    pub fn tolerance(&self) -> Duration {
        self.tolerance
    }

    /// Reserves the earliest slot at or after `now` (time since the clock's origin) and returns
    /// how long to wait before sending.
    pub fn reserve(&mut self, now: Duration) -> Duration {
        let tat = self.tat.unwrap_or(now).max(now);
        let send_at = tat
            .saturating_sub(self.tolerance)
            .max(now)
            .max(self.blocked_until);
        self.tat = Some(tat.max(send_at) + self.interval);
        send_at - now
    }

    /// The request reserved last was sent `lateness` after its slot (a timer woke late):
    /// every later slot moves by as much, so actual sends keep their spacing.
    pub fn delay(&mut self, lateness: Duration) {
        if let Some(tat) = &mut self.tat {
            *tat += lateness;
        }
    }

    /// No request is sent before `until` (time since the clock's origin): an upstream asked us
    /// to wait (`Retry-After`).
    pub fn block_until(&mut self, until: Duration) {
        self.blocked_until = self.blocked_until.max(until);
    }
}

/// A GCRA shared by every request of one installation, sleeping on the injected clock.
#[derive(Debug)]
pub struct Pacer {
    state: Mutex<Gcra>,
    clock: Clock,
}

impl Pacer {
    /// A pacer for `per_minute` with bursts of `burst`.
    pub fn new(per_minute: NonZeroU32, burst: NonZeroU32, clock: Clock) -> Self {
        Self {
            state: Mutex::new(Gcra::new(per_minute, burst)),
            clock,
        }
    }

    /// The GCRA's interval and tolerance (for a limiter shared with other processes).
    pub fn shape(&self) -> (Duration, Duration) {
        let state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        (state.interval(), state.tolerance())
    }

    /// Waits for this request's slot; returns the time slept.
    pub async fn acquire(&self) -> Duration {
        let wait = {
            let mut state = self
                .state
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            state.reserve(self.clock.elapsed())
        };
        self.clock.sleep(wait).await;
        wait
    }

    /// Holds every request back for `wait` from now.
    pub fn block_for(&self, wait: Duration) {
        let until = self.clock.elapsed() + wait;
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        state.block_until(until);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn nz(n: u32) -> NonZeroU32 {
        NonZeroU32::new(n).expect("non-zero")
    }

    /// Send times of `n` back-to-back requests (each sent as soon as allowed).
    fn schedule(rate: u32, burst: u32, n: usize) -> Vec<Duration> {
        let mut gcra = Gcra::new(nz(rate), nz(burst));
        let mut now = Duration::ZERO;
        (0..n)
            .map(|_| {
                now += gcra.reserve(now);
                now
            })
            .collect()
    }

    #[test]
    fn steady_rate_without_burst() {
        let times = schedule(300, 1, 600);
        assert_eq!(times[0], Duration::ZERO);
        assert_eq!(
            times[1],
            Duration::from_millis(201),
            "200 ms + the 0.5 % margin"
        );
        assert_eq!(times[599], Duration::from_millis(599 * 201));
    }

    #[test]
    fn burst_goes_out_at_once() {
        let times = schedule(60, 5, 6);
        assert!(times[..5].iter().all(|t| t.is_zero()));
        assert!(times[5] > Duration::ZERO);
    }

    #[test]
    fn retry_after_block_delays_everyone() {
        let mut gcra = Gcra::new(nz(600), nz(1));
        assert_eq!(gcra.reserve(Duration::ZERO), Duration::ZERO);
        gcra.block_until(Duration::from_secs(7));
        assert_eq!(
            gcra.reserve(Duration::from_millis(150)),
            Duration::from_millis(6850)
        );
    }

    proptest! {
        /// No half-open 60 s window ever holds more than the declared rate, whatever the burst
        /// and however irregularly requests arrive.
        #[test]
        fn never_more_than_declared_in_any_minute(
            rate in 1u32..400,
            burst in 1u32..20,
            gaps in proptest::collection::vec(0u64..3_000, 1..600),
        ) {
            let mut gcra = Gcra::new(nz(rate), nz(burst));
            let mut arrival = Duration::ZERO;
            let mut sent = Vec::with_capacity(gaps.len());
            for gap in gaps {
                arrival += Duration::from_millis(gap);
                let at = arrival.max(sent.last().copied().unwrap_or_default());
                let wait = gcra.reserve(at);
                sent.push(at + wait);
            }
            let window = Duration::from_secs(60);
            for (i, start) in sent.iter().enumerate() {
                let in_window = sent[i..].iter().take_while(|t| **t < *start + window).count();
                prop_assert!(in_window <= rate as usize, "{in_window} > {rate} in the window from {start:?}");
                // Closed windows too (an upstream counting both ends).
                let closed = sent[i..].iter().take_while(|t| **t <= *start + window).count();
                prop_assert!(closed <= rate as usize, "{closed} > {rate} in the closed window from {start:?}");
            }
        }
    }
}
