//! What the client counts of one node's offer: the jobs with a request it
//! sent there hold their request in a ledger of the node's offer until
//! they end, so that a job goes only where its whole request fits now.
//! The node keeps its own ledger too (it makes a job wait, or refuses
//! one that can never fit): this one only keeps the client from sending
//! jobs that would wait there while another node is free.

use crate::jobs::queue_key::QueueKey;
use crate::jobs::task::Task;
use ppcore::resources::{Held, Ledger, Offer};
use ppcore::{Lanes, Wake};
use std::collections::HashMap;
use std::sync::Arc;

/// One node's ledger, as its driver keeps it.
pub(crate) struct NodeFit {
    ledger: Ledger,
    /// Jobs sent there with a request, by id, and what each holds.
    held: HashMap<u64, (Arc<dyn Task>, Held)>,
}

impl NodeFit {
    /// Nothing held of `offer`.
    pub(crate) fn new(offer: Offer) -> Self {
        NodeFit {
            ledger: Ledger::new(offer),
            held: HashMap::new(),
        }
    }

    /// Takes up to `room` queued jobs with a request that fits now, each
    /// holding it, in queue order; jobs of the kinds `runs` refuses and
    /// requests that do not fit keep their places.
    pub(crate) fn take(
        &mut self,
        queue: &Lanes<Arc<dyn Task>, QueueKey>,
        mut runs: impl FnMut(&(&'static str, &'static str)) -> bool,
        room: usize,
        watcher: &Arc<dyn Wake>,
    ) -> Vec<Arc<dyn Task>> {
        // Jobs that ended while there (timed out, cancelled) hold nothing.
        let ended: Vec<u64> = self
            .held
            .iter()
            .filter(|(_, (task, _))| task.ended())
            .map(|(id, _)| *id)
            .collect();
        for id in ended {
            self.release(id);
        }
        let mut out = Vec::new();
        while out.len() < room {
            let ledger = &self.ledger;
            let got = queue.pop_batch(
                |(kind, request)| request.as_ref().is_some_and(|r| ledger.fits(r, 0)) && runs(kind),
                1,
                Some(watcher),
            );
            let Some(task) = got.into_iter().next() else {
                break;
            };
            let Some(held) = task.request().and_then(|r| self.ledger.hold(r)) else {
                // Fits: the filter said so under the same ledger.
                out.push(task);
                continue;
            };
            self.held.insert(task.id(), (Arc::clone(&task), held));
            out.push(task);
        }
        out
    }

    /// What the jobs sent there hold now, `in_flight` of them in all: those
    /// with no request hold one cpu each while they run, and those past
    /// the node's cpus wait there (its prefetch) holding none.
    pub(crate) fn in_use(&self, in_flight: usize) -> crate::jobs::recorder::InUse {
        let (cpus, memory, named) = self.ledger.in_use();
        let plain = in_flight.saturating_sub(self.held.len());
        let plain = u32::try_from(plain).unwrap_or(u32::MAX);
        let free = self.ledger.offer().cpus().saturating_sub(cpus);
        (cpus + plain.min(free), memory, named)
    }

    /// Job `id` ended there (answered, handed back): its hold is free.
    pub(crate) fn release(&mut self, id: u64) {
        if let Some((_, held)) = self.held.remove(&id) {
            self.ledger.release(held);
        }
    }
}
