//! tokio drivers: own the sockets and the clock, feed the sans-I/O state
//! machines, send what they produce.
//!
//! - [`RasDriver`] (`ras`) owns the [`RasRelay`](crate::ras_relay::RasRelay)
//!   and its UDP sockets. Nothing else touches the relay: other tasks send
//!   it [`RasCommand`]s through a [`RasHandle`], and every command is
//!   followed by fresh `poll_*` calls, so a change (an expedited probe, a
//!   new configuration) takes effect at once.
//! - [`CallDriver`] (`call`) accepts call signalling links and pumps one
//!   [`Call`](crate::call::Call) state machine per link.
//! - `sockets`: the socket options and system calls both need.

mod call;
mod ras;
mod sockets;

pub use call::{CallDriver, CallInput, CallStats, CallTable, Role};
pub use ras::{
    LivenessMap, OffloadEntries, OffloadReader, OffloadTable, RasCommand, RasDriver, RasHandle,
};
pub use sockets::big_buffers;

use std::net::SocketAddr;

use crate::ras_relay::RelayStats;

/// Errors starting a driver.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// A socket could not be bound.
    #[error("binding {what} on {addr}: {source}")]
    Bind {
        /// Which socket.
        what: &'static str,
        /// Address.
        addr: SocketAddr,
        /// Cause.
        source: std::io::Error,
    },
}

/// A snapshot of the RAS side for logs and status.
#[derive(Clone, Debug, Default)]
pub struct RasStatus {
    /// Gatekeeper in control, `None` in survivable mode.
    pub active: Option<String>,
    /// Registrations.
    pub registrations: usize,
    /// Calls admitted.
    pub calls: usize,
    /// Registrations waiting to be re-registered at the gatekeeper in
    /// control (after a control move; paced).
    pub reregistrations_pending: usize,
    /// Counters.
    pub stats: RelayStats,
    /// Each gatekeeper.
    pub gatekeepers: Vec<crate::ras_relay::GatekeeperStatus>,
}
