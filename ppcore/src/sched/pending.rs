//! A count of unfinished work, with waiting for zero.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// A count of unfinished work that threads can wait to reach zero.
#[derive(Default)]
pub struct Pending {
    count: AtomicUsize,
    lock: Mutex<()>,
    zero: Condvar,
}

impl Pending {
    /// One more unfinished.
    pub fn add(&self) {
        self.count.fetch_add(1, Ordering::AcqRel);
    }

    /// One finished; wakes the waiters when none is left.
    pub fn done(&self) {
        if self.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            // Taking the lock orders this wake-up after a waiter's check.
            let _guard = crate::sync::lock(&self.lock);
            self.zero.notify_all();
        }
    }

    /// How many are unfinished.
    pub fn get(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    /// Waits until the count is zero or `deadline` passes; true if zero.
    pub fn wait_zero(&self, deadline: Option<Instant>) -> bool {
        let mut guard = crate::sync::lock(&self.lock);
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
