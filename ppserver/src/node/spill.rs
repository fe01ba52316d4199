//! Spill to disk (`--spill-dir`, `--spill-max`): kept values that do not
//! fit `--max-memory` go to files here, one per value, within a node-wide
//! budget of file bytes (headers included). This is the node's part: the
//! directory, the budget, the counters, and the sweep of files an earlier
//! node left; each connection's driver writes, reads and deletes its own
//! files (`conn::spilled`), and its link decides what goes to disk.
//!
//! Several nodes may share a spill directory. A node names its files
//! `p{PORT}-c{CONN}-{ID}.spill` and, from its first write on, holds the
//! lock file `p{PORT}.lock` (an `flock`) while it lives; a node that starts
//! deletes the files of every port whose lock nobody holds (their node is
//! gone), its own port's earlier run's included, and touches nothing else.
//! The directory is made at the first write: a node that never spills
//! leaves no trace in its cache directory.

pub(crate) mod file;

use ppcore::shared::SharedId;
use std::collections::HashSet;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

/// The node's spill directory and budget.
#[derive(Debug)]
pub(crate) struct Spill {
    /// The directory, `None` when spill is off.
    dir: Option<PathBuf>,
    max: u64,
    /// File bytes on disk now (or being written).
    used: AtomicU64,
    /// Values read back (or tried).
    reads: AtomicU64,
    port: u16,
    /// Whether the directory is made and this node's lock taken.
    ready: AtomicBool,
    /// The locks this node holds while it lives (see the module's doc;
    /// two drivers' first writes at once may both take one).
    locks: Mutex<Vec<File>>,
}

impl Spill {
    /// Spill to `dir` within `max` file bytes for the node on `port`; off
    /// if `max` is 0 or `dir` is `None`. The directory, if it is there, is
    /// swept of dead nodes' files now.
    pub(crate) fn open(dir: Option<PathBuf>, max: u64, port: u16) -> Spill {
        let dir = dir.filter(|_| max > 0);
        if let Some(dir) = &dir {
            sweep(dir);
            tracing::debug!(dir = %dir.display(), max, "kept values spill here");
        }
        Spill {
            dir,
            max,
            used: AtomicU64::new(0),
            reads: AtomicU64::new(0),
            port,
            ready: AtomicBool::new(false),
            locks: Mutex::new(Vec::new()),
        }
    }

    /// Makes the directory (mode 0700) and takes this node's lock there,
    /// once: before the first file is written.
    pub(crate) fn make_ready(&self) -> io::Result<()> {
        let Some(dir) = &self.dir else {
            return Err(io::Error::other("spill is off"));
        };
        if self.ready.load(Ordering::Acquire) {
            return Ok(());
        }
        // The I/O is done outside the lock; only the file is kept under it.
        let lock = own(dir, self.port)?;
        ppcore::sync::lock(&self.locks).push(lock);
        self.ready.store(true, Ordering::Release);
        Ok(())
    }

    /// The most bytes one value may have to be spilled now (0 when off or full).
    pub(crate) fn room(&self) -> u64 {
        match self.dir {
            None => 0,
            Some(_) => (self.max.saturating_sub(self.used())).saturating_sub(file::HEADER),
        }
    }

    /// Where connection `conn` keeps value `id`, if spill is on.
    pub(crate) fn path(&self, conn: u64, id: &SharedId) -> Option<PathBuf> {
        let hex: String = id.0.iter().map(|b| format!("{b:02x}")).collect();
        let name = format!("p{}-c{conn}-{hex}.spill", self.port);
        self.dir.as_ref().map(|d| d.join(name))
    }

    /// Takes `bytes` of the budget if they fit.
    pub(crate) fn try_reserve(&self, bytes: u64) -> bool {
        self.dir.is_some()
            && self
                .used
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                    used.checked_add(bytes).filter(|t| *t <= self.max)
                })
                .is_ok()
    }

    /// Gives back `bytes` taken before.
    pub(crate) fn release(&self, bytes: u64) {
        let _ = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                Some(used.saturating_sub(bytes))
            });
    }

    /// A value was read back (or tried).
    pub(crate) fn note_read(&self) {
        self.reads.fetch_add(1, Ordering::Relaxed);
    }

    /// File bytes spilled now.
    pub(crate) fn used(&self) -> u64 {
        self.used.load(Ordering::Acquire)
    }

    /// Values read back since the node started.
    pub(crate) fn reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }
}

/// Makes `dir` and takes `port`'s lock there (made under another name and
/// renamed locked, so that a sweeping node never sees it unlocked while its
/// owner lives).
fn own(dir: &Path, port: u16) -> io::Result<File> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let temp = dir.join(format!("p{port}.lock.{}-{n}", std::process::id()));
    let file = File::options()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temp)?;
    rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive)?;
    fs::rename(&temp, dir.join(format!("p{port}.lock")))?;
    Ok(file)
}

/// The port a file of ours is named by: `p{PORT}.lock` or `p{PORT}-….spill`.
fn port_of(name: &str) -> Option<(u16, bool)> {
    let rest = name.strip_prefix('p')?;
    if let Some(port) = rest.strip_suffix(".lock") {
        return Some((port.parse().ok()?, true));
    }
    let (port, _) = rest.strip_suffix(".spill")?.split_once('-')?;
    Some((port.parse().ok()?, false))
}

/// Deletes the spill files of every port whose lock nobody holds, and those locks.
fn sweep(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let names: Vec<String> = (entries.flatten())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let mut live = HashSet::new();
    let mut dead_locks = Vec::new();
    for name in &names {
        let Some((port, true)) = port_of(name) else {
            continue;
        };
        let Ok(file) = File::open(dir.join(name)) else {
            continue;
        };
        let lock = rustix::fs::FlockOperation::NonBlockingLockExclusive;
        match rustix::fs::flock(&file, lock) {
            Ok(()) => dead_locks.push((name, file)),
            Err(_) => {
                live.insert(port);
            }
        }
    }
    let mut removed = 0;
    for name in &names {
        if let Some((port, false)) = port_of(name) {
            if !live.contains(&port) && fs::remove_file(dir.join(name)).is_ok() {
                removed += 1;
            }
        }
    }
    for (name, _held) in dead_locks {
        let _ = fs::remove_file(dir.join(name));
    }
    if removed > 0 {
        tracing::info!(dir = %dir.display(), removed, "stale spill files removed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_starting_node_removes_dead_nodes_files_only() {
        let dir = std::env::temp_dir().join(format!(
            "pp-spill-sweep-{}-{}",
            std::process::id(),
            SharedId::fresh().unwrap()
        ));
        let live = Spill::open(Some(dir.clone()), 1 << 20, 7001);
        assert!(!dir.exists(), "made at the first write only");
        live.make_ready().unwrap();
        let id = SharedId::of(b"x");
        let live_file = live.path(1, &id).unwrap();
        fs::write(&live_file, b"live").unwrap();
        // A dead node's files, with and without its lock, and a stranger.
        fs::write(dir.join("p7002.lock"), b"").unwrap();
        fs::write(dir.join("p7002-c1-ab.spill"), b"dead").unwrap();
        fs::write(dir.join("p7003-c0-cd.spill"), b"orphan").unwrap();
        fs::write(dir.join("notes.txt"), b"not ours").unwrap();
        let second = Spill::open(Some(dir.clone()), 1 << 20, 7004);
        assert!(live_file.exists(), "a live node's file stays");
        assert!(!dir.join("p7002-c1-ab.spill").exists());
        assert!(!dir.join("p7002.lock").exists());
        assert!(!dir.join("p7003-c0-cd.spill").exists());
        assert!(dir.join("notes.txt").exists(), "not ours: left alone");
        assert!(second.room() > 0);
        drop((live, second));
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn the_budget_holds_and_zero_turns_spill_off() {
        let dir = std::env::temp_dir().join(format!("pp-spill-budget-{}", std::process::id()));
        let s = Spill::open(Some(dir.clone()), 1000, 7005);
        s.make_ready().unwrap();
        assert_eq!(s.room(), 1000 - file::HEADER);
        assert!(s.try_reserve(600));
        assert!(!s.try_reserve(600));
        s.release(600);
        assert_eq!(s.used(), 0);
        let off = Spill::open(Some(dir.clone()), 0, 7006);
        assert_eq!((off.room(), off.try_reserve(1)), (0, false));
        assert!(off.path(0, &SharedId::of(b"x")).is_none());
        drop(s);
        fs::remove_dir_all(dir).unwrap();
    }
}
