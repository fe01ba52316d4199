//! What the client and the node share, with no sockets in it (but for the
//! small HTTP server in `http`).
//!
//! | module | owns |
//! | --- | --- |
//! | `array` | [`Array`]: numeric vectors as little-endian raw bytes in one binary |
//! | `budget` | the client's byte budget: [`budget::ByteBudget`] (pure) and [`budget::BudgetGate`] (waits while full) |
//! | `error` | [`JobError`] and [`ErrorKind`]: how a job fails |
//! | `job` | the [`Job`] trait, the [`job!`] macro, the MessagePack codec of arguments and results |
//! | `registry` | [`Registry`]: job names to type-erased runners, filled by `job!` at link time |
//! | `lanes` | [`Lanes`]: the job queue, with a front lane for work handed back; consumers that take only some kinds of job, woken ([`Wake`]) by the next push |
//! | `outbox` | [`Outbox`]: bytes waiting for a non-blocking socket, and the peer's write progress |
//! | `fair` | [`RoundRobin`]: queues per client served in turn (a node's fair share of workers) |
//! | `pool` | [`Pool`]: resizable worker threads pulling from a shared queue; [`Pending`]: waiting for work to drain |
//! | `shared` | [`Shared`]: a value sent once per node and decoded once per process; [`shared::SharedStore`], a node's cache of them |
//! | `stats` | [`NodeCounters`] while jobs run, [`Stats`] to read and print |
//! | `stream` | payloads over one frame as chunked streams: [`stream::Outgoing`] cuts, [`stream::Assembler`] puts back, within limits and a progress deadline |
//! | `wire` | the protocol's messages and the frame codec ([`encode_frame`], [`decode_frame`], [`FrameReader`]) |
//! | `limits` | numbers from users checked: seconds and worker counts for command lines, deadlines that cannot overflow |
//! | `key` | [`Key`] and [`KeySet`]: generated 256-bit keys in the `ppk1-` text form, rollover, key files |
//! | `secure` | the session's Noise `NNpsk0` handshake as pure state ([`secure::ClientHandshake`], [`secure::NodeHandshake`]) |
//! | `transport` | [`Transport`]: every frame after the handshake sealed and opened, one key per direction |
//! | `escape` | [`escape()`]: control characters in peer text made visible before logging or printing |
//! | `program` | a shipped program's identity ([`program::ProgramInfo`]) and a node's answer to an offer |
//! | `upload` | a program upload as pure state: chunks out, chunks in, checked by size and SHA-256 |
//! | `ledger` | [`Ledger`]: one node's in-flight jobs and window; who owns each job |
//! | `worker` | worker processes: [`init_worker`], the one way a program re-runs itself as a job server |
//! | `framing` | [`Framer`]: the one place a link turns messages into bytes and back |
//! | `link` | [`ClientLink`]: one client↔node link as a state machine (events in, actions out) |
//! | `node_link` | [`NodeLink`]: the node's side of one connection, the same shape; it decides the node's rules (one upload at a time and its stall limit, shared values, the backlog limit) and hands out transmits, its timer and events ([`NodeAction`]) apart; typed reasons ([`NodeCloseReason`]) |
//! | `io_driver` | what both link drivers share: the sizes of a turn, one read of a `mio` socket, the spin before a driver sleeps |
//! | `http` | the small HTTP/1.1 server of `/metrics` and the dashboard: pure request parsing and connection table, one `mio` thread around them (the one module here with sockets) |
//! | `window` | [`window::SendWindow`]: the bytes a link lets wait unsent before it holds back the next payload |
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

mod array;
mod bigbuf;
mod bins;
pub mod budget;
mod error;
mod escape;
mod fair;
mod fast;
mod framing;
pub mod http;
mod idmap;
pub mod io_driver;
mod job;
mod key;
mod lanes;
mod ledger;
pub mod limits;
pub mod link;
mod node_link;
mod outbox;
mod pending;
mod pool;
pub mod program;
mod registry;
pub mod secure;
pub mod shared;
mod stats;
pub mod stream;
pub mod sync;
mod transport;
pub mod upload;
pub mod window;
pub mod wire;
pub mod worker;

pub use array::{Array, Element};
pub use error::{ErrorKind, JobError};
pub use escape::{escape, escape_bytes, MAX_PEER_TEXT};
pub use fair::RoundRobin;
pub use framing::Framer;
#[doc(hidden)]
pub use job::__clone;
pub use job::{
    check_args, check_size, decode, encode, encode_args, quiet_job_panics, run_caught, run_erased,
    Cloner, Fallible, Job,
};
pub use key::{
    write_new_key_file, Key, KeyError, KeySet, KEY_LEN, KEY_PREFIX, MAX_KEYS, SECRET_ENV,
};
pub use lanes::{Lanes, Wake};
pub use ledger::Ledger;
pub use link::{Action, ClientLink, Event, LinkConfig, LinkState, NodeHello};
pub use node_link::reason::{NodeCloseReason, TransportEnd, UploadRefusal};
pub use node_link::{NodeAction, NodeEvent, NodeLink, NodeLinkConfig, CLIENT_HANDSHAKE_MAX_FRAME};
pub use outbox::Outbox;
pub use pending::Pending;
pub use pool::Pool;
pub use registry::{DuplicateJob, JobEntry, Registry};
pub use secure::SecureError;
pub use shared::{Shared, SharedId};
pub use stats::{NodeCounters, NodeStats, Stats};
pub use transport::{Cipher, Opener, Sealer, Transport, CIPHER, SEAL_OVERHEAD};
pub use wire::{decode_frame, encode_frame, FrameError, FrameReader};
pub use worker::{init_worker, init_worker_with};

#[doc(hidden)]
pub use inventory;
#[doc(hidden)]
pub use serde;
/// The `job!` macro's codec helpers (not an API).
#[doc(hidden)]
pub mod __fast {
    pub use crate::fast::*;
}
