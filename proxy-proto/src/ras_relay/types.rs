//! The relay's public types: its configuration, what it hands the driver
//! (datagrams, events, counters, status) and the call records and routes
//! it keeps.

use super::*;

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
    /// The host's own addresses and its interfaces' broadcast addresses
    /// (besides those below): no endpoint may register one of them as its
    /// call signalling or RAS address. The daemon fills it at start.
    pub host_addresses: Vec<std::net::IpAddr>,
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
    /// How long an active call may wait to be admitted by the gatekeeper
    /// that took control (retried while it refuses, e.g. while the callee
    /// is not yet registered there) before it is reported unanchored.
    pub reanchor_deadline: Duration,
    /// H.235 password of the proxy's own registration (alias `proxy_id`).
    pub own_password: Option<String>,
    /// Endpoints' H.235 passwords by alias (as `alias_text` prints it or
    /// bare).
    pub credentials: HashMap<String, String>,
    /// What one endpoint-side host may make the relay do.
    pub limits: RelayLimits,
}

/// Bounds on what endpoint-side hosts may make the relay hold or do (the
/// daemon's `[limits]`). Each protects the heartbeat, the tables or other
/// endpoints from one host.
#[derive(Clone, Debug, PartialEq)]
pub struct RelayLimits {
    /// RAS datagrams one source address may send (spent before decoding).
    pub ras_budget: crate::budget::Rate,
    /// Source addresses given a budget of their own.
    pub max_sources: usize,
    /// Registrations in all.
    pub max_registrations: usize,
    /// Registrations from one source IP address.
    pub max_registrations_per_source: usize,
    /// Aliases in one RRQ.
    pub max_aliases_per_request: usize,
    /// Destination aliases looked at in one SETUP, ARQ or LRQ (the rest
    /// are ignored).
    pub max_destinations: usize,
    /// Endpoint requests from one source IP address waiting for a
    /// gatekeeper's answer at once.
    pub max_outstanding_per_source: usize,
    /// Calls one endpoint may have admitted at once.
    pub max_calls_per_endpoint: usize,
}

impl RelayLimits {
    /// Limits nothing in a test or a bench reaches.
    pub fn generous() -> Self {
        Self {
            ras_budget: crate::budget::Rate {
                per_second: 1_000_000,
                burst: 1_000_000,
            },
            max_sources: 1024,
            max_registrations: 1_000_000,
            max_registrations_per_source: 1_000_000,
            max_aliases_per_request: 1024,
            max_destinations: 1024,
            max_outstanding_per_source: 60_000,
            max_calls_per_endpoint: 1_000_000,
        }
    }
}

/// Why a decoded RAS datagram from the endpoint side was refused: the
/// metrics label and the log text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Refused {
    /// A message type of a later H.225.0 version, or no sequence number.
    Unknown,
    /// A keepalive from an endpoint or address the proxy does not know.
    UnknownKeepalive,
    /// An RRQ naming one of the proxy's own addresses, or a loopback,
    /// unspecified, multicast or broadcast one.
    BadAddress,
    /// In survivable mode, an RRQ for an alias another endpoint holds.
    AliasTaken,
    /// An RRQ with more aliases than `max_aliases_per_request`.
    TooManyAliases,
    /// A new registration past `max_registrations` or
    /// `max_registrations_per_source`.
    RegistrationLimit,
    /// A request that needs a registration, from a source without one.
    Unregistered,
    /// A reply to nothing the proxy asked.
    StrayReply,
    /// A message endpoints do not send to their gatekeeper.
    Unexpected,
    /// A datagram on the gatekeeper side from no configured gatekeeper.
    NotAGatekeeper,
    /// An ARQ past `max_calls_per_endpoint`.
    CallLimit,
    /// No per-endpoint gatekeeper-side address left.
    NoAddress,
}

impl Refused {
    /// Every kind, for the metrics.
    pub const ALL: [Refused; 12] = [
        Refused::Unknown,
        Refused::UnknownKeepalive,
        Refused::BadAddress,
        Refused::AliasTaken,
        Refused::TooManyAliases,
        Refused::RegistrationLimit,
        Refused::Unregistered,
        Refused::StrayReply,
        Refused::Unexpected,
        Refused::NotAGatekeeper,
        Refused::CallLimit,
        Refused::NoAddress,
    ];

    /// The metrics label.
    pub fn label(self) -> &'static str {
        match self {
            Refused::Unknown => "unknown_message",
            Refused::UnknownKeepalive => "unknown_keepalive",
            Refused::BadAddress => "bad_address",
            Refused::AliasTaken => "alias_taken",
            Refused::TooManyAliases => "too_many_aliases",
            Refused::RegistrationLimit => "registration_limit",
            Refused::Unregistered => "unregistered",
            Refused::StrayReply => "stray_reply",
            Refused::Unexpected => "unexpected_message",
            Refused::NotAGatekeeper => "not_a_gatekeeper",
            Refused::CallLimit => "call_limit",
            Refused::NoAddress => "no_address",
        }
    }
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
    /// A gatekeeper-routed call this proxy placed was admitted again by
    /// the gatekeeper now in control: its call task sets the call up
    /// through that gatekeeper again and splices the new leg in
    /// (re-anchoring), so that gatekeeper controls the call.
    Reanchor(Reanchor),
    /// A call could not be re-admitted at the gatekeeper in control within
    /// the deadline: it stays under the proxy's control (or is released,
    /// as the call policy says).
    Unanchored {
        /// callIdentifier.
        call_id: [u8; 16],
        /// The endpoint whose call it is.
        endpoint_id: String,
    },
    /// The gatekeeper that admitted a call was declared down: its call
    /// tasks release it if that gatekeeper also carried its media.
    ControllerLost {
        /// callIdentifier.
        call_id: [u8; 16],
        /// The gatekeeper's name.
        gatekeeper: String,
    },
    /// A datagram was rejected without changing state.
    Rejected {
        /// Sender.
        from: SocketAddr,
        /// Why.
        reason: &'static str,
    },
}

/// Where and how a call is set up again through the gatekeeper that took
/// control (see [`Event::Reanchor`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reanchor {
    /// callIdentifier.
    pub call_id: [u8; 16],
    /// The call signalling address the ACF named (the gatekeeper's own,
    /// in routed mode).
    pub to: SocketAddr,
    /// The caller's call signalling address at that gatekeeper (the
    /// proxy's, or the endpoint's own gatekeeper-side address): the SETUP
    /// comes from its IP and names it.
    pub caller: SocketAddr,
    /// The endpointIdentifier the gatekeeper assigned the caller.
    pub endpoint_id: Option<String>,
    /// The gatekeeper's name.
    pub gatekeeper: String,
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
    /// Endpoint-side datagrams dropped unread: their source had spent its
    /// budget.
    pub over_budget: u64,
    /// [`RelayStats::refused`] by why.
    pub refused_by: std::collections::BTreeMap<Refused, u64>,
    /// Endpoint requests dropped: their source, or endpoints in all, had
    /// as many waiting at the gatekeeper as they may.
    pub outstanding_refused: u64,
    /// Registrations made in survivable mode that the gatekeeper taking
    /// control refused, and that ended.
    pub local_dropped: u64,
    /// Call records removed because their calls had no call signalling
    /// for [`super::CALL_SILENCE`] (ended without a DRQ).
    pub calls_aged_out: u64,
    /// ICMP unreachables reported for a gatekeeper's flow: hints, never
    /// verdicts (anyone can forge one).
    pub unreachable_hints: u64,
    /// Active calls admitted again at a gatekeeper that took control.
    pub readmitted: u64,
    /// Active calls not re-admitted within the deadline.
    pub unanchored: u64,
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
    pub dest_aliases: Vec<Alias>,
    /// The gatekeeper that admitted it (`None`: the proxy, in survivable
    /// mode).
    pub admitted_by: Option<String>,
    /// The gatekeeper routes its call signalling (ACF callModel
    /// gatekeeperRouted).
    pub routed: bool,
    /// The gatekeeper that admitted it still holds it; `false` once that
    /// gatekeeper was declared down, until another admits it.
    pub anchored: bool,
}
