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

/// Key of the offloaded-endpoint map (`KEEPALIVE`): the source a keepalive
/// must come from. IPv4 addresses are stored IPv4-mapped (`::ffff:a.b.c.d`)
/// so one map serves both families.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct EndpointKey {
    /// Source address, network byte order, IPv4-mapped for IPv4.
    pub addr: [u8; 16],
    /// Source UDP port, host byte order.
    pub port: u16,
    /// Always zero (explicit padding so keys hash the same on both sides).
    pub pad: u16,
}

#[cfg(feature = "user")]
// SAFETY: repr(C), explicit padding field, every bit pattern valid.
unsafe impl aya::Pod for EndpointKey {}

/// Longest keepalive request and RCF answer the kernel handles; longer ones
/// stay with userspace. Lightweight RRQ/RCF pairs are 40-100 bytes.
pub const KA_MAX: usize = 112;
/// Shortest request the kernel handles.
pub const KA_MIN: usize = 16;
/// Offset of `requestSeqNum` in an aligned-PER RRQ or RCF: the CHOICE index
/// and the SEQUENCE preamble (extension bit, three optional-field bits)
/// take the first ten bits, and the 16-bit number is octet-aligned.
pub const KA_SEQ_OFF: usize = 2;

/// One endpoint whose keepalives the kernel answers (value of `KEEPALIVE`).
///
/// Userspace fills it after it has answered a keepalive of a confirmed
/// registration itself: the request's hash (everything but requestSeqNum),
/// where its endpointIdentifier lies, and the RCF it sent, as a template.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeepaliveEntry {
    /// [`ka_request_hash`] of the learned request, requestSeqNum masked.
    pub req_hash: u64,
    /// [`ka_eid_hash`] of the endpointIdentifier in the request.
    pub eid_hash: u64,
    /// `bpf_ktime_get_coarse_ns` (CLOCK_MONOTONIC, at tick resolution) of
    /// the last kernel answer.
    pub last_ns: u64,
    /// Keepalives the kernel answered for this endpoint.
    pub answered: u64,
    /// Rate bound: theoretical arrival time of the next answer (GCRA), ns.
    pub tat_ns: u64,
    /// Length of the learned request.
    pub req_len: u16,
    /// Offset and length of the endpointIdentifier BMPString contents in it.
    pub eid_off: u16,
    /// Length in bytes (two per character).
    pub eid_len: u16,
    /// Length of the RCF in `rcf`.
    pub rcf_len: u16,
    /// One's-complement sum of `rcf` with requestSeqNum zero, folded to 16
    /// bits, so the kernel finishes the UDP checksum without a loop.
    pub rcf_csum: u16,
    /// The endpoint's MAC address as the kernel's neighbour table has it,
    /// learned by the fast path at its first answer (all zero: not yet).
    /// With `FastpathSettings::check_macs`, a keepalive from another MAC
    /// (a replay with the endpoint's address and port) is not answered.
    pub src_mac: [u8; 6],
    /// The RCF, zero-padded, requestSeqNum zero.
    pub rcf: RcfBytes,
}

impl Default for KeepaliveEntry {
    fn default() -> Self {
        Self {
            req_hash: 0,
            eid_hash: 0,
            last_ns: 0,
            answered: 0,
            tat_ns: 0,
            req_len: 0,
            eid_off: 0,
            eid_len: 0,
            rcf_len: 0,
            rcf_csum: 0,
            src_mac: [0; 6],
            rcf: RcfBytes { bytes: [0; KA_MAX] },
        }
    }
}

#[cfg(feature = "user")]
// SAFETY: repr(C) with u64 fields first, u16 fields filling 16 bytes and a
// byte array of a multiple of 8: no implicit padding; any bits are valid.
unsafe impl aya::Pod for KeepaliveEntry {}

/// An RCF template, 8-byte aligned so the kernel copies it a word at a
/// time.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RcfBytes {
    /// The bytes.
    pub bytes: [u8; KA_MAX],
}

/// Fast-path settings (single slot of the `FP_CONFIG` array).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FastpathSettings {
    /// Non-zero: answer learned keepalives in the kernel.
    pub answer: u32,
    /// UDP port of the proxy's endpoint-side RAS socket (0: 1719).
    pub ras_port: u16,
    /// Non-zero: answer only frames addressed to a MAC in `OWN_MACS` for
    /// the interface they came in on, and from the MAC the kernel would
    /// answer the endpoint at (its neighbour entry, `bpf_fib_lookup`).
    pub check_macs: u16,
    /// Minimum spacing of kernel answers per endpoint, ns (0: no bound).
    pub rate_interval_ns: u64,
    /// How far ahead of that spacing answers may run (burst × spacing), ns.
    pub rate_slack_ns: u64,
    /// The proxy's endpoint-facing address, checked before the
    /// `LOCAL_ADDRS` lookup (most keepalives go to it).
    pub endpoint_addr: LocalAddr,
    /// Non-zero when `endpoint_addr` is set.
    pub has_endpoint_addr: u32,
    /// Non-zero while this node does not own the pair's virtual address
    /// (VRRP backup or fault, HSRP not active): the kernel answers nothing,
    /// so that only the owner answers. The daemon sets it from the
    /// redundancy protocol's state; zero without `[redundancy]`.
    pub standby: u32,
}

#[cfg(feature = "user")]
// SAFETY: repr(C), no implicit padding, every bit pattern valid.
unsafe impl aya::Pod for FastpathSettings {}

/// The frame the benchmark programs put back before every run (single slot
/// of `BENCH_FRAME`), so BPF_PROG_TEST_RUN can repeat a program that
/// rewrites the frame without timing each run separately.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BenchFrame {
    /// Bytes of `bytes` in use (1..=256).
    pub len: u32,
    /// Reserved, zero.
    pub pad: u32,
    /// The frame.
    pub bytes: [u8; 256],
}

impl Default for BenchFrame {
    fn default() -> Self {
        Self {
            len: 0,
            pad: 0,
            bytes: [0; 256],
        }
    }
}

#[cfg(feature = "user")]
// SAFETY: repr(C), no implicit padding, every bit pattern valid.
unsafe impl aya::Pod for BenchFrame {}

/// How far the `bench_stage_*` programs run the fast path before they
/// return XDP_PASS: where its time goes.
pub mod bench_stage {
    /// Headers walked, packet counted.
    pub const PARSED: u32 = 1;
    /// And the proxy address and the endpoint looked up.
    pub const LOOKED_UP: u32 = 2;
    /// And the request's words loaded and hashed.
    pub const HASHED: u32 = 3;
    /// The whole answer (XDP_TX).
    pub const ANSWERED: u32 = 4;
}

/// A local address of the proxy (key of `LOCAL_ADDRS`): the kernel answers
/// only keepalives sent to one of them. Same encoding as [`EndpointKey::addr`].
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct LocalAddr {
    /// Address, IPv4-mapped for IPv4.
    pub addr: [u8; 16],
}

#[cfg(feature = "user")]
// SAFETY: repr(C), a byte array.
unsafe impl aya::Pod for LocalAddr {}

/// Why the keepalive fast path did not answer a RAS datagram to the proxy
/// (slots of the per-CPU `KA_REASONS` array), or that it did.
pub mod ka_slot {
    /// Answered with XDP_TX.
    pub const ANSWERED: u32 = 0;
    /// Answering is switched off (`FP_CONFIG.answer == 0`).
    pub const OFF: u32 = 1;
    /// Not a registrationRequest with the extension bit (so no keepAlive).
    pub const NOT_KEEPALIVE: u32 = 2;
    /// Source address and port not learned (spoofed, or another port).
    pub const UNKNOWN_SOURCE: u32 = 3;
    /// Not sent to one of the proxy's own addresses.
    pub const NOT_FOR_PROXY: u32 = 4;
    /// Length differs from the learned keepalive (truncated, padded, changed).
    pub const LENGTH_MISMATCH: u32 = 5;
    /// endpointIdentifier differs from the learned one.
    pub const IDENTIFIER_MISMATCH: u32 = 6;
    /// Other bytes differ (a changed or malformed keepalive).
    pub const CONTENT_MISMATCH: u32 = 7;
    /// Over the per-endpoint answer rate: passed to userspace (and its
    /// per-source budget), not answered here.
    pub const RATE_LIMITED: u32 = 8;
    /// IPv4 options, or headers the answer cannot be built in.
    pub const UNSUPPORTED_HEADERS: u32 = 9;
    /// Resizing or rewriting the frame failed.
    pub const REWRITE_FAILED: u32 = 10;
    /// The frame could not be resized to the answer (no headroom).
    pub const NO_HEADROOM: u32 = 11;
    /// Addressed to a MAC that is not the interface's (nor a virtual MAC
    /// the proxy serves): a promiscuous or bridged port saw it.
    pub const NOT_OUR_MAC: u32 = 12;
    /// From another MAC than the endpoint's: a replay with its address and
    /// port. Dropped: neither answered nor passed on to spend the
    /// endpoint's budget in userspace.
    pub const SOURCE_MAC_MISMATCH: u32 = 13;
    /// The endpoint's MAC is not known yet (no neighbour entry, or
    /// forwarding off on the interface, which `bpf_fib_lookup` needs).
    pub const MAC_UNRESOLVED: u32 = 14;
    /// A RAS datagram with a gatekeeper's source address that arrived on an
    /// interface the route back to that gatekeeper does not leave by: a
    /// LAN host speaking for the gatekeeper (forged replies to keep a dead
    /// one alive, or to answer for a live one). Dropped (a strict reverse
    /// path check, for gatekeeper sources only; needs forwarding on the
    /// interface, as `bpf_fib_lookup` does).
    pub const SPOOFED_GATEKEEPER: u32 = 15;
    /// This node is the standby of a pair (`FastpathSettings::standby`):
    /// left to userspace, not answered.
    pub const STANDBY: u32 = 16;
    /// Total number of slots.
    pub const COUNT: u32 = 17;
    /// Slot names, in slot order, for status output.
    pub const NAMES: [&str; COUNT as usize] = [
        "answered",
        "off",
        "not_keepalive",
        "unknown_source",
        "not_for_proxy",
        "length_mismatch",
        "identifier_mismatch",
        "content_mismatch",
        "rate_limited",
        "unsupported_headers",
        "rewrite_failed",
        "no_headroom",
        "not_our_mac",
        "source_mac_mismatch",
        "mac_unresolved",
        "spoofed_gatekeeper",
        "standby",
    ];
}

/// Key of `OWN_MACS`: a MAC address the fast path answers frames to, on
/// one interface (the interface's own, or a VRRP/HSRP virtual MAC).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct MacKey {
    /// Interface index.
    pub ifindex: u32,
    /// The MAC address.
    pub mac: [u8; 6],
    /// Reserved, zero.
    pub pad: u16,
}

#[cfg(feature = "user")]
// SAFETY: repr(C), 12 bytes with no implicit padding; any bits are valid.
unsafe impl aya::Pod for MacKey {}

/// Gatekeeper health as the control plane decided it, written into
/// [`GatekeeperLiveness::state`] for operators and the fast path.
pub mod gk_state {
    /// Not heard from yet.
    pub const UNKNOWN: u32 = 0;
    /// Answering.
    pub const UP: u32 = 1;
    /// Replies missing, not yet down.
    pub const SUSPECT: u32 = 2;
    /// Down.
    pub const DOWN: u32 = 3;
}

/// Key of the gatekeeper liveness map (`GK_LIVENESS`): a gatekeeper's IP
/// address, IPv4-mapped for IPv4.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PeerAddr {
    /// Address bytes.
    pub addr: [u8; 16],
}

#[cfg(feature = "user")]
// SAFETY: repr(C), a byte array.
unsafe impl aya::Pod for PeerAddr {}

/// One gatekeeper in `GK_LIVENESS`. The TC program on the gatekeeper-facing
/// interfaces writes the first three fields on every RAS datagram from the
/// gatekeeper's RAS port and every TCP segment from its call-signalling
/// port; the control plane fills the ports and writes its decision.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GatekeeperLiveness {
    /// `bpf_ktime_get_ns` of the last RAS datagram or signalling segment.
    pub last_ns: u64,
    /// RAS datagrams seen from it.
    pub ras_packets: u64,
    /// Call-signalling TCP segments seen from it.
    pub signalling_packets: u64,
    /// Its RAS port (set by the control plane).
    pub ras_port: u16,
    /// Its call-signalling port (set by the control plane).
    pub signalling_port: u16,
    /// [`gk_state`] as the control plane decided it.
    pub state: u32,
    /// 1 when this gatekeeper is in control.
    pub active: u32,
    /// Reserved, zero.
    pub pad: u32,
}

#[cfg(feature = "user")]
// SAFETY: repr(C), u64s then u16/u32 fields filling 16 bytes; no padding.
unsafe impl aya::Pod for GatekeeperLiveness {}

/// Most addresses the per-endpoint gatekeeper-side identities live on.
pub const GK_SIDE_MAX_ADDRS: usize = 8;

/// Slots of the `GK_SIDE_SOCKS` socket map the `gk_side` sk_lookup program
/// hands connections and datagrams to.
pub mod gk_side_sock {
    /// The gatekeeper-side UDP (RAS) socket.
    pub const UDP: u32 = 0;
    /// The gatekeeper-side TCP (call signalling) listener.
    pub const TCP: u32 = 1;
}

/// Settings of the `gk_side` sk_lookup program (`GK_SIDE_CONFIG`, one
/// entry): every endpoint registered through the proxy has its own transport
/// address toward the gatekeeper, a port in `port_lo..=port_hi` on one of
/// these addresses; the program sends whatever arrives for them to the one
/// UDP socket and the one TCP listener of the gatekeeper side.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GkSideConfig {
    /// IPv4 addresses in network byte order, as `bpf_sk_lookup.local_ip4`.
    pub v4: [u32; GK_SIDE_MAX_ADDRS],
    /// IPv6 addresses as four network-order words, as `local_ip6`.
    pub v6: [[u32; 4]; GK_SIDE_MAX_ADDRS],
    /// How many of `v4` are used.
    pub n_v4: u32,
    /// How many of `v6` are used.
    pub n_v6: u32,
    /// First port (host order).
    pub port_lo: u32,
    /// Last port (host order).
    pub port_hi: u32,
}

#[cfg(feature = "user")]
// SAFETY: repr(C), only u32 fields and arrays of them, no padding.
unsafe impl aya::Pod for GkSideConfig {}

/// Mix one little-endian 8-byte word into a keepalive hash.
#[inline(always)]
pub fn ka_mix(h: u64, w: u64) -> u64 {
    let h = (h ^ w).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    h ^ (h >> 29)
}

/// Seed of [`ka_hash`].
pub const KA_SEED: u64 = 0xcbf2_9ce4_8422_2325;

/// Mask applied to the word at offset `at` of a request: zeroes the
/// requestSeqNum bytes when the word covers them.
#[inline(always)]
pub fn ka_seq_mask(at: usize) -> u64 {
    if at <= KA_SEQ_OFF && KA_SEQ_OFF + 2 <= at + 8 {
        !(0xffffu64 << ((KA_SEQ_OFF - at) * 8))
    } else {
        !0
    }
}

/// The hash the fast path checks a keepalive against: over the whole
/// request (`len` bytes) with requestSeqNum masked, 8-byte little-endian
/// words in order, the last one zero-padded. `full(i)` gives the request's
/// `i`-th whole word and `tail()` its last, partial one (the bytes from
/// `len / 8 * 8` on, asked for only when `len` is not a multiple of 8);
/// `None` from either gives `None`. The kernel reads words in place in the
/// packet, userspace from a slice (see [`ka_hash`]); both run this code.
#[inline(always)]
pub fn ka_request_hash(
    len: usize,
    mut full: impl FnMut(usize) -> Option<u64>,
    tail: impl FnOnce() -> Option<u64>,
) -> Option<u64> {
    let mut h = KA_SEED;
    let mut i = 0;
    while i < KA_MAX / 8 {
        if i * 8 + 8 > len {
            break;
        }
        h = ka_mix(h, full(i)? & ka_seq_mask(i * 8));
        i += 1;
    }
    if !len.is_multiple_of(8) && i * 8 < len {
        h = ka_mix(h, tail()? & ka_seq_mask(i * 8));
    }
    Some(h)
}

/// The hash of the 8-byte words that hold a request's endpointIdentifier
/// (`eid_len` bytes at `eid_off`; 0 when there are none). The request hash
/// already covers the identifier; the kernel computes this one only for a
/// request that does not match, to count a wrong identifier as such.
#[inline(always)]
pub fn ka_eid_hash(eid_off: usize, eid_len: usize, word: impl Fn(usize) -> u64) -> u64 {
    if eid_len == 0 {
        return 0;
    }
    let first = (eid_off / 8) as i64;
    let end = (eid_off + eid_len).div_ceil(8) as i64;
    let mut he = KA_SEED;
    let mut i = 0;
    while i < KA_MAX / 8 {
        let w = word(i);
        // All ones when first <= i < end, without a branch (the verifier
        // walks this loop once).
        let sel = (!((i as i64 - first) >> 63) & !((end - 1 - i as i64) >> 63)) as u64;
        he = (ka_mix(he, w) & sel) | (he & !sel);
        i += 1;
    }
    he
}

/// The `i`-th little-endian 8-byte word of `bytes`, zero past the end.
pub fn ka_word(bytes: &[u8], i: usize) -> u64 {
    let mut w = [0u8; 8];
    let at = i * 8;
    if at < bytes.len() {
        let n = if bytes.len() - at < 8 {
            bytes.len() - at
        } else {
            8
        };
        w[..n].copy_from_slice(&bytes[at..at + n]);
    }
    u64::from_le_bytes(w)
}

/// [`ka_request_hash`] and [`ka_eid_hash`] of a request held in a slice: (request hash, hash of the
/// `eid_len` endpointIdentifier bytes at `eid_off`).
pub fn ka_hash(request: &[u8], eid_off: usize, eid_len: usize) -> (u64, u64) {
    let word = |i| ka_word(request, i);
    let len = request.len();
    (
        ka_request_hash(len, |i| Some(word(i)), || Some(word(len / 8)))
            .expect("a slice has all its words"),
        ka_eid_hash(eid_off, eid_len, word),
    )
}

/// One's-complement 16-bit sum of `bytes` (big-endian words, odd length
/// padded with zero), folded. The partial sum the UDP checksum is built on.
pub fn ones_sum(bytes: &[u8]) -> u16 {
    let mut s: u32 = 0;
    let mut i = 0;
    while i + 1 < bytes.len() {
        s += u16::from_be_bytes([bytes[i], bytes[i + 1]]) as u32;
        i += 2;
    }
    if i < bytes.len() {
        s += (bytes[i] as u32) << 8;
    }
    fold(s)
}

/// Fold a 32-bit one's-complement accumulator to 16 bits.
#[inline(always)]
pub fn fold(mut s: u32) -> u16 {
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    s as u16
}

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
    fn the_sequence_number_mask_covers_its_two_bytes() {
        assert_eq!(ka_seq_mask(0), !0xffff_0000);
        assert_eq!(ka_seq_mask(8), !0);
    }

    #[test]
    fn hashes_cover_the_request_and_the_identifier_words() {
        let req: [u8; 29] = core::array::from_fn(|i| i as u8 + 1);
        // Identifier at 11..19: words 1 and 2 (bytes 8..24).
        let (h, he) = ka_hash(&req, 11, 8);
        let mut seq = req;
        seq[KA_SEQ_OFF] = 0x77;
        seq[KA_SEQ_OFF + 1] = 0x78;
        assert_eq!(ka_hash(&seq, 11, 8), (h, he));
        let mut tail = req;
        tail[27] ^= 1;
        assert_ne!(ka_hash(&tail, 11, 8).0, h);
        assert_eq!(
            ka_hash(&tail, 11, 8).1,
            he,
            "outside the identifier's words"
        );
        let mut id = req;
        id[18] ^= 1;
        assert_ne!(ka_hash(&id, 11, 8).1, he);
        assert_ne!(ka_hash(&id, 11, 8).0, h);
        // A zero byte more hashes the same: lengths are compared apart.
        let mut longer = [0u8; 30];
        longer[..29].copy_from_slice(&req);
        assert_eq!(ka_hash(&longer, 11, 8).0, h, "lengths are compared apart");
        assert_eq!(ka_hash(&req, 0, 0).1, 0);
    }

    #[test]
    fn request_hash_is_over_zero_padded_words_at_every_length() {
        let req: [u8; KA_MAX] = core::array::from_fn(|i| (i * 7 + 3) as u8);
        for len in KA_MIN..=KA_MAX {
            let r = &req[..len];
            let mut h = KA_SEED;
            for i in 0..len.div_ceil(8) {
                h = ka_mix(h, ka_word(r, i) & ka_seq_mask(i * 8));
            }
            assert_eq!(ka_hash(r, 0, 0).0, h, "length {len}");
        }
    }

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

/// Names of the BPF maps and programs, shared by both sides. aya finds a
/// map or program by its symbol name, so each constant equals the name of
/// the static or function in `proxy-ebpf` (named in its doc);
/// `proxy-user`'s `fastpath` tests check the built objects hold every one.
pub mod names {
    /// `ras_classify.rs` `RAS_CLASSIFY`: RAS datagrams by message type.
    pub const RAS_CLASSIFY_MAP: &str = "RAS_CLASSIFY";
    /// `ras_classify.rs` `PACKETS`: packet outcomes.
    pub const PACKETS_MAP: &str = "PACKETS";
    /// `keepalive.rs` `KEEPALIVE`: learned endpoints.
    pub const KEEPALIVE_MAP: &str = "KEEPALIVE";
    /// `keepalive.rs` `LOCAL_ADDRS`: the proxy's own addresses.
    pub const LOCAL_ADDRS_MAP: &str = "LOCAL_ADDRS";
    /// MACs frames may be addressed to, per interface.
    pub const OWN_MACS_MAP: &str = "OWN_MACS";
    /// `keepalive.rs` `FP_CONFIG`: fast-path settings.
    pub const FP_CONFIG_MAP: &str = "FP_CONFIG";
    /// `keepalive.rs` `KA_REASONS`: keepalive outcomes by reason.
    pub const KA_REASONS_MAP: &str = "KA_REASONS";
    /// `liveness.rs` `GK_LIVENESS`: gatekeeper liveness.
    pub const GK_LIVENESS_MAP: &str = "GK_LIVENESS";
    /// `gk_side.rs` `GK_SIDE_CONFIG`: the gatekeeper-side address ranges.
    pub const GK_SIDE_CONFIG_MAP: &str = "GK_SIDE_CONFIG";
    /// `gk_side.rs` `GK_SIDE_SOCKS`: the sockets that serve them.
    pub const GK_SIDE_SOCKS_MAP: &str = "GK_SIDE_SOCKS";
    /// `bench.rs` `BENCH_FRAME`: the frame the benchmark programs put back.
    pub const BENCH_FRAME_MAP: &str = "BENCH_FRAME";
    /// `bench.rs` `BENCH_SINK`: what the traffic sink counted.
    pub const BENCH_SINK_MAP: &str = "BENCH_SINK";
    /// `ras_classify.rs` `ras_classify`: the XDP program that classifies RAS.
    pub const RAS_CLASSIFY_PROG: &str = "ras_classify";
    /// `keepalive.rs` `ras_fastpath`: the XDP program that answers keepalives.
    pub const FASTPATH_PROG: &str = "ras_fastpath";
    /// `keepalive.rs` `xdp_pass`: the pass-only baseline.
    pub const PASS_PROG: &str = "xdp_pass";
    /// `liveness.rs` `gk_liveness`: the TC program that records liveness.
    pub const LIVENESS_PROG: &str = "gk_liveness";
    /// `gk_side.rs` `gk_side`: the sk_lookup program.
    pub const GK_SIDE_PROG: &str = "gk_side";
    /// `bench.rs` `bench_pass` (the `bench` object, like every `bench_*`
    /// program): put `BENCH_FRAME` back, pass. The baseline.
    pub const BENCH_PASS_PROG: &str = "bench_pass";
    /// `bench.rs` `bench_fastpath`: put the frame back, run the fast path.
    pub const BENCH_FASTPATH_PROG: &str = "bench_fastpath";
    /// `bench.rs` `bench_stage_*`: the fast path stopped after a stage
    /// (program, what it stops after).
    pub const BENCH_STAGE_PROGS: [(&str, &str); 3] = [
        ("bench_stage_parsed", "header walk, counters"),
        (
            "bench_stage_looked_up",
            "+ proxy address and endpoint lookups",
        ),
        ("bench_stage_hashed", "+ request load and hashes"),
    ];
    /// `bench.rs` `bench_gen`: the veth lab's traffic generator.
    pub const BENCH_GEN_PROG: &str = "bench_gen";
    /// `bench.rs` `bench_sink`: counts and drops what comes back.
    pub const BENCH_SINK_PROG: &str = "bench_sink";
}
