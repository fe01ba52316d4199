//! The registry: job names to type-erased runners.

use crate::job::definition::{run_erased, Job};
use crate::job::error::{ErrorKind, JobError};
use std::collections::BTreeMap;

/// One registered job: its name, signature and type-erased runner.
#[derive(Clone, Copy, Debug)]
pub struct JobEntry {
    /// The job's stable name.
    pub name: &'static str,
    /// The argument and result types as written.
    pub signature: &'static str,
    /// Runs the job: MessagePack arguments in (freed once decoded),
    /// MessagePack result out.
    pub run: fn(Vec<u8>) -> Result<Vec<u8>, JobError>,
}

impl JobEntry {
    /// The entry of job `J`.
    pub const fn of<J: Job>() -> Self {
        JobEntry {
            name: J::NAME,
            signature: J::SIGNATURE,
            run: run_erased::<J>,
        }
    }
}

inventory::collect!(JobEntry);

/// Two jobs were registered under one name.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
#[error("two jobs are registered as `{name}` ({first} and {second}); rename one of them")]
pub struct DuplicateJob {
    /// The name both jobs claim.
    pub name: &'static str,
    /// The first job's signature.
    pub first: &'static str,
    /// The second job's signature.
    pub second: &'static str,
}

crate::debug_as_display!(DuplicateJob);

/// Maps job names to runners. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Registry {
    entries: BTreeMap<&'static str, JobEntry>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every job defined with [`job!`](crate::job!) in the crates linked into this program.
    pub fn linked() -> Result<Self, DuplicateJob> {
        let mut registry = Registry::new();
        for entry in inventory::iter::<JobEntry> {
            registry.insert(*entry)?;
        }
        Ok(registry)
    }

    /// Adds job `J`; a different job already under its name is an error.
    pub fn add<J: Job>(&mut self) -> Result<&mut Self, DuplicateJob> {
        self.insert(JobEntry::of::<J>())?;
        Ok(self)
    }

    /// Adds an entry. An entry with the same name and signature is taken to be
    /// the same job (a job added by hand that is also linked); the same name
    /// with another signature is an error.
    pub fn insert(&mut self, entry: JobEntry) -> Result<(), DuplicateJob> {
        match self.entries.get(entry.name) {
            Some(old) if old.signature != entry.signature => Err(DuplicateJob {
                name: entry.name,
                first: old.signature,
                second: entry.signature,
            }),
            _ => {
                self.entries.insert(entry.name, entry);
                Ok(())
            }
        }
    }

    /// The entry registered under `name`.
    pub fn get(&self, name: &str) -> Option<&JobEntry> {
        self.entries.get(name)
    }

    /// Whether job `J`, with the same signature, is registered.
    pub fn has<J: Job>(&self) -> bool {
        self.get(J::NAME)
            .is_some_and(|e| e.signature == J::SIGNATURE)
    }

    /// All entries, by name.
    pub fn entries(&self) -> impl Iterator<Item = &JobEntry> {
        self.entries.values()
    }

    /// The number of jobs.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no job is registered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Runs the job called `name` on MessagePack `args`, catching panics.
    pub fn run(&self, name: &str, args: impl Into<Vec<u8>>) -> Result<Vec<u8>, JobError> {
        let entry = self.get(name).ok_or_else(|| {
            JobError::new(ErrorKind::UnknownJob, format!("no job named `{name}` here"))
        })?;
        (entry.run)(args.into())
    }
}
