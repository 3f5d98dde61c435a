//! The H.225.0 side of call signalling messages: what the call state
//! machine reads from them (a SETUP's destinations, an h245Address, a
//! FACILITY's alternativeAddress) and the few it writes itself (STATUS,
//! RELEASE COMPLETE). Each message is decoded once and re-encoded only when
//! something in it changes.

use std::net::SocketAddr;

use bytes::Bytes;

use super::CallError;
use crate::h225::alias::Alias;
use crate::h225::asn::h323_messages::{
    ConnectUUIE, H323UUPDU, H323UUPDUH323MessageBody as Body, H323UserInformation,
    ReleaseCompleteReason, ReleaseCompleteUUIE, StatusUUIE, TransportAddress,
};
use crate::h225::uuie;
use crate::h225::value::{call_identifier, guid, protocol_id, socket_addr, transport};
use crate::q931::{self, Message, ie, msg};

/// What a SETUP asks for, to route it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetupInfo {
    /// callIdentifier GUID, when present.
    pub call_id: Option<[u8; 16]>,
    /// destinationAddress aliases and the Called party number.
    pub destinations: Vec<Alias>,
}

/// A Q.931 message with its decoded H.225.0 User-user IE.
#[derive(Clone, Debug)]
pub struct Signalling {
    q931: Message,
    pub(super) uu: H323UserInformation,
}

impl Signalling {
    /// Decode a message that must carry a User-user IE.
    pub fn decode(q931: &[u8]) -> Result<Self, CallError> {
        Self::from_message(Message::decode(q931)?)
    }

    /// The UUIE of an already decoded message.
    pub fn from_message(q931: Message) -> Result<Self, CallError> {
        let uu = uuie::decode(q931.user_user().ok_or(CallError::NoUuie)??)?;
        Ok(Self { q931, uu })
    }

    /// The Q.931 part.
    pub fn q931(&self) -> &Message {
        &self.q931
    }

    /// What a SETUP asks for (`None` for any other message).
    pub fn setup_info(&self) -> Option<SetupInfo> {
        let Body::setup(s) = &self.uu.h323_uu_pdu.h323_message_body else {
            return None;
        };
        let mut destinations: Vec<Alias> = s
            .destination_address
            .iter()
            .flatten()
            .map(Alias::of)
            .collect();
        if let Some(Ok(n)) = self
            .q931
            .ie(ie::CALLED_PARTY_NUMBER)
            .map(|d| q931::PartyNumber::parse(ie::CALLED_PARTY_NUMBER, d))
        {
            destinations.push(Alias::E164(n.digits));
        }
        Some(SetupInfo {
            call_id: s.call_identifier.as_ref().map(|c| guid(c.guid.0.as_ref())),
            destinations,
        })
    }

    /// Set a SETUP's call signalling addresses and endpointIdentifier for
    /// the callee leg: sourceCallSignalAddress is the proxy's address on
    /// that side, destCallSignalAddress the callee's. The endpoint's
    /// identifier is the proxy's toward the endpoint and the gatekeeper's
    /// toward the gatekeeper: never relayed as is. Every other field,
    /// fastStart and tunnelled H.245 included, is kept.
    pub fn readdress_setup(
        &mut self,
        proxy_side: SocketAddr,
        callee: SocketAddr,
        endpoint_id: Option<&str>,
    ) {
        if let Body::setup(s) = &mut self.uu.h323_uu_pdu.h323_message_body {
            s.source_call_signal_address = Some(transport(proxy_side));
            s.dest_call_signal_address = Some(transport(callee));
            s.endpoint_identifier = endpoint_id.map(crate::h225::value::epid);
        }
    }

    /// Take out of a SETUP what opens media or H.245 (fastStart,
    /// h245Address, tunnelled or parallel H.245 messages): a SETUP that
    /// re-anchors a call already up must not start a second media session.
    /// The h245Tunnelling flag stays: the endpoints' H.245 session goes on
    /// tunnelled through the new legs if it was.
    pub fn strip_media(&mut self) {
        let pdu = &mut self.uu.h323_uu_pdu;
        pdu.h245_control = None;
        if let Body::setup(s) = &mut pdu.h323_message_body {
            s.fast_start = None;
            s.h245_address = None;
            s.parallel_h245_control = None;
            s.media_wait_for_connect = None;
        }
    }

    /// The CONNECT answering this SETUP on its own link (the call
    /// reference with the destination flag, its conferenceID and
    /// callIdentifier); `None` for any other message.
    pub fn connect_answer(&self) -> Option<Bytes> {
        let Body::setup(s) = &self.uu.h323_uu_pdu.h323_message_body else {
            return None;
        };
        let body = Body::connect(ConnectUUIE::new(
            protocol_id(),
            None,
            crate::h225::build::endpoint_type(crate::h225::build::Node::Terminal),
            s.conference_id.clone(),
            s.call_identifier.clone(),
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
        ));
        let mut m = Message::new(
            msg::CONNECT,
            q931::CallRef::new(self.q931.call_ref.value, true),
        );
        let mut pdu = H323UUPDU::new(
            body, None, None, None, None, None, None, None, None, None, None,
        );
        // Tunnelling as the SETUP offered it: the endpoints' H.245 session
        // goes on inside the call signalling if it did.
        pdu.h245_tunnelling = self.uu.h323_uu_pdu.h245_tunnelling;
        m.set_user_user(&uuie::encode(&H323UserInformation::new(pdu, None)).ok()?);
        Some(m.encode())
    }

    /// The h245Address the message signals (SETUP, CALL PROCEEDING,
    /// ALERTING, CONNECT, FACILITY, PROGRESS), when it has one.
    pub fn h245_address(&self) -> Option<SocketAddr> {
        h245_field(&self.uu).and_then(socket_addr)
    }

    /// Replace the h245Address (the proxy's own H.245 listener).
    pub fn set_h245_address(&mut self, new: SocketAddr) {
        if let Some(f) = h245_field_mut(&mut self.uu) {
            *f = Some(transport(new));
        }
    }

    /// A FACILITY's alternativeAddress (call forwarding / redirection).
    pub fn alternative_address(&self) -> Option<SocketAddr> {
        match &self.uu.h323_uu_pdu.h323_message_body {
            Body::facility(f) => f.alternative_address.as_ref().and_then(socket_addr),
            _ => None,
        }
    }

    /// Whether the H.245 this message carries (tunnelled h245Control,
    /// fastStart channels) names `ip` as a transport address: how a
    /// gatekeeper that proxies the call's media (RTP proxy) shows itself.
    ///
    /// The project decodes no H.245, so this is a byte search: in aligned
    /// PER an H.245 IPv4 address is an octet-aligned 4-octet string, so
    /// the address appears whole in the PDU's octets. A chance match of
    /// four given octets in the few hundred octets of a call's H.245 is
    /// unlikely, and costs at most one needless release after a
    /// gatekeeper failure.
    pub fn h245_names(&self, ip: std::net::Ipv4Addr) -> bool {
        let pdu = &self.uu.h323_uu_pdu;
        let fast_start = match &pdu.h323_message_body {
            Body::setup(x) => x.fast_start.as_ref(),
            Body::callProceeding(x) => x.fast_start.as_ref(),
            Body::alerting(x) => x.fast_start.as_ref(),
            Body::connect(x) => x.fast_start.as_ref(),
            Body::facility(x) => x.fast_start.as_ref(),
            Body::progress(x) => x.fast_start.as_ref(),
            _ => None,
        };
        let octets = ip.octets();
        pdu.h245_control
            .iter()
            .chain(fast_start)
            .flatten()
            .any(|h245| h245.windows(4).any(|w| w == octets))
    }

    /// Replace a FACILITY's alternativeAddress.
    pub fn set_alternative_address(&mut self, new: SocketAddr) {
        if let Body::facility(f) = &mut self.uu.h323_uu_pdu.h323_message_body {
            f.alternative_address = Some(transport(new));
        }
    }

    /// The message with its (possibly changed) UUIE, every IE in order.
    pub fn encode(mut self) -> Result<Bytes, CallError> {
        let bytes = uuie::encode(&self.uu)?;
        self.q931.set_user_user(&bytes);
        Ok(self.q931.encode())
    }
}

fn h245_field(uu: &H323UserInformation) -> Option<&TransportAddress> {
    match &uu.h323_uu_pdu.h323_message_body {
        Body::setup(x) => x.h245_address.as_ref(),
        Body::callProceeding(x) => x.h245_address.as_ref(),
        Body::alerting(x) => x.h245_address.as_ref(),
        Body::connect(x) => x.h245_address.as_ref(),
        Body::facility(x) => x.h245_address.as_ref(),
        Body::progress(x) => x.h245_address.as_ref(),
        _ => None,
    }
}

fn h245_field_mut(uu: &mut H323UserInformation) -> Option<&mut Option<TransportAddress>> {
    match &mut uu.h323_uu_pdu.h323_message_body {
        Body::setup(x) => Some(&mut x.h245_address),
        Body::callProceeding(x) => Some(&mut x.h245_address),
        Body::alerting(x) => Some(&mut x.h245_address),
        Body::connect(x) => Some(&mut x.h245_address),
        Body::facility(x) => Some(&mut x.h245_address),
        Body::progress(x) => Some(&mut x.h245_address),
        _ => None,
    }
}

/// What a SETUP asks for, decoding it once (lab gatekeeper, tests).
pub fn setup_info(q931: &[u8]) -> Result<SetupInfo, CallError> {
    let s = Signalling::decode(q931)?;
    s.setup_info()
        .ok_or(CallError::NotSetup(msg::name(s.q931.message_type)))
}

/// The h245Address a message signals, when it has one.
pub fn h245_address(q931: &[u8]) -> Option<SocketAddr> {
    Signalling::decode(q931).ok()?.h245_address()
}

fn uuie_of(body: Body) -> Option<Vec<u8>> {
    let pdu = H323UUPDU::new(
        body, None, None, None, None, None, None, None, None, None, None,
    );
    uuie::encode(&H323UserInformation::new(pdu, None)).ok()
}

fn release_uuie(call_id: Option<&[u8; 16]>) -> Option<Vec<u8>> {
    let reason = call_id.map(|_| ReleaseCompleteReason::undefinedReason(()));
    uuie_of(Body::releaseComplete(ReleaseCompleteUUIE::new(
        protocol_id(),
        reason,
        call_id.map(call_identifier),
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
    )))
}

/// A RELEASE COMPLETE with a Q.850 cause on call reference `crv`, toward
/// the caller (`to_caller`, the flag set) or the callee.
pub fn release_complete(crv: u16, to_caller: bool, call_id: Option<&[u8; 16]>, cause: u8) -> Bytes {
    let mut m = Message::new(msg::RELEASE_COMPLETE, q931::CallRef::new(crv, to_caller));
    m.ies.push(q931::Ie::new(
        ie::CAUSE,
        q931::Cause::user(cause).encode().to_vec(),
    ));
    // Without a callIdentifier there is nothing an H.225.0 peer needs to
    // match; the UUIE is then left out, as before.
    if let Some(uu) = call_id.and_then(|c| release_uuie(Some(c))) {
        m.set_user_user(&uu);
    }
    m.encode()
}

/// The STATUS answering a STATUS ENQUIRY, with the call's state.
pub fn status(enquiry: q931::CallRef, state: u8, call_id: Option<&[u8; 16]>) -> Bytes {
    let mut s = q931::status_response(enquiry, state);
    let uu = call_id.and_then(|c| {
        uuie_of(Body::status(StatusUUIE::new(
            protocol_id(),
            call_identifier(c),
            None,
            None,
        )))
    });
    if let Some(uu) = uu {
        s.set_user_user(&uu);
    }
    s.encode()
}

/// The RELEASE COMPLETE refusing a first message the proxy cannot serve,
/// on the caller's call reference, with a Q.850 cause (100: invalid
/// information element contents; 101: message not compatible with the call
/// state). `None` when not even the Q.931 header parses.
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
    r.set_user_user(&release_uuie(None)?);
    Some(r.encode())
}
