//! `ppserver --metrics`: `/metrics` after a known run, read with a
//! Prometheus text-format parser.

use clap::Parser;
use ppclient::Server;
use ppcore::Registry;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// A generated key, shared by the nodes and clients of this test process.
static SECRET: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| ppcore::Key::generate().expect("randomness").to_text());

/// One HTTP/1.1 GET on loopback: (status line, body).
fn get(addr: SocketAddr, path: &str) -> (String, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connects");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).expect("reads the answer");
    let (head, body) = text.split_once("\r\n\r\n").expect("a head and a body");
    let status = head.lines().next().unwrap_or_default().to_owned();
    (status, body.to_owned())
}

fn scrape(addr: SocketAddr) -> prometheus_parse::Scrape {
    let (status, body) = get(addr, "/metrics");
    assert!(status.contains(" 200 "), "{status}");
    prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_owned())))
        .unwrap_or_else(|e| panic!("not the text format: {e}\n{body}"))
}

fn value(s: &prometheus_parse::Scrape, name: &str, label: Option<(&str, &str)>) -> f64 {
    let sample = s
        .samples
        .iter()
        .find(|x| x.metric == name && label.is_none_or(|(k, v)| x.labels.get(k) == Some(v)))
        .unwrap_or_else(|| panic!("no {name} {label:?} in {:?}", s.samples));
    match sample.value {
        prometheus_parse::Value::Counter(v)
        | prometheus_parse::Value::Gauge(v)
        | prometheus_parse::Value::Untyped(v) => v,
        ref other => panic!("{name}: {other:?}"),
    }
}

#[test]
fn metrics_count_a_known_run() {
    let key_file = std::env::temp_dir().join(format!("pp-metrics-key-{}", std::process::id()));
    std::fs::write(&key_file, SECRET.as_str()).unwrap();
    let cli = ppserver::Cli::parse_from([
        "ppserver",
        "--interface",
        "127.0.0.1",
        "--port",
        "0",
        "--workers",
        "2",
        "--secret-file",
        key_file.to_str().unwrap(),
        "--metrics",
        "127.0.0.1:0",
    ]);
    let config = cli.config().expect("config");
    std::fs::remove_file(&key_file).unwrap();
    let node = ppserver::start(config, Registry::linked().expect("registry")).expect("starts");
    let metrics = node.metrics_addr().expect("metrics served");
    assert!(metrics.ip().is_loopback());

    let before = scrape(metrics);
    assert_eq!(value(&before, "ppserver_workers", None), 2.0);
    assert_eq!(
        value(
            &before,
            "ppserver_jobs_total",
            Some(("outcome", "succeeded"))
        ),
        0.0
    );

    // One client with the wrong key: one handshake failure.
    let wrong = Server::builder()
        .ncpus(0)
        .keys(ppcore::KeySet::one(
            ppcore::Key::generate().expect("randomness"),
        ))
        .nodes([node.local_addr().to_string()])
        .build()
        .expect("builds");
    drop(wrong);

    let server = Server::builder()
        .ncpus(0)
        .secret(&*SECRET)
        .nodes([node.local_addr().to_string()])
        .build()
        .expect("builds");
    let ok: Vec<u64> = server
        .map(jobs::echo_u64, (0..25).map(|i| (i,)))
        .collect::<Result<_, _>>()
        .expect("all succeed");
    assert_eq!(ok.len(), 25);
    let failed = server
        .map(jobs::fail, (0..3).map(|i| (format!("no {i}"),)))
        .filter(Result::is_err)
        .count();
    assert_eq!(failed, 3);

    // The refused client's connection ends, and a worker lets go of its
    // last job just after sending the result, on the node's own time: wait
    // (bounded) until the node has seen both.
    let settled = |s: &prometheus_parse::Scrape| {
        value(s, "ppserver_handshake_failures_total", None) >= 1.0
            && value(s, "ppserver_connections", None) == 1.0
            && value(s, "ppserver_jobs_running", None) == 0.0
            && value(s, "ppserver_jobs_queued", None) == 0.0
    };
    let mut s = scrape(metrics);
    let _settled = pptest::eventually(Duration::from_secs(10), || {
        s = scrape(metrics);
        settled(&s)
    });
    let jobs = "ppserver_jobs_total";
    assert_eq!(value(&s, jobs, Some(("outcome", "succeeded"))), 25.0);
    assert_eq!(value(&s, jobs, Some(("outcome", "failed"))), 3.0);
    assert_eq!(value(&s, jobs, Some(("outcome", "cancelled"))), 0.0);
    assert_eq!(value(&s, "ppserver_jobs_running", None), 0.0);
    assert_eq!(value(&s, "ppserver_jobs_queued", None), 0.0);
    assert_eq!(value(&s, "ppserver_connections", None), 1.0);
    assert_eq!(value(&s, "ppserver_handshake_failures_total", None), 1.0);
    let received = value(&s, "ppserver_received_bytes_total", None);
    let sent = value(&s, "ppserver_sent_bytes_total", None);
    // 28 jobs went in and 28 results came out, each more than a few bytes.
    assert!(received > 28.0 * 8.0, "received {received}");
    assert!(sent > 28.0 * 8.0, "sent {sent}");
    assert!(value(&s, "ppserver_uptime_seconds", None) > 0.0);

    let (status, _) = get(metrics, "/elsewhere");
    assert!(status.contains(" 404 "), "{status}");
    node.stop();
    node.wait();
}
