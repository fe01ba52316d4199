//! Nobody takes a node's capacity away by keeping to the protocol's letter:
//! strangers have slots of their own (overall and per address), each
//! connection has a credit window, and the node's memory has a budget.
//! Attackers connect from 127.0.0.2 and up, the well-behaved client from
//! 127.0.0.1.

mod common;

use common::{
    authenticated_on, connect_from, handshake_on, key, reject_reason, Node, Session, SECRET,
};
use ppcore::wire::{ClientMsg, NodeMsg, RunJob};
use serde_bytes::ByteBuf;
use std::net::TcpStream;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

fn client(node: &Node) -> ppclient::Server {
    ppclient::Server::builder()
        .ncpus(0)
        .secret(SECRET.as_str())
        .nodes([node.name()])
        .build()
        .unwrap()
}

fn status(node: &Node) -> ppcore::wire::NodeStatus {
    ppclient::node_status(&node.name(), SECRET.as_str(), Duration::from_secs(5)).unwrap()
}

/// `n` echo jobs from a well-behaved client all succeed.
fn still_serves(node: &Node, n: u64) {
    let server = client(node);
    let handles: Vec<_> = (0..n)
        .map(|i| server.submit(jobs::echo_u64, (i,)))
        .collect();
    for (i, h) in handles.into_iter().enumerate() {
        assert_eq!(h.wait_timeout(WAIT).expect("resolves"), Ok(i as u64));
    }
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

/// A session from `from` once the node lets one in (strangers that just
/// left may still be counted for a moment).
fn authenticated_eventually(node: &Node, from: [u8; 4]) -> Session {
    common::eventually_some(Duration::from_secs(10), || {
        let s = connect_from(node, from);
        let Ok(mut session) = handshake_on(s.try_clone().unwrap(), &key()) else {
            drop(s.shutdown(std::net::Shutdown::Both));
            return None;
        };
        assert!(session.send(&ClientMsg::Ping(0)));
        match session.recv() {
            Ok(NodeMsg::Welcome { .. }) => Some(session),
            _ => None,
        }
    })
    .expect("never let in")
}

/// Sends `Ping(n)` and reads until its `Pong`: the ids of the jobs the node
/// handed back on the way.
fn returned_until_pong(s: &mut Session, n: u64) -> Vec<u64> {
    assert!(s.send(&ClientMsg::Ping(n)));
    let mut back = Vec::new();
    for _ in 0..100_000 {
        match s.recv() {
            Ok(NodeMsg::Pong(m)) if m == n => return back,
            Ok(NodeMsg::Returned(jobs)) => back.extend(jobs.into_iter().map(|(id, _)| id)),
            Ok(_) => {}
            Err(e) => panic!("connection ended before the Pong: {e}"),
        }
    }
    panic!("no Pong")
}

/// The node's resident memory, from /proc.
fn rss_bytes(node: &Node) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", node.child.id())).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

#[test]
fn a_flood_of_idle_strangers_never_takes_a_clients_slot() {
    let node = Node::start(&["--handshake-timeout", "60"]);
    // 256 idle sockets from 16 addresses (16 each, the per-source cap):
    // 64 (--max-unauthenticated) are held at a time; each newcomer evicts
    // the oldest, and so does our client.
    let flood: Vec<TcpStream> = (2..18)
        .flat_map(|last| (0..16).map(move |_| [127, 0, 0, last]))
        .map(|from| connect_from(&node, from))
        .collect();
    still_serves(&node, 20);
    // Strangers never hold more than their 64 slots, plus as many evicted
    // ones still closing (and our status query).
    let st = status(&node);
    assert!(
        st.connections <= 2 * 64 + 2,
        "{} connections open: strangers went over their limit",
        st.connections
    );
    drop(flood);
}

#[test]
fn a_client_completes_its_handshakes_while_a_neighbour_holds_idle_sockets_from_its_address() {
    let node = Node::start(&["--handshake-timeout", "60"]);
    // A neighbour behind the client's address (a shared NAT, a login node)
    // holds 20 idle sockets, over the per-source cap of 16: each newcomer
    // evicts the oldest stranger from that address, who is told why.
    let mut held: Vec<TcpStream> = (0..20)
        .map(|_| connect_from(&node, [127, 0, 0, 2]))
        .collect();
    let reason = reject_reason(held.remove(0));
    assert!(reason.contains("evicted"), "{reason}");
    // The neighbour opens one more before each of the client's handshakes,
    // so 16 or more of its sockets from that address are always there.
    let mut done = 0;
    for _ in 0..40 {
        held.push(connect_from(&node, [127, 0, 0, 2]));
        if handshake_on(connect_from(&node, [127, 0, 0, 2]), &key()).is_ok() {
            done += 1;
        }
    }
    assert!(done >= 20, "only {done} of 40 handshakes completed");
    // Another address is never touched by that address's evictions.
    let _other = authenticated_on(connect_from(&node, [127, 0, 0, 3]));
    still_serves(&node, 4);
    drop(held);
}

#[test]
fn a_newcomer_evicts_the_oldest_idle_stranger_and_clients_keep_their_own_limit() {
    let node = Node::start(&[
        "--max-unauthenticated",
        "4",
        "--max-connections",
        "2",
        "--handshake-timeout",
        "60",
    ]);
    let mut held: Vec<TcpStream> = (0..4)
        .map(|_| connect_from(&node, [127, 0, 0, 2]))
        .collect();
    // The strangers' slots are full: a client still gets in, and the
    // oldest stranger is told why it goes.
    let mut a = authenticated_on(connect_from(&node, [127, 0, 0, 1]));
    let reason = reject_reason(held.remove(0));
    assert!(reason.contains("evicted"), "{reason}");
    let mut b = authenticated_eventually(&node, [127, 0, 0, 1]);
    // The Welcome comes before the node has read our first sealed frame: a
    // round trip makes sure it counts both as clients.
    assert!(returned_until_pong(&mut a, 1).is_empty());
    assert!(returned_until_pong(&mut b, 1).is_empty());
    // Two clients: the clients' limit, whatever the strangers do.
    let reason = reject_reason(connect_from(&node, [127, 0, 0, 5]));
    assert!(
        reason.contains("too many connections (limit 2)"),
        "{reason}"
    );
    drop((a, b, held));
}

#[test]
fn a_client_flooding_past_its_credit_window_does_not_grow_the_nodes_queue() {
    let node = Node::start(&["--workers", "1", "--credit-jobs", "4"]);
    let mut s = authenticated_on(connect_from(&node, [127, 0, 0, 2]));
    let sleep = <jobs::sleep_ms as ppcore::Job>::NAME;
    let echo = <jobs::echo_u64 as ppcore::Job>::NAME;
    // One job longer than the test holds the only worker; then 500 more,
    // far past the window.
    assert!(s.send(&ClientMsg::Run(vec![job(
        0,
        sleep,
        ppcore::encode(&(60_000u64,)).unwrap()
    )])));
    let flood: Vec<RunJob> = (1..=500)
        .map(|id| job(id, echo, ppcore::encode(&(id,)).unwrap()))
        .collect();
    assert!(s.send(&ClientMsg::Run(flood)));
    // The node still reads control frames while the window is full, and
    // hands back every job past it.
    let back = returned_until_pong(&mut s, 42);
    assert_eq!(back, (4..=500).collect::<Vec<_>>());
    let st = status(&node);
    assert!(st.jobs_active <= 4, "{} jobs queued", st.jobs_active);
}

#[test]
fn a_flood_of_big_submissions_keeps_the_node_within_max_memory() {
    const MAX_MEMORY: u64 = 16 << 20;
    let node = Node::start(&[
        "--workers",
        "1",
        "--max-memory",
        "16M",
        "--credit-jobs",
        "100000",
        "--credit-bytes",
        "64G",
    ]);
    let mut s = authenticated_on(connect_from(&node, [127, 0, 0, 2]));
    let before = rss_bytes(&node);
    let sleep = <jobs::sleep_ms as ppcore::Job>::NAME;
    let echo = <jobs::echo_bytes as ppcore::Job>::NAME;
    assert!(s.send(&ClientMsg::Run(vec![job(
        0,
        sleep,
        ppcore::encode(&(60_000u64,)).unwrap()
    )])));
    // 128 MiB of arguments, 8 times the budget, while the only worker
    // sleeps (longer than the test: nothing it queued runs, or frees room).
    for id in 1..=128 {
        let args = ppcore::encode(&(ByteBuf::from(vec![id as u8; 1 << 20]),)).unwrap();
        assert!(s.send(&ClientMsg::Run(vec![job(id, echo, args)])));
    }
    let back = returned_until_pong(&mut s, 7);
    let grown = rss_bytes(&node).saturating_sub(before);
    assert!(
        back.len() >= 128 - 16,
        "only {} of 128 jobs handed back (RSS grew by {} MiB)",
        back.len(),
        grown >> 20
    );
    // What clients make the node hold stays within the budget (the read
    // buffer of one frame and the allocator's slack come on top).
    assert!(
        grown <= MAX_MEMORY + (8 << 20),
        "RSS grew by {} MiB with --max-memory 16M",
        grown >> 20
    );
}

#[test]
fn jobs_refused_for_memory_are_retried_and_none_is_lost() {
    let node = Node::start(&[
        "--workers",
        "1",
        "--max-memory",
        "300K",
        "--credit-bytes",
        "1G",
    ]);
    // Room for one job of 256 KiB: the second of every batch is handed
    // back, and the client sends it again.
    let server = client(&node);
    let handles: Vec<_> = (0..48u8)
        .map(|i| server.submit(jobs::echo_bytes, (ByteBuf::from(vec![i; 256 << 10]),)))
        .collect();
    for (i, h) in handles.into_iter().enumerate() {
        let got = h.wait_timeout(WAIT).expect("resolves").expect("succeeds");
        assert_eq!(got.as_slice(), &vec![i as u8; 256 << 10][..]);
    }
    let stats = server.stats();
    assert_eq!((stats.succeeded, stats.failed), (48, 0));
    assert!(stats.retried > 0, "the node never refused a job");
}

/// The node's peak resident memory, from /proc.
fn peak_rss_bytes(node: &Node) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", node.child.id())).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

#[test]
fn half_sent_streams_count_against_max_memory_and_their_jobs_are_handed_back() {
    use ppcore::stream::{StreamFrame, MAX_CHUNK};
    const MIB: u64 = 1 << 20;
    let node = Node::start(&[
        "--workers",
        "2",
        "--max-memory",
        "16M",
        "--credit-jobs",
        "1000",
        "--credit-bytes",
        "64G",
    ]);
    let mut s = authenticated_on(connect_from(&node, [127, 0, 0, 2]));
    let before = peak_rss_bytes(&node);
    let sleep = <jobs::sleep_ms as ppcore::Job>::NAME;
    let echo = <jobs::echo_bytes as ppcore::Job>::NAME;
    // One worker sleeps longer than the test; the other serves the rest.
    assert!(s.send(&ClientMsg::Run(vec![job(
        0,
        sleep,
        ppcore::encode(&(60_000u64,)).unwrap()
    )])));
    // Eight 8 MiB arguments (64 MiB, 4 times the budget), sent as streams
    // all open at once: every start, then every chunk but the last of each.
    let args: Vec<Vec<u8>> = (1..=8u8)
        .map(|i| ppcore::encode(&(ByteBuf::from(vec![i; 8 << 20]),)).unwrap())
        .collect();
    for (i, a) in args.iter().enumerate() {
        let (id, len) = (i as u64 + 1, a.len() as u64);
        assert!(s.send(&ClientMsg::Stream(StreamFrame::Start { id, len })));
    }
    let chunks: Vec<Vec<&[u8]>> = args.iter().map(|a| a.chunks(MAX_CHUNK).collect()).collect();
    for k in 0..chunks[0].len() - 1 {
        for (i, c) in chunks.iter().enumerate() {
            let frame = StreamFrame::Chunk {
                id: i as u64 + 1,
                offset: (k * MAX_CHUNK) as u64,
                data: ByteBuf::from(c[k].to_vec()),
            };
            assert!(s.send(&ClientMsg::Stream(frame)));
        }
    }
    // Each stream's last chunk, then the job that claims it.
    for (i, c) in chunks.iter().enumerate() {
        let k = c.len() - 1;
        let id = i as u64 + 1;
        let frame = StreamFrame::Chunk {
            id,
            offset: (k * MAX_CHUNK) as u64,
            data: ByteBuf::from(c[k].to_vec()),
        };
        assert!(s.send(&ClientMsg::Stream(frame)));
        let mut run = job(id, echo, Vec::new());
        run.args = ByteBuf::new();
        assert!(s.send(&ClientMsg::RunStreamed {
            stream: id,
            job: run
        }));
    }
    let back = returned_until_pong(&mut s, 9);
    let grown = peak_rss_bytes(&node).saturating_sub(before);
    // The first fits and waits for the worker; the others were refused at
    // their start, their bytes dropped as they came.
    assert!(
        back.len() >= 6,
        "only {back:?} of 8 jobs handed back (peak RSS grew by {} MiB)",
        grown / MIB
    );
    assert!(
        grown <= 16 * MIB + 16 * MIB,
        "peak RSS grew by {} MiB with --max-memory 16M",
        grown / MIB
    );
    still_serves(&node, 20);
}
