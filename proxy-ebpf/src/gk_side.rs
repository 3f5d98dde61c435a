//! `gk_side`: the sk_lookup program that serves every endpoint's own
//! gatekeeper-side transport address from one UDP socket and one TCP
//! listener (the kernel's way to serve many ports and addresses from one
//! socket). A datagram or connection for a port of the configured range on
//! one of the configured addresses goes to the socket in `GK_SIDE_SOCKS`;
//! the control plane tells the endpoints apart by the local address it
//! arrived at. Everything else is left to the normal socket lookup.
//!
//! Its own object, apart from the keepalive fast path: it needs no pins
//! (the sockets die with the daemon, and so does this program's link) and
//! runs whether or not XDP is enabled.
#![no_std]
#![no_main]

mod prelude;

use aya_ebpf::{
    bindings::sk_action::SK_PASS,
    btf_maps::{Array, SockMap},
    macros::{btf_map, sk_lookup},
    programs::SkLookupContext,
};
use proxy_common::{GK_SIDE_MAX_ADDRS, GkSideConfig, gk_side_sock};

const AF_INET: u32 = 2;
const AF_INET6: u32 = 10;
const IPPROTO_TCP: u32 = 6;
const IPPROTO_UDP: u32 = 17;

/// The address ranges (written once by the control plane at start).
#[btf_map]
static GK_SIDE_CONFIG: Array<GkSideConfig, 1> = Array::new();

/// The gatekeeper-side UDP socket and TCP listener.
#[btf_map]
static GK_SIDE_SOCKS: SockMap<2> = SockMap::new();

#[sk_lookup]
pub fn gk_side(ctx: SkLookupContext) -> u32 {
    let _ = steer(&ctx);
    // SK_PASS without an assigned socket: the normal lookup goes on.
    SK_PASS
}

#[inline(always)]
fn steer(ctx: &SkLookupContext) -> Option<()> {
    // SAFETY: the context pointer is valid for the program's run.
    let l = unsafe { &*ctx.lookup };
    let cfg = GK_SIDE_CONFIG.get(0)?;
    if l.local_port < cfg.port_lo || l.local_port > cfg.port_hi {
        return None;
    }
    let ours = match l.family {
        AF_INET => {
            let mut hit = false;
            for i in 0..GK_SIDE_MAX_ADDRS {
                if (i as u32) < cfg.n_v4 && cfg.v4[i] == l.local_ip4 {
                    hit = true;
                }
            }
            hit
        }
        AF_INET6 => {
            let mut hit = false;
            for i in 0..GK_SIDE_MAX_ADDRS {
                if (i as u32) < cfg.n_v6 && cfg.v6[i] == l.local_ip6 {
                    hit = true;
                }
            }
            hit
        }
        _ => false,
    };
    if !ours {
        return None;
    }
    let slot = match l.protocol {
        IPPROTO_UDP => gk_side_sock::UDP,
        IPPROTO_TCP => gk_side_sock::TCP,
        _ => return None,
    };
    GK_SIDE_SOCKS.redirect_sk_lookup(ctx, slot, 0).ok()
}
