//! The kernel's clock: `bpf_ktime_get_ns` readings from the maps turned
//! into the `Instant`s the state machines take.

/// CLOCK_MONOTONIC in ns, the clock of `bpf_ktime_get_ns` (and, at tick
/// resolution, of `bpf_ktime_get_coarse_ns`).
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The Instant of a `bpf_ktime_get_ns` reading (both are CLOCK_MONOTONIC
/// on Linux).
pub fn instant_of(ns: u64) -> std::time::Instant {
    let now = std::time::Instant::now();
    let ago = std::time::Duration::from_nanos(monotonic_ns().saturating_sub(ns));
    now.checked_sub(ago).unwrap_or(now)
}
