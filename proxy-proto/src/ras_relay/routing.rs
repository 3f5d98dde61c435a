//! Where calls go: per-endpoint gatekeeper-side addresses, routing a
//! SETUP by callIdentifier, identity or alias (directly or through the
//! dial plan).

use super::*;

impl RasRelay {
    /// The gatekeeper-side (call signalling, RAS) addresses of the endpoint
    /// whose RAS datagrams come from `source`: its own when identities are
    /// configured and it holds one, else the proxy's.
    pub(super) fn gk_side(&self, source: SocketAddr) -> (SocketAddr, SocketAddr) {
        match self.ids.as_ref().and_then(|p| p.get(source)) {
            Some(a) => (a, a),
            None => (self.cfg.gatekeeper_call_signal, self.cfg.gatekeeper_ras),
        }
    }

    /// As [`RasRelay::gk_side`], leasing an address first; `None` (logged
    /// and counted) when every address of the ranges is in use.
    pub(super) fn lease_gk_side(&mut self, source: SocketAddr) -> Option<(SocketAddr, SocketAddr)> {
        if let Some(pool) = self.ids.as_mut()
            && let Err(e) = pool.lease(source, self.now)
        {
            self.stats.refused += 1;
            *self.stats.refused_by.entry(Refused::NoAddress).or_default() += 1;
            if let Some(held_back) = self.warnings.allow(self.now) {
                tracing::warn!(%source, error = %e, held_back, "no gatekeeper-side address for this endpoint");
            }
            return None;
        }
        Some(self.gk_side(source))
    }

    /// Whether `addr` is one of the proxy's own gatekeeper-side call
    /// signalling addresses (shared, or an endpoint's).
    pub fn is_own_gk_side(&self, addr: SocketAddr) -> bool {
        addr == self.cfg.gatekeeper_call_signal || self.ids.as_ref().is_some_and(|p| p.covers(addr))
    }

    /// Whether `ip` is one of the proxy's own addresses: either side, or a
    /// per-endpoint gatekeeper-side address.
    pub fn is_proxy_ip(&self, ip: std::net::IpAddr) -> bool {
        let c = &self.cfg;
        [
            c.endpoint_ras,
            c.endpoint_call_signal,
            c.gatekeeper_ras,
            c.gatekeeper_call_signal,
        ]
        .iter()
        .any(|a| a.ip() == ip)
            || c.host_addresses.contains(&ip)
            || self
                .ids
                .as_ref()
                .is_some_and(|p| p.ranges().0.contains(&ip))
    }

    /// Where a SETUP goes, with what the call needs to know to send it
    /// there: a gatekeeper's connection to an endpoint's own
    /// gatekeeper-side address is that endpoint's call, whatever the
    /// SETUP's aliases say; otherwise [`RasRelay::route_call`].
    pub fn route(&self, q: &crate::call::RouteQuery) -> crate::call::RouteAnswer {
        let by_identity = q
            .accepted_on
            .filter(|_| q.from_gatekeeper)
            .and_then(|l| self.route_identity(l));
        let route =
            by_identity.or_else(|| self.route_call(q.call_id, &q.destinations, q.from_gatekeeper));
        crate::call::RouteAnswer {
            route,
            caller: q.call_id.and_then(|c| self.caller_identity(&c)),
            controller: self.active().map(str::to_owned),
            from_controller: q.from_gatekeeper
                && q.peer.is_some_and(|p| {
                    self.active
                        .is_some_and(|g| self.gks[g].cfg.ras.ip() == p.ip())
                }),
        }
    }

    /// The endpoint whose own gatekeeper-side address is `local`: a
    /// connection a gatekeeper opened to it is that endpoint's call.
    pub fn route_identity(&self, local: SocketAddr) -> Option<CallRoute> {
        let source = self.ids.as_ref()?.owner(local)?;
        let r = self.regs.by_source(source)?;
        Some(CallRoute::Local {
            endpoint_id: r.endpoint_id.clone(),
            call_signal: r.call_signal?,
        })
    }

    /// For a call placed by one of the proxy's endpoints: its
    /// gatekeeper-side call signalling address and the endpointIdentifier
    /// the gatekeeper in control assigned it (for the SETUP toward it).
    pub fn caller_identity(&self, call_id: &[u8; 16]) -> Option<(SocketAddr, Option<String>)> {
        let c = self
            .calls
            .get(&(*call_id, self.call(call_id)?.endpoint_id.clone()))?;
        let r = self.regs.get(&c.endpoint_id)?;
        let bound = r
            .binding
            .as_ref()
            .filter(|b| Some(b.gatekeeper) == self.active)
            .map(|b| b.endpoint_id.clone());
        Some((self.gk_side(r.source).0, bound))
    }

    /// The per-endpoint gatekeeper-side address ranges and how many are
    /// leased, when configured.
    pub fn identities(&self) -> Option<&IdentityPool> {
        self.ids.as_ref()
    }

    /// Where the call signalling of a SETUP goes: the far end the
    /// gatekeeper named in its ACF, else the proxy's own endpoint its
    /// destination aliases reach (directly or through the dial plan).
    ///
    /// A SETUP that arrived from the gatekeeper side (`from_gatekeeper`) is
    /// for one of the proxy's endpoints: only aliases count, or a
    /// gatekeeper-routed call would loop back to the gatekeeper.
    pub fn route_call(
        &self,
        call_id: Option<[u8; 16]>,
        destinations: &[Alias],
        from_gatekeeper: bool,
    ) -> Option<CallRoute> {
        if let Some(dest) = call_id
            .and_then(|c| self.call(&c))
            .and_then(|c| c.destination)
            .filter(|_| !from_gatekeeper)
        {
            return Some(CallRoute::Remote(dest));
        }
        // Only the first few destinations count: a SETUP naming thousands
        // costs no more than one naming limits.max_destinations.
        let n = self.cfg.limits.max_destinations.max(1);
        destinations.iter().take(n).find_map(|d| {
            let r = self.route_alias(d)?;
            Some(CallRoute::Local {
                endpoint_id: r.endpoint_id.clone(),
                call_signal: r.call_signal?,
            })
        })
    }

    /// The local endpoint an alias reaches, directly or through the dial plan.
    pub fn route_local(&self, a: &AliasAddress) -> Option<&Registration> {
        self.route_alias(&Alias::of(a))
    }

    /// The local endpoint an alias reaches: an endpoint registered with it,
    /// else, for a number, the dial plan.
    pub fn route_alias(&self, alias: &Alias) -> Option<&Registration> {
        if let Some(r) = self.regs.by_alias(alias) {
            return Some(r);
        }
        let digits = alias.digits()?;
        if !digits.chars().all(|c| c.is_ascii_digit()) {
            return None;
        }
        self.cfg.dial_plan.iter().find_map(|rule| {
            digits.strip_prefix(rule.prefix.as_str())?;
            let n = format!("{}{}", rule.prepend, digits.get(rule.strip..)?);
            self.regs.by_number(&n)
        })
    }
}
