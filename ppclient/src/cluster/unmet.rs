//! Requests nobody can meet: a job asking for more than every machine up
//! offers fails with an error naming its request and the largest offer,
//! at once when no node may still join, and after
//! [`Builder::unmet_wait`](crate::Builder::unmet_wait) when one may
//! (`--listen`, discovery, DNS). Nothing waits forever.

use crate::cluster::node::NodeState;
use crate::cluster::state::Core;
use crate::jobs::slots::unsatisfiable;
use ppcore::resources::Request;
use ppcore::sync::lock;
use ppcore::JobError;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What `check_request` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// A machine up offers it.
    Met,
    /// Nobody up offers it, but a node that does may still join: the job
    /// waits at most `unmet_wait` (start the watch once it is queued).
    Waits,
}

impl Core {
    /// Whether a machine up (the local pool with workers, or a node) offers
    /// what `request` asks; if not, the error names the request and the
    /// largest offer. Turns the local pool's ledger on.
    fn meets(&self, request: &Request) -> Result<(), JobError> {
        self.slots.engage();
        let workers = self.ncpus.load(Ordering::Acquire) > 0;
        if workers && self.slots.covers(request).is_ok() {
            return Ok(()); // the common case: no offer copied
        }
        let mut offers = Vec::new();
        if workers {
            offers.push(self.slots.offer());
        }
        for link in self.links() {
            let view = link.view();
            if let (NodeState::Up { .. }, Some(offer)) = (&view.state, view.offer) {
                offers.push(offer);
            }
        }
        if offers.iter().any(|o| o.covers(request).is_ok()) {
            return Ok(());
        }
        let largest = offers.into_iter().max_by_key(|o| o.size_key());
        Err(match largest {
            Some(offer) => {
                let short = offer.covers(request).err().unwrap_or_default();
                unsatisfiable(request, &offer, &short)
            }
            None => unsatisfiable(
                request,
                &self.slots.offer(),
                "no local workers and no node up",
            ),
        })
    }

    /// Whether a job asking for `request` may run: met now, or waiting for
    /// nodes that may still join. The error names the request and the
    /// largest offer. Named nodes have answered (or their connect timeout
    /// passed) once `build` returned.
    pub(crate) fn check_request(&self, request: &Request) -> Result<Verdict, JobError> {
        match self.meets(request) {
            Ok(()) => Ok(Verdict::Met),
            Err(_) if self.open_ended => Ok(Verdict::Waits),
            Err(e) => Err(e),
        }
    }

    /// Fails the queued jobs whose request no machine up can meet: all of
    /// them when no node may still join, else those that waited
    /// `unmet_wait`; the others keep their places. Whether jobs that nobody
    /// meets yet are still waiting.
    pub(crate) fn fail_unmet(&self) -> bool {
        // The requests queued, judged with no lock of the queue held.
        let mut asked: Vec<Arc<Request>> = Vec::new();
        self.queue.drain_kinds(|(_, request)| {
            if let Some(r) = request.as_ref().filter(|r| !asked.contains(r)) {
                asked.push(Arc::clone(r));
            }
            false
        });
        let verdicts: Vec<(Arc<Request>, JobError)> = asked
            .into_iter()
            .filter_map(|r| self.meets(&r).err().map(|e| (r, e)))
            .collect();
        if verdicts.is_empty() {
            return false;
        }
        let unmet = |request: Option<&Arc<Request>>| {
            request.and_then(|r| verdicts.iter().find(|(v, _)| v == r).map(|(_, e)| e))
        };
        let wait = self.settings.unmet_wait;
        let now = Instant::now();
        // A request waits from when nobody met it, not from its submit (it
        // may have been met then, by a node since gone).
        let since: Vec<(Arc<Request>, Instant)> = {
            let mut since = lock(&self.unmet_since);
            since.retain(|r, _| verdicts.iter().any(|(v, _)| v == r));
            for (r, _) in &verdicts {
                since.entry(Arc::clone(r)).or_insert(now);
            }
            since.iter().map(|(r, t)| (Arc::clone(r), *t)).collect()
        };
        let unmet_for = |request: Option<&Arc<Request>>| {
            let r = request?;
            let (_, t) = since.iter().find(|(v, _)| v == r)?;
            Some(now.saturating_duration_since(*t))
        };
        let (doomed, waiting) = match self.open_ended {
            false => {
                let doomed = self
                    .queue
                    .drain_kinds(|(_, request)| unmet(request.as_ref()).is_some());
                (doomed, false)
            }
            true => {
                let mut young = 0usize;
                let doomed = self.queue.remove_where(|task| {
                    let due = unmet(task.request()).is_some();
                    let old = task.age(now) >= wait
                        && unmet_for(task.request()).is_some_and(|d| d >= wait);
                    young += usize::from(due && !old);
                    due && old
                });
                (doomed, young > 0)
            }
        };
        for task in doomed {
            let Some(err) = unmet(task.request()).cloned() else {
                continue;
            };
            let err = match self.open_ended {
                false => err,
                true => {
                    let message = format!(
                        "{} (waited {:?} for a node that offers it to join: Builder::unmet_wait)",
                        err.message, wait
                    );
                    err.with_message(message)
                }
            };
            task.abandon(err);
        }
        waiting
    }

    /// Makes sure a thread watches the jobs whose request nobody meets yet
    /// (call once such a job is queued): each fails once it waited
    /// `unmet_wait`; the thread ends when none is left, or with the server.
    pub(crate) fn watch_unmet(core: &Arc<Core>) {
        if core.unmet_watch.swap(true, Ordering::SeqCst) {
            return;
        }
        let weak = Arc::downgrade(core);
        let slice =
            (core.settings.unmet_wait / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
        let watch = move || loop {
            std::thread::sleep(slice);
            let Some(core) = weak.upgrade() else {
                return;
            };
            if core.stopped() {
                return;
            }
            if core.fail_unmet() {
                continue;
            }
            core.unmet_watch.store(false, Ordering::SeqCst);
            // A job queued before the flag went down saw it up and left
            // the watching to this thread: look once more.
            if !core.fail_unmet() || core.unmet_watch.swap(true, Ordering::SeqCst) {
                return;
            }
        };
        let spawned = std::thread::Builder::new()
            .name("pp-unmet".into())
            .spawn(watch);
        if spawned.is_err() {
            // No thread: the jobs are judged again at the next node event.
            core.unmet_watch.store(false, Ordering::SeqCst);
        }
    }
}
