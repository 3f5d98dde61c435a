//! Q.931 as profiled by H.225.0 (the payload of each TPKT on TCP 1720).
//!
//! A message keeps every information element as it arrived (identifier and
//! raw contents, in order), so a relayed message re-encodes byte-identically
//! whatever IEs it carries; typed views ([`Cause`], [`PartyNumber`], ...)
//! parse the IEs the proxy needs on demand.

use bytes::{BufMut, Bytes, BytesMut};

/// Protocol discriminator of Q.931 / H.225.0.
pub const PROTOCOL_DISCRIMINATOR: u8 = 0x08;

/// Q.931 message types used by H.225.0.
pub mod msg {
    /// ALERTING.
    pub const ALERTING: u8 = 0x01;
    /// CALL PROCEEDING.
    pub const CALL_PROCEEDING: u8 = 0x02;
    /// PROGRESS.
    pub const PROGRESS: u8 = 0x03;
    /// SETUP.
    pub const SETUP: u8 = 0x05;
    /// CONNECT.
    pub const CONNECT: u8 = 0x07;
    /// SETUP ACKNOWLEDGE.
    pub const SETUP_ACKNOWLEDGE: u8 = 0x0d;
    /// CONNECT ACKNOWLEDGE (not used by H.225.0, named for decoding).
    pub const CONNECT_ACKNOWLEDGE: u8 = 0x0f;
    /// RELEASE COMPLETE.
    pub const RELEASE_COMPLETE: u8 = 0x5a;
    /// FACILITY.
    pub const FACILITY: u8 = 0x62;
    /// NOTIFY.
    pub const NOTIFY: u8 = 0x6e;
    /// STATUS ENQUIRY.
    pub const STATUS_ENQUIRY: u8 = 0x75;
    /// INFORMATION.
    pub const INFORMATION: u8 = 0x7b;
    /// STATUS.
    pub const STATUS: u8 = 0x7d;

    /// Every message type H.225.0 uses.
    pub const H225: [u8; 12] = [
        SETUP,
        CALL_PROCEEDING,
        ALERTING,
        CONNECT,
        RELEASE_COMPLETE,
        FACILITY,
        PROGRESS,
        STATUS,
        STATUS_ENQUIRY,
        INFORMATION,
        NOTIFY,
        SETUP_ACKNOWLEDGE,
    ];

    /// Name as Wireshark prints it.
    pub fn name(t: u8) -> &'static str {
        match t {
            ALERTING => "ALERTING",
            CALL_PROCEEDING => "CALL PROCEEDING",
            PROGRESS => "PROGRESS",
            SETUP => "SETUP",
            CONNECT => "CONNECT",
            SETUP_ACKNOWLEDGE => "SETUP ACKNOWLEDGE",
            CONNECT_ACKNOWLEDGE => "CONNECT ACKNOWLEDGE",
            RELEASE_COMPLETE => "RELEASE COMPLETE",
            FACILITY => "FACILITY",
            NOTIFY => "NOTIFY",
            STATUS_ENQUIRY => "STATUS ENQUIRY",
            INFORMATION => "INFORMATION",
            STATUS => "STATUS",
            _ => "unknown",
        }
    }
}

/// Information element identifiers used by H.225.0.
pub mod ie {
    /// Bearer capability.
    pub const BEARER_CAPABILITY: u8 = 0x04;
    /// Cause.
    pub const CAUSE: u8 = 0x08;
    /// Call state.
    pub const CALL_STATE: u8 = 0x14;
    /// Facility.
    pub const FACILITY: u8 = 0x1c;
    /// Progress indicator.
    pub const PROGRESS_INDICATOR: u8 = 0x1e;
    /// Notification indicator.
    pub const NOTIFICATION_INDICATOR: u8 = 0x27;
    /// Display.
    pub const DISPLAY: u8 = 0x28;
    /// Keypad facility.
    pub const KEYPAD: u8 = 0x2c;
    /// Signal.
    pub const SIGNAL: u8 = 0x34;
    /// Calling party number.
    pub const CALLING_PARTY_NUMBER: u8 = 0x6c;
    /// Called party number.
    pub const CALLED_PARTY_NUMBER: u8 = 0x70;
    /// User-user: carries the H.225.0 `H323-UserInformation`. H.225.0 gives
    /// it a two-octet length.
    pub const USER_USER: u8 = 0x7e;
}

/// Protocol discriminator of the User-user IE contents: X.208/X.209 coded
/// user information (H.225.0 7.2.2.21).
pub const UUIE_PROTOCOL_DISCRIMINATOR: u8 = 0x05;

/// Q.931 parse errors; each names what was being read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Q931Error {
    /// The message ends inside a field.
    #[error("Q.931 message truncated in {0}")]
    Truncated(&'static str),
    /// Not a Q.931 message.
    #[error("protocol discriminator 0x{0:02x} is not Q.931 (0x08)")]
    BadDiscriminator(u8),
    /// Call reference longer than H.225.0 allows (we accept up to 2 octets, the
    /// H.225.0 size, and the dummy 0-length reference).
    #[error("call reference length {0} (H.225.0 uses 2)")]
    BadCallRefLength(u8),
    /// Message type octet with bit 8 set (a message-type escape).
    #[error("message type 0x{0:02x} is not a single-octet message type")]
    BadMessageType(u8),
    /// An IE's length runs past the end of the message.
    #[error("IE 0x{id:02x} length {len} overruns the message ({left} bytes left)")]
    IeOverrun {
        /// IE identifier.
        id: u8,
        /// Declared length.
        len: usize,
        /// Bytes actually left.
        left: usize,
    },
    /// A typed view found bad contents.
    #[error("IE 0x{id:02x}: {reason}")]
    BadIe {
        /// IE identifier.
        id: u8,
        /// What is wrong.
        reason: &'static str,
    },
}

/// Call reference: value and the flag that says which side allocated it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CallRef {
    /// Length in octets (0 for the dummy reference, else 1 or 2).
    pub len: u8,
    /// The value without the flag bit.
    pub value: u16,
    /// Flag: set in messages sent by the side that did not allocate the
    /// reference (the destination).
    pub from_destination: bool,
}

impl CallRef {
    /// A two-octet call reference (the H.225.0 size).
    pub fn new(value: u16, from_destination: bool) -> Self {
        Self {
            len: 2,
            value: value & 0x7fff,
            from_destination,
        }
    }
}

/// One information element as it was on the wire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ie {
    /// Single-octet IE (bit 8 set): shift, more data, sending complete...
    Single(u8),
    /// Variable-length IE.
    Variable {
        /// Identifier.
        id: u8,
        /// Contents after the length.
        data: Bytes,
    },
}

impl Ie {
    /// Variable IE with `data`.
    pub fn new(id: u8, data: impl Into<Bytes>) -> Self {
        Ie::Variable {
            id,
            data: data.into(),
        }
    }

    /// The identifier.
    pub fn id(&self) -> u8 {
        match self {
            Ie::Single(b) => *b,
            Ie::Variable { id, .. } => *id,
        }
    }
}

/// A Q.931 message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// Call reference.
    pub call_ref: CallRef,
    /// Message type (see [`msg`]).
    pub message_type: u8,
    /// Information elements in wire order.
    pub ies: Vec<Ie>,
}

impl Message {
    /// A message with no IEs.
    pub fn new(message_type: u8, call_ref: CallRef) -> Self {
        Self {
            call_ref,
            message_type,
            ies: Vec::new(),
        }
    }

    /// Parse one message (the whole TPKT payload).
    pub fn decode(b: &[u8]) -> Result<Self, Q931Error> {
        let pd = *b
            .first()
            .ok_or(Q931Error::Truncated("protocol discriminator"))?;
        if pd != PROTOCOL_DISCRIMINATOR {
            return Err(Q931Error::BadDiscriminator(pd));
        }
        let crl = *b
            .get(1)
            .ok_or(Q931Error::Truncated("call reference length"))?
            & 0x0f;
        if crl > 2 {
            return Err(Q931Error::BadCallRefLength(crl));
        }
        let cr = b
            .get(2..2 + crl as usize)
            .ok_or(Q931Error::Truncated("call reference"))?;
        let (value, from_destination) = match cr {
            [] => (0, false),
            [a] => ((a & 0x7f) as u16, a & 0x80 != 0),
            [a, c] => (u16::from_be_bytes([a & 0x7f, *c]), a & 0x80 != 0),
            _ => unreachable!("length checked above"),
        };
        let mut pos = 2 + crl as usize;
        let message_type = *b.get(pos).ok_or(Q931Error::Truncated("message type"))?;
        if message_type & 0x80 != 0 {
            return Err(Q931Error::BadMessageType(message_type));
        }
        pos += 1;
        let mut ies = Vec::new();
        while pos < b.len() {
            let id = b[pos];
            pos += 1;
            if id & 0x80 != 0 {
                ies.push(Ie::Single(id));
                continue;
            }
            let len = if id == ie::USER_USER {
                let l = b
                    .get(pos..pos + 2)
                    .ok_or(Q931Error::Truncated("User-user length"))?;
                pos += 2;
                u16::from_be_bytes([l[0], l[1]]) as usize
            } else {
                let l = *b.get(pos).ok_or(Q931Error::Truncated("IE length"))?;
                pos += 1;
                l as usize
            };
            let data = b.get(pos..pos + len).ok_or(Q931Error::IeOverrun {
                id,
                len,
                left: b.len() - pos,
            })?;
            pos += len;
            ies.push(Ie::Variable {
                id,
                data: Bytes::copy_from_slice(data),
            });
        }
        Ok(Self {
            call_ref: CallRef {
                len: crl,
                value,
                from_destination,
            },
            message_type,
            ies,
        })
    }

    /// Encode into `dst`.
    pub fn encode_into(&self, dst: &mut BytesMut) {
        dst.put_u8(PROTOCOL_DISCRIMINATOR);
        let cr = self.call_ref;
        dst.put_u8(cr.len);
        let flag = if cr.from_destination { 0x80 } else { 0 };
        match cr.len {
            0 => {}
            1 => dst.put_u8(flag | (cr.value as u8 & 0x7f)),
            _ => {
                let [hi, lo] = cr.value.to_be_bytes();
                dst.put_u8(flag | (hi & 0x7f));
                dst.put_u8(lo);
            }
        }
        dst.put_u8(self.message_type);
        for e in &self.ies {
            match e {
                Ie::Single(b) => dst.put_u8(*b),
                Ie::Variable { id, data } => {
                    dst.put_u8(*id);
                    // Contents beyond what the length field can say are cut
                    // so the output always parses; decode never produces them.
                    let n = if *id == ie::USER_USER {
                        let n = data.len().min(u16::MAX as usize);
                        dst.put_u16(n as u16);
                        n
                    } else {
                        let n = data.len().min(u8::MAX as usize);
                        dst.put_u8(n as u8);
                        n
                    };
                    dst.put_slice(&data[..n]);
                }
            }
        }
    }

    /// Encode to a new buffer.
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(64);
        self.encode_into(&mut b);
        b.freeze()
    }

    /// Contents of the first IE with `id`.
    pub fn ie(&self, id: u8) -> Option<&Bytes> {
        self.ies.iter().find_map(|e| match e {
            Ie::Variable { id: i, data } if *i == id => Some(data),
            _ => None,
        })
    }

    /// Replace the first IE with `id` (keeping its position) or append it.
    pub fn set_ie(&mut self, id: u8, data: impl Into<Bytes>) {
        let data = data.into();
        match self.ies.iter_mut().find(|e| e.id() == id) {
            Some(e) => *e = Ie::Variable { id, data },
            None => self.ies.push(Ie::Variable { id, data }),
        }
    }

    /// The encoded `H323-UserInformation` from the User-user IE.
    pub fn user_user(&self) -> Option<Result<&[u8], Q931Error>> {
        self.ie(ie::USER_USER).map(|d| match d.split_first() {
            Some((&UUIE_PROTOCOL_DISCRIMINATOR, rest)) => Ok(rest),
            Some(_) => Err(Q931Error::BadIe {
                id: ie::USER_USER,
                reason: "protocol discriminator is not 0x05 (X.208/X.209 coded)",
            }),
            None => Err(Q931Error::BadIe {
                id: ie::USER_USER,
                reason: "empty",
            }),
        })
    }

    /// Set the User-user IE to carry `uuie` (encoded `H323-UserInformation`).
    pub fn set_user_user(&mut self, uuie: &[u8]) {
        let mut d = Vec::with_capacity(uuie.len() + 1);
        d.push(UUIE_PROTOCOL_DISCRIMINATOR);
        d.extend_from_slice(uuie);
        self.set_ie(ie::USER_USER, d);
    }

    /// The Cause IE, parsed.
    pub fn cause(&self) -> Option<Result<Cause, Q931Error>> {
        self.ie(ie::CAUSE).map(|d| Cause::parse(d))
    }
}

/// Cause IE (Q.850): location and cause value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cause {
    /// Coding standard (0: ITU-T).
    pub coding: u8,
    /// Location (0: user, 1: private network serving the local user, ...).
    pub location: u8,
    /// Cause value (16 normal clearing, 30 response to STATUS ENQUIRY, ...).
    pub value: u8,
}

impl Cause {
    /// ITU-T coded cause from the user.
    pub fn user(value: u8) -> Self {
        Self {
            coding: 0,
            location: 0,
            value,
        }
    }

    /// Parse the contents of a Cause IE.
    pub fn parse(d: &[u8]) -> Result<Self, Q931Error> {
        let bad = |reason| Q931Error::BadIe {
            id: ie::CAUSE,
            reason,
        };
        let o3 = *d.first().ok_or(bad("empty"))?;
        // Octet 3a (recommendation) is present when octet 3 has bit 8 clear.
        let vi = if o3 & 0x80 == 0 { 2 } else { 1 };
        let v = *d.get(vi).ok_or(bad("no cause value octet"))?;
        Ok(Self {
            coding: (o3 >> 5) & 0x03,
            location: o3 & 0x0f,
            value: v & 0x7f,
        })
    }

    /// Encode the contents (octet 3 with extension bit, octet 4).
    pub fn encode(&self) -> [u8; 2] {
        [
            0x80 | ((self.coding & 3) << 5) | (self.location & 0x0f),
            0x80 | (self.value & 0x7f),
        ]
    }
}

/// Calling or Called party number IE.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartyNumber {
    /// Type of number (0 unknown, 1 international, 2 national, ...).
    pub type_of_number: u8,
    /// Numbering plan (1: E.164).
    pub plan: u8,
    /// The digits (IA5).
    pub digits: String,
}

impl PartyNumber {
    /// An E.164 number of unknown type.
    pub fn e164(digits: &str) -> Self {
        Self {
            type_of_number: 0,
            plan: 1,
            digits: digits.to_owned(),
        }
    }

    /// Parse a Calling (octet 3a optional) or Called party number IE.
    pub fn parse(id: u8, d: &[u8]) -> Result<Self, Q931Error> {
        let o3 = *d.first().ok_or(Q931Error::BadIe {
            id,
            reason: "empty",
        })?;
        let start = if o3 & 0x80 == 0 { 2 } else { 1 };
        let digits = d.get(start..).unwrap_or_default();
        if !digits.iter().all(|c| c.is_ascii_graphic()) {
            return Err(Q931Error::BadIe {
                id,
                reason: "number digits are not IA5",
            });
        }
        Ok(Self {
            type_of_number: (o3 >> 4) & 0x07,
            plan: o3 & 0x0f,
            digits: String::from_utf8_lossy(digits).into_owned(),
        })
    }

    /// Encode the contents (single octet 3, no presentation octet).
    pub fn encode(&self) -> Vec<u8> {
        let mut v = vec![0x80 | ((self.type_of_number & 7) << 4) | (self.plan & 0x0f)];
        v.extend_from_slice(self.digits.as_bytes());
        v
    }
}

/// Bearer capability for speech, G.711 µ-law (H.225.0's usual value).
pub const BEARER_SPEECH_ULAW: [u8; 3] = [0x80, 0x90, 0xa2];
/// Bearer capability for unrestricted digital information at 64 kbit/s
/// multirate (what many H.323 stacks send).
pub const BEARER_UDI: [u8; 3] = [0x88, 0x90, 0xa5];

/// Call state values of the Call state IE (Q.931 4.5.7) the proxy reports.
pub mod call_state {
    /// U0 Null.
    pub const NULL: u8 = 0;
    /// U1 Call initiated.
    pub const CALL_INITIATED: u8 = 1;
    /// U3 Outgoing call proceeding.
    pub const OUTGOING_CALL_PROCEEDING: u8 = 3;
    /// U4 Call delivered.
    pub const CALL_DELIVERED: u8 = 4;
    /// U6 Call present.
    pub const CALL_PRESENT: u8 = 6;
    /// U7 Call received.
    pub const CALL_RECEIVED: u8 = 7;
    /// U9 Incoming call proceeding.
    pub const INCOMING_CALL_PROCEEDING: u8 = 9;
    /// U10 Active.
    pub const ACTIVE: u8 = 10;
}

/// Q.850 cause 30: response to STATUS ENQUIRY.
pub const CAUSE_RESPONSE_TO_STATUS_ENQUIRY: u8 = 30;

/// The STATUS answering a STATUS ENQUIRY on `call_ref`, reporting `state`
/// (Q.931 5.8.10: cause 30 and the call state).
pub fn status_response(enquiry_ref: CallRef, state: u8) -> Message {
    let mut m = Message::new(
        msg::STATUS,
        CallRef {
            from_destination: !enquiry_ref.from_destination,
            ..enquiry_ref
        },
    );
    m.ies.push(Ie::new(
        ie::CAUSE,
        Cause::user(CAUSE_RESPONSE_TO_STATUS_ENQUIRY)
            .encode()
            .to_vec(),
    ));
    m.ies.push(Ie::new(ie::CALL_STATE, vec![state & 0x3f]));
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Message {
        let mut m = Message::new(msg::SETUP, CallRef::new(0x1234, false));
        m.ies
            .push(Ie::new(ie::BEARER_CAPABILITY, BEARER_SPEECH_ULAW.to_vec()));
        m.ies.push(Ie::Single(0xa1)); // sending complete
        m.ies.push(Ie::new(ie::DISPLAY, b"alice".to_vec()));
        m.ies.push(Ie::new(
            ie::CALLING_PARTY_NUMBER,
            PartyNumber::e164("1001").encode(),
        ));
        m.ies.push(Ie::new(
            ie::CALLED_PARTY_NUMBER,
            PartyNumber::e164("1002").encode(),
        ));
        m.ies.push(Ie::new(0x7f, b"\x01\x02".to_vec())); // unknown IE kept
        m.set_user_user(&[0x20, 0x80, 0x06, 0x00]);
        m
    }

    #[test]
    fn round_trip_keeps_every_ie_in_order() {
        let m = sample();
        let bytes = m.encode();
        let back = Message::decode(&bytes).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.encode(), bytes);
        assert_eq!(back.call_ref.value, 0x1234);
        assert_eq!(
            PartyNumber::parse(
                ie::CALLED_PARTY_NUMBER,
                back.ie(ie::CALLED_PARTY_NUMBER).unwrap()
            )
            .unwrap()
            .digits,
            "1002"
        );
        assert_eq!(
            back.user_user().unwrap().unwrap(),
            &[0x20, 0x80, 0x06, 0x00]
        );
    }

    #[test]
    fn user_user_has_two_octet_length() {
        let mut m = Message::new(msg::FACILITY, CallRef::new(1, true));
        m.set_user_user(&[0u8; 300]);
        let b = m.encode();
        // pd, crl, cr(2), type, 0x7e, len hi, len lo
        assert_eq!(&b[5..8], &[0x7e, 0x01, 0x2d]);
        assert_eq!(Message::decode(&b).unwrap(), m);
    }

    #[test]
    fn status_answers_status_enquiry() {
        let enq = Message::new(msg::STATUS_ENQUIRY, CallRef::new(7, false));
        let st = status_response(enq.call_ref, call_state::ACTIVE);
        assert!(st.call_ref.from_destination);
        assert_eq!(st.cause().unwrap().unwrap().value, 30);
        assert_eq!(st.ie(ie::CALL_STATE).unwrap().as_ref(), &[10]);
    }

    #[test]
    fn errors_name_the_problem() {
        assert_eq!(
            Message::decode(&[]),
            Err(Q931Error::Truncated("protocol discriminator"))
        );
        assert_eq!(
            Message::decode(&[0x09, 0]),
            Err(Q931Error::BadDiscriminator(9))
        );
        assert_eq!(
            Message::decode(&[8, 3, 0, 0, 0, 5]),
            Err(Q931Error::BadCallRefLength(3))
        );
        assert!(matches!(
            Message::decode(&[8, 2, 0, 1, 5, 0x28, 9, b'a']),
            Err(Q931Error::IeOverrun {
                id: 0x28,
                len: 9,
                left: 1
            })
        ));
        assert_eq!(
            Message::decode(&[8, 2, 0, 1, 5, 0x7e, 0]),
            Err(Q931Error::Truncated("User-user length"))
        );
    }
}
