//! Benchmark programs, never attached to an interface. BPF_PROG_TEST_RUN
//! repeats a program on one frame without restoring it, and the fast path
//! rewrites the frame it answers; so these put the request back
//! (`BENCH_FRAME`) before each run. `bench_pass` does only that, and is the
//! baseline the others are measured against; timing many runs in one call
//! keeps the kernel's per-call timer out of the figures. `bench_gen` and
//! `bench_sink` are a traffic generator and its counter for the veth lab.

use aya_ebpf::{
    bindings::xdp_action,
    btf_maps::{Array, PerCpuArray},
    cty::c_void,
    helpers::generated::{bpf_xdp_adjust_head, bpf_xdp_store_bytes},
    macros::{btf_map, xdp},
    programs::XdpContext,
};
use proxy_common::{BenchFrame, PacketCounter, bench_stage};

use crate::keepalive::fastpath;

/// The frame to put back, slot 0 (written by the benchmark).
#[btf_map]
static BENCH_FRAME: Array<BenchFrame, 1> = Array::new();

/// Put the benchmark frame back: same length, same bytes.
#[inline(always)]
fn restore(ctx: &XdpContext) -> bool {
    let Some(f) = BENCH_FRAME.get(0) else {
        return false;
    };
    let want = f.len as usize;
    if want == 0 || want > 256 {
        return false;
    }
    // Opaque to LLVM, which would otherwise fold `want` into the packet
    // pointer arithmetic (the verifier forbids that form).
    let have = core::hint::black_box(ctx.data_end() - ctx.data());
    let delta = have as i32 - want as i32;
    // SAFETY: the helper checks the new start against the buffer.
    if delta != 0 && unsafe { bpf_xdp_adjust_head(ctx.ctx, delta) } != 0 {
        return false;
    }
    let n = ((want - 1) & 255) + 1;
    // SAFETY: the helper reads `n` (1..=256) bytes of the map value and
    // checks the packet bounds itself.
    unsafe { bpf_xdp_store_bytes(ctx.ctx, 0, f.bytes.as_ptr() as *mut c_void, n as u32) == 0 }
}

/// Baseline: put the frame back, pass it.
#[xdp]
pub fn bench_pass(ctx: XdpContext) -> u32 {
    if !restore(&ctx) {
        return xdp_action::XDP_ABORTED;
    }
    xdp_action::XDP_PASS
}

/// Put the frame back, then run the whole fast path.
#[xdp]
pub fn bench_fastpath(ctx: XdpContext) -> u32 {
    if !restore(&ctx) {
        return xdp_action::XDP_ABORTED;
    }
    fastpath::<{ bench_stage::ANSWERED }>(&ctx)
}

/// Up to the header walk and counters.
#[xdp]
pub fn bench_stage_parsed(ctx: XdpContext) -> u32 {
    if !restore(&ctx) {
        return xdp_action::XDP_ABORTED;
    }
    fastpath::<{ bench_stage::PARSED }>(&ctx)
}

/// Up to the address and endpoint lookups.
#[xdp]
pub fn bench_stage_looked_up(ctx: XdpContext) -> u32 {
    if !restore(&ctx) {
        return xdp_action::XDP_ABORTED;
    }
    fastpath::<{ bench_stage::LOOKED_UP }>(&ctx)
}

/// Up to the request's hashes.
#[xdp]
pub fn bench_stage_hashed(ctx: XdpContext) -> u32 {
    if !restore(&ctx) {
        return xdp_action::XDP_ABORTED;
    }
    fastpath::<{ bench_stage::HASHED }>(&ctx)
}

/// Frames the traffic-generator's sink received (`bench_sink`), slot 0.
#[btf_map]
static BENCH_SINK: PerCpuArray<PacketCounter, 1> = PerCpuArray::new();

/// Traffic generator: run with BPF_PROG_TEST_RUN in live-frame mode on an
/// interface, it sends `BENCH_FRAME` out of it, again and again. Live-mode
/// pages are recycled and may come back holding whatever the far end wrote
/// into them (an answer), so the frame is put back every time.
#[xdp]
pub fn bench_gen(ctx: XdpContext) -> u32 {
    if !restore(&ctx) {
        return xdp_action::XDP_ABORTED;
    }
    xdp_action::XDP_TX
}

/// The generator's sink, attached where the answers arrive: count and drop
/// IP frames; pass the rest (ARP keeps the far end's neighbour entry fresh).
#[xdp]
pub fn bench_sink(ctx: XdpContext) -> u32 {
    let (data, end) = (ctx.data(), ctx.data_end());
    if data + 14 > end {
        return xdp_action::XDP_PASS;
    }
    // SAFETY: bytes 12..14 are inside the frame (checked above).
    let ethertype = unsafe { *((data + 12) as *const [u8; 2]) };
    if ethertype != [0x08, 0x00] && ethertype != [0x86, 0xdd] {
        return xdp_action::XDP_PASS;
    }
    if let Some(c) = BENCH_SINK.get_ptr_mut(0) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU.
        unsafe { (*c).packets += 1 };
    }
    xdp_action::XDP_DROP
}
