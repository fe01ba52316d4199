//! Finding nodes: UDP discovery probes, and nodes that join a listening client.
//!
//! Anyone on the network can answer a probe or dial a listening client, so
//! both are hints, never trusted: the session's handshake decides. What
//! strangers could still do is make us hold links and threads, so
//! discovered links are capped ([`MAX_DISCOVERED`]) and dropped after
//! [`DROP_AFTER`] failed attempts in a row; a listening client caps the
//! nodes joining at once ([`MAX_JOINS`]), gives each an overall handshake
//! deadline and a 4 KiB frame cap until it has authenticated, and names a
//! joined node by its claimed id *and* its address, never taking over a
//! live link. The bookkeeping ([`Discovered`], [`ProbeClock`], and the
//! join table [`Joins`](crate::cluster::joins::Joins)) is pure and tested
//! without sockets.

use crate::cluster::joins::{Join, Joins};
use crate::cluster::node::{NodeRecord, NodeState};
use crate::cluster::state::Core;
use crate::link::driver::{drive_with, link_config, Target};
use ppcore::escape;
use ppcore::sync::lock;
use ppcore::wire::{parse_discovery_reply, DISCOVERY_PROBE};
use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often discovery probes again for new nodes.
const PROBE_EVERY: Duration = Duration::from_secs(5);
/// How long one probe collects answers.
const LISTEN_FOR: Duration = Duration::from_millis(300);
/// Most discovered links at once.
pub(crate) const MAX_DISCOVERED: usize = 64;
/// Failed connection attempts in a row after which a discovered node is dropped.
pub(crate) const DROP_AFTER: u32 = 3;
/// Most joining nodes at once (authenticating or served).
pub(crate) const MAX_JOINS: usize = 64;
/// Time a joining node has for the whole handshake.
pub(crate) const JOIN_DEADLINE: Duration = Duration::from_secs(5);

/// Whether `ip` matches a pp-style pattern: `*`, or dotted parts each `*` or exact.
pub(crate) fn matches(pattern: &str, ip: IpAddr) -> bool {
    if pattern == "*" {
        return true;
    }
    let ip = ip.to_string();
    let (pat, parts): (Vec<_>, Vec<_>) = (pattern.split('.').collect(), ip.split('.').collect());
    pat.len() == parts.len() && pat.iter().zip(&parts).all(|(p, s)| *p == "*" || p == s)
}

/// Which discovered nodes have a live link: at most `cap`, each once.
#[derive(Debug)]
pub(crate) struct Discovered {
    cap: usize,
    live: HashSet<String>,
    ever: HashSet<String>,
}

impl Discovered {
    pub(crate) fn new(cap: usize) -> Self {
        Discovered {
            cap,
            live: HashSet::new(),
            ever: HashSet::new(),
        }
    }

    /// An answer named `name`: whether to start a link to it now. Besides
    /// the live cap, at most 4 × cap distinct names are ever linked (their
    /// records stay in the server's node list); answers from more are ignored.
    pub(crate) fn admit(&mut self, name: &str) -> bool {
        if self.live.contains(name) || self.live.len() >= self.cap {
            return false;
        }
        if !self.ever.contains(name) && self.ever.len() >= 4 * self.cap {
            return false;
        }
        self.ever.insert(name.to_owned());
        self.live.insert(name.to_owned())
    }

    /// The link to `name` was dropped: its slot is free, and a later answer
    /// may start it again.
    pub(crate) fn dropped(&mut self, name: &str) {
        self.live.remove(name);
    }

    #[cfg(test)]
    pub(crate) fn live(&self) -> usize {
        self.live.len()
    }
}

/// Discovery's shared table, for the probing thread and the links it starts.
#[derive(Clone)]
pub(crate) struct Found(Arc<Mutex<Discovered>>);

impl Found {
    pub(crate) fn new() -> Self {
        Found(Arc::new(Mutex::new(Discovered::new(MAX_DISCOVERED))))
    }
}

/// When the next probe is due: a fixed period from the last one, whatever
/// else wakes the probing thread (node news, first contacts).
#[derive(Debug)]
pub(crate) struct ProbeClock {
    next: Instant,
    every: Duration,
}

impl ProbeClock {
    pub(crate) fn new(now: Instant, every: Duration) -> Self {
        ProbeClock {
            next: now + every,
            every,
        }
    }

    /// `None`: probe now (and the next one is a period later);
    /// `Some(d)`: sleep `d` more.
    pub(crate) fn poll(&mut self, now: Instant) -> Option<Duration> {
        let left = self.next.saturating_duration_since(now);
        if !left.is_zero() {
            return Some(left);
        }
        self.next = now + self.every;
        None
    }
}

/// Probes `target` (a broadcast address) every few seconds, and connects to
/// every node that answers from an address matching `pattern`.
pub(crate) fn discover(core: &Arc<Core>, pattern: &str, target: SocketAddr, found: &Found) {
    let mut clock = ProbeClock::new(Instant::now(), PROBE_EVERY);
    loop {
        match clock.poll(Instant::now()) {
            Some(left) => {
                if core.sleep(left) {
                    return;
                }
            }
            None => {
                if let Err(e) = probe(core, pattern, target, found) {
                    tracing::debug!(%target, "discovery probe failed: {e}");
                }
            }
        }
    }
}

/// One probe: send, collect answers for a moment, start links to new nodes.
pub(crate) fn probe(
    core: &Arc<Core>,
    pattern: &str,
    target: SocketAddr,
    found: &Found,
) -> std::io::Result<()> {
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
        start_discovered(core, name, found);
    }
}

/// Starts a link to a discovered node, unless it has one (named or
/// discovered) or the table is full.
fn start_discovered(core: &Arc<Core>, name: String, found: &Found) {
    let existing = core.link(&name);
    if existing
        .as_ref()
        .is_some_and(|l| !matches!(l.state(), NodeState::Failed { .. }))
    {
        return;
    }
    if !lock(&found.0).admit(&name) {
        return;
    }
    tracing::info!(node = %name, "discovered");
    let link = existing.unwrap_or_else(|| {
        let link = NodeRecord::new(name);
        core.add_link(Arc::clone(&link));
        link
    });
    link.set_state(NodeState::Connecting);
    core.contacted();
    let (core, found) = (Arc::clone(core), found.clone());
    let spawned = Arc::clone(&core).spawn("pp-discovered", move || {
        run_discovered(&core, &link);
        lock(&found.0).dropped(&link.name);
    });
    if let Err(e) = spawned {
        tracing::warn!("cannot start a link thread: {e}");
    }
}

/// Serves a discovered node until the server stops, the node refuses us, or
/// [`DROP_AFTER`] connections in a row fail; then it stays marked failed,
/// with why (the link says it).
fn run_discovered(core: &Arc<Core>, link: &Arc<NodeRecord>) {
    let Some(mut config) = link_config(core, true) else {
        return;
    };
    config.give_up_after = Some(DROP_AFTER);
    drive_with(core, Target::Named(Arc::clone(link)), None, config);
    if let NodeState::Failed { reason } = link.state() {
        tracing::info!(node = %link.name, "dropping discovered node: {}", escape(&reason.to_string()));
    }
}

/// Accepts nodes that join (`ppserver --join`), until the server stops: at
/// most [`MAX_JOINS`] at once, each with the link's handshake deadline (at
/// most [`JOIN_DEADLINE`]) and 4 KiB frames until it has authenticated.
pub(crate) fn accept_joins(core: &Arc<Core>, listener: &TcpListener) {
    let _ = listener.set_nonblocking(true);
    let table = Arc::new(Mutex::new(Joins::new(MAX_JOINS)));
    while !core.stopped() {
        match listener.accept() {
            Ok((stream, peer)) => admit_join(core, &table, stream, peer),
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

fn admit_join(core: &Arc<Core>, table: &Arc<Mutex<Joins>>, stream: TcpStream, peer: SocketAddr) {
    let _ = stream.set_nonblocking(false);
    let Some(id) = lock(table).admit() else {
        tracing::warn!(%peer, "too many joining nodes: refused");
        return;
    };
    let join = Join::new(peer, id, Arc::clone(table));
    let Some(mut config) = link_config(core, false) else {
        return;
    };
    config.handshake_timeout = config.handshake_timeout.min(JOIN_DEADLINE);
    let core = Arc::clone(core);
    let spawned = Arc::clone(&core).spawn("pp-joined", move || {
        drive_with(&core, Target::Joined(Arc::new(join)), Some(stream), config)
    });
    if let Err(e) = spawned {
        tracing::warn!("cannot start a thread for a joining node: {e}");
    }
}

#[cfg(test)]
mod tests;
