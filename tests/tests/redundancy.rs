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

/// The pair's virtual address on the endpoint LAN.
const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 100);
/// VRRP virtual router id (the virtual MAC ends in it: 0x33).
const VRID: u8 = 51;

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
struct Keepalived(LabProc);

impl Drop for Keepalived {
    fn drop(&mut self) {
        let _ = self.0.terminate(5);
    }
}

/// A path removed when the test ends.
struct Removed(std::path::PathBuf);

impl Drop for Removed {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// One node with the fast path, its endpoint address the virtual one,
/// keepalived's FIFO at `fifo`.
fn node(lab: &Lab, fifo: &std::path::Path) -> Proxy {
    let fifo = fifo.display().to_string();
    Proxy::start_tweaked(lab, 5000, Some("px0"), |t| {
        t.replace(
            &format!("endpoint_address = \"{PX_EP}\""),
            &format!("endpoint_address = \"{VIP}\""),
        ) + &format!(
            "[redundancy]\nprotocol = \"vrrp\"\ninterface = \"px0\"\nvirtual_addresses = [\"{VIP}/24\"]\nrouter_id = {VRID}\npriority = 150\nnotify_fifo = \"{fifo}\"\ntrack_daemon = \"none\"\n"
        )
    })
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
    let dir = proxy.dir.path().to_owned();
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
    let check = lab
        .px
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
    let mut c = lab.px.command("keepalived").unwrap();
    c.args(["--dont-fork", "--log-console", "--log-detail", "--vrrp"])
        .arg("-f")
        .arg(&conf)
        .arg("-p")
        .arg(dir.join("keepalived.pid"))
        .arg("-r")
        .arg(dir.join("vrrp.pid"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("keepalived.log")).unwrap());
    let keepalived = Keepalived(LabProc::spawn("keepalived", c).unwrap());
    let klog = || std::fs::read_to_string(dir.join("keepalived.log")).unwrap_or_default();
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
