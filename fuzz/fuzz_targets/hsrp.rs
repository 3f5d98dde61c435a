//! HSRP version 1: any datagram decodes to a message or a clear error,
//! never a panic; what decodes encodes back to its 20 octets (the Reserved
//! one zeroed); and any
//! sequence of messages from several routers, with time passing, leaves the
//! state machine in a state of the RFC's list with its timers bounded.
#![no_main]
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use proxy_proto::hsrp::{DEFAULT_AUTH, Hsrp, HsrpConfig, LEN, Message, Output};

fuzz_target!(|data: &[u8]| {
    let t0 = Instant::now();
    let mut h = Hsrp::new(HsrpConfig {
        group: 7,
        priority: 100,
        preempt: data.first().is_some_and(|b| b & 1 == 1),
        virtual_ip: None,
        hellotime: None,
        holdtime: None,
        auth: DEFAULT_AUTH,
        address: Ipv4Addr::new(198, 18, 20, 2),
    });
    h.enable(t0);
    let mut now = t0;
    // Each record: a sender byte, a time step byte, then 20 octets.
    for rec in data.chunks(LEN + 2) {
        if rec.len() < 2 {
            break;
        }
        now += Duration::from_millis(u64::from(rec[1]) * 40);
        h.handle_timeout(now);
        let body = &rec[2..];
        match Message::decode(body) {
            Ok(m) => {
                // Byte for byte, but for the Reserved octet (sent as zero,
                // ignored on receipt).
                let mut want = [0u8; LEN];
                want.copy_from_slice(&body[..LEN]);
                want[7] = 0;
                assert_eq!(m.encode(), want);
                let from = Ipv4Addr::new(198, 18, 20, rec[0]);
                let _ = h.handle_message(now, from, &m);
            }
            Err(e) => assert!(!e.to_string().is_empty()),
        }
        while let Some(o) = h.poll_output() {
            if let Output::Send(m) = o {
                assert_eq!(Message::decode(&m.encode()), Ok(m));
            }
        }
        // Timers never run further ahead than the longest Holdtime (255 s).
        if let Some(t) = h.poll_timeout() {
            assert!(t <= now + Duration::from_secs(256));
        }
    }
});
