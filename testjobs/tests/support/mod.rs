//! What the tests of isolation mode share: a `pp-test-node` in process
//! isolation on loopback, and clients of it.

use ppclient::Server;
use std::io::{BufRead, BufReader};
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
        .env("PP_SECRET", SECRET.as_str())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .split_whitespace()
        .find(|w| w.parse::<std::net::SocketAddr>().is_ok())
        .unwrap()
        .to_owned();
    Node(child, addr)
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
