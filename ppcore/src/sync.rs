//! The one way the workspace locks a mutex.

use std::sync::{Mutex, MutexGuard};

/// Locks `m`, taking the value even if a thread panicked while holding it.
///
/// Every lock in the workspace guards state that stays consistent between
/// statements (no invariant is broken half-way across a panic), so a
/// poisoned mutex is still safe to use, and refusing it would turn one
/// panicking job into a stuck server.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_poisoned_mutex_still_locks() {
        let m = std::sync::Arc::new(Mutex::new(1));
        let m2 = m.clone();
        let _ = std::thread::spawn(move || {
            let _g = m2.lock();
            panic!("poison it");
        })
        .join();
        assert!(m.is_poisoned());
        *lock(&m) += 1;
        assert_eq!(*lock(&m), 2);
    }
}
