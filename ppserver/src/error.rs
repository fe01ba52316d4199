//! Why a node could not start: the one error of the public entry points.

use std::net::SocketAddr;

/// Why a node could not start.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// No key, or a value that is not a generated key: every session is
    /// encrypted and authenticated with the cluster's key.
    #[error(transparent)]
    Key(#[from] ppcore::KeyError),
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// Process isolation re-runs this program as worker processes, and this
    /// program never calls [`init_worker`](crate::init_worker): its workers
    /// would run `main` instead of jobs.
    #[error("--isolation process needs this program to call ppserver::init_worker() first in main (main_with and main_linked do)")]
    NoWorkerMode,
    /// Another I/O failure at start.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

ppcore::debug_as_display!(ServeError);
