//! What a callback may do, and the promises `wait`, `wait_group` and
//! `wait_all` keep: they return only once every handle they cover is
//! finished and its callback has returned.

use ppclient::{ErrorKind, JobHandle, Options, Server};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// Open gates, by index; jobs of `gate(i)` wait (at most 10 s) for theirs.
static GATES: (Mutex<[bool; 8]>, Condvar) = (Mutex::new([false; 8]), Condvar::new());

ppcore::job! {
    /// Waits until gate `i` opens (at most 10 s), then returns `i`.
    fn gate(i: usize) -> usize {
        let (lock, cv) = &GATES;
        let guard = lock.lock().unwrap();
        let _open = cv
            .wait_timeout_while(guard, Duration::from_secs(10), |g| !g[i])
            .unwrap();
        i
    }
}

fn open(i: usize) {
    GATES.0.lock().unwrap()[i] = true;
    GATES.1.notify_all();
}

/// A bound for waits that would otherwise hang the suite on a deadlock.
const HANG: Duration = Duration::from_secs(20);

fn server(ncpus: usize) -> Server {
    Server::builder().ncpus(ncpus).build().unwrap()
}

#[test]
fn every_handle_is_finished_once_wait_all_returns() {
    let server = server(2);
    for round in 0..300u64 {
        let handles: Vec<_> = (0..6u64)
            .map(|i| match i % 3 {
                0 => server.submit(jobs::echo_u64, (round,)),
                1 => server.submit_with(jobs::echo_u64, (i,), Options::new().callback(|_| {})),
                _ => server.submit_with(jobs::echo_u64, (i,), Options::new().group("g")),
            })
            .collect();
        server.wait_all().unwrap();
        for h in &handles {
            assert!(
                h.is_finished(),
                "round {round}: a handle not finished after wait_all"
            );
        }
        assert_eq!(server.stats().active, 0);
    }
}

#[test]
fn every_member_is_finished_once_wait_group_returns() {
    let server = server(2);
    for round in 0..300u64 {
        let handles: Vec<_> = (0..4u64)
            .map(|i| {
                let opts = Options::new().group("g");
                let opts = if i % 2 == 0 {
                    opts.callback(|_| {})
                } else {
                    opts.into()
                };
                server.submit_with(jobs::echo_u64, (round,), opts)
            })
            .collect();
        server.wait_group("g").unwrap();
        assert!(handles.iter().all(JobHandle::is_finished), "round {round}");
    }
}

#[test]
fn a_callback_may_wait_on_a_job_that_has_its_own_callback() {
    let server = server(2);
    let inner_seen = Arc::new(Mutex::new(None));
    let seen = Arc::clone(&inner_seen);
    let inner = server.submit_with(
        gate,
        (0,),
        Options::new().callback(move |r| *seen.lock().unwrap() = Some(*r.as_ref().unwrap())),
    );
    let (started_tx, started_rx) = crossbeam_channel::bounded(1);
    let slot = Mutex::new(Some(inner));
    let outer = server.submit_with(
        jobs::echo_u64,
        (1,),
        Options::new().callback(move |_| {
            started_tx.send(()).unwrap();
            let inner = slot.lock().unwrap().take().unwrap();
            // The inner job resolves only after its own callback ran: it
            // must find a callback thread free while this one waits.
            assert_eq!(inner.wait(), Ok(0));
        }),
    );
    started_rx.recv_timeout(HANG).unwrap();
    open(0);
    let outer = outer
        .wait_timeout(HANG)
        .expect("deadlock: the outer job never resolved");
    assert_eq!(outer, Ok(1));
    assert_eq!(*inner_seen.lock().unwrap(), Some(0));
}

#[test]
fn a_chain_of_callbacks_each_waiting_on_the_next() {
    let server = server(2);
    // Job k's callback waits on job k+1, which has a callback too; the last
    // job is gated so that every callback is blocked before any resolves.
    const N: usize = 12;
    let last = server.submit_with(gate, (1,), Options::new().callback(|_| {}));
    let mut next: JobHandle<usize> = last;
    for k in 0..N {
        let waited = Mutex::new(Some(next));
        next = server.submit_with(
            gate,
            (2,),
            Options::new().callback(move |_| {
                let h = waited.lock().unwrap().take().unwrap();
                assert!(h.wait().unwrap() < 3, "link {k}");
            }),
        );
    }
    open(2);
    open(1);
    assert_eq!(next.wait_timeout(HANG).expect("deadlock"), Ok(2));
    assert!(server.wait_all_timeout(HANG).unwrap());
}

#[test]
fn a_callback_waiting_on_its_own_job_gets_would_deadlock() {
    let server = server(1);
    let own: Arc<Mutex<Option<JobHandle<u64>>>> = Arc::default();
    let got = Arc::new(Mutex::new(None));
    let (own2, got2) = (Arc::clone(&own), Arc::clone(&got));
    let (go_tx, go_rx) = crossbeam_channel::bounded::<()>(1);
    let h = server.submit_with(
        jobs::echo_u64,
        (5,),
        Options::new().callback(move |_| {
            go_rx.recv().unwrap();
            let me = own2.lock().unwrap().take().unwrap();
            *got2.lock().unwrap() = Some(me.wait().map_err(|e| e.kind));
        }),
    );
    *own.lock().unwrap() = Some(h);
    go_tx.send(()).unwrap();
    assert!(server.wait_all_timeout(HANG).unwrap(), "deadlock");
    assert_eq!(*got.lock().unwrap(), Some(Err(ErrorKind::WouldDeadlock)));
}

#[test]
fn wait_all_or_own_group_in_a_callback_gets_would_deadlock() {
    let server = Arc::new(server(1));
    let got = Arc::new(Mutex::new(Vec::new()));
    let (s, g) = (Arc::downgrade(&server), Arc::clone(&got));
    let h = server.submit_with(
        jobs::echo_u64,
        (1,),
        Options::new().group("mine").callback(move |_| {
            let server = s.upgrade().unwrap();
            let mut got = g.lock().unwrap();
            got.push(server.wait_all().map_err(|e| e.kind));
            got.push(server.wait_group("mine").map_err(|e| e.kind));
            // Another group (here: empty) is fine.
            got.push(server.wait_group("other").map_err(|e| e.kind));
        }),
    );
    assert_eq!(h.wait_timeout(HANG).expect("deadlock"), Ok(1));
    assert_eq!(
        *got.lock().unwrap(),
        vec![
            Err(ErrorKind::WouldDeadlock),
            Err(ErrorKind::WouldDeadlock),
            Ok(())
        ]
    );
}
