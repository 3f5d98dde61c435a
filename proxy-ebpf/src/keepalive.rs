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
    bindings::xdp_action,
    btf_maps::{Array, HashMap, PerCpuArray},
    cty::c_void,
    helpers::generated::{
        bpf_ktime_get_coarse_ns, bpf_xdp_adjust_head, bpf_xdp_load_bytes, bpf_xdp_store_bytes,
    },
    macros::{btf_map, xdp},
    programs::XdpContext,
};
use proxy_common::{
    EndpointKey, FastpathSettings, KA_MAX, KA_MIN, KA_SEQ_OFF, KeepaliveEntry, LocalAddr,
    PacketCounter, RAS_PORT, bench_stage, fold, ka_eid_hash, ka_request_hash, ka_slot,
};

use crate::parse::{Buf, FRAME_BUF, UDP_HLEN, Udp, load_frame, udp_in};
use crate::ras_classify::{count_packet, count_ras, first_byte};

/// No preallocation: memory is taken per learned endpoint, not up front.
const BPF_F_NO_PREALLOC: usize = 1;

/// Learned endpoints, by source address and port. The size is a default;
/// the daemon sets it from `[fastpath] max_endpoints` at load.
#[btf_map(pin_by_name)]
static KEEPALIVE: HashMap<EndpointKey, KeepaliveEntry, 262_144, BPF_F_NO_PREALLOC> = HashMap::new();

/// The proxy's own addresses: only keepalives sent to them are answered.
#[btf_map(pin_by_name)]
static LOCAL_ADDRS: HashMap<LocalAddr, u32, 256> = HashMap::new();

/// Fast-path settings, slot 0.
#[btf_map(pin_by_name)]
static FP_CONFIG: Array<FastpathSettings, 1> = Array::new();

/// Words of the payload buffer: 128 bytes, a power of two the verifier can
/// see lengths masked to (requests and answers are at most 112).
const PAYLOAD_WORDS: usize = 16;

/// Per-CPU copy of the request's UDP payload as 8-byte words, then of the
/// answer's: the frame buffer holds it at an offset that depends on the
/// headers, so reading it there goes byte by byte; here every word is one
/// aligned load.
#[btf_map]
static PAYLOAD: PerCpuArray<[u64; PAYLOAD_WORDS], 1> = PerCpuArray::new();

/// A length of 1..=128 (the value itself when it is in that range) in a form
/// whose bounds the verifier sees.
#[inline(always)]
fn payload_len(n: usize) -> usize {
    ((n - 1) & (PAYLOAD_WORDS * 8 - 1)) + 1
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
    let settings = FP_CONFIG.get(0).copied().unwrap_or_default();
    let port = if settings.ras_port == 0 {
        RAS_PORT
    } else {
        settings.ras_port
    };
    // One copy of the frame's head; everything below reads and rewrites it
    // in memory.
    let (buf, n) = match load_frame(ctx) {
        Ok(v) => v,
        Err(outcome) => {
            count_packet(outcome);
            return xdp_action::XDP_PASS;
        }
    };
    let udp = match udp_in(buf, n, port) {
        Ok(u) => u,
        Err(outcome) => {
            count_packet(outcome);
            return xdp_action::XDP_PASS;
        }
    };
    count_ras(&udp, first_byte(buf, n, &udp));
    if udp.dport != port {
        // From the RAS port (a gatekeeper's answer to the proxy): not ours.
        return xdp_action::XDP_PASS;
    }
    if settings.answer == 0 {
        count(ka_slot::OFF);
        return xdp_action::XDP_PASS;
    }
    if STAGE == bench_stage::PARSED {
        return xdp_action::XDP_PASS;
    }
    match answer::<STAGE>(ctx, buf, n, &udp, &settings) {
        Ok(action) => {
            count(ka_slot::ANSWERED);
            action
        }
        Err(Refusal::Drop(slot)) => {
            count(slot);
            xdp_action::XDP_DROP
        }
        Err(Refusal::Pass(slot)) => {
            count(slot);
            xdp_action::XDP_PASS
        }
    }
}

enum Refusal {
    /// Leave it to userspace.
    Pass(u32),
    /// Over the rate bound: nobody answers it.
    Drop(u32),
}

use Refusal::Pass;

/// `N` bytes of the buffer at `off`.
#[inline(always)]
fn get<const N: usize>(buf: &Buf, off: usize) -> Option<[u8; N]> {
    let s = buf.get(off..off + N)?;
    let mut out = [0u8; N];
    out.copy_from_slice(s);
    Some(out)
}

/// A local address as two words.
#[inline(always)]
fn words_of(a: &LocalAddr) -> [u64; 2] {
    // SAFETY: `LocalAddr` is 16 bytes, 8-byte aligned.
    unsafe { *(a as *const LocalAddr as *const [u64; 2]) }
}

/// Sixteen address bytes as two little-endian words.
#[inline(always)]
fn words16(a: &[u8; 16]) -> [u64; 2] {
    let mut lo = [0u8; 8];
    let mut hi = [0u8; 8];
    lo.copy_from_slice(&a[..8]);
    hi.copy_from_slice(&a[8..]);
    [u64::from_le_bytes(lo), u64::from_le_bytes(hi)]
}

/// Write `bytes` at `off`.
#[inline(always)]
fn put(buf: &mut Buf, off: usize, bytes: &[u8]) -> Option<()> {
    buf.get_mut(off..off + bytes.len())?.copy_from_slice(bytes);
    Some(())
}

#[inline(always)]
fn answer<const STAGE: u32>(
    ctx: &XdpContext,
    buf: &mut Buf,
    n: usize,
    udp: &Udp,
    cfg: &FastpathSettings,
) -> Result<u32, Refusal> {
    let rewrite = Pass(ka_slot::REWRITE_FAILED);
    // registrationRequest (root index 3) with the RRQ extension bit set:
    // keepAlive is an extension addition, so a lightweight RRQ has it.
    let first = get::<1>(buf, udp.payload).ok_or(Pass(ka_slot::NOT_KEEPALIVE))?[0];
    if first & 0xfe != 0x0e {
        return Err(Pass(ka_slot::NOT_KEEPALIVE));
    }
    let len = udp.payload_len;
    if len > KA_MAX {
        return Err(Pass(ka_slot::LENGTH_MISMATCH));
    }
    if len < KA_MIN {
        return Err(Pass(ka_slot::LENGTH_MISMATCH));
    }
    if udp.payload + len > n {
        // The UDP length claims more than the frame holds.
        return Err(Pass(ka_slot::LENGTH_MISMATCH));
    }
    if !udp.v6 && udp.ip_hlen != 20 {
        return Err(Pass(ka_slot::UNSUPPORTED_HEADERS));
    }
    let mut src = [0u8; 16];
    let mut dst = [0u8; 16];
    // One's-complement sum of both addresses, for the UDP pseudo-header
    // (swapping them changes nothing).
    let mut addr_sum: u32 = 0;
    if udp.v6 {
        src = get::<16>(buf, udp.l3 + 8).ok_or(Pass(ka_slot::UNSUPPORTED_HEADERS))?;
        dst = get::<16>(buf, udp.l3 + 24).ok_or(Pass(ka_slot::UNSUPPORTED_HEADERS))?;
        for i in 0..8 {
            addr_sum += u16::from_be_bytes([src[2 * i], src[2 * i + 1]]) as u32;
            addr_sum += u16::from_be_bytes([dst[2 * i], dst[2 * i + 1]]) as u32;
        }
    } else {
        let s4 = get::<4>(buf, udp.l3 + 12).ok_or(Pass(ka_slot::UNSUPPORTED_HEADERS))?;
        let d4 = get::<4>(buf, udp.l3 + 16).ok_or(Pass(ka_slot::UNSUPPORTED_HEADERS))?;
        src[10] = 0xff;
        src[11] = 0xff;
        dst[10] = 0xff;
        dst[11] = 0xff;
        src[12..].copy_from_slice(&s4);
        dst[12..].copy_from_slice(&d4);
        let (s4, d4) = (u32::from_be_bytes(s4), u32::from_be_bytes(d4));
        addr_sum = (s4 >> 16) + (s4 & 0xffff) + (d4 >> 16) + (d4 & 0xffff);
    }
    // The configured endpoint address first (two word compares), then the
    // map of every local address.
    let hot = cfg.has_endpoint_addr != 0 && words_of(&cfg.endpoint_addr) == words16(&dst);
    // SAFETY: read-only lookup of a plain-data value.
    if !hot && unsafe { LOCAL_ADDRS.get(&LocalAddr { addr: dst }) }.is_none() {
        return Err(Pass(ka_slot::NOT_FOR_PROXY));
    }
    let ports = get::<4>(buf, udp.l4).ok_or(Pass(ka_slot::UNSUPPORTED_HEADERS))?;
    let sport = u16::from_be_bytes([ports[0], ports[1]]);
    let dport = u16::from_be_bytes([ports[2], ports[3]]);
    let key = EndpointKey {
        addr: src,
        port: sport,
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
    // The request as aligned words (`len` is 16..=112, checked above),
    // zero past its end as the hash expects: only the last word can hold
    // bytes of an earlier packet, so it is cleared before the load.
    let words = PAYLOAD
        .get_ptr_mut(0)
        .ok_or(Pass(ka_slot::CONTENT_MISMATCH))?;
    // SAFETY: per-CPU slot; one program run at a time uses it on this CPU.
    let words = unsafe { &mut *words };
    words[(len / 8) & (PAYLOAD_WORDS - 1)] = 0;
    // SAFETY: the helper writes at most 128 bytes into the 128-byte buffer
    // and checks the packet bounds itself.
    let rc = unsafe {
        bpf_xdp_load_bytes(
            ctx.ctx,
            udp.payload as u32,
            words.as_mut_ptr() as *mut c_void,
            payload_len(len) as u32,
        )
    };
    if rc != 0 {
        return Err(Pass(ka_slot::LENGTH_MISMATCH));
    }
    let eid_len = e.eid_len as usize;
    let eid_off = e.eid_off as usize;
    if eid_off + eid_len > len {
        return Err(Pass(ka_slot::IDENTIFIER_MISMATCH));
    }
    let word = |i: usize| words.get(i).copied().unwrap_or(0);
    if ka_request_hash(len, word) != e.req_hash {
        // Not the learned request; say whether its identifier differs.
        if ka_eid_hash(eid_off, eid_len, word) != e.eid_hash {
            return Err(Pass(ka_slot::IDENTIFIER_MISMATCH));
        }
        return Err(Pass(ka_slot::CONTENT_MISMATCH));
    }
    if STAGE == bench_stage::HASHED {
        return Err(Pass(ka_slot::OFF));
    }
    let rcf_len = e.rcf_len as usize;
    // Plain comparisons on `rcf_len` itself (see `len` above).
    if rcf_len > KA_MAX {
        return Err(rewrite);
    }
    if rcf_len < 8 {
        return Err(Pass(ka_slot::REWRITE_FAILED));
    }

    // Per-endpoint rate bound (GCRA): answers may run `rate_slack_ns` ahead
    // of one per `rate_interval_ns`.
    // The coarse clock (tick resolution) is enough for a rate bound of a
    // few answers per second and for the control plane's refresh schedule,
    // and costs no clock-source read.
    // SAFETY: helper without arguments.
    let now = unsafe { bpf_ktime_get_coarse_ns() };
    if cfg.rate_interval_ns != 0 {
        let tat = if e.tat_ns > now { e.tat_ns } else { now };
        if tat - now > cfg.rate_slack_ns {
            return Err(Refusal::Drop(ka_slot::RATE_LIMITED));
        }
        e.tat_ns = tat + cfg.rate_interval_ns;
    }

    // Build the answer's headers in the buffer.
    let w0 = words[0];
    let seq = [
        (w0 >> (8 * KA_SEQ_OFF)) as u8,
        (w0 >> (8 * KA_SEQ_OFF + 8)) as u8,
    ];
    let macs = get::<12>(buf, 0).ok_or(Pass(ka_slot::REWRITE_FAILED))?;
    let mut swapped = [0u8; 12];
    swapped[..6].copy_from_slice(&macs[6..]);
    swapped[6..].copy_from_slice(&macs[..6]);
    put(buf, 0, &swapped).ok_or(Pass(ka_slot::REWRITE_FAILED))?;
    let udp_len = (UDP_HLEN + rcf_len) as u16;
    let mut sum = addr_sum;
    if udp.v6 {
        put(buf, udp.l3 + 4, &udp_len.to_be_bytes()).ok_or(Pass(ka_slot::REWRITE_FAILED))?;
        put(buf, udp.l3 + 7, &[64]).ok_or(Pass(ka_slot::REWRITE_FAILED))?;
        put(buf, udp.l3 + 8, &dst).ok_or(Pass(ka_slot::REWRITE_FAILED))?;
        put(buf, udp.l3 + 24, &src).ok_or(Pass(ka_slot::REWRITE_FAILED))?;
    } else {
        // The header checksum is updated for the two words that change
        // (total length; TTL with protocol), RFC 1624 eqn. 3; swapping the
        // addresses leaves the sum as it was.
        let old = get::<12>(buf, udp.l3).ok_or(Pass(ka_slot::REWRITE_FAILED))?;
        let old_len = u16::from_be_bytes([old[2], old[3]]);
        let old_ttl = u16::from_be_bytes([old[8], old[9]]);
        let old_csum = u16::from_be_bytes([old[10], old[11]]);
        let new_len = 20 + udp_len;
        let new_ttl = (64u16 << 8) | old[9] as u16;
        let ipsum = (!old_csum) as u32
            + (!old_len) as u32
            + new_len as u32
            + (!old_ttl) as u32
            + new_ttl as u32;
        let c = !fold(ipsum);
        let mut f = [0u8; 10];
        f[0..2].copy_from_slice(&new_len.to_be_bytes());
        f[2..6].copy_from_slice(&old[4..8]);
        f[6] = 64;
        f[7] = old[9];
        f[8..10].copy_from_slice(&c.to_be_bytes());
        put(buf, udp.l3 + 2, &f).ok_or(Pass(ka_slot::REWRITE_FAILED))?;
        put(buf, udp.l3 + 12, &dst[12..]).ok_or(Pass(ka_slot::REWRITE_FAILED))?;
        put(buf, udp.l3 + 16, &src[12..]).ok_or(Pass(ka_slot::REWRITE_FAILED))?;
    }
    // UDP: ports swapped, new length, checksum over pseudo-header, header and
    // the template (its sum precomputed by userspace) plus the sequence number.
    sum += 17 + 2 * udp_len as u32 + sport as u32 + dport as u32;
    sum += e.rcf_csum as u32 + u16::from_be_bytes(seq) as u32;
    let mut c = !fold(sum);
    if c == 0 {
        c = 0xffff;
    }
    let mut uh = [0u8; 8];
    uh[0..2].copy_from_slice(&dport.to_be_bytes());
    uh[2..4].copy_from_slice(&sport.to_be_bytes());
    uh[4..6].copy_from_slice(&udp_len.to_be_bytes());
    uh[6..8].copy_from_slice(&c.to_be_bytes());
    put(buf, udp.l4, &uh).ok_or(Pass(ka_slot::REWRITE_FAILED))?;

    // Resize at the head: drivers guarantee XDP headroom, but not tailroom
    // (a veth hands over skb data sized to the request).
    let delta = rcf_len as i32 - len as i32;
    if delta != 0 {
        // SAFETY: the helper checks the new start against the headroom.
        if unsafe { bpf_xdp_adjust_head(ctx.ctx, -delta) } != 0 {
            return Err(Pass(ka_slot::NO_HEADROOM));
        }
    }
    // Write back: the headers from the frame buffer, then the template with
    // the request's sequence number in it (the template has zeros there).
    let hdr = ((udp.payload - 1) & (FRAME_BUF - 1)) + 1;
    // SAFETY: the helper reads `hdr` (1..=256) bytes of the buffer and
    // checks the packet bounds itself.
    let rc =
        unsafe { bpf_xdp_store_bytes(ctx.ctx, 0, buf.as_mut_ptr() as *mut c_void, hdr as u32) };
    if rc != 0 {
        return Err(Pass(ka_slot::REWRITE_FAILED));
    }
    // SAFETY: `RcfBytes` is 8-byte aligned and KA_MAX (a multiple of 8)
    // bytes long: the same memory as KA_MAX / 8 words.
    let tpl = unsafe { &*(e.rcf.bytes.as_ptr() as *const [u64; KA_MAX / 8]) };
    for (w, t) in words.iter_mut().zip(tpl.iter()) {
        *w = *t;
    }
    let seq_bits = 0xffffu64 << (8 * KA_SEQ_OFF);
    words[0] = (words[0] & !seq_bits) | (w0 & seq_bits);
    // SAFETY: the helper reads at most 128 bytes of the 128-byte buffer and
    // checks the packet bounds itself.
    let rc = unsafe {
        bpf_xdp_store_bytes(
            ctx.ctx,
            hdr as u32,
            words.as_mut_ptr() as *mut c_void,
            payload_len(rcf_len) as u32,
        )
    };
    if rc != 0 {
        return Err(Pass(ka_slot::REWRITE_FAILED));
    }

    e.last_ns = now;
    e.answered += 1;
    Ok(xdp_action::XDP_TX)
}
