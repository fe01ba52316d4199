//! `ppserver --metrics` under idle, trickling and oversized HTTP clients:
//! the node's threads stay few, and a real scrape is still answered in full
//! (issue 25, finding 3). Each test starts its own `ppserver` process.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

/// A ppserver process serving `/metrics`; killed when dropped.
struct MetricsNode {
    child: Child,
    metrics: SocketAddr,
}

impl Drop for MetricsNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The lines of `stream`, forwarded by a thread.
fn lines(stream: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits (at most 30 s) for a line of `rx` containing `text`.
fn wait_line(rx: &Receiver<String>, text: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.contains(text) => return line,
            Ok(_) => {}
            Err(e) => panic!("no line with {text:?}: {e}"),
        }
    }
}

fn start() -> MetricsNode {
    let key = ppcore::Key::generate().expect("randomness").to_text();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ppserver"))
        .args(["--interface", "127.0.0.1", "--port", "0", "--workers", "1"])
        .args(["--metrics", "127.0.0.1:0"])
        .args(["--log-level", "warn,ppserver::metrics=info"])
        .env("PP_SECRET", key)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ppserver starts");
    let out = lines(child.stdout.take().expect("stdout"));
    let err = lines(child.stderr.take().expect("stderr"));
    wait_line(&out, "ready on");
    let line = wait_line(&err, "metrics on http://");
    let metrics = line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.trim_end_matches("/metrics").parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    MetricsNode { child, metrics }
}

/// Threads of process `pid` now.
fn threads(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("/proc/PID/task")
        .count()
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(10)).expect("connects");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s
}

/// One scrape on a fresh connection: the status line and the whole body,
/// checked against its `Content-Length`.
fn scrape(addr: SocketAddr) -> (String, String) {
    let mut s = connect(addr);
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).expect("reads the answer");
    let (head, body) = text.split_once("\r\n\r\n").expect("a head and a body");
    let length = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse::<usize>().ok())?
    });
    assert_eq!(length, Some(body.len()), "the whole body: {head}");
    let status = head.lines().next().unwrap_or_default().to_owned();
    (status, body.to_owned())
}

/// A scrape answered in full, in the text format, with the node's figures.
fn assert_full_scrape(addr: SocketAddr) {
    let (status, body) = scrape(addr);
    assert!(status.contains(" 200 "), "{status}");
    let parsed = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_owned())))
        .unwrap_or_else(|e| panic!("not the text format: {e}\n{body}"));
    let workers = parsed
        .samples
        .iter()
        .find(|s| s.metric == "ppserver_workers")
        .map(|s| s.value.clone());
    assert_eq!(workers, Some(prometheus_parse::Value::Gauge(1.0)), "{body}");
}

#[test]
fn six_hundred_idle_metrics_connections_take_few_threads_and_a_scrape_is_answered() {
    let node = start();
    let pid = node.child.id();
    // Half say nothing, half start a request and never finish it.
    let idle: Vec<TcpStream> = (0..600)
        .map(|i| {
            let mut s = connect(node.metrics);
            if i % 2 == 1 {
                s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
                    .unwrap();
            }
            s
        })
        .collect();
    // Accepting is in order: once this scrape is answered, every idle
    // connection before it was taken (or evicted to make room).
    assert_full_scrape(node.metrics);
    let n = threads(pid);
    eprintln!("{n} node threads with 600 idle HTTP connections");
    assert!(n < 64, "{n} node threads with 600 idle HTTP connections");
    assert_full_scrape(node.metrics);
    drop(idle);
}

#[test]
fn a_head_that_trickles_in_or_grows_too_large_is_cut_off() {
    let node = start();
    // A head over 8 KiB: 431, and the connection closes.
    let mut big = connect(node.metrics);
    let head = format!(
        "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\n\r\n",
        "a".repeat(9000)
    );
    big.write_all(head.as_bytes()).unwrap();
    let mut answer = String::new();
    big.read_to_string(&mut answer)
        .expect("an answer, then the end");
    assert!(answer.starts_with("HTTP/1.1 431 "), "{answer}");
    // A head that never ends: the node closes it (after its request
    // timeout), and serves others meanwhile.
    let mut slow = connect(node.metrics);
    slow.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    assert_full_scrape(node.metrics);
    let mut rest = Vec::new();
    let read = slow.read_to_end(&mut rest);
    let reset = |e: &std::io::Error| e.kind() == std::io::ErrorKind::ConnectionReset;
    assert!(
        matches!(read, Ok(0)) || read.as_ref().is_err_and(reset),
        "closed unanswered: {read:?} {rest:?}"
    );
    // Keep-alive: two scrapes on one connection.
    let mut kept = connect(node.metrics);
    let mut reader = BufReader::new(kept.try_clone().unwrap());
    for _ in 0..2 {
        write!(kept, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut length = None;
        let mut status = String::new();
        reader.read_line(&mut status).unwrap();
        assert!(status.contains(" 200 "), "{status}");
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some(v) = line.strip_prefix("Content-Length: ") {
                length = v.trim().parse::<usize>().ok();
            }
        }
        let mut body = vec![0; length.expect("a length")];
        reader.read_exact(&mut body).unwrap();
        assert!(String::from_utf8_lossy(&body).contains("ppserver_workers"));
    }
}
