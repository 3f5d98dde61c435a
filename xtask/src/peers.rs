//! The real H.323 peers the tests run against: PTLib, H323Plus (with its
//! `simple` endpoint) and GnuGk, built once from pinned sources into a cache
//! outside the checkout.
//!
//! Sources come from a directory of `git archive` tarballs named by
//! `H323_PEERS_DIR` (`.ci/run` points it at `../shared/peers`), else from the
//! projects' public repositories at the same commits. The cache is keyed by
//! the three commits, so a clean clone on the same machine reuses a build and
//! a new pin builds anew. Every step prints one line and keeps its output in
//! `build.log`; a finished step leaves a stamp, so an interrupted build
//! resumes where it stopped.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

/// One pinned peer source.
struct Pin {
    /// Folder the tarball unpacks into (the repository's name).
    name: &'static str,
    /// Full commit.
    commit: &'static str,
    /// Public repository, for a machine without the tarballs.
    repo: &'static str,
}

const PINS: [Pin; 3] = [
    Pin {
        name: "ptlib",
        commit: "500dbdaceb086c681a524744b41f9a6ac914dce5",
        repo: "https://github.com/willamowius/ptlib",
    },
    Pin {
        name: "h323plus",
        commit: "ea2072978f0334583b550dbfc8b5f6eb7303cbef",
        repo: "https://github.com/willamowius/h323plus",
    },
    Pin {
        name: "gnugk",
        commit: "0a87c1bfcdc4e51533a0dac4efd5ef0a51a5104c",
        repo: "https://github.com/willamowius/gnugk",
    },
];

/// Debian packages the peers build with.
pub const BUILD_PACKAGES: &[&str] = &[
    "build-essential",
    "autoconf",
    "automake",
    "libtool",
    "pkg-config",
    "libssl-dev",
    "libexpat1-dev",
    "bison",
    "flex",
    "libpcap-dev",
];

/// What the cache's `bin` holds.
const BINARIES: [&str; 3] = ["gnugk", "simph323", "addpasswd"];

/// Where the built binaries are: `bin/gnugk`, `bin/simph323` and
/// `bin/addpasswd` (GnuGk's password encryption tool).
pub fn cache_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/root/.cache"));
    let key: Vec<String> = PINS
        .iter()
        .map(|p| format!("{}-{}", p.name, &p.commit[..12]))
        .collect();
    base.join("h323-survivable-proxy/peers").join(key.join("+"))
}

/// Build the peers unless the cache has them; returns the `bin` folder.
pub fn ensure() -> Result<PathBuf> {
    let dir = cache_dir();
    let bin = dir.join("bin");
    if BINARIES.iter().all(|b| bin.join(b).is_file()) {
        return Ok(bin);
    }
    crate::setup::debian(BUILD_PACKAGES)?;
    std::fs::create_dir_all(&bin).with_context(|| format!("creating {}", bin.display()))?;
    let src = dir.join("src");
    std::fs::create_dir_all(&src)?;
    let log = dir.join("build.log");
    eprintln!(
        "peers: building PTLib, H323Plus and GnuGk into {} (about 9 minutes on 2 cores, once; log: {})",
        dir.display(),
        log.display()
    );
    for p in &PINS {
        step(&dir, &format!("unpack-{}", p.name), &log, || {
            unpack(p, &src)
        })?;
    }
    let ptlib = src.join("ptlib");
    let h323plus = src.join("h323plus");
    let gnugk = src.join("gnugk");
    let env = |c: &mut Command| {
        c.env("PTLIBDIR", &ptlib).env("OPENH323DIR", &h323plus);
    };
    let sh = |cwd: &Path, script: &str| {
        let mut c = Command::new("sh");
        c.arg("-c").arg(script).current_dir(cwd);
        env(&mut c);
        c
    };
    step(&dir, "build-ptlib", &log, || {
        logged(
            sh(
                &ptlib,
                "./configure --disable-video --disable-vidfile --disable-ffvdev --disable-sdl \
                 --disable-v4l --disable-v4l2 --disable-alsa --disable-oss --disable-pulse \
                 --disable-sndio --disable-openldap --disable-lua --disable-odbc --disable-sasl \
                 --disable-samples && make -j2 optnoshared",
            ),
            &log,
        )
    })?;
    step(&dir, "build-h323plus", &log, || {
        logged(
            sh(
                &h323plus,
                "./configure --disable-video --disable-h224 --disable-h239 --disable-t120 \
                 --disable-t140 --disable-h350 --disable-h248 --disable-file --disable-h501 \
                 && make -j2 optnoshared",
            ),
            &log,
        )
    })?;
    step(&dir, "build-simple", &log, || {
        logged(
            sh(&h323plus.join("samples/simple"), "make optnoshared"),
            &log,
        )
    })?;
    step(&dir, "build-gnugk", &log, || {
        logged(
            sh(
                &gnugk,
                "./configure --enable-h46018 --disable-mysql --disable-pgsql --disable-firebird \
                 --disable-unixodbc --disable-sqlite --disable-redis --disable-oracle \
                 --disable-libssh --disable-netsnmp --disable-ptlibsnmp --disable-lua \
                 --disable-geoip --disable-libcurl --disable-json --disable-mqtt \
                 --disable-librabbitmq && make -j2 optnoshared",
            ),
            &log,
        )
    })?;
    step(&dir, "build-addpasswd", &log, || {
        logged(sh(&gnugk.join("addpasswd"), "make optnoshared"), &log)
    })?;
    for (from, to) in [
        (gnugk.join("obj_linux_x86_64_s/gnugk"), bin.join("gnugk")),
        (
            gnugk.join("addpasswd/obj_linux_x86_64_s/addpasswd"),
            bin.join("addpasswd"),
        ),
        (
            h323plus.join("samples/simple/obj_linux_x86_64_s/simph323"),
            bin.join("simph323"),
        ),
    ] {
        std::fs::copy(&from, &to)
            .with_context(|| format!("copying {} (see {})", from.display(), log.display()))?;
    }
    eprintln!(
        "peers: gnugk, simph323 and addpasswd ready in {}",
        bin.display()
    );
    Ok(bin)
}

/// Run `f` once: a stamp file marks it done.
fn step(dir: &Path, name: &str, log: &Path, f: impl FnOnce() -> Result<()>) -> Result<()> {
    let stamp = dir.join(format!(".{name}.done"));
    if stamp.exists() {
        return Ok(());
    }
    eprintln!("peers: {name}");
    f().with_context(|| {
        format!(
            "peers step {name} failed; its output is in {}",
            log.display()
        )
    })?;
    std::fs::write(&stamp, b"")?;
    Ok(())
}

fn logged(mut cmd: Command, log: &Path) -> Result<()> {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    let status = cmd
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .status()
        .with_context(|| format!("starting {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?}: {status}");
    }
    Ok(())
}

/// Put the pinned source of `p` at `src/<name>`: from the tarball in
/// `H323_PEERS_DIR`, else a clone of its public repository at the commit.
fn unpack(p: &Pin, src: &Path) -> Result<()> {
    let target = src.join(p.name);
    if target.exists() {
        std::fs::remove_dir_all(&target)?;
    }
    if let Some(dir) = std::env::var_os("H323_PEERS_DIR") {
        let tar = Path::new(&dir).join(format!("{}-{}.tar.gz", p.name, &p.commit[..12]));
        if !tar.is_file() {
            bail!(
                "H323_PEERS_DIR={} has no {} (expected the git archive of {} at {})",
                Path::new(&dir).display(),
                tar.display(),
                p.repo,
                p.commit
            );
        }
        return crate::run(Command::new("tar").arg("xzf").arg(&tar).arg("-C").arg(src));
    }
    crate::run(
        Command::new("git")
            .args(["clone", "--quiet", p.repo])
            .arg(&target),
    )
    .with_context(|| {
        format!(
            "fetching {} (set H323_PEERS_DIR to a folder with the pinned tarballs when offline)",
            p.repo
        )
    })?;
    crate::run(
        Command::new("git")
            .args([
                "-c",
                "advice.detachedHead=false",
                "checkout",
                "--quiet",
                p.commit,
            ])
            .current_dir(&target),
    )
}
