//! The handles the caller holds: [`JobHandle`] (wait, poll, await, cancel)
//! and [`AsCompleted`]. The result they read lands in the job's cell
//! (`jobs::cell`).

use crate::jobs::cell::JobRef;
use crate::jobs::spec::KeptResult;
use crate::jobs::tracker::Tracker;
use ppcore::{ErrorKind, JobError, Shared};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

/// A submitted job: wait for it, poll it, await it or cancel it.
///
/// Dropping the handle does not cancel the job; its callback still runs.
#[must_use = "a job's result is only seen through its handle"]
pub struct JobHandle<T> {
    /// The job itself: one pointer, whatever the job (a kept result is
    /// reached through it too), so that a million handles stay small.
    job: Arc<dyn JobRef<T>>,
}

impl<T: Send + 'static> JobHandle<T> {
    pub(crate) fn new(job: Arc<dyn JobRef<T>>) -> Self {
        JobHandle { job }
    }

    /// A reference to the job's kept result (submitted with
    /// [`Options::keep`](crate::Options::keep)), to pass to other jobs as a
    /// [`Shared<T>`](ppcore::Shared) argument. It does not fetch the
    /// result: the jobs that take it run where it lies. The value lives
    /// (on its node, or in the client) while this handle or any reference
    /// lives; when the last goes, every holder frees it.
    ///
    /// ```
    /// use ppclient::{Options, Server, Shared};
    /// ppclient::job! { fn square(x: u64) -> u64 { x * x } }
    /// ppclient::job! { fn plus_one(x: Shared<u64>) -> u64 { *x + 1 } }
    /// let server = Server::builder().ncpus(1).build()?;
    /// let a = server.submit_with(square, (7,), Options::new().keep());
    /// let b = server.submit(plus_one, (a.keep()?,));
    /// assert_eq!(b.wait()?, 50);
    /// assert_eq!(a.wait()?, 49); // fetched now, once
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Codec`] if the job was not submitted with `Options::keep`
    /// (its result comes back to the client instead).
    pub fn keep(&self) -> Result<Shared<T>, JobError> {
        match self.job.kept() {
            Some(k) => Ok(Shared::kept(Arc::clone(&k.source))),
            None => Err(JobError::new(
                ErrorKind::Codec,
                "this job's result is not kept: submit it with Options::new().keep()",
            )),
        }
    }

    /// A kept job's result, once it ended: its error, or its value fetched.
    fn read_kept(&self, kept: &KeptResult<T>) -> Result<T, JobError> {
        if let Some(e) = self.job.kept_error() {
            return Err(e);
        }
        let value = kept.source.fetch()?;
        (kept.decode)(value.bytes().to_vec())
    }

    /// The job's id, unique within its server.
    pub fn id(&self) -> u64 {
        self.job.id()
    }

    /// Blocks until the job ends (and its callback returned) and returns its
    /// result.
    ///
    /// Called from the job's own callback, it returns
    /// [`ErrorKind::WouldDeadlock`] at once: the job resolves only after its
    /// callback returns. Waiting on any other job from a callback is fine.
    ///
    /// A job submitted with [`Options::keep`](crate::Options::keep) has its
    /// result fetched here, from where it lies.
    pub fn wait(self) -> Result<T, JobError> {
        self.job.check_not_own()?;
        self.job.wait_ready(None);
        match self.job.kept() {
            Some(kept) => self.read_kept(kept),
            None => self.job.take(),
        }
    }

    /// Waits at most `timeout` for the job to end (and its callback to
    /// return); `None` if it has not, and the handle stays usable. Asked
    /// again after it answered, it gives the same answer, as pp's `job()`
    /// does: an error again, a value again if its type is `Clone` (a copy:
    /// the handle keeps the value until it is dropped or `wait` takes it);
    /// a value that is not `Clone` is moved out the first time, and read
    /// again it is [`ErrorKind::Taken`]. From the job's own callback:
    /// `Some(Err(WouldDeadlock))`, as [`JobHandle::wait`].
    ///
    /// ```
    /// # ppclient::job! { fn twice(x: u64) -> u64 { 2 * x } }
    /// let server = ppclient::Server::builder().ncpus(1).build()?;
    /// let h = server.submit(twice, (4,));
    /// let r = h.wait_timeout(std::time::Duration::from_secs(10));
    /// assert_eq!(r.expect("not done in 10 s")?, 8);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn wait_timeout(&self, timeout: Duration) -> Option<Result<T, JobError>> {
        if let Err(e) = self.job.check_not_own() {
            return Some(Err(e));
        }
        self.job
            .wait_ready(Some(ppcore::limits::deadline(Instant::now(), timeout)))
            .then(|| self.read())
    }

    /// The result of a job that ended (a kept one fetched, each time).
    fn read(&self) -> Result<T, JobError> {
        match self.job.kept() {
            Some(kept) => self.read_kept(kept),
            None => self.job.read(),
        }
    }

    /// The result if the job has ended (and its callback returned), else
    /// `None`; like [`JobHandle::wait_timeout`] with no wait (read again,
    /// the same answer, as there).
    pub fn try_result(&self) -> Option<Result<T, JobError>> {
        self.job.is_ready().then(|| self.read())
    }

    /// Whether the result is in.
    pub fn is_finished(&self) -> bool {
        self.job.is_ready()
    }

    /// Cancels the job if it is queued or running on a node (the node is
    /// told to stop it); true if it was cancelled. Its handle and callback
    /// then get [`ErrorKind::Cancelled`]. A job running on a local thread
    /// cannot be stopped: then false.
    pub fn cancel(&self) -> bool {
        let err = JobError::new(ErrorKind::Cancelled, "cancelled by the caller");
        Arc::clone(&self.job).cancel(err)
    }
}

impl<T: Send + 'static> Future for JobHandle<T> {
    type Output = Result<T, JobError>;

    /// A kept job's result is fetched when it is ready (that wait blocks
    /// the task: `wait` on it from a thread to avoid it).
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.job.kept() {
            Some(kept) => match self.job.is_ready() {
                true => Poll::Ready(self.read_kept(kept)),
                false => {
                    self.job.notify(cx.waker().clone());
                    match self.job.is_ready() {
                        true => Poll::Ready(self.read_kept(kept)),
                        false => Poll::Pending,
                    }
                }
            },
            None => self.job.poll_take(cx.waker()),
        }
    }
}

impl<T: 'static> std::fmt::Debug for JobHandle<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobHandle")
            .field("id", &self.job.id())
            .finish()
    }
}

/// Results in the order jobs finish, from [`Server::as_completed`](crate::Server::as_completed).
///
/// Yields `(index, result)`, where `index` is the job's place in the input.
pub struct AsCompleted<T> {
    tracker: Option<Arc<Tracker>>,
    handles: Vec<Option<JobHandle<T>>>,
    finished: crossbeam_channel::Receiver<usize>,
    left: usize,
}

struct IndexWaker {
    index: usize,
    tx: crossbeam_channel::Sender<usize>,
}

impl Wake for IndexWaker {
    fn wake(self: Arc<Self>) {
        // The receiver may be gone if the iterator was dropped; nothing to tell then.
        let _ = self.tx.send(self.index);
    }
}

impl<T: Send + 'static> AsCompleted<T> {
    pub(crate) fn new(handles: Vec<JobHandle<T>>) -> Self {
        let (tx, rx) = crossbeam_channel::unbounded();
        for (index, handle) in handles.iter().enumerate() {
            let tx = tx.clone();
            handle
                .job
                .notify(Waker::from(Arc::new(IndexWaker { index, tx })));
        }
        AsCompleted {
            tracker: handles.first().map(|h| Arc::clone(h.job.tracker())),
            left: handles.len(),
            handles: handles.into_iter().map(Some).collect(),
            finished: rx,
        }
    }
}

impl<T: Send + 'static> AsCompleted<T> {
    /// Cancels every job not yielded yet (those queued or on a node; see
    /// [`JobHandle::cancel`]); returns how many were cancelled. The
    /// iterator then yields what is left, cancelled ones included: "first
    /// hit wins, cancel the rest" is `next()` then `cancel_rest()`.
    pub fn cancel_rest(&mut self) -> usize {
        self.handles.iter().flatten().filter(|h| h.cancel()).count()
    }

    /// The handles not yielded yet, with their places in the input.
    pub fn into_unfinished(self) -> Vec<(usize, JobHandle<T>)> {
        self.handles
            .into_iter()
            .enumerate()
            .filter_map(|(i, h)| h.map(|h| (i, h)))
            .collect()
    }
}

impl<T: Send + 'static> Iterator for AsCompleted<T> {
    type Item = (usize, Result<T, JobError>);

    fn next(&mut self) -> Option<Self::Item> {
        while self.left > 0 {
            let index = match self.finished.try_recv() {
                Ok(index) => index,
                Err(_) => {
                    let _blocking = self.tracker.as_ref().map(|t| t.blocking());
                    self.finished.recv().ok()?
                }
            };
            if let Some(handle) = self.handles.get_mut(index).and_then(Option::take) {
                self.left -= 1;
                return Some((index, handle.wait()));
            }
        }
        None
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

#[cfg(test)]
mod tests {
    /// A handle is one pointer to its job: a million queued jobs' handles
    /// cost 16 MB (see `jobs::holder`'s test for the job itself).
    #[test]
    fn a_handle_is_one_pointer() {
        assert_eq!(std::mem::size_of::<super::JobHandle<()>>(), 16);
    }
}
