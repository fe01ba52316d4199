//! The encrypted session's handshake, as pure state: bytes in, bytes out.
//!
//! ```text
//! client                                       node
//!   "pp-rs" | version | e, AEAD(payload)  ->            (Noise message 1)
//!                      <- 0 | e, ee, AEAD(payload)      (Noise message 2)
//!                      <- 1 | code | version | reason   (or a refusal)
//! then every frame both ways: Transport::seal / Transport::open
//! ```
//!
//! # Why `Noise_NNpsk0`
//!
//! The cluster shares one key and has no identities beyond it, so the
//! pattern needs no static keys: `NNpsk0` (`-> psk, e` / `<- e, ee`) is the
//! shortest fit. The pre-shared key is mixed in before the first message,
//! so:
//! - the client's first message already proves it holds the key: a node
//!   refuses a stranger after one AEAD check per key it holds, before any
//!   Diffie-Hellman, and never sends a stranger anything derived from the
//!   key (no offline oracle for guessing);
//! - the node's answer proves it holds the key too (mutual authentication),
//!   and it is bound to the client's fresh ephemeral key, so it cannot be
//!   replayed;
//! - the session keys come from the ephemeral-ephemeral exchange: forward
//!   secrecy (a key stolen later does not open recorded sessions), and a
//!   relay that passes the handshake through reads and changes nothing.
//!
//! `XXpsk3` would add static keys (nothing to check them against here) and
//! a third message. A replayed first message makes the node answer, but the
//! replayer cannot open that answer nor seal a frame: a node counts a
//! client as authenticated at its first frame that opens.
//!
//! The magic and the protocol version travel in clear first (so that a
//! mismatch gets a reason naming both versions) and are bound into the
//! Noise prologue, so an on-path attacker cannot change them unnoticed.
//! The payloads carry the rest of the old `Hello` and `Welcome`, opaque here.

use crate::escape::escape;
use crate::session::error::SecureError;
use crate::session::key::{Key, KeySet};
use crate::session::transport::{Cipher, Transport, CIPHER};
use snow::{Builder, HandshakeState};

/// Sent first, in clear, in the handshake's first message, so that a stray client is told apart at once.
pub const MAGIC: &str = "pp-rs";
/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u32 = 10;

/// The largest handshake message either side sends or reads: what a peer
/// may make us buffer before it has proved anything.
pub const MAX_HANDSHAKE_MESSAGE: usize = 4096;
/// The largest payload a handshake message carries.
pub const MAX_HANDSHAKE_PAYLOAD: usize = MAX_HANDSHAKE_MESSAGE - HEADER - DH - TAG - 1;

const HEADER: usize = MAGIC.len() + 4;
const DH: usize = 32;
const TAG: usize = 16;
const ACCEPT: u8 = 0;
const REFUSE: u8 = 1;
const MAX_REASON: usize = 256;

/// Reason codes of a refusal on the wire.
#[derive(Clone, Copy)]
#[repr(u8)]
enum Code {
    WrongKey = 1,
    Version = 2,
    NotPp = 3,
    Malformed = 4,
    Other = 5,
    Busy = 6,
}

fn noise_name(cipher: Cipher) -> String {
    format!("Noise_NNpsk0_25519_{}_SHA256", cipher.noise_name())
}

fn header() -> Vec<u8> {
    let mut h = Vec::with_capacity(HEADER);
    h.extend_from_slice(MAGIC.as_bytes());
    h.extend_from_slice(&PROTOCOL_VERSION.to_be_bytes());
    h
}

fn prologue() -> Vec<u8> {
    let mut p = b"pp-rs handshake prologue ".to_vec();
    p.extend_from_slice(&header());
    p
}

fn noise(e: snow::Error) -> SecureError {
    SecureError::Noise(e.to_string())
}

fn state(key: &Key, initiator: bool) -> Result<HandshakeState, SecureError> {
    let params = noise_name(CIPHER)
        .parse()
        .map_err(|e: snow::Error| noise(e))?;
    let prologue = prologue();
    let builder = Builder::new(params)
        .psk(0, key.bytes())
        .and_then(|b| b.prologue(&prologue))
        .map_err(noise)?;
    if initiator {
        builder.build_initiator()
    } else {
        builder.build_responder()
    }
    .map_err(noise)
}

fn write(hs: &mut HandshakeState, prefix: &[u8], payload: &[u8]) -> Result<Vec<u8>, SecureError> {
    if payload.len() > MAX_HANDSHAKE_PAYLOAD {
        return Err(SecureError::TooLarge);
    }
    let mut out = vec![0u8; prefix.len() + DH + payload.len() + TAG];
    out[..prefix.len()].copy_from_slice(prefix);
    let n = hs
        .write_message(payload, &mut out[prefix.len()..])
        .map_err(noise)?;
    out.truncate(prefix.len() + n);
    Ok(out)
}

fn read(hs: &mut HandshakeState, msg: &[u8]) -> Option<Vec<u8>> {
    let mut payload = vec![0u8; msg.len()];
    let n = hs.read_message(msg, &mut payload).ok()?;
    payload.truncate(n);
    Some(payload)
}

fn finish(hs: Option<HandshakeState>, initiator: bool) -> Result<Transport, SecureError> {
    let mut hs = hs
        .filter(|h| h.is_handshake_finished())
        .ok_or(SecureError::State)?;
    let (to_node, to_client) = hs.dangerously_get_raw_split();
    Ok(if initiator {
        Transport::from_raw_keys(CIPHER, &to_node, &to_client)
    } else {
        Transport::from_raw_keys(CIPHER, &to_client, &to_node)
    })
}

/// The client's side: [`start`](Self::start), one [`read`](Self::read), [`finish`](Self::finish).
pub struct ClientHandshake {
    hs: Option<HandshakeState>,
    node_payload: Vec<u8>,
}

impl ClientHandshake {
    /// Starts a handshake offering `key` (the first of a [`KeySet`]; on
    /// [`SecureError::WrongKey`], a new connection may offer the next);
    /// returns the first message to send. `payload` travels encrypted.
    pub fn start(key: &Key, payload: &[u8]) -> Result<(Self, Vec<u8>), SecureError> {
        let mut hs = state(key, true)?;
        let msg = write(&mut hs, &header(), payload)?;
        let me = ClientHandshake {
            hs: Some(hs),
            node_payload: Vec::new(),
        };
        Ok((me, msg))
    }

    /// Reads the node's answer. `Ok(None)`: done, nothing more to send;
    /// call [`finish`](Self::finish).
    pub fn read(&mut self, msg: &[u8]) -> Result<Option<Vec<u8>>, SecureError> {
        let hs = self.hs.as_mut().ok_or(SecureError::State)?;
        if hs.is_handshake_finished() {
            return Err(SecureError::State);
        }
        if msg.len() > MAX_HANDSHAKE_MESSAGE {
            return Err(SecureError::Malformed("answer longer than 4 KiB"));
        }
        let result = match msg.split_first() {
            Some((&ACCEPT, rest)) => read(hs, rest).ok_or(SecureError::Tampered),
            Some((&REFUSE, rest)) => Err(parse_refusal(rest)),
            _ => Err(SecureError::Malformed("empty or unknown answer")),
        };
        match result {
            Ok(payload) => {
                self.node_payload = payload;
                Ok(None)
            }
            Err(e) => {
                self.hs = None;
                Err(e)
            }
        }
    }

    /// What the node sent with its answer (its `Welcome`, say).
    pub fn node_payload(&self) -> &[u8] {
        &self.node_payload
    }

    /// The session, once the node's answer was read.
    pub fn finish(self) -> Result<Transport, SecureError> {
        finish(self.hs, true)
    }
}

/// The node's side: one [`read`](Self::read) of the client's message, which
/// returns the answer, then [`finish`](Self::finish). On an error, send
/// [`refusal`] of it and close.
pub struct NodeHandshake {
    keys: KeySet,
    payload: Vec<u8>,
    hs: Option<HandshakeState>,
    key_index: usize,
    client_payload: Vec<u8>,
}

impl NodeHandshake {
    /// A node handshake accepting any of `keys`; `payload` goes encrypted
    /// in the answer.
    pub fn new(keys: KeySet, payload: Vec<u8>) -> Result<Self, SecureError> {
        if payload.len() > MAX_HANDSHAKE_PAYLOAD {
            return Err(SecureError::TooLarge);
        }
        Ok(NodeHandshake {
            keys,
            payload,
            hs: None,
            key_index: 0,
            client_payload: Vec::new(),
        })
    }

    /// Reads the client's first message; returns the answer to send.
    pub fn read(&mut self, msg: &[u8]) -> Result<Option<Vec<u8>>, SecureError> {
        if self.hs.is_some() {
            return Err(SecureError::State);
        }
        if msg.len() > MAX_HANDSHAKE_MESSAGE {
            return Err(SecureError::Malformed("first message longer than 4 KiB"));
        }
        let noise_msg = check_header(msg)?;
        // Rollover: try each key; a wrong one fails its AEAD check at once.
        for (i, key) in self.keys.keys().iter().enumerate() {
            let mut hs = state(key, false)?;
            if let Some(payload) = read(&mut hs, noise_msg) {
                let answer = write(&mut hs, &[ACCEPT], &self.payload)?;
                self.client_payload = payload;
                self.key_index = i;
                self.hs = Some(hs);
                return Ok(Some(answer));
            }
        }
        Err(SecureError::WrongKey)
    }

    /// What the client sent with its first message.
    pub fn client_payload(&self) -> &[u8] {
        &self.client_payload
    }

    /// Which of the node's keys the client holds (0: the first), for
    /// following a rollover in the logs.
    pub fn key_index(&self) -> usize {
        self.key_index
    }

    /// The session, once the answer is sent. The client is proven live at
    /// its first frame that opens (a replayed first message gets no further).
    pub fn finish(self) -> Result<Transport, SecureError> {
        finish(self.hs, false)
    }
}

/// Checks the clear header: magic, then version; returns the Noise message.
fn check_header(msg: &[u8]) -> Result<&[u8], SecureError> {
    let magic = MAGIC.as_bytes();
    if msg.len() < magic.len() || &msg[..magic.len()] != magic {
        return Err(SecureError::NotPp);
    }
    let version = msg
        .get(magic.len()..HEADER)
        .and_then(|v| <[u8; 4]>::try_from(v).ok())
        .map(u32::from_be_bytes)
        .ok_or(SecureError::Malformed("no version"))?;
    if version != PROTOCOL_VERSION {
        return Err(SecureError::Version {
            ours: PROTOCOL_VERSION,
            theirs: version,
        });
    }
    Ok(&msg[HEADER..])
}

/// The answer a node sends before closing, for the error its handshake (or
/// its admission: too many connections) gave. Holds nothing derived from
/// the key.
pub fn refusal(error: &SecureError) -> Vec<u8> {
    let (code, reason) = match error {
        SecureError::WrongKey => (Code::WrongKey, String::new()),
        SecureError::Version { .. } => (Code::Version, String::new()),
        SecureError::NotPp => (Code::NotPp, String::new()),
        SecureError::Malformed(why) => (Code::Malformed, (*why).to_owned()),
        SecureError::Refused(reason) => (Code::Other, reason.clone()),
        SecureError::Busy(reason) => (Code::Busy, reason.clone()),
        other => (Code::Other, other.to_string()),
    };
    let mut out = vec![REFUSE, code as u8];
    out.extend_from_slice(&PROTOCOL_VERSION.to_be_bytes());
    let cut = (0..=reason.len().min(MAX_REASON))
        .rev()
        .find(|&i| reason.is_char_boundary(i))
        .unwrap_or(0);
    out.extend_from_slice(&reason.as_bytes()[..cut]);
    out
}

/// A node's refusal for now (`too many connections`), as a [`refusal`]:
/// the client redials later, whatever the text says.
pub fn refusal_busy(reason: &str) -> Vec<u8> {
    refusal(&SecureError::Busy(reason.to_owned()))
}

/// A node's reason for refusing, of its own (`too many connections`), as a
/// [`refusal`].
pub fn refusal_reason(reason: &str) -> Vec<u8> {
    refusal(&SecureError::Refused(reason.to_owned()))
}

fn parse_refusal(rest: &[u8]) -> SecureError {
    let (Some(&code), Some(version)) = (rest.first(), rest.get(1..5)) else {
        return SecureError::Malformed("short refusal");
    };
    let theirs = u32::from_be_bytes([version[0], version[1], version[2], version[3]]);
    let reason = escape(&String::from_utf8_lossy(&rest[5..])).into_owned();
    match code {
        c if c == Code::WrongKey as u8 => SecureError::WrongKey,
        c if c == Code::Version as u8 => SecureError::Version {
            ours: PROTOCOL_VERSION,
            theirs,
        },
        c if c == Code::NotPp as u8 => {
            SecureError::Refused("the node says we are not a pp client".into())
        }
        c if c == Code::Malformed as u8 => SecureError::Refused(format!(
            "the node says our handshake is malformed: {reason}"
        )),
        c if c == Code::Busy as u8 => SecureError::Busy(reason),
        _ => SecureError::Refused(reason),
    }
}

#[cfg(test)]
mod tests;
