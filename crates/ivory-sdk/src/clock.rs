//! The clock every wait of the SDK goes through.
//!
//! Pacing, backoff, `Retry-After` and `ctx.sleep` all sleep on [`Clock`], which is built on
//! tokio's timer. Under `#[tokio::test(start_paused = true)]` time is virtual: a two-minute
//! pacing test runs in milliseconds and measures exactly. Wall-clock time ([`Clock::now`]) is a
//! fixed origin plus the monotonic time elapsed since the clock was made, so it advances with the
//! virtual clock too.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

/// Monotonic and wall time, and sleeping, for one sync (or one process).
#[derive(Debug, Clone)]
pub struct Clock {
    origin_wall: Timestamp,
    origin: tokio::time::Instant,
}

impl Clock {
    /// A clock whose wall time starts at the system time now.
    pub fn system() -> Self {
        Self::starting_at(Timestamp::now())
    }

    /// A clock whose wall time starts at `origin` (deterministic tests).
    pub fn starting_at(origin: Timestamp) -> Self {
        Self {
            origin_wall: origin,
            origin: tokio::time::Instant::now(),
        }
    }

    /// Monotonic time since this clock was made.
    pub fn elapsed(&self) -> Duration {
        self.origin.elapsed()
    }

    /// Wall time now.
    pub fn now(&self) -> Timestamp {
        let elapsed = SignedDuration::try_from(self.elapsed()).unwrap_or(SignedDuration::MAX);
        self.origin_wall
            .checked_add(elapsed)
            .unwrap_or(Timestamp::MAX)
    }

    /// Sleeps for `duration` (virtual under paused tokio time).
    pub async fn sleep(&self, duration: Duration) {
        if !duration.is_zero() {
            tokio::time::sleep(duration).await;
        }
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::system()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn wall_time_follows_virtual_time() {
        let origin: Timestamp = "2026-01-01T00:00:00Z".parse().expect("timestamp");
        let clock = Clock::starting_at(origin);
        clock.sleep(Duration::from_secs(90)).await;
        assert_eq!(clock.now().to_string(), "2026-01-01T00:01:30Z");
        assert_eq!(clock.elapsed(), Duration::from_secs(90));
    }
}
