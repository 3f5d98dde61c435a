//! Fast-path benchmarks (`cargo xtask bench`), each against a baseline
//! measured in the same run:
//!
//! - BPF_PROG_TEST_RUN time per keepalive→RCF with 1,000 and 1,000,000
//!   learned endpoints, against a pass-only XDP program on the same frame;
//! - keepalive answers per second in the veth lab with kernel answering on,
//!   against the same daemon with it off (the tokio path);
//! - kernel bytes per learned endpoint (the map's own memory accounting) and
//!   daemon heap per registered endpoint.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

use super::netns::{Netns, unique_name, veth, xdp_peer_pass};
use crate::fastpath::{FASTPATH_PROG, FastPath, KEEPALIVE_MAP, PASS_PROG, set_answering};
use crate::h225::corpus::PROTOCOL_ID;
use crate::h225::ras;
use crate::h225::value::{ras_from_json, transport_json};
use crate::offload::{RcfTemplate, entry};

/// A full RRQ from an endpoint at `ras_addr` with one h323-ID alias.
pub fn rrq(seq: u16, ras_addr: SocketAddr, alias: &str) -> Vec<u8> {
    let v = json!({"registrationRequest": {"requestSeqNum": seq, "protocolIdentifier": PROTOCOL_ID,
        "discoveryComplete": false, "callSignalAddress": [transport_json(SocketAddr::new(ras_addr.ip(), 1720))],
        "rasAddress": [transport_json(ras_addr)],
        "terminalType": {"terminal": {}, "mc": false, "undefinedNode": false},
        "terminalAlias": [{"h323-ID": alias}],
        "endpointVendor": {"vendor": {"t35CountryCode": 181, "t35Extension": 0, "manufacturerCode": 18}},
        "timeToLive": 60, "keepAlive": false}});
    ras::encode(&ras_from_json(&v).expect("valid RRQ")).expect("encodes")
}

/// A lightweight RRQ (keepalive) for endpoint `id`.
pub fn keepalive(seq: u16, ras_addr: SocketAddr, id: &str, gk_id: &str) -> Vec<u8> {
    let v = json!({"registrationRequest": {"requestSeqNum": seq, "protocolIdentifier": PROTOCOL_ID,
        "discoveryComplete": false, "callSignalAddress": [], "rasAddress": [transport_json(ras_addr)],
        "terminalType": {"terminal": {}, "mc": false, "undefinedNode": false},
        "gatekeeperIdentifier": gk_id,
        "endpointVendor": {"vendor": {"t35CountryCode": 181, "t35Extension": 0, "manufacturerCode": 18}},
        "timeToLive": 60, "keepAlive": true, "endpointIdentifier": id}});
    ras::encode(&ras_from_json(&v).expect("valid RRQ")).expect("encodes")
}

/// An Ethernet/IPv4/UDP frame around `payload` (checksums filled in).
pub fn ipv4_frame(from: SocketAddr, to: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let (IpAddr::V4(s), IpAddr::V4(d)) = (from.ip(), to.ip()) else {
        panic!("IPv4 addresses expected")
    };
    let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x08, 0x00];
    let udp_len = 8 + payload.len() as u16;
    let mut ip = vec![0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, 17, 0, 0];
    ip[2..4].copy_from_slice(&(20 + udp_len).to_be_bytes());
    ip.extend_from_slice(&s.octets());
    ip.extend_from_slice(&d.octets());
    let c = !proxy_common::ones_sum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let mut udp = Vec::new();
    udp.extend_from_slice(&from.port().to_be_bytes());
    udp.extend_from_slice(&to.port().to_be_bytes());
    udp.extend_from_slice(&udp_len.to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(payload);
    let mut pseudo = s.octets().to_vec();
    pseudo.extend_from_slice(&d.octets());
    pseudo.extend_from_slice(&[0, 17]);
    pseudo.extend_from_slice(&udp_len.to_be_bytes());
    pseudo.extend_from_slice(&udp);
    let c = !proxy_common::ones_sum(&pseudo);
    udp[6..8].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&udp);
    f
}

/// Errors of the fast-path benchmarks.
#[derive(Debug, thiserror::Error)]
pub enum FastBenchError {
    /// Loading, attaching or running a program.
    #[error("fast path: {0}")]
    FastPath(#[from] crate::fastpath::FastPathError),
    /// Lab plumbing.
    #[error("lab: {0}")]
    Io(#[from] std::io::Error),
    /// The program did not answer as it should.
    #[error("{0}")]
    Wrong(String),
}

type Result<T> = std::result::Result<T, FastBenchError>;

/// Source of the `i`-th synthetic endpoint: 198.18.0.0/15 addresses, a few
/// ports each.
fn source(i: u32) -> SocketAddr {
    let host = i / 16;
    let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 0, 0)) + 16 + host);
    SocketAddr::new(ip.into(), 20_000 + (i % 16) as u16)
}

/// Result of one BPF_PROG_TEST_RUN measurement.
#[derive(Clone, Copy, Debug)]
pub struct TestRunTime {
    /// Learned endpoints in the map.
    pub endpoints: u32,
    /// Mean ns per keepalive→RCF run of `ras_fastpath`.
    pub fastpath_ns: f64,
    /// Mean ns per run of the pass-only program on the same frame.
    pub pass_ns: f64,
    /// Mean ns per run of the classifier alone (header walk + one counter).
    pub classify_ns: f64,
    /// Kernel memory of the learned-endpoint map, bytes (fdinfo memlock).
    pub map_bytes: u64,
    /// The same for an empty map of the same size.
    pub empty_map_bytes: u64,
}

/// Memory the kernel accounts to an instance's learned-endpoint map
/// (fdinfo `memlock`, which for a hash map without preallocation grows
/// with the elements in it).
fn map_memlock(instance: &str) -> Result<u64> {
    use std::os::fd::{AsFd, AsRawFd};
    let pin = crate::fastpath::pin_dir(instance)?.join(KEEPALIVE_MAP);
    let data = aya::maps::MapData::from_pin(&pin)
        .map_err(|e| FastBenchError::Wrong(format!("{}: {e}", pin.display())))?;
    let fd = data.fd().as_fd().as_raw_fd();
    let text = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}"))?;
    text.lines()
        .find_map(|l| l.strip_prefix("memlock:")?.trim().parse().ok())
        .ok_or_else(|| FastBenchError::Wrong("no memlock in fdinfo".into()))
}

/// BPF_PROG_TEST_RUN with `n` learned endpoints, `repeat` runs each.
pub fn test_run(n: u32, repeat: u32) -> Result<TestRunTime> {
    let instance = unique_name("fb");
    let mut fp = FastPath::load_sized(&instance, n + 1)?;
    let out = (|| {
        let proxy: SocketAddr = "198.18.0.1:1719".parse().expect("address");
        fp.configure(proxy_common::FastpathSettings {
            answer: 1,
            ras_port: 1719,
            ..Default::default()
        })?;
        fp.set_local_addrs(&[proxy.ip()])?;
        let empty_map_bytes = map_memlock(&instance)?;
        let id = "BENCH-PX-000001";
        let rcf = |seq: u16| {
            let v = json!({"registrationConfirm": {"requestSeqNum": seq, "protocolIdentifier": PROTOCOL_ID,
                "callSignalAddress": [transport_json("198.18.0.1:1720".parse().expect("address"))],
                "gatekeeperIdentifier": "BENCH-PX", "endpointIdentifier": id, "timeToLive": 60}});
            ras::encode(&ras_from_json(&v).expect("valid RCF")).expect("encodes")
        };
        let tpl = RcfTemplate::from_encodings(&rcf(1), &rcf(2))
            .map_err(|e| FastBenchError::Wrong(e.to_string()))?;
        let me = source(n / 2);
        let e = entry(&keepalive(1, me, id, "BENCH-PX"), 1, id, &tpl)
            .map_err(|e| FastBenchError::Wrong(e.to_string()))?;
        let mut table = fp.take_keepalive_table()?;
        for i in 0..n {
            table.learn(source(i), &e)?;
        }
        let map_bytes = map_memlock(&instance)?;
        let frame = ipv4_frame(me, proxy, &keepalive(77, me, id, "BENCH-PX"));
        // One run per call: with `repeat` the kernel runs the program again
        // on the frame it already turned into an answer. The kernel times
        // each call around the program alone; the pass-only baseline pays
        // the same timer overhead.
        let mut out = vec![0u8; 512];
        let (mut d, mut p, mut c) = (0u128, 0u128, 0u128);
        for _ in 0..repeat {
            let (action, t, _) = fp.test_run(FASTPATH_PROG, &frame, 1, Some(&mut out))?;
            if action != 3 {
                return Err(FastBenchError::Wrong(format!(
                    "ras_fastpath returned {action}, not XDP_TX"
                )));
            }
            d += t.as_nanos();
            let (_, t, _) = fp.test_run(PASS_PROG, &frame, 1, None)?;
            p += t.as_nanos();
            let (_, t, _) = fp.test_run(crate::fastpath::RAS_CLASSIFY_PROG, &frame, 1, None)?;
            c += t.as_nanos();
        }
        Ok(TestRunTime {
            endpoints: n,
            fastpath_ns: d as f64 / repeat as f64,
            pass_ns: p as f64 / repeat as f64,
            classify_ns: c as f64 / repeat as f64,
            map_bytes,
            empty_map_bytes,
        })
    })();
    fp.unpin()?;
    out
}

/// Answers per second in the veth lab.
#[derive(Clone, Copy, Debug)]
pub struct Throughput {
    /// With kernel answering on.
    pub offload_per_sec: f64,
    /// With it off: every keepalive through the tokio RAS driver.
    pub userspace_per_sec: f64,
}

/// Flood one learned endpoint's keepalives at the proxy (daemon pinned to
/// CPU 0) for `secs` with answering on, then off; count answers received.
pub fn throughput(
    proxy_bin: &std::path::Path,
    dir: &std::path::Path,
    secs: u64,
) -> Result<Throughput> {
    let px = Netns::create("px")?;
    let ep = Netns::create("ep")?;
    veth(&px, "px0", &ep, "ep0")?;
    let _peer = xdp_peer_pass(&ep, "ep0")?;
    px.ip(&["addr", "add", "198.18.0.1/24", "dev", "px0"])?;
    ep.ip(&["addr", "add", "198.18.0.2/24", "dev", "ep0"])?;
    let instance = unique_name("tp");
    let cfg = dir.join(format!("{instance}.toml"));
    std::fs::write(
        &cfg,
        format!(
            "instance = \"{instance}\"\n[fastpath]\ninterfaces = [\"px0\"]\nstats_interval_secs = 0\nrate_per_second = 0\n\
             [proxy]\nid = \"BENCH-PX\"\nendpoint_address = \"198.18.0.1\"\ngatekeeper_address = \"127.0.0.2\"\n[metrics]\nenabled = false\n"
        ),
    )?;
    let mut cmd = px.command("taskset")?;
    cmd.args(["-c", "0"])
        .arg(proxy_bin)
        .args(["run", "--config"])
        .arg(&cfg);
    cmd.env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut child = super::process::LabProc::spawn("proxy", cmd)?;
    let to: SocketAddr = "198.18.0.1:1719".parse().expect("address");
    let me: SocketAddr = "198.18.0.2:40000".parse().expect("address");
    let sock = ep.run(move || UdpSocket::bind(me))??;
    sock.set_read_timeout(Some(Duration::from_millis(200)))?;
    // Register and learn (the daemon may still be starting).
    let mut buf = [0u8; 2048];
    let mut id = None;
    for _ in 0..50 {
        sock.send_to(&rrq(1, me, "bench"), to)?;
        if let Ok((n, _)) = sock.recv_from(&mut buf)
            && let Ok(ras::RasMessage::registrationConfirm(rcf)) = ras::decode(&buf[..n])
        {
            id = Some(crate::h225::value::bmp_text(&rcf.endpoint_identifier.0));
            break;
        }
    }
    let id = id.ok_or_else(|| FastBenchError::Wrong("no RCF from the proxy".into()))?;
    let ka = keepalive(2, me, &id, "BENCH-PX");
    sock.send_to(&ka, to)?;
    sock.recv_from(&mut buf)?;
    std::thread::sleep(Duration::from_millis(300));
    let on = flood(&sock, to, &ka, secs)?;
    set_answering(&instance, false)?;
    let off = flood(&sock, to, &ka, secs)?;
    let _ = child.terminate(10);
    Ok(Throughput {
        offload_per_sec: on,
        userspace_per_sec: off,
    })
}

/// Send `ka` as fast as sendmmsg allows for `secs`, count answers.
fn flood(sock: &UdpSocket, to: SocketAddr, ka: &[u8], secs: u64) -> Result<f64> {
    const BATCH: usize = 64;
    let stop = Arc::new(AtomicBool::new(false));
    let got = Arc::new(AtomicU64::new(0));
    let rx = sock.try_clone()?;
    let (s2, g2) = (stop.clone(), got.clone());
    let reader = std::thread::spawn(move || {
        let mut bufs = vec![[0u8; 256]; BATCH];
        while !s2.load(Ordering::Relaxed) {
            let n = recv_batch(rx.as_raw_fd(), &mut bufs);
            if n > 0 {
                g2.fetch_add(n as u64, Ordering::Relaxed);
            }
        }
    });
    let dest = socket2::SockAddr::from(to);
    let t0 = Instant::now();
    let mut counted_from = None;
    while t0.elapsed() < Duration::from_secs(secs + 1) {
        send_batch(sock.as_raw_fd(), &dest, ka, BATCH);
        // The first second warms up; count from then on.
        if counted_from.is_none() && t0.elapsed() >= Duration::from_secs(1) {
            counted_from = Some((Instant::now(), got.load(Ordering::Relaxed)));
        }
    }
    let (t1, g1) = counted_from.unwrap_or((t0, 0));
    let n = got.load(Ordering::Relaxed) - g1;
    let rate = n as f64 / t1.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let _ = reader.join();
    // Let the tail drain before the next run.
    std::thread::sleep(Duration::from_millis(300));
    Ok(rate)
}

fn send_batch(fd: i32, dest: &socket2::SockAddr, payload: &[u8], n: usize) {
    let mut iov: Vec<libc::iovec> = (0..n)
        .map(|_| libc::iovec {
            iov_base: payload.as_ptr() as *mut _,
            iov_len: payload.len(),
        })
        .collect();
    let mut msgs: Vec<libc::mmsghdr> = iov
        .iter_mut()
        .map(|v| {
            // SAFETY: a zeroed mmsghdr is valid; we fill the pointers below.
            let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
            m.msg_hdr.msg_name = dest.as_ptr() as *mut _;
            m.msg_hdr.msg_namelen = dest.len();
            m.msg_hdr.msg_iov = v;
            m.msg_hdr.msg_iovlen = 1;
            m
        })
        .collect();
    // SAFETY: every pointer refers to live buffers for the call.
    unsafe { libc::sendmmsg(fd, msgs.as_mut_ptr(), n as u32, 0) };
}

fn recv_batch(fd: i32, bufs: &mut [[u8; 256]]) -> i32 {
    let mut iov: Vec<libc::iovec> = bufs
        .iter_mut()
        .map(|b| libc::iovec {
            iov_base: b.as_mut_ptr().cast(),
            iov_len: b.len(),
        })
        .collect();
    let mut msgs: Vec<libc::mmsghdr> = iov
        .iter_mut()
        .map(|v| {
            // SAFETY: as in send_batch.
            let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
            m.msg_hdr.msg_iov = v;
            m.msg_hdr.msg_iovlen = 1;
            m
        })
        .collect();
    // The socket has a 200 ms receive timeout, so this returns to check
    // the stop flag.
    // SAFETY: as above.
    unsafe {
        libc::recvmmsg(
            fd,
            msgs.as_mut_ptr(),
            msgs.len() as u32,
            libc::MSG_WAITFORONE,
            std::ptr::null_mut(),
        )
    }
}

/// Heap bytes per registered endpoint in the control plane: `n`
/// registrations (each with one keepalive answered, so its RCF template and
/// offload entry exist) in a relay in survivable mode, measured as the
/// growth of this process's resident memory.
pub fn daemon_bytes_per_endpoint(n: u32) -> f64 {
    let cfg = crate::config::Config::parse(
        "[proxy]\nid = \"BENCH-PX\"\nendpoint_address = \"198.18.0.1\"\ngatekeeper_address = \"127.0.0.2\"\n",
        "bench",
    )
    .expect("bench config");
    let t = Instant::now();
    let before = rss_bytes();
    let mut r =
        crate::ras_relay::RasRelay::new(cfg.relay("127.0.0.2:1719".parse().expect("address")), t);
    for i in 0..n {
        let me = source(i);
        r.handle_endpoint(t, me, &rrq(1, me, &format!("ep{i}")));
        let mut id = None;
        while let Some(tx) = r.poll_transmit() {
            if let Ok(ras::RasMessage::registrationConfirm(rcf)) = ras::decode(&tx.bytes) {
                id = Some(crate::h225::value::bmp_text(&rcf.endpoint_identifier.0));
            }
        }
        if let Some(id) = id {
            r.handle_endpoint(t, me, &keepalive(2, me, &id, "BENCH-PX"));
            while r.poll_transmit().is_some() {}
        }
        while r.poll_event().is_some() {}
    }
    let after = rss_bytes();
    let per = after.saturating_sub(before) as f64 / n as f64;
    assert_eq!(r.registrations().len(), n as usize, "all registered");
    drop(r);
    per
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    pages * 4096
}
