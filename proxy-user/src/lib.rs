//! The H.323 survivable proxy daemon.
//!
//! The protocol lives in [`proxy_proto`] (re-exported here under the same
//! module names): codecs and state machines that take bytes and time and
//! return bytes and events. This crate is everything that touches the
//! outside world: the tokio drivers that own the sockets and the clock and
//! pump those state machines (`driver`), the aya loader of the XDP/TC fast
//! path and its maps (`fastpath`), configuration (`config`), the metrics
//! endpoint (`metrics`), the monotonic clock shared with the kernel
//! (`clock`) and the `proxy` binary.

pub use proxy_proto::{
    budget, call, capture, gatekeeper, h225, hsrp, identity, offload, q931, ras_relay,
    registration, tpkt,
};

pub mod clock;
pub mod config;
pub mod driver;
#[cfg(feature = "fastpath")]
pub mod fastpath;
pub mod metrics;
pub mod redundancy;
