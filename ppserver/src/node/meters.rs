//! Counters a node keeps only for `--metrics` (the `metrics` module reads
//! them at each scrape): lock-free, touched where the work happens.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// Counters a node keeps only for its metrics.
#[derive(Default)]
pub(crate) struct Meters {
    pub(crate) handshake_failures: AtomicU64,
    pub(crate) running: AtomicU64,
    pub(crate) bytes_in: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
    /// Kept values on all connections, their bytes, and the jobs parked
    /// for one (each connection adds what changed: [`Meters::kept`]).
    pub(crate) kept_values: AtomicU64,
    pub(crate) kept_bytes: AtomicU64,
    pub(crate) jobs_waiting: AtomicU64,
    /// Where `/metrics` is served, once it is.
    pub(crate) addr: OnceLock<SocketAddr>,
}

/// Counts a job as running while it lives.
pub(crate) struct RunningGuard<'a>(&'a AtomicU64);

impl Drop for RunningGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Meters {
    /// Counts a connection that closed before its client authenticated.
    pub(crate) fn handshake_failed(&self) {
        self.handshake_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts `n` bytes read from a client.
    pub(crate) fn received(&self, n: usize) {
        self.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Counts `n` bytes written to a client.
    pub(crate) fn sent(&self, n: usize) {
        self.bytes_out.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// A connection's kept figures went from `was` to `now` (values, bytes,
    /// parked jobs); `now` becomes its last.
    pub(crate) fn kept(&self, was: &mut [u64; 3], now: [u64; 3]) {
        let meters = [&self.kept_values, &self.kept_bytes, &self.jobs_waiting];
        for ((meter, was), now) in meters.into_iter().zip(was.iter_mut()).zip(now) {
            match now >= *was {
                true => meter.fetch_add(now - *was, Ordering::Relaxed),
                false => meter.fetch_sub(*was - now, Ordering::Relaxed),
            };
            *was = now;
        }
    }

    /// Counts a job as running until the guard is dropped.
    pub(crate) fn running(&self) -> RunningGuard<'_> {
        self.running.fetch_add(1, Ordering::Relaxed);
        RunningGuard(&self.running)
    }
}
