//! Idempotent installation of everything the project needs on a fresh Debian
//! machine. Each step checks first and prints one line only when it acts.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::{NIGHTLY_PIN, RUST_PIN, is_root, run};

/// Debian packages: LLVM 22 for bpf-linker, the kernel tools the lab and
/// operators use, tshark as the independent wire-format oracle, and
/// iptables (legacy NFQUEUE) for the lab's lossy links (no sch_netem here).
const DEBIAN_PACKAGES: &[&str] = &[
    "llvm-22-dev",
    "libpolly-22-dev",
    "libzstd-dev",
    "zlib1g-dev",
    "bpftool",
    "iproute2",
    "ethtool",
    "tshark",
    "iptables",
    // VRRP for a proxy pair (`[redundancy] protocol = "vrrp"`).
    "keepalived",
];
const LLVM_PREFIX: &str = "/usr/lib/llvm-22";
const BPF_LINKER_VERSION: &str = "0.13.0";
const CARGO_FUZZ_VERSION: &str = "0.13.2";

/// Run every step; `fuzz` adds cargo-fuzz.
pub fn all(fuzz: bool) -> Result<()> {
    debian_packages()?;
    toolchain(RUST_PIN, &["clippy", "rustfmt"])?;
    toolchain(NIGHTLY_PIN, &["rust-src"])?;
    bpf_linker()?;
    if fuzz {
        cargo_fuzz()?;
    }
    bpffs()?;
    Ok(())
}

/// `$PATH` with `~/.cargo/bin` in front, where `cargo install` puts tools.
pub fn path_with_cargo_bin() -> OsString {
    let mut paths = vec![cargo_bin()];
    if let Some(p) = std::env::var_os("PATH") {
        paths.extend(std::env::split_paths(&p));
    }
    std::env::join_paths(paths).unwrap_or_default()
}

fn cargo_bin() -> PathBuf {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .unwrap_or_else(|| PathBuf::from("/root/.cargo"));
    home.join("bin")
}

fn output(cmd: &mut Command) -> Option<String> {
    let out = cmd.stderr(Stdio::null()).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn debian_packages() -> Result<()> {
    debian(DEBIAN_PACKAGES)
}

/// Install those of `packages` that are missing (one `apt-get` run).
pub fn debian(packages: &[&str]) -> Result<()> {
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|p| {
            output(Command::new("dpkg-query").args(["-W", "-f=${Status}", p]))
                .is_none_or(|s| !s.contains("install ok installed"))
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("setup: installing Debian packages: {}", missing.join(" "));
    let sudo: &[&str] = if is_root() { &[] } else { &["sudo"] };
    let apt = |args: &[&str]| {
        let mut cmd = Command::new(sudo.first().copied().unwrap_or("apt-get"));
        if !sudo.is_empty() {
            cmd.arg("apt-get");
        }
        cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        cmd
    };
    run(apt(&["update", "-q"]).stdout(Stdio::null()))?;
    let mut install = apt(&["install", "-y", "-q", "--no-install-recommends"]);
    install.args(&missing).stdout(Stdio::null());
    run(&mut install).context("installing Debian packages")
}

fn toolchain(name: &str, components: &[&str]) -> Result<()> {
    let installed = output(Command::new("rustup").args(["toolchain", "list"])).unwrap_or_default();
    if !installed.lines().any(|l| l.starts_with(name)) {
        eprintln!(
            "setup: installing Rust toolchain {name} with {}",
            components.join(", ")
        );
        let mut cmd = Command::new("rustup");
        cmd.args(["toolchain", "install", name, "--profile", "minimal"]);
        for c in components {
            cmd.args(["--component", c]);
        }
        return run(&mut cmd);
    }
    let have = output(Command::new("rustup").args([
        "component",
        "list",
        "--installed",
        "--toolchain",
        name,
    ]))
    .unwrap_or_default();
    for c in components {
        if !have
            .lines()
            .any(|l| l.starts_with(&format!("{c}-")) || l == *c)
        {
            eprintln!("setup: adding component {c} to {name}");
            run(Command::new("rustup").args(["component", "add", c, "--toolchain", name]))?;
        }
    }
    Ok(())
}

fn installed_version(bin: &str, args: &[&str]) -> Option<String> {
    output(Command::new(cargo_bin().join(bin)).args(args))
}

fn bpf_linker() -> Result<()> {
    if installed_version("bpf-linker", &["--version"])
        .is_some_and(|v| v.contains(BPF_LINKER_VERSION))
    {
        return Ok(());
    }
    eprintln!(
        "setup: building bpf-linker {BPF_LINKER_VERSION} against LLVM 22 (about a minute on 2 cores)"
    );
    run(crate::cargo_pinned()
        .args([
            "install",
            "bpf-linker",
            "--version",
            BPF_LINKER_VERSION,
            "--locked",
        ])
        .args(["--no-default-features", "--features", "llvm-22"])
        // bpf-linker's build script reads LLVM_PREFIX, llvm-sys reads its own variable.
        .env("LLVM_PREFIX", LLVM_PREFIX)
        .env("LLVM_SYS_221_PREFIX", LLVM_PREFIX))
}

fn cargo_fuzz() -> Result<()> {
    if installed_version("cargo-fuzz", &["fuzz", "--version"])
        .is_some_and(|v| v.contains(CARGO_FUZZ_VERSION))
    {
        return Ok(());
    }
    eprintln!("setup: installing cargo-fuzz {CARGO_FUZZ_VERSION}");
    run(crate::cargo_pinned().args([
        "install",
        "cargo-fuzz",
        "--version",
        CARGO_FUZZ_VERSION,
        "--locked",
    ]))
}

/// Mount bpffs at /sys/fs/bpf when it is not a bpf mount yet, so maps can be
/// pinned. Needs root; without root the privileged parts skip anyway.
fn bpffs() -> Result<()> {
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    if mounts
        .lines()
        .any(|l| l.split_whitespace().nth(1) == Some("/sys/fs/bpf") && l.contains(" bpf "))
    {
        return Ok(());
    }
    if !is_root() {
        eprintln!(
            "setup: /sys/fs/bpf is not mounted and we are not root; skipping (root tests and the lab mount it)"
        );
        return Ok(());
    }
    eprintln!("setup: mounting bpffs at /sys/fs/bpf");
    let status = Command::new("mount")
        .args(["-t", "bpf", "bpf", "/sys/fs/bpf"])
        .status()
        .context("running mount")?;
    if !status.success() {
        bail!("mounting bpffs at /sys/fs/bpf failed: {status}");
    }
    Ok(())
}
