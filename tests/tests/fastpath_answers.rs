//! Root test of the kernel's keepalive answer, byte for byte: for every
//! request length and every answer length the fast path handles, on every
//! header layout it parses (IPv4 and IPv6, untagged, 802.1Q, QinQ), the
//! frame `ras_fastpath` leaves after XDP_TX (BPF_PROG_TEST_RUN, nothing is
//! sent anywhere) must equal one built here from scratch, checksums summed
//! in full rather than updated.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use proxy_common::{
    FastpathSettings, KA_MAX, KA_MIN, KA_SEQ_OFF, KeepaliveEntry, ka_hash, ka_slot, ones_sum,
};
use proxy_lab::frame::{Frame, checksum, vlan_tags};
use proxy_lab::netns::unique_name;
use proxy_tests::privileged;
use proxy_user::fastpath::{FASTPATH_PROG, FastPath};
use proxy_user::offload::local_addr;

const XDP_PASS: u32 = 2;
const XDP_TX: u32 = 3;
const EP_MAC: [u8; 6] = [0x02, 0x11, 0x22, 0x33, 0x44, 0x55];
const PX_MAC: [u8; 6] = [0x0a, 0x66, 0x77, 0x88, 0x99, 0xaa];
/// DSCP EF with ECN ECT(1): the answer keeps the DSCP and clears ECN.
const TOS: u8 = 0xb9;

/// A frame from `from` to `to` with `payload` over UDP: VLAN tags `vlans`
/// (priority 5), TTL / hop limit `ttl`, TOS / traffic class `tos`, the MAC
/// addresses of the side that sends it.
fn frame(
    vlans: &[u16],
    from: SocketAddr,
    to: SocketAddr,
    ttl: u8,
    tos: u8,
    payload: &[u8],
) -> Vec<u8> {
    let (dst_mac, src_mac) = if from.port() == 1719 {
        (EP_MAC, PX_MAC)
    } else {
        (PX_MAC, EP_MAC)
    };
    Frame {
        dst_mac,
        src_mac,
        tags: vlan_tags(vlans, 5),
        ttl,
        tos,
    }
    .udp(from, to, payload)
}

/// `len` bytes that the fast path takes for a keepalive (its first byte is
/// a registrationRequest with the extension bit), `seed` varying the rest.
fn request(len: usize, seq: u16, seed: u8) -> Vec<u8> {
    let mut r: Vec<u8> = (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect();
    r[0] = 0x0e;
    r[KA_SEQ_OFF..KA_SEQ_OFF + 2].copy_from_slice(&seq.to_be_bytes());
    r
}

/// A 40-byte answer template (requestSeqNum zero).
fn rcf40() -> Vec<u8> {
    let mut r = vec![0xa5; 40];
    r[KA_SEQ_OFF..KA_SEQ_OFF + 2].fill(0);
    r
}

/// The learned entry for `req` answered by `rcf` (requestSeqNum zero).
fn entry(req: &[u8], rcf: &[u8]) -> KeepaliveEntry {
    let (req_hash, eid_hash) = ka_hash(req, 0, 0);
    let mut e = KeepaliveEntry {
        req_hash,
        eid_hash,
        req_len: req.len() as u16,
        rcf_len: rcf.len() as u16,
        rcf_csum: ones_sum(rcf),
        ..Default::default()
    };
    e.rcf.bytes[..rcf.len()].copy_from_slice(rcf);
    e
}

/// `f` (IPv4, tags `vlans`) with four bytes of IPv4 options added.
fn with_ip_options(f: &[u8], vlans: &[u16]) -> Vec<u8> {
    let l3 = 14 + 4 * vlans.len();
    let mut out = f[..l3 + 20].to_vec();
    out.extend_from_slice(&[1, 1, 1, 0]);
    out.extend_from_slice(&f[l3 + 20..]);
    out[l3] = 0x46;
    let tot = u16::from_be_bytes([out[l3 + 2], out[l3 + 3]]) + 4;
    out[l3 + 2..l3 + 4].copy_from_slice(&tot.to_be_bytes());
    out[l3 + 10..l3 + 12].fill(0);
    let c = checksum(&[&out[l3..l3 + 24]]);
    out[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
    out
}

/// Run `f` through the fast path; it must come back with `action`,
/// counted under `slot`.
fn refused(fp: &mut FastPath, f: &[u8], action: u32, slot: u32, what: &str) {
    let before = fp.counters().unwrap().keepalive;
    let (a, _, _) = fp.test_run(FASTPATH_PROG, f, 1, None).unwrap();
    let after = fp.counters().unwrap().keepalive;
    assert_eq!(a, action, "{what}");
    assert_eq!(
        after[slot as usize],
        before[slot as usize] + 1,
        "{what}: counted"
    );
    assert_eq!(
        after[ka_slot::ANSWERED as usize],
        before[ka_slot::ANSWERED as usize],
        "{what}: not answered"
    );
}

#[test]
fn kernel_answers_equal_frames_built_from_scratch_at_every_length() {
    if !privileged("kernel_answers_equal_frames_built_from_scratch_at_every_length") {
        return;
    }
    let instance = unique_name("fa");
    let mut fp = FastPath::load(&instance).expect("load fast path");
    let run = (|| {
        let px4: SocketAddr = "198.18.0.1:1719".parse().unwrap();
        let ep4: SocketAddr = "198.18.0.2:40000".parse().unwrap();
        let px6 = SocketAddr::new(Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 1).into(), 1719);
        let ep6 = SocketAddr::new(Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 2).into(), 40000);
        fp.set_local_addrs(&[px4.ip(), px6.ip()]).unwrap();
        let mut table = fp.take_keepalive_table().unwrap();
        let mut answered = 0u64;
        let mut out = vec![0u8; 512];
        let layouts: [(&[u16], bool); 6] = [
            (&[], false),
            (&[100], false),
            (&[200, 100], false),
            (&[], true),
            (&[100], true),
            (&[200, 100], true),
        ];
        // The configured endpoint address is checked first, other local
        // addresses are looked up in a map: each family takes each way once.
        for hot in [px4.ip(), px6.ip()] {
            fp.configure(FastpathSettings {
                answer: 1,
                ras_port: 1719,
                endpoint_addr: local_addr(hot),
                has_endpoint_addr: 1,
                ..Default::default()
            })?;
            for (vlans, v6) in layouts {
                let (px, ep) = if v6 { (px6, ep6) } else { (px4, ep4) };
                // Every request length with a spread of answer lengths, then
                // on the first layout every answer length too.
                let mut cases: Vec<(usize, usize)> = (KA_MIN..=KA_MAX)
                    .map(|l| (l, KA_MIN + (l * 37) % (KA_MAX - KA_MIN + 1)))
                    .collect();
                if vlans.is_empty() && !v6 && hot == px4.ip() {
                    cases.extend((KA_MIN..=KA_MAX).map(|r| (53, r)));
                }
                for (req_len, rcf_len) in cases {
                    let seq = (req_len * 257 + rcf_len) as u16;
                    let req = request(req_len, seq, rcf_len as u8);
                    let mut rcf: Vec<u8> = (0..rcf_len)
                        .map(|i| (i as u8).wrapping_mul(13) ^ 0xa5)
                        .collect();
                    rcf[KA_SEQ_OFF..KA_SEQ_OFF + 2].fill(0);
                    table.learn(ep, &entry(&request(req_len, 1, rcf_len as u8), &rcf))?;
                    let what =
                        format!("vlans {vlans:?} v6 {v6} request {req_len} answer {rcf_len}");
                    let f = frame(vlans, ep, px, 61, TOS, &req);
                    let (action, _, n) = fp.test_run(FASTPATH_PROG, &f, 1, Some(&mut out))?;
                    assert_eq!(action, XDP_TX, "{what}");
                    answered += 1;
                    let mut want_rcf = rcf.clone();
                    want_rcf[KA_SEQ_OFF..KA_SEQ_OFF + 2].copy_from_slice(&seq.to_be_bytes());
                    let want = frame(vlans, px, ep, 64, TOS & !3, &want_rcf);
                    assert_eq!(&out[..n], &want[..], "{what}");
                }
            }
        }
        let c = fp.counters()?;
        assert_eq!(c.keepalive[ka_slot::ANSWERED as usize], answered);
        println!(
            "kernel answers checked byte for byte: {answered} frames, 6 layouts, both address checks"
        );
        table.learn(ep4, &entry(&request(40, 1, 1), &rcf40()))?;
        table.learn(ep6, &entry(&request(40, 1, 1), &rcf40()))?;
        for (vlans, v6) in layouts {
            let (px, ep) = if v6 { (px6, ep6) } else { (px4, ep4) };
            let req = request(40, 9, 1);
            let good = frame(vlans, ep, px, 61, TOS, &req);
            // Link-layer padding after the datagram: answered, the padding
            // left at the end of the answer.
            let mut padded = good.clone();
            padded.extend_from_slice(&[0xee; 6]);
            let (action, _, n) = fp.test_run(FASTPATH_PROG, &padded, 1, Some(&mut out))?;
            assert_eq!(action, XDP_TX, "padded, vlans {vlans:?} v6 {v6}");
            let mut want_rcf = rcf40();
            want_rcf[KA_SEQ_OFF..KA_SEQ_OFF + 2].copy_from_slice(&9u16.to_be_bytes());
            let mut want = frame(vlans, px, ep, 64, TOS & !3, &want_rcf);
            want.extend_from_slice(&[0xee; 6]);
            assert_eq!(&out[..n], &want[..], "padded, vlans {vlans:?} v6 {v6}");

            let what = |w: &str| format!("{w}, vlans {vlans:?} v6 {v6}");
            let mut bad = req.clone();
            bad[30] ^= 0x10;
            let f = frame(vlans, ep, px, 61, TOS, &bad);
            refused(
                &mut fp,
                &f,
                XDP_PASS,
                ka_slot::CONTENT_MISMATCH,
                &what("changed byte"),
            );
            let other = SocketAddr::new(ep.ip(), ep.port() + 1);
            let f = frame(vlans, other, px, 61, TOS, &req);
            refused(
                &mut fp,
                &f,
                XDP_PASS,
                ka_slot::UNKNOWN_SOURCE,
                &what("other port"),
            );
            let not_px = match px.ip() {
                IpAddr::V4(_) => SocketAddr::new(Ipv4Addr::new(198, 18, 0, 9).into(), 1719),
                IpAddr::V6(_) => {
                    SocketAddr::new(Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 9).into(), 1719)
                }
            };
            let f = frame(vlans, ep, not_px, 61, TOS, &req);
            refused(
                &mut fp,
                &f,
                XDP_PASS,
                ka_slot::NOT_FOR_PROXY,
                &what("not the proxy"),
            );
            let f = frame(vlans, ep, px, 61, TOS, &request(48, 9, 1));
            refused(
                &mut fp,
                &f,
                XDP_PASS,
                ka_slot::LENGTH_MISMATCH,
                &what("longer"),
            );
            // Headers that claim three bytes more than the frame holds.
            let f = &good[..good.len() - 3];
            refused(
                &mut fp,
                f,
                XDP_PASS,
                ka_slot::LENGTH_MISMATCH,
                &what("cut short"),
            );
            if !v6 {
                let f = with_ip_options(&good, vlans);
                refused(
                    &mut fp,
                    &f,
                    XDP_PASS,
                    ka_slot::UNSUPPORTED_HEADERS,
                    &what("options"),
                );
            }
        }
        // An IPv6 source that is an IPv4-mapped address would alias the
        // IPv4 endpoint's entry.
        let mapped = SocketAddr::new(Ipv4Addr::new(198, 18, 0, 2).to_ipv6_mapped().into(), 40000);
        let f = frame(&[], mapped, px6, 61, TOS, &request(40, 9, 1));
        refused(
            &mut fp,
            &f,
            XDP_PASS,
            ka_slot::UNSUPPORTED_HEADERS,
            "IPv4-mapped source",
        );

        // A different endpointIdentifier (bytes 20..28 of the request) is
        // counted apart from other changes.
        let learned = request(40, 1, 1);
        let (req_hash, eid_hash) = ka_hash(&learned, 20, 8);
        let e = KeepaliveEntry {
            req_hash,
            eid_hash,
            eid_off: 20,
            eid_len: 8,
            ..entry(&learned, &rcf40())
        };
        table.learn(ep4, &e)?;
        let mut other_id = request(40, 9, 1);
        other_id[24] ^= 1;
        let f = frame(&[], ep4, px4, 61, TOS, &other_id);
        refused(
            &mut fp,
            &f,
            XDP_PASS,
            ka_slot::IDENTIFIER_MISMATCH,
            "identifier",
        );

        // A UDP checksum that sums to zero goes out as 0xffff.
        let mut rcf = rcf40();
        let mut want_rcf = rcf.clone();
        want_rcf[KA_SEQ_OFF..KA_SEQ_OFF + 2].copy_from_slice(&9u16.to_be_bytes());
        let w = (0..=u16::MAX)
            .find(|w| {
                want_rcf[10..12].copy_from_slice(&w.to_be_bytes());
                let f = frame(&[], px4, ep4, 64, TOS & !3, &want_rcf);
                f[f.len() - 40 - 2..f.len() - 40] == [0xff, 0xff]
            })
            .expect("some word zeroes the sum");
        rcf[10..12].copy_from_slice(&w.to_be_bytes());
        want_rcf[10..12].copy_from_slice(&w.to_be_bytes());
        table.learn(ep4, &entry(&learned, &rcf))?;
        let f = frame(&[], ep4, px4, 61, TOS, &request(40, 9, 1));
        let (action, _, n) = fp.test_run(FASTPATH_PROG, &f, 1, Some(&mut out))?;
        assert_eq!(action, XDP_TX);
        assert_eq!(
            &out[..n],
            &frame(&[], px4, ep4, 64, TOS & !3, &want_rcf)[..]
        );
        assert_eq!(
            &out[n - 42..n - 40],
            &[0xff, 0xff],
            "zero checksum sent as 0xffff"
        );

        // The rate bound: one answer per 10 s and no slack, so a second
        // keepalive right after the first goes to userspace.
        fp.configure(FastpathSettings {
            answer: 1,
            ras_port: 1719,
            rate_interval_ns: 10_000_000_000,
            rate_slack_ns: 0,
            ..Default::default()
        })?;
        table.learn(ep4, &entry(&learned, &rcf))?;
        let (action, _, _) = fp.test_run(FASTPATH_PROG, &f, 1, None)?;
        assert_eq!(action, XDP_TX, "first keepalive under the rate bound");
        refused(
            &mut fp,
            &f,
            XDP_PASS,
            ka_slot::RATE_LIMITED,
            "second within 10 s",
        );
        Ok::<_, proxy_user::fastpath::FastPathError>(())
    })();
    fp.unpin().unwrap();
    run.unwrap();
}

#[test]
fn batch_reads_of_the_learned_endpoint_map_see_every_entry() {
    if !privileged("batch_reads_of_the_learned_endpoint_map_see_every_entry") {
        return;
    }
    let instance = unique_name("fb");
    let mut fp = FastPath::load(&instance).expect("load fast path");
    let run = (|| {
        let mut table = fp.take_keepalive_table()?;
        let source = |i: u32| {
            let host = Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 0, 0)) + 16 + i / 8);
            SocketAddr::new(host.into(), 20_000 + (i % 8) as u16)
        };
        let mut reader = table.reader()?;
        assert!(reader.entries()?.is_empty(), "a new map is empty");
        // More entries than one batch holds (1024), with distinct contents.
        for i in 0..5000u32 {
            let mut e = entry(&request(40, 1, 1), &rcf40());
            e.answered = u64::from(i);
            table.learn(source(i), &e)?;
        }
        for i in (0..5000u32).step_by(7) {
            table.forget(source(i));
        }
        let mut batch = reader.entries()?;
        let mut one_by_one = table.entries_key_by_key();
        batch.sort_by_key(|(s, _)| *s);
        one_by_one.sort_by_key(|(s, _)| *s);
        assert_eq!(batch.len(), 5000 - 5000usize.div_ceil(7));
        assert_eq!(batch, one_by_one);
        for (s, e) in &batch {
            let i = (0..5000u32)
                .find(|&i| source(i) == *s)
                .expect("a learned source");
            assert_eq!(e.answered, u64::from(i), "{s}: its own entry");
        }
        println!("batch read: {} entries, same as key by key", batch.len());
        Ok::<_, proxy_user::fastpath::FastPathError>(())
    })();
    fp.unpin().unwrap();
    run.unwrap();
}
