//! Gatekeeper liveness: a sans-I/O heartbeat failure detector.
//!
//! The driver tells it when a probe went out and when anything came back
//! from the gatekeeper (a RAS reply, a signalling segment) or the transport
//! failed (TCP RST/FIN, ICMP unreachable); it answers with the state (up,
//! suspect, down), when the next probe is due, and when the next deadline
//! is. Time is always passed in, so every transition is unit-tested with
//! made-up instants.

use std::time::{Duration, Instant};

/// Liveness state of one gatekeeper.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    /// Replies arrive within the probe interval.
    Up,
    /// At least one interval passed with no reply.
    Suspect,
    /// `multiplier` intervals passed with no reply, or the transport failed.
    Down,
}

/// Detector settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeartbeatConfig {
    /// Time between probes (e.g. a lightweight RRQ for the proxy's own
    /// registration).
    pub interval: Duration,
    /// Missed intervals before the gatekeeper is down: detection takes at
    /// most `interval * multiplier`.
    pub multiplier: u32,
}

/// One gatekeeper's failure detector.
#[derive(Clone, Debug)]
pub struct Heartbeat {
    cfg: HeartbeatConfig,
    last_heard: Instant,
    next_probe: Instant,
    health: Health,
    /// Since when the gatekeeper has been continuously up (for fail-back
    /// hold times); `None` while it is not up.
    up_since: Option<Instant>,
    /// When the last probe went out.
    last_probe: Instant,
    /// Longest time between probes even while the gatekeeper keeps
    /// talking (the probe also refreshes the proxy's own registration).
    max_quiet: Option<Duration>,
}

impl Heartbeat {
    /// A detector that starts Up at `now` (the gatekeeper just answered a
    /// registration) and probes first at `now + interval`.
    pub fn new(cfg: HeartbeatConfig, now: Instant) -> Self {
        let cfg = HeartbeatConfig {
            multiplier: cfg.multiplier.max(1),
            ..cfg
        };
        Self {
            cfg,
            last_heard: now,
            next_probe: now + cfg.interval,
            health: Health::Up,
            up_since: Some(now),
            last_probe: now,
            max_quiet: None,
        }
    }

    /// Probe at least this often even while the gatekeeper is heard
    /// otherwise (its registration of the proxy must not lapse).
    pub fn set_max_quiet(&mut self, max: Duration) {
        self.max_quiet = Some(max);
    }

    /// A detector for a gatekeeper not heard from yet: Down, probing at once.
    pub fn new_down(cfg: HeartbeatConfig, now: Instant) -> Self {
        let mut hb = Self::new(cfg, now);
        hb.health = Health::Down;
        hb.up_since = None;
        hb.next_probe = now;
        hb.last_heard = now
            .checked_sub(hb.cfg.interval * hb.cfg.multiplier)
            .unwrap_or(now);
        hb
    }

    /// Change the interval and multiplier (configuration reload); the next
    /// probe keeps its time.
    pub fn set_config(&mut self, cfg: HeartbeatConfig) {
        self.cfg = HeartbeatConfig {
            multiplier: cfg.multiplier.max(1),
            ..cfg
        };
    }

    /// Current state (after [`Heartbeat::handle_timeout`] for `now`).
    pub fn health(&self) -> Health {
        self.health
    }

    /// How long the gatekeeper has been continuously up at `now`.
    pub fn up_for(&self, now: Instant) -> Option<Duration> {
        self.up_since.map(|t| now.saturating_duration_since(t))
    }

    /// Anything arrived from the gatekeeper.
    pub fn handle_reply(&mut self, now: Instant) {
        self.last_heard = now;
        if self.health != Health::Up {
            self.up_since = Some(now);
        }
        self.health = Health::Up;
    }

    /// Traffic from the gatekeeper was seen at `at` (by the kernel's
    /// liveness map). Keeps an up or suspect gatekeeper alive; a down one
    /// stays down until it answers a probe.
    pub fn handle_seen(&mut self, at: Instant) {
        if self.health != Health::Down && at > self.last_heard {
            self.handle_reply(at);
        }
    }

    /// The transport reported the gatekeeper unreachable: down at once.
    pub fn handle_transport_error(&mut self) {
        self.health = Health::Down;
        self.up_since = None;
    }

    /// A hint that the gatekeeper may be gone (its TCP connection closed
    /// mid-call): probe at once and call it down if that probe goes
    /// unanswered for one interval, instead of interval × multiplier.
    pub fn expedite(&mut self, now: Instant) {
        let back = self.cfg.interval * self.cfg.multiplier.saturating_sub(1);
        self.last_heard = self.last_heard.min(now.checked_sub(back).unwrap_or(now));
        self.next_probe = now;
        if self.health == Health::Up {
            self.health = Health::Suspect;
            self.up_since = None;
        }
    }

    /// Advance to `now`: update the state from elapsed silence and return
    /// `true` when a probe is due (the driver sends it). A gatekeeper heard
    /// within the last half interval (any RAS answer, any signalling the
    /// kernel saw) is not probed: probes fill silence only, so a busy gatekeeper
    /// gets none beyond the refresh of the proxy's own registration.
    pub fn handle_timeout(&mut self, now: Instant) -> bool {
        let silent = now.saturating_duration_since(self.last_heard);
        let down_after = self.cfg.interval * self.cfg.multiplier;
        if self.health != Health::Down {
            if silent >= down_after {
                self.health = Health::Down;
                self.up_since = None;
            } else if silent > self.cfg.interval + self.cfg.interval / 2 {
                self.health = Health::Suspect;
                self.up_since = None;
            }
        }
        if now >= self.next_probe {
            // Keep the probe grid; skip missed slots instead of bursting.
            while self.next_probe <= now {
                self.next_probe += self.cfg.interval;
            }
            // Heard within half an interval: not the answer to the last
            // probe (that came an interval ago), so other traffic shows
            // it alive and this probe would add nothing.
            let heard = self.health == Health::Up
                && now.saturating_duration_since(self.last_heard) < self.cfg.interval / 2;
            let overdue = self
                .max_quiet
                .is_some_and(|m| now.saturating_duration_since(self.last_probe) >= m);
            if heard && !overdue {
                return false;
            }
            self.last_probe = now;
            return true;
        }
        false
    }

    /// The next instant [`Heartbeat::handle_timeout`] must be called.
    pub fn poll_timeout(&self) -> Instant {
        let down_at = self.last_heard + self.cfg.interval * self.cfg.multiplier;
        if self.health == Health::Down {
            self.next_probe
        } else {
            self.next_probe.min(down_at)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn cfg() -> HeartbeatConfig {
        HeartbeatConfig {
            interval: 50 * MS,
            multiplier: 3,
        }
    }

    #[test]
    fn answered_probes_keep_it_up() {
        let t0 = Instant::now();
        let mut hb = Heartbeat::new(cfg(), t0);
        for i in 1..=10 {
            let now = t0 + i * 50 * MS;
            assert!(hb.handle_timeout(now), "probe due at {i}");
            hb.handle_reply(now + 2 * MS);
            assert_eq!(hb.health(), Health::Up);
        }
        assert_eq!(hb.up_for(t0 + 600 * MS), Some(600 * MS));
    }

    #[test]
    fn silence_goes_suspect_then_down_within_interval_times_multiplier() {
        let t0 = Instant::now();
        let mut hb = Heartbeat::new(cfg(), t0);
        let mut now = t0;
        let mut down_at = None;
        // Drive it as a driver would: sleep until poll_timeout, bounded.
        for _ in 0..20 {
            now = hb.poll_timeout();
            hb.handle_timeout(now);
            if hb.health() == Health::Suspect {
                assert!(now - t0 > 50 * MS);
            }
            if hb.health() == Health::Down {
                down_at = Some(now);
                break;
            }
        }
        let down_at = down_at.expect("went down");
        assert!(
            down_at - t0 <= 150 * MS,
            "detected after {:?}",
            down_at - t0
        );
        assert_eq!(hb.up_for(now), None);
    }

    #[test]
    fn transport_error_is_down_at_once_and_a_reply_brings_it_back() {
        let t0 = Instant::now();
        let mut hb = Heartbeat::new(cfg(), t0);
        hb.handle_transport_error();
        assert_eq!(hb.health(), Health::Down);
        // Down stays down through timeouts until something is heard.
        hb.handle_timeout(t0 + 10 * MS);
        assert_eq!(hb.health(), Health::Down);
        hb.handle_reply(t0 + 20 * MS);
        assert_eq!(hb.health(), Health::Up);
        assert_eq!(hb.up_for(t0 + 120 * MS), Some(100 * MS));
    }

    #[test]
    fn an_expedited_check_is_down_after_one_unanswered_interval() {
        let t0 = Instant::now();
        let mut hb = Heartbeat::new(cfg(), t0);
        hb.expedite(t0 + 10 * MS);
        assert_eq!(hb.health(), Health::Suspect);
        assert!(hb.handle_timeout(t0 + 10 * MS), "probe at once");
        hb.handle_timeout(t0 + 61 * MS);
        assert_eq!(hb.health(), Health::Down);
        // A reply in time would have kept it: check on a fresh detector.
        let mut hb = Heartbeat::new(cfg(), t0);
        hb.expedite(t0 + 10 * MS);
        hb.handle_reply(t0 + 12 * MS);
        hb.handle_timeout(t0 + 61 * MS);
        assert_eq!(hb.health(), Health::Up);
    }

    #[test]
    fn a_gatekeeper_heard_otherwise_is_probed_only_to_refresh() {
        let t0 = Instant::now();
        let mut hb = Heartbeat::new(cfg(), t0);
        hb.set_max_quiet(Duration::from_secs(1));
        let mut probes = 0;
        // Other traffic from the gatekeeper every 20 ms for 3 s.
        for i in 1..=150u32 {
            let now = t0 + i * 20 * MS;
            hb.handle_reply(now);
            if hb.handle_timeout(now + MS) {
                probes += 1;
            }
            assert_eq!(hb.health(), Health::Up);
        }
        assert_eq!(probes, 3, "one refresh a second, no heartbeat probes");
        // Silence: probes resume at once, every interval.
        let quiet = t0 + 3020 * MS;
        let sent = (1..=3u32)
            .filter(|k| hb.handle_timeout(quiet + *k * 50 * MS))
            .count();
        assert_eq!(sent, 3);
    }

    #[test]
    fn a_late_wake_up_sends_one_probe_not_a_burst() {
        let t0 = Instant::now();
        let mut hb = Heartbeat::new(cfg(), t0);
        assert!(hb.handle_timeout(t0 + 500 * MS));
        assert!(!hb.handle_timeout(t0 + 501 * MS));
        assert!(hb.poll_timeout() > t0 + 500 * MS);
    }
}
