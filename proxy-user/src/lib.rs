//! Control plane of the H.323 survivable proxy.
//!
//! Protocol modules (`tpkt`, `q931`, `h225`, `call`, `offload`) are sans-I/O:
//! they take bytes and return values or bytes; the state machines
//! (`gatekeeper`, `ras_relay`, `registration`, `identity`) also take time.
//! The drivers (`driver`, `fastpath`), the metrics server (`metrics`), the
//! lab helpers (`lab`, `capture`) and the binaries touch sockets, files, maps
//! and interfaces.

pub mod call;
pub mod capture;
pub mod config;
pub mod driver;
#[cfg(feature = "fastpath")]
pub mod fastpath;
pub mod gatekeeper;
pub mod h225;
pub mod identity;
pub mod lab;
pub mod metrics;
pub mod offload;
pub mod q931;
pub mod ras_relay;
pub mod registration;
pub mod tpkt;
