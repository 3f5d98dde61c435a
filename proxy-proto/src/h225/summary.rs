//! Key fields of a decoded H.225.0 message, for `proxy decode`, logs and the
//! Wireshark agreement test. Built from the JER (X.697 JSON) form of the
//! message so one walk covers every alternative; this is for tooling, not
//! for the signalling hot path.

use serde::Serialize;
use serde_json::Value;

/// Fields operators look at first.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Alternative name (`registrationRequest`, `setup`, ...).
    pub message: String,
    /// RAS requestSeqNum.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_seq_num: Option<u64>,
    /// endpointIdentifier.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint_identifier: Option<String>,
    /// gatekeeperIdentifier.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gatekeeper_identifier: Option<String>,
    /// Aliases of any alias list in the message, as `type:value`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// keepAlive of an RRQ.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_alive: Option<bool>,
    /// callIdentifier GUID, hex.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call_identifier: Option<String>,
    /// rejectReason / reason alternative.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

const ALIAS_LISTS: [&str; 7] = [
    "terminalAlias",
    "endpointAlias",
    "srcInfo",
    "destinationInfo",
    "sourceAddress",
    "destinationAddress",
    "destExtraCallInfo",
];

/// The single key of a JER CHOICE object.
fn choice(v: &Value) -> Option<(&str, &Value)> {
    let o = v.as_object()?;
    if o.len() != 1 {
        return None;
    }
    o.iter().next().map(|(k, v)| (k.as_str(), v))
}

/// Summarise a message body object (`{"registrationRequest": {...}}`).
pub fn from_choice(v: &Value) -> Summary {
    let Some((name, body)) = choice(v) else {
        return Summary::default();
    };
    let mut s = Summary {
        message: name.to_owned(),
        ..Default::default()
    };
    // admissionConfirmSequence is a SEQUENCE OF: summarise the first.
    let body = body.as_array().and_then(|a| a.first()).unwrap_or(body);
    let Some(o) = body.as_object() else {
        return s;
    };
    s.request_seq_num = o.get("requestSeqNum").and_then(Value::as_u64);
    s.endpoint_identifier = o
        .get("endpointIdentifier")
        .and_then(Value::as_str)
        .map(str::to_owned);
    s.gatekeeper_identifier = o
        .get("gatekeeperIdentifier")
        .and_then(Value::as_str)
        .map(str::to_owned);
    s.keep_alive = o.get("keepAlive").and_then(Value::as_bool);
    s.call_identifier = o
        .get("callIdentifier")
        .and_then(|c| c.get("guid"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    s.reason = ["rejectReason", "reason", "disengageReason", "nakReason"]
        .iter()
        .find_map(|k| o.get(*k).and_then(choice).map(|(n, _)| n.to_owned()));
    for list in ALIAS_LISTS {
        for a in o.get(list).and_then(Value::as_array).into_iter().flatten() {
            if let Some((kind, val)) = choice(a) {
                let val = match val {
                    Value::String(x) => x.clone(),
                    other => other.to_string(),
                };
                s.aliases.push(format!("{kind}:{val}"));
            }
        }
    }
    s
}

/// Summarise a RAS message.
pub fn ras(m: &super::ras::RasMessage) -> (Summary, Value) {
    let v = to_json(m);
    (from_choice(&v), v)
}

/// Summarise an `H323-UserInformation` (its `h323-message-body`).
pub fn uuie(m: &super::uuie::H323UserInformation) -> (Summary, Value) {
    let v = to_json(m);
    let body = v
        .get("h323-uu-pdu")
        .and_then(|p| p.get("h323-message-body"))
        .cloned()
        .unwrap_or(Value::Null);
    (from_choice(&body), v)
}

/// The JER form of a value (or a JSON string with the encoder's complaint).
pub fn to_json<T: rasn::Encode>(m: &T) -> Value {
    match rasn::jer::encode(m) {
        Ok(text) => serde_json::from_str(&text).unwrap_or(Value::String(text)),
        Err(e) => Value::String(format!("JER encoding failed: {e}")),
    }
}
