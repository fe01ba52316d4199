//! [`ClientLink`]: one client↔node link as a state machine. This file has
//! its life (dial, handshake, `Welcome`, heartbeats, losses and backoff) and
//! its outputs; what it sends (jobs, shared values, streams) is in
//! `send.rs`.

use crate::escape::escape;
use crate::job::shared::SharedId;
use crate::link::backoff::Backoff;
use crate::link::beats::MISSED_BEATS;
use crate::link::config::{stream_limits, LinkConfig};
use crate::link::framing::Framer;
use crate::link::ledger::Ledger;
use crate::link::offer::Shipping;
use crate::link::output::{Event, LinkEvent, LinkIo, NodeHello};
use crate::link::reason::{DownReason, Refusal};
use crate::link::stall::{write_stall_limit, WriteStall};
use crate::link::sweep::Sweep;
use crate::link::window::SendWindow;
use crate::session::error::SecureError;
use crate::session::handshake::{ClientHandshake, MAX_HANDSHAKE_MESSAGE};
use crate::wire::messages::{ClientMsg, DoneJob, NodeMsg, RunJob, CAP_SHIP};
use crate::wire::program::{OfferAnswer, ProgramId, ProgramInfo};
use crate::wire::run::JobKey;
use crate::wire::stream::{self, Incoming, Streams};
use serde_bytes::ByteBuf;
use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

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
    /// Waiting for the driver to dial ([`LinkIo::Connect`] was given).
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

/// How a connection ended.
#[derive(Debug)]
enum End {
    /// Broken, timed out, or a protocol error: jobs in flight count as lost.
    Lost(DownReason),
    /// The node said goodbye: jobs come back without counting as lost.
    Stopped,
    /// Refused for good: the link closes.
    Refused(Refusal),
}

/// A shared value on one connection.
#[derive(Debug, Clone, Copy)]
pub(super) struct ShareOut {
    /// Its bytes.
    pub(super) len: u64,
    /// Whether it went out whole (its `Share` was sent).
    pub(super) sent: bool,
    /// Whether it is a job's result the node kept (not sent by us).
    pub(super) kept: bool,
}

/// One client↔node link.
pub struct ClientLink<T> {
    pub(super) config: LinkConfig,
    pub(super) state: LinkState,
    pub(super) framer: Framer,
    /// The handshake under way, until the node's answer is read.
    pub(super) handshake: Option<ClientHandshake>,
    /// Which of our keys this connection offers.
    pub(super) key_index: usize,
    /// Connections in a row that failed before the link was up.
    pub(super) failures: u32,
    pub(super) ledger: Ledger<T>,
    /// The node's credit window in jobs (0: no bound).
    pub(super) credit_jobs: usize,
    /// The node's credit window in bytes of arguments (0: no bound).
    pub(super) credit_bytes: usize,
    /// A job did not fit the byte window: take no more until one leaves.
    pub(super) credit_full: bool,
    /// Streamed arguments wait while the unsent bytes are at it: no job is
    /// taken until they fall under it.
    pub(super) window: SendWindow,
    /// The driver's outbox, as it last said ([`ClientLink::send_more`]).
    pub(super) outbox: u64,
    /// The node handed jobs back (over its memory): take none until then,
    /// or until a result shows it made room.
    pub(super) refused_until: Option<Instant>,
    /// The next such pause: doubles from [`REFUSAL_PAUSE`] while the node
    /// keeps handing jobs back, up to [`MAX_REFUSAL_PAUSE`].
    pub(super) refusal_pause: Duration,
    pub(super) jobs: HashSet<(String, String)>,
    /// Our shipped program on this connection, once the node has it ready.
    pub(super) program: Option<(ProgramId, HashSet<(String, String)>)>,
    pub(super) heartbeat: Duration,
    pub(super) heard: Instant,
    pub(super) next_ping: Instant,
    pub(super) pings: u64,
    /// When the last ping went, and the round trip of the last one answered.
    pub(super) pinged: Instant,
    pub(super) rtt: Option<Duration>,
    /// The pings sent after upload chunks whose pongs are still due.
    pub(super) chunk_pings: VecDeque<u64>,
    /// Handshake deadline, or the end of the backoff.
    pub(super) deadline: Instant,
    /// The waits between a loss and the next dial.
    pub(super) backoff: Backoff,
    pub(super) ready_since: Option<Instant>,
    /// Arguments too large to travel inline, going out as streams.
    pub(super) streams: Streams<ClientMsg>,
    /// Results coming in as streams.
    pub(super) incoming: Incoming,
    /// The largest arguments the node takes.
    pub(super) peer_max: u64,
    /// Shared values on this connection: their sizes, and whether they
    /// went out whole (else their stream is going out). The node holds them
    /// (unless it asks again).
    pub(super) shares: HashMap<SharedId, ShareOut>,
    /// The most bytes of shared values the node keeps (its `Welcome`).
    pub(super) peer_shared_max: u64,
    /// Jobs in flight here that name a shared value still going out: they
    /// are sent right after it.
    pub(super) waiting: Vec<RunJob>,
    /// Shared values sent, and their bytes, over the link's life.
    pub(super) shared_sent: (u64, u64),
    /// Job results the node keeps for this connection, and their bytes.
    pub(super) kept_total: (u64, u64),
    /// Kept results the node said it does not have (`NeedShared`), for
    /// the client to make again.
    pub(super) lost_kept: Vec<SharedId>,
    /// Since when the node has taken none of the bytes waiting for it.
    pub(super) stall: WriteStall,
    /// Whether the node speaks the "ship" capability (its `Welcome`).
    pub(super) speaks_ship: bool,
    /// Our program's offer and upload on this connection.
    pub(super) ship: Shipping,
    /// When ended jobs and dropped shared values were last swept.
    pub(super) sweep: Sweep,
    /// The node's `Welcome`, while its answer to our `Resume` comes in.
    pub(super) resuming: Option<NodeHello>,
    /// Bytes to write, in order.
    pub(super) transmits: VecDeque<Vec<u8>>,
    /// Socket commands, in order.
    pub(super) io: VecDeque<LinkIo>,
    /// What happened, for the application.
    pub(super) events: VecDeque<LinkEvent<T>>,
}

impl<T> ClientLink<T> {
    /// A new link; its first socket command is [`LinkIo::Connect`].
    pub fn new(config: LinkConfig, now: Instant) -> Self {
        let mut link = Self::accepted(config, now);
        link.io.push_back(LinkIo::Connect);
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
            backoff: Backoff::new(config.backoff_min, config.backoff_max),
            ready_since: None,
            state: LinkState::Connecting,
            streams: Streams::new(stream::chunk_size(config.max_frame)),
            incoming: Incoming::new(stream_limits(&config)),
            peer_max: stream::DEFAULT_MAX_PAYLOAD,
            shares: HashMap::new(),
            peer_shared_max: u64::MAX,
            waiting: Vec::new(),
            shared_sent: (0, 0),
            kept_total: (0, 0),
            lost_kept: Vec::new(),
            stall: WriteStall::new(write_stall_limit(config.heartbeat)),
            speaks_ship: false,
            ship: Shipping::default(),
            sweep: Sweep::new(now),
            resuming: None,
            transmits: VecDeque::new(),
            io: VecDeque::new(),
            events: VecDeque::new(),
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

    /// Like [`ClientLink::free`], but within the node's credit alone, not
    /// the adaptive window: for jobs sent to wait on the node for kept
    /// inputs being made there (a chain), which take no worker slot there.
    pub fn free_within_credit(&self) -> usize {
        match self.state {
            LinkState::Ready
                if !self.credit_full
                    && self.refused_until.is_none()
                    && self.window.admits(self.unsent()) =>
            {
                self.ledger.credit_free()
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
    pub(super) fn program_of(&self, name: &str) -> Option<ProgramId> {
        if self.jobs.iter().any(|(n, _)| n == name) {
            return None;
        }
        let (id, jobs) = self.program.as_ref()?;
        jobs.iter().any(|(n, _)| n == name).then_some(*id)
    }

    /// Offers our program to the node (ignored unless the link is up); the
    /// offer is no longer due.
    pub fn offer(&mut self, info: &ProgramInfo) {
        self.ship.offer_done();
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

    /// The next bytes to write, if any. Write every transmit polled before
    /// carrying out the next [`ClientLink::poll_io`] command (a goodbye goes
    /// out before the connection closes).
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmits.pop_front()
    }

    /// The next socket command, if any.
    pub fn poll_io(&mut self) -> Option<LinkIo> {
        self.io.pop_front()
    }

    /// The next application event, if any.
    pub fn poll_event(&mut self) -> Option<LinkEvent<T>> {
        self.events.pop_front()
    }

    /// Queues bytes to write on the live connection (none when there is
    /// none: nothing is written to a connection that is gone).
    pub(super) fn transmit(&mut self, bytes: Vec<u8>) {
        if self.connected() {
            self.transmits.push_back(bytes);
        }
    }

    /// When to report [`Event::Timer`] if nothing happens before.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let timer = match self.state {
            LinkState::Handshake | LinkState::Backoff => Some(self.deadline),
            LinkState::Ready | LinkState::Draining => {
                let beat = self.next_ping.min(self.dead_at());
                let beat = self.refused_until.map_or(beat, |t| t.min(beat));
                Some(self.incoming.poll_timeout().map_or(beat, |t| t.min(beat)))
            }
            LinkState::Connecting | LinkState::Closed => None,
        };
        let up = matches!(self.state, LinkState::Ready | LinkState::Draining);
        let look = self.ship.next_look().filter(|_| up);
        let stall = self.stall.deadline().filter(|_| self.connected());
        [timer, look, stall].into_iter().flatten().min()
    }

    /// The driver wrote `wrote` bytes to the socket at `now`, and `left`
    /// still wait in its outbox: a node that takes none of them for
    /// [`write_stall_limit`] is lost at the next [`Event::Timer`].
    pub fn wrote(&mut self, wrote: usize, left: usize, now: Instant) {
        if self.connected() {
            self.stall.wrote(wrote, left, now);
        }
    }

    /// When the next [`ClientLink::sweep`] is due: the driver wakes then
    /// whatever else happens.
    pub fn next_sweep(&self) -> Instant {
        self.sweep.next()
    }

    pub(super) fn dead_at(&self) -> Instant {
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
                    self.lose(reason.into(), now);
                }
            }
            Event::Received(bytes) => self.on_bytes(bytes, now),
            Event::Timer => self.on_timer(now),
            Event::TransportClosed(reason) => {
                if self.connected() {
                    self.lose(reason.into(), now);
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

    pub(super) fn connected(&self) -> bool {
        matches!(
            self.state,
            LinkState::Handshake | LinkState::Ready | LinkState::Draining
        )
    }

    pub(super) fn on_connected(&mut self, now: Instant) {
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
                self.transmit(frame);
            }
            Err(e) => self.lose(DownReason::Secure(e), now),
        }
    }

    pub(super) fn on_timer(&mut self, now: Instant) {
        if self.refused_until.is_some_and(|t| now >= t) {
            self.refused_until = None;
        }
        if self.stall.deadline().is_some_and(|t| now >= t) && self.connected() {
            return self.lose(DownReason::WriteStalled(self.stall.limit()), now);
        }
        if self.connected() {
            if let Some(e) = self.incoming.expire(now) {
                return self.lose(DownReason::StreamExpired(e), now);
            }
        }
        match self.state {
            LinkState::Handshake if now >= self.deadline => {
                self.lose(DownReason::HandshakeTimedOut, now);
            }
            LinkState::Ready | LinkState::Draining if now >= self.dead_at() => {
                let silent = now.saturating_duration_since(self.heard);
                self.lose(DownReason::Silent(silent), now);
            }
            LinkState::Ready | LinkState::Draining if now >= self.next_ping => {
                self.pings += 1;
                self.send(&ClientMsg::Ping(self.pings));
                self.pinged = now;
                self.next_ping = now + self.heartbeat;
            }
            LinkState::Backoff if now >= self.deadline => {
                self.state = LinkState::Connecting;
                self.io.push_back(LinkIo::Connect);
            }
            _ => {}
        }
    }

    pub(super) fn on_bytes(&mut self, bytes: &[u8], now: Instant) {
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
                        let reason = DownReason::BadHandshakeFrame(e.to_string());
                        return self.lose(reason, now);
                    }
                }
                continue;
            }
            match self.framer.decode::<NodeMsg>() {
                Ok(Some(msg)) => self.on_message(msg, now),
                Ok(None) => return,
                Err(e) => {
                    let reason = escape(&format!("bad frame from the node: {e}")).into_owned();
                    return self.lose(DownReason::BadFrame(reason), now);
                }
            }
        }
    }

    pub(super) fn on_message(&mut self, msg: NodeMsg, now: Instant) {
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
            self.lose(DownReason::BadStream(e), now);
        }
    }

    /// Results: each resolves the job it answers, if still in flight here.
    pub(super) fn done(&mut self, results: Vec<DoneJob>) {
        for d in results {
            let exec = Duration::from_nanos(d.exec_ns);
            if let Some(job) = self.ledger.done(d.id, d.attempt, exec) {
                self.credit_full = false;
                // A result: the node made room.
                self.refused_until = None;
                self.refusal_pause = REFUSAL_PAUSE;
                self.events.push_back(LinkEvent::Done {
                    job,
                    result: d.result,
                    exec,
                    kept: d.kept,
                });
            }
        }
    }

    /// A message that carries no stream.
    pub(super) fn on_plain(&mut self, msg: NodeMsg, now: Instant) {
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
                        self.events
                            .push_back(LinkEvent::Returned { job, lost: false });
                    }
                }
            }
            NodeMsg::Draining => {
                self.state = LinkState::Draining;
                self.events.push_back(LinkEvent::Draining);
            }
            NodeMsg::Goodbye => self.end(End::Stopped, now),
            NodeMsg::Reject { reason, .. } => {
                let reason = escape(&reason).into_owned();
                self.lose(DownReason::NodeClosed(reason), now)
            }
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
                // One upload at a time: a second `Need` meanwhile is ignored.
                if matches!(answer, OfferAnswer::Need) && !self.ship.start_upload(id) {
                    return;
                }
                self.events.push_back(LinkEvent::Offered { id, answer })
            }
            NodeMsg::ProgramReady { id, jobs } => {
                let set = jobs
                    .iter()
                    .map(|j| (j.name.clone(), j.signature.clone()))
                    .collect();
                self.program = Some((id, set));
                self.ship.upload_over();
                self.events.push_back(LinkEvent::ProgramReady { id, jobs });
            }
            NodeMsg::ProgramRefused { id, reason } => {
                self.ship.upload_over();
                self.events
                    .push_back(LinkEvent::ProgramRefused { id, reason })
            }
            NodeMsg::NeedShared(ids) => {
                // Sent and evicted (or never kept): to be sent again before
                // the jobs that name them. One going out already stays.
                for id in ids {
                    if self.shares.get(&id).is_some_and(|s| s.sent) {
                        if let Some(share) = self.shares.remove(&id) {
                            if share.kept {
                                // A result it kept and no longer has: lost.
                                self.lost_kept.push(id);
                            }
                            self.forget_kept(&share);
                        }
                    }
                }
            }
            NodeMsg::Stream(_) | NodeMsg::DoneStreamed { .. } => {}
            NodeMsg::Welcome { .. } => self.lose(DownReason::SecondWelcome, now),
            // Only ever the answer to our `Resume`, before the link is up.
            NodeMsg::Orphans { .. } => self.lose(DownReason::SecondWelcome, now),
        }
    }

    /// The node's handshake answer: the session starts, or the node
    /// refused us (for good, or for now, or for this key only).
    pub(super) fn on_answer(&mut self, answer: &[u8], now: Instant) {
        let Some(mut hs) = self.handshake.take() else {
            return self.lose(DownReason::NoHandshake, now);
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
                if let Some(run) = self.config.run {
                    self.send(&ClientMsg::Resume { run });
                }
            }
            Err(SecureError::WrongKey) if self.key_index + 1 < self.config.keys.keys().len() => {
                self.key_index += 1;
                self.lose(DownReason::TryingNextKey, now);
            }
            Err(SecureError::WrongKey) => {
                self.key_index = 0;
                self.refuse(Refusal::Secure(SecureError::WrongKey), now);
            }
            Err(SecureError::Busy(r)) => self.lose(DownReason::RefusedForNow(r), now),
            // Changed on the way, or not the node: try again later.
            Err(e @ SecureError::Tampered) => self.lose(DownReason::Secure(e), now),
            Err(e) => self.refuse(Refusal::Secure(e), now),
        }
    }

    /// The first sealed frame from the node must be its `Welcome`.
    pub(super) fn on_handshake(&mut self, msg: NodeMsg, now: Instant) {
        match msg {
            welcome @ NodeMsg::Welcome { .. } if self.resuming.is_none() => {
                self.welcome(welcome, now)
            }
            NodeMsg::Orphans { keys, more } => self.orphans(keys, more, now),
            // Between its `Welcome` and its `Orphans`: the answer to our
            // first ping, say.
            msg @ (NodeMsg::Pong(_) | NodeMsg::Status(_)) if self.resuming.is_some() => {
                self.on_plain(msg, now)
            }
            NodeMsg::Reject { reason, .. } => {
                let reason = escape(&reason).into_owned();
                self.lose(DownReason::RefusedForNow(reason), now)
            }
            _ => self.lose(DownReason::NoWelcomeFirst, now),
        }
    }

    pub(super) fn welcome(&mut self, welcome: NodeMsg, now: Instant) {
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
            reach,
            offer,
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
        self.speaks_ship = caps.iter().any(|c| c == CAP_SHIP);
        self.ship = Shipping::default();
        self.chunk_pings.clear();
        self.framer.set_max(self.config.max_frame);
        let hello = NodeHello {
            node_id,
            version,
            workers,
            jobs,
            heartbeat: self.heartbeat,
            caps,
            credit_jobs: self.credit_jobs,
            credit_bytes: self.credit_bytes,
            reach,
            orphans: Vec::new(),
            offer: {
                // An offer that does not check (a peer's) counts as none.
                let mut offer = offer.filter(|o| o.check().is_ok()).unwrap_or_default();
                offer.set_cpus(u32::try_from(workers).unwrap_or(u32::MAX));
                offer
            },
        };
        match self.config.run {
            // The node's answer to our `Resume` comes next: up after it.
            Some(_) => self.resuming = Some(hello),
            None => self.ready(hello, now),
        }
    }

    /// The node is up: jobs may go.
    fn ready(&mut self, hello: NodeHello, now: Instant) {
        self.state = LinkState::Ready;
        self.failures = 0;
        self.heard = now;
        self.next_ping = now + self.heartbeat;
        self.ready_since = Some(now);
        self.events.push_back(LinkEvent::Up(hello));
    }

    /// Part of the node's answer to `Resume` (during the handshake, after
    /// its `Welcome`): the run's jobs it holds. The link is up after the
    /// last part.
    fn orphans(&mut self, keys: Vec<JobKey>, more: bool, now: Instant) {
        let Some(hello) = &mut self.resuming else {
            return self.lose(DownReason::NoWelcomeFirst, now);
        };
        hello.orphans.extend(keys);
        if !more {
            if let Some(hello) = self.resuming.take() {
                self.ready(hello, now);
            }
        }
    }

    /// Drops the stream of job `id`'s arguments, if it is still going out.
    pub(super) fn abort_stream(&mut self, id: u64) {
        self.waiting.retain(|r| r.id != id);
        let frames = self
            .streams
            .abort_where(|m| matches!(m, ClientMsg::RunStreamed { job, .. } if job.id == id));
        for frame in frames {
            self.send(&ClientMsg::Stream(frame));
        }
    }

    /// A fresh connection's streams: none either way.
    pub(super) fn reset_streams(&mut self) {
        self.streams.clear();
        self.outbox = 0;
        self.shares.clear();
        self.kept_total = (0, 0);
        self.waiting.clear();
        self.incoming = Incoming::new(stream_limits(&self.config));
        // A fresh connection's outbox is empty, and nothing is shipped.
        self.stall.clear();
        self.ship = Shipping::default();
    }

    pub(super) fn send(&mut self, msg: &ClientMsg) {
        // Our own control messages always encode; if one ever did not, the
        // peer would miss it and time us out: nothing is silently corrupted.
        if let Ok(bytes) = self.framer.encode(msg) {
            self.transmit(bytes);
        }
    }

    /// The connection is lost (or never came up): the link redials, unless
    /// it is not to or gives up.
    pub(super) fn lose(&mut self, reason: DownReason, now: Instant) {
        self.end(End::Lost(reason), now);
    }

    /// The node refused us for good: the link closes.
    pub(super) fn refuse(&mut self, refusal: Refusal, now: Instant) {
        self.end(End::Refused(refusal), now);
    }

    /// The connection ends: jobs back, then backoff or closed.
    fn end(&mut self, how: End, now: Instant) {
        let lost = !matches!(how, End::Stopped);
        self.reset_streams();
        for job in self.ledger.drain() {
            self.events.push_back(LinkEvent::Returned { job, lost });
        }
        if self.connected() {
            self.io.push_back(LinkIo::Disconnect);
        }
        self.handshake = None;
        self.resuming = None;
        if self.ready_since.is_none() {
            self.failures = self.failures.saturating_add(1);
        }
        let reason = match how {
            End::Refused(reason) => {
                self.state = LinkState::Closed;
                self.events.push_back(LinkEvent::Failed { reason });
                return;
            }
            End::Lost(reason) => match self.config.give_up_after {
                Some(attempts) if self.failures >= attempts => {
                    self.state = LinkState::Closed;
                    let last = Box::new(reason);
                    let reason = Refusal::GaveUp { attempts, last };
                    self.events.push_back(LinkEvent::Failed { reason });
                    return;
                }
                _ => reason,
            },
            End::Stopped => DownReason::NodeStopped,
        };
        if !self.config.reconnect {
            self.state = LinkState::Closed;
            self.events.push_back(LinkEvent::Down {
                reason,
                retry_in: None,
            });
            return;
        }
        let wait = self.backoff.next_wait(self.ready_since.take(), now);
        self.state = LinkState::Backoff;
        self.deadline = now + wait;
        self.events.push_back(LinkEvent::Down {
            reason,
            retry_in: Some(wait),
        });
    }

    pub(super) fn close(&mut self) {
        if self.connected() {
            self.send(&ClientMsg::Goodbye);
            self.io.push_back(LinkIo::Disconnect);
        }
        for job in self.ledger.drain() {
            self.events
                .push_back(LinkEvent::Returned { job, lost: false });
        }
        self.handshake = None;
        self.resuming = None;
        self.reset_streams();
        self.state = LinkState::Closed;
    }
}
