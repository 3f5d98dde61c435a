//! tokio drivers: own the sockets and the clock, feed the sans-I/O state
//! machines, send what they produce.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::watch;

use crate::config::Config;
use crate::ras_relay::{Event, RasRelay, RelayStats, Side};

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
    /// Counters.
    pub stats: RelayStats,
}

/// The bound RAS sockets, ready to run.
pub struct RasDriver {
    relay: RasRelay,
    endpoint: Arc<UdpSocket>,
    gatekeeper: Arc<UdpSocket>,
}

impl RasDriver {
    /// Bind the endpoint-side and gatekeeper-side RAS sockets.
    pub async fn bind(cfg: &Config) -> Result<Self, DriverError> {
        let ep_addr = SocketAddr::new(cfg.proxy.endpoint_address, cfg.proxy.ras_port);
        let gk_addr = SocketAddr::new(cfg.proxy.gatekeeper_address, cfg.proxy.gatekeeper_ras_port);
        let bind = |what, addr| async move {
            UdpSocket::bind(addr)
                .await
                .map_err(|source| DriverError::Bind { what, addr, source })
        };
        let endpoint = bind("the endpoint-side RAS socket", ep_addr).await?;
        let gatekeeper = bind("the gatekeeper-side RAS socket", gk_addr).await?;
        let gk_local = gatekeeper
            .local_addr()
            .map_err(|source| DriverError::Bind {
                what: "the gatekeeper-side RAS socket",
                addr: gk_addr,
                source,
            })?;
        let relay = RasRelay::new(cfg.relay(gk_local), Instant::now());
        tracing::info!(endpoint_side = %ep_addr, gatekeeper_side = %gk_local, gatekeepers = cfg.gatekeepers.len(), "RAS relay listening");
        Ok(Self {
            relay,
            endpoint: Arc::new(endpoint),
            gatekeeper: Arc::new(gatekeeper),
        })
    }

    /// Run until `shutdown` turns true; publishes a status snapshot after
    /// every change.
    pub async fn run(
        mut self,
        mut shutdown: watch::Receiver<bool>,
        status: watch::Sender<RasStatus>,
    ) {
        let mut ebuf = vec![0u8; 65_536];
        let mut gbuf = vec![0u8; 65_536];
        loop {
            let deadline = tokio::time::Instant::from_std(self.relay.poll_timeout());
            tokio::select! {
                r = self.endpoint.recv_from(&mut ebuf) => match r {
                    Ok((n, from)) => self.relay.handle_endpoint(Instant::now(), from, &ebuf[..n]),
                    Err(e) => tracing::debug!(error = %e, "endpoint-side RAS socket"),
                },
                r = self.gatekeeper.recv_from(&mut gbuf) => match r {
                    Ok((n, from)) => self.relay.handle_gatekeeper(Instant::now(), from, &gbuf[..n]),
                    Err(e) => tracing::debug!(error = %e, "gatekeeper-side RAS socket"),
                },
                _ = tokio::time::sleep_until(deadline) => self.relay.handle_timeout(Instant::now()),
                _ = shutdown.changed() => break,
            }
            while let Some(t) = self.relay.poll_transmit() {
                let sock = match t.side {
                    Side::Endpoint => &self.endpoint,
                    Side::Gatekeeper => &self.gatekeeper,
                };
                // UDP: a full socket buffer or an unreachable peer loses this
                // datagram only; the protocols retransmit.
                if let Err(e) = sock.try_send_to(&t.bytes, t.to) {
                    tracing::debug!(to = %t.to, error = %e, "RAS send failed");
                }
            }
            let mut changed = false;
            while let Some(ev) = self.relay.poll_event() {
                changed = true;
                log_event(&ev);
            }
            if changed || status.borrow().stats != *self.relay.stats() {
                let _ = status.send(RasStatus {
                    active: self.relay.active().map(str::to_owned),
                    registrations: self.relay.registrations().len(),
                    calls: self.relay.calls().count(),
                    stats: self.relay.stats().clone(),
                });
            }
        }
    }
}

fn log_event(ev: &Event) {
    match ev {
        Event::GatekeeperHealth { name, health } => {
            tracing::info!(gatekeeper = %name, ?health, "gatekeeper heartbeat")
        }
        Event::ControlMoved { from, to } => tracing::warn!(
            from = from.as_deref().unwrap_or("survivable"),
            to = to.as_deref().unwrap_or("survivable"),
            "control moved"
        ),
        Event::Registered {
            endpoint_id,
            gatekeeper,
        } => tracing::info!(
            %endpoint_id,
            gatekeeper = gatekeeper.as_deref().unwrap_or("local"),
            "endpoint registered"
        ),
        Event::Unregistered { endpoint_id } => {
            tracing::info!(%endpoint_id, "endpoint unregistered")
        }
        Event::Rejected { from, reason } => tracing::debug!(%from, reason, "rejected"),
    }
}

/// Interval for the periodic status line.
pub const STATUS_INTERVAL: Duration = Duration::from_secs(10);
