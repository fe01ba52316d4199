//! The bounded wait of a job for a free worker where its inputs lie
//! (issue 29, placement by locality). A job whose kept inputs all lie at
//! rest on node N is queued for N alone while a worker is free there
//! (`NodeRecord::pin_near`). If none frees up within [`locality_wait`],
//! it is placed on the node with the most free workers instead, and its
//! inputs move there (node to node where they can); if no node has a free
//! worker either, it goes to N and waits there.
//!
//! How long: about the time its inputs take to move. Waiting that long for
//! a slot on N costs no more than moving them, and a slot that frees up
//! sooner starts the job at once; waiting longer would only leave other
//! workers idle. The move is reckoned at 1 GB/s (a 10 Gbit/s network;
//! loopback is faster), with a floor of 2 ms (a move's own round trips:
//! the export, the pull's handshake) and a cap of 1 s.

use crate::cluster::node::NodeRecord;
use crate::cluster::state::Core;
use crate::jobs::task::Task;
use crate::jobs::timer::Expire;
use ppcore::sync::lock;
use std::sync::{Arc, Weak};
use std::time::Duration;

/// The floor and the cap of the wait, and the rate a move is reckoned at.
const WAIT_FLOOR: Duration = Duration::from_millis(2);
const WAIT_CAP: Duration = Duration::from_secs(1);
const MOVE_BYTES_PER_S: f64 = 1e9;

/// How long a job whose inputs take `bytes` waits for a free worker where
/// they lie before it is placed elsewhere.
pub(crate) fn locality_wait(bytes: u64) -> Duration {
    Duration::from_secs_f64(bytes as f64 / MOVE_BYTES_PER_S).clamp(WAIT_FLOOR, WAIT_CAP)
}

impl Core {
    /// Queues `task` for `record` while a worker is free there, within its
    /// bounded wait.
    pub(crate) fn near(self: &Arc<Self>, record: &Arc<NodeRecord>, task: Arc<dyn Task>) {
        let bytes = lock(&self.values.dir).bytes_of(&task.inputs());
        let wait = Arc::new(NearWait {
            job: task.id(),
            record: Arc::downgrade(record),
            core: Arc::downgrade(self),
        });
        self.ctx.arm(
            Arc::clone(&wait) as Arc<dyn Expire>,
            Some(locality_wait(bytes)),
        );
        record.pin_near(task, wait);
    }

    /// `task` waited in vain for a worker on `from`: placed on the node
    /// with the most free workers (its inputs move there), or sent to
    /// `from` to wait there if no node has one.
    fn place_away(self: &Arc<Self>, task: Arc<dyn Task>, from: &Arc<NodeRecord>) {
        let job = task.job();
        let best = (self.links().into_iter())
            .filter(|r| r.name != from.name)
            .filter_map(|r| {
                let view = r.view();
                let idle = view.workers().saturating_sub(r.meter.in_flight() as usize);
                (idle > 0 && view.can_run(job) == Some(true)).then_some((idle, r))
            })
            .max_by_key(|(idle, _)| *idle);
        match best {
            Some((_, to)) if !self.stopped() => {
                tracing::debug!(job = task.id(), from = %from.name, to = %to.name, "no free worker where the inputs lie: placed elsewhere");
                let (id, inputs) = (task.id(), task.inputs());
                let moves = lock(&self.values.dir).place_on(id, task, inputs, to.name.clone());
                self.apply(moves);
            }
            _ => from.pin(task),
        }
    }
}

/// The timer of one job's wait.
struct NearWait {
    job: u64,
    record: Weak<NodeRecord>,
    core: Weak<Core>,
}

impl Expire for NearWait {
    fn expire(self: Arc<Self>) {
        let (Some(record), Some(core)) = (self.record.upgrade(), self.core.upgrade()) else {
            return;
        };
        // Gone already if a worker took it (or it was cancelled).
        if let Some(task) = record.take_near_id(self.job) {
            core.place_away(task, &record);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_waits_for_a_slot_about_as_long_as_its_inputs_take_to_move() {
        assert_eq!(locality_wait(0), WAIT_FLOOR);
        assert_eq!(
            locality_wait(100 << 20),
            Duration::from_secs_f64(0.104857600)
        );
        assert_eq!(locality_wait(u64::MAX), WAIT_CAP);
    }
}
