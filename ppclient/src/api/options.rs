//! [`Options`]: how to run a job; [`JobOptions`]: the same with a callback.

use crate::jobs::cell::Callback;
use ppcore::resources::{millis, Request};
use ppcore::JobError;
use std::sync::Arc;
use std::time::Duration;

/// How to run a job: group, timeout, retries. Passed to
/// [`Server::submit_with`](crate::Server::submit_with). Not tied to a job's
/// types: one value (or a reference to it) serves any number of jobs of any kind.
///
/// ```
/// use ppclient::{Options, Server};
/// use std::time::Duration;
/// let server = Server::builder().ncpus(1).build()?;
/// let batch = Options::new().group("batch").timeout(Duration::from_secs(60));
/// let a = server.submit_with(jobs::echo_u64, (1,), &batch);
/// let b = server.submit_with(jobs::echo_string, ("two".into(),), &batch);
/// server.wait_group("batch");
/// assert_eq!((a.wait()?, b.wait()?), (1, "two".to_owned()));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    pub(crate) group: Option<String>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) node_retries: Option<u32>,
    pub(crate) crash_retries: Option<u32>,
    pub(crate) retries: u16,
    pub(crate) keep: bool,
    pub(crate) journal_key: Option<String>,
    /// What the job asks for, when more than one cpu (`None`: one cpu).
    pub(crate) request: Option<Arc<Request>>,
    /// A request that could not be made (a bad name or amount): the job
    /// fails at submit with it.
    pub(crate) bad_request: Option<String>,
}

impl Options {
    /// No group, no timeout, the server's retry limits.
    pub fn new() -> Self {
        Self::default()
    }

    /// The same options with a callback: `f` gets the job's result on one of
    /// the server's callback threads, before the handle resolves (see
    /// docs/ARCHITECTURE.md, "Callbacks").
    ///
    /// A callback may submit jobs and wait on other handles and groups,
    /// including jobs that have callbacks of their own: another callback
    /// thread takes over while it waits. A wait that could only end after the
    /// callback returns (on its own job, on its own group, or `wait_all`)
    /// returns [`ErrorKind::WouldDeadlock`](crate::ErrorKind::WouldDeadlock)
    /// at once. Callbacks of different jobs may run at the same time.
    ///
    /// ```
    /// use ppclient::{Options, Server};
    /// let server = Server::builder().ncpus(1).build()?;
    /// let (tx, rx) = std::sync::mpsc::channel();
    /// let noted = Options::new().callback(move |r: &Result<u64, _>| tx.send(r.clone()).unwrap());
    /// let job = server.submit_with(jobs::echo_u64, (3,), noted);
    /// assert_eq!(rx.recv()?, Ok(3));
    /// assert_eq!(job.wait()?, 3);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn callback<T>(
        self,
        f: impl FnOnce(&Result<T, JobError>) + Send + 'static,
    ) -> JobOptions<T> {
        JobOptions {
            options: self,
            callback: Some(Box::new(f)),
        }
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

    /// Keeps the job's result where it is made (on its node, or in the
    /// client for the local pool) instead of sending it back: pass
    /// [`JobHandle::keep`](crate::JobHandle::keep) to other jobs, which
    /// take it where they take a [`Shared`](crate::Shared) value, and run
    /// where it lies. `wait` on the handle fetches it then, once. A kept
    /// job takes no callback (such a `submit` fails at once). See
    /// docs/KEPT.md.
    pub fn keep(mut self) -> Self {
        self.keep = true;
        self
    }

    /// The job's identity in the journal
    /// ([`Builder::journal`](crate::Builder::journal)), instead of the one
    /// derived from its name, a hash of its arguments and which occurrence
    /// of that pair it is in submission order. For a program whose jobs
    /// are not submitted in the same order each run (from several
    /// threads, or from a set), or whose arguments name
    /// [`Shared`](crate::Shared) values (those are not journaled without a
    /// key). Keys must be unique among a job's submissions; the job's name
    /// is part of the identity, so two jobs may use the same key.
    pub fn journal_key(mut self, key: impl Into<String>) -> Self {
        self.journal_key = Some(key.into());
        self
    }

    /// Runs the job only where `n` cpus are free, and holds them while it
    /// runs (default 1; 0 for a job that only waits). On the local pool
    /// every worker is one cpu: a `cpus(4)` job takes four of its slots.
    /// See docs/RESOURCES.md.
    ///
    /// ```
    /// use ppclient::{Options, Server};
    /// let server = Server::builder().ncpus(2).build()?;
    /// let wide = Options::new().cpus(2);
    /// assert_eq!(server.submit_with(jobs::echo_u64, (7,), &wide).wait()?, 7);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn cpus(mut self, n: u32) -> Self {
        self.edit(|r| {
            r.set_cpus(n);
            Ok(())
        });
        self
    }

    /// Runs the job only where `bytes` of memory are free (of what the
    /// machine offers: `Builder::resources`, `ppserver --memory`), and
    /// holds them while it runs. See docs/RESOURCES.md for what is
    /// enforced.
    pub fn memory(mut self, bytes: u64) -> Self {
        self.edit(|r| {
            r.set_memory(bytes);
            Ok(())
        });
        self
    }

    /// Runs the job only where `amount` of the named resource `name` is
    /// free (`gpu`, `licence`), and holds it while it runs. Amounts under
    /// one are a part of one instance (`0.5` of a GPU), at most three
    /// decimals; amounts of one or more are whole instances. The job
    /// learns which instances it holds from
    /// [`job_context`](crate::job_context). A bad name or amount fails the
    /// job at submit.
    ///
    /// ```
    /// use ppclient::{Builder, Options, Server};
    /// let server = Server::builder().ncpus(2).resources("licence=1").build()?;
    /// let licensed = Options::new().resource("licence", 1.0);
    /// assert_eq!(server.submit_with(jobs::echo_u64, (5,), &licensed).wait()?, 5);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn resource(mut self, name: &str, amount: f64) -> Self {
        self.edit(|r| r.set_named(name, millis(name, amount)?));
        self
    }

    /// Runs the job only on a machine with tag `name` (`ssd`, `eu-west`:
    /// `ppserver --tags`, `Builder::tags`).
    pub fn tag(mut self, name: &str) -> Self {
        self.edit(|r| r.add_tag(name));
        self
    }

    fn edit(
        &mut self,
        f: impl FnOnce(&mut Request) -> Result<(), ppcore::resources::ResourceError>,
    ) {
        let request = Arc::make_mut(self.request.get_or_insert_with(Default::default));
        if let Err(e) = f(request) {
            self.bad_request.get_or_insert(e.to_string());
        }
        if request.is_plain() {
            self.request = None;
        }
    }

    /// How many node worker processes this job may crash before it is
    /// given up as poison (default: the server's).
    pub fn crash_retries(mut self, n: u32) -> Self {
        self.crash_retries = Some(n);
        self
    }
}

/// [`Options`] for one job whose result is a `T`, with a callback; from
/// [`Options::callback`]. Plain `Options` (or `&Options`) convert into it.
pub struct JobOptions<T> {
    pub(crate) options: Options,
    pub(crate) callback: Option<Callback<T>>,
}

impl<T> From<Options> for JobOptions<T> {
    fn from(options: Options) -> Self {
        JobOptions {
            options,
            callback: None,
        }
    }
}

impl<T> From<&Options> for JobOptions<T> {
    fn from(options: &Options) -> Self {
        options.clone().into()
    }
}

impl<T> std::fmt::Debug for JobOptions<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobOptions")
            .field("options", &self.options)
            .field("callback", &self.callback.is_some())
            .finish()
    }
}
