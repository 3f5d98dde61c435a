//! `ras_classify`: count H.225.0 RAS traffic by `RasMessage` choice and pass
//! every packet on. The first brick of the fast path; it proves the parse and
//! the pinned, BTF-described maps end to end.

use aya_ebpf::{
    bindings::xdp_action,
    btf_maps::PerCpuArray,
    macros::{btf_map, xdp},
    programs::XdpContext,
};
use proxy_common::{PacketCounter, RAS_PORT, RasCounter, packet_slot, ras_slot, ras_slot_of};

use crate::parse::{Buf, Outcome, Udp, load_frame, udp_in};

/// Per `RasMessage` choice index (see `proxy_common::ras_slot`).
#[btf_map(pin_by_name)]
static RAS_CLASSIFY: PerCpuArray<RasCounter, { ras_slot::COUNT as usize }> = PerCpuArray::new();

/// Every packet seen, by outcome (see `proxy_common::packet_slot`).
#[btf_map(pin_by_name)]
static PACKETS: PerCpuArray<PacketCounter, { packet_slot::COUNT as usize }> = PerCpuArray::new();

#[inline(always)]
pub fn count_packet(outcome: Outcome) {
    if let Some(c) = PACKETS.get_ptr_mut(outcome as u32) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU.
        unsafe { (*c).packets += 1 };
    }
}

#[xdp]
pub fn ras_classify(ctx: XdpContext) -> u32 {
    let udp = load_frame(&ctx).and_then(|(buf, n)| {
        let udp = udp_in(buf, n, RAS_PORT)?;
        let first = first_byte(buf, n, &udp);
        Ok((udp, first))
    });
    match udp {
        Ok((udp, first)) => count_ras(&udp, first),
        Err(outcome) => count_packet(outcome),
    }
    xdp_action::XDP_PASS
}

/// The payload's first byte: `None` for an empty datagram, `Some(None)` when
/// it lies past the bytes copied.
#[inline(always)]
pub fn first_byte(buf: &Buf, n: usize, udp: &Udp) -> Option<Option<u8>> {
    if udp.payload_len == 0 {
        None
    } else if udp.payload < n {
        Some(buf.get(udp.payload).copied())
    } else {
        Some(None)
    }
}

/// Count a RAS datagram in `PACKETS` and by choice in `RAS_CLASSIFY`, from
/// its first byte (`None`: empty datagram; `Some(None)`: unreadable).
#[inline(always)]
pub fn count_ras(udp: &Udp, first: Option<Option<u8>>) {
    count_packet(Outcome::Ras);
    let slot = match first {
        None => ras_slot::EMPTY,
        Some(Some(first)) => ras_slot_of(first),
        Some(None) => ras_slot::MALFORMED,
    };
    if let Some(c) = RAS_CLASSIFY.get_ptr_mut(slot) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU.
        unsafe {
            (*c).packets += 1;
            (*c).bytes += udp.payload_len as u64;
        }
    }
}
