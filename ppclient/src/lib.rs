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
//! | module | owns |
//! | --- | --- |
//! | `server` | [`Server`]: submit, wait, map, groups, stats |
//! | `builder`, `options` | [`Builder`] (ncpus, nodes, keys, discovery, listen, retries) and per-job [`Options`], [`JobOptions`] |
//! | `core` | what the server's threads share: the queue, links, stop flag; who can run a job |
//! | `remote` | what the server knows of each node (state, jobs, counters); starts its link |
//! | `session` | the driver of one link ([`ppcore::ClientLink`]): dial, read, write, feed jobs from the queue within the window, resolve or requeue what the link gives back |
//! | `ship` | [`init`], and shipping this program to nodes that lack its jobs: offer, chunked upload |
//! | `connect` | resolve, connect and authenticate; `node_status` |
//! | `discovery` | UDP discovery probes and nodes that join a listening server |
//! | `dns` | nodes from a DNS name: one per address, resolved again as nodes come and go |
//! | `slurm` | [`Slurm`]: `ppserver`s started by `srun` in an allocation, or in one it `sbatch`es |
//! | `handle` | the result cell and [`JobHandle`]: wait, poll, await, cancel; [`AsCompleted`] |
//! | `task` | the type-erased queue item and how a local worker runs it |
//! | `tracker` | pending counts for `wait_all` / `wait_group`, outcome counters, the callback thread |
//! | `dashboard` | the live web dashboard (`Builder::dashboard`): recorder, `/events`, `/api/status` |
//! | `timer` | the thread that fires job timeouts |
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

mod builder;
mod connect;
mod core;
mod dashboard;
mod discovery;
mod dns;
mod handle;
mod options;
mod remote;
mod server;
mod session;
mod ship;
mod slurm;
mod task;
mod timer;
mod tracker;

pub use builder::{detect_ncpus, BuildError, Builder, SECRET_ENV};
pub use connect::{node_status, node_status_with, StatusError, StatusErrorKind};
pub use handle::{AsCompleted, JobHandle};
pub use options::{JobOptions, Options};
pub use ppcore::link::Refusal;
pub use ppcore::wire::NodeStatus;
pub use ppcore::{
    job, DuplicateJob, ErrorKind, Fallible, Job, JobEntry, JobError, Key, KeySet, NodeStats,
    Registry, Stats,
};
/// Numeric vectors (`f64`, `f32`, `i64`, ...) that travel as raw
/// little-endian bytes: the fast way to send arrays.
pub use ppcore::{Array, Element};
/// A value shared by many jobs, sent once per node ([`Server::share`]).
pub use ppcore::{Shared, SharedId};
pub use remote::{NodeInfo, NodeState};
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
pub use server::Server;
pub use ship::init;
pub use slurm::{Slurm, SlurmError};

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
