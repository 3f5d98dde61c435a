//! The RAS relay and the call state machine fed arbitrary datagrams from
//! endpoints and gatekeepers, interleaved with time: never a panic, and
//! garbage never registers anyone.
//!
//! Input: records of [op, len, payload(len)]. op % 5: 0/1 endpoint datagram
//! (two endpoint addresses), 2 gatekeeper datagram (primary or backup by the
//! op's high bit, sent to an endpoint's own address or the proxy's by bit
//! 6), 3 advance time by payload[0] ms, 4 a call-signalling payload on
//! alternating legs (the call routed by this relay, its callee leg
//! connected or not by bit 7; bit 6 loses the leg instead).
#![no_main]
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use proxy_proto::call::{Call, CallConfig, CallEvent, Leg, LegLoss, LegSide};
use proxy_proto::gatekeeper::HeartbeatConfig;
use proxy_proto::identity::IdentityPool;
use proxy_proto::ras_relay::{DialRule, Event, GatekeeperConfig, RasRelay, RelayConfig};

fn a(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn cfg() -> RelayConfig {
    RelayConfig {
        host_addresses: Vec::new(),
        proxy_id: "FUZZ".into(),
        endpoint_ras: a("198.18.1.1:1719"),
        endpoint_call_signal: a("198.18.1.1:1720"),
        gatekeeper_ras: a("198.18.2.1:1719"),
        gatekeeper_call_signal: a("198.18.2.1:1720"),
        gatekeepers: vec![
            GatekeeperConfig { name: "primary".into(), ras: a("198.18.2.10:1719") },
            GatekeeperConfig { name: "backup".into(), ras: a("198.18.3.10:1719") },
        ],
        heartbeat: HeartbeatConfig { interval: Duration::from_millis(40), multiplier: 3 },
        failback_hold: Duration::from_millis(500),
        preempt: true,
        reregister_rate: 1000,
        reregister_in_flight: 256,
        local_ttl: 60,
        reanchor_deadline: Duration::from_secs(30),
        dial_plan: vec![DialRule { prefix: "9".into(), strip: 1, prepend: String::new() }],
        identities: Some(
            IdentityPool::new(vec![a("198.18.2.1:0").ip()], 20_000..=20_001).unwrap(),
        ),
        own_password: None,
        credentials: [("1001".to_string(), "secret".to_string())].into(),
        // Small enough that long inputs reach every refusal.
        limits: proxy_proto::ras_relay::RelayLimits {
            ras_budget: proxy_proto::budget::Rate {
                per_second: 1000,
                burst: 64,
            },
            max_sources: 4,
            max_registrations: 8,
            max_registrations_per_source: 3,
            max_aliases_per_request: 4,
            max_destinations: 4,
            max_outstanding_per_source: 4,
            max_calls_per_endpoint: 2,
        },
    }
}

fn call_cfg() -> CallConfig {
    CallConfig {
        endpoint_side: a("198.18.1.1:1720"),
        gatekeeper_side: a("198.18.2.1:1720"),
        setup_wait: Duration::from_secs(30),
        unanchored: Default::default(),
    }
}

fuzz_target!(|data: &[u8]| {
    let t0 = Instant::now();
    let mut t = t0;
    let mut relay = RasRelay::new(cfg(), t0);
    let mut call: Option<Call> = None;
    let mut leg = Leg::Caller;
    let mut rest = data;
    while rest.len() >= 2 {
        let (op, len) = (rest[0], rest[1] as usize);
        let payload = &rest[2..(2 + len).min(rest.len())];
        rest = &rest[(2 + len).min(rest.len())..];
        match op % 5 {
            0 => relay.handle_endpoint(t, a("198.18.1.11:1719"), payload),
            1 => relay.handle_endpoint(t, a("198.18.1.12:1719"), payload),
            2 => {
                let from = if op & 0x80 == 0 { "198.18.2.10:1719" } else { "198.18.3.10:1719" };
                // Sent to the first endpoint's own address, or the shared one.
                let to = if op & 0x40 == 0 { "198.18.2.1:20000" } else { "198.18.2.1:1719" };
                relay.handle_gatekeeper_at(t, a(from), Some(a(to)), payload)
            }
            3 => {
                t += Duration::from_millis(u64::from(payload.first().copied().unwrap_or(1)));
                relay.handle_timeout(t);
                if let Some(c) = &mut call {
                    c.handle_timeout(t);
                }
            }
            _ => {
                let c = call.get_or_insert_with(|| {
                    leg = Leg::Caller;
                    Call::accept(t, call_cfg(), LegSide::Endpoint, None, None)
                });
                if op & 0x60 == 0x60 {
                    // A gatekeeper's SETUP for this call on a new link.
                    let _ = c.handle_splice(t, None, payload, Some("backup".into()));
                } else if op & 0x40 != 0 {
                    c.handle_leg_lost(t, leg, LegLoss::Closed);
                } else {
                    c.handle_frame(t, leg, Bytes::copy_from_slice(payload));
                }
                // Serve its requests as the driver does.
                while let Some(ev) = c.poll_event() {
                    match ev {
                        CallEvent::Route(q) => c.handle_route(t, relay.route(&q)),
                        CallEvent::Connect { .. } if op & 0x80 == 0 => c.handle_connected(t),
                        CallEvent::Connect { .. } => c.handle_connect_failed(t, "fuzz"),
                        CallEvent::H245Listen { .. } => {
                            c.handle_h245_listener(t, Ok(a("198.18.1.1:40000")))
                        }
                        _ => {}
                    }
                }
                while c.poll_transmit().is_some() {}
                if c.is_relaying() {
                    leg = leg.other();
                }
                if c.is_closed() {
                    call = None;
                }
            }
        }
        while relay.poll_transmit().is_some() {}
        while let Some(ev) = relay.poll_event() {
            match (ev, call.as_mut()) {
                (Event::Reanchor(r), Some(c)) => c.handle_reanchor(t, &r),
                (Event::ControllerLost { .. }, Some(c)) => c.handle_controller_lost(t),
                (Event::Unanchored { .. }, Some(c)) => c.handle_unanchored(t),
                _ => {}
            }
        }
    }
    // Only the two endpoint addresses exist; nothing else can be registered.
    assert!(relay.registrations().len() <= 2);
});
