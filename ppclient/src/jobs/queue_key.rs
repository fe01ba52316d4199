//! How the client's queue keeps jobs apart.

use crate::jobs::task::{JobKind, Task};
use ppcore::resources::Request;
use std::sync::Arc;

/// How the queue keeps jobs apart: their kind and what they ask for
/// (`None`: one cpu), so that a consumer can take only jobs that fit it.
pub(crate) type QueueKey = (JobKind, Option<Arc<Request>>);

/// `task`'s place in the queue.
pub(crate) fn queue_key(task: &Arc<dyn Task>) -> QueueKey {
    (task.job(), task.request().cloned())
}
