//! H.225.0 RAS (UDP 1719): the `RasMessage` CHOICE.

use super::PerError;
pub use super::asn::h323_messages::RasMessage;

/// ASN.1 names of the `RasMessage` alternatives in choice-index order (root,
/// then extensions), as the XDP classifier counts them.
pub const CHOICE_NAMES: [&str; 33] = [
    "gatekeeperRequest",
    "gatekeeperConfirm",
    "gatekeeperReject",
    "registrationRequest",
    "registrationConfirm",
    "registrationReject",
    "unregistrationRequest",
    "unregistrationConfirm",
    "unregistrationReject",
    "admissionRequest",
    "admissionConfirm",
    "admissionReject",
    "bandwidthRequest",
    "bandwidthConfirm",
    "bandwidthReject",
    "disengageRequest",
    "disengageConfirm",
    "disengageReject",
    "locationRequest",
    "locationConfirm",
    "locationReject",
    "infoRequest",
    "infoRequestResponse",
    "nonStandardMessage",
    "unknownMessageResponse",
    "requestInProgress",
    "resourcesAvailableIndicate",
    "resourcesAvailableConfirm",
    "infoRequestAck",
    "infoRequestNak",
    "serviceControlIndication",
    "serviceControlResponse",
    "admissionConfirmSequence",
];

/// Decode a RAS datagram.
pub fn decode(bytes: &[u8]) -> Result<RasMessage, PerError> {
    super::decode_whole("RasMessage", bytes)
}

/// Encode a RAS message.
pub fn encode(msg: &RasMessage) -> Result<Vec<u8>, PerError> {
    super::encode("RasMessage", msg)
}
