//! Root tests of the first fast-path program: the XDP RAS classifier, loaded
//! by the real `proxy` daemon on a veth in a namespace pair, counts RAS
//! messages by `RasMessage` choice; BPF_PROG_TEST_RUN covers IPv6 and VLAN
//! frames without sending them anywhere.

use std::net::{SocketAddr, UdpSocket};
use std::process::Stdio;

use proxy_common::{packet_slot, ras_slot, ras_slot_of};
use proxy_lab::frame::{Frame, vlan_tags};
use proxy_lab::netns::{Netns, unique_name, veth};
use proxy_tests::{Child, bin, privileged, wait_for};
use proxy_user::fastpath::{Counters, FastPath};
use proxy_user::h225::corpus::{self, Kind};

#[test]
fn xdp_counts_ras_messages_by_choice_on_a_veth() {
    if !privileged("xdp_counts_ras_messages_by_choice_on_a_veth") {
        return;
    }
    let px = Netns::create("px").unwrap();
    let ep = Netns::create("ep").unwrap();
    veth(&px, "px0", &ep, "ep0").unwrap();
    px.ip(&["addr", "add", "198.18.0.1/24", "dev", "px0"])
        .unwrap();
    ep.ip(&["addr", "add", "198.18.0.2/24", "dev", "ep0"])
        .unwrap();

    let instance = unique_name("i");
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("proxy.toml");
    std::fs::write(
        &cfg,
        format!("instance = \"{instance}\"\n[fastpath]\ninterfaces = [\"px0\"]\nstats_interval_secs = 1\n"),
    )
    .unwrap();
    let mut proxy = Child(
        px.command(bin("proxy"))
            .unwrap()
            .args(["run", "--config"])
            .arg(&cfg)
            .stdout(Stdio::null())
            .spawn()
            .expect("start proxy"),
    );
    let ready = wait_for(20, || {
        if let Ok(Some(status)) = proxy.0.try_wait() {
            panic!("proxy exited during start-up: {status}");
        }
        // Maps are pinned at load, the link once XDP is attached.
        let link = proxy_user::fastpath::pin_dir(&instance)
            .ok()?
            .join("link_px0");
        Counters::from_pins(&instance)
            .ok()
            .filter(|_| link.exists())
    });
    assert!(ready.is_some(), "proxy did not attach XDP within 20 s");

    let sock = ep
        .run(|| UdpSocket::bind("198.18.0.2:40001"))
        .unwrap()
        .unwrap();
    // Warm up ARP with a datagram to another port, and wait until XDP saw it.
    sock.send_to(b"warm-up", "198.18.0.1:9").unwrap();
    let warmed = wait_for(5, || {
        let c = Counters::from_pins(&instance).ok()?;
        (c.packets[packet_slot::NOT_RAS_PORT as usize] >= 1).then_some(())
    });
    assert!(warmed.is_some(), "warm-up datagram never reached XDP");

    let entries = corpus::build().unwrap();
    let mut expected = vec![0u64; ras_slot::COUNT as usize];
    let mut sent = 0u64;
    for e in entries.iter().filter(|e| e.kind == Kind::Ras) {
        sock.send_to(&e.bytes, "198.18.0.1:1719").unwrap();
        expected[ras_slot_of(e.bytes[0]) as usize] += 1;
        sent += 1;
    }
    sock.send_to(&[], "198.18.0.1:1719").unwrap();
    expected[ras_slot::EMPTY as usize] += 1;
    sent += 1;

    let seen = wait_for(5, || {
        let c = Counters::from_pins(&instance).ok()?;
        (c.packets[packet_slot::RAS as usize] >= sent).then_some(c)
    })
    .unwrap_or_else(|| panic!("XDP did not count {sent} RAS datagrams within 5 s"));
    let got: Vec<u64> = seen.ras.iter().map(|c| c.packets).collect();
    assert_eq!(got, expected, "per-choice counts");
    assert_eq!(seen.packets[packet_slot::RAS as usize], sent);

    let status = proxy
        .terminate(10)
        .expect("proxy did not stop on SIGTERM within 10 s");
    assert!(status.success(), "proxy exit: {status}");
    assert!(
        Counters::from_pins(&instance).is_err(),
        "graceful shutdown must remove the pins"
    );
}

/// An Ethernet frame: optional VLAN tags, then IPv4 or IPv6 + UDP from
/// and to port 1719 (addresses never routed: it only goes through
/// TEST_RUN).
fn frame(vlans: &[u16], v6: bool, payload: &[u8]) -> Vec<u8> {
    let (from, to): (SocketAddr, SocketAddr) = if v6 {
        (
            "[2001:2::2]:1719".parse().unwrap(),
            "[2001:2::1]:1719".parse().unwrap(),
        )
    } else {
        (
            "198.18.0.2:1719".parse().unwrap(),
            "198.18.0.1:1719".parse().unwrap(),
        )
    };
    Frame {
        tags: vlan_tags(vlans, 0),
        ..Default::default()
    }
    .udp(from, to, payload)
}

#[test]
fn xdp_classifies_ipv6_vlan_and_fragments_in_test_run() {
    if !privileged("xdp_classifies_ipv6_vlan_and_fragments_in_test_run") {
        return;
    }
    let instance = unique_name("t");
    let mut fp = FastPath::load(&instance).expect("load fast path");
    let entries = corpus::build().unwrap();
    let rrq = &entries
        .iter()
        .find(|e| e.name.contains("keepalive"))
        .unwrap()
        .bytes;
    let gcf = &entries
        .iter()
        .find(|e| e.name == "gatekeeperConfirm")
        .unwrap()
        .bytes;
    let iack = &entries
        .iter()
        .find(|e| e.name == "infoRequestAck")
        .unwrap()
        .bytes;

    let pass = 2; // XDP_PASS
    for (f, _) in [
        (frame(&[], true, rrq), "ipv6"),
        (frame(&[10], false, gcf), "vlan"),
        (frame(&[10, 20], true, iack), "qinq ipv6"),
    ] {
        assert_eq!(fp.test_run_ras_classifier(&f, 1).unwrap().0, pass);
    }
    // IPv4 fragment: more-fragments flag set -> left alone, counted.
    let mut frag = frame(&[], false, rrq);
    frag[14 + 6] = 0x20;
    assert_eq!(fp.test_run_ras_classifier(&frag, 1).unwrap().0, pass);
    // IPv6 with a hop-by-hop extension header -> left alone, counted.
    let mut ext = frame(&[], true, rrq);
    ext[14 + 6] = 0;
    assert_eq!(fp.test_run_ras_classifier(&ext, 1).unwrap().0, pass);
    // IPv4 ethertype with the IP header cut off (TEST_RUN needs >= 14 bytes).
    let mut short = [0u8; 14];
    short[12] = 0x08;
    assert_eq!(fp.test_run_ras_classifier(&short, 1).unwrap().0, pass);

    let c = fp.counters().unwrap();
    assert_eq!(c.ras[ras_slot_of(rrq[0]) as usize].packets, 1, "ipv6 rrq");
    assert_eq!(c.ras[ras_slot_of(gcf[0]) as usize].packets, 1, "vlan gcf");
    assert_eq!(c.ras[ras_slot_of(iack[0]) as usize].packets, 1, "qinq iack");
    assert_eq!(c.packets[packet_slot::RAS as usize], 3);
    assert_eq!(c.packets[packet_slot::FRAGMENT as usize], 1);
    assert_eq!(c.packets[packet_slot::IPV6_EXTENSION_HEADER as usize], 1);
    assert_eq!(c.packets[packet_slot::TRUNCATED as usize], 1);
    fp.unpin().unwrap();
}

/// `ip netns exec` gives the daemon a private mount namespace with /sys
/// remounted: no bpffs there, and one mounted there would die with the
/// daemon. It must refuse and say how to run instead.
#[test]
fn under_ip_netns_exec_the_daemon_refuses_and_says_how_to_run() {
    if !privileged("under_ip_netns_exec_the_daemon_refuses_and_says_how_to_run") {
        return;
    }
    let px = Netns::create("px").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("proxy.toml");
    std::fs::write(
        &cfg,
        format!(
            "instance = \"{}\"\n[proxy]\nstate_dir = \"\"\n",
            unique_name("i")
        ),
    )
    .unwrap();
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", px.name()])
        .arg(bin("proxy"))
        .args(["run", "--config"])
        .arg(&cfg)
        .output()
        .expect("ip netns exec");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the daemon must refuse: {err}");
    assert!(
        err.contains("nsenter --net=/run/netns/NAME") && err.contains("private"),
        "the refusal says why and how: {err}"
    );
    eprintln!(
        "refusal under ip netns exec: {}",
        err.lines().find(|l| l.contains("Error")).unwrap_or("")
    );
}
