//! `ppcore::http`'s server through its public API on loopback: pipelined
//! and `HEAD` requests, a failing handler, eviction when full, streams
//! capped, and stopping.

use ppcore::http::{EventSource, Limits, Listener, Reply, Request, Response};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

struct Counting(u32);

impl EventSource for Counting {
    fn next_event(&mut self) -> Option<Vec<u8>> {
        self.0 += 1;
        Some(format!("data: {}\n\n", self.0).into_bytes())
    }
}

fn handler(request: &Request) -> Reply {
    match request.path.as_str() {
        "/panic" => panic!("a handler bug"),
        "/events" => Reply::Stream {
            head: Response::new(200, "text/event-stream", ""),
            events: Box::new(Counting(0)),
        },
        path => Response::text(200, path.to_owned()).into(),
    }
}

/// A server of `limits`, and the flag that stops it.
fn serve(limits: Limits) -> (SocketAddr, Arc<AtomicBool>, std::thread::JoinHandle<()>) {
    let listener = Listener::bind("127.0.0.1:0".parse().unwrap()).expect("binds");
    let addr = listener.local_addr();
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let thread = listener
        .spawn("test-http", limits, handler, move || {
            flag.load(Ordering::Relaxed)
        })
        .expect("spawns");
    (addr, stop, thread)
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(10)).expect("connects");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s
}

fn exchange(addr: SocketAddr, requests: &str) -> String {
    let mut s = connect(addr);
    s.write_all(requests.as_bytes()).unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).expect("answers, then the end");
    text
}

#[test]
fn pipelined_requests_are_answered_in_order_and_head_gets_no_body() {
    let (addr, stop, thread) = serve(Limits::default());
    let text = exchange(
        addr,
        "GET /a HTTP/1.1\r\n\r\nHEAD /bb HTTP/1.1\r\n\r\nGET /c?q HTTP/1.1\r\nConnection: close\r\n\r\n",
    );
    let answers: Vec<&str> = text.split("HTTP/1.1 200 OK\r\n").skip(1).collect();
    assert_eq!(answers.len(), 3, "{text}");
    assert!(answers[0].ends_with("keep-alive\r\n\r\n/a"), "{text}");
    assert!(
        answers[1].ends_with("Content-Length: 3\r\nConnection: keep-alive\r\n\r\n"),
        "{text}"
    );
    assert!(
        answers[2].ends_with("Connection: close\r\n\r\n/c"),
        "{text}"
    );
    // A failing handler is a 500 for that request, not the server's end.
    let text = exchange(addr, "GET /panic HTTP/1.0\r\n\r\n");
    assert!(text.starts_with("HTTP/1.1 500 "), "{text}");
    let text = exchange(addr, "GET /ok HTTP/1.0\r\n\r\n");
    assert!(
        text.starts_with("HTTP/1.1 200 ") && text.ends_with("/ok"),
        "{text}"
    );
    let text = exchange(addr, "BREW /pot HTCPCP/1.0\r\n\r\n");
    assert!(text.starts_with("HTTP/1.1 400 "), "{text}");
    stop.store(true, Ordering::Relaxed);
    thread.join().expect("the server thread ends");
    assert!(TcpStream::connect(addr).is_err(), "the listener is closed");
}

#[test]
fn a_full_server_evicts_its_oldest_idle_connection_for_a_newcomer() {
    let limits = Limits {
        max_conns: 4,
        max_streams: 2,
        // Longer than the reads here wait: an idle connection closes by
        // eviction or the test fails.
        request_timeout: Duration::from_secs(600),
        ..Limits::default()
    };
    let (addr, _stop, _thread) = serve(limits);
    let mut idle: Vec<TcpStream> = (0..4).map(|_| connect(addr)).collect();
    idle[0].write_all(b"GET /x HTTP/1.1\r\n").unwrap();
    // The table is full: each newcomer evicts the oldest idle connection,
    // in order. (Newcomers stay open, so the table stays full.)
    let mut newcomers = Vec::new();
    for (k, old) in idle.iter_mut().enumerate().take(3) {
        let mut s = connect(addr);
        s.write_all(b"GET /new HTTP/1.1\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        assert!(text.ends_with("/new"), "{text}");
        newcomers.push(s);
        // Closed (reset if its bytes were still unread), not timed out.
        let mut rest = Vec::new();
        let end = old.read_to_end(&mut rest);
        let reset = |e: &std::io::Error| e.kind() == std::io::ErrorKind::ConnectionReset;
        assert!(
            matches!(end, Ok(0)) || end.as_ref().is_err_and(reset),
            "idle {k} evicted: {end:?}"
        );
    }
    // Streams are never evicted, and past the cap get a 503.
    let mut streams: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut s = connect(addr);
            s.write_all(b"GET /events HTTP/1.1\r\n\r\n").unwrap();
            let mut first = [0u8; 512];
            let n = s.read(&mut first).unwrap();
            let text = String::from_utf8_lossy(&first[..n]).into_owned();
            assert!(text.starts_with("HTTP/1.1 200 "), "{text}");
            s
        })
        .collect();
    let text = exchange(addr, "GET /events HTTP/1.1\r\n\r\n");
    assert!(text.starts_with("HTTP/1.1 503 "), "{text}");
    for _ in 0..3 {
        let text = exchange(addr, "GET /more HTTP/1.0\r\n\r\n");
        assert!(text.ends_with("/more"), "{text}");
    }
    // Both streams still flow.
    for s in &mut streams {
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf).unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).contains("data: "));
    }
}

/// Events of 256 KiB, counted; says when its stream is dropped.
struct Big {
    made: Arc<std::sync::atomic::AtomicUsize>,
    dropped: std::sync::mpsc::Sender<()>,
}

impl EventSource for Big {
    fn next_event(&mut self) -> Option<Vec<u8>> {
        self.made.fetch_add(1, Ordering::Relaxed);
        Some(vec![b'x'; 256 << 10])
    }
}

impl Drop for Big {
    fn drop(&mut self) {
        let _ = self.dropped.send(());
    }
}

#[test]
fn a_stream_nobody_reads_holds_one_event_and_ends_at_the_write_timeout() {
    let made = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (dropped, gone) = std::sync::mpsc::channel();
    let listener = Listener::bind("127.0.0.1:0".parse().unwrap()).expect("binds");
    let addr = listener.local_addr();
    let limits = Limits {
        // A thousand ticks a second, so that a backlog would show.
        tick: Duration::from_millis(1),
        write_timeout: Duration::from_secs(1),
        ..Limits::default()
    };
    let source = (Arc::clone(&made), dropped);
    let handler = move |_: &Request| Reply::Stream {
        head: Response::new(200, "application/octet-stream", ""),
        events: Box::new(Big {
            made: Arc::clone(&source.0),
            dropped: source.1.clone(),
        }),
    };
    let _thread = listener
        .spawn("test-http", limits, handler, || false)
        .expect("spawns");
    let mut s = connect(addr);
    s.write_all(b"GET /big HTTP/1.1\r\n\r\n").unwrap();
    // Never read: the server gives up on the stream by its write timeout.
    gone.recv_timeout(Duration::from_secs(60))
        .expect("the stream is dropped");
    // Events were made only while the socket's buffers took them: at most
    // what loopback buffers hold (a few MiB), not one per tick.
    let n = made.load(Ordering::Relaxed);
    eprintln!("{n} events made");
    assert!((1..=64).contains(&n), "{n} events of 256 KiB made");
}
