//! The H.323 survivable proxy's protocol layer, sans I/O.
//!
//! - Codecs: `tpkt` (RFC 1006 framing), `q931` (the Q.931 subset H.225.0
//!   uses), `h225` (RAS and the User-user IE in aligned PER, generated from
//!   the ITU ASN.1 by rasn-compiler), `capture` (reading and writing pcap
//!   files of them).
//! - State machines, fed bytes and time, returning bytes and events in the
//!   manner of quinn-proto: `call` (one relayed call and its two legs),
//!   `ras_relay` (registrations, forwarding, gatekeeper control and
//!   failover, survivable mode), with `registration` (the table and its
//!   indexes), `gatekeeper` (the heartbeat failure detector) and `identity`
//!   (per-endpoint gatekeeper-side addresses); `hsrp` (RFC 2281, the
//!   redundancy protocol the specification names, for a proxy pair).
//! - `offload`: the answers the kernel fast path sends, built here and
//!   handed to it as map entries.
//!
//! Nothing here opens a socket, reads a clock or starts a runtime: the
//! daemon (`proxy-user`) does, and the tests here run without root.

pub mod budget;
pub mod call;
pub mod capture;
pub mod gatekeeper;
pub mod h225;
pub mod hsrp;
pub mod identity;
pub mod offload;
pub mod q931;
pub mod ras_relay;
pub mod registration;
pub mod tpkt;
