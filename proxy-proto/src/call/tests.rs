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
        unanchored: Default::default(),
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
        from_controller: true,
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
            from_controller: true,
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
            from_controller: true,
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
            from_controller: true,
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

/// `to_gatekeeper`, connected, then its gatekeeper leg lost (kept up).
fn kept_up_caller(t0: Instant) -> Call {
    let mut c = to_gatekeeper(t0);
    c.handle_frame(t0, Leg::Callee, corpus_q931(msg::CONNECT));
    drain(&mut c);
    c.handle_h245_listener(t0, Ok(a("198.18.1.1:40000")));
    c.handle_leg_lost(t0, Leg::Callee, LegLoss::Closed);
    drain(&mut c);
    assert_eq!(c.controller(), Some(&Controller::Proxy));
    c
}

fn reanchor() -> Reanchor {
    Reanchor {
        call_id: setup_info(&corpus_q931(msg::SETUP))
            .unwrap()
            .call_id
            .unwrap(),
        to: a("198.18.3.10:1721"),
        caller: a("198.18.2.7:20001"),
        endpoint_id: Some("GK2-EP-7".into()),
        gatekeeper: "backup".into(),
    }
}

#[test]
fn the_calling_side_reanchors_a_kept_up_call_through_the_new_gatekeeper_unseen_by_its_endpoint() {
    let t0 = Instant::now();
    let mut c = kept_up_caller(t0);
    c.handle_reanchor(t0, &reanchor());
    let (ev, tx) = drain(&mut c);
    assert!(tx.is_empty());
    assert_eq!(
        ev,
        vec![CallEvent::Connect {
            to: a("198.18.3.10:1721"),
            local_ip: a("198.18.2.7:0").ip(),
            side: LegSide::Gatekeeper,
        }],
        "a new leg from the caller's own address at the gatekeeper"
    );
    assert_eq!(c.poll_timeout(), Some(t0 + REANCHOR_WAIT));
    c.handle_connected(t0);
    let (_, tx) = drain(&mut c);
    let [(Leg::Callee, setup)] = &tx[..] else {
        panic!("{tx:?}")
    };
    // The same call: callIdentifier, conferenceID, CRV, aliases; readdressed;
    // no media.
    let orig = Signalling::decode(&corpus_q931(msg::SETUP)).unwrap();
    let sent = Signalling::decode(setup).unwrap();
    assert_eq!(sent.q931().call_ref, orig.q931().call_ref);
    assert_eq!(sent.setup_info(), orig.setup_info());
    let (Body::setup(o), Body::setup(s)) = (
        &orig.uu.h323_uu_pdu.h323_message_body,
        &sent.uu.h323_uu_pdu.h323_message_body,
    ) else {
        panic!()
    };
    assert_eq!(s.conference_id, o.conference_id);
    assert_eq!(s.source_address, o.source_address);
    assert_eq!(
        s.dest_call_signal_address,
        Some(transport(a("198.18.3.10:1721")))
    );
    assert_eq!(
        s.source_call_signal_address,
        Some(transport(a("198.18.2.7:20001")))
    );
    assert_eq!(
        s.endpoint_identifier
            .as_ref()
            .map(|e| crate::h225::value::bmp_text(&e.0)),
        Some("GK2-EP-7".into())
    );
    assert!(s.fast_start.is_none() && s.h245_address.is_none());
    assert!(sent.uu.h323_uu_pdu.h245_control.is_none());

    // What the gatekeeper sends before CONNECT is absorbed; a STATUS
    // ENQUIRY is answered on that leg; the endpoint sees nothing.
    for t in [msg::CALL_PROCEEDING, msg::ALERTING] {
        c.handle_frame(t0, Leg::Callee, corpus_q931(t));
    }
    c.handle_frame(t0, Leg::Callee, corpus_q931(msg::STATUS_ENQUIRY));
    let (_, tx) = drain(&mut c);
    assert_eq!(tx.len(), 1);
    assert_eq!(tx[0].0, Leg::Callee);
    assert_eq!(Message::decode(&tx[0].1).unwrap().message_type, msg::STATUS);
    c.handle_frame(t0, Leg::Callee, corpus_q931(msg::CONNECT));
    let (ev, tx) = drain(&mut c);
    assert!(tx.is_empty(), "the endpoint sees nothing: {tx:?}");
    assert!(ev.contains(&CallEvent::Anchored {
        gatekeeper: "backup".into()
    }));
    assert_eq!(
        c.controller(),
        Some(&Controller::Gatekeeper("backup".into()))
    );
    assert_eq!(c.poll_timeout(), None);
    // From now on the gatekeeper carries the hang-up either way.
    c.handle_frame(t0, Leg::Caller, corpus_q931(msg::RELEASE_COMPLETE));
    let (_, tx) = drain(&mut c);
    assert_eq!(tx.len(), 1);
    assert_eq!(tx[0].0, Leg::Callee);
    assert!(c.is_closed());
}

#[test]
fn a_failed_reanchoring_keeps_the_call_under_the_proxy_and_asks_again() {
    let t0 = Instant::now();
    for how in ["release", "timeout", "connect", "lost"] {
        let mut c = kept_up_caller(t0);
        c.handle_reanchor(t0, &reanchor());
        drain(&mut c);
        match how {
            "connect" => c.handle_connect_failed(t0, "refused"),
            _ => {
                c.handle_connected(t0);
                drain(&mut c);
                match how {
                    "release" => {
                        c.handle_frame(t0, Leg::Callee, corpus_q931(msg::RELEASE_COMPLETE))
                    }
                    "timeout" => c.handle_timeout(t0 + REANCHOR_WAIT),
                    _ => c.handle_leg_lost(t0, Leg::Callee, LegLoss::Closed),
                }
            }
        }
        let (ev, tx) = drain(&mut c);
        assert!(tx.is_empty(), "{how}: {tx:?}");
        assert!(ev.contains(&CallEvent::ReanchorFailed), "{how}: {ev:?}");
        assert!(
            !c.is_closed() && c.is_open(Leg::Caller) && !c.is_open(Leg::Callee),
            "{how}"
        );
        assert_eq!(c.controller(), Some(&Controller::Proxy), "{how}");
        // It can be tried again.
        c.handle_reanchor(t0, &reanchor());
        let (ev, _) = drain(&mut c);
        assert!(
            matches!(ev[..], [CallEvent::Connect { .. }]),
            "{how}: {ev:?}"
        );
    }
    // A call not kept up, or the called side, does not re-anchor.
    let mut callee_side = Call::accept(t0, cfg(), LegSide::Gatekeeper, None, None);
    callee_side.handle_frame(t0, Leg::Caller, corpus_q931(msg::SETUP));
    callee_side.handle_route(t0, local_route());
    callee_side.handle_connected(t0);
    callee_side.handle_frame(t0, Leg::Callee, corpus_q931(msg::CONNECT));
    drain(&mut callee_side);
    callee_side.handle_reanchor(t0, &reanchor());
    assert!(drain(&mut callee_side).0.is_empty());
}

/// A call from the gatekeeper side to a local endpoint, connected, its
/// gatekeeper leg lost.
fn kept_up_callee(t0: Instant) -> Call {
    let mut c = Call::accept(
        t0,
        cfg(),
        LegSide::Gatekeeper,
        Some(a("198.18.2.10:40000")),
        None,
    );
    c.handle_frame(t0, Leg::Caller, corpus_q931(msg::SETUP));
    c.handle_route(t0, local_route());
    c.handle_connected(t0);
    c.handle_frame(t0, Leg::Callee, corpus_q931(msg::CONNECT));
    c.handle_h245_listener(t0, Ok(a("198.18.2.1:40000")));
    c.handle_leg_lost(t0, Leg::Caller, LegLoss::Failed("reset".into()));
    drain(&mut c);
    assert_eq!(c.controller(), Some(&Controller::Proxy));
    c
}

#[test]
fn the_called_side_splices_the_new_gatekeeper_leg_and_answers_connect_itself() {
    let t0 = Instant::now();
    let mut c = kept_up_callee(t0);
    let setup = corpus_q931(msg::SETUP);
    let peer = Some(a("198.18.3.10:40001"));
    assert_eq!(
        c.handle_splice(t0, peer, &setup, Some("backup".into())),
        Ok(())
    );
    let (ev, tx) = drain(&mut c);
    assert!(ev.contains(&CallEvent::Count(Counter::Spliced)));
    let [(Leg::Caller, connect)] = &tx[..] else {
        panic!("{tx:?}")
    };
    let m = Signalling::decode(connect).unwrap();
    assert_eq!(m.q931().message_type, msg::CONNECT);
    assert!(m.q931().call_ref.from_destination);
    assert_eq!(
        m.q931().call_ref.value,
        Message::decode(&setup).unwrap().call_ref.value
    );
    let Body::connect(cn) = &m.uu.h323_uu_pdu.h323_message_body else {
        panic!()
    };
    let orig = Signalling::decode(&setup).unwrap();
    let Body::setup(s) = &orig.uu.h323_uu_pdu.h323_message_body else {
        panic!()
    };
    assert_eq!(cn.conference_id, s.conference_id);
    assert_eq!(cn.call_identifier, s.call_identifier);
    assert_eq!(
        c.controller(),
        Some(&Controller::Gatekeeper("backup".into()))
    );
    assert!(c.is_open(Leg::Caller));
    // The endpoint's hang-up now goes out through the new leg.
    c.handle_frame(t0, Leg::Callee, corpus_q931(msg::RELEASE_COMPLETE));
    let (_, tx) = drain(&mut c);
    assert_eq!(tx.len(), 1);
    assert_eq!(tx[0].0, Leg::Caller);

    // Refused: a second SETUP for a call that is not waiting for one, a
    // SETUP of another call, a call not yet active.
    let mut again = kept_up_callee(t0);
    again.handle_splice(t0, peer, &setup, None).unwrap();
    assert_eq!(
        again.handle_splice(t0, peer, &setup, None),
        Err(cause::WRONG_STATE)
    );
    let mut other = kept_up_callee(t0);
    let mut foreign = Signalling::decode(&setup).unwrap();
    if let Body::setup(s) = &mut foreign.uu.h323_uu_pdu.h323_message_body {
        s.call_identifier = Some(crate::h225::value::call_identifier(&[0xEE; 16]));
    }
    let foreign = foreign.encode().unwrap();
    assert_eq!(
        other.handle_splice(t0, peer, &foreign, None),
        Err(cause::WRONG_STATE)
    );
    assert!(drain(&mut other).1.is_empty());
    let mut caller_side = kept_up_caller(t0);
    assert_eq!(
        caller_side.handle_splice(t0, peer, &setup, None),
        Err(cause::WRONG_STATE)
    );
    assert_eq!(
        other.handle_splice(t0, peer, b"garbage", None),
        Err(cause::INVALID_CONTENTS)
    );
}

#[test]
fn an_unanchored_call_is_kept_or_released_as_configured() {
    let t0 = Instant::now();
    let mut kept = kept_up_caller(t0);
    kept.handle_unanchored(t0);
    let (ev, tx) = drain(&mut kept);
    assert!(ev.contains(&CallEvent::Count(Counter::Unanchored)));
    assert!(tx.is_empty() && !kept.is_closed());

    let mut c = to_gatekeeper(t0);
    c.cfg.unanchored = Unanchored::Release;
    c.handle_frame(t0, Leg::Callee, corpus_q931(msg::CONNECT));
    c.handle_h245_listener(t0, Ok(a("198.18.1.1:40000")));
    c.handle_leg_lost(t0, Leg::Callee, LegLoss::Closed);
    drain(&mut c);
    c.handle_unanchored(t0);
    let (ev, tx) = drain(&mut c);
    assert!(ev.contains(&CallEvent::Count(Counter::Unanchored)));
    assert_eq!(tx.len(), 1, "only the endpoint leg is left: {tx:?}");
    assert_eq!(tx[0].0, Leg::Caller);
    assert_eq!(
        cause_of(&tx[0].1),
        (msg::RELEASE_COMPLETE, cause::TEMPORARY_FAILURE)
    );
    assert!(c.is_closed());
}

#[test]
fn a_hang_up_with_no_gatekeeper_leg_is_handed_to_the_other_end_the_proxy_holds() {
    let t0 = Instant::now();
    let mut caller = kept_up_caller(t0);
    let mut callee = kept_up_callee(t0);
    caller.handle_frame(t0, Leg::Caller, corpus_q931(msg::RELEASE_COMPLETE));
    let (ev, tx) = drain(&mut caller);
    assert!(tx.is_empty());
    assert!(ev.contains(&CallEvent::ReleasedUnanchored), "{ev:?}");
    assert!(caller.is_closed());
    // The driver hands it to the call holding the other end.
    callee.handle_far_end_released(t0);
    let (_, tx) = drain(&mut callee);
    assert_eq!(tx.len(), 1);
    assert_eq!(tx[0].0, Leg::Callee);
    assert_eq!(
        cause_of(&tx[0].1),
        (msg::RELEASE_COMPLETE, cause::NORMAL_CLEARING)
    );
    assert!(callee.is_closed());
    // A call with its gatekeeper leg up ignores it: the hang-up comes
    // through the gatekeeper.
    let mut anchored = to_gatekeeper(t0);
    anchored.handle_frame(t0, Leg::Callee, corpus_q931(msg::CONNECT));
    drain(&mut anchored);
    anchored.handle_far_end_released(t0);
    assert!(!anchored.is_closed());
}

/// A FACILITY carrying tunnelled H.245 octets that contain `ip` (as a
/// gatekeeper's RTP proxy puts its own address in OpenLogicalChannel).
fn tunnelled_h245_naming(ip: [u8; 4]) -> Bytes {
    // Made-up H.245 octets around an octet-aligned IPv4 address and port.
    let mut h245 = vec![0x03, 0x00, 0x00, 0x80, 0x0c, 0x00];
    h245.extend_from_slice(&ip);
    h245.extend_from_slice(&[0x13, 0x89, 0x00]);
    let body = serde_json::json!({"h323-uu-pdu": {
        "h323-message-body": {"facility": {
            "protocolIdentifier": crate::h225::PROTOCOL_ID,
            "reason": {"undefinedReason": null},
            "callIdentifier": {"guid": crate::h225::value::hex(&[5u8; 16])}}},
        "h245Tunnelling": true,
        "h245Control": [crate::h225::value::hex(&h245)]}});
    let uu: crate::h225::asn::h323_messages::H323UserInformation =
        rasn::jer::decode(&body.to_string()).unwrap();
    let mut m = Message::new(msg::FACILITY, q931::CallRef::new(9, true));
    m.set_user_user(&uuie::encode(&uu).unwrap());
    m.encode()
}

/// An active call toward the gatekeeper at 198.18.2.10 whose tunnelled
/// H.245 from that side named `ip`.
fn active_with_h245_naming(t0: Instant, ip: [u8; 4]) -> Call {
    let mut c = to_gatekeeper(t0);
    c.handle_frame(t0, Leg::Callee, corpus_q931(msg::CONNECT));
    drain(&mut c);
    c.handle_h245_listener(t0, Ok(a("198.18.1.1:40000")));
    drain(&mut c);
    let f = tunnelled_h245_naming(ip);
    assert!(Signalling::decode(&f).unwrap().h245_names(ip.into()));
    c.handle_frame(t0, Leg::Callee, f.clone());
    let (_, tx) = drain(&mut c);
    assert_eq!(tx, vec![(Leg::Caller, f)], "relayed unchanged");
    c
}

#[test]
fn a_call_whose_media_a_lost_gatekeeper_proxied_is_released_with_cause_38_not_kept_silent() {
    let t0 = Instant::now();
    // The gatekeeper's H.245 named its own address: its RTP proxy
    // carries the media. Its leg lost: the endpoint hears cause 38.
    let mut c = active_with_h245_naming(t0, [198, 18, 2, 10]);
    c.handle_leg_lost(t0, Leg::Callee, LegLoss::Closed);
    let (ev, tx) = drain(&mut c);
    assert_eq!(tx.len(), 1, "{tx:?}");
    assert_eq!(tx[0].0, Leg::Caller);
    assert_eq!(
        cause_of(&tx[0].1),
        (msg::RELEASE_COMPLETE, cause::NETWORK_OUT_OF_ORDER)
    );
    assert!(ev.contains(&CallEvent::Count(Counter::MediaLost)));
    assert!(!ev.contains(&CallEvent::Count(Counter::KeptUp)));
    assert!(c.is_closed());

    // Media between the endpoints (the H.245 names someone else): kept
    // up as before, and the gatekeeper's loss changes nothing more.
    let mut c = active_with_h245_naming(t0, [198, 18, 1, 12]);
    c.handle_leg_lost(t0, Leg::Callee, LegLoss::Closed);
    let (ev, tx) = drain(&mut c);
    assert!(tx.is_empty());
    assert!(ev.contains(&CallEvent::Count(Counter::KeptUp)));
    c.handle_controller_lost(t0);
    assert!(drain(&mut c).1.is_empty());
    assert!(!c.is_closed());

    // The gatekeeper's address in H.245 from the endpoint's side says
    // nothing about the gatekeeper's media path.
    let mut c = to_gatekeeper(t0);
    c.handle_frame(t0, Leg::Callee, corpus_q931(msg::CONNECT));
    drain(&mut c);
    c.handle_h245_listener(t0, Ok(a("198.18.1.1:40000")));
    drain(&mut c);
    c.handle_frame(t0, Leg::Caller, tunnelled_h245_naming([198, 18, 2, 10]));
    drain(&mut c);
    c.handle_leg_lost(t0, Leg::Callee, LegLoss::Closed);
    let (ev, _) = drain(&mut c);
    assert!(ev.contains(&CallEvent::Count(Counter::KeptUp)));
}

#[test]
fn a_gatekeeper_declared_down_releases_the_calls_whose_media_it_proxied_before_any_leg_drops() {
    let t0 = Instant::now();
    // Partitioned: the gatekeeper leg is still open (half-open).
    let mut c = active_with_h245_naming(t0, [198, 18, 2, 10]);
    c.handle_controller_lost(t0);
    let (ev, tx) = drain(&mut c);
    let legs: Vec<Leg> = tx.iter().map(|(l, _)| *l).collect();
    assert_eq!(legs, vec![Leg::Caller, Leg::Callee], "both legs hear it");
    for (_, b) in &tx {
        assert_eq!(
            cause_of(b),
            (msg::RELEASE_COMPLETE, cause::NETWORK_OUT_OF_ORDER)
        );
    }
    assert!(ev.contains(&CallEvent::Count(Counter::MediaLost)));
    assert!(c.is_closed());
    // Once is enough.
    c.handle_controller_lost(t0);
    assert!(drain(&mut c).1.is_empty());

    // A re-admission that reaches it first does not re-anchor it: a new
    // signalling path would not bring the media back.
    let mut c = active_with_h245_naming(t0, [198, 18, 2, 10]);
    c.handle_reanchor(t0, &reanchor());
    let (ev, tx) = drain(&mut c);
    assert!(
        !ev.iter().any(|e| matches!(e, CallEvent::Connect { .. })),
        "{ev:?}"
    );
    assert_eq!(
        cause_of(&tx[0].1),
        (msg::RELEASE_COMPLETE, cause::NETWORK_OUT_OF_ORDER)
    );
    assert!(c.is_closed());
}
