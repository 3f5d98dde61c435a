//! The kernel fast path. Per-packet work only: bounded parsing, map lookups
//! and counters. Every decision about *what* to answer is made in userspace
//! and handed down through maps.
#![no_std]
#![no_main]
// Inline assembly for unaligned packet access (see `parse`); the crate is
// built with the pinned nightly anyway.
#![cfg_attr(target_arch = "bpf", feature(asm_experimental_arch))]

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
