//! Kept values spilled to disk (issue 29, part 3): over a node's
//! `--max-memory`, kept results go to checksummed files in `--spill-dir`
//! and are read back for the jobs and fetches that need them; a file that
//! does not read back intact is never used: the value is made again from
//! its lineage. The files go when the values are dropped.

use ppclient::{KeySet, Options, Server, Shared};
use std::path::{Path, PathBuf};
use std::time::Duration;

ppclient::job! {
    /// `n` bytes, byte `i` being `(i + seed) % 251`.
    pub fn pattern(n: u64, seed: u64) -> Vec<u8> {
        (0..n).map(|i| ((i + seed) % 251) as u8).collect()
    }
}

ppclient::job! {
    /// The length and the sum of a kept blob's bytes.
    pub fn measure(b: Shared<Vec<u8>>) -> (u64, u64) {
        (b.len() as u64, b.iter().map(|&x| u64::from(x)).sum())
    }
}

const WAIT: Duration = Duration::from_secs(30);
const MIB: u64 = 1 << 20;

/// What [`measure`] says of `pattern(n, seed)`.
fn expected(n: u64, seed: u64) -> (u64, u64) {
    (n, (0..n).map(|i| (i + seed) % 251).sum())
}

fn keys() -> KeySet {
    KeySet::one(ppclient::Key::generate().unwrap())
}

/// A fresh directory for one test's spill files.
fn spill_dir(name: &str) -> PathBuf {
    let id = ppclient::Key::generate().unwrap().fingerprint();
    std::env::temp_dir().join(format!("pp-spill-{name}-{}-{id}", std::process::id()))
}

/// A node with `max_memory` that spills to `dir`.
fn start_node(keys: &KeySet, max_memory: u64, dir: &Path) -> ppserver::Running {
    let config = ppserver::Config {
        port: 0,
        workers: 1,
        keys: Some(keys.clone()),
        max_memory,
        spill_dir: Some(dir.to_path_buf()),
        spill_max: 256 * MIB,
        ..Default::default()
    };
    ppserver::start(config, ppclient::Registry::linked().unwrap()).unwrap()
}

fn client(keys: &KeySet, node: &ppserver::Running) -> Server {
    let server = Server::builder()
        .ncpus(0)
        .keys(keys.clone())
        .max_payload(1 << 30)
        .nodes([node.local_addr().to_string()])
        .build()
        .unwrap();
    assert_eq!(server.active_nodes().len(), 1, "{:?}", server.nodes());
    server
}

fn status(keys: &KeySet, node: &ppserver::Running) -> ppclient::NodeStatus {
    ppclient::node_status_with(&node.local_addr().to_string(), keys, WAIT).unwrap()
}

/// The spill files in `dir`.
fn spill_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let files = entries.flatten().map(|e| e.path());
    files
        .filter(|p| p.extension().is_some_and(|e| e == "spill"))
        .collect()
}

#[test]
fn kept_values_over_max_memory_spill_and_read_back() {
    let (keys, dir) = (keys(), spill_dir("read-back"));
    // 3 MiB of memory; five 2 MiB results, all kept on the node.
    let node = start_node(&keys, 3 * MIB, &dir);
    let server = client(&keys, &node);
    let n = 2 * MIB;
    let kept: Vec<_> = (0..5)
        .map(|seed| server.submit_with(pattern, (n, seed), Options::new().keep()))
        .collect();
    server.wait_all().unwrap();
    let stats = server.stats();
    assert_eq!(stats.nodes[1].kept, 5, "all kept on the node: {stats}");
    let st = status(&keys, &node);
    assert_eq!(st.kept_values, 5, "{st:?}");
    assert!(st.kept_bytes <= 3 * MIB, "{st:?}");
    assert!(st.spilled_bytes >= 2 * n, "at least two spilled: {st:?}");
    assert_eq!(spill_files(&dir).len() as u64, st.spilled_bytes / n);
    // Dependents on the node get every value right, spilled or not.
    let measured: Vec<_> = (kept.iter())
        .map(|k| server.submit(measure, (k.keep().unwrap(),)))
        .collect();
    for (seed, m) in measured.into_iter().enumerate() {
        let got = m.wait_timeout(WAIT).expect("ends").unwrap();
        assert_eq!(got, expected(n, seed as u64), "value {seed}");
    }
    let st = status(&keys, &node);
    assert!(st.spill_reads > 0, "{st:?}");
    // Fetched to the client: the same bytes.
    let reads = st.spill_reads;
    for (seed, k) in kept.into_iter().enumerate() {
        assert_eq!(k.wait().unwrap(), pattern_bytes(n, seed as u64));
    }
    assert!(
        status(&keys, &node).spill_reads > reads,
        "fetches read back"
    );
    assert_eq!(server.stats().nodes[1].recomputed, 0, "{}", server.stats());
    // Dropped (the handles went with their results): the files go.
    assert!(
        pptest::eventually(WAIT, || status(&keys, &node).spilled_bytes == 0),
        "{:?}",
        status(&keys, &node)
    );
    assert!(spill_files(&dir).is_empty(), "{:?}", spill_files(&dir));
    drop(server);
    node.stop();
    node.wait();
    let _ = std::fs::remove_dir_all(dir);
}

fn pattern_bytes(n: u64, seed: u64) -> Vec<u8> {
    (0..n).map(|i| ((i + seed) % 251) as u8).collect()
}

#[test]
fn a_corrupt_spill_file_is_recomputed_not_read() {
    let (keys, dir) = (keys(), spill_dir("corrupt"));
    // 1 MiB of memory: a 2 MiB result is spilled.
    let node = start_node(&keys, MIB, &dir);
    let server = client(&keys, &node);
    let n = 2 * MIB;
    let kept = server.submit_with(pattern, (n, 9), Options::new().keep());
    server.wait_all().unwrap();
    assert_eq!(server.stats().nodes[1].kept, 1, "{}", server.stats());
    let files = spill_files(&dir);
    assert_eq!(files.len(), 1, "{files:?}");
    // One byte of the value flipped on disk, between the keep and its use.
    let mut bytes = std::fs::read(&files[0]).unwrap();
    let at = bytes.len() - 1000;
    bytes[at] ^= 0x40;
    std::fs::write(&files[0], &bytes).unwrap();
    let m = server.submit(measure, (kept.keep().unwrap(),));
    let got = m.wait_timeout(WAIT).expect("ends").unwrap();
    assert_eq!(got, expected(n, 9), "never the corrupt value");
    let stats = server.stats();
    assert_eq!(stats.nodes[1].recomputed, 1, "made again: {stats}");
    assert_eq!(kept.wait().unwrap(), pattern_bytes(n, 9));
    // The node keeps serving, and keeps spilling.
    let again = server.submit_with(pattern, (n, 10), Options::new().keep());
    let m = server.submit(measure, (again.keep().unwrap(),));
    assert_eq!(
        m.wait_timeout(WAIT).expect("ends").unwrap(),
        expected(n, 10)
    );
    assert!(status(&keys, &node).spill_reads >= 2);
    drop(server);
    node.stop();
    node.wait();
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_missing_spill_file_is_recomputed_for_a_fetch_too() {
    let (keys, dir) = (keys(), spill_dir("missing"));
    let node = start_node(&keys, MIB, &dir);
    let server = client(&keys, &node);
    let n = 2 * MIB;
    let kept = server.submit_with(pattern, (n, 3), Options::new().keep());
    server.wait_all().unwrap();
    let files = spill_files(&dir);
    assert_eq!(files.len(), 1, "{files:?}");
    std::fs::remove_file(&files[0]).unwrap();
    // Fetched to the client: the node says it lost it; it is made again.
    assert_eq!(kept.wait().unwrap(), pattern_bytes(n, 3));
    let stats = server.stats();
    assert_eq!(stats.nodes[1].recomputed, 1, "made again: {stats}");
    drop(server);
    node.stop();
    node.wait();
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_spill_write_that_fails_sends_the_result_back_in_full() {
    let (keys, dir) = (keys(), spill_dir("write-fails"));
    // 3 MiB of memory: a 2 MiB result, counted while it is kept, does not
    // fit, but the value sent back with a job does.
    let node = start_node(&keys, 3 * MIB, &dir);
    // A file stands where the directory would be made (at the first
    // write): every write fails, as on a full disk.
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::write(&dir, b"not a directory").unwrap();
    let server = client(&keys, &node);
    let kept = server.submit_with(pattern, (2 * MIB, 1), Options::new().keep());
    server.wait_all().unwrap();
    assert_eq!(server.stats().nodes[1].kept, 0, "{}", server.stats());
    let m = server.submit(measure, (kept.keep().unwrap(),));
    let got = m.wait_timeout(WAIT).expect("ends").unwrap();
    assert_eq!(got, expected(2 * MIB, 1));
    assert_eq!(status(&keys, &node).spilled_bytes, 0);
    assert_eq!(kept.wait().unwrap(), pattern_bytes(2 * MIB, 1));
    // And the node keeps serving.
    let m = server.submit(measure, (server.share(pattern_bytes(10, 0)).unwrap(),));
    assert_eq!(
        m.wait_timeout(WAIT).expect("ends").unwrap(),
        expected(10, 0)
    );
    drop(server);
    node.stop();
    node.wait();
    let _ = std::fs::remove_file(dir);
}

#[test]
fn spill_files_go_with_the_connection_and_dead_nodes_files_at_start() {
    let (keys, dir) = (keys(), spill_dir("close"));
    std::fs::create_dir_all(&dir).unwrap();
    // A file an earlier node left (no live lock for its port).
    let stale = dir.join("p1-c0-00.spill");
    std::fs::write(&stale, b"left over").unwrap();
    let node = start_node(&keys, MIB, &dir);
    assert!(!stale.exists(), "removed at start");
    let server = client(&keys, &node);
    let kept: Vec<_> = (0..3)
        .map(|seed| server.submit_with(pattern, (2 * MIB, seed), Options::new().keep()))
        .collect();
    server.wait_all().unwrap();
    assert_eq!(spill_files(&dir).len(), 3);
    // The client goes (its references with it): so do the files.
    drop(server);
    assert!(
        pptest::eventually(WAIT, || spill_files(&dir).is_empty()),
        "{:?}",
        spill_files(&dir)
    );
    assert!(pptest::eventually(WAIT, || status(&keys, &node)
        .spilled_bytes
        == 0));
    drop(kept);
    node.stop();
    node.wait();
    let _ = std::fs::remove_dir_all(dir);
}
