//! The systemd unit in `packaging/h323proxy.service`: it passes
//! `systemd-analyze verify`, and the daemon started the way it describes
//! (its own user, only the capabilities it lists, the pin directory made
//! for that user) loads the fast path, takes the primary, registers
//! endpoints and has the kernel answer their keepalives, holding no other
//! capability; SIGTERM ends it cleanly.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use proxy_lab::topology::{self, GK1, GK2, Lab, PX_EP};
use proxy_tests::{Proxy, bin, endpoints, gatekeeper, get, privileged, wait_status};

const UNIT: &str = include_str!("../../packaging/h323proxy.service");

/// The values of `key=` in the unit.
fn unit_values(key: &str) -> Vec<String> {
    UNIT.lines()
        .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .flat_map(|v| v.split_whitespace().map(str::to_owned))
        .collect()
}

/// Capability numbers (linux/capability.h) of the names the unit may use.
fn cap_number(name: &str) -> u32 {
    match name {
        "CAP_NET_BIND_SERVICE" => 10,
        "CAP_NET_ADMIN" => 12,
        "CAP_SYS_ADMIN" => 21,
        "CAP_PERFMON" => 38,
        "CAP_BPF" => 39,
        other => panic!("a capability this test does not know: {other}"),
    }
}

#[test]
fn the_unit_verifies_and_runs_the_daemon_unprivileged_with_the_fast_path() {
    if !privileged("the_unit_verifies_and_runs_the_daemon_unprivileged_with_the_fast_path") {
        return;
    }
    // The unit file itself, with ExecStart pointing at the built daemon.
    if let Ok(out) = Command::new("systemd-analyze").arg("--version").output()
        && out.status.success()
    {
        let dir = tempfile::tempdir().unwrap();
        let unit = dir.path().join("h323proxy.service");
        std::fs::write(
            &unit,
            UNIT.replace("/usr/local/bin/proxy", &bin("proxy").display().to_string()),
        )
        .unwrap();
        let out = Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(&unit)
            .output()
            .unwrap();
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "systemd-analyze verify: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    } else {
        eprintln!("systemd-analyze is not installed: the unit's syntax is not checked");
    }
    let ambient = unit_values("AmbientCapabilities");
    let bounding = unit_values("CapabilityBoundingSet");
    assert_eq!(ambient, bounding, "the unit grants what it bounds");
    assert!(
        !ambient.iter().any(|c| c == "CAP_SYS_ADMIN"),
        "no CAP_SYS_ADMIN"
    );
    assert_eq!(unit_values("User"), ["h323proxy"]);
    let caps: Vec<String> = ambient
        .iter()
        .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_lowercase()))
        .collect();
    let want_mask: u64 = ambient.iter().map(|c| 1u64 << cap_number(c)).sum();

    let lab = Lab::create().unwrap();
    let _gk1 = gatekeeper(&lab.gk1, GK1, "GK-A", Some(GK2));
    let _gk2 = gatekeeper(&lab.gk2, GK2, "GK-B", None);
    // The unit's user is h323proxy; here, nobody (65534).
    let (uid, gid) = (65534u32, 65534u32);
    let dir = tempfile::tempdir().unwrap();
    let instance = proxy_lab::netns::unique_name("s");
    // ExecStartPre: the pin directory, the daemon's own.
    let pins = std::path::Path::new("/sys/fs/bpf").join(&instance);
    std::fs::create_dir_all(&pins).unwrap();
    std::os::unix::fs::chown(&pins, Some(uid), Some(gid)).unwrap();
    std::fs::set_permissions(&pins, std::fs::Permissions::from_mode(0o700)).unwrap();
    // StateDirectory: the test directory, the daemon's own.
    std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap();
    let cfg = dir.path().join("proxy.toml");
    let text = topology::proxy_toml(&instance, 5000, Some("px0"))
        .replace("interval_ms = 40", "interval_ms = 200")
        .replace("multiplier = 3", "multiplier = 5");
    let wrapper: Vec<String> = [
        "setpriv".to_string(),
        format!("--reuid={uid}"),
        format!("--regid={gid}"),
        "--clear-groups".into(),
        format!("--inh-caps=-all,{}", caps.join(",")),
        format!("--ambient-caps=-all,{}", caps.join(",")),
        format!("--bounding-set=-all,{}", caps.join(",")),
        "--no-new-privs".into(),
        "--".into(),
    ]
    .into();
    let mut proxy = Proxy::start_wrapped(&lab.px, dir, cfg.clone(), instance, text, &wrapper);
    let pid = proxy.proc.pid();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |k: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .map(|v| v.trim().to_owned())
            .unwrap_or_default()
    };
    let uids: Vec<String> = field("Uid:")
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    assert!(
        uids.iter().all(|u| *u == uid.to_string()),
        "the daemon runs as {uids:?}"
    );
    let eff = u64::from_str_radix(&field("CapEff:"), 16).unwrap();
    let bnd = u64::from_str_radix(&field("CapBnd:"), 16).unwrap();
    assert_eq!(
        eff, want_mask,
        "effective capabilities {eff:#x}, the unit lists {want_mask:#x}"
    );
    assert_eq!(bnd, want_mask, "bounding set {bnd:#x}");
    assert!(
        proxy.log_text().contains("fast path ready"),
        "the fast path did not load unprivileged:\n{}",
        proxy.log_text()
    );
    // Endpoints register through it and the kernel answers them.
    let eps = endpoints(&lab, PX_EP, 4, 0);
    wait_status(&eps, 20, |l| get(l, "registered") == 4);
    assert!(
        proxy.kernel_answers(20),
        "the kernel never answered:\n{}",
        proxy.log_text()
    );
    // The saved table is the daemon's user's, 0600.
    let table = proxy.dir.path().join(format!("{}.json", proxy.instance));
    assert!(
        proxy_tests::wait_for(10, || table.exists().then_some(())).is_some(),
        "no saved table"
    );
    let meta = std::fs::metadata(&table).unwrap();
    assert_eq!(
        (
            std::os::unix::fs::MetadataExt::uid(&meta),
            meta.permissions().mode() & 0o777
        ),
        (uid, 0o600)
    );
    // SIGTERM: a clean exit, the pins removed.
    let exited = proxy.proc.terminate(10);
    assert!(
        exited.is_some_and(|e| e.success()),
        "exit {exited:?}:\n{}",
        proxy.log_text()
    );
    assert!(
        proxy.log_text().contains("pins removed"),
        "{}",
        proxy.log_text()
    );
    eprintln!(
        "unit: verified; daemon as uid {uid} with CapEff {eff:#x} ({}), fast path loaded, kernel answering, SIGTERM exit 0",
        ambient.join(" ")
    );
    let _ = std::fs::remove_dir_all(&pins);
}
