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

use crate::parse::{Outcome, Udp, udp_in};

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
    match udp_in(&ctx, RAS_PORT) {
        Ok(udp) => count_ras(&udp),
        Err(outcome) => count_packet(outcome),
    }
    xdp_action::XDP_PASS
}

/// Count a RAS datagram in `PACKETS` and by choice (from its first byte) in
/// `RAS_CLASSIFY`.
#[inline(always)]
pub fn count_ras(udp: &Udp) {
    count_packet(Outcome::Ras);
    let slot = match udp.first {
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
