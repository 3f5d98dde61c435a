//! Bounded header parsing shared by the XDP programs, reading the packet in
//! place.
//!
//! Two things stand between plain Rust and the verifier here, and both are
//! handled with a few lines of inline assembly (`pkt`):
//! - LLVM's BPF backend splits a load it cannot prove aligned into byte
//!   loads; header fields sit at odd offsets, so every 4-byte field would
//!   cost 4 loads and 6 ALU instructions. The kernel allows unaligned packet
//!   access on architectures that handle it (it is strict only where
//!   `CONFIG_HAVE_EFFICIENT_UNALIGNED_ACCESS` is unset), so one load is what
//!   we emit.
//! - At a variable offset (VLAN tags, IPv4 options), LLVM folds `data + off
//!   + n <= data_end` into `off + n <= data_end - data`, a form the verifier
//!   cannot use. [`at`] hides the pointer from LLVM so the check stays on it.

use aya_ebpf::programs::XdpContext;

pub const ETH_HLEN: usize = 14;
pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86dd;
pub const ETH_P_8021Q: u16 = 0x8100;
pub const ETH_P_8021AD: u16 = 0x88a8;
pub const IPPROTO_UDP: u8 = 17;
pub const IPV6_HLEN: usize = 40;
pub const UDP_HLEN: usize = 8;

/// Why a packet was not classified as a RAS message. Index into `PACKETS`.
#[derive(Clone, Copy)]
#[repr(u32)]
pub enum Outcome {
    Ras = proxy_common::packet_slot::RAS,
    NotIp = proxy_common::packet_slot::NOT_IP,
    NotUdp = proxy_common::packet_slot::NOT_UDP,
    NotRasPort = proxy_common::packet_slot::NOT_RAS_PORT,
    Truncated = proxy_common::packet_slot::TRUNCATED,
    Fragment = proxy_common::packet_slot::FRAGMENT,
    Ipv6ExtensionHeader = proxy_common::packet_slot::IPV6_EXTENSION_HEADER,
}

/// Unaligned loads and stores at a constant offset from a packet pointer
/// whose range the caller has checked (see [`at`]). Values are in memory
/// order: a big-endian field reads as its byte-swapped value.
pub mod pkt {
    use core::arch::asm;

    macro_rules! load {
        ($ld:ident, $t:ty, $w:literal) => {
            /// Load at `p + OFF`.
            ///
            /// # Safety
            /// `p + OFF .. p + OFF + size` must lie in the checked range.
            #[inline(always)]
            pub unsafe fn $ld<const OFF: i16>(p: usize) -> $t {
                let v: u64;
                // SAFETY: the caller guarantees the range.
                unsafe {
                    asm!(
                        concat!("{v} = *(", $w, " *)({p} + {off})"),
                        v = lateout(reg) v,
                        p = in(reg) p,
                        off = const OFF,
                        options(readonly, nostack, preserves_flags),
                    )
                };
                v as $t
            }
        };
    }

    macro_rules! store {
        ($st:ident, $t:ty, $w:literal) => {
            /// Store at `p + OFF`.
            ///
            /// # Safety
            /// `p + OFF .. p + OFF + size` must lie in the checked range.
            #[inline(always)]
            pub unsafe fn $st<const OFF: i16>(p: usize, v: $t) {
                // SAFETY: the caller guarantees the range.
                unsafe {
                    asm!(
                        concat!("*(", $w, " *)({p} + {off}) = {v}"),
                        v = in(reg) v as u64,
                        p = in(reg) p,
                        off = const OFF,
                        options(nostack, preserves_flags),
                    )
                };
            }
        };
    }

    load!(ld8, u8, "u8");
    load!(ld16, u16, "u16");
    load!(ld32, u32, "u32");
    load!(ld64, u64, "u64");
    store!(st16, u16, "u16");
    store!(st32, u32, "u32");
    store!(st64, u64, "u64");

    /// `base + off`, with LLVM knowing nothing of where it came from. (The
    /// template is the add itself: an empty one would leave a line-info
    /// record without an instruction, which the kernel refuses.)
    #[inline(always)]
    pub fn offset(mut base: usize, off: usize) -> usize {
        // SAFETY: register arithmetic only.
        unsafe {
            asm!(
                "{p} += {off}",
                p = inout(reg) base,
                off = in(reg) off,
                options(pure, nomem, nostack, preserves_flags),
            )
        };
        base
    }
}

/// A pointer to `n` bytes of the packet at `off`, or `None` when the packet
/// is shorter. `off` must be bounded (the verifier needs a maximum).
#[inline(always)]
pub fn at(ctx: &XdpContext, off: usize, n: usize) -> Option<usize> {
    let p = pkt::offset(ctx.data(), off);
    if p + n > ctx.data_end() {
        return None;
    }
    Some(p)
}

/// A big-endian 16-bit field loaded in memory order, as a number.
#[inline(always)]
pub fn be(v: u16) -> u16 {
    u16::from_be(v)
}

/// Where the UDP payload of a packet to or from `port` starts.
pub struct Udp {
    /// Offset of the IP header.
    pub l3: usize,
    /// IPv6 (else IPv4).
    pub v6: bool,
    /// IP header length (40 for IPv6).
    pub ip_hlen: usize,
    /// Offset of the UDP header.
    pub l4: usize,
    /// The UDP source and destination ports as they lie in memory (one
    /// load; the answer swaps them as a word).
    pub ports: u32,
    /// UDP payload length according to the UDP header.
    pub payload_len: usize,
    /// The payload's first byte: `None` for an empty datagram, `Some(None)`
    /// when the frame ends before it.
    pub first: Option<Option<u8>>,
}

impl Udp {
    /// UDP source port.
    #[inline(always)]
    pub fn sport(&self) -> u16 {
        be(self.ports as u16)
    }

    /// UDP destination port.
    #[inline(always)]
    pub fn dport(&self) -> u16 {
        be((self.ports >> 16) as u16)
    }

    /// Offset of the UDP payload from the start of the frame.
    #[inline(always)]
    pub fn payload(&self) -> usize {
        self.l4 + UDP_HLEN
    }
}

/// Walk Ethernet, up to two VLAN tags, IPv4 or IPv6 and UDP; return the UDP
/// datagram when either port is `port`.
#[inline(always)]
pub fn udp_in(ctx: &XdpContext, port: u16) -> Result<Udp, Outcome> {
    use pkt::*;
    let eth = at(ctx, 0, ETH_HLEN).ok_or(Outcome::Truncated)?;
    // SAFETY (all loads below): within the range `at` checked.
    let mut proto = be(unsafe { ld16::<12>(eth) });
    let mut l3 = ETH_HLEN;
    if proto == ETH_P_8021Q || proto == ETH_P_8021AD {
        let p = at(ctx, 0, 18).ok_or(Outcome::Truncated)?;
        proto = be(unsafe { ld16::<16>(p) });
        l3 = 18;
        if proto == ETH_P_8021Q || proto == ETH_P_8021AD {
            let p = at(ctx, 0, 22).ok_or(Outcome::Truncated)?;
            proto = be(unsafe { ld16::<20>(p) });
            l3 = 22;
        }
    }
    let v6 = proto == ETH_P_IPV6;
    let ip_hlen = match proto {
        ETH_P_IP => {
            let ip = at(ctx, l3, 20).ok_or(Outcome::Truncated)?;
            let vihl = unsafe { ld8::<0>(ip) };
            let ihl = ((vihl & 0x0f) as usize) * 4;
            if vihl >> 4 != 4 || ihl < 20 {
                return Err(Outcome::NotIp);
            }
            if be(unsafe { ld16::<6>(ip) }) & 0x3fff != 0 {
                return Err(Outcome::Fragment);
            }
            if unsafe { ld8::<9>(ip) } != IPPROTO_UDP {
                return Err(Outcome::NotUdp);
            }
            ihl
        }
        ETH_P_IPV6 => {
            let ip = at(ctx, l3, IPV6_HLEN).ok_or(Outcome::Truncated)?;
            let next = unsafe { ld8::<6>(ip) };
            if next != IPPROTO_UDP {
                return Err(match next {
                    0 | 43 | 44 | 50 | 51 | 60 | 135 | 139 | 140 => Outcome::Ipv6ExtensionHeader,
                    _ => Outcome::NotUdp,
                });
            }
            IPV6_HLEN
        }
        _ => return Err(Outcome::NotIp),
    };
    let l4 = l3 + ip_hlen;
    let udp = at(ctx, l4, UDP_HLEN).ok_or(Outcome::Truncated)?;
    let ports = unsafe { ld32::<0>(udp) };
    let (sport, dport) = (be(ports as u16), be((ports >> 16) as u16));
    if sport != port && dport != port {
        return Err(Outcome::NotRasPort);
    }
    let ulen = be(unsafe { ld16::<4>(udp) }) as usize;
    if ulen < UDP_HLEN {
        return Err(Outcome::Truncated);
    }
    let first = if ulen == UDP_HLEN {
        None
    } else {
        Some(at(ctx, l4 + UDP_HLEN, 1).map(|p| unsafe { ld8::<0>(p) }))
    };
    Ok(Udp {
        l3,
        v6,
        ip_hlen,
        l4,
        ports,
        payload_len: ulen - UDP_HLEN,
        first,
    })
}
