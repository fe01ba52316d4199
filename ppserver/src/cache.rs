//! The node's cache of shipped programs: one file per program, named by its
//! hash (never by anything a peer sent), in a directory private to the node's
//! user, within a size cap (least recently used evicted first, never one in
//! use), with one upload at a time per hash: a second client offering the same
//! program waits for the first upload instead of sending it again.

use ppcore::program::ProgramId;
use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

/// Where a node keeps programs when `--cache-dir` is not given.
pub(crate) fn default_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("ppserver").join("programs"))
}

/// What [`ProgramCache::claim`] found.
pub(crate) enum Claim {
    /// The program is here.
    Ready(PathBuf),
    /// Nobody is sending it: the caller uploads into this slot.
    Upload(Slot),
    /// Another client is sending it now: wait with [`ProgramCache::wait_ready`].
    Busy,
}

#[derive(Default)]
struct State {
    uploading: HashSet<ProgramId>,
    /// Programs with running workers: never evicted.
    pinned: HashMap<ProgramId, usize>,
}

/// A directory of programs within a byte cap.
pub(crate) struct ProgramCache {
    dir: PathBuf,
    max: u64,
    state: Mutex<State>,
    changed: Condvar,
}

impl ProgramCache {
    /// Opens (creating, mode 0700) the cache in `dir`.
    pub(crate) fn open(dir: PathBuf, max: u64) -> io::Result<Arc<Self>> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))?;
        // Half-written uploads of an earlier run are never trusted.
        for entry in fs::read_dir(&dir)?.flatten() {
            if entry.file_name().to_string_lossy().ends_with(".part") {
                let _ = fs::remove_file(entry.path());
            }
        }
        Ok(Arc::new(ProgramCache {
            dir,
            max,
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
        }))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn path(&self, id: &ProgramId) -> PathBuf {
        self.dir.join(format!("{}.bin", id.hex()))
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

    /// The program, or the right to upload it, or word that someone else is.
    pub(crate) fn claim(self: &Arc<Self>, id: ProgramId) -> io::Result<Claim> {
        if let Some(path) = self.get(&id) {
            return Ok(Claim::Ready(path));
        }
        if !self.lock().uploading.insert(id) {
            return Ok(Claim::Busy);
        }
        let part = self.dir.join(format!("{}.part", id.hex()));
        let file = File::options()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o700)
            .open(&part);
        match file {
            Ok(file) => Ok(Claim::Upload(Slot {
                cache: Arc::clone(self),
                id,
                part,
                file: Some(file),
            })),
            Err(e) => {
                self.release(&id);
                Err(e)
            }
        }
    }

    /// Waits up to `limit` for another client's upload of `id` to end: the
    /// file if it succeeded, `None` if it failed or took too long.
    pub(crate) fn wait_ready(&self, id: &ProgramId, limit: Duration) -> Option<PathBuf> {
        let deadline = Instant::now() + limit;
        let mut state = self.lock();
        while state.uploading.contains(id) {
            let left = deadline.checked_duration_since(Instant::now())?;
            state = self
                .changed
                .wait_timeout(state, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        drop(state);
        self.get(id)
    }

    /// Keeps `id` from eviction while the guard lives (its workers run).
    pub(crate) fn pin(self: &Arc<Self>, id: ProgramId) -> Pin {
        *self.lock().pinned.entry(id).or_default() += 1;
        Pin {
            cache: Arc::clone(self),
            id,
        }
    }

    fn release(&self, id: &ProgramId) {
        self.lock().uploading.remove(id);
        self.changed.notify_all();
    }

    /// Removes least recently used programs, none pinned, until `incoming`
    /// more bytes fit under the cap.
    fn make_room(&self, incoming: u64) -> io::Result<()> {
        let pinned: HashSet<String> = self
            .lock()
            .pinned
            .keys()
            .map(|id| format!("{}.bin", id.hex()))
            .collect();
        let mut files = Vec::new();
        for entry in fs::read_dir(&self.dir)?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Ok(meta) = entry.metadata() else { continue };
            if name.ends_with(".bin") {
                let used = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                files.push((used, meta.len(), name));
            }
        }
        let mut total: u64 = files.iter().map(|f| f.1).sum();
        files.sort();
        for (_, len, name) in files {
            if total.saturating_add(incoming) <= self.max {
                break;
            }
            if !pinned.contains(&name) && fs::remove_file(self.dir.join(&name)).is_ok() {
                total -= len;
            }
        }
        if total.saturating_add(incoming) > self.max {
            return Err(io::Error::other(format!(
                "the cache cap of {} bytes is taken by programs in use",
                self.max
            )));
        }
        Ok(())
    }

    /// Bytes of programs in the cache now.
    pub(crate) fn bytes(&self) -> u64 {
        fs::read_dir(&self.dir)
            .map(|dir| {
                dir.flatten()
                    .filter(|e| e.file_name().to_string_lossy().ends_with(".bin"))
                    .filter_map(|e| e.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0)
    }

    /// The cache's directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }
}

/// The right to write one program; dropped unfinished, it leaves nothing.
pub(crate) struct Slot {
    cache: Arc<ProgramCache>,
    id: ProgramId,
    part: PathBuf,
    file: Option<File>,
}

impl Slot {
    /// Makes the upload, verified by its receiver, the cached program.
    pub(crate) fn commit(mut self) -> io::Result<PathBuf> {
        if let Some(file) = self.file.take() {
            file.sync_all()?;
        }
        let len = fs::metadata(&self.part)?.len();
        self.cache.make_room(len)?;
        let path = self.cache.path(&self.id);
        fs::rename(&self.part, &path)?;
        self.cache.release(&self.id);
        self.part = PathBuf::new();
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
        if !self.part.as_os_str().is_empty() {
            let _ = fs::remove_file(&self.part);
            self.cache.release(&self.id);
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
