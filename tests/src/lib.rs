//! Shared helpers of the integration tests: locating the built binaries and
//! deciding whether the privileged (root) tests can run.

use std::path::PathBuf;
use std::time::Duration;

use std::process::Stdio;

use proxy_lab::netns::Netns;
use proxy_lab::process::{LabProc, field};
use proxy_lab::topology::{self, Lab};
use proxy_lab::topology::{EP, Lab as TheLab};

/// Path of a workspace binary built next to the test executable
/// (`cargo xtask test` builds them before running the tests).
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target/<profile> directory");
    let p = dir.join(name);
    assert!(
        p.exists(),
        "{} is not built: run `cargo xtask test` (it builds the binaries first)",
        p.display()
    );
    p
}

/// `true` when the privileged tests can run. Outside root they skip with a
/// message saying why; in CI (CI=true, root) a missing privilege is a failure,
/// never a silent skip.
pub fn privileged(test: &str) -> bool {
    match proxy_lab::netns::unprivileged_reason() {
        None => {
            proxy_lab::netns::sweep_stale();
            true
        }
        Some(why) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "{test}: cannot run in CI: {why}"
            );
            eprintln!("SKIP {test}: {why}");
            false
        }
    }
}

/// Poll `f` every 20 ms until it returns `Some`, at most `secs` seconds.
pub fn wait_for<T>(secs: u64, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if std::time::Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// A child process killed (SIGKILL) and reaped on drop, so a failing test
/// never leaves a daemon running inside a namespace being deleted.
pub struct Child(pub std::process::Child);

impl Child {
    /// Send SIGTERM and wait (bounded) for a clean exit.
    pub fn terminate(&mut self, secs: u64) -> Option<std::process::ExitStatus> {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        wait_for(secs, || self.0.try_wait().ok().flatten())
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The `proxy` daemon in the lab's proxy namespace, its log in a file.
pub struct Proxy {
    /// See the type.
    pub proc: LabProc,
    /// See the type.
    pub log: PathBuf,
    /// See the type.
    pub dir: tempfile::TempDir,
    /// See the type.
    pub instance: String,
}

impl Proxy {
    /// Start on the lab configuration, without the fast path.
    pub fn start(lab: &Lab, hold_ms: u64) -> Proxy {
        Self::start_with(lab, hold_ms, None)
    }

    /// With the kernel fast path: XDP on the endpoint side, TC liveness on
    /// the gatekeeper side.
    pub fn start_fast(lab: &Lab, hold_ms: u64) -> Proxy {
        Self::start_with(lab, hold_ms, Some("px0"))
    }

    /// With the fast path and a slow heartbeat (200 ms × 5): for tests
    /// about something else than failover, so that a loaded machine's
    /// scheduling stalls do not move control to the backup.
    pub fn start_fast_steady(lab: &Lab, hold_ms: u64) -> Proxy {
        Self::start_tweaked(lab, hold_ms, Some("px0"), |t| {
            t.replace("interval_ms = 40", "interval_ms = 200")
                .replace("multiplier = 3", "multiplier = 5")
        })
    }

    /// Start with XDP on `xdp` (none: fast path off).
    pub fn start_with(lab: &Lab, hold_ms: u64, xdp: Option<&str>) -> Proxy {
        Self::start_tweaked(lab, hold_ms, xdp, |t| t)
    }

    /// Start on the lab configuration changed by `tweak`.
    pub fn start_tweaked(
        lab: &Lab,
        hold_ms: u64,
        xdp: Option<&str>,
        tweak: impl Fn(String) -> String,
    ) -> Proxy {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("proxy.toml");
        let instance = proxy_lab::netns::unique_name("i");
        // The registration table is saved in the test's own directory.
        let text = tweak(topology::proxy_toml(&instance, hold_ms, xdp));
        Self::start_in(&lab.px, dir, cfg, instance, text)
    }

    /// Start in `ns` on the configuration `text` (written to `cfg` in
    /// `dir`, which also gets the saved registration table and the log).
    pub fn start_in(
        ns: &proxy_lab::netns::Netns,
        dir: tempfile::TempDir,
        cfg: PathBuf,
        instance: String,
        text: String,
    ) -> Proxy {
        Self::start_wrapped(ns, dir, cfg, instance, text, &[])
    }

    /// [`Proxy::start_in`], the daemon started through `wrapper` (a
    /// command and its arguments, e.g. `setpriv …`; none: directly).
    pub fn start_wrapped(
        ns: &proxy_lab::netns::Netns,
        dir: tempfile::TempDir,
        cfg: PathBuf,
        instance: String,
        text: String,
        wrapper: &[String],
    ) -> Proxy {
        let text = text.replace(
            "state_dir = \"\"",
            &format!("state_dir = \"{}\"", dir.path().display()),
        );
        std::fs::write(&cfg, text).unwrap();
        let log = dir.path().join("proxy.log");
        let mut c = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = ns.command(program).unwrap();
                c.args(args).arg(bin("proxy"));
                c
            }
            None => ns.command(bin("proxy")).unwrap(),
        };
        c.args(["run", "--config"]).arg(&cfg).env("NO_COLOR", "1");
        c.stderr(std::fs::File::create(&log).unwrap());
        let proc = LabProc::spawn("proxy", c).unwrap();
        let p = Proxy {
            proc,
            log,
            dir,
            instance,
        };
        assert!(
            p.wait_log(10, |l| l.contains("control moved")
                && l.contains("to=\"primary\"")),
            "the proxy did not take the primary:\n{}",
            p.log_text()
        );
        p
    }

    /// SIGKILL the daemon and start it again on the same configuration
    /// (same instance: pinned maps and links, saved registrations).
    pub fn kill_and_restart(&mut self, lab: &Lab, down: Duration) {
        self.proc.kill9();
        std::thread::sleep(down);
        self.respawn(lab, &[]);
    }

    /// Start the daemon again on the same configuration (after it ended),
    /// with `env` added to its environment.
    pub fn respawn(&mut self, lab: &Lab, env: &[(&str, &str)]) {
        let mut c = lab.px.command(bin("proxy")).unwrap();
        c.args(["run", "--config"])
            .arg(self.dir.path().join("proxy.toml"))
            .env("NO_COLOR", "1")
            .envs(env.iter().copied());
        c.stderr(std::fs::File::create(&self.log).unwrap());
        self.proc = LabProc::spawn("proxy", c).unwrap();
    }

    /// The log so far, colours stripped.
    pub fn log_text(&self) -> String {
        let raw = std::fs::read_to_string(&self.log).unwrap_or_default();
        strip_ansi(&raw)
    }

    /// Wait (bounded) for a log line matching `pred`.
    pub fn wait_log(&self, secs: u64, pred: impl Fn(&str) -> bool) -> bool {
        wait_for(secs, || self.log_text().lines().any(&pred).then_some(())).is_some()
    }

    /// Wait (bounded) until the daemon's fast-path counters show keepalives
    /// answered in the kernel.
    pub fn kernel_answers(&self, secs: u64) -> bool {
        self.wait_log(secs, |l| {
            l.contains("fast-path counters")
                && field(l, "keepalives_answered").is_some_and(|n| n > 0)
        })
    }

    /// The latest value of `key=` in a log line containing `what`.
    pub fn counter(&self, what: &str, key: &str) -> Option<u64> {
        self.log_text()
            .lines()
            .rev()
            .filter(|l| l.contains(what))
            .find_map(|l| field(l, key))
    }
}

/// `s` without ANSI colour sequences.
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut esc = false;
    for c in s.chars() {
        match (esc, c) {
            (false, '\u{1b}') => esc = true,
            (true, 'm') => esc = false,
            (true, _) => {}
            (false, c) => out.push(c),
        }
    }
    out
}

/// The lab's own gatekeeper (`h323-lab gatekeeper`) in `ns` at `ip`:1719,
/// naming `alternate` in its RCFs.
pub fn gatekeeper(
    ns: &Netns,
    ip: std::net::Ipv4Addr,
    id: &str,
    alternate: Option<std::net::Ipv4Addr>,
) -> LabProc {
    gatekeeper_with(ns, ip, id, alternate, &[])
}

/// [`gatekeeper`] with extra arguments.
pub fn gatekeeper_with(
    ns: &Netns,
    ip: std::net::Ipv4Addr,
    id: &str,
    alternate: Option<std::net::Ipv4Addr>,
    extra: &[&str],
) -> LabProc {
    let mut c = ns.command(bin("h323-lab")).unwrap();
    c.args([
        "gatekeeper",
        "--ras",
        &format!("{ip}:1719"),
        "--id",
        id,
        "--ttl",
        "30",
    ]);
    if let Some(a) = alternate {
        c.args(["--alternate", &format!("{a}:1719")]);
    }
    c.args(extra);
    c.stderr(Stdio::inherit());
    let p = LabProc::spawn(id, c).unwrap();
    assert!(
        p.wait_for(10, "gk listening", |_| true).is_some(),
        "{id} did not start"
    );
    p
}

/// `count` lab endpoints on the endpoint host registered at `gatekeeper`,
/// `pairs` calls between them, dropping calls on silence.
pub fn endpoints(
    lab: &TheLab,
    gatekeeper: std::net::Ipv4Addr,
    count: usize,
    pairs: usize,
) -> LabProc {
    endpoints_with(lab, gatekeeper, count, pairs, &[])
}

/// [`endpoints`] with extra arguments.
pub fn endpoints_with(
    lab: &TheLab,
    gatekeeper: std::net::Ipv4Addr,
    count: usize,
    pairs: usize,
    extra: &[&str],
) -> LabProc {
    let mut c = lab.ep.command(bin("h323-lab")).unwrap();
    c.args([
        "endpoints",
        "--gatekeeper",
        &format!("{gatekeeper}:1719"),
        "--ip",
        &EP.to_string(),
        "--count",
        &count.to_string(),
        "--pairs",
        &pairs.to_string(),
        "--keepalive-ms",
        "200",
        "--status-enquiry-ms",
        "1000",
        "--drop-calls-on-silence",
        "--report-ms",
        "250",
    ]);
    c.args(extra);
    c.stderr(Stdio::inherit());
    LabProc::spawn("endpoints", c).unwrap()
}

/// The endpoints' latest status line.
pub fn status(eps: &LabProc) -> String {
    eps.last("eps registered").unwrap_or_default()
}

/// Wait (bounded) for a status line matching `pred`; panics naming the
/// last one otherwise.
pub fn wait_status(eps: &LabProc, secs: u64, pred: impl Fn(&str) -> bool) -> String {
    eps.wait_for(secs, "eps registered", pred)
        .unwrap_or_else(|| {
            panic!(
                "endpoints never reached the expected state; last: {}",
                status(eps)
            )
        })
}

/// The number after `key=` in a status line.
pub fn get(line: &str, key: &str) -> u64 {
    field(line, key).unwrap_or_else(|| panic!("no {key} in {line}"))
}

/// The proxy's metrics (the lab configuration serves them on
/// 127.0.0.1:9719 in the proxy's namespace).
pub fn scrape(lab: &TheLab) -> String {
    proxy_lab::process::scrape(&lab.px, "127.0.0.1:9719").unwrap()
}

/// One sample of a scrape.
pub fn metric(text: &str, sample: &str) -> u64 {
    proxy_lab::process::metric(text, sample).unwrap_or_else(|| panic!("no {sample} in\n{text}"))
        as u64
}
