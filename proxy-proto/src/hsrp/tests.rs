use super::*;

const ME: Ipv4Addr = Ipv4Addr::new(198, 18, 20, 2);
const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 20, 1);
const S: Duration = Duration::from_secs(1);

fn cfg(address: Ipv4Addr, priority: u8, preempt: bool) -> HsrpConfig {
    HsrpConfig {
        group: 7,
        priority,
        preempt,
        virtual_ip: Some(VIP),
        hellotime: None,
        holdtime: None,
        auth: DEFAULT_AUTH,
        address,
    }
}

fn hello(state: State, priority: u8) -> Message {
    Message {
        op: OpCode::Hello,
        state,
        hellotime: 3,
        holdtime: 10,
        priority,
        group: 7,
        auth: DEFAULT_AUTH,
        virtual_ip: VIP,
    }
}

fn outputs(h: &mut Hsrp) -> Vec<Output> {
    std::iter::from_fn(|| h.poll_output()).collect()
}

#[test]
fn the_message_is_twenty_octets_as_rfc_2281_lays_them_out() {
    let m = Message {
        op: OpCode::Coup,
        state: State::Speak,
        hellotime: 3,
        holdtime: 10,
        priority: 120,
        group: 7,
        auth: DEFAULT_AUTH,
        virtual_ip: VIP,
    };
    let b = m.encode();
    assert_eq!(
        b,
        [
            0, 1, 4, 3, 10, 120, 7, 0, b'c', b'i', b's', b'c', b'o', 0, 0, 0, 198, 18, 20, 1
        ]
    );
    assert_eq!(Message::decode(&b), Ok(m));
    // Octets past the 20th are ignored; every error names its field.
    let mut long = b.to_vec();
    long.extend_from_slice(&[9; 8]);
    assert_eq!(Message::decode(&long), Ok(m));
    assert_eq!(Message::decode(&b[..19]), Err(HsrpError::Short(19)));
    let bad = |i: usize, v: u8| {
        let mut x = b;
        x[i] = v;
        Message::decode(&x)
    };
    assert_eq!(bad(0, 1), Err(HsrpError::Version(1)));
    assert_eq!(bad(1, 3), Err(HsrpError::OpCode(3)));
    assert_eq!(bad(2, 3), Err(HsrpError::State(3)));
    for s in [
        State::Initial,
        State::Learn,
        State::Listen,
        State::Speak,
        State::Standby,
        State::Active,
    ] {
        assert_eq!(
            Message::decode(&bad(2, s.value()).unwrap().encode())
                .unwrap()
                .state,
            s
        );
    }
    assert_eq!(virtual_mac(7), [0, 0, 0x0c, 0x07, 0xac, 7]);
}

/// One cell of the state table: state, event, the actions in order, the
/// next state.
type Cell = (State, Event, &'static [Action], State);

/// RFC 2281 section 5.7, row by row (states 1..6: Initial, Learn, Listen,
/// Speak, Standby, Active), for a router with preemption off and the
/// virtual IP configured (Learn: not yet known). Empty cells: no action,
/// no change. Where this implementation departs from the RFC's cell (d
/// and l in Speak also start the active timer), the cell here is the
/// implementation's and the module says why.
fn table() -> Vec<Cell> {
    use Action::*;
    use Event as E;
    use State::*;
    let mut t: Vec<Cell> = vec![
        (Initial, E::Enable, &[StartActive, StartStandby], Listen),
        (Learn, E::Disable, &[StopActive, StopStandby], Initial),
        (Listen, E::Disable, &[StopActive, StopStandby], Initial),
        (Speak, E::Disable, &[StopActive, StopStandby], Initial),
        (Standby, E::Disable, &[StopActive, StopStandby], Initial),
        (
            Active,
            E::Disable,
            &[StopActive, StopStandby, Resign],
            Initial,
        ),
        (Listen, E::ActiveTimer, &[StartActive, StartStandby], Speak),
        (
            Standby,
            E::ActiveTimer,
            &[StopActive, StopStandby, Hello, GratuitousArp],
            Active,
        ),
        (Listen, E::StandbyTimer, &[StartStandby], Speak),
        (Speak, E::StandbyTimer, &[StartActive, StopStandby], Standby),
        (Speak, E::HelloTimer, &[Hello], Speak),
        (Standby, E::HelloTimer, &[Hello], Standby),
        (Active, E::HelloTimer, &[Hello], Active),
        (Speak, E::SpeakHigher, &[StartStandby], Listen),
        (Standby, E::SpeakHigher, &[StartStandby], Listen),
        (
            Learn,
            E::ActiveHigher,
            &[LearnParameters, StartActive, StartStandby],
            Listen,
        ),
        (
            Listen,
            E::ActiveHigher,
            &[LearnParameters, StartActive],
            Listen,
        ),
        (
            Speak,
            E::ActiveHigher,
            &[LearnParameters, StartActive],
            Speak,
        ),
        (
            Standby,
            E::ActiveHigher,
            &[LearnParameters, StartActive],
            Standby,
        ),
        (Active, E::ActiveHigher, &[StartActive, StartStandby], Speak),
        (
            Learn,
            E::ActiveLower,
            &[LearnParameters, StartActive, StartStandby],
            Listen,
        ),
        (
            Listen,
            E::ActiveLower,
            &[LearnParameters, StartActive],
            Listen,
        ),
        (
            Speak,
            E::ActiveLower,
            &[LearnParameters, StartActive],
            Speak,
        ),
        (
            Standby,
            E::ActiveLower,
            &[LearnParameters, StartActive],
            Standby,
        ),
        (Active, E::ActiveLower, &[Coup], Active),
        (Listen, E::Resign, &[StartActive, StartStandby], Speak),
        (Speak, E::Resign, &[StartActive], Speak),
        (
            Standby,
            E::Resign,
            &[StopActive, Hello, GratuitousArp],
            Active,
        ),
        (Active, E::Coup, &[StartActive, StartStandby, Resign], Speak),
        (Listen, E::StandbyHigher, &[StartStandby], Listen),
        (Speak, E::StandbyHigher, &[StartStandby], Listen),
        (Standby, E::StandbyHigher, &[StartStandby], Listen),
        (Active, E::StandbyHigher, &[StartStandby], Active),
        (Listen, E::StandbyLower, &[StartStandby], Speak),
        (Speak, E::StandbyLower, &[StartActive, StopStandby], Standby),
        (Active, E::StandbyLower, &[StartStandby], Active),
    ];
    // Every other cell is empty.
    let states = [Initial, Learn, Listen, Speak, Standby, Active];
    let events = [
        E::Enable,
        E::Disable,
        E::ActiveTimer,
        E::StandbyTimer,
        E::HelloTimer,
        E::SpeakHigher,
        E::ActiveHigher,
        E::ActiveLower,
        E::Resign,
        E::Coup,
        E::StandbyHigher,
        E::StandbyLower,
    ];
    for s in states {
        for e in events {
            if !t.iter().any(|(s2, e2, _, _)| *s2 == s && *e2 == e) {
                t.push((s, e, &[], s));
            }
        }
    }
    t
}

/// Drive `h` with `event` the way the world would: a timer running out, a
/// message from a router above or below it, a configuration change.
fn drive(h: &mut Hsrp, now: Instant, event: Event) {
    let (higher, lower) = (Ipv4Addr::new(198, 18, 20, 9), Ipv4Addr::new(198, 18, 20, 3));
    let msg = |h: &mut Hsrp, from, m: Message| {
        assert_eq!(h.handle_message(now, from, &m), Ok(event), "{m:?}");
    };
    match event {
        Event::Enable => h.enable(now),
        Event::Disable => h.disable(now),
        Event::ActiveTimer => {
            h.active_timer = Some(now);
            h.standby_timer = None;
            h.hello_timer = None;
            h.handle_timeout(now);
        }
        Event::StandbyTimer => {
            h.standby_timer = Some(now);
            h.active_timer = None;
            h.hello_timer = None;
            h.handle_timeout(now);
        }
        Event::HelloTimer => {
            h.hello_timer = Some(now);
            h.active_timer = None;
            h.standby_timer = None;
            h.handle_timeout(now);
        }
        Event::SpeakHigher => msg(h, higher, hello(State::Speak, 200)),
        Event::ActiveHigher => msg(h, higher, hello(State::Active, 200)),
        Event::ActiveLower => msg(h, lower, hello(State::Active, 50)),
        Event::Resign => msg(
            h,
            lower,
            Message {
                op: OpCode::Resign,
                ..hello(State::Active, 50)
            },
        ),
        Event::Coup => msg(
            h,
            higher,
            Message {
                op: OpCode::Coup,
                ..hello(State::Speak, 200)
            },
        ),
        Event::StandbyHigher => msg(h, higher, hello(State::Standby, 200)),
        Event::StandbyLower => msg(h, lower, hello(State::Standby, 50)),
    }
}

#[test]
fn every_cell_of_the_state_table() {
    let t0 = Instant::now();
    for (state, event, actions, next) in table() {
        let mut h = Hsrp::in_state(cfg(ME, 100, false), state, t0);
        let now = t0 + S;
        drive(&mut h, now, event);
        let what = format!("{state:?} × {event:?}");
        if actions.is_empty() {
            assert!(
                h.last_actions().is_empty(),
                "{what}: {:?}",
                h.last_actions()
            );
        } else {
            assert_eq!(h.last_actions(), actions, "{what}");
        }
        assert_eq!(h.state(), next, "{what}");
        let out = outputs(&mut h);
        // What the actions did, seen from outside.
        let sent: Vec<OpCode> = out
            .iter()
            .filter_map(|o| match o {
                Output::Send(m) => Some(m.op),
                _ => None,
            })
            .collect();
        let want: Vec<OpCode> = actions
            .iter()
            .filter_map(|a| match a {
                Action::Hello => Some(OpCode::Hello),
                Action::Coup => Some(OpCode::Coup),
                Action::Resign => Some(OpCode::Resign),
                _ => None,
            })
            .collect();
        assert_eq!(sent, want, "{what}: {out:?}");
        for o in &out {
            match o {
                // A Resign speaks for the active router it was; the rest
                // carry the state the router is in now.
                Output::Send(m) if m.op == OpCode::Resign => {
                    assert_eq!(m.state, State::Active, "{what}")
                }
                Output::Send(m) => {
                    assert_eq!(m.state, next, "{what}");
                    assert_eq!((m.priority, m.group, m.virtual_ip), (100, 7, VIP));
                }
                Output::GratuitousArp { ip, mac } => {
                    assert!(actions.contains(&Action::GratuitousArp), "{what}");
                    assert_eq!((*ip, *mac), (VIP, virtual_mac(7)));
                }
                Output::StateChanged { from, to } => {
                    assert_eq!((*from, *to), (state, next), "{what}")
                }
            }
        }
        assert_eq!(
            out.iter()
                .any(|o| matches!(o, Output::GratuitousArp { .. })),
            actions.contains(&Action::GratuitousArp),
            "{what}"
        );
        assert_eq!(
            out.iter().any(|o| matches!(o, Output::StateChanged { .. })),
            state != next,
            "{what}"
        );
        // A and B run for the sender's Holdtime when a Hello from the
        // active (A) or standby (B) router started them, else for ours.
        let from_active = matches!(event, Event::ActiveHigher | Event::ActiveLower);
        let from_standby = matches!(event, Event::StandbyHigher | Event::StandbyLower);
        if actions.contains(&Action::StartActive) && next != State::Initial {
            let hold = if from_active {
                10
            } else {
                DEFAULT_HOLDTIME.as_secs()
            };
            assert_eq!(
                h.active_timer,
                Some(now + Duration::from_secs(hold)),
                "{what}"
            );
        }
        if actions.contains(&Action::StartStandby) && next != State::Initial {
            let hold = if from_standby {
                10
            } else {
                DEFAULT_HOLDTIME.as_secs()
            };
            assert_eq!(
                h.standby_timer,
                Some(now + Duration::from_secs(hold)),
                "{what}"
            );
        }
        if next == State::Initial {
            assert_eq!(h.poll_timeout(), None, "{what}: timers left running");
        }
    }
}

#[test]
fn learn_state_takes_the_virtual_ip_and_timers_from_the_active_router() {
    let t0 = Instant::now();
    let mut h = Hsrp::new(HsrpConfig {
        virtual_ip: None,
        ..cfg(ME, 100, false)
    });
    h.enable(t0);
    assert_eq!(h.state(), State::Learn);
    let m = Message {
        hellotime: 1,
        holdtime: 4,
        ..hello(State::Active, 50)
    };
    h.handle_message(t0, Ipv4Addr::new(198, 18, 20, 3), &m)
        .unwrap();
    assert_eq!(h.state(), State::Listen);
    assert_eq!(h.virtual_ip(), Some(VIP));
    assert_eq!(h.timers(), (S, 4 * S));
    // A Hello whose Holdtime is not above its Hellotime teaches nothing.
    let bad = Message {
        hellotime: 5,
        holdtime: 5,
        ..hello(State::Active, 50)
    };
    h.handle_message(t0, Ipv4Addr::new(198, 18, 20, 3), &bad)
        .unwrap();
    assert_eq!(h.timers(), (S, 4 * S));
}

#[test]
fn messages_of_other_groups_other_authentication_or_our_own_are_ignored() {
    let t0 = Instant::now();
    let mut h = Hsrp::in_state(cfg(ME, 100, false), State::Standby, t0);
    let other = Ipv4Addr::new(198, 18, 20, 9);
    let m = hello(State::Speak, 200);
    assert_eq!(
        h.handle_message(t0, other, &Message { group: 8, ..m }),
        Err(Ignored::OtherGroup)
    );
    assert_eq!(
        h.handle_message(
            t0,
            other,
            &Message {
                auth: *b"secret\0\0",
                ..m
            }
        ),
        Err(Ignored::Authentication)
    );
    assert_eq!(h.handle_message(t0, ME, &m), Err(Ignored::Own));
    // Equal priorities: the higher address wins.
    let tie = hello(State::Speak, 100);
    assert_eq!(
        h.handle_message(t0, Ipv4Addr::new(198, 18, 20, 1), &tie),
        Err(Ignored::NoEvent)
    );
    assert_eq!(h.state(), State::Standby);
    assert_eq!(
        h.handle_message(t0, Ipv4Addr::new(198, 18, 20, 3), &tie),
        Ok(Event::SpeakHigher)
    );
    assert_eq!(h.state(), State::Listen);
}

/// Routers on one simulated link: every message a router sends reaches the
/// others that are up, at once.
struct Link {
    routers: Vec<(Hsrp, bool)>,
    now: Instant,
    arps: Vec<(usize, Instant)>,
}

impl Link {
    fn new(cfgs: Vec<HsrpConfig>) -> Link {
        let now = Instant::now();
        let mut routers: Vec<(Hsrp, bool)> =
            cfgs.into_iter().map(|c| (Hsrp::new(c), true)).collect();
        for (h, _) in &mut routers {
            h.enable(now);
        }
        Link {
            routers,
            now,
            arps: Vec::new(),
        }
    }

    /// Run for `d` in 100 ms steps (bounded), delivering messages.
    fn run(&mut self, d: Duration) {
        let until = self.now + d;
        while self.now < until {
            self.now += Duration::from_millis(100);
            for i in 0..self.routers.len() {
                if self.routers[i].1 {
                    self.routers[i].0.handle_timeout(self.now);
                }
                self.deliver(i);
            }
        }
    }

    fn deliver(&mut self, from: usize) {
        // Bounded: a reply may produce replies, but not without end.
        for _ in 0..100 {
            let Some(o) = self.routers[from].0.poll_output() else {
                return;
            };
            if !self.routers[from].1 {
                continue;
            }
            match o {
                Output::Send(m) => {
                    let src = self.routers[from].0.cfg.address;
                    for j in 0..self.routers.len() {
                        if j != from && self.routers[j].1 {
                            let now = self.now;
                            let _ = self.routers[j].0.handle_message(now, src, &m);
                            self.deliver(j);
                        }
                    }
                }
                Output::GratuitousArp { .. } => self.arps.push((from, self.now)),
                Output::StateChanged { .. } => {}
            }
        }
    }

    fn states(&self) -> Vec<State> {
        self.routers.iter().map(|(h, _)| h.state()).collect()
    }
}

#[test]
fn a_pair_elects_one_active_and_one_standby_and_the_standby_takes_over() {
    let a = Ipv4Addr::new(198, 18, 20, 2);
    let b = Ipv4Addr::new(198, 18, 20, 3);
    let mut link = Link::new(vec![cfg(a, 110, true), cfg(b, 100, true)]);
    link.run(60 * S);
    assert_eq!(link.states(), vec![State::Active, State::Standby]);
    // The active router dies: the standby takes over once the active's
    // Hello has gone stale (Holdtime, 10 s), announcing the address.
    link.routers[0].1 = false;
    let died = link.now;
    link.run(15 * S);
    assert_eq!(link.states()[1], State::Active);
    let (who, at) = *link.arps.last().expect("a gratuitous ARP");
    assert_eq!(who, 1);
    let took = at - died;
    assert!(took <= 10 * S + Duration::from_millis(200), "{took:?}");
    // It comes back with the higher priority and preemption: it takes the
    // address back with a Coup, and the other steps down to standby.
    link.routers[0].0 = Hsrp::new(cfg(a, 110, true));
    link.routers[0].1 = true;
    let back = link.now;
    link.routers[0].0.enable(back);
    link.run(60 * S);
    assert_eq!(link.states(), vec![State::Active, State::Standby]);
}

#[test]
fn a_returning_router_does_not_preempt_until_allowed() {
    let a = Ipv4Addr::new(198, 18, 20, 2);
    let b = Ipv4Addr::new(198, 18, 20, 3);
    let mut link = Link::new(vec![cfg(a, 100, true), cfg(b, 110, true)]);
    link.run(60 * S);
    assert_eq!(link.states(), vec![State::Standby, State::Active]);
    link.routers[1].1 = false;
    link.run(15 * S);
    assert_eq!(link.states()[0], State::Active);
    // The higher-priority router returns, but has not caught up yet.
    link.routers[1].0 = Hsrp::new(cfg(b, 110, true));
    link.routers[1].0.set_preempt_allowed(false);
    link.routers[1].1 = true;
    let now = link.now;
    link.routers[1].0.enable(now);
    link.run(30 * S);
    assert_eq!(link.states(), vec![State::Active, State::Standby]);
    // Caught up: now it takes the address back.
    link.routers[1].0.set_preempt_allowed(true);
    link.run(20 * S);
    assert_eq!(link.states(), vec![State::Standby, State::Active]);
    // Without preemption configured, a higher priority waits its turn.
    let mut link = Link::new(vec![cfg(a, 100, false), cfg(b, 110, false)]);
    link.run(60 * S);
    let active = link
        .states()
        .iter()
        .filter(|s| **s == State::Active)
        .count();
    assert_eq!(active, 1, "{:?}", link.states());
}
