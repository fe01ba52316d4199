//! Hostile input on every listening socket: the offending connection is
//! closed with a reason, nothing panics, and everyone else is still served.

mod common;

use common::{authenticated, connect, reject_reason, Node, SECRET};
use ppclient::Server;
use ppcore::secure::ClientHandshake;
use ppcore::wire::{ClientMsg, MAGIC, PROTOCOL_VERSION};
use ppcore::{encode_frame, Framer};
use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::time::Duration;

/// A well-behaved client of `node` alone.
fn client(node: &Node) -> Server {
    Server::builder()
        .ncpus(0)
        .secret(SECRET.as_str())
        .nodes([node.name()])
        .build()
        .unwrap()
}

/// The node still serves a well-behaved client.
fn still_serves(node: &Node) {
    assert_eq!(client(node).submit(jobs::echo_u64, (42,)).wait(), Ok(42));
}

#[test]
fn garbage_during_the_handshake() {
    let node = Node::start(&[]);
    let mut s = connect(&node);
    s.write_all(b"\x00\x00\x00\x08GET / HTTP/1.1\r\n").unwrap();
    let reason = reject_reason(s);
    assert!(reason.contains("not a pp client"), "{reason}");
    let mut s = connect(&node);
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let reason = reject_reason(s);
    assert!(reason.contains("limit"), "{reason}");
    still_serves(&node);
}

#[test]
fn oversized_length_prefix_is_refused_before_allocation() {
    let node = Node::start(&[]);
    let mut s = connect(&node);
    s.write_all(&u32::MAX.to_be_bytes()).unwrap();
    assert!(reject_reason(s).contains("over the"));
    // The pre-authentication cap is 4 KiB: a 5000-byte first message is
    // refused before its body.
    let mut s = connect(&node);
    s.write_all(&5000u32.to_be_bytes()).unwrap();
    let reason = reject_reason(s);
    assert!(reason.contains("4096-byte limit"), "{reason}");
    still_serves(&node);
}

#[test]
fn truncated_frame_then_close() {
    let node = Node::start(&[]);
    let (_, first) = ClientHandshake::start(&common::key(), &[]).unwrap();
    let frame = Framer::new(4096).encode_handshake(&first).unwrap();
    let mut s = connect(&node);
    s.write_all(&frame[..frame.len() / 2]).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    still_serves(&node);
}

#[test]
fn valid_frames_in_the_wrong_state() {
    let node = Node::start(&[]);
    // Plaintext messages where the handshake belongs: not a pp client.
    for msg in [
        ClientMsg::Run(vec![]),
        ClientMsg::Status,
        ClientMsg::Ping(1),
    ] {
        let mut s = connect(&node);
        s.write_all(&encode_frame(&msg).unwrap()).unwrap();
        let reason = reject_reason(s);
        assert!(reason.contains("not a pp client"), "{reason}");
    }
    // A second handshake message after a complete handshake does not open.
    let mut s = authenticated(&node);
    let (_, first) = ClientHandshake::start(&common::key(), &[]).unwrap();
    let frame = Framer::new(4096).encode_handshake(&first).unwrap();
    s.stream.write_all(&frame).unwrap();
    let reason = s.reject_reason();
    assert!(reason.contains("failed authentication"), "{reason}");
    still_serves(&node);
}

#[test]
fn unknown_version_and_wrong_key_get_a_reason() {
    let node = Node::start(&[]);
    let mut s = connect(&node);
    let (_, mut first) = ClientHandshake::start(&common::key(), &[]).unwrap();
    first[MAGIC.len()..MAGIC.len() + 4].copy_from_slice(&(PROTOCOL_VERSION + 1).to_be_bytes());
    s.write_all(&Framer::new(4096).encode_handshake(&first).unwrap())
        .unwrap();
    let reason = reject_reason(s);
    assert!(reason.contains("version mismatch"), "{reason}");
    let other = ppcore::Key::generate().unwrap();
    match common::handshake(&node, &other) {
        Err(ppcore::SecureError::WrongKey) => {}
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("a stranger's key opened a session"),
    }
    still_serves(&node);
}

#[test]
fn silent_client_is_closed_at_the_handshake_deadline() {
    let node = Node::start(&["--handshake-timeout", "0.3"]);
    let silent = connect(&node);
    // One that trickles a byte at a time is held to the same deadline.
    let mut trickle = connect(&node);
    let trickler = std::thread::spawn(move || {
        for _ in 0..50 {
            if trickle.write_all(&[0]).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    assert!(reject_reason(silent).contains("timed out"));
    trickler.join().unwrap();
    still_serves(&node);
}

#[test]
fn connections_over_the_cap_are_refused_with_a_reason() {
    let node = Node::start(&[
        "--max-unauthenticated",
        "8",
        "--max-per-source",
        "100",
        "--handshake-timeout",
        "3",
    ]);
    let conns: Vec<TcpStream> = (0..40).map(|_| connect(&node)).collect();
    // Over the strangers' cap, each newcomer evicts the oldest (or is
    // refused while evicted ones still close): either way with a reason,
    // at once. The 8 newest say nothing and are closed at the handshake
    // deadline.
    let (mut refused, mut timed_out) = (0, 0);
    for s in conns {
        let reason = reject_reason(s);
        if reason.contains("too many unauthenticated connections") {
            refused += 1;
        } else {
            assert!(reason.contains("timed out"), "{reason}");
            timed_out += 1;
        }
    }
    assert_eq!((refused, timed_out), (32, 8));
    // Slots come back as the held connections close: a client gets in (its
    // link redials while the node is still full).
    let server = client(&node);
    let h = server.submit(jobs::echo_u64, (1,));
    assert_eq!(h.wait_timeout(Duration::from_secs(20)).unwrap(), Ok(1));
}

#[test]
fn malformed_frame_after_the_handshake_closes_only_that_connection() {
    let node = Node::start(&[]);
    let server = client(&node);
    // Bytes that are no sealed frame: they do not open.
    let mut s = authenticated(&node);
    s.stream.write_all(&[0, 0, 0, 2, 0xc1, 0xc1]).unwrap();
    let reason = s.reject_reason();
    assert!(reason.contains("failed authentication"), "{reason}");
    // A sealed frame that is no message: malformed.
    let mut s = authenticated(&node);
    let frame = s.framer.encode(&serde_bytes::Bytes::new(&[0xc1])).unwrap();
    s.stream.write_all(&frame).unwrap();
    let reason = s.reject_reason();
    assert!(reason.contains("malformed"), "{reason}");
    assert_eq!(server.submit(jobs::echo_u64, (5,)).wait(), Ok(5));
}

#[test]
fn random_bytes_to_the_discovery_port() {
    let node = Node::start(&["--discovery"]);
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for i in 0..200 {
        let len = (i * 7) % 600;
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        udp.send_to(&bytes, node.addr).unwrap();
    }
    // UDP may drop a probe behind the flood: probe a few times.
    udp.set_read_timeout(Some(Duration::from_millis(250)))
        .unwrap();
    let mut buf = [0u8; 64];
    let answer = (0..20).find_map(|_| {
        udp.send_to(ppcore::wire::DISCOVERY_PROBE, node.addr)
            .unwrap();
        let (n, _) = udp.recv_from(&mut buf).ok()?;
        ppcore::wire::parse_discovery_reply(&buf[..n])
    });
    assert_eq!(answer, Some(node.addr.port()));
    still_serves(&node);
}

#[test]
fn a_stream_that_lies_about_its_length_or_stalls_drops_only_that_client() {
    use ppcore::stream::StreamFrame;
    use serde_bytes::ByteBuf;
    let node = Node::start(&["--stream-stall", "1"]);
    let server = client(&node);
    // Announces 100 bytes, sends 200.
    let mut s = authenticated(&node);
    assert!(s.send(&ClientMsg::Stream(StreamFrame::Start { id: 1, len: 100 })));
    let chunk = StreamFrame::Chunk {
        id: 1,
        offset: 0,
        data: ByteBuf::from(vec![7u8; 200]),
    };
    assert!(s.send(&ClientMsg::Stream(chunk)));
    let reason = s.reject_reason();
    assert!(reason.contains("200 bytes sent, 100 announced"), "{reason}");
    // Announces 64 MiB, sends 1 KiB, then only heartbeats: dropped after
    // the stall limit although it answers to pings.
    let mut s = authenticated(&node);
    assert!(s.send(&ClientMsg::Stream(StreamFrame::Start {
        id: 1,
        len: 64 << 20
    })));
    let chunk = StreamFrame::Chunk {
        id: 1,
        offset: 0,
        data: ByteBuf::from(vec![7u8; 1024]),
    };
    assert!(s.send(&ClientMsg::Stream(chunk)));
    assert!(s.send(&ClientMsg::Ping(1)));
    // The answer to the first ping (`authenticated`'s), then to ours.
    assert_eq!(s.recv(), Ok(ppcore::wire::NodeMsg::Pong(0)));
    assert_eq!(s.recv(), Ok(ppcore::wire::NodeMsg::Pong(1)));
    let reason = s.reject_reason();
    assert!(reason.contains("no progress"), "{reason}");
    // Over the node's limit: refused at the start, before any byte.
    let mut s = authenticated(&node);
    assert!(s.send(&ClientMsg::Stream(StreamFrame::Start {
        id: 1,
        len: 2 << 30
    })));
    let reason = s.reject_reason();
    assert!(
        reason.contains("over the 1073741824-byte limit"),
        "{reason}"
    );
    still_serves(&node);
    assert_eq!(server.submit(jobs::echo_u64, (3,)).wait(), Ok(3));
}
