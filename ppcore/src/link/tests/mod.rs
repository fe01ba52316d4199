//! The client link against the node's link, on a fake clock: no sockets,
//! no sleeps. Here the link's life (handshake, heartbeats, losses, backoff);
//! `frames`: what the wire may carry, and shipping a program; `sending`:
//! windows, streams and shared values; `rules`: the driver's rules the link
//! keeps (write stall, ended-job sweep, offer and upload).

mod frames;
mod resume;
mod rules;
mod sending;

use super::*;
use crate::job::error::{ErrorKind, JobError};
use crate::job::shared::SharedId;
use crate::link::framing::Framer;
use crate::link::node::reason::TransportEnd;
use crate::link::node::{NodeAction, NodeEvent, NodeLink, NodeLinkConfig};
use crate::session::handshake::PROTOCOL_VERSION;
use crate::session::key::{Key, KeySet};
use crate::wire::messages::{DoneJob, JobInfo, NodeMsg, RunJob};
use crate::wire::program::{OfferAnswer, ProgramId, ProgramInfo};
use proptest::prelude::*;
use serde_bytes::ByteBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

const SECOND: Duration = Duration::from_secs(1);

fn key(n: u8) -> Key {
    Key::from_bytes([n; 32])
}

fn keys(n: u8) -> KeySet {
    KeySet::one(key(n))
}

fn config() -> LinkConfig {
    LinkConfig::for_tests()
}

/// Everything the client link hands out, in one list as the tests read it:
/// bytes, socket commands and events, reasons as their display text.
#[derive(Debug)]
#[allow(dead_code)] // what the link gave, whether a test reads it or not
enum Action<T> {
    Connect,
    Send(Vec<u8>),
    Disconnect,
    Up(NodeHello),
    Draining,
    Down {
        reason: String,
        retry_in: Option<Duration>,
    },
    Failed {
        reason: String,
    },
    Done {
        job: T,
        result: Result<ByteBuf, JobError>,
        exec: Duration,
    },
    Offered {
        id: ProgramId,
        answer: OfferAnswer,
    },
    ProgramReady {
        id: ProgramId,
        jobs: Vec<JobInfo>,
    },
    ProgramRefused {
        id: ProgramId,
        reason: String,
    },
    Returned {
        job: T,
        lost: bool,
    },
}

/// Drains a client link's outputs: bytes first, then socket commands, then
/// events (the order a driver carries them out in).
trait PollAll<T> {
    fn poll(&mut self) -> Option<Action<T>>;
}

impl<T> PollAll<T> for ClientLink<T> {
    fn poll(&mut self) -> Option<Action<T>> {
        if let Some(bytes) = self.poll_transmit() {
            return Some(Action::Send(bytes));
        }
        if let Some(io) = self.poll_io() {
            return Some(match io {
                LinkIo::Connect => Action::Connect,
                LinkIo::Disconnect => Action::Disconnect,
            });
        }
        Some(match self.poll_event()? {
            LinkEvent::Up(hello) => Action::Up(hello),
            LinkEvent::Draining => Action::Draining,
            LinkEvent::Down { reason, retry_in } => Action::Down {
                reason: reason.to_string(),
                retry_in,
            },
            LinkEvent::Failed { reason } => Action::Failed {
                reason: reason.to_string(),
            },
            LinkEvent::Done {
                job, result, exec, ..
            } => Action::Done { job, result, exec },
            LinkEvent::Offered { id, answer } => Action::Offered { id, answer },
            LinkEvent::ProgramReady { id, jobs } => Action::ProgramReady { id, jobs },
            LinkEvent::ProgramRefused { id, reason } => Action::ProgramRefused { id, reason },
            LinkEvent::Returned { job, lost } => Action::Returned { job, lost },
        })
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
        reach: None,
        max_payload: 0,
        offer: None,
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
        keep: None,
        journal: None,
        request: None,
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
    /// The capabilities the node's `Welcome` lists.
    node_caps: Vec<String>,
    /// What the node answers a `Resume` with; the runs named, the keys
    /// said recorded, and the reclaims (job id, key) asked of it.
    node_orphans: Vec<crate::wire::run::JobKey>,
    node_runs: Vec<crate::wire::run::RunId>,
    node_recorded: Vec<crate::wire::run::JobKey>,
    node_reclaims: Vec<(u64, crate::wire::run::JobKey)>,
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
            node_max_payload: crate::wire::stream::DEFAULT_MAX_PAYLOAD,
            node_window: 1 << 30,
            node_order: Vec::new(),
            node_unshared: Vec::new(),
            node_caps: Vec::new(),
            node_orphans: Vec::new(),
            node_runs: Vec::new(),
            node_recorded: Vec::new(),
            node_reclaims: Vec::new(),
        }
    }

    fn node_config(&self) -> NodeLinkConfig {
        NodeLinkConfig {
            keys: self.node_keys.clone(),
            credit_jobs: self.credit.0,
            credit_bytes: self.credit.1,
            max_payload: self.node_max_payload,
            send_window: self.node_window,
            ..NodeLinkConfig::for_tests()
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
                            let mut hello = welcome(2);
                            if let NodeMsg::Welcome { caps, .. } = &mut hello {
                                caps.clone_from(&self.node_caps);
                            }
                            let node = NodeLink::new(self.node_config(), hello, self.now);
                            self.node = Some(node);
                            self.client.handle(Event::Connected, self.now);
                        } else {
                            self.client.handle(
                                Event::ConnectFailed(TransportError::Connect("busy".into())),
                                self.now,
                            );
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
                        NodeAction::Resume(run) => {
                            self.node_runs.push(run);
                            node.handle(NodeEvent::Orphans(self.node_orphans.clone()), self.now)
                        }
                        NodeAction::Recorded(keys) => self.node_recorded.extend(keys),
                        NodeAction::Reclaim { id, key, .. } => self.node_reclaims.push((id, key)),
                        NodeAction::StatusWanted
                        | NodeAction::Authenticated
                        | NodeAction::Export(_)
                        | NodeAction::FetchExported { .. }
                        | NodeAction::Pull { .. }
                        | NodeAction::UploadRefused { .. } => {}
                        // Spill is off here (no room is set).
                        NodeAction::Spill { .. }
                        | NodeAction::ReadBack { .. }
                        | NodeAction::DropSpilled(_) => {}
                    }
                }
            }
            if node_closed {
                self.node = None;
                self.client.handle(
                    Event::TransportClosed(TransportError::Read("node closed".into())),
                    self.now,
                );
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
            kept: None,
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
    p.client.handle(
        Event::TransportClosed(TransportError::Read("reset".into())),
        p.now,
    );
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
    p.client.handle(
        Event::TransportClosed(TransportError::Read("reset".into())),
        p.now,
    );
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
                    p.client.handle(Event::TransportClosed(TransportError::Read("reset".into())), p.now);
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
        link.handle(
            Event::ConnectFailed(TransportError::Connect("refused".into())),
            now,
        );
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
