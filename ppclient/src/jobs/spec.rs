//! What few jobs are submitted with and nothing changes later: a group,
//! a result kept where it is made. Boxed, and
//! only for the jobs that have one, so that a plain queued job stays small.

use ppcore::shared::KeptSource;
use ppcore::{JobError, Pending};
use std::sync::Arc;

/// A job's rarely given, never changed part.
pub(crate) struct Spec<T> {
    /// Its group ([`Server::wait_group`](crate::Server::wait_group)).
    pub(crate) group: Option<Arc<Pending>>,
    /// Its result kept where it is made, as its handle reaches it.
    pub(crate) kept: Option<KeptResult<T>>,
}

impl<T> Spec<T> {
    /// The box, if anything is in it.
    pub(crate) fn boxed(self) -> Option<Box<Self>> {
        let empty = self.group.is_none() && self.kept.is_none();
        (!empty).then(|| Box::new(self))
    }
}

/// A kept job's result as its handle reaches it.
pub(crate) struct KeptResult<T> {
    pub(crate) source: Arc<dyn KeptSource>,
    pub(crate) decode: fn(Vec<u8>) -> Result<T, JobError>,
    /// The value stays where it lies while the job (and so its handle) lives.
    _hold: ppcore::shared::Hold,
}

impl<T> KeptResult<T> {
    pub(crate) fn new(
        source: Arc<dyn KeptSource>,
        decode: fn(Vec<u8>) -> Result<T, JobError>,
    ) -> Self {
        let hold = ppcore::shared::hold(source.id());
        KeptResult {
            source,
            decode,
            _hold: hold,
        }
    }
}
