//! What goes into a [`ClientLink`](crate::link::ClientLink) and what comes
//! out, each kind on its own: [`Event`]s in; bytes to write, socket commands
//! ([`LinkIo`]) and application events ([`LinkEvent`]) out.

use crate::job::error::JobError;
use crate::link::reason::{DownReason, Refusal, TransportError};
use crate::wire::messages::{JobInfo, RunJob};
use crate::wire::program::{OfferAnswer, ProgramId};
use serde_bytes::ByteBuf;
use std::time::Duration;

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
    /// Where peers reach the node for node-to-node transfers
    /// (`Welcome.reach`); `None`: they cannot.
    pub reach: Option<String>,
    /// The jobs of our journaled run that the node holds for an earlier
    /// client of it (its answer to `Resume`; empty without a run).
    pub orphans: Vec<crate::wire::run::JobKey>,
    /// What it offers its jobs (`Welcome.offer`), its workers as cpus.
    pub offer: crate::sched::resources::Offer,
}

/// Something that happened to a link.
#[derive(Debug)]
pub enum Event<'a, T> {
    /// The dial succeeded.
    Connected,
    /// The dial failed.
    ConnectFailed(TransportError),
    /// Bytes arrived.
    Received(&'a [u8]),
    /// The time [`ClientLink::poll_timeout`](crate::link::ClientLink::poll_timeout) gave has come.
    Timer,
    /// The connection broke (read or write failed, peer closed).
    TransportClosed(TransportError),
    /// Jobs to send, each with what the driver keeps for it.
    Submit(Vec<(RunJob, T)>),
    /// Job `id` ended elsewhere (timed out, cancelled): tell the node.
    Cancel(u64),
    /// Close the link for good (the client is going away).
    Close,
}

/// What the driver must do with its socket (bytes to write come from
/// [`ClientLink::poll_transmit`](crate::link::ClientLink::poll_transmit):
/// write those polled so far before carrying out a command).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkIo {
    /// Dial the node, then report [`Event::Connected`] or [`Event::ConnectFailed`].
    Connect,
    /// Close the connection (after writing what was polled to write).
    Disconnect,
}

/// What happened on a link that the application acts on.
#[derive(Debug)]
pub enum LinkEvent<T> {
    /// The link is up.
    Up(NodeHello),
    /// The node is draining.
    Draining,
    /// The connection ended; the link will redial after `retry_in` (`None`: it will not).
    Down {
        /// Why.
        reason: DownReason,
        /// When the next dial is due.
        retry_in: Option<Duration>,
    },
    /// The node refused us for good (secret, version): the link is closed.
    Failed {
        /// What the node or the handshake said.
        reason: Refusal,
    },
    /// A job's result.
    Done {
        /// The job.
        job: T,
        /// What the node answered.
        result: Result<ByteBuf, JobError>,
        /// Its run time on the node.
        exec: Duration,
        /// `Some(len)`: the result is kept on the node (its `len` bytes;
        /// `result` is empty), as the job's `RunJob.keep` asked.
        kept: Option<u64>,
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
