//! The journal's file: a redb database with three tables (the layout is
//! docs/JOURNAL.md's "Format"), opened and checked once, then read per
//! `submit` and written in batches by the journal's writer thread.

use crate::journal::key::{self, Key};
use ppcore::wire::RunId;
use ppcore::Registry;
use redb::{Database, ReadableTable, TableDefinition};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Commit number -> the records of that commit (`journal::key::batch`).
const RESULTS: TableDefinition<u64, &[u8]> = TableDefinition::new("batches");
/// Name -> signature of every job with a record: checked against the
/// program's registry on open.
const JOBS: TableDefinition<&str, &str> = TableDefinition::new("jobs");
/// `"format"` -> the format version.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// `"id"` -> the run's id (`ppcore::wire::RunId`, 32 random bytes), made
/// with the journal: the nodes know the run's results by it.
const RUN: TableDefinition<&str, &[u8]> = TableDefinition::new("run");

/// The format this version writes and reads.
pub(crate) const FORMAT: u64 = 1;

/// What to do about a journal that cannot be used, said by every error.
const WHAT_TO_DO: &str = "move it away, or start fresh with --journal-reset \
                          (Builder::journal_reset), which deletes its records";

/// Why a journal could not be opened. Each says the file and what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JournalError {
    /// Truncated, corrupt, or not a journal at all.
    #[error("journal {}: cannot be used: {reason}; it is truncated, corrupt or not a journal: {WHAT_TO_DO}", path.display())]
    Unreadable {
        /// The journal's file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// It records jobs this program does not have, or has with other types.
    #[error("journal {}: written by another program: it records job(s) this program lacks or has with other types: {}; give this program a journal of its own, or {WHAT_TO_DO}", path.display(), jobs.join(", "))]
    OtherProgram {
        /// The journal's file.
        path: PathBuf,
        /// The jobs it records that do not match (name, and signature recorded).
        jobs: Vec<String>,
    },
    /// A newer version of this library wrote it.
    #[error("journal {}: written by a newer version (format {found}; this version reads format {FORMAT}): run that version, or {WHAT_TO_DO}", path.display())]
    Newer {
        /// The journal's file.
        path: PathBuf,
        /// The format version it holds.
        found: u64,
    },
    /// Another running program has it open.
    #[error("journal {}: in use by another running program: wait for it, or give this run another journal", path.display())]
    InUse {
        /// The journal's file.
        path: PathBuf,
    },
    /// It could not be deleted (reset) or created.
    #[error("journal {}: {source}", path.display())]
    Io {
        /// The journal's file.
        path: PathBuf,
        /// The system's error.
        source: std::io::Error,
    },
}

/// The open journal file.
pub(crate) struct Store {
    db: Database,
    /// The next commit's number.
    next: AtomicU64,
}

/// The records a journal held when opened, by identity.
pub(crate) type Recorded = HashMap<Key, Vec<u8>>;

/// One record to write.
pub(crate) struct Row {
    pub(crate) key: Key,
    pub(crate) record: Vec<u8>,
    pub(crate) job: (&'static str, &'static str),
}

fn unreadable(path: &Path, reason: impl std::fmt::Display) -> JournalError {
    JournalError::Unreadable {
        path: path.to_owned(),
        reason: reason.to_string(),
    }
}

impl Store {
    /// Opens (or creates) the journal at `path` for a program that runs
    /// `registry`'s jobs; `reset` deletes it first. Every page's checksum
    /// (redb's integrity check) and every record's are checked once, here:
    /// a damaged file is refused before the run, not found out halfway.
    pub(crate) fn open(
        path: &Path,
        reset: bool,
        registry: &Registry,
    ) -> Result<(Store, Recorded, RunId), JournalError> {
        if reset {
            match std::fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(JournalError::Io {
                        path: path.to_owned(),
                        source,
                    })
                }
            }
        }
        // redb asserts on some truncated files (a panic, not an error):
        // caught, that is a journal cut short too.
        let opened = std::panic::catch_unwind(|| {
            let mut db = Database::create(path)?;
            db.check_integrity().map(|_| db)
        });
        let opened = opened.unwrap_or_else(|_| {
            Err(redb::DatabaseError::Storage(redb::StorageError::Corrupted(
                "shorter than its header says (truncated)".into(),
            )))
        });
        let db = opened.map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => JournalError::InUse {
                path: path.to_owned(),
            },
            redb::DatabaseError::Storage(redb::StorageError::Io(source))
                if !matches!(
                    source.kind(),
                    std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::InvalidData
                ) =>
            {
                JournalError::Io {
                    path: path.to_owned(),
                    source,
                }
            }
            other => unreadable(path, other),
        })?;
        let store = Store {
            db,
            next: AtomicU64::new(0),
        };
        store.format(path)?;
        store.check_jobs(path, registry)?;
        let (recorded, next) = store.read_records(path)?;
        store.next.store(next, Ordering::Relaxed);
        let run = store.run_id(path)?;
        Ok((store, recorded, run))
    }

    /// The run's id, made (and committed) the first time.
    fn run_id(&self, path: &Path) -> Result<RunId, JournalError> {
        let bad = |e: redb::Error| unreadable(path, e);
        let read = self.db.begin_read().map_err(|e| bad(e.into()))?;
        let found = match read.open_table(RUN) {
            Ok(table) => table
                .get("id")
                .map_err(|e| bad(e.into()))?
                .map(|v| v.value().to_vec()),
            Err(redb::TableError::TableDoesNotExist(_)) => None,
            Err(e) => return Err(bad(e.into())),
        };
        drop(read);
        match found {
            Some(bytes) => <[u8; 32]>::try_from(bytes.as_slice())
                .map(RunId)
                .map_err(|_| unreadable(path, "a run id that is not 32 bytes")),
            None => {
                let id = ppcore::shared::SharedId::fresh()
                    .map_err(|e| unreadable(path, e.message))?
                    .0;
                let write = || -> Result<(), Fault> {
                    let txn = self.db.begin_write().map_err(boxed)?;
                    txn.open_table(RUN)
                        .map_err(boxed)?
                        .insert("id", id.as_slice())
                        .map_err(boxed)?;
                    txn.commit().map_err(boxed)
                };
                write().map_err(|e| bad(*e))?;
                Ok(RunId(id))
            }
        }
    }

    /// Checks the format version, writing it into a new journal.
    fn format(&self, path: &Path) -> Result<(), JournalError> {
        let bad = |e: redb::Error| unreadable(path, e);
        let read = self.db.begin_read().map_err(|e| bad(e.into()))?;
        let found = match read.open_table(META) {
            Ok(meta) => meta
                .get("format")
                .map_err(|e| bad(e.into()))?
                .map(|v| v.value()),
            Err(redb::TableError::TableDoesNotExist(_)) => None,
            Err(e) => return Err(bad(e.into())),
        };
        let tables = read.list_tables().map_err(|e| bad(e.into()))?.count();
        drop(read);
        match found {
            Some(FORMAT) => Ok(()),
            Some(found) if found > FORMAT => Err(JournalError::Newer {
                path: path.to_owned(),
                found,
            }),
            Some(found) => Err(unreadable(path, format!("unknown format {found}"))),
            None if tables > 0 => Err(unreadable(path, "a database of another kind")),
            None => self.create().map_err(|e| bad(*e)),
        }
    }

    /// Makes the tables of a new journal.
    fn create(&self) -> Result<(), Fault> {
        let txn = self.db.begin_write().map_err(boxed)?;
        txn.open_table(META)
            .map_err(boxed)?
            .insert("format", FORMAT)
            .map_err(boxed)?;
        txn.open_table(JOBS).map_err(boxed)?;
        txn.open_table(RESULTS).map_err(boxed)?;
        txn.commit().map_err(boxed)
    }

    /// Every recorded job must be one of `registry`'s, with the same types.
    fn check_jobs(&self, path: &Path, registry: &Registry) -> Result<(), JournalError> {
        let bad = |e: redb::Error| unreadable(path, e);
        let read = self.db.begin_read().map_err(|e| bad(e.into()))?;
        let jobs = read.open_table(JOBS).map_err(|e| bad(e.into()))?;
        let mut other = Vec::new();
        for row in jobs.iter().map_err(|e| bad(e.into()))? {
            let (name, signature) = row.map_err(|e| bad(e.into()))?;
            let (name, signature) = (name.value(), signature.value());
            if registry.get(name).is_none_or(|e| e.signature != signature) {
                other.push(format!("{name} ({signature})"));
            }
        }
        match other.is_empty() {
            true => Ok(()),
            false => Err(JournalError::OtherProgram {
                path: path.to_owned(),
                jobs: other,
            }),
        }
    }

    /// Every record, its checksum checked and its job listed; and the
    /// next commit's number.
    fn read_records(&self, path: &Path) -> Result<(Recorded, u64), JournalError> {
        let bad = |e: redb::Error| unreadable(path, e);
        let read = self.db.begin_read().map_err(|e| bad(e.into()))?;
        let jobs = read.open_table(JOBS).map_err(|e| bad(e.into()))?;
        let results = read.open_table(RESULTS).map_err(|e| bad(e.into()))?;
        let (mut recorded, mut next) = (Recorded::new(), 0);
        for row in results.iter().map_err(|e| bad(e.into()))? {
            let (n, blob) = row.map_err(|e| bad(e.into()))?;
            next = n.value() + 1;
            for (k, v) in key::unbatch(blob.value()).map_err(|e| unreadable(path, e))? {
                key::verify(k, v).map_err(|e| unreadable(path, e))?;
                let listed = match key::name_of(k) {
                    Some(name) => jobs.get(name).map_err(|e| bad(e.into()))?.is_some(),
                    None => false,
                };
                if !listed {
                    return Err(unreadable(path, "a record of an unlisted job"));
                }
                recorded.insert(k.to_vec(), v.to_vec());
            }
        }
        Ok((recorded, next))
    }

    /// Writes `rows` in one transaction, durable when this returns.
    pub(crate) fn put(&self, rows: &[Row]) -> Result<(), Fault> {
        let mut txn = self.db.begin_write().map_err(boxed)?;
        txn.set_durability(redb::Durability::Immediate);
        {
            let mut jobs = txn.open_table(JOBS).map_err(boxed)?;
            let mut results = txn.open_table(RESULTS).map_err(boxed)?;
            let mut listed: Vec<&str> = Vec::new();
            for row in rows {
                let (name, signature) = row.job;
                if !listed.contains(&name) {
                    listed.push(name);
                    jobs.insert(name, signature).map_err(boxed)?;
                }
            }
            let blob = key::batch(rows.iter().map(|r| (r.key.as_slice(), r.record.as_slice())));
            // Only this journal's writer thread commits: numbers in order.
            let n = self.next.fetch_add(1, Ordering::Relaxed);
            results.insert(n, blob.as_slice()).map_err(boxed)?;
        }
        txn.commit().map_err(boxed)
    }
}

/// A store error, boxed: redb's is large, and rare.
pub(crate) type Fault = Box<redb::Error>;

fn boxed(e: impl Into<redb::Error>) -> Fault {
    Box::new(e.into())
}
