//! `gk_liveness`: a TC ingress program on the gatekeeper-facing interfaces
//! that records, per gatekeeper address, when a RAS datagram (from its RAS
//! port) or a call-signalling segment (from its signalling port) last
//! arrived. The control plane's failure detector reads `GK_LIVENESS` and
//! writes back the state it decided. Every packet continues (TC_ACT_OK).
//!
//! Only what a live gatekeeper process sends counts: traffic to one of the
//! proxy's own addresses (`LOCAL_ADDRS`: anything else crossing the link is
//! not the proxy's business), and no TCP reset (a host whose gatekeeper
//! process is gone still answers a segment with RST, and anyone on the path
//! can forge one).

use aya_ebpf::{
    bindings::TC_ACT_OK, helpers::generated::bpf_ktime_get_ns, macros::classifier,
    programs::TcContext,
};
use proxy_common::{LocalAddr, PeerAddr};

use crate::keepalive::{GK_LIVENESS, LOCAL_ADDRS};

use crate::parse::{ETH_P_8021AD, ETH_P_8021Q, ETH_P_IP, ETH_P_IPV6, IPPROTO_UDP};

const IPPROTO_TCP: u8 = 6;

#[classifier]
pub fn gk_liveness(ctx: TcContext) -> i32 {
    let _ = track(&ctx);
    TC_ACT_OK as i32
}

#[inline(always)]
fn be16(ctx: &TcContext, off: usize) -> Option<u16> {
    ctx.load::<[u8; 2]>(off).ok().map(u16::from_be_bytes)
}

#[inline(always)]
fn track(ctx: &TcContext) -> Option<()> {
    let mut off = 14;
    let mut proto = be16(ctx, 12)?;
    if proto == ETH_P_8021Q || proto == ETH_P_8021AD {
        proto = be16(ctx, off + 2)?;
        off += 4;
        if proto == ETH_P_8021Q || proto == ETH_P_8021AD {
            proto = be16(ctx, off + 2)?;
            off += 4;
        }
    }
    let mut addr = [0u8; 16];
    let mut to = [0u8; 16];
    let (l4proto, l4) = match proto {
        ETH_P_IP => {
            let vihl = ctx.load::<u8>(off).ok()?;
            let ihl = ((vihl & 0x0f) as usize) * 4;
            // Ports are only in the first fragment; ignore the others.
            if be16(ctx, off + 6)? & 0x1fff != 0 || ihl < 20 {
                return None;
            }
            addr[10] = 0xff;
            addr[11] = 0xff;
            addr[12..].copy_from_slice(&ctx.load::<[u8; 4]>(off + 12).ok()?);
            to[10] = 0xff;
            to[11] = 0xff;
            to[12..].copy_from_slice(&ctx.load::<[u8; 4]>(off + 16).ok()?);
            (ctx.load::<u8>(off + 9).ok()?, off + ihl)
        }
        ETH_P_IPV6 => {
            addr = ctx.load::<[u8; 16]>(off + 8).ok()?;
            to = ctx.load::<[u8; 16]>(off + 24).ok()?;
            (ctx.load::<u8>(off + 6).ok()?, off + 40)
        }
        _ => return None,
    };
    // SAFETY: read-only lookup of a plain-data value.
    unsafe { LOCAL_ADDRS.get(&LocalAddr { addr: to }) }?;
    let v = GK_LIVENESS.get_ptr_mut(&PeerAddr { addr })?;
    // SAFETY: a map value stays valid for this run; racing updates of
    // counters from other CPUs only lose increments.
    let v = unsafe { &mut *v };
    let sport = be16(ctx, l4)?;
    if l4proto == IPPROTO_UDP && sport == v.ras_port {
        v.ras_packets += 1;
    } else if l4proto == IPPROTO_TCP && sport == v.signalling_port {
        // TCP flags, byte 13 of the header: RST (0x04) is no sign of life.
        if ctx.load::<u8>(l4 + 13).ok()? & 0x04 != 0 {
            return None;
        }
        v.signalling_packets += 1;
    } else {
        return None;
    }
    // SAFETY: helper without arguments.
    v.last_ns = unsafe { bpf_ktime_get_ns() };
    Some(())
}
