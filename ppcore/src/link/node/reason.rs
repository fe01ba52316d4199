//! Why a node's connection ended, why its transport broke, and why the
//! node ended a program upload: typed, each with the text the node logs
//! and (where the client is told) sends.

use crate::session::error::SecureError;
use std::time::Duration;

/// Why a node's connection closed ([`NodeAction::Closed`](super::NodeAction::Closed)).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeCloseReason {
    /// A clean goodbye, from the client or the node (it stops).
    #[error("goodbye")]
    Goodbye,
    /// The transport ended, as the driver saw it.
    #[error("{0}")]
    Transport(TransportEnd),
    /// The node refused the client for now (too many clients, evicted):
    /// the client was told, and retries later.
    #[error("{0}")]
    Refused(String),
    /// The client's handshake was refused (a wrong key, another protocol
    /// version, garbage): it was told, with nothing derived from a key.
    #[error("handshake refused: {0}")]
    Handshake(SecureError),
    /// The client did not finish its handshake in time.
    #[error("timed out during the handshake")]
    HandshakeTimeout,
    /// The client sent nothing for this long (missed heartbeats).
    #[error("client silent for {0:?}")]
    Silent(Duration),
    /// The client broke the protocol (told why: this text, in a `Reject`).
    #[error("{0}")]
    Broke(String),
}

impl NodeCloseReason {
    /// Whether the connection ended well (a goodbye), not for a reason
    /// worth logging.
    pub fn is_goodbye(&self) -> bool {
        matches!(self, NodeCloseReason::Goodbye)
    }
}

/// Why the driver's transport ended (reported as
/// [`NodeEvent::TransportClosed`](super::NodeEvent::TransportClosed)).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportEnd {
    /// The client closed its end.
    #[error("the client closed the connection")]
    ClosedByPeer,
    /// A read failed (the error's text).
    #[error("read failed: {0}")]
    ReadFailed(String),
    /// A write failed (the error's text).
    #[error("write failed: {0}")]
    WriteFailed(String),
    /// Nothing could be written for this long (`--write-timeout`).
    #[error("no write progress for {0:?}: the client stopped reading")]
    WriteStalled(Duration),
}

/// Why the node link ended a program upload, or refused a piece of one
/// ([`NodeAction::UploadRefused`](super::NodeAction::UploadRefused)); the
/// client is told the same text (`ProgramRefused`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UploadRefusal {
    /// A chunk of a program this connection is not uploading.
    #[error("upload refused: no upload of this program under way")]
    NotUnderWay,
    /// No chunk of the upload came for this long.
    #[error("upload refused: {}", stalled(.0))]
    Stalled(Duration),
}

/// The upload's own word for a stall (`ppcore::upload`).
fn stalled(limit: &Duration) -> crate::link::upload::UploadError {
    crate::link::upload::UploadError::Stalled(*limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_read_as_the_node_has_always_logged_them() {
        let texts = [
            (
                NodeCloseReason::Transport(TransportEnd::ClosedByPeer).to_string(),
                "the client closed the connection",
            ),
            (
                TransportEnd::WriteStalled(Duration::from_secs(30)).to_string(),
                "no write progress for 30s: the client stopped reading",
            ),
            (
                TransportEnd::ReadFailed("reset".into()).to_string(),
                "read failed: reset",
            ),
            (
                NodeCloseReason::HandshakeTimeout.to_string(),
                "timed out during the handshake",
            ),
            (
                NodeCloseReason::Silent(Duration::from_secs(3)).to_string(),
                "client silent for 3s",
            ),
            (
                UploadRefusal::Stalled(Duration::from_secs(30)).to_string(),
                "upload refused: no progress for 30s",
            ),
            (
                UploadRefusal::NotUnderWay.to_string(),
                "upload refused: no upload of this program under way",
            ),
        ];
        for (got, want) in texts {
            assert_eq!(got, want);
        }
        assert!(NodeCloseReason::Goodbye.is_goodbye());
    }
}
