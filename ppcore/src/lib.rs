//! What the client and the node share, with no sockets in it.
//!
//! | module | owns |
//! | --- | --- |
//! | `error` | [`JobError`] and [`ErrorKind`]: how a job fails |
//! | `job` | the [`Job`] trait, the [`job!`] macro, the MessagePack codec of arguments and results |
//! | `registry` | [`Registry`]: job names to type-erased runners, filled by `job!` at link time |
//! | `pool` | [`Pool`]: resizable worker threads pulling from a shared queue |
//! | `stats` | [`NodeCounters`] while jobs run, [`Stats`] to read and print |
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

mod error;
mod job;
mod pool;
mod registry;
mod stats;

pub use error::{ErrorKind, JobError};
pub use job::{decode, encode, run_caught, run_erased, Job};
pub use pool::Pool;
pub use registry::{DuplicateJob, JobEntry, Registry};
pub use stats::{NodeCounters, NodeStats, Stats};

#[doc(hidden)]
pub use inventory;
