//! Round-robin between queues: a node hands its free workers to its
//! clients in turn, so one client's thousand queued jobs do not starve
//! another client's one.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

/// One FIFO queue per key, served in turn: each [`pop`](Self::pop) takes
/// the front of the next key that has work.
#[derive(Debug)]
pub struct RoundRobin<K, T> {
    queues: HashMap<K, VecDeque<T>>,
    /// Keys with work, in serving order.
    ring: VecDeque<K>,
    len: usize,
}

impl<K, T> Default for RoundRobin<K, T> {
    fn default() -> Self {
        RoundRobin {
            queues: HashMap::new(),
            ring: VecDeque::new(),
            len: 0,
        }
    }
}

impl<K: Hash + Eq + Clone, T> RoundRobin<K, T> {
    /// Empty.
    pub fn new() -> Self {
        Self::default()
    }

    /// Queues `item` behind the other items of `key`.
    pub fn push(&mut self, key: K, item: T) {
        let queue = self.queues.entry(key.clone()).or_default();
        if queue.is_empty() {
            self.ring.push_back(key);
        }
        queue.push_back(item);
        self.len += 1;
    }

    /// The front item of the next key in turn.
    pub fn pop(&mut self) -> Option<T> {
        let key = self.ring.pop_front()?;
        let queue = self.queues.get_mut(&key)?;
        let item = queue.pop_front();
        if queue.is_empty() {
            self.queues.remove(&key);
        } else {
            self.ring.push_back(key);
        }
        self.len -= usize::from(item.is_some());
        item
    }

    /// Like [`pop`](Self::pop), with the key the item was queued under.
    pub fn pop_keyed(&mut self) -> Option<(K, T)> {
        let key = self.ring.front()?.clone();
        self.pop().map(|item| (key, item))
    }

    /// The front item of `key` if `take` accepts it, out of turn (to batch
    /// a client's jobs that go to one place).
    pub fn pop_from(&mut self, key: &K, take: impl FnOnce(&T) -> bool) -> Option<T> {
        let queue = self.queues.get_mut(key)?;
        if !take(queue.front()?) {
            return None;
        }
        let item = queue.pop_front();
        if queue.is_empty() {
            self.queues.remove(key);
            self.ring.retain(|k| k != key);
        }
        self.len -= usize::from(item.is_some());
        item
    }

    /// Items queued.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_take_turns_and_each_keeps_its_order() {
        let mut q = RoundRobin::new();
        for i in 0..4 {
            q.push("busy", i);
        }
        q.push("quiet", 100);
        q.push("other", 200);
        let order: Vec<_> = std::iter::from_fn(|| q.pop()).collect();
        assert_eq!(order, [0, 100, 200, 1, 2, 3]);
        assert!(q.is_empty());
        // A key that comes back joins the end of the ring.
        q.push("busy", 5);
        q.push("quiet", 101);
        q.push("busy", 6);
        assert_eq!(q.len(), 3);
        let order: Vec<_> = std::iter::from_fn(|| q.pop()).collect();
        assert_eq!(order, [5, 101, 6]);
    }

    #[test]
    fn items_of_one_key_can_be_taken_out_of_turn() {
        let mut q = RoundRobin::new();
        for i in 0..3 {
            q.push("a", i);
        }
        q.push("b", 10);
        assert_eq!(q.pop_keyed(), Some(("a", 0)));
        assert_eq!(q.pop_from(&"a", |&i| i == 1), Some(1));
        assert_eq!(q.pop_from(&"a", |&i| i == 7), None, "refused: stays");
        assert_eq!(q.pop_from(&"a", |_| true), Some(2));
        assert_eq!(q.pop_from(&"a", |_| true), None);
        assert_eq!((q.len(), q.pop(), q.pop()), (1, Some(10), None));
    }
}
