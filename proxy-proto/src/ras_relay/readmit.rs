//! Active calls handed to the gatekeeper that takes control (H.323 has no
//! message that moves a call between gatekeepers, so the proxy replays how
//! the call was set up):
//!
//! - once an endpoint is registered at the new gatekeeper, each of its
//!   active calls whose gatekeeper was declared down is admitted again with
//!   an ARQ carrying the call's own callIdentifier, conferenceID and call
//!   reference; the gatekeeper now has the call in its table;
//! - for a gatekeeper-routed call the calling side's proxy then sets the
//!   call up through that gatekeeper again ([`Event::Reanchor`]: its call
//!   task sends a SETUP with the same callIdentifier to the address the
//!   ACF named, and the called side's proxy splices the new leg onto the
//!   endpoint leg it kept up). Only the calling side starts, so two
//!   proxies never race; the called side's answerCall ARQ is not replayed
//!   in routed mode, as it would open a second record before the SETUP;
//! - a refusal (the callee not yet registered there: ARJ) is tried again
//!   every [`READMIT_RETRY`] until the deadline
//!   ([`RelayConfig::reanchor_deadline`]); past it the call is reported
//!   [`Event::Unanchored`] and stays under the proxy's control (or is
//!   released, as the call policy says).
//!
//! Calls the proxy admitted itself in survivable mode are not handed over:
//! no gatekeeper leg exists to re-anchor.

use super::*;

/// How long after a refused re-admission (or a failed re-anchoring) it is
/// tried again.
pub const READMIT_RETRY: Duration = Duration::from_millis(500);

/// A call record's key: (callIdentifier, local endpointIdentifier).
pub(super) type CallKey = ([u8; 16], String);

impl RasRelay {
    /// `endpoint_id` is now registered at gatekeeper `gk`: admit there each
    /// of its active calls whose gatekeeper was declared down (the same
    /// one back from a partition included: its records of the calls are
    /// stale, and the ARQ with the same callIdentifier finds them).
    pub(super) fn readmit_calls(&mut self, gk: usize, endpoint_id: &str) {
        let keys: Vec<CallKey> = self
            .calls
            .iter()
            .filter(|(_, c)| {
                c.endpoint_id == endpoint_id
                    && c.admitted_by.is_some()
                    && !c.anchored
                    && !(c.answer_call && c.routed)
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in keys {
            self.unanchored_since.entry(k.clone()).or_insert(self.now);
            self.send_readmit(gk, k);
        }
    }

    /// Admit at `gk` (in control) every call whose gatekeeper was declared
    /// down, for endpoints already registered there.
    pub(super) fn readmit_orphans(&mut self, gk: usize) {
        let mut endpoints: Vec<String> = self
            .calls
            .values()
            .filter(|c| c.admitted_by.is_some() && !c.anchored)
            .map(|c| c.endpoint_id.clone())
            .collect();
        endpoints.sort();
        endpoints.dedup();
        for e in endpoints {
            let bound = self
                .regs
                .get(&e)
                .and_then(|r| r.binding.as_ref())
                .is_some_and(|b| b.gatekeeper == gk);
            if bound {
                self.readmit_calls(gk, &e);
            }
        }
    }

    /// Send the ARQ re-admitting call `key` at `gk`, if its endpoint is
    /// registered there.
    fn send_readmit(&mut self, gk: usize, key: CallKey) {
        let Some(c) = self.calls.get(&key) else {
            self.unanchored_since.remove(&key);
            return;
        };
        let Some(r) = self.regs.get(&c.endpoint_id) else {
            self.unanchored_since.remove(&key);
            return;
        };
        // Not yet bound there: the registration's own RCF starts it.
        let Some(b) = r.binding.as_ref().filter(|b| b.gatekeeper == gk) else {
            return;
        };
        let m = build::arq(build::Arq {
            endpoint_id: &b.endpoint_id,
            gatekeeper_id: self.gks[gk].id.as_deref(),
            src_info: r.aliases.clone(),
            destinations: c
                .dest_aliases
                .iter()
                .filter_map(Alias::to_address)
                .collect(),
            call_signal: self.gk_side(r.source).0,
            bandwidth: c.bandwidth,
            crv: c.crv,
            conference_id: c.conference_id,
            call_id: c.call_id,
            answer_call: c.answer_call,
        });
        tracing::info!(
            call_id = %hex(&key.0),
            endpoint_id = %key.1,
            gatekeeper = %self.gks[gk].cfg.name,
            "admitting an active call at the gatekeeper in control"
        );
        let source = r.source;
        self.send_msg_to_gk(gk, m, Pending::Readmit { gk, key, source });
    }

    /// The gatekeeper answered a re-admission.
    pub(super) fn readmit_reply(&mut self, gk: usize, key: CallKey, m: RasMessage) {
        let RasMessage::admissionConfirm(acf) = m else {
            let why = match &m {
                RasMessage::admissionReject(arj) => format!("{:?}", arj.reject_reason),
                other => ras::CHOICE_NAMES[choice(other)].to_string(),
            };
            tracing::info!(call_id = %hex(&key.0), endpoint_id = %key.1, reason = %why, "re-admission refused; trying again");
            self.retry_readmit(key);
            return;
        };
        let name = self.gks[gk].cfg.name.clone();
        let dest = socket_addr(&acf.dest_call_signal_address);
        let far_end = dest.filter(|d| !self.is_own_gk_side(*d));
        let Some(c) = self.calls.get_mut(&key) else {
            return;
        };
        c.admitted_by = Some(name.clone());
        c.anchored = true;
        c.routed = matches!(acf.call_model, CallModel::gatekeeperRouted(_));
        c.destination = far_end;
        self.stats.readmitted += 1;
        let (routed, answer_call) = (c.routed, c.answer_call);
        match (routed, dest) {
            (true, Some(to)) if !answer_call => {
                let caller = self.caller_identity(&key.0);
                tracing::info!(call_id = %hex(&key.0), gatekeeper = %name, %to, "call admitted; re-anchoring its signalling there");
                self.events.push_back(Event::Reanchor(Reanchor {
                    call_id: key.0,
                    to,
                    caller: caller
                        .as_ref()
                        .map(|(cs, _)| *cs)
                        .unwrap_or(self.cfg.gatekeeper_call_signal),
                    endpoint_id: caller.and_then(|(_, id)| id),
                    gatekeeper: name,
                }));
            }
            _ => {
                tracing::info!(call_id = %hex(&key.0), gatekeeper = %name, "call admitted; under that gatekeeper's control");
                self.unanchored_since.remove(&key);
            }
        }
    }

    /// The call task set call `call_id` up through the gatekeeper in
    /// control: it is anchored there.
    pub fn call_anchored(&mut self, call_id: &[u8; 16]) {
        self.unanchored_since.retain(|(c, _), _| c != call_id);
    }

    /// Re-anchoring call `call_id` failed (the SETUP was refused or never
    /// answered): admit it again after [`READMIT_RETRY`], within the
    /// deadline.
    pub fn reanchor_failed(&mut self, now: Instant, call_id: &[u8; 16]) {
        self.now = self.now.max(now);
        let keys: Vec<CallKey> = self
            .unanchored_since
            .keys()
            .filter(|(c, _)| c == call_id)
            .cloned()
            .collect();
        for k in keys {
            self.retry_readmit(k);
        }
    }

    pub(super) fn retry_readmit(&mut self, key: CallKey) {
        let since = *self.unanchored_since.entry(key.clone()).or_insert(self.now);
        let at = self.now + READMIT_RETRY;
        if at.saturating_duration_since(since) > self.cfg.reanchor_deadline {
            self.unanchored_since.remove(&key);
            self.stats.unanchored += 1;
            tracing::warn!(
                call_id = %hex(&key.0),
                endpoint_id = %key.1,
                deadline = ?self.cfg.reanchor_deadline,
                "call not admitted by the gatekeeper in control within the deadline"
            );
            self.events.push_back(Event::Unanchored {
                call_id: key.0,
                endpoint_id: key.1,
            });
            return;
        }
        self.readmit_due.push(Reverse((at, key)));
    }

    /// [`Timer::Readmit`]: re-admissions due again.
    pub(super) fn readmit_due(&mut self, now: Instant) {
        while let Some(Reverse((at, _))) = self.readmit_due.peek() {
            if *at > now {
                return;
            }
            let Some(Reverse((_, key))) = self.readmit_due.pop() else {
                return;
            };
            if !self.unanchored_since.contains_key(&key) {
                continue;
            }
            match self.active {
                Some(gk) => self.send_readmit(gk, key),
                // Survivable mode: the proxy controls the call; the next
                // gatekeeper's registrations start over.
                None => {
                    self.unanchored_since.remove(&key);
                }
            }
        }
    }
}
