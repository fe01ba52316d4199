//! Jobs whose results are far larger than their arguments, from a client
//! that does not read them (issue 25, finding 2): their arguments are tiny,
//! so the node lets hundreds in at once while it is empty; a result counts
//! against `--max-memory` only once it is made. A queued job therefore
//! starts only while what the rest of the node holds is within the budget,
//! else it is handed back: the node's peak stays within twice the budget.
//!
//! The node runs in this test's process (its own job, `make_bytes`, is
//! registered here), so the process's peak is the node's.

mod common;

use common::{authenticated_on, SECRET};
use ppcore::wire::{ClientMsg, RunJob};
use ppcore::{Job, KeySet, Registry};
use serde_bytes::ByteBuf;
use std::net::TcpStream;
use std::time::Duration;

const MIB: u64 = 1 << 20;
const MAX_MEMORY: u64 = 64 * MIB;
/// What the node may hold beyond its baseline besides twice its budget:
/// the results of the two jobs running when it filled (4 MiB each), the
/// encoded copy each is made into (4 MiB each), and the allocator's slack.
const ALLOWANCE: u64 = 32 * MIB;

ppcore::job! {
    /// `len` bytes of `byte`: a result far larger than its arguments.
    pub fn make_bytes(byte: u8, len: u64) -> ByteBuf {
        ByteBuf::from(vec![byte; usize::try_from(len).unwrap_or(0)])
    }
}

/// A line of this process's /proc status, in bytes.
fn status_bytes(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

fn job(id: u64) -> RunJob {
    RunJob {
        id,
        attempt: 1,
        name: make_bytes::NAME.into(),
        args: ByteBuf::from(ppcore::encode(&(id as u8, 4 * MIB)).unwrap()),
        program: None,
        shared: Vec::new(),
        keep: None,
        journal: None,
        request: None,
    }
}

#[test]
fn jobs_with_big_results_from_tiny_arguments_start_only_while_the_node_has_room() {
    let mut registry = Registry::new();
    registry.add::<make_bytes>().unwrap();
    let config = ppserver::Config {
        port: 0,
        workers: 2,
        keys: Some(KeySet::parse(&SECRET).unwrap()),
        max_memory: MAX_MEMORY,
        write_timeout: Duration::from_secs(120),
        grace: Duration::from_secs(1),
        cache_dir: None,
        ..Default::default()
    };
    let node = ppserver::start(config, registry).unwrap();
    let addr = node.local_addr().to_string();
    let mut s = authenticated_on(TcpStream::connect(&addr).unwrap());
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let base = status_bytes("VmRSS:");
    // 256 jobs of 4 MiB results: 1 GiB, sixteen times the budget, from a
    // few bytes of arguments each; never read.
    for batch in 0..4u64 {
        let jobs = (1..=64).map(|i| job(batch * 64 + i)).collect();
        assert!(s.send(&ClientMsg::Run(jobs)));
    }
    // Every job ran or was handed back: none is queued or running.
    let mut active = u64::MAX;
    let quiet = common::eventually(Duration::from_secs(60), || {
        active = ppclient::node_status(&addr, SECRET.as_bytes(), Duration::from_secs(10))
            .map_or(u64::MAX, |st| st.jobs_active);
        active == 0
    });
    assert!(quiet, "{active} jobs still queued or running");
    let peak = status_bytes("VmHWM:").saturating_sub(base);
    eprintln!(
        "256 jobs of 4 MiB results, never read: peak grew by {} MiB",
        peak / MIB
    );
    assert!(
        peak <= 2 * MAX_MEMORY + ALLOWANCE,
        "the node's peak grew by {} MiB under --max-memory 64M",
        peak / MIB
    );
    drop(s);
    node.stop();
}
