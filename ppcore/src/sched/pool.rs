//! A resizable pool of worker threads that pull work from a shared queue.
//!
//! Pull, not push: the queue is a channel that other consumers (remote node
//! connections) can pull from too, so an idle slot anywhere takes the next job.

use crate::sched::queue::Lanes;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How often an idle worker looks whether the pool shrank.
const IDLE_CHECK: Duration = Duration::from_millis(200);

/// How many times an idle worker of [`Pool::start`] looks at the queue
/// before it sleeps.
const POLLS: u32 = 64;

type Spawn = dyn Fn(Arc<Counts>, usize) -> bool + Send + Sync;

/// Which kinds of item a pool's workers take.
type Accept<K> = dyn Fn(&K) -> bool + Send + Sync;

#[derive(Default)]
struct Counts {
    target: AtomicUsize,
    live: AtomicUsize,
}

impl Counts {
    /// Claims the right for one live worker to leave, if there are too many.
    fn retire_one(&self) -> bool {
        let mut live = self.live.load(Ordering::Acquire);
        while live > self.target.load(Ordering::Acquire) {
            match self
                .live
                .compare_exchange(live, live - 1, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return true,
                Err(now) => live = now,
            }
        }
        false
    }
}

/// Worker threads running `run` on every item pulled from a queue.
///
/// Dropping the pool lets each worker finish the item in hand and stop; the
/// threads are not joined, so a long job never blocks the drop.
pub struct Pool {
    counts: Arc<Counts>,
    spawn: Arc<Spawn>,
    spawned: AtomicUsize,
}

impl Pool {
    /// Starts `workers` threads named `name-N`, each pulling from `queue`;
    /// an idle worker looks at the queue 64 times, yielding in between,
    /// before it sleeps.
    pub fn start<T, K, F>(name: &str, workers: usize, queue: Lanes<T, K>, run: F) -> Self
    where
        T: Send + 'static,
        K: PartialEq + Send + 'static,
        F: Fn(T) + Send + Sync + 'static,
    {
        Self::start_polling(name, workers, POLLS, queue, move |item| {
            run(item);
            true
        })
    }

    /// [`start`](Self::start) with workers that take only items of the
    /// kinds `accept` takes (asked under the queue's lock: keep it a
    /// look); the others stay queued for other consumers.
    pub fn start_taking<T, K, A, F>(
        name: &str,
        workers: usize,
        queue: Lanes<T, K>,
        accept: A,
        run: F,
    ) -> Self
    where
        T: Send + 'static,
        K: PartialEq + Send + 'static,
        A: Fn(&K) -> bool + Send + Sync + 'static,
        F: Fn(T) + Send + Sync + 'static,
    {
        let accept: Arc<Accept<K>> = Arc::new(accept);
        Self::start_with(name, workers, POLLS, queue, accept, move |item| {
            run(item);
            true
        })
    }

    /// [`start`](Self::start) with idle workers that look at the queue
    /// `polls` times before they sleep, after an item for which `run`
    /// answered true (after one it answered false they sleep at once).
    /// Polling saves a producer that pushes one item at a time a wake-up
    /// per item; where items come in batches (a node's connection pushes
    /// each frame's jobs at once, one wake-up per batch) it only takes CPU
    /// from the producer. A node polls only after a job that keeps its
    /// result: the next link of a chain comes as soon as it ends.
    pub fn start_polling<T, K, F>(
        name: &str,
        workers: usize,
        polls: u32,
        queue: Lanes<T, K>,
        run: F,
    ) -> Self
    where
        T: Send + 'static,
        K: PartialEq + Send + 'static,
        F: Fn(T) -> bool + Send + Sync + 'static,
    {
        Self::start_with(name, workers, polls, queue, Arc::new(|_: &K| true), run)
    }

    fn start_with<T, K, F>(
        name: &str,
        workers: usize,
        polls: u32,
        queue: Lanes<T, K>,
        accept: Arc<Accept<K>>,
        run: F,
    ) -> Self
    where
        T: Send + 'static,
        K: PartialEq + Send + 'static,
        F: Fn(T) -> bool + Send + Sync + 'static,
    {
        let run = Arc::new(run);
        let name = name.to_owned();
        let spawn: Arc<Spawn> = Arc::new(move |counts: Arc<Counts>, index: usize| {
            let queue = queue.clone();
            let run = Arc::clone(&run);
            let accept = Arc::clone(&accept);
            let worker_counts = Arc::clone(&counts);
            let spawned = std::thread::Builder::new()
                .name(format!("{name}-{index}"))
                .spawn(move || worker_loop(&worker_counts, &queue, polls, &*accept, &*run));
            if spawned.is_err() {
                // The OS refused a thread: the pool stays smaller than asked.
                counts.live.fetch_sub(1, Ordering::AcqRel);
                return false;
            }
            true
        });
        let pool = Pool {
            counts: Arc::new(Counts::default()),
            spawn,
            spawned: AtomicUsize::new(0),
        };
        pool.set_workers(workers);
        pool
    }

    /// Grows or shrinks the pool to `n` workers. Shrinking takes effect as
    /// workers finish their current item or notice within a fraction of a second.
    /// If the OS refuses a thread, the pool keeps the workers it could start
    /// ([`workers`](Self::workers) says how many); it does not retry.
    pub fn set_workers(&self, n: usize) {
        self.counts.target.store(n, Ordering::Release);
        loop {
            let live = self.counts.live.load(Ordering::Acquire);
            if live >= n {
                break;
            }
            if self
                .counts
                .live
                .compare_exchange(live, live + 1, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                let index = self.spawned.fetch_add(1, Ordering::Relaxed);
                if !(self.spawn)(Arc::clone(&self.counts), index) {
                    // No retry: the pool keeps the workers it could start.
                    let live = self.counts.live.load(Ordering::Acquire);
                    self.counts.target.store(live, Ordering::Release);
                    return;
                }
            }
        }
    }

    /// The number of workers the pool is sized to.
    pub fn workers(&self) -> usize {
        self.counts.target.load(Ordering::Acquire)
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.counts.target.store(0, Ordering::Release);
    }
}

fn worker_loop<T, K: PartialEq>(
    counts: &Counts,
    queue: &Lanes<T, K>,
    polls: u32,
    accept: &Accept<K>,
    run: &(dyn Fn(T) -> bool + Send + Sync),
) {
    let mut accept = |k: &K| accept(k);
    // Leaves the live count right if `run` ever panics.
    struct Leave<'a>(&'a Counts, bool);
    impl Drop for Leave<'_> {
        fn drop(&mut self) {
            if !self.1 {
                self.0.live.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }
    let mut leave = Leave(counts, false);
    // Whether the last item asked for polling before the next sleep.
    let mut poll = false;
    loop {
        if counts.retire_one() {
            leave.1 = true;
            return;
        }
        if poll {
            if let Some(item) = poll_briefly(queue, polls, &mut accept) {
                poll = run(item);
                continue;
            }
        }
        poll = match queue.pop_timeout_where(&mut accept, IDLE_CHECK) {
            Some(item) => run(item),
            None => false,
        };
    }
}

/// Looks at the queue a few times, yielding in between, before the worker
/// sleeps: while jobs arrive back to back, a worker that stays awake saves the
/// submitter a wake-up system call per job.
fn poll_briefly<T, K: PartialEq>(
    queue: &Lanes<T, K>,
    polls: u32,
    accept: &mut impl FnMut(&K) -> bool,
) -> Option<T> {
    for _ in 0..polls {
        if let Some(item) = queue.try_pop_where(accept) {
            return Some(item);
        }
        std::thread::yield_now();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn workers_that_never_poll_sleep_and_wake_for_every_push() {
        let queue = Lanes::<u64>::new();
        let (tx, rx) = std::sync::mpsc::channel();
        let tx = std::sync::Mutex::new(tx);
        // Items that ask for polling and items that do not.
        let _pool = Pool::start_polling("t0", 2, 0, queue.clone(), move |x| {
            let _ = tx.lock().unwrap().send(x);
            x % 2 == 0
        });
        // One at a time (the workers go back to sleep between pushes), then
        // a batch.
        for i in 0..20 {
            queue.push(i);
            assert_eq!(rx.recv_timeout(Duration::from_secs(10)), Ok(i));
        }
        queue.push_all(20..100);
        let mut got: Vec<u64> = (20..100)
            .map(|_| rx.recv_timeout(Duration::from_secs(10)).unwrap())
            .collect();
        got.sort_unstable();
        assert_eq!(got, (20..100).collect::<Vec<_>>());
    }

    #[test]
    fn every_item_runs_once_and_pool_resizes() {
        let tx = Lanes::<u64>::new();
        let (done, ran) = std::sync::mpsc::channel();
        let done = std::sync::Mutex::new(done);
        let pool = Pool::start("t", 3, tx.clone(), move |x| {
            let _ = done.lock().unwrap().send(x);
        });
        for i in 1..=1000 {
            tx.push(i);
        }
        pool.set_workers(1);
        assert_eq!(pool.workers(), 1);
        for i in 1001..=2000 {
            tx.push(i);
        }
        let mut seen: Vec<u64> = (1..=2000)
            .map(|_| ran.recv_timeout(Duration::from_secs(10)).unwrap())
            .collect();
        seen.sort_unstable();
        assert_eq!(seen, (1..=2000).collect::<Vec<_>>(), "each item once");
        // Retiring workers notice within IDLE_CHECK; nothing signals it.
        let deadline = Instant::now() + Duration::from_secs(10);
        while pool.counts.live.load(Ordering::Acquire) != 1 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(pool.counts.live.load(Ordering::Acquire), 1);
    }
}
