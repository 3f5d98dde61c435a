//! The call's public types: legs and phases, who controls it, the causes
//! it releases with, and the requests and answers it exchanges with its
//! driver.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::q931::call_state;
use crate::ras_relay::CallRoute;

/// Which leg a message came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Leg {
    /// The side that sent SETUP.
    Caller,
    /// The side the proxy set the call up to.
    Callee,
}

impl Leg {
    /// The other leg.
    pub fn other(self) -> Leg {
        match self {
            Leg::Caller => Leg::Callee,
            Leg::Callee => Leg::Caller,
        }
    }

    /// 0 for the caller, 1 for the callee: a slot in per-leg arrays.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Which side of the proxy a TCP leg is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LegSide {
    /// The endpoint LAN.
    Endpoint,
    /// Toward the gatekeepers.
    Gatekeeper,
}

/// Call phase as the proxy sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// SETUP relayed, nothing back yet.
    Setup,
    /// CALL PROCEEDING seen.
    Proceeding,
    /// ALERTING seen.
    Alerting,
    /// CONNECT seen.
    Active,
    /// RELEASE COMPLETE seen.
    Released,
}

impl Phase {
    /// Lower-case name for logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Setup => "setup",
            Phase::Proceeding => "proceeding",
            Phase::Alerting => "alerting",
            Phase::Active => "active",
            Phase::Released => "releasing",
        }
    }

    /// Q.931 call state the proxy reports in STATUS (as the network side
    /// toward the caller; the callee sees the same numbering, H.225.0 uses
    /// the user-side values on both).
    pub fn q931_state(self) -> u8 {
        match self {
            Phase::Setup => call_state::CALL_INITIATED,
            Phase::Proceeding => call_state::OUTGOING_CALL_PROCEEDING,
            Phase::Alerting => call_state::CALL_DELIVERED,
            Phase::Active => call_state::ACTIVE,
            Phase::Released => call_state::NULL,
        }
    }
}

/// Who controls a call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Controller {
    /// The gatekeeper of that name (it admitted or routed the call).
    Gatekeeper(String),
    /// The proxy itself: survivable mode, or a call kept up after its
    /// gatekeeper-side leg was lost.
    Proxy,
}

/// Q.850 causes the proxy puts in the RELEASE COMPLETEs it sends.
pub mod cause {
    /// No route to destination: no endpoint or gatekeeper route for the
    /// SETUP's aliases.
    pub const NO_ROUTE: u8 = 3;
    /// Destination out of order: the callee's address did not accept.
    pub const UNREACHABLE: u8 = 27;
    /// Normal call clearing: the far end hung up while the proxy held
    /// the call.
    pub const NORMAL_CLEARING: u8 = 16;
    /// Temporary failure: the other leg went away.
    pub const TEMPORARY_FAILURE: u8 = 41;
    /// Network out of order: the call's media passed through a gatekeeper
    /// (its RTP proxy) that went away, so the call is silent.
    pub const NETWORK_OUT_OF_ORDER: u8 = 38;
    /// Invalid information element contents: the first message did not
    /// decode.
    pub const INVALID_CONTENTS: u8 = 100;
    /// Message not compatible with the call state: the first message was
    /// not SETUP.
    pub const WRONG_STATE: u8 = 101;
}

/// Addresses and limits of the call signalling relay.
#[derive(Clone, Debug)]
pub struct CallConfig {
    /// The proxy's call signalling address on the endpoint LAN.
    pub endpoint_side: SocketAddr,
    /// The proxy's call signalling address toward the gatekeepers.
    pub gatekeeper_side: SocketAddr,
    /// How long a new link may stay without a SETUP (an idle link that
    /// never starts a call would hold its resources forever).
    pub setup_wait: Duration,
    /// What happens to a call the gatekeeper in control did not take over
    /// within the deadline.
    pub unanchored: Unanchored,
}

/// What happens to an active call that no gatekeeper took over within the
/// re-anchoring deadline (`[calls] unanchored`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Unanchored {
    /// It stays up under the proxy's control.
    #[default]
    Keep,
    /// Both legs get RELEASE COMPLETE, cause 41.
    Release,
}

/// How long the re-anchoring SETUP may wait for its CONNECT.
pub const REANCHOR_WAIT: Duration = Duration::from_secs(10);

/// How long a new call-signalling link may stay without a SETUP, by default.
pub const SETUP_WAIT: Duration = Duration::from_secs(30);

/// What the call asks the RAS side to route a SETUP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteQuery {
    /// callIdentifier of the SETUP.
    pub call_id: Option<[u8; 16]>,
    /// Its destinations.
    pub destinations: Vec<crate::h225::alias::Alias>,
    /// The SETUP came in on the gatekeeper side.
    pub from_gatekeeper: bool,
    /// The local address the caller's link was accepted on (an endpoint's
    /// own gatekeeper-side address names the callee by itself).
    pub accepted_on: Option<SocketAddr>,
    /// Who sent the SETUP.
    pub peer: Option<SocketAddr>,
}

/// The RAS side's answer to a [`RouteQuery`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RouteAnswer {
    /// Where the call goes; `None`: nowhere.
    pub route: Option<CallRoute>,
    /// For a call placed by one of the proxy's endpoints: its own
    /// gatekeeper-side call signalling address and the endpointIdentifier
    /// the gatekeeper in control assigned it.
    pub caller: Option<(SocketAddr, Option<String>)>,
    /// The gatekeeper in control (`None`: survivable mode).
    pub controller: Option<String>,
    /// The SETUP came from the gatekeeper in control (its address): the
    /// only sender whose SETUP for a held call may take over that call's
    /// endpoint leg.
    pub from_controller: bool,
}

/// Why a leg ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LegLoss {
    /// FIN from the peer.
    Closed,
    /// A socket error (RST, keepalive or retransmission timeout, ICMP).
    Failed(String),
    /// The byte stream is not TPKT.
    BadFraming(String),
}

impl std::fmt::Display for LegLoss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LegLoss::Closed => f.write_str("closed"),
            LegLoss::Failed(e) => write!(f, "{e}"),
            LegLoss::BadFraming(e) => write!(f, "framing: {e}"),
        }
    }
}

/// Counters the driver keeps for every call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// A SETUP arrived.
    Setup,
    /// A message was relayed to the other leg.
    Relayed,
    /// A keepalive (empty TPKT, STATUS ENQUIRY) was answered or absorbed.
    KeepaliveAnswered,
    /// A malformed message was dropped, or a link closed for one.
    Malformed,
    /// A SETUP was refused for want of a route.
    Unroutable,
    /// A gatekeeper-side leg was lost and the endpoint's leg kept up.
    KeptUp,
    /// A call was set up again through the gatekeeper that took control.
    Reanchored,
    /// A re-anchoring SETUP was refused, failed or not answered in time.
    ReanchorFailed,
    /// A gatekeeper's re-anchoring SETUP was spliced onto the endpoint leg
    /// kept up (answered by the proxy; the endpoint saw nothing).
    Spliced,
    /// No gatekeeper took the call over within the deadline.
    Unanchored,
    /// A call whose media passed through a gatekeeper that went away was
    /// released (it would stay up silent).
    MediaLost,
}

/// What the call asks of its driver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallEvent {
    /// Route the SETUP; answer with [`Call::handle_route`].
    Route(RouteQuery),
    /// Open the callee leg; answer with [`Call::handle_connected`] or
    /// [`Call::handle_connect_failed`].
    Connect {
        /// The callee's call signalling address.
        to: SocketAddr,
        /// The proxy's address to connect from.
        local_ip: IpAddr,
        /// Which side the leg is on.
        side: LegSide,
    },
    /// Open an H.245 listener on the proxy's address of leg `listen_on`
    /// that splices the first connection to `far_end`, reached from the
    /// proxy's address of the other leg; answer with
    /// [`Call::handle_h245_listener`]. The message that signalled it waits.
    H245Listen {
        /// The leg that receives the rewritten address.
        listen_on: Leg,
        /// The signalled h245Address.
        far_end: SocketAddr,
    },
    /// A gatekeeper-side leg was lost from `peer`: a liveness hint for the
    /// heartbeat (probe at once).
    GatekeeperLegLost {
        /// The lost leg's far end.
        peer: IpAddr,
    },
    /// The call is anchored at `gatekeeper` again (re-anchoring done).
    Anchored {
        /// The gatekeeper now controlling it.
        gatekeeper: String,
    },
    /// Re-anchoring failed: admit the call again later.
    ReanchorFailed,
    /// The endpoint hung up while the call had no gatekeeper leg to carry
    /// the RELEASE COMPLETE: the other end, if the proxy holds it too,
    /// must be released by the proxy ([`Call::handle_far_end_released`]).
    ReleasedUnanchored,
    /// Count this.
    Count(Counter),
    /// The call is over: close both legs.
    Closed,
}
