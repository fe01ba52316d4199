//! Why a client link went down ([`DownReason`]) or was refused for good
//! ([`Refusal`]), and what the driver saw go wrong with its socket
//! ([`TransportError`]). Each displays the text users and scripts read.

use crate::session::error::SecureError;
use crate::wire::stream::StreamError;
use std::time::Duration;

/// What went wrong with the connection, as the driver saw it.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The dial (or setting the new socket up) failed: what it said.
    #[error("{0}")]
    Connect(String),
    /// The node closed the connection.
    #[error("the node closed the connection")]
    PeerClosed,
    /// Reading failed.
    #[error("read failed: {0}")]
    Read(String),
    /// Writing failed.
    #[error("write failed: {0}")]
    Write(String),
}

crate::debug_as_display!(TransportError);

/// Why a connection ended (the link redials unless it is not to).
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DownReason {
    /// The socket failed or the node closed it.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The node took none of the bytes waiting for it for this long.
    #[error("no write progress for {0:?}: the node stopped reading")]
    WriteStalled(Duration),
    /// The handshake did not finish in time.
    #[error("the handshake timed out")]
    HandshakeTimedOut,
    /// The node said nothing for this long.
    #[error("node silent for {0:?}: lost")]
    Silent(Duration),
    /// A stream from the node made no progress, or broke its limits.
    #[error("dropped the node: {0}")]
    StreamExpired(StreamError),
    /// A frame of the node's before the session was up did not decode.
    #[error("bad handshake frame from the node: {0}")]
    BadHandshakeFrame(String),
    /// A sealed frame from the node did not open or decode (the whole
    /// text, peer text escaped).
    #[error("{0}")]
    BadFrame(String),
    /// A stream from the node broke the rules.
    #[error("bad stream from the node: {0}")]
    BadStream(StreamError),
    /// The node said goodbye.
    #[error("the node stopped")]
    NodeStopped,
    /// The node closed the connection with this reason (escaped).
    #[error("the node closed the connection: {0}")]
    NodeClosed(String),
    /// The node turned us away for now with this reason (escaped).
    #[error("refused by the node: {0}")]
    RefusedForNow(String),
    /// The node sent a second `Welcome`.
    #[error("a second Welcome from the node")]
    SecondWelcome,
    /// The node's first sealed frame was not its `Welcome`.
    #[error("the node did not send its Welcome first")]
    NoWelcomeFirst,
    /// A handshake answer came with no handshake under way.
    #[error("no handshake under way")]
    NoHandshake,
    /// The node does not hold the key offered: the next one is offered.
    #[error("the node does not hold our first key: trying the next")]
    TryingNextKey,
    /// The handshake failed in a way that may pass (changed on the way).
    #[error(transparent)]
    Secure(SecureError),
}

crate::debug_as_display!(DownReason);

/// Why the link is closed for good.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The handshake failed for good (wrong key, another protocol version).
    #[error(transparent)]
    Secure(SecureError),
    /// Connections failed this many times in a row, never up: given up.
    #[error("dropped after {attempts} failed attempt(s) in a row: {last}")]
    GaveUp {
        /// The failed attempts.
        attempts: u32,
        /// Why the last one failed.
        last: Box<DownReason>,
    },
    /// The client has no key to offer.
    #[error("{}", crate::session::key::KeyError::Missing)]
    NoKey,
}

crate::debug_as_display!(Refusal);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_read_as_they_always_did() {
        let gave_up = Refusal::GaveUp {
            attempts: 3,
            last: Box::new(TransportError::Connect("connection refused".into()).into()),
        };
        assert_eq!(
            gave_up.to_string(),
            "dropped after 3 failed attempt(s) in a row: connection refused"
        );
        assert_eq!(
            DownReason::WriteStalled(Duration::from_secs(3)).to_string(),
            "no write progress for 3s: the node stopped reading"
        );
        assert_eq!(
            DownReason::from(TransportError::PeerClosed).to_string(),
            "the node closed the connection"
        );
        assert_eq!(
            Refusal::NoKey.to_string(),
            crate::session::key::KeyError::Missing.to_string()
        );
    }
}
