//! Node-to-node transfers of kept values (PROTOCOL.md, "Peer sessions").
//!
//! A client that wants a job to run on node B with a kept input that lies
//! on node A asks A to export the value (`KeepOp::Export`) and then B to
//! pull it (`KeepOp::Pull`): B dials A, authenticates with the cluster key
//! as any client does, and fetches the value by its id. The bytes never
//! pass through the client.
//!
//! Exports ([`Exports`]) are the node's read-only index of the kept values
//! its connections let peers fetch: weak references, so a value the
//! owning connection drops (or loses with its connection) is gone from the
//! index too, and a fetch of it gets the same `NodeLost` answer as any
//! value not here. Ids are random (`SharedId::fresh`): a peer must be told one.
//!
//! Pulls run on at most [`PULL_THREADS`] threads per node, started when the
//! first pull comes; pulls beyond wait in a queue that the connections'
//! credit windows bound (each pull holds one job's credit). So a node has at
//! most that many outgoing peer sessions at once; incoming peer sessions
//! are client connections like any other and count against
//! `--max-connections` (and, before they authenticate, against
//! `--max-unauthenticated` and `--max-per-source`).

mod fetch;

use crossbeam_channel::{Receiver, Sender};
pub(crate) use fetch::FetchLimits;
use ppcore::shared::{SharedId, SharedValue};
use ppcore::wire::DoneJob;
use ppcore::{ErrorKind, JobError};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Instant;

/// The most pulls a node runs at once (its outgoing peer sessions).
pub(crate) const PULL_THREADS: usize = 4;

/// The kept values this node's connections export to peers.
#[derive(Default)]
pub(crate) struct Exports {
    values: Mutex<HashMap<SharedId, Weak<SharedValue>>>,
}

impl Exports {
    /// Lets peers fetch `value` while its connection keeps it.
    pub(crate) fn export(&self, value: &Arc<SharedValue>) {
        let mut values = ppcore::sync::lock(&self.values);
        // Dead entries go whenever the index has doubled since it was
        // last swept: it stays within twice the values alive.
        if values.len() >= 64 && values.len().is_power_of_two() {
            values.retain(|_, v| v.strong_count() > 0);
        }
        values.insert(value.id(), Arc::downgrade(value));
    }

    /// Exported value `id`, if its connection still keeps it.
    pub(crate) fn get(&self, id: &SharedId) -> Option<Arc<SharedValue>> {
        let mut values = ppcore::sync::lock(&self.values);
        let found = values.get(id).and_then(Weak::upgrade);
        if found.is_none() {
            values.remove(id);
        }
        found
    }
}

/// Transfers counted for stats and metrics.
#[derive(Default)]
pub(crate) struct TransferCounts {
    pub(crate) pulls: AtomicU64,
    pub(crate) pull_bytes: AtomicU64,
    pub(crate) served: AtomicU64,
    pub(crate) served_bytes: AtomicU64,
}

/// Where a pull's outcome goes: the connection that asked for it.
pub(crate) trait Asker: Send + Sync {
    /// The pull (a job of the connection) ended.
    fn finished(&self, done: DoneJob);
    /// Whether the connection closed (its pulls are not worth making).
    fn is_closed(&self) -> bool;
}

/// One pull to carry out.
struct Pull {
    conn: Arc<dyn Asker>,
    id: u64,
    attempt: u32,
    value: SharedId,
    from: String,
    limits: FetchLimits,
}

/// The node's side of peer sessions: its exports, its pulls, their counts.
#[derive(Default)]
pub(crate) struct Peers {
    pub(crate) exports: Exports,
    pub(crate) counts: Arc<TransferCounts>,
    pulls: OnceLock<Option<Sender<Pull>>>,
}

impl Peers {
    /// Fetches `value` from the peer at `from` for job `id` of `conn`; the
    /// outcome comes back to the connection as the job's result.
    pub(crate) fn pull(
        &self,
        conn: Arc<dyn Asker>,
        (id, attempt): (u64, u32),
        value: SharedId,
        from: String,
        limits: FetchLimits,
    ) {
        let pull = Pull {
            conn,
            id,
            attempt,
            value,
            from,
            limits,
        };
        let sender = self.pulls.get_or_init(|| start_pullers(&self.counts));
        let failed = match sender {
            Some(tx) => match tx.send(pull) {
                Ok(()) => return,
                Err(back) => back.0,
            },
            None => pull,
        };
        let err = JobError::new(ErrorKind::NodeLost, "this node cannot start pull threads");
        answer(&failed, Err(err), 0);
    }

    /// Answers a fetch of exported `value` (a peer's): its bytes, counted.
    pub(crate) fn serve(&self, value: &SharedId) -> Option<Vec<u8>> {
        let found = self.exports.get(value)?;
        let bytes = found.bytes().to_vec();
        self.counts.served.fetch_add(1, Ordering::Relaxed);
        (self.counts.served_bytes).fetch_add(bytes.len() as u64, Ordering::Relaxed);
        Some(bytes)
    }
}

/// Starts the pull threads; `None` if none would start.
fn start_pullers(counts: &Arc<TransferCounts>) -> Option<Sender<Pull>> {
    let (tx, rx) = crossbeam_channel::unbounded::<Pull>();
    let mut started = 0;
    for i in 0..PULL_THREADS {
        let (rx, counts) = (rx.clone(), Arc::clone(counts));
        let spawned = std::thread::Builder::new()
            .name(format!("pp-pull-{i}"))
            .spawn(move || puller(&rx, &counts));
        match spawned {
            Ok(_) => started += 1,
            Err(e) => tracing::warn!("cannot start a pull thread: {e}"),
        }
    }
    (started > 0).then_some(tx)
}

fn puller(rx: &Receiver<Pull>, counts: &TransferCounts) {
    for pull in rx.iter() {
        if pull.conn.is_closed() {
            continue;
        }
        let started = Instant::now();
        let got = fetch::fetch(&pull.from, pull.value, &pull.limits);
        let ns = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let result = match got {
            Ok(bytes) => {
                counts.pulls.fetch_add(1, Ordering::Relaxed);
                (counts.pull_bytes).fetch_add(bytes.len() as u64, Ordering::Relaxed);
                tracing::debug!(value = %pull.value, from = %pull.from, len = bytes.len(), "pulled");
                Ok(bytes)
            }
            Err(e) => {
                tracing::info!(value = %pull.value, "pull failed: {e}");
                Err(JobError::new(ErrorKind::NodeLost, e.to_string()))
            }
        };
        answer(&pull, result, ns);
    }
}

/// Reports a pull's outcome to its connection, as its job's result.
fn answer(pull: &Pull, result: Result<Vec<u8>, JobError>, exec_ns: u64) {
    pull.conn.finished(DoneJob {
        id: pull.id,
        attempt: pull.attempt,
        result: result.map(serde_bytes::ByteBuf::from),
        exec_ns,
        kept: None,
    });
}
