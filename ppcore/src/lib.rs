//! What the client and the node share, with no sockets in it (but for the
//! small HTTP server and worker processes in `io`).
//!
//! Folders per concern; dependencies point one way, from the links down:
//! `link`/`node_link` (and their `framing`, `ledger`, `window`, `outbox`,
//! `upload`) → `io`, `wire` → `session` → `escape`, and `wire` → `job`;
//! `sched`, `limits` and `sync` name nothing else here. No file names
//! `lib.rs`: inside the crate, items are named in the file that defines them.
//!
//! | module | owns |
//! | --- | --- |
//! | `wire/` | bytes on the wire: the messages ([`wire::ClientMsg`], [`wire::NodeMsg`]), the frame codec ([`encode_frame`], [`decode_frame`], [`FrameReader`]), payloads as chunked streams ([`stream::Outgoing`], [`stream::Assembler`]), a shipped program's identity ([`program::ProgramInfo`]) and a node's answer to an offer, discovery's probe and answer |
//! | `session/` | the encrypted session: [`Key`] and [`KeySet`] (`ppk1-` keys, rollover, key files), the Noise `NNpsk0` handshake as pure state ([`secure::ClientHandshake`], [`secure::NodeHandshake`]), [`Transport`] (frames sealed and opened), [`SecureError`] |
//! | `job/` | the [`Job`] trait, the [`job!`] macro, the MessagePack codec of arguments and results, [`Array`], [`Shared`] values and a node's cache of them, the [`Registry`], [`JobError`] and [`ErrorKind`]; payload buffers and maps keyed by job id |
//! | `sched/` | [`Lanes`] (the job queue; consumers woken by [`Wake`]), [`RoundRobin`] (a node's fair share of workers), the client's byte budget ([`budget::ByteBudget`], [`budget::BudgetGate`]), [`Pool`] and [`Pending`], [`NodeCounters`] and [`Stats`] |
//! | `io/` | the one folder with sockets and processes: the small HTTP/1.1 server of `/metrics` and the dashboard ([`http`]), worker processes ([`worker`], [`init_worker`]) |
//! | `escape` | [`escape()`]: control characters in peer text made visible before logging or printing (top level: the session's refusals and the links use it, and `wire` depends on `session`) |
//! | `limits` | numbers from users checked: seconds and worker counts for command lines, deadlines that cannot overflow |
//! | `sync` | [`sync::lock`], the one poison-tolerant mutex lock |
//! | `framing` | [`Framer`]: the one place a link turns messages into bytes and back |
//! | `link` | [`ClientLink`]: one client↔node link as a state machine (events in; bytes, socket commands and [`LinkEvent`]s out, each polled on its own), the rules its driver keeps (write stall, ended-job sweep, backoff, program offer and upload), typed reasons, the shared heartbeat rule and stream pull of both ends, the one test configuration |
//! | `node_link` | [`NodeLink`]: the node's side of one connection, the same shape; it decides the node's rules (one upload at a time and its stall limit, shared values, the backlog limit) and hands out transmits, its timer and events ([`NodeAction`]) apart; typed reasons ([`NodeCloseReason`]) |
//! | `ledger` | [`Ledger`]: one node's in-flight jobs and window; who owns each job |
//! | `outbox` | [`Outbox`]: bytes waiting for a non-blocking socket, and the peer's write progress |
//! | `upload` | a program upload as pure state: chunks out, chunks in, checked by size and SHA-256 |
//! | `io::driver` (`io_driver`) | what both link drivers share: the sizes of a turn, one read of a `mio` socket, the spin before a driver sleeps |
//! | `window` | [`window::SendWindow`]: the bytes a link lets wait unsent before it holds back the next payload |
//!
//! Public paths stay what they were before the folders: `ppcore::wire`,
//! `ppcore::budget`, `ppcore::http` and `ppcore::worker` are re-exported
//! here; `ppcore::stream`, `ppcore::program`, `ppcore::secure` and
//! `ppcore::shared` are small files of re-exports (`stream.rs`...), because
//! the link files name them by path and a path through a `pub use` here
//! would make them import the crate root, which imports them.
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

mod escape;
mod framing;
mod io;
mod job;
mod ledger;
pub mod limits;
pub mod link;
mod node_link;
mod outbox;
pub mod program;
mod sched;
pub mod secure;
mod session;
pub mod shared;
pub mod stream;
pub mod sync;
pub mod upload;
pub mod window;
pub mod wire;

pub use escape::{escape, escape_bytes, MAX_PEER_TEXT};
pub use framing::Framer;
pub use io::driver as io_driver;
pub use io::worker::{init_worker, init_worker_with};
pub use io::{http, worker};
pub use job::array::{Array, Element};
pub use job::codec::{check_size, decode, encode};
#[doc(hidden)]
pub use job::definition::__clone;
pub use job::definition::{
    check_args, encode_args, quiet_job_panics, run_caught, run_erased, Cloner, Fallible, Job,
};
pub use job::error::{ErrorKind, JobError};
pub use job::registry::{DuplicateJob, JobEntry, Registry};
pub use job::shared::{Shared, SharedId};
pub use ledger::Ledger;
pub use link::{ClientLink, Event, LinkConfig, LinkEvent, LinkIo, LinkState, NodeHello};
pub use node_link::reason::{NodeCloseReason, TransportEnd, UploadRefusal};
pub use node_link::{NodeAction, NodeEvent, NodeLink, NodeLinkConfig, CLIENT_HANDSHAKE_MAX_FRAME};
pub use outbox::Outbox;
pub use sched::budget;
pub use sched::pending::Pending;
pub use sched::pool::Pool;
pub use sched::queue::{Lanes, Wake};
pub use sched::round_robin::RoundRobin;
pub use sched::stats::{NodeCounters, NodeStats, Stats};
pub use session::error::SecureError;
pub use session::key::{
    write_new_key_file, Key, KeyError, KeySet, KEY_LEN, KEY_PREFIX, MAX_KEYS, SECRET_ENV,
};
pub use session::transport::{Cipher, Opener, Sealer, Transport, CIPHER, SEAL_OVERHEAD};
pub use wire::frame::{decode_frame, encode_frame, FrameError, FrameReader};

#[doc(hidden)]
pub use inventory;
#[doc(hidden)]
pub use serde;
/// The `job!` macro's codec helpers (not an API).
#[doc(hidden)]
pub mod __fast {
    pub use crate::job::param_codec::*;
}
