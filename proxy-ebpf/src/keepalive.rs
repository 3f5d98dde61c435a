//! `ras_fastpath`: answer learned endpoint keepalives (lightweight RRQ) with
//! XDP_TX, and pass everything else up.
//!
//! Like Katran, this is a cache the control plane fills: userspace answers an
//! endpoint's first keepalive itself, then stores in `KEEPALIVE` a hash of
//! that request (requestSeqNum masked), where its endpointIdentifier lies,
//! and the RCF it sent. Here we only check that a datagram is the same
//! request from the same source to one of the proxy's addresses, patch the
//! sequence number into the template and turn the frame around. Anything
//! that does not match exactly goes to userspace, counted by reason.

use aya_ebpf::{
    bindings::{BPF_FIB_LOOKUP_OUTPUT, bpf_fib_lookup as FibLookup, xdp_action},
    btf_maps::{Array, HashMap, PerCpuArray},
    cty::c_void,
    helpers::generated::{
        bpf_fib_lookup, bpf_jiffies64, bpf_ktime_get_coarse_ns, bpf_xdp_adjust_head,
        bpf_xdp_load_bytes,
    },
    macros::{btf_map, xdp},
    programs::XdpContext,
};
use proxy_common::{
    EndpointKey, FastpathSettings, GatekeeperLiveness, KA_MAX, KA_MIN, KA_SEQ_OFF, KeepaliveEntry,
    LocalAddr, MacKey, PacketCounter, PeerAddr, RAS_PORT, bench_stage, fold, ka_eid_hash,
    ka_request_hash, ka_slot,
};

use crate::parse::{IPPROTO_UDP, UDP_HLEN, Udp, at, udp_in};
use crate::ras_classify::{count_packet, count_ras};

/// No preallocation: memory is taken per learned endpoint, not up front.
const BPF_F_NO_PREALLOC: usize = 1;

/// Learned endpoints, by source address and port. The size is a default;
/// the daemon sets it from `[fastpath] max_endpoints` at load.
#[btf_map(pin_by_name)]
static KEEPALIVE: HashMap<EndpointKey, KeepaliveEntry, 262_144, BPF_F_NO_PREALLOC> = HashMap::new();

/// The proxy's own addresses: only keepalives sent to them are answered
/// (and only traffic to them counts as a gatekeeper's life, `liveness`).
#[btf_map(pin_by_name)]
pub(crate) static LOCAL_ADDRS: HashMap<LocalAddr, u32, 256> = HashMap::new();

/// Gatekeepers by address (filled by the control plane): the TC program
/// `gk_liveness` counts their traffic, and here a datagram claiming one of
/// their addresses from the wrong side is dropped.
#[btf_map(pin_by_name)]
pub(crate) static GK_LIVENESS: HashMap<PeerAddr, GatekeeperLiveness, 64> = HashMap::new();

/// The MACs frames may be addressed to, per interface: each interface's
/// own (the daemon adds it when it attaches) and the virtual MACs of the
/// VRRP/HSRP groups it serves. Checked with `check_macs`.
#[btf_map(pin_by_name)]
static OWN_MACS: HashMap<MacKey, u32, 64> = HashMap::new();

/// Fast-path settings, slot 0.
#[btf_map(pin_by_name)]
static FP_CONFIG: Array<FastpathSettings, 1> = Array::new();

/// Per-CPU cache of the coarse clock: (jiffies, `bpf_ktime_get_coarse_ns`
/// read at that jiffy).
#[btf_map]
static CLOCK: PerCpuArray<[u64; 2], 1> = PerCpuArray::new();

/// CLOCK_MONOTONIC at tick resolution, in ns. The coarse clock is enough for
/// a rate bound of a few answers per second and for the control plane's
/// refresh schedule; it moves only at a tick, so it is read once per jiffy
/// per CPU (reading it costs about as much as the rest of the answer's
/// rewrite; jiffies are one load). It may lag by one tick when read in the
/// moment between the jiffy and the clock update.
#[inline(always)]
fn coarse_now() -> u64 {
    // SAFETY: helpers without arguments.
    let j = unsafe { bpf_jiffies64() };
    let Some(c) = CLOCK.get_ptr_mut(0) else {
        return unsafe { bpf_ktime_get_coarse_ns() };
    };
    // SAFETY: per-CPU slot; one program run at a time uses it on this CPU.
    let c = unsafe { &mut *c };
    if c[0] != j || c[1] == 0 {
        c[0] = j;
        c[1] = unsafe { bpf_ktime_get_coarse_ns() };
    }
    c[1]
}

/// What became of each RAS datagram to the proxy (see `ka_slot`).
#[btf_map(pin_by_name)]
static KA_REASONS: PerCpuArray<PacketCounter, { ka_slot::COUNT as usize }> = PerCpuArray::new();

#[inline(always)]
fn count(slot: u32) {
    if let Some(c) = KA_REASONS.get_ptr_mut(slot) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU.
        unsafe { (*c).packets += 1 };
    }
}

/// Baseline for benchmarks: the cheapest XDP program there is.
#[xdp]
pub fn xdp_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

#[xdp]
pub fn ras_fastpath(ctx: XdpContext) -> u32 {
    fastpath::<{ bench_stage::ANSWERED }>(&ctx)
}

/// The fast path; benchmarks stop it early at `STAGE` (see
/// `proxy_common::bench_stage`) to see where the time goes. The program
/// attached to interfaces always runs it whole.
#[inline(always)]
pub fn fastpath<const STAGE: u32>(ctx: &XdpContext) -> u32 {
    let Some(cfg) = FP_CONFIG.get(0) else {
        return xdp_action::XDP_PASS;
    };
    let port = if cfg.ras_port == 0 {
        RAS_PORT
    } else {
        cfg.ras_port
    };
    let udp = match udp_in(ctx, port) {
        Ok(u) => u,
        Err(outcome) => {
            count_packet(outcome);
            return xdp_action::XDP_PASS;
        }
    };
    count_ras(&udp);
    let outcome = if udp.dport() != port {
        // From the RAS port (a gatekeeper's answer to the proxy): not ours
        // to answer, but not to be forged from this side either.
        Err(Pass(NOT_COUNTED))
    } else if cfg.answer == 0 {
        Err(Pass(ka_slot::OFF))
    } else if cfg.standby != 0 {
        // Only the owner of the pair's virtual address answers.
        Err(Pass(ka_slot::STANDBY))
    } else if STAGE == bench_stage::PARSED {
        return xdp_action::XDP_PASS;
    } else {
        answer::<STAGE>(ctx, &udp, cfg)
    };
    match outcome {
        Ok(action) => {
            count(ka_slot::ANSWERED);
            action
        }
        Err(Refusal::Drop(slot)) => {
            count(slot);
            xdp_action::XDP_DROP
        }
        // Only what goes up is checked for a forged gatekeeper source:
        // answered keepalives come from learned endpoints.
        Err(Refusal::Pass(_)) if cfg.check_macs != 0 && spoofed_gatekeeper(ctx, &udp) => {
            count(ka_slot::SPOOFED_GATEKEEPER);
            xdp_action::XDP_DROP
        }
        Err(Refusal::Pass(slot)) => {
            if slot != NOT_COUNTED {
                count(slot);
            }
            xdp_action::XDP_PASS
        }
    }
}

/// A pass that no `ka_slot` counts (a datagram from the RAS port).
const NOT_COUNTED: u32 = u32::MAX;

/// Whether a datagram claims a gatekeeper's source address (one in
/// `GK_LIVENESS`) but arrived on an interface the route back to that
/// address does not leave by: a strict reverse-path check for gatekeeper
/// sources only (loose or no `rp_filter` is common on routers, and the
/// heartbeat must not hear a LAN host speaking for the gatekeeper); no
/// route back at all is spoofed too. When the kernel cannot say
/// (forwarding off on the interface) it is not judged.
#[inline(always)]
fn spoofed_gatekeeper(ctx: &XdpContext, udp: &Udp) -> bool {
    use crate::parse::pkt::*;
    let mut p: FibLookup = unsafe { core::mem::zeroed() };
    let mut src = [0u8; 16];
    if udp.v6 {
        let Some(ip) = at(ctx, udp.l3, 40) else {
            return false;
        };
        // SAFETY (all loads): within the 40 bytes checked.
        let (s, d) = unsafe {
            (
                [ld64::<8>(ip), ld64::<16>(ip)],
                [ld64::<24>(ip), ld64::<32>(ip)],
            )
        };
        src = bytes_of(s);
        let w32 = |a: [u64; 2]| {
            [
                a[0] as u32,
                (a[0] >> 32) as u32,
                a[1] as u32,
                (a[1] >> 32) as u32,
            ]
        };
        p.family = 10;
        p.__bindgen_anon_3.ipv6_src = w32(d);
        p.__bindgen_anon_4.ipv6_dst = w32(s);
    } else {
        let Some(ip) = at(ctx, udp.l3, 20) else {
            return false;
        };
        // SAFETY: within the 20 bytes checked.
        let (s4, d4) = unsafe { (ld32::<12>(ip), ld32::<16>(ip)) };
        src[10] = 0xff;
        src[11] = 0xff;
        src[12..].copy_from_slice(&s4.to_le_bytes());
        p.family = 2;
        p.__bindgen_anon_3.ipv4_src = d4;
        p.__bindgen_anon_4.ipv4_dst = s4;
    }
    // SAFETY: read-only lookup of a plain-data value.
    if unsafe { GK_LIVENESS.get(&PeerAddr { addr: src }) }.is_none() {
        return false;
    }
    // SAFETY: the context's own field.
    let ifindex = unsafe { (*ctx.ctx).ingress_ifindex };
    p.l4_protocol = IPPROTO_UDP;
    p.ifindex = ifindex;
    // An input lookup, as the packet came in (an output lookup would be
    // held to the ingress interface by `ifindex`): the route back to the
    // gatekeeper, whose egress interface is compared.
    // SAFETY: the helper reads and writes `p` only, sized as passed.
    let rc = unsafe {
        bpf_fib_lookup(
            ctx.ctx as *mut c_void,
            &mut p,
            core::mem::size_of::<FibLookup>() as i32,
            0,
        )
    };
    match rc {
        // Success, or no neighbour entry yet: the egress interface is known.
        0 | 7 => p.ifindex != ifindex,
        // Blackhole, unreachable, prohibited, no route (or a local
        // address): no way back at all, as for a strict `rp_filter`.
        1..=4 => true,
        // Forwarding off on the interface, and the like: not judged.
        _ => false,
    }
}

enum Refusal {
    /// Leave it to userspace.
    Pass(u32),
    /// Over the rate bound, or a frame half rewritten: nobody answers it.
    Drop(u32),
}

use Refusal::Pass;

/// Fold a one's-complement sum held in 64 bits to 16.
#[inline(always)]
fn fold64(mut s: u64) -> u16 {
    s = (s & 0xffff_ffff) + (s >> 32);
    s = (s & 0xffff_ffff) + (s >> 32);
    fold(s as u32)
}

/// Checksums below are computed on header words as they lie in memory (a
/// big-endian field reads byte-swapped): a one's-complement sum of swapped
/// words is the swapped sum (RFC 1071, 2(B)), so the result is stored as it
/// comes out, without swapping every field on the way.
#[inline(always)]
fn mem16(v: u16) -> u64 {
    v.to_be() as u64
}

#[inline(always)]
fn answer<const STAGE: u32>(
    ctx: &XdpContext,
    udp: &Udp,
    cfg: &FastpathSettings,
) -> Result<u32, Refusal> {
    use crate::parse::pkt::*;
    // registrationRequest (root index 3) with the RRQ extension bit set:
    // keepAlive is an extension addition, so a lightweight RRQ has it.
    match udp.first {
        Some(Some(first)) if first & 0xfe == 0x0e => {}
        _ => return Err(Pass(ka_slot::NOT_KEEPALIVE)),
    }
    let len = udp.payload_len;
    if len > KA_MAX {
        return Err(Pass(ka_slot::LENGTH_MISMATCH));
    }
    if len < KA_MIN {
        return Err(Pass(ka_slot::LENGTH_MISMATCH));
    }
    if udp.ip_hlen != 20 && !udp.v6 {
        return Err(Pass(ka_slot::UNSUPPORTED_HEADERS));
    }
    let ip = at(ctx, udp.l3, 8).ok_or(Pass(ka_slot::LENGTH_MISMATCH))?;
    // SAFETY: within the 8 bytes checked.
    let ip_w0 = unsafe { ld64::<0>(ip) };
    // The IP length must say what the UDP length says (bytes past it are
    // link-layer padding).
    let (ip_len, headers) = if udp.v6 {
        (u16::from_be((ip_w0 >> 32) as u16), UDP_HLEN)
    } else {
        (u16::from_be((ip_w0 >> 16) as u16), 20 + UDP_HLEN)
    };
    if ip_len as usize != headers + len {
        return Err(Pass(ka_slot::LENGTH_MISMATCH));
    }
    let end = ctx.data_end();
    let req = at(ctx, udp.payload(), KA_MIN).ok_or(Pass(ka_slot::LENGTH_MISMATCH))?;
    if offset(req, len) > end {
        // The UDP length claims more than the frame holds.
        return Err(Pass(ka_slot::LENGTH_MISMATCH));
    }
    // The addresses as words in memory order: the key, the local-address
    // check and the pseudo-header sum all use them that way.
    let (src, dst, addr_sum) = if udp.v6 {
        let ip = at(ctx, udp.l3, 40).ok_or(Pass(ka_slot::UNSUPPORTED_HEADERS))?;
        // SAFETY (all loads): within the 40 bytes checked.
        let s = unsafe { [ld64::<8>(ip), ld64::<16>(ip)] };
        let d = unsafe { [ld64::<24>(ip), ld64::<32>(ip)] };
        // IPv4-mapped addresses would alias IPv4 endpoints and addresses.
        let mapped = |a: [u64; 2]| a[0] == 0 && a[1] & 0xffff_ffff == 0xffff_0000;
        if mapped(s) || mapped(d) {
            return Err(Pass(ka_slot::UNSUPPORTED_HEADERS));
        }
        let half = |w: u64| (w & 0xffff_ffff) + (w >> 32);
        (s, d, half(s[0]) + half(s[1]) + half(d[0]) + half(d[1]))
    } else {
        let ip = at(ctx, udp.l3, 20).ok_or(Pass(ka_slot::UNSUPPORTED_HEADERS))?;
        // SAFETY: within the 20 bytes checked.
        let (s4, d4) = unsafe { (ld32::<12>(ip) as u64, ld32::<16>(ip) as u64) };
        // ::ffff:a.b.c.d, the encoding of `EndpointKey` and `LocalAddr`.
        let mapped = |a: u64| [0, 0xffff_0000 | (a << 32)];
        (mapped(s4), mapped(d4), s4 + d4)
    };
    // The configured endpoint address first (two word compares), then the
    // map of every local address.
    let hot = cfg.has_endpoint_addr != 0 && words_of(&cfg.endpoint_addr) == dst;
    // SAFETY: read-only lookup of a plain-data value.
    if !hot
        && unsafe {
            LOCAL_ADDRS.get(&LocalAddr {
                addr: bytes_of(dst),
            })
        }
        .is_none()
    {
        return Err(Pass(ka_slot::NOT_FOR_PROXY));
    }
    let ports = udp.ports;
    let key = EndpointKey {
        addr: bytes_of(src),
        port: udp.sport(),
        pad: 0,
    };
    let e = KEEPALIVE
        .get_ptr_mut(&key)
        .ok_or(Pass(ka_slot::UNKNOWN_SOURCE))?;
    // SAFETY: a map value stays valid for this program run; concurrent
    // updates from userspace replace it whole (the worst case is one answer
    // from the previous template).
    let e = unsafe { &mut *e };
    if e.req_len as usize != len {
        return Err(Pass(ka_slot::LENGTH_MISMATCH));
    }
    if STAGE == bench_stage::LOOKED_UP {
        return Err(Pass(ka_slot::OFF));
    }
    if e.eid_off as usize + e.eid_len as usize > len {
        // An entry that does not fit its own request: never answered.
        return Err(Pass(ka_slot::IDENTIFIER_MISMATCH));
    }
    // The request's 8-byte words, read in place. The last, partial word is
    // read as the eight bytes that end the request, shifted down.
    let full = |i: usize| {
        let q = offset(req, i * 8);
        // SAFETY: the 8 bytes at `q` are in the packet (checked first).
        (q + 8 <= end).then(|| unsafe { ld64::<0>(q) })
    };
    let tail = || {
        // `len` is 16..=112 here; the mask shows the verifier a bound.
        let q = offset(req, (len - 8) & 127);
        // SAFETY: as above.
        (q + 8 <= end).then(|| unsafe { ld64::<0>(q) } >> (8 * (8 - len % 8)))
    };
    // `None` only if the frame were shorter than checked above.
    let hash = ka_request_hash(len, full, tail).ok_or(Pass(ka_slot::LENGTH_MISMATCH))?;
    if hash != e.req_hash {
        // Not the learned request; say whether its identifier differs.
        return Err(Pass(identifier_or_content(ctx, udp.payload(), len, e)));
    }
    if STAGE == bench_stage::HASHED {
        return Err(Pass(ka_slot::OFF));
    }
    let rcf_len = e.rcf_len as usize;
    // Plain comparisons on `rcf_len` itself (see `len` above).
    if rcf_len > KA_MAX {
        return Err(Pass(ka_slot::REWRITE_FAILED));
    }
    if rcf_len < KA_MIN {
        return Err(Pass(ka_slot::REWRITE_FAILED));
    }

    // Before the rate bound: a replay from another MAC must not spend the
    // endpoint's answers.
    if cfg.check_macs != 0 {
        check_macs(ctx, udp.v6, e, src, dst)?;
    }

    // Per-endpoint rate bound (GCRA): answers may run `rate_slack_ns` ahead
    // of one per `rate_interval_ns`. Past it, userspace decides (within
    // the source's own budget there): a burst is never simply lost.
    let now = coarse_now();
    let tat = if e.tat_ns > now { e.tat_ns } else { now };
    if cfg.rate_interval_ns != 0 && tat - now > cfg.rate_slack_ns {
        return Err(Pass(ka_slot::RATE_LIMITED));
    }

    // Read what the answer keeps of the request's headers, in memory order.
    let l2 = at(ctx, 0, 22).ok_or(Pass(ka_slot::REWRITE_FAILED))?;
    // SAFETY (all loads): within the 22 bytes checked; frames this long
    // hold Ethernet, the tags and more.
    let (mac_lo, mac_hi) = unsafe { (ld64::<0>(l2), ld32::<8>(l2) as u64) };
    // The EtherType and any tags (bytes 12..l3); reading to byte 22 takes
    // some IP header bytes too, which are rewritten after.
    let (tags_lo, tags_hi) = unsafe { (ld64::<12>(l2), ld16::<20>(l2)) };
    let udp_len = (UDP_HLEN + rcf_len) as u16;
    let udp_len_m = mem16(udp_len);
    // DSCP is kept, ECN cleared: the answer is not part of the request's
    // congestion signalling.
    let ip_w0_ecn = if udp.v6 {
        ip_w0 & !0x3000
    } else {
        ip_w0 & !0x0300
    };
    // The new IPv4 header checksum: updated for the three words that change
    // (version with TOS; total length; TTL with protocol), RFC 1624 eqn. 3;
    // swapping the addresses leaves the sum as it was.
    let ip_tail = if udp.v6 {
        0
    } else {
        let ipx = at(ctx, udp.l3, 12).ok_or(Pass(ka_slot::REWRITE_FAILED))?;
        // SAFETY: within the 12 bytes checked.
        let w1 = unsafe { ld32::<8>(ipx) } as u64;
        let old_len = (ip_w0 >> 16) & 0xffff;
        let old_ttl = w1 & 0xffff;
        let old_csum = w1 >> 16;
        let new_ttl = 64 | (IPPROTO_UDP as u64) << 8;
        let sum = (!old_csum & 0xffff)
            + (!ip_w0 & 0xffff)
            + (ip_w0_ecn & 0xffff)
            + (!old_len & 0xffff)
            + mem16(20 + udp_len)
            + (!old_ttl & 0xffff)
            + new_ttl;
        new_ttl | ((!fold64(sum)) as u64) << 16
    };
    let new_ip_w0 = if udp.v6 {
        // Flow label kept, payload length, next header UDP, hop limit 64.
        (ip_w0_ecn & 0xffff_ffff) | udp_len_m << 32 | (IPPROTO_UDP as u64) << 48 | 64 << 56
    } else {
        (ip_w0_ecn & !0xffff_0000) | mem16(20 + udp_len) << 16
    };
    // UDP: ports swapped, new length, checksum over pseudo-header, header and
    // the template (its sum precomputed by userspace) plus the sequence number.
    // SAFETY: `req` has KA_MIN bytes.
    let w0 = unsafe { ld64::<0>(req) };
    let seq_m = (w0 >> (8 * KA_SEQ_OFF)) & 0xffff;
    let sum = addr_sum
        + mem16(IPPROTO_UDP as u16)
        + 2 * udp_len_m
        + (ports & 0xffff) as u64
        + (ports >> 16) as u64
        + mem16(e.rcf_csum)
        + seq_m;
    let mut c = !fold64(sum);
    if c == 0 {
        c = 0xffff;
    }
    let new_udp = ports.rotate_left(16) as u64 | udp_len_m << 32 | (c as u64) << 48;

    // Resize at the head: drivers guarantee XDP headroom, but not tailroom
    // (a veth hands over skb data sized to the request).
    let delta = rcf_len as i32 - len as i32;
    if delta != 0 {
        // SAFETY: the helper checks the new start against the headroom.
        if unsafe { bpf_xdp_adjust_head(ctx.ctx, -delta) } != 0 {
            return Err(Pass(ka_slot::NO_HEADROOM));
        }
    }
    // From here on the frame is no longer the request: a failure (none is
    // expected, the lengths were checked) drops it rather than pass a
    // half-written frame to the stack.
    // Write the headers at the new start, then the template with the
    // request's sequence number in it (the template has zeros there).
    let l2 = at(ctx, 0, 22).ok_or(Refusal::Drop(ka_slot::REWRITE_FAILED))?;
    // SAFETY (all stores): within the ranges checked.
    unsafe {
        st64::<0>(l2, (mac_lo >> 48) | (mac_hi << 16) | (mac_lo << 48));
        st32::<8>(l2, (mac_lo >> 16) as u32);
        st64::<12>(l2, tags_lo);
        st16::<20>(l2, tags_hi);
    }
    if udp.v6 {
        let ip = at(ctx, udp.l3, 48).ok_or(Refusal::Drop(ka_slot::REWRITE_FAILED))?;
        // SAFETY: within the 48 bytes checked.
        unsafe {
            st64::<0>(ip, new_ip_w0);
            st64::<8>(ip, dst[0]);
            st64::<16>(ip, dst[1]);
            st64::<24>(ip, src[0]);
            st64::<32>(ip, src[1]);
            st64::<40>(ip, new_udp);
        }
    } else {
        let ip = at(ctx, udp.l3, 28).ok_or(Refusal::Drop(ka_slot::REWRITE_FAILED))?;
        // SAFETY: within the 28 bytes checked.
        unsafe {
            st64::<0>(ip, new_ip_w0);
            st32::<8>(ip, ip_tail as u32);
            st64::<12>(ip, (dst[1] >> 32) | (src[1] >> 32) << 32);
            st64::<20>(ip, new_udp);
        }
    }
    // SAFETY: `RcfBytes` is 8-byte aligned and KA_MAX (a multiple of 8)
    // bytes long: the same memory as KA_MAX / 8 words.
    let tpl = unsafe { &*(e.rcf.bytes.as_ptr() as *const [u64; KA_MAX / 8]) };
    let seq_bits = 0xffffu64 << (8 * KA_SEQ_OFF);
    let t0 = (tpl[0] & !seq_bits) | (w0 & seq_bits);
    let t = |i: usize| match i {
        0 => t0,
        _ => tpl.get(i).copied().unwrap_or(0),
    };
    let end = ctx.data_end();
    let out = at(ctx, udp.payload(), 8).ok_or(Refusal::Drop(ka_slot::REWRITE_FAILED))?;
    let mut i = 0;
    while i < KA_MAX / 8 {
        if i * 8 + 8 > rcf_len {
            break;
        }
        let q = offset(out, i * 8);
        if q + 8 > end {
            return Err(Refusal::Drop(ka_slot::REWRITE_FAILED));
        }
        // SAFETY: the 8 bytes at `q` are in the packet (checked above).
        unsafe { st64::<0>(q, t(i)) };
        i += 1;
    }
    if rcf_len % 8 != 0 {
        // The last, partial word: the eight bytes that end the answer
        // (overlapping the word before with the same bytes). `rcf_len` is
        // 16..=112, so they are past requestSeqNum and inside the template.
        let start = rcf_len - 8;
        // SAFETY: bytes start..rcf_len of the template.
        let last = unsafe { ld64::<0>(offset(e.rcf.bytes.as_ptr() as usize, start)) };
        let q = offset(out, start & 127);
        if q + 8 > end {
            return Err(Refusal::Drop(ka_slot::REWRITE_FAILED));
        }
        // SAFETY: the 8 bytes at `q` are in the packet (checked above).
        unsafe { st64::<0>(q, last) };
    }

    if cfg.rate_interval_ns != 0 {
        e.tat_ns = tat + cfg.rate_interval_ns;
    }
    e.last_ns = now;
    e.answered += 1;
    Ok(xdp_action::XDP_TX)
}

/// The frame's MACs. It must be addressed to one of ours on the interface
/// it came in on (a promiscuous or bridged port sees frames for other
/// hosts), and come from the endpoint's MAC: the one the kernel would send
/// the answer to (its neighbour entry, or the gateway's for an endpoint
/// behind a router), learned into the entry at the first answer and asked
/// again only when a frame differs, so a changed NIC is followed and a
/// replay from another host is not.
#[inline(always)]
fn check_macs(
    ctx: &XdpContext,
    v6: bool,
    e: &mut KeepaliveEntry,
    src: [u64; 2],
    dst: [u64; 2],
) -> Result<(), Refusal> {
    use crate::parse::pkt::*;
    let l2 = at(ctx, 0, 12).ok_or(Pass(ka_slot::REWRITE_FAILED))?;
    // SAFETY: within the 12 bytes checked.
    let (w0, w1) = unsafe { (ld64::<0>(l2), ld32::<8>(l2) as u64) };
    let to = w0 & 0xffff_ffff_ffff;
    let from = (w0 >> 48) | (w1 << 16);
    // SAFETY: the context's own field.
    let ifindex = unsafe { (*ctx.ctx).ingress_ifindex };
    let key = MacKey {
        ifindex,
        mac: mac_bytes(to),
        pad: 0,
    };
    // SAFETY: read-only lookup of a plain-data value.
    if unsafe { OWN_MACS.get(&key) }.is_none() {
        return Err(Pass(ka_slot::NOT_OUR_MAC));
    }
    let learned = mac_word(&e.src_mac);
    if learned != 0 && learned == from {
        return Ok(());
    }
    let Some(theirs) = neighbour(ctx, ifindex, v6, src, dst) else {
        return Err(Pass(ka_slot::MAC_UNRESOLVED));
    };
    if theirs != from {
        return Err(Refusal::Drop(ka_slot::SOURCE_MAC_MISMATCH));
    }
    e.src_mac = mac_bytes(theirs);
    Ok(())
}

/// The MAC the kernel sends to for `endpoint` (as the answer would go:
/// from `local`, out of `ifindex`), from its routing and neighbour tables;
/// `None` when there is no resolved neighbour (or forwarding is off on the
/// interface: `bpf_fib_lookup` needs it).
#[inline(always)]
fn neighbour(
    ctx: &XdpContext,
    ifindex: u32,
    v6: bool,
    endpoint: [u64; 2],
    local: [u64; 2],
) -> Option<u64> {
    // SAFETY: a plain C struct; all zero is its empty value.
    let mut p: FibLookup = unsafe { core::mem::zeroed() };
    p.l4_protocol = IPPROTO_UDP;
    p.ifindex = ifindex;
    let w32 = |a: [u64; 2]| {
        [
            a[0] as u32,
            (a[0] >> 32) as u32,
            a[1] as u32,
            (a[1] >> 32) as u32,
        ]
    };
    if v6 {
        p.family = 10;
        p.__bindgen_anon_3.ipv6_src = w32(local);
        p.__bindgen_anon_4.ipv6_dst = w32(endpoint);
    } else {
        p.family = 2;
        p.__bindgen_anon_3.ipv4_src = (local[1] >> 32) as u32;
        p.__bindgen_anon_4.ipv4_dst = (endpoint[1] >> 32) as u32;
    }
    // SAFETY: the helper reads and writes `p` only, sized as passed.
    let rc = unsafe {
        bpf_fib_lookup(
            ctx.ctx as *mut c_void,
            &mut p,
            core::mem::size_of::<FibLookup>() as i32,
            BPF_FIB_LOOKUP_OUTPUT,
        )
    };
    if rc != 0 {
        return None;
    }
    // SAFETY: on success the helper filled the MACs.
    Some(mac_word(
        &unsafe { p.__bindgen_anon_6.__bindgen_anon_2 }.dmac,
    ))
}

/// Six MAC bytes from the low 48 bits of a word in memory order.
#[inline(always)]
fn mac_bytes(w: u64) -> [u8; 6] {
    let b = w.to_le_bytes();
    [b[0], b[1], b[2], b[3], b[4], b[5]]
}

/// A MAC as the low 48 bits of a word in memory order.
#[inline(always)]
fn mac_word(m: &[u8; 6]) -> u64 {
    u64::from_le_bytes([m[0], m[1], m[2], m[3], m[4], m[5], 0, 0])
}

/// A local address as two words.
#[inline(always)]
fn words_of(a: &LocalAddr) -> [u64; 2] {
    // SAFETY: `LocalAddr` is 16 bytes, 8-byte aligned.
    unsafe { *(a as *const LocalAddr as *const [u64; 2]) }
}

/// Two words in memory order as the sixteen bytes they hold.
#[inline(always)]
fn bytes_of(w: [u64; 2]) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&w[0].to_le_bytes());
    out[8..].copy_from_slice(&w[1].to_le_bytes());
    out
}

/// Why a request from a learned source did not match: a different
/// endpointIdentifier, or other content. The rare path, so the request is
/// copied out with a helper rather than read word by word in place.
#[inline(always)]
fn identifier_or_content(ctx: &XdpContext, payload: usize, len: usize, e: &KeepaliveEntry) -> u32 {
    let eid_len = e.eid_len as usize;
    let eid_off = e.eid_off as usize;
    if eid_off + eid_len > len {
        return ka_slot::IDENTIFIER_MISMATCH;
    }
    // Zero past the request's end, as the hash expects.
    let mut words = [0u64; 16];
    // SAFETY: the helper writes at most 128 bytes into the 128-byte buffer
    // (`len` is 16..=112, the mask shows the verifier a bound) and checks
    // the packet bounds itself.
    let rc = unsafe {
        bpf_xdp_load_bytes(
            ctx.ctx,
            payload as u32,
            words.as_mut_ptr() as *mut c_void,
            (((len - 1) & 127) + 1) as u32,
        )
    };
    if rc != 0 {
        return ka_slot::LENGTH_MISMATCH;
    }
    if ka_eid_hash(eid_off, eid_len, |i| words.get(i).copied().unwrap_or(0)) != e.eid_hash {
        ka_slot::IDENTIFIER_MISMATCH
    } else {
        ka_slot::CONTENT_MISMATCH
    }
}
