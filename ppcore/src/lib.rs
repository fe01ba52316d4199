//! What the client and the node share, with no sockets in it (but for the
//! small HTTP server and worker processes in `io`).
//!
//! Folders per concern; dependencies point one way, from the links down:
//! `link` → `io`, `wire` → `session` → `escape`, and `wire` → `job`;
//! `sched` names only `job` (the running job's context); `limits` and
//! `sync` name nothing else here. Inside the crate,
//! items are named in the file that defines them, never through a parent's
//! re-export (`pptest/tests/layout.rs` checks that no file and no folder is
//! in an import circle, and that no file outside tests is over 900 lines).
//!
//! | module | owns |
//! | --- | --- |
//! | `wire/` | bytes on the wire: the messages ([`wire::ClientMsg`], [`wire::NodeMsg`]), the frame codec ([`encode_frame`], [`decode_frame`], [`FrameReader`]), payloads as chunked streams ([`stream::Outgoing`], [`stream::Assembler`]), a shipped program's identity ([`program::ProgramInfo`]) and a node's answer to an offer, discovery's probe and answer |
//! | `session/` | the encrypted session: [`Key`] and [`KeySet`] (`ppk1-` keys, rollover, key files), the Noise `NNpsk0` handshake as pure state ([`secure::ClientHandshake`], [`secure::NodeHandshake`]), [`Transport`] (frames sealed and opened), [`SecureError`] |
//! | `job/` | the [`Job`] trait, the [`job!`] macro, the MessagePack codec of arguments and results, [`Array`], [`Shared`] values and a node's cache of them, the [`Registry`], [`JobError`] and [`ErrorKind`]; payload buffers and maps keyed by job id |
//! | `sched/` | what a job asks for and a machine offers ([`resources`]: requests, offers, the ledger, turns) and the ledger the running threads share ([`slots`]), [`Lanes`] (the job queue; consumers woken by [`Wake`]), [`RoundRobin`] (a node's fair share of workers), the client's byte budget ([`budget::ByteBudget`], [`budget::BudgetGate`]), [`Pool`] and [`Pending`], [`NodeCounters`] and [`Stats`] |
//! | `link/` | both ends of a link as pure state machines: [`ClientLink`] and (`link/node`) [`NodeLink`], events in; bytes, socket commands and events ([`LinkEvent`], [`NodeAction`]) out, each polled on its own; every protocol rule of the links with its fake-clock test (write stall, ended-job sweep, backoff, program offer and upload one at a time with its stall limit, shared values, the backlog limit); typed reasons ([`link::DownReason`], [`link::Refusal`], [`NodeCloseReason`]); the [`Framer`], the [`Ledger`] of jobs in flight, the [`Outbox`], the send [`window`], the program [`upload`] |
//! | `io/` | the one folder with sockets and processes: the small HTTP/1.1 server of `/metrics` and the dashboard ([`http`]), worker processes ([`worker`], [`init_worker`]), the skeleton both link drivers share ([`io_driver`]: a turn's sizes, the waker, watching the socket, one read, the spin and the sleep) |
//! | `escape` | [`escape()`]: control characters in peer text made visible before logging or printing (top level: the session's refusals and the links use it, and `wire` depends on `session`) |
//! | `limits` | numbers from users checked: seconds and worker counts for command lines, deadlines that cannot overflow |
//! | `sync` | [`sync::lock`], the one poison-tolerant mutex lock |
//!
//! Public paths stay what they were before the folders (`ppcore::stream`,
//! `ppcore::program`, `ppcore::secure`, `ppcore::shared`, `ppcore::window`,
//! `ppcore::upload`, `ppcore::budget`, `ppcore::http`, `ppcore::worker` are
//! re-exports).
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

mod escape;
mod io;
mod job;
pub mod limits;
pub mod link;
mod sched;
mod session;
pub mod sync;
pub mod wire;

pub use escape::{escape, escape_bytes, MAX_PEER_TEXT};
pub use io::driver as io_driver;
pub use io::worker::{init_worker, init_worker_with};
pub use io::{http, worker};
pub use job::array::{Array, Element};
pub use job::codec::{check_size, decode, encode};
pub use job::context::{job_context, with_job_context, JobContext, INSTANCES_ENV};
#[doc(hidden)]
pub use job::definition::__clone;
pub use job::definition::{
    check_args, encode_args, quiet_job_panics, run_caught, run_erased, Cloner, Fallible, Job,
};
pub use job::error::{ErrorKind, JobError};
pub use job::registry::{DuplicateJob, JobEntry, Registry};
pub use job::shared;
pub use job::shared::{Shared, SharedId};
pub use link::framing::Framer;
pub use link::ledger::Ledger;
pub use link::node::reason::{NodeCloseReason, TransportEnd, UploadRefusal};
pub use link::node::{NodeAction, NodeEvent, NodeLink, NodeLinkConfig, CLIENT_HANDSHAKE_MAX_FRAME};
pub use link::outbox::Outbox;
pub use link::{upload, window};
pub use link::{ClientLink, Event, LinkConfig, LinkEvent, LinkIo, LinkState, NodeHello};
pub use sched::budget;
pub use sched::pending::Pending;
pub use sched::pool::Pool;
pub use sched::queue::{Lanes, Wake};
pub use sched::resources;
pub use sched::round_robin::RoundRobin;
pub use sched::slots;
pub use sched::stats::{NodeCounters, NodeStats, Stats};
pub use sched::values;
pub use session::error::SecureError;
pub use session::handshake as secure;
pub use session::key::{
    write_new_key_file, Key, KeyError, KeySet, KEY_LEN, KEY_PREFIX, MAX_KEYS, SECRET_ENV,
};
pub use session::transport::{Cipher, Opener, Sealer, Transport, CIPHER, SEAL_OVERHEAD};
pub use wire::frame::{decode_frame, encode_frame, FrameError, FrameReader};
pub use wire::{program, stream};

#[doc(hidden)]
pub use inventory;
#[doc(hidden)]
pub use serde;
/// The `job!` macro's codec helpers (not an API).
#[doc(hidden)]
pub mod __fast {
    pub use crate::job::param_codec::*;
}
