//! One connection's spill files: the I/O half of spill to disk (the link
//! decides, `ppcore`'s node link `spill`; the node holds the directory and
//! the budget, `node::spill`). Writes and reads are synchronous, in the
//! connection's driver thread: each file is one value, and all of them
//! together are bounded by `--spill-max`. A file that fails to write gives
//! its bytes back (the result goes to the client in full); one that fails
//! to read back (missing, corrupt) is deleted and its value reported lost,
//! never handed out. Every file goes when the connection ends.

use crate::node::spill::file;
use crate::node::spill::Spill;
use ppcore::shared::{SharedId, SharedValue};
use std::collections::HashMap;
use std::sync::Arc;

/// The spill files of one connection, by value, with their file bytes.
pub(super) struct Spilled {
    spill: Arc<Spill>,
    conn: u64,
    files: HashMap<SharedId, u64>,
}

impl Spilled {
    pub(super) fn new(spill: Arc<Spill>, conn: u64) -> Self {
        Spilled {
            spill,
            conn,
            files: HashMap::new(),
        }
    }

    /// The room the node's spill directory has now.
    pub(super) fn room(&self) -> u64 {
        self.spill.room()
    }

    /// Writes value `id`; its bytes back if that failed (no room, a full
    /// disk, any error).
    pub(super) fn write(&mut self, id: SharedId, bytes: Vec<u8>) -> Result<(), Vec<u8>> {
        self.remove(&id);
        let size = file::HEADER + bytes.len() as u64;
        let Some(path) = self.spill.path(self.conn, &id) else {
            return Err(bytes);
        };
        if !self.spill.try_reserve(size) {
            return Err(bytes);
        }
        let written = (self.spill.make_ready()).and_then(|()| file::write(&path, &id, &bytes));
        match written {
            Ok(()) => {
                self.files.insert(id, size);
                Ok(())
            }
            Err(e) => {
                self.spill.release(size);
                tracing::warn!(value = %id, "cannot spill a kept value: {e}");
                Err(bytes)
            }
        }
    }

    /// Value `id` read back and checked; `None` (and its file deleted) if
    /// it is not intact.
    pub(super) fn read(&mut self, id: &SharedId) -> Option<Vec<u8>> {
        let path = self.spill.path(self.conn, id)?;
        if !self.files.contains_key(id) {
            return None;
        }
        self.spill.note_read();
        match file::read(&path, id) {
            Ok(bytes) => Some(bytes),
            Err(e) => {
                tracing::warn!(value = %id, "spilled value lost: {e}");
                self.remove(id);
                None
            }
        }
    }

    /// Deletes the file of `id`, if there is one.
    pub(super) fn remove(&mut self, id: &SharedId) {
        if let Some(size) = self.files.remove(id) {
            if let Some(path) = self.spill.path(self.conn, id) {
                let _ = std::fs::remove_file(path);
            }
            self.spill.release(size);
        }
    }

    /// The values `ids` names, spilled ones read back and the rest from
    /// `rest` (the node's store and the link's memory said which lack);
    /// or the ids lacking, a spilled value that did not read back among them.
    pub(super) fn values_or(
        &mut self,
        ids: &[SharedId],
        read: &mut HashMap<SharedId, Arc<SharedValue>>,
        rest: impl FnOnce(&[SharedId]) -> Result<Vec<Arc<SharedValue>>, Vec<SharedId>>,
    ) -> Result<Vec<Arc<SharedValue>>, Vec<SharedId>> {
        let ours = |id: &SharedId| read.contains_key(id) || self.files.contains_key(id);
        if !ids.iter().any(ours) {
            return rest(ids);
        }
        let mut lost = Vec::new();
        for id in ids {
            if read.contains_key(id) || !self.files.contains_key(id) {
                continue;
            }
            match self.read(id) {
                Some(bytes) => {
                    read.insert(*id, SharedValue::kept(*id, bytes));
                }
                None => lost.push(*id),
            }
        }
        let others: Vec<SharedId> = (ids.iter())
            .filter(|id| !read.contains_key(id) && !lost.contains(id))
            .copied()
            .collect();
        let mut found = match others.is_empty() {
            true => Vec::new(),
            false => match rest(&others) {
                Ok(found) => found,
                Err(missing) => {
                    lost.extend(missing);
                    Vec::new()
                }
            },
        }
        .into_iter();
        if !lost.is_empty() {
            return Err(lost);
        }
        let values = ids.iter().map(|id| match read.get(id) {
            Some(v) => Some(Arc::clone(v)),
            None => found.next(),
        });
        values.collect::<Option<Vec<_>>>().ok_or(others)
    }
}

impl Drop for Spilled {
    fn drop(&mut self) {
        let ids: Vec<SharedId> = self.files.keys().copied().collect();
        ids.iter().for_each(|id| self.remove(id));
    }
}
