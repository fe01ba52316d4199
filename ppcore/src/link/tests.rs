//! The client link against the node's link, on a fake clock: no sockets,
//! no sleeps.

use super::*;
use crate::key::Key;
use crate::node_link::reason::TransportEnd;
use crate::node_link::{NodeAction, NodeEvent, NodeLink, NodeLinkConfig};
use crate::wire::{DoneJob, PROTOCOL_VERSION};
use proptest::prelude::*;

const SECOND: Duration = Duration::from_secs(1);

fn key(n: u8) -> Key {
    Key::from_bytes([n; 32])
}

fn keys(n: u8) -> KeySet {
    KeySet::one(key(n))
}

fn config() -> LinkConfig {
    LinkConfig {
        keys: keys(1),
        heartbeat: SECOND,
        handshake_timeout: 5 * SECOND,
        max_frame: 1 << 20,
        max_payload: crate::stream::DEFAULT_MAX_PAYLOAD,
        stream_stall: SECOND * 30,
        max_prefetch: 4,
        backoff_min: Duration::from_millis(100),
        backoff_max: 5 * SECOND,
        reconnect: true,
        give_up_after: None,
        send_window: 1 << 30,
    }
}

fn welcome(workers: u32) -> NodeMsg {
    NodeMsg::Welcome {
        node_id: "n1".into(),
        version: "test".into(),
        workers,
        jobs: vec![JobInfo {
            name: "j".into(),
            signature: "s".into(),
        }],
        heartbeat_ms: 0,
        caps: vec![],
        credit_jobs: 0,
        credit_bytes: 0,
        shared_max: 0,
        max_payload: 0,
    }
}

fn run(id: u64, attempt: u32) -> RunJob {
    RunJob {
        id,
        attempt,
        name: "j".into(),
        args: ByteBuf::from(vec![1, 2, 3]),
        program: None,
        shared: Vec::new(),
    }
}

/// A client link wired to a node link; `now` is the fake clock.
struct Pair {
    client: ClientLink<u64>,
    node: Option<NodeLink>,
    node_keys: KeySet,
    now: Instant,
    /// What the client asked of its driver, except bytes and dials.
    out: Vec<Action<u64>>,
    /// Jobs the node was asked to run, not yet answered.
    node_jobs: Vec<RunJob>,
    node_cancels: Vec<u64>,
    /// Program offers and upload pieces (offset, length) the node got.
    node_offers: Vec<ProgramInfo>,
    node_chunks: Vec<(u64, usize)>,
    dials: usize,
    /// The node's credit window: jobs, bytes.
    credit: (usize, usize),
    /// Stream frames stay queued until this is false (the drivers' pull).
    hold_streams: bool,
    /// The node's `--max-payload`.
    node_max_payload: u64,
    /// The node's send window.
    node_window: u64,
    /// What reached the node, in order: shared values (id, length) as
    /// `Err`, jobs as `Ok(id)`; and the values the client gave up.
    node_order: Vec<Result<u64, (SharedId, usize)>>,
    node_unshared: Vec<SharedId>,
}

impl Pair {
    fn new() -> Self {
        Self::with(config(), keys(1))
    }

    fn with(config: LinkConfig, node_keys: KeySet) -> Self {
        let now = Instant::now();
        Pair {
            client: ClientLink::new(config, now),
            node: None,
            node_keys,
            now,
            out: Vec::new(),
            node_jobs: Vec::new(),
            node_cancels: Vec::new(),
            node_offers: Vec::new(),
            node_chunks: Vec::new(),
            dials: 0,
            credit: (1000, 1 << 30),
            hold_streams: false,
            node_max_payload: crate::stream::DEFAULT_MAX_PAYLOAD,
            node_window: 1 << 30,
            node_order: Vec::new(),
            node_unshared: Vec::new(),
        }
    }

    fn node_config(&self) -> NodeLinkConfig {
        NodeLinkConfig {
            keys: self.node_keys.clone(),
            handshake_timeout: 5 * SECOND,
            heartbeat: 2 * SECOND,
            max_frame: 1 << 20,
            credit_jobs: self.credit.0,
            credit_bytes: self.credit.1,
            max_payload: self.node_max_payload,
            stream_stall: SECOND * 30,
            send_window: self.node_window,
        }
    }

    /// Carries every action out until both sides are quiet.
    fn pump(&mut self) {
        loop {
            let mut busy = false;
            while let Some(a) = self.client.poll() {
                busy = true;
                match a {
                    Action::Connect => {
                        self.dials += 1;
                        if self.node.is_none() {
                            let node = NodeLink::new(self.node_config(), welcome(2), self.now);
                            self.node = Some(node);
                            self.client.handle(Event::Connected, self.now);
                        } else {
                            self.client
                                .handle(Event::ConnectFailed("busy".into()), self.now);
                        }
                    }
                    Action::Send(bytes) => {
                        if let Some(node) = &mut self.node {
                            node.handle(NodeEvent::Received(&bytes), self.now);
                        }
                    }
                    Action::Disconnect => {
                        if let Some(mut node) = self.node.take() {
                            node.handle(
                                NodeEvent::TransportClosed(TransportEnd::ClosedByPeer),
                                self.now,
                            );
                        }
                    }
                    other => self.out.push(other),
                }
            }
            let mut node_closed = false;
            if let Some(node) = &mut self.node {
                loop {
                    while let Some(bytes) = node.poll_transmit() {
                        busy = true;
                        self.client.handle(Event::Received(&bytes), self.now)
                    }
                    let Some(a) = node.poll_event() else { break };
                    busy = true;
                    match a {
                        NodeAction::Run(jobs) => {
                            self.node_order.extend(jobs.iter().map(|j| Ok(j.id)));
                            self.node_jobs.extend(jobs)
                        }
                        NodeAction::Share { id, bytes } => {
                            self.node_order.push(Err((id, bytes.len())))
                        }
                        NodeAction::Unshare(ids) => self.node_unshared.extend(ids),
                        NodeAction::Cancel(id) => self.node_cancels.push(id),
                        NodeAction::Offer(info) => self.node_offers.push(info),
                        NodeAction::Chunk { offset, data, .. } => {
                            self.node_chunks.push((offset, data.len()))
                        }
                        NodeAction::Closed(_) => node_closed = true,
                        NodeAction::StatusWanted
                        | NodeAction::Authenticated
                        | NodeAction::UploadRefused { .. } => {}
                    }
                }
            }
            if node_closed {
                self.node = None;
                self.client
                    .handle(Event::TransportClosed("node closed".into()), self.now);
                busy = true;
            }
            if !busy && !self.hold_streams {
                // Everything sent is delivered at once: the outboxes are empty.
                busy = self.client.send_more(0);
                if let Some(node) = &mut self.node {
                    busy |= node.send_more(0);
                }
            }
            if !busy {
                return;
            }
        }
    }

    /// Moves the clock to the client's next timer and fires it.
    fn tick(&mut self) {
        if let Some(at) = self.client.poll_timeout() {
            self.now = self.now.max(at);
        }
        self.client.handle(Event::Timer, self.now);
        self.pump();
    }

    fn node(&mut self, event: NodeEvent<'_>) {
        if let Some(node) = &mut self.node {
            node.handle(event, self.now);
        }
        self.pump();
    }

    fn submit(&mut self, jobs: &[(u64, u32)]) {
        let jobs = jobs.iter().map(|&(id, a)| (run(id, a), id)).collect();
        self.client.handle(Event::Submit(jobs), self.now);
        self.pump();
    }

    fn answer(&mut self, id: u64, attempt: u32) {
        let done = DoneJob {
            id,
            attempt,
            result: Ok(ByteBuf::from(vec![id as u8])),
            exec_ns: 1000,
        };
        self.node(NodeEvent::Finished(vec![done]));
    }

    fn take_out(&mut self) -> Vec<Action<u64>> {
        std::mem::take(&mut self.out)
    }
}

fn downs(actions: &[Action<u64>]) -> Vec<Option<Duration>> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Down { retry_in, .. } => Some(*retry_in),
            _ => None,
        })
        .collect()
}

fn returned(actions: &[Action<u64>]) -> Vec<(u64, bool)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Returned { job, lost } => Some((*job, *lost)),
            _ => None,
        })
        .collect()
}

fn done(actions: &[Action<u64>]) -> Vec<u64> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Done { job, .. } => Some(*job),
            _ => None,
        })
        .collect()
}

#[test]
fn the_handshake_brings_the_link_up_with_the_smaller_heartbeat() {
    let mut cfg = config();
    cfg.heartbeat = 10 * SECOND;
    let mut p = Pair::with(cfg, keys(1));
    p.pump();
    assert_eq!(p.client.state(), LinkState::Ready);
    let up = p.take_out();
    let Some(Action::Up(hello)) = up.first() else {
        panic!("no Up: {up:?}")
    };
    assert_eq!(
        (hello.workers, hello.heartbeat),
        (2, 2 * SECOND),
        "the node's 2 s wins"
    );
    assert!(p.client.can_run("j", "s"));
    assert!(!p.client.can_run("j", "other"));
    assert_eq!(p.client.free(), 4, "2 workers + 2 prefetch");
}

#[test]
fn results_resolve_jobs_and_the_window_refills() {
    let mut p = Pair::new();
    p.pump();
    p.submit(&[(1, 1), (2, 1)]);
    assert_eq!(p.node_jobs.len(), 2);
    assert_eq!(p.client.free(), 2);
    p.answer(2, 1);
    p.answer(1, 1);
    assert_eq!(done(&p.take_out()[1..]), vec![2, 1]);
    assert_eq!(p.client.in_flight(), 0);
}

#[test]
fn a_silent_node_is_dead_after_exactly_three_intervals() {
    let mut cfg = config();
    cfg.heartbeat = SECOND;
    let mut p = Pair::with(cfg, keys(1));
    p.pump();
    let up_at = p.now;
    p.submit(&[(1, 1)]);
    p.take_out();
    // From now on the node hears nothing and answers nothing.
    let silent = p.node.take();
    let mut pings = 0;
    while p.client.state() == LinkState::Ready {
        let at = p.client.poll_timeout().unwrap();
        p.now = at;
        p.client.handle(Event::Timer, p.now);
        while let Some(a) = p.client.poll() {
            match a {
                Action::Send(_) => pings += 1,
                other => p.out.push(other),
            }
        }
        assert!(pings <= 3, "bounded");
    }
    assert_eq!(p.now - up_at, 3 * SECOND, "dead at exactly 3 intervals");
    assert_eq!(pings, 2, "pinged at 1 s and 2 s");
    let out = p.take_out();
    assert_eq!(
        returned(&out),
        vec![(1, true)],
        "in-flight job back, counted as lost"
    );
    assert_eq!(downs(&out), vec![Some(Duration::from_millis(100))]);
    assert_eq!(p.client.state(), LinkState::Backoff);
    drop(silent);
}

#[test]
fn any_frame_is_proof_of_life() {
    let mut p = Pair::new();
    p.pump();
    p.submit(&[(1, 1)]);
    // Results keep arriving every 2.9 s; no pong is ever needed.
    let node = p.node.take();
    let mut node = node.unwrap();
    for round in 0..5 {
        p.now += Duration::from_millis(2900);
        p.client.handle(Event::Timer, p.now);
        while p.client.poll().is_some() {}
        assert_eq!(p.client.state(), LinkState::Ready, "round {round}");
        node.handle(NodeEvent::GiveBack(vec![(99, 1)]), p.now);
        while let Some(bytes) = node.poll_transmit() {
            p.client.handle(Event::Received(&bytes), p.now);
        }
    }
}

#[test]
fn the_backoff_doubles_up_to_its_cap_and_resets_after_a_stable_link() {
    let mut p = Pair::new();
    // The node is "busy" (refuses dials) while `node` is Some.
    p.node = Some(NodeLink::new(p.node_config(), welcome(1), p.now));
    p.pump();
    let mut waits = Vec::new();
    for _ in 0..8 {
        waits.extend(downs(&p.take_out()));
        p.tick();
    }
    let ms: Vec<u128> = waits.iter().map(|w| w.unwrap().as_millis()).collect();
    assert_eq!(ms, vec![100, 200, 400, 800, 1600, 3200, 5000, 5000]);
    // Let it connect, stay up past the cap, then lose it: back to 100 ms.
    p.node = None;
    p.tick();
    assert_eq!(p.client.state(), LinkState::Ready);
    p.now += 6 * SECOND;
    p.node(NodeEvent::TransportClosed(TransportEnd::ClosedByPeer));
    p.client
        .handle(Event::TransportClosed("reset".into()), p.now);
    p.pump();
    let out = p.take_out();
    assert_eq!(downs(&out).last(), Some(&Some(Duration::from_millis(100))));
}

#[test]
fn a_late_result_after_reassignment_is_dropped() {
    let mut p = Pair::new();
    p.pump();
    p.submit(&[(1, 1)]);
    // The connection breaks; the job comes back as lost.
    p.client
        .handle(Event::TransportClosed("reset".into()), p.now);
    p.node = None;
    p.pump();
    assert_eq!(returned(&p.take_out()), vec![(1, true)]);
    p.tick();
    assert_eq!(p.client.state(), LinkState::Ready);
    p.take_out();
    p.submit(&[(1, 2)]);
    // The first attempt's result turns up late: dropped.
    p.answer(1, 1);
    assert!(done(&p.take_out()).is_empty());
    p.answer(1, 2);
    assert_eq!(done(&p.take_out()), vec![1]);
    // And a duplicate of the second is dropped too.
    p.answer(1, 2);
    assert!(done(&p.take_out()).is_empty());
}

#[test]
fn drain_gives_jobs_back_and_goodbye_ends_without_loss() {
    let mut p = Pair::new();
    p.pump();
    p.submit(&[(1, 1), (2, 1)]);
    p.node(NodeEvent::Drain);
    assert_eq!(p.client.state(), LinkState::Draining);
    assert_eq!(p.client.free(), 0);
    // A job submitted meanwhile comes straight back.
    p.client.handle(Event::Submit(vec![(run(3, 1), 3)]), p.now);
    p.pump();
    // The node finishes one and gives the other back, then stops.
    p.answer(1, 1);
    p.node(NodeEvent::GiveBack(vec![(2, 1)]));
    p.node(NodeEvent::Stop);
    let out = p.take_out();
    assert_eq!(done(&out), vec![1]);
    assert_eq!(returned(&out), vec![(3, false), (2, false)]);
    assert_eq!(p.client.state(), LinkState::Backoff);
    assert_eq!(p.client.in_flight(), 0);
}

#[test]
fn a_wrong_key_fails_for_good_without_redial() {
    let mut p = Pair::with(config(), keys(2));
    p.pump();
    let out = p.take_out();
    assert!(
        matches!(out.last(), Some(Action::Failed { reason }) if reason.contains("wrong key")),
        "{out:?}"
    );
    assert_eq!(p.client.state(), LinkState::Closed);
    assert_eq!(p.client.poll_timeout(), None);
    assert_eq!(p.dials, 1);
}

#[test]
fn another_protocol_version_fails_naming_both() {
    let mut link = ClientLink::<u64>::new(config(), Instant::now());
    let now = Instant::now();
    assert!(matches!(link.poll(), Some(Action::Connect)));
    link.handle(Event::Connected, now);
    // A node of the next version refuses our first message (code 2).
    let mut refusal = vec![0, 0, 0, 6, 1, 2];
    refusal.extend_from_slice(&(PROTOCOL_VERSION + 1).to_be_bytes());
    link.handle(Event::Received(&refusal), now);
    let failed = std::iter::from_fn(|| link.poll()).find_map(|a| match a {
        Action::Failed { reason } => Some(reason),
        _ => None,
    });
    let reason = failed.unwrap();
    assert!(
        reason.contains(&format!("version {PROTOCOL_VERSION}")),
        "{reason}"
    );
    assert!(
        reason.contains(&format!("version {}", PROTOCOL_VERSION + 1)),
        "{reason}"
    );
}

#[test]
fn a_handshake_that_stalls_times_out_and_retries() {
    let mut link = ClientLink::<u64>::new(config(), Instant::now());
    let t0 = Instant::now();
    link.poll();
    link.handle(Event::Connected, t0);
    assert_eq!(link.poll_timeout(), Some(t0 + 5 * SECOND));
    link.handle(Event::Timer, t0 + 5 * SECOND);
    let actions: Vec<_> = std::iter::from_fn(|| link.poll()).collect();
    assert!(actions
        .iter()
        .any(|a| matches!(a, Action::Down { reason, .. } if reason.contains("handshake"))));
    assert_eq!(link.state(), LinkState::Backoff);
}

#[test]
fn garbage_from_the_node_loses_the_link_not_the_jobs() {
    let mut p = Pair::new();
    p.pump();
    p.submit(&[(5, 1)]);
    p.client
        .handle(Event::Received(&[0, 0, 0, 2, 0xc1, 0xc1]), p.now);
    p.node = None;
    p.pump();
    let out = p.take_out();
    assert_eq!(returned(&out), vec![(5, true)]);
    assert!(matches!(&out[..], [.., Action::Down { reason, .. }] if reason.contains("bad frame")));
}

#[test]
fn cancel_tells_the_node_and_close_gives_everything_back() {
    let mut p = Pair::new();
    p.pump();
    p.submit(&[(1, 1), (2, 1), (3, 1)]);
    p.client.handle(Event::Cancel(2), p.now);
    let gone = p.client.cancel_where(|&job| job == 3);
    p.pump();
    assert_eq!(gone, vec![3]);
    assert_eq!(p.node_cancels, vec![2, 3]);
    p.client.handle(Event::Close, p.now);
    p.pump();
    assert_eq!(returned(&p.take_out()), vec![(1, false)]);
    assert_eq!(p.client.state(), LinkState::Closed);
    assert!(p.node.is_none(), "the node saw the goodbye");
}

#[derive(Debug, Clone)]
enum Step {
    Submit(u8),
    Answer(usize),
    AnswerStale(usize),
    GiveBack(usize),
    Break,
    Silence,
    Tick,
    Drain,
    Stop,
    Cancel(usize),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (1u8..6).prop_map(Step::Submit),
        4 => (0usize..16).prop_map(Step::Answer),
        1 => (0usize..16).prop_map(Step::AnswerStale),
        1 => (0usize..16).prop_map(Step::GiveBack),
        1 => Just(Step::Break),
        1 => Just(Step::Silence),
        2 => Just(Step::Tick),
        1 => Just(Step::Drain),
        1 => Just(Step::Stop),
        1 => (0usize..16).prop_map(Step::Cancel),
    ]
}

proptest! {
    /// Whatever happens (results, stale results, give-backs, breaks,
    /// silences, drains, stops, cancels), each job handed to the link comes
    /// out exactly once, a job resolves at most once, and after `Close`
    /// nothing is left in flight.
    #[test]
    fn every_job_resolves_exactly_once(steps in proptest::collection::vec(step(), 0..120)) {
        let mut p = Pair::new();
        p.pump();
        let mut next = 0u64;
        let mut attempts = std::collections::HashMap::new();
        let mut queue: Vec<u64> = Vec::new();
        let mut held = std::collections::HashSet::new();
        let mut resolved = std::collections::HashSet::new();
        for s in steps {
            match s {
                Step::Submit(n) => {
                    let room = p.client.free().min(n as usize);
                    let mut jobs = Vec::new();
                    for _ in 0..room {
                        let id = queue.pop().unwrap_or_else(|| { next += 1; next });
                        let a = attempts.entry(id).or_insert(0u32);
                        *a += 1;
                        jobs.push((id, *a));
                        held.insert(id);
                    }
                    p.submit(&jobs);
                }
                Step::Answer(i) if !p.node_jobs.is_empty() => {
                    let j = p.node_jobs.remove(i % p.node_jobs.len());
                    p.answer(j.id, j.attempt);
                }
                Step::AnswerStale(i) => {
                    let id = (i as u64 % (next + 1)).max(1);
                    let a = attempts.get(&id).copied().unwrap_or(1);
                    p.answer(id, a.saturating_sub(1));
                }
                Step::GiveBack(i) if !p.node_jobs.is_empty() => {
                    let j = p.node_jobs.remove(i % p.node_jobs.len());
                    p.node(NodeEvent::GiveBack(vec![(j.id, j.attempt)]));
                }
                Step::Break => {
                    p.node = None;
                    p.node_jobs.clear();
                    p.client.handle(Event::TransportClosed("reset".into()), p.now);
                    p.pump();
                }
                Step::Silence => {
                    p.node = None;
                    p.node_jobs.clear();
                    for _ in 0..4 { p.tick(); }
                }
                Step::Tick => p.tick(),
                Step::Drain => p.node(NodeEvent::Drain),
                Step::Stop => { p.node_jobs.clear(); p.node(NodeEvent::Stop); }
                Step::Cancel(i) => {
                    let id = (i as u64 % (next + 1)).max(1);
                    if held.contains(&id) {
                        let before = p.client.in_flight();
                        p.client.handle(Event::Cancel(id), p.now);
                        p.pump();
                        // A cancelled job ended elsewhere: it leaves the link
                        // without an action, and counts as resolved.
                        if p.client.in_flight() < before {
                            held.remove(&id);
                            prop_assert!(resolved.insert(id), "job {} resolved twice", id);
                        }
                    }
                }
                _ => {}
            }
            for a in p.take_out() {
                match a {
                    Action::Done { job, .. } => {
                        prop_assert!(held.remove(&job), "job {} out twice", job);
                        prop_assert!(resolved.insert(job), "job {} resolved twice", job);
                    }
                    Action::Returned { job, .. } => {
                        prop_assert!(held.remove(&job), "job {} out twice", job);
                        queue.push(job);
                    }
                    _ => {}
                }
            }
            prop_assert_eq!(p.client.in_flight(), held.len());
        }
        p.client.handle(Event::Close, p.now);
        p.pump();
        for a in p.take_out() {
            if let Action::Returned { job, .. } = a {
                prop_assert!(held.remove(&job), "job {} out twice", job);
                queue.push(job);
            }
        }
        prop_assert!(held.is_empty(), "left in flight: {:?}", held);
        prop_assert_eq!(p.client.in_flight(), 0);
        prop_assert_eq!(resolved.len() + queue.len(), next as usize);
    }
}

#[test]
fn a_rollover_key_set_reaches_a_node_that_holds_only_the_second_key() {
    let mut cfg = config();
    cfg.keys = KeySet::new(vec![key(2), key(1)]).unwrap();
    let mut p = Pair::with(cfg, keys(1));
    p.pump();
    assert_eq!(
        p.client.state(),
        LinkState::Backoff,
        "the first key is refused"
    );
    p.tick();
    assert_eq!(p.client.state(), LinkState::Ready);
    assert_eq!(p.dials, 2);
    assert!(matches!(p.take_out().last(), Some(Action::Up(_))));
}

#[test]
fn a_discovered_node_is_given_up_after_failures_in_a_row() {
    let mut cfg = config();
    cfg.give_up_after = Some(3);
    let t0 = Instant::now();
    let mut link = ClientLink::<u64>::new(cfg, t0);
    let mut now = t0;
    let mut failed = None;
    for _ in 0..3 {
        assert!(matches!(link.poll(), Some(Action::Connect)));
        link.handle(Event::ConnectFailed("refused".into()), now);
        while let Some(a) = link.poll() {
            if let Action::Failed { reason } = a {
                failed = Some(reason);
            }
        }
        if let Some(at) = link.poll_timeout() {
            now = at;
            link.handle(Event::Timer, now);
        }
    }
    let reason = failed.expect("given up");
    assert!(reason.contains("3 failed attempt"), "{reason}");
    assert_eq!(link.state(), LinkState::Closed);
}

/// The next frame the node sends, taken off the wire.
fn node_frame(p: &mut Pair, event: NodeEvent<'_>) -> Vec<u8> {
    let node = p.node.as_mut().unwrap();
    node.handle(event, p.now);
    let mut frame = None;
    while let Some(bytes) = node.poll_transmit() {
        frame.get_or_insert(bytes);
    }
    while node.poll_event().is_some() {}
    frame.unwrap()
}

fn done_event(id: u64) -> NodeEvent<'static> {
    NodeEvent::Finished(vec![DoneJob {
        id,
        attempt: 1,
        result: Ok(ByteBuf::from(vec![2])),
        exec_ns: 1,
    }])
}

#[test]
fn a_modified_frame_from_the_node_loses_the_link_and_resolves_nothing() {
    let mut p = Pair::new();
    p.pump();
    p.submit(&[(5, 1)]);
    let mut frame = node_frame(&mut p, done_event(5));
    frame[10] ^= 0x40;
    p.client.handle(Event::Received(&frame), p.now);
    p.node = None;
    p.pump();
    let out = p.take_out();
    assert!(done(&out).is_empty(), "a forged result was accepted");
    assert_eq!(returned(&out), vec![(5, true)]);
    assert!(
        matches!(&out[..], [.., Action::Down { reason, .. }] if reason.contains("failed authentication")),
        "{out:?}"
    );
}

#[test]
fn replayed_reordered_injected_and_truncated_frames_are_refused() {
    /// What the attacker makes of two frames in a row.
    type Attack = fn(Vec<u8>, Vec<u8>) -> Vec<u8>;
    let cases: [Attack; 4] = [
        // replayed: the first frame twice
        |a, _| [a.clone(), a].concat(),
        // reordered
        |a, b| [b, a].concat(),
        // injected: a frame sealed by nobody in this session
        |_, b| {
            let mut fake = vec![0, 0, 0, 20];
            fake.extend([7u8; 20]);
            [fake, b].concat()
        },
        // truncated: a frame cut short, its length fixed up
        |a, _| {
            let len = a.len() - 4 - 3;
            let mut cut = (len as u32).to_be_bytes().to_vec();
            cut.extend_from_slice(&a[4..4 + len]);
            cut
        },
    ];
    for (i, case) in cases.iter().enumerate() {
        let mut p = Pair::new();
        p.pump();
        p.submit(&[(5, 1), (6, 1)]);
        let a = node_frame(&mut p, done_event(5));
        let b = node_frame(&mut p, done_event(6));
        let replay = i == 0;
        p.client.handle(Event::Received(&case(a, b)), p.now);
        p.node = None;
        p.pump();
        let out = p.take_out();
        // Only the genuine first frame of the replay case resolves.
        assert_eq!(
            done(&out),
            if replay { vec![5] } else { vec![] },
            "case {i}"
        );
        assert!(
            matches!(&out[..], [.., Action::Down { reason, .. }] if reason.contains("failed authentication")),
            "case {i}: {out:?}"
        );
    }
}

/// The node's answer to the client's next frame (a ping), as sealed bytes.
fn pong_for_next_ping(p: &mut Pair) -> Vec<u8> {
    let Some(Action::Send(ping)) = p.client.poll() else {
        panic!("no ping")
    };
    let node = p.node.as_mut().unwrap();
    node.handle(NodeEvent::Received(&ping), p.now);
    let mut pong = None;
    while let Some(bytes) = node.poll_transmit() {
        pong.get_or_insert(bytes);
    }
    while node.poll_event().is_some() {}
    pong.expect("a pong")
}

#[test]
fn the_round_trip_is_the_last_pings_and_only_its() {
    let mut p = Pair::new();
    p.pump();
    assert_eq!(p.client.rtt(), None, "no ping answered yet");
    // Ping 1 at 1 s; its pong comes back 30 ms later.
    p.now += SECOND;
    p.client.handle(Event::Timer, p.now);
    let pong1 = pong_for_next_ping(&mut p);
    p.now += Duration::from_millis(30);
    p.client.handle(Event::Received(&pong1), p.now);
    assert_eq!(p.client.rtt(), Some(Duration::from_millis(30)));
    // Pings 2 and 3 go out before pong 2 is back: the late pong 2 changes
    // nothing; pong 3, 205 ms after ping 3, does.
    p.now = p.client.poll_timeout().unwrap();
    p.client.handle(Event::Timer, p.now);
    let pong2 = pong_for_next_ping(&mut p);
    p.now = p.client.poll_timeout().unwrap();
    p.client.handle(Event::Timer, p.now);
    let pong3 = pong_for_next_ping(&mut p);
    p.now += Duration::from_millis(200);
    p.client.handle(Event::Received(&pong2), p.now);
    assert_eq!(p.client.rtt(), Some(Duration::from_millis(30)));
    p.now += Duration::from_millis(5);
    p.client.handle(Event::Received(&pong3), p.now);
    assert_eq!(p.client.rtt(), Some(Duration::from_millis(205)));
    assert_eq!(p.client.state(), LinkState::Ready);
}

#[test]
fn a_refusal_is_retried_only_when_the_node_says_so() {
    use crate::secure::{refusal_busy, refusal_reason};
    for (busy, should_retry) in [(true, true), (false, false)] {
        let mut link = ClientLink::<u64>::new(config(), Instant::now());
        let now = Instant::now();
        assert!(matches!(link.poll(), Some(Action::Connect)));
        link.handle(Event::Connected, now);
        // The same text either way: only the refusal's code decides.
        let text = "too many connections (limit 1)";
        let refusal = match busy {
            true => refusal_busy(text),
            false => refusal_reason(text),
        };
        let frame = Framer::new(HANDSHAKE_MAX_FRAME)
            .encode_handshake(&refusal)
            .unwrap();
        link.handle(Event::Received(&frame), now);
        let actions: Vec<_> = std::iter::from_fn(|| link.poll()).collect();
        let down = actions.iter().any(|a| matches!(a, Action::Down { .. }));
        let failed = actions.iter().any(|a| matches!(a, Action::Failed { .. }));
        assert_eq!((down, failed), (should_retry, !should_retry), "busy {busy}");
    }
}

#[test]
fn a_shipped_program_is_offered_uploaded_and_its_jobs_routed_by_program() {
    let mut p = Pair::new();
    p.pump();
    let info = ProgramInfo {
        id: ProgramId::of(b"program"),
        size: 7,
        target: "x86_64-linux".into(),
        linking: crate::program::Linking::Static,
    };
    p.client.offer(&info);
    p.pump();
    assert_eq!(p.node_offers, vec![info.clone()]);
    p.node(NodeEvent::Offered {
        id: info.id,
        answer: OfferAnswer::Need,
    });
    let out = p.take_out();
    assert!(out.iter().any(|a| matches!(a,
        Action::Offered { id, answer: OfferAnswer::Need } if *id == info.id)));
    assert!(p.client.chunk(info.id, 0, b"program".to_vec()));
    p.pump();
    assert_eq!(p.node_chunks, vec![(0, 7)]);
    // Each chunk's ping came back: the window is open again.
    assert!(p.client.upload_room());
    // Before the program is ready, its job is not the node's to run.
    assert!(!p.client.can_run("mine", "s"));
    let jobs = vec![JobInfo {
        name: "mine".into(),
        signature: "s".into(),
    }];
    p.node(NodeEvent::ProgramReady {
        id: info.id,
        jobs: Ok(jobs),
    });
    assert!(p
        .take_out()
        .iter()
        .any(|a| matches!(a, Action::ProgramReady { .. })));
    assert!(p.client.can_run("mine", "s"));
    let mut mine = run(1, 1);
    mine.name = "mine".into();
    p.client
        .handle(Event::Submit(vec![(mine, 1), (run(2, 1), 2)]), p.now);
    p.pump();
    let programs: Vec<_> = p.node_jobs.iter().map(|j| (j.id, j.program)).collect();
    // The built-in `j` stays built-in; `mine` is the program's.
    assert_eq!(programs, vec![(1, Some(info.id)), (2, None)]);
    // A refusal reaches the client with its reason.
    p.node(NodeEvent::ProgramReady {
        id: info.id,
        jobs: Err("hash mismatch".into()),
    });
    assert!(p.take_out().iter().any(|a| matches!(a,
        Action::ProgramRefused { reason, .. } if reason == "hash mismatch")));
}

#[test]
fn an_upload_waits_for_the_node_to_take_its_chunks() {
    let mut p = Pair::new();
    p.pump();
    let id = ProgramId::of(b"x");
    // The node asked for the program (its one upload on this connection).
    let answer = crate::program::OfferAnswer::Need;
    p.node(NodeEvent::Offered { id, answer });
    p.take_out();
    // The node reads nothing meanwhile: chunks stay in flight.
    for k in 0..UPLOAD_WINDOW as u64 {
        assert!(p.client.upload_room());
        assert!(p.client.chunk(id, k, vec![0; 1]));
    }
    assert!(!p.client.upload_room());
    // Its pongs open the window.
    p.pump();
    assert!(p.client.upload_room());
    assert_eq!(p.node_chunks.len(), UPLOAD_WINDOW);
}

#[test]
fn the_client_keeps_to_the_credit_window_the_node_grants() {
    let mut cfg = config();
    cfg.max_prefetch = 100;
    let mut p = Pair::with(cfg, keys(1));
    p.credit = (3, 1 << 20);
    p.pump();
    let up = p.take_out();
    let Some(Action::Up(hello)) = up.first() else {
        panic!("no Up: {up:?}")
    };
    assert_eq!((hello.credit_jobs, hello.credit_bytes), (3, 1 << 20));
    assert_eq!(
        p.client.free(),
        3,
        "2 workers + prefetch, capped at the credit"
    );
    // Submitted beyond it anyway: the extra jobs never leave the client.
    p.submit(&[(1, 1), (2, 1), (3, 1), (4, 1), (5, 1)]);
    assert_eq!(p.node_jobs.len(), 3);
    assert_eq!(returned(&p.take_out()), vec![(4, false), (5, false)]);
    assert_eq!(p.client.free(), 0);
    // The node, full, still answers heartbeats: back-pressure is not death.
    for _ in 0..10 {
        p.tick();
    }
    assert_eq!(p.client.state(), LinkState::Ready);
    p.answer(1, 1);
    assert_eq!(p.client.free(), 1);
}

#[test]
fn the_byte_window_stops_the_client_until_a_job_leaves() {
    let mut p = Pair::new();
    p.credit = (100, 7);
    p.pump();
    p.take_out();
    // Jobs of 3 bytes: two fit in 7, the third waits in the client.
    p.submit(&[(1, 1), (2, 1), (3, 1)]);
    assert_eq!(p.node_jobs.len(), 2);
    assert_eq!(returned(&p.take_out()), vec![(3, false)]);
    assert_eq!(p.client.free(), 0, "no more until one leaves");
    p.answer(1, 1);
    assert!(p.client.free() > 0);
    p.submit(&[(3, 2)]);
    assert_eq!(p.node_jobs.len(), 3);
    assert!(
        returned(&p.take_out()).is_empty(),
        "the node never handed one back"
    );
}

/// `n` bytes that differ from place to place.
fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31) ^ (i >> 11) as u8 ^ seed)
        .collect()
}

fn submit_args(p: &mut Pair, id: u64, args: Vec<u8>) {
    let mut job = run(id, 1);
    job.args = ByteBuf::from(args);
    p.client.handle(Event::Submit(vec![(job, id)]), p.now);
    p.pump();
}

fn results(actions: Vec<Action<u64>>) -> Vec<(u64, Result<ByteBuf, JobError>)> {
    actions
        .into_iter()
        .filter_map(|a| match a {
            Action::Done { job, result, .. } => Some((job, result)),
            _ => None,
        })
        .collect()
}

#[test]
fn arguments_and_results_larger_than_a_frame_travel_as_streams_exact() {
    // Frames of 1 MiB: 3.5 MiB of arguments and 5 MiB of result cannot
    // travel in one.
    let mut p = Pair::new();
    p.pump();
    let args = pattern(7 << 19, 1);
    submit_args(&mut p, 1, args.clone());
    assert_eq!(p.node_jobs.len(), 1);
    assert_eq!(p.node_jobs[0].args.as_slice(), &args[..]);
    let result = pattern(5 << 20, 2);
    let done = DoneJob {
        id: 1,
        attempt: 1,
        result: Ok(ByteBuf::from(result.clone())),
        exec_ns: 5,
    };
    p.node(NodeEvent::Finished(vec![done]));
    let got = results(p.take_out());
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].1.as_ref().map(|b| b.as_slice()), Ok(&result[..]));
    assert_eq!(p.client.state(), LinkState::Ready);
    assert_eq!(p.client.in_flight(), 0);
}

#[test]
fn small_jobs_and_heartbeats_go_between_the_chunks_of_a_stream() {
    let mut p = Pair::new();
    p.pump();
    p.take_out();
    p.hold_streams = true;
    submit_args(&mut p, 1, pattern(8 << 20, 3));
    assert!(p.client.has_stream());
    assert!(p.node_jobs.is_empty(), "nothing goes before it is pulled");
    // One chunk: a frame of at most the frame limit.
    assert!(p.client.pull_stream());
    assert!(p.client.pull_stream());
    let mut sent = 0;
    while let Some(a) = p.client.poll() {
        if let Action::Send(bytes) = a {
            assert!(bytes.len() <= (1 << 20) + 64, "{}", bytes.len());
            sent += 1;
            if let Some(node) = &mut p.node {
                node.handle(NodeEvent::Received(&bytes), p.now);
            }
        }
    }
    assert_eq!(sent, 2, "the start and one chunk");
    // A small job and a ping overtake the rest of the stream.
    p.submit(&[(2, 1)]);
    assert_eq!(p.node_jobs.iter().map(|j| j.id).collect::<Vec<_>>(), [2]);
    p.tick();
    p.tick();
    assert!(p.client.rtt().is_some(), "the ping was answered");
    p.hold_streams = false;
    p.pump();
    let ids: Vec<u64> = p.node_jobs.iter().map(|j| j.id).collect();
    assert_eq!(ids, [2, 1]);
    assert_eq!(p.node_jobs[1].args.as_slice(), &pattern(8 << 20, 3)[..]);
}

#[test]
fn arguments_over_the_node_limit_fail_before_any_byte_and_the_link_serves_on() {
    let mut p = Pair::new();
    p.node_max_payload = 2 << 20;
    p.pump();
    p.take_out();
    submit_args(&mut p, 1, pattern(3 << 20, 4));
    let got = results(p.take_out());
    assert_eq!(got.len(), 1);
    let err = got[0].1.as_ref().unwrap_err();
    assert_eq!(err.kind, ErrorKind::Codec);
    assert!(err.message.contains("2097152-byte limit"), "{err}");
    assert!(!p.client.has_stream(), "nothing queued");
    assert_eq!(p.client.in_flight(), 0);
    submit_args(&mut p, 2, pattern(3 << 19, 5));
    assert_eq!(p.node_jobs.iter().map(|j| j.id).collect::<Vec<_>>(), [2]);
    assert_eq!(p.client.state(), LinkState::Ready);
}

#[test]
fn a_result_stream_that_stalls_loses_the_node_even_while_pongs_arrive() {
    let mut p = Pair::new();
    p.pump();
    p.submit(&[(1, 1)]);
    p.take_out();
    p.hold_streams = true;
    let done = DoneJob {
        id: 1,
        attempt: 1,
        result: Ok(ByteBuf::from(pattern(4 << 20, 6))),
        exec_ns: 5,
    };
    p.node(NodeEvent::Finished(vec![done]));
    // The node sends the start and one chunk, then nothing more of it.
    if let Some(node) = &mut p.node {
        assert!(node.pull_stream() && node.pull_stream());
    }
    p.pump();
    let started = p.now;
    for _ in 0..100 {
        if p.client.state() != LinkState::Ready {
            break;
        }
        p.tick();
    }
    let idle = p.now.saturating_duration_since(started);
    assert!(idle >= 30 * SECOND && idle < 32 * SECOND, "{idle:?}");
    let out = p.take_out();
    let reason = out.iter().find_map(|a| match a {
        Action::Down { reason, .. } => Some(reason.clone()),
        _ => None,
    });
    assert!(
        reason.as_deref().is_some_and(|r| r.contains("no progress")),
        "{out:?}"
    );
    assert_eq!(
        returned(&out),
        vec![(1, true)],
        "the job runs again elsewhere"
    );
}

#[test]
fn a_cancelled_job_aborts_its_stream_and_the_node_frees_it() {
    let mut p = Pair::new();
    p.pump();
    p.hold_streams = true;
    submit_args(&mut p, 1, pattern(4 << 20, 7));
    assert!(p.client.pull_stream() && p.client.pull_stream());
    p.pump();
    p.client.handle(Event::Cancel(1), p.now);
    assert!(!p.client.has_stream());
    p.hold_streams = false;
    p.pump();
    assert!(p.node_jobs.is_empty());
    // The node took the abort: the next stream completes.
    submit_args(&mut p, 2, pattern(2 << 20, 8));
    assert_eq!(p.node_jobs.iter().map(|j| j.id).collect::<Vec<_>>(), [2]);
    assert_eq!(p.client.state(), LinkState::Ready);
}

#[test]
fn a_node_that_hands_jobs_back_gets_none_until_its_pause_ends_or_a_result_comes() {
    let mut p = Pair::new();
    p.pump();
    p.submit(&[(1, 1), (2, 1), (3, 1), (4, 1)]);
    // Over its memory, the node hands job 2 back: a 1 ms pause.
    p.node(NodeEvent::GiveBack(vec![(2, 1)]));
    assert_eq!(returned(&p.take_out()), vec![(2, false)]);
    assert_eq!(p.client.free(), 0, "no job goes out during the pause");
    assert_eq!(p.client.poll_timeout(), Some(p.now + REFUSAL_PAUSE));
    p.tick();
    assert!(p.client.free() > 0, "the pause ended");
    // Handed back again and again: the pause doubles (2, then 4 ms).
    p.node(NodeEvent::GiveBack(vec![(3, 1)]));
    assert_eq!(p.client.poll_timeout(), Some(p.now + 2 * REFUSAL_PAUSE));
    p.tick();
    p.node(NodeEvent::GiveBack(vec![(4, 1)]));
    assert_eq!(p.client.poll_timeout(), Some(p.now + 4 * REFUSAL_PAUSE));
    assert_eq!(p.client.free(), 0);
    // A result shows the node made room: the pause ends at once and the
    // next one starts again from 1 ms.
    p.answer(1, 1);
    assert!(p.client.free() > 0, "a result ends the pause");
    p.submit(&[(5, 1)]);
    p.node(NodeEvent::GiveBack(vec![(5, 1)]));
    assert_eq!(p.client.poll_timeout(), Some(p.now + REFUSAL_PAUSE));
    assert_eq!(
        returned(&p.take_out()),
        vec![(3, false), (4, false), (5, false)]
    );
}

#[test]
fn the_refusal_pause_stops_doubling_at_its_cap() {
    let mut p = Pair::new();
    p.pump();
    let mut pauses = Vec::new();
    for id in 1..=10 {
        p.tick();
        p.submit(&[(id, 1)]);
        p.node(NodeEvent::GiveBack(vec![(id, 1)]));
        pauses.push(p.client.poll_timeout().map(|t| t - p.now));
    }
    let ms = |n: u64| Some(Duration::from_millis(n));
    assert_eq!(
        pauses,
        vec![
            ms(1),
            ms(2),
            ms(4),
            ms(8),
            ms(16),
            ms(32),
            ms(64),
            ms(100),
            ms(100),
            ms(100)
        ]
    );
}

/// A shared value's id and bytes, as a client's `Shared` has them.
fn shared_value(len: usize, seed: u8) -> (SharedId, Arc<Vec<u8>>) {
    let bytes = pattern(len, seed);
    (SharedId::of(&bytes), Arc::new(bytes))
}

fn submit_naming(p: &mut Pair, id: u64, shared: &[SharedId]) {
    let mut job = run(id, 1);
    job.shared = shared.to_vec();
    p.client.handle(Event::Submit(vec![(job, id)]), p.now);
    p.pump();
}

#[test]
fn a_shared_value_goes_once_and_before_the_jobs_that_name_it() {
    let mut p = Pair::new();
    p.pump();
    // 3 MiB: a stream of several chunks.
    let (id, bytes) = shared_value(3 << 20, 7);
    p.hold_streams = true;
    assert!(p.client.needs_share(&id));
    p.client.share(id, Arc::clone(&bytes)).unwrap();
    assert!(!p.client.needs_share(&id));
    submit_naming(&mut p, 1, &[id]);
    submit_naming(&mut p, 2, &[]);
    // The job that does not name it goes at once; the other waits.
    assert_eq!(p.node_order, vec![Ok(2)]);
    assert_eq!(p.client.in_flight(), 2);
    p.hold_streams = false;
    p.pump();
    submit_naming(&mut p, 3, &[id]);
    assert_eq!(
        p.node_order,
        vec![Ok(2), Err((id, 3 << 20)), Ok(1), Ok(3)],
        "the value once, before the jobs that name it"
    );
    assert_eq!(p.client.shared_sent(), (1, 3 << 20));
    // Asked again, it is sent again; not while it is on its way.
    p.node(NodeEvent::NeedShared {
        ids: vec![id],
        jobs: vec![(3, 1)],
    });
    assert_eq!(returned(&p.take_out()), vec![(3, false)]);
    assert!(p.client.needs_share(&id));
    p.client.share(id, bytes).unwrap();
    p.pump();
    assert_eq!(p.client.shared_sent(), (2, 6 << 20));
}

#[test]
fn a_dropped_shared_value_is_freed_on_the_node_and_forgotten_on_reconnection() {
    let mut p = Pair::new();
    p.pump();
    let (a, bytes_a) = shared_value(100, 1);
    let (b, bytes_b) = shared_value(2 << 20, 2);
    p.client.share(a, bytes_a).unwrap();
    p.pump();
    // `b` still going out when the client gives it up: its stream stops.
    p.hold_streams = true;
    p.client.share(b, bytes_b).unwrap();
    p.pump();
    p.client.unshare(&[a, b]);
    p.hold_streams = false;
    p.pump();
    assert_eq!(p.node_unshared, vec![a, b]);
    assert_eq!(p.node_order, vec![Err((a, 100))], "b never arrived");
    assert_eq!(p.client.shared_ids().count(), 0);
    // A new connection holds nothing: values go again.
    let (c, bytes_c) = shared_value(10, 3);
    p.client.share(c, bytes_c).unwrap();
    p.pump();
    p.node(NodeEvent::TransportClosed(TransportEnd::ClosedByPeer));
    assert!(p.client.needs_share(&c) || p.client.state() != LinkState::Ready);
    p.tick();
    p.pump();
    assert_eq!(p.client.state(), LinkState::Ready);
    assert!(p.client.needs_share(&c));
}

#[test]
fn a_cancelled_job_waiting_for_a_shared_value_never_goes() {
    let mut p = Pair::new();
    p.pump();
    let (id, bytes) = shared_value(2 << 20, 9);
    p.hold_streams = true;
    p.client.share(id, bytes).unwrap();
    submit_naming(&mut p, 1, &[id]);
    p.client.handle(Event::Cancel(1), p.now);
    p.hold_streams = false;
    p.pump();
    assert_eq!(p.node_order, vec![Err((id, 2 << 20))]);
    assert_eq!(p.client.in_flight(), 0);
}

#[test]
fn streamed_arguments_wait_for_the_send_window_while_the_node_does_not_read() {
    const MIB: usize = 1 << 20;
    let mut cfg = config();
    cfg.send_window = 3 * MIB as u64;
    let mut p = Pair::with(cfg, keys(1));
    p.pump();
    p.take_out();
    // The node reads nothing: no stream frame is pulled.
    p.hold_streams = true;
    let free = p.client.free();
    assert!(free >= 4, "{free}");
    // Four jobs of 2 MiB (over a 1 MiB frame: streams) in one batch: the
    // first two are queued (0, then 2 MiB unsent: under the window); the
    // others go back unsent, and the link takes nothing more.
    let jobs = (1..=4)
        .map(|id| {
            let mut job = run(id, 1);
            job.args = ByteBuf::from(pattern(2 * MIB, id as u8));
            (job, id)
        })
        .collect();
    p.client.handle(Event::Submit(jobs), p.now);
    p.pump();
    assert!(p.client.is_streamed(2 * MIB) && !p.client.is_streamed(1000));
    assert_eq!(returned(&p.take_out()), vec![(3, false), (4, false)]);
    assert_eq!(p.client.stream_bytes(), 4 * MIB as u64);
    assert_eq!(p.client.free(), 0);
    // The driver's outbox is full too: nothing is framed, nothing taken.
    assert!(!p.client.send_more(crate::window::PULL_BELOW));
    assert_eq!(p.client.free(), 0);
    // The node reads again: both arrive whole, and the link takes jobs.
    p.hold_streams = false;
    p.pump();
    let ids: Vec<u64> = p.node_jobs.iter().map(|j| j.id).collect();
    assert_eq!(ids, [1, 2]);
    assert_eq!(p.node_jobs[1].args.as_slice(), &pattern(2 * MIB, 2)[..]);
    assert_eq!(p.client.stream_bytes(), 0);
    assert!(p.client.free() > 0);
    // An outbox at the window alone holds new jobs back as well.
    assert!(!p.client.send_more(3 * MIB));
    assert_eq!(p.client.free(), 0);
    assert!(!p.client.send_more(0));
    assert!(p.client.free() > 0);
}
