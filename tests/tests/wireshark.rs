//! Wireshark agreement: the codec's corpus, written to a pcap, is decoded by
//! tshark's own H.225.0 / Q.931 dissectors with no malformed packet or expert
//! error, and the fields tshark reads equal the ones the codec put there.

use std::collections::BTreeSet;
use std::process::Command;

use proxy_user::capture::write_corpus_pcap;
use proxy_user::h225::corpus::{self, Kind};
use proxy_user::h225::{ras, summary, uuie};
use proxy_user::q931;
use serde_json::Value;

/// All (field, value) pairs of one tshark packet, depth first.
fn fields(v: &Value, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(o) => {
            for (k, v) in o {
                match v {
                    Value::String(s) => out.push((k.clone(), s.clone())),
                    Value::Array(a) if a.iter().all(Value::is_string) => {
                        for s in a {
                            out.push((k.clone(), s.as_str().unwrap_or_default().to_owned()));
                        }
                    }
                    other => {
                        out.push((k.clone(), String::new()));
                        fields(other, out);
                    }
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| fields(x, out)),
        _ => {}
    }
}

fn values<'a>(f: &'a [(String, String)], key: &str) -> Vec<&'a str> {
    f.iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .collect()
}

fn num(s: &str) -> u64 {
    s.strip_prefix("0x")
        .map(|h| u64::from_str_radix(h, 16).unwrap_or(u64::MAX))
        .unwrap_or_else(|| s.parse().unwrap_or(u64::MAX))
}

fn hex(s: &str) -> String {
    s.chars()
        .filter(char::is_ascii_hexdigit)
        .collect::<String>()
        .to_lowercase()
}

/// Whether tshark is here; outside CI, a test without it skips (saying why).
fn have_tshark() -> bool {
    if Command::new("tshark").arg("--version").output().is_ok() {
        return true;
    }
    // tshark is installed by `cargo xtask setup`; CI always has it.
    assert!(std::env::var_os("CI").is_none(), "tshark missing in CI");
    eprintln!("SKIP wireshark agreement: tshark not installed (run `cargo xtask setup`)");
    false
}

/// Write `entries` to a pcap and return tshark's JSON packets for it.
fn tshark_packets(entries: &[corpus::Entry], keep: Option<String>) -> Vec<Value> {
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("corpus.pcap");
    write_corpus_pcap(&pcap, entries).unwrap();
    if let Some(keep) = keep {
        std::fs::copy(&pcap, keep).unwrap();
    }
    tshark_json(&pcap)
}

/// tshark's JSON packets for the capture at `pcap`.
fn tshark_json(pcap: &std::path::Path) -> Vec<Value> {
    let out = Command::new("tshark")
        .args(["-n", "-r"])
        .arg(pcap)
        .args(["-T", "json"])
        .output()
        .expect("run tshark");
    assert!(
        out.status.success(),
        "tshark failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("tshark json")
}

#[test]
fn wireshark_decodes_the_corpus_like_the_codec() {
    if !have_tshark() {
        return;
    }
    let entries = corpus::build().expect("corpus");
    let packets = tshark_packets(&entries, std::env::var("H323_KEEP_CORPUS").ok());

    let mut ras_checked = 0;
    let mut q931_checked = 0;
    let mut ras_iter = entries.iter().filter(|e| e.kind == Kind::Ras);
    let mut q_iter = entries.iter().filter(|e| e.kind == Kind::Q931);
    for p in &packets {
        let mut f = Vec::new();
        fields(p, &mut f);
        let frame = values(&f, "frame.number")
            .first()
            .copied()
            .unwrap_or("?")
            .to_owned();
        assert!(
            !f.iter().any(|(k, _)| k.starts_with("_ws.malformed")),
            "frame {frame}: tshark says malformed"
        );
        for sev in values(&f, "_ws.expert.severity") {
            // 8388608 = PI_ERROR
            assert_ne!(num(sev), 8388608, "frame {frame}: expert error");
        }
        if !values(&f, "h225.RasMessage").is_empty() {
            let e = ras_iter
                .next()
                .expect("more RAS packets than corpus entries");
            let (s, _) = summary::ras(&ras::decode(&e.bytes).unwrap());
            let slot = proxy_common::ras_slot_of(e.bytes[0]) as u64;
            assert_eq!(
                num(values(&f, "h225.RasMessage")[0]),
                slot,
                "{}: choice",
                e.name
            );
            if let Some(seq) = s.request_seq_num {
                assert!(
                    values(&f, "h225.requestSeqNum")
                        .iter()
                        .any(|v| num(v) == seq),
                    "{}: requestSeqNum {seq} vs {:?}",
                    e.name,
                    values(&f, "h225.requestSeqNum")
                );
            }
            if let Some(id) = &s.endpoint_identifier {
                assert_eq!(
                    values(&f, "h225.endpointIdentifier"),
                    vec![id.as_str()],
                    "{}",
                    e.name
                );
            }
            if let Some(ka) = s.keep_alive {
                let v = values(&f, "h225.keepAlive");
                assert_eq!(v.len(), 1, "{}: keepAlive", e.name);
                assert_eq!(
                    v[0] == "1" || v[0].eq_ignore_ascii_case("true"),
                    ka,
                    "{}",
                    e.name
                );
            }
            let ours: BTreeSet<String> = s
                .aliases
                .iter()
                .map(|a| a.split_once(':').map(|x| x.1).unwrap_or(a).to_owned())
                .collect();
            let theirs: BTreeSet<String> = values(&f, "h225.h323_ID")
                .into_iter()
                .chain(values(&f, "h225.dialledDigits"))
                .map(str::to_owned)
                .collect();
            // Wireshark also lists aliases nested deeper (supported prefixes),
            // which the summary does not report: ours must all be there.
            assert!(
                ours.is_subset(&theirs),
                "{}: aliases {ours:?} vs {theirs:?}",
                e.name
            );
            if let Some(c) = &s.call_identifier {
                assert!(
                    values(&f, "h225.guid").iter().any(|g| hex(g) == hex(c)),
                    "{}: callIdentifier",
                    e.name
                );
            }
            ras_checked += 1;
        } else if !values(&f, "q931.message_type").is_empty() {
            let e = q_iter
                .next()
                .expect("more Q.931 packets than corpus entries");
            let m = q931::Message::decode(&e.bytes).unwrap();
            assert_eq!(
                num(values(&f, "q931.message_type")[0]),
                m.message_type as u64,
                "{}",
                e.name
            );
            assert!(
                values(&f, "q931.call_ref").iter().any(|v| {
                    u64::from_str_radix(&hex(v), 16).ok() == Some(m.call_ref.value as u64)
                }),
                "{}: call reference {:?}",
                e.name,
                values(&f, "q931.call_ref")
            );
            let (s, _) = summary::uuie(&uuie::decode(m.user_user().unwrap().unwrap()).unwrap());
            if let Some(c) = &s.call_identifier {
                assert!(
                    values(&f, "h225.guid").iter().any(|g| hex(g) == hex(c)),
                    "{}: callIdentifier",
                    e.name
                );
            }
            if let Some(c) = m.cause() {
                let c = c.unwrap().value as u64;
                assert!(
                    values(&f, "q931.cause_value").iter().any(|v| num(v) == c),
                    "{}: cause",
                    e.name
                );
            }
            q931_checked += 1;
        }
    }
    let n_ras = entries.iter().filter(|e| e.kind == Kind::Ras).count();
    let n_q = entries.len() - n_ras;
    eprintln!(
        "tshark agreement: {ras_checked}/{n_ras} RAS messages, {q931_checked}/{n_q} Q.931 messages"
    );
    assert_eq!(ras_checked, n_ras);
    assert_eq!(q931_checked, n_q);
}

/// Messages from a later H.225.0 version (extension additions and a RAS
/// message type this codec does not know): the codec re-encodes them byte
/// for byte, and Wireshark, built from the same ASN.1 version, steps over the
/// same parts without calling the packet malformed.
#[test]
fn wireshark_agrees_on_parts_of_a_later_h225_version() {
    if !have_tshark() {
        return;
    }
    let entries = corpus::build().expect("corpus");
    let mut later = Vec::new();
    for e in entries.iter().filter(|e| e.kind == Kind::Ras) {
        let mut m = ras::decode(&e.bytes).unwrap();
        let ras::RasMessage::registrationRequest(rrq) = &mut m else {
            continue;
        };
        // Two additions past the 27 this version knows. (Wireshark's PER
        // dissector gives up on bitmaps longer than 32 bits, so stay below.)
        rrq._unknown_extensions = rasn::types::UnknownExtensions::new(
            None,
            vec![(28, vec![0x01, 0x80]), (30, vec![0x00])],
        );
        let bytes = ras::encode(&m).unwrap();
        assert_eq!(
            ras::encode(&ras::decode(&bytes).unwrap()).unwrap(),
            bytes,
            "{}",
            e.name
        );
        later.push(corpus::Entry {
            name: format!("{} + unknown additions", e.name),
            bytes: bytes.into(),
            kind: Kind::Ras,
        });
    }
    assert!(later.len() >= 2, "the corpus has full and keepalive RRQs");
    // Extension alternative 20 of RasMessage (this version knows 8).
    let unknown_type = vec![0x80 | 20, 0x02, 0x00, 0x00];
    assert_eq!(
        ras::encode(&ras::decode(&unknown_type).unwrap()).unwrap(),
        unknown_type
    );
    later.push(corpus::Entry {
        name: "unknown RasMessage alternative".into(),
        bytes: unknown_type.into(),
        kind: Kind::Ras,
    });
    let packets = tshark_packets(&later, None);
    // The RAS datagrams come first (then the writer's empty TCP handshake).
    assert!(packets.len() >= later.len());
    for (p, e) in packets.iter().zip(&later) {
        let mut f = Vec::new();
        fields(p, &mut f);
        assert!(
            !f.iter().any(|(k, _)| k.starts_with("_ws.malformed")),
            "{}: tshark says malformed",
            e.name
        );
        for sev in values(&f, "_ws.expert.severity") {
            assert_ne!(num(sev), 8388608, "{}: expert error", e.name);
        }
        let m = ras::decode(&e.bytes).unwrap();
        let (s, _) = summary::ras(&m);
        if let Some(seq) = s.request_seq_num {
            assert!(
                values(&f, "h225.requestSeqNum")
                    .iter()
                    .any(|v| num(v) == seq),
                "{}: requestSeqNum",
                e.name
            );
            assert_eq!(values(&f, "h225.RasMessage"), vec!["3"], "{}", e.name);
            // Wireshark saw the same unknown additions and stepped over them.
            assert!(
                f.iter().any(|(k, _)| k == "per.sequence_extension_unknown"),
                "{}: tshark did not see unknown additions",
                e.name
            );
        } else {
            let ras::RasMessage::UnknownExtension(u) = &m else {
                panic!("{}: {m:?}", e.name)
            };
            assert_eq!(s.message, "unknownExtension", "{}", e.name);
            assert_eq!(
                values(&f, "per.choice_extension_index"),
                vec![u.index.to_string().as_str()],
                "{}",
                e.name
            );
        }
    }
    eprintln!(
        "wireshark agreement (later version): {} packets, none malformed",
        later.len()
    );
}

/// HSRP version 1 as the `hsrp` module encodes it, read by Wireshark's HSRP
/// dissector: a Hello, a Coup and a Resign from 198.18.20.2 to 224.0.0.2
/// port 1985, TTL 1, from the router's own MAC to the all-routers group
/// MAC. Every field tshark reads must be the one the codec put there, with
/// no malformed packet or expert error.
#[test]
fn wireshark_reads_the_hsrp_messages_as_encoded() {
    if !have_tshark() {
        return;
    }
    use proxy_user::hsrp::{ALL_ROUTERS, DEFAULT_AUTH, Message, OpCode, PORT, State};
    use std::net::{Ipv4Addr, SocketAddr};
    let me = Ipv4Addr::new(198, 18, 20, 2);
    let vip = Ipv4Addr::new(198, 18, 20, 1);
    let msgs = [
        (OpCode::Hello, State::Active, 110),
        (OpCode::Coup, State::Speak, 120),
        (OpCode::Resign, State::Active, 100),
        (OpCode::Hello, State::Standby, 90),
    ]
    .map(|(op, state, priority)| Message {
        op,
        state,
        hellotime: 3,
        holdtime: 10,
        priority,
        group: 7,
        auth: DEFAULT_AUTH,
        virtual_ip: vip,
    });
    let frame = proxy_lab::frame::Frame {
        dst_mac: [0x01, 0x00, 0x5e, 0x00, 0x00, 0x02],
        src_mac: [0x02, 0, 0, 0, 0x20, 0x02],
        tags: Vec::new(),
        ttl: 1,
        tos: 0,
    };
    let frames: Vec<Vec<u8>> = msgs
        .iter()
        .map(|m| {
            frame.udp(
                SocketAddr::from((me, PORT)),
                SocketAddr::from((ALL_ROUTERS, PORT)),
                &m.encode(),
            )
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("hsrp.pcap");
    proxy_user::capture::write_frames_pcap(&pcap, &frames).unwrap();
    let packets = tshark_json(&pcap);
    assert_eq!(packets.len(), msgs.len());
    for (p, m) in packets.iter().zip(&msgs) {
        let mut f = Vec::new();
        fields(p, &mut f);
        let one = |k: &str| {
            let v = values(&f, k);
            assert_eq!(v.len(), 1, "{k} in {f:?}");
            v[0].to_string()
        };
        assert!(
            !f.iter()
                .any(|(k, _)| k.starts_with("_ws.malformed") || k.starts_with("_ws.expert")),
            "malformed or expert info: {f:?}"
        );
        let op = match m.op {
            OpCode::Hello => 0,
            OpCode::Coup => 1,
            OpCode::Resign => 2,
        };
        assert_eq!(num(&one("hsrp.version")), 0);
        assert_eq!(num(&one("hsrp.opcode")), op);
        assert_eq!(num(&one("hsrp.state")), u64::from(m.state.value()));
        assert_eq!(num(&one("hsrp.hellotime")), 3);
        assert_eq!(num(&one("hsrp.holdtime")), 10);
        assert_eq!(num(&one("hsrp.priority")), u64::from(m.priority));
        assert_eq!(num(&one("hsrp.group")), 7);
        assert_eq!(one("hsrp.auth_data"), "cisco");
        assert_eq!(one("hsrp.virt_ip"), vip.to_string());
        assert_eq!(one("ip.ttl"), "1");
    }
    eprintln!(
        "wireshark: {} HSRP messages (hello, coup, resign) read as encoded",
        msgs.len()
    );
}
