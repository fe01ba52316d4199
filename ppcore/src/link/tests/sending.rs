//! Credit and send windows, streams both ways, refusal pauses, shared
//! values.

use super::*;

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
        kept: None,
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
        kept: None,
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
    p.client.share(id, Arc::clone(&bytes), false).unwrap();
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
    p.client.share(id, bytes, false).unwrap();
    p.pump();
    assert_eq!(p.client.shared_sent(), (2, 6 << 20));
}

#[test]
fn a_dropped_shared_value_is_freed_on_the_node_and_forgotten_on_reconnection() {
    let mut p = Pair::new();
    p.pump();
    let (a, bytes_a) = shared_value(100, 1);
    let (b, bytes_b) = shared_value(2 << 20, 2);
    p.client.share(a, bytes_a, false).unwrap();
    p.pump();
    // `b` still going out when the client gives it up: its stream stops.
    p.hold_streams = true;
    p.client.share(b, bytes_b, false).unwrap();
    p.pump();
    p.client.unshare(&[a, b]);
    p.hold_streams = false;
    p.pump();
    assert_eq!(p.node_unshared, vec![a, b]);
    assert_eq!(p.node_order, vec![Err((a, 100))], "b never arrived");
    assert_eq!(p.client.shared_ids().count(), 0);
    // A new connection holds nothing: values go again.
    let (c, bytes_c) = shared_value(10, 3);
    p.client.share(c, bytes_c, false).unwrap();
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
    p.client.share(id, bytes, false).unwrap();
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
    assert!(!p.client.send_more(crate::link::window::PULL_BELOW));
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
