//! Parallel Python for Rust programs: a [`Server`] runs jobs on a local pool
//! of worker threads and on `ppserver` nodes, and hands back a [`JobHandle`] per job.
//!
//! One dependency is enough: this crate re-exports [`job!`], the [`Job`] and
//! [`Registry`] types, [`ByteBuf`] for byte arguments, `serde` for your own
//! argument types (`#[serde(crate = "ppclient::serde")]`), and, with the
//! `node` feature (off by default: a client needs none of it, [`init`]
//! included), the node library as `node` (`ppserver`).
//!
//! ```
//! ppclient::job! {
//!     /// Squares a number.
//!     pub fn square(x: u64) -> u64 { x * x }
//! }
//! let server = ppclient::Server::builder().ncpus(2).build()?;
//! let handle = server.submit(square, (7,));
//! assert_eq!(handle.wait()?, 49);
//! let squares: Vec<u64> = server.map(square, (0..4).map(|x| (x,))).collect::<Result<_, _>>()?;
//! assert_eq!(squares, [0, 1, 4, 9]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The modules, from the top down; each names only those below it (checked
//! by `pptest/tests/layout.rs`: no import circle between files or folders).
//!
//! | module | owns |
//! | --- | --- |
//! | `api::server` | [`Server`]: submit, wait, map, groups, stats, nodes |
//! | `api::builder`, `api::options` | [`Builder`] (ncpus, nodes, keys, discovery, listen, retries) and per-job [`Options`], [`JobOptions`] |
//! | `api::handle` | [`JobHandle`]: wait, poll, await, cancel; [`AsCompleted`] |
//! | `slurm` | the server as the `ppslurm` crate's `Client` (nodes up and down, waits on its condvar, fails what is queued); [`Slurm`] (`ppserver`s started by `srun` in an allocation, or in one it `sbatch`es) is that crate's |
//! | `dashboard` | the live web dashboard (`Builder::dashboard`): `/events`, `/api/status` |
//! | `find::discovery` | UDP discovery probes and nodes that join a listening server |
//! | `find::dns` | nodes from a DNS name: one per address, resolved again as nodes come and go |
//! | `link::driver` | the driver of one link ([`ppcore::ClientLink`]): read, write, feed jobs from the queue within the window, resolve or requeue what the link gives back |
//! | `link::dial` | resolve, connect and authenticate; `node_status` |
//! | `link::ship` | [`init`], and shipping this program to nodes that lack its jobs: offer, chunked upload |
//! | `link::spawn` | the thread of a named node's link |
//! | `cluster::state` | what the server's threads share: the queue, the node records, the stop flag and the news of nodes; who can run a job |
//! | `cluster::node` | what the server knows of each node ([`NodeInfo`], [`NodeState`]): one snapshot per node, read and written whole |
//! | `cluster::joins` | the table of nodes joining a listening server |
//! | `jobs::task` | the type-erased queue item and how a local worker runs it |
//! | `jobs::cell` | a job's result cell: resolved exactly once |
//! | `jobs::tracker` | pending counts for `wait_all` / `wait_group`, outcome [`Counts`](jobs::tracker::Counts), the callback thread |
//! | `jobs::recorder` | what the dashboard shows beyond the stats: recent tasks and errors, per-link traffic |
//! | `jobs::timer` | the thread that fires job timeouts |
//! | `journal` | the journal ([`Builder::journal`]): the lookup at `submit`, the writer thread that commits results in batches before they are seen |
//! | `journal::store` | the journal's redb file: open, check (format, jobs, checksums), read, write |
//! | `journal::key` | pure: a job's identity (name, hash of arguments, occurrence, or the user's key), records and their checksums |
//!
//! Where this departs from the obvious shape, and why: the dashboard's
//! recorder sits in `jobs/`, not `dashboard/`, because the job runners and
//! the links feed it while the dashboard (which reads the cluster) sits
//! above them; the join table sits in `cluster/`, not `find/`, because a
//! joined node's link driver holds its place in it and `find/` starts
//! drivers; `Server::builder` is written beside [`Builder`] so that the
//! server names no builder.
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

mod api;
mod cluster;
mod dashboard;
mod find;
mod jobs;
mod journal;
mod link;
mod slurm;

pub use api::builder::{detect_ncpus, BuildError, Builder, SECRET_ENV};
pub use api::handle::{AsCompleted, JobHandle};
pub use api::options::{JobOptions, Options};
pub use api::server::Server;
pub use cluster::node::{NodeInfo, NodeState};
pub use journal::JournalError;
pub use link::dial::{node_status, node_status_with, StatusError, StatusErrorKind};
pub use link::ship::init;
pub use ppcore::link::{DownReason, Refusal};
/// What a job asks for and a machine offers (docs/RESOURCES.md).
pub use ppcore::resources::{Offer, Request};
pub use ppcore::wire::NodeStatus;
pub use ppcore::{
    job, DuplicateJob, ErrorKind, Fallible, Job, JobEntry, JobError, Key, KeySet, NodeStats,
    Registry, Stats,
};
/// What a running job holds ([`Options::cpus`], [`Options::resource`]):
/// `job_context().instances("gpu")` inside a job says which GPUs are its.
pub use ppcore::{job_context, JobContext};
/// Numeric vectors (`f64`, `f32`, `i64`, ...) that travel as raw
/// little-endian bytes: the fast way to send arrays.
pub use ppcore::{Array, Element};
/// A value shared by many jobs, sent once per node ([`Server::share`]).
pub use ppcore::{Shared, SharedId};
pub use ppslurm::{Slurm, SlurmError};
/// serde, for the derives of your own argument and result types, without a
/// dependency on serde of your own:
///
/// ```
/// use ppclient::serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// #[serde(crate = "ppclient::serde")]
/// pub struct Point { x: i64, y: i64 }
///
/// ppclient::job! {
///     /// The Manhattan length of a point.
///     pub fn manhattan(p: Point) -> i64 { p.x.abs() + p.y.abs() }
/// }
/// let server = ppclient::Server::builder().ncpus(1).build()?;
/// assert_eq!(server.submit(manhattan, (Point { x: 3, y: -4 },)).wait()?, 7);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub use serde;
/// Bytes that travel as one MessagePack binary, as a plain `Vec<u8>` does.
pub use serde_bytes::{ByteBuf, Bytes};

/// The node library (`ppserver`): run a node with your own jobs from this
/// program, e.g. as a subcommand. See [`node::main_linked`].
#[cfg(feature = "node")]
pub use ppserver as node;

/// The README's Rust examples, compiled and run as doc tests with this crate
/// alone.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;

/// The Rust examples of docs/DASHBOARD.md, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../../docs/DASHBOARD.md")]
pub struct DashboardDoctests;

/// The Rust examples of docs/DATA.md, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../../docs/DATA.md")]
pub struct DataDoctests;

/// The Rust examples of docs/JOURNAL.md, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../../docs/JOURNAL.md")]
pub struct JournalDoctests;

/// The Rust examples of docs/KEPT.md, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../../docs/KEPT.md")]
pub struct KeptDoctests;

/// The Rust examples of docs/NODES.md, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../../docs/NODES.md")]
pub struct NodesDoctests;

/// The Rust examples of docs/SHIPPING.md, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../../docs/SHIPPING.md")]
pub struct ShippingDoctests;

/// The Rust examples of docs/SLURM.md, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../../docs/SLURM.md")]
pub struct SlurmDoctests;
