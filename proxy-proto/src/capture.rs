//! Captures: `proxy decode` (pcap/pcapng → one line per H.225.0 message, TCP
//! reassembled) and the pcap writer the Wireshark agreement test uses.
//!
//! Nothing read from a capture may panic: every layer returns an error that
//! is printed on the message's line, and decoding goes on with the next
//! packet.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use bytes::BytesMut;
use etherparse::{NetSlice, PacketBuilder, SlicedPacket, TransportSlice};
use pcap_file::DataLink;
use pcap_file::pcap::{PcapPacket, PcapReader, PcapWriter};
use pcap_file::pcapng::{Block, PcapNgReader};
use serde::Serialize;
use tokio_util::codec::Decoder as _;

use crate::h225::corpus::{Entry, Kind};
use crate::h225::summary::{self, Summary};
use crate::h225::{ras, uuie};
use crate::q931::{self, Cause};
use crate::tpkt::TpktCodec;

/// Errors reading or writing a capture file.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// File I/O.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// Not a pcap or pcapng file, or a broken header.
    #[error("{path}: not a readable pcap/pcapng capture: {detail}")]
    Format {
        /// The file.
        path: String,
        /// The reader's complaint.
        detail: String,
    },
    /// Writing the report failed (a closed pipe).
    #[error("writing the report: {0}")]
    Output(#[from] std::io::Error),
}

/// One decoded (or undecodable) H.225.0 message found in a capture.
#[derive(Debug, Serialize)]
pub struct Decoded {
    /// Capture timestamp, seconds.
    pub time: f64,
    /// Source address.
    pub src: SocketAddr,
    /// Destination address.
    pub dst: SocketAddr,
    /// "RAS" or "Q.931".
    pub transport: &'static str,
    /// Q.931 message type name (call signalling only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub q931: Option<&'static str>,
    /// Q.931 call reference value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crv: Option<u16>,
    /// Q.931 Cause value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cause: Option<u8>,
    /// Key fields of the H.225.0 message.
    pub summary: Summary,
    /// The full JER tree (only with --json).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tree: Option<serde_json::Value>,
    /// Why this message could not be decoded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Decoded {
    fn new(time: f64, src: SocketAddr, dst: SocketAddr, transport: &'static str) -> Self {
        Self {
            time,
            src,
            dst,
            transport,
            q931: None,
            crv: None,
            cause: None,
            summary: Summary::default(),
            tree: None,
            error: None,
        }
    }

    /// The one-line form `proxy decode` prints.
    pub fn line(&self) -> String {
        let mut s = format!(
            "{:.6} {} -> {} {}",
            self.time, self.src, self.dst, self.transport
        );
        if let Some(q) = self.q931 {
            let _ = write!(s, " {q}");
        }
        if let Some(c) = self.crv {
            let _ = write!(s, " crv={c}");
        }
        if !self.summary.message.is_empty() {
            let _ = write!(s, " {}", self.summary.message);
        }
        let m = &self.summary;
        if let Some(v) = m.request_seq_num {
            let _ = write!(s, " seq={v}");
        }
        if let Some(v) = &m.endpoint_identifier {
            let _ = write!(s, " epid={v}");
        }
        if let Some(v) = &m.gatekeeper_identifier {
            let _ = write!(s, " gkid={v}");
        }
        if let Some(v) = m.keep_alive {
            let _ = write!(s, " keepAlive={v}");
        }
        if !m.aliases.is_empty() {
            let _ = write!(s, " aliases={}", m.aliases.join(","));
        }
        if let Some(v) = &m.call_identifier {
            let _ = write!(s, " callId={v}");
        }
        if let Some(v) = &m.reason {
            let _ = write!(s, " reason={v}");
        }
        if let Some(c) = self.cause {
            let _ = write!(s, " cause={c}");
        }
        if let Some(e) = &self.error {
            let _ = write!(s, " ERROR: {e}");
        }
        s
    }
}

/// Decode a RAS datagram into a [`Decoded`].
fn decode_ras(time: f64, src: SocketAddr, dst: SocketAddr, payload: &[u8], json: bool) -> Decoded {
    let mut d = Decoded::new(time, src, dst, "RAS");
    match ras::decode(payload) {
        Ok(m) => {
            let (s, tree) = summary::ras(&m);
            d.summary = s;
            d.tree = json.then_some(tree);
        }
        Err(e) => d.error = Some(e.to_string()),
    }
    d
}

/// Decode one Q.931 message (a TPKT payload).
fn decode_q931(time: f64, src: SocketAddr, dst: SocketAddr, payload: &[u8], json: bool) -> Decoded {
    let mut d = Decoded::new(time, src, dst, "Q.931");
    if payload.is_empty() {
        d.summary.message = "keepalive (empty TPKT)".into();
        return d;
    }
    let m = match q931::Message::decode(payload) {
        Ok(m) => m,
        Err(e) => {
            d.error = Some(e.to_string());
            return d;
        }
    };
    d.q931 = Some(q931::msg::name(m.message_type));
    d.crv = Some(m.call_ref.value);
    d.cause = m.cause().and_then(Result::ok).map(|c: Cause| c.value);
    match m.user_user() {
        None => {}
        Some(Err(e)) => d.error = Some(e.to_string()),
        Some(Ok(uu)) => match uuie::decode(uu) {
            Ok(u) => {
                let (s, tree) = summary::uuie(&u);
                d.summary = s;
                d.tree = json.then_some(tree);
            }
            Err(e) => d.error = Some(e.to_string()),
        },
    }
    d
}

/// Bound on out-of-order data held per TCP flow; beyond it the gap is
/// skipped (and reported) rather than growing without limit.
const MAX_PENDING_SEGMENTS: usize = 256;

/// One direction of a TCP connection being reassembled.
#[derive(Default)]
struct Flow {
    next_seq: Option<u32>,
    pending: BTreeMap<u32, Vec<u8>>,
    buf: BytesMut,
    broken: bool,
}

impl Flow {
    /// Add a segment; returns whether new bytes became contiguous in `buf`.
    fn push(&mut self, seq: u32, data: &[u8], syn: bool) -> bool {
        let seq = if syn { seq.wrapping_add(1) } else { seq };
        let next = *self.next_seq.get_or_insert(seq);
        if data.is_empty() {
            return false;
        }
        let off = seq.wrapping_sub(next) as i32;
        if off < 0 {
            // Retransmission, possibly with new data at its end.
            let skip = (-off) as usize;
            if skip >= data.len() {
                return false;
            }
            return self.push(next, &data[skip..], false);
        }
        self.pending.insert(seq, data.to_vec());
        if self.pending.len() > MAX_PENDING_SEGMENTS {
            // Give up on the gap: resume at the oldest pending segment.
            if let Some((&first, _)) = self.pending.iter().next() {
                self.next_seq = Some(first);
                self.buf.clear();
                self.broken = true;
            }
        }
        let mut progressed = false;
        while let Some(mut n) = self.next_seq {
            let Some(d) = self.pending.remove(&n) else {
                break;
            };
            self.buf.extend_from_slice(&d);
            n = n.wrapping_add(d.len() as u32);
            self.next_seq = Some(n);
            progressed = true;
        }
        progressed
    }
}

/// Everything found in a capture.
pub struct Report {
    /// Messages in capture order (TCP ones when their TPKT completes).
    pub messages: Vec<Decoded>,
    /// Packets that could not be parsed at all, with the reason.
    pub packet_errors: Vec<String>,
}

/// Decode the H.225.0 messages of capture `bytes` (pcap or pcapng).
/// `ports` adds TCP ports carrying call signalling besides 1720.
pub fn decode_bytes(bytes: &[u8], ports: &[u16], json: bool) -> Result<Report, String> {
    let packets = read_packets(bytes)?;
    let mut flows: HashMap<(SocketAddr, SocketAddr), Flow> = HashMap::new();
    let mut report = Report {
        messages: Vec::new(),
        packet_errors: Vec::new(),
    };
    for (i, (ts, link, data)) in packets.into_iter().enumerate() {
        let time = ts.as_secs_f64();
        let sliced = match link {
            DataLink::ETHERNET => SlicedPacket::from_ethernet(&data).map_err(|e| e.to_string()),
            DataLink::RAW | DataLink::IPV4 | DataLink::IPV6 => {
                SlicedPacket::from_ip(&data).map_err(|e| e.to_string())
            }
            DataLink::LINUX_SLL => SlicedPacket::from_linux_sll(&data).map_err(|e| e.to_string()),
            other => Err(format!("link type {other:?} not supported")),
        };
        let p = match sliced {
            Ok(p) => p,
            Err(e) => {
                report.packet_errors.push(format!("packet {}: {e}", i + 1));
                continue;
            }
        };
        let (sip, dip): (IpAddr, IpAddr) = match &p.net {
            Some(NetSlice::Ipv4(v4)) => (
                v4.header().source_addr().into(),
                v4.header().destination_addr().into(),
            ),
            Some(NetSlice::Ipv6(v6)) => (
                v6.header().source_addr().into(),
                v6.header().destination_addr().into(),
            ),
            _ => continue,
        };
        match &p.transport {
            Some(TransportSlice::Udp(u)) => {
                if u.source_port() != proxy_common::RAS_PORT
                    && u.destination_port() != proxy_common::RAS_PORT
                {
                    continue;
                }
                let src = SocketAddr::new(sip, u.source_port());
                let dst = SocketAddr::new(dip, u.destination_port());
                report
                    .messages
                    .push(decode_ras(time, src, dst, u.payload(), json));
            }
            Some(TransportSlice::Tcp(t)) => {
                let signalling =
                    |p: u16| p == proxy_common::CALL_SIGNALLING_PORT || ports.contains(&p);
                if !signalling(t.source_port()) && !signalling(t.destination_port()) {
                    continue;
                }
                let src = SocketAddr::new(sip, t.source_port());
                let dst = SocketAddr::new(dip, t.destination_port());
                let flow = flows.entry((src, dst)).or_default();
                if !flow.push(t.sequence_number(), t.payload(), t.syn()) {
                    continue;
                }
                if std::mem::take(&mut flow.broken) {
                    report.packet_errors.push(format!(
                        "packet {}: {src} -> {dst}: too much missing TCP data, skipped a gap",
                        i + 1
                    ));
                }
                loop {
                    match TpktCodec.decode(&mut flow.buf) {
                        Ok(Some(frame)) => report
                            .messages
                            .push(decode_q931(time, src, dst, &frame, json)),
                        Ok(None) => break,
                        Err(e) => {
                            report
                                .packet_errors
                                .push(format!("packet {}: {src} -> {dst}: {e}; dropping the rest of this stream's buffer", i + 1));
                            flow.buf.clear();
                            break;
                        }
                    }
                }
            }
            _ => {}
        }
    }
    Ok(report)
}

type RawPacket = (Duration, DataLink, Vec<u8>);

fn read_packets(bytes: &[u8]) -> Result<Vec<RawPacket>, String> {
    let magic = bytes.get(..4).ok_or("file shorter than a capture header")?;
    let mut out = Vec::new();
    if magic == [0x0a, 0x0d, 0x0d, 0x0a] {
        let mut r = PcapNgReader::new(bytes).map_err(|e| e.to_string())?;
        let mut links = Vec::new();
        while let Some(block) = r.next_block() {
            let block = match block {
                Ok(b) => b,
                // A broken block ends what can be read, keep what was read.
                Err(_) => break,
            };
            match block {
                Block::InterfaceDescription(idb) => links.push(idb.linktype),
                Block::EnhancedPacket(epb) => {
                    let link = links
                        .get(epb.interface_id as usize)
                        .copied()
                        .unwrap_or(DataLink::ETHERNET);
                    out.push((epb.timestamp, link, epb.data.into_owned()));
                }
                _ => {}
            }
        }
    } else {
        let mut r = PcapReader::new(bytes).map_err(|e| e.to_string())?;
        let link = r.header().datalink;
        while let Some(p) = r.next_packet() {
            match p {
                Ok(p) => out.push((p.timestamp, link, p.data.into_owned())),
                Err(_) => break,
            }
        }
    }
    Ok(out)
}

/// `proxy decode`: print one line (or one JSON object) per message.
pub fn decode_file(path: &Path, ports: &[u16], json: bool) -> Result<(), CaptureError> {
    let bytes = std::fs::read(path).map_err(|source| CaptureError::Io {
        path: path.display().to_string(),
        source,
    })?;
    let report = decode_bytes(&bytes, ports, json).map_err(|detail| CaptureError::Format {
        path: path.display().to_string(),
        detail,
    })?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for m in &report.messages {
        if json {
            let line = serde_json::to_string(m).map_err(std::io::Error::other)?;
            writeln!(out, "{line}")?;
        } else {
            writeln!(out, "{}", m.line())?;
        }
    }
    for e in &report.packet_errors {
        eprintln!("{e}");
    }
    let errors = report.messages.iter().filter(|m| m.error.is_some()).count();
    eprintln!(
        "{} messages, {} undecodable, {} unreadable packets",
        report.messages.len(),
        errors,
        report.packet_errors.len()
    );
    Ok(())
}

/// Addresses the corpus capture uses (benchmarking range).
pub const CORPUS_ENDPOINT: [u8; 4] = [198, 18, 0, 2];
/// The gatekeeper side of the corpus capture.
pub const CORPUS_GATEKEEPER: [u8; 4] = [198, 18, 0, 1];

/// Write corpus entries as an Ethernet pcap: RAS as UDP 1719 datagrams, call
/// signalling as TPKTs in one TCP 1720 stream (with its handshake, so
/// Wireshark sees a proper conversation).
pub fn write_corpus_pcap(path: &Path, entries: &[Entry]) -> Result<(), CaptureError> {
    let io = |source| CaptureError::Io {
        path: path.display().to_string(),
        source,
    };
    let file = std::fs::File::create(path).map_err(io)?;
    let mut w = PcapWriter::new(file).map_err(|e| CaptureError::Format {
        path: path.display().to_string(),
        detail: e.to_string(),
    })?;
    let mac_ep = [2, 0, 0, 0, 0, 2];
    let mac_gk = [2, 0, 0, 0, 0, 1];
    let mut frames: Vec<Vec<u8>> = Vec::new();
    let (isn_c, isn_s) = (1000u32, 5000u32);
    let tcp = |seq: u32, ack: u32, syn: bool, ackf: bool, payload: &[u8]| {
        let mut b = PacketBuilder::ethernet2(mac_ep, mac_gk)
            .ipv4(CORPUS_ENDPOINT, CORPUS_GATEKEEPER, 64)
            .tcp(40000, proxy_common::CALL_SIGNALLING_PORT, seq, 64240);
        if syn {
            b = b.syn();
        }
        if ackf {
            b = b.ack(ack);
        }
        if !payload.is_empty() {
            b = b.psh();
        }
        let mut v = Vec::new();
        let _ = b.write(&mut v, payload);
        v
    };
    let tcp_back = |seq: u32, ack: u32, syn: bool| {
        let mut b = PacketBuilder::ethernet2(mac_gk, mac_ep)
            .ipv4(CORPUS_GATEKEEPER, CORPUS_ENDPOINT, 64)
            .tcp(proxy_common::CALL_SIGNALLING_PORT, 40000, seq, 64240);
        if syn {
            b = b.syn();
        }
        b = b.ack(ack);
        let mut v = Vec::new();
        let _ = b.write(&mut v, &[]);
        v
    };
    for e in entries.iter().filter(|e| e.kind == Kind::Ras) {
        let mut v = Vec::new();
        let _ = PacketBuilder::ethernet2(mac_ep, mac_gk)
            .ipv4(CORPUS_ENDPOINT, CORPUS_GATEKEEPER, 64)
            .udp(proxy_common::RAS_PORT, proxy_common::RAS_PORT)
            .write(&mut v, &e.bytes);
        frames.push(v);
    }
    frames.push(tcp(isn_c, 0, true, false, &[]));
    frames.push(tcp_back(isn_s, isn_c + 1, true));
    frames.push(tcp(isn_c + 1, isn_s + 1, false, true, &[]));
    let mut seq = isn_c + 1;
    for e in entries.iter().filter(|e| e.kind == Kind::Q931) {
        let mut payload = BytesMut::new();
        let _ = tokio_util::codec::Encoder::encode(&mut TpktCodec, &e.bytes[..], &mut payload);
        frames.push(tcp(seq, isn_s + 1, false, true, &payload));
        seq = seq.wrapping_add(payload.len() as u32);
        frames.push(tcp_back(isn_s + 1, seq, false));
    }
    write_frames(path, &mut w, &frames)
}

/// Write Ethernet frames as a pcap, 10 ms apart (for checking what the
/// codecs build against Wireshark's dissectors).
pub fn write_frames_pcap(path: &Path, frames: &[Vec<u8>]) -> Result<(), CaptureError> {
    let file = std::fs::File::create(path).map_err(|source| CaptureError::Io {
        path: path.display().to_string(),
        source,
    })?;
    let mut w = PcapWriter::new(file).map_err(|e| CaptureError::Format {
        path: path.display().to_string(),
        detail: e.to_string(),
    })?;
    write_frames(path, &mut w, frames)
}

fn write_frames(
    path: &Path,
    w: &mut PcapWriter<std::fs::File>,
    frames: &[Vec<u8>],
) -> Result<(), CaptureError> {
    for (i, f) in frames.iter().enumerate() {
        let ts = Duration::from_millis(1_000 + i as u64 * 10);
        w.write_packet(&PcapPacket::new(ts, f.len() as u32, f))
            .map_err(|e| CaptureError::Format {
                path: path.display().to_string(),
                detail: e.to_string(),
            })?;
    }
    Ok(())
}
