//! Kept results on the node's side of a connection: keep, park, fetch.

use super::*;
use crate::job::shared::SharedValue;
use crate::wire::messages::KeepOp;
use std::sync::Arc;

/// A link with room for chains of jobs, through the handshake.
fn roomy(now: Instant) -> (NodeLink, Client) {
    let config = NodeLinkConfig {
        keys: KeySet::one(key(1)),
        heartbeat: SECOND,
        max_frame: 8192,
        credit_jobs: 8,
        credit_bytes: 1000,
        send_window: 1 << 30,
        ..NodeLinkConfig::for_tests()
    };
    let mut l = link(now);
    let welcome = l.welcome.clone();
    l = NodeLink::new(config, welcome, now);
    l.set_keep_room(1 << 20);
    ready_on(l, now)
}

fn keeping(id: u64, value: SharedId, shared: &[SharedId]) -> RunJob {
    RunJob {
        keep: Some(KeepOp::Keep(value)),
        journal: None,
        ..job_naming(id, shared)
    }
}

fn fetch(id: u64, value: SharedId) -> RunJob {
    RunJob {
        keep: Some(KeepOp::Fetch(value)),
        journal: None,
        name: String::new(),
        ..job(id, 0)
    }
}

fn ok(id: u64, bytes: &[u8]) -> DoneJob {
    DoneJob {
        id,
        attempt: 1,
        result: Ok(ByteBuf::from(bytes.to_vec())),
        exec_ns: 1,
        kept: None,
    }
}

fn value(name: &[u8]) -> SharedId {
    SharedId::of(name)
}

/// The node's store holds nothing.
fn nothing(ids: &[SharedId]) -> Result<Vec<Arc<SharedValue>>, Vec<SharedId>> {
    Err(ids.to_vec())
}

/// Ready jobs' ids and the bytes of the values they got.
fn ran(ready: &[(RunJob, Vec<Arc<SharedValue>>)]) -> Vec<(u64, Vec<Vec<u8>>)> {
    let values = |v: &[Arc<SharedValue>]| v.iter().map(|v| v.bytes().to_vec()).collect();
    ready.iter().map(|(j, v)| (j.id, values(v))).collect()
}

/// Jobs the link queued again for the workers.
fn queued(other: Vec<NodeAction>) -> Vec<RunJob> {
    match &other[..] {
        [NodeAction::Run(_)] => match other.into_iter().next() {
            Some(NodeAction::Run(jobs)) => jobs,
            _ => unreachable!(),
        },
        _ => panic!("not one Run: {other:?}"),
    }
}

fn bytes(d: &DoneJob) -> Option<&[u8]> {
    d.result.as_ref().ok().map(|b| b.as_slice())
}

fn done_of(sent: &[NodeMsg]) -> Vec<DoneJob> {
    sent.iter()
        .flat_map(|m| match m {
            NodeMsg::Done(d) => d.clone(),
            _ => Vec::new(),
        })
        .collect()
}

#[test]
fn a_kept_result_is_answered_empty_and_fetched_whole() {
    let t0 = Instant::now();
    let (mut l, mut c) = roomy(t0);
    let x = value(b"x");
    let jobs = run_jobs(&mut l, &mut c, vec![keeping(1, x, &[])], t0);
    assert_eq!(ran(&l.with_shared(jobs, nothing)), vec![(1, vec![])]);
    l.handle(NodeEvent::Finished(vec![ok(1, b"hello")]), t0);
    let (sent, _) = c.drain(&mut l);
    let done = done_of(&sent);
    assert_eq!((done[0].kept, bytes(&done[0])), (Some(5), Some(&[][..])));
    assert_eq!(l.kept(), (1, 5));
    c.feed(&mut l, &ClientMsg::Run(vec![fetch(2, x)]), t0);
    let (sent, other) = c.drain(&mut l);
    assert!(other.is_empty(), "a fetch is no job: {other:?}");
    let done = done_of(&sent);
    assert_eq!((done[0].id, bytes(&done[0])), (2, Some(&b"hello"[..])));
    assert_eq!(done[0].kept, None);
    assert_eq!(l.credit_used(), (0, 0));
    assert_eq!(l.kept(), (1, 5), "a fetch leaves the value kept");
}

#[test]
fn a_job_naming_a_result_in_flight_here_waits_for_it() {
    let t0 = Instant::now();
    let (mut l, mut c) = roomy(t0);
    let x = value(b"x");
    let jobs = vec![keeping(1, x, &[]), job_naming(2, &[x])];
    let jobs = run_jobs(&mut l, &mut c, jobs, t0);
    assert_eq!(ran(&l.with_shared(jobs, nothing)), vec![(1, vec![])]);
    let (sent, _) = c.drain(&mut l);
    assert!(sent.is_empty(), "not asked for, not handed back: {sent:?}");
    assert_eq!(l.jobs_waiting(), 1);
    assert_eq!(l.credit_used(), (2, 2), "the parked job keeps its credit");
    l.handle(NodeEvent::Finished(vec![ok(1, b"one")]), t0);
    let (_, other) = c.drain(&mut l);
    let ready = l.with_shared(queued(other), nothing);
    assert_eq!(ran(&ready), vec![(2, vec![b"one".to_vec()])]);
    assert_eq!(l.jobs_waiting(), 0);
}

#[test]
fn a_chain_of_three_runs_step_by_step_without_the_client() {
    let t0 = Instant::now();
    let (mut l, mut c) = roomy(t0);
    let (x, y) = (value(b"x"), value(b"y"));
    let jobs = vec![keeping(1, x, &[]), keeping(2, y, &[x]), job_naming(3, &[y])];
    let jobs = run_jobs(&mut l, &mut c, jobs, t0);
    assert_eq!(ran(&l.with_shared(jobs, nothing)), vec![(1, vec![])]);
    assert_eq!(l.jobs_waiting(), 2);
    l.handle(NodeEvent::Finished(vec![ok(1, b"a")]), t0);
    let (_, other) = c.drain(&mut l);
    let ready = l.with_shared(queued(other), nothing);
    assert_eq!(ran(&ready), vec![(2, vec![b"a".to_vec()])]);
    assert_eq!(l.jobs_waiting(), 1, "job 3 waits for job 2");
    l.handle(NodeEvent::Finished(vec![ok(2, b"ab")]), t0);
    let (sent, other) = c.drain(&mut l);
    let ready = l.with_shared(queued(other), nothing);
    assert_eq!(ran(&ready), vec![(3, vec![b"ab".to_vec()])]);
    // The reports of kept results wait while job 3 runs (`linger`).
    assert!(done_of(&sent).is_empty(), "{sent:?}");
    assert_eq!(l.kept(), (2, 3));
    let due = l.poll_timeout().unwrap();
    assert!(
        due <= t0 + super::super::linger::LINGER,
        "the reports wait at most LINGER"
    );
    l.handle(NodeEvent::Timer, due);
    let (sent, _) = c.drain(&mut l);
    let kept: Vec<_> = done_of(&sent).iter().map(|d| (d.id, d.kept)).collect();
    assert_eq!(kept, vec![(1, Some(1)), (2, Some(2))], "one frame for both");
    assert_eq!(sent.len(), 1, "{sent:?}");
}

#[test]
fn reports_of_kept_results_go_with_the_next_result_or_when_nothing_else_runs() {
    let t0 = Instant::now();
    let (mut l, mut c) = roomy(t0);
    let (x, y) = (value(b"x"), value(b"y"));
    let jobs = vec![keeping(1, x, &[]), job(2, 0), keeping(3, y, &[])];
    let jobs = run_jobs(&mut l, &mut c, jobs, t0);
    assert_eq!(l.with_shared(jobs, nothing).len(), 3);
    l.handle(NodeEvent::Finished(vec![ok(1, b"a")]), t0);
    let (sent, _) = c.drain(&mut l);
    assert!(
        done_of(&sent).is_empty(),
        "jobs 2 and 3 run: the report waits"
    );
    // A result that carries bytes takes the waiting report along, in order.
    l.handle(NodeEvent::Finished(vec![ok(2, b"r")]), t0);
    let (sent, _) = c.drain(&mut l);
    let ids: Vec<u64> = done_of(&sent).iter().map(|d| d.id).collect();
    assert_eq!(ids, [1, 2]);
    // The last job of the client: nothing else will come soon, so its
    // report goes at once.
    l.handle(NodeEvent::Finished(vec![ok(3, b"b")]), t0);
    let (sent, _) = c.drain(&mut l);
    let kept: Vec<_> = done_of(&sent)
        .iter()
        .map(|d| (d.id, d.kept.is_some()))
        .collect();
    assert_eq!(kept, vec![(3, true)]);
    assert_eq!(
        l.poll_timeout().map(|t| t > t0 + SECOND),
        Some(true),
        "no timer left"
    );
}

#[test]
fn a_producer_that_fails_hands_back_its_parked_jobs_and_fails_its_fetches() {
    let t0 = Instant::now();
    let (mut l, mut c) = roomy(t0);
    let x = value(b"x");
    let jobs = vec![keeping(1, x, &[]), job_naming(2, &[x]), fetch(3, x)];
    let jobs = run_jobs(&mut l, &mut c, jobs, t0);
    assert_eq!(l.with_shared(jobs, nothing).len(), 1);
    assert_eq!(l.jobs_waiting(), 2);
    let failed = DoneJob {
        result: Err(JobError::new(ErrorKind::Failed, "boom")),
        ..ok(1, b"")
    };
    l.handle(NodeEvent::Finished(vec![failed]), t0);
    let (sent, other) = c.drain(&mut l);
    // The fetch asks the node whether another connection exports it.
    assert_eq!(other, vec![exported_asked(3, x)]);
    assert!(sent.contains(&NodeMsg::Returned(vec![(2, 1)])), "{sent:?}");
    assert_eq!(
        done_of(&sent).iter().map(|d| d.id).collect::<Vec<_>>(),
        vec![1]
    );
    let sent = not_exported(&mut l, &mut c, 3, x, t0);
    let err = done_of(&sent)[0].result.clone().unwrap_err();
    assert_eq!(err.kind, ErrorKind::NodeLost);
    assert!(err.message.contains("is not on this node"), "{err}");
    assert_eq!(l.credit_used(), (0, 0));
    assert_eq!(l.jobs_waiting(), 0);
}

fn exported_asked(id: u64, value: SharedId) -> NodeAction {
    NodeAction::FetchExported {
        id,
        attempt: 1,
        value,
    }
}

/// The node answers that no connection exports `value`.
fn not_exported(
    l: &mut NodeLink,
    c: &mut Client,
    id: u64,
    value: SharedId,
    now: Instant,
) -> Vec<NodeMsg> {
    let answer = NodeEvent::Exported {
        id,
        attempt: 1,
        value,
        bytes: None,
    };
    l.handle(answer, now);
    let (sent, other) = c.drain(l);
    assert!(other.is_empty(), "{other:?}");
    sent
}

#[test]
fn a_fetch_of_a_value_another_connection_exports_gets_its_bytes_from_the_node() {
    let t0 = Instant::now();
    let (mut l, mut c) = roomy(t0);
    let x = value(b"x");
    c.feed(&mut l, &ClientMsg::Run(vec![fetch(1, x)]), t0);
    assert_eq!(c.drain(&mut l).1, vec![exported_asked(1, x)]);
    let answer = NodeEvent::Exported {
        id: 1,
        attempt: 1,
        value: x,
        bytes: Some(b"peer's".to_vec()),
    };
    l.handle(answer, t0);
    let (sent, _) = c.drain(&mut l);
    assert_eq!(bytes(&done_of(&sent)[0]), Some(&b"peer's"[..]));
    assert_eq!(l.credit_used(), (0, 0));
}

#[test]
fn an_export_waits_for_its_value_then_answers_kept_and_asks_the_node_to_export_it() {
    let t0 = Instant::now();
    let (mut l, mut c) = roomy(t0);
    let x = value(b"x");
    let export = RunJob {
        keep: Some(KeepOp::Export(x)),
        journal: None,
        ..fetch(2, x)
    };
    let jobs = run_jobs(&mut l, &mut c, vec![keeping(1, x, &[]), export], t0);
    assert_eq!(l.with_shared(jobs, nothing).len(), 1);
    assert_eq!(l.jobs_waiting(), 1);
    l.handle(NodeEvent::Finished(vec![ok(1, b"made")]), t0);
    let (sent, other) = c.drain(&mut l);
    assert_eq!(other, vec![NodeAction::Export(x)]);
    let kept = l.kept_value(&x).map(|v| v.bytes().to_vec());
    assert_eq!(kept.as_deref(), Some(&b"made"[..]));
    let done = done_of(&sent);
    assert_eq!(
        done.iter().map(|d| (d.id, d.kept)).collect::<Vec<_>>(),
        [(1, Some(4)), (2, Some(4))]
    );
    // An export of a value this connection does not hold: NodeLost.
    let y = value(b"y");
    let export = RunJob {
        keep: Some(KeepOp::Export(y)),
        journal: None,
        ..fetch(3, y)
    };
    c.feed(&mut l, &ClientMsg::Run(vec![export]), t0);
    let (sent, other) = c.drain(&mut l);
    assert!(other.is_empty(), "{other:?}");
    assert_eq!(
        done_of(&sent)[0].result.as_ref().unwrap_err().kind,
        ErrorKind::NodeLost
    );
}

#[test]
fn a_pull_keeps_what_the_peer_gave_and_jobs_naming_it_wait_for_it_here() {
    let t0 = Instant::now();
    let (mut l, mut c) = roomy(t0);
    let x = value(b"x");
    let pull = RunJob {
        keep: Some(KeepOp::Pull {
            value: x,
            from: "10.0.0.1:7000".into(),
        }),
        ..fetch(1, x)
    };
    c.feed(&mut l, &ClientMsg::Run(vec![pull, job_naming(2, &[x])]), t0);
    let (_, mut other) = c.drain(&mut l);
    let want = NodeAction::Pull {
        id: 1,
        attempt: 1,
        value: x,
        from: "10.0.0.1:7000".into(),
    };
    assert_eq!(other[0], want);
    let jobs = queued(other.split_off(1));
    // The job naming it parks until the pull ends.
    assert!(l.with_shared(jobs, nothing).is_empty());
    l.handle(NodeEvent::Finished(vec![ok(1, b"pulled")]), t0);
    let (_, other) = c.drain(&mut l);
    let ready = l.with_shared(queued(other), nothing);
    assert_eq!(ran(&ready), vec![(2, vec![b"pulled".to_vec()])]);
    // Its report, once it has lingered: kept, as a kept job's is.
    l.handle(NodeEvent::Timer, t0 + Duration::from_millis(1));
    assert_eq!(done_of(&c.drain(&mut l).0)[0].kept, Some(6));
}

#[test]
fn a_result_over_the_keep_room_comes_back_in_full_and_its_dependants_go_back() {
    let t0 = Instant::now();
    let (mut l, mut c) = roomy(t0);
    let x = value(b"x");
    let jobs = run_jobs(
        &mut l,
        &mut c,
        vec![keeping(1, x, &[]), job_naming(2, &[x])],
        t0,
    );
    l.with_shared(jobs, nothing);
    l.set_keep_room(3);
    l.handle(NodeEvent::Finished(vec![ok(1, b"hello")]), t0);
    let (sent, _) = c.drain(&mut l);
    let done = done_of(&sent);
    assert_eq!((done[0].kept, bytes(&done[0])), (None, Some(&b"hello"[..])));
    assert!(sent.contains(&NodeMsg::Returned(vec![(2, 1)])), "{sent:?}");
    assert_eq!(l.kept(), (0, 0));
}

#[test]
fn a_fetch_of_a_value_not_here_nor_exported_is_answered_node_lost() {
    let t0 = Instant::now();
    let (mut l, mut c) = roomy(t0);
    let x = value(b"x");
    c.feed(&mut l, &ClientMsg::Run(vec![fetch(1, x)]), t0);
    let (sent, other) = c.drain(&mut l);
    assert!(done_of(&sent).is_empty());
    assert_eq!(other, vec![exported_asked(1, x)]);
    let sent = not_exported(&mut l, &mut c, 1, x, t0);
    let done = done_of(&sent);
    let err = done[0].result.as_ref().unwrap_err();
    assert_eq!((done[0].id, err.kind), (1, ErrorKind::NodeLost));
    assert_eq!(l.credit_used(), (0, 0));
}

/// Sends `bytes` as shared value `id`, kept or not.
fn share(l: &mut NodeLink, c: &mut Client, id: SharedId, bytes: &[u8], kept: bool, now: Instant) {
    let len = bytes.len() as u64;
    c.feed(
        l,
        &ClientMsg::Stream(StreamFrame::Start { id: 1, len }),
        now,
    );
    let data = ByteBuf::from(bytes.to_vec());
    let chunk = StreamFrame::Chunk {
        id: 1,
        offset: 0,
        data,
    };
    c.feed(l, &ClientMsg::Stream(chunk), now);
    c.feed(
        l,
        &ClientMsg::Share {
            id,
            stream: 1,
            kept,
        },
        now,
    );
}

#[test]
fn a_value_sent_kept_is_not_hash_checked_and_no_other_link_sees_it() {
    let t0 = Instant::now();
    let (mut l, mut c) = roomy(t0);
    let x = value(b"not its hash");
    share(&mut l, &mut c, x, b"value", true, t0);
    let (sent, other) = c.drain(&mut l);
    assert!(sent.is_empty() && other.is_empty(), "{sent:?} {other:?}");
    assert!(!l.is_closed());
    assert_eq!(l.kept(), (1, 5));
    let jobs = run_jobs(&mut l, &mut c, vec![job_naming(1, &[x])], t0);
    let ready = l.with_shared(jobs, |_| {
        panic!("a kept value is not looked up in the store")
    });
    assert_eq!(ran(&ready), vec![(1, vec![b"value".to_vec()])]);
    // Another connection naming the same id: its store lookup, which lacks it.
    let (mut other_link, mut other) = roomy(t0);
    let jobs = run_jobs(&mut other_link, &mut other, vec![job_naming(1, &[x])], t0);
    assert!(other_link.with_shared(jobs, nothing).is_empty());
    let (sent, _) = other.drain(&mut other_link);
    assert_eq!(
        sent,
        vec![
            NodeMsg::NeedShared(vec![x]),
            NodeMsg::Returned(vec![(1, 1)])
        ]
    );
}

#[test]
fn unshare_frees_kept_bytes() {
    let t0 = Instant::now();
    let (mut l, mut c) = roomy(t0);
    let x = value(b"x");
    let jobs = run_jobs(&mut l, &mut c, vec![keeping(1, x, &[])], t0);
    l.with_shared(jobs, nothing);
    l.handle(NodeEvent::Finished(vec![ok(1, b"hello")]), t0);
    assert_eq!(l.kept(), (1, 5));
    c.feed(&mut l, &ClientMsg::Unshare(vec![x]), t0);
    let (_, other) = c.drain(&mut l);
    assert_eq!(other, vec![NodeAction::Unshare(vec![x])]);
    assert_eq!(l.kept(), (0, 0));
}

#[test]
fn a_cancelled_parked_job_gives_its_credit_back_unanswered() {
    let t0 = Instant::now();
    let (mut l, mut c) = roomy(t0);
    let x = value(b"x");
    let jobs = run_jobs(
        &mut l,
        &mut c,
        vec![keeping(1, x, &[]), job_naming(2, &[x])],
        t0,
    );
    l.with_shared(jobs, nothing);
    c.feed(&mut l, &ClientMsg::Cancel { id: 2 }, t0);
    let (sent, other) = c.drain(&mut l);
    assert!(sent.is_empty() && other.is_empty(), "{sent:?} {other:?}");
    assert_eq!((l.credit_used(), l.jobs_waiting()), ((1, 1), 0));
    l.handle(NodeEvent::Finished(vec![ok(1, b"one")]), t0);
    let (_, other) = c.drain(&mut l);
    assert!(other.is_empty(), "job 2 does not come back: {other:?}");
}

#[test]
fn stop_hands_parked_jobs_back_and_close_drops_what_was_kept() {
    let t0 = Instant::now();
    let (mut l, mut c) = roomy(t0);
    let (x, y) = (value(b"x"), value(b"y"));
    let jobs = vec![keeping(1, x, &[]), keeping(2, y, &[]), job_naming(3, &[x])];
    let jobs = run_jobs(&mut l, &mut c, jobs, t0);
    l.with_shared(jobs, nothing);
    l.handle(NodeEvent::Finished(vec![ok(2, b"kept")]), t0);
    assert_eq!(l.kept(), (1, 4));
    l.handle(NodeEvent::Stop, t0);
    let (sent, _) = c.drain(&mut l);
    assert!(sent.contains(&NodeMsg::Returned(vec![(3, 1)])), "{sent:?}");
    assert_eq!(sent.last(), Some(&NodeMsg::Goodbye));
    assert_eq!((l.kept(), l.jobs_waiting()), ((0, 0), 0));
}

#[test]
fn keep_jobs_beyond_the_credit_window_go_back_and_keep_nothing() {
    let t0 = Instant::now();
    let (mut l, mut c) = roomy(t0);
    let jobs: Vec<RunJob> = (0..20u64)
        .map(|n| keeping(n, value(&n.to_le_bytes()), &[]))
        .collect();
    c.feed(&mut l, &ClientMsg::Run(jobs), t0);
    let (sent, other) = c.drain(&mut l);
    assert_eq!(queued(other).len(), 8);
    assert!(matches!(&sent[..], [NodeMsg::Returned(back)] if back.len() == 12));
    // A fetch takes credit like a job: none is left.
    let x = value(&15u64.to_le_bytes());
    c.feed(&mut l, &ClientMsg::Run(vec![fetch(100, x)]), t0);
    let (sent, _) = c.drain(&mut l);
    assert_eq!(sent, vec![NodeMsg::Returned(vec![(100, 1)])]);
    assert_eq!(l.jobs_waiting(), 0);
}
