//! Root tests of `[redundancy]`: a proxy node following keepalived (VRRPv3)
//! in the namespace lab. keepalived runs in the proxy's namespace on the
//! configuration `proxy redundancy keepalived-config` writes; the daemon
//! follows the state keepalived reports through the notify FIFO.

use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::time::Duration;

use proxy_lab::process::LabProc;
use proxy_lab::topology::{GK1, GK2, Lab, PX_EP};
use proxy_tests::{
    Proxy, bin, endpoints, gatekeeper, get, metric, privileged, scrape, wait_for, wait_status,
};

use proxy_lab::topology::{VIP, VRID};

/// Whether keepalived is here; in CI it must be (`cargo xtask setup`
/// installs it).
fn have_keepalived(test: &str) -> bool {
    if Command::new("keepalived")
        .arg("--version")
        .stderr(Stdio::null())
        .status()
        .is_ok()
    {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{test}: keepalived missing in CI"
    );
    eprintln!("SKIP {test}: keepalived not installed (run `cargo xtask setup`)");
    false
}

/// keepalived, stopped with SIGTERM (so it takes its macvlan and address
/// away) when the test ends, however it ends.
struct Keepalived(LabProc, std::path::PathBuf);

impl Keepalived {
    /// The VRRP process keepalived started (from its pid file).
    fn vrrp_pid(&self) -> Option<i32> {
        std::fs::read_to_string(&self.1)
            .ok()
            .and_then(|p| p.trim().parse().ok())
    }

    /// SIGKILL it and its VRRP process (a node dying).
    fn kill9(&mut self) {
        if let Some(pid) = self.vrrp_pid() {
            // SAFETY: kill(2) on the VRRP process keepalived started.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        self.0.kill9();
    }
}

impl Drop for Keepalived {
    fn drop(&mut self) {
        let _ = self.0.terminate(5);
        // Its VRRP process, should it have outlived it.
        if let Some(pid) = self.vrrp_pid() {
            // SAFETY: kill(2) on the VRRP process keepalived started.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// A path removed when the test ends.
struct Removed(std::path::PathBuf);

impl Drop for Removed {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A node's configuration made a pair member (preemption off, 50 ms
/// adverts).
fn pair_member(
    text: String,
    own: Ipv4Addr,
    iface: &str,
    priority: u8,
    peer: Option<Ipv4Addr>,
    fifo: &std::path::Path,
) -> String {
    proxy_lab::topology::pair_toml(text, own, iface, priority, false, peer, 50, fifo)
}

/// One node with the fast path, its endpoint address the virtual one,
/// keepalived's FIFO at `fifo`.
fn node(lab: &Lab, fifo: &std::path::Path) -> Proxy {
    Proxy::start_tweaked(lab, 5000, Some("px0"), |t| {
        pair_member(t, PX_EP, "px0", 150, None, fifo)
    })
}

/// Write keepalived's configuration for `proxy` (as `proxy redundancy
/// keepalived-config` does), check it with keepalived, and start keepalived
/// in `ns`.
fn start_keepalived(ns: &proxy_lab::netns::Netns, proxy: &Proxy) -> Keepalived {
    let dir = proxy.dir.path();
    let conf = dir.join("keepalived.conf");
    let out = Command::new(bin("proxy"))
        .args(["redundancy", "keepalived-config", "--config"])
        .arg(dir.join("proxy.toml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(&conf, &out.stdout).unwrap();
    let check = ns
        .command("keepalived")
        .unwrap()
        .arg("--config-test")
        .arg("-f")
        .arg(&conf)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "keepalived refuses the configuration:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    let mut c = ns.command("keepalived").unwrap();
    c.args(["--dont-fork", "--log-console", "--log-detail", "--vrrp"])
        .arg("-f")
        .arg(&conf)
        .arg("-p")
        .arg(dir.join("keepalived.pid"))
        .arg("-r")
        .arg(dir.join("vrrp.pid"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("keepalived.log")).unwrap());
    Keepalived(
        LabProc::spawn("keepalived", c).unwrap(),
        dir.join("vrrp.pid"),
    )
}

/// keepalived's log of `proxy`'s node.
fn keepalived_log(proxy: &Proxy) -> String {
    std::fs::read_to_string(proxy.dir.path().join("keepalived.log")).unwrap_or_default()
}

/// `ip -o` output in the proxy's namespace.
fn ip_show(lab: &Lab, args: &[&str]) -> String {
    let out = lab.px.command("ip").unwrap().args(args).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A single node: keepalived makes it master, the daemon hears it through
/// the FIFO and lets the kernel answer on the virtual address (frames to
/// the virtual MAC, which keepalived's macvlan carries, reach XDP on the
/// parent interface and are answered from it); keepalived stops, the node
/// is the standby and the kernel answers nothing more.
#[test]
fn a_node_follows_keepalived_and_answers_on_the_virtual_address_only_as_master() {
    let test = "a_node_follows_keepalived_and_answers_on_the_virtual_address_only_as_master";
    if !privileged(test) || !have_keepalived(test) {
        return;
    }
    let lab = Lab::create().unwrap();
    let _gk1 = gatekeeper(&lab.gk1, GK1, "GK-A", Some(GK2));
    let _gk2 = gatekeeper(&lab.gk2, GK2, "GK-B", None);
    let fifo = std::env::temp_dir().join(proxy_lab::netns::unique_name("vrrp") + ".fifo");
    let _fifo = Removed(fifo.clone());
    let proxy = node(&lab, &fifo);
    assert!(
        proxy
            .log_text()
            .contains("redundancy: standby until keepalived"),
        "{}",
        proxy.log_text()
    );
    let settings = || proxy_user::fastpath::settings_from_pins(&proxy.instance).unwrap();
    assert_eq!(settings().standby, 1, "a node starts as the standby");
    // keepalived's configuration, as the daemon writes it, checked by
    // keepalived itself.
    let keepalived = start_keepalived(&lab.px, &proxy);
    let klog = || keepalived_log(&proxy);
    assert!(
        proxy.wait_log(10, |l| l.contains("redundancy: role changed")
            && l.contains("master")),
        "the daemon did not become master:\n{}\nkeepalived:\n{}",
        proxy.log_text(),
        klog()
    );
    assert_eq!(settings().standby, 0, "the master's kernel answers");
    // keepalived put the address on its macvlan, with the virtual MAC.
    let vmac_if = format!("vrrp.{VRID}");
    let link = ip_show(&lab, &["-o", "link", "show", &vmac_if]);
    assert!(
        link.contains(&format!("00:00:5e:00:01:{VRID:02x}")),
        "{link}\n{}",
        klog()
    );
    let addr = ip_show(&lab, &["-o", "addr", "show", "dev", &vmac_if]);
    assert!(addr.contains(&VIP.to_string()), "{addr}");
    // Endpoints register and call through the virtual address; the kernel
    // answers their keepalives, sent to the virtual MAC.
    let eps = endpoints(&lab, VIP, 4, 2);
    wait_status(&eps, 20, |l| {
        get(l, "registered") == 4 && get(l, "calls_active") == 4
    });
    let answered = |m: &str| {
        metric(
            m,
            r#"h323proxy_fastpath_keepalives_total{outcome="answered"}"#,
        )
    };
    let a0 = answered(&scrape(&lab));
    std::thread::sleep(Duration::from_secs(3));
    let m = scrape(&lab);
    let a1 = answered(&m);
    assert!(a1 > a0, "the kernel did not answer on the virtual address");
    assert_eq!(metric(&m, r#"h323proxy_redundancy_role{role="master"}"#), 1);
    assert_eq!(metric(&m, "h323proxy_redundancy_takeovers_total"), 1);
    let status = proxy_tests::status(&eps);
    assert_eq!(get(&status, "keepalives_unanswered"), 0, "{status}");
    // keepalived stops: the address goes, and the node is the standby.
    drop(keepalived);
    assert!(
        proxy.wait_log(10, |l| l.contains("redundancy: role changed")
            && l.contains("standby")),
        "the daemon did not become the standby:\n{}\nkeepalived:\n{}",
        proxy.log_text(),
        klog()
    );
    assert_eq!(settings().standby, 1);
    let m = scrape(&lab);
    assert_eq!(
        metric(&m, r#"h323proxy_redundancy_role{role="standby"}"#),
        1
    );
    assert!(
        wait_for(10, || {
            let a = ip_show(&lab, &["-o", "addr"]);
            (!a.contains(&VIP.to_string())).then_some(())
        })
        .is_some(),
        "the virtual address stayed"
    );
    eprintln!(
        "redundancy: master after keepalived started, the kernel answered {} keepalives on {VIP} (virtual MAC 00:00:5e:00:01:{VRID:02x}); standby after it stopped",
        a1 - a0
    );
}

/// A pair: node A (priority 150) and node B (100) on the endpoints' LAN,
/// adverts unicast between them. Endpoints register through the virtual
/// address at A. A dies (its link down, then SIGKILL of its keepalived and
/// daemon): B becomes master (how fast is `h323-lab bench --pair-only`'s
/// business, not a test's), answers on the virtual address,
/// and the endpoints, whose keepalives B does not know (registrations are
/// not replicated yet), register again through it.
#[test]
fn a_pair_moves_the_virtual_address_to_the_standby_when_the_active_node_dies() {
    let test = "a_pair_moves_the_virtual_address_to_the_standby_when_the_active_node_dies";
    if !privileged(test) || !have_keepalived(test) {
        return;
    }
    use proxy_lab::topology::{PB_EP, standby_node_toml};
    let lab = Lab::create().unwrap();
    let sb = lab.standby_node().unwrap();
    let _gk1 = gatekeeper(&lab.gk1, GK1, "GK-A", Some(GK2));
    let _gk2 = gatekeeper(&lab.gk2, GK2, "GK-B", None);
    let fifo_a = std::env::temp_dir().join(proxy_lab::netns::unique_name("vrrpa") + ".fifo");
    let fifo_b = std::env::temp_dir().join(proxy_lab::netns::unique_name("vrrpb") + ".fifo");
    let (_ra, _rb) = (Removed(fifo_a.clone()), Removed(fifo_b.clone()));
    let mut a = Proxy::start_tweaked(&lab, 5000, Some("px0"), |t| {
        pair_member(t, PX_EP, "px0", 150, Some(PB_EP), &fifo_a)
    });
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("proxy.toml");
    let instance = proxy_lab::netns::unique_name("b");
    let text = pair_member(
        standby_node_toml(&instance, 5000),
        PB_EP,
        "pb0",
        100,
        Some(PX_EP),
        &fifo_b,
    );
    let b = Proxy::start_in(&sb.pb, dir, cfg, instance, text);
    // A first: without preemption whichever node is master first stays
    // master, so starting both at once would race.
    let mut ka = start_keepalived(&lab.px, &a);
    assert!(
        a.wait_log(10, |l| l.contains("redundancy: role changed")
            && l.contains("master")),
        "A did not become master:\n{}\nkeepalived A:\n{}",
        a.log_text(),
        keepalived_log(&a),
    );
    let _kb = start_keepalived(&sb.pb, &b);
    assert!(
        b.wait_log(10, |l| l.contains("redundancy role")
            && l.contains("BACKUP")),
        "B is not the backup:\n{}\nkeepalived B:\n{}",
        b.log_text(),
        keepalived_log(&b)
    );
    let eps = endpoints(&lab, VIP, 4, 0);
    wait_status(&eps, 20, |l| get(l, "registered") == 4);
    assert!(a.kernel_answers(10), "{}", a.log_text());
    let scrape_b = || proxy_lab::process::scrape(&sb.pb, "127.0.0.1:9719").unwrap();
    assert_eq!(metric(&scrape_b(), "h323proxy_registrations"), 0);
    // A's node dies.
    let died = std::time::Instant::now();
    lab.px.ip(&["link", "set", "px0", "down"]).unwrap();
    ka.kill9();
    a.proc.kill9();
    let took = wait_for(10, || {
        b.log_text()
            .contains("redundancy: role changed")
            .then(|| died.elapsed())
    })
    .unwrap_or_else(|| {
        panic!(
            "B did not take over:\n{}\nkeepalived B:\n{}",
            b.log_text(),
            keepalived_log(&b)
        )
    });
    // The endpoints come back to B through the virtual address.
    assert!(
        wait_for(30, || (metric(&scrape_b(), "h323proxy_registrations") == 4)
            .then_some(()))
        .is_some(),
        "the endpoints did not register at B:\n{}",
        b.log_text()
    );
    wait_status(&eps, 20, |l| get(l, "registered") == 4);
    assert!(
        b.kernel_answers(20),
        "B's kernel never answered:\n{}",
        b.log_text()
    );
    let m = scrape_b();
    assert_eq!(metric(&m, r#"h323proxy_redundancy_role{role="master"}"#), 1);
    assert_eq!(metric(&m, "h323proxy_redundancy_takeovers_total"), 1);
    eprintln!(
        "pair: B master {took:?} after A's node died (link down, SIGKILL); the 4 endpoints registered again through {VIP} at B"
    );
}
