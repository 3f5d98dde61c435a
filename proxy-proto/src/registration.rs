//! The registration table: every endpoint registered through the proxy,
//! with the identity it sees (stable across gatekeeper changes) and the
//! binding at the gatekeeper currently in control.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Instant;

use crate::h225::asn::h323_messages::{AliasAddress, RegistrationRequest};
use crate::h225::value::{alias_digits, alias_text};

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
}

impl Registration {
    /// Whether `alias` (as `h323-ID:x`, `e164:n` or the bare name/number)
    /// names this endpoint.
    pub fn answers_to(&self, alias: &str) -> bool {
        self.aliases.iter().any(|a| {
            let t = alias_text(a);
            t == alias || t.split_once(':').map(|(_, v)| v) == Some(alias)
        })
    }

    /// Its E.164 numbers.
    pub fn numbers(&self) -> impl Iterator<Item = String> + '_ {
        self.aliases.iter().filter_map(alias_digits)
    }
}

/// The names an alias answers to: its text (`e164:1002`, `h323-ID:alice`)
/// and its bare value (`1002`, `alice`).
fn alias_keys(a: &AliasAddress) -> impl Iterator<Item = String> {
    let t = alias_text(a);
    let bare = t.split_once(':').map(|(_, v)| v.to_string());
    std::iter::once(t).chain(bare)
}

/// The table, indexed by local endpointIdentifier, by source address, by
/// the gatekeeper-assigned identifier, by alias and by E.164 number, so
/// every lookup a request or a SETUP needs is a hash lookup.
#[derive(Debug, Default)]
pub struct Registry {
    by_id: HashMap<String, Registration>,
    by_source: HashMap<SocketAddr, String>,
    by_gk_id: HashMap<(usize, String), String>,
    /// Alias text and bare value → endpoints answering to it, oldest first.
    by_alias: HashMap<String, Vec<String>>,
    /// E.164 digits → endpoints with that number, oldest first.
    by_number: HashMap<String, Vec<String>>,
    /// Registrations bound per gatekeeper index.
    bound: HashMap<usize, usize>,
    /// Sources whose keepalives the kernel must stop answering.
    withdrawn: Vec<SocketAddr>,
    next_local: u64,
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

    /// Every alias key and number `r` is found by (`true`: alias index).
    fn names(r: &Registration) -> Vec<(bool, String)> {
        let mut v: Vec<(bool, String)> = r
            .aliases
            .iter()
            .flat_map(alias_keys)
            .map(|k| (true, k))
            .chain(r.numbers().map(|n| (false, n)))
            .collect();
        v.sort();
        v.dedup();
        v
    }

    fn index_names(&mut self, id: &str, names: Vec<(bool, String)>, add: bool) {
        use std::collections::hash_map::Entry;
        for (alias, key) in names {
            let index = if alias {
                &mut self.by_alias
            } else {
                &mut self.by_number
            };
            match index.entry(key) {
                Entry::Occupied(mut e) => {
                    e.get_mut().retain(|x| x != id);
                    if add {
                        e.get_mut().push(id.to_string());
                    }
                    if e.get().is_empty() {
                        e.remove();
                    }
                }
                Entry::Vacant(e) if add => {
                    e.insert(vec![id.to_string()]);
                }
                Entry::Vacant(_) => {}
            }
        }
    }

    /// Insert or replace a registration.
    pub fn insert(&mut self, r: Registration) {
        if let Some(old) = self.by_id.get(&r.endpoint_id).map(Self::names) {
            self.index_names(&r.endpoint_id, old, false);
        }
        self.index_names(&r.endpoint_id, Self::names(&r), true);
        if let Some(old) = self.by_id.get(&r.endpoint_id) {
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
        self.index_names(id, Self::names(&r), false);
        self.by_source.remove(&r.source);
        if r.offloaded.is_some() {
            self.withdrawn.push(r.source);
        }
        if let Some(b) = &r.binding {
            self.by_gk_id.remove(&(b.gatekeeper, b.endpoint_id.clone()));
            *self.bound.entry(b.gatekeeper).or_default() -= 1;
        }
        Some(r)
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

    /// The oldest registration answering to `alias` (as `h323-ID:x`,
    /// `e164:n` or the bare name/number).
    pub fn by_alias(&self, alias: &str) -> Option<&Registration> {
        self.by_id.get(self.by_alias.get(alias)?.first()?)
    }

    /// The oldest registration with E.164 number `digits`.
    pub fn by_number(&self, digits: &str) -> Option<&Registration> {
        self.by_id.get(self.by_number.get(digits)?.first()?)
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
