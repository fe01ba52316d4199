//! Bytes on the wire: the protocol's messages, the frame codec, payloads
//! cut into streams, a shipped program's identity, discovery's probe and
//! answer. Pure functions and state over bytes; no sockets.
//!
//! | file | owns |
//! | --- | --- |
//! | `messages` | [`ClientMsg`] and [`NodeMsg`], with the jobs ([`RunJob`], [`DoneJob`]) and status they carry |
//! | `frame` | the frame codec ([`encode_frame`], [`decode_frame`], [`FrameReader`], [`FrameError`]) and frame sizes ([`max_payload`], [`batches_by_size`]) |
//! | `stream` | payloads over one frame as chunked streams (public as `ppcore::stream`) |
//! | `program` | a shipped program's identity and a node's answer to an offer (public as `ppcore::program`) |
//! | `discovery` | the UDP probe a client broadcasts and a node's answer |
//! | `run` | a journaled run's identity ([`RunId`]) and its jobs' ([`JobKey`]) |
//!
//! The protocol's magic and version are the handshake's greeting, so they
//! are defined in `session::handshake` (which must not depend on this
//! module: frame errors carry the session's errors); they are re-exported
//! here under their old paths.
//!
//! This file only re-exports (`ppcore::wire::...`); inside the crate, name
//! items in the file that defines them.

pub(crate) mod discovery;
pub(crate) mod frame;
pub(crate) mod messages;
pub mod program;
pub(crate) mod run;
pub mod stream;
#[cfg(test)]
mod tests;

pub use crate::session::handshake::{MAGIC, PROTOCOL_VERSION};
pub use discovery::{discovery_reply, parse_discovery_reply, DEFAULT_PORT, DISCOVERY_PROBE};
pub use frame::{
    batches_by_size, decode_frame, encode_frame, max_payload, FrameError, FrameReader,
    DEFAULT_MAX_FRAME, PER_JOB_OVERHEAD,
};
pub use messages::{ClientMsg, DoneJob, JobInfo, KeepOp, NodeMsg, NodeStatus, RunJob, CAP_SHIP};
pub use run::{JobKey, RunId};
