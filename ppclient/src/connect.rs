//! Reaching a node: resolve, connect, authenticate; and a one-off status query.

use crate::remote::LinkSettings;
use ppcore::wire::{ClientMsg, NodeMsg, DEFAULT_PORT};
use ppcore::{encode_frame, ClientHandshake, FrameError, FrameReader, HandshakeError, Secret};
use std::io::Write;
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

/// Authenticates on a fresh connection, for a one-off query; returns the
/// node's `Welcome`. (Links to nodes authenticate through `ppcore::ClientLink`.)
pub(crate) fn handshake(
    stream: &TcpStream,
    settings: &LinkSettings,
) -> Result<NodeMsg, ConnectError> {
    let io = |e: std::io::Error| ConnectError::retry(format!("handshake failed: {e}"));
    stream.set_nodelay(true).map_err(io)?;
    stream
        .set_read_timeout(Some(settings.connect_timeout.max(Duration::from_secs(1))))
        .map_err(io)?;
    let nonce = ppcore::nonce().map_err(|e| ConnectError::retry(format!("no randomness: {e}")))?;
    let (hs, hello) = ClientHandshake::start(settings.secret.clone(), nonce);
    let mut writer = stream.try_clone().map_err(io)?;
    let mut reader = FrameReader::new(stream.try_clone().map_err(io)?, settings.max_frame);
    let mut next = |writer: &mut TcpStream, msg: &ClientMsg| -> Result<NodeMsg, ConnectError> {
        let frame = encode_frame(msg).map_err(|e| ConnectError::retry(e.to_string()))?;
        writer.write_all(&frame).map_err(io)?;
        match reader.read::<NodeMsg>() {
            Ok(Some(m)) => Ok(m),
            Ok(None) => Err(ConnectError::retry(
                "the node closed the connection during the handshake",
            )),
            Err(FrameError::Io(e)) => Err(io(e)),
            Err(e) => Err(ConnectError::retry(format!("handshake failed: {e}"))),
        }
    };
    let final_error =
        |e: HandshakeError| ConnectError::retry(e.to_string()).kind(StatusErrorKind::Refused);
    let challenge = next(&mut writer, &hello)?;
    let auth = hs.on_challenge(challenge).map_err(final_error)?;
    let welcome = next(&mut writer, &auth)?;
    let welcome = hs.on_welcome(welcome).map_err(final_error)?;
    stream.set_read_timeout(None).map_err(io)?;
    Ok(welcome)
}

/// Why [`node_status`] failed.
#[derive(Debug, thiserror::Error)]
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

/// What kind of failure a [`StatusError`] is.
///
/// ```no_run
/// use ppclient::StatusErrorKind;
/// match ppclient::node_status("10.0.0.2", "secret", std::time::Duration::from_secs(2)) {
///     Ok(s) => println!("{} workers", s.workers),
///     Err(e) if e.kind == StatusErrorKind::Refused => eprintln!("check the secret: {e}"),
///     Err(e) => eprintln!("{e}"),
/// }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StatusErrorKind {
    /// No connection: the name does not resolve, or nobody listens there.
    Unreachable,
    /// The node refused us: wrong secret, another protocol version, or full.
    Refused,
    /// The connection broke, timed out or carried nonsense once made.
    Broken,
}

/// Asks the node at `addr` (`host` or `host:port`) for its status.
pub fn node_status(
    addr: &str,
    secret: impl AsRef<[u8]>,
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
        secret: Secret::new(secret),
        connect_timeout: timeout,
        heartbeat: timeout,
        max_prefetch: 0,
        max_frame: ppcore::wire::DEFAULT_MAX_FRAME,
    };
    let stream = dial(&node, &settings).map_err(|e| fail_as(e.kind, e.reason))?;
    handshake(&stream, &settings).map_err(|e| fail_as(e.kind, e.reason))?;
    let io = |e: std::io::Error| fail(e.to_string());
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    let frame = encode_frame(&ClientMsg::Status).map_err(|e| fail(e.to_string()))?;
    (&stream).write_all(&frame).map_err(io)?;
    let mut reader = FrameReader::new(&stream, settings.max_frame);
    loop {
        match reader.read::<NodeMsg>() {
            Ok(Some(NodeMsg::Status(status))) => {
                let _ = (&stream).write_all(&encode_frame(&ClientMsg::Goodbye).unwrap_or_default());
                return Ok(status);
            }
            Ok(Some(_)) => continue, // a Draining notice and the like
            Ok(None) => return Err(fail("the node closed the connection".into())),
            Err(e) => return Err(fail(e.to_string())),
        }
    }
}
