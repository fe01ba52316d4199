//! The client's byte budget: the encoded arguments of jobs submitted but not
//! yet sent (or run) may hold at most so many bytes, so that a loop
//! submitting large arguments waits instead of exhausting memory.
//!
//! [`ByteBudget`] is the accounting alone, pure and unit-tested;
//! [`BudgetGate`] is the thin blocking shell a `Server` shares between its
//! threads:
//!
//! - `submit` counts the job's argument bytes (`check_size`), then
//!   [`BudgetGate::acquire`]s them, waiting while the budget is full, and
//!   keeps the [`Permit`] with the queued job;
//! - `try_submit` calls [`BudgetGate::try_acquire`] instead and, on `None`,
//!   hands the job back to the caller untouched;
//! - the permit is dropped when the arguments have left the client (written
//!   to a node, or taken by a local worker) or the job ends otherwise
//!   (cancelled, timed out, server dropped): dropping it gives the bytes back
//!   and wakes the waiters.
//!
//! A job larger than the whole budget is admitted when nothing else holds
//! any of it, so that it waits for the others but never forever.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

/// The default budget: 1 GiB of arguments not yet sent.
pub const DEFAULT_BYTE_BUDGET: u64 = 1 << 30;

/// Bytes held against a limit: the pure accounting of a byte budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteBudget {
    limit: u64,
    used: u64,
}

impl ByteBudget {
    /// An empty budget of `limit` bytes.
    pub fn new(limit: u64) -> Self {
        ByteBudget { limit, used: 0 }
    }

    /// Takes `bytes` if they fit (or nothing else is held); false, with
    /// nothing taken, otherwise.
    pub fn try_take(&mut self, bytes: u64) -> bool {
        match self.used_after(bytes) {
            Some(used) => {
                self.used = used;
                true
            }
            None => false,
        }
    }

    /// What `used` would be after taking `bytes`, if they may be taken:
    /// they fit, or nothing else is held.
    pub fn used_after(&self, bytes: u64) -> Option<u64> {
        let fits = self
            .used
            .checked_add(bytes)
            .is_some_and(|total| total <= self.limit);
        (fits || self.used == 0).then(|| self.used.saturating_add(bytes))
    }

    /// Gives back `bytes` taken before.
    pub fn give_back(&mut self, bytes: u64) {
        debug_assert!(bytes <= self.used, "giving back more than was taken");
        self.used = self.used.saturating_sub(bytes);
    }

    /// Bytes held now.
    pub fn used(&self) -> u64 {
        self.used
    }

    /// The limit.
    pub fn limit(&self) -> u64 {
        self.limit
    }
}

/// A [`ByteBudget`] that threads share: taking waits while it is full.
///
/// Taking and giving back while the budget has room are one atomic
/// operation each, with no lock (a submit and a worker's take of every job
/// on the local pool's hot path do them); only a taker that must wait, and
/// whoever frees room while one does, take the lock.
#[derive(Debug)]
pub struct BudgetGate {
    limit: u64,
    used: AtomicU64,
    /// Takers asleep in [`acquire`](Self::acquire): counted under `sleep`'s
    /// lock before they look a last time, so that a give-back that reads 0
    /// here freed its bytes before they looked.
    waiting: AtomicUsize,
    sleep: Mutex<()>,
    freed: Condvar,
}

impl BudgetGate {
    /// A gate over `limit` bytes.
    pub fn new(limit: u64) -> Arc<Self> {
        Arc::new(BudgetGate {
            limit,
            used: AtomicU64::new(0),
            waiting: AtomicUsize::new(0),
            sleep: Mutex::new(()),
            freed: Condvar::new(),
        })
    }

    /// Takes `bytes` if the budget's rule lets it now.
    fn try_take(&self, bytes: u64) -> bool {
        let mut used = self.used.load(Ordering::SeqCst);
        loop {
            let budget = ByteBudget {
                limit: self.limit,
                used,
            };
            let Some(after) = budget.used_after(bytes) else {
                return false;
            };
            match self
                .used
                .compare_exchange_weak(used, after, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => return true,
                Err(now) => used = now,
            }
        }
    }

    /// Takes `bytes`, waiting until they fit.
    pub fn acquire(self: &Arc<Self>, bytes: u64) -> Permit {
        if !self.try_take(bytes) {
            let mut asleep = crate::sync::lock(&self.sleep);
            self.waiting.fetch_add(1, Ordering::SeqCst);
            while !self.try_take(bytes) {
                asleep = self.freed.wait(asleep).unwrap_or_else(|e| e.into_inner());
            }
            self.waiting.fetch_sub(1, Ordering::SeqCst);
        }
        Permit {
            gate: Arc::clone(self),
            bytes,
        }
    }

    /// Takes `bytes` if they fit now; `None` otherwise (hand the job back).
    pub fn try_acquire(self: &Arc<Self>, bytes: u64) -> Option<Permit> {
        self.try_take(bytes).then(|| Permit {
            gate: Arc::clone(self),
            bytes,
        })
    }

    /// Gives back `bytes` taken by a permit turned
    /// [`into_bytes`](Permit::into_bytes), waking the waiters.
    pub fn give_back(&self, bytes: u64) {
        // Saturating, as `ByteBudget::give_back`: a count given back twice
        // must not wrap and shut the gate for good.
        let given = self
            .used
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |used| {
                Some(used.saturating_sub(bytes))
            });
        debug_assert!(
            given.is_ok_and(|before| bytes <= before),
            "giving back more than was taken"
        );
        // With nobody waiting, no lock and no wake-up system call (one per
        // job on the local pool's hot path otherwise). A waiter counts
        // itself under the lock and then looks again: either it sees these
        // bytes, or it is counted here and woken (the lock taken first, so
        // that it is asleep or not yet looking).
        if self.waiting.load(Ordering::SeqCst) > 0 {
            drop(crate::sync::lock(&self.sleep));
            self.freed.notify_all();
        }
    }

    /// Bytes held now.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::SeqCst)
    }

    /// Threads waiting in [`acquire`](Self::acquire) now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }
}

/// Bytes taken from a [`BudgetGate`]; given back when dropped.
#[derive(Debug)]
pub struct Permit {
    gate: Arc<BudgetGate>,
    bytes: u64,
}

impl Permit {
    /// How many bytes it holds.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Its bytes, kept taken: whoever holds them gives them back with
    /// [`BudgetGate::give_back`] (a count is smaller to keep than a permit).
    pub fn into_bytes(mut self) -> u64 {
        std::mem::take(&mut self.bytes)
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if self.bytes > 0 {
            self.gate.give_back(self.bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn a_taker_waiting_for_room_wakes_when_a_permit_is_dropped() {
        let gate = BudgetGate::new(10);
        let held = gate.acquire(8);
        let (tx, rx) = std::sync::mpsc::channel();
        let taker = {
            let gate = Arc::clone(&gate);
            std::thread::spawn(move || {
                let permit = gate.acquire(5);
                let _ = tx.send(permit.bytes());
            })
        };
        // The taker counts itself under the gate's lock before it sleeps.
        let deadline = Instant::now() + Duration::from_secs(10);
        while gate.waiting() == 0 {
            assert!(Instant::now() < deadline, "the taker never waited");
            std::thread::yield_now();
        }
        assert!(rx.try_recv().is_err(), "no room yet");
        drop(held);
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)), Ok(5));
        taker.join().unwrap();
        assert_eq!((gate.used(), gate.waiting()), (0, 0));
        // With nobody waiting, giving back needs no wake-up and loses nothing.
        drop(gate.acquire(10));
        assert_eq!(gate.used(), 0);
    }

    #[test]
    fn bytes_kept_from_a_permit_stay_taken_until_given_back() {
        let gate = BudgetGate::new(10);
        let bytes = gate.acquire(7).into_bytes();
        assert_eq!((bytes, gate.used()), (7, 7));
        assert!(gate.try_acquire(4).is_none(), "the 7 bytes are still taken");
        gate.give_back(bytes);
        assert_eq!(gate.used(), 0);
        assert!(gate.try_acquire(10).is_some());
    }
}
