//! The lab topology: endpoints, proxy and two gatekeepers, each in its own
//! network namespace, joined by veths, addressed in 198.18.0.0/15:
//!
//! ```text
//!  ep 198.18.1.2 --ep0/px0-- 198.18.1.1 px 198.18.2.1 --px1/gk0-- 198.18.2.10 gk1 (primary)
//!                                        198.18.3.1 --px2/gk0-- 198.18.3.10 gk2 (backup)
//! ```
//!
//! The proxy host also routes, so endpoints can reach the gatekeepers
//! directly (the control experiment without the proxy). Cutting `px1`
//! partitions the primary alone.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use super::netns::{Netns, veth};

/// Endpoints' address.
pub const EP: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 2);
/// Proxy, endpoint side.
pub const PX_EP: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 1);
/// Proxy, gatekeeper side (also its routed address toward the backup).
pub const PX_GK: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 1);
/// Primary gatekeeper.
pub const GK1: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 10);
/// Backup gatekeeper.
pub const GK2: Ipv4Addr = Ipv4Addr::new(198, 18, 3, 10);

/// RAS address of a host.
pub fn ras(ip: Ipv4Addr) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(ip), 1719)
}

/// The four namespaces; dropped (deleted) together.
pub struct Lab {
    /// Endpoints.
    pub ep: Netns,
    /// Proxy.
    pub px: Netns,
    /// Primary gatekeeper.
    pub gk1: Netns,
    /// Backup gatekeeper.
    pub gk2: Netns,
    /// Pass-only XDP on the endpoints' end of their veth, so the proxy's
    /// XDP_TX answers get through (see `netns::xdp_peer_pass`).
    #[cfg(feature = "fastpath")]
    _ep_xdp: proxy_user::fastpath::PeerPass,
}

impl Lab {
    /// Create the namespaces, links, addresses and routes.
    pub fn create() -> io::Result<Lab> {
        let ep = Netns::create("ep")?;
        let px = Netns::create("px")?;
        let gk1 = Netns::create("g1")?;
        let gk2 = Netns::create("g2")?;
        veth(&px, "px0", &ep, "ep0")?;
        let lab = Lab {
            #[cfg(feature = "fastpath")]
            _ep_xdp: super::netns::xdp_peer_pass(&ep, "ep0")?,
            ep,
            px,
            gk1,
            gk2,
        };
        veth(&lab.px, "px1", &lab.gk1, "gk0")?;
        veth(&lab.px, "px2", &lab.gk2, "gk0")?;
        lab.ep.ip(&["addr", "add", "198.18.1.2/24", "dev", "ep0"])?;
        lab.px.ip(&["addr", "add", "198.18.1.1/24", "dev", "px0"])?;
        lab.px.ip(&["addr", "add", "198.18.2.1/24", "dev", "px1"])?;
        lab.px.ip(&["addr", "add", "198.18.3.1/24", "dev", "px2"])?;
        lab.gk1
            .ip(&["addr", "add", "198.18.2.10/24", "dev", "gk0"])?;
        lab.gk2
            .ip(&["addr", "add", "198.18.3.10/24", "dev", "gk0"])?;
        lab.ep
            .ip(&["route", "add", "198.18.0.0/15", "via", "198.18.1.1"])?;
        lab.gk1
            .ip(&["route", "add", "198.18.0.0/15", "via", "198.18.2.1"])?;
        lab.gk2
            .ip(&["route", "add", "198.18.0.0/15", "via", "198.18.3.1"])?;
        forwarding(&lab.px)?;
        Ok(lab)
    }
}

/// Turn on IPv4 forwarding in `ns` (a router between two of its links).
fn forwarding(ns: &Netns) -> io::Result<()> {
    let out = ns
        .command("sysctl")?
        .args(["-qw", "net.ipv4.ip_forward=1"])
        .output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "sysctl ip_forward in {}: {}",
            ns.name(),
            String::from_utf8_lossy(&out.stderr)
        )))
    }
}

/// A second proxy, `py`, in front of the same two gatekeepers, with an
/// endpoint network of its own:
///
/// ```text
///  198.18.8.2 --py0/h0-- 198.18.8.1 py 198.18.6.1 --py1/gk1b-- 198.18.6.10 gk1
///                                       198.18.7.1 --py2/gk2b-- 198.18.7.10 gk2
/// ```
///
/// Its gatekeeper-side address is 198.18.6.1 (reached from both
/// gatekeepers). Media between the two endpoint networks crosses the
/// backup's namespace, which keeps forwarding whatever happens to the
/// primary (killed or cut off).
pub struct SecondProxy {
    /// The proxy's namespace.
    pub py: Netns,
    /// A host on its endpoint side (198.18.8.2).
    pub host: Netns,
}

/// Second proxy, endpoint side.
pub const PY_EP: Ipv4Addr = Ipv4Addr::new(198, 18, 8, 1);
/// Second proxy, gatekeeper side.
pub const PY_GK: Ipv4Addr = Ipv4Addr::new(198, 18, 6, 1);
/// The host behind the second proxy.
pub const PY_HOST: Ipv4Addr = Ipv4Addr::new(198, 18, 8, 2);

impl Lab {
    /// Add [`SecondProxy`].
    pub fn second_proxy(&self) -> io::Result<SecondProxy> {
        let py = Netns::create("py")?;
        let host = Netns::create("h8")?;
        veth(&py, "py0", &host, "h0")?;
        veth(&py, "py1", &self.gk1, "gk1b")?;
        veth(&py, "py2", &self.gk2, "gk2b")?;
        py.ip(&["addr", "add", "198.18.8.1/24", "dev", "py0"])?;
        py.ip(&["addr", "add", "198.18.6.1/24", "dev", "py1"])?;
        py.ip(&["addr", "add", "198.18.7.1/24", "dev", "py2"])?;
        host.ip(&["addr", "add", "198.18.8.2/24", "dev", "h0"])?;
        host.ip(&["route", "add", "198.18.0.0/15", "via", "198.18.8.1"])?;
        self.gk1
            .ip(&["addr", "add", "198.18.6.10/24", "dev", "gk1b"])?;
        self.gk2
            .ip(&["addr", "add", "198.18.7.10/24", "dev", "gk2b"])?;
        // The gatekeepers reach the second proxy's gatekeeper side (and
        // its hosts) through their own links to it.
        self.gk2
            .ip(&["route", "add", "198.18.6.0/24", "via", "198.18.7.1"])?;
        self.gk2
            .ip(&["route", "add", "198.18.8.0/24", "via", "198.18.7.1"])?;
        py.ip(&["route", "add", "198.18.2.10/32", "via", "198.18.6.10"])?;
        py.ip(&["route", "add", "198.18.3.10/32", "via", "198.18.7.10"])?;
        // Everything else (the first proxy's hosts) through the backup's
        // namespace.
        py.ip(&["route", "add", "198.18.0.0/15", "via", "198.18.7.10"])?;
        self.px
            .ip(&["route", "add", "198.18.8.0/24", "via", "198.18.3.10"])?;
        for ns in [&py, &self.gk1, &self.gk2] {
            forwarding(ns)?;
        }
        Ok(SecondProxy { py, host })
    }
}

/// A second proxy node on the first one's endpoint LAN, for a pair on one
/// virtual address (`[redundancy]`): the endpoints' link becomes a bridge
/// in their namespace, with both nodes on it, and the node reaches both
/// gatekeepers through links of its own:
///
/// ```text
///  ep 198.18.1.2 (br0) --ep0/px0-- 198.18.1.1 px   (as in Lab)
///                      --ep1/pb0-- 198.18.1.3 pb 198.18.10.1 --pb1/gk1p-- 198.18.10.10 gk1
///                                                198.18.11.1 --pb2/gk2p-- 198.18.11.10 gk2
/// ```
pub struct StandbyNode {
    /// The node's namespace.
    pub pb: Netns,
    /// Pass-only XDP on the endpoints' end of its link (see `Lab`).
    #[cfg(feature = "fastpath")]
    _ep_xdp: proxy_user::fastpath::PeerPass,
}

/// The standby node's endpoint-side address.
pub const PB_EP: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 3);
/// The standby node's gatekeeper-side address.
pub const PB_GK: Ipv4Addr = Ipv4Addr::new(198, 18, 10, 1);

impl Lab {
    /// Add [`StandbyNode`] (re-plumbing the endpoints' link into a bridge).
    pub fn standby_node(&self) -> io::Result<StandbyNode> {
        let pb = Netns::create("pb")?;
        veth(&pb, "pb0", &self.ep, "ep1")?;
        veth(&pb, "pb1", &self.gk1, "gk1p")?;
        veth(&pb, "pb2", &self.gk2, "gk2p")?;
        let ep = &self.ep;
        ep.ip(&["addr", "del", "198.18.1.2/24", "dev", "ep0"])?;
        ep.ip(&["link", "add", "br0", "type", "bridge"])?;
        ep.ip(&["link", "set", "ep0", "master", "br0"])?;
        ep.ip(&["link", "set", "ep1", "master", "br0"])?;
        ep.ip(&["link", "set", "br0", "up"])?;
        ep.ip(&["addr", "add", "198.18.1.2/24", "dev", "br0"])?;
        ep.ip(&["route", "replace", "198.18.0.0/15", "via", "198.18.1.1"])?;
        pb.ip(&["addr", "add", "198.18.1.3/24", "dev", "pb0"])?;
        pb.ip(&["addr", "add", "198.18.10.1/24", "dev", "pb1"])?;
        pb.ip(&["addr", "add", "198.18.11.1/24", "dev", "pb2"])?;
        self.gk1
            .ip(&["addr", "add", "198.18.10.10/24", "dev", "gk1p"])?;
        self.gk2
            .ip(&["addr", "add", "198.18.11.10/24", "dev", "gk2p"])?;
        // The node's gatekeeper-side address, seen from the backup.
        self.gk2
            .ip(&["route", "add", "198.18.10.0/24", "via", "198.18.11.1"])?;
        pb.ip(&["route", "add", "198.18.2.10/32", "via", "198.18.10.10"])?;
        pb.ip(&["route", "add", "198.18.3.10/32", "via", "198.18.11.10"])?;
        forwarding(&pb)?;
        Ok(StandbyNode {
            #[cfg(feature = "fastpath")]
            _ep_xdp: super::netns::xdp_peer_pass(&self.ep, "ep1")?,
            pb,
        })
    }
}

/// A configuration for the standby node (see [`StandbyNode`]): as
/// [`proxy_toml`] with the fast path on `pb0`, its own addresses and
/// identity.
pub fn standby_node_toml(instance: &str, failback_hold_ms: u64) -> String {
    proxy_toml(instance, failback_hold_ms, Some("pb0"))
        .replace(
            &format!("endpoint_address = \"{PX_EP}\""),
            &format!("endpoint_address = \"{PB_EP}\""),
        )
        .replace(
            &format!("gatekeeper_address = \"{PX_GK}\""),
            &format!("gatekeeper_address = \"{PB_GK}\""),
        )
        .replace("\"px1\", \"px2\"", "\"pb1\", \"pb2\"")
        .replace("id = \"LAB-PROXY\"", "id = \"LAB-PROXY-B\"")
}

/// The pair's virtual address on the endpoint LAN (see [`StandbyNode`]).
pub const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 100);
/// The pair's VRRP virtual router id (the virtual MAC ends in 0x33).
pub const VRID: u8 = 51;

/// One member of a VRRP pair: a node's configuration (`text`, whose
/// endpoint address is `own`) made to answer on [`VIP`] on `iface`, with
/// `priority`, preemption, adverts every `advert_ms` to `peer` (none:
/// multicast) and keepalived's FIFO at `fifo`; keepalived does not track
/// the daemon (its process events do not work in a namespace).
#[allow(clippy::too_many_arguments)]
pub fn pair_toml(
    text: String,
    own: Ipv4Addr,
    iface: &str,
    priority: u8,
    preempt: bool,
    peer: Option<Ipv4Addr>,
    advert_ms: u32,
    fifo: &std::path::Path,
) -> String {
    let fifo = fifo.display();
    let unicast = peer
        .map(|p| format!("peer = \"{p}\"\nsource = \"{own}\"\n"))
        .unwrap_or_default();
    text.replace(
        &format!("endpoint_address = \"{own}\""),
        &format!("endpoint_address = \"{VIP}\""),
    ) + &format!(
        "[redundancy]\nprotocol = \"vrrp\"\ninterface = \"{iface}\"\nvirtual_addresses = [\"{VIP}/24\"]\nrouter_id = {VRID}\npriority = {priority}\npreempt = {preempt}\nadvert_interval_ms = {advert_ms}\nnotify_fifo = \"{fifo}\"\ntrack_daemon = \"none\"\n{unicast}"
    )
}

/// A configuration for the second proxy (see [`SecondProxy`]): as
/// [`proxy_toml`], its own addresses and identity.
pub fn second_proxy_toml(instance: &str, failback_hold_ms: u64) -> String {
    proxy_toml(instance, failback_hold_ms, None)
        .replace(
            &format!("endpoint_address = \"{PX_EP}\""),
            &format!("endpoint_address = \"{PY_EP}\""),
        )
        .replace(
            &format!("gatekeeper_address = \"{PX_GK}\""),
            &format!("gatekeeper_address = \"{PY_GK}\""),
        )
        .replace("id = \"LAB-PROXY\"", "id = \"LAB-PROXY-B\"")
}

/// The lab's `[limits]`: its endpoint host is a whole LAN of simulated
/// endpoints behind one address, so the per-source budgets are as large as
/// the global ones. The hostile-LAN tests take this block out (the
/// daemon's defaults) and attack from other addresses.
pub const LAB_LIMITS: &str = "[limits]
ras_per_source_per_second = 1000000
ras_per_source_burst = 1000000
connections_per_source_per_second = 100000
connections_per_source_burst = 100000
max_connections = 8192
max_connections_per_source = 8192
max_registrations_per_source = 1000000
max_registrations = 1000000
ras_outstanding_per_source = 50000
max_calls_per_endpoint = 100000
";

/// A proxy configuration for the lab: both gatekeepers, a short heartbeat,
/// the XDP fast path on `xdp_iface` (off when `None`).
pub fn proxy_toml(instance: &str, failback_hold_ms: u64, xdp_iface: Option<&str>) -> String {
    let fastpath = match xdp_iface {
        Some(i) => format!(
            "enabled = true\ninterfaces = [\"{i}\"]\ngatekeeper_interfaces = [\"px1\", \"px2\"]"
        ),
        None => "enabled = false".to_string(),
    };
    format!(
        r#"instance = "{instance}"
[fastpath]
{fastpath}
stats_interval_secs = 1
[proxy]
id = "LAB-PROXY"
endpoint_address = "{PX_EP}"
gatekeeper_address = "{PX_GK}"
state_dir = ""
[heartbeat]
interval_ms = 40
multiplier = 3
failback_hold_ms = {failback_hold_ms}
[survivable]
[[survivable.dial_plan]]
prefix = "9"
strip = 1
{LAB_LIMITS}[[gatekeeper]]
name = "primary"
address = "{GK1}:1719"
[[gatekeeper]]
name = "backup"
address = "{GK2}:1719"
"#
    )
}
