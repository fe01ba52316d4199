//! One client↔node link as a pure state machine: no socket, no clock, no
//! lock, no thread. quinn-proto is the model.
//!
//! The driver (a thread in `ppclient`) feeds [`Event`]s with the time they
//! happened through [`ClientLink::handle`], then takes [`Action`]s out of
//! [`ClientLink::poll`] and carries them out: write bytes, dial, close the
//! socket, resolve or requeue a job. [`ClientLink::poll_timeout`] says when
//! to come back with [`Event::Timer`] if nothing else happens first (the
//! link's only timer, re-armed after every call).
//!
//! ```text
//!  Connecting --Connected--> Handshake --Welcome--> Ready --Draining--> Draining
//!      ^  |                      |                    |                    |
//!      |  ConnectFailed          | lost/refused       | lost, Goodbye      |
//!      |  v                      v                    v                    v
//!     Backoff <------------------+--------------------+--------------------+
//!        (refused for good, no reconnect, or Close: Closed)
//! ```
//!
//! The link owns the jobs in flight (a [`Ledger`]): each job it was given
//! comes out exactly once, as [`Action::Done`] (a result) or
//! [`Action::Returned`] (to be queued again: the node was lost, gave it back
//! or the link closed). A result for a job no longer in flight here (a late
//! result after a loss, a duplicate, another attempt) is dropped.
//!
//! Heartbeats: the interval is the smaller of ours and the node's (its
//! `Welcome` says); the link pings once per interval; any bytes received
//! count as proof of life; a node silent for [`MISSED_BEATS`] intervals is
//! lost; the answer to the last ping gives [`ClientLink::rtt`]. Bytes pass
//! the [`Framer`]: the one place frames are made and read.
//!
//! Arguments over a frame go as streams within the send window
//! (`send_window`, see [`crate::window`]): a job whose arguments would be
//! queued while the unsent bytes (the driver's outbox, which it reports
//! with [`ClientLink::send_more`], and the queued streams) are at the window
//! goes back to the queue unsent, and the link takes no job until they fall
//! under it. A node that stops reading holds at most the window, plus one
//! job's arguments, in this link.
//!
//! The handshake is Noise `NNpsk0` ([`crate::secure`]): the client's first
//! message, the node's answer, then every frame both ways is sealed. The
//! node's `Welcome` is its first sealed frame, and the client's first
//! sealed frame (a `Ping`) is what proves to the node that the client holds
//! the session. Until the node's answer authenticates, frames are capped at
//! [`HANDSHAKE_MAX_FRAME`]. The link offers its keys in turn: a node that
//! does not hold the first (a rollover) is redialled with the next; one that
//! holds none refuses us for good.

use crate::escape::escape;
use crate::framing::Framer;
use crate::job::error::{ErrorKind, JobError};
use crate::job::shared::SharedId;
use crate::ledger::Ledger;
use crate::session::error::SecureError;
use crate::session::handshake::{ClientHandshake, MAX_HANDSHAKE_MESSAGE};
use crate::session::key::KeySet;
use crate::window::SendWindow;
use crate::wire::frame::batches_by_size;
use crate::wire::messages::{ClientMsg, DoneJob, JobInfo, NodeMsg, RunJob};
use crate::wire::program::{OfferAnswer, ProgramId, ProgramInfo};
use crate::wire::stream::{self, Incoming, StreamError, Streams};
use serde_bytes::ByteBuf;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Heartbeat intervals a peer may stay silent; then it is dead.
pub const MISSED_BEATS: u32 = 3;
/// The first pause after a node hands jobs back (it is over `--max-memory`).
pub const REFUSAL_PAUSE: Duration = Duration::from_millis(1);
/// The longest such pause: the node hands back jobs again and again.
pub const MAX_REFUSAL_PAUSE: Duration = Duration::from_millis(100);
/// Upload chunks the node may not have taken yet: each chunk is followed by
/// a ping, and more are sent only while fewer than this many pongs are due,
/// so a slow node is never buried under megabytes it has not read (which
/// would delay its pongs past the silence limit).
pub const UPLOAD_WINDOW: usize = 4;
/// The largest frame accepted before the node has authenticated (its
/// handshake answer): 4 KiB.
pub const HANDSHAKE_MAX_FRAME: usize = MAX_HANDSHAKE_MESSAGE;

/// Where a link stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    /// Waiting for the driver to dial ([`Action::Connect`] was given).
    Connecting,
    /// Connected; authenticating.
    Handshake,
    /// Authenticated; takes jobs.
    Ready,
    /// The node takes no new jobs; it finishes those it has.
    Draining,
    /// Waiting before the next dial.
    Backoff,
    /// Done for good: refused, closed, or not to be redialled.
    Closed,
}

/// How a link behaves.
#[derive(Debug, Clone)]
pub struct LinkConfig {
    /// The cluster's keys: the first is offered first; a second during a
    /// rollover is offered when the node does not hold the first.
    pub keys: KeySet,
    /// Our heartbeat interval (the node may ask for a shorter one).
    pub heartbeat: Duration,
    /// Time a connection has to finish the handshake.
    pub handshake_timeout: Duration,
    /// The largest frame, either way, after the handshake.
    pub max_frame: usize,
    /// The largest result taken from the node, in bytes (told to the node,
    /// which refuses larger results before sending them).
    pub max_payload: u64,
    /// How long a stream from the node may go without progress before the
    /// connection is dropped.
    pub stream_stall: Duration,
    /// The most jobs in flight beyond the node's workers.
    pub max_prefetch: usize,
    /// First wait before redialling; doubles up to `backoff_max`.
    pub backoff_min: Duration,
    /// Longest wait before redialling.
    pub backoff_max: Duration,
    /// Whether to redial after a loss (false for a node that joined us).
    pub reconnect: bool,
    /// Failed connections in a row (never up) after which the link gives
    /// up for good, as refused; `None`: never (nodes named by the user).
    pub give_up_after: Option<u32>,
    /// The send window in bytes: streamed arguments wait while this much
    /// is unsent (see [`crate::window`]).
    pub send_window: u64,
}

/// Why a shared value cannot go to a node.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ShareError {
    /// It is over what the node keeps.
    #[error(transparent)]
    OverSharedMax(#[from] crate::shared::OverSharedMax),
    /// It is over the node's payload limit.
    #[error(transparent)]
    Stream(#[from] StreamError),
}

crate::debug_as_display!(ShareError);

/// A shared value on one connection.
#[derive(Debug, Clone, Copy)]
struct ShareOut {
    /// Its bytes.
    len: u64,
    /// Whether it went out whole (its `Share` was sent).
    sent: bool,
}

/// What the node said about itself when the link came up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeHello {
    /// The node's name for itself.
    pub node_id: String,
    /// Its software version.
    pub version: String,
    /// Its worker slots.
    pub workers: usize,
    /// The jobs it can run.
    pub jobs: Vec<JobInfo>,
    /// The heartbeat interval agreed on.
    pub heartbeat: Duration,
    /// The optional features it speaks (`Welcome.caps`).
    pub caps: Vec<String>,
    /// The node's credit window: the most jobs in flight (0: no bound).
    pub credit_jobs: usize,
    /// The node's credit window: the most bytes of arguments in flight
    /// (one job alone may go over it; 0: no bound).
    pub credit_bytes: usize,
}

/// Something that happened to a link.
#[derive(Debug)]
pub enum Event<'a, T> {
    /// The dial succeeded.
    Connected,
    /// The dial failed.
    ConnectFailed(String),
    /// Bytes arrived.
    Received(&'a [u8]),
    /// The time [`ClientLink::poll_timeout`] gave has come.
    Timer,
    /// The connection broke (read or write failed, peer closed).
    TransportClosed(String),
    /// Jobs to send, each with what the driver keeps for it.
    Submit(Vec<(RunJob, T)>),
    /// Job `id` ended elsewhere (timed out, cancelled): tell the node.
    Cancel(u64),
    /// Close the link for good (the client is going away).
    Close,
}

/// Something the driver must do.
#[derive(Debug)]
pub enum Action<T> {
    /// Dial the node, then report [`Event::Connected`] or [`Event::ConnectFailed`].
    Connect,
    /// Write these bytes, in order.
    Send(Vec<u8>),
    /// Close the connection.
    Disconnect,
    /// The link is up.
    Up(NodeHello),
    /// The node is draining.
    Draining,
    /// The connection ended; the link will redial after `retry_in` (`None`: it will not).
    Down {
        /// Why.
        reason: String,
        /// When the next dial is due.
        retry_in: Option<Duration>,
    },
    /// The node refused us for good (secret, version): the link is closed.
    Failed {
        /// What the node or the handshake said.
        reason: String,
    },
    /// A job's result.
    Done {
        /// The job.
        job: T,
        /// What the node answered.
        result: Result<ByteBuf, JobError>,
        /// Its run time on the node.
        exec: Duration,
    },
    /// The node answered our program offer.
    Offered {
        /// The program.
        id: ProgramId,
        /// Have, need (start the upload) or refused.
        answer: OfferAnswer,
    },
    /// Our program runs on the node now; its jobs are sent as the program's.
    ProgramReady {
        /// The program.
        id: ProgramId,
        /// Its jobs, as the node's worker listed them.
        jobs: Vec<JobInfo>,
    },
    /// The node will not run our program, and why.
    ProgramRefused {
        /// The program.
        id: ProgramId,
        /// Why.
        reason: String,
    },
    /// A job back from the link unrun or unfinished: queue it again.
    Returned {
        /// The job.
        job: T,
        /// True if the node was lost while it had the job (counts against
        /// the job's retries); false if the node gave it back or we closed.
        lost: bool,
    },
}

/// How a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// Broken, timed out, or a protocol error: jobs in flight count as lost.
    Lost,
    /// The node said goodbye: jobs come back without counting as lost.
    Stopped,
    /// Refused for good: the link closes.
    Refused,
}

/// One client↔node link.
pub struct ClientLink<T> {
    config: LinkConfig,
    state: LinkState,
    framer: Framer,
    /// The handshake under way, until the node's answer is read.
    handshake: Option<ClientHandshake>,
    /// Which of our keys this connection offers.
    key_index: usize,
    /// Connections in a row that failed before the link was up.
    failures: u32,
    ledger: Ledger<T>,
    /// The node's credit window in jobs (0: no bound).
    credit_jobs: usize,
    /// The node's credit window in bytes of arguments (0: no bound).
    credit_bytes: usize,
    /// A job did not fit the byte window: take no more until one leaves.
    credit_full: bool,
    /// Streamed arguments wait while the unsent bytes are at it: no job is
    /// taken until they fall under it.
    window: SendWindow,
    /// The driver's outbox, as it last said ([`ClientLink::send_more`]).
    outbox: u64,
    /// The node handed jobs back (over its memory): take none until then,
    /// or until a result shows it made room.
    refused_until: Option<Instant>,
    /// The next such pause: doubles from [`REFUSAL_PAUSE`] while the node
    /// keeps handing jobs back, up to [`MAX_REFUSAL_PAUSE`].
    refusal_pause: Duration,
    jobs: HashSet<(String, String)>,
    /// Our shipped program on this connection, once the node has it ready.
    program: Option<(ProgramId, HashSet<(String, String)>)>,
    heartbeat: Duration,
    heard: Instant,
    next_ping: Instant,
    pings: u64,
    /// When the last ping went, and the round trip of the last one answered.
    pinged: Instant,
    rtt: Option<Duration>,
    /// The pings sent after upload chunks whose pongs are still due.
    chunk_pings: VecDeque<u64>,
    /// Handshake deadline, or the end of the backoff.
    deadline: Instant,
    backoff: Duration,
    ready_since: Option<Instant>,
    /// Arguments too large to travel inline, going out as streams.
    streams: Streams<ClientMsg>,
    /// Results coming in as streams.
    incoming: Incoming,
    /// The largest arguments the node takes.
    peer_max: u64,
    /// Shared values on this connection: their sizes, and whether they
    /// went out whole (else their stream is going out). The node holds them
    /// (unless it asks again).
    shares: HashMap<SharedId, ShareOut>,
    /// The most bytes of shared values the node keeps (its `Welcome`).
    peer_shared_max: u64,
    /// Jobs in flight here that name a shared value still going out: they
    /// are sent right after it.
    waiting: Vec<RunJob>,
    /// Shared values sent, and their bytes, over the link's life.
    shared_sent: (u64, u64),
    actions: VecDeque<Action<T>>,
}

impl<T> ClientLink<T> {
    /// A new link; its first action is [`Action::Connect`].
    pub fn new(config: LinkConfig, now: Instant) -> Self {
        let mut link = Self::accepted(config, now);
        link.actions.push_back(Action::Connect);
        link
    }

    /// A new link over a connection made some other way (a node that joined
    /// us): the driver reports [`Event::Connected`] next; no redial.
    pub fn accepted(config: LinkConfig, now: Instant) -> Self {
        ClientLink {
            framer: Framer::new(HANDSHAKE_MAX_FRAME),
            handshake: None,
            key_index: 0,
            failures: 0,
            ledger: Ledger::new(1, config.max_prefetch),
            credit_jobs: 0,
            credit_bytes: 0,
            credit_full: false,
            window: SendWindow::new(config.send_window),
            outbox: 0,
            refused_until: None,
            refusal_pause: REFUSAL_PAUSE,
            jobs: HashSet::new(),
            program: None,
            heartbeat: config.heartbeat,
            heard: now,
            next_ping: now,
            pings: 0,
            pinged: now,
            rtt: None,
            chunk_pings: VecDeque::new(),
            deadline: now,
            backoff: config.backoff_min,
            ready_since: None,
            state: LinkState::Connecting,
            streams: Streams::new(stream::chunk_size(config.max_frame)),
            incoming: Incoming::new(stream_limits(&config)),
            peer_max: stream::DEFAULT_MAX_PAYLOAD,
            shares: HashMap::new(),
            peer_shared_max: u64::MAX,
            waiting: Vec::new(),
            shared_sent: (0, 0),
            actions: VecDeque::new(),
            config,
        }
    }

    /// Where the link stands.
    pub fn state(&self) -> LinkState {
        self.state
    }

    /// How many more jobs the node may take now (0 unless ready), within
    /// its window and the credit it granted.
    pub fn free(&self) -> usize {
        match self.state {
            LinkState::Ready
                if !self.credit_full
                    && self.refused_until.is_none()
                    && self.window.admits(self.unsent()) =>
            {
                self.ledger.free()
            }
            _ => 0,
        }
    }

    /// Jobs in flight.
    pub fn in_flight(&self) -> usize {
        self.ledger.len()
    }

    /// The round trip of the last ping the node answered (the last ping
    /// only: an answer to an older one is ignored), once there is one.
    pub fn rtt(&self) -> Option<Duration> {
        self.rtt
    }

    /// Whether the node advertised job `name` with `signature`, as a
    /// built-in job or one of our program's.
    pub fn can_run(&self, name: &str, signature: &str) -> bool {
        let key = (name.to_owned(), signature.to_owned());
        self.jobs.contains(&key) || self.program.as_ref().is_some_and(|p| p.1.contains(&key))
    }

    /// Which program the node runs this job from: `None` for its built-in
    /// (preferred: it runs in the node's process), else our shipped program.
    fn program_of(&self, name: &str) -> Option<ProgramId> {
        if self.jobs.iter().any(|(n, _)| n == name) {
            return None;
        }
        let (id, jobs) = self.program.as_ref()?;
        jobs.iter().any(|(n, _)| n == name).then_some(*id)
    }

    /// Offers our program to the node (ignored unless the link is up).
    pub fn offer(&mut self, info: &ProgramInfo) {
        if self.connected() && self.state != LinkState::Handshake {
            self.send(&ClientMsg::Offer(info.clone()));
        }
    }

    /// Sends one piece of an upload the node asked for; false if the
    /// connection is not up (the upload is over).
    pub fn chunk(&mut self, id: ProgramId, offset: u64, data: Vec<u8>) -> bool {
        if !self.connected() || self.state == LinkState::Handshake {
            return false;
        }
        let data = ByteBuf::from(data);
        self.send(&ClientMsg::Chunk { id, offset, data });
        self.pings += 1;
        self.send(&ClientMsg::Ping(self.pings));
        self.chunk_pings.push_back(self.pings);
        true
    }

    /// Whether the node has taken enough of the upload for another chunk
    /// (see [`UPLOAD_WINDOW`]).
    pub fn upload_room(&self) -> bool {
        self.chunk_pings.len() < UPLOAD_WINDOW
    }

    /// The next thing to do, if any.
    pub fn poll(&mut self) -> Option<Action<T>> {
        self.actions.pop_front()
    }

    /// When to report [`Event::Timer`] if nothing happens before.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            LinkState::Handshake | LinkState::Backoff => Some(self.deadline),
            LinkState::Ready | LinkState::Draining => {
                let beat = self.next_ping.min(self.dead_at());
                let beat = self.refused_until.map_or(beat, |t| t.min(beat));
                Some(self.incoming.poll_timeout().map_or(beat, |t| t.min(beat)))
            }
            LinkState::Connecting | LinkState::Closed => None,
        }
    }

    fn dead_at(&self) -> Instant {
        self.heard + self.heartbeat * MISSED_BEATS
    }

    /// Takes back the jobs for which `ended` holds (they ended elsewhere:
    /// timed out, cancelled) and tells the node to stop them.
    pub fn cancel_where(&mut self, ended: impl Fn(&T) -> bool) -> Vec<T> {
        let gone = self.ledger.remove_where(ended);
        self.credit_full &= gone.is_empty();
        let mut jobs = Vec::with_capacity(gone.len());
        for (id, job) in gone {
            self.abort_stream(id);
            self.send(&ClientMsg::Cancel { id });
            jobs.push(job);
        }
        jobs
    }

    /// Feeds one event that happened at `now`.
    pub fn handle(&mut self, event: Event<'_, T>, now: Instant) {
        match event {
            Event::Connected => self.on_connected(now),
            Event::ConnectFailed(reason) => {
                if self.state == LinkState::Connecting {
                    self.lose(reason, false, now);
                }
            }
            Event::Received(bytes) => self.on_bytes(bytes, now),
            Event::Timer => self.on_timer(now),
            Event::TransportClosed(reason) => {
                if self.connected() {
                    self.lose(reason, false, now);
                }
            }
            Event::Submit(jobs) => self.submit(jobs),
            Event::Cancel(id) => {
                if self.ledger.forget(id).is_some() {
                    self.credit_full = false;
                    self.abort_stream(id);
                    self.send(&ClientMsg::Cancel { id });
                }
            }
            Event::Close => self.close(),
        }
    }

    fn connected(&self) -> bool {
        matches!(
            self.state,
            LinkState::Handshake | LinkState::Ready | LinkState::Draining
        )
    }

    fn on_connected(&mut self, now: Instant) {
        if self.state != LinkState::Connecting {
            return;
        }
        self.state = LinkState::Handshake;
        self.framer = Framer::new(HANDSHAKE_MAX_FRAME);
        self.reset_streams();
        self.deadline = now + self.config.handshake_timeout;
        self.heard = now;
        let keys = self.config.keys.keys();
        let key = keys
            .get(self.key_index)
            .unwrap_or(self.config.keys.primary());
        let first = ClientHandshake::start(key, &[]).and_then(|(hs, first)| {
            let frame = self.framer.encode_handshake(&first);
            Ok((hs, frame.map_err(|_| SecureError::TooLarge)?))
        });
        match first {
            Ok((hs, frame)) => {
                self.handshake = Some(hs);
                self.actions.push_back(Action::Send(frame));
            }
            Err(e) => self.lose(e.to_string(), false, now),
        }
    }

    fn on_timer(&mut self, now: Instant) {
        if self.refused_until.is_some_and(|t| now >= t) {
            self.refused_until = None;
        }
        if self.connected() {
            if let Some(e) = self.incoming.expire(now) {
                return self.lose(format!("dropped the node: {e}"), false, now);
            }
        }
        match self.state {
            LinkState::Handshake if now >= self.deadline => {
                self.lose("the handshake timed out".into(), false, now);
            }
            LinkState::Ready | LinkState::Draining if now >= self.dead_at() => {
                let silent = now.saturating_duration_since(self.heard);
                self.lose(format!("node silent for {silent:?}: lost"), false, now);
            }
            LinkState::Ready | LinkState::Draining if now >= self.next_ping => {
                self.pings += 1;
                self.send(&ClientMsg::Ping(self.pings));
                self.pinged = now;
                self.next_ping = now + self.heartbeat;
            }
            LinkState::Backoff if now >= self.deadline => {
                self.state = LinkState::Connecting;
                self.actions.push_back(Action::Connect);
            }
            _ => {}
        }
    }

    fn on_bytes(&mut self, bytes: &[u8], now: Instant) {
        if !self.connected() {
            return;
        }
        self.heard = now;
        self.framer.push(bytes);
        while self.connected() {
            if !self.framer.is_secure() {
                match self.framer.decode_handshake() {
                    Ok(Some(answer)) => self.on_answer(&answer, now),
                    Ok(None) => return,
                    Err(e) => {
                        let reason = format!("bad handshake frame from the node: {e}");
                        return self.lose(reason, false, now);
                    }
                }
                continue;
            }
            match self.framer.decode::<NodeMsg>() {
                Ok(Some(msg)) => self.on_message(msg, now),
                Ok(None) => return,
                Err(e) => {
                    let reason = escape(&format!("bad frame from the node: {e}")).into_owned();
                    return self.lose(reason, false, now);
                }
            }
        }
    }

    fn on_message(&mut self, msg: NodeMsg, now: Instant) {
        if self.state == LinkState::Handshake {
            return self.on_handshake(msg, now);
        }
        let claimed = match msg {
            NodeMsg::Stream(frame) => self.incoming.receive(frame, now),
            NodeMsg::DoneStreamed { stream, mut job } => match self.incoming.claim(stream) {
                Ok(payload) => {
                    job.result = Ok(ByteBuf::from(payload));
                    self.done(vec![job]);
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
            let reason = format!("bad stream from the node: {e}");
            self.lose(reason, false, now);
        }
    }

    /// Results: each resolves the job it answers, if still in flight here.
    fn done(&mut self, results: Vec<DoneJob>) {
        for d in results {
            let exec = Duration::from_nanos(d.exec_ns);
            if let Some(job) = self.ledger.done(d.id, d.attempt, exec) {
                self.credit_full = false;
                // A result: the node made room.
                self.refused_until = None;
                self.refusal_pause = REFUSAL_PAUSE;
                self.actions.push_back(Action::Done {
                    job,
                    result: d.result,
                    exec,
                });
            }
        }
    }

    /// A message that carries no stream.
    fn on_plain(&mut self, msg: NodeMsg, now: Instant) {
        match msg {
            NodeMsg::Done(results) => self.done(results),
            NodeMsg::Returned(back) => {
                // Over its memory (or draining): pause before sending it
                // more, so that a full node and this client do not bounce
                // jobs back and forth.
                self.refused_until = Some(now + self.refusal_pause);
                self.refusal_pause = (self.refusal_pause * 2).min(MAX_REFUSAL_PAUSE);
                for (id, attempt) in back {
                    if let Some(job) = self.ledger.take(id, attempt) {
                        self.credit_full = false;
                        self.actions
                            .push_back(Action::Returned { job, lost: false });
                    }
                }
            }
            NodeMsg::Draining => {
                self.state = LinkState::Draining;
                self.actions.push_back(Action::Draining);
            }
            NodeMsg::Goodbye => self.end("the node stopped".into(), End::Stopped, now),
            NodeMsg::Reject { reason, .. } => self.lose(
                format!("the node closed the connection: {}", escape(&reason)),
                false,
                now,
            ),
            NodeMsg::Pong(n) => {
                let after_chunk = self.chunk_pings.contains(&n);
                while self.chunk_pings.front().is_some_and(|&p| p <= n) {
                    self.chunk_pings.pop_front();
                }
                if !after_chunk && n != 0 && n == self.pings {
                    self.rtt = Some(now.saturating_duration_since(self.pinged));
                }
            }
            NodeMsg::Status(_) => {}
            NodeMsg::Offered { id, answer } => {
                self.actions.push_back(Action::Offered { id, answer })
            }
            NodeMsg::ProgramReady { id, jobs } => {
                let set = jobs
                    .iter()
                    .map(|j| (j.name.clone(), j.signature.clone()))
                    .collect();
                self.program = Some((id, set));
                self.actions.push_back(Action::ProgramReady { id, jobs });
            }
            NodeMsg::ProgramRefused { id, reason } => self
                .actions
                .push_back(Action::ProgramRefused { id, reason }),
            NodeMsg::NeedShared(ids) => {
                // Sent and evicted (or never kept): to be sent again before
                // the jobs that name them. One going out already stays.
                for id in ids {
                    if self.shares.get(&id).is_some_and(|s| s.sent) {
                        self.shares.remove(&id);
                    }
                }
            }
            NodeMsg::Stream(_) | NodeMsg::DoneStreamed { .. } => {}
            NodeMsg::Welcome { .. } => {
                self.lose("a second Welcome from the node".into(), false, now)
            }
        }
    }

    /// The node's handshake answer: the session starts, or the node
    /// refused us (for good, or for now, or for this key only).
    fn on_answer(&mut self, answer: &[u8], now: Instant) {
        let Some(mut hs) = self.handshake.take() else {
            return self.lose("no handshake under way".into(), false, now);
        };
        match hs.read(answer).and_then(|_| hs.finish()) {
            Ok(session) => {
                // The node proved it holds the key: its Welcome may be large.
                self.framer.secure(session);
                self.framer.set_max(self.config.max_frame);
                // Our first sealed frame proves to the node that we hold the
                // session (a replayed first message gets no further).
                self.send(&ClientMsg::Ping(0));
                self.send(&ClientMsg::Limits {
                    max_payload: self.config.max_payload,
                });
            }
            Err(SecureError::WrongKey) if self.key_index + 1 < self.config.keys.keys().len() => {
                self.key_index += 1;
                let reason = "the node does not hold our first key: trying the next".into();
                self.lose(reason, false, now);
            }
            Err(SecureError::WrongKey) => {
                self.key_index = 0;
                self.lose(SecureError::WrongKey.to_string(), true, now);
            }
            Err(SecureError::Busy(r)) => self.lose(format!("refused by the node: {r}"), false, now),
            // Changed on the way, or not the node: try again later.
            Err(e @ SecureError::Tampered) => self.lose(e.to_string(), false, now),
            Err(e) => self.lose(e.to_string(), true, now),
        }
    }

    /// The first sealed frame from the node must be its `Welcome`.
    fn on_handshake(&mut self, msg: NodeMsg, now: Instant) {
        match msg {
            welcome @ NodeMsg::Welcome { .. } => self.welcome(welcome, now),
            NodeMsg::Reject { reason, .. } => {
                let reason = format!("refused by the node: {}", escape(&reason));
                self.lose(reason, false, now)
            }
            _ => self.lose("the node did not send its Welcome first".into(), false, now),
        }
    }

    fn welcome(&mut self, welcome: NodeMsg, now: Instant) {
        let NodeMsg::Welcome {
            node_id,
            version,
            workers,
            jobs,
            heartbeat_ms,
            caps,
            max_payload,
            credit_jobs,
            credit_bytes,
            shared_max,
            ..
        } = welcome
        else {
            return;
        };
        self.heartbeat = match heartbeat_ms {
            0 => self.config.heartbeat,
            ms => self.config.heartbeat.min(Duration::from_millis(ms)),
        };
        self.peer_max = match max_payload {
            0 => stream::DEFAULT_MAX_PAYLOAD,
            n => n,
        };
        self.peer_shared_max = match shared_max {
            0 => u64::MAX,
            n => n,
        };
        let workers = workers as usize;
        self.credit_jobs = usize::try_from(credit_jobs).unwrap_or(usize::MAX);
        self.credit_bytes = usize::try_from(credit_bytes).unwrap_or(usize::MAX);
        self.credit_full = false;
        self.ledger = Ledger::new(workers, self.config.max_prefetch).with_credit(self.credit_jobs);
        self.jobs = jobs
            .iter()
            .map(|j| (j.name.clone(), j.signature.clone()))
            .collect();
        self.program = None;
        self.chunk_pings.clear();
        self.framer.set_max(self.config.max_frame);
        self.state = LinkState::Ready;
        self.failures = 0;
        self.heard = now;
        self.next_ping = now + self.heartbeat;
        self.ready_since = Some(now);
        self.actions.push_back(Action::Up(NodeHello {
            node_id,
            version,
            workers,
            jobs,
            heartbeat: self.heartbeat,
            caps,
            credit_jobs: self.credit_jobs,
            credit_bytes: self.credit_bytes,
        }));
    }

    fn submit(&mut self, jobs: Vec<(RunJob, T)>) {
        if self.state != LinkState::Ready {
            for (_, job) in jobs {
                self.actions
                    .push_back(Action::Returned { job, lost: false });
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
    fn send_runs(&mut self, runs: Vec<RunJob>) {
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
                Ok(bytes) => self.actions.push_back(Action::Send(bytes)),
                Err(e) => {
                    for (id, attempt) in ids {
                        self.fail_sent(id, attempt, e.to_string());
                    }
                }
            }
        }
    }

    /// A job in the ledger that cannot be sent: it resolves with `message`.
    fn fail_sent(&mut self, id: u64, attempt: u32, message: String) {
        if let Some(job) = self.ledger.take(id, attempt) {
            self.credit_full = false;
            self.actions.push_back(Action::Done {
                job,
                result: Err(JobError::new(ErrorKind::Codec, message)),
                exec: Duration::ZERO,
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
    pub fn share(&mut self, id: SharedId, bytes: Arc<Vec<u8>>) -> Result<(), ShareError> {
        if !self.needs_share(&id) {
            return Ok(());
        }
        let len = bytes.len() as u64;
        if len > self.peer_shared_max {
            let max = self.peer_shared_max;
            return Err(crate::shared::OverSharedMax { len, max }.into());
        }
        self.streams
            .push(bytes, self.peer_max, |stream| ClientMsg::Share {
                id,
                stream,
            })?;
        self.shares.insert(id, ShareOut { len, sent: false });
        Ok(())
    }

    /// The client is done with these shared values: the node is told to
    /// free them (a stream of one still going out is dropped).
    pub fn unshare(&mut self, ids: &[SharedId]) {
        let gone: Vec<SharedId> = ids
            .iter()
            .filter(|id| self.shares.remove(id).is_some())
            .copied()
            .collect();

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
    fn shared_arrived(&mut self, id: SharedId) {
        if let Some(share) = self.shares.get_mut(&id) {
            share.sent = true;
            self.shared_sent.0 += 1;
            self.shared_sent.1 += share.len;
        }
        self.release_waiting();
    }

    /// Sends the waiting jobs whose shared values have all gone out.
    fn release_waiting(&mut self) {
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
    fn within_credit(&mut self, jobs: Vec<(RunJob, T)>) -> Vec<(RunJob, T)> {
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
                self.actions
                    .push_back(Action::Returned { job, lost: false });
            }
        }
        fit
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
    fn unsent(&self) -> u64 {
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
    /// last chunk) as [`Action::Send`]; false if there is none. The driver
    /// calls it when what it has to write runs low, so that heartbeats and
    /// small jobs queued meanwhile go between the chunks.
    pub fn pull_stream(&mut self) -> bool {
        if !self.connected() {
            return false;
        }
        let Some((frame, then)) = self.streams.next_frame() else {
            return false;
        };
        // A chunk's frame is allocated once at its size (a few bytes of
        // message around the data).
        let size = match &frame {
            crate::stream::StreamFrame::Chunk { data, .. } => data.len() + 64,
            _ => 0,
        };
        if let Ok(bytes) = self.framer.encode_sized(&ClientMsg::Stream(frame), size) {
            self.actions.push_back(Action::Send(bytes));
        }
        if let Some(msg) = then {
            self.send(&msg);
            if let ClientMsg::Share { id, .. } = msg {
                self.shared_arrived(id);
            }
        }
        true
    }

    /// Drops the stream of job `id`'s arguments, if it is still going out.
    fn abort_stream(&mut self, id: u64) {
        self.waiting.retain(|r| r.id != id);
        let frames = self
            .streams
            .abort_where(|m| matches!(m, ClientMsg::RunStreamed { job, .. } if job.id == id));
        for frame in frames {
            self.send(&ClientMsg::Stream(frame));
        }
    }

    /// A fresh connection's streams: none either way.
    fn reset_streams(&mut self) {
        self.streams.clear();
        self.outbox = 0;
        self.shares.clear();
        self.waiting.clear();
        self.incoming = Incoming::new(stream_limits(&self.config));
    }

    fn send(&mut self, msg: &ClientMsg) {
        // Our own control messages always encode; if one ever did not, the
        // peer would miss it and time us out: nothing is silently corrupted.
        if let Ok(bytes) = self.framer.encode(msg) {
            self.actions.push_back(Action::Send(bytes));
        }
    }

    /// The connection is lost (or never came up); `refused`: for good.
    fn lose(&mut self, reason: String, refused: bool, now: Instant) {
        let how = if refused { End::Refused } else { End::Lost };
        self.end(reason, how, now);
    }

    /// The connection ends: jobs back, then backoff or closed.
    fn end(&mut self, reason: String, how: End, now: Instant) {
        let lost = how != End::Stopped;
        let refused = how == End::Refused;
        self.reset_streams();
        for job in self.ledger.drain() {
            self.actions.push_back(Action::Returned { job, lost });
        }
        if self.connected() {
            self.actions.push_back(Action::Disconnect);
        }
        self.handshake = None;
        if self.ready_since.is_none() {
            self.failures = self.failures.saturating_add(1);
        }
        let give_up = self
            .config
            .give_up_after
            .filter(|&n| how == End::Lost && self.failures >= n);
        if let Some(n) = give_up {
            self.state = LinkState::Closed;
            let reason = format!("dropped after {n} failed attempt(s) in a row: {reason}");
            self.actions.push_back(Action::Failed { reason });
            return;
        }
        if refused {
            self.state = LinkState::Closed;
            self.actions.push_back(Action::Failed { reason });
            return;
        }
        if !self.config.reconnect {
            self.state = LinkState::Closed;
            self.actions.push_back(Action::Down {
                reason,
                retry_in: None,
            });
            return;
        }
        let stable = self
            .ready_since
            .is_some_and(|t| now.saturating_duration_since(t) >= self.config.backoff_max);
        if stable {
            self.backoff = self.config.backoff_min;
        }
        self.ready_since = None;
        let wait = self.backoff;
        self.backoff = (self.backoff * 2).min(self.config.backoff_max);
        self.state = LinkState::Backoff;
        self.deadline = now + wait;
        self.actions.push_back(Action::Down {
            reason,
            retry_in: Some(wait),
        });
    }

    fn close(&mut self) {
        if self.connected() {
            self.send(&ClientMsg::Goodbye);
            self.actions.push_back(Action::Disconnect);
        }
        for job in self.ledger.drain() {
            self.actions
                .push_back(Action::Returned { job, lost: false });
        }
        self.handshake = None;
        self.reset_streams();
        self.state = LinkState::Closed;
    }
}

/// What a link accepts in streams from its peer.
fn stream_limits(config: &LinkConfig) -> stream::Limits {
    stream::Limits {
        max_payload: config.max_payload,
        max_buffered: config.max_payload,
        stall: config.stream_stall,
        ..stream::Limits::default()
    }
}

#[cfg(test)]
mod tests;
