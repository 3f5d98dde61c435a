//! The HSRP version 1 message (RFC 2281 section 5): 20 octets in a UDP
//! datagram to 224.0.0.2 port 1985, IP TTL 1.

use std::net::Ipv4Addr;

/// UDP port of HSRP.
pub const PORT: u16 = 1985;
/// The all-routers group every HSRP message goes to.
pub const ALL_ROUTERS: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 2);
/// Length of a version 1 message.
pub const LEN: usize = 20;
/// The default authentication data: "cisco" padded with zeros.
pub const DEFAULT_AUTH: [u8; 8] = *b"cisco\0\0\0";

/// The virtual MAC of group `group`: 0000.0c07.acXX.
pub fn virtual_mac(group: u8) -> [u8; 6] {
    [0x00, 0x00, 0x0c, 0x07, 0xac, group]
}

/// Op Code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpCode {
    /// "I am here, and may be or wish to be active or standby."
    Hello,
    /// "I wish to become the active router."
    Coup,
    /// "I no longer wish to be the active router."
    Resign,
}

/// The state field: the sender's state (RFC 2281 section 5, values 0 to
/// 16; this is also the state of the local machine).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum State {
    /// HSRP is not running.
    Initial,
    /// No virtual IP address yet, no Hello from the active router yet.
    Learn,
    /// Knows the virtual IP address; neither active nor standby.
    Listen,
    /// Sends Hellos and takes part in the election.
    Speak,
    /// The candidate to become active next.
    Standby,
    /// Forwards what is sent to the virtual MAC; answers for the virtual IP.
    Active,
}

impl State {
    /// The wire value.
    pub fn value(self) -> u8 {
        match self {
            State::Initial => 0,
            State::Learn => 1,
            State::Listen => 2,
            State::Speak => 4,
            State::Standby => 8,
            State::Active => 16,
        }
    }

    fn from_value(v: u8) -> Option<State> {
        Some(match v {
            0 => State::Initial,
            1 => State::Learn,
            2 => State::Listen,
            4 => State::Speak,
            8 => State::Standby,
            16 => State::Active,
            _ => return None,
        })
    }

    /// Lower-case name, for logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            State::Initial => "initial",
            State::Learn => "learn",
            State::Listen => "listen",
            State::Speak => "speak",
            State::Standby => "standby",
            State::Active => "active",
        }
    }
}

/// One HSRP version 1 message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Message {
    /// What it says.
    pub op: OpCode,
    /// The sender's state.
    pub state: State,
    /// Seconds between the sender's Hellos (meaningful from the active
    /// router, whose value the others learn).
    pub hellotime: u8,
    /// Seconds the sender's Hello stays valid.
    pub holdtime: u8,
    /// The sender's priority (higher wins; ties go to the higher IP).
    pub priority: u8,
    /// Standby group.
    pub group: u8,
    /// Cleartext authentication data (not a security measure: anyone on
    /// the link reads it).
    pub auth: [u8; 8],
    /// The group's virtual IP address (0.0.0.0 when the sender has none
    /// configured and has not learned one).
    pub virtual_ip: Ipv4Addr,
}

/// Why a datagram is not an HSRP version 1 message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HsrpError {
    /// Shorter than 20 octets.
    #[error("HSRP message of {0} octets (20 expected)")]
    Short(usize),
    /// Version other than 0 (HSRP version 1 puts 0 here).
    #[error("HSRP version field {0} (0 expected: version 1)")]
    Version(u8),
    /// Op Code other than 0, 1, 2 (3, the advertisement, is not version 1's).
    #[error("HSRP op code {0} (0 hello, 1 coup or 2 resign expected)")]
    OpCode(u8),
    /// State value not in the RFC's list.
    #[error("HSRP state field {0} (0, 1, 2, 4, 8 or 16 expected)")]
    State(u8),
}

impl Message {
    /// Decode a datagram's payload (octets past the 20th are ignored, as
    /// the RFC's receivers do).
    pub fn decode(b: &[u8]) -> Result<Message, HsrpError> {
        if b.len() < LEN {
            return Err(HsrpError::Short(b.len()));
        }
        if b[0] != 0 {
            return Err(HsrpError::Version(b[0]));
        }
        let op = match b[1] {
            0 => OpCode::Hello,
            1 => OpCode::Coup,
            2 => OpCode::Resign,
            v => return Err(HsrpError::OpCode(v)),
        };
        let state = State::from_value(b[2]).ok_or(HsrpError::State(b[2]))?;
        let mut auth = [0u8; 8];
        auth.copy_from_slice(&b[8..16]);
        Ok(Message {
            op,
            state,
            hellotime: b[3],
            holdtime: b[4],
            priority: b[5],
            group: b[6],
            auth,
            virtual_ip: Ipv4Addr::new(b[16], b[17], b[18], b[19]),
        })
    }

    /// The 20 octets on the wire.
    pub fn encode(&self) -> [u8; LEN] {
        let mut b = [0u8; LEN];
        b[1] = match self.op {
            OpCode::Hello => 0,
            OpCode::Coup => 1,
            OpCode::Resign => 2,
        };
        b[2] = self.state.value();
        b[3] = self.hellotime;
        b[4] = self.holdtime;
        b[5] = self.priority;
        b[6] = self.group;
        b[8..16].copy_from_slice(&self.auth);
        b[16..20].copy_from_slice(&self.virtual_ip.octets());
        b
    }
}
