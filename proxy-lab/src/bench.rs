//! Control-plane benchmarks in the namespace lab (`cargo xtask bench`):
//! gatekeeper-loss detection and failover times over many runs, and how long
//! moving 10,000 registrations to the backup takes, against the same
//! registrations sent directly to the backup in the same run.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

use super::netns::Netns;
use super::process::{LabProc, metric, scrape};
use super::topology::{self, EP, GK1, GK2, Lab, PX_EP};
use proxy_user::h225::PROTOCOL_ID;
use proxy_user::h225::ras::{self, RasMessage};
use proxy_user::h225::value::{ras_from_json, transport_json};

/// Errors of a benchmark run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// Lab plumbing failed.
    #[error("lab: {0}")]
    Io(#[from] std::io::Error),
    /// A step did not happen in time.
    #[error("{0} did not happen within {1} s")]
    Timeout(&'static str, u64),
}

/// Paths of the binaries and a scratch directory.
#[derive(Clone, Debug)]
pub struct Bins {
    /// `h323-lab`.
    pub lab: PathBuf,
    /// `proxy`.
    pub proxy: PathBuf,
    /// Scratch directory for configs and logs.
    pub dir: PathBuf,
}

fn until(
    what: &'static str,
    secs: u64,
    mut f: impl FnMut() -> bool,
) -> Result<Duration, BenchError> {
    let t0 = Instant::now();
    while !f() {
        if t0.elapsed() > Duration::from_secs(secs) {
            return Err(BenchError::Timeout(what, secs));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(t0.elapsed())
}

fn gk(bins: &Bins, ns: &Netns, ip: std::net::Ipv4Addr, id: &str) -> Result<LabProc, BenchError> {
    gk_ttl(bins, ns, ip, id, None)
}

/// As [`gk`], granting `ttl` seconds (the lab gatekeeper's default when
/// `None`).
fn gk_ttl(
    bins: &Bins,
    ns: &Netns,
    ip: std::net::Ipv4Addr,
    id: &str,
    ttl: Option<u32>,
) -> Result<LabProc, BenchError> {
    let mut c = ns.command(&bins.lab)?;
    c.args(["gatekeeper", "--ras", &format!("{ip}:1719"), "--id", id]);
    if let Some(t) = ttl {
        c.args(["--ttl", &t.to_string()]);
    }
    c.stderr(std::process::Stdio::null());
    let p = LabProc::spawn(id, c)?;
    until("gatekeeper start", 10, || p.last("gk listening").is_some())?;
    Ok(p)
}

fn proxy(
    bins: &Bins,
    lab: &Lab,
    hold_ms: u64,
    rate: u32,
    tag: &str,
) -> Result<LabProc, BenchError> {
    proxy_with(bins, lab, hold_ms, rate, tag, (40, 3))
}

/// As [`proxy`], with the heartbeat (interval ms, multiplier).
fn proxy_with(
    bins: &Bins,
    lab: &Lab,
    hold_ms: u64,
    rate: u32,
    tag: &str,
    heartbeat: (u64, u32),
) -> Result<LabProc, BenchError> {
    let cfg = bins.dir.join(format!("proxy-{tag}.toml"));
    let text = topology::proxy_toml(&super::netns::unique_name("b"), hold_ms, None)
        .replace(
            "interval_ms = 40",
            &format!("interval_ms = {}", heartbeat.0),
        )
        .replace("multiplier = 3", &format!("multiplier = {}", heartbeat.1))
        .replace(
            "[survivable]",
            &format!("[survivable]\nreregister_per_second = {rate}"),
        )
        .replace("stats_interval_secs = 1", "stats_interval_secs = 60");
    std::fs::write(&cfg, text)?;
    let mut c = lab.px.command(&bins.proxy)?;
    c.args(["run", "--config"]).arg(&cfg).env("NO_COLOR", "1");
    c.stderr(std::fs::File::create(
        bins.dir.join(format!("proxy-{tag}.log")),
    )?);
    Ok(LabProc::spawn("proxy", c)?)
}

fn m(lab: &Lab, sample: &str) -> Option<f64> {
    scrape(&lab.px, "127.0.0.1:9719")
        .ok()
        .and_then(|t| metric(&t, sample))
}

/// One failover measurement.
#[derive(Clone, Copy, Debug)]
pub struct FailoverRun {
    /// SIGKILL of the primary → control at the backup.
    pub detection: Duration,
    /// SIGKILL → every endpoint registered at the backup.
    pub failover: Duration,
}

/// How the primary is lost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loss {
    /// SIGKILL of the gatekeeper process: its host answers the next probe
    /// with ICMP port unreachable.
    Kill,
    /// `ip link set down` on the proxy's link to it: silence, detected by
    /// the heartbeat (interval x multiplier).
    LinkDown,
}

/// Lose the primary `runs` times with `endpoints` registered, measuring
/// detection and failover; the primary is restored and control returns
/// (hold time 300 ms) between runs.
pub fn failover_runs(
    bins: &Bins,
    runs: usize,
    endpoints: usize,
    loss: Loss,
) -> Result<Vec<FailoverRun>, BenchError> {
    let lab = Lab::create()?;
    let mut gk1 = gk(bins, &lab.gk1, GK1, "GK-A")?;
    let _gk2 = gk(bins, &lab.gk2, GK2, "GK-B")?;
    let _px = proxy(bins, &lab, 300, 1000, "failover")?;
    until("proxy takes the primary", 20, || {
        m(&lab, "h323proxy_control{gatekeeper=\"primary\"}") == Some(1.0)
    })?;
    let ok = register(&lab.ep, endpoints, 31000, SocketAddr::from((PX_EP, 1719)))?;
    assert_eq!(ok.0, endpoints, "all bench endpoints registered");
    let n = endpoints as f64;
    let mut out = Vec::new();
    for _ in 0..runs {
        until("registrations at the primary", 20, || {
            m(&lab, "h323proxy_control{gatekeeper=\"primary\"}") == Some(1.0)
                && m(
                    &lab,
                    "h323proxy_gatekeeper_registrations{gatekeeper=\"primary\"}",
                ) == Some(n)
        })?;
        // Let a few heartbeats pass so the kill lands at a random phase.
        std::thread::sleep(Duration::from_millis(100 + (out.len() as u64 * 7) % 40));
        let t0 = Instant::now();
        match loss {
            Loss::Kill => gk1.kill9(),
            Loss::LinkDown => lab.px.ip(&["link", "set", "px1", "down"])?,
        }
        until("failover detection", 10, || {
            m(&lab, "h323proxy_control{gatekeeper=\"backup\"}") == Some(1.0)
        })?;
        let detection = t0.elapsed();
        until("re-registration at the backup", 10, || {
            m(
                &lab,
                "h323proxy_gatekeeper_registrations{gatekeeper=\"backup\"}",
            ) == Some(n)
        })?;
        let failover = t0.elapsed();
        out.push(FailoverRun {
            detection,
            failover,
        });
        match loss {
            Loss::Kill => gk1 = gk(bins, &lab.gk1, GK1, "GK-A")?,
            Loss::LinkDown => lab.px.ip(&["link", "set", "px1", "up"])?,
        }
    }
    Ok(out)
}

/// Moving `n` registrations to the backup after the primary's loss, at
/// `rate` RRQs per second, and the baseline: the same number of endpoints
/// registering directly at the backup, as fast as it answers.
pub fn mass_reregistration(
    bins: &Bins,
    n: usize,
    rate: u32,
) -> Result<(Duration, Duration), BenchError> {
    let lab = Lab::create()?;
    let mut gk1 = gk(bins, &lab.gk1, GK1, "GK-A")?;
    let _gk2 = gk(bins, &lab.gk2, GK2, "GK-B")?;
    let _px = proxy(bins, &lab, 300, rate, &format!("mass{rate}"))?;
    until("proxy takes the primary", 20, || {
        m(&lab, "h323proxy_control{gatekeeper=\"primary\"}") == Some(1.0)
    })?;
    let (ok, _) = register(&lab.ep, n, 20000, SocketAddr::from((PX_EP, 1719)))?;
    if ok != n {
        return Err(BenchError::Timeout(
            "initial registration of every bench endpoint",
            120,
        ));
    }
    let nf = n as f64;
    until("registrations at the primary", 60, || {
        m(
            &lab,
            "h323proxy_gatekeeper_registrations{gatekeeper=\"primary\"}",
        ) == Some(nf)
    })?;
    let t0 = Instant::now();
    gk1.kill9();
    until(
        "re-registration of every endpoint at the backup",
        300,
        || {
            m(
                &lab,
                "h323proxy_gatekeeper_registrations{gatekeeper=\"backup\"}",
            ) == Some(nf)
        },
    )?;
    let moved = t0.elapsed();
    // Baseline: the same number of new endpoints straight to the backup.
    let (ok, direct) = register(&lab.ep, n, 40000, SocketAddr::from((GK2, 1719)))?;
    if ok != n {
        return Err(BenchError::Timeout(
            "direct registration of every endpoint",
            120,
        ));
    }
    Ok((moved, direct))
}

/// With `endpoints` registered through one proxy at GnuGk (routed mode,
/// the proxy's default heartbeat), SIGKILL the primary `runs` times and
/// time until the backup's status port lists every one of them; the
/// primary is restarted and control returns between runs. Baseline, in the
/// same run: as many new endpoints registering directly at the backup
/// until it lists them. Returns (per-run times, baseline).
pub fn gnugk_failover_runs(
    bins: &Bins,
    peers: &std::path::Path,
    runs: usize,
    endpoints: usize,
    heartbeat: (u64, u32),
) -> Result<(Vec<Duration>, Duration, u64), BenchError> {
    use super::peers::{GnuGk, Routing};
    let lab = Lab::create()?;
    // The bench endpoints register once and send no keepalives: with the
    // tests' 60 s timeToLive the proxy expires them (1.5 x 60 s) before ten
    // kill-and-return cycles are over, and the primary never lists them
    // all again. Ten minutes outlasts the run.
    let start =
        |ns: &Netns, ip, name| GnuGk::start_with_ttl(peers, ns, ip, name, Routing::Routed, 600);
    let mut gk1 = start(&lab.gk1, GK1, "GK1")?;
    let gk2 = start(&lab.gk2, GK2, "GK2")?;
    // Default pacing of re-registration (1000/s): an unpaced burst of
    // 1000 RRQs makes GnuGk answer the heartbeat late.
    let _px = proxy_with(bins, &lab, 300, 1000, "gnugk", heartbeat)?;
    until("proxy takes the primary", 20, || {
        m(&lab, "h323proxy_control{gatekeeper=\"primary\"}") == Some(1.0)
    })?;
    // 32 in flight: a burst of hundreds delays GnuGk's answers past the
    // default heartbeat's 120 ms (seen: false failovers while registering).
    let (ok, _) = register_with(
        &lab.ep,
        endpoints,
        31000,
        SocketAddr::from((PX_EP, 1719)),
        32,
    )?;
    if ok != endpoints {
        eprintln!("{ok} of {endpoints} endpoints registered through the proxy at GnuGk");
        return Err(BenchError::Timeout(
            "registration of every bench endpoint",
            120,
        ));
    }
    // The proxy's own registration is listed too.
    let all = endpoints + 1;
    let mut out = Vec::new();
    for _ in 0..runs {
        until("every endpoint listed at the primary", 60, || {
            m(&lab, "h323proxy_control{gatekeeper=\"primary\"}") == Some(1.0)
                && gk1.count().unwrap_or(0) >= all
        })?;
        std::thread::sleep(Duration::from_millis(100 + (out.len() as u64 * 7) % 40));
        let t0 = Instant::now();
        gk1.proc.kill9();
        until("the backup lists every endpoint", 60, || {
            gk2.count().unwrap_or(0) >= all
        })?;
        out.push(t0.elapsed());
        gk1 = start(&lab.gk1, GK1, "GK1")?;
    }
    // Baseline: new endpoints straight to the backup, until it lists them.
    let before = gk2.count().unwrap_or(0);
    let t0 = Instant::now();
    let (ok, _) = register_with(&lab.ep, endpoints, 40000, SocketAddr::from((GK2, 1719)), 32)?;
    if ok != endpoints {
        return Err(BenchError::Timeout("direct registration at GnuGk", 120));
    }
    until("the backup lists the direct endpoints", 60, || {
        gk2.count().unwrap_or(0) >= before + endpoints
    })?;
    let failovers = m(&lab, "h323proxy_failovers_total").unwrap_or(0.0) as u64;
    Ok((out, t0.elapsed(), failovers))
}

/// What [`gnugk_call_takeover`] saw.
#[derive(Clone, Debug)]
pub struct TakeoverRun {
    /// Per SIGKILL: until the gatekeeper that took the calls lists all.
    pub all_listed: Vec<Duration>,
    /// Every call of every SIGKILL: until that call was listed there.
    pub per_call: Vec<Duration>,
    /// Baseline, same run: the same calls set up through the proxy at the
    /// primary, from the end of registration until it lists them all.
    pub setup_all: Duration,
    /// Calls the proxy counted as not taken over in time (expected 0).
    pub unanchored: u64,
}

/// The calls a GnuGk lists by dialled number, polled until it lists
/// `want` of them or `secs` pass: when each number was first seen, from `t0`.
fn first_listed(
    gk: &super::peers::GnuGk,
    want: usize,
    secs: u64,
    t0: Instant,
) -> Result<Vec<Duration>, BenchError> {
    let mut seen: std::collections::HashMap<String, Duration> = Default::default();
    until("the gatekeeper lists every call", secs, || {
        if let Ok(calls) = gk.call_list() {
            let at = t0.elapsed();
            for (_, dial) in calls {
                seen.entry(dial).or_insert(at);
            }
        }
        seen.len() >= want
    })?;
    Ok(seen.into_values().collect())
}

/// `calls` gatekeeper-routed calls between lab endpoints through one proxy
/// at GnuGk (primary and backup, routed mode). `runs` times, the
/// gatekeeper holding the calls is SIGKILLed and restarted: the primary in
/// control (the calls go with control to the backup), then the backup
/// holding them while control is back at the primary (they go to the
/// primary at once), alternately. Each time: until the gatekeeper that
/// takes them lists every call, and when each call appears there.
pub fn gnugk_call_takeover(
    bins: &Bins,
    peers: &std::path::Path,
    calls: usize,
    runs: usize,
) -> Result<TakeoverRun, BenchError> {
    use super::peers::{GnuGk, Routing};
    let lab = Lab::create()?;
    let start =
        |ns: &Netns, ip, name| GnuGk::start_with_ttl(peers, ns, ip, name, Routing::Routed, 600);
    let mut gks = [start(&lab.gk1, GK1, "GK1")?, start(&lab.gk2, GK2, "GK2")?];
    let _px = proxy_with(bins, &lab, 300, 1000, "takeover", (40, 3))?;
    until("proxy takes the primary", 20, || {
        m(&lab, "h323proxy_control{gatekeeper=\"primary\"}") == Some(1.0)
    })?;
    let n = 2 * calls;
    let mut c = lab.ep.command(&bins.lab)?;
    c.args(["endpoints", "--gatekeeper", &format!("{PX_EP}:1719")])
        .args(["--ip", &EP.to_string(), "--count", &n.to_string()])
        .args(["--pairs", &calls.to_string(), "--ttl", "600"])
        .args(["--keepalive-ms", "20000", "--status-enquiry-ms", "20000"])
        .args(["--report-ms", "200"])
        .stderr(std::process::Stdio::null());
    let eps = LabProc::spawn("endpoints", c)?;
    // The endpoints place their calls right after the line that shows
    // them all registered.
    let registered = |l: &str| super::process::field(l, "registered") == Some(n as u64);
    until("every lab endpoint registered", 120, || {
        eps.wait_for(0, "eps registered", registered).is_some()
    })?;
    let t0 = Instant::now();
    first_listed(&gks[0], calls, 120, t0)?;
    let setup_all = t0.elapsed();
    until("every call up at the endpoints", 60, || {
        eps.wait_for(0, "eps registered", |l| {
            super::process::field(l, "calls_active") == Some(n as u64)
        })
        .is_some()
    })?;
    let mut out = TakeoverRun {
        all_listed: Vec::new(),
        per_call: Vec::new(),
        setup_all,
        unanchored: 0,
    };
    for run in 0..runs {
        // Control at the primary with every endpoint registered there and
        // both gatekeepers up; the calls at `victim`.
        until("control at the primary, both gatekeepers up", 60, || {
            m(&lab, "h323proxy_control{gatekeeper=\"primary\"}") == Some(1.0)
                && m(
                    &lab,
                    "h323proxy_gatekeeper_state{gatekeeper=\"backup\",state=\"up\"}",
                ) == Some(1.0)
                && gks[0].count().unwrap_or(0) > n
        })?;
        let victim = run % 2;
        until("the calls at the gatekeeper about to die", 60, || {
            gks[victim].calls().unwrap_or(0) >= calls
        })?;
        std::thread::sleep(Duration::from_millis(200 + (run as u64 * 7) % 40));
        let t0 = Instant::now();
        gks[victim].proc.kill9();
        let per = first_listed(&gks[1 - victim], calls, 60, t0)?;
        out.all_listed
            .push(per.iter().copied().max().unwrap_or_default());
        out.per_call.extend(per);
        let (ns, ip, name) = if victim == 0 {
            (&lab.gk1, GK1, "GK1")
        } else {
            (&lab.gk2, GK2, "GK2")
        };
        gks[victim] = start(ns, ip, name)?;
    }
    let active = eps
        .last("eps registered")
        .and_then(|l| super::process::field(&l, "calls_active"))
        .unwrap_or(0);
    if active != n as u64 {
        eprintln!("takeover bench: {active} of {n} call legs still up at the end");
    }
    out.unanchored = m(
        &lab,
        "h323proxy_calls_handed_over_total{step=\"unanchored\"}",
    )
    .unwrap_or(0.0) as u64;
    Ok(out)
}

/// What [`gnugk_scale`] saw.
#[derive(Clone, Debug, Default)]
pub struct ScaleRun {
    /// Endpoints asked to register.
    pub endpoints: usize,
    /// Source addresses they registered from.
    pub sources: usize,
    /// RCFs they got through the proxy.
    pub confirmed: usize,
    /// GnuGk's "Total Endpoints" then (the proxy's own registration too).
    pub listed: usize,
    /// First RRQ → GnuGk lists them all, through the proxy.
    pub through_proxy: Duration,
    /// The same number registering directly at the second GnuGk until it
    /// lists them (baseline).
    pub direct: Duration,
    /// Proxy resident memory before and after the registrations, bytes.
    pub proxy_rss: (u64, u64),
    /// Control moves in the run (a false failover and its return is 2).
    pub moves: u64,
    /// The `[gatekeeper_side]` ranges the proxy ran with.
    pub ranges: String,
}

fn rss_of(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))?
                .split_whitespace()
                .next()?
                .parse::<u64>()
                .ok()
        })
        .unwrap_or(0)
        * 1024
}

/// Spread `n` endpoints over `ceil(n / per_addr)` addresses: as many
/// gatekeeper-side addresses 198.18.2.2.. on the proxy's primary link (the
/// `[gatekeeper_side]` section returned, ports from 2000) and endpoint
/// source addresses 198.18.1.2.. on the endpoint host.
fn spread(
    lab: &Lab,
    n: usize,
    per_addr: usize,
) -> Result<(Vec<std::net::Ipv4Addr>, String), BenchError> {
    let per_addr = per_addr.clamp(1, 30_000);
    let addrs = n
        .div_ceil(per_addr)
        .clamp(1, proxy_common::GK_SIDE_MAX_ADDRS);
    let gk_side: Vec<std::net::Ipv4Addr> = (0..addrs)
        .map(|i| std::net::Ipv4Addr::new(198, 18, 2, 2 + i as u8))
        .collect();
    let sources: Vec<std::net::Ipv4Addr> = (0..addrs)
        .map(|i| std::net::Ipv4Addr::new(198, 18, 1, 2 + i as u8))
        .collect();
    for a in &gk_side {
        lab.px
            .ip(&["addr", "add", &format!("{a}/24"), "dev", "px1"])?;
    }
    for a in sources.iter().skip(1) {
        lab.ep
            .ip(&["addr", "add", &format!("{a}/24"), "dev", "ep0"])?;
    }
    let ranges = format!(
        "addresses = [{}]\nports = \"2000-{}\"",
        gk_side
            .iter()
            .map(|a| format!("\"{a}\""))
            .collect::<Vec<_>>()
            .join(", "),
        2000 + per_addr - 1
    );
    Ok((sources, ranges))
}

/// A proxy with the `[gatekeeper_side]` `ranges` (see [`spread`]),
/// default heartbeat and re-registration pace.
fn scale_proxy(bins: &Bins, lab: &Lab, ranges: &str, tag: &str) -> Result<LabProc, BenchError> {
    let cfg = bins.dir.join(format!("proxy-{tag}.toml"));
    let text = topology::proxy_toml(&super::netns::unique_name("b"), 5000, None)
        .replace("stats_interval_secs = 1", "stats_interval_secs = 60")
        + &format!("[gatekeeper_side]\n{ranges}\n");
    std::fs::write(&cfg, text)?;
    let mut c = lab.px.command(&bins.proxy)?;
    c.args(["run", "--config"]).arg(&cfg).env("NO_COLOR", "1");
    c.stderr(std::fs::File::create(
        bins.dir.join(format!("proxy-{tag}.log")),
    )?);
    Ok(LabProc::spawn("proxy", c)?)
}

/// The common start of the scale runs: a proxy with `ranges` takes the
/// primary, then `n` endpoints from `sources` register through it (asking
/// for 3600 s). Returns the proxy, its resident memory before, when the
/// registrations started and how many got an RCF.
fn register_through_proxy(
    bins: &Bins,
    lab: &Lab,
    ranges: &str,
    tag: &str,
    sources: &[std::net::Ipv4Addr],
    n: usize,
    in_flight: usize,
) -> Result<(LabProc, u64, Instant, usize), BenchError> {
    let px = scale_proxy(bins, lab, ranges, tag)?;
    until("proxy takes the primary", 20, || {
        m(lab, "h323proxy_control{gatekeeper=\"primary\"}") == Some(1.0)
    })?;
    let rss0 = rss_of(px.pid());
    let t0 = Instant::now();
    let (confirmed, _) = register_from(
        &lab.ep,
        sources,
        n,
        20000,
        SocketAddr::from((PX_EP, 1719)),
        in_flight,
        3600,
    )?;
    Ok((px, rss0, t0, confirmed))
}

/// `endpoints` registered through one proxy at GnuGk, each with its own
/// gatekeeper-side address, `per_addr` per address (see [`spread`]). Both GnuGks run with `TimeToLive` 3600
/// (the proxy refreshes every binding within it; a 60 s one would cost
/// GnuGk 1,700 lightweight RRQs a second at this size). Baseline in the
/// same run: as many endpoints registering directly at the second GnuGk.
pub fn gnugk_scale(
    bins: &Bins,
    peers: &std::path::Path,
    endpoints: usize,
    per_addr: usize,
    in_flight: usize,
) -> Result<ScaleRun, BenchError> {
    use super::peers::{GnuGk, Routing};
    let lab = Lab::create()?;
    let (sources, ranges) = spread(&lab, endpoints, per_addr)?;
    let gk1 = GnuGk::start_with_ttl(peers, &lab.gk1, GK1, "GK1", Routing::Routed, 3600)?;
    let gk2 = GnuGk::start_with_ttl(peers, &lab.gk2, GK2, "GK2", Routing::Routed, 3600)?;
    let (px, rss0, t0, confirmed) =
        register_through_proxy(bins, &lab, &ranges, "scale", &sources, endpoints, in_flight)?;
    let all = confirmed + 1;
    // Bounded: the registrations are done; GnuGk only has to count them.
    until("GnuGk lists every endpoint of the proxy", 60, || {
        gk1.total().unwrap_or(0) >= all
    })?;
    let through_proxy = t0.elapsed();
    let listed = gk1.total().unwrap_or(0);
    let rss1 = rss_of(px.pid());
    let moves = m(&lab, "h323proxy_failovers_total").unwrap_or(0.0) as u64;
    let before = gk2.total().unwrap_or(0);
    let t0 = Instant::now();
    let (ok, _) = register_from(
        &lab.ep,
        &sources,
        endpoints,
        20000,
        SocketAddr::from((GK2, 1719)),
        in_flight,
        3600,
    )?;
    until("the second GnuGk lists the direct endpoints", 60, || {
        gk2.total().unwrap_or(0) >= before + ok
    })?;
    let direct = t0.elapsed();
    if ok != endpoints {
        eprintln!("baseline: {ok} of {endpoints} endpoints registered directly");
    }
    Ok(ScaleRun {
        endpoints,
        sources: sources.len(),
        confirmed,
        listed,
        through_proxy,
        direct,
        proxy_rss: (rss0, rss1),
        moves,
        ranges: ranges.replace('\n', ", "),
    })
}

/// What [`lab_scale`] saw.
#[derive(Clone, Debug, Default)]
pub struct LabScaleRun {
    /// Endpoints registered through the proxy (RCFs).
    pub confirmed: usize,
    /// Source addresses they came from, and the `[gatekeeper_side]`.
    pub sources: usize,
    /// See `sources`.
    pub ranges: String,
    /// First RRQ → the proxy holds them all at the primary.
    pub registered_in: Duration,
    /// Distinct call signalling addresses the primary saw, and full RRQs
    /// not sent from the rasAddress they carry.
    pub primary_addrs: (u64, u64),
    /// Primary SIGKILL → every endpoint registered at the backup.
    pub moved_in: Duration,
    /// As `primary_addrs`, at the backup.
    pub backup_addrs: (u64, u64),
    /// Baseline: the same number registering directly at the backup.
    pub direct: Duration,
    /// Proxy resident memory before and after registering, bytes.
    pub proxy_rss: (u64, u64),
}

fn gk_field(p: &LabProc, key: &str) -> u64 {
    p.last("gk registrations=")
        .and_then(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
        })
        .unwrap_or(0)
}

/// `n` endpoints (100,000 and more) through one proxy at the lab
/// gatekeepers, each with its own gatekeeper-side address (`per_addr` per
/// address, see [`spread`]); then the primary is SIGKILLed and all of them
/// move to the backup at the default pace (1,000 RRQs/s). The lab
/// gatekeeper counts the distinct call signalling addresses it was given
/// and the RRQs that did not come from their rasAddress. Baseline: the
/// same number registering directly at the backup.
pub fn lab_scale(bins: &Bins, n: usize, per_addr: usize) -> Result<LabScaleRun, BenchError> {
    let lab = Lab::create()?;
    let (sources, ranges) = spread(&lab, n, per_addr)?;
    // A long timeToLive: the bench endpoints send no keepalives while
    // 100,000 move at 1,000/s.
    let mut gk1 = gk_ttl(bins, &lab.gk1, GK1, "GK-A", Some(3600))?;
    let gk2 = gk_ttl(bins, &lab.gk2, GK2, "GK-B", Some(3600))?;
    let (px, rss0, t0, confirmed) =
        register_through_proxy(bins, &lab, &ranges, "labscale", &sources, n, 512)?;
    let nf = confirmed as f64;
    until("registrations at the primary", 60, || {
        m(
            &lab,
            "h323proxy_gatekeeper_registrations{gatekeeper=\"primary\"}",
        ) == Some(nf)
    })?;
    let registered_in = t0.elapsed();
    let rss1 = rss_of(px.pid());
    let primary_addrs = (
        gk_field(&gk1, "signal_addrs"),
        gk_field(&gk1, "not_from_ras"),
    );
    let t0 = Instant::now();
    gk1.kill9();
    until("every endpoint registered at the backup", 600, || {
        m(
            &lab,
            "h323proxy_gatekeeper_registrations{gatekeeper=\"backup\"}",
        ) == Some(nf)
    })?;
    let moved_in = t0.elapsed();
    let backup_addrs = (
        gk_field(&gk2, "signal_addrs"),
        gk_field(&gk2, "not_from_ras"),
    );
    // Baseline: new endpoints (ports above the first set) straight to the
    // backup.
    let (ok, direct) = register_from(
        &lab.ep,
        &sources,
        n,
        20000,
        SocketAddr::from((GK2, 1719)),
        512,
        3600,
    )?;
    if ok != n {
        eprintln!("baseline: {ok} of {n} endpoints registered directly at the backup");
    }
    Ok(LabScaleRun {
        confirmed,
        sources: sources.len(),
        ranges: ranges.replace('\n', ", "),
        registered_in,
        primary_addrs,
        moved_in,
        backup_addrs,
        direct,
        proxy_rss: (rss0, rss1),
    })
}

/// One row of [`gnugk_lossy_link`].
#[derive(Clone, Debug)]
pub struct LossyRow {
    /// The impairment, each way.
    pub link: super::link_sim::Link,
    /// How long it was held.
    pub held: Duration,
    /// Packets through the impaired interface, and those dropped.
    pub stats: super::impair::ImpairStats,
    /// Control moves while it was held (each is a false failover or a
    /// return from one: the primary never failed).
    pub moves: u64,
    /// Whether the primary was in control when it ended.
    pub primary_at_end: bool,
}

/// GnuGk primary and backup, `endpoints` registered through one proxy at
/// its default heartbeat (40 ms × 3); then each of `links` in turn on the
/// primary's interface (both ways, through NFQUEUE: see `lab::impair`) for
/// `hold`, counting control moves. The primary never fails.
pub fn gnugk_lossy_link(
    bins: &Bins,
    peers: &std::path::Path,
    endpoints: usize,
    links: &[super::link_sim::Link],
    hold: Duration,
) -> Result<Vec<LossyRow>, BenchError> {
    use super::impair::Impairment;
    use super::peers::{GnuGk, Routing};
    let lab = Lab::create()?;
    let _gk1 = GnuGk::start(peers, &lab.gk1, GK1, "GK1", Routing::Routed, "")?;
    let _gk2 = GnuGk::start(peers, &lab.gk2, GK2, "GK2", Routing::Routed, "")?;
    let _px = proxy_with(bins, &lab, 5000, 1000, "lossy", (40, 3))?;
    let primary = || m(&lab, "h323proxy_control{gatekeeper=\"primary\"}") == Some(1.0);
    until("proxy takes the primary", 20, primary)?;
    let (ok, _) = register_with(
        &lab.ep,
        endpoints,
        31000,
        SocketAddr::from((PX_EP, 1719)),
        8,
    )?;
    if ok != endpoints {
        return Err(BenchError::Timeout("registration through the proxy", 120));
    }
    let mut rows = Vec::new();
    for (i, link) in links.iter().enumerate() {
        // Start each row from the primary, after the failback hold.
        until("primary in control before the row", 30, primary)?;
        let before = m(&lab, "h323proxy_failovers_total").unwrap_or(0.0) as u64;
        let imp = Impairment::start(&lab.gk1, "gk0", 0, *link, 0x10551 + i as u64)?;
        std::thread::sleep(hold);
        let stats = imp.stop()?;
        let moves =
            (m(&lab, "h323proxy_failovers_total").unwrap_or(0.0) as u64).saturating_sub(before);
        rows.push(LossyRow {
            link: *link,
            held: hold,
            stats,
            moves,
            primary_at_end: primary(),
        });
    }
    Ok(rows)
}

/// One row of [`gnugk_proxy_load`].
#[derive(Clone, Debug, Default)]
pub struct LoadRow {
    /// Proxies simulated.
    pub proxies: usize,
    /// Of them, registered at GnuGk.
    pub registered: usize,
    /// Probes sent and answered per second, all proxies together.
    pub probes_per_sec: f64,
    /// Answered share of the probes.
    pub answered: f64,
    /// Answer round trip p50 / p99.
    pub rtt_p50: Duration,
    /// See `rtt_p50`.
    pub rtt_p99: Duration,
    /// Detectors that called GnuGk down (it never failed).
    pub false_downs: u64,
    /// GnuGk's CPU use over the row, percent of one core.
    pub gk_cpu: f64,
}

fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are
    // the 14th and 15th fields overall.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// How many proxies one GnuGk carries at the default heartbeat: for each
/// count in `counts`, that many proxies' heartbeats (the proxy's own
/// [`Heartbeat`](proxy_user::gatekeeper::Heartbeat) detector, each on its own
/// registration and RAS port, probing with lightweight RRQs on silence)
/// run against one GnuGk for `hold`. A proxy is simulated, its detector is
/// not: what it calls down is what a proxy would fail over from. Stops
/// after the first count with a false down.
pub fn gnugk_proxy_load(
    peers: &std::path::Path,
    counts: &[usize],
    hold: Duration,
) -> Result<Vec<LoadRow>, BenchError> {
    use super::peers::{GnuGk, Routing};
    let lab = Lab::create()?;
    let gk = GnuGk::start(peers, &lab.gk1, GK1, "GK1", Routing::Routed, "")?;
    let pid = gk.proc.pid();
    let mut rows = Vec::new();
    for &n in counts {
        let t0 = cpu_ticks(pid);
        let started = Instant::now();
        let mut row = lab.px.run(move || heartbeat_load(n, hold))??;
        let wall = started.elapsed().as_secs_f64();
        if let (Some(a), Some(b)) = (t0, cpu_ticks(pid)) {
            // SAFETY: sysconf has no preconditions.
            let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
            row.gk_cpu = (b - a) as f64 / hz / wall * 100.0;
        }
        let stop = row.false_downs > 0;
        rows.push(row);
        if stop {
            break;
        }
    }
    Ok(rows)
}

fn heartbeat_load(n: usize, hold: Duration) -> std::io::Result<LoadRow> {
    use proxy_user::gatekeeper::{Health, Heartbeat, HeartbeatConfig};
    use proxy_user::h225::value::bmp_text;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let target = SocketAddr::from((GK1, 1719));
        let sem = Arc::new(tokio::sync::Semaphore::new(32));
        // Phase 1: register every proxy (as GnuGk sees a proxy: a gateway).
        let mut regs = Vec::new();
        for i in 0..n {
            let sem = sem.clone();
            regs.push(tokio::spawn(async move {
                let _permit = sem.acquire_owned().await.ok()?;
                let local = SocketAddr::from((topology::PX_GK, 40000 + i as u16));
                let sock = tokio::net::UdpSocket::bind(local).await.ok()?;
                let v = json!({"registrationRequest": {"requestSeqNum": 1, "protocolIdentifier": PROTOCOL_ID,
                    "discoveryComplete": false, "callSignalAddress": [transport_json(local)],
                    "rasAddress": [transport_json(local)],
                    "terminalType": {"gateway": {}, "mc": false, "undefinedNode": false},
                    "terminalAlias": [{"h323-ID": format!("loadproxy{i}")}],
                    "endpointVendor": {"vendor": {"t35CountryCode": 181, "t35Extension": 0, "manufacturerCode": 18}},
                    "timeToLive": 600, "keepAlive": false}});
                let bytes = ras_from_json(&v).and_then(|m| ras::encode(&m)).ok()?;
                let mut buf = [0u8; 2048];
                for _ in 0..10 {
                    let _ = sock.send_to(&bytes, target).await;
                    if let Ok(Ok((len, _))) =
                        tokio::time::timeout(Duration::from_millis(1000), sock.recv_from(&mut buf)).await
                        && let Ok(RasMessage::registrationConfirm(rcf)) = ras::decode(&buf[..len])
                    {
                        let ep = bmp_text(&rcf.endpoint_identifier.0);
                        let gk = rcf.gatekeeper_identifier.as_ref().map(|g| bmp_text(&g.0));
                        return Some((sock, local, ep, gk));
                    }
                }
                None
            }));
        }
        let mut socks = Vec::new();
        for r in regs {
            if let Ok(Some(x)) = r.await {
                socks.push(x);
            }
        }
        let registered = socks.len();
        // Phase 2: every proxy's heartbeat for `hold`, phases spread over
        // one interval.
        let cfg = HeartbeatConfig {
            interval: Duration::from_millis(40),
            multiplier: 3,
        };
        let t_start = Instant::now() + Duration::from_millis(200);
        let end = t_start + hold;
        let mut tasks = Vec::new();
        for (k, (sock, local, ep, gkid)) in socks.into_iter().enumerate() {
            let offset = cfg.interval * k as u32 / registered.max(1) as u32;
            tasks.push(tokio::spawn(async move {
                tokio::time::sleep_until((t_start + offset).into()).await;
                let mut hb = Heartbeat::new(cfg, Instant::now());
                let mut sent: std::collections::HashMap<u16, Instant> = Default::default();
                let mut seq: u16 = 1;
                let (mut probes, mut answers, mut downs) = (0u64, 0u64, 0u64);
                let mut rtts = Vec::new();
                let mut was = Health::Up;
                let mut buf = [0u8; 2048];
                loop {
                    let wake = hb.poll_timeout().min(end);
                    tokio::select! {
                        _ = tokio::time::sleep_until(wake.into()) => {
                            let now = Instant::now();
                            if now >= end { break; }
                            if hb.handle_timeout(now) {
                                seq = seq.wrapping_add(1).max(2);
                                let mut body = json!({"requestSeqNum": seq, "protocolIdentifier": PROTOCOL_ID,
                                    "discoveryComplete": false, "callSignalAddress": [],
                                    "rasAddress": [transport_json(local)],
                                    "terminalType": {"gateway": {}, "mc": false, "undefinedNode": false},
                                    "endpointVendor": {"vendor": {"t35CountryCode": 181, "t35Extension": 0, "manufacturerCode": 18}},
                                    "timeToLive": 600, "keepAlive": true, "endpointIdentifier": ep});
                                if let Some(g) = &gkid {
                                    body["gatekeeperIdentifier"] = json!(g);
                                }
                                if let Ok(b) = ras_from_json(&json!({"registrationRequest": body})).and_then(|m| ras::encode(&m)) {
                                    let _ = sock.send_to(&b, target).await;
                                    sent.insert(seq, now);
                                    probes += 1;
                                }
                            }
                        }
                        r = sock.recv_from(&mut buf) => {
                            let now = Instant::now();
                            let Ok((len, _)) = r else { continue };
                            let s = match ras::decode(&buf[..len]) {
                                Ok(RasMessage::registrationConfirm(c)) => Some(c.request_seq_num.0),
                                Ok(RasMessage::registrationReject(c)) => Some(c.request_seq_num.0),
                                _ => None,
                            };
                            if let Some(at) = s.and_then(|s| sent.remove(&s)) {
                                answers += 1;
                                rtts.push(now - at);
                                hb.rtt_sample(now - at);
                            }
                            hb.handle_reply(now);
                        }
                    }
                    let h = hb.health();
                    if h == Health::Down && was != Health::Down {
                        downs += 1;
                    }
                    was = h;
                    // Forget probes older than any timeout.
                    if sent.len() > 64 {
                        sent.retain(|_, t| now_since(*t) < Duration::from_secs(2));
                    }
                }
                (probes, answers, downs, rtts)
            }));
        }
        let mut row = LoadRow {
            proxies: n,
            registered,
            ..LoadRow::default()
        };
        let (mut probes, mut answers) = (0u64, 0u64);
        let mut rtts = Vec::new();
        for t in tasks {
            if let Ok((p, a, d, r)) = t.await {
                probes += p;
                answers += a;
                row.false_downs += d;
                rtts.extend(r);
            }
        }
        row.probes_per_sec = probes as f64 / hold.as_secs_f64();
        row.answered = if probes == 0 { 0.0 } else { answers as f64 / probes as f64 };
        row.rtt_p50 = percentile(&rtts, 50.0);
        row.rtt_p99 = percentile(&rtts, 99.0);
        Ok(row)
    })
}

fn now_since(t: Instant) -> Duration {
    Instant::now().saturating_duration_since(t)
}

/// Register `n` endpoints (ports base..base+n on the endpoint host) at
/// `target`, at most 512 in flight, retrying lost datagrams. Returns how
/// many got an RCF and the time it took.
pub fn register(
    ns: &Netns,
    n: usize,
    base: u16,
    target: SocketAddr,
) -> Result<(usize, Duration), BenchError> {
    register_with(ns, n, base, target, 512)
}

/// As [`register`], with at most `in_flight` RRQs outstanding.
pub fn register_with(
    ns: &Netns,
    n: usize,
    base: u16,
    target: SocketAddr,
    in_flight: usize,
) -> Result<(usize, Duration), BenchError> {
    register_from(ns, &[EP], n, base, target, in_flight, 600)
}

/// As [`register_with`], from several source addresses of `ns` (endpoint
/// `i` on `sources[i / per]`, port `base + i % per`, where `per` is what
/// fits below port 65535), asking for `ttl` seconds.
pub fn register_from(
    ns: &Netns,
    sources: &[std::net::Ipv4Addr],
    n: usize,
    base: u16,
    target: SocketAddr,
    in_flight: usize,
    ttl: u32,
) -> Result<(usize, Duration), BenchError> {
    let per = usize::from(u16::MAX - base);
    if sources.is_empty() || n > per * sources.len() {
        return Err(BenchError::Io(std::io::Error::other(format!(
            "{n} endpoints do not fit on {} source addresses from port {base}",
            sources.len()
        ))));
    }
    let sources = sources.to_vec();
    let r = ns.run(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        rt.block_on(async move {
            let ok = Arc::new(AtomicU64::new(0));
            let sem = Arc::new(tokio::sync::Semaphore::new(in_flight.max(1)));
            let t0 = Instant::now();
            let mut tasks = tokio::task::JoinSet::new();
            for i in 0..n {
                let permit = sem.clone().acquire_owned().await.expect("semaphore");
                let ok = ok.clone();
                let ip = sources[i / per];
                let port = base + (i % per) as u16;
                // Aliases unique per source address and port.
                let o = ip.octets()[3];
                // Reap finished tasks so 100,000 handles are not held.
                while tasks.try_join_next().is_some() {}
                tasks.spawn(async move {
                    let _permit = permit;
                    let local = SocketAddr::from((ip, port));
                    let Ok(sock) = tokio::net::UdpSocket::bind(local).await else { return };
                    let v = json!({"registrationRequest": {"requestSeqNum": 1, "protocolIdentifier": PROTOCOL_ID,
                        "discoveryComplete": false, "callSignalAddress": [transport_json(local)],
                        "rasAddress": [transport_json(local)],
                        "terminalType": {"terminal": {}, "mc": false, "undefinedNode": false},
                        "terminalAlias": [{"h323-ID": format!("bench{o}-{port}")}, {"dialledDigits": format!("7{o:03}{port:05}")}],
                        "endpointVendor": {"vendor": {"t35CountryCode": 181, "t35Extension": 0, "manufacturerCode": 18}},
                        "timeToLive": ttl, "keepAlive": false}});
                    let Ok(bytes) = ras_from_json(&v).and_then(|m| ras::encode(&m)) else { return };
                    let mut buf = [0u8; 2048];
                    for attempt in 0..10u32 {
                        let _ = sock.send_to(&bytes, target).await;
                        // 0.5 s, then backing off to 4 s: a gatekeeper slow
                        // with a big table is not flooded with retries.
                        let wait = Duration::from_millis(500 << attempt.min(3));
                        if let Ok(Ok((len, _))) =
                            tokio::time::timeout(wait, sock.recv_from(&mut buf)).await
                            && matches!(ras::decode(&buf[..len]), Ok(RasMessage::registrationConfirm(_))) {
                                ok.fetch_add(1, Ordering::Relaxed);
                                return;
                            }
                    }
                });
            }
            while tasks.join_next().await.is_some() {}
            Ok::<_, std::io::Error>((ok.load(Ordering::Relaxed) as usize, t0.elapsed()))
        })
    })??;
    Ok(r)
}

/// Percentile (nearest rank) of durations.
pub fn percentile(v: &[Duration], p: f64) -> Duration {
    let mut s = v.to_vec();
    s.sort();
    if s.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * s.len() as f64).ceil().max(1.0) as usize;
    s[rank.min(s.len()) - 1]
}

/// Raise the open-file limit for thousands of endpoint sockets.
pub fn raise_nofile() {
    let lim = libc::rlimit {
        rlim_cur: 65_536,
        rlim_max: 65_536,
    };
    // SAFETY: setrlimit with a valid struct; failure only leaves the limit.
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
}

/// One side of the flood comparison ([`flood`]).
#[derive(Clone, Debug)]
pub struct FloodRow {
    /// Datagrams a second the flooding host got out (0: the quiet run).
    pub flood_pps: f64,
    /// The lab endpoints' keepalives in the window: sent, unanswered.
    pub keepalives: (u64, u64),
    /// Of those, answered in the kernel.
    pub kernel_answers: u64,
    /// The heartbeat's round trip to the primary, sampled every 50 ms from
    /// the metrics: median and largest.
    pub heartbeat_rtt: (Duration, Duration),
    /// Datagrams dropped unread by the per-source budget.
    pub over_budget: u64,
    /// Control moves in the window (a false failover would show here).
    pub failovers: u64,
}

/// The address the flooding host sends from.
pub const FLOODER: std::net::Ipv4Addr = std::net::Ipv4Addr::new(198, 18, 1, 66);

/// Keepalive answers and the heartbeat for `endpoints` lab endpoints
/// (keepalive every 200 ms) through the proxy (fast path on, the daemon's
/// default `[limits]`), for `secs` without and then `secs` with one host
/// flooding the RAS port as fast as it can: the same lab, side by side.
pub fn flood(bins: &Bins, endpoints: usize, secs: u64) -> Result<[FloodRow; 2], BenchError> {
    let lab = Lab::create()?;
    lab.ep
        .ip(&["addr", "add", &format!("{FLOODER}/24"), "dev", "ep0"])?;
    let _gk1 = gk(bins, &lab.gk1, GK1, "GK-A")?;
    let _gk2 = gk(bins, &lab.gk2, GK2, "GK-B")?;
    let cfg = bins.dir.join("proxy-flood.toml");
    let text = topology::proxy_toml(&super::netns::unique_name("b"), 5000, Some("px0"))
        .replace(topology::LAB_LIMITS, "")
        .replace("stats_interval_secs = 1", "stats_interval_secs = 60");
    std::fs::write(&cfg, text)?;
    let mut c = lab.px.command(&bins.proxy)?;
    c.args(["run", "--config"]).arg(&cfg).env("NO_COLOR", "1");
    c.stderr(std::fs::File::create(bins.dir.join("proxy-flood.log"))?);
    let _px = LabProc::spawn("proxy", c)?;
    until("proxy takes the primary", 20, || {
        m(&lab, "h323proxy_control{gatekeeper=\"primary\"}") == Some(1.0)
    })?;
    let mut c = lab.ep.command(&bins.lab)?;
    c.args(["endpoints", "--gatekeeper", &format!("{PX_EP}:1719")])
        .args(["--ip", &EP.to_string(), "--count", &endpoints.to_string()])
        .args([
            "--pairs",
            "0",
            "--keepalive-ms",
            "200",
            "--report-ms",
            "250",
        ]);
    let eps = LabProc::spawn("endpoints", c)?;
    let status = |key: &str| {
        eps.last("eps registered")
            .and_then(|l| super::process::field(&l, key))
            .unwrap_or(0)
    };
    until("endpoints registered", 30, || {
        status("registered") == endpoints as u64
    })?;
    // Until the kernel answers them.
    std::thread::sleep(Duration::from_secs(2));
    let answered = "h323proxy_fastpath_keepalives_total{outcome=\"answered\"}";
    let window = |flood: bool| -> Result<FloodRow, BenchError> {
        let (sent0, lost0) = (status("keepalives_sent"), status("keepalives_unanswered"));
        let (k0, b0, f0) = (
            m(&lab, answered).unwrap_or(0.0),
            m(
                &lab,
                "h323proxy_refused_total{port=\"1719\",reason=\"rate\"}",
            )
            .unwrap_or(0.0),
            m(&lab, "h323proxy_failovers_total").unwrap_or(0.0),
        );
        let until_t = Instant::now() + Duration::from_secs(secs);
        let mut rtts = Vec::new();
        let flood_pps = std::thread::scope(|sc| {
            let flooder = flood.then(|| {
                let ns = &lab.ep;
                sc.spawn(move || {
                    ns.run(move || {
                        let s = std::net::UdpSocket::bind((FLOODER, 0)).ok()?;
                        let to = SocketAddr::from((PX_EP, 1719));
                        let d = [0xffu8; 64];
                        let mut n = 0u64;
                        let t0 = Instant::now();
                        while Instant::now() < until_t {
                            for _ in 0..256 {
                                if s.send_to(&d, to).is_ok() {
                                    n += 1;
                                }
                            }
                        }
                        Some(n as f64 / t0.elapsed().as_secs_f64())
                    })
                    .ok()
                    .flatten()
                    .unwrap_or(0.0)
                })
            });
            while Instant::now() < until_t {
                if let Some(r) = m(
                    &lab,
                    "h323proxy_gatekeeper_heartbeat_rtt_seconds{gatekeeper=\"primary\"}",
                ) {
                    rtts.push(Duration::from_secs_f64(r));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            flooder.map_or(0.0, |h| h.join().unwrap_or(0.0))
        });
        // The last report of the window.
        std::thread::sleep(Duration::from_millis(500));
        rtts.sort();
        Ok(FloodRow {
            flood_pps,
            keepalives: (
                status("keepalives_sent") - sent0,
                status("keepalives_unanswered") - lost0,
            ),
            kernel_answers: (m(&lab, answered).unwrap_or(0.0) - k0) as u64,
            heartbeat_rtt: (
                percentile(&rtts, 50.0),
                rtts.last().copied().unwrap_or_default(),
            ),
            over_budget: (m(
                &lab,
                "h323proxy_refused_total{port=\"1719\",reason=\"rate\"}",
            )
            .unwrap_or(0.0)
                - b0) as u64,
            failovers: (m(&lab, "h323proxy_failovers_total").unwrap_or(0.0) - f0) as u64,
        })
    };
    let quiet = window(false)?;
    let flooded = window(true)?;
    Ok([quiet, flooded])
}

/// A pair node's daemon and keepalived (see [`pair_takeover`]).
struct PairNode {
    daemon: LabProc,
    keepalived: Option<LabProc>,
    log: PathBuf,
    conf: PathBuf,
    vrrp_pid: PathBuf,
}

impl PairNode {
    fn start(bins: &Bins, ns: &Netns, tag: &str, text: String) -> Result<PairNode, BenchError> {
        let cfg = bins.dir.join(format!("pair-{tag}.toml"));
        std::fs::write(&cfg, text)?;
        let log = bins.dir.join(format!("pair-{tag}.log"));
        let mut c = ns.command(&bins.proxy)?;
        c.args(["run", "--config"]).arg(&cfg).env("NO_COLOR", "1");
        c.stderr(std::fs::File::create(&log)?);
        let daemon = LabProc::spawn("proxy", c)?;
        let read = |p: &PathBuf| std::fs::read_to_string(p).unwrap_or_default();
        until("a pair node's daemon start", 15, || {
            read(&log).contains("control moved")
        })?;
        let out = std::process::Command::new(&bins.proxy)
            .args(["redundancy", "keepalived-config", "--config"])
            .arg(&cfg)
            .output()?;
        if !out.status.success() {
            return Err(BenchError::Io(std::io::Error::other(format!(
                "keepalived-config: {}",
                String::from_utf8_lossy(&out.stderr)
            ))));
        }
        let conf = bins.dir.join(format!("keepalived-{tag}.conf"));
        std::fs::write(&conf, &out.stdout)?;
        let mut n = PairNode {
            daemon,
            keepalived: None,
            log,
            conf,
            vrrp_pid: bins.dir.join(format!("vrrp-{tag}.pid")),
        };
        n.start_keepalived(bins, ns, tag)?;
        Ok(n)
    }

    fn start_keepalived(&mut self, bins: &Bins, ns: &Netns, tag: &str) -> Result<(), BenchError> {
        // A killed keepalived leaves its pid files, and its VRRP process
        // may linger as a zombie where nothing reaps it: keepalived would
        // take either for a running instance.
        let pid = bins.dir.join(format!("keepalived-{tag}.pid"));
        let _ = std::fs::remove_file(&pid);
        let _ = std::fs::remove_file(&self.vrrp_pid);
        let mut c = ns.command("keepalived")?;
        c.args(["--dont-fork", "--log-console", "--vrrp", "-f"])
            .arg(&self.conf)
            .arg("-p")
            .arg(&pid)
            .arg("-r")
            .arg(&self.vrrp_pid)
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(
                bins.dir.join(format!("keepalived-{tag}.log")),
            )?);
        self.keepalived = Some(LabProc::spawn("keepalived", c)?);
        Ok(())
    }

    /// SIGKILL keepalived and its VRRP process.
    fn kill_keepalived(&mut self) {
        if let Some(pid) = std::fs::read_to_string(&self.vrrp_pid)
            .ok()
            .and_then(|p| p.trim().parse::<i32>().ok())
        {
            // SAFETY: kill(2) on the VRRP process keepalived started.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        if let Some(mut k) = self.keepalived.take() {
            k.kill9();
        }
    }

    /// Times keepalived reported this node master so far (a keepalived
    /// killed says nothing, so the daemon's role may not change between
    /// two of these).
    fn masters(&self) -> usize {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("redundancy role") && l.contains("keepalived=MASTER"))
            .count()
    }
}

impl Drop for PairNode {
    fn drop(&mut self) {
        if let Some(k) = self.keepalived.as_mut() {
            let _ = k.terminate(5);
        }
        self.kill_keepalived();
        let _ = self.daemon.terminate(5);
    }
}

/// The takeover time of a VRRP pair, `runs` times, with adverts every
/// `advert_ms`: node A (priority 150, preempting) owns the virtual
/// address; a prober on the endpoints' LAN sends a GRQ to it every 2 ms.
/// Each run cuts A's link and SIGKILLs its keepalived (its daemon is cut
/// off with it), and measures from that moment to the first GCF (from B,
/// the standby) answering a GRQ sent after it: the takeover as endpoints
/// see it on the wire. A is then restored and takes the address back.
pub fn pair_takeover(
    bins: &Bins,
    runs: usize,
    advert_ms: u32,
) -> Result<Vec<Duration>, BenchError> {
    use std::sync::atomic::{AtomicBool, AtomicU16};
    let lab = Lab::create()?;
    let sb = lab.standby_node()?;
    let _g1 = gk(bins, &lab.gk1, GK1, "GK-A")?;
    let _g2 = gk(bins, &lab.gk2, GK2, "GK-B")?;
    let tag = format!("{advert_ms}ms");
    let (ta, tb) = (format!("a-{tag}"), format!("b-{tag}"));
    let text_a = topology::pair_toml(
        topology::proxy_toml(&super::netns::unique_name("pa"), 5000, Some("px0")),
        PX_EP,
        "px0",
        150,
        true,
        Some(topology::PB_EP),
        advert_ms,
        &bins.dir.join(format!("vrrp-{ta}.fifo")),
    );
    let text_b = topology::pair_toml(
        topology::standby_node_toml(&super::netns::unique_name("pb"), 5000),
        topology::PB_EP,
        "pb0",
        100,
        false,
        Some(PX_EP),
        advert_ms,
        &bins.dir.join(format!("vrrp-{tb}.fifo")),
    );
    let mut a = PairNode::start(bins, &lab.px, &ta, text_a)?;
    let b = PairNode::start(bins, &sb.pb, &tb, text_b)?;
    until("node A master", 20, || a.masters() >= 1)?;
    // The prober: GRQs every 2 ms to the virtual address; the time of the
    // first answer to a GRQ numbered after `after` (wrapping).
    let base = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let seq = Arc::new(AtomicU16::new(1));
    let after = Arc::new(AtomicU16::new(0));
    let first = Arc::new(AtomicU64::new(0));
    let last = Arc::new(AtomicU64::new(0));
    let sock = lab.ep.run(|| {
        let s = std::net::UdpSocket::bind((EP, 0))?;
        s.set_read_timeout(Some(Duration::from_millis(5)))?;
        Ok::<_, std::io::Error>(s)
    })??;
    let sock = Arc::new(sock);
    let vip = SocketAddr::from((topology::VIP, 1719));
    let sender = {
        let (s, stop, seq) = (sock.clone(), stop.clone(), seq.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let n = seq.load(Ordering::Relaxed);
                let v = json!({"gatekeeperRequest": {"requestSeqNum": n, "protocolIdentifier": PROTOCOL_ID,
                    "rasAddress": transport_json(s.local_addr().unwrap()),
                    "endpointType": {"terminal": {}, "mc": false, "undefinedNode": false}}});
                if let Ok(b) = ras_from_json(&v).and_then(|m| ras::encode(&m)) {
                    let _ = s.send_to(&b, vip);
                }
                seq.store(if n == u16::MAX { 1 } else { n + 1 }, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let receiver = {
        let (s, stop, after, first, last) = (
            sock.clone(),
            stop.clone(),
            after.clone(),
            first.clone(),
            last.clone(),
        );
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while !stop.load(Ordering::Relaxed) {
                let Ok(n) = s.recv(&mut buf) else { continue };
                let now = base.elapsed().as_nanos() as u64;
                let Ok(RasMessage::gatekeeperConfirm(g)) = ras::decode(&buf[..n]) else {
                    continue;
                };
                last.store(now, Ordering::Relaxed);
                let newer =
                    (g.request_seq_num
                        .0
                        .wrapping_sub(after.load(Ordering::Relaxed)) as i16)
                        > 0;
                if newer && first.load(Ordering::Relaxed) == 0 {
                    first.store(now, Ordering::Relaxed);
                }
            }
        })
    };
    let answering = |last: &AtomicU64| {
        let l = last.load(Ordering::Relaxed);
        l != 0 && base.elapsed().as_nanos() as u64 - l < 50_000_000
    };
    let mut took = Vec::new();
    let result = (|| {
        for run in 0..runs {
            until("answers on the virtual address", 20, || answering(&last))?;
            // Node A dies: its link, then its keepalived. Only answers to
            // GRQs sent after that count: the number the prober has next
            // may already be on its way, so the first to count is the one
            // after it.
            first.store(u64::MAX, Ordering::Relaxed);
            let t0 = base.elapsed().as_nanos() as u64;
            lab.px.ip(&["link", "set", "px0", "down"])?;
            a.kill_keepalived();
            after.store(seq.load(Ordering::Relaxed), Ordering::Relaxed);
            first.store(0, Ordering::Relaxed);
            until("the standby's first answer", 20, || {
                first.load(Ordering::Relaxed) != 0
            })?;
            took.push(Duration::from_nanos(first.load(Ordering::Relaxed) - t0));
            // Restore A: its stale macvlan gone, the link up, keepalived
            // again; it takes the address back (preemption).
            let masters = a.masters();
            let _ = lab
                .px
                .ip(&["link", "del", &format!("vrrp.{}", topology::VRID)]);
            lab.px.ip(&["link", "set", "px0", "up"])?;
            a.start_keepalived(bins, &lab.px, &ta)?;
            until("node A master again", 30, || a.masters() > masters)?;
            std::thread::sleep(Duration::from_millis(500));
            eprintln!(
                "pair takeover, adverts {advert_ms} ms, run {}: {:?}",
                run + 1,
                took[run]
            );
        }
        Ok::<_, BenchError>(())
    })();
    stop.store(true, Ordering::Relaxed);
    let _ = sender.join();
    let _ = receiver.join();
    drop(b);
    result.map(|()| took)
}
