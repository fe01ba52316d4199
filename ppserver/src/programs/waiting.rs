//! Who waits for which program, as plain state: a connection that offered
//! a program another connection is uploading, or that is being started,
//! waits here (no thread of its own) until the upload or the start ends,
//! and stops waiting when it closes. Pure: generic over how a waiter is
//! told (`W`; the node's is a [`Waiter`]), no I/O, no clock.

use ppcore::program::ProgramId;
use ppcore::wire::JobInfo;
use std::collections::HashMap;

/// Whoever waits for a program (a connection, as the node reaches it):
/// told once how its upload or start ended, its jobs or why not.
pub(crate) trait Waiter: Send + Sync {
    /// The outcome of getting program `id` ready.
    fn program(&self, id: ProgramId, jobs: Result<Vec<JobInfo>, String>);
}

/// What is under way for a program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// A connection of this node uploads it.
    Uploading,
    /// Its first worker is starting (and will list its jobs).
    Starting,
}

/// Programs under way and the connections waiting for each.
#[derive(Debug)]
pub(crate) struct Waiting<W> {
    programs: HashMap<ProgramId, (Phase, Vec<(u64, W)>)>,
}

impl<W> Default for Waiting<W> {
    fn default() -> Self {
        Waiting {
            programs: HashMap::new(),
        }
    }
}

impl<W> Waiting<W> {
    /// What is under way for `id`, if anything.
    pub(crate) fn phase(&self, id: &ProgramId) -> Option<Phase> {
        self.programs.get(id).map(|p| p.0)
    }

    /// Connection `conn` waits for `id` (once, however often it asks) if
    /// something is under way for it; false if nothing is.
    pub(crate) fn wait(&mut self, id: ProgramId, conn: u64, who: W) -> bool {
        match self.programs.get_mut(&id) {
            Some((_, waiters)) => {
                if !waiters.iter().any(|(c, _)| *c == conn) {
                    waiters.push((conn, who));
                }
                true
            }
            None => false,
        }
    }

    /// An upload of `id` begins, unless something is under way for it
    /// already (then false: wait instead).
    pub(crate) fn upload(&mut self, id: ProgramId) -> bool {
        if self.programs.contains_key(&id) {
            return false;
        }
        self.programs.insert(id, (Phase::Uploading, Vec::new()));
        true
    }

    /// The file of `id` is here: `conn` waits for its start; true if the
    /// caller is to start it (nobody does yet).
    pub(crate) fn start(&mut self, id: ProgramId, conn: u64, who: W) -> bool {
        let entry = self
            .programs
            .entry(id)
            .or_insert((Phase::Uploading, Vec::new()));
        let first = entry.0 == Phase::Uploading;
        entry.0 = Phase::Starting;
        if !entry.1.iter().any(|(c, _)| *c == conn) {
            entry.1.push((conn, who));
        }
        first
    }

    /// The start of `id` ended: everyone who waits for it, to be told.
    pub(crate) fn started(&mut self, id: &ProgramId) -> Vec<W> {
        self.take(id, Phase::Starting)
    }

    /// The upload of `id` failed: its waiters, to be told (none if the
    /// program is starting meanwhile: the file came another way).
    pub(crate) fn upload_failed(&mut self, id: &ProgramId) -> Vec<W> {
        self.take(id, Phase::Uploading)
    }

    fn take(&mut self, id: &ProgramId, phase: Phase) -> Vec<W> {
        if self.phase(id) != Some(phase) {
            return Vec::new();
        }
        self.programs
            .remove(id)
            .map(|(_, w)| w.into_iter().map(|(_, who)| who).collect())
            .unwrap_or_default()
    }

    /// Connection `conn` closed: it waits for nothing any more.
    pub(crate) fn forget(&mut self, conn: u64) {
        for (_, waiters) in self.programs.values_mut() {
            waiters.retain(|(c, _)| *c != conn);
        }
    }

    /// Connections waiting, summed over programs.
    pub(crate) fn waiters(&self) -> usize {
        self.programs.values().map(|(_, w)| w.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> ProgramId {
        ProgramId([n; 32])
    }

    #[test]
    fn offers_of_a_program_being_uploaded_wait_once_per_connection_and_hear_its_start() {
        let mut w = Waiting::default();
        assert!(!w.wait(id(1), 7, "seven"), "nothing under way: no wait");
        assert!(w.upload(id(1)));
        assert!(!w.upload(id(1)), "one upload per program");
        for _ in 0..400 {
            assert!(w.wait(id(1), 7, "seven"));
        }
        assert!(w.wait(id(1), 8, "eight"));
        assert_eq!(w.waiters(), 2);
        // The uploader's file is in: it starts the program and waits too.
        assert!(w.start(id(1), 9, "nine"));
        assert_eq!(w.phase(&id(1)), Some(Phase::Starting));
        assert!(!w.start(id(1), 10, "ten"), "started once");
        assert!(w.upload_failed(&id(1)).is_empty());
        assert_eq!(w.started(&id(1)), vec!["seven", "eight", "nine", "ten"]);
        assert_eq!(w.phase(&id(1)), None);
        assert_eq!(w.waiters(), 0);
    }

    #[test]
    fn a_failed_upload_tells_its_waiters_and_a_closed_connection_waits_no_more() {
        let mut w = Waiting::default();
        assert!(w.upload(id(2)));
        assert!(w.wait(id(2), 1, 1));
        assert!(w.wait(id(2), 2, 2));
        w.forget(1);
        assert!(w.started(&id(2)).is_empty(), "not starting");
        assert_eq!(w.upload_failed(&id(2)), vec![2]);
        assert_eq!(w.phase(&id(2)), None);
        // A program found in the cache starts with no upload at all.
        assert!(w.start(id(3), 4, 4));
        w.forget(4);
        assert_eq!(w.started(&id(3)), Vec::<i32>::new());
    }
}
