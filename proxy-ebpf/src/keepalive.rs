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
    helpers::generated::{bpf_ktime_get_ns, bpf_xdp_adjust_head, bpf_xdp_store_bytes},
    macros::{btf_map, xdp},
    programs::XdpContext,
};
use proxy_common::{
    EndpointKey, FastpathSettings, KA_MAX, KA_MIN, KA_SEED, KA_SEQ_OFF, KeepaliveEntry, LocalAddr,
    PacketCounter, RAS_PORT, fold, ka_mix, ka_seq_mask, ka_slot, ka_word_at,
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
    let settings = FP_CONFIG.get(0).copied().unwrap_or_default();
    let port = if settings.ras_port == 0 {
        RAS_PORT
    } else {
        settings.ras_port
    };
    // One copy of the frame's head; everything below reads and rewrites it
    // in memory.
    let (buf, n) = match load_frame(&ctx) {
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
    match answer(&ctx, buf, n, &udp, &settings) {
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

/// Write `bytes` at `off`.
#[inline(always)]
fn put(buf: &mut Buf, off: usize, bytes: &[u8]) -> Option<()> {
    buf.get_mut(off..off + bytes.len())?.copy_from_slice(bytes);
    Some(())
}

/// Hash `len` bytes of `buf` from `base` the way `proxy_common::ka_hash`
/// does.
#[inline(always)]
fn hash(buf: &Buf, base: usize, len: usize, mask_seq: bool) -> Option<u64> {
    let mut h = KA_SEED;
    for i in 0..KA_MAX / 8 {
        let Some(at) = ka_word_at(i, len) else { break };
        let mut w = u64::from_le_bytes(get::<8>(buf, base + at)?);
        if mask_seq {
            w &= ka_seq_mask(at);
        }
        h = ka_mix(h, w);
    }
    Some(h)
}

#[inline(always)]
fn answer(
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
    if udp.v6 {
        src = get::<16>(buf, udp.l3 + 8).ok_or(Pass(ka_slot::UNSUPPORTED_HEADERS))?;
        dst = get::<16>(buf, udp.l3 + 24).ok_or(Pass(ka_slot::UNSUPPORTED_HEADERS))?;
    } else {
        src[10] = 0xff;
        src[11] = 0xff;
        dst[10] = 0xff;
        dst[11] = 0xff;
        src[12..].copy_from_slice(
            &get::<4>(buf, udp.l3 + 12).ok_or(Pass(ka_slot::UNSUPPORTED_HEADERS))?,
        );
        dst[12..].copy_from_slice(
            &get::<4>(buf, udp.l3 + 16).ok_or(Pass(ka_slot::UNSUPPORTED_HEADERS))?,
        );
    }
    // SAFETY: read-only lookup of a plain-data value.
    if unsafe { LOCAL_ADDRS.get(&LocalAddr { addr: dst }) }.is_none() {
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
    let eid_len = e.eid_len as usize;
    if eid_len >= 8 {
        let eid_off = e.eid_off as usize;
        if eid_off + eid_len > len {
            return Err(Pass(ka_slot::IDENTIFIER_MISMATCH));
        }
        let h = hash(buf, udp.payload + eid_off, eid_len, false)
            .ok_or(Pass(ka_slot::IDENTIFIER_MISMATCH))?;
        if h != e.eid_hash {
            return Err(Pass(ka_slot::IDENTIFIER_MISMATCH));
        }
    }
    let h = hash(buf, udp.payload, len, true).ok_or(Pass(ka_slot::CONTENT_MISMATCH))?;
    if h != e.req_hash {
        return Err(Pass(ka_slot::CONTENT_MISMATCH));
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
    // SAFETY: helper without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    if cfg.rate_interval_ns != 0 {
        let tat = if e.tat_ns > now { e.tat_ns } else { now };
        if tat - now > cfg.rate_slack_ns {
            return Err(Refusal::Drop(ka_slot::RATE_LIMITED));
        }
        e.tat_ns = tat + cfg.rate_interval_ns;
    }

    // Build the answer in the buffer.
    let seq = get::<2>(buf, udp.payload + KA_SEQ_OFF).ok_or(Pass(ka_slot::REWRITE_FAILED))?;
    let macs = get::<12>(buf, 0).ok_or(Pass(ka_slot::REWRITE_FAILED))?;
    let mut swapped = [0u8; 12];
    swapped[..6].copy_from_slice(&macs[6..]);
    swapped[6..].copy_from_slice(&macs[..6]);
    put(buf, 0, &swapped).ok_or(Pass(ka_slot::REWRITE_FAILED))?;
    let udp_len = (UDP_HLEN + rcf_len) as u16;
    let mut sum: u32 = 0;
    for i in 0..8 {
        sum += u16::from_be_bytes([src[2 * i], src[2 * i + 1]]) as u32;
        sum += u16::from_be_bytes([dst[2 * i], dst[2 * i + 1]]) as u32;
    }
    if udp.v6 {
        put(buf, udp.l3 + 4, &udp_len.to_be_bytes()).ok_or(Pass(ka_slot::REWRITE_FAILED))?;
        put(buf, udp.l3 + 7, &[64]).ok_or(Pass(ka_slot::REWRITE_FAILED))?;
        put(buf, udp.l3 + 8, &dst).ok_or(Pass(ka_slot::REWRITE_FAILED))?;
        put(buf, udp.l3 + 24, &src).ok_or(Pass(ka_slot::REWRITE_FAILED))?;
    } else {
        // The mapped prefix (::ffff) is in the sums above twice; take it out.
        sum -= 2 * 0xffff;
        let mut hdr = get::<20>(buf, udp.l3).ok_or(Pass(ka_slot::REWRITE_FAILED))?;
        hdr[2..4].copy_from_slice(&(20 + udp_len).to_be_bytes());
        hdr[8] = 64;
        hdr[10] = 0;
        hdr[11] = 0;
        hdr[12..16].copy_from_slice(&dst[12..]);
        hdr[16..20].copy_from_slice(&src[12..]);
        let mut ipsum: u32 = 0;
        for i in 0..10 {
            ipsum += u16::from_be_bytes([hdr[2 * i], hdr[2 * i + 1]]) as u32;
        }
        let c = !fold(ipsum);
        hdr[10..12].copy_from_slice(&c.to_be_bytes());
        put(buf, udp.l3, &hdr).ok_or(Pass(ka_slot::REWRITE_FAILED))?;
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
    // Payload: the template word by word, the request's sequence number
    // kept in place (the template has zeros there).
    for i in 0..KA_MAX / 8 {
        let at = i * 8;
        if at >= rcf_len {
            break;
        }
        let mut w = [0u8; 8];
        w.copy_from_slice(&e.rcf[at..at + 8]);
        if i == 0 {
            w[KA_SEQ_OFF] = seq[0];
            w[KA_SEQ_OFF + 1] = seq[1];
        }
        put(buf, udp.payload + at, &w).ok_or(Pass(ka_slot::REWRITE_FAILED))?;
    }

    // Resize at the head: drivers guarantee XDP headroom, but not tailroom
    // (a veth hands over skb data sized to the request). The buffer holds
    // the whole answer from offset 0, written back in one copy.
    let delta = rcf_len as i32 - len as i32;
    if delta != 0 {
        // SAFETY: the helper checks the new start against the headroom.
        if unsafe { bpf_xdp_adjust_head(ctx.ctx, -delta) } != 0 {
            return Err(Pass(ka_slot::NO_HEADROOM));
        }
    }
    let out = udp.payload + rcf_len;
    let out = ((out - 1) & (FRAME_BUF - 1)) + 1;
    // SAFETY: the helper reads `out` (1..=256) bytes of the buffer and
    // checks the packet bounds itself.
    let rc =
        unsafe { bpf_xdp_store_bytes(ctx.ctx, 0, buf.as_mut_ptr() as *mut c_void, out as u32) };
    if rc != 0 {
        return Err(Pass(ka_slot::REWRITE_FAILED));
    }

    e.last_ns = now;
    e.answered += 1;
    Ok(xdp_action::XDP_TX)
}
