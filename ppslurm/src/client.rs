//! [`Client`]: what Slurm mode needs of the client whose nodes it starts,
//! and [`NodeCounts`], what it reads of the client's nodes.

use ppcore::JobError;
use std::time::Duration;

/// The client's workers and nodes, counted by the nodes' state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeCounts {
    /// The client's local worker threads.
    pub local_workers: usize,
    /// Every node the client knows.
    pub nodes: usize,
    /// Nodes connected and taking jobs.
    pub up: usize,
    /// Nodes unreachable for now, or refused for good.
    pub down: usize,
}

impl NodeCounts {
    /// Whether nobody is left to run a job: no local workers, and every node
    /// (if any) down.
    pub fn nobody_left(&self) -> bool {
        self.local_workers == 0 && self.down == self.nodes
    }
}

/// What Slurm mode needs of the client whose nodes it starts; `ppclient`'s
/// server implements it and hands itself to [`start`](crate::launch::start).
///
/// The waits are on the client's own condvar, woken by every change of a
/// node's state: Slurm mode polls none of the client's state.
pub trait Client: Send + Sync {
    /// The client's workers and nodes now.
    fn node_counts(&self) -> NodeCounts;

    /// Waits until `done` holds of the counts (asked at once, then again
    /// after every change of a node's state and every [`Client::wake`]),
    /// the client stops, or `limit` passes; whether it holds.
    fn wait_nodes_until(&self, limit: Duration, done: &mut dyn FnMut(&NodeCounts) -> bool) -> bool;

    /// Wakes every [`Client::wait_nodes_until`] to ask its `done` again:
    /// something else it looks at changed.
    fn wake(&self);

    /// Whether the client is stopping.
    fn stopping(&self) -> bool;

    /// Fails every job waiting in the client's queue with `error`.
    fn fail_queued(&self, error: &JobError);
}
