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
//! | `node` | state shared by a node's connections: registry, job queue, counters, drain (`node/mod.rs`), and its parts: a queued job (`node/job`), how workers and the daemon reach a connection (`node/handle`: a channel to its driver and a waker, its cancelled jobs), who may hold a connection (`node/admission`: limits on strangers, overall and per address, apart from clients; pure), `--max-memory` (`node/memory`: bytes of queued arguments and unwritten results, held until dropped), the counters only `--metrics` reads (`node/meters`), spill to disk (`node/spill`: `--spill-dir` and `--spill-max`, the file format in `node/spill/file`, the sweep of gone nodes' files) |
//! | `conn` | one connection: letting it in or refusing it on the accept thread (`conn/admit`), and its driver around [`ppcore::NodeLink`] (`conn/driver`): one thread that waits on the socket and its wake-ups, reads, writes (with a no-progress timeout) and does what the link says; the link decides the protocol's rules; the connection's spill files (`conn/spilled`: written, read back checked, deleted) |
//! | `programs` | shipped programs: offers, one upload per hash (others wait as connection state, `programs/waiting`), a running program's worker processes (`programs/program`) |
//! | `isolate` | isolation mode: worker processes that run jobs, replaced when they crash; knows a job only as an `IsolatedJob` |
//! | `offer` | what the node offers jobs: `--resources` (with `gpu=auto` counted), `--tags`, `--memory` (the machine's, cgroup-aware, by default) |
//! | `metrics` | `--metrics`: the node's counters at `/metrics` in the Prometheus text format |
//! | `error` | [`ServeError`]: why a node could not start |
//! | `daemon` | [`start`], [`serve`], [`main_with`]: listener, workers, discovery, `--join`, idle timeout, graceful stop |
//!
//! Imports point one way: `daemon` → `conn` → `node` → `programs` →
//! `isolate`, `cache`; `metrics` → `node`, `error`; `config` → `offer`. A lower module that
//! must reach a higher one's type does so through a trait it defines
//! (`isolate::IsolatedJob`, `programs::waiting::Waiter`).
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

mod cache;
mod config;
mod conn;
mod daemon;
mod error;
mod isolate;
mod metrics;
mod node;
mod offer;
mod peer;
mod programs;

pub use config::{Cli, Config, Isolation, DEFAULT_CACHE_MAX, DEFAULT_SPILL_MAX, VERSION};
pub use daemon::{main_linked, main_with, serve, start, Running};
pub use error::ServeError;
pub use offer::GPU_DIR_ENV;
pub use ppcore::init_worker;
