//! A job's result cell: where a job's result lands, and the one rule by
//! which it resolves once (the caller's handle is `api::handle`).
//!
//! The cell moves through QUEUED -> RUNNING (on a local worker) or REMOTE (on
//! a node; back to QUEUED if the node is lost) -> CLAIMED -> READY. Whoever wins
//! the move to CLAIMED (the worker, the timer, `cancel`, shutdown) is the one
//! that resolves the job; everyone else's result is dropped. That is how each
//! handle and callback resolves exactly once.

use crate::jobs::spec::{KeptResult, Spec};
use crate::jobs::tracker::{
    as_callback, in_callback, would_deadlock, InCallback, Pending, Tracker,
};
use ppcore::{ErrorKind, JobError};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

const QUEUED: u8 = 0;
const RUNNING: u8 = 1;
const REMOTE: u8 = 2;
const CLAIMED: u8 = 3;
const READY: u8 = 4;

/// `Cell::flags`: a thread sleeps on `ready` (set and read with the
/// slot's lock held).
const SLEEPING: u8 = 1;
/// The value is out of the slot being copied (with no lock held): other
/// readers wait for it to come back (set and read with the lock held).
const LENT: u8 = 2;
/// Its result is recorded in the journal (set at birth).
const JOURNALED: u8 = 4;

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

/// The part of a job that changes as it runs, behind the job's one lock:
/// its result, its arguments, its attempts, and (boxed, for the few jobs
/// that have them) a waker, a callback and the job's rarely used part `E`.
///
/// A million queued jobs should not each carry room for what most of them
/// never get: an error is kept in `More`, boxed with the rest of it.
pub(crate) struct Slot<T, A, E> {
    /// Its value, once it succeeded (until taken).
    value: Option<T>,
    more: Option<Box<More<T, E>>>,
    /// Taken by a local run; kept (for retries) while on a node.
    pub(crate) args: Option<A>,
    pub(crate) attempt: u32,
    /// Bytes of the client's byte budget its arguments hold, until a
    /// worker or a node's link takes the job (`u32::MAX`: more; the count
    /// is in `E`).
    pub(crate) budget: u32,
    /// Node losses this job may meet before it fails with `NodeLost`.
    pub(crate) max_losses: u16,
    /// Worker-process crashes it may cause before it fails with `Crashed`.
    pub(crate) max_crashes: u16,
}

/// What few jobs need of the slot.
struct More<T, E> {
    waker: Option<Waker>,
    callback: Option<Callback<T>>,
    extra: Option<Box<E>>,
    /// Its error, once it failed (kept: read again, it is given again).
    error: Option<JobError>,
}

impl<T, A, E> Slot<T, A, E> {
    fn more(&mut self) -> &mut More<T, E> {
        self.more.get_or_insert_with(|| {
            Box::new(More {
                waker: None,
                callback: None,
                extra: None,
                error: None,
            })
        })
    }

    fn error(&self) -> Option<&JobError> {
        self.more.as_ref()?.error.as_ref()
    }

    fn take_waker(&mut self) -> Option<Waker> {
        self.more.as_mut()?.waker.take()
    }

    /// The job's rarely used part, if it has one.
    pub(crate) fn extra(&self) -> Option<&E> {
        self.more.as_ref()?.extra.as_deref()
    }

    /// The job's rarely used part, if it has one, to change.
    pub(crate) fn extra_mut(&mut self) -> Option<&mut E> {
        self.more.as_mut()?.extra.as_deref_mut()
    }

    /// The job's rarely used part, made if it has none.
    pub(crate) fn extra_or_default(&mut self) -> &mut E
    where
        E: Default,
    {
        self.more().extra.get_or_insert_with(Default::default)
    }
}

/// How a job starts: what its slot holds at first.
pub(crate) struct Birth<T, A, E> {
    pub(crate) args: A,
    pub(crate) callback: Option<Callback<T>>,
    pub(crate) extra: Option<Box<E>>,
    /// Node losses and worker crashes it may meet.
    pub(crate) limits: (u16, u16),
    pub(crate) journaled: bool,
}

/// Where a job's result lands, and the job's one lock.
pub(crate) struct Cell<T, A, E> {
    state: AtomicU8,
    flags: AtomicU8,
    ready: Condvar,
    slot: Mutex<Slot<T, A, E>>,
    pub(crate) tracker: Arc<Tracker>,
    spec: Option<Box<Spec<T>>>,
}

impl<T: Send + 'static, A, E> Cell<T, A, E> {
    pub(crate) fn new(tracker: Arc<Tracker>, spec: Spec<T>, birth: Birth<T, A, E>) -> Self {
        if let Some(g) = &spec.group {
            g.add();
        }
        let Birth {
            args,
            callback,
            extra,
            limits: (max_losses, max_crashes),
            journaled,
        } = birth;
        let more = (callback.is_some() || extra.is_some()).then(|| {
            Box::new(More {
                waker: None,
                callback,
                extra,
                error: None,
            })
        });
        Cell {
            state: AtomicU8::new(QUEUED),
            flags: AtomicU8::new(if journaled { JOURNALED } else { 0 }),
            slot: Mutex::new(Slot {
                value: None,
                more,
                args: Some(args),
                attempt: 0,
                budget: 0,
                max_losses,
                max_crashes,
            }),
            ready: Condvar::new(),
            tracker,
            spec: spec.boxed(),
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

    /// Whether its result is recorded in the journal.
    pub(crate) fn journaled(&self) -> bool {
        self.flags.load(Ordering::Relaxed) & JOURNALED != 0
    }

    /// What it was submitted with beyond the arguments, if anything.
    pub(crate) fn spec(&self) -> Option<&Spec<T>> {
        self.spec.as_deref()
    }

    fn group(&self) -> Option<&Arc<Pending>> {
        self.spec()?.group.as_ref()
    }

    /// Its group, as an identity to compare (not to follow).
    pub(crate) fn group_id(&self) -> Option<usize> {
        self.group().map(|g| Arc::as_ptr(g) as usize)
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

    /// Makes the job ready (with `result`, or none for a kept one) and
    /// wakes whoever waits.
    fn publish(&self, result: Option<Result<T, JobError>>) {
        // Counted first, so that stats read after a handle resolved count it.
        let outcome = match &result {
            Some(r) => r.as_ref().map(|_| ()).map_err(|e| e.kind),
            None => Ok(()),
        };
        self.tracker.ended(&outcome);
        let (waker, sleeping) = {
            let mut slot = self.lock();
            match result {
                Some(Ok(value)) => slot.value = Some(value),
                Some(Err(e)) => slot.more().error = Some(e),
                None => {}
            }
            self.state.store(READY, Ordering::Release);
            let sleeping = self.flags.load(Ordering::Relaxed) & SLEEPING != 0;
            (slot.take_waker(), sleeping)
        };
        if sleeping {
            self.ready.notify_all();
        }
        if let Some(w) = waker {
            w.wake();
        }
        if let Some(g) = self.group() {
            g.done();
        }
        // Last: `wait_all` returns only once every handle is ready.
        self.tracker.settled();
    }

    /// This job's identity for deadlock checks: its cell and group.
    fn identity(&self) -> InCallback {
        InCallback {
            cell: self as *const Self as *const () as usize,
            group: self.group_id(),
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

    /// The job's lock, over what changes as it runs.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Slot<T, A, E>> {
        ppcore::sync::lock(&self.slot)
    }

    /// The slot, with no lock: nobody else holds the job.
    pub(crate) fn slot_mut(&mut self) -> &mut Slot<T, A, E> {
        self.slot.get_mut().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits on `ready` (the lock held in `slot`) until woken.
    fn sleep<'a>(
        &self,
        slot: MutexGuard<'a, Slot<T, A, E>>,
        deadline: Option<Instant>,
    ) -> Option<MutexGuard<'a, Slot<T, A, E>>> {
        self.flags.fetch_or(SLEEPING, Ordering::Relaxed);
        match deadline {
            None => Some(self.ready.wait(slot).unwrap_or_else(|e| e.into_inner())),
            Some(at) => {
                let left = at.saturating_duration_since(Instant::now());
                if left == Duration::ZERO {
                    return None;
                }
                let woken = self.ready.wait_timeout(slot, left);
                Some(woken.unwrap_or_else(|e| e.into_inner()).0)
            }
        }
    }

    fn lent(&self) -> bool {
        self.flags.load(Ordering::Relaxed) & LENT != 0
    }

    /// The lock, once no reader has the value out.
    fn lock_unlent(&self) -> MutexGuard<'_, Slot<T, A, E>> {
        let mut slot = self.lock();
        while self.lent() {
            slot = self.ready.wait(slot).unwrap_or_else(|e| e.into_inner());
        }
        slot
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
            match self.sleep(slot, deadline) {
                Some(again) => slot = again,
                None => return false,
            }
        }
        true
    }

    /// For a kept job's handle: its error if it failed; `None` if it was
    /// kept (the cell holds no value: the handle fetches it).
    pub(crate) fn kept_error(&self) -> Option<JobError> {
        self.lock().error().cloned()
    }

    /// Moves the result out (the handle is consumed: nobody reads it again).
    pub(crate) fn take(&self) -> Result<T, JobError> {
        let mut slot = self.lock_unlent();
        if let Some(value) = slot.value.take() {
            return Ok(value);
        }
        match slot.more.as_mut().and_then(|m| m.error.take()) {
            Some(e) => Err(e),
            None => Err(taken()),
        }
    }

    /// The result, leaving it for the next read: an error and a `Clone`
    /// value (copied by `cloner`) are given again; any other value is moved
    /// out, and read again it is [`ErrorKind::Taken`]. The copy is made
    /// with no lock held.
    pub(crate) fn read(&self, cloner: Cloner<T>) -> Result<T, JobError> {
        let mut slot = self.lock_unlent();
        if let Some(e) = slot.error() {
            return Err(e.clone());
        }
        let Some(value) = slot.value.take() else {
            return Err(taken());
        };
        let Some(clone) = cloner else {
            return Ok(value);
        };
        self.flags.fetch_or(LENT, Ordering::Relaxed);
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
        let more = slot.more();
        match &more.waker {
            Some(w) if w.will_wake(waker) => {}
            _ => more.waker = Some(waker.clone()),
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
            slot.more().waker = Some(waker);
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
struct Lent<'a, T: Send + 'static, A, E> {
    cell: &'a Cell<T, A, E>,
    value: Option<T>,
}

impl<T: Send + 'static, A, E> Drop for Lent<'_, T, A, E> {
    fn drop(&mut self) {
        let mut slot = self.cell.lock();
        slot.value = self.value.take();
        self.cell.flags.fetch_and(!LENT, Ordering::Relaxed);
        drop(slot);
        self.cell.ready.notify_all();
    }
}

/// Whatever holds a job's cell: the job itself, queued or running, with its
/// arguments in the same allocation (one allocation per job).
pub(crate) trait Holder<T>: Send + Sync + 'static {
    /// The job's arguments.
    type Args: Send + 'static;
    /// The job's rarely used part.
    type Extra: Send + 'static;
    /// The cell.
    fn cell(&self) -> &Cell<T, Self::Args, Self::Extra>;
    /// The job's id, unique within its server.
    fn id(&self) -> u64;
    /// How its result is copied when read again (`None`: not `Clone`).
    fn cloner(&self) -> Cloner<T>;
    /// The job resolved with `err` (whoever resolved it): a job whose
    /// result was to be kept tells its dependents.
    fn failed(&self, _err: &JobError) {}
    /// The record of `result` to write before anyone sees it, if the job
    /// is journaled (once: the entry is taken).
    fn journal(&self, _result: &Result<T, JobError>) -> Option<crate::journal::Prepared> {
        None
    }
}

/// What a job's handle asks of the job behind it, whatever its type of
/// arguments: the handle holds it as `Arc<dyn JobRef<T>>`, one fat pointer.
pub(crate) trait JobRef<T>: Send + Sync + 'static {
    /// The job's id, unique within its server.
    fn id(&self) -> u64;
    /// `Err` if waiting on it here could never end (see `Cell::check_not_own`).
    fn check_not_own(&self) -> Result<(), JobError>;
    /// Waits until the result is in or `deadline` passes; true if it is in.
    fn wait_ready(&self, deadline: Option<Instant>) -> bool;
    /// Whether the result is in.
    fn is_ready(&self) -> bool;
    /// Moves the result out.
    fn take(&self) -> Result<T, JobError>;
    /// The result, leaving it for the next read (see `Cell::read`).
    fn read(&self) -> Result<T, JobError>;
    /// A kept job's error, if it failed.
    fn kept_error(&self) -> Option<JobError>;
    /// Takes the result if it is in, else leaves `waker`.
    fn poll_take(&self, waker: &Waker) -> Poll<Result<T, JobError>>;
    /// Wakes `waker` once the result is in.
    fn notify(&self, waker: Waker);
    /// The server's completion accounting.
    fn tracker(&self) -> &Arc<Tracker>;
    /// Its result kept where it was made, if it was submitted so.
    fn kept(&self) -> Option<&KeptResult<T>>;
    /// Cancels it if it is queued or on a node; true if this call did.
    fn cancel(self: Arc<Self>, err: JobError) -> bool;
}

impl<T: Send + 'static, H: Holder<T>> JobRef<T> for H {
    fn id(&self) -> u64 {
        Holder::id(self)
    }
    fn check_not_own(&self) -> Result<(), JobError> {
        self.cell().check_not_own()
    }
    fn wait_ready(&self, deadline: Option<Instant>) -> bool {
        self.cell().wait_ready(deadline)
    }
    fn is_ready(&self) -> bool {
        self.cell().is_ready()
    }
    fn take(&self) -> Result<T, JobError> {
        self.cell().take()
    }
    fn read(&self) -> Result<T, JobError> {
        self.cell().read(self.cloner())
    }
    fn kept_error(&self) -> Option<JobError> {
        self.cell().kept_error()
    }
    fn poll_take(&self, waker: &Waker) -> Poll<Result<T, JobError>> {
        self.cell().poll_take(waker)
    }
    fn notify(&self, waker: Waker) {
        self.cell().notify(waker)
    }
    fn tracker(&self) -> &Arc<Tracker> {
        &self.cell().tracker
    }
    fn kept(&self) -> Option<&KeptResult<T>> {
        self.cell().spec()?.kept.as_ref()
    }
    fn cancel(self: Arc<Self>, err: JobError) -> bool {
        cancel(&self, err)
    }
}

/// Resolves a job whose result is kept (on a node, or in the client's
/// value directory) unless it already ended; true if this call did. A kept
/// job has no callback (`submit` refuses one).
pub(crate) fn resolve_kept<T, H>(holder: &Arc<H>) -> bool
where
    T: Send + 'static,
    H: Holder<T>,
{
    let cell = holder.cell();
    if !cell.claim(|s| s < CLAIMED) {
        return false;
    }
    cell.publish(None);
    true
}

/// Resolves the job with `result` unless it already ended; true if this
/// call resolved it.
pub(crate) fn resolve<T, H>(holder: &Arc<H>, result: Result<T, JobError>) -> bool
where
    T: Send + 'static,
    H: Holder<T>,
{
    resolve_from(holder, |s| s < CLAIMED, result)
}

/// Resolves a job that is queued or on a node (not one running on a local
/// thread, which cannot be stopped); true if this call resolved it.
pub(crate) fn cancel<T, H>(holder: &Arc<H>, err: JobError) -> bool
where
    T: Send + 'static,
    H: Holder<T>,
{
    resolve_from(holder, |s| s == QUEUED || s == REMOTE, Err(err))
}

/// Resolves a running job with `TimedOut`, unless it ended first.
pub(crate) fn expire<T, H>(holder: &Arc<H>)
where
    T: Send + 'static,
    H: Holder<T>,
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
    H: Holder<T>,
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
    H: Holder<T>,
{
    let cell = holder.cell();
    let callback = cell.lock().more.as_mut().and_then(|m| m.callback.take());
    match callback {
        None => cell.publish(Some(result)),
        Some(callback) => {
            let keep = Arc::clone(holder);
            let identity = cell.identity();
            cell.tracker.run_callback(Box::new(move || {
                // The handle resolves even if the callback panics.
                let seen = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    as_callback(identity, || callback(&result));
                }));
                keep.cell().publish(Some(result));
                if let Err(payload) = seen {
                    std::panic::resume_unwind(payload);
                }
            }));
        }
    }
}
