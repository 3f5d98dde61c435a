//! Keepalive offload: turn what userspace learned about an endpoint's
//! keepalives into the map entry the XDP program answers from.
//!
//! Userspace stays the reference: it answers an endpoint's keepalive from an
//! [`RcfTemplate`] (the RCF encoded once, requestSeqNum patched per answer),
//! and the kernel gets the very same template. So a kernel answer is
//! byte-identical to the userspace one by construction, and the root tests
//! compare the two on the wire anyway.

use std::net::{IpAddr, SocketAddr};

use proxy_common::{
    EndpointKey, KA_MAX, KA_MIN, KA_SEQ_OFF, KeepaliveEntry, LocalAddr, ka_hash, ones_sum,
};

/// Why an endpoint's keepalives stay with userspace.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OffloadError {
    /// Request or answer longer than the kernel handles.
    #[error("{what} is {len} bytes; the fast path handles {KA_MIN}..={KA_MAX}")]
    Length {
        /// Which message.
        what: &'static str,
        /// Its length.
        len: usize,
    },
    /// requestSeqNum is not where aligned PER puts it for RRQ/RCF.
    #[error("{0} does not carry requestSeqNum at byte {KA_SEQ_OFF}")]
    SeqOffset(&'static str),
}

/// The map key of a source address.
pub fn key(addr: SocketAddr) -> EndpointKey {
    EndpointKey {
        addr: mapped(addr.ip()),
        port: addr.port(),
        pad: 0,
    }
}

/// The source address of a map key.
pub fn source(key: &EndpointKey) -> SocketAddr {
    let v6 = std::net::Ipv6Addr::from(key.addr);
    let ip = match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(v6),
    };
    SocketAddr::new(ip, key.port)
}

/// A local address as the fast path stores it.
pub fn local_addr(ip: IpAddr) -> LocalAddr {
    LocalAddr { addr: mapped(ip) }
}

fn mapped(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// requestSeqNum as aligned PER puts it on the wire: INTEGER (1..65535) is
/// a constrained whole number, encoded as its offset from the lower bound.
/// The kernel copies these bytes from request to answer unchanged.
pub fn wire_seq(seq: u16) -> [u8; 2] {
    seq.wrapping_sub(1).to_be_bytes()
}

/// An encoded RCF with requestSeqNum zeroed, answered by patching it in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RcfTemplate {
    bytes: Vec<u8>,
}

impl RcfTemplate {
    /// Build from two encodings of the same RCF that differ only in
    /// requestSeqNum; checks that nothing but the two bytes at
    /// [`KA_SEQ_OFF`] differ.
    pub fn from_encodings(a: &[u8], b: &[u8]) -> Result<Self, OffloadError> {
        let differs: Vec<usize> = a
            .iter()
            .zip(b)
            .enumerate()
            .filter(|(_, (x, y))| x != y)
            .map(|(i, _)| i)
            .collect();
        if a.len() != b.len()
            || differs
                .iter()
                .any(|&i| i != KA_SEQ_OFF && i != KA_SEQ_OFF + 1)
        {
            return Err(OffloadError::SeqOffset("registrationConfirm"));
        }
        let mut bytes = a.to_vec();
        bytes[KA_SEQ_OFF] = 0;
        bytes[KA_SEQ_OFF + 1] = 0;
        Ok(Self { bytes })
    }

    /// The RCF for a keepalive with this requestSeqNum (1..=65535).
    pub fn answer(&self, seq: u16) -> Vec<u8> {
        let mut v = self.bytes.clone();
        v[KA_SEQ_OFF..KA_SEQ_OFF + 2].copy_from_slice(&wire_seq(seq));
        v
    }

    /// The template itself, requestSeqNum bytes zero.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Encoded length.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Never true for a real RCF.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

/// The map entry that lets the kernel answer `request` (a keepalive that
/// userspace just answered from `tpl`) when it comes again with another
/// requestSeqNum. `endpoint_id` is located in the request so the kernel can
/// count a wrong identifier separately; when it is not found exactly once,
/// the whole-request hash still covers it.
pub fn entry(
    request: &[u8],
    seq: u16,
    endpoint_id: &str,
    tpl: &RcfTemplate,
) -> Result<KeepaliveEntry, OffloadError> {
    if !(KA_MIN..=KA_MAX).contains(&request.len()) {
        return Err(OffloadError::Length {
            what: "keepalive RRQ",
            len: request.len(),
        });
    }
    if !(KA_MIN..=KA_MAX).contains(&tpl.len()) {
        return Err(OffloadError::Length {
            what: "RCF",
            len: tpl.len(),
        });
    }
    if request[KA_SEQ_OFF..KA_SEQ_OFF + 2] != wire_seq(seq) {
        return Err(OffloadError::SeqOffset("registrationRequest"));
    }
    let eid: Vec<u8> = endpoint_id
        .encode_utf16()
        .flat_map(|u| u.to_be_bytes())
        .collect();
    let mut found = (0..request.len().saturating_sub(eid.len()) + 1)
        .filter(|&i| !eid.is_empty() && request[i..].starts_with(&eid));
    let (eid_off, eid_len) = match (found.next(), found.next()) {
        (Some(off), None) if eid.len() >= 8 => (off, eid.len()),
        _ => (0, 0),
    };
    let (req_hash, eid_hash) = ka_hash(request, eid_off, eid_len);
    let mut e = KeepaliveEntry {
        req_hash,
        eid_hash,
        req_len: request.len() as u16,
        eid_off: eid_off as u16,
        eid_len: eid_len as u16,
        rcf_len: tpl.len() as u16,
        rcf_csum: ones_sum(&tpl.bytes),
        ..Default::default()
    };
    e.rcf.bytes[..tpl.len()].copy_from_slice(&tpl.bytes);
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::h225::ras;
    use crate::h225::value::{ras_from_json, transport_json};
    use serde_json::json;

    fn rcf(seq: u16) -> Vec<u8> {
        let v = json!({"registrationConfirm": {"requestSeqNum": seq, "protocolIdentifier": "0.0.8.2250.0.4",
            "callSignalAddress": [transport_json("198.18.1.1:1720".parse().unwrap())],
            "gatekeeperIdentifier": "proxy", "endpointIdentifier": "EP-0001", "timeToLive": 60}});
        ras::encode(&ras_from_json(&v).unwrap()).unwrap()
    }

    fn keepalive(seq: u16, id: &str) -> Vec<u8> {
        let v = json!({"registrationRequest": {"requestSeqNum": seq, "protocolIdentifier": "0.0.8.2250.0.4",
            "discoveryComplete": false, "callSignalAddress": [], "rasAddress": [transport_json("198.18.1.2:1719".parse().unwrap())],
            "terminalType": {"terminal": {}, "mc": false, "undefinedNode": false},
            "gatekeeperIdentifier": "proxy",
            "endpointVendor": {"vendor": {"t35CountryCode": 0, "t35Extension": 0, "manufacturerCode": 0}},
            "timeToLive": 60, "keepAlive": true, "endpointIdentifier": id}});
        ras::encode(&ras_from_json(&v).unwrap()).unwrap()
    }

    #[test]
    fn template_answers_equal_fresh_encodings() {
        let t = RcfTemplate::from_encodings(&rcf(1), &rcf(0xfffe)).unwrap();
        for seq in [1u16, 2, 255, 256, 0x1234, 65535] {
            assert_eq!(t.answer(seq), rcf(seq), "seq {seq}");
        }
    }

    #[test]
    fn entry_hashes_mask_only_the_sequence_number() {
        let t = RcfTemplate::from_encodings(&rcf(1), &rcf(2)).unwrap();
        let req = keepalive(7, "EP-0001");
        assert_eq!(req[0] & 0xfe, 0x0e, "registrationRequest with extensions");
        let e = entry(&req, 7, "EP-0001", &t).unwrap();
        assert_eq!(ka_hash(&keepalive(9999, "EP-0001"), 0, 0).0, e.req_hash);
        assert_ne!(ka_hash(&keepalive(7, "EP-0002"), 0, 0).0, e.req_hash);
        assert_eq!(e.eid_len, 14);
        let off = e.eid_off as usize;
        // The identifier hash covers the words that hold it: another request
        // with the same identifier at the same place has the same one.
        let other = keepalive(7, "EP-0001");
        assert_eq!(ka_hash(&other, off, 14).1, e.eid_hash);
        let mut changed = req.clone();
        changed[off + 13] ^= 1;
        assert_ne!(ka_hash(&changed, off, 14).1, e.eid_hash);
        changed = req.clone();
        changed[(off / 8) * 8 - 1] ^= 1;
        assert_eq!(
            ka_hash(&changed, off, 14).1,
            e.eid_hash,
            "words before it do not count"
        );
        assert_ne!(ka_hash(&changed, 0, 0).0, e.req_hash);
        assert_eq!(e.rcf_csum, ones_sum(t.bytes()));
        assert_eq!(&e.rcf.bytes[..t.len()], t.bytes());
    }

    #[test]
    fn keys_round_trip_both_families() {
        for a in ["198.18.1.2:1719", "[2001:2::5]:40000"] {
            let a: SocketAddr = a.parse().unwrap();
            assert_eq!(source(&key(a)), a);
        }
    }
}
