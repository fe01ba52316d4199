//! `ppserver`, the node daemon of the pp job cluster, as a library: a node
//! binary with your own jobs, or a node inside a program of your own.
//!
//! Two ways in:
//! - [`main_linked`] (or [`main_with`] a [`Registry`](ppcore::Registry)) is a
//!   node binary's whole `main`: it parses `ppserver`'s command line ([`Cli`]),
//!   sets up logging, serves until SIGTERM/SIGINT, and handles the worker
//!   processes of `--isolation process` itself.
//! - A program with a command line of its own (a client that is also a node,
//!   subcommands) calls [`init_worker`] first in `main`, builds a [`Config`],
//!   and calls [`serve`] (blocks until a signal) or [`start`] (returns a
//!   [`Running`] node to stop when it likes). Without `init_worker`,
//!   [`Isolation::Process`] is refused with [`ServeError::NoWorkerMode`].
//!
//! ```no_run
//! ppcore::job! {
//!     /// A job only my nodes know.
//!     pub fn shout(text: String) -> String { text.to_uppercase() }
//! }
//! fn main() -> std::process::ExitCode {
//!     // Every job linked into this binary (`shout`, and any crate's jobs it links).
//!     ppserver::main_linked()
//! }
//! ```
//!
//! A client program reaches all of this as `ppclient::node` (ppclient's
//! `node` feature) without a dependency of its own.
//!
//! | module | owns |
//! | --- | --- |
//! | `cache` | shipped programs on disk: a directory per node by default, named by hash, private, capped (uploads under way included), safe to share (temporary files renamed into place) |
//! | `config` | [`Config`] and the command line ([`Cli`]) |
//! | `node` | state shared by a node's connections: registry, job queue, counters, drain |
//! | `admission` | who may hold a connection: limits on strangers (overall, per address) apart from clients, pure |
//! | `memory` | `--max-memory`: bytes of queued arguments and unwritten results, held until dropped |
//! | `conn` | the driver of one connection around [`ppcore::NodeLink`]: one thread that waits on the socket and its wake-ups, reads, writes (with a no-progress timeout), bounds the client's unwritten results |
//! | `out` | how workers and the daemon reach a connection: a channel to its driver and a waker, its cancelled jobs |
//! | `programs` | shipped programs: offers, one upload per hash (others wait as connection state, `programs/waiting`), program worker processes |
//! | `isolate` | isolation mode: worker processes that run jobs, replaced when they crash |
//! | `metrics` | `--metrics`: the node's counters at `/metrics` in the Prometheus text format |
//! | `daemon` | [`start`], [`serve`], [`main_with`]: listener, workers, discovery, `--join`, idle timeout, graceful stop |
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

mod admission;
mod cache;
mod config;
mod conn;
mod daemon;
mod isolate;
mod memory;
mod metrics;
mod node;
mod out;
mod programs;

pub use config::{Cli, Config, Isolation, DEFAULT_CACHE_MAX, VERSION};
pub use daemon::{main_linked, main_with, serve, start, Running, ServeError};
pub use ppcore::init_worker;
