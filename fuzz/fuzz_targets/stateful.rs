//! The RAS relay driven by sequences of *valid* requests from several
//! hosts on the endpoint LAN (two addresses, three ports each), against
//! two gatekeepers that come and go, with time passing; after every step
//! the invariants a hostile LAN must not break:
//!
//! - no source holds two registrations, no endpointIdentifier is given
//!   twice;
//! - no alias is held by two sources (the gatekeepers here refuse a
//!   duplicate alias as GnuGk does; in survivable mode the proxy must);
//! - the tables stay within the configured limits (registrations in all
//!   and per address, calls per endpoint);
//! - a route by alias goes to the holder of that alias.
//!
//! Input: records of [op, arg]. op % 9 picks the step: full RRQ, keepalive,
//! URQ, ARQ, LRQ, a gatekeeper going down or up, time passing, garbage, a
//! route query; the source is arg % 6, the aliases or the callee from the
//! other bits.
#![no_main]
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use proxy_proto::budget::Rate;
use proxy_proto::call::RouteQuery;
use proxy_proto::gatekeeper::HeartbeatConfig;
use proxy_proto::h225::alias::Alias;
use proxy_proto::h225::ras::{self, RasMessage};
use proxy_proto::h225::value::{alias_text, bmp_text, hex, ras_from_json, socket_addr, transport_json};
use proxy_proto::h225::PROTOCOL_ID;
use proxy_proto::identity::IdentityPool;
use proxy_proto::ras_relay::{CallRoute, GatekeeperConfig, RasRelay, RelayConfig, RelayLimits, Side};
use serde_json::{json, Value};

const SOURCES: [&str; 6] = [
    "198.18.1.11:1719",
    "198.18.1.11:1721",
    "198.18.1.11:1723",
    "198.18.1.12:1719",
    "198.18.1.12:1721",
    "198.18.1.12:1723",
];
const NUMBERS: [&str; 4] = ["1001", "1002", "1003", "1004"];
const GKS: [&str; 2] = ["198.18.2.10:1719", "198.18.3.10:1719"];
const MAX_REGISTRATIONS: usize = 5;
const PER_SOURCE: usize = 2;
const CALLS_PER_ENDPOINT: usize = 2;

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
        gatekeepers: GKS
            .iter()
            .zip(["primary", "backup"])
            .map(|(g, n)| GatekeeperConfig { name: n.into(), ras: a(g) })
            .collect(),
        heartbeat: HeartbeatConfig { interval: Duration::from_millis(40), multiplier: 3 },
        failback_hold: Duration::from_millis(500),
        preempt: true,
        reregister_rate: 1000,
        reregister_in_flight: 256,
        local_ttl: 60,
        reanchor_deadline: Duration::from_secs(30),
        dial_plan: Vec::new(),
        identities: Some(
            IdentityPool::new(vec![a("198.18.2.1:0").ip()], 20_000..=20_007).unwrap(),
        ),
        own_password: None,
        credentials: HashMap::new(),
        limits: RelayLimits {
            ras_budget: Rate { per_second: 1000, burst: 1000 },
            max_sources: 8,
            max_registrations: MAX_REGISTRATIONS,
            max_registrations_per_source: PER_SOURCE,
            max_aliases_per_request: 3,
            max_destinations: 2,
            max_outstanding_per_source: 4,
            max_calls_per_endpoint: CALLS_PER_ENDPOINT,
        },
    }
}

/// A gatekeeper that, like GnuGk, gives each alias to one registration
/// (keyed by the rasAddress it registers) and answers what it knows.
#[derive(Default)]
struct Gk {
    alive: bool,
    next: u32,
    /// Its endpointIdentifier → (rasAddress, aliases).
    regs: HashMap<String, (SocketAddr, Vec<String>)>,
}

impl Gk {
    fn answer(&mut self, name: &str, bytes: &[u8]) -> Option<Vec<u8>> {
        let m = ras::decode(bytes).expect("the proxy sends valid RAS");
        let seq = proxy_proto::h225::value::seq_num(&m)?;
        let v = match m {
            RasMessage::registrationRequest(rrq) if rrq.keep_alive == Some(true) => {
                let id = bmp_text(&rrq.endpoint_identifier?.0);
                if self.regs.contains_key(&id) {
                    json!({"registrationConfirm": {"requestSeqNum": seq, "protocolIdentifier": PROTOCOL_ID, "callSignalAddress": [], "gatekeeperIdentifier": name, "endpointIdentifier": id, "timeToLive": 30}})
                } else {
                    json!({"registrationReject": {"requestSeqNum": seq, "protocolIdentifier": PROTOCOL_ID, "rejectReason": {"fullRegistrationRequired": null}}})
                }
            }
            RasMessage::registrationRequest(rrq) => {
                let ras = rrq.ras_address.first().and_then(socket_addr)?;
                let aliases: Vec<String> =
                    rrq.terminal_alias.iter().flatten().map(alias_text).collect();
                let taken = self
                    .regs
                    .values()
                    .any(|(r, held)| *r != ras && held.iter().any(|h| aliases.contains(h)));
                if taken {
                    json!({"registrationReject": {"requestSeqNum": seq, "protocolIdentifier": PROTOCOL_ID, "rejectReason": {"duplicateAlias": []}}})
                } else {
                    self.regs.retain(|_, (r, _)| *r != ras);
                    self.next += 1;
                    let id = format!("{name}-{}", self.next);
                    self.regs.insert(id.clone(), (ras, aliases));
                    json!({"registrationConfirm": {"requestSeqNum": seq, "protocolIdentifier": PROTOCOL_ID, "callSignalAddress": [transport_json(a("198.18.2.10:1720"))], "gatekeeperIdentifier": name, "endpointIdentifier": id, "timeToLive": 30}})
                }
            }
            RasMessage::admissionRequest(_) => {
                json!({"admissionConfirm": {"requestSeqNum": seq, "bandWidth": 640, "callModel": {"direct": null}, "destCallSignalAddress": transport_json(a("198.18.2.1:1720"))}})
            }
            RasMessage::unregistrationRequest(u) => {
                if let Some(e) = u.endpoint_identifier {
                    self.regs.remove(&bmp_text(&e.0));
                }
                json!({"unregistrationConfirm": {"requestSeqNum": seq}})
            }
            RasMessage::disengageRequest(_) => json!({"disengageConfirm": {"requestSeqNum": seq}}),
            _ => return None,
        };
        Some(ras::encode(&ras_from_json(&v).ok()?).ok()?)
    }
}

fn vendor() -> Value {
    json!({"vendor": {"t35CountryCode": 181, "t35Extension": 0, "manufacturerCode": 18}})
}

fn encode(v: Value) -> Vec<u8> {
    ras::encode(&ras_from_json(&v).unwrap()).unwrap()
}

struct World {
    relay: RasRelay,
    gks: [Gk; 2],
    t: Instant,
    seq: u16,
    /// The endpointIdentifier each source was last given.
    ids: HashMap<SocketAddr, String>,
}

impl World {
    fn seq(&mut self) -> u16 {
        self.seq = self.seq % 60_000 + 1;
        self.seq
    }

    /// Deliver what the relay sent: to live gatekeepers (their answers
    /// come back at once), and note the identifiers endpoints are given.
    fn pump(&mut self) {
        for _ in 0..10_000 {
            let Some(tx) = self.relay.poll_transmit() else { break };
            match tx.side {
                Side::Endpoint => {
                    if let Ok(RasMessage::registrationConfirm(rcf)) = ras::decode(&tx.bytes) {
                        self.ids.insert(tx.to, bmp_text(&rcf.endpoint_identifier.0));
                    }
                }
                Side::Gatekeeper => {
                    let Some(g) = GKS.iter().position(|g| a(g) == tx.to) else { continue };
                    if !self.gks[g].alive {
                        continue;
                    }
                    let name = ["GK-A", "GK-B"][g];
                    if let Some(reply) = self.gks[g].answer(name, &tx.bytes) {
                        self.relay.handle_gatekeeper_at(self.t, tx.to, tx.from, &reply);
                    }
                }
            }
        }
        while self.relay.poll_event().is_some() {}
    }

    fn check(&self) {
        let regs = self.relay.registrations();
        let mut sources = HashSet::new();
        let mut ids = HashSet::new();
        let mut holder: HashMap<String, SocketAddr> = HashMap::new();
        let mut per_ip: HashMap<std::net::IpAddr, usize> = HashMap::new();
        for r in regs.iter() {
            assert!(sources.insert(r.source), "{} holds two registrations", r.source);
            assert!(ids.insert(r.endpoint_id.clone()), "{} given twice", r.endpoint_id);
            *per_ip.entry(r.source.ip()).or_default() += 1;
            for al in &r.aliases {
                let v = Alias::of(al).value();
                if let Some(other) = holder.insert(v.clone(), r.source) {
                    assert_eq!(other, r.source, "alias {v} held by {other} and {}", r.source);
                }
            }
        }
        assert!(regs.len() <= MAX_REGISTRATIONS, "{} registrations", regs.len());
        for (ip, n) in per_ip {
            assert!(n <= PER_SOURCE, "{n} registrations from {ip}");
        }
        let mut calls: HashMap<&str, usize> = HashMap::new();
        for c in self.relay.calls() {
            *calls.entry(c.endpoint_id.as_str()).or_default() += 1;
        }
        for (ep, n) in calls {
            assert!(n <= CALLS_PER_ENDPOINT, "{ep} has {n} calls");
        }
        // Routing by alias reaches its holder.
        for n in NUMBERS {
            let q = RouteQuery {
                call_id: None,
                destinations: vec![Alias::of(&proxy_proto::h225::asn::h323_messages::AliasAddress::dialledDigits(n.try_into().unwrap()))],
                from_gatekeeper: true,
                accepted_on: None,
                peer: None,
            };
            if let Some(CallRoute::Local { endpoint_id, .. }) = self.relay.route(&q).route {
                let r = regs.get(&endpoint_id).expect("routed to a registration");
                assert_eq!(holder.get(n), Some(&r.source), "{n} routed to {endpoint_id}");
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let t0 = Instant::now();
    let mut w = World {
        relay: RasRelay::new(cfg(), t0),
        gks: [Gk { alive: true, ..Gk::default() }, Gk { alive: true, ..Gk::default() }],
        t: t0,
        seq: 0,
        ids: HashMap::new(),
    };
    w.relay.handle_timeout(t0);
    w.pump();
    for step in data.chunks_exact(2).take(400) {
        let (op, arg) = (step[0], step[1]);
        let src = a(SOURCES[usize::from(arg) % SOURCES.len()]);
        let id = w.ids.get(&src).cloned().unwrap_or_else(|| "none".into());
        let seq = w.seq();
        let bytes = match op % 9 {
            0 => {
                // Aliases: the numbers whose bit is set in the op's high
                // nibble, and an h323-ID per source.
                let mut aliases = vec![json!({"h323-ID": format!("h{}", arg % 6)})];
                for (i, n) in NUMBERS.iter().enumerate() {
                    if op & (0x10 << i) != 0 {
                        aliases.push(json!({"dialledDigits": n}));
                    }
                }
                let mut cs = src;
                cs.set_port(src.port() + 1);
                Some(encode(json!({"registrationRequest": {"requestSeqNum": seq, "protocolIdentifier": PROTOCOL_ID, "discoveryComplete": true,
                    "callSignalAddress": [transport_json(cs)], "rasAddress": [transport_json(src)],
                    "terminalType": {"terminal": {}, "mc": false, "undefinedNode": false},
                    "terminalAlias": aliases, "endpointVendor": vendor(), "timeToLive": 60, "keepAlive": false}})))
            }
            1 => Some(encode(json!({"registrationRequest": {"requestSeqNum": seq, "protocolIdentifier": PROTOCOL_ID, "discoveryComplete": false,
                "callSignalAddress": [], "rasAddress": [transport_json(src)],
                "terminalType": {"terminal": {}, "mc": false, "undefinedNode": false},
                "endpointVendor": vendor(), "timeToLive": 60, "keepAlive": true, "endpointIdentifier": id}}))),
            2 => {
                let mut cs = src;
                cs.set_port(src.port() + 1);
                Some(encode(json!({"unregistrationRequest": {"requestSeqNum": seq, "callSignalAddress": [transport_json(cs)], "endpointIdentifier": id}})))
            }
            3 => {
                let call = [op, arg, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
                Some(encode(json!({"admissionRequest": {"requestSeqNum": seq, "callType": {"pointToPoint": null}, "callModel": {"direct": null},
                    "endpointIdentifier": id, "destinationInfo": [{"dialledDigits": NUMBERS[usize::from(op >> 4) % 4]}], "srcInfo": [{"h323-ID": "x"}],
                    "bandWidth": 1280, "callReferenceValue": 7, "conferenceID": hex(&call), "activeMC": false, "answerCall": op & 0x80 != 0,
                    "callIdentifier": {"guid": hex(&call)}}})))
            }
            4 => Some(encode(json!({"locationRequest": {"requestSeqNum": seq, "destinationInfo": [{"dialledDigits": NUMBERS[usize::from(op >> 4) % 4]}],
                "replyAddress": transport_json(src)}}))),
            5 => {
                let g = usize::from(op >> 7);
                w.gks[g].alive = !w.gks[g].alive;
                None
            }
            6 => {
                w.t += Duration::from_millis(u64::from(arg) * 20);
                w.relay.handle_timeout(w.t);
                None
            }
            7 => Some(vec![op, arg, op ^ arg, 0x40]),
            _ => None,
        };
        if let Some(b) = bytes {
            w.relay.handle_endpoint(w.t, src, &b);
        }
        w.relay.handle_timeout(w.t);
        w.pump();
        w.check();
    }
});
