//! `h323-lab`: the namespace lab on this one host.
//!
//! `h323-lab demo` (what `cargo xtask run` starts) creates four hosts in
//! network namespaces (endpoints, proxy, primary and backup gatekeeper) in
//! 198.18.0.0/15, runs the real `proxy` daemon between them and narrates:
//! registration, calls with RTP, primary killed, failover, calls still up,
//! no gatekeeper at all, a local call in survivable mode, primary back, fail
//! back; then a table of what was kept and how long each step took.
//! Everything is removed on exit, on Ctrl-C and on error.
//!
//! `h323-lab gatekeeper` and `h323-lab endpoints` are the lab's own H.323
//! gatekeeper and endpoints, built on the project's codec.

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use proxy_lab::netns::{self, Netns};
use proxy_lab::process::{LabProc, field, metric, scrape};
use proxy_lab::topology::{self, EP, GK1, GK2, Lab, PX_EP};
use proxy_user::capture::write_corpus_pcap;
use proxy_user::h225::corpus;

#[derive(Parser)]
#[command(
    name = "h323-lab",
    version,
    about = "Namespace lab for the H.323 survivable proxy"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

/// Which gatekeepers the demo runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum DemoGatekeeper {
    /// The project's own lab gatekeeper.
    Lab,
    /// GnuGk, a real gatekeeper.
    Gnugk,
}

/// A demo gatekeeper process.
enum DemoGk {
    Lab(LabProc),
    Real(Box<proxy_lab::peers::GnuGk>),
}

impl DemoGk {
    fn kill9(&mut self) {
        match self {
            DemoGk::Lab(p) => p.kill9(),
            DemoGk::Real(g) => g.proc.kill9(),
        }
    }

    /// Call legs it adopted from the proxy's IRRs (the lab gatekeeper
    /// only: GnuGk ignores them).
    fn adopted(&self) -> Option<usize> {
        match self {
            DemoGk::Lab(p) => Some(p.count("gk adopted")),
            DemoGk::Real(_) => None,
        }
    }
}

#[derive(Subcommand)]
enum Cmd {
    /// Bring up the demo lab, narrate it, tear it down (needs root).
    Demo {
        /// Keep the lab up this many seconds at the end (inspect it with
        /// bpftool or `proxy stats --instance h323demo`).
        #[arg(long, default_value_t = 0)]
        hold: u64,
        /// Gatekeepers of the lab: `lab` (the project's own) or `gnugk`
        /// (GnuGk 5.15 in routed mode, from the folder named by
        /// H323_PEERS_BIN; `cargo xtask run --gnugk` builds and sets it).
        #[arg(long, default_value = "lab")]
        gatekeeper: DemoGatekeeper,
    },
    /// Run a lab gatekeeper (RAS) until killed. Reads `drop <call>`,
    /// `status`, `quit` on stdin; prints `gk ...` lines.
    Gatekeeper {
        /// RAS address to listen on.
        #[arg(long)]
        ras: std::net::SocketAddr,
        /// gatekeeperIdentifier.
        #[arg(long, default_value = "GK")]
        id: String,
        /// timeToLive granted, seconds.
        #[arg(long, default_value_t = 30)]
        ttl: u32,
        /// alternateGatekeeper RAS addresses announced in GCF/RCF.
        #[arg(long = "alternate")]
        alternates: Vec<std::net::SocketAddr>,
        /// Gatekeeper-routed model: accept call signalling here (e.g. the
        /// RAS address's IP, port 1720) and relay calls; without it ACFs
        /// are direct-routed.
        #[arg(long)]
        routed: Option<std::net::SocketAddr>,
        /// Send every RAS reply this long after its request, milliseconds
        /// (a slow gatekeeper).
        #[arg(long, default_value_t = 0)]
        reply_delay_ms: u64,
    },
    /// Run lab endpoints that register, keep alive, call in pairs and send
    /// RTP. Reads `call <index> <number>`, `status`, `quit` on stdin; prints
    /// `eps ...` status lines.
    Endpoints {
        /// Gatekeeper (or proxy) RAS address.
        #[arg(long)]
        gatekeeper: std::net::SocketAddr,
        /// Local address of the endpoints.
        #[arg(long)]
        ip: std::net::IpAddr,
        /// Number of endpoints.
        #[arg(long, default_value_t = 2)]
        count: usize,
        /// E.164 number of the first endpoint.
        #[arg(long, default_value_t = 1001)]
        first_number: u64,
        /// First port; endpoint i uses base+3i (RAS), +1 (TCP), +2 (RTP).
        #[arg(long, default_value_t = 20000)]
        base_port: u16,
        /// timeToLive asked for, seconds.
        #[arg(long, default_value_t = 30)]
        ttl: u32,
        /// Keepalive (lightweight RRQ) interval, milliseconds.
        #[arg(long, default_value_t = 1000)]
        keepalive_ms: u64,
        /// Tear calls down when keepalives go unanswered (as many real phones do).
        #[arg(long)]
        drop_calls_on_silence: bool,
        /// STATUS ENQUIRY interval on each call, milliseconds.
        #[arg(long, default_value_t = 2000)]
        status_enquiry_ms: u64,
        /// Endpoint 2k calls endpoint 2k+1 for k < pairs.
        #[arg(long, default_value_t = 0)]
        pairs: usize,
        /// Status line interval, milliseconds.
        #[arg(long, default_value_t = 500)]
        report_ms: u64,
        /// Open a separate H.245 channel on each call (h245Address in
        /// CONNECT, echoed; counted as h245_ok).
        #[arg(long)]
        h245: bool,
        /// With --h245: the caller waits this long after CONNECT before it
        /// connects to the H.245 address, milliseconds (a slow endpoint).
        #[arg(long, default_value_t = 0)]
        h245_delay_ms: u64,
    },
    /// Control-plane benchmarks (needs root; `cargo xtask bench` runs it):
    /// failover detection p50/p99 and moving registrations to the backup.
    Bench {
        /// Primary kills to measure.
        #[arg(long, default_value_t = 20)]
        runs: usize,
        /// Endpoints registered during the failover runs.
        #[arg(long, default_value_t = 10)]
        endpoints: usize,
        /// Registrations moved to the backup in the mass test.
        #[arg(long, default_value_t = 10_000)]
        mass: usize,
        /// Only the fast-path benchmarks (XDP test runs, veth throughput,
        /// memory per endpoint).
        #[arg(long)]
        fastpath_only: bool,
        /// Only the GnuGk benchmark (needs H323_PEERS_BIN).
        #[arg(long)]
        gnugk_only: bool,
        /// Endpoints registered through the proxy at GnuGk.
        #[arg(long, default_value_t = 1000)]
        gnugk_endpoints: usize,
        /// GnuGk primary kills to measure (0 skips that part).
        #[arg(long, default_value_t = 10)]
        gnugk_runs: usize,
        /// Endpoints registered through one proxy at GnuGk in the scale
        /// run, each with its own gatekeeper-side address (0 skips it; it
        /// takes long: GnuGk's table scans grow with it).
        #[arg(long, default_value_t = 0)]
        gnugk_scale: usize,
        /// Endpoints registered through one proxy at the lab gatekeepers in
        /// the scale run, then all moved to the backup (0 skips it; about
        /// 2.5 minutes at the default).
        #[arg(long, default_value_t = 100_000)]
        scale: usize,
        /// Endpoints per gatekeeper-side address in the scale runs (each
        /// address gets this many ports from 2000; at most 30,000).
        #[arg(long, default_value_t = 25_000)]
        scale_per_address: usize,
        /// Only the scale runs (`--scale`, `--gnugk-scale`).
        #[arg(long)]
        scale_only: bool,
        /// Heartbeat of the proxy in the GnuGk benchmark, "INTERVAL_MSxMULTIPLIER".
        #[arg(long, default_value = "40x3")]
        gnugk_heartbeat: String,
        /// Only the heartbeat benchmarks: the detector on simulated lossy,
        /// jittery links (virtual time, no root needed).
        #[arg(long)]
        heartbeat_only: bool,
        /// Simulated hours per link setting in the heartbeat benchmark (0
        /// skips it).
        #[arg(long, default_value_t = 24)]
        sim_hours: u64,
        /// Seconds each impaired-link setting is held against a real GnuGk
        /// (0 skips that part of the GnuGk benchmark).
        #[arg(long, default_value_t = 300)]
        lossy_secs: u64,
        /// Proxy counts whose heartbeats one GnuGk carries, tried in turn
        /// until one gives a false failover (`0` skips).
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "100,200,300,400,500,750,1000"
        )]
        load_proxies: Vec<usize>,
        /// Seconds each proxy count is held.
        #[arg(long, default_value_t = 30)]
        load_secs: u64,
        /// Active gatekeeper-routed calls handed to the gatekeeper that
        /// takes control, in the GnuGk call takeover benchmark (0 skips it).
        #[arg(long, default_value_t = 100)]
        takeover_calls: usize,
        /// SIGKILLs of the gatekeeper holding the calls in that benchmark.
        #[arg(long, default_value_t = 4)]
        takeover_runs: usize,
        /// Only the GnuGk call takeover benchmark.
        #[arg(long)]
        takeover_only: bool,
        /// Seconds of each side of the flood comparison (keepalive answers
        /// and heartbeat with and without one host flooding 1719; 0 skips
        /// it).
        #[arg(long, default_value_t = 20)]
        flood_secs: u64,
        /// Only the flood comparison.
        #[arg(long)]
        flood_only: bool,
        /// Runs of the VRRP pair takeover (the active node dies; time to
        /// the standby's first answer on the virtual address), at 50 ms
        /// adverts and at keepalived's default 1 s; 0 skips it.
        #[arg(long, default_value_t = 20)]
        pair_runs: usize,
        /// Only the pair takeover benchmark.
        #[arg(long)]
        pair_only: bool,
    },
    /// Write the codec's message corpus (every RAS choice, every Q.931
    /// message type) to a pcap file.
    Corpus {
        /// Output pcap.
        out: PathBuf,
    },
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Corpus { out } => {
            let entries = corpus::build()?;
            write_corpus_pcap(&out, &entries)?;
            println!("wrote {} messages to {}", entries.len(), out.display());
            Ok(())
        }
        Cmd::Demo { hold, gatekeeper } => demo(hold, gatekeeper),
        Cmd::Bench {
            runs,
            endpoints,
            mass,
            fastpath_only,
            gnugk_only,
            gnugk_endpoints,
            gnugk_runs,
            gnugk_scale,
            scale,
            scale_per_address,
            scale_only,
            gnugk_heartbeat,
            heartbeat_only,
            sim_hours,
            lossy_secs,
            load_proxies,
            load_secs,
            takeover_calls,
            takeover_runs,
            takeover_only,
            flood_secs,
            flood_only,
            pair_runs,
            pair_only,
        } => {
            let load: (Vec<usize>, u64) = (
                load_proxies.into_iter().filter(|&n| n > 0).collect(),
                load_secs,
            );
            if sim_hours > 0 {
                heartbeat_sim_bench(sim_hours);
            }
            if heartbeat_only {
                return Ok(());
            }
            let hb = gnugk_heartbeat
                .split_once('x')
                .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
                .context("--gnugk-heartbeat: INTERVAL_MSxMULTIPLIER, e.g. 200x5")?;
            if scale_only {
                let bins = bench_bins()?;
                let mut failed = false;
                if scale > 0
                    && let Err(e) = lab_scale_bench(&bins, scale, scale_per_address)
                {
                    eprintln!("scale run at the lab gatekeepers failed: {e:#}");
                    failed = true;
                }
                if gnugk_scale > 0 {
                    let peers = proxy_lab::peers::peers_bin().map_err(|e| anyhow::anyhow!(e))?;
                    if let Err(e) = gnugk_scale_bench(&bins, &peers, gnugk_scale, scale_per_address)
                    {
                        eprintln!("GnuGk scale run failed: {e:#}");
                        failed = true;
                    }
                }
                keep_or_remove(&bins.dir);
                anyhow::ensure!(!failed, "a scale run failed");
                return Ok(());
            }
            let gnugk = GnuGkBench {
                runs: gnugk_runs,
                endpoints: gnugk_endpoints,
                scale: gnugk_scale,
                per_address: scale_per_address,
                hb,
                lossy_secs,
                load,
                takeover: (takeover_calls, takeover_runs),
            };
            if flood_only {
                return flood_bench(flood_secs);
            }
            if pair_only {
                return pair_bench(pair_runs);
            }
            if takeover_only {
                let bins = bench_bins()?;
                let peers = proxy_lab::peers::peers_bin().map_err(|e| anyhow::anyhow!(e))?;
                let r = gnugk_takeover_bench(&bins, &peers, takeover_calls, takeover_runs);
                keep_or_remove(&bins.dir);
                return r;
            }
            if gnugk_only {
                return gnugk_bench(&gnugk);
            }
            // Every part runs even when one before it failed; the exit
            // status says whether all of them worked.
            let mut failed = Vec::new();
            if !fastpath_only
                && std::env::var_os(proxy_lab::peers::PEERS_ENV).is_some()
                && let Err(e) = gnugk_bench(&gnugk)
            {
                eprintln!("{e:#}");
                failed.push("GnuGk");
            }
            if !fastpath_only && let Err(e) = bench(runs, endpoints, mass) {
                eprintln!("control-plane benchmark failed: {e:#}");
                failed.push("control plane");
            }
            if !fastpath_only && scale > 0 {
                let r = bench_bins().and_then(|bins| {
                    let r = lab_scale_bench(&bins, scale, scale_per_address);
                    keep_or_remove(&bins.dir);
                    r
                });
                if let Err(e) = r {
                    eprintln!("scale run at the lab gatekeepers failed: {e:#}");
                    failed.push("scale");
                }
            }
            if !fastpath_only
                && flood_secs > 0
                && let Err(e) = flood_bench(flood_secs)
            {
                eprintln!("flood benchmark failed: {e:#}");
                failed.push("flood");
            }
            if !fastpath_only
                && pair_runs > 0
                && let Err(e) = pair_bench(pair_runs)
            {
                eprintln!("pair takeover benchmark failed: {e:#}");
                failed.push("pair takeover");
            }
            if let Err(e) = fastpath_bench() {
                eprintln!("{e:#}");
                failed.push("fast path");
            }
            anyhow::ensure!(
                failed.is_empty(),
                "benchmark parts failed: {}",
                failed.join(", ")
            );
            Ok(())
        }
        Cmd::Gatekeeper {
            ras,
            id,
            ttl,
            alternates,
            routed,
            reply_delay_ms,
        } => runtime()?
            .block_on(proxy_lab::gatekeeper::run(
                proxy_lab::gatekeeper::GkOptions {
                    ras,
                    id,
                    ttl,
                    alternates,
                    routed,
                    reply_delay: Duration::from_millis(reply_delay_ms),
                },
            ))
            .context("lab gatekeeper"),
        Cmd::Endpoints {
            gatekeeper,
            ip,
            count,
            first_number,
            base_port,
            ttl,
            keepalive_ms,
            drop_calls_on_silence,
            status_enquiry_ms,
            pairs,
            report_ms,
            h245,
            h245_delay_ms,
        } => runtime()?
            .block_on(proxy_lab::endpoint::run(proxy_lab::endpoint::EpOptions {
                gatekeeper,
                ip,
                count,
                first_number,
                base_port,
                ttl,
                keepalive: Duration::from_millis(keepalive_ms),
                drop_calls_on_silence,
                status_enquiry: Duration::from_millis(status_enquiry_ms),
                pairs,
                report: Duration::from_millis(report_ms),
                h245,
                h245_delay: Duration::from_millis(h245_delay_ms),
            }))
            .context("lab endpoints"),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Runtime::new().context("starting the tokio runtime")
}

const INSTANCE: &str = "h323demo";

fn step(msg: &str) {
    println!("\n==> {msg}");
}

fn stopped() -> Result<()> {
    if STOP.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    Ok(())
}

/// Poll `f` every 2 ms until it is true, at most `secs`; the elapsed time.
fn until(secs: u64, mut f: impl FnMut() -> bool) -> Result<Duration> {
    let t0 = Instant::now();
    while !f() {
        stopped()?;
        if t0.elapsed() > Duration::from_secs(secs) {
            bail!("timed out after {secs} s");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(t0.elapsed())
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

fn fastpath_bench() -> Result<()> {
    use proxy_lab::fastbench;
    if let Some(why) = netns::unprivileged_reason() {
        bail!("the benchmarks need root: {why}");
    }
    netns::sweep_stale();
    bench_nofile();
    const REPEAT: u32 = 100_000;
    println!("fast path: BPF_PROG_TEST_RUN, {REPEAT} runs per figure");
    // Each part reports its own failure and the others still run: the
    // per-keepalive figures need no live frames, the veth lab does.
    let mut failed = Vec::new();
    let mut runs = Vec::new();
    for n in [1_000u32, 100_000, 1_000_000] {
        match fastbench::test_run(n, REPEAT) {
            Ok(r) => runs.push(r),
            Err(e) => {
                eprintln!("fast path: BPF_PROG_TEST_RUN with {n} endpoints failed: {e:#}");
                failed.push("BPF_PROG_TEST_RUN");
            }
        }
    }
    let dir = std::env::temp_dir().join(format!("h323-fastbench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let proxy = std::env::current_exe()?
        .parent()
        .context("binary directory")?
        .join("proxy");
    println!(
        "fast path: veth lab, one endpoint's keepalive from an in-kernel generator (CPU 0), daemon on CPU 1, 3 s each way"
    );
    let tp = match fastbench::throughput(&proxy, &dir, 3) {
        Ok(t) => Some(t),
        Err(e) => {
            eprintln!("fast path: veth lab throughput failed: {e:#}");
            failed.push("veth lab throughput");
            None
        }
    };
    let _ = std::fs::remove_dir_all(&dir);
    println!("fast path: control-plane memory with 100,000 registrations");
    let daemon = fastbench::daemon_bytes_per_endpoint(100_000);
    println!();
    println!("| measurement | value | baseline | ratio | target |");
    println!("|---|---|---|---|---|");
    for r in &runs {
        println!(
            "| BPF_PROG_TEST_RUN keepalive -> RCF (XDP_TX), {} endpoints learned: cost per keepalive | {:.0} ns | frame put back + XDP_PASS: {:.0} ns (fast path incl. that: {:.0} ns) | {:.2} | <= 100 ns |",
            r.endpoints,
            r.fastpath_net_ns,
            r.pass_ns,
            r.fastpath_ns,
            r.fastpath_ns / r.pass_ns.max(1.0)
        );
    }
    if let Some(r) = runs.first() {
        for (what, ns) in &r.stages {
            println!(
                "| fast path stopped after: {what}, {} endpoints | {:.0} ns | frame put back + XDP_PASS: {:.0} ns | - | - |",
                r.endpoints, ns, r.pass_ns
            );
        }
        println!(
            "| BPF_PROG_TEST_RUN header walk and RAS classification only (ras_classify) | {:.0} ns | pass-only XDP program: {:.0} ns | {:.2} | - |",
            r.classify_ns,
            r.plain_pass_ns,
            r.classify_ns / r.plain_pass_ns.max(1.0)
        );
    }
    if let Some(tp) = &tp {
        println!(
            "| keepalive answers/s, veth lab, offload on | {:.0} | offload off (tokio path): {:.0} | {:.1}x | >= 10x |",
            tp.offload_per_sec,
            tp.userspace_per_sec,
            tp.offload_per_sec / tp.userspace_per_sec.max(1.0)
        );
    }
    for r in runs.iter().filter(|r| r.endpoints >= 100_000) {
        println!(
            "| kernel bytes per learned endpoint (map memlock), {} endpoints | {:.0} | empty map: {} bytes | - | <= 256 |",
            r.endpoints,
            (r.map_bytes - r.empty_map_bytes) as f64 / r.endpoints as f64,
            r.empty_map_bytes
        );
    }
    for r in runs.iter().filter(|r| r.endpoints >= 100_000) {
        println!(
            "| daemon reading the learned-endpoint map (every second), {} endpoints | {:.1} ms (batched) | key by key: {:.1} ms | {:.1}x | - |",
            r.endpoints,
            r.sweep_batch_ms,
            r.sweep_key_ms,
            r.sweep_key_ms / r.sweep_batch_ms.max(0.001)
        );
    }
    println!(
        "| daemon heap per registered endpoint, 100,000 endpoints | {daemon:.0} bytes | - | - | - |"
    );
    if !failed.is_empty() {
        bail!("fast-path benchmark parts failed: {}", failed.join(", "));
    }
    Ok(())
}

fn bench_nofile() {
    proxy_lab::bench::raise_nofile();
}

/// The lab benchmarks' common start: root, stale namespaces swept, the
/// open-file limit raised, the binaries next to this one, a scratch folder.
fn bench_bins() -> Result<proxy_lab::bench::Bins> {
    if let Some(why) = netns::unprivileged_reason() {
        bail!("the benchmarks need root: {why}");
    }
    netns::sweep_stale();
    proxy_lab::bench::raise_nofile();
    let dir_bin = std::env::current_exe()?
        .parent()
        .context("binary directory")?
        .to_path_buf();
    let bins = proxy_lab::bench::Bins {
        lab: dir_bin.join("h323-lab"),
        proxy: dir_bin.join("proxy"),
        dir: std::env::temp_dir().join(format!("h323-bench-{}", std::process::id())),
    };
    std::fs::create_dir_all(&bins.dir)?;
    Ok(bins)
}

/// Remove a bench folder (configurations, proxy logs) unless
/// H323_BENCH_KEEP is set, in which case say where it is.
fn keep_or_remove(dir: &std::path::Path) {
    if std::env::var_os("H323_BENCH_KEEP").is_some() {
        println!("kept (H323_BENCH_KEEP): {}", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// The heartbeat detector on simulated links: false failovers per hour of
/// a gatekeeper that never fails, against the fixed-silence baseline, and
/// how long a real death takes to detect on the same link.
fn heartbeat_sim_bench(hours: u64) {
    use proxy_lab::bench::percentile;
    use proxy_lab::link_sim::{Detector, Link, detection_times, false_failovers};
    use proxy_user::gatekeeper::HeartbeatConfig;
    let cfg = HeartbeatConfig {
        interval: Duration::from_millis(40),
        multiplier: 3,
    };
    let svc = Duration::from_micros(300);
    let length = Duration::from_secs(3600 * hours.max(1));
    println!(
        "Heartbeat (default 40 ms x 3) on a simulated link, both directions impaired alike (netem-style `delay D J loss P`), {hours} simulated hours per row; gatekeeper service time 0.3 ms"
    );
    println!();
    println!(
        "| link (each way) | false failovers/h | baseline: fixed 120 ms silence, /h | ratio | probes/s | detection of a real death p50 / p99 (200 kills) |"
    );
    println!("|---|---|---|---|---|---|");
    let rows: [(&str, f64, u64, u64); 6] = [
        ("clean", 0.0, 0, 0),
        ("1% loss", 0.01, 0, 0),
        ("5% loss", 0.05, 0, 0),
        ("20 ms ± 20 ms", 0.0, 20, 20),
        ("1% loss, 20 ms ± 20 ms", 0.01, 20, 20),
        ("5% loss, 20 ms ± 20 ms", 0.05, 20, 20),
    ];
    for (i, (name, loss, delay, jitter)) in rows.into_iter().enumerate() {
        let link = Link {
            loss,
            delay: Duration::from_millis(delay),
            jitter: Duration::from_millis(jitter),
        };
        let seed = 0x5eed + i as u64;
        let a = false_failovers(Detector::Adaptive, cfg, link, svc, length, seed);
        let b = false_failovers(Detector::FixedSilence, cfg, link, svc, length, seed);
        let d = detection_times(cfg, link, svc, 200, seed);
        let ratio = if b.false_downs == 0 {
            "-".to_string()
        } else {
            format!("{:.4}", a.false_downs as f64 / b.false_downs as f64)
        };
        println!(
            "| {name} | {:.3} ({} in {hours} h) | {:.1} | {ratio} | {:.1} | {} / {} |",
            a.per_hour(),
            a.false_downs,
            b.per_hour(),
            a.probes as f64 / length.as_secs_f64(),
            ms(percentile(&d, 50.0)),
            ms(percentile(&d, 99.0)),
        );
    }
    println!();
}

/// What the GnuGk benchmarks run (`h323-lab bench --gnugk-only`).
struct GnuGkBench {
    runs: usize,
    endpoints: usize,
    scale: usize,
    per_address: usize,
    hb: (u64, u32),
    lossy_secs: u64,
    load: (Vec<usize>, u64),
    /// Calls and SIGKILLs of the call takeover benchmark.
    takeover: (usize, usize),
}

/// The GnuGk benchmarks: scale, failover, lossy link, load; each part
/// reports its own error and the others still run.
fn gnugk_bench(g: &GnuGkBench) -> Result<()> {
    let bins = bench_bins()?;
    let peers = proxy_lab::peers::peers_bin().map_err(|e| anyhow::anyhow!(e))?;
    let mut failed = Vec::new();
    if g.scale > 0
        && let Err(e) = gnugk_scale_bench(&bins, &peers, g.scale, g.per_address)
    {
        eprintln!("GnuGk scale run failed: {e:#}");
        failed.push("scale");
    }
    if g.runs > 0
        && let Err(e) = gnugk_failover_bench(&bins, &peers, g)
    {
        eprintln!("GnuGk failover runs failed: {e:#}");
        failed.push("failover");
    }
    if g.takeover.0 > 0
        && g.takeover.1 > 0
        && let Err(e) = gnugk_takeover_bench(&bins, &peers, g.takeover.0, g.takeover.1)
    {
        eprintln!("GnuGk call takeover failed: {e:#}");
        failed.push("call takeover");
    }
    if g.lossy_secs > 0
        && let Err(e) = gnugk_lossy_bench(&bins, &peers, g.lossy_secs)
    {
        eprintln!("GnuGk lossy link failed: {e:#}");
        failed.push("lossy link");
    }
    if !g.load.0.is_empty()
        && let Err(e) = gnugk_load_bench(&peers, &g.load.0, g.load.1)
    {
        eprintln!("GnuGk proxies-per-gatekeeper failed: {e:#}");
        failed.push("load");
    }
    keep_or_remove(&bins.dir);
    if failed.is_empty() {
        Ok(())
    } else {
        anyhow::bail!("GnuGk benchmark parts failed: {}", failed.join(", "))
    }
}

/// Many endpoints through one proxy at GnuGk.
fn gnugk_scale_bench(
    bins: &proxy_lab::bench::Bins,
    peers: &std::path::Path,
    n: usize,
    per_address: usize,
) -> Result<()> {
    println!(
        "GnuGk scale: {n} endpoints registered through one proxy at GnuGk (routed mode, TimeToLive 3600), 16 RRQs in flight, against the same number registering directly at a second GnuGk"
    );
    let r = proxy_lab::bench::gnugk_scale(bins, peers, n, per_address, 16)?;
    let per = r.proxy_rss.1.saturating_sub(r.proxy_rss.0) as f64 / r.confirmed.max(1) as f64;
    println!();
    println!("| measurement | through the proxy | baseline: directly at GnuGk | ratio |");
    println!("|---|---|---|---|");
    println!(
        "| {} endpoints from {} source addresses, `[gatekeeper_side]` {}: RCFs / listed by GnuGk | {} / {} (GnuGk's count includes the proxy's own registration) | - | - |",
        r.endpoints, r.sources, r.ranges, r.confirmed, r.listed
    );
    println!(
        "| first RRQ -> GnuGk lists them all | {:.1} s ({:.0}/s) | {:.1} s ({:.0}/s) | {:.2} |",
        r.through_proxy.as_secs_f64(),
        r.confirmed as f64 / r.through_proxy.as_secs_f64(),
        r.direct.as_secs_f64(),
        r.endpoints as f64 / r.direct.as_secs_f64(),
        r.through_proxy.as_secs_f64() / r.direct.as_secs_f64()
    );
    println!(
        "| proxy resident memory | {:.1} MiB -> {:.1} MiB ({per:.0} bytes per endpoint) | - | - |",
        r.proxy_rss.0 as f64 / 1048576.0,
        r.proxy_rss.1 as f64 / 1048576.0
    );
    println!("| control moves while registering | {} | - | - |", r.moves);
    println!();
    Ok(())
}

/// Many endpoints through one proxy at the lab gatekeepers, and their move
/// to the backup.
fn lab_scale_bench(bins: &proxy_lab::bench::Bins, n: usize, per_address: usize) -> Result<()> {
    println!(
        "scale: {n} endpoints registered through one proxy at the lab gatekeeper (512 RRQs in flight), then the primary SIGKILLed and all moved to the backup at the default pace (1000/s)"
    );
    let r = proxy_lab::bench::lab_scale(bins, n, per_address)?;
    let per = r.proxy_rss.1.saturating_sub(r.proxy_rss.0) as f64 / r.confirmed.max(1) as f64;
    let s = |d: Duration| format!("{:.1} s", d.as_secs_f64());
    println!();
    println!("| measurement | through the proxy | baseline | ratio |");
    println!("|---|---|---|---|");
    println!(
        "| {} endpoints from {} source addresses, `[gatekeeper_side]` {}: registered | {} | - | - |",
        n, r.sources, r.ranges, r.confirmed
    );
    println!(
        "| distinct call signalling addresses at the primary / RRQs not sent from their rasAddress | {} / {} | - | - |",
        r.primary_addrs.0, r.primary_addrs.1
    );
    println!(
        "| first RRQ -> all registered at the primary | {} | - | - |",
        s(r.registered_in)
    );
    println!(
        "| primary SIGKILL -> all registered at the backup | {} | pace bound {n} / 1000/s = {:.1} s; {n} registering directly at the backup: {} | {:.2} (of the pace bound) |",
        s(r.moved_in),
        n as f64 / 1000.0,
        s(r.direct),
        r.moved_in.as_secs_f64() / (n as f64 / 1000.0)
    );
    println!(
        "| distinct call signalling addresses at the backup / RRQs not sent from their rasAddress | {} / {} | - | - |",
        r.backup_addrs.0, r.backup_addrs.1
    );
    println!(
        "| proxy resident memory | {:.1} MiB -> {:.1} MiB ({per:.0} bytes per endpoint) | - | - |",
        r.proxy_rss.0 as f64 / 1048576.0,
        r.proxy_rss.1 as f64 / 1048576.0
    );
    println!();
    Ok(())
}

/// GnuGk primary kills with endpoints registered through one proxy.
fn gnugk_failover_bench(
    bins: &proxy_lab::bench::Bins,
    peers: &std::path::Path,
    g: &GnuGkBench,
) -> Result<()> {
    use proxy_lab::bench::{self, percentile};
    let (runs, endpoints, hb) = (g.runs, g.endpoints, g.hb);
    println!(
        "GnuGk: {runs} SIGKILLs of the primary with {endpoints} endpoints registered through one proxy (heartbeat {} ms x {}, re-registration paced 1000/s)",
        hb.0, hb.1
    );
    let (v, direct, failovers) = bench::gnugk_failover_runs(bins, peers, runs, endpoints, hb)?;
    let p50 = percentile(&v, 50.0);
    println!();
    println!("| measurement | p50 | p99 | baseline | ratio (p50 / baseline) |");
    println!("|---|---|---|---|---|");
    println!(
        "| GnuGk primary SIGKILL -> backup lists all {endpoints} endpoints ({runs} runs) | {} | {} | {endpoints} endpoints registering directly at the backup until it lists them: {} | {:.2} |",
        ms(p50),
        ms(percentile(&v, 99.0)),
        ms(direct),
        p50.as_secs_f64() / direct.as_secs_f64()
    );
    println!(
        "| control moves in the run: {failovers} ({} from the kills and returns) | - | - | - | - |",
        2 * runs
    );
    println!();
    Ok(())
}

/// Keepalive answers and the heartbeat with and without one host flooding
/// the RAS port, side by side.
fn flood_bench(secs: u64) -> Result<()> {
    let bins = bench_bins()?;
    const ENDPOINTS: usize = 50;
    println!(
        "flood: {ENDPOINTS} endpoints (keepalive every 200 ms) through the proxy (fast path on, default [limits]), {secs} s quiet, then {secs} s with one host ({}) sending 64-byte datagrams to 1719 as fast as it can",
        proxy_lab::bench::FLOODER
    );
    let r = proxy_lab::bench::flood(&bins, ENDPOINTS, secs);
    keep_or_remove(&bins.dir);
    let [q, f] = r?;
    let ms = |d: Duration| format!("{:.2} ms", d.as_secs_f64() * 1e3);
    let ratio = |a: Duration, b: Duration| {
        if b.is_zero() {
            "-".to_string()
        } else {
            format!("{:.2}", a.as_secs_f64() / b.as_secs_f64())
        }
    };
    println!("| | quiet | flood | flood / quiet |");
    println!("|---|---|---|---|");
    println!("| flood datagrams/s | 0 | {:.0} | |", f.flood_pps);
    println!(
        "| endpoint keepalives answered | {} of {} | {} of {} | |",
        q.keepalives.0 - q.keepalives.1,
        q.keepalives.0,
        f.keepalives.0 - f.keepalives.1,
        f.keepalives.0
    );
    println!(
        "| of them in the kernel | {} | {} | |",
        q.kernel_answers, f.kernel_answers
    );
    println!(
        "| heartbeat RTT to the primary, median | {} | {} | {} |",
        ms(q.heartbeat_rtt.0),
        ms(f.heartbeat_rtt.0),
        ratio(f.heartbeat_rtt.0, q.heartbeat_rtt.0)
    );
    println!(
        "| heartbeat RTT, largest | {} | {} | {} |",
        ms(q.heartbeat_rtt.1),
        ms(f.heartbeat_rtt.1),
        ratio(f.heartbeat_rtt.1, q.heartbeat_rtt.1)
    );
    println!(
        "| dropped unread by the per-source budget | {} | {} | |",
        q.over_budget, f.over_budget
    );
    println!(
        "| control moves (failovers) | {} | {} | |",
        q.failovers, f.failovers
    );
    Ok(())
}

/// Active calls handed to the gatekeeper that takes control.
/// The VRRP pair takeover at 50 ms adverts, against keepalived's default
/// timers (1 s adverts: a master-down interval of 3.61 s) in the same run.
fn pair_bench(runs: usize) -> Result<()> {
    use proxy_lab::bench::percentile;
    let bins = bench_bins()?;
    println!(
        "VRRP pair takeover: two proxy nodes with keepalived on the endpoints' LAN, a prober sending a GRQ to the virtual address every 2 ms; {runs} runs each of cutting the active node's link and SIGKILLing its keepalived, timed to the first GCF from the standby"
    );
    let fast = proxy_lab::bench::pair_takeover(&bins, runs, 50);
    let slow = fast
        .as_ref()
        .ok()
        .map(|_| proxy_lab::bench::pair_takeover(&bins, runs, 1000));
    keep_or_remove(&bins.dir);
    let fast = fast?;
    let slow = slow.expect("run after the fast one")?;
    let (f50, s50) = (percentile(&fast, 50.0), percentile(&slow, 50.0));
    println!();
    println!("| adverts | p50 | p99 | max | runs |");
    println!("|---|---|---|---|---|");
    for (name, v) in [
        ("50 ms (the written configuration)", &fast),
        ("1 s (keepalived's default)", &slow),
    ] {
        println!(
            "| {name} | {} | {} | {} | {} |",
            ms(percentile(v, 50.0)),
            ms(percentile(v, 99.0)),
            ms(v.iter().copied().max().unwrap_or_default()),
            v.len()
        );
    }
    println!(
        "ratio p50 (50 ms / default): {:.3}",
        f50.as_secs_f64() / s50.as_secs_f64()
    );
    println!();
    Ok(())
}

fn gnugk_takeover_bench(
    bins: &proxy_lab::bench::Bins,
    peers: &std::path::Path,
    calls: usize,
    runs: usize,
) -> Result<()> {
    use proxy_lab::bench::percentile;
    println!(
        "GnuGk call takeover: {calls} gatekeeper-routed calls between lab endpoints through one proxy; {runs} SIGKILLs of the gatekeeper holding them (alternately the primary in control, and the backup holding them after control returned to the primary), each restarted after"
    );
    let r = proxy_lab::bench::gnugk_call_takeover(bins, peers, calls, runs)?;
    let p50 = percentile(&r.all_listed, 50.0);
    println!();
    println!("| measurement | p50 | p99 | baseline | ratio (p50 / baseline) |");
    println!("|---|---|---|---|---|");
    println!(
        "| SIGKILL -> the other GnuGk lists all {calls} active calls ({runs} runs) | {} | {} | the same {calls} calls set up through the proxy at the primary until it lists them: {} | {:.2} |",
        ms(p50),
        ms(percentile(&r.all_listed, 99.0)),
        ms(r.setup_all),
        p50.as_secs_f64() / r.setup_all.as_secs_f64()
    );
    println!(
        "| SIGKILL -> one call listed there ({} calls) | {} | {} | - | - |",
        r.per_call.len(),
        ms(percentile(&r.per_call, 50.0)),
        ms(percentile(&r.per_call, 99.0)),
    );
    println!(
        "| calls not taken over within the deadline: {} | - | - | - | - |",
        r.unanchored
    );
    println!();
    Ok(())
}

/// How many proxies' heartbeats one GnuGk carries at the default settings.
fn gnugk_load_bench(peers: &std::path::Path, counts: &[usize], secs: u64) -> Result<()> {
    println!(
        "Proxies per GnuGk at the default heartbeat (40 ms x 3, lightweight RRQ on silence): each proxy simulated by its own registration, RAS port and the proxy's own detector; GnuGk idle otherwise, so every proxy probes at its full rate; {secs} s per row, the ramp stops at the first false failover"
    );
    let rows = proxy_lab::bench::gnugk_proxy_load(peers, counts, Duration::from_secs(secs))?;
    println!();
    println!(
        "| proxies (registered) | probes/s at GnuGk | answered | answer RTT p50 / p99 | GnuGk CPU (one core = 100%) | false failovers |"
    );
    println!("|---|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} ({}) | {:.0} | {:.2}% | {:.1} ms / {:.1} ms | {:.0}% | {} |",
            r.proxies,
            r.registered,
            r.probes_per_sec,
            r.answered * 100.0,
            r.rtt_p50.as_secs_f64() * 1000.0,
            r.rtt_p99.as_secs_f64() * 1000.0,
            r.gk_cpu,
            r.false_downs,
        );
    }
    println!();
    Ok(())
}

/// False failovers on a real lossy, jittery link to a real GnuGk.
fn gnugk_lossy_bench(
    bins: &proxy_lab::bench::Bins,
    peers: &std::path::Path,
    secs: u64,
) -> Result<()> {
    use proxy_lab::link_sim::Link;
    let ms_ = Duration::from_millis;
    let links = [
        Link {
            loss: 0.01,
            delay: ms_(20),
            jitter: ms_(20),
        },
        Link {
            loss: 0.05,
            delay: ms_(20),
            jitter: ms_(20),
        },
    ];
    std::fs::create_dir_all(&bins.dir)?;
    println!(
        "GnuGk primary behind an impaired link (NFQUEUE on its interface, both ways; this kernel has no netem), 20 endpoints registered through the proxy, default heartbeat 40 ms x 3, {secs} s per row; the primary never fails"
    );
    let rows =
        proxy_lab::bench::gnugk_lossy_link(bins, peers, 20, &links, Duration::from_secs(secs))?;
    println!();
    println!(
        "| link (each way) | held | packets through / dropped | control moves (false failovers and returns) | primary in control at the end |"
    );
    println!("|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {:.0}% loss, {} ± {} | {} s | {} / {} | {} | {} |",
            r.link.loss * 100.0,
            ms(r.link.delay),
            ms(r.link.jitter),
            r.held.as_secs(),
            r.stats.seen,
            r.stats.dropped,
            r.moves,
            if r.primary_at_end { "yes" } else { "no" },
        );
    }
    println!();
    Ok(())
}

fn bench(runs: usize, endpoints: usize, mass: usize) -> Result<()> {
    use proxy_lab::bench::{self, percentile};
    let bins = bench_bins()?;
    println!(
        "failover: {runs} SIGKILLs of the primary with {endpoints} endpoints registered (heartbeat 40 ms x 3)"
    );
    let f = bench::failover_runs(&bins, runs, endpoints, bench::Loss::Kill)?;
    let det: Vec<Duration> = f.iter().map(|r| r.detection).collect();
    let fo: Vec<Duration> = f.iter().map(|r| r.failover).collect();
    println!("failover: {runs} cuts of the primary's link (ip link set down)");
    let f = bench::failover_runs(&bins, runs, endpoints, bench::Loss::LinkDown)?;
    let pdet: Vec<Duration> = f.iter().map(|r| r.detection).collect();
    let pfo: Vec<Duration> = f.iter().map(|r| r.failover).collect();
    // The detector's bound on a clean link (40 ms x 3): the next probe slot
    // (40), its timeout (40), one retry half an interval later (20), that
    // retry's timeout (40). A killed process's host answers with ICMP
    // port unreachable at once, so kills usually beat it.
    let bound = Duration::from_millis(140);
    println!(
        "mass re-registration: {mass} endpoints moved to the backup, paced at 1000/s (default) and 100000/s"
    );
    let (paced, direct1) = bench::mass_reregistration(&bins, mass, 1000)?;
    let (fast, direct2) = bench::mass_reregistration(&bins, mass, 100_000)?;
    let _ = std::fs::remove_dir_all(&bins.dir);
    let r = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
    println!();
    println!("| measurement | p50 | p99 | baseline | ratio (p50 / baseline) |");
    println!("|---|---|---|---|---|");
    println!(
        "| primary SIGKILL -> control at backup ({runs} runs) | {} | {} | clean-link bound of the detector = {} | {:.2} |",
        ms(percentile(&det, 50.0)),
        ms(percentile(&det, 99.0)),
        ms(bound),
        r(percentile(&det, 50.0), bound)
    );
    println!(
        "| primary SIGKILL -> {endpoints} endpoints registered at backup ({runs} runs) | {} | {} | bound = {} | {:.2} |",
        ms(percentile(&fo, 50.0)),
        ms(percentile(&fo, 99.0)),
        ms(bound),
        r(percentile(&fo, 50.0), bound)
    );
    println!(
        "| primary link down -> control at backup ({runs} runs) | {} | {} | bound = {} | {:.2} |",
        ms(percentile(&pdet, 50.0)),
        ms(percentile(&pdet, 99.0)),
        ms(bound),
        r(percentile(&pdet, 50.0), bound)
    );
    println!(
        "| primary link down -> {endpoints} endpoints registered at backup ({runs} runs) | {} | {} | bound = {} | {:.2} |",
        ms(percentile(&pfo, 50.0)),
        ms(percentile(&pfo, 99.0)),
        ms(bound),
        r(percentile(&pfo, 50.0), bound)
    );
    println!(
        "| {mass} registrations moved to backup, paced 1000/s | {} | - | {mass} endpoints registering directly at backup: {} | {:.2} |",
        ms(paced),
        ms(direct1),
        r(paced, direct1)
    );
    println!(
        "| {mass} registrations moved to backup, paced 100000/s | {} | - | {mass} endpoints registering directly at backup: {} | {:.2} |",
        ms(fast),
        ms(direct2),
        r(fast, direct2)
    );
    Ok(())
}

fn demo(hold: u64, which: DemoGatekeeper) -> Result<()> {
    if let Some(why) = netns::unprivileged_reason() {
        bail!("the demo lab needs root: {why}");
    }
    // SAFETY: installing an async-signal-safe handler that only stores a flag.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    netns::sweep_stale();
    let dir_bin = std::env::current_exe()?
        .parent()
        .context("binary directory")?
        .to_path_buf();
    let lab_bin = dir_bin.join("h323-lab");
    let proxy_bin = dir_bin.join("proxy");
    let dir = std::env::temp_dir().join(format!("h323-lab-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;

    step("creating the lab in 198.18.0.0/15: endpoints | proxy | primary and backup gatekeepers");
    let lab = Lab::create()?;
    println!("    ep 198.18.1.2 -- 198.18.1.1 px 198.18.2.1 -- 198.18.2.10 gk1 (primary)");
    println!("                                 198.18.3.1 -- 198.18.3.10 gk2 (backup)");
    let peers = match which {
        DemoGatekeeper::Lab => None,
        DemoGatekeeper::Gnugk => Some(
            proxy_lab::peers::peers_bin()
                .map_err(|e| anyhow::anyhow!("--gatekeeper gnugk: {e}"))?,
        ),
    };
    let gk = |ns: &Netns, ip: std::net::Ipv4Addr, id: &str, alt: bool| -> Result<DemoGk> {
        if let Some(peers) = &peers {
            let g = proxy_lab::peers::GnuGk::start(
                peers,
                ns,
                ip,
                id,
                proxy_lab::peers::Routing::Routed,
                "",
            )?;
            return Ok(DemoGk::Real(Box::new(g)));
        }
        let mut c = ns.command(&lab_bin)?;
        c.args(["gatekeeper", "--ras", &format!("{ip}:1719"), "--id", id]);
        if alt {
            c.args(["--alternate", &format!("{GK2}:1719")]);
        }
        let p = LabProc::spawn(id, c)?;
        until(10, || p.last("gk listening").is_some())?;
        Ok(DemoGk::Lab(p))
    };
    let mut gk1 = gk(&lab.gk1, GK1, "GK-A", true)?;
    let mut gk2 = gk(&lab.gk2, GK2, "GK-B", false)?;
    match &peers {
        Some(dir) => println!(
            "    gatekeepers: GnuGk 5.15 (routed mode, status port 7000) GK-A (primary) and GK-B (backup), from {}",
            dir.display()
        ),
        None => println!(
            "    gatekeepers: the project's lab gatekeeper, GK-A (primary) and GK-B (backup) (`cargo xtask run --gnugk` runs GnuGk instead)"
        ),
    }

    step(
        "starting `proxy run` on the proxy host (XDP RAS classifier on px0, metrics on 127.0.0.1:9719)",
    );
    let cfg = dir.join("proxy.toml");
    std::fs::write(&cfg, topology::proxy_toml(INSTANCE, 2000, Some("px0")))?;
    let log = dir.join("proxy.log");
    let mut pc = lab.px.command(&proxy_bin)?;
    pc.args(["run", "--config"]).arg(&cfg).env("NO_COLOR", "1");
    pc.stderr(std::fs::File::create(&log)?);
    let mut proxy = LabProc::spawn("proxy", pc)?;
    println!("    config: {} (log: {})", cfg.display(), log.display());

    let result = (|| -> Result<Vec<(String, String)>> {
        let m = |sample: &str| -> Option<f64> {
            scrape(&lab.px, "127.0.0.1:9719")
                .ok()
                .and_then(|t| metric(&t, sample))
        };
        until(20, || {
            m("h323proxy_control{gatekeeper=\"primary\"}") == Some(1.0)
        })
        .context("the proxy did not take the primary gatekeeper")?;
        println!("    proxy registered itself at both gatekeepers; primary in control");

        step(
            "12 endpoints register through the proxy (endpoints that drop calls when keepalives go unanswered)",
        );
        let mut ec = lab.ep.command(&lab_bin)?;
        ec.args([
            "endpoints",
            "--gatekeeper",
            &format!("{PX_EP}:1719"),
            "--ip",
            &EP.to_string(),
            "--count",
            "12",
            "--pairs",
            "5",
            "--keepalive-ms",
            "200",
            "--status-enquiry-ms",
            "1000",
            "--drop-calls-on-silence",
            "--report-ms",
            "200",
        ]);
        let mut eps = LabProc::spawn("endpoints", ec)?;
        let st = |eps: &LabProc, k: &str| {
            eps.last("eps registered")
                .and_then(|l| field(&l, k))
                .unwrap_or(0)
        };
        until(20, || st(&eps, "registered") == 12)?;
        until(5, || {
            m("h323proxy_gatekeeper_registrations{gatekeeper=\"primary\"}") == Some(12.0)
        })?;
        println!(
            "    12 registered; the primary sees each at its own address on the proxy (198.18.2.1, ports 20000+)"
        );
        if let DemoGk::Real(g) = &gk1 {
            for l in g.status("r").unwrap_or_default().lines().take(4) {
                println!("    GK-A `r`: {l}");
            }
        }

        step(
            "5 calls: endpoint 2k calls endpoint 2k+1 (ARQ via the primary, SETUP through the proxy, fastStart, RTP 50 pkt/s each way)",
        );
        until(20, || {
            st(&eps, "calls_active") == 10 && st(&eps, "rtp_received") > 200
        })?;
        println!("    {}", eps.last("eps registered").unwrap_or_default());

        step("SIGKILL the primary gatekeeper mid-call");
        gk1.kill9();
        let detect = until(10, || {
            m("h323proxy_control{gatekeeper=\"backup\"}") == Some(1.0)
        })?;
        let rereg = until(10, || {
            m("h323proxy_gatekeeper_registrations{gatekeeper=\"backup\"}") == Some(12.0)
        })? + detect;
        if gk2.adopted().is_some() {
            until(10, || gk2.adopted() == Some(10))?;
        }
        println!(
            "    heartbeat loss detected, control moved to the backup after {}",
            ms(detect)
        );
        println!(
            "    12 endpoints re-registered at the backup after {} (same endpointIdentifiers)",
            ms(rereg)
        );
        match &gk2 {
            DemoGk::Lab(_) => {
                println!(
                    "    the backup adopted all 10 call legs from the proxy's unsolicited IRRs"
                )
            }
            DemoGk::Real(g) => {
                let n = g.registrations().map(|r| r.len()).unwrap_or(0);
                println!(
                    "    GnuGk GK-B lists {n} registrations (12 endpoints and the proxy); it does not adopt calls from IRRs, the proxy keeps them up"
                );
            }
        }
        std::thread::sleep(Duration::from_secs(5));
        stopped()?;
        println!(
            "    5 s later: {}",
            eps.last("eps registered").unwrap_or_default()
        );

        step("SIGKILL the backup too: no gatekeeper at all");
        gk2.kill9();
        let surv = until(10, || {
            m("h323proxy_control{gatekeeper=\"survivable\"}") == Some(1.0)
        })?;
        println!(
            "    survivable mode after {}: the proxy registers, admits and routes itself",
            ms(surv)
        );

        step("a local call in survivable mode: endpoint 10 dials 91012 (dial plan: strip the 9)");
        eps.send("call 10 91012");
        until(10, || st(&eps, "calls_active") == 12)?;
        println!("    {}", eps.last("eps registered").unwrap_or_default());

        step("the primary gatekeeper comes back");
        gk1 = gk(&lab.gk1, GK1, "GK-A", true)?;
        let back = until(20, || {
            m("h323proxy_control{gatekeeper=\"primary\"}") == Some(1.0)
        })?;
        until(10, || {
            m("h323proxy_gatekeeper_registrations{gatekeeper=\"primary\"}") == Some(12.0)
        })?;
        if gk1.adopted().is_some() {
            until(10, || gk1.adopted() == Some(12))?;
        }
        println!(
            "    control back at the primary after {} (hold time 2 s), registrations and 12 call legs moved",
            ms(back)
        );
        std::thread::sleep(Duration::from_secs(2));

        let last = eps.last("eps registered").unwrap_or_default();
        let g = |k: &str| field(&last, k).unwrap_or(0);
        let text = scrape(&lab.px, "127.0.0.1:9719").unwrap_or_default();
        let ka = metric(
            &text,
            "h323proxy_keepalives_answered_total{channel=\"ras\"}",
        )
        .unwrap_or(0.0);
        let rows = vec![
            (
                "calls kept through both gatekeeper losses".to_string(),
                format!("{}/{} call legs", g("calls_active") - 2, 10),
            ),
            ("calls dropped".into(), g("calls_dropped").to_string()),
            (
                "RTP packets sent / lost / out of order".into(),
                format!(
                    "{} / {} / {}",
                    g("rtp_sent"),
                    g("rtp_lost"),
                    g("rtp_reordered")
                ),
            ),
            (
                "endpoint keepalives unanswered".into(),
                g("keepalives_unanswered").to_string(),
            ),
            (
                "keepalives answered: in the kernel (XDP) / userspace".into(),
                format!(
                    "{} / {ka:.0}",
                    proxy_user::fastpath::Counters::from_pins(INSTANCE)
                        .map(|c| c.answered())
                        .unwrap_or(0)
                ),
            ),
            ("primary loss: detection + control moved".into(), ms(detect)),
            (
                "primary loss: 12 endpoints re-registered at backup".into(),
                ms(rereg),
            ),
            ("backup loss: survivable mode".into(), ms(surv)),
            ("primary back: control returned (hold 2 s)".into(), ms(back)),
        ];

        step(&format!(
            "fast path: `proxy offload status --instance {INSTANCE}` (XDP answered keepalives on px0, TC watched the gatekeepers on px1/px2)"
        ));
        let _ = Command::new(&proxy_bin)
            .args(["offload", "status", "--instance", INSTANCE])
            .status();
        step(&format!(
            "`bpftool map dump pinned /sys/fs/bpf/{INSTANCE}/RAS_CLASSIFY` (BTF field names), first lines"
        ));
        match Command::new("bpftool")
            .args(["map", "dump", "pinned"])
            .arg(format!("/sys/fs/bpf/{INSTANCE}/RAS_CLASSIFY"))
            .output()
        {
            Ok(o) => String::from_utf8_lossy(&o.stdout)
                .lines()
                .take(12)
                .for_each(|l| println!("    {l}")),
            Err(e) => println!("    bpftool not available: {e}"),
        }
        step("metrics excerpt (curl http://127.0.0.1:9719/metrics inside the proxy host)");
        for l in text.lines().filter(|l| {
            !l.starts_with('#')
                && (l.starts_with("h323proxy_control")
                    || l.starts_with("h323proxy_calls{")
                    || l.starts_with("h323proxy_failovers")
                    || l.starts_with("h323proxy_gatekeeper_registrations"))
        }) {
            println!("    {l}");
        }
        if hold > 0 {
            step(&format!("holding the lab for {hold} s (Ctrl-C to stop)"));
            let t = Instant::now();
            while t.elapsed() < Duration::from_secs(hold) && !STOP.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        eps.send("quit");
        Ok(rows)
    })();

    step("stopping the proxy (SIGTERM: detaches XDP, removes pins) and removing the lab");
    let status = proxy.terminate(10);
    drop((gk1, gk2, proxy));
    drop(lab);
    let rows = match result {
        Ok(r) => r,
        Err(e) => {
            println!("    proxy log: {}", log.display());
            return Err(e);
        }
    };
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "    proxy exit: {}",
        status
            .map(|s| s.to_string())
            .unwrap_or_else(|| "killed".into())
    );
    step("summary");
    let w = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(10);
    println!("    | {:<w$} | {:<24} |", "what", "result");
    println!("    |{}|{}|", "-".repeat(w + 2), "-".repeat(26));
    for (k, v) in &rows {
        println!("    | {k:<w$} | {v:<24} |");
    }
    println!("\nlab removed; done.");
    Ok(())
}
