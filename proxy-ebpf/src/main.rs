//! The kernel fast path. Per-packet work only: bounded parsing, map lookups
//! and counters. Every decision about *what* to answer is made in userspace
//! and handed down through maps.
#![no_std]
#![no_main]
// Inline assembly for unaligned packet access (see `parse`); the crate is
// built with the pinned nightly anyway.
#![cfg_attr(target_arch = "bpf", feature(asm_experimental_arch))]

// Header words are read and written in memory order on a little-endian
// target (see `parse::pkt`); a big-endian build would need other shifts.
#[cfg(target_endian = "big")]
compile_error!("the fast path assumes a little-endian BPF target (bpfel)");

mod bench;
mod keepalive;
mod liveness;
mod parse;
mod ras_classify;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any program that could reach this; it exists only
    // to satisfy no_std.
    loop {}
}
