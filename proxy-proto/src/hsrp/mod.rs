//! HSRP version 1 (RFC 2281), sans I/O: the state machine one router runs
//! for one standby group, fed messages and time, returning messages to
//! send, gratuitous ARPs and state changes.
//!
//! This is the `[redundancy] protocol = "hsrp"` mode the specification's
//! claim 19 names. The daemon owns the socket (UDP 1985, 224.0.0.2, TTL 1,
//! sent from the router's own address) and the clock, and acts on
//! [`Output`]: it answers on the virtual address only while the state is
//! [`State::Active`]. Interoperation with Cisco routers is not verified.
//!
//! The machine follows RFC 2281 section 5: events a..l and actions A..I
//! (see [`Event`] and the table in `Hsrp::table`). Where this
//! implementation departs from a cell, the cell says why. The RFC's table
//! could not be read where this was written: the packet format, states,
//! timers and the cells for e (Speak, Active) and g, h (Active) are
//! checked against text that quotes it; the other cells follow an
//! implementation that labels its code with the RFC's letters. Check them
//! against the RFC when it is at hand.

mod packet;

pub use packet::{
    ALL_ROUTERS, DEFAULT_AUTH, HsrpError, LEN, Message, OpCode, PORT, State, virtual_mac,
};

use std::collections::VecDeque;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

/// Hellotime when neither configured nor learned (RFC 2281 5.1).
pub const DEFAULT_HELLOTIME: Duration = Duration::from_secs(3);
/// Holdtime when neither configured nor learned (RFC 2281 5.1).
pub const DEFAULT_HOLDTIME: Duration = Duration::from_secs(10);

/// One router's configuration for one group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HsrpConfig {
    /// Standby group (0..=255): also the last octet of the virtual MAC.
    pub group: u8,
    /// Election priority: higher wins, ties go to the higher address.
    pub priority: u8,
    /// Take the active role from a lower-priority active router (with a
    /// Coup).
    pub preempt: bool,
    /// The group's virtual address; `None`: learned from the active
    /// router's Hello.
    pub virtual_ip: Option<Ipv4Addr>,
    /// Configured Hellotime (whole seconds on the wire); `None`: learned
    /// from the active router, else [`DEFAULT_HELLOTIME`].
    pub hellotime: Option<Duration>,
    /// Configured Holdtime; `None`: learned, else [`DEFAULT_HOLDTIME`].
    pub holdtime: Option<Duration>,
    /// Authentication data: compared in the clear; a message with other
    /// data is ignored.
    pub auth: [u8; 8],
    /// This router's own address on the link (the source of its messages,
    /// and the tie-breaker).
    pub address: Ipv4Addr,
}

/// The events of RFC 2281 section 5.5.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Event {
    /// a: HSRP configured on an enabled interface.
    Enable,
    /// b: HSRP disabled, or the interface disabled.
    Disable,
    /// c: active timer expired.
    ActiveTimer,
    /// d: standby timer expired.
    StandbyTimer,
    /// e: hello timer expired.
    HelloTimer,
    /// f: Hello of higher priority from a router in Speak state.
    SpeakHigher,
    /// g: Hello of higher priority from the active router.
    ActiveHigher,
    /// h: Hello of lower priority from the active router.
    ActiveLower,
    /// i: Resign from the active router.
    Resign,
    /// j: Coup from a higher-priority router.
    Coup,
    /// k: Hello of higher priority from the standby router.
    StandbyHigher,
    /// l: Hello of lower priority from the standby router.
    StandbyLower,
}

/// The actions of RFC 2281 section 5.6, as the machine took them (for
/// tests and logs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    /// A: start the active timer.
    StartActive,
    /// B: start the standby timer.
    StartStandby,
    /// C: stop the active timer.
    StopActive,
    /// D: stop the standby timer.
    StopStandby,
    /// E: learn parameters (virtual IP, Hellotime, Holdtime) from the
    /// active router's Hello.
    LearnParameters,
    /// F: send a Hello.
    Hello,
    /// G: send a Coup.
    Coup,
    /// H: send a Resign.
    Resign,
    /// I: send a gratuitous ARP for the virtual IP from the virtual MAC.
    GratuitousArp,
}

/// What the daemon must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Send this message to [`ALL_ROUTERS`]:[`PORT`], TTL 1.
    Send(Message),
    /// Announce `ip` at `mac` (a gratuitous ARP reply, broadcast).
    GratuitousArp {
        /// The virtual address.
        ip: Ipv4Addr,
        /// The group's virtual MAC.
        mac: [u8; 6],
    },
    /// The state changed: the daemon answers on the virtual address only
    /// in [`State::Active`].
    StateChanged {
        /// Before.
        from: State,
        /// Now.
        to: State,
    },
}

/// Why a received message was not taken (counted by the daemon).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ignored {
    /// Another standby group.
    OtherGroup,
    /// Authentication data differs.
    Authentication,
    /// Sent by this router (looped back).
    Own,
    /// Not one of the events (e.g. a lower-priority Speak Hello, or a Coup
    /// from a lower-priority router).
    NoEvent,
}

/// One router's HSRP machine for one group.
#[derive(Debug)]
pub struct Hsrp {
    cfg: HsrpConfig,
    state: State,
    virtual_ip: Option<Ipv4Addr>,
    hellotime: Duration,
    holdtime: Duration,
    active_timer: Option<Instant>,
    standby_timer: Option<Instant>,
    hello_timer: Option<Instant>,
    /// Preemption may be held back (a node that came back resyncs its
    /// state first); `HsrpConfig::preempt` and this must both allow it.
    preempt_allowed: bool,
    out: VecDeque<Output>,
    /// The actions of the last step, in order.
    last: Vec<Action>,
}

impl Hsrp {
    /// A machine in [`State::Initial`]; [`Hsrp::enable`] starts it.
    pub fn new(cfg: HsrpConfig) -> Self {
        Self {
            virtual_ip: cfg.virtual_ip,
            hellotime: cfg.hellotime.unwrap_or(DEFAULT_HELLOTIME),
            holdtime: cfg.holdtime.unwrap_or(DEFAULT_HOLDTIME),
            cfg,
            state: State::Initial,
            active_timer: None,
            standby_timer: None,
            hello_timer: None,
            preempt_allowed: true,
            out: VecDeque::new(),
            last: Vec::new(),
        }
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// The virtual address, configured or learned.
    pub fn virtual_ip(&self) -> Option<Ipv4Addr> {
        self.virtual_ip
    }

    /// The Hellotime and Holdtime in use.
    pub fn timers(&self) -> (Duration, Duration) {
        (self.hellotime, self.holdtime)
    }

    /// The actions the last event took (RFC 2281's letters, in order).
    pub fn last_actions(&self) -> &[Action] {
        &self.last
    }

    /// Allow or hold back preemption (while `false` the machine does not
    /// take over from a lower-priority active router; it still takes over
    /// one that is gone).
    pub fn set_preempt_allowed(&mut self, allowed: bool) {
        self.preempt_allowed = allowed;
    }

    /// A machine already in `state` with its timers as that state runs
    /// them (tests of single cells of the table).
    #[cfg(test)]
    fn in_state(cfg: HsrpConfig, state: State, now: Instant) -> Self {
        let mut h = Self::new(cfg);
        h.state = state;
        if state != State::Initial {
            h.hello_timer = Some(now + h.hellotime);
            h.active_timer = Some(now + h.holdtime);
            h.standby_timer = Some(now + h.holdtime);
        }
        if state == State::Learn {
            h.virtual_ip = None;
        }
        h
    }

    /// Event a.
    pub fn enable(&mut self, now: Instant) {
        self.step(now, Event::Enable, None);
    }

    /// Event b.
    pub fn disable(&mut self, now: Instant) {
        self.step(now, Event::Disable, None);
    }

    /// When [`Hsrp::handle_timeout`] is due next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [self.active_timer, self.standby_timer, self.hello_timer]
            .into_iter()
            .flatten()
            .min()
    }

    /// Fire the timers that are due (events c, d, e, in that order).
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.active_timer.is_some_and(|t| t <= now) {
            self.active_timer = None;
            self.step(now, Event::ActiveTimer, None);
        }
        if self.standby_timer.is_some_and(|t| t <= now) {
            self.standby_timer = None;
            self.step(now, Event::StandbyTimer, None);
        }
        if self.hello_timer.is_some_and(|t| t <= now) {
            self.hello_timer = (self.state != State::Initial).then(|| now + self.hellotime);
            self.step(now, Event::HelloTimer, None);
        }
    }

    /// A message from `from` (the sender's own address). Returns which
    /// event it was, or why it was ignored.
    pub fn handle_message(
        &mut self,
        now: Instant,
        from: Ipv4Addr,
        m: &Message,
    ) -> Result<Event, Ignored> {
        if m.group != self.cfg.group {
            return Err(Ignored::OtherGroup);
        }
        if m.auth != self.cfg.auth {
            return Err(Ignored::Authentication);
        }
        if from == self.cfg.address {
            return Err(Ignored::Own);
        }
        // Priorities compared, the higher address winning a tie.
        let higher = (m.priority, from) > (self.cfg.priority, self.cfg.address);
        let event = match (m.op, m.state, higher) {
            (OpCode::Hello, State::Active, true) => Event::ActiveHigher,
            (OpCode::Hello, State::Active, false) => Event::ActiveLower,
            (OpCode::Hello, State::Standby, true) => Event::StandbyHigher,
            (OpCode::Hello, State::Standby, false) => Event::StandbyLower,
            (OpCode::Hello, State::Speak, true) => Event::SpeakHigher,
            (OpCode::Resign, State::Active, _) => Event::Resign,
            (OpCode::Coup, _, true) => Event::Coup,
            _ => return Err(Ignored::NoEvent),
        };
        self.step(now, event, Some(m));
        Ok(event)
    }

    /// Next output for the daemon.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// The state table (RFC 2281 section 5.7): for the current state and
    /// `event`, the actions in order and the next state (`None`: stays).
    /// `m` is the message behind events f..l.
    fn table(&self, event: Event) -> (&'static [Action], Option<State>) {
        use Action::*;
        use Event as E;
        use State::*;
        let preempt = self.cfg.preempt && self.preempt_allowed;
        match (self.state, event) {
            // a: to Listen when the virtual IP is configured, else Learn.
            (Initial, E::Enable) if self.virtual_ip.is_some() => {
                (&[StartActive, StartStandby], Some(Listen))
            }
            (Initial, E::Enable) => (&[StartActive, StartStandby], Some(Learn)),
            (Initial, _) => (&[], None),
            // b
            (Active, E::Disable) => (&[StopActive, StopStandby, Resign], Some(Initial)),
            (_, E::Disable) => (&[StopActive, StopStandby], Some(Initial)),
            // c: the active router is gone.
            (Listen, E::ActiveTimer) => (&[StartActive, StartStandby], Some(Speak)),
            (Standby, E::ActiveTimer) => (
                &[StopActive, StopStandby, Hello, GratuitousArp],
                Some(Active),
            ),
            // d: the standby router is gone. From Speak the active timer is
            // started too: were it not, a group whose active router went
            // first would leave the new standby router with no timer to
            // take over by.
            (Listen, E::StandbyTimer) => (&[StartStandby], Some(Speak)),
            (Speak, E::StandbyTimer) => (&[StartActive, StopStandby], Some(Standby)),
            // e
            (Speak | Standby | Active, E::HelloTimer) => (&[Hello], None),
            // f: a higher-priority router contends for standby.
            (Speak | Standby, E::SpeakHigher) => (&[StartStandby], Some(Listen)),
            // g
            (Learn, E::ActiveHigher) => {
                (&[LearnParameters, StartActive, StartStandby], Some(Listen))
            }
            (Listen | Speak | Standby, E::ActiveHigher) => (&[LearnParameters, StartActive], None),
            (Active, E::ActiveHigher) => (&[StartActive, StartStandby], Some(Speak)),
            // h: with preemption, take over with a Coup.
            (Learn, E::ActiveLower) => {
                (&[LearnParameters, StartActive, StartStandby], Some(Listen))
            }
            (Listen | Speak | Standby, E::ActiveLower) if preempt && self.virtual_ip.is_some() => (
                &[StopActive, StopStandby, Coup, Hello, GratuitousArp],
                Some(Active),
            ),
            (Listen | Speak | Standby, E::ActiveLower) => (&[LearnParameters, StartActive], None),
            (Active, E::ActiveLower) => (&[Coup], None),
            // i
            (Listen, E::Resign) => (&[StartActive, StartStandby], Some(Speak)),
            (Speak, E::Resign) => (&[StartActive], None),
            (Standby, E::Resign) => (&[StopActive, Hello, GratuitousArp], Some(Active)),
            // j
            (Active, E::Coup) => (&[StartActive, StartStandby, Resign], Some(Speak)),
            // k
            (Listen | Active, E::StandbyHigher) => (&[StartStandby], None),
            (Speak | Standby, E::StandbyHigher) => (&[StartStandby], Some(Listen)),
            // l: a lower-priority standby router: contend (Listen), take
            // the role (Speak; the active timer as in d).
            (Listen, E::StandbyLower) => (&[StartStandby], Some(Speak)),
            (Speak, E::StandbyLower) => (&[StartActive, StopStandby], Some(Standby)),
            (Active, E::StandbyLower) => (&[StartStandby], None),
            _ => (&[], None),
        }
    }

    /// Take `event`: look it up in [`Hsrp::table`], run the actions, move.
    fn step(&mut self, now: Instant, event: Event, m: Option<&Message>) {
        let (actions, next) = self.table(event);
        self.last.clear();
        self.last.extend_from_slice(actions);
        // Timers started by a Hello from the active (A) or standby (B)
        // router run for the Holdtime in that Hello; otherwise for ours.
        let theirs = m.map(|m| Duration::from_secs(m.holdtime.into()));
        let from_active = m.is_some_and(|m| m.state == State::Active);
        let from_standby = m.is_some_and(|m| m.state == State::Standby);
        // State first: the messages the actions send carry the new state.
        let from = self.state;
        if let Some(to) = next {
            self.state = to;
        }
        for a in actions {
            match a {
                Action::StartActive => {
                    let hold = theirs.filter(|_| from_active).unwrap_or(self.holdtime);
                    self.active_timer = Some(now + hold);
                }
                Action::StartStandby => {
                    let hold = theirs.filter(|_| from_standby).unwrap_or(self.holdtime);
                    self.standby_timer = Some(now + hold);
                }
                Action::StopActive => self.active_timer = None,
                Action::StopStandby => self.standby_timer = None,
                Action::LearnParameters => {
                    if let Some(m) = m {
                        self.learn(m);
                    }
                }
                Action::Hello => self.send(OpCode::Hello, self.state),
                Action::Coup => self.send(OpCode::Coup, self.state),
                // A Resign speaks for the active router it was.
                Action::Resign => self.send(OpCode::Resign, from),
                Action::GratuitousArp => {
                    if let Some(ip) = self.virtual_ip {
                        self.out.push_back(Output::GratuitousArp {
                            ip,
                            mac: virtual_mac(self.cfg.group),
                        });
                    }
                }
            }
        }
        match (from, self.state) {
            (State::Initial, s) if s != State::Initial => {
                self.hello_timer = Some(now + self.hellotime);
            }
            (_, State::Initial) => {
                self.hello_timer = None;
                self.active_timer = None;
                self.standby_timer = None;
            }
            _ => {}
        }
        if from != self.state {
            self.out.push_back(Output::StateChanged {
                from,
                to: self.state,
            });
        }
    }

    /// E: take what was not configured from the active router's Hello. An
    /// active router keeps its own timers (RFC 2281 5.2).
    fn learn(&mut self, m: &Message) {
        if self.cfg.virtual_ip.is_none() && !m.virtual_ip.is_unspecified() {
            self.virtual_ip = Some(m.virtual_ip);
        }
        if self.state == State::Active {
            return;
        }
        // The RFC: the Holdtime must exceed the Hellotime; a Hello that
        // says otherwise teaches nothing.
        if m.hellotime == 0 || m.holdtime <= m.hellotime {
            return;
        }
        if self.cfg.hellotime.is_none() {
            self.hellotime = Duration::from_secs(m.hellotime.into());
        }
        if self.cfg.holdtime.is_none() {
            self.holdtime = Duration::from_secs(m.holdtime.into());
        }
    }

    fn send(&mut self, op: OpCode, state: State) {
        let secs = |d: Duration| d.as_secs().clamp(1, 255) as u8;
        self.out.push_back(Output::Send(Message {
            op,
            state,
            hellotime: secs(self.hellotime),
            holdtime: secs(self.holdtime),
            priority: self.cfg.priority,
            group: self.cfg.group,
            auth: self.cfg.auth,
            virtual_ip: self.virtual_ip.unwrap_or(Ipv4Addr::UNSPECIFIED),
        }));
    }
}

#[cfg(test)]
mod tests;
