//! Jobs that say what they need, on the local pool: cpus, named resources
//! with instances, the clear error of a request nothing can meet, and a
//! large request that is not starved by small ones.

use ppclient::{job_context, ErrorKind, Options, Server};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// Cpus held by running `weighed` jobs, and the most seen at once.
static CPUS: AtomicU32 = AtomicU32::new(0);
static CPUS_MAX: AtomicU32 = AtomicU32::new(0);
/// Wide `weighed` jobs running, and the most at once.
static WIDE: AtomicU32 = AtomicU32::new(0);
static WIDE_MAX: AtomicU32 = AtomicU32::new(0);

ppclient::job! {
    /// Counts the cpus it holds (from its context) while it sleeps `ms`.
    fn weighed(ms: u64) -> u32 {
        let cpus = job_context().cpus;
        let now = CPUS.fetch_add(cpus, Ordering::SeqCst) + cpus;
        CPUS_MAX.fetch_max(now, Ordering::SeqCst);
        if cpus > 1 {
            let w = WIDE.fetch_add(1, Ordering::SeqCst) + 1;
            WIDE_MAX.fetch_max(w, Ordering::SeqCst);
        }
        std::thread::sleep(Duration::from_millis(ms));
        if cpus > 1 {
            WIDE.fetch_sub(1, Ordering::SeqCst);
        }
        CPUS.fetch_sub(cpus, Ordering::SeqCst);
        cpus
    }
}

#[test]
fn a_four_cpu_job_takes_four_of_the_pools_slots() {
    let server = Server::builder().ncpus(4).build().unwrap();
    let wide = Options::new().cpus(4);
    let mut handles = Vec::new();
    for i in 0..24 {
        match i % 6 {
            0 => handles.push(server.submit_with(weighed, (15,), &wide)),
            _ => handles.push(server.submit(weighed, (5,))),
        }
    }
    let cpus: Vec<u32> = handles.into_iter().map(|h| h.wait().unwrap()).collect();
    assert_eq!(cpus.iter().filter(|c| **c == 4).count(), 4);
    assert!(
        CPUS_MAX.load(Ordering::SeqCst) <= 4,
        "never more cpus than workers"
    );
    assert_eq!(
        WIDE_MAX.load(Ordering::SeqCst),
        1,
        "4-cpu jobs one at a time"
    );
}

/// Licence instances in use, violations (an instance handed out twice or
/// none handed), the most held at once, and how many jobs began.
static LICENCES: Mutex<(BTreeSet<u32>, u32, usize, usize)> = Mutex::new((BTreeSet::new(), 0, 0, 0));
/// How many `licensed` jobs the test submits.
const LICENSED_JOBS: usize = 8;
static LICENCE_CHANGED: Condvar = Condvar::new();

ppclient::job! {
    /// Takes the licence instance it was handed, waits (at most 2 s) until
    /// two are in use (or every job began), and gives it back: the instance.
    fn licensed() -> u32 {
        let ctx = job_context();
        let mine = ctx.instances("licence").to_vec();
        let mut g = LICENCES.lock().unwrap();
        if mine.len() != 1 || !g.0.insert(mine[0]) {
            g.1 += 1;
        }
        g.2 = g.2.max(g.0.len());
        g.3 += 1;
        LICENCE_CHANGED.notify_all();
        let (mut g, _) = LICENCE_CHANGED
            .wait_timeout_while(g, Duration::from_secs(2), |g| g.0.len() < 2 && g.3 < LICENSED_JOBS)
            .unwrap();
        if let Some(m) = mine.first() {
            g.0.remove(m);
        }
        mine.first().copied().unwrap_or(u32::MAX)
    }
}

#[test]
fn licence_jobs_never_run_more_at_once_than_offered_each_with_its_own_instance() {
    let server = Server::builder()
        .ncpus(4)
        .resources("licence=2")
        .build()
        .unwrap();
    let one = Options::new().resource("licence", 1.0);
    let handles: Vec<_> = (0..LICENSED_JOBS)
        .map(|_| server.submit_with(licensed, (), &one))
        .collect();
    let got: BTreeSet<u32> = handles.into_iter().map(|h| h.wait().unwrap()).collect();
    let g = LICENCES.lock().unwrap();
    assert_eq!(g.1, 0, "no instance handed out twice, none missing");
    assert_eq!(g.2, 2, "two licences at once, never more");
    assert_eq!(got, BTreeSet::from([0, 1]), "both instances handed out");
}

#[test]
fn a_request_the_pool_cannot_meet_fails_at_once_naming_it_and_the_offer() {
    let server = Server::builder()
        .ncpus(2)
        .resources("gpu=1")
        .build()
        .unwrap();
    let err = server
        .submit_with(weighed, (0,), Options::new().cpus(8))
        .wait()
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unsatisfiable);
    assert!(err.message.contains("request cpus=8"), "{}", err.message);
    assert!(
        err.message.contains("largest offer is cpus=2 gpu=1"),
        "{}",
        err.message
    );
    let err = server
        .submit_with(weighed, (0,), Options::new().resource("gpu", 2.0))
        .wait()
        .unwrap_err();
    assert!(err.message.contains("gpu=2 (offers 1)"), "{}", err.message);
    let err = server
        .submit_with(weighed, (0,), Options::new().tag("ssd"))
        .wait()
        .unwrap_err();
    assert!(err.message.contains("tag ssd"), "{}", err.message);
    // A bad amount is refused the same way, at submit.
    let err = server
        .submit_with(weighed, (0,), Options::new().resource("gpu", 1.5))
        .wait()
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unsatisfiable);
    assert!(err.message.contains("whole"), "{}", err.message);
    // What fits still runs.
    let half = Options::new().resource("gpu", 0.5);
    assert_eq!(server.submit_with(weighed, (0,), &half).wait(), Ok(1));
}

#[test]
fn a_bad_offer_fails_the_build() {
    let err = Server::builder()
        .ncpus(1)
        .resources("gpu=half")
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("gpu"), "{err}");
}

/// The order jobs of `ordered` ended in.
static ENDED: Mutex<Vec<u64>> = Mutex::new(Vec::new());

ppclient::job! {
    /// Sleeps `ms`, then notes `id` as ended.
    fn ordered(id: u64, ms: u64) -> u64 {
        std::thread::sleep(Duration::from_millis(ms));
        ENDED.lock().unwrap().push(id);
        id
    }
}

#[test]
fn a_large_request_behind_small_ones_runs_within_the_bounded_wait() {
    let server = Server::builder().ncpus(4).build().unwrap();
    let small = Options::new().cpus(1);
    let mut handles: Vec<_> = (0..4)
        .map(|i| server.submit_with(ordered, (i, 5), &small))
        .collect();
    handles.push(server.submit_with(ordered, (1000, 1), Options::new().cpus(4)));
    // A stream of small jobs behind it: without the reservation the other
    // three workers take them one after another, the four cpus are hardly
    // ever free at once, and the large job waits for the end of the stream.
    handles.extend((4..404).map(|i| server.submit_with(ordered, (i, 5), &small)));
    let started = Instant::now();
    for h in handles {
        h.wait().unwrap();
    }
    let ended = ENDED.lock().unwrap();
    let at = ended.iter().position(|id| *id == 1000).unwrap();
    // The reservation begins 200 ms after the large job began to wait: at
    // most some 120 small jobs of 5 ms end before that on three workers.
    assert!(
        at < 300,
        "the large job ended {at}th of {} ({:?} in all)",
        ended.len(),
        started.elapsed()
    );
}

/// `gated` jobs running, and what the wide job saw when it began.
static RUNNING: AtomicU32 = AtomicU32::new(0);
static SEEN_BY_WIDE: AtomicU32 = AtomicU32::new(u32::MAX);
static GATE: (Mutex<bool>, Condvar) = (Mutex::new(false), Condvar::new());

ppclient::job! {
    /// Waits (at most 10 s) for the gate, counted as running meanwhile.
    fn gated() -> u32 {
        RUNNING.fetch_add(1, Ordering::SeqCst);
        let g = GATE.0.lock().unwrap();
        drop(GATE.1.wait_timeout_while(g, Duration::from_secs(10), |open| !*open).unwrap());
        RUNNING.fetch_sub(1, Ordering::SeqCst)
    }
}

ppclient::job! {
    /// Notes how many `gated` jobs run as it begins.
    fn wide_look() -> u32 {
        let n = RUNNING.load(Ordering::SeqCst);
        SEEN_BY_WIDE.store(n, Ordering::SeqCst);
        n
    }
}

#[test]
fn jobs_begun_before_the_first_request_still_count() {
    let server = Server::builder().ncpus(2).build().unwrap();
    let plain: Vec<_> = (0..2).map(|_| server.submit(gated, ())).collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    while RUNNING.load(Ordering::SeqCst) < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    // Both workers are busy with jobs that asked for nothing; a job asking
    // for both cpus must wait for them.
    let wide = server.submit_with(wide_look, (), Options::new().cpus(2));
    std::thread::sleep(Duration::from_millis(50));
    *GATE.0.lock().unwrap() = true;
    GATE.1.notify_all();
    for h in plain {
        h.wait().unwrap();
    }
    assert_eq!(wide.wait(), Ok(0));
    assert_eq!(SEEN_BY_WIDE.load(Ordering::SeqCst), 0);
}

/// A node on loopback with `workers` workers offering `list`.
fn node(keys: &ppclient::KeySet, workers: usize, list: &str) -> ppserver::Running {
    let mut offer = ppclient::Offer::new(0);
    offer.add_list(list).unwrap();
    let config = ppserver::Config {
        port: 0,
        workers,
        keys: Some(keys.clone()),
        offer,
        ..Default::default()
    };
    ppserver::start(config, ppclient::Registry::linked().unwrap()).unwrap()
}

fn client(keys: &ppclient::KeySet, nodes: &[&ppserver::Running]) -> Server {
    Server::builder()
        .ncpus(0)
        .keys(keys.clone())
        .nodes(nodes.iter().map(|n| n.local_addr().to_string()))
        .require_nodes(nodes.len())
        .build()
        .unwrap()
}

/// GPU instances in use on the GPU node, violations, the most at once.
static GPUS: Mutex<(BTreeSet<u32>, u32, usize)> = Mutex::new((BTreeSet::new(), 0, 0));

ppclient::job! {
    /// Holds the GPU it was handed for `ms`: its instance.
    fn on_gpu(ms: u64) -> u32 {
        let mine = job_context().instances("gpu").to_vec();
        {
            let mut g = GPUS.lock().unwrap();
            if mine.len() != 1 || !g.0.insert(mine[0]) {
                g.1 += 1;
            }
            g.2 = g.2.max(g.0.len());
        }
        std::thread::sleep(Duration::from_millis(ms));
        if let Some(m) = mine.first() {
            GPUS.lock().unwrap().0.remove(m);
        }
        mine.first().copied().unwrap_or(u32::MAX)
    }
}

#[test]
fn gpu_jobs_run_only_on_the_node_that_offers_them_never_more_at_once_each_its_own() {
    let keys = ppclient::KeySet::one(ppclient::Key::generate().unwrap());
    let plain = node(&keys, 4, "");
    let gpus = node(&keys, 4, "gpu=2");
    let server = client(&keys, &[&plain, &gpus]);
    let one = Options::new().resource("gpu", 1.0);
    let handles: Vec<_> = (0..12)
        .map(|_| server.submit_with(on_gpu, (10,), &one))
        .collect();
    let got: BTreeSet<u32> = handles.into_iter().map(|h| h.wait().unwrap()).collect();
    let g = GPUS.lock().unwrap();
    assert_eq!(g.1, 0, "no gpu handed out twice at once, none missing");
    assert!(g.2 <= 2, "never more than the two offered at once");
    assert!(got.iter().all(|i| *i < 2), "{got:?}");
    let stats = server.stats();
    let ran = |addr: std::net::SocketAddr| {
        stats
            .nodes
            .iter()
            .find(|n| n.node == addr.to_string())
            .map_or(0, |n| n.jobs)
    };
    assert_eq!(ran(plain.local_addr()), 0, "the node without gpus ran none");
    assert_eq!(ran(gpus.local_addr()), 12);
}

#[test]
fn four_cpu_jobs_on_a_four_worker_node_run_one_at_a_time_while_one_cpu_jobs_fill_others() {
    let keys = ppclient::KeySet::one(ppclient::Key::generate().unwrap());
    let wide_node = node(&keys, 4, "");
    let narrow = node(&keys, 2, "");
    let server = client(&keys, &[&wide_node, &narrow]);
    let wide = Options::new().cpus(4);
    let mut handles = Vec::new();
    for i in 0..30 {
        match i % 5 {
            0 => handles.push(server.submit_with(weighed, (20,), &wide)),
            _ => handles.push(server.submit_with(weighed, (10,), Options::new().cpus(1))),
        }
    }
    let cpus: Vec<u32> = handles.into_iter().map(|h| h.wait().unwrap()).collect();
    assert_eq!(cpus.iter().filter(|c| **c == 4).count(), 6);
    assert_eq!(
        WIDE_MAX.load(Ordering::SeqCst),
        1,
        "4-cpu jobs one at a time"
    );
    let stats = server.stats();
    let narrow_ran = stats
        .nodes
        .iter()
        .find(|n| n.node == narrow.local_addr().to_string())
        .map_or(0, |n| n.jobs);
    assert!(narrow_ran > 0, "the 2-worker node took 1-cpu jobs");
}

#[test]
fn a_request_no_node_can_meet_fails_naming_the_largest_offer() {
    let keys = ppclient::KeySet::one(ppclient::Key::generate().unwrap());
    let small = node(&keys, 2, "");
    let big = node(&keys, 4, "gpu=1");
    let server = client(&keys, &[&small, &big]);
    let err = server
        .submit_with(weighed, (0,), Options::new().cpus(8))
        .wait()
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unsatisfiable);
    assert!(err.message.contains("request cpus=8"), "{}", err.message);
    assert!(
        err.message.contains("largest offer is cpus=4"),
        "{}",
        err.message
    );
    let err = server
        .submit_with(weighed, (0,), Options::new().resource("gpu", 2.0))
        .wait()
        .unwrap_err();
    assert!(err.message.contains("gpu=2 (offers 1)"), "{}", err.message);
    // What one of them offers runs there.
    let half = Options::new().resource("gpu", 0.5);
    assert_eq!(server.submit_with(weighed, (0,), &half).wait(), Ok(1));
}

/// A client that listens for nodes joining, with no local workers.
fn listening(keys: &ppclient::KeySet, unmet_wait: Duration) -> Server {
    Server::builder()
        .ncpus(0)
        .keys(keys.clone())
        .listen("127.0.0.1:0")
        .unmet_wait(unmet_wait)
        .build()
        .unwrap()
}

#[test]
fn a_request_nobody_meets_fails_after_the_stated_wait_when_nodes_may_join() {
    let keys = ppclient::KeySet::one(ppclient::Key::generate().unwrap());
    let server = listening(&keys, Duration::from_millis(300));
    let listen = server.listen_addr().unwrap().to_string();
    let joined = ppserver::start(
        ppserver::Config {
            port: 0,
            workers: 2,
            keys: Some(keys.clone()),
            join: Some(listen),
            ..Default::default()
        },
        ppclient::Registry::linked().unwrap(),
    )
    .unwrap();
    assert!(server.wait_for_nodes(1, Duration::from_secs(10)));
    let started = Instant::now();
    let job = server.submit_with(on_gpu, (0,), Options::new().resource("gpu", 1.0));
    // A node that offers a GPU may still join: the job waits for one...
    assert!(!job.is_finished());
    // ...at most the stated wait, then fails naming the request, the
    // largest offer and the wait.
    let err = job
        .wait_timeout(Duration::from_secs(20))
        .expect("still waiting 20 s after a wait of 300 ms")
        .unwrap_err();
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(err.kind, ErrorKind::Unsatisfiable, "{err}");
    assert!(err.message.contains("gpu=1"), "{}", err.message);
    assert!(err.message.contains("largest offer"), "{}", err.message);
    assert!(err.message.contains("unmet_wait"), "{}", err.message);
    // The server goes on: what the joined node offers runs there.
    assert_eq!(server.submit(weighed, (0,)).wait(), Ok(1));
    drop(joined);
}

#[test]
fn a_node_that_joins_within_the_wait_runs_the_job_that_waited_for_it() {
    let keys = ppclient::KeySet::one(ppclient::Key::generate().unwrap());
    let server = listening(&keys, Duration::from_secs(60));
    let job = server.submit_with(on_gpu, (0,), Options::new().resource("gpu", 1.0));
    std::thread::sleep(Duration::from_millis(200));
    assert!(!job.is_finished(), "it waits for a node that offers a GPU");
    let mut offer = ppclient::Offer::new(0);
    offer.add_list("gpu=1").unwrap();
    let gpu = ppserver::start(
        ppserver::Config {
            port: 0,
            workers: 1,
            keys: Some(keys.clone()),
            join: Some(server.listen_addr().unwrap().to_string()),
            offer,
            ..Default::default()
        },
        ppclient::Registry::linked().unwrap(),
    )
    .unwrap();
    let got = job.wait_timeout(Duration::from_secs(20));
    assert_eq!(got, Some(Ok(0)), "GPU 0 of the node that joined");
    drop(gpu);
}
