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
    /// Registrations waiting to be re-registered at the gatekeeper in
    /// control (after a control move; paced).
    pub reregistrations_pending: usize,
    /// Counters.
    pub stats: RelayStats,
    /// Each gatekeeper.
    pub gatekeepers: Vec<crate::ras_relay::GatekeeperStatus>,
}

/// The bound RAS sockets, ready to run.
pub struct RasDriver {
    relay: Arc<Mutex<RasRelay>>,
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

fn reuse_socket(local: SocketAddr) -> std::io::Result<socket2::Socket> {
    let domain = if local.is_ipv4() {
        socket2::Domain::IPV4
    } else {
        socket2::Domain::IPV6
    };
    let s = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.set_nonblocking(true)?;
    s.bind(&local.into())?;
    Ok(s)
}

impl RasDriver {
    /// Bind the endpoint-side and gatekeeper-side RAS sockets.
    pub async fn bind(cfg: &Config) -> Result<Self, DriverError> {
        let ep_addr = SocketAddr::new(cfg.proxy.endpoint_address, cfg.proxy.ras_port);
        let gk_addr = SocketAddr::new(cfg.proxy.gatekeeper_address, cfg.proxy.gatekeeper_ras_port);
        let err = |what, addr| move |source| DriverError::Bind { what, addr, source };
        let endpoint = UdpSocket::bind(ep_addr)
            .await
            .map_err(err("the endpoint-side RAS socket", ep_addr))?;
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
        let mut relay = RasRelay::new(cfg.relay(gk_local), Instant::now());
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
        Ok(Self {
            relay: Arc::new(Mutex::new(relay)),
            endpoint: Arc::new(endpoint),
            gatekeeper: Arc::new(gatekeeper),
            per_gk,
            offload: None,
            liveness: None,
            liveness_every: Duration::from_millis(cfg.heartbeat.interval_ms.max(1)),
            state,
        })
    }

    /// Write the registration table (atomically: a temporary file renamed).
    fn save_state(&self) {
        let Some(path) = &self.state else { return };
        let snapshot = lock(&self.relay).snapshot();
        let write = || -> std::io::Result<()> {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let tmp = path.with_extension("json.tmp");
            std::fs::write(&tmp, serde_json::to_vec(&snapshot)?)?;
            std::fs::rename(&tmp, path)
        };
        if let Err(e) = write() {
            tracing::warn!(path = %path.display(), error = %e, "saving the registration table");
        }
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
        let mut relay = lock(&self.relay);
        for (ip, g) in table.entries() {
            if g.last_ns != 0 {
                relay.note_gatekeeper_seen(ip, crate::offload::instant_of(g.last_ns));
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
    fn sync_offload(&self, entries: OffloadEntries) {
        if entries.is_empty() {
            return;
        }
        let mut relay = lock(&self.relay);
        for (source, e) in entries {
            if e.answered == 0 {
                continue;
            }
            let at = crate::offload::instant_of(e.last_ns);
            relay.note_offloaded_keepalives(source, at, e.answered);
        }
    }

    /// The unconnected gatekeeper-side RAS socket: every endpoint's own
    /// gatekeeper-side address is steered to it.
    pub fn gatekeeper_socket(&self) -> &UdpSocket {
        &self.gatekeeper
    }

    /// The relay, shared with the call signalling driver for routing.
    pub fn relay(&self) -> Arc<Mutex<RasRelay>> {
        self.relay.clone()
    }

    /// Run until `shutdown` turns true; publishes a status snapshot after
    /// every change.
    pub async fn run(
        mut self,
        mut shutdown: watch::Receiver<bool>,
        status: watch::Sender<RasStatus>,
    ) {
        let mut live = tokio::time::interval(self.liveness_every);
        live.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut save = tokio::time::interval(Duration::from_secs(1));
        save.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut dirty = false;
        let mut offload_rx = match self.start_offload_sync() {
            Some((first, rx)) => {
                let held: std::collections::HashSet<SocketAddr> =
                    first.into_iter().map(|(s, _)| s).collect();
                lock(&self.relay).retain_offloaded(&held);
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
        loop {
            let deadline = tokio::time::Instant::from_std(lock(&self.relay).poll_timeout());
            // Biased: gatekeeper input and timers before endpoint traffic,
            // so a flood of endpoint requests cannot starve the heartbeat.
            tokio::select! {
                biased;
                _ = shutdown.changed() => break,
                Some(input) = rx.recv() => match input {
                    GkInput::Datagram(from, to, bytes) => lock(&self.relay).handle_gatekeeper_at(Instant::now(), from, to, &bytes),
                    GkInput::Unreachable(gk, e) => {
                        tracing::warn!(gatekeeper = %gk, error = %e, "gatekeeper unreachable (ICMP)");
                        lock(&self.relay).handle_unreachable(Instant::now(), gk);
                    }
                },
                _ = tokio::time::sleep_until(deadline) => lock(&self.relay).handle_timeout(Instant::now()),
                Some(entries) = async { offload_rx.as_mut()?.recv().await }, if offload_rx.is_some() => self.sync_offload(entries),
                _ = live.tick(), if self.liveness.is_some() => self.sync_liveness(),
                _ = save.tick(), if dirty && self.state.is_some() => {
                    self.save_state();
                    dirty = false;
                }
                r = self.endpoint.recv_from(&mut ebuf) => match r {
                    Ok((n, from)) => lock(&self.relay).handle_endpoint(Instant::now(), from, &ebuf[..n]),
                    Err(e) => tracing::debug!(error = %e, "endpoint-side RAS socket"),
                },
            }
            let out: Vec<_> = {
                let mut relay = lock(&self.relay);
                std::iter::from_fn(|| relay.poll_transmit()).collect()
            };
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
            let mut relay = lock(&self.relay);
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
            self.save_state();
        }
        for r in readers {
            r.abort();
        }
    }
}

/// Send one datagram from `from`, an endpoint's own gatekeeper-side
/// address: a socket bound to it for this send only. Its answers still
/// reach the shared socket (sk_lookup runs before the normal lookup), so
/// the proxy holds one descriptor, not one per endpoint; the cost is a
/// bind per datagram, which at the re-registration pace (1,000/s) is small.
fn send_from(from: SocketAddr, bytes: &[u8], to: SocketAddr) -> std::io::Result<usize> {
    let s = socket2::Socket::new(
        socket2::Domain::for_address(from),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    s.set_reuse_address(true)?;
    s.set_nonblocking(true)?;
    s.bind(&from.into())?;
    s.send_to(bytes, &to.into())
}

/// Ask for the original destination address of every datagram
/// (IP_RECVORIGDSTADDR): with sk_lookup steering many addresses to one
/// socket, it is the only way to know which one a datagram was sent to.
fn recv_original_destination(s: &socket2::Socket, v4: bool) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let one: libc::c_int = 1;
    let (level, opt) = if v4 {
        (libc::SOL_IP, libc::IP_RECVORIGDSTADDR)
    } else {
        (libc::SOL_IPV6, libc::IPV6_RECVORIGDSTADDR)
    };
    // SAFETY: setsockopt on our own socket with a valid int.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            level,
            opt,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// `recv_from` that also returns the datagram's original destination
/// (see [`recv_original_destination`]).
async fn recv_with_destination(
    sock: &UdpSocket,
    buf: &mut [u8],
) -> std::io::Result<(usize, SocketAddr, Option<SocketAddr>)> {
    use std::os::fd::AsRawFd;
    let fd = sock.as_raw_fd();
    sock.async_io(tokio::io::Interest::READABLE, || {
        let mut from: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let mut cbuf = [0u64; 16];
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: msghdr is plain data; every pointer in it outlives the call.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_name = (&mut from as *mut libc::sockaddr_storage).cast();
        msg.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&cbuf);
        // SAFETY: fd is our socket, msg is set up above.
        let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_DONTWAIT) };
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: the kernel wrote a sockaddr of msg_namelen bytes.
        let from = unsafe { sockaddr_to(&from) }
            .ok_or_else(|| std::io::Error::other("datagram without a source address"))?;
        let mut to = None;
        // SAFETY: walking the control messages the kernel wrote into cbuf.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(&msg);
            while !c.is_null() {
                let (lvl, ty) = ((*c).cmsg_level, (*c).cmsg_type);
                if (lvl == libc::SOL_IP && ty == libc::IP_ORIGDSTADDR)
                    || (lvl == libc::SOL_IPV6 && ty == libc::IPV6_ORIGDSTADDR)
                {
                    let mut ss: libc::sockaddr_storage = std::mem::zeroed();
                    let len = ((*c).cmsg_len as usize)
                        .saturating_sub(libc::CMSG_LEN(0) as usize)
                        .min(std::mem::size_of::<libc::sockaddr_storage>());
                    std::ptr::copy_nonoverlapping(
                        libc::CMSG_DATA(c),
                        (&mut ss as *mut libc::sockaddr_storage).cast::<u8>(),
                        len,
                    );
                    to = sockaddr_to(&ss);
                }
                c = libc::CMSG_NXTHDR(&msg, c);
            }
        }
        Ok((n as usize, from, to))
    })
    .await
}

/// A socket address out of a `sockaddr_storage` (IPv4-mapped IPv6 turned
/// into IPv4).
///
/// # Safety
/// `ss` must hold a sockaddr of the family it names.
unsafe fn sockaddr_to(ss: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match ss.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the family says it is a sockaddr_in.
            let sin =
                unsafe { &*(ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::from((
                u32::from_be(sin.sin_addr.s_addr).to_be_bytes(),
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says it is a sockaddr_in6.
            let sin6 =
                unsafe { &*(ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            let ip = std::net::Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            let port = u16::from_be(sin6.sin6_port);
            Some(match ip.to_ipv4_mapped() {
                Some(v4) => SocketAddr::from((v4, port)),
                None => SocketAddr::from((ip, port)),
            })
        }
        _ => None,
    }
}

/// 8 MiB socket buffers (SO_RCVBUFFORCE/SO_SNDBUFFORCE when privileged, so
/// net.core.rmem_max does not cap them; the plain options otherwise).
pub fn big_buffers(s: &UdpSocket) {
    use std::os::fd::AsRawFd;
    let size: libc::c_int = 8 << 20;
    for (force, plain) in [
        (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF),
        (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF),
    ] {
        for opt in [force, plain] {
            // SAFETY: setsockopt on our own socket with a valid int.
            let rc = unsafe {
                libc::setsockopt(
                    s.as_raw_fd(),
                    libc::SOL_SOCKET,
                    opt,
                    (&size as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            if rc == 0 {
                break;
            }
        }
    }
}

/// How long a new call-signalling link may stay without a SETUP.
const SETUP_WAIT: Duration = Duration::from_secs(30);

/// Lock the relay; a panic in another task must not take RAS down with it.
pub fn lock(m: &Mutex<RasRelay>) -> std::sync::MutexGuard<'_, RasRelay> {
    m.lock().unwrap_or_else(|p| p.into_inner())
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
        Event::Offload { source, .. } => {
            tracing::debug!(%source, "keepalives offloaded to the kernel")
        }
        Event::OffloadWithdrawn { source } => {
            tracing::debug!(%source, "keepalive offload withdrawn")
        }
    }
}

// ------------------------------------------------------------ call signalling

use std::sync::Mutex;

use std::sync::atomic::{AtomicU64, Ordering};
use tracing::Instrument;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_util::codec::{Decoder, Encoder};

use crate::call::{Action, Call, Leg, Phase};
use crate::ras_relay::CallRoute;
use crate::tpkt::TpktCodec;

/// Call signalling counters, shared by every call task.
#[derive(Debug, Default)]
pub struct CallStats {
    /// SETUPs received.
    pub setups: AtomicU64,
    /// Calls in setup (SETUP relayed, no answer yet).
    pub in_setup: AtomicU64,
    /// Calls proceeding.
    pub proceeding: AtomicU64,
    /// Calls alerting.
    pub alerting: AtomicU64,
    /// Calls currently connected (CONNECT seen, not released).
    pub active: AtomicU64,
    /// Calls releasing (a transient state while the legs close).
    pub releasing: AtomicU64,
    /// Calls whose gatekeeper-side leg dropped while the endpoint leg was
    /// kept up.
    pub kept_up: AtomicU64,
    /// Messages relayed.
    pub relayed: AtomicU64,
    /// STATUS ENQUIRY and empty-TPKT keepalives answered by the proxy.
    pub keepalives_answered: AtomicU64,
    /// Links closed for a malformed first message or bad framing.
    pub malformed: AtomicU64,
    /// SETUPs refused for want of a route.
    pub unroutable: AtomicU64,
    /// Separate H.245 channels relayed.
    pub h245_channels: AtomicU64,
}

impl CallStats {
    /// The gauge counting calls in `p`.
    pub fn gauge(&self, p: Phase) -> &AtomicU64 {
        match p {
            Phase::Setup => &self.in_setup,
            Phase::Proceeding => &self.proceeding,
            Phase::Alerting => &self.alerting,
            Phase::Active => &self.active,
            Phase::Released => &self.releasing,
        }
    }
}

/// Which side of the proxy a TCP leg is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LegSide {
    Endpoint,
    Gatekeeper,
}

struct LegIo {
    stream: TcpStream,
    buf: BytesMut,
    side: LegSide,
    open: bool,
    /// The far end, taken at the start: a socket that timed out no longer
    /// knows it (ENOTCONN).
    peer: Option<SocketAddr>,
}

impl LegIo {
    fn new(stream: TcpStream, side: LegSide) -> Self {
        set_keepalive(&stream);
        Self {
            peer: stream.peer_addr().ok(),
            stream,
            buf: BytesMut::with_capacity(4096),
            side,
            open: true,
        }
    }

    /// Next TPKT payload; `None` at EOF. Cancel-safe: a partly read frame
    /// stays in `buf`.
    async fn next(&mut self) -> Result<Option<Bytes>, String> {
        loop {
            match TpktCodec.decode(&mut self.buf) {
                Ok(Some(f)) => return Ok(Some(f)),
                Ok(None) => {}
                Err(e) => return Err(e.to_string()),
            }
            match self.stream.read_buf(&mut self.buf).await {
                Ok(0) => return Ok(None),
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    }

    async fn send(&mut self, payload: &[u8]) -> std::io::Result<()> {
        let mut out = BytesMut::with_capacity(payload.len() + 4);
        TpktCodec
            .encode(payload, &mut out)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))?;
        self.stream.write_all(&out).await
    }
}

/// Short TCP keepalive on every signalling socket: Linux's 2 h default
/// would hide a dead peer for hours.
fn set_keepalive(s: &TcpStream) {
    let ka = socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(10))
        .with_interval(Duration::from_secs(3))
        .with_retries(3);
    let _ = socket2::SockRef::from(s).set_tcp_keepalive(&ka);
    let _ = s.set_nodelay(true);
}

/// The call signalling relay: listens on TCP `call_signal_port` on both
/// sides and relays each call between two TCP legs it terminates.
pub struct CallDriver {
    relay: Arc<Mutex<RasRelay>>,
    endpoint_side: SocketAddr,
    gatekeeper_side: SocketAddr,
    /// Counters.
    pub stats: Arc<CallStats>,
}

impl CallDriver {
    /// Bind both listeners.
    pub async fn bind(
        cfg: &Config,
        relay: Arc<Mutex<RasRelay>>,
    ) -> Result<(Self, TcpListener, TcpListener), DriverError> {
        let ep = SocketAddr::new(cfg.proxy.endpoint_address, cfg.proxy.call_signal_port);
        let gk = SocketAddr::new(cfg.proxy.gatekeeper_address, cfg.proxy.call_signal_port);
        let bind = |what, addr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| DriverError::Bind { what, addr, source })
        };
        let l_ep = bind("the endpoint-side call signalling listener", ep).await?;
        let l_gk = bind("the gatekeeper-side call signalling listener", gk).await?;
        tracing::info!(endpoint_side = %ep, gatekeeper_side = %gk, "call signalling relay listening");
        Ok((
            Self {
                relay,
                endpoint_side: ep,
                gatekeeper_side: gk,
                stats: Arc::default(),
            },
            l_ep,
            l_gk,
        ))
    }

    /// Accept calls until `shutdown`.
    pub async fn run(
        self: Arc<Self>,
        l_ep: TcpListener,
        l_gk: TcpListener,
        mut shutdown: watch::Receiver<bool>,
    ) {
        loop {
            let (stream, peer, side) = tokio::select! {
                r = l_ep.accept() => match r {
                    Ok((s, p)) => (s, p, LegSide::Endpoint),
                    Err(e) => { tracing::warn!(error = %e, "accept"); continue; }
                },
                r = l_gk.accept() => match r {
                    Ok((s, p)) => (s, p, LegSide::Gatekeeper),
                    Err(e) => { tracing::warn!(error = %e, "accept"); continue; }
                },
                _ = shutdown.changed() => return,
            };
            let me = self.clone();
            let stop = shutdown.clone();
            let span = tracing::info_span!(
                "call",
                %peer,
                call_id = tracing::field::Empty,
                crv = tracing::field::Empty
            );
            tokio::spawn(
                async move { me.serve(LegIo::new(stream, side), peer, stop).await }
                    .instrument(span),
            );
        }
    }

    async fn serve(&self, mut a: LegIo, peer: SocketAddr, mut shutdown: watch::Receiver<bool>) {
        // The first message, after any keepalives, must be SETUP, and soon:
        // an idle link that never starts a call would hold a task forever.
        let first = tokio::time::timeout(SETUP_WAIT, async {
            loop {
                match a.next().await {
                    Ok(Some(f)) if f.is_empty() => continue,
                    Ok(Some(f)) => return Ok(Some(f)),
                    other => return other,
                }
            }
        })
        .await;
        let setup = match first {
            Ok(Ok(Some(f))) => f,
            Ok(Ok(None)) => return,
            Ok(Err(e)) => {
                self.stats.malformed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%peer, error = %e, "call signalling framing");
                return;
            }
            Err(_) => {
                self.stats.malformed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%peer, "no SETUP within {SETUP_WAIT:?}; closing the link");
                return;
            }
        };
        let (mut call, info) = match Call::from_setup(&setup) {
            Ok(v) => v,
            Err(e) => {
                self.stats.malformed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%peer, error = %e, "first message refused");
                let cause = if matches!(e, crate::call::CallError::NotSetup(_)) {
                    101
                } else {
                    100
                };
                if let Some(rc) = crate::call::refuse(&setup, cause) {
                    let _ = a.send(&rc).await;
                }
                return;
            }
        };
        self.stats.setups.fetch_add(1, Ordering::Relaxed);
        let call_hex = call
            .call_id
            .map(|c| crate::h225::value::hex(&c))
            .unwrap_or_default();
        tracing::Span::current()
            .record("call_id", call_hex.as_str())
            .record("crv", call.crv);
        // A gatekeeper's connection to an endpoint's own gatekeeper-side
        // address is that endpoint's call, whatever the SETUP's aliases say.
        let local = a.stream.local_addr().ok();
        let (route, caller) = {
            let relay = lock(&self.relay);
            let by_identity = local
                .filter(|_| a.side == LegSide::Gatekeeper)
                .and_then(|l| relay.route_identity(l));
            let route = by_identity.or_else(|| {
                relay.route_call(
                    info.call_id,
                    &info.destinations,
                    a.side == LegSide::Gatekeeper,
                )
            });
            let caller = info.call_id.and_then(|c| relay.caller_identity(&c));
            (route, caller)
        };
        let (target, side, local_ip) = match route {
            Some(CallRoute::Local {
                call_signal,
                endpoint_id,
            }) => {
                tracing::info!(%endpoint_id, to = %call_signal, "SETUP routed to a local endpoint");
                (call_signal, LegSide::Endpoint, self.endpoint_side.ip())
            }
            Some(CallRoute::Remote(addr)) => {
                tracing::info!(to = %addr, "SETUP routed to the gatekeeper side");
                // From the caller's own gatekeeper-side address, so the far
                // end sees the endpoint it registered.
                let ip = caller
                    .as_ref()
                    .map(|(cs, _)| cs.ip())
                    .unwrap_or(self.gatekeeper_side.ip());
                (addr, LegSide::Gatekeeper, ip)
            }
            None => {
                self.stats.unroutable.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(destinations = ?info.destinations, "no route: RELEASE COMPLETE cause 3");
                let _ = a.send(&call.release_complete(Leg::Caller, 3)).await;
                return;
            }
        };
        let b = match connect(local_ip, target).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(to = %target, error = %e, "callee unreachable: RELEASE COMPLETE cause 27");
                let _ = a.send(&call.release_complete(Leg::Caller, 27)).await;
                return;
            }
        };
        let mut b = LegIo::new(b, side);
        // Toward a gatekeeper the SETUP names the caller as the gatekeeper
        // knows it: its own address there and the endpointIdentifier it
        // was assigned.
        let (proxy_side, endpoint_id) = match (side, caller) {
            (LegSide::Gatekeeper, Some((cs, id))) => (cs, id),
            _ => (SocketAddr::new(local_ip, self.endpoint_side.port()), None),
        };
        let out = match Call::rewrite_setup(&setup, proxy_side, target, endpoint_id.as_deref()) {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!(error = %e, "SETUP could not be re-encoded");
                return;
            }
        };
        if b.send(&out).await.is_err() {
            let _ = a.send(&call.release_complete(Leg::Caller, 27)).await;
            return;
        }
        let mut shown = Phase::Setup;
        self.stats.gauge(shown).fetch_add(1, Ordering::Relaxed);
        loop {
            let (leg, frame) = tokio::select! {
                f = a.next(), if a.open => (Leg::Caller, f),
                f = b.next(), if b.open => (Leg::Callee, f),
                _ = shutdown.changed() => break,
            };
            let (this, other) = match leg {
                Leg::Caller => (&mut a, &mut b),
                Leg::Callee => (&mut b, &mut a),
            };
            match frame {
                Ok(Some(payload)) => match call.handle(leg, &payload) {
                    Ok(Action::Relay(mut bytes)) => {
                        self.stats.relayed.fetch_add(1, Ordering::Relaxed);
                        if let Some(orig) = crate::call::h245_address(&bytes) {
                            // The receiver must reach H.245 through the proxy.
                            match self.h245_relay(this, other, orig).await {
                                Ok(mine) => match crate::call::rewrite_h245(&bytes, mine) {
                                    Ok(b) => bytes = b,
                                    Err(e) => {
                                        tracing::warn!(error = %e, "h245Address not rewritten")
                                    }
                                },
                                Err(e) => {
                                    tracing::warn!(error = %e, "no H.245 listener; address left as is")
                                }
                            }
                        }
                        if let Some(alt) = crate::call::alternative_address(&bytes) {
                            // A FACILITY redirecting the call: the receiver
                            // comes back to the proxy, which routes its new
                            // SETUP like any other, so the call cannot leave.
                            let mine = match other.side {
                                LegSide::Endpoint => self.endpoint_side,
                                LegSide::Gatekeeper => self.gatekeeper_side,
                            };
                            match crate::call::rewrite_alternative(&bytes, mine) {
                                Ok(b) => {
                                    tracing::info!(%alt, to = %mine, "FACILITY alternativeAddress rewritten to the proxy");
                                    bytes = b;
                                }
                                Err(e) => {
                                    tracing::warn!(error = %e, "FACILITY alternativeAddress not rewritten")
                                }
                            }
                        }
                        if other.open && other.send(&bytes).await.is_err() {
                            other.open = false;
                        }
                    }
                    Ok(Action::Answer(bytes)) => {
                        self.stats
                            .keepalives_answered
                            .fetch_add(1, Ordering::Relaxed);
                        let _ = this.send(&bytes).await;
                    }
                    Ok(Action::Absorb) => {
                        if payload.is_empty() {
                            self.stats
                                .keepalives_answered
                                .fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Err(e) => {
                        self.stats.malformed.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(?leg, error = %e, "malformed message dropped; call unchanged");
                    }
                },
                Ok(None) | Err(_) => {
                    this.open = false;
                    if call.phase == Phase::Released {
                        break;
                    }
                    // The gatekeeper side of an established call went away
                    // (FIN, RST, keepalive or retransmission timeout, ICMP):
                    // keep the endpoint's call up. Only a RELEASE COMPLETE
                    // from the far end or the gatekeeper clears it; the
                    // proxy answers the endpoint's keepalives meanwhile,
                    // and a loss from a gatekeeper's address is a liveness
                    // hint for the heartbeat. A call not yet connected, or
                    // an endpoint's own leg, ends the call: keeping it
                    // would leave a zombie.
                    let keep = this.side == LegSide::Gatekeeper
                        && other.side == LegSide::Endpoint
                        && call.phase == Phase::Active;
                    if keep {
                        let why = match &frame {
                            Ok(None) => "closed".to_string(),
                            Err(e) => e.clone(),
                            Ok(Some(_)) => unreachable!("handled above"),
                        };
                        if let Some(ip) = this.peer.map(|p| p.ip()) {
                            let mut relay = lock(&self.relay);
                            if relay.is_gatekeeper_ip(ip) {
                                relay.handle_transport_loss(Instant::now(), ip);
                            }
                        }
                        self.stats.kept_up.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(?leg, peer = ?this.peer, %why, "gatekeeper-side leg lost; endpoint leg kept up");
                        continue;
                    }
                    tracing::info!(?leg, "leg closed; releasing the other leg");
                    if other.open {
                        let _ = other.send(&call.release_complete(leg.other(), 41)).await;
                    }
                    break;
                }
            }
            if call.phase != shown {
                self.stats.gauge(shown).fetch_sub(1, Ordering::Relaxed);
                shown = call.phase;
                self.stats.gauge(shown).fetch_add(1, Ordering::Relaxed);
                tracing::info!(state = shown.name(), "call state");
            }
            if call.phase == Phase::Released {
                tracing::info!(
                    relayed = call.relayed,
                    keepalives_answered = call.keepalives_answered,
                    "call released"
                );
                break;
            }
            if !a.open && !b.open {
                break;
            }
        }
        self.stats.gauge(shown).fetch_sub(1, Ordering::Relaxed);
    }
}

impl CallDriver {
    /// Open a listener on the receiving leg's side for an H.245 channel
    /// whose far end listens at `orig` (on the sending leg's side), and
    /// splice the first connection to it. Returns the listener's address.
    async fn h245_relay(
        &self,
        from: &LegIo,
        to: &LegIo,
        orig: SocketAddr,
    ) -> std::io::Result<SocketAddr> {
        let listen_ip = to.stream.local_addr()?.ip();
        let connect_ip = from.stream.local_addr()?.ip();
        let listener = TcpListener::bind(SocketAddr::new(listen_ip, 0)).await?;
        let mine = listener.local_addr()?;
        let stats = self.stats.clone();
        tokio::spawn(
            async move {
                let Ok(Ok((mut a, _))) =
                    tokio::time::timeout(Duration::from_secs(60), listener.accept()).await
                else {
                    tracing::debug!(%mine, "no H.245 connection came");
                    return;
                };
                let mut b = match connect(connect_ip, orig).await {
                    Ok(b) => b,
                    Err(e) => {
                        tracing::warn!(%orig, error = %e, "H.245 far end unreachable");
                        return;
                    }
                };
                set_keepalive(&a);
                set_keepalive(&b);
                stats.h245_channels.fetch_add(1, Ordering::Relaxed);
                tracing::info!(%mine, %orig, "H.245 channel relayed");
                let _ = tokio::io::copy_bidirectional(&mut a, &mut b).await;
            }
            .in_current_span(),
        );
        Ok(mine)
    }
}

async fn connect(local_ip: std::net::IpAddr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let sock = if to.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if local_ip.is_ipv4() == to.is_ipv4() && !local_ip.is_unspecified() {
        sock.bind(SocketAddr::new(local_ip, 0))?;
    }
    tokio::time::timeout(Duration::from_secs(5), sock.connect(to))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))?
}
