//! What the client and the node share, with no sockets in it.
//!
//! | module | owns |
//! | --- | --- |
//! | `error` | [`JobError`] and [`ErrorKind`]: how a job fails |
//! | `job` | the [`Job`] trait, the [`job!`] macro, the MessagePack codec of arguments and results |
//! | `registry` | [`Registry`]: job names to type-erased runners, filled by `job!` at link time |
//! | `lanes` | [`Lanes`]: the job queue, with a front lane for work handed back |
//! | `fair` | [`RoundRobin`]: queues per client served in turn (a node's fair share of workers) |
//! | `pool` | [`Pool`]: resizable worker threads pulling from a shared queue; [`Pending`]: waiting for work to drain |
//! | `stats` | [`NodeCounters`] while jobs run, [`Stats`] to read and print |
//! | `wire` | the protocol's messages and the frame codec ([`encode_frame`], [`decode_frame`], [`FrameReader`]) |
//! | `handshake` | mutual HMAC-SHA256 authentication as pure state ([`ClientHandshake`], [`NodeHandshake`]) |
//! | `program` | a shipped program's identity ([`program::ProgramInfo`]) and a node's answer to an offer |
//! | `upload` | a program upload as pure state: chunks out, chunks in, checked by size and SHA-256 |
//! | `ledger` | [`Ledger`]: one node's in-flight jobs and window; who owns each job |
//! | `worker` | worker processes: [`init_worker`], the one way a program re-runs itself as a job server |
//! | `framing` | [`Framer`]: the one place a link turns messages into bytes and back |
//! | `link` | [`ClientLink`]: one client↔node link as a state machine (events in, actions out) |
//! | `node_link` | [`NodeLink`]: the node's side of one connection, the same shape |
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

mod error;
mod fair;
mod framing;
mod handshake;
mod job;
mod lanes;
mod ledger;
pub mod link;
mod node_link;
mod pending;
mod pool;
pub mod program;
mod registry;
mod stats;
pub mod upload;
pub mod wire;
pub mod worker;

pub use error::{ErrorKind, JobError};
pub use fair::RoundRobin;
pub use framing::Framer;
pub use handshake::{nonce, ClientHandshake, HandshakeError, NodeHandshake, Secret};
pub use job::{
    check_size, decode, encode, quiet_job_panics, run_caught, run_erased, Fallible, Job,
};
pub use lanes::Lanes;
pub use ledger::Ledger;
pub use link::{Action, ClientLink, Event, LinkConfig, LinkState, NodeHello};
pub use node_link::{NodeAction, NodeEvent, NodeLink, NodeLinkConfig, CLIENT_HANDSHAKE_MAX_FRAME};
pub use pending::Pending;
pub use pool::Pool;
pub use registry::{DuplicateJob, JobEntry, Registry};
pub use stats::{NodeCounters, NodeStats, Stats};
pub use wire::{decode_frame, encode_frame, FrameError, FrameReader};
pub use worker::{init_worker, init_worker_with};

#[doc(hidden)]
pub use inventory;
