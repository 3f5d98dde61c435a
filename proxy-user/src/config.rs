//! The proxy's TOML configuration, with the defaults documented in
//! `proxy.example.toml` (which is also the embedded default).

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// The embedded default configuration, used when `--config` is not given.
pub const DEFAULT_TOML: &str = include_str!("../../proxy.example.toml");

/// Errors reading a configuration. The message names the bad field.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The TOML did not parse or a field is wrong; toml's message names the
    /// field and the line.
    #[error("{origin}: {source}")]
    Parse {
        /// File name or "embedded default".
        origin: String,
        /// The cause.
        source: toml::de::Error,
    },
    /// A value parsed but is not acceptable.
    #[error("{origin}: field `{field}`: {reason}")]
    Invalid {
        /// File name or "embedded default".
        origin: String,
        /// Dotted path of the field.
        field: &'static str,
        /// Why.
        reason: String,
    },
}

/// Top-level configuration.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Name of this proxy instance: maps are pinned under `/sys/fs/bpf/<instance>/`.
    #[serde(default = "default_instance")]
    pub instance: String,
    /// Kernel fast path.
    #[serde(default)]
    pub fastpath: FastPathConfig,
    /// The proxy's own addresses and identity.
    #[serde(default)]
    pub proxy: ProxyConfig,
    /// Every endpoint's own address toward the gatekeepers.
    #[serde(default)]
    pub gatekeeper_side: GatekeeperSideConfig,
    /// Gatekeeper heartbeat and failover.
    #[serde(default)]
    pub heartbeat: HeartbeatSection,
    /// Survivable mode (no gatekeeper reachable).
    #[serde(default)]
    pub survivable: SurvivableConfig,
    /// Active calls when control moves between gatekeepers.
    #[serde(default)]
    pub calls: CallsConfig,
    /// Prometheus metrics endpoint.
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// `[limits]`: the budgets inputs from the endpoint LAN spend.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Gatekeepers in order of preference, primary first (`[[gatekeeper]]`).
    #[serde(default, rename = "gatekeeper")]
    pub gatekeepers: Vec<GatekeeperEntry>,
    /// H.235 passwords of endpoints at authenticating gatekeepers
    /// (`[[credentials]]`).
    #[serde(default)]
    pub credentials: Vec<CredentialEntry>,
    /// `[redundancy]`: an active/standby pair on one virtual address.
    #[serde(default)]
    pub redundancy: RedundancyConfig,
}

/// Which protocol decides the owner of a pair's virtual address.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RedundancyProtocol {
    /// One proxy, no pair.
    #[default]
    None,
    /// VRRPv3 (RFC 5798) through keepalived: keepalived alone decides who
    /// owns the address and tells the daemon through `notify_fifo`.
    Vrrp,
}

/// `[redundancy]`: a primary/backup proxy pair sharing one virtual address
/// on the endpoint LAN (`proxy redundancy keepalived-config` writes the
/// keepalived configuration for this node).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RedundancyConfig {
    /// `"none"` (default) or `"vrrp"`.
    pub protocol: RedundancyProtocol,
    /// The endpoint-facing interface the virtual address lives on.
    pub interface: String,
    /// The virtual addresses with their prefix length ("198.18.1.100/24");
    /// the first is what endpoints use (`[proxy] endpoint_address`).
    pub virtual_addresses: Vec<String>,
    /// VRRP virtual router id (1-255); also the last octet of the virtual
    /// MAC 00:00:5e:00:01:XX.
    pub router_id: u8,
    /// This node's priority (1-254): the higher owns the address.
    pub priority: u8,
    /// Take the address back from a lower-priority owner.
    pub preempt: bool,
    /// The peer node's address: adverts go to it alone (unicast), not to
    /// the whole LAN. VRRPv3 has no authentication, so confine the adverts
    /// this way or on a dedicated link.
    pub peer: Option<std::net::IpAddr>,
    /// This node's source address for unicast adverts (default: the
    /// interface's primary address).
    pub source: Option<std::net::IpAddr>,
    /// Advert interval, ms (VRRPv3 counts centiseconds): 50 ms makes the
    /// master-down interval about 180 ms.
    pub advert_interval_ms: u32,
    /// The FIFO keepalived writes state changes to and the daemon reads.
    pub notify_fifo: PathBuf,
    /// How keepalived watches the daemon, so that a node whose daemon is
    /// gone gives the address up: `"process"` (default: the kernel's
    /// process events, at once; they work only in the initial network
    /// namespace), `"script"` (`pidof`, once a second), or `"none"`.
    pub track_daemon: TrackDaemon,
}

/// How keepalived watches the daemon (`[redundancy] track_daemon`).
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TrackDaemon {
    /// `vrrp_track_process`: process events, at once.
    #[default]
    Process,
    /// `vrrp_script` running `pidof`, once a second.
    Script,
    /// Not watched.
    None,
}

impl Default for RedundancyConfig {
    fn default() -> Self {
        Self {
            protocol: RedundancyProtocol::None,
            interface: String::new(),
            virtual_addresses: Vec::new(),
            router_id: 51,
            priority: 100,
            preempt: false,
            peer: None,
            source: None,
            advert_interval_ms: 50,
            notify_fifo: PathBuf::from("/run/h323proxy/vrrp.fifo"),
            track_daemon: TrackDaemon::Process,
        }
    }
}

impl RedundancyConfig {
    /// The virtual addresses without their prefix lengths.
    pub fn virtual_ips(&self) -> Vec<std::net::IpAddr> {
        self.virtual_addresses
            .iter()
            .filter_map(|a| a.split('/').next()?.parse().ok())
            .collect()
    }
}

/// `[[credentials]]`: an endpoint's password at the gatekeepers. With it the
/// proxy puts a fresh H.235 password token (cryptoEPPwdHash, MD5) into every
/// request it sends for that endpoint, so re-registration at a backup is
/// accepted; without it the endpoint's own tokens are relayed as they came.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CredentialEntry {
    /// The alias the gatekeeper knows the password by (E.164 number or
    /// h323-ID, as in the endpoint's RRQ).
    pub alias: String,
    /// The password.
    pub password: String,
}

/// `[proxy]`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ProxyConfig {
    /// gatekeeperIdentifier endpoints see; the proxy's alias at gatekeepers.
    pub id: String,
    /// Address endpoints reach the proxy on.
    pub endpoint_address: IpAddr,
    /// Address the proxy uses toward gatekeepers.
    pub gatekeeper_address: IpAddr,
    /// RAS port on the endpoint side.
    pub ras_port: u16,
    /// RAS port on the gatekeeper side (0: any free port).
    pub gatekeeper_ras_port: u16,
    /// Call signalling port (both sides).
    pub call_signal_port: u16,
    /// Directory of the registration table saved across restarts
    /// (`<instance>.json`); empty: not saved.
    pub state_dir: std::path::PathBuf,
    /// H.235 password of the proxy's own registration (alias `id`) at
    /// gatekeepers that authenticate; empty: no token.
    pub password: String,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        Self {
            id: "PROXY".into(),
            endpoint_address: IpAddr::from([127, 0, 0, 1]),
            gatekeeper_address: IpAddr::from([127, 0, 0, 2]),
            ras_port: 1719,
            gatekeeper_ras_port: 0,
            call_signal_port: 1720,
            state_dir: "/run/h323proxy".into(),
            password: String::new(),
        }
    }
}

/// `[gatekeeper_side]`: each endpoint registered through the proxy gets
/// its own transport address toward the gatekeepers (RAS and call
/// signalling), a port of `ports` on one of `addresses`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct GatekeeperSideConfig {
    /// Addresses the per-endpoint ports live on (empty: `[proxy]
    /// gatekeeper_address`). They must be of the host and of the same
    /// family as `gatekeeper_address`.
    pub addresses: Vec<IpAddr>,
    /// Port range, `"first-last"`; empty: every endpoint shares the proxy's
    /// own gatekeeper-side addresses (one endpoint per proxy at a
    /// gatekeeper that keys on addresses).
    pub ports: String,
}

impl Default for GatekeeperSideConfig {
    fn default() -> Self {
        Self {
            addresses: Vec::new(),
            ports: "20000-29999".into(),
        }
    }
}

impl GatekeeperSideConfig {
    /// The port range, `None` when empty (shared addresses).
    pub fn port_range(&self) -> Result<Option<std::ops::RangeInclusive<u16>>, String> {
        let t = self.ports.trim();
        if t.is_empty() {
            return Ok(None);
        }
        let (a, b) = t
            .split_once('-')
            .ok_or_else(|| format!("{t:?} is not \"first-last\""))?;
        let p = |x: &str| {
            x.trim()
                .parse::<u16>()
                .map_err(|_| format!("{x:?} is not a port number"))
        };
        let (a, b) = (p(a)?, p(b)?);
        if a == 0 || a > b {
            return Err(format!("{t:?}: first must be 1..=last"));
        }
        Ok(Some(a..=b))
    }

    /// The addresses, `[proxy] gatekeeper_address` when none are listed.
    pub fn addresses_or(&self, default: IpAddr) -> Vec<IpAddr> {
        if self.addresses.is_empty() {
            vec![default]
        } else {
            self.addresses.clone()
        }
    }
}

/// `[metrics]`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Serve `GET /metrics`.
    pub enabled: bool,
    /// Listen address.
    pub listen: SocketAddr,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 9719)),
        }
    }
}

/// `[heartbeat]`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HeartbeatSection {
    /// Milliseconds between probes of each gatekeeper.
    pub interval_ms: u64,
    /// Unanswered probes in a row before a gatekeeper is down (more on a
    /// link that has been losing probes; see `gatekeeper::Heartbeat`).
    pub multiplier: u32,
    /// Milliseconds a gatekeeper must stay up before control moves back to it.
    pub failback_hold_ms: u64,
    /// Move back to a preferred gatekeeper once it is healthy again.
    pub preempt: bool,
}

impl Default for HeartbeatSection {
    fn default() -> Self {
        Self {
            interval_ms: 40,
            multiplier: 3,
            failback_hold_ms: 5000,
            preempt: true,
        }
    }
}

/// `[survivable]`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SurvivableConfig {
    /// timeToLive granted to endpoints registered locally, seconds.
    pub time_to_live_secs: u32,
    /// Full RRQs per second when moving registrations to a gatekeeper.
    pub reregister_per_second: u32,
    /// Re-registrations waiting for the gatekeeper's answer at most: more
    /// would queue at the gatekeeper, ahead of the heartbeat's probes.
    pub reregister_in_flight: u32,
    /// Dial plan for calls routed by the proxy itself.
    pub dial_plan: Vec<DialPlanEntry>,
}

impl Default for SurvivableConfig {
    fn default() -> Self {
        Self {
            time_to_live_secs: 60,
            reregister_per_second: 1000,
            reregister_in_flight: 256,
            dial_plan: Vec::new(),
        }
    }
}

/// `[calls]`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CallsConfig {
    /// How long an active call may wait to be taken over by the gatekeeper
    /// that took control, milliseconds.
    pub reanchor_deadline_ms: u64,
    /// What happens to a call not taken over within the deadline.
    pub unanchored: crate::call::Unanchored,
}

impl Default for CallsConfig {
    fn default() -> Self {
        Self {
            reanchor_deadline_ms: 30_000,
            unanchored: crate::call::Unanchored::Keep,
        }
    }
}

/// `[limits]`: what one host on the endpoint LAN may make the proxy do.
/// Checked before anything is decoded; what is refused is counted in
/// `h323proxy_refused_total{port,reason}`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// RAS datagrams a second from one source address (keepalives the
    /// kernel fast path answers never reach this budget).
    pub ras_per_source_per_second: u32,
    /// RAS datagrams one source address may send at once.
    pub ras_per_source_burst: u32,
    /// New call signalling connections a second from one source address.
    pub connections_per_source_per_second: u32,
    /// New connections one source address may open at once.
    pub connections_per_source_burst: u32,
    /// Endpoint-side call signalling connections held at once.
    pub max_connections: u32,
    /// Endpoint-side call signalling connections held from one address.
    pub max_connections_per_source: u32,
    /// Source addresses given a budget of their own; past it, new sources
    /// share one.
    pub max_sources: u32,
    /// H.245 listeners the proxy opens for one call.
    pub h245_listeners_per_call: u32,
    /// Registrations held in all.
    pub max_registrations: u32,
    /// Registrations from one source IP address (a gateway registers
    /// once; an IP-PBX registers each of its lines).
    pub max_registrations_per_source: u32,
    /// Aliases in one RRQ.
    pub max_aliases_per_request: u32,
    /// Destination aliases looked at in one SETUP, ARQ or LRQ.
    pub max_destinations: u32,
    /// RAS requests from one source address waiting for a gatekeeper's
    /// answer at once (the proxy's own heartbeat, refreshes and
    /// re-registrations have room of their own).
    pub ras_outstanding_per_source: u32,
    /// Calls one endpoint may have admitted at once.
    pub max_calls_per_endpoint: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            ras_per_source_per_second: 200,
            ras_per_source_burst: 400,
            connections_per_source_per_second: 20,
            connections_per_source_burst: 40,
            max_connections: 2048,
            max_connections_per_source: 512,
            max_sources: 65_536,
            h245_listeners_per_call: 2,
            max_registrations: 200_000,
            max_registrations_per_source: 1024,
            max_aliases_per_request: 64,
            max_destinations: 16,
            ras_outstanding_per_source: 64,
            max_calls_per_endpoint: 64,
        }
    }
}

impl LimitsConfig {
    /// The RAS budget of one source.
    pub fn ras_rate(&self) -> crate::budget::Rate {
        crate::budget::Rate {
            per_second: self.ras_per_source_per_second,
            burst: self.ras_per_source_burst,
        }
    }

    /// The new-connection budget of one source.
    pub fn connection_rate(&self) -> crate::budget::Rate {
        crate::budget::Rate {
            per_second: self.connections_per_source_per_second,
            burst: self.connections_per_source_burst,
        }
    }

    /// Descriptors the caps may need at once: two legs, two H.245
    /// listeners and two H.245 links per endpoint-side connection at most,
    /// plus room for the rest of the daemon.
    pub fn descriptors_needed(&self) -> u64 {
        u64::from(self.max_connections) * (2 + 2 * u64::from(self.h245_listeners_per_call)) + 1024
    }
}

/// `[[survivable.dial_plan]]`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DialPlanEntry {
    /// Leading digits that select this rule.
    pub prefix: String,
    /// Digits removed from the front.
    #[serde(default)]
    pub strip: usize,
    /// Digits put in front after stripping.
    #[serde(default)]
    pub prepend: String,
}

/// `[[gatekeeper]]`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GatekeeperEntry {
    /// Name in logs and metrics.
    pub name: String,
    /// RAS address, `ip:port`.
    pub address: SocketAddr,
}

/// `[fastpath]`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FastPathConfig {
    /// Load the XDP programs at all.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Endpoint-facing interfaces to attach XDP to.
    #[serde(default)]
    pub interfaces: Vec<String>,
    /// Gatekeeper-facing interfaces to attach the TC liveness program to
    /// (ingress): the failure detector then also counts every RAS datagram
    /// and call-signalling segment the kernel sees from a gatekeeper.
    #[serde(default)]
    pub gatekeeper_interfaces: Vec<String>,
    /// Seconds between counter log lines (0: never).
    #[serde(default = "default_stats_interval")]
    pub stats_interval_secs: u64,
    /// Answer learned endpoint keepalives in the kernel (XDP_TX). Off: the
    /// programs only count, and userspace answers everything.
    #[serde(default = "yes")]
    pub answer_keepalives: bool,
    /// Room in the kernel's learned-endpoint map.
    #[serde(default = "default_max_endpoints")]
    pub max_endpoints: u32,
    /// Kernel answers per endpoint per second, at most (0: no bound).
    #[serde(default = "default_rate")]
    pub rate_per_second: u32,
    /// Answers an endpoint may get in a burst above that rate.
    #[serde(default = "default_burst")]
    pub rate_burst: u32,
    /// Answer only frames to the interface's MAC and from the endpoint's
    /// (the kernel's neighbour entry for it); drop RAS datagrams with a
    /// gatekeeper's source address that came in where the route back to
    /// it does not leave (`spoofed_gatekeeper`).
    #[serde(default = "yes")]
    pub check_macs: bool,
    /// On SIGTERM, leave the programs attached and the maps pinned so
    /// keepalives are still answered until the next start adopts them.
    #[serde(default)]
    pub keep_running_on_exit: bool,
}

impl Default for FastPathConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interfaces: Vec::new(),
            gatekeeper_interfaces: Vec::new(),
            stats_interval_secs: default_stats_interval(),
            answer_keepalives: true,
            max_endpoints: default_max_endpoints(),
            rate_per_second: default_rate(),
            rate_burst: default_burst(),
            check_macs: true,
            keep_running_on_exit: false,
        }
    }
}

fn default_max_endpoints() -> u32 {
    262_144
}

fn default_rate() -> u32 {
    10
}

fn default_burst() -> u32 {
    20
}

impl FastPathConfig {
    /// The settings the kernel reads, for a RAS socket on `ras_port`;
    /// `endpoint_addr`, when given, is checked before the local-address map
    /// (the caller passes it only when it is one of the host's addresses).
    pub fn settings(
        &self,
        ras_port: u16,
        endpoint_addr: Option<IpAddr>,
    ) -> proxy_common::FastpathSettings {
        let interval = if self.rate_per_second == 0 {
            0
        } else {
            1_000_000_000 / self.rate_per_second as u64
        };
        proxy_common::FastpathSettings {
            answer: self.answer_keepalives as u32,
            ras_port,
            check_macs: 0,
            rate_interval_ns: interval,
            rate_slack_ns: interval * self.rate_burst as u64,
            endpoint_addr: endpoint_addr
                .map(crate::offload::local_addr)
                .unwrap_or_default(),
            has_endpoint_addr: u32::from(endpoint_addr.is_some()),
            standby: 0,
        }
    }
}

/// Whether `name` is safe as a directory name under bpffs.
pub fn valid_instance(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn default_instance() -> String {
    "h323proxy".into()
}
fn yes() -> bool {
    true
}
fn default_stats_interval() -> u64 {
    10
}

impl Config {
    /// Parse and validate TOML text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|source| ConfigError::Parse {
            origin: origin.to_owned(),
            source,
        })?;
        let invalid = |field, reason: String| ConfigError::Invalid {
            origin: origin.to_owned(),
            field,
            reason,
        };
        if !valid_instance(&cfg.instance) {
            return Err(invalid(
                "instance",
                format!(
                    "{:?} must be 1-64 characters of [A-Za-z0-9_-]",
                    cfg.instance
                ),
            ));
        }
        if let Some(bad) = cfg
            .fastpath
            .interfaces
            .iter()
            .find(|i| i.is_empty() || i.len() > 15)
        {
            return Err(invalid(
                "fastpath.interfaces",
                format!("{bad:?} is not an interface name (1-15 characters)"),
            ));
        }
        if cfg.redundancy.protocol != RedundancyProtocol::None {
            let r = &cfg.redundancy;
            if r.interface.is_empty() || r.interface.len() > 15 {
                return Err(invalid(
                    "redundancy.interface",
                    format!(
                        "{:?} is not an interface name (1-15 characters)",
                        r.interface
                    ),
                ));
            }
            if r.virtual_addresses.is_empty() {
                return Err(invalid(
                    "redundancy.virtual_addresses",
                    "a pair needs at least one virtual address".into(),
                ));
            }
            for a in &r.virtual_addresses {
                let ok = a.split_once('/').is_some_and(|(ip, len)| {
                    ip.parse::<std::net::IpAddr>().is_ok()
                        && len.parse::<u8>().is_ok_and(|l| l <= 128)
                });
                if !ok {
                    return Err(invalid(
                        "redundancy.virtual_addresses",
                        format!("{a:?} is not an address with a prefix length (198.18.1.100/24)"),
                    ));
                }
            }
            if r.router_id == 0 {
                return Err(invalid("redundancy.router_id", "must be 1-255".into()));
            }
            if r.priority == 0 || r.priority == 255 {
                return Err(invalid(
                    "redundancy.priority",
                    "must be 1-254 (255 is VRRP's address owner, which a pair has not)".into(),
                ));
            }
            if !(10..=40_950).contains(&r.advert_interval_ms) {
                return Err(invalid(
                    "redundancy.advert_interval_ms",
                    "must be 10-40950 (VRRPv3 centiseconds)".into(),
                ));
            }
            if !r.virtual_ips().contains(&cfg.proxy.endpoint_address) {
                return Err(invalid(
                    "proxy.endpoint_address",
                    "with [redundancy], endpoints use the pair's virtual address: make it one of redundancy.virtual_addresses".into(),
                ));
            }
        }
        if cfg.proxy.id.is_empty() || cfg.proxy.id.len() > 64 {
            return Err(invalid("proxy.id", "must be 1-64 characters".into()));
        }
        if cfg.heartbeat.interval_ms == 0 {
            return Err(invalid(
                "heartbeat.interval_ms",
                "must be at least 1".into(),
            ));
        }
        if cfg.heartbeat.multiplier == 0 {
            return Err(invalid("heartbeat.multiplier", "must be at least 1".into()));
        }
        for (field, v) in [
            (
                "limits.ras_per_source_per_second",
                cfg.limits.ras_per_source_per_second,
            ),
            (
                "limits.ras_per_source_burst",
                cfg.limits.ras_per_source_burst,
            ),
            (
                "limits.connections_per_source_per_second",
                cfg.limits.connections_per_source_per_second,
            ),
            (
                "limits.connections_per_source_burst",
                cfg.limits.connections_per_source_burst,
            ),
            ("limits.max_connections", cfg.limits.max_connections),
            (
                "limits.max_connections_per_source",
                cfg.limits.max_connections_per_source,
            ),
            ("limits.max_sources", cfg.limits.max_sources),
            ("limits.max_registrations", cfg.limits.max_registrations),
            (
                "limits.max_registrations_per_source",
                cfg.limits.max_registrations_per_source,
            ),
            (
                "limits.max_aliases_per_request",
                cfg.limits.max_aliases_per_request,
            ),
            ("limits.max_destinations", cfg.limits.max_destinations),
            (
                "limits.ras_outstanding_per_source",
                cfg.limits.ras_outstanding_per_source,
            ),
            (
                "limits.max_calls_per_endpoint",
                cfg.limits.max_calls_per_endpoint,
            ),
        ] {
            if v == 0 {
                return Err(invalid(
                    field,
                    "must be at least 1 (0 would refuse everything)".into(),
                ));
            }
        }
        if cfg.survivable.reregister_in_flight == 0 {
            return Err(invalid(
                "survivable.reregister_in_flight",
                "must be at least 1".into(),
            ));
        }
        if cfg.survivable.reregister_per_second == 0 {
            return Err(invalid(
                "survivable.reregister_per_second",
                "must be at least 1".into(),
            ));
        }
        if let Some(d) = cfg.survivable.dial_plan.iter().find(|d| {
            d.prefix.is_empty()
                || !(d.prefix.chars().chain(d.prepend.chars())).all(|c| c.is_ascii_digit())
        }) {
            return Err(invalid(
                "survivable.dial_plan",
                format!(
                    "prefix {:?} / prepend {:?}: digits only, prefix not empty",
                    d.prefix, d.prepend
                ),
            ));
        }
        let range = cfg
            .gatekeeper_side
            .port_range()
            .map_err(|e| invalid("gatekeeper_side.ports", e))?;
        if let Some(r) = &range {
            let own = [cfg.proxy.call_signal_port, cfg.proxy.gatekeeper_ras_port];
            if let Some(p) = own.iter().find(|p| r.contains(p)) {
                return Err(invalid(
                    "gatekeeper_side.ports",
                    format!(
                        "{}-{} contains the proxy's own port {p}",
                        r.start(),
                        r.end()
                    ),
                ));
            }
            let addrs = cfg
                .gatekeeper_side
                .addresses_or(cfg.proxy.gatekeeper_address);
            if addrs.len() > proxy_common::GK_SIDE_MAX_ADDRS {
                return Err(invalid(
                    "gatekeeper_side.addresses",
                    format!("at most {} addresses", proxy_common::GK_SIDE_MAX_ADDRS),
                ));
            }
            if let Some(a) = addrs.iter().find(|a| {
                a.is_ipv4() != cfg.proxy.gatekeeper_address.is_ipv4() || a.is_unspecified()
            }) {
                return Err(invalid(
                    "gatekeeper_side.addresses",
                    format!(
                        "{a}: a concrete address of the same family as proxy.gatekeeper_address"
                    ),
                ));
            }
        }
        let mut names = std::collections::HashSet::new();
        if let Some(g) = cfg
            .gatekeepers
            .iter()
            .find(|g| !names.insert(g.name.clone()))
        {
            return Err(invalid(
                "gatekeeper.name",
                format!("{:?} appears twice", g.name),
            ));
        }
        Ok(cfg)
    }

    /// The RAS relay's settings, with the gatekeeper-side RAS address the
    /// driver actually bound.
    pub fn relay(&self, gatekeeper_ras: SocketAddr) -> crate::ras_relay::RelayConfig {
        use crate::ras_relay::{DialRule, GatekeeperConfig, RelayConfig};
        let p = &self.proxy;
        RelayConfig {
            // The driver fills it from the host's interfaces.
            host_addresses: Vec::new(),
            proxy_id: p.id.clone(),
            endpoint_ras: SocketAddr::new(p.endpoint_address, p.ras_port),
            endpoint_call_signal: SocketAddr::new(p.endpoint_address, p.call_signal_port),
            gatekeeper_ras,
            gatekeeper_call_signal: SocketAddr::new(p.gatekeeper_address, p.call_signal_port),
            gatekeepers: self
                .gatekeepers
                .iter()
                .map(|g| GatekeeperConfig {
                    name: g.name.clone(),
                    ras: g.address,
                })
                .collect(),
            heartbeat: crate::gatekeeper::HeartbeatConfig {
                interval: Duration::from_millis(self.heartbeat.interval_ms),
                multiplier: self.heartbeat.multiplier,
            },
            failback_hold: Duration::from_millis(self.heartbeat.failback_hold_ms),
            preempt: self.heartbeat.preempt,
            reregister_rate: self.survivable.reregister_per_second,
            reregister_in_flight: self.survivable.reregister_in_flight,
            local_ttl: self.survivable.time_to_live_secs,
            reanchor_deadline: Duration::from_millis(self.calls.reanchor_deadline_ms),
            dial_plan: self
                .survivable
                .dial_plan
                .iter()
                .map(|d| DialRule {
                    prefix: d.prefix.clone(),
                    strip: d.strip,
                    prepend: d.prepend.clone(),
                })
                .collect(),
            identities: self.identity_pool(),
            own_password: Some(self.proxy.password.clone()).filter(|p| !p.is_empty()),
            limits: crate::ras_relay::RelayLimits {
                ras_budget: self.limits.ras_rate(),
                max_sources: self.limits.max_sources as usize,
                max_registrations: self.limits.max_registrations as usize,
                max_registrations_per_source: self.limits.max_registrations_per_source as usize,
                max_aliases_per_request: self.limits.max_aliases_per_request as usize,
                max_destinations: self.limits.max_destinations as usize,
                max_outstanding_per_source: self.limits.ras_outstanding_per_source as usize,
                max_calls_per_endpoint: self.limits.max_calls_per_endpoint as usize,
            },
            credentials: self
                .credentials
                .iter()
                .map(|c| (c.alias.clone(), c.password.clone()))
                .collect(),
        }
    }

    /// An empty pool of the `[gatekeeper_side]` ranges (validated by
    /// [`Config::parse`]); `None` when the range is empty.
    pub fn identity_pool(&self) -> Option<crate::identity::IdentityPool> {
        let ports = self.gatekeeper_side.port_range().ok()??;
        let addrs = self
            .gatekeeper_side
            .addresses_or(self.proxy.gatekeeper_address);
        crate::identity::IdentityPool::new(addrs, ports).ok()
    }

    /// Read a file, or the embedded default when `path` is `None`.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        match path {
            None => Self::parse(DEFAULT_TOML, "embedded default"),
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.display().to_string(),
                    source,
                })?;
                Self::parse(&text, &p.display().to_string())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_parses() {
        let cfg = Config::load(None).expect("default config");
        assert_eq!(cfg.instance, "h323proxy");
        assert!(cfg.fastpath.enabled);
    }

    #[test]
    fn unknown_field_is_named() {
        let err = Config::parse("[fastpath]\nenabeld = true\n", "t.toml").unwrap_err();
        assert!(err.to_string().contains("enabeld"), "{err}");
    }

    #[test]
    fn gatekeepers_and_dial_plan_parse_and_bad_values_are_named() {
        let cfg = Config::parse(
            "[[gatekeeper]]\nname = \"primary\"\naddress = \"198.18.2.10:1719\"\n\
             [[survivable.dial_plan]]\nprefix = \"9\"\nstrip = 1\n",
            "t.toml",
        )
        .unwrap();
        assert_eq!(cfg.gatekeepers[0].address.port(), 1719);
        assert_eq!(cfg.survivable.dial_plan[0].strip, 1);
        let err = Config::parse("[heartbeat]\ninterval_ms = 0\n", "t.toml").unwrap_err();
        assert!(err.to_string().contains("heartbeat.interval_ms"), "{err}");
        let err = Config::parse(
            "[[gatekeeper]]\nname = \"a\"\naddress = \"nowhere\"\n",
            "t.toml",
        )
        .unwrap_err();
        assert!(err.to_string().contains("address"), "{err}");
    }

    #[test]
    fn gatekeeper_side_ranges_parse_and_bad_ones_are_named() {
        let cfg = Config::load(None).unwrap();
        let pool = cfg.identity_pool().expect("a default range");
        assert_eq!(pool.capacity(), 10_000);
        let cfg = Config::parse(
            "[proxy]\ngatekeeper_address = \"198.18.2.1\"\n[gatekeeper_side]\n\
             addresses = [\"198.18.2.1\", \"198.18.2.2\", \"198.18.2.3\", \"198.18.2.4\"]\n\
             ports = \"2000-26999\"\n",
            "t.toml",
        )
        .unwrap();
        assert_eq!(cfg.identity_pool().unwrap().capacity(), 100_000);
        let cfg = Config::parse("[gatekeeper_side]\nports = \"\"\n", "t.toml").unwrap();
        assert!(cfg.identity_pool().is_none());
        for bad in ["\"1700-1800\"", "\"9-3\"", "\"x\""] {
            let err = Config::parse(&format!("[gatekeeper_side]\nports = {bad}\n"), "t.toml")
                .unwrap_err();
            assert!(err.to_string().contains("gatekeeper_side.ports"), "{err}");
        }
        let err =
            Config::parse("[gatekeeper_side]\naddresses = [\"::1\"]\n", "t.toml").unwrap_err();
        assert!(
            err.to_string().contains("gatekeeper_side.addresses"),
            "{err}"
        );
    }

    #[test]
    fn bad_instance_is_named() {
        let err = Config::parse("instance = \"../etc\"\n", "t.toml").unwrap_err();
        assert!(err.to_string().contains("field `instance`"), "{err}");
    }
}
