//! Budgets that every input from the endpoint LAN spends before it gets
//! any work: a token bucket per source address (RAS datagrams, new call
//! signalling connections) and caps on the connections held at once, in
//! total and per source address.
//!
//! The endpoint LAN is hostile: one host may send anything, as fast as its
//! link allows. These checks run before a byte is decoded, so a flood costs
//! a hash lookup per packet and never another source's budget. The table
//! of sources is bounded too: a host that sprays spoofed source addresses
//! fills it only up to its cap, after which new sources share one bucket
//! (and the sources already known keep theirs).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// A token bucket: `rate` tokens a second, at most `burst` saved.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bucket {
    tokens: f64,
    at: Instant,
}

/// A rate and a burst.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rate {
    /// Tokens a second.
    pub per_second: u32,
    /// Tokens that may be saved up (and spent at once).
    pub burst: u32,
}

impl Rate {
    fn refill(&self, b: &mut Bucket, now: Instant) {
        let dt = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + dt * f64::from(self.per_second)).min(f64::from(self.burst.max(1)));
        b.at = b.at.max(now);
    }

    fn full(&self, now: Instant) -> Bucket {
        Bucket {
            tokens: f64::from(self.burst.max(1)),
            at: now,
        }
    }
}

/// Why an input was refused before any work was done on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// Its source spent its budget.
    Rate,
    /// The proxy holds as many connections as it may.
    Connections,
    /// Its source holds as many connections as one source may.
    ConnectionsPerSource,
    /// It comes from one of the proxy's own addresses: the proxy calling
    /// itself (a loop).
    OwnAddress,
}

impl Refusal {
    /// The metrics label.
    pub fn name(self) -> &'static str {
        match self {
            Refusal::Rate => "rate",
            Refusal::Connections => "connections",
            Refusal::ConnectionsPerSource => "connections_per_source",
            Refusal::OwnAddress => "own_address",
        }
    }
}

/// One token bucket per source address, in a table of bounded size.
#[derive(Debug)]
pub struct SourceBudget {
    rate: Rate,
    max_sources: usize,
    buckets: HashMap<IpAddr, Bucket>,
    /// Shared by the sources that found the table full.
    overflow: Bucket,
    /// Inputs refused since the proxy started.
    refused: u64,
    /// When idle sources were last forgotten: at most once a second, so a
    /// full table costs a sweep a second, not one per packet.
    swept: Instant,
}

impl SourceBudget {
    /// `rate` for each source; at most `max_sources` tracked one by one.
    pub fn new(rate: Rate, max_sources: usize, now: Instant) -> Self {
        Self {
            rate,
            max_sources: max_sources.max(1),
            buckets: HashMap::new(),
            overflow: rate.full(now),
            refused: 0,
            swept: now,
        }
    }

    /// Spend one token of `source`'s budget: `true` when it had one (the
    /// input may be handled), `false` when it is to be dropped unread.
    pub fn allow(&mut self, source: IpAddr, now: Instant) -> bool {
        if self.buckets.len() >= self.max_sources
            && now.saturating_duration_since(self.swept) >= Duration::from_secs(1)
            && !self.buckets.contains_key(&source)
        {
            self.swept = now;
            self.forget_idle(now);
        }
        let rate = self.rate;
        let b = if self.buckets.len() < self.max_sources || self.buckets.contains_key(&source) {
            self.buckets.entry(source).or_insert_with(|| rate.full(now))
        } else {
            &mut self.overflow
        };
        rate.refill(b, now);
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            self.refused += 1;
            false
        }
    }

    /// Sources whose bucket has filled up again spent nothing lately:
    /// forgetting them loses nothing (they start again from a full one).
    fn forget_idle(&mut self, now: Instant) {
        let rate = self.rate;
        self.buckets.retain(|_, b| {
            rate.refill(b, now);
            b.tokens < f64::from(rate.burst.max(1))
        });
    }

    /// Sources tracked one by one.
    pub fn sources(&self) -> usize {
        self.buckets.len()
    }

    /// Inputs refused so far.
    pub fn refused(&self) -> u64 {
        self.refused
    }

    /// Take a new rate (a reload); the saved tokens are kept, capped.
    pub fn set_rate(&mut self, rate: Rate) {
        self.rate = rate;
    }

    /// How long a source that spent its burst at once waits for its next
    /// token.
    pub fn token_every(&self) -> Duration {
        Duration::from_secs_f64(1.0 / f64::from(self.rate.per_second.max(1)))
    }
}

/// Caps on connections held at once: in total and per source address.
#[derive(Debug, Default)]
pub struct ConnectionCaps {
    max_total: usize,
    max_per_source: usize,
    total: usize,
    per_source: HashMap<IpAddr, usize>,
}

impl ConnectionCaps {
    /// At most `max_total` connections, `max_per_source` from one address.
    pub fn new(max_total: usize, max_per_source: usize) -> Self {
        Self {
            max_total,
            max_per_source,
            ..Self::default()
        }
    }

    /// Take a place for a connection from `source`, or say why not. Every
    /// `Ok` must be matched by one [`ConnectionCaps::release`].
    pub fn open(&mut self, source: IpAddr) -> Result<(), Refusal> {
        if self.total >= self.max_total {
            return Err(Refusal::Connections);
        }
        let n = self.per_source.entry(source).or_insert(0);
        if *n >= self.max_per_source {
            return Err(Refusal::ConnectionsPerSource);
        }
        *n += 1;
        self.total += 1;
        Ok(())
    }

    /// A connection from `source` closed.
    pub fn release(&mut self, source: IpAddr) {
        if let Some(n) = self.per_source.get_mut(&source) {
            *n -= 1;
            self.total -= 1;
            if *n == 0 {
                self.per_source.remove(&source);
            }
        }
    }

    /// Connections held.
    pub fn total(&self) -> usize {
        self.total
    }

    /// Connections held from `source`.
    pub fn from(&self, source: IpAddr) -> usize {
        self.per_source.get(&source).copied().unwrap_or(0)
    }

    /// Take new caps (a reload); connections already held stay.
    pub fn set_caps(&mut self, max_total: usize, max_per_source: usize) {
        self.max_total = max_total;
        self.max_per_source = max_per_source;
    }
}

/// A bound on log lines about what LAN hosts send: `per_second` lines a
/// second, the rest counted and reported with the next line let through.
/// A flood is then a few lines a second, not millions.
#[derive(Debug)]
pub struct WarnLimit {
    per_second: u32,
    window: Instant,
    used: u32,
    suppressed: u64,
}

impl WarnLimit {
    /// `per_second` lines a second at most.
    pub fn new(per_second: u32, now: Instant) -> Self {
        Self {
            per_second,
            window: now,
            used: 0,
            suppressed: 0,
        }
    }

    /// May a line be logged at `now`? `Some(n)`: yes, and `n` were held
    /// back since the last one; `None`: no (it is counted).
    pub fn allow(&mut self, now: Instant) -> Option<u64> {
        if now.saturating_duration_since(self.window) >= Duration::from_secs(1) {
            self.window = now;
            self.used = 0;
        }
        if self.used >= self.per_second {
            self.suppressed += 1;
            return None;
        }
        self.used += 1;
        Some(std::mem::take(&mut self.suppressed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([198, 18, 1, last])
    }

    #[test]
    fn a_source_gets_its_burst_then_its_rate_and_never_anothers_tokens() {
        let t0 = Instant::now();
        let mut b = SourceBudget::new(
            Rate {
                per_second: 10,
                burst: 5,
            },
            16,
            t0,
        );
        let flood = (0..100).filter(|_| b.allow(ip(66), t0)).count();
        assert_eq!(flood, 5, "the burst, then nothing");
        // Another source is untouched by the flood.
        assert_eq!((0..5).filter(|_| b.allow(ip(2), t0)).count(), 5);
        // A second later the flooder has ten more (capped at the burst: 5).
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!((0..100).filter(|_| b.allow(ip(66), t1)).count(), 5);
        // 100 ms later: one token.
        let t2 = t1 + Duration::from_millis(100);
        assert_eq!((0..100).filter(|_| b.allow(ip(66), t2)).count(), 1);
        assert_eq!(b.refused(), 95 + 95 + 99);
    }

    #[test]
    fn spoofed_sources_fill_the_table_to_its_cap_and_then_share_one_bucket() {
        let t0 = Instant::now();
        let rate = Rate {
            per_second: 1,
            burst: 2,
        };
        let mut b = SourceBudget::new(rate, 8, t0);
        // A known source, mid-conversation.
        assert!(b.allow(ip(2), t0));
        // A spray of 1,000 spoofed addresses, twice each.
        let mut passed = 0;
        for i in 0..1000u32 {
            let a = IpAddr::from((0xC613_0000u32 | i).to_be_bytes());
            passed += usize::from(b.allow(a, t0)) + usize::from(b.allow(a, t0));
        }
        assert!(b.sources() <= 8, "{} sources tracked", b.sources());
        // 7 new sources with 2 each, then the shared bucket's 2.
        assert_eq!(passed, 7 * 2 + 2);
        // The known source keeps its own bucket.
        assert!(b.allow(ip(2), t0));
        // Once idle, a source's entry is reclaimed for a new one.
        let later = t0 + Duration::from_secs(10);
        assert!(b.allow(ip(77), later));
        assert!(b.sources() <= 8);
    }

    #[test]
    fn warnings_are_a_few_a_second_and_say_how_many_were_held_back() {
        let t0 = Instant::now();
        let mut w = WarnLimit::new(3, t0);
        let out: Vec<_> = (0..1000).map(|_| w.allow(t0)).collect();
        assert_eq!(out.iter().filter(|o| o.is_some()).count(), 3);
        assert_eq!(w.allow(t0 + Duration::from_secs(1)), Some(997));
        assert_eq!(w.allow(t0 + Duration::from_secs(1)), Some(0));
    }

    #[test]
    fn connections_are_capped_in_total_and_per_source_and_given_back() {
        let mut c = ConnectionCaps::new(4, 2);
        assert_eq!(c.open(ip(66)), Ok(()));
        assert_eq!(c.open(ip(66)), Ok(()));
        assert_eq!(c.open(ip(66)), Err(Refusal::ConnectionsPerSource));
        assert_eq!(c.open(ip(2)), Ok(()));
        assert_eq!(c.open(ip(3)), Ok(()));
        assert_eq!(c.open(ip(4)), Err(Refusal::Connections));
        c.release(ip(66));
        assert_eq!(c.from(ip(66)), 1);
        assert_eq!(c.open(ip(4)), Ok(()));
        // A release for a source holding nothing changes nothing.
        c.release(ip(99));
        assert_eq!(c.total(), 4);
        for s in [66, 2, 3, 4] {
            c.release(ip(s));
        }
        assert_eq!((c.total(), c.from(ip(66))), (0, 0));
    }
}
