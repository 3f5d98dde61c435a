//! Loss and jitter on a real lab link, for the heartbeat's false-failover
//! count. This kernel is built without `sch_netem` (CONFIG_NET_SCH_NETEM is
//! unset and there are no modules), so `tc qdisc add ... netem` is not
//! available; netfilter's NFQUEUE is. iptables (legacy) hands every packet
//! in and out of one interface to a queue; a thread in that namespace drops
//! each with probability `loss` and releases the rest after
//! `delay ± jitter` (uniform, per packet, so packets may overtake each
//! other, as with netem's `delay D J`). The packets are the real ones and
//! the kernel holds them; only the verdict is late.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::link_sim::{Link, Rng};
use super::netns::Netns;

/// What the impairment did.
#[derive(Clone, Copy, Debug, Default)]
pub struct ImpairStats {
    /// Packets handed to the queue.
    pub seen: u64,
    /// Packets dropped.
    pub dropped: u64,
}

/// An impaired interface; dropping it removes the rules and stops the thread.
pub struct Impairment {
    ns: String,
    rules: Vec<Vec<String>>,
    stop: Arc<AtomicBool>,
    worker: Option<JoinHandle<io::Result<ImpairStats>>>,
}

fn iptables(ns: &str, op: &str, rule: &[String]) -> io::Result<()> {
    let out = Netns::existing(ns)
        .command("iptables-legacy")?
        .arg("-w")
        .arg(op)
        .args(rule)
        .output()
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("iptables-legacy: {e} (apt-get install iptables)"),
            )
        })?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "iptables-legacy {op} {}: {}",
            rule.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

impl Impairment {
    /// Impair everything into and out of `iface` in `ns`, through NFQUEUE
    /// number `queue`.
    pub fn start(ns: &Netns, iface: &str, queue: u16, link: Link, seed: u64) -> io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<io::Result<()>>();
        let stop2 = stop.clone();
        let worker = ns.spawn(move || {
            let mut q = match open_queue(queue) {
                Ok(q) => {
                    let _ = ready_tx.send(Ok(()));
                    q
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(io::Error::new(e.kind(), e.to_string())));
                    return Err(e);
                }
            };
            hold_and_release(&mut q, link, seed, &stop2)
        })?;
        match ready_rx.recv_timeout(Duration::from_secs(5)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(io::Error::new(e.kind(), format!("NFQUEUE {queue}: {e}"))),
            Err(_) => return Err(io::Error::other("NFQUEUE thread did not start")),
        }
        let q = queue.to_string();
        let mut me = Self {
            ns: ns.name().to_string(),
            rules: Vec::new(),
            stop,
            worker: Some(worker),
        };
        for (chain, dir) in [("INPUT", "-i"), ("OUTPUT", "-o")] {
            // --queue-bypass: should the thread be gone, packets pass.
            let rule: Vec<String> = [
                chain,
                dir,
                iface,
                "-j",
                "NFQUEUE",
                "--queue-num",
                &q,
                "--queue-bypass",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            iptables(&me.ns, "-I", &rule)?;
            me.rules.push(rule);
        }
        Ok(me)
    }

    /// Remove the rules, release what is held, and report.
    pub fn stop(mut self) -> io::Result<ImpairStats> {
        self.teardown()
    }

    fn teardown(&mut self) -> io::Result<ImpairStats> {
        for rule in std::mem::take(&mut self.rules) {
            let _ = iptables(&self.ns, "-D", &rule);
        }
        self.stop.store(true, Ordering::SeqCst);
        match self.worker.take() {
            Some(w) => w
                .join()
                .map_err(|_| io::Error::other("NFQUEUE thread panicked"))?,
            None => Ok(ImpairStats::default()),
        }
    }
}

impl Drop for Impairment {
    fn drop(&mut self) {
        let _ = self.teardown();
    }
}

fn open_queue(queue: u16) -> io::Result<nfq::Queue> {
    let mut q = nfq::Queue::open()?;
    q.bind(queue)?;
    // Only the verdict matters: copy no more than the headers.
    q.set_copy_range(queue, 128)?;
    q.set_queue_max_len(queue, 8192)?;
    // A full queue passes packets rather than dropping more than asked.
    q.set_fail_open(queue, true)?;
    q.set_nonblocking(true);
    Ok(q)
}

fn hold_and_release(
    q: &mut nfq::Queue,
    link: Link,
    seed: u64,
    stop: &AtomicBool,
) -> io::Result<ImpairStats> {
    let mut rng = Rng::new(seed);
    let mut stats = ImpairStats::default();
    let mut due: BinaryHeap<Reverse<(Instant, u64)>> = BinaryHeap::new();
    let mut held: HashMap<u64, nfq::Message> = HashMap::new();
    let mut n = 0u64;
    loop {
        let stopping = stop.load(Ordering::SeqCst);
        // Take everything queued now.
        for _ in 0..4096 {
            match q.recv() {
                Ok(mut msg) => {
                    stats.seen += 1;
                    match link.one_way(&mut rng) {
                        None if !stopping => {
                            stats.dropped += 1;
                            msg.set_verdict(nfq::Verdict::Drop);
                            q.verdict(msg)?;
                        }
                        Some(d) if !d.is_zero() && !stopping => {
                            n += 1;
                            held.insert(n, msg);
                            due.push(Reverse((Instant::now() + d, n)));
                        }
                        _ => {
                            msg.set_verdict(nfq::Verdict::Accept);
                            q.verdict(msg)?;
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        let now = Instant::now();
        while let Some(Reverse((at, id))) = due.peek().copied() {
            if at > now && !stopping {
                break;
            }
            due.pop();
            if let Some(mut msg) = held.remove(&id) {
                msg.set_verdict(nfq::Verdict::Accept);
                q.verdict(msg)?;
            }
        }
        if stopping && held.is_empty() {
            return Ok(stats);
        }
        let nap = due
            .peek()
            .map(|Reverse((at, _))| at.saturating_duration_since(now))
            .unwrap_or(Duration::from_millis(1))
            .min(Duration::from_micros(500));
        std::thread::sleep(nap);
    }
}
