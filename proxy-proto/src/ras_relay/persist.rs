//! The registration table saved across restarts, and reconciled with the
//! kernel's learned-endpoint map.

use super::*;

/// Bytes saved as a hex string. Held as [`bytes::Bytes`], so a snapshot of
/// the table clones a reference per registration and the hex is written by
/// whoever serializes it (off the RAS task).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HexBytes(pub bytes::Bytes);

impl serde::Serialize for HexBytes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex(&self.0))
    }
}

impl<'de> serde::Deserialize<'de> for HexBytes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        unhex(&s)
            .map(|v| HexBytes(v.into()))
            .ok_or_else(|| serde::de::Error::custom("not an even-length hex string"))
    }
}

/// A registration as saved across a daemon restart.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SavedRegistration {
    /// The endpointIdentifier the endpoint uses.
    pub endpoint_id: String,
    /// Where its RAS datagrams come from.
    pub source: SocketAddr,
    /// Its RAS address.
    pub ras: SocketAddr,
    /// Its call signalling address.
    pub call_signal: Option<SocketAddr>,
    /// Its last full RRQ, aligned PER in hex.
    pub rrq: HexBytes,
    /// timeToLive granted to it.
    pub granted_ttl: u32,
    /// Its registration at a gatekeeper.
    pub binding: Option<SavedBinding>,
    /// Request hash handed to the kernel, if offloaded.
    pub offloaded: Option<u64>,
    /// Its own address toward the gatekeepers (RAS and call signalling).
    #[serde(default)]
    pub gatekeeper_side: Option<SocketAddr>,
    /// Registered by the proxy in survivable mode, accepted by no
    /// gatekeeper since.
    #[serde(default)]
    pub local: bool,
}

/// A gatekeeper-side registration as saved.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SavedBinding {
    /// Gatekeeper name (from the configuration).
    pub gatekeeper: String,
    /// The endpointIdentifier that gatekeeper assigned.
    pub endpoint_id: String,
    /// The timeToLive it granted.
    pub ttl: u32,
}

impl RasRelay {
    /// The registration table as it must survive a daemon restart: with
    /// the kernel still answering keepalives, a restarted daemon that
    /// restores this keeps every endpoint's identity and its binding at the
    /// gatekeeper, so nothing is registered again.
    pub fn snapshot(&self) -> Vec<SavedRegistration> {
        self.regs
            .iter()
            .map(|r| {
                // The RRQ's bytes as received: nothing is encoded here.
                SavedRegistration {
                    endpoint_id: r.endpoint_id.clone(),
                    source: r.source,
                    ras: r.ras,
                    call_signal: r.call_signal,
                    rrq: HexBytes(r.rrq_bytes.clone()),
                    granted_ttl: r.granted_ttl,
                    binding: r.binding.as_ref().map(|b| SavedBinding {
                        gatekeeper: self.gks[b.gatekeeper].cfg.name.clone(),
                        endpoint_id: b.endpoint_id.clone(),
                        ttl: b.ttl,
                    }),
                    offloaded: r.offloaded,
                    gatekeeper_side: self.ids.as_ref().and_then(|p| p.get(r.source)),
                    local: r.local,
                }
            })
            .collect()
    }

    /// Put back registrations saved by [`RasRelay::snapshot`] (at start,
    /// before any traffic). Bindings to gatekeepers no longer configured are
    /// dropped (those endpoints re-register where control is); the others
    /// are refreshed at the gatekeeper soon. Returns how many were restored.
    pub fn restore(&mut self, saved: Vec<SavedRegistration>, now: Instant) -> usize {
        let mut n = 0;
        for s in saved {
            let Ok(RasMessage::registrationRequest(rrq)) = ras::decode(&s.rrq.0) else {
                tracing::warn!(endpoint_id = %s.endpoint_id, "saved registration does not decode; skipped");
                continue;
            };
            let binding = s.binding.as_ref().and_then(|b| {
                let gk = self.gks.iter().position(|g| g.cfg.name == b.gatekeeper)?;
                Some(Binding {
                    gatekeeper: gk,
                    endpoint_id: b.endpoint_id.clone(),
                    ttl: b.ttl,
                    // Refresh at the gatekeeper soon: how long the daemon
                    // was away is unknown.
                    since: now.checked_sub(refresh_after(b.ttl)).unwrap_or(now),
                })
            });
            let reg = Registration {
                endpoint_id: s.endpoint_id.clone(),
                aliases: rrq.terminal_alias.clone().unwrap_or_default(),
                source: s.source,
                ras: s.ras,
                call_signal: s.call_signal,
                rrq,
                rrq_bytes: s.rrq.0.clone(),
                binding: binding.clone(),
                granted_ttl: s.granted_ttl,
                last_keepalive: Some(now),
                keepalives: 0,
                rcf_template: None,
                offloaded: s.offloaded,
                offloaded_answers: 0,
                local: s.local,
            };
            if let (Some(pool), Some(addr)) = (self.ids.as_mut(), s.gatekeeper_side)
                && !pool.claim(s.source, addr, now)
            {
                // Another range now: the gatekeeper learns the new address
                // at the next full registration.
                tracing::warn!(endpoint_id = %s.endpoint_id, %addr, "saved gatekeeper-side address outside the configured ranges; a new one is leased");
            }
            self.regs.insert(reg);
            if binding.is_some() {
                self.refresh.push(Reverse((
                    now + Duration::from_millis(500),
                    s.endpoint_id.clone(),
                )));
            } else if s.binding.is_some() {
                self.rereg.push_back(s.endpoint_id.clone());
            }
            n += 1;
        }
        // Restoring must not tell the kernel to forget what it answers.
        let _ = self.regs.take_withdrawn();
        n
    }

    /// After a restore: registrations the kernel no longer holds (its maps
    /// were removed meanwhile) must be offered to it again at their next
    /// keepalive.
    pub fn retain_offloaded(&mut self, in_kernel: &std::collections::HashSet<SocketAddr>) {
        let ids: Vec<String> = self
            .regs
            .iter()
            .filter(|r| r.offloaded.is_some() && !in_kernel.contains(&r.source))
            .map(|r| r.endpoint_id.clone())
            .collect();
        for id in ids {
            if let Some(r) = self.regs.get_mut(&id) {
                r.offloaded = None;
            }
        }
    }
}
