//! The clock the guard reads on every request to tell a stale snapshot.
//!
//! Where the system offers a coarse monotonic clock (Linux:
//! `CLOCK_MONOTONIC_COARSE`, a few milliseconds' resolution, read without
//! the time stamp counter) it is used: the staleness bound it is compared
//! with is counted in seconds, and the precise clock cost a tenth of a
//! guarded request.

/// Milliseconds on a monotonic clock since an unspecified start; never
/// decreases within a process.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn monotonic_ms() -> u64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::MonotonicCoarse);
    let seconds = u64::try_from(now.tv_sec).unwrap_or(0);
    let millis = u64::try_from(now.tv_nsec).unwrap_or(0) / 1_000_000;
    seconds.saturating_mul(1000).saturating_add(millis)
}

/// Milliseconds on a monotonic clock since an unspecified start; never
/// decreases within a process.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) fn monotonic_ms() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let elapsed = START.get_or_init(std::time::Instant::now).elapsed();
    u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_clock_moves_forward_in_milliseconds() {
        let before = super::monotonic_ms();
        std::thread::sleep(std::time::Duration::from_millis(50));
        let after = super::monotonic_ms();
        assert!(
            (40..1000).contains(&(after - before)),
            "50 ms of sleep read as {} ms",
            after - before
        );
    }
}
