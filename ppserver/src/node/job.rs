//! A job queued on the node: what a worker needs to run it, where its
//! result goes, and the memory it holds until it ends.

use super::handle::Conn;
use super::memory::Held;
use super::runs::Journaled;
use crate::isolate::IsolatedJob;
use crate::programs::program::Program;
use ppcore::resources::Request;
use ppcore::shared::SharedValue;
use ppcore::wire::RunJob;
use ppcore::JobError;
use serde_bytes::ByteBuf;
use std::sync::Arc;

/// A job waiting for a worker.
pub(crate) struct NodeJob {
    pub(crate) id: u64,
    pub(crate) attempt: u32,
    pub(crate) name: String,
    pub(crate) run: fn(Vec<u8>) -> Result<Vec<u8>, JobError>,
    pub(crate) args: ByteBuf,
    pub(crate) out: Arc<Conn>,
    /// The shipped program that runs it; `None`: a built-in job (`run`).
    pub(crate) program: Option<Arc<Program>>,
    /// The shared values its arguments name, held until it ends (the
    /// node's cache may evict them meanwhile).
    pub(crate) shared: Vec<Arc<SharedValue>>,
    /// Its bytes, counted against `--max-memory` while it waits or runs.
    pub(crate) held: Held,
    /// Its result is kept here (jobs waiting for it may follow at once).
    pub(crate) keeps: bool,
    /// Its run, if its client is journaled: it runs on should the client
    /// vanish, and its result is kept until recorded.
    pub(crate) journal: Option<Journaled>,
    /// What it asks for beyond one cpu (`RunJob.request`).
    pub(crate) request: Option<Arc<Request>>,
}

impl NodeJob {
    /// Whether nobody is waiting for it any more: its client left, and
    /// its run (if any) is not kept.
    pub(crate) fn abandoned(&self) -> bool {
        self.out.is_closed() && !self.journal.as_ref().is_some_and(Journaled::wanted)
    }
}

impl IsolatedJob for NodeJob {
    fn id(&self) -> u64 {
        self.id
    }

    fn conn_key(&self) -> usize {
        Arc::as_ptr(&self.out) as usize
    }

    fn frame(&self) -> RunJob {
        RunJob {
            id: self.id,
            attempt: self.attempt,
            name: self.name.clone(),
            args: self.args.clone(),
            program: None,
            shared: self.shared.iter().map(|v| v.id()).collect(),
            keep: None,
            journal: None,
            request: None,
        }
    }

    fn shared(&self) -> &[Arc<SharedValue>] {
        &self.shared
    }

    fn called_off(&self) -> bool {
        self.abandoned() || self.out.cancelled(self.id)
    }
}
