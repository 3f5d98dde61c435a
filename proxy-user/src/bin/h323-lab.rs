//! `h323-lab`: the namespace lab on this one host.
//!
//! `h323-lab demo` (what `cargo xtask run` starts) creates an endpoint host
//! and a proxy host joined by a veth, in 198.18.0.0/15, runs the real `proxy`
//! daemon with XDP on the proxy side, sends H.225.0 RAS traffic from the
//! endpoint, and shows the fast-path counters as the operator would read
//! them (`proxy stats`, `bpftool map dump pinned`). Everything is removed on
//! exit, on Ctrl-C and on error.

use std::net::UdpSocket;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use proxy_common::packet_slot;
use proxy_user::capture::write_corpus_pcap;
use proxy_user::fastpath::Counters;
use proxy_user::h225::corpus::{self, Kind};
use proxy_user::lab::netns::{self, Netns, veth};

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

#[derive(Subcommand)]
enum Cmd {
    /// Bring up the demo lab, narrate it, tear it down (needs root).
    Demo {
        /// RAS corpus rounds the endpoint sends.
        #[arg(long, default_value_t = 20)]
        rounds: u32,
        /// Keep the lab up this many seconds at the end (inspect it with
        /// bpftool or `proxy stats --instance h323demo`).
        #[arg(long, default_value_t = 0)]
        hold: u64,
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
        /// Tear calls down when keepalives go unanswered (patent claim 7).
        #[arg(long)]
        claim7: bool,
        /// STATUS ENQUIRY interval on each call, milliseconds.
        #[arg(long, default_value_t = 2000)]
        status_enquiry_ms: u64,
        /// Endpoint 2k calls endpoint 2k+1 for k < pairs.
        #[arg(long, default_value_t = 0)]
        pairs: usize,
        /// Status line interval, milliseconds.
        #[arg(long, default_value_t = 500)]
        report_ms: u64,
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
        Cmd::Demo { rounds, hold } => demo(rounds, hold),
        Cmd::Gatekeeper {
            ras,
            id,
            ttl,
            alternates,
        } => runtime()?
            .block_on(proxy_user::lab::gatekeeper::run(
                proxy_user::lab::gatekeeper::GkOptions {
                    ras,
                    id,
                    ttl,
                    alternates,
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
            claim7,
            status_enquiry_ms,
            pairs,
            report_ms,
        } => runtime()?
            .block_on(proxy_user::lab::endpoint::run(
                proxy_user::lab::endpoint::EpOptions {
                    gatekeeper,
                    ip,
                    count,
                    first_number,
                    base_port,
                    ttl,
                    keepalive: Duration::from_millis(keepalive_ms),
                    claim7,
                    status_enquiry: Duration::from_millis(status_enquiry_ms),
                    pairs,
                    report: Duration::from_millis(report_ms),
                },
            ))
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

fn demo(rounds: u32, hold: u64) -> Result<()> {
    if let Some(why) = netns::unprivileged_reason() {
        bail!("the demo lab needs root: {why}");
    }
    // SAFETY: installing an async-signal-safe handler that only stores a flag.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    netns::sweep_stale();
    let proxy_bin = std::env::current_exe()?
        .parent()
        .context("binary directory")?
        .join("proxy");

    step("creating the lab: endpoint host 198.18.0.2 <-veth-> proxy host 198.18.0.1");
    let px = Netns::create("px")?;
    let ep = Netns::create("ep")?;
    veth(&px, "px0", &ep, "ep0")?;
    px.ip(&["addr", "add", "198.18.0.1/24", "dev", "px0"])?;
    ep.ip(&["addr", "add", "198.18.0.2/24", "dev", "ep0"])?;
    println!("    namespaces {} and {}", px.name(), ep.name());

    step("starting `proxy run` on the proxy host with XDP on px0");
    let dir = std::env::temp_dir().join(format!("h323-lab-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let cfg = dir.join("proxy.toml");
    std::fs::write(
        &cfg,
        format!(
            "instance = \"{INSTANCE}\"\n[fastpath]\ninterfaces = [\"px0\"]\nstats_interval_secs = 2\n"
        ),
    )?;
    let mut proxy = px
        .command(&proxy_bin)?
        .args(["run", "--config"])
        .arg(&cfg)
        .stdout(Stdio::inherit())
        .spawn()
        .context("starting proxy")?;
    let result = (|| -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Counters::from_pins(INSTANCE).is_err() {
            if let Some(st) = proxy.try_wait()? {
                bail!("proxy exited during start-up: {st}");
            }
            if Instant::now() > deadline || STOP.load(Ordering::SeqCst) {
                bail!("proxy did not pin its maps in 20 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        println!("    maps pinned under /sys/fs/bpf/{INSTANCE}/");

        let entries = corpus::build()?;
        let ras: Vec<_> = entries.iter().filter(|e| e.kind == Kind::Ras).collect();
        step(&format!(
            "endpoint sends {rounds} rounds of {} RAS messages (every RasMessage choice) to 198.18.0.1:1719",
            ras.len()
        ));
        let sock = ep.run(|| UdpSocket::bind("198.18.0.2:40001"))??;
        let mut sent = 0u64;
        for _ in 0..rounds {
            for e in &ras {
                if STOP.load(Ordering::SeqCst) {
                    bail!("interrupted");
                }
                sock.send_to(&e.bytes, "198.18.0.1:1719")?;
                sent += 1;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        let counters = loop {
            let c = Counters::from_pins(INSTANCE)?;
            if c.packets[packet_slot::RAS as usize] >= sent || Instant::now() > deadline {
                break c;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        println!(
            "    sent {sent}, XDP counted {} RAS datagrams",
            counters.packets[packet_slot::RAS as usize]
        );

        step(&format!(
            "`proxy stats --instance {INSTANCE}` (reads the pinned maps)"
        ));
        let _ = Command::new(&proxy_bin)
            .args(["stats", "--instance", INSTANCE])
            .status();

        step(&format!(
            "`bpftool map dump pinned /sys/fs/bpf/{INSTANCE}/RAS_CLASSIFY` (BTF field names), first lines"
        ));
        match Command::new("bpftool")
            .args(["map", "dump", "pinned"])
            .arg(format!("/sys/fs/bpf/{INSTANCE}/RAS_CLASSIFY"))
            .output()
        {
            Ok(o) => {
                for l in String::from_utf8_lossy(&o.stdout).lines().take(24) {
                    println!("    {l}");
                }
            }
            Err(e) => println!("    bpftool not available: {e}"),
        }
        if hold > 0 {
            step(&format!("holding the lab for {hold} s (Ctrl-C to stop)"));
            let until = Instant::now() + Duration::from_secs(hold);
            while Instant::now() < until && !STOP.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        Ok(())
    })();

    step("stopping the proxy (SIGTERM: detaches XDP, removes pins) and removing the lab");
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(proxy.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while proxy.try_wait()?.is_none() {
        if Instant::now() > deadline {
            let _ = proxy.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = proxy.wait();
    let _ = std::fs::remove_dir_all(&dir);
    drop((px, ep));
    result?;
    println!("\nlab removed; done.");
    Ok(())
}
