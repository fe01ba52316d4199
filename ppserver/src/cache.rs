//! The node's cache of shipped programs: one file per program, named by its
//! hash (never by anything a peer sent), in a directory private to the node's
//! user, within a size cap (least recently used evicted first, never one in
//! use) that counts the uploads under way as well.
//!
//! **One directory per node by default**: `$XDG_CACHE_HOME/ppserver/programs/port-PORT`
//! (or `~/.cache/...`), keyed by the port the node listens on, so that
//! several nodes on one host never share one by accident and a node
//! restarted on its port finds its programs again; a node on an ephemeral
//! port gets an `ephemeral-...` directory that goes once the node is gone
//! ([`own_dir`]).
//!
//! **Safe to share on purpose** (one `--cache-dir` given to several nodes):
//! - an upload is written to its own temporary file, `HASH.TAG-N.part`
//!   (TAG unique to the process: its pid and random bits), created
//!   exclusively and locked (`flock`) for as long as it is written;
//! - once verified it is synced, closed and renamed to `HASH.bin` in one
//!   step: a file is never written under its final name, so no process runs
//!   a file that another one writes (the same program uploaded to two nodes
//!   at once is two files, and whichever rename comes last wins, with the
//!   same bytes);
//! - another process removes a `.part` file only if nobody holds its lock
//!   and it is older than [`STALE_PART`] (what a killed node left).
//!
//! **Disk within the cap**: before an upload starts, its offered size is
//! reserved; programs, this node's reservations and other processes'
//! partial files together stay within `--cache-max` (older programs not in
//! use are evicted to make room), else the offer is refused with the reason.
//! An upload never writes more than it offered (`ppcore::upload`); its file
//! goes when it fails or its connection ends.

use ppcore::program::ProgramId;
use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::hash::{BuildHasher, Hasher};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

/// A partial upload left by another process is removed once nobody holds
/// its lock and it has not changed for this long.
pub(crate) const STALE_PART: Duration = Duration::from_secs(60);

/// Where a node asked to listen on `port` keeps programs when `--cache-dir`
/// is not given: a directory of its own under
/// `$XDG_CACHE_HOME/ppserver/programs` (else `~/.cache/ppserver/programs`):
/// `port-PORT` for a node given its port, so that it finds its programs
/// again when restarted there; `ephemeral-TAG` for a node on an ephemeral
/// port (`--port 0`, as Slurm starts them), removed by the next node that
/// starts on the host once its owner is gone. `None` with neither variable.
pub(crate) fn own_dir(port: u16) -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    let name = match port {
        0 => format!("{EPHEMERAL}{}", process_tag()),
        port => format!("port-{port}"),
    };
    Some(base.join("ppserver").join("programs").join(name))
}

/// How the directories of nodes on ephemeral ports begin.
const EPHEMERAL: &str = "ephemeral-";
/// The file an ephemeral directory's node holds locked while it lives.
const OWNER: &str = ".owner";

/// Takes ownership of the ephemeral directory `dir` (made already): its
/// [`OWNER`] file, locked for as long as the returned file is open. Made
/// under another name and renamed locked, so that it is never seen unlocked
/// while its owner lives.
fn own(dir: &Path) -> io::Result<File> {
    let temp = dir.join(format!("{OWNER}.{}", process_tag()));
    let file = File::options()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temp)?;
    rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive)?;
    fs::rename(&temp, dir.join(OWNER))?;
    Ok(file)
}

/// Removes the ephemeral directories beside `dir` whose node is gone:
/// their [`OWNER`] file is there and nobody holds its lock.
fn sweep_ephemeral(dir: &Path) {
    let Some(Ok(siblings)) = dir.parent().map(fs::read_dir) else {
        return;
    };
    for entry in siblings.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with(EPHEMERAL) || path == dir {
            continue;
        }
        let Ok(owner) = File::open(path.join(OWNER)) else {
            continue; // not one of ours, or its node is being born
        };
        let lock = rustix::fs::FlockOperation::NonBlockingLockExclusive;
        if rustix::fs::flock(&owner, lock).is_ok() {
            let _ = fs::remove_dir_all(&path);
            tracing::info!(dir = %path.display(), "a gone node's program cache removed");
        }
    }
}

#[derive(Default)]
struct State {
    /// Bytes reserved by this node's uploads under way, by upload number.
    reserved: HashMap<u64, u64>,
    /// Programs with running workers: never evicted.
    pinned: HashMap<ProgramId, usize>,
}

/// A directory of programs within a byte cap.
pub(crate) struct ProgramCache {
    dir: PathBuf,
    /// An ephemeral directory's [`OWNER`] file, locked while the node lives.
    _owner: Option<File>,
    max: u64,
    /// What this process's temporary files are named with.
    tag: String,
    /// The next upload's number.
    next: AtomicU64,
    state: Mutex<State>,
}

/// A name for this process's temporary files that no other process uses:
/// its pid, the time, and random bits (std's per-process hash keys).
fn process_tag() -> String {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    h.write_u128(nanos);
    format!("{}x{:016x}", std::process::id(), h.finish())
}

/// What the directory holds, as [`ProgramCache::make_room`] decides on it.
#[derive(Debug, Default, PartialEq)]
struct Listing {
    /// Programs: last used, bytes, file name.
    programs: Vec<(SystemTime, u64, String)>,
    /// Bytes of other processes' partial uploads.
    others_partial: u64,
}

/// The programs to remove (oldest first, none pinned) so that `incoming`
/// more bytes fit under `max`, or `None` if they cannot. Pure.
fn evictions(
    mut programs: Vec<(SystemTime, u64, String)>,
    other_bytes: u64,
    incoming: u64,
    max: u64,
    pinned: &HashSet<String>,
) -> Option<Vec<String>> {
    let mut total: u64 = programs.iter().map(|p| p.1).sum::<u64>() + other_bytes;
    programs.sort();
    let mut gone = Vec::new();
    for (_, len, name) in programs {
        if total.saturating_add(incoming) <= max {
            break;
        }
        if !pinned.contains(&name) {
            total -= len;
            gone.push(name);
        }
    }
    (total.saturating_add(incoming) <= max).then_some(gone)
}

impl ProgramCache {
    /// Opens (creating, mode 0700) the cache in `dir`; `own`: the node's
    /// own directory ([`own_dir`]), and gone nodes' ephemeral ones beside it
    /// are removed.
    pub(crate) fn open(dir: PathBuf, max: u64, own: bool) -> io::Result<Arc<Self>> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))?;
        let ephemeral = dir
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with(EPHEMERAL));
        let owner = match own && ephemeral {
            true => Some(self::own(&dir)?),
            false => None,
        };
        if own {
            sweep_ephemeral(&dir);
        }
        let cache = Arc::new(ProgramCache {
            dir,
            _owner: owner,
            max,
            tag: process_tag(),
            next: AtomicU64::new(0),
            state: Mutex::new(State::default()),
        });
        cache.sweep();
        Ok(cache)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        ppcore::sync::lock(&self.state)
    }

    fn path(&self, id: &ProgramId) -> PathBuf {
        self.dir.join(format!("{}.bin", id.hex()))
    }

    /// Whether `name` is one of this process's temporary files.
    fn is_ours(&self, name: &str) -> bool {
        name.split('.').nth(1).and_then(|t| t.split('-').next()) == Some(self.tag.as_str())
    }

    /// Removes the partial uploads that nobody writes any more (a killed
    /// node's): unlocked and unchanged for [`STALE_PART`].
    fn sweep(&self) {
        let Ok(dir) = fs::read_dir(&self.dir) else {
            return;
        };
        let now = SystemTime::now();
        for entry in dir.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.ends_with(".part") || self.is_ours(&name) {
                continue;
            }
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| now.duration_since(t).unwrap_or_default() >= STALE_PART);
            // A young file is never touched: its writer may be about to lock it.
            if !old {
                continue;
            }
            let Ok(file) = File::open(entry.path()) else {
                continue;
            };
            let lock = rustix::fs::FlockOperation::NonBlockingLockExclusive;
            if rustix::fs::flock(&file, lock).is_ok() {
                let _ = fs::remove_file(entry.path());
                tracing::info!(file = %name, "stale partial upload removed");
            }
        }
    }

    /// The program's file if it is cached (marking it used).
    pub(crate) fn get(&self, id: &ProgramId) -> Option<PathBuf> {
        let path = self.path(id);
        // Read-only: a program that runs cannot be opened for writing
        // (ETXTBSY); the owner may set its times through any descriptor.
        let file = File::open(&path).ok()?;
        let _ = file.set_modified(SystemTime::now());
        Some(path)
    }

    /// A slot to write program `id` of `size` bytes into, its size reserved
    /// under the cap (older programs evicted to make room); `abandoned` is
    /// called if the slot is dropped without being committed.
    pub(crate) fn reserve(
        self: &Arc<Self>,
        id: ProgramId,
        size: u64,
        abandoned: Box<dyn FnOnce() + Send>,
    ) -> io::Result<Slot> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        self.lock().reserved.insert(n, size);
        let mut slot = Slot {
            cache: Arc::clone(self),
            n,
            id,
            part: PathBuf::new(),
            file: None,
            // Set once the slot is made: a failure to make it is the
            // caller's to report.
            abandoned: None,
        };
        self.make_room()?;
        let part = self.dir.join(format!("{}.{}-{n}.part", id.hex(), self.tag));
        let file = File::options()
            .write(true)
            .create_new(true)
            .mode(0o700)
            .open(&part)?;
        slot.part = part;
        // Held while the file is written: other processes leave it alone.
        rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)?;
        slot.file = Some(file);
        slot.abandoned = Some(abandoned);
        Ok(slot)
    }

    /// Keeps `id` from eviction while the guard lives (its workers run).
    pub(crate) fn pin(self: &Arc<Self>, id: ProgramId) -> Pin {
        *self.lock().pinned.entry(id).or_default() += 1;
        Pin {
            cache: Arc::clone(self),
            id,
        }
    }

    /// Programs and other processes' partial uploads in the directory.
    fn list(&self) -> io::Result<Listing> {
        let mut listing = Listing::default();
        for entry in fs::read_dir(&self.dir)?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Ok(meta) = entry.metadata() else { continue };
            if name.ends_with(".bin") {
                let used = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                listing.programs.push((used, meta.len(), name));
            } else if name.ends_with(".part") && !self.is_ours(&name) {
                listing.others_partial += meta.len();
            }
        }
        Ok(listing)
    }

    /// Removes least recently used programs, none pinned, until what is
    /// reserved fits under the cap beside what is on disk.
    fn make_room(&self) -> io::Result<()> {
        self.sweep();
        let listing = self.list()?;
        let (pinned, reserved) = {
            let state = self.lock();
            let pinned: HashSet<String> = state
                .pinned
                .keys()
                .map(|id| format!("{}.bin", id.hex()))
                .collect();
            (pinned, state.reserved.values().sum::<u64>())
        };
        let gone = evictions(
            listing.programs,
            listing.others_partial,
            reserved,
            self.max,
            &pinned,
        )
        .ok_or_else(|| {
            io::Error::other(format!(
                "the cache cap of {} bytes (--cache-max) is taken by programs in use and \
                 uploads under way",
                self.max
            ))
        })?;
        for name in gone {
            let _ = fs::remove_file(self.dir.join(&name));
            tracing::info!(file = %name, "program evicted from the cache");
        }
        Ok(())
    }

    /// Bytes of programs in the cache now.
    pub(crate) fn bytes(&self) -> u64 {
        self.list()
            .map(|l| l.programs.iter().map(|p| p.1).sum())
            .unwrap_or(0)
    }

    /// The cache's directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }
}

/// The right to write one program, its size reserved; dropped unfinished,
/// it leaves nothing.
pub(crate) struct Slot {
    cache: Arc<ProgramCache>,
    /// The upload's number (its reservation).
    n: u64,
    id: ProgramId,
    part: PathBuf,
    file: Option<File>,
    abandoned: Option<Box<dyn FnOnce() + Send>>,
}

impl Slot {
    /// Makes the upload, verified by its receiver, the cached program:
    /// synced, closed (nothing writes it any more), renamed into place.
    pub(crate) fn commit(mut self) -> io::Result<PathBuf> {
        let file = self
            .file
            .take()
            .ok_or_else(|| io::Error::other("upload slot already closed"))?;
        file.sync_all()?;
        drop(file);
        let path = self.cache.path(&self.id);
        fs::rename(&self.part, &path)?;
        if let Ok(dir) = File::open(&self.cache.dir) {
            let _ = dir.sync_all();
        }
        self.part = PathBuf::new();
        self.abandoned = None;
        Ok(path)
    }
}

impl Write for Slot {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.file {
            Some(f) => f.write(buf),
            None => Err(io::Error::other("upload slot already closed")),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.file {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        drop(self.file.take());
        if !self.part.as_os_str().is_empty() {
            let _ = fs::remove_file(&self.part);
        }
        self.cache.lock().reserved.remove(&self.n);
        if let Some(abandoned) = self.abandoned.take() {
            abandoned();
        }
    }
}

/// Keeps a program in the cache while it lives.
pub(crate) struct Pin {
    cache: Arc<ProgramCache>,
    id: ProgramId,
}

impl Drop for Pin {
    fn drop(&mut self) {
        let mut state = self.cache.lock();
        if let Some(n) = state.pinned.get_mut(&self.id) {
            *n -= 1;
            if *n == 0 {
                state.pinned.remove(&self.id);
            }
        }
    }
}

#[cfg(test)]
mod tests;
