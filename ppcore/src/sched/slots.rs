//! A machine's offer and what its running jobs hold, for the threads
//! that run them (the client's local pool, a node's workers): a job with
//! a request waits on its worker thread until its request fits, holds it
//! while it runs (its [`JobContext`] says what it holds), and gives it
//! back.
//!
//! Until the first job with a request is submitted, jobs run with no
//! ledger at all (a count of those running is all they pay, so that the
//! ledger knows the cpus they take once it is in use). From then on
//! every local job holds its request (one cpu for a job that asked for
//! nothing) in the ledger, in turns ([`Turns`]): after [`RESERVE_AFTER`]
//! the oldest waiter has the pool to itself until it starts.

use crate::job::context::{with_job_context, JobContext};
use crate::sched::resources::{Held, Ledger, Offer, Request, Turns};
use crate::sync::lock;
use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How long the oldest waiting job waits before the pool is reserved for
/// it (no job that comes after it starts until it does).
pub const RESERVE_AFTER: Duration = Duration::from_millis(200);

/// How often a waiting worker looks whether the server stops.
const WAIT_SLICE: Duration = Duration::from_millis(100);

/// How many contexts a worker thread keeps for reuse.
const CONTEXTS_KEPT: usize = 4;

thread_local! {
    /// The contexts this thread's last jobs ran with: by the machine's
    /// [`Slots`] id and what the job held.
    static CONTEXTS: RefCell<Vec<(u64, Held, Arc<JobContext>)>> =
        const { RefCell::new(Vec::new()) };
}

/// Tells one machine's [`Slots`] from another's (for the contexts kept).
fn next_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Why a job did not run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotRun {
    /// Its request can never fit the offer: the part that does not.
    Never(String),
    /// The machine stopped while it waited.
    Stopped,
}

/// One machine's ledger, shared by the threads that run its jobs.
pub struct Slots {
    /// Its identity among the machines of this process.
    id: u64,
    /// Whether jobs go through the ledger (set at the first request).
    engaged: AtomicBool,
    /// Jobs running outside the ledger (begun before it was engaged).
    plain: AtomicU32,
    state: Mutex<SlotState>,
    /// The offer's cpus, and the rest of it (which never changes, its cpus
    /// unbounded): for [`covers`](Slots::covers) without the lock.
    cpus: AtomicU32,
    fixed: Offer,
    changed: Condvar,
    /// Workers asleep on `changed`.
    sleepers: AtomicUsize,
}

struct SlotState {
    ledger: Ledger,
    turns: Turns,
}

/// Gives a job's holding back when its run ends (also by a panic).
struct Hold<'a> {
    slots: &'a Slots,
    held: Option<Held>,
}

impl Drop for Hold<'_> {
    fn drop(&mut self) {
        if let Some(held) = self.held.take() {
            lock(&self.slots.state).ledger.release(held);
            self.slots.changed();
        }
    }
}

impl Slots {
    /// A machine offering `offer` (its cpus are its worker threads).
    pub fn new(offer: Offer) -> Self {
        let mut fixed = offer.clone();
        fixed.set_cpus(u32::MAX);
        Slots {
            id: next_id(),
            cpus: AtomicU32::new(offer.cpus()),
            fixed,
            engaged: AtomicBool::new(false),
            plain: AtomicU32::new(0),
            state: Mutex::new(SlotState {
                ledger: Ledger::new(offer),
                turns: Turns::new(RESERVE_AFTER),
            }),
            changed: Condvar::new(),
            sleepers: AtomicUsize::new(0),
        }
    }

    /// What the pool offers now.
    pub fn offer(&self) -> Offer {
        lock(&self.state).ledger.offer().clone()
    }

    /// What its jobs hold now: cpus, memory, thousandths per named resource.
    pub fn in_use(&self) -> (u32, u64, Vec<(String, u64)>) {
        let (cpus, memory, named) = lock(&self.state).ledger.in_use();
        (cpus + self.plain.load(Ordering::SeqCst), memory, named)
    }

    /// The pool was resized to `n` workers.
    pub fn set_cpus(&self, n: usize) {
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        self.cpus.store(n, Ordering::Relaxed);
        lock(&self.state).ledger.set_cpus(n);
        self.changed();
    }

    /// A job with a request was submitted: from now on every job counts.
    pub fn engage(&self) {
        if !self.engaged.load(Ordering::Relaxed) {
            self.engaged.store(true, Ordering::SeqCst);
        }
    }

    /// Whether the pool, empty, could run `request`; if not, why.
    pub fn covers(&self, request: &Request) -> Result<(), String> {
        // No lock: asked by the queue for every job a local worker looks at.
        let cpus = self.cpus.load(Ordering::Relaxed);
        if request.cpus() > cpus {
            return Err(format!("cpus={} (offers {cpus})", request.cpus()));
        }
        self.fixed.covers(request)
    }

    fn changed(&self) {
        if self.sleepers.load(Ordering::SeqCst) > 0 {
            // Taken and dropped so that a worker about to sleep either saw
            // the change or is asleep when it is signalled.
            drop(lock(&self.state));
            self.changed.notify_all();
        }
    }

    /// Runs `run` once `request` (`None`: one cpu) fits the machine,
    /// holding it meanwhile, with its [`JobContext`] set when it asked for
    /// anything; or says why not: it can never fit, or the machine stopped
    /// while it waited (`stopping`).
    pub fn run<R>(
        &self,
        request: Option<&Request>,
        stopping: impl Fn() -> bool,
        run: impl FnOnce() -> R,
    ) -> Result<R, NotRun> {
        if request.is_none() && !self.engaged.load(Ordering::SeqCst) {
            // The common case: nothing asked, no ledger in use. Counted, so
            // that a ledger engaged meanwhile knows the cpu it takes.
            self.plain.fetch_add(1, Ordering::SeqCst);
            if !self.engaged.load(Ordering::SeqCst) {
                let out = run();
                self.plain.fetch_sub(1, Ordering::SeqCst);
                if self.engaged.load(Ordering::SeqCst) {
                    self.changed();
                }
                return Ok(out);
            }
            self.plain.fetch_sub(1, Ordering::SeqCst);
        }
        let plain = Request::new();
        let asked = request.unwrap_or(&plain);
        let held = self.wait_for(asked, &stopping)?;
        let context = request.map(|asked| self.context(asked, &held));
        let _hold = Hold {
            slots: self,
            held: Some(held),
        };
        Ok(match context {
            Some(context) => with_job_context(context, run),
            None => run(),
        })
    }

    /// The context of a job that asked for `asked` and holds `held`: this
    /// thread's earlier one for the same holding if it has one (a worker
    /// running one kind of request again and again builds it once), else
    /// made now.
    fn context(&self, asked: &Request, held: &Held) -> Arc<JobContext> {
        let cached = CONTEXTS.with(|c| {
            let c = c.borrow();
            c.iter()
                .find(|(id, h, _)| *id == self.id && h == held)
                .map(|(_, _, ctx)| Arc::clone(ctx))
        });
        if let Some(ctx) = cached {
            return ctx;
        }
        let instances = match held.has_instances() {
            true => lock(&self.state).ledger.instances(held),
            false => Vec::new(),
        };
        let ctx = Arc::new(JobContext {
            cpus: asked.cpus(),
            memory: asked.memory(),
            instances,
        });
        CONTEXTS.with(|c| {
            let mut c = c.borrow_mut();
            if c.len() == CONTEXTS_KEPT {
                c.remove(0);
            }
            c.push((self.id, held.clone(), Arc::clone(&ctx)));
        });
        ctx
    }

    /// Waits (on this worker) until `asked` fits and it is this job's turn.
    fn wait_for(&self, asked: &Request, stopping: &impl Fn() -> bool) -> Result<Held, NotRun> {
        let mut state = lock(&self.state);
        if let Err(short) = state.ledger.offer().covers(asked) {
            return Err(NotRun::Never(short));
        }
        if state.turns.is_empty() {
            // Nobody waits: it takes what it asks for now if it fits,
            // with no clock read and no turn.
            let spare = self.plain.load(Ordering::SeqCst);
            if let Some(held) = state.ledger.hold_beside(asked, spare) {
                return Ok(held);
            }
        }
        let mut now = Instant::now();
        let ticket = state.turns.join(now);
        let got = loop {
            if state.turns.may_take(ticket, now) {
                let spare = self.plain.load(Ordering::SeqCst);
                if let Some(held) = state.ledger.hold_beside(asked, spare) {
                    break Ok(held);
                }
            }
            if stopping() {
                break Err(NotRun::Stopped);
            }
            self.sleepers.fetch_add(1, Ordering::SeqCst);
            state = self
                .changed
                .wait_timeout(state, WAIT_SLICE)
                .unwrap_or_else(|e| e.into_inner())
                .0;
            self.sleepers.fetch_sub(1, Ordering::SeqCst);
            now = Instant::now();
        };
        let waited = state.turns.len() > 1;
        state.turns.leave(ticket);
        drop(state);
        if waited {
            // The next in line may go now.
            self.changed();
        }
        got
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::context::job_context;

    fn gpus(n: &str) -> Slots {
        let mut offer = Offer::new(4);
        offer.add_list(&format!("gpu={n}")).unwrap();
        Slots::new(offer)
    }

    fn one_gpu() -> Request {
        let mut r = Request::new();
        r.set_named("gpu", 1000).unwrap();
        r
    }

    /// The gpus a job asking for `ask` on `slots` sees it holds.
    fn gpus_seen(slots: &Slots, ask: &Request) -> Vec<u32> {
        slots
            .run(
                Some(ask),
                || false,
                || job_context().instances("gpu").to_vec(),
            )
            .unwrap()
    }

    #[test]
    fn each_job_sees_the_instance_it_holds_even_when_contexts_are_reused() {
        let slots = gpus("2");
        let ask = one_gpu();
        // Two jobs at once hold different gpus; each sees its own.
        let (outer, inner) = slots
            .run(
                Some(&ask),
                || false,
                || {
                    let outer = job_context().instances("gpu").to_vec();
                    let inner = gpus_seen(&slots, &ask);
                    (outer, inner)
                },
            )
            .unwrap();
        assert_eq!(outer.len(), 1);
        assert_eq!(inner.len(), 1);
        assert_ne!(outer, inner);
        // Run again one at a time (the kept context): still the instance held.
        for _ in 0..3 {
            let seen = gpus_seen(&slots, &ask);
            assert_eq!(seen, outer);
        }
        // Another machine with the same holding names its own offer.
        let other = gpus("1");
        let seen = gpus_seen(&other, &ask);
        assert_eq!(seen, vec![0]);
        // Nothing asked: no context.
        let plain = slots.run(None, || false, job_context).unwrap();
        assert!(plain.instances.is_empty());
    }

    #[test]
    fn a_request_that_never_fits_says_why() {
        let slots = gpus("1");
        let mut two = Request::new();
        two.set_named("gpu", 2000).unwrap();
        assert!(matches!(
            slots.run(Some(&two), || false, || ()),
            Err(NotRun::Never(_))
        ));
    }
}
