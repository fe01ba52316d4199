//! Kept values move node to node (issue 29): a job whose kept inputs lie
//! on two nodes runs where most of their bytes lie, and the input from the
//! other node comes to it directly from that node when peers can reach it
//! (`--advertise`), or through the client when they cannot (a node on
//! loopback that advertises nothing). Either way the answer is the same.

use ppclient::{KeySet, Options, Registry, Server, Shared};
use std::time::Duration;

ppclient::job! {
    /// `n` bytes of `fill` (run on the node that has it: "big").
    pub fn big_blob(n: u64, fill: u8) -> Vec<u8> { vec![fill; n as usize] }
}

ppclient::job! {
    /// `n` bytes of `fill` (run on the node that has it: "small").
    pub fn small_blob(n: u64, fill: u8) -> Vec<u8> { vec![fill; n as usize] }
}

ppclient::job! {
    /// The lengths and byte sums of two kept blobs.
    pub fn measure_both(a: Shared<Vec<u8>>, b: Shared<Vec<u8>>) -> (u64, u64) {
        let sum = |v: &[u8]| v.iter().map(|&x| u64::from(x)).sum::<u64>();
        ((a.len() + b.len()) as u64, sum(&a) + sum(&b))
    }
}

const WAIT: Duration = Duration::from_secs(30);
const BIG: u64 = 4 << 20;
const SMALL: u64 = 3 << 20;

/// A node on loopback running `producer` and `measure_both`, advertising
/// `advertise` to peers.
fn start_node<J: ppclient::Job>(keys: &KeySet, advertise: Option<&str>) -> ppserver::Running {
    let mut registry = Registry::new();
    registry.add::<J>().unwrap();
    registry.add::<measure_both>().unwrap();
    let config = ppserver::Config {
        port: 0,
        workers: 1,
        keys: Some(keys.clone()),
        advertise: advertise.map(str::to_owned),
        ..Default::default()
    };
    ppserver::start(config, registry).unwrap()
}

struct Run {
    answer: (u64, u64),
    stats: ppclient::Stats,
    big: ppclient::NodeStatus,
    small: ppclient::NodeStatus,
}

/// Two producers, one per node, and a job taking both results; the nodes
/// advertise `advertise`.
fn run(advertise: Option<&str>) -> Run {
    let keys = KeySet::one(ppclient::Key::generate().unwrap());
    let big = start_node::<big_blob>(&keys, advertise);
    let small = start_node::<small_blob>(&keys, advertise);
    let server = Server::builder()
        .ncpus(0)
        .keys(keys.clone())
        .nodes([big.local_addr().to_string(), small.local_addr().to_string()])
        .build()
        .unwrap();
    assert_eq!(server.active_nodes().len(), 2, "{:?}", server.nodes());
    let a = server.submit_with(big_blob, (BIG, 1), Options::new().keep());
    let b = server.submit_with(small_blob, (SMALL, 2), Options::new().keep());
    let (a, b) = (a.keep().unwrap(), b.keep().unwrap());
    let both = server.submit(measure_both, (a, b));
    let answer = both.wait_timeout(WAIT).unwrap().unwrap();
    let status = |n: &ppserver::Running| {
        ppclient::node_status_with(&n.local_addr().to_string(), &keys, WAIT).unwrap()
    };
    Run {
        answer,
        stats: server.stats(),
        big: status(&big),
        small: status(&small),
    }
}

#[test]
fn an_input_on_a_reachable_node_moves_to_the_job_node_to_node_not_through_the_client() {
    let run = run(Some("127.0.0.1"));
    assert_eq!(run.answer, (BIG + SMALL, BIG + 2 * SMALL));
    // It ran where most of its input bytes lay, the slot there being free.
    assert_eq!((run.big.jobs_done, run.small.jobs_done), (2, 1));
    // The job ran where most input bytes lay; the small input came from its
    // node to there, directly.
    assert_eq!(run.big.transfers_in, 1);
    // The value's encoded bytes: the blob and a few bytes of header.
    assert!((SMALL..SMALL + 64).contains(&run.big.transfer_in_bytes));
    assert_eq!(run.small.transfers_out, 1);
    assert_eq!(run.small.transfers_in + run.big.transfers_out, 0);
    let moved: u64 = run.stats.nodes.iter().map(|n| n.transfers).sum();
    let fetched: u64 = run.stats.nodes.iter().map(|n| n.fetched).sum();
    assert_eq!((moved, fetched), (1, 0), "{:#?}", run.stats.nodes);
}

#[test]
fn an_input_on_a_node_peers_cannot_reach_comes_through_the_client() {
    let run = run(None);
    assert_eq!(run.answer, (BIG + SMALL, BIG + 2 * SMALL));
    assert_eq!(run.big.transfers_in + run.small.transfers_out, 0);
    let moved: u64 = run.stats.nodes.iter().map(|n| n.transfers).sum();
    let fetched: u64 = run.stats.nodes.iter().map(|n| n.fetched).sum();
    assert_eq!((moved, fetched), (0, 1), "{:#?}", run.stats.nodes);
}

#[test]
fn a_transfer_that_fails_brings_the_value_through_the_client_instead() {
    // The nodes say peers reach them where nobody listens.
    let run = run(Some("127.0.0.1:1"));
    assert_eq!(run.answer, (BIG + SMALL, BIG + 2 * SMALL));
    assert_eq!(run.big.transfers_in, 0);
    let moved: u64 = run.stats.nodes.iter().map(|n| n.transfers).sum();
    let fetched: u64 = run.stats.nodes.iter().map(|n| n.fetched).sum();
    assert_eq!((moved, fetched), (0, 1), "{:#?}", run.stats.nodes);
}

ppclient::job! {
    /// Sleeps `ms` milliseconds (keeps the node that has it busy).
    pub fn slow(ms: u64) -> u64 { std::thread::sleep(Duration::from_millis(ms)); ms }
}

ppclient::job! {
    /// The length and byte sum of one kept blob.
    pub fn measure_one(a: Shared<Vec<u8>>) -> (u64, u64) {
        (a.len() as u64, a.iter().map(|&x| u64::from(x)).sum())
    }
}

#[test]
fn a_job_whose_inputs_lie_on_a_busy_node_runs_where_a_worker_is_free_and_its_input_moves_there() {
    let keys = KeySet::one(ppclient::Key::generate().unwrap());
    let node = |registry: Registry| {
        let config = ppserver::Config {
            port: 0,
            workers: 1,
            keys: Some(keys.clone()),
            advertise: Some("127.0.0.1".into()),
            ..Default::default()
        };
        ppserver::start(config, registry).unwrap()
    };
    let mut busy = Registry::new();
    busy.add::<big_blob>().unwrap();
    busy.add::<slow>().unwrap();
    busy.add::<measure_one>().unwrap();
    let mut free = Registry::new();
    free.add::<measure_one>().unwrap();
    let (busy, free) = (node(busy), node(free));
    let server = Server::builder()
        .ncpus(0)
        .keys(keys.clone())
        .nodes([busy.local_addr().to_string(), free.local_addr().to_string()])
        .build()
        .unwrap();
    assert_eq!(server.active_nodes().len(), 2, "{:?}", server.nodes());
    let blob = server.submit_with(big_blob, (SMALL, 3), Options::new().keep());
    let blob = blob.keep().unwrap();
    assert!(server.wait_all_timeout(WAIT).unwrap());
    // The one worker where the blob lies is taken for a long while.
    let long = server.submit(slow, (20_000,));
    let status = |n: &ppserver::Running| {
        ppclient::node_status_with(&n.local_addr().to_string(), &keys, WAIT).unwrap()
    };
    let started = (0..500).any(|_| {
        std::thread::sleep(Duration::from_millis(10));
        status(&busy).jobs_active == 1
    });
    assert!(started, "the long job never started");
    let measured = server.submit(measure_one, (blob,));
    assert_eq!(
        measured.wait_timeout(WAIT).unwrap().unwrap(),
        (SMALL, 3 * SMALL)
    );
    let free_status = status(&free);
    assert_eq!((free_status.jobs_done, free_status.transfers_in), (1, 1));
    assert!(
        !long.is_finished(),
        "the long job ended first: nothing was shown"
    );
    server.cancel_all();
}

#[test]
fn a_value_spilled_to_disk_on_its_node_comes_through_the_client_not_lost() {
    let keys = KeySet::one(ppclient::Key::generate().unwrap());
    let dir = std::env::temp_dir().join(format!(
        "pp-spill-transfer-{}-{}",
        std::process::id(),
        ppclient::Key::generate().unwrap().fingerprint()
    ));
    let big = start_node::<big_blob>(&keys, Some("127.0.0.1"));
    // The small node has 1 MiB of memory: its 3 MiB blob is spilled.
    let mut registry = Registry::new();
    registry.add::<small_blob>().unwrap();
    registry.add::<measure_both>().unwrap();
    let config = ppserver::Config {
        port: 0,
        workers: 1,
        keys: Some(keys.clone()),
        advertise: Some("127.0.0.1".into()),
        max_memory: 1 << 20,
        spill_dir: Some(dir.clone()),
        ..Default::default()
    };
    let small = ppserver::start(config, registry).unwrap();
    let server = Server::builder()
        .ncpus(0)
        .keys(keys.clone())
        .nodes([big.local_addr().to_string(), small.local_addr().to_string()])
        .build()
        .unwrap();
    let a = server.submit_with(big_blob, (BIG, 1), Options::new().keep());
    let b = server.submit_with(small_blob, (SMALL, 2), Options::new().keep());
    let (a, b) = (a.keep().unwrap(), b.keep().unwrap());
    let both = server.submit(measure_both, (a, b));
    assert_eq!(
        both.wait_timeout(WAIT).unwrap().unwrap(),
        (BIG + SMALL, BIG + 2 * SMALL)
    );
    let small_status =
        ppclient::node_status_with(&small.local_addr().to_string(), &keys, WAIT).unwrap();
    assert!(small_status.spill_reads >= 1, "{small_status:?}");
    let stats = server.stats();
    let recomputed: u64 = stats.nodes.iter().map(|n| n.recomputed).sum();
    let fetched: u64 = stats.nodes.iter().map(|n| n.fetched).sum();
    assert_eq!((recomputed, fetched), (0, 1), "{:#?}", stats.nodes);
    drop(server);
    small.stop();
    small.wait();
    let _ = std::fs::remove_dir_all(&dir);
}
