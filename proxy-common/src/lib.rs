//! Types shared by the eBPF fast path (`proxy-ebpf`) and the userspace control
//! plane (`proxy-user`).
//!
//! Everything here is `#[repr(C)]`, `Copy` and free of pointers so that the
//! same bytes mean the same thing on both sides of a BPF map. `aya::Pod` is
//! implemented only with the `user` feature, so the eBPF build never links aya.
#![no_std]

/// Well-known H.225.0 RAS port (UDP).
pub const RAS_PORT: u16 = 1719;
/// Well-known H.225.0 call signalling port (TCP).
pub const CALL_SIGNALLING_PORT: u16 = 1720;

/// Number of alternatives in the root of the `RasMessage` CHOICE
/// (gatekeeperRequest .. unknownMessageResponse).
pub const RAS_ROOT_ALTERNATIVES: u32 = 25;
/// Number of extension alternatives of `RasMessage` in H.225.0 v7
/// (requestInProgress .. admissionConfirmSequence).
pub const RAS_EXTENSION_ALTERNATIVES: u32 = 8;

/// Slots of the per-CPU RAS classification array.
///
/// Slots `0..RAS_ROOT_ALTERNATIVES + RAS_EXTENSION_ALTERNATIVES` hold the
/// `RasMessage` choice index (root alternatives first, then extensions in
/// order); the slots after them count packets that could not be classified.
pub mod ras_slot {
    /// First slot after the known choice indexes: an extension alternative
    /// newer than H.225.0 v7.
    pub const UNKNOWN_EXTENSION: u32 =
        super::RAS_ROOT_ALTERNATIVES + super::RAS_EXTENSION_ALTERNATIVES;
    /// UDP datagram to or from the RAS port with an empty payload.
    pub const EMPTY: u32 = UNKNOWN_EXTENSION + 1;
    /// Extension bit set but the "normally small" index was not small
    /// (X.691 10.6: a length-prefixed index, never used by H.225.0).
    pub const MALFORMED: u32 = EMPTY + 1;
    /// Total number of slots in the map.
    pub const COUNT: u32 = MALFORMED + 1;
}

/// Per-slot counter of the RAS classification map (`RAS_CLASSIFY`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RasCounter {
    /// Packets classified into this slot.
    pub packets: u64,
    /// Bytes of UDP payload in those packets.
    pub bytes: u64,
}

#[cfg(feature = "user")]
// SAFETY: RasCounter is repr(C), Copy, has no padding (two u64) and every bit
// pattern is a valid value.
unsafe impl aya::Pod for RasCounter {}

/// Slots of the per-CPU packet outcome array (`PACKETS`): every packet the
/// XDP program sees lands in exactly one.
pub mod packet_slot {
    /// UDP to or from the RAS port: classified in `RAS_CLASSIFY`.
    pub const RAS: u32 = 0;
    /// Neither IPv4 nor IPv6 (ARP, LLDP, ...).
    pub const NOT_IP: u32 = 1;
    /// IP but not UDP.
    pub const NOT_UDP: u32 = 2;
    /// UDP on other ports.
    pub const NOT_RAS_PORT: u32 = 3;
    /// Headers cut short.
    pub const TRUNCATED: u32 = 4;
    /// IPv4 fragment: left to the kernel stack and userspace.
    pub const FRAGMENT: u32 = 5;
    /// IPv6 with extension headers: left to userspace.
    pub const IPV6_EXTENSION_HEADER: u32 = 6;
    /// Total number of slots.
    pub const COUNT: u32 = 7;
    /// Slot names, in slot order, for status output.
    pub const NAMES: [&str; COUNT as usize] = [
        "ras",
        "not_ip",
        "not_udp",
        "not_ras_port",
        "truncated",
        "fragment",
        "ipv6_extension_header",
    ];
}

/// Per-slot counter of the packet outcome map (`PACKETS`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PacketCounter {
    /// Packets with this outcome.
    pub packets: u64,
}

#[cfg(feature = "user")]
// SAFETY: repr(C), a single u64, every bit pattern valid.
unsafe impl aya::Pod for PacketCounter {}

/// Decode the `RasMessage` choice index from the first byte of an aligned-PER
/// RAS message, the same way the XDP classifier does.
///
/// Returns the slot index of [`ras_slot`]. Shared so the userspace tests
/// check the kernel against the same rule.
#[inline(always)]
pub fn ras_slot_of(first: u8) -> u32 {
    if first & 0x80 == 0 {
        // Root alternative: extension bit 0, then the index in 5 bits
        // (25 alternatives, constrained whole number 0..24).
        let idx = ((first >> 2) & 0x1f) as u32;
        if idx < RAS_ROOT_ALTERNATIVES {
            idx
        } else {
            ras_slot::MALFORMED
        }
    } else if first & 0x40 == 0 {
        // Extension alternative: normally-small non-negative number,
        // bit 0 then the index in 6 bits.
        let idx = (first & 0x3f) as u32;
        if idx < RAS_EXTENSION_ALTERNATIVES {
            RAS_ROOT_ALTERNATIVES + idx
        } else {
            ras_slot::UNKNOWN_EXTENSION
        }
    } else {
        ras_slot::MALFORMED
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_and_extension_indexes() {
        // registrationRequest is root index 3: 0 00011 00 -> 0x0c.
        assert_eq!(ras_slot_of(0x0c), 3);
        // gatekeeperRequest is index 0.
        assert_eq!(ras_slot_of(0x00), 0);
        // unknownMessageResponse is index 24: 0 11000 00 -> 0x60.
        assert_eq!(ras_slot_of(0x60), 24);
        // index 25..31 in the root does not exist.
        assert_eq!(ras_slot_of(0x64), ras_slot::MALFORMED);
        // infoRequestAck is extension index 3: 1 0 000011 -> 0x83.
        assert_eq!(ras_slot_of(0x83), RAS_ROOT_ALTERNATIVES + 3);
        assert_eq!(ras_slot_of(0x88), ras_slot::UNKNOWN_EXTENSION);
        assert_eq!(ras_slot_of(0xc0), ras_slot::MALFORMED);
    }
}
