//! Bounded header parsing shared by the XDP programs.
//!
//! The frame's head is copied once (`bpf_xdp_load_bytes`) into a per-CPU
//! buffer and parsed there with checked indexing. Reading the packet
//! directly needs a `data + off + n <= data_end` check per access, and LLVM
//! folds those checks at variable offsets (VLAN tags, IPv4 options) into a
//! form the verifier cannot use; one helper call per field worked but cost
//! about 30 ns each.

use aya_ebpf::btf_maps::PerCpuArray;
use aya_ebpf::cty::c_void;
use aya_ebpf::helpers::generated::bpf_xdp_load_bytes;
use aya_ebpf::macros::btf_map;
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

/// Size of the per-CPU frame buffer the programs parse (and the fast path
/// rewrites) in: any keepalive with its headers fits.
pub const FRAME_BUF: usize = 256;

/// The frame buffer.
pub type Buf = [u8; FRAME_BUF];

/// Per-CPU copy of the frame's head (the BPF stack is 512 bytes).
#[btf_map]
static FRAME: PerCpuArray<Buf, 1> = PerCpuArray::new();

/// Copy the first (up to 256) bytes of the frame into this CPU's buffer;
/// returns the buffer and how many bytes are valid.
#[inline(always)]
pub fn load_frame(ctx: &XdpContext) -> Result<(&'static mut Buf, usize), Outcome> {
    let buf = FRAME.get_ptr_mut(0).ok_or(Outcome::Truncated)?;
    // SAFETY: per-CPU slot; one program run at a time uses it on this CPU.
    let buf = unsafe { &mut *buf };
    let total = ctx.data_end() - ctx.data();
    if total == 0 {
        return Err(Outcome::Truncated);
    }
    let n = if total > FRAME_BUF { FRAME_BUF } else { total };
    // The same value, in a form whose range (1..=256) the verifier sees.
    let n = ((n - 1) & (FRAME_BUF - 1)) + 1;
    // SAFETY: the helper writes `n` bytes into the 256-byte buffer.
    let rc = unsafe { bpf_xdp_load_bytes(ctx.ctx, 0, buf.as_mut_ptr() as *mut c_void, n as u32) };
    if rc != 0 {
        return Err(Outcome::Truncated);
    }
    Ok((buf, n))
}

/// A byte of the frame buffer (`None` past the bytes loaded).
#[inline(always)]
fn b(buf: &Buf, n: usize, off: usize) -> Option<u8> {
    if off >= n {
        return None;
    }
    buf.get(off).copied()
}

#[inline(always)]
fn b16(buf: &Buf, n: usize, off: usize) -> Option<u16> {
    Some(u16::from_be_bytes([b(buf, n, off)?, b(buf, n, off + 1)?]))
}

/// Walk Ethernet, up to two VLAN tags, IPv4 or IPv6 and UDP in the first
/// `n` bytes of the frame; return the UDP payload when either port is
/// `port`.
#[inline(always)]
pub fn udp_in(buf: &Buf, n: usize, port: u16) -> Result<Udp, Outcome> {
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
