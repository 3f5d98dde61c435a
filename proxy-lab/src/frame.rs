//! Ethernet frames around UDP datagrams, built from scratch with every
//! checksum summed in full: the lab's test and benchmark inputs, and the
//! frames the kernel's incremental rewrite is checked against.

use std::net::{IpAddr, SocketAddr};

/// The one's-complement checksum of `parts` laid end to end (each part of
/// even length but the last), as IPv4, UDP and ICMP use it. A header or
/// datagram with a correct checksum in it sums to 0.
pub fn checksum(parts: &[&[u8]]) -> u16 {
    let mut s: u64 = 0;
    for p in parts {
        for c in p.chunks(2) {
            s += u64::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
        }
    }
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

/// How to frame a datagram. IPv4 packets carry identification 0x1234 and
/// DF; IPv6 packets flow label 0x12345.
#[derive(Clone, Debug)]
pub struct Frame {
    /// Destination MAC address.
    pub dst_mac: [u8; 6],
    /// Source MAC address.
    pub src_mac: [u8; 6],
    /// VLAN tags, outermost first: (TPID, TCI).
    pub tags: Vec<(u16, u16)>,
    /// IPv4 TTL / IPv6 hop limit.
    pub ttl: u8,
    /// IPv4 TOS / IPv6 traffic class.
    pub tos: u8,
}

impl Default for Frame {
    fn default() -> Self {
        Self {
            dst_mac: [2, 0, 0, 0, 0, 1],
            src_mac: [2, 0, 0, 0, 0, 2],
            tags: Vec::new(),
            ttl: 64,
            tos: 0,
        }
    }
}

/// Tags for VLAN ids `vids`, outermost first: 802.1Q, and 802.1ad for the
/// outer one of two; priority `pcp`.
pub fn vlan_tags(vids: &[u16], pcp: u8) -> Vec<(u16, u16)> {
    vids.iter()
        .enumerate()
        .map(|(i, vid)| {
            let tpid = if i == 0 && vids.len() == 2 {
                0x88a8
            } else {
                0x8100
            };
            (tpid, vid | u16::from(pcp) << 13)
        })
        .collect()
}

impl Frame {
    /// The frame of a UDP datagram from `from` to `to` (both IPv4 or both
    /// IPv6) carrying `payload`.
    pub fn udp(&self, from: SocketAddr, to: SocketAddr, payload: &[u8]) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&self.dst_mac);
        f.extend_from_slice(&self.src_mac);
        for (tpid, tci) in &self.tags {
            f.extend_from_slice(&tpid.to_be_bytes());
            f.extend_from_slice(&tci.to_be_bytes());
        }
        let udp_len = (8 + payload.len()) as u16;
        let mut udp = Vec::new();
        udp.extend_from_slice(&from.port().to_be_bytes());
        udp.extend_from_slice(&to.port().to_be_bytes());
        udp.extend_from_slice(&udp_len.to_be_bytes());
        udp.extend_from_slice(&[0, 0]);
        udp.extend_from_slice(payload);
        let (src, dst): (Vec<u8>, Vec<u8>) = match (from.ip(), to.ip()) {
            (IpAddr::V4(s), IpAddr::V4(d)) => (s.octets().into(), d.octets().into()),
            (IpAddr::V6(s), IpAddr::V6(d)) => (s.octets().into(), d.octets().into()),
            _ => panic!("{from} and {to}: one address family per frame"),
        };
        let v6 = src.len() == 16;
        // Pseudo-header: addresses, protocol, UDP length (the IPv6 form
        // sums the same).
        let c = checksum(&[&src, &dst, &[0, 17], &udp_len.to_be_bytes(), &udp]);
        // Zero means "no checksum" in UDP: a sum of zero goes out as 0xffff.
        udp[6..8].copy_from_slice(&(if c == 0 { 0xffff } else { c }).to_be_bytes());
        if v6 {
            f.extend_from_slice(&0x86ddu16.to_be_bytes());
            f.extend_from_slice(&[0x60 | self.tos >> 4, self.tos << 4 | 0x01, 0x23, 0x45]);
            f.extend_from_slice(&udp_len.to_be_bytes());
            f.extend_from_slice(&[17, self.ttl]);
        } else {
            f.extend_from_slice(&0x0800u16.to_be_bytes());
            // The header up to the addresses, which follow below for both
            // families; its checksum covers them too.
            let mut ip = vec![0x45, self.tos];
            ip.extend_from_slice(&(20 + udp_len).to_be_bytes());
            ip.extend_from_slice(&[0x12, 0x34, 0x40, 0, self.ttl, 17, 0, 0]);
            let c = checksum(&[&ip, &src, &dst]);
            ip[10..12].copy_from_slice(&c.to_be_bytes());
            f.extend_from_slice(&ip);
        }
        f.extend_from_slice(&src);
        f.extend_from_slice(&dst);
        f.extend_from_slice(&udp);
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_sum_to_zero() {
        let from: SocketAddr = "198.18.0.2:40000".parse().unwrap();
        let to: SocketAddr = "198.18.0.1:1719".parse().unwrap();
        let f = Frame {
            tags: vlan_tags(&[200, 100], 5),
            tos: 0xb8,
            ..Default::default()
        }
        .udp(from, to, b"hello");
        assert_eq!(&f[12..14], &[0x88, 0xa8]);
        assert_eq!(&f[16..18], &[0x81, 0x00]);
        assert_eq!(&f[18..20], &(100u16 | 5 << 13).to_be_bytes());
        let ip = &f[22..42];
        assert_eq!(checksum(&[ip]), 0);
        let udp = &f[42..];
        assert_eq!(checksum(&[&ip[12..20], &[0, 17], &udp[4..6], udp]), 0);
        assert_eq!(&udp[8..], b"hello");
    }
}
