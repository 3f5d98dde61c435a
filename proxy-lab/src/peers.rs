//! The real H.323 peers in the lab: GnuGk as gatekeeper and H323Plus's
//! `simple` sample as endpoint, built from pinned sources by `cargo xtask
//! peers` (their folder is named by `H323_PEERS_BIN`, which `cargo xtask
//! test` and `cargo xtask run --gnugk` set).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use super::netns::Netns;
use super::process::LabProc;

/// Variable naming the folder with `gnugk` and `simph323`.
pub const PEERS_ENV: &str = "H323_PEERS_BIN";

/// The folder with the peer binaries, or why there is none.
pub fn peers_bin() -> Result<PathBuf, String> {
    let dir = std::env::var_os(PEERS_ENV).map(PathBuf::from).ok_or_else(|| {
        format!("{PEERS_ENV} is not set (`cargo xtask peers` builds GnuGk and H323Plus and prints the folder; `cargo xtask test` sets it)")
    })?;
    for b in ["gnugk", "simph323", "addpasswd"] {
        if !dir.join(b).is_file() {
            return Err(format!("{} has no {b}", dir.display()));
        }
    }
    Ok(dir)
}

/// How a GnuGk instance routes calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Routing {
    /// Gatekeeper-routed Q.931 (GKRouted=1, its signalling port 1721).
    Routed,
    /// Direct endpoint-to-endpoint signalling.
    Direct,
}

/// A running GnuGk with its status port.
pub struct GnuGk {
    /// The process (stdout: its trace, in `log`).
    pub proc: LabProc,
    /// Its address.
    pub ip: Ipv4Addr,
    ns_name: String,
    /// Its trace file.
    pub log: PathBuf,
    _dir: tempfile::TempDir,
}

/// GnuGk's status port (`[Gatekeeper::Main] StatusPort`).
pub const STATUS_PORT: u16 = 7000;
/// GnuGk's call signalling port in routed mode.
pub const ROUTED_PORT: u16 = 1721;

impl GnuGk {
    /// Start GnuGk `name` on `ip` in `ns`; `extra` is appended to its ini
    /// (more sections).
    pub fn start(
        bin: &Path,
        ns: &Netns,
        ip: Ipv4Addr,
        name: &str,
        routing: Routing,
        extra: &str,
    ) -> std::io::Result<Self> {
        Self::start_authenticating(bin, ns, ip, name, routing, extra, &[])
    }

    /// As [`GnuGk::start`]; with `users` (alias, password) it requires H.235
    /// password tokens on RRQ and ARQ (`SimplePasswordAuth`), the passwords
    /// stored with GnuGk's own `addpasswd`.
    pub fn start_authenticating(
        bin: &Path,
        ns: &Netns,
        ip: Ipv4Addr,
        name: &str,
        routing: Routing,
        extra: &str,
        users: &[(&str, &str)],
    ) -> std::io::Result<Self> {
        Self::launch(bin, ns, ip, name, routing, extra, users, 60)
    }

    /// As [`GnuGk::start`] with `TimeToLive` = `ttl` seconds: the proxy
    /// refreshes every binding within it, so a table of 100,000 needs a
    /// longer one than the tests' 60 s.
    pub fn start_with_ttl(
        bin: &Path,
        ns: &Netns,
        ip: Ipv4Addr,
        name: &str,
        routing: Routing,
        ttl: u32,
    ) -> std::io::Result<Self> {
        Self::launch(bin, ns, ip, name, routing, "", &[], ttl)
    }

    #[allow(clippy::too_many_arguments)]
    fn launch(
        bin: &Path,
        ns: &Netns,
        ip: Ipv4Addr,
        name: &str,
        routing: Routing,
        extra: &str,
        users: &[(&str, &str)],
        ttl: u32,
    ) -> std::io::Result<Self> {
        let dir = tempfile::tempdir()?;
        let ini = dir.path().join("gk.ini");
        let routed = match routing {
            Routing::Routed => format!("GKRouted=1\nH245Routed=0\nCallSignalPort={ROUTED_PORT}\n"),
            Routing::Direct => "GKRouted=0\n".to_string(),
        };
        std::fs::write(
            &ini,
            format!(
                "[Gatekeeper::Main]\nName={name}\nHome={ip}\nTimeToLive={ttl}\n\
                 UseBroadcastListener=0\nUseMulticastListener=0\nStatusPort={STATUS_PORT}\n\
                 [RoutedMode]\n{routed}\
                 [Proxy]\nEnable=0\n\
                 [RasSrv::RRQFeatures]\nAcceptEndpointIdentifier=1\n\
                 [GkStatus::Auth]\nrule=allow\n{extra}{auth}",
                auth = if users.is_empty() {
                    ""
                } else {
                    "[Gatekeeper::Auth]\nSimplePasswordAuth=required;RRQ,ARQ\n\
                     [SimplePasswordAuth]\nKeyFilled=0\n"
                }
            ),
        )?;
        for (user, password) in users {
            let out = std::process::Command::new(bin.join("addpasswd"))
                .arg(&ini)
                .args(["SimplePasswordAuth", user, password])
                .output()?;
            if !out.status.success() {
                return Err(std::io::Error::other(format!(
                    "addpasswd {user}: {}",
                    String::from_utf8_lossy(&out.stderr)
                )));
            }
        }
        let log = dir.path().join("gk.log");
        let mut c = ns.command(bin.join("gnugk"))?;
        c.arg("-c")
            .arg(&ini)
            .args(["-t", "-o"])
            .arg(&log)
            .stderr(Stdio::null());
        let proc = LabProc::spawn(name, c)?;
        let gk = Self {
            proc,
            ip,
            ns_name: ns.name().to_owned(),
            log,
            _dir: dir,
        };
        // Ready once the status port answers.
        let deadline = Instant::now() + Duration::from_secs(15);
        while gk.status("r").is_err() {
            if Instant::now() > deadline {
                return Err(std::io::Error::other(format!(
                    "GnuGk {name} did not open its status port within 15 s"
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(gk)
    }

    /// One status-port command (`r`, `c`, `DisconnectCall 1` ...): the
    /// answer up to the line `;`.
    pub fn status(&self, cmd: &str) -> std::io::Result<String> {
        let addr = SocketAddr::from((self.ip, STATUS_PORT));
        let cmd = cmd.to_owned();
        let ns = Netns::existing(&self.ns_name);
        ns.run(move || status_query(addr, &cmd))?
    }

    /// `r`: the registrations as (callSignalAddress, aliases, endpointId).
    pub fn registrations(&self) -> std::io::Result<Vec<(String, String, String)>> {
        Ok(self
            .status("r")?
            .lines()
            .filter_map(|l| l.strip_prefix("RCF|"))
            .filter_map(|l| {
                let f: Vec<&str> = l.split('|').collect();
                Some((
                    f.first()?.to_string(),
                    f.get(1)?.to_string(),
                    f.get(3)?.trim_end_matches(';').to_string(),
                ))
            })
            .collect())
    }

    /// `r`: how many registrations it holds (its "Number of Endpoints").
    pub fn count(&self) -> std::io::Result<usize> {
        Ok(self
            .status("r")?
            .lines()
            .find_map(|l| l.strip_prefix("Number of Endpoints:"))
            .and_then(|n| n.trim().trim_end_matches(';').parse().ok())
            .unwrap_or(0))
    }

    /// `s`: its "Total Endpoints" (cheaper than listing them with `r`).
    pub fn total(&self) -> std::io::Result<usize> {
        Ok(self
            .status("s")?
            .lines()
            .find_map(|l| l.strip_prefix("Total Endpoints:"))
            .and_then(|n| n.split_whitespace().next()?.parse().ok())
            .unwrap_or(0))
    }

    /// `c`: each call it holds as (call number, dialled destination).
    pub fn call_list(&self) -> std::io::Result<Vec<(u32, String)>> {
        let text = self.status("c")?;
        let mut calls = Vec::new();
        let mut lines = text.lines();
        while let Some(l) = lines.next() {
            let Some(rest) = l.strip_prefix("Call No. ") else {
                continue;
            };
            let n = rest.split(' ').next().and_then(|n| n.parse().ok());
            let dial = lines
                .next()
                .and_then(|d| d.strip_prefix("Dial "))
                .unwrap_or_default()
                .to_string();
            if let Some(n) = n {
                calls.push((n, dial));
            }
        }
        Ok(calls)
    }

    /// `c`: the number of calls it holds.
    pub fn calls(&self) -> std::io::Result<usize> {
        let text = self.status("c")?;
        Ok(text.lines().filter(|l| l.starts_with("Call No.")).count())
    }
}

fn status_query(addr: SocketAddr, cmd: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(3)))?;
    s.write_all(format!("{cmd}\r\n").as_bytes())?;
    let mut r = BufReader::new(s.try_clone()?);
    let mut out = String::new();
    let mut line = String::new();
    let mut started = false;
    let deadline = Instant::now() + Duration::from_secs(5);
    // The banner and the answer both end with a line ";"; the answer is
    // the block after the command's echo of its title.
    while Instant::now() < deadline {
        line.clear();
        let mut raw = Vec::new();
        if r.read_until(b'\n', &mut raw)? == 0 {
            break;
        }
        line.push_str(&String::from_utf8_lossy(&raw));
        let t = line.trim_matches(|c: char| c == '\r' || c == '\n');
        if !started {
            if t.starts_with("AllRegistrations")
                || t.starts_with("CurrentCalls")
                || t.starts_with("Call ")
                || t.starts_with("Endpoint")
                || t.starts_with("Disconnect")
                || t.starts_with("Error")
                || t.starts_with("-- Endpoint Statistics")
            {
                started = true;
            } else {
                continue;
            }
        }
        out.push_str(t);
        out.push('\n');
        if t == ";" || t.ends_with(';') && t.len() == 1 {
            break;
        }
    }
    let _ = s.write_all(b"quit\r\n");
    let mut sink = [0u8; 256];
    let _ = s.read(&mut sink);
    Ok(out)
}

/// An H323Plus `simple` endpoint: `number` on `ip`, registered at `gk`
/// (the proxy), listening and auto-answering, or calling `dial`.
pub fn simple(
    bin: &Path,
    ns: &Netns,
    gk: Ipv4Addr,
    ip: Ipv4Addr,
    number: &str,
    dial: Option<&str>,
    password: Option<&str>,
) -> std::io::Result<LabProc> {
    let mut c = ns.command(bin.join("simph323"))?;
    c.args(["-n", "-g", &gk.to_string(), "-u", number]).args([
        "-i",
        &ip.to_string(),
        "-s",
        "Null Audio",
    ]);
    if let Some(p) = password {
        c.args(["-p", p]);
    }
    match dial {
        Some(d) => {
            c.arg(d);
        }
        None => {
            c.args(["-l", "-a"]);
        }
    }
    c.stderr(Stdio::null());
    LabProc::spawn(&format!("simple-{number}"), c)
}
