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
//! drain and stop requests and timer ticks; the link answers with bytes to
//! write, jobs to queue or cancel, and when to close. It always reads
//! control frames (heartbeats, cancels, goodbye), also while draining; jobs
//! that arrive while draining go straight back. A client that sends nothing
//! for [`MISSED_BEATS`] heartbeat intervals, or does not finish the
//! handshake in time, is closed.

use crate::framing::Framer;
use crate::handshake::{NodeHandshake, Secret};
use crate::link::MISSED_BEATS;
use crate::program::{OfferAnswer, ProgramId, ProgramInfo};
use crate::wire::{
    batches_by_size, max_payload, ClientMsg, DoneJob, JobInfo, NodeMsg, NodeStatus, RunJob,
};
use crate::{ErrorKind, JobError};
use serde_bytes::ByteBuf;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The largest frame a client may send before it has authenticated
/// (`Hello` and `Auth` are far smaller).
pub const CLIENT_HANDSHAKE_MAX_FRAME: usize = 4096;

/// How the node's side of a connection behaves.
#[derive(Debug, Clone)]
pub struct NodeLinkConfig {
    /// The shared secret.
    pub secret: Secret,
    /// Time a client has to authenticate.
    pub handshake_timeout: Duration,
    /// The longest heartbeat interval accepted, announced in `Welcome`.
    pub heartbeat: Duration,
    /// The largest frame, either way, after the handshake.
    pub max_frame: usize,
}

/// Something that happened to a node's connection.
#[derive(Debug)]
pub enum NodeEvent<'a> {
    /// Bytes arrived.
    Received(&'a [u8]),
    /// The time [`NodeLink::poll_timeout`] gave has come.
    Timer,
    /// Jobs of this connection finished.
    Finished(Vec<DoneJob>),
    /// Jobs of this connection given back unrun (the node is stopping).
    GiveBack(Vec<(u64, u32)>),
    /// The answer to a [`NodeAction::StatusWanted`].
    Status(NodeStatus),
    /// The node stops taking jobs.
    Drain,
    /// The node says goodbye and closes.
    Stop,
    /// The connection broke.
    TransportClosed(String),
    /// The node's answer to a [`NodeAction::Offer`].
    Offered {
        /// The program offered.
        id: ProgramId,
        /// Have, need or refuse.
        answer: OfferAnswer,
    },
    /// A shipped program is ready here (its jobs), or refused (why).
    ProgramReady {
        /// The program.
        id: ProgramId,
        /// Its jobs, or why it will not run here.
        jobs: Result<Vec<JobInfo>, String>,
    },
}

/// Something the node's driver must do.
#[derive(Debug, PartialEq)]
pub enum NodeAction {
    /// Write these bytes, in order.
    Send(Vec<u8>),
    /// Queue these jobs for the workers.
    Run(Vec<RunJob>),
    /// The client cancelled job `id`.
    Cancel(u64),
    /// The client asked for the node's status: answer with [`NodeEvent::Status`].
    StatusWanted,
    /// The client proved itself.
    Authenticated,
    /// The client offers its program: answer with [`NodeEvent::Offered`].
    Offer(ProgramInfo),
    /// A piece of an upload.
    Chunk {
        /// The program.
        id: ProgramId,
        /// Where the piece starts.
        offset: u64,
        /// Its bytes.
        data: ByteBuf,
    },
    /// Close the connection; `reason` if it ended badly (already sent as `Reject`).
    Close {
        /// Why, if it was not a clean goodbye.
        reason: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Handshake,
    Ready,
    Draining,
    Closed,
}

/// The node's side of one connection.
pub struct NodeLink {
    config: NodeLinkConfig,
    state: State,
    framer: Framer,
    handshake: NodeHandshake,
    welcome: NodeMsg,
    draining: bool,
    heard: Instant,
    deadline: Instant,
    actions: VecDeque<NodeAction>,
}

impl NodeLink {
    /// A fresh connection: `nonce` is 32 random bytes; `welcome` is what the
    /// client gets once it proved itself (its `heartbeat_ms` is set here).
    pub fn new(
        config: NodeLinkConfig,
        nonce: [u8; 32],
        mut welcome: NodeMsg,
        now: Instant,
    ) -> Self {
        if let NodeMsg::Welcome { heartbeat_ms, .. } = &mut welcome {
            *heartbeat_ms = u64::try_from(config.heartbeat.as_millis()).unwrap_or(u64::MAX);
        }
        NodeLink {
            handshake: NodeHandshake::new(config.secret.clone(), nonce),
            framer: Framer::new(CLIENT_HANDSHAKE_MAX_FRAME),
            deadline: now + config.handshake_timeout,
            state: State::Handshake,
            welcome,
            draining: false,
            heard: now,
            actions: VecDeque::new(),
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

    /// The next thing to do, if any.
    pub fn poll(&mut self) -> Option<NodeAction> {
        self.actions.pop_front()
    }

    /// When to report [`NodeEvent::Timer`] if nothing happens before.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Handshake => Some(self.deadline),
            State::Ready | State::Draining => Some(self.dead_at()),
            State::Closed => None,
        }
    }

    fn dead_at(&self) -> Instant {
        self.heard + self.config.heartbeat * MISSED_BEATS
    }

    /// Feeds one event that happened at `now`.
    pub fn handle(&mut self, event: NodeEvent<'_>, now: Instant) {
        if self.state == State::Closed {
            return;
        }
        match event {
            NodeEvent::Received(bytes) => self.on_bytes(bytes, now),
            NodeEvent::Timer => self.on_timer(now),
            NodeEvent::Finished(done) => self.finished(done),
            NodeEvent::GiveBack(jobs) if !jobs.is_empty() => {
                self.send(&NodeMsg::Returned(jobs));
            }
            NodeEvent::GiveBack(_) => {}
            NodeEvent::Status(status) => self.send(&NodeMsg::Status(status)),
            NodeEvent::Drain => {
                self.draining = true;
                if self.state == State::Ready {
                    self.state = State::Draining;
                    self.send(&NodeMsg::Draining);
                }
            }
            NodeEvent::Stop => {
                if self.is_ready() {
                    self.send(&NodeMsg::Goodbye);
                }
                self.close(None);
            }
            NodeEvent::TransportClosed(reason) => {
                self.state = State::Closed;
                self.actions.push_back(NodeAction::Close {
                    reason: Some(reason),
                });
            }
            NodeEvent::Offered { id, answer } => self.send(&NodeMsg::Offered { id, answer }),
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
        match self.state {
            State::Handshake if now >= self.deadline => self.fail("timed out during the handshake"),
            State::Ready | State::Draining if now >= self.dead_at() => {
                let silent = now.saturating_duration_since(self.heard);
                self.fail(&format!("client silent for {silent:?}"));
            }
            _ => {}
        }
    }

    fn on_bytes(&mut self, bytes: &[u8], now: Instant) {
        self.heard = now;
        self.framer.push(bytes);
        while !self.is_closed() {
            match self.framer.decode::<ClientMsg>() {
                Ok(Some(msg)) => self.on_message(msg),
                Ok(None) => return,
                Err(e) if self.state == State::Handshake => {
                    return self.fail(&format!("{e} during the handshake"))
                }
                Err(e) => return self.fail(&e.to_string()),
            }
        }
    }

    fn on_message(&mut self, msg: ClientMsg) {
        if self.state == State::Handshake {
            return self.on_handshake(msg);
        }
        match msg {
            ClientMsg::Run(jobs) if self.draining => {
                let back = jobs.iter().map(|j| (j.id, j.attempt)).collect();
                self.send(&NodeMsg::Returned(back));
            }
            ClientMsg::Run(jobs) => self.actions.push_back(NodeAction::Run(jobs)),
            ClientMsg::Cancel { id } => self.actions.push_back(NodeAction::Cancel(id)),
            ClientMsg::Ping(n) => self.send(&NodeMsg::Pong(n)),
            ClientMsg::Status => self.actions.push_back(NodeAction::StatusWanted),
            ClientMsg::Goodbye => self.close(None),
            ClientMsg::Offer(info) => self.actions.push_back(NodeAction::Offer(info)),
            ClientMsg::Chunk { id, offset, data } => {
                self.actions
                    .push_back(NodeAction::Chunk { id, offset, data })
            }
            ClientMsg::Hello { .. } | ClientMsg::Auth { .. } => {
                self.fail("handshake message after the handshake")
            }
        }
    }

    fn on_handshake(&mut self, msg: ClientMsg) {
        match self.handshake.on_message(msg) {
            Err(reason) => self.fail(&reason),
            Ok(Some(reply)) => self.send(&reply),
            Ok(None) if self.handshake.is_done() => {
                let welcome = self.welcome.clone();
                self.send(&welcome);
                self.framer.set_max(self.config.max_frame);
                self.state = State::Ready;
                self.actions.push_back(NodeAction::Authenticated);
                if self.draining {
                    self.state = State::Draining;
                    self.send(&NodeMsg::Draining);
                }
            }
            Ok(None) => {}
        }
    }

    fn finished(&mut self, mut done: Vec<DoneJob>) {
        if !self.is_ready() || done.is_empty() {
            return;
        }
        let max = max_payload(self.config.max_frame);
        for d in &mut done {
            let too_big = d.result.as_ref().map_or(0, |b| b.len());
            if too_big > max {
                let message =
                    format!("result of {too_big} bytes is over the {max}-byte frame limit");
                d.result = Err(JobError::new(ErrorKind::Codec, message));
            }
        }
        let size = |d: &DoneJob| d.result.as_ref().map_or(0, |b| b.len());
        for part in batches_by_size(done, size, self.config.max_frame) {
            self.send(&NodeMsg::Done(part));
        }
    }

    fn send(&mut self, msg: &NodeMsg) {
        // Our own messages always encode (results were size-checked above).
        if let Ok(bytes) = self.framer.encode(msg) {
            self.actions.push_back(NodeAction::Send(bytes));
        }
    }

    /// Ends the connection with a reason the client is told.
    fn fail(&mut self, reason: &str) {
        self.send(&NodeMsg::Reject {
            reason: reason.to_owned(),
        });
        self.close(Some(reason.to_owned()));
    }

    fn close(&mut self, reason: Option<String>) {
        self.state = State::Closed;
        self.actions.push_back(NodeAction::Close { reason });
    }
}

#[cfg(test)]
#[path = "node_link_tests.rs"]
mod tests;
