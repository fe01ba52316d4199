//! Hostile input on every listening socket: the offending connection is
//! closed with a reason, nothing panics, and everyone else is still served.

mod common;

use common::{authenticated, connect, reject_reason, Node, SECRET};
use ppclient::Server;
use ppcore::wire::{ClientMsg, MAGIC, PROTOCOL_VERSION};
use ppcore::{encode_frame, ClientHandshake, Secret};
use serde_bytes::ByteBuf;
use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::time::{Duration, Instant};

/// A well-behaved client of `node` alone.
fn client(node: &Node) -> Server {
    Server::builder()
        .ncpus(0)
        .secret(SECRET)
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
    assert!(reject_reason(s).contains("malformed"));
    let mut s = connect(&node);
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let reason = reject_reason(s);
    assert!(
        reason.contains("limit") || reason.contains("malformed"),
        "{reason}"
    );
    still_serves(&node);
}

#[test]
fn oversized_length_prefix_is_refused_before_allocation() {
    let node = Node::start(&[]);
    let mut s = connect(&node);
    s.write_all(&u32::MAX.to_be_bytes()).unwrap();
    assert!(reject_reason(s).contains("over the"));
    still_serves(&node);
}

#[test]
fn truncated_frame_then_close() {
    let node = Node::start(&[]);
    let frame = encode_frame(&ClientMsg::Hello {
        magic: MAGIC.into(),
        version: PROTOCOL_VERSION,
        nonce: ByteBuf::from(vec![1; 32]),
    })
    .unwrap();
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
    for msg in [
        ClientMsg::Run(vec![]),
        ClientMsg::Status,
        ClientMsg::Ping(1),
    ] {
        let mut s = connect(&node);
        s.write_all(&encode_frame(&msg).unwrap()).unwrap();
        assert!(reject_reason(s).contains("expected Hello"));
    }
    // A second Hello after a complete handshake.
    let mut s = authenticated(&node);
    let (_, hello) = ClientHandshake::start(Secret::new(SECRET), [7; 32]);
    s.write_all(&encode_frame(&hello).unwrap()).unwrap();
    assert!(reject_reason(s).contains("after the handshake"));
    still_serves(&node);
}

#[test]
fn unknown_version_and_wrong_secret_get_a_reason() {
    let node = Node::start(&[]);
    let mut s = connect(&node);
    let hello = ClientMsg::Hello {
        magic: MAGIC.into(),
        version: PROTOCOL_VERSION + 1,
        nonce: ByteBuf::from(vec![1; 32]),
    };
    s.write_all(&encode_frame(&hello).unwrap()).unwrap();
    assert!(reject_reason(s).contains("not supported"));
    let mut s = connect(&node);
    let (_, hello) = ClientHandshake::start(Secret::new("other"), [7; 32]);
    s.write_all(&encode_frame(&hello).unwrap()).unwrap();
    let forged = ClientMsg::Auth {
        proof: ByteBuf::from(vec![0; 32]),
    };
    s.write_all(&encode_frame(&forged).unwrap()).unwrap();
    assert!(reject_reason(s).contains("wrong secret"));
    still_serves(&node);
}

#[test]
fn silent_client_is_closed_at_the_handshake_deadline() {
    let node = Node::start(&["--handshake-timeout", "0.3"]);
    let started = Instant::now();
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
    assert!(started.elapsed() < Duration::from_secs(5));
    trickler.join().unwrap();
    still_serves(&node);
}

#[test]
fn connections_over_the_cap_are_refused_with_a_reason() {
    let node = Node::start(&["--max-connections", "8", "--handshake-timeout", "3"]);
    let conns: Vec<TcpStream> = (0..40).map(|_| connect(&node)).collect();
    // Those over the cap are refused at once; the 8 let in say nothing and
    // are closed at the handshake deadline.
    let (mut refused, mut timed_out) = (0, 0);
    for s in conns {
        let reason = reject_reason(s);
        if reason.contains("too many connections") {
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
    let mut s = authenticated(&node);
    s.write_all(&[0, 0, 0, 2, 0xc1, 0xc1]).unwrap();
    assert!(reject_reason(s).contains("malformed"));
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
