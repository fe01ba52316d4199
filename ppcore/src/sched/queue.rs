//! The job queue: one line in submission order, with a front lane for work
//! handed back (its node was lost), which goes ahead of work not yet started.
//!
//! Consumers that can run only some kinds of job (a node's link) take the
//! first jobs *they* can run and leave the others where they are: a job no
//! node can run keeps its place for the local workers, and nothing takes it
//! out and puts it back (which let later jobs overtake it). A consumer that
//! found nothing it can run leaves a [`Wake`] and is woken by a later push
//! (one waiting consumer per item pushed, the wake handed on by one that
//! cannot take them: [`Lanes::pop_batch`]), so it never polls. Items are kept per kind (few kinds: one per job type),
//! each kind in order, with a sequence number that orders them across kinds.

use super::lane::Lane;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Something to wake when the queue gets a new item: a driver that waits on
/// a socket and the queue together.
pub trait Wake: Send + Sync {
    /// Called (with no lock held) after an item was pushed.
    fn wake(&self);
}

/// An unbounded multi-producer, multi-consumer queue with a front lane,
/// keyed by kind `K` (`()` for a queue of one kind). Cheap to clone; every
/// clone is the same queue.
pub struct Lanes<T, K = ()> {
    shared: Arc<Shared<T, K>>,
}

struct Shared<T, K> {
    state: Mutex<State<T, K>>,
    /// Signalled on a push when a consumer sleeps in [`Lanes::pop_timeout`].
    ready: Condvar,
    /// Items queued (read without the lock, for a cheap "empty?").
    len: AtomicUsize,
    /// Consumers asleep in `pop_timeout`.
    sleepers: AtomicUsize,
}

struct State<T, K> {
    kinds: Vec<Kind<T, K>>,
    next_seq: u64,
    /// Consumers waiting for items they can take, keyed by
    /// [`watcher_key`] (a consumer that finds nothing again is not added
    /// twice, at a cost that does not grow with the consumers waiting:
    /// 10,000 idle node links each look at the queue on every turn), each
    /// with the `next_seq` it had seen when it found nothing. See
    /// [`Lanes::pop_batch`] for who is woken when.
    watchers: Watchers,
}

struct Kind<T, K> {
    key: K,
    urgent: Lane<T>,
    normal: Lane<T>,
}

impl<T, K> Clone for Lanes<T, K> {
    fn clone(&self) -> Self {
        Lanes {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<T, K> Default for Lanes<T, K> {
    fn default() -> Self {
        Lanes {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    kinds: Vec::new(),
                    next_seq: 0,
                    watchers: Watchers::default(),
                }),
                ready: Condvar::new(),
                len: AtomicUsize::new(0),
                sleepers: AtomicUsize::new(0),
            }),
        }
    }
}

/// A watcher's identity: the address of what its `Arc` points to (the
/// queue holds a clone, so no other watcher can have it meanwhile).
fn watcher_key(w: &Arc<dyn Wake>) -> usize {
    Arc::as_ptr(w).cast::<()>() as usize
}

/// Which lane, and where in it, the next item to take is.
#[derive(Clone, Copy)]
struct Pick {
    kind: usize,
    urgent: bool,
}

/// The consumers waiting, each once, oldest look first.
#[derive(Default)]
struct Watchers {
    /// Where each is in `by_seen`.
    at: HashMap<usize, (u64, u64)>,
    /// By the `next_seq` each had seen when it found nothing, then by when
    /// it began to wait.
    by_seen: BTreeMap<(u64, u64), (usize, Arc<dyn Wake>)>,
    next: u64,
}

impl Watchers {
    /// `w` waits, having seen the items before `seen`.
    fn insert(&mut self, seen: u64, w: &Arc<dyn Wake>) {
        let key = watcher_key(w);
        let place = (seen, self.next);
        self.next += 1;
        if let Some(before) = self.at.insert(key, place) {
            self.by_seen.remove(&before);
        }
        self.by_seen.insert(place, (key, Arc::clone(w)));
    }

    fn remove(&mut self, w: &Arc<dyn Wake>) {
        if let Some(place) = self.at.remove(&watcher_key(w)) {
            self.by_seen.remove(&place);
        }
    }

    /// Takes out up to `n` of those that have not looked since item
    /// `seq` - 1 came, oldest look first, to wake (with no lock held).
    fn take(&mut self, n: usize, seq: u64) -> Vec<Arc<dyn Wake>> {
        let mut out = Vec::new();
        while out.len() < n {
            let Some(entry) = self.by_seen.first_entry() else {
                break;
            };
            if entry.key().0 >= seq {
                break;
            }
            let (key, w) = entry.remove();
            self.at.remove(&key);
            out.push(w);
        }
        out
    }
}

impl<T, K: PartialEq> State<T, K> {
    /// The first item (front lane first, then by sequence) whose kind `accept` takes.
    fn pick(&self, accept: &mut impl FnMut(&K) -> bool) -> Option<Pick> {
        let mut best: Option<(bool, u64, usize)> = None;
        for (i, kind) in self.kinds.iter().enumerate() {
            let head = match (kind.urgent.front_seq(), kind.normal.front_seq()) {
                (Some(s), _) => (true, s),
                (None, Some(s)) => (false, s),
                (None, None) => continue,
            };
            let better = best.is_none_or(|(u, s, _)| (head.0 && !u) || (head.0 == u && head.1 < s));
            if better && accept(&kind.key) {
                best = Some((head.0, head.1, i));
            }
        }
        best.map(|(urgent, _, kind)| Pick { kind, urgent })
    }

    fn take(&mut self, pick: Pick) -> Option<T> {
        let kind = self.kinds.get_mut(pick.kind)?;
        let lane = match pick.urgent {
            true => &mut kind.urgent,
            false => &mut kind.normal,
        };
        lane.pop_front()
    }

    fn lane(&mut self, key: K) -> &mut Kind<T, K> {
        let i = match self.kinds.iter().position(|k| k.key == key) {
            Some(i) => i,
            None => {
                self.kinds.push(Kind {
                    key,
                    urgent: Lane::default(),
                    normal: Lane::default(),
                });
                self.kinds.len() - 1
            }
        };
        &mut self.kinds[i]
    }
}

impl<T, K: PartialEq> Lanes<T, K> {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State<T, K>> {
        crate::sync::lock(&self.shared.state)
    }

    fn push_at(&self, key: K, items: impl IntoIterator<Item = T>, urgent: bool) {
        let (watchers, n) = {
            let mut state = self.lock();
            let mut seq = state.next_seq;
            let kind = state.lane(key);
            let lane = match urgent {
                true => &mut kind.urgent,
                false => &mut kind.normal,
            };
            for item in items {
                lane.push_back(seq, item);
                seq += 1;
            }
            let n = seq - state.next_seq;
            state.next_seq = seq;
            self.shared.len.fetch_add(n as usize, Ordering::SeqCst);
            // One waiting consumer per item: each takes at least one, or
            // hands the wake on (`pop_batch`).
            (
                state
                    .watchers
                    .take(usize::try_from(n).unwrap_or(usize::MAX), seq),
                n,
            )
        };
        // A sleeper counts itself and looks at the queue under the lock, so
        // it either saw these items or is counted here.
        match (n, self.shared.sleepers.load(Ordering::SeqCst)) {
            (0, _) | (_, 0) => {}
            (1, _) => self.shared.ready.notify_one(),
            _ => self.shared.ready.notify_all(),
        }
        for w in watchers {
            w.wake();
        }
    }

    /// Queues `item` of kind `key` behind everything.
    pub fn push_kind(&self, key: K, item: T) {
        self.push_at(key, [item], false);
    }

    /// Queues `items`, all of kind `key`, behind everything, in their order
    /// (one lock for all).
    pub fn push_all_kind(&self, key: K, items: impl IntoIterator<Item = T>) {
        self.push_at(key, items, false);
    }

    /// Queues `item` of kind `key` ahead of everything not handed back itself.
    pub fn push_front_kind(&self, key: K, item: T) {
        self.push_at(key, [item], true);
    }

    /// The next item, if one is queued.
    pub fn try_pop(&self) -> Option<T> {
        self.try_pop_where(&mut |_| true)
    }

    /// The next item of a kind `accept` takes, if one is queued.
    pub fn try_pop_where(&self, accept: &mut impl FnMut(&K) -> bool) -> Option<T> {
        if self.shared.len.load(Ordering::SeqCst) == 0 {
            return None;
        }
        let mut state = self.lock();
        let item = state.pick(accept).and_then(|p| state.take(p));
        if item.is_some() {
            self.shared.len.fetch_sub(1, Ordering::SeqCst);
        }
        item
    }

    /// The next item, waiting at most `timeout` for one.
    pub fn pop_timeout(&self, timeout: Duration) -> Option<T> {
        self.pop_timeout_where(&mut |_| true, timeout)
    }

    /// The next item of a kind `accept` takes, waiting at most `timeout`
    /// for one (woken by every push; items of other kinds stay put).
    pub fn pop_timeout_where(
        &self,
        accept: &mut impl FnMut(&K) -> bool,
        timeout: Duration,
    ) -> Option<T> {
        if let Some(item) = self.try_pop_where(accept) {
            return Some(item);
        }
        let deadline = Instant::now() + timeout;
        let mut state = self.lock();
        self.shared.sleepers.fetch_add(1, Ordering::SeqCst);
        let item = loop {
            if let Some(item) = state.pick(accept).and_then(|p| state.take(p)) {
                self.shared.len.fetch_sub(1, Ordering::SeqCst);
                break Some(item);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break None;
            }
            state = self
                .shared
                .ready
                .wait_timeout(state, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        };
        self.shared.sleepers.fetch_sub(1, Ordering::SeqCst);
        item
    }

    /// Takes up to `max` items, in queue order, of the kinds `accept` takes;
    /// the others keep their places. If it takes none and `watcher` is given,
    /// `watcher` waits to be woken (once).
    ///
    /// Who is woken: a push of `n` items wakes `n` waiting consumers (the
    /// oldest waiting first), not all of them (64 node links woken for one
    /// job, 63 to find nothing). A consumer that takes nothing while items
    /// are left (it cannot run them) hands its wake on to one consumer
    /// that has not looked since they came; every consumer that looks
    /// again has seen them, so the hand-on ends once all have looked, and
    /// an item some waiting consumer can take is never left with none
    /// woken. A consumer that took something looks again before it waits.
    pub fn pop_batch(
        &self,
        mut accept: impl FnMut(&K) -> bool,
        max: usize,
        watcher: Option<&Arc<dyn Wake>>,
    ) -> Vec<T> {
        let mut out = Vec::new();
        let mut state = self.lock();
        while out.len() < max {
            match state.pick(&mut accept).and_then(|p| state.take(p)) {
                Some(item) => out.push(item),
                None => break,
            }
        }
        self.shared.len.fetch_sub(out.len(), Ordering::SeqCst);
        let mut hand_on = Vec::new();
        if !out.is_empty() {
            // It looks again before it waits: a wait it left is stale.
            if let Some(w) = watcher {
                state.watchers.remove(w);
            }
        } else {
            let seen = state.next_seq;
            if let Some(w) = watcher {
                state.watchers.insert(seen, w);
            }
            // Items are left that this consumer cannot take: the wake it
            // may have had for them goes to one that has not looked since
            // they came (so the hand-on ends once every consumer looked).
            if self.shared.len.load(Ordering::SeqCst) > 0 {
                hand_on = state.watchers.take(1, seen);
            }
        }
        drop(state);
        for w in hand_on {
            w.wake();
        }
        out
    }

    /// Forgets `watcher` (its consumer goes away), handing on the wake it
    /// may have had.
    pub fn unwatch(&self, watcher: &Arc<dyn Wake>) {
        self.pass_on(watcher);
    }

    /// For a consumer woken that will not look now (it has no room, or is
    /// stopping): it waits no more, and the wake it may have had goes to
    /// one that has not looked since the last item came, if items are
    /// queued. Without this, a push that woke only it would wake nobody
    /// who can take the item.
    pub fn pass_on(&self, watcher: &Arc<dyn Wake>) {
        let woken = {
            let mut state = self.lock();
            state.watchers.remove(watcher);
            match self.shared.len.load(Ordering::SeqCst) {
                0 => Vec::new(),
                _ => {
                    let seq = state.next_seq;
                    state.watchers.take(1, seq)
                }
            }
        };
        for w in woken {
            w.wake();
        }
    }

    /// Takes out every item of the kinds `pred` picks (asked once per kind
    /// queued), in queue order; the others keep their places untouched.
    pub fn drain_kinds(&self, mut pred: impl FnMut(&K) -> bool) -> Vec<T> {
        let mut out = Vec::new();
        let mut state = self.lock();
        for kind in &mut state.kinds {
            if (kind.urgent.is_empty() && kind.normal.is_empty()) || !pred(&kind.key) {
                continue;
            }
            for (back, lane) in [(false, &mut kind.urgent), (true, &mut kind.normal)] {
                out.extend(lane.drain().map(|(seq, item)| ((back, seq), item)));
            }
        }
        self.shared.len.fetch_sub(out.len(), Ordering::SeqCst);
        drop(state);
        out.sort_by_key(|(at, _)| *at);
        out.into_iter().map(|(_, item)| item).collect()
    }

    /// Takes out every item `pred` picks, in queue order; the others keep
    /// their places. `pred` runs under the queue's lock: keep it a look.
    pub fn remove_where(&self, mut pred: impl FnMut(&T) -> bool) -> Vec<T> {
        let mut out = Vec::new();
        let mut state = self.lock();
        for kind in &mut state.kinds {
            for (back, lane) in [(false, &mut kind.urgent), (true, &mut kind.normal)] {
                let taken = lane.take_where(&mut pred);
                out.extend(taken.into_iter().map(|(seq, item)| ((back, seq), item)));
            }
        }
        self.shared.len.fetch_sub(out.len(), Ordering::SeqCst);
        drop(state);
        out.sort_by_key(|(at, _)| *at);
        out.into_iter().map(|(_, item)| item).collect()
    }

    /// Items queued now.
    pub fn len(&self) -> usize {
        self.shared.len.load(Ordering::SeqCst)
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<T> Lanes<T> {
    /// Queues `item` behind everything.
    pub fn push(&self, item: T) {
        self.push_kind((), item);
    }

    /// Queues `items` behind everything, in their order (one lock for all).
    pub fn push_all(&self, items: impl IntoIterator<Item = T>) {
        self.push_all_kind((), items);
    }

    /// Queues `item` ahead of everything not handed back itself.
    pub fn push_front(&self, item: T) {
        self.push_front_kind((), item);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

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
        let (tx, rx) = std::sync::mpsc::channel();
        let t = std::thread::spawn(move || {
            tx.send(()).unwrap();
            q2.pop_timeout(Duration::from_secs(10))
        });
        rx.recv().unwrap();
        q.push_front(5);
        assert_eq!(t.join().unwrap(), Some(5));
    }

    #[test]
    fn order_holds_across_kinds_and_lanes() {
        let q = Lanes::<u32, char>::new();
        q.push_kind('a', 1);
        q.push_all_kind('b', [2]);
        q.push_kind('a', 3);
        q.push_front_kind('b', 10);
        q.push_front_kind('a', 11);
        let all: Vec<_> = std::iter::from_fn(|| q.try_pop()).collect();
        assert_eq!(all, [10, 11, 1, 2, 3]);
    }

    struct Flag(AtomicBool);
    impl Wake for Flag {
        fn wake(&self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_picky_consumer_leaves_others_in_place_and_is_woken_by_a_push() {
        let q = Lanes::<u32, char>::new();
        for (i, k) in "abab".chars().enumerate() {
            q.push_kind(k, i as u32);
        }
        let flag = Arc::new(Flag(AtomicBool::new(false)));
        let w: Arc<dyn Wake> = flag.clone();
        // Takes only the 'b's, in order; the 'a's keep their places.
        assert_eq!(q.pop_batch(|k| *k == 'b', 10, Some(&w)), [1, 3]);
        assert!(!flag.0.load(Ordering::SeqCst));
        // Nothing more for it: it waits for a push instead of polling.
        assert!(q.pop_batch(|k| *k == 'b', 10, Some(&w)).is_empty());
        assert_eq!(q.len(), 2);
        q.push_kind('a', 4);
        assert!(flag.0.load(Ordering::SeqCst));
        // Anyone else sees the 'a's in their order, none overtaken.
        let rest: Vec<_> = std::iter::from_fn(|| q.try_pop()).collect();
        assert_eq!(rest, [0, 2, 4]);
    }

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(&self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn counters(n: usize) -> (Vec<Arc<Count>>, Vec<Arc<dyn Wake>>) {
        let counts: Vec<_> = (0..n)
            .map(|_| Arc::new(Count(AtomicUsize::new(0))))
            .collect();
        let wakes = counts.iter().map(|c| c.clone() as Arc<dyn Wake>).collect();
        (counts, wakes)
    }

    fn woken(counts: &[Arc<Count>]) -> Vec<usize> {
        counts.iter().map(|c| c.0.load(Ordering::SeqCst)).collect()
    }

    #[test]
    fn a_push_wakes_one_waiting_consumer_per_item_oldest_first() {
        let q = Lanes::<u32>::new();
        let (counts, wakes) = counters(4);
        for w in &wakes {
            assert!(q.pop_batch(|_| true, 4, Some(w)).is_empty());
        }
        q.push(1);
        assert_eq!(woken(&counts), [1, 0, 0, 0]);
        q.push_all([2, 3]);
        assert_eq!(woken(&counts), [1, 1, 1, 0]);
        // The woken took what they were woken for: the last one sleeps on.
        assert_eq!(q.pop_batch(|_| true, 4, Some(&wakes[0])), [1, 2, 3]);
        assert!(q.pop_batch(|_| true, 4, Some(&wakes[1])).is_empty());
        assert_eq!(woken(&counts), [1, 1, 1, 0], "nothing left: no hand-on");
    }

    #[test]
    fn a_consumer_that_cannot_take_what_it_was_woken_for_hands_the_wake_on() {
        let q = Lanes::<u32, char>::new();
        let (counts, wakes) = counters(3);
        // Consumer 0 takes only 'a', 1 and 2 only 'b'.
        let takes = |i: usize| move |k: &char| *k == if i == 0 { 'a' } else { 'b' };
        for (i, w) in wakes.iter().enumerate() {
            assert!(q.pop_batch(takes(i), 4, Some(w)).is_empty());
        }
        q.push_kind('b', 7);
        assert_eq!(woken(&counts), [1, 0, 0], "the oldest waiter first");
        assert!(q.pop_batch(takes(0), 4, Some(&wakes[0])).is_empty());
        assert_eq!(woken(&counts), [1, 1, 0], "handed on to the next");
        assert_eq!(q.pop_batch(takes(1), 4, Some(&wakes[1])), [7]);
        assert!(q.pop_batch(takes(1), 4, Some(&wakes[1])).is_empty());
        // An item nobody takes: the wake goes round once and ends. Each
        // consumer looks whenever it was woken since it last looked.
        let mut looked = woken(&counts);
        q.push_kind('c', 8);
        for _ in 0..10 {
            let now = woken(&counts);
            let due: Vec<usize> = (0..3).filter(|&i| now[i] > looked[i]).collect();
            if due.is_empty() {
                break;
            }
            looked = now;
            for i in due {
                assert!(q.pop_batch(takes(i), 4, Some(&wakes[i])).is_empty());
            }
        }
        assert_eq!(woken(&counts), [2, 2, 1], "each woken once for the 'c'");
        assert_eq!(q.len(), 1);
    }

    #[test]
    fn a_consumer_woken_that_will_not_look_passes_the_wake_on() {
        let q = Lanes::<u32>::new();
        let (counts, wakes) = counters(3);
        for w in &wakes {
            assert!(q.pop_batch(|_| true, 4, Some(w)).is_empty());
        }
        q.push(1);
        assert_eq!(woken(&counts), [1, 0, 0]);
        // Consumer 0 has no room to look: the wake goes to the next.
        q.pass_on(&wakes[0]);
        assert_eq!(woken(&counts), [1, 1, 0]);
        // Consumer 1 goes away: so does the wake, to the last.
        q.unwatch(&wakes[1]);
        assert_eq!(woken(&counts), [1, 1, 1]);
        assert_eq!(q.pop_batch(|_| true, 4, Some(&wakes[2])), [1]);
        // Nothing queued: a pass-on wakes nobody.
        assert!(q.pop_batch(|_| true, 4, Some(&wakes[1])).is_empty());
        q.pass_on(&wakes[0]);
        assert_eq!(woken(&counts), [1, 1, 1]);
    }

    #[test]
    fn a_consumer_that_finds_nothing_twice_is_woken_once_and_unwatch_forgets_it() {
        let q = Lanes::<u32>::new();
        let (a, b) = (
            Arc::new(Count(AtomicUsize::new(0))),
            Arc::new(Count(AtomicUsize::new(0))),
        );
        let (wa, wb): (Arc<dyn Wake>, Arc<dyn Wake>) = (a.clone(), b.clone());
        for _ in 0..3 {
            assert!(q.pop_batch(|_| true, 4, Some(&wa)).is_empty());
        }
        assert!(q.pop_batch(|_| true, 4, Some(&wb)).is_empty());
        q.push_all([1, 2]);
        assert_eq!(
            (a.0.load(Ordering::SeqCst), b.0.load(Ordering::SeqCst)),
            (1, 1)
        );
        // Woken watchers are forgotten: the next push wakes nobody.
        q.push(2);
        assert_eq!(
            (a.0.load(Ordering::SeqCst), b.0.load(Ordering::SeqCst)),
            (1, 1)
        );
        // Both wait again (they find nothing they take); one goes away.
        assert!(q.pop_batch(|_| false, 4, Some(&wa)).is_empty());
        assert!(q.pop_batch(|_| false, 4, Some(&wb)).is_empty());
        q.unwatch(&wa);
        q.push(3);
        assert_eq!(
            (a.0.load(Ordering::SeqCst), b.0.load(Ordering::SeqCst)),
            (1, 2)
        );
    }

    #[test]
    fn drain_kinds_keeps_the_rest_in_place() {
        let q = Lanes::<u32, char>::new();
        for (i, k) in "abcab".chars().enumerate() {
            q.push_kind(k, i as u32);
        }
        q.push_front_kind('a', 9);
        assert_eq!(q.drain_kinds(|k| *k == 'a'), [9, 0, 3]);
        let rest: Vec<_> = std::iter::from_fn(|| q.try_pop()).collect();
        assert_eq!(rest, [1, 2, 4]);
    }

    #[test]
    fn remove_where_takes_items_of_any_kind_and_keeps_the_rest_in_order() {
        let q = Lanes::<u32, char>::new();
        for (i, k) in "abcab".chars().enumerate() {
            q.push_kind(k, i as u32);
        }
        q.push_front_kind('b', 8);
        assert_eq!(q.remove_where(|i| i % 2 == 0), [8, 0, 2, 4]);
        assert_eq!(q.len(), 2);
        let rest: Vec<_> = std::iter::from_fn(|| q.try_pop()).collect();
        assert_eq!(rest, [1, 3]);
    }
}
