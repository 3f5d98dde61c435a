//! The kernel fast path. Per-packet work only: bounded parsing, map lookups
//! and counters. Every decision about *what* to answer is made in userspace
//! and handed down through maps.
#![no_std]
#![no_main]
// Inline assembly for unaligned packet access (see `parse`); the crate is
// built with the pinned nightly anyway.
#![cfg_attr(target_arch = "bpf", feature(asm_experimental_arch))]

mod keepalive;
mod liveness;
mod parse;
mod prelude;
mod ras_classify;
