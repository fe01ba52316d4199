//! A program with its own subcommands runs a node in process isolation
//! through `ppclient::node::{init_worker, serve}` (issue 11, point 1).

use ppclient::{ErrorKind, Server};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

static SECRET: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| ppcore::Key::generate().unwrap().to_text());

struct Node(Child, String);

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn app() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pp-app"));
    cmd.env("PP_SECRET", SECRET.as_str());
    cmd
}

fn node() -> Node {
    let mut child = app().arg("node").stdout(Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .split_whitespace()
        .find(|w| w.parse::<std::net::SocketAddr>().is_ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_owned();
    Node(child, addr)
}

#[test]
fn a_program_with_subcommands_serves_jobs_in_worker_processes() {
    let n = node();
    let server = Server::builder()
        .ncpus(0)
        .secret(SECRET.as_str())
        .nodes([n.1.clone()])
        .build()
        .unwrap();
    // A segfault costs only its job: the job ran in a worker process.
    let err = server.submit(testjobs::segfault, ()).wait().unwrap_err();
    assert_eq!(err.kind, ErrorKind::Crashed, "{err}");
    assert!(err.message.contains("SIGSEGV"), "{err}");
    assert_eq!(server.submit(jobs::sum_primes, (100,)).wait(), Ok(1060));
    // The same program's client subcommand.
    let out = app().args(["client", &n.1]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.trim(), "segfault: worker crashed; sum_primes: 1060");
}

#[test]
fn bad_subcommand_is_a_usage_error() {
    let out = app().arg("nonsense").output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("usage"));
}
