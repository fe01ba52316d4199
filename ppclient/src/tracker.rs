//! Completion accounting: how many jobs are pending (server-wide and per
//! group), how they ended, and the thread that runs callbacks.

use crossbeam_channel::Sender;
use crossbeam_utils::CachePadded;
use ppcore::{ErrorKind, JobError};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// A count of unresolved jobs that threads can wait to reach zero.
#[derive(Default)]
pub(crate) struct Pending {
    count: AtomicUsize,
    lock: Mutex<()>,
    zero: Condvar,
}

impl Pending {
    pub(crate) fn add(&self) {
        self.count.fetch_add(1, Ordering::AcqRel);
    }

    pub(crate) fn done(&self) {
        if self.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            // Taking the lock orders this wake-up after a waiter's check.
            let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
            self.zero.notify_all();
        }
    }

    pub(crate) fn get(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    /// Waits until the count is zero or `deadline` passes; true if zero.
    pub(crate) fn wait_zero(&self, deadline: Option<Instant>) -> bool {
        let mut guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        while self.get() != 0 {
            match deadline {
                None => guard = self.zero.wait(guard).unwrap_or_else(|e| e.into_inner()),
                Some(at) => {
                    let left = at.saturating_duration_since(Instant::now());
                    if left == Duration::ZERO {
                        return false;
                    }
                    guard = self
                        .zero
                        .wait_timeout(guard, left)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
            }
        }
        true
    }
}

/// Work handed to the callback thread.
pub(crate) type CallbackWork = Box<dyn FnOnce() + Send>;

/// Server-wide accounting shared by every job's cell. What submitters write
/// and what workers write sit on separate cache lines.
pub(crate) struct Tracker {
    pub(crate) pending: CachePadded<Pending>,
    pub(crate) submitted: CachePadded<AtomicU64>,
    succeeded: AtomicU64,
    failed: AtomicU64,
    cancelled: AtomicU64,
    timed_out: AtomicU64,
    shut_down: AtomicU64,
    pub(crate) retried: AtomicU64,
    callbacks: CachePadded<Sender<CallbackWork>>,
}

impl Tracker {
    /// A tracker whose callbacks run on one thread of their own, which ends
    /// when the last job that could have a callback is gone.
    pub(crate) fn new() -> std::io::Result<Self> {
        let (tx, rx) = crossbeam_channel::unbounded::<CallbackWork>();
        std::thread::Builder::new()
            .name("pp-callbacks".into())
            .spawn(move || {
                for work in rx {
                    // A panicking callback must not stop the others.
                    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)).is_err() {
                        eprintln!("pp: a job callback panicked");
                    }
                }
            })?;
        Ok(Tracker {
            pending: CachePadded::new(Pending::default()),
            submitted: CachePadded::new(AtomicU64::new(0)),
            succeeded: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            cancelled: AtomicU64::new(0),
            timed_out: AtomicU64::new(0),
            shut_down: AtomicU64::new(0),
            retried: AtomicU64::new(0),
            callbacks: CachePadded::new(tx),
        })
    }

    pub(crate) fn run_callback(&self, work: CallbackWork) {
        if let Err(returned) = self.callbacks.send(work) {
            // The callback thread is gone (it never is while we hold the
            // sender); run it here rather than lose it.
            (returned.into_inner())();
        }
    }

    /// Counts how a job ended.
    pub(crate) fn ended<T>(&self, result: &Result<T, JobError>) {
        let counter = match result {
            Ok(_) => &self.succeeded,
            Err(e) => match e.kind {
                ErrorKind::Cancelled => &self.cancelled,
                ErrorKind::TimedOut => &self.timed_out,
                ErrorKind::Shutdown => &self.shut_down,
                _ => &self.failed,
            },
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn counts(&self) -> [u64; 6] {
        [
            &*self.submitted,
            &self.succeeded,
            &self.failed,
            &self.cancelled,
            &self.timed_out,
            &self.shut_down,
        ]
        .map(|c| c.load(Ordering::Relaxed))
    }
}
