//! The wire protocol: messages and the frame codec, as pure functions over bytes.
//!
//! A frame is a u32 big-endian length, then one MessagePack message of that
//! length. A length above the limit is refused before anything is allocated.

use crate::error::JobError;
use crate::program::{OfferAnswer, ProgramId, ProgramInfo};
use crate::shared::SharedId;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use std::io::{self, Read};

/// Sent first, in clear, in the handshake's first message, so that a stray client is told apart at once.
pub const MAGIC: &str = "pp-rs";
/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u32 = 6;
/// The default TCP (and discovery UDP) port of a node.
pub const DEFAULT_PORT: u16 = 60000;
/// The capability a node lists in `Welcome.caps` when it takes shipped programs.
pub const CAP_SHIP: &str = "ship";
/// The default largest frame, in bytes.
pub const DEFAULT_MAX_FRAME: usize = 16 << 20;

/// What a client broadcasts (UDP) to find nodes.
pub const DISCOVERY_PROBE: &[u8] = b"pp-discover 1";
const DISCOVERY_REPLY: &str = "pp-node 1 ";

/// A node's answer to a discovery probe: its TCP port.
pub fn discovery_reply(port: u16) -> String {
    format!("{DISCOVERY_REPLY}{port}")
}

/// The TCP port in a node's discovery answer; `None` for anything else.
pub fn parse_discovery_reply(bytes: &[u8]) -> Option<u16> {
    std::str::from_utf8(bytes)
        .ok()?
        .strip_prefix(DISCOVERY_REPLY)?
        .parse()
        .ok()
}

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
    /// inline (see [`crate::stream`]).
    Stream(crate::stream::StreamFrame),
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
        /// The value's id: the SHA-256 of its bytes (checked).
        id: SharedId,
        /// The stream holding its bytes.
        stream: u64,
    },
    /// The client is done with these shared values (no job of its names
    /// them any more): the node may free them.
    Unshare(Vec<SharedId>),
    /// A shared value's bytes inline: only on a node's pipe to its worker
    /// process (a node refuses it from a client, which sends `Share`).
    Shared {
        /// The value's id.
        id: SharedId,
        /// Its bytes.
        value: ByteBuf,
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
    Stream(crate::stream::StreamFrame),
    /// A job whose result is stream `stream`, which completed in the frame
    /// just before; `job.result` is an empty `Ok`.
    DoneStreamed {
        /// The stream holding the result.
        stream: u64,
        /// The job's outcome, without its result bytes.
        job: DoneJob,
    },
    /// The node does not hold these shared values (never got them, or
    /// evicted them): send them again before jobs that name them. The jobs
    /// that named them come back in a `Returned` right after.
    NeedShared(Vec<SharedId>),
}

/// What one job adds to a frame besides its payload, at most (ids, attempt,
/// name, MessagePack headers), for splitting batches by size.
pub const PER_JOB_OVERHEAD: usize = 512;

/// The largest payload (arguments or result) of one job in a frame of at
/// most `max_frame` bytes.
pub fn max_payload(max_frame: usize) -> usize {
    max_frame.saturating_sub(4 * PER_JOB_OVERHEAD)
}

/// Splits `items` into batches whose payloads (as `size` tells) plus
/// [`PER_JOB_OVERHEAD`] each stay within `budget` bytes; an item alone over
/// the budget gets a batch of its own.
pub fn batches_by_size<T>(items: Vec<T>, size: impl Fn(&T) -> usize, budget: usize) -> Vec<Vec<T>> {
    let mut batches = Vec::new();
    let mut current = Vec::new();
    let mut used = 0;
    for item in items {
        let cost = size(&item) + PER_JOB_OVERHEAD;
        if !current.is_empty() && used + cost > budget {
            batches.push(std::mem::take(&mut current));
            used = 0;
        }
        used += cost;
        current.push(item);
    }
    if !current.is_empty() {
        batches.push(current);
    }
    batches
}

/// Why a frame could not be read.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The length prefix is over the limit.
    #[error("frame of {len} bytes is over the {max}-byte limit")]
    TooLarge {
        /// The announced length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The body is not a valid message.
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// The peer closed the connection in the middle of a frame.
    #[error("connection closed in the middle of a frame")]
    Truncated,
    /// Reading or writing failed.
    #[error(transparent)]
    Io(#[from] io::Error),
    /// A sealed frame did not open (modified, injected, replayed, reordered
    /// or truncated), or a message was framed outside a session.
    #[error(transparent)]
    Secure(#[from] crate::secure::SecureError),
}

crate::debug_as_display!(FrameError);

/// Encodes `msg` as one frame: length prefix and body in one buffer.
pub fn encode_frame<M: Serialize>(msg: &M) -> Result<Vec<u8>, FrameError> {
    let mut buf = vec![0u8; 4];
    rmp_serde::encode::write(&mut buf, msg).map_err(|e| FrameError::Malformed(e.to_string()))?;
    let len = u32::try_from(buf.len() - 4).map_err(|_| FrameError::TooLarge {
        len: buf.len() - 4,
        max: u32::MAX as usize,
    })?;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    Ok(buf)
}

/// Decodes the first frame of `buf`: `Ok(None)` if more bytes are needed,
/// else the message and how many bytes it took.
pub fn decode_frame<M: DeserializeOwned>(
    buf: &[u8],
    max: usize,
) -> Result<Option<(M, usize)>, FrameError> {
    let Some(header) = buf.get(..4) else {
        return Ok(None);
    };
    let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    let Some(body) = buf.get(4..4 + len) else {
        return Ok(None);
    };
    let msg = rmp_serde::from_slice(body).map_err(|e| FrameError::Malformed(e.to_string()))?;
    Ok(Some((msg, 4 + len)))
}

/// Reads frames from a byte stream, growing its buffer only as far as the
/// frame limit allows.
pub struct FrameReader<R> {
    inner: R,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    max: usize,
    deadline: Option<std::time::Instant>,
}

impl<R: Read> FrameReader<R> {
    /// A reader of frames of at most `max` bytes.
    pub fn new(inner: R, max: usize) -> Self {
        FrameReader {
            inner,
            buf: vec![0; 16 << 10],
            start: 0,
            end: 0,
            max,
            deadline: None,
        }
    }

    /// Changes the largest frame accepted from now on.
    pub fn set_max(&mut self, max: usize) {
        self.max = max;
    }

    /// Fails reads that would go on past `deadline` (checked between the
    /// reads of the stream, so a trickling peer cannot stretch a frame forever;
    /// a blocking stream also needs its own read timeout).
    pub fn set_deadline(&mut self, deadline: Option<std::time::Instant>) {
        self.deadline = deadline;
    }

    /// The next message; `Ok(None)` if the stream ended cleanly between frames.
    pub fn read<M: DeserializeOwned>(&mut self) -> Result<Option<M>, FrameError> {
        loop {
            if let Some((msg, used)) = decode_frame(&self.buf[self.start..self.end], self.max)? {
                self.start += used;
                if self.start == self.end {
                    (self.start, self.end) = (0, 0);
                }
                return Ok(Some(msg));
            }
            if self
                .deadline
                .is_some_and(|d| std::time::Instant::now() >= d)
            {
                return Err(FrameError::Io(io::ErrorKind::TimedOut.into()));
            }
            self.make_room();
            let n = self.inner.read(&mut self.buf[self.end..])?;
            if n == 0 {
                return if self.start == self.end {
                    Ok(None)
                } else {
                    Err(FrameError::Truncated)
                };
            }
            self.end += n;
        }
    }

    /// Ensures free space after `end`: moves the partial frame to the front,
    /// then doubles the buffer, never past one largest frame.
    fn make_room(&mut self) {
        if self.end < self.buf.len() {
            return;
        }
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            (self.start, self.end) = (0, self.end - self.start);
            return;
        }
        let grown = (self.buf.len() * 2)
            .min(self.max + 4)
            .max(self.buf.len() + 1);
        self.buf.resize(grown, 0);
    }

    /// The stream underneath.
    pub fn get_ref(&self) -> &R {
        &self.inner
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    fn sample() -> Vec<NodeMsg> {
        vec![
            NodeMsg::Done(vec![DoneJob {
                id: 7,
                attempt: 2,
                result: Ok(ByteBuf::from(vec![1, 2, 3])),
                exec_ns: 99,
            }]),
            NodeMsg::Done(vec![DoneJob {
                id: 8,
                attempt: 1,
                result: Err(JobError::new(ErrorKind::Panicked, "boom").on("n", 1)),
                exec_ns: 1,
            }]),
            NodeMsg::Reject {
                reason: "no".into(),
                retry: true,
            },
            NodeMsg::Pong(3),
        ]
    }

    #[test]
    fn frames_round_trip_one_by_one_and_byte_by_byte() {
        let msgs = sample();
        let mut stream = Vec::new();
        for m in &msgs {
            stream.extend(encode_frame(m).unwrap());
        }
        // Whole stream at once.
        let mut reader = FrameReader::new(&stream[..], DEFAULT_MAX_FRAME);
        for m in &msgs {
            assert_eq!(reader.read::<NodeMsg>().unwrap().as_ref(), Some(m));
        }
        assert!(reader.read::<NodeMsg>().unwrap().is_none());
        // Every prefix of one frame is "need more", never an error.
        let one = encode_frame(&msgs[0]).unwrap();
        for cut in 0..one.len() {
            assert!(decode_frame::<NodeMsg>(&one[..cut], 1 << 20)
                .unwrap()
                .is_none());
        }
        // A stream that arrives one byte per read.
        struct Trickle<'a>(&'a [u8]);
        impl Read for Trickle<'_> {
            fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
                let Some((first, rest)) = self.0.split_first() else {
                    return Ok(0);
                };
                out[0] = *first;
                self.0 = rest;
                Ok(1)
            }
        }
        let mut reader = FrameReader::new(Trickle(&stream), DEFAULT_MAX_FRAME);
        for m in &msgs {
            assert_eq!(reader.read::<NodeMsg>().unwrap().as_ref(), Some(m));
        }
    }

    #[test]
    fn oversized_length_is_refused_before_reading_the_body() {
        let header = (u32::MAX).to_be_bytes();
        let err = decode_frame::<NodeMsg>(&header, DEFAULT_MAX_FRAME).unwrap_err();
        assert!(matches!(err, FrameError::TooLarge { len, .. } if len == u32::MAX as usize));
        let mut reader = FrameReader::new(&header[..], 1024);
        assert!(matches!(
            reader.read::<NodeMsg>(),
            Err(FrameError::TooLarge { .. })
        ));
        assert!(reader.buf.len() < 1 << 20);
    }

    #[test]
    fn malformed_and_truncated_frames_are_errors() {
        let garbage = [0, 0, 0, 3, 0xc1, 0xc1, 0xc1];
        assert!(matches!(
            decode_frame::<NodeMsg>(&garbage, 1024),
            Err(FrameError::Malformed(_))
        ));
        let frame = encode_frame(&NodeMsg::Pong(1)).unwrap();
        let mut reader = FrameReader::new(&frame[..frame.len() - 1], 1024);
        assert!(matches!(
            reader.read::<NodeMsg>(),
            Err(FrameError::Truncated)
        ));
        // A valid frame of the other direction's type is malformed here.
        let wrong = encode_frame(&ClientMsg::Status).unwrap();
        assert!(decode_frame::<NodeMsg>(&wrong, 1024).is_err());
        // Empty body.
        assert!(decode_frame::<NodeMsg>(&[0, 0, 0, 0], 1024).is_err());
    }

    #[test]
    fn batches_stay_within_the_frame_limit() {
        let sizes = vec![100usize, 900, 50, 2000, 10, 10];
        let batches = batches_by_size(sizes, |&n| n, 1000 + 2 * PER_JOB_OVERHEAD);
        assert_eq!(
            batches,
            vec![vec![100, 900], vec![50], vec![2000], vec![10, 10]]
        );
        let jobs: Vec<RunJob> = (0..100)
            .map(|id| RunJob {
                id,
                attempt: 1,
                name: "jobs::echo_bytes".into(),
                args: ByteBuf::from(vec![7u8; 10_000]),
                program: None,
                shared: Vec::new(),
            })
            .collect();
        let max = 64 << 10;
        for batch in batches_by_size(jobs, |j| j.args.len(), max) {
            let frame = encode_frame(&ClientMsg::Run(batch)).unwrap();
            assert!(frame.len() - 4 <= max, "{}", frame.len());
        }
    }

    #[test]
    fn discovery_reply_round_trips() {
        assert_eq!(
            parse_discovery_reply(discovery_reply(60000).as_bytes()),
            Some(60000)
        );
        assert_eq!(parse_discovery_reply(b"pp-node 1 99999"), None);
        assert_eq!(parse_discovery_reply(b"\xff\xfe"), None);
    }

    proptest::proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = decode_frame::<ClientMsg>(&bytes, 1024);
            let _ = decode_frame::<NodeMsg>(&bytes, 1024);
            let mut reader = FrameReader::new(&bytes[..], 1024);
            for _ in 0..8 {
                if !matches!(reader.read::<ClientMsg>(), Ok(Some(_))) { break; }
            }
        }

        #[test]
        fn run_batches_round_trip(ids in proptest::collection::vec(0u64..u64::MAX, 0..64), args in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            let msg = ClientMsg::Run(ids.iter().map(|&id| RunJob { id, attempt: 1, name: "a::b".into(), args: ByteBuf::from(args.clone()), program: None, shared: Vec::new() }).collect());
            let frame = encode_frame(&msg).unwrap();
            let (back, used) = decode_frame::<ClientMsg>(&frame, DEFAULT_MAX_FRAME).unwrap().unwrap();
            proptest::prop_assert_eq!(used, frame.len());
            proptest::prop_assert_eq!(back, msg);
        }
    }
}
