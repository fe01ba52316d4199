//! The protocol's messages: what a client sends a node ([`ClientMsg`]) and
//! what a node answers ([`NodeMsg`]), with the jobs and status they carry.
//! They travel as frames ([`super::frame`]), sealed once the session's
//! handshake is done.

use crate::job::error::JobError;
use crate::job::shared::SharedId;
use crate::wire::program::{OfferAnswer, ProgramId, ProgramInfo};
use crate::wire::run::{JobKey, RunId};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

/// The capability a node lists in `Welcome.caps` when it takes shipped programs.
pub const CAP_SHIP: &str = "ship";

/// A job a node can run: its name and signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobInfo {
    /// The job's stable name.
    pub name: String,
    /// Its argument and result types, as written.
    pub signature: String,
}

/// One job to run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunJob {
    /// The client's id of the job.
    pub id: u64,
    /// Which attempt this is, from 1.
    pub attempt: u32,
    /// The job's name.
    pub name: String,
    /// MessagePack arguments.
    pub args: ByteBuf,
    /// The shipped program the job belongs to; `None`: a built-in job of
    /// the node. A job's identity is program plus name, so a shipped job
    /// never runs as a built-in of the same name.
    #[serde(default)]
    pub program: Option<ProgramId>,
    /// The shared values the arguments name, each sent earlier on this
    /// connection (`Share`); a node that does not hold one answers
    /// `NeedShared` and hands the job back.
    #[serde(default)]
    pub shared: Vec<SharedId>,
    /// Whether the result stays on the node as a kept value, or whether
    /// this is no job but the fetch of one (see [`KeepOp`]); `None`: an
    /// ordinary job, its result sent back.
    #[serde(default)]
    pub keep: Option<KeepOp>,
    /// The job's identity in its journaled run (the connection sent
    /// `Resume`): the node keeps its result until the client says it is
    /// recorded (`Recorded`), and, should the client vanish, for
    /// `--orphan-keep`, for the run's next client to reclaim.
    #[serde(default)]
    pub journal: Option<JobKey>,
    /// What the job asks for beyond one cpu (cpus, memory, named amounts,
    /// tags); `None` (or missing): one cpu. The node runs it only within
    /// its offer, holding the request while it runs; one that can never
    /// fit fails with `Unsatisfiable` (PROTOCOL.md, "Resources").
    #[serde(default)]
    pub request: Option<crate::sched::resources::Request>,
}

/// What a `RunJob` asks of the node's kept values (PROTOCOL.md, "Kept
/// results"). A kept value belongs to the connection that made or sent it:
/// no other connection can name it, unless it was exported for a peer
/// (`Export`), which then fetches it by its id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeepOp {
    /// Run the job and keep its result here as value `id` (the client's
    /// name for it, random, fixed at submission); the answer is a `DoneJob`
    /// with `kept: Some(len)` and an empty result, or, if the node cannot
    /// hold it within `--max-memory`, the result itself with `kept: None`.
    Keep(SharedId),
    /// Not a job: answer with the bytes of kept value `id` as this job's
    /// result (`name` and `args` are empty), once the value is here; an
    /// error of kind `NodeLost` if this connection holds no such value
    /// (and no connection exported it: see `Export`).
    Fetch(SharedId),
    /// Not a job: let peers fetch kept value `id` of this connection (a
    /// `Fetch` on any connection with the cluster key then answers with
    /// it, while this connection keeps it), once it is here. Answered with
    /// `kept: Some(len)` and an empty result, or `NodeLost` if this
    /// connection holds no such value.
    Export(SharedId),
    /// Not a job: fetch kept value `value` from the peer node at `from`
    /// (`host:port`, over a session with the cluster key, as a client
    /// does) and keep it here, as a `Keep` job keeps its result: jobs that
    /// name it wait for it here, and the answer is the same.
    Pull {
        /// The value.
        value: SharedId,
        /// Where the peer that exported it listens.
        from: String,
    },
    /// Not a job: answer with the outcome of the job `key` of this
    /// connection's run (`Resume`) that an earlier client of the run sent
    /// here, once it has finished (at once if it has). An error of kind
    /// `NodeLost` if the node holds no such job (never had it, forgot it,
    /// or it did not run): the client runs it itself.
    Reclaim(JobKey),
}

/// One job's outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DoneJob {
    /// The client's id of the job.
    pub id: u64,
    /// The attempt this answers.
    pub attempt: u32,
    /// The MessagePack result, or why there is none.
    pub result: Result<ByteBuf, JobError>,
    /// How long the job ran on the node, in nanoseconds.
    pub exec_ns: u64,
    /// `Some(len)`: the job's result (`len` bytes encoded) is kept on the
    /// node as the value its `RunJob.keep` named, and `result` is an empty
    /// `Ok`.
    #[serde(default)]
    pub kept: Option<u64>,
}

/// What a node reports about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// The node's software version.
    pub version: String,
    /// Its worker slots.
    pub workers: u32,
    /// The jobs it can run.
    pub jobs: Vec<JobInfo>,
    /// Seconds since it started.
    pub uptime_s: f64,
    /// Connections open now.
    pub connections: u32,
    /// Jobs it finished (failed ones included).
    pub jobs_done: u64,
    /// Of those, jobs that failed or panicked.
    pub jobs_failed: u64,
    /// Jobs running or queued on it now.
    pub jobs_active: u64,
    /// Jobs cancelled by their client before they started here.
    #[serde(default)]
    pub jobs_cancelled: u64,
    /// Program uploads this node received and verified (a cache hit adds none).
    #[serde(default)]
    pub programs_uploaded: u64,
    /// Offers of programs this node had already (cache hits).
    #[serde(default)]
    pub programs_cached: u64,
    /// Program worker processes running now.
    #[serde(default)]
    pub program_workers: u64,
    /// Shared values held now, for clients' jobs.
    #[serde(default)]
    pub shared_values: u64,
    /// Their bytes (at most `--shared-max`).
    #[serde(default)]
    pub shared_bytes: u64,
    /// Shared values received and kept since the node started (a value it
    /// held already adds none).
    #[serde(default)]
    pub shared_received: u64,
    /// Connections waiting for another connection's upload of a program,
    /// or for a program's first worker to start.
    #[serde(default)]
    pub programs_waiting: u64,
    /// The directory of the node's program cache, or why it has none.
    #[serde(default)]
    pub program_cache: String,
    /// The last reason the node gave a client for not running its program.
    #[serde(default)]
    pub program_refused: Option<String>,
    /// Kept results (and kept values clients sent) held now, on all connections.
    #[serde(default)]
    pub kept_values: u64,
    /// Their bytes (counted against `--max-memory`).
    #[serde(default)]
    pub kept_bytes: u64,
    /// Jobs here that wait for an input another job of theirs is making here.
    #[serde(default)]
    pub jobs_waiting: u64,
    /// Kept values this node fetched from peers (`Pull`), and their bytes.
    #[serde(default)]
    pub transfers_in: u64,
    /// Their bytes.
    #[serde(default)]
    pub transfer_in_bytes: u64,
    /// Kept values peers fetched from this node, and their bytes.
    #[serde(default)]
    pub transfers_out: u64,
    /// Their bytes.
    #[serde(default)]
    pub transfer_out_bytes: u64,
    /// Bytes of kept values spilled to disk now (their files, headers
    /// included; at most `--spill-max`).
    #[serde(default)]
    pub spilled_bytes: u64,
    /// Spilled values read back from disk since the node started (for a
    /// job or a fetch; a read that failed its checksum counts too).
    #[serde(default)]
    pub spill_reads: u64,
    /// Journaled runs the node holds results or jobs of (`Resume`), live
    /// or orphaned (their client vanished, within `--orphan-keep`).
    #[serde(default)]
    pub runs: u64,
    /// Their jobs held here: queued, running, or finished and not yet
    /// recorded by their client.
    #[serde(default)]
    pub run_jobs: u64,
    /// What the node offers its jobs (its workers as cpus, named
    /// resources, tags, memory); `None` from older nodes.
    #[serde(default)]
    pub offer: Option<crate::sched::resources::Offer>,
    /// Cpus held by running jobs now.
    #[serde(default)]
    pub cpus_in_use: u32,
    /// Memory held by running jobs' requests now, in bytes.
    #[serde(default)]
    pub memory_in_use: u64,
    /// Thousandths of each named resource held by running jobs now.
    #[serde(default)]
    pub resources_in_use: Vec<(String, u64)>,
}

/// What a client sends to a node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ClientMsg {
    /// Jobs to run, one or many.
    Run(Vec<RunJob>),
    /// Stop a job if it has not finished.
    Cancel {
        /// The job's id.
        id: u64,
    },
    /// A heartbeat; the node answers `Pong` with the same number.
    Ping(u64),
    /// Asks for a [`NodeStatus`].
    Status,
    /// The client is leaving.
    Goodbye,
    /// The client offers its program (only to a node listing [`CAP_SHIP`]);
    /// the node answers `Offered`.
    Offer(ProgramInfo),
    /// One piece of an upload the node asked for (`Offered` with `Need`),
    /// at most 1 MiB, in order from offset 0.
    Chunk {
        /// The program being sent.
        id: ProgramId,
        /// Where this chunk starts in the file.
        offset: u64,
        /// The bytes.
        data: ByteBuf,
    },
    /// One frame of a stream: the arguments of a job too large to travel
    /// inline (see [`crate::wire::stream`]).
    Stream(crate::wire::stream::StreamFrame),
    /// A job whose arguments are stream `stream`, which completed in the
    /// frame just before; `job.args` is empty.
    RunStreamed {
        /// The stream holding the arguments.
        stream: u64,
        /// The job, without its arguments.
        job: RunJob,
    },
    /// The client's limits, sent right after its first sealed frame.
    Limits {
        /// The largest result the client takes, in bytes.
        max_payload: u64,
    },
    /// A shared value, whose bytes are stream `stream`, which completed in
    /// the frame just before: jobs sent after it may name `id`.
    Share {
        /// The value's id: the SHA-256 of its bytes (checked), or, for a
        /// kept value, the client's name for it.
        id: SharedId,
        /// The stream holding its bytes.
        stream: u64,
        /// A kept result the client holds (a job's, made in the client or
        /// fetched from another node): kept for this connection alone, its
        /// id not checked against its bytes.
        #[serde(default)]
        kept: bool,
    },
    /// The client is done with these shared values (no job of its names
    /// them any more): the node may free them.
    Unshare(Vec<SharedId>),
    /// This connection belongs to journaled run `run` (sent once, right
    /// after `Limits`): the node answers `Orphans`, keeps the results of
    /// the run's jobs until `Recorded`, and keeps running its jobs should
    /// the connection be lost.
    Resume {
        /// The run.
        run: RunId,
    },
    /// These jobs' results are in the client's journal: the node forgets them.
    Recorded(Vec<JobKey>),
    /// A shared value's bytes inline: only on a node's pipe to its worker
    /// process (a node refuses it from a client, which sends `Share`).
    Shared {
        /// The value's id.
        id: SharedId,
        /// Its bytes.
        value: ByteBuf,
        /// A kept value: its id is its client's name for it, not the hash
        /// of its bytes (see `Share.kept`).
        #[serde(default)]
        kept: bool,
    },
}

/// What a node sends to a client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum NodeMsg {
    /// The node's first sealed frame: who it is, what it runs.
    Welcome {
        /// The node's name for itself.
        node_id: String,
        /// Its software version.
        version: String,
        /// Its worker slots.
        workers: u32,
        /// The jobs it can run.
        jobs: Vec<JobInfo>,
        /// The longest heartbeat interval the node accepts, in ms (0: any).
        /// The link uses the smaller of this and the client's interval; a
        /// client silent for 3 intervals is dropped.
        #[serde(default)]
        heartbeat_ms: u64,
        /// Optional protocol features the node speaks (see PROTOCOL.md).
        #[serde(default)]
        caps: Vec<String>,
        /// The largest arguments the node takes, in bytes (0: the default, 1 GiB).
        #[serde(default)]
        max_payload: u64,
        /// The credit window, in jobs: the most jobs this connection may
        /// have in flight (sent and not answered); more are handed back
        /// unrun. 0 (or missing): no bound.
        #[serde(default)]
        credit_jobs: u32,
        /// The credit window, in bytes of job arguments in flight (one job
        /// alone may go over it). 0 (or missing): no bound.
        #[serde(default)]
        credit_bytes: u64,
        /// The most bytes of shared values the node keeps (`--shared-max`):
        /// a job whose shared values take more cannot run there. 0 (or
        /// missing): not said.
        #[serde(default)]
        shared_max: u64,
        /// Where peers reach this node to fetch kept values it exports
        /// (node-to-node transfers): `host:port`, or `:port` (any of its
        /// addresses at that port: the one the client dialed). `None` (or
        /// missing): peers cannot reach it, and its kept values travel
        /// through the client.
        #[serde(default)]
        reach: Option<String>,
        /// What the node offers its jobs: its workers as cpus, named
        /// resources with their instance counts, tags, memory
        /// (PROTOCOL.md, "Resources"). `None` (or missing): its workers as
        /// cpus and nothing else.
        #[serde(default)]
        offer: Option<crate::sched::resources::Offer>,
    },
    /// The node refuses this connection, and says why.
    Reject {
        /// Why.
        reason: String,
        /// Whether the client may try again later: the node is full, not
        /// refusing this client (old nodes leave it out: false).
        #[serde(default)]
        retry: bool,
    },
    /// Finished jobs.
    Done(Vec<DoneJob>),
    /// Jobs the node gives back unrun (it is shutting down): run them elsewhere.
    Returned(Vec<(u64, u32)>),
    /// The answer to `Ping`.
    Pong(u64),
    /// The answer to `Status`.
    Status(NodeStatus),
    /// The node takes no new jobs; it finishes the ones it has.
    Draining,
    /// The node is closing the connection.
    Goodbye,
    /// The answer to `Offer`: have it, send it, or refused (with the reason).
    Offered {
        /// The program offered.
        id: ProgramId,
        /// The node's answer.
        answer: OfferAnswer,
    },
    /// A shipped program runs here now: its jobs, to be sent with
    /// `RunJob.program` set to `id`.
    ProgramReady {
        /// The program.
        id: ProgramId,
        /// The jobs of its registry.
        jobs: Vec<JobInfo>,
    },
    /// The node will not run the program (the upload failed its hash check,
    /// the program did not start as a worker, ...), and why.
    ProgramRefused {
        /// The program.
        id: ProgramId,
        /// Why.
        reason: String,
    },
    /// One frame of a stream: a result too large to travel inline.
    Stream(crate::wire::stream::StreamFrame),
    /// A job whose result is stream `stream`, which completed in the frame
    /// just before; `job.result` is an empty `Ok`.
    DoneStreamed {
        /// The stream holding the result.
        stream: u64,
        /// The job's outcome, without its result bytes.
        job: DoneJob,
    },
    /// The answer to `Resume`: the jobs of the run that an earlier client
    /// of it sent here and that finished or may still finish (`Reclaim`
    /// takes them), in as many messages as it takes: the last says `more:
    /// false`.
    Orphans {
        /// Some of the jobs.
        keys: Vec<JobKey>,
        /// Whether another `Orphans` follows.
        more: bool,
    },
    /// The node does not hold these shared values (never got them, or
    /// evicted them): send them again before jobs that name them. The jobs
    /// that named them come back in a `Returned` right after.
    NeedShared(Vec<SharedId>),
}
