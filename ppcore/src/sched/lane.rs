//! One lane of the job queue: items in order, each with its sequence
//! number, stored apart so that a queued job costs the queue one pointer.
//!
//! Items pushed with consecutive numbers (a stream of jobs of one kind, the
//! usual case) share one run `(first, count)`, so a million queued jobs
//! cost the lane a million items and a handful of runs, not a million
//! `(u64, item)` pairs.

use std::collections::VecDeque;

/// Consecutive sequence numbers: `first`, `first + 1`, ... (`count` of them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Run {
    first: u64,
    count: u64,
}

/// Items in order, each with a sequence number that grows along the lane.
pub(crate) struct Lane<T> {
    items: VecDeque<T>,
    runs: VecDeque<Run>,
}

impl<T> Default for Lane<T> {
    fn default() -> Self {
        Lane {
            items: VecDeque::new(),
            runs: VecDeque::new(),
        }
    }
}

impl<T> Lane<T> {
    /// Adds `item` at the back, numbered `seq` (greater than any before it).
    pub(crate) fn push_back(&mut self, seq: u64, item: T) {
        self.items.push_back(item);
        match self.runs.back_mut() {
            Some(run) if run.first + run.count == seq => run.count += 1,
            _ => self.runs.push_back(Run {
                first: seq,
                count: 1,
            }),
        }
    }

    /// The number of the item at the front.
    pub(crate) fn front_seq(&self) -> Option<u64> {
        self.runs.front().map(|r| r.first)
    }

    /// Takes the item at the front.
    pub(crate) fn pop_front(&mut self) -> Option<T> {
        let item = self.items.pop_front()?;
        if let Some(run) = self.runs.front_mut() {
            run.first += 1;
            run.count -= 1;
            if run.count == 0 {
                self.runs.pop_front();
            }
        }
        Some(item)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Takes every item, with its number, in order.
    pub(crate) fn drain(&mut self) -> impl Iterator<Item = (u64, T)> + '_ {
        let seqs = self.runs.drain(..).flat_map(|r| r.first..r.first + r.count);
        seqs.zip(self.items.drain(..))
    }

    /// Takes the items `pred` picks, with their numbers, in order; the
    /// others keep their places and numbers.
    pub(crate) fn take_where(&mut self, mut pred: impl FnMut(&T) -> bool) -> Vec<(u64, T)> {
        let mut out = Vec::new();
        let mut keep = Lane::default();
        for (seq, item) in self.drain() {
            match pred(&item) {
                true => out.push((seq, item)),
                false => keep.push_back(seq, item),
            }
        }
        *self = keep;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_numbers_share_one_run() {
        let mut lane = Lane::default();
        for seq in 10..1010 {
            lane.push_back(seq, seq * 2);
        }
        assert_eq!(lane.runs.len(), 1);
        assert_eq!(lane.front_seq(), Some(10));
        assert_eq!(lane.pop_front(), Some(20));
        assert_eq!(lane.front_seq(), Some(11));
    }

    #[test]
    fn gaps_start_new_runs_and_numbers_follow_their_items() {
        let mut lane = Lane::default();
        for seq in [1, 2, 5, 6, 7, 9] {
            lane.push_back(seq, seq);
        }
        assert_eq!(lane.runs.len(), 3);
        let mut seen = Vec::new();
        while let Some(seq) = lane.front_seq() {
            assert_eq!(lane.pop_front(), Some(seq));
            seen.push(seq);
        }
        assert_eq!(seen, [1, 2, 5, 6, 7, 9]);
        assert!(lane.is_empty() && lane.runs.is_empty());
        assert_eq!(lane.pop_front(), None);
    }

    #[test]
    fn take_where_keeps_the_rest_with_their_numbers() {
        let mut lane = Lane::default();
        for seq in 0..10 {
            lane.push_back(seq, seq);
        }
        let odd = lane.take_where(|i| i % 2 == 1);
        assert_eq!(odd, [(1, 1), (3, 3), (5, 5), (7, 7), (9, 9)]);
        let rest: Vec<_> = lane.drain().collect();
        assert_eq!(rest, [(0, 0), (2, 2), (4, 4), (6, 6), (8, 8)]);
        assert!(lane.is_empty());
    }
}
