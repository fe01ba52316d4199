//! One thread that fires job timeouts.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::Instant;

/// Something that can run out of time: a job's cell.
pub(crate) trait Expire: Send + Sync {
    /// Called once the deadline passed; does nothing if the job already ended.
    fn expire(self: Arc<Self>);
}

struct Entry {
    at: Instant,
    seq: u64,
    target: Weak<dyn Expire>,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

#[derive(Default)]
struct State {
    heap: BinaryHeap<Reverse<Entry>>,
    seq: u64,
    stopped: bool,
}

/// Deadlines in a heap, watched by one thread; holds only weak references,
/// so a job that finished in time costs nothing but its entry.
pub(crate) struct Timer {
    state: Arc<(Mutex<State>, Condvar)>,
}

impl Timer {
    pub(crate) fn start() -> std::io::Result<Self> {
        let state = Arc::new((Mutex::new(State::default()), Condvar::new()));
        let watched = Arc::clone(&state);
        std::thread::Builder::new()
            .name("pp-timer".into())
            .spawn(move || run(&watched))?;
        Ok(Timer { state })
    }

    pub(crate) fn schedule(&self, at: Instant, target: Weak<dyn Expire>) {
        let (lock, cv) = &*self.state;
        let mut state = ppcore::sync::lock(lock);
        state.seq += 1;
        let seq = state.seq;
        let first = state.heap.peek().is_none_or(|Reverse(e)| at < e.at);
        state.heap.push(Reverse(Entry { at, seq, target }));
        if first {
            cv.notify_one();
        }
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        let (lock, cv) = &*self.state;
        ppcore::sync::lock(lock).stopped = true;
        cv.notify_one();
    }
}

fn run(state: &(Mutex<State>, Condvar)) {
    let (lock, cv) = state;
    let mut guard = ppcore::sync::lock(lock);
    while !guard.stopped {
        let now = Instant::now();
        match guard.heap.peek() {
            Some(Reverse(e)) if e.at <= now => {
                let Some(Reverse(entry)) = guard.heap.pop() else {
                    continue;
                };
                drop(guard);
                if let Some(target) = entry.target.upgrade() {
                    target.expire();
                }
                guard = ppcore::sync::lock(lock);
            }
            Some(Reverse(e)) => {
                let wait = e.at - now;
                guard = cv
                    .wait_timeout(guard, wait)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            None => guard = cv.wait(guard).unwrap_or_else(|e| e.into_inner()),
        }
    }
}
