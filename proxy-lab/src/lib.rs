//! The namespace lab: throw-away hosts joined by veths, and the lab's own
//! H.323 gatekeeper and endpoints built on the project's codec. Used by
//! `cargo xtask run` (through the `h323-lab` binary) and by the privileged
//! tests.

pub mod bench;
pub mod endpoint;
#[cfg(feature = "fastpath")]
pub mod fastbench;
pub mod frame;
pub mod gatekeeper;
pub mod impair;
pub mod link_sim;
pub mod netns;
pub mod peers;
pub mod process;
pub mod topology;
