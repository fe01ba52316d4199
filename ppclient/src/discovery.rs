//! Finding nodes: UDP discovery probes, and nodes that join a listening client.

use crate::core::Core;
use ppcore::wire::{parse_discovery_reply, DISCOVERY_PROBE};
use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often discovery probes again for new nodes.
const PROBE_EVERY: Duration = Duration::from_secs(5);
/// How long one probe collects answers.
const LISTEN_FOR: Duration = Duration::from_millis(300);

/// Whether `ip` matches a pp-style pattern: `*`, or dotted parts each `*` or exact.
pub(crate) fn matches(pattern: &str, ip: IpAddr) -> bool {
    if pattern == "*" {
        return true;
    }
    let ip = ip.to_string();
    let (pat, parts): (Vec<_>, Vec<_>) = (pattern.split('.').collect(), ip.split('.').collect());
    pat.len() == parts.len() && pat.iter().zip(&parts).all(|(p, s)| *p == "*" || p == s)
}

/// Probes `target` (a broadcast address) now and every few seconds, and
/// connects to every node that answers from an address matching `pattern`.
pub(crate) fn discover(core: &Arc<Core>, pattern: &str, target: SocketAddr) {
    loop {
        if let Err(e) = probe(core, pattern, target) {
            tracing::debug!(%target, "discovery probe failed: {e}");
        }
        if core.sleep(PROBE_EVERY) {
            return;
        }
    }
}

/// One probe: send, collect answers for a moment, start links to new nodes.
pub(crate) fn probe(core: &Arc<Core>, pattern: &str, target: SocketAddr) -> std::io::Result<()> {
    let socket = UdpSocket::bind(match target {
        SocketAddr::V4(_) => SocketAddr::from(([0, 0, 0, 0], 0)),
        SocketAddr::V6(_) => SocketAddr::from(([0u16; 8], 0)),
    })?;
    socket.set_broadcast(true)?;
    socket.send_to(DISCOVERY_PROBE, target)?;
    let until = Instant::now() + LISTEN_FOR;
    let mut buf = [0u8; 64];
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        socket.set_read_timeout(Some(left))?;
        let Ok((n, from)) = socket.recv_from(&mut buf) else {
            return Ok(());
        };
        let Some(port) = parse_discovery_reply(&buf[..n]) else {
            continue;
        };
        if !matches(pattern, from.ip()) {
            continue;
        }
        let name = SocketAddr::new(from.ip(), port).to_string();
        if core.link(&name).is_none() {
            tracing::info!(node = %name, "discovered");
            crate::remote::start_static(core, name);
        }
    }
}

/// Accepts nodes that join (`ppserver --join`), until the server stops.
pub(crate) fn accept_joins(core: &Arc<Core>, listener: &TcpListener) {
    let _ = listener.set_nonblocking(true);
    while !core.stopped() {
        match listener.accept() {
            Ok((stream, peer)) => {
                let _ = stream.set_nonblocking(false);
                let core = Arc::clone(core);
                let spawned = std::thread::Builder::new()
                    .name("pp-joined".into())
                    .spawn(move || joined(&core, stream, peer));
                if let Err(e) = spawned {
                    tracing::warn!("cannot start a thread for a joining node: {e}");
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                core.sleep(Duration::from_millis(20));
            }
            Err(e) => {
                tracing::warn!("accept failed: {e}");
                core.sleep(Duration::from_millis(20));
            }
        }
    }
}

fn joined(core: &Arc<Core>, stream: std::net::TcpStream, peer: SocketAddr) {
    crate::session::drive(core, crate::session::Target::Joined(peer), Some(stream));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_like_pp() {
        let ip: IpAddr = "192.168.1.7".parse().unwrap();
        assert!(matches("*", ip));
        assert!(matches("192.168.1.*", ip));
        assert!(matches("192.*.1.7", ip));
        assert!(!matches("192.168.2.*", ip));
        assert!(!matches("192.168.*", ip));
    }
}
