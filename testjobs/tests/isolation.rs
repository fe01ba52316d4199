//! Isolation mode: an abort, a segfault or a runaway job costs only that job.

mod support;

use ppclient::{ErrorKind, Options};
use std::time::Duration;
use support::{client, node, SECRET, WAIT};

#[test]
fn abort_and_segfault_cost_only_their_job() {
    let n = node("1");
    let server = client(&n);
    let err = server
        .submit(testjobs::abort_process, ())
        .wait_timeout(WAIT)
        .unwrap()
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Crashed);
    assert!(err.message.contains("SIGABRT"), "{err}");
    assert!(
        err.message.contains("crashed 2 time(s)"),
        "a poison job is tried twice: {err}"
    );
    let err = server
        .submit(testjobs::segfault, ())
        .wait_timeout(WAIT)
        .unwrap()
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Crashed);
    assert!(err.message.contains("SIGSEGV"), "{err}");
    // The node replaced its worker process and serves on.
    assert_eq!(server.submit(jobs::sum_primes, (100,)).wait(), Ok(1060));
    let err = server
        .submit(jobs::panic, ("still typed".into(),))
        .wait()
        .unwrap_err();
    assert_eq!(
        (err.kind, err.message.as_str()),
        (ErrorKind::Panicked, "still typed")
    );
    assert!(server.active_nodes().contains(&n.1));
}

#[test]
fn poison_job_limit_is_configurable() {
    let n = node("1");
    let server = client(&n);
    let opts = Options::new().crash_retries(1);
    let err = server
        .submit_with(testjobs::abort_process, (), opts)
        .wait_timeout(WAIT)
        .unwrap()
        .unwrap_err();
    assert!(err.message.contains("crashed 1 time(s)"), "{err}");
}

#[test]
fn runaway_job_is_stopped_by_its_timeout_and_the_worker_replaced() {
    let n = node("1");
    let server = client(&n);
    let opts = Options::new().timeout(Duration::from_millis(300));
    let err = server
        .submit_with(testjobs::spin, (120,), opts)
        .wait_timeout(WAIT)
        .unwrap()
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::TimedOut);
    // With one worker, this runs only if the runaway process was killed.
    let next = server
        .submit(jobs::echo_u64, (8,))
        .wait_timeout(Duration::from_secs(20));
    assert_eq!(next.unwrap(), Ok(8));
    let status = ppclient::node_status(&n.1, SECRET.as_str(), Duration::from_secs(5)).unwrap();
    assert_eq!(status.jobs_cancelled, 1, "{status:?}");
}

#[test]
fn isolated_results_match_threaded_ones() {
    let n = node("2");
    let server = client(&n);
    let terms = 1_000_000;
    let sum: f64 = (0..16)
        .map(|k| {
            let (lo, hi) = jobs::task_range(terms, 16, k);
            server.submit(jobs::maclaurin, (0.999, lo, hi))
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.wait().unwrap())
        .sum();
    let exact = jobs::maclaurin_exact(0.999, terms);
    assert!(((sum - exact) / exact).abs() < 1e-9);
}
