//! A client Server with real ppserver nodes on loopback.

mod common;

use common::{close, maclaurin_64, Node, SECRET};
use ppclient::{ErrorKind, NodeState, Options, Server};
use std::time::Duration;

fn remote_only(nodes: &[&Node]) -> Server {
    Server::builder()
        .ncpus(0)
        .secret(SECRET.as_str())
        .nodes(nodes.iter().map(|n| n.name()))
        .build()
        .unwrap()
}

#[test]
fn maclaurin_over_two_nodes_is_exact_and_both_nodes_work() {
    let (a, b) = (
        Node::start(&["--workers", "2"]),
        Node::start(&["--workers", "2"]),
    );
    let server = remote_only(&[&a, &b]);
    assert_eq!(server.active_nodes().len(), 2);
    let (sum, exact) = maclaurin_64(&server, 4_000_000);
    assert!(close(sum, exact), "{sum} vs {exact}");
    let stats = server.stats();
    let rows: Vec<_> = stats
        .nodes
        .iter()
        .map(|n| (n.node.as_str(), n.jobs))
        .collect();
    assert_eq!(rows[0], ("local", 0));
    assert_eq!(rows.iter().map(|r| r.1).sum::<u64>(), 64, "{rows:?}");
    for node in [&a, &b] {
        let row = stats.nodes.iter().find(|n| n.node == node.name()).unwrap();
        assert!(row.jobs > 0, "{} ran nothing: {rows:?}", node.name());
    }
    assert!(stats.to_string().contains(&a.name()));
}

#[test]
fn local_and_remote_mixed() {
    let a = Node::start(&["--workers", "1"]);
    let server = Server::builder()
        .ncpus(1)
        .secret(SECRET.as_str())
        .nodes([a.name()])
        .build()
        .unwrap();
    let (sum, exact) = maclaurin_64(&server, 2_000_000);
    assert!(close(sum, exact));
    let out: Vec<u64> = server
        .map(jobs::echo_u64, (0..2_000).map(|i| (i,)))
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(out, (0..2_000).collect::<Vec<_>>());
    let s = server.stats();
    assert_eq!(s.nodes.len(), 2);
    assert_eq!(s.nodes[0].jobs + s.nodes[1].jobs, 2_064);
    assert!(s.nodes[1].jobs > 0, "the node took part");
}

#[test]
fn errors_and_panics_come_back_typed_from_a_node() {
    let a = Node::start(&[]);
    let server = remote_only(&[&a]);
    let err = server
        .submit(jobs::panic, ("far away".into(),))
        .wait()
        .unwrap_err();
    assert_eq!(
        (err.kind, err.message.as_str()),
        (ErrorKind::Panicked, "far away")
    );
    assert_eq!(err.attempt, 1);
    assert!(err.node.is_some());
    let err = server
        .submit(jobs::fail, ("nope".into(),))
        .wait()
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Failed);
    assert_eq!(server.submit(jobs::sum_primes, (100,)).wait(), Ok(1060));
}

#[test]
fn wrong_key_is_a_clear_error_at_once() {
    let a = Node::start(&[]);
    let other = ppcore::Key::generate().unwrap().to_text();
    let server = Server::builder()
        .ncpus(0)
        .secret(&other)
        .nodes([a.name()])
        .build()
        .unwrap();
    // `build` waited for the first answer: the refusal is known already.
    let err = server.submit(jobs::echo_u64, (1,)).wait().unwrap_err();
    assert_eq!(err.kind, ErrorKind::Auth); // issue 11: not UnknownJob
    assert!(err.message.contains(&a.name()), "{err}");
    assert!(err.message.contains("wrong key"), "{err}");
    let NodeState::Failed { reason } = &server.nodes()[0].state else {
        panic!("{:?}", server.nodes())
    };
    assert!(reason.to_string().contains("wrong key"), "{reason}");
}

#[test]
fn a_value_that_is_not_a_key_is_refused_saying_how_to_make_one() {
    let err = Server::builder()
        .ncpus(0)
        .secret("correct horse battery staple")
        .nodes(["127.0.0.1:1"])
        .build()
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("ppserver --gen-secret FILE"), "{text}");
    assert!(
        !text.contains("horse"),
        "the refused value is never repeated"
    );
    let err = Server::builder()
        .ncpus(0)
        .nodes(["127.0.0.1:1"])
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("no key"), "{err}");
}

#[test]
fn unknown_job_fails_at_submit() {
    ppcore::job! {
        /// Only this test binary knows it.
        fn not_on_nodes(x: u64) -> u64 { x }
    }
    let a = Node::start(&[]);
    let server = remote_only(&[&a]);
    let h = server.submit(not_on_nodes, (1,));
    assert!(h.is_finished(), "resolved at submit");
    let err = h.wait().unwrap_err();
    assert_eq!(err.kind, ErrorKind::UnknownJob);
    assert!(err.message.contains("not_on_nodes"), "{err}");
}

#[test]
fn node_that_starts_after_the_client_is_picked_up() {
    // Reserve a port, free it, and start the node on it later.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = Server::builder()
        .ncpus(0)
        .secret(SECRET.as_str())
        .nodes([format!("127.0.0.1:{port}")])
        .connect_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    assert!(matches!(server.nodes()[0].state, NodeState::Down { .. }));
    let h = server.submit(jobs::echo_u64, (5,));
    let _node = Node::start(&["--port", &port.to_string()]);
    assert_eq!(h.wait_timeout(Duration::from_secs(20)).unwrap(), Ok(5));
    assert_eq!(server.active_nodes(), vec![format!("127.0.0.1:{port}")]);
}

#[test]
fn join_dials_a_listening_client() {
    let server = Server::builder()
        .ncpus(0)
        .secret(SECRET.as_str())
        .listen("127.0.0.1:0")
        .build()
        .unwrap();
    let addr = server.listen_addr().unwrap().to_string();
    let _node = Node::start(&["--join", &addr]);
    assert!(server.wait_for_nodes(1, Duration::from_secs(10)));
    assert_eq!(server.submit(jobs::echo_u64, (11,)).wait(), Ok(11));
    // Dropping the server joins its threads: the node's link has said
    // goodbye and the listener is closed when the drop returns.
    drop(server);
    assert!(std::net::TcpStream::connect(&addr).is_err());
}

#[test]
fn idle_timeout_exits() {
    let mut node = Node::start(&["--idle-timeout", "1"]);
    assert_eq!(node.wait_exit(Duration::from_secs(10)), Some(0));
}

#[test]
fn sigterm_drains_without_losing_a_job() {
    let (a, b) = (
        Node::start(&["--workers", "2"]),
        Node::start(&["--workers", "2"]),
    );
    let server = remote_only(&[&a, &b]);
    let handles: Vec<_> = (0..40u64)
        .map(|i| server.submit(jobs::sleep_ms, (20 + i % 3,)))
        .collect();
    common::wait_busy(&a, 1);
    a.signal("TERM");
    for (i, h) in handles.into_iter().enumerate() {
        let r = h.wait_timeout(Duration::from_secs(30)).expect("resolves");
        assert_eq!(r, Ok(20 + i as u64 % 3));
    }
    let mut a = a;
    assert_eq!(a.wait_exit(Duration::from_secs(10)), Some(0));
    let s = server.stats();
    assert_eq!((s.succeeded, s.failed, s.active), (40, 0, 0));
}

#[test]
fn protocol_version_mismatch_is_rejected_with_a_reason() {
    use ppcore::wire::{MAGIC, PROTOCOL_VERSION};
    use std::io::Write;
    let a = Node::start(&[]);
    let mut s = common::connect(&a);
    // A first message from a client of version 999: the clear header says so.
    let (_, mut first) = ppcore::secure::ClientHandshake::start(&common::key(), &[]).unwrap();
    first[MAGIC.len()..MAGIC.len() + 4].copy_from_slice(&999u32.to_be_bytes());
    let mut framer = ppcore::Framer::new(4096);
    s.write_all(&framer.encode_handshake(&first).unwrap())
        .unwrap();
    let refusal = common::read_frame(&mut s, &mut framer, |f| f.decode_handshake()).unwrap();
    // A refusal (1), for the version (code 2), naming the node's version;
    // the client's error then names both (ppcore's link tests).
    assert_eq!(refusal[..2], [1, 2]);
    assert_eq!(refusal[2..6], PROTOCOL_VERSION.to_be_bytes());
}

#[test]
fn discovery_finds_a_node_that_answers_probes() {
    let a = Node::start(&["--discovery"]);
    let server = Server::builder()
        .ncpus(0)
        .secret(SECRET.as_str())
        .discover_via("127.0.0.*", a.addr)
        .build()
        .unwrap();
    assert!(server.wait_for_nodes(1, Duration::from_secs(10)));
    assert_eq!(server.active_nodes(), vec![a.name()]);
    assert_eq!(server.submit(jobs::echo_u64, (3,)).wait(), Ok(3));
    let elsewhere = Server::builder()
        .ncpus(0)
        .secret(SECRET.as_str())
        .discover_via("10.*.*.*", a.addr)
        .build()
        .unwrap();
    // `build` ran one whole probe round before it returned: had the node
    // matched, its link would be listed already.
    assert!(
        elsewhere.nodes().is_empty(),
        "the pattern filters nodes out"
    );
}

#[test]
fn node_status_reports_counters() {
    let a = Node::start(&["--workers", "3"]);
    let server = remote_only(&[&a]);
    for i in 0..5u64 {
        server.submit(jobs::echo_u64, (i,)).wait().unwrap();
    }
    let status =
        || ppclient::node_status(&a.name(), SECRET.as_str(), Duration::from_secs(5)).unwrap();
    // A job counts as active until its result is on the wire: all five
    // have ended once the node's status says so.
    let mut s = status();
    let ended = common::eventually(Duration::from_secs(10), || {
        s = status();
        s.jobs_done >= 5 && s.jobs_active == 0
    });
    assert!(ended, "{s:?}");
    assert_eq!(
        (s.workers, s.jobs_done, s.jobs_failed, s.jobs_active),
        (3, 5, 0, 0)
    );
    assert!(s.jobs.iter().any(|j| j.name == "jobs::maclaurin"));
    let other = ppcore::Key::generate().unwrap().to_text();
    let err = ppclient::node_status(&a.name(), &other, Duration::from_secs(5)).unwrap_err();
    assert!(err.to_string().contains("wrong key"), "{err}");
    assert!(err.to_string().contains(&a.name()), "names the node: {err}");
}

#[test]
fn big_batches_are_split_and_oversized_jobs_refused_without_losing_the_node() {
    use serde_bytes::ByteBuf;
    let a = Node::start(&["--workers", "2", "--max-payload", "16M"]);
    let server = remote_only(&[&a]);
    // 200 jobs of 300 KB: 60 MB in flight at most, over several frames.
    let handles: Vec<_> = (0..200u8)
        .map(|i| server.submit(jobs::echo_bytes, (ByteBuf::from(vec![i; 300_000]),)))
        .collect();
    for (i, h) in handles.into_iter().enumerate() {
        let back = h.wait_timeout(Duration::from_secs(30)).unwrap().unwrap();
        assert!(back.len() == 300_000 && back[0] == i as u8);
    }
    let huge = ByteBuf::from(vec![0u8; 20 << 20]);
    let err = server.submit(jobs::echo_bytes, (huge,)).wait().unwrap_err();
    assert_eq!(err.kind, ErrorKind::Codec);
    assert!(err.message.contains("16777216-byte limit"), "{err}");
    assert_eq!(server.submit(jobs::echo_u64, (9,)).wait(), Ok(9));
    let s = server.stats();
    assert_eq!((s.retried, server.active_nodes().len()), (0, 1), "{s:?}");
}

#[test]
fn dropping_the_server_resolves_jobs_in_flight_on_nodes() {
    let a = Node::start(&["--workers", "1"]);
    let server = remote_only(&[&a]);
    let handles: Vec<_> = (0..10u64)
        .map(|_| server.submit(jobs::sleep_ms, (300,)))
        .collect();
    common::wait_busy(&a, 1);
    drop(server);
    for h in handles {
        let r = h.wait_timeout(Duration::from_secs(10)).expect("resolves");
        assert_eq!(r.unwrap_err().kind, ErrorKind::Shutdown);
    }
    // The node is fine and serves the next client.
    let again = remote_only(&[&a]);
    assert_eq!(again.submit(jobs::echo_u64, (4,)).wait(), Ok(4));
}

#[test]
fn every_remote_handle_is_finished_once_wait_all_returns() {
    let a = Node::start(&["--workers", "2"]);
    let server = remote_only(&[&a]);
    for round in 0..200u64 {
        let handles: Vec<_> = (0..4u64)
            .map(|i| match i % 2 {
                0 => server.submit(jobs::echo_u64, (round,)),
                _ => server.submit_with(jobs::echo_u64, (i,), Options::new().callback(|_| {})),
            })
            .collect();
        server.wait_all().unwrap();
        assert!(
            handles.iter().all(|h| h.is_finished()),
            "round {round}: a handle not finished after wait_all"
        );
    }
}

ppcore::job! {
    /// A job the test's nodes do not have (it lives in this test binary).
    fn only_here(i: u64) -> u64 {
        i
    }
}

#[test]
fn jobs_a_node_cannot_run_keep_their_order_on_the_local_worker() {
    let a = Node::start(&["--workers", "2"]);
    let server = Server::builder()
        .ncpus(1)
        .secret(SECRET.as_str())
        .nodes([a.name()])
        .build()
        .unwrap();
    assert_eq!(server.active_nodes(), vec![a.name()]);
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let handles: Vec<_> = (0..300u64)
        .map(|i| {
            let seen = std::sync::Arc::clone(&seen);
            let opts = Options::new().callback(move |r: &Result<u64, _>| {
                seen.lock().unwrap().push(*r.as_ref().unwrap());
            });
            // Echo jobs the node can take, mixed in.
            drop(server.submit(jobs::echo_u64, (i,)));
            server.submit_with(only_here, (i,), opts)
        })
        .collect();
    server.wait_all().unwrap();
    assert!(handles.iter().all(|h| h.is_finished()));
    // The node's link takes only the echoes and leaves the others in
    // place: one local worker runs them in the order they were submitted,
    // none overtaken by a later one.
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen, (0..300).collect::<Vec<_>>());
    let s = server.stats();
    assert_eq!(s.succeeded, 600);
    let local = s.nodes.iter().find(|n| n.node == "local").unwrap();
    assert!(local.jobs >= 300, "{:?}", s.nodes);
}

#[test]
fn a_host_name_with_several_addresses_is_one_node_with_one_name() {
    let a = Node::start(&["--workers", "1"]);
    let port = a.name().rsplit_once(':').unwrap().1.to_owned();
    // `localhost` may resolve to ::1 first; the node listens on 127.0.0.1
    // only: the link tries each address in turn.
    let name = format!("localhost:{port}");
    let server = Server::builder()
        .ncpus(0)
        .secret(&*SECRET)
        .nodes([name.clone()])
        .build()
        .unwrap();
    let nodes = server.nodes();
    assert_eq!(nodes.len(), 1, "{nodes:?}");
    assert_eq!(nodes[0].name, name);
    assert!(matches!(nodes[0].state, NodeState::Up { .. }), "{nodes:?}");
    assert_eq!(nodes[0].addr, Some(a.name().parse().unwrap()));
    assert!(nodes[0].node_id.is_some(), "{nodes:?}");
    // A job's error names the node as the user did, as the stats do.
    let err = server
        .submit(jobs::fail, ("no".into(),))
        .wait()
        .unwrap_err();
    assert_eq!(err.node.as_deref(), Some(name.as_str()), "{err:?}");
    assert!(server.stats().nodes.iter().any(|n| n.node == name));
}

#[test]
fn node_status_says_what_kind_of_failure() {
    use ppclient::StatusErrorKind;
    let a = Node::start(&["--workers", "1"]);
    let e = ppclient::node_status(
        &a.name(),
        ppcore::Key::generate().unwrap().to_text(),
        Duration::from_secs(5),
    )
    .unwrap_err();
    assert_eq!(e.kind, StatusErrorKind::Refused, "{e}");
    assert!(e.reason.contains("wrong key"), "{e}");
    // A port nobody listens on (bound, then closed).
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = free.local_addr().unwrap().to_string();
    drop(free);
    let e = ppclient::node_status(&addr, &*SECRET, Duration::from_secs(5)).unwrap_err();
    assert_eq!(e.kind, StatusErrorKind::Unreachable, "{e}");
    assert_eq!(
        ppclient::node_status(&a.name(), &*SECRET, Duration::from_secs(5))
            .unwrap()
            .workers,
        1
    );
}

/// 256 MiB whose every 4 KiB differs from the next.
fn big_payload(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    for (i, block) in v.chunks_mut(4096).enumerate() {
        block.fill((i % 251) as u8);
    }
    v
}

#[test]
fn a_256_mib_argument_and_result_round_trip_exact_while_small_jobs_flow() {
    use serde_bytes::ByteBuf;
    let a = Node::start(&["--workers", "2"]);
    let server = remote_only(&[&a]);
    let payload = big_payload(256 << 20);
    let big = server.submit(jobs::echo_bytes, (ByteBuf::from(payload.clone()),));
    // Small jobs go between the chunks, both ways.
    let small: Vec<_> = (0..20u64)
        .map(|i| server.submit(jobs::echo_u64, (i,)))
        .collect();
    for (i, h) in small.into_iter().enumerate() {
        assert_eq!(h.wait_timeout(Duration::from_secs(60)), Some(Ok(i as u64)));
    }
    let back = big
        .wait_timeout(Duration::from_secs(120))
        .expect("resolves in time")
        .expect("succeeds");
    assert!(back.len() == payload.len() && *back == payload[..]);
    let s = server.stats();
    assert_eq!((s.succeeded, s.retried, s.failed), (21, 0, 0), "{s:?}");
}

#[test]
fn a_payload_over_the_clients_limit_fails_at_submit_and_the_node_serves_on() {
    use serde_bytes::ByteBuf;
    let a = Node::start(&["--workers", "1"]);
    let server = Server::builder()
        .ncpus(0)
        .secret(SECRET.as_str())
        .nodes([a.name()])
        .max_payload(4 << 20)
        .build()
        .unwrap();
    let err = server
        .submit(jobs::echo_bytes, (ByteBuf::from(vec![1u8; 5 << 20]),))
        .wait()
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Codec);
    assert!(err.message.contains("4194304-byte payload limit"), "{err}");
    let back = server
        .submit(jobs::echo_bytes, (ByteBuf::from(vec![2u8; 3 << 20]),))
        .wait();
    assert_eq!(back.map(|b| b.len()), Ok(3 << 20));
    assert_eq!(server.active_nodes().len(), 1);
}
