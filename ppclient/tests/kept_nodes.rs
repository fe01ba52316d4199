//! Kept results on nodes (issue 28): a result used where it lies never
//! reaches the client; a chain on one node goes out without a round trip
//! per step (counted); dropping the last reference frees it on the node;
//! over a node's `--max-memory` results are kept in the client instead;
//! failures and cancels flow along the edges.

use ppclient::{ErrorKind, KeySet, Options, Server, Shared};
use std::time::Duration;

ppclient::job! {
    /// `n` bytes of `fill`, after `ms` milliseconds.
    pub fn blob(n: u64, fill: u8, ms: u64) -> Vec<u8> {
        std::thread::sleep(Duration::from_millis(ms));
        vec![fill; n as usize]
    }
}

ppclient::job! {
    /// The length and the sum of a kept blob's bytes.
    pub fn measure(b: Shared<Vec<u8>>) -> (u64, u64) {
        (b.len() as u64, b.iter().map(|&x| u64::from(x)).sum())
    }
}

ppclient::job! {
    /// `x`, after `ms` milliseconds.
    pub fn first(x: u64, ms: u64) -> u64 {
        std::thread::sleep(Duration::from_millis(ms));
        x
    }
}

ppclient::job! {
    /// A kept result plus one.
    pub fn next(x: Shared<u64>) -> u64 { *x + 1 }
}

ppclient::job! {
    #[fallible]
    /// Fails, always.
    pub fn broken(why: String) -> Result<u64, String> { Err(why) }
}

const WAIT: Duration = Duration::from_secs(30);

fn start_node(keys: &KeySet, max_memory: Option<u64>) -> ppserver::Running {
    let mut config = ppserver::Config {
        port: 0,
        workers: 1,
        keys: Some(keys.clone()),
        ..Default::default()
    };
    if let Some(m) = max_memory {
        // Results over it come back to the client: no spill to disk here
        // (tests/spill.rs has that).
        config.max_memory = m;
        config.spill_max = 0;
    }
    ppserver::start(config, ppclient::Registry::linked().unwrap()).unwrap()
}

fn client(keys: &KeySet, node: &ppserver::Running, max_payload: u64) -> Server {
    let server = Server::builder()
        .ncpus(0)
        .keys(keys.clone())
        .max_payload(max_payload)
        .nodes([node.local_addr().to_string()])
        .build()
        .unwrap();
    assert_eq!(server.active_nodes().len(), 1, "{:?}", server.nodes());
    server
}

fn status(keys: &KeySet, node: &ppserver::Running) -> ppclient::NodeStatus {
    ppclient::node_status_with(&node.local_addr().to_string(), keys, WAIT).unwrap()
}

fn keys() -> KeySet {
    KeySet::one(ppclient::Key::generate().unwrap())
}

#[test]
fn a_result_used_as_an_argument_on_its_own_node_never_reaches_the_client() {
    let keys = keys();
    let node = start_node(&keys, None);
    // The client takes results of 64 KiB at most: a 4 MiB result that
    // came to it would fail; one kept on the node never does.
    let server = client(&keys, &node, 64 << 10);
    let big = server.submit_with(blob, (4 << 20, 3, 0), Options::new().keep());
    let seen = server.submit(measure, (big.keep().unwrap(),));
    assert_eq!(seen.wait().unwrap(), (4 << 20, 3 * (4 << 20)));
    let stats = server.stats();
    assert_eq!(stats.nodes[1].kept, 1, "{stats}");
    // Fetching it is what would bring it: over the client's limit, refused.
    assert!(big.wait().is_err());
}

#[test]
fn a_chain_on_one_node_goes_out_without_a_round_trip_per_step() {
    let keys = keys();
    let node = start_node(&keys, None);
    let server = client(&keys, &node, 1 << 30);
    // The first step is slow, so that the whole chain is submitted while
    // it runs; every later step is sent before its input is ready.
    let mut last = server.submit_with(first, (7, 300), Options::new().keep());
    let steps = 50;
    for _ in 0..steps {
        let n = server.submit_with(next, (last.keep().unwrap(),), Options::new().keep());
        last = n;
    }
    assert_eq!(last.wait().unwrap(), 7 + steps);
    let stats = server.stats();
    let remote = &stats.nodes[1];
    assert_eq!(remote.chained, steps, "{stats}");
    assert_eq!(remote.kept, steps + 1, "{stats}");
}

#[test]
fn dropping_the_last_reference_frees_a_kept_result_on_its_node() {
    let keys = keys();
    let node = start_node(&keys, None);
    let server = client(&keys, &node, 1 << 30);
    let a = server.submit_with(blob, (1 << 20, 1, 0), Options::new().keep());
    let b = server.submit_with(blob, (1 << 20, 2, 0), Options::new().keep());
    server.wait_all().unwrap();
    assert_eq!(status(&keys, &node).kept_values, 2);
    let kept_a = a.keep().unwrap();
    drop(a);
    // A reference still holds it.
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(status(&keys, &node).kept_values, 2);
    drop(kept_a);
    assert!(
        pptest::eventually(WAIT, || status(&keys, &node).kept_values == 1),
        "{:?}",
        status(&keys, &node)
    );
    drop(b);
    assert!(pptest::eventually(WAIT, || {
        let s = status(&keys, &node);
        s.kept_values == 0 && s.kept_bytes == 0
    }));
}

#[test]
fn over_the_nodes_max_memory_a_result_is_kept_in_the_client() {
    let keys = keys();
    // 24 MiB of memory: at most one 16 MiB result is kept there (how much
    // room the node's own buffers leave decides whether the first is);
    // the second is not: it comes back, and the client keeps it.
    let node = start_node(&keys, Some(24 << 20));
    let server = client(&keys, &node, 1 << 30);
    let one = server.submit_with(blob, (16 << 20, 4, 0), Options::new().keep());
    server.wait_all().unwrap();
    let second = server.submit_with(blob, (16 << 20, 5, 0), Options::new().keep());
    server.wait_all().unwrap();
    let kept = server.stats().nodes[1].kept;
    assert!(kept <= 1, "the second came back: {}", server.stats());
    assert_eq!(status(&keys, &node).kept_values, kept);
    // The first freed, the second goes back to the node with its job.
    drop(one);
    let seen = server.submit(measure, (second.keep().unwrap(),));
    let got = seen.wait_timeout(WAIT).expect("ends").unwrap();
    assert_eq!(got, (16 << 20, 5 * (16 << 20)));
    assert_eq!(second.wait().unwrap().len(), 16 << 20);
}

#[test]
fn a_failed_or_cancelled_input_on_a_node_ends_its_dependents() {
    let keys = keys();
    let node = start_node(&keys, None);
    let server = client(&keys, &node, 1 << 30);
    let bad = server.submit_with(broken, ("no data".into(),), Options::new().keep());
    let dep = server.submit(next, (bad.keep().unwrap(),));
    let err = dep.wait().unwrap_err();
    assert_eq!(err.kind, ErrorKind::Dependency, "{err}");
    assert!(err.message.contains("no data"), "{err}");
    // Cancelled while it runs on the node: its dependents are cancelled.
    let slow = server.submit_with(first, (1, 5_000), Options::new().keep());
    let deps: Vec<_> = (0..3)
        .map(|_| server.submit(next, (slow.keep().unwrap(),)))
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    assert!(slow.cancel());
    for d in deps {
        let e = d.wait_timeout(WAIT).expect("ends").unwrap_err();
        assert_eq!(e.kind, ErrorKind::Cancelled, "{e}");
    }
    server.wait_all().unwrap();
}
