//! Test helpers: real ppserver processes on 127.0.0.1, always cleaned up.
#![allow(dead_code, unreachable_pub)]

use ppcore::link::HANDSHAKE_MAX_FRAME;
use ppcore::secure::ClientHandshake;
use ppcore::wire::{ClientMsg, NodeMsg};
use ppcore::{Framer, Key, KeySet, SecureError};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, ChildStderr, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub static SECRET: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| ppcore::Key::generate().unwrap().to_text());

/// A ppserver child process; killed when dropped.
pub struct Node {
    pub child: Child,
    pub addr: SocketAddr,
    /// Its log lines as they come (a reader thread forwards them), closed
    /// when the process's stderr closes: what tests block on instead of
    /// polling the node.
    log: Mutex<Receiver<String>>,
}

/// What every test node logs: warnings, plus the lines tests wait for (jobs
/// queued and ended, connections closed).
const LOG_LEVEL: &str = "warn,ppserver::node=debug,ppserver::conn=info";

impl Node {
    /// Starts `ppserver` on 127.0.0.1 with an ephemeral port and `args`.
    pub fn start(args: &[&str]) -> Node {
        Self::start_with_env(args, &[("PP_SECRET", SECRET.as_str())])
    }

    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Node {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ppserver"));
        cmd.args(["--interface", "127.0.0.1", "--log-level", LOG_LEVEL]);
        if !args.contains(&"--port") {
            cmd.args(["--port", "0"]);
        }
        cmd.args(args)
            .env_remove("PP_SECRET")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("ppserver starts");
        let stdout = child.stdout.take().expect("stdout");
        let log = forward_log(child.stderr.take().expect("stderr"));
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("ready line");
        let addr = line
            .split_whitespace()
            .find_map(|w| w.parse::<SocketAddr>().ok())
            .unwrap_or_else(|| panic!("no address in {line:?}"));
        Node {
            child,
            addr,
            log: Mutex::new(log),
        }
    }

    pub fn name(&self) -> String {
        self.addr.to_string()
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .expect("kill runs")
            .success();
        assert!(ok, "kill -{sig} failed");
    }

    /// Waits (at most `limit`) for the process to exit; its exit code. The
    /// exit is seen as the end of its log (stderr closes), not by polling.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match log.recv_timeout(left) {
                Ok(_) => continue,
                Err(RecvTimeoutError::Timeout) => return None,
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        drop(log);
        self.child.wait().ok().and_then(|s| s.code())
    }

    /// Waits (at most `limit`) for log lines containing `text`, until
    /// `enough` says the lines seen so far suffice; false on timeout or if
    /// the node exited first.
    pub fn wait_log(
        &self,
        text: &str,
        limit: Duration,
        mut enough: impl FnMut(&str) -> bool,
    ) -> bool {
        let deadline = Instant::now() + limit;
        let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match log.recv_timeout(left) {
                Ok(line) if line.contains(text) && enough(&line) => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
    }

    /// Waits (at most 10 s) for `n` more log lines containing `text`.
    pub fn wait_lines(&self, text: &str, n: usize) {
        let mut seen = 0;
        let got = self.wait_log(text, Duration::from_secs(10), |_| {
            seen += 1;
            seen >= n
        });
        assert!(
            got,
            "node {} logged {seen} of {n} lines with {text:?}",
            self.name()
        );
    }
}

/// A thread that forwards `stderr`'s lines to the returned channel, and
/// echoes warnings and errors to the test's own stderr.
fn forward_log(stderr: ChildStderr) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if line.contains(" WARN ") || line.contains("ERROR") {
                eprintln!("{line}");
            }
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until a condition holds, for at most a limit (the workspace's test kit).
#[allow(unused_imports)] // not every test binary waits
pub use pptest::{eventually, eventually_some};

/// Sums the 64-task Maclaurin split of `terms` terms; also the exact value.
pub fn maclaurin_64(server: &ppclient::Server, terms: u64) -> (f64, f64) {
    let x = 0.9999;
    let handles: Vec<_> = (0..64)
        .map(|k| {
            let (lo, hi) = jobs::task_range(terms, 64, k);
            server.submit(jobs::maclaurin, (x, lo, hi))
        })
        .collect();
    let sum = handles
        .into_iter()
        .map(|h| {
            h.wait_timeout(Duration::from_secs(30))
                .expect("resolves in time")
        })
        .sum::<Result<f64, _>>()
        .expect("all jobs succeed");
    (sum, jobs::maclaurin_exact(x, terms))
}

pub fn close(a: f64, b: f64) -> bool {
    ((a - b) / b).abs() <= 1e-9
}

/// A raw connection to `node` (reads time out after 10 s).
pub fn connect(node: &Node) -> TcpStream {
    let s = TcpStream::connect(node.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// A raw connection to `node` from the loopback address `from` (such as
/// 127.0.0.2: another source, for per-address limits); reads time out after
/// 10 s.
pub fn connect_from(node: &Node, from: [u8; 4]) -> TcpStream {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    let source = SocketAddr::from((from, 0));
    socket.bind(&source.into()).unwrap();
    socket.connect(&node.addr.into()).unwrap();
    let s: TcpStream = socket.into();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// The test cluster's key.
pub fn key() -> Key {
    KeySet::parse(&SECRET).unwrap().primary().clone()
}

/// Reads from `s` until `decode` gives a whole frame; `Err` with why not.
pub fn read_frame<T>(
    s: &mut TcpStream,
    framer: &mut Framer,
    mut decode: impl FnMut(&mut Framer) -> Result<Option<T>, ppcore::FrameError>,
) -> Result<T, String> {
    let mut buf = vec![0u8; 64 << 10];
    for _ in 0..100_000 {
        match decode(framer) {
            Ok(Some(got)) => return Ok(got),
            Ok(None) => {}
            Err(e) => return Err(e.to_string()),
        }
        match s.read(&mut buf) {
            Ok(0) => return Err("closed".into()),
            Ok(n) => framer.push(&buf[..n]),
            Err(e) => return Err(e.to_string()),
        }
    }
    Err("no whole frame".into())
}

/// A connection that completed the handshake by hand, and its session.
pub struct Session {
    pub stream: TcpStream,
    pub framer: Framer,
}

impl Session {
    /// `msg` as the next sealed frame.
    pub fn frame(&mut self, msg: &ClientMsg) -> Vec<u8> {
        self.framer.encode(msg).unwrap()
    }

    /// Sends `msg` sealed; false if the write failed.
    pub fn send(&mut self, msg: &ClientMsg) -> bool {
        let frame = self.frame(msg);
        self.stream.write_all(&frame).is_ok()
    }

    /// The next message from the node.
    pub fn recv(&mut self) -> Result<NodeMsg, String> {
        read_frame(&mut self.stream, &mut self.framer, |f| {
            f.decode::<NodeMsg>()
        })
    }

    /// What the node says before it closes: the reason of its `Reject`.
    pub fn reject_reason(mut self) -> String {
        for _ in 0..10_000 {
            match self.recv() {
                Ok(NodeMsg::Reject { reason, .. }) => return reason,
                Ok(_) => continue,
                Err(e) => panic!("expected a Reject, got {e}"),
            }
        }
        panic!("no Reject")
    }
}

/// The handshake with `key` on a new connection: the session, or why the
/// node refused.
pub fn handshake(node: &Node, key: &Key) -> Result<Session, SecureError> {
    handshake_on(connect(node), key)
}

/// The handshake with `key` on the connection `s`.
pub fn handshake_on(mut s: TcpStream, key: &Key) -> Result<Session, SecureError> {
    let mut framer = Framer::new(HANDSHAKE_MAX_FRAME);
    let (mut hs, first) = ClientHandshake::start(key, &[]).unwrap();
    s.write_all(&framer.encode_handshake(&first).unwrap())
        .unwrap();
    let answer = read_frame(&mut s, &mut framer, |f| f.decode_handshake()).unwrap();
    hs.read(&answer)?;
    framer.secure(hs.finish()?);
    framer.set_max(1 << 24);
    Ok(Session { stream: s, framer })
}

/// A connection that completed the handshake by hand (up to `Welcome`).
pub fn authenticated(node: &Node) -> Session {
    authenticated_on(connect(node))
}

/// The connection `s` through the handshake by hand (up to `Welcome`).
pub fn authenticated_on(s: TcpStream) -> Session {
    let mut s = handshake_on(s, &key()).unwrap();
    assert!(s.send(&ClientMsg::Ping(0)));
    let welcome = s.recv();
    assert!(
        matches!(welcome, Ok(NodeMsg::Welcome { .. })),
        "{welcome:?}"
    );
    s
}

/// What the node says when it refuses a connection before the session: the
/// reason in its refusal.
pub fn reject_reason(mut s: TcpStream) -> String {
    let mut framer = Framer::new(HANDSHAKE_MAX_FRAME);
    let refusal = read_frame(&mut s, &mut framer, |f| f.decode_handshake()).unwrap();
    let (mut hs, _) = ClientHandshake::start(&Key::generate().unwrap(), &[]).unwrap();
    match hs.read(&refusal) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("an answer, not a refusal"),
    }
}

/// Waits (at most 10 s) until `node` has had at least `n` jobs queued, as
/// its log says: the event tests wait for before they disturb a node with
/// work on it.
pub fn wait_busy(node: &Node, n: u64) {
    let mut queued = 0;
    let busy = node.wait_log("jobs queued", Duration::from_secs(10), |line| {
        queued += line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("jobs=")?.parse::<u64>().ok())
            .unwrap_or(0);
        queued >= n
    });
    assert!(busy, "node {} never had {n} jobs", node.name());
}

/// `n` echo jobs from a well-behaved client on 127.0.0.1 all succeed.
pub fn still_serves(node: &Node, n: u64) {
    let server = ppclient::Server::builder()
        .ncpus(0)
        .secret(SECRET.as_str())
        .nodes([node.name()])
        .build()
        .unwrap();
    let handles: Vec<_> = (0..n)
        .map(|i| server.submit(jobs::echo_u64, (i,)))
        .collect();
    for (i, h) in handles.into_iter().enumerate() {
        assert_eq!(
            h.wait_timeout(Duration::from_secs(30)).expect("resolves"),
            Ok(i as u64)
        );
    }
}
