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
    let final_error = |e: HandshakeError| ConnectError::retry(e.to_string());
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
pub struct StatusError {
    /// The node asked.
    pub node: String,
    /// What went wrong.
    pub reason: String,
}

/// Asks the node at `addr` (`host` or `host:port`) for its status.
pub fn node_status(
    addr: &str,
    secret: impl AsRef<[u8]>,
    timeout: Duration,
) -> Result<ppcore::wire::NodeStatus, StatusError> {
    let node = with_port(addr);
    let fail = |reason: String| StatusError {
        node: node.clone(),
        reason,
    };
    let settings = LinkSettings {
        secret: Secret::new(secret),
        connect_timeout: timeout,
        heartbeat: timeout,
        max_prefetch: 0,
        max_frame: ppcore::wire::DEFAULT_MAX_FRAME,
    };
    let stream = dial(&node, &settings).map_err(|e| fail(e.reason))?;
    handshake(&stream, &settings).map_err(|e| fail(e.reason))?;
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
