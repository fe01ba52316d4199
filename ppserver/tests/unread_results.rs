//! Clients that stop reading results larger than a frame (issue 25,
//! finding 2): such results leave as streams, and before the send window
//! they piled up in the node without bound (530 MiB for 514 MiB of results
//! under `--max-memory 64M`). Now a result waits, keeping its job's credit
//! and counted against `--max-memory`, while the connection's unsent bytes
//! are at the window, and new work is handed back while the node is full:
//! the node's peak resident memory stays within twice `--max-memory` plus a
//! fixed base, the connection is still dropped by `--write-timeout`, and a
//! client that reads again gets every result exactly once.

mod common;

use common::{authenticated_on, connect_from, still_serves, Node, Session};
use ppcore::stream::{StreamFrame, MAX_CHUNK};
use ppcore::wire::{ClientMsg, NodeMsg, RunJob};
use serde_bytes::ByteBuf;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

const MIB: u64 = 1 << 20;
/// Each job's argument and result: 4 MiB, over a frame's inline limit
/// (1 MiB), so both travel as streams.
const PAYLOAD: usize = 4 << 20;
const MAX_MEMORY: u64 = 64 * MIB;
/// What the node may hold beyond its baseline besides twice its budget:
/// the two workers' copies of the job they run (its decoded argument and
/// its encoded result, 4 MiB each), the stream being read (4 MiB), the
/// socket read buffer and the allocator's slack around 4 MiB blocks.
const ALLOWANCE: u64 = 32 * MIB;

/// A line of the node's /proc status, in bytes.
fn status_bytes(node: &Node, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", node.child.id())).unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

/// The node's resident memory once it has served a client (threads and
/// buffers warmed up): the base of the bound.
fn warm_rss(node: &Node) -> u64 {
    still_serves(node, 4);
    status_bytes(node, "VmRSS:")
}

fn assert_peak_within(node: &Node, base: u64, what: &str) {
    let peak = status_bytes(node, "VmHWM:");
    let bound = base + 2 * MAX_MEMORY + ALLOWANCE;
    eprintln!(
        "{what}: peak RSS {} MiB (base {} MiB, bound {} MiB)",
        peak / MIB,
        base / MIB,
        bound / MIB
    );
    assert!(
        peak <= bound,
        "{what}: peak RSS {} MiB over {} MiB (base {} MiB + 2 x 64 MiB + {} MiB)",
        peak / MIB,
        bound / MIB,
        base / MIB,
        ALLOWANCE / MIB
    );
}

/// An authenticated session from 127.0.0.2 whose writes give up after 20 s
/// (a node that stopped reading fails the test instead of hanging it).
fn session(node: &Node) -> Session {
    let s = authenticated_on(connect_from(node, [127, 0, 0, 2]));
    s.stream
        .set_write_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    s
}

/// The arguments of job `id`: 4 MiB of its low byte.
fn args(id: u64) -> Vec<u8> {
    ppcore::encode(&(ByteBuf::from(vec![id as u8; PAYLOAD]),)).unwrap()
}

/// Sends echo job `id` with its arguments as stream `stream`, as a client
/// does for arguments over a frame; false if a write failed.
fn send_streamed(s: &mut Session, id: u64, stream: u64) -> bool {
    let args = args(id);
    let start = StreamFrame::Start {
        id: stream,
        len: args.len() as u64,
    };
    if !s.send(&ClientMsg::Stream(start)) {
        return false;
    }
    for (i, part) in args.chunks(MAX_CHUNK).enumerate() {
        let chunk = StreamFrame::Chunk {
            id: stream,
            offset: (i * MAX_CHUNK) as u64,
            data: ByteBuf::from(part.to_vec()),
        };
        if !s.send(&ClientMsg::Stream(chunk)) {
            return false;
        }
    }
    let job = RunJob {
        id,
        attempt: 1,
        name: <jobs::echo_bytes as ppcore::Job>::NAME.into(),
        args: ByteBuf::new(),
        program: None,
        shared: Vec::new(),
        keep: None,
        journal: None,
        request: None,
    };
    s.send(&ClientMsg::RunStreamed { stream, job })
}

#[test]
fn a_client_that_never_reads_big_results_holds_the_node_within_twice_max_memory_until_the_write_timeout(
) {
    let node = Node::start(&[
        "--workers",
        "2",
        "--max-memory",
        "64M",
        "--write-timeout",
        "5",
    ]);
    let base = warm_rss(&node);
    let mut s = session(&node);
    // 512 MiB of results, eight times the budget. The node may drop the
    // client before all is sent (its writes stalled for 5 s): then the
    // rest is not sent.
    let sent = (1..=128)
        .take_while(|&id| send_streamed(&mut s, id, id))
        .count();
    assert!(sent >= 16, "only {sent} jobs could be sent");
    let dropped = node.wait_log("no write progress", Duration::from_secs(60), |_| true);
    assert!(dropped, "the write timeout did not drop the client");
    assert_peak_within(&node, base, "a client that never reads");
    still_serves(&node, 20);
    drop(s);
}

/// What a reading client collects: results by job id (each exactly once),
/// the streams under way, and the jobs handed back to send again.
#[derive(Default)]
struct Reader {
    results: BTreeMap<u64, Vec<u8>>,
    streams: HashMap<u64, Vec<u8>>,
    back: Vec<u64>,
}

impl Reader {
    fn result(&mut self, id: u64, bytes: Vec<u8>) {
        let got: ByteBuf = ppcore::decode(&bytes).unwrap();
        let old = self.results.insert(id, got.into_vec());
        assert!(old.is_none(), "job {id}'s result came twice");
    }

    /// Takes one message from the node.
    fn take(&mut self, msg: NodeMsg) {
        match msg {
            NodeMsg::Stream(StreamFrame::Start { id, len }) => {
                self.streams.insert(id, Vec::with_capacity(len as usize));
            }
            NodeMsg::Stream(StreamFrame::Chunk { id, data, .. }) => {
                self.streams.get_mut(&id).unwrap().extend_from_slice(&data);
            }
            NodeMsg::DoneStreamed { stream, job } => {
                let bytes = self.streams.remove(&stream).unwrap();
                self.result(job.id, bytes);
            }
            NodeMsg::Done(done) => {
                for d in done {
                    let bytes = d.result.unwrap_or_else(|e| panic!("job {}: {e}", d.id));
                    self.result(d.id, bytes.into_vec());
                }
            }
            NodeMsg::Returned(jobs) => self.back.extend(jobs.iter().map(|(id, _)| *id)),
            NodeMsg::Pong(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[test]
fn a_client_that_reads_again_gets_every_big_result_exactly_once_within_twice_max_memory() {
    const JOBS: u64 = 64;
    let node = Node::start(&[
        "--workers",
        "2",
        "--max-memory",
        "64M",
        "--write-timeout",
        "120",
    ]);
    let base = warm_rss(&node);
    let mut s = session(&node);
    // 256 MiB of results, not read: far more than the sockets' buffers
    // take, so the node holds what it made.
    for id in 1..=JOBS {
        assert!(send_streamed(&mut s, id, id), "job {id} not sent");
    }
    node.wait_lines("job ended", 8);
    assert_peak_within(&node, base, "a client not reading");
    // Reads again; sends again what the node handed back (it was full).
    let mut r = Reader::default();
    let mut next_stream = JOBS + 1;
    for _ in 0..100_000 {
        if r.results.len() as u64 == JOBS {
            break;
        }
        r.take(s.recv().expect("the node keeps the connection"));
        for id in std::mem::take(&mut r.back) {
            assert!(
                send_streamed(&mut s, id, next_stream),
                "job {id} not sent again"
            );
            next_stream += 1;
        }
    }
    assert_eq!(r.results.len() as u64, JOBS, "not every result came");
    for (id, bytes) in &r.results {
        assert!(
            bytes.len() == PAYLOAD && bytes.iter().all(|&b| b == *id as u8),
            "job {id}'s result is wrong"
        );
    }
    assert_peak_within(&node, base, "a client that read again");
    still_serves(&node, 20);
}

/// Echo job `id` with 512 KiB of arguments inline: its result travels in
/// a `Done` frame, through the node's outbox.
fn inline_job(id: u64) -> RunJob {
    let args = ppcore::encode(&(ByteBuf::from(vec![id as u8; 512 << 10]),)).unwrap();
    RunJob {
        id,
        attempt: 1,
        name: <jobs::echo_bytes as ppcore::Job>::NAME.into(),
        args: ByteBuf::from(args),
        program: None,
        shared: Vec::new(),
        keep: None,
        journal: None,
        request: None,
    }
}

#[test]
fn idle_connections_that_read_a_late_backlog_give_its_memory_back() {
    const CONNS: u8 = 8;
    const JOBS: u64 = 40;
    let node = Node::start(&["--workers", "2", "--write-timeout", "120"]);
    let base = warm_rss(&node);
    let mut sessions = Vec::new();
    for i in 0..CONNS {
        let mut s = authenticated_on(connect_from(&node, [127, 0, 0, 2 + i]));
        // 20 MiB of results, read only once all are made: most wait in
        // the node's outbox meanwhile.
        for id in 1..=JOBS {
            assert!(s.send(&ClientMsg::Run(vec![inline_job(id)])));
        }
        node.wait_lines("job ended", JOBS as usize);
        let mut r = Reader::default();
        for _ in 0..10_000 {
            if r.results.len() as u64 == JOBS {
                break;
            }
            r.take(s.recv().expect("the node keeps the connection"));
        }
        assert_eq!(r.results.len() as u64, JOBS);
        assert!(r.back.is_empty(), "the node had room: {:?}", r.back);
        sessions.push(s);
    }
    // Every connection is idle now: their outboxes hold no backlog. What
    // stays: each connection's receive buffer (up to 2 MiB kept) and read
    // buffer, and what the allocator keeps of the freed results (measured:
    // 28 to 49 MiB in all; 152 MiB while each outbox kept its backlog's
    // buffer).
    let mut grown = 0;
    let small = common::eventually(Duration::from_secs(10), || {
        grown = status_bytes(&node, "VmRSS:").saturating_sub(base);
        grown < 96 * MIB
    });
    eprintln!(
        "8 idle connections after a late 20 MiB backlog each: RSS grew by {} MiB",
        grown / MIB
    );
    assert!(
        small,
        "8 idle connections hold {} MiB after reading their backlogs",
        grown / MIB
    );
    still_serves(&node, 4);
    drop(sessions);
}
