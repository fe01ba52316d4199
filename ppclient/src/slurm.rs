//! The client's side of Slurm mode: the server's shared state as the
//! [`ppslurm::Client`] that Slurm mode asks (nodes up and down, waits on the
//! server's condvar, fails what is queued), and starting the nodes with it.
//! [`Slurm`] itself, its command lines and its driver are the `ppslurm` crate.

use crate::cluster::node::{NodeInfo, NodeState};
use crate::cluster::state::Core;
use ppcore::JobError;
use ppslurm::{Client, Launched, NodeCounts, Slurm, SlurmError};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// The nodes in `states` counted by state, beside `local_workers`.
fn counts(states: &[&NodeState], local_workers: usize) -> NodeCounts {
    let count = |f: fn(&NodeState) -> bool| states.iter().filter(|s| f(s)).count();
    NodeCounts {
        local_workers,
        nodes: states.len(),
        up: count(|s| matches!(s, NodeState::Up { .. })),
        down: count(|s| matches!(s, NodeState::Down { .. } | NodeState::Failed { .. })),
    }
}

fn node_counts(nodes: &[NodeInfo], local_workers: usize) -> NodeCounts {
    let states: Vec<&NodeState> = nodes.iter().map(|n| &n.state).collect();
    counts(&states, local_workers)
}

impl Client for Core {
    fn node_counts(&self) -> NodeCounts {
        node_counts(&self.nodes(), self.ncpus.load(Ordering::Acquire))
    }

    fn wait_nodes_until(&self, limit: Duration, done: &mut dyn FnMut(&NodeCounts) -> bool) -> bool {
        self.wait_nodes(limit, |nodes| {
            done(&node_counts(nodes, self.ncpus.load(Ordering::Acquire)))
        })
    }

    fn wake(&self) {
        self.contacted();
    }

    fn stopping(&self) -> bool {
        self.stopped()
    }

    fn fail_queued(&self, error: &JobError) {
        while let Some(task) = self.queue.try_pop() {
            task.abandon(error.clone());
        }
    }
}

/// Starts the nodes `slurm` says for the server of `core`, listening at
/// `listen`, with `secret` (its key file's text) for them.
pub(crate) fn start(
    slurm: &Slurm,
    secret: &[u8],
    listen: SocketAddr,
    core: &Arc<Core>,
) -> Result<Launched, SlurmError> {
    let client: Arc<dyn Client> = Arc::<Core>::clone(core);
    ppslurm::start(slurm, secret, listen, client)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slurm_counts_the_nodes_by_state() {
        let states = [
            NodeState::Up { workers: 2 },
            NodeState::Connecting,
            NodeState::Down {
                reason: ppcore::link::DownReason::NodeStopped,
            },
            NodeState::Failed {
                reason: ppcore::link::Refusal::NoKey,
            },
        ];
        let nodes: Vec<&NodeState> = states.iter().collect();
        let c = counts(&nodes, 0);
        assert_eq!((c.nodes, c.up, c.down), (4, 1, 2));
        assert!(!c.nobody_left());
        assert!(counts(&nodes[2..], 0).nobody_left());
        assert!(!counts(&nodes[2..], 1).nobody_left());
    }
}
