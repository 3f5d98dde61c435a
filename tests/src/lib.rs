//! Shared helpers of the integration tests: locating the built binaries and
//! deciding whether the privileged (root) tests can run.

use std::path::PathBuf;

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
    match proxy_user::lab::netns::unprivileged_reason() {
        None => {
            proxy_user::lab::netns::sweep_stale();
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
