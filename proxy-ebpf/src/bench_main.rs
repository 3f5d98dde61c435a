//! The benchmark programs' object (`bench`): the fast path built once more
//! with the programs `cargo xtask bench` times, so that nothing the daemon
//! loads carries them. Its maps that the fast path pins (the learned
//! endpoints, settings, counters) are reused from the pins of the fast path
//! it is loaded beside; `BENCH_FRAME` and `BENCH_SINK` are its own.
#![no_std]
#![no_main]
#![cfg_attr(target_arch = "bpf", feature(asm_experimental_arch))]

mod bench;
mod keepalive;
mod parse;
mod prelude;
mod ras_classify;
