//! The RAS driver: owns the relay, its UDP sockets and the kernel maps it
//! reads and writes; the one task that changes RAS state.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, watch};

use super::call::{CallInput, CallTable, Role};
use super::sockets::{
    big_buffers, freebind_udp, recv_original_destination, recv_with_destination, reuse_socket,
    send_from,
};
use super::{DriverError, RasStatus};
use crate::call::{RouteAnswer, RouteQuery};
use crate::config::Config;
use crate::ras_relay::{Event, RasRelay, Side};

/// What other tasks ask of the RAS driver, the relay's only owner.
#[derive(Debug)]
pub enum RasCommand {
    /// Where a SETUP goes.
    Route(RouteQuery, oneshot::Sender<RouteAnswer>),
    /// A call's gatekeeper-side leg to this address was lost: a liveness
    /// hint (probe that gatekeeper at once).
    GatekeeperLegLost(IpAddr),
    /// Apply a reloaded configuration; the reply names the fields that
    /// take effect only at the next start.
    Reconfigure(Box<Config>, oneshot::Sender<Vec<&'static str>>),
    /// The call re-anchored at the gatekeeper in control.
    Anchored([u8; 16]),
    /// Re-anchoring the call failed: admit it again later.
    ReanchorFailed([u8; 16]),
}

/// A clonable way into the RAS driver (see [`RasCommand`]).
#[derive(Clone, Debug)]
pub struct RasHandle {
    tx: mpsc::Sender<RasCommand>,
}

impl RasHandle {
    /// Route a SETUP; nowhere when the RAS driver is gone (shutting down).
    pub async fn route(&self, q: RouteQuery) -> RouteAnswer {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(RasCommand::Route(q, tx)).await.is_err() {
            return RouteAnswer::default();
        }
        rx.await.unwrap_or_default()
    }

    /// See [`RasCommand::GatekeeperLegLost`].
    pub async fn gatekeeper_leg_lost(&self, peer: IpAddr) {
        let _ = self.tx.send(RasCommand::GatekeeperLegLost(peer)).await;
    }

    /// See [`RasCommand::Anchored`].
    pub async fn anchored(&self, call_id: [u8; 16]) {
        let _ = self.tx.send(RasCommand::Anchored(call_id)).await;
    }

    /// See [`RasCommand::ReanchorFailed`].
    pub async fn reanchor_failed(&self, call_id: [u8; 16]) {
        let _ = self.tx.send(RasCommand::ReanchorFailed(call_id)).await;
    }

    /// See [`RasCommand::Reconfigure`]; `None` when the driver is gone.
    pub async fn reconfigure(&self, cfg: Config) -> Option<Vec<&'static str>> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(RasCommand::Reconfigure(Box::new(cfg), tx))
            .await
            .ok()?;
        rx.await.ok()
    }
}

/// The bound RAS sockets, ready to run.
pub struct RasDriver {
    relay: RasRelay,
    commands: mpsc::Receiver<RasCommand>,
    handle: RasHandle,
    endpoint: Arc<UdpSocket>,
    /// Unconnected gatekeeper-side socket: receives from anyone, sends to
    /// addresses that are not configured gatekeepers.
    gatekeeper: Arc<UdpSocket>,
    /// One socket per configured gatekeeper, on the same local address and
    /// port (SO_REUSEPORT) but connected to it, so the kernel reports its
    /// ICMP port/host unreachable as ECONNREFUSED/EHOSTUNREACH at once: a
    /// killed gatekeeper process is seen at the next probe, not after
    /// interval × multiplier.
    per_gk: Vec<(SocketAddr, Arc<UdpSocket>)>,
    /// The kernel's learned-endpoint map, when the fast path runs.
    offload: Option<Box<dyn OffloadTable>>,
    /// The kernel's gatekeeper liveness map and the gatekeepers'
    /// call-signalling port, when the TC program runs.
    liveness: Option<(Box<dyn LivenessMap>, u16)>,
    /// How often the liveness map is read (the heartbeat interval).
    liveness_every: Duration,
    /// Where the registration table is saved, and whether it changed.
    state: Option<std::path::PathBuf>,
    /// The running call tasks, for the calls the relay hands over.
    calls: Option<CallTable>,
    /// A write of the saved table is running.
    saving: Arc<std::sync::atomic::AtomicBool>,
    /// A panic to raise in the RAS loop this long after it starts (fault
    /// injection for the tests of what a panic does; see
    /// [`RasDriver::with_injected_panic`]).
    injected_panic: Option<Duration>,
}

/// Write the saved table: readable by the daemon's user only (it holds
/// full RRQs, H.235 tokens included), through a temporary file created
/// anew (never through a link planted in the directory), then renamed over
/// the old one (a rename replaces a link, never follows it).
fn write_state(
    path: &std::path::Path,
    snapshot: &[crate::ras_relay::SavedRegistration],
) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    let tmp = path.with_extension("json.tmp");
    // A temporary file left by a crash, or a link put there: removed (not
    // followed), then created exclusively.
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)?;
    f.write_all(&serde_json::to_vec(snapshot)?)?;
    f.sync_data()?;
    std::fs::rename(&tmp, path)
}

/// The kernel's learned-endpoint map as the RAS driver uses it
/// (implemented by `fastpath::KeepaliveTable`; a trait so the control plane
/// builds without aya, e.g. for fuzzing).
pub trait OffloadTable: Send {
    /// Let the kernel answer keepalives from `source` with `entry`.
    fn learn(
        &mut self,
        source: SocketAddr,
        entry: &proxy_common::KeepaliveEntry,
    ) -> Result<(), String>;
    /// Stop answering for `source`.
    fn forget(&mut self, source: SocketAddr);
    /// A reader of every learned endpoint with its entry, with a handle of
    /// its own: reading a large map takes milliseconds, so it runs on a
    /// thread of its own, off the driver loop.
    fn reader(&self) -> Result<Box<dyn OffloadReader>, String>;
}

/// Reads the kernel's learned-endpoint map (see [`OffloadTable::reader`]).
pub trait OffloadReader: Send {
    /// Every learned endpoint with its entry.
    fn entries(&mut self) -> Result<OffloadEntries, String>;
}

/// Learned endpoints with their kernel entries.
pub type OffloadEntries = Vec<(SocketAddr, proxy_common::KeepaliveEntry)>;

/// The kernel's gatekeeper liveness map as the RAS driver uses it
/// (implemented by `fastpath::LivenessTable`).
pub trait LivenessMap: Send {
    /// Track a gatekeeper (RAS address, call-signalling port).
    fn track(&mut self, ras: SocketAddr, signalling_port: u16) -> Result<(), String>;
    /// Record the control plane's decision for the gatekeeper at `ip`.
    fn set_state(&mut self, ip: std::net::IpAddr, state: u32, active: bool) -> Result<(), String>;
    /// Every tracked gatekeeper host.
    fn entries(&self) -> Vec<(std::net::IpAddr, proxy_common::GatekeeperLiveness)>;
}

/// How often the kernel's keepalive times are read back into the
/// registration table (so offloaded endpoints do not lapse); less often
/// when a read takes more than a fifth of it.
const OFFLOAD_SYNC: Duration = Duration::from_secs(1);

/// What the gatekeeper-side reader tasks hand to the driver loop.
enum GkInput {
    /// From, the local address it was sent to (when known), payload.
    Datagram(SocketAddr, Option<SocketAddr>, Vec<u8>),
    Unreachable(SocketAddr, std::io::Error),
}

impl RasDriver {
    /// Bind the endpoint-side and gatekeeper-side RAS sockets.
    pub async fn bind(cfg: &Config) -> Result<Self, DriverError> {
        let ep_addr = SocketAddr::new(cfg.proxy.endpoint_address, cfg.proxy.ras_port);
        let gk_addr = SocketAddr::new(cfg.proxy.gatekeeper_address, cfg.proxy.gatekeeper_ras_port);
        let err = |what, addr| move |source| DriverError::Bind { what, addr, source };
        let endpoint =
            freebind_udp(ep_addr).map_err(err("the endpoint-side RAS socket", ep_addr))?;
        let gk_what = "the gatekeeper-side RAS socket";
        let main = reuse_socket(gk_addr).map_err(err(gk_what, gk_addr))?;
        let gk_local: SocketAddr = main
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .unwrap_or(gk_addr);
        // Every endpoint's own gatekeeper-side address is served by this
        // socket (sk_lookup): the original destination tells them apart.
        recv_original_destination(&main, gk_addr.is_ipv4()).map_err(err(gk_what, gk_addr))?;
        let gatekeeper = UdpSocket::from_std(main.into()).map_err(err(gk_what, gk_addr))?;
        let mut per_gk = Vec::new();
        for g in &cfg.gatekeepers {
            let s = reuse_socket(gk_local).map_err(err(gk_what, gk_local))?;
            s.connect(&g.address.into())
                .map_err(err(gk_what, g.address))?;
            let s = UdpSocket::from_std(s.into()).map_err(err(gk_what, gk_local))?;
            big_buffers(&s);
            per_gk.push((g.address, Arc::new(s)));
        }
        // Thousands of endpoints re-registering at once must not overflow
        // the socket buffers: a dropped probe reply is a false failover.
        big_buffers(&endpoint);
        big_buffers(&gatekeeper);
        let mut relay_cfg = cfg.relay(gk_local);
        relay_cfg.host_addresses = crate::fastpath::host_addresses();
        let mut relay = RasRelay::new(relay_cfg, Instant::now());
        let state = (!cfg.proxy.state_dir.as_os_str().is_empty())
            .then(|| cfg.proxy.state_dir.join(format!("{}.json", cfg.instance)));
        if let Some(path) = &state {
            match std::fs::read(path) {
                Ok(bytes) => match serde_json::from_slice(&bytes) {
                    Ok(saved) => {
                        let n = relay.restore(saved, Instant::now());
                        tracing::info!(path = %path.display(), registrations = n, "registration table restored");
                    }
                    Err(e) => {
                        tracing::warn!(path = %path.display(), error = %e, "saved registration table unreadable; starting empty")
                    }
                },
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "reading the saved registration table")
                }
            }
        }
        tracing::info!(endpoint_side = %ep_addr, gatekeeper_side = %gk_local, gatekeepers = cfg.gatekeepers.len(), "RAS relay listening");
        let (tx, commands) = mpsc::channel(1024);
        Ok(Self {
            relay,
            commands,
            handle: RasHandle { tx },
            endpoint: Arc::new(endpoint),
            gatekeeper: Arc::new(gatekeeper),
            per_gk,
            offload: None,
            liveness: None,
            liveness_every: Duration::from_millis(cfg.heartbeat.interval_ms.max(1)),
            state,
            calls: None,
            saving: Arc::default(),
            injected_panic: None,
        })
    }

    /// Write the registration table (atomically: a temporary file renamed).
    /// Save the registration table. The snapshot is cheap (no encoding:
    /// the RRQs are kept as they arrived); turning it into JSON and
    /// writing it happen on a blocking thread, off this task, one write at
    /// a time (`false`: one is still running, try again later). At
    /// shutdown (`wait`), in place.
    fn save_state(&self, wait: bool) -> bool {
        let Some(path) = self.state.clone() else {
            return true;
        };
        if self.saving.swap(true, std::sync::atomic::Ordering::AcqRel) {
            return false;
        }
        let snapshot = self.relay.snapshot();
        let busy = self.saving.clone();
        let job = move || {
            if let Err(e) = write_state(&path, &snapshot) {
                tracing::warn!(path = %path.display(), error = %e, "saving the registration table");
            }
            busy.store(false, std::sync::atomic::Ordering::Release);
        };
        if wait {
            job();
        } else {
            tokio::task::spawn_blocking(job);
        }
        true
    }

    /// Feed the failure detector from the kernel's gatekeeper liveness map
    /// and write its decisions back there.
    pub fn with_liveness(
        mut self,
        table: impl LivenessMap + 'static,
        signalling_port: u16,
    ) -> Self {
        self.liveness = Some((Box::new(table), signalling_port));
        self
    }

    /// One round of the liveness exchange with the kernel.
    fn sync_liveness(&mut self) {
        let Some((table, sig_port)) = self.liveness.as_mut() else {
            return;
        };
        let relay = &mut self.relay;
        for (ip, g) in table.entries() {
            if g.last_ns != 0 {
                relay.note_gatekeeper_seen(ip, crate::clock::instant_of(g.last_ns));
            }
        }
        for g in relay.gatekeepers() {
            if let Err(e) = table.track(g.ras, *sig_port) {
                tracing::warn!(gatekeeper = %g.name, error = %e, "liveness map");
            }
            let state = match g.health {
                crate::gatekeeper::Health::Up => proxy_common::gk_state::UP,
                crate::gatekeeper::Health::Suspect => proxy_common::gk_state::SUSPECT,
                crate::gatekeeper::Health::Down => proxy_common::gk_state::DOWN,
            };
            let _ = table.set_state(g.ras.ip(), state, g.active);
        }
    }

    /// Panic in the RAS loop `after` it starts: a fault injected to test
    /// that a panic in a task ends the process (exit 70) and what the
    /// restart keeps. Only the daemon's `H323PROXY_INJECT_PANIC_MS`
    /// environment variable sets it.
    pub fn with_injected_panic(mut self, after: Duration) -> Self {
        self.injected_panic = Some(after);
        self
    }

    /// Hand the calls the relay re-admits to their tasks in `calls`.
    pub fn with_calls(mut self, calls: CallTable) -> Self {
        self.calls = Some(calls);
        self
    }

    /// Let the kernel answer keepalives the relay has learned, through
    /// this map.
    pub fn with_offload(mut self, table: impl OffloadTable + 'static) -> Self {
        self.offload = Some(Box::new(table));
        self
    }

    /// Start the thread that reads the kernel's learned-endpoint map every
    /// OFFLOAD_SYNC and hands the entries to the driver loop; it ends when
    /// the loop is gone. Also returns the first reading.
    fn start_offload_sync(
        &self,
    ) -> Option<(OffloadEntries, tokio::sync::mpsc::Receiver<OffloadEntries>)> {
        let mut reader = match self.offload.as_ref()?.reader() {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the learned-endpoint map: offloaded endpoints will not be refreshed");
                return None;
            }
        };
        let first = reader.entries().unwrap_or_else(|e| {
            tracing::warn!(error = %e, "reading the learned-endpoint map");
            Vec::new()
        });
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let spawned = std::thread::Builder::new()
            .name("offload-sync".into())
            .spawn(move || {
                let mut pause = OFFLOAD_SYNC;
                loop {
                    std::thread::sleep(pause);
                    let started = Instant::now();
                    let read = reader.entries();
                    // A very large map is read less often, so that reading
                    // it takes at most a fifth of this thread's time (a
                    // million endpoints take about half a second).
                    pause = OFFLOAD_SYNC.max(started.elapsed() * 4);
                    match read {
                        Ok(entries) => {
                            if tx.blocking_send(entries).is_err() {
                                return;
                            }
                        }
                        Err(e) if tx.is_closed() => {
                            tracing::debug!(error = %e, "offload sync ends");
                            return;
                        }
                        Err(e) => tracing::warn!(error = %e, "reading the learned-endpoint map"),
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the offload sync thread");
            return None;
        }
        Some((first, rx))
    }

    /// Put the kernel's per-endpoint answer times into the relay.
    fn sync_offload(&mut self, entries: OffloadEntries) {
        if entries.is_empty() {
            return;
        }
        let relay = &mut self.relay;
        for (source, e) in entries {
            if e.answered == 0 {
                continue;
            }
            let at = crate::clock::instant_of(e.last_ns);
            relay.note_offloaded_keepalives(source, at, e.answered);
        }
    }

    /// The unconnected gatekeeper-side RAS socket: every endpoint's own
    /// gatekeeper-side address is steered to it.
    pub fn gatekeeper_socket(&self) -> &UdpSocket {
        &self.gatekeeper
    }

    /// The way in for other tasks (routing, liveness hints, reloads).
    pub fn handle(&self) -> RasHandle {
        self.handle.clone()
    }

    fn handle_command(&mut self, cmd: RasCommand) {
        match cmd {
            RasCommand::Route(q, reply) => {
                let _ = reply.send(self.relay.route(&q));
            }
            RasCommand::GatekeeperLegLost(ip) => {
                // A no-op unless `ip` is a configured gatekeeper's.
                self.relay.handle_transport_loss(Instant::now(), ip);
            }
            RasCommand::Reconfigure(cfg, reply) => {
                let gk_ras = self.relay.gatekeeper_ras();
                let _ = reply.send(self.relay.reconfigure(cfg.relay(gk_ras)));
            }
            RasCommand::Anchored(id) => self.relay.call_anchored(&id),
            RasCommand::ReanchorFailed(id) => self.relay.reanchor_failed(Instant::now(), &id),
        }
    }

    /// Run until `shutdown` turns true; publishes a status snapshot after
    /// every change.
    pub async fn run(
        mut self,
        mut shutdown: watch::Receiver<bool>,
        status: watch::Sender<RasStatus>,
    ) {
        let panic_at = self.injected_panic.map(|d| tokio::time::Instant::now() + d);
        let mut live = tokio::time::interval(self.liveness_every);
        live.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Which calls have live signalling, for the relay's records to age
        // out by (see `RasRelay::note_calls_alive`).
        let mut calls_alive = tokio::time::interval(Duration::from_secs(30));
        calls_alive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut save = tokio::time::interval(Duration::from_secs(1));
        save.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut dirty = false;
        let mut offload_rx = match self.start_offload_sync() {
            Some((first, rx)) => {
                let held: std::collections::HashSet<SocketAddr> =
                    first.into_iter().map(|(s, _)| s).collect();
                self.relay.retain_offloaded(&held);
                // The other way: entries the kernel still answers for with
                // no registration behind them (the saved table was lost,
                // corrupt or older than the map) are removed, so no
                // endpoint the daemon does not know is answered.
                let regs = self.relay.registrations();
                let stale: Vec<SocketAddr> = held
                    .into_iter()
                    .filter(|s| !regs.by_source(*s).is_some_and(|r| r.offloaded.is_some()))
                    .collect();
                if !stale.is_empty() {
                    if let Some(t) = self.offload.as_mut() {
                        for s in &stale {
                            t.forget(*s);
                        }
                    }
                    tracing::warn!(
                        entries = stale.len(),
                        "kernel entries without a registration removed"
                    );
                }
                Some(rx)
            }
            None => None,
        };
        let (tx, mut rx) = tokio::sync::mpsc::channel::<GkInput>(4096);
        let mut readers = Vec::new();
        for (peer, sock) in self
            .per_gk
            .iter()
            .cloned()
            .map(|(a, s)| (Some(a), s))
            .chain([(None, self.gatekeeper.clone())])
        {
            let tx = tx.clone();
            readers.push(tokio::spawn(async move {
                let mut buf = vec![0u8; 65_536];
                loop {
                    let got = match peer {
                        Some(_) => sock.recv_from(&mut buf).await.map(|(n, f)| (n, f, None)),
                        None => recv_with_destination(&sock, &mut buf).await,
                    };
                    let input = match (peer, got) {
                        (_, Ok((n, from, to))) => GkInput::Datagram(from, to, buf[..n].to_vec()),
                        (Some(p), Err(e)) => GkInput::Unreachable(p, e),
                        (None, Err(_)) => continue,
                    };
                    if tx.send(input).await.is_err() {
                        return;
                    }
                }
            }));
        }
        drop(tx);
        let mut ebuf = vec![0u8; 65_536];
        let mut icmp_logged: Option<Instant> = None;
        loop {
            let deadline = tokio::time::Instant::from_std(self.relay.poll_timeout());
            // Biased: gatekeeper input and timers before endpoint traffic,
            // so a flood of endpoint requests cannot starve the heartbeat.
            tokio::select! {
                biased;
                _ = shutdown.changed() => break,
                Some(input) = rx.recv() => match input {
                    GkInput::Datagram(from, to, bytes) => self.relay.handle_gatekeeper_at(Instant::now(), from, to, &bytes),
                    GkInput::Unreachable(gk, e) => {
                        // Forgeable, so possibly a flood: logged once per
                        // 10 s, and only a hint to the relay.
                        let now = Instant::now();
                        if icmp_logged.is_none_or(|t| now >= t + Duration::from_secs(10)) {
                            icmp_logged = Some(now);
                            tracing::warn!(gatekeeper = %gk, error = %e, "gatekeeper unreachable (ICMP): probing it at once (further reports for 10 s are not logged)");
                        }
                        self.relay.handle_unreachable(now, gk);
                    }
                },
                _ = tokio::time::sleep_until(deadline) => self.relay.handle_timeout(Instant::now()),
                // After gatekeeper input and timers, before endpoint
                // traffic; the loop then polls afresh, so an expedited
                // probe leaves at once.
                Some(cmd) = self.commands.recv() => self.handle_command(cmd),
                Some(entries) = async { offload_rx.as_mut()?.recv().await }, if offload_rx.is_some() => self.sync_offload(entries),
                _ = live.tick(), if self.liveness.is_some() => self.sync_liveness(),
                _ = calls_alive.tick(), if self.calls.is_some() => {
                    if let Some(calls) = &self.calls {
                        self.relay.note_calls_alive(Instant::now(), &calls.alive());
                    }
                }
                _ = async { tokio::time::sleep_until(panic_at.unwrap_or_else(tokio::time::Instant::now)).await }, if panic_at.is_some() => {
                    panic!("injected fault: H323PROXY_INJECT_PANIC_MS");
                }
                _ = save.tick(), if dirty && self.state.is_some() => {
                    dirty = !self.save_state(false);
                }
                r = self.endpoint.recv_from(&mut ebuf) => match r {
                    Ok((n, from)) => self.relay.handle_endpoint(Instant::now(), from, &ebuf[..n]),
                    Err(e) => tracing::debug!(error = %e, "endpoint-side RAS socket"),
                },
            }
            let out: Vec<_> = std::iter::from_fn(|| self.relay.poll_transmit()).collect();
            for t in out {
                // UDP: an unreachable peer loses this datagram only; the
                // protocols retransmit. A full buffer waits (backpressure).
                let r = match (t.side, t.from) {
                    (Side::Endpoint, _) => self.endpoint.send_to(&t.bytes, t.to).await,
                    (Side::Gatekeeper, Some(own)) => send_from(own, &t.bytes, t.to),
                    (Side::Gatekeeper, None) => {
                        match self.per_gk.iter().find(|(a, _)| *a == t.to) {
                            Some((_, s)) => s.send(&t.bytes).await,
                            None => self.gatekeeper.send_to(&t.bytes, t.to).await,
                        }
                    }
                };
                if let Err(e) = r {
                    tracing::debug!(to = %t.to, error = %e, "RAS send failed");
                }
            }
            let relay = &mut self.relay;
            let mut changed = false;
            while let Some(ev) = relay.poll_event() {
                changed = true;
                log_event(&ev);
                dirty |= matches!(
                    ev,
                    Event::Registered { .. }
                        | Event::Unregistered { .. }
                        | Event::Offload { .. }
                        | Event::OffloadWithdrawn { .. }
                );
                match (&mut self.offload, ev) {
                    (_, Event::Reanchor(r)) => {
                        if let Some(calls) = &self.calls {
                            let id = r.call_id;
                            if calls
                                .send(id, Role::Calling, CallInput::Reanchor(Box::new(r)))
                                .is_err()
                            {
                                tracing::debug!(call_id = %crate::h225::value::hex(&id), "no call task to re-anchor");
                            }
                        }
                    }
                    (_, Event::Unanchored { call_id, .. }) => {
                        if let Some(calls) = &self.calls {
                            for role in [Role::Calling, Role::Answering] {
                                let _ = calls.send(call_id, role, CallInput::Unanchored);
                            }
                        }
                    }
                    (_, Event::ControllerLost { call_id, .. }) => {
                        if let Some(calls) = &self.calls {
                            for role in [Role::Calling, Role::Answering] {
                                let _ = calls.send(call_id, role, CallInput::ControllerLost);
                            }
                        }
                    }
                    (Some(t), Event::Offload { source, entry }) => {
                        if let Err(e) = t.learn(source, &entry) {
                            tracing::warn!(%source, error = %e, "offloading keepalives");
                        }
                    }
                    (Some(t), Event::OffloadWithdrawn { source }) => t.forget(source),
                    _ => {}
                }
            }
            let gks = relay.gatekeepers();
            let stale = {
                let s = status.borrow();
                changed || s.stats != *relay.stats() || s.gatekeepers != gks
            };
            if stale {
                let _ = status.send(RasStatus {
                    active: relay.active().map(str::to_owned),
                    registrations: relay.registrations().len(),
                    calls: relay.calls().count(),
                    reregistrations_pending: relay.reregistrations_pending(),
                    stats: relay.stats().clone(),
                    gatekeepers: gks,
                });
            }
        }
        if dirty {
            // The last write, in place; one still running finishes first.
            for _ in 0..200 {
                if self.save_state(true) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        for r in readers {
            r.abort();
        }
    }
}

fn log_event(ev: &Event) {
    match ev {
        Event::GatekeeperLearned { name, ras } => {
            tracing::info!(gatekeeper = %name, %ras, "alternate gatekeeper learned")
        }
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
        Event::Reanchor(r) => tracing::info!(
            call_id = %crate::h225::value::hex(&r.call_id),
            gatekeeper = %r.gatekeeper,
            to = %r.to,
            "call admitted where control moved; re-anchoring"
        ),
        Event::Unanchored {
            call_id,
            endpoint_id,
        } => tracing::warn!(
            call_id = %crate::h225::value::hex(call_id),
            %endpoint_id,
            "call not taken over by the gatekeeper in control within the deadline"
        ),
        Event::ControllerLost {
            call_id,
            gatekeeper,
        } => tracing::info!(
            call_id = %crate::h225::value::hex(call_id),
            %gatekeeper,
            "the gatekeeper that held the call is down"
        ),
        Event::Offload { source, .. } => {
            tracing::debug!(%source, "keepalives offloaded to the kernel")
        }
        Event::OffloadWithdrawn { source } => {
            tracing::debug!(%source, "keepalive offload withdrawn")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A call's gatekeeper leg lost is a hint: the RAS task probes that
    /// gatekeeper at once, not at the deadline it was sleeping on.
    #[tokio::test]
    async fn a_lost_gatekeeper_leg_wakes_the_loop_and_a_probe_leaves_at_once() {
        let gk = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let text = format!(
            "[fastpath]\nenabled = false\n\
             [proxy]\nendpoint_address = \"127.0.0.1\"\ngatekeeper_address = \"127.0.0.1\"\n\
             ras_port = 0\nstate_dir = \"\"\n\
             [gatekeeper_side]\nports = \"\"\n\
             [heartbeat]\ninterval_ms = 60000\nmultiplier = 3\n\
             [[gatekeeper]]\nname = \"primary\"\naddress = \"{}\"\n",
            gk.local_addr().unwrap()
        );
        let cfg = Config::parse(&text, "test").unwrap();
        let ras = RasDriver::bind(&cfg).await.unwrap();
        let handle = ras.handle();
        let (stop_tx, stop_rx) = watch::channel(false);
        let (status_tx, _status) = watch::channel(RasStatus::default());
        let task = tokio::spawn(ras.run(stop_rx, status_tx));
        let mut buf = [0u8; 2048];
        // The first probe leaves at start; the gatekeeper stays silent.
        let first = tokio::time::timeout(Duration::from_secs(5), gk.recv_from(&mut buf)).await;
        assert!(first.is_ok(), "no first probe");
        // The next one is due a minute later: nothing in the meantime.
        let mut buf2 = [0u8; 2048];
        let quiet = tokio::time::timeout(Duration::from_secs(1), gk.recv_from(&mut buf2)).await;
        assert!(
            quiet.is_err(),
            "a probe before the hint: the test shows nothing"
        );
        handle
            .gatekeeper_leg_lost(gk.local_addr().unwrap().ip())
            .await;
        let mut buf3 = [0u8; 2048];
        let probe = tokio::time::timeout(Duration::from_secs(5), gk.recv_from(&mut buf3))
            .await
            .expect("the hint did not send a probe: the loop slept on the old deadline")
            .unwrap();
        let m = crate::h225::ras::decode(&buf3[..probe.0]).unwrap();
        assert!(
            matches!(m, crate::h225::ras::RasMessage::registrationRequest(_)),
            "{m:?}"
        );
        stop_tx.send(true).unwrap();
        task.await.unwrap();
    }
}
