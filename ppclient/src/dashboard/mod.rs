//! The live web dashboard (`Builder::dashboard`): one page served by the
//! client process, updated by server-sent events, and `/api/status` as JSON.
//!
//! | path | what |
//! | --- | --- |
//! | `/` , `/dashboard.js`, `/dashboard.css` | the page; every asset is compiled in |
//! | `/events` | server-sent events: the facts every [`TICK`], new tasks only after the first |
//! | `/api/status` | the same facts as one JSON object, with every task in the ring |
//!
//! HTTP is `tiny_http` (blocking, threads: one serving thread, plus one per
//! open event stream, at most [`MAX_STREAMS`]). Requests whose `Host` is not
//! this server's address or `localhost` are refused (no DNS rebinding).
//! The recorder ([`Recorder`]) is fed by one-line hooks where jobs end.

mod recorder;
mod status;

pub(crate) use recorder::{LinkMeter, Recorder};

use crate::core::Core;
use recorder::{Cursor, TASK_RING};
use std::io::Write;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tiny_http::{Header, Method, Request, Response};

/// How often an event stream sends the news (the page is at most this much behind).
pub(crate) const TICK: Duration = Duration::from_millis(500);
/// Event streams open at once; more are refused (503).
const MAX_STREAMS: usize = 16;
/// The most tasks one event carries.
const MAX_TASKS_PER_EVENT: usize = 2_000;

const INDEX: &str = include_str!("assets/index.html");
const SCRIPT: &str = include_str!("assets/dashboard.js");
const STYLE: &str = include_str!("assets/dashboard.css");

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Where the dashboard listens: `HOST:PORT`, or a bare port on 127.0.0.1.
pub(crate) fn resolve(addr: &str) -> std::io::Result<SocketAddr> {
    if let Ok(port) = addr.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    addr.to_socket_addrs()?.next().ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("dashboard address {addr:?} names no address"),
        )
    })
}

/// A dashboard bound to its address, not serving yet.
pub(crate) struct Bound {
    server: tiny_http::Server,
    bound: SocketAddr,
}

/// Binds the dashboard at `addr`.
pub(crate) fn bind(addr: &str) -> std::io::Result<Bound> {
    let addr = resolve(addr)?;
    let server = tiny_http::Server::http(addr)
        .map_err(|e| std::io::Error::other(format!("dashboard on {addr}: {e}")))?;
    let bound = server
        .server_addr()
        .to_ip()
        .ok_or_else(|| std::io::Error::other("dashboard: not an IP address"))?;
    Ok(Bound { server, bound })
}

impl Bound {
    /// Hooks a recorder into `core` and serves until the server stops.
    pub(crate) fn start(self, core: &Arc<Core>) -> std::io::Result<SocketAddr> {
        let Bound { server, bound } = self;
        start(server, bound, core)
    }
}

fn start(
    server: tiny_http::Server,
    bound: SocketAddr,
    core: &Arc<Core>,
) -> std::io::Result<SocketAddr> {
    let recorder = Arc::new(Recorder::default());
    let _ = recorder.addr.set(bound);
    let _ = core.ctx.dash.set(Arc::clone(&recorder));
    let core = Arc::clone(core);
    let streams = Arc::new(AtomicUsize::new(0));
    std::thread::Builder::new()
        .name("pp-dashboard".into())
        .spawn(move || {
            while !core.stopped() {
                match server.recv_timeout(Duration::from_millis(200)) {
                    Ok(Some(request)) => route(request, &core, &recorder, bound, &streams),
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!("dashboard: {e}");
                        std::thread::sleep(Duration::from_millis(10));
                    }
                }
            }
        })?;
    tracing::info!("dashboard on http://{bound}/");
    Ok(bound)
}

/// Whether a request with this `Host` header may be answered by a server
/// bound at `bound`: `localhost` or an IP address this server answers on,
/// with its port. Other names are refused, so that a page from elsewhere
/// cannot read the dashboard by pointing its own name at us (DNS rebinding).
pub(crate) fn host_allowed(host: Option<&str>, bound: SocketAddr) -> bool {
    let Some(host) = host.map(str::trim) else {
        return false;
    };
    let (name, port) = match host.rsplit_once(':') {
        Some((n, p)) if !p.contains(']') => match p.parse::<u16>() {
            Ok(port) => (n, port),
            Err(_) => return false,
        },
        _ => (host, 80),
    };
    if port != bound.port() {
        return false;
    }
    let name = name.trim_start_matches('[').trim_end_matches(']');
    if name.eq_ignore_ascii_case("localhost") {
        return bound.ip().is_loopback() || bound.ip().is_unspecified();
    }
    match name.parse::<IpAddr>() {
        Ok(ip) if bound.ip().is_unspecified() => {
            ip.is_ipv4() == bound.is_ipv4() || ip.is_loopback()
        }
        Ok(ip) if bound.ip().is_loopback() => ip.is_loopback(),
        Ok(ip) => ip == bound.ip(),
        Err(_) => false,
    }
}

fn header(name: &str, value: &str) -> Option<Header> {
    Header::from_bytes(name.as_bytes(), value.as_bytes()).ok()
}

fn respond(request: Request, status: u16, content_type: &str, body: impl Into<Vec<u8>>) {
    let mut r = Response::from_data(body.into()).with_status_code(status);
    for (k, v) in [
        ("Content-Type", content_type),
        ("Cache-Control", "no-store"),
        ("X-Content-Type-Options", "nosniff"),
        ("X-Frame-Options", "DENY"),
        ("Referrer-Policy", "no-referrer"),
        ("Content-Security-Policy", CSP),
    ] {
        if let Some(h) = header(k, v) {
            r.add_header(h);
        }
    }
    if let Err(e) = request.respond(r) {
        tracing::debug!("dashboard: cannot answer: {e}");
    }
}

fn route(
    request: Request,
    core: &Arc<Core>,
    rec: &Arc<Recorder>,
    bound: SocketAddr,
    streams: &Arc<AtomicUsize>,
) {
    let host = request
        .headers()
        .iter()
        .find(|h| h.field.equiv("Host"))
        .map(|h| h.value.as_str().to_owned());
    const TEXT: &str = "text/plain; charset=utf-8";
    if !host_allowed(host.as_deref(), bound) {
        return respond(
            request,
            421,
            TEXT,
            "this dashboard answers only to its own address or localhost\n",
        );
    }
    if !matches!(request.method(), Method::Get | Method::Head) {
        return respond(request, 405, TEXT, "method not allowed\n");
    }
    let path = request.url().split('?').next().unwrap_or("").to_owned();
    match path.as_str() {
        "/" | "/index.html" => respond(request, 200, "text/html; charset=utf-8", INDEX),
        "/dashboard.js" => respond(request, 200, "text/javascript; charset=utf-8", SCRIPT),
        "/dashboard.css" => respond(request, 200, "text/css; charset=utf-8", STYLE),
        "/api/status" => {
            let s = status::status(core, rec, &mut Cursor::default(), TASK_RING, true);
            match serde_json::to_vec(&s) {
                Ok(body) => respond(request, 200, "application/json", body),
                Err(e) => respond(request, 500, TEXT, format!("{e}\n")),
            }
        }
        "/events" => open_stream(request, core, rec, streams),
        _ => respond(request, 404, TEXT, "not found\n"),
    }
}

/// Starts an event stream on a thread of its own, if there is room.
fn open_stream(
    request: Request,
    core: &Arc<Core>,
    rec: &Arc<Recorder>,
    streams: &Arc<AtomicUsize>,
) {
    if streams.fetch_add(1, Ordering::AcqRel) >= MAX_STREAMS {
        streams.fetch_sub(1, Ordering::AcqRel);
        return respond(
            request,
            503,
            "text/plain; charset=utf-8",
            "too many open dashboards\n",
        );
    }
    let (core, rec, count) = (Arc::clone(core), Arc::clone(rec), Arc::clone(streams));
    let spawned = std::thread::Builder::new()
        .name("pp-dashboard-events".into())
        .spawn(move || {
            stream(request.into_writer(), &core, &rec);
            count.fetch_sub(1, Ordering::AcqRel);
        });
    if spawned.is_err() {
        streams.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Writes the event stream until the client goes or the server stops.
///
/// `tiny_http` would buffer a streamed body in 8 KiB chunks; the stream
/// therefore takes the connection and writes the head itself, then one
/// flushed event per tick, the body ending when the connection closes.
fn stream(mut w: Box<dyn Write + Send>, core: &Core, rec: &Recorder) {
    let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\nretry: 1000\n\n";
    if w.write_all(head.as_bytes())
        .and_then(|()| w.flush())
        .is_err()
    {
        return;
    }
    let mut cursor = Cursor::default();
    let mut full = true;
    while !core.stopped() {
        let s = status::status(core, rec, &mut cursor, MAX_TASKS_PER_EVENT, full);
        full = false;
        let Ok(json) = serde_json::to_string(&s) else {
            return;
        };
        // JSON has no raw newlines, so one `data:` line carries it.
        let sent = write!(w, "data: {json}\n\n").and_then(|()| w.flush());
        if sent.is_err() || core.sleep(TICK) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_header_must_name_this_server() {
        let lo: SocketAddr = "127.0.0.1:8787".parse().unwrap();
        assert!(host_allowed(Some("127.0.0.1:8787"), lo));
        assert!(host_allowed(Some("localhost:8787"), lo));
        assert!(host_allowed(Some("LOCALHOST:8787"), lo));
        assert!(!host_allowed(Some("evil.example:8787"), lo), "rebinding");
        assert!(!host_allowed(Some("127.0.0.1:80"), lo), "other port");
        assert!(!host_allowed(Some("127.0.0.1"), lo), "port 80 implied");
        assert!(!host_allowed(None, lo));
        assert!(!host_allowed(Some("127.0.0.1:x"), lo));
        let v6: SocketAddr = "[::1]:8787".parse().unwrap();
        assert!(host_allowed(Some("[::1]:8787"), v6));
        assert!(host_allowed(Some("localhost:8787"), v6));
        let lan: SocketAddr = "10.0.0.5:8787".parse().unwrap();
        assert!(host_allowed(Some("10.0.0.5:8787"), lan));
        assert!(!host_allowed(Some("10.0.0.6:8787"), lan));
        assert!(!host_allowed(Some("localhost:8787"), lan));
        let any: SocketAddr = "0.0.0.0:8787".parse().unwrap();
        assert!(host_allowed(Some("192.168.1.9:8787"), any));
        assert!(host_allowed(Some("localhost:8787"), any));
        assert!(!host_allowed(Some("pp.example.com:8787"), any));
    }

    #[test]
    fn a_bare_port_means_loopback() {
        assert_eq!(resolve("8787").unwrap(), "127.0.0.1:8787".parse().unwrap());
        assert_eq!(resolve("0.0.0.0:1").unwrap(), "0.0.0.0:1".parse().unwrap());
        assert!(resolve("nonsense").is_err());
    }

    #[test]
    fn assets_use_no_inline_script_nor_html_injection() {
        assert!(INDEX.contains("src=\"/dashboard.js\""));
        assert!(!INDEX.contains("onclick") && !INDEX.contains("<script>"));
        assert!(!SCRIPT.contains("innerHTML") && !SCRIPT.contains("insertAdjacentHTML"));
        assert!(
            !SCRIPT.contains("http://") && !SCRIPT.contains("https://"),
            "no outside assets"
        );
    }
}
