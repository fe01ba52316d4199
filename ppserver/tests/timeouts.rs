//! Clients that stop reading or vanish do not pin a node: it drops them,
//! frees their workers, drains on SIGTERM and honours `--idle-timeout`.

mod common;

use common::{authenticated, Node, Session, SECRET};
use ppcore::wire::{ClientMsg, RunJob};
use serde_bytes::ByteBuf;
use std::io::Read;
use std::net::TcpStream;
use std::time::Duration;

const EXIT_WAIT: Duration = Duration::from_secs(30);

/// Sends `n` echo jobs of `size` bytes each, as one client that never
/// reads: the node's results pile up until its writes make no progress.
/// False if the node closed the connection before all were sent.
fn flood_without_reading(s: &mut Session, n: u64, size: usize) -> bool {
    let echo = <jobs::echo_bytes as ppcore::Job>::NAME;
    for id in 0..n {
        let job = RunJob {
            id,
            attempt: 1,
            name: echo.into(),
            args: ByteBuf::from(ppcore::encode(&(ByteBuf::from(vec![7u8; size]),)).unwrap()),
            program: None,
            shared: Vec::new(),
            keep: None,
            journal: None,
            request: None,
        };
        if !s.send(&ClientMsg::Run(vec![job])) {
            return false;
        }
    }
    true
}

/// Reads until the node closes the connection (bounded by the read
/// timeout of `common::connect` and a byte budget); true if it closed.
fn closed_by_node(mut s: TcpStream) -> bool {
    let mut buf = vec![0u8; 1 << 16];
    for _ in 0..100_000 {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) => return e.kind() != std::io::ErrorKind::WouldBlock,
        }
    }
    false
}

fn status(node: &Node) -> ppcore::wire::NodeStatus {
    ppclient::node_status(&node.name(), SECRET.as_str(), Duration::from_secs(5)).unwrap()
}

#[test]
fn a_client_that_stops_reading_is_dropped_and_its_jobs_skipped() {
    let node = Node::start(&["--workers", "1", "--write-timeout", "0.5"]);
    let mut s = authenticated(&node);
    // The node stops waiting on us after 0.5 s without progress and closes
    // (maybe while we are still sending).
    let sent_all = flood_without_reading(&mut s, 400, 256 << 10);
    assert!(
        !sent_all || closed_by_node(s.stream),
        "the node kept a client that does not read"
    );
    // Its queued jobs are skipped: the node is free for others.
    let server = ppclient::Server::builder()
        .ncpus(0)
        .secret(SECRET.as_str())
        .nodes([node.name()])
        .build()
        .unwrap();
    let h = server.submit(jobs::echo_u64, (7,));
    assert_eq!(h.wait_timeout(EXIT_WAIT).expect("node still pinned"), Ok(7));
    let st = status(&node);
    assert!(st.jobs_done < 400, "ran {} jobs nobody reads", st.jobs_done);
}

#[test]
fn sigterm_drain_finishes_with_a_client_that_stopped_reading() {
    let mut node = Node::start(&["--workers", "1", "--write-timeout", "1", "--grace", "1"]);
    let mut s = authenticated(&node);
    let _ = flood_without_reading(&mut s, 50, 256 << 10);
    node.signal("TERM");
    assert_eq!(node.wait_exit(EXIT_WAIT), Some(0), "drain never finished");
    drop(s);
}

#[test]
fn a_vanished_client_is_dropped_after_three_heartbeats_and_idle_timeout_fires() {
    let mut node = Node::start(&["--heartbeat", "0.2", "--idle-timeout", "1"]);
    // Authenticates, then says nothing, never closes: gone without a word.
    let s = authenticated(&node);
    let open = s.stream.try_clone().unwrap();
    let reason = s.reject_reason();
    assert!(reason.contains("silent"), "{reason}");
    // No client left: the idle timeout ends the node although our socket
    // was never closed from this side.
    assert_eq!(node.wait_exit(EXIT_WAIT), Some(0));
    drop(open);
}

#[test]
fn the_heartbeat_is_negotiated_down_to_the_nodes_bound() {
    // The client would ping every 10 s; the node drops clients silent for
    // 3 x 0.2 s. The link agrees on 0.2 s in the handshake, so a job of
    // 1.5 s (with no other traffic) finishes on its first and only attempt.
    let node = Node::start(&["--heartbeat", "0.2", "--workers", "1"]);
    let server = ppclient::Server::builder()
        .ncpus(0)
        .secret(SECRET.as_str())
        .nodes([node.name()])
        .heartbeat(Duration::from_secs(10))
        .build()
        .unwrap();
    let h = server.submit(jobs::sleep_ms, (1_500,));
    assert_eq!(h.wait_timeout(EXIT_WAIT).expect("resolves"), Ok(1_500));
    let s = server.stats();
    assert_eq!(
        (s.succeeded, s.retried),
        (1, 0),
        "the link was never dropped"
    );
}

/// Only authenticated clients keep a node from its idle timeout: a stranger
/// that connects and says nothing (within a long handshake timeout) does not.
#[test]
fn a_stranger_holding_a_connection_does_not_keep_an_idle_node_up() {
    let mut node = Node::start(&["--idle-timeout", "1", "--handshake-timeout", "60"]);
    let stranger = std::net::TcpStream::connect(node.addr).expect("connect");
    assert_eq!(node.wait_exit(Duration::from_secs(30)), Some(0));
    drop(stranger);
}
