//! The heartbeat detector on a simulated lossy, jittery link, in virtual
//! time: hours of probing run in a second, so false failovers per hour can
//! be counted where a real link would need days (and where the kernel has
//! no `tc netem`; see the README).
//!
//! The link loses each datagram with probability `loss` in each direction
//! and delays it by `delay ± jitter` (uniform, independently per datagram,
//! so datagrams may overtake each other, as with netem's `delay D J`). The
//! gatekeeper answers every probe that reaches it after `service`.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use proxy_user::gatekeeper::{Health, Heartbeat, HeartbeatConfig};

/// One direction's impairment (both directions get the same).
#[derive(Clone, Copy, Debug)]
pub struct Link {
    /// Probability that a datagram is lost.
    pub loss: f64,
    /// Mean one-way delay.
    pub delay: Duration,
    /// Half-width of the uniform spread around `delay`.
    pub jitter: Duration,
}

/// What a run saw.
#[derive(Clone, Copy, Debug, Default)]
pub struct Report {
    /// Transitions to Down of a gatekeeper that never failed.
    pub false_downs: u64,
    /// Probes sent.
    pub probes: u64,
    /// Virtual time simulated.
    pub simulated: Duration,
}

impl Report {
    /// False failovers per simulated hour.
    pub fn per_hour(&self) -> f64 {
        self.false_downs as f64 * 3600.0 / self.simulated.as_secs_f64().max(1e-9)
    }
}

/// Which detector runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Detector {
    /// [`Heartbeat`] as the proxy runs it.
    Adaptive,
    /// The baseline: a probe every interval, down after
    /// `interval × multiplier` without an answer, whatever the link does
    /// (the proxy's detector before it measured round trips and loss).
    FixedSilence,
}

/// A small deterministic generator (SplitMix64): runs are repeatable.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// Seeded generator.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

impl Link {
    /// One datagram's fate: `None` when lost, else its delay.
    pub fn one_way(&self, rng: &mut Rng) -> Option<Duration> {
        if rng.unit() < self.loss {
            return None;
        }
        let spread = self.jitter.as_secs_f64() * (2.0 * rng.unit() - 1.0);
        Some(Duration::from_secs_f64(
            (self.delay.as_secs_f64() + spread).max(0.0),
        ))
    }
}

/// The detector probing a gatekeeper over a simulated link, one event at
/// a time: a probe timer or an answer's arrival, whichever comes first.
struct Prober {
    hb: Heartbeat,
    /// Answers in flight: (arrival, sent).
    answers: BinaryHeap<Reverse<(Instant, Instant)>>,
    link: Link,
    service: Duration,
}

/// What one [`Prober::step`] did.
enum Step {
    /// Virtual time reached the limit.
    End,
    /// An answer arrived, or a timer fired (with `probed` if a probe went
    /// out), at `now`.
    At { now: Instant, probed: bool },
}

impl Prober {
    fn new(cfg: HeartbeatConfig, link: Link, service: Duration, t0: Instant) -> Self {
        Self {
            hb: Heartbeat::new(cfg, t0),
            answers: BinaryHeap::new(),
            link,
            service,
        }
    }

    /// Advance to the next event before `limit`; a probe gets an answer
    /// (if neither it nor the answer is lost) only while `alive(now)`.
    fn step(&mut self, limit: Instant, rng: &mut Rng, alive: impl Fn(Instant) -> bool) -> Step {
        let wake = self.hb.poll_timeout();
        let next_answer = self.answers.peek().map(|Reverse((at, _))| *at);
        let now = match next_answer {
            Some(a) if a <= wake => a,
            _ => wake,
        };
        if now >= limit {
            return Step::End;
        }
        if next_answer == Some(now) {
            // An answer already on its way when the gatekeeper died still
            // arrives.
            if let Some(Reverse((at, sent))) = self.answers.pop() {
                self.hb.rtt_sample(at - sent);
                self.hb.handle_reply(at);
            }
            return Step::At { now, probed: false };
        }
        let probed = self.hb.handle_timeout(now);
        if probed
            && alive(now)
            && let (Some(up), Some(down)) = (self.link.one_way(rng), self.link.one_way(rng))
        {
            self.answers
                .push(Reverse((now + up + self.service + down, now)));
        }
        Step::At { now, probed }
    }
}

/// Probe a gatekeeper that stays alive for `length` of virtual time over
/// `link` and count how often the detector calls it down.
pub fn false_failovers(
    detector: Detector,
    cfg: HeartbeatConfig,
    link: Link,
    service: Duration,
    length: Duration,
    seed: u64,
) -> Report {
    let mut rng = Rng::new(seed);
    let t0 = Instant::now();
    let end = t0 + length;
    let mut report = Report {
        simulated: length,
        ..Report::default()
    };
    match detector {
        Detector::Adaptive => {
            let mut p = Prober::new(cfg, link, service, t0);
            let mut was = Health::Up;
            // Bounded by the virtual clock, which only moves forward.
            while let Step::At { probed, .. } = p.step(end, &mut rng, |_| true) {
                if probed {
                    report.probes += 1;
                }
                let h = p.hb.health();
                if h == Health::Down && was != Health::Down {
                    report.false_downs += 1;
                }
                was = h;
            }
        }
        Detector::FixedSilence => {
            let deadline = cfg.interval * cfg.multiplier.max(1);
            let mut last_heard = t0;
            let mut down = false;
            let mut arrivals: BinaryHeap<Reverse<Instant>> = BinaryHeap::new();
            let mut t = t0 + cfg.interval;
            while t < end {
                while let Some(Reverse(a)) = arrivals.peek().copied() {
                    if a > t {
                        break;
                    }
                    arrivals.pop();
                    if !down && a - last_heard >= deadline {
                        report.false_downs += 1;
                    }
                    last_heard = last_heard.max(a);
                    down = false;
                }
                if !down && t - last_heard >= deadline {
                    down = true;
                    report.false_downs += 1;
                }
                report.probes += 1;
                if let (Some(up), Some(back)) = (link.one_way(&mut rng), link.one_way(&mut rng)) {
                    arrivals.push(Reverse(t + up + service + back));
                }
                t += cfg.interval;
            }
        }
    }
    report
}

/// Kill a gatekeeper `trials` times (after a warm-up of probing over
/// `link`) and return the detector's times to Down, sorted.
pub fn detection_times(
    cfg: HeartbeatConfig,
    link: Link,
    service: Duration,
    trials: u32,
    seed: u64,
) -> Vec<Duration> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::with_capacity(trials as usize);
    for _ in 0..trials {
        let t0 = Instant::now();
        let mut p = Prober::new(cfg, link, service, t0);
        // Warm up for 10..20 s so the round trip and loss are learnt, and
        // the kill falls anywhere in the probe cycle.
        let kill = t0 + Duration::from_secs_f64(10.0 + 10.0 * rng.unit());
        let limit = kill + Duration::from_secs(60);
        while let Step::At { now, .. } = p.step(limit, &mut rng, |t| t < kill) {
            if now >= kill && p.hb.health() == Health::Down {
                out.push(now - kill);
                break;
            }
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULT: HeartbeatConfig = HeartbeatConfig {
        interval: Duration::from_millis(40),
        multiplier: 3,
    };

    fn link(loss: f64, jitter_ms: u64) -> Link {
        Link {
            loss,
            delay: Duration::from_millis(jitter_ms),
            jitter: Duration::from_millis(jitter_ms),
        }
    }

    #[test]
    fn a_clean_link_never_goes_down() {
        let r = false_failovers(
            Detector::Adaptive,
            DEFAULT,
            link(0.0, 0),
            Duration::from_micros(200),
            Duration::from_secs(600),
            1,
        );
        assert_eq!(r.false_downs, 0);
        // Idle gatekeeper: one probe per interval.
        assert!((600 * 25 - 1..=600 * 25).contains(&r.probes), "{r:?}");
    }

    #[test]
    fn five_percent_loss_and_jitter_for_an_hour_no_false_failover() {
        let hour = Duration::from_secs(3600);
        let svc = Duration::from_micros(200);
        let adaptive = false_failovers(Detector::Adaptive, DEFAULT, link(0.05, 20), svc, hour, 7);
        let fixed = false_failovers(
            Detector::FixedSilence,
            DEFAULT,
            link(0.05, 20),
            svc,
            hour,
            7,
        );
        assert_eq!(adaptive.false_downs, 0, "{adaptive:?}");
        // The same link makes a fixed-silence detector cry wolf: the
        // simulation is not simply harmless.
        assert!(fixed.false_downs > 10, "{fixed:?}");
    }

    #[test]
    fn a_dead_gatekeeper_is_still_found() {
        let t = detection_times(DEFAULT, link(0.0, 0), Duration::from_micros(200), 50, 3);
        assert_eq!(t.len(), 50);
        // Clean link: first probe within an interval, its timeout, then the
        // remaining misses half an interval apart.
        assert!(
            *t.last().unwrap() <= Duration::from_millis(40 + 40 + 40 + 20),
            "{t:?}"
        );
        let lossy = detection_times(DEFAULT, link(0.05, 20), Duration::from_micros(200), 50, 3);
        assert_eq!(lossy.len(), 50, "every kill detected within a minute");
    }
}
