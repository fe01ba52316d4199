//! What the client knows of kept results besides the directory's rules
//! (`ppcore::values::Directory`): the values it holds itself, how to make
//! each lost one again, the references dropped since the last turn, and a
//! count of changes that fetches wait on.

use crate::jobs::task::{KeptSink, Remake, Task};
use ppcore::shared::{SharedId, SharedValue};
use ppcore::sync::lock;
use ppcore::values::Directory;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::Duration;

/// The client's kept results.
#[derive(Default)]
pub(crate) struct Values {
    /// Where each lies, and the jobs held for them.
    pub(crate) dir: Mutex<Directory<Arc<dyn Task>, String>>,
    /// The kept values in this process, by id.
    here: Mutex<HashMap<SharedId, Arc<SharedValue>>>,
    /// How to make each value again, for those made on nodes.
    recipes: Mutex<HashMap<SharedId, Remake>>,
    /// Values whose last reference was dropped: forgotten at the next turn
    /// (a drop may happen under any lock, so it only notes the id).
    gone: Mutex<Vec<SharedId>>,
    has_gone: AtomicBool,
    /// Counts changes; fetches wait on it.
    changes: (Mutex<u64>, Condvar),
    /// Where jobs whose results are kept report (set once by the core).
    pub(crate) sink: OnceLock<Arc<dyn KeptSink>>,
}

impl Values {
    /// Kept value `id`, if this process holds it.
    pub(crate) fn here(&self, id: &SharedId) -> Option<Arc<SharedValue>> {
        lock(&self.here).get(id).cloned()
    }

    pub(crate) fn put_here(&self, id: SharedId, value: Arc<SharedValue>) {
        lock(&self.here).insert(id, value);
    }

    /// Bytes of the kept values this process holds (the dashboard's).
    #[allow(dead_code)]
    pub(crate) fn bytes_here(&self) -> u64 {
        lock(&self.here).values().map(|v| v.len() as u64).sum()
    }

    pub(crate) fn set_recipe(&self, id: SharedId, remake: Remake) {
        lock(&self.recipes).insert(id, remake);
    }

    pub(crate) fn recipe(&self, id: &SharedId) -> Option<Remake> {
        lock(&self.recipes).get(id).cloned()
    }

    /// The last reference to `id` was dropped.
    pub(crate) fn note_gone(&self, id: SharedId) {
        lock(&self.gone).push(id);
        self.has_gone.store(true, Ordering::Release);
    }

    /// The ids dropped since the last call; their values here and their
    /// recipes go now (the directory's entries are the caller's).
    pub(crate) fn take_gone(&self) -> Vec<SharedId> {
        if !self.has_gone.load(Ordering::Acquire) || !self.has_gone.swap(false, Ordering::AcqRel) {
            return Vec::new();
        }
        let gone = std::mem::take(&mut *lock(&self.gone));
        let mut here = lock(&self.here);
        let mut recipes = lock(&self.recipes);
        for id in &gone {
            here.remove(id);
            recipes.remove(id);
        }
        gone
    }

    /// Drops the kept values held here that no handle or `Shared` holds any
    /// more (a recipe may still refer to them: they count as lost then, and
    /// are made again if needed); their ids.
    pub(crate) fn drop_unheld(&self) -> Vec<SharedId> {
        let mut here = lock(&self.here);
        let ids: Vec<SharedId> = here
            .keys()
            .filter(|id| !ppcore::shared::is_held(id))
            .copied()
            .collect();
        for id in &ids {
            here.remove(id);
        }
        ids
    }

    /// The count of changes so far.
    pub(crate) fn version(&self) -> u64 {
        *lock(&self.changes.0)
    }

    /// Something changed: fetches look again.
    pub(crate) fn changed(&self) {
        let mut n = lock(&self.changes.0);
        *n = n.wrapping_add(1);
        self.changes.1.notify_all();
    }

    /// Waits until a change after `seen`, or `limit`.
    pub(crate) fn wait_change(&self, seen: u64, limit: Duration) {
        let n = lock(&self.changes.0);
        let _ = self
            .changes
            .1
            .wait_timeout_while(n, limit, |n| *n == seen)
            .map_err(|e| e.into_inner());
    }
}
