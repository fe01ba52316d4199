//! The live web dashboard (`Builder::dashboard`): one page served by the
//! client process, updated by server-sent events, and `/api/status` as JSON.
//!
//! | path | what |
//! | --- | --- |
//! | `/` , `/dashboard.js`, `/dashboard.css` | the page; every asset is compiled in |
//! | `/events` | server-sent events: the facts every [`TICK`], new tasks only after the first |
//! | `/api/status` | the same facts as one JSON object, with every task in the ring |
//!
//! HTTP is [`ppcore::http`]: one thread serves every connection and event
//! stream, with its bounds (256 connections, the longest idle evicted first;
//! 8 KiB heads; 10 s to send a request, 10 s of write progress) and at most
//! [`MAX_STREAMS`] event streams (more get 503). Requests whose `Host` is not
//! this server's address or `localhost` are refused (no DNS rebinding).
//! The recorder ([`Recorder`], in `jobs::recorder`, below the job runners
//! and links that feed it) is fed by one-line hooks where jobs end.

mod status;

use crate::cluster::state::Core;
use crate::jobs::recorder::{Cursor, Recorder, TASK_RING};
use ppcore::http::{self, EventSource, Reply, Request, Response};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

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
    listener: http::Listener,
}

/// Binds the dashboard at `addr`.
pub(crate) fn bind(addr: &str) -> std::io::Result<Bound> {
    let addr = resolve(addr)?;
    let listener = http::Listener::bind(addr)
        .map_err(|e| std::io::Error::new(e.kind(), format!("dashboard on {addr}: {e}")))?;
    Ok(Bound { listener })
}

impl Bound {
    /// Hooks a recorder into `core` and serves until the server stops.
    pub(crate) fn start(self, core: &Arc<Core>) -> std::io::Result<SocketAddr> {
        let bound = self.listener.local_addr();
        let recorder = Arc::new(Recorder::default());
        let _ = recorder.addr.set(bound);
        let _ = core.ctx.dash.set(Arc::clone(&recorder));
        let limits = http::Limits {
            max_streams: MAX_STREAMS,
            tick: TICK,
            ..http::Limits::default()
        };
        let (c, stop) = (Arc::clone(core), Arc::clone(core));
        let handler = move |request: &http::Request| route(request, &c, &recorder, bound);
        self.listener
            .spawn("pp-dashboard", limits, handler, move || stop.stopped())?;
        tracing::info!("dashboard on http://{bound}/");
        Ok(bound)
    }
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

/// A response with the page's locked-down headers.
fn respond(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Reply {
    let mut r = Response::new(status, content_type, body);
    for (k, v) in [
        ("Cache-Control", "no-store"),
        ("X-Content-Type-Options", "nosniff"),
        ("X-Frame-Options", "DENY"),
        ("Referrer-Policy", "no-referrer"),
        ("Content-Security-Policy", CSP),
    ] {
        r = r.with_header(k, v);
    }
    Reply::Full(r)
}

fn route(request: &Request, core: &Arc<Core>, rec: &Arc<Recorder>, bound: SocketAddr) -> Reply {
    const TEXT: &str = "text/plain; charset=utf-8";
    if !host_allowed(request.header("Host"), bound) {
        return respond(
            421,
            TEXT,
            "this dashboard answers only to its own address or localhost\n",
        );
    }
    if !request.is_get_or_head() {
        return respond(405, TEXT, "method not allowed\n");
    }
    match request.path.as_str() {
        "/" | "/index.html" => respond(200, "text/html; charset=utf-8", INDEX),
        "/dashboard.js" => respond(200, "text/javascript; charset=utf-8", SCRIPT),
        "/dashboard.css" => respond(200, "text/css; charset=utf-8", STYLE),
        "/api/status" => {
            let s = status::status(core, rec, &mut Cursor::default(), TASK_RING, true);
            match serde_json::to_vec(&s) {
                Ok(body) => respond(200, "application/json", body),
                Err(e) => respond(500, TEXT, format!("{e}\n")),
            }
        }
        "/events" => Reply::Stream {
            head: Response::new(200, "text/event-stream", "retry: 1000\n\n")
                .with_header("Cache-Control", "no-store")
                .with_header("X-Content-Type-Options", "nosniff"),
            events: Box::new(Events {
                core: Arc::clone(core),
                rec: Arc::clone(rec),
                cursor: Cursor::default(),
                full: true,
            }),
        },
        _ => respond(404, TEXT, "not found\n"),
    }
}

/// One open event stream: the facts every [`TICK`], everything in the
/// first event and only new tasks after it. The server asks for the next
/// event only once the last one is sent, so a page that stops reading holds
/// one event, and the cursor catches it up (at most
/// [`MAX_TASKS_PER_EVENT`] tasks) when it reads again.
struct Events {
    core: Arc<Core>,
    rec: Arc<Recorder>,
    cursor: Cursor,
    full: bool,
}

impl EventSource for Events {
    fn next_event(&mut self) -> Option<Vec<u8>> {
        if self.core.stopped() {
            return None;
        }
        let full = std::mem::take(&mut self.full);
        let s = status::status(
            &self.core,
            &self.rec,
            &mut self.cursor,
            MAX_TASKS_PER_EVENT,
            full,
        );
        let json = serde_json::to_string(&s).ok()?;
        // JSON has no raw newlines, so one `data:` line carries it.
        Some(format!("data: {json}\n\n").into_bytes())
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
