//! Completion accounting: how many jobs are pending (server-wide and per
//! group), how they ended, and the threads that run callbacks.
//!
//! Callbacks run on a small pool of their own. A callback may wait on other
//! handles: before it blocks, it makes sure another callback thread is free
//! (starting one if needed), so the job it waits for can still run its own
//! callback and resolve. Threads beyond the first end after a quiet second.
//! A wait that can never end (a callback waiting on its own job, or on a
//! group or `wait_all` that includes its own job) is refused with
//! [`ErrorKind::WouldDeadlock`].

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use crossbeam_utils::CachePadded;
pub(crate) use ppcore::Pending;
use ppcore::{ErrorKind, JobError};
use std::cell::Cell as StdCell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How long a spare callback thread waits for work before it ends.
const SPARE_IDLE: Duration = Duration::from_secs(1);

/// The callback running on this thread, if any: its job's cell and group,
/// as addresses (identities only, never dereferenced).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct InCallback {
    pub(crate) cell: usize,
    pub(crate) group: Option<usize>,
}

thread_local! {
    static IN_CALLBACK: StdCell<Option<InCallback>> = const { StdCell::new(None) };
}

/// The callback running on this thread, if any.
pub(crate) fn in_callback() -> Option<InCallback> {
    IN_CALLBACK.with(StdCell::get)
}

/// Runs `f` as the callback of the job `ctx` names (for deadlock checks).
pub(crate) fn as_callback<R>(ctx: InCallback, f: impl FnOnce() -> R) -> R {
    let before = IN_CALLBACK.with(|c| c.replace(Some(ctx)));
    struct Restore(Option<InCallback>);
    impl Drop for Restore {
        fn drop(&mut self) {
            IN_CALLBACK.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(before);
    f()
}

/// The error of a wait that could only end after the callback making it.
pub(crate) fn would_deadlock(what: &str) -> JobError {
    JobError::new(
        ErrorKind::WouldDeadlock,
        format!("a callback {what}, which cannot finish before the callback returns"),
    )
}

/// The callback threads' shared state.
struct CallbackPool {
    rx: Receiver<CallbackWork>,
    /// Callback threads alive.
    alive: AtomicUsize,
    /// Of those, how many are blocked in a wait inside a callback.
    blocked: AtomicUsize,
}

impl CallbackPool {
    fn spawn(self: &Arc<Self>) -> std::io::Result<()> {
        self.alive.fetch_add(1, Ordering::SeqCst);
        let pool = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name("pp-callbacks".into())
            .spawn(move || pool.work());
        if spawned.is_err() {
            self.alive.fetch_sub(1, Ordering::SeqCst);
        }
        spawned.map(|_| ())
    }

    /// Threads free to take a callback now.
    fn free(&self) -> isize {
        self.alive.load(Ordering::SeqCst) as isize - self.blocked.load(Ordering::SeqCst) as isize
    }

    fn work(&self) {
        loop {
            match self.rx.recv_timeout(SPARE_IDLE) {
                Ok(work) => {
                    // A panicking callback must not stop the others.
                    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)).is_err() {
                        tracing::warn!("a job callback panicked");
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    // Retire a spare thread, but never the last free one.
                    self.alive.fetch_sub(1, Ordering::SeqCst);
                    if self.free() >= 1 {
                        return;
                    }
                    self.alive.fetch_add(1, Ordering::SeqCst);
                }
                Err(RecvTimeoutError::Disconnected) => {
                    self.alive.fetch_sub(1, Ordering::SeqCst);
                    return;
                }
            }
        }
    }
}

/// Held while a callback thread blocks in a wait: another thread takes
/// the callbacks meanwhile.
pub(crate) struct Blocking<'a> {
    pool: Option<&'a CallbackPool>,
}

impl Drop for Blocking<'_> {
    fn drop(&mut self) {
        if let Some(pool) = self.pool {
            pool.blocked.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// Work handed to the callback thread.
pub(crate) type CallbackWork = Box<dyn FnOnce() + Send>;

/// Jobs submitted, and how those that ended ended, as the tracker counted
/// them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub(crate) struct Counts {
    pub(crate) submitted: u64,
    pub(crate) succeeded: u64,
    pub(crate) failed: u64,
    pub(crate) cancelled: u64,
    pub(crate) timed_out: u64,
    pub(crate) shut_down: u64,
}

impl Counts {
    /// Jobs that ended, however they ended.
    pub(crate) fn ended(&self) -> u64 {
        [
            self.succeeded,
            self.failed,
            self.cancelled,
            self.timed_out,
            self.shut_down,
        ]
        .iter()
        .fold(0, |a, &b| a.saturating_add(b))
    }

    /// Jobs submitted and not resolved. The counters are read one by one
    /// while jobs end, so the endings may include a job whose submission
    /// was read before it: never below zero.
    pub(crate) fn unresolved(&self) -> u64 {
        self.submitted.saturating_sub(self.ended())
    }
}

/// What the tracker counts, by index into a shard.
#[derive(Clone, Copy)]
pub(crate) enum Count {
    Submitted = 0,
    Succeeded,
    Failed,
    Cancelled,
    TimedOut,
    ShutDown,
    /// Jobs that started (first time), and their total wait in the queue.
    Started,
    WaitNs,
    /// Jobs whose handle is ready and whose callback has returned.
    Settled,
}

const SHARDS: usize = 8;

/// One thread's share of the counts, on cache lines of its own.
#[derive(Default)]
#[repr(align(128))]
struct Shard([AtomicU64; 9]);

thread_local! {
    /// This thread's shard, assigned round-robin on first use.
    static SHARD: usize = {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS
    };
}

/// Server-wide accounting shared by every job's cell.
///
/// Every job bumps two counts (submitted, then how it ended), from whatever
/// threads submit and finish jobs: the counts are sharded per thread so that
/// those threads do not fight over one cache line. Pending is submitted minus
/// settled (its handle ready, its callback returned); `wait_all` sleeps until
/// it is zero, and is woken only if it waits. A job is counted as ended (for
/// the stats) before its handle is ready, and as settled after: so stats read
/// after a handle resolved count it, and every handle is finished once
/// `wait_all` returns.
pub(crate) struct Tracker {
    shards: [Shard; SHARDS],
    waiters: CachePadded<AtomicUsize>,
    quiet: (Mutex<()>, Condvar),
    pub(crate) retried: AtomicU64,
    /// Jobs resolved from the journal at `submit`, without running.
    pub(crate) from_journal: AtomicU64,
    /// Jobs whose outcome a node held for the run (an earlier client of it
    /// sent them), taken back without running them here.
    pub(crate) reclaimed: AtomicU64,
    callbacks: CachePadded<Sender<CallbackWork>>,
    pool: Arc<CallbackPool>,
    /// Bytes of arguments submitted and not yet taken by a worker or a
    /// node's link ([`Builder::byte_budget`](crate::Builder::byte_budget)):
    /// a queued job keeps only the count of its share, given back here.
    pub(crate) budget: Arc<ppcore::budget::BudgetGate>,
}

impl Tracker {
    /// A tracker whose callbacks run on threads of their own, which end
    /// when the last job that could have a callback is gone, and whose
    /// jobs' arguments share a budget of `budget` bytes.
    pub(crate) fn new(budget: u64) -> std::io::Result<Self> {
        let (tx, rx) = crossbeam_channel::unbounded::<CallbackWork>();
        let pool = Arc::new(CallbackPool {
            rx,
            alive: AtomicUsize::new(0),
            blocked: AtomicUsize::new(0),
        });
        pool.spawn()?;
        Ok(Tracker {
            shards: Default::default(),
            waiters: CachePadded::new(AtomicUsize::new(0)),
            quiet: (Mutex::new(()), Condvar::new()),
            retried: AtomicU64::new(0),
            from_journal: AtomicU64::new(0),
            reclaimed: AtomicU64::new(0),
            callbacks: CachePadded::new(tx),
            pool,
            budget: ppcore::budget::BudgetGate::new(budget),
        })
    }

    /// Call before blocking in a wait: on a callback thread, makes sure
    /// another callback thread is free while this one waits.
    pub(crate) fn blocking(&self) -> Blocking<'_> {
        if in_callback().is_none() {
            return Blocking { pool: None };
        }
        let pool = &*self.pool;
        pool.blocked.fetch_add(1, Ordering::SeqCst);
        if pool.free() < 1 {
            if let Err(e) = self.pool.spawn() {
                tracing::warn!("cannot start a callback thread: {e}");
            }
        }
        Blocking { pool: Some(pool) }
    }

    fn bump(&self, count: Count) {
        self.add(count, 1);
    }

    fn add(&self, count: Count, n: u64) {
        let shard = &self.shards[SHARD.with(|s| *s)];
        shard.0[count as usize].fetch_add(n, Ordering::Relaxed);
    }

    /// A job started for the first time after `waited` in the queue.
    pub(crate) fn started(&self, waited: Duration) {
        self.bump(Count::Started);
        self.add(
            Count::WaitNs,
            u64::try_from(waited.as_nanos()).unwrap_or(u64::MAX),
        );
    }

    /// Jobs that started (each counted once, however many times it ran).
    pub(crate) fn ran(&self) -> u64 {
        self.sum(Count::Started)
    }

    /// The mean time jobs waited in the queue before they started.
    pub(crate) fn mean_queue_wait(&self) -> Duration {
        let started = self.sum(Count::Started);
        match started {
            0 => Duration::ZERO,
            n => Duration::from_nanos(self.sum(Count::WaitNs) / n),
        }
    }

    fn sum(&self, count: Count) -> u64 {
        self.shards
            .iter()
            .map(|s| s.0[count as usize].load(Ordering::Relaxed))
            .sum()
    }

    /// Counts a submitted job.
    pub(crate) fn submitted(&self) {
        self.bump(Count::Submitted);
    }

    /// Jobs submitted and not yet settled. Settled counts are read before
    /// the submitted count, so the answer never falls below the truth.
    pub(crate) fn pending(&self) -> u64 {
        let settled = self.sum(Count::Settled);
        std::sync::atomic::fence(Ordering::SeqCst);
        self.sum(Count::Submitted).saturating_sub(settled)
    }

    /// Waits until no job is pending or `deadline` passes; true if none is.
    pub(crate) fn wait_quiet(&self, deadline: Option<Instant>) -> bool {
        if self.pending() == 0 {
            return true;
        }
        let _blocking = self.blocking();
        self.waiters.fetch_add(1, Ordering::SeqCst);
        std::sync::atomic::fence(Ordering::SeqCst);
        let mut guard = ppcore::sync::lock(&self.quiet.0);
        let quiet = loop {
            if self.pending() == 0 {
                break true;
            }
            let left = deadline.map_or(Duration::from_millis(100), |d| {
                d.saturating_duration_since(Instant::now())
            });
            if left.is_zero() {
                break false;
            }
            // Woken by `ended`; the bound only guards against a missed wake-up.
            let wait = left.min(Duration::from_millis(100));
            guard = self
                .quiet
                .1
                .wait_timeout(guard, wait)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        };
        drop(guard);
        self.waiters.fetch_sub(1, Ordering::SeqCst);
        quiet
    }

    pub(crate) fn run_callback(&self, work: CallbackWork) {
        if let Err(returned) = self.callbacks.send(work) {
            // The callback thread is gone (it never is while we hold the
            // sender); run it here rather than lose it.
            (returned.into_inner())();
        }
    }

    /// Counts how a job ended, just before its handle is made ready.
    pub(crate) fn ended(&self, outcome: &Result<(), ErrorKind>) {
        self.bump(match outcome {
            Ok(()) => Count::Succeeded,
            Err(kind) => match kind {
                ErrorKind::Cancelled => Count::Cancelled,
                ErrorKind::TimedOut => Count::TimedOut,
                ErrorKind::Shutdown => Count::ShutDown,
                _ => Count::Failed,
            },
        });
    }

    /// Counts a job settled (handle ready, callback returned), and wakes
    /// `wait_all` if someone waits.
    pub(crate) fn settled(&self) {
        self.bump(Count::Settled);
        std::sync::atomic::fence(Ordering::SeqCst);
        if self.waiters.load(Ordering::Relaxed) > 0 {
            let _guard = ppcore::sync::lock(&self.quiet.0);
            self.quiet.1.notify_all();
        }
    }

    /// Jobs submitted, and how those that ended ended.
    pub(crate) fn counts(&self) -> Counts {
        Counts {
            submitted: self.sum(Count::Submitted),
            succeeded: self.sum(Count::Succeeded),
            failed: self.sum(Count::Failed),
            cancelled: self.sum(Count::Cancelled),
            timed_out: self.sum(Count::TimedOut),
            shut_down: self.sum(Count::ShutDown),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Counts;

    #[test]
    fn unresolved_jobs_never_underflow() {
        let counts =
            |submitted, [succeeded, failed, cancelled, timed_out, shut_down]: [u64; 5]| Counts {
                submitted,
                succeeded,
                failed,
                cancelled,
                timed_out,
                shut_down,
            };
        assert_eq!(counts(10, [3, 2, 0, 0, 1]).unresolved(), 4);
        assert_eq!(counts(5, [3, 2, 1, 0, 0]).unresolved(), 0);
        assert_eq!(counts(0, [u64::MAX, 1, 0, 0, 0]).unresolved(), 0);
    }
}
