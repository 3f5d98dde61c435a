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
        bpf_ktime_get_ns, bpf_xdp_adjust_head, bpf_xdp_load_bytes, bpf_xdp_store_bytes,
    },
    macros::{btf_map, xdp},
    programs::XdpContext,
};
use proxy_common::{
    EndpointKey, FastpathSettings, KA_MAX, KA_MIN, KA_SEED, KA_SEQ_OFF, KeepaliveEntry, LocalAddr,
    PacketCounter, RAS_PORT, fold, ka_mix, ka_seq_mask, ka_slot, ka_word_at,
};

use crate::parse::{IPV6_HLEN, UDP_HLEN, Udp, be16_at, load, u8_at, udp_for_port};
use crate::ras_classify::{count_packet, count_ras};

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

/// Per-CPU scratch space for the request (the BPF stack is 512 bytes).
#[btf_map]
static SCRATCH: PerCpuArray<[u8; 128], 1> = PerCpuArray::new();

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
    let udp = match udp_for_port(&ctx, port) {
        Ok(u) => u,
        Err(outcome) => {
            count_packet(outcome);
            return xdp_action::XDP_PASS;
        }
    };
    count_ras(&ctx, &udp);
    if udp.dport != port {
        // From the RAS port (a gatekeeper's answer to the proxy): not ours.
        return xdp_action::XDP_PASS;
    }
    if settings.answer == 0 {
        count(ka_slot::OFF);
        return xdp_action::XDP_PASS;
    }
    match answer(&ctx, &udp, &settings) {
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

/// Read the source and destination addresses as IPv4-mapped or IPv6.
#[inline(always)]
fn addresses(ctx: &XdpContext, udp: &Udp) -> Option<([u8; 16], [u8; 16])> {
    let mut src = [0u8; 16];
    let mut dst = [0u8; 16];
    if udp.v6 {
        src = load::<16>(ctx, udp.l3 + 8)?;
        dst = load::<16>(ctx, udp.l3 + 24)?;
    } else {
        let s = load::<4>(ctx, udp.l3 + 12)?;
        let d = load::<4>(ctx, udp.l3 + 16)?;
        src[10] = 0xff;
        src[11] = 0xff;
        dst[10] = 0xff;
        dst[11] = 0xff;
        src[12..].copy_from_slice(&s);
        dst[12..].copy_from_slice(&d);
    }
    Some((src, dst))
}

/// Hash `len` bytes of `buf` from `base` the way `proxy_common::ka_hash`
/// does.
#[inline(always)]
fn hash(buf: &[u8; 128], base: usize, len: usize, mask_seq: bool) -> Option<u64> {
    let mut h = KA_SEED;
    for i in 0..KA_MAX / 8 {
        let Some(at) = ka_word_at(i, len) else { break };
        let w = buf.get(base + at..base + at + 8)?;
        let mut w = u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
        if mask_seq {
            w &= ka_seq_mask(at);
        }
        h = ka_mix(h, w);
    }
    Some(h)
}

#[inline(always)]
fn store(ctx: &XdpContext, off: usize, bytes: &[u8]) -> Result<(), Refusal> {
    // SAFETY: the helper reads `bytes.len()` bytes from `bytes` and checks
    // the packet bounds itself.
    let rc = unsafe {
        bpf_xdp_store_bytes(
            ctx.ctx,
            off as u32,
            bytes.as_ptr() as *mut c_void,
            bytes.len() as u32,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(Pass(ka_slot::REWRITE_FAILED))
    }
}

#[inline(always)]
fn answer(ctx: &XdpContext, udp: &Udp, cfg: &FastpathSettings) -> Result<u32, Refusal> {
    // registrationRequest (root index 3) with the RRQ extension bit set:
    // keepAlive is an extension addition, so a lightweight RRQ has it.
    let first = u8_at(ctx, udp.payload).ok_or(Pass(ka_slot::NOT_KEEPALIVE))?;
    if first & 0xfe != 0x0e {
        return Err(Pass(ka_slot::NOT_KEEPALIVE));
    }
    let len = udp.payload_len;
    // Two comparisons on `len` itself, so the verifier can bound the
    // variable-length copy below.
    if len > KA_MAX {
        return Err(Pass(ka_slot::LENGTH_MISMATCH));
    }
    if len < KA_MIN {
        return Err(Pass(ka_slot::LENGTH_MISMATCH));
    }
    let (src, dst) = addresses(ctx, udp).ok_or(Pass(ka_slot::UNSUPPORTED_HEADERS))?;
    // SAFETY: read-only lookup of a plain-data value.
    if unsafe { LOCAL_ADDRS.get(&LocalAddr { addr: dst }) }.is_none() {
        return Err(Pass(ka_slot::NOT_FOR_PROXY));
    }
    let sport = be16_at(ctx, udp.l4).ok_or(Pass(ka_slot::UNSUPPORTED_HEADERS))?;
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
    // The whole request in one copy; both hashes read it from the stack.
    let req = SCRATCH
        .get_ptr_mut(0)
        .ok_or(Pass(ka_slot::REWRITE_FAILED))?;
    // SAFETY: per-CPU slot, this program run is its only user.
    let req = unsafe { &mut *req };
    // `len` is 16..=112 here, but LLVM merges the two checks into one on a
    // copy the verifier cannot connect to `len`; this form is the same
    // value with a range the verifier sees directly (1..=128).
    let n = ((len - 1) & 0x7f) + 1;
    // SAFETY: the helper writes `n` bytes into the 128-byte `req`.
    let rc = unsafe {
        bpf_xdp_load_bytes(
            ctx.ctx,
            udp.payload as u32,
            req.as_mut_ptr() as *mut c_void,
            n as u32,
        )
    };
    if rc != 0 {
        return Err(Pass(ka_slot::LENGTH_MISMATCH));
    }
    let eid_len = e.eid_len as usize;
    if eid_len >= 8 {
        let eid_off = e.eid_off as usize;
        if eid_off + eid_len > len {
            return Err(Pass(ka_slot::IDENTIFIER_MISMATCH));
        }
        let h = hash(req, eid_off, eid_len, false).ok_or(Pass(ka_slot::IDENTIFIER_MISMATCH))?;
        if h != e.eid_hash {
            return Err(Pass(ka_slot::IDENTIFIER_MISMATCH));
        }
    }
    let h = hash(req, 0, len, true).ok_or(Pass(ka_slot::CONTENT_MISMATCH))?;
    if h != e.req_hash {
        return Err(Pass(ka_slot::CONTENT_MISMATCH));
    }
    if !udp.v6 && udp.ip_hlen != 20 {
        return Err(Pass(ka_slot::UNSUPPORTED_HEADERS));
    }
    let rcf_len = e.rcf_len as usize;
    // Two plain comparisons, not a range test: LLVM turns `contains` into a
    // subtract-and-compare on a copy, and the verifier then cannot bound
    // `rcf_len` itself for the copy loop below.
    if rcf_len > KA_MAX {
        return Err(Pass(ka_slot::REWRITE_FAILED));
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

    // Read everything the answer keeps before the frame moves.
    let seq = [req[KA_SEQ_OFF], req[KA_SEQ_OFF + 1]];
    let macs = load::<12>(ctx, 0).ok_or(Pass(ka_slot::REWRITE_FAILED))?;
    // VLAN tags and the EtherType between the MACs and the IP header: one
    // of three fixed sizes, so each is a constant-size copy.
    let mut l2 = [0u8; 10];
    let l2_len = udp.l3 - 12;
    match l2_len {
        2 => l2[..2].copy_from_slice(&load::<2>(ctx, 12).ok_or(Pass(ka_slot::REWRITE_FAILED))?),
        6 => l2[..6].copy_from_slice(&load::<6>(ctx, 12).ok_or(Pass(ka_slot::REWRITE_FAILED))?),
        10 => l2 = load::<10>(ctx, 12).ok_or(Pass(ka_slot::REWRITE_FAILED))?,
        _ => return Err(Pass(ka_slot::UNSUPPORTED_HEADERS)),
    }
    let ports = load::<4>(ctx, udp.l4).ok_or(Pass(ka_slot::REWRITE_FAILED))?;
    let udp_len = (UDP_HLEN + rcf_len) as u16;
    // One's-complement sum of the pseudo-header addresses (order does not
    // matter to the sum, so swapping them changes nothing).
    let mut sum: u32 = 0;
    let mut v6hdr = [0u8; IPV6_HLEN];
    let mut v4hdr = [0u8; 20];
    if udp.v6 {
        v6hdr = load::<IPV6_HLEN>(ctx, udp.l3).ok_or(Pass(ka_slot::REWRITE_FAILED))?;
        v6hdr[4..6].copy_from_slice(&udp_len.to_be_bytes());
        v6hdr[7] = 64;
        let mut tmp = [0u8; 16];
        tmp.copy_from_slice(&v6hdr[8..24]);
        let (a, b) = v6hdr[8..40].split_at_mut(16);
        a.copy_from_slice(b);
        b.copy_from_slice(&tmp);
        for i in 0..16 {
            sum += u16::from_be_bytes([v6hdr[8 + 2 * i], v6hdr[9 + 2 * i]]) as u32;
        }
    } else {
        v4hdr = load::<20>(ctx, udp.l3).ok_or(Pass(ka_slot::REWRITE_FAILED))?;
        v4hdr[2..4].copy_from_slice(&(20 + udp_len).to_be_bytes());
        v4hdr[8] = 64;
        v4hdr[10] = 0;
        v4hdr[11] = 0;
        let mut tmp = [0u8; 4];
        tmp.copy_from_slice(&v4hdr[12..16]);
        let (a, b) = v4hdr[12..20].split_at_mut(4);
        a.copy_from_slice(b);
        b.copy_from_slice(&tmp);
        let mut ipsum: u32 = 0;
        for i in 0..10 {
            ipsum += u16::from_be_bytes([v4hdr[2 * i], v4hdr[2 * i + 1]]) as u32;
        }
        let c = !fold(ipsum);
        v4hdr[10..12].copy_from_slice(&c.to_be_bytes());
        for i in 0..4 {
            sum += u16::from_be_bytes([v4hdr[12 + 2 * i], v4hdr[13 + 2 * i]]) as u32;
        }
    }
    // UDP: ports swapped, new length, checksum over pseudo-header, header and
    // the template (its sum precomputed by userspace) plus the sequence number.
    let sport = u16::from_be_bytes([ports[0], ports[1]]);
    let dport = u16::from_be_bytes([ports[2], ports[3]]);
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

    // Resize at the head: drivers guarantee XDP headroom, but not tailroom
    // (a veth hands over skb data sized to the request). Every header is
    // written anew below at the same offsets from the new start.
    let delta = rcf_len as i32 - len as i32;
    if delta != 0 {
        // SAFETY: the helper checks the new start against the headroom.
        if unsafe { bpf_xdp_adjust_head(ctx.ctx, -delta) } != 0 {
            return Err(Pass(ka_slot::NO_HEADROOM));
        }
    }
    let mut swapped = [0u8; 12];
    swapped[..6].copy_from_slice(&macs[6..]);
    swapped[6..].copy_from_slice(&macs[..6]);
    store(ctx, 0, &swapped)?;
    match l2_len {
        2 => store(ctx, 12, &l2[..2])?,
        6 => store(ctx, 12, &l2[..6])?,
        _ => store(ctx, 12, &l2)?,
    }
    if udp.v6 {
        store(ctx, udp.l3, &v6hdr)?;
    } else {
        store(ctx, udp.l3, &v4hdr)?;
    }
    store(ctx, udp.l4, &uh)?;

    // Payload: the template in one copy, then the sequence number.
    let tpl = e.rcf.get(..rcf_len).ok_or(Pass(ka_slot::REWRITE_FAILED))?;
    store(ctx, udp.payload, tpl)?;
    store(ctx, udp.payload + KA_SEQ_OFF, &seq)?;

    e.last_ns = now;
    e.answered += 1;
    Ok(xdp_action::XDP_TX)
}
