use super::*;

fn key() -> Key {
    Key::generate().unwrap()
}

/// Both transports, the welcome and hello payloads, the node's key index.
type Connected = (Transport, Transport, Vec<u8>, Vec<u8>, usize);

/// Runs a whole handshake; returns both transports and what each side got.
fn connect(client_key: &Key, node_keys: KeySet) -> Result<Connected, SecureError> {
    let (mut client, hello) = ClientHandshake::start(client_key, b"client hello")?;
    let mut node = NodeHandshake::new(node_keys, b"welcome".to_vec())?;
    let answer = node.read(&hello)?.ok_or(SecureError::State)?;
    assert_eq!(client.read(&answer)?, None);
    let (got_welcome, got_hello) = (
        client.node_payload().to_vec(),
        node.client_payload().to_vec(),
    );
    let index = node.key_index();
    Ok((
        client.finish()?,
        node.finish()?,
        got_welcome,
        got_hello,
        index,
    ))
}

#[test]
fn same_key_gives_a_working_session_both_ways() {
    let k = key();
    let (mut c, mut n, welcome, hello, index) = connect(&k, KeySet::one(k.clone())).unwrap();
    assert_eq!(
        (welcome.as_slice(), hello.as_slice(), index),
        (&b"welcome"[..], &b"client hello"[..], 0)
    );
    for i in 0..3u8 {
        assert_eq!(n.open(&c.seal(&[i; 40]).unwrap()).unwrap(), vec![i; 40]);
        assert_eq!(c.open(&n.seal(&[i; 7]).unwrap()).unwrap(), vec![i; 7]);
    }
}

#[test]
fn payloads_travel_encrypted() {
    let (_, hello) = ClientHandshake::start(&key(), b"SECRET-ARGS").unwrap();
    assert!(!hello.windows(11).any(|w| w == b"SECRET-ARGS"));
    let k = key();
    let (_, hello) = ClientHandshake::start(&k, b"").unwrap();
    let mut node = NodeHandshake::new(KeySet::one(k), b"NODE-JOBS".to_vec()).unwrap();
    let answer = node.read(&hello).unwrap().unwrap();
    assert!(!answer.windows(9).any(|w| w == b"NODE-JOBS"));
}

#[test]
fn wrong_key_is_named_on_both_sides() {
    let (mut client, hello) = ClientHandshake::start(&key(), b"").unwrap();
    let mut node = NodeHandshake::new(KeySet::one(key()), Vec::new()).unwrap();
    let err = node.read(&hello).unwrap_err();
    assert_eq!(err, SecureError::WrongKey);
    assert_eq!(
        client.read(&refusal(&err)).unwrap_err(),
        SecureError::WrongKey
    );
    assert!(err.to_string().contains("wrong key"), "{err}");
}

#[test]
fn sessions_get_fresh_keys_each_time() {
    let k = key();
    let (mut c1, _, _, _, _) = connect(&k, KeySet::one(k.clone())).unwrap();
    let (_, mut n2, _, _, _) = connect(&k, KeySet::one(k.clone())).unwrap();
    assert!(
        n2.open(&c1.seal(b"Run").unwrap()).is_err(),
        "a frame crossed sessions"
    );
}

#[test]
fn rollover_node_with_two_keys_takes_either() {
    let (old, new) = (key(), key());
    let both = KeySet::new(vec![new.clone(), old.clone()]).unwrap();
    assert_eq!(connect(&new, both.clone()).unwrap().4, 0);
    assert_eq!(connect(&old, both.clone()).unwrap().4, 1);
    assert_eq!(connect(&key(), both).err(), Some(SecureError::WrongKey));
}

#[test]
fn rollover_client_with_two_keys_retries_with_the_other() {
    let (old, new) = (key(), key());
    let client_keys = KeySet::new(vec![new, old.clone()]).unwrap();
    let node_keys = KeySet::one(old);
    let outcome: Vec<_> = client_keys
        .keys()
        .iter()
        .map(|k| connect(k, node_keys.clone()).map(|_| ()))
        .collect();
    assert_eq!(outcome, vec![Err(SecureError::WrongKey), Ok(())]);
}

fn with_version(msg: &[u8], version: u32) -> Vec<u8> {
    let mut m = msg.to_vec();
    m[MAGIC.len()..HEADER].copy_from_slice(&version.to_be_bytes());
    m
}

#[test]
fn version_mismatch_names_both_versions_on_both_sides() {
    let k = key();
    let (mut client, hello) = ClientHandshake::start(&k, b"").unwrap();
    let mut node = NodeHandshake::new(KeySet::one(k), Vec::new()).unwrap();
    let theirs = PROTOCOL_VERSION + 6;
    let err = node.read(&with_version(&hello, theirs)).unwrap_err();
    assert_eq!(
        err,
        SecureError::Version {
            ours: PROTOCOL_VERSION,
            theirs
        }
    );
    let text = err.to_string();
    assert!(
        text.contains(&format!("version {PROTOCOL_VERSION}"))
            && text.contains(&format!("version {theirs}")),
        "{text}"
    );
    // The client hears the node's version (here: a node that speaks ours + 6).
    let mut from_newer = refusal(&err);
    from_newer[2..6].copy_from_slice(&theirs.to_be_bytes());
    assert_eq!(
        client.read(&from_newer).unwrap_err(),
        SecureError::Version {
            ours: PROTOCOL_VERSION,
            theirs
        }
    );
}

#[test]
fn the_clear_header_is_bound_by_the_prologue() {
    // A node that skipped the clear check would still fail: the header is in
    // the prologue, so a rewritten version cannot slip through.
    let k = key();
    let (_, hello) = ClientHandshake::start(&k, b"").unwrap();
    let mut hs = state(&k, false).unwrap();
    let mut rewritten_prologue = prologue();
    let n = rewritten_prologue.len();
    rewritten_prologue[n - 1] ^= 1;
    let mut other = Builder::new(noise_name(CIPHER).parse().unwrap())
        .psk(0, k.bytes())
        .unwrap()
        .prologue(&rewritten_prologue)
        .unwrap()
        .build_responder()
        .unwrap();
    assert!(read(&mut hs, &hello[HEADER..]).is_some());
    assert!(read(&mut other, &hello[HEADER..]).is_none());
}

#[test]
fn garbage_is_refused_with_a_reason() {
    let k = key();
    let cases: [(&[u8], SecureError); 4] = [
        (b"GET / HTTP/1.1\r\n", SecureError::NotPp),
        (b"", SecureError::NotPp),
        (b"pp-rs\0\0", SecureError::Malformed("no version")),
        (&header(), SecureError::WrongKey),
    ];
    for (msg, want) in cases {
        let mut node = NodeHandshake::new(KeySet::one(k.clone()), Vec::new()).unwrap();
        assert_eq!(node.read(msg).unwrap_err(), want);
    }
    let mut node = NodeHandshake::new(KeySet::one(k), Vec::new()).unwrap();
    let huge = [header(), vec![0; MAX_HANDSHAKE_MESSAGE]].concat();
    assert!(matches!(node.read(&huge), Err(SecureError::Malformed(_))));
}

#[test]
fn a_tampered_handshake_fails_on_the_side_that_reads_it() {
    let k = key();
    let (_, hello) = ClientHandshake::start(&k, b"hi").unwrap();
    for at in [HEADER, HEADER + 31, hello.len() - 1] {
        let mut bad = hello.clone();
        bad[at] ^= 0x40;
        let mut node = NodeHandshake::new(KeySet::one(k.clone()), Vec::new()).unwrap();
        assert_eq!(
            node.read(&bad).unwrap_err(),
            SecureError::WrongKey,
            "byte {at}"
        );
    }
    let (mut client, hello) = ClientHandshake::start(&k, b"").unwrap();
    let mut node = NodeHandshake::new(KeySet::one(k.clone()), b"w".to_vec()).unwrap();
    let mut answer = node.read(&hello).unwrap().unwrap();
    let last = answer.len() - 1;
    answer[last] ^= 1;
    assert_eq!(client.read(&answer).unwrap_err(), SecureError::Tampered);
    assert_eq!(client.finish().unwrap_err(), SecureError::State);
}

#[test]
fn a_relay_with_its_own_answer_cannot_fool_the_client() {
    // An attacker without the key answers the client's hello itself.
    let k = key();
    let (mut client, hello) = ClientHandshake::start(&k, b"").unwrap();
    let mut fake = NodeHandshake::new(KeySet::one(key()), Vec::new()).unwrap();
    assert!(fake.read(&hello).is_err());
    let mut forged = vec![ACCEPT];
    forged.extend_from_slice(&[0x55; DH + TAG]);
    assert_eq!(client.read(&forged).unwrap_err(), SecureError::Tampered);
}

#[test]
fn a_replayed_first_message_gets_an_answer_but_no_session() {
    let k = key();
    let (mut client, hello) = ClientHandshake::start(&k, b"").unwrap();
    let mut node = NodeHandshake::new(KeySet::one(k.clone()), Vec::new()).unwrap();
    let answer = node.read(&hello).unwrap().unwrap();
    client.read(&answer).unwrap();
    let mut client = client.finish().unwrap();
    // The replayer sends the same hello to a node again and forwards the
    // real client's frames: none opens, since the node's new ephemeral key
    // changed the session keys.
    let mut node2 = NodeHandshake::new(KeySet::one(k), Vec::new()).unwrap();
    node2.read(&hello).unwrap().unwrap();
    let mut node2 = node2.finish().unwrap();
    assert_eq!(
        node2.open(&client.seal(b"Run").unwrap()).unwrap_err(),
        SecureError::Forged
    );
}

#[test]
fn steps_out_of_order_are_refused() {
    let k = key();
    let (client, _) = ClientHandshake::start(&k, b"").unwrap();
    assert_eq!(client.finish().unwrap_err(), SecureError::State);
    let node = NodeHandshake::new(KeySet::one(k.clone()), Vec::new()).unwrap();
    assert_eq!(node.finish().unwrap_err(), SecureError::State);
    let (mut client, hello) = ClientHandshake::start(&k, b"").unwrap();
    let mut node = NodeHandshake::new(KeySet::one(k), Vec::new()).unwrap();
    let answer = node.read(&hello).unwrap().unwrap();
    assert_eq!(node.read(&hello).unwrap_err(), SecureError::State);
    client.read(&answer).unwrap();
    assert_eq!(client.read(&answer).unwrap_err(), SecureError::State);
}

#[test]
fn payload_limits_hold() {
    let k = key();
    assert_eq!(
        ClientHandshake::start(&k, &vec![0; MAX_HANDSHAKE_PAYLOAD + 1])
            .err()
            .map(|e| e.to_string()),
        Some(SecureError::TooLarge.to_string())
    );
    let (_, hello) = ClientHandshake::start(&k, &vec![0; MAX_HANDSHAKE_PAYLOAD]).unwrap();
    assert!(hello.len() <= MAX_HANDSHAKE_MESSAGE);
    let mut node = NodeHandshake::new(KeySet::one(k), vec![1; MAX_HANDSHAKE_PAYLOAD]).unwrap();
    let answer = node.read(&hello).unwrap().unwrap();
    assert!(answer.len() <= MAX_HANDSHAKE_MESSAGE);
    assert!(NodeHandshake::new(KeySet::one(key()), vec![0; MAX_HANDSHAKE_PAYLOAD + 1]).is_err());
}

#[test]
fn refusal_reasons_are_escaped_and_bounded() {
    let (mut client, _) = ClientHandshake::start(&key(), b"").unwrap();
    let evil = format!("busy\n\x1b[31mFAKE LOG LINE{}", "x".repeat(5000));
    let err = client.read(&refusal_reason(&evil)).unwrap_err();
    let SecureError::Refused(text) = err else {
        panic!("{err:?}")
    };
    assert!(
        text.starts_with("busy\\n\\u{1b}[31m") && !text.contains('\n'),
        "{text}"
    );
    assert!(text.len() < 400, "{}", text.len());
}

proptest::proptest! {
    #[test]
    fn random_bytes_never_panic_nor_authenticate(msg in proptest::collection::vec(proptest::num::u8::ANY, 0..200), tail in proptest::collection::vec(proptest::num::u8::ANY, 0..100)) {
        let k = Key::from_bytes([4; 32]);
        let mut node = NodeHandshake::new(KeySet::one(k.clone()), Vec::new()).unwrap();
        let with_header = [header(), tail].concat();
        proptest::prop_assert!(node.read(&msg).is_err());
        let mut node = NodeHandshake::new(KeySet::one(k.clone()), Vec::new()).unwrap();
        proptest::prop_assert!(node.read(&with_header).is_err());
        let (mut client, _) = ClientHandshake::start(&k, b"").unwrap();
        proptest::prop_assert!(client.read(&msg).is_err());
    }
}
