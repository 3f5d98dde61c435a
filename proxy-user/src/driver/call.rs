//! The call signalling driver: accepts TCP links on both sides, owns the
//! two legs of each call and pumps its [`Call`] state machine.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_util::codec::{Decoder, Encoder};
use tracing::Instrument;

use super::{DriverError, RasHandle};
use crate::budget::{ConnectionCaps, Refusal, SourceBudget};
use crate::call::{Call, CallConfig, CallEvent, Counter, Leg, LegLoss, LegSide, Phase, refuse};
use crate::config::Config;
use crate::ras_relay::Reanchor;
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
    /// Calls set up again through the gatekeeper that took control.
    pub reanchored: AtomicU64,
    /// Re-anchoring attempts that failed (tried again).
    pub reanchor_failed: AtomicU64,
    /// Re-anchoring SETUPs spliced onto a kept-up endpoint leg.
    pub spliced: AtomicU64,
    /// Calls no gatekeeper took over within the deadline.
    pub unanchored: AtomicU64,
    /// Calls released because their media went through a gatekeeper that
    /// went away.
    pub media_lost: AtomicU64,
    /// Endpoint-side connections closed unread: their source had spent its
    /// budget of new connections.
    pub refused_rate: AtomicU64,
    /// Endpoint-side connections closed unread: the proxy held
    /// `limits.max_connections`.
    pub refused_connections: AtomicU64,
    /// Endpoint-side connections closed unread: their source held
    /// `limits.max_connections_per_source`.
    pub refused_connections_per_source: AtomicU64,
    /// Endpoint-side connections closed unread: from one of the proxy's
    /// own addresses (a loop).
    pub refused_own: AtomicU64,
    /// H.245 addresses not relayed: the call had its listeners already, or
    /// the address was not the signalling peer's own.
    pub h245_refused: AtomicU64,
    /// Connections to an H.245 listener from another host than the peer
    /// expected, closed unread.
    pub h245_strangers: AtomicU64,
}

impl CallStats {
    /// Count a connection refused before it was read.
    pub fn refuse(&self, why: crate::budget::Refusal) {
        use crate::budget::Refusal;
        let n = match why {
            Refusal::Rate => &self.refused_rate,
            Refusal::Connections => &self.refused_connections,
            Refusal::ConnectionsPerSource => &self.refused_connections_per_source,
            Refusal::OwnAddress => &self.refused_own,
        };
        n.fetch_add(1, Ordering::Relaxed);
    }

    /// Count what a call reported.
    pub fn count(&self, c: Counter) {
        let n = match c {
            Counter::Setup => &self.setups,
            Counter::Relayed => &self.relayed,
            Counter::KeepaliveAnswered => &self.keepalives_answered,
            Counter::Malformed => &self.malformed,
            Counter::Unroutable => &self.unroutable,
            Counter::KeptUp => &self.kept_up,
            Counter::Reanchored => &self.reanchored,
            Counter::ReanchorFailed => &self.reanchor_failed,
            Counter::Spliced => &self.spliced,
            Counter::Unanchored => &self.unanchored,
            Counter::MediaLost => &self.media_lost,
        };
        n.fetch_add(1, Ordering::Relaxed);
    }

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

/// Which end of a call a task holds: the proxy's endpoint placed it, or
/// answers it. With both ends behind one proxy, two tasks share the
/// callIdentifier.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// The endpoint leg is the caller's.
    Calling,
    /// The endpoint leg is the callee's (the call came from a gatekeeper).
    Answering,
}

impl Role {
    fn other(self) -> Role {
        match self {
            Role::Calling => Role::Answering,
            Role::Answering => Role::Calling,
        }
    }
}

/// What reaches a running call task from outside its two legs.
pub enum CallInput {
    /// The gatekeeper now in control admitted the call: set it up through
    /// that gatekeeper (the calling side).
    Reanchor(Box<Reanchor>),
    /// No gatekeeper took the call over within the deadline.
    Unanchored,
    /// A gatekeeper's SETUP for this call on a new link (the called side).
    Splice {
        io: Box<LegIo>,
        setup: Bytes,
        peer: Option<SocketAddr>,
        controller: Option<String>,
    },
    /// The other end, held by this proxy too, hung up.
    FarEndReleased,
    /// The gatekeeper that held the call was declared down.
    ControllerLost,
}

type Mailboxes = HashMap<([u8; 16], Role), mpsc::UnboundedSender<CallInput>>;

/// The running call tasks by (callIdentifier, role): how the RAS driver
/// and other call tasks reach a call. Only mailboxes: each call's state
/// stays with its task.
#[derive(Clone, Default)]
pub struct CallTable {
    inner: Arc<Mutex<Mailboxes>>,
}

impl CallTable {
    fn insert(&self, id: [u8; 16], role: Role, tx: mpsc::UnboundedSender<CallInput>) {
        self.lock().insert((id, role), tx);
    }

    fn remove(&self, id: [u8; 16], role: Role) {
        self.lock().remove(&(id, role));
    }

    fn contains(&self, id: [u8; 16], role: Role) -> bool {
        self.lock().contains_key(&(id, role))
    }

    /// The callIdentifiers that have a running call task (live call
    /// signalling), for the RAS relay's call records.
    pub fn alive(&self) -> std::collections::HashSet<[u8; 16]> {
        self.lock().keys().map(|(id, _)| *id).collect()
    }

    /// Hand `input` to the task holding (`id`, `role`); gives it back when
    /// there is none.
    pub fn send(&self, id: [u8; 16], role: Role, input: CallInput) -> Result<(), CallInput> {
        let tx = self.lock().get(&(id, role)).cloned();
        match tx {
            Some(tx) => tx.send(input).map_err(|e| e.0),
            None => Err(input),
        }
    }

    /// Calls running.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// No call running.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Mailboxes> {
        // A panic elsewhere cannot leave a map of senders inconsistent.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One TCP leg of a call.
pub struct LegIo {
    stream: TcpStream,
    buf: BytesMut,
}

impl LegIo {
    fn new(stream: TcpStream) -> Self {
        set_keepalive(&stream);
        Self {
            stream,
            buf: BytesMut::with_capacity(4096),
        }
    }

    /// Next TPKT payload; `None` at EOF. Cancel-safe: a partly read frame
    /// stays in `buf`.
    async fn next(&mut self) -> Result<Option<Bytes>, LegLoss> {
        loop {
            match TpktCodec.decode(&mut self.buf) {
                Ok(Some(f)) => return Ok(Some(f)),
                Ok(None) => {}
                Err(e) => return Err(LegLoss::BadFraming(e.to_string())),
            }
            match self.stream.read_buf(&mut self.buf).await {
                Ok(0) => return Ok(None),
                Ok(_) => {}
                Err(e) => return Err(LegLoss::Failed(e.to_string())),
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

/// The next frame of a leg that may not exist yet.
async fn next_frame(leg: &mut Option<LegIo>) -> Result<Option<Bytes>, LegLoss> {
    match leg {
        Some(l) => l.next().await,
        None => std::future::pending().await,
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
    ras: RasHandle,
    cfg: CallConfig,
    limits: crate::config::LimitsConfig,
    /// Endpoint-side connections held, in total and per source.
    caps: Arc<Mutex<ConnectionCaps>>,
    /// Counters.
    pub stats: Arc<CallStats>,
    /// Running calls by callIdentifier.
    pub calls: CallTable,
}

impl CallDriver {
    /// Bind both listeners.
    pub async fn bind(
        cfg: &Config,
        ras: RasHandle,
    ) -> Result<(Self, TcpListener, TcpListener), DriverError> {
        let ep = SocketAddr::new(cfg.proxy.endpoint_address, cfg.proxy.call_signal_port);
        let gk = SocketAddr::new(cfg.proxy.gatekeeper_address, cfg.proxy.call_signal_port);
        let bind = |what, addr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| DriverError::Bind { what, addr, source })
        };
        // Free-bound: the endpoint-side address may be a pair's virtual
        // one, on this node only while it owns it.
        let what = "the endpoint-side call signalling listener";
        let l_ep = super::sockets::freebind_listener(ep).map_err(|source| DriverError::Bind {
            what,
            addr: ep,
            source,
        })?;
        let l_gk = bind("the gatekeeper-side call signalling listener", gk).await?;
        tracing::info!(endpoint_side = %ep, gatekeeper_side = %gk, "call signalling relay listening");
        Ok((
            Self {
                ras,
                cfg: CallConfig {
                    endpoint_side: ep,
                    gatekeeper_side: gk,
                    setup_wait: crate::call::SETUP_WAIT,
                    unanchored: cfg.calls.unanchored,
                },
                limits: cfg.limits.clone(),
                caps: Arc::new(Mutex::new(ConnectionCaps::new(
                    cfg.limits.max_connections as usize,
                    cfg.limits.max_connections_per_source as usize,
                ))),
                stats: Arc::default(),
                calls: CallTable::default(),
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
        // The accept loop is the budget's only user: no lock.
        let mut budget = SourceBudget::new(
            self.limits.connection_rate(),
            self.limits.max_sources as usize,
            Instant::now(),
        );
        let mut last_warning: Option<Instant> = None;
        loop {
            let accepted = tokio::select! {
                r = l_ep.accept() => r.map(|(s, p)| (s, p, LegSide::Endpoint)),
                r = l_gk.accept() => r.map(|(s, p)| (s, p, LegSide::Gatekeeper)),
                _ = shutdown.changed() => return,
            };
            let (stream, peer, side) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors (EMFILE/ENFILE) or memory: the
                    // pending connection stays queued and accept fails at
                    // once again. Pause instead of spinning a core and
                    // writing a log line per try.
                    tracing::warn!(error = %e, "accept failed; pausing 100 ms");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            // The endpoint LAN spends budgets before a byte is read; the
            // gatekeeper network is trusted.
            let held = match side {
                LegSide::Endpoint => match self.admit(&mut budget, peer.ip()) {
                    Ok(h) => Some(h),
                    Err(why) => {
                        self.stats.refuse(why);
                        // One line per 10 s at most, whatever the flood.
                        let now = Instant::now();
                        if last_warning.is_none_or(|t| now >= t + Duration::from_secs(10)) {
                            last_warning = Some(now);
                            tracing::warn!(%peer, reason = why.name(), "call signalling connection refused (further refusals for 10 s are only counted)");
                        }
                        // Reset at once (linger 0 does not block): no
                        // FIN_WAIT state kept for it.
                        let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
                        drop(stream);
                        continue;
                    }
                },
                LegSide::Gatekeeper => None,
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
                async move {
                    me.serve(stream, side, stop).await;
                    drop(held);
                }
                .instrument(span),
            );
        }
    }

    /// A new endpoint-side connection from `ip`: within its source's
    /// budget and the caps, or refused.
    fn admit(&self, budget: &mut SourceBudget, ip: IpAddr) -> Result<Held, Refusal> {
        // The proxy's own connections leave from these: one arriving here
        // is the proxy calling itself.
        if ip == self.cfg.endpoint_side.ip() || ip == self.cfg.gatekeeper_side.ip() {
            return Err(Refusal::OwnAddress);
        }
        if !budget.allow(ip, Instant::now()) {
            return Err(Refusal::Rate);
        }
        lock(&self.caps).open(ip)?;
        Ok(Held {
            caps: self.caps.clone(),
            ip,
        })
    }

    /// Pump one call: send what it produced, answer what it asks, feed it
    /// frames, leg losses, inputs from its mailbox and time until it is
    /// over (or its link was handed to the call it re-anchors).
    async fn serve(&self, stream: TcpStream, side: LegSide, mut shutdown: watch::Receiver<bool>) {
        let (peer, local) = (stream.peer_addr().ok(), stream.local_addr().ok());
        let mut legs: [Option<LegIo>; 2] = [Some(LegIo::new(stream)), None];
        let mut call = Call::accept(Instant::now(), self.cfg.clone(), side, peer, local);
        let mut shown: Option<Phase> = None;
        let (tx, mut inbox) = mpsc::unbounded_channel();
        let mut task = Task {
            tx,
            key: None,
            first: None,
            handed_over: false,
            h245_listeners: 0,
        };
        loop {
            while let Some((leg, bytes)) = call.poll_transmit() {
                let sent = match legs[leg.index()].as_mut() {
                    Some(io) => io.send(&bytes).await.is_ok(),
                    None => false,
                };
                if !sent {
                    call.handle_send_failed(Instant::now(), leg);
                }
            }
            if let Some(ev) = call.poll_event() {
                self.serve_event(&mut call, &mut legs, &mut task, ev).await;
                self.follow_phase(&call, &mut shown);
                continue;
            }
            if call.is_closed() || task.handed_over {
                break;
            }
            // A leg the call closed (a dead gatekeeper leg replaced, a
            // failed re-anchoring) is dropped here.
            for leg in [Leg::Caller, Leg::Callee] {
                if !call.is_open(leg) && legs[leg.index()].is_some() {
                    legs[leg.index()] = None;
                }
            }
            let deadline = call.poll_timeout();
            let [a, b] = &mut legs;
            let (leg, frame) = tokio::select! {
                f = next_frame(a), if call.is_open(Leg::Caller) => (Leg::Caller, f),
                f = next_frame(b), if call.is_open(Leg::Callee) => (Leg::Callee, f),
                Some(input) = inbox.recv() => {
                    self.serve_input(&mut call, &mut legs, input).await;
                    self.follow_phase(&call, &mut shown);
                    continue;
                }
                _ = sleep_until(deadline) => {
                    call.handle_timeout(Instant::now());
                    continue;
                }
                _ = shutdown.changed() => break,
            };
            let now = Instant::now();
            match frame {
                Ok(Some(payload)) => {
                    if task.first.is_none() && leg == Leg::Caller && !payload.is_empty() {
                        task.first = Some(payload.clone());
                    }
                    call.handle_frame(now, leg, payload)
                }
                Ok(None) => call.handle_leg_lost(now, leg, LegLoss::Closed),
                Err(e) => call.handle_leg_lost(now, leg, e),
            }
            if !call.is_open(leg) {
                legs[leg.index()] = None;
            }
            self.follow_phase(&call, &mut shown);
        }
        if let Some((id, role)) = task.key {
            self.calls.remove(id, role);
        }
        if let Some(p) = shown {
            self.stats.gauge(p).fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Something from outside the call's legs.
    async fn serve_input(&self, call: &mut Call, legs: &mut [Option<LegIo>; 2], input: CallInput) {
        let now = Instant::now();
        match input {
            CallInput::Reanchor(r) => call.handle_reanchor(now, &r),
            CallInput::Unanchored => call.handle_unanchored(now),
            CallInput::FarEndReleased => call.handle_far_end_released(now),
            CallInput::ControllerLost => call.handle_controller_lost(now),
            CallInput::Splice {
                mut io,
                setup,
                peer,
                controller,
            } => match call.handle_splice(now, peer, &setup, controller) {
                Ok(()) => legs[Leg::Caller.index()] = Some(*io),
                Err(cause) => {
                    tracing::warn!(
                        ?peer,
                        cause,
                        "a SETUP for this call that is no re-anchoring: refused"
                    );
                    if let Some(rc) = refuse(&setup, cause) {
                        let _ = io.send(&rc).await;
                    }
                }
            },
        }
    }

    async fn serve_event(
        &self,
        call: &mut Call,
        legs: &mut [Option<LegIo>; 2],
        task: &mut Task,
        ev: CallEvent,
    ) {
        match ev {
            CallEvent::Route(q) => {
                let (id, from_gatekeeper) = (q.call_id, q.from_gatekeeper);
                let answer = self.ras.route(q).await;
                let role = if call.endpoint_is_caller() {
                    Role::Calling
                } else {
                    Role::Answering
                };
                // A gatekeeper's SETUP for a call this proxy answers for
                // its endpoint already: the calling side re-anchored it
                // there. The link goes to that call's task.
                // Only the gatekeeper in control may: a SETUP with a held
                // call's callIdentifier from anyone else (a guessed or
                // sniffed identifier) is refused, and never takes over the
                // endpoint's leg nor reaches the endpoint as a second call.
                let mut answer = answer;
                if let (Some(id), true) = (id, from_gatekeeper)
                    && !answer.from_controller
                    && self.calls.contains(id, Role::Answering)
                {
                    tracing::warn!(
                        peer = ?legs[Leg::Caller.index()].as_ref().and_then(|l| l.stream.peer_addr().ok()),
                        "a SETUP for a held call from a host not in control: refused"
                    );
                    answer.route = None;
                }
                if let (Some(id), true) = (id, from_gatekeeper)
                    && self.calls.contains(id, Role::Answering)
                    && answer.from_controller
                    && let (Some(io), Some(setup)) =
                        (legs[Leg::Caller.index()].take(), task.first.clone())
                {
                    let peer = io.stream.peer_addr().ok();
                    let input = CallInput::Splice {
                        io: Box::new(io),
                        setup,
                        peer,
                        controller: answer.controller.clone(),
                    };
                    match self.calls.send(id, Role::Answering, input) {
                        Ok(()) => {
                            task.handed_over = true;
                            return;
                        }
                        // That call ended meanwhile: route it as any SETUP.
                        Err(CallInput::Splice { io, .. }) => legs[Leg::Caller.index()] = Some(*io),
                        Err(_) => {}
                    }
                }
                if let Some(id) = id {
                    self.calls.insert(id, role, task.tx.clone());
                    task.key = Some((id, role));
                }
                call.handle_route(Instant::now(), answer);
            }
            CallEvent::Connect { to, local_ip, .. } => match connect(local_ip, to).await {
                Ok(s) => {
                    legs[Leg::Callee.index()] = Some(LegIo::new(s));
                    call.handle_connected(Instant::now());
                }
                Err(e) => call.handle_connect_failed(Instant::now(), &e.to_string()),
            },
            CallEvent::H245Listen { listen_on, far_end } => {
                let mine = match (&legs[listen_on.other().index()], &legs[listen_on.index()]) {
                    _ if task.h245_listeners >= self.limits.h245_listeners_per_call => {
                        self.stats.h245_refused.fetch_add(1, Ordering::Relaxed);
                        Err(format!(
                            "the call has its {} H.245 listeners (limits.h245_listeners_per_call)",
                            task.h245_listeners
                        ))
                    }
                    (Some(from), Some(to)) => {
                        let r = self.h245_relay(from, to, far_end).await;
                        if r.is_ok() {
                            task.h245_listeners += 1;
                        }
                        r.map_err(|e| e.to_string())
                    }
                    _ => Err("a leg is gone".to_string()),
                };
                call.handle_h245_listener(Instant::now(), mine);
            }
            CallEvent::GatekeeperLegLost { peer } => self.ras.gatekeeper_leg_lost(peer).await,
            CallEvent::Anchored { .. } => {
                if let Some(id) = call.call_id() {
                    self.ras.anchored(id).await;
                }
            }
            CallEvent::ReanchorFailed => {
                if let Some(id) = call.call_id() {
                    self.ras.reanchor_failed(id).await;
                }
            }
            CallEvent::ReleasedUnanchored => {
                if let Some((id, role)) = task.key {
                    let _ = self.calls.send(id, role.other(), CallInput::FarEndReleased);
                }
            }
            CallEvent::Count(c) => {
                if c == Counter::Setup {
                    let id = call.call_id().map(|c| crate::h225::value::hex(&c));
                    tracing::Span::current()
                        .record("call_id", id.unwrap_or_default().as_str())
                        .record("crv", call.crv());
                }
                self.stats.count(c);
            }
            CallEvent::Closed => {}
        }
    }

    /// Keep the per-phase gauges in step with the call once it is relayed.
    fn follow_phase(&self, call: &Call, shown: &mut Option<Phase>) {
        if shown.is_none() && !call.is_relaying() {
            return;
        }
        let now = call.phase();
        if *shown == Some(now) {
            return;
        }
        if let Some(before) = shown.replace(now) {
            self.stats.gauge(before).fetch_sub(1, Ordering::Relaxed);
            tracing::info!(state = now.name(), controller = ?call.controller(), "call state");
        }
        self.stats.gauge(now).fetch_add(1, Ordering::Relaxed);
    }
}

/// A place among the connection caps, given back when dropped.
struct Held {
    caps: Arc<Mutex<ConnectionCaps>>,
    ip: IpAddr,
}

impl Drop for Held {
    fn drop(&mut self) {
        lock(&self.caps).release(self.ip);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Counts stay consistent whatever panicked while holding them.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A call task's own bookkeeping beside its [`Call`].
struct Task {
    /// Its mailbox, as the call table hands it out.
    tx: mpsc::UnboundedSender<CallInput>,
    /// Its entry in the call table.
    key: Option<([u8; 16], Role)>,
    /// The first message on the caller's leg (the SETUP), as it came: what
    /// a splice hands over.
    first: Option<Bytes>,
    /// Its link went to the call it re-anchors; nothing left to do.
    handed_over: bool,
    /// H.245 listeners opened for this call.
    h245_listeners: u32,
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
        None => std::future::pending().await,
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
        // The relay connects only to the signalling peer that sent the
        // address and takes a connection only from the peer it was sent
        // to: otherwise any host could have the proxy open connections to
        // hosts of its choosing, or win the race for a call's H.245 channel
        // and redirect its media.
        let sender = from.stream.peer_addr()?.ip();
        let expected = to.stream.peer_addr()?.ip();
        if orig.ip() != sender {
            self.stats.h245_refused.fetch_add(1, Ordering::Relaxed);
            return Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                format!("h245Address {orig} is not the sender's own ({sender})"),
            ));
        }
        let listener = TcpListener::bind(SocketAddr::new(listen_ip, 0)).await?;
        let mine = listener.local_addr()?;
        let stats = self.stats.clone();
        tokio::spawn(
            async move {
                let until = tokio::time::Instant::now() + Duration::from_secs(60);
                let mut a = loop {
                    match tokio::time::timeout_at(until, listener.accept()).await {
                        Ok(Ok((a, from))) if from.ip() == expected => break a,
                        Ok(Ok((_, from))) => {
                            stats.h245_strangers.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(%mine, %from, %expected, "H.245 connection from a stranger closed");
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(%mine, error = %e, "H.245 accept");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                        Err(_) => {
                            tracing::debug!(%mine, "no H.245 connection came");
                            return;
                        }
                    }
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
