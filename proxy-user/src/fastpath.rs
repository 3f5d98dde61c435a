//! The aya driver of the kernel fast path: loads the eBPF object built by
//! `build.rs`, attaches XDP, pins every map under `/sys/fs/bpf/<instance>/`
//! and reads the counters back, either from its own handles or from the pins
//! (for `proxy stats` and the tests, which run in other processes).

use std::ffi::CString;
use std::path::{Path, PathBuf};

use aya::maps::{Map, MapData, PerCpuArray};
use aya::programs::{Xdp, XdpMode};
use aya::{Ebpf, EbpfLoader};
use proxy_common::{PacketCounter, RasCounter, packet_slot, ras_slot};

/// The eBPF object, compiled by build.rs for bpfel-unknown-none.
static BPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/proxy-ebpf"));

/// Where bpffs is expected.
pub const BPFFS: &str = "/sys/fs/bpf";

/// Name of the XDP program that classifies RAS traffic.
pub const RAS_CLASSIFY_PROG: &str = "ras_classify";
/// Map names as they appear under the pin directory.
pub const RAS_CLASSIFY_MAP: &str = "RAS_CLASSIFY";
/// Packet outcome counters.
pub const PACKETS_MAP: &str = "PACKETS";

/// Errors of the fast-path driver.
#[derive(Debug, thiserror::Error)]
pub enum FastPathError {
    /// bpffs is not mounted where maps are pinned.
    #[error("{BPFFS} is not a bpf filesystem: mount it with `mount -t bpf bpf {BPFFS}`")]
    NoBpffs,
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
    /// Reading a map failed.
    #[error("map {name}: {source}")]
    Map {
        /// Map name.
        name: &'static str,
        /// The cause.
        source: aya::maps::MapError,
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
}

/// The fast path of one proxy instance: loaded object, attached programs and
/// pinned maps. Dropping it detaches the programs; the pins stay until
/// [`FastPath::unpin`].
pub struct FastPath {
    ebpf: Ebpf,
    pin_dir: PathBuf,
}

/// Pin directory of an instance, after checking the name.
pub fn pin_dir(instance: &str) -> Result<PathBuf> {
    if !crate::config::valid_instance(instance) {
        return Err(FastPathError::BadInstance(instance.to_owned()));
    }
    Ok(Path::new(BPFFS).join(instance))
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

impl FastPath {
    /// Load the object with its maps pinned under `/sys/fs/bpf/<instance>/`.
    /// Maps already pinned there are reused, so counters survive a restart.
    pub fn load(instance: &str) -> Result<Self> {
        let pin_dir = pin_dir(instance)?;
        if !bpffs_mounted() {
            return Err(FastPathError::NoBpffs);
        }
        std::fs::create_dir_all(&pin_dir).map_err(|source| FastPathError::PinDir {
            path: pin_dir.clone(),
            source,
        })?;
        let ebpf = EbpfLoader::new()
            .default_map_pin_directory(&pin_dir)
            .load(BPF_OBJECT)?;
        Ok(Self { ebpf, pin_dir })
    }

    /// The directory the maps are pinned in.
    pub fn pin_dir(&self) -> &Path {
        &self.pin_dir
    }

    /// The RAS classifier, loaded into the kernel (verified) on first use.
    fn ras_classifier(&mut self, iface: &str) -> Result<&mut Xdp> {
        let perr = |source| FastPathError::Program {
            iface: iface.to_owned(),
            source,
        };
        let prog: &mut Xdp = self
            .ebpf
            .program_mut(RAS_CLASSIFY_PROG)
            .ok_or(FastPathError::Missing(RAS_CLASSIFY_PROG))?
            .try_into()
            .map_err(perr)?;
        if prog.fd().is_err() {
            prog.load().map_err(perr)?;
        }
        Ok(prog)
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
        use aya::programs::TestRun as _;
        let prog = self.ras_classifier("(test run)")?;
        let opts = aya::programs::TestRunOptions {
            data_in: Some(frame),
            repeat,
            ..Default::default()
        };
        let r = prog
            .test_run(opts)
            .map_err(|source| FastPathError::Program {
                iface: "(test run)".into(),
                source,
            })?;
        Ok((r.return_value, r.duration))
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
        Counters::read(
            &PerCpuArray::try_from(ras).map_err(map_err(RAS_CLASSIFY_MAP))?,
            &PerCpuArray::try_from(pk).map_err(map_err(PACKETS_MAP))?,
        )
    }

    /// Detach (by dropping the programs' links) and remove the pins.
    pub fn unpin(self) -> std::io::Result<()> {
        let dir = self.pin_dir.clone();
        drop(self);
        for name in [RAS_CLASSIFY_MAP, PACKETS_MAP] {
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
}

impl Counters {
    fn read<R, P>(
        ras: &PerCpuArray<R, RasCounter>,
        pk: &PerCpuArray<P, PacketCounter>,
    ) -> Result<Self>
    where
        R: std::borrow::Borrow<MapData>,
        P: std::borrow::Borrow<MapData>,
    {
        let mut out = Counters::default();
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
        let dir = pin_dir(instance)?;
        let open = |name: &'static str| -> Result<Map> {
            let data = MapData::from_pin(dir.join(name)).map_err(map_err(name))?;
            Map::from_map_data(data).map_err(map_err(name))
        };
        let ras = open(RAS_CLASSIFY_MAP)?;
        let pk = open(PACKETS_MAP)?;
        Self::read(
            &PerCpuArray::try_from(&ras).map_err(map_err(RAS_CLASSIFY_MAP))?,
            &PerCpuArray::try_from(&pk).map_err(map_err(PACKETS_MAP))?,
        )
    }
}
