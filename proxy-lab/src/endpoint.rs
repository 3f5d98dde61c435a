//! Lab H.323 endpoints, built on the project's codec: each registers, sends
//! lightweight RRQ keepalives, places or answers a call (ARQ, SETUP with a
//! fastStart OpenLogicalChannel carrying its RTP address, CONNECT), sends
//! real RTP (12-byte header + 160 bytes of G.711 every 20 ms) to its peer,
//! counts lost and out-of-order packets, and sends Q.931 STATUS ENQUIRY on
//! its call.
//!
//! With `drop_calls_on_silence` an endpoint behaves like many real phones:
//! it tears its calls down when its keepalives go unanswered (it takes the
//! gatekeeper for gone). Every endpoint ends a call when its signalling
//! link drops.
//!
//! One process runs many endpoints. It prints a status line
//! (`eps registered=.. calls_active=.. ...`) every `report` interval and
//! reads commands on stdin: `call <index> <number>`, `hangup <index>`, `status`,
//! `quit`.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpSocket, TcpStream, UdpSocket};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_util::codec::{Decoder, Encoder};

use proxy_user::h225::PROTOCOL_ID;
use proxy_user::h225::asn::h323_messages::H323UUPDUH323MessageBody;
use proxy_user::h225::asn::multimedia_system_control::{OpenLogicalChannel, UnicastAddress};
use proxy_user::h225::ras::{self, RasMessage};
use proxy_user::h225::uuie::{self, H323UserInformation};
use proxy_user::h225::value::{bmp_text, hex, ras_from_json, seq_num, socket_addr, transport_json};
use proxy_user::q931::{self, CallRef, Ie, Message, PartyNumber, ie, msg};
use proxy_user::tpkt::TpktCodec;

/// Settings of a lab endpoint process.
#[derive(Clone, Debug)]
pub struct EpOptions {
    /// Gatekeeper (or proxy) RAS address.
    pub gatekeeper: SocketAddr,
    /// Local address of every endpoint.
    pub ip: IpAddr,
    /// Number of endpoints.
    pub count: usize,
    /// E.164 number of endpoint 0; endpoint i has first_number + i.
    pub first_number: u64,
    /// Endpoint i uses ports base+3i (RAS), +1 (call signalling), +2 (RTP).
    pub base_port: u16,
    /// timeToLive asked for, seconds.
    pub ttl: u32,
    /// Interval of lightweight RRQ keepalives.
    pub keepalive: Duration,
    /// Tear calls down when keepalives go unanswered.
    pub drop_calls_on_silence: bool,
    /// Interval of Q.931 STATUS ENQUIRY on each call.
    pub status_enquiry: Duration,
    /// Endpoint 2k calls endpoint 2k+1 for k < pairs, once all registered.
    pub pairs: usize,
    /// Interval of status lines.
    pub report: Duration,
    /// Open a separate H.245 channel on each call: the callee signals an
    /// h245Address in CONNECT and echoes what arrives there; the caller
    /// connects, sends a TPKT and counts the echo (`h245_ok`).
    pub h245: bool,
    /// How long the caller waits after CONNECT before it connects to the
    /// H.245 address (a slow endpoint: the window in which another host
    /// could try to take the channel).
    pub h245_delay: Duration,
}

#[derive(Default)]
struct Stats {
    registered: AtomicU64,
    calls_active: AtomicU64,
    calls_dropped: AtomicU64,
    calls_released: AtomicU64,
    calls_failed: AtomicU64,
    rtp_sent: AtomicU64,
    keepalives_sent: AtomicU64,
    keepalives_unanswered: AtomicU64,
    enquiries_unanswered: AtomicU64,
    h245_ok: AtomicU64,
    rtp: Mutex<Vec<Arc<Mutex<RtpRx>>>>,
}

#[derive(Default)]
struct RtpRx {
    first: Option<u32>,
    max: u32,
    received: u64,
    reordered: u64,
}

impl RtpRx {
    /// Sequence numbers extended past 16 bits, assuming < 32768 reordering.
    fn on_packet(&mut self, seq16: u16) {
        let ext = match self.first {
            None => {
                self.first = Some(u32::from(seq16));
                self.max = u32::from(seq16);
                u32::from(seq16)
            }
            Some(_) => {
                let base = self.max & !0xffff;
                let mut e = base | u32::from(seq16);
                if e + 0x8000 < self.max {
                    e += 0x1_0000;
                } else if e > self.max + 0x8000 && e >= 0x1_0000 {
                    e -= 0x1_0000;
                }
                e
            }
        };
        self.received += 1;
        if ext > self.max {
            self.max = ext;
        } else if self.received > 1 {
            self.reordered += 1;
        }
    }

    fn lost(&self) -> u64 {
        match self.first {
            None => 0,
            Some(f) => (u64::from(self.max - f) + 1).saturating_sub(self.received),
        }
    }
}

impl Stats {
    fn line(&self) -> String {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let (mut recv, mut lost, mut reord) = (0, 0, 0);
        for r in self.rtp.lock().unwrap().iter() {
            let r = r.lock().unwrap();
            recv += r.received;
            lost += r.lost();
            reord += r.reordered;
        }
        format!(
            "eps registered={} calls_active={} calls_dropped={} calls_released={} calls_failed={} \
             rtp_sent={} rtp_received={recv} rtp_lost={lost} rtp_reordered={reord} keepalives_sent={} \
             keepalives_unanswered={} enquiries_unanswered={} h245_ok={}",
            g(&self.registered),
            g(&self.calls_active),
            g(&self.calls_dropped),
            g(&self.calls_released),
            g(&self.calls_failed),
            g(&self.rtp_sent),
            g(&self.keepalives_sent),
            g(&self.keepalives_unanswered),
            g(&self.enquiries_unanswered),
            g(&self.h245_ok),
        )
    }
}

/// RAS transactions of one endpoint over its socket.
struct RasClient {
    sock: UdpSocket,
    gk: SocketAddr,
    seq: AtomicU16,
    pending: Mutex<HashMap<u16, oneshot::Sender<RasMessage>>>,
    endpoint_id: Mutex<String>,
}

impl RasClient {
    async fn request(&self, mut v: Value, timeout: Duration) -> Option<RasMessage> {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed).max(1);
        let body = v.as_object_mut()?.values_mut().next()?;
        body["requestSeqNum"] = json!(seq);
        let bytes = ras::encode(&ras_from_json(&v).ok()?).ok()?;
        let (tx, rx) = oneshot::channel();
        self.pending.lock().unwrap().insert(seq, tx);
        let _ = self.sock.send_to(&bytes, self.gk).await;
        let r = tokio::time::timeout(timeout, rx)
            .await
            .ok()
            .and_then(Result::ok);
        self.pending.lock().unwrap().remove(&seq);
        r
    }

    async fn send(&self, v: &Value, to: SocketAddr) {
        if let Ok(b) = ras_from_json(v).and_then(|m| ras::encode(&m)) {
            let _ = self.sock.send_to(&b, to).await;
        }
    }

    /// Read the socket: replies complete requests, gatekeeper requests go to `reqs`.
    async fn reader(self: Arc<Self>, reqs: mpsc::Sender<(RasMessage, SocketAddr)>) {
        let mut buf = vec![0u8; 65_536];
        while let Ok((n, from)) = self.sock.recv_from(&mut buf).await {
            let Ok(m) = ras::decode(&buf[..n]) else {
                continue;
            };
            let Some(seq) = seq_num(&m) else { continue };
            if matches!(
                m,
                RasMessage::disengageRequest(_)
                    | RasMessage::unregistrationRequest(_)
                    | RasMessage::infoRequest(_)
            ) {
                let _ = reqs.send((m, from)).await;
            } else if let Some(tx) = self.pending.lock().unwrap().remove(&seq) {
                let _ = tx.send(m);
            }
        }
    }
}

struct Ep {
    index: usize,
    number: String,
    ras_addr: SocketAddr,
    cs_addr: SocketAddr,
    rtp_addr: SocketAddr,
    ras: Arc<RasClient>,
    stats: Arc<Stats>,
    opts: EpOptions,
    /// Calls by callIdentifier hex → release trigger.
    calls: Mutex<HashMap<String, mpsc::Sender<()>>>,
    teardown: broadcast::Sender<()>,
    busy: AtomicBool,
}

const VENDOR: &str = r#"{"vendor":{"t35CountryCode":181,"t35Extension":0,"manufacturerCode":18}}"#;

impl Ep {
    fn rrq(&self, keepalive: bool) -> Value {
        let vendor: Value = serde_json::from_str(VENDOR).unwrap();
        let mut b = json!({"requestSeqNum": 1, "protocolIdentifier": PROTOCOL_ID, "discoveryComplete": false,
            "callSignalAddress": [transport_json(self.cs_addr)], "rasAddress": [transport_json(self.ras_addr)],
            "terminalType": {"terminal": {}, "mc": false, "undefinedNode": false},
            "terminalAlias": [{"h323-ID": format!("ep{}", self.number)}, {"dialledDigits": self.number}],
            "endpointVendor": vendor, "timeToLive": self.opts.ttl, "keepAlive": keepalive});
        if keepalive {
            b["callSignalAddress"] = json!([]);
            b.as_object_mut().unwrap().remove("terminalAlias");
            b["endpointIdentifier"] = json!(self.ras.endpoint_id.lock().unwrap().clone());
        }
        json!({"registrationRequest": b})
    }

    async fn register(&self) -> bool {
        let Some(RasMessage::registrationConfirm(rcf)) = self
            .ras
            .request(self.rrq(false), Duration::from_secs(1))
            .await
        else {
            return false;
        };
        *self.ras.endpoint_id.lock().unwrap() = bmp_text(&rcf.endpoint_identifier.0);
        true
    }

    async fn keepalives(self: Arc<Self>) {
        let mut consecutive = 0u32;
        let mut tick = tokio::time::interval(self.opts.keepalive);
        loop {
            tick.tick().await;
            self.stats.keepalives_sent.fetch_add(1, Ordering::Relaxed);
            let wait = self.opts.keepalive.min(Duration::from_secs(1));
            match self.ras.request(self.rrq(true), wait).await {
                Some(RasMessage::registrationConfirm(_)) => consecutive = 0,
                Some(RasMessage::registrationReject(_)) => {
                    consecutive = 0;
                    let _ = self.register().await;
                }
                _ => {
                    consecutive += 1;
                    self.stats
                        .keepalives_unanswered
                        .fetch_add(1, Ordering::Relaxed);
                    if self.opts.drop_calls_on_silence && consecutive >= 2 {
                        // The gatekeeper looks gone, so tear calls down.
                        let _ = self.teardown.send(());
                    }
                }
            }
        }
    }

    async fn gatekeeper_requests(
        self: Arc<Self>,
        mut rx: mpsc::Receiver<(RasMessage, SocketAddr)>,
    ) {
        while let Some((m, from)) = rx.recv().await {
            let seq = seq_num(&m).unwrap_or(1);
            match m {
                RasMessage::disengageRequest(d) => {
                    let call = d
                        .call_identifier
                        .as_ref()
                        .map(|c| hex(c.guid.0.as_ref()))
                        .unwrap_or_default();
                    let trigger = self.calls.lock().unwrap().get(&call).cloned();
                    if let Some(t) = trigger {
                        let _ = t.send(()).await;
                    }
                    self.ras
                        .send(&json!({"disengageConfirm": {"requestSeqNum": seq}}), from)
                        .await;
                }
                RasMessage::unregistrationRequest(_) => {
                    self.ras
                        .send(
                            &json!({"unregistrationConfirm": {"requestSeqNum": seq}}),
                            from,
                        )
                        .await;
                    self.stats.registered.fetch_sub(1, Ordering::Relaxed);
                }
                _ => {}
            }
        }
    }

    fn call_id(&self, n: u64) -> [u8; 16] {
        let mut g = [0u8; 16];
        g[..4].copy_from_slice(&std::process::id().to_be_bytes());
        g[4..8].copy_from_slice(&(self.index as u32).to_be_bytes());
        g[8..16].copy_from_slice(&n.to_be_bytes());
        g
    }

    /// Place a call to `number`.
    async fn place(self: Arc<Self>, number: String, n: u64) {
        if self.busy.swap(true, Ordering::SeqCst) {
            return;
        }
        let call_id = self.call_id(n);
        let crv = (n as u16 & 0x7fff).max(1);
        let id = self.ras.endpoint_id.lock().unwrap().clone();
        let arq = json!({"admissionRequest": {"requestSeqNum": 1, "callType": {"pointToPoint": null}, "callModel": {"direct": null},
            "endpointIdentifier": id, "destinationInfo": [{"dialledDigits": number}],
            "srcInfo": [{"dialledDigits": self.number}], "bandWidth": 1280, "callReferenceValue": crv,
            "conferenceID": hex(&call_id), "activeMC": false, "answerCall": false, "callIdentifier": {"guid": hex(&call_id)}}});
        let dest = match self.ras.request(arq, Duration::from_secs(2)).await {
            Some(RasMessage::admissionConfirm(acf)) => socket_addr(&acf.dest_call_signal_address),
            _ => None,
        };
        let Some(dest) = dest else {
            self.stats.calls_failed.fetch_add(1, Ordering::Relaxed);
            self.busy.store(false, Ordering::SeqCst);
            return;
        };
        let stream = match connect(self.cs_addr.ip(), dest).await {
            Ok(s) => s,
            Err(_) => {
                self.stats.calls_failed.fetch_add(1, Ordering::Relaxed);
                self.busy.store(false, Ordering::SeqCst);
                return;
            }
        };
        let mut link = Link::new(stream);
        let setup = setup_message(
            crv,
            &self.number,
            &number,
            &call_id,
            self.cs_addr,
            dest,
            self.rtp_addr,
        );
        if link.send(&setup).await.is_err() {
            self.stats.calls_failed.fetch_add(1, Ordering::Relaxed);
            self.busy.store(false, Ordering::SeqCst);
            return;
        }
        // Wait for CONNECT (with the callee's fastStart).
        let peer_rtp = loop {
            match tokio::time::timeout(Duration::from_secs(5), link.next()).await {
                Ok(Ok(Some(p))) if !p.is_empty() => {
                    let Ok(m) = Message::decode(&p) else { continue };
                    match m.message_type {
                        msg::CONNECT => {
                            if let Some(h) = proxy_user::call::h245_address(&p) {
                                let (ip, stats) = (self.cs_addr.ip(), self.stats.clone());
                                let delay = self.opts.h245_delay;
                                tokio::spawn(async move {
                                    tokio::time::sleep(delay).await;
                                    if h245_echo(ip, h).await.unwrap_or(false) {
                                        stats.h245_ok.fetch_add(1, Ordering::Relaxed);
                                    }
                                });
                            }
                            break fast_start_rtp(&m);
                        }
                        msg::RELEASE_COMPLETE => break None,
                        _ => continue,
                    }
                }
                Ok(Ok(Some(_))) => continue,
                _ => break None,
            }
        };
        let Some(peer_rtp) = peer_rtp else {
            self.stats.calls_failed.fetch_add(1, Ordering::Relaxed);
            self.busy.store(false, Ordering::SeqCst);
            return;
        };
        self.clone()
            .active(link, call_id, CallRef::new(crv, false), peer_rtp)
            .await;
    }

    /// Answer a call arriving on `stream`.
    async fn answer(self: Arc<Self>, stream: TcpStream) {
        let mut link = Link::new(stream);
        let setup = loop {
            match tokio::time::timeout(Duration::from_secs(5), link.next()).await {
                Ok(Ok(Some(p))) if !p.is_empty() => break p,
                Ok(Ok(Some(_))) => continue,
                _ => return,
            }
        };
        let Ok(m) = Message::decode(&setup) else {
            return;
        };
        if m.message_type != msg::SETUP || self.busy.swap(true, Ordering::SeqCst) {
            return;
        }
        let Some(peer_rtp) = fast_start_rtp(&m) else {
            self.busy.store(false, Ordering::SeqCst);
            return;
        };
        let uu = m
            .user_user()
            .and_then(Result::ok)
            .and_then(|u| uuie::decode(u).ok());
        let call_id = match uu.map(|u| u.h323_uu_pdu.h323_message_body) {
            Some(H323UUPDUH323MessageBody::setup(s)) => s.call_identifier.map(|c| {
                let mut g = [0u8; 16];
                g.copy_from_slice(c.guid.0.as_ref());
                g
            }),
            _ => None,
        }
        .unwrap_or([0; 16]);
        let crv = m.call_ref.value;
        let id = self.ras.endpoint_id.lock().unwrap().clone();
        let arq = json!({"admissionRequest": {"requestSeqNum": 1, "callType": {"pointToPoint": null}, "callModel": {"direct": null},
            "endpointIdentifier": id, "destinationInfo": [{"dialledDigits": self.number}],
            "srcInfo": [{"dialledDigits": "0"}], "bandWidth": 1280, "callReferenceValue": crv,
            "conferenceID": hex(&call_id), "activeMC": false, "answerCall": true, "callIdentifier": {"guid": hex(&call_id)}}});
        if !matches!(
            self.ras.request(arq, Duration::from_secs(2)).await,
            Some(RasMessage::admissionConfirm(_))
        ) {
            let _ = link.send(&release_complete(crv, true, &call_id, 21)).await;
            self.stats.calls_failed.fetch_add(1, Ordering::Relaxed);
            self.busy.store(false, Ordering::SeqCst);
            return;
        }
        let _ = link
            .send(&simple(msg::ALERTING, crv, true, "alerting", &call_id))
            .await;
        let h245 = if self.opts.h245 {
            h245_echo_server(self.cs_addr.ip()).await
        } else {
            None
        };
        let connect = connect_message(crv, &call_id, self.rtp_addr, h245);
        if link.send(&connect).await.is_err() {
            self.busy.store(false, Ordering::SeqCst);
            return;
        }
        self.clone()
            .active(link, call_id, CallRef::new(crv, true), peer_rtp)
            .await;
    }

    /// The call is up: RTP both ways, STATUS ENQUIRY, until released or dropped.
    async fn active(
        self: Arc<Self>,
        mut link: Link,
        call_id: [u8; 16],
        cref: CallRef,
        peer_rtp: SocketAddr,
    ) {
        let hexid = hex(&call_id);
        let (rel_tx, mut rel_rx) = mpsc::channel(1);
        self.calls.lock().unwrap().insert(hexid.clone(), rel_tx);
        let mut teardown = self.teardown.subscribe();
        self.stats.calls_active.fetch_add(1, Ordering::Relaxed);
        println!("eps call-active index={} call={hexid}", self.index);
        let rtp = match UdpSocket::bind(self.rtp_addr).await {
            Ok(s) => s,
            Err(_) => {
                self.stats.calls_failed.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        let rx = Arc::new(Mutex::new(RtpRx::default()));
        self.stats.rtp.lock().unwrap().push(rx.clone());
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        let mut enquiry = tokio::time::interval(self.opts.status_enquiry);
        enquiry.tick().await;
        let mut outstanding: Option<Instant> = None;
        let ssrc = 0x1000_0000u32 | self.index as u32;
        let mut seq: u16 = 0;
        let mut ts: u32 = 0;
        let mut pkt = vec![0u8; 172];
        let mut buf = vec![0u8; 2048];
        let outcome = loop {
            tokio::select! {
                _ = tick.tick() => {
                    pkt[0] = 0x80;
                    pkt[1] = 0; // PCMU
                    pkt[2..4].copy_from_slice(&seq.to_be_bytes());
                    pkt[4..8].copy_from_slice(&ts.to_be_bytes());
                    pkt[8..12].copy_from_slice(&ssrc.to_be_bytes());
                    if rtp.send_to(&pkt, peer_rtp).await.is_ok() {
                        self.stats.rtp_sent.fetch_add(1, Ordering::Relaxed);
                    }
                    seq = seq.wrapping_add(1);
                    ts = ts.wrapping_add(160);
                }
                r = rtp.recv_from(&mut buf) => {
                    if let Ok((n, _)) = r
                        && n >= 12 && buf[0] >> 6 == 2 {
                            rx.lock().unwrap().on_packet(u16::from_be_bytes([buf[2], buf[3]]));
                        }
                }
                _ = enquiry.tick() => {
                    if let Some(at) = outstanding
                        && at.elapsed() > Duration::from_secs(4) {
                            // T322 expired with no STATUS.
                            self.stats.enquiries_unanswered.fetch_add(1, Ordering::Relaxed);
                            outstanding = None;
                        }
                    if outstanding.is_none() {
                        let m = simple(msg::STATUS_ENQUIRY, cref.value, cref.from_destination, "statusInquiry", &call_id);
                        if link.send(&m).await.is_ok() {
                            outstanding = Some(Instant::now());
                        }
                    }
                }
                f = link.next() => match f {
                    Ok(Some(p)) if p.is_empty() => {}
                    Ok(Some(p)) => match Message::decode(&p).map(|m| (m.message_type, m.call_ref)) {
                        Ok((msg::STATUS, _)) => outstanding = None,
                        Ok((msg::STATUS_ENQUIRY, r)) => {
                            let _ = link.send(&q931::status_response(r, q931::call_state::ACTIVE).encode()).await;
                        }
                        Ok((msg::RELEASE_COMPLETE, _)) => break "released",
                        _ => {}
                    },
                    _ => break "dropped",
                },
                _ = rel_rx.recv() => {
                    let _ = link.send(&release_complete(cref.value, cref.from_destination, &call_id, 16)).await;
                    break "released";
                }
                _ = teardown.recv() => {
                    let _ = link.send(&release_complete(cref.value, cref.from_destination, &call_id, 41)).await;
                    break "dropped";
                }
            }
        };
        self.calls.lock().unwrap().remove(&hexid);
        self.stats.calls_active.fetch_sub(1, Ordering::Relaxed);
        match outcome {
            "released" => self.stats.calls_released.fetch_add(1, Ordering::Relaxed),
            _ => self.stats.calls_dropped.fetch_add(1, Ordering::Relaxed),
        };
        println!("eps call-{outcome} index={} call={hexid}", self.index);
        // Tell the gatekeeper the call is over (best effort).
        let id = self.ras.endpoint_id.lock().unwrap().clone();
        let drq = json!({"disengageRequest": {"requestSeqNum": 1, "endpointIdentifier": id, "conferenceID": hex(&call_id),
            "callReferenceValue": cref.value, "disengageReason": {"normalDrop": null}, "callIdentifier": {"guid": hexid}}});
        let _ = self.ras.request(drq, Duration::from_millis(500)).await;
        self.busy.store(false, Ordering::SeqCst);
    }
}

struct Link {
    stream: TcpStream,
    buf: BytesMut,
}

impl Link {
    fn new(stream: TcpStream) -> Self {
        let _ = stream.set_nodelay(true);
        Self {
            stream,
            buf: BytesMut::new(),
        }
    }

    async fn next(&mut self) -> Result<Option<Bytes>, ()> {
        loop {
            match TpktCodec.decode(&mut self.buf) {
                Ok(Some(f)) => return Ok(Some(f)),
                Ok(None) => {}
                Err(_) => return Err(()),
            }
            match self.stream.read_buf(&mut self.buf).await {
                Ok(0) | Err(_) => return Ok(None),
                Ok(_) => {}
            }
        }
    }

    async fn send(&mut self, payload: &[u8]) -> std::io::Result<()> {
        let mut out = BytesMut::new();
        TpktCodec
            .encode(payload, &mut out)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        self.stream.write_all(&out).await
    }
}

async fn connect(local: IpAddr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let s = if to.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    s.bind(SocketAddr::new(local, 0))?;
    tokio::time::timeout(Duration::from_secs(3), s.connect(to))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect"))?
}

/// An H.245 OpenLogicalChannel for G.711 µ-law whose media channel is `rtp`,
/// encoded for a fastStart element.
pub fn fast_start_element(rtp: SocketAddr) -> Vec<u8> {
    let ip = match rtp.ip() {
        IpAddr::V4(v) => hex(&v.octets()),
        IpAddr::V6(_) => String::new(),
    };
    let v = json!({"forwardLogicalChannelNumber": 1, "forwardLogicalChannelParameters": {
        "dataType": {"audioData": {"g711Ulaw64k": 20}},
        "multiplexParameters": {"h2250LogicalChannelParameters": {"sessionID": 1,
            "mediaChannel": {"unicastAddress": {"iPAddress": {"network": ip, "tsapIdentifier": rtp.port()}}}}}}});
    let olc: OpenLogicalChannel =
        rasn::jer::decode(&v.to_string()).expect("valid OpenLogicalChannel JER");
    rasn::aper::encode(&olc).expect("OpenLogicalChannel encodes")
}

/// The RTP address in the first fastStart element of a message's UUIE.
fn fast_start_rtp(m: &Message) -> Option<SocketAddr> {
    let uu = uuie::decode(m.user_user()?.ok()?).ok()?;
    let fs = match uu.h323_uu_pdu.h323_message_body {
        H323UUPDUH323MessageBody::setup(s) => s.fast_start?,
        H323UUPDUH323MessageBody::connect(c) => c.fast_start?,
        _ => return None,
    };
    let olc: OpenLogicalChannel = rasn::aper::decode(fs.first()?).ok()?;
    use proxy_user::h225::asn::multimedia_system_control::OpenLogicalChannelForwardLogicalChannelParametersMultiplexParameters as Mp;
    let Mp::h2250LogicalChannelParameters(p) =
        olc.forward_logical_channel_parameters.multiplex_parameters
    else {
        return None;
    };
    match p.media_channel? {
        proxy_user::h225::asn::multimedia_system_control::H245TransportAddress::unicastAddress(
            UnicastAddress::iPAddress(a),
        ) => {
            let o: [u8; 4] = a.network.as_ref().try_into().ok()?;
            Some(SocketAddr::from((o, a.tsap_identifier)))
        }
        _ => None,
    }
}

fn uuie_bytes(body: Value) -> Vec<u8> {
    let v = json!({"h323-uu-pdu": {"h323-message-body": body, "h245Tunnelling": true}});
    let m: H323UserInformation = rasn::jer::decode(&v.to_string()).expect("valid UUIE JER");
    uuie::encode(&m).expect("UUIE encodes")
}

fn setup_message(
    crv: u16,
    from: &str,
    to: &str,
    call: &[u8; 16],
    src: SocketAddr,
    dst: SocketAddr,
    rtp: SocketAddr,
) -> Bytes {
    let mut m = Message::new(msg::SETUP, CallRef::new(crv, false));
    m.ies.push(Ie::new(
        ie::BEARER_CAPABILITY,
        q931::BEARER_SPEECH_ULAW.to_vec(),
    ));
    m.ies.push(Ie::new(
        ie::CALLING_PARTY_NUMBER,
        PartyNumber::e164(from).encode(),
    ));
    m.ies.push(Ie::new(
        ie::CALLED_PARTY_NUMBER,
        PartyNumber::e164(to).encode(),
    ));
    let body = json!({"setup": {"protocolIdentifier": PROTOCOL_ID, "sourceAddress": [{"dialledDigits": from}],
        "sourceInfo": {"terminal": {}, "mc": false, "undefinedNode": false},
        "destinationAddress": [{"dialledDigits": to}], "activeMC": false, "conferenceID": hex(call),
        "conferenceGoal": {"create": null}, "callType": {"pointToPoint": null},
        "sourceCallSignalAddress": transport_json(src), "destCallSignalAddress": transport_json(dst),
        "callIdentifier": {"guid": hex(call)}, "fastStart": [hex(&fast_start_element(rtp))],
        "mediaWaitForConnect": false, "canOverlapSend": false, "multipleCalls": false, "maintainConnection": true}});
    m.set_user_user(&uuie_bytes(body));
    m.encode()
}

/// Listen for one H.245 connection and echo what arrives; its address.
async fn h245_echo_server(ip: IpAddr) -> Option<SocketAddr> {
    let l = TcpListener::bind(SocketAddr::new(ip, 0)).await.ok()?;
    let addr = l.local_addr().ok()?;
    tokio::spawn(async move {
        if let Ok(Ok((mut s, _))) = tokio::time::timeout(Duration::from_secs(30), l.accept()).await
        {
            let mut buf = [0u8; 1024];
            while let Ok(n) = s.read(&mut buf).await {
                if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        }
    });
    Some(addr)
}

/// Connect to an H.245 address, send one TPKT, expect it echoed.
async fn h245_echo(ip: IpAddr, to: SocketAddr) -> std::io::Result<bool> {
    let mut s = connect(ip, to).await?;
    let msg = [3u8, 0, 0, 8, 0x20, 0x45, 0x23, 0x45];
    s.write_all(&msg).await?;
    let mut back = [0u8; 8];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut back))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no echo"))??;
    Ok(back == msg)
}

fn connect_message(crv: u16, call: &[u8; 16], rtp: SocketAddr, h245: Option<SocketAddr>) -> Bytes {
    let mut m = Message::new(msg::CONNECT, CallRef::new(crv, true));
    let mut body = json!({"connect": {"protocolIdentifier": PROTOCOL_ID,
        "destinationInfo": {"terminal": {}, "mc": false, "undefinedNode": false}, "conferenceID": hex(call),
        "callIdentifier": {"guid": hex(call)}, "fastStart": [hex(&fast_start_element(rtp))],
        "multipleCalls": false, "maintainConnection": true}});
    if let Some(h) = h245 {
        body["connect"]["h245Address"] = transport_json(h);
    }
    m.set_user_user(&uuie_bytes(body));
    m.encode()
}

fn simple(t: u8, crv: u16, from_dest: bool, body: &str, call: &[u8; 16]) -> Bytes {
    let mut m = Message::new(t, CallRef::new(crv, from_dest));
    let mut b = json!({"protocolIdentifier": PROTOCOL_ID, "callIdentifier": {"guid": hex(call)}});
    if body == "alerting" {
        b["destinationInfo"] = json!({"terminal": {}, "mc": false, "undefinedNode": false});
    }
    m.set_user_user(&uuie_bytes(json!({ body: b })));
    m.encode()
}

fn release_complete(crv: u16, from_dest: bool, call: &[u8; 16], cause: u8) -> Bytes {
    let mut m = Message::new(msg::RELEASE_COMPLETE, CallRef::new(crv, from_dest));
    m.ies.push(Ie::new(
        ie::CAUSE,
        q931::Cause::user(cause).encode().to_vec(),
    ));
    m.set_user_user(&uuie_bytes(
        json!({"releaseComplete": {"protocolIdentifier": PROTOCOL_ID,
        "reason": {"undefinedReason": null}, "callIdentifier": {"guid": hex(call)}}}),
    ));
    m.encode()
}

/// Run the endpoints until stdin says `quit` or the process is killed.
pub async fn run(o: EpOptions) -> std::io::Result<()> {
    let stats = Arc::new(Stats::default());
    let mut eps = Vec::new();
    for i in 0..o.count {
        let port = o.base_port + 3 * i as u16;
        let ras_addr = SocketAddr::new(o.ip, port);
        let cs_addr = SocketAddr::new(o.ip, port + 1);
        let sock = UdpSocket::bind(ras_addr).await?;
        let listener = TcpListener::bind(cs_addr).await?;
        let ras = Arc::new(RasClient {
            sock,
            gk: o.gatekeeper,
            seq: AtomicU16::new(1),
            pending: Mutex::default(),
            endpoint_id: Mutex::default(),
        });
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(ras.clone().reader(tx));
        let ep = Arc::new(Ep {
            index: i,
            number: (o.first_number + i as u64).to_string(),
            ras_addr,
            cs_addr,
            rtp_addr: SocketAddr::new(o.ip, port + 2),
            ras,
            stats: stats.clone(),
            opts: o.clone(),
            calls: Mutex::default(),
            teardown: broadcast::channel(4).0,
            busy: AtomicBool::new(false),
        });
        tokio::spawn(ep.clone().gatekeeper_requests(rx));
        let e2 = ep.clone();
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                tokio::spawn(e2.clone().answer(s));
            }
        });
        eps.push(ep);
    }
    // Register everyone (retrying), then start keepalives.
    let mut regs = Vec::new();
    for ep in &eps {
        let ep = ep.clone();
        regs.push(tokio::spawn(async move {
            for _ in 0..30 {
                if ep.register().await {
                    ep.stats.registered.fetch_add(1, Ordering::Relaxed);
                    tokio::spawn(ep.clone().keepalives());
                    return;
                }
            }
        }));
    }
    for r in regs {
        let _ = r.await;
    }
    println!("{}", stats.line());
    let mut next_call = 1u64;
    for k in 0..o.pairs.min(o.count / 2) {
        let callee = eps[2 * k + 1].number.clone();
        tokio::spawn(eps[2 * k].clone().place(callee, next_call));
        next_call += 1;
    }
    let mut report = tokio::time::interval(o.report);
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    let mut stdin_open = true;
    loop {
        tokio::select! {
            _ = report.tick() => println!("{}", stats.line()),
            line = stdin.next_line(), if stdin_open => match line {
                Ok(Some(l)) => {
                    let w: Vec<&str> = l.split_whitespace().collect();
                    match w.as_slice() {
                        ["call", idx, number] => {
                            if let Some(ep) = idx.parse::<usize>().ok().and_then(|i| eps.get(i)) {
                                tokio::spawn(ep.clone().place(number.to_string(), next_call));
                                next_call += 1;
                            }
                        }
                        // Hang up every call of endpoint `idx` (RELEASE
                        // COMPLETE, cause 16).
                        ["hangup", idx] => {
                            if let Some(ep) = idx.parse::<usize>().ok().and_then(|i| eps.get(i)) {
                                for tx in ep.calls.lock().unwrap().values() {
                                    let _ = tx.try_send(());
                                }
                            }
                        }
                        ["status"] => println!("{}", stats.line()),
                        ["quit"] => break,
                        _ => println!("eps unknown command {l:?}"),
                    }
                }
                _ => stdin_open = false,
            },
        }
    }
    println!("{}", stats.line());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_start_carries_the_rtp_address() {
        let rtp: SocketAddr = "198.18.1.2:20002".parse().unwrap();
        let call = [7u8; 16];
        let setup = setup_message(5, "1001", "1002", &call, rtp, rtp, rtp);
        assert_eq!(fast_start_rtp(&Message::decode(&setup).unwrap()), Some(rtp));
        let c = connect_message(5, &call, rtp, None);
        assert_eq!(fast_start_rtp(&Message::decode(&c).unwrap()), Some(rtp));
    }

    #[test]
    fn rtp_loss_and_reordering_are_counted() {
        let mut r = RtpRx::default();
        for s in [65534u16, 65535, 1, 0, 3] {
            r.on_packet(s);
        }
        assert_eq!(r.received, 5);
        assert_eq!(r.reordered, 1, "0 after 1");
        assert_eq!(r.lost(), 1, "2 missing");
    }
}
