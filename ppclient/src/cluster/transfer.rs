//! Moving a kept value node to node (PROTOCOL.md, "Peer sessions"): the
//! directory says value V on node A is to go to node B, where a job that
//! takes it will run. The client asks A to export V (`KeepOp::Export`),
//! then B to pull it from A (`KeepOp::Pull`, with the address B reaches A
//! at); B fetches it from A directly and keeps it, and jobs that name it
//! there wait for it. The bytes never pass through the client. If B cannot
//! get it (A unreachable from B, B full), V comes through the client
//! instead, as it does for nodes peers cannot reach.

use crate::cluster::node::NodeRecord;
use crate::cluster::state::Core;
use crate::jobs::ctx::RunCtx;
use crate::jobs::task::{inner_id, Dispatch, Task};
use crate::jobs::timer::Expire;
use ppcore::shared::{SharedId, SharedValue};
use ppcore::sync::lock;
use ppcore::wire::KeepOp;
use ppcore::{ErrorKind, JobError};
use serde_bytes::ByteBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

impl Core {
    /// Moves kept value `id` from node `from` to node `to`, node to node,
    /// or through the client if `to` cannot reach `from`.
    pub(crate) fn transfer(self: &Arc<Self>, id: SharedId, from: &str, to: &str) {
        let (Some(source), Some(target)) = (self.link(from), self.link(to)) else {
            return self.relay(id);
        };
        let Some(addr) = source.peer_addr_for(&target) else {
            return self.relay(id);
        };
        let task = Arc::new(Transfer {
            id: inner_id(),
            value: id,
            core: Arc::downgrade(self),
            target,
            addr,
            pulling: AtomicBool::new(false),
            over: AtomicBool::new(false),
        });
        source.pin(task);
    }

    /// Value `id` comes through the client from now on.
    fn relay(self: &Arc<Self>, id: SharedId) {
        let moves = lock(&self.values.dir).transfer_failed(&id);
        self.apply(moves);
    }
}

/// One move: the export on the node that holds the value, then the pull on
/// the node that is to hold it. Each takes a job's credit on its link.
struct Transfer {
    id: u64,
    value: SharedId,
    core: Weak<Core>,
    /// The node that is to hold it.
    target: Arc<NodeRecord>,
    /// Where the target reaches the node that holds it.
    addr: String,
    /// The export is done: the pull is under way.
    pulling: AtomicBool,
    over: AtomicBool,
}

impl Transfer {
    /// The move ended: `Ok(Some(len))` kept on the target, `Ok(None)` with
    /// bytes: it came to the client instead (the target had no room).
    fn end(&self, outcome: Result<(ByteBuf, Option<u64>), JobError>) {
        if self.over.swap(true, Ordering::AcqRel) {
            return;
        }
        let Some(core) = self.core.upgrade() else {
            return;
        };
        let moves = match outcome {
            Ok((_, Some(len))) => {
                self.target.counters.transferred(len);
                let to = self.target.name.clone();
                lock(&core.values.dir).kept_on(&self.value, to, len)
            }
            Ok((bytes, None)) => {
                let value = SharedValue::kept_listed(self.value, bytes.into_vec(), None);
                core.values.put_here(self.value, value);
                lock(&core.values.dir).in_client(&self.value)
            }
            Err(e) => {
                tracing::info!(value = %self.value, to = %self.target.name, "transfer failed, through the client instead: {e}");
                lock(&core.values.dir).transfer_failed(&self.value)
            }
        };
        core.apply(moves);
    }

    /// The export failed on the node that held the value: lost there
    /// (`NodeLost`), or it cannot be moved.
    fn export_failed(&self, node: &str, err: JobError) {
        if err.kind != ErrorKind::NodeLost {
            return self.end(Err(err));
        }
        if self.over.swap(true, Ordering::AcqRel) {
            return;
        }
        if let Some(core) = self.core.upgrade() {
            let moves = lock(&core.values.dir).fetch_failed(&self.value, &node.to_owned());
            core.apply(moves);
        }
    }
}

impl Expire for Transfer {
    fn expire(self: Arc<Self>) {}
}

impl Task for Transfer {
    fn id(&self) -> u64 {
        self.id
    }

    fn job(&self) -> (&'static str, &'static str) {
        ("", "")
    }

    fn timeout(&self) -> Option<Duration> {
        None
    }

    fn run_local(self: Arc<Self>, _ctx: &RunCtx) {
        self.end(Err(JobError::new(
            ErrorKind::NodeLost,
            "a transfer runs on nodes only",
        )));
    }

    fn dispatch(&self, _ctx: &RunCtx, _now: Instant) -> Result<Dispatch, Option<JobError>> {
        if self.over.load(Ordering::Acquire) {
            return Err(None);
        }
        let keep = match self.pulling.load(Ordering::Acquire) {
            false => KeepOp::Export(self.value),
            true => KeepOp::Pull {
                value: self.value,
                from: self.addr.clone(),
            },
        };
        Ok(Dispatch {
            attempt: 1,
            args: ByteBuf::new(),
            shared: Vec::new(),
            kept: Vec::new(),
            keep: Some(keep),
            journal: None,
        })
    }

    fn complete(
        self: Arc<Self>,
        result: Result<ByteBuf, JobError>,
        node: &str,
        kept: Option<u64>,
    ) -> Option<Arc<dyn Task>> {
        match (self.pulling.load(Ordering::Acquire), result) {
            // Exported: now the target pulls it.
            (false, Ok(_)) => {
                self.pulling.store(true, Ordering::Release);
                let target = Arc::clone(&self.target);
                target.pin(self);
            }
            (false, Err(e)) => self.export_failed(node, e),
            (true, result) => self.end(result.map(|bytes| (bytes, kept))),
        }
        None
    }

    fn retry(self: Arc<Self>, _node: &str, _lost: bool) -> Option<Arc<dyn Task>> {
        self.end(Err(JobError::new(ErrorKind::NodeLost, "handed back")));
        None
    }

    fn abandon(self: Arc<Self>, err: JobError) {
        self.end(Err(err));
    }

    fn ended(&self) -> bool {
        self.over.load(Ordering::Acquire)
    }

    fn group(&self) -> Option<usize> {
        None
    }

    fn cancel(self: Arc<Self>) -> bool {
        false
    }

    fn keeps(&self) -> Option<SharedId> {
        // The pull's answer: the target keeps the value for this client.
        self.pulling.load(Ordering::Acquire).then_some(self.value)
    }

    fn is_fetch(&self) -> bool {
        true
    }
}
