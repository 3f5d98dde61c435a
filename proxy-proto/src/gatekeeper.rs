//! Gatekeeper liveness: a sans-I/O heartbeat failure detector.
//!
//! The driver tells it when a probe went out and when anything came back
//! from the gatekeeper (a RAS reply, a signalling segment) or the transport
//! failed (TCP RST/FIN, ICMP unreachable); it answers with the state (up,
//! suspect, down), when the next probe is due, and when the next deadline
//! is. Time is always passed in, so every transition is unit-tested with
//! made-up instants, and the benchmark runs it for simulated hours.
//!
//! It must not cry wolf: a failover moves every call's control, so a lost
//! datagram or a gatekeeper that is slow under load must not look like a
//! dead one. Three things keep it honest:
//! - a probe's timeout follows the measured round trip (RFC 6298's
//!   smoothed RTT + 4 × variance, at least one interval), so a gatekeeper
//!   that answers slowly is given the time it takes;
//! - once a probe goes unanswered, probes follow every half interval, and
//!   the gatekeeper is down only after `multiplier` probes in a row went
//!   unanswered *and* `interval × multiplier` of silence;
//! - the number of unanswered probes required grows with the loss the
//!   link has shown (misses that ended in an answer), so that a run of
//!   losses that long is expected less than once in ten million probes.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Liveness state of one gatekeeper.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    /// Replies arrive within the probe timeout.
    Up,
    /// At least one probe went unanswered.
    Suspect,
    /// Enough probes in a row went unanswered, or the transport failed.
    Down,
}

/// Detector settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeartbeatConfig {
    /// Time between probes (e.g. a lightweight RRQ for the proxy's own
    /// registration) while the gatekeeper is silent.
    pub interval: Duration,
    /// Unanswered probes in a row (at least; more on a lossy link) and
    /// intervals of silence before the gatekeeper is down.
    pub multiplier: u32,
}

/// Probability of a false alarm per run of probes the detector accepts:
/// the required run of misses is the shortest whose chance, at the loss
/// the link has shown, is below this.
const FALSE_ALARM: f64 = 1e-7;
/// Weights of one probe outcome in the two loss estimates: the fast one
/// learns a newly lossy link within a second or two, the slow one (a time
/// constant of ~40 s at one probe per 40 ms) keeps a link's loss in mind
/// through the lucky stretches between losses. The larger one counts.
const LOSS_GAIN_FAST: f64 = 1.0 / 32.0;
const LOSS_GAIN_SLOW: f64 = 1.0 / 1024.0;
/// The required run of misses is at most this many times `multiplier`.
const MAX_MISS_FACTOR: u32 = 4;
/// A probe timeout never exceeds this, whatever the round trip showed:
/// detection must stay bounded.
const MAX_PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// Probes remembered while unanswered (a down gatekeeper is probed forever).
const MAX_OUTSTANDING: usize = 64;
/// The most a probe waits for requests queued ahead of it at the
/// gatekeeper (see [`Heartbeat::queued_behind`]).
const MAX_QUEUE_ALLOWANCE: Duration = Duration::from_secs(5);

/// One gatekeeper's failure detector.
#[derive(Clone, Debug)]
pub struct Heartbeat {
    cfg: HeartbeatConfig,
    last_heard: Instant,
    next_probe: Instant,
    /// The latest hint taken ([`Heartbeat::expedite`]): at most one an
    /// interval.
    last_hint: Option<Instant>,
    health: Health,
    /// Since when the gatekeeper has been continuously up (for fail-back
    /// hold times); `None` while it is not up.
    up_since: Option<Instant>,
    /// When the last probe went out.
    last_probe: Instant,
    /// Longest time between probes even while the gatekeeper keeps
    /// talking (the probe also refreshes the proxy's own registration).
    max_quiet: Option<Duration>,
    /// Probes not answered yet and not timed out: when each went out, and
    /// the extra time it may wait behind requests queued ahead of it.
    outstanding: VecDeque<(Instant, Duration)>,
    /// Smoothed time between answers from the gatekeeper, and the last
    /// one: its pace, which says how long a queue of requests takes.
    answer_gap: Option<Duration>,
    last_answer: Option<Instant>,
    /// Probes in a row that timed out unanswered.
    missed: u32,
    /// Send instant of the last probe that timed out.
    last_missed: Option<Instant>,
    /// Smoothed round trip and its variation (RFC 6298), from answers.
    srtt: Option<Duration>,
    rttvar: Duration,
    /// Estimated probability that a probe or its answer is lost (fast and
    /// slow moving averages).
    loss: [f64; 2],
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
            last_hint: None,
            health: Health::Up,
            up_since: Some(now),
            last_probe: now,
            max_quiet: None,
            outstanding: VecDeque::new(),
            answer_gap: None,
            last_answer: None,
            missed: 0,
            last_missed: None,
            srtt: None,
            rttvar: Duration::ZERO,
            loss: [0.0; 2],
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

    /// Smoothed round trip of the gatekeeper's answers, once measured.
    pub fn srtt(&self) -> Option<Duration> {
        self.srtt
    }

    /// Estimated probability that a probe or its answer is lost.
    pub fn loss(&self) -> f64 {
        self.loss[0].max(self.loss[1])
    }

    fn learn_loss(&mut self, lost: bool) {
        let x = if lost { 1.0 } else { 0.0 };
        for (l, gain) in self.loss.iter_mut().zip([LOSS_GAIN_FAST, LOSS_GAIN_SLOW]) {
            *l += (x - *l) * gain;
        }
    }

    /// How long an answer to a probe is waited for: the measured round
    /// trip plus four times its variation (at least half an interval), at
    /// least one interval, at most a second.
    pub fn probe_timeout(&self) -> Duration {
        // RFC 6298's clock granularity term, at half an interval: a steady
        // round trip (no variance) still gets slack beyond itself.
        let slack = (4 * self.rttvar).max(self.cfg.interval / 2);
        let measured = self.srtt.map_or(Duration::ZERO, |s| s + slack);
        measured.min(MAX_PROBE_TIMEOUT).max(self.cfg.interval)
    }

    /// Unanswered probes in a row that make the gatekeeper down: at least
    /// `multiplier`, more when the link has been losing probes.
    pub fn misses_needed(&self) -> u32 {
        let m = self.cfg.multiplier;
        let q = self.loss().clamp(0.0, 0.5);
        let k = if q <= f64::EPSILON {
            0
        } else {
            // Runs of k losses happen with probability q^k.
            (FALSE_ALARM.ln() / q.ln()).ceil() as u32
        };
        k.clamp(m, m * MAX_MISS_FACTOR)
    }

    /// A request to the gatekeeper (probe or relayed) was answered after
    /// `rtt`. Feeds the probe timeout, so a gatekeeper slowed by load is
    /// given the time it now takes. A request answered after
    /// requestInProgress is measured from that RIP.
    pub fn rtt_sample(&mut self, rtt: Duration) {
        match self.srtt {
            None => {
                self.srtt = Some(rtt);
                self.rttvar = rtt / 2;
            }
            Some(s) => {
                let diff = s.abs_diff(rtt);
                self.rttvar = (self.rttvar * 3 + diff) / 4;
                self.srtt = Some((s * 7 + rtt) / 8);
            }
        }
    }

    /// Anything arrived from the gatekeeper.
    pub fn handle_reply(&mut self, now: Instant) {
        if let Some(last) = self.last_answer {
            let gap = now.saturating_duration_since(last);
            self.answer_gap = Some(match self.answer_gap {
                None => gap,
                Some(g) => (g * 7 + gap) / 8,
            });
        }
        self.last_answer = Some(self.last_answer.map_or(now, |l| l.max(now)));
        self.heard(now);
    }

    /// The probe just sent (after [`Heartbeat::handle_timeout`] returned
    /// `true`) is queued at the gatekeeper behind `requests` of the
    /// proxy's own that it has not answered yet (re-registrations after a
    /// control move, relayed requests). It may wait as long as the
    /// gatekeeper takes to answer that many at the pace it has been
    /// answering (at most 5 s), so a gatekeeper working through a queue is
    /// not taken for a dead one; with nothing queued, nothing changes.
    pub fn queued_behind(&mut self, requests: usize) {
        let Some(gap) = self.answer_gap else { return };
        let allowance = gap
            .saturating_mul(u32::try_from(requests).unwrap_or(u32::MAX))
            .min(MAX_QUEUE_ALLOWANCE);
        if let Some(last) = self.outstanding.back_mut() {
            last.1 = allowance;
        }
    }

    /// Traffic from the gatekeeper was seen at `at` (by the kernel's
    /// liveness map). Keeps an up or suspect gatekeeper alive; a down one
    /// stays down until it answers a probe.
    pub fn handle_seen(&mut self, at: Instant) {
        if self.health != Health::Down && at > self.last_heard {
            self.heard(at);
        }
    }

    fn heard(&mut self, at: Instant) {
        self.last_heard = self.last_heard.max(at);
        // Probes sent by `at` are answered; later ones still wait.
        let before = self.outstanding.len();
        self.outstanding.retain(|(sent, _)| *sent > at);
        let answered = before > self.outstanding.len();
        if self.last_missed.is_some_and(|m| m <= at) {
            // The gatekeeper was alive after those probes went
            // unanswered: they were lost, which the estimate learns. (A run
            // that ended in Down is not counted: that was no loss.)
            if self.health != Health::Down {
                for _ in 0..self.missed {
                    self.learn_loss(true);
                }
            }
            self.missed = 0;
            self.last_missed = None;
        }
        if answered {
            self.learn_loss(false);
        }
        if self.missed == 0 {
            if self.health != Health::Up {
                self.up_since = Some(at);
            }
            self.health = Health::Up;
        }
    }

    /// A hint that the gatekeeper may be gone (its TCP connection closed
    /// mid-call, an ICMP unreachable): probe at once and call it down if
    /// that probe goes unanswered, instead of waiting for a whole run of
    /// misses. A hint is never a verdict: anyone can forge one, and an
    /// answer to the probe undoes it. Hints are taken once an interval at
    /// most: a stream of forged hints sends one extra probe an interval,
    /// not a stream of them.
    pub fn expedite(&mut self, now: Instant) {
        if self
            .last_hint
            .is_some_and(|h| now.saturating_duration_since(h) < self.cfg.interval)
        {
            return;
        }
        self.last_hint = Some(now);
        let back = self.cfg.interval * self.cfg.multiplier.saturating_sub(1);
        self.last_heard = self.last_heard.min(now.checked_sub(back).unwrap_or(now));
        self.next_probe = now;
        if self.health != Health::Down {
            self.missed = self.missed.max(self.misses_needed().saturating_sub(1));
            self.last_missed = Some(self.last_missed.unwrap_or(now).min(now));
        }
        if self.health == Health::Up {
            self.health = Health::Suspect;
            self.up_since = None;
        }
    }

    /// Advance to `now`: update the state from unanswered probes and
    /// silence and return `true` when a probe is due (the driver sends it).
    /// A gatekeeper heard within the last half interval (any RAS answer,
    /// any signalling the kernel saw) is not probed: probes fill silence
    /// only, so a busy gatekeeper gets none beyond the refresh of the
    /// proxy's own registration.
    pub fn handle_timeout(&mut self, now: Instant) -> bool {
        let timeout = self.probe_timeout();
        while let Some(i) = self
            .outstanding
            .iter()
            .position(|(sent, extra)| now >= *sent + timeout + *extra)
        {
            let (sent, _) = self.outstanding.remove(i).expect("found");
            self.missed = self.missed.saturating_add(1);
            self.last_missed = Some(self.last_missed.map_or(sent, |m| m.max(sent)));
            if self.health == Health::Up {
                // Retry at once, then every half interval.
                self.health = Health::Suspect;
                self.up_since = None;
                self.next_probe = now;
            }
        }
        let silent = now.saturating_duration_since(self.last_heard);
        if self.health != Health::Down
            && self.missed >= self.misses_needed()
            && silent >= self.cfg.interval * self.cfg.multiplier
        {
            self.health = Health::Down;
            self.up_since = None;
        }
        if now >= self.next_probe {
            let gap = if self.health == Health::Suspect {
                self.cfg.interval / 2
            } else {
                self.cfg.interval
            }
            .max(Duration::from_millis(1));
            // Keep the probe grid; skip missed slots instead of bursting.
            while self.next_probe <= now {
                self.next_probe += gap;
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
            if self.outstanding.len() >= MAX_OUTSTANDING {
                self.outstanding.pop_front();
            }
            self.outstanding.push_back((now, Duration::ZERO));
            return true;
        }
        false
    }

    /// The next instant [`Heartbeat::handle_timeout`] must be called.
    pub fn poll_timeout(&self) -> Instant {
        let mut t = self.next_probe;
        if self.health != Health::Down {
            let timeout = self.probe_timeout();
            if let Some(due) = self
                .outstanding
                .iter()
                .map(|(s, e)| *s + timeout + *e)
                .min()
            {
                t = t.min(due);
            }
            if self.missed >= self.misses_needed() {
                t = t.min(self.last_heard + self.cfg.interval * self.cfg.multiplier);
            }
        }
        t
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
    fn silence_goes_suspect_then_down_after_a_run_of_unanswered_probes() {
        let t0 = Instant::now();
        let mut hb = Heartbeat::new(cfg(), t0);
        let mut now = t0;
        let mut down_at = None;
        let mut probes = 0;
        // Drive it as a driver would: sleep until poll_timeout, bounded.
        for _ in 0..40 {
            now = hb.poll_timeout();
            if hb.handle_timeout(now) {
                probes += 1;
            }
            if hb.health() == Health::Suspect {
                assert!(now - t0 >= 100 * MS, "suspect only once a probe timed out");
            }
            if hb.health() == Health::Down {
                down_at = Some(now);
                break;
            }
        }
        let down_at = down_at.expect("went down");
        // First probe after an interval, its timeout (an interval), the
        // retries half an interval apart, the last one's timeout.
        assert_eq!(down_at - t0, 175 * MS);
        assert!(probes >= 3, "three unanswered probes, not just silence");
        assert_eq!(hb.up_for(now), None);
    }

    #[test]
    fn a_late_answer_is_life_and_teaches_the_round_trip() {
        let t0 = Instant::now();
        let mut hb = Heartbeat::new(cfg(), t0);
        // The gatekeeper answers every probe after 120 ms (busy): the first
        // probe times out, the answer still comes, the timeout grows.
        let mut now = t0;
        let mut answers: Vec<(Instant, Instant)> = Vec::new();
        for _ in 0..400 {
            let wake = hb.poll_timeout();
            let next = answers.iter().map(|a| a.0).min();
            now = match next {
                Some(a) if a <= wake => a,
                _ => wake,
            };
            if next == Some(now) {
                let i = answers.iter().position(|a| a.0 == now).unwrap();
                let (at, sent) = answers.remove(i);
                hb.rtt_sample(at - sent);
                hb.handle_reply(at);
            } else if hb.handle_timeout(now) {
                answers.push((now + 120 * MS, now));
            }
            assert_ne!(
                hb.health(),
                Health::Down,
                "slow is not dead (at {:?})",
                now - t0
            );
        }
        assert!(now - t0 > 5000 * MS);
        assert!(hb.probe_timeout() > 120 * MS, "{:?}", hb.probe_timeout());
        assert_eq!(hb.health(), Health::Up);
    }

    #[test]
    fn a_probe_queued_behind_requests_waits_for_them() {
        let t0 = Instant::now();
        let mut hb = Heartbeat::new(cfg(), t0);
        // The gatekeeper has been answering every 10 ms (a queue of
        // re-registrations); then a probe goes out behind 50 more.
        for i in 1..=20u32 {
            hb.handle_reply(t0 + i * 10 * MS);
        }
        let quiet = t0 + 200 * MS;
        let mut sent = false;
        for _ in 0..10 {
            let now = hb.poll_timeout();
            if hb.handle_timeout(now) {
                hb.queued_behind(50);
                sent = true;
                break;
            }
        }
        assert!(sent);
        // 50 answers at 10 ms each: half a second more than each probe's
        // own timeout (later probes queue behind the same requests). A
        // gatekeeper that never answers is still found, that much later.
        let mut down_at = None;
        for _ in 0..100 {
            let now = hb.poll_timeout();
            if hb.handle_timeout(now) {
                hb.queued_behind(50);
            }
            if hb.health() == Health::Down {
                down_at = Some(now - quiet);
                break;
            }
        }
        let down_at = down_at.expect("a silent gatekeeper still goes down");
        assert!(
            down_at >= 550 * MS,
            "down after {down_at:?}, inside the queue's time"
        );
        assert!(down_at <= 900 * MS, "down after {down_at:?}");
        // With nothing queued, silence is death again after the usual run.
        let mut fresh = Heartbeat::new(cfg(), t0);
        for i in 1..=20u32 {
            fresh.handle_reply(t0 + i * 10 * MS);
        }
        let mut now = quiet;
        for _ in 0..40 {
            now = fresh.poll_timeout();
            fresh.handle_timeout(now);
            if fresh.health() == Health::Down {
                break;
            }
        }
        assert_eq!(fresh.health(), Health::Down);
        assert!(now - quiet < 300 * MS, "{:?}", now - quiet);
    }

    #[test]
    fn losses_that_end_in_an_answer_raise_the_misses_needed() {
        let t0 = Instant::now();
        let mut hb = Heartbeat::new(cfg(), t0);
        assert_eq!(hb.misses_needed(), 3);
        let mut now = t0;
        // Every fifth probe lost, the others answered at once.
        let mut n = 0;
        for _ in 0..2000 {
            now = hb.poll_timeout();
            if hb.handle_timeout(now) {
                n += 1;
                if n % 5 != 0 {
                    hb.handle_reply(now + MS);
                }
            }
            assert_ne!(hb.health(), Health::Down);
        }
        assert!(hb.loss() > 0.1, "{}", hb.loss());
        assert!(hb.misses_needed() > 3, "{}", hb.misses_needed());
        assert!(hb.misses_needed() <= 12);
        // A gatekeeper that really dies is still found.
        let dead = now;
        for _ in 0..100 {
            now = hb.poll_timeout();
            hb.handle_timeout(now);
            if hb.health() == Health::Down {
                break;
            }
        }
        assert_eq!(hb.health(), Health::Down);
        assert!(now - dead < 1000 * MS, "{:?}", now - dead);
    }

    #[test]
    fn an_expedited_check_is_down_after_one_unanswered_interval() {
        let t0 = Instant::now();
        let mut hb = Heartbeat::new(cfg(), t0);
        hb.expedite(t0 + 10 * MS);
        assert_eq!(hb.health(), Health::Suspect);
        assert!(hb.handle_timeout(t0 + 10 * MS), "probe at once");
        hb.handle_timeout(t0 + 59 * MS);
        assert_eq!(hb.health(), Health::Suspect);
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
