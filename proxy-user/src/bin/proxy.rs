//! `proxy`: the H.323 survivable proxy daemon and its operator tools.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use proxy_common::{RAS_ROOT_ALTERNATIVES, packet_slot, ras_slot};
use proxy_user::config::{Config, RedundancyProtocol};
use proxy_user::driver::{CallDriver, RasDriver, RasStatus};
use proxy_user::fastpath::{Counters, FastPath};
use tokio::signal::unix::{SignalKind, signal};

#[derive(Parser)]
#[command(
    name = "proxy",
    version,
    about = "H.323 signalling proxy that keeps calls up when the gatekeeper goes away",
    long_about = "H.323 signalling proxy that keeps calls up when the gatekeeper goes away.\n\n\
        `proxy run` starts the daemon (XDP fast path + control plane). `proxy stats` \
        reads the fast-path counters of a running instance from its pinned maps. \
        `proxy decode` prints the H.225.0 messages of a capture file.\n\n\
        Logging: set RUST_LOG (default `info`), e.g. RUST_LOG=proxy_user=debug."
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the proxy daemon. Stops cleanly on SIGTERM or Ctrl-C, detaching XDP.
    Run {
        /// TOML configuration (see proxy.example.toml). Without it the
        /// embedded default is used.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Print the fast-path counters of an instance from its pinned maps
    /// (same as `proxy offload status`).
    Stats {
        /// Instance name (the directory under /sys/fs/bpf).
        #[arg(long, default_value = "h323proxy")]
        instance: String,
    },
    /// Inspect or switch the kernel keepalive fast path of an instance,
    /// through its pinned maps (works while the daemon runs, and after it
    /// died with the programs left attached).
    Offload {
        #[command(subcommand)]
        action: OffloadCmd,
    },
    /// A primary/backup pair on one virtual address (`[redundancy]`).
    Redundancy {
        #[command(subcommand)]
        action: RedundancyCmd,
    },
    /// Decode the H.225.0 messages (RAS on UDP 1719, call signalling on TCP
    /// 1720 and any --port) of a pcap or pcapng capture, one line each.
    Decode {
        /// Capture file (pcap or pcapng).
        file: PathBuf,
        /// Extra TCP ports carrying H.225.0 call signalling.
        #[arg(long = "port")]
        ports: Vec<u16>,
        /// Print the full decoded tree as JSON, one object per line.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum RedundancyCmd {
    /// Print keepalived's configuration for this node of the pair (VRRPv3,
    /// from `[redundancy]`): install it as keepalived's configuration file
    /// (e.g. /etc/keepalived/keepalived.conf) and start keepalived.
    KeepalivedConfig {
        /// TOML configuration of this node.
        #[arg(long)]
        config: Option<PathBuf>,
        /// The daemon's process name, which keepalived tracks (a node whose
        /// daemon is gone gives the address up).
        #[arg(long, default_value = "proxy")]
        process: String,
    },
}

#[derive(Subcommand)]
enum OffloadCmd {
    /// Counters by outcome and reason, the learned-endpoint table size, the
    /// settings and the attached interfaces.
    Status {
        /// Instance name (the directory under /sys/fs/bpf).
        #[arg(long, default_value = "h323proxy")]
        instance: String,
    },
    /// Let the kernel answer learned keepalives again.
    On {
        /// Instance name.
        #[arg(long, default_value = "h323proxy")]
        instance: String,
    },
    /// Leave every keepalive to userspace (XDP keeps counting), e.g. to
    /// compare the two paths; learned entries are kept.
    Off {
        /// Instance name.
        #[arg(long, default_value = "h323proxy")]
        instance: String,
    },
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    // A panic in any task ends the process: a daemon with its RAS task
    // gone but its listeners open would look alive and serve nobody. The
    // supervisor (systemd: Restart=always) starts it again; the pinned
    // fast path answers keepalives meanwhile.
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        report(info);
        tracing::error!(%info, "panic: exiting (the supervisor restarts the daemon)");
        std::process::exit(70);
    }));
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Run { config } => {
            let cfg = Config::load(config.as_deref())?;
            tokio::runtime::Runtime::new()
                .context("starting the tokio runtime")?
                .block_on(run(cfg, config))
        }
        Cmd::Stats { instance } => {
            let c = Counters::from_pins(&instance)
                .with_context(|| format!("reading the pinned maps of instance {instance:?}"))?;
            print!("{}", render_counters(&c));
            Ok(())
        }
        Cmd::Offload { action } => match action {
            OffloadCmd::Status { instance } => {
                let c = Counters::from_pins(&instance)
                    .with_context(|| format!("reading the pinned maps of instance {instance:?}"))?;
                let dir = proxy_user::fastpath::pin_dir(&instance)?;
                let s = proxy_user::fastpath::settings_from_pins(&instance)?;
                let links = pinned_links(&dir, "link_");
                println!("instance {instance}: pins in {}", dir.display());
                println!(
                    "kernel answering: {}; RAS port {}; per-endpoint bound: {}",
                    if s.answer != 0 { "on" } else { "off" },
                    s.ras_port,
                    if s.rate_interval_ns == 0 {
                        "none".to_string()
                    } else {
                        format!(
                            "{:.0}/s, burst {}",
                            1e9 / s.rate_interval_ns as f64,
                            s.rate_slack_ns / s.rate_interval_ns
                        )
                    }
                );
                let tc = pinned_links(&dir, "tclink_");
                let list = |v: &[String]| {
                    if v.is_empty() {
                        "none".to_string()
                    } else {
                        v.join(", ")
                    }
                };
                println!("XDP attached (pinned links): {}", list(&links));
                println!(
                    "TC gatekeeper liveness attached (pinned links): {}",
                    list(&tc)
                );
                println!("learned endpoints: {}", c.endpoints);
                if let Ok(t) = proxy_user::fastpath::LivenessTable::from_pin(&instance) {
                    let now = proxy_user::fastpath::monotonic_ns();
                    for (ip, g) in t.entries() {
                        let state = ["unknown", "up", "suspect", "down"]
                            .get(g.state as usize)
                            .copied()
                            .unwrap_or("?");
                        let seen = if g.last_ns == 0 {
                            "never".to_string()
                        } else {
                            format!("{} ms ago", now.saturating_sub(g.last_ns) / 1_000_000)
                        };
                        println!(
                            "gatekeeper {ip}: {state}{}, last RAS/signalling seen {seen} ({} RAS, {} signalling packets)",
                            if g.active != 0 { ", in control" } else { "" },
                            g.ras_packets,
                            g.signalling_packets
                        );
                    }
                }
                println!();
                print!("{}", render_counters(&c));
                Ok(())
            }
            OffloadCmd::On { instance } => switch(&instance, true),
            OffloadCmd::Off { instance } => switch(&instance, false),
        },
        Cmd::Redundancy { action } => match action {
            RedundancyCmd::KeepalivedConfig { config, process } => {
                let cfg = Config::load(config.as_deref())?;
                if cfg.redundancy.protocol != RedundancyProtocol::Vrrp {
                    anyhow::bail!(
                        "redundancy.protocol is not \"vrrp\" in this configuration: keepalived has nothing to do"
                    );
                }
                print!(
                    "{}",
                    proxy_user::redundancy::keepalived_config(&cfg, &process)
                );
                Ok(())
            }
        },
        Cmd::Decode { file, ports, json } => {
            Ok(proxy_user::capture::decode_file(&file, &ports, json)?)
        }
    }
}

/// Raise the soft open-file limit to what the `[limits]` caps may need (up
/// to the hard limit): at the usual soft limit of 1,024, a few hundred
/// calls would run the daemon out of descriptors long before its caps
/// refuse anything.
fn raise_open_file_limit(needed: u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        tracing::warn!(error = %std::io::Error::last_os_error(), "reading the open file limit");
        return;
    }
    let want = needed.min(lim.rlim_max);
    if want > lim.rlim_cur {
        let before = lim.rlim_cur;
        lim.rlim_cur = want;
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
            tracing::warn!(error = %std::io::Error::last_os_error(), "raising the open file limit");
            return;
        }
        tracing::info!(
            from = before,
            to = want,
            "open file limit raised for the [limits] caps"
        );
    }
    if lim.rlim_max < needed {
        tracing::warn!(
            hard_limit = lim.rlim_max,
            needed,
            "the hard open file limit is below what limits.max_connections may need; lower it or raise LimitNOFILE"
        );
    }
}

/// With `[redundancy] protocol = "vrrp"`: follow keepalived's notify FIFO,
/// and let the kernel answer only while this node owns the virtual
/// address. The node starts as the standby.
fn start_redundancy(
    cfg: &Config,
    fast: bool,
) -> Result<Option<std::sync::Arc<proxy_user::redundancy::RedundancyStatus>>> {
    use proxy_user::redundancy::{self, RedundancyStatus, Role};
    let r = &cfg.redundancy;
    if r.protocol != RedundancyProtocol::Vrrp {
        return Ok(None);
    }
    redundancy::make_fifo(&r.notify_fifo)
        .with_context(|| format!("redundancy.notify_fifo {}", r.notify_fifo.display()))?;
    let (tx, mut rx) = tokio::sync::watch::channel(Role::Standby);
    redundancy::watch_fifo(r.notify_fifo.clone(), redundancy::instance_name(r), tx)
        .with_context(|| format!("opening redundancy.notify_fifo {}", r.notify_fifo.display()))?;
    let status = std::sync::Arc::new(RedundancyStatus::default());
    let st = status.clone();
    let instance = cfg.instance.clone();
    tracing::info!(fifo = %r.notify_fifo.display(), instance = %redundancy::instance_name(r), "redundancy: standby until keepalived makes this node master");
    tokio::spawn(async move {
        while rx.changed().await.is_ok() {
            let role = *rx.borrow_and_update();
            let master = role == Role::Master;
            let was = st.master.swap(master, std::sync::atomic::Ordering::Relaxed);
            if master && !was {
                st.takeovers
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            if fast && let Err(e) = proxy_user::fastpath::set_standby(&instance, !master) {
                tracing::error!(error = %e, "redundancy: setting the fast path's standby flag");
            }
            if master != was {
                tracing::warn!(role = role.name(), "redundancy: role changed");
            }
        }
    });
    Ok(Some(status))
}

async fn run(cfg: Config, path: Option<PathBuf>) -> Result<()> {
    // Signal handlers first: a supervisor (or a test) that sees the pins
    // appear may send SIGTERM at once, and must get a clean shutdown.
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    raise_open_file_limit(cfg.limits.descriptors_needed());
    let mut fast = None;
    if cfg.fastpath.enabled {
        let mut fp = FastPath::load_sized(&cfg.instance, cfg.fastpath.max_endpoints)
            .context("loading the XDP fast path")?;
        let mut local = proxy_user::fastpath::local_addresses();
        // A pair's virtual addresses are this node's whenever it owns them;
        // until keepalived says so it is the standby and answers nothing.
        let pair = cfg.redundancy.protocol != RedundancyProtocol::None;
        if pair {
            local.extend(cfg.redundancy.virtual_ips());
            local.sort();
            local.dedup();
        }
        // The endpoint address is checked first in the kernel only when it
        // is one of this host's (not a floating address bound with
        // ip_nonlocal_bind on a standby).
        let hot = Some(cfg.proxy.endpoint_address).filter(|a| local.contains(a));
        let mut settings = cfg.fastpath.settings(cfg.proxy.ras_port, hot);
        settings.standby = u32::from(pair);
        fp.configure(settings)?;
        fp.set_local_addrs(&local)?;
        for iface in &cfg.fastpath.interfaces {
            let mode = fp.attach_fastpath(iface)?;
            tracing::info!(%iface, ?mode, "XDP attached");
        }
        if cfg.fastpath.check_macs {
            let no_forwarding: Vec<&String> = cfg
                .fastpath
                .interfaces
                .iter()
                .filter(|i| !proxy_user::fastpath::ipv4_forwarding(i))
                .collect();
            if no_forwarding.is_empty() {
                for iface in &cfg.fastpath.interfaces {
                    let mac = fp.add_own_mac(iface)?;
                    tracing::info!(%iface, mac = %mac.map(|b| format!("{b:02x}")).join(":"), "fast path answers frames to this MAC only");
                }
                // And to the pair's virtual MAC, on the interface whose
                // macvlan carries it (frames reach XDP on the parent).
                if pair {
                    let iface = &cfg.redundancy.interface;
                    let (ifindex, _) = proxy_user::fastpath::interface_mac(iface)?;
                    let vmac = proxy_user::redundancy::vrrp_mac(cfg.redundancy.router_id);
                    fp.add_mac(ifindex, vmac)?;
                    tracing::info!(%iface, vmac = %vmac.map(|b| format!("{b:02x}")).join(":"), "fast path answers frames to the pair's virtual MAC too");
                }
                settings.check_macs = 1;
                fp.configure(settings)?;
            } else {
                tracing::warn!(
                    interfaces = ?no_forwarding,
                    "[fastpath] check_macs is left off: IPv4 forwarding is off on these interfaces, and the kernel's FIB lookup for XDP needs it"
                );
            }
        }
        for iface in &cfg.fastpath.gatekeeper_interfaces {
            fp.attach_liveness(iface)?;
            tracing::info!(%iface, "TC gatekeeper liveness attached (ingress)");
        }
        tracing::info!(
            pins = %fp.pin_dir().display(),
            answer_keepalives = cfg.fastpath.answer_keepalives,
            local_addresses = local.len(),
            "fast path ready"
        );
        fast = Some(fp);
    } else {
        tracing::info!("fast path disabled by configuration");
    }

    let mut ras = RasDriver::bind(&cfg)
        .await
        .context("starting the RAS relay")?;
    if let Some(fp) = fast.as_mut() {
        ras = ras.with_offload(fp.take_keepalive_table()?);
        // Always: besides the TC program's sightings (only where
        // `gatekeeper_interfaces` attach it), the gatekeepers' addresses in
        // this map are what the XDP program refuses to hear from the LAN.
        ras = ras.with_liveness(fp.take_liveness_table()?, cfg.proxy.call_signal_port);
    }
    // Fault injection for the test of what a panic does (see the README's
    // Tests section); never set in service.
    if let Some(ms) = std::env::var("H323PROXY_INJECT_PANIC_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        tracing::warn!(
            after_ms = ms,
            "H323PROXY_INJECT_PANIC_MS: the RAS task will panic"
        );
        ras = ras.with_injected_panic(Duration::from_millis(ms));
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (status_tx, mut status_rx) = tokio::sync::watch::channel(RasStatus::default());
    let (calls, l_ep, l_gk) = CallDriver::bind(&cfg, ras.handle())
        .await
        .context("starting the call signalling relay")?;
    let ras = ras.with_calls(calls.calls.clone());
    // Every endpoint's own gatekeeper-side address, served by these two
    // sockets through sk_lookup; held until shutdown.
    let _steering = match cfg.identity_pool() {
        Some(pool) => {
            let st = proxy_user::fastpath::GkSideSteering::attach(
                &pool,
                ras.gatekeeper_socket(),
                &l_gk,
            )
            .context("attaching the sk_lookup program for the per-endpoint gatekeeper-side addresses ([gatekeeper_side] ports = \"\" turns them off)")?;
            let (addrs, ports) = pool.ranges();
            tracing::info!(
                addresses = ?addrs,
                ports = %format!("{}-{}", ports.start(), ports.end()),
                capacity = pool.capacity(),
                "per-endpoint gatekeeper-side addresses"
            );
            Some(st)
        }
        None => {
            tracing::warn!(
                "[gatekeeper_side] ports is empty: every endpoint shares the proxy's gatekeeper-side address"
            );
            None
        }
    };
    let calls = std::sync::Arc::new(calls);
    let call_task = tokio::spawn(calls.clone().run(l_ep, l_gk, stop_rx.clone()));
    let ras_handle = ras.handle();
    let redundancy = start_redundancy(&cfg, fast.is_some())?;
    let metrics_task = if cfg.metrics.enabled {
        let reg = proxy_user::metrics::registry(
            status_rx.clone(),
            calls.stats.clone(),
            fast.is_some().then(|| cfg.instance.clone()),
            redundancy.clone(),
        );
        let addr = cfg.metrics.listen;
        let stop = stop_rx.clone();
        Some(tokio::spawn(async move {
            if let Err(e) = proxy_user::metrics::serve(addr, reg, stop).await {
                tracing::error!(%addr, error = %e, "metrics endpoint failed");
            }
        }))
    } else {
        None
    };
    let ras_task = tokio::spawn(ras.run(stop_rx, status_tx));
    let mut cfg = cfg;

    let interval = Duration::from_secs(cfg.fastpath.stats_interval_secs.max(1));
    let mut tick = tokio::time::interval(interval);
    tick.tick().await;
    tracing::info!(instance = %cfg.instance, "proxy running");
    let mut last_active: Option<Option<String>> = None;
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => {
                // Reload: a bad file leaves the running configuration alone.
                match Config::load(path.as_deref()) {
                    Err(e) => tracing::error!(error = %e, "reload refused; keeping the running configuration"),
                    Ok(new) => {
                        let restart = ras_handle.reconfigure(new.clone()).await.unwrap_or_default();
                        if new.fastpath != cfg.fastpath || new.instance != cfg.instance || new.metrics != cfg.metrics {
                            tracing::warn!("[fastpath], [metrics] and instance changes take effect at the next start");
                        }
                        // The call signalling relay reads these once, at start;
                        // the RAS relay's limits apply at once.
                        let (a, b) = (&new.limits, &cfg.limits);
                        if (a.connections_per_source_per_second, a.connections_per_source_burst, a.max_connections, a.max_connections_per_source, a.h245_listeners_per_call, a.max_sources)
                            != (b.connections_per_source_per_second, b.connections_per_source_burst, b.max_connections, b.max_connections_per_source, b.h245_listeners_per_call, b.max_sources)
                            || new.calls.unanchored != cfg.calls.unanchored
                        {
                            tracing::warn!("[limits] connection, H.245 and max_sources fields and [calls] unanchored take effect at the next start");
                        }
                        for f in &restart {
                            tracing::warn!(field = f, "changed field takes effect at the next start");
                        }
                        tracing::info!("configuration reloaded");
                        cfg = new;
                    }
                }
            }
            Ok(()) = status_rx.changed() => {
                let s = status_rx.borrow_and_update().clone();
                if last_active.as_ref() != Some(&s.active) {
                    tracing::info!(
                        control = s.active.as_deref().unwrap_or("survivable"),
                        registrations = s.registrations,
                        "control plane state"
                    );
                    last_active = Some(s.active);
                }
            }
            _ = tick.tick(), if cfg.fastpath.stats_interval_secs > 0 => {
                let s = status_rx.borrow().clone();
                tracing::info!(
                    control = s.active.as_deref().unwrap_or("survivable"),
                    registrations = s.registrations,
                    calls = s.calls,
                    keepalives_answered = s.stats.keepalives_answered,
                    forwarded = s.stats.forwarded,
                    local_answers = s.stats.local_answers,
                    failovers = s.stats.failovers,
                    malformed = s.stats.malformed,
                    refused = s.stats.refused,
                    readmitted = s.stats.readmitted,
                    unanchored = s.stats.unanchored,
                    over_budget = s.stats.over_budget,
                    outstanding_refused = s.stats.outstanding_refused,
                    "RAS counters"
                );
                let c = &calls.stats;
                let get = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
                tracing::info!(
                    setups = get(&c.setups),
                    active = get(&c.active),
                    kept_up = get(&c.kept_up),
                    reanchored = get(&c.reanchored),
                    spliced = get(&c.spliced),
                    reanchor_failed = get(&c.reanchor_failed),
                    unanchored = get(&c.unanchored),
                    media_lost = get(&c.media_lost),
                    relayed = get(&c.relayed),
                    keepalives_answered = get(&c.keepalives_answered),
                    malformed = get(&c.malformed),
                    unroutable = get(&c.unroutable),
                    refused_rate = get(&c.refused_rate),
                    refused_connections = get(&c.refused_connections),
                    refused_per_source = get(&c.refused_connections_per_source),
                    h245_refused = get(&c.h245_refused),
                    h245_strangers = get(&c.h245_strangers),
                    "call signalling counters"
                );
                if let Some(fp) = &fast {
                    match fp.counters() {
                        Ok(c) => tracing::info!(
                            ras = c.packets[packet_slot::RAS as usize],
                            other = c.packets.iter().sum::<u64>() - c.packets[packet_slot::RAS as usize],
                            keepalives_answered = c.answered(),
                            left_to_userspace = c.keepalive.iter().sum::<u64>() - c.answered(),
                            "fast-path counters"
                        ),
                        Err(e) => tracing::warn!(error = %e, "reading fast-path counters"),
                    }
                }
            }
        }
    }
    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
    let _ = ras_task.await;
    let _ = call_task.await;
    if let Some(t) = metrics_task {
        let _ = t.await;
    }
    if let Some(fp) = fast {
        if cfg.fastpath.keep_running_on_exit {
            tracing::info!(pins = %fp.pin_dir().display(), "XDP left running (keep_running_on_exit)");
            fp.leave_running();
        } else {
            fp.unpin().context("removing the pinned maps")?;
            tracing::info!("XDP detached, pins removed");
        }
    }
    Ok(())
}

/// Interfaces with a pinned link whose file name starts with `prefix`.
fn pinned_links(dir: &std::path::Path, prefix: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_string_lossy()
                .strip_prefix(prefix)
                .map(str::to_owned)
        })
        .collect()
}

fn switch(instance: &str, on: bool) -> Result<()> {
    let was = proxy_user::fastpath::set_answering(instance, on)
        .with_context(|| format!("switching the fast path of instance {instance:?}"))?;
    let word = |b: bool| if b { "on" } else { "off" };
    println!("kernel keepalive answering: {} -> {}", word(was), word(on));
    Ok(())
}

/// The counters as an aligned table.
fn render_counters(c: &Counters) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(s, "{:<28} {:>12}", "packet outcome", "packets");
    for (i, name) in packet_slot::NAMES.iter().enumerate() {
        let _ = writeln!(s, "{:<28} {:>12}", name, c.packets[i]);
    }
    let _ = writeln!(s, "\n{:<28} {:>12}", "keepalive fast path", "packets");
    for (i, name) in proxy_common::ka_slot::NAMES.iter().enumerate() {
        let _ = writeln!(
            s,
            "{:<28} {:>12}",
            name,
            c.keepalive.get(i).copied().unwrap_or(0)
        );
    }
    let _ = writeln!(s, "{:<28} {:>12}", "endpoints offloaded", c.endpoints);
    let _ = writeln!(
        s,
        "\n{:<28} {:>12} {:>12}",
        "RAS message", "packets", "bytes"
    );
    for (i, r) in c.ras.iter().enumerate() {
        if r.packets == 0 {
            continue;
        }
        let name = ras_slot_name(i as u32);
        let _ = writeln!(s, "{:<28} {:>12} {:>12}", name, r.packets, r.bytes);
    }
    s
}

fn ras_slot_name(slot: u32) -> &'static str {
    match slot {
        ras_slot::UNKNOWN_EXTENSION => "unknown extension",
        ras_slot::EMPTY => "empty datagram",
        ras_slot::MALFORMED => "malformed",
        s if s < RAS_ROOT_ALTERNATIVES + proxy_common::RAS_EXTENSION_ALTERNATIVES => {
            proxy_user::h225::ras::CHOICE_NAMES[s as usize]
        }
        _ => "?",
    }
}
