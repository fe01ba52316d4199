//! The job queue: two lanes, so that work handed back (its node was lost)
//! goes ahead of work not yet started.

use crossbeam_channel::{Receiver, Sender};
use std::time::Duration;

/// An unbounded multi-producer, multi-consumer queue with a front lane.
/// Cheap to clone; every clone is the same queue.
pub struct Lanes<T> {
    urgent: (Sender<T>, Receiver<T>),
    normal: (Sender<T>, Receiver<T>),
}

impl<T> Clone for Lanes<T> {
    fn clone(&self) -> Self {
        Lanes {
            urgent: self.urgent.clone(),
            normal: self.normal.clone(),
        }
    }
}

impl<T> Default for Lanes<T> {
    fn default() -> Self {
        Lanes {
            urgent: crossbeam_channel::unbounded(),
            normal: crossbeam_channel::unbounded(),
        }
    }
}

impl<T> Lanes<T> {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// Queues `item` behind everything.
    pub fn push(&self, item: T) {
        // Both ends live in `self`: the channel cannot be disconnected.
        let _ = self.normal.0.send(item);
    }

    /// Queues `item` ahead of everything not handed back itself.
    pub fn push_front(&self, item: T) {
        let _ = self.urgent.0.send(item);
    }

    /// The next item, if one is queued.
    pub fn try_pop(&self) -> Option<T> {
        self.urgent
            .1
            .try_recv()
            .or_else(|_| self.normal.1.try_recv())
            .ok()
    }

    /// The next item, waiting at most `timeout` for one.
    pub fn pop_timeout(&self, timeout: Duration) -> Option<T> {
        if let Some(item) = self.try_pop() {
            return Some(item);
        }
        crossbeam_channel::select! {
            recv(self.urgent.1) -> item => item.ok(),
            recv(self.normal.1) -> item => item.ok(),
            default(timeout) => None,
        }
    }

    /// The receiving ends of the front lane and the back lane, to wait on
    /// in a `select!` with other channels. Take the first item from either,
    /// then the rest with [`Lanes::try_pop`] (front lane first).
    pub fn receivers(&self) -> (&Receiver<T>, &Receiver<T>) {
        (&self.urgent.1, &self.normal.1)
    }

    /// Items queued now.
    pub fn len(&self) -> usize {
        self.urgent.1.len() + self.normal.1.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handed_back_work_goes_first() {
        let q = Lanes::new();
        q.push(1);
        q.push(2);
        q.push_front(9);
        assert_eq!(q.len(), 3);
        assert_eq!(q.try_pop(), Some(9));
        assert_eq!(q.pop_timeout(Duration::ZERO), Some(1));
        assert_eq!(q.try_pop(), Some(2));
        assert_eq!(q.pop_timeout(Duration::from_millis(10)), None);
        assert!(q.is_empty());
    }

    #[test]
    fn a_waiting_consumer_wakes_for_either_lane() {
        let q = Lanes::new();
        let q2 = q.clone();
        let t = std::thread::spawn(move || q2.pop_timeout(Duration::from_secs(10)));
        std::thread::sleep(Duration::from_millis(20));
        q.push_front(5);
        assert_eq!(t.join().unwrap(), Some(5));
    }
}
