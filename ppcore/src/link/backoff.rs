//! When a lost link dials again: the first wait is short, each loss in a
//! row doubles it up to the longest, and a link that stayed up at least the
//! longest wait starts over from the first.

use std::time::{Duration, Instant};

/// The first wait before redialling a lost node (the client's default).
pub const RECONNECT_FIRST: Duration = Duration::from_millis(100);
/// The longest wait before redialling a lost node (the client's default).
pub const RECONNECT_MAX: Duration = Duration::from_secs(5);

/// The waits of one link between a loss and its next dial.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    first: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// Waits from `first`, doubling up to `max`.
    pub(crate) fn new(first: Duration, max: Duration) -> Self {
        Backoff {
            first,
            max,
            next: first,
        }
    }

    /// A connection ended at `now`, up since `up_since` (`None`: it never
    /// came up): how long to wait before the next dial.
    pub(crate) fn next_wait(&mut self, up_since: Option<Instant>, now: Instant) -> Duration {
        let stable = up_since.is_some_and(|t| now.saturating_duration_since(t) >= self.max);
        if stable {
            self.next = self.first;
        }
        let wait = self.next;
        self.next = (self.next * 2).min(self.max);
        wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn reconnect_backoff_doubles_from_100_ms_to_5_s() {
        let mut b = Backoff::new(RECONNECT_FIRST, RECONNECT_MAX);
        let now = Instant::now();
        let waits: Vec<u128> = (0..9).map(|_| b.next_wait(None, now).as_millis()).collect();
        assert_eq!(
            waits,
            [100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000],
            "{waits:?}"
        );
    }

    #[test]
    fn reconnect_backoff_starts_over_after_a_link_up_as_long_as_the_longest_wait() {
        let mut b = Backoff::new(100 * MS, 1000 * MS);
        let t0 = Instant::now();
        for _ in 0..5 {
            b.next_wait(None, t0);
        }
        // Up for less than the longest wait: the losses still count.
        let short = b.next_wait(Some(t0), t0 + 999 * MS);
        assert_eq!(short, 1000 * MS);
        // Up that long: a fresh start.
        let t1 = t0 + 2000 * MS;
        assert_eq!(b.next_wait(Some(t1), t1 + 1000 * MS), 100 * MS);
        assert_eq!(b.next_wait(None, t1 + 1100 * MS), 200 * MS);
    }
}
