//! Every call decision with made-up time: no socket, no clock.

use super::*;
use std::time::Duration;

use crate::h225::asn::h323_messages::H323UUPDUH323MessageBody as Body;
use crate::h225::corpus::{self, Kind};
use crate::h225::uuie;
use crate::h225::value::transport;
use crate::q931::call_state;
use crate::q931::ie;

fn corpus_q931(t: u8) -> Bytes {
    corpus::build()
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == Kind::Q931)
        .find(|e| Message::decode(&e.bytes).unwrap().message_type == t)
        .unwrap()
        .bytes
}

fn a(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn cfg() -> CallConfig {
    CallConfig {
        endpoint_side: a("198.18.1.1:1720"),
        gatekeeper_side: a("198.18.2.1:1720"),
        setup_wait: Duration::from_secs(30),
    }
}

/// Everything the call has queued, events and transmits apart.
fn drain(c: &mut Call) -> (Vec<CallEvent>, Vec<(Leg, Bytes)>) {
    let ev = std::iter::from_fn(|| c.poll_event()).collect();
    let tx = std::iter::from_fn(|| c.poll_transmit()).collect();
    (ev, tx)
}

fn cause_of(b: &Bytes) -> (u8, u8) {
    let m = Message::decode(b).unwrap();
    (m.message_type, m.cause().unwrap().unwrap().value)
}

fn local_route() -> RouteAnswer {
    RouteAnswer {
        route: Some(CallRoute::Local {
            endpoint_id: "ep2".into(),
            call_signal: a("198.18.1.12:1720"),
        }),
        caller: None,
        controller: Some("primary".into()),
    }
}

/// A call from the endpoint side, routed to a local endpoint and connected.
fn relaying(t0: Instant) -> Call {
    let mut c = Call::accept(
        t0,
        cfg(),
        LegSide::Endpoint,
        Some(a("198.18.1.11:50000")),
        None,
    );
    c.handle_frame(t0, Leg::Caller, corpus_q931(msg::SETUP));
    c.handle_route(t0, local_route());
    c.handle_connected(t0);
    drain(&mut c);
    c
}

/// A call between an endpoint (caller) and the gatekeeper side (callee).
fn to_gatekeeper(t0: Instant) -> Call {
    let mut c = Call::accept(
        t0,
        cfg(),
        LegSide::Endpoint,
        Some(a("198.18.1.11:50000")),
        None,
    );
    c.handle_frame(t0, Leg::Caller, corpus_q931(msg::SETUP));
    c.handle_route(
        t0,
        RouteAnswer {
            route: Some(CallRoute::Remote(a("198.18.2.10:1720"))),
            caller: Some((a("198.18.2.7:20001"), Some("GK-EP-7".into()))),
            controller: Some("primary".into()),
        },
    );
    c.handle_connected(t0);
    drain(&mut c);
    c
}

#[test]
fn setup_is_routed_then_sent_with_only_its_addresses_rewritten() {
    let t0 = Instant::now();
    let setup = corpus_q931(msg::SETUP);
    let mut c = Call::accept(
        t0,
        cfg(),
        LegSide::Endpoint,
        None,
        Some(a("198.18.1.1:1720")),
    );
    assert_eq!(c.poll_timeout(), Some(t0 + Duration::from_secs(30)));
    c.handle_frame(t0, Leg::Caller, setup.clone());
    let (ev, tx) = drain(&mut c);
    assert!(tx.is_empty(), "nothing goes out before the route is known");
    let Some(CallEvent::Route(q)) = ev.iter().find(|e| matches!(e, CallEvent::Route(_))) else {
        panic!("{ev:?}")
    };
    assert!(
        q.destinations
            .contains(&crate::h225::alias::Alias::E164("1002".into())),
        "{q:?}"
    );
    assert!(!q.from_gatekeeper);
    assert_eq!(q.accepted_on, Some(a("198.18.1.1:1720")));
    assert_eq!(c.poll_timeout(), None, "the SETUP deadline is met");

    c.handle_route(t0, local_route());
    let (ev, _) = drain(&mut c);
    assert!(ev.contains(&CallEvent::Connect {
        to: a("198.18.1.12:1720"),
        local_ip: a("198.18.1.1:0").ip(),
        side: LegSide::Endpoint,
    }));
    assert_eq!(
        c.controller(),
        Some(&Controller::Gatekeeper("primary".into()))
    );
    c.handle_connected(t0);
    let (_, tx) = drain(&mut c);
    let [(Leg::Callee, out)] = &tx[..] else {
        panic!("{tx:?}")
    };
    let m = Message::decode(out).unwrap();
    let orig = Message::decode(&setup).unwrap();
    // Every IE but User-user is untouched, in order.
    let ids = |m: &Message| m.ies.iter().map(|i| i.id()).collect::<Vec<_>>();
    assert_eq!(ids(&m), ids(&orig));
    let uu = uuie::decode(m.user_user().unwrap().unwrap()).unwrap();
    let Body::setup(s) = uu.h323_uu_pdu.h323_message_body else {
        panic!()
    };
    assert_eq!(
        s.source_call_signal_address,
        Some(transport(a("198.18.1.1:1720")))
    );
    assert_eq!(
        s.dest_call_signal_address,
        Some(transport(a("198.18.1.12:1720")))
    );
    assert!(c.is_relaying());
}

#[test]
fn setup_toward_a_gatekeeper_names_the_caller_as_the_gatekeeper_knows_it() {
    let t0 = Instant::now();
    let mut c = Call::accept(t0, cfg(), LegSide::Endpoint, None, None);
    c.handle_frame(t0, Leg::Caller, corpus_q931(msg::SETUP));
    c.handle_route(
        t0,
        RouteAnswer {
            route: Some(CallRoute::Remote(a("198.18.2.10:1720"))),
            caller: Some((a("198.18.2.7:20001"), Some("GK-EP-7".into()))),
            controller: Some("backup".into()),
        },
    );
    let (ev, _) = drain(&mut c);
    assert!(
        ev.contains(&CallEvent::Connect {
            to: a("198.18.2.10:1720"),
            local_ip: a("198.18.2.7:0").ip(),
            side: LegSide::Gatekeeper,
        }),
        "from the caller's own gatekeeper-side address: {ev:?}"
    );
    c.handle_connected(t0);
    let (_, tx) = drain(&mut c);
    let m = Message::decode(&tx[0].1).unwrap();
    let uu = uuie::decode(m.user_user().unwrap().unwrap()).unwrap();
    let Body::setup(s) = uu.h323_uu_pdu.h323_message_body else {
        panic!()
    };
    assert_eq!(
        s.source_call_signal_address,
        Some(transport(a("198.18.2.7:20001")))
    );
    assert_eq!(
        s.endpoint_identifier,
        Some(crate::h225::value::epid("GK-EP-7"))
    );
}

#[test]
fn no_setup_within_the_deadline_closes_the_link() {
    let t0 = Instant::now();
    let mut c = Call::accept(t0, cfg(), LegSide::Endpoint, None, None);
    // Keepalives do not count as a SETUP, nor extend the deadline.
    c.handle_frame(t0 + Duration::from_secs(10), Leg::Caller, Bytes::new());
    c.handle_timeout(t0 + Duration::from_secs(29));
    assert!(!c.is_closed());
    assert_eq!(c.poll_timeout(), Some(t0 + Duration::from_secs(30)));
    c.handle_timeout(t0 + Duration::from_secs(30));
    let (ev, tx) = drain(&mut c);
    assert!(c.is_closed());
    assert!(tx.is_empty());
    assert!(ev.contains(&CallEvent::Count(Counter::Malformed)));
    assert_eq!(ev.last(), Some(&CallEvent::Closed));
    assert_eq!(c.poll_timeout(), None);
}

#[test]
fn a_first_message_that_is_not_setup_is_refused_with_101_and_garbage_with_100() {
    let t0 = Instant::now();
    let mut c = Call::accept(t0, cfg(), LegSide::Endpoint, None, None);
    c.handle_frame(t0, Leg::Caller, corpus_q931(msg::CONNECT));
    let (ev, tx) = drain(&mut c);
    assert_eq!(tx.len(), 1);
    assert_eq!(
        cause_of(&tx[0].1),
        (msg::RELEASE_COMPLETE, cause::WRONG_STATE)
    );
    assert!(ev.contains(&CallEvent::Count(Counter::Malformed)));
    assert!(c.is_closed());

    // A SETUP whose UUIE does not decode: 100.
    let mut setup = Message::decode(&corpus_q931(msg::SETUP)).unwrap();
    setup.set_user_user(b"\xff\xff\xff");
    let mut c = Call::accept(t0, cfg(), LegSide::Endpoint, None, None);
    c.handle_frame(t0, Leg::Caller, setup.encode());
    let (_, tx) = drain(&mut c);
    assert_eq!(
        cause_of(&tx[0].1),
        (msg::RELEASE_COMPLETE, cause::INVALID_CONTENTS)
    );

    // Not even Q.931: nothing to answer on, the link closes.
    let mut c = Call::accept(t0, cfg(), LegSide::Endpoint, None, None);
    c.handle_frame(t0, Leg::Caller, Bytes::from_static(b"garbage"));
    let (_, tx) = drain(&mut c);
    assert!(tx.is_empty());
    assert!(c.is_closed());
}

#[test]
fn no_route_is_cause_3_and_an_unreachable_callee_cause_27() {
    let t0 = Instant::now();
    let mut c = Call::accept(t0, cfg(), LegSide::Endpoint, None, None);
    c.handle_frame(t0, Leg::Caller, corpus_q931(msg::SETUP));
    c.handle_route(t0, RouteAnswer::default());
    let (ev, tx) = drain(&mut c);
    assert_eq!(cause_of(&tx[0].1), (msg::RELEASE_COMPLETE, cause::NO_ROUTE));
    assert!(ev.contains(&CallEvent::Count(Counter::Unroutable)));
    assert!(c.is_closed());
    assert_eq!(
        c.controller(),
        Some(&Controller::Proxy),
        "no gatekeeper in control"
    );

    let mut c = Call::accept(t0, cfg(), LegSide::Endpoint, None, None);
    c.handle_frame(t0, Leg::Caller, corpus_q931(msg::SETUP));
    c.handle_route(t0, local_route());
    c.handle_connect_failed(t0, "connection refused");
    let (_, tx) = drain(&mut c);
    let [(Leg::Caller, rc)] = &tx[..] else {
        panic!("{tx:?}")
    };
    assert_eq!(cause_of(rc), (msg::RELEASE_COMPLETE, cause::UNREACHABLE));
    assert!(c.is_closed());

    // Connected, but the SETUP could not be written: as unreachable.
    let mut c = Call::accept(t0, cfg(), LegSide::Endpoint, None, None);
    c.handle_frame(t0, Leg::Caller, corpus_q931(msg::SETUP));
    c.handle_route(t0, local_route());
    c.handle_connected(t0);
    drain(&mut c);
    c.handle_send_failed(t0, Leg::Callee);
    let (_, tx) = drain(&mut c);
    assert_eq!(
        cause_of(&tx[0].1),
        (msg::RELEASE_COMPLETE, cause::UNREACHABLE)
    );
    assert!(c.is_closed());
}

#[test]
fn status_enquiry_is_answered_with_the_real_state_and_others_relay_unchanged() {
    let t0 = Instant::now();
    let mut c = relaying(t0);
    let alerting = corpus_q931(msg::ALERTING);
    c.handle_frame(t0, Leg::Callee, alerting.clone());
    let (ev, tx) = drain(&mut c);
    assert_eq!(tx, vec![(Leg::Caller, alerting)], "byte-identical");
    assert!(ev.contains(&CallEvent::Count(Counter::Relayed)));
    assert_eq!(c.phase(), Phase::Alerting);

    c.handle_frame(t0, Leg::Callee, corpus_q931(msg::CONNECT));
    assert_eq!(c.phase(), Phase::Active);
    // The CONNECT signals H.245: it waits for the proxy's listener.
    let (ev, tx) = drain(&mut c);
    assert!(tx.is_empty());
    assert!(ev.iter().any(|e| matches!(
        e,
        CallEvent::H245Listen {
            listen_on: Leg::Caller,
            ..
        }
    )));
    c.handle_h245_listener(t0, Ok(a("198.18.1.1:40000")));
    drain(&mut c);

    c.handle_frame(t0, Leg::Caller, corpus_q931(msg::STATUS_ENQUIRY));
    let (ev, tx) = drain(&mut c);
    let [(Leg::Caller, status)] = &tx[..] else {
        panic!("STATUS ENQUIRY must be answered on its own leg: {tx:?}")
    };
    let s = Message::decode(status).unwrap();
    assert_eq!(s.message_type, msg::STATUS);
    assert_eq!(s.ie(ie::CALL_STATE).unwrap()[..], [call_state::ACTIVE]);
    assert!(s.user_user().is_some(), "with the callIdentifier");
    assert_eq!(ev, vec![CallEvent::Count(Counter::KeepaliveAnswered)]);

    c.handle_frame(t0, Leg::Callee, Bytes::new());
    let (ev, tx) = drain(&mut c);
    assert!(tx.is_empty(), "an empty TPKT is absorbed");
    assert_eq!(ev, vec![CallEvent::Count(Counter::KeepaliveAnswered)]);
    // A STATUS answers the far peer's enquiry the proxy answered: absorbed.
    c.handle_frame(t0, Leg::Callee, corpus_q931(msg::STATUS));
    assert_eq!(drain(&mut c), (vec![], vec![]));
}

#[test]
fn h245_addresses_point_at_the_proxy_and_frames_behind_them_keep_their_order() {
    let t0 = Instant::now();
    let mut c = relaying(t0);
    let connect = corpus_q931(msg::CONNECT);
    let orig = h245_address(&connect).expect("the corpus CONNECT signals H.245");
    c.handle_frame(t0, Leg::Callee, connect.clone());
    let (ev, _) = drain(&mut c);
    assert!(ev.contains(&CallEvent::H245Listen {
        listen_on: Leg::Caller,
        far_end: orig
    }));
    // A message behind it waits its turn.
    let facility = corpus_q931(msg::FACILITY);
    c.handle_frame(t0, Leg::Callee, facility.clone());
    assert!(drain(&mut c).1.is_empty());
    let mine = a("198.18.1.1:40123");
    c.handle_h245_listener(t0, Ok(mine));
    let (_, tx) = drain(&mut c);
    assert_eq!(tx.len(), 2, "{tx:?}");
    assert_eq!(tx[0].0, Leg::Caller);
    assert_eq!(h245_address(&tx[0].1), Some(mine));
    // Only the address changed.
    let mut back = Signalling::decode(&tx[0].1).unwrap();
    back.set_h245_address(orig);
    assert_eq!(back.encode().unwrap(), connect);
    assert_eq!(tx[1], (Leg::Caller, facility));

    // Without a listener the address is left as it is.
    let mut c = relaying(t0);
    c.handle_frame(t0, Leg::Callee, connect.clone());
    drain(&mut c);
    c.handle_h245_listener(t0, Err("no ports".into()));
    assert_eq!(drain(&mut c).1, vec![(Leg::Caller, connect)]);
}

#[test]
fn a_facility_alternative_address_is_pointed_at_the_proxy_side_of_its_receiver() {
    let t0 = Instant::now();
    let body = serde_json::json!({"h323-uu-pdu": {"h323-message-body": {"facility": {
        "protocolIdentifier": crate::h225::PROTOCOL_ID,
        "alternativeAddress": crate::h225::value::transport_json(a("198.18.2.20:1720")),
        "reason": {"callForwarded": null},
        "callIdentifier": {"guid": crate::h225::value::hex(&[5u8; 16])}}}}});
    let uu: crate::h225::asn::h323_messages::H323UserInformation =
        rasn::jer::decode(&body.to_string()).unwrap();
    let mut m = Message::new(msg::FACILITY, q931::CallRef::new(9, true));
    m.set_user_user(&uuie::encode(&uu).unwrap());
    let f = m.encode();
    let alt = |b: &Bytes| Signalling::decode(b).unwrap().alternative_address();
    assert_eq!(alt(&f), Some(a("198.18.2.20:1720")));

    // From the gatekeeper side to the endpoint: the proxy's endpoint side.
    let mut c = to_gatekeeper(t0);
    c.handle_frame(t0, Leg::Callee, f.clone());
    let (_, tx) = drain(&mut c);
    assert_eq!(tx[0].0, Leg::Caller);
    assert_eq!(alt(&tx[0].1), Some(cfg().endpoint_side));
    // From the endpoint toward the gatekeeper side: the gatekeeper side.
    c.handle_frame(t0, Leg::Caller, f);
    let (_, tx) = drain(&mut c);
    assert_eq!(alt(&tx[0].1), Some(cfg().gatekeeper_side));
}

#[test]
fn a_lost_gatekeeper_leg_of_an_active_call_keeps_the_endpoint_leg_up_under_the_proxy() {
    let t0 = Instant::now();
    let mut c = to_gatekeeper(t0);
    c.handle_frame(t0, Leg::Callee, corpus_q931(msg::ALERTING));
    drain(&mut c);
    // Not yet connected: the call ends, the caller hears cause 41.
    let mut early = to_gatekeeper(t0);
    early.handle_leg_lost(t0, Leg::Callee, LegLoss::Failed("reset".into()));
    let (_, tx) = drain(&mut early);
    assert_eq!(tx[0].0, Leg::Caller);
    assert_eq!(
        cause_of(&tx[0].1),
        (msg::RELEASE_COMPLETE, cause::TEMPORARY_FAILURE)
    );
    assert!(early.is_closed());

    // Connected: kept up, controlled by the proxy, the heartbeat hinted.
    c.handle_frame(t0, Leg::Callee, corpus_q931(msg::CONNECT));
    drain(&mut c);
    c.handle_h245_listener(t0, Ok(a("198.18.1.1:40000")));
    drain(&mut c);
    assert_eq!(
        c.controller(),
        Some(&Controller::Gatekeeper("primary".into()))
    );
    c.handle_leg_lost(t0, Leg::Callee, LegLoss::Closed);
    let (ev, tx) = drain(&mut c);
    assert!(tx.is_empty(), "nothing reaches the endpoint");
    assert!(ev.contains(&CallEvent::Count(Counter::KeptUp)));
    assert!(ev.contains(&CallEvent::GatekeeperLegLost {
        peer: a("198.18.2.10:0").ip()
    }));
    assert_eq!(c.controller(), Some(&Controller::Proxy));
    assert!(!c.is_closed() && c.is_open(Leg::Caller) && !c.is_open(Leg::Callee));
    // The endpoint still gets its answers.
    c.handle_frame(t0, Leg::Caller, corpus_q931(msg::STATUS_ENQUIRY));
    let (_, tx) = drain(&mut c);
    assert_eq!(tx.len(), 1);
    assert_eq!(tx[0].0, Leg::Caller);
    // Its hang-up ends the call; nothing is sent to the lost leg.
    c.handle_frame(t0, Leg::Caller, corpus_q931(msg::RELEASE_COMPLETE));
    let (ev, tx) = drain(&mut c);
    assert!(tx.is_empty());
    assert_eq!(ev.last(), Some(&CallEvent::Closed));
}

#[test]
fn a_lost_endpoint_leg_releases_the_other_leg_with_cause_41() {
    let t0 = Instant::now();
    let mut c = to_gatekeeper(t0);
    c.handle_frame(t0, Leg::Callee, corpus_q931(msg::CONNECT));
    drain(&mut c);
    c.handle_h245_listener(t0, Ok(a("198.18.1.1:40000")));
    drain(&mut c);
    c.handle_leg_lost(t0, Leg::Caller, LegLoss::Closed);
    let (ev, tx) = drain(&mut c);
    let [(Leg::Callee, rc)] = &tx[..] else {
        panic!("{tx:?}")
    };
    assert_eq!(
        cause_of(rc),
        (msg::RELEASE_COMPLETE, cause::TEMPORARY_FAILURE)
    );
    let m = Message::decode(rc).unwrap();
    assert!(
        !m.call_ref.from_destination,
        "toward the callee, as the caller"
    );
    assert_eq!(ev.last(), Some(&CallEvent::Closed));

    // Two endpoints: neither leg is kept.
    let mut c = relaying(t0);
    c.handle_frame(t0, Leg::Callee, corpus_q931(msg::CONNECT));
    c.handle_h245_listener(t0, Ok(a("198.18.1.1:40000")));
    drain(&mut c);
    c.handle_leg_lost(t0, Leg::Callee, LegLoss::Failed("timed out".into()));
    let (_, tx) = drain(&mut c);
    assert_eq!(tx[0].0, Leg::Caller);
    assert!(c.is_closed());
}

#[test]
fn release_complete_is_relayed_and_ends_the_call() {
    let t0 = Instant::now();
    let mut c = relaying(t0);
    let rc = corpus_q931(msg::RELEASE_COMPLETE);
    c.handle_frame(t0, Leg::Callee, rc.clone());
    let (ev, tx) = drain(&mut c);
    assert_eq!(tx, vec![(Leg::Caller, rc)]);
    assert_eq!(c.phase(), Phase::Released);
    assert_eq!(ev.last(), Some(&CallEvent::Closed));
    // After the end, input changes nothing.
    c.handle_frame(t0, Leg::Caller, corpus_q931(msg::STATUS_ENQUIRY));
    assert_eq!(drain(&mut c), (vec![], vec![]));
}

#[test]
fn garbage_is_dropped_and_changes_nothing() {
    let t0 = Instant::now();
    let mut c = relaying(t0);
    c.handle_frame(t0, Leg::Caller, Bytes::from_static(b"\x08\xff"));
    let (ev, tx) = drain(&mut c);
    assert!(tx.is_empty());
    assert_eq!(ev, vec![CallEvent::Count(Counter::Malformed)]);
    assert_eq!(c.phase(), Phase::Setup);
    assert!(c.is_relaying());
    assert!(refuse(b"garbage", 100).is_none());
}

#[test]
fn a_setup_from_the_gatekeeper_side_is_routed_as_such() {
    let t0 = Instant::now();
    let local = a("198.18.2.7:20001");
    let mut c = Call::accept(t0, cfg(), LegSide::Gatekeeper, None, Some(local));
    c.handle_frame(t0, Leg::Caller, corpus_q931(msg::SETUP));
    let (ev, _) = drain(&mut c);
    let Some(CallEvent::Route(q)) = ev.into_iter().find(|e| matches!(e, CallEvent::Route(_)))
    else {
        panic!()
    };
    assert!(q.from_gatekeeper);
    assert_eq!(q.accepted_on, Some(local));
    assert_eq!(
        setup_info(&corpus_q931(msg::SETUP)).unwrap().call_id,
        q.call_id
    );
}

#[test]
fn a_route_to_the_proxys_own_endpoint_listener_is_refused_not_followed() {
    let t0 = Instant::now();
    let mut c = Call::accept(t0, cfg(), LegSide::Endpoint, None, None);
    c.handle_frame(t0, Leg::Caller, corpus_q931(msg::SETUP));
    c.handle_route(
        t0,
        RouteAnswer {
            route: Some(CallRoute::Local {
                endpoint_id: "loop".into(),
                call_signal: cfg().endpoint_side,
            }),
            caller: None,
            controller: None,
        },
    );
    let (ev, tx) = drain(&mut c);
    assert!(
        !ev.iter().any(|e| matches!(e, CallEvent::Connect { .. })),
        "{ev:?}"
    );
    assert_eq!(cause_of(&tx[0].1), (msg::RELEASE_COMPLETE, cause::NO_ROUTE));
    assert!(c.is_closed());
}
