//! Resource usage of the current process: CPU time (`CLOCK_PROCESS_CPUTIME_ID`, every thread,
//! user + system), its user/system split (`/proc/self/stat`, in clock ticks) and the peak
//! resident set size (`VmHWM` in `/proc/self/status`).

use std::time::Duration;

use rustix::time::{ClockId, clock_gettime};
use serde::{Deserialize, Serialize};

/// What the process used so far.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub(crate) struct Usage {
    /// User + system CPU time of every thread, in milliseconds.
    pub(crate) cpu_ms: f64,
    /// User CPU time (10 ms resolution).
    pub(crate) user_ms: f64,
    /// System CPU time (10 ms resolution).
    pub(crate) sys_ms: f64,
    /// Peak resident set size (`VmHWM`), KiB.
    pub(crate) peak_rss_kib: u64,
    /// Resident set size now (`VmRSS`), KiB.
    pub(crate) rss_kib: u64,
}

/// The process's usage now.
pub(crate) fn usage() -> Usage {
    let cpu = clock_gettime(ClockId::ProcessCPUTime);
    let cpu = Duration::new(
        u64::try_from(cpu.tv_sec).unwrap_or(0),
        u32::try_from(cpu.tv_nsec).unwrap_or(0),
    );
    let (user_ms, sys_ms) = user_sys_ms().unwrap_or_default();
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    Usage {
        cpu_ms: cpu.as_secs_f64() * 1e3,
        user_ms,
        sys_ms,
        peak_rss_kib: status_kib(&status, "VmHWM:").unwrap_or(0),
        rss_kib: status_kib(&status, "VmRSS:").unwrap_or(0),
    }
}

/// A `… kB` field of `/proc/self/status`.
fn status_kib(status: &str, field: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// `utime` and `stime` of `/proc/self/stat` (fields 14 and 15), at `USER_HZ` = 100.
fn user_sys_ms() -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may contain spaces; fields after it follow the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3, so field n is fields[n - 3].
    let ticks = |n: usize| fields.get(n - 3)?.parse::<f64>().ok();
    Some((ticks(14)? * 10.0, ticks(15)? * 10.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_its_own_usage() {
        let spin: u64 = (0..2_000_000u64).fold(0, |a, b| a.wrapping_add(b * b));
        assert!(spin > 0);
        let usage = usage();
        assert!(usage.cpu_ms > 0.0);
        assert!(usage.peak_rss_kib > 0 && usage.peak_rss_kib >= usage.rss_kib);
    }
}
