//! Bounded header parsing shared by the XDP programs.

use aya_ebpf::cty::c_void;
use aya_ebpf::helpers::generated::bpf_xdp_load_bytes;
use aya_ebpf::programs::XdpContext;

/// Copy `N` bytes at `offset` out of the packet.
///
/// Offsets here depend on VLAN tags and the IPv4 header length, so they are
/// not constants; LLVM folds the usual `data + off + 1 > data_end` check
/// into a form the verifier cannot use for one-byte reads (`pkt_end > pkt`
/// with offset 0 gives no range). `bpf_xdp_load_bytes` does its own bounds
/// check and returns an error past the end, which is what we want.
#[inline(always)]
pub fn load<const N: usize>(ctx: &XdpContext, offset: usize) -> Option<[u8; N]> {
    let mut buf = [0u8; N];
    // SAFETY: the helper writes at most N bytes into buf.
    let rc = unsafe {
        bpf_xdp_load_bytes(
            ctx.ctx,
            offset as u32,
            buf.as_mut_ptr() as *mut c_void,
            N as u32,
        )
    };
    (rc == 0).then_some(buf)
}

#[inline(always)]
pub fn u8_at(ctx: &XdpContext, offset: usize) -> Option<u8> {
    load::<1>(ctx, offset).map(|b| b[0])
}

/// Big-endian u16 at `offset`.
#[inline(always)]
pub fn be16_at(ctx: &XdpContext, offset: usize) -> Option<u16> {
    load::<2>(ctx, offset).map(u16::from_be_bytes)
}

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

/// Where the UDP payload of a packet to or from `port` starts.
pub struct Udp {
    /// Offset of the IP header.
    pub l3: usize,
    /// IPv6 (else IPv4).
    pub v6: bool,
    /// IPv4 header length (40 for IPv6).
    pub ip_hlen: usize,
    /// Offset of the UDP header.
    pub l4: usize,
    /// UDP destination port.
    pub dport: u16,
    /// Offset of the UDP payload from the start of the frame.
    pub payload: usize,
    /// UDP payload length according to the UDP header.
    pub payload_len: usize,
}

/// Walk Ethernet, up to two VLAN tags, IPv4 or IPv6 and UDP; return the UDP
/// payload when either port is `port`.
#[inline(always)]
pub fn udp_for_port(ctx: &XdpContext, port: u16) -> Result<Udp, Outcome> {
    let mut off = ETH_HLEN;
    let mut proto = be16_at(ctx, 12).ok_or(Outcome::Truncated)?;
    // Two tags at most (802.1ad outer + 802.1Q inner); unrolled so the
    // verifier sees a bounded walk.
    if proto == ETH_P_8021Q || proto == ETH_P_8021AD {
        proto = be16_at(ctx, off + 2).ok_or(Outcome::Truncated)?;
        off += 4;
        if proto == ETH_P_8021Q || proto == ETH_P_8021AD {
            proto = be16_at(ctx, off + 2).ok_or(Outcome::Truncated)?;
            off += 4;
        }
    }
    let l3 = off;
    let v6 = proto == ETH_P_IPV6;
    let l4 = match proto {
        ETH_P_IP => {
            let vihl = u8_at(ctx, off).ok_or(Outcome::Truncated)?;
            let ihl = ((vihl & 0x0f) as usize) * 4;
            if vihl >> 4 != 4 || ihl < 20 {
                return Err(Outcome::NotIp);
            }
            // More-fragments flag or a fragment offset: only whole datagrams.
            let frag = be16_at(ctx, off + 6).ok_or(Outcome::Truncated)?;
            if frag & 0x3fff != 0 {
                return Err(Outcome::Fragment);
            }
            if u8_at(ctx, off + 9).ok_or(Outcome::Truncated)? != IPPROTO_UDP {
                return Err(Outcome::NotUdp);
            }
            off + ihl
        }
        ETH_P_IPV6 => {
            let next = u8_at(ctx, off + 6).ok_or(Outcome::Truncated)?;
            if next != IPPROTO_UDP {
                // Extension headers (including fragments) are left to userspace.
                return Err(match next {
                    0 | 43 | 44 | 50 | 51 | 60 | 135 | 139 | 140 => Outcome::Ipv6ExtensionHeader,
                    _ => Outcome::NotUdp,
                });
            }
            off + IPV6_HLEN
        }
        _ => return Err(Outcome::NotIp),
    };
    let sport = be16_at(ctx, l4).ok_or(Outcome::Truncated)?;
    let dport = be16_at(ctx, l4 + 2).ok_or(Outcome::Truncated)?;
    if sport != port && dport != port {
        return Err(Outcome::NotRasPort);
    }
    let ulen = be16_at(ctx, l4 + 4).ok_or(Outcome::Truncated)? as usize;
    if ulen < UDP_HLEN {
        return Err(Outcome::Truncated);
    }
    Ok(Udp {
        l3,
        v6,
        ip_hlen: l4 - l3,
        l4,
        dport,
        payload: l4 + UDP_HLEN,
        payload_len: ulen - UDP_HLEN,
    })
}

/// Size of the per-CPU frame buffer the fast path parses and rewrites in.
pub const FRAME_BUF: usize = 256;

/// A byte of the frame buffer (`None` past the bytes loaded).
#[inline(always)]
fn b(buf: &[u8; FRAME_BUF], n: usize, off: usize) -> Option<u8> {
    if off >= n {
        return None;
    }
    buf.get(off).copied()
}

#[inline(always)]
fn b16(buf: &[u8; FRAME_BUF], n: usize, off: usize) -> Option<u16> {
    Some(u16::from_be_bytes([b(buf, n, off)?, b(buf, n, off + 1)?]))
}

/// [`udp_for_port`] on the first `n` bytes of the frame, copied into `buf`
/// with one helper call: plain memory reads instead of one
/// `bpf_xdp_load_bytes` per field.
#[inline(always)]
pub fn udp_in(buf: &[u8; FRAME_BUF], n: usize, port: u16) -> Result<Udp, Outcome> {
    let mut off = ETH_HLEN;
    let mut proto = b16(buf, n, 12).ok_or(Outcome::Truncated)?;
    if proto == ETH_P_8021Q || proto == ETH_P_8021AD {
        proto = b16(buf, n, off + 2).ok_or(Outcome::Truncated)?;
        off += 4;
        if proto == ETH_P_8021Q || proto == ETH_P_8021AD {
            proto = b16(buf, n, off + 2).ok_or(Outcome::Truncated)?;
            off += 4;
        }
    }
    let l3 = off;
    let v6 = proto == ETH_P_IPV6;
    let l4 = match proto {
        ETH_P_IP => {
            let vihl = b(buf, n, off).ok_or(Outcome::Truncated)?;
            let ihl = ((vihl & 0x0f) as usize) * 4;
            if vihl >> 4 != 4 || ihl < 20 {
                return Err(Outcome::NotIp);
            }
            let frag = b16(buf, n, off + 6).ok_or(Outcome::Truncated)?;
            if frag & 0x3fff != 0 {
                return Err(Outcome::Fragment);
            }
            if b(buf, n, off + 9).ok_or(Outcome::Truncated)? != IPPROTO_UDP {
                return Err(Outcome::NotUdp);
            }
            off + ihl
        }
        ETH_P_IPV6 => {
            let next = b(buf, n, off + 6).ok_or(Outcome::Truncated)?;
            if next != IPPROTO_UDP {
                return Err(match next {
                    0 | 43 | 44 | 50 | 51 | 60 | 135 | 139 | 140 => Outcome::Ipv6ExtensionHeader,
                    _ => Outcome::NotUdp,
                });
            }
            off + IPV6_HLEN
        }
        _ => return Err(Outcome::NotIp),
    };
    let sport = b16(buf, n, l4).ok_or(Outcome::Truncated)?;
    let dport = b16(buf, n, l4 + 2).ok_or(Outcome::Truncated)?;
    if sport != port && dport != port {
        return Err(Outcome::NotRasPort);
    }
    let ulen = b16(buf, n, l4 + 4).ok_or(Outcome::Truncated)? as usize;
    if ulen < UDP_HLEN {
        return Err(Outcome::Truncated);
    }
    Ok(Udp {
        l3,
        v6,
        ip_hlen: l4 - l3,
        l4,
        dport,
        payload: l4 + UDP_HLEN,
        payload_len: ulen - UDP_HLEN,
    })
}
