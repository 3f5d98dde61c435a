//! `cargo xtask`: everything an operator or a developer runs, from a fresh
//! machine to a running lab.
//!
//! xtask is built by the machine's stock toolchain (there is deliberately no
//! root `rust-toolchain.toml`, see ARCHITECTURE.md); it installs the pinned
//! toolchains and tools idempotently and then drives `cargo +1.98.0` for the
//! workspace. Every install step prints one line saying what it does; a step
//! whose result is already present prints nothing.

mod peers;
mod setup;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

/// Toolchain of the workspace (aya 0.16 needs 1.98).
pub const RUST_PIN: &str = "1.98.0";
/// Nightly that compiles the eBPF crate; its LLVM (22) must match bpf-linker's.
pub const NIGHTLY_PIN: &str = "nightly-2026-06-15";

/// Fuzz targets under `fuzz/fuzz_targets`, run for a short bounded time by `test`.
const FUZZ_TARGETS: &[&str] = &[
    "tpkt",
    "q931",
    "ras",
    "uuie",
    "roundtrip",
    "relay",
    "stateful",
    "hsrp",
];

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "Set up, build, run and test the H.323 survivable proxy",
    long_about = "Set up, build, run and test the H.323 survivable proxy.\n\n\
        Every command first installs what it needs (Debian packages, the pinned Rust \
        toolchains, bpf-linker built against LLVM 22, bpffs) and skips what is already \
        there. Commands that load eBPF or create network namespaces need root."
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install everything the project needs (idempotent).
    Setup {
        /// Also install cargo-fuzz.
        #[arg(long)]
        fuzz: bool,
    },
    /// Build the workspace (the eBPF object is built by proxy-user's build.rs).
    Build {
        /// Build with optimisations.
        #[arg(long)]
        release: bool,
    },
    /// With no arguments: bring up the demo lab in throw-away network namespaces
    /// on this host and narrate it. With --config: run the proxy on real
    /// interfaces with that configuration.
    Run {
        /// Proxy configuration file (TOML). Without it the demo lab runs.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Build and run the debug profile (faster to build, slower to run).
        #[arg(long)]
        debug: bool,
        /// Run the demo with GnuGk 5.15 as primary and backup gatekeeper
        /// instead of the project's lab gatekeeper (builds it once from
        /// $H323_PEERS_DIR or its public repository, see `peers`).
        #[arg(long, conflicts_with = "config")]
        gnugk: bool,
    },
    /// Run the whole test suite: unit tests, codec corpus and Wireshark
    /// agreement, privileged namespace tests (when root), and a short fuzz run.
    Test {
        /// Seconds each fuzz target runs (0 skips fuzzing).
        #[arg(long, default_value_t = 15)]
        fuzz_seconds: u64,
    },
    /// Benchmarks (release build, needs root): failover detection p50/p99
    /// over 20 primary kills and moving 10,000 registrations to the backup,
    /// each against a baseline measured in the same run. Prints a markdown
    /// table (the one in README.md).
    Bench {
        /// Primary kills measured.
        #[arg(long, default_value_t = 20)]
        runs: usize,
        /// Registrations moved in the mass re-registration test.
        #[arg(long, default_value_t = 10_000)]
        mass: usize,
    },
    /// Run one fuzz target for a long time and report its execution count.
    Fuzz {
        /// Target name (tpkt, q931, ras, uuie, roundtrip, relay, stateful, hsrp).
        target: String,
        /// Stop after this many seconds.
        #[arg(long, default_value_t = 600)]
        seconds: u64,
        /// Build without AddressSanitizer (about 5x faster; the codec is safe
        /// Rust, panics and assertion failures are still caught).
        #[arg(long)]
        no_sanitizer: bool,
    },
    /// Build the real H.323 peers (PTLib, H323Plus `simple`, GnuGk) from
    /// pinned sources into a cache outside the checkout, once. Sources: the
    /// tarballs in $H323_PEERS_DIR, else the public repositories.
    Peers,
    /// Regenerate the H.225.0 codec from the ASN.1 modules in proxy-proto/asn1.
    Codegen,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let root = workspace_root();
    std::env::set_current_dir(&root).context("entering the workspace root")?;
    match cli.cmd {
        Cmd::Setup { fuzz } => {
            setup::all(fuzz)?;
            eprintln!("setup: everything is in place");
        }
        Cmd::Build { release } => {
            setup::all(false)?;
            build(release)?;
        }
        Cmd::Run {
            config,
            debug,
            gnugk,
        } => {
            setup::all(false)?;
            build(!debug)?;
            let profile = if debug { "debug" } else { "release" };
            require_root("cargo xtask run (it attaches XDP and creates network namespaces)")?;
            let bin_dir = root.join("target").join(profile);
            let status = match config {
                Some(cfg) => Command::new(bin_dir.join("proxy"))
                    .arg("run")
                    .arg("--config")
                    .arg(&cfg)
                    .status(),
                None if gnugk => Command::new(bin_dir.join("h323-lab"))
                    .args(["demo", "--gatekeeper", "gnugk"])
                    .env("H323_PEERS_BIN", peers::ensure()?)
                    .status(),
                None => Command::new(bin_dir.join("h323-lab")).arg("demo").status(),
            }
            .context("starting the proxy")?;
            if !status.success() {
                bail!("exited with {status}");
            }
        }
        Cmd::Bench { runs, mass } => {
            setup::all(false)?;
            build(true)?;
            require_root("cargo xtask bench (it creates network namespaces)")?;
            let status = Command::new(root.join("target/release/h323-lab"))
                // GnuGk too, when it can be built here (root is required above).
                .env("H323_PEERS_BIN", peers::ensure()?)
                .args([
                    "bench",
                    "--runs",
                    &runs.to_string(),
                    "--mass",
                    &mass.to_string(),
                ])
                .status()
                .context("starting h323-lab bench")?;
            if !status.success() {
                bail!("bench exited with {status}");
            }
        }
        Cmd::Test { fuzz_seconds } => {
            setup::all(fuzz_seconds > 0)?;
            test(fuzz_seconds)?;
        }
        Cmd::Fuzz {
            target,
            seconds,
            no_sanitizer,
        } => {
            setup::all(true)?;
            fuzz(&target, seconds, no_sanitizer)?;
        }
        Cmd::Peers => {
            let bin = peers::ensure()?;
            println!("{}", bin.display());
        }
        Cmd::Codegen => {
            setup::all(false)?;
            run(cargo_pinned()
                .args([
                    "run",
                    "--release",
                    "--manifest-path",
                    "codegen/Cargo.toml",
                    "--",
                ])
                .arg(root.join("proxy-proto/asn1"))
                .arg(root.join("proxy-proto/src/h225/asn.rs")))?;
            run(cargo_pinned().args(["fmt", "--package", "proxy-proto"]))?;
        }
    }
    Ok(())
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

/// `cargo +1.98.0` with the environment of the outer (stock) cargo removed, so
/// the pinned toolchain is the one that runs.
pub fn cargo_pinned() -> Command {
    cargo_with(RUST_PIN)
}

pub fn cargo_with(toolchain: &str) -> Command {
    let mut cmd = Command::new("cargo");
    cmd.arg(format!("+{toolchain}"));
    for var in [
        "RUSTUP_TOOLCHAIN",
        "RUSTC",
        "RUSTDOC",
        "CARGO",
        "RUSTC_WRAPPER",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("PATH", setup::path_with_cargo_bin());
    cmd
}

pub fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("starting {:?}", cmd.get_program()))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn require_root(what: &str) -> Result<()> {
    if !is_root() {
        bail!("{what} needs root; run it as root (for example `sudo -E cargo xtask run`)");
    }
    Ok(())
}

fn build(release: bool) -> Result<()> {
    let mut cmd = cargo_pinned();
    cmd.args(["build", "--bins"]);
    if release {
        cmd.arg("--release");
    }
    run(&mut cmd)
}

fn test(fuzz_seconds: u64) -> Result<()> {
    run(cargo_pinned().args(["fmt", "--all", "--", "--check"]))
        .context("code is not formatted: run `cargo +1.98.0 fmt --all`")?;
    // The integration tests start the real binaries; build them first.
    build(false)?;
    let mut cargo_test = cargo_pinned();
    if is_root() {
        // The real-peer tests (GnuGk, H323Plus) find the binaries here.
        cargo_test.env("H323_PEERS_BIN", peers::ensure()?);
    } else {
        eprintln!(
            "test: not root: the privileged tests (XDP, network namespaces, real peers) will skip and say so"
        );
    }
    // Default members: the eBPF crate only builds for the BPF target.
    run(cargo_test.args(["test", "--", "--test-threads=1"]))?;
    if fuzz_seconds > 0 {
        for target in FUZZ_TARGETS {
            fuzz(target, fuzz_seconds, false)?;
        }
    }
    eprintln!("test: all passed");
    Ok(())
}

fn fuzz(target: &str, seconds: u64, no_sanitizer: bool) -> Result<()> {
    if !FUZZ_TARGETS.contains(&target) {
        bail!(
            "unknown fuzz target {target:?}; known: {}",
            FUZZ_TARGETS.join(", ")
        );
    }
    eprintln!(
        "fuzz: {target} for {seconds} s (seeds: fuzz/seeds/{target}, corpus: fuzz/corpus/{target})"
    );
    let corpus = format!("fuzz/corpus/{target}");
    std::fs::create_dir_all(&corpus).with_context(|| format!("creating {corpus}"))?;
    let mut cmd = cargo_with(NIGHTLY_PIN);
    cmd.args(["fuzz", "run"]);
    if no_sanitizer {
        cmd.args(["--sanitizer", "none"]);
    }
    let out = cmd
        .args([target, &corpus, &format!("fuzz/seeds/{target}"), "--"])
        .arg(format!("-max_total_time={seconds}"))
        .arg("-print_final_stats=1")
        .stderr(std::process::Stdio::piped())
        .output()
        .context("running cargo fuzz")?;
    let log = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        eprintln!("{log}");
        bail!("fuzz target {target} failed (crash input saved under fuzz/artifacts/{target})");
    }
    let execs = log
        .lines()
        .find_map(|l| l.strip_prefix("stat::number_of_executed_units:"))
        .map(str::trim)
        .unwrap_or("?");
    let secs = log
        .lines()
        .find_map(|l| l.strip_prefix("Done ").and_then(|r| r.split(" in ").nth(1)))
        .unwrap_or("?");
    eprintln!("fuzz: {target}: {execs} executions in {secs}, no crash");
    Ok(())
}
