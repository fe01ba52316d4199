//! Attacks on the node's newer surfaces (streams, credit window, cancels,
//! admission) by an authenticated but greedy peer and by strangers. Each
//! checks that a well-behaved client from 127.0.0.1 is still served and that
//! the node's resident memory grows by less than a stated bound. Attackers
//! connect from 127.0.0.2 and up.

mod common;

use common::{authenticated_on, connect_from, still_serves, Node, Session};
use ppcore::stream::StreamFrame;
use ppcore::wire::{ClientMsg, NodeMsg, RunJob};
use serde_bytes::ByteBuf;
use std::io::Write;
use std::time::Duration;

const MIB: u64 = 1 << 20;

/// The node's resident memory, from /proc.
fn rss_bytes(node: &Node) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", node.child.id())).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

/// The node's resident memory once it has served a client (its threads and
/// buffers warmed up): the base growth is measured from.
fn warm_rss(node: &Node) -> u64 {
    still_serves(node, 4);
    rss_bytes(node)
}

fn assert_grew_less_than(node: &Node, before: u64, bound: u64, what: &str) {
    let grown = rss_bytes(node).saturating_sub(before);
    eprintln!("{what}: RSS grew by {} KiB", grown >> 10);
    assert!(
        grown < bound,
        "{what}: RSS grew by {} MiB (bound {} MiB)",
        grown / MIB,
        bound / MIB
    );
}

/// An authenticated session from `from`, its first `Pong(0)` read.
fn greedy(node: &Node, from: [u8; 4]) -> Session {
    let mut s = authenticated_on(connect_from(node, from));
    assert_eq!(s.recv(), Ok(NodeMsg::Pong(0)));
    s
}

/// Sends `Ping(n)` and reads until its `Pong`: the node read everything
/// sent before.
fn round_trip(s: &mut Session, n: u64) {
    assert!(s.send(&ClientMsg::Ping(n)));
    for _ in 0..100_000 {
        match s.recv() {
            Ok(NodeMsg::Pong(m)) if m == n => return,
            Ok(_) => {}
            Err(e) => panic!("connection ended before the Pong: {e}"),
        }
    }
    panic!("no Pong")
}

fn job(id: u64, name: &str, args: Vec<u8>) -> RunJob {
    RunJob {
        id,
        attempt: 1,
        name: name.into(),
        args: ByteBuf::from(args),
        program: None,
        shared: Vec::new(),
        keep: None,
        journal: None,
        request: None,
    }
}

fn start(id: u64, len: u64) -> ClientMsg {
    ClientMsg::Stream(StreamFrame::Start { id, len })
}

fn chunk(id: u64, offset: u64, data: &[u8]) -> ClientMsg {
    ClientMsg::Stream(StreamFrame::Chunk {
        id,
        offset,
        data: ByteBuf::from(data.to_vec()),
    })
}

/// Sends `bytes` as chunks of stream `id` from `offset`.
fn send_chunks(s: &mut Session, id: u64, mut offset: u64, bytes: &[u8]) {
    for part in bytes.chunks(MIB as usize) {
        assert!(s.send(&chunk(id, offset, part)));
        offset += part.len() as u64;
    }
}

#[test]
fn greedy_streams_just_under_max_payload_on_many_connections_hold_at_most_that_each() {
    const CONNS: u8 = 6;
    let node = Node::start(&["--max-payload", "4M"]);
    let before = warm_rss(&node);
    // Each connection announces the most it may (4 MiB) and sends all but
    // the last byte, so nothing completes and nothing is claimed.
    let payload = vec![7u8; (4 * MIB - 1) as usize];
    let mut held: Vec<Session> = (0..CONNS)
        .map(|i| {
            let mut s = greedy(&node, [127, 0, 0, 2 + i]);
            assert!(s.send(&start(1, 4 * MIB)));
            send_chunks(&mut s, 1, 0, &payload);
            round_trip(&mut s, 1);
            s
        })
        .collect();
    still_serves(&node, 20);
    // Stream buffers are bounded per connection by --max-payload (they are
    // not counted against --max-memory): 6 × 4 MiB, plus each connection's
    // read buffer (about 4 MiB here) and slack.
    assert_grew_less_than(
        &node,
        before,
        u64::from(CONNS) * 8 * MIB + 16 * MIB,
        "6 connections with a 4 MiB stream open",
    );
    // A second stream past the connection's budget closes that connection.
    let mut s = held.pop().unwrap();
    assert!(s.send(&start(2, 1)));
    let reason = s.reject_reason();
    assert!(reason.contains("over the 4194304-byte limit"), "{reason}");
    still_serves(&node, 4);
    drop(held);
}

#[test]
fn huge_announced_streams_trickled_a_byte_at_a_time_cost_only_what_arrived() {
    let node = Node::start(&[]);
    let before = warm_rss(&node);
    let mut s = greedy(&node, [127, 0, 0, 2]);
    // 64 streams (the most) announcing 16 MiB each: 1 GiB together, the
    // default --max-payload. Each reserves up to 4 MiB, but only the
    // bytes that arrive are ever touched.
    for id in 1..=64 {
        assert!(s.send(&start(id, 16 * MIB)));
    }
    for round in 0..16u64 {
        for id in 1..=64 {
            assert!(s.send(&chunk(id, round, &[round as u8])));
        }
    }
    round_trip(&mut s, 1);
    still_serves(&node, 20);
    assert_grew_less_than(&node, before, 32 * MIB, "64 trickled streams of 16 MiB");
    // One more stream is one too many.
    assert!(s.send(&start(65, 1)));
    let reason = s.reject_reason();
    assert!(reason.contains("more than 64 streams"), "{reason}");
    still_serves(&node, 4);
}

#[test]
fn interleaved_chunks_of_two_streams_run_both_jobs_with_their_own_arguments() {
    let node = Node::start(&[]);
    let echo = <jobs::echo_bytes as ppcore::Job>::NAME;
    let mut s = greedy(&node, [127, 0, 0, 2]);
    let args: Vec<Vec<u8>> = [1u8, 2]
        .iter()
        .map(|&b| ppcore::encode(&(ByteBuf::from(vec![b; 300_000]),)).unwrap())
        .collect();
    let half = args[0].len() / 2;
    assert!(s.send(&start(1, args[0].len() as u64)));
    assert!(s.send(&start(2, args[1].len() as u64)));
    assert!(s.send(&chunk(1, 0, &args[0][..half])));
    assert!(s.send(&chunk(2, 0, &args[1][..half])));
    assert!(s.send(&chunk(1, half as u64, &args[0][half..])));
    assert!(s.send(&ClientMsg::RunStreamed {
        stream: 1,
        job: job(11, echo, Vec::new()),
    }));
    assert!(s.send(&chunk(2, half as u64, &args[1][half..])));
    assert!(s.send(&ClientMsg::RunStreamed {
        stream: 2,
        job: job(12, echo, Vec::new()),
    }));
    let mut results = std::collections::BTreeMap::new();
    for _ in 0..1000 {
        if results.len() == 2 {
            break;
        }
        match s.recv() {
            Ok(NodeMsg::Done(done)) => {
                for d in done {
                    let bytes: ByteBuf = ppcore::decode(&d.result.unwrap()).unwrap();
                    results.insert(d.id, bytes.into_vec());
                }
            }
            Ok(_) => {}
            Err(e) => panic!("connection ended: {e}"),
        }
    }
    assert_eq!(results.get(&11), Some(&vec![1u8; 300_000]));
    assert_eq!(results.get(&12), Some(&vec![2u8; 300_000]));
}

#[test]
fn chunks_for_unknown_streams_and_claims_of_none_close_only_that_connection() {
    let node = Node::start(&[]);
    let echo = <jobs::echo_bytes as ppcore::Job>::NAME;
    let from = [127, 0, 0, 2];
    // A chunk for a stream never started.
    let mut s = greedy(&node, from);
    assert!(s.send(&chunk(99, 0, b"x")));
    let reason = s.reject_reason();
    assert!(reason.contains("not open"), "{reason}");
    // A RunStreamed without any stream.
    let mut s = greedy(&node, from);
    assert!(s.send(&ClientMsg::RunStreamed {
        stream: 5,
        job: job(1, echo, Vec::new()),
    }));
    let reason = s.reject_reason();
    assert!(reason.contains("did not just complete"), "{reason}");
    // A RunStreamed for a stream still incomplete.
    let mut s = greedy(&node, from);
    assert!(s.send(&start(1, 10)));
    assert!(s.send(&chunk(1, 0, b"12345")));
    assert!(s.send(&ClientMsg::RunStreamed {
        stream: 1,
        job: job(1, echo, Vec::new()),
    }));
    let reason = s.reject_reason();
    assert!(reason.contains("did not just complete"), "{reason}");
    // A completed stream nobody claims.
    let mut s = greedy(&node, from);
    assert!(s.send(&start(1, 5)));
    assert!(s.send(&chunk(1, 0, b"12345")));
    assert!(s.send(&ClientMsg::Ping(3)));
    let reason = s.reject_reason();
    assert!(reason.contains("did not claim"), "{reason}");
    // A chunk out of order, and one past a stream's end.
    let mut s = greedy(&node, from);
    assert!(s.send(&start(1, 10)));
    assert!(s.send(&chunk(1, 3, b"12345")));
    let reason = s.reject_reason();
    assert!(reason.contains("expected 0"), "{reason}");
    still_serves(&node, 10);
}

#[test]
fn a_cancel_storm_for_jobs_not_on_the_node_holds_no_memory() {
    const CANCELS: u64 = 1_000_000;
    let node = Node::start(&["--workers", "2"]);
    let before = warm_rss(&node);
    let mut s = greedy(&node, [127, 0, 0, 2]);
    // One job runs longer than the test on one of the two workers, so the
    // connection always has a job on the node; then a million cancels of
    // ids never sent.
    let sleep = <jobs::sleep_ms as ppcore::Job>::NAME;
    let args = ppcore::encode(&(600_000u64,)).unwrap();
    assert!(s.send(&ClientMsg::Run(vec![job(0, sleep, args)])));
    let mut batch = Vec::with_capacity(1 << 20);
    for id in 1..=CANCELS {
        batch.extend(s.frame(&ClientMsg::Cancel { id }));
        if batch.len() >= 1 << 20 || id == CANCELS {
            s.stream.write_all(&batch).unwrap();
            batch.clear();
        }
    }
    round_trip(&mut s, 1);
    still_serves(&node, 20);
    // Before the node dropped cancels for jobs it does not hold, each one
    // stayed in a set while the sleeping job lasted: tens of MiB here.
    assert_grew_less_than(&node, before, 12 * MIB, "a million stray cancels");
}

#[test]
fn a_client_that_floods_jobs_and_never_reads_is_cut_off_and_others_are_served() {
    let node = Node::start(&[
        "--workers",
        "1",
        "--credit-jobs",
        "4",
        "--write-timeout",
        "2",
    ]);
    let before = warm_rss(&node);
    let mut s = greedy(&node, [127, 0, 0, 2]);
    s.stream
        .set_write_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let echo = <jobs::echo_bytes as ppcore::Job>::NAME;
    let args = ppcore::encode(&(ByteBuf::from(vec![9u8; 64 << 10]),)).unwrap();
    // Up to 2048 jobs of 64 KiB (128 MiB), far past the window, and never a
    // byte read back: the node hands them back or runs them, its unwritten
    // results pile up until it stops reading us (and, as we take nothing,
    // --write-timeout cuts us off).
    for id in 0..2048 {
        if !s.send(&ClientMsg::Run(vec![job(id, echo, args.clone())])) {
            break;
        }
    }
    still_serves(&node, 20);
    assert_grew_less_than(&node, before, 64 * MIB, "a client that never reads");
}

#[test]
fn strangers_from_many_addresses_sending_garbage_do_not_stop_a_client() {
    let node = Node::start(&["--handshake-timeout", "60"]);
    let before = warm_rss(&node);
    // 200 addresses, 4 connections each: half announce a 4 GiB frame, half
    // send bytes that are no handshake.
    let mut flood = Vec::new();
    for last in 1..=200u8 {
        for k in 0..4 {
            let mut s = connect_from(&node, [127, 0, 1, last]);
            let bytes: &[u8] = if k % 2 == 0 {
                &[0xff, 0xff, 0xff, 0xff, 1, 2, 3]
            } else {
                &[0, 0, 0, 16, 0xc1, 0xc1, 0xc1, 0xc1, 0xc1, 0xc1, 0xc1, 0xc1]
            };
            // The node may have refused and closed already: that is fine.
            let _ = s.write_all(bytes);
            flood.push(s);
        }
    }
    still_serves(&node, 20);
    assert_grew_less_than(&node, before, 32 * MIB, "800 garbage strangers");
    drop(flood);
    still_serves(&node, 4);
}

#[test]
fn all_attacks_at_once_leave_a_client_served() {
    let node = Node::start(&[
        "--workers",
        "2",
        "--max-payload",
        "8M",
        "--credit-jobs",
        "8",
        "--write-timeout",
        "2",
    ]);
    let before = warm_rss(&node);
    let echo = <jobs::echo_bytes as ppcore::Job>::NAME;
    let sleep = <jobs::sleep_ms as ppcore::Job>::NAME;
    std::thread::scope(|scope| {
        let node = &node;
        // Streams held open just under the limit.
        scope.spawn(move || {
            let mut s = greedy(node, [127, 0, 0, 2]);
            assert!(s.send(&start(1, 8 * MIB)));
            send_chunks(&mut s, 1, 0, &vec![1u8; (8 * MIB - 1) as usize]);
            round_trip(&mut s, 1);
            s
        });
        // Cancels around a sleeping job.
        scope.spawn(move || {
            let mut s = greedy(node, [127, 0, 0, 3]);
            let args = ppcore::encode(&(600_000u64,)).unwrap();
            assert!(s.send(&ClientMsg::Run(vec![job(0, sleep, args)])));
            for id in 1..=20_000 {
                assert!(s.send(&ClientMsg::Cancel { id }));
            }
            round_trip(&mut s, 1);
            s
        });
        // Jobs past the window, never reading.
        scope.spawn(move || {
            let mut s = greedy(node, [127, 0, 0, 4]);
            s.stream
                .set_write_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let args = ppcore::encode(&(ByteBuf::from(vec![9u8; 64 << 10]),)).unwrap();
            for id in 0..1024 {
                if !s.send(&ClientMsg::Run(vec![job(id, echo, args.clone())])) {
                    break;
                }
            }
        });
        // Strangers.
        scope.spawn(move || {
            let flood: Vec<_> = (1..=50u8)
                .map(|last| {
                    let mut s = connect_from(node, [127, 0, 2, last]);
                    let _ = s.write_all(&[0xff, 0xff, 0xff, 0xff]);
                    s
                })
                .collect();
            flood
        });
        still_serves(node, 20);
        assert_grew_less_than(node, before, 64 * MIB, "all attacks at once");
    });
    still_serves(&node, 4);
}

#[test]
fn streams_started_and_aborted_over_and_over_hold_nothing() {
    let node = Node::start(&[]);
    let before = warm_rss(&node);
    let mut s = greedy(&node, [127, 0, 0, 2]);
    // 5000 times: a 16 MiB stream, one byte of it, its abort, and the
    // abort of a stream that never was.
    let mut batch = Vec::new();
    for round in 0..5000u64 {
        batch.extend(s.frame(&start(1, 16 * MIB)));
        batch.extend(s.frame(&chunk(1, 0, &[round as u8])));
        batch.extend(s.frame(&ClientMsg::Stream(StreamFrame::Abort { id: 1 })));
        batch.extend(s.frame(&ClientMsg::Stream(StreamFrame::Abort { id: 1000 + round })));
        if batch.len() >= 1 << 20 {
            s.stream.write_all(&batch).unwrap();
            batch.clear();
        }
    }
    s.stream.write_all(&batch).unwrap();
    round_trip(&mut s, 1);
    still_serves(&node, 20);
    assert_grew_less_than(&node, before, 16 * MIB, "5000 aborted streams");
    // Starting an open stream again is a protocol error.
    assert!(s.send(&start(7, 10)));
    assert!(s.send(&start(7, 10)));
    let reason = s.reject_reason();
    assert!(reason.contains("started twice"), "{reason}");
    still_serves(&node, 4);
}

/// What a job of `s` answered: its result, or the shared values the node
/// asked for (the job handed back).
fn answer_of(s: &mut Session, id: u64) -> Result<Result<ByteBuf, String>, Vec<ppcore::SharedId>> {
    let mut needed = Vec::new();
    for _ in 0..100_000 {
        match s.recv() {
            Ok(NodeMsg::Done(done)) => {
                if let Some(d) = done.into_iter().find(|d| d.id == id) {
                    return Ok(d.result.map_err(|e| e.message));
                }
            }
            Ok(NodeMsg::NeedShared(ids)) => needed = ids,
            Ok(NodeMsg::Returned(back)) if back.iter().any(|(j, _)| *j == id) => {
                return Err(needed)
            }
            Ok(_) => {}
            Err(e) => panic!("connection ended: {e}"),
        }
    }
    panic!("no answer for job {id}")
}

#[test]
fn a_client_cannot_read_another_clients_shared_value_by_naming_its_id() {
    let node = Node::start(&[]);
    // A well-behaved client shares a value; the node holds it while the
    // client keeps its handle.
    let owner = ppclient::Server::builder()
        .ncpus(0)
        .secret(common::SECRET.as_str())
        .nodes([node.name()])
        .build()
        .unwrap();
    let secret_bytes = ByteBuf::from(vec![42u8; 1000]);
    let value = owner.share(secret_bytes).unwrap();
    let sum = owner
        .submit(jobs::shared_byte_sum, (value.clone(), 0, 1000))
        .wait();
    assert_eq!(sum, Ok(42_000));
    // Another client names its id in a job's arguments.
    let mut s = greedy(&node, [127, 0, 0, 2]);
    let args = ppcore::encode(&(ByteBuf::from(value.id().0.to_vec()), 0u64, 1000u64)).unwrap();
    let job = |id, shared| RunJob {
        id,
        attempt: 1,
        name: <jobs::shared_byte_sum as ppcore::Job>::NAME.into(),
        args: ByteBuf::from(args.clone()),
        program: None,
        shared,
        keep: None,
        journal: None,
        request: None,
    };
    // Not listed in the job: the job may not read it.
    assert!(s.send(&ClientMsg::Run(vec![job(1, Vec::new())])));
    let err = answer_of(&mut s, 1)
        .expect("answered")
        .expect_err("refused");
    assert!(err.contains("not among the job's"), "{err}");
    // Listed, but never sent on this connection: asked for, job handed back.
    assert!(s.send(&ClientMsg::Run(vec![job(2, vec![value.id()])])));
    assert_eq!(answer_of(&mut s, 2), Err(vec![value.id()]));
    // Sent with bytes that are not the value's: the connection is closed.
    let fake = vec![0u8; 1000];
    for frame in [
        StreamFrame::Start { id: 1, len: 1000 },
        StreamFrame::Chunk {
            id: 1,
            offset: 0,
            data: ByteBuf::from(fake),
        },
    ] {
        assert!(s.send(&ClientMsg::Stream(frame)));
    }
    assert!(s.send(&ClientMsg::Share {
        id: value.id(),
        stream: 1,
        kept: false,
    }));
    let reason = s.reject_reason();
    assert!(reason.contains("does not match its bytes"), "{reason}");
    // The owner is served on, its value intact.
    let sum = owner.submit(jobs::shared_byte_sum, (value, 10, 20)).wait();
    assert_eq!(sum, Ok(420));
    still_serves(&node, 4);
}
