//! Fast-path benchmarks (`cargo xtask bench`), each against a baseline
//! measured in the same run:
//!
//! - BPF_PROG_TEST_RUN time per keepalive→RCF with 1,000 and 1,000,000
//!   learned endpoints, against a pass-only XDP program on the same frame;
//! - keepalive answers per second in the veth lab with kernel answering on,
//!   against the same daemon with it off (the tokio path);
//! - kernel bytes per learned endpoint (the map's own memory accounting) and
//!   daemon heap per registered endpoint.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use serde_json::json;

use super::frame::Frame;
use super::netns::{Netns, unique_name, veth, xdp_peer_pass};
use proxy_user::fastpath::{
    BENCH_FASTPATH_PROG, BENCH_PASS_PROG, BENCH_STAGE_PROGS, BenchPrograms, FastPath,
    KEEPALIVE_MAP, PASS_PROG, set_answering,
};
use proxy_user::h225::PROTOCOL_ID;
use proxy_user::h225::ras;
use proxy_user::h225::value::{ras_from_json, transport_json};
use proxy_user::offload::{RcfTemplate, entry};

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

/// Errors of the fast-path benchmarks.
#[derive(Debug, thiserror::Error)]
pub enum FastBenchError {
    /// Loading, attaching or running a program.
    #[error("fast path: {0}")]
    FastPath(#[from] proxy_user::fastpath::FastPathError),
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
#[derive(Clone, Debug)]
pub struct TestRunTime {
    /// Learned endpoints in the map.
    pub endpoints: u32,
    /// Mean ns per keepalive→RCF run of the fast path (`bench_fastpath`:
    /// the frame put back, then the whole fast path), median over rounds.
    pub fastpath_ns: f64,
    /// Mean ns per run of the baseline (`bench_pass`: the frame put back,
    /// then XDP_PASS), median over rounds.
    pub pass_ns: f64,
    /// What the fast path costs per keepalive: the median over rounds of
    /// `fastpath_ns - pass_ns`, both timed in the same round.
    pub fastpath_net_ns: f64,
    /// The fast path stopped after each stage: (what it did, ns over the
    /// baseline, as `fastpath_net_ns`).
    pub stages: Vec<(&'static str, f64)>,
    /// Mean ns per run of the classifier alone (header walk + counters).
    pub classify_ns: f64,
    /// Mean ns per run of `xdp_pass`, the classifier's baseline (neither
    /// rewrites the frame, so nothing is put back).
    pub plain_pass_ns: f64,
    /// Kernel memory of the learned-endpoint map, bytes (fdinfo memlock).
    pub map_bytes: u64,
    /// The same for an empty map of the same size.
    pub empty_map_bytes: u64,
    /// Reading every entry of the map (the control plane does it every
    /// second), BPF_MAP_LOOKUP_BATCH, ms.
    pub sweep_batch_ms: f64,
    /// The same a key at a time (aya's iterator), ms.
    pub sweep_key_ms: f64,
}

/// The median of `v` (which it sorts).
fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Memory the kernel accounts to an instance's learned-endpoint map
/// (fdinfo `memlock`, which for a hash map without preallocation grows
/// with the elements in it).
fn map_memlock(instance: &str) -> Result<u64> {
    use std::os::fd::{AsFd, AsRawFd};
    let pin = proxy_user::fastpath::pin_dir(instance)?.join(KEEPALIVE_MAP);
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
            endpoint_addr: proxy_user::offload::local_addr(proxy.ip()),
            has_endpoint_addr: 1,
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
        // The control plane's read of the whole map, batched and (the
        // baseline) a key at a time.
        let started = std::time::Instant::now();
        let batch = table.entries()?.len();
        let sweep_batch_ms = started.elapsed().as_secs_f64() * 1e3;
        let started = std::time::Instant::now();
        let key_by_key = table.entries_key_by_key().len();
        let sweep_key_ms = started.elapsed().as_secs_f64() * 1e3;
        if batch != n as usize || key_by_key != n as usize {
            return Err(FastBenchError::Wrong(format!(
                "map reads found {batch} (batched) and {key_by_key} (key by key) of {n} endpoints"
            )));
        }
        let frame = Frame::default().udp(me, proxy, &keepalive(77, me, id, "BENCH-PX"));
        // The benchmark programs live in an object of their own, loaded
        // over this fast path's pinned maps.
        let mut bench = BenchPrograms::load(&fp)?;
        bench.set_frame(&frame)?;
        // The kernel times the `repeat` runs of one call together and
        // returns the mean. A figure is the median of five calls.
        let time = |fp: &mut FastPath, prog: &'static str| -> Result<(u32, f64)> {
            let mut means = Vec::new();
            let mut action = 0;
            for _ in 0..5 {
                let (a, t, _) = fp.test_run(prog, &frame, repeat, None)?;
                action = a;
                means.push(t.as_nanos() as f64);
            }
            Ok((action, median(&mut means)))
        };
        // The fast path, its stages and the baseline are timed in turns,
        // ROUNDS times, each round in another order, and each figure is set
        // against the baseline of its own round: a slow spell of the
        // machine (a shared VM's neighbours) then moves both sides of a
        // difference. The runs stay on one CPU (a pinned thread).
        const ROUNDS: usize = 15;
        let progs: Vec<&'static str> = [BENCH_PASS_PROG, BENCH_FASTPATH_PROG]
            .into_iter()
            .chain(BENCH_STAGE_PROGS.iter().map(|(p, _)| *p))
            .collect();
        let before = fp.counters()?.keepalive[proxy_common::ka_slot::ANSWERED as usize];
        let t = std::thread::scope(|sc| {
            sc.spawn(|| -> Result<Vec<Vec<f64>>> {
                pin_to_cpu(1);
                let mut t = vec![Vec::new(); progs.len()];
                for round in 0..ROUNDS {
                    for k in 0..progs.len() {
                        let i = (round + k) % progs.len();
                        let (action, d) = bench.test_run(progs[i], &frame, repeat)?;
                        if progs[i] == BENCH_FASTPATH_PROG && action != 3 {
                            return Err(FastBenchError::Wrong(format!(
                                "bench_fastpath returned {action}, not XDP_TX"
                            )));
                        }
                        t[i].push(d.as_nanos() as f64);
                    }
                }
                Ok(t)
            })
            .join()
            .map_err(|_| FastBenchError::Wrong("timing thread panicked".into()))?
        })?;
        let answered = fp.counters()?.keepalive[proxy_common::ka_slot::ANSWERED as usize] - before;
        if answered != (ROUNDS as u64) * u64::from(repeat) {
            return Err(FastBenchError::Wrong(format!(
                "bench_fastpath answered {answered} of {} runs",
                ROUNDS as u64 * u64::from(repeat)
            )));
        }
        let net = |i: usize| {
            let mut d: Vec<f64> = t[i].iter().zip(&t[0]).map(|(a, b)| a - b).collect();
            median(&mut d)
        };
        let fastpath_net_ns = net(1);
        let fastpath_ns = median(&mut t[1].clone());
        let pass_ns = median(&mut t[0].clone());
        let stages = BENCH_STAGE_PROGS
            .iter()
            .enumerate()
            .map(|(k, (_, what))| (*what, net(2 + k)))
            .collect();
        let (_, classify_ns) = time(&mut fp, proxy_user::fastpath::RAS_CLASSIFY_PROG)?;
        let (_, plain_pass_ns) = time(&mut fp, PASS_PROG)?;
        Ok(TestRunTime {
            endpoints: n,
            fastpath_ns,
            fastpath_net_ns,
            pass_ns,
            stages,
            classify_ns,
            plain_pass_ns,
            map_bytes,
            empty_map_bytes,
            sweep_batch_ms,
            sweep_key_ms,
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

/// One learned endpoint's keepalive sent at the proxy as fast as one CPU
/// can by an in-kernel generator (`TrafficGen`: BPF_PROG_TEST_RUN in
/// live-frame mode on the endpoint's veth end, CPU 0), answers counted by an
/// XDP sink on the same end; the daemon runs on CPU 1. First with kernel
/// answering on, then off (every keepalive through the tokio RAS driver).
pub fn throughput(
    proxy_bin: &std::path::Path,
    dir: &std::path::Path,
    secs: u64,
) -> Result<Throughput> {
    let px = Netns::create("px")?;
    let ep = Netns::create("ep")?;
    veth(&px, "px0", &ep, "ep0")?;
    let peer = xdp_peer_pass(&ep, "ep0")?;
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
    cmd.args(["-c", "1"])
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
            id = Some(proxy_user::h225::value::bmp_text(
                &rcf.endpoint_identifier.0,
            ));
            break;
        }
    }
    let id = id.ok_or_else(|| FastBenchError::Wrong("no RCF from the proxy".into()))?;
    let ka = keepalive(2, me, &id, "BENCH-PX");
    sock.send_to(&ka, to)?;
    sock.recv_from(&mut buf)?;
    std::thread::sleep(Duration::from_millis(300));
    // The generator's frame: the same keepalive, to px0's MAC address.
    let frame = Frame {
        dst_mac: mac_of(&px, "px0")?,
        src_mac: mac_of(&ep, "ep0")?,
        ..Default::default()
    }
    .udp(me, to, &ka);
    drop(peer);
    let pins = instance.clone();
    let rates = ep.run(move || -> Result<(f64, f64)> {
        pin_to_cpu(0);
        let mut g = proxy_user::fastpath::TrafficGen::attach("ep0", &frame)?;
        let on = generate(&mut g, secs)?;
        set_answering(&pins, false)?;
        std::thread::sleep(Duration::from_millis(300));
        let off = generate(&mut g, secs)?;
        Ok((on, off))
    })??;
    let _ = child.terminate(10);
    Ok(Throughput {
        offload_per_sec: rates.0,
        userspace_per_sec: rates.1,
    })
}

/// Run the generator for a warm-up second and then `secs`; answers per
/// second over the `secs`.
fn generate(g: &mut proxy_user::fastpath::TrafficGen, secs: u64) -> Result<f64> {
    const CHUNK: u32 = 1 << 16;
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(1) {
        g.send(CHUNK)?;
    }
    let (t1, n1) = (Instant::now(), g.received()?);
    while t1.elapsed() < Duration::from_secs(secs) {
        g.send(CHUNK)?;
    }
    // Let the last answers arrive.
    std::thread::sleep(Duration::from_millis(100));
    let n = g.received()? - n1;
    Ok(n as f64 / t1.elapsed().as_secs_f64())
}

/// Pin the calling thread to `cpu`.
fn pin_to_cpu(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is valid; CPU_SET writes within it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// The MAC address of `dev` in `ns`.
fn mac_of(ns: &Netns, dev: &str) -> Result<[u8; 6]> {
    let out = ns
        .command("ip")?
        .args(["-br", "link", "show", "dev", dev])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let field = text
        .split_whitespace()
        .nth(2)
        .ok_or_else(|| FastBenchError::Wrong(format!("no MAC address for {dev}: {text}")))?;
    let mut mac = [0u8; 6];
    let mut parts = field.split(':');
    for b in &mut mac {
        *b = parts
            .next()
            .and_then(|p| u8::from_str_radix(p, 16).ok())
            .ok_or_else(|| FastBenchError::Wrong(format!("bad MAC address {field}")))?;
    }
    Ok(mac)
}

/// Heap bytes per registered endpoint in the control plane: `n`
/// registrations (each with one keepalive answered, so its RCF template and
/// offload entry exist) in a relay in survivable mode, measured as the
/// growth of this process's resident memory.
pub fn daemon_bytes_per_endpoint(n: u32) -> f64 {
    let cfg = proxy_user::config::Config::parse(
        "[proxy]\nid = \"BENCH-PX\"\nendpoint_address = \"198.18.0.1\"\ngatekeeper_address = \"127.0.0.2\"\n",
        "bench",
    )
    .expect("bench config");
    let t = Instant::now();
    let before = rss_bytes();
    let mut r = proxy_user::ras_relay::RasRelay::new(
        cfg.relay("127.0.0.2:1719".parse().expect("address")),
        t,
    );
    for i in 0..n {
        let me = source(i);
        r.handle_endpoint(t, me, &rrq(1, me, &format!("ep{i}")));
        let mut id = None;
        while let Some(tx) = r.poll_transmit() {
            if let Ok(ras::RasMessage::registrationConfirm(rcf)) = ras::decode(&tx.bytes) {
                id = Some(proxy_user::h225::value::bmp_text(
                    &rcf.endpoint_identifier.0,
                ));
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
