//! The registration table: every endpoint registered through the proxy,
//! with the identity it sees (stable across gatekeeper changes) and the
//! binding at the gatekeeper currently in control.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Instant;

use crate::h225::alias::Alias;
use crate::h225::asn::h323_messages::{AliasAddress, RegistrationRequest};
use crate::h225::value::alias_digits;

/// Where an endpoint is registered on the gatekeeper side.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Binding {
    /// Index of the gatekeeper in the relay's list.
    pub gatekeeper: usize,
    /// The endpointIdentifier that gatekeeper assigned.
    pub endpoint_id: String,
    /// The timeToLive it granted, seconds.
    pub ttl: u32,
    /// When it confirmed.
    pub since: Instant,
}

/// One registered endpoint.
#[derive(Clone, Debug)]
pub struct Registration {
    /// The endpointIdentifier the endpoint uses. It never changes while the
    /// endpoint stays registered, whichever gatekeeper is in control.
    pub endpoint_id: String,
    /// Its aliases (h323-ID, E.164 ...).
    pub aliases: Vec<AliasAddress>,
    /// The address its RAS datagrams come from (keepalives must come from it).
    pub source: SocketAddr,
    /// Its RAS address (where the proxy sends gatekeeper-initiated requests).
    pub ras: SocketAddr,
    /// Its call signalling address, where the proxy delivers calls.
    pub call_signal: Option<SocketAddr>,
    /// The last full RRQ as the endpoint sent it: re-registration at another
    /// gatekeeper replays it with the proxy's addresses.
    pub rrq: RegistrationRequest,
    /// That RRQ as it arrived (what the saved table holds: saving it
    /// encodes nothing).
    pub rrq_bytes: bytes::Bytes,
    /// The gatekeeper-side registration, `None` while unbound (survivable
    /// mode, or not yet re-registered after a failover).
    pub binding: Option<Binding>,
    /// timeToLive granted to the endpoint (by its gatekeeper, or by the
    /// proxy in survivable mode), seconds: the registration lapses after
    /// 1.5 × this with no keepalive.
    pub granted_ttl: u32,
    /// Last keepalive (lightweight RRQ) answered.
    pub last_keepalive: Option<Instant>,
    /// Keepalives answered.
    pub keepalives: u64,
    /// The RCF keepalives are answered with, built on first use.
    pub rcf_template: Option<crate::offload::RcfTemplate>,
    /// Request hash of the keepalive handed to the kernel fast path.
    pub offloaded: Option<u64>,
    /// Keepalives the kernel answered for it (as last read from the map).
    pub offloaded_answers: u64,
    /// Registered by the proxy itself in survivable mode, and accepted by
    /// no gatekeeper since: a gatekeeper refusing it when control returns
    /// ends it (the gatekeeper, not the proxy, decides who owns an alias).
    pub local: bool,
}

impl Registration {
    /// Whether `alias` (type and value) names this endpoint.
    pub fn answers_to(&self, alias: &Alias) -> bool {
        self.aliases.iter().any(|a| Alias::of(a) == *alias)
    }

    /// Its E.164 numbers.
    pub fn numbers(&self) -> impl Iterator<Item = String> + '_ {
        self.aliases.iter().filter_map(alias_digits)
    }
}

/// The registrations under one alias key, by source address: one inline
/// (the common case, no allocation), more in a list, oldest first.
#[derive(Clone, Debug)]
enum Holders {
    One(SocketAddr),
    Many(Vec<SocketAddr>),
}

impl Holders {
    fn as_slice(&self) -> &[SocketAddr] {
        match self {
            Holders::One(s) => std::slice::from_ref(s),
            Holders::Many(v) => v,
        }
    }

    fn push(&mut self, s: SocketAddr) {
        match self {
            Holders::One(first) => *self = Holders::Many(vec![*first, s]),
            Holders::Many(v) => v.push(s),
        }
    }

    /// Remove `s`; `true` when none is left.
    fn remove(&mut self, s: SocketAddr) -> bool {
        match self {
            Holders::One(x) => *x == s,
            Holders::Many(v) => {
                v.retain(|x| *x != s);
                match v[..] {
                    [] => true,
                    [one] => {
                        *self = Holders::One(one);
                        false
                    }
                    _ => false,
                }
            }
        }
    }
}

/// The table, indexed by local endpointIdentifier, by source address, by
/// the gatekeeper-assigned identifier, by alias and by E.164 number, so
/// every lookup a request or a SETUP needs is a hash lookup.
#[derive(Debug, Default)]
pub struct Registry {
    by_id: HashMap<String, Registration>,
    by_source: HashMap<SocketAddr, String>,
    by_gk_id: HashMap<(usize, String), String>,
    /// Hash of an alias value ([`Alias::value`], the type left out) →
    /// sources of the endpoints with an alias of that value, oldest first
    /// (numbers are the values of E.164 aliases). Keyed by hash, not text, to keep it small at 100,000
    /// endpoints; a lookup checks each candidate's aliases, so a collision
    /// costs a comparison, never a wrong answer.
    by_alias: HashMap<u64, Holders>,
    /// Keys of the alias hash (random per table).
    alias_hasher: std::hash::RandomState,
    /// Registrations bound per gatekeeper index.
    bound: HashMap<usize, usize>,
    /// Sources whose keepalives the kernel must stop answering.
    withdrawn: Vec<SocketAddr>,
    next_local: u64,
    /// Registrations per source IP address (for
    /// `max_registrations_per_source`).
    per_ip: HashMap<std::net::IpAddr, usize>,
}

impl Registry {
    /// Number of registrations.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// A fresh local endpointIdentifier (survivable-mode registrations).
    pub fn allocate_id(&mut self, prefix: &str) -> String {
        loop {
            self.next_local += 1;
            let id = format!("{prefix}-{:06}", self.next_local);
            if !self.by_id.contains_key(&id) {
                return id;
            }
        }
    }

    /// Every alias key of `r`, hashed.
    fn names(&self, r: &Registration) -> Vec<u64> {
        use std::hash::BuildHasher;
        let mut v: Vec<u64> = r
            .aliases
            .iter()
            .map(|a| self.alias_hasher.hash_one(Alias::of(a).value()))
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    fn index_names(&mut self, source: SocketAddr, names: Vec<u64>, add: bool) {
        use std::collections::hash_map::Entry;
        for key in names {
            match self.by_alias.entry(key) {
                Entry::Occupied(mut e) => {
                    let empty = e.get_mut().remove(source);
                    if add {
                        if empty {
                            *e.get_mut() = Holders::One(source);
                        } else {
                            e.get_mut().push(source);
                        }
                    } else if empty {
                        e.remove();
                    }
                }
                Entry::Vacant(e) if add => {
                    e.insert(Holders::One(source));
                }
                Entry::Vacant(_) => {}
            }
        }
    }

    /// Registrations indexed under `key`, oldest first.
    fn candidates<'a>(&'a self, value: &str) -> impl Iterator<Item = &'a Registration> + 'a {
        use std::hash::BuildHasher;
        self.by_alias
            .get(&self.alias_hasher.hash_one(value))
            .map(Holders::as_slice)
            .unwrap_or_default()
            .iter()
            .filter_map(|s| self.by_source(*s))
    }

    /// Insert or replace a registration.
    pub fn insert(&mut self, r: Registration) {
        if let Some(old) = self.by_id.get(&r.endpoint_id) {
            let (source, names) = (old.source, self.names(old));
            self.index_names(source, names, false);
        }
        let names = self.names(&r);
        self.index_names(r.source, names, true);
        if let Some(old) = self.by_id.get(&r.endpoint_id) {
            let ip = old.source.ip();
            self.less_from(ip);
            let old = &self.by_id[&r.endpoint_id];
            self.by_source.remove(&old.source);
            if old.offloaded.is_some() {
                self.withdrawn.push(old.source);
            }
            if let Some(b) = &old.binding {
                self.by_gk_id.remove(&(b.gatekeeper, b.endpoint_id.clone()));
                *self.bound.entry(b.gatekeeper).or_default() -= 1;
            }
        }
        self.by_source.insert(r.source, r.endpoint_id.clone());
        *self.per_ip.entry(r.source.ip()).or_default() += 1;
        if let Some(b) = &r.binding {
            self.by_gk_id
                .insert((b.gatekeeper, b.endpoint_id.clone()), r.endpoint_id.clone());
            *self.bound.entry(b.gatekeeper).or_default() += 1;
        }
        self.by_id.insert(r.endpoint_id.clone(), r);
    }

    /// Remove by local identifier.
    pub fn remove(&mut self, id: &str) -> Option<Registration> {
        let r = self.by_id.remove(id)?;
        let names = self.names(&r);
        self.index_names(r.source, names, false);
        self.by_source.remove(&r.source);
        self.less_from(r.source.ip());
        if r.offloaded.is_some() {
            self.withdrawn.push(r.source);
        }
        if let Some(b) = &r.binding {
            self.by_gk_id.remove(&(b.gatekeeper, b.endpoint_id.clone()));
            *self.bound.entry(b.gatekeeper).or_default() -= 1;
        }
        Some(r)
    }

    fn less_from(&mut self, ip: std::net::IpAddr) {
        if let Some(n) = self.per_ip.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                self.per_ip.remove(&ip);
            }
        }
    }

    /// Registrations whose source is `ip`.
    pub fn from_ip(&self, ip: std::net::IpAddr) -> usize {
        self.per_ip.get(&ip).copied().unwrap_or(0)
    }

    /// Sources of offloaded registrations that were removed or replaced
    /// since the last call: the fast path must forget them.
    pub fn take_withdrawn(&mut self) -> Vec<SocketAddr> {
        std::mem::take(&mut self.withdrawn)
    }

    /// By local identifier.
    pub fn get(&self, id: &str) -> Option<&Registration> {
        self.by_id.get(id)
    }

    /// By local identifier, mutable. Use [`Registry::bind`] to change the
    /// binding so the index stays right.
    pub fn get_mut(&mut self, id: &str) -> Option<&mut Registration> {
        self.by_id.get_mut(id)
    }

    /// By the address its RAS datagrams come from.
    pub fn by_source(&self, src: SocketAddr) -> Option<&Registration> {
        self.by_id.get(self.by_source.get(&src)?)
    }

    /// By the identifier gatekeeper `gk` assigned.
    pub fn by_gatekeeper_id(&self, gk: usize, id: &str) -> Option<&Registration> {
        self.by_id.get(self.by_gk_id.get(&(gk, id.to_string()))?)
    }

    /// The oldest registration answering to `alias`.
    pub fn by_alias(&self, alias: &Alias) -> Option<&Registration> {
        self.candidates(&alias.value())
            .find(|r| r.answers_to(alias))
    }

    /// The oldest registration with E.164 number `digits`.
    pub fn by_number(&self, digits: &str) -> Option<&Registration> {
        self.candidates(digits)
            .find(|r| r.numbers().any(|n| n == digits))
    }

    /// Set or clear the gatekeeper binding of `id`.
    pub fn bind(&mut self, id: &str, binding: Option<Binding>) {
        let Some(r) = self.by_id.get_mut(id) else {
            return;
        };
        if let Some(b) = r.binding.take() {
            self.by_gk_id.remove(&(b.gatekeeper, b.endpoint_id));
            *self.bound.entry(b.gatekeeper).or_default() -= 1;
        }
        if let Some(b) = &binding {
            self.by_gk_id
                .insert((b.gatekeeper, b.endpoint_id.clone()), id.to_string());
            *self.bound.entry(b.gatekeeper).or_default() += 1;
        }
        r.binding = binding;
    }

    /// Registrations bound at gatekeeper `gk`.
    pub fn bound_at(&self, gk: usize) -> usize {
        self.bound.get(&gk).copied().unwrap_or(0)
    }

    /// All local identifiers.
    pub fn ids(&self) -> Vec<String> {
        let mut v: Vec<String> = self.by_id.keys().cloned().collect();
        v.sort();
        v
    }

    /// All registrations.
    pub fn iter(&self) -> impl Iterator<Item = &Registration> {
        self.by_id.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::h225::build;
    use crate::h225::ras::RasMessage;
    use crate::h225::value::bmp;

    fn e164(n: &str) -> AliasAddress {
        AliasAddress::dialledDigits(rasn::types::Ia5String::try_from(n.to_string()).unwrap())
    }

    fn reg(id: &str, port: u16, aliases: Vec<AliasAddress>) -> Registration {
        let source: SocketAddr = ([198, 18, 1, 11], port).into();
        let RasMessage::registrationRequest(rrq) = build::rrq(build::Rrq {
            call_signal: vec![source],
            ras: source,
            node: build::Node::Terminal,
            aliases: aliases.clone(),
            gatekeeper_id: None,
            ttl: 60,
            keep_alive: None,
        }) else {
            unreachable!("an RRQ")
        };
        Registration {
            endpoint_id: id.into(),
            aliases,
            source,
            ras: source,
            call_signal: Some(source),
            rrq,
            rrq_bytes: bytes::Bytes::new(),
            binding: None,
            granted_ttl: 60,
            last_keepalive: None,
            keepalives: 0,
            rcf_template: None,
            offloaded: None,
            offloaded_answers: 0,
            local: false,
        }
    }

    #[test]
    fn aliases_and_numbers_are_hash_lookups_the_oldest_registration_first() {
        let mut t = Registry::default();
        t.insert(reg(
            "a",
            1,
            vec![e164("1002"), AliasAddress::h323_ID(bmp("alice"))],
        ));
        t.insert(reg("b", 2, vec![e164("1002")]));
        let id = |r: Option<&Registration>| r.map(|r| r.endpoint_id.clone());
        let by = |t: &Registry, a: &str| id(t.by_alias(&Alias::parse(a)));
        for alias in ["e164:1002", "1002", "alice", "h323-ID:alice"] {
            assert_eq!(by(&t, alias), Some("a".into()), "{alias}");
        }
        // One key per value; the type still counts.
        assert_eq!(by(&t, "h323-ID:1002"), None);
        assert_eq!(by(&t, "e164:alice"), None);
        assert_eq!(id(t.by_number("1002")), Some("a".into()));
        assert_eq!(id(t.by_number("alice")), None);
        t.remove("a");
        assert_eq!(by(&t, "1002"), Some("b".into()));
        assert_eq!(by(&t, "alice"), None);
        // Re-registering with other aliases moves the keys.
        t.insert(reg("b", 2, vec![e164("2000")]));
        assert_eq!(by(&t, "1002"), None);
        assert_eq!(id(t.by_number("2000")), Some("b".into()));
        assert_eq!(t.by_alias.len(), 1, "emptied keys are dropped");
    }
}
