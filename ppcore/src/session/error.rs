//! [`SecureError`]: why a handshake failed or a sealed frame did not open,
//! shared by the handshake and the transport (so that neither names the
//! other for it).

/// Why a handshake failed, or a frame did not open.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SecureError {
    /// The two sides do not hold a common key.
    #[error("wrong key: the peer does not hold our key (compare key fingerprints; during a rollover give both keys)")]
    WrongKey,
    /// The two sides speak different protocol versions.
    #[error(
        "protocol version mismatch: we speak version {ours}, the peer speaks version {theirs}"
    )]
    Version {
        /// Ours.
        ours: u32,
        /// The peer's.
        theirs: u32,
    },
    /// The peer is not a pp client or node.
    #[error("not a pp peer (no pp-rs magic)")]
    NotPp,
    /// A handshake message that does not parse.
    #[error("malformed handshake: {0}")]
    Malformed(&'static str),
    /// The node refused for another reason (its words, escaped).
    #[error("refused by the node: {0}")]
    Refused(String),
    /// The node is full for now (too many connections): try again later.
    #[error("refused by the node for now: {0}")]
    Busy(String),
    /// The node's answer did not authenticate: changed on the way, or not
    /// from a holder of the key.
    #[error("the node's handshake answer does not authenticate (tampered, or not the node)")]
    Tampered,
    /// A frame that is not the peer's next sealed frame: modified,
    /// injected, replayed, reordered or truncated.
    #[error(
        "a frame failed authentication (modified, injected, replayed, reordered or truncated)"
    )]
    Forged,
    /// A payload or frame too large to seal or send.
    #[error("too large to seal")]
    TooLarge,
    /// The handshake was used out of order.
    #[error("handshake used out of order")]
    State,
    /// 2^64 frames: the session must end.
    #[error("the session's nonces are used up")]
    Exhausted,
    /// The Noise library failed (no randomness, and the like).
    #[error("handshake failed: {0}")]
    Noise(String),
}

crate::debug_as_display!(SecureError);
