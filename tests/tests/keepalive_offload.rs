//! Root tests of the keepalive fast path: the real `proxy` daemon on a veth
//! in a namespace pair learns an endpoint's keepalive, then XDP answers the
//! following ones (IPv4, VLAN-tagged IPv4, IPv6). The kernel's answers are
//! compared byte for byte with the userspace answers to the same requests,
//! decoded by tshark, and everything the kernel must not answer is counted
//! by reason and left to userspace.

use std::net::{SocketAddr, UdpSocket};
use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use proxy_common::ka_slot;
use proxy_lab::frame::{Frame, checksum};
use proxy_lab::netns::{Netns, unique_name, veth, xdp_peer_pass};
use proxy_lab::process::{metric, scrape};
use proxy_tests::{Child, bin, privileged, wait_for};
use proxy_user::fastpath::{Counters, set_answering};
use proxy_user::h225::corpus::{Entry, Kind};
use proxy_user::h225::ras::{self, RasMessage};
use proxy_user::h225::value::{bmp_text, ras_from_json, transport_json};
use serde_json::json;

const PROTOCOL_ID: &str = "0.0.8.2250.0.4";

use proxy_lab::fastbench::rrq;

fn keepalive(seq: u16, ras_addr: SocketAddr, id: &str) -> Vec<u8> {
    proxy_lab::fastbench::keepalive(seq, ras_addr, id, "OFFLOAD-PX")
}

/// Send and wait for one answer (None after 1 s).
fn ask(sock: &UdpSocket, to: SocketAddr, bytes: &[u8]) -> Option<Vec<u8>> {
    sock.send_to(bytes, to).unwrap();
    let mut buf = [0u8; 2048];
    match sock.recv_from(&mut buf) {
        Ok((n, from)) => {
            assert_eq!(from, to, "answer from the address asked");
            Some(buf[..n].to_vec())
        }
        Err(_) => None,
    }
}

fn rcf_seq(bytes: &[u8]) -> u16 {
    match ras::decode(bytes).expect("answer decodes") {
        RasMessage::registrationConfirm(rcf) => rcf.request_seq_num.0,
        other => panic!("RCF expected, got {other:?}"),
    }
}

/// Userspace keepalive answers, from the proxy's metrics.
fn userspace_keepalives(px: &Netns) -> f64 {
    let text = scrape(px, "127.0.0.1:9719").expect("metrics");
    metric(
        &text,
        "h323proxy_keepalives_answered_total{channel=\"ras\"}",
    )
    .unwrap_or(0.0)
}

struct Case {
    name: &'static str,
    /// Proxy's endpoint-side address, endpoint's address.
    proxy: &'static str,
    endpoint: &'static str,
}

fn start_proxy(px: &Netns, instance: &str, addr: &str, dir: &std::path::Path) -> Child {
    let cfg = dir.join(format!("{instance}.toml"));
    std::fs::write(
        &cfg,
        format!(
            "instance = \"{instance}\"\n[fastpath]\ninterfaces = [\"px0\"]\nstats_interval_secs = 1\nrate_per_second = 0\n\
             [proxy]\nid = \"OFFLOAD-PX\"\nendpoint_address = \"{addr}\"\ngatekeeper_address = \"127.0.0.2\"\n"
        ),
    )
    .unwrap();
    let mut child = Child(
        px.command(bin("proxy"))
            .unwrap()
            .args(["run", "--config"])
            .arg(&cfg)
            .stdout(Stdio::null())
            .spawn()
            .expect("start proxy"),
    );
    let ready = wait_for(20, || {
        if let Ok(Some(status)) = child.0.try_wait() {
            panic!("proxy exited during start-up: {status}");
        }
        Counters::from_pins(instance).ok()?;
        scrape(px, "127.0.0.1:9719").ok()
    });
    assert!(ready.is_some(), "proxy not up within 20 s");
    child
}

#[test]
fn xdp_answers_learned_keepalives_over_ipv4_vlan_and_ipv6() {
    if !privileged("xdp_answers_learned_keepalives_over_ipv4_vlan_and_ipv6") {
        return;
    }
    let px = Netns::create("px").unwrap();
    let ep = Netns::create("ep").unwrap();
    veth(&px, "px0", &ep, "ep0").unwrap();
    let _peer = xdp_peer_pass(&ep, "ep0").unwrap();
    px.ip(&["addr", "add", "198.18.0.1/24", "dev", "px0"])
        .unwrap();
    ep.ip(&["addr", "add", "198.18.0.2/24", "dev", "ep0"])
        .unwrap();
    // A second source address on the endpoint side, for spoofing.
    ep.ip(&["addr", "add", "198.18.0.3/24", "dev", "ep0"])
        .unwrap();
    // IPv6 in the benchmarking range 2001:2::/48 (RFC 5180), no DAD wait.
    px.ip(&["addr", "add", "2001:2::1/64", "dev", "px0", "nodad"])
        .unwrap();
    ep.ip(&["addr", "add", "2001:2::2/64", "dev", "ep0", "nodad"])
        .unwrap();
    let dir = tempfile::tempdir().unwrap();

    let cases = [
        Case {
            name: "ipv4",
            proxy: "198.18.0.1",
            endpoint: "198.18.0.2",
        },
        Case {
            name: "ipv6",
            proxy: "2001:2::1",
            endpoint: "2001:2::2",
        },
    ];
    let mut kernel_answers: Vec<Vec<u8>> = Vec::new();
    for case in &cases {
        let instance = unique_name("ka");
        let mut proxy = start_proxy(&px, &instance, case.proxy, dir.path());
        let to: SocketAddr = SocketAddr::new(case.proxy.parse().unwrap(), 1719);
        let me: SocketAddr = SocketAddr::new(case.endpoint.parse().unwrap(), 40_000);
        let sock = ep.run(move || UdpSocket::bind(me)).unwrap().unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(1))).unwrap();

        // Register (survivable mode: no gatekeeper configured) and learn.
        let rcf = ask(&sock, to, &rrq(1, me, case.name)).expect("RCF to the full RRQ");
        let RasMessage::registrationConfirm(rcf) = ras::decode(&rcf).unwrap() else {
            panic!("{}: registration refused", case.name)
        };
        let id = bmp_text(&rcf.endpoint_identifier.0);
        let first = ask(&sock, to, &keepalive(2, me, &id)).expect("first keepalive answered");
        assert_eq!(rcf_seq(&first), 2);
        let learned = wait_for(5, || {
            let c = Counters::from_pins(&instance).ok()?;
            (c.endpoints == 1).then_some(())
        });
        assert!(
            learned.is_some(),
            "{}: keepalive never offloaded",
            case.name
        );
        let before = userspace_keepalives(&px);
        assert_eq!(
            before, 1.0,
            "{}: userspace answered the first one",
            case.name
        );

        // 50 keepalives: all answered by XDP, none seen by userspace.
        const N: u16 = 50;
        let mut kernel = Vec::new();
        for seq in 3..3 + N {
            let a = ask(&sock, to, &keepalive(seq, me, &id))
                .unwrap_or_else(|| panic!("{}: keepalive {seq} unanswered", case.name));
            assert_eq!(rcf_seq(&a), seq);
            kernel.push(a);
        }
        let c = Counters::from_pins(&instance).unwrap();
        assert_eq!(c.answered(), N as u64, "{}: kernel answers", case.name);
        assert_eq!(
            userspace_keepalives(&px),
            before,
            "{}: userspace saw none of them",
            case.name
        );

        // The same requests with kernel answering off: userspace answers,
        // and its bytes are the kernel's bytes.
        assert!(set_answering(&instance, false).unwrap());
        for (i, seq) in (3..3 + N).enumerate() {
            let a = ask(&sock, to, &keepalive(seq, me, &id)).expect("userspace answer");
            assert_eq!(a, kernel[i], "{}: seq {seq} differs", case.name);
        }
        assert_eq!(userspace_keepalives(&px), before + N as f64);
        assert_eq!(
            Counters::from_pins(&instance).unwrap().keepalive[ka_slot::OFF as usize],
            N as u64
        );
        set_answering(&instance, true).unwrap();

        if case.name == "ipv4" {
            refusals(&ep, &instance, to, me, &id, &sock);
            let frames = tagged_frames(&px, &ep, &instance, &sock, to, me, &id);
            tshark_checks_frames(&frames);
        }
        eprintln!(
            "{}: {} keepalives answered by XDP, byte-identical to userspace",
            case.name, N
        );
        kernel_answers.push(kernel[0].clone());
        assert!(proxy.terminate(10).is_some_and(|s| s.success()));
    }
    tshark_says_rcf(&kernel_answers);
}

fn mac(ns: &Netns, dev: &str) -> [u8; 6] {
    let out = Command::new("ip")
        .args(["-n", ns.name(), "-br", "link", "show", "dev", dev])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let word = text
        .split_whitespace()
        .find(|w| w.len() == 17 && w.matches(':').count() == 5)
        .unwrap_or_else(|| panic!("no MAC in {text:?}"));
    let mut m = [0u8; 6];
    for (i, b) in word.split(':').enumerate() {
        m[i] = u8::from_str_radix(b, 16).unwrap();
    }
    m
}

/// An Ethernet frame with `tags` VLAN tags carrying `payload` as UDP.
fn frame(
    dst: [u8; 6],
    src: [u8; 6],
    tags: &[(u16, u16)],
    from: SocketAddr,
    to: SocketAddr,
    payload: &[u8],
) -> Vec<u8> {
    Frame {
        dst_mac: dst,
        src_mac: src,
        tags: tags.to_vec(),
        ..Default::default()
    }
    .udp(from, to, payload)
}

/// A raw AF_PACKET socket on `dev` inside `ns` (the kernel here has no
/// 802.1Q devices, so tagged frames are written and read raw).
fn packet_socket(ns: &Netns, dev: &'static str) -> std::os::fd::OwnedFd {
    use std::os::fd::FromRawFd;
    ns.run(move || {
        // SAFETY: plain socket calls on values we own.
        unsafe {
            let fd = libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW,
                (libc::ETH_P_ALL as u16).to_be() as i32,
            );
            assert!(fd >= 0, "AF_PACKET socket");
            let name = std::ffi::CString::new(dev).unwrap();
            let mut sll: libc::sockaddr_ll = std::mem::zeroed();
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
            sll.sll_ifindex = libc::if_nametoindex(name.as_ptr()) as i32;
            let rc = libc::bind(
                fd,
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            );
            assert_eq!(rc, 0, "bind AF_PACKET");
            let one: i32 = 1;
            libc::setsockopt(
                fd,
                libc::SOL_PACKET,
                libc::PACKET_AUXDATA,
                (&one as *const i32).cast(),
                4,
            );
            let tv = libc::timeval {
                tv_sec: 0,
                tv_usec: 200_000,
            };
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as u32,
            );
            std::os::fd::OwnedFd::from_raw_fd(fd)
        }
    })
    .unwrap()
}

/// One frame from an AF_PACKET socket, with the VLAN tag the receive path
/// moved into metadata put back in place (PACKET_AUXDATA).
fn recv_frame(fd: i32) -> Option<Vec<u8>> {
    let mut buf = [0u8; 2048];
    let mut cbuf = [0u64; 16];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: msghdr points at our live buffers for the duration of recvmsg.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&cbuf);
    // SAFETY: as above.
    let n = unsafe { libc::recvmsg(fd, &mut msg, 0) };
    if n <= 0 {
        return None;
    }
    let mut f = buf[..n as usize].to_vec();
    // SAFETY: walking the control messages the kernel wrote into cbuf.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_PACKET && (*c).cmsg_type == libc::PACKET_AUXDATA {
                let aux = &*(libc::CMSG_DATA(c) as *const libc::tpacket_auxdata);
                if aux.tp_status & libc::TP_STATUS_VLAN_VALID != 0 {
                    let tpid = if aux.tp_status & libc::TP_STATUS_VLAN_TPID_VALID != 0 {
                        aux.tp_vlan_tpid
                    } else {
                        0x8100
                    };
                    let mut tag = tpid.to_be_bytes().to_vec();
                    tag.extend_from_slice(&aux.tp_vlan_tci.to_be_bytes());
                    f.splice(12..12, tag);
                }
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    Some(f)
}

/// Keepalives in 802.1Q and 802.1ad+802.1Q frames are answered by XDP with
/// the tags kept, valid checksums, and the same RCF as untagged. Returns
/// the request and answer frames for tshark.
fn tagged_frames(
    px: &Netns,
    ep: &Netns,
    instance: &str,
    sock: &UdpSocket,
    to: SocketAddr,
    me: SocketAddr,
    id: &str,
) -> Vec<Vec<u8>> {
    use std::os::fd::AsRawFd;
    let (pmac, emac) = (mac(px, "px0"), mac(ep, "ep0"));
    let raw = packet_socket(ep, "ep0");
    let mut frames = Vec::new();
    let before = Counters::from_pins(instance).unwrap().answered();
    for (i, tags) in [
        vec![(0x8100u16, 100u16)],
        vec![(0x88a8, 200), (0x8100, 100)],
    ]
    .iter()
    .enumerate()
    {
        let seq = 300 + i as u16;
        let req = frame(pmac, emac, tags, me, to, &keepalive(seq, me, id));
        // Forget frames seen so far (the untagged exchanges also pass here).
        while recv_frame(raw.as_raw_fd()).is_some() {}
        // SAFETY: send on our socket from a live buffer.
        let n = unsafe { libc::send(raw.as_raw_fd(), req.as_ptr().cast(), req.len(), 0) };
        assert_eq!(n as usize, req.len());
        let answer = (0..50)
            .find_map(|_| {
                let f = recv_frame(raw.as_raw_fd())?;
                (f.len() > 12 && f[6..12] == pmac && f[0..6] == emac).then_some(f)
            })
            .unwrap_or_else(|| panic!("tagged keepalive {tags:?} unanswered"));
        let l2 = 12 + 4 * tags.len();
        assert_eq!(answer[12..l2], req[12..l2], "VLAN tags kept");
        let ip = &answer[l2 + 2..];
        assert_eq!(checksum(&[&ip[..20]]), 0, "IPv4 header checksum");
        assert_eq!(
            ip[12..16],
            req[l2 + 2 + 16..l2 + 2 + 20],
            "answer from the address asked"
        );
        let udp_len = u16::from_be_bytes([ip[24], ip[25]]) as usize;
        let mut pseudo = ip[12..20].to_vec();
        pseudo.extend_from_slice(&[0, 17]);
        pseudo.extend_from_slice(&(udp_len as u16).to_be_bytes());
        pseudo.extend_from_slice(&ip[20..20 + udp_len]);
        assert_eq!(checksum(&[&pseudo]), 0, "UDP checksum");
        let payload = &ip[28..20 + udp_len];
        // Userspace's answer to the same request, for comparison.
        set_answering(instance, false).unwrap();
        let user = ask(sock, to, &keepalive(seq, me, id)).expect("userspace answer");
        set_answering(instance, true).unwrap();
        assert_eq!(
            payload,
            &user[..],
            "tagged answer equals the userspace answer"
        );
        frames.push(req);
        frames.push(answer);
    }
    assert_eq!(
        Counters::from_pins(instance).unwrap().answered(),
        before + 2
    );
    eprintln!("802.1Q and QinQ keepalives answered by XDP with tags kept");
    frames
}

/// tshark, with checksum validation on, finds the tagged requests and the
/// kernel's answers well-formed.
fn tshark_checks_frames(frames: &[Vec<u8>]) {
    if Command::new("tshark").arg("--version").output().is_err() {
        assert!(std::env::var_os("CI").is_none(), "tshark missing in CI");
        eprintln!("SKIP tshark check of tagged frames: tshark not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("tagged.pcap");
    let mut out = Vec::new();
    for w in [0xa1b2c3d4u32, 0x0004_0002, 0, 0, 65535, 1] {
        if w == 0x0004_0002 {
            out.extend_from_slice(&2u16.to_le_bytes());
            out.extend_from_slice(&4u16.to_le_bytes());
        } else {
            out.extend_from_slice(&w.to_le_bytes());
        }
    }
    for (i, f) in frames.iter().enumerate() {
        for w in [i as u32, 0, f.len() as u32, f.len() as u32] {
            out.extend_from_slice(&w.to_le_bytes());
        }
        out.extend_from_slice(f);
    }
    std::fs::write(&pcap, out).unwrap();
    let out = Command::new("tshark")
        .args([
            "-n",
            "-V",
            "-o",
            "ip.check_checksum:TRUE",
            "-o",
            "udp.check_checksum:TRUE",
            "-r",
        ])
        .arg(&pcap)
        .output()
        .expect("run tshark");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text.matches("RasMessage: registrationConfirm").count(),
        frames.len() / 2,
        "tshark:\n{text}"
    );
    assert_eq!(
        text.matches("RasMessage: registrationRequest").count(),
        frames.len() / 2
    );
    assert_eq!(
        text.matches("Virtual LAN, PRI: 0, DEI: 0, ID: 100").count(),
        4,
        "inner tag on all four frames"
    );
    assert_eq!(
        text.matches("IEEE 802.1ad, ID: 200").count(),
        2,
        "outer 802.1ad tag on the QinQ pair"
    );
    assert!(
        !text.contains("Malformed") && !text.contains("[Bad]") && !text.contains("incorrect"),
        "tshark:\n{text}"
    );
    assert!(
        text.contains("[Good]") || text.contains("Checksum Status: Good"),
        "tshark validated checksums:\n{text}"
    );
}

/// Keepalives the kernel must not answer, each counted under its reason.
fn refusals(
    ep: &Netns,
    instance: &str,
    to: SocketAddr,
    me: SocketAddr,
    id: &str,
    sock: &UdpSocket,
) {
    let reasons = || Counters::from_pins(instance).unwrap().keepalive;
    let answered = |r: &[u64]| r[ka_slot::ANSWERED as usize];
    let start = reasons();
    let good = keepalive(200, me, id);

    // Another port, and another source address, with the same bytes.
    let other_port: SocketAddr = SocketAddr::new(me.ip(), 40_001);
    let spoofed: SocketAddr = "198.18.0.3:40000".parse().unwrap();
    for from in [other_port, spoofed] {
        let s = ep.run(move || UdpSocket::bind(from)).unwrap().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        let a = ask(&s, to, &keepalive(201, from, id)).expect("userspace answers");
        assert!(
            matches!(ras::decode(&a).unwrap(), RasMessage::registrationReject(_)),
            "an unlearned source is refused by userspace"
        );
    }
    // Another endpointIdentifier of the same length.
    let mut wrong = id.to_string();
    let last = wrong.pop().unwrap();
    wrong.push(if last == '9' { '8' } else { '9' });
    let a = ask(sock, to, &keepalive(202, me, &wrong)).expect("userspace answers");
    assert!(matches!(
        ras::decode(&a).unwrap(),
        RasMessage::registrationReject(_)
    ));
    // Truncated, and a changed byte outside the identifier (malformed).
    sock.send_to(&good[..good.len() - 3], to).unwrap();
    // Byte 6 lies in protocolIdentifier, well before the identifier.
    let mut bad = good.clone();
    bad[6] ^= 0x55;
    sock.send_to(&bad, to).unwrap();
    let r = wait_for(5, || {
        let r = reasons();
        (r[ka_slot::LENGTH_MISMATCH as usize] > start[ka_slot::LENGTH_MISMATCH as usize]
            && r[ka_slot::CONTENT_MISMATCH as usize] > start[ka_slot::CONTENT_MISMATCH as usize])
            .then_some(r)
    })
    .unwrap_or_else(|| {
        panic!(
            "truncated and malformed keepalives not counted: {:?} -> {:?}",
            start,
            reasons()
        )
    });
    let delta = |slot: u32| r[slot as usize] - start[slot as usize];
    assert_eq!(
        delta(ka_slot::UNKNOWN_SOURCE),
        2,
        "other port and spoofed address"
    );
    assert_eq!(delta(ka_slot::IDENTIFIER_MISMATCH), 1);
    assert_eq!(delta(ka_slot::LENGTH_MISMATCH), 1);
    assert_eq!(delta(ka_slot::CONTENT_MISMATCH), 1);
    assert_eq!(
        answered(&r),
        answered(&start),
        "the kernel answered none of them"
    );
    // Drain whatever userspace said to the last two.
    let mut buf = [0u8; 2048];
    while sock.recv_from(&mut buf).is_ok() {}
    // The changed keepalive decoded, so userspace answered it and learned it
    // as the endpoint's new form (the cache follows the endpoint). The
    // original form is answered by userspace once, relearned, and from then
    // on by the kernel again.
    let a = ask(sock, to, &good).expect("good keepalive answered");
    assert_eq!(rcf_seq(&a), 200);
    // The map is updated just after that answer went out: allow a moment.
    let mid = answered(&reasons());
    let again = (0..20u16).find(|i| {
        std::thread::sleep(Duration::from_millis(50));
        let a = ask(sock, to, &keepalive(203 + i, me, id)).expect("good keepalive answered");
        assert_eq!(rcf_seq(&a), 203 + i);
        answered(&reasons()) > mid
    });
    assert!(
        again.is_some(),
        "the kernel answers the original form again"
    );
}

/// tshark decodes every kernel answer as a valid RCF.
fn tshark_says_rcf(answers: &[Vec<u8>]) {
    if Command::new("tshark").arg("--version").output().is_err() {
        assert!(std::env::var_os("CI").is_none(), "tshark missing in CI");
        eprintln!("SKIP tshark check of kernel answers: tshark not installed");
        return;
    }
    let entries: Vec<Entry> = answers
        .iter()
        .map(|a| Entry {
            name: "kernel RCF".into(),
            bytes: Bytes::from(a.clone()),
            kind: Kind::Ras,
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("kernel-rcf.pcap");
    proxy_user::capture::write_corpus_pcap(&pcap, &entries).unwrap();
    let out = Command::new("tshark")
        .args(["-n", "-V", "-r"])
        .arg(&pcap)
        .output()
        .expect("run tshark");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text.matches("RasMessage: registrationConfirm").count(),
        answers.len(),
        "tshark:\n{text}"
    );
    assert!(!text.contains("Malformed"), "tshark:\n{text}");
    assert!(!text.contains("Expert Info (Error"), "tshark:\n{text}");
}

/// BPF_PROG_TEST_RUN on the loaded program: a learned keepalive comes back
/// as a well-formed RCF frame (checksums verified here), with no interface.
#[test]
fn test_run_turns_a_learned_keepalive_into_an_rcf_frame() {
    if !privileged("test_run_turns_a_learned_keepalive_into_an_rcf_frame") {
        return;
    }
    use proxy_user::fastpath::{FASTPATH_PROG, FastPath};
    use proxy_user::offload::{RcfTemplate, entry};
    let instance = unique_name("tr");
    let mut fp = FastPath::load_sized(&instance, 1024).unwrap();
    fp.configure(proxy_common::FastpathSettings {
        answer: 1,
        ras_port: 1719,
        ..Default::default()
    })
    .unwrap();
    let (me, to): (SocketAddr, SocketAddr) = (
        "198.18.0.2:40000".parse().unwrap(),
        "198.18.0.1:1719".parse().unwrap(),
    );
    fp.set_local_addrs(&[to.ip()]).unwrap();
    let mut table = fp.take_keepalive_table().unwrap();
    let rcf = |seq: u16| {
        let v = json!({"registrationConfirm": {"requestSeqNum": seq, "protocolIdentifier": PROTOCOL_ID,
            "callSignalAddress": [transport_json("198.18.0.1:1720".parse().unwrap())],
            "gatekeeperIdentifier": "OFFLOAD-PX", "endpointIdentifier": "OFFLOAD-PX-000001", "timeToLive": 60}});
        ras::encode(&ras_from_json(&v).unwrap()).unwrap()
    };
    let tpl = RcfTemplate::from_encodings(&rcf(1), &rcf(2)).unwrap();
    let id = "OFFLOAD-PX-000001";
    table
        .learn(me, &entry(&keepalive(5, me, id), 5, id, &tpl).unwrap())
        .unwrap();
    let req = frame([2; 6], [4; 6], &[], me, to, &keepalive(77, me, id));
    let mut out = vec![0u8; 512];
    let (action, _, n) = fp.test_run(FASTPATH_PROG, &req, 1, Some(&mut out)).unwrap();
    assert_eq!(action, 3, "XDP_TX");
    let f = &out[..n];
    assert_eq!(&f[0..6], &[4; 6]);
    assert_eq!(&f[6..12], &[2; 6]);
    let ip = &f[14..];
    assert_eq!(
        checksum(&[&ip[..20]]),
        0,
        "IPv4 header checksum of {f:02x?}"
    );
    let udp_len = u16::from_be_bytes([ip[24], ip[25]]) as usize;
    let mut pseudo = ip[12..20].to_vec();
    pseudo.extend_from_slice(&[0, 17]);
    pseudo.extend_from_slice(&(udp_len as u16).to_be_bytes());
    pseudo.extend_from_slice(&ip[20..20 + udp_len]);
    assert_eq!(checksum(&[&pseudo]), 0, "UDP checksum of {f:02x?}");
    assert_eq!(&ip[28..20 + udp_len], &tpl.answer(77)[..]);
    fp.unpin().unwrap();
}

/// The daemon is SIGKILLed while 1,000 endpoints send keepalives: the
/// pinned XDP link and maps keep answering while it is down, and the
/// restarted daemon adopts them without a gap.
#[test]
fn keepalives_stay_answered_through_a_daemon_sigkill_and_restart() {
    use proxy_lab::process::{LabProc, field};
    if !privileged("keepalives_stay_answered_through_a_daemon_sigkill_and_restart") {
        return;
    }
    const N: usize = 1000;
    let px = Netns::create("px").unwrap();
    let ep = Netns::create("ep").unwrap();
    veth(&px, "px0", &ep, "ep0").unwrap();
    let _peer = xdp_peer_pass(&ep, "ep0").unwrap();
    px.ip(&["addr", "add", "198.18.0.1/24", "dev", "px0"])
        .unwrap();
    ep.ip(&["addr", "add", "198.18.0.2/24", "dev", "ep0"])
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let instance = unique_name("kill");
    let proxy = start_proxy(&px, &instance, "198.18.0.1", dir.path());

    let mut c = ep.command(bin("h323-lab")).unwrap();
    c.args([
        "endpoints",
        "--gatekeeper",
        "198.18.0.1:1719",
        "--ip",
        "198.18.0.2",
        "--count",
        &N.to_string(),
        "--keepalive-ms",
        "500",
        "--status-enquiry-ms",
        "60000",
        "--report-ms",
        "250",
    ]);
    c.stderr(Stdio::inherit());
    let eps = LabProc::spawn("endpoints", c).unwrap();
    let status = || eps.last("eps ").unwrap_or_default();
    let v = |key: &str| field(&status(), key).unwrap_or(0);
    assert!(
        eps.wait_for(60, "eps ", |l| field(l, "registered") == Some(N as u64))
            .is_some(),
        "{N} endpoints did not register: {}",
        status()
    );
    let learned = wait_for(30, || {
        let c = Counters::from_pins(&instance).ok()?;
        (c.endpoints == N).then_some(())
    });
    assert!(learned.is_some(), "not every endpoint was offloaded");
    // From here on every keepalive must be answered.
    std::thread::sleep(Duration::from_secs(1));
    let unanswered0 = v("keepalives_unanswered");
    let sent0 = v("keepalives_sent");
    let k0 = Counters::from_pins(&instance).unwrap().answered();

    let mut proxy = proxy;
    proxy.0.kill().unwrap();
    proxy.0.wait().unwrap();
    std::thread::sleep(Duration::from_secs(5));
    let k1 = Counters::from_pins(&instance).unwrap().answered();
    let (sent1, unanswered1) = (v("keepalives_sent"), v("keepalives_unanswered"));
    assert!(
        sent1 >= sent0 + 4 * N as u64,
        "endpoints kept sending ({sent0} -> {sent1})"
    );
    assert_eq!(
        unanswered1, unanswered0,
        "unanswered while the daemon was down"
    );
    assert!(
        k1 - k0 >= sent1 - sent0 - N as u64,
        "the kernel answered them: {k0} -> {k1}"
    );
    eprintln!(
        "daemon down 5 s: {} keepalives sent, {} answered by XDP, {} unanswered",
        sent1 - sent0,
        k1 - k0,
        unanswered1 - unanswered0
    );

    let restarted = start_proxy(&px, &instance, "198.18.0.1", dir.path());
    std::thread::sleep(Duration::from_secs(5));
    let c = Counters::from_pins(&instance).unwrap();
    let (sent2, unanswered2) = (v("keepalives_sent"), v("keepalives_unanswered"));
    assert_eq!(unanswered2, unanswered0, "unanswered after the restart");
    assert_eq!(
        c.endpoints, N,
        "the restarted daemon kept the learned table"
    );
    assert!(c.answered() - k1 >= sent2 - sent1 - N as u64);
    eprintln!(
        "after restart 5 s: {} keepalives sent, {} answered by XDP, {} unanswered",
        sent2 - sent1,
        c.answered() - k1,
        unanswered2 - unanswered0
    );
    let mut restarted = restarted;
    assert!(restarted.terminate(10).is_some_and(|s| s.success()));
    drop(eps);
}
