//! Root tests against real peers: GnuGk 5.15 as primary and backup
//! gatekeeper and H323Plus 1.28's `simple` endpoint beside the project's
//! lab endpoints, through one proxy and (one test) across two (binaries from `cargo xtask peers`,
//! named by H323_PEERS_BIN). Faults are held for 90 s, past H323Plus's
//! H.245 round-trip probe (60 s + 10 s) and the proxy's TCP keepalive.
//!
//! ```text
//!  lab endpoints 198.18.1.2 ──px0┐
//!  simple 2001   198.18.4.2 ──px3┤ proxy ├px1── GnuGk GK1 198.18.2.10 (primary)
//!  simple 2002   198.18.5.2 ──px4┘       └px2── GnuGk GK2 198.18.3.10 (backup)
//! ```
//! The H323Plus endpoints sit in namespaces of their own, so their RTP
//! crosses the proxy host and is counted on its veths.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use proxy_lab::impair::Impairment;
use proxy_lab::link_sim::Link;
use proxy_lab::netns::{Netns, veth};
use proxy_lab::peers::{GnuGk, Routing, peers_bin, simple};
use proxy_lab::process::{LabProc, field};
use proxy_lab::topology::{EP, GK1, GK2, Lab, PX_EP};
use proxy_tests::{Proxy, bin, privileged, wait_for};

/// The peer binaries; outside CI a missing build skips, saying why.
fn peers(test: &str) -> Option<PathBuf> {
    match peers_bin() {
        Ok(p) => Some(p),
        Err(why) => {
            assert!(std::env::var_os("CI").is_none(), "{test}: {why}");
            eprintln!("SKIP {test}: {why}");
            None
        }
    }
}

/// A host for one H323Plus endpoint, joined to the proxy host on `dev`.
fn h323plus_host(lab: &Lab, dev: &str, net: u8) -> Netns {
    let ns = Netns::create(&format!("h{net}")).unwrap();
    veth(&lab.px, dev, &ns, "eth0").unwrap();
    lab.px
        .ip(&["addr", "add", &format!("198.18.{net}.1/24"), "dev", dev])
        .unwrap();
    ns.ip(&["addr", "add", &format!("198.18.{net}.2/24"), "dev", "eth0"])
        .unwrap();
    ns.ip(&[
        "route",
        "add",
        "198.18.0.0/15",
        "via",
        &format!("198.18.{net}.1"),
    ])
    .unwrap();
    ns
}

/// Packets received on `dev` of the proxy host (its veth to a host).
fn rx_packets(ns: &Netns, dev: &str) -> u64 {
    let out = std::process::Command::new("ip")
        .args(["-n", ns.name(), "-s", "-j", "link", "show", "dev", dev])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    v[0]["stats64"]["rx"]["packets"].as_u64().unwrap_or(0)
}

/// Packets per second arriving from each H323Plus host over `secs`.
fn media_rate(lab: &Lab, secs: u64) -> (u64, u64) {
    let a0 = (rx_packets(&lab.px, "px3"), rx_packets(&lab.px, "px4"));
    std::thread::sleep(Duration::from_secs(secs));
    let a1 = (rx_packets(&lab.px, "px3"), rx_packets(&lab.px, "px4"));
    ((a1.0 - a0.0) / secs, (a1.1 - a0.1) / secs)
}

fn lab_endpoints(lab: &Lab, count: usize, pairs: usize) -> LabProc {
    let mut c = lab.ep.command(bin("h323-lab")).unwrap();
    c.args(["endpoints", "--gatekeeper", &format!("{PX_EP}:1719")])
        .args(["--ip", &EP.to_string(), "--count", &count.to_string()])
        .args(["--pairs", &pairs.to_string(), "--ttl", "60"])
        .args(["--keepalive-ms", "1000", "--status-enquiry-ms", "2000"])
        .args(["--drop-calls-on-silence", "--report-ms", "500"]);
    c.stderr(Stdio::inherit());
    LabProc::spawn("endpoints", c).unwrap()
}

/// How often control moved to gatekeeper `to` so far.
fn moves_to(proxy: &Proxy, to: &str) -> usize {
    let needle = format!("to=\"{to}\"");
    proxy
        .log_text()
        .lines()
        .filter(|l| l.contains("control moved") && l.contains(&needle))
        .count()
}

fn get(line: &str, key: &str) -> u64 {
    field(line, key).unwrap_or_else(|| panic!("no {key} in {line}"))
}

/// The aliases of `numbers` are registered at `gk`, each with its own
/// callSignalAddress on the proxy's gatekeeper side. Returns `r`'s output.
fn all_listed(gk: &GnuGk, numbers: &[&str], secs: u64) -> String {
    let ok = wait_for(secs, || {
        let regs = gk.registrations().ok()?;
        let mut addrs = std::collections::HashSet::new();
        for n in numbers {
            let (cs, _, _) = regs.iter().find(|(_, aliases, _)| {
                aliases
                    .split([',', '='])
                    .any(|a| a.split(':').next() == Some(n))
            })?;
            if !cs.starts_with("198.18.2.1:") || !addrs.insert(cs.clone()) {
                return None;
            }
        }
        Some(())
    });
    let text = gk.status("r").unwrap_or_default();
    assert!(
        ok.is_some(),
        "not every endpoint listed at {} with its own address:\n{text}",
        gk.proc.name()
    );
    text
}

/// Every call is still up: the lab endpoints hold theirs, the H323Plus
/// caller has not cleared, media flows both ways.
fn calls_up(lab: &Lab, eps: &LabProc, lab_legs: u64, h: &[&LabProc], what: &str) {
    let s = eps.last("eps registered").unwrap_or_default();
    assert_eq!(get(&s, "calls_active"), lab_legs, "{what}: {s}");
    assert_eq!(get(&s, "calls_dropped"), 0, "{what}: {s}");
    assert_eq!(get(&s, "rtp_lost"), 0, "{what}: {s}");
    assert_eq!(get(&s, "keepalives_unanswered"), 0, "{what}: {s}");
    for p in h {
        let cleared: Vec<String> = p
            .lines()
            .into_iter()
            .filter(|l| l.contains("cleared"))
            .collect();
        assert!(cleared.is_empty(), "{what}: {} {cleared:?}", p.name());
    }
    let (a, b) = media_rate(lab, 4);
    // G.711 at 50 packets/s each way.
    assert!(
        a >= 40 && b >= 40,
        "{what}: RTP from the H323Plus hosts {a}/s and {b}/s"
    );
    eprintln!("{what}: lab call legs {lab_legs} up, H323Plus media {a}/s and {b}/s");
}

/// Sample the calls every 10 s for `secs`.
fn hold(lab: &Lab, eps: &LabProc, lab_legs: u64, h: &[&LabProc], what: &str, secs: u64) {
    let until = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < until {
        std::thread::sleep(Duration::from_secs(6));
        calls_up(lab, eps, lab_legs, h, what);
    }
}

/// The lab with both GnuGks, the proxy, lab endpoints 1001-1008 (1001
/// calling 1002) and two H323Plus endpoints (2002 calling 2001), every
/// call up; tshark capturing on the gatekeeper side.
struct Scene {
    lab: Lab,
    _h: (Netns, Netns),
    gk1: GnuGk,
    gk2: GnuGk,
    proxy: Proxy,
    eps: LabProc,
    simple: (LabProc, LabProc),
    tshark: LabProc,
    cap: PathBuf,
    _dir: tempfile::TempDir,
}

const NUMBERS: [&str; 10] = [
    "1001", "1002", "1003", "1004", "1005", "1006", "1007", "1008", "2001", "2002",
];

fn scene(peers: &std::path::Path, routing: Routing) -> Scene {
    scene_with(peers, routing, ["", ""], |t| t)
}

/// As [`scene`], with `extra` appended to each GnuGk's ini and the proxy's
/// configuration changed by `tweak`.
fn scene_with(
    peers: &std::path::Path,
    routing: Routing,
    extra: [&str; 2],
    tweak: impl Fn(String) -> String,
) -> Scene {
    let lab = Lab::create().unwrap();
    let h1 = h323plus_host(&lab, "px3", 4);
    let h2 = h323plus_host(&lab, "px4", 5);
    // Every RAS and signalling packet on the gatekeeper side, for tshark.
    let dir = tempfile::tempdir().unwrap();
    let cap = dir.path().join("gk-side.pcapng");
    let tshark = LabProc::spawn("tshark", {
        let mut c = lab.px.command("tshark").unwrap();
        c.args(["-q", "-n", "-i", "px1", "-i", "px2", "-w"])
            .arg(&cap)
            .stderr(Stdio::null());
        c
    })
    .unwrap();
    let gk1 = GnuGk::start(peers, &lab.gk1, GK1, "GK1", routing, extra[0]).unwrap();
    let gk2 = GnuGk::start(peers, &lab.gk2, GK2, "GK2", routing, extra[1]).unwrap();
    // The default heartbeat (40 ms x 3): it must not cry wolf with GnuGk
    // on a loaded 2-core machine.
    let proxy = Proxy::start_tweaked(&lab, 2000, Some("px0"), tweak);
    let eps = lab_endpoints(&lab, 8, 1);
    let s2001 = simple(
        peers,
        &h1,
        PX_EP,
        "198.18.4.2".parse().unwrap(),
        "2001",
        None,
        None,
    )
    .unwrap();
    all_listed(&gk1, &NUMBERS[..9], 30);
    let s2002 = simple(
        peers,
        &h2,
        PX_EP,
        "198.18.5.2".parse().unwrap(),
        "2002",
        Some("2001"),
        None,
    )
    .unwrap();
    assert!(
        s2002.wait_for(30, "In call with 2001", |_| true).is_some(),
        "the H323Plus call did not come up: {:?}",
        s2002.lines()
    );
    eps.wait_for(30, "eps registered", |l| get(l, "calls_active") == 2)
        .expect("lab call up");
    let before = all_listed(&gk1, &NUMBERS, 10);
    eprintln!("GK1 status `r` ({routing:?}) before failover:\n{before}");
    assert_eq!(gk1.calls().unwrap(), 2, "{}", gk1.status("c").unwrap());
    let sc = Scene {
        lab,
        _h: (h1, h2),
        gk1,
        gk2,
        proxy,
        eps,
        simple: (s2001, s2002),
        tshark,
        cap,
        _dir: dir,
    };
    calls_up(
        &sc.lab,
        &sc.eps,
        2,
        &[&sc.simple.0, &sc.simple.1],
        "before the fault",
    );
    sc
}

#[test]
fn gnugk_primary_and_backup_many_endpoints_through_one_proxy_sigkill_and_partition() {
    const T: &str =
        "gnugk_primary_and_backup_many_endpoints_through_one_proxy_sigkill_and_partition";
    if !privileged(T) {
        return;
    }
    let Some(peers) = peers(T) else { return };
    let Scene {
        lab,
        _h,
        mut gk1,
        gk2,
        proxy,
        mut eps,
        simple,
        mut tshark,
        cap,
        _dir,
    } = scene(&peers, Routing::Routed);
    let h = [&simple.0, &simple.1];
    let numbers = NUMBERS;

    // SIGKILL of the primary mid-call, held 90 s.
    gk1.proc.kill9();
    assert!(
        proxy.wait_log(15, |l| l.contains("control moved")
            && l.contains("to=\"backup\"")),
        "no failover:\n{}",
        proxy.log_text()
    );
    hold(&lab, &eps, 2, &h, "primary SIGKILLed", 90);
    let after = all_listed(&gk2, &numbers, 10);
    eprintln!("GK2 status `r` after failover:\n{after}");
    // A new call through the backup.
    eps.send("call 2 1004");
    eps.wait_for(20, "eps registered", |l| get(l, "calls_active") == 4)
        .expect("a new call through the backup");
    assert!(gk2.calls().unwrap() >= 1, "{}", gk2.status("c").unwrap());

    // Fail back to a restarted primary.
    let gk1 = GnuGk::start(&peers, &lab.gk1, GK1, "GK1", Routing::Routed, "").unwrap();
    assert!(
        wait_for(30, || (moves_to(&proxy, "primary") > 1).then_some(())).is_some(),
        "no fail back:\n{}",
        proxy.log_text()
    );
    all_listed(&gk1, &numbers, 20);
    // A call routed through the restarted primary: its gatekeeper legs are
    // the ones the partition cuts.
    eps.send("call 4 1006");
    eps.wait_for(20, "eps registered", |l| get(l, "calls_active") == 6)
        .expect("a new call through the primary");
    assert!(gk1.calls().unwrap() >= 1, "{}", gk1.status("c").unwrap());
    let reanchored_before = call_counter(&proxy, "reanchored");

    // Partition of the primary (its link down), held 90 s: past the TCP
    // keepalive that finds its signalling legs dead (10 s + 3 x 3 s).
    lab.px.ip(&["link", "set", "px1", "down"]).unwrap();
    assert!(
        wait_for(15, || (moves_to(&proxy, "backup") > 1).then_some(())).is_some(),
        "no failover on partition:\n{}",
        proxy.log_text()
    );
    hold(&lab, &eps, 6, &h, "primary partitioned", 90);
    all_listed(&gk2, &numbers, 10);
    // The call through the primary was set up again through the backup,
    // which now holds all four (the three others stayed with it).
    let reanchored = call_counter(&proxy, "reanchored");
    eprintln!(
        "calls re-anchored at the backup: {reanchored_before} after the SIGKILL, {reanchored} after the partition"
    );
    assert!(
        reanchored > reanchored_before,
        "the call through the partitioned primary was not re-anchored"
    );
    assert_eq!(
        gk2.call_list().unwrap().len(),
        4,
        "{}",
        gk2.status("c").unwrap()
    );
    lab.px.ip(&["link", "set", "px1", "up"]).unwrap();
    assert!(
        wait_for(30, || (moves_to(&proxy, "primary") > 2).then_some(())).is_some(),
        "no fail back after the partition:\n{}",
        proxy.log_text()
    );
    all_listed(&gk1, &numbers, 20);
    calls_up(&lab, &eps, 6, &h, "after fail back");

    // Both GnuGks gone: survivable mode; every call stays up and the proxy
    // routes a new call between its endpoints itself.
    let mut gk1 = gk1;
    let mut gk2 = gk2;
    gk1.proc.kill9();
    gk2.proc.kill9();
    assert!(
        wait_for(15, || (moves_to(&proxy, "survivable") > 0).then_some(())).is_some(),
        "no survivable mode:\n{}",
        proxy.log_text()
    );
    eps.send("call 6 1008");
    eps.wait_for(20, "eps registered", |l| get(l, "calls_active") == 8)
        .expect("a call routed by the proxy in survivable mode");
    calls_up(&lab, &eps, 8, &h, "survivable mode");

    // Leaving survivable mode: the restarted primary takes the four
    // calls gatekeepers had admitted (the H323Plus call and three lab
    // calls). The call the proxy set up itself between two of its
    // endpoints stays under its control: it has no gatekeeper leg to move.
    let gk1 = GnuGk::start(&peers, &lab.gk1, GK1, "GK1", Routing::Routed, "").unwrap();
    assert!(
        wait_for(30, || (moves_to(&proxy, "primary") > 3).then_some(())).is_some(),
        "no return from survivable mode:\n{}",
        proxy.log_text()
    );
    let left = Instant::now();
    let listed = wait_for(20, || (gk1.call_list().ok()?.len() == 4).then_some(()));
    assert!(
        listed.is_some(),
        "{}\n{}",
        gk1.status("c").unwrap_or_default(),
        proxy.log_text()
    );
    eprintln!(
        "out of survivable mode: the primary listed the 4 gatekeeper-admitted calls {:?} after control moved",
        left.elapsed()
    );
    calls_up(&lab, &eps, 8, &h, "after survivable mode");

    check_capture(&mut tshark, &cap, true);
}

/// The proxy's counter `key` on its "call signalling counters" line.
fn call_counter(proxy: &Proxy, key: &str) -> u64 {
    proxy.counter("call signalling counters", key).unwrap_or(0)
}

#[test]
fn gnugk_backup_takes_control_of_routed_calls_after_a_primary_sigkill() {
    const T: &str = "gnugk_backup_takes_control_of_routed_calls_after_a_primary_sigkill";
    if !privileged(T) {
        return;
    }
    let Some(peers) = peers(T) else { return };
    let Scene {
        lab,
        _h,
        mut gk1,
        gk2,
        proxy,
        mut eps,
        simple,
        mut tshark,
        cap,
        _dir,
    } = scene(&peers, Routing::Routed);
    let h = [&simple.0, &simple.1];
    assert_eq!(gk2.calls().unwrap(), 0, "the backup knows no call before");

    gk1.proc.kill9();
    assert!(
        proxy.wait_log(15, |l| l.contains("control moved")
            && l.contains("to=\"backup\"")),
        "no failover:\n{}",
        proxy.log_text()
    );
    let moved = Instant::now();
    // The backup lists both active calls: each re-admitted (ARQ with its
    // own callIdentifier) and its signalling set up again through the
    // backup, spliced onto the endpoint legs the proxy kept up.
    let listed = wait_for(20, || {
        let calls = gk2.call_list().ok()?;
        (calls.len() == 2).then_some(calls)
    });
    let took = moved.elapsed();
    let c = gk2.status("c").unwrap_or_default();
    let calls = listed.unwrap_or_else(|| {
        panic!(
            "the backup does not list both calls:\n{c}\n{}",
            proxy.log_text()
        )
    });
    eprintln!("GK2 listed {calls:?} {took:?} after control moved:\n{c}");
    assert!(
        wait_for(10, || (call_counter(&proxy, "reanchored") >= 2
            && call_counter(&proxy, "spliced") >= 2)
            .then_some(()))
        .is_some(),
        "both calls re-anchored by their calling side and spliced at their called side:\n{}",
        proxy.log_text()
    );
    hold(&lab, &eps, 2, &h, "calls under the backup's control", 90);
    assert_eq!(
        gk2.call_list().unwrap().len(),
        2,
        "{}",
        gk2.status("c").unwrap()
    );
    // Neither endpoint saw a message it had to answer: the callee accepted
    // one call, each side is in one.
    let count = |p: &LabProc, what: &str| p.lines().iter().filter(|l| l.contains(what)).count();
    assert_eq!(
        count(&simple.0, "Automatically accepting call"),
        1,
        "{:?}",
        simple.0.lines()
    );
    for p in h {
        assert_eq!(count(p, "In call with"), 1, "{:?}", p.lines());
    }

    // The backup's own "drop call" releases both H323Plus endpoints.
    let (n, _) = calls
        .iter()
        .find(|(_, dial)| dial.contains("2001"))
        .cloned()
        .unwrap_or_else(|| panic!("no call to 2001 at the backup: {calls:?}"));
    let _ = gk2.status(&format!("DisconnectCall {n}"));
    for p in h {
        assert!(
            wait_for(20, || p
                .lines()
                .iter()
                .any(|l| l.contains("cleared the call"))
                .then_some(()))
            .is_some(),
            "{} not released by the backup's DisconnectCall: {:?}",
            p.name(),
            p.lines()
        );
    }
    // A hang-up at one end reaches the other through the backup.
    eps.send("hangup 0");
    let s = eps
        .wait_for(20, "eps registered", |l| get(l, "calls_active") == 0)
        .expect("the lab call released at both ends");
    assert_eq!(get(&s, "calls_released"), 2, "{s}");
    assert_eq!(get(&s, "calls_dropped"), 0, "{s}");
    assert!(
        wait_for(10, || (gk2.calls().ok()? == 0).then_some(())).is_some(),
        "{}",
        gk2.status("c").unwrap()
    );
    check_capture(&mut tshark, &cap, true);
}

/// GnuGk ini lines writing a call detail record (its callIdentifier) to
/// `file` when a call ends.
fn cdr_ini(file: &std::path::Path) -> String {
    format!(
        "[Gatekeeper::Acct]\nFileAcct=optional;stop\n[FileAcct]\nDetailFile={}\nCDRString=%{{CallId}}\n",
        file.display()
    )
}

/// The callIdentifiers in a CDR file, each with how often it appears.
fn cdrs(file: &std::path::Path) -> std::collections::BTreeMap<String, usize> {
    let mut m = std::collections::BTreeMap::new();
    for l in std::fs::read_to_string(file).unwrap_or_default().lines() {
        if !l.trim().is_empty() {
            *m.entry(l.trim().to_string()).or_insert(0) += 1;
        }
    }
    m
}

#[test]
fn gnugk_backup_takes_control_after_a_partition_and_keeps_it_past_the_primarys_stale_records() {
    const T: &str =
        "gnugk_backup_takes_control_after_a_partition_and_keeps_it_past_the_primarys_stale_records";
    if !privileged(T) {
        return;
    }
    let Some(peers) = peers(T) else { return };
    let acct = tempfile::tempdir().unwrap();
    let (cdr1, cdr2) = (acct.path().join("gk1.cdr"), acct.path().join("gk2.cdr"));
    let Scene {
        lab,
        _h,
        gk1,
        gk2,
        proxy,
        mut eps,
        simple,
        mut tshark,
        cap,
        _dir,
    } = scene_with(
        &peers,
        Routing::Routed,
        [&cdr_ini(&cdr1), &cdr_ini(&cdr2)],
        |t| t,
    );
    let h = [&simple.0, &simple.1];
    let held_by_gk1 = gk1.call_list().unwrap();
    assert_eq!(held_by_gk1.len(), 2);

    // The primary's link cut, held 90 s: its legs die by TCP keepalive,
    // it keeps (stale) records of both calls.
    lab.px.ip(&["link", "set", "px1", "down"]).unwrap();
    assert!(
        proxy.wait_log(15, |l| l.contains("control moved")
            && l.contains("to=\"backup\"")),
        "no failover on partition:\n{}",
        proxy.log_text()
    );
    let moved = Instant::now();
    let listed = wait_for(20, || (gk2.call_list().ok()?.len() == 2).then_some(()));
    let took = moved.elapsed();
    assert!(
        listed.is_some(),
        "{}\n{}",
        gk2.status("c").unwrap(),
        proxy.log_text()
    );
    eprintln!("partition: GK2 listed both calls {took:?} after control moved");
    hold(
        &lab,
        &eps,
        2,
        &h,
        "primary partitioned, calls at the backup",
        90,
    );

    // The partition heals; control fails back to the primary after the
    // hold time. The calls stay with the backup, which is up and holds
    // them: no collision with the primary's stale records, no release.
    lab.px.ip(&["link", "set", "px1", "up"]).unwrap();
    assert!(
        wait_for(30, || (moves_to(&proxy, "primary") > 1).then_some(())).is_some(),
        "no fail back after the partition:\n{}",
        proxy.log_text()
    );
    all_listed(&gk1, &NUMBERS, 20);
    hold(&lab, &eps, 2, &h, "after fail back", 30);
    assert_eq!(
        gk2.call_list().unwrap().len(),
        2,
        "{}",
        gk2.status("c").unwrap()
    );
    let stale = gk1.call_list().unwrap();
    eprintln!("GK1 after the partition healed: {stale:?} (stale records of the calls it held)");
    // A new call goes through the primary again.
    eps.send("call 2 1004");
    eps.wait_for(20, "eps registered", |l| get(l, "calls_active") == 4)
        .expect("a new call through the primary");

    // Hang-ups through the backup: its DisconnectCall for the H323Plus
    // call, a lab endpoint's for the lab call; then the new call's.
    let calls = gk2.call_list().unwrap();
    let (n, _) = calls
        .iter()
        .find(|(_, d)| d.contains("2001"))
        .cloned()
        .unwrap();
    let _ = gk2.status(&format!("DisconnectCall {n}"));
    for p in h {
        assert!(
            wait_for(20, || p
                .lines()
                .iter()
                .any(|l| l.contains("cleared the call"))
                .then_some(()))
            .is_some(),
            "{}: {:?}",
            p.name(),
            p.lines()
        );
    }
    eps.send("hangup 0");
    eps.send("hangup 2");
    let s = eps
        .wait_for(20, "eps registered", |l| get(l, "calls_active") == 0)
        .expect("every lab call released at both ends");
    assert_eq!(get(&s, "calls_released"), 4, "{s}");
    assert_eq!(get(&s, "calls_dropped"), 0, "{s}");
    assert!(wait_for(10, || (gk2.calls().ok()? == 0).then_some(())).is_some());

    // Accounting: each call once per gatekeeper that held it. The backup
    // recorded the two calls it took over; the primary records the calls
    // it held once each (the stale ones when it drops them, at the latest
    // when their registrations' time to live ran out during the cut).
    let ids: Vec<String> = {
        let c2 = cdrs(&cdr2);
        assert_eq!(c2.len(), 2, "GK2 CDRs {c2:?}");
        assert!(
            c2.values().all(|&n| n == 1),
            "GK2 counted a call twice: {c2:?}"
        );
        c2.keys().cloned().collect()
    };
    let ok = wait_for(60, || {
        let c1 = cdrs(&cdr1);
        (ids.iter().all(|i| c1.get(i) == Some(&1))).then_some(c1)
    });
    let c1 = cdrs(&cdr1);
    eprintln!("CDRs: GK1 {c1:?}, GK2 {:?}", cdrs(&cdr2));
    assert!(
        ok.is_some(),
        "GK1 must count each call it held once: {c1:?}, GK2 {ids:?}"
    );
    assert!(
        c1.values().all(|&n| n == 1),
        "GK1 counted a call twice: {c1:?}"
    );
    check_capture(&mut tshark, &cap, true);
}

#[test]
fn gnugk_a_call_whose_callee_never_registers_at_the_backup_is_released_at_the_deadline() {
    const T: &str =
        "gnugk_a_call_whose_callee_never_registers_at_the_backup_is_released_at_the_deadline";
    if !privileged(T) {
        return;
    }
    let Some(peers) = peers(T) else { return };
    // The backup refuses to register 1002: the call 1001 -> 1002 cannot
    // be admitted there (ARJ, retried until the deadline).
    let refuse_1002 =
        "[Gatekeeper::Auth]\nAliasAuth=optional;RRQ\n[RasSrv::RRQAuth]\n1002=reject\n";
    let Scene {
        lab,
        _h,
        mut gk1,
        gk2,
        proxy,
        eps,
        simple,
        tshark: _tshark,
        cap: _cap,
        _dir,
    } = scene_with(&peers, Routing::Routed, ["", refuse_1002], |t| {
        format!("{t}\n[calls]\nreanchor_deadline_ms = 5000\nunanchored = \"release\"\n")
    });
    let h = [&simple.0, &simple.1];
    gk1.proc.kill9();
    assert!(
        proxy.wait_log(15, |l| l.contains("control moved")
            && l.contains("to=\"backup\"")),
        "no failover:\n{}",
        proxy.log_text()
    );
    // The H323Plus call is taken over; the lab call is not, and at the
    // deadline it is counted and released at both ends (policy release).
    assert!(wait_for(20, || (gk2.calls().ok()? == 1).then_some(())).is_some());
    let s = eps
        .wait_for(30, "eps registered", |l| get(l, "calls_active") == 0)
        .unwrap_or_else(|| {
            panic!(
                "the unanchored call was not released:\n{}",
                proxy.log_text()
            )
        });
    assert_eq!(get(&s, "calls_released"), 2, "released, not dropped: {s}");
    assert!(
        wait_for(5, || (proxy.counter("RAS counters", "unanchored")? >= 1
            && call_counter(&proxy, "unanchored") >= 1)
            .then_some(()))
        .is_some(),
        "not counted:\n{}",
        proxy.log_text()
    );
    let logged = proxy
        .log_text()
        .lines()
        .any(|l| l.contains("not taken over by the gatekeeper in control within the deadline"));
    assert!(logged, "{}", proxy.log_text());
    // The call the backup took stays up, 60 s.
    let until = Instant::now() + Duration::from_secs(60);
    while Instant::now() < until {
        std::thread::sleep(Duration::from_secs(10));
        let (a, b) = media_rate(&lab, 2);
        assert!(a >= 40 && b >= 40, "H323Plus media {a}/s {b}/s");
        for p in h {
            assert!(
                !p.lines().iter().any(|l| l.contains("cleared")),
                "{:?}",
                p.lines()
            );
        }
    }
    assert_eq!(gk2.calls().unwrap(), 1, "{}", gk2.status("c").unwrap());
}

#[test]
fn gnugk_direct_mode_calls_survive_a_primary_sigkill() {
    const T: &str = "gnugk_direct_mode_calls_survive_a_primary_sigkill";
    if !privileged(T) {
        return;
    }
    let Some(peers) = peers(T) else { return };
    let Scene {
        lab,
        _h,
        mut gk1,
        gk2,
        proxy,
        mut eps,
        simple,
        mut tshark,
        cap,
        _dir,
    } = scene(&peers, Routing::Direct);
    let h = [&simple.0, &simple.1];

    // 60 s of 5% loss and 20 ms +- 20 ms jitter each way on the primary's
    // link (NFQUEUE: this kernel has no netem). The primary never fails:
    // control must not move, every call stays up.
    let imp = Impairment::start(
        &lab.gk1,
        "gk0",
        0,
        Link {
            loss: 0.05,
            delay: Duration::from_millis(20),
            jitter: Duration::from_millis(20),
        },
        11,
    )
    .unwrap();
    hold(
        &lab,
        &eps,
        2,
        &h,
        "primary behind a lossy, jittery link",
        60,
    );
    let st = imp.stop().unwrap();
    eprintln!("impaired link: {} packets, {} dropped", st.seen, st.dropped);
    assert!(st.seen > 500 && st.dropped > 0, "{st:?}");
    assert_eq!(
        moves_to(&proxy, "backup"),
        0,
        "a false failover on a lossy link:\n{}",
        proxy.log_text()
    );
    gk1.proc.kill9();
    assert!(
        proxy.wait_log(15, |l| l.contains("control moved")
            && l.contains("to=\"backup\"")),
        "no failover:\n{}",
        proxy.log_text()
    );
    // Each active call admitted again at the backup (ARQs from both ends
    // with its callIdentifier): it lists both, as one call each.
    let listed = wait_for(20, || (gk2.call_list().ok()?.len() == 2).then_some(()));
    let c = gk2.status("c").unwrap_or_default();
    assert!(
        listed.is_some(),
        "the backup does not list both direct calls:\n{c}"
    );
    eprintln!("GK2 `c` (direct) after failover:\n{c}");
    hold(&lab, &eps, 2, &h, "direct mode, primary SIGKILLed", 90);
    assert_eq!(
        gk2.call_list().unwrap().len(),
        2,
        "{}",
        gk2.status("c").unwrap()
    );
    let after = all_listed(&gk2, &NUMBERS, 10);
    eprintln!("GK2 status `r` (direct) after failover:\n{after}");
    eps.send("call 2 1004");
    eps.wait_for(20, "eps registered", |l| get(l, "calls_active") == 4)
        .expect("a new call through the backup");
    assert_eq!(gk2.calls().unwrap(), 3, "{}", gk2.status("c").unwrap());
    check_capture(&mut tshark, &cap, false);
}

/// Stop the capture: tshark reads every captured RAS and call-signalling
/// packet on the gatekeeper side (RAS on the endpoints' own ports decoded
/// as such; Q.931 over TPKT is found by tshark's heuristic on any port)
/// without a malformed one.
/// `routed`: the call signalling crossed the gatekeeper side (in direct
/// mode it stays between the proxy and its endpoints).
fn check_capture(tshark: &mut LabProc, cap: &std::path::Path, routed: bool) {
    unsafe { libc::kill(tshark.pid() as i32, libc::SIGINT) };
    let _ = wait_for(10, || tshark.exited());
    let read = |filter: &str| {
        let out = std::process::Command::new("tshark")
            .args(["-n", "-r"])
            .arg(cap)
            .args(["-d", "udp.port==20000-29999,h225"])
            .args(["-Y", filter])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "tshark: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let ras = read("h225.RasMessage").lines().count();
    let q931 = read("q931").lines().count();
    let bad = read("_ws.malformed or _ws.expert.severity == error");
    eprintln!(
        "tshark: {ras} RAS and {q931} Q.931 packets on the gatekeeper side, {} malformed or in error",
        bad.lines().count()
    );
    assert!(ras > 50, "tshark dissected too few RAS packets");
    assert!(
        !routed || q931 > 5,
        "tshark dissected too few Q.931 packets"
    );
    assert!(bad.is_empty(), "malformed packets:\n{bad}");
}

#[test]
fn authenticated_gnugk_registrations_admissions_and_reregistration_at_the_backup() {
    const T: &str = "authenticated_gnugk_registrations_admissions_and_reregistration_at_the_backup";
    if !privileged(T) {
        return;
    }
    let Some(peers) = peers(T) else { return };
    let lab = Lab::create().unwrap();
    let h1 = h323plus_host(&lab, "px3", 4);
    let h2 = h323plus_host(&lab, "px4", 5);
    for (ns, ip) in [
        (&h1, "198.18.4.3/24"),
        (&h2, "198.18.5.3/24"),
        (&h2, "198.18.5.4/24"),
    ] {
        ns.ip(&["addr", "add", ip, "dev", "eth0"]).unwrap();
    }
    let users = [
        ("LAB-PROXY", "proxy-pw"),
        ("2001", "pw-2001"),
        ("2002", "pw-2002"),
        ("2003", "pw-2003"),
        ("2004", "pw-2004"),
        ("1001", "pw-1001"),
        ("1002", "pw-1002"),
    ];
    let gk = |ns: &Netns, ip, name| {
        GnuGk::start_authenticating(&peers, ns, ip, name, Routing::Routed, "", &users).unwrap()
    };
    let mut gk1 = gk(&lab.gk1, GK1, "GK1");
    let gk2 = gk(&lab.gk2, GK2, "GK2");
    // The proxy holds its own password and its endpoints' and authenticates
    // for them: the H323Plus endpoints send no tokens themselves (with a
    // password, H323Plus accepts only H.235.1-signed answers, which the
    // proxy does not make yet). Lab endpoint 1002 has no credentials and
    // must be refused, 1001 has.
    let proxy = Proxy::start_tweaked(&lab, 2000, None, |t| {
        let creds: String = ["2001", "2002", "2003", "2004", "1001"]
            .iter()
            .map(|a| format!("[[credentials]]\nalias = \"{a}\"\npassword = \"pw-{a}\"\n"))
            .collect();
        format!(
            "{}{creds}",
            t.replace(
                "state_dir = \"\"",
                "state_dir = \"\"\npassword = \"proxy-pw\""
            )
            .replace("interval_ms = 40", "interval_ms = 200")
            .replace("multiplier = 3", "multiplier = 5")
        )
    });
    let ep = |ns: &Netns, ip: &str, n: &str, dial: Option<&str>| {
        simple(&peers, ns, PX_EP, ip.parse().unwrap(), n, dial, None).unwrap()
    };
    let s2001 = ep(&h1, "198.18.4.2", "2001", None);
    let _s2004 = ep(&h1, "198.18.4.3", "2004", None);
    all_listed(&gk1, &["2001", "2004"], 30);
    let eps = lab_endpoints(&lab, 2, 0);
    all_listed(&gk1, &["1001"], 30);
    std::thread::sleep(Duration::from_secs(3));
    let s = eps.last("eps registered").unwrap_or_default();
    assert_eq!(
        get(&s, "registered"),
        1,
        "1002 (no credentials) refused: {s}"
    );
    let s2002 = ep(&h2, "198.18.5.2", "2002", Some("2001"));
    assert!(
        s2002.wait_for(30, "In call with 2001", |_| true).is_some(),
        "the authenticated call did not come up: {:?}",
        s2002.lines()
    );
    let before = all_listed(&gk1, &["2001", "2002", "2004"], 10);
    eprintln!("GK1 (authenticating) `r`:\n{before}");

    gk1.proc.kill9();
    assert!(
        proxy.wait_log(15, |l| l.contains("control moved")
            && l.contains("to=\"backup\"")),
        "no failover:\n{}",
        proxy.log_text()
    );
    // Re-registered at the backup with tokens the proxy made.
    let after = all_listed(&gk2, &["2001", "2002", "2004"], 20);
    eprintln!("GK2 (authenticating) `r` after failover:\n{after}");
    // A new endpoint registers and calls through the backup, both ARQs
    // authenticated.
    let s2003 = ep(&h2, "198.18.5.3", "2003", Some("2004"));
    assert!(
        s2003.wait_for(30, "In call with 2004", |_| true).is_some(),
        "no authenticated call through the backup: {:?}",
        s2003.lines()
    );
    assert!(gk2.calls().unwrap() >= 1, "{}", gk2.status("c").unwrap());
    for p in [&s2001, &s2002] {
        assert!(
            !p.lines().iter().any(|l| l.contains("cleared")),
            "{}: {:?}",
            p.name(),
            p.lines()
        );
    }
}

/// `numbers` are registered at `gk`, each with a callSignalAddress on
/// `via` (the gatekeeper side of the proxy that fronts it).
fn listed_via(gk: &GnuGk, numbers: &[(&str, &str)], secs: u64) {
    let ok = wait_for(secs, || {
        let regs = gk.registrations().ok()?;
        numbers
            .iter()
            .all(|(n, via)| {
                regs.iter().any(|(cs, aliases, _)| {
                    cs.starts_with(&format!("{via}:"))
                        && aliases
                            .split([',', '='])
                            .any(|a| a.split(':').next() == Some(n))
                })
            })
            .then_some(())
    });
    assert!(
        ok.is_some(),
        "{numbers:?} not listed at {}:\n{}",
        gk.proc.name(),
        gk.status("r").unwrap_or_default()
    );
}

/// Calls across two proxies in front of the same two GnuGks: 2002 behind
/// the second proxy calls 2001 behind the first, 2003 behind the first
/// calls 2004 behind the second. The primary is SIGKILLed mid-call; the
/// calling side's proxy of each call re-establishes it through the
/// backup, the called side's proxy splices it onto the endpoint leg it
/// kept. Held 90 s; then the backup's DisconnectCall releases one call
/// at both ends and a hang-up by the other call's callee reaches its
/// caller through the backup and both proxies. A capture on every
/// endpoint link shows that no endpoint saw a call signalling message
/// other than the far end's tunnelled H.245 between the fault and the
/// hang-ups.
///
/// ```text
///  simple 2001 198.18.4.2 ─px3┐                        ┌py0─ 198.18.8.2 simple 2002
///  simple 2003 198.18.5.2 ─px4┤ px ─ GK1, GK2 ─ py ├py3─ 198.18.9.2 simple 2004
/// ```
#[test]
fn gnugk_calls_across_two_proxies_are_taken_over_by_the_backup_after_a_sigkill() {
    two_proxies(
        "gnugk_calls_across_two_proxies_are_taken_over_by_the_backup_after_a_sigkill",
        Fault::Kill,
    );
}

/// As the SIGKILL case, the primary cut off from both proxies instead;
/// the cut heals after 90 s and control fails back, the calls staying
/// with the backup past the primary's stale records.
#[test]
fn gnugk_calls_across_two_proxies_are_taken_over_by_the_backup_after_a_partition() {
    two_proxies(
        "gnugk_calls_across_two_proxies_are_taken_over_by_the_backup_after_a_partition",
        Fault::Partition,
    );
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Fault {
    Kill,
    Partition,
}

/// Seconds since the Unix epoch (as tshark's frame.time_epoch).
fn epoch() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Q.931 message types (SETUP 0x05, CONNECT 0x07, FACILITY 0x62...) sent
/// to `hosts` between `from` and `to` (epoch
/// seconds) in the capture `cap`, with their counts.
fn q931_to(
    cap: &std::path::Path,
    hosts: &[&str],
    from: f64,
    to: f64,
) -> std::collections::BTreeMap<u8, usize> {
    let dst = hosts.join(", ");
    let out = std::process::Command::new("tshark")
        .args(["-n", "-r"])
        .arg(cap)
        .args([
            "-Y",
            &format!(
                "q931 && ip.dst in {{{dst}}} && frame.time_epoch >= {from} && frame.time_epoch <= {to}"
            ),
        ])
        .args(["-T", "fields", "-e", "q931.message_type"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tshark: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut m = std::collections::BTreeMap::new();
    for t in String::from_utf8_lossy(&out.stdout)
        .lines()
        .flat_map(|l| l.split(','))
    {
        // BASE_HEX fields print as 0x.., older tshark print decimal.
        let t = t.trim();
        let v = match t.strip_prefix("0x") {
            Some(h) => u8::from_str_radix(h, 16),
            None => t.parse(),
        };
        *m.entry(v.unwrap_or_else(|_| panic!("message type {t:?}")))
            .or_default() += 1;
    }
    m
}

fn two_proxies(name: &str, fault: Fault) {
    if !privileged(name) {
        return;
    }
    let Some(peers) = peers(name) else { return };
    let lab = Lab::create().unwrap();
    let second = lab.second_proxy().unwrap();
    let h1 = h323plus_host(&lab, "px3", 4);
    let h3 = h323plus_host(&lab, "px4", 5);
    // A second host behind the second proxy.
    let h4 = Netns::create("h9").unwrap();
    veth(&second.py, "py3", &h4, "eth0").unwrap();
    second
        .py
        .ip(&["addr", "add", "198.18.9.1/24", "dev", "py3"])
        .unwrap();
    h4.ip(&["addr", "add", "198.18.9.2/24", "dev", "eth0"])
        .unwrap();
    h4.ip(&["route", "add", "198.18.0.0/15", "via", "198.18.9.1"])
        .unwrap();
    lab.gk2
        .ip(&["route", "add", "198.18.9.0/24", "via", "198.18.7.1"])
        .unwrap();
    lab.px
        .ip(&["route", "add", "198.18.9.0/24", "via", "198.18.3.10"])
        .unwrap();

    // Every packet on the endpoints' links, for tshark.
    let dir = tempfile::tempdir().unwrap();
    let caps = [
        dir.path().join("px-eps.pcapng"),
        dir.path().join("py-eps.pcapng"),
    ];
    let mut tsharks = [
        (&lab.px, ["px3", "px4"], &caps[0]),
        (&second.py, ["py0", "py3"], &caps[1]),
    ]
    .map(|(ns, [i1, i2], cap)| {
        let mut c = ns.command("tshark").unwrap();
        c.args(["-q", "-n", "-i", i1, "-i", i2, "-w"])
            .arg(cap)
            .stderr(Stdio::null());
        LabProc::spawn("tshark", c).unwrap()
    });
    // Capturing before anything is sent (the checks below need the calls'
    // set-up in the capture): dumpcap writes the file once its
    // interfaces are open.
    for cap in &caps {
        assert!(
            wait_for(20, || (std::fs::metadata(cap).ok()?.len() > 0)
                .then_some(()))
            .is_some(),
            "tshark did not start capturing into {}",
            cap.display()
        );
    }
    std::thread::sleep(Duration::from_millis(500));
    let mut gk1 = GnuGk::start(&peers, &lab.gk1, GK1, "GK1", Routing::Routed, "").unwrap();
    let gk2 = GnuGk::start(&peers, &lab.gk2, GK2, "GK2", Routing::Routed, "").unwrap();
    let px = Proxy::start_tweaked(&lab, 2000, None, |t| t);
    let py = {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("proxy.toml");
        let instance = proxy_lab::netns::unique_name("i");
        let text = proxy_lab::topology::second_proxy_toml(&instance, 2000);
        Proxy::start_in(&second.py, dir, cfg, instance, text)
    };
    let (px_ep, py_ep) = (PX_EP, proxy_lab::topology::PY_EP);
    let mut s2001 = simple(
        &peers,
        &h1,
        px_ep,
        "198.18.4.2".parse().unwrap(),
        "2001",
        None,
        None,
    )
    .unwrap();
    let s2004 = simple(
        &peers,
        &h4,
        py_ep,
        "198.18.9.2".parse().unwrap(),
        "2004",
        None,
        None,
    )
    .unwrap();
    listed_via(&gk1, &[("2001", "198.18.2.1"), ("2004", "198.18.6.1")], 30);
    let s2002 = simple(
        &peers,
        &second.host,
        py_ep,
        "198.18.8.2".parse().unwrap(),
        "2002",
        Some("2001"),
        None,
    )
    .unwrap();
    let s2003 = simple(
        &peers,
        &h3,
        px_ep,
        "198.18.5.2".parse().unwrap(),
        "2003",
        Some("2004"),
        None,
    )
    .unwrap();
    for (p, to) in [(&s2002, "2001"), (&s2003, "2004")] {
        assert!(
            p.wait_for(30, &format!("In call with {to}"), |_| true)
                .is_some(),
            "{}: the call did not come up: {:?}\n{}\n{}",
            p.name(),
            p.lines(),
            px.log_text(),
            py.log_text()
        );
    }
    assert!(wait_for(10, || (gk1.calls().ok()? == 2).then_some(())).is_some());
    let all = [&s2001, &s2002, &s2003, &s2004];
    // RTP arriving at each proxy from each H323Plus host.
    let rx = |what: &str| {
        let devs = [
            (&lab.px, "px3"),
            (&lab.px, "px4"),
            (&second.py, "py0"),
            (&second.py, "py3"),
        ];
        let a: Vec<u64> = devs.iter().map(|(n, d)| rx_packets(n, d)).collect();
        std::thread::sleep(Duration::from_secs(3));
        let rates: Vec<u64> = devs
            .iter()
            .zip(&a)
            .map(|((n, d), a)| (rx_packets(n, d) - a) / 3)
            .collect();
        assert!(rates.iter().all(|&r| r >= 40), "{what}: RTP {rates:?}/s");
        for p in all {
            let cleared: Vec<String> = p
                .lines()
                .into_iter()
                .filter(|l| l.contains("cleared"))
                .collect();
            assert!(cleared.is_empty(), "{what}: {} {cleared:?}", p.name());
        }
        eprintln!("{what}: RTP from 2001, 2003, 2002, 2004 {rates:?}/s");
    };
    rx("before the fault");

    let fault_at = epoch();
    match fault {
        Fault::Kill => gk1.proc.kill9(),
        Fault::Partition => {
            for dev in ["gk0", "gk1b"] {
                lab.gk1.ip(&["link", "set", dev, "down"]).unwrap();
            }
        }
    }
    let killed = Instant::now();
    for p in [&px, &py] {
        assert!(
            p.wait_log(15, |l| l.contains("control moved")
                && l.contains("to=\"backup\"")),
            "no failover:\n{}",
            p.log_text()
        );
    }
    let listed = wait_for(20, || (gk2.call_list().ok()?.len() == 2).then_some(()));
    assert!(
        listed.is_some(),
        "{}\n{}\n{}",
        gk2.status("c").unwrap_or_default(),
        px.log_text(),
        py.log_text()
    );
    eprintln!(
        "two proxies, {fault:?}: GK2 listed both calls {:?} after the fault",
        killed.elapsed()
    );
    let until = Instant::now() + Duration::from_secs(90);
    while Instant::now() < until {
        std::thread::sleep(Duration::from_secs(7));
        rx("primary killed, calls at the backup");
    }
    if fault == Fault::Partition {
        // The cut heals: control fails back to the primary; the calls
        // stay with the backup, which holds them.
        for dev in ["gk0", "gk1b"] {
            lab.gk1.ip(&["link", "set", dev, "up"]).unwrap();
        }
        for p in [&px, &py] {
            assert!(
                wait_for(30, || (moves_to(p, "primary") > 1).then_some(())).is_some(),
                "no fail back after the partition:\n{}",
                p.log_text()
            );
        }
        listed_via(&gk1, &[("2001", "198.18.2.1"), ("2004", "198.18.6.1")], 30);
        let until = Instant::now() + Duration::from_secs(20);
        while Instant::now() < until {
            std::thread::sleep(Duration::from_secs(7));
            rx("after fail back");
        }
        assert_eq!(gk2.call_list().unwrap().len(), 2);
        eprintln!(
            "GK1 calls after the partition healed: {:?}",
            gk1.call_list().unwrap_or_default()
        );
    }
    let hangups_at = epoch();
    for (p, key) in [(&px, "spliced"), (&py, "reanchored")] {
        assert!(
            call_counter(p, key) >= 1,
            "no call {key} on this proxy:\n{}",
            p.log_text()
        );
    }

    // The backup's DisconnectCall releases 2002 -> 2001 at both ends.
    let calls = gk2.call_list().unwrap();
    let (n, _) = calls
        .iter()
        .find(|(_, d)| d.contains("2001"))
        .cloned()
        .unwrap_or_else(|| panic!("{calls:?}"));
    let _ = gk2.status(&format!("DisconnectCall {n}"));
    for p in [&s2001, &s2002] {
        assert!(
            wait_for(20, || p
                .lines()
                .iter()
                .any(|l| l.contains("cleared the call"))
                .then_some(()))
            .is_some(),
            "{}: {:?}",
            p.name(),
            p.lines()
        );
    }
    // 2004 (the called side, behind the second proxy) hangs up: 2003
    // behind the first proxy hears it through the backup.
    let mut s2004 = s2004;
    s2004.send("H");
    // The endpoint that hangs up prints "completed", its peer "... has
    // cleared the call".
    for (p, says) in [(&s2003, "cleared the call"), (&s2004, "completed")] {
        assert!(
            wait_for(20, || p
                .lines()
                .iter()
                .any(|l| l.contains(says))
                .then_some(()))
            .is_some(),
            "{}: {:?}\n{}\n{}",
            p.name(),
            p.lines(),
            px.log_text(),
            py.log_text()
        );
    }
    assert!(wait_for(10, || (gk2.calls().ok()? == 0).then_some(())).is_some());
    s2001.send("X");

    // What reached the endpoints from the fault to the hang-ups: only the
    // far ends' tunnelled H.245 (FACILITY), nothing to answer.
    for t in &mut tsharks {
        unsafe { libc::kill(t.pid() as i32, libc::SIGINT) };
        let _ = wait_for(10, || t.exited());
    }
    let hosts = ["198.18.4.2", "198.18.5.2", "198.18.8.2", "198.18.9.2"];
    for cap in &caps {
        let before = q931_to(cap, &hosts, 0.0, fault_at);
        assert!(
            before.contains_key(&0x05) && before.contains_key(&0x07),
            "the capture has the calls' set-up: {before:?}"
        );
        let seen = q931_to(cap, &hosts, fault_at, hangups_at);
        eprintln!("to the endpoints during the fault: {seen:?} (Q.931 message type: count)");
        assert!(
            seen.keys().all(|&t| t == 0x62),
            "an endpoint saw more than the far end's FACILITY: {seen:?}"
        );
    }
}

/// GnuGk's RTP proxy carries the H323Plus call's media (`[Proxy]`): when
/// that gatekeeper is SIGKILLed the call is silent, and the proxy
/// releases it at both ends with cause 38 instead of keeping it up. The
/// lab call, whose media goes endpoint to endpoint, is taken over by the
/// backup as usual.
#[test]
fn gnugk_a_call_whose_media_the_dead_gatekeeper_proxied_is_released_not_kept_silent() {
    const T: &str =
        "gnugk_a_call_whose_media_the_dead_gatekeeper_proxied_is_released_not_kept_silent";
    if !privileged(T) {
        return;
    }
    let Some(peers) = peers(T) else { return };
    let rtp_proxy = "[Proxy]\nEnable=1\nProxyAlways=1\n";
    let Scene {
        lab,
        _h,
        mut gk1,
        gk2,
        proxy,
        eps,
        simple,
        tshark: _tshark,
        cap: _cap,
        _dir,
    } = scene_with(&peers, Routing::Routed, [rtp_proxy, ""], |t| t);
    // Independent check that GK1 relays the media: both streams cross
    // the proxy host's link to it, in and out.
    let before = rx_packets(&lab.px, "px1");
    std::thread::sleep(Duration::from_secs(2));
    let via_gk1 = (rx_packets(&lab.px, "px1") - before) / 2;
    assert!(via_gk1 >= 80, "RTP from GK1's proxy {via_gk1}/s");
    eprintln!("RTP arriving from GK1's RTP proxy: {via_gk1}/s");
    let seen = wait_for(10, || {
        proxy
            .log_text()
            .lines()
            .any(|l| l.contains("media passes through the gatekeeper"))
            .then_some(())
    });
    assert!(seen.is_some(), "{}", proxy.log_text());

    gk1.proc.kill9();
    let killed = Instant::now();
    for p in [&simple.0, &simple.1] {
        assert!(
            wait_for(20, || p
                .lines()
                .iter()
                .any(|l| l.contains("cleared the call"))
                .then_some(()))
            .is_some(),
            "{} kept a silent call: {:?}\n{}",
            p.name(),
            p.lines(),
            proxy.log_text()
        );
    }
    eprintln!(
        "both H323Plus endpoints released {:?} after the kill",
        killed.elapsed()
    );
    assert!(
        wait_for(5, || (call_counter(&proxy, "media_lost") >= 1)
            .then_some(()))
        .is_some(),
        "{}",
        proxy.log_text()
    );
    let cause38 = proxy
        .log_text()
        .lines()
        .any(|l| l.contains("went away; releasing the call") && l.contains("cause=38"));
    assert!(cause38, "{}", proxy.log_text());
    // The lab call is not touched: taken over by the backup, held 60 s.
    assert!(wait_for(20, || (gk2.calls().ok()? == 1).then_some(())).is_some());
    let until = Instant::now() + Duration::from_secs(60);
    while Instant::now() < until {
        std::thread::sleep(Duration::from_secs(10));
        let s = eps.last("eps registered").unwrap_or_default();
        assert_eq!(get(&s, "calls_active"), 2, "{s}");
        assert_eq!(get(&s, "calls_dropped"), 0, "{s}");
        assert_eq!(get(&s, "rtp_lost"), 0, "{s}");
    }
    assert_eq!(gk2.calls().unwrap(), 1, "{}", gk2.status("c").unwrap());
}
