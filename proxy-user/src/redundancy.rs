//! A primary/backup proxy pair on one virtual address (`[redundancy]`).
//!
//! With `protocol = "vrrp"` keepalived alone decides which node owns the
//! address (VRRPv3, RFC 5798): [`keepalived_config`] writes its
//! configuration for this node, and the daemon follows the state keepalived
//! writes to its notify FIFO ([`FifoEvent`]). While this node does not own
//! the address the kernel fast path answers nothing
//! (`FastpathSettings::standby`).

use std::fmt::Write as _;
use std::io::BufRead as _;

use crate::config::{Config, RedundancyConfig, TrackDaemon};

/// The name of this node's VRRP instance in keepalived (and in its FIFO
/// lines).
pub fn instance_name(r: &RedundancyConfig) -> String {
    format!("h323proxy_{}", r.router_id)
}

/// The VRRP virtual MAC of router id `vrid` (IPv4): 00:00:5e:00:01:XX.
pub fn vrrp_mac(vrid: u8) -> [u8; 6] {
    [0x00, 0x00, 0x5e, 0x00, 0x01, vrid]
}

/// The name of the macvlan interface keepalived creates for the virtual
/// MAC (`use_vmac`).
pub fn vmac_interface(r: &RedundancyConfig) -> String {
    format!("vrrp.{}", r.router_id)
}

/// keepalived's configuration for this node of the pair: one VRRPv3
/// instance on the endpoint-facing interface, with the virtual MAC on a
/// macvlan (`use_vmac`, so endpoints' ARP entries need no update when the
/// address moves), adverts every `advert_interval_ms` (to the peer alone
/// when `peer` is set), the daemon's process tracked (a node whose daemon
/// is gone gives the address up), state changes to the daemon's FIFO, and
/// no `vrrp_strict` (it would add firewall rules and forbid unicast).
pub fn keepalived_config(cfg: &Config, daemon_process: &str) -> String {
    let r = &cfg.redundancy;
    let mut c = String::new();
    let _ = writeln!(
        c,
        "# keepalived configuration for h323proxy instance {:?}, written by\n# `proxy redundancy keepalived-config`. Edit [redundancy] instead.",
        cfg.instance
    );
    let _ = writeln!(c, "global_defs {{");
    let _ = writeln!(c, "    router_id {}", cfg.instance);
    let _ = writeln!(c, "    vrrp_version 3");
    let _ = writeln!(c, "    notify_fifo {}", r.notify_fifo.display());
    // Adverts in the same second as a garp storm: no delay at takeover.
    let _ = writeln!(c, "    vrrp_garp_master_delay 0");
    let _ = writeln!(c, "    vrrp_garp_master_repeat 3");
    let _ = writeln!(c, "}}");
    match r.track_daemon {
        TrackDaemon::Process => {
            let _ = writeln!(c, "vrrp_track_process h323proxy_daemon {{");
            let _ = writeln!(c, "    process {daemon_process}");
            let _ = writeln!(c, "    weight 0");
            let _ = writeln!(c, "    quorum 1");
            let _ = writeln!(c, "    delay 0.05");
            let _ = writeln!(c, "}}");
        }
        TrackDaemon::Script => {
            let _ = writeln!(c, "vrrp_script h323proxy_daemon {{");
            let _ = writeln!(c, "    script \"/bin/pidof {daemon_process}\"");
            let _ = writeln!(c, "    interval 1");
            let _ = writeln!(c, "    fall 1");
            let _ = writeln!(c, "    rise 1");
            let _ = writeln!(c, "    weight 0");
            let _ = writeln!(c, "}}");
        }
        TrackDaemon::None => {}
    }
    let _ = writeln!(c, "vrrp_instance {} {{", instance_name(r));
    // Every node starts as backup: the election (and preemption) decide.
    let _ = writeln!(c, "    state BACKUP");
    let _ = writeln!(c, "    interface {}", r.interface);
    let _ = writeln!(c, "    virtual_router_id {}", r.router_id);
    let _ = writeln!(c, "    priority {}", r.priority);
    let _ = writeln!(
        c,
        "    advert_int {}.{:02}",
        r.advert_interval_ms / 1000,
        (r.advert_interval_ms % 1000) / 10
    );
    if !r.preempt {
        let _ = writeln!(c, "    nopreempt");
    }
    let _ = writeln!(c, "    use_vmac {}", vmac_interface(r));
    let _ = writeln!(c, "    vmac_xmit_base");
    if let Some(src) = r.source {
        let _ = writeln!(c, "    unicast_src_ip {src}");
    }
    if let Some(peer) = r.peer {
        let _ = writeln!(c, "    unicast_peer {{\n        {peer}\n    }}");
    }
    let _ = writeln!(c, "    virtual_ipaddress {{");
    for a in &r.virtual_addresses {
        let _ = writeln!(c, "        {a}");
    }
    let _ = writeln!(c, "    }}");
    match r.track_daemon {
        TrackDaemon::Process => {
            let _ = writeln!(c, "    track_process {{\n        h323proxy_daemon\n    }}");
        }
        TrackDaemon::Script => {
            let _ = writeln!(c, "    track_script {{\n        h323proxy_daemon\n    }}");
        }
        TrackDaemon::None => {}
    }
    let _ = writeln!(c, "}}");
    c
}

/// This node's role, as keepalived last reported it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Owns the virtual address: answers on it.
    Master,
    /// Does not own it (backup, fault, stopped, or not heard from yet).
    Standby,
}

impl Role {
    /// Lower-case name, for logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Role::Master => "master",
            Role::Standby => "standby",
        }
    }
}

/// What the metrics and logs show of the pair.
#[derive(Debug, Default)]
pub struct RedundancyStatus {
    /// This node owns the virtual address now.
    pub master: std::sync::atomic::AtomicBool,
    /// Times this node took the address (became master).
    pub takeovers: std::sync::atomic::AtomicU64,
}

/// One line keepalived writes to the notify FIFO:
/// `INSTANCE "h323proxy_51" MASTER 100`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FifoEvent {
    /// `INSTANCE`, `GROUP`, …
    pub kind: String,
    /// The instance (or group) name.
    pub name: String,
    /// `MASTER`, `BACKUP`, `FAULT`, `STOP`, …
    pub state: String,
    /// The priority it reports.
    pub priority: Option<u16>,
}

impl FifoEvent {
    /// Parse one line; `None` for what is not an event line.
    pub fn parse(line: &str) -> Option<FifoEvent> {
        let mut w = line.split_whitespace();
        let kind = w.next()?.to_owned();
        let name = w.next()?.trim_matches('"').to_owned();
        let state = w.next()?.to_owned();
        let priority = w.next().and_then(|p| p.parse().ok());
        Some(FifoEvent {
            kind,
            name,
            state,
            priority,
        })
    }

    /// What it means for this node, when it is about `instance`.
    pub fn role_of(&self, instance: &str) -> Option<Role> {
        if self.kind != "INSTANCE" || self.name != instance {
            return None;
        }
        Some(if self.state == "MASTER" {
            Role::Master
        } else {
            Role::Standby
        })
    }
}

/// Create the FIFO (0600, its directory 0700) unless a FIFO is there.
pub fn make_fifo(path: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, FileTypeExt};
    if let Ok(m) = std::fs::symlink_metadata(path) {
        if m.file_type().is_fifo() {
            return Ok(());
        }
        return Err(std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            format!("{} exists and is not a FIFO", path.display()),
        ));
    }
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| std::io::Error::other("NUL in the FIFO path"))?;
    // SAFETY: a NUL-terminated path.
    if unsafe { libc::mkfifo(c.as_ptr(), 0o600) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Read the FIFO on a thread of its own until the receiver is gone,
/// sending this node's role at every change keepalived reports. Opened
/// read-write, so the daemon holds a writer too and never sees end of file
/// when keepalived restarts.
pub fn watch_fifo(
    path: std::path::PathBuf,
    instance: String,
    tx: tokio::sync::watch::Sender<Role>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)?;
    std::thread::Builder::new()
        .name("vrrp-fifo".into())
        .spawn(move || {
            let r = std::io::BufReader::new(f);
            for line in r.lines() {
                let Ok(line) = line else { return };
                let Some(ev) = FifoEvent::parse(&line) else {
                    continue;
                };
                tracing::debug!(?ev, "keepalived");
                if let Some(role) = ev.role_of(&instance) {
                    tracing::info!(role = role.name(), keepalived = %ev.state, priority = ?ev.priority, "redundancy role");
                    if tx.send(role).is_err() {
                        return;
                    }
                }
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_lines_as_keepalived_writes_them() {
        let e = FifoEvent::parse("INSTANCE \"h323proxy_51\" MASTER 100").unwrap();
        assert_eq!(e.role_of("h323proxy_51"), Some(Role::Master));
        assert_eq!(e.priority, Some(100));
        for s in ["BACKUP", "FAULT", "STOP"] {
            let e = FifoEvent::parse(&format!("INSTANCE \"h323proxy_51\" {s} 100")).unwrap();
            assert_eq!(e.role_of("h323proxy_51"), Some(Role::Standby), "{s}");
        }
        let other = FifoEvent::parse("INSTANCE \"other\" MASTER 100").unwrap();
        assert_eq!(other.role_of("h323proxy_51"), None);
        assert_eq!(FifoEvent::parse(""), None);
    }

    #[test]
    fn the_keepalived_configuration_of_a_node() {
        let cfg = Config::parse(
            r#"
[proxy]
endpoint_address = "198.18.1.100"
gatekeeper_address = "198.18.2.1"
[[gatekeeper]]
name = "primary"
address = "198.18.2.10:1719"
[redundancy]
protocol = "vrrp"
interface = "px0"
virtual_addresses = ["198.18.1.100/24"]
router_id = 51
priority = 150
peer = "198.18.1.12"
source = "198.18.1.11"
"#,
            "test",
        )
        .unwrap();
        let c = keepalived_config(&cfg, "proxy");
        for want in [
            "vrrp_version 3",
            "notify_fifo /run/h323proxy/vrrp.fifo",
            "vrrp_instance h323proxy_51 {",
            "interface px0",
            "virtual_router_id 51",
            "priority 150",
            "advert_int 0.05",
            "nopreempt",
            "use_vmac vrrp.51",
            "unicast_src_ip 198.18.1.11",
            "198.18.1.12",
            "198.18.1.100/24",
            "process proxy",
        ] {
            assert!(c.contains(want), "{want} missing in\n{c}");
        }
        assert!(!c.contains("vrrp_strict"));
        // The endpoint address must be the virtual one.
        let bad = Config::parse(
            r#"
[proxy]
endpoint_address = "198.18.1.11"
[redundancy]
protocol = "vrrp"
interface = "px0"
virtual_addresses = ["198.18.1.100/24"]
"#,
            "test",
        )
        .unwrap_err();
        assert!(bad.to_string().contains("proxy.endpoint_address"), "{bad}");
    }
}
