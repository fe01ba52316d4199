//! [`Options`]: how to run one job.

use crate::handle::Callback;
use ppcore::JobError;
use std::time::Duration;

/// How to run one job: callback, group, timeout. Passed to [`Server::submit_with`](crate::Server::submit_with).
pub struct Options<T> {
    pub(crate) callback: Option<Callback<T>>,
    pub(crate) group: Option<String>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) node_retries: Option<u32>,
    pub(crate) crash_retries: Option<u32>,
    pub(crate) retries: u16,
}

impl<T> Default for Options<T> {
    fn default() -> Self {
        Options {
            callback: None,
            group: None,
            timeout: None,
            node_retries: None,
            crash_retries: None,
            retries: 0,
        }
    }
}

impl<T> Options<T> {
    /// No callback, no group, no timeout.
    pub fn new() -> Self {
        Self::default()
    }

    /// Calls `f` with the job's result, on the server's callback thread,
    /// before the handle resolves. Keep it short: callbacks run one at a time.
    pub fn callback(mut self, f: impl FnOnce(&Result<T, JobError>) + Send + 'static) -> Self {
        self.callback = Some(Box::new(f));
        self
    }

    /// Puts the job in group `name`, for [`Server::wait_group`](crate::Server::wait_group).
    pub fn group(mut self, name: impl Into<String>) -> Self {
        self.group = Some(name.into());
        self
    }

    /// Resolves the job with `TimedOut` if it runs longer than `timeout`
    /// (counted from when it starts). A local job cannot be stopped: it
    /// runs on, and its late result is dropped.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// How many node losses this job may meet (default: the server's).
    pub fn node_retries(mut self, n: u32) -> Self {
        self.node_retries = Some(n);
        self
    }

    /// How many times to run the job again after it returns an error or
    /// panics (default 0: such a failure is the job's answer).
    pub fn retries(mut self, n: u16) -> Self {
        self.retries = n;
        self
    }

    /// How many node worker processes this job may crash before it is
    /// given up as poison (default: the server's).
    pub fn crash_retries(mut self, n: u32) -> Self {
        self.crash_retries = Some(n);
        self
    }
}
