//! How the rest of the node reaches one connection: workers hand it finished
//! jobs, the daemon tells it to drain or stop. Everything goes through a
//! channel to the connection's driver (`conn::driver`), the only thread that writes
//! to its socket, and wakes it if it sleeps: nothing here does I/O on the
//! socket, and no lock is held across any.

use super::admission::Refused;
use super::memory::{Held, Memory};
use crate::programs::waiting::Waiter;
use crossbeam_channel::Sender;
use ppcore::wire::DoneJob;
use ppcore::wire::RunId;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// Wakes a connection's driver asleep in `mio` (the one waker both link
/// drivers use).
pub(crate) use ppcore::io_driver::Waker;

/// What the driver of a connection hears from the rest of the node.
pub(crate) enum ConnIn {
    /// A job of this connection finished; its result's bytes are counted
    /// against `--max-memory` until this is dropped.
    Finished(DoneJob, Held),
    /// A job of this connection is given back unrun (the node drains).
    GiveBack(u64, u32),
    /// A job of this connection was skipped (cancelled before it ran).
    Skipped(u64),
    /// The connection must close, and the peer be told why (it retries).
    Refuse(Refused),
    /// The node stops taking jobs.
    Drain,
    /// The node says goodbye.
    Stop,
    /// A shipped program is ready (its jobs) or refused (why).
    Program(
        ppcore::program::ProgramId,
        Result<Vec<ppcore::wire::JobInfo>, String>,
    ),
}

/// One connection, as workers and the daemon see it.
pub(crate) struct Conn {
    tx: Sender<ConnIn>,
    memory: Arc<Memory>,
    waker: Arc<Waker>,
    closed: AtomicBool,
    /// The peer proved the key: a client, not a stranger.
    pub(crate) authenticated: AtomicBool,
    /// Jobs of this connection queued or running here.
    active: AtomicU64,
    /// Cancelled jobs not started yet; emptied whenever `active` reaches 0,
    /// so late cancels cannot pile up.
    cancelled: Mutex<HashSet<u64>>,
    any_cancelled: AtomicBool,
    /// The journaled run the client named (`Resume`), once it has.
    pub(crate) run: OnceLock<RunId>,
    /// The client said goodbye: its run (if any) ends with it.
    pub(crate) goodbye: AtomicBool,
}

impl Conn {
    pub(crate) fn new(tx: Sender<ConnIn>, waker: Arc<Waker>, memory: Arc<Memory>) -> Self {
        Conn {
            tx,
            memory,
            waker,
            closed: AtomicBool::new(false),
            authenticated: AtomicBool::new(false),
            active: AtomicU64::new(0),
            cancelled: Mutex::new(HashSet::new()),
            any_cancelled: AtomicBool::new(false),
            run: OnceLock::new(),
            goodbye: AtomicBool::new(false),
        }
    }

    /// Whether the connection has ended: its queued jobs are skipped.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    pub(crate) fn mark_closed(&self) {
        self.closed.store(true, Ordering::Release);
    }

    fn tell(&self, msg: ConnIn) {
        // The driver is gone only once the connection closed: nobody waits.
        let _ = self.tx.send(msg);
        self.waker.wake();
    }

    /// A job's result, for the client.
    pub(crate) fn finished(&self, done: DoneJob) {
        let bytes = match &done.result {
            Ok(b) => b.len(),
            Err(e) => e.message.len(),
        };
        let held = self.memory.hold(bytes);
        self.tell(ConnIn::Finished(done, held));
    }

    /// A job given back unrun.
    pub(crate) fn give_back(&self, id: u64, attempt: u32) {
        self.tell(ConnIn::GiveBack(id, attempt));
    }

    /// A cancelled job skipped: its credit comes back.
    pub(crate) fn skipped(&self, id: u64) {
        self.tell(ConnIn::Skipped(id));
    }

    /// Tells the driver to close the connection with `reason` (the peer may
    /// retry later).
    pub(crate) fn refuse(&self, reason: Refused) {
        self.tell(ConnIn::Refuse(reason));
    }

    pub(crate) fn drain(&self) {
        self.tell(ConnIn::Drain);
    }

    pub(crate) fn stop(&self) {
        self.tell(ConnIn::Stop);
    }

    /// Whether jobs of this connection are queued or running here.
    pub(crate) fn has_active(&self) -> bool {
        self.active.load(Ordering::Acquire) > 0
    }

    /// A job of this connection was queued.
    pub(crate) fn begin(&self) {
        self.active.fetch_add(1, Ordering::AcqRel);
    }

    /// A job of this connection ended (ran, skipped or returned).
    pub(crate) fn end(&self) {
        if self.active.fetch_sub(1, Ordering::AcqRel) == 1
            && self.any_cancelled.swap(false, Ordering::AcqRel)
        {
            ppcore::sync::lock(&self.cancelled).clear();
        }
    }

    /// Notes that the client cancelled job `id`.
    pub(crate) fn cancel(&self, id: u64) {
        if self.active.load(Ordering::Acquire) == 0 {
            return; // nothing of ours is here: the job is done already
        }
        ppcore::sync::lock(&self.cancelled).insert(id);
        self.any_cancelled.store(true, Ordering::Release);
    }

    /// Whether job `id` was cancelled (and forgets it: each id runs once).
    pub(crate) fn cancelled(&self, id: u64) -> bool {
        if !self.any_cancelled.load(Ordering::Acquire) {
            return false;
        }
        let mut set = ppcore::sync::lock(&self.cancelled);
        set.remove(&id)
    }
}

impl crate::peer::Asker for Conn {
    fn finished(&self, done: DoneJob) {
        Conn::finished(self, done);
    }

    fn is_closed(&self) -> bool {
        Conn::is_closed(self)
    }
}

impl Waiter for Conn {
    /// The outcome of getting a shipped program ready.
    fn program(
        &self,
        id: ppcore::program::ProgramId,
        jobs: Result<Vec<ppcore::wire::JobInfo>, String>,
    ) {
        self.tell(ConnIn::Program(id, jobs));
    }
}
