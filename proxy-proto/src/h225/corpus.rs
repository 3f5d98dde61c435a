//! A corpus of H.225.0 messages covering every `RasMessage` alternative and
//! every Q.931 message type H.225.0 uses, each with a matching
//! `H323-UserInformation` body.
//!
//! Values are written in JER (X.697 JSON) so a message lists only the fields
//! it sets; the codec turns them into aligned PER. The tests round-trip this
//! corpus and hand it to Wireshark; the lab sends it over the wire.

use bytes::Bytes;

use super::PerError;
use super::ras::RasMessage;
use super::uuie::H323UserInformation;
use crate::q931::{self, CallRef, Cause, Ie, Message, PartyNumber, ie, msg};

use super::PROTOCOL_ID;
/// Endpoint identifier used throughout the corpus.
pub const ENDPOINT_ID: &str = "EP-0001";
/// Call identifier GUID (hex) used in the call signalling messages.
pub const CALL_ID: &str = "00112233445566778899AABBCCDDEEFF";
/// Conference identifier GUID (hex).
pub const CONF_ID: &str = "FFEEDDCCBBAA99887766554433221100";

/// One corpus entry.
#[derive(Clone, Debug)]
pub struct Entry {
    /// Short description ("registrationRequest (lightweight keepalive)").
    pub name: String,
    /// The encoded message: a RAS datagram or a Q.931 message (TPKT payload).
    pub bytes: Bytes,
    /// RAS (UDP 1719) or call signalling (TCP 1720).
    pub kind: Kind,
}

/// Transport of an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// RAS datagram.
    Ras,
    /// Q.931 message with a User-user IE.
    Q931,
}

/// Errors building the corpus (a bug in a corpus entry, named).
#[derive(Debug, thiserror::Error)]
pub enum CorpusError {
    /// JER text that does not decode.
    #[error("corpus entry {name}: JER does not decode: {detail}")]
    Jer {
        /// Entry.
        name: String,
        /// rasn's message.
        detail: String,
    },
    /// PER encoding failed.
    #[error("corpus entry {name}: {source}")]
    Per {
        /// Entry.
        name: String,
        /// Cause.
        source: PerError,
    },
}

fn ta(last: u8, port: u16) -> String {
    format!(r#"{{"ipAddress":{{"ip":"C61200{last:02X}","port":{port}}}}}"#)
}

const EPT: &str = r#"{"terminal":{},"mc":false,"undefinedNode":false}"#;
const GW_EPT: &str = r#"{"gateway":{"protocol":[{"voice":{"supportedPrefixes":[{"prefix":{"dialledDigits":"9"}}]}}]},"mc":false,"undefinedNode":false}"#;
const VENDOR: &str = r#"{"vendor":{"t35CountryCode":181,"t35Extension":0,"manufacturerCode":18}}"#;
const NSP: &str = r#"{"nonStandardIdentifier":{"h221NonStandard":{"t35CountryCode":181,"t35Extension":0,"manufacturerCode":18}},"data":"C0FFEE"}"#;

/// RAS entries as (name, JER).
fn ras_jer() -> Vec<(String, String)> {
    let p = PROTOCOL_ID;
    let e = ENDPOINT_ID;
    let ep_ras = ta(2, 1719);
    let ep_cs = ta(2, 1720);
    let gk_ras = ta(1, 1719);
    let aliases = r#"[{"h323-ID":"alice"},{"dialledDigits":"1001"}]"#;
    let conf = CONF_ID;
    let call = CALL_ID;
    let v = [
        ("gatekeeperRequest", format!(r#"{{"gatekeeperRequest":{{"requestSeqNum":1,"protocolIdentifier":"{p}","rasAddress":{ep_ras},"endpointType":{EPT},"endpointAlias":{aliases}}}}}"#)),
        ("gatekeeperConfirm", format!(r#"{{"gatekeeperConfirm":{{"requestSeqNum":1,"protocolIdentifier":"{p}","gatekeeperIdentifier":"GK-PRIMARY","rasAddress":{gk_ras},"alternateGatekeeper":[{{"rasAddress":{},"gatekeeperIdentifier":"GK-BACKUP","needToRegister":true,"priority":1}}]}}}}"#, ta(3, 1719))),
        ("gatekeeperReject", format!(r#"{{"gatekeeperReject":{{"requestSeqNum":1,"protocolIdentifier":"{p}","rejectReason":{{"resourceUnavailable":null}}}}}}"#)),
        ("registrationRequest", format!(r#"{{"registrationRequest":{{"requestSeqNum":2,"protocolIdentifier":"{p}","discoveryComplete":true,"callSignalAddress":[{ep_cs}],"rasAddress":[{ep_ras}],"terminalType":{EPT},"terminalAlias":{aliases},"gatekeeperIdentifier":"GK-PRIMARY","endpointVendor":{VENDOR},"timeToLive":60,"keepAlive":false,"willSupplyUUIEs":false}}}}"#)),
        ("registrationRequest (lightweight keepalive)", format!(r#"{{"registrationRequest":{{"requestSeqNum":3,"protocolIdentifier":"{p}","discoveryComplete":false,"callSignalAddress":[],"rasAddress":[{ep_ras}],"terminalType":{EPT},"gatekeeperIdentifier":"GK-PRIMARY","endpointVendor":{VENDOR},"timeToLive":60,"keepAlive":true,"endpointIdentifier":"{e}"}}}}"#)),
        ("registrationConfirm", format!(r#"{{"registrationConfirm":{{"requestSeqNum":2,"protocolIdentifier":"{p}","callSignalAddress":[{}],"terminalAlias":{aliases},"gatekeeperIdentifier":"GK-PRIMARY","endpointIdentifier":"{e}","timeToLive":60,"willRespondToIRR":false}}}}"#, ta(1, 1720))),
        ("registrationReject", format!(r#"{{"registrationReject":{{"requestSeqNum":3,"protocolIdentifier":"{p}","rejectReason":{{"fullRegistrationRequired":null}},"gatekeeperIdentifier":"GK-PRIMARY"}}}}"#)),
        ("unregistrationRequest", format!(r#"{{"unregistrationRequest":{{"requestSeqNum":4,"callSignalAddress":[{ep_cs}],"endpointAlias":{aliases},"endpointIdentifier":"{e}"}}}}"#)),
        ("unregistrationConfirm", r#"{"unregistrationConfirm":{"requestSeqNum":4}}"#.to_string()),
        ("unregistrationReject", r#"{"unregistrationReject":{"requestSeqNum":4,"rejectReason":{"notCurrentlyRegistered":null}}}"#.to_string()),
        ("admissionRequest", format!(r#"{{"admissionRequest":{{"requestSeqNum":5,"callType":{{"pointToPoint":null}},"callModel":{{"direct":null}},"endpointIdentifier":"{e}","destinationInfo":[{{"dialledDigits":"1002"}}],"srcInfo":{aliases},"bandWidth":1280,"callReferenceValue":4660,"conferenceID":"{conf}","activeMC":false,"answerCall":false,"callIdentifier":{{"guid":"{call}"}}}}}}"#)),
        ("admissionConfirm", format!(r#"{{"admissionConfirm":{{"requestSeqNum":5,"bandWidth":1280,"callModel":{{"direct":null}},"destCallSignalAddress":{},"irrFrequency":30}}}}"#, ta(4, 1720))),
        ("admissionReject", r#"{"admissionReject":{"requestSeqNum":5,"rejectReason":{"calledPartyNotRegistered":null}}}"#.to_string()),
        ("bandwidthRequest", format!(r#"{{"bandwidthRequest":{{"requestSeqNum":6,"endpointIdentifier":"{e}","conferenceID":"{conf}","callReferenceValue":4660,"bandWidth":640,"callIdentifier":{{"guid":"{call}"}}}}}}"#)),
        ("bandwidthConfirm", r#"{"bandwidthConfirm":{"requestSeqNum":6,"bandWidth":640}}"#.to_string()),
        ("bandwidthReject", r#"{"bandwidthReject":{"requestSeqNum":6,"rejectReason":{"insufficientResources":null},"allowedBandWidth":320}}"#.to_string()),
        ("disengageRequest", format!(r#"{{"disengageRequest":{{"requestSeqNum":7,"endpointIdentifier":"{e}","conferenceID":"{conf}","callReferenceValue":4660,"disengageReason":{{"normalDrop":null}},"callIdentifier":{{"guid":"{call}"}}}}}}"#)),
        ("disengageConfirm", r#"{"disengageConfirm":{"requestSeqNum":7}}"#.to_string()),
        ("disengageReject", r#"{"disengageReject":{"requestSeqNum":7,"rejectReason":{"notRegistered":null}}}"#.to_string()),
        ("locationRequest", format!(r#"{{"locationRequest":{{"requestSeqNum":8,"endpointIdentifier":"{e}","destinationInfo":[{{"dialledDigits":"2001"}}],"replyAddress":{ep_ras}}}}}"#)),
        ("locationConfirm", format!(r#"{{"locationConfirm":{{"requestSeqNum":8,"callSignalAddress":{},"rasAddress":{}}}}}"#, ta(5, 1720), ta(5, 1719))),
        ("locationReject", r#"{"locationReject":{"requestSeqNum":8,"rejectReason":{"requestDenied":null}}}"#.to_string()),
        ("infoRequest", format!(r#"{{"infoRequest":{{"requestSeqNum":9,"callReferenceValue":0,"replyAddress":{gk_ras}}}}}"#)),
        ("infoRequestResponse", format!(r#"{{"infoRequestResponse":{{"requestSeqNum":9,"endpointType":{EPT},"endpointIdentifier":"{e}","rasAddress":{ep_ras},"callSignalAddress":[{ep_cs}],"endpointAlias":{aliases},"needResponse":true}}}}"#)),
        ("nonStandardMessage", format!(r#"{{"nonStandardMessage":{{"requestSeqNum":10,"nonStandardData":{NSP}}}}}"#)),
        ("unknownMessageResponse", r#"{"unknownMessageResponse":{"requestSeqNum":10}}"#.to_string()),
        ("requestInProgress", r#"{"requestInProgress":{"requestSeqNum":5,"delay":2000}}"#.to_string()),
        ("resourcesAvailableIndicate", format!(r#"{{"resourcesAvailableIndicate":{{"requestSeqNum":11,"protocolIdentifier":"{p}","endpointIdentifier":"{e}","protocols":[{{"voice":{{"supportedPrefixes":[{{"prefix":{{"dialledDigits":"9"}}}}]}}}}],"almostOutOfResources":false}}}}"#)),
        ("resourcesAvailableConfirm", format!(r#"{{"resourcesAvailableConfirm":{{"requestSeqNum":11,"protocolIdentifier":"{p}"}}}}"#)),
        ("infoRequestAck", r#"{"infoRequestAck":{"requestSeqNum":9}}"#.to_string()),
        ("infoRequestNak", r#"{"infoRequestNak":{"requestSeqNum":9,"nakReason":{"notRegistered":null}}}"#.to_string()),
        ("serviceControlIndication", format!(r#"{{"serviceControlIndication":{{"requestSeqNum":12,"serviceControl":[{{"sessionId":1,"reason":{{"open":null}}}}],"endpointIdentifier":"{e}"}}}}"#)),
        ("serviceControlResponse", r#"{"serviceControlResponse":{"requestSeqNum":12}}"#.to_string()),
        ("admissionConfirmSequence", format!(r#"{{"admissionConfirmSequence":[{{"requestSeqNum":13,"bandWidth":1280,"callModel":{{"gatekeeperRouted":null}},"destCallSignalAddress":{}}}]}}"#, ta(1, 1720))),
        ("gatekeeperRequest (gateway)", format!(r#"{{"gatekeeperRequest":{{"requestSeqNum":14,"protocolIdentifier":"{p}","rasAddress":{ep_ras},"endpointType":{GW_EPT}}}}}"#)),
    ];
    v.into_iter().map(|(n, j)| (n.to_string(), j)).collect()
}

/// `H323-UserInformation` bodies per Q.931 message type, as JER.
fn uuie_jer(message_type: u8) -> String {
    let p = PROTOCOL_ID;
    let call = format!(r#""callIdentifier":{{"guid":"{CALL_ID}"}}"#);
    let conf = CONF_ID;
    let body = match message_type {
        msg::SETUP => format!(
            r#"{{"setup":{{"protocolIdentifier":"{p}","sourceAddress":[{{"h323-ID":"alice"}},{{"dialledDigits":"1001"}}],"sourceInfo":{EPT},"destinationAddress":[{{"dialledDigits":"1002"}}],"activeMC":false,"conferenceID":"{conf}","conferenceGoal":{{"create":null}},"callType":{{"pointToPoint":null}},"sourceCallSignalAddress":{},"destCallSignalAddress":{},{call},"mediaWaitForConnect":false,"canOverlapSend":false,"multipleCalls":false,"maintainConnection":true}}}}"#,
            ta(2, 1720),
            ta(1, 1720)
        ),
        msg::CALL_PROCEEDING => format!(
            r#"{{"callProceeding":{{"protocolIdentifier":"{p}","destinationInfo":{EPT},{call},"multipleCalls":false,"maintainConnection":true}}}}"#
        ),
        msg::ALERTING => format!(
            r#"{{"alerting":{{"protocolIdentifier":"{p}","destinationInfo":{EPT},{call},"multipleCalls":false,"maintainConnection":true}}}}"#
        ),
        msg::CONNECT => format!(
            r#"{{"connect":{{"protocolIdentifier":"{p}","h245Address":{},"destinationInfo":{EPT},"conferenceID":"{conf}",{call},"multipleCalls":false,"maintainConnection":true}}}}"#,
            ta(4, 40000)
        ),
        msg::RELEASE_COMPLETE => format!(
            r#"{{"releaseComplete":{{"protocolIdentifier":"{p}","reason":{{"undefinedReason":null}},{call}}}}}"#
        ),
        msg::FACILITY => format!(
            r#"{{"facility":{{"protocolIdentifier":"{p}","conferenceID":"{conf}","reason":{{"undefinedReason":null}},{call},"multipleCalls":false,"maintainConnection":true}}}}"#
        ),
        msg::PROGRESS => format!(
            r#"{{"progress":{{"protocolIdentifier":"{p}","destinationInfo":{EPT},{call},"multipleCalls":false,"maintainConnection":true}}}}"#
        ),
        msg::STATUS => format!(r#"{{"status":{{"protocolIdentifier":"{p}",{call}}}}}"#),
        msg::STATUS_ENQUIRY => {
            format!(r#"{{"statusInquiry":{{"protocolIdentifier":"{p}",{call}}}}}"#)
        }
        msg::INFORMATION => format!(r#"{{"information":{{"protocolIdentifier":"{p}",{call}}}}}"#),
        msg::NOTIFY => format!(r#"{{"notify":{{"protocolIdentifier":"{p}",{call}}}}}"#),
        msg::SETUP_ACKNOWLEDGE => {
            format!(r#"{{"setupAcknowledge":{{"protocolIdentifier":"{p}",{call}}}}}"#)
        }
        _ => r#"{"empty":null}"#.to_string(),
    };
    format!(r#"{{"h323-uu-pdu":{{"h323-message-body":{body},"h245Tunneling":false}}}}"#)
}

/// The IEs each Q.931 message carries besides User-user.
fn q931_ies(message_type: u8) -> Vec<Ie> {
    let mut v = Vec::new();
    match message_type {
        msg::SETUP => {
            v.push(Ie::new(
                ie::BEARER_CAPABILITY,
                q931::BEARER_SPEECH_ULAW.to_vec(),
            ));
            v.push(Ie::new(ie::DISPLAY, b"alice".to_vec()));
            v.push(Ie::new(
                ie::CALLING_PARTY_NUMBER,
                PartyNumber::e164("1001").encode(),
            ));
            v.push(Ie::new(
                ie::CALLED_PARTY_NUMBER,
                PartyNumber::e164("1002").encode(),
            ));
        }
        msg::ALERTING => v.push(Ie::new(ie::SIGNAL, vec![0x01])), // ringback on
        msg::PROGRESS => v.push(Ie::new(ie::PROGRESS_INDICATOR, vec![0x80, 0x88])), // in-band info
        msg::CONNECT => v.push(Ie::new(ie::DISPLAY, b"bob".to_vec())),
        msg::RELEASE_COMPLETE => v.push(Ie::new(ie::CAUSE, Cause::user(16).encode().to_vec())),
        msg::STATUS => {
            v.push(Ie::new(
                ie::CAUSE,
                Cause::user(q931::CAUSE_RESPONSE_TO_STATUS_ENQUIRY)
                    .encode()
                    .to_vec(),
            ));
            v.push(Ie::new(ie::CALL_STATE, vec![q931::call_state::ACTIVE]));
        }
        msg::INFORMATION => v.push(Ie::new(ie::KEYPAD, b"5".to_vec())),
        msg::NOTIFY => v.push(Ie::new(ie::NOTIFICATION_INDICATOR, vec![0xf1])), // user resumed
        _ => {}
    }
    v
}

/// Decode JER text into a value.
pub fn from_jer<T: rasn::Decode>(name: &str, jer: &str) -> Result<T, CorpusError> {
    rasn::jer::decode(jer).map_err(|e| CorpusError::Jer {
        name: name.to_owned(),
        detail: e.to_string(),
    })
}

/// Call reference value used in the corpus' call signalling messages.
pub const CRV: u16 = 4660;

/// Build the whole corpus.
pub fn build() -> Result<Vec<Entry>, CorpusError> {
    let mut out = Vec::new();
    for (name, jer) in ras_jer() {
        let m: RasMessage = from_jer(&name, &jer)?;
        let bytes = super::ras::encode(&m).map_err(|source| CorpusError::Per {
            name: name.clone(),
            source,
        })?;
        out.push(Entry {
            name,
            bytes: bytes.into(),
            kind: Kind::Ras,
        });
    }
    for (i, &t) in msg::H225.iter().enumerate() {
        let name = msg::name(t).to_string();
        let uu: H323UserInformation = from_jer(&name, &uuie_jer(t))?;
        let uu = super::uuie::encode(&uu).map_err(|source| CorpusError::Per {
            name: name.clone(),
            source,
        })?;
        // Replies come from the destination side of the call reference.
        let from_destination = !matches!(t, msg::SETUP | msg::INFORMATION) && i % 2 == 1;
        let mut m = Message::new(t, CallRef::new(CRV, from_destination));
        m.ies = q931_ies(t);
        m.set_user_user(&uu);
        out.push(Entry {
            name,
            bytes: m.encode(),
            kind: Kind::Q931,
        });
    }
    Ok(out)
}
