//! The node's side of one client connection, as a pure state machine: the
//! same shape as [`ClientLink`](crate::ClientLink). No socket, clock or lock.
//!
//! ```text
//!  Handshake --Auth ok--> Ready --Drain--> Draining --Stop--> Closed
//!      |                    |                  |
//!      +-- bad input, timeout, silence, Goodbye, Close ----> Closed
//! ```
//!
//! The driver (a thread in `ppserver`) feeds received bytes, finished jobs,
//! drain and stop requests and timer ticks ([`NodeLink::handle`]); the link
//! hands out, each on its own, the bytes to write
//! ([`NodeLink::poll_transmit`]), when to call back
//! ([`NodeLink::poll_timeout`]) and what the node must do or know
//! ([`NodeLink::poll_event`]: jobs to queue or cancel, a program offered,
//! the connection closed, [`NodeAction`]), as quinn-proto does. It always reads
//! control frames (heartbeats, cancels, goodbye), also while draining; jobs
//! that arrive while draining go straight back, and so do jobs past the
//! connection's credit window (`credit_jobs`, `credit_bytes`, announced in
//! the `Welcome`): a client cannot queue more than that here, however fast it
//! sends, and its heartbeats are still read. A client that sends nothing
//! for [`MISSED_BEATS`] heartbeat intervals, or does not finish the
//! handshake in time, is closed.
//!
//! Results leave within the connection's send window (`send_window`, see
//! [`crate::link::window`]): a finished job's result is framed (inline, or queued
//! as a stream) only while the bytes not yet written (the driver's outbox,
//! which it reports with [`NodeLink::send_more`], and the queued streams)
//! are under the window. Until then the result waits here, in order, and
//! keeps its job's credit, so a client that stops reading cannot have more
//! than its credit window of jobs behind it; the driver counts what waits
//! ([`NodeLink::unsent_results`]) against the node's memory.
//!
//! The handshake is Noise `NNpsk0` ([`crate::secure`]): the client's first
//! message (at most [`CLIENT_HANDSHAKE_MAX_FRAME`] bytes) is checked against
//! each of the node's keys; a client that holds none is sent a refusal that
//! holds nothing derived from a key. Otherwise the node answers, and from
//! then on every frame is sealed: its first is the `Welcome`. The client
//! counts as authenticated at its first frame that opens (a replayed first
//! message gets no further); until then the 4 KiB cap and the handshake
//! deadline hold. A frame that does not open closes the connection.
//!
//! The node's rules on what a client sends are decided here, the driver
//! only does the I/O: one program upload at a time, with a stall limit
//! (`upload`); jobs and the shared values they name (`shared`: held, lacking
//! or refused); and the backlog limit ([`NodeLink::may_read`]: the driver
//! stops reading while its outbox alone is over the send window). Why a
//! connection ended is a [`NodeCloseReason`] (`reason`).

use crate::job::idmap::IdMap;
use crate::job::shared::{SharedId, SharedValue};
use crate::link::beats::MISSED_BEATS;
use crate::link::framing::Framer;
use crate::link::window::SendWindow;
use crate::session::handshake::{refusal, refusal_reason, NodeHandshake, MAX_HANDSHAKE_MESSAGE};
use crate::session::key::KeySet;
use crate::wire::messages::{ClientMsg, DoneJob, KeepOp, NodeMsg, RunJob};
use crate::wire::program::{OfferAnswer, ProgramId};
use crate::wire::run::{JobKey, KEYS_PER_MESSAGE};
use crate::wire::stream::{self, Claimed, Incoming, Streams};
use kept::Kept;
use linger::Linger;
use reason::{NodeCloseReason, UploadRefusal};
use shared::SharedRefusals;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};
use upload::{OneUpload, ONE_AT_A_TIME};

pub use events::{NodeAction, NodeEvent};

mod events;
mod kept;
mod linger;
pub(crate) mod reason;
mod results;
mod shared;
mod spill;
mod upload;

/// The largest frame a client may send before it has authenticated: its
/// handshake message, and its first sealed frame.
pub const CLIENT_HANDSHAKE_MAX_FRAME: usize = MAX_HANDSHAKE_MESSAGE;

/// How the node's side of a connection behaves.
#[derive(Debug, Clone)]
pub struct NodeLinkConfig {
    /// The keys a client may hold (two during a rollover).
    pub keys: KeySet,
    /// Time a client has to authenticate.
    pub handshake_timeout: Duration,
    /// The longest heartbeat interval accepted, announced in `Welcome`.
    pub heartbeat: Duration,
    /// The largest frame, either way, after the handshake.
    pub max_frame: usize,
    /// The credit window in jobs in flight (announced in `Welcome`).
    pub credit_jobs: usize,
    /// The credit window in bytes of arguments in flight (announced in
    /// `Welcome`); one job alone may go over it.
    pub credit_bytes: usize,
    /// The largest arguments taken from a client, in bytes (`--max-payload`,
    /// announced in `Welcome`); also what its open streams may hold together.
    pub max_payload: u64,
    /// How long a stream from the client may go without progress before
    /// the connection is dropped.
    pub stream_stall: Duration,
    /// The send window in bytes: results wait while this much is unsent
    /// (see [`crate::link::window`]).
    pub send_window: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for the client's handshake message.
    Handshake,
    /// Answered; waiting for the client's first sealed frame.
    Proving,
    Ready,
    Draining,
    Closed,
}

/// The node's side of one connection.
pub struct NodeLink {
    config: NodeLinkConfig,
    state: State,
    framer: Framer,
    welcome: NodeMsg,
    draining: bool,
    /// The client's first sealed frame opened on this connection.
    authenticated: bool,
    heard: Instant,
    deadline: Instant,
    /// Jobs accepted and not ended, with their arguments' size: the credit
    /// in use.
    inflight: IdMap<usize>,
    inflight_bytes: usize,
    /// Results too large to travel inline, going out as streams.
    streams: Streams<NodeMsg>,
    /// Arguments coming in as streams.
    incoming: Incoming,
    /// The largest result the client takes (its `Limits`).
    peer_max: u64,
    /// Finished jobs whose results wait for the send window, in order;
    /// their credit stays taken.
    held: VecDeque<DoneJob>,
    /// The bytes of their results.
    held_bytes: u64,
    window: SendWindow,
    /// The driver's outbox, as it last said ([`NodeLink::send_more`]).
    outbox: u64,
    /// Bytes in transmits not yet polled.
    queued: u64,
    /// Frames to write, in order.
    transmits: VecDeque<Vec<u8>>,
    actions: VecDeque<NodeAction>,
    /// The node's id (from its `Welcome`): failed jobs name it.
    node_id: String,
    /// The program upload under way, one at a time.
    upload: OneUpload,
    /// Shared values the node refused over `--shared-max`.
    refused_shared: SharedRefusals,
    /// Kept results and values of this connection, and what waits for them.
    kept: Kept,
    /// Reports of kept results waiting to share a frame.
    linger: Linger,
    /// The client named its journaled run (`Resume`): once per connection.
    resumed: bool,
    /// The time of the event being handled.
    now: Instant,
}

impl NodeLink {
    /// A fresh connection: `welcome` is the node's first sealed frame (its
    /// `heartbeat_ms` is set here).
    pub fn new(config: NodeLinkConfig, mut welcome: NodeMsg, now: Instant) -> Self {
        if let NodeMsg::Welcome {
            heartbeat_ms,
            credit_jobs,
            credit_bytes,
            max_payload,
            ..
        } = &mut welcome
        {
            *heartbeat_ms = u64::try_from(config.heartbeat.as_millis()).unwrap_or(u64::MAX);
            *credit_jobs = u32::try_from(config.credit_jobs).unwrap_or(u32::MAX);
            *credit_bytes = u64::try_from(config.credit_bytes).unwrap_or(u64::MAX);
            *max_payload = config.max_payload;
        }
        let node_id = match &welcome {
            NodeMsg::Welcome { node_id, .. } => node_id.clone(),
            _ => String::new(),
        };
        let limits = stream::Limits {
            max_payload: config.max_payload,
            max_buffered: config.max_payload,
            stall: config.stream_stall,
            ..stream::Limits::default()
        };
        NodeLink {
            framer: Framer::new(CLIENT_HANDSHAKE_MAX_FRAME),
            deadline: now + config.handshake_timeout,
            state: State::Handshake,
            authenticated: false,
            welcome,
            draining: false,
            heard: now,
            inflight: IdMap::default(),
            inflight_bytes: 0,
            streams: Streams::new(stream::chunk_size(config.max_frame)),
            incoming: Incoming::new(limits),
            peer_max: stream::DEFAULT_MAX_PAYLOAD,
            held: VecDeque::new(),
            held_bytes: 0,
            window: SendWindow::new(config.send_window),
            outbox: 0,
            queued: 0,
            transmits: VecDeque::new(),
            actions: VecDeque::new(),
            node_id,
            upload: OneUpload::default(),
            refused_shared: SharedRefusals::default(),
            kept: Kept::default(),
            linger: Linger::default(),
            resumed: false,
            now,
            config,
        }
    }

    /// Whether the connection is closed (nothing more to do but close it).
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Whether the client has authenticated.
    pub fn is_ready(&self) -> bool {
        matches!(self.state, State::Ready | State::Draining)
    }

    /// Whether the client proved itself on this connection (still true
    /// once it closed): a connection that closes without is a failed handshake.
    pub fn authenticated(&self) -> bool {
        self.authenticated
    }

    /// The next frame to write, in order, if any.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        let bytes = self.transmits.pop_front()?;
        self.queued = self.queued.saturating_sub(bytes.len() as u64);
        Some(bytes)
    }

    /// The next thing the node must do or know, if any. Carrying one out
    /// may queue transmits and more of these: poll both until both are
    /// empty.
    pub fn poll_event(&mut self) -> Option<NodeAction> {
        loop {
            let action = self.actions.pop_front()?;
            // An offer read in the same batch as one the driver has since
            // answered `Need` comes after that upload began: one at a time.
            if let NodeAction::Offer(info) = &action {
                if self.upload.busy() {
                    self.refuse_offer(info.id);
                    continue;
                }
            }
            return Some(action);
        }
    }

    /// When to report [`NodeEvent::Timer`] if nothing happens before.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Handshake | State::Proving => Some(self.deadline),
            State::Ready | State::Draining => {
                let dead = self.dead_at();
                let soonest = [
                    self.incoming.poll_timeout(),
                    self.upload.deadline(),
                    self.linger.deadline(),
                ];
                Some(soonest.into_iter().flatten().fold(dead, Instant::min))
            }
            State::Closed => None,
        }
    }

    /// The outbox's buffer a driver keeps while it sleeps with nothing to
    /// write: an idle connection does not hold the memory of a backlog it
    /// once had.
    pub const IDLE_OUTBOX: usize = 64 << 10;

    /// Whether the driver may read from the client while its outbox holds
    /// `outbox` bytes: not while that alone is over the send window (a
    /// client that does not read its results is held there by TCP). Its
    /// queued work is bounded by its credit window instead, and control
    /// frames always get through once the outbox drains.
    pub fn may_read(&self, outbox: usize) -> bool {
        outbox as u64 <= self.config.send_window
    }

    fn dead_at(&self) -> Instant {
        self.heard + self.config.heartbeat * MISSED_BEATS
    }

    /// Feeds one event that happened at `now`.
    pub fn handle(&mut self, event: NodeEvent<'_>, now: Instant) {
        if self.state == State::Closed {
            return;
        }
        self.now = now;
        self.on_event(event, now);
        self.settle_kept();
    }

    fn on_event(&mut self, event: NodeEvent<'_>, now: Instant) {
        match event {
            NodeEvent::Received(bytes) => self.on_bytes(bytes, now),
            NodeEvent::Timer => self.on_timer(now),
            NodeEvent::Finished(done) => self.finished(done),
            NodeEvent::GiveBack(jobs) if !jobs.is_empty() => {
                jobs.iter().for_each(|(id, _)| self.ended(*id));
                self.send(&NodeMsg::Returned(jobs));
            }
            NodeEvent::GiveBack(_) => {}
            NodeEvent::NeedShared { ids, jobs } => self.need_shared(ids, jobs),
            NodeEvent::Spilled { id, result } => {
                let done = self.kept.spilled(id, result);
                self.finished(done.into_iter().collect());
            }
            NodeEvent::ReadBack {
                value,
                fetch,
                attempt,
                bytes,
            } => {
                let done = self
                    .kept
                    .read_back(value, (fetch, attempt), bytes, &self.node_id);
                self.finished(vec![done]);
            }
            NodeEvent::Ended(ids) => ids.into_iter().for_each(|id| self.ended(id)),
            NodeEvent::Status(status) => self.send(&NodeMsg::Status(*status)),
            NodeEvent::Orphans(keys) => self.orphans(keys),
            NodeEvent::Exported {
                id,
                attempt,
                value,
                bytes,
            } => {
                let result = match bytes {
                    Some(bytes) => Ok(serde_bytes::ByteBuf::from(bytes)),
                    None => Err(kept::not_here(value, &self.node_id, attempt)),
                };
                let done = DoneJob {
                    id,
                    attempt,
                    result,
                    exec_ns: 0,
                    kept: None,
                };
                self.finished(vec![done]);
            }
            NodeEvent::Drain => {
                self.draining = true;
                if self.state == State::Ready {
                    self.state = State::Draining;
                    self.send(&NodeMsg::Draining);
                }
            }
            NodeEvent::Stop => {
                let waiting = self.kept.take_waiting();
                if self.is_ready() {
                    self.send_lingering(true);
                    // Parked jobs go back with the rest (theirs went unrun).
                    if !waiting.is_empty() {
                        self.send(&NodeMsg::Returned(waiting));
                    }
                    self.send(&NodeMsg::Goodbye);
                }
                self.close(NodeCloseReason::Goodbye);
            }
            NodeEvent::Refuse(reason) => {
                if self.framer.is_secure() {
                    self.send(&NodeMsg::Reject {
                        reason: reason.clone(),
                        retry: true,
                    });
                } else {
                    self.send_raw(&crate::session::handshake::refusal_busy(&reason));
                }
                self.close(NodeCloseReason::Refused(reason));
            }
            NodeEvent::TransportClosed(why) => self.close(NodeCloseReason::Transport(why)),
            NodeEvent::Offered { id, answer } => {
                if answer == OfferAnswer::Need {
                    self.upload.begin(id, now);
                }
                self.send(&NodeMsg::Offered { id, answer })
            }
            NodeEvent::Uploaded(id) => self.upload.end(id),
            NodeEvent::UploadFailed { id, reason } => {
                self.upload.end(id);
                self.send(&NodeMsg::ProgramRefused { id, reason })
            }
            NodeEvent::Stored { id, outcome } => self.refused_shared.stored(id, outcome),
            NodeEvent::ProgramReady { id, jobs: Ok(jobs) } => {
                self.send(&NodeMsg::ProgramReady { id, jobs })
            }
            NodeEvent::ProgramReady {
                id,
                jobs: Err(reason),
            } => self.send(&NodeMsg::ProgramRefused { id, reason }),
        }
    }

    fn on_timer(&mut self, now: Instant) {
        if let Some(e) = self.incoming.expire(now) {
            return self.fail(NodeCloseReason::Broke(e.to_string()));
        }
        match self.state {
            State::Handshake | State::Proving if now >= self.deadline => {
                self.fail(NodeCloseReason::HandshakeTimeout)
            }
            State::Ready | State::Draining if now >= self.dead_at() => {
                let silent = now.saturating_duration_since(self.heard);
                self.fail(NodeCloseReason::Silent(silent));
            }
            State::Ready | State::Draining => {
                if let Some((id, reason)) = self.upload.expire(now) {
                    self.refuse_upload(id, reason);
                }
                self.send_lingering(false);
            }
            _ => {}
        }
    }

    fn on_bytes(&mut self, bytes: &[u8], now: Instant) {
        self.heard = now;
        self.framer.push(bytes);
        while !self.is_closed() {
            if self.state == State::Handshake {
                match self.framer.decode_handshake() {
                    Ok(Some(first)) => self.on_handshake(&first),
                    Ok(None) => return,
                    Err(e) => {
                        return self
                            .fail(NodeCloseReason::Broke(format!("{e} during the handshake")))
                    }
                }
                continue;
            }
            match self.framer.decode::<ClientMsg>() {
                Ok(Some(msg)) => self.on_message(msg, now),
                Ok(None) => return,
                Err(e) if self.state == State::Proving => {
                    return self.fail(NodeCloseReason::Broke(format!("{e} during the handshake")))
                }
                Err(e) => return self.fail(NodeCloseReason::Broke(e.to_string())),
            }
        }
    }

    fn on_message(&mut self, msg: ClientMsg, now: Instant) {
        if self.state == State::Proving {
            self.mark_authenticated();
        }
        let claimed = match msg {
            ClientMsg::Stream(frame) => self.incoming.receive(frame, now),
            ClientMsg::RunStreamed { stream, mut job } => {
                match self.incoming.claim_or_refused(stream) {
                    Ok(Claimed::Refused) => {
                        // Its arguments did not fit the node's memory: handed
                        // back, as a job refused for memory is.
                        self.send(&NodeMsg::Returned(vec![(job.id, job.attempt)]));
                        Ok(())
                    }
                    Ok(Claimed::Payload(args)) => {
                        job.args = serde_bytes::ByteBuf::from(args);
                        match self.draining {
                            true => self.send(&NodeMsg::Returned(vec![(job.id, job.attempt)])),
                            false => self.run(vec![job], true),
                        }
                        Ok(())
                    }
                    Err(e) => Err(e),
                }
            }
            ClientMsg::Share { id, stream, kept } => match self.incoming.claim_or_refused(stream) {
                // Over the node's memory: not kept; the jobs that name it
                // are handed back (and the value asked for) when they come.
                Ok(Claimed::Refused) => Ok(()),
                // The client's own name for its value: kept for this
                // connection alone, so not checked against the bytes.
                Ok(Claimed::Payload(bytes)) if kept => {
                    self.kept.insert(id, SharedValue::kept(id, bytes));
                    Ok(())
                }
                Ok(Claimed::Payload(bytes)) if SharedId::of(&bytes) != id => {
                    let why = format!("shared value {id} does not match its bytes");
                    self.fail(NodeCloseReason::Broke(why));
                    Ok(())
                }
                Ok(Claimed::Payload(bytes)) => {
                    self.actions.push_back(NodeAction::Share { id, bytes });
                    Ok(())
                }
                Err(e) => Err(e),
            },
            msg => match self.incoming.check_claimed() {
                Ok(()) => return self.on_plain(msg, now),
                Err(e) => Err(e),
            },
        };
        if let Err(e) = claimed {
            self.fail(NodeCloseReason::Broke(e.to_string()));
        }
    }

    /// A message that carries no stream.
    fn on_plain(&mut self, msg: ClientMsg, now: Instant) {
        match msg {
            ClientMsg::Run(jobs) if self.draining => {
                let back = jobs.iter().map(|j| (j.id, j.attempt)).collect();
                self.send(&NodeMsg::Returned(back));
            }
            ClientMsg::Run(jobs) => self.run(jobs, false),
            // Only a job in flight here can be cancelled: the node keeps
            // each cancel until its job comes up, so cancels for other ids
            // would pile up for as long as any job of the connection runs.
            // A parked job or fetch leaves at once, as one not started.
            ClientMsg::Cancel { id } if self.kept.cancel(id) => self.ended(id),
            ClientMsg::Cancel { id } if self.inflight.contains_key(&id) => {
                self.actions.push_back(NodeAction::Cancel(id))
            }
            ClientMsg::Cancel { .. } => {}
            ClientMsg::Ping(n) => self.send(&NodeMsg::Pong(n)),
            ClientMsg::Status => self.actions.push_back(NodeAction::StatusWanted),
            ClientMsg::Goodbye => self.close(NodeCloseReason::Goodbye),
            ClientMsg::Offer(info) if self.upload.busy() => self.refuse_offer(info.id),
            ClientMsg::Offer(info) => self.actions.push_back(NodeAction::Offer(info)),
            ClientMsg::Chunk { id, offset, data } => match self.upload.chunk(id, now) {
                Ok(()) => self
                    .actions
                    .push_back(NodeAction::Chunk { id, offset, data }),
                Err(refused) => self.refuse_upload(id, refused),
            },
            ClientMsg::Limits { max_payload } => self.peer_max = max_payload,
            ClientMsg::Resume { .. } if self.resumed => self.fail(NodeCloseReason::Broke(
                "a connection names its run (Resume) once".to_owned(),
            )),
            ClientMsg::Resume { run } => {
                self.resumed = true;
                self.actions.push_back(NodeAction::Resume(run))
            }
            ClientMsg::Recorded(keys) => self.actions.push_back(NodeAction::Recorded(keys)),
            ClientMsg::Unshare(ids) => {
                self.refused_shared.unshared(&ids);
                self.kept.remove(&ids);
                self.actions.push_back(NodeAction::Unshare(ids))
            }
            ClientMsg::Shared { .. } => self.fail(NodeCloseReason::Broke(
                "a client sends shared values as streams (Share), not inline".to_owned(),
            )),
            ClientMsg::Stream(_) | ClientMsg::RunStreamed { .. } | ClientMsg::Share { .. } => {}
        }
    }

    /// Jobs from the client: those within its credit window are queued,
    /// the rest handed back unrun (a client that keeps to the window it was
    /// given never sees this). Streamed arguments count as jobs, not bytes:
    /// streams have their own bound (`max_payload`).
    fn run(&mut self, jobs: Vec<RunJob>, streamed: bool) {
        let (mut take, mut back) = (Vec::with_capacity(jobs.len()), Vec::new());
        for job in jobs {
            let size = if streamed { 0 } else { job.args.len() };
            let fits = self.inflight.len() < self.config.credit_jobs
                && (self.inflight.is_empty()
                    || self.inflight_bytes.saturating_add(size) <= self.config.credit_bytes);
            match self.inflight.entry(job.id) {
                std::collections::hash_map::Entry::Vacant(slot) if fits => {
                    slot.insert(size);
                    self.inflight_bytes += size;
                    match &job.keep {
                        Some(KeepOp::Fetch(value)) => {
                            self.kept.fetch(job.id, job.attempt, *value, false)
                        }
                        Some(KeepOp::Export(value)) => {
                            self.kept.fetch(job.id, job.attempt, *value, true)
                        }
                        Some(KeepOp::Keep(value)) => {
                            self.kept.will_keep(job.id, *value);
                            take.push(job);
                        }
                        // Made here by a fetch from the peer: kept as a
                        // job's result is, and jobs that name it wait.
                        Some(KeepOp::Pull { value, from }) => {
                            self.kept.will_keep(job.id, *value);
                            self.actions.push_back(NodeAction::Pull {
                                id: job.id,
                                attempt: job.attempt,
                                value: *value,
                                from: from.clone(),
                            });
                        }
                        // The outcome of a job an earlier client of this
                        // connection's run sent: the node looks it up.
                        Some(KeepOp::Reclaim(key)) => self.actions.push_back(NodeAction::Reclaim {
                            id: job.id,
                            attempt: job.attempt,
                            key: *key,
                        }),
                        None => take.push(job),
                    }
                }
                _ => back.push((job.id, job.attempt)),
            }
        }
        if !take.is_empty() {
            self.actions.push_back(NodeAction::Run(take));
        }
        if !back.is_empty() {
            self.send(&NodeMsg::Returned(back));
        }
    }

    /// Jobs of a [`NodeAction::Run`] with the shared values they name: this
    /// connection's kept values (a job naming one a job here will keep parks
    /// until then, and comes again as a `Run`), else `lookup`'s (the node's
    /// store, or the ids it lacks). Jobs naming a value lacking go back and
    /// it is asked for; one refused over `--shared-max` fails; the rest run.
    pub fn with_shared<V: From<Arc<SharedValue>>>(
        &mut self,
        jobs: Vec<RunJob>,
        mut lookup: impl FnMut(&[SharedId]) -> Result<Vec<V>, Vec<SharedId>>,
    ) -> Vec<(RunJob, Vec<V>)> {
        let jobs: Vec<RunJob> = (jobs.into_iter())
            .filter_map(|job| self.kept.park_if_pending(job))
            .collect();
        let kept = &self.kept;
        let lookup = |ids: &[SharedId]| kept.values_or(ids, &mut lookup);
        let sorted = self.refused_shared.resolve(jobs, &self.node_id, lookup);
        // A spilled value the driver could not read back is lost.
        self.kept.lost(&sorted.need);
        if !sorted.failed.is_empty() {
            self.finished(sorted.failed);
        }
        self.need_shared(sorted.need, sorted.back);
        self.settle_kept();
        sorted.ready
    }

    /// Lets go the parked jobs and fetches that can go (see `kept`), until
    /// nothing more changes.
    fn settle_kept(&mut self) {
        loop {
            let spill = self.kept.spill.take_actions();
            self.actions.extend(spill);
            let Some(settled) = self.kept.settle(&self.node_id) else {
                break;
            };
            if !settled.run.is_empty() {
                self.actions.push_back(NodeAction::Run(settled.run));
            }
            if !settled.back.is_empty() {
                settled.back.iter().for_each(|(id, _)| self.ended(*id));
                self.send(&NodeMsg::Returned(settled.back));
            }
            for value in settled.exported {
                self.actions.push_back(NodeAction::Export(value));
            }
            for (id, attempt, value) in settled.elsewhere {
                self.actions
                    .push_back(NodeAction::FetchExported { id, attempt, value });
            }
            if !settled.answers.is_empty() {
                self.finished(settled.answers);
            }
        }
    }

    /// Kept value `id` of this connection, if it holds it (for the node's
    /// exports: [`NodeAction::Export`]).
    pub fn kept_value(&self, id: &SharedId) -> Option<Arc<SharedValue>> {
        self.kept.get(id).cloned()
    }

    /// The room the node has now for kept results (its free memory): the
    /// driver sets it before it reports finished jobs. A result to keep
    /// over it goes back in full.
    pub fn set_keep_room(&mut self, room: u64) {
        self.kept.set_room(room);
    }

    /// The room the node's spill directory has now (`--spill-max` left; 0
    /// turns spill off, as it starts): a result to keep over the memory
    /// room but within this is written to disk ([`NodeAction::Spill`]).
    pub fn set_spill_room(&mut self, room: u64) {
        self.kept.spill.set_room(room);
    }

    /// Kept values this connection holds, and their bytes (counted against
    /// the node's memory).
    pub fn kept(&self) -> (usize, u64) {
        (self.kept.len(), self.kept.bytes())
    }

    /// Jobs and fetches parked here, waiting for a value a job in flight
    /// here will keep.
    pub fn jobs_waiting(&self) -> usize {
        self.kept.waiting()
    }

    /// Asks for the values `ids` and hands `jobs` back.
    fn need_shared(&mut self, ids: Vec<SharedId>, jobs: Vec<(u64, u32)>) {
        if !ids.is_empty() {
            self.send(&NodeMsg::NeedShared(ids));
        }
        if !jobs.is_empty() {
            jobs.iter().for_each(|(id, _)| self.ended(*id));
            self.send(&NodeMsg::Returned(jobs));
        }
    }

    /// Ends (or refuses a chunk of) the upload of `id`: the client and the
    /// driver are told.
    fn refuse_upload(&mut self, id: ProgramId, reason: UploadRefusal) {
        let text = reason.to_string();
        self.actions
            .push_back(NodeAction::UploadRefused { id, reason });
        self.send(&NodeMsg::ProgramRefused { id, reason: text });
    }

    /// Job `id` ended here: its credit comes back.
    fn ended(&mut self, id: u64) {
        self.kept.ended(id);
        if let Some(size) = self.inflight.remove(&id) {
            self.inflight_bytes -= size;
        }
    }

    /// Jobs of this connection queued or running, and their arguments' bytes.
    pub fn credit_used(&self) -> (usize, usize) {
        (self.inflight.len(), self.inflight_bytes)
    }

    /// The client's handshake message: answer it and send the `Welcome`
    /// sealed, or refuse it.
    fn on_handshake(&mut self, first: &[u8]) {
        let answered =
            NodeHandshake::new(self.config.keys.clone(), Vec::new()).and_then(|mut hs| {
                let answer = hs.read(first)?.unwrap_or_default();
                Ok((answer, hs.finish()?))
            });
        match answered {
            Ok((answer, session)) => {
                self.send_raw(&answer);
                self.framer.secure(session);
                let welcome = self.welcome.clone();
                self.send(&welcome);
                self.state = State::Proving;
            }
            Err(e) => {
                self.send_raw(&refusal(&e));
                self.close(NodeCloseReason::Handshake(e));
            }
        }
    }

    /// The client's first sealed frame opened: it holds the session.
    fn mark_authenticated(&mut self) {
        self.authenticated = true;
        self.framer.set_max(self.config.max_frame);
        self.state = State::Ready;
        self.actions.push_back(NodeAction::Authenticated);
        if self.draining {
            self.state = State::Draining;
            self.send(&NodeMsg::Draining);
        }
    }

    /// Answers an offer made while an upload is under way: one at a time.
    fn refuse_offer(&mut self, id: ProgramId) {
        let answer = OfferAnswer::Refuse(ONE_AT_A_TIME.to_owned());
        self.send(&NodeMsg::Offered { id, answer });
    }

    /// The answer to `Resume`: the run's jobs held here, in messages of at
    /// most [`KEYS_PER_MESSAGE`] keys (well within any frame).
    fn orphans(&mut self, keys: Vec<JobKey>) {
        let mut chunks = keys.chunks(KEYS_PER_MESSAGE).peekable();
        if chunks.peek().is_none() {
            return self.send(&NodeMsg::Orphans {
                keys: Vec::new(),
                more: false,
            });
        }
        while let Some(chunk) = chunks.next() {
            let more = chunks.peek().is_some();
            let keys = chunk.to_vec();
            self.send(&NodeMsg::Orphans { keys, more });
        }
    }

    fn send(&mut self, msg: &NodeMsg) {
        // Our own messages always encode (results were size-checked above).
        if let Ok(bytes) = self.framer.encode(msg) {
            self.push_send(bytes);
        }
    }

    /// Bytes to write, counted as unsent until polled (then the driver's
    /// outbox holds them).
    fn push_send(&mut self, bytes: Vec<u8>) {
        // Nothing follows the last word (a reject, a goodbye).
        if self.state == State::Closed {
            return;
        }
        self.queued += bytes.len() as u64;
        self.transmits.push_back(bytes);
    }

    /// A handshake frame (the answer, or a refusal) as bytes to write.
    fn send_raw(&mut self, msg: &[u8]) {
        if let Ok(bytes) = self.framer.encode_handshake(msg) {
            self.push_send(bytes);
        }
    }

    /// Ends the connection with a reason the client is told: sealed once
    /// the session is set, else as a handshake refusal.
    fn fail(&mut self, reason: NodeCloseReason) {
        let text = reason.to_string();
        if self.framer.is_secure() {
            self.send(&NodeMsg::Reject {
                reason: text,
                retry: false,
            });
        } else {
            self.send_raw(&refusal_reason(&text));
        }
        self.close(reason);
    }

    fn close(&mut self, reason: NodeCloseReason) {
        self.state = State::Closed;
        self.streams.clear();
        self.held.clear();
        self.held_bytes = 0;
        self.kept.clear();
        self.actions.push_back(NodeAction::Closed(reason));
    }
}

#[cfg(test)]
mod tests;
