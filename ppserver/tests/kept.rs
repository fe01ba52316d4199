//! Kept results over a real connection (issue 28): a job's result kept on
//! the node and fetched, a job parked on a result in flight, per-connection
//! ids, and the bounds (`--max-memory`, the credit window).

mod common;

use common::{authenticated, Node, Session};
use ppcore::wire::{ClientMsg, DoneJob, KeepOp, NodeMsg, NodeStatus, RunJob};
use ppcore::SharedId;
use serde_bytes::ByteBuf;

fn echo(id: u64, bytes: &[u8], shared: &[SharedId], keep: Option<KeepOp>) -> RunJob {
    let args = ppcore::encode(&(ByteBuf::from(bytes.to_vec()),)).unwrap();
    RunJob {
        id,
        attempt: 1,
        name: <jobs::echo_bytes as ppcore::Job>::NAME.into(),
        args: ByteBuf::from(args),
        program: None,
        shared: shared.to_vec(),
        keep,
        journal: None,
        request: None,
    }
}

fn fetch(id: u64, value: SharedId) -> RunJob {
    RunJob {
        name: String::new(),
        args: ByteBuf::new(),
        ..echo(id, b"", &[], Some(KeepOp::Fetch(value)))
    }
}

/// The next `Done` results (skipping other messages), `n` of them.
fn done(s: &mut Session, n: usize) -> Vec<DoneJob> {
    let mut out = Vec::new();
    while out.len() < n {
        match s.recv() {
            Ok(NodeMsg::Done(d)) => out.extend(d),
            Ok(_) => {}
            Err(e) => panic!("{e} after {out:?}"),
        }
    }
    out
}

fn status(s: &mut Session) -> NodeStatus {
    assert!(s.send(&ClientMsg::Status));
    loop {
        match s.recv() {
            Ok(NodeMsg::Status(st)) => return st,
            Ok(_) => {}
            Err(e) => panic!("{e}"),
        }
    }
}

fn keep_then_park_then_fetch(node: &Node) {
    let mut s = authenticated(node);
    let x = SharedId::of(b"my name for it");
    let jobs = vec![
        echo(1, b"first", &[], Some(KeepOp::Keep(x))),
        // Names the result in flight: parks, then runs once it is kept.
        echo(2, b"second", &[x], None),
        fetch(3, x),
    ];
    assert!(s.send(&ClientMsg::Run(jobs)));
    let mut got = done(&mut s, 3);
    got.sort_by_key(|d| d.id);
    assert!(got[0].kept.is_some(), "{:?}", got[0]);
    assert_eq!(got[0].result.as_ref().map(|b| b.len()), Ok(0));
    let second: ByteBuf = ppcore::decode(got[1].result.as_ref().unwrap()).unwrap();
    assert_eq!(second.as_slice(), b"second", "the parked job ran");
    let fetched: ByteBuf = ppcore::decode(got[2].result.as_ref().unwrap()).unwrap();
    assert_eq!(fetched.as_slice(), b"first", "the fetch has the kept bytes");
    let st = status(&mut s);
    assert_eq!((st.kept_values, st.jobs_waiting), (1, 0));
    assert_eq!(st.kept_bytes, got[0].kept.unwrap());
    // Another connection cannot name it.
    let mut other = authenticated(node);
    assert!(other.send(&ClientMsg::Run(vec![echo(1, b"x", &[x], None)])));
    let mut asked = false;
    loop {
        match other.recv() {
            Ok(NodeMsg::NeedShared(ids)) => asked = ids == vec![x],
            Ok(NodeMsg::Returned(back)) => break assert_eq!(back, vec![(1, 1)]),
            Ok(NodeMsg::Pong(_)) => {}
            Ok(m) => panic!("{m:?}"),
            Err(e) => panic!("{e}"),
        }
    }
    assert!(asked, "the other connection is asked for the value");
    // Unshare frees it.
    assert!(s.send(&ClientMsg::Unshare(vec![x])));
    let st = status(&mut s);
    assert_eq!((st.kept_values, st.kept_bytes), (0, 0));
    assert!(s.send(&ClientMsg::Run(vec![fetch(9, x)])));
    let gone = done(&mut s, 1);
    assert_eq!(
        gone[0].result.as_ref().unwrap_err().kind,
        ppcore::ErrorKind::NodeLost
    );
}

#[test]
fn a_kept_result_is_fetched_and_a_job_naming_it_waits_for_it() {
    let node = Node::start(&["--workers", "2"]);
    keep_then_park_then_fetch(&node);
}

#[test]
fn kept_results_work_the_same_with_process_isolation() {
    let node = Node::start(&["--workers", "2", "--isolation", "process"]);
    keep_then_park_then_fetch(&node);
}

#[test]
fn a_result_over_max_memory_comes_back_in_full_and_nothing_is_kept() {
    let node = Node::start(&["--workers", "1", "--max-memory", "1M", "--spill-max", "0"]);
    let mut s = authenticated(&node);
    let x = SharedId::of(b"big");
    let big = vec![7u8; 600 << 10];
    let jobs = vec![echo(1, &big, &[], Some(KeepOp::Keep(x)))];
    assert!(s.send(&ClientMsg::Run(jobs)));
    let got = done(&mut s, 1);
    assert_eq!(got[0].kept, None);
    let back: ByteBuf = ppcore::decode(got[0].result.as_ref().unwrap()).unwrap();
    assert_eq!(back.len(), big.len());
    let st = status(&mut s);
    assert_eq!((st.kept_values, st.kept_bytes), (0, 0));
}

#[test]
fn a_flood_of_keep_jobs_is_bounded_by_max_memory_and_the_node_keeps_serving() {
    let node = Node::start(&["--workers", "2", "--max-memory", "8M", "--spill-max", "0"]);
    let mut s = authenticated(&node);
    let payload = vec![1u8; 256 << 10];
    let mut kept = 0u64;
    for round in 0..8u64 {
        let jobs: Vec<RunJob> = (0..8u64)
            .map(|n| {
                let id = round * 8 + n;
                echo(
                    id,
                    &payload,
                    &[],
                    Some(KeepOp::Keep(SharedId::of(&id.to_le_bytes()))),
                )
            })
            .collect();
        assert!(s.send(&ClientMsg::Run(jobs)));
        let mut answered = 0;
        while answered < 8 {
            match s.recv() {
                Ok(NodeMsg::Done(d)) => {
                    answered += d.len();
                    kept += d.iter().filter(|d| d.kept.is_some()).count() as u64;
                }
                Ok(NodeMsg::Returned(b)) => answered += b.len(),
                Ok(_) => {}
                Err(e) => panic!("{e}"),
            }
        }
    }
    let st = status(&mut s);
    assert_eq!(st.kept_values, kept);
    assert!(st.kept_bytes <= 8 << 20, "{} bytes kept", st.kept_bytes);
    assert!(kept < 64, "not all 16 MiB fit in 8 MiB");
    common::still_serves(&node, 4);
    drop(s);
}
