//! The client's value directory: where each kept result lies, and which
//! jobs wait for which of them. Pure: no lock, no clock, no I/O; the client
//! feeds it what happened (a producer went to a node, its result was kept
//! there or came to the client, it failed, a node was lost) and carries out
//! what it answers (run this job there, fetch that value, make that one
//! again).
//!
//! The rules:
//! - A job whose kept inputs all lie in the client runs anywhere (the
//!   values go to a node with the job, as shared values do).
//! - A job whose kept inputs lie on one node, or are being made there, runs
//!   on that node (inputs in the client go with it): a chain of dependent
//!   jobs on one node goes out without waiting for each step to end. If
//!   they all lie there at rest, the node is only preferred
//!   ([`Place::Near`]): the client may place the job elsewhere after a
//!   bounded wait for a free slot there ([`Directory::place_on`]), and the
//!   inputs then move.
//! - A job whose inputs lie on several nodes waits while the inputs on all
//!   but the node holding most of their bytes move to that node, then runs
//!   there. An input moves node to node (a transfer) if peers can reach the
//!   node that holds it ([`Directory::set_reachable`]); through the client
//!   otherwise, or if a transfer of it failed.
//! - A job waits while an input is queued, or lost and being made again.
//! - A job whose input failed fails (`Dependency`, naming the input's job);
//!   one whose input was cancelled is cancelled.

use crate::job::error::{ErrorKind, JobError};
use crate::job::shared::SharedId;
use std::collections::{HashMap, HashSet};
use std::hash::Hash;

/// Where a kept value is.
#[derive(Debug, Clone, PartialEq)]
pub enum State<N> {
    /// Its job is queued (or handed back): nowhere yet.
    Pending,
    /// Its job was sent to node `N`, which will keep the result.
    Making(N),
    /// Kept on node `N`.
    On(N),
    /// Here, in the client.
    Client,
    /// Its node was lost; not being made again yet.
    Lost,
    /// Its job failed (or was cancelled) for good: its dependents fail so.
    Failed(JobError),
}

/// Where a job is to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place<N> {
    /// Wherever a worker is free: every input is in the client.
    Anywhere,
    /// On node `N`, where its inputs are being made (or lie, and the
    /// client chose it): it must go there.
    On(N),
    /// On node `N`, where all its inputs lie at rest, if a slot is free
    /// there soon; elsewhere otherwise ([`Directory::place_on`]).
    Near(N),
}

/// What the client is to do after a change.
#[derive(Debug)]
pub struct Moves<T, N> {
    /// Jobs to run, and where.
    pub run: Vec<(T, Place<N>)>,
    /// Jobs that cannot run: resolve them with the error.
    pub fail: Vec<(T, JobError)>,
    /// Values to bring to the client from the node that keeps them.
    pub fetch: Vec<(SharedId, N)>,
    /// Values to move node to node: the value, the node that keeps it,
    /// the node that is to (the client only says who holds what).
    pub transfer: Vec<(SharedId, N, N)>,
    /// Lost values to make again (their jobs' recipes are the client's).
    pub remake: Vec<SharedId>,
}

impl<T, N> Default for Moves<T, N> {
    fn default() -> Self {
        Moves {
            run: Vec::new(),
            fail: Vec::new(),
            fetch: Vec::new(),
            transfer: Vec::new(),
            remake: Vec::new(),
        }
    }
}

impl<T, N> Moves<T, N> {
    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.run.is_empty()
            && self.fail.is_empty()
            && self.fetch.is_empty()
            && self.transfer.is_empty()
            && self.remake.is_empty()
    }

    fn append(&mut self, mut other: Moves<T, N>) {
        self.run.append(&mut other.run);
        self.fail.append(&mut other.fail);
        self.fetch.append(&mut other.fetch);
        self.transfer.append(&mut other.transfer);
        self.remake.append(&mut other.remake);
    }
}

struct Value<N> {
    state: State<N>,
    /// The job that makes it: its id and name, for errors.
    producer: (u64, &'static str),
    /// A fetch to the client is under way.
    fetching: bool,
    /// How many times it was lost and made again.
    remade: u32,
    /// Its bytes where it is kept (0 until known).
    bytes: u64,
    /// A transfer of it failed: it moves through the client from now on.
    relay: bool,
}

struct Waiting<T, N> {
    task: T,
    inputs: Vec<SharedId>,
    /// The node it is to run on, if the client chose one.
    target: Option<N>,
}

/// The directory. `T` is a job as the client holds it, `N` a node's name.
pub struct Directory<T, N> {
    values: HashMap<SharedId, Value<N>>,
    /// Jobs held for their inputs, by job id.
    held: HashMap<u64, Waiting<T, N>>,
    /// Which held jobs wait on which value.
    waiters: HashMap<SharedId, Vec<u64>>,
    /// Nodes whose peers can fetch kept values from them.
    reachable: HashSet<N>,
}

impl<T, N> Default for Directory<T, N> {
    fn default() -> Self {
        Directory {
            values: HashMap::new(),
            held: HashMap::new(),
            waiters: HashMap::new(),
            reachable: HashSet::new(),
        }
    }
}

/// How the inputs of one job stand.
enum Verdict<N> {
    Run(Place<N>),
    Fail(JobError),
    Wait {
        fetch: Vec<(SharedId, N)>,
        transfer: Vec<(SharedId, N, N)>,
        remake: Vec<SharedId>,
    },
}

/// How a job taking `value` ends if the value failed: `Dependency` naming
/// its job, or `Cancelled` if its job was cancelled.
fn failure<N>(value: &Value<N>) -> Option<JobError> {
    let (job, name) = value.producer;
    match &value.state {
        State::Failed(e) if e.kind == ErrorKind::Cancelled => Some(JobError::new(
            ErrorKind::Cancelled,
            format!("input job {job} ({name}) was cancelled"),
        )),
        // Down a chain, the first failure is named, not every link to it.
        State::Failed(e) if e.kind == ErrorKind::Dependency => Some(e.clone()),
        State::Failed(e) => Some(JobError::new(
            ErrorKind::Dependency,
            format!("input job {job} ({name}) failed: {e}"),
        )),
        _ => None,
    }
}

impl<T, N: Clone + Eq + Hash> Directory<T, N> {
    /// How a job taking `inputs` ends if one of them failed (or was
    /// cancelled) since it was sent: the answer it gets instead of its own.
    pub fn input_failure(&self, inputs: &[SharedId]) -> Option<JobError> {
        inputs
            .iter()
            .filter_map(|id| self.values.get(id))
            .find_map(failure)
    }

    /// An empty directory.
    pub fn new() -> Self {
        Self::default()
    }

    /// A new kept value `id`, made by job `producer` (its id and name),
    /// which is queued.
    pub fn add(&mut self, id: SharedId, producer: (u64, &'static str)) {
        self.values.insert(
            id,
            Value {
                state: State::Pending,
                producer,
                fetching: false,
                remade: 0,
                bytes: 0,
                relay: false,
            },
        );
    }

    /// Where value `id` is, if the directory knows it.
    pub fn state(&self, id: &SharedId) -> Option<&State<N>> {
        self.values.get(id).map(|v| &v.state)
    }

    /// The job that makes value `id` (its id and name).
    pub fn producer(&self, id: &SharedId) -> Option<(u64, &'static str)> {
        self.values.get(id).map(|v| v.producer)
    }

    /// Jobs held for their inputs now.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// Kept values known now.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether it knows no value.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Job `job` (`task`), whose arguments name kept values `inputs`: run
    /// it now (where), fail it, or hold it until its inputs are ready.
    pub fn place(&mut self, job: u64, task: T, inputs: Vec<SharedId>) -> Moves<T, N> {
        self.place_to(job, task, inputs, None)
    }

    /// Job `job` runs on node `node` (it waited in vain for a slot where
    /// its inputs lie): its inputs elsewhere move there first.
    pub fn place_on(&mut self, job: u64, task: T, inputs: Vec<SharedId>, node: N) -> Moves<T, N> {
        self.place_to(job, task, inputs, Some(node))
    }

    /// The bytes of kept values `ids` where they lie (0 for those unknown).
    pub fn bytes_of(&self, ids: &[SharedId]) -> u64 {
        ids.iter()
            .filter_map(|id| self.values.get(id))
            .map(|v| v.bytes)
            .sum()
    }

    fn place_to(
        &mut self,
        job: u64,
        task: T,
        inputs: Vec<SharedId>,
        target: Option<N>,
    ) -> Moves<T, N> {
        let mut moves = Moves::default();
        match self.verdict(&inputs, target.as_ref()) {
            Verdict::Run(place) => moves.run.push((task, place)),
            Verdict::Fail(e) => moves.fail.push((task, e)),
            Verdict::Wait {
                fetch,
                transfer,
                remake,
            } => {
                let moving = fetch.iter().map(|(id, _)| id);
                for id in moving.chain(transfer.iter().map(|(id, _, _)| id)) {
                    if let Some(v) = self.values.get_mut(id) {
                        v.fetching = true;
                    }
                }
                for id in &remake {
                    if let Some(v) = self.values.get_mut(id) {
                        v.state = State::Pending;
                        v.remade += 1;
                    }
                }
                moves.fetch = fetch;
                moves.transfer = transfer;
                moves.remake = remake;
                for id in &inputs {
                    let waiters = self.waiters.entry(*id).or_default();
                    if !waiters.contains(&job) {
                        waiters.push(job);
                    }
                }
                self.held.insert(
                    job,
                    Waiting {
                        task,
                        inputs,
                        target,
                    },
                );
            }
        }
        moves
    }

    fn verdict(&self, inputs: &[SharedId], target: Option<&N>) -> Verdict<N> {
        // Each node holding inputs: their bytes, and how many.
        let mut nodes: Vec<(N, (u64, usize))> = Vec::new();
        let mut resting = true;
        let mut remake = Vec::new();
        for id in inputs {
            let Some(value) = self.values.get(id) else {
                return Verdict::Fail(JobError::new(
                    ErrorKind::Dependency,
                    format!("kept value {id} is no longer known to the client"),
                ));
            };
            if let Some(e) = failure(value) {
                return Verdict::Fail(e);
            }
            match &value.state {
                State::Failed(_) => {}
                State::Client => {}
                State::On(n) | State::Making(n) => {
                    if matches!(value.state, State::Making(_)) {
                        resting = false;
                    }
                    match nodes.iter_mut().find(|(m, _)| m == n) {
                        Some((_, (bytes, count))) => {
                            *bytes += value.bytes;
                            *count += 1;
                        }
                        None => nodes.push((n.clone(), (value.bytes, 1))),
                    }
                }
                State::Pending => resting = false,
                State::Lost => {
                    resting = false;
                    remake.push(*id);
                }
            }
        }
        if let Some(t) = target {
            // The client chose the node: what lies elsewhere moves there.
            if remake.is_empty() && resting && nodes.iter().all(|(n, _)| n == t) {
                return Verdict::Run(Place::On(t.clone()));
            }
            if !nodes.iter().any(|(n, _)| n == t) {
                nodes.push((t.clone(), (u64::MAX, usize::MAX)));
            }
            if let Some(entry) = nodes.iter_mut().find(|(n, _)| n == t) {
                entry.1 = (u64::MAX, usize::MAX);
            }
        } else if remake.is_empty() && nodes.len() == 1 {
            let only = nodes.swap_remove(0).0;
            // Inputs still queued elsewhere: wait for them to be placed.
            if inputs.iter().all(|id| {
                self.values
                    .get(id)
                    .is_some_and(|v| !matches!(v.state, State::Pending))
            }) {
                return Verdict::Run(match resting {
                    true => Place::Near(only),
                    false => Place::On(only),
                });
            }
        }
        if remake.is_empty() && nodes.is_empty() && resting {
            return Verdict::Run(Place::Anywhere);
        }
        // On several nodes, all at rest: all but the node holding the most
        // input bytes (then the most inputs; then the last named) move to
        // it, node to node where they can, so the least moves.
        let (mut fetch, mut transfer) = (Vec::new(), Vec::new());
        if remake.is_empty() && resting && nodes.len() > 1 {
            let (best, _) = nodes
                .iter()
                .enumerate()
                .max_by_key(|(_, (_, weight))| *weight)
                .map(|(i, n)| (i, n.clone()))
                .unwrap_or((0, nodes[0].clone()));
            let keep = &nodes[best].0;
            for id in inputs {
                if let Some(v) = self.values.get(id) {
                    if let State::On(n) = &v.state {
                        if n != keep && !v.fetching {
                            match !v.relay && self.reachable.contains(n) {
                                true => transfer.push((*id, n.clone(), keep.clone())),
                                false => fetch.push((*id, n.clone())),
                            }
                        }
                    }
                }
            }
        }
        Verdict::Wait {
            fetch,
            transfer,
            remake,
        }
    }

    /// Looks again at the jobs waiting on `id`, after it changed.
    fn revisit(&mut self, id: &SharedId) -> Moves<T, N> {
        let mut moves = Moves::default();
        let Some(jobs) = self.waiters.remove(id) else {
            return moves;
        };
        for job in jobs {
            let Some(waiting) = self.held.remove(&job) else {
                continue;
            };
            for other in &waiting.inputs {
                if let Some(list) = self.waiters.get_mut(other) {
                    list.retain(|j| *j != job);
                    if list.is_empty() {
                        self.waiters.remove(other);
                    }
                }
            }
            let Waiting {
                task,
                inputs,
                target,
            } = waiting;
            moves.append(self.place_to(job, task, inputs, target));
        }
        moves
    }

    fn set(&mut self, id: &SharedId, state: State<N>) -> Moves<T, N> {
        match self.values.get_mut(id) {
            Some(v) => {
                v.state = state;
                v.fetching = false;
            }
            None => return Moves::default(),
        }
        self.revisit(id)
    }

    /// The job making `id` was sent to node `node`.
    pub fn making(&mut self, id: &SharedId, node: N) -> Moves<T, N> {
        self.set(id, State::Making(node))
    }

    /// Node `node` keeps `id`.
    pub fn kept_on(&mut self, id: &SharedId, node: N, bytes: u64) -> Moves<T, N> {
        if let Some(v) = self.values.get_mut(id) {
            v.bytes = bytes;
        }
        self.set(id, State::On(node))
    }

    /// Whether peers can fetch kept values from node `node` (it said where
    /// they reach it): values there move node to node, not through the client.
    pub fn set_reachable(&mut self, node: N, reachable: bool) {
        match reachable {
            true => self.reachable.insert(node),
            false => self.reachable.remove(&node),
        };
    }

    /// A transfer of `id` did not bring it to its node (the peer was not
    /// reachable from there, say): it moves through the client from now on.
    pub fn transfer_failed(&mut self, id: &SharedId) -> Moves<T, N> {
        match self.values.get_mut(id) {
            Some(v) => {
                v.relay = true;
                v.fetching = false;
            }
            None => return Moves::default(),
        }
        self.revisit(id)
    }

    /// Value `id` is in the client (made here, come back in full, or fetched).
    pub fn in_client(&mut self, id: &SharedId) -> Moves<T, N> {
        self.set(id, State::Client)
    }

    /// The job making `id` is queued again (handed back, retried).
    pub fn requeued(&mut self, id: &SharedId) -> Moves<T, N> {
        self.set(id, State::Pending)
    }

    /// The job making `id` failed for good (or was cancelled): `err`.
    pub fn failed(&mut self, id: &SharedId, err: JobError) -> Moves<T, N> {
        self.set(id, State::Failed(err))
    }

    /// A fetch of `id` from `node` did not bring it (the node lost it):
    /// lost, unless it is known elsewhere by now (being made again).
    pub fn fetch_failed(&mut self, id: &SharedId, node: &N) -> Moves<T, N> {
        match self.values.get_mut(id) {
            Some(v) if v.state == State::On(node.clone()) => self.set(id, State::Lost),
            Some(v) => {
                v.fetching = false;
                Moves::default()
            }
            None => Moves::default(),
        }
    }

    /// The client dropped its copy of `id` (nobody held it): lost, if it
    /// was only there.
    pub fn dropped_here(&mut self, id: &SharedId) -> Moves<T, N> {
        match self.values.get(id).map(|v| &v.state) {
            Some(State::Client) => self.set(id, State::Lost),
            _ => Moves::default(),
        }
    }

    /// Node `node` is lost: the values it kept are lost (those being made
    /// there are queued again by their jobs' retries). Returns the lost
    /// ids; jobs waiting on them are looked at again.
    pub fn node_lost(&mut self, node: &N) -> (Vec<SharedId>, Moves<T, N>) {
        let mut lost = Vec::new();
        let mut moves = Moves::default();
        // Jobs the client chose that node for are placed afresh.
        for waiting in self.held.values_mut() {
            if waiting.target.as_ref() == Some(node) {
                waiting.target = None;
            }
        }
        let ids: Vec<SharedId> = self
            .values
            .iter()
            .filter(|(_, v)| matches!(&v.state, State::On(n) | State::Making(n) if n == node))
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            let making = matches!(
                self.values.get(&id).map(|v| &v.state),
                Some(State::Making(_))
            );
            match making {
                true => moves.append(self.set(&id, State::Pending)),
                false => {
                    lost.push(id);
                    moves.append(self.set(&id, State::Lost));
                }
            }
        }
        (lost, moves)
    }

    /// Value `id` is lost and is to be made again now (nothing waits on it
    /// yet): it counts as queued from here, once per loss.
    pub fn remaking(&mut self, id: &SharedId) -> bool {
        match self.values.get_mut(id) {
            Some(v) if v.state == State::Lost => {
                v.state = State::Pending;
                v.remade += 1;
                true
            }
            _ => false,
        }
    }

    /// If value `id` is kept on a node and no fetch of it is under way, that
    /// node (a fetch is under way from now).
    pub fn start_fetch(&mut self, id: &SharedId) -> Option<N> {
        let v = self.values.get_mut(id)?;
        match &v.state {
            State::On(n) if !v.fetching => {
                v.fetching = true;
                Some(n.clone())
            }
            _ => None,
        }
    }

    /// How many times value `id` was made again after a loss.
    pub fn remade(&self, id: &SharedId) -> u32 {
        self.values.get(id).map_or(0, |v| v.remade)
    }

    /// Nobody refers to `id` any more: the directory forgets it (jobs still
    /// waiting on it are looked at again, and fail).
    pub fn forget(&mut self, id: &SharedId) -> Moves<T, N> {
        self.values.remove(id);
        self.revisit(id)
    }

    /// Takes every held job out (the client is stopping).
    pub fn drain(&mut self) -> Vec<T> {
        self.waiters.clear();
        self.held.drain().map(|(_, w)| w.task).collect()
    }

    /// Takes out the held jobs for which `pick` holds (cancelled ones).
    pub fn take_where(&mut self, mut pick: impl FnMut(&T) -> bool) -> Vec<T> {
        let ids: Vec<u64> = self
            .held
            .iter()
            .filter(|(_, w)| pick(&w.task))
            .map(|(id, _)| *id)
            .collect();
        let mut out = Vec::new();
        for job in ids {
            if let Some(w) = self.held.remove(&job) {
                for id in &w.inputs {
                    if let Some(list) = self.waiters.get_mut(id) {
                        list.retain(|j| *j != job);
                    }
                }
                out.push(w.task);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> SharedId {
        SharedId([n; 32])
    }

    type Dir = Directory<&'static str, &'static str>;

    fn dir(values: &[u8]) -> Dir {
        let mut d = Dir::new();
        for v in values {
            d.add(id(*v), (u64::from(*v), "map"));
        }
        d
    }

    #[test]
    fn a_job_waits_for_a_queued_input_and_follows_it_to_its_node() {
        let mut d = dir(&[1]);
        assert!(d.place(10, "reduce", vec![id(1)]).is_empty(), "held");
        assert_eq!(d.held(), 1);
        let moves = d.making(&id(1), "n1");
        assert_eq!(moves.run, vec![("reduce", Place::On("n1"))]);
        assert_eq!(d.held(), 0);
    }

    #[test]
    fn a_chain_on_one_node_goes_out_step_by_step_as_each_producer_is_sent() {
        let mut d = dir(&[1, 2]);
        assert!(d.place(2, "step2", vec![id(1)]).is_empty());
        assert!(d.place(3, "step3", vec![id(2)]).is_empty());
        assert_eq!(d.making(&id(1), "n").run, vec![("step2", Place::On("n"))]);
        // step2 (which makes value 2) is sent: step3 follows at once.
        assert_eq!(d.making(&id(2), "n").run, vec![("step3", Place::On("n"))]);
    }

    #[test]
    fn inputs_in_the_client_run_anywhere_and_on_one_node_run_there() {
        let mut d = dir(&[1, 2]);
        d.in_client(&id(1));
        let m = d.place(5, "a", vec![id(1)]);
        assert_eq!(m.run, vec![("a", Place::Anywhere)]);
        d.kept_on(&id(2), "n2", 8);
        let m = d.place(6, "b", vec![id(1), id(2)]);
        assert_eq!(
            m.run,
            vec![("b", Place::Near("n2"))],
            "client inputs go along"
        );
    }

    #[test]
    fn inputs_on_two_nodes_are_fetched_from_the_smaller_side_then_run_on_the_larger() {
        let mut d = dir(&[1, 2, 3]);
        d.kept_on(&id(1), "a", 8);
        d.kept_on(&id(2), "b", 8);
        d.kept_on(&id(3), "b", 8);
        let m = d.place(9, "r", vec![id(1), id(2), id(3)]);
        assert!(m.run.is_empty());
        assert_eq!(m.fetch, vec![(id(1), "a")]);
        // Asked again (another job), the fetch under way is not repeated.
        let m = d.place(10, "r2", vec![id(1), id(2)]);
        assert!(m.fetch.is_empty());
        let m = d.in_client(&id(1));
        assert_eq!(m.run.len(), 2);
        assert!(m.run.iter().all(|(_, p)| *p == Place::Near("b")));
    }

    #[test]
    fn a_job_runs_where_most_of_its_input_bytes_lie_not_most_of_its_inputs() {
        let mut d = dir(&[1, 2, 3]);
        d.kept_on(&id(1), "big", 1 << 20);
        d.kept_on(&id(2), "small", 10);
        d.kept_on(&id(3), "small", 10);
        let m = d.place(9, "r", vec![id(1), id(2), id(3)]);
        assert!(m.run.is_empty());
        let mut fetch = m.fetch.clone();
        fetch.sort_by_key(|(i, _)| *i != id(2));
        assert_eq!(fetch, vec![(id(2), "small"), (id(3), "small")]);
        d.in_client(&id(2));
        let m = d.in_client(&id(3));
        assert_eq!(m.run, vec![("r", Place::Near("big"))]);
    }

    #[test]
    fn inputs_on_a_reachable_node_move_node_to_node_and_through_the_client_once_that_failed() {
        let mut d = dir(&[1, 2, 3]);
        d.set_reachable("b", true);
        d.kept_on(&id(1), "a", 1 << 20);
        d.kept_on(&id(2), "b", 10);
        d.kept_on(&id(3), "c", 10);
        let m = d.place(9, "r", vec![id(1), id(2), id(3)]);
        assert!(m.run.is_empty());
        // "b" is reachable: its value moves to "a" directly; "c" is not.
        assert_eq!(m.transfer, vec![(id(2), "b", "a")]);
        assert_eq!(m.fetch, vec![(id(3), "c")]);
        d.in_client(&id(3));
        // The transfer failed: the value comes through the client instead.
        let m = d.transfer_failed(&id(2));
        assert_eq!((m.fetch, m.transfer), (vec![(id(2), "b")], vec![]));
        let m = d.in_client(&id(2));
        assert_eq!(m.run, vec![("r", Place::Near("a"))]);
        // A transfer that arrives: the value lies where the job runs.
        let mut d = dir(&[1, 2]);
        d.set_reachable("b", true);
        d.kept_on(&id(1), "a", 100);
        d.kept_on(&id(2), "b", 10);
        assert_eq!(d.place(9, "r", vec![id(1), id(2)]).transfer.len(), 1);
        let m = d.kept_on(&id(2), "a", 10);
        assert_eq!(m.run, vec![("r", Place::Near("a"))]);
    }

    #[test]
    fn a_job_placed_on_another_node_waits_while_its_inputs_move_there_then_must_run_there() {
        let mut d = dir(&[1, 2]);
        d.set_reachable("busy", true);
        d.kept_on(&id(1), "busy", 100);
        d.kept_on(&id(2), "busy", 10);
        // Where its inputs lie at rest, the node is only preferred.
        let m = d.place(9, "r", vec![id(1), id(2)]);
        assert_eq!(m.run, vec![("r", Place::Near("busy"))]);
        assert_eq!(d.bytes_of(&[id(1), id(2)]), 110);
        // No slot there in time: placed on a free node, its inputs move.
        let m = d.place_on(9, "r", vec![id(1), id(2)], "free");
        assert!(m.run.is_empty());
        let mut moving = m.transfer.clone();
        moving.sort_by_key(|(i, _, _)| *i != id(1));
        assert_eq!(
            moving,
            vec![(id(1), "busy", "free"), (id(2), "busy", "free")]
        );
        d.kept_on(&id(1), "free", 100);
        let m = d.kept_on(&id(2), "free", 10);
        assert_eq!(m.run, vec![("r", Place::On("free"))]);
        // Placed on the node that holds them already: it runs there.
        let m = d.place_on(10, "s", vec![id(1)], "free");
        assert_eq!(m.run, vec![("s", Place::On("free"))]);
        // The node chosen is lost while the inputs move: placed afresh.
        let mut d = dir(&[1]);
        d.kept_on(&id(1), "a", 10);
        assert_eq!(
            d.place_on(11, "t", vec![id(1)], "b").fetch,
            vec![(id(1), "a")]
        );
        d.node_lost(&"b");
        let m = d.in_client(&id(1));
        assert_eq!(m.run, vec![("t", Place::Anywhere)]);
    }

    #[test]
    fn a_failed_input_fails_its_dependents_and_names_the_input_job() {
        let mut d = dir(&[7]);
        d.place(1, "dep", vec![id(7)]);
        let m = d.failed(&id(7), JobError::new(ErrorKind::Failed, "bad row"));
        let (task, err) = &m.fail[0];
        assert_eq!((*task, err.kind), ("dep", ErrorKind::Dependency));
        assert!(err.message.contains("input job 7 (map) failed"), "{err}");
        assert!(err.message.contains("bad row"), "{err}");
        // Placed later, the same.
        let m = d.place(2, "late", vec![id(7)]);
        assert_eq!(m.fail[0].1.kind, ErrorKind::Dependency);
    }

    #[test]
    fn down_a_chain_the_first_failure_is_named_and_the_message_does_not_grow() {
        let mut d = dir(&[1, 2]);
        d.failed(&id(1), JobError::new(ErrorKind::Failed, "root cause"));
        let first = d.place(2, "b", vec![id(1)]).fail.remove(0).1;
        d.failed(&id(2), first.clone());
        let second = d.place(3, "c", vec![id(2)]).fail.remove(0).1;
        assert_eq!(second, first);
        assert!(second.message.contains("input job 1 (map)"), "{second}");
    }

    #[test]
    fn a_cancelled_input_cancels_its_dependents() {
        let mut d = dir(&[3]);
        d.place(1, "dep", vec![id(3)]);
        let m = d.failed(&id(3), JobError::new(ErrorKind::Cancelled, "by the caller"));
        assert_eq!(m.fail[0].1.kind, ErrorKind::Cancelled);
    }

    #[test]
    fn a_lost_node_loses_its_values_once_and_dependents_wait_for_them_to_be_made_again() {
        let mut d = dir(&[1, 2]);
        d.kept_on(&id(1), "dead", 8);
        d.making(&id(2), "dead");
        let (lost, _) = d.node_lost(&"dead");
        assert_eq!(
            lost,
            vec![id(1)],
            "the one being made is retried by its job"
        );
        assert_eq!(d.state(&id(2)), Some(&State::Pending));
        let m = d.place(4, "r", vec![id(1)]);
        assert_eq!(m.remake, vec![id(1)], "made again");
        let m = d.place(5, "r2", vec![id(1)]);
        assert!(m.remake.is_empty(), "once per loss");
        // A fetch from the dead node failing later loses nothing more.
        assert!(d.fetch_failed(&id(1), &"dead").is_empty());
        assert_eq!(d.state(&id(1)), Some(&State::Pending));
        assert_eq!(d.remade(&id(1)), 1);
        let m = d.making(&id(1), "alive");
        assert_eq!(m.run.len(), 2);
        assert!(!d.remaking(&id(1)), "not lost now");
    }

    #[test]
    fn forgetting_a_value_fails_jobs_still_waiting_on_it_and_held_jobs_can_be_taken() {
        let mut d = dir(&[1, 2]);
        d.place(1, "a", vec![id(1)]);
        d.place(2, "b", vec![id(2)]);
        assert_eq!(d.take_where(|t| *t == "b"), vec!["b"]);
        let m = d.forget(&id(1));
        assert_eq!(m.fail[0].1.kind, ErrorKind::Dependency);
        assert_eq!(d.held(), 0);
    }
}
