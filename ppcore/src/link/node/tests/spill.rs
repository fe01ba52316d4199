//! Kept results spilled to disk, on the node's side of a connection: the
//! link asks the driver to write, read back and delete; it never hands out
//! a value whose file did not read back.

use super::*;
use crate::job::shared::SharedValue;
use crate::wire::messages::KeepOp;
use std::sync::Arc;

/// A link with 10 bytes of memory room and 1 MiB of spill room.
fn spilling(now: Instant) -> (NodeLink, Client) {
    let config = NodeLinkConfig {
        keys: KeySet::one(key(1)),
        heartbeat: SECOND,
        max_frame: 8192,
        credit_jobs: 8,
        credit_bytes: 1000,
        send_window: 1 << 30,
        ..NodeLinkConfig::for_tests()
    };
    let welcome = link(now).welcome.clone();
    let mut l = NodeLink::new(config, welcome, now);
    l.set_keep_room(10);
    l.set_spill_room(1 << 20);
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

fn done_of(sent: &[NodeMsg]) -> Vec<DoneJob> {
    (sent.iter())
        .flat_map(|m| match m {
            NodeMsg::Done(d) => d.clone(),
            _ => Vec::new(),
        })
        .collect()
}

fn nothing(ids: &[SharedId]) -> Result<Vec<Arc<SharedValue>>, Vec<SharedId>> {
    Err(ids.to_vec())
}

/// Job 1 keeps 100 bytes as `x`, over the memory room: the link asks for
/// the write (and sends nothing yet).
fn spill_one(l: &mut NodeLink, c: &mut Client, x: SharedId, t0: Instant) {
    let jobs = run_jobs(l, c, vec![keeping(1, x, &[])], t0);
    assert_eq!(l.with_shared(jobs, nothing).len(), 1);
    l.handle(NodeEvent::Finished(vec![ok(1, &[5u8; 100])]), t0);
    let (sent, other) = c.drain(l);
    assert!(done_of(&sent).is_empty(), "the answer waits for the write");
    assert_eq!(
        other,
        vec![NodeAction::Spill {
            id: x,
            bytes: vec![5u8; 100]
        }]
    );
    assert_eq!(l.credit_used().0, 1, "its credit waits too");
}

#[test]
fn a_result_over_the_memory_room_is_written_reported_kept_and_read_back() {
    let t0 = Instant::now();
    let (mut l, mut c) = spilling(t0);
    let x = SharedId::of(b"x");
    spill_one(&mut l, &mut c, x, t0);
    l.handle(
        NodeEvent::Spilled {
            id: x,
            result: Ok(()),
        },
        t0,
    );
    let (sent, _) = c.drain(&mut l);
    let done = done_of(&sent);
    assert_eq!((done[0].id, done[0].kept), (1, Some(100)));
    assert_eq!(done[0].result.as_ref().map(|b| b.len()), Ok(0));
    assert_eq!(l.kept(), (1, 0), "kept, and no memory held");
    // A job naming it gets it from the driver's lookup (read back).
    let jobs = run_jobs(&mut l, &mut c, vec![job_naming(2, &[x])], t0);
    let mut asked = Vec::new();
    let ready = l.with_shared(jobs, |ids| {
        asked.extend_from_slice(ids);
        Ok::<_, Vec<SharedId>>(vec![SharedValue::kept(x, vec![5u8; 100])])
    });
    assert_eq!((ready.len(), asked), (1, vec![x]));
    // A fetch: the driver reads it back, the client gets the bytes.
    c.feed(&mut l, &ClientMsg::Run(vec![fetch(3, x)]), t0);
    let (_, other) = c.drain(&mut l);
    let read = NodeAction::ReadBack {
        value: x,
        fetch: 3,
        attempt: 1,
    };
    assert_eq!(other, vec![read]);
    let back = NodeEvent::ReadBack {
        value: x,
        fetch: 3,
        attempt: 1,
        bytes: Some(vec![5u8; 100]),
    };
    l.handle(back, t0);
    let (sent, _) = c.drain(&mut l);
    let done = done_of(&sent);
    assert_eq!(done[0].id, 3);
    assert_eq!(done[0].result.as_ref().unwrap().as_slice(), &[5u8; 100][..]);
    // Unshared: its file goes.
    c.feed(&mut l, &ClientMsg::Unshare(vec![x]), t0);
    let (_, other) = c.drain(&mut l);
    assert!(
        other.contains(&NodeAction::DropSpilled(vec![x])),
        "{other:?}"
    );
    assert_eq!(l.kept(), (0, 0));
}

#[test]
fn a_failed_write_sends_the_result_in_full_and_its_waiters_back() {
    let t0 = Instant::now();
    let (mut l, mut c) = spilling(t0);
    let x = SharedId::of(b"x");
    // Job 2 waits for x, parked, while x is made and then written.
    let jobs = vec![keeping(1, x, &[]), job_naming(2, &[x])];
    let jobs = run_jobs(&mut l, &mut c, jobs, t0);
    assert_eq!(l.with_shared(jobs, nothing).len(), 1);
    l.handle(NodeEvent::Finished(vec![ok(1, &[5u8; 100])]), t0);
    let (sent, other) = c.drain(&mut l);
    assert!(sent.is_empty() && matches!(other[..], [NodeAction::Spill { .. }]));
    assert_eq!(l.jobs_waiting(), 1, "parked while x is written");
    let failed = NodeEvent::Spilled {
        id: x,
        result: Err(vec![5u8; 100]),
    };
    l.handle(failed, t0);
    let (sent, _) = c.drain(&mut l);
    let done = done_of(&sent);
    assert_eq!((done[0].id, done[0].kept), (1, None));
    assert_eq!(done[0].result.as_ref().unwrap().as_slice(), &[5u8; 100][..]);
    assert!(sent.contains(&NodeMsg::Returned(vec![(2, 1)])), "{sent:?}");
    assert_eq!(
        (l.kept(), l.jobs_waiting(), l.credit_used().0),
        ((0, 0), 0, 0)
    );
}

#[test]
fn a_spilled_value_that_does_not_read_back_is_lost_never_handed_out() {
    let t0 = Instant::now();
    let (mut l, mut c) = spilling(t0);
    let x = SharedId::of(b"x");
    spill_one(&mut l, &mut c, x, t0);
    l.handle(
        NodeEvent::Spilled {
            id: x,
            result: Ok(()),
        },
        t0,
    );
    c.drain(&mut l);
    // The driver could not read it back for a job: asked for, handed back.
    let jobs = run_jobs(&mut l, &mut c, vec![job_naming(2, &[x])], t0);
    assert!(l.with_shared(jobs, nothing).is_empty());
    let (sent, _) = c.drain(&mut l);
    assert!(sent.contains(&NodeMsg::NeedShared(vec![x])), "{sent:?}");
    assert!(sent.contains(&NodeMsg::Returned(vec![(2, 1)])), "{sent:?}");
    assert_eq!(l.kept(), (0, 0), "forgotten");
    // A later fetch reads nothing back: only the node's exports may have
    // it, and they do not.
    c.feed(&mut l, &ClientMsg::Run(vec![fetch(3, x)]), t0);
    let (_, other) = c.drain(&mut l);
    let asked = NodeAction::FetchExported {
        id: 3,
        attempt: 1,
        value: x,
    };
    assert_eq!(other, vec![asked]);
    let answer = NodeEvent::Exported {
        id: 3,
        attempt: 1,
        value: x,
        bytes: None,
    };
    l.handle(answer, t0);
    let (sent, _) = c.drain(&mut l);
    let err = done_of(&sent)[0].result.clone().unwrap_err();
    assert_eq!(err.kind, ErrorKind::NodeLost, "{err}");
    assert!(err.message.contains("not on this node"), "{err}");
}

#[test]
fn a_fetch_whose_read_back_fails_hears_the_value_is_lost() {
    let t0 = Instant::now();
    let (mut l, mut c) = spilling(t0);
    let x = SharedId::of(b"x");
    spill_one(&mut l, &mut c, x, t0);
    l.handle(
        NodeEvent::Spilled {
            id: x,
            result: Ok(()),
        },
        t0,
    );
    c.drain(&mut l);
    c.feed(&mut l, &ClientMsg::Run(vec![fetch(3, x)]), t0);
    c.drain(&mut l);
    let corrupt = NodeEvent::ReadBack {
        value: x,
        fetch: 3,
        attempt: 1,
        bytes: None,
    };
    l.handle(corrupt, t0);
    let (sent, other) = c.drain(&mut l);
    let err = done_of(&sent)[0].result.clone().unwrap_err();
    assert_eq!(err.kind, ErrorKind::NodeLost, "{err}");
    assert!(
        other.contains(&NodeAction::DropSpilled(vec![x])),
        "{other:?}"
    );
    assert_eq!((l.kept(), l.credit_used().0), ((0, 0), 0));
}

#[test]
fn with_spill_off_a_result_over_the_memory_room_comes_back_in_full() {
    let t0 = Instant::now();
    let (mut l, mut c) = spilling(t0);
    l.set_spill_room(0);
    let x = SharedId::of(b"x");
    let jobs = run_jobs(&mut l, &mut c, vec![keeping(1, x, &[])], t0);
    l.with_shared(jobs, nothing);
    l.handle(NodeEvent::Finished(vec![ok(1, &[5u8; 100])]), t0);
    let (sent, other) = c.drain(&mut l);
    assert!(other.is_empty(), "{other:?}");
    let done = done_of(&sent);
    assert_eq!(
        (done[0].kept, done[0].result.as_ref().map(|b| b.len())),
        (None, Ok(100))
    );
}
