//! The API as a new user meets it (issue 11): argument limits, options,
//! secrets from the environment, panics.

use ppclient::{ByteBuf, ErrorKind, Server};

const MIB: usize = 1 << 20;

#[test]
fn too_big_arguments_fail_at_submit_even_with_only_local_workers() {
    let server = Server::builder().ncpus(2).build().unwrap();
    let handles: Vec<_> = (0..3)
        .map(|_| server.submit(jobs::echo_bytes, (ByteBuf::from(vec![7u8; 17 * MIB]),)))
        .collect();
    for h in handles {
        assert!(h.is_finished(), "resolved at submit");
        let err = h.wait().unwrap_err();
        assert_eq!(err.kind, ErrorKind::Codec, "{err}");
        assert!(err.message.contains("limit"), "{err}");
    }
    let fits = ByteBuf::from(vec![7u8; MIB]);
    let back = server.submit(jobs::echo_bytes, (fits.clone(),)).wait();
    assert_eq!(back, Ok(fits));
    assert_eq!(server.stats().failed, 3);
}

/// An in-process loopback node with every linked job.
fn node(secret: &str) -> ppclient::node::Running {
    let config = ppclient::node::Config {
        port: 0,
        workers: 1,
        secret: ppclient::Secret::new(secret),
        ..Default::default()
    };
    ppclient::node::start(config, ppclient::Registry::linked().unwrap()).unwrap()
}

#[test]
fn too_big_arguments_fail_the_same_with_local_workers_and_a_node() {
    let node = node("s");
    let server = Server::builder()
        .ncpus(1)
        .secret("s")
        .nodes([node.local_addr().to_string()])
        .build()
        .unwrap();
    assert_eq!(server.active_nodes().len(), 1, "{:?}", server.nodes());
    let handles: Vec<_> = (0..6)
        .map(|_| server.submit(jobs::echo_bytes, (ByteBuf::from(vec![1u8; 20 * MIB]),)))
        .collect();
    for h in handles {
        assert!(h.is_finished(), "resolved at submit");
        assert_eq!(h.wait().unwrap_err().kind, ErrorKind::Codec);
    }
    assert_eq!(server.submit(jobs::echo_u64, (5,)).wait(), Ok(5));
}

#[test]
fn process_isolation_without_init_worker_is_refused_with_the_reason() {
    let config = ppclient::node::Config {
        port: 0,
        isolation: ppclient::node::Isolation::Process,
        ..Default::default()
    };
    let refused = ppclient::node::start(config, ppclient::Registry::linked().unwrap());
    let err = refused.err().expect("refused");
    assert!(matches!(err, ppclient::node::ServeError::NoWorkerMode));
    assert!(err.to_string().contains("init_worker"), "{err}");
}
