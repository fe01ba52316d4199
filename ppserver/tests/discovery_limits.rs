//! Discovery answers and joining nodes are hints from strangers: they are
//! capped, dropped when they fail, and cut off when they dawdle (issue 12).

mod common;

use common::{Node, SECRET};
use ppclient::{NodeState, Server};
use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

/// Answers discovery probes on loopback with every port in `ports`, for a
/// bounded number of probes and time.
fn spoofed_discovery(ports: Vec<u16>) -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    std::thread::spawn(move || {
        let until = Instant::now() + Duration::from_secs(60);
        let mut buf = [0u8; 64];
        while Instant::now() < until {
            if let Ok((_, from)) = socket.recv_from(&mut buf) {
                for &port in &ports {
                    let reply = ppcore::wire::discovery_reply(port);
                    let _ = socket.send_to(reply.as_bytes(), from);
                }
            }
        }
    });
    addr
}

/// Loopback ports nothing listens on (bound, then released).
fn closed_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<_> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

#[test]
fn a_flood_of_spoofed_answers_gets_at_most_64_links_and_they_are_dropped() {
    let real = Node::start(&[]);
    let mut ports = vec![real.addr.port()];
    ports.extend(closed_ports(300));
    let via = spoofed_discovery(ports);
    let server = Server::builder()
        .ncpus(0)
        .secret(SECRET.as_str())
        .discover_via("127.0.0.1", via)
        .build()
        .unwrap();
    let nodes = server.nodes();
    let live = |nodes: &[ppclient::NodeInfo]| {
        nodes
            .iter()
            .filter(|n| !matches!(n.state, NodeState::Failed { .. }))
            .count()
    };
    assert!(live(&nodes) <= 64, "{} live links", live(&nodes));
    assert!(nodes.iter().any(|n| n.name == real.name()), "{nodes:?}");
    assert_eq!(server.submit(jobs::echo_u64, (8,)).wait(), Ok(8));
    let all_dead_dropped = |nodes: &[ppclient::NodeInfo]| {
        nodes.iter().all(|n| match &n.state {
            NodeState::Failed { reason } => reason
                .to_string()
                .contains("dropped after 3 failed attempt"),
            _ => n.name == real.name(),
        })
    };
    assert!(
        server.wait_for_nodes_where(Duration::from_secs(20), all_dead_dropped),
        "{:?}",
        server.nodes()
    );
    let nodes = server.nodes();
    assert!(
        nodes.len() <= 4 * 64 && live(&nodes) <= 64,
        "{}",
        nodes.len()
    );
}

/// Reads until the peer closes; the bytes read, or `None` if it stays open
/// past `limit`.
fn read_to_close(mut s: TcpStream, limit: Duration) -> Option<usize> {
    s.set_read_timeout(Some(limit)).unwrap();
    let mut total = 0;
    let mut buf = [0u8; 4096];
    for _ in 0..1000 {
        match s.read(&mut buf) {
            Ok(0) => return Some(total),
            Ok(n) => total += n,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Some(total),
            Err(_) => return None,
        }
    }
    None
}

/// Whether the peer has closed `s` (waiting up to its read timeout).
fn closed(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 256];
    for _ in 0..100 {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false
            }
            Err(_) => return true,
        }
    }
    false
}

#[test]
fn silent_joiners_are_capped_and_cut_off_and_a_real_node_still_joins() {
    let server = Server::builder()
        .ncpus(0)
        .secret(SECRET.as_str())
        .listen("127.0.0.1:0")
        .build()
        .unwrap();
    let addr = server.listen_addr().unwrap();
    let strangers: Vec<_> = (0..70).map(|_| TcpStream::connect(addr).unwrap()).collect();
    let heard: Vec<_> = strangers
        .into_iter()
        .map(|s| read_to_close(s, Duration::from_secs(30)))
        .collect();
    assert!(
        heard.iter().all(Option::is_some),
        "a stranger kept its connection: {heard:?}"
    );
    let greeted = heard.iter().filter(|h| h.unwrap_or(0) > 0).count();
    assert_eq!(greeted, 64, "joins taken at once: {heard:?}");
    // A stranger that drips a frame a byte at a time, each byte well within
    // the per-read timeout: only the overall handshake deadline (5 s) ends it.
    let mut drip = TcpStream::connect(addr).unwrap();
    drip.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    std::io::Write::write_all(&mut drip, &1000u32.to_be_bytes()).unwrap();
    let mut dripped = 0;
    let cut_off = (0..60).any(|_| {
        if std::io::Write::write_all(&mut drip, b"x").is_err() {
            return true;
        }
        dripped += 1;
        closed(&mut drip)
    });
    assert!(
        cut_off,
        "a dripping joiner kept its handshake open ({dripped} bytes)"
    );
    let _node = Node::start(&["--join", &addr.to_string()]);
    assert!(server.wait_for_nodes(1, Duration::from_secs(10)));
    assert_eq!(server.submit(jobs::echo_u64, (12,)).wait(), Ok(12));
}
