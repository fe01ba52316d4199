//! A job, type-erased so that one queue holds jobs of every type, and what it
//! takes to run one locally or hand it to a node.
//!
//! A job is one allocation: its arguments, its bookkeeping and its result
//! cell live together, shared by the queue (or a node's ledger) and the
//! caller's handle. Whoever holds it in the queue or ledger owns the run.

use crate::jobs::attempt::{is_job_failure, Reclaim};
use crate::jobs::cell::{expire, resolve, resolve_kept, Cell, Slot};
use crate::jobs::recorder::LOCAL;
use crate::jobs::timer::Expire;
use crate::jobs::tracker::Tracker;
use ppcore::resources::Request;
use ppcore::shared::{KeptSource, SharedId, SharedValue};
use ppcore::wire::KeepOp;
use ppcore::{ErrorKind, Job, JobError};
use serde_bytes::ByteBuf;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use crate::jobs::ctx::RunCtx;

/// A kind of job, as the queue keeps them apart: its name and signature.
pub(crate) type JobKind = (&'static str, &'static str);

/// A job to start on a node.
#[derive(Default)]
pub(crate) struct Dispatch {
    pub(crate) attempt: u32,
    pub(crate) args: ByteBuf,
    /// The shared values the arguments name: the node must hold them first.
    pub(crate) shared: Vec<Arc<SharedValue>>,
    /// The kept results the arguments name: on the node, or sent with it.
    pub(crate) kept: Vec<Arc<dyn KeptSource>>,
    /// Keep the result there, fetch a kept value, or reclaim an earlier
    /// client's result (`RunJob.keep`).
    pub(crate) keep: Option<KeepOp>,
    /// Its identity in the journaled run (`RunJob.journal`).
    pub(crate) journal: Option<ppcore::wire::JobKey>,
}

/// Where the news of jobs whose results are kept goes: the client's value
/// directory (`cluster::kept`, above this layer).
pub(crate) trait KeptSink: Send + Sync {
    /// Kept value `id` is in the client now (made by the local pool, or
    /// come back in full).
    fn here(&self, id: SharedId, value: Arc<SharedValue>);
    /// Kept value `id` is kept on node `node` (`len` bytes).
    fn on_node(&self, id: SharedId, node: &str, len: u64);
    /// Kept value `id` cannot be made: its job failed (or was cancelled).
    fn failed(&self, id: SharedId, err: &JobError);
    /// How to make kept value `id` again, should its node be lost.
    fn recipe(&self, id: SharedId, remake: Remake);
}

/// Makes a lost kept value's job again: a new task (its `n`th remake).
pub(crate) type Remake = Arc<dyn Fn(u32) -> Arc<dyn Task> + Send + Sync>;

/// A job's result kept where it is made, and who hears of it.
pub(crate) struct KeepTo {
    pub(crate) id: SharedId,
    pub(crate) sink: Arc<dyn KeptSink>,
}

/// Ids of the client's own tasks (fetches, remakes), apart from the
/// server's job ids (which count up from 0).
pub(crate) fn inner_id() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1 << 62);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// A job in the queue or on a node.
pub(crate) trait Task: Expire + Send + Sync {
    /// The job's id.
    fn id(&self) -> u64;
    /// The job's name and signature.
    fn job(&self) -> (&'static str, &'static str);
    /// Its timeout, counted from when it starts.
    fn timeout(&self) -> Option<Duration>;
    /// Runs the job on this thread and resolves its handle.
    fn run_local(self: Arc<Self>, ctx: &RunCtx);
    /// Marks the job running on a node and encodes its arguments. `Err(None)`
    /// if it ended meanwhile (cancelled); `Err(Some(e))` if it cannot be sent:
    /// the caller then abandons it with `e`. `now` is when the batch it
    /// belongs to was taken (one clock read per batch, not per job).
    fn dispatch(&self, ctx: &RunCtx, now: Instant) -> Result<Dispatch, Option<JobError>>;
    /// Takes a node's answer: resolves the handle, or, if the job failed in a
    /// way it may be retried for, returns it to be queued again. `kept`:
    /// the node kept the result (its length), as the job asked.
    fn complete(
        self: Arc<Self>,
        result: Result<ByteBuf, JobError>,
        node: &str,
        kept: Option<u64>,
    ) -> Option<Arc<dyn Task>>;
    /// Puts a dispatched job back in line; `lost` counts against its retries.
    /// `None` if it ended meanwhile or its retries ran out (then resolved).
    fn retry(self: Arc<Self>, node: &str, lost: bool) -> Option<Arc<dyn Task>>;
    /// Resolves the handle with `err` without running the job.
    fn abandon(self: Arc<Self>, err: JobError);
    /// Whether the job ended while on a node (timed out, cancelled).
    fn ended(&self) -> bool;
    /// Its group's identity, if it has one.
    fn group(&self) -> Option<usize>;
    /// Cancels it if it is queued or on a node (`Server::cancel_all`,
    /// `cancel_group`); true if this call did.
    fn cancel(self: Arc<Self>) -> bool;
    /// The kept value its result becomes, if it is kept.
    fn keeps(&self) -> Option<SharedId> {
        None
    }
    /// The kept values its arguments name (it runs once they are ready).
    fn inputs(&self) -> Vec<SharedId> {
        Vec::new()
    }
    /// Whether it is the fetch of a kept value, not a job.
    fn is_fetch(&self) -> bool {
        false
    }
    /// Whether it makes a lost kept value again.
    fn is_remake(&self) -> bool {
        false
    }
    /// What it asks for beyond one cpu (`Options::cpus`, `resource`, ...).
    fn request(&self) -> Option<&Arc<Request>> {
        None
    }
    /// How long ago it was submitted (zero if it was not: the client's own).
    fn age(&self, _now: Instant) -> Duration {
        Duration::ZERO
    }
}

/// Whether `task` is one that `Server::cancel_group(g)` (`Some(g)`) or
/// `cancel_all` (`None`) is after.
pub(crate) fn in_group(task: &Arc<dyn Task>, group: Option<usize>) -> bool {
    group.is_none_or(|g| task.group() == Some(g))
}

/// Job `J`: its result cell and what it takes to run it. Everything that
/// changes as it runs is behind the cell's one lock ([`Run`]); what few
/// jobs are given is boxed (the cell's `Spec`, and `Extra` in the slot), so
/// that a million queued jobs stay small.
pub(crate) struct TypedTask<J: Job> {
    id: u64,
    /// When it was submitted (`since_epoch`), for the queue-wait statistic.
    submitted: u64,
    /// What it asks for beyond one cpu: in the job, not boxed, since a
    /// worker reads it for every job that has one.
    request: Option<Arc<Request>>,
    pub(super) cell: Cell<J::Output, J::Args, Extra>,
}

/// The part of job `J` that changes as it runs.
pub(crate) type Run<J> = Slot<<J as Job>::Output, <J as Job>::Args, Extra>;

/// Nanoseconds from the first time this process asked to `at`: an instant
/// in 8 bytes instead of 16.
fn since_epoch(at: Instant) -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    u64::try_from(at.saturating_duration_since(epoch).as_nanos()).unwrap_or(u64::MAX)
}

/// The rarely used part of a job.
#[derive(Default)]
pub(crate) struct Extra {
    pub(crate) timeout: Option<Duration>,
    /// Nodes lost while they ran this job.
    pub(crate) lost_on: Vec<String>,
    /// Worker processes it crashed.
    pub(crate) crashes: u16,
    /// Runs left after the job returns an error or panics.
    pub(crate) failure_retries: u16,
    /// Its result is kept where it is made (`Options::keep`).
    pub(crate) keep: Option<KeepTo>,
    /// The kept values its arguments name.
    pub(crate) inputs: Vec<SharedId>,
    /// Where its result is recorded (`Builder::journal`).
    pub(crate) journal: Option<crate::journal::Entry>,
    /// Bytes of the byte budget its arguments hold, when over `u32::MAX`
    /// (the slot says `u32::MAX` then).
    pub(crate) budget: u64,
    /// A node holds this job's outcome for the run (an earlier client of it
    /// sent it there): asked for it instead of running.
    pub(crate) reclaim: Reclaim,
}

/// Whether the job's next attempt is its first start (to count).
fn first_start<T, A>(run: &mut Slot<T, A, Extra>) -> bool {
    let first = run.attempt == 0;
    (run.extra_mut()).map_or(first, |e| e.reclaim.first_start(first))
}

impl<J: Job> TypedTask<J> {
    pub(crate) fn new(
        id: u64,
        request: Option<Arc<Request>>,
        cell: Cell<J::Output, J::Args, Extra>,
    ) -> Self {
        TypedTask {
            id,
            cell,
            request,
            submitted: since_epoch(Instant::now()),
        }
    }

    /// Holds `permit` until the job is taken (its bytes are given back by
    /// `release`, or when the job is dropped).
    pub(crate) fn hold(&self, permit: ppcore::budget::Permit) {
        let bytes = permit.into_bytes();
        let mut run = self.lock();
        match u32::try_from(bytes) {
            Ok(b) if b < u32::MAX => run.budget = b,
            _ => {
                run.budget = u32::MAX;
                run.extra_or_default().budget = bytes;
            }
        }
    }

    /// Gives the arguments' share of the budget back (the job was taken, or
    /// ended), with no lock of the job held; the bytes it gave back.
    fn release(&self) -> u64 {
        let bytes = take_budget(&mut self.lock());
        if bytes > 0 {
            self.cell.tracker().budget.give_back(bytes);
        }
        bytes
    }

    /// Takes where its result is to be recorded (once).
    pub(super) fn take_journal(&self) -> Option<crate::journal::Entry> {
        self.lock().extra_mut()?.journal.take()
    }

    fn lock(&self) -> MutexGuard<'_, Run<J>> {
        self.cell.lock()
    }

    /// Puts a job that was on a node back in line, unless it ended meanwhile.
    fn back_in_line(self: Arc<Self>) -> Option<Arc<dyn Task>> {
        if !self.cell.requeue() {
            return None; // it ended meanwhile (timed out, cancelled)
        }
        Some(self)
    }

    /// The job crashed a node's worker process: back in line unless it has
    /// done so too often (a poison job), then resolved with `err`.
    fn crashed(self: Arc<Self>, err: JobError) -> Option<Arc<dyn Task>> {
        let (crashes, max_crashes) = {
            let mut run = self.lock();
            let max_crashes = run.max_crashes;
            let extra = run.extra_or_default();
            extra.crashes += 1;
            (extra.crashes, max_crashes)
        };
        if crashes >= max_crashes.max(1) {
            let message = format!("{} (crashed {crashes} time(s); not retried)", err.message);
            resolve(&self, Err(err.with_message(message)));
            return None;
        }
        self.cell.tracker().retried.fetch_add(1, Ordering::Relaxed);
        self.back_in_line()
    }
}

/// The budget bytes `run` holds, taken (0 if none).
fn take_budget<T, A>(run: &mut Slot<T, A, Extra>) -> u64 {
    match std::mem::take(&mut run.budget) {
        u32::MAX => run.extra_mut().map_or(0, |e| std::mem::take(&mut e.budget)),
        b => u64::from(b),
    }
}

impl<J: Job> Drop for TypedTask<J> {
    /// A job dropped while it still holds budget (never taken by a worker
    /// or a link) gives it back.
    fn drop(&mut self) {
        let run = self.cell.slot_mut();
        let bytes = take_budget(run);
        if bytes > 0 {
            self.cell.tracker().budget.give_back(bytes);
        }
    }
}

/// Uses up one of `extra`'s retries after a job failure, if any is left.
fn take_failure_retry(extra: Option<&mut Extra>, tracker: &Tracker) -> bool {
    match extra {
        Some(extra) if extra.failure_retries > 0 => {
            extra.failure_retries -= 1;
            tracker.retried.fetch_add(1, Ordering::Relaxed);
            true
        }
        _ => false,
    }
}

/// Runs job `J` here, and again after a failure while retries are left (the
/// arguments are then kept encoded: they need not be `Clone`). The job's
/// lock is taken only for a moment before each rerun, never while it runs.
fn run_here<J: Job>(
    task: &TypedTask<J>,
    args: J::Args,
    ctx: &RunCtx,
    now: Instant,
) -> Result<J::Output, JobError> {
    // One clock read per run: this run's start is the last one's end.
    let mut started = now;
    let (retries, mut attempt) = {
        let run = task.lock();
        (run.extra().map_or(0, |e| e.failure_retries), run.attempt)
    };
    // The shared values the kept arguments name stay alive with them.
    let (kept, _named): (Option<Vec<u8>>, ppcore::shared::Named) = match retries {
        0 => (None, Default::default()),
        _ => {
            let (kept, named) = ppcore::shared::collect(|| ppcore::encode_args::<J>(&args, 0));
            (Some(kept?), named)
        }
    };
    let mut args = Some(args);
    loop {
        let this = match (args.take(), &kept) {
            (Some(a), _) => a,
            (None, Some(bytes)) => J::read_args(bytes)?,
            (None, None) => {
                // Retries are counted before the run, so this cannot happen;
                // if it ever did, fail the job rather than the worker.
                return Err(JobError::new(
                    ErrorKind::Codec,
                    "no arguments kept for a retry",
                ));
            }
        };
        let dash = ctx.dash.get().inspect(|d| d.local_start());
        let result = ppcore::run_caught::<J>(this).map_err(|e| e.on(LOCAL, attempt));
        let ended = Instant::now();
        let took = ended - started;
        ctx.local.record(took, result.is_err());
        dash.inspect(|d| d.local_end(J::NAME, started, took, result.as_ref().err()));
        started = ended;
        match result {
            Err(e) if is_job_failure(&e) => {
                let mut run = task.lock();
                if !take_failure_retry(run.extra_mut(), task.cell.tracker()) {
                    return Err(e);
                }
                run.attempt += 1;
                attempt = run.attempt;
            }
            result => return result,
        }
    }
}

impl<J: Job> Expire for TypedTask<J> {
    fn expire(self: Arc<Self>) {
        expire(&self);
    }
}

impl<J: Job> Task for TypedTask<J> {
    fn id(&self) -> u64 {
        self.id
    }

    fn job(&self) -> (&'static str, &'static str) {
        (J::NAME, J::SIGNATURE)
    }

    fn timeout(&self) -> Option<Duration> {
        self.lock().extra().and_then(|e| e.timeout)
    }

    fn run_local(self: Arc<Self>, ctx: &RunCtx) {
        self.release();
        if ctx.stopping() {
            return self.abandon(shutdown_error());
        }
        if !self.cell.start() {
            return; // cancelled while queued
        }
        let now = Instant::now();
        let (args, timeout) = {
            let mut run = self.lock();
            if first_start(&mut run) {
                self.cell.tracker().started(self.age(now));
            }
            run.attempt += 1;
            (run.args.take(), run.extra().and_then(|e| e.timeout))
        };
        // The user's job runs with no lock held.
        ctx.arm(Arc::clone(&self) as Arc<dyn Expire>, timeout);
        let result = match args {
            Some(args) => run_here::<J>(&self, args, ctx, now),
            None => Err(JobError::new(
                ErrorKind::Codec,
                "the job's arguments are gone",
            )),
        };
        match (result, self.keep_to()) {
            (Ok(value), Some((id, sink))) => match keep_here::<J>(id, &value) {
                Ok(kept) => {
                    ctx.local.kept();
                    sink.here(id, kept);
                    resolve_kept(&self);
                }
                Err(e) => {
                    resolve(&self, Err(e));
                }
            },
            (result, _) => {
                resolve(&self, result);
            }
        }
    }

    fn dispatch(&self, ctx: &RunCtx, now: Instant) -> Result<Dispatch, Option<JobError>> {
        // The arguments' measured size, while the permit still says it: the
        // encoding buffer is allocated once at its final size.
        let size = usize::try_from(self.release()).unwrap_or(0);
        if !self.cell.start_remote() {
            return Err(None);
        }
        // The arguments are encoded outside the lock: only the owner of the
        // job (the link that popped it) touches them meanwhile.
        let args = self.lock().args.take();
        let (encoded, named) = match &args {
            Some(args) => ppcore::shared::collect(|| ppcore::encode_args::<J>(args, size)),
            None => (
                Err(JobError::new(
                    ErrorKind::Codec,
                    "the job's arguments are gone",
                )),
                Default::default(),
            ),
        };
        let keep = self.keep_to();
        let mut run = self.lock();
        run.args = args;
        let checked = encoded.and_then(|args| match args.len() {
            n if n > ctx.max_payload => Err(JobError::new(
                ErrorKind::Codec,
                format!(
                    "arguments of {n} bytes are over the {}-byte payload limit",
                    ctx.max_payload
                ),
            )),
            _ => Ok(args),
        });
        let args = checked.map_err(Some)?;
        let reclaim = run.extra().and_then(|e| e.reclaim.key);
        if first_start(&mut run) {
            self.cell.tracker().started(self.age(now));
        }
        run.attempt += 1;
        let attempt = run.attempt;
        let journal = run
            .extra()
            .and_then(|e| Some(e.journal.as_ref()?.job_key()));
        drop(run);
        if let Some(key) = reclaim {
            // Not run: the node that holds its outcome answers with it.
            let keep = Some(KeepOp::Reclaim(key));
            return Ok(Dispatch {
                attempt,
                keep,
                journal,
                ..Dispatch::default()
            });
        }
        let args = ByteBuf::from(args);
        let keep = keep.map(|(id, sink)| {
            // Should its node be lost, the value is made again from these.
            let recipe = Recipe {
                job: self.id,
                keep: id,
                args: args.clone(),
                shared: named.values.clone(),
                kept: named.kept.clone(),
                sink: Arc::clone(&sink),
            };
            let recipe = Arc::new(recipe);
            sink.recipe(id, Arc::new(move |n| Redo::<J>::task(&recipe, n)));
            KeepOp::Keep(id)
        });
        Ok(Dispatch {
            attempt,
            args,
            shared: named.values,
            kept: named.kept,
            keep,
            journal,
        })
    }

    fn complete(
        self: Arc<Self>,
        result: Result<ByteBuf, JobError>,
        node: &str,
        kept: Option<u64>,
    ) -> Option<Arc<dyn Task>> {
        // One name per node: the address the user gave, not the node's own.
        let result = result.map_err(|e| {
            let a = e.attempt;
            e.on(node, a)
        });
        if self.cell.journaled() {
            let reclaimed = {
                let mut run = self.lock();
                let extra = run.extra_or_default();
                // The node holds this result until it is recorded.
                if let Some(entry) = &mut extra.journal {
                    entry.ran_on(node);
                }
                extra.reclaim.end()
            };
            let tracker = self.cell.tracker();
            match &result {
                // The node no longer holds it: it runs after all.
                Err(e) if reclaimed && e.kind == ErrorKind::NodeLost => return self.back_in_line(),
                _ if reclaimed => tracker.reclaimed.fetch_add(1, Ordering::Relaxed),
                _ => 0,
            };
        }
        if let (Ok(bytes), Some((id, sink))) = (&result, self.keep_to()) {
            let args = self.lock().args.take();
            drop(args);
            match kept {
                Some(len) => sink.on_node(id, node, len),
                None => {
                    let value = SharedValue::kept_listed(id, bytes.to_vec(), None);
                    sink.here(id, value);
                }
            }
            resolve_kept(&self);
            return None;
        }
        match result {
            Err(e) if e.kind == ErrorKind::Crashed => self.crashed(e),
            Err(e)
                if is_job_failure(&e)
                    && take_failure_retry(self.lock().extra_mut(), self.cell.tracker()) =>
            {
                self.back_in_line()
            }
            result => {
                // The job is answered: the arguments kept for a rerun go
                // before the result is decoded (dropped outside the lock),
                // so a large payload is not held three times at once.
                let (attempt, kept) = {
                    let mut run = self.lock();
                    (run.attempt, run.args.take())
                };
                drop(kept);
                let result = result.and_then(|bytes| {
                    J::read_output_owned(bytes.into_vec()).map_err(|e| e.on(node, attempt))
                });
                resolve(&self, result);
                None
            }
        }
    }

    fn retry(self: Arc<Self>, node: &str, lost: bool) -> Option<Arc<dyn Task>> {
        let given_up = {
            let mut run = self.lock();
            // A reclaim not answered (its node is gone): the job runs instead.
            if run.extra_mut().is_some_and(|e| e.reclaim.end()) {
                drop(run);
                return self.back_in_line();
            }
            let (attempt, max_losses) = (run.attempt, run.max_losses);
            let extra = run.extra_or_default();
            if lost {
                extra.lost_on.push(node.to_owned());
            }
            let lost_on = &extra.lost_on;
            (lost_on.len() >= usize::from(max_losses.max(1))).then(|| {
                JobError::new(
                    ErrorKind::NodeLost,
                    format!(
                        "lost {} node(s) while they ran the job: {}",
                        lost_on.len(),
                        lost_on.join(", ")
                    ),
                )
                .on(node, attempt)
            })
        };
        if let Some(err) = given_up {
            resolve(&self, Err(err));
            return None;
        }
        self.cell.tracker().retried.fetch_add(1, Ordering::Relaxed);
        self.back_in_line()
    }

    fn abandon(self: Arc<Self>, err: JobError) {
        self.release();
        resolve(&self, Err(err));
    }

    fn group(&self) -> Option<usize> {
        self.cell.group_id()
    }

    fn cancel(self: Arc<Self>) -> bool {
        let err = JobError::new(
            ErrorKind::Cancelled,
            "cancelled by Server::cancel_all or cancel_group",
        );
        if !crate::jobs::cell::cancel(&self, err) {
            return false;
        }
        // Out of the queue for good: its budget and arguments go now, not
        // when the last handle is dropped.
        self.release();
        let args = self.lock().args.take();
        drop(args);
        true
    }

    fn ended(&self) -> bool {
        self.cell.ended()
    }

    fn keeps(&self) -> Option<SharedId> {
        self.keep_to().map(|(id, _)| id)
    }

    fn inputs(&self) -> Vec<SharedId> {
        self.lock()
            .extra()
            .map_or_else(Vec::new, |e| e.inputs.clone())
    }

    fn request(&self) -> Option<&Arc<Request>> {
        self.request.as_ref()
    }

    fn age(&self, now: Instant) -> Duration {
        Duration::from_nanos(since_epoch(now).saturating_sub(self.submitted))
    }
}

impl<J: Job> TypedTask<J> {
    /// Its kept value's id and sink, if its result is kept.
    pub(super) fn keep_to(&self) -> Option<(SharedId, Arc<dyn KeptSink>)> {
        let run = self.lock();
        let keep = run.extra()?.keep.as_ref()?;
        Some((keep.id, Arc::clone(&keep.sink)))
    }
}

/// A kept result made here, as a value in this process under its kept id.
fn keep_here<J: Job>(id: SharedId, value: &J::Output) -> Result<Arc<SharedValue>, JobError> {
    let mut bytes = Vec::new();
    J::write_output(value, &mut bytes)?;
    Ok(SharedValue::kept_listed(id, bytes, None))
}

/// What it takes to make a kept value again: the job's encoded arguments
/// and what they name.
struct Recipe {
    job: u64,
    keep: SharedId,
    args: ByteBuf,
    shared: Vec<Arc<SharedValue>>,
    kept: Vec<Arc<dyn KeptSource>>,
    sink: Arc<dyn KeptSink>,
}

/// Job `J` run again to make a kept value lost with its node. Nobody waits
/// on it but the value's dependents: it has no handle; its end goes to the
/// value directory.
struct Redo<J: Job> {
    id: u64,
    recipe: Arc<Recipe>,
    /// Which remake this is (for its attempt number).
    round: u32,
    /// Node losses it met.
    losses: Mutex<u16>,
    /// It ran or was given up: later answers are dropped.
    over: AtomicBool,
    /// Its inputs stay held while it is queued.
    _holds: Vec<ppcore::shared::Hold>,
    job: PhantomData<fn() -> J>,
}

/// Node losses a remake may meet before its value is given up.
const REMAKE_LOSSES: u16 = 3;

impl<J: Job> Redo<J> {
    fn task(recipe: &Arc<Recipe>, round: u32) -> Arc<dyn Task> {
        let holds = recipe
            .kept
            .iter()
            .map(|k| ppcore::shared::hold(k.id()))
            .collect();
        Arc::new(Redo::<J> {
            id: inner_id(),
            recipe: Arc::clone(recipe),
            round,
            losses: Mutex::new(0),
            over: AtomicBool::new(false),
            _holds: holds,
            job: PhantomData,
        })
    }

    /// The value can no longer be made: its dependents fail so.
    fn give_up(&self, err: JobError) {
        if !self.over.swap(true, Ordering::AcqRel) {
            let message = format!(
                "job {} ({}) failed when run again to make its lost result: {}",
                self.recipe.job,
                J::NAME,
                err
            );
            self.recipe
                .sink
                .failed(self.recipe.keep, &err.with_message(message));
        }
    }
}

impl<J: Job> Expire for Redo<J> {
    fn expire(self: Arc<Self>) {}
}

impl<J: Job> Task for Redo<J> {
    fn id(&self) -> u64 {
        self.id
    }

    fn job(&self) -> (&'static str, &'static str) {
        (J::NAME, J::SIGNATURE)
    }

    fn timeout(&self) -> Option<Duration> {
        None
    }

    fn run_local(self: Arc<Self>, ctx: &RunCtx) {
        if self.over.swap(true, Ordering::AcqRel) {
            return;
        }
        let started = Instant::now();
        let result = J::read_args(&self.recipe.args).and_then(ppcore::run_caught::<J>);
        ctx.local.record(started.elapsed(), result.is_err());
        ctx.local.recomputed();
        let made = result.and_then(|value| keep_here::<J>(self.recipe.keep, &value));
        match made {
            Ok(value) => self.recipe.sink.here(self.recipe.keep, value),
            Err(e) => {
                self.over.store(false, Ordering::Release);
                self.give_up(e.on(LOCAL, 1));
            }
        }
    }

    fn dispatch(&self, _ctx: &RunCtx, _now: Instant) -> Result<Dispatch, Option<JobError>> {
        if self.over.load(Ordering::Acquire) {
            return Err(None);
        }
        Ok(Dispatch {
            attempt: 1000 + self.round,
            args: self.recipe.args.clone(),
            shared: self.recipe.shared.clone(),
            kept: self.recipe.kept.clone(),
            keep: Some(KeepOp::Keep(self.recipe.keep)),
            journal: None,
        })
    }

    fn complete(
        self: Arc<Self>,
        result: Result<ByteBuf, JobError>,
        node: &str,
        kept: Option<u64>,
    ) -> Option<Arc<dyn Task>> {
        let id = self.recipe.keep;
        match (result, kept) {
            (Ok(_), Some(len)) if !self.over.swap(true, Ordering::AcqRel) => {
                self.recipe.sink.on_node(id, node, len)
            }
            (Ok(bytes), None) if !self.over.swap(true, Ordering::AcqRel) => {
                let value = SharedValue::kept_listed(id, bytes.into_vec(), None);
                self.recipe.sink.here(id, value)
            }
            (Ok(_), _) => {}
            (Err(e), _) => {
                let attempt = e.attempt;
                self.give_up(e.on(node, attempt))
            }
        }
        None
    }

    fn retry(self: Arc<Self>, node: &str, lost: bool) -> Option<Arc<dyn Task>> {
        let losses = {
            let mut losses = ppcore::sync::lock(&self.losses);
            *losses += u16::from(lost);
            *losses
        };
        if losses >= REMAKE_LOSSES {
            let why = format!("lost {losses} node(s) while they ran it");
            self.give_up(JobError::new(ErrorKind::NodeLost, why).on(node, 0));
            return None;
        }
        Some(self)
    }

    fn abandon(self: Arc<Self>, err: JobError) {
        self.give_up(err);
    }

    fn ended(&self) -> bool {
        self.over.load(Ordering::Acquire)
    }

    fn group(&self) -> Option<usize> {
        None
    }

    fn cancel(self: Arc<Self>) -> bool {
        false
    }

    fn keeps(&self) -> Option<SharedId> {
        Some(self.recipe.keep)
    }

    fn inputs(&self) -> Vec<SharedId> {
        self.recipe.kept.iter().map(|k| k.id()).collect()
    }

    fn is_remake(&self) -> bool {
        true
    }
}

pub(crate) fn shutdown_error() -> JobError {
    JobError::new(
        ErrorKind::Shutdown,
        "the server was dropped before the job ran",
    )
}
