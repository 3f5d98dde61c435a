//! Typed builders for the RAS messages the proxy writes itself, over the
//! generated types: a missing or misspelt field is a compile error, not a
//! "building a RAS message (bug)" at run time. Each sets only what the
//! proxy means; every other field is absent. The generated constructors
//! take every field in order, so the long runs of `None` live here, once.

use std::net::SocketAddr;

use rasn::types::SequenceOf;

use super::asn::h323_messages::{
    AdmissionConfirm, AdmissionReject, AdmissionRejectReason, AdmissionRequest, AliasAddress,
    AnonymousInfoRequestResponsePerCallInfo, BandWidth, BandwidthConfirm, CallModel,
    CallReferenceValue, CallType, ConferenceIdentifier, DisengageConfirm, DisengageReject,
    DisengageRejectReason, EndpointType, GatekeeperConfirm, GatewayInfo, GloballyUniqueID,
    H221NonStandard, InfoRequestAck, InfoRequestResponse, InfoRequestResponsePerCallInfo,
    LocationConfirm, LocationReject, LocationRejectReason, RegistrationConfirm, RegistrationReject,
    RegistrationRejectReason, RegistrationRequest, RequestSeqNum, TerminalInfo, TimeToLive,
    TransportChannelInfo, UnknownMessageResponse, UnregRejectReason, UnregRequestReason,
    UnregistrationConfirm, UnregistrationReject, UnregistrationRequest, VendorIdentifier,
};
use super::ras::RasMessage;
use super::value::{call_identifier, epid, gkid, protocol_id, transport};

/// The proxy's vendor identity (T.35 country 181, manufacturer 18).
pub fn vendor() -> VendorIdentifier {
    VendorIdentifier::new(H221NonStandard::new(181, 0, 18), None, None, None)
}

/// What kind of node the proxy says it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Node {
    /// A gateway (the proxy's own registration).
    Gateway,
    /// A terminal (an endpoint's, as the proxy describes it).
    Terminal,
}

/// An EndpointType saying only what kind of node it is.
pub fn endpoint_type(node: Node) -> EndpointType {
    let (gateway, terminal) = match node {
        Node::Gateway => (Some(GatewayInfo::new(None, None)), None),
        Node::Terminal => (None, Some(TerminalInfo::new(None))),
    };
    EndpointType::new(
        None, None, None, gateway, None, terminal, false, false, None, None,
    )
}

/// A full or lightweight RRQ.
#[derive(Clone, Debug)]
pub struct Rrq<'a> {
    /// Call signalling addresses (empty in a lightweight RRQ).
    pub call_signal: Vec<SocketAddr>,
    /// RAS address.
    pub ras: SocketAddr,
    /// Node type.
    pub node: Node,
    /// terminalAlias.
    pub aliases: Vec<AliasAddress>,
    /// gatekeeperIdentifier, when known.
    pub gatekeeper_id: Option<&'a str>,
    /// timeToLive asked, seconds.
    pub ttl: u32,
    /// A lightweight RRQ (keepAlive) for this endpointIdentifier.
    pub keep_alive: Option<&'a str>,
}

/// The RRQ `r` (requestSeqNum 1: the sender sets its own).
pub fn rrq(r: Rrq<'_>) -> RasMessage {
    RasMessage::registrationRequest(RegistrationRequest::new(
        RequestSeqNum(1),
        protocol_id(),
        None,
        false,
        r.call_signal.into_iter().map(transport).collect(),
        vec![transport(r.ras)],
        endpoint_type(r.node),
        (!r.aliases.is_empty()).then_some(r.aliases),
        r.gatekeeper_id.map(gkid),
        vendor(),
        None,
        Some(TimeToLive(r.ttl)),
        None,
        None,
        None,
        Some(r.keep_alive.is_some()),
        r.keep_alive.map(epid),
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
        None,
        None,
        None,
        None,
        None,
    ))
}

/// An RCF from the proxy as gatekeeper.
pub fn rcf(
    seq: u16,
    call_signal: SocketAddr,
    gatekeeper_id: &str,
    endpoint_id: &str,
    ttl: u32,
    aliases: Vec<AliasAddress>,
) -> RasMessage {
    RasMessage::registrationConfirm(RegistrationConfirm::new(
        RequestSeqNum(seq),
        protocol_id(),
        None,
        vec![transport(call_signal)],
        (!aliases.is_empty()).then_some(aliases),
        Some(gkid(gatekeeper_id)),
        epid(endpoint_id),
        None,
        Some(TimeToLive(ttl)),
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
        None,
        None,
        None,
    ))
}

/// An RRJ from the proxy as gatekeeper.
pub fn rrj(seq: u16, reason: RegistrationRejectReason, gatekeeper_id: &str) -> RasMessage {
    RasMessage::registrationReject(RegistrationReject::new(
        RequestSeqNum(seq),
        protocol_id(),
        None,
        reason,
        Some(gkid(gatekeeper_id)),
        None,
        None,
        None,
        None,
        None,
        None,
        None,
    ))
}

/// A GCF naming the proxy as gatekeeper.
pub fn gcf(seq: u16, gatekeeper_id: &str, ras: SocketAddr) -> RasMessage {
    RasMessage::gatekeeperConfirm(GatekeeperConfirm::new(
        RequestSeqNum(seq),
        protocol_id(),
        None,
        Some(gkid(gatekeeper_id)),
        transport(ras),
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
    ))
}

/// A URQ for `endpoint_id` (requestSeqNum 1: the sender sets its own).
pub fn urq(call_signal: SocketAddr, endpoint_id: &str, reason: UnregRequestReason) -> RasMessage {
    RasMessage::unregistrationRequest(UnregistrationRequest::new(
        RequestSeqNum(1),
        vec![transport(call_signal)],
        None,
        None,
        Some(epid(endpoint_id)),
        None,
        None,
        None,
        None,
        None,
        Some(reason),
        None,
        None,
        None,
        None,
        None,
    ))
}

/// A UCF.
pub fn ucf(seq: u16) -> RasMessage {
    RasMessage::unregistrationConfirm(UnregistrationConfirm::new(
        RequestSeqNum(seq),
        None,
        None,
        None,
        None,
        None,
        None,
    ))
}

/// A URJ.
pub fn urj(seq: u16, reason: UnregRejectReason) -> RasMessage {
    RasMessage::unregistrationReject(UnregistrationReject::new(
        RequestSeqNum(seq),
        reason,
        None,
        None,
        None,
        None,
        None,
        None,
    ))
}

/// An ACF for a direct call to `dest`.
pub fn acf(seq: u16, bandwidth: u32, dest: SocketAddr) -> RasMessage {
    RasMessage::admissionConfirm(AdmissionConfirm::new(
        RequestSeqNum(seq),
        BandWidth(bandwidth),
        CallModel::direct(()),
        transport(dest),
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
    ))
}

/// An ARQ the proxy sends on an endpoint's behalf, for a call that is
/// already up: its callIdentifier, conferenceID and call reference are the
/// call's own, so the gatekeeper that takes control records that call.
#[derive(Clone, Debug)]
pub struct Arq<'a> {
    /// The endpointIdentifier the gatekeeper assigned.
    pub endpoint_id: &'a str,
    /// gatekeeperIdentifier, when known.
    pub gatekeeper_id: Option<&'a str>,
    /// srcInfo: the endpoint's aliases.
    pub src_info: Vec<AliasAddress>,
    /// destinationInfo (an originating ARQ).
    pub destinations: Vec<AliasAddress>,
    /// The endpoint's call signalling address at the gatekeeper.
    pub call_signal: SocketAddr,
    /// Bandwidth, 100 bit/s units.
    pub bandwidth: u32,
    /// Call reference value.
    pub crv: u16,
    /// conferenceID.
    pub conference_id: [u8; 16],
    /// callIdentifier.
    pub call_id: [u8; 16],
    /// The endpoint answers the call.
    pub answer_call: bool,
}

/// The ARQ `a` (requestSeqNum 1: the sender sets its own).
pub fn arq(a: Arq<'_>) -> RasMessage {
    let dest_cs = a.answer_call.then(|| transport(a.call_signal));
    let destinations = (!a.destinations.is_empty()).then_some(a.destinations);
    RasMessage::admissionRequest(AdmissionRequest::new(
        RequestSeqNum(1),
        CallType::pointToPoint(()),
        None,
        epid(a.endpoint_id),
        destinations,
        dest_cs,
        None,
        a.src_info,
        Some(transport(a.call_signal)),
        BandWidth(a.bandwidth),
        CallReferenceValue(a.crv),
        None,
        None,
        ConferenceIdentifier(GloballyUniqueID(rasn::types::FixedOctetString::new(
            a.conference_id,
        ))),
        false,
        a.answer_call,
        None,
        Some(call_identifier(&a.call_id)),
        None,
        None,
        a.gatekeeper_id.map(gkid),
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
    ))
}

/// An ARJ.
pub fn arj(seq: u16, reason: AdmissionRejectReason) -> RasMessage {
    RasMessage::admissionReject(AdmissionReject::new(
        RequestSeqNum(seq),
        reason,
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
    ))
}

/// A DCF.
pub fn dcf(seq: u16) -> RasMessage {
    RasMessage::disengageConfirm(DisengageConfirm::new(
        RequestSeqNum(seq),
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
    ))
}

/// A DRJ.
pub fn drj(seq: u16, reason: DisengageRejectReason) -> RasMessage {
    RasMessage::disengageReject(DisengageReject::new(
        RequestSeqNum(seq),
        reason,
        None,
        None,
        None,
        None,
        None,
        None,
    ))
}

/// An LCF naming the proxy's addresses.
pub fn lcf(seq: u16, call_signal: SocketAddr, ras: SocketAddr) -> RasMessage {
    RasMessage::locationConfirm(LocationConfirm::new(
        RequestSeqNum(seq),
        transport(call_signal),
        transport(ras),
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
        None,
        None,
        None,
    ))
}

/// An LRJ.
pub fn lrj(seq: u16, reason: LocationRejectReason) -> RasMessage {
    RasMessage::locationReject(LocationReject::new(
        RequestSeqNum(seq),
        reason,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
    ))
}

/// A BCF granting `bandwidth`.
pub fn bcf(seq: u16, bandwidth: u32) -> RasMessage {
    RasMessage::bandwidthConfirm(BandwidthConfirm::new(
        RequestSeqNum(seq),
        BandWidth(bandwidth),
        None,
        None,
        None,
        None,
        None,
        None,
        None,
    ))
}

/// An IACK.
pub fn iack(seq: u16) -> RasMessage {
    RasMessage::infoRequestAck(InfoRequestAck::new(
        RequestSeqNum(seq),
        None,
        None,
        None,
        None,
    ))
}

/// The answer to a message the proxy does not serve.
pub fn unknown_message_response(seq: u16) -> RasMessage {
    RasMessage::unknownMessageResponse(UnknownMessageResponse::new(
        RequestSeqNum(seq),
        None,
        None,
        None,
        None,
    ))
}

/// One active call in an IRR's perCallInfo.
#[derive(Clone, Debug)]
pub struct CallInfo {
    /// Call reference value.
    pub crv: u16,
    /// conferenceID.
    pub conference_id: [u8; 16],
    /// callIdentifier.
    pub call_id: [u8; 16],
    /// The reporting endpoint placed the call.
    pub originator: bool,
    /// Where its call signalling is received.
    pub call_signal: SocketAddr,
    /// Bandwidth, 100 bit/s units.
    pub bandwidth: u32,
}

/// An IRR: the answer to an IRQ about the proxy itself (no `calls`,
/// solicited), or an endpoint's unsolicited report of its active calls.
#[derive(Clone, Debug)]
pub struct Irr<'a> {
    /// requestSeqNum (1 for an unsolicited one: the sender sets its own).
    pub seq: u16,
    /// Node type.
    pub node: Node,
    /// endpointIdentifier at the gatekeeper.
    pub endpoint_id: &'a str,
    /// RAS address.
    pub ras: SocketAddr,
    /// Call signalling address.
    pub call_signal: SocketAddr,
    /// endpointAlias.
    pub aliases: Vec<AliasAddress>,
    /// perCallInfo; `Some` makes the IRR unsolicited and asks for an answer.
    pub calls: Option<Vec<CallInfo>>,
}

/// The IRR `r`.
pub fn irr(r: Irr<'_>) -> RasMessage {
    let report = r.calls.is_some();
    let calls = r.calls.map(|calls| {
        InfoRequestResponsePerCallInfo(
            calls
                .into_iter()
                .map(|c| {
                    AnonymousInfoRequestResponsePerCallInfo::new(
                        None,
                        CallReferenceValue(c.crv),
                        ConferenceIdentifier(GloballyUniqueID(rasn::types::FixedOctetString::new(
                            c.conference_id,
                        ))),
                        Some(c.originator),
                        None,
                        None,
                        None,
                        TransportChannelInfo::new(None, None),
                        TransportChannelInfo::new(None, Some(transport(c.call_signal))),
                        CallType::pointToPoint(()),
                        BandWidth(c.bandwidth),
                        CallModel::direct(()),
                        Some(call_identifier(&c.call_id)),
                        None,
                        None,
                        None,
                        None,
                        None,
                        None,
                        None,
                    )
                })
                .collect::<SequenceOf<_>>(),
        )
    });
    RasMessage::infoRequestResponse(InfoRequestResponse::new(
        None,
        RequestSeqNum(r.seq),
        endpoint_type(r.node),
        epid(r.endpoint_id),
        transport(r.ras),
        vec![transport(r.call_signal)],
        (report || !r.aliases.is_empty()).then_some(r.aliases),
        calls,
        None,
        None,
        None,
        report.then_some(true),
        None,
        None,
        report.then_some(true),
        None,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::h225::PROTOCOL_ID;
    use crate::h225::ras;
    use crate::h225::value::{hex, ras_from_json, transport_json};
    use serde_json::json;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// Each builder gives the bytes the JER text the proxy used to write
    /// gave: the move to typed construction changed nothing on the wire.
    #[test]
    fn builders_encode_like_the_jer_text_they_replace() {
        let (cs, ras_a) = (a("198.18.1.1:1720"), a("198.18.1.1:1719"));
        let vendor =
            json!({"vendor": {"t35CountryCode": 181, "t35Extension": 0, "manufacturerCode": 18}});
        let cases = [
            (
                build_rrq_full(),
                json!({"registrationRequest": {"requestSeqNum": 1, "protocolIdentifier": PROTOCOL_ID,
                    "discoveryComplete": false, "callSignalAddress": [transport_json(cs)],
                    "rasAddress": [transport_json(ras_a)],
                    "terminalType": {"gateway": {}, "mc": false, "undefinedNode": false},
                    "terminalAlias": [{"h323-ID": "PX"}], "gatekeeperIdentifier": "GK",
                    "endpointVendor": vendor, "timeToLive": 60, "keepAlive": false}}),
            ),
            (
                rrq(Rrq {
                    call_signal: Vec::new(),
                    ras: ras_a,
                    node: Node::Terminal,
                    aliases: Vec::new(),
                    gatekeeper_id: None,
                    ttl: 30,
                    keep_alive: Some("EP-1"),
                }),
                json!({"registrationRequest": {"requestSeqNum": 1, "protocolIdentifier": PROTOCOL_ID,
                    "discoveryComplete": false, "callSignalAddress": [],
                    "rasAddress": [transport_json(ras_a)],
                    "terminalType": {"terminal": {}, "mc": false, "undefinedNode": false},
                    "endpointVendor": vendor, "timeToLive": 30, "keepAlive": true,
                    "endpointIdentifier": "EP-1"}}),
            ),
            (
                rcf(7, cs, "PX", "EP-1", 60, Vec::new()),
                json!({"registrationConfirm": {"requestSeqNum": 7, "protocolIdentifier": PROTOCOL_ID,
                    "callSignalAddress": [transport_json(cs)], "gatekeeperIdentifier": "PX",
                    "endpointIdentifier": "EP-1", "timeToLive": 60}}),
            ),
            (
                rrj(
                    7,
                    RegistrationRejectReason::fullRegistrationRequired(()),
                    "PX",
                ),
                json!({"registrationReject": {"requestSeqNum": 7, "protocolIdentifier": PROTOCOL_ID,
                    "rejectReason": {"fullRegistrationRequired": null}, "gatekeeperIdentifier": "PX"}}),
            ),
            (
                gcf(7, "PX", ras_a),
                json!({"gatekeeperConfirm": {"requestSeqNum": 7, "protocolIdentifier": PROTOCOL_ID,
                    "gatekeeperIdentifier": "PX", "rasAddress": transport_json(ras_a)}}),
            ),
            (
                urq(cs, "EP-1", UnregRequestReason::ttlExpired(())),
                json!({"unregistrationRequest": {"requestSeqNum": 1,
                    "callSignalAddress": [transport_json(cs)], "endpointIdentifier": "EP-1",
                    "reason": {"ttlExpired": null}}}),
            ),
            (
                ucf(7),
                json!({"unregistrationConfirm": {"requestSeqNum": 7}}),
            ),
            (
                urj(7, UnregRejectReason::notCurrentlyRegistered(())),
                json!({"unregistrationReject": {"requestSeqNum": 7,
                    "rejectReason": {"notCurrentlyRegistered": null}}}),
            ),
            (
                acf(7, 640, cs),
                json!({"admissionConfirm": {"requestSeqNum": 7, "bandWidth": 640,
                    "callModel": {"direct": null}, "destCallSignalAddress": transport_json(cs)}}),
            ),
            (
                arj(7, AdmissionRejectReason::calledPartyNotRegistered(())),
                json!({"admissionReject": {"requestSeqNum": 7,
                    "rejectReason": {"calledPartyNotRegistered": null}}}),
            ),
            (dcf(7), json!({"disengageConfirm": {"requestSeqNum": 7}})),
            (
                drj(7, DisengageRejectReason::notRegistered(())),
                json!({"disengageReject": {"requestSeqNum": 7, "rejectReason": {"notRegistered": null}}}),
            ),
            (
                lcf(7, cs, ras_a),
                json!({"locationConfirm": {"requestSeqNum": 7, "callSignalAddress": transport_json(cs),
                    "rasAddress": transport_json(ras_a)}}),
            ),
            (
                lrj(7, LocationRejectReason::requestDenied(())),
                json!({"locationReject": {"requestSeqNum": 7, "rejectReason": {"requestDenied": null}}}),
            ),
            (
                bcf(7, 1280),
                json!({"bandwidthConfirm": {"requestSeqNum": 7, "bandWidth": 1280}}),
            ),
            (iack(7), json!({"infoRequestAck": {"requestSeqNum": 7}})),
            (
                unknown_message_response(7),
                json!({"unknownMessageResponse": {"requestSeqNum": 7}}),
            ),
            (
                irr(Irr {
                    seq: 7,
                    node: Node::Gateway,
                    endpoint_id: "PX-1",
                    ras: ras_a,
                    call_signal: cs,
                    aliases: Vec::new(),
                    calls: None,
                }),
                json!({"infoRequestResponse": {"requestSeqNum": 7,
                    "endpointType": {"gateway": {}, "mc": false, "undefinedNode": false},
                    "endpointIdentifier": "PX-1", "rasAddress": transport_json(ras_a),
                    "callSignalAddress": [transport_json(cs)]}}),
            ),
            (
                irr(Irr {
                    seq: 1,
                    node: Node::Terminal,
                    endpoint_id: "EP-1",
                    ras: ras_a,
                    call_signal: cs,
                    aliases: vec![AliasAddress::h323_ID(crate::h225::value::bmp("alice"))],
                    calls: Some(vec![CallInfo {
                        crv: 9,
                        conference_id: [1; 16],
                        call_id: [2; 16],
                        originator: true,
                        call_signal: cs,
                        bandwidth: 640,
                    }]),
                }),
                json!({"infoRequestResponse": {"requestSeqNum": 1,
                    "endpointType": {"terminal": {}, "mc": false, "undefinedNode": false},
                    "endpointIdentifier": "EP-1", "rasAddress": transport_json(ras_a),
                    "callSignalAddress": [transport_json(cs)], "endpointAlias": [{"h323-ID": "alice"}],
                    "perCallInfo": [{"callReferenceValue": 9, "conferenceID": hex(&[1; 16]),
                        "originator": true, "h245": {},
                        "callSignalling": {"recvAddress": transport_json(cs)},
                        "callType": {"pointToPoint": null}, "bandWidth": 640,
                        "callModel": {"direct": null}, "callIdentifier": {"guid": hex(&[2; 16])}}],
                    "needResponse": true, "unsolicited": true}}),
            ),
        ];
        for (built, text) in cases {
            let want = ras::encode(&ras_from_json(&text).unwrap()).unwrap();
            assert_eq!(ras::encode(&built).unwrap(), want, "{text}");
        }
    }

    fn build_rrq_full() -> RasMessage {
        rrq(Rrq {
            call_signal: vec![a("198.18.1.1:1720")],
            ras: a("198.18.1.1:1719"),
            node: Node::Gateway,
            aliases: vec![AliasAddress::h323_ID(crate::h225::value::bmp("PX"))],
            gatekeeper_id: Some("GK"),
            ttl: 60,
            keep_alive: None,
        })
    }
}
