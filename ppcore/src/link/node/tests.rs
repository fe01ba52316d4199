//! The node's side of a connection on a fake clock.

use super::reason::TransportEnd;
use super::*;
use crate::job::error::{ErrorKind, JobError};
use crate::job::shared::OverSharedMax;
use crate::link::framing::Framer;
use crate::session::error::SecureError;
use crate::session::handshake::ClientHandshake;
use crate::session::handshake::PROTOCOL_VERSION;
use crate::session::key::Key;
use crate::wire::messages::JobInfo;
use crate::wire::program::ProgramInfo;
use crate::wire::stream::StreamFrame;
use serde_bytes::ByteBuf;

const SECOND: Duration = Duration::from_secs(1);

fn key(n: u8) -> Key {
    Key::from_bytes([n; 32])
}

fn link_with(keys: KeySet, now: Instant) -> NodeLink {
    link_windowed(keys, 1 << 30, now)
}

fn link_windowed(keys: KeySet, send_window: u64, now: Instant) -> NodeLink {
    let config = NodeLinkConfig {
        keys,
        heartbeat: SECOND,
        max_frame: 8192,
        credit_jobs: 2,
        credit_bytes: 100,
        send_window,
        ..NodeLinkConfig::for_tests()
    };
    let welcome = NodeMsg::Welcome {
        node_id: "n".into(),
        version: "v".into(),
        workers: 1,
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
    };
    NodeLink::new(config, welcome, now)
}

fn link(now: Instant) -> NodeLink {
    link_with(KeySet::one(key(1)), now)
}

/// The client's end of the wire, as a test sees it.
struct Client {
    framer: Framer,
    hs: Option<ClientHandshake>,
    /// Why the node refused the handshake, if it did.
    refused: Option<SecureError>,
}

impl Client {
    /// Starts a handshake with `key`; returns the first frame.
    fn start(key: &Key) -> (Self, Vec<u8>) {
        let (hs, first) = ClientHandshake::start(key, &[]).unwrap();
        let framer = Framer::new(1 << 20);
        let frame = framer.encode_handshake(&first).unwrap();
        let me = Client {
            framer,
            hs: Some(hs),
            refused: None,
        };
        (me, frame)
    }

    /// Every message the node sent, and every event it gave its driver.
    fn drain(&mut self, l: &mut NodeLink) -> (Vec<NodeMsg>, Vec<NodeAction>) {
        let (mut sent, mut other) = (Vec::new(), Vec::new());
        loop {
            while let Some(bytes) = l.poll_transmit() {
                self.framer.push(&bytes);
                if !self.framer.is_secure() {
                    let answer = self.framer.decode_handshake().unwrap().unwrap();
                    let mut hs = self.hs.take().unwrap();
                    match hs.read(&answer) {
                        Ok(_) => self.framer.secure(hs.finish().unwrap()),
                        Err(e) => self.refused = Some(e),
                    }
                    continue;
                }
                let msg = self.framer.decode::<NodeMsg>().unwrap().unwrap();
                assert_eq!(self.framer.buffered(), 0, "one frame per transmit");
                sent.push(msg);
            }
            match l.poll_event() {
                Some(a) => other.push(a),
                None => return (sent, other),
            }
        }
    }

    fn frame(&mut self, msg: &ClientMsg) -> Vec<u8> {
        self.framer.encode(msg).unwrap()
    }

    fn feed(&mut self, l: &mut NodeLink, msg: &ClientMsg, now: Instant) {
        let frame = self.frame(msg);
        l.handle(NodeEvent::Received(&frame), now);
    }
}

/// A link through the handshake, and the client's end.
fn ready(now: Instant) -> (NodeLink, Client) {
    ready_on(link(now), now)
}

/// `l` through the handshake, and the client's end.
fn ready_on(mut l: NodeLink, now: Instant) -> (NodeLink, Client) {
    let (mut c, first) = Client::start(&key(1));
    l.handle(NodeEvent::Received(&first), now);
    let (sent, other) = c.drain(&mut l);
    assert!(
        matches!(
            sent[..],
            [NodeMsg::Welcome {
                heartbeat_ms: 1000,
                credit_jobs,
                credit_bytes,
                ..
            }] if credit_jobs as usize == l.config.credit_jobs
                && credit_bytes as usize == l.config.credit_bytes
        ),
        "{sent:?}"
    );
    assert!(other.is_empty(), "not authenticated before a sealed frame");
    c.feed(&mut l, &ClientMsg::Ping(0), now);
    let (sent, other) = c.drain(&mut l);
    assert_eq!(sent, vec![NodeMsg::Pong(0)]);
    assert_eq!(other, vec![NodeAction::Authenticated]);
    (l, c)
}

/// The reason of the node's closing, from its actions.
fn closed_because(other: &[NodeAction]) -> String {
    match other {
        [.., NodeAction::Closed(r)] if !r.is_goodbye() => r.to_string(),
        _ => panic!("not closed with a reason: {other:?}"),
    }
}

#[test]
fn a_silent_client_is_closed_after_exactly_three_intervals() {
    let t0 = Instant::now();
    let (mut l, mut c) = ready(t0);
    c.feed(&mut l, &ClientMsg::Ping(1), t0 + SECOND);
    assert_eq!(l.poll_timeout(), Some(t0 + 4 * SECOND));
    l.handle(NodeEvent::Timer, t0 + 4 * SECOND - Duration::from_millis(1));
    assert!(!l.is_closed());
    l.handle(NodeEvent::Timer, t0 + 4 * SECOND);
    let (sent, other) = c.drain(&mut l);
    assert!(
        matches!(&sent[..], [NodeMsg::Pong(1), NodeMsg::Reject { reason, .. }] if reason.contains("silent"))
    );
    assert!(matches!(&other[..], [NodeAction::Closed(r)] if !r.is_goodbye()));
    assert!(l.is_closed());
    assert!(l.authenticated(), "it did, before it went silent");
}

#[test]
fn a_client_that_does_not_authenticate_in_time_is_closed() {
    let t0 = Instant::now();
    let mut l = link(t0);
    let (mut c, _) = Client::start(&key(1));
    l.handle(NodeEvent::Timer, t0 + 5 * SECOND);
    let (sent, other) = c.drain(&mut l);
    assert!(sent.is_empty());
    assert!(matches!(&c.refused, Some(SecureError::Refused(r)) if r.contains("handshake")));
    assert!(closed_because(&other).contains("handshake"));
    assert!(!l.authenticated());
}

#[test]
fn a_client_that_answers_but_never_seals_a_frame_is_closed_unauthenticated() {
    // A replayed first message: the node answers, but the replayer cannot
    // seal a frame, so it never counts as authenticated.
    let t0 = Instant::now();
    let mut l = link(t0);
    let (mut c, first) = Client::start(&key(1));
    l.handle(NodeEvent::Received(&first), t0);
    let (_, other) = c.drain(&mut l);
    assert!(other.is_empty());
    assert!(!l.is_ready());
    l.handle(NodeEvent::Timer, t0 + 5 * SECOND);
    let (_, other) = c.drain(&mut l);
    assert!(closed_because(&other).contains("handshake"));
    assert!(!other.contains(&NodeAction::Authenticated));
}

#[test]
fn another_protocol_version_is_refused_naming_both() {
    let t0 = Instant::now();
    let mut l = link(t0);
    let (mut c, mut first) = Client::start(&key(1));
    // The clear header: frame length, "pp-rs", then the version.
    first[9..13].copy_from_slice(&(PROTOCOL_VERSION + 1).to_be_bytes());
    l.handle(NodeEvent::Received(&first), t0);
    let (_, other) = c.drain(&mut l);
    let reason = closed_because(&other);
    assert!(
        reason.contains(&format!("version {}", PROTOCOL_VERSION + 1)),
        "{reason}"
    );
    assert!(
        reason.contains(&format!("version {PROTOCOL_VERSION}")),
        "{reason}"
    );
    assert!(matches!(c.refused, Some(SecureError::Version { .. })));
    assert!(l.is_closed());
}

#[test]
fn a_wrong_key_is_refused_and_a_rollover_accepts_either() {
    let t0 = Instant::now();
    let mut l = link(t0);
    let (mut c, first) = Client::start(&key(2));
    l.handle(NodeEvent::Received(&first), t0);
    let (sent, other) = c.drain(&mut l);
    assert!(sent.is_empty());
    assert_eq!(c.refused, Some(SecureError::WrongKey));
    assert!(closed_because(&other).contains("wrong key"));

    for k in [1, 2] {
        let mut l = link_with(KeySet::new(vec![key(1), key(2)]).unwrap(), t0);
        let (mut c, first) = Client::start(&key(k));
        l.handle(NodeEvent::Received(&first), t0);
        c.drain(&mut l);
        c.feed(&mut l, &ClientMsg::Ping(0), t0);
        let (_, other) = c.drain(&mut l);
        assert_eq!(other, vec![NodeAction::Authenticated], "key {k}");
    }
}

#[test]
fn a_big_frame_before_authentication_is_refused_before_its_body() {
    let t0 = Instant::now();
    let mut l = link(t0);
    let (mut c, _) = Client::start(&key(1));
    l.handle(NodeEvent::Received(&5000u32.to_be_bytes()), t0);
    c.drain(&mut l);
    assert!(l.is_closed());
}

#[test]
fn tampered_injected_and_replayed_frames_close_the_connection_unrun() {
    let run = |id| {
        ClientMsg::Run(vec![RunJob {
            id,
            attempt: 1,
            name: "j".into(),
            args: ByteBuf::new(),
            program: None,
            shared: Vec::new(),
            keep: None,
            journal: None,
            request: None,
        }])
    };
    // modified
    let t0 = Instant::now();
    let (mut l, mut c) = ready(t0);
    let mut frame = c.frame(&run(1));
    frame[8] ^= 1;
    l.handle(NodeEvent::Received(&frame), t0);
    let (_, other) = c.drain(&mut l);
    assert!(closed_because(&other).contains("failed authentication"));
    assert!(!other.iter().any(|a| matches!(a, NodeAction::Run(_))));
    // injected: a plaintext frame
    let (mut l, mut c) = ready(t0);
    let plain = crate::wire::frame::encode_frame(&run(2)).unwrap();
    l.handle(NodeEvent::Received(&plain), t0);
    let (_, other) = c.drain(&mut l);
    assert!(closed_because(&other).contains("failed authentication"));
    assert!(!other.iter().any(|a| matches!(a, NodeAction::Run(_))));
    // replayed: the job runs once, the copy closes the connection
    let (mut l, mut c) = ready(t0);
    let frame = c.frame(&run(3));
    l.handle(NodeEvent::Received(&frame), t0);
    l.handle(NodeEvent::Received(&frame), t0);
    let (_, other) = c.drain(&mut l);
    let runs = other
        .iter()
        .filter(|a| matches!(a, NodeAction::Run(_)))
        .count();
    assert_eq!(runs, 1);
    assert!(closed_because(&other).contains("failed authentication"));
}

#[test]
fn a_draining_node_still_reads_control_frames_and_gives_jobs_back() {
    let t0 = Instant::now();
    let (mut l, mut c) = ready(t0);
    l.handle(NodeEvent::Drain, t0);
    let run = RunJob {
        id: 1,
        attempt: 2,
        name: "j".into(),
        args: ByteBuf::new(),
        program: None,
        shared: Vec::new(),
        keep: None,
        journal: None,
        request: None,
    };
    c.feed(&mut l, &ClientMsg::Run(vec![run]), t0);
    c.feed(&mut l, &ClientMsg::Ping(5), t0);
    c.feed(&mut l, &ClientMsg::Cancel { id: 9 }, t0);
    let (sent, other) = c.drain(&mut l);
    assert_eq!(
        sent,
        vec![
            NodeMsg::Draining,
            NodeMsg::Returned(vec![(1, 2)]),
            NodeMsg::Pong(5)
        ]
    );
    // Job 9 is not in flight here: its cancel is read and dropped.
    assert_eq!(other, vec![]);
    l.handle(NodeEvent::Stop, t0);
    let (sent, other) = c.drain(&mut l);
    assert_eq!(sent, vec![NodeMsg::Goodbye]);
    assert_eq!(other, vec![NodeAction::Closed(NodeCloseReason::Goodbye)]);
}

#[test]
fn results_over_a_frame_stream_when_pulled_and_over_the_clients_limit_fail() {
    let t0 = Instant::now();
    let (mut l, mut c) = ready(t0);
    c.feed(
        &mut l,
        &ClientMsg::Limits {
            max_payload: 20_000,
        },
        t0,
    );
    let done = |id, n| DoneJob {
        id,
        attempt: 1,
        result: Ok(ByteBuf::from(vec![id as u8; n])),
        exec_ns: 0,
        kept: None,
    };
    l.handle(
        NodeEvent::Finished(vec![done(1, 10_000), done(2, 10), done(4, 30_000)]),
        t0,
    );
    // Inline first: the small result, and the refusal of the one over the
    // client's limit; the large one waits to be pulled.
    let (sent, _) = c.drain(&mut l);
    let inline: Vec<DoneJob> = sent
        .into_iter()
        .flat_map(|m| match m {
            NodeMsg::Done(d) => d,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(inline.len(), 2);
    assert!(inline[0].result.is_ok());
    let err = inline[1].result.as_ref().unwrap_err();
    assert_eq!((inline[1].id, err.kind), (4, ErrorKind::Codec));
    assert!(err.message.contains("20000-byte limit"), "{err}");
    assert!(l.has_stream());
    let mut frames = Vec::new();
    for _ in 0..10 {
        if !l.pull_stream() {
            break;
        }
        frames.extend(c.drain(&mut l).0);
    }
    assert!(!l.has_stream());
    let mut bytes = Vec::new();
    let mut start = None;
    for m in &frames[..frames.len() - 1] {
        match m {
            NodeMsg::Stream(StreamFrame::Start { id, len }) => start = Some((*id, *len)),
            NodeMsg::Stream(StreamFrame::Chunk { data, .. }) => bytes.extend_from_slice(data),
            other => panic!("{other:?}"),
        }
    }
    let (id, len) = start.unwrap();
    assert_eq!((len, bytes), (10_000, vec![1u8; 10_000]));
    match frames.last() {
        Some(NodeMsg::DoneStreamed { stream, job }) => {
            assert_eq!((*stream, job.id), (id, 1));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_stream_that_lies_about_its_length_or_stalls_closes_the_connection() {
    let t0 = Instant::now();
    let (mut l, mut c) = ready(t0);
    c.feed(
        &mut l,
        &ClientMsg::Stream(StreamFrame::Start { id: 1, len: 10 }),
        t0,
    );
    let chunk = StreamFrame::Chunk {
        id: 1,
        offset: 0,
        data: ByteBuf::from(vec![0u8; 11]),
    };
    c.feed(&mut l, &ClientMsg::Stream(chunk), t0);
    let (sent, other) = c.drain(&mut l);
    assert!(
        matches!(&sent[..], [NodeMsg::Reject { reason, .. }] if reason.contains("11 bytes sent, 10 announced")),
        "{sent:?}"
    );
    assert!(matches!(&other[..], [NodeAction::Closed(r)] if !r.is_goodbye()));
    // Stalls: pings keep the client alive, the stream is dropped anyway.
    let (mut l, mut c) = ready(t0);
    c.feed(
        &mut l,
        &ClientMsg::Stream(StreamFrame::Start { id: 1, len: 100 }),
        t0,
    );
    let mut now = t0;
    for n in 1..=40 {
        now += SECOND;
        c.feed(&mut l, &ClientMsg::Ping(n), now);
        if l.poll_timeout().is_some_and(|t| t <= now) {
            l.handle(NodeEvent::Timer, now);
        }
        if l.is_closed() {
            break;
        }
    }
    assert!(l.is_closed());
    assert_eq!(now, t0 + 31 * SECOND, "just past the 30 s stall limit");
    let (sent, _) = c.drain(&mut l);
    assert!(
        matches!(sent.last(), Some(NodeMsg::Reject { reason, .. }) if reason.contains("no progress")),
        "{sent:?}"
    );
}

#[test]
fn garbage_before_the_handshake_closes_with_a_reason() {
    let t0 = Instant::now();
    let mut l = link(t0);
    let (mut c, _) = Client::start(&key(1));
    l.handle(NodeEvent::Received(&[0, 0, 0, 3, 0xc1, 0xc1, 0xc1]), t0);
    let (sent, other) = c.drain(&mut l);
    assert!(sent.is_empty());
    assert!(c.refused.is_some());
    assert!(closed_because(&other).contains("handshake"));
}

fn job(id: u64, size: usize) -> RunJob {
    RunJob {
        id,
        attempt: 1,
        name: "j".into(),
        args: ByteBuf::from(vec![0u8; size]),
        program: None,
        shared: Vec::new(),
        keep: None,
        journal: None,
        request: None,
    }
}

fn ids(other: &[NodeAction]) -> Vec<u64> {
    other
        .iter()
        .flat_map(|a| match a {
            NodeAction::Run(jobs) => jobs.iter().map(|j| j.id).collect(),
            _ => vec![],
        })
        .collect()
}

#[test]
fn jobs_beyond_the_credit_window_are_handed_back_and_control_frames_still_read() {
    let t0 = Instant::now();
    let (mut l, mut c) = ready(t0);
    // Window: 2 jobs, 100 bytes. Three jobs in one frame: the third goes back.
    c.feed(
        &mut l,
        &ClientMsg::Run(vec![job(1, 10), job(2, 10), job(3, 10)]),
        t0,
    );
    c.feed(&mut l, &ClientMsg::Ping(7), t0);
    c.feed(&mut l, &ClientMsg::Cancel { id: 1 }, t0);
    let (sent, other) = c.drain(&mut l);
    assert_eq!(
        sent,
        vec![NodeMsg::Returned(vec![(3, 1)]), NodeMsg::Pong(7)]
    );
    assert_eq!(ids(&other), vec![1, 2]);
    assert!(other.contains(&NodeAction::Cancel(1)));
    assert_eq!(l.credit_used(), (2, 20));
    // A flood while full grows nothing: every job goes back.
    for id in 10..1010 {
        c.feed(&mut l, &ClientMsg::Run(vec![job(id, 1)]), t0);
    }
    let (sent, other) = c.drain(&mut l);
    assert_eq!(sent.len(), 1000);
    assert!(ids(&other).is_empty());
    assert_eq!(l.credit_used(), (2, 20));
    // Credit comes back as jobs end: a result, and a cancelled job skipped.
    let done = DoneJob {
        id: 2,
        attempt: 1,
        result: Ok(ByteBuf::new()),
        exec_ns: 0,
        kept: None,
    };
    l.handle(NodeEvent::Finished(vec![done]), t0);
    l.handle(NodeEvent::Ended(vec![1]), t0);
    assert_eq!(l.credit_used(), (0, 0));
    c.feed(&mut l, &ClientMsg::Run(vec![job(20, 1)]), t0);
    let (_, other) = c.drain(&mut l);
    assert_eq!(ids(&other), vec![20]);
}

#[test]
fn the_byte_window_holds_except_for_one_job_alone() {
    let t0 = Instant::now();
    let (mut l, mut c) = ready(t0);
    // 100 bytes: one job of 500 alone is let in (else it could never run)...
    c.feed(&mut l, &ClientMsg::Run(vec![job(1, 500)]), t0);
    // ...but nothing beside it.
    c.feed(&mut l, &ClientMsg::Run(vec![job(2, 1)]), t0);
    let (sent, other) = c.drain(&mut l);
    assert_eq!(ids(&other), vec![1]);
    assert_eq!(sent, vec![NodeMsg::Returned(vec![(2, 1)])]);
    l.handle(NodeEvent::GiveBack(vec![(1, 1)]), t0);
    c.feed(&mut l, &ClientMsg::Run(vec![job(3, 60), job(4, 60)]), t0);
    let (sent, other) = c.drain(&mut l);
    assert_eq!(ids(&other), vec![3]);
    assert_eq!(
        sent,
        vec![
            NodeMsg::Returned(vec![(1, 1)]),
            NodeMsg::Returned(vec![(4, 1)])
        ]
    );
}

#[test]
fn a_full_node_refuses_an_authenticated_client_for_now() {
    let t0 = Instant::now();
    let (mut l, mut c) = ready(t0);
    l.handle(
        NodeEvent::Refuse("too many connections (limit 1)".into()),
        t0,
    );
    let (sent, other) = c.drain(&mut l);
    assert_eq!(
        sent,
        vec![NodeMsg::Reject {
            reason: "too many connections (limit 1)".into(),
            retry: true
        }]
    );
    assert!(closed_because(&other).contains("too many"));
}

#[test]
fn cancels_for_jobs_not_in_flight_here_are_dropped_so_a_cancel_storm_holds_nothing() {
    let t0 = Instant::now();
    let (mut l, mut c) = ready(t0);
    c.feed(&mut l, &ClientMsg::Run(vec![job(1, 10)]), t0);
    for id in 100..1100 {
        c.feed(&mut l, &ClientMsg::Cancel { id }, t0);
    }
    c.feed(&mut l, &ClientMsg::Cancel { id: 1 }, t0);
    let (_, other) = c.drain(&mut l);
    let cancels: Vec<_> = other
        .iter()
        .filter(|a| matches!(a, NodeAction::Cancel(_)))
        .collect();
    assert_eq!(cancels, vec![&NodeAction::Cancel(1)]);
    // Once the job ended, a cancel for it is dropped too.
    l.handle(NodeEvent::Ended(vec![1]), t0);
    c.feed(&mut l, &ClientMsg::Cancel { id: 1 }, t0);
    let (_, other) = c.drain(&mut l);
    assert!(!other.iter().any(|a| matches!(a, NodeAction::Cancel(_))));
}

#[test]
fn a_shared_value_is_claimed_from_its_stream_and_freed_on_unshare() {
    let t0 = Instant::now();
    let (mut l, mut c) = ready(t0);
    let bytes = vec![7u8; 300];
    let id = SharedId::of(&bytes);
    c.feed(
        &mut l,
        &ClientMsg::Stream(StreamFrame::Start { id: 1, len: 300 }),
        t0,
    );
    let chunk = StreamFrame::Chunk {
        id: 1,
        offset: 0,
        data: ByteBuf::from(bytes.clone()),
    };
    c.feed(&mut l, &ClientMsg::Stream(chunk), t0);
    c.feed(
        &mut l,
        &ClientMsg::Share {
            id,
            stream: 1,
            kept: false,
        },
        t0,
    );
    c.feed(&mut l, &ClientMsg::Unshare(vec![id]), t0);
    let (sent, other) = c.drain(&mut l);
    assert!(sent.is_empty(), "{sent:?}");
    assert_eq!(
        other,
        vec![
            NodeAction::Share { id, bytes },
            NodeAction::Unshare(vec![id])
        ]
    );
    // A job naming a value the node lacks: asked for, and handed back.
    l.handle(
        NodeEvent::NeedShared {
            ids: vec![id],
            jobs: vec![(5, 2)],
        },
        t0,
    );
    let (sent, _) = c.drain(&mut l);
    assert_eq!(
        sent,
        vec![
            NodeMsg::NeedShared(vec![id]),
            NodeMsg::Returned(vec![(5, 2)])
        ]
    );
}

#[test]
fn a_shared_value_sent_inline_by_a_client_closes_the_connection() {
    let t0 = Instant::now();
    let (mut l, mut c) = ready(t0);
    let msg = ClientMsg::Shared {
        id: SharedId::of(b"x"),
        value: ByteBuf::from(b"x".to_vec()),
        kept: false,
    };
    c.feed(&mut l, &msg, t0);
    let (_, other) = c.drain(&mut l);
    assert!(closed_because(&other).contains("as streams"), "{other:?}");
    // A `Share` that claims no stream that just completed is an error too.
    let (mut l, mut c) = ready(t0);
    let share = ClientMsg::Share {
        id: SharedId::of(b"y"),
        stream: 9,
        kept: false,
    };
    c.feed(&mut l, &share, t0);
    let (_, other) = c.drain(&mut l);
    assert!(l.is_closed(), "{other:?}");
}

fn big_done(id: u64, n: usize) -> DoneJob {
    DoneJob {
        id,
        attempt: 1,
        result: Ok(ByteBuf::from(vec![id as u8; n])),
        exec_ns: 0,
        kept: None,
    }
}

/// The ids of the jobs whose results the node sent (inline or streamed).
fn answered(sent: &[NodeMsg]) -> Vec<u64> {
    sent.iter()
        .flat_map(|m| match m {
            NodeMsg::Done(d) => d.iter().map(|d| d.id).collect(),
            NodeMsg::DoneStreamed { job, .. } => vec![job.id],
            _ => vec![],
        })
        .collect()
}

/// Sends stream frames as a driver whose socket takes everything does,
/// until the link has nothing more; what the client got.
fn drain_streams(l: &mut NodeLink, c: &mut Client) -> Vec<NodeMsg> {
    let mut sent = Vec::new();
    for _ in 0..10_000 {
        if !l.send_more(0) {
            break;
        }
        sent.extend(c.drain(l).0);
    }
    sent
}

#[test]
fn results_over_a_frame_wait_for_the_send_window_and_all_leave_in_order_once_it_takes_them() {
    let t0 = Instant::now();
    // A window of 25 000 bytes; results of 10 000 travel as streams.
    let (mut l, mut c) = ready_on(link_windowed(KeySet::one(key(1)), 25_000, t0), t0);
    let five = (1..=5).map(|id| big_done(id, 10_000)).collect();
    l.handle(NodeEvent::Finished(five), t0);
    // Three are queued as streams (0, 10 000, then 20 000 bytes unsent:
    // under the window), two wait; nothing is framed before it is pulled.
    assert_eq!(l.results_waiting(), 2);
    assert_eq!(l.unsent_results(), 50_000);
    assert!(c.drain(&mut l).0.is_empty());
    // The socket takes nothing: the outbox is full (at the window, and too
    // full to frame the next chunk).
    assert!(!l.send_more(crate::link::window::PULL_BELOW));
    assert_eq!(l.results_waiting(), 2);
    // It takes everything: every result goes, in order, exactly once.
    let sent = drain_streams(&mut l, &mut c);
    assert_eq!(answered(&sent), vec![1, 2, 3, 4, 5]);
    assert_eq!((l.results_waiting(), l.unsent_results()), (0, 0));
}

#[test]
fn a_result_waiting_for_the_window_holds_its_jobs_credit() {
    let t0 = Instant::now();
    let (mut l, mut c) = ready_on(link_windowed(KeySet::one(key(1)), 5_000, t0), t0);
    // Credit: 2 jobs. Both run; both results are over a frame.
    c.feed(&mut l, &ClientMsg::Run(vec![job(1, 1), job(2, 1)]), t0);
    c.drain(&mut l);
    l.handle(
        NodeEvent::Finished(vec![big_done(1, 10_000), big_done(2, 10_000)]),
        t0,
    );
    // The first goes (nothing was unsent), the second waits with its credit.
    assert_eq!(l.results_waiting(), 1);
    assert_eq!(l.credit_used(), (1, 1));
    c.feed(&mut l, &ClientMsg::Run(vec![job(3, 1), job(4, 1)]), t0);
    let (sent, other) = c.drain(&mut l);
    assert_eq!(ids(&other), vec![3]);
    assert_eq!(sent, vec![NodeMsg::Returned(vec![(4, 1)])]);
    // The first result out, the second follows and its credit comes back.
    let sent = drain_streams(&mut l, &mut c);
    assert_eq!(answered(&sent), vec![1, 2]);
    assert_eq!(l.credit_used(), (1, 1), "job 3 only");
}

#[test]
fn small_results_wait_too_while_the_outbox_is_at_the_window() {
    let t0 = Instant::now();
    let (mut l, mut c) = ready_on(link_windowed(KeySet::one(key(1)), 5_000, t0), t0);
    assert!(!l.send_more(5_000));
    l.handle(NodeEvent::Finished(vec![big_done(7, 10)]), t0);
    assert!(
        c.drain(&mut l).0.is_empty(),
        "held while the outbox is full"
    );
    assert_eq!((l.results_waiting(), l.unsent_results()), (1, 10));
    // The outbox shrinks under the window: it goes inline.
    assert!(l.send_more(4_999));
    let (sent, _) = c.drain(&mut l);
    assert_eq!(answered(&sent), vec![7]);
    // A result larger than the window still goes when nothing is unsent.
    assert!(!l.send_more(0));
    l.handle(NodeEvent::Finished(vec![big_done(8, 50_000)]), t0);
    assert_eq!(l.results_waiting(), 0);
    let sent = drain_streams(&mut l, &mut c);
    assert_eq!(answered(&sent), vec![8]);
}

#[test]
fn results_waiting_for_the_window_are_dropped_with_the_connection() {
    let t0 = Instant::now();
    let (mut l, mut c) = ready_on(link_windowed(KeySet::one(key(1)), 5_000, t0), t0);
    l.handle(
        NodeEvent::Finished(vec![big_done(1, 10_000), big_done(2, 10_000)]),
        t0,
    );
    assert_eq!(l.unsent_results(), 20_000);
    l.handle(NodeEvent::TransportClosed(TransportEnd::ClosedByPeer), t0);
    assert_eq!((l.results_waiting(), l.unsent_results()), (0, 0));
    assert!(c.drain(&mut l).0.is_empty());
}

fn program(n: u8) -> ProgramInfo {
    ProgramInfo {
        id: ProgramId([n; 32]),
        size: 10,
        target: "x86_64-linux".into(),
        linking: crate::wire::program::Linking::Static,
    }
}

fn chunk(n: u8) -> ClientMsg {
    ClientMsg::Chunk {
        id: ProgramId([n; 32]),
        offset: 0,
        data: ByteBuf::from(vec![0u8; 5]),
    }
}

#[test]
fn one_upload_at_a_time_per_connection_and_only_its_chunks_reach_the_driver() {
    let t0 = Instant::now();
    let (mut l, mut c) = ready(t0);
    c.feed(&mut l, &ClientMsg::Offer(program(1)), t0);
    let (sent, other) = c.drain(&mut l);
    assert!(sent.is_empty());
    assert_eq!(other, vec![NodeAction::Offer(program(1))]);
    // The node wants it: the upload of program 1 is under way.
    let (id1, id2) = (ProgramId([1; 32]), ProgramId([2; 32]));
    let answer = OfferAnswer::Need;
    l.handle(NodeEvent::Offered { id: id1, answer }, t0);
    c.feed(&mut l, &ClientMsg::Offer(program(2)), t0);
    c.feed(&mut l, &chunk(2), t0);
    c.feed(&mut l, &chunk(1), t0);
    let (sent, other) = c.drain(&mut l);
    let busy = OfferAnswer::Refuse(upload::ONE_AT_A_TIME.into());
    let not_here = UploadRefusal::NotUnderWay;
    assert_eq!(
        sent,
        vec![
            NodeMsg::Offered {
                id: id1,
                answer: OfferAnswer::Need
            },
            NodeMsg::Offered {
                id: id2,
                answer: busy
            },
            NodeMsg::ProgramRefused {
                id: id2,
                reason: not_here.to_string()
            },
        ]
    );
    let piece = NodeAction::Chunk {
        id: id1,
        offset: 0,
        data: ByteBuf::from(vec![0u8; 5]),
    };
    let refused = NodeAction::UploadRefused {
        id: id2,
        reason: not_here,
    };
    assert_eq!(other, vec![refused, piece]);
    // Stored: the next offer goes to the driver again.
    l.handle(NodeEvent::Uploaded(id1), t0);
    c.feed(&mut l, &ClientMsg::Offer(program(2)), t0);
    assert_eq!(c.drain(&mut l).1, vec![NodeAction::Offer(program(2))]);
}

#[test]
fn an_offer_read_with_one_answered_need_is_refused_and_one_answered_have_is_not() {
    let t0 = Instant::now();
    let (mut l, mut c) = ready(t0);
    let (id1, id2) = (ProgramId([1; 32]), ProgramId([2; 32]));
    let mut both = c.frame(&ClientMsg::Offer(program(1)));
    both.extend(c.frame(&ClientMsg::Offer(program(2))));
    l.handle(NodeEvent::Received(&both), t0);
    assert_eq!(l.poll_event(), Some(NodeAction::Offer(program(1))));
    // The driver answers `Need`: the upload of 1 begins, so the offer of 2
    // read in the same batch is refused, not handed to the driver.
    let answer = OfferAnswer::Need;
    l.handle(NodeEvent::Offered { id: id1, answer }, t0);
    assert_eq!(l.poll_event(), None);
    let (sent, other) = c.drain(&mut l);
    assert!(other.is_empty(), "{other:?}");
    let busy = OfferAnswer::Refuse(upload::ONE_AT_A_TIME.into());
    let need = NodeMsg::Offered {
        id: id1,
        answer: OfferAnswer::Need,
    };
    assert_eq!(
        sent,
        vec![
            need,
            NodeMsg::Offered {
                id: id2,
                answer: busy
            }
        ]
    );
    // After the upload, two offers answered `Have` both reach the driver.
    l.handle(NodeEvent::Uploaded(id1), t0);
    let mut again = c.frame(&ClientMsg::Offer(program(2)));
    again.extend(c.frame(&ClientMsg::Offer(program(2))));
    l.handle(NodeEvent::Received(&again), t0);
    for _ in 0..2 {
        assert_eq!(l.poll_event(), Some(NodeAction::Offer(program(2))));
        let answer = OfferAnswer::Have;
        l.handle(NodeEvent::Offered { id: id2, answer }, t0);
    }
    assert_eq!(l.poll_event(), None);
}

#[test]
fn an_upload_with_no_chunk_for_thirty_seconds_is_ended_though_the_client_pings() {
    let t0 = Instant::now();
    let (mut l, mut c) = ready(t0);
    let id = ProgramId([1; 32]);
    l.handle(
        NodeEvent::Offered {
            id,
            answer: OfferAnswer::Need,
        },
        t0,
    );
    c.feed(&mut l, &chunk(1), t0 + 5 * SECOND);
    c.drain(&mut l);
    let mut now = t0 + 5 * SECOND;
    for n in 0..40 {
        now += SECOND;
        c.feed(&mut l, &ClientMsg::Ping(n), now);
        if l.poll_timeout().is_some_and(|t| t <= now) {
            l.handle(NodeEvent::Timer, now);
        }
        let (sent, other) = c.drain(&mut l);
        if !other.is_empty() {
            let reason = UploadRefusal::Stalled(Duration::from_secs(30));
            assert_eq!(now, t0 + 35 * SECOND, "30 s after the last chunk");
            assert_eq!(
                other,
                vec![NodeAction::UploadRefused {
                    id,
                    reason: reason.clone()
                }]
            );
            assert_eq!(
                sent.last(),
                Some(&NodeMsg::ProgramRefused {
                    id,
                    reason: reason.to_string()
                })
            );
            assert!(!l.is_closed(), "the connection stays");
            c.feed(&mut l, &ClientMsg::Offer(program(1)), now);
            assert_eq!(c.drain(&mut l).1, vec![NodeAction::Offer(program(1))]);
            return;
        }
    }
    panic!("the upload never stalled");
}

#[test]
fn an_upload_the_node_could_not_take_is_refused_to_the_client_and_frees_the_slot() {
    let t0 = Instant::now();
    let (mut l, mut c) = ready(t0);
    let id = ProgramId([1; 32]);
    l.handle(
        NodeEvent::Offered {
            id,
            answer: OfferAnswer::Need,
        },
        t0,
    );
    let reason = "upload refused: hash mismatch".to_owned();
    l.handle(
        NodeEvent::UploadFailed {
            id,
            reason: reason.clone(),
        },
        t0,
    );
    let (sent, _) = c.drain(&mut l);
    assert_eq!(sent.last(), Some(&NodeMsg::ProgramRefused { id, reason }));
    assert_eq!(l.poll_timeout(), Some(t0 + 3 * SECOND), "no upload timer");
    c.feed(&mut l, &ClientMsg::Offer(program(1)), t0);
    assert_eq!(c.drain(&mut l).1, vec![NodeAction::Offer(program(1))]);
}

fn job_naming(id: u64, shared: &[SharedId]) -> RunJob {
    RunJob {
        shared: shared.to_vec(),
        ..job(id, 1)
    }
}

/// Feeds one `Run` and takes the jobs the link hands the driver.
fn run_jobs(l: &mut NodeLink, c: &mut Client, jobs: Vec<RunJob>, now: Instant) -> Vec<RunJob> {
    c.feed(l, &ClientMsg::Run(jobs), now);
    match c.drain(l) {
        (_, mut other) if other.len() == 1 => match other.pop() {
            Some(NodeAction::Run(jobs)) => jobs,
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
}

#[test]
fn jobs_naming_a_value_lacking_go_back_and_those_naming_one_refused_over_shared_max_fail() {
    let t0 = Instant::now();
    let (mut l, mut c) = ready(t0);
    let (held, lacking, big) = (SharedId::of(b"a"), SharedId::of(b"b"), SharedId::of(b"c"));
    let lookup = |ids: &[SharedId]| match ids.contains(&lacking) {
        true => Err(vec![lacking]),
        false => Ok(vec![SharedValue::kept(held, Vec::new())]),
    };
    let jobs = run_jobs(
        &mut l,
        &mut c,
        vec![job_naming(1, &[held]), job_naming(2, &[lacking])],
        t0,
    );
    let ready = l.with_shared(jobs, lookup);
    assert_eq!(ready.iter().map(|(j, _)| j.id).collect::<Vec<_>>(), vec![1]);
    let (sent, _) = c.drain(&mut l);
    assert_eq!(
        sent,
        vec![
            NodeMsg::NeedShared(vec![lacking]),
            NodeMsg::Returned(vec![(2, 1)])
        ]
    );
    assert_eq!(l.credit_used(), (1, 1), "job 2 gave its credit back");
    // A value the node refused: the jobs that name it fail with the reason.
    let over = OverSharedMax { len: 10, max: 5 };
    l.handle(
        NodeEvent::Stored {
            id: big,
            outcome: Err(over.clone()),
        },
        t0,
    );
    let jobs = run_jobs(&mut l, &mut c, vec![job_naming(3, &[big])], t0);
    assert!(l.with_shared(jobs, lookup).is_empty());
    let (sent, _) = c.drain(&mut l);
    let [NodeMsg::Done(failed)] = &sent[..] else {
        panic!("{sent:?}")
    };
    let err = failed[0].result.as_ref().unwrap_err();
    assert_eq!((failed[0].id, &err.message), (3, &over.to_string()));
    assert_eq!(
        err.node.as_deref(),
        Some("n"),
        "the node's id, from its welcome"
    );
    assert_eq!(l.credit_used(), (1, 1), "job 3 ended");
    // Sent again and kept: jobs naming it run.
    l.handle(
        NodeEvent::Stored {
            id: big,
            outcome: Ok(()),
        },
        t0,
    );
    let jobs = run_jobs(&mut l, &mut c, vec![job_naming(4, &[big])], t0);
    assert_eq!(l.with_shared(jobs, lookup).len(), 1);
}

#[test]
fn a_shared_value_whose_bytes_do_not_match_its_id_closes_the_connection() {
    let t0 = Instant::now();
    let (mut l, mut c) = ready(t0);
    c.feed(
        &mut l,
        &ClientMsg::Stream(StreamFrame::Start { id: 1, len: 3 }),
        t0,
    );
    let chunk = StreamFrame::Chunk {
        id: 1,
        offset: 0,
        data: ByteBuf::from(b"abc".to_vec()),
    };
    c.feed(&mut l, &ClientMsg::Stream(chunk), t0);
    let id = SharedId::of(b"xyz");
    c.feed(
        &mut l,
        &ClientMsg::Share {
            id,
            stream: 1,
            kept: false,
        },
        t0,
    );
    let (_, other) = c.drain(&mut l);
    assert_eq!(
        closed_because(&other),
        format!("shared value {id} does not match its bytes")
    );
    assert!(!other.iter().any(|a| matches!(a, NodeAction::Share { .. })));
}

#[test]
fn the_driver_stops_reading_while_its_outbox_alone_is_over_the_send_window() {
    let t0 = Instant::now();
    let l = link_windowed(KeySet::one(key(1)), 5_000, t0);
    assert!(l.may_read(0));
    assert!(l.may_read(5_000));
    assert!(!l.may_read(5_001));
}

mod kept;
mod spill;

#[test]
fn a_connection_names_its_run_once_and_a_second_resume_closes_it() {
    use crate::wire::run::{JobKey, RunId};
    let t0 = Instant::now();
    let (mut l, mut c) = ready(t0);
    let run = RunId([5; 32]);
    c.feed(&mut l, &ClientMsg::Resume { run }, t0);
    let (sent, other) = c.drain(&mut l);
    assert!(sent.is_empty());
    assert_eq!(other, vec![NodeAction::Resume(run)]);
    // The driver's answer goes out as `Orphans`, the last part saying so.
    l.handle(NodeEvent::Orphans(vec![JobKey([1; 32])]), t0);
    let (sent, _) = c.drain(&mut l);
    assert_eq!(
        sent,
        vec![NodeMsg::Orphans {
            keys: vec![JobKey([1; 32])],
            more: false
        }]
    );
    c.feed(&mut l, &ClientMsg::Recorded(vec![JobKey([1; 32])]), t0);
    let (_, other) = c.drain(&mut l);
    assert_eq!(other, vec![NodeAction::Recorded(vec![JobKey([1; 32])])]);
    c.feed(&mut l, &ClientMsg::Resume { run }, t0);
    let (_, other) = c.drain(&mut l);
    assert!(closed_because(&other).contains("once"), "{other:?}");
}

#[test]
fn a_reclaim_takes_a_jobs_credit_and_is_answered_as_a_job() {
    use crate::wire::run::JobKey;
    let t0 = Instant::now();
    let (mut l, mut c) = ready(t0);
    let reclaim = RunJob {
        keep: Some(KeepOp::Reclaim(JobKey([2; 32]))),
        args: ByteBuf::new(),
        ..job(4, 0)
    };
    c.feed(&mut l, &ClientMsg::Run(vec![reclaim]), t0);
    let (_, other) = c.drain(&mut l);
    assert_eq!(
        other,
        vec![NodeAction::Reclaim {
            id: 4,
            attempt: 1,
            key: JobKey([2; 32])
        }]
    );
    let done = DoneJob {
        id: 4,
        attempt: 1,
        result: Ok(ByteBuf::from(vec![1])),
        exec_ns: 1,
        kept: None,
    };
    l.handle(NodeEvent::Finished(vec![done.clone()]), t0);
    let (sent, _) = c.drain(&mut l);
    assert!(
        sent.iter()
            .any(|m| matches!(m, NodeMsg::Done(d) if d == &vec![done.clone()])),
        "{sent:?}"
    );
}
