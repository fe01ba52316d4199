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
//! live link. The bookkeeping ([`Discovered`], [`ProbeClock`], [`Joins`])
//! is pure and tested without sockets.

use crate::connect::{dial, handshake, ConnectError};
use crate::core::Core;
use crate::remote::{lock, serve, Link, LinkSettings, NodeState};
use ppcore::escape;
use ppcore::wire::{parse_discovery_reply, NodeMsg, DISCOVERY_PROBE};
use std::collections::{HashMap, HashSet};
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
/// Largest frame a joining node may send before it has authenticated.
pub(crate) const PRE_AUTH_MAX_FRAME: usize = 4096;
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

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
        let link = Link::new(name);
        core.add_link(Arc::clone(&link));
        link
    });
    link.set_state(NodeState::Connecting);
    let (core, found) = (Arc::clone(core), found.clone());
    let spawned = std::thread::Builder::new()
        .name("pp-discovered".into())
        .spawn(move || {
            run_discovered(&core, &link);
            lock(&found.0).dropped(&link.name);
        });
    if let Err(e) = spawned {
        tracing::warn!("cannot start a link thread: {e}");
    }
}

/// Serves a discovered node until the server stops, the node refuses us, or
/// [`DROP_AFTER`] attempts in a row fail; then marks it failed, with why.
fn run_discovered(core: &Arc<Core>, link: &Arc<Link>) {
    let mut backoff = BACKOFF_MIN;
    let mut failures = 0;
    while !core.stopped() {
        let attempt = dial(&link.name, &core.settings)
            .and_then(|stream| handshake(&stream, &core.settings).map(|welcome| (stream, welcome)));
        match attempt {
            Ok((stream, welcome)) => {
                failures = 0;
                backoff = BACKOFF_MIN;
                serve(core, link, stream, welcome);
            }
            Err(e) => {
                failures += 1;
                // The state keeps the peer's words as they came (whoever
                // prints them escapes them); the log line escapes them here.
                let reason = e.reason;
                if e.last || failures >= DROP_AFTER {
                    tracing::info!(
                        node = %link.name,
                        "dropping discovered node after {failures} failed attempt(s): {}",
                        escape(&reason)
                    );
                    link.set_state(NodeState::Failed {
                        reason: format!(
                            "discovered node dropped after {failures} failed attempt(s): {reason}"
                        ),
                    });
                    core.contacted();
                    return;
                }
                link.set_state(NodeState::Down { reason });
                core.contacted();
            }
        }
        if core.sleep(backoff) {
            return;
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// Nodes joining a listening client: how many at once, each one's
/// handshake deadline, and the names being served. Pure.
#[derive(Debug)]
pub(crate) struct Joins {
    max: usize,
    deadline: Duration,
    next_id: u64,
    /// Joins in progress or served: id to handshake deadline (`None` once
    /// authenticated).
    open: HashMap<u64, Option<Instant>>,
    serving: HashSet<String>,
}

impl Joins {
    pub(crate) fn new(max: usize, deadline: Duration) -> Self {
        Joins {
            max,
            deadline,
            next_id: 0,
            open: HashMap::new(),
            serving: HashSet::new(),
        }
    }

    /// A new connection: its id, or `None` if too many are open.
    pub(crate) fn admit(&mut self, now: Instant) -> Option<u64> {
        if self.open.len() >= self.max {
            return None;
        }
        self.next_id += 1;
        self.open.insert(self.next_id, Some(now + self.deadline));
        Some(self.next_id)
    }

    /// Joins whose handshake ran past its deadline: to be cut off.
    pub(crate) fn expired(&self, now: Instant) -> Vec<u64> {
        let mut ids: Vec<_> = self
            .open
            .iter()
            .filter(|(_, d)| d.is_some_and(|d| now >= d))
            .map(|(&id, _)| id)
            .collect();
        ids.sort_unstable();
        ids
    }

    /// Join `id` authenticated as `name`: whether it may be served (no live
    /// join holds that name).
    pub(crate) fn authenticated(&mut self, id: u64, name: &str) -> bool {
        if !self.open.contains_key(&id) || !self.serving.insert(name.to_owned()) {
            return false;
        }
        self.open.insert(id, None);
        true
    }

    /// Join `id` ended (served, refused or cut off).
    pub(crate) fn closed(&mut self, id: u64, name: Option<&str>) {
        self.open.remove(&id);
        if let Some(name) = name {
            self.serving.remove(name);
        }
    }
}

/// The name of a joined node: its claimed id (escaped) and the address it
/// came from, so that nobody can take over another node's link by claiming
/// its id.
pub(crate) fn joined_name(node_id: &str, peer: SocketAddr) -> String {
    format!("{} ({})", escape(node_id), peer.ip())
}

type JoinTable = Arc<Mutex<(Joins, HashMap<u64, TcpStream>)>>;

/// Accepts nodes that join (`ppserver --join`), until the server stops.
pub(crate) fn accept_joins(core: &Arc<Core>, listener: &TcpListener) {
    let _ = listener.set_nonblocking(true);
    let table: JoinTable = Arc::new(Mutex::new((
        Joins::new(MAX_JOINS, JOIN_DEADLINE),
        HashMap::new(),
    )));
    while !core.stopped() {
        cut_off_late(&table);
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

/// Shuts the sockets of joins whose handshake is late: their threads end.
fn cut_off_late(table: &JoinTable) {
    let late: Vec<TcpStream> = {
        let mut t = lock(table);
        let ids = t.0.expired(Instant::now());
        ids.iter().filter_map(|id| t.1.remove(id)).collect()
    };
    for stream in late {
        let _ = stream.shutdown(std::net::Shutdown::Both);
    }
}

fn admit_join(core: &Arc<Core>, table: &JoinTable, stream: TcpStream, peer: SocketAddr) {
    let _ = stream.set_nonblocking(false);
    let Ok(watch) = stream.try_clone() else {
        return;
    };
    let id = {
        let mut t = lock(table);
        let Some(id) = t.0.admit(Instant::now()) else {
            tracing::warn!(%peer, "too many joining nodes: refused");
            return;
        };
        t.1.insert(id, watch);
        id
    };
    let (core, shared) = (Arc::clone(core), Arc::clone(table));
    let spawned = std::thread::Builder::new()
        .name("pp-joined".into())
        .spawn(move || {
            let name = joined(&core, &shared, id, stream, peer);
            let mut t = lock(&shared);
            t.0.closed(id, name.as_deref());
            t.1.remove(&id);
        });
    if let Err(e) = spawned {
        tracing::warn!("cannot start a thread for a joining node: {e}");
        let mut t = lock(table);
        t.0.closed(id, None);
        t.1.remove(&id);
    }
}

/// Authenticates a joining node under the pre-auth limits and serves it;
/// returns the name it was served under.
fn joined(
    core: &Arc<Core>,
    table: &JoinTable,
    id: u64,
    stream: TcpStream,
    peer: SocketAddr,
) -> Option<String> {
    let settings = LinkSettings {
        max_frame: PRE_AUTH_MAX_FRAME,
        ..core.settings.clone()
    };
    let welcome = match handshake(&stream, &settings) {
        Ok(welcome) => welcome,
        Err(ConnectError { reason, .. }) => {
            tracing::warn!(%peer, "joining node refused: {}", escape(&reason));
            return None;
        }
    };
    let NodeMsg::Welcome { node_id, .. } = &welcome else {
        return None;
    };
    let name = joined_name(node_id, peer);
    {
        let mut t = lock(table);
        if !t.0.authenticated(id, &name) {
            tracing::warn!(%peer, node = %name, "a node of that name is already joined: refused");
            return None;
        }
        t.1.remove(&id);
    }
    let link = core.link(&name).unwrap_or_else(|| {
        let link = Link::new(name.clone());
        core.add_link(Arc::clone(&link));
        link
    });
    serve(core, &link, stream, welcome);
    Some(name)
}

#[cfg(test)]
#[path = "discovery_tests.rs"]
mod tests;
