//! The client's journal (`Builder::journal`): every finished job's result,
//! recorded in an embedded database before the program sees it, and given
//! back at `submit` when the same program runs again (docs/JOURNAL.md).
//!
//! `key` is the pure part (identities, records, checksums); `store` is the
//! redb file; this module is the shell: the lookup at `submit` and the
//! writer thread that commits results in batches and only then lets them
//! be seen.

pub(crate) mod key;
pub(crate) mod store;

use crate::journal::key::{Key, Occurrences};
use crate::journal::store::{Recorded, Row, Store};
use crossbeam_channel::{Receiver, Sender};
use ppcore::wire::{JobKey, RunId};
use ppcore::{Job, JobError, Registry};
use sha2::Digest;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;

pub use store::JournalError;

/// The most results committed in one transaction: the batch is whatever
/// arrived while the last commit was syncing, up to this.
const MAX_BATCH: usize = 4096;

/// What lets a result be seen once it is durable (publishes the handle or
/// runs the callback). Run when dropped, so that a result is never lost
/// for its waiters, whatever happens to the writer.
pub(crate) struct Then(Option<Box<dyn FnOnce() + Send>>);

impl Drop for Then {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            f();
        }
    }
}

/// A recorded result of job `JobKey` that the named node holds until told
/// (`Recorded`).
pub(crate) type Ack = (String, JobKey);

/// What tells the nodes which results are recorded (set once the server's
/// links exist): called by the writer after each commit.
pub(crate) type Acker = Box<dyn Fn(Vec<Ack>) + Send + Sync>;

enum Message {
    Write(Row, Then, Option<Ack>),
    Stop,
}

/// An open journal and its writer thread.
pub(crate) struct Journal {
    /// What it held when opened: read without a lock (it never changes).
    recorded: Recorded,
    path: PathBuf,
    occurrences: Mutex<Occurrences>,
    tx: Sender<Message>,
    writer: Mutex<Option<JoinHandle<()>>>,
    /// The run's id (made with the journal): nodes know its results by it.
    run: RunId,
    acker: Arc<OnceLock<Acker>>,
}

/// What the journal says of a job at `submit`.
pub(crate) enum Lookup {
    /// Recorded by an earlier run: its outcome.
    Recorded(Result<Vec<u8>, JobError>),
    /// To run, and to record under this entry when it finishes.
    Run(Entry),
    /// Not journaled (its arguments name shared or kept values and it has
    /// no key of its own, or they do not encode).
    Skip,
}

/// Where a running job's result is to be recorded.
pub(crate) struct Entry {
    journal: Arc<Journal>,
    key: Key,
    /// The node whose result this is, which holds it until it is recorded.
    ran_on: Option<String>,
}

impl Entry {
    /// The job's identity on the nodes (`RunJob.journal`): a digest of its
    /// journal identity, made when asked (a local run never needs it).
    pub(crate) fn job_key(&self) -> JobKey {
        JobKey(sha2::Sha256::digest(&self.key).into())
    }

    /// The result came from node `node` (it holds it until recorded).
    pub(crate) fn ran_on(&mut self, node: &str) {
        self.ran_on = Some(node.to_owned());
    }

    /// The record of job (name, signature)'s `outcome`; `None` if it is
    /// not recorded (the system's errors are not: `key::is_recorded`).
    pub(crate) fn prepare(
        self,
        job: (&'static str, &'static str),
        outcome: Result<Vec<u8>, &JobError>,
    ) -> Option<Prepared> {
        let record = key::record(&self.key, outcome)?;
        let ack = self
            .ran_on
            .as_ref()
            .map(|node| (node.clone(), self.job_key()));
        let row = Row {
            key: self.key,
            record,
            job,
        };
        Some(Prepared {
            journal: self.journal,
            row,
            ack,
        })
    }
}

/// A record to write, before its result may be seen.
pub(crate) struct Prepared {
    journal: Arc<Journal>,
    row: Row,
    ack: Option<Ack>,
}

impl Prepared {
    /// Writes the record, then (once it is durable) runs `then`, on the
    /// journal's writer thread.
    pub(crate) fn then(self, then: Box<dyn FnOnce() + Send>) {
        // If the writer is gone (the server was dropped), `Then`'s drop
        // lets the result be seen unrecorded.
        let _ = self
            .journal
            .tx
            .send(Message::Write(self.row, Then(Some(then)), self.ack));
    }
}

impl Journal {
    /// Opens the journal at `path` (deleting it first if `reset`) and starts its writer.
    pub(crate) fn open(
        path: &Path,
        reset: bool,
        registry: &Registry,
    ) -> Result<Arc<Journal>, JournalError> {
        let (store, recorded, run) = Store::open(path, reset, registry)?;
        let store = Arc::new(store);
        let (tx, rx) = crossbeam_channel::unbounded();
        let acker = Arc::new(OnceLock::new());
        let writer = {
            let (store, at, acks) = (Arc::clone(&store), path.to_owned(), Arc::clone(&acker));
            std::thread::Builder::new()
                .name("pp-journal".into())
                .spawn(move || write_loop(&store, &at, &rx, &acks))
                .map_err(|source| JournalError::Io {
                    path: path.to_owned(),
                    source,
                })?
        };
        Ok(Arc::new(Journal {
            recorded,
            path: path.to_owned(),
            occurrences: Mutex::new(Occurrences::default()),
            tx,
            writer: Mutex::new(Some(writer)),
            run,
            acker,
        }))
    }

    /// The run's id.
    pub(crate) fn run(&self) -> RunId {
        self.run
    }

    /// Tells the nodes, after each commit, which of their results are
    /// recorded (set once; later calls are ignored).
    pub(crate) fn set_acker(&self, acker: Acker) {
        let _ = self.acker.set(acker);
    }

    /// Identifies job `J` with `args` (or the user's `given` key) and looks it up.
    pub(crate) fn lookup<J: Job>(self: &Arc<Self>, args: &J::Args, given: Option<&str>) -> Lookup {
        let key = match given {
            Some(user) => key::given(J::NAME, user),
            None => {
                let (encoded, named) =
                    ppcore::shared::collect(|| ppcore::encode_args::<J>(args, 0));
                // A shared or kept value travels as an id of this process:
                // not the same job identity in the next one.
                let (Ok(encoded), true) =
                    (encoded, named.values.is_empty() && named.kept.is_empty())
                else {
                    return Lookup::Skip;
                };
                let hash = key::args_hash(&encoded);
                let occurrence = ppcore::sync::lock(&self.occurrences).next(J::NAME, hash);
                key::derived(J::NAME, &hash, occurrence)
            }
        };
        if let Some(record) = self.recorded.get(&key) {
            // Its checksum was checked on open: not again per submit.
            match key::read_verified(record) {
                Ok(outcome) => return Lookup::Recorded(outcome),
                // Only an error record that does not decode.
                Err(e) => tracing::warn!(
                    "journal {}: {e} for a job {}: running it again",
                    self.path.display(),
                    J::NAME
                ),
            }
        }
        Lookup::Run(Entry {
            journal: Arc::clone(self),
            key,
            ran_on: None,
        })
    }

    /// Commits what is queued, lets it be seen, and stops the writer.
    pub(crate) fn close(&self) {
        let _ = self.tx.send(Message::Stop);
        let writer = ppcore::sync::lock(&self.writer).take();
        if let Some(writer) = writer {
            let _ = writer.join();
        }
    }
}

/// The writer thread: takes what has arrived (up to [`MAX_BATCH`]),
/// commits it in one durable transaction, then lets it be seen; again.
/// While one commit syncs, the next batch gathers: no timer, and a lone
/// result waits for one sync only.
fn write_loop(store: &Store, path: &Path, rx: &Receiver<Message>, acker: &OnceLock<Acker>) {
    let mut stop = false;
    while !stop {
        let Ok(first) = rx.recv() else {
            return;
        };
        let mut batch = Vec::new();
        let mut next = Some(first);
        while let Some(message) = next.take() {
            match message {
                Message::Write(row, then, ack) => batch.push((row, then, ack)),
                Message::Stop => {
                    stop = true;
                    break;
                }
            }
            if batch.len() < MAX_BATCH {
                next = rx.try_recv().ok();
            }
        }
        if batch.is_empty() {
            continue;
        }
        let (mut rows, mut thens, mut acks) = (Vec::new(), Vec::new(), Vec::new());
        for (row, then, ack) in batch {
            rows.push(row);
            thens.push(then);
            acks.extend(ack);
        }
        let put = store.put(&rows);
        if let (Ok(()), Some(acker), false) = (&put, acker.get(), acks.is_empty()) {
            acker(acks);
        }
        if let Err(e) = put {
            // The results are right, only not recorded: they are given to
            // the program, and run again next time.
            tracing::warn!(
                "journal {}: {} result(s) could not be recorded ({e}); they will run again next time",
                path.display(),
                rows.len()
            );
        }
        drop(rows);
        drop(thens);
    }
    // Whatever came after the stop: committed too, as one last batch.
    let rest: Vec<(Row, Then)> = rx
        .try_iter()
        .filter_map(|m| match m {
            Message::Write(row, then, _) => Some((row, then)),
            Message::Stop => None,
        })
        .collect();
    if !rest.is_empty() {
        let (rows, thens): (Vec<Row>, Vec<Then>) = rest.into_iter().unzip();
        let _ = store.put(&rows);
        drop(thens);
    }
}
