//! Network namespaces for the lab and the privileged tests, driven through
//! iproute2 (`ip netns`, `ip link`), the same tools an operator uses.
//!
//! Every [`Netns`] deletes itself on drop, so a failing test still cleans up;
//! names carry the creating process id so [`sweep_stale`] can remove what a
//! SIGKILLed run left behind.

use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// Prefix of every namespace the project creates.
pub const PREFIX: &str = "h323t";

/// A network namespace created by this process, deleted on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
    /// Deleted on drop (created by this handle).
    owned: bool,
}

fn ip(args: &[&str]) -> io::Result<()> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// A name unique to this process: `h323t<pid>x<n><tag>`.
pub fn unique_name(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{PREFIX}{}x{}{tag}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

impl Netns {
    /// Create a namespace with loopback up.
    pub fn create(tag: &str) -> io::Result<Self> {
        let name = unique_name(tag);
        ip(&["netns", "add", &name])?;
        let ns = Self { name, owned: true };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// A handle on a namespace that exists already (not deleted on drop).
    pub fn existing(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            owned: false,
        }
    }

    /// The namespace's name under /run/netns.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Run `ip -n <ns> args...`.
    pub fn ip(&self, args: &[&str]) -> io::Result<()> {
        let mut full = vec!["-n", self.name.as_str()];
        full.extend_from_slice(args);
        ip(&full)
    }

    fn open(&self) -> io::Result<std::fs::File> {
        std::fs::File::open(format!("/run/netns/{}", self.name))
    }

    /// A command that runs inside this namespace. Only the network namespace
    /// changes (unlike `ip netns exec`, which also remounts /sys and would
    /// hide /sys/fs/bpf from the child).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> io::Result<Command> {
        let fd = self.open()?;
        let mut cmd = Command::new(program);
        // SAFETY: setns is async-signal-safe; fd stays open because the
        // closure owns the File until the child execs.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        Ok(cmd)
    }

    /// Run `f` on a thread that has entered this namespace. Sockets created
    /// there stay in the namespace after the thread ends, so this is how a
    /// test opens a socket "inside" a lab host.
    pub fn run<F, R>(&self, f: F) -> io::Result<R>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        let fd = self.open()?;
        std::thread::spawn(move || {
            // SAFETY: plain syscall on a valid fd; it only affects this thread.
            if unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(f())
        })
        .join()
        .map_err(|_| io::Error::other("namespace thread panicked"))?
    }
}

impl Netns {
    /// Start `f` on a thread that has entered this namespace and return
    /// at once (see [`Netns::run`] for the blocking form).
    pub fn spawn<F, R>(&self, f: F) -> io::Result<std::thread::JoinHandle<io::Result<R>>>
    where
        F: FnOnce() -> io::Result<R> + Send + 'static,
        R: Send + 'static,
    {
        let fd = self.open()?;
        Ok(std::thread::spawn(move || {
            // SAFETY: plain syscall on a valid fd; it only affects this thread.
            if unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(io::Error::last_os_error());
            }
            f()
        }))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if !self.owned {
            return;
        }
        let _ = ip(&["netns", "del", &self.name]);
    }
}

/// Join `a`/`a_if` and `b`/`b_if` with a veth pair, both ends up.
pub fn veth(a: &Netns, a_if: &str, b: &Netns, b_if: &str) -> io::Result<()> {
    ip(&[
        "link",
        "add",
        a_if,
        "netns",
        a.name(),
        "type",
        "veth",
        "peer",
        "name",
        b_if,
        "netns",
        b.name(),
    ])?;
    a.ip(&["link", "set", a_if, "up"])?;
    b.ip(&["link", "set", b_if, "up"])
}

/// Attach a pass-only XDP program to `dev` in `ns`, for as long as the
/// returned guard lives. A veth delivers XDP_TX frames to its peer only when
/// the peer runs NAPI, which an XDP program there turns on (GRO should too,
/// but on the kernels tried here it did not); without it the proxy's kernel
/// answers are counted as sent and silently dropped. Real NICs need nothing.
#[cfg(feature = "fastpath")]
pub fn xdp_peer_pass(ns: &Netns, dev: &str) -> io::Result<proxy_user::fastpath::PeerPass> {
    let dev = dev.to_owned();
    ns.run(move || proxy_user::fastpath::PeerPass::attach(&dev))?
        .map_err(io::Error::other)
}

/// The creating pid of a project-made name, when that process is gone.
fn dead_owner(name: &str) -> bool {
    let Some(rest) = name.strip_prefix(PREFIX) else {
        return false;
    };
    let pid: String = rest.chars().take_while(char::is_ascii_digit).collect();
    pid.parse::<u32>()
        .is_ok_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists())
}

/// Delete namespaces and bpffs pin directories left by project processes
/// that no longer exist (a SIGKILLed or failed run cannot always clean up).
pub fn sweep_stale() {
    for e in std::fs::read_dir("/run/netns")
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = e.file_name().to_string_lossy().into_owned();
        if dead_owner(&name) {
            let _ = ip(&["netns", "del", &name]);
        }
    }
    for e in std::fs::read_dir("/sys/fs/bpf")
        .into_iter()
        .flatten()
        .flatten()
    {
        if dead_owner(&e.file_name().to_string_lossy()) {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// Why privileged lab work cannot run here, or `None` when it can.
pub fn unprivileged_reason() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some(
            "not root: XDP and network namespaces need CAP_SYS_ADMIN and CAP_NET_ADMIN".into(),
        );
    }
    if Command::new("ip").arg("-V").output().is_err() {
        return Some("iproute2 (`ip`) is not installed: run `cargo xtask setup`".into());
    }
    None
}
