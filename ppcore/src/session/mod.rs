//! The encrypted session between a client and a node: the keys both hold,
//! the Noise handshake that proves it, and the transport that seals every
//! frame after it. Pure state over bytes; reading and writing key files is
//! the one I/O here.
//!
//! | file | owns |
//! | --- | --- |
//! | `key` | [`Key`](key::Key) and [`KeySet`](key::KeySet): 256-bit keys in the `ppk1-` text form, rollover, key files |
//! | `handshake` | the `NNpsk0` handshake as pure state, its refusals, and the protocol's magic and version it greets with (public as `ppcore::secure`) |
//! | `transport` | [`Transport`](transport::Transport): frames sealed and opened, one key per direction |
//! | `error` | [`SecureError`](error::SecureError), shared by the handshake and the transport |
//!
//! Dependencies point one way: `handshake` → `transport` → `error`, and
//! `handshake` → `key`. Nothing here names `wire` (frame errors in `wire`
//! carry a [`SecureError`](error::SecureError), so `wire` depends on this
//! module and not the other way round).

pub(crate) mod error;
pub mod handshake;
pub(crate) mod key;
pub(crate) mod transport;
