//! A small H.323 gatekeeper for the lab, built on the project's codec:
//! registers endpoints, answers lightweight RRQs, admits calls between its
//! registered endpoints (direct-routed: the ACF names the callee's call
//! signalling address), learns calls from unsolicited IRRs, and can drop a
//! call with a DRQ on command. It is meant to be killed.
//!
//! It prints one line per change on stdout (`gk registrations=N calls=M`)
//! and reads commands on stdin: `drop <callIdentifier hex>`, `status`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::UdpSocket;

use proxy_user::h225::PROTOCOL_ID;
use proxy_user::h225::ras::{self, RasMessage};
use proxy_user::h225::value::{
    alias_text, bmp_text, hex, ras_from_json, seq_num, socket_addr, transport_json,
};

/// Settings of the lab gatekeeper.
#[derive(Clone, Debug)]
pub struct GkOptions {
    /// RAS address to listen on.
    pub ras: SocketAddr,
    /// gatekeeperIdentifier.
    pub id: String,
    /// timeToLive granted, seconds.
    pub ttl: u32,
    /// alternateGatekeeper RAS addresses sent in GCF/RCF.
    pub alternates: Vec<SocketAddr>,
    /// Gatekeeper-routed call model: ACFs name this call signalling
    /// address, where the gatekeeper accepts SETUPs, routes them by alias
    /// to the callee and relays the call signalling both ways. `None`:
    /// direct-routed (the ACF names the callee).
    pub routed: Option<SocketAddr>,
    /// Every RAS reply is sent this long after its request (a slow
    /// gatekeeper: replies in order, none lost).
    pub reply_delay: std::time::Duration,
}

struct Reg {
    aliases: Vec<String>,
    ras: SocketAddr,
    call_signal: Option<SocketAddr>,
}

struct CallInfo {
    endpoint_id: String,
    crv: u16,
    conference: String,
}

/// Run the gatekeeper until stdin closes with `quit` or the process is killed.
pub async fn run(o: GkOptions) -> std::io::Result<()> {
    let sock = Arc::new(UdpSocket::bind(o.ras).await?);
    proxy_user::driver::big_buffers(&sock);
    // Alias -> call signalling address, shared with the routed-call listener.
    let directory: Arc<Mutex<HashMap<String, SocketAddr>>> = Arc::default();
    if let Some(cs) = o.routed {
        let l = tokio::net::TcpListener::bind(cs).await?;
        let dir = directory.clone();
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                tokio::spawn(route_call(s, dir.clone()));
            }
        });
    }
    println!("gk listening ras={} id={}", o.ras, o.id);
    let mut regs: HashMap<String, Reg> = HashMap::new();
    // (aliases, call signalling address) -> endpointIdentifier: a repeated
    // full RRQ is a re-registration.
    let mut by_key: HashMap<String, String> = HashMap::new();
    let mut calls: HashMap<String, CallInfo> = HashMap::new();
    let mut next = 0u32;
    let mut seq = 0u16;
    let mut buf = vec![0u8; 65_536];
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    let mut stdin_open = true;
    let mut last_status = String::new();
    let (mut full_rrqs, mut keepalive_rrqs) = (0u64, 0u64);
    // Every call signalling address registered, and full RRQs that did not
    // come from the rasAddress they carry (what GnuGk checks).
    let mut signal_addrs: std::collections::HashSet<SocketAddr> = Default::default();
    let mut not_from_ras = 0u64;
    loop {
        tokio::select! {
            r = sock.recv_from(&mut buf) => {
                let (n, from) = r?;
                let Ok(m) = ras::decode(&buf[..n]) else {
                    println!("gk malformed from={from}");
                    continue;
                };
                let Some(s) = seq_num(&m) else { continue };
                let alternates: Vec<Value> = o.alternates.iter().enumerate().map(|(i, a)| json!({
                    "rasAddress": transport_json(*a), "needToRegister": true, "priority": i + 1,
                })).collect();
                let reply = match m {
                    RasMessage::gatekeeperRequest(_) => Some(json!({"gatekeeperConfirm": {
                        "requestSeqNum": s, "protocolIdentifier": PROTOCOL_ID, "gatekeeperIdentifier": o.id,
                        "rasAddress": transport_json(o.ras), "alternateGatekeeper": alternates}})),
                    RasMessage::registrationRequest(rrq) => {
                        if rrq.keep_alive == Some(true) {
                            keepalive_rrqs += 1;
                            let id = rrq.endpoint_identifier.as_ref().map(|e| bmp_text(&e.0)).unwrap_or_default();
                            if regs.contains_key(&id) {
                                Some(json!({"registrationConfirm": {"requestSeqNum": s, "protocolIdentifier": PROTOCOL_ID,
                                    "callSignalAddress": [], "gatekeeperIdentifier": o.id, "endpointIdentifier": id, "timeToLive": o.ttl}}))
                            } else {
                                Some(json!({"registrationReject": {"requestSeqNum": s, "protocolIdentifier": PROTOCOL_ID,
                                    "rejectReason": {"fullRegistrationRequired": null}, "gatekeeperIdentifier": o.id}}))
                            }
                        } else {
                            full_rrqs += 1;
                            let aliases: Vec<String> = rrq.terminal_alias.iter().flatten().map(alias_text).collect();
                            // Same call signalling address and aliases: a re-registration.
                            let cs = rrq.call_signal_address.first().and_then(socket_addr);
                            if rrq.ras_address.first().and_then(socket_addr) != Some(from) {
                                not_from_ras += 1;
                            }
                            signal_addrs.extend(cs);
                            let key = format!("{aliases:?}/{cs:?}");
                            let id = by_key.entry(key).or_insert_with(|| { next += 1; format!("{}-{next}", o.id) }).clone();
                            if let Some(cs) = cs {
                                let mut d = directory.lock().unwrap();
                                for a in &aliases {
                                    d.insert(a.clone(), cs);
                                }
                            }
                            regs.insert(id.clone(), Reg {
                                aliases,
                                ras: rrq.ras_address.first().and_then(socket_addr).unwrap_or(from),
                                call_signal: cs,
                            });
                            Some(json!({"registrationConfirm": {"requestSeqNum": s, "protocolIdentifier": PROTOCOL_ID,
                                "callSignalAddress": [], "gatekeeperIdentifier": o.id, "endpointIdentifier": id,
                                "timeToLive": o.ttl, "alternateGatekeeper": alternates}}))
                        }
                    }
                    RasMessage::unregistrationRequest(u) => {
                        if let Some(e) = &u.endpoint_identifier { regs.remove(&bmp_text(&e.0)); }
                        Some(json!({"unregistrationConfirm": {"requestSeqNum": s}}))
                    }
                    RasMessage::admissionRequest(arq) => {
                        let id = bmp_text(&arq.endpoint_identifier.0);
                        let call = arq.call_identifier.as_ref().map(|c| hex(c.guid.0.as_ref())).unwrap_or_default();
                        let dest = if !regs.contains_key(&id) {
                            Err("callerNotRegistered")
                        } else if arq.answer_call {
                            regs[&id].call_signal.ok_or("undefinedReason")
                        } else {
                            let wanted: Vec<String> = arq.destination_info.iter().flatten().map(alias_text).collect();
                            regs.values().find(|r| r.aliases.iter().any(|a| wanted.contains(a)))
                                .and_then(|r| r.call_signal).ok_or("calledPartyNotRegistered")
                        };
                        match dest {
                            Ok(d) => {
                                calls.insert(format!("{call}/{}", arq.answer_call), CallInfo {
                                    endpoint_id: id, crv: arq.call_reference_value.0, conference: hex(arq.conference_id.0.0.as_ref()) });
                                let (dest, model) = match o.routed {
                                    Some(cs) if !arq.answer_call => (cs, json!({"gatekeeperRouted": null})),
                                    _ => (d, json!({"direct": null})),
                                };
                                Some(json!({"admissionConfirm": {"requestSeqNum": s, "bandWidth": arq.band_width.0,
                                    "callModel": model, "destCallSignalAddress": transport_json(dest)}}))
                            }
                            Err(reason) => Some(json!({"admissionReject": {"requestSeqNum": s, "rejectReason": {reason: null}}})),
                        }
                    }
                    RasMessage::disengageRequest(d) => {
                        let call = d.call_identifier.as_ref().map(|c| hex(c.guid.0.as_ref())).unwrap_or_default();
                        calls.retain(|k, _| !k.starts_with(&call));
                        Some(json!({"disengageConfirm": {"requestSeqNum": s}}))
                    }
                    RasMessage::infoRequestResponse(irr) => {
                        let id = bmp_text(&irr.endpoint_identifier.0);
                        for c in irr.per_call_info.iter().flat_map(|p| p.0.iter()) {
                            let call = c.call_identifier.as_ref().map(|c| hex(c.guid.0.as_ref())).unwrap_or_default();
                            let key = format!("{call}/{}", c.originator != Some(true));
                            if !calls.contains_key(&key) {
                                println!("gk adopted call={call} endpoint={id}");
                            }
                            calls.insert(key, CallInfo { endpoint_id: id.clone(), crv: c.call_reference_value.0,
                                conference: hex(c.conference_id.0.0.as_ref()) });
                        }
                        (irr.need_response == Some(true)).then(|| json!({"infoRequestAck": {"requestSeqNum": s}}))
                    }
                    RasMessage::locationRequest(l) => {
                        let wanted: Vec<String> = l.destination_info.iter().map(alias_text).collect();
                        Some(match regs.values().find(|r| r.aliases.iter().any(|a| wanted.contains(a))) {
                            Some(r) => json!({"locationConfirm": {"requestSeqNum": s,
                                "callSignalAddress": transport_json(r.call_signal.unwrap_or(r.ras)), "rasAddress": transport_json(r.ras)}}),
                            None => json!({"locationReject": {"requestSeqNum": s, "rejectReason": {"requestDenied": null}}}),
                        })
                    }
                    _ => None,
                };
                match reply {
                    Some(v) if !o.reply_delay.is_zero() => {
                        let (sock, delay) = (sock.clone(), o.reply_delay);
                        tokio::spawn(async move {
                            tokio::time::sleep(delay).await;
                            send(&sock, &v, from).await;
                        });
                    }
                    Some(v) => send(&sock, &v, from).await,
                    None => {}
                }
            }
            line = stdin.next_line(), if stdin_open => match line {
                Ok(Some(l)) => {
                    let mut w = l.split_whitespace();
                    match (w.next(), w.next()) {
                        (Some("drop"), Some(call)) => {
                            let key = calls.keys().find(|k| k.starts_with(call)).cloned();
                            match key.and_then(|k| calls.remove(&k).map(|c| (k, c))) {
                                Some((k, c)) => {
                                    let Some(r) = regs.get(&c.endpoint_id) else { continue };
                                    seq = seq.wrapping_add(1).max(1);
                                    let v = json!({"disengageRequest": {"requestSeqNum": seq, "endpointIdentifier": c.endpoint_id,
                                        "conferenceID": c.conference, "callReferenceValue": c.crv,
                                        "disengageReason": {"forcedDrop": null}, "callIdentifier": {"guid": &k[..32.min(k.len())]}}});
                                    send(&sock, &v, r.ras).await;
                                    println!("gk drq call={call} endpoint={}", c.endpoint_id);
                                }
                                None => println!("gk no such call {call}"),
                            }
                        }
                        (Some("status"), _) => {
                            println!("gk registrations={} calls={} full_rrqs={full_rrqs} keepalive_rrqs={keepalive_rrqs}", regs.len(), calls.len());
                        }
                        (Some("quit"), _) => return Ok(()),
                        _ => println!("gk unknown command {l:?}"),
                    }
                }
                _ => stdin_open = false,
            },
        }
        // Printed on change of registrations/calls (RRQ counts ride along).
        let key = format!("gk registrations={} calls={}", regs.len(), calls.len());
        if key != last_status {
            println!(
                "{key} full_rrqs={full_rrqs} keepalive_rrqs={keepalive_rrqs} signal_addrs={} not_from_ras={not_from_ras}",
                signal_addrs.len()
            );
            last_status = key;
        }
    }
}

/// A gatekeeper-routed call: read the SETUP, find the callee by its
/// destination aliases, forward the SETUP and splice both TCP connections.
async fn route_call(mut a: tokio::net::TcpStream, dir: Arc<Mutex<HashMap<String, SocketAddr>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_util::codec::Decoder;
    let mut buf = bytes::BytesMut::new();
    let setup = loop {
        match proxy_user::tpkt::TpktCodec.decode(&mut buf) {
            Ok(Some(f)) if f.is_empty() => continue,
            Ok(Some(f)) => break f,
            Ok(None) => {}
            Err(_) => return,
        }
        match a.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    };
    let Ok(info) = proxy_user::call::setup_info(&setup) else {
        return;
    };
    let to = {
        let d = dir.lock().unwrap();
        info.destinations
            .iter()
            .find_map(|x| d.get(&x.to_string()).copied())
    };
    let Some(to) = to else {
        println!("gk routed call: no route for {:?}", info.destinations);
        return;
    };
    let Ok(mut b) = tokio::net::TcpStream::connect(to).await else {
        return;
    };
    let mut out = Vec::with_capacity(setup.len() + 4);
    out.extend_from_slice(&[3, 0]);
    out.extend_from_slice(&((setup.len() + 4) as u16).to_be_bytes());
    out.extend_from_slice(&setup);
    out.extend_from_slice(&buf);
    if b.write_all(&out).await.is_err() {
        return;
    }
    println!("gk routed call to {to}");
    let _ = tokio::io::copy_bidirectional(&mut a, &mut b).await;
}

async fn send(sock: &UdpSocket, v: &Value, to: SocketAddr) {
    match ras_from_json(v).and_then(|m| ras::encode(&m)) {
        Ok(b) => {
            let _ = sock.send_to(&b, to).await;
        }
        Err(e) => eprintln!("gk cannot build {v}: {e}"),
    }
}
