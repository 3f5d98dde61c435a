//! Root tests of the control plane in the namespace lab: real gatekeeper,
//! endpoint and proxy processes, killed with SIGKILL, links cut with
//! `ip link set down`. Endpoints drop calls on silence (they tear
//! calls down when their keepalives go unanswered).

use std::time::Duration;

use proxy_lab::process::LabProc;
use proxy_lab::topology::{GK1, GK2, Lab, PX_EP};
use proxy_tests::{
    Proxy, endpoints, endpoints_with, gatekeeper, gatekeeper_with, get, metric, privileged, scrape,
    status, wait_status,
};

#[test]
fn control_silence_droppers_lose_their_calls_when_the_gatekeeper_dies_without_the_proxy() {
    if !privileged(
        "control_silence_droppers_lose_their_calls_when_the_gatekeeper_dies_without_the_proxy",
    ) {
        return;
    }
    let lab = Lab::create().unwrap();
    let mut gk1 = gatekeeper(&lab.gk1, GK1, "GK-A", None);
    let eps = endpoints(&lab, GK1, 4, 2);
    wait_status(&eps, 20, |l| {
        get(l, "calls_active") == 4 && get(l, "rtp_received") > 0
    });
    gk1.kill9();
    let after = wait_status(&eps, 10, |l| get(l, "calls_active") == 0);
    // Every call was torn down on silence on at least one side (the other
    // side may see the RELEASE COMPLETE before its own keepalives fail).
    assert!(get(&after, "calls_dropped") >= 2, "{after}");
    assert_eq!(
        get(&after, "calls_dropped") + get(&after, "calls_released"),
        4,
        "{after}"
    );
    assert!(get(&after, "keepalives_unanswered") > 0, "{after}");
}

#[test]
fn with_the_proxy_twenty_calls_survive_a_primary_sigkill_and_the_backup_takes_control() {
    if !privileged(
        "with_the_proxy_twenty_calls_survive_a_primary_sigkill_and_the_backup_takes_control",
    ) {
        return;
    }
    let lab = Lab::create().unwrap();
    let mut gk1 = gatekeeper(&lab.gk1, GK1, "GK-A", Some(GK2));
    let mut gk2 = gatekeeper(&lab.gk2, GK2, "GK-B", None);
    let proxy = Proxy::start(&lab, 5000);
    let mut eps = endpoints(&lab, PX_EP, 42, 20);
    wait_status(&eps, 30, |l| {
        get(l, "calls_active") == 40 && get(l, "rtp_received") > 0
    });
    assert!(
        gk1.last("gk registrations")
            .is_some_and(|l| get(&l, "calls") == 40)
    );

    gk1.kill9();
    assert!(
        proxy.wait_log(10, |l| l.contains("control moved")
            && l.contains("to=\"backup\"")),
        "no failover:\n{}",
        proxy.log_text()
    );
    // The backup learns every active call from the proxy's IRRs.
    assert!(
        proxy_tests::wait_for(10, || (gk2.count("gk adopted") == 40).then_some(())).is_some(),
        "backup adopted {} of 40 call legs",
        gk2.count("gk adopted")
    );
    std::thread::sleep(Duration::from_secs(30));
    let s = status(&eps);
    assert_eq!(get(&s, "calls_active"), 40, "{s}");
    assert_eq!(get(&s, "calls_dropped"), 0, "{s}");
    assert_eq!(get(&s, "rtp_lost"), 0, "{s}");
    assert_eq!(get(&s, "keepalives_unanswered"), 0, "{s}");
    assert_eq!(get(&s, "enquiries_unanswered"), 0, "{s}");

    // A new call goes through the backup.
    let before = gk2
        .last("gk registrations")
        .map(|l| get(&l, "calls"))
        .unwrap_or(0);
    eps.send("call 40 1042");
    wait_status(&eps, 10, |l| get(l, "calls_active") == 42);
    assert!(
        gk2.wait_for(5, "gk registrations", |l| get(l, "calls") >= before + 2)
            .is_some()
    );

    // The backup releases an old call: DRQ through the proxy to the endpoint,
    // RELEASE COMPLETE relayed to its peer.
    let line = eps
        .last("eps call-active index=0 ")
        .expect("call of endpoint 0");
    let call = line.rsplit("call=").next().unwrap().to_string();
    gk2.send(&format!("drop {call}"));
    let s = wait_status(&eps, 10, |l| get(l, "calls_released") == 2);
    assert_eq!(get(&s, "calls_active"), 40, "{s}");
    assert_eq!(get(&s, "calls_dropped"), 0, "{s}");
}

#[test]
fn no_gatekeeper_at_all_survivable_mode_routes_by_dial_plan_and_control_returns() {
    if !privileged("no_gatekeeper_at_all_survivable_mode_routes_by_dial_plan_and_control_returns") {
        return;
    }
    let lab = Lab::create().unwrap();
    let mut gk1 = gatekeeper(&lab.gk1, GK1, "GK-A", Some(GK2));
    let mut gk2 = gatekeeper(&lab.gk2, GK2, "GK-B", None);
    let proxy = Proxy::start(&lab, 2000);
    let mut eps = endpoints(&lab, PX_EP, 8, 2);
    wait_status(&eps, 20, |l| get(l, "calls_active") == 4);
    gk1.kill9();
    gk2.kill9();
    assert!(
        proxy.wait_log(10, |l| l.contains("control moved")
            && l.contains("to=\"survivable\"")),
        "no survivable mode:\n{}",
        proxy.log_text()
    );
    // A local call by dial plan: 9 + 1006 reaches endpoint 5.
    eps.send("call 4 91006");
    wait_status(&eps, 10, |l| get(l, "calls_active") == 6);
    // A number nobody has is refused (ARJ), the caller's call fails cleanly.
    eps.send("call 6 5555");
    wait_status(&eps, 10, |l| get(l, "calls_failed") == 1);

    // The primary comes back: after the hold time control and registrations
    // move to it, the active calls are reported, nothing drops.
    let gk1b = gatekeeper(&lab.gk1, GK1, "GK-A", Some(GK2));
    assert!(
        proxy.wait_log(15, |l| l.contains("control moved")
            && l.contains("from=\"survivable\"")
            && l.contains("to=\"primary\"")),
        "control did not return:\n{}",
        proxy.log_text()
    );
    assert!(
        gk1b.wait_for(10, "gk registrations", |l| get(l, "registrations") == 9)
            .is_some()
    );
    assert!(proxy_tests::wait_for(10, || (gk1b.count("gk adopted") == 6).then_some(())).is_some());
    let s = status(&eps);
    assert_eq!(get(&s, "calls_active"), 6, "{s}");
    assert_eq!(get(&s, "calls_dropped"), 0, "{s}");
    assert_eq!(get(&s, "rtp_lost"), 0, "{s}");
}

#[test]
fn partition_and_flapping_drop_no_call_and_bound_the_rrqs() {
    if !privileged("partition_and_flapping_drop_no_call_and_bound_the_rrqs") {
        return;
    }
    let lab = Lab::create().unwrap();
    let gk1 = gatekeeper(&lab.gk1, GK1, "GK-A", Some(GK2));
    let gk2 = gatekeeper(&lab.gk2, GK2, "GK-B", None);
    let proxy = Proxy::start(&lab, 2000);
    let eps = endpoints(&lab, PX_EP, 4, 2);
    wait_status(&eps, 20, |l| get(l, "calls_active") == 4);
    // Ten flaps in a minute: primary cut for 3 s, back for 3 s.
    for _ in 0..10 {
        lab.px.ip(&["link", "set", "px1", "down"]).unwrap();
        std::thread::sleep(Duration::from_secs(3));
        lab.px.ip(&["link", "set", "px1", "up"]).unwrap();
        std::thread::sleep(Duration::from_secs(3));
    }
    let s = status(&eps);
    assert_eq!(get(&s, "calls_active"), 4, "{s}");
    assert_eq!(get(&s, "calls_dropped"), 0, "{s}");
    assert_eq!(get(&s, "rtp_lost"), 0, "{s}");
    assert_eq!(get(&s, "keepalives_unanswered"), 0, "{s}");
    let moves = proxy
        .log_text()
        .lines()
        .filter(|l| l.contains("control moved"))
        .count() as u64;
    // Full RRQs: each control move re-registers the 4 endpoints once, the
    // proxy registers itself once per gatekeeper restart of its own view.
    let full = |g: &LabProc, key: &str| {
        let mut g_last = g.last("gk registrations").unwrap_or_default();
        if g_last.is_empty() {
            g_last = "full_rrqs=0 not_from_ras=0".into();
        }
        get(&g_last, key)
    };
    let total = full(&gk1, "full_rrqs") + full(&gk2, "full_rrqs");
    // Each endpoint's RRQs leave from the rasAddress they register (its
    // own gatekeeper-side address), as GnuGk requires.
    assert_eq!(
        full(&gk1, "not_from_ras") + full(&gk2, "not_from_ras"),
        0,
        "RRQs sent from another address than their rasAddress"
    );
    let bound = (moves + 1) * 4 + 2 * (10 + 1);
    eprintln!("control moves {moves}, full RRQs {total}, bound {bound}");
    assert!(moves >= 2, "the partitions were noticed ({moves} moves)");
    assert!(
        total <= bound,
        "{total} full RRQs for {moves} control moves (bound {bound})"
    );
    let _ = proxy.counter("RAS counters", "failovers");
}

#[test]
fn malformed_traffic_on_both_ports_is_counted_and_refused_and_disturbs_no_call() {
    if !privileged("malformed_traffic_on_both_ports_is_counted_and_refused_and_disturbs_no_call") {
        return;
    }
    use std::io::{Read, Write};
    let lab = Lab::create().unwrap();
    let _gk1 = gatekeeper(&lab.gk1, GK1, "GK-A", Some(GK2));
    let _gk2 = gatekeeper(&lab.gk2, GK2, "GK-B", None);
    let _proxy = Proxy::start(&lab, 5000);
    let eps = endpoints(&lab, PX_EP, 4, 2);
    wait_status(&eps, 20, |l| get(l, "calls_active") == 4);
    let before = status(&eps);

    // RAS: undecodable datagrams from a stranger's address.
    let ras_garbage: Vec<Vec<u8>> = (0u8..50)
        .map(|i| {
            (0..(i as usize % 40 + 1))
                .map(|j| i.wrapping_mul(31).wrapping_add((j as u8).wrapping_mul(7)) | 0x80)
                .collect()
        })
        .collect();
    lab.ep
        .run(move || {
            let s = std::net::UdpSocket::bind("198.18.1.2:0").unwrap();
            for g in &ras_garbage {
                s.send_to(g, "198.18.1.1:1719").unwrap();
            }
        })
        .unwrap();
    // Call signalling: a TPKT with garbage, a bad TPKT version, and a valid
    // Q.931 CONNECT as a first message (refused with RELEASE COMPLETE).
    let connect = proxy_user::h225::corpus::build()
        .unwrap()
        .into_iter()
        .find(|e| e.name.contains("CONNECT") || e.name.contains("connect"))
        .expect("CONNECT in the corpus")
        .bytes;
    let replies = lab
        .ep
        .run(move || {
            let mut got = Vec::new();
            for payload in [
                vec![3u8, 0, 0, 9, 0xde, 0xad, 0xbe, 0xef, 0x00],
                vec![9u8, 9, 9, 9, 9, 9],
                {
                    let mut v = vec![3u8, 0];
                    v.extend_from_slice(&((connect.len() + 4) as u16).to_be_bytes());
                    v.extend_from_slice(&connect);
                    v
                },
            ] {
                let mut s = std::net::TcpStream::connect("198.18.1.1:1720").unwrap();
                s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
                s.write_all(&payload).unwrap();
                let mut buf = Vec::new();
                let _ = s.read_to_end(&mut buf);
                got.push(buf);
            }
            got
        })
        .unwrap();
    assert!(
        replies[0].is_empty() && replies[1].is_empty(),
        "undecodable links are closed"
    );
    let rc = proxy_user::q931::Message::decode(&replies[2][4..])
        .expect("a Q.931 reply to CONNECT-first");
    assert_eq!(rc.message_type, proxy_user::q931::msg::RELEASE_COMPLETE);
    assert_eq!(rc.cause().unwrap().unwrap().value, 101);

    std::thread::sleep(Duration::from_secs(2));
    let m = scrape(&lab);
    assert!(
        metric(
            &m,
            "h323proxy_malformed_total{port=\"1719\",reason=\"undecodable\"}"
        ) >= 45,
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            "h323proxy_malformed_total{port=\"1720\",reason=\"malformed\"}"
        ),
        3,
        "{m}"
    );
    assert_eq!(metric(&m, "h323proxy_calls{state=\"active\"}"), 2, "{m}");
    assert_eq!(metric(&m, "h323proxy_registrations"), 4, "{m}");
    let after = status(&eps);
    assert_eq!(get(&after, "calls_active"), 4, "{after}");
    assert_eq!(get(&after, "calls_dropped"), 0, "{after}");
    assert_eq!(get(&after, "keepalives_unanswered"), 0, "{after}");
    assert!(get(&after, "rtp_received") > get(&before, "rtp_received"));
    assert_eq!(get(&after, "rtp_lost"), 0, "{after}");
}

#[test]
fn a_separate_h245_channel_is_relayed_through_the_proxy() {
    if !privileged("a_separate_h245_channel_is_relayed_through_the_proxy") {
        return;
    }
    let lab = Lab::create().unwrap();
    let _gk1 = gatekeeper(&lab.gk1, GK1, "GK-A", None);
    let _proxy = Proxy::start(&lab, 5000);
    let eps = endpoints_with(&lab, PX_EP, 2, 1, &["--h245"]);
    let s = wait_status(&eps, 20, |l| get(l, "h245_ok") == 1);
    assert_eq!(get(&s, "calls_active"), 2, "{s}");
    let m = scrape(&lab);
    assert_eq!(metric(&m, "h323proxy_h245_channels_total"), 1, "{m}");
}

#[test]
fn gatekeeper_routed_calls_stay_up_when_the_gatekeeper_in_the_signalling_path_dies() {
    if !privileged(
        "gatekeeper_routed_calls_stay_up_when_the_gatekeeper_in_the_signalling_path_dies",
    ) {
        return;
    }
    let lab = Lab::create().unwrap();
    let routed = format!("{GK1}:1720");
    let mut gk1 = gatekeeper_with(&lab.gk1, GK1, "GK-A", Some(GK2), &["--routed", &routed]);
    let _gk2 = gatekeeper(&lab.gk2, GK2, "GK-B", None);
    let proxy = Proxy::start(&lab, 5000);
    let eps = endpoints(&lab, PX_EP, 4, 2);
    wait_status(&eps, 20, |l| {
        get(l, "calls_active") == 4 && get(l, "rtp_received") > 0
    });
    assert_eq!(
        gk1.count("gk routed call"),
        2,
        "both calls went through the gatekeeper"
    );
    // Each call is two proxy calls: endpoint -> gatekeeper and gatekeeper -> endpoint.
    assert_eq!(
        metric(&scrape(&lab), "h323proxy_calls{state=\"active\"}"),
        4
    );

    gk1.kill9();
    assert!(
        proxy.wait_log(10, |l| l.contains("control moved")
            && l.contains("to=\"backup\"")),
        "no failover:\n{}",
        proxy.log_text()
    );
    std::thread::sleep(Duration::from_secs(10));
    let s = status(&eps);
    assert_eq!(get(&s, "calls_active"), 4, "{s}");
    assert_eq!(get(&s, "calls_dropped"), 0, "{s}");
    assert_eq!(get(&s, "rtp_lost"), 0, "{s}");
    assert_eq!(get(&s, "enquiries_unanswered"), 0, "{s}");
    let m = scrape(&lab);
    assert_eq!(metric(&m, "h323proxy_calls_kept_up_total"), 4, "{m}");
}

#[test]
fn with_the_fast_path_kernel_liveness_drives_failover_and_calls_stay_up() {
    use proxy_common::gk_state;
    use proxy_user::fastpath::{Counters, LivenessTable, monotonic_ns};
    if !privileged("with_the_fast_path_kernel_liveness_drives_failover_and_calls_stay_up") {
        return;
    }
    let lab = Lab::create().unwrap();
    let _gk1 = gatekeeper(&lab.gk1, GK1, "GK-A", Some(GK2));
    let _gk2 = gatekeeper(&lab.gk2, GK2, "GK-B", None);
    let proxy = Proxy::start_fast(&lab, 5000);
    let eps = endpoints(&lab, PX_EP, 10, 4);
    wait_status(&eps, 30, |l| {
        get(l, "calls_active") == 8 && get(l, "rtp_received") > 0
    });
    // Keepalives (every 200 ms) are answered by XDP once learned.
    let answered = proxy_tests::wait_for(10, || {
        let c = Counters::from_pins(&proxy.instance).ok()?;
        (c.answered() >= 50 && c.endpoints == 10).then_some(c.answered())
    });
    assert!(
        answered.is_some(),
        "XDP did not answer the endpoints' keepalives"
    );
    let entry = |ip: std::net::Ipv4Addr| {
        LivenessTable::from_pin(&proxy.instance)
            .unwrap()
            .entries()
            .into_iter()
            .find(|(a, _)| *a == std::net::IpAddr::V4(ip))
            .map(|(_, g)| g)
            .unwrap_or_else(|| panic!("{ip} not in the liveness map"))
    };
    let g = entry(GK1);
    assert_eq!((g.state, g.active), (gk_state::UP, 1), "{g:?}");
    assert!(g.ras_packets > 0, "TC saw the primary's RAS replies: {g:?}");

    // Partition the primary: no RST, no ICMP, just silence.
    lab.px.ip(&["link", "set", "px1", "down"]).unwrap();
    assert!(
        proxy.wait_log(10, |l| l.contains("control moved")
            && l.contains("to=\"backup\"")),
        "no failover:\n{}",
        proxy.log_text()
    );
    // The daemon writes its decision into the map at its next liveness
    // round (one heartbeat interval).
    let g = proxy_tests::wait_for(2, || {
        let g = entry(GK1);
        (g.state == gk_state::DOWN).then_some(g)
    })
    .unwrap_or_else(|| panic!("primary not marked down in the map: {:?}", entry(GK1)));
    let silent_ms = (monotonic_ns() - g.last_ns) / 1_000_000;
    assert_eq!(g.active, 0, "{g:?}");
    assert!(
        silent_ms >= 120,
        "stale in the map: last seen {silent_ms} ms ago"
    );
    let b = entry(GK2);
    assert_eq!((b.state, b.active), (gk_state::UP, 1), "{b:?}");
    eprintln!(
        "liveness map: primary down, last RAS seen {silent_ms} ms ago after {} RAS packets; backup in control",
        g.ras_packets
    );

    std::thread::sleep(Duration::from_secs(10));
    let s = status(&eps);
    assert_eq!(get(&s, "calls_active"), 8, "{s}");
    assert_eq!(get(&s, "calls_dropped"), 0, "{s}");
    assert_eq!(get(&s, "rtp_lost"), 0, "{s}");
    assert_eq!(get(&s, "keepalives_unanswered"), 0, "{s}");
    lab.px.ip(&["link", "set", "px1", "up"]).unwrap();
}

#[test]
fn a_sigkilled_daemon_restarts_without_anything_registering_again() {
    use proxy_user::fastpath::Counters;
    if !privileged("a_sigkilled_daemon_restarts_without_anything_registering_again") {
        return;
    }
    let lab = Lab::create().unwrap();
    let gk1 = gatekeeper(&lab.gk1, GK1, "GK-A", None);
    let _gk2 = gatekeeper(&lab.gk2, GK2, "GK-B", None);
    let mut proxy = Proxy::start_fast_steady(&lab, 5000);
    // 10 endpoints, no calls yet; keepalives every 200 ms.
    let mut eps = endpoints(&lab, PX_EP, 10, 0);
    wait_status(&eps, 30, |l| get(l, "registered") == 10);
    let learned = proxy_tests::wait_for(10, || {
        let c = Counters::from_pins(&proxy.instance).ok()?;
        (c.endpoints == 10).then_some(())
    });
    assert!(learned.is_some(), "keepalives not offloaded");
    // Give the 1 s save tick time to write the table.
    std::thread::sleep(Duration::from_millis(1500));
    let full_before = gk1
        .last("gk registrations")
        .map(|l| get(&l, "full_rrqs"))
        .unwrap();
    let unanswered = get(&status(&eps), "keepalives_unanswered");

    proxy.kill_and_restart(&lab, Duration::from_secs(3));
    assert!(
        proxy.wait_log(10, |l| l.contains("registration table restored")
            && l.contains("registrations=10")),
        "table not restored:\n{}",
        proxy.log_text()
    );
    assert!(
        proxy.wait_log(10, |l| l.contains("control moved")
            && l.contains("to=\"primary\"")),
        "restarted proxy did not take the primary:\n{}",
        proxy.log_text()
    );
    // A call between two endpoints: ARQs reach the gatekeeper under the
    // restored bindings.
    eps.send("call 0 1002");
    wait_status(&eps, 10, |l| get(l, "calls_active") == 2);
    std::thread::sleep(Duration::from_secs(2));
    let s = status(&eps);
    assert_eq!(get(&s, "keepalives_unanswered"), unanswered, "{s}");
    let full_after = gk1
        .last("gk registrations")
        .map(|l| get(&l, "full_rrqs"))
        .unwrap();
    // The restarted daemon registers itself (one full RRQ); no endpoint does.
    assert!(
        full_after <= full_before + 1,
        "endpoints registered again: full RRQs {full_before} -> {full_after}\n{}",
        proxy.log_text()
    );
    eprintln!(
        "restart: full RRQs at the gatekeeper {full_before} -> {full_after}, keepalives unanswered {unanswered} -> {}",
        get(&s, "keepalives_unanswered")
    );
}
