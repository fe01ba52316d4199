//! A job's result cell: where a job's result lands, and the one rule by
//! which it resolves once (the caller's handle is `api::handle`).
//!
//! The cell moves through QUEUED -> RUNNING (on a local worker) or REMOTE (on
//! a node; back to QUEUED if the node is lost) -> CLAIMED -> READY. Whoever wins
//! the move to CLAIMED (the worker, the timer, `cancel`, shutdown) is the one
//! that resolves the job; everyone else's result is dropped. That is how each
//! handle and callback resolves exactly once.

use crate::jobs::tracker::{
    as_callback, in_callback, would_deadlock, InCallback, Pending, Tracker,
};
use ppcore::{ErrorKind, JobError};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

const QUEUED: u8 = 0;
const RUNNING: u8 = 1;
const REMOTE: u8 = 2;
const CLAIMED: u8 = 3;
const READY: u8 = 4;

/// How many times `wait` looks at the cell, spinning, then yielding, before it
/// sleeps: a job that ends within a microsecond or two is picked up without a
/// futex round trip, yet a waiter never holds a core the workers need. A job
/// on a node is waited for asleep at once.
const SPINS: u32 = 256;
const YIELDS: u32 = 32;

/// A callback given with a job; it sees the result before the handle does.
pub(crate) type Callback<T> = Box<dyn FnOnce(&Result<T, JobError>) + Send>;

/// How a result is copied when it is read a second time (`None`: its type
/// is not `Clone`).
pub(crate) type Cloner<T> = Option<ppcore::Cloner<T>>;

struct Slot<T> {
    /// The error is boxed: a million queued cells should not each carry
    /// room for an error most of them never get.
    result: Option<Result<T, Box<JobError>>>,
    waker: Option<Waker>,
    sleeping: bool,
    /// The value is out of the slot being copied (with no lock held): other
    /// readers wait for it to come back.
    lent: bool,
    callback: Option<Callback<T>>,
}

/// Where a job's result lands.
pub(crate) struct Cell<T> {
    state: AtomicU8,
    slot: Mutex<Slot<T>>,
    ready: Condvar,
    pub(crate) tracker: Arc<Tracker>,
    group: Option<Arc<Pending>>,
    cloner: Cloner<T>,
}

impl<T: Send + 'static> Cell<T> {
    pub(crate) fn new(
        tracker: Arc<Tracker>,
        group: Option<Arc<Pending>>,
        callback: Option<Callback<T>>,
        cloner: Cloner<T>,
    ) -> Self {
        if let Some(g) = &group {
            g.add();
        }
        Cell {
            state: AtomicU8::new(QUEUED),
            slot: Mutex::new(Slot {
                result: None,
                waker: None,
                sleeping: false,
                lent: false,
                callback,
            }),
            ready: Condvar::new(),
            tracker,
            group,
            cloner,
        }
    }

    /// Marks the job running here; false if it already ended (cancelled).
    pub(crate) fn start(&self) -> bool {
        self.state
            .compare_exchange(QUEUED, RUNNING, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Marks the job sent to a node; false if it already ended (cancelled).
    pub(crate) fn start_remote(&self) -> bool {
        self.state
            .compare_exchange(QUEUED, REMOTE, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Whether the job has ended (resolved, or being resolved).
    pub(crate) fn ended(&self) -> bool {
        self.state.load(Ordering::Acquire) >= CLAIMED
    }

    /// Puts a started job back in the queue state (its node was lost); false
    /// if it already ended.
    pub(crate) fn requeue(&self) -> bool {
        self.state
            .compare_exchange(REMOTE, QUEUED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    pub(crate) fn tracker(&self) -> &Tracker {
        &self.tracker
    }

    /// Its group, as an identity to compare (not to follow).
    pub(crate) fn group_id(&self) -> Option<usize> {
        self.group.as_ref().map(|g| Arc::as_ptr(g) as usize)
    }

    fn claim(&self, from: impl Fn(u8) -> bool) -> bool {
        let mut now = self.state.load(Ordering::Acquire);
        while from(now) {
            match self
                .state
                .compare_exchange(now, CLAIMED, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return true,
                Err(s) => now = s,
            }
        }
        false
    }

    fn publish(&self, result: Result<T, JobError>) {
        // Counted first, so that stats read after a handle resolved count it.
        self.tracker
            .ended(&result.as_ref().map(|_| ()).map_err(|e| e.kind));
        let (waker, sleeping) = {
            let mut slot = self.lock();
            slot.result = Some(result.map_err(Box::new));
            self.state.store(READY, Ordering::Release);
            (slot.waker.take(), slot.sleeping)
        };
        if sleeping {
            self.ready.notify_all();
        }
        if let Some(w) = waker {
            w.wake();
        }
        if let Some(g) = &self.group {
            g.done();
        }
        // Last: `wait_all` returns only once every handle is ready.
        self.tracker.settled();
    }

    /// This job's identity for deadlock checks: its cell and group.
    fn identity(&self) -> InCallback {
        InCallback {
            cell: self as *const Self as *const () as usize,
            group: self.group.as_ref().map(|g| Arc::as_ptr(g) as usize),
        }
    }

    /// `Err` if waiting on this job here could never end: this thread runs
    /// the job's own callback.
    pub(crate) fn check_not_own(&self) -> Result<(), JobError> {
        match in_callback() {
            Some(ctx) if ctx.cell == self.identity().cell && !self.is_ready() => {
                Err(would_deadlock("waited on its own job"))
            }
            _ => Ok(()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Slot<T>> {
        ppcore::sync::lock(&self.slot)
    }

    pub(crate) fn is_ready(&self) -> bool {
        self.state.load(Ordering::Acquire) == READY
    }

    /// Waits until the result is in or `deadline` passes; true if it is in.
    pub(crate) fn wait_ready(&self, deadline: Option<Instant>) -> bool {
        for i in 0..SPINS + YIELDS {
            match self.state.load(Ordering::Acquire) {
                READY => return true,
                // On a node: its answer is a network round trip away, and a
                // spinning waiter would hold the core the link's driver
                // needs to take it.
                REMOTE => break,
                _ => {}
            }
            if i < SPINS {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        let _blocking = self.tracker.blocking();
        let mut slot = self.lock();
        while !self.is_ready() {
            slot.sleeping = true;
            slot = match deadline {
                None => self.ready.wait(slot).unwrap_or_else(|e| e.into_inner()),
                Some(at) => {
                    let left = at.saturating_duration_since(Instant::now());
                    if left == Duration::ZERO {
                        return false;
                    }
                    self.ready
                        .wait_timeout(slot, left)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
        }
        true
    }

    /// Resolves a job whose result is kept where it was made: ready, with
    /// no value in the cell (the handle fetches it), counted as a success.
    fn publish_kept(&self) {
        self.tracker.ended(&Ok(()));
        let (waker, sleeping) = {
            let mut slot = self.lock();
            self.state.store(READY, Ordering::Release);
            (slot.waker.take(), slot.sleeping)
        };
        if sleeping {
            self.ready.notify_all();
        }
        if let Some(w) = waker {
            w.wake();
        }
        if let Some(g) = &self.group {
            g.done();
        }
        self.tracker.settled();
    }

    /// For a kept job's handle: its error if it failed; `None` if it was
    /// kept (the cell holds no value: the handle fetches it).
    pub(crate) fn kept_error(&self) -> Option<JobError> {
        match &self.lock().result {
            Some(Err(e)) => Some((**e).clone()),
            _ => None,
        }
    }

    /// Moves the result out (the handle is consumed: nobody reads it again).
    pub(crate) fn take(&self) -> Result<T, JobError> {
        let mut slot = self.lock();
        while slot.lent {
            slot = self.ready.wait(slot).unwrap_or_else(|e| e.into_inner());
        }
        match slot.result.take() {
            Some(result) => result.map_err(|e| *e),
            None => Err(taken()),
        }
    }

    /// The result, leaving it for the next read: an error and a `Clone`
    /// value are given again; any other value is moved out, and read again
    /// it is [`ErrorKind::Taken`]. The copy is made with no lock held.
    pub(crate) fn read(&self) -> Result<T, JobError> {
        let mut slot = self.lock();
        while slot.lent {
            slot = self.ready.wait(slot).unwrap_or_else(|e| e.into_inner());
        }
        let value = match slot.result.take() {
            None => return Err(taken()),
            Some(Err(e)) => {
                let again = (*e).clone();
                slot.result = Some(Err(e));
                return Err(again);
            }
            Some(Ok(value)) => value,
        };
        let Some(clone) = self.cloner else {
            return Ok(value);
        };
        slot.lent = true;
        drop(slot);
        // Put back even if `clone` panics, so that no reader waits forever.
        let lent = Lent {
            cell: self,
            value: Some(value),
        };
        lent.value.as_ref().map(clone).ok_or_else(taken)
    }

    /// Takes the result if it is in, else leaves `waker` to be woken when it is.
    pub(crate) fn poll_take(&self, waker: &Waker) -> Poll<Result<T, JobError>> {
        let mut slot = self.lock();
        if self.is_ready() {
            drop(slot);
            return Poll::Ready(self.take());
        }
        match &slot.waker {
            Some(w) if w.will_wake(waker) => {}
            _ => slot.waker = Some(waker.clone()),
        }
        Poll::Pending
    }

    /// Arranges for `waker` to be woken once the result is in (at once if it is).
    pub(crate) fn notify(&self, waker: Waker) {
        let mut slot = self.lock();
        if self.is_ready() {
            drop(slot);
            waker.wake();
        } else {
            slot.waker = Some(waker);
        }
    }
}

/// A result read again: copied for a `Clone` type, else this.
fn taken() -> JobError {
    JobError::new(
        ErrorKind::Taken,
        "the result was already taken and its type is not Clone: keep the first one",
    )
}

/// A value out of its slot while it is copied; back in the slot when dropped.
struct Lent<'a, T: Send + 'static> {
    cell: &'a Cell<T>,
    value: Option<T>,
}

impl<T: Send + 'static> Drop for Lent<'_, T> {
    fn drop(&mut self) {
        let mut slot = self.cell.lock();
        slot.result = self.value.take().map(Ok);
        slot.lent = false;
        drop(slot);
        self.cell.ready.notify_all();
    }
}

/// Whatever holds a job's cell: the job itself, queued or running, with its
/// arguments in the same allocation (one allocation per job).
pub(crate) trait Holder<T>: Send + Sync + 'static {
    /// The cell.
    fn cell(&self) -> &Cell<T>;
    /// The job resolved with `err` (whoever resolved it): a job whose
    /// result was to be kept tells its dependents.
    fn failed(&self, _err: &JobError) {}
    /// The record of `result` to write before anyone sees it, if the job
    /// is journaled (once: the entry is taken).
    fn journal(&self, _result: &Result<T, JobError>) -> Option<crate::journal::Prepared> {
        None
    }
}

/// Resolves a job whose result is kept (on a node, or in the client's
/// value directory) unless it already ended; true if this call did. A kept
/// job has no callback (`submit` refuses one).
pub(crate) fn resolve_kept<T, H>(holder: &Arc<H>) -> bool
where
    T: Send + 'static,
    H: Holder<T> + ?Sized,
{
    let cell = holder.cell();
    if !cell.claim(|s| s < CLAIMED) {
        return false;
    }
    cell.publish_kept();
    true
}

/// Resolves the job with `result` unless it already ended; true if this
/// call resolved it.
pub(crate) fn resolve<T, H>(holder: &Arc<H>, result: Result<T, JobError>) -> bool
where
    T: Send + 'static,
    H: Holder<T> + ?Sized,
{
    resolve_from(holder, |s| s < CLAIMED, result)
}

/// Resolves a job that is queued or on a node (not one running on a local
/// thread, which cannot be stopped); true if this call resolved it.
pub(crate) fn cancel<T, H>(holder: &Arc<H>, err: JobError) -> bool
where
    T: Send + 'static,
    H: Holder<T> + ?Sized,
{
    resolve_from(holder, |s| s == QUEUED || s == REMOTE, Err(err))
}

/// Resolves a running job with `TimedOut`, unless it ended first.
pub(crate) fn expire<T, H>(holder: &Arc<H>)
where
    T: Send + 'static,
    H: Holder<T> + ?Sized,
{
    let err = JobError::new(ErrorKind::TimedOut, "the job ran past its timeout");
    resolve_from(holder, |s| s == RUNNING || s == REMOTE, Err(err));
}

fn resolve_from<T, H>(
    holder: &Arc<H>,
    from: impl Fn(u8) -> bool,
    result: Result<T, JobError>,
) -> bool
where
    T: Send + 'static,
    H: Holder<T> + ?Sized,
{
    let cell = holder.cell();
    if !cell.claim(from) {
        return false;
    }
    if let Err(e) = &result {
        holder.failed(e);
    }
    match holder.journal(&result) {
        None => deliver(holder, result),
        // Durable before visible: the handle and the callback see the
        // result once the journal's writer has committed it.
        Some(record) => {
            let holder = Arc::clone(holder);
            record.then(Box::new(move || deliver(&holder, result)));
        }
    }
    true
}

/// Lets a claimed job's result be seen: runs its callback (which then
/// publishes it), or publishes it.
fn deliver<T, H>(holder: &Arc<H>, result: Result<T, JobError>)
where
    T: Send + 'static,
    H: Holder<T> + ?Sized,
{
    let cell = holder.cell();
    let callback = cell.lock().callback.take();
    match callback {
        None => cell.publish(result),
        Some(callback) => {
            let keep = Arc::clone(holder);
            let identity = cell.identity();
            cell.tracker.run_callback(Box::new(move || {
                // The handle resolves even if the callback panics.
                let seen = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    as_callback(identity, || callback(&result));
                }));
                keep.cell().publish(result);
                if let Err(payload) = seen {
                    std::panic::resume_unwind(payload);
                }
            }));
        }
    }
}
