//! Prometheus text exposition of the proxy's state, gathered at scrape time
//! from the drivers' snapshots (a prometheus-client `Collector`), served on
//! a small HTTP endpoint (`GET /metrics`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::call::Phase;
use crate::driver::{CallStats, RasStatus};
use crate::gatekeeper::Health;

/// The proxy's metrics, read from the live snapshots on each scrape.
#[derive(Debug)]
pub struct ProxyCollector {
    ras: watch::Receiver<RasStatus>,
    calls: Arc<CallStats>,
    /// The instance whose pinned fast-path counters are read at each
    /// scrape (`None`: the fast path is off).
    fastpath: Option<String>,
    /// The pair's state (`None`: no `[redundancy]`).
    redundancy: Option<Arc<crate::redundancy::RedundancyStatus>>,
}

type Labels = Vec<(String, String)>;

fn l(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn gauge(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: &[(Labels, f64)],
) -> Result<(), std::fmt::Error> {
    let g = ConstGauge::new(0.0f64);
    let mut m = e.encode_descriptor(name, help, None, g.metric_type())?;
    for (labels, v) in rows {
        ConstGauge::new(*v).encode(m.encode_family(labels)?)?;
    }
    Ok(())
}

fn counter(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: &[(Labels, u64)],
) -> Result<(), std::fmt::Error> {
    let c = ConstCounter::new(0u64);
    let mut m = e.encode_descriptor(name, help, None, c.metric_type())?;
    for (labels, v) in rows {
        ConstCounter::new(*v).encode(m.encode_family(labels)?)?;
    }
    Ok(())
}

impl Collector for ProxyCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = self.ras.borrow().clone();
        let c = &self.calls;
        let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        let mut states = Vec::new();
        let mut rtts = Vec::new();
        let mut bound = Vec::new();
        for g in &s.gatekeepers {
            let (name, h, rtt) = (g.name.as_str(), &g.health, g.rtt);
            bound.push((l(&[("gatekeeper", name)]), g.registrations as f64));
            for (st, want) in [
                ("up", Health::Up),
                ("suspect", Health::Suspect),
                ("down", Health::Down),
            ] {
                states.push((
                    l(&[("gatekeeper", name), ("state", st)]),
                    f64::from(u8::from(*h == want)),
                ));
            }
            if let Some(r) = rtt {
                rtts.push((l(&[("gatekeeper", name)]), r.as_secs_f64()));
            }
        }
        gauge(
            &mut e,
            "h323proxy_gatekeeper_state",
            "Heartbeat state of each gatekeeper (1 for the current state)",
            &states,
        )?;
        gauge(
            &mut e,
            "h323proxy_gatekeeper_heartbeat_rtt_seconds",
            "Round trip of the last answered heartbeat probe",
            &rtts,
        )?;
        let mut control: Vec<(Labels, f64)> = s
            .gatekeepers
            .iter()
            .map(|g| {
                (
                    l(&[("gatekeeper", &g.name)]),
                    f64::from(u8::from(s.active.as_deref() == Some(g.name.as_str()))),
                )
            })
            .collect();
        control.push((
            l(&[("gatekeeper", "survivable")]),
            f64::from(u8::from(s.active.is_none())),
        ));
        gauge(
            &mut e,
            "h323proxy_control",
            "Which gatekeeper is in control (survivable: the proxy itself)",
            &control,
        )?;
        gauge(
            &mut e,
            "h323proxy_registrations",
            "Endpoints registered through the proxy",
            &[(vec![], s.registrations as f64)],
        )?;
        gauge(
            &mut e,
            "h323proxy_reregistrations_pending",
            "Registrations waiting to be moved to the gatekeeper in control (paced by [survivable] reregister_per_second)",
            &[(vec![], s.reregistrations_pending as f64)],
        )?;
        gauge(
            &mut e,
            "h323proxy_gatekeeper_registrations",
            "Endpoints the proxy has registered at each gatekeeper",
            &bound,
        )?;
        let calls: Vec<(Labels, f64)> = [
            Phase::Setup,
            Phase::Proceeding,
            Phase::Alerting,
            Phase::Active,
            Phase::Released,
        ]
        .iter()
        .map(|p| (l(&[("state", p.name())]), get(c.gauge(*p)) as f64))
        .collect();
        gauge(&mut e, "h323proxy_calls", "Relayed calls by state", &calls)?;
        gauge(
            &mut e,
            "h323proxy_admitted_calls",
            "Call legs admitted (ARQ/ACF) and not disengaged",
            &[(vec![], s.calls as f64)],
        )?;
        counter(
            &mut e,
            "h323proxy_keepalives_answered",
            "Keepalives the proxy answered itself",
            &[
                (l(&[("channel", "ras")]), s.stats.keepalives_answered),
                (l(&[("channel", "q931")]), get(&c.keepalives_answered)),
            ],
        )?;
        counter(
            &mut e,
            "h323proxy_failovers",
            "Times control moved between gatekeepers or to survivable mode",
            &[(vec![], s.stats.failovers)],
        )?;
        if let Some(r) = &self.redundancy {
            let master = r.master.load(Ordering::Relaxed);
            gauge(
                &mut e,
                "h323proxy_redundancy_role",
                "This node's role in its pair (1 for the current one): master owns the virtual address",
                &[
                    (l(&[("role", "master")]), f64::from(u8::from(master))),
                    (l(&[("role", "standby")]), f64::from(u8::from(!master))),
                ],
            )?;
            counter(
                &mut e,
                "h323proxy_redundancy_takeovers",
                "Times this node took the pair's virtual address",
                &[(vec![], r.takeovers.load(Ordering::Relaxed))],
            )?;
        }
        counter(
            &mut e,
            "h323proxy_call_records_aged_out",
            "Call records removed after 120 s without call signalling (calls that ended without a DRQ)",
            &[(vec![], s.stats.calls_aged_out)],
        )?;
        counter(
            &mut e,
            "h323proxy_malformed",
            "Messages rejected, by port and reason",
            &[
                (
                    l(&[("port", "1719"), ("reason", "undecodable")]),
                    s.stats.malformed,
                ),
                (
                    l(&[("port", "1719"), ("reason", "refused")]),
                    s.stats.refused,
                ),
                (
                    l(&[("port", "1719"), ("reason", "overload")]),
                    s.stats.dropped_overload,
                ),
                (
                    l(&[("port", "1720"), ("reason", "malformed")]),
                    get(&c.malformed),
                ),
                (
                    l(&[("port", "1720"), ("reason", "unroutable")]),
                    get(&c.unroutable),
                ),
            ],
        )?;
        counter(
            &mut e,
            "h323proxy_refused",
            "Inputs from the endpoint LAN refused before any work was done on them, by port and reason (the [limits] budgets and the H.245 relay's checks)",
            &[
                (
                    l(&[("port", "1719"), ("reason", "rate")]),
                    s.stats.over_budget,
                ),
                (
                    l(&[("port", "1719"), ("reason", "outstanding")]),
                    s.stats.outstanding_refused,
                ),
                (
                    l(&[("port", "1720"), ("reason", "rate")]),
                    get(&c.refused_rate),
                ),
                (
                    l(&[("port", "1720"), ("reason", "connections")]),
                    get(&c.refused_connections),
                ),
                (
                    l(&[("port", "1720"), ("reason", "connections_per_source")]),
                    get(&c.refused_connections_per_source),
                ),
                (
                    l(&[("port", "1720"), ("reason", "own_address")]),
                    get(&c.refused_own),
                ),
                (
                    l(&[("port", "h245"), ("reason", "address")]),
                    get(&c.h245_refused),
                ),
                (
                    l(&[("port", "h245"), ("reason", "stranger")]),
                    get(&c.h245_strangers),
                ),
            ],
        )?;
        let by_why: Vec<(Labels, u64)> = crate::ras_relay::Refused::ALL
            .iter()
            .map(|w| {
                (
                    l(&[("reason", w.label())]),
                    s.stats.refused_by.get(w).copied().unwrap_or(0),
                )
            })
            .collect();
        counter(
            &mut e,
            "h323proxy_ras_refused",
            "Endpoint-side RAS datagrams that decoded but were refused, by why (their sum is h323proxy_malformed_total{port=\"1719\",reason=\"refused\"})",
            &by_why,
        )?;
        counter(
            &mut e,
            "h323proxy_gatekeeper_unreachable_hints",
            "ICMP unreachables reported for a gatekeeper's RAS flow: each is a hint (the gatekeeper is probed at once, at most once an interval), never a verdict, since anyone can forge one",
            &[(vec![], s.stats.unreachable_hints)],
        )?;
        counter(
            &mut e,
            "h323proxy_ras_forwarded",
            "Endpoint RAS requests forwarded to a gatekeeper",
            &[(vec![], s.stats.forwarded)],
        )?;
        counter(
            &mut e,
            "h323proxy_ras_retransmissions_absorbed",
            "Endpoint retransmissions of a request still waiting for the gatekeeper's answer, not forwarded again",
            &[(vec![], s.stats.retransmissions_absorbed)],
        )?;
        counter(
            &mut e,
            "h323proxy_ras_local_answers",
            "RAS requests answered by the proxy itself",
            &[(vec![], s.stats.local_answers)],
        )?;
        counter(
            &mut e,
            "h323proxy_rrqs_to_gatekeepers",
            "RRQs sent to gatekeepers (probes, refreshes, re-registrations)",
            &[(vec![], s.stats.rrqs_to_gatekeepers)],
        )?;
        counter(
            &mut e,
            "h323proxy_q931_relayed",
            "Call signalling messages relayed",
            &[(vec![], get(&c.relayed))],
        )?;
        counter(
            &mut e,
            "h323proxy_h245_channels",
            "Separate H.245 channels relayed",
            &[(vec![], get(&c.h245_channels))],
        )?;
        counter(
            &mut e,
            "h323proxy_calls_kept_up",
            "Calls whose gatekeeper-side leg dropped while the endpoint leg was kept",
            &[(vec![], get(&c.kept_up))],
        )?;
        counter(
            &mut e,
            "h323proxy_calls_handed_over",
            "Active calls handed to the gatekeeper that took control, by step: readmitted (ACF for the call's own callIdentifier), reanchored (its signalling set up again through that gatekeeper), spliced (such a SETUP answered here for the called endpoint), reanchor_failed (tried again), unanchored (not taken over within the deadline)",
            &[
                (l(&[("step", "readmitted")]), s.stats.readmitted),
                (l(&[("step", "reanchored")]), get(&c.reanchored)),
                (l(&[("step", "spliced")]), get(&c.spliced)),
                (l(&[("step", "reanchor_failed")]), get(&c.reanchor_failed)),
                (l(&[("step", "unanchored")]), s.stats.unanchored),
            ],
        )?;
        counter(
            &mut e,
            "h323proxy_calls_media_lost",
            "Calls released (cause 38) because their media passed through a gatekeeper's RTP proxy and that gatekeeper went away",
            &[(vec![], get(&c.media_lost))],
        )?;
        if let Some(instance) = &self.fastpath
            && let Ok(k) = crate::fastpath::Counters::from_pins(instance)
        {
            let rows: Vec<(Labels, u64)> = proxy_common::ka_slot::NAMES
                .iter()
                .zip(&k.keepalive)
                .map(|(name, n)| (l(&[("outcome", name)]), *n))
                .collect();
            counter(
                &mut e,
                "h323proxy_fastpath_keepalives",
                "RAS datagrams to the proxy seen by the XDP fast path, by outcome: answered in the kernel, or why not (not_our_mac, source_mac_mismatch, rate_limited, ...)",
                &rows,
            )?;
        }
        Ok(())
    }
}

/// A registry with the proxy's collector; `fastpath`: the instance whose
/// pinned fast-path counters it reads, when the fast path runs.
pub fn registry(
    ras: watch::Receiver<RasStatus>,
    calls: Arc<CallStats>,
    fastpath: Option<String>,
    redundancy: Option<Arc<crate::redundancy::RedundancyStatus>>,
) -> Registry {
    let mut r = Registry::default();
    r.register_collector(Box::new(ProxyCollector {
        ras,
        calls,
        fastpath,
        redundancy,
    }));
    r
}

/// Render the registry in the Prometheus/OpenMetrics text format.
pub fn render(r: &Registry) -> String {
    let mut out = String::new();
    let _ = prometheus_client::encoding::text::encode(&mut out, r);
    out
}

/// Serve `GET /metrics` on `addr` until `shutdown`.
pub async fn serve(
    addr: SocketAddr,
    registry: Registry,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    tracing::info!(%addr, "metrics on http://{addr}/metrics");
    let registry = Arc::new(registry);
    loop {
        let (mut s, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(a) => a,
                Err(e) => {
                    // A transient failure (out of descriptors) must not end
                    // the endpoint for good; pause rather than spin.
                    tracing::warn!(error = %e, "metrics accept failed; pausing 100 ms");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return Ok(()),
        };
        let registry = registry.clone();
        tokio::spawn(async move {
            let mut req = Vec::with_capacity(1024);
            let mut buf = [0u8; 1024];
            // Read the request head, bounded in size and time.
            let _ = tokio::time::timeout(std::time::Duration::from_secs(2), async {
                while req.len() < 8192 && !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
            })
            .await;
            let (status, body) = if req.starts_with(b"GET /metrics") {
                ("200 OK", render(&registry))
            } else {
                ("404 Not Found", "try /metrics\n".to_string())
            };
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Type: application/openmetrics-text; version=1.0.0; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(head.as_bytes()).await;
            let _ = s.write_all(body.as_bytes()).await;
        });
    }
}
