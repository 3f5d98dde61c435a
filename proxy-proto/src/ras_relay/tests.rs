//! The RAS relay against scripted gatekeepers, with made-up time.

use std::collections::HashMap;

use serde_json::{Value, json};

use super::*;
use crate::h225::PROTOCOL_ID;
use crate::h225::value::{alias_text, ras_from_json, transport_json};

fn vendor_json() -> Value {
    json!({"vendor": {"t35CountryCode": 181, "t35Extension": 0, "manufacturerCode": 18}})
}

const MS: Duration = Duration::from_millis(1);

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn cfg() -> RelayConfig {
    RelayConfig {
        // Another interface's address, and the LAN's directed broadcast.
        host_addresses: vec![
            "198.18.9.1".parse().unwrap(),
            "198.18.1.255".parse().unwrap(),
        ],
        proxy_id: "PROXY".into(),
        endpoint_ras: addr("198.18.1.1:1719"),
        endpoint_call_signal: addr("198.18.1.1:1720"),
        gatekeeper_ras: addr("198.18.2.1:1719"),
        gatekeeper_call_signal: addr("198.18.2.1:1720"),
        gatekeepers: vec![
            GatekeeperConfig {
                name: "primary".into(),
                ras: addr("198.18.2.10:1719"),
            },
            GatekeeperConfig {
                name: "backup".into(),
                ras: addr("198.18.2.11:1719"),
            },
        ],
        heartbeat: HeartbeatConfig {
            interval: 50 * MS,
            multiplier: 3,
        },
        failback_hold: Duration::from_secs(1),
        preempt: true,
        reregister_rate: 1000,
        reregister_in_flight: 32,
        local_ttl: 60,
        reanchor_deadline: Duration::from_secs(30),
        dial_plan: vec![DialRule {
            prefix: "9".into(),
            strip: 1,
            prepend: String::new(),
        }],
        identities: None,
        own_password: None,
        credentials: HashMap::new(),
        limits: RelayLimits::generous(),
    }
}

/// A scripted gatekeeper: registers anyone, admits calls to aliases it
/// knows by sending them to the proxy, acknowledges IRRs.
struct FakeGk {
    addr: SocketAddr,
    name: &'static str,
    alive: bool,
    next: u32,
    /// endpointIdentifier -> aliases.
    regs: HashMap<String, Vec<String>>,
    /// Unsolicited IRRs received: (endpointIdentifier, number of calls).
    irrs: Vec<(String, usize)>,
    rrqs: usize,
    /// Full RRQs to ignore (a gatekeeper too busy to answer).
    drop_full_rrqs: usize,
    /// Full RRQs with an alias containing this are refused (duplicateAlias).
    reject_alias: Option<&'static str>,
    /// Whether every RRQ must carry the proxy's shared addresses.
    shared: bool,
    /// (callSignalAddress, rasAddress) of each full registration.
    addrs: HashMap<String, (SocketAddr, SocketAddr)>,
    /// rasAddress of each lightweight RRQ, by endpointIdentifier.
    refreshed: Vec<(String, SocketAddr)>,
    /// Password tokens of RRQs: (keepAlive, alias, whether the hash
    /// verifies with the password the test gave that alias).
    tokens: Vec<(bool, String, bool)>,
    /// ARQs received: (callIdentifier, answerCall).
    arqs: Vec<([u8; 16], bool)>,
    /// Gatekeeper-routed: ACFs name its own signalling port.
    routed: bool,
    /// ARQs to refuse (calledPartyNotRegistered) before admitting.
    refuse_arqs: usize,
}

impl FakeGk {
    fn new(addr: &str, name: &'static str) -> Self {
        Self {
            addr: super::tests::addr(addr),
            name,
            alive: true,
            next: 0,
            regs: HashMap::new(),
            irrs: vec![],
            rrqs: 0,
            drop_full_rrqs: 0,
            reject_alias: None,
            shared: true,
            addrs: HashMap::new(),
            refreshed: vec![],
            tokens: vec![],
            arqs: vec![],
            routed: false,
            refuse_arqs: 0,
        }
    }

    /// Answer a datagram sent from `from` (`None`: the proxy's shared
    /// socket, 198.18.2.1:1719 in these tests).
    fn answer(&mut self, bytes: &[u8], from: Option<SocketAddr>) -> Option<Vec<u8>> {
        let m = ras::decode(bytes).expect("the proxy sends valid RAS");
        let seq = seq_num(&m).unwrap();
        let v = match m {
            RasMessage::registrationRequest(rrq) => {
                self.rrqs += 1;
                // Like GnuGk (and stricter: the port too), an RRQ must come
                // from the rasAddress it registers.
                let sender = from.unwrap_or(addr("198.18.2.1:1719"));
                if let Some(ras) = rrq.ras_address.first().and_then(socket_addr) {
                    assert_eq!(ras, sender, "RRQ not sent from its rasAddress");
                }
                for t in rrq.crypto_tokens.iter().flatten() {
                    if let crate::h225::asn::h323_messages::CryptoH323Token::cryptoEPPwdHash(p) = t
                    {
                        let alias = alias_text(&p.alias);
                        let bare = alias
                            .split_once(':')
                            .map(|(_, v)| v.to_string())
                            .unwrap_or(alias.clone());
                        let pw = if bare == "PROXY" {
                            "proxy-secret"
                        } else {
                            "ep-secret"
                        };
                        let want = crate::h225::h235::pwd_hash(&bare, pw, p.time_stamp.0).unwrap();
                        let ok = p.token.hash.as_raw_slice() == want.as_slice();
                        self.tokens.push((rrq.keep_alive == Some(true), bare, ok));
                    }
                }
                if rrq.keep_alive == Some(true) {
                    let id = bmp_text(&rrq.endpoint_identifier.unwrap().0);
                    if let Some(a) = rrq.ras_address.first().and_then(socket_addr) {
                        self.refreshed.push((id.clone(), a));
                    }
                    if self.regs.contains_key(&id) {
                        json!({"registrationConfirm": {"requestSeqNum": seq, "protocolIdentifier": PROTOCOL_ID, "callSignalAddress": [], "gatekeeperIdentifier": self.name, "endpointIdentifier": id, "timeToLive": 30}})
                    } else {
                        json!({"registrationReject": {"requestSeqNum": seq, "protocolIdentifier": PROTOCOL_ID, "rejectReason": {"fullRegistrationRequired": null}}})
                    }
                } else if self.drop_full_rrqs > 0 {
                    self.drop_full_rrqs -= 1;
                    return None;
                } else if self.reject_alias.is_some_and(|x| {
                    rrq.terminal_alias
                        .iter()
                        .flatten()
                        .any(|a| alias_text(a).contains(x))
                }) {
                    json!({"registrationReject": {"requestSeqNum": seq, "protocolIdentifier": PROTOCOL_ID, "rejectReason": {"duplicateAlias": []}}})
                } else {
                    // The proxy must hide endpoints' own addresses.
                    if self.shared {
                        assert_eq!(rrq.ras_address, vec![transport(addr("198.18.2.1:1719"))]);
                        assert_eq!(
                            rrq.call_signal_address,
                            vec![transport(addr("198.18.2.1:1720"))]
                        );
                    }
                    self.next += 1;
                    let id = format!("{}-{}", self.name, self.next);
                    let cs = rrq.call_signal_address.first().and_then(socket_addr);
                    let ras = rrq.ras_address.first().and_then(socket_addr);
                    self.addrs.insert(id.clone(), (cs.unwrap(), ras.unwrap()));
                    let aliases = rrq
                        .terminal_alias
                        .iter()
                        .flatten()
                        .map(alias_text)
                        .collect();
                    self.regs.insert(id.clone(), aliases);
                    json!({"registrationConfirm": {"requestSeqNum": seq, "protocolIdentifier": PROTOCOL_ID, "callSignalAddress": [transport_json(self.addr)], "gatekeeperIdentifier": self.name, "endpointIdentifier": id, "timeToLive": 30,
                        "alternateGatekeeper": [{"rasAddress": transport_json(addr("198.18.2.11:1719")), "needToRegister": true, "priority": 1}]}})
                }
            }
            RasMessage::admissionRequest(arq) => {
                let id = bmp_text(&arq.endpoint_identifier.0);
                assert!(
                    self.regs.contains_key(&id),
                    "ARQ with the gatekeeper's own id, got {id}"
                );
                let call = arq
                    .call_identifier
                    .as_ref()
                    .map(|c| guid(c.guid.0.as_ref()));
                self.arqs.push((call.unwrap_or_default(), arq.answer_call));
                if self.refuse_arqs > 0 {
                    self.refuse_arqs -= 1;
                    json!({"admissionReject": {"requestSeqNum": seq, "rejectReason": {"calledPartyNotRegistered": null}}})
                } else if self.routed {
                    let mut own = self.addr;
                    own.set_port(1721);
                    json!({"admissionConfirm": {"requestSeqNum": seq, "bandWidth": 640, "callModel": {"gatekeeperRouted": null}, "destCallSignalAddress": transport_json(own)}})
                } else {
                    json!({"admissionConfirm": {"requestSeqNum": seq, "bandWidth": 640, "callModel": {"direct": null}, "destCallSignalAddress": transport_json(addr("198.18.2.1:1720"))}})
                }
            }
            RasMessage::infoRequestResponse(irr) => {
                let n = irr.per_call_info.as_ref().map(|p| p.0.len()).unwrap_or(0);
                self.irrs.push((bmp_text(&irr.endpoint_identifier.0), n));
                json!({"infoRequestAck": {"requestSeqNum": seq}})
            }
            RasMessage::disengageRequest(_) => json!({"disengageConfirm": {"requestSeqNum": seq}}),
            RasMessage::unregistrationRequest(_) => {
                json!({"unregistrationConfirm": {"requestSeqNum": seq}})
            }
            _ => return None,
        };
        Some(ras::encode(&ras_from_json(&v).unwrap()).unwrap())
    }
}

/// Run the relay to `now`, delivering its gatekeeper traffic to the live
/// fake gatekeepers (replies arrive at the same instant). Returns what it
/// sent to endpoints.
fn pump(r: &mut RasRelay, now: Instant, gks: &mut [FakeGk]) -> Vec<Transmit> {
    r.handle_timeout(now);
    let mut to_eps = vec![];
    for _ in 0..10_000 {
        let Some(t) = r.poll_transmit() else { break };
        match t.side {
            Side::Endpoint => to_eps.push(t),
            Side::Gatekeeper => {
                let g = gks
                    .iter_mut()
                    .find(|g| g.addr == t.to)
                    .expect("sent to a configured gatekeeper");
                if !g.alive {
                    continue;
                }
                if let Some(reply) = g.answer(&t.bytes, t.from) {
                    let from = g.addr;
                    r.handle_gatekeeper(now, from, &reply);
                }
            }
        }
    }
    to_eps
}

/// Advance time in 10 ms steps for `d`.
fn run(r: &mut RasRelay, t: &mut Instant, d: Duration, gks: &mut [FakeGk]) -> Vec<Transmit> {
    let until = *t + d;
    let mut v = vec![];
    while *t < until {
        *t += 10 * MS;
        v.extend(pump(r, *t, gks));
    }
    v
}

fn two_gks() -> Vec<FakeGk> {
    vec![
        FakeGk::new("198.18.2.10:1719", "GK-A"),
        FakeGk::new("198.18.2.11:1719", "GK-B"),
    ]
}

const EP1: &str = "198.18.1.11:1719";
const EP2: &str = "198.18.1.12:1719";

fn rrq(seq: u16, alias: &str, number: &str, ep: &str) -> Vec<u8> {
    let v = json!({"registrationRequest": {"requestSeqNum": seq, "protocolIdentifier": PROTOCOL_ID, "discoveryComplete": true,
        "callSignalAddress": [transport_json(addr(&ep.replace("1719", "1720")))], "rasAddress": [transport_json(addr(ep))],
        "terminalType": {"terminal": {}, "mc": false, "undefinedNode": false},
        "terminalAlias": [{"h323-ID": alias}, {"dialledDigits": number}],
        "endpointVendor": vendor_json(), "timeToLive": 60, "keepAlive": false}});
    ras::encode(&ras_from_json(&v).unwrap()).unwrap()
}

fn keepalive(seq: u16, id: &str, ep: &str) -> Vec<u8> {
    let v = json!({"registrationRequest": {"requestSeqNum": seq, "protocolIdentifier": PROTOCOL_ID, "discoveryComplete": false,
        "callSignalAddress": [], "rasAddress": [transport_json(addr(ep))],
        "terminalType": {"terminal": {}, "mc": false, "undefinedNode": false},
        "endpointVendor": vendor_json(), "timeToLive": 60, "keepAlive": true, "endpointIdentifier": id}});
    ras::encode(&ras_from_json(&v).unwrap()).unwrap()
}

fn arq(seq: u16, id: &str, dest: &str, call: u8) -> Vec<u8> {
    let v = json!({"admissionRequest": {"requestSeqNum": seq, "callType": {"pointToPoint": null}, "callModel": {"direct": null},
        "endpointIdentifier": id, "destinationInfo": [{"dialledDigits": dest}], "srcInfo": [{"h323-ID": "x"}],
        "bandWidth": 1280, "callReferenceValue": 7, "conferenceID": hex(&[call; 16]), "activeMC": false, "answerCall": false,
        "callIdentifier": {"guid": hex(&[call; 16])}}});
    ras::encode(&ras_from_json(&v).unwrap()).unwrap()
}

fn only(v: Vec<Transmit>) -> RasMessage {
    assert_eq!(v.len(), 1, "expected one datagram to endpoints, got {v:?}");
    ras::decode(&v[0].bytes).unwrap()
}

/// A relay with the primary in control and EP1 registered; returns its id.
fn registered() -> (RasRelay, Vec<FakeGk>, Instant, String) {
    let mut t = Instant::now();
    let mut gks = two_gks();
    let mut r = RasRelay::new(cfg(), t);
    run(&mut r, &mut t, 20 * MS, &mut gks);
    assert_eq!(r.active(), Some("primary"));
    r.handle_endpoint(t, addr(EP1), &rrq(1, "alice", "1001", EP1));
    let RasMessage::registrationConfirm(rcf) = only(pump(&mut r, t, &mut gks)) else {
        panic!("RCF expected")
    };
    assert_eq!(rcf.request_seq_num.0, 1);
    assert_eq!(
        rcf.call_signal_address,
        vec![transport(addr("198.18.1.1:1720"))]
    );
    assert_eq!(
        rcf.alternate_gatekeeper, None,
        "endpoints never learn the gatekeepers behind the proxy"
    );
    let id = bmp_text(&rcf.endpoint_identifier.0);
    (r, gks, t, id)
}

#[test]
fn registers_through_the_primary_and_answers_keepalives_itself() {
    let (mut r, mut gks, t, id) = registered();
    assert_eq!(
        id, "GK-A-2",
        "the first registration keeps the gatekeeper's identifier (GK-A-1 is the proxy)"
    );
    let before = gks[0].rrqs;
    for seq in 2..12 {
        r.handle_endpoint(t, addr(EP1), &keepalive(seq, &id, EP1));
        let RasMessage::registrationConfirm(rcf) = only(pump(&mut r, t, &mut gks)) else {
            panic!()
        };
        assert_eq!(rcf.request_seq_num.0, seq);
        assert_eq!(bmp_text(&rcf.endpoint_identifier.0), id);
    }
    assert_eq!(r.stats().keepalives_answered, 10);
    assert_eq!(
        gks[0].rrqs, before,
        "endpoint keepalives are not relayed to the gatekeeper"
    );
}

#[test]
fn primary_silence_moves_control_to_the_backup_without_changing_endpoint_ids() {
    let (mut r, mut gks, mut t, id) = registered();
    r.handle_endpoint(t, addr(EP1), &arq(2, &id, "1002", 9));
    let RasMessage::admissionConfirm(acf) = only(pump(&mut r, t, &mut gks)) else {
        panic!()
    };
    assert_eq!(
        acf.dest_call_signal_address,
        transport(addr("198.18.1.1:1720")),
        "calls are set up through the proxy"
    );
    assert_eq!(r.calls().count(), 1);

    gks[0].alive = false;
    let killed = t;
    let mut moved = None;
    for _ in 0..100 {
        t += 10 * MS;
        pump(&mut r, t, &mut gks);
        if r.active() == Some("backup") {
            moved = Some(t - killed);
            break;
        }
    }
    let moved = moved.expect("control moved to the backup");
    assert!(
        moved <= 150 * MS + 10 * MS,
        "detection within interval x multiplier, took {moved:?}"
    );
    run(&mut r, &mut t, 100 * MS, &mut gks);
    assert_eq!(
        gks[1].regs.len(),
        2,
        "the proxy and its endpoint registered at the backup"
    );
    assert_eq!(
        gks[1].irrs,
        vec![("GK-B-2".to_string(), 1)],
        "the backup was told about the active call"
    );
    assert_eq!(
        gks[1].arqs,
        vec![([9; 16], false)],
        "the backup admitted the active call, by its own callIdentifier"
    );
    assert_eq!(r.stats().readmitted, 1);
    assert!(
        r.call(&[9; 16])
            .is_some_and(|c| c.admitted_by.as_deref() == Some("backup")),
        "{:?}",
        r.call(&[9; 16])
    );
    // The endpoint still uses its old identifier, and is still answered.
    r.handle_endpoint(t, addr(EP1), &keepalive(40, &id, EP1));
    let RasMessage::registrationConfirm(rcf) = only(pump(&mut r, t, &mut gks)) else {
        panic!()
    };
    assert_eq!(bmp_text(&rcf.endpoint_identifier.0), id);
    // New admissions go to the backup under its identifier for the endpoint.
    r.handle_endpoint(t, addr(EP1), &arq(41, &id, "1002", 10));
    assert!(matches!(
        only(pump(&mut r, t, &mut gks)),
        RasMessage::admissionConfirm(_)
    ));
    assert_eq!(r.stats().failovers, 1);
}

#[test]
fn with_no_gatekeeper_the_proxy_serves_registration_and_admission_by_dial_plan() {
    let (mut r, mut gks, mut t, id) = registered();
    gks[0].alive = false;
    gks[1].alive = false;
    run(&mut r, &mut t, 300 * MS, &mut gks);
    assert_eq!(r.active(), None, "survivable mode");
    r.handle_endpoint(t, addr(EP2), &rrq(1, "bob", "1002", EP2));
    let RasMessage::registrationConfirm(rcf) = only(pump(&mut r, t, &mut gks)) else {
        panic!()
    };
    let bob = bmp_text(&rcf.endpoint_identifier.0);
    assert!(bob.starts_with("PROXY-"), "{bob}");
    // Alice calls 91002: the dial plan strips the 9 and finds bob.
    r.handle_endpoint(t, addr(EP1), &arq(2, &id, "91002", 3));
    let RasMessage::admissionConfirm(acf) = only(pump(&mut r, t, &mut gks)) else {
        panic!()
    };
    assert_eq!(
        acf.dest_call_signal_address,
        transport(addr("198.18.1.1:1720"))
    );
    // An unknown number is refused with a reason.
    r.handle_endpoint(t, addr(EP1), &arq(3, &id, "5555", 4));
    let RasMessage::admissionReject(arj) = only(pump(&mut r, t, &mut gks)) else {
        panic!()
    };
    assert!(matches!(
        arj.reject_reason,
        crate::h225::asn::h323_messages::AdmissionRejectReason::calledPartyNotRegistered(_)
    ));
    // Keepalives still answered.
    r.handle_endpoint(t, addr(EP1), &keepalive(4, &id, EP1));
    assert!(matches!(
        only(pump(&mut r, t, &mut gks)),
        RasMessage::registrationConfirm(_)
    ));

    // The primary comes back: after the hold time control returns, and both
    // endpoints are registered there with their calls reported.
    gks[0].alive = true;
    gks[0].regs.clear();
    run(&mut r, &mut t, 500 * MS, &mut gks);
    assert_eq!(r.active(), None, "not before the hold time");
    run(&mut r, &mut t, 1_000 * MS, &mut gks);
    assert_eq!(r.active(), Some("primary"));
    assert_eq!(gks[0].regs.len(), 3, "proxy + alice + bob re-registered");
    assert_eq!(gks[0].irrs.len(), 1, "alice's survivable call reported");
}

#[test]
fn fails_back_to_the_primary_after_the_hold_time_unless_preempt_is_off() {
    for preempt in [true, false] {
        let mut c = cfg();
        c.preempt = preempt;
        let mut t = Instant::now();
        let mut gks = two_gks();
        let mut r = RasRelay::new(c, t);
        run(&mut r, &mut t, 20 * MS, &mut gks);
        gks[0].alive = false;
        run(&mut r, &mut t, 300 * MS, &mut gks);
        assert_eq!(r.active(), Some("backup"));
        gks[0].alive = true;
        run(&mut r, &mut t, 1_500 * MS, &mut gks);
        let want = if preempt { "primary" } else { "backup" };
        assert_eq!(r.active(), Some(want), "preempt = {preempt}");
    }
}

#[test]
fn malformed_spoofed_and_unknown_requests_change_nothing() {
    let (mut r, mut gks, t, id) = registered();
    let regs = r.registrations().len();
    r.handle_endpoint(t, addr(EP1), &[0xff, 0x00, 0x13]);
    assert!(pump(&mut r, t, &mut gks).is_empty());
    // A keepalive with alice's id from another address is refused.
    r.handle_endpoint(t, addr(EP2), &keepalive(5, &id, EP2));
    assert!(matches!(
        only(pump(&mut r, t, &mut gks)),
        RasMessage::registrationReject(_)
    ));
    // An ARQ from an unregistered endpoint gets ARJ callerNotRegistered.
    r.handle_endpoint(t, addr(EP2), &arq(6, "nobody", "1001", 1));
    assert!(matches!(
        only(pump(&mut r, t, &mut gks)),
        RasMessage::admissionReject(_)
    ));
    // Garbage from a gatekeeper address is counted and does not break it.
    r.handle_gatekeeper(t, addr("198.18.2.10:1719"), b"\x00\x01garbage");
    assert_eq!(r.stats().malformed, 2);
    assert_eq!(r.stats().refused, 2);
    assert_eq!(r.registrations().len(), regs);
    r.handle_endpoint(t, addr(EP1), &keepalive(7, &id, EP1));
    assert!(matches!(
        only(pump(&mut r, t, &mut gks)),
        RasMessage::registrationConfirm(_)
    ));
}

#[test]
fn gatekeeper_disengage_reaches_the_endpoint_under_its_own_id() {
    let (mut r, mut gks, t, id) = registered();
    let drq = json!({"disengageRequest": {"requestSeqNum": 900, "endpointIdentifier": "GK-A-2", "conferenceID": hex(&[1; 16]),
        "callReferenceValue": 7, "disengageReason": {"forcedDrop": null}, "callIdentifier": {"guid": hex(&[1; 16])}}});
    let bytes = ras::encode(&ras_from_json(&drq).unwrap()).unwrap();
    r.handle_gatekeeper(t, addr("198.18.2.10:1719"), &bytes);
    let out = pump(&mut r, t, &mut gks);
    assert_eq!(out[0].to, addr(EP1));
    let RasMessage::disengageRequest(d) = only(out) else {
        panic!()
    };
    assert_eq!(bmp_text(&d.endpoint_identifier.0), id);
    // The endpoint's DCF goes back to the gatekeeper with its sequence number.
    let dcf = ras::encode(
        &ras_from_json(&json!({"disengageConfirm": {"requestSeqNum": d.request_seq_num.0}}))
            .unwrap(),
    )
    .unwrap();
    r.handle_endpoint(t, addr(EP1), &dcf);
    let t2 = r.poll_transmit().expect("DCF relayed");
    assert_eq!(t2.to, addr("198.18.2.10:1719"));
    assert_eq!(seq_num(&ras::decode(&t2.bytes).unwrap()), Some(900));
}

#[test]
fn retransmissions_of_a_waiting_request_are_not_forwarded_again() {
    let (mut r, mut gks, mut t, _) = registered();
    let forwarded = |r: &RasRelay| r.stats().forwarded;
    let before = forwarded(&r);
    // The gatekeeper loses the first copy.
    gks[0].drop_full_rrqs = 1;
    r.handle_endpoint(t, addr(EP2), &rrq(7, "bob", "1002", EP2));
    assert!(pump(&mut r, t, &mut gks).is_empty());
    // Retransmissions while its answer is still to be expected (1 s here:
    // this gatekeeper answers at once) are absorbed.
    for _ in 0..3 {
        t += 100 * MS;
        r.handle_endpoint(t, addr(EP2), &rrq(7, "bob", "1002", EP2));
        assert!(pump(&mut r, t, &mut gks).is_empty());
    }
    assert_eq!(forwarded(&r) - before, 1);
    assert_eq!(r.stats().retransmissions_absorbed, 3);
    // Past that the first copy may be lost: the next one goes out.
    t += 1_500 * MS;
    r.handle_endpoint(t, addr(EP2), &rrq(7, "bob", "1002", EP2));
    assert!(matches!(
        only(pump(&mut r, t, &mut gks)),
        RasMessage::registrationConfirm(_)
    ));
    assert_eq!(forwarded(&r) - before, 2);
    // A new request (new sequence number) is never held back.
    r.handle_endpoint(t, addr(EP2), &rrq(8, "bob", "1002", EP2));
    assert!(matches!(
        only(pump(&mut r, t, &mut gks)),
        RasMessage::registrationConfirm(_)
    ));
    assert_eq!(forwarded(&r) - before, 3);
}

#[test]
fn lost_reregistrations_are_sent_again() {
    let (mut r, mut gks, mut t, _) = registered();
    r.handle_endpoint(t, addr(EP2), &rrq(1, "bob", "1002", EP2));
    pump(&mut r, t, &mut gks);
    gks[1].drop_full_rrqs = 2;
    gks[0].alive = false;
    run(&mut r, &mut t, 500 * MS, &mut gks);
    assert_eq!(r.active(), Some("backup"));
    assert_eq!(
        gks[1].regs.len(),
        1,
        "only the proxy itself: both endpoint RRQs were lost"
    );
    run(&mut r, &mut t, 2_500 * MS, &mut gks);
    assert_eq!(gks[1].regs.len(), 3, "re-sent after the retry time");
    assert_eq!(r.reregistrations_pending(), 0);
}

#[test]
fn reregistrations_wait_for_answers_beyond_the_window() {
    let mut t = Instant::now();
    let mut gks = two_gks();
    let mut c = cfg();
    c.reregister_in_flight = 2;
    let mut r = RasRelay::new(c, t);
    run(&mut r, &mut t, 20 * MS, &mut gks);
    for (i, (name, num, ep)) in [
        ("a", "1001", EP1),
        ("b", "1002", EP2),
        ("c", "1003", "198.18.1.4:1719"),
    ]
    .into_iter()
    .enumerate()
    {
        r.handle_endpoint(t, addr(ep), &rrq(1 + i as u16, name, num, ep));
        pump(&mut r, t, &mut gks);
    }
    // The backup swallows every endpoint RRQ: the window stays full.
    gks[1].drop_full_rrqs = 100;
    gks[0].alive = false;
    run(&mut r, &mut t, 1_000 * MS, &mut gks);
    assert_eq!(r.active(), Some("backup"));
    assert_eq!(
        100 - gks[1].drop_full_rrqs,
        2,
        "two in flight, the third waits"
    );
    assert_eq!(r.reregistrations_pending(), 1);
    // Answers free the window: everything gets through.
    gks[1].drop_full_rrqs = 0;
    run(&mut r, &mut t, 3_000 * MS, &mut gks);
    assert_eq!(gks[1].regs.len(), 4, "the proxy and its three endpoints");
    assert_eq!(r.reregistrations_pending(), 0);
}

#[test]
fn an_icmp_unreachable_is_a_hint_a_live_primary_keeps_control_a_dead_one_loses_it_within_a_probe() {
    let (mut r, mut gks, mut t, _) = registered();
    let primary = addr("198.18.2.10:1719");
    // The heartbeat's own RRQs over 2 s, for comparison.
    let quiet = r.stats().rrqs_to_gatekeepers;
    run(&mut r, &mut t, 2000 * MS, &mut gks);
    let baseline = r.stats().rrqs_to_gatekeepers - quiet;
    let sent_before = r.stats().rrqs_to_gatekeepers;
    // Forged unreachables, 100 a second for 2 s, while the primary answers.
    for _ in 0..200 {
        r.handle_unreachable(t, primary);
        run(&mut r, &mut t, 10 * MS, &mut gks);
        assert_eq!(r.active(), Some("primary"), "a forged ICMP moved control");
    }
    assert_eq!(r.stats().failovers, 0);
    // One hint an interval: 200 forgeries in 2 s of a 50 ms heartbeat
    // add 40 probes at most, not 200.
    let probes = r.stats().rrqs_to_gatekeepers - sent_before;
    assert!(
        probes <= baseline + 40,
        "{probes} RRQs for 200 forged ICMPs ({baseline} without)"
    );
    // A real one: the process is gone. Down within one probe's wait, not
    // interval × multiplier of silence.
    gks[0].alive = false;
    let at = t;
    r.handle_unreachable(t, primary);
    while r.active() == Some("primary") && t - at < 1000 * MS {
        run(&mut r, &mut t, 10 * MS, &mut gks);
    }
    assert_eq!(r.active(), Some("backup"));
    assert!(
        t - at <= 120 * MS,
        "control moved {:?} after the ICMP",
        t - at
    );
    pump(&mut r, t, &mut gks);
    assert_eq!(
        gks[1].regs.len(),
        2,
        "proxy and endpoint registered at the backup"
    );
}

#[test]
fn alternate_gatekeepers_announced_in_rcf_become_backups() {
    let mut c = cfg();
    c.gatekeepers.truncate(1);
    let mut t = Instant::now();
    // The fake primary announces 198.18.2.11:1719, which is the fake backup.
    let mut gks = two_gks();
    let mut r = RasRelay::new(c, t);
    run(&mut r, &mut t, 100 * MS, &mut gks);
    assert_eq!(r.active(), Some("primary"));
    r.handle_endpoint(t, addr(EP1), &rrq(1, "alice", "1001", EP1));
    pump(&mut r, t, &mut gks);
    assert_eq!(r.gatekeepers().len(), 2, "the alternate was learned");
    gks[0].alive = false;
    run(&mut r, &mut t, 300 * MS, &mut gks);
    assert_eq!(r.active(), Some("alternate-198.18.2.11:1719"));
    assert_eq!(
        gks[1].regs.len(),
        2,
        "proxy and alice registered at the alternate"
    );
}

#[test]
fn a_silent_endpoint_expires_after_one_and_a_half_time_to_live() {
    let (mut r, mut gks, mut t, id) = registered();
    r.handle_endpoint(t, addr(EP2), &rrq(1, "bob", "1002", EP2));
    pump(&mut r, t, &mut gks);
    assert_eq!(r.registrations().len(), 2);
    // The fake gatekeeper grants 30 s; alice keeps alive, bob goes silent.
    for i in 0..50u16 {
        run(&mut r, &mut t, Duration::from_secs(1), &mut gks);
        r.handle_endpoint(t, addr(EP1), &keepalive(100 + i, &id, EP1));
        pump(&mut r, t, &mut gks);
    }
    assert_eq!(r.active(), Some("primary"));
    assert_eq!(
        r.registrations().len(),
        1,
        "bob expired after 45 s of silence"
    );
    assert!(r.registrations().get(&id).is_some(), "alice kept");
}

#[test]
fn a_spoofed_reply_to_a_gatekeeper_request_changes_nothing() {
    let (mut r, mut gks, t, id) = registered();
    r.handle_endpoint(t, addr(EP2), &rrq(1, "bob", "1002", EP2));
    pump(&mut r, t, &mut gks);
    let urq = json!({"unregistrationRequest": {"requestSeqNum": 77, "callSignalAddress": [],
        "endpointIdentifier": "GK-A-2"}});
    r.handle_gatekeeper(
        t,
        addr("198.18.2.10:1719"),
        &ras::encode(&ras_from_json(&urq).unwrap()).unwrap(),
    );
    let RasMessage::unregistrationRequest(u) = only(pump(&mut r, t, &mut gks)) else {
        panic!()
    };
    let ucf = ras::encode(
        &ras_from_json(&json!({"unregistrationConfirm": {"requestSeqNum": u.request_seq_num.0}}))
            .unwrap(),
    )
    .unwrap();
    // Bob answers alice's URQ: refused, nobody unregistered.
    r.handle_endpoint(t, addr(EP2), &ucf);
    assert_eq!(r.registrations().len(), 2);
    assert!(
        r.poll_transmit().is_none(),
        "nothing relayed to the gatekeeper"
    );
    // Alice answers: she, and only she, is gone.
    r.handle_endpoint(t, addr(EP1), &ucf);
    assert_eq!(r.registrations().len(), 1);
    assert!(r.registrations().get(&id).is_none());
}

#[test]
fn gatekeeper_identifiers_that_collide_locally_get_a_proxy_identifier() {
    let (mut r, mut gks, mut t, alice) = registered();
    // Fail over: the backup numbers its endpoints from 1 again ("GK-B-..").
    gks[0].alive = false;
    run(&mut r, &mut t, 300 * MS, &mut gks);
    assert_eq!(r.active(), Some("backup"));
    // Make the backup hand out alice's identifier to a new endpoint.
    gks[1].name = "GK-A";
    gks[1].next = 1;
    r.handle_endpoint(t, addr(EP2), &rrq(1, "bob", "1002", EP2));
    let RasMessage::registrationConfirm(rcf) = only(pump(&mut r, t, &mut gks)) else {
        panic!()
    };
    let bob = bmp_text(&rcf.endpoint_identifier.0);
    assert_ne!(bob, alice, "two endpoints never share an identifier");
    assert_eq!(r.registrations().len(), 2);
    assert!(r.registrations().get(&alice).is_some());
}

#[test]
fn request_in_progress_is_passed_on_and_keeps_the_request_alive() {
    let (mut r, mut gks, mut t, id) = registered();
    r.handle_endpoint(t, addr(EP1), &arq(40, &id, "1002", 9));
    // Hold the ARQ back from the fake gatekeeper: this one is slow.
    let out = r.poll_transmit().expect("ARQ toward the gatekeeper");
    assert_eq!(out.side, Side::Gatekeeper);
    let ours = seq_num(&ras::decode(&out.bytes).unwrap()).unwrap();
    assert!(run(&mut r, &mut t, Duration::from_secs(8), &mut gks).is_empty());
    let rip = json!({"requestInProgress": {"requestSeqNum": ours, "delay": 9000}});
    r.handle_gatekeeper(
        t,
        gks[0].addr,
        &ras::encode(&ras_from_json(&rip).unwrap()).unwrap(),
    );
    let RasMessage::requestInProgress(seen) = only(pump(&mut r, t, &mut gks)) else {
        panic!("RIP passed to the endpoint")
    };
    assert_eq!(
        seen.request_seq_num.0, 40,
        "under the endpoint's own number"
    );
    // Past the usual pending lifetime counted from the ARQ, but not from the RIP.
    assert!(run(&mut r, &mut t, Duration::from_secs(7), &mut gks).is_empty());
    let acf = json!({"admissionConfirm": {"requestSeqNum": ours, "bandWidth": 640, "callModel": {"direct": null},
        "destCallSignalAddress": transport_json(addr("198.18.2.1:1720"))}});
    r.handle_gatekeeper(
        t,
        gks[0].addr,
        &ras::encode(&ras_from_json(&acf).unwrap()).unwrap(),
    );
    let RasMessage::admissionConfirm(acf) = only(pump(&mut r, t, &mut gks)) else {
        panic!("the late ACF still reaches the endpoint")
    };
    assert_eq!(acf.request_seq_num.0, 40);
}

#[test]
fn rejects_and_location_answers_never_reveal_the_gatekeepers() {
    let (mut r, mut gks, t, id) = registered();
    r.handle_endpoint(t, addr(EP1), &arq(41, &id, "1002", 10));
    let out = r.poll_transmit().unwrap();
    let ours = seq_num(&ras::decode(&out.bytes).unwrap()).unwrap();
    let arj = json!({"admissionReject": {"requestSeqNum": ours, "rejectReason": {"resourceUnavailable": null},
        "altGKInfo": {"alternateGatekeeper": [{"rasAddress": transport_json(addr("198.18.2.11:1719")), "needToRegister": true, "priority": 1}], "altGKisPermanent": true}}});
    r.handle_gatekeeper(
        t,
        gks[0].addr,
        &ras::encode(&ras_from_json(&arj).unwrap()).unwrap(),
    );
    let RasMessage::admissionReject(arj) = only(pump(&mut r, t, &mut gks)) else {
        panic!("ARJ expected")
    };
    assert_eq!(arj.request_seq_num.0, 41);
    assert_eq!(arj.alt_gkinfo, None);
}

#[test]
fn without_gatekeepers_the_next_timeout_moves_forward() {
    let mut c = cfg();
    c.gatekeepers.clear();
    let mut t = Instant::now();
    let mut r = RasRelay::new(c, t);
    for _ in 0..5 {
        t += Duration::from_secs(3);
        r.handle_timeout(t);
        assert!(
            r.poll_timeout() > t,
            "a timeout in the past would spin the driver"
        );
    }
}

#[test]
fn a_restored_table_keeps_identities_and_gatekeeper_bindings() {
    let (r, mut gks, mut t, id) = registered();
    let saved = r.snapshot();
    assert_eq!(saved.len(), 1);
    let json = serde_json::to_string(&saved).unwrap();
    let full_before = gks[0].rrqs;
    // A new daemon: same configuration, the table read back.
    let mut r2 = RasRelay::new(cfg(), t);
    assert_eq!(r2.restore(serde_json::from_str(&json).unwrap(), t), 1);
    run(&mut r2, &mut t, 50 * MS, &mut gks);
    // The endpoint's keepalive is answered under the same identifier...
    r2.handle_endpoint(t, addr(EP1), &keepalive(50, &id, EP1));
    let RasMessage::registrationConfirm(rcf) = only(pump(&mut r2, t, &mut gks)) else {
        panic!("RCF expected")
    };
    assert_eq!(bmp_text(&rcf.endpoint_identifier.0), id);
    // ...and the gatekeeper binding is refreshed with a lightweight RRQ
    // (the fake gatekeeper answers those only for identifiers it issued),
    // not registered again in full.
    run(&mut r2, &mut t, Duration::from_secs(1), &mut gks);
    assert!(
        gks[0].rrqs > full_before,
        "binding refreshed at the gatekeeper"
    );
    // The new daemon registers itself once more (it does not save its own
    // registration), but the endpoint is not registered again.
    let alice = gks[0]
        .regs
        .values()
        .filter(|a| a.iter().any(|x| x.contains("alice")))
        .count();
    assert_eq!(
        alice, 1,
        "EP1 registered once at the gatekeeper: {:?}",
        gks[0].regs
    );
    r2.handle_endpoint(t, addr(EP1), &arq(51, &id, "1002", 3));
    let RasMessage::admissionConfirm(_) = only(pump(&mut r2, t, &mut gks)) else {
        panic!("ACF through the restored binding")
    };
}

#[test]
fn parts_of_a_later_h225_version_are_relayed_unchanged_or_refused() {
    let mut t = Instant::now();
    let mut gks = two_gks();
    let mut r = RasRelay::new(cfg(), t);
    run(&mut r, &mut t, 20 * MS, &mut gks);
    // An RRQ with an extension addition this proxy does not know (as a
    // later H.225.0 version would send): relayed to the gatekeeper with it.
    let RasMessage::registrationRequest(mut m) =
        ras::decode(&rrq(1, "carol", "1003", EP1)).unwrap()
    else {
        unreachable!()
    };
    let unknown =
        rasn::types::UnknownExtensions::new(None, vec![(40, vec![0x01, 0x80]), (43, vec![0x00])]);
    m._unknown_extensions = unknown.clone();
    let bytes = ras::encode(&RasMessage::registrationRequest(m)).unwrap();
    assert_eq!(
        ras::encode(&ras::decode(&bytes).unwrap()).unwrap(),
        bytes,
        "decode then encode keeps the unknown additions"
    );
    r.handle_endpoint(t, addr(EP1), &bytes);
    r.handle_timeout(t);
    let mut to_gk = vec![];
    while let Some(x) = r.poll_transmit() {
        if x.side == Side::Gatekeeper {
            to_gk.push(ras::decode(&x.bytes).unwrap());
        }
    }
    let forwarded = to_gk
        .iter()
        .find_map(|m| match m {
            RasMessage::registrationRequest(m) if m.keep_alive != Some(true) => Some(m),
            _ => None,
        })
        .expect("the RRQ went to the gatekeeper");
    assert_eq!(
        forwarded._unknown_extensions.additions(),
        unknown.additions()
    );
    assert_eq!(forwarded._unknown_extensions.bitmap_len(), Some(44));
    // A RAS message type this proxy does not know is refused, not answered.
    let (refused, malformed) = (r.stats().refused, r.stats().malformed);
    // Extension bit, then extension alternative 20 (RasMessage knows 8),
    // then a two-octet open type.
    let unknown_type = [0x80 | 20, 0x02, 0x00, 0x00];
    assert!(matches!(
        ras::decode(&unknown_type).unwrap(),
        RasMessage::UnknownExtension(_)
    ));
    assert_eq!(
        ras::encode(&ras::decode(&unknown_type).unwrap()).unwrap(),
        unknown_type
    );
    r.handle_endpoint(t, addr(EP2), &unknown_type);
    assert!(pump(&mut r, t, &mut gks).is_empty());
    assert_eq!(r.stats().refused, refused + 1);
    assert_eq!(r.stats().malformed, malformed);
}

#[test]
fn at_start_the_primary_gets_one_detection_time_before_the_backup_is_chosen() {
    // The backup answers at once; the primary only at its probe at 100 ms
    // (detection time 150 ms): control goes to the primary, never to the
    // backup.
    let mut t = Instant::now();
    let mut gks = two_gks();
    gks[0].alive = false;
    let mut r = RasRelay::new(cfg(), t);
    run(&mut r, &mut t, 60 * MS, &mut gks);
    assert_eq!(r.active(), None, "waiting for the primary");
    gks[0].alive = true;
    run(&mut r, &mut t, 100 * MS, &mut gks);
    assert_eq!(r.active(), Some("primary"));
    assert_eq!(r.stats().failovers, 0);
    // A primary that stays silent: the backup after the detection time.
    let mut t = Instant::now();
    let mut gks = two_gks();
    gks[0].alive = false;
    let mut r = RasRelay::new(cfg(), t);
    run(&mut r, &mut t, 100 * MS, &mut gks);
    assert_eq!(r.active(), None);
    run(&mut r, &mut t, 100 * MS, &mut gks);
    assert_eq!(r.active(), Some("backup"));
}

#[test]
fn every_endpoint_gets_its_own_gatekeeper_side_address() {
    let mut c = cfg();
    let range = 20_000..=20_009;
    c.identities = Some(IdentityPool::new(vec![addr("198.18.2.1:0").ip()], range.clone()).unwrap());
    let mut t = Instant::now();
    let mut gks = two_gks();
    for g in &mut gks {
        g.shared = false;
    }
    let mut r = RasRelay::new(c.clone(), t);
    run(&mut r, &mut t, 20 * MS, &mut gks);
    let eps = [EP1, EP2, "198.18.1.13:1719"];
    for (i, ep) in eps.iter().enumerate() {
        r.handle_endpoint(
            t,
            addr(ep),
            &rrq(1, &format!("ep{i}"), &format!("100{i}"), ep),
        );
        assert!(matches!(
            only(pump(&mut r, t, &mut gks)),
            RasMessage::registrationConfirm(_)
        ));
    }
    // The proxy's own registration keeps the shared address; each endpoint
    // has its own, the same port for RAS and call signalling.
    let own: Vec<(SocketAddr, SocketAddr)> = gks[0]
        .addrs
        .values()
        .copied()
        .filter(|(cs, _)| cs.port() != 1720)
        .collect();
    assert_eq!(own.len(), 3);
    let distinct: std::collections::HashSet<_> = own.iter().map(|(cs, _)| *cs).collect();
    assert_eq!(distinct.len(), 3, "{own:?}");
    assert!(
        own.iter()
            .all(|(cs, ras)| cs == ras && range.contains(&cs.port()))
    );
    let pool = r.identities().unwrap();
    let ep2_side = pool.get(addr(EP2)).unwrap();
    assert!(r.is_own_gk_side(ep2_side));

    // An IRQ that names neither endpoint nor call (GnuGk's poll of a lapsed
    // registration) reaches the endpoint whose address it was sent to.
    let irq = ras::encode(
        &ras_from_json(&json!({"infoRequest": {"requestSeqNum": 77, "callReferenceValue": 0}}))
            .unwrap(),
    )
    .unwrap();
    r.handle_gatekeeper_at(t, gks[0].addr, Some(ep2_side), &irq);
    let out = pump(&mut r, t, &mut gks);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].to, addr(EP2));
    assert!(matches!(
        ras::decode(&out[0].bytes).unwrap(),
        RasMessage::infoRequest(_)
    ));

    // Refreshes carry each endpoint's own rasAddress (timeToLive 30 s:
    // due after 20 s).
    run(&mut r, &mut t, Duration::from_secs(21), &mut gks);
    let ep2_gk_id = gks[0]
        .addrs
        .iter()
        .find(|(_, (cs, _))| *cs == ep2_side)
        .map(|(id, _)| id.clone())
        .unwrap();
    assert!(
        gks[0]
            .refreshed
            .iter()
            .any(|(id, a)| *id == ep2_gk_id && *a == ep2_side),
        "{:?}",
        gks[0].refreshed
    );

    // A restart keeps each endpoint's address.
    let saved = r.snapshot();
    let mut r2 = RasRelay::new(c, t);
    assert_eq!(r2.restore(saved, t), 3);
    assert_eq!(r2.identities().unwrap().get(addr(EP2)), Some(ep2_side));
    assert_eq!(
        r2.route_identity(ep2_side),
        Some(CallRoute::Local {
            endpoint_id: r
                .registrations()
                .by_source(addr(EP2))
                .unwrap()
                .endpoint_id
                .clone(),
            call_signal: addr("198.18.1.12:1720"),
        })
    );
}

#[test]
fn with_credentials_requests_carry_fresh_password_tokens_also_after_failover() {
    let mut c = cfg();
    c.own_password = Some("proxy-secret".into());
    c.credentials = [("1001".to_string(), "ep-secret".to_string())].into();
    let mut t = Instant::now();
    let mut gks = two_gks();
    let mut r = RasRelay::new(c, t);
    run(&mut r, &mut t, 20 * MS, &mut gks);
    r.handle_endpoint(t, addr(EP1), &rrq(1, "alice", "1001", EP1));
    // The endpoint authenticates its gatekeeper of record: the RCF carries
    // a token by the proxy's identifier with the endpoint's password.
    let RasMessage::registrationConfirm(rcf) = only(pump(&mut r, t, &mut gks)) else {
        panic!("RCF")
    };
    let Some(crate::h225::asn::h323_messages::CryptoH323Token::cryptoEPPwdHash(tok)) =
        rcf.crypto_tokens.as_ref().and_then(|v| v.first().cloned())
    else {
        panic!("RCF without a password token: {rcf:?}")
    };
    let want = crate::h225::h235::pwd_hash("PROXY", "ep-secret", tok.time_stamp.0).unwrap();
    assert_eq!(tok.token.hash.as_raw_slice(), want.as_slice());
    r.handle_endpoint(t, addr(EP2), &rrq(1, "bob", "1002", EP2));
    let RasMessage::registrationConfirm(rcf) = only(pump(&mut r, t, &mut gks)) else {
        panic!("RCF")
    };
    assert!(rcf.crypto_tokens.is_none(), "no credentials, no token");
    // The proxy's own RRQs and the endpoint's full RRQ carry valid tokens;
    // the endpoint without credentials carries none (it sent none).
    let t0 = &gks[0].tokens;
    assert!(
        t0.iter().any(|(ka, a, ok)| !ka && a == "PROXY" && *ok),
        "{t0:?}"
    );
    assert!(
        t0.iter().any(|(ka, a, ok)| !ka && a == "1001" && *ok),
        "{t0:?}"
    );
    assert!(t0.iter().all(|(_, a, ok)| *ok && a != "1002"), "{t0:?}");
    // Re-registration at the backup after a failover: fresh valid tokens.
    gks[0].alive = false;
    run(&mut r, &mut t, Duration::from_millis(400), &mut gks);
    assert_eq!(r.active(), Some("backup"));
    let t1 = &gks[1].tokens;
    assert!(
        t1.iter().any(|(ka, a, ok)| !ka && a == "1001" && *ok),
        "{t1:?}"
    );
    assert!(t1.iter().all(|(_, _, ok)| *ok), "{t1:?}");
}

/// An RRQ naming the proxy's own address as the endpoint's would make the
/// proxy call itself for every SETUP to that endpoint (hostile LAN).
#[test]
fn an_rrq_naming_the_proxys_own_loopback_unspecified_multicast_or_broadcast_addresses_is_refused() {
    let (mut r, mut gks, t, _) = registered();
    let before = r.registrations().len();
    let at_primary = gks[0].regs.len();
    for (cs, ras, want) in [
        (
            "198.18.1.1:1720",
            "198.18.1.13:1719",
            "invalidCallSignalAddress",
        ),
        ("198.18.1.13:1720", "198.18.2.1:1719", "invalidRASAddress"),
        ("198.18.1.13:1720", "198.18.1.1:1719", "invalidRASAddress"),
        (
            "127.0.0.1:1720",
            "198.18.1.13:1719",
            "invalidCallSignalAddress",
        ),
        (
            "0.0.0.0:1720",
            "198.18.1.13:1719",
            "invalidCallSignalAddress",
        ),
        (
            "224.0.1.41:1720",
            "198.18.1.13:1719",
            "invalidCallSignalAddress",
        ),
        (
            "198.18.1.13:1720",
            "255.255.255.255:1719",
            "invalidRASAddress",
        ),
        ("[::1]:1720", "198.18.1.13:1719", "invalidCallSignalAddress"),
        (
            "198.18.1.255:1720",
            "198.18.1.13:1719",
            "invalidCallSignalAddress",
        ),
        (
            "198.18.9.1:1720",
            "198.18.1.13:1719",
            "invalidCallSignalAddress",
        ),
    ] {
        let v = json!({"registrationRequest": {"requestSeqNum": 9, "protocolIdentifier": PROTOCOL_ID,
            "discoveryComplete": true, "callSignalAddress": [transport_json(addr(cs))],
            "rasAddress": [transport_json(addr(ras))],
            "terminalType": {"terminal": {}, "mc": false, "undefinedNode": false},
            "terminalAlias": [{"h323-ID": "mallory"}], "endpointVendor": vendor_json(),
            "timeToLive": 60, "keepAlive": false}});
        let bytes = ras::encode(&ras_from_json(&v).unwrap()).unwrap();
        r.handle_endpoint(t, addr("198.18.1.13:1719"), &bytes);
        let RasMessage::registrationReject(rrj) = only(pump(&mut r, t, &mut gks)) else {
            panic!("{cs} {ras}: not refused")
        };
        assert!(format!("{:?}", rrj.reject_reason).contains(want), "{rrj:?}");
    }
    assert_eq!(r.registrations().len(), before, "nothing registered");
    assert_eq!(gks[0].regs.len(), at_primary, "nothing forwarded");
}

/// Events of `kind` the relay has produced so far.
fn drain_events(r: &mut RasRelay) -> Vec<Event> {
    std::iter::from_fn(|| r.poll_event()).collect()
}

/// A gatekeeper-routed call placed by EP1 through the primary; the primary
/// dies; the backup refuses the call's re-admission `refusals` times (its
/// callee not yet registered there).
fn routed_call_after_failover(
    refusals: usize,
    deadline: Duration,
) -> (RasRelay, Vec<FakeGk>, Instant, Vec<Event>) {
    let mut c = cfg();
    c.reanchor_deadline = deadline;
    let mut t = Instant::now();
    let mut gks = two_gks();
    gks[0].routed = true;
    gks[1].routed = true;
    gks[1].refuse_arqs = refusals;
    let mut r = RasRelay::new(c, t);
    run(&mut r, &mut t, 20 * MS, &mut gks);
    r.handle_endpoint(t, addr(EP1), &rrq(1, "alice", "1001", EP1));
    let RasMessage::registrationConfirm(rcf) = only(pump(&mut r, t, &mut gks)) else {
        panic!("RCF expected")
    };
    let id = bmp_text(&rcf.endpoint_identifier.0);
    r.handle_endpoint(t, addr(EP1), &arq(2, &id, "1002", 9));
    assert!(matches!(
        only(pump(&mut r, t, &mut gks)),
        RasMessage::admissionConfirm(_)
    ));
    assert!(r.call(&[9; 16]).is_some_and(|c| c.routed && c.anchored));
    drain_events(&mut r);
    gks[0].alive = false;
    let mut events = vec![];
    let until = t + 300 * MS;
    while t < until {
        t += 10 * MS;
        pump(&mut r, t, &mut gks);
        events.extend(drain_events(&mut r));
    }
    assert_eq!(r.active(), Some("backup"));
    (r, gks, t, events)
}

#[test]
fn a_routed_call_is_readmitted_at_the_backup_and_handed_to_its_call_to_reanchor() {
    let (mut r, mut gks, mut t, mut events) =
        routed_call_after_failover(3, Duration::from_secs(30));
    // The primary's death reaches the call's tasks once (they release it
    // if the primary also carried its media).
    let lost: Vec<&Event> = events
        .iter()
        .filter(|e| matches!(e, Event::ControllerLost { .. }))
        .collect();
    assert_eq!(
        lost,
        vec![&Event::ControllerLost {
            call_id: [9; 16],
            gatekeeper: "primary".into()
        }]
    );
    // Three refusals, 500 ms apart, then the ACF.
    let until = t + 3 * READMIT_RETRY + 100 * MS;
    while t < until {
        t += 10 * MS;
        pump(&mut r, t, &mut gks);
        events.extend(drain_events(&mut r));
    }
    assert_eq!(
        gks[1].arqs,
        vec![([9; 16], false); 4],
        "one ARQ, three retries"
    );
    let reanchors: Vec<&Reanchor> = events
        .iter()
        .filter_map(|e| match e {
            Event::Reanchor(a) => Some(a),
            _ => None,
        })
        .collect();
    assert_eq!(
        reanchors,
        vec![&Reanchor {
            call_id: [9; 16],
            to: addr("198.18.2.11:1721"),
            caller: addr("198.18.2.1:1720"),
            endpoint_id: Some("GK-B-2".into()),
            gatekeeper: "backup".into(),
        }],
        "the calling side sets the call up through the backup's own signalling port"
    );
    assert_eq!(r.stats().readmitted, 1);
    assert_eq!(r.stats().unanchored, 0);
    // The call task reports the SETUP refused: admitted again, re-anchored again.
    r.reanchor_failed(t, &[9; 16]);
    run(&mut r, &mut t, READMIT_RETRY + 20 * MS, &mut gks);
    assert_eq!(gks[1].arqs.len(), 5);
    assert!(
        drain_events(&mut r)
            .iter()
            .any(|e| matches!(e, Event::Reanchor(_)))
    );
    // Once anchored nothing more is sent.
    r.call_anchored(&[9; 16]);
    run(&mut r, &mut t, 3 * READMIT_RETRY, &mut gks);
    assert_eq!(gks[1].arqs.len(), 5);
}

#[test]
fn a_call_the_backup_never_admits_is_reported_unanchored_at_the_deadline() {
    let deadline = Duration::from_secs(2);
    let (mut r, mut gks, mut t, mut events) = routed_call_after_failover(usize::MAX, deadline);
    run(&mut r, &mut t, deadline + READMIT_RETRY, &mut gks);
    events.extend(drain_events(&mut r));
    let tries = gks[1].arqs.len();
    // Tried every 500 ms for the 2 s deadline.
    assert!((4..=6).contains(&tries), "{tries} ARQs");
    assert!(!events.iter().any(|e| matches!(e, Event::Reanchor(_))));
    let unanchored: Vec<&Event> = events
        .iter()
        .filter(|e| matches!(e, Event::Unanchored { .. }))
        .collect();
    assert_eq!(unanchored.len(), 1, "{events:?}");
    assert_eq!(r.stats().unanchored, 1);
    // And then it stops asking.
    run(&mut r, &mut t, 3 * READMIT_RETRY, &mut gks);
    assert_eq!(gks[1].arqs.len(), tries);
}

#[test]
fn calls_held_by_a_gatekeeper_not_in_control_move_to_the_one_in_control_when_it_dies() {
    // The call is taken over by the backup; the primary returns and takes
    // control again (the call stays with the backup, which is up); then
    // the backup dies: the primary, where the endpoint is registered,
    // admits the call at once.
    let (mut r, mut gks, mut t, _) = routed_call_after_failover(0, Duration::from_secs(30));
    assert_eq!(gks[1].arqs.len(), 1);
    r.call_anchored(&[9; 16]);
    gks[0].alive = true;
    gks[0].regs.clear();
    run(&mut r, &mut t, 1_500 * MS, &mut gks);
    assert_eq!(r.active(), Some("primary"));
    assert_eq!(
        gks[0].arqs,
        vec![([9; 16], false)],
        "only the original admission: fail-back leaves the call with the backup"
    );
    let before = gks[0].arqs.len();
    assert!(
        r.call(&[9; 16])
            .is_some_and(|c| c.admitted_by.as_deref() == Some("backup"))
    );
    gks[1].alive = false;
    run(&mut r, &mut t, 300 * MS, &mut gks);
    assert_eq!(r.active(), Some("primary"));
    assert_eq!(gks[0].arqs.len(), before + 1, "{:?}", gks[0].arqs);
    assert_eq!(gks[0].arqs.last(), Some(&([9; 16], false)));
    assert!(
        r.call(&[9; 16])
            .is_some_and(|c| c.admitted_by.as_deref() == Some("primary"))
    );
}

#[test]
fn in_survivable_mode_an_alias_a_live_endpoint_holds_is_refused_to_another_source() {
    let (mut r, mut gks, mut t, _) = registered();
    gks[0].alive = false;
    gks[1].alive = false;
    run(&mut r, &mut t, 300 * MS, &mut gks);
    assert_eq!(r.active(), None, "survivable mode");
    let before = r.registrations().len();
    // Another host claims alice's number 1001.
    r.handle_endpoint(t, addr(EP2), &rrq(1, "mallory", "1001", EP2));
    let RasMessage::registrationReject(rrj) = only(pump(&mut r, t, &mut gks)) else {
        panic!("a second owner of 1001 accepted")
    };
    let RegistrationRejectReason::duplicateAlias(taken) = &rrj.reject_reason else {
        panic!("{rrj:?}")
    };
    let taken: Vec<Alias> = taken.iter().map(Alias::of).collect();
    assert_eq!(taken, vec![Alias::E164("1001".into())]);
    assert_eq!(r.registrations().len(), before);
    assert_eq!(
        r.route_alias(&Alias::E164("1001".into())).map(|x| x.source),
        Some(addr(EP1)),
        "calls to 1001 still reach alice"
    );
    // Its own aliases are welcome, and alice may register hers again.
    r.handle_endpoint(t, addr(EP2), &rrq(2, "bob", "1002", EP2));
    assert!(matches!(
        only(pump(&mut r, t, &mut gks)),
        RasMessage::registrationConfirm(_)
    ));
    r.handle_endpoint(t, addr(EP1), &rrq(3, "alice", "1001", EP1));
    assert!(matches!(
        only(pump(&mut r, t, &mut gks)),
        RasMessage::registrationConfirm(_)
    ));
}

fn lrq(seq: u16, dest: &str, ep: &str) -> Vec<u8> {
    let v = json!({"locationRequest": {"requestSeqNum": seq, "destinationInfo": [{"dialledDigits": dest}],
        "replyAddress": transport_json(addr(ep))}});
    ras::encode(&ras_from_json(&v).unwrap()).unwrap()
}

/// A relay on `limits`, with the primary in control.
fn limited(limits: RelayLimits) -> (RasRelay, Vec<FakeGk>, Instant) {
    let mut t = Instant::now();
    let mut gks = two_gks();
    let mut r = RasRelay::new(RelayConfig { limits, ..cfg() }, t);
    run(&mut r, &mut t, 20 * MS, &mut gks);
    assert_eq!(r.active(), Some("primary"));
    (r, gks, t)
}

#[test]
fn registrations_are_bounded_per_source_address_and_aliases_per_request() {
    let (mut r, mut gks, t) = limited(RelayLimits {
        max_registrations_per_source: 2,
        max_aliases_per_request: 3,
        ..RelayLimits::generous()
    });
    let host = |port: u16| format!("198.18.1.66:{port}");
    for (i, port) in [41001u16, 41002].into_iter().enumerate() {
        let ep = host(port);
        let num = format!("500{i}");
        r.handle_endpoint(t, addr(&ep), &rrq(1, "m", &num, &ep));
        let RasMessage::registrationConfirm(_) = only(pump(&mut r, t, &mut gks)) else {
            panic!("RCF expected for {ep}")
        };
    }
    // A third registration from that address: refused, nothing forwarded.
    let before = gks[0].rrqs;
    let ep = host(41003);
    r.handle_endpoint(t, addr(&ep), &rrq(1, "m", "5003", &ep));
    let RasMessage::registrationReject(rrj) = only(pump(&mut r, t, &mut gks)) else {
        panic!("RRJ expected")
    };
    assert!(matches!(
        rrj.reject_reason,
        RegistrationRejectReason::resourceUnavailable(())
    ));
    assert_eq!(gks[0].rrqs, before, "forwarded anyway");
    // A registered source registering again is no new registration.
    let ep = host(41001);
    r.handle_endpoint(t, addr(&ep), &rrq(2, "m", "5000", &ep));
    let RasMessage::registrationConfirm(_) = only(pump(&mut r, t, &mut gks)) else {
        panic!("RCF expected for a re-registration")
    };
    // Another address is not affected.
    r.handle_endpoint(t, addr(EP1), &rrq(1, "alice", "1001", EP1));
    let RasMessage::registrationConfirm(_) = only(pump(&mut r, t, &mut gks)) else {
        panic!("RCF expected for another host")
    };
    // Four aliases in one RRQ: refused.
    let v = json!({"registrationRequest": {"requestSeqNum": 9, "protocolIdentifier": PROTOCOL_ID, "discoveryComplete": true,
        "callSignalAddress": [transport_json(addr("198.18.1.12:1720"))], "rasAddress": [transport_json(addr(EP2))],
        "terminalType": {"terminal": {}, "mc": false, "undefinedNode": false},
        "terminalAlias": [{"h323-ID": "a"}, {"h323-ID": "b"}, {"h323-ID": "c"}, {"dialledDigits": "77"}],
        "endpointVendor": vendor_json(), "timeToLive": 60, "keepAlive": false}});
    r.handle_endpoint(
        t,
        addr(EP2),
        &ras::encode(&ras_from_json(&v).unwrap()).unwrap(),
    );
    let RasMessage::registrationReject(rrj) = only(pump(&mut r, t, &mut gks)) else {
        panic!("RRJ expected")
    };
    assert!(matches!(
        rrj.reject_reason,
        RegistrationRejectReason::invalidAlias(())
    ));
    assert_eq!(r.stats().refused_by[&Refused::RegistrationLimit], 1);
    assert_eq!(r.stats().refused_by[&Refused::TooManyAliases], 1);
    assert_eq!(r.registrations().len(), 3);
}

#[test]
fn lrqs_only_from_registered_endpoints_and_a_bounded_number_waiting_per_source() {
    let (mut r, mut gks, mut t) = limited(RelayLimits {
        max_outstanding_per_source: 4,
        ..RelayLimits::generous()
    });
    // A stranger's LRQ: LRJ notRegistered, nothing forwarded.
    r.handle_endpoint(t, addr(EP2), &lrq(1, "1001", EP2));
    let out: Vec<_> = std::iter::from_fn(|| r.poll_transmit()).collect();
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].side, Side::Endpoint);
    let RasMessage::locationReject(lrj) = ras::decode(&out[0].bytes).unwrap() else {
        panic!("LRJ expected")
    };
    assert!(matches!(
        lrj.reject_reason,
        LocationRejectReason::notRegistered(())
    ));
    // A registered endpoint's LRQs (the fake gatekeeper never answers
    // them): 4 wait at the gatekeeper, the other 96 are dropped.
    r.handle_endpoint(t, addr(EP1), &rrq(1, "alice", "1001", EP1));
    pump(&mut r, t, &mut gks);
    let lrqs_out = |v: &[Transmit]| {
        v.iter()
            .filter(|x| {
                x.side == Side::Gatekeeper
                    && matches!(ras::decode(&x.bytes), Ok(RasMessage::locationRequest(_)))
            })
            .count()
    };
    let mut sent = 0;
    for seq in 1..=100 {
        r.handle_endpoint(t, addr(EP1), &lrq(seq, "9999", EP1));
        let out: Vec<_> = std::iter::from_fn(|| r.poll_transmit()).collect();
        sent += lrqs_out(&out);
    }
    assert_eq!(sent, 4);
    assert_eq!(r.stats().outstanding_refused, 96);
    // The heartbeat is not crowded out: the primary stays in control.
    run(&mut r, &mut t, 2000 * MS, &mut gks);
    assert_eq!(r.active(), Some("primary"));
    assert_eq!(r.stats().failovers, 0);
    // Once the waiting ones are forgotten (10 s), the endpoint may ask again.
    run(&mut r, &mut t, 9000 * MS, &mut gks);
    r.handle_endpoint(t, addr(EP1), &lrq(101, "9999", EP1));
    let out: Vec<_> = std::iter::from_fn(|| r.poll_transmit()).collect();
    assert_eq!(lrqs_out(&out), 1);
}

#[test]
fn calls_per_endpoint_are_bounded_and_records_go_with_the_registration() {
    let (mut r, mut gks, t) = limited(RelayLimits {
        max_calls_per_endpoint: 2,
        ..RelayLimits::generous()
    });
    r.handle_endpoint(t, addr(EP1), &rrq(1, "alice", "1001", EP1));
    let RasMessage::registrationConfirm(rcf) = only(pump(&mut r, t, &mut gks)) else {
        panic!("RCF expected")
    };
    let id = bmp_text(&rcf.endpoint_identifier.0);
    for call in 1..=2u8 {
        r.handle_endpoint(t, addr(EP1), &arq(10 + u16::from(call), &id, "2002", call));
        let RasMessage::admissionConfirm(_) = only(pump(&mut r, t, &mut gks)) else {
            panic!("ACF expected")
        };
    }
    r.handle_endpoint(t, addr(EP1), &arq(13, &id, "2002", 3));
    let RasMessage::admissionReject(arj) = only(pump(&mut r, t, &mut gks)) else {
        panic!("ARJ expected")
    };
    assert!(matches!(
        arj.reject_reason,
        AdmissionRejectReason::exceedsCallCapacity(())
    ));
    assert_eq!(r.calls().count(), 2);
    // The endpoint unregisters: its call records go with it.
    let v = json!({"unregistrationRequest": {"requestSeqNum": 20, "callSignalAddress": [transport_json(addr("198.18.1.11:1720"))],
        "endpointIdentifier": id}});
    r.handle_endpoint(
        t,
        addr(EP1),
        &ras::encode(&ras_from_json(&v).unwrap()).unwrap(),
    );
    pump(&mut r, t, &mut gks);
    assert_eq!(r.registrations().len(), 0);
    assert_eq!(r.calls().count(), 0);
}

#[test]
fn a_survivable_registration_the_returning_gatekeeper_refuses_ends_one_it_accepted_stays() {
    let (mut r, mut gks, mut t, alice) = registered();
    gks[0].alive = false;
    gks[1].alive = false;
    run(&mut r, &mut t, 300 * MS, &mut gks);
    assert_eq!(r.active(), None, "survivable mode");
    // Bob registers with the proxy alone.
    r.handle_endpoint(t, addr(EP2), &rrq(1, "bob", "1002", EP2));
    let RasMessage::registrationConfirm(rcf) = only(pump(&mut r, t, &mut gks)) else {
        panic!("RCF expected")
    };
    let bob = bmp_text(&rcf.endpoint_identifier.0);
    assert!(
        r.registrations()
            .iter()
            .any(|x| x.endpoint_id == bob && x.local)
    );
    // The primary returns and refuses bob's number (alice's registration
    // there is still alive).
    gks[0].alive = true;
    gks[0].reject_alias = Some("1002");
    run(&mut r, &mut t, 3000 * MS, &mut gks);
    assert_eq!(r.active(), Some("primary"));
    let ids: Vec<_> = r
        .registrations()
        .iter()
        .map(|x| x.endpoint_id.clone())
        .collect();
    assert_eq!(r.stats().local_dropped, 1, "{ids:?}");
    assert_eq!(
        ids,
        vec![alice.clone()],
        "the refused local registration ended"
    );
    // Bob's next keepalive is told to register in full.
    r.handle_endpoint(t, addr(EP2), &keepalive(2, &bob, EP2));
    let RasMessage::registrationReject(rrj) = only(pump(&mut r, t, &mut gks)) else {
        panic!("RRJ expected")
    };
    assert!(matches!(
        rrj.reject_reason,
        RegistrationRejectReason::fullRegistrationRequired(())
    ));
}

#[test]
fn endpoint_requests_never_take_the_numbers_kept_for_the_proxys_own() {
    // No per-source bound: only the global one, MAX_PENDING less what is
    // kept for the proxy's own requests.
    let (mut r, mut gks, mut t) = limited(RelayLimits {
        max_outstanding_per_source: usize::MAX,
        ..RelayLimits::generous()
    });
    r.handle_endpoint(t, addr(EP1), &rrq(1, "alice", "1001", EP1));
    pump(&mut r, t, &mut gks);
    // 55,000 LRQs the gatekeeper never answers, all at once.
    let mut forwarded = 0;
    for seq in 1..=55_000 {
        r.handle_endpoint(t, addr(EP1), &lrq(seq, "9999", EP1));
        while let Some(x) = r.poll_transmit() {
            forwarded += usize::from(x.side == Side::Gatekeeper);
        }
    }
    assert_eq!(forwarded, MAX_PENDING - RESERVED_OWN);
    assert_eq!(r.stats().outstanding_refused, 55_000 - forwarded as u64);
    // The table is as full as endpoints may make it; the heartbeat and the
    // binding refreshes still get numbers, and the primary stays up.
    run(&mut r, &mut t, 2000 * MS, &mut gks);
    assert_eq!(r.active(), Some("primary"));
    assert_eq!(r.stats().failovers, 0);
}

#[test]
fn a_call_record_without_call_signalling_ages_out_one_with_it_stays() {
    let (mut r, mut gks, mut t, id) = registered();
    for call in 1..=2u8 {
        r.handle_endpoint(t, addr(EP1), &arq(10 + u16::from(call), &id, "1001", call));
        let RasMessage::admissionConfirm(_) = only(pump(&mut r, t, &mut gks)) else {
            panic!("ACF expected")
        };
    }
    // Until the call signalling side reports, nothing ages out.
    for seq in 0..6u16 {
        run(&mut r, &mut t, 30_000 * MS, &mut gks);
        r.handle_endpoint(t, addr(EP1), &keepalive(100 + seq, &id, EP1));
        pump(&mut r, t, &mut gks);
    }
    assert_eq!(r.calls().count(), 2);
    // Reports every 30 s name call 1 only: call 2 ended without a DRQ.
    let alive: std::collections::HashSet<[u8; 16]> = [[1u8; 16]].into();
    for seq in 0..6u16 {
        r.note_calls_alive(t, &alive);
        run(&mut r, &mut t, 30_000 * MS, &mut gks);
        r.handle_endpoint(t, addr(EP1), &keepalive(200 + seq, &id, EP1));
        pump(&mut r, t, &mut gks);
    }
    let left: Vec<[u8; 16]> = r.calls().map(|c| c.call_id).collect();
    assert_eq!(left, vec![[1u8; 16]]);
    assert_eq!(r.stats().calls_aged_out, 1);
    assert_eq!(r.registrations().len(), 1, "the registration stays");
}
