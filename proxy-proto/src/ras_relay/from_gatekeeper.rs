//! What gatekeepers send: replies to the proxy's own requests and to
//! forwarded ones (translated back to the endpoint's view), and their
//! requests about an endpoint (IRQ, URQ, DRQ), answered or relayed.

use super::*;

impl RasRelay {
    /// A datagram arrived on the gatekeeper-side socket.
    pub fn handle_gatekeeper(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        self.handle_gatekeeper_at(now, from, None, bytes)
    }

    /// A datagram arrived on the gatekeeper-side socket, sent to `local`
    /// (an endpoint's own gatekeeper-side address tells which endpoint a
    /// gatekeeper request is about when the request does not say).
    pub fn handle_gatekeeper_at(
        &mut self,
        now: Instant,
        from: SocketAddr,
        local: Option<SocketAddr>,
        bytes: &[u8],
    ) {
        self.now = self.now.max(now);
        let Some(gk) = self.gks.iter().position(|g| g.cfg.ras == from) else {
            self.refuse(
                from,
                Refused::NotAGatekeeper,
                "datagram from an address that is not a configured gatekeeper",
            );
            return;
        };
        let m = match ras::decode(bytes) {
            Ok(m) => m,
            Err(e) => {
                self.stats.malformed += 1;
                tracing::warn!(%from, error = %e, "malformed RAS from gatekeeper");
                self.events.push_back(Event::Rejected {
                    from,
                    reason: "malformed RAS",
                });
                return;
            }
        };
        let Some(seq) = seq_num(&m) else { return };
        if is_request(&m) {
            self.gatekeeper_request(gk, seq, m, local, now);
            return;
        }
        // A reply only counts from the gatekeeper the request went to.
        if self
            .pending
            .get(&seq)
            .is_none_or(|(p, _)| p.gatekeeper() != gk)
        {
            tracing::debug!(%from, seq, "reply to no pending request");
            return;
        }
        // Only a reply to a request the proxy sent there shows the
        // gatekeeper alive: a datagram with its source address proves
        // nothing (anyone on the path can send one).
        self.gks[gk].hb.handle_reply(now);
        self.note_health(gk);
        if let RasMessage::requestInProgress(rip) = &m {
            // H.225.0 7.18: the real answer follows. Keep waiting (from now)
            // and tell the endpoint, under its own sequence number, so its
            // retry timer stretches too.
            let delay = rip.delay;
            if let Some((p, at)) = self.pending.get_mut(&seq) {
                *at = now;
                if let Pending::Forward {
                    to, seq: theirs, ..
                } = p
                {
                    let (to, theirs) = (*to, *theirs);
                    let mut m = m;
                    let _ = set_seq_num(&mut m, theirs);
                    tracing::debug!(%to, delay, "gatekeeper asks for patience");
                    self.send_to_endpoint(to, &m);
                }
            }
            return;
        }
        let Some((p, sent)) = self.pending.remove(&seq) else {
            return;
        };
        count_forward(
            &mut self.outstanding,
            &mut self.outstanding_total,
            &p,
            false,
        );
        // Every answered request measures the gatekeeper's round trip, so
        // a gatekeeper slowed by load gets longer probe timeouts before
        // its slowness could pass for death.
        self.gks[gk]
            .hb
            .rtt_sample(now.saturating_duration_since(sent));
        if matches!(p, Pending::Probe { .. }) {
            self.gks[gk].rtt = Some(now.saturating_duration_since(sent));
        }
        self.gatekeeper_reply(gk, p, m, now);
        self.reselect(now);
    }

    pub(super) fn gatekeeper_reply(&mut self, gk: usize, p: Pending, m: RasMessage, now: Instant) {
        match p {
            Pending::Probe { .. } => match m {
                RasMessage::registrationConfirm(rcf) => {
                    self.gks[gk].self_id = Some(bmp_text(&rcf.endpoint_identifier.0));
                    if let Some(id) = &rcf.gatekeeper_identifier {
                        self.gks[gk].id = Some(bmp_text(&id.0));
                    }
                    let mut alts: Vec<(u8, SocketAddr)> = rcf
                        .alternate_gatekeeper
                        .iter()
                        .flatten()
                        .filter_map(|a| Some((a.priority, socket_addr(&a.ras_address)?)))
                        .collect();
                    alts.sort();
                    for (_, ras) in alts {
                        self.learn_gatekeeper(ras, now);
                    }
                }
                RasMessage::registrationReject(_) => self.gks[gk].self_id = None,
                _ => {}
            },
            // A late answer from a gatekeeper no longer in control.
            Pending::Refresh { .. } if Some(gk) != self.active => {}
            Pending::Refresh { endpoint_id, .. } => {
                if let RasMessage::registrationReject(_) = m {
                    // The gatekeeper forgot it: register again in full.
                    self.regs.bind(&endpoint_id, None);
                    self.rereg.push_back(endpoint_id);
                } else if let RasMessage::registrationConfirm(rcf) = m {
                    let ttl = rcf
                        .time_to_live
                        .as_ref()
                        .map(|t| t.0)
                        .unwrap_or(self.cfg.local_ttl);
                    if let Some(b) = self.regs.get(&endpoint_id).and_then(|r| r.binding.clone()) {
                        self.regs.bind(
                            &endpoint_id,
                            Some(Binding {
                                ttl,
                                since: now,
                                ..b
                            }),
                        );
                        self.refresh
                            .push(Reverse((now + refresh_after(ttl), endpoint_id)));
                    }
                }
            }
            Pending::Reregister { endpoint_id, .. } if Some(gk) != self.active => {
                // A late answer from a gatekeeper no longer in control.
                if self.active.is_some()
                    && self
                        .regs
                        .get(&endpoint_id)
                        .is_some_and(|r| r.binding.is_none())
                {
                    self.rereg.push_back(endpoint_id);
                }
            }
            Pending::Reregister { endpoint_id, .. } => match m {
                RasMessage::registrationConfirm(rcf) => {
                    let ttl = rcf
                        .time_to_live
                        .as_ref()
                        .map(|t| t.0)
                        .unwrap_or(self.cfg.local_ttl);
                    let b = Binding {
                        gatekeeper: gk,
                        endpoint_id: bmp_text(&rcf.endpoint_identifier.0),
                        ttl,
                        since: now,
                    };
                    self.regs.bind(&endpoint_id, Some(b));
                    if let Some(r) = self.regs.get_mut(&endpoint_id) {
                        r.local = false;
                    }
                    self.refresh
                        .push(Reverse((now + refresh_after(ttl), endpoint_id.clone())));
                    self.events.push_back(Event::Registered {
                        endpoint_id: endpoint_id.clone(),
                        gatekeeper: Some(self.gks[gk].cfg.name.clone()),
                    });
                    self.report_calls(gk, &endpoint_id);
                    self.readmit_calls(gk, &endpoint_id);
                }
                other => {
                    let local = self.regs.get(&endpoint_id).is_some_and(|r| r.local);
                    tracing::warn!(
                        endpoint_id,
                        reply = ras::CHOICE_NAMES[choice(&other)],
                        dropped = local,
                        "re-registration refused"
                    );
                    // A registration only the proxy ever accepted (in
                    // survivable mode), refused by the gatekeeper now in
                    // control (a duplicate alias, a failed policy): it
                    // ends. The endpoint's next keepalive is told to
                    // register in full, and the gatekeeper decides.
                    if local && matches!(other, RasMessage::registrationReject(_)) {
                        self.regs.remove(&endpoint_id);
                        self.calls.remove_endpoint(&endpoint_id);
                        self.stats.local_dropped += 1;
                        self.events.push_back(Event::Unregistered { endpoint_id });
                    }
                }
            },
            Pending::CallReport { .. } | Pending::Unregister { .. } => {}
            Pending::Readmit { key, .. } => self.readmit_reply(gk, key, m),
            Pending::Forward { to, seq, what, .. } => {
                self.forwarded_reply(gk, to, seq, what, m, now)
            }
        }
    }

    pub(super) fn forwarded_reply(
        &mut self,
        gk: usize,
        to: SocketAddr,
        seq: u16,
        what: Forwarded,
        mut m: RasMessage,
        now: Instant,
    ) {
        let _ = set_seq_num(&mut m, seq);
        match (&mut m, what) {
            (RasMessage::registrationConfirm(rcf), Forwarded::Register(mut reg)) => {
                let gk_id = bmp_text(&rcf.endpoint_identifier.0);
                let ttl = rcf
                    .time_to_live
                    .as_ref()
                    .map(|t| t.0)
                    .unwrap_or(self.cfg.local_ttl);
                // Keep the identifier the endpoint already has; else take the
                // gatekeeper's unless another endpoint here already uses it
                // (gatekeepers number independently).
                let local = match self.regs.by_source(reg.source) {
                    Some(r) => r.endpoint_id.clone(),
                    None if self.regs.get(&gk_id).is_some() => {
                        self.regs.allocate_id(&self.cfg.proxy_id)
                    }
                    None => gk_id.clone(),
                };
                reg.endpoint_id = local.clone();
                reg.binding = None;
                reg.granted_ttl = ttl;
                self.regs.insert(*reg);
                if Some(gk) == self.active {
                    self.regs.bind(
                        &local,
                        Some(Binding {
                            gatekeeper: gk,
                            endpoint_id: gk_id,
                            ttl,
                            since: now,
                        }),
                    );
                    self.refresh
                        .push(Reverse((now + refresh_after(ttl), local.clone())));
                } else if self.active.is_some() {
                    // Control moved while this RRQ was out: register it
                    // where control is now.
                    self.rereg.push_back(local.clone());
                }
                rcf.endpoint_identifier = epid(&local);
                rcf.call_signal_address = vec![transport(self.cfg.endpoint_call_signal)];
                rcf.gatekeeper_identifier = Some(gkid(&self.cfg.proxy_id));
                rcf.alternate_gatekeeper = None;
                // Pre-granted admission would let calls start without an
                // ARQ, and the proxy would not know them to keep them up.
                rcf.pre_granted_arq = None;
                tracing::info!(endpoint_id = %local, gatekeeper = %self.gks[gk].cfg.name, "registered");
                self.events.push_back(Event::Registered {
                    endpoint_id: local,
                    gatekeeper: Some(self.gks[gk].cfg.name.clone()),
                });
            }
            (RasMessage::registrationReject(rrj), _) => {
                rrj.gatekeeper_identifier = Some(gkid(&self.cfg.proxy_id));
                rrj.alt_gkinfo = None;
            }
            (RasMessage::unregistrationConfirm(_), Forwarded::Unregister(id)) => {
                self.regs.remove(&id);
                self.calls.remove_endpoint(&id);
                self.events
                    .push_back(Event::Unregistered { endpoint_id: id });
            }
            (RasMessage::admissionConfirm(acf), Forwarded::Admit(mut call)) => {
                let dest = socket_addr(&acf.dest_call_signal_address);
                call.destination = dest.filter(|d| !self.is_own_gk_side(*d));
                call.bandwidth = acf.band_width.0;
                call.admitted_by = Some(self.gks[gk].cfg.name.clone());
                call.anchored = true;
                call.routed = matches!(acf.call_model, CallModel::gatekeeperRouted(_));
                acf.dest_call_signal_address = transport(self.cfg.endpoint_call_signal);
                acf.alternate_endpoints = None;
                self.calls.insert(*call, self.now);
            }
            (RasMessage::disengageConfirm(_), Forwarded::Disengage(key)) => {
                self.calls.remove(&key);
            }
            // Endpoints must only ever know the proxy: no alternate
            // gatekeepers in rejects, and a located endpoint is reached
            // through the proxy's own addresses.
            (RasMessage::admissionReject(r), _) => r.alt_gkinfo = None,
            (RasMessage::unregistrationReject(r), _) => r.alt_gkinfo = None,
            (RasMessage::locationReject(r), _) => r.alt_gkinfo = None,
            (RasMessage::bandwidthReject(r), _) => r.alt_gkinfo = None,
            (RasMessage::locationConfirm(lcf), _) => {
                lcf.call_signal_address = transport(self.cfg.endpoint_call_signal);
                lcf.ras_address = transport(self.cfg.endpoint_ras);
                lcf.alternate_endpoints = None;
                lcf.alternate_transport_addresses = None;
            }
            _ => {}
        }
        self.send_to_endpoint(to, &m);
    }

    pub(super) fn gatekeeper_request(
        &mut self,
        gk: usize,
        seq: u16,
        mut m: RasMessage,
        local: Option<SocketAddr>,
        now: Instant,
    ) {
        // The endpoint whose own gatekeeper-side address the request came to.
        let addressed = local
            .and_then(|l| self.ids.as_ref()?.owner(l))
            .and_then(|s| self.regs.by_source(s))
            .map(|r| (r.endpoint_id.clone(), r.ras));
        // Find the endpoint it is about, and put its local identifier in.
        let target = match &mut m {
            RasMessage::unregistrationRequest(u) => {
                let r = u
                    .endpoint_identifier
                    .as_ref()
                    .and_then(|e| self.regs.by_gatekeeper_id(gk, &bmp_text(&e.0)))
                    .map(|r| (r.endpoint_id.clone(), r.ras))
                    .or_else(|| addressed.clone());
                if let Some((id, _)) = &r {
                    u.endpoint_identifier = Some(epid(id));
                    u.call_signal_address = vec![transport(self.cfg.endpoint_call_signal)];
                    u.alternate_gatekeeper = None;
                }
                r
            }
            RasMessage::disengageRequest(d) => {
                let r = self
                    .regs
                    .by_gatekeeper_id(gk, &bmp_text(&d.endpoint_identifier.0))
                    .map(|r| (r.endpoint_id.clone(), r.ras));
                if let Some((id, _)) = &r {
                    d.endpoint_identifier = epid(id);
                }
                r
            }
            RasMessage::bandwidthRequest(b) => {
                let r = self
                    .regs
                    .by_gatekeeper_id(gk, &bmp_text(&b.endpoint_identifier.0))
                    .map(|r| (r.endpoint_id.clone(), r.ras));
                if let Some((id, _)) = &r {
                    b.endpoint_identifier = epid(id);
                }
                r
            }
            RasMessage::infoRequest(irq) => {
                // By the call it names, else by the address it was sent to
                // (GnuGk polls a registration whose timeToLive lapsed with
                // an IRQ carrying neither: call reference 0).
                let by_call = irq
                    .call_identifier
                    .as_ref()
                    .and_then(|c| self.call(&guid(c.guid.0.as_ref())))
                    .and_then(|c| self.regs.get(&c.endpoint_id))
                    .map(|r| (r.endpoint_id.clone(), r.ras))
                    .or_else(|| addressed.clone());
                if by_call.is_some() {
                    irq.reply_address = Some(transport(self.cfg.endpoint_ras));
                }
                by_call
            }
            _ => None,
        };
        match target {
            Some((id, ras_addr)) => {
                if self.pending.len() + self.ep_pending.len() >= MAX_PENDING {
                    self.stats.dropped_overload += 1;
                    return;
                }
                let our = self.alloc_seq();
                self.ep_pending.insert(our, (gk, seq, id.clone(), now));
                let _ = set_seq_num(&mut m, our);
                tracing::debug!(endpoint_id = %id, request = ras::CHOICE_NAMES[choice(&m)], "gatekeeper request forwarded to endpoint");
                self.send_to_endpoint(ras_addr, &m);
            }
            None => {
                // About the proxy itself, or an endpoint we do not know:
                // answer for the proxy.
                let reply = match &m {
                    RasMessage::infoRequest(_) => Some(build::irr(build::Irr {
                        seq,
                        node: build::Node::Gateway,
                        endpoint_id: self.gks[gk]
                            .self_id
                            .as_deref()
                            .unwrap_or(&self.cfg.proxy_id),
                        ras: self.cfg.gatekeeper_ras,
                        call_signal: self.cfg.gatekeeper_call_signal,
                        aliases: Vec::new(),
                        calls: None,
                    })),
                    RasMessage::unregistrationRequest(_) => {
                        self.gks[gk].self_id = None;
                        Some(build::ucf(seq))
                    }
                    RasMessage::disengageRequest(_) => {
                        Some(build::drj(seq, DisengageRejectReason::notRegistered(())))
                    }
                    _ => None,
                };
                if let Some(r) = reply
                    && let Ok(bytes) = ras::encode(&r)
                {
                    self.out.push_back(Transmit {
                        side: Side::Gatekeeper,
                        to: self.gks[gk].cfg.ras,
                        from: None,
                        bytes,
                    });
                }
            }
        }
    }

    /// Tell the gatekeeper now in control about an endpoint's calls, with an
    /// unsolicited IRR carrying perCallInfo (H.225.0 §7.15.2: a gatekeeper
    /// learns call state from IRRs; H.323 Annex R recovers calls the same
    /// way), so it can control them (bandwidth, disengage) from now on.
    pub(super) fn report_calls(&mut self, gk: usize, endpoint_id: &str) {
        let Some(r) = self.regs.get(endpoint_id) else {
            return;
        };
        let Some(b) = &r.binding else { return };
        let (cs, ras) = self.gk_side(r.source);
        let calls: Vec<build::CallInfo> = self
            .calls
            .values()
            .filter(|c| c.endpoint_id == endpoint_id)
            .map(|c| build::CallInfo {
                crv: c.crv,
                conference_id: c.conference_id,
                call_id: c.call_id,
                originator: !c.answer_call,
                call_signal: cs,
                bandwidth: c.bandwidth,
            })
            .collect();
        if calls.is_empty() {
            return;
        }
        let n = calls.len();
        let m = build::irr(build::Irr {
            seq: 1,
            node: build::Node::Terminal,
            endpoint_id: &b.endpoint_id,
            ras,
            call_signal: cs,
            aliases: r.aliases.clone(),
            calls: Some(calls),
        });
        tracing::info!(endpoint_id, calls = n, gatekeeper = %self.gks[gk].cfg.name, "active calls reported");
        let source = r.source;
        self.send_msg_to_gk(gk, m, Pending::CallReport { gk, source });
    }

    // ------------------------------------------------------- endpoint side

    /// Send `m` to gatekeeper `gk` as the answer to its request `seq`. (A
    /// disengageConfirm ends nothing here: the call record goes when the
    /// endpoint's own DRQ comes.)
    pub(super) fn reply_to_gatekeeper(
        &mut self,
        gk: usize,
        seq: u16,
        mut m: RasMessage,
        from: Option<SocketAddr>,
    ) {
        let _ = set_seq_num(&mut m, seq);
        match ras::encode(&m) {
            Ok(bytes) => self.out.push_back(Transmit {
                side: Side::Gatekeeper,
                to: self.gks[gk].cfg.ras,
                from,
                bytes,
            }),
            Err(e) => tracing::warn!(error = %e, "encoding a reply toward the gatekeeper"),
        }
    }
}
