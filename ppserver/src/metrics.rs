//! `ppserver --metrics ADDR`: the node's counters at `GET /metrics` in the
//! Prometheus text format, for Prometheus to scrape.
//!
//! The counters live where the work happens (`node::meters`, and the job
//! counters of the node's status); a scrape reads them into a [`Sample`]
//! and [`encode`] turns that into text, with the `prometheus-client` crate
//! (the Prometheus project's own Rust client). The HTTP side is
//! [`ppcore::http`]: one thread for every connection, with its bounds (256
//! connections, the longest idle evicted first; 8 KiB heads; 10 s to send a
//! request, 10 s of write progress; no event streams). `/metrics` has no
//! key: bind it where only the scraper can reach it.

use crate::error::ServeError;
use crate::node::Node;
use ppcore::http;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// The content type of the OpenMetrics text that `prometheus-client` writes
/// (Prometheus reads it, and the classic text format, alike).
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A node's figures at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Sample {
    pub(crate) workers: u64,
    pub(crate) connections: u64,
    pub(crate) running: u64,
    pub(crate) queued: u64,
    pub(crate) succeeded: u64,
    pub(crate) failed: u64,
    pub(crate) cancelled: u64,
    pub(crate) handshake_failures: u64,
    pub(crate) bytes_in: u64,
    pub(crate) bytes_out: u64,
    pub(crate) memory_held: u64,
    pub(crate) memory_limit: u64,
    pub(crate) memory_refused: u64,
    pub(crate) kept_values: u64,
    pub(crate) kept_bytes: u64,
    pub(crate) jobs_waiting: u64,
    /// Kept values pulled from peers and their bytes; served to peers and theirs.
    pub(crate) transfers: [u64; 4],
    pub(crate) spilled_bytes: u64,
    pub(crate) spill_reads: u64,
    pub(crate) uptime_s: f64,
}

impl Sample {
    /// Reads `node`'s counters now.
    pub(crate) fn of(node: &Node) -> Self {
        let status = node.status();
        let meters = &node.meters;
        let running = meters.running.load(Ordering::Relaxed);
        Sample {
            workers: u64::from(status.workers),
            connections: u64::from(status.connections),
            running,
            queued: status.jobs_active.saturating_sub(running),
            succeeded: status.jobs_done.saturating_sub(status.jobs_failed),
            failed: status.jobs_failed,
            cancelled: status.jobs_cancelled,
            handshake_failures: meters.handshake_failures.load(Ordering::Relaxed),
            bytes_in: meters.bytes_in.load(Ordering::Relaxed),
            bytes_out: meters.bytes_out.load(Ordering::Relaxed),
            memory_held: node.memory.used(),
            memory_limit: node.memory.limit(),
            memory_refused: node.refused_memory.load(Ordering::Relaxed),
            kept_values: status.kept_values,
            kept_bytes: status.kept_bytes,
            jobs_waiting: status.jobs_waiting,
            transfers: [
                status.transfers_in,
                status.transfer_in_bytes,
                status.transfers_out,
                status.transfer_out_bytes,
            ],
            spilled_bytes: status.spilled_bytes,
            spill_reads: status.spill_reads,
            uptime_s: status.uptime_s,
        }
    }
}

fn counter(registry: &mut Registry, name: &str, help: &str, unit: Option<Unit>, value: u64) {
    let c = Counter::<u64>::default();
    c.inc_by(value);
    match unit {
        Some(unit) => registry.register_with_unit(name, help, unit, c),
        None => registry.register(name, help, c),
    }
}

fn gauge(registry: &mut Registry, name: &str, help: &str, value: u64) {
    let g = Gauge::<i64>::default();
    g.set(i64::try_from(value).unwrap_or(i64::MAX));
    registry.register(name, help, g);
}

/// `sample` in the text format: names prefixed `ppserver_`, counters end in
/// `_total`, sizes in bytes and times in seconds.
pub(crate) fn encode(sample: &Sample) -> String {
    let mut r = Registry::with_prefix("ppserver");
    let jobs = Family::<Vec<(&'static str, &'static str)>, Counter<u64>>::default();
    for (outcome, n) in [
        ("succeeded", sample.succeeded),
        ("failed", sample.failed),
        ("cancelled", sample.cancelled),
    ] {
        jobs.get_or_create(&vec![("outcome", outcome)]).inc_by(n);
    }
    r.register(
        "jobs",
        "Jobs that ended on this node, by outcome (failed: returned an error or panicked; cancelled: by their client before they started)",
        jobs,
    );
    gauge(&mut r, "jobs_running", "Jobs running now", sample.running);
    gauge(
        &mut r,
        "jobs_queued",
        "Jobs received and waiting for a worker",
        sample.queued,
    );
    gauge(&mut r, "workers", "Worker slots", sample.workers);
    gauge(
        &mut r,
        "kept_values",
        "Kept results (and kept values clients sent) held now, on all connections",
        sample.kept_values,
    );
    gauge(
        &mut r,
        "kept_bytes",
        "Bytes of kept values held now (counted against --max-memory)",
        sample.kept_bytes,
    );
    gauge(
        &mut r,
        "jobs_waiting",
        "Jobs and fetches parked for a result another job of their client is making here",
        sample.jobs_waiting,
    );
    gauge(
        &mut r,
        "spilled_bytes",
        "Bytes of kept values spilled to disk now (their files; at most --spill-max)",
        sample.spilled_bytes,
    );
    counter(
        &mut r,
        "spill_reads",
        "Spilled kept values read back from disk for a job or a fetch",
        None,
        sample.spill_reads,
    );
    gauge(
        &mut r,
        "connections",
        "Connections open now (clients and strangers still in their handshake)",
        sample.connections,
    );
    let [pulls, pull_bytes, served, served_bytes] = sample.transfers;
    counter(
        &mut r,
        "transfers_in",
        "Kept values fetched from peer nodes (node-to-node transfers)",
        None,
        pulls,
    );
    counter(
        &mut r,
        "transfer_in",
        "Bytes of kept values fetched from peer nodes",
        Some(Unit::Bytes),
        pull_bytes,
    );
    counter(
        &mut r,
        "transfers_out",
        "Kept values peer nodes fetched from this node",
        None,
        served,
    );
    counter(
        &mut r,
        "transfer_out",
        "Bytes of kept values peer nodes fetched from this node",
        Some(Unit::Bytes),
        served_bytes,
    );
    counter(
        &mut r,
        "handshake_failures",
        "Connections closed before they authenticated (wrong secret, other version, garbage, too slow)",
        None,
        sample.handshake_failures,
    );
    counter(
        &mut r,
        "received",
        "Bytes read from clients",
        Some(Unit::Bytes),
        sample.bytes_in,
    );
    counter(
        &mut r,
        "sent",
        "Bytes written to clients",
        Some(Unit::Bytes),
        sample.bytes_out,
    );
    gauge(
        &mut r,
        "memory_held_bytes",
        "Bytes of queued job arguments and unwritten results held for clients (counted against --max-memory)",
        sample.memory_held,
    );
    gauge(
        &mut r,
        "memory_limit_bytes",
        "The --max-memory budget",
        sample.memory_limit,
    );
    counter(
        &mut r,
        "memory_refused_jobs",
        "Jobs handed back unrun because the node was over --max-memory",
        None,
        sample.memory_refused,
    );
    let uptime = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
    uptime.set(sample.uptime_s);
    r.register_with_unit(
        "uptime",
        "Time since the node started",
        Unit::Seconds,
        uptime,
    );
    let mut text = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut text, &r);
    text
}

/// Why the metrics server could not start.
fn bind_error(addr: SocketAddr, e: impl std::fmt::Display) -> ServeError {
    ServeError::Bind {
        addr,
        source: std::io::Error::other(format!("metrics: {e}")),
    }
}

/// Serves `/metrics` for `node` at `addr` on a thread of its own, until
/// `stopped` says so. Returns the address bound.
pub(crate) fn start(
    addr: SocketAddr,
    node: &Arc<Node>,
    stopped: impl Fn() -> bool + Send + 'static,
) -> Result<SocketAddr, ServeError> {
    let listener = http::Listener::bind(addr).map_err(|e| bind_error(addr, e))?;
    let bound = listener.local_addr();
    let _ = node.meters.addr.set(bound);
    let node = Arc::clone(node);
    // No event streams: a scrape is one answer.
    let limits = http::Limits {
        max_streams: 0,
        ..http::Limits::default()
    };
    let handler = move |request: &http::Request| answer(request, &node).into();
    listener.spawn("pp-metrics", limits, handler, stopped)?;
    tracing::info!("metrics on http://{bound}/metrics");
    Ok(bound)
}

fn answer(request: &http::Request, node: &Node) -> http::Response {
    match (request.is_get_or_head(), request.path.as_str()) {
        (true, "/metrics") => http::Response::new(200, CONTENT_TYPE, encode(&Sample::of(node))),
        (true, _) => http::Response::text(404, "not found: this node serves /metrics\n"),
        (false, _) => http::Response::text(405, "method not allowed\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> prometheus_parse::Scrape {
        let lines = text.lines().map(|l| Ok(l.to_owned()));
        match prometheus_parse::Scrape::parse(lines) {
            Ok(s) => s,
            Err(e) => panic!("not the text format: {e}\n{text}"),
        }
    }

    fn value(scrape: &prometheus_parse::Scrape, name: &str, label: Option<(&str, &str)>) -> f64 {
        let found = scrape
            .samples
            .iter()
            .find(|s| s.metric == name && label.is_none_or(|(k, v)| s.labels.get(k) == Some(v)));
        match found.map(|s| &s.value) {
            Some(prometheus_parse::Value::Counter(v))
            | Some(prometheus_parse::Value::Gauge(v))
            | Some(prometheus_parse::Value::Untyped(v)) => *v,
            other => panic!("{name} {label:?}: {other:?} in {:?}", scrape.samples),
        }
    }

    #[test]
    fn every_figure_is_in_the_text_under_its_conventional_name() {
        let sample = Sample {
            workers: 4,
            connections: 2,
            running: 3,
            queued: 5,
            succeeded: 10,
            failed: 2,
            cancelled: 1,
            handshake_failures: 7,
            bytes_in: 1234,
            bytes_out: 5678,
            memory_held: 4096,
            memory_limit: 1 << 30,
            memory_refused: 9,
            kept_values: 3,
            kept_bytes: 300,
            jobs_waiting: 2,
            transfers: [4, 400, 5, 500],
            spilled_bytes: 4000,
            spill_reads: 6,
            uptime_s: 1.5,
        };
        let text = encode(&sample);
        let s = parse(&text);
        let jobs = "ppserver_jobs_total";
        assert_eq!(value(&s, jobs, Some(("outcome", "succeeded"))), 10.0);
        assert_eq!(value(&s, jobs, Some(("outcome", "failed"))), 2.0);
        assert_eq!(value(&s, jobs, Some(("outcome", "cancelled"))), 1.0);
        assert_eq!(value(&s, "ppserver_jobs_running", None), 3.0);
        assert_eq!(value(&s, "ppserver_jobs_queued", None), 5.0);
        assert_eq!(value(&s, "ppserver_workers", None), 4.0);
        assert_eq!(value(&s, "ppserver_connections", None), 2.0);
        assert_eq!(value(&s, "ppserver_handshake_failures_total", None), 7.0);
        assert_eq!(value(&s, "ppserver_received_bytes_total", None), 1234.0);
        assert_eq!(value(&s, "ppserver_sent_bytes_total", None), 5678.0);
        assert_eq!(value(&s, "ppserver_uptime_seconds", None), 1.5);
        assert_eq!(value(&s, "ppserver_memory_held_bytes", None), 4096.0);
        assert_eq!(value(&s, "ppserver_memory_limit_bytes", None), 1073741824.0);
        assert_eq!(value(&s, "ppserver_memory_refused_jobs_total", None), 9.0);
        assert_eq!(value(&s, "ppserver_kept_values", None), 3.0);
        assert_eq!(value(&s, "ppserver_kept_bytes", None), 300.0);
        assert_eq!(value(&s, "ppserver_jobs_waiting", None), 2.0);
        assert_eq!(value(&s, "ppserver_transfers_in_total", None), 4.0);
        assert_eq!(value(&s, "ppserver_transfer_in_bytes_total", None), 400.0);
        assert_eq!(value(&s, "ppserver_transfers_out_total", None), 5.0);
        assert_eq!(value(&s, "ppserver_transfer_out_bytes_total", None), 500.0);
        assert_eq!(value(&s, "ppserver_spilled_bytes", None), 4000.0);
        assert_eq!(value(&s, "ppserver_spill_reads_total", None), 6.0);
        assert!(text.contains("# TYPE ppserver_jobs counter"), "{text}");
    }
}
