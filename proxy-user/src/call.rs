//! One relayed call on the call signalling channel (H.225.0 / Q.931 over
//! TPKT), as a sans-I/O state machine.
//!
//! The proxy terminates both TCP legs. It answers keepalives on each leg
//! itself (empty TPKT, STATUS ENQUIRY → STATUS with the call's real state),
//! so a leg never depends on the other one, or on a gatekeeper, to stay up.
//! Everything else is relayed: SETUP with its call signalling addresses
//! rewritten to the proxy's, every other message byte-identical.

use std::net::SocketAddr;

use bytes::Bytes;

use crate::h225::asn::h323_messages::H323UUPDUH323MessageBody;
use crate::h225::uuie::{self, H323UserInformation};
use crate::h225::value::{alias_text, guid, transport};
use crate::q931::{self, Message, call_state, ie, msg};

/// Errors of the call state machine. None of them changes the call.
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
    /// A SETUP without a User-user IE.
    #[error("SETUP without an H.225.0 User-user IE")]
    NoUuie,
}

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
}

/// What the driver does with a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send these Q.931 bytes on the other leg.
    Relay(Bytes),
    /// Send these Q.931 bytes back on the same leg (a local answer).
    Answer(Bytes),
    /// Nothing to send (keepalive absorbed).
    Absorb,
}

/// What a SETUP asks for, to route it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetupInfo {
    /// callIdentifier GUID, when present.
    pub call_id: Option<[u8; 16]>,
    /// destinationAddress aliases and the Called party number, as alias texts.
    pub destinations: Vec<String>,
}

/// One call.
#[derive(Clone, Debug)]
pub struct Call {
    /// callIdentifier.
    pub call_id: Option<[u8; 16]>,
    /// Call reference value (the same on both legs).
    pub crv: u16,
    /// Phase.
    pub phase: Phase,
    /// Messages relayed.
    pub relayed: u64,
    /// Keepalives answered locally (STATUS ENQUIRY and empty TPKT).
    pub keepalives_answered: u64,
}

impl Call {
    /// Start a call from the first message on a caller's link.
    pub fn from_setup(q931: &[u8]) -> Result<(Call, SetupInfo), CallError> {
        let m = Message::decode(q931)?;
        if m.message_type != msg::SETUP {
            return Err(CallError::NotSetup(msg::name(m.message_type)));
        }
        let uu = m.user_user().ok_or(CallError::NoUuie)??;
        let info = uuie::decode(uu)?;
        let mut destinations = Vec::new();
        let mut call_id = None;
        if let H323UUPDUH323MessageBody::setup(s) = &info.h323_uu_pdu.h323_message_body {
            destinations.extend(s.destination_address.iter().flatten().map(alias_text));
            call_id = s.call_identifier.as_ref().map(|c| guid(c.guid.0.as_ref()));
        }
        if let Some(Ok(n)) = m
            .ie(ie::CALLED_PARTY_NUMBER)
            .map(|d| q931::PartyNumber::parse(ie::CALLED_PARTY_NUMBER, d))
        {
            destinations.push(format!("e164:{}", n.digits));
        }
        Ok((
            Call {
                call_id,
                crv: m.call_ref.value,
                phase: Phase::Setup,
                relayed: 0,
                keepalives_answered: 0,
            },
            SetupInfo {
                call_id,
                destinations,
            },
        ))
    }

    /// The SETUP to send on the callee leg: the original with
    /// sourceCallSignalAddress set to the proxy's address on that side and
    /// destCallSignalAddress to the callee's. Every other field, fastStart
    /// and tunnelled H.245 included, is kept.
    pub fn rewrite_setup(
        q931: &[u8],
        proxy_side: SocketAddr,
        callee: SocketAddr,
        endpoint_id: Option<&str>,
    ) -> Result<Bytes, CallError> {
        let mut m = Message::decode(q931)?;
        let uu = m.user_user().ok_or(CallError::NoUuie)??;
        let mut info: H323UserInformation = uuie::decode(uu)?;
        if let H323UUPDUH323MessageBody::setup(s) = &mut info.h323_uu_pdu.h323_message_body {
            s.source_call_signal_address = Some(transport(proxy_side));
            s.dest_call_signal_address = Some(transport(callee));
            // The endpoint's identifier is the proxy's toward the endpoint,
            // the gatekeeper's toward the gatekeeper: never relayed as is.
            s.endpoint_identifier = endpoint_id.map(crate::h225::value::epid);
        }
        let bytes = uuie::encode(&info)?;
        m.set_user_user(&bytes);
        Ok(m.encode())
    }

    /// Q.931 call state the proxy reports in STATUS (as the network side
    /// toward the caller; the callee sees the same numbering, H.225.0 uses
    /// the user-side values on both).
    pub fn q931_state(&self) -> u8 {
        match self.phase {
            Phase::Setup => call_state::CALL_INITIATED,
            Phase::Proceeding => call_state::OUTGOING_CALL_PROCEEDING,
            Phase::Alerting => call_state::CALL_DELIVERED,
            Phase::Active => call_state::ACTIVE,
            Phase::Released => call_state::NULL,
        }
    }

    /// A TPKT payload arrived on `from`.
    pub fn handle(&mut self, from: Leg, payload: &Bytes) -> Result<Action, CallError> {
        if payload.is_empty() {
            // H.460.18 keepalive: each leg has its own.
            self.keepalives_answered += 1;
            return Ok(Action::Absorb);
        }
        let m = Message::decode(payload)?;
        match m.message_type {
            msg::STATUS_ENQUIRY => {
                self.keepalives_answered += 1;
                let mut s = q931::status_response(m.call_ref, self.q931_state());
                if let Some(uu) = self.status_uuie() {
                    s.set_user_user(&uu);
                }
                return Ok(Action::Answer(s.encode()));
            }
            // A STATUS answers an enquiry of the far leg's peer, which the
            // proxy answered itself: nothing to relay.
            msg::STATUS => return Ok(Action::Absorb),
            msg::CALL_PROCEEDING if self.phase == Phase::Setup => self.phase = Phase::Proceeding,
            msg::ALERTING if matches!(self.phase, Phase::Setup | Phase::Proceeding) => {
                self.phase = Phase::Alerting
            }
            msg::CONNECT => self.phase = Phase::Active,
            msg::RELEASE_COMPLETE => self.phase = Phase::Released,
            _ => {}
        }
        let _ = from;
        self.relayed += 1;
        Ok(Action::Relay(payload.clone()))
    }

    /// A RELEASE COMPLETE for a leg whose peer is gone, with a Q.850 cause
    /// (41: temporary failure).
    pub fn release_complete(&self, to: Leg, cause: u8) -> Bytes {
        let mut m = Message::new(
            msg::RELEASE_COMPLETE,
            q931::CallRef::new(self.crv, to == Leg::Caller),
        );
        m.ies.push(q931::Ie::new(
            ie::CAUSE,
            q931::Cause::user(cause).encode().to_vec(),
        ));
        if let Some(uu) = self.release_uuie() {
            m.set_user_user(&uu);
        }
        m.encode()
    }

    fn status_uuie(&self) -> Option<Vec<u8>> {
        let call = self.call_id?;
        let v = serde_json::json!({"h323-uu-pdu": {"h323-message-body": {"status": {
            "protocolIdentifier": crate::h225::PROTOCOL_ID,
            "callIdentifier": {"guid": crate::h225::value::hex(&call)},
        }}}});
        let m: H323UserInformation = rasn::jer::decode(&v.to_string()).ok()?;
        uuie::encode(&m).ok()
    }

    fn release_uuie(&self) -> Option<Vec<u8>> {
        let call = self.call_id?;
        let v = serde_json::json!({"h323-uu-pdu": {"h323-message-body": {"releaseComplete": {
            "protocolIdentifier": crate::h225::PROTOCOL_ID,
            "reason": {"undefinedReason": null},
            "callIdentifier": {"guid": crate::h225::value::hex(&call)},
        }}}});
        let m: H323UserInformation = rasn::jer::decode(&v.to_string()).ok()?;
        uuie::encode(&m).ok()
    }
}

/// The h245Address a message signals (SETUP, CALL PROCEEDING, ALERTING,
/// CONNECT, FACILITY, PROGRESS), when it has one.
pub fn h245_address(q931: &[u8]) -> Option<SocketAddr> {
    let m = Message::decode(q931).ok()?;
    let uu = uuie::decode(m.user_user()?.ok()?).ok()?;
    h245_field(&uu).and_then(crate::h225::value::socket_addr)
}

fn h245_field(
    uu: &H323UserInformation,
) -> Option<&crate::h225::asn::h323_messages::TransportAddress> {
    use H323UUPDUH323MessageBody as B;
    match &uu.h323_uu_pdu.h323_message_body {
        B::setup(x) => x.h245_address.as_ref(),
        B::callProceeding(x) => x.h245_address.as_ref(),
        B::alerting(x) => x.h245_address.as_ref(),
        B::connect(x) => x.h245_address.as_ref(),
        B::facility(x) => x.h245_address.as_ref(),
        B::progress(x) => x.h245_address.as_ref(),
        _ => None,
    }
}

/// The message with its h245Address replaced by `new` (the proxy's own H.245
/// listener); every other field is kept.
pub fn rewrite_h245(q931: &[u8], new: SocketAddr) -> Result<Bytes, CallError> {
    use H323UUPDUH323MessageBody as B;
    let mut m = Message::decode(q931)?;
    let uu = m.user_user().ok_or(CallError::NoUuie)??;
    let mut info: H323UserInformation = uuie::decode(uu)?;
    let t = Some(transport(new));
    match &mut info.h323_uu_pdu.h323_message_body {
        B::setup(x) => x.h245_address = t,
        B::callProceeding(x) => x.h245_address = t,
        B::alerting(x) => x.h245_address = t,
        B::connect(x) => x.h245_address = t,
        B::facility(x) => x.h245_address = t,
        B::progress(x) => x.h245_address = t,
        _ => {}
    }
    let bytes = uuie::encode(&info)?;
    m.set_user_user(&bytes);
    Ok(m.encode())
}

/// The alternativeAddress of a FACILITY (call forwarding / redirection).
pub fn alternative_address(q931: &[u8]) -> Option<SocketAddr> {
    let m = Message::decode(q931).ok()?;
    let uu = uuie::decode(m.user_user()?.ok()?).ok()?;
    match &uu.h323_uu_pdu.h323_message_body {
        H323UUPDUH323MessageBody::facility(f) => f
            .alternative_address
            .as_ref()
            .and_then(crate::h225::value::socket_addr),
        _ => None,
    }
}

/// The FACILITY with its alternativeAddress replaced by `new`.
pub fn rewrite_alternative(q931: &[u8], new: SocketAddr) -> Result<Bytes, CallError> {
    let mut m = Message::decode(q931)?;
    let uu = m.user_user().ok_or(CallError::NoUuie)??;
    let mut info: H323UserInformation = uuie::decode(uu)?;
    if let H323UUPDUH323MessageBody::facility(f) = &mut info.h323_uu_pdu.h323_message_body {
        f.alternative_address = Some(transport(new));
    }
    let bytes = uuie::encode(&info)?;
    m.set_user_user(&bytes);
    Ok(m.encode())
}

/// The RELEASE COMPLETE refusing a first message the proxy cannot serve,
/// on the caller's call reference, with a Q.850 cause (100: invalid
/// information element contents; 101: message not compatible with the call
/// state).
pub fn refuse(q931: &[u8], cause: u8) -> Option<Bytes> {
    let m = Message::decode(q931).ok()?;
    let mut r = Message::new(
        msg::RELEASE_COMPLETE,
        q931::CallRef {
            from_destination: !m.call_ref.from_destination,
            ..m.call_ref
        },
    );
    r.ies.push(q931::Ie::new(
        ie::CAUSE,
        q931::Cause::user(cause).encode().to_vec(),
    ));
    let v = serde_json::json!({"h323-uu-pdu": {"h323-message-body": {"releaseComplete": {
        "protocolIdentifier": crate::h225::PROTOCOL_ID,
    }}}});
    let uu: H323UserInformation = rasn::jer::decode(&v.to_string()).ok()?;
    r.set_user_user(&uuie::encode(&uu).ok()?);
    Some(r.encode())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::h225::corpus::{self, Kind};

    fn corpus_q931(t: u8) -> Bytes {
        corpus::build()
            .unwrap()
            .into_iter()
            .filter(|e| e.kind == Kind::Q931)
            .find(|e| Message::decode(&e.bytes).unwrap().message_type == t)
            .unwrap()
            .bytes
    }

    #[test]
    fn setup_routes_by_alias_and_rewrites_only_addresses() {
        let setup = corpus_q931(msg::SETUP);
        let (call, info) = Call::from_setup(&setup).unwrap();
        assert!(
            info.destinations.contains(&"e164:1002".to_string()),
            "{info:?}"
        );
        assert_eq!(info.call_id, call.call_id);
        let proxy: SocketAddr = "198.18.1.1:1720".parse().unwrap();
        let callee: SocketAddr = "198.18.1.12:1720".parse().unwrap();
        let out = Call::rewrite_setup(&setup, proxy, callee, None).unwrap();
        let m = Message::decode(&out).unwrap();
        let orig = Message::decode(&setup).unwrap();
        // Every IE but User-user is untouched, in order.
        let ids = |m: &Message| m.ies.iter().map(|i| i.id()).collect::<Vec<_>>();
        assert_eq!(ids(&m), ids(&orig));
        let uu = uuie::decode(m.user_user().unwrap().unwrap()).unwrap();
        let H323UUPDUH323MessageBody::setup(s) = uu.h323_uu_pdu.h323_message_body else {
            panic!()
        };
        assert_eq!(s.source_call_signal_address, Some(transport(proxy)));
        assert_eq!(s.dest_call_signal_address, Some(transport(callee)));
    }

    #[test]
    fn status_enquiry_is_answered_with_the_real_state_and_others_relay_unchanged() {
        let (mut call, _) = Call::from_setup(&corpus_q931(msg::SETUP)).unwrap();
        let alerting = corpus_q931(msg::ALERTING);
        assert_eq!(
            call.handle(Leg::Callee, &alerting).unwrap(),
            Action::Relay(alerting.clone())
        );
        let connect = corpus_q931(msg::CONNECT);
        call.handle(Leg::Callee, &connect).unwrap();
        assert_eq!(call.phase, Phase::Active);
        let Action::Answer(status) = call
            .handle(Leg::Caller, &corpus_q931(msg::STATUS_ENQUIRY))
            .unwrap()
        else {
            panic!("STATUS ENQUIRY must be answered locally")
        };
        let s = Message::decode(&status).unwrap();
        assert_eq!(s.message_type, msg::STATUS);
        assert_eq!(s.ie(ie::CALL_STATE).unwrap()[..], [call_state::ACTIVE]);
        assert_eq!(
            call.handle(Leg::Caller, &Bytes::new()).unwrap(),
            Action::Absorb
        );
        assert_eq!(call.keepalives_answered, 2);
    }

    #[test]
    fn h245_addresses_are_found_and_rewritten() {
        let connect = corpus_q931(msg::CONNECT);
        let orig = h245_address(&connect).expect("the corpus CONNECT signals H.245");
        let mine: SocketAddr = "198.18.1.1:40123".parse().unwrap();
        let out = rewrite_h245(&connect, mine).unwrap();
        assert_eq!(h245_address(&out), Some(mine));
        assert_ne!(orig, mine);
        assert_eq!(
            rewrite_h245(&out, orig).unwrap(),
            connect,
            "only the address changed"
        );
        assert_eq!(h245_address(&corpus_q931(msg::STATUS)), None);
    }

    #[test]
    fn facility_alternative_addresses_are_found_and_rewritten() {
        let call = hex_call();
        let v = serde_json::json!({"h323-uu-pdu": {"h323-message-body": {"facility": {
            "protocolIdentifier": crate::h225::PROTOCOL_ID,
            "alternativeAddress": crate::h225::value::transport_json("198.18.2.20:1720".parse().unwrap()),
            "reason": {"callForwarded": null}, "callIdentifier": {"guid": call}}}}});
        let uu: H323UserInformation = rasn::jer::decode(&v.to_string()).unwrap();
        let mut m = Message::new(msg::FACILITY, q931::CallRef::new(9, true));
        m.set_user_user(&uuie::encode(&uu).unwrap());
        let f = m.encode();
        assert_eq!(
            alternative_address(&f),
            Some("198.18.2.20:1720".parse().unwrap())
        );
        let mine: SocketAddr = "198.18.1.1:41000".parse().unwrap();
        assert_eq!(
            alternative_address(&rewrite_alternative(&f, mine).unwrap()),
            Some(mine)
        );
        assert_eq!(alternative_address(&corpus_q931(msg::FACILITY)), None);
    }

    fn hex_call() -> String {
        crate::h225::value::hex(&[5u8; 16])
    }

    #[test]
    fn garbage_is_an_error_and_changes_nothing() {
        let (mut call, _) = Call::from_setup(&corpus_q931(msg::SETUP)).unwrap();
        assert!(
            call.handle(Leg::Caller, &Bytes::from_static(b"\x08\xff"))
                .is_err()
        );
        assert_eq!(call.phase, Phase::Setup);
        assert!(Call::from_setup(&corpus_q931(msg::CONNECT)).is_err());
        let r = refuse(&corpus_q931(msg::CONNECT), 101).unwrap();
        let m = Message::decode(&r).unwrap();
        assert_eq!(m.message_type, msg::RELEASE_COMPLETE);
        assert_eq!(m.cause().unwrap().unwrap().value, 101);
        assert!(refuse(b"garbage", 100).is_none());
    }
}
