//! What the client and the node share, with no sockets in it.
//!
//! | module | owns |
//! | --- | --- |
//! | `error` | [`JobError`] and [`ErrorKind`]: how a job fails |
//! | `job` | the [`Job`] trait, the [`job!`] macro, the MessagePack codec of arguments and results |
//! | `registry` | [`Registry`]: job names to type-erased runners, filled by `job!` at link time |
//! | `lanes` | [`Lanes`]: the job queue, with a front lane for work handed back |
//! | `pool` | [`Pool`]: resizable worker threads pulling from a shared queue; [`Pending`]: waiting for work to drain |
//! | `stats` | [`NodeCounters`] while jobs run, [`Stats`] to read and print |
//! | `wire` | the protocol's messages and the frame codec ([`encode_frame`], [`decode_frame`], [`FrameReader`]) |
//! | `key` | [`Key`] and [`KeySet`]: generated 256-bit keys in the `ppk1-` text form, rollover, key files |
//! | `secure` | the session's Noise `NNpsk0` handshake as pure state ([`secure::ClientHandshake`], [`secure::NodeHandshake`]) |
//! | `transport` | [`Transport`]: every frame after the handshake sealed and opened, one key per direction |
//! | `escape` | [`escape()`]: control characters in peer text made visible before logging or printing |
//! | `ledger` | [`Ledger`]: one node's in-flight jobs and window; who owns each job |
//! | `worker` | worker processes: [`init_worker`], the one way a program re-runs itself as a job server |
//! | `framing` | [`Framer`]: the one place a link turns messages into bytes and back |
//! | `link` | [`ClientLink`]: one client↔node link as a state machine (events in, actions out) |
//! | `node_link` | [`NodeLink`]: the node's side of one connection, the same shape |
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

mod error;
mod escape;
mod framing;
mod job;
mod key;
mod lanes;
mod ledger;
pub mod link;
mod node_link;
mod pending;
mod pool;
mod registry;
pub mod secure;
mod stats;
mod transport;
pub mod wire;
pub mod worker;

pub use error::{ErrorKind, JobError};
pub use escape::{escape, escape_bytes, MAX_PEER_TEXT};
pub use framing::Framer;
pub use job::{
    check_size, decode, encode, quiet_job_panics, run_caught, run_erased, Fallible, Job,
};
pub use key::{write_new_key_file, Key, KeyError, KeySet, KEY_LEN, KEY_PREFIX, MAX_KEYS};
pub use lanes::Lanes;
pub use ledger::Ledger;
pub use link::{Action, ClientLink, Event, LinkConfig, LinkState, NodeHello};
pub use node_link::{NodeAction, NodeEvent, NodeLink, NodeLinkConfig, CLIENT_HANDSHAKE_MAX_FRAME};
pub use pending::Pending;
pub use pool::Pool;
pub use registry::{DuplicateJob, JobEntry, Registry};
pub use secure::SecureError;
pub use stats::{NodeCounters, NodeStats, Stats};
pub use transport::{Cipher, Opener, Sealer, Transport, CIPHER, SEAL_OVERHEAD};
pub use wire::{decode_frame, encode_frame, FrameError, FrameReader};
pub use worker::{init_worker, init_worker_with};

#[doc(hidden)]
pub use inventory;
