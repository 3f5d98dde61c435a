//! Per-endpoint gatekeeper-side identities.
//!
//! A gatekeeper tells endpoints apart by their transport addresses (GnuGk
//! keys its table on the callSignalAddress, and polls an endpoint at its
//! rasAddress), so every endpoint registered through the proxy gets an
//! address of its own on the gatekeeper side: one port of a configured range
//! on one of the configured addresses, the same number for RAS (UDP) and
//! call signalling (TCP). The driver serves all of them from one UDP socket
//! and one TCP listener (the `gk_side` sk_lookup program) and tells the
//! endpoints apart by the local address a datagram or connection arrived at.
//!
//! Leases are keyed by the endpoint's RAS source address, like the
//! registration table; a lease whose registration never came is swept.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::time::{Duration, Instant};

/// Errors of the identity pool.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdentityError {
    /// Every address of the configured ranges is leased.
    #[error("all {0} gatekeeper-side addresses are in use")]
    Exhausted(usize),
    /// The pool is configured with nothing to hand out.
    #[error("no addresses or an empty port range")]
    Empty,
}

/// How long a lease waits for its registration before it is reused.
pub const UNCLAIMED_LEASE: Duration = Duration::from_secs(20);

#[derive(Clone, Debug)]
struct Lease {
    addr: SocketAddr,
    since: Instant,
}

/// The addresses handed out, and to whom.
#[derive(Clone, Debug)]
pub struct IdentityPool {
    addrs: Vec<IpAddr>,
    ports: RangeInclusive<u16>,
    /// Next index to try (addresses × ports, address-major).
    cursor: usize,
    by_source: HashMap<SocketAddr, Lease>,
    owner: HashMap<SocketAddr, SocketAddr>,
}

impl IdentityPool {
    /// A pool of `ports` on each of `addrs`.
    pub fn new(addrs: Vec<IpAddr>, ports: RangeInclusive<u16>) -> Result<Self, IdentityError> {
        if addrs.is_empty() || ports.is_empty() {
            return Err(IdentityError::Empty);
        }
        Ok(Self {
            addrs,
            ports,
            cursor: 0,
            by_source: HashMap::new(),
            owner: HashMap::new(),
        })
    }

    /// How many endpoints the ranges hold.
    pub fn capacity(&self) -> usize {
        self.addrs.len() * self.ports_len()
    }

    fn ports_len(&self) -> usize {
        usize::from(*self.ports.end() - *self.ports.start()) + 1
    }

    /// Leases held.
    pub fn len(&self) -> usize {
        self.by_source.len()
    }

    /// Whether no lease is held.
    pub fn is_empty(&self) -> bool {
        self.by_source.is_empty()
    }

    /// The addresses and ports handed out.
    pub fn ranges(&self) -> (&[IpAddr], RangeInclusive<u16>) {
        (&self.addrs, self.ports.clone())
    }

    fn at(&self, i: usize) -> SocketAddr {
        let n = self.ports_len();
        let port = *self.ports.start() + (i % n) as u16;
        SocketAddr::new(self.addrs[i / n], port)
    }

    /// Whether `addr` lies in the configured ranges (leased or not).
    pub fn covers(&self, addr: SocketAddr) -> bool {
        self.ports.contains(&addr.port()) && self.addrs.contains(&addr.ip())
    }

    /// The address leased to the endpoint whose RAS datagrams come from
    /// `source`, leasing a free one if it has none.
    pub fn lease(&mut self, source: SocketAddr, now: Instant) -> Result<SocketAddr, IdentityError> {
        if let Some(l) = self.by_source.get(&source) {
            return Ok(l.addr);
        }
        let cap = self.capacity();
        if self.owner.len() >= cap {
            return Err(IdentityError::Exhausted(cap));
        }
        // Round robin from the cursor: a released address is reused last, so
        // a gatekeeper's stale record of it has time to lapse.
        for _ in 0..cap {
            let a = self.at(self.cursor);
            self.cursor = (self.cursor + 1) % cap;
            if let std::collections::hash_map::Entry::Vacant(e) = self.owner.entry(a) {
                e.insert(source);
                self.by_source.insert(
                    source,
                    Lease {
                        addr: a,
                        since: now,
                    },
                );
                return Ok(a);
            }
        }
        Err(IdentityError::Exhausted(cap))
    }

    /// Take `addr` for `source` again (a registration restored after a
    /// restart keeps its address). Refused when outside the ranges or held
    /// by another endpoint.
    pub fn claim(&mut self, source: SocketAddr, addr: SocketAddr, now: Instant) -> bool {
        if !self.covers(addr) || self.owner.get(&addr).is_some_and(|s| *s != source) {
            return false;
        }
        self.release(source);
        self.owner.insert(addr, source);
        self.by_source.insert(source, Lease { addr, since: now });
        true
    }

    /// The address leased to `source`.
    pub fn get(&self, source: SocketAddr) -> Option<SocketAddr> {
        self.by_source.get(&source).map(|l| l.addr)
    }

    /// The endpoint (RAS source) holding `addr`.
    pub fn owner(&self, addr: SocketAddr) -> Option<SocketAddr> {
        self.owner.get(&addr).copied()
    }

    /// Give back the lease of `source`.
    pub fn release(&mut self, source: SocketAddr) {
        if let Some(l) = self.by_source.remove(&source) {
            self.owner.remove(&l.addr);
        }
    }

    /// Give back leases older than [`UNCLAIMED_LEASE`] whose endpoint is not
    /// `registered` (its RRQ was refused or never answered).
    pub fn sweep(&mut self, now: Instant, registered: impl Fn(SocketAddr) -> bool) {
        let stale: Vec<SocketAddr> = self
            .by_source
            .iter()
            .filter(|(s, l)| {
                now.saturating_duration_since(l.since) >= UNCLAIMED_LEASE && !registered(**s)
            })
            .map(|(s, _)| *s)
            .collect();
        for s in stale {
            self.release(s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(i: u16) -> SocketAddr {
        SocketAddr::from(([198, 18, 1, 2], 10_000 + i))
    }

    #[test]
    fn leases_are_distinct_stable_and_span_addresses() {
        let now = Instant::now();
        let a: IpAddr = [198, 18, 2, 1].into();
        let b: IpAddr = [198, 18, 2, 2].into();
        let mut p = IdentityPool::new(vec![a, b], 20_000..=20_002).unwrap();
        assert_eq!(p.capacity(), 6);
        let got: Vec<SocketAddr> = (0..6).map(|i| p.lease(src(i), now).unwrap()).collect();
        let uniq: std::collections::HashSet<_> = got.iter().collect();
        assert_eq!(uniq.len(), 6);
        assert_eq!(got[3].ip(), b);
        // The same endpoint keeps its address.
        assert_eq!(p.lease(src(2), now).unwrap(), got[2]);
        assert_eq!(p.owner(got[4]), Some(src(4)));
        assert_eq!(p.lease(src(9), now), Err(IdentityError::Exhausted(6)));
        p.release(src(1));
        assert_eq!(p.lease(src(9), now).unwrap(), got[1]);
    }

    #[test]
    fn restored_claims_and_sweeps() {
        let t0 = Instant::now();
        let mut p = IdentityPool::new(vec![[198, 18, 2, 1].into()], 20_000..=20_099).unwrap();
        let want = SocketAddr::from(([198, 18, 2, 1], 20_050));
        assert!(p.claim(src(1), want, t0));
        assert!(!p.claim(src(2), want, t0), "held by another endpoint");
        assert!(!p.claim(src(2), SocketAddr::from(([198, 18, 2, 1], 1720)), t0));
        let other = p.lease(src(3), t0).unwrap();
        assert_ne!(other, want);
        // src(3) never registered: swept once the lease is old.
        p.sweep(t0 + Duration::from_secs(1), |s| s == src(1));
        assert_eq!(p.len(), 2);
        p.sweep(t0 + UNCLAIMED_LEASE, |s| s == src(1));
        assert_eq!(p.len(), 1);
        assert_eq!(p.get(src(1)), Some(want));
        assert!(IdentityPool::new(vec![], 1..=2).is_err());
    }
}
