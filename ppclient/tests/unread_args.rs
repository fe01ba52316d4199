//! A node that stops reading while a client sends it arguments larger than
//! a frame (issue 25, finding 2, the client's side): the client encodes and
//! queues a job's streamed arguments only while its link's unsent bytes are
//! under the send window, so it holds a bounded amount for that node however
//! many such jobs wait, instead of an encoded copy of every one.

use ppcore::wire::{JobInfo, NodeMsg};
use ppcore::{Job, KeySet, NodeAction, NodeEvent, NodeLink, NodeLinkConfig};
use serde_bytes::ByteBuf;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::{Duration, Instant};

const MIB: u64 = 1 << 20;
/// Each job's arguments: 4 MiB, over a frame's inline limit (1 MiB).
const ARGS: usize = 4 << 20;
/// As many jobs as the node has workers, so that the link's job window
/// (workers + prefetch) alone would let every one of them be encoded.
const JOBS: usize = 64;
/// What the client may hold for the node: its send window (32 MiB: twice
/// the 16 MiB frame), one job's arguments over it (4 MiB), its outbox
/// (under 2 MiB and a chunk before the next chunk is framed, in a buffer
/// of up to twice that: 6 MiB), the chunk being framed and sealed (1 MiB),
/// and the allocator's slack around those blocks (measured: 38 to 46 MiB in
/// all; without the window, 262 MiB).
const BOUND: u64 = 56 * MIB;

/// A line of this process's /proc status, in bytes.
fn status_bytes(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

/// A node on 127.0.0.1 that completes one client's handshake, advertises
/// `echo_bytes`, then never reads again (it keeps the socket open until
/// `stop` is dropped). Its address.
fn node_that_stops_reading(keys: KeySet, stop: mpsc::Receiver<()>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        let Ok((mut s, _)) = listener.accept() else {
            return;
        };
        drop(listener); // later dials are refused
        let config = NodeLinkConfig {
            keys,
            handshake_timeout: Duration::from_secs(10),
            heartbeat: Duration::from_secs(1),
            max_frame: ppcore::wire::DEFAULT_MAX_FRAME,
            credit_jobs: 1 << 20,
            credit_bytes: 1 << 40,
            max_payload: ppcore::stream::DEFAULT_MAX_PAYLOAD,
            stream_stall: Duration::from_secs(30),
            send_window: ppcore::window::default_window(ppcore::wire::DEFAULT_MAX_FRAME),
        };
        let welcome = NodeMsg::Welcome {
            node_id: "stuck".into(),
            version: "test".into(),
            workers: 64,
            jobs: vec![JobInfo {
                name: jobs::echo_bytes::NAME.into(),
                signature: jobs::echo_bytes::SIGNATURE.into(),
            }],
            heartbeat_ms: 0,
            caps: vec![],
            max_payload: ppcore::stream::DEFAULT_MAX_PAYLOAD,
            credit_jobs: 0,
            credit_bytes: 0,
            shared_max: 0,
            reach: None,
            offer: None,
        };
        let mut link = NodeLink::new(config, welcome, Instant::now());
        let mut buf = [0u8; 512];
        for _ in 0..1000 {
            let n = match s.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            link.handle(NodeEvent::Received(&buf[..n]), Instant::now());
            let mut authenticated = false;
            while let Some(bytes) = link.poll_transmit() {
                if s.write_all(&bytes).is_err() {
                    return;
                }
            }
            while let Some(action) = link.poll_event() {
                authenticated |= action == NodeAction::Authenticated;
            }
            if authenticated {
                break;
            }
        }
        // From here on nothing is read.
        let _ = stop.recv();
        drop(s);
    });
    addr
}

#[test]
fn a_client_holds_streamed_arguments_within_its_send_window_while_the_node_does_not_read() {
    let secret = ppcore::Key::generate().unwrap().to_text();
    let (stop_tx, stop) = mpsc::channel();
    let addr = node_that_stops_reading(KeySet::parse(&secret).unwrap(), stop);
    let server = ppclient::Server::builder()
        .ncpus(0)
        .secret(secret.as_str())
        .nodes([addr])
        .build()
        .unwrap();
    // Zeroed buffers this large are fresh pages the client never writes:
    // they take no resident memory, its encoded copies do.
    let args: Vec<ByteBuf> = (0..JOBS).map(|_| ByteBuf::from(vec![0u8; ARGS])).collect();
    // The peak is measured from here (clear_refs 5 resets it to now).
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let base = status_bytes("VmRSS:");
    let handles: Vec<_> = args
        .into_iter()
        .map(|a| server.submit(jobs::echo_bytes, (a,)))
        .collect();
    // The client gives the node up when it has heard nothing for three
    // heartbeats (3 s): by then it has sent all it would.
    let (mut was_up, mut down) = (false, false);
    let _down = pptest::eventually(Duration::from_secs(60), || {
        let up = server
            .nodes()
            .iter()
            .any(|n| matches!(n.state, ppclient::NodeState::Up { .. }));
        was_up |= up;
        down = was_up && !up;
        down
    });
    assert!(was_up, "the node never came up");
    assert!(down, "the client never gave up the silent node");
    let grown = status_bytes("VmHWM:").saturating_sub(base);
    eprintln!("the client's peak grew by {} MiB", grown / MIB);
    assert!(
        grown <= BOUND,
        "the client's peak grew by {} MiB for a node that does not read (bound {} MiB)",
        grown / MIB,
        BOUND / MIB
    );
    drop(stop_tx);
    drop(server);
    drop(handles);
}
