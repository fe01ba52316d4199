//! Completion accounting: how many jobs are pending (server-wide and per
//! group), how they ended, and the thread that runs callbacks.

use crossbeam_channel::Sender;
use crossbeam_utils::CachePadded;
use ppcore::ErrorKind;
pub(crate) use ppcore::Pending;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// Work handed to the callback thread.
pub(crate) type CallbackWork = Box<dyn FnOnce() + Send>;

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
}

const SHARDS: usize = 8;

/// One thread's share of the counts, on cache lines of its own.
#[derive(Default)]
#[repr(align(128))]
struct Shard([AtomicU64; 8]);

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
/// ended; `wait_all` sleeps until it is zero, and is woken only if it waits.
pub(crate) struct Tracker {
    shards: [Shard; SHARDS],
    waiters: CachePadded<AtomicUsize>,
    quiet: (Mutex<()>, Condvar),
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
            shards: Default::default(),
            waiters: CachePadded::new(AtomicUsize::new(0)),
            quiet: (Mutex::new(()), Condvar::new()),
            retried: AtomicU64::new(0),
            callbacks: CachePadded::new(tx),
        })
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

    /// Jobs submitted and not yet ended. Ended counts are read before the
    /// submitted count, so the answer never falls below the truth.
    pub(crate) fn pending(&self) -> u64 {
        let ended: u64 = [
            Count::Succeeded,
            Count::Failed,
            Count::Cancelled,
            Count::TimedOut,
            Count::ShutDown,
        ]
        .iter()
        .map(|&c| self.sum(c))
        .sum();
        std::sync::atomic::fence(Ordering::SeqCst);
        self.sum(Count::Submitted).saturating_sub(ended)
    }

    /// Waits until no job is pending or `deadline` passes; true if none is.
    pub(crate) fn wait_quiet(&self, deadline: Option<Instant>) -> bool {
        self.waiters.fetch_add(1, Ordering::SeqCst);
        std::sync::atomic::fence(Ordering::SeqCst);
        let mut guard = self.quiet.0.lock().unwrap_or_else(|e| e.into_inner());
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

    /// Counts how a job ended (once its result is in), and wakes `wait_all`
    /// if someone waits.
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
        std::sync::atomic::fence(Ordering::SeqCst);
        if self.waiters.load(Ordering::Relaxed) > 0 {
            let _guard = self.quiet.0.lock().unwrap_or_else(|e| e.into_inner());
            self.quiet.1.notify_all();
        }
    }

    /// Submitted, succeeded, failed, cancelled, timed out, shut down.
    pub(crate) fn counts(&self) -> [u64; 6] {
        [
            Count::Submitted,
            Count::Succeeded,
            Count::Failed,
            Count::Cancelled,
            Count::TimedOut,
            Count::ShutDown,
        ]
        .map(|c| self.sum(c))
    }
}
