//! Parallel Python for Rust programs: a [`Server`] runs jobs on a local pool
//! of worker threads and on `ppserver` nodes, and hands back a [`JobHandle`] per job.
//!
//! ```
//! ppcore::job! {
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
//! | `builder`, `options` | [`Builder`] (ncpus, nodes, secret, discovery, listen, retries) and per-job [`Options`] |
//! | `core` | what the server's threads share: the queue, links, stop flag; who can run a job |
//! | `remote` | a link per node: its state, reconnecting with backoff, rescheduling on loss |
//! | `session` | one live connection: feed jobs in batches within the window, read results, heartbeat |
//! | `connect` | resolve, connect and authenticate; `node_status` |
//! | `discovery` | UDP discovery probes and nodes that join a listening server |
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
mod handle;
mod options;
mod remote;
mod server;
mod session;
mod task;
mod timer;
mod tracker;

pub use builder::{detect_ncpus, BuildError, Builder};
pub use connect::{node_status, StatusError};
pub use handle::{AsCompleted, JobHandle};
pub use options::Options;
pub use ppcore::wire::NodeStatus;
pub use ppcore::{ErrorKind, Job, JobError, NodeStats, Registry, Stats};
pub use remote::{NodeInfo, NodeState};
pub use server::Server;
