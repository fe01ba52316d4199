//! The pp experience on one machine: the Server API against its local pool.

use ppclient::{ErrorKind, Options, Server};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Gates that test jobs wait on, one per test, so tests can hold a worker
/// busy; and whether the job at each gate has started.
struct Gates {
    open: [bool; 8],
    started: [bool; 8],
}

static GATES: (Mutex<Gates>, Condvar) = (
    Mutex::new(Gates {
        open: [false; 8],
        started: [false; 8],
    }),
    Condvar::new(),
);

ppcore::job! {
    /// Waits (at most 10 s) until gate `i` opens, then returns `i`.
    fn gate(i: usize) -> usize {
        let (lock, cv) = &GATES;
        let mut g = lock.lock().unwrap();
        g.started[i] = true;
        cv.notify_all();
        let _open = cv
            .wait_timeout_while(g, Duration::from_secs(10), |g| !g.open[i])
            .unwrap();
        i
    }
}

fn open(i: usize) {
    GATES.0.lock().unwrap().open[i] = true;
    GATES.1.notify_all();
}

/// Waits (at most 10 s) until the job at gate `i` has started; true if it has.
fn started(i: usize) -> bool {
    let g = GATES.0.lock().unwrap();
    let (g, _) = GATES
        .1
        .wait_timeout_while(g, Duration::from_secs(10), |g| !g.started[i])
        .unwrap();
    g.started[i]
}

const WAIT: Duration = Duration::from_secs(10);

fn server(ncpus: usize) -> Server {
    Server::builder().ncpus(ncpus).build().unwrap()
}

#[test]
fn maclaurin_over_64_jobs_matches_the_closed_form() {
    let server = Server::builder().build().unwrap();
    assert_eq!(server.ncpus(), ppclient::detect_ncpus());
    let (x, terms) = (0.999, 1_000_000);
    let handles: Vec<_> = (0..64)
        .map(|k| {
            let (lo, hi) = jobs::task_range(terms, 64, k);
            server.submit(jobs::maclaurin, (x, lo, hi))
        })
        .collect();
    let sum: f64 = handles
        .into_iter()
        .map(|h| h.wait())
        .sum::<Result<f64, _>>()
        .unwrap();
    let exact = jobs::maclaurin_exact(x, terms);
    assert!(((sum - exact) / exact).abs() < 1e-9);
}

#[test]
fn map_returns_results_in_input_order() {
    let server = server(2);
    let out: Vec<u64> = server
        .map(jobs::echo_u64, (0..500).map(|i| (i,)))
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(out, (0..500).collect::<Vec<u64>>());
}

#[test]
fn callbacks_are_called_exactly_once_with_the_result() {
    let server = server(2);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let handles: Vec<_> = (0..200u64)
        .map(|i| {
            let seen = Arc::clone(&seen);
            let opts = Options::new().callback(move |r: &Result<u64, _>| {
                seen.lock().unwrap().push(*r.as_ref().unwrap());
            });
            server.submit_with(jobs::echo_u64, (i,), opts)
        })
        .collect();
    for h in handles {
        h.wait().unwrap();
    }
    // The callback runs before the handle resolves.
    let mut seen = seen.lock().unwrap().clone();
    seen.sort();
    assert_eq!(seen, (0..200).collect::<Vec<u64>>());
}

#[test]
fn callback_sees_failures_too() {
    let server = server(1);
    let kind = Arc::new(Mutex::new(None));
    let k = Arc::clone(&kind);
    let opts = Options::new().callback(move |r: &Result<u64, ppclient::JobError>| {
        *k.lock().unwrap() = r.as_ref().err().map(|e| e.kind);
    });
    let h = server.submit_with(jobs::panic, ("oops".into(),), opts);
    assert_eq!(h.wait().unwrap_err().kind, ErrorKind::Panicked);
    assert_eq!(*kind.lock().unwrap(), Some(ErrorKind::Panicked));
}

#[test]
fn wait_group_waits_only_for_its_members() {
    let server = server(2);
    let blocked = server.submit_with(gate, (0,), Options::new().group("slow"));
    let fast: Vec<_> = (0..20u64)
        .map(|i| server.submit_with(jobs::echo_u64, (i,), Options::new().group("fast")))
        .collect();
    server.wait_group("fast").unwrap();
    assert!(fast.iter().all(|h| h.is_finished()));
    assert!(!blocked.is_finished());
    server.wait_group("no such group").unwrap();
    open(0);
    server.wait_group("slow").unwrap();
    assert!(blocked.is_finished());
    assert_eq!(blocked.wait().unwrap(), 0);
}

#[test]
fn panicking_job_returns_panicked_and_the_next_job_still_runs() {
    let server = server(1);
    let err = server
        .submit(jobs::panic, ("on purpose".into(),))
        .wait()
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Panicked);
    assert_eq!(err.message, "on purpose");
    assert_eq!(err.node.as_deref(), Some("local"));
    assert_eq!(server.submit(jobs::echo_u64, (7,)).wait().unwrap(), 7);
}

#[test]
fn failing_job_returns_failed_with_its_message() {
    let server = server(1);
    let err = server
        .submit(jobs::fail, ("no luck".into(),))
        .wait()
        .unwrap_err();
    assert_eq!(
        (err.kind, err.message.as_str()),
        (ErrorKind::Failed, "no luck")
    );
    assert!(err.to_string().contains("no luck"), "{err}");
}

#[test]
fn timeout_resolves_the_handle_with_timed_out() {
    let server = server(2);
    let opts = Options::new().timeout(Duration::from_millis(50));
    let h = server.submit_with(jobs::sleep_ms, (3_000,), opts);
    let err = h.wait_timeout(WAIT).unwrap().unwrap_err();
    assert_eq!(err.kind, ErrorKind::TimedOut);
    let quick = Options::new().timeout(Duration::from_secs(60));
    assert_eq!(
        server.submit_with(jobs::echo_u64, (1,), quick).wait(),
        Ok(1)
    );
}

#[test]
fn cancelling_a_queued_job_resolves_it_cancelled_once_and_a_running_local_job_runs_on() {
    let server = server(1);
    let running = server.submit(gate, (1,));
    assert!(started(1));
    let queued = server.submit(jobs::echo_u64, (5,));
    assert!(queued.cancel());
    assert!(!queued.cancel(), "a job is cancelled once");
    assert!(!running.cancel(), "a running local job is not cancelled");
    open(1);
    assert_eq!(queued.wait().unwrap_err().kind, ErrorKind::Cancelled);
    assert_eq!(running.wait().unwrap(), 1);
    let stats = server.stats();
    assert_eq!((stats.cancelled, stats.succeeded), (1, 1));
}

#[test]
fn dropping_the_server_resolves_every_pending_handle() {
    let server = server(1);
    let running = server.submit(gate, (2,));
    assert!(started(2));
    let queued: Vec<_> = (0..10u64)
        .map(|i| server.submit(jobs::echo_u64, (i,)))
        .collect();
    drop(server);
    open(2);
    // The job that was running finishes; the queued ones fail clearly.
    assert_eq!(running.wait_timeout(WAIT).unwrap(), Ok(2));
    for h in queued {
        let r = h.wait_timeout(WAIT).unwrap();
        assert_eq!(r.unwrap_err().kind, ErrorKind::Shutdown);
    }
}

#[test]
fn stats_count_exactly() {
    let server = server(2);
    let ok: Vec<_> = (0..10u64)
        .map(|i| server.submit(jobs::echo_u64, (i,)))
        .collect();
    let failed: Vec<_> = (0..3)
        .map(|_| server.submit(jobs::fail, ("x".into(),)))
        .collect();
    let panicked: Vec<_> = (0..2)
        .map(|_| server.submit(jobs::panic, ("x".into(),)))
        .collect();
    for h in ok {
        h.wait().unwrap();
    }
    for h in failed.into_iter().chain(panicked) {
        h.wait().unwrap_err();
    }
    let s = server.stats();
    assert_eq!(s.nodes.len(), 1);
    assert_eq!(
        (s.nodes[0].node.as_str(), s.nodes[0].jobs, s.nodes[0].failed),
        ("local", 15, 5)
    );
    assert_eq!(
        (s.submitted, s.succeeded, s.failed, s.active),
        (15, 10, 5, 0)
    );
    assert_eq!(
        (s.cancelled, s.timed_out, s.shut_down, s.retried),
        (0, 0, 0, 0)
    );
    let table = s.to_string();
    assert!(table.contains("job count | % of all jobs | job time sum | time per job | job server"));
    assert!(table.contains("       15 |        100.00 |"), "{table}");
    assert!(table.contains("0 active tasks, 2 cores"), "{table}");
}

#[test]
fn many_threads_submitting_at_once() {
    let server = server(2);
    let done = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for t in 0..8u64 {
            let (server, done) = (&server, &done);
            s.spawn(move || {
                let handles: Vec<_> = (0..5_000u64)
                    .map(|i| {
                        (
                            t * 10_000 + i,
                            server.submit(jobs::echo_u64, (t * 10_000 + i,)),
                        )
                    })
                    .collect();
                for (want, h) in handles {
                    assert_eq!(h.wait().unwrap(), want);
                    done.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    });
    server.wait_all().unwrap();
    assert_eq!(done.load(Ordering::Relaxed), 40_000);
    let s = server.stats();
    assert_eq!(
        (s.submitted, s.succeeded, s.nodes[0].jobs, s.active),
        (40_000, 40_000, 40_000, 0)
    );
}

#[test]
fn as_completed_yields_every_result_once() {
    let server = server(2);
    let handles: Vec<_> = [30u64, 1, 10, 0]
        .iter()
        .map(|&ms| server.submit(jobs::sleep_ms, (ms,)))
        .collect();
    let mut seen: Vec<(usize, u64)> = server
        .as_completed(handles)
        .map(|(i, r)| (i, r.unwrap()))
        .collect();
    seen.sort();
    assert_eq!(seen, vec![(0, 30), (1, 1), (2, 10), (3, 0)]);
}

#[test]
fn handle_is_a_future() {
    let server = server(1);
    let h = server.submit(jobs::sum_primes, (100,));
    assert_eq!(block_on(h), Ok(1060));
}

#[test]
fn wait_timeout_and_try_result_leave_the_handle_usable() {
    let server = server(1);
    let h = server.submit(gate, (3,));
    assert!(started(3));
    assert_eq!(h.wait_timeout(Duration::from_millis(10)), None);
    assert_eq!(h.try_result(), None);
    open(3);
    assert_eq!(h.wait_timeout(WAIT), Some(Ok(3)));
    // Asked again, the same answer (the result is Clone).
    assert_eq!(h.try_result(), Some(Ok(3)));
}

#[test]
fn set_ncpus_resizes_the_pool_and_zero_holds_jobs() {
    let server = server(0);
    let h = server.submit(jobs::echo_u64, (9,));
    assert_eq!(h.wait_timeout(Duration::from_millis(50)), None);
    server.set_ncpus(2);
    assert_eq!(server.ncpus(), 2);
    assert_eq!(h.wait_timeout(WAIT).unwrap(), Ok(9));
}

/// Runs a future to completion on this thread.
fn block_on<F: std::future::Future>(fut: F) -> F::Output {
    use std::task::{Context, Poll, Wake, Waker};
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut fut = std::pin::pin!(fut);
    let deadline = Instant::now() + WAIT;
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
        assert!(Instant::now() < deadline, "future did not resolve");
        std::thread::park_timeout(Duration::from_millis(100));
    }
}

#[test]
fn failed_jobs_run_again_only_when_asked() {
    let server = server(1);
    let once = server.submit(jobs::flaky, ("local-a".into(), 2));
    assert_eq!(
        once.wait().unwrap_err().kind,
        ErrorKind::Failed,
        "no retry by default"
    );
    let opts = Options::new().retries(2);
    let h = server.submit_with(jobs::flaky, ("local-b".into(), 2), opts);
    assert_eq!(h.wait(), Ok(3), "third run succeeds");
    let opts = Options::new().retries(1);
    let err = server
        .submit_with(jobs::flaky, ("local-c".into(), 2), opts)
        .wait()
        .unwrap_err();
    assert_eq!((err.kind, err.attempt), (ErrorKind::Failed, 2));
    let s = server.stats();
    assert_eq!((s.succeeded, s.failed, s.retried), (1, 2, 3));
    assert_eq!(s.nodes[0].jobs, 1 + 3 + 2, "every run counted");
}

#[test]
fn stats_report_the_mean_wait_in_the_queue() {
    let server = server(1);
    let first = server.submit(gate, (4,));
    assert!(started(4));
    let second = server.submit(jobs::echo_u64, (2,));
    // The second job is queued once `submit` returns, and cannot start
    // while the gate holds the one worker: it waits at least `held`.
    let submitted = Instant::now();
    assert!(!second.is_finished(), "the worker is held");
    let held = submitted.elapsed();
    open(4);
    assert_eq!((first.wait(), second.wait()), (Ok(4), Ok(2)));
    // The mean over both jobs: the first waited about nothing, the second
    // at least `held`.
    let s = server.stats();
    assert!(
        s.queue_wait >= held / 2 && !s.queue_wait.is_zero(),
        "mean wait {:?}, the second job held {held:?}",
        s.queue_wait
    );
    assert!(s.to_string().contains("mean wait in the queue"), "{s}");
}

#[test]
fn the_longest_timeouts_are_not_a_panic() {
    let server = Server::builder()
        .ncpus(1)
        .heartbeat(Duration::MAX)
        .build()
        .unwrap();
    let job = server.submit_with(jobs::echo_u64, (5,), Options::new().timeout(Duration::MAX));
    assert!(matches!(job.wait_timeout(Duration::MAX), Some(Ok(5))));
    assert_eq!(server.wait_all_timeout(Duration::MAX), Ok(true));
}
