//! One relayed call on the call signalling channel (H.225.0 / Q.931 over
//! TPKT), as a sans-I/O state machine in the manner of quinn-proto's
//! `Connection`: the driver feeds it frames, leg events, answers to its
//! requests and time (`handle_*`), and sends what it asks for
//! (`poll_transmit`, `poll_event`, `poll_timeout`). It owns no socket and
//! reads no clock, so every decision below is unit-tested with made-up time.
//!
//! The proxy terminates both TCP legs. It answers keepalives on each leg
//! itself (empty TPKT, STATUS ENQUIRY → STATUS with the call's real state),
//! so a leg never depends on the other one, or on a gatekeeper, to stay up.
//! Everything else is relayed: SETUP with its call signalling addresses
//! rewritten to the proxy's, h245Address and a FACILITY's alternativeAddress
//! pointed at the proxy, every other message byte-identical.
//!
//! The call is keyed by its callIdentifier, not by its legs: a
//! gatekeeper-side leg may go while the endpoint's leg stays up, and the
//! call then has the proxy as its [`Controller`].

mod message;
#[cfg(test)]
mod tests;
mod types;

pub use message::{
    SetupInfo, Signalling, h245_address, refuse, release_complete, setup_info, status,
};
pub use types::{
    CallConfig, CallEvent, Controller, Counter, Leg, LegLoss, LegSide, Phase, REANCHOR_WAIT,
    RouteAnswer, RouteQuery, SETUP_WAIT, Unanchored, cause,
};

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;

use crate::q931::{self, Message, msg};
use crate::ras_relay::{CallRoute, Reanchor};

/// Errors decoding a call signalling message. None of them changes the call.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The Q.931 message did not parse.
    #[error("Q.931: {0}")]
    Q931(#[from] q931::Q931Error),
    /// The User-user IE did not decode.
    #[error("H.225.0 UUIE: {0}")]
    Uuie(#[from] crate::h225::PerError),
    /// The first message on a new link was not SETUP.
    #[error("first message on a call signalling link is {0}, not SETUP")]
    NotSetup(&'static str),
    /// A message without a User-user IE where one is needed.
    #[error("no H.225.0 User-user IE")]
    NoUuie,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// A link was accepted; waiting for its SETUP.
    AwaitSetup,
    /// SETUP received; waiting for the route.
    Routing,
    /// Route known; waiting for the callee leg to connect.
    Connecting,
    /// Both legs up (or one kept up): relaying.
    Relaying,
    /// Over.
    Closed,
}

#[derive(Clone, Debug)]
struct LegState {
    side: LegSide,
    open: bool,
    peer: Option<SocketAddr>,
    /// Something arrived on this leg.
    heard: bool,
}

/// A re-anchoring in progress: the SETUP through the gatekeeper that took
/// control, waiting for its leg and then its CONNECT.
#[derive(Debug)]
struct Reanchoring {
    gatekeeper: String,
    /// The SETUP, until the leg is connected.
    setup: Option<Bytes>,
    deadline: Instant,
}

/// One call.
#[derive(Debug)]
pub struct Call {
    cfg: CallConfig,
    state: State,
    call_id: Option<[u8; 16]>,
    crv: u16,
    phase: Phase,
    controller: Option<Controller>,
    legs: [LegState; 2],
    /// The proxy's address the caller's link reached.
    accepted_on: Option<SocketAddr>,
    /// The SETUP, decoded once, until it goes out on the callee leg.
    setup: Option<Signalling>,
    /// The SETUP's sourceCallSignalAddress and endpointIdentifier toward
    /// the callee, from the route.
    setup_as: Option<(SocketAddr, SocketAddr, Option<String>)>,
    /// The caller's SETUP as it came, for a call routed to a gatekeeper:
    /// what re-anchoring sends again.
    original_setup: Option<Signalling>,
    reanchor: Option<Reanchoring>,
    /// The gatekeeper (the peer of a gatekeeper-side leg) whose H.245 named
    /// its own address for media: its RTP proxy carries the call's media,
    /// which dies with it.
    media_via: Option<std::net::IpAddr>,
    /// A message waiting for its H.245 listener, with the leg it goes to.
    held: Option<(Leg, Signalling)>,
    /// Frames that arrived while a message was held or the callee leg was
    /// being opened, in order.
    backlog: VecDeque<(Leg, Bytes)>,
    deadline: Option<Instant>,
    transmits: VecDeque<(Leg, Bytes)>,
    events: VecDeque<CallEvent>,
}

impl Call {
    /// A call signalling link from `peer` was accepted on the proxy's
    /// address `local`, on `side`.
    pub fn accept(
        now: Instant,
        cfg: CallConfig,
        side: LegSide,
        peer: Option<SocketAddr>,
        local: Option<SocketAddr>,
    ) -> Self {
        let deadline = Some(now + cfg.setup_wait);
        let leg = |side, peer| LegState {
            side,
            open: true,
            peer,
            heard: false,
        };
        Self {
            cfg,
            state: State::AwaitSetup,
            call_id: None,
            crv: 0,
            phase: Phase::Setup,
            controller: None,
            // The callee leg is opened later; its side comes from the route.
            legs: [leg(side, peer), {
                let mut l = leg(LegSide::Endpoint, None);
                l.open = false;
                l
            }],
            accepted_on: local,
            setup: None,
            setup_as: None,
            original_setup: None,
            reanchor: None,
            media_via: None,
            held: None,
            backlog: VecDeque::new(),
            deadline,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// callIdentifier, once the SETUP is in.
    pub fn call_id(&self) -> Option<[u8; 16]> {
        self.call_id
    }

    /// Call reference value (the same on both legs).
    pub fn crv(&self) -> u16 {
        self.crv
    }

    /// Phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Who controls the call (`None` until it is routed).
    pub fn controller(&self) -> Option<&Controller> {
        self.controller.as_ref()
    }

    /// The call has been relayed (both legs were up at some point) and is
    /// not over.
    pub fn is_relaying(&self) -> bool {
        self.state == State::Relaying
    }

    /// The call is over.
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Whether `leg` is open.
    pub fn is_open(&self, leg: Leg) -> bool {
        self.legs[leg.index()].open
    }

    /// The next message to send, and the leg it goes on.
    pub fn poll_transmit(&mut self) -> Option<(Leg, Bytes)> {
        self.transmits.pop_front()
    }

    /// The next request or notice for the driver.
    pub fn poll_event(&mut self) -> Option<CallEvent> {
        self.events.pop_front()
    }

    /// When [`Call::handle_timeout`] is due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let r = self.reanchor.as_ref().map(|r| r.deadline);
        match (self.deadline, r) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Time passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.deadline.is_some_and(|d| now >= d) && self.state == State::AwaitSetup {
            tracing::warn!(peer = ?self.legs[0].peer, "no SETUP within {:?}; closing the link", self.cfg.setup_wait);
            self.count(Counter::Malformed);
            self.close();
        }
        if self.reanchor.as_ref().is_some_and(|r| now >= r.deadline) {
            self.reanchor_failed("no CONNECT in time");
        }
    }

    /// A TPKT payload arrived on `leg`.
    pub fn handle_frame(&mut self, now: Instant, leg: Leg, payload: Bytes) {
        let _ = now;
        if self.state == State::Closed {
            return;
        }
        self.legs[leg.index()].heard = true;
        match self.state {
            State::AwaitSetup if payload.is_empty() => {}
            State::AwaitSetup => self.first_message(&payload),
            State::Routing | State::Connecting => self.backlog.push_back((leg, payload)),
            State::Relaying if leg == Leg::Callee && self.reanchor.is_some() => {
                self.reanchor_frame(payload)
            }
            State::Relaying if self.held.is_some() => self.backlog.push_back((leg, payload)),
            State::Relaying => self.relay(leg, payload),
            State::Closed => {}
        }
    }

    fn first_message(&mut self, payload: &Bytes) {
        let refused = |e: &CallError| match e {
            CallError::NotSetup(_) => cause::WRONG_STATE,
            _ => cause::INVALID_CONTENTS,
        };
        let decoded = Message::decode(payload)
            .map_err(CallError::from)
            .and_then(|m| match m.message_type {
                msg::SETUP => Signalling::from_message(m),
                t => Err(CallError::NotSetup(msg::name(t))),
            })
            .and_then(|s| match s.setup_info() {
                Some(info) => Ok((s, info)),
                None => Err(CallError::NotSetup("a SETUP whose UUIE is not setup")),
            });
        let (setup, info) = match decoded {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(peer = ?self.legs[0].peer, error = %e, "first message refused");
                self.count(Counter::Malformed);
                if let Some(rc) = refuse(payload, refused(&e)) {
                    self.transmits.push_back((Leg::Caller, rc));
                }
                self.close();
                return;
            }
        };
        self.count(Counter::Setup);
        self.call_id = info.call_id;
        self.crv = setup.q931().call_ref.value;
        self.deadline = None;
        self.state = State::Routing;
        self.setup = Some(setup);
        let caller = &self.legs[Leg::Caller.index()];
        self.events.push_back(CallEvent::Route(RouteQuery {
            call_id: info.call_id,
            destinations: info.destinations,
            from_gatekeeper: caller.side == LegSide::Gatekeeper,
            accepted_on: self.accepted_on,
            peer: caller.peer,
        }));
    }

    /// The RAS side answered the route query.
    pub fn handle_route(&mut self, now: Instant, answer: RouteAnswer) {
        let _ = now;
        if self.state != State::Routing {
            return;
        }
        self.controller = Some(match &answer.controller {
            Some(gk) => Controller::Gatekeeper(gk.clone()),
            None => Controller::Proxy,
        });
        let (to, side, local_ip) = match answer.route {
            Some(CallRoute::Local {
                call_signal,
                endpoint_id,
            }) => {
                tracing::info!(%endpoint_id, to = %call_signal, "SETUP routed to a local endpoint");
                (call_signal, LegSide::Endpoint, self.cfg.endpoint_side.ip())
            }
            Some(CallRoute::Remote(addr)) => {
                tracing::info!(to = %addr, "SETUP routed to the gatekeeper side");
                // From the caller's own gatekeeper-side address, so the far
                // end sees the endpoint it registered.
                let ip = answer
                    .caller
                    .as_ref()
                    .map(|(cs, _)| cs.ip())
                    .unwrap_or(self.cfg.gatekeeper_side.ip());
                (addr, LegSide::Gatekeeper, ip)
            }
            None => {
                tracing::warn!("no route: RELEASE COMPLETE cause {}", cause::NO_ROUTE);
                self.count(Counter::Unroutable);
                self.release(Leg::Caller, cause::NO_ROUTE);
                self.close();
                return;
            }
        };
        // The proxy's own endpoint-side listener would take the SETUP as a
        // new call and route it here again: a loop, not a route.
        if to == self.cfg.endpoint_side {
            tracing::warn!(%to, "route names the proxy itself: RELEASE COMPLETE cause {}", cause::NO_ROUTE);
            self.count(Counter::Unroutable);
            self.release(Leg::Caller, cause::NO_ROUTE);
            self.close();
            return;
        }
        // Toward a gatekeeper the SETUP names the caller as the gatekeeper
        // knows it: its own address there and the endpointIdentifier it
        // was assigned.
        let (proxy_side, endpoint_id) = match (side, answer.caller) {
            (LegSide::Gatekeeper, Some((cs, id))) => (cs, id),
            _ => (
                SocketAddr::new(local_ip, self.cfg.endpoint_side.port()),
                None,
            ),
        };
        self.setup_as = Some((proxy_side, to, endpoint_id));
        self.legs[Leg::Callee.index()] = LegState {
            side,
            open: false,
            peer: Some(to),
            heard: false,
        };
        self.state = State::Connecting;
        self.events
            .push_back(CallEvent::Connect { to, local_ip, side });
    }

    /// The callee leg is connected: the SETUP goes out on it.
    pub fn handle_connected(&mut self, now: Instant) {
        if let Some(r) = self
            .reanchor
            .as_mut()
            .filter(|_| self.state == State::Relaying)
        {
            if let Some(setup) = r.setup.take() {
                self.legs[Leg::Callee.index()].open = true;
                self.transmits.push_back((Leg::Callee, setup));
            }
            return;
        }
        if self.state != State::Connecting {
            return;
        }
        let (Some(mut setup), Some((proxy_side, to, endpoint_id))) =
            (self.setup.take(), self.setup_as.take())
        else {
            return;
        };
        self.legs[Leg::Callee.index()].open = true;
        if self.legs[Leg::Callee.index()].side == LegSide::Gatekeeper
            && self.legs[Leg::Caller.index()].side == LegSide::Endpoint
        {
            self.original_setup = Some(setup.clone());
        }
        setup.readdress_setup(proxy_side, to, endpoint_id.as_deref());
        match setup.encode() {
            Ok(bytes) => self.transmits.push_back((Leg::Callee, bytes)),
            Err(e) => {
                // Everything in it was decoded by the same codec: a bug.
                tracing::warn!(error = %e, "SETUP could not be re-encoded");
                self.close();
                return;
            }
        }
        self.state = State::Relaying;
        self.drain_backlog(now);
    }

    /// The callee leg could not be opened.
    pub fn handle_connect_failed(&mut self, now: Instant, why: &str) {
        let _ = now;
        if self.reanchor.is_some() && self.state == State::Relaying {
            self.reanchor_failed(why);
            return;
        }
        if self.state != State::Connecting {
            return;
        }
        tracing::warn!(
            error = why,
            "callee unreachable: RELEASE COMPLETE cause {}",
            cause::UNREACHABLE
        );
        self.release(Leg::Caller, cause::UNREACHABLE);
        self.close();
    }

    /// Sending on `leg` failed.
    pub fn handle_send_failed(&mut self, now: Instant, leg: Leg) {
        let _ = now;
        if self.state == State::Closed {
            return;
        }
        if leg == Leg::Callee && self.reanchor.is_some() {
            self.reanchor_failed("the SETUP could not be sent");
            return;
        }
        let l = &mut self.legs[leg.index()];
        l.open = false;
        // The SETUP never reached a callee that accepted the connection:
        // that callee is as good as unreachable.
        if leg == Leg::Callee && !l.heard && self.phase == Phase::Setup {
            tracing::warn!(
                "SETUP not delivered: RELEASE COMPLETE cause {}",
                cause::UNREACHABLE
            );
            self.release(Leg::Caller, cause::UNREACHABLE);
            self.close();
        } else if !self.legs.iter().any(|l| l.open) {
            self.close();
        }
    }

    /// The H.245 listener for the held message is open at `mine` (or could
    /// not be opened: the address is then left as it is).
    pub fn handle_h245_listener(&mut self, now: Instant, mine: Result<SocketAddr, String>) {
        let Some((to, mut m)) = self.held.take() else {
            return;
        };
        match mine {
            Ok(a) => m.set_h245_address(a),
            Err(e) => tracing::warn!(error = %e, "no H.245 listener; address left as is"),
        }
        self.send_rewritten(to, m);
        self.drain_backlog(now);
    }

    /// `leg` ended (EOF, error, bad framing).
    pub fn handle_leg_lost(&mut self, now: Instant, leg: Leg, why: LegLoss) {
        let _ = now;
        if self.state == State::Closed {
            return;
        }
        if matches!(why, LegLoss::BadFraming(_)) && self.state == State::AwaitSetup {
            tracing::warn!(peer = ?self.legs[0].peer, error = %why, "call signalling framing");
            self.count(Counter::Malformed);
        }
        if leg == Leg::Callee && self.reanchor.is_some() {
            self.reanchor_failed(&why.to_string());
            return;
        }
        let this = self.legs[leg.index()].clone();
        self.legs[leg.index()].open = false;
        if self.state != State::Relaying || self.phase == Phase::Released {
            self.close();
            return;
        }
        let other = &self.legs[leg.other().index()];
        // The gatekeeper side of an established call went away (FIN, RST,
        // keepalive or retransmission timeout, ICMP): keep the endpoint's
        // call up. Only a RELEASE COMPLETE from the far end or a
        // gatekeeper clears it; the proxy answers the endpoint's keepalives
        // meanwhile and controls the call. A call not yet connected, or an
        // endpoint's own leg, ends the call: keeping it would leave a
        // zombie.
        let keep = this.side == LegSide::Gatekeeper
            && other.side == LegSide::Endpoint
            && other.open
            && self.phase == Phase::Active;
        if keep
            && let Some(gk) = self.media_via
            && this.peer.map(|p| p.ip()) == Some(gk)
        {
            self.release_media_lost(gk);
            return;
        }
        if keep {
            tracing::warn!(?leg, peer = ?this.peer, %why, "gatekeeper-side leg lost; endpoint leg kept up");
            self.count(Counter::KeptUp);
            self.controller = Some(Controller::Proxy);
            if let Some(p) = this.peer {
                self.events
                    .push_back(CallEvent::GatekeeperLegLost { peer: p.ip() });
            }
            return;
        }
        tracing::info!(?leg, %why, "leg closed; releasing the other leg");
        if other.open {
            self.release(leg.other(), cause::TEMPORARY_FAILURE);
        }
        self.close();
    }

    /// Whether the endpoint leg is the caller's (the calling side of a
    /// call: the side that re-anchors it).
    pub fn endpoint_is_caller(&self) -> bool {
        self.legs[Leg::Caller.index()].side == LegSide::Endpoint
    }

    /// The gatekeeper now in control admitted this call again
    /// ([`Reanchor`]): set it up through that gatekeeper, the same call
    /// (callIdentifier, conferenceID, call reference and aliases of the
    /// original SETUP, no media), and splice the new leg in when its
    /// CONNECT comes. Only a call placed by the proxy's endpoint toward a
    /// gatekeeper re-anchors; the endpoint sees nothing.
    pub fn handle_reanchor(&mut self, now: Instant, r: &Reanchor) {
        if self.state != State::Relaying || self.phase != Phase::Active || self.reanchor.is_some() {
            return;
        }
        let [caller, callee] = &self.legs;
        if caller.side != LegSide::Endpoint || !caller.open || callee.side != LegSide::Gatekeeper {
            return;
        }
        // Its media went through the gatekeeper that failed: a new
        // signalling path would not bring it back.
        if let Some(gk) = self.media_via {
            self.release_media_lost(gk);
            return;
        }
        if callee.open && self.controller == Some(Controller::Gatekeeper(r.gatekeeper.clone())) {
            // Already through that gatekeeper.
            self.events.push_back(CallEvent::Anchored {
                gatekeeper: r.gatekeeper.clone(),
            });
            return;
        }
        let Some(mut setup) = self.original_setup.clone() else {
            return;
        };
        setup.readdress_setup(r.caller, r.to, r.endpoint_id.as_deref());
        setup.strip_media();
        let bytes = match setup.encode() {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "re-anchoring SETUP could not be encoded");
                return;
            }
        };
        tracing::info!(gatekeeper = %r.gatekeeper, to = %r.to, "re-anchoring the call");
        // The old gatekeeper leg belongs to a gatekeeper declared down:
        // the driver drops it as the new one opens.
        self.legs[Leg::Callee.index()] = LegState {
            side: LegSide::Gatekeeper,
            open: false,
            peer: Some(r.to),
            heard: false,
        };
        self.controller = Some(Controller::Proxy);
        self.reanchor = Some(Reanchoring {
            gatekeeper: r.gatekeeper.clone(),
            setup: Some(bytes),
            deadline: now + REANCHOR_WAIT,
        });
        self.events.push_back(CallEvent::Connect {
            to: r.to,
            local_ip: r.caller.ip(),
            side: LegSide::Gatekeeper,
        });
    }

    /// A frame on the re-anchoring leg: answered or absorbed until its
    /// CONNECT, which completes the splice.
    fn reanchor_frame(&mut self, payload: Bytes) {
        self.legs[Leg::Callee.index()].heard = true;
        if payload.is_empty() {
            self.count(Counter::KeepaliveAnswered);
            return;
        }
        let m = match Message::decode(&payload) {
            Ok(m) => m,
            Err(e) => {
                self.count(Counter::Malformed);
                tracing::warn!(error = %e, "malformed message on the re-anchoring leg dropped");
                return;
            }
        };
        match m.message_type {
            msg::STATUS_ENQUIRY => {
                self.count(Counter::KeepaliveAnswered);
                let s = status(m.call_ref, self.phase.q931_state(), self.call_id.as_ref());
                self.transmits.push_back((Leg::Callee, s));
            }
            msg::CONNECT => {
                let Some(r) = self.reanchor.take() else {
                    return;
                };
                tracing::info!(gatekeeper = %r.gatekeeper, "call re-anchored: that gatekeeper controls it");
                self.controller = Some(Controller::Gatekeeper(r.gatekeeper.clone()));
                self.count(Counter::Reanchored);
                self.events.push_back(CallEvent::Anchored {
                    gatekeeper: r.gatekeeper,
                });
            }
            msg::RELEASE_COMPLETE => self.reanchor_failed("RELEASE COMPLETE"),
            // CALL PROCEEDING, ALERTING, PROGRESS, FACILITY…: the endpoint
            // is in the call already; nothing for it.
            t => tracing::debug!(message = msg::name(t), "absorbed on the re-anchoring leg"),
        }
    }

    fn reanchor_failed(&mut self, why: &str) {
        let Some(r) = self.reanchor.take() else {
            return;
        };
        tracing::warn!(gatekeeper = %r.gatekeeper, why, "re-anchoring failed; the proxy keeps the call");
        self.legs[Leg::Callee.index()].open = false;
        self.controller = Some(Controller::Proxy);
        self.count(Counter::ReanchorFailed);
        self.events.push_back(CallEvent::ReanchorFailed);
    }

    /// A gatekeeper opened a new link with a SETUP (`payload`) for this
    /// call, which this proxy answers for its endpoint (the call came in
    /// from the gatekeeper side): the calling side re-anchored the call
    /// there. The proxy answers CONNECT on the new link itself and splices
    /// it in for the old gatekeeper leg; the endpoint sees nothing.
    /// `controller` is the gatekeeper in control. `Err(cause)`: not this
    /// call's to take (the caller of this function refuses the link).
    pub fn handle_splice(
        &mut self,
        now: Instant,
        peer: Option<SocketAddr>,
        payload: &[u8],
        controller: Option<String>,
    ) -> Result<(), u8> {
        let _ = now;
        let [caller, callee] = &self.legs;
        let wanted = match &controller {
            Some(g) => Controller::Gatekeeper(g.clone()),
            None => Controller::Proxy,
        };
        // Already through the gatekeeper in control: a second SETUP for
        // the call is not a re-anchoring.
        let anchored = caller.open && self.controller.as_ref() == Some(&wanted);
        let ours = self.state == State::Relaying
            && self.phase == Phase::Active
            && caller.side == LegSide::Gatekeeper
            && callee.side == LegSide::Endpoint
            && callee.open
            && !anchored;
        if !ours {
            return Err(cause::WRONG_STATE);
        }
        let setup = Signalling::decode(payload).map_err(|_| cause::INVALID_CONTENTS)?;
        let same = setup
            .setup_info()
            .is_some_and(|i| i.call_id.is_some() && i.call_id == self.call_id);
        let connect = setup
            .connect_answer()
            .filter(|_| same)
            .ok_or(cause::WRONG_STATE)?;
        if setup.q931().call_ref.value != self.crv {
            tracing::warn!(
                crv = setup.q931().call_ref.value,
                "re-anchoring SETUP with another call reference"
            );
        }
        tracing::info!(?peer, gatekeeper = ?controller, "re-anchoring SETUP spliced onto the endpoint leg");
        self.legs[Leg::Caller.index()] = LegState {
            side: LegSide::Gatekeeper,
            open: true,
            peer,
            heard: true,
        };
        self.controller = Some(wanted);
        self.transmits.push_back((Leg::Caller, connect));
        self.count(Counter::Spliced);
        Ok(())
    }

    /// No gatekeeper took the call over within the deadline: counted, then
    /// kept or released as configured.
    pub fn handle_unanchored(&mut self, now: Instant) {
        let _ = now;
        if self.state != State::Relaying {
            return;
        }
        self.count(Counter::Unanchored);
        match self.cfg.unanchored {
            Unanchored::Keep => {
                tracing::warn!("no gatekeeper took the call over; the proxy keeps controlling it")
            }
            Unanchored::Release => {
                tracing::warn!(
                    "no gatekeeper took the call over; releasing it (cause {})",
                    cause::TEMPORARY_FAILURE
                );
                self.release_all(cause::TEMPORARY_FAILURE, |_| true);
            }
        }
    }

    /// The gatekeeper that held this call was declared down. A call whose
    /// media it proxied is released (cause 38); any other call stays up,
    /// to be taken over by the gatekeeper in control.
    pub fn handle_controller_lost(&mut self, now: Instant) {
        let _ = now;
        if self.state != State::Relaying {
            return;
        }
        if let Some(gk) = self.media_via {
            self.release_media_lost(gk);
        }
    }

    /// The other end of this call, also held by this proxy, hung up while
    /// neither call had a gatekeeper leg to carry it: release this end.
    pub fn handle_far_end_released(&mut self, now: Instant) {
        let _ = now;
        let gatekeeper_leg = self
            .legs
            .iter()
            .any(|l| l.open && l.side == LegSide::Gatekeeper);
        // With a gatekeeper leg up, the hang-up comes through it.
        if self.state != State::Relaying || self.reanchor.is_some() || gatekeeper_leg {
            return;
        }
        tracing::info!("far end hung up while the proxy held the call; releasing this end");
        self.release_all(cause::NORMAL_CLEARING, |l| l.side == LegSide::Endpoint);
    }

    fn drain_backlog(&mut self, now: Instant) {
        while self.held.is_none() && self.state == State::Relaying {
            let Some((leg, f)) = self.backlog.pop_front() else {
                return;
            };
            self.handle_frame(now, leg, f);
        }
    }

    fn relay(&mut self, from: Leg, payload: Bytes) {
        if payload.is_empty() {
            // H.460.18 keepalive: each leg has its own.
            self.count(Counter::KeepaliveAnswered);
            return;
        }
        let m = match Message::decode(&payload) {
            Ok(m) => m,
            Err(e) => {
                self.count(Counter::Malformed);
                tracing::warn!(leg = ?from, error = %e, "malformed message dropped; call unchanged");
                return;
            }
        };
        match m.message_type {
            msg::STATUS_ENQUIRY => {
                self.count(Counter::KeepaliveAnswered);
                let s = status(m.call_ref, self.phase.q931_state(), self.call_id.as_ref());
                self.transmits.push_back((from, s));
                return;
            }
            // A STATUS answers an enquiry of the far leg's peer, which the
            // proxy answered itself: nothing to relay.
            msg::STATUS => return,
            msg::CALL_PROCEEDING if self.phase == Phase::Setup => self.phase = Phase::Proceeding,
            msg::ALERTING if matches!(self.phase, Phase::Setup | Phase::Proceeding) => {
                self.phase = Phase::Alerting
            }
            msg::CONNECT => self.phase = Phase::Active,
            msg::RELEASE_COMPLETE => self.phase = Phase::Released,
            _ => {}
        }
        let to = from.other();
        if self.phase == Phase::Released && !self.legs[to.index()].open {
            // No leg carries the hang-up on: if the proxy holds the far
            // end too, the driver releases it there.
            self.events.push_back(CallEvent::ReleasedUnanchored);
        }
        self.count(Counter::Relayed);
        // Only a message that signals an address of its own is re-encoded;
        // everything else goes out byte-identical.
        let m = Signalling::from_message(m);
        if let Ok(s) = &m {
            self.note_media_path(from, s);
        }
        let m = match m {
            Ok(s) if s.h245_address().is_some() || s.alternative_address().is_some() => s,
            _ => {
                self.send(to, payload);
                return;
            }
        };
        if let Some(far_end) = m.h245_address() {
            // The receiver must reach H.245 through the proxy.
            self.held = Some((to, m));
            self.events.push_back(CallEvent::H245Listen {
                listen_on: to,
                far_end,
            });
            return;
        }
        self.send_rewritten(to, m);
    }

    /// Note whether `s`, from leg `from`, shows that the gatekeeper on that
    /// leg proxies the call's media.
    fn note_media_path(&mut self, from: Leg, s: &Signalling) {
        let leg = &self.legs[from.index()];
        if self.media_via.is_some() || leg.side != LegSide::Gatekeeper {
            return;
        }
        if let Some(peer) = leg.peer
            && let std::net::IpAddr::V4(ip) = peer.ip()
            && s.h245_names(ip)
        {
            tracing::info!(gatekeeper = %ip, "the call's media passes through the gatekeeper (its H.245 names its address)");
            self.media_via = Some(peer.ip());
        }
    }

    /// Release every open leg with `cause`: a call whose media went
    /// through a gatekeeper that went away is silent, and a silent call
    /// kept up is worse than a clear release.
    fn release_media_lost(&mut self, gatekeeper: std::net::IpAddr) {
        tracing::warn!(
            %gatekeeper,
            cause = cause::NETWORK_OUT_OF_ORDER,
            "the call's media passed through a gatekeeper that went away; releasing the call"
        );
        self.count(Counter::MediaLost);
        self.release_all(cause::NETWORK_OUT_OF_ORDER, |_| true);
    }

    /// End the call: a RELEASE COMPLETE with `cause` on every open leg
    /// `which` picks.
    fn release_all(&mut self, cause: u8, which: impl Fn(&LegState) -> bool) {
        self.phase = Phase::Released;
        for leg in [Leg::Caller, Leg::Callee] {
            let l = &self.legs[leg.index()];
            if l.open && which(l) {
                self.release(leg, cause);
            }
        }
        self.close();
    }

    /// Send `m` to `to` after pointing a FACILITY's alternativeAddress at
    /// the proxy: the receiver comes back to the proxy, which routes its
    /// new SETUP like any other, so the call cannot leave it.
    fn send_rewritten(&mut self, to: Leg, mut m: Signalling) {
        if let Some(alt) = m.alternative_address() {
            let mine = match self.legs[to.index()].side {
                LegSide::Endpoint => self.cfg.endpoint_side,
                LegSide::Gatekeeper => self.cfg.gatekeeper_side,
            };
            m.set_alternative_address(mine);
            tracing::info!(%alt, to = %mine, "FACILITY alternativeAddress rewritten to the proxy");
        }
        match m.encode() {
            Ok(bytes) => self.send(to, bytes),
            Err(e) => tracing::warn!(error = %e, "message could not be re-encoded; dropped"),
        }
    }

    fn send(&mut self, to: Leg, bytes: Bytes) {
        if self.legs[to.index()].open {
            self.transmits.push_back((to, bytes));
        }
        if self.phase == Phase::Released {
            tracing::info!("call released");
            self.close();
        }
    }

    /// Queue a RELEASE COMPLETE toward `to`.
    fn release(&mut self, to: Leg, cause: u8) {
        let rc = release_complete(self.crv, to == Leg::Caller, self.call_id.as_ref(), cause);
        self.transmits.push_back((to, rc));
    }

    fn count(&mut self, c: Counter) {
        self.events.push_back(CallEvent::Count(c));
    }

    fn close(&mut self) {
        if self.state != State::Closed {
            self.state = State::Closed;
            self.deadline = None;
            self.events.push_back(CallEvent::Closed);
        }
    }
}
