//! Root tests of the hostile endpoint LAN: one host attacks while calls
//! are up, a gatekeeper is in control and the kernel fast path answers
//! keepalives. Each attack is held 60 s, then the same verdict: no call
//! dropped, no keepalive or STATUS ENQUIRY of another endpoint unanswered
//! at any time, RTP loss no worse than in as long a quiet spell before, no
//! failover (`h323proxy_failovers_total` unchanged) and the primary still
//! up, the daemon's descriptors and memory within a stated bound, and the
//! attack counted by reason in `h323proxy_refused_total`.
//!
//! The attacker is another address on the endpoint LAN (198.18.1.66); the
//! proxy runs the daemon's default `[limits]` (the lab's own raise them
//! for its one-address LAN of simulated endpoints) and the lab's heartbeat
//! (40 ms × 3: a stall of 120 ms in the RAS loop would be a failover).

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use proxy_lab::process::LabProc;
use proxy_lab::topology::{GK1, GK2, LAB_LIMITS, Lab, PX_EP, PX_GK};
use proxy_tests::{
    Proxy, endpoints, endpoints_with, gatekeeper, gatekeeper_with, get, metric, privileged, scrape,
    status, wait_status,
};

/// The attacking host's address on the endpoint LAN.
const ATTACKER: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 66);

/// How long every attack is held: long enough for TCP keepalive (10 s +
/// 3 × 3 s), RAS retries and the 30 s SETUP wait to fire.
const HOLD: Duration = Duration::from_secs(60);

/// The lab with calls up, and what was measured before the attack.
struct Scene {
    lab: Lab,
    gk1: LabProc,
    gk2: LabProc,
    proxy: Proxy,
    eps: LabProc,
    /// The most descriptors and resident KiB seen during the attack.
    peak: std::sync::Mutex<(usize, u64)>,
}

/// What the verdict compares.
#[derive(Debug)]
struct Reading {
    status: String,
    metrics: String,
    fds: usize,
    rss_kib: u64,
}

impl Reading {
    /// How much `sample` grew from `before` to this reading.
    fn grew(&self, before: &Reading, sample: &str) -> u64 {
        metric(&self.metrics, sample) - metric(&before.metrics, sample)
    }
}

fn scene() -> Scene {
    scene_with(&[])
}

/// The scene with more options for the lab endpoints.
fn scene_with(endpoint_options: &[&str]) -> Scene {
    scene_full(&[], endpoint_options)
}

/// The scene with more options for the primary and the lab endpoints.
fn scene_full(primary_options: &[&str], endpoint_options: &[&str]) -> Scene {
    let lab = Lab::create().unwrap();
    lab.ep
        .ip(&["addr", "add", &format!("{ATTACKER}/24"), "dev", "ep0"])
        .unwrap();
    let gk1 = gatekeeper_with(&lab.gk1, GK1, "GK-A", Some(GK2), primary_options);
    let gk2 = gatekeeper(&lab.gk2, GK2, "GK-B", None);
    let proxy = Proxy::start_tweaked(&lab, 5000, Some("px0"), |t| t.replace(LAB_LIMITS, ""));
    let eps = endpoints_with(&lab, PX_EP, 4, 2, endpoint_options);
    wait_status(&eps, 20, |l| {
        get(l, "calls_active") == 4 && get(l, "rtp_received") > 0
    });
    Scene {
        lab,
        gk1,
        gk2,
        proxy,
        eps,
        peak: std::sync::Mutex::new((0, 0)),
    }
}

impl Scene {
    fn read(&self) -> Reading {
        let pid = self.proxy.proc.pid();
        let rss_kib = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS:"))?
                    .split_whitespace()
                    .nth(1)?
                    .parse()
                    .ok()
            })
            .unwrap_or(0);
        Reading {
            status: status(&self.eps),
            metrics: scrape(&self.lab),
            fds: std::fs::read_dir(format!("/proc/{pid}/fd"))
                .map(|d| d.count())
                .unwrap_or(0),
            rss_kib,
        }
    }

    /// RTP packets lost in `d` without any attack: what the verdict allows.
    fn quiet_loss(&self, d: Duration) -> u64 {
        let a = get(&status(&self.eps), "rtp_lost");
        std::thread::sleep(d);
        get(&status(&self.eps), "rtp_lost") - a
    }

    /// Run `attack` on the attacking host for [`HOLD`], watching the
    /// endpoints every second throughout: a keepalive or STATUS ENQUIRY
    /// unanswered, or a call dropped, fails the test at once. Returns what
    /// the attack reported.
    fn attack<R: Send + 'static>(
        &self,
        what: &str,
        attack: impl FnOnce(Instant) -> R + Send + 'static,
    ) -> R {
        let start = status(&self.eps);
        let until = Instant::now() + HOLD;
        std::thread::scope(|s| {
            let ns = &self.lab.ep;
            let h = s.spawn(move || ns.run(move || attack(until)).unwrap());
            while !h.is_finished() && Instant::now() < until + Duration::from_secs(30) {
                std::thread::sleep(Duration::from_secs(1));
                let r = self.read();
                let mut peak = self.peak.lock().unwrap();
                peak.0 = peak.0.max(r.fds);
                peak.1 = peak.1.max(r.rss_kib);
                drop(peak);
                let now = r.status;
                for key in [
                    "keepalives_unanswered",
                    "enquiries_unanswered",
                    "calls_dropped",
                ] {
                    assert_eq!(
                        get(&now, key),
                        get(&start, key),
                        "{what}: {key} grew during the attack: {now}\n{}",
                        self.proxy.log_text()
                    );
                }
            }
            h.join().expect("the attack thread")
        })
    }

    /// The endpoints' side of the verdict: the 4 calls up, no call dropped,
    /// no keepalive or STATUS ENQUIRY unanswered since `before`, RTP loss
    /// no worse than `quiet_lost` (plus one in a thousand). Returns (RTP
    /// lost, RTP sent).
    fn undisturbed(
        &self,
        what: &str,
        before: &Reading,
        after: &Reading,
        quiet_lost: u64,
    ) -> (u64, u64) {
        assert_eq!(
            get(&after.status, "calls_active"),
            4,
            "{what}: calls dropped: {}\n{}",
            after.status,
            self.proxy.log_text()
        );
        for key in [
            "calls_dropped",
            "keepalives_unanswered",
            "enquiries_unanswered",
        ] {
            assert_eq!(
                get(&after.status, key),
                get(&before.status, key),
                "{what}: {key}: {}",
                after.status
            );
        }
        let lost = get(&after.status, "rtp_lost") - get(&before.status, "rtp_lost");
        let sent = get(&after.status, "rtp_sent") - get(&before.status, "rtp_sent");
        assert!(
            lost <= quiet_lost + sent / 1000,
            "{what}: {lost} RTP packets lost of {sent} (quiet: {quiet_lost})"
        );
        (lost, sent)
    }

    /// The verdict after an attack (see the module docs). `refused` names
    /// the sample of `h323proxy_refused_total` (or another counter) that
    /// must have counted it; the descriptors may grow by `fd_bound` at
    /// most, the resident memory by `rss_bound_kib`.
    fn verdict(
        &self,
        what: &str,
        before: &Reading,
        quiet_lost: u64,
        refused: &str,
        fd_bound: usize,
        rss_bound_kib: u64,
    ) -> Reading {
        let after = self.read();
        let (peak_fds, peak_rss) = *self.peak.lock().unwrap();
        let (peak_fds, peak_rss) = (peak_fds.max(after.fds), peak_rss.max(after.rss_kib));
        let log = || self.proxy.log_text();
        let (lost, sent) = self.undisturbed(what, before, &after, quiet_lost);
        let failovers = "h323proxy_failovers_total";
        assert_eq!(
            metric(&after.metrics, failovers),
            metric(&before.metrics, failovers),
            "{what}: a false failover\n{}",
            log()
        );
        assert_eq!(
            metric(
                &after.metrics,
                r#"h323proxy_gatekeeper_state{gatekeeper="primary",state="up"}"#
            ),
            1,
            "{what}: the heartbeat went unanswered\n{}",
            log()
        );
        let counted = after.grew(before, refused);
        assert!(counted > 0, "{what}: {refused} did not count it");
        assert!(
            peak_fds <= before.fds + fd_bound,
            "{what}: descriptors {} -> at most {peak_fds} (bound +{fd_bound})",
            before.fds,
        );
        assert!(
            peak_rss <= before.rss_kib + rss_bound_kib,
            "{what}: resident memory {} -> at most {peak_rss} KiB (bound +{rss_bound_kib})",
            before.rss_kib,
        );
        eprintln!(
            "{what}: counted {counted} as {refused}; descriptors {} -> peak {peak_fds} -> {}; RSS {} -> peak {peak_rss} -> {} KiB; RTP lost {lost} of {sent} (quiet {quiet_lost}); failovers unchanged",
            before.fds, after.fds, before.rss_kib, after.rss_kib
        );
        after
    }
}

/// A lightweight RRQ (keepalive) naming an endpointIdentifier the proxy
/// never gave out: decodes, and is refused.
fn stranger_keepalive(seq: u16, ras: SocketAddr) -> Vec<u8> {
    use proxy_user::h225::value::{ras_from_json, transport_json};
    let v = serde_json::json!({"registrationRequest": {"requestSeqNum": seq,
        "protocolIdentifier": proxy_user::h225::PROTOCOL_ID, "discoveryComplete": false,
        "callSignalAddress": [], "rasAddress": [transport_json(ras)],
        "terminalType": {"terminal": {}, "mc": false, "undefinedNode": false},
        "endpointVendor": {"vendor": {"t35CountryCode": 181, "t35Extension": 0, "manufacturerCode": 18}},
        "timeToLive": 60, "keepAlive": true, "endpointIdentifier": "NOBODY"}});
    proxy_user::h225::ras::encode(&ras_from_json(&v).unwrap()).unwrap()
}

/// RAS flood: one host sends 20,000 datagrams a second to 1719 for 60 s
/// (keepalives of an endpoint that does not exist, and garbage). Its
/// budget (200/s, burst 400) lets a few through to be decoded and refused;
/// the rest are dropped unread and counted as `reason="rate"`.
#[test]
fn a_ras_flood_from_one_host_is_dropped_unread_past_its_budget_and_disturbs_nobody() {
    if !privileged(
        "a_ras_flood_from_one_host_is_dropped_unread_past_its_budget_and_disturbs_nobody",
    ) {
        return;
    }
    let sc = scene();
    let quiet = sc.quiet_loss(Duration::from_secs(5));
    let before = sc.read();
    let sent = sc.attack("RAS flood", |until| {
        let s = std::net::UdpSocket::bind((ATTACKER, 0)).unwrap();
        let me = s.local_addr().unwrap();
        let to = SocketAddr::from((PX_EP, 1719));
        let mut sent = 0u64;
        // Built once: the attacker's CPU goes into sending.
        let msgs: Vec<Vec<u8>> = (1..=64u16)
            .map(|seq| {
                if seq % 4 == 0 {
                    vec![0xff; 40 + usize::from(seq)]
                } else {
                    stranger_keepalive(seq, me)
                }
            })
            .collect();
        // 200 datagrams every 10 ms, bounded in time and count.
        while Instant::now() < until && sent < 2_000_000 {
            let tick = Instant::now();
            for d in msgs.iter().cycle().take(200) {
                if s.send_to(d, to).is_ok() {
                    sent += 1;
                }
            }
            if let Some(rest) = Duration::from_millis(10).checked_sub(tick.elapsed()) {
                std::thread::sleep(rest);
            }
        }
        sent
    });
    let after = sc.verdict(
        "RAS flood",
        &before,
        quiet,
        r#"h323proxy_refused_total{port="1719",reason="rate"}"#,
        8,
        16 * 1024,
    );
    // What got past the budget was decoded and refused: no more than the
    // budget allows over the attack (200/s × its length, plus the burst).
    let passed = ["undecodable", "refused"]
        .iter()
        .map(|r| {
            let m = format!(r#"h323proxy_malformed_total{{port="1719",reason="{r}"}}"#);
            after.grew(&before, &m)
        })
        .sum::<u64>();
    let allowed = 200 * (HOLD.as_secs() + 5) + 400;
    eprintln!("RAS flood: {sent} datagrams sent, {passed} decoded (budget {allowed})");
    assert!(sent > 100_000, "the flood was not sent: {sent}");
    assert!(
        passed > 0 && passed <= allowed,
        "{passed} datagrams got past a budget of {allowed}"
    );
}

/// Connection flood: one host opens call signalling connections to 1720 as
/// fast as it can for 60 s and holds them, never sending a SETUP. Its
/// budget (20/s, burst 40) and the per-source cap (512) bound what the
/// daemon holds for it; the rest are reset at once and counted.
#[test]
fn a_connection_flood_from_one_host_is_capped_and_disturbs_nobody() {
    if !privileged("a_connection_flood_from_one_host_is_capped_and_disturbs_nobody") {
        return;
    }
    let sc = scene();
    let quiet = sc.quiet_loss(Duration::from_secs(5));
    let before = sc.read();
    let (tried, opened) = sc.attack("connection flood", |until| {
        // Room for the connections held (the test process's own limit).
        let lim = libc::rlimit {
            rlim_cur: 8192,
            rlim_max: 8192,
        };
        // SAFETY: setrlimit with a valid rlimit.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
        let mut held = std::collections::VecDeque::new();
        let (mut tried, mut opened) = (0u64, 0u64);
        let to = SocketAddr::from((PX_EP, 1720));
        let start = Instant::now();
        // A third of the time as fast as it goes (past the rate), then
        // just under the rate, holding every connection (past the
        // per-source cap once 512 are held).
        while Instant::now() < until && tried < 200_000 {
            let fast = start.elapsed() < HOLD / 3;
            tried += 1;
            let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None);
            let Ok(s) = s else { break };
            let _ = s.bind(&SocketAddr::from((ATTACKER, 0)).into());
            if s.connect_timeout(&to.into(), Duration::from_secs(1))
                .is_ok()
            {
                opened += 1;
                held.push_back(s);
                if held.len() > 4000 {
                    held.pop_front();
                }
            }
            if fast {
                std::thread::sleep(Duration::from_millis(2));
                if start.elapsed() >= HOLD / 3 {
                    // The fast phase's connections go; the slow ones stay.
                    held.clear();
                    std::thread::sleep(Duration::from_secs(3));
                }
            } else {
                std::thread::sleep(Duration::from_millis(55));
            }
        }
        (tried, opened)
    });
    let after = sc.verdict(
        "connection flood",
        &before,
        quiet,
        r#"h323proxy_refused_total{port="1720",reason="rate"}"#,
        512 + 16,
        64 * 1024,
    );
    eprintln!(
        "connection flood: {tried} connects tried, {opened} completed the handshake; refused per source: {}",
        metric(
            &after.metrics,
            r#"h323proxy_refused_total{port="1720",reason="connections_per_source"}"#
        )
    );
    assert!(tried > 1000, "the flood was not sent: {tried}");
    assert!(
        metric(
            &after.metrics,
            r#"h323proxy_refused_total{port="1720",reason="connections_per_source"}"#
        ) > 0,
        "the per-source cap never refused a connection"
    );
}

/// Forged ICMP: one host sends 100 ICMP port unreachables a second for
/// 60 s that quote the proxy's RAS flow to the primary gatekeeper (the
/// attacker is given the proxy's port: stronger than guessing it). Before,
/// each made the primary down at once: a failover per forgery. Now each is
/// a hint: one probe, answered, and the primary keeps control.
#[test]
fn forged_icmp_unreachables_for_the_gatekeeper_flow_are_a_hint_not_a_failover() {
    if !privileged("forged_icmp_unreachables_for_the_gatekeeper_flow_are_a_hint_not_a_failover") {
        return;
    }
    let sc = scene();
    // The proxy's socket connected to the primary's RAS address.
    let local = primary_ras_socket(&sc);
    let quiet = sc.quiet_loss(Duration::from_secs(5));
    let before = sc.read();
    let forged = sc.attack("forged ICMP", move |until| {
        let s = socket2::Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::RAW,
            Some(socket2::Protocol::ICMPV4),
        )
        .unwrap();
        s.bind(&SocketAddr::from((ATTACKER, 0)).into()).unwrap();
        let icmp = port_unreachable(local, SocketAddr::from((GK1, 1719)));
        let to = SocketAddr::from((PX_GK, 0));
        let mut sent = 0u64;
        while Instant::now() < until && sent < 10_000 {
            if s.send_to(&icmp, &to.into()).is_ok() {
                sent += 1;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        sent
    });
    // The forgeries reached the proxy's socket (else this proves nothing).
    assert!(
        sc.proxy
            .log_text()
            .contains("gatekeeper unreachable (ICMP): probing it at once"),
        "the forged ICMPs never reached the proxy's socket:\n{}",
        sc.proxy.log_text()
    );
    sc.verdict(
        "forged ICMP",
        &before,
        quiet,
        "h323proxy_gatekeeper_unreachable_hints_total",
        4,
        8 * 1024,
    );
    eprintln!("forged ICMP: {forged} sent");
    assert!(forged > 1000, "the forgeries were not sent: {forged}");
}

/// Keepalive replay: a host copies an endpoint's keepalive (its address,
/// port and bytes) and sends it 20 times a second for 60 s from its own MAC.
/// Before, the kernel answered every copy (to the replayer) and the copies
/// spent the endpoint's answer budget. Now the kernel answers only frames
/// from the MAC it would itself answer the endpoint at (its neighbour
/// entry): the copies are dropped and counted, none is answered, and the
/// endpoint's own keepalives are answered throughout. Copies of the
/// endpoint's own frame sent to another MAC (a promiscuous or bridged
/// port) are not the kernel's to answer either.
#[test]
fn a_replayed_keepalive_from_another_mac_is_neither_answered_nor_spends_the_endpoints_answers() {
    if !privileged(
        "a_replayed_keepalive_from_another_mac_is_neither_answered_nor_spends_the_endpoints_answers",
    ) {
        return;
    }
    let sc = scene();
    let quiet = sc.quiet_loss(Duration::from_secs(5));
    let before = sc.read();
    let answered = r#"h323proxy_fastpath_keepalives_total{outcome="answered"}"#;
    let (sent, answers_to_replayer) = sc.attack("keepalive replay", |until| {
        let raw = RawLink::open("ep0");
        // An endpoint's keepalive as it leaves the host (bounded wait).
        let frame = raw
            .capture(Duration::from_secs(10), |f| {
                f.len() > 42
                    && f[12..14] == [0x08, 0x00]
                    && f[23] == 17
                    && f[26..30] == proxy_lab::topology::EP.octets()
                    && f[36..38] == 1719u16.to_be_bytes()
                    && f[42] & 0xfe == 0x0e
            })
            .expect("no endpoint keepalive seen on ep0");
        let mut copy = frame.clone();
        copy[6..12].copy_from_slice(&REPLAYER_MAC);
        // And the endpoint's own frame sent to another host's MAC (what a
        // promiscuous or bridged port would see): not the kernel's to answer.
        let mut misdirected = frame.clone();
        misdirected[0..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x77]);
        let (mut sent, mut answers) = (0u64, 0u64);
        while Instant::now() < until && sent < 5_000 {
            raw.send(&copy);
            raw.send(&misdirected);
            sent += 1;
            // Anything addressed back to the replayer's MAC is an answer.
            answers += raw.drain(|f| f.len() > 14 && f[0..6] == REPLAYER_MAC);
            std::thread::sleep(Duration::from_millis(50));
        }
        answers += raw.drain(|f| f.len() > 14 && f[0..6] == REPLAYER_MAC);
        (sent, answers)
    });
    let after = sc.verdict(
        "keepalive replay",
        &before,
        quiet,
        r#"h323proxy_fastpath_keepalives_total{outcome="source_mac_mismatch"}"#,
        4,
        8 * 1024,
    );
    let dropped = after.grew(
        &before,
        r#"h323proxy_fastpath_keepalives_total{outcome="source_mac_mismatch"}"#,
    );
    let kernel_answers = after.grew(&before, answered);
    let not_ours = r#"h323proxy_fastpath_keepalives_total{outcome="not_our_mac"}"#;
    let not_ours = after.grew(&before, not_ours);
    eprintln!(
        "keepalive replay: {sent} copies sent, {dropped} dropped as source_mac_mismatch, {answers_to_replayer} answered to the replayer; {sent} copies to another MAC, {not_ours} left to the stack as not_our_mac; the kernel answered the endpoints {kernel_answers} times meanwhile"
    );
    assert_eq!(
        not_ours, sent,
        "frames to another MAC not answered in the kernel"
    );
    assert!(sent > 500, "the replay was not sent: {sent}");
    assert_eq!(answers_to_replayer, 0, "the replayer was answered");
    assert_eq!(dropped, sent, "every copy dropped in the kernel");
    assert!(
        kernel_answers > 0,
        "the endpoints' own keepalives were not answered in the kernel"
    );
}

/// The replaying host's MAC (locally administered).
const REPLAYER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x66];

/// An AF_PACKET socket on one interface: frames as they are on the wire,
/// both ways.
struct RawLink {
    fd: std::os::fd::OwnedFd,
    ifindex: i32,
}

impl RawLink {
    fn open(iface: &str) -> RawLink {
        use std::os::fd::FromRawFd;
        let proto = (libc::ETH_P_ALL as u16).to_be();
        // SAFETY: plain socket(2).
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(proto)) };
        assert!(
            fd >= 0,
            "AF_PACKET socket: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: a fresh descriptor we own.
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
        let name = std::ffi::CString::new(iface).unwrap();
        // SAFETY: NUL-terminated name.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) } as i32;
        assert!(ifindex > 0, "no interface {iface}");
        // SAFETY: sockaddr_ll is plain data.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = proto;
        sll.sll_ifindex = ifindex;
        use std::os::fd::AsRawFd;
        // SAFETY: bind with a sockaddr_ll of its size.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        assert_eq!(rc, 0, "bind: {}", std::io::Error::last_os_error());
        RawLink { fd, ifindex }
    }

    /// The next frame within `wait`, or `None` (MSG_DONTWAIT with a zero
    /// wait).
    fn recv(&self, wait: Duration) -> Option<Vec<u8>> {
        use std::os::fd::AsRawFd;
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one pollfd.
        if unsafe { libc::poll(&mut pfd, 1, wait.as_millis() as i32) } <= 0 {
            return None;
        }
        let mut buf = vec![0u8; 2048];
        // SAFETY: recv into our buffer.
        let n = unsafe {
            libc::recv(
                self.fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
            )
        };
        (n > 0).then(|| {
            buf.truncate(n as usize);
            buf
        })
    }

    /// The first frame matching `pred` within `wait`.
    fn capture(&self, wait: Duration, pred: impl Fn(&[u8]) -> bool) -> Option<Vec<u8>> {
        let until = Instant::now() + wait;
        while Instant::now() < until {
            if let Some(f) = self.recv(Duration::from_millis(100))
                && pred(&f)
            {
                return Some(f);
            }
        }
        None
    }

    /// Frames waiting now that match `pred` (bounded).
    fn drain(&self, pred: impl Fn(&[u8]) -> bool) -> u64 {
        let mut n = 0;
        for _ in 0..10_000 {
            let Some(f) = self.recv(Duration::ZERO) else {
                break;
            };
            n += u64::from(pred(&f));
        }
        n
    }

    fn send(&self, frame: &[u8]) {
        use std::os::fd::AsRawFd;
        // SAFETY: sockaddr_ll is plain data.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_ifindex = self.ifindex;
        sll.sll_halen = 6;
        sll.sll_addr[..6].copy_from_slice(&frame[0..6]);
        // SAFETY: sendto with our buffer and a sockaddr_ll of its size.
        let rc = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        assert!(rc > 0, "send: {}", std::io::Error::last_os_error());
    }
}

/// An ICMP destination unreachable (port) quoting a UDP datagram from
/// `from` to `to`.
fn port_unreachable(from: SocketAddr, to: SocketAddr) -> Vec<u8> {
    let (SocketAddr::V4(f), SocketAddr::V4(t)) = (from, to) else {
        panic!("IPv4 only")
    };
    let mut ip = vec![0x45, 0, 0, 28 + 64, 0x12, 0x34, 0, 0, 64, 17, 0, 0];
    ip.extend_from_slice(&f.ip().octets());
    ip.extend_from_slice(&t.ip().octets());
    let c = proxy_lab::frame::checksum(&[&ip]);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let mut udp = Vec::new();
    udp.extend_from_slice(&f.port().to_be_bytes());
    udp.extend_from_slice(&t.port().to_be_bytes());
    udp.extend_from_slice(&(8u16 + 64).to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    let mut m = vec![3, 3, 0, 0, 0, 0, 0, 0];
    m.extend_from_slice(&ip);
    m.extend_from_slice(&udp);
    let c = proxy_lab::frame::checksum(&[&m]);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    m
}

/// The signalling loop: a LAN host registers a number with the proxy's
/// own call signalling address as its own, then calls that number; twice a
/// second for 60 s, naming in turn the proxy's endpoint-side and
/// gatekeeper-side addresses, loopback, unspecified, broadcast and
/// multicast ones. Before, the proxy accepted the RRQ and then called
/// itself until its descriptors ran out (one RRQ and one SETUP: 1,024
/// descriptors in 5 s, two million log lines, no answer). Now every RRQ is
/// refused (`bad_address`), every SETUP is released with cause 3 (no
/// route), and nothing else moves.
#[test]
fn an_endpoint_naming_the_proxys_own_address_cannot_make_it_call_itself() {
    if !privileged("an_endpoint_naming_the_proxys_own_address_cannot_make_it_call_itself") {
        return;
    }
    let sc = scene();
    let quiet = sc.quiet_loss(Duration::from_secs(5));
    let before = sc.read();
    // The SETUP calls 8000000, the number the RRQs claim.
    let setup = setup_with_destinations(1);
    let (rrqs, rrjs, setups, released) = sc.attack("signalling loop", move |until| {
        use proxy_user::h225::ras::{RasMessage, decode, encode};
        use proxy_user::h225::value::{ras_from_json, transport_json};
        use std::io::{Read, Write};
        let bad: [Ipv4Addr; 6] = [
            PX_EP,
            PX_GK,
            Ipv4Addr::LOCALHOST,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::new(198, 18, 1, 255),
            Ipv4Addr::new(224, 0, 0, 1),
        ];
        let s = std::net::UdpSocket::bind((ATTACKER, 0)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let me = s.local_addr().unwrap();
        let (mut rrqs, mut rrjs, mut setups, mut released) = (0u64, 0u64, 0u64, 0u64);
        let mut buf = [0u8; 2048];
        let mut i = 0usize;
        while Instant::now() < until && rrqs < 200 {
            let tick = Instant::now();
            let own = SocketAddr::from((bad[i % bad.len()], 1720));
            i += 1;
            let v = serde_json::json!({"registrationRequest": {"requestSeqNum": i,
                "protocolIdentifier": proxy_user::h225::PROTOCOL_ID, "discoveryComplete": true,
                "callSignalAddress": [transport_json(own)],
                "rasAddress": [transport_json(me)],
                "terminalType": {"terminal": {}, "mc": false, "undefinedNode": false},
                "terminalAlias": [{"h323-ID": "mallory"}, {"dialledDigits": "8000000"}],
                "endpointVendor": {"vendor": {"t35CountryCode": 181, "t35Extension": 0, "manufacturerCode": 18}},
                "timeToLive": 60, "keepAlive": false}});
            s.send_to(&encode(&ras_from_json(&v).unwrap()).unwrap(), (PX_EP, 1719))
                .unwrap();
            rrqs += 1;
            if let Ok(n) = s.recv(&mut buf)
                && let Ok(RasMessage::registrationReject(rrj)) = decode(&buf[..n])
                && format!("{:?}", rrj.reject_reason).contains("invalidCallSignalAddress")
            {
                rrjs += 1;
            }
            let c = socket2::Socket::new(
                socket2::Domain::IPV4,
                socket2::Type::STREAM,
                Some(socket2::Protocol::TCP),
            )
            .unwrap();
            c.bind(&SocketAddr::from((ATTACKER, 0)).into()).unwrap();
            if c.connect_timeout(&SocketAddr::from((PX_EP, 1720)).into(), Duration::from_secs(2))
                .is_ok()
            {
                let mut t: std::net::TcpStream = c.into();
                t.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let mut v = vec![3u8, 0];
                v.extend_from_slice(&((setup.len() + 4) as u16).to_be_bytes());
                v.extend_from_slice(&setup);
                if t.write_all(&v).is_ok() {
                    setups += 1;
                    let mut got = Vec::new();
                    let _ = t.read_to_end(&mut got);
                    let m = (got.len() > 4)
                        .then(|| proxy_user::q931::Message::decode(&got[4..]).ok())
                        .flatten();
                    let what = m.as_ref().map(|m| {
                        (m.message_type, m.cause().and_then(|c| c.ok()).map(|c| c.value))
                    });
                    if what == Some((proxy_user::q931::msg::RELEASE_COMPLETE, Some(3))) {
                        released += 1;
                    } else {
                        eprintln!("signalling loop: SETUP {setups} answered with {what:?} ({} bytes)", got.len());
                    }
                }
            }
            if let Some(rest) = Duration::from_millis(500).checked_sub(tick.elapsed()) {
                std::thread::sleep(rest);
            }
        }
        (rrqs, rrjs, setups, released)
    });
    let after = sc.verdict(
        "signalling loop",
        &before,
        quiet,
        r#"h323proxy_ras_refused_total{reason="bad_address"}"#,
        4,
        8 * 1024,
    );
    let bad = after.grew(
        &before,
        r#"h323proxy_ras_refused_total{reason="bad_address"}"#,
    );
    eprintln!(
        "signalling loop: {rrqs} RRQs naming bad addresses, {rrjs} RRJ invalidCallSignalAddress, {bad} counted bad_address; {setups} SETUPs to the claimed number, {released} released with cause 3"
    );
    assert!(rrqs > 100, "the RRQs were not sent: {rrqs}");
    let warnings = || {
        sc.proxy
            .log_text()
            .lines()
            .filter(|l| {
                l.contains("WARN")
                    || l.contains("8000000")
                    || l.contains("SETUP")
                    || l.contains("call")
            })
            .take(60)
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(rrjs, rrqs, "every RRQ refused\n{}", warnings());
    assert_eq!(bad, rrqs, "every RRQ counted as bad_address");
    assert_eq!(setups, rrqs, "every SETUP sent");
    assert_eq!(
        released,
        setups,
        "every SETUP released with cause 3\n{}",
        warnings()
    );
}

/// Hostile LAN, the alias hijack: with no gatekeeper, the proxy is the
/// gatekeeper, and a host on the LAN registering a live endpoint's number
/// from another address is refused (RRJ duplicateAlias); calls to that
/// number still reach its owner, never the claimant.
#[test]
fn in_survivable_mode_a_lan_host_cannot_take_a_live_endpoints_number() {
    if !privileged("in_survivable_mode_a_lan_host_cannot_take_a_live_endpoints_number") {
        return;
    }
    let mut sc = scene();
    sc.gk1.kill9();
    sc.gk2.kill9();
    assert!(
        sc.proxy.wait_log(10, |l| l.contains("control moved")
            && l.contains("to=\"survivable\"")),
        "no survivable mode:\n{}",
        sc.proxy.log_text()
    );
    let quiet = sc.quiet_loss(Duration::from_secs(5));
    let before = sc.read();
    // Twice a second, a claim on one of the four live endpoints' numbers
    // (and h323-IDs), with the claimant's own call signalling address,
    // where a SETUP would arrive were a claim accepted.
    let (claims, duplicate, accepted) = sc.attack("alias hijack", |until| {
        use proxy_user::h225::alias::Alias;
        use proxy_user::h225::asn::h323_messages::RegistrationRejectReason;
        use proxy_user::h225::ras::{RasMessage, decode, encode};
        use proxy_user::h225::value::{ras_from_json, transport_json};
        let cs = SocketAddr::from((ATTACKER, 41720));
        let l = std::net::TcpListener::bind(cs).unwrap();
        l.set_nonblocking(true).unwrap();
        let s = std::net::UdpSocket::bind((ATTACKER, 41719)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let (mut claims, mut duplicate, mut accepted) = (0u64, 0u64, 0u64);
        let mut buf = [0u8; 2048];
        while Instant::now() < until && claims < 200 {
            let tick = Instant::now();
            let number = format!("{}", 1001 + claims % 4);
            let v = serde_json::json!({"registrationRequest": {"requestSeqNum": claims + 1,
                "protocolIdentifier": proxy_user::h225::PROTOCOL_ID, "discoveryComplete": true,
                "callSignalAddress": [transport_json(cs)],
                "rasAddress": [transport_json(s.local_addr().unwrap())],
                "terminalType": {"terminal": {}, "mc": false, "undefinedNode": false},
                "terminalAlias": [{"dialledDigits": number}],
                "endpointVendor": {"vendor": {"t35CountryCode": 181, "t35Extension": 0, "manufacturerCode": 18}},
                "timeToLive": 60, "keepAlive": false}});
            s.send_to(&encode(&ras_from_json(&v).unwrap()).unwrap(), (PX_EP, 1719))
                .unwrap();
            claims += 1;
            match s.recv(&mut buf).ok().map(|n| decode(&buf[..n])) {
                Some(Ok(RasMessage::registrationReject(rrj))) => {
                    if let RegistrationRejectReason::duplicateAlias(taken) = &rrj.reject_reason
                        && taken.iter().map(Alias::of).eq([Alias::E164(number)])
                    {
                        duplicate += 1;
                    }
                }
                Some(Ok(RasMessage::registrationConfirm(_))) => accepted += 1,
                _ => {}
            }
            if let Some(rest) = Duration::from_millis(500).checked_sub(tick.elapsed()) {
                std::thread::sleep(rest);
            }
        }
        // Nothing was routed to the claimant.
        assert!(l.accept().is_err(), "a SETUP went to the claimant");
        (claims, duplicate, accepted)
    });
    let after = sc.read();
    let duplicates = after.grew(
        &before,
        r#"h323proxy_ras_refused_total{reason="alias_taken"}"#,
    );
    eprintln!(
        "alias hijack in survivable mode: {claims} claims on live numbers, {duplicate} RRJ duplicateAlias naming the number ({duplicates} counted), {accepted} accepted; {} registrations, {} calls up",
        metric(&after.metrics, "h323proxy_registrations"),
        get(&after.status, "calls_active")
    );
    assert!(claims > 100, "the claims were not sent: {claims}");
    assert_eq!(accepted, 0, "a claim was accepted");
    assert_eq!(duplicate, claims, "every claim refused with duplicateAlias");
    assert_eq!(duplicates, claims, "every claim counted");
    assert_eq!(get(&after.status, "registered"), 4, "{}", after.status);
    sc.undisturbed("alias hijack", &before, &after, quiet);
    assert_eq!(metric(&after.metrics, "h323proxy_registrations"), 4);
}

/// Restart gaps. The saved table holds full RRQs (H.235 tokens included):
/// it is 0600, and a link planted where its temporary file goes is not
/// followed. After a SIGKILL and a restart without the table (lost or
/// corrupt), the kernel entries of the endpoints the daemon no longer
/// knows are removed: their keepalives reach the daemon (and are told to
/// register again) instead of being answered in the kernel for nobody.
#[test]
fn the_saved_table_is_private_and_a_restart_without_it_leaves_no_stale_kernel_answers() {
    if !privileged(
        "the_saved_table_is_private_and_a_restart_without_it_leaves_no_stale_kernel_answers",
    ) {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let lab = Lab::create().unwrap();
    let _gk1 = gatekeeper(&lab.gk1, GK1, "GK-A", Some(GK2));
    let _gk2 = gatekeeper(&lab.gk2, GK2, "GK-B", None);
    let mut proxy = Proxy::start_fast_steady(&lab, 5000);
    let eps = endpoints(&lab, PX_EP, 4, 0);
    wait_status(&eps, 20, |l| get(l, "registered") == 4);
    let table = proxy.dir.path().join(format!("{}.json", proxy.instance));
    assert!(
        proxy_tests::wait_for(10, || table.exists().then_some(())).is_some(),
        "no saved table"
    );
    let mode = std::fs::metadata(&table).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the saved table is {mode:o}");
    // A link where the temporary file goes, to a file the daemon must not
    // write; then a change (a fifth endpoint) makes it save again.
    let victim = proxy.dir.path().join("victim");
    std::fs::write(&victim, "untouched").unwrap();
    std::os::unix::fs::symlink(&victim, table.with_extension("json.tmp")).unwrap();
    let before = std::fs::metadata(&table).unwrap().modified().unwrap();
    let more = endpoints_with(
        &lab,
        PX_EP,
        1,
        0,
        &["--first-number", "3001", "--base-port", "45000"],
    );
    wait_status(&more, 20, |l| get(l, "registered") == 1);
    assert!(
        proxy_tests::wait_for(10, || {
            (std::fs::metadata(&table).ok()?.modified().ok()? > before).then_some(())
        })
        .is_some(),
        "the table was not saved again"
    );
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "untouched");
    let mode = std::fs::metadata(&table).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // The kernel answers the five now.
    assert!(
        proxy.kernel_answers(20),
        "the kernel never answered:\n{}",
        proxy.log_text()
    );
    // SIGKILL, the table lost, a restart.
    proxy.proc.kill9();
    std::fs::remove_file(&table).unwrap();
    proxy.kill_and_restart(&lab, Duration::from_secs(1));
    assert!(
        proxy.wait_log(10, |l| l
            .contains("kernel entries without a registration removed")
            && proxy_lab::process::field(l, "entries") == Some(5)),
        "stale kernel entries not removed:\n{}",
        proxy.log_text()
    );
    // Their keepalives now reach the daemon, which does not know them and
    // says so; they register in full again, through the proxy.
    let unknown = r#"h323proxy_ras_refused_total{reason="unknown_keepalive"}"#;
    assert!(
        proxy_tests::wait_for(20, || (metric(&scrape(&lab), unknown) > 0).then_some(())).is_some(),
        "the kernel still answers for endpoints the daemon does not know:\n{}",
        proxy.log_text()
    );
    assert!(
        proxy_tests::wait_for(30, || {
            (metric(&scrape(&lab), "h323proxy_registrations") == 5).then_some(())
        })
        .is_some(),
        "the endpoints did not register again:\n{}",
        scrape(&lab)
    );
    eprintln!(
        "restart without the table: 5 stale kernel entries removed, {} keepalives told to register, 5 registered again",
        metric(&scrape(&lab), unknown)
    );
}

/// The corpus SETUP with `n` destinationAddress aliases and the Called
/// party number 8000000 (numbers none of the lab's endpoints has).
fn setup_with_destinations(n: usize) -> Vec<u8> {
    use proxy_user::h225::asn::h323_messages::{AliasAddress, H323UUPDUH323MessageBody as Body};
    let setup = proxy_user::h225::corpus::build()
        .unwrap()
        .into_iter()
        .find(|e| e.name.to_lowercase().contains("setup"))
        .expect("SETUP in the corpus")
        .bytes;
    let mut q = proxy_user::q931::Message::decode(&setup).unwrap();
    let mut uu = proxy_user::h225::uuie::decode(q.user_user().unwrap().unwrap()).unwrap();
    let Body::setup(s) = &mut uu.h323_uu_pdu.h323_message_body else {
        panic!("not a SETUP")
    };
    s.destination_address = Some(
        (0..n)
            .map(|i| AliasAddress::dialledDigits(format!("8{i:06}").try_into().unwrap()))
            .collect(),
    );
    q.set_user_user(&proxy_user::h225::uuie::encode(&uu).unwrap());
    // The Called party number too (the corpus calls 1002, a lab endpoint).
    q.set_ie(
        proxy_user::q931::ie::CALLED_PARTY_NUMBER,
        proxy_user::q931::PartyNumber::e164("8000000").encode(),
    );
    q.encode().to_vec()
}

/// A SETUP naming thousands of destinations. Before, routing scanned every
/// registration's aliases for each, under the RAS relay's lock, and one
/// such SETUP stalled the RAS loop past the detection bound: a false
/// failover. Now routing is a hash lookup and only the first
/// `max_destinations` (16) are looked at. One host sends 10 such SETUPs a
/// second (5,000 destinations each, within its connection budget) for
/// 60 s: each is refused with cause 3 and nothing else moves.
#[test]
fn setups_naming_thousands_of_destinations_are_refused_cheaply_and_move_nothing() {
    if !privileged("setups_naming_thousands_of_destinations_are_refused_cheaply_and_move_nothing") {
        return;
    }
    use std::io::{Read, Write};
    let sc = scene();
    let setup = setup_with_destinations(5_000);
    let quiet = sc.quiet_loss(Duration::from_secs(5));
    let before = sc.read();
    let (sent, refused) = sc.attack("SETUPs with 5,000 destinations", move |until| {
        let mut frame = vec![3u8, 0];
        frame.extend_from_slice(&((setup.len() + 4) as u16).to_be_bytes());
        frame.extend_from_slice(&setup);
        let (mut sent, mut refused) = (0u64, 0u64);
        while Instant::now() < until && sent < 2_000 {
            let tick = Instant::now();
            let s =
                socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
            let _ = s.bind(&SocketAddr::from((ATTACKER, 0)).into());
            if s.connect_timeout(
                &SocketAddr::from((PX_EP, 1720)).into(),
                Duration::from_secs(1),
            )
            .is_ok()
            {
                let mut t: std::net::TcpStream = s.into();
                let _ = t.set_read_timeout(Some(Duration::from_secs(2)));
                if t.write_all(&frame).is_ok() {
                    sent += 1;
                    let mut got = Vec::new();
                    let _ = t.read_to_end(&mut got);
                    if got.len() > 4
                        && proxy_user::q931::Message::decode(&got[4..]).is_ok_and(|m| {
                            m.message_type == proxy_user::q931::msg::RELEASE_COMPLETE
                                && m.cause().and_then(|c| c.ok()).is_some_and(|c| c.value == 3)
                        })
                    {
                        refused += 1;
                    }
                }
            }
            if let Some(rest) = Duration::from_millis(100).checked_sub(tick.elapsed()) {
                std::thread::sleep(rest);
            }
        }
        (sent, refused)
    });
    sc.verdict(
        "SETUPs with 5,000 destinations",
        &before,
        quiet,
        r#"h323proxy_malformed_total{port="1720",reason="unroutable"}"#,
        16,
        32 * 1024,
    );
    eprintln!("SETUPs with 5,000 destinations: {sent} sent, {refused} refused with cause 3");
    assert!(sent > 300, "the SETUPs were not sent: {sent}");
    assert_eq!(refused, sent, "every one refused with cause 3 (no route)");
}

/// One host registering without end: 150 full RRQs a second (within its RAS
/// budget), each from a new port with its own number, every tenth with 100
/// aliases, for 60 s. Before, nothing bounded the registrations one address
/// could hold. Now it holds `max_registrations_per_source` (1,024) at most;
/// the rest get RRJ (resourceUnavailable, invalidAlias) and are counted.
#[test]
fn one_host_registering_without_end_holds_at_most_its_share() {
    if !privileged("one_host_registering_without_end_holds_at_most_its_share") {
        return;
    }
    use proxy_user::h225::value::{ras_from_json, transport_json};
    let sc = scene();
    let quiet = sc.quiet_loss(Duration::from_secs(5));
    let before = sc.read();
    let held_before = metric(&before.metrics, "h323proxy_registrations");
    let sent = sc.attack("registration flood", |until| {
        let mut sent = 0u64;
        let mut i = 0u32;
        while Instant::now() < until && sent < 20_000 {
            let tick = Instant::now();
            for _ in 0..15 {
                i += 1;
                let Ok(s) = std::net::UdpSocket::bind((ATTACKER, 0)) else {
                    continue;
                };
                let me = s.local_addr().unwrap();
                let mut aliases = vec![serde_json::json!({"dialledDigits": format!("7{i:06}")})];
                if i.is_multiple_of(10) {
                    aliases.extend((0..100).map(|k| serde_json::json!({"h323-ID": format!("m{i}-{k}")})));
                }
                let v = serde_json::json!({"registrationRequest": {"requestSeqNum": 1,
                    "protocolIdentifier": proxy_user::h225::PROTOCOL_ID, "discoveryComplete": true,
                    "callSignalAddress": [transport_json(SocketAddr::from((ATTACKER, 1720)))],
                    "rasAddress": [transport_json(me)],
                    "terminalType": {"terminal": {}, "mc": false, "undefinedNode": false},
                    "terminalAlias": aliases,
                    "endpointVendor": {"vendor": {"t35CountryCode": 181, "t35Extension": 0, "manufacturerCode": 18}},
                    "timeToLive": 300, "keepAlive": false}});
                let rrq = proxy_user::h225::ras::encode(&ras_from_json(&v).unwrap()).unwrap();
                if s.send_to(&rrq, (PX_EP, 1719)).is_ok() {
                    sent += 1;
                }
            }
            if let Some(rest) = Duration::from_millis(100).checked_sub(tick.elapsed()) {
                std::thread::sleep(rest);
            }
        }
        sent
    });
    let after = sc.verdict(
        "registration flood",
        &before,
        quiet,
        r#"h323proxy_ras_refused_total{reason="registration_limit"}"#,
        8,
        64 * 1024,
    );
    let held = metric(&after.metrics, "h323proxy_registrations");
    let too_many = metric(
        &after.metrics,
        r#"h323proxy_ras_refused_total{reason="too_many_aliases"}"#,
    );
    eprintln!(
        "registration flood: {sent} RRQs sent; registrations {held_before} -> {held}; {too_many} refused for too many aliases"
    );
    assert!(sent > 5_000, "the RRQs were not sent: {sent}");
    assert!(
        held <= held_before + 1024,
        "{held} registrations: one address holds more than its 1,024"
    );
    // Its registrations lapse without keepalives (1.5 × timeToLive) and
    // it registers more: near its share, never past it.
    assert!(
        held > held_before + 500,
        "the flood did not register: {held}"
    );
    assert!(too_many > 0, "RRQs with 100 aliases were not refused");
}

/// LRQs from a host that is not registered: 150 a second for 60 s. Before,
/// every one was forwarded to the gatekeeper in control. Now each gets LRJ
/// notRegistered from the proxy and none reaches the gatekeeper.
#[test]
fn lrqs_from_a_host_that_is_not_registered_never_reach_the_gatekeeper() {
    if !privileged("lrqs_from_a_host_that_is_not_registered_never_reach_the_gatekeeper") {
        return;
    }
    use proxy_user::h225::value::{ras_from_json, transport_json};
    let sc = scene();
    let quiet = sc.quiet_loss(Duration::from_secs(5));
    let before = sc.read();
    let (sent, lrjs) = sc.attack("LRQ flood", |until| {
        let s = std::net::UdpSocket::bind((ATTACKER, 0)).unwrap();
        s.set_nonblocking(true).unwrap();
        let me = s.local_addr().unwrap();
        let (mut sent, mut lrjs) = (0u64, 0u64);
        let mut buf = [0u8; 2048];
        let mut seq = 0u16;
        while Instant::now() < until && sent < 20_000 {
            let tick = Instant::now();
            for _ in 0..15 {
                seq = seq % 60_000 + 1;
                let v = serde_json::json!({"locationRequest": {"requestSeqNum": seq,
                    "destinationInfo": [{"dialledDigits": "1002"}], "replyAddress": transport_json(me)}});
                let lrq = proxy_user::h225::ras::encode(&ras_from_json(&v).unwrap()).unwrap();
                if s.send_to(&lrq, (PX_EP, 1719)).is_ok() {
                    sent += 1;
                }
            }
            while let Ok(n) = s.recv(&mut buf) {
                if matches!(
                    proxy_user::h225::ras::decode(&buf[..n]),
                    Ok(proxy_user::h225::ras::RasMessage::locationReject(_))
                ) {
                    lrjs += 1;
                }
            }
            if let Some(rest) = Duration::from_millis(100).checked_sub(tick.elapsed()) {
                std::thread::sleep(rest);
            }
        }
        (sent, lrjs)
    });
    let after = sc.verdict(
        "LRQ flood",
        &before,
        quiet,
        r#"h323proxy_ras_refused_total{reason="unregistered"}"#,
        4,
        16 * 1024,
    );
    let forwarded = after.grew(&before, "h323proxy_ras_forwarded_total");
    eprintln!(
        "LRQ flood: {sent} LRQs sent, {lrjs} LRJs received, {forwarded} requests forwarded to the gatekeeper meanwhile"
    );
    assert!(sent > 5_000, "the LRQs were not sent: {sent}");
    assert!(lrjs * 10 >= sent * 9, "{lrjs} LRJs for {sent} LRQs");
    assert!(
        forwarded < sent / 100,
        "{forwarded} requests forwarded while {sent} LRQs came"
    );
}

/// The proxy's socket connected to the primary gatekeeper's RAS address
/// (where its replies arrive), from `ss` in the proxy's namespace.
fn primary_ras_socket(sc: &Scene) -> SocketAddr {
    let out = sc
        .lab
        .px
        .command("ss")
        .unwrap()
        .args(["-Hnu", "state", "connected", "dst", &format!("{GK1}:1719")])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .find_map(|w| w.parse().ok().filter(|a: &SocketAddr| a.ip() == PX_GK))
        .unwrap_or_else(|| panic!("no socket to the primary in ss output: {text:?}"))
}

/// An interface's MAC in the proxy's namespace (`ip -o link`; sysfs is not
/// the namespace's own under setns).
fn proxy_mac(sc: &Scene, iface: &str) -> [u8; 6] {
    let out = sc
        .lab
        .px
        .command("ip")
        .unwrap()
        .args(["-o", "link", "show", iface])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let hex = text
        .split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .unwrap_or_else(|| panic!("no MAC for {iface} in {text:?}"));
    let mut mac = [0u8; 6];
    for (b, h) in mac.iter_mut().zip(hex.split(':')) {
        *b = u8::from_str_radix(h, 16).unwrap();
    }
    mac
}

/// A registrationConfirm as the primary would send it, with sequence
/// number `seq`.
fn forged_rcf(seq: u16) -> Vec<u8> {
    use proxy_user::h225::value::ras_from_json;
    let v = serde_json::json!({"registrationConfirm": {"requestSeqNum": seq,
        "protocolIdentifier": proxy_user::h225::PROTOCOL_ID, "callSignalAddress": [],
        "gatekeeperIdentifier": "GK-A", "endpointIdentifier": "LAB-PROXY", "timeToLive": 60}});
    proxy_user::h225::ras::encode(&ras_from_json(&v).unwrap()).unwrap()
}

/// Forged gatekeeper replies: a LAN host sends registrationConfirms with
/// the primary's address and port to the proxy's socket for it, cycling
/// through every sequence number (so some match the heartbeat's pending
/// probe, which its random start and stride alone would not prevent), 60 s
/// long. 20 s in, the primary's link is cut for real. The forgeries must
/// keep neither a dead gatekeeper alive nor disturb a live one: the kernel
/// drops every one of them (`spoofed_gatekeeper`: the route back to the
/// primary does not leave by the LAN port they came in on, nor, once the
/// link is down, by any port), the cut is detected and failed over exactly
/// once, and the endpoints notice nothing.
#[test]
fn forged_gatekeeper_replies_from_the_lan_neither_hide_a_real_loss_nor_reach_the_heartbeat() {
    if !privileged(
        "forged_gatekeeper_replies_from_the_lan_neither_hide_a_real_loss_nor_reach_the_heartbeat",
    ) {
        return;
    }
    let sc = scene();
    let target = primary_ras_socket(&sc);
    let px0 = proxy_mac(&sc, "px0");
    let quiet = sc.quiet_loss(Duration::from_secs(5));
    let before = sc.read();
    let spoofed = r#"h323proxy_fastpath_keepalives_total{outcome="spoofed_gatekeeper"}"#;
    let template = forged_rcf(0x1235);
    // Where requestSeqNum lies: it is encoded as seq - 1.
    let at = template
        .windows(2)
        .position(|w| w == [0x12, 0x34])
        .expect("requestSeqNum in the encoded RCF");
    // The cut, 20 s into the attack, from the proxy's namespace.
    let (sent, cut_at) = std::thread::scope(|s| {
        let cut = s.spawn(|| {
            std::thread::sleep(Duration::from_secs(20));
            sc.lab.px.ip(&["link", "set", "px1", "down"]).unwrap();
            Instant::now()
        });
        let sent = sc.attack("forged gatekeeper replies", move |until| {
            let raw = RawLink::open("ep0");
            let frame = proxy_lab::frame::Frame {
                dst_mac: px0,
                src_mac: REPLAYER_MAC,
                tags: Vec::new(),
                ttl: 64,
                tos: 0,
            };
            let from = SocketAddr::from((GK1, 1719));
            let mut payload = template.clone();
            let (mut sent, mut seq) = (0u64, 1u16);
            // 200 forgeries every 10 ms: every sequence number in 3.3 s.
            while Instant::now() < until && sent < 2_000_000 {
                let tick = Instant::now();
                for _ in 0..200 {
                    payload[at..at + 2].copy_from_slice(&(seq - 1).to_be_bytes());
                    raw.send(&frame.udp(from, target, &payload));
                    sent += 1;
                    seq = if seq == u16::MAX { 1 } else { seq + 1 };
                }
                if let Some(rest) = Duration::from_millis(10).checked_sub(tick.elapsed()) {
                    std::thread::sleep(rest);
                }
            }
            sent
        });
        (sent, cut.join().expect("the cut"))
    });
    let after = sc.read();
    let log = || sc.proxy.log_text();
    let dropped = after.grew(&before, spoofed);
    eprintln!(
        "forged gatekeeper replies: {sent} sent, {dropped} dropped in the kernel as spoofed_gatekeeper; the primary's link cut {:?} before the end",
        cut_at.elapsed()
    );
    assert!(sent > 100_000, "the forgeries were not sent: {sent}");
    assert_eq!(
        dropped,
        sent,
        "every forgery dropped in the kernel\n{}",
        log()
    );
    assert_eq!(
        after.grew(&before, "h323proxy_failovers_total"),
        1,
        "the real loss was failed over exactly once\n{}",
        log()
    );
    assert_eq!(
        metric(
            &after.metrics,
            r#"h323proxy_gatekeeper_state{gatekeeper="primary",state="down"}"#
        ),
        1,
        "the cut primary is down\n{}",
        log()
    );
    sc.undisturbed("forged gatekeeper replies", &before, &after, quiet);
}

/// The H.245 race: the callers are slow to open their calls' H.245
/// channels (20 s after CONNECT), and meanwhile a LAN host scans the
/// proxy's endpoint-side address for listeners (every port of the
/// ephemeral range, again and again for 60 s), connects to each, and sends
/// an H.245 message. Before, the relay spliced the first connection to
/// reach its listener, from anyone: the stranger would have had the call's
/// H.245 channel. Now a connection from another address than the peer the
/// h245Address was sent to is closed and counted, and the real callers'
/// channels, opened late, carry their echo end to end.
#[test]
fn a_lan_host_racing_for_a_calls_h245_channel_is_turned_away() {
    if !privileged("a_lan_host_racing_for_a_calls_h245_channel_is_turned_away") {
        return;
    }
    let sc = scene_with(&["--h245", "--h245-delay-ms", "20000"]);
    let quiet = sc.quiet_loss(Duration::from_secs(2));
    let before = sc.read();
    assert_eq!(get(&before.status, "h245_ok"), 0, "{}", before.status);
    let (listeners, echoed) = sc.attack("H.245 race", |until| {
        use std::io::{Read, Write};
        let mut found = std::collections::BTreeSet::new();
        let mut echoed = 0u64;
        // An H.245 TPKT (what the lab endpoints echo).
        let msg = [3u8, 0, 0, 8, 0x20, 0x45, 0x23, 0x45];
        let (low, high) = (32_768u16, 60_999u16);
        let mut scans = 0;
        while Instant::now() < until && scans < 30 {
            scans += 1;
            for port in low..=high {
                let to = SocketAddr::from((PX_EP, port));
                let s = socket2::Socket::new(
                    socket2::Domain::IPV4,
                    socket2::Type::STREAM,
                    Some(socket2::Protocol::TCP),
                )
                .unwrap();
                s.bind(&SocketAddr::from((ATTACKER, 0)).into()).unwrap();
                if s.connect_timeout(&to.into(), Duration::from_millis(200))
                    .is_err()
                {
                    continue;
                }
                found.insert(port);
                let mut t: std::net::TcpStream = s.into();
                let _ = t.set_read_timeout(Some(Duration::from_secs(1)));
                let _ = t.write_all(&msg);
                let mut back = [0u8; 8];
                if t.read_exact(&mut back).is_ok() && back == msg {
                    echoed += 1;
                }
            }
            std::thread::sleep(Duration::from_secs(2));
        }
        (found, echoed)
    });
    let after = sc.verdict(
        "H.245 race",
        &before,
        quiet,
        r#"h323proxy_refused_total{port="h245",reason="stranger"}"#,
        8,
        8 * 1024,
    );
    let turned_away = after.grew(
        &before,
        r#"h323proxy_refused_total{port="h245",reason="stranger"}"#,
    );
    eprintln!(
        "H.245 race: listeners found at {listeners:?}, {turned_away} connections turned away, {echoed} echoes to the stranger; the callers' own channels echoed {} times",
        get(&after.status, "h245_ok")
    );
    assert!(
        !listeners.is_empty(),
        "the scan found no H.245 listener: it proves nothing"
    );
    assert_eq!(echoed, 0, "the stranger got an H.245 channel");
    assert_eq!(
        get(&after.status, "h245_ok"),
        2,
        "the callers' own H.245 channels: {}",
        after.status
    );
}

/// The pending-table flood against a slow gatekeeper: the primary answers
/// every RAS request 400 ms late, and a LAN host that registered (so its
/// LRQs are forwarded) sends 1,000 LRQs a second for 60 s. Before, its
/// requests waiting at the gatekeeper filled the table the heartbeat's
/// probes and the bindings' refreshes need: bindings lapsed and a healthy
/// gatekeeper was declared down. Now its budget (200/s) and its share of
/// requests outstanding (64) bound what it has waiting, the proxy's own
/// requests have numbers kept for them, and the heartbeat goes on.
#[test]
fn a_flood_of_forwarded_requests_to_a_slow_gatekeeper_does_not_crowd_out_the_heartbeat() {
    if !privileged(
        "a_flood_of_forwarded_requests_to_a_slow_gatekeeper_does_not_crowd_out_the_heartbeat",
    ) {
        return;
    }
    let sc = scene_full(&["--reply-delay-ms", "400"], &[]);
    let quiet = sc.quiet_loss(Duration::from_secs(5));
    let before = sc.read();
    let (sent, answers) = sc.attack("LRQs to a slow gatekeeper", |until| {
        use proxy_user::h225::ras::{RasMessage, decode, encode};
        use proxy_user::h225::value::{ras_from_json, transport_json};
        let s = std::net::UdpSocket::bind((ATTACKER, 0)).unwrap();
        let me = s.local_addr().unwrap();
        let v = serde_json::json!({"registrationRequest": {"requestSeqNum": 1,
            "protocolIdentifier": proxy_user::h225::PROTOCOL_ID, "discoveryComplete": true,
            "callSignalAddress": [transport_json(SocketAddr::from((ATTACKER, 1720)))],
            "rasAddress": [transport_json(me)],
            "terminalType": {"terminal": {}, "mc": false, "undefinedNode": false},
            "terminalAlias": [{"dialledDigits": "6666"}],
            "endpointVendor": {"vendor": {"t35CountryCode": 181, "t35Extension": 0, "manufacturerCode": 18}},
            "timeToLive": 300, "keepAlive": false}});
        s.send_to(&encode(&ras_from_json(&v).unwrap()).unwrap(), (PX_EP, 1719))
            .unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 2048];
        let n = s.recv(&mut buf).expect("an answer to the attacker's RRQ");
        let Ok(RasMessage::registrationConfirm(rcf)) = decode(&buf[..n]) else {
            panic!("the attacker's RRQ was not confirmed: {:?}", decode(&buf[..n]));
        };
        let id = String::from_utf16_lossy(&rcf.endpoint_identifier.0);
        s.set_nonblocking(true).unwrap();
        let (mut sent, mut answers, mut seq) = (0u64, 0u64, 1u16);
        // 10 LRQs every 10 ms, for numbers nobody has.
        while Instant::now() < until && sent < 100_000 {
            let tick = Instant::now();
            for _ in 0..10 {
                seq = seq % 60_000 + 1;
                let v = serde_json::json!({"locationRequest": {"requestSeqNum": seq,
                    "endpointIdentifier": id,
                    "destinationInfo": [{"dialledDigits": format!("55{seq}")}], "replyAddress": transport_json(me)}});
                if s.send_to(&encode(&ras_from_json(&v).unwrap()).unwrap(), (PX_EP, 1719)).is_ok() {
                    sent += 1;
                }
            }
            while let Ok(n) = s.recv(&mut buf) {
                answers += u64::from(n > 0);
            }
            if let Some(rest) = Duration::from_millis(10).checked_sub(tick.elapsed()) {
                std::thread::sleep(rest);
            }
        }
        (sent, answers)
    });
    let after = sc.verdict(
        "LRQs to a slow gatekeeper",
        &before,
        quiet,
        r#"h323proxy_refused_total{port="1719",reason="outstanding"}"#,
        4,
        16 * 1024,
    );
    let outstanding = after.grew(
        &before,
        r#"h323proxy_refused_total{port="1719",reason="outstanding"}"#,
    );
    let rate = after.grew(
        &before,
        r#"h323proxy_refused_total{port="1719",reason="rate"}"#,
    );
    let forwarded = after.grew(&before, "h323proxy_ras_forwarded_total");
    eprintln!(
        "LRQs to a slow gatekeeper: {sent} sent, {answers} answers back; {rate} over the budget, {outstanding} refused with 64 waiting, {forwarded} forwarded"
    );
    assert!(sent > 30_000, "the LRQs were not sent: {sent}");
    // 200/s for the attack's length at most, plus the burst and the
    // proxy's own refreshes.
    assert!(
        forwarded > 1_000,
        "the LRQs were not forwarded: {forwarded}"
    );
}

/// A panic in a task ends the process (before, a panic in the RAS task
/// left the daemon running without RAS: listeners open, nobody served).
/// The daemon is started with a panic injected into its RAS task 15 s in:
/// it must exit with status 70 at once, the kernel must go on answering the
/// endpoints' keepalives while it is gone (none unanswered), and the
/// restart, as the supervisor would make it, must find the registrations
/// in the saved table without anyone registering again.
#[test]
fn a_panic_ends_the_daemon_and_the_kernel_answers_until_it_is_back() {
    if !privileged("a_panic_ends_the_daemon_and_the_kernel_answers_until_it_is_back") {
        return;
    }
    use proxy_user::fastpath::Counters;
    let lab = Lab::create().unwrap();
    let _gk1 = gatekeeper(&lab.gk1, GK1, "GK-A", Some(GK2));
    let _gk2 = gatekeeper(&lab.gk2, GK2, "GK-B", None);
    let mut proxy = Proxy::start_fast_steady(&lab, 5000);
    let eps = endpoints(&lab, PX_EP, 4, 0);
    wait_status(&eps, 20, |l| get(l, "registered") == 4);
    assert!(proxy.kernel_answers(20), "{}", proxy.log_text());
    let table = proxy.dir.path().join(format!("{}.json", proxy.instance));
    assert!(
        proxy_tests::wait_for(10, || table.exists().then_some(())).is_some(),
        "no saved table"
    );
    // The same daemon again, with the fault armed.
    proxy.proc.kill9();
    proxy.respawn(&lab, &[("H323PROXY_INJECT_PANIC_MS", "15000")]);
    assert!(
        proxy.wait_log(10, |l| l.contains("registration table restored")),
        "{}",
        proxy.log_text()
    );
    let start = status(&eps);
    let status_code = proxy_tests::wait_for(30, || proxy.proc.exited());
    let code = status_code.expect("the daemon did not exit after the panic");
    assert_eq!(code.code(), Some(70), "exit status {code:?}");
    let log = proxy.log_text();
    assert!(
        log.contains("injected fault") && log.contains("panic: exiting"),
        "the panic is not in the log:\n{log}"
    );
    // Down for 10 s: the pinned fast path answers for the daemon.
    let answered = |c: Counters| c.keepalive[proxy_common::ka_slot::ANSWERED as usize];
    let k0 = answered(Counters::from_pins(&proxy.instance).unwrap());
    std::thread::sleep(Duration::from_secs(10));
    let k1 = answered(Counters::from_pins(&proxy.instance).unwrap());
    let down = status(&eps);
    assert_eq!(
        get(&down, "keepalives_unanswered"),
        get(&start, "keepalives_unanswered"),
        "keepalives went unanswered while the daemon was down: {down}"
    );
    assert!(
        k1 > k0,
        "the kernel did not answer while the daemon was down"
    );
    // The supervisor's restart.
    proxy.respawn(&lab, &[]);
    assert!(
        proxy.wait_log(10, |l| l.contains("registration table restored")
            && proxy_lab::process::field(l, "registrations") == Some(4)),
        "{}",
        proxy.log_text()
    );
    std::thread::sleep(Duration::from_secs(5));
    let end = status(&eps);
    let full = "h323proxy_ras_forwarded_total";
    eprintln!(
        "panic: exit status 70; the kernel answered {} keepalives in the 10 s the daemon was down, none unanswered; the restart restored 4 registrations ({} requests forwarded since)",
        k1 - k0,
        metric(&scrape(&lab), full)
    );
    assert_eq!(
        get(&end, "keepalives_unanswered"),
        get(&start, "keepalives_unanswered"),
        "{end}"
    );
    assert_eq!(get(&end, "registered"), 4, "{end}");
    assert!(proxy.proc.exited().is_none(), "{}", proxy.log_text());
}
