//! Reaching a node: resolve, connect, authenticate; and a one-off status query.

use crate::remote::LinkSettings;
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
}

impl ConnectError {
    fn retry(reason: impl Into<String>) -> Self {
        ConnectError {
            reason: reason.into(),
        }
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
    let addrs: Vec<SocketAddr> = name
        .to_socket_addrs()
        .map_err(|e| ConnectError::retry(format!("cannot resolve: {e}")))?
        .collect();
    let mut last = ConnectError::retry("no address");
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, settings.connect_timeout) {
            Ok(s) => return Ok(s),
            Err(e) => last = ConnectError::retry(format!("cannot connect: {e}")),
        }
    }
    Err(last)
}

/// Why [`node_status`] failed.
#[derive(Debug, thiserror::Error)]
#[error("{node}: {reason}")]
pub struct StatusError {
    /// The node asked.
    pub node: String,
    /// What went wrong.
    pub reason: String,
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
    let fail = |reason: String| StatusError {
        node: node.clone(),
        reason,
    };
    let settings = LinkSettings {
        keys: Some(keys.clone()),
        connect_timeout: timeout,
        heartbeat: timeout,
        max_prefetch: 0,
        max_frame: ppcore::wire::DEFAULT_MAX_FRAME,
    };
    let mut last = String::new();
    for key in keys.keys() {
        let stream = dial(&node, &settings).map_err(|e| fail(e.reason))?;
        match status_over(&stream, key, &settings, timeout) {
            Ok(status) => return Ok(status),
            Err(Refused::WrongKey(reason)) => last = reason,
            Err(Refused::Other(reason)) => return Err(fail(reason)),
        }
    }
    Err(fail(last))
}

enum Refused {
    WrongKey(String),
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
        Err(e) => return Err(other(&e)),
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
            NodeMsg::Reject { reason } => {
                return Err(Refused::Other(format!(
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
