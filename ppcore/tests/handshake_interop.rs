//! The handshake's primitives moved to ring with issue 33 (snow's
//! `ring-accelerated`: AES-256-GCM, SHA-256 and randomness from ring); a
//! peer whose snow uses the RustCrypto crates, as builds before it did,
//! still completes the handshake both ways and ends with the same session
//! keys. The RustCrypto side is snow's own `DefaultResolver`, driven with
//! the protocol's pattern, prologue and pre-shared key as PROTOCOL.md gives
//! them.

use ppcore::secure::{ClientHandshake, NodeHandshake, MAGIC, PROTOCOL_VERSION};
use ppcore::{Key, KeySet, SecureError, Transport, CIPHER};
use snow::resolvers::DefaultResolver;
use snow::{Builder, HandshakeState};

fn key_bytes() -> [u8; 32] {
    std::array::from_fn(|i| (i as u8).wrapping_mul(37).wrapping_add(5))
}

/// The magic and the version, as they travel in clear before message 1.
fn header() -> Vec<u8> {
    let mut h = MAGIC.as_bytes().to_vec();
    h.extend_from_slice(&PROTOCOL_VERSION.to_be_bytes());
    h
}

/// One side of the handshake with snow's RustCrypto resolver.
fn rustcrypto_side(initiator: bool) -> HandshakeState {
    let mut prologue = b"pp-rs handshake prologue ".to_vec();
    prologue.extend_from_slice(&header());
    let (name, key) = ("Noise_NNpsk0_25519_AESGCM_SHA256", key_bytes());
    let builder = Builder::with_resolver(name.parse().unwrap(), Box::new(DefaultResolver))
        .psk(0, &key)
        .unwrap()
        .prologue(&prologue)
        .unwrap();
    if initiator {
        builder.build_initiator().unwrap()
    } else {
        builder.build_responder().unwrap()
    }
}

/// A frame each way between the two ends of a session must open.
fn check_the_keys_agree(mut ours: Transport, theirs: &mut HandshakeState, initiator: bool) {
    let (to_node, to_client) = theirs.dangerously_get_raw_split();
    let mut theirs = if initiator {
        Transport::from_raw_keys(CIPHER, &to_node, &to_client)
    } else {
        Transport::from_raw_keys(CIPHER, &to_client, &to_node)
    };
    assert_eq!(
        theirs.open(&ours.seal(b"Run 1").unwrap()).unwrap(),
        b"Run 1"
    );
    assert_eq!(
        ours.open(&theirs.seal(b"Done 1").unwrap()).unwrap(),
        b"Done 1"
    );
}

#[test]
fn a_rustcrypto_client_completes_the_handshake_with_a_ring_node() {
    assert_eq!(format!("{CIPHER:?}"), "AesGcm", "the test names AESGCM");
    let mut client = rustcrypto_side(true);
    let mut hello = header();
    let mut buf = vec![0u8; 1024];
    let n = client.write_message(b"hello", &mut buf).unwrap();
    hello.extend_from_slice(&buf[..n]);
    let mut node = NodeHandshake::new(
        KeySet::one(Key::from_bytes(key_bytes())),
        b"welcome".to_vec(),
    )
    .unwrap();
    let answer = node.read(&hello).unwrap().expect("an answer");
    assert_eq!(node.client_payload(), b"hello");
    assert_eq!(answer[0], 0, "accepted");
    let n = client.read_message(&answer[1..], &mut buf).unwrap();
    assert_eq!(&buf[..n], b"welcome");
    check_the_keys_agree(node.finish().unwrap(), &mut client, true);
}

#[test]
fn a_ring_client_completes_the_handshake_with_a_rustcrypto_node() {
    let (mut client, hello) =
        ClientHandshake::start(&Key::from_bytes(key_bytes()), b"hello").unwrap();
    let header = header();
    assert_eq!(&hello[..header.len()], &header[..]);
    let mut node = rustcrypto_side(false);
    let mut buf = vec![0u8; 1024];
    let n = node.read_message(&hello[header.len()..], &mut buf).unwrap();
    assert_eq!(&buf[..n], b"hello");
    let mut answer = vec![0u8];
    let n = node.write_message(b"welcome", &mut buf).unwrap();
    answer.extend_from_slice(&buf[..n]);
    assert_eq!(client.read(&answer).unwrap(), None);
    assert_eq!(client.node_payload(), b"welcome");
    check_the_keys_agree(client.finish().unwrap(), &mut node, false);
}

#[test]
fn a_rustcrypto_client_with_another_key_is_refused_by_a_ring_node() {
    let mut client = rustcrypto_side(true);
    let mut hello = header();
    let mut buf = vec![0u8; 1024];
    let n = client.write_message(b"hello", &mut buf).unwrap();
    hello.extend_from_slice(&buf[..n]);
    let other = Key::from_bytes(std::array::from_fn(|i| i as u8 ^ 0x5c));
    let mut node = NodeHandshake::new(KeySet::one(other), b"welcome".to_vec()).unwrap();
    assert!(matches!(node.read(&hello), Err(SecureError::WrongKey)));
}
