//! Kept values spilled to disk (PROTOCOL.md, "Kept results: the node's
//! rules"), as plain state of one connection: which of its kept values lie
//! in the driver's spill files, which results wait for their write, and
//! what the driver is to write, read back or delete. The files are the
//! driver's (I/O); this only decides and remembers.
//!
//! A result to keep that does not fit the memory room goes to disk if the
//! spill room (`--spill-max`, as the driver last gave it) takes it: the
//! link hands out [`NodeAction::Spill`] and holds the job's answer (and
//! its credit) until the driver reports the write. Written, it is a kept
//! value like the others (`kept: Some(len)`); failed, the bytes come back
//! and the result goes to the client in full. While the write is under way
//! the value counts as pending, so jobs that wait for it stay parked.

use super::events::NodeAction;
use crate::job::shared::SharedId;
use crate::wire::messages::DoneJob;
use serde_bytes::ByteBuf;
use std::collections::HashMap;

/// The spilled values of one connection and the work on them.
#[derive(Debug, Default)]
pub(crate) struct Spills {
    /// What the spill directory may still take; 0 turns spill off.
    room: u64,
    /// Values in spill files, with their lengths.
    on_disk: HashMap<SharedId, u64>,
    /// Finished jobs whose kept result is being written, by value.
    writing: HashMap<SharedId, (DoneJob, u64)>,
    /// What the driver is to do, in order.
    out: Vec<NodeAction>,
    /// Files to delete, gathered into one action.
    drop: Vec<SharedId>,
}

impl Spills {
    /// The room the driver's spill directory has now.
    pub(crate) fn set_room(&mut self, room: u64) {
        self.room = room;
    }

    /// Whether value `id` lies in a spill file.
    pub(crate) fn has(&self, id: &SharedId) -> bool {
        self.on_disk.contains_key(id)
    }

    /// Spilled values.
    pub(crate) fn len(&self) -> usize {
        self.on_disk.len()
    }

    /// Starts the write of `done`'s result as `value` if the spill room
    /// takes it; gives `done` back otherwise.
    pub(crate) fn try_write(&mut self, value: SharedId, mut done: DoneJob) -> Option<DoneJob> {
        let len = match &done.result {
            Ok(bytes) if self.room > 0 && bytes.len() as u64 <= self.room => bytes.len() as u64,
            _ => return Some(done),
        };
        let bytes = std::mem::replace(&mut done.result, Ok(ByteBuf::new()));
        self.room -= len;
        self.writing.insert(value, (done, len));
        let bytes = bytes.unwrap_or_default().into_vec();
        self.out.push(NodeAction::Spill { id: value, bytes });
        None
    }

    /// The driver wrote value `id` (or failed to, and gives its bytes
    /// back): the job's answer, if it waited here: kept (`kept: Some`), or
    /// the result in full.
    pub(crate) fn written(&mut self, id: SharedId, result: Result<(), Vec<u8>>) -> Option<DoneJob> {
        let (mut done, len) = self.writing.remove(&id)?;
        match result {
            Ok(()) => {
                self.on_disk.insert(id, len);
                done.kept = Some(len);
            }
            Err(bytes) => done.result = Ok(ByteBuf::from(bytes)),
        }
        Some(done)
    }

    /// Fetch `fetch` (attempt `attempt`) of spilled value `value`: the
    /// driver reads it back.
    pub(crate) fn read_back(&mut self, fetch: u64, attempt: u32, value: SharedId) {
        self.out.push(NodeAction::ReadBack {
            value,
            fetch,
            attempt,
        });
    }

    /// Forgets spilled value `id` (dropped, replaced, or lost): its file
    /// goes. True if it was spilled.
    pub(crate) fn forget(&mut self, id: &SharedId) -> bool {
        let had = self.on_disk.remove(id).is_some();
        if had {
            self.drop.push(*id);
        }
        had
    }

    /// What the driver is to do now.
    pub(crate) fn take_actions(&mut self) -> Vec<NodeAction> {
        let mut out = std::mem::take(&mut self.out);
        if !self.drop.is_empty() {
            out.push(NodeAction::DropSpilled(std::mem::take(&mut self.drop)));
        }
        out
    }
}
