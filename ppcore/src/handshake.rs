//! The handshake, as pure state: messages in, messages out, no sockets.
//!
//! ```text
//! client                                node
//!   Hello {magic, version, nonce_c}  ->
//!                                    <- Challenge {nonce_n, proof_n}   (or Reject)
//!   Auth {proof_c}                   ->
//!                                    <- Welcome {...}                  (or Reject)
//! ```
//!
//! `proof_n = HMAC-SHA256(secret, "pp-node" | nonce_c | nonce_n)` and
//! `proof_c = HMAC-SHA256(secret, "pp-client" | nonce_c | nonce_n)`: each
//! side proves it knows the secret without sending it, the labels keep one
//! side's proof from being replayed as the other's, and fresh nonces on both
//! sides keep old proofs from being replayed at all. Proofs are checked in
//! constant time.

use crate::wire::{ClientMsg, NodeMsg, MAGIC, PROTOCOL_VERSION};
use hmac::{Hmac, Mac};
use serde_bytes::ByteBuf;
use sha2::Sha256;

const NONCE_LEN: usize = 32;
const NODE_LABEL: &[u8] = b"pp-node";
const CLIENT_LABEL: &[u8] = b"pp-client";

/// A shared secret. An empty secret is allowed only on loopback (the node enforces that).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// A secret from its bytes (trailing newlines of a secret file are trimmed).
    pub fn new(bytes: impl AsRef<[u8]>) -> Self {
        let b = bytes.as_ref();
        let end = b
            .iter()
            .rposition(|&c| c != b'\n' && c != b'\r')
            .map_or(0, |i| i + 1);
        Secret(b[..end].to_vec())
    }

    /// Whether the secret is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn mac(&self, label: &[u8], client: &[u8], node: &[u8]) -> Hmac<Sha256> {
        // HMAC takes keys of any length; this cannot fail.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        mac.update(label);
        mac.update(client);
        mac.update(node);
        mac
    }

    fn proof(&self, label: &[u8], client: &[u8], node: &[u8]) -> Vec<u8> {
        self.mac(label, client, node)
            .finalize()
            .into_bytes()
            .to_vec()
    }

    fn verify(&self, label: &[u8], client: &[u8], node: &[u8], proof: &[u8]) -> bool {
        self.mac(label, client, node).verify_slice(proof).is_ok()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_empty() {
            "Secret(none)"
        } else {
            "Secret(..)"
        })
    }
}

/// 32 random bytes from the operating system.
pub fn nonce() -> Result<[u8; NONCE_LEN], getrandom::Error> {
    let mut n = [0u8; NONCE_LEN];
    getrandom::getrandom(&mut n)?;
    Ok(n)
}

/// Why a handshake failed, from the client's side.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The node does not know our secret (or we do not know its).
    #[error("authentication failed: the node's proof does not match our secret")]
    BadProof,
    /// The node refused us.
    #[error("refused by the node: {0}")]
    Rejected(String),
    /// The node sent something else than the handshake expects.
    #[error("unexpected message during the handshake: {0}")]
    Unexpected(String),
}

/// The client's side of the handshake.
pub struct ClientHandshake {
    secret: Secret,
    nonce: [u8; NONCE_LEN],
}

impl ClientHandshake {
    /// Starts a handshake with a fresh `nonce`; returns the `Hello` to send.
    pub fn start(secret: Secret, nonce: [u8; NONCE_LEN]) -> (Self, ClientMsg) {
        let hello = ClientMsg::Hello {
            magic: MAGIC.into(),
            version: PROTOCOL_VERSION,
            nonce: ByteBuf::from(nonce.to_vec()),
        };
        (ClientHandshake { secret, nonce }, hello)
    }

    /// Checks the node's `Challenge`; returns the `Auth` to send.
    pub fn on_challenge(&self, msg: NodeMsg) -> Result<ClientMsg, HandshakeError> {
        match msg {
            NodeMsg::Challenge { nonce, proof } => {
                if !self.secret.verify(NODE_LABEL, &self.nonce, &nonce, &proof) {
                    return Err(HandshakeError::BadProof);
                }
                let proof = self.secret.proof(CLIENT_LABEL, &self.nonce, &nonce);
                Ok(ClientMsg::Auth {
                    proof: ByteBuf::from(proof),
                })
            }
            NodeMsg::Reject { reason } => Err(HandshakeError::Rejected(reason)),
            other => Err(HandshakeError::Unexpected(variant(&other))),
        }
    }

    /// Reads the node's answer to `Auth`: `Welcome` passes through.
    pub fn on_welcome(&self, msg: NodeMsg) -> Result<NodeMsg, HandshakeError> {
        match msg {
            NodeMsg::Welcome { .. } => Ok(msg),
            NodeMsg::Reject { reason } => Err(HandshakeError::Rejected(reason)),
            other => Err(HandshakeError::Unexpected(variant(&other))),
        }
    }
}

fn variant(msg: &NodeMsg) -> String {
    let debug = format!("{msg:?}");
    debug
        .split(|c: char| !c.is_alphanumeric())
        .next()
        .unwrap_or("?")
        .to_owned()
}

/// Where the node's side of a handshake stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    AwaitHello,
    AwaitAuth,
    Done,
    Failed,
}

/// The node's side of the handshake. Each step returns the reply to send;
/// a `Reject` reply means: send it, then close.
pub struct NodeHandshake {
    secret: Secret,
    nonce: [u8; NONCE_LEN],
    client_nonce: Vec<u8>,
    stage: Stage,
}

impl NodeHandshake {
    /// A node handshake with a fresh `nonce`.
    pub fn new(secret: Secret, nonce: [u8; NONCE_LEN]) -> Self {
        NodeHandshake {
            secret,
            nonce,
            client_nonce: Vec::new(),
            stage: Stage::AwaitHello,
        }
    }

    /// Whether the client has proved itself.
    pub fn is_done(&self) -> bool {
        self.stage == Stage::Done
    }

    /// Feeds one client message; returns the reply, or the reason to refuse.
    /// After `Auth` succeeds, returns `Ok(None)`: the caller sends `Welcome`.
    pub fn on_message(&mut self, msg: ClientMsg) -> Result<Option<NodeMsg>, String> {
        let result = self.step(msg);
        if result.is_err() {
            self.stage = Stage::Failed;
        }
        result
    }

    fn step(&mut self, msg: ClientMsg) -> Result<Option<NodeMsg>, String> {
        match (self.stage, msg) {
            (
                Stage::AwaitHello,
                ClientMsg::Hello {
                    magic,
                    version,
                    nonce,
                },
            ) => {
                if magic != MAGIC {
                    return Err(format!("not a pp client (magic {magic:?})"));
                }
                if version != PROTOCOL_VERSION {
                    return Err(format!(
                        "protocol version {version} is not supported; this node speaks version {PROTOCOL_VERSION}"
                    ));
                }
                if nonce.len() != NONCE_LEN {
                    return Err(format!(
                        "nonce must be {NONCE_LEN} bytes, got {}",
                        nonce.len()
                    ));
                }
                self.client_nonce = nonce.into_vec();
                self.stage = Stage::AwaitAuth;
                let proof = self
                    .secret
                    .proof(NODE_LABEL, &self.client_nonce, &self.nonce);
                Ok(Some(NodeMsg::Challenge {
                    nonce: ByteBuf::from(self.nonce.to_vec()),
                    proof: ByteBuf::from(proof),
                }))
            }
            (Stage::AwaitAuth, ClientMsg::Auth { proof }) => {
                if self
                    .secret
                    .verify(CLIENT_LABEL, &self.client_nonce, &self.nonce, &proof)
                {
                    self.stage = Stage::Done;
                    Ok(None)
                } else {
                    Err("authentication failed: wrong secret".into())
                }
            }
            (stage, msg) => Err(format!(
                "unexpected {} during the handshake (expected {})",
                client_variant(&msg),
                match stage {
                    Stage::AwaitHello => "Hello",
                    Stage::AwaitAuth => "Auth",
                    Stage::Done | Stage::Failed => "nothing more",
                }
            )),
        }
    }
}

fn client_variant(msg: &ClientMsg) -> &'static str {
    match msg {
        ClientMsg::Hello { .. } => "Hello",
        ClientMsg::Auth { .. } => "Auth",
        ClientMsg::Run(_) => "Run",
        ClientMsg::Cancel { .. } => "Cancel",
        ClientMsg::Ping(_) => "Ping",
        ClientMsg::Status => "Status",
        ClientMsg::Goodbye => "Goodbye",
        ClientMsg::Offer(_) => "Offer",
        ClientMsg::Chunk { .. } => "Chunk",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(client_secret: &str, node_secret: &str) -> Result<(), String> {
        let (client, hello) = ClientHandshake::start(Secret::new(client_secret), [1; 32]);
        let mut node = NodeHandshake::new(Secret::new(node_secret), [2; 32]);
        let challenge = node.on_message(hello)?.ok_or("no challenge")?;
        let auth = client.on_challenge(challenge).map_err(|e| e.to_string())?;
        match node.on_message(auth)? {
            None if node.is_done() => Ok(()),
            other => Err(format!("{other:?}")),
        }
    }

    #[test]
    fn same_secret_completes() {
        run("s3cret", "s3cret").unwrap();
        run("", "").unwrap();
        run("s3cret\n", "s3cret").unwrap();
    }

    #[test]
    fn client_detects_a_node_with_another_secret() {
        let err = run("a", "b").unwrap_err();
        assert!(err.contains("authentication failed"), "{err}");
    }

    #[test]
    fn node_rejects_a_client_that_cannot_prove_the_secret() {
        let mut node = NodeHandshake::new(Secret::new("right"), [2; 32]);
        let (_, hello) = ClientHandshake::start(Secret::new("wrong"), [1; 32]);
        node.on_message(hello).unwrap();
        let forged = ClientMsg::Auth {
            proof: ByteBuf::from(vec![0; 32]),
        };
        let err = node.on_message(forged).unwrap_err();
        assert!(err.contains("wrong secret"), "{err}");
        assert!(!node.is_done());
    }

    #[test]
    fn replaying_the_nodes_proof_as_the_clients_fails() {
        let (_, hello) = ClientHandshake::start(Secret::new("k"), [1; 32]);
        let mut node = NodeHandshake::new(Secret::new("k"), [2; 32]);
        let Some(NodeMsg::Challenge { proof, .. }) = node.on_message(hello).unwrap() else {
            panic!("no challenge")
        };
        assert!(node.on_message(ClientMsg::Auth { proof }).is_err());
    }

    #[test]
    fn unknown_version_and_magic_get_a_reason() {
        let mut node = NodeHandshake::new(Secret::new("k"), [2; 32]);
        let err = node
            .on_message(ClientMsg::Hello {
                magic: MAGIC.into(),
                version: 99,
                nonce: ByteBuf::from(vec![0; 32]),
            })
            .unwrap_err();
        assert!(err.contains("protocol version 99"), "{err}");
        let mut node = NodeHandshake::new(Secret::new("k"), [2; 32]);
        let err = node
            .on_message(ClientMsg::Hello {
                magic: "http".into(),
                version: 1,
                nonce: ByteBuf::from(vec![0; 32]),
            })
            .unwrap_err();
        assert!(err.contains("not a pp client"), "{err}");
    }

    #[test]
    fn messages_in_the_wrong_state_are_refused() {
        for msg in [
            ClientMsg::Run(vec![]),
            ClientMsg::Status,
            ClientMsg::Auth {
                proof: ByteBuf::new(),
            },
        ] {
            let mut node = NodeHandshake::new(Secret::new("k"), [2; 32]);
            assert!(node.on_message(msg).unwrap_err().contains("expected Hello"));
        }
        let mut node = NodeHandshake::new(Secret::new("k"), [2; 32]);
        let (_, hello) = ClientHandshake::start(Secret::new("k"), [1; 32]);
        node.on_message(hello.clone()).unwrap();
        assert!(node
            .on_message(hello)
            .unwrap_err()
            .contains("expected Auth"));
        let mut node = NodeHandshake::new(Secret::new("k"), [2; 32]);
        let short = ClientMsg::Hello {
            magic: MAGIC.into(),
            version: PROTOCOL_VERSION,
            nonce: ByteBuf::from(vec![0; 3]),
        };
        assert!(node.on_message(short).is_err());
    }

    #[test]
    fn client_reports_rejections_and_surprises() {
        let (client, _) = ClientHandshake::start(Secret::new("k"), [1; 32]);
        let e = client
            .on_challenge(NodeMsg::Reject {
                reason: "too many connections".into(),
            })
            .unwrap_err();
        assert_eq!(e, HandshakeError::Rejected("too many connections".into()));
        let e = client.on_challenge(NodeMsg::Pong(1)).unwrap_err();
        assert_eq!(e, HandshakeError::Unexpected("Pong".into()));
    }

    proptest::proptest! {
        #[test]
        fn any_message_sequence_never_panics_or_completes_without_the_secret(
            seq in proptest::collection::vec((0u8..4, proptest::collection::vec(proptest::num::u8::ANY, 0..40)), 0..6)
        ) {
            let mut node = NodeHandshake::new(Secret::new("k"), [2; 32]);
            for (kind, bytes) in seq {
                let msg = match kind {
                    0 => ClientMsg::Hello { magic: MAGIC.into(), version: PROTOCOL_VERSION, nonce: ByteBuf::from(bytes) },
                    1 => ClientMsg::Auth { proof: ByteBuf::from(bytes) },
                    2 => ClientMsg::Ping(bytes.len() as u64),
                    _ => ClientMsg::Run(vec![]),
                };
                if node.on_message(msg).is_err() { break; }
            }
            proptest::prop_assert!(!node.is_done());
        }
    }
}
