//! What goes into a [`NodeLink`](super::NodeLink) ([`NodeEvent`]: what
//! happened) and what comes out besides its transmits and its timer
//! ([`NodeAction`]: what the node must do or know).

use super::reason::{NodeCloseReason, TransportEnd, UploadRefusal};
use crate::job::shared::{OverSharedMax, SharedId};
use crate::wire::messages::{DoneJob, JobInfo, NodeStatus, RunJob};
use crate::wire::program::{OfferAnswer, ProgramId, ProgramInfo};
use crate::wire::run::{JobKey, RunId};
use serde_bytes::ByteBuf;

/// Something that happened to a node's connection.
#[derive(Debug)]
pub enum NodeEvent<'a> {
    /// Bytes arrived.
    Received(&'a [u8]),
    /// The time [`NodeLink::poll_timeout`](super::NodeLink::poll_timeout) gave has come.
    Timer,
    /// Jobs of this connection finished.
    Finished(Vec<DoneJob>),
    /// Jobs of this connection given back unrun (the node is stopping).
    GiveBack(Vec<(u64, u32)>),
    /// Jobs of this connection that ended without a word to the client
    /// (cancelled before they ran): their credit comes back.
    Ended(Vec<u64>),
    /// The answer to a [`NodeAction::StatusWanted`].
    Status(Box<NodeStatus>),
    /// The node stops taking jobs.
    Drain,
    /// The node says goodbye and closes.
    Stop,
    /// The connection broke.
    TransportClosed(TransportEnd),
    /// The node's answer to a [`NodeAction::Offer`]; `Need` begins the
    /// connection's one upload.
    Offered {
        /// The program offered.
        id: ProgramId,
        /// Have, need or refuse.
        answer: OfferAnswer,
    },
    /// The upload of program `id` is complete and stored (its start is
    /// reported as [`NodeEvent::ProgramReady`]).
    Uploaded(ProgramId),
    /// The upload of program `id` failed on the node (a chunk its receiver
    /// refused, or it could not be stored): the client is told `reason`.
    UploadFailed {
        /// The program.
        id: ProgramId,
        /// Why, as the client is told.
        reason: String,
    },
    /// The node's store answered a [`NodeAction::Share`]: the value is
    /// kept, or refused over `--shared-max` (then jobs that name it fail).
    Stored {
        /// The value.
        id: SharedId,
        /// Kept, or why not.
        outcome: Result<(), OverSharedMax>,
    },
    /// A shipped program is ready here (its jobs), or refused (why).
    ProgramReady {
        /// The program.
        id: ProgramId,
        /// Its jobs, or why it will not run here.
        jobs: Result<Vec<JobInfo>, String>,
    },
    /// The node is full for now (too many clients): tell the client, which
    /// retries later, and close.
    Refuse(String),
    /// The node's answer to a [`NodeAction::Resume`]: the run's jobs it
    /// holds (finished, or queued or running for a client that vanished).
    Orphans(Vec<JobKey>),
    /// The node's answer to a [`NodeAction::FetchExported`]: the value's
    /// bytes, or `None` if no connection exports it.
    Exported {
        /// The fetch.
        id: u64,
        /// Its attempt.
        attempt: u32,
        /// The value fetched.
        value: SharedId,
        /// Its bytes, if exported.
        bytes: Option<Vec<u8>>,
    },
    /// Jobs that name shared values the node does not hold: the client is
    /// asked for the values and handed the jobs back (what
    /// [`NodeLink::with_shared`](super::NodeLink::with_shared) does for such jobs).
    NeedShared {
        /// The values missing.
        ids: Vec<SharedId>,
        /// The jobs, unrun.
        jobs: Vec<(u64, u32)>,
    },
    /// The driver's answer to a [`NodeAction::Spill`]: written, or not
    /// (its bytes back: the result then goes to the client in full).
    Spilled {
        /// The value.
        id: SharedId,
        /// Written, or the bytes that were not.
        result: Result<(), Vec<u8>>,
    },
    /// The driver's answer to a [`NodeAction::ReadBack`]: the value's bytes,
    /// checked against their checksum, or `None` (missing, corrupt,
    /// unreadable: the value is lost and the fetch answered so).
    ReadBack {
        /// The value.
        value: SharedId,
        /// The fetch that wants it.
        fetch: u64,
        /// Its attempt.
        attempt: u32,
        /// The bytes read back, if they were intact.
        bytes: Option<Vec<u8>>,
    },
}

/// Something the node's driver must do or know ([`NodeLink::poll_event`](super::NodeLink::poll_event));
/// the bytes to write come apart ([`NodeLink::poll_transmit`](super::NodeLink::poll_transmit)).
#[derive(Debug, PartialEq)]
pub enum NodeAction {
    /// Queue these jobs for the workers, with the shared values they name
    /// ([`NodeLink::with_shared`](super::NodeLink::with_shared)).
    Run(Vec<RunJob>),
    /// The client cancelled job `id`.
    Cancel(u64),
    /// The client asked for the node's status: answer with [`NodeEvent::Status`].
    StatusWanted,
    /// The client proved itself.
    Authenticated,
    /// The client offers its program (no upload is under way on this
    /// connection): answer with [`NodeEvent::Offered`].
    Offer(ProgramInfo),
    /// A piece of the upload under way: report its end with
    /// [`NodeEvent::Uploaded`] or [`NodeEvent::UploadFailed`].
    Chunk {
        /// The program.
        id: ProgramId,
        /// Where the piece starts.
        offset: u64,
        /// Its bytes.
        data: ByteBuf,
    },
    /// The link ended (or refused a chunk of) the upload of program `id`
    /// and told the client: note why, and drop the upload if it is of `id`.
    UploadRefused {
        /// The program.
        id: ProgramId,
        /// Why.
        reason: UploadRefusal,
    },
    /// The client sent a shared value (its bytes hash to `id`): keep it
    /// for this connection's jobs, and report with [`NodeEvent::Stored`].
    Share {
        /// Its id.
        id: SharedId,
        /// Its bytes.
        bytes: Vec<u8>,
    },
    /// The client is done with these shared values.
    Unshare(Vec<SharedId>),
    /// Let peers fetch this connection's kept value `id`
    /// ([`NodeLink::kept_value`](super::NodeLink::kept_value)) while the
    /// connection keeps it.
    Export(SharedId),
    /// A fetch of a kept value this connection does not hold: answer with
    /// [`NodeEvent::Exported`], from the values other connections export.
    FetchExported {
        /// The fetch (it holds a job's credit until answered).
        id: u64,
        /// Its attempt.
        attempt: u32,
        /// The value.
        value: SharedId,
    },
    /// Fetch kept value `value` from the peer at `from` and report it as
    /// job `id`'s result ([`NodeEvent::Finished`]): it is kept here, as a
    /// kept job's result is. A failed fetch is that job's error.
    Pull {
        /// The job (it holds a job's credit until it ends).
        id: u64,
        /// Its attempt.
        attempt: u32,
        /// The value.
        value: SharedId,
        /// Where the peer listens (`host:port`).
        from: String,
    },
    /// A result to keep that does not fit the memory room (but fits the
    /// spill room): write it to the spill file of `id` and report with
    /// [`NodeEvent::Spilled`]. Its job's answer waits for that.
    Spill {
        /// The kept value's id.
        id: SharedId,
        /// Its bytes.
        bytes: Vec<u8>,
    },
    /// A fetch of spilled value `value`: read it back (checking its
    /// checksum) and report with [`NodeEvent::ReadBack`]. Jobs that name a
    /// spilled value get it from the `lookup` of
    /// [`NodeLink::with_shared`](super::NodeLink::with_shared) instead.
    ReadBack {
        /// The value.
        value: SharedId,
        /// The fetch.
        fetch: u64,
        /// Its attempt.
        attempt: u32,
    },
    /// Spill files no longer wanted (the values were dropped, replaced or
    /// lost): delete them.
    DropSpilled(Vec<SharedId>),
    /// The client says this connection belongs to journaled run `run`
    /// (once per connection): answer with [`NodeEvent::Orphans`].
    Resume(RunId),
    /// The client recorded these jobs' results in its journal: forget them.
    Recorded(Vec<JobKey>),
    /// Answer job `id` with the outcome of the run's job `key`
    /// ([`NodeEvent::Finished`]), once it has one; `NodeLost` if the node
    /// holds no such job for the run (or the connection named no run).
    Reclaim {
        /// The reclaim (it holds a job's credit until answered).
        id: u64,
        /// Its attempt.
        attempt: u32,
        /// The run's job.
        key: JobKey,
    },
    /// The connection is over: close it (what the client was to be told is
    /// among the transmits already).
    Closed(NodeCloseReason),
}
