//! Reaching a node: resolve, connect, authenticate; and a one-off status query.

use crate::cluster::node::LinkSettings;
use ppcore::link::HANDSHAKE_MAX_FRAME;
use ppcore::secure::ClientHandshake;
use ppcore::wire::{ClientMsg, NodeMsg, DEFAULT_PORT};
use ppcore::{escape, FrameError, Framer, Key, KeySet, SecureError};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Why a connection attempt failed.
pub(crate) struct ConnectError {
    pub(crate) reason: String,
    pub(crate) kind: StatusErrorKind,
}

impl ConnectError {
    fn retry(reason: impl Into<String>) -> Self {
        ConnectError {
            reason: reason.into(),
            kind: StatusErrorKind::Broken,
        }
    }

    fn kind(self, kind: StatusErrorKind) -> Self {
        ConnectError { kind, ..self }
    }
}

/// `host` or `host:port` to a socket address; the default port if none.
pub(crate) fn with_port(addr: &str) -> String {
    if addr.parse::<SocketAddr>().is_ok()
        || addr
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        addr.to_owned()
    } else {
        format!("{addr}:{DEFAULT_PORT}")
    }
}

pub(crate) fn dial(name: &str, settings: &LinkSettings) -> Result<TcpStream, ConnectError> {
    let unreachable =
        |reason: String| ConnectError::retry(reason).kind(StatusErrorKind::Unreachable);
    let addrs: Vec<SocketAddr> = name
        .to_socket_addrs()
        .map_err(|e| unreachable(format!("cannot resolve: {e}")))?
        .collect();
    let mut last = unreachable("no address".into());
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, settings.connect_timeout) {
            Ok(s) => return Ok(s),
            Err(e) => last = unreachable(format!("cannot connect: {e}")),
        }
    }
    Err(last)
}

/// Why [`node_status`] failed.
#[derive(thiserror::Error)]
#[error("{node}: {reason}")]
#[non_exhaustive]
pub struct StatusError {
    /// The node asked.
    pub node: String,
    /// What kind of failure, for a program to act on.
    pub kind: StatusErrorKind,
    /// What went wrong, in words.
    pub reason: String,
}

ppcore::debug_as_display!(StatusError);

/// What kind of failure a [`StatusError`] is.
///
/// ```no_run
/// use ppclient::StatusErrorKind;
/// match ppclient::node_status("10.0.0.2", "secret", std::time::Duration::from_secs(2)) {
///     Ok(s) => println!("{} workers", s.workers),
///     Err(e) if e.kind == StatusErrorKind::Refused => eprintln!("check the key: {e}"),
///     Err(e) => eprintln!("{e}"),
/// }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StatusErrorKind {
    /// No connection: the name does not resolve, or nobody listens there.
    Unreachable,
    /// The node refused us: wrong key, another protocol version, or full.
    Refused,
    /// The connection broke, timed out or carried nonsense once made.
    Broken,
}

/// Asks the node at `addr` (`host` or `host:port`) for its status. `key`
/// is the cluster's key as text (see [`Builder::secret`](crate::Builder::secret));
/// during a rollover each key is offered in turn.
pub fn node_status(
    addr: &str,
    key: impl AsRef<[u8]>,
    timeout: Duration,
) -> Result<ppcore::wire::NodeStatus, StatusError> {
    let node = with_port(addr);
    let fail = |reason: String| StatusError {
        node: node.clone(),
        kind: StatusErrorKind::Refused,
        reason,
    };
    let keys =
        KeySet::parse(&String::from_utf8_lossy(key.as_ref())).map_err(|e| fail(e.to_string()))?;
    node_status_with(addr, &keys, timeout)
}

/// [`node_status`] with the keys already read.
pub fn node_status_with(
    addr: &str,
    keys: &KeySet,
    timeout: Duration,
) -> Result<ppcore::wire::NodeStatus, StatusError> {
    let node = with_port(addr);
    let fail_as = |kind: StatusErrorKind, reason: String| StatusError {
        node: node.clone(),
        kind,
        reason,
    };
    let fail = |reason: String| fail_as(StatusErrorKind::Broken, reason);
    let settings = LinkSettings {
        keys: Some(keys.clone()),
        connect_timeout: timeout,
        heartbeat: timeout,
        max_prefetch: 0,
        max_frame: ppcore::wire::DEFAULT_MAX_FRAME,
        max_payload: ppcore::stream::DEFAULT_MAX_PAYLOAD,
        run: None,
        unmet_wait: timeout,
    };
    let mut last = String::new();
    for key in keys.keys() {
        let stream = dial(&node, &settings).map_err(|e| fail_as(e.kind, e.reason))?;
        match status_over(&stream, key, &settings, timeout) {
            Ok(status) => return Ok(status),
            Err(Refused::WrongKey(reason)) => last = reason,
            Err(Refused::Other(reason)) => return Err(fail(reason)),
            Err(Refused::Node(reason)) => return Err(fail_as(StatusErrorKind::Refused, reason)),
        }
    }
    Err(fail_as(StatusErrorKind::Refused, last))
}

/// Why one attempt failed.
enum Refused {
    /// The node does not hold this key: the next may do.
    WrongKey(String),
    /// The node refused us for another reason (version, full, closed).
    Node(String),
    /// The connection broke or carried nonsense.
    Other(String),
}

/// The handshake with `key` on `stream`, then one status query.
fn status_over(
    stream: &TcpStream,
    key: &Key,
    settings: &LinkSettings,
    timeout: Duration,
) -> Result<ppcore::wire::NodeStatus, Refused> {
    let other = |e: &dyn std::fmt::Display| Refused::Other(e.to_string());
    stream.set_nodelay(true).map_err(|e| other(&e))?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| other(&e))?;
    let mut framer = Framer::new(HANDSHAKE_MAX_FRAME);
    let (mut hs, first) = ClientHandshake::start(key, &[]).map_err(|e| other(&e))?;
    let frame = framer.encode_handshake(&first).map_err(|e| other(&e))?;
    (&*stream).write_all(&frame).map_err(|e| other(&e))?;
    let answer = read_one(stream, &mut framer, |f| f.decode_handshake())?;
    match hs.read(&answer).and_then(|_| hs.finish()) {
        Ok(session) => framer.secure(session),
        Err(e @ SecureError::WrongKey) => return Err(Refused::WrongKey(e.to_string())),
        Err(e) => return Err(Refused::Node(e.to_string())),
    }
    framer.set_max(settings.max_frame);
    for msg in [ClientMsg::Ping(0), ClientMsg::Status] {
        let frame = framer.encode(&msg).map_err(|e| other(&e))?;
        (&*stream).write_all(&frame).map_err(|e| other(&e))?;
    }
    loop {
        match read_one(stream, &mut framer, |f| f.decode::<NodeMsg>())? {
            NodeMsg::Status(status) => {
                if let Ok(bye) = framer.encode(&ClientMsg::Goodbye) {
                    let _ = (&*stream).write_all(&bye);
                }
                return Ok(status);
            }
            NodeMsg::Reject { reason, .. } => {
                return Err(Refused::Node(format!(
                    "the node closed the connection: {}",
                    escape(&reason)
                )))
            }
            _ => continue, // its Welcome, a Pong, a Draining notice
        }
    }
}

/// Reads until `decode` gives a whole frame.
fn read_one<T>(
    mut stream: &TcpStream,
    framer: &mut Framer,
    mut decode: impl FnMut(&mut Framer) -> Result<Option<T>, FrameError>,
) -> Result<T, Refused> {
    let mut buf = vec![0u8; 64 << 10];
    loop {
        match decode(framer) {
            Ok(Some(got)) => return Ok(got),
            Ok(None) => {}
            Err(e) => return Err(Refused::Other(escape(&e.to_string()).into_owned())),
        }
        match stream.read(&mut buf) {
            Ok(0) => return Err(Refused::Other("the node closed the connection".into())),
            Ok(n) => framer.push(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Refused::Other(format!("read failed: {e}"))),
        }
    }
}
