//! What endpoints send: forwarded to the gatekeeper in control, answered
//! from the proxy's own table (keepalives, survivable mode), or refused.

use super::*;

impl RasRelay {
    pub(super) fn send_to_endpoint(&mut self, to: SocketAddr, m: &RasMessage) {
        // An endpoint that authenticates its gatekeeper (H.235) accepts only
        // answers with a token it can check: the proxy signs as itself with
        // that endpoint's password when it holds it. The gatekeeper's own
        // tokens do not survive the proxy's rewriting.
        let signed;
        let m = match self.endpoint_password(to) {
            Some(pw) => {
                let mut c = m.clone();
                let pw = pw.clone();
                if let Err(e) = crate::h225::h235::authenticate(
                    &mut c,
                    &self.cfg.proxy_id,
                    &pw,
                    crate::h225::h235::unix_now(),
                ) {
                    tracing::warn!(%to, error = %e, "no H.235 token");
                }
                signed = c;
                &signed
            }
            None => m,
        };
        match ras::encode(m) {
            Ok(bytes) => self.out.push_back(Transmit {
                side: Side::Endpoint,
                to,
                from: None,
                bytes,
            }),
            Err(e) => tracing::warn!(%to, error = %e, "encoding toward an endpoint"),
        }
    }

    /// Answer an endpoint from the proxy itself (survivable mode, or
    /// requests the proxy always serves).
    /// Answer an endpoint for the proxy as gatekeeper.
    pub(super) fn answer(&mut self, to: SocketAddr, m: RasMessage) {
        self.stats.local_answers += 1;
        self.send_to_endpoint(to, &m);
    }

    /// Refuse a decoded datagram: counted by why, warned about
    /// (rate-limited), reported.
    pub(super) fn refuse(&mut self, from: SocketAddr, why: Refused, reason: &'static str) {
        self.stats.refused += 1;
        *self.stats.refused_by.entry(why).or_default() += 1;
        self.lan_warning(from, reason);
        self.events.push_back(Event::Rejected { from, reason });
    }

    /// A warning about what an endpoint-side host sent: ten a second at
    /// most (the counters have every one).
    pub(super) fn lan_warning(&mut self, from: SocketAddr, reason: &str) {
        if let Some(held_back) = self.warnings.allow(self.now) {
            tracing::warn!(%from, reason, held_back, "RAS datagram refused");
        }
    }

    /// Refuse an RRQ: counted, warned about (rate-limited), RRJ `reason`.
    fn refuse_rrq(
        &mut self,
        from: SocketAddr,
        seq: u16,
        why: Refused,
        text: &'static str,
        reason: RegistrationRejectReason,
    ) {
        self.refuse(from, why, text);
        self.answer(from, build::rrj(seq, reason, &self.cfg.proxy_id));
    }

    /// A datagram arrived on the endpoint-side socket.
    pub fn handle_endpoint(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        self.now = self.now.max(now);
        // The budget first: a flood costs a lookup per datagram, not a
        // decode, and never another source's share. Not logged one by one
        // (the count is in the stats).
        if !self.budget.allow(from.ip(), now) {
            self.stats.over_budget += 1;
            return;
        }
        // Every log line about this datagram carries the endpoint.
        let id = self.regs.by_source(from).map(|r| r.endpoint_id.clone());
        let span = tracing::info_span!(
            "endpoint",
            %from,
            endpoint_id = id.as_deref().unwrap_or("-")
        );
        let _in_span = span.enter();
        let m = match ras::decode(bytes) {
            Ok(m) => m,
            Err(e) => {
                self.stats.malformed += 1;
                if let Some(held_back) = self.warnings.allow(now) {
                    tracing::warn!(%from, error = %e, held_back, "malformed RAS from endpoint");
                }
                self.events.push_back(Event::Rejected {
                    from,
                    reason: "malformed RAS",
                });
                return;
            }
        };
        let Some(seq) = seq_num(&m) else {
            let reason = if matches!(m, RasMessage::UnknownExtension(_)) {
                "RAS message type of a later H.225.0 version"
            } else {
                "empty admissionConfirmSequence"
            };
            self.refuse(from, Refused::Unknown, reason);
            return;
        };
        match m {
            RasMessage::gatekeeperRequest(_) => {
                let m = build::gcf(seq, &self.cfg.proxy_id, self.cfg.endpoint_ras);
                self.answer(from, m);
            }
            RasMessage::registrationRequest(rrq) => self.endpoint_rrq(now, from, seq, rrq, bytes),
            RasMessage::unregistrationRequest(u) => {
                let Some(r) = self.regs.by_source(from).cloned() else {
                    self.answer(
                        from,
                        build::urj(seq, UnregRejectReason::notCurrentlyRegistered(())),
                    );
                    return;
                };
                match (self.active, r.binding.clone()) {
                    (Some(gk), Some(b)) if b.gatekeeper == gk => {
                        let mut u = u;
                        u.endpoint_identifier = Some(epid(&b.endpoint_id));
                        u.call_signal_address = vec![transport(self.gk_side(from).0)];
                        u.gatekeeper_identifier = self.gks[gk].id.as_deref().map(gkid);
                        self.forward(
                            gk,
                            from,
                            seq,
                            RasMessage::unregistrationRequest(u),
                            Forwarded::Unregister(r.endpoint_id),
                        );
                    }
                    _ => {
                        self.regs.remove(&r.endpoint_id);
                        self.calls.remove_endpoint(&r.endpoint_id);
                        self.events.push_back(Event::Unregistered {
                            endpoint_id: r.endpoint_id,
                        });
                        self.answer(from, build::ucf(seq));
                    }
                }
            }
            RasMessage::admissionRequest(arq) => self.endpoint_arq(from, seq, arq),
            RasMessage::disengageRequest(mut d) => {
                let Some(r) = self.registered(from, &bmp_text(&d.endpoint_identifier.0)) else {
                    self.answer(
                        from,
                        build::drj(seq, DisengageRejectReason::notRegistered(())),
                    );
                    return;
                };
                let call_id = d
                    .call_identifier
                    .as_ref()
                    .map(|c| guid(c.guid.0.as_ref()))
                    .unwrap_or_default();
                match (self.active, r.binding.clone()) {
                    (Some(gk), Some(b)) if b.gatekeeper == gk => {
                        d.endpoint_identifier = epid(&b.endpoint_id);
                        d.gatekeeper_identifier = self.gks[gk].id.as_deref().map(gkid);
                        self.forward(
                            gk,
                            from,
                            seq,
                            RasMessage::disengageRequest(d),
                            Forwarded::Disengage((call_id, r.endpoint_id.clone())),
                        );
                    }
                    _ => {
                        self.calls.remove(&(call_id, r.endpoint_id.clone()));
                        self.answer(from, build::dcf(seq));
                    }
                }
            }
            RasMessage::locationRequest(mut l) => {
                // Location is a service to registered endpoints: a stranger
                // gets nothing forwarded (nor a map of the dial plan).
                if self.regs.by_source(from).is_none() {
                    self.refuse(
                        from,
                        Refused::Unregistered,
                        "locationRequest from an unregistered source",
                    );
                    self.answer(
                        from,
                        build::lrj(seq, LocationRejectReason::notRegistered(())),
                    );
                    return;
                }
                l.destination_info
                    .truncate(self.cfg.limits.max_destinations.max(1));
                if let Some(gk) = self.active {
                    l.reply_address = transport(self.cfg.gatekeeper_ras);
                    if let Some(e) = &l.endpoint_identifier {
                        l.endpoint_identifier = self
                            .regs
                            .get(&bmp_text(&e.0))
                            .and_then(|r| r.binding.as_ref())
                            .map(|b| epid(&b.endpoint_id));
                    }
                    self.forward(
                        gk,
                        from,
                        seq,
                        RasMessage::locationRequest(l),
                        Forwarded::Other,
                    );
                    return;
                }
                let found = l
                    .destination_info
                    .iter()
                    .find_map(|a| self.route_local(a).map(|r| r.endpoint_id.clone()));
                let v = match found {
                    Some(_) => {
                        build::lcf(seq, self.cfg.endpoint_call_signal, self.cfg.endpoint_ras)
                    }
                    None => build::lrj(seq, LocationRejectReason::requestDenied(())),
                };
                self.answer(from, v);
            }
            RasMessage::bandwidthRequest(mut b) => {
                let Some(r) = self.registered(from, &bmp_text(&b.endpoint_identifier.0)) else {
                    self.refuse(
                        from,
                        Refused::Unregistered,
                        "bandwidthRequest from an unregistered endpoint",
                    );
                    return;
                };
                match (self.active, r.binding.clone()) {
                    (Some(gk), Some(bd)) if bd.gatekeeper == gk => {
                        b.endpoint_identifier = epid(&bd.endpoint_id);
                        self.forward(
                            gk,
                            from,
                            seq,
                            RasMessage::bandwidthRequest(b),
                            Forwarded::Other,
                        );
                    }
                    _ => self.answer(from, build::bcf(seq, b.band_width.0)),
                }
            }
            RasMessage::infoRequestResponse(mut irr) => {
                // A reply to a gatekeeper IRQ we forwarded, from the
                // endpoint that was asked? Then it goes back rewritten like
                // any IRR: the gatekeeper's identifier, the proxy's addresses.
                if let Some((gk, their, target)) = self.take_ep_pending(seq, from) {
                    if let Some(b) = self.regs.get(&target).and_then(|r| r.binding.clone()) {
                        irr.endpoint_identifier = epid(&b.endpoint_id);
                    }
                    let (cs, ras) = self.gk_side(from);
                    irr.ras_address = transport(ras);
                    irr.call_signal_address = vec![transport(cs)];
                    let own = self.own_address(from);
                    self.reply_to_gatekeeper(gk, their, RasMessage::infoRequestResponse(irr), own);
                    return;
                }
                let Some(r) = self.registered(from, &bmp_text(&irr.endpoint_identifier.0)) else {
                    self.refuse(
                        from,
                        Refused::Unregistered,
                        "infoRequestResponse from an unregistered endpoint",
                    );
                    return;
                };
                match (self.active, r.binding.clone()) {
                    (Some(gk), Some(b)) if b.gatekeeper == gk => {
                        irr.endpoint_identifier = epid(&b.endpoint_id);
                        let (cs, ras) = self.gk_side(from);
                        irr.ras_address = transport(ras);
                        irr.call_signal_address = vec![transport(cs)];
                        self.forward(
                            gk,
                            from,
                            seq,
                            RasMessage::infoRequestResponse(irr),
                            Forwarded::Other,
                        );
                    }
                    _ => {
                        if irr.need_response == Some(true) {
                            self.answer(from, build::iack(seq));
                        }
                    }
                }
            }
            // Endpoint replies to gatekeeper-initiated requests.
            m @ (RasMessage::unregistrationConfirm(_)
            | RasMessage::unregistrationReject(_)
            | RasMessage::disengageConfirm(_)
            | RasMessage::disengageReject(_)
            | RasMessage::bandwidthConfirm(_)
            | RasMessage::bandwidthReject(_)) => {
                let Some((gk, their, target)) = self.take_ep_pending(seq, from) else {
                    self.refuse(
                        from,
                        Refused::StrayReply,
                        "reply to no request the proxy forwarded to this endpoint",
                    );
                    return;
                };
                let own = self.own_address(from);
                if let RasMessage::unregistrationConfirm(_) = &m {
                    self.regs.remove(&target);
                    self.calls.remove_endpoint(&target);
                    self.events.push_back(Event::Unregistered {
                        endpoint_id: target,
                    });
                }
                self.reply_to_gatekeeper(gk, their, m, own);
            }
            other => {
                self.refuse(
                    from,
                    Refused::Unexpected,
                    "RAS message an endpoint does not send to its gatekeeper",
                );
                let _ = other;
                self.answer(from, build::unknown_message_response(seq));
            }
        }
    }

    /// The forwarded gatekeeper request `seq`, if `from` is the endpoint it
    /// went to (another endpoint guessing the number changes nothing).
    pub(super) fn take_ep_pending(
        &mut self,
        seq: u16,
        from: SocketAddr,
    ) -> Option<(usize, u16, String)> {
        let (_, _, target, _) = self.ep_pending.get(&seq)?;
        if self.regs.by_source(from).map(|r| &r.endpoint_id) != Some(target) {
            return None;
        }
        let (gk, their, target, _) = self.ep_pending.remove(&seq)?;
        Some((gk, their, target))
    }

    /// The registration of the endpoint at `from` claiming `endpoint_id`.
    pub(super) fn registered(&self, from: SocketAddr, endpoint_id: &str) -> Option<Registration> {
        self.regs
            .by_source(from)
            .filter(|r| r.endpoint_id == endpoint_id)
            .cloned()
    }

    pub(super) fn forward(
        &mut self,
        gk: usize,
        from: SocketAddr,
        seq: u16,
        m: RasMessage,
        what: Forwarded,
    ) {
        // A retransmission of a request still waiting at this gatekeeper is
        // not sent again: the answer to the first reaches the endpoint under
        // the same sequence number, and a gatekeeper slowed by load is not
        // handed the same work once per endpoint retry (which would slow it
        // further and bring more retries).
        if self.waiting_forward(gk, from, seq).is_some() {
            self.stats.retransmissions_absorbed += 1;
            return;
        }
        // Budgets of requests waiting at the gatekeeper: per source
        // address, and for endpoints in all short of the room reserved for
        // the proxy's own heartbeat, refreshes and re-registrations. Past
        // them the request is dropped; the endpoint retries.
        let from_there = self.outstanding.get(&from.ip()).copied().unwrap_or(0);
        if from_there >= self.cfg.limits.max_outstanding_per_source
            || self.outstanding_total >= MAX_PENDING - RESERVED_OWN
        {
            self.stats.outstanding_refused += 1;
            self.lan_warning(from, "too many requests waiting at the gatekeeper");
            return;
        }
        self.stats.forwarded += 1;
        self.send_msg_to_gk(
            gk,
            m,
            Pending::Forward {
                gk,
                to: from,
                seq,
                what,
            },
        );
    }

    /// Our sequence number of the request `seq` from `from` forwarded to
    /// gatekeeper `gk`, not yet answered and recent enough that its answer
    /// is still to be expected: within twice the gatekeeper's smoothed round
    /// trip, at least 1 s. An older copy may have been lost, so the
    /// retransmission goes out.
    pub(super) fn waiting_forward(&self, gk: usize, from: SocketAddr, seq: u16) -> Option<u16> {
        let ours = *self.forwarded.get(&(from, seq))?;
        let hold = (self.gks[gk].hb.srtt().unwrap_or_default() * 2)
            .max(Duration::from_secs(1))
            .min(PENDING_LIFETIME);
        let (p, at) = self.pending.get(&ours)?;
        (p.gatekeeper() == gk
            && p.forwarded_key() == Some((from, seq))
            && self.now.saturating_duration_since(*at) < hold)
            .then_some(ours)
    }

    pub(super) fn endpoint_rrq(
        &mut self,
        now: Instant,
        from: SocketAddr,
        seq: u16,
        rrq: RegistrationRequest,
        bytes: &[u8],
    ) {
        if rrq.keep_alive == Some(true) {
            let claimed = rrq.endpoint_identifier.as_ref().map(|e| bmp_text(&e.0));
            let Some(id) = claimed.filter(|id| {
                self.regs
                    .by_source(from)
                    .is_some_and(|r| &r.endpoint_id == id)
            }) else {
                self.refuse(
                    from,
                    Refused::UnknownKeepalive,
                    "keepalive from an unknown endpoint or address",
                );
                self.answer(
                    from,
                    build::rrj(
                        seq,
                        RegistrationRejectReason::fullRegistrationRequired(()),
                        &self.cfg.proxy_id,
                    ),
                );
                return;
            };
            // Answer with the timeToLive the endpoint was granted: its
            // registration lapses on that clock, whoever is in control.
            let ttl = self
                .regs
                .get(&id)
                .map(|r| r.granted_ttl)
                .unwrap_or(self.cfg.local_ttl);
            if let Some(r) = self.regs.get_mut(&id) {
                r.last_keepalive = Some(now);
                r.keepalives += 1;
            }
            self.stats.keepalives_answered += 1;
            self.answer_keepalive(from, seq, &id, ttl, bytes);
            return;
        }
        // An endpoint whose call signalling or RAS address is one of the
        // proxy's own would have the proxy call (or answer) itself: a SETUP
        // to it comes back to the proxy, is routed to it again, and so on
        // until the descriptors run out.
        // Nor may it name loopback, unspecified, multicast or broadcast
        // addresses: the proxy would connect to itself or to nobody, or
        // send to many.
        let own = |list: &[crate::h225::asn::h323_messages::TransportAddress]| {
            list.iter()
                .filter_map(socket_addr)
                .any(|a| self.is_proxy_ip(a.ip()) || unusable(a.ip()))
        };
        let bad = if own(&rrq.call_signal_address) {
            Some(RegistrationRejectReason::invalidCallSignalAddress(()))
        } else if own(&rrq.ras_address) {
            Some(RegistrationRejectReason::invalidRASAddress(()))
        } else {
            None
        };
        if let Some(reason) = bad {
            self.refuse(
                from,
                Refused::BadAddress,
                "RRQ naming the proxy's own, a loopback, unspecified, multicast or broadcast address",
            );
            self.answer(from, build::rrj(seq, reason, &self.cfg.proxy_id));
            return;
        }
        let limits = &self.cfg.limits;
        if rrq.terminal_alias.as_ref().map_or(0, Vec::len) > limits.max_aliases_per_request {
            self.refuse_rrq(
                from,
                seq,
                Refused::TooManyAliases,
                "RRQ with more aliases than limits.max_aliases_per_request",
                RegistrationRejectReason::invalidAlias(()),
            );
            return;
        }
        // A new registration (a known source re-registering is no new
        // one) within the table's bounds, in all and per address.
        // Requests still waiting at the gatekeeper count too (any of them
        // may be a registration on its way), so the bound holds exactly.
        let waiting = self.outstanding.get(&from.ip()).copied().unwrap_or(0);
        if self.regs.by_source(from).is_none()
            && (self.regs.len() + self.outstanding_total >= limits.max_registrations
                || self.regs.from_ip(from.ip()) + waiting >= limits.max_registrations_per_source)
        {
            self.refuse_rrq(
                from,
                seq,
                Refused::RegistrationLimit,
                "RRQ past limits.max_registrations or max_registrations_per_source",
                RegistrationRejectReason::resourceUnavailable(()),
            );
            return;
        }
        let aliases = rrq.terminal_alias.clone().unwrap_or_default();
        let reg = Registration {
            endpoint_id: String::new(),
            aliases,
            source: from,
            ras: rrq
                .ras_address
                .first()
                .and_then(socket_addr)
                .unwrap_or(from),
            call_signal: rrq.call_signal_address.first().and_then(socket_addr),
            rrq: rrq.clone(),
            rrq_bytes: bytes::Bytes::copy_from_slice(bytes),
            binding: None,
            granted_ttl: self.cfg.local_ttl,
            last_keepalive: Some(now),
            keepalives: 0,
            rcf_template: None,
            offloaded: None,
            offloaded_answers: 0,
            local: false,
        };
        if let Some(gk) = self.active {
            let Some((cs, ras)) = self.lease_gk_side(from) else {
                self.answer(
                    from,
                    build::rrj(
                        seq,
                        RegistrationRejectReason::resourceUnavailable(()),
                        &self.cfg.proxy_id,
                    ),
                );
                return;
            };
            let mut m = rrq.clone();
            m.call_signal_address = vec![transport(cs)];
            m.ras_address = vec![transport(ras)];
            m.gatekeeper_identifier = self.gks[gk].id.as_deref().map(gkid);
            m.endpoint_identifier = None;
            m.keep_alive = Some(false);
            self.forward(
                gk,
                from,
                seq,
                RasMessage::registrationRequest(m),
                Forwarded::Register(Box::new(reg)),
            );
            return;
        }
        // Survivable mode: the proxy is the gatekeeper, and an alias has
        // one owner. Another source claiming a live endpoint's alias would
        // take its calls (routing by alias finds one registration), and
        // keep them past fail-back: refused, naming the aliases
        // (H.225.0 duplicateAlias).
        let taken: Vec<AliasAddress> = reg
            .aliases
            .iter()
            .filter(|a| {
                self.regs
                    .by_alias(&Alias::of(a))
                    .is_some_and(|owner| owner.source != from)
            })
            .cloned()
            .collect();
        if !taken.is_empty() {
            self.refuse(
                from,
                Refused::AliasTaken,
                "RRQ for an alias another endpoint holds",
            );
            self.answer(
                from,
                build::rrj(
                    seq,
                    RegistrationRejectReason::duplicateAlias(taken),
                    &self.cfg.proxy_id,
                ),
            );
            return;
        }
        // Survivable mode: register locally.
        let id = match self.regs.by_source(from) {
            Some(r) => r.endpoint_id.clone(),
            None => self.regs.allocate_id(&self.cfg.proxy_id),
        };
        let mut reg = reg;
        reg.endpoint_id = id.clone();
        reg.local = true;
        self.regs.insert(reg);
        tracing::info!(endpoint_id = %id, "registered locally (survivable mode)");
        self.events.push_back(Event::Registered {
            endpoint_id: id.clone(),
            gatekeeper: None,
        });
        let m = self.rcf(seq, &id, self.cfg.local_ttl);
        self.answer(from, m);
    }

    /// Answer a keepalive from the registration's RCF template (built once),
    /// and offer the pair to the kernel fast path.
    pub(super) fn answer_keepalive(
        &mut self,
        from: SocketAddr,
        seq: u16,
        id: &str,
        ttl: u32,
        request: &[u8],
    ) {
        if self.regs.get(id).is_some_and(|r| r.rcf_template.is_none()) {
            let tpl = self.rcf_template(id, ttl);
            if let Some(r) = self.regs.get_mut(id) {
                r.rcf_template = tpl;
            }
        }
        let Some((answer, offer)) = self.regs.get(id).and_then(|r| {
            let tpl = r.rcf_template.as_ref()?;
            // Build an entry for the kernel only when this keepalive is not
            // the one it already holds (the common case costs one hash).
            let known = r.offloaded == Some(proxy_common::ka_hash(request, 0, 0).0);
            let offer = (!known).then(|| crate::offload::entry(request, seq, id, tpl));
            Some((tpl.answer(seq), offer))
        }) else {
            let m = self.rcf(seq, id, ttl);
            self.send_to_endpoint(from, &m);
            return;
        };
        self.out.push_back(Transmit {
            side: Side::Endpoint,
            to: from,
            from: None,
            bytes: answer,
        });
        match offer {
            Some(Ok(entry)) => {
                if let Some(r) = self.regs.get_mut(id) {
                    r.offloaded = Some(entry.req_hash);
                }
                self.events.push_back(Event::Offload {
                    source: from,
                    entry: Box::new(entry),
                });
            }
            Some(Err(e)) => {
                tracing::debug!(endpoint_id = id, error = %e, "keepalive stays in userspace")
            }
            None => {}
        }
    }

    pub(super) fn rcf_template(&self, id: &str, ttl: u32) -> Option<crate::offload::RcfTemplate> {
        // Signed once (one timestamp) when the endpoint authenticates its
        // gatekeeper: the H.235 MD5 token does not cover requestSeqNum.
        let pw = self
            .regs
            .get(id)
            .and_then(|r| self.endpoint_password(r.source))
            .cloned();
        let stamp = crate::h225::h235::unix_now();
        let enc = |seq| {
            let mut m = self.rcf(seq, id, ttl);
            if let Some(pw) = &pw {
                crate::h225::h235::authenticate(&mut m, &self.cfg.proxy_id, pw, stamp).ok()?;
            }
            ras::encode(&m).ok()
        };
        let (a, b) = (enc(1)?, enc(0xfffe)?);
        crate::offload::RcfTemplate::from_encodings(&a, &b)
            .map_err(|e| tracing::warn!(endpoint_id = id, error = %e, "no RCF template"))
            .ok()
    }

    /// The RCF for registration `id`: the proxy as its gatekeeper, its
    /// aliases as it registered them.
    pub(super) fn rcf(&self, seq: u16, id: &str, ttl: u32) -> RasMessage {
        let aliases = self
            .regs
            .get(id)
            .map(|r| r.aliases.clone())
            .unwrap_or_default();
        build::rcf(
            seq,
            self.cfg.endpoint_call_signal,
            &self.cfg.proxy_id,
            id,
            ttl,
            aliases,
        )
    }

    pub(super) fn endpoint_arq(&mut self, from: SocketAddr, seq: u16, mut arq: AdmissionRequest) {
        let claimed = bmp_text(&arq.endpoint_identifier.0);
        let Some(r) = self.registered(from, &claimed) else {
            self.refuse(
                from,
                Refused::Unregistered,
                "admissionRequest from an unregistered endpoint",
            );
            self.answer(
                from,
                build::arj(seq, AdmissionRejectReason::callerNotRegistered(())),
            );
            return;
        };
        if self.calls.of(&r.endpoint_id) >= self.cfg.limits.max_calls_per_endpoint {
            self.refuse(
                from,
                Refused::CallLimit,
                "ARQ past limits.max_calls_per_endpoint",
            );
            self.answer(
                from,
                build::arj(seq, AdmissionRejectReason::exceedsCallCapacity(())),
            );
            return;
        }
        if let Some(d) = arq.destination_info.as_mut() {
            d.truncate(self.cfg.limits.max_destinations.max(1));
        }
        let call = CallRecord {
            call_id: arq
                .call_identifier
                .as_ref()
                .map(|c| guid(c.guid.0.as_ref()))
                .unwrap_or_default(),
            conference_id: guid(arq.conference_id.0.0.as_ref()),
            crv: arq.call_reference_value.0,
            endpoint_id: r.endpoint_id.clone(),
            answer_call: arq.answer_call,
            bandwidth: arq.band_width.0,
            destination: None,
            dest_aliases: arq
                .destination_info
                .iter()
                .flatten()
                .map(Alias::of)
                .collect(),
            admitted_by: None,
            routed: false,
            anchored: false,
        };
        match (self.active, r.binding.clone()) {
            (Some(gk), Some(b)) if b.gatekeeper == gk => {
                let cs = self.gk_side(from).0;
                arq.endpoint_identifier = epid(&b.endpoint_id);
                arq.src_call_signal_address = Some(transport(cs));
                arq.gatekeeper_identifier = self.gks[gk].id.as_deref().map(gkid);
                if arq.answer_call {
                    arq.dest_call_signal_address = Some(transport(cs));
                }
                self.forward(
                    gk,
                    from,
                    seq,
                    RasMessage::admissionRequest(arq),
                    Forwarded::Admit(Box::new(call)),
                );
            }
            _ => {
                // Survivable mode: admit calls answered here and calls to
                // the proxy's own endpoints (by alias or dial plan).
                let local = arq.answer_call
                    || arq
                        .destination_info
                        .iter()
                        .flatten()
                        .any(|a| self.route_local(a).is_some());
                if !local {
                    self.answer(
                        from,
                        build::arj(seq, AdmissionRejectReason::calledPartyNotRegistered(())),
                    );
                    return;
                }
                let bw = call.bandwidth;
                self.calls.insert(call, self.now);
                self.answer(from, build::acf(seq, bw, self.cfg.endpoint_call_signal));
            }
        }
    }
}

/// Addresses no endpoint can be reached at: loopback, unspecified,
/// multicast, broadcast.
fn unusable(ip: std::net::IpAddr) -> bool {
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || matches!(ip, std::net::IpAddr::V4(v4) if v4.is_broadcast())
        || matches!(ip, std::net::IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback() || v4.is_unspecified() || v4.is_broadcast() || v4.is_multicast()))
}
