//! Shared values (issue 14, point 2): a value shared by many jobs is sent
//! once to each node that runs them, read there by every job, freed when
//! the client drops it, sent again where a job reruns or after an eviction.

use ppclient::{Array, KeySet, Server, Shared};
use std::time::Duration;

ppclient::job! {
    /// Sums `table[from..to]`, after `ms` milliseconds.
    pub fn slice_sum(table: Shared<Array<u64>>, from: u64, to: u64, ms: u64) -> u64 {
        std::thread::sleep(Duration::from_millis(ms));
        table[from as usize..to as usize].iter().sum()
    }
}

ppclient::job! {
    /// The lengths of two shared values.
    pub fn both_lens(a: Shared<Array<u64>>, b: Shared<Array<u64>>) -> (u64, u64) {
        (a.len() as u64, b.len() as u64)
    }
}

const LEN: usize = 1 << 19; // 4 MiB of u64: a stream of several chunks

fn start_node(keys: &KeySet, shared_max: u64) -> ppserver::Running {
    let config = ppserver::Config {
        port: 0,
        workers: 1,
        keys: Some(keys.clone()),
        shared_max,
        ..Default::default()
    };
    ppserver::start(config, ppclient::Registry::linked().unwrap()).unwrap()
}

fn client(keys: &KeySet, nodes: &[&ppserver::Running]) -> Server {
    let server = Server::builder()
        .ncpus(0)
        .keys(keys.clone())
        .nodes(nodes.iter().map(|n| n.local_addr().to_string()))
        .build()
        .unwrap();
    assert_eq!(
        server.active_nodes().len(),
        nodes.len(),
        "{:?}",
        server.nodes()
    );
    server
}

fn status(keys: &KeySet, node: &ppserver::Running) -> ppclient::NodeStatus {
    ppclient::node_status_with(
        &node.local_addr().to_string(),
        keys,
        Duration::from_secs(10),
    )
    .unwrap()
}

/// Asks a node's status until `done` holds, for at most 10 s; the last
/// status seen.
fn status_until(
    keys: &KeySet,
    node: &ppserver::Running,
    done: impl Fn(&ppclient::NodeStatus) -> bool,
) -> ppclient::NodeStatus {
    let mut last = status(keys, node);
    let _held = pptest::eventually(Duration::from_secs(10), || {
        last = status(keys, node);
        done(&last)
    });
    last
}

fn table() -> Vec<u64> {
    (0..LEN as u64).map(|i| i * 3 + 1).collect()
}

fn expected(table: &[u64], i: u64, parts: u64) -> u64 {
    let (from, to) = part(i, parts);
    table[from as usize..to as usize].iter().sum()
}

fn part(i: u64, parts: u64) -> (u64, u64) {
    (LEN as u64 * i / parts, LEN as u64 * (i + 1) / parts)
}

#[test]
fn a_shared_value_used_by_100_jobs_on_2_nodes_is_sent_once_per_node() {
    let keys = KeySet::one(ppclient::Key::generate().unwrap());
    let (a, b) = (start_node(&keys, 1 << 30), start_node(&keys, 1 << 30));
    let server = client(&keys, &[&a, &b]);
    let numbers = table();
    let shared = server.share(Array::from(numbers.clone())).unwrap();
    let encoded = shared.encoded_len() as u64;
    assert!(encoded > (LEN * 8) as u64, "{encoded}");
    // Each job takes a moment, so both nodes get some.
    let handles: Vec<_> = (0..100)
        .map(|i| {
            let (from, to) = part(i, 100);
            server.submit(slice_sum, (shared.clone(), from, to, 2))
        })
        .collect();
    for (i, h) in handles.into_iter().enumerate() {
        assert_eq!(h.wait(), Ok(expected(&numbers, i as u64, 100)), "job {i}");
    }
    let stats = server.stats();
    let nodes: Vec<_> = stats.nodes.iter().filter(|n| n.node != "local").collect();
    assert_eq!(nodes.len(), 2);
    for n in &nodes {
        assert!(n.jobs > 0, "both nodes ran jobs: {stats}");
        assert_eq!(
            (n.shared_sent, n.shared_bytes),
            (1, encoded),
            "sent once to {}: {stats}",
            n.node
        );
    }
    assert_eq!(nodes.iter().map(|n| n.jobs).sum::<u64>(), 100);
    assert!(
        stats.to_string().contains("shared values sent to"),
        "{stats}"
    );
    for node in [&a, &b] {
        let s = status(&keys, node);
        assert_eq!((s.shared_received, s.shared_values), (1, 1), "{s:?}");
        assert_eq!(s.shared_bytes, encoded);
    }
}

#[test]
fn the_nodes_free_a_shared_value_once_the_client_drops_it() {
    let keys = KeySet::one(ppclient::Key::generate().unwrap());
    let node = start_node(&keys, 1 << 30);
    let server = client(&keys, &[&node]);
    let numbers = table();
    let shared = server.share(Array::from(numbers.clone())).unwrap();
    let h = server.submit(slice_sum, (shared.clone(), 0, 10, 0));
    assert_eq!(h.wait(), Ok(expected(&numbers, 0, LEN as u64 / 10)));
    assert_eq!(status(&keys, &node).shared_values, 1);
    // A clone kept: still there.
    let kept = shared.clone();
    drop(shared);
    let h = server.submit(slice_sum, (kept.clone(), 0, 10, 0));
    assert!(h.wait().is_ok());
    assert_eq!(status(&keys, &node).shared_values, 1);
    drop(kept);
    let s = status_until(&keys, &node, |s| s.shared_values == 0);
    assert_eq!((s.shared_values, s.shared_bytes), (0, 0), "{s:?}");
    // Shared again: sent again, and used.
    let again = server.share(Array::from(numbers.clone())).unwrap();
    let h = server.submit(slice_sum, (again, 5, 9, 0));
    assert_eq!(h.wait(), Ok(numbers[5..9].iter().sum()));
    assert_eq!(status(&keys, &node).shared_received, 2);
}

#[test]
fn a_job_handed_back_by_a_stopping_node_reruns_elsewhere_with_its_shared_value() {
    let keys = KeySet::one(ppclient::Key::generate().unwrap());
    let a = start_node(&keys, 1 << 30);
    let server = Server::builder()
        .ncpus(0)
        .keys(keys.clone())
        .nodes([a.local_addr().to_string()])
        .listen("127.0.0.1:0")
        .build()
        .unwrap();
    let numbers = table();
    let shared = server.share(Array::from(numbers.clone())).unwrap();
    // Node a holds the value and is busy; the rest of the jobs wait there.
    let handles: Vec<_> = (0..6)
        .map(|i| {
            let (from, to) = part(i, 6);
            server.submit(slice_sum, (shared.clone(), from, to, 300))
        })
        .collect();
    let s = status_until(&keys, &a, |s| s.jobs_active > 1);
    assert_eq!(s.shared_values, 1);
    // Node b joins; a stops: what it had not started comes back and runs
    // on b, which is sent the value first.
    let listen = server.listen_addr().unwrap().to_string();
    let b = ppserver::start(
        ppserver::Config {
            port: 0,
            workers: 1,
            keys: Some(keys.clone()),
            join: Some(listen),
            ..Default::default()
        },
        ppclient::Registry::linked().unwrap(),
    )
    .unwrap();
    assert!(
        server.wait_for_nodes(2, Duration::from_secs(10)),
        "{:?}",
        server.nodes()
    );
    a.stop();
    for (i, h) in handles.into_iter().enumerate() {
        assert_eq!(h.wait(), Ok(expected(&numbers, i as u64, 6)), "job {i}");
    }
    let stats = server.stats();
    let a_name = a.local_addr().to_string();
    let on_b = stats
        .nodes
        .iter()
        .find(|n| n.node != "local" && n.node != a_name)
        .unwrap();
    assert!(on_b.jobs > 0, "{stats}");
    assert_eq!(on_b.shared_sent, 1, "{stats}");
    assert_eq!(status(&keys, &b).shared_received, 1);
}

#[test]
fn a_node_with_room_for_one_value_evicts_and_asks_again_and_every_result_is_exact() {
    let keys = KeySet::one(ppclient::Key::generate().unwrap());
    // Room for one 4 MiB value, not two.
    let node = start_node(&keys, 6 << 20);
    let server = client(&keys, &[&node]);
    let first = server.share(Array::from(table())).unwrap();
    let second = server.share(Array::from(vec![7u64; LEN / 2 + 3])).unwrap();
    let handles: Vec<_> = (0..10)
        .map(|i| {
            let t = if i % 2 == 0 { &first } else { &second };
            server.submit(slice_sum, (t.clone(), 0, 4, 0))
        })
        .collect();
    for (i, h) in handles.into_iter().enumerate() {
        let want = if i % 2 == 0 { 1 + 4 + 7 + 10 } else { 28 };
        assert_eq!(h.wait(), Ok(want), "job {i}");
    }
    let sent = server.stats().nodes[1].shared_sent;
    assert!(sent >= 3, "evicted values are sent again: {sent}");
    let s = status(&keys, &node);
    assert!(s.shared_bytes <= 6 << 20, "{s:?}");
    assert_eq!(s.shared_values, 1, "{s:?}");
    // A job that needs both cannot run here: it fails, saying why.
    let both = server
        .submit(both_lens, (first.clone(), second.clone()))
        .wait();
    let err = both.expect_err("two values over --shared-max");
    assert!(err.message.contains("--shared-max"), "{err}");
}

#[test]
fn a_value_over_the_nodes_shared_max_fails_its_jobs_with_the_reason() {
    let keys = KeySet::one(ppclient::Key::generate().unwrap());
    let node = start_node(&keys, 1 << 20);
    let server = client(&keys, &[&node]);
    let big = server.share(Array::from(table())).unwrap();
    let err = server
        .submit(slice_sum, (big.clone(), 0, 1, 0))
        .wait()
        .expect_err("over --shared-max");
    assert!(err.message.contains("--shared-max"), "{err}");
    // The connection serves on.
    let small = server.share(Array::from(vec![5u64; 10])).unwrap();
    assert_eq!(server.submit(slice_sum, (small, 0, 10, 0)).wait(), Ok(50));
}

#[test]
fn local_jobs_read_a_shared_value_in_place() {
    let server = Server::builder().ncpus(2).build().unwrap();
    let numbers = table();
    let shared = server.share(Array::from(numbers.clone())).unwrap();
    let sums: Vec<u64> = server
        .map(
            slice_sum,
            (0..8).map(|i| {
                let (from, to) = part(i, 8);
                (shared.clone(), from, to, 0)
            }),
        )
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(sums.iter().sum::<u64>(), numbers.iter().sum::<u64>());
    assert_eq!(server.stats().nodes[0].shared_sent, 0);
}
