//! An on-path attacker between client and node (issue 12): a proxy on
//! loopback that lets the handshake through, then modifies, injects, drops,
//! replays, reorders or truncates one sealed frame. The connection closes
//! (the side that receives the tampered stream refuses it: ppcore's link
//! tests show which, on a fake clock); no forged result is accepted,
//! and the link redials (through the proxy, now honest) and finishes the
//! job. A relay that only passes bytes through (a spoofed discovery answer,
//! or a stranger between a joining node and a listening client) sees no
//! job argument or result in clear.

mod common;

use common::{Node, SECRET};
use ppclient::{ByteBuf, Server};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Tamper {
    Modify,
    Inject,
    Drop,
    Replay,
    Reorder,
    Truncate,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Dir {
    ToNode,
    ToClient,
}

/// What the proxy saw on its first (tampered) connection.
#[derive(Debug, Default)]
struct Seen {
    /// Every byte relayed, both ways, on every connection.
    bytes: Vec<u8>,
    /// Connections accepted.
    conns: usize,
}

/// The most connections one proxy relays (a link that redials after a
/// tampered frame needs a few).
const PROXIED: usize = 64;

/// The first frame whose receiver closed connection 0, once known.
type Closed = mpsc::Receiver<Dir>;

/// A proxy to `target` on loopback. On its first connection it applies
/// `tamper` (if any) to the second sealed frame going `dir`; later
/// connections are relayed untouched. Relays at most [`PROXIED`]
/// connections, each accepted as it comes (the thread blocks in `accept`).
fn proxy(
    target: SocketAddr,
    tamper: Option<(Tamper, Dir)>,
) -> (SocketAddr, Arc<Mutex<Seen>>, Closed) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let (closed_tx, closed_rx) = mpsc::channel();
    let shared = Arc::clone(&seen);
    std::thread::spawn(move || {
        for _ in 0..PROXIED {
            let Ok((client, _)) = listener.accept() else {
                continue;
            };
            let Ok(node) = TcpStream::connect(target) else {
                continue;
            };
            let first = {
                let mut s = shared.lock().unwrap();
                s.conns += 1;
                s.conns == 1
            };
            let tamper = tamper.filter(|_| first);
            for (from, to, dir) in [
                (
                    client.try_clone().unwrap(),
                    node.try_clone().unwrap(),
                    Dir::ToNode,
                ),
                (
                    node.try_clone().unwrap(),
                    client.try_clone().unwrap(),
                    Dir::ToClient,
                ),
            ] {
                let (seen, closed) = (Arc::clone(&shared), closed_tx.clone());
                let mine = tamper.filter(|t| t.1 == dir).map(|t| t.0);
                std::thread::spawn(move || {
                    // Reported only when `from` ended: its side closed the
                    // connection (not when a write to the other side failed).
                    if relay(from, to, mine, &seen) && first {
                        let receiver_of_other = match dir {
                            Dir::ToNode => Dir::ToClient,
                            Dir::ToClient => Dir::ToNode,
                        };
                        let _ = closed.send(receiver_of_other);
                    }
                });
            }
        }
    });
    (addr, seen, closed_rx)
}

/// Relays frames from `from` to `to` until either ends, tampering with the
/// second frame after the handshake's (frame index 2) if asked. True if
/// `from` ended (then both are shut down); false if writing to `to` failed.
fn relay(
    mut from: TcpStream,
    mut to: TcpStream,
    tamper: Option<Tamper>,
    seen: &Mutex<Seen>,
) -> bool {
    let mut held: Option<Vec<u8>> = None;
    for index in 0..100_000 {
        let mut header = [0u8; 4];
        if from.read_exact(&mut header).is_err() {
            break;
        }
        let len = u32::from_be_bytes(header) as usize;
        let mut frame = header.to_vec();
        frame.resize(4 + len, 0);
        if from.read_exact(&mut frame[4..]).is_err() {
            break;
        }
        seen.lock().unwrap().bytes.extend_from_slice(&frame);
        let mut out = Vec::new();
        match tamper.filter(|_| index == 2) {
            None => out.extend_from_slice(&frame),
            Some(Tamper::Modify) => {
                let last = frame.len() - 1;
                frame[4 + (len / 2)] ^= 0x01;
                frame[last] ^= 0x80;
                out.extend_from_slice(&frame);
            }
            Some(Tamper::Inject) => {
                // A frame of the attacker's own: a Run in clear.
                let run = ppcore::wire::ClientMsg::Run(vec![ppcore::wire::RunJob {
                    id: 999,
                    attempt: 1,
                    name: "jobs::echo_u64".into(),
                    args: ByteBuf::from(ppcore::encode(&(666u64,)).unwrap()),
                    program: None,
                    shared: Vec::new(),
                    keep: None,
                    journal: None,
                    request: None,
                }]);
                out.extend(ppcore::encode_frame(&run).unwrap());
                out.extend_from_slice(&frame);
            }
            Some(Tamper::Drop) => {}
            Some(Tamper::Replay) => {
                out.extend_from_slice(&frame);
                out.extend_from_slice(&frame);
            }
            Some(Tamper::Reorder) => {
                held = Some(frame);
                continue;
            }
            Some(Tamper::Truncate) => {
                let cut = len - 5;
                out.extend_from_slice(&(cut as u32).to_be_bytes());
                out.extend_from_slice(&frame[4..4 + cut]);
            }
        }
        if let Some(h) = held.take().filter(|_| index == 3) {
            out.extend(h);
        }
        if to.write_all(&out).is_err() {
            return false;
        }
    }
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
    true
}

/// A client of the node behind `addr` alone, pinging every second (so that
/// frames keep flowing both ways: a dropped frame shows at the next one).
fn client(addr: SocketAddr) -> Server {
    Server::builder()
        .ncpus(0)
        .secret(SECRET.as_str())
        .heartbeat(Duration::from_secs(1))
        .nodes([addr.to_string()])
        .build()
        .unwrap()
}

#[test]
fn a_tampering_proxy_is_refused_in_both_directions() {
    let node = Node::start(&["--workers", "2"]);
    let cases = [
        Tamper::Modify,
        Tamper::Inject,
        Tamper::Drop,
        Tamper::Replay,
        Tamper::Reorder,
        Tamper::Truncate,
    ];
    for dir in [Dir::ToNode, Dir::ToClient] {
        for tamper in cases {
            let (addr, seen, closed) = proxy(node.addr, Some((tamper, dir)));
            let server = client(addr);
            let handles: Vec<_> = (0..4u64)
                .map(|i| server.submit(jobs::echo_u64, (i,)))
                .collect();
            // The tampered connection was closed (which side saw it first
            // is the link state machines' tests: here both sides race to
            // close once one has refused).
            let closed = closed.recv_timeout(Duration::from_secs(20));
            assert!(closed.is_ok(), "{tamper:?} {dir:?}: still open");
            // Every job finishes with its own result (over the redialled,
            // honest connection): nothing forged or injected got through.
            for (i, h) in handles.into_iter().enumerate() {
                let r = h.wait_timeout(Duration::from_secs(30)).expect("resolves");
                assert_eq!(r, Ok(i as u64), "{tamper:?} {dir:?}");
            }
            assert!(seen.lock().unwrap().conns >= 2, "{tamper:?} {dir:?}");
        }
    }
    // The node served every honest connection and ran nothing injected:
    // its finished jobs are the clients' (4 per case, retries included at most).
    let status =
        ppclient::node_status(&node.name(), SECRET.as_str(), Duration::from_secs(5)).unwrap();
    assert!(status.jobs_failed == 0, "{status:?}");
}

/// A payload the relays must never see in clear.
fn marker() -> Vec<u8> {
    b"pp-plaintext-marker-0123456789".repeat(4)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn a_relaying_discovery_answer_reads_nothing() {
    let node = Node::start(&[]);
    let (relay, seen, _) = proxy(node.addr, None);
    // A spoofed answer that points at the relay.
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let via = udp.local_addr().unwrap();
    udp.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    std::thread::spawn(move || {
        let until = Instant::now() + Duration::from_secs(30);
        let mut buf = [0u8; 64];
        while Instant::now() < until {
            if let Ok((_, from)) = udp.recv_from(&mut buf) {
                let reply = ppcore::wire::discovery_reply(relay.port());
                let _ = udp.send_to(reply.as_bytes(), from);
            }
        }
    });
    let server = Server::builder()
        .ncpus(0)
        .secret(SECRET.as_str())
        .discover_via("127.0.0.1", via)
        .build()
        .unwrap();
    let back = server
        .submit(jobs::echo_bytes, (ByteBuf::from(marker()),))
        .wait()
        .unwrap();
    assert_eq!(back.into_vec(), marker());
    let seen = seen.lock().unwrap();
    assert!(!seen.bytes.is_empty(), "the session went through the relay");
    assert!(
        !contains(&seen.bytes, &marker()),
        "the relay read the argument"
    );
}

#[test]
fn a_relaying_joiner_reads_nothing() {
    let server = Server::builder()
        .ncpus(0)
        .secret(SECRET.as_str())
        .listen("127.0.0.1:0")
        .build()
        .unwrap();
    let listening = server.listen_addr().unwrap();
    // A stranger dialled by the node, relaying to the listening client.
    let (relay, seen, _) = proxy(listening, None);
    let _node = Node::start(&["--join", &relay.to_string()]);
    let back = server
        .submit(jobs::echo_bytes, (ByteBuf::from(marker()),))
        .wait_timeout(Duration::from_secs(30))
        .expect("the joined node runs it")
        .unwrap();
    assert_eq!(back.into_vec(), marker());
    let name = &server.active_nodes()[0];
    assert!(name.ends_with("(127.0.0.1)"), "{name}");
    let seen = seen.lock().unwrap();
    assert!(!seen.bytes.is_empty(), "the session went through the relay");
    assert!(
        !contains(&seen.bytes, &marker()),
        "the relay read the argument"
    );
}

#[test]
fn a_stranger_with_a_wrong_key_joining_runs_nothing() {
    let server = Server::builder()
        .ncpus(0)
        .secret(SECRET.as_str())
        .listen("127.0.0.1:0")
        .build()
        .unwrap();
    let listening = server.listen_addr().unwrap().to_string();
    let other = ppcore::Key::generate().unwrap().to_text();
    let h = server.submit(jobs::echo_u64, (1,));
    let stranger = Node::start_with_env(&["--join", &listening], &[("PP_SECRET", &other)]);
    // The stranger joins and is refused at the handshake (its log says
    // so): nobody the client trusts is there, so the job stays queued.
    let refused = stranger.wait_log("handshake refused", Duration::from_secs(10), |_| true);
    assert!(refused, "the stranger was never refused");
    assert!(!h.is_finished());
    assert!(server.active_nodes().is_empty(), "{:?}", server.nodes());
}
