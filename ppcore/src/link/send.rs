//! What a [`ClientLink`] sends: jobs within the node's credit and the send
//! window, shared values before the jobs that name them, and arguments too
//! large for a frame as streams pulled one frame at a time.

use crate::job::error::{ErrorKind, JobError};
use crate::job::shared::SharedId;
use crate::link::client::{ClientLink, LinkState, ShareOut};
use crate::link::offer::lacks_any;
use crate::link::output::LinkEvent;
use crate::link::pull::next_stream_frame;
use crate::wire::frame::batches_by_size;
use crate::wire::messages::{ClientMsg, RunJob};
use crate::wire::run::{JobKey, KEYS_PER_MESSAGE};
use crate::wire::stream::{self, StreamError};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Why a shared value cannot go to a node.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ShareError {
    /// It is over what the node keeps.
    #[error(transparent)]
    OverSharedMax(#[from] crate::job::shared::OverSharedMax),
    /// It is over the node's payload limit.
    #[error(transparent)]
    Stream(#[from] StreamError),
}

crate::debug_as_display!(ShareError);

impl<T> ClientLink<T> {
    pub(super) fn submit(&mut self, jobs: Vec<(RunJob, T)>) {
        if self.state != LinkState::Ready {
            for (_, job) in jobs {
                self.events
                    .push_back(LinkEvent::Returned { job, lost: false });
            }
            return;
        }
        let jobs = self.within_credit(jobs);
        let inline = stream::chunk_size(self.config.max_frame);
        let mut ready = Vec::with_capacity(jobs.len());
        for (mut run, job) in jobs {
            run.program = self.program_of(&run.name);
            // Arguments too large for a frame go as streams: they count as
            // jobs, not bytes, in the window.
            let size = match run.args.len() {
                n if n > inline => 0,
                n => n,
            };
            self.ledger.sent(run.id, run.attempt, size, job);
            // Shared values that cannot all be there at once: never runs here.
            let shared: u64 = run
                .shared
                .iter()
                .filter_map(|id| self.shares.get(id))
                .map(|s| s.len)
                .sum();
            if shared > self.peer_shared_max {
                let message = format!(
                    "the job's shared values take {shared} bytes, over the node's --shared-max of {} bytes",
                    self.peer_shared_max
                );
                self.fail_sent(run.id, run.attempt, message);
                continue;
            }
            match run
                .shared
                .iter()
                .any(|id| self.shares.get(id).is_some_and(|s| !s.sent))
            {
                true => self.waiting.push(run),
                false => ready.push(run),
            }
        }
        self.send_runs(ready);
    }

    /// Sends jobs already in the ledger: small ones in `Run` batches within
    /// a frame, large ones as streams followed by their `RunStreamed`.
    pub(super) fn send_runs(&mut self, runs: Vec<RunJob>) {
        let inline = stream::chunk_size(self.config.max_frame);
        let (large, runs): (Vec<_>, Vec<_>) = runs.into_iter().partition(|r| r.args.len() > inline);
        for mut run in large {
            let args = std::mem::take(&mut run.args).into_vec();
            let (id, attempt) = (run.id, run.attempt);
            let pushed = self
                .streams
                .push(args, self.peer_max, |stream| ClientMsg::RunStreamed {
                    stream,
                    job: run,
                });
            if let Err(e) = pushed {
                self.fail_sent(id, attempt, format!("the node refuses the arguments: {e}"));
            }
        }
        let budget = self.config.max_frame;
        for batch in batches_by_size(runs, |r| r.args.len(), budget) {
            let ids: Vec<(u64, u32)> = batch.iter().map(|r| (r.id, r.attempt)).collect();
            match self.framer.encode(&ClientMsg::Run(batch)) {
                Ok(bytes) => self.transmit(bytes),
                Err(e) => {
                    for (id, attempt) in ids {
                        self.fail_sent(id, attempt, e.to_string());
                    }
                }
            }
        }
    }

    /// A job in the ledger that cannot be sent: it resolves with `message`.
    pub(super) fn fail_sent(&mut self, id: u64, attempt: u32, message: String) {
        if let Some(job) = self.ledger.take(id, attempt) {
            self.credit_full = false;
            self.events.push_back(LinkEvent::Done {
                job,
                result: Err(JobError::new(ErrorKind::Codec, message)),
                exec: Duration::ZERO,
                kept: None,
            });
        }
    }

    /// Whether shared value `id` must be sent before jobs that name it go
    /// to this node: not sent on this connection yet, or the node asked for
    /// it again (`NeedShared`). False while the link is not up.
    pub fn needs_share(&self, id: &SharedId) -> bool {
        self.state == LinkState::Ready && !self.shares.contains_key(id)
    }

    /// Sends shared value `id`, whose encoded bytes are `bytes`, to the node
    /// as a stream followed by `Share` (nothing if the link is not up or it
    /// is there already). Jobs submitted from now on that name it go after
    /// it. Refused, with nothing sent, over the node's `max_payload` or
    /// `--shared-max`.
    /// A kept result the client holds (`kept`) goes the same way, kept by
    /// the node for this connection alone (see `ClientMsg::Share`).
    pub fn share(
        &mut self,
        id: SharedId,
        bytes: Arc<Vec<u8>>,
        kept: bool,
    ) -> Result<(), ShareError> {
        if !self.needs_share(&id) {
            return Ok(());
        }
        let len = bytes.len() as u64;
        if len > self.peer_shared_max {
            let max = self.peer_shared_max;
            return Err(crate::job::shared::OverSharedMax { len, max }.into());
        }
        self.streams
            .push(bytes, self.peer_max, |stream| ClientMsg::Share {
                id,
                stream,
                kept,
            })?;
        self.shares.insert(
            id,
            ShareOut {
                len,
                sent: false,
                kept: false,
            },
        );
        Ok(())
    }

    /// Tells the node these jobs' results are in our journal (it forgets
    /// them), in messages of at most [`KEYS_PER_MESSAGE`] keys; nothing if
    /// the link is not up (the next connection's node holds them until
    /// the run's next client says so, or `--orphan-keep` passes).
    pub fn recorded(&mut self, keys: &[JobKey]) {
        if !matches!(self.state, LinkState::Ready | LinkState::Draining) {
            return;
        }
        for chunk in keys.chunks(KEYS_PER_MESSAGE) {
            self.send(&ClientMsg::Recorded(chunk.to_vec()));
        }
    }

    /// The client is done with these shared values: the node is told to
    /// free them (a stream of one still going out is dropped).
    pub fn unshare(&mut self, ids: &[SharedId]) {
        let mut gone: Vec<SharedId> = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(share) = self.shares.remove(id) {
                self.forget_kept(&share);
                gone.push(*id);
            }
        }

        if gone.is_empty() {
            return;
        }
        let frames = self
            .streams
            .abort_where(|m| matches!(m, ClientMsg::Share { id, .. } if gone.contains(id)));
        for frame in frames {
            self.send(&ClientMsg::Stream(frame));
        }
        self.send(&ClientMsg::Unshare(gone));
        // Jobs waiting for one of them (none, while the client keeps a
        // value for each job that names it) go now: the node asks back.
        self.release_waiting();
    }

    /// The node keeps job result `id` (`len` bytes) for this connection:
    /// it holds it as if it had been sent, so jobs that name it go without
    /// it, and the sweep frees it there once nobody here holds it.
    pub fn note_kept(&mut self, id: SharedId, len: u64) {
        let kept = ShareOut {
            len,
            sent: true,
            kept: true,
        };
        if let Some(old) = self.shares.insert(id, kept) {
            self.forget_kept(&old);
        }
        self.kept_total.0 += 1;
        self.kept_total.1 += len;
    }

    /// Kept results the node said it no longer has, since the last call.
    pub fn take_lost_kept(&mut self) -> Vec<SharedId> {
        std::mem::take(&mut self.lost_kept)
    }

    pub(super) fn forget_kept(&mut self, share: &ShareOut) {
        if share.kept {
            self.kept_total.0 = self.kept_total.0.saturating_sub(1);
            self.kept_total.1 = self.kept_total.1.saturating_sub(share.len);
        }
    }

    /// The job results the node keeps for this connection now, and their
    /// bytes.
    pub fn kept_here(&self) -> (u64, u64) {
        self.kept_total
    }

    /// The shared values this connection holds or is sending.
    pub fn shared_ids(&self) -> impl Iterator<Item = &SharedId> {
        self.shares.keys()
    }

    /// Shared values sent to the node, and their bytes, over the link's
    /// life (a value sent again after an eviction or a reconnection counts
    /// again).
    pub fn shared_sent(&self) -> (u64, u64) {
        self.shared_sent
    }

    /// Shared value `id` went out whole (its `Share` just followed): the
    /// jobs that waited only for it go now.
    pub(super) fn shared_arrived(&mut self, id: SharedId) {
        if let Some(share) = self.shares.get_mut(&id) {
            share.sent = true;
            self.shared_sent.0 += 1;
            self.shared_sent.1 += share.len;
        }
        self.release_waiting();
    }

    /// Sends the waiting jobs whose shared values have all gone out.
    pub(super) fn release_waiting(&mut self) {
        if self.waiting.is_empty() {
            return;
        }
        let shares = &self.shares;
        let (go, wait): (Vec<RunJob>, Vec<RunJob>) = std::mem::take(&mut self.waiting)
            .into_iter()
            .partition(|r| {
                !r.shared
                    .iter()
                    .any(|id| shares.get(id).is_some_and(|s| !s.sent))
            });
        self.waiting = wait;
        self.send_runs(go);
    }

    /// The jobs that fit the node's credit window, in order; the others go
    /// back to the queue unsent (the node would hand them back), and the
    /// link takes no more until a job leaves.
    pub(super) fn within_credit(&mut self, jobs: Vec<(RunJob, T)>) -> Vec<(RunJob, T)> {
        let (mut n, mut bytes) = (self.ledger.len(), self.ledger.bytes());
        let mut unsent = self.unsent();
        let mut fit = Vec::with_capacity(jobs.len());
        // Arguments too large for a frame go as streams, bounded by the
        // node's `max_payload`: they count as jobs, not bytes.
        let inline = stream::chunk_size(self.config.max_frame);
        for (run, job) in jobs {
            let size = match run.args.len() {
                n if n > inline => 0,
                n => n,
            };
            let streamed = run.args.len() > inline;
            let in_window = !streamed || self.window.admits(unsent);
            let fits = !self.credit_full
                && (self.credit_jobs == 0 || n < self.credit_jobs)
                && (n == 0
                    || self.credit_bytes == 0
                    || bytes.saturating_add(size) <= self.credit_bytes);
            if fits && in_window {
                n += 1;
                bytes = bytes.saturating_add(size);
                if streamed {
                    unsent = unsent.saturating_add(run.args.len() as u64);
                }
                fit.push((run, job));
            } else {
                // Over the send window, the link takes no job until the
                // unsent bytes fall under it (`free`).
                self.credit_full |= !fits;
                self.events
                    .push_back(LinkEvent::Returned { job, lost: false });
            }
        }
        fit
    }

    /// Every [`SWEEP_INTERVAL`](crate::link::SWEEP_INTERVAL) (else `None`): takes back the jobs for
    /// which `ended` holds (they ended elsewhere: timed out, cancelled),
    /// telling the node to stop them, and tells the node to free the shared
    /// values for which `held` no longer holds.
    pub fn sweep(
        &mut self,
        now: Instant,
        ended: impl Fn(&T) -> bool,
        held: impl Fn(&SharedId) -> bool,
    ) -> Option<Vec<T>> {
        if !self.sweep.due(now) {
            return None;
        }
        let gone = self.cancel_where(ended);
        let dropped: Vec<SharedId> = self.shares.keys().filter(|id| !held(id)).copied().collect();
        if !dropped.is_empty() {
            self.unshare(&dropped);
        }
        Some(gone)
    }

    /// The link came up (after [`LinkEvent::Up`]): whether our program, with
    /// jobs `own`, is to be offered to this node: it can be shipped
    /// (`can_ship`: the program called `init`), the node lacks some of its
    /// jobs and speaks the "ship" capability. If so the offer is due now:
    /// see [`ClientLink::offer_due`].
    pub fn plan_offer(
        &mut self,
        own: &HashSet<(String, String)>,
        can_ship: bool,
        now: Instant,
    ) -> bool {
        let due = self.state == LinkState::Ready
            && can_ship
            && self.speaks_ship
            && lacks_any(own, &self.jobs);
        self.ship.plan(due, now);
        due
    }

    /// Whether the offer of our program is due at `now`: give it with
    /// [`ClientLink::offer`] once the program is hashed, else say
    /// [`ClientLink::offer_later`] (or [`ClientLink::drop_offer`] if it
    /// cannot be described).
    pub fn offer_due(&self, now: Instant) -> bool {
        self.ship.offer_due(now)
    }

    /// The program is not hashed yet: the offer is due again after
    /// [`OFFER_POLL`](crate::link::OFFER_POLL) (a timer of
    /// [`ClientLink::poll_timeout`]).
    pub fn offer_later(&mut self, now: Instant) {
        self.ship.offer_later(now);
    }

    /// Our program cannot be offered: no offer is due any more.
    pub fn drop_offer(&mut self) {
        self.ship.offer_done();
    }

    /// Whether the next chunk of the upload the node asked for goes now: an
    /// upload is under way (one at a time, from the node's `Need`), the link
    /// is up, and the node has taken enough of it
    /// ([`ClientLink::upload_room`]).
    pub fn chunk_due(&self) -> bool {
        self.ship.uploading()
            && matches!(self.state, LinkState::Ready | LinkState::Draining)
            && self.upload_room()
    }

    /// The upload is over on the driver's side (all read, or reading
    /// failed, or it could not start): the next `Need` starts another.
    pub fn upload_over(&mut self) {
        self.ship.upload_over();
    }

    /// Whether stream frames wait to be sent: the driver asks for them one
    /// at a time with [`ClientLink::pull_stream`].
    pub fn has_stream(&self) -> bool {
        self.connected() && !self.streams.is_empty()
    }

    /// Bytes of arguments waiting to go out as streams.
    pub fn stream_bytes(&self) -> u64 {
        self.streams.pending_bytes()
    }

    /// Whether arguments of `len` bytes go to the node as a stream (they
    /// are over what one frame carries inline).
    pub fn is_streamed(&self, len: usize) -> bool {
        len > stream::chunk_size(self.config.max_frame)
    }

    /// Bytes not yet taken by the socket: the driver's outbox as it last
    /// said, and the queued streams.
    pub(super) fn unsent(&self) -> u64 {
        self.outbox.saturating_add(self.streams.pending_bytes())
    }

    /// The driver's outbox holds `outbox` bytes now (it has carried out
    /// every action so far): the next stream frame is queued if the outbox
    /// runs low. True if it queued anything (carry it out, write, and call
    /// again). Jobs are taken again ([`ClientLink::free`]) once the unsent
    /// bytes are under the send window.
    pub fn send_more(&mut self, outbox: usize) -> bool {
        self.outbox = outbox as u64;
        self.window.pulls(outbox) && self.has_stream() && self.pull_stream()
    }

    /// Queues the next stream frame to send (and the `Run` after a stream's
    /// last chunk) as bytes to write ([`ClientLink::poll_transmit`]); false if there is none. The driver
    /// calls it when what it has to write runs low, so that heartbeats and
    /// small jobs queued meanwhile go between the chunks.
    pub fn pull_stream(&mut self) -> bool {
        if !self.connected() {
            return false;
        }
        let Some((bytes, then)) =
            next_stream_frame(&mut self.streams, &mut self.framer, ClientMsg::Stream)
        else {
            return false;
        };
        if let Some(bytes) = bytes {
            self.transmit(bytes);
        }
        if let Some(msg) = then {
            self.send(&msg);
            if let ClientMsg::Share { id, .. } = msg {
                self.shared_arrived(id);
            }
        }
        true
    }
}
