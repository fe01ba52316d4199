//! Node loss, stalls, timeouts and cancellation: nothing hangs, nothing is
//! lost, every handle and callback resolves exactly once.

mod common;

use common::{close, Node, SECRET};
use ppclient::{ErrorKind, Options, Server};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

fn cluster(nodes: &[&Node], heartbeat_ms: u64) -> Server {
    Server::builder()
        .ncpus(0)
        .secret(SECRET.as_str())
        .nodes(nodes.iter().map(|n| n.name()))
        .heartbeat(Duration::from_millis(heartbeat_ms))
        .build()
        .unwrap()
}

/// Submits the 64 Maclaurin slices of `terms` with a callback counting calls.
fn maclaurin_with_callbacks(
    server: &Server,
    terms: u64,
) -> (Vec<ppclient::JobHandle<f64>>, Arc<AtomicU64>) {
    let calls = Arc::new(AtomicU64::new(0));
    let handles = (0..64)
        .map(|k| {
            let (lo, hi) = jobs::task_range(terms, 64, k);
            let calls = Arc::clone(&calls);
            let opts = Options::new().callback(move |_: &Result<f64, _>| {
                calls.fetch_add(1, Ordering::Relaxed);
            });
            server.submit_with(jobs::maclaurin, (0.9999, lo, hi), opts)
        })
        .collect();
    (handles, calls)
}

#[test]
fn node_killed_mid_job_reruns_elsewhere() {
    let (a, b) = (
        Node::start(&["--workers", "2"]),
        Node::start(&["--workers", "2"]),
    );
    let server = cluster(&[&a, &b], 100);
    let terms = 64 * 4_000_000;
    let (handles, calls) = maclaurin_with_callbacks(&server, terms);
    common::wait_busy(&a, 1);
    a.signal("KILL");
    let sum: f64 = handles
        .into_iter()
        .map(|h| h.wait_timeout(WAIT).expect("resolves").expect("succeeds"))
        .sum();
    assert!(close(sum, jobs::maclaurin_exact(0.9999, terms)), "{sum}");
    assert_eq!(calls.load(Ordering::Relaxed), 64, "each callback once");
    let s = server.stats();
    assert_eq!((s.succeeded, s.failed, s.active), (64, 0, 0));
    assert!(s.retried > 0, "the killed node had jobs in flight: {s:?}");
    let ran: u64 = s.nodes.iter().map(|n| n.jobs).sum();
    assert_eq!(ran, 64, "each job counted once: {:?}", s.nodes);
}

/// A node frozen with jobs on it is declared lost; its jobs run elsewhere.
/// When it thaws and finishes them, its connection is gone: nothing
/// resolves twice. (That a late result on a live connection is dropped is
/// `ppcore::link` test `a_late_result_after_reassignment_is_dropped`.)
#[test]
fn frozen_node_jobs_rerun_elsewhere_and_its_thawed_work_changes_nothing() {
    let (a, b) = (
        Node::start(&["--workers", "2"]),
        Node::start(&["--workers", "2"]),
    );
    let server = cluster(&[&a, &b], 100);
    let calls = Arc::new(AtomicU64::new(0));
    let handles: Vec<_> = (0..20u64)
        .map(|i| {
            let calls = Arc::clone(&calls);
            let opts = Options::new().callback(move |_: &Result<u64, _>| {
                calls.fetch_add(1, Ordering::Relaxed);
            });
            server.submit_with(jobs::sleep_ms, (150 + i,), opts)
        })
        .collect();
    common::wait_busy(&a, 1);
    a.signal("STOP");
    for (i, h) in handles.into_iter().enumerate() {
        assert_eq!(h.wait_timeout(WAIT).expect("resolves"), Ok(150 + i as u64));
    }
    a.signal("CONT");
    // The thawed node finishes or skips what it had, then drains and
    // exits: by then nothing of it can reach the client, and none counted.
    a.signal("TERM");
    let mut a = a;
    assert_eq!(a.wait_exit(WAIT), Some(0));
    assert_eq!(calls.load(Ordering::Relaxed), 20);
    let s = server.stats();
    assert_eq!((s.succeeded, s.failed, s.active), (20, 0, 0));
    assert!(s.retried > 0, "the stopped node's jobs ran again: {s:?}");
    assert_eq!(
        s.nodes.iter().map(|n| n.jobs).sum::<u64>(),
        20,
        "{:?}",
        s.nodes
    );
}

#[test]
fn retries_are_bounded_and_say_which_nodes_were_lost() {
    let a = Node::start(&["--workers", "1"]);
    let server = cluster(&[&a], 100);
    let opts = Options::new().node_retries(1);
    let h = server.submit_with(jobs::sleep_ms, (5_000,), opts);
    common::wait_busy(&a, 1);
    a.signal("KILL");
    let err = h.wait_timeout(WAIT).unwrap().unwrap_err();
    assert_eq!(err.kind, ErrorKind::NodeLost);
    assert!(err.message.contains(&a.name()), "{err}");
}

#[test]
fn timeout_reaches_the_node() {
    let a = Node::start(&["--workers", "1"]);
    let server = cluster(&[&a], 1000);
    // The first job holds the node's one worker long enough for the cancel
    // to arrive (at the link's next 50 ms sweep) even on a loaded machine.
    let first = server.submit(jobs::sleep_ms, (1_500,));
    let late = server.submit_with(
        jobs::sleep_ms,
        (400,),
        Options::new().timeout(Duration::from_millis(100)),
    );
    let err = late.wait_timeout(WAIT).unwrap().unwrap_err();
    assert_eq!(err.kind, ErrorKind::TimedOut);
    assert_eq!(first.wait_timeout(WAIT).unwrap(), Ok(1_500));
    // The node skips the cancelled job when its worker comes to it: both
    // jobs have ended there once its status counts them.
    let ask = || ppclient::node_status(&a.name(), SECRET.as_str(), Duration::from_secs(5)).unwrap();
    let mut status = ask();
    let ended = common::eventually(Duration::from_secs(10), || {
        status = ask();
        status.jobs_done + status.jobs_cancelled >= 2 && status.jobs_active == 0
    });
    assert!(ended, "{status:?}");
    assert_eq!(
        (status.jobs_done, status.jobs_cancelled),
        (1, 1),
        "{status:?}"
    );
}

/// A result for a job that is no longer in flight (it timed out while
/// running on the node, which cannot stop a running thread) arrives on the
/// live connection and is dropped: the handle keeps its timeout, the
/// callback runs once, the node's count does not take it.
#[test]
fn a_result_arriving_after_its_job_timed_out_is_dropped() {
    let a = Node::start(&["--workers", "1"]);
    let server = cluster(&[&a], 1000);
    let calls = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&calls);
    let opts =
        Options::new()
            .timeout(Duration::from_millis(100))
            .callback(move |_: &Result<u64, _>| {
                counted.fetch_add(1, Ordering::Relaxed);
            });
    let late = server.submit_with(jobs::sleep_ms, (600,), opts);
    common::wait_busy(&a, 1);
    let err = late.wait_timeout(WAIT).unwrap().unwrap_err();
    assert_eq!(err.kind, ErrorKind::TimedOut);
    // The node's one worker runs the sleep to its end, so this job's result
    // comes after the late one, on the same connection: once it resolved,
    // the late result has been read and dropped.
    assert_eq!(server.submit(jobs::echo_u64, (7,)).wait(), Ok(7));
    assert_eq!(calls.load(Ordering::Relaxed), 1, "the callback ran once");
    let s = server.stats();
    assert_eq!(
        (s.succeeded, s.failed, s.timed_out, s.active),
        (1, 0, 1, 0),
        "{s:?}"
    );
    let ran: u64 = s.nodes.iter().map(|n| n.jobs).sum();
    assert_eq!(ran, 1, "only the echo counted on the node: {:?}", s.nodes);
}

#[test]
fn cancel_of_a_job_queued_on_a_node_skips_it_there() {
    let a = Node::start(&["--workers", "1"]);
    let server = cluster(&[&a], 1000);
    let running = server.submit(jobs::sleep_ms, (300,));
    let queued_on_node = server.submit(jobs::sleep_ms, (300,));
    common::wait_busy(&a, 2);
    assert!(queued_on_node.cancel());
    assert_eq!(
        queued_on_node.wait_timeout(WAIT).unwrap().unwrap_err().kind,
        ErrorKind::Cancelled
    );
    assert_eq!(running.wait_timeout(WAIT).unwrap(), Ok(300));
    assert_eq!(server.submit(jobs::echo_u64, (1,)).wait(), Ok(1));
    let status = ppclient::node_status(&a.name(), SECRET.as_str(), Duration::from_secs(5)).unwrap();
    assert_eq!(
        (status.jobs_done, status.jobs_cancelled),
        (2, 1),
        "{status:?}"
    );
}

#[test]
fn failed_remote_jobs_run_again_when_asked() {
    let (a, b) = (
        Node::start(&["--workers", "1"]),
        Node::start(&["--workers", "1"]),
    );
    let server = cluster(&[&a, &b], 1000);
    // Each node fails a key's first run: with two retries, some node succeeds.
    let opts = Options::new().retries(2);
    let runs = server
        .submit_with(jobs::flaky, ("remote".into(), 1), opts)
        .wait_timeout(WAIT)
        .unwrap()
        .unwrap();
    assert!(runs >= 2, "{runs}");
    let err = server
        .submit(jobs::flaky, ("remote-once".into(), 5))
        .wait_timeout(WAIT)
        .unwrap()
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Failed);
    assert!(server.stats().retried >= 1);
}

#[test]
fn node_killed_while_a_stream_is_in_flight_reruns_elsewhere_exact() {
    use serde_bytes::ByteBuf;
    let a = Node::start(&["--workers", "2"]);
    let server = Server::builder()
        .ncpus(0)
        .secret(SECRET.as_str())
        .nodes([a.name()])
        .listen("127.0.0.1:0")
        .heartbeat(Duration::from_millis(500))
        .build()
        .unwrap();
    // Frozen, the node reads nothing: 4 × 32 MiB of arguments cannot all
    // leave the client, so they are mid-stream when it is lost.
    a.signal("STOP");
    let payloads: Vec<Vec<u8>> = (0..4u8)
        .map(|k| {
            let mut v = vec![k; 32 << 20];
            for (i, block) in v.chunks_mut(4096).enumerate() {
                block[0] = (i % 253) as u8;
            }
            v
        })
        .collect();
    let handles: Vec<_> = payloads
        .iter()
        .map(|p| server.submit(jobs::echo_bytes, (ByteBuf::from(p.clone()),)))
        .collect();
    // Taken by the only node's link (its queue wait is counted then).
    assert!(common::eventually(Duration::from_secs(20), || {
        server.stats().queue_wait > Duration::ZERO
    }));
    a.signal("KILL");
    let addr = server.listen_addr().unwrap().to_string();
    let _b = Node::start(&["--join", &addr]);
    for (h, p) in handles.into_iter().zip(&payloads) {
        let back = h.wait_timeout(WAIT).expect("resolves").expect("succeeds");
        assert!(*back == p[..], "exact");
    }
    let s = server.stats();
    assert_eq!((s.succeeded, s.failed, s.active), (4, 0, 0), "{s:?}");
    let ran: u64 = s.nodes.iter().map(|n| n.jobs).sum();
    assert_eq!(ran, 4, "each job counted once: {:?}", s.nodes);
    assert!(s.retried >= 1, "lost mid-stream, sent again: {s:?}");
}
