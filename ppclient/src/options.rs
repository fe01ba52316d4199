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

    /// Calls `f` with the job's result, on one of the server's callback
    /// threads, before the handle resolves.
    ///
    /// A callback may submit jobs and wait on other handles and groups,
    /// including jobs that have callbacks of their own: another callback
    /// thread takes over while it waits. A wait that could only end after the
    /// callback returns (on its own job, on its own group, or `wait_all`)
    /// returns [`ErrorKind::WouldDeadlock`](crate::ErrorKind::WouldDeadlock)
    /// at once. Callbacks of different jobs may run at the same time.
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
