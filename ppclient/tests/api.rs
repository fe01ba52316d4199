//! The API as a new user meets it (issue 11): argument limits, options,
//! secrets from the environment, panics.

use ppclient::{ByteBuf, ErrorKind, Server};
use std::time::Duration;

/// The cluster's key, and another one.
static RIGHT: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| ppclient::Key::generate().unwrap().to_text());
static WRONG: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| ppclient::Key::generate().unwrap().to_text());

const MIB: usize = 1 << 20;

#[test]
fn too_big_arguments_fail_at_submit_even_with_only_local_workers() {
    // Over the client's payload limit (`Builder::max_payload`, 16 MiB here).
    let server = Server::builder()
        .ncpus(2)
        .max_payload(16 * MIB as u64)
        .build()
        .unwrap();
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
fn node(secret: &str) -> ppserver::Running {
    let config = ppserver::Config {
        port: 0,
        workers: 1,
        keys: Some(ppclient::KeySet::parse(secret).unwrap()),
        ..Default::default()
    };
    ppserver::start(config, ppclient::Registry::linked().unwrap()).unwrap()
}

#[test]
fn too_big_arguments_fail_the_same_with_local_workers_and_a_node() {
    let node = node(&RIGHT);
    let server = Server::builder()
        .ncpus(1)
        .secret(RIGHT.as_str())
        .nodes([node.local_addr().to_string()])
        .max_payload(16 * MIB as u64)
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
    let config = ppserver::Config {
        port: 0,
        keys: Some(ppclient::KeySet::parse(&RIGHT).unwrap()),
        isolation: ppserver::Isolation::Process,
        ..Default::default()
    };
    let refused = ppserver::start(config, ppclient::Registry::linked().unwrap());
    let err = refused.err().expect("refused");
    assert!(matches!(err, ppserver::ServeError::NoWorkerMode));
    assert!(err.to_string().contains("init_worker"), "{err}");
}

/// Runs test `name` of this binary again in a child process with `env`
/// (`None` removes a variable); in the child, `PP_CHILD` is `name`.
fn rerun(name: &str, env: &[(&str, Option<&str>)]) -> std::process::Output {
    let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", name, "--nocapture", "--test-threads", "1"])
        .env("PP_CHILD", name);
    for (key, value) in env {
        match value {
            Some(v) => cmd.env(key, v),
            None => cmd.env_remove(key),
        };
    }
    cmd.output().unwrap()
}

fn child(name: &str) -> bool {
    std::env::var("PP_CHILD").is_ok_and(|c| c == name)
}

#[test]
fn a_local_panic_is_the_jobs_error_not_a_report_on_stderr() {
    const NAME: &str = "a_local_panic_is_the_jobs_error_not_a_report_on_stderr";
    if child(NAME) {
        let server = Server::builder().ncpus(1).build().unwrap();
        let err = server
            .submit(jobs::panic, ("boom".into(),))
            .wait()
            .unwrap_err();
        assert_eq!(
            (err.kind, err.message.as_str()),
            (ErrorKind::Panicked, "boom")
        );
        return;
    }
    let quiet = rerun(NAME, &[("RUST_BACKTRACE", None)]);
    let stderr = String::from_utf8_lossy(&quiet.stderr);
    assert!(quiet.status.success(), "{stderr}");
    assert!(
        !stderr.contains("boom") && !stderr.contains("panicked"),
        "{stderr}"
    );
    let loud = rerun(NAME, &[("RUST_BACKTRACE", Some("1"))]);
    let stderr = String::from_utf8_lossy(&loud.stderr);
    assert!(loud.status.success(), "{stderr}");
    assert!(
        stderr.contains("panicked") && stderr.contains("boom"),
        "{stderr}"
    );
}

#[test]
fn the_secret_comes_from_pp_secret_when_none_is_given() {
    const NAME: &str = "the_secret_comes_from_pp_secret_when_none_is_given";
    if child(NAME) {
        let addr = std::env::var("PP_TEST_NODE").unwrap();
        let server = Server::builder().ncpus(0).nodes([addr]).build().unwrap();
        assert_eq!(server.active_nodes().len(), 1, "{:?}", server.nodes());
        assert_eq!(server.submit(jobs::echo_u64, (11,)).wait(), Ok(11));
        return;
    }
    let node = node(&RIGHT);
    let addr = node.local_addr().to_string();
    let out = rerun(
        NAME,
        &[
            ("PP_SECRET", Some(RIGHT.as_str())),
            ("PP_TEST_NODE", Some(&addr)),
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("1 passed"), "{text}");
}

#[test]
fn a_refusing_node_fails_the_jobs_only_it_could_run_with_auth() {
    let node = node(&RIGHT);
    let addr = node.local_addr().to_string();
    let server = Server::builder()
        .ncpus(0)
        .secret(WRONG.as_str())
        .nodes([addr.clone()])
        .build()
        .unwrap();
    assert!(
        matches!(server.nodes()[0].state, ppclient::NodeState::Failed { .. }),
        "{:?}",
        server.nodes()
    );
    let err = server.submit(jobs::echo_u64, (1,)).wait().unwrap_err();
    assert_eq!(err.kind, ErrorKind::Auth, "{err}");
    assert!(err.message.contains(&addr), "{err}");
    let stats = server.stats();
    let row = &stats.nodes[1];
    assert_eq!(row.node, addr);
    assert!(
        row.down.as_deref().unwrap_or("").starts_with("refused"),
        "{row:?}"
    );
    assert!(stats.to_string().contains("refused: wrong key"), "{stats}");
}

#[test]
fn a_node_without_the_job_gives_unknown_job_not_auth() {
    let mut registry = ppclient::Registry::new();
    registry.add::<jobs::echo_u64>().unwrap();
    let config = ppserver::Config {
        port: 0,
        workers: 1,
        keys: Some(ppclient::KeySet::parse(&RIGHT).unwrap()),
        ..Default::default()
    };
    let node = ppserver::start(config, registry).unwrap();
    let server = Server::builder()
        .ncpus(0)
        .secret(RIGHT.as_str())
        .nodes([node.local_addr().to_string()])
        .build()
        .unwrap();
    assert_eq!(server.submit(jobs::echo_u64, (2,)).wait(), Ok(2));
    let err = server.submit(jobs::noop, ()).wait().unwrap_err();
    assert_eq!(err.kind, ErrorKind::UnknownJob, "{err}");
}

#[test]
fn require_nodes_makes_build_fail_when_nodes_refuse_or_are_down() {
    let node = node(&RIGHT);
    let addr = node.local_addr().to_string();
    let refused = Server::builder()
        .ncpus(1)
        .secret(WRONG.as_str())
        .nodes([addr.clone(), "127.0.0.1:1".to_owned()])
        .require_nodes(1)
        .build()
        .unwrap_err();
    match &refused {
        ppclient::BuildError::NodesUnavailable { wanted, up, nodes } => {
            assert_eq!((*wanted, *up, nodes.len()), (1, 0, 2));
        }
        other => panic!("{other}"),
    }
    let text = refused.to_string();
    assert!(text.contains(&format!("{addr} refused")), "{text}");
    assert!(text.contains("127.0.0.1:1 down"), "{text}");
    let server = Server::builder()
        .secret(RIGHT.as_str())
        .nodes([addr])
        .require_nodes(1)
        .build()
        .unwrap();
    assert_eq!(server.active_nodes().len(), 1);
}

#[test]
fn a_refusing_node_is_reported_on_stderr_without_a_logger() {
    const NAME: &str = "a_refusing_node_is_reported_on_stderr_without_a_logger";
    if child(NAME) {
        let addr = std::env::var("PP_TEST_NODE").unwrap();
        let server = Server::builder()
            .secret(WRONG.as_str())
            .nodes([addr])
            .build()
            .unwrap();
        // With local workers the job still runs: the refusal is only reported.
        assert_eq!(server.submit(jobs::echo_u64, (3,)).wait(), Ok(3));
        return;
    }
    let node = node(&RIGHT);
    let addr = node.local_addr().to_string();
    let out = rerun(NAME, &[("PP_TEST_NODE", Some(&addr))]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let expected = format!("pp: node {addr} refused us: wrong key");
    assert!(stderr.contains(&expected), "{stderr}");
}

#[test]
fn a_program_that_reports_refusals_itself_can_turn_the_report_off() {
    const NAME: &str = "a_program_that_reports_refusals_itself_can_turn_the_report_off";
    if child(NAME) {
        let addr = std::env::var("PP_TEST_NODE").unwrap();
        let server = Server::builder()
            .secret(WRONG.as_str())
            .nodes([addr])
            .report_refusals(false)
            .build()
            .unwrap();
        assert!(matches!(
            server.nodes()[0].state,
            ppclient::NodeState::Failed { .. }
        ));
        return;
    }
    let node = node(&RIGHT);
    let addr = node.local_addr().to_string();
    let out = rerun(NAME, &[("PP_TEST_NODE", Some(&addr))]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("refused"), "{stderr}");
}

#[test]
fn a_full_byte_budget_makes_try_submit_hand_the_job_back_and_submit_wait() {
    // No worker and no node yet (a paused server): nothing takes the jobs,
    // so the budget fills.
    let server = Server::builder()
        .ncpus(0)
        .byte_budget(3 * MIB as u64)
        .build()
        .unwrap();
    let first = server.submit(jobs::echo_bytes, (ByteBuf::from(vec![1u8; 2 * MIB]),));
    assert!(server.budget_used() > 2 * MIB as u64);
    let back = server.try_submit(jobs::echo_bytes, (ByteBuf::from(vec![2u8; 2 * MIB]),));
    let Err((_, (args,))) = back else {
        panic!("not handed back: the budget is full")
    };
    assert_eq!(args.len(), 2 * MIB, "untouched");
    // A small one still fits.
    let Ok(small) = server.try_submit(jobs::echo_u64, (4,)) else {
        panic!("a small job fits")
    };
    // Taken by a local worker, the first job's bytes come back, and a
    // submit that waited for them goes on.
    let waiter = std::thread::scope(|scope| {
        let waiting = scope.spawn(|| {
            server
                .submit(jobs::echo_bytes, (ByteBuf::from(vec![3u8; 2 * MIB]),))
                .wait()
        });
        server.set_ncpus(1);
        waiting.join().unwrap()
    });
    assert_eq!(waiter.map(|b| b.len()), Ok(2 * MIB));
    assert_eq!(first.wait().map(|b| b.len()), Ok(2 * MIB));
    assert_eq!(small.wait(), Ok(4));
    assert_eq!(server.budget_used(), 0);
}

#[test]
fn a_node_predicate_may_itself_ask_the_server_about_its_nodes() {
    let server = Server::builder().ncpus(1).build().unwrap();
    // The predicate runs with no lock of the server held: before, it ran
    // under the lock every link takes to report news, and the nested wait
    // below never returned.
    let held = server.wait_for_nodes_where(Duration::from_secs(10), |nodes| {
        nodes.is_empty() && server.nodes().is_empty() && server.wait_for_nodes(0, Duration::ZERO)
    });
    assert!(held);
}

#[test]
fn wait_for_nodes_where_wakes_when_a_node_goes_down() {
    let secret = ppcore::Key::generate().unwrap().to_text();
    let n = node(&secret);
    let server = Server::builder()
        .ncpus(0)
        .secret(&secret)
        .nodes([n.local_addr().to_string()])
        .build()
        .unwrap();
    let down = |nodes: &[ppclient::NodeInfo]| {
        nodes
            .iter()
            .all(|i| matches!(i.state, ppclient::NodeState::Down { .. }))
    };
    // Up now: the condition does not hold, and waiting for it times out.
    assert!(!server.wait_for_nodes_where(Duration::from_millis(50), down));
    n.stop();
    n.wait();
    assert!(
        server.wait_for_nodes_where(Duration::from_secs(30), down),
        "{:?}",
        server.nodes()
    );
}
