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

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::gatekeeper::{Health, Heartbeat, HeartbeatConfig};
use crate::h225::PROTOCOL_ID;
use crate::h225::asn::h323_messages::{AdmissionRequest, AliasAddress, RegistrationRequest};
use crate::h225::ras::{self, RasMessage};
use crate::h225::value::{
    alias_json, alias_text, bmp_text, epid, gkid, guid, hex, ras_from_json, seq_num, set_seq_num,
    socket_addr, transport, transport_json, unhex,
};
use crate::identity::IdentityPool;
use crate::registration::{Binding, Registration, Registry};

/// A dial-plan rule for survivable mode: numbers starting with `prefix`
/// have `strip` leading digits removed and `prepend` put in front, then are
/// looked up among the proxy's endpoints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DialRule {
    /// Leading digits that select the rule.
    pub prefix: String,
    /// Digits removed from the front.
    pub strip: usize,
    /// Digits added in front after stripping.
    pub prepend: String,
}

/// A gatekeeper the proxy may hand control to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatekeeperConfig {
    /// Name in logs and metrics.
    pub name: String,
    /// Its RAS address.
    pub ras: SocketAddr,
}

/// Settings of the RAS relay.
#[derive(Clone, Debug)]
pub struct RelayConfig {
    /// gatekeeperIdentifier endpoints see, and the proxy's own alias at the
    /// gatekeepers.
    pub proxy_id: String,
    /// The proxy's RAS address on the endpoint side.
    pub endpoint_ras: SocketAddr,
    /// The proxy's call signalling address on the endpoint side.
    pub endpoint_call_signal: SocketAddr,
    /// The proxy's RAS address on the gatekeeper side.
    pub gatekeeper_ras: SocketAddr,
    /// The proxy's call signalling address on the gatekeeper side.
    pub gatekeeper_call_signal: SocketAddr,
    /// Gatekeepers in order of preference (primary first).
    pub gatekeepers: Vec<GatekeeperConfig>,
    /// Heartbeat toward every gatekeeper.
    pub heartbeat: HeartbeatConfig,
    /// How long a gatekeeper must stay up before control moves (back) to it.
    pub failback_hold: Duration,
    /// Move back to a more preferred gatekeeper once it has been up for the
    /// hold time; `false` stays on the current one while it is up.
    pub preempt: bool,
    /// Full RRQs per second when re-registering endpoints at a new gatekeeper.
    pub reregister_rate: u32,
    /// Re-registrations outstanding at the gatekeeper at most (a window,
    /// so a slow gatekeeper sets the pace instead of queueing them ahead
    /// of the heartbeat).
    pub reregister_in_flight: u32,
    /// timeToLive granted in survivable mode, seconds.
    pub local_ttl: u32,
    /// Survivable-mode dial plan.
    pub dial_plan: Vec<DialRule>,
    /// Per-endpoint gatekeeper-side addresses (an empty pool of the
    /// configured ranges); `None`: every endpoint is registered with the
    /// proxy's own gatekeeper-side addresses (one endpoint per proxy at a
    /// gatekeeper that keys on addresses, such as GnuGk).
    pub identities: Option<IdentityPool>,
    /// H.235 password of the proxy's own registration (alias `proxy_id`).
    pub own_password: Option<String>,
    /// Endpoints' H.235 passwords by alias (as `alias_text` prints it or
    /// bare).
    pub credentials: HashMap<String, String>,
}

/// Which socket a datagram goes out of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// Toward endpoints.
    Endpoint,
    /// Toward gatekeepers.
    Gatekeeper,
}

/// A datagram to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Socket to send from.
    pub side: Side,
    /// Destination.
    pub to: SocketAddr,
    /// Gatekeeper side: the endpoint's own gatekeeper-side address to send
    /// from, so the gatekeeper sees the datagram come from the rasAddress
    /// it registered (GnuGk rejects an RRQ whose callSignalAddress is not
    /// on the address it came from). `None`: the proxy's own socket.
    pub from: Option<SocketAddr>,
    /// Payload (aligned PER).
    pub bytes: Vec<u8>,
}

/// Something the driver should log or count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A gatekeeper announced in an alternateGatekeeper list was added.
    GatekeeperLearned {
        /// The name it gets (`alternate-<address>`).
        name: String,
        /// Its RAS address.
        ras: SocketAddr,
    },
    /// A gatekeeper's heartbeat state changed.
    GatekeeperHealth {
        /// Its name.
        name: String,
        /// New state.
        health: Health,
    },
    /// Control moved; `to: None` is survivable mode.
    ControlMoved {
        /// Previous gatekeeper.
        from: Option<String>,
        /// New gatekeeper.
        to: Option<String>,
    },
    /// An endpoint registered (or re-registered at a new gatekeeper).
    Registered {
        /// Its endpointIdentifier.
        endpoint_id: String,
        /// Gatekeeper, or `None` when registered locally.
        gatekeeper: Option<String>,
    },
    /// An endpoint unregistered.
    Unregistered {
        /// Its endpointIdentifier.
        endpoint_id: String,
    },
    /// Userspace answered a keepalive of a confirmed registration: the
    /// kernel fast path may answer the next ones from this entry.
    Offload {
        /// Where the keepalives come from.
        source: SocketAddr,
        /// What the kernel needs to answer them.
        entry: Box<proxy_common::KeepaliveEntry>,
    },
    /// The registration behind `source` is gone or replaced.
    OffloadWithdrawn {
        /// Its keepalive source.
        source: SocketAddr,
    },
    /// A datagram was rejected without changing state.
    Rejected {
        /// Sender.
        from: SocketAddr,
        /// Why.
        reason: &'static str,
    },
}

/// Counters the driver exports.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RelayStats {
    /// Keepalive RRQs answered from the table.
    pub keepalives_answered: u64,
    /// Requests answered by the proxy itself in survivable mode.
    pub local_answers: u64,
    /// Endpoint requests forwarded to a gatekeeper.
    pub forwarded: u64,
    /// Endpoint retransmissions of a request still waiting for the
    /// gatekeeper's answer, not forwarded again.
    pub retransmissions_absorbed: u64,
    /// RRQs sent to gatekeepers (probes, refreshes, re-registrations).
    pub rrqs_to_gatekeepers: u64,
    /// Times control moved between gatekeepers or to survivable mode.
    pub failovers: u64,
    /// Datagrams that did not decode.
    pub malformed: u64,
    /// Datagrams that decoded but were refused (unknown endpoint, spoofed
    /// source, unexpected message).
    pub refused: u64,
    /// Requests dropped because too many were outstanding at gatekeepers.
    pub dropped_overload: u64,
}

/// A registration as saved across a daemon restart.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SavedRegistration {
    /// The endpointIdentifier the endpoint uses.
    pub endpoint_id: String,
    /// Where its RAS datagrams come from.
    pub source: SocketAddr,
    /// Its RAS address.
    pub ras: SocketAddr,
    /// Its call signalling address.
    pub call_signal: Option<SocketAddr>,
    /// Its last full RRQ, aligned PER in hex.
    pub rrq: String,
    /// timeToLive granted to it.
    pub granted_ttl: u32,
    /// Its registration at a gatekeeper.
    pub binding: Option<SavedBinding>,
    /// Request hash handed to the kernel, if offloaded.
    pub offloaded: Option<u64>,
    /// Its own address toward the gatekeepers (RAS and call signalling).
    #[serde(default)]
    pub gatekeeper_side: Option<SocketAddr>,
}

/// A gatekeeper-side registration as saved.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SavedBinding {
    /// Gatekeeper name (from the configuration).
    pub gatekeeper: String,
    /// The endpointIdentifier that gatekeeper assigned.
    pub endpoint_id: String,
    /// The timeToLive it granted.
    pub ttl: u32,
}

/// One gatekeeper as the relay sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatekeeperStatus {
    /// Configured name.
    pub name: String,
    /// Heartbeat state.
    pub health: Health,
    /// Round trip of the last answered probe.
    pub rtt: Option<Duration>,
    /// Endpoints registered there through the proxy.
    pub registrations: usize,
    /// Its RAS address.
    pub ras: SocketAddr,
    /// In control now.
    pub active: bool,
}

/// Where a call's signalling goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallRoute {
    /// To one of the proxy's endpoints.
    Local {
        /// Its endpointIdentifier.
        endpoint_id: String,
        /// Its call signalling address.
        call_signal: SocketAddr,
    },
    /// To a far end on the gatekeeper side.
    Remote(SocketAddr),
}

/// A call the proxy admitted or saw admitted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallRecord {
    /// callIdentifier GUID.
    pub call_id: [u8; 16],
    /// conferenceID GUID.
    pub conference_id: [u8; 16],
    /// Endpoint's call reference value.
    pub crv: u16,
    /// Local endpointIdentifier of the endpoint that asked.
    pub endpoint_id: String,
    /// Whether the ARQ was for answering the call.
    pub answer_call: bool,
    /// Bandwidth granted (100 bit/s units).
    pub bandwidth: u32,
    /// Where the call goes: the far end's call signalling address as the
    /// gatekeeper said, or `None` when it ends on one of the proxy's own
    /// endpoints (routed by alias).
    pub destination: Option<SocketAddr>,
    /// The destination aliases of the ARQ.
    pub dest_aliases: Vec<String>,
}

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
            | Pending::Unregister { gk, .. } => *gk,
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
    calls: HashMap<([u8; 16], String), CallRecord>,
    pending: HashMap<u16, (Pending, Instant)>,
    /// Forwarded requests by (endpoint, its sequence number) → ours, to
    /// recognise retransmissions; entries whose pending request is gone are
    /// stale and pruned as the map grows.
    forwarded: HashMap<(SocketAddr, u16), u16>,
    /// Gatekeeper requests forwarded to endpoints: our seq → (gatekeeper,
    /// its seq, the endpoint asked, when).
    ep_pending: HashMap<u16, (usize, u16, String, Instant)>,
    next_seq: u16,
    rereg: VecDeque<String>,
    rereg_tokens: f64,
    rereg_last: Instant,
    refresh: BinaryHeap<Reverse<(Instant, String)>>,
    /// The latest instant the driver passed in.
    now: Instant,
    /// Next scan for registrations whose keepalives stopped.
    next_expiry_scan: Instant,
    out: VecDeque<Transmit>,
    events: VecDeque<Event>,
    stats: RelayStats,
    /// Per-endpoint gatekeeper-side addresses, when configured.
    ids: Option<IdentityPool>,
}

/// How long an unanswered request is remembered.
const PENDING_LIFETIME: Duration = Duration::from_secs(10);

/// Most requests outstanding at gatekeepers at once (of 65,535 sequence
/// numbers), with room left for the proxy's own probes.
const MAX_PENDING: usize = 60_000;

/// How often registrations are checked for expiry.
const EXPIRY_SCAN: Duration = Duration::from_secs(1);

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
            calls: HashMap::new(),
            pending: HashMap::new(),
            forwarded: HashMap::new(),
            ep_pending: HashMap::new(),
            next_seq: 0,
            rereg: VecDeque::new(),
            rereg_tokens: 0.0,
            rereg_last: now,
            refresh: BinaryHeap::new(),
            now,
            next_expiry_scan: now + EXPIRY_SCAN,
            out: VecDeque::new(),
            events: VecDeque::new(),
            stats: RelayStats::default(),
            ids: cfg.identities.clone(),
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
        self.cfg = RelayConfig {
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

    /// The registration table as it must survive a daemon restart: with
    /// the kernel still answering keepalives, a restarted daemon that
    /// restores this keeps every endpoint's identity and its binding at the
    /// gatekeeper, so nothing is registered again.
    pub fn snapshot(&self) -> Vec<SavedRegistration> {
        self.regs
            .iter()
            .filter_map(|r| {
                let rrq = ras::encode(&RasMessage::registrationRequest(r.rrq.clone())).ok()?;
                Some(SavedRegistration {
                    endpoint_id: r.endpoint_id.clone(),
                    source: r.source,
                    ras: r.ras,
                    call_signal: r.call_signal,
                    rrq: hex(&rrq),
                    granted_ttl: r.granted_ttl,
                    binding: r.binding.as_ref().map(|b| SavedBinding {
                        gatekeeper: self.gks[b.gatekeeper].cfg.name.clone(),
                        endpoint_id: b.endpoint_id.clone(),
                        ttl: b.ttl,
                    }),
                    offloaded: r.offloaded,
                    gatekeeper_side: self.ids.as_ref().and_then(|p| p.get(r.source)),
                })
            })
            .collect()
    }

    /// Put back registrations saved by [`RasRelay::snapshot`] (at start,
    /// before any traffic). Bindings to gatekeepers no longer configured are
    /// dropped (those endpoints re-register where control is); the others
    /// are refreshed at the gatekeeper soon. Returns how many were restored.
    pub fn restore(&mut self, saved: Vec<SavedRegistration>, now: Instant) -> usize {
        let mut n = 0;
        for s in saved {
            let Ok(RasMessage::registrationRequest(rrq)) =
                ras::decode(&unhex(&s.rrq).unwrap_or_default())
            else {
                tracing::warn!(endpoint_id = %s.endpoint_id, "saved registration does not decode; skipped");
                continue;
            };
            let binding = s.binding.as_ref().and_then(|b| {
                let gk = self.gks.iter().position(|g| g.cfg.name == b.gatekeeper)?;
                Some(Binding {
                    gatekeeper: gk,
                    endpoint_id: b.endpoint_id.clone(),
                    ttl: b.ttl,
                    // Refresh at the gatekeeper soon: how long the daemon
                    // was away is unknown.
                    since: now.checked_sub(refresh_after(b.ttl)).unwrap_or(now),
                })
            });
            let reg = Registration {
                endpoint_id: s.endpoint_id.clone(),
                aliases: rrq.terminal_alias.clone().unwrap_or_default(),
                source: s.source,
                ras: s.ras,
                call_signal: s.call_signal,
                rrq,
                binding: binding.clone(),
                granted_ttl: s.granted_ttl,
                last_keepalive: Some(now),
                keepalives: 0,
                rcf_template: None,
                offloaded: s.offloaded,
                offloaded_answers: 0,
            };
            if let (Some(pool), Some(addr)) = (self.ids.as_mut(), s.gatekeeper_side)
                && !pool.claim(s.source, addr, now)
            {
                // Another range now: the gatekeeper learns the new address
                // at the next full registration.
                tracing::warn!(endpoint_id = %s.endpoint_id, %addr, "saved gatekeeper-side address outside the configured ranges; a new one is leased");
            }
            self.regs.insert(reg);
            if binding.is_some() {
                self.refresh.push(Reverse((
                    now + Duration::from_millis(500),
                    s.endpoint_id.clone(),
                )));
            } else if s.binding.is_some() {
                self.rereg.push_back(s.endpoint_id.clone());
            }
            n += 1;
        }
        // Restoring must not tell the kernel to forget what it answers.
        let _ = self.regs.take_withdrawn();
        n
    }

    /// After a restore: registrations the kernel no longer holds (its maps
    /// were removed meanwhile) must be offered to it again at their next
    /// keepalive.
    pub fn retain_offloaded(&mut self, in_kernel: &std::collections::HashSet<SocketAddr>) {
        let ids: Vec<String> = self
            .regs
            .iter()
            .filter(|r| r.offloaded.is_some() && !in_kernel.contains(&r.source))
            .map(|r| r.endpoint_id.clone())
            .collect();
        for id in ids {
            if let Some(r) = self.regs.get_mut(&id) {
                r.offloaded = None;
            }
        }
    }

    /// The kernel saw RAS or call-signalling traffic from gatekeeper host
    /// `ip` at `at` (the liveness map): that counts as hearing from it, so
    /// the failure detector runs on what the kernel sees, not only on the
    /// probes userspace gets answered. A gatekeeper already down needs a
    /// real RAS answer to come back.
    pub fn note_gatekeeper_seen(&mut self, ip: std::net::IpAddr, at: Instant) {
        for i in 0..self.gks.len() {
            if self.gks[i].cfg.ras.ip() == ip {
                self.gks[i].hb.handle_seen(at);
                self.note_health(i);
            }
        }
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
        let mut t = self
            .gks
            .iter()
            .map(|g| g.hb.poll_timeout())
            .min()
            // No gatekeeper configured: only the expiry scan is due (it
            // advances itself; `rereg_last` would stay in the past and spin
            // the driver).
            .unwrap_or(self.next_expiry_scan);
        if let Some(Reverse((at, _))) = self.refresh.peek() {
            t = t.min(*at);
        }
        if !self.rereg.is_empty() {
            t = t.min(self.rereg_last + Duration::from_millis(10));
        }
        t.min(self.next_expiry_scan)
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
        if now >= self.next_expiry_scan {
            self.next_expiry_scan = now + EXPIRY_SCAN;
            self.expire(now);
            if let Some(pool) = self.ids.as_mut() {
                let regs = &self.regs;
                pool.sweep(now, |s| regs.by_source(s).is_some());
            }
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
        self.pending
            .retain(|_, (_, at)| now.saturating_duration_since(*at) < PENDING_LIFETIME);
        self.ep_pending
            .retain(|_, (_, _, _, at)| now.saturating_duration_since(*at) < PENDING_LIFETIME);
    }

    /// Drop registrations whose endpoint has sent nothing for 1.5 × the
    /// timeToLive it was granted (H.225.0: the registration lapses), and
    /// unregister them at the gatekeeper.
    fn expire(&mut self, now: Instant) {
        let lapsed: Vec<(String, Option<Binding>, SocketAddr)> = self
            .regs
            .iter()
            .filter(|r| {
                let ttl = r.granted_ttl;
                let last = r.last_keepalive.unwrap_or(now);
                now.saturating_duration_since(last)
                    > Duration::from_secs(u64::from(ttl.max(1))) * 3 / 2
            })
            .map(|r| (r.endpoint_id.clone(), r.binding.clone(), r.source))
            .collect();
        for (id, binding, source) in lapsed {
            tracing::info!(endpoint_id = %id, "registration expired (no keepalive within 1.5 x timeToLive)");
            if let Some(b) = binding.filter(|b| Some(b.gatekeeper) == self.active) {
                let v = json!({"unregistrationRequest": {
                    "requestSeqNum": 1,
                    "callSignalAddress": [transport_json(self.gk_side(source).0)],
                    "endpointIdentifier": b.endpoint_id,
                    "reason": {"ttlExpired": null},
                }});
                self.send_to_gk(
                    b.gatekeeper,
                    &v,
                    Pending::Unregister {
                        gk: b.gatekeeper,
                        source,
                    },
                );
            }
            self.regs.remove(&id);
            self.calls.retain(|(_, e), _| *e != id);
            self.events
                .push_back(Event::Unregistered { endpoint_id: id });
        }
    }

    fn note_health(&mut self, i: usize) {
        let h = self.gks[i].hb.health();
        if h != self.gks[i].last_health {
            self.gks[i].last_health = h;
            self.events.push_back(Event::GatekeeperHealth {
                name: self.gks[i].cfg.name.clone(),
                health: h,
            });
        }
    }

    /// Pick the gatekeeper in control: keep the current one while it is up
    /// (unless preempting back to a preferred one that has been up for the
    /// hold time); leave a down one at once for the first gatekeeper that is
    /// up; come out of survivable mode only for one up for the hold time.
    fn reselect(&mut self, now: Instant) {
        let held = |g: &Gk| {
            g.hb.health() == Health::Up
                && g.self_id.is_some()
                && g.hb
                    .up_for(now)
                    .is_some_and(|d| d >= self.cfg.failback_hold)
        };
        let up = |g: &Gk| g.hb.health() == Health::Up && g.self_id.is_some();
        let want = match self.active {
            Some(a) if self.gks[a].hb.health() != Health::Down => {
                if self.cfg.preempt {
                    (0..a).find(|&i| held(&self.gks[i])).or(Some(a))
                } else {
                    Some(a)
                }
            }
            Some(_) => (0..self.gks.len()).find(|&i| up(&self.gks[i])),
            None if !self.ever_active => {
                // The first choice: a gatekeeper later in the list only once
                // the earlier ones had one detection time (interval ×
                // multiplier) to answer, so a restart does not move every
                // registration to the backup because it answered first.
                let settled = now.saturating_duration_since(self.started)
                    >= self.cfg.heartbeat.interval * self.cfg.heartbeat.multiplier;
                match (0..self.gks.len()).find(|&i| up(&self.gks[i])) {
                    Some(0) => Some(0),
                    Some(i) if settled => Some(i),
                    _ => None,
                }
            }
            None => (0..self.gks.len()).find(|&i| held(&self.gks[i])),
        };
        if want == self.active {
            return;
        }
        let from = self.active.map(|i| self.gks[i].cfg.name.clone());
        let to = want.map(|i| self.gks[i].cfg.name.clone());
        tracing::info!(?from, ?to, "gatekeeper control moves");
        self.active = want;
        if self.ever_active {
            self.stats.failovers += 1;
        }
        self.ever_active |= want.is_some();
        self.events.push_back(Event::ControlMoved { from, to });
        // Bindings at other gatekeepers are void now; re-register everyone
        // at the new one, paced.
        self.rereg.clear();
        for id in self.regs.ids() {
            if self
                .regs
                .get(&id)
                .and_then(|r| r.binding.as_ref())
                .map(|b| b.gatekeeper)
                != want
            {
                self.regs.bind(&id, None);
                if want.is_some() {
                    self.rereg.push_back(id);
                }
            }
        }
        self.rereg_last = now;
        self.rereg_tokens = 1.0;
    }

    fn pace_reregistration(&mut self, now: Instant) {
        let Some(gk) = self.active else {
            self.rereg.clear();
            return;
        };
        let rate = f64::from(self.cfg.reregister_rate.max(1));
        let elapsed = now.saturating_duration_since(self.rereg_last).as_secs_f64();
        self.rereg_last = now;
        // Burst of at most 1/20 s worth, so a restart does not storm.
        self.rereg_tokens = (self.rereg_tokens + elapsed * rate).min((rate / 20.0).max(1.0));
        if self.rereg.is_empty() {
            return;
        }
        let window = self.cfg.reregister_in_flight.max(1) as usize;
        // Only those at the gatekeeper in control: RRQs lost with a
        // previous one must not hold this one's window until they expire.
        let mut in_flight = self
            .pending
            .values()
            .filter(|(p, _)| matches!(p, Pending::Reregister { gk: g, .. } if *g == gk))
            .count();
        while self.rereg_tokens >= 1.0 && in_flight < window {
            let Some(id) = self.rereg.pop_front() else {
                break;
            };
            self.rereg_tokens -= 1.0;
            in_flight += 1;
            if let Some(r) = self.regs.get(&id) {
                let (rrq, source) = (r.rrq.clone(), r.source);
                self.send_endpoint_rrq(
                    gk,
                    rrq,
                    source,
                    Pending::Reregister {
                        gk,
                        endpoint_id: id,
                    },
                );
            }
        }
    }

    fn refresh_due(&mut self, now: Instant) {
        while let Some(Reverse((at, _))) = self.refresh.peek() {
            if *at > now {
                break;
            }
            let Reverse((_, id)) = self.refresh.pop().expect("peeked");
            let Some(r) = self.regs.get(&id) else {
                continue;
            };
            let Some(b) = r.binding.clone() else { continue };
            if Some(b.gatekeeper) != self.active {
                continue;
            }
            // Not due yet for this binding (re-registered since): skip.
            if now < b.since + refresh_after(b.ttl) {
                continue;
            }
            let gk = b.gatekeeper;
            let ras = self.gk_side(r.source).1;
            let v = self.lightweight_rrq_json(gk, &b.endpoint_id, b.ttl, ras);
            self.send_to_gk(
                gk,
                &v,
                Pending::Refresh {
                    gk,
                    endpoint_id: id,
                },
            );
        }
    }

    // ----------------------------------------------------- gatekeeper side

    fn alloc_seq(&mut self) -> u16 {
        for _ in 0..u16::MAX {
            self.next_seq = self.next_seq.wrapping_add(1).max(1);
            if !self.pending.contains_key(&self.next_seq)
                && !self.ep_pending.contains_key(&self.next_seq)
            {
                break;
            }
        }
        self.next_seq
    }

    fn send_probe(&mut self, gk: usize) {
        let v = match self.gks[gk].self_id.clone() {
            Some(id) => {
                self.lightweight_rrq_json(gk, &id, self.cfg.local_ttl, self.cfg.gatekeeper_ras)
            }
            None => self.own_rrq_json(gk),
        };
        self.send_to_gk(gk, &v, Pending::Probe { gk });
    }

    fn own_rrq_json(&self, gk: usize) -> Value {
        let mut body = json!({
            "requestSeqNum": 1,
            "protocolIdentifier": PROTOCOL_ID,
            "discoveryComplete": false,
            "callSignalAddress": [transport_json(self.cfg.gatekeeper_call_signal)],
            "rasAddress": [transport_json(self.cfg.gatekeeper_ras)],
            "terminalType": {"gateway": {}, "mc": false, "undefinedNode": false},
            "terminalAlias": [{"h323-ID": self.cfg.proxy_id}],
            "endpointVendor": vendor_json(),
            "timeToLive": self.cfg.local_ttl,
            "keepAlive": false,
        });
        if let Some(id) = &self.gks[gk].id {
            body["gatekeeperIdentifier"] = json!(id);
        }
        json!({ "registrationRequest": body })
    }

    /// A lightweight RRQ for the registration `endpoint_id` at `gk`, whose
    /// RAS address there is `ras` (the proxy's own, or an endpoint's).
    fn lightweight_rrq_json(
        &self,
        gk: usize,
        endpoint_id: &str,
        ttl: u32,
        ras: SocketAddr,
    ) -> Value {
        let mut body = json!({
            "requestSeqNum": 1,
            "protocolIdentifier": PROTOCOL_ID,
            "discoveryComplete": false,
            "callSignalAddress": [],
            "rasAddress": [transport_json(ras)],
            "terminalType": {"terminal": {}, "mc": false, "undefinedNode": false},
            "endpointVendor": vendor_json(),
            "timeToLive": ttl,
            "keepAlive": true,
            "endpointIdentifier": endpoint_id,
        });
        if let Some(id) = &self.gks[gk].id {
            body["gatekeeperIdentifier"] = json!(id);
        }
        json!({ "registrationRequest": body })
    }

    fn send_to_gk(&mut self, gk: usize, v: &Value, p: Pending) {
        match ras_from_json(v) {
            Ok(m) => self.send_msg_to_gk(gk, m, p),
            Err(e) => tracing::error!(error = %e, "building a RAS message (bug)"),
        }
    }

    fn send_msg_to_gk(&mut self, gk: usize, mut m: RasMessage, p: Pending) {
        // Sequence numbers are 16 bits: past this many outstanding requests
        // a new one would have to reuse a live number, so it waits for the
        // endpoint's retry instead.
        if self.pending.len() + self.ep_pending.len() >= MAX_PENDING {
            self.stats.dropped_overload += 1;
            tracing::warn!(
                gatekeeper = %self.gks[gk].cfg.name,
                "{MAX_PENDING} requests outstanding; dropping one"
            );
            return;
        }
        let seq = self.alloc_seq();
        let _ = set_seq_num(&mut m, seq);
        self.sign(&mut m, &p);
        if matches!(m, RasMessage::registrationRequest(_)) {
            self.stats.rrqs_to_gatekeepers += 1;
        }
        match ras::encode(&m) {
            Ok(bytes) => {
                let from = self.sent_from(&p);
                let key = p.forwarded_key();
                self.pending.insert(seq, (p, self.now));
                if let Some(key) = key {
                    self.forwarded.insert(key, seq);
                    if self.forwarded.len() > 2 * self.pending.len() + 1024 {
                        let pending = &self.pending;
                        self.forwarded.retain(|key, ours| {
                            pending.get(ours).and_then(|(p, _)| p.forwarded_key()) == Some(*key)
                        });
                    }
                }
                self.out.push_back(Transmit {
                    side: Side::Gatekeeper,
                    to: self.gks[gk].cfg.ras,
                    from,
                    bytes,
                });
            }
            Err(e) => tracing::warn!(error = %e, "encoding toward the gatekeeper"),
        }
    }

    /// The gatekeeper-side address a request is sent from: the own address
    /// of the endpoint it is for, if it has one.
    fn sent_from(&self, p: &Pending) -> Option<SocketAddr> {
        let source = match p {
            Pending::Probe { .. } => return None,
            Pending::Forward { to, .. } => *to,
            Pending::Reregister { endpoint_id, .. } | Pending::Refresh { endpoint_id, .. } => {
                self.regs.get(endpoint_id)?.source
            }
            Pending::CallReport { source, .. } | Pending::Unregister { source, .. } => *source,
        };
        self.own_address(source)
    }

    /// The gatekeeper-side address leased to the endpoint whose RAS comes
    /// from `source`, if any.
    fn own_address(&self, source: SocketAddr) -> Option<SocketAddr> {
        self.ids.as_ref()?.get(source)
    }

    /// Put a fresh H.235 password token into a request toward a gatekeeper
    /// when the proxy holds the credentials of whom it is for: the proxy
    /// itself (probes) or the endpoint (forwarded requests, re-registrations,
    /// refreshes). Other requests keep the tokens they came with.
    fn sign(&self, m: &mut RasMessage, p: &Pending) {
        let aliases: Vec<String> = match p {
            Pending::Probe { .. } => vec![self.cfg.proxy_id.clone()],
            Pending::Forward {
                what: Forwarded::Register(reg),
                ..
            } => reg.aliases.iter().map(alias_text).collect(),
            Pending::Forward { to, .. } => self
                .regs
                .by_source(*to)
                .map(|r| r.aliases.iter().map(alias_text).collect())
                .unwrap_or_default(),
            Pending::Reregister { endpoint_id, .. } | Pending::Refresh { endpoint_id, .. } => self
                .regs
                .get(endpoint_id)
                .map(|r| r.aliases.iter().map(alias_text).collect())
                .unwrap_or_default(),
            _ => vec![],
        };
        let found = aliases.iter().find_map(|a| {
            let bare = a.split_once(':').map(|(_, v)| v).unwrap_or(a);
            if matches!(p, Pending::Probe { .. }) {
                return self.cfg.own_password.as_ref().map(|pw| (bare, pw));
            }
            self.cfg
                .credentials
                .get(a.as_str())
                .or_else(|| self.cfg.credentials.get(bare))
                .map(|pw| (bare, pw))
        });
        if let Some((alias, password)) = found
            && let Err(e) =
                crate::h225::h235::authenticate(m, alias, password, crate::h225::h235::unix_now())
        {
            tracing::warn!(alias, error = %e, "no H.235 token");
        }
    }

    /// The H.235 password of the endpoint whose RAS datagrams come from
    /// `source`, from `[[credentials]]` by one of its aliases.
    fn endpoint_password(&self, source: SocketAddr) -> Option<&String> {
        if self.cfg.credentials.is_empty() {
            return None;
        }
        self.regs.by_source(source)?.aliases.iter().find_map(|a| {
            let t = alias_text(a);
            let bare = t.split_once(':').map(|(_, v)| v).unwrap_or(&t);
            self.cfg
                .credentials
                .get(t.as_str())
                .or_else(|| self.cfg.credentials.get(bare))
        })
    }

    /// A full RRQ for the endpoint at `source`, with its gatekeeper-side
    /// addresses.
    fn send_endpoint_rrq(
        &mut self,
        gk: usize,
        mut rrq: RegistrationRequest,
        source: SocketAddr,
        p: Pending,
    ) {
        let Some((cs, ras)) = self.lease_gk_side(source) else {
            return;
        };
        rrq.call_signal_address = vec![transport(cs)];
        rrq.ras_address = vec![transport(ras)];
        rrq.gatekeeper_identifier = self.gks[gk].id.as_deref().map(gkid);
        rrq.keep_alive = Some(false);
        rrq.endpoint_identifier = None;
        rrq.alternate_endpoints = None;
        rrq.supports_alt_gk = None;
        self.send_msg_to_gk(gk, RasMessage::registrationRequest(rrq), p);
    }

    /// Add a gatekeeper named in an alternateGatekeeper list, after the
    /// configured ones (bounded, so a hostile list cannot grow the state).
    fn learn_gatekeeper(&mut self, ras: SocketAddr, now: Instant) {
        const MAX_LEARNED: usize = 8;
        if self.gks.iter().any(|g| g.cfg.ras == ras)
            || self.gks.len() >= self.cfg.gatekeepers.len() + MAX_LEARNED
            || ras == self.cfg.gatekeeper_ras
            || ras.ip().is_unspecified()
        {
            return;
        }
        let name = format!("alternate-{ras}");
        tracing::info!(gatekeeper = %name, "alternate gatekeeper learned from an RCF");
        self.events.push_back(Event::GatekeeperLearned {
            name: name.clone(),
            ras,
        });
        self.gks.push(Gk {
            cfg: GatekeeperConfig { name, ras },
            hb: own_heartbeat(&self.cfg, now),
            id: None,
            self_id: None,
            rtt: None,
            last_health: Health::Down,
        });
    }

    /// The transport reported a gatekeeper unreachable (ICMP port or host
    /// unreachable on its connected socket): down at once.
    pub fn handle_unreachable(&mut self, now: Instant, gatekeeper: SocketAddr) {
        self.now = self.now.max(now);
        let Some(gk) = self.gks.iter().position(|g| g.cfg.ras == gatekeeper) else {
            return;
        };
        self.gks[gk].hb.handle_transport_error();
        // Its registration of the proxy may be gone with the process.
        self.gks[gk].self_id = None;
        self.note_health(gk);
        self.reselect(now);
    }

    /// Whether `ip` is the address of a known gatekeeper.
    pub fn is_gatekeeper_ip(&self, ip: std::net::IpAddr) -> bool {
        self.gks.iter().any(|g| g.cfg.ras.ip() == ip)
    }

    /// A gatekeeper's call signalling connection closed or was reset in the
    /// middle of a call (gatekeeper-routed model): probe the gatekeeper at
    /// that IP address at once and call it down if one interval passes
    /// without an answer.
    pub fn handle_transport_loss(&mut self, now: Instant, peer: std::net::IpAddr) {
        self.now = self.now.max(now);
        for gk in 0..self.gks.len() {
            if self.gks[gk].cfg.ras.ip() == peer {
                tracing::warn!(gatekeeper = %self.gks[gk].cfg.name, "gatekeeper dropped a call signalling connection; probing at once");
                self.gks[gk].hb.expedite(now);
                self.note_health(gk);
            }
        }
    }

    /// A datagram arrived on the gatekeeper-side socket.
    pub fn handle_gatekeeper(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        self.handle_gatekeeper_at(now, from, None, bytes)
    }

    /// A datagram arrived on the gatekeeper-side socket, sent to `local`
    /// (an endpoint's own gatekeeper-side address tells which endpoint a
    /// gatekeeper request is about when the request does not say).
    pub fn handle_gatekeeper_at(
        &mut self,
        now: Instant,
        from: SocketAddr,
        local: Option<SocketAddr>,
        bytes: &[u8],
    ) {
        self.now = self.now.max(now);
        let Some(gk) = self.gks.iter().position(|g| g.cfg.ras == from) else {
            self.refuse(
                from,
                "datagram from an address that is not a configured gatekeeper",
            );
            return;
        };
        let m = match ras::decode(bytes) {
            Ok(m) => m,
            Err(e) => {
                self.stats.malformed += 1;
                tracing::warn!(%from, error = %e, "malformed RAS from gatekeeper");
                self.events.push_back(Event::Rejected {
                    from,
                    reason: "malformed RAS",
                });
                return;
            }
        };
        // A decodable message from the gatekeeper shows it is alive.
        self.gks[gk].hb.handle_reply(now);
        self.note_health(gk);
        let Some(seq) = seq_num(&m) else { return };
        if is_request(&m) {
            self.gatekeeper_request(gk, seq, m, local, now);
            return;
        }
        // A reply only counts from the gatekeeper the request went to.
        if self
            .pending
            .get(&seq)
            .is_none_or(|(p, _)| p.gatekeeper() != gk)
        {
            tracing::debug!(%from, seq, "reply to no pending request");
            return;
        }
        if let RasMessage::requestInProgress(rip) = &m {
            // H.225.0 7.18: the real answer follows. Keep waiting (from now)
            // and tell the endpoint, under its own sequence number, so its
            // retry timer stretches too.
            let delay = rip.delay;
            if let Some((p, at)) = self.pending.get_mut(&seq) {
                *at = now;
                if let Pending::Forward {
                    to, seq: theirs, ..
                } = p
                {
                    let (to, theirs) = (*to, *theirs);
                    let mut m = m;
                    let _ = set_seq_num(&mut m, theirs);
                    tracing::debug!(%to, delay, "gatekeeper asks for patience");
                    self.send_to_endpoint(to, &m);
                }
            }
            return;
        }
        let Some((p, sent)) = self.pending.remove(&seq) else {
            return;
        };
        // Every answered request measures the gatekeeper's round trip, so
        // a gatekeeper slowed by load gets longer probe timeouts before
        // its slowness could pass for death.
        self.gks[gk]
            .hb
            .rtt_sample(now.saturating_duration_since(sent));
        if matches!(p, Pending::Probe { .. }) {
            self.gks[gk].rtt = Some(now.saturating_duration_since(sent));
        }
        self.gatekeeper_reply(gk, p, m, now);
        self.reselect(now);
    }

    fn gatekeeper_reply(&mut self, gk: usize, p: Pending, m: RasMessage, now: Instant) {
        match p {
            Pending::Probe { .. } => match m {
                RasMessage::registrationConfirm(rcf) => {
                    self.gks[gk].self_id = Some(bmp_text(&rcf.endpoint_identifier.0));
                    if let Some(id) = &rcf.gatekeeper_identifier {
                        self.gks[gk].id = Some(bmp_text(&id.0));
                    }
                    let mut alts: Vec<(u8, SocketAddr)> = rcf
                        .alternate_gatekeeper
                        .iter()
                        .flatten()
                        .filter_map(|a| Some((a.priority, socket_addr(&a.ras_address)?)))
                        .collect();
                    alts.sort();
                    for (_, ras) in alts {
                        self.learn_gatekeeper(ras, now);
                    }
                }
                RasMessage::registrationReject(_) => self.gks[gk].self_id = None,
                _ => {}
            },
            // A late answer from a gatekeeper no longer in control.
            Pending::Refresh { .. } if Some(gk) != self.active => {}
            Pending::Refresh { endpoint_id, .. } => {
                if let RasMessage::registrationReject(_) = m {
                    // The gatekeeper forgot it: register again in full.
                    self.regs.bind(&endpoint_id, None);
                    self.rereg.push_back(endpoint_id);
                } else if let RasMessage::registrationConfirm(rcf) = m {
                    let ttl = rcf
                        .time_to_live
                        .as_ref()
                        .map(|t| t.0)
                        .unwrap_or(self.cfg.local_ttl);
                    if let Some(b) = self.regs.get(&endpoint_id).and_then(|r| r.binding.clone()) {
                        self.regs.bind(
                            &endpoint_id,
                            Some(Binding {
                                ttl,
                                since: now,
                                ..b
                            }),
                        );
                        self.refresh
                            .push(Reverse((now + refresh_after(ttl), endpoint_id)));
                    }
                }
            }
            Pending::Reregister { endpoint_id, .. } if Some(gk) != self.active => {
                // A late answer from a gatekeeper no longer in control.
                if self.active.is_some()
                    && self
                        .regs
                        .get(&endpoint_id)
                        .is_some_and(|r| r.binding.is_none())
                {
                    self.rereg.push_back(endpoint_id);
                }
            }
            Pending::Reregister { endpoint_id, .. } => match m {
                RasMessage::registrationConfirm(rcf) => {
                    let ttl = rcf
                        .time_to_live
                        .as_ref()
                        .map(|t| t.0)
                        .unwrap_or(self.cfg.local_ttl);
                    let b = Binding {
                        gatekeeper: gk,
                        endpoint_id: bmp_text(&rcf.endpoint_identifier.0),
                        ttl,
                        since: now,
                    };
                    self.regs.bind(&endpoint_id, Some(b));
                    self.refresh
                        .push(Reverse((now + refresh_after(ttl), endpoint_id.clone())));
                    self.events.push_back(Event::Registered {
                        endpoint_id: endpoint_id.clone(),
                        gatekeeper: Some(self.gks[gk].cfg.name.clone()),
                    });
                    self.report_calls(gk, &endpoint_id);
                }
                other => {
                    tracing::warn!(
                        endpoint_id,
                        reply = ras::CHOICE_NAMES[choice(&other)],
                        "re-registration refused"
                    );
                }
            },
            Pending::CallReport { .. } | Pending::Unregister { .. } => {}
            Pending::Forward { to, seq, what, .. } => {
                self.forwarded_reply(gk, to, seq, what, m, now)
            }
        }
    }

    fn forwarded_reply(
        &mut self,
        gk: usize,
        to: SocketAddr,
        seq: u16,
        what: Forwarded,
        mut m: RasMessage,
        now: Instant,
    ) {
        let _ = set_seq_num(&mut m, seq);
        match (&mut m, what) {
            (RasMessage::registrationConfirm(rcf), Forwarded::Register(mut reg)) => {
                let gk_id = bmp_text(&rcf.endpoint_identifier.0);
                let ttl = rcf
                    .time_to_live
                    .as_ref()
                    .map(|t| t.0)
                    .unwrap_or(self.cfg.local_ttl);
                // Keep the identifier the endpoint already has; else take the
                // gatekeeper's unless another endpoint here already uses it
                // (gatekeepers number independently).
                let local = match self.regs.by_source(reg.source) {
                    Some(r) => r.endpoint_id.clone(),
                    None if self.regs.get(&gk_id).is_some() => {
                        self.regs.allocate_id(&self.cfg.proxy_id)
                    }
                    None => gk_id.clone(),
                };
                reg.endpoint_id = local.clone();
                reg.binding = None;
                reg.granted_ttl = ttl;
                self.regs.insert(*reg);
                if Some(gk) == self.active {
                    self.regs.bind(
                        &local,
                        Some(Binding {
                            gatekeeper: gk,
                            endpoint_id: gk_id,
                            ttl,
                            since: now,
                        }),
                    );
                    self.refresh
                        .push(Reverse((now + refresh_after(ttl), local.clone())));
                } else if self.active.is_some() {
                    // Control moved while this RRQ was out: register it
                    // where control is now.
                    self.rereg.push_back(local.clone());
                }
                rcf.endpoint_identifier = epid(&local);
                rcf.call_signal_address = vec![transport(self.cfg.endpoint_call_signal)];
                rcf.gatekeeper_identifier = Some(gkid(&self.cfg.proxy_id));
                rcf.alternate_gatekeeper = None;
                // Pre-granted admission would let calls start without an
                // ARQ, and the proxy would not know them to keep them up.
                rcf.pre_granted_arq = None;
                tracing::info!(endpoint_id = %local, gatekeeper = %self.gks[gk].cfg.name, "registered");
                self.events.push_back(Event::Registered {
                    endpoint_id: local,
                    gatekeeper: Some(self.gks[gk].cfg.name.clone()),
                });
            }
            (RasMessage::registrationReject(rrj), _) => {
                rrj.gatekeeper_identifier = Some(gkid(&self.cfg.proxy_id));
                rrj.alt_gkinfo = None;
            }
            (RasMessage::unregistrationConfirm(_), Forwarded::Unregister(id)) => {
                self.regs.remove(&id);
                self.events
                    .push_back(Event::Unregistered { endpoint_id: id });
            }
            (RasMessage::admissionConfirm(acf), Forwarded::Admit(mut call)) => {
                let dest = socket_addr(&acf.dest_call_signal_address);
                call.destination = dest.filter(|d| !self.is_own_gk_side(*d));
                call.bandwidth = acf.band_width.0;
                acf.dest_call_signal_address = transport(self.cfg.endpoint_call_signal);
                acf.alternate_endpoints = None;
                self.calls
                    .insert((call.call_id, call.endpoint_id.clone()), *call);
            }
            (RasMessage::disengageConfirm(_), Forwarded::Disengage(key)) => {
                self.calls.remove(&key);
            }
            // Endpoints must only ever know the proxy: no alternate
            // gatekeepers in rejects, and a located endpoint is reached
            // through the proxy's own addresses.
            (RasMessage::admissionReject(r), _) => r.alt_gkinfo = None,
            (RasMessage::unregistrationReject(r), _) => r.alt_gkinfo = None,
            (RasMessage::locationReject(r), _) => r.alt_gkinfo = None,
            (RasMessage::bandwidthReject(r), _) => r.alt_gkinfo = None,
            (RasMessage::locationConfirm(lcf), _) => {
                lcf.call_signal_address = transport(self.cfg.endpoint_call_signal);
                lcf.ras_address = transport(self.cfg.endpoint_ras);
                lcf.alternate_endpoints = None;
                lcf.alternate_transport_addresses = None;
            }
            _ => {}
        }
        self.send_to_endpoint(to, &m);
    }

    fn gatekeeper_request(
        &mut self,
        gk: usize,
        seq: u16,
        mut m: RasMessage,
        local: Option<SocketAddr>,
        now: Instant,
    ) {
        // The endpoint whose own gatekeeper-side address the request came to.
        let addressed = local
            .and_then(|l| self.ids.as_ref()?.owner(l))
            .and_then(|s| self.regs.by_source(s))
            .map(|r| (r.endpoint_id.clone(), r.ras));
        // Find the endpoint it is about, and put its local identifier in.
        let target = match &mut m {
            RasMessage::unregistrationRequest(u) => {
                let r = u
                    .endpoint_identifier
                    .as_ref()
                    .and_then(|e| self.regs.by_gatekeeper_id(gk, &bmp_text(&e.0)))
                    .map(|r| (r.endpoint_id.clone(), r.ras))
                    .or_else(|| addressed.clone());
                if let Some((id, _)) = &r {
                    u.endpoint_identifier = Some(epid(id));
                    u.call_signal_address = vec![transport(self.cfg.endpoint_call_signal)];
                    u.alternate_gatekeeper = None;
                }
                r
            }
            RasMessage::disengageRequest(d) => {
                let r = self
                    .regs
                    .by_gatekeeper_id(gk, &bmp_text(&d.endpoint_identifier.0))
                    .map(|r| (r.endpoint_id.clone(), r.ras));
                if let Some((id, _)) = &r {
                    d.endpoint_identifier = epid(id);
                }
                r
            }
            RasMessage::bandwidthRequest(b) => {
                let r = self
                    .regs
                    .by_gatekeeper_id(gk, &bmp_text(&b.endpoint_identifier.0))
                    .map(|r| (r.endpoint_id.clone(), r.ras));
                if let Some((id, _)) = &r {
                    b.endpoint_identifier = epid(id);
                }
                r
            }
            RasMessage::infoRequest(irq) => {
                // By the call it names, else by the address it was sent to
                // (GnuGk polls a registration whose timeToLive lapsed with
                // an IRQ carrying neither: call reference 0).
                let by_call = irq
                    .call_identifier
                    .as_ref()
                    .and_then(|c| self.call(&guid(c.guid.0.as_ref())))
                    .and_then(|c| self.regs.get(&c.endpoint_id))
                    .map(|r| (r.endpoint_id.clone(), r.ras))
                    .or_else(|| addressed.clone());
                if by_call.is_some() {
                    irq.reply_address = Some(transport(self.cfg.endpoint_ras));
                }
                by_call
            }
            _ => None,
        };
        match target {
            Some((id, ras_addr)) => {
                if self.pending.len() + self.ep_pending.len() >= MAX_PENDING {
                    self.stats.dropped_overload += 1;
                    return;
                }
                let our = self.alloc_seq();
                self.ep_pending.insert(our, (gk, seq, id.clone(), now));
                let _ = set_seq_num(&mut m, our);
                tracing::debug!(endpoint_id = %id, request = ras::CHOICE_NAMES[choice(&m)], "gatekeeper request forwarded to endpoint");
                self.send_to_endpoint(ras_addr, &m);
            }
            None => {
                // About the proxy itself, or an endpoint we do not know:
                // answer for the proxy.
                let reply = match &m {
                    RasMessage::infoRequest(_) => Some(json!({"infoRequestResponse": {
                        "requestSeqNum": seq,
                        "endpointType": {"gateway": {}, "mc": false, "undefinedNode": false},
                        "endpointIdentifier": self.gks[gk].self_id.clone().unwrap_or_else(|| self.cfg.proxy_id.clone()),
                        "rasAddress": transport_json(self.cfg.gatekeeper_ras),
                        "callSignalAddress": [transport_json(self.cfg.gatekeeper_call_signal)],
                    }})),
                    RasMessage::unregistrationRequest(_) => {
                        self.gks[gk].self_id = None;
                        Some(json!({"unregistrationConfirm": {"requestSeqNum": seq}}))
                    }
                    RasMessage::disengageRequest(_) => Some(
                        json!({"disengageReject": {"requestSeqNum": seq, "rejectReason": {"notRegistered": null}}}),
                    ),
                    _ => None,
                };
                if let Some(v) = reply
                    && let Ok(r) = ras_from_json(&v)
                    && let Ok(bytes) = ras::encode(&r)
                {
                    self.out.push_back(Transmit {
                        side: Side::Gatekeeper,
                        to: self.gks[gk].cfg.ras,
                        from: None,
                        bytes,
                    });
                }
            }
        }
    }

    /// Tell the gatekeeper now in control about an endpoint's calls, with an
    /// unsolicited IRR carrying perCallInfo (H.225.0 §7.15.2: a gatekeeper
    /// learns call state from IRRs; H.323 Annex R recovers calls the same
    /// way), so it can control them (bandwidth, disengage) from now on.
    fn report_calls(&mut self, gk: usize, endpoint_id: &str) {
        let Some(r) = self.regs.get(endpoint_id) else {
            return;
        };
        let Some(b) = &r.binding else { return };
        let (cs, ras) = self.gk_side(r.source);
        let calls: Vec<Value> = self
            .calls
            .values()
            .filter(|c| c.endpoint_id == endpoint_id)
            .map(|c| {
                json!({
                    "callReferenceValue": c.crv,
                    "conferenceID": hex(&c.conference_id),
                    "originator": !c.answer_call,
                    "h245": {},
                    "callSignalling": {"recvAddress": transport_json(cs)},
                    "callType": {"pointToPoint": null},
                    "bandWidth": c.bandwidth,
                    "callModel": {"direct": null},
                    "callIdentifier": {"guid": hex(&c.call_id)},
                })
            })
            .collect();
        if calls.is_empty() {
            return;
        }
        let n = calls.len();
        let v = json!({"infoRequestResponse": {
            "requestSeqNum": 1,
            "endpointType": {"terminal": {}, "mc": false, "undefinedNode": false},
            "endpointIdentifier": b.endpoint_id,
            "rasAddress": transport_json(ras),
            "callSignalAddress": [transport_json(cs)],
            "endpointAlias": r.aliases.iter().map(|a| alias_json(&alias_text(a))).collect::<Vec<_>>(),
            "perCallInfo": calls,
            "needResponse": true,
            "unsolicited": true,
        }});
        tracing::info!(endpoint_id, calls = n, gatekeeper = %self.gks[gk].cfg.name, "active calls reported");
        let source = r.source;
        self.send_to_gk(gk, &v, Pending::CallReport { gk, source });
    }

    // ------------------------------------------------------- endpoint side

    fn send_to_endpoint(&mut self, to: SocketAddr, m: &RasMessage) {
        // An endpoint that authenticates its gatekeeper (H.235) accepts only
        // answers with a token it can check: the proxy signs as itself with
        // that endpoint's password when it holds it. The gatekeeper's own
        // tokens do not survive the proxy's rewriting.
        let signed;
        let m = match self.endpoint_password(to) {
            Some(pw) => {
                let mut c = m.clone();
                let pw = pw.clone();
                if let Err(e) = crate::h225::h235::authenticate(
                    &mut c,
                    &self.cfg.proxy_id,
                    &pw,
                    crate::h225::h235::unix_now(),
                ) {
                    tracing::warn!(%to, error = %e, "no H.235 token");
                }
                signed = c;
                &signed
            }
            None => m,
        };
        match ras::encode(m) {
            Ok(bytes) => self.out.push_back(Transmit {
                side: Side::Endpoint,
                to,
                from: None,
                bytes,
            }),
            Err(e) => tracing::warn!(%to, error = %e, "encoding toward an endpoint"),
        }
    }

    /// Answer an endpoint from the proxy itself (survivable mode, or
    /// requests the proxy always serves).
    fn answer(&mut self, to: SocketAddr, v: Value) {
        self.stats.local_answers += 1;
        self.send_json(to, v);
    }

    fn send_json(&mut self, to: SocketAddr, v: Value) {
        match ras_from_json(&v) {
            Ok(m) => self.send_to_endpoint(to, &m),
            Err(e) => tracing::error!(error = %e, "building a RAS message (bug)"),
        }
    }

    fn refuse(&mut self, from: SocketAddr, reason: &'static str) {
        self.stats.refused += 1;
        tracing::warn!(%from, reason, "RAS datagram refused");
        self.events.push_back(Event::Rejected { from, reason });
    }

    /// A datagram arrived on the endpoint-side socket.
    pub fn handle_endpoint(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        self.now = self.now.max(now);
        // Every log line about this datagram carries the endpoint.
        let id = self.regs.by_source(from).map(|r| r.endpoint_id.clone());
        let span = tracing::info_span!(
            "endpoint",
            %from,
            endpoint_id = id.as_deref().unwrap_or("-")
        );
        let _in_span = span.enter();
        let m = match ras::decode(bytes) {
            Ok(m) => m,
            Err(e) => {
                self.stats.malformed += 1;
                tracing::warn!(%from, error = %e, "malformed RAS from endpoint");
                self.events.push_back(Event::Rejected {
                    from,
                    reason: "malformed RAS",
                });
                return;
            }
        };
        let Some(seq) = seq_num(&m) else {
            let reason = if matches!(m, RasMessage::UnknownExtension(_)) {
                "RAS message type of a later H.225.0 version"
            } else {
                "empty admissionConfirmSequence"
            };
            self.refuse(from, reason);
            return;
        };
        match m {
            RasMessage::gatekeeperRequest(_) => {
                let v = json!({"gatekeeperConfirm": {
                    "requestSeqNum": seq,
                    "protocolIdentifier": PROTOCOL_ID,
                    "gatekeeperIdentifier": self.cfg.proxy_id,
                    "rasAddress": transport_json(self.cfg.endpoint_ras),
                }});
                self.answer(from, v);
            }
            RasMessage::registrationRequest(rrq) => self.endpoint_rrq(now, from, seq, rrq, bytes),
            RasMessage::unregistrationRequest(u) => {
                let Some(r) = self.regs.by_source(from).cloned() else {
                    self.answer(from, json!({"unregistrationReject": {"requestSeqNum": seq, "rejectReason": {"notCurrentlyRegistered": null}}}));
                    return;
                };
                match (self.active, r.binding.clone()) {
                    (Some(gk), Some(b)) if b.gatekeeper == gk => {
                        let mut u = u;
                        u.endpoint_identifier = Some(epid(&b.endpoint_id));
                        u.call_signal_address = vec![transport(self.gk_side(from).0)];
                        u.gatekeeper_identifier = self.gks[gk].id.as_deref().map(gkid);
                        self.forward(
                            gk,
                            from,
                            seq,
                            RasMessage::unregistrationRequest(u),
                            Forwarded::Unregister(r.endpoint_id),
                        );
                    }
                    _ => {
                        self.regs.remove(&r.endpoint_id);
                        self.events.push_back(Event::Unregistered {
                            endpoint_id: r.endpoint_id,
                        });
                        self.answer(
                            from,
                            json!({"unregistrationConfirm": {"requestSeqNum": seq}}),
                        );
                    }
                }
            }
            RasMessage::admissionRequest(arq) => self.endpoint_arq(from, seq, arq),
            RasMessage::disengageRequest(mut d) => {
                let Some(r) = self.registered(from, &bmp_text(&d.endpoint_identifier.0)) else {
                    self.answer(from, json!({"disengageReject": {"requestSeqNum": seq, "rejectReason": {"notRegistered": null}}}));
                    return;
                };
                let call_id = d
                    .call_identifier
                    .as_ref()
                    .map(|c| guid(c.guid.0.as_ref()))
                    .unwrap_or_default();
                match (self.active, r.binding.clone()) {
                    (Some(gk), Some(b)) if b.gatekeeper == gk => {
                        d.endpoint_identifier = epid(&b.endpoint_id);
                        d.gatekeeper_identifier = self.gks[gk].id.as_deref().map(gkid);
                        self.forward(
                            gk,
                            from,
                            seq,
                            RasMessage::disengageRequest(d),
                            Forwarded::Disengage((call_id, r.endpoint_id.clone())),
                        );
                    }
                    _ => {
                        self.calls.remove(&(call_id, r.endpoint_id.clone()));
                        self.answer(from, json!({"disengageConfirm": {"requestSeqNum": seq}}));
                    }
                }
            }
            RasMessage::locationRequest(mut l) => {
                if let Some(gk) = self.active {
                    l.reply_address = transport(self.cfg.gatekeeper_ras);
                    if let Some(e) = &l.endpoint_identifier {
                        l.endpoint_identifier = self
                            .regs
                            .get(&bmp_text(&e.0))
                            .and_then(|r| r.binding.as_ref())
                            .map(|b| epid(&b.endpoint_id));
                    }
                    self.forward(
                        gk,
                        from,
                        seq,
                        RasMessage::locationRequest(l),
                        Forwarded::Other,
                    );
                    return;
                }
                let found = l
                    .destination_info
                    .iter()
                    .find_map(|a| self.route_local(a).map(|r| r.endpoint_id.clone()));
                let v = match found {
                    Some(_) => json!({"locationConfirm": {
                        "requestSeqNum": seq,
                        "callSignalAddress": transport_json(self.cfg.endpoint_call_signal),
                        "rasAddress": transport_json(self.cfg.endpoint_ras),
                    }}),
                    None => {
                        json!({"locationReject": {"requestSeqNum": seq, "rejectReason": {"requestDenied": null}}})
                    }
                };
                self.answer(from, v);
            }
            RasMessage::bandwidthRequest(mut b) => {
                let Some(r) = self.registered(from, &bmp_text(&b.endpoint_identifier.0)) else {
                    self.refuse(from, "bandwidthRequest from an unregistered endpoint");
                    return;
                };
                match (self.active, r.binding.clone()) {
                    (Some(gk), Some(bd)) if bd.gatekeeper == gk => {
                        b.endpoint_identifier = epid(&bd.endpoint_id);
                        self.forward(gk, from, seq, RasMessage::bandwidthRequest(b), Forwarded::Other);
                    }
                    _ => self.answer(from, json!({"bandwidthConfirm": {"requestSeqNum": seq, "bandWidth": b.band_width.0}})),
                }
            }
            RasMessage::infoRequestResponse(mut irr) => {
                // A reply to a gatekeeper IRQ we forwarded, from the
                // endpoint that was asked? Then it goes back rewritten like
                // any IRR: the gatekeeper's identifier, the proxy's addresses.
                if let Some((gk, their, target)) = self.take_ep_pending(seq, from) {
                    if let Some(b) = self.regs.get(&target).and_then(|r| r.binding.clone()) {
                        irr.endpoint_identifier = epid(&b.endpoint_id);
                    }
                    let (cs, ras) = self.gk_side(from);
                    irr.ras_address = transport(ras);
                    irr.call_signal_address = vec![transport(cs)];
                    let own = self.own_address(from);
                    self.reply_to_gatekeeper(gk, their, RasMessage::infoRequestResponse(irr), own);
                    return;
                }
                let Some(r) = self.registered(from, &bmp_text(&irr.endpoint_identifier.0)) else {
                    self.refuse(from, "infoRequestResponse from an unregistered endpoint");
                    return;
                };
                match (self.active, r.binding.clone()) {
                    (Some(gk), Some(b)) if b.gatekeeper == gk => {
                        irr.endpoint_identifier = epid(&b.endpoint_id);
                        let (cs, ras) = self.gk_side(from);
                        irr.ras_address = transport(ras);
                        irr.call_signal_address = vec![transport(cs)];
                        self.forward(
                            gk,
                            from,
                            seq,
                            RasMessage::infoRequestResponse(irr),
                            Forwarded::Other,
                        );
                    }
                    _ => {
                        if irr.need_response == Some(true) {
                            self.answer(from, json!({"infoRequestAck": {"requestSeqNum": seq}}));
                        }
                    }
                }
            }
            // Endpoint replies to gatekeeper-initiated requests.
            m @ (RasMessage::unregistrationConfirm(_)
            | RasMessage::unregistrationReject(_)
            | RasMessage::disengageConfirm(_)
            | RasMessage::disengageReject(_)
            | RasMessage::bandwidthConfirm(_)
            | RasMessage::bandwidthReject(_)) => {
                let Some((gk, their, target)) = self.take_ep_pending(seq, from) else {
                    self.refuse(
                        from,
                        "reply to no request the proxy forwarded to this endpoint",
                    );
                    return;
                };
                let own = self.own_address(from);
                if let RasMessage::unregistrationConfirm(_) = &m {
                    self.regs.remove(&target);
                    self.calls.retain(|(_, e), _| *e != target);
                    self.events.push_back(Event::Unregistered {
                        endpoint_id: target,
                    });
                }
                self.reply_to_gatekeeper(gk, their, m, own);
            }
            other => {
                self.refuse(
                    from,
                    "RAS message an endpoint does not send to its gatekeeper",
                );
                let _ = other;
                self.answer(
                    from,
                    json!({"unknownMessageResponse": {"requestSeqNum": seq}}),
                );
            }
        }
    }

    /// Send `m` to gatekeeper `gk` as the answer to its request `seq`. (A
    /// disengageConfirm ends nothing here: the call record goes when the
    /// endpoint's own DRQ comes.)
    fn reply_to_gatekeeper(
        &mut self,
        gk: usize,
        seq: u16,
        mut m: RasMessage,
        from: Option<SocketAddr>,
    ) {
        let _ = set_seq_num(&mut m, seq);
        match ras::encode(&m) {
            Ok(bytes) => self.out.push_back(Transmit {
                side: Side::Gatekeeper,
                to: self.gks[gk].cfg.ras,
                from,
                bytes,
            }),
            Err(e) => tracing::warn!(error = %e, "encoding a reply toward the gatekeeper"),
        }
    }

    /// The forwarded gatekeeper request `seq`, if `from` is the endpoint it
    /// went to (another endpoint guessing the number changes nothing).
    fn take_ep_pending(&mut self, seq: u16, from: SocketAddr) -> Option<(usize, u16, String)> {
        let (_, _, target, _) = self.ep_pending.get(&seq)?;
        if self.regs.by_source(from).map(|r| &r.endpoint_id) != Some(target) {
            return None;
        }
        let (gk, their, target, _) = self.ep_pending.remove(&seq)?;
        Some((gk, their, target))
    }

    /// The registration of the endpoint at `from` claiming `endpoint_id`.
    fn registered(&self, from: SocketAddr, endpoint_id: &str) -> Option<Registration> {
        self.regs
            .by_source(from)
            .filter(|r| r.endpoint_id == endpoint_id)
            .cloned()
    }

    fn forward(&mut self, gk: usize, from: SocketAddr, seq: u16, m: RasMessage, what: Forwarded) {
        // A retransmission of a request still waiting at this gatekeeper is
        // not sent again: the answer to the first reaches the endpoint under
        // the same sequence number, and a gatekeeper slowed by load is not
        // handed the same work once per endpoint retry (which would slow it
        // further and bring more retries).
        if self.waiting_forward(gk, from, seq).is_some() {
            self.stats.retransmissions_absorbed += 1;
            return;
        }
        self.stats.forwarded += 1;
        self.send_msg_to_gk(
            gk,
            m,
            Pending::Forward {
                gk,
                to: from,
                seq,
                what,
            },
        );
    }

    /// Our sequence number of the request `seq` from `from` forwarded to
    /// gatekeeper `gk`, not yet answered and recent enough that its answer
    /// is still to be expected: within twice the gatekeeper's smoothed round
    /// trip, at least 1 s. An older copy may have been lost, so the
    /// retransmission goes out.
    fn waiting_forward(&self, gk: usize, from: SocketAddr, seq: u16) -> Option<u16> {
        let ours = *self.forwarded.get(&(from, seq))?;
        let hold = (self.gks[gk].hb.srtt().unwrap_or_default() * 2)
            .max(Duration::from_secs(1))
            .min(PENDING_LIFETIME);
        let (p, at) = self.pending.get(&ours)?;
        (p.gatekeeper() == gk
            && p.forwarded_key() == Some((from, seq))
            && self.now.saturating_duration_since(*at) < hold)
            .then_some(ours)
    }

    fn endpoint_rrq(
        &mut self,
        now: Instant,
        from: SocketAddr,
        seq: u16,
        rrq: RegistrationRequest,
        bytes: &[u8],
    ) {
        if rrq.keep_alive == Some(true) {
            let claimed = rrq.endpoint_identifier.as_ref().map(|e| bmp_text(&e.0));
            let Some(id) = claimed.filter(|id| {
                self.regs
                    .by_source(from)
                    .is_some_and(|r| &r.endpoint_id == id)
            }) else {
                self.stats.refused += 1;
                self.events.push_back(Event::Rejected {
                    from,
                    reason: "keepalive from an unknown endpoint or address",
                });
                self.answer(
                    from,
                    json!({"registrationReject": {
                        "requestSeqNum": seq, "protocolIdentifier": PROTOCOL_ID,
                        "rejectReason": {"fullRegistrationRequired": null},
                        "gatekeeperIdentifier": self.cfg.proxy_id,
                    }}),
                );
                return;
            };
            // Answer with the timeToLive the endpoint was granted: its
            // registration lapses on that clock, whoever is in control.
            let ttl = self
                .regs
                .get(&id)
                .map(|r| r.granted_ttl)
                .unwrap_or(self.cfg.local_ttl);
            if let Some(r) = self.regs.get_mut(&id) {
                r.last_keepalive = Some(now);
                r.keepalives += 1;
            }
            self.stats.keepalives_answered += 1;
            self.answer_keepalive(from, seq, &id, ttl, bytes);
            return;
        }
        let aliases = rrq.terminal_alias.clone().unwrap_or_default();
        let reg = Registration {
            endpoint_id: String::new(),
            aliases,
            source: from,
            ras: rrq
                .ras_address
                .first()
                .and_then(socket_addr)
                .unwrap_or(from),
            call_signal: rrq.call_signal_address.first().and_then(socket_addr),
            rrq: rrq.clone(),
            binding: None,
            granted_ttl: self.cfg.local_ttl,
            last_keepalive: Some(now),
            keepalives: 0,
            rcf_template: None,
            offloaded: None,
            offloaded_answers: 0,
        };
        if let Some(gk) = self.active {
            let Some((cs, ras)) = self.lease_gk_side(from) else {
                self.answer(
                    from,
                    json!({"registrationReject": {
                        "requestSeqNum": seq, "protocolIdentifier": PROTOCOL_ID,
                        "rejectReason": {"resourceUnavailable": null},
                        "gatekeeperIdentifier": self.cfg.proxy_id,
                    }}),
                );
                return;
            };
            let mut m = rrq.clone();
            m.call_signal_address = vec![transport(cs)];
            m.ras_address = vec![transport(ras)];
            m.gatekeeper_identifier = self.gks[gk].id.as_deref().map(gkid);
            m.endpoint_identifier = None;
            m.keep_alive = Some(false);
            self.forward(
                gk,
                from,
                seq,
                RasMessage::registrationRequest(m),
                Forwarded::Register(Box::new(reg)),
            );
            return;
        }
        // Survivable mode: register locally.
        let id = match self.regs.by_source(from) {
            Some(r) => r.endpoint_id.clone(),
            None => self.regs.allocate_id(&self.cfg.proxy_id),
        };
        let mut reg = reg;
        reg.endpoint_id = id.clone();
        self.regs.insert(reg);
        tracing::info!(endpoint_id = %id, "registered locally (survivable mode)");
        self.events.push_back(Event::Registered {
            endpoint_id: id.clone(),
            gatekeeper: None,
        });
        let v = self.rcf_json(seq, &id, self.cfg.local_ttl);
        self.answer(from, v);
    }

    /// Answer a keepalive from the registration's RCF template (built once),
    /// and offer the pair to the kernel fast path.
    fn answer_keepalive(&mut self, from: SocketAddr, seq: u16, id: &str, ttl: u32, request: &[u8]) {
        if self.regs.get(id).is_some_and(|r| r.rcf_template.is_none()) {
            let tpl = self.rcf_template(id, ttl);
            if let Some(r) = self.regs.get_mut(id) {
                r.rcf_template = tpl;
            }
        }
        let Some((answer, offer)) = self.regs.get(id).and_then(|r| {
            let tpl = r.rcf_template.as_ref()?;
            // Build an entry for the kernel only when this keepalive is not
            // the one it already holds (the common case costs one hash).
            let known = r.offloaded == Some(proxy_common::ka_hash(request, 0, 0).0);
            let offer = (!known).then(|| crate::offload::entry(request, seq, id, tpl));
            Some((tpl.answer(seq), offer))
        }) else {
            let v = self.rcf_json(seq, id, ttl);
            self.send_json(from, v);
            return;
        };
        self.out.push_back(Transmit {
            side: Side::Endpoint,
            to: from,
            from: None,
            bytes: answer,
        });
        match offer {
            Some(Ok(entry)) => {
                if let Some(r) = self.regs.get_mut(id) {
                    r.offloaded = Some(entry.req_hash);
                }
                self.events.push_back(Event::Offload {
                    source: from,
                    entry: Box::new(entry),
                });
            }
            Some(Err(e)) => {
                tracing::debug!(endpoint_id = id, error = %e, "keepalive stays in userspace")
            }
            None => {}
        }
    }

    fn rcf_template(&self, id: &str, ttl: u32) -> Option<crate::offload::RcfTemplate> {
        // Signed once (one timestamp) when the endpoint authenticates its
        // gatekeeper: the H.235 MD5 token does not cover requestSeqNum.
        let pw = self
            .regs
            .get(id)
            .and_then(|r| self.endpoint_password(r.source))
            .cloned();
        let stamp = crate::h225::h235::unix_now();
        let enc = |seq| {
            let mut m = ras_from_json(&self.rcf_json(seq, id, ttl)).ok()?;
            if let Some(pw) = &pw {
                crate::h225::h235::authenticate(&mut m, &self.cfg.proxy_id, pw, stamp).ok()?;
            }
            ras::encode(&m).ok()
        };
        let (a, b) = (enc(1)?, enc(0xfffe)?);
        crate::offload::RcfTemplate::from_encodings(&a, &b)
            .map_err(|e| tracing::warn!(endpoint_id = id, error = %e, "no RCF template"))
            .ok()
    }

    fn rcf_json(&self, seq: u16, id: &str, ttl: u32) -> Value {
        let r = self.regs.get(id);
        let aliases: Vec<Value> = r
            .map(|r| {
                r.aliases
                    .iter()
                    .map(|a| alias_json(&alias_text(a)))
                    .collect()
            })
            .unwrap_or_default();
        let mut body = json!({
            "requestSeqNum": seq,
            "protocolIdentifier": PROTOCOL_ID,
            "callSignalAddress": [transport_json(self.cfg.endpoint_call_signal)],
            "gatekeeperIdentifier": self.cfg.proxy_id,
            "endpointIdentifier": id,
            "timeToLive": ttl,
        });
        if !aliases.is_empty() {
            body["terminalAlias"] = Value::Array(aliases);
        }
        json!({ "registrationConfirm": body })
    }

    fn endpoint_arq(&mut self, from: SocketAddr, seq: u16, mut arq: AdmissionRequest) {
        let claimed = bmp_text(&arq.endpoint_identifier.0);
        let Some(r) = self.registered(from, &claimed) else {
            self.stats.refused += 1;
            self.events.push_back(Event::Rejected {
                from,
                reason: "admissionRequest from an unregistered endpoint",
            });
            self.answer(from, json!({"admissionReject": {"requestSeqNum": seq, "rejectReason": {"callerNotRegistered": null}}}));
            return;
        };
        let call = CallRecord {
            call_id: arq
                .call_identifier
                .as_ref()
                .map(|c| guid(c.guid.0.as_ref()))
                .unwrap_or_default(),
            conference_id: guid(arq.conference_id.0.0.as_ref()),
            crv: arq.call_reference_value.0,
            endpoint_id: r.endpoint_id.clone(),
            answer_call: arq.answer_call,
            bandwidth: arq.band_width.0,
            destination: None,
            dest_aliases: arq
                .destination_info
                .iter()
                .flatten()
                .map(alias_text)
                .collect(),
        };
        match (self.active, r.binding.clone()) {
            (Some(gk), Some(b)) if b.gatekeeper == gk => {
                let cs = self.gk_side(from).0;
                arq.endpoint_identifier = epid(&b.endpoint_id);
                arq.src_call_signal_address = Some(transport(cs));
                arq.gatekeeper_identifier = self.gks[gk].id.as_deref().map(gkid);
                if arq.answer_call {
                    arq.dest_call_signal_address = Some(transport(cs));
                }
                self.forward(
                    gk,
                    from,
                    seq,
                    RasMessage::admissionRequest(arq),
                    Forwarded::Admit(Box::new(call)),
                );
            }
            _ => {
                // Survivable mode: admit calls answered here and calls to
                // the proxy's own endpoints (by alias or dial plan).
                let local = arq.answer_call
                    || arq
                        .destination_info
                        .iter()
                        .flatten()
                        .any(|a| self.route_local(a).is_some());
                if !local {
                    self.answer(from, json!({"admissionReject": {"requestSeqNum": seq, "rejectReason": {"calledPartyNotRegistered": null}}}));
                    return;
                }
                let bw = call.bandwidth;
                self.calls
                    .insert((call.call_id, call.endpoint_id.clone()), call);
                self.answer(
                    from,
                    json!({"admissionConfirm": {
                        "requestSeqNum": seq,
                        "bandWidth": bw,
                        "callModel": {"direct": null},
                        "destCallSignalAddress": transport_json(self.cfg.endpoint_call_signal),
                    }}),
                );
            }
        }
    }

    /// The gatekeeper-side (call signalling, RAS) addresses of the endpoint
    /// whose RAS datagrams come from `source`: its own when identities are
    /// configured and it holds one, else the proxy's.
    fn gk_side(&self, source: SocketAddr) -> (SocketAddr, SocketAddr) {
        match self.ids.as_ref().and_then(|p| p.get(source)) {
            Some(a) => (a, a),
            None => (self.cfg.gatekeeper_call_signal, self.cfg.gatekeeper_ras),
        }
    }

    /// As [`RasRelay::gk_side`], leasing an address first; `None` (logged
    /// and counted) when every address of the ranges is in use.
    fn lease_gk_side(&mut self, source: SocketAddr) -> Option<(SocketAddr, SocketAddr)> {
        if let Some(pool) = self.ids.as_mut()
            && let Err(e) = pool.lease(source, self.now)
        {
            self.stats.refused += 1;
            tracing::warn!(%source, error = %e, "no gatekeeper-side address for this endpoint");
            return None;
        }
        Some(self.gk_side(source))
    }

    /// Whether `addr` is one of the proxy's own gatekeeper-side call
    /// signalling addresses (shared, or an endpoint's).
    pub fn is_own_gk_side(&self, addr: SocketAddr) -> bool {
        addr == self.cfg.gatekeeper_call_signal || self.ids.as_ref().is_some_and(|p| p.covers(addr))
    }

    /// The endpoint whose own gatekeeper-side address is `local`: a
    /// connection a gatekeeper opened to it is that endpoint's call.
    pub fn route_identity(&self, local: SocketAddr) -> Option<CallRoute> {
        let source = self.ids.as_ref()?.owner(local)?;
        let r = self.regs.by_source(source)?;
        Some(CallRoute::Local {
            endpoint_id: r.endpoint_id.clone(),
            call_signal: r.call_signal?,
        })
    }

    /// For a call placed by one of the proxy's endpoints: its
    /// gatekeeper-side call signalling address and the endpointIdentifier
    /// the gatekeeper in control assigned it (for the SETUP toward it).
    pub fn caller_identity(&self, call_id: &[u8; 16]) -> Option<(SocketAddr, Option<String>)> {
        let c = self
            .calls
            .get(&(*call_id, self.call(call_id)?.endpoint_id.clone()))?;
        let r = self.regs.get(&c.endpoint_id)?;
        let bound = r
            .binding
            .as_ref()
            .filter(|b| Some(b.gatekeeper) == self.active)
            .map(|b| b.endpoint_id.clone());
        Some((self.gk_side(r.source).0, bound))
    }

    /// The per-endpoint gatekeeper-side address ranges and how many are
    /// leased, when configured.
    pub fn identities(&self) -> Option<&IdentityPool> {
        self.ids.as_ref()
    }

    /// Where the call signalling of a SETUP goes: the far end the
    /// gatekeeper named in its ACF, else the proxy's own endpoint its
    /// destination aliases reach (directly or through the dial plan).
    ///
    /// A SETUP that arrived from the gatekeeper side (`from_gatekeeper`) is
    /// for one of the proxy's endpoints: only aliases count, or a
    /// gatekeeper-routed call would loop back to the gatekeeper.
    pub fn route_call(
        &self,
        call_id: Option<[u8; 16]>,
        destinations: &[String],
        from_gatekeeper: bool,
    ) -> Option<CallRoute> {
        if let Some(dest) = call_id
            .and_then(|c| self.call(&c))
            .and_then(|c| c.destination)
            .filter(|_| !from_gatekeeper)
        {
            return Some(CallRoute::Remote(dest));
        }
        destinations.iter().find_map(|d| {
            let r = self.route_alias(d)?;
            Some(CallRoute::Local {
                endpoint_id: r.endpoint_id.clone(),
                call_signal: r.call_signal?,
            })
        })
    }

    /// The local endpoint an alias reaches, directly or through the dial plan.
    pub fn route_local(&self, a: &AliasAddress) -> Option<&Registration> {
        self.route_alias(&alias_text(a))
    }

    /// The local endpoint an alias text (`h323-ID:x`, `e164:n`, bare) reaches.
    pub fn route_alias(&self, alias: &str) -> Option<&Registration> {
        if let Some(r) = self.regs.by_alias(alias) {
            return Some(r);
        }
        let digits = alias.strip_prefix("e164:").unwrap_or(alias);
        if !digits.chars().all(|c| c.is_ascii_digit()) {
            return None;
        }
        self.cfg.dial_plan.iter().find_map(|rule| {
            let rest = digits.strip_prefix(rule.prefix.as_str())?;
            let _ = rest;
            let n = format!("{}{}", rule.prepend, digits.get(rule.strip..)?);
            self.regs.iter().find(|r| r.numbers().any(|x| x == n))
        })
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

fn vendor_json() -> Value {
    json!({"vendor": {"t35CountryCode": 181, "t35Extension": 0, "manufacturerCode": 18}})
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
#[path = "ras_relay_tests.rs"]
mod tests;
