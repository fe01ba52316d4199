//! `ppserver`, the node daemon of the pp job cluster, as a library: link your
//! own jobs and start a node in a few lines.
//!
//! ```no_run
//! ppcore::job! {
//!     /// A job only my nodes know.
//!     pub fn shout(text: String) -> String { text.to_uppercase() }
//! }
//! fn main() -> std::process::ExitCode {
//!     // Every job linked into this binary (the built-in `jobs` and `shout`).
//!     ppserver::main_linked()
//! }
//! ```
//!
//! | module | owns |
//! | --- | --- |
//! | `config` | [`Config`] and the command line ([`Cli`]) |
//! | `node` | state shared by a node's connections: registry, job queue, counters, drain |
//! | `conn` | one connection: handshake, then jobs in and results out |
//! | `out` | a connection's writer; batches results of jobs that end together |
//! | `isolate` | isolation mode: worker processes that run jobs, replaced when they crash |
//! | `daemon` | [`start`]: listener, workers, discovery, `--join`, idle timeout, graceful stop |
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

mod config;
mod conn;
mod daemon;
mod isolate;
mod node;
mod out;

pub use config::{gen_secret_if_asked, Cli, Config, Isolation};
pub use daemon::{main_linked, main_with, start, Running, ServeError};

/// This build's version, as nodes report it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
