//! The node's rules for kept results (PROTOCOL.md, "Kept results: the
//! node's rules"), as plain state of one connection: the values it keeps
//! (a job's result it was asked to keep, or a value its client sent as
//! kept), which job in flight will keep which id, the jobs that wait
//! (parked) for such an id, and the fetches of kept values.
//!
//! Kept values belong to their connection alone: their ids are the
//! client's names, so a node-wide store would let one client read or
//! replace another's value. Everything here is bounded: kept bytes by the
//! room the driver gives (`--max-memory`) and by the incoming streams'
//! reservations, parked jobs and fetches by the credit window (they keep
//! theirs). Values over the memory room may go to disk instead (`spill`):
//! they count as kept here, and as pending while they are written.

use super::spill::Spills;
use crate::job::error::{ErrorKind, JobError};
use crate::job::idmap::IdMap;
use crate::job::shared::{SharedId, SharedValue};
use crate::wire::messages::{DoneJob, RunJob};
use serde_bytes::ByteBuf;
use std::collections::HashMap;
use std::sync::Arc;

/// A job that waits for values jobs in flight here will keep.
#[derive(Debug)]
struct Parked {
    job: RunJob,
    /// The ids it waits for (pending when it came).
    waits: Vec<SharedId>,
}

/// Whether `job` is still listed under `id` (lists are cleaned lazily: a
/// job that left stays in the lists of its other ids until they change).
fn listed(list: &mut Vec<u64>, job: u64) {
    if !list.contains(&job) {
        list.push(job);
    }
}

/// A fetch of a kept value, or its export for peers: not a job, but it
/// holds a job's credit.
#[derive(Debug, Clone, Copy)]
struct Fetch {
    id: u64,
    attempt: u32,
    value: SharedId,
    /// An export (`KeepOp::Export`), not a fetch.
    export: bool,
}

/// What a settle decided.
#[derive(Debug, Default)]
pub(crate) struct Settled {
    /// Parked jobs whose inputs are all kept now: to queue.
    pub(crate) run: Vec<RunJob>,
    /// Parked jobs an input of which will not be kept here: handed back.
    pub(crate) back: Vec<(u64, u32)>,
    /// Fetches answered (the value, or `NodeLost`), and exports.
    pub(crate) answers: Vec<DoneJob>,
    /// Values exported for peers (their exports are among the answers).
    pub(crate) exported: Vec<SharedId>,
    /// Fetches of values this connection does not hold: the node's
    /// exports may (job id, attempt, value).
    pub(crate) elsewhere: Vec<(u64, u32, SharedId)>,
}

/// The kept values of one connection and what waits for them.
#[derive(Debug, Default)]
pub(crate) struct Kept {
    values: HashMap<SharedId, Arc<SharedValue>>,
    bytes: u64,
    /// Jobs in flight that keep their result, by job id: the id they keep.
    making: IdMap<SharedId>,
    /// The other way: who makes each pending id.
    makers: HashMap<SharedId, u64>,
    /// Parked jobs by job id, and by the ids they wait for.
    parked: HashMap<u64, Parked>,
    waiters: HashMap<SharedId, Vec<u64>>,
    /// Fetches by the value they fetch, and each fetch's value.
    fetches: HashMap<SharedId, Vec<Fetch>>,
    fetch_of: HashMap<u64, SharedId>,
    /// The room the driver last gave for kept results.
    room: u64,
    /// Ids that changed (kept, dropped, or no longer to be kept) since the
    /// last settle: only what waits on them is looked at again.
    touched: Vec<SharedId>,
    /// Kept values written to disk, and those being written (`spill`).
    pub(crate) spill: Spills,
}

/// The error a fetch of a value not here gets.
pub(super) fn not_here(value: SharedId, node: &str, attempt: u32) -> JobError {
    let message = format!("kept value {value} is not on this node");
    JobError::new(ErrorKind::NodeLost, message).on(node, attempt)
}

impl Kept {
    /// The driver's room for kept results (the node's free memory).
    pub(crate) fn set_room(&mut self, room: u64) {
        self.room = room;
    }

    /// Kept values held (in memory or spilled).
    pub(crate) fn len(&self) -> usize {
        self.values.len() + self.spill.len()
    }

    /// Their bytes.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Parked jobs and fetches.
    pub(crate) fn waiting(&self) -> usize {
        self.parked.len() + self.fetch_of.len()
    }

    /// The values `ids` names: this connection's kept values, and the rest
    /// from `lookup` (the node's store), or the ids it lacks.
    pub(crate) fn values_or<V: From<Arc<SharedValue>>>(
        &self,
        ids: &[SharedId],
        lookup: &mut impl FnMut(&[SharedId]) -> Result<Vec<V>, Vec<SharedId>>,
    ) -> Result<Vec<V>, Vec<SharedId>> {
        let others: Vec<SharedId> = (ids.iter())
            .filter(|id| !self.values.contains_key(id))
            .copied()
            .collect();
        let mut found = match others.is_empty() {
            true => Vec::new(),
            false => lookup(&others)?,
        }
        .into_iter();
        let values = ids.iter().map(|id| match self.values.get(id) {
            Some(v) => Some(V::from(Arc::clone(v))),
            None => found.next(),
        });
        values.collect::<Option<Vec<V>>>().ok_or(others)
    }

    /// Whether `id` is kept here, in memory or spilled.
    fn has(&self, id: &SharedId) -> bool {
        self.values.contains_key(id) || self.spill.has(id)
    }

    /// Whether a job in flight here will keep `id` (or its result is being
    /// spilled).
    fn pending(&self, id: &SharedId) -> bool {
        !self.has(id) && self.makers.contains_key(id)
    }

    /// Job `job` (accepted, in flight) keeps its result as `value`.
    pub(crate) fn will_keep(&mut self, job: u64, value: SharedId) {
        if let Some(old) = self.making.insert(job, value) {
            self.forget_maker(job, old);
        }
        self.makers.insert(value, job);
    }

    fn forget_maker(&mut self, job: u64, value: SharedId) {
        if self.makers.get(&value) == Some(&job) {
            self.makers.remove(&value);
            self.touched.push(value);
        }
    }

    /// Job `job` left without keeping (failed, handed back, cancelled,
    /// refused): what waits for its value goes back at the next settle.
    pub(crate) fn ended(&mut self, job: u64) {
        if let Some(value) = self.making.remove(&job) {
            self.forget_maker(job, value);
        }
    }

    /// A finished job: if it keeps its result and the result fits the room,
    /// the value is kept here and the answer says so (empty, `kept: Some`);
    /// if it fits the spill room instead, the answer waits for its write
    /// (`None`); otherwise it goes back as it is.
    pub(crate) fn on_done(&mut self, done: DoneJob) -> Option<DoneJob> {
        let Some(&value) = self.making.get(&done.id) else {
            return Some(done);
        };
        let over = matches!(&done.result, Ok(b) if b.len() as u64 > self.room);
        let done = match over {
            true => self.spill.try_write(value, done)?,
            false => done,
        };
        Some(self.keep_or_return(value, done))
    }

    /// The driver wrote (or failed to write) value `id` to disk: the
    /// answer of the job that made it, kept or in full.
    pub(crate) fn spilled(&mut self, id: SharedId, result: Result<(), Vec<u8>>) -> Option<DoneJob> {
        let done = self.spill.written(id, result)?;
        if let Some(value) = self.making.remove(&done.id) {
            self.forget_maker(done.id, value);
        }
        self.touched.push(id);
        Some(done)
    }

    /// The driver read back spilled value `value` for fetch `fetch`
    /// (`None`: its file is missing or corrupt, so the value is lost).
    pub(crate) fn read_back(
        &mut self,
        value: SharedId,
        (fetch, attempt): (u64, u32),
        bytes: Option<Vec<u8>>,
        node: &str,
    ) -> DoneJob {
        let result = match bytes {
            Some(bytes) => Ok(ByteBuf::from(bytes)),
            None => {
                self.lost(&[value]);
                Err(not_here(value, node, attempt))
            }
        };
        DoneJob {
            id: fetch,
            attempt,
            result,
            exec_ns: 0,
            kept: None,
        }
    }

    /// Spilled values among `ids` whose files could not be read: lost.
    pub(crate) fn lost(&mut self, ids: &[SharedId]) {
        for id in ids {
            if self.spill.forget(id) {
                self.touched.push(*id);
            }
        }
    }

    /// `done` (of the job that keeps `value`) kept in memory, or as it is.
    fn keep_or_return(&mut self, value: SharedId, mut done: DoneJob) -> DoneJob {
        self.making.remove(&done.id);
        self.forget_maker(done.id, value);
        let len = match &done.result {
            Ok(bytes) if bytes.len() as u64 <= self.room => bytes.len() as u64,
            _ => return done,
        };
        let bytes = std::mem::replace(&mut done.result, Ok(ByteBuf::new()));
        let bytes = bytes.unwrap_or_default().into_vec();
        self.room -= len;
        self.insert(value, SharedValue::kept(value, bytes));
        done.kept = Some(len);
        done
    }

    /// Keeps `value` as `id` (a kept result, or a value the client sent as kept).
    pub(crate) fn insert(&mut self, id: SharedId, value: Arc<SharedValue>) {
        self.spill.forget(&id);
        self.bytes += value.len() as u64;
        if let Some(old) = self.values.insert(id, value) {
            self.bytes -= old.len() as u64;
        }
        self.touched.push(id);
    }

    /// The client is done with these values.
    pub(crate) fn remove(&mut self, ids: &[SharedId]) {
        for id in ids {
            if let Some(old) = self.values.remove(id) {
                self.bytes -= old.len() as u64;
                self.touched.push(*id);
            }
            if self.spill.forget(id) {
                self.touched.push(*id);
            }
        }
    }

    /// Parks `job` if it names a value a job in flight here will keep;
    /// gives it back otherwise.
    pub(crate) fn park_if_pending(&mut self, job: RunJob) -> Option<RunJob> {
        let waits: Vec<SharedId> = job
            .shared
            .iter()
            .filter(|id| self.pending(id))
            .copied()
            .collect();
        if waits.is_empty() {
            return Some(job);
        }
        for id in &waits {
            listed(self.waiters.entry(*id).or_default(), job.id);
        }
        self.parked.insert(job.id, Parked { job, waits });
        None
    }

    /// A fetch (or, `export`, an export) of kept value `value`, answered
    /// at the next settle, or when the value is kept.
    pub(crate) fn fetch(&mut self, id: u64, attempt: u32, value: SharedId, export: bool) {
        self.fetches.entry(value).or_default().push(Fetch {
            id,
            attempt,
            value,
            export,
        });
        self.fetch_of.insert(id, value);
        self.touched.push(value);
    }

    /// Takes parked job or fetch `id` out (cancelled); true if it was here.
    pub(crate) fn cancel(&mut self, id: u64) -> bool {
        if self.parked.remove(&id).is_some() {
            return true;
        }
        let Some(value) = self.fetch_of.remove(&id) else {
            return false;
        };
        if let Some(list) = self.fetches.get_mut(&value) {
            list.retain(|f| f.id != id);
            if list.is_empty() {
                self.fetches.remove(&value);
            }
        }
        true
    }

    /// Every parked job and fetch, taken out (the node gives them back).
    pub(crate) fn take_waiting(&mut self) -> Vec<(u64, u32)> {
        self.waiters.clear();
        self.fetch_of.clear();
        let jobs = self.parked.drain().map(|(_, p)| (p.job.id, p.job.attempt));
        let fetches = self
            .fetches
            .drain()
            .flat_map(|(_, f)| f)
            .map(|f| (f.id, f.attempt));
        jobs.chain(fetches).collect()
    }

    /// Lets go what can go since the last settle: parked jobs whose inputs
    /// are all kept run, those an input of which will not be kept go back;
    /// fetches are answered. Only what waits on an id that changed is
    /// looked at. `None` if nothing changed.
    pub(crate) fn settle(&mut self, node: &str) -> Option<Settled> {
        if self.touched.is_empty() {
            return None;
        }
        let mut touched = std::mem::take(&mut self.touched);
        touched.sort_unstable();
        touched.dedup();
        let mut out = Settled::default();
        for id in touched {
            for job in self.waiters.remove(&id).unwrap_or_default() {
                let Some(p) = self.parked.get(&job) else {
                    continue; // it left (cancelled, run) since it was listed
                };
                if p.waits.iter().any(|w| !self.has(w) && !self.pending(w)) {
                    if let Some(p) = self.parked.remove(&job) {
                        out.back.push((p.job.id, p.job.attempt));
                    }
                } else if p.waits.iter().all(|w| self.has(w)) {
                    if let Some(p) = self.parked.remove(&job) {
                        out.run.push(p.job);
                    }
                } else if self.pending(&id) {
                    // Still waiting on this id (and others).
                    listed(self.waiters.entry(id).or_default(), job);
                }
            }
            let Some(fetches) = self.fetches.remove(&id) else {
                continue;
            };
            if self.pending(&id) {
                self.fetches.insert(id, fetches);
                continue;
            }
            for f in fetches {
                self.fetch_of.remove(&f.id);
                let (result, kept) = match (self.values.get(&f.value), f.export) {
                    (Some(v), false) => (Ok(ByteBuf::from(v.bytes().to_vec())), None),
                    (Some(v), true) => {
                        out.exported.push(f.value);
                        (Ok(ByteBuf::new()), Some(v.len() as u64))
                    }
                    // Spilled: read back first. Peers fetch from memory
                    // only: an export of a spilled value is refused (not
                    // `NodeLost`: it is here), and the client brings it
                    // through itself.
                    (None, true) if self.spill.has(&f.value) => {
                        let why = format!("kept value {} is spilled to disk here", f.value);
                        (Err(JobError::new(ErrorKind::Failed, why)), None)
                    }
                    (None, false) if self.spill.has(&f.value) => {
                        self.spill.read_back(f.id, f.attempt, f.value);
                        continue;
                    }
                    // Not this connection's: perhaps another's, exported.
                    (None, false) => {
                        out.elsewhere.push((f.id, f.attempt, f.value));
                        continue;
                    }
                    (None, true) => (Err(not_here(f.value, node, f.attempt)), None),
                };
                out.answers.push(DoneJob {
                    id: f.id,
                    attempt: f.attempt,
                    result,
                    exec_ns: 0,
                    kept,
                });
            }
        }
        Some(out)
    }

    /// Kept value `id` of this connection, if it holds it.
    pub(crate) fn get(&self, id: &SharedId) -> Option<&Arc<SharedValue>> {
        self.values.get(id)
    }

    /// The connection closed: everything goes with it.
    pub(crate) fn clear(&mut self) {
        *self = Kept::default();
    }
}
