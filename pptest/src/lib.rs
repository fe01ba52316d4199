//! The test kit of the pp workspace (a dev-dependency only, never
//! published): tests wait on a condition, never for a fixed time.
//!
//! [`eventually`] asks a condition until it holds, [`eventually_some`]
//! until it yields a value. Both are bounded in time (the `limit` the caller
//! gives) and in count (at most [`MAX_ASKS`] asks), and back off between
//! asks from 1 ms to [`MAX_PAUSE`], so a condition that holds at once costs
//! nothing and a slow one (a status query over TCP, `squeue`) is not asked
//! in a busy loop. The condition is always asked once more at the deadline,
//! so a limit of zero still asks once.
//!
//! Where a test can block on an event itself (a channel, a condvar, a
//! process's exit, a job handle's `wait_timeout`), it should: these helpers
//! are for state that can only be asked (a node's status, metrics, a file
//! another process writes, the queue of a batch system).
//!
//! # Where unit tests live
//!
//! One convention for the workspace: a module's unit tests are a
//! `#[cfg(test)] mod tests` at the bottom of its file, or, once they
//! outgrow it, `foo/tests.rs` beside `foo.rs` (declared in `foo.rs` as
//! `#[cfg(test)] mod tests;`). Tests of a crate's public behaviour, and
//! every test that starts processes or opens sockets, live in the crate's
//! `tests/` directory, with their shared helpers in `tests/common/` and
//! waits from this crate.
//!
//! ```
//! use std::time::{Duration, Instant};
//! let start = Instant::now();
//! assert!(pptest::eventually(Duration::from_secs(5), || start.elapsed() > Duration::from_millis(3)));
//! assert!(!pptest::eventually(Duration::ZERO, || false));
//! ```

use std::time::{Duration, Instant};

/// The longest pause between two asks.
pub const MAX_PAUSE: Duration = Duration::from_millis(50);

/// The most asks one wait makes, whatever its limit.
pub const MAX_ASKS: u32 = 100_000;

/// Asks `condition` until it holds, for at most `limit`: true if it held.
#[must_use = "assert on the outcome: a wait that timed out must fail the test"]
pub fn eventually(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    eventually_some(limit, || condition().then_some(())).is_some()
}

/// Asks `f` until it yields a value, for at most `limit`: that value, or
/// `None` if it never came.
#[must_use = "assert on the outcome: a wait that timed out must fail the test"]
pub fn eventually_some<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    let mut pause = Duration::from_millis(1);
    for _ in 1..MAX_ASKS {
        if let Some(v) = f() {
            return Some(v);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        std::thread::sleep(pause.min(left));
        pause = (pause * 2).min(MAX_PAUSE);
    }
    f()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn a_condition_that_holds_is_asked_once() {
        let asks = Cell::new(0);
        assert!(eventually(Duration::from_secs(10), || {
            asks.set(asks.get() + 1);
            true
        }));
        assert_eq!(asks.get(), 1);
    }

    #[test]
    fn a_condition_that_comes_true_later_is_seen() {
        let asks = Cell::new(0);
        let got = eventually_some(Duration::from_secs(10), || {
            asks.set(asks.get() + 1);
            (asks.get() == 5).then_some("fifth")
        });
        assert_eq!(got, Some("fifth"));
        assert_eq!(asks.get(), 5);
    }

    #[test]
    fn a_condition_that_never_holds_gives_up_at_the_limit() {
        let start = Instant::now();
        let asks = Cell::new(0u32);
        let held = eventually(Duration::from_millis(30), || {
            asks.set(asks.get() + 1);
            false
        });
        assert!(!held);
        assert!(start.elapsed() >= Duration::from_millis(30));
        // Backing off: 1 + 2 + 4 + 8 + 16 ms then the deadline, not a busy loop.
        assert!(asks.get() >= 2 && asks.get() <= 10, "{} asks", asks.get());
    }

    #[test]
    fn a_zero_limit_still_asks_once() {
        let asks = Cell::new(0);
        assert!(!eventually(Duration::ZERO, || {
            asks.set(asks.get() + 1);
            false
        }));
        assert_eq!(asks.get(), 1);
    }
}
