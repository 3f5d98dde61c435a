//! The RAS side of the proxy as a sans-I/O state machine.
//!
//! Endpoints see the proxy as their gatekeeper: one stable
//! gatekeeperIdentifier, one RAS address, an endpointIdentifier that never
//! changes. Behind it the proxy registers them at whichever gatekeeper is in
//! control, answers their keepalives itself, watches every gatekeeper with a
//! heartbeat (lightweight RRQs for the proxy's own registration), fails over
//! to the next gatekeeper that is up, and with none up serves registration,
//! admission, disengage and location itself (survivable mode).
//!
//! The driver feeds datagrams and time in ([`RasRelay::handle_endpoint`],
//! [`RasRelay::handle_gatekeeper`], [`RasRelay::handle_timeout`]) and takes
//! datagrams and events out ([`RasRelay::poll_transmit`],
//! [`RasRelay::poll_event`]), in the style of quinn-proto.
//!
//! One struct, its methods split by role (like quinn-proto's
//! `connection/`): this file has the state, the handle/poll surface and the
//! timer pass; `from_endpoint` and `from_gatekeeper` handle what each side
//! sends; `control` decides which gatekeeper is in control and talks to
//! it; `routing` answers where a call goes; `persist` saves and restores
//! the registration table.

mod control;
mod from_endpoint;
mod from_gatekeeper;
mod persist;
mod readmit;
mod routing;

mod types;

pub use persist::{SavedBinding, SavedRegistration};
use readmit::CallKey;
pub use readmit::READMIT_RETRY;
pub use types::{
    CallRecord, CallRoute, DialRule, Event, GatekeeperConfig, GatekeeperStatus, Reanchor, Refused,
    RelayConfig, RelayLimits, RelayStats, Side, Transmit,
};

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::gatekeeper::{Health, Heartbeat, HeartbeatConfig};
use crate::h225::alias::Alias;
use crate::h225::asn::h323_messages::{
    AdmissionRejectReason, AdmissionRequest, AliasAddress, CallModel, DisengageRejectReason,
    LocationRejectReason, RegistrationRejectReason, RegistrationRequest, UnregRejectReason,
    UnregRequestReason,
};
use crate::h225::build;
use crate::h225::ras::{self, RasMessage};
use crate::h225::value::{
    alias_text, bmp, bmp_text, epid, gkid, guid, hex, seq_num, set_seq_num, socket_addr, transport,
    unhex,
};
use crate::identity::IdentityPool;
use crate::registration::{Binding, Registration, Registry};

#[derive(Clone, Debug)]
enum Pending {
    Probe {
        gk: usize,
    },
    Forward {
        gk: usize,
        to: SocketAddr,
        seq: u16,
        what: Forwarded,
    },
    Reregister {
        gk: usize,
        endpoint_id: String,
    },
    Refresh {
        gk: usize,
        endpoint_id: String,
    },
    CallReport {
        gk: usize,
        /// The endpoint's RAS source address.
        source: SocketAddr,
    },
    Unregister {
        gk: usize,
        /// The endpoint's RAS source address.
        source: SocketAddr,
    },
    /// An active call admitted again where control moved.
    Readmit {
        gk: usize,
        key: CallKey,
        /// The endpoint's RAS source address.
        source: SocketAddr,
    },
}

impl Pending {
    /// For a forwarded endpoint request: (endpoint, its sequence number).
    fn forwarded_key(&self) -> Option<(SocketAddr, u16)> {
        match self {
            Pending::Forward { to, seq, .. } => Some((*to, *seq)),
            _ => None,
        }
    }

    fn gatekeeper(&self) -> usize {
        match self {
            Pending::Probe { gk }
            | Pending::Forward { gk, .. }
            | Pending::Reregister { gk, .. }
            | Pending::Refresh { gk, .. }
            | Pending::CallReport { gk, .. }
            | Pending::Unregister { gk, .. }
            | Pending::Readmit { gk, .. } => *gk,
        }
    }
}

#[derive(Clone, Debug)]
enum Forwarded {
    Register(Box<Registration>),
    Unregister(String),
    Admit(Box<CallRecord>),
    Disengage(([u8; 16], String)),
    Other,
}

struct Gk {
    cfg: GatekeeperConfig,
    hb: Heartbeat,
    /// gatekeeperIdentifier learned from its RCF to the proxy.
    id: Option<String>,
    /// The proxy's own endpointIdentifier there.
    self_id: Option<String>,
    /// Round trip of the last answered probe.
    rtt: Option<Duration>,
    last_health: Health,
}

/// The RAS relay state machine.
pub struct RasRelay {
    cfg: RelayConfig,
    gks: Vec<Gk>,
    active: Option<usize>,
    /// Whether any gatekeeper has been in control yet: the first one takes
    /// control as soon as it answers, later ones after the hold time.
    ever_active: bool,
    /// When the relay started: for a first choice of gatekeeper, those
    /// earlier in the list get one detection time to answer.
    started: Instant,
    regs: Registry,
    /// By (callIdentifier, local endpointIdentifier): both ends of a call
    /// between two of the proxy's endpoints have a record.
    calls: Calls,
    pending: HashMap<u16, (Pending, Instant)>,
    /// Forwarded requests by (endpoint, its sequence number) → ours, to
    /// recognise retransmissions; entries whose pending request is gone are
    /// stale and pruned as the map grows.
    forwarded: HashMap<(SocketAddr, u16), u16>,
    /// Gatekeeper requests forwarded to endpoints: our seq → (gatekeeper,
    /// its seq, the endpoint asked, when).
    ep_pending: HashMap<u16, (usize, u16, String, Instant)>,
    next_seq: u16,
    /// Step between the proxy's sequence numbers: odd, so every number
    /// comes round once in 65,536; random, with a random start, so a host
    /// that cannot see the proxy's requests cannot guess the next one.
    seq_step: u16,
    rereg: VecDeque<String>,
    rereg_tokens: f64,
    rereg_last: Instant,
    refresh: BinaryHeap<Reverse<(Instant, String)>>,
    /// Active calls not yet admitted where control moved, since when.
    unanchored_since: HashMap<CallKey, Instant>,
    /// Re-admissions to try again, by when.
    readmit_due: BinaryHeap<Reverse<(Instant, CallKey)>>,
    /// The latest instant the driver passed in.
    now: Instant,
    /// Next sweep (see [`Timer::Sweep`]).
    next_expiry_scan: Instant,
    out: VecDeque<Transmit>,
    events: VecDeque<Event>,
    stats: RelayStats,
    /// Per-endpoint gatekeeper-side addresses, when configured.
    ids: Option<IdentityPool>,
    /// What each endpoint-side source may still send.
    budget: crate::budget::SourceBudget,
    /// Warnings about what endpoint-side hosts send: a few a second.
    warnings: crate::budget::WarnLimit,
    /// Forwarded endpoint requests waiting at gatekeepers, per source IP
    /// address and in all (the `pending` entries that are
    /// [`Pending::Forward`]).
    outstanding: HashMap<std::net::IpAddr, usize>,
    outstanding_total: usize,
}

/// Admitted calls by (callIdentifier, local endpointIdentifier), counted
/// per endpoint (for `max_calls_per_endpoint`). Reads go through `Deref`;
/// every change through these methods, so the counts stay right.
#[derive(Debug, Default)]
struct Calls {
    by_key: HashMap<([u8; 16], String), CallRecord>,
    per_endpoint: HashMap<String, usize>,
    /// When each record was admitted or last seen with live call
    /// signalling (see [`RasRelay::note_calls_alive`]).
    seen: HashMap<([u8; 16], String), Instant>,
    /// Whether the call signalling side reports which calls are alive:
    /// only then do records age out.
    watched: bool,
}

impl Calls {
    fn insert(&mut self, c: CallRecord, now: Instant) {
        let ep = c.endpoint_id.clone();
        let key = (c.call_id, ep.clone());
        self.seen.insert(key.clone(), now);
        if self.by_key.insert(key, c).is_none() {
            *self.per_endpoint.entry(ep).or_default() += 1;
        }
    }

    fn remove(&mut self, key: &([u8; 16], String)) -> Option<CallRecord> {
        self.seen.remove(key);
        let c = self.by_key.remove(key)?;
        if let Some(n) = self.per_endpoint.get_mut(&key.1) {
            *n -= 1;
            if *n == 0 {
                self.per_endpoint.remove(&key.1);
            }
        }
        Some(c)
    }

    /// Every record of an endpoint that is gone.
    fn remove_endpoint(&mut self, endpoint_id: &str) {
        if self.per_endpoint.remove(endpoint_id).is_some() {
            self.by_key.retain(|(_, e), _| e != endpoint_id);
            self.seen.retain(|(_, e), _| e != endpoint_id);
        }
    }

    /// Remove the records not seen alive for `silence`: their calls ended
    /// without a DRQ (an endpoint that crashed or lost power mid-call and
    /// kept, or got back, its registration). Returns them.
    fn age_out(&mut self, now: Instant, silence: Duration) -> Vec<CallRecord> {
        if !self.watched {
            return Vec::new();
        }
        let old: Vec<_> = self
            .seen
            .iter()
            .filter(|(_, at)| now.saturating_duration_since(**at) >= silence)
            .map(|(k, _)| k.clone())
            .collect();
        old.iter().filter_map(|k| self.remove(k)).collect()
    }

    /// Calls `endpoint_id` has admitted.
    fn of(&self, endpoint_id: &str) -> usize {
        self.per_endpoint.get(endpoint_id).copied().unwrap_or(0)
    }

    fn get_mut(&mut self, key: &([u8; 16], String)) -> Option<&mut CallRecord> {
        self.by_key.get_mut(key)
    }

    fn values_mut(&mut self) -> impl Iterator<Item = &mut CallRecord> {
        self.by_key.values_mut()
    }
}

impl std::ops::Deref for Calls {
    type Target = HashMap<([u8; 16], String), CallRecord>;
    fn deref(&self) -> &Self::Target {
        &self.by_key
    }
}

/// How long an unanswered request is remembered.
const PENDING_LIFETIME: Duration = Duration::from_secs(10);

/// Most requests outstanding at gatekeepers at once (of 65,535 sequence
/// numbers), with room left for the proxy's own probes.
const MAX_PENDING: usize = 60_000;

/// Of [`MAX_PENDING`], what endpoint requests may never take: the proxy's
/// own heartbeat probes, refreshes, re-registrations and re-admissions
/// always find room, however many endpoints ask at once.
const RESERVED_OWN: usize = 10_000;

/// How long a call record may go without live call signalling before it
/// ages out (see [`RasRelay::note_calls_alive`]): the report comes every
/// 30 s, and a SETUP follows its ARQ within seconds.
pub const CALL_SILENCE: Duration = Duration::from_secs(120);

/// How often the sweep runs (see [`Timer::Sweep`]).
const EXPIRY_SCAN: Duration = Duration::from_secs(1);

/// How often paced re-registration wakes while its queue is not empty.
const REREGISTER_TICK: Duration = Duration::from_millis(10);

/// The relay's timers, in one table ([`RasRelay::timers`]): every deadline
/// the relay can have, what it is for, and nothing else.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Timer {
    /// The earliest gatekeeper heartbeat deadline: a probe to send, or a
    /// verdict on silence.
    Heartbeat,
    /// The earliest binding refresh at a gatekeeper (⅔ of its timeToLive).
    Refresh,
    /// The next re-registration the pace allows (only while some wait).
    Reregister,
    /// The earliest refused re-admission of an active call to try again.
    Readmit,
    /// Once a second: registrations whose keepalives stopped, identities
    /// whose registration never came, re-registrations lost on the way
    /// (sent again), and requests never answered (forgotten).
    Sweep,
}

/// An unanswered re-registration is sent again after this long (a burst
/// toward a busy gatekeeper may lose datagrams).
const REREGISTER_RETRY: Duration = Duration::from_secs(2);

impl RasRelay {
    /// A relay in survivable mode with every gatekeeper down; the first
    /// [`RasRelay::handle_timeout`] sends the proxy's registrations.
    pub fn new(cfg: RelayConfig, now: Instant) -> Self {
        let gks = cfg
            .gatekeepers
            .iter()
            .map(|g| Gk {
                cfg: g.clone(),
                hb: own_heartbeat(&cfg, now),
                id: None,
                self_id: None,
                rtt: None,
                last_health: Health::Down,
            })
            .collect();
        Self {
            gks,
            active: None,
            ever_active: false,
            started: now,
            regs: Registry::default(),
            calls: Calls::default(),
            pending: HashMap::new(),
            forwarded: HashMap::new(),
            ep_pending: HashMap::new(),
            next_seq: random_u16(1),
            seq_step: random_u16(2) | 1,
            rereg: VecDeque::new(),
            rereg_tokens: 0.0,
            rereg_last: now,
            refresh: BinaryHeap::new(),
            unanchored_since: HashMap::new(),
            readmit_due: BinaryHeap::new(),
            now,
            next_expiry_scan: now + EXPIRY_SCAN,
            out: VecDeque::new(),
            events: VecDeque::new(),
            stats: RelayStats::default(),
            ids: cfg.identities.clone(),
            warnings: crate::budget::WarnLimit::new(10, now),
            outstanding: HashMap::new(),
            outstanding_total: 0,
            budget: crate::budget::SourceBudget::new(
                cfg.limits.ras_budget,
                cfg.limits.max_sources,
                now,
            ),
            cfg,
        }
    }

    /// Apply a reloaded configuration. Timers, failover policy and the dial
    /// plan change at once; the names of changed fields that need a restart
    /// (addresses, the gatekeeper list) are returned and not applied.
    pub fn reconfigure(&mut self, new: RelayConfig) -> Vec<&'static str> {
        let mut restart = Vec::new();
        let c = &self.cfg;
        if new.proxy_id != c.proxy_id {
            restart.push("proxy.id");
        }
        if new.endpoint_ras != c.endpoint_ras || new.endpoint_call_signal != c.endpoint_call_signal
        {
            restart.push("proxy.endpoint_address");
        }
        if new.gatekeeper_call_signal.ip() != c.gatekeeper_call_signal.ip() {
            restart.push("proxy.gatekeeper_address");
        }
        if new.gatekeepers != c.gatekeepers {
            restart.push("gatekeeper");
        }
        self.budget.set_rate(new.limits.ras_budget);
        if new.heartbeat != c.heartbeat {
            for g in &mut self.gks {
                g.hb.set_config(new.heartbeat);
            }
        }
        if new.identities.as_ref().map(IdentityPool::ranges)
            != c.identities.as_ref().map(IdentityPool::ranges)
        {
            restart.push("gatekeeper_side");
        }
        let keep = (
            c.identities.clone(),
            c.proxy_id.clone(),
            c.endpoint_ras,
            c.endpoint_call_signal,
            c.gatekeeper_ras,
            c.gatekeeper_call_signal,
            c.gatekeepers.clone(),
        );
        let host_addresses = if new.host_addresses.is_empty() {
            std::mem::take(&mut self.cfg.host_addresses)
        } else {
            new.host_addresses.clone()
        };
        self.cfg = RelayConfig {
            host_addresses,
            identities: keep.0,
            proxy_id: keep.1,
            endpoint_ras: keep.2,
            endpoint_call_signal: keep.3,
            gatekeeper_ras: keep.4,
            gatekeeper_call_signal: keep.5,
            gatekeepers: keep.6,
            ..new
        };
        restart
    }

    /// The gatekeeper-side RAS address the driver bound.
    pub fn gatekeeper_ras(&self) -> SocketAddr {
        self.cfg.gatekeeper_ras
    }

    /// Counters.
    pub fn stats(&self) -> &RelayStats {
        &self.stats
    }

    /// The registration table.
    pub fn registrations(&self) -> &Registry {
        &self.regs
    }

    /// Calls admitted and not yet disengaged.
    pub fn calls(&self) -> impl Iterator<Item = &CallRecord> {
        self.calls.values()
    }

    /// A call by callIdentifier: the caller's record when both ends are here.
    pub fn call(&self, call_id: &[u8; 16]) -> Option<&CallRecord> {
        self.calls
            .values()
            .filter(|c| &c.call_id == call_id)
            .min_by_key(|c| c.answer_call)
    }

    /// Name of the gatekeeper in control (`None`: survivable mode).
    pub fn active(&self) -> Option<&str> {
        self.active.map(|i| self.gks[i].cfg.name.as_str())
    }

    /// Each gatekeeper's state.
    pub fn gatekeepers(&self) -> Vec<GatekeeperStatus> {
        self.gks
            .iter()
            .enumerate()
            .map(|(i, g)| GatekeeperStatus {
                name: g.cfg.name.clone(),
                health: g.hb.health(),
                rtt: g.rtt,
                registrations: self.regs.bound_at(i),
                ras: g.cfg.ras,
                active: self.active == Some(i),
            })
            .collect()
    }

    /// Registrations still waiting to be re-registered at the gatekeeper in
    /// control.
    pub fn reregistrations_pending(&self) -> usize {
        self.rereg.len()
    }

    /// Next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }

    /// Next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        for source in self.regs.take_withdrawn() {
            self.events.push_back(Event::OffloadWithdrawn { source });
        }
        self.events.pop_front()
    }

    /// Keepalives the kernel answered for the endpoint at `source`, the
    /// last at `at`: they count as heard, so the registration does not lapse.
    pub fn note_offloaded_keepalives(&mut self, source: SocketAddr, at: Instant, answered: u64) {
        let Some(id) = self.regs.by_source(source).map(|r| r.endpoint_id.clone()) else {
            return;
        };
        if let Some(r) = self.regs.get_mut(&id) {
            if r.last_keepalive.is_none_or(|l| l < at) {
                r.last_keepalive = Some(at);
            }
            r.offloaded_answers = answered;
        }
    }

    /// When [`RasRelay::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Instant {
        self.timers()
            .into_iter()
            .filter_map(|(_, at)| at)
            .min()
            .unwrap_or(self.next_expiry_scan)
    }

    /// Every timer and when it is next due (`None`: not armed).
    fn timers(&self) -> [(Timer, Option<Instant>); 5] {
        [
            (
                Timer::Heartbeat,
                self.gks.iter().map(|g| g.hb.poll_timeout()).min(),
            ),
            (
                Timer::Refresh,
                self.refresh.peek().map(|Reverse((at, _))| *at),
            ),
            (
                Timer::Reregister,
                (!self.rereg.is_empty()).then(|| self.rereg_last + REREGISTER_TICK),
            ),
            (
                Timer::Readmit,
                self.readmit_due.peek().map(|Reverse((at, _))| *at),
            ),
            (Timer::Sweep, Some(self.next_expiry_scan)),
        ]
    }

    // ---------------------------------------------------------------- time

    /// Advance to `now`: heartbeats, probes, control changes, paced
    /// re-registration, registration refreshes, expiry of pending requests.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = self.now.max(now);
        for i in 0..self.gks.len() {
            let due = self.gks[i].hb.handle_timeout(now);
            self.note_health(i);
            if due {
                // Requests of ours the gatekeeper has not answered yet are
                // queued ahead of this probe there.
                let ahead = self
                    .pending
                    .values()
                    .filter(|(p, _)| p.gatekeeper() == i && !matches!(p, Pending::Probe { .. }))
                    .count();
                self.send_probe(i);
                self.gks[i].hb.queued_behind(ahead);
            }
        }
        self.reselect(now);
        self.pace_reregistration(now);
        self.refresh_due(now);
        self.readmit_due(now);
        if now >= self.next_expiry_scan {
            self.next_expiry_scan = now + EXPIRY_SCAN;
            self.sweep(now);
        }
    }

    /// The call signalling side's report: these calls have live
    /// signalling now. From the first report on, a call record not
    /// reported for [`CALL_SILENCE`] ages out (counted as
    /// `calls_aged_out`); records are bounded per endpoint as well, but
    /// without this a call that ended without a DRQ would hold its slot
    /// for as long as its endpoint stays registered.
    pub fn note_calls_alive(&mut self, now: Instant, alive: &std::collections::HashSet<[u8; 16]>) {
        self.now = self.now.max(now);
        self.calls.watched = true;
        for (key, at) in self.calls.seen.iter_mut() {
            if alive.contains(&key.0) {
                *at = now;
            }
        }
    }

    /// The [`Timer::Sweep`] work: each part scans a table, so it runs once
    /// a second, not at every timeout.
    fn sweep(&mut self, now: Instant) {
        self.expire(now);
        for c in self.calls.age_out(now, CALL_SILENCE) {
            self.stats.calls_aged_out += 1;
            tracing::info!(
                call_id = %crate::h225::value::hex(&c.call_id),
                endpoint_id = %c.endpoint_id,
                "call record aged out: no call signalling for it"
            );
        }
        if let Some(pool) = self.ids.as_mut() {
            let regs = &self.regs;
            pool.sweep(now, |s| regs.by_source(s).is_some());
        }
        let lost: Vec<u16> = self
            .pending
            .iter()
            .filter(|(_, (p, at))| {
                matches!(p, Pending::Reregister { .. })
                    && now.saturating_duration_since(*at) >= REREGISTER_RETRY
            })
            .map(|(k, _)| *k)
            .collect();
        for k in lost {
            if let Some((Pending::Reregister { gk, endpoint_id }, _)) = self.pending.remove(&k) {
                let unbound = self
                    .regs
                    .get(&endpoint_id)
                    .is_some_and(|r| r.binding.is_none());
                if Some(gk) == self.active && unbound {
                    self.rereg.push_back(endpoint_id);
                }
            }
        }
        let mut unanswered = Vec::new();
        let (per_ip, total) = (&mut self.outstanding, &mut self.outstanding_total);
        self.pending.retain(|_, (p, at)| {
            let keep = now.saturating_duration_since(*at) < PENDING_LIFETIME;
            if let (false, Pending::Readmit { key, .. }) = (keep, &p) {
                unanswered.push(key.clone());
            }
            if !keep {
                count_forward(per_ip, total, p, false);
            }
            keep
        });
        // A re-admission lost on the way is tried again, within the deadline.
        for key in unanswered {
            self.retry_readmit(key);
        }
        self.ep_pending
            .retain(|_, (_, _, _, at)| now.saturating_duration_since(*at) < PENDING_LIFETIME);
    }
}

/// A random number from the process's hash keys (no RNG dependency in the
/// protocol crate; `salt` tells calls apart).
fn random_u16(salt: u64) -> u16 {
    use std::hash::BuildHasher;
    std::collections::hash_map::RandomState::new().hash_one(salt) as u16
}

/// Keep the per-source counts of forwarded requests in step with `pending`
/// as `p` is added to it (`add`) or leaves it.
fn count_forward(
    per_ip: &mut HashMap<std::net::IpAddr, usize>,
    total: &mut usize,
    p: &Pending,
    add: bool,
) {
    let Pending::Forward { to, .. } = p else {
        return;
    };
    let n = per_ip.entry(to.ip()).or_default();
    if add {
        *n += 1;
        *total += 1;
    } else {
        *n = n.saturating_sub(1);
        *total = total.saturating_sub(1);
        if *n == 0 {
            per_ip.remove(&to.ip());
        }
    }
}

/// A gatekeeper's failure detector: down until it answers; probes only on
/// silence, and at least at the refresh time of the proxy's own
/// registration there.
fn own_heartbeat(cfg: &RelayConfig, now: Instant) -> Heartbeat {
    let mut hb = Heartbeat::new_down(cfg.heartbeat, now);
    hb.set_max_quiet(refresh_after(cfg.local_ttl));
    hb
}

fn refresh_after(ttl: u32) -> Duration {
    // H323Plus refreshes 5 s before expiry; stay well inside short TTLs too.
    Duration::from_secs(u64::from(ttl.max(2))) * 2 / 3
}

fn choice(m: &RasMessage) -> usize {
    ras::encode(m)
        .ok()
        .and_then(|b| b.first().copied())
        .map(|b| proxy_common::ras_slot_of(b) as usize)
        .filter(|&s| s < ras::CHOICE_NAMES.len())
        .unwrap_or(0)
}

fn is_request(m: &RasMessage) -> bool {
    matches!(
        m,
        RasMessage::gatekeeperRequest(_)
            | RasMessage::registrationRequest(_)
            | RasMessage::unregistrationRequest(_)
            | RasMessage::admissionRequest(_)
            | RasMessage::bandwidthRequest(_)
            | RasMessage::disengageRequest(_)
            | RasMessage::locationRequest(_)
            | RasMessage::infoRequest(_)
            | RasMessage::serviceControlIndication(_)
    )
}

#[cfg(test)]
mod tests;
