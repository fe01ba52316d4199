//! The dashboard under 600 idle and trickling sockets: the client's threads
//! stay few, and the page, `/api/status` and an event stream are still
//! answered in full (issue 25, finding 3). One test in this file, so that
//! the process's thread count is this test's alone.

use ppclient::Server;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .count()
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(10)).expect("connects");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s
}

/// Sends a GET for `path` and reads the head: (reader, status line, head).
fn get(addr: SocketAddr, path: &str) -> (BufReader<TcpStream>, String, String) {
    let mut s = connect(addr);
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reader = BufReader::new(s);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        let n = reader.read_line(&mut line).expect("reads the head");
        if n == 0 || line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    let status = head.lines().next().unwrap_or_default().to_owned();
    (reader, status, head)
}

/// A whole answer to a GET for `path`: 200, and as many body bytes as its
/// `Content-Length` says.
fn full_body(addr: SocketAddr, path: &str) -> String {
    let (mut reader, status, head) = get(addr, path);
    assert!(status.contains(" 200 "), "{path}: {status}");
    let length = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse::<usize>().ok())?
    });
    let mut body = Vec::new();
    reader.read_to_end(&mut body).expect("reads the body");
    assert_eq!(Some(body.len()), length, "{path}: the whole body");
    String::from_utf8(body).expect("UTF-8")
}

/// A fresh event stream, open, and its first event as JSON.
fn first_event(addr: SocketAddr) -> (BufReader<TcpStream>, serde_json::Value) {
    let (mut reader, status, head) = get(addr, "/events");
    assert!(status.contains(" 200 "), "{status}");
    assert!(head.contains("text/event-stream"), "{head}");
    for _ in 0..10 {
        let mut line = String::new();
        reader.read_line(&mut line).expect("reads an event line");
        if let Some(json) = line.strip_prefix("data: ") {
            return (
                reader,
                serde_json::from_str(json).expect("an event of JSON"),
            );
        }
    }
    panic!("no event in the stream's first lines");
}

#[test]
fn six_hundred_idle_dashboard_connections_take_few_threads_and_the_page_is_served() {
    let server = Server::builder()
        .ncpus(1)
        .dashboard("127.0.0.1:0")
        .build()
        .expect("builds");
    let addr = server.dashboard_addr().expect("dashboard address");
    let done: u64 = server.submit(jobs::echo_u64, (7,)).wait().expect("a job");
    assert_eq!(done, 7);
    // Half say nothing, half start a request and never finish it.
    let idle: Vec<TcpStream> = (0..600)
        .map(|i| {
            let mut s = connect(addr);
            if i % 2 == 1 {
                s.write_all(b"GET /api/status HTTP/1.1\r\nHost: x\r\n")
                    .unwrap();
            }
            s
        })
        .collect();
    // Accepting is in order: once this is answered, every idle connection
    // before it was taken (or evicted to make room).
    let status: serde_json::Value =
        serde_json::from_str(&full_body(addr, "/api/status")).expect("JSON");
    assert_eq!(status["totals"]["succeeded"], 1, "{status}");
    let n = threads();
    eprintln!("{n} client threads with 600 idle dashboard sockets");
    assert!(n < 64, "{n} client threads with 600 idle dashboard sockets");
    assert!(full_body(addr, "/").contains("/dashboard.js"));
    // Event streams cost no thread either, and are capped: the 17th is
    // refused while 16 are open, and a page can open one once one closes.
    let mut streams: Vec<_> = (0..16)
        .map(|_| {
            let (reader, event) = first_event(addr);
            assert_eq!(event["totals"]["succeeded"], 1, "{event}");
            reader
        })
        .collect();
    let (_, status, _) = get(addr, "/events");
    assert!(status.contains(" 503 "), "the 17th stream: {status}");
    let n = threads();
    assert!(
        n < 64,
        "{n} client threads with 16 streams and 600 idle sockets"
    );
    assert!(full_body(addr, "/api/status").contains("\"totals\""));
    drop(streams.pop());
    let reopened = pptest::eventually_some(Duration::from_secs(10), || {
        let (reader, status, _) = get(addr, "/events");
        status.contains(" 200 ").then_some(reader)
    });
    assert!(reopened.is_some(), "a closed stream frees its place");
    drop(idle);
}
