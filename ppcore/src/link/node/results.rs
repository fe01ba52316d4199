//! Results going out: in order, within the send window, inline in `Done`
//! batches or as streams; reports of kept results gathered first
//! (`linger`).

use super::NodeLink;
use crate::job::error::{ErrorKind, JobError};
use crate::link::pull::next_stream_frame;
use crate::wire::frame::batches_by_size;
use crate::wire::messages::{DoneJob, NodeMsg};
use crate::wire::stream;

/// The bytes a finished job holds: its result, or its error's message.
fn result_bytes(d: &DoneJob) -> u64 {
    match &d.result {
        Ok(b) => b.len() as u64,
        Err(e) => e.message.len() as u64,
    }
}

impl NodeLink {
    /// Finished jobs: their results leave in order as the send window
    /// admits them; the rest wait.
    pub(super) fn finished(&mut self, done: Vec<DoneJob>) {
        // Results being spilled come back when written (`NodeEvent::Spilled`).
        let done: Vec<DoneJob> = (done.into_iter())
            .filter_map(|d| self.kept.on_done(d))
            .collect();
        if !self.is_ready() {
            done.iter().for_each(|d| self.ended(d.id));
            return;
        }
        match self.held.is_empty() {
            // Nothing waits: no result overtakes another by going first.
            true => self.release_from(done.into_iter()),
            false => {
                for d in done {
                    self.held_bytes += result_bytes(&d);
                    self.held.push_back(d);
                }
                self.release_held();
            }
        }
    }

    /// Sends the results that wait, as far as the window admits them.
    pub(super) fn release_held(&mut self) {
        let unsent = self.outbox + self.queued + self.streams.pending_bytes();
        if self.held.is_empty() || !self.window.admits(unsent) {
            return;
        }
        let held = std::mem::take(&mut self.held);
        self.held_bytes = 0;
        self.release_from(held.into_iter());
    }

    /// Sends results in order while the window admits them: each ends its
    /// job here (its credit comes back). Small ones go in `Done` batches;
    /// those over a frame are queued as streams (or fail, over the
    /// client's limit). The rest wait, keeping their credit.
    fn release_from(&mut self, mut results: impl Iterator<Item = DoneJob>) {
        let inline = stream::chunk_size(self.config.max_frame);
        let mut unsent = self.outbox + self.queued + self.streams.pending_bytes();
        let mut done = Vec::new();
        for d in results.by_ref() {
            if !self.window.admits(unsent) {
                self.held_bytes += result_bytes(&d);
                self.held.push_back(d);
                break;
            }
            unsent += result_bytes(&d);
            self.ended(d.id);
            match d.result.as_ref().is_ok_and(|b| b.len() > inline) {
                true => done.extend(self.stream_result(d)),
                false => done.push(d),
            }
        }
        for d in results {
            self.held_bytes += result_bytes(&d);
            self.held.push_back(d);
        }
        // Reports of kept results wait to share a frame (`linger`).
        let (kept, done): (Vec<_>, Vec<_>) = done.into_iter().partition(|d| d.kept.is_some());
        self.linger.add(kept, self.now);
        self.send_done(done);
    }

    /// Sends `done` in `Done` frames, after the reports of kept results
    /// that wait if any goes (or if they are due).
    fn send_done(&mut self, mut done: Vec<DoneJob>) {
        let idle = self.inflight.is_empty();
        if !done.is_empty() || self.linger.due(self.now, idle) {
            done.splice(0..0, self.linger.take());
        }
        let size = |d: &DoneJob| d.result.as_ref().map_or(0, |b| b.len());
        for part in batches_by_size(done, size, self.config.max_frame) {
            self.send(&NodeMsg::Done(part));
        }
    }

    /// Sends the reports of kept results that wait: if they are due, or
    /// all of them (`all`: the connection ends).
    pub(super) fn send_lingering(&mut self, all: bool) {
        let idle = all || self.inflight.is_empty();
        if self.linger.due(self.now, idle) {
            let done = self.linger.take();
            self.send_done(done);
        }
    }

    /// Queues a result over a frame as a stream; the job failed instead if
    /// the client refuses a result that large.
    fn stream_result(&mut self, mut d: DoneJob) -> Option<DoneJob> {
        let result = std::mem::replace(&mut d.result, Ok(Default::default()));
        let bytes = result.unwrap_or_default().into_vec();
        let (id, attempt, exec_ns) = (d.id, d.attempt, d.exec_ns);
        let pushed = self
            .streams
            .push(bytes, self.peer_max, |stream| NodeMsg::DoneStreamed {
                stream,
                job: d,
            });
        let e = pushed.err()?;
        let message = format!("the client refuses the result: {e}");
        Some(DoneJob {
            id,
            attempt,
            result: Err(JobError::new(ErrorKind::Codec, message)),
            exec_ns,
            kept: None,
        })
    }

    /// The driver's outbox holds `outbox` bytes now (it has carried out
    /// every action so far): results that waited leave as the window
    /// allows, and the next stream frame is queued if the outbox runs low.
    /// True if it queued anything (carry it out, write, and call again).
    pub fn send_more(&mut self, outbox: usize) -> bool {
        self.outbox = outbox as u64;
        let before = self.transmits.len();
        if self.is_ready() {
            self.release_held();
        }
        if self.window.pulls(outbox) && self.has_stream() {
            self.pull_stream();
        }
        self.transmits.len() > before
    }

    /// Bytes of results not yet framed: waiting for the window, and queued
    /// as streams. The driver counts them against the node's memory.
    pub fn unsent_results(&self) -> u64 {
        self.held_bytes + self.streams.pending_bytes()
    }

    /// Finished jobs whose results wait for the send window.
    pub fn results_waiting(&self) -> usize {
        self.held.len()
    }

    /// Whether stream frames wait to be sent: the driver asks for them one
    /// at a time with [`NodeLink::pull_stream`].
    pub fn has_stream(&self) -> bool {
        self.is_ready() && !self.streams.is_empty()
    }

    /// Bytes of results waiting to go out as streams.
    pub fn stream_bytes(&self) -> u64 {
        self.streams.pending_bytes()
    }

    /// The memory the node may still commit to this client's incoming
    /// streams, beyond what they reserve now: a stream that starts over it
    /// is refused and its job handed back (see [`stream::Assembler::set_room`]).
    /// The driver sets it before it hands over received bytes.
    pub fn set_stream_room(&mut self, room: u64) {
        self.incoming.set_room(room);
    }

    /// Bytes this client's incoming streams reserve now (their announced
    /// lengths): what the driver counts against the node's memory.
    pub fn stream_reserved(&self) -> u64 {
        self.incoming.reserved()
    }

    /// Queues the next stream frame to send (and the `Done` after a
    /// stream's last chunk) as transmits; false if there is none.
    /// The driver calls it when what it has to write runs low, so that
    /// heartbeats and small results go between the chunks.
    pub fn pull_stream(&mut self) -> bool {
        if !self.is_ready() {
            return false;
        }
        let Some((bytes, then)) =
            next_stream_frame(&mut self.streams, &mut self.framer, NodeMsg::Stream)
        else {
            return false;
        };
        if let Some(bytes) = bytes {
            self.push_send(bytes);
        }
        if let Some(msg) = then {
            self.send(&msg);
        }
        true
    }
}
