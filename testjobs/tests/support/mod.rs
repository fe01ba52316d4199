//! What the tests of isolation mode share: a `pp-test-node` in process
//! isolation on loopback, and clients of it.
#![allow(dead_code)]

use ppclient::Server;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The key the nodes and clients share.
pub(crate) static SECRET: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| ppcore::Key::generate().unwrap().to_text());
/// How long a test waits for anything at most.
pub(crate) const WAIT: Duration = Duration::from_secs(60);

/// A node process (killed with SIGKILL when dropped) and its address.
pub(crate) struct Node(pub(crate) Child, pub(crate) String);

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts a node with `workers` worker processes.
pub(crate) fn node(workers: &str) -> Node {
    node_with(workers, &[])
}

/// Starts a node with `workers` worker processes and `more` arguments
/// (told of no GPUs by its environment: only by what it offers).
pub(crate) fn node_with(workers: &str, more: &[&str]) -> Node {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pp-test-node"))
        .args([
            "--interface",
            "127.0.0.1",
            "--port",
            "0",
            "--log-level",
            "warn",
        ])
        .args(["--isolation", "process", "--workers", workers])
        .args(more)
        .env("PP_SECRET", SECRET.as_str())
        .env_remove("CUDA_VISIBLE_DEVICES")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let addr = ready_addr(&mut child);
    Node(child, addr)
}

/// The address in a node's ready line, its first line on stdout.
pub(crate) fn ready_addr(child: &mut Child) -> String {
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    line.split_whitespace()
        .find(|w| w.parse::<std::net::SocketAddr>().is_ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_owned()
}

/// A client of `node` alone, with no local workers.
pub(crate) fn client(node: &Node) -> Server {
    Server::builder()
        .ncpus(0)
        .secret(SECRET.as_str())
        .nodes([node.1.clone()])
        .build()
        .unwrap()
}

/// Longer than [`WAIT`]: a test that passes cannot have waited for it.
pub(crate) const HOLD_SECS: u64 = 300;

/// A fresh path for a job to write its pids to.
pub(crate) fn pid_file(test: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("{test}-{}.pids", std::process::id()));
    let _ = std::fs::remove_file(&path);
    path
}

/// Waits (bounded by [`WAIT`]) for a job to write "worker child" to `path`.
pub(crate) fn pids_in(path: &PathBuf) -> (u32, u32) {
    pptest::eventually_some(WAIT, || {
        let text = std::fs::read_to_string(path).ok()?;
        let pids: Vec<u32> = text.split(' ').filter_map(|p| p.parse().ok()).collect();
        match pids[..] {
            [worker, child] => Some((worker, child)),
            _ => None,
        }
    })
    .unwrap_or_else(|| panic!("no pids in {} after {WAIT:?}", path.display()))
}

/// Whether process `pid` is gone (or a zombie nobody reaped yet).
pub(crate) fn gone(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |stat| {
        // The state follows the command, which is in parentheses.
        stat.rsplit(')')
            .next()
            .map(str::trim_start)
            .is_some_and(|rest| rest.starts_with('Z'))
    })
}

/// Waits (bounded by [`WAIT`]) until every process in `pids` is gone.
pub(crate) fn all_gone(pids: &[u32]) -> bool {
    pptest::eventually(WAIT, || pids.iter().all(|&p| gone(p)))
}

/// Kills what a failed test may have left behind.
pub(crate) struct Reap(pub(crate) Vec<u32>);

impl Drop for Reap {
    fn drop(&mut self) {
        for pid in &self.0 {
            if !gone(*pid) {
                let _ = std::process::Command::new("kill")
                    .args(["-9", &pid.to_string()])
                    .status();
            }
        }
    }
}
