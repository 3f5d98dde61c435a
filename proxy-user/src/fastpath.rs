//! The aya driver of the kernel fast path: loads the eBPF object built by
//! `build.rs`, attaches XDP, pins every map under `/sys/fs/bpf/<instance>/`
//! and reads the counters back, either from its own handles or from the pins
//! (for `proxy stats` and the tests, which run in other processes).

use std::ffi::CString;
use std::path::{Path, PathBuf};

use aya::maps::{Array, HashMap as BpfHashMap, Map, MapData, PerCpuArray};
use aya::programs::links::{FdLink, PinnedLink};
use aya::programs::xdp::XdpLink;
use aya::programs::{Xdp, XdpMode};
use aya::{Ebpf, EbpfLoader};
use proxy_common::{
    EndpointKey, FastpathSettings, KeepaliveEntry, PacketCounter, RasCounter, ka_slot, packet_slot,
    ras_slot,
};

/// The eBPF object, compiled by build.rs for bpfel-unknown-none.
static BPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/proxy-ebpf"));

/// The benchmark programs' object (`proxy-ebpf/src/bench_main.rs`): loaded
/// only by [`BenchPrograms`], never by the daemon.
static BENCH_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/bench"));

/// Where bpffs is expected.
pub const BPFFS: &str = "/sys/fs/bpf";

// Map and program names (as they appear under the pin directory) are
// defined once, in `proxy_common::names`, next to the shared map types.
pub use proxy_common::names::{
    BENCH_FASTPATH_PROG, BENCH_FRAME_MAP, BENCH_GEN_PROG, BENCH_PASS_PROG, BENCH_SINK_MAP,
    BENCH_SINK_PROG, BENCH_STAGE_PROGS, FASTPATH_PROG, FP_CONFIG_MAP, GK_LIVENESS_MAP,
    GK_SIDE_CONFIG_MAP, GK_SIDE_PROG, GK_SIDE_SOCKS_MAP, KA_REASONS_MAP, KEEPALIVE_MAP,
    LIVENESS_PROG, LOCAL_ADDRS_MAP, OWN_MACS_MAP, PACKETS_MAP, PASS_PROG, RAS_CLASSIFY_MAP,
    RAS_CLASSIFY_PROG,
};
/// Every map the object pins, for clean-up.
pub const ALL_MAPS: [&str; 8] = [
    RAS_CLASSIFY_MAP,
    PACKETS_MAP,
    KEEPALIVE_MAP,
    LOCAL_ADDRS_MAP,
    OWN_MACS_MAP,
    FP_CONFIG_MAP,
    KA_REASONS_MAP,
    GK_LIVENESS_MAP,
];

/// Pin file of the TC link on `iface`.
fn tc_link_pin(dir: &Path, iface: &str) -> PathBuf {
    dir.join(format!("tclink_{iface}"))
}

/// Pin file of the XDP link on `iface`.
fn link_pin(dir: &Path, iface: &str) -> PathBuf {
    dir.join(format!("link_{iface}"))
}

/// Errors of the fast-path driver.
#[derive(Debug, thiserror::Error)]
pub enum FastPathError {
    /// bpffs is not mounted where maps are pinned, and this process runs
    /// in a mount namespace of its own (`ip netns exec` makes one and
    /// remounts /sys), where mounting it would not help.
    #[error(
        "{BPFFS} is not a bpf filesystem in this mount namespace (`ip netns exec` gives the \
         process a private one and remounts /sys). A bpffs mounted here would be private to \
         this process: the pinned maps and XDP link would die with it, and the kernel would \
         stop answering keepalives across the next restart. Run the daemon in the network \
         namespace but the host's mount namespace instead, e.g. \
         `nsenter --net=/run/netns/NAME proxy run ...`, with bpffs mounted on the host \
         (`mount -t bpf bpf {BPFFS}`)"
    )]
    PrivateMountNamespace,
    /// bpffs is not mounted and mounting it failed.
    #[error("{BPFFS} is not a bpf filesystem and mounting one failed: {0}")]
    NoBpffs(std::io::Error),
    /// The instance name would escape the pin directory.
    #[error("instance name {0:?} must be 1-64 characters of [A-Za-z0-9_-]")]
    BadInstance(String),
    /// The pin directory could not be created.
    #[error("creating pin directory {path}: {source}")]
    PinDir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The object did not load (verifier, permissions, BTF).
    #[error("loading the eBPF object: {0}")]
    Load(#[from] aya::EbpfError),
    /// A program or map the object should contain is missing.
    #[error("the eBPF object has no {0}")]
    Missing(&'static str),
    /// Interface name with a NUL byte.
    #[error("interface name {0:?} is not valid")]
    BadInterface(String),
    /// Loading or attaching a program failed.
    #[error("XDP program on {iface}: {source}")]
    Program {
        /// Interface.
        iface: String,
        /// The cause.
        source: aya::programs::ProgramError,
    },
    /// Pinning or adopting a link failed.
    #[error("XDP link on {iface}: {why}")]
    Link {
        /// Interface.
        iface: String,
        /// The cause.
        why: String,
    },
    /// Reading a map failed.
    #[error("map {name}: {source}")]
    Map {
        /// Map name.
        name: &'static str,
        /// The cause.
        source: aya::maps::MapError,
    },
    /// A batch read of a map failed.
    #[error("map {name}: batch lookup: {source}")]
    Batch {
        /// Map name.
        name: &'static str,
        /// The cause.
        source: std::io::Error,
    },
}

type Result<T> = std::result::Result<T, FastPathError>;

/// How XDP ended up attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachMode {
    /// Driver (native) mode.
    Native,
    /// Generic (skb) mode, after native was refused.
    Generic,
    /// A link pinned by an earlier run, now running this run's program.
    Adopted,
}

/// Every address configured on this host (network namespace): the kernel
/// answers only keepalives sent to one of them.
pub fn local_addresses() -> Vec<std::net::IpAddr> {
    interface_addresses(false)
}

/// Every address configured on this host (network namespace) and the
/// broadcast address of every IPv4 interface that has one: what no
/// endpoint may register as its own (the proxy would call itself, or
/// everyone).
pub fn host_addresses() -> Vec<std::net::IpAddr> {
    interface_addresses(true)
}

fn interface_addresses(broadcast: bool) -> Vec<std::net::IpAddr> {
    let mut out = Vec::new();
    let mut ifa: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs allocates a list we walk read-only and free below.
    if unsafe { libc::getifaddrs(&mut ifa) } != 0 {
        return out;
    }
    let mut p = ifa;
    while !p.is_null() {
        // SAFETY: p is a node of the list getifaddrs returned.
        let a = unsafe { (*p).ifa_addr };
        // SAFETY: as above; with IFF_BROADCAST the union holds the
        // broadcast address.
        let b = unsafe { ((*p).ifa_flags & libc::IFF_BROADCAST as u32 != 0).then(|| (*p).ifa_ifu) };
        if broadcast
            && let Some(b) = b.filter(|b| !b.is_null())
            // SAFETY: a sockaddr the kernel filled; its family says which.
            && unsafe { (*b).sa_family } as i32 == libc::AF_INET
        {
            // SAFETY: AF_INET: a sockaddr_in.
            let sin = unsafe { &*(b as *const libc::sockaddr_in) };
            out.push(std::net::Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)).into());
        }
        // The subnet's directed broadcast (host part all ones) whether or
        // not one is configured: no endpoint lives there.
        // SAFETY: as above.
        let m = unsafe { (*p).ifa_netmask };
        if broadcast
            && !a.is_null()
            && !m.is_null()
            // SAFETY: sockaddrs the kernel filled; the family says which.
            && unsafe { (*a).sa_family } as i32 == libc::AF_INET
            && unsafe { (*m).sa_family } as i32 == libc::AF_INET
        {
            // SAFETY: AF_INET: sockaddr_ins.
            let (ip, mask) = unsafe {
                (
                    u32::from_be((*(a as *const libc::sockaddr_in)).sin_addr.s_addr),
                    u32::from_be((*(m as *const libc::sockaddr_in)).sin_addr.s_addr),
                )
            };
            // /31 and /32 have no broadcast address (RFC 3021).
            if mask.count_ones() <= 30 {
                out.push(std::net::Ipv4Addr::from(ip | !mask).into());
            }
        }
        if !a.is_null() {
            // SAFETY: the family says which sockaddr type `a` points to.
            unsafe {
                match (*a).sa_family as i32 {
                    libc::AF_INET => {
                        let sin = &*(a as *const libc::sockaddr_in);
                        out.push(
                            std::net::Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)).into(),
                        );
                    }
                    libc::AF_INET6 => {
                        let sin6 = &*(a as *const libc::sockaddr_in6);
                        out.push(std::net::Ipv6Addr::from(sin6.sin6_addr.s6_addr).into());
                    }
                    _ => {}
                }
            }
        }
        // SAFETY: as above.
        p = unsafe { (*p).ifa_next };
    }
    // SAFETY: the list came from getifaddrs.
    unsafe { libc::freeifaddrs(ifa) };
    out.sort();
    out.dedup();
    out
}

/// Switch kernel answering of a running (or crashed) instance on or off
/// through its pinned settings map (`proxy offload on|off`). Returns the
/// previous state.
pub fn set_answering(instance: &str, on: bool) -> Result<bool> {
    update_settings(instance, |s| {
        let was = s.answer != 0;
        s.answer = on as u32;
        was
    })
}

/// Mark a running instance the standby of its pair (the kernel answers
/// nothing) or the owner of the virtual address, through its pinned
/// settings. Returns the previous state.
pub fn set_standby(instance: &str, standby: bool) -> Result<bool> {
    update_settings(instance, |s| {
        let was = s.standby != 0;
        s.standby = standby as u32;
        was
    })
}

/// Read, change and write back the pinned settings of a running (or
/// crashed) instance.
fn update_settings<T>(instance: &str, f: impl FnOnce(&mut FastpathSettings) -> T) -> Result<T> {
    let map = open_pinned(instance, FP_CONFIG_MAP)?;
    let mut a: Array<_, FastpathSettings> = Array::try_from(map).map_err(map_err(FP_CONFIG_MAP))?;
    let mut s = a.get(&0, 0).map_err(map_err(FP_CONFIG_MAP))?;
    let out = f(&mut s);
    a.set(0, &s, 0).map_err(map_err(FP_CONFIG_MAP))?;
    Ok(out)
}

/// Open map `name` of a running (or crashed) instance from its pin.
fn open_pinned(instance: &str, name: &'static str) -> Result<Map> {
    let data = MapData::from_pin(pin_dir(instance)?.join(name)).map_err(map_err(name))?;
    Map::from_map_data(data).map_err(map_err(name))
}

/// The settings a running (or crashed) instance left in its pinned map.
pub fn settings_from_pins(instance: &str) -> Result<FastpathSettings> {
    let map = open_pinned(instance, FP_CONFIG_MAP)?;
    let a: Array<_, FastpathSettings> = Array::try_from(map).map_err(map_err(FP_CONFIG_MAP))?;
    a.get(&0, 0).map_err(map_err(FP_CONFIG_MAP))
}

pub use crate::clock::{instant_of, monotonic_ns};

/// The gatekeeper liveness map, held by the RAS driver.
pub struct LivenessTable {
    map: BpfHashMap<MapData, proxy_common::PeerAddr, proxy_common::GatekeeperLiveness>,
}

impl LivenessTable {
    /// Open the table of a running instance from its pin (tests, tools).
    pub fn from_pin(instance: &str) -> Result<Self> {
        let map = open_pinned(instance, GK_LIVENESS_MAP)?;
        Ok(Self {
            map: BpfHashMap::try_from(map).map_err(map_err(GK_LIVENESS_MAP))?,
        })
    }

    /// Track a gatekeeper (RAS address, call-signalling port); an entry
    /// already there keeps what the kernel recorded.
    pub fn track(&mut self, ras: std::net::SocketAddr, signalling_port: u16) -> Result<()> {
        let key = proxy_common::PeerAddr {
            addr: crate::offload::local_addr(ras.ip()).addr,
        };
        let mut v = self.map.get(&key, 0).unwrap_or_default();
        if v.ras_port == ras.port() && v.signalling_port == signalling_port {
            return Ok(());
        }
        v.ras_port = ras.port();
        v.signalling_port = signalling_port;
        self.map
            .insert(&key, &v, 0)
            .map_err(map_err(GK_LIVENESS_MAP))
    }

    /// Record the control plane's decision for the gatekeeper at `ip`.
    pub fn set_state(&mut self, ip: std::net::IpAddr, state: u32, active: bool) -> Result<()> {
        let key = proxy_common::PeerAddr {
            addr: crate::offload::local_addr(ip).addr,
        };
        let Ok(mut v) = self.map.get(&key, 0) else {
            return Ok(());
        };
        if v.state == state && v.active == active as u32 {
            return Ok(());
        }
        v.state = state;
        v.active = active as u32;
        // The kernel may have written last_ns meanwhile; losing one update
        // of it delays nothing (the next packet writes it again).
        self.map
            .insert(&key, &v, 0)
            .map_err(map_err(GK_LIVENESS_MAP))
    }

    /// Every tracked gatekeeper host.
    pub fn entries(&self) -> Vec<(std::net::IpAddr, proxy_common::GatekeeperLiveness)> {
        self.map
            .iter()
            .filter_map(|r| r.ok())
            .map(|(k, v)| {
                let key = EndpointKey {
                    addr: k.addr,
                    port: 0,
                    pad: 0,
                };
                (crate::offload::source(&key).ip(), v)
            })
            .collect()
    }
}

/// The pass-only program attached to the far end of a veth (see
/// `lab::netns::xdp_peer_pass`); detached on drop.
pub struct PeerPass {
    _fp: FastPath,
}

impl PeerPass {
    /// Load a private copy of the object and attach `xdp_pass` to `iface`
    /// (in the calling thread's network namespace), driver mode.
    pub fn attach(iface: &str) -> Result<Self> {
        let mut fp = FastPath::load_private("peerpass")?;
        let perr = |source| FastPathError::Program {
            iface: iface.to_owned(),
            source,
        };
        let prog = fp.program(PASS_PROG, iface)?;
        let name =
            CString::new(iface).map_err(|_| FastPathError::BadInterface(iface.to_owned()))?;
        prog.attach(&name, XdpMode::Driver).map_err(perr)?;
        Ok(Self { _fp: fp })
    }
}

/// A traffic generator for the veth lab: `bench_gen` run by
/// BPF_PROG_TEST_RUN in live-frame mode sends one frame out of an interface
/// as fast as the CPU allows, and `bench_sink`, attached to the same
/// interface, counts and drops what comes back. Lives in the calling
/// thread's network namespace; detached on drop.
pub struct TrafficGen {
    fp: BenchPrograms,
    ifindex: u32,
    frame: Vec<u8>,
}

impl TrafficGen {
    /// Load a private copy of the benchmark object, attach the sink to
    /// `iface` and set the frame to send.
    pub fn attach(iface: &str, frame: &[u8]) -> Result<Self> {
        let mut fp = BenchPrograms::load_private("trafficgen")?;
        fp.set_frame(frame)?;
        let name =
            CString::new(iface).map_err(|_| FastPathError::BadInterface(iface.to_owned()))?;
        // SAFETY: a NUL-terminated name.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if ifindex == 0 {
            return Err(FastPathError::BadInterface(iface.to_owned()));
        }
        let perr = |source| FastPathError::Program {
            iface: iface.to_owned(),
            source,
        };
        fp.program(BENCH_SINK_PROG, iface)?
            .attach(&name, XdpMode::Driver)
            .map_err(perr)?;
        fp.program(BENCH_GEN_PROG, iface)?;
        Ok(Self {
            fp,
            ifindex,
            frame: frame.to_vec(),
        })
    }

    /// Send the frame `count` times (live-frame mode, batches of 64).
    pub fn send(&mut self, count: u32) -> Result<()> {
        use aya::programs::TestRun as _;
        // struct xdp_md: data, data_end, data_meta, ingress_ifindex,
        // rx_queue_index, egress_ifindex.
        // The kernel wants data_end equal to the frame's length.
        let mut ctx = [0u8; 24];
        ctx[4..8].copy_from_slice(&(self.frame.len() as u32).to_ne_bytes());
        ctx[12..16].copy_from_slice(&self.ifindex.to_ne_bytes());
        let prog = self.fp.program(BENCH_GEN_PROG, "(generator)")?;
        let opts = aya::programs::TestRunOptions {
            data_in: Some(&self.frame),
            ctx_in: Some(&ctx),
            repeat: count,
            attrs: aya::programs::TestRunAttrs::new().xdp_live_frames(64),
            ..Default::default()
        };
        prog.test_run(opts)
            .map(drop)
            .map_err(|source| FastPathError::Program {
                iface: "(generator)".into(),
                source,
            })
    }

    /// Frames the sink has counted so far.
    pub fn received(&self) -> Result<u64> {
        let map = self
            .fp
            .ebpf
            .map(BENCH_SINK_MAP)
            .ok_or(FastPathError::Missing(BENCH_SINK_MAP))?;
        let a: PerCpuArray<_, PacketCounter> =
            PerCpuArray::try_from(map).map_err(map_err(BENCH_SINK_MAP))?;
        let per_cpu = a.get(&0, 0).map_err(map_err(BENCH_SINK_MAP))?;
        Ok(per_cpu.iter().map(|c| c.packets).sum())
    }
}

/// An XDP program of `ebpf`, loaded (verified) on first use.
fn xdp_program<'a>(ebpf: &'a mut Ebpf, name: &'static str, iface: &str) -> Result<&'a mut Xdp> {
    let perr = |source| FastPathError::Program {
        iface: iface.to_owned(),
        source,
    };
    let prog: &mut Xdp = ebpf
        .program_mut(name)
        .ok_or(FastPathError::Missing(name))?
        .try_into()
        .map_err(perr)?;
    if prog.fd().is_err() {
        prog.load().map_err(perr)?;
    }
    Ok(prog)
}

/// Run program `name` of `ebpf` on one frame with BPF_PROG_TEST_RUN.
fn test_run(
    ebpf: &mut Ebpf,
    name: &'static str,
    frame: &[u8],
    repeat: u32,
    out: Option<&mut [u8]>,
) -> Result<(u32, std::time::Duration, usize)> {
    use aya::programs::TestRun as _;
    let prog = xdp_program(ebpf, name, "(test run)")?;
    let opts = aya::programs::TestRunOptions {
        data_in: Some(frame),
        data_out: out,
        repeat,
        ..Default::default()
    };
    let r = prog
        .test_run(opts)
        .map_err(|source| FastPathError::Program {
            iface: "(test run)".into(),
            source,
        })?;
    Ok((r.return_value, r.duration, r.data_size_out as usize))
}

/// The benchmark programs (`bench_*`, see [`BENCH_PASS_PROG`]) in their own
/// object. Loaded beside a [`FastPath`], they share its pinned maps, so
/// `bench_fastpath` answers from the same learned endpoints and counts in
/// the same counters; `BENCH_FRAME` and `BENCH_SINK` are their own.
pub struct BenchPrograms {
    ebpf: Ebpf,
}

impl BenchPrograms {
    /// Load the benchmark object over `fp`'s pinned maps.
    pub fn load(fp: &FastPath) -> Result<Self> {
        Self::load_in(&fp.pin_dir)
    }

    fn load_in(pin_dir: &Path) -> Result<Self> {
        // The loader refuses a pinned map of another size than declared:
        // take the learned-endpoint map's from its pin.
        let max = aya::maps::MapInfo::from_pin(pin_dir.join(KEEPALIVE_MAP))
            .map(|i| i.max_entries())
            .unwrap_or(1);
        let ebpf = EbpfLoader::new()
            .default_map_pin_directory(pin_dir)
            .map_max_entries(KEEPALIVE_MAP, max.max(1))
            .load(BENCH_OBJECT)?;
        Ok(Self { ebpf })
    }

    /// A private copy with maps of its own, their pins removed at once.
    fn load_private(tag: &str) -> Result<Self> {
        let fp = FastPath::load_private_pinned(tag)?;
        let b = Self::load(&fp);
        fp.remove_pins();
        b
    }

    /// The frame the benchmark programs put back before every run.
    pub fn set_frame(&mut self, frame: &[u8]) -> Result<()> {
        let map = self
            .ebpf
            .map_mut(BENCH_FRAME_MAP)
            .ok_or(FastPathError::Missing(BENCH_FRAME_MAP))?;
        let mut a: Array<_, proxy_common::BenchFrame> =
            Array::try_from(map).map_err(map_err(BENCH_FRAME_MAP))?;
        let mut f = proxy_common::BenchFrame::default();
        let n = frame.len().min(f.bytes.len());
        f.bytes[..n].copy_from_slice(&frame[..n]);
        f.len = n as u32;
        a.set(0, &f, 0).map_err(map_err(BENCH_FRAME_MAP))
    }

    /// A benchmark program, loaded (verified) on first use.
    fn program(&mut self, name: &'static str, iface: &str) -> Result<&mut Xdp> {
        xdp_program(&mut self.ebpf, name, iface)
    }

    /// As [`FastPath::test_run`], for a benchmark program.
    pub fn test_run(
        &mut self,
        name: &'static str,
        frame: &[u8],
        repeat: u32,
    ) -> Result<(u32, std::time::Duration)> {
        test_run(&mut self.ebpf, name, frame, repeat, None).map(|(a, d, _)| (a, d))
    }
}

/// The learned-endpoint map, held by the RAS driver.
pub struct KeepaliveTable {
    map: BpfHashMap<MapData, EndpointKey, KeepaliveEntry>,
    /// Where it is pinned (readers open their own handle there).
    pin: PathBuf,
}

impl KeepaliveTable {
    /// Open the table of a running instance from its pin (tests, tools).
    pub fn from_pin(instance: &str) -> Result<Self> {
        let map = open_pinned(instance, KEEPALIVE_MAP)?;
        Ok(Self {
            map: BpfHashMap::try_from(map).map_err(map_err(KEEPALIVE_MAP))?,
            pin: pin_dir(instance)?.join(KEEPALIVE_MAP),
        })
    }

    /// A reader of the whole table with a handle of its own, for another
    /// thread.
    pub fn reader(&self) -> Result<KeepaliveReader> {
        Ok(KeepaliveReader {
            map: MapData::from_pin(&self.pin).map_err(map_err(KEEPALIVE_MAP))?,
            chunk: 1024,
        })
    }

    /// Every learned endpoint with its entry, a key at a time (aya's
    /// iterator: two system calls per entry). The benchmarks' baseline for
    /// [`KeepaliveReader::entries`].
    pub fn entries_key_by_key(&self) -> Vec<(std::net::SocketAddr, KeepaliveEntry)> {
        self.map
            .iter()
            .filter_map(|r| r.ok())
            .map(|(k, v)| (crate::offload::source(&k), v))
            .collect()
    }

    /// Let the kernel answer keepalives from `source` with `entry`.
    pub fn learn(&mut self, source: std::net::SocketAddr, entry: &KeepaliveEntry) -> Result<()> {
        self.map
            .insert(&crate::offload::key(source), entry, 0)
            .map_err(map_err(KEEPALIVE_MAP))
    }

    /// Stop answering for `source`.
    pub fn forget(&mut self, source: std::net::SocketAddr) {
        let _ = self.map.remove(&crate::offload::key(source));
    }

    /// Every learned endpoint with its entry (see [`KeepaliveReader`]).
    pub fn entries(&self) -> Result<Vec<(std::net::SocketAddr, KeepaliveEntry)>> {
        self.reader()?.entries()
    }

    /// Number of learned endpoints.
    pub fn len(&self) -> usize {
        self.entries().map(|v| v.len()).unwrap_or(0)
    }

    /// No endpoint learned.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The sk_lookup object (`proxy-ebpf/src/gk_side.rs`), built by build.rs.
static GK_SIDE_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/gk-side"));

/// Steering of every endpoint's own gatekeeper-side address to the one UDP
/// socket and the one TCP listener of the gatekeeper side: the `gk_side`
/// sk_lookup program attached to this network namespace. Nothing is
/// pinned: the program's link and the sockets go with the daemon.
pub struct GkSideSteering {
    _ebpf: Ebpf,
}

impl GkSideSteering {
    /// Load the program, hand it `udp` and `tcp` and the ranges of `pool`,
    /// and attach it to the daemon's network namespace.
    pub fn attach(
        pool: &crate::identity::IdentityPool,
        udp: &impl std::os::fd::AsRawFd,
        tcp: &impl std::os::fd::AsRawFd,
    ) -> Result<Self> {
        use aya::maps::SockMap;
        use aya::programs::SkLookup;
        const PROG: &str = GK_SIDE_PROG;
        let perr = |source| FastPathError::Program {
            iface: "sk_lookup (this network namespace)".into(),
            source,
        };
        let mut ebpf = EbpfLoader::new().load(GK_SIDE_OBJECT)?;
        let (addrs, ports) = pool.ranges();
        let mut cfg = proxy_common::GkSideConfig {
            port_lo: u32::from(*ports.start()),
            port_hi: u32::from(*ports.end()),
            ..Default::default()
        };
        for a in addrs.iter().take(proxy_common::GK_SIDE_MAX_ADDRS) {
            match a {
                std::net::IpAddr::V4(v4) => {
                    cfg.v4[cfg.n_v4 as usize] = u32::from_ne_bytes(v4.octets());
                    cfg.n_v4 += 1;
                }
                std::net::IpAddr::V6(v6) => {
                    let o = v6.octets();
                    let mut w = [0u32; 4];
                    for (i, c) in o.as_chunks::<4>().0.iter().enumerate() {
                        w[i] = u32::from_ne_bytes(*c);
                    }
                    cfg.v6[cfg.n_v6 as usize] = w;
                    cfg.n_v6 += 1;
                }
            }
        }
        {
            let map = ebpf
                .map_mut(GK_SIDE_CONFIG_MAP)
                .ok_or(FastPathError::Missing(GK_SIDE_CONFIG_MAP))?;
            let mut a: Array<_, proxy_common::GkSideConfig> =
                Array::try_from(map).map_err(map_err(GK_SIDE_CONFIG_MAP))?;
            a.set(0, &cfg, 0).map_err(map_err(GK_SIDE_CONFIG_MAP))?;
        }
        {
            let map = ebpf
                .map_mut(GK_SIDE_SOCKS_MAP)
                .ok_or(FastPathError::Missing(GK_SIDE_SOCKS_MAP))?;
            let mut socks = SockMap::try_from(map).map_err(map_err(GK_SIDE_SOCKS_MAP))?;
            socks
                .set(proxy_common::gk_side_sock::UDP, udp, 0)
                .map_err(map_err(GK_SIDE_SOCKS_MAP))?;
            socks
                .set(proxy_common::gk_side_sock::TCP, tcp, 0)
                .map_err(map_err(GK_SIDE_SOCKS_MAP))?;
        }
        let prog: &mut SkLookup = ebpf
            .program_mut(PROG)
            .ok_or(FastPathError::Missing(PROG))?
            .try_into()
            .map_err(perr)?;
        prog.load().map_err(perr)?;
        let netns = std::fs::File::open("/proc/self/ns/net").map_err(|e| FastPathError::Link {
            iface: "sk_lookup".into(),
            why: format!("opening /proc/self/ns/net: {e}"),
        })?;
        prog.attach(netns).map_err(perr)?;
        Ok(Self { _ebpf: ebpf })
    }
}

/// The fast path of one proxy instance: loaded object, attached programs and
/// pinned maps and links. The links are pinned, so the programs stay attached
/// and keep answering if the daemon dies; [`FastPath::unpin`] detaches.
pub struct FastPath {
    ebpf: Ebpf,
    pin_dir: PathBuf,
    /// Interfaces with a pinned XDP link.
    links: Vec<String>,
    /// Interfaces with a pinned TC link.
    tc_links: Vec<String>,
}

/// Pin directory of an instance, after checking the name.
pub fn pin_dir(instance: &str) -> Result<PathBuf> {
    if !crate::config::valid_instance(instance) {
        return Err(FastPathError::BadInstance(instance.to_owned()));
    }
    Ok(Path::new(BPFFS).join(instance))
}

/// `iface`'s index and MAC address, asked of the kernel in the daemon's
/// own network namespace (sysfs shows the namespace it was mounted in,
/// which under `setns` is another one).
pub fn interface_mac(iface: &str) -> Result<(u32, [u8; 6])> {
    let bad = || FastPathError::BadInterface(iface.to_owned());
    let name = CString::new(iface).map_err(|_| bad())?;
    if name.as_bytes().len() >= libc::IFNAMSIZ {
        return Err(bad());
    }
    // SAFETY: a NUL-terminated name.
    let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if ifindex == 0 {
        return Err(bad());
    }
    // SAFETY: a plain socket for the ioctl, closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(bad());
    }
    // SAFETY: ifreq is plain data; the name fits (checked above).
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(name.as_bytes()) {
        *d = *s as libc::c_char;
    }
    // SAFETY: SIOCGIFHWADDR fills the ifreq's hardware address.
    let rc = unsafe { libc::ioctl(fd, libc::SIOCGIFHWADDR, &mut req) };
    // SAFETY: our own descriptor.
    unsafe { libc::close(fd) };
    if rc != 0 {
        return Err(bad());
    }
    // SAFETY: after SIOCGIFHWADDR the union holds the address.
    let sa = unsafe { req.ifr_ifru.ifru_hwaddr };
    let mut mac = [0u8; 6];
    for (d, s) in mac.iter_mut().zip(sa.sa_data.iter()) {
        *d = *s as u8;
    }
    Ok((ifindex, mac))
}

/// Whether IPv4 forwarding is on for `iface`: `bpf_fib_lookup`, which the
/// source-MAC check asks, refuses to work without it.
pub fn ipv4_forwarding(iface: &str) -> bool {
    std::fs::read_to_string(format!("/proc/sys/net/ipv4/conf/{iface}/forwarding"))
        .is_ok_and(|s| s.trim() == "1")
}

fn bpffs_mounted() -> bool {
    std::fs::read_to_string("/proc/mounts")
        .map(|m| {
            m.lines().any(|l| {
                let mut f = l.split_whitespace();
                let (_, mnt, fs) = (f.next(), f.next(), f.next());
                mnt == Some(BPFFS) && fs == Some("bpf")
            })
        })
        .unwrap_or(false)
}

/// Whether a mount made in this process's mount namespace outlives the
/// process: it shares the namespace of PID 1 or, where PID 1's is not
/// visible, any process other than itself and its children lives in it
/// (`ip netns exec` makes a namespace for the one command it starts).
fn mount_namespace_outlives_us() -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(me) = std::fs::metadata("/proc/self/ns/mnt") else {
        return true;
    };
    let same = |pid: &str| {
        std::fs::metadata(format!("/proc/{pid}/ns/mnt"))
            .map(|m| m.ino() == me.ino() && m.dev() == me.dev())
    };
    if let Ok(init) = same("1") {
        return init;
    }
    let own = std::process::id();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return true;
    };
    procs.flatten().any(|e| {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            return false;
        };
        if pid == own.to_string() {
            return false;
        }
        // Our own children (threads are not listed here) do not count.
        let parent = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|st| {
                st.rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok())
            });
        parent != Some(own) && same(pid).unwrap_or(false)
    })
}

/// Make sure pins go to a bpffs that outlives this process: mount one in
/// the init mount namespace when missing; refuse in a private namespace.
fn ensure_bpffs() -> Result<()> {
    if bpffs_mounted() {
        return Ok(());
    }
    if !mount_namespace_outlives_us() {
        return Err(FastPathError::PrivateMountNamespace);
    }
    let c = |s: &str| CString::new(s).expect("no NUL");
    let (src, dst, fs) = (c("bpf"), c(BPFFS), c("bpf"));
    // SAFETY: plain mount(2) with NUL-terminated strings and no data.
    let rc = unsafe { libc::mount(src.as_ptr(), dst.as_ptr(), fs.as_ptr(), 0, std::ptr::null()) };
    if rc != 0 {
        return Err(FastPathError::NoBpffs(std::io::Error::last_os_error()));
    }
    tracing::info!("mounted bpffs at {BPFFS} (host mount namespace)");
    Ok(())
}

impl FastPath {
    /// Load the object with its maps pinned under `/sys/fs/bpf/<instance>/`.
    /// Maps already pinned there are reused, so counters survive a restart.
    pub fn load(instance: &str) -> Result<Self> {
        Self::load_sized(instance, 262_144)
    }

    /// As [`FastPath::load`], with room for `max_endpoints` learned
    /// endpoints (a pinned map from an earlier run keeps its own size).
    pub fn load_sized(instance: &str, max_endpoints: u32) -> Result<Self> {
        let pin_dir = pin_dir(instance)?;
        ensure_bpffs()?;
        std::fs::create_dir_all(&pin_dir).map_err(|source| FastPathError::PinDir {
            path: pin_dir.clone(),
            source,
        })?;
        // Settings are pure configuration, rewritten at every start: a pin
        // left by a version with another layout is dropped rather than
        // refused (the loader rejects a pinned map of another value size).
        let settings_pin = pin_dir.join(FP_CONFIG_MAP);
        if aya::maps::MapInfo::from_pin(&settings_pin)
            .is_ok_and(|i| i.value_size() as usize != std::mem::size_of::<FastpathSettings>())
        {
            tracing::warn!(pin = %settings_pin.display(), "settings map of an older layout replaced");
            let _ = std::fs::remove_file(&settings_pin);
        }
        let ebpf = EbpfLoader::new()
            .default_map_pin_directory(&pin_dir)
            .map_max_entries(KEEPALIVE_MAP, max_endpoints.max(1))
            .load(BPF_OBJECT)?;
        Ok(Self {
            ebpf,
            pin_dir,
            links: Vec::new(),
            tc_links: Vec::new(),
        })
    }

    /// The directory the maps are pinned in.
    pub fn pin_dir(&self) -> &Path {
        &self.pin_dir
    }

    /// The RAS classifier, loaded into the kernel (verified) on first use.
    fn ras_classifier(&mut self, iface: &str) -> Result<&mut Xdp> {
        self.program(RAS_CLASSIFY_PROG, iface)
    }

    /// A program of the object, loaded (verified) on first use.
    fn program(&mut self, name: &'static str, iface: &str) -> Result<&mut Xdp> {
        xdp_program(&mut self.ebpf, name, iface)
    }

    /// Run the RAS classifier on one frame with BPF_PROG_TEST_RUN (no
    /// interface involved) and return its XDP action. Counters are updated
    /// as for a real packet; `repeat` runs it that many times and the mean
    /// time per run comes back for benchmarks.
    pub fn test_run_ras_classifier(
        &mut self,
        frame: &[u8],
        repeat: u32,
    ) -> Result<(u32, std::time::Duration)> {
        self.test_run(RAS_CLASSIFY_PROG, frame, repeat, None)
            .map(|(a, d, _)| (a, d))
    }

    /// Run program `name` on one frame with BPF_PROG_TEST_RUN; returns its
    /// action, the mean time per run and the frame as the program left it
    /// (when `out` gives room for it).
    pub fn test_run(
        &mut self,
        name: &'static str,
        frame: &[u8],
        repeat: u32,
        out: Option<&mut [u8]>,
    ) -> Result<(u32, std::time::Duration, usize)> {
        test_run(&mut self.ebpf, name, frame, repeat, out)
    }

    /// Attach the RAS classifier to `iface`: native mode first, generic mode
    /// when the driver refuses (logged by the caller from the returned mode).
    pub fn attach_ras_classifier(&mut self, iface: &str) -> Result<AttachMode> {
        let perr = |source| FastPathError::Program {
            iface: iface.to_owned(),
            source,
        };
        let prog = self.ras_classifier(iface)?;
        let name =
            CString::new(iface).map_err(|_| FastPathError::BadInterface(iface.to_owned()))?;
        match prog.attach(&name, XdpMode::Driver) {
            Ok(_) => Ok(AttachMode::Native),
            Err(native) => {
                tracing::warn!(%iface, error = %native, "native XDP refused, falling back to generic mode");
                prog.attach(&name, XdpMode::Skb).map_err(perr)?;
                Ok(AttachMode::Generic)
            }
        }
    }

    /// Attach the keepalive fast path to `iface` and pin the link, so it
    /// outlives the daemon. A link pinned by an earlier run is adopted: the
    /// new program replaces the old one atomically, with the same pinned
    /// maps, so answering never stops. Native mode first, generic mode when
    /// the driver refuses.
    pub fn attach_fastpath(&mut self, iface: &str) -> Result<AttachMode> {
        let perr = |source| FastPathError::Program {
            iface: iface.to_owned(),
            source,
        };
        let lerr = |why: String| FastPathError::Link {
            iface: iface.to_owned(),
            why,
        };
        let pin = link_pin(&self.pin_dir, iface);
        let prog = self.program(FASTPATH_PROG, iface)?;
        let (id, mode) = if pin.exists() {
            let old = PinnedLink::from_pin(&pin).map_err(|e| lerr(e.to_string()))?;
            // Holding the fd keeps it attached while the pin is replaced.
            let fd = old.unpin().map_err(|e| lerr(e.to_string()))?;
            let link = XdpLink::try_from(fd).map_err(|e| lerr(e.to_string()))?;
            let id = prog.attach_to_link(link).map_err(perr)?;
            tracing::info!(%iface, "adopted the XDP link left by an earlier run");
            (id, AttachMode::Adopted)
        } else {
            let name =
                CString::new(iface).map_err(|_| FastPathError::BadInterface(iface.to_owned()))?;
            match prog.attach(&name, XdpMode::Driver) {
                Ok(id) => (id, AttachMode::Native),
                Err(native) => {
                    tracing::warn!(%iface, error = %native, "native XDP refused, falling back to generic mode");
                    (
                        prog.attach(&name, XdpMode::Skb).map_err(perr)?,
                        AttachMode::Generic,
                    )
                }
            }
        };
        let link = prog.take_link(id).map_err(perr)?;
        match FdLink::try_from(link) {
            Ok(fd) => {
                fd.pin(&pin).map_err(|e| lerr(e.to_string()))?;
                self.links.push(iface.to_owned());
            }
            Err(e) => {
                // Netlink attach (kernel without XDP bpf_link): it lives as
                // long as this process.
                tracing::warn!(%iface, error = %e, "XDP link cannot be pinned; the fast path stops with the daemon");
            }
        }
        Ok(mode)
    }

    /// Attach the gatekeeper liveness program to `iface` (TCX ingress) and
    /// pin the link; a link left by an earlier run is adopted.
    pub fn attach_liveness(&mut self, iface: &str) -> Result<()> {
        use aya::programs::tc::{SchedClassifierLink, TcAttach, TcAttachType};
        use aya::programs::{LinkOrder, SchedClassifier};
        let perr = |source| FastPathError::Program {
            iface: iface.to_owned(),
            source,
        };
        let lerr = |why: String| FastPathError::Link {
            iface: iface.to_owned(),
            why,
        };
        let pin = tc_link_pin(&self.pin_dir, iface);
        let prog: &mut SchedClassifier = self
            .ebpf
            .program_mut(LIVENESS_PROG)
            .ok_or(FastPathError::Missing(LIVENESS_PROG))?
            .try_into()
            .map_err(perr)?;
        if prog.fd().is_err() {
            prog.load().map_err(perr)?;
        }
        let id = if pin.exists() {
            let old = PinnedLink::from_pin(&pin).map_err(|e| lerr(e.to_string()))?;
            let fd = old.unpin().map_err(|e| lerr(e.to_string()))?;
            let link = SchedClassifierLink::try_from(fd).map_err(|e| lerr(e.to_string()))?;
            prog.attach_to_link(link).map_err(perr)?
        } else {
            let name =
                CString::new(iface).map_err(|_| FastPathError::BadInterface(iface.to_owned()))?;
            prog.attach(
                name.as_c_str(),
                TcAttach::Tcx {
                    attach_type: TcAttachType::Ingress,
                    order: LinkOrder::default(),
                },
            )
            .map_err(perr)?
        };
        let link = prog.take_link(id).map_err(perr)?;
        let fd = FdLink::try_from(link).map_err(|e| lerr(e.to_string()))?;
        fd.pin(&pin).map_err(|e| lerr(e.to_string()))?;
        self.tc_links.push(iface.to_owned());
        Ok(())
    }

    /// Hand the gatekeeper liveness map to the control plane.
    pub fn take_liveness_table(&mut self) -> Result<LivenessTable> {
        let map = self
            .ebpf
            .take_map(GK_LIVENESS_MAP)
            .ok_or(FastPathError::Missing(GK_LIVENESS_MAP))?;
        Ok(LivenessTable {
            map: BpfHashMap::try_from(map).map_err(map_err(GK_LIVENESS_MAP))?,
        })
    }

    /// Write the fast-path settings.
    pub fn configure(&mut self, settings: FastpathSettings) -> Result<()> {
        let map = self
            .ebpf
            .map_mut(FP_CONFIG_MAP)
            .ok_or(FastPathError::Missing(FP_CONFIG_MAP))?;
        let mut a: Array<_, FastpathSettings> =
            Array::try_from(map).map_err(map_err(FP_CONFIG_MAP))?;
        a.set(0, &settings, 0).map_err(map_err(FP_CONFIG_MAP))
    }

    /// A private copy of the object for lab helpers (`tag-<pid>-<n>`),
    /// its pins removed at once: only this process's fds keep its maps.
    fn load_private(tag: &str) -> Result<Self> {
        let fp = Self::load_private_pinned(tag)?;
        fp.remove_pins();
        Ok(fp)
    }

    /// As [`FastPath::load_private`], pins still in place.
    fn load_private_pinned(tag: &str) -> Result<Self> {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let instance = format!("{tag}-{}-{n}", std::process::id());
        FastPath::load_sized(&instance, 1)
    }

    /// Remove the map pins and their directory (the maps live on while
    /// this process holds them).
    fn remove_pins(&self) {
        for name in ALL_MAPS {
            let _ = std::fs::remove_file(self.pin_dir.join(name));
        }
        let _ = std::fs::remove_dir(&self.pin_dir);
    }

    /// Replace the set of addresses the kernel answers for.
    pub fn set_local_addrs(&mut self, addrs: &[std::net::IpAddr]) -> Result<()> {
        let map = self
            .ebpf
            .map_mut(LOCAL_ADDRS_MAP)
            .ok_or(FastPathError::Missing(LOCAL_ADDRS_MAP))?;
        let mut h: BpfHashMap<_, proxy_common::LocalAddr, u32> =
            BpfHashMap::try_from(map).map_err(map_err(LOCAL_ADDRS_MAP))?;
        let want: Vec<_> = addrs
            .iter()
            .map(|a| crate::offload::local_addr(*a))
            .collect();
        let stale: Vec<_> = h
            .keys()
            .filter_map(|k| k.ok())
            .filter(|k| !want.contains(k))
            .collect();
        for k in stale {
            let _ = h.remove(&k);
        }
        for k in want {
            h.insert(&k, &1, 0).map_err(map_err(LOCAL_ADDRS_MAP))?;
        }
        Ok(())
    }

    /// Let the fast path answer frames addressed to `iface`'s own MAC
    /// there (see `FastpathSettings::check_macs`); returns the MAC.
    pub fn add_own_mac(&mut self, iface: &str) -> Result<[u8; 6]> {
        let (ifindex, mac) = interface_mac(iface)?;
        self.add_mac(ifindex, mac)?;
        Ok(mac)
    }

    /// Let the fast path answer frames addressed to `mac` on interface
    /// `ifindex` (an interface's own, or a VRRP/HSRP virtual MAC).
    pub fn add_mac(&mut self, ifindex: u32, mac: [u8; 6]) -> Result<()> {
        let map = self
            .ebpf
            .map_mut(OWN_MACS_MAP)
            .ok_or(FastPathError::Missing(OWN_MACS_MAP))?;
        let mut h: BpfHashMap<_, proxy_common::MacKey, u32> =
            BpfHashMap::try_from(map).map_err(map_err(OWN_MACS_MAP))?;
        let key = proxy_common::MacKey {
            ifindex,
            mac,
            pad: 0,
        };
        h.insert(&key, &1, 0).map_err(map_err(OWN_MACS_MAP))
    }

    /// Hand the learned-endpoint map to the control plane.
    pub fn take_keepalive_table(&mut self) -> Result<KeepaliveTable> {
        let map = self
            .ebpf
            .take_map(KEEPALIVE_MAP)
            .ok_or(FastPathError::Missing(KEEPALIVE_MAP))?;
        Ok(KeepaliveTable {
            map: BpfHashMap::try_from(map).map_err(map_err(KEEPALIVE_MAP))?,
            pin: self.pin_dir.join(KEEPALIVE_MAP),
        })
    }

    /// Counters from this instance's own map handles.
    pub fn counters(&self) -> Result<Counters> {
        let ras = self
            .ebpf
            .map(RAS_CLASSIFY_MAP)
            .ok_or(FastPathError::Missing(RAS_CLASSIFY_MAP))?;
        let pk = self
            .ebpf
            .map(PACKETS_MAP)
            .ok_or(FastPathError::Missing(PACKETS_MAP))?;
        let ka = self
            .ebpf
            .map(KA_REASONS_MAP)
            .ok_or(FastPathError::Missing(KA_REASONS_MAP))?;
        Counters::read(
            &PerCpuArray::try_from(ras).map_err(map_err(RAS_CLASSIFY_MAP))?,
            &PerCpuArray::try_from(pk).map_err(map_err(PACKETS_MAP))?,
            &PerCpuArray::try_from(ka).map_err(map_err(KA_REASONS_MAP))?,
        )
    }

    /// Leave the programs attached and the maps pinned for the next run
    /// (`[fastpath] keep_running_on_exit`).
    pub fn leave_running(self) {
        drop(self);
    }

    /// Detach (remove the link pins and drop the links) and remove the pins.
    pub fn unpin(self) -> std::io::Result<()> {
        let dir = self.pin_dir.clone();
        let pins = self
            .links
            .iter()
            .map(|i| link_pin(&dir, i))
            .chain(self.tc_links.iter().map(|i| tc_link_pin(&dir, i)));
        for pin in pins {
            match std::fs::remove_file(pin) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        drop(self);
        for name in ALL_MAPS {
            match std::fs::remove_file(dir.join(name)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        match std::fs::remove_dir(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

fn map_err(name: &'static str) -> impl Fn(aya::maps::MapError) -> FastPathError {
    move |source| FastPathError::Map { name, source }
}

/// Fast-path counters summed over CPUs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Per `ras_slot`.
    pub ras: Vec<RasCounter>,
    /// Per `packet_slot`.
    pub packets: Vec<u64>,
    /// Per `ka_slot`: keepalives answered in the kernel, and why others
    /// were left to userspace.
    pub keepalive: Vec<u64>,
    /// Endpoints in the learned-endpoint map.
    pub endpoints: usize,
}

impl Counters {
    fn read<R, P>(
        ras: &PerCpuArray<R, RasCounter>,
        pk: &PerCpuArray<P, PacketCounter>,
        ka: &PerCpuArray<P, PacketCounter>,
    ) -> Result<Self>
    where
        R: std::borrow::Borrow<MapData>,
        P: std::borrow::Borrow<MapData>,
    {
        let mut out = Counters::default();
        for i in 0..ka_slot::COUNT {
            let per_cpu = ka.get(&i, 0).map_err(map_err(KA_REASONS_MAP))?;
            out.keepalive.push(per_cpu.iter().map(|c| c.packets).sum());
        }
        for i in 0..ras_slot::COUNT {
            let per_cpu = ras.get(&i, 0).map_err(map_err(RAS_CLASSIFY_MAP))?;
            out.ras.push(
                per_cpu
                    .iter()
                    .fold(RasCounter::default(), |a, c| RasCounter {
                        packets: a.packets + c.packets,
                        bytes: a.bytes + c.bytes,
                    }),
            );
        }
        for i in 0..packet_slot::COUNT {
            let per_cpu = pk.get(&i, 0).map_err(map_err(PACKETS_MAP))?;
            out.packets.push(per_cpu.iter().map(|c| c.packets).sum());
        }
        Ok(out)
    }

    /// Read the counters of a running (or crashed) instance from its pins.
    pub fn from_pins(instance: &str) -> Result<Self> {
        let ras = open_pinned(instance, RAS_CLASSIFY_MAP)?;
        let pk = open_pinned(instance, PACKETS_MAP)?;
        let ka = open_pinned(instance, KA_REASONS_MAP)?;
        let mut c = Self::read(
            &PerCpuArray::try_from(&ras).map_err(map_err(RAS_CLASSIFY_MAP))?,
            &PerCpuArray::try_from(&pk).map_err(map_err(PACKETS_MAP))?,
            &PerCpuArray::try_from(&ka).map_err(map_err(KA_REASONS_MAP))?,
        )?;
        c.endpoints = KeepaliveTable::from_pin(instance)?.len();
        Ok(c)
    }

    /// Keepalives answered in the kernel.
    pub fn answered(&self) -> u64 {
        self.keepalive[ka_slot::ANSWERED as usize]
    }
}

/// Reads the learned-endpoint map `chunk` entries per system call
/// (BPF_MAP_LOOKUP_BATCH). The control plane reads the whole map every
/// second; aya's iterator takes two system calls per entry, which at
/// 100,000 endpoints is a large share of a core (see `cargo xtask bench`).
pub struct KeepaliveReader {
    map: MapData,
    chunk: usize,
}

/// The `batch` member of `union bpf_attr` (linux/bpf.h).
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// `BPF_MAP_LOOKUP_BATCH` (linux/bpf.h, `enum bpf_cmd`).
const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;

impl KeepaliveReader {
    /// Every learned endpoint with its entry. Entries added or removed
    /// while it reads may or may not be in the result.
    pub fn entries(&mut self) -> Result<Vec<(std::net::SocketAddr, KeepaliveEntry)>> {
        use std::os::fd::{AsFd, AsRawFd};
        let fd = self.map.fd().as_fd().as_raw_fd();
        let mut out = Vec::new();
        let mut keys = vec![EndpointKey::default(); self.chunk];
        let mut values = vec![KeepaliveEntry::default(); self.chunk];
        // A hash map's batch position is a bucket index (u32).
        let mut position: u32 = 0;
        let mut next: u32 = 0;
        let mut first = true;
        loop {
            let mut attr = BatchAttr {
                in_batch: if first {
                    0
                } else {
                    &position as *const u32 as u64
                },
                out_batch: &mut next as *mut u32 as u64,
                keys: keys.as_mut_ptr() as u64,
                values: values.as_mut_ptr() as u64,
                count: keys.len() as u32,
                map_fd: fd as u32,
                ..Default::default()
            };
            // SAFETY: `attr` points at buffers of `count` keys and values of
            // the map's key and value types, and at two u32 positions, all
            // alive for the call.
            let rc = unsafe {
                libc::syscall(
                    libc::SYS_bpf,
                    BPF_MAP_LOOKUP_BATCH,
                    &mut attr as *mut BatchAttr,
                    std::mem::size_of::<BatchAttr>(),
                )
            };
            let err = (rc < 0).then(std::io::Error::last_os_error);
            let n = (attr.count as usize).min(keys.len());
            out.extend(
                keys[..n]
                    .iter()
                    .zip(&values[..n])
                    .map(|(k, v)| (crate::offload::source(k), *v)),
            );
            match err {
                None => {}
                // The end of the map.
                Some(e) if e.raw_os_error() == Some(libc::ENOENT) => break,
                // A bucket holds more entries than fit: read it again with
                // room for them.
                Some(e) if e.raw_os_error() == Some(libc::ENOSPC) && self.chunk < 1 << 20 => {
                    self.chunk *= 2;
                    keys.resize(self.chunk, EndpointKey::default());
                    values.resize(self.chunk, KeepaliveEntry::default());
                    continue;
                }
                Some(source) => {
                    return Err(FastPathError::Batch {
                        name: KEEPALIVE_MAP,
                        source,
                    });
                }
            }
            position = next;
            first = false;
        }
        Ok(out)
    }
}

impl crate::driver::OffloadReader for KeepaliveReader {
    fn entries(
        &mut self,
    ) -> std::result::Result<Vec<(std::net::SocketAddr, KeepaliveEntry)>, String> {
        KeepaliveReader::entries(self).map_err(|e| e.to_string())
    }
}

impl crate::driver::OffloadTable for KeepaliveTable {
    fn learn(
        &mut self,
        source: std::net::SocketAddr,
        entry: &KeepaliveEntry,
    ) -> std::result::Result<(), String> {
        KeepaliveTable::learn(self, source, entry).map_err(|e| e.to_string())
    }
    fn forget(&mut self, source: std::net::SocketAddr) {
        KeepaliveTable::forget(self, source)
    }
    fn reader(&self) -> std::result::Result<Box<dyn crate::driver::OffloadReader>, String> {
        Ok(Box::new(
            KeepaliveTable::reader(self).map_err(|e| e.to_string())?,
        ))
    }
}

impl crate::driver::LivenessMap for LivenessTable {
    fn track(
        &mut self,
        ras: std::net::SocketAddr,
        signalling_port: u16,
    ) -> std::result::Result<(), String> {
        LivenessTable::track(self, ras, signalling_port).map_err(|e| e.to_string())
    }
    fn set_state(
        &mut self,
        ip: std::net::IpAddr,
        state: u32,
        active: bool,
    ) -> std::result::Result<(), String> {
        LivenessTable::set_state(self, ip, state, active).map_err(|e| e.to_string())
    }
    fn entries(&self) -> Vec<(std::net::IpAddr, proxy_common::GatekeeperLiveness)> {
        LivenessTable::entries(self)
    }
}

#[cfg(test)]
mod names_tests {
    use super::*;

    /// `name` as a whole NUL-delimited string of the object (the ELF string
    /// tables hold symbol and section names that way).
    fn holds(obj: &[u8], name: &str) -> bool {
        let mut pat = vec![0u8];
        pat.extend_from_slice(name.as_bytes());
        pat.push(0);
        obj.windows(pat.len()).any(|w| w == pat.as_slice())
    }

    #[test]
    fn the_built_objects_define_every_shared_name() {
        let others = [RAS_CLASSIFY_PROG, FASTPATH_PROG, PASS_PROG, LIVENESS_PROG];
        for n in ALL_MAPS.into_iter().chain(others) {
            assert!(holds(BPF_OBJECT, n), "{n} is not in the proxy-ebpf object");
        }
        for n in [GK_SIDE_CONFIG_MAP, GK_SIDE_SOCKS_MAP, GK_SIDE_PROG] {
            assert!(holds(GK_SIDE_OBJECT, n), "{n} is not in the gk-side object");
        }
        let bench = [
            BENCH_FRAME_MAP,
            BENCH_SINK_MAP,
            BENCH_PASS_PROG,
            BENCH_FASTPATH_PROG,
        ];
        let stages = BENCH_STAGE_PROGS.map(|(p, _)| p);
        for n in bench
            .into_iter()
            .chain(stages)
            .chain([BENCH_GEN_PROG, BENCH_SINK_PROG])
        {
            assert!(holds(BENCH_OBJECT, n), "{n} is not in the bench object");
            assert!(
                !holds(BPF_OBJECT, n),
                "{n} is in the object the daemon loads"
            );
        }
        assert!(!holds(BPF_OBJECT, "NO_SUCH_MAP"));
    }
}
