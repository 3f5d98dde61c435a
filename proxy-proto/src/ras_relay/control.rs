//! Control: which gatekeeper is in control, failover and fail-back, the
//! proxy's own registration and heartbeat probes, paced re-registration
//! of every endpoint after a control move, binding refreshes, and what
//! goes out to a gatekeeper on an endpoint's behalf (from its own
//! gatekeeper-side address, signed when it has a password).

use super::*;

impl RasRelay {
    /// The kernel saw RAS or call-signalling traffic from gatekeeper host
    /// `ip` at `at` (the liveness map): that counts as hearing from it, so
    /// the failure detector runs on what the kernel sees, not only on the
    /// probes userspace gets answered. A gatekeeper already down needs a
    /// real RAS answer to come back.
    pub fn note_gatekeeper_seen(&mut self, ip: std::net::IpAddr, at: Instant) {
        for i in 0..self.gks.len() {
            if self.gks[i].cfg.ras.ip() == ip {
                self.gks[i].hb.handle_seen(at);
                self.note_health(i);
            }
        }
    }

    /// Drop registrations whose endpoint has sent nothing for 1.5 × the
    /// timeToLive it was granted (H.225.0: the registration lapses), and
    /// unregister them at the gatekeeper.
    pub(super) fn expire(&mut self, now: Instant) {
        let lapsed: Vec<(String, Option<Binding>, SocketAddr)> = self
            .regs
            .iter()
            .filter(|r| {
                let ttl = r.granted_ttl;
                let last = r.last_keepalive.unwrap_or(now);
                now.saturating_duration_since(last)
                    > Duration::from_secs(u64::from(ttl.max(1))) * 3 / 2
            })
            .map(|r| (r.endpoint_id.clone(), r.binding.clone(), r.source))
            .collect();
        for (id, binding, source) in lapsed {
            tracing::info!(endpoint_id = %id, "registration expired (no keepalive within 1.5 x timeToLive)");
            if let Some(b) = binding.filter(|b| Some(b.gatekeeper) == self.active) {
                let m = build::urq(
                    self.gk_side(source).0,
                    &b.endpoint_id,
                    UnregRequestReason::ttlExpired(()),
                );
                self.send_msg_to_gk(
                    b.gatekeeper,
                    m,
                    Pending::Unregister {
                        gk: b.gatekeeper,
                        source,
                    },
                );
            }
            self.regs.remove(&id);
            self.calls.remove_endpoint(&id);
            self.events
                .push_back(Event::Unregistered { endpoint_id: id });
        }
    }

    pub(super) fn note_health(&mut self, i: usize) {
        let h = self.gks[i].hb.health();
        if h != self.gks[i].last_health {
            self.gks[i].last_health = h;
            if h == Health::Down {
                // Its calls' signalling legs through it are gone with it:
                // the gatekeeper that takes control is to admit them again.
                let name = &self.gks[i].cfg.name;
                let mut lost = Vec::new();
                for c in self.calls.values_mut() {
                    if c.admitted_by.as_ref() == Some(name) {
                        c.anchored = false;
                        lost.push(c.call_id);
                    }
                }
                // Both ends of a call through this proxy share one id.
                lost.sort_unstable();
                lost.dedup();
                for call_id in lost {
                    self.events.push_back(Event::ControllerLost {
                        call_id,
                        gatekeeper: name.clone(),
                    });
                }
                // Calls held by a gatekeeper not in control (they stay with
                // the one that took them over): the one in control takes
                // them now, its registrations being in place.
                if let Some(a) = self.active.filter(|&a| a != i) {
                    self.readmit_orphans(a);
                }
            }
            self.events.push_back(Event::GatekeeperHealth {
                name: self.gks[i].cfg.name.clone(),
                health: h,
            });
        }
    }

    /// Pick the gatekeeper in control: keep the current one while it is up
    /// (unless preempting back to a preferred one that has been up for the
    /// hold time); leave a down one at once for the first gatekeeper that is
    /// up; come out of survivable mode only for one up for the hold time.
    pub(super) fn reselect(&mut self, now: Instant) {
        let held = |g: &Gk| {
            g.hb.health() == Health::Up
                && g.self_id.is_some()
                && g.hb
                    .up_for(now)
                    .is_some_and(|d| d >= self.cfg.failback_hold)
        };
        let up = |g: &Gk| g.hb.health() == Health::Up && g.self_id.is_some();
        let want = match self.active {
            Some(a) if self.gks[a].hb.health() != Health::Down => {
                if self.cfg.preempt {
                    (0..a).find(|&i| held(&self.gks[i])).or(Some(a))
                } else {
                    Some(a)
                }
            }
            Some(_) => (0..self.gks.len()).find(|&i| up(&self.gks[i])),
            None if !self.ever_active => {
                // The first choice: a gatekeeper later in the list only once
                // the earlier ones had one detection time (interval ×
                // multiplier) to answer, so a restart does not move every
                // registration to the backup because it answered first.
                let settled = now.saturating_duration_since(self.started)
                    >= self.cfg.heartbeat.interval * self.cfg.heartbeat.multiplier;
                match (0..self.gks.len()).find(|&i| up(&self.gks[i])) {
                    Some(0) => Some(0),
                    Some(i) if settled => Some(i),
                    _ => None,
                }
            }
            None => (0..self.gks.len()).find(|&i| held(&self.gks[i])),
        };
        if want == self.active {
            return;
        }
        let from = self.active.map(|i| self.gks[i].cfg.name.clone());
        let to = want.map(|i| self.gks[i].cfg.name.clone());
        tracing::info!(?from, ?to, "gatekeeper control moves");
        self.active = want;
        if self.ever_active {
            self.stats.failovers += 1;
        }
        self.ever_active |= want.is_some();
        self.events.push_back(Event::ControlMoved { from, to });
        // Bindings at other gatekeepers are void now; re-register everyone
        // at the new one, paced.
        self.rereg.clear();
        for id in self.regs.ids() {
            if self
                .regs
                .get(&id)
                .and_then(|r| r.binding.as_ref())
                .map(|b| b.gatekeeper)
                != want
            {
                self.regs.bind(&id, None);
                if want.is_some() {
                    self.rereg.push_back(id);
                }
            }
        }
        self.rereg_last = now;
        self.rereg_tokens = 1.0;
    }

    pub(super) fn pace_reregistration(&mut self, now: Instant) {
        let Some(gk) = self.active else {
            self.rereg.clear();
            return;
        };
        let rate = f64::from(self.cfg.reregister_rate.max(1));
        let elapsed = now.saturating_duration_since(self.rereg_last).as_secs_f64();
        self.rereg_last = now;
        // Burst of at most 1/20 s worth, so a restart does not storm.
        self.rereg_tokens = (self.rereg_tokens + elapsed * rate).min((rate / 20.0).max(1.0));
        if self.rereg.is_empty() {
            return;
        }
        let window = self.cfg.reregister_in_flight.max(1) as usize;
        // Only those at the gatekeeper in control: RRQs lost with a
        // previous one must not hold this one's window until they expire.
        let mut in_flight = self
            .pending
            .values()
            .filter(|(p, _)| matches!(p, Pending::Reregister { gk: g, .. } if *g == gk))
            .count();
        while self.rereg_tokens >= 1.0 && in_flight < window {
            let Some(id) = self.rereg.pop_front() else {
                break;
            };
            self.rereg_tokens -= 1.0;
            in_flight += 1;
            if let Some(r) = self.regs.get(&id) {
                let (rrq, source) = (r.rrq.clone(), r.source);
                self.send_endpoint_rrq(
                    gk,
                    rrq,
                    source,
                    Pending::Reregister {
                        gk,
                        endpoint_id: id,
                    },
                );
            }
        }
    }

    pub(super) fn refresh_due(&mut self, now: Instant) {
        while let Some(Reverse((at, _))) = self.refresh.peek() {
            if *at > now {
                break;
            }
            let Reverse((_, id)) = self.refresh.pop().expect("peeked");
            let Some(r) = self.regs.get(&id) else {
                continue;
            };
            let Some(b) = r.binding.clone() else { continue };
            if Some(b.gatekeeper) != self.active {
                continue;
            }
            // Not due yet for this binding (re-registered since): skip.
            if now < b.since + refresh_after(b.ttl) {
                continue;
            }
            let gk = b.gatekeeper;
            let ras = self.gk_side(r.source).1;
            let m = self.lightweight_rrq(gk, &b.endpoint_id, b.ttl, ras);
            self.send_msg_to_gk(
                gk,
                m,
                Pending::Refresh {
                    gk,
                    endpoint_id: id,
                },
            );
        }
    }

    // ----------------------------------------------------- gatekeeper side

    pub(super) fn alloc_seq(&mut self) -> u16 {
        for _ in 0..u16::MAX {
            self.next_seq = self.next_seq.wrapping_add(self.seq_step).max(1);
            if !self.pending.contains_key(&self.next_seq)
                && !self.ep_pending.contains_key(&self.next_seq)
            {
                break;
            }
        }
        self.next_seq
    }

    pub(super) fn send_probe(&mut self, gk: usize) {
        let m = match self.gks[gk].self_id.clone() {
            Some(id) => self.lightweight_rrq(gk, &id, self.cfg.local_ttl, self.cfg.gatekeeper_ras),
            None => self.own_rrq(gk),
        };
        self.send_msg_to_gk(gk, m, Pending::Probe { gk });
    }

    /// The proxy's own full RRQ at `gk`, as a gateway.
    pub(super) fn own_rrq(&self, gk: usize) -> RasMessage {
        build::rrq(build::Rrq {
            call_signal: vec![self.cfg.gatekeeper_call_signal],
            ras: self.cfg.gatekeeper_ras,
            node: build::Node::Gateway,
            aliases: vec![AliasAddress::h323_ID(bmp(&self.cfg.proxy_id))],
            gatekeeper_id: self.gks[gk].id.as_deref(),
            ttl: self.cfg.local_ttl,
            keep_alive: None,
        })
    }

    /// A lightweight RRQ for the registration `endpoint_id` at `gk`, whose
    /// RAS address there is `ras` (the proxy's own, or an endpoint's).
    pub(super) fn lightweight_rrq(
        &self,
        gk: usize,
        endpoint_id: &str,
        ttl: u32,
        ras: SocketAddr,
    ) -> RasMessage {
        build::rrq(build::Rrq {
            call_signal: Vec::new(),
            ras,
            node: build::Node::Terminal,
            aliases: Vec::new(),
            gatekeeper_id: self.gks[gk].id.as_deref(),
            ttl,
            keep_alive: Some(endpoint_id),
        })
    }

    pub(super) fn send_msg_to_gk(&mut self, gk: usize, mut m: RasMessage, p: Pending) {
        // Sequence numbers are 16 bits: past this many outstanding requests
        // a new one would have to reuse a live number, so it waits for the
        // endpoint's retry instead.
        if self.pending.len() + self.ep_pending.len() >= MAX_PENDING {
            self.stats.dropped_overload += 1;
            tracing::warn!(
                gatekeeper = %self.gks[gk].cfg.name,
                "{MAX_PENDING} requests outstanding; dropping one"
            );
            return;
        }
        let seq = self.alloc_seq();
        let _ = set_seq_num(&mut m, seq);
        self.sign(&mut m, &p);
        if matches!(m, RasMessage::registrationRequest(_)) {
            self.stats.rrqs_to_gatekeepers += 1;
        }
        match ras::encode(&m) {
            Ok(bytes) => {
                let from = self.sent_from(&p);
                let key = p.forwarded_key();
                count_forward(&mut self.outstanding, &mut self.outstanding_total, &p, true);
                self.pending.insert(seq, (p, self.now));
                if let Some(key) = key {
                    self.forwarded.insert(key, seq);
                    if self.forwarded.len() > 2 * self.pending.len() + 1024 {
                        let pending = &self.pending;
                        self.forwarded.retain(|key, ours| {
                            pending.get(ours).and_then(|(p, _)| p.forwarded_key()) == Some(*key)
                        });
                    }
                }
                self.out.push_back(Transmit {
                    side: Side::Gatekeeper,
                    to: self.gks[gk].cfg.ras,
                    from,
                    bytes,
                });
            }
            Err(e) => tracing::warn!(error = %e, "encoding toward the gatekeeper"),
        }
    }

    /// The gatekeeper-side address a request is sent from: the own address
    /// of the endpoint it is for, if it has one.
    pub(super) fn sent_from(&self, p: &Pending) -> Option<SocketAddr> {
        let source = match p {
            Pending::Probe { .. } => return None,
            Pending::Forward { to, .. } => *to,
            Pending::Reregister { endpoint_id, .. } | Pending::Refresh { endpoint_id, .. } => {
                self.regs.get(endpoint_id)?.source
            }
            Pending::CallReport { source, .. }
            | Pending::Unregister { source, .. }
            | Pending::Readmit { source, .. } => *source,
        };
        self.own_address(source)
    }

    /// The gatekeeper-side address leased to the endpoint whose RAS comes
    /// from `source`, if any.
    pub(super) fn own_address(&self, source: SocketAddr) -> Option<SocketAddr> {
        self.ids.as_ref()?.get(source)
    }

    /// Put a fresh H.235 password token into a request toward a gatekeeper
    /// when the proxy holds the credentials of whom it is for: the proxy
    /// itself (probes) or the endpoint (forwarded requests, re-registrations,
    /// refreshes). Other requests keep the tokens they came with.
    pub(super) fn sign(&self, m: &mut RasMessage, p: &Pending) {
        let aliases: Vec<String> = match p {
            Pending::Probe { .. } => vec![self.cfg.proxy_id.clone()],
            Pending::Forward {
                what: Forwarded::Register(reg),
                ..
            } => reg.aliases.iter().map(alias_text).collect(),
            Pending::Forward { to, .. } => self
                .regs
                .by_source(*to)
                .map(|r| r.aliases.iter().map(alias_text).collect())
                .unwrap_or_default(),
            Pending::Reregister { endpoint_id, .. }
            | Pending::Refresh { endpoint_id, .. }
            | Pending::Readmit {
                key: (_, endpoint_id),
                ..
            } => self
                .regs
                .get(endpoint_id)
                .map(|r| r.aliases.iter().map(alias_text).collect())
                .unwrap_or_default(),
            _ => vec![],
        };
        let found = aliases.iter().find_map(|a| {
            let bare = a.split_once(':').map(|(_, v)| v).unwrap_or(a);
            if matches!(p, Pending::Probe { .. }) {
                return self.cfg.own_password.as_ref().map(|pw| (bare, pw));
            }
            self.cfg
                .credentials
                .get(a.as_str())
                .or_else(|| self.cfg.credentials.get(bare))
                .map(|pw| (bare, pw))
        });
        if let Some((alias, password)) = found
            && let Err(e) =
                crate::h225::h235::authenticate(m, alias, password, crate::h225::h235::unix_now())
        {
            tracing::warn!(alias, error = %e, "no H.235 token");
        }
    }

    /// The H.235 password of the endpoint whose RAS datagrams come from
    /// `source`, from `[[credentials]]` by one of its aliases.
    pub(super) fn endpoint_password(&self, source: SocketAddr) -> Option<&String> {
        if self.cfg.credentials.is_empty() {
            return None;
        }
        self.regs.by_source(source)?.aliases.iter().find_map(|a| {
            let t = alias_text(a);
            let bare = t.split_once(':').map(|(_, v)| v).unwrap_or(&t);
            self.cfg
                .credentials
                .get(t.as_str())
                .or_else(|| self.cfg.credentials.get(bare))
        })
    }

    /// A full RRQ for the endpoint at `source`, with its gatekeeper-side
    /// addresses.
    pub(super) fn send_endpoint_rrq(
        &mut self,
        gk: usize,
        mut rrq: RegistrationRequest,
        source: SocketAddr,
        p: Pending,
    ) {
        let Some((cs, ras)) = self.lease_gk_side(source) else {
            return;
        };
        rrq.call_signal_address = vec![transport(cs)];
        rrq.ras_address = vec![transport(ras)];
        rrq.gatekeeper_identifier = self.gks[gk].id.as_deref().map(gkid);
        rrq.keep_alive = Some(false);
        rrq.endpoint_identifier = None;
        rrq.alternate_endpoints = None;
        rrq.supports_alt_gk = None;
        self.send_msg_to_gk(gk, RasMessage::registrationRequest(rrq), p);
    }

    /// Add a gatekeeper named in an alternateGatekeeper list, after the
    /// configured ones (bounded, so a hostile list cannot grow the state).
    pub(super) fn learn_gatekeeper(&mut self, ras: SocketAddr, now: Instant) {
        const MAX_LEARNED: usize = 8;
        if self.gks.iter().any(|g| g.cfg.ras == ras)
            || self.gks.len() >= self.cfg.gatekeepers.len() + MAX_LEARNED
            || ras == self.cfg.gatekeeper_ras
            || ras.ip().is_unspecified()
        {
            return;
        }
        let name = format!("alternate-{ras}");
        tracing::info!(gatekeeper = %name, "alternate gatekeeper learned from an RCF");
        self.events.push_back(Event::GatekeeperLearned {
            name: name.clone(),
            ras,
        });
        self.gks.push(Gk {
            cfg: GatekeeperConfig { name, ras },
            hb: own_heartbeat(&self.cfg, now),
            id: None,
            self_id: None,
            rtt: None,
            last_health: Health::Down,
        });
    }

    /// The transport reported a gatekeeper unreachable (ICMP port or host
    /// unreachable on its connected socket): probe it at once.
    pub fn handle_unreachable(&mut self, now: Instant, gatekeeper: SocketAddr) {
        self.now = self.now.max(now);
        let Some(gk) = self.gks.iter().position(|g| g.cfg.ras == gatekeeper) else {
            return;
        };
        self.stats.unreachable_hints += 1;
        // ICMP is unauthenticated: any host that can guess the flow can
        // forge one. A hint, never a verdict: probe at once; the
        // gatekeeper is down only if that probe goes unanswered too.
        self.gks[gk].hb.expedite(now);
        self.note_health(gk);
    }

    /// A gatekeeper's call signalling connection closed or was reset in the
    /// middle of a call (gatekeeper-routed model): probe the gatekeeper at
    /// that IP address at once and call it down if one interval passes
    /// without an answer.
    pub fn handle_transport_loss(&mut self, now: Instant, peer: std::net::IpAddr) {
        self.now = self.now.max(now);
        for gk in 0..self.gks.len() {
            if self.gks[gk].cfg.ras.ip() == peer {
                tracing::warn!(gatekeeper = %self.gks[gk].cfg.name, "gatekeeper dropped a call signalling connection; probing at once");
                self.gks[gk].hb.expedite(now);
                self.note_health(gk);
            }
        }
    }
}
