//! `proxy decode` never panics on a capture: random bytes as whole files and
//! as packet payloads give errors, and the corpus capture decodes fully.

use proxy_user::capture::{decode_bytes, write_corpus_pcap};
use proxy_user::h225::corpus;

/// xorshift: deterministic "random" bytes without a dependency.
fn noise(seed: &mut u64, n: usize) -> Vec<u8> {
    (0..n)
        .map(|_| {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            *seed as u8
        })
        .collect()
}

#[test]
fn corpus_capture_decodes_every_message() {
    let entries = corpus::build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.pcap");
    write_corpus_pcap(&p, &entries).unwrap();
    let r = decode_bytes(&std::fs::read(&p).unwrap(), &[], true).unwrap();
    assert_eq!(r.messages.len(), entries.len());
    assert!(r.messages.iter().all(|m| m.error.is_none()));
    assert!(r.packet_errors.is_empty());
}

#[test]
fn random_payloads_in_a_pcap_are_errors_not_panics() {
    let entries = corpus::build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.pcap");
    write_corpus_pcap(&p, &entries).unwrap();
    let good = std::fs::read(&p).unwrap();
    let mut seed = 0x1234_5678_9abc_def1u64;
    let mut errors = 0;
    for round in 0..300 {
        // Corrupt random bytes after the 24-byte pcap header.
        let mut b = good.clone();
        for _ in 0..(1 + round % 16) {
            let r = noise(&mut seed, 3);
            let i = 24 + (u16::from_le_bytes([r[0], r[1]]) as usize % (b.len() - 24));
            b[i] = r[2];
        }
        if let Ok(r) = decode_bytes(&b, &[1721], round % 2 == 0) {
            errors +=
                r.messages.iter().filter(|m| m.error.is_some()).count() + r.packet_errors.len();
        }
    }
    assert!(
        errors > 0,
        "300 corrupted captures produced no error at all"
    );
    // Whole files of noise: rejected with a message.
    for n in [0, 3, 24, 100, 5000] {
        let b = noise(&mut seed, n);
        assert!(decode_bytes(&b, &[], false).is_err() || n >= 24);
    }
}
