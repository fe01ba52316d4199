//! Streams: a payload larger than one frame (a job's arguments or result),
//! cut into chunks of at most [`MAX_CHUNK`] bytes and put back together on
//! the other side, as pure state: no sockets, no clock (time is passed in).
//!
//! # How a link uses it
//!
//! Sending, for a payload over what one frame carries:
//!
//! 1. [`Outgoing::push`] with a stream id unique on this connection (in this
//!    direction), the encoded payload, and the peer's `max_payload` (each side
//!    announces its own in the handshake). A payload over it is refused here,
//!    before any byte moves: fail that job with the error and keep the
//!    connection. (At submit, `check_size(&args, max_payload)` gives the same
//!    answer without encoding.)
//! 2. Whenever the link may write, take **one** frame from
//!    [`Outgoing::next_frame`] and send it, then whatever else is queued
//!    (heartbeats, small jobs, results) before asking for the next, so that a
//!    256 MiB payload never holds the connection for more than one chunk.
//!    Streams take turns, one chunk each. A stream's first frame is its
//!    [`StreamFrame::Start`], announcing the id and the total length.
//! 3. [`Outgoing::abort`] drops a stream the job no longer needs (cancelled,
//!    node lost) and gives the [`StreamFrame::Abort`] to send if its start
//!    was already sent.
//!
//! The job's own message (`Run` or `Done`) then names the stream instead of
//! carrying the payload inline, and goes after the stream's last chunk.
//!
//! Receiving, on the authenticated connection only (before authentication
//! the 4 KiB frame cap stays and stream frames are a protocol error):
//!
//! 1. Each [`StreamFrame`] goes to [`Assembler::receive`] with `now`. It gives
//!    `Ok(Some((id, payload)))` when a stream is complete (exactly its
//!    announced length), `Ok(None)` otherwise.
//! 2. Arm a timer for [`Assembler::poll_timeout`]; when it fires, call
//!    [`Assembler::expire`]: a stream without a byte of progress for
//!    [`Limits::stall`] is dropped, whatever other frames arrived meanwhile.
//! 3. Every [`StreamError`] from the assembler means the peer broke the
//!    protocol or stalled: close the connection with the error as the
//!    reason (its jobs run elsewhere). Other connections are not touched.
//!
//! Memory: a stream counts its announced length against the limits when it
//! starts (refused over [`Limits::max_payload`], and over
//! [`Limits::max_buffered`] for all open streams of the connection
//! together). Its buffer is reserved at that length as address space (so it
//! is never copied to grow) and takes memory only as bytes arrive, never
//! past that length; a chunk past it is refused, never stored. The completed payload is that
//! buffer, handed over without a copy.

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// The largest chunk of a stream, in bytes.
pub const MAX_CHUNK: usize = 1 << 20;
/// The default largest payload (argument or result) of one job: 1 GiB.
pub const DEFAULT_MAX_PAYLOAD: u64 = 1 << 30;
/// What a stream reserves when it starts where its whole length cannot be
/// reserved; it grows as bytes come.
const FIRST_RESERVE: u64 = 4 << 20;
/// The default time a stream may go without progress before it is dropped.
pub const DEFAULT_STALL: Duration = Duration::from_secs(30);

/// One frame of a stream, as it travels inside the link's messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum StreamFrame {
    /// A stream begins: its id and total length, before any of its bytes.
    Start {
        /// The stream's id, unique among the open streams of this direction.
        id: u64,
        /// The payload's length in bytes.
        len: u64,
    },
    /// The next bytes of a stream.
    Chunk {
        /// The stream's id.
        id: u64,
        /// Where these bytes go in the payload: the count of bytes before them.
        offset: u64,
        /// At most [`MAX_CHUNK`] bytes, never empty.
        data: ByteBuf,
    },
    /// The sender gives the stream up; the receiver frees what it holds.
    Abort {
        /// The stream's id.
        id: u64,
    },
}

/// Why a stream was refused or dropped.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    /// The payload is over the limit: refused before any byte moved.
    #[error("stream {id}: a payload of {len} bytes is over the {max}-byte limit")]
    TooLarge {
        /// The stream.
        id: u64,
        /// Its length.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// The open streams of this connection would hold more than allowed.
    #[error("stream {id}: {len} more bytes would make {open} buffered, over the {max}-byte limit")]
    OverBudget {
        /// The stream.
        id: u64,
        /// Its length.
        len: u64,
        /// What the open streams would hold with it.
        open: u64,
        /// The limit.
        max: u64,
    },
    /// Too many streams open at once.
    #[error("stream {id}: more than {max} streams open at once")]
    TooMany {
        /// The stream.
        id: u64,
        /// The limit.
        max: usize,
    },
    /// A second start for a stream that is open.
    #[error("stream {id} started twice")]
    Duplicate {
        /// The stream.
        id: u64,
    },
    /// A chunk for a stream that is not open.
    #[error("stream {id}: a chunk for a stream that is not open")]
    Unknown {
        /// The stream.
        id: u64,
    },
    /// A chunk that does not continue where the stream is.
    #[error("stream {id}: a chunk at offset {offset}, expected {expected}")]
    OutOfOrder {
        /// The stream.
        id: u64,
        /// Where the chunk said it goes.
        offset: u64,
        /// Where the stream is.
        expected: u64,
    },
    /// A chunk that is empty or over [`MAX_CHUNK`].
    #[error("stream {id}: a chunk of {size} bytes (1 to {max} allowed)")]
    BadChunk {
        /// The stream.
        id: u64,
        /// Its size.
        size: usize,
        /// The largest chunk.
        max: usize,
    },
    /// More bytes than the stream announced: the peer lied about the length.
    #[error("stream {id}: {received} bytes sent, {len} announced")]
    Overflow {
        /// The stream.
        id: u64,
        /// The announced length.
        len: u64,
        /// What would have arrived with the chunk.
        received: u64,
    },
    /// A stream completed, and the next message did not name it.
    #[error("stream {id} completed but the next message did not claim it")]
    Unclaimed {
        /// The stream.
        id: u64,
    },
    /// A message named a stream that has not completed just before it.
    #[error("a message named stream {id}, which did not just complete")]
    NotReceived {
        /// The stream.
        id: u64,
    },
    /// No progress for too long.
    #[error("stream {id}: no progress for {idle:?} ({received} of {len} bytes)")]
    Stalled {
        /// The stream.
        id: u64,
        /// How long without a byte.
        idle: Duration,
        /// What had arrived.
        received: u64,
        /// What was announced.
        len: u64,
    },
}

crate::debug_as_display!(StreamError);

/// How much a receiving side accepts from one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest payload of one stream (`--max-payload`).
    pub max_payload: u64,
    /// The most bytes all open streams of the connection may hold together.
    pub max_buffered: u64,
    /// The most streams open at once.
    pub max_streams: usize,
    /// How long a stream may go without a byte of progress.
    pub stall: Duration,
}

impl Default for Limits {
    /// 1 GiB per payload and per connection, 64 streams, 30 s without progress.
    fn default() -> Self {
        Limits {
            max_payload: DEFAULT_MAX_PAYLOAD,
            max_buffered: DEFAULT_MAX_PAYLOAD,
            max_streams: 64,
            stall: DEFAULT_STALL,
        }
    }
}

/// Checks a payload of `len` bytes against the peer's `max_payload`.
pub fn check_len(id: u64, len: u64, max_payload: u64) -> Result<(), StreamError> {
    if len > max_payload {
        return Err(StreamError::TooLarge {
            id,
            len,
            max: max_payload,
        });
    }
    Ok(())
}

/// The chunk size for a link whose frames may hold `max_frame` bytes:
/// [`MAX_CHUNK`], or less if a frame cannot carry that much.
pub fn chunk_size(max_frame: usize) -> usize {
    crate::wire::frame::max_payload(max_frame).clamp(1, MAX_CHUNK)
}

/// What a stream sends: bytes of its own, or a shared value's bytes,
/// sent without a copy (the same ones go to every node).
#[derive(Debug)]
pub enum Payload {
    /// Bytes owned by the stream, freed as it ends.
    Owned(Vec<u8>),
    /// Bytes held elsewhere too.
    Shared(std::sync::Arc<Vec<u8>>),
}

impl Payload {
    fn as_slice(&self) -> &[u8] {
        match self {
            Payload::Owned(v) => v,
            Payload::Shared(v) => v,
        }
    }

    fn len(&self) -> usize {
        self.as_slice().len()
    }

    fn is_empty(&self) -> bool {
        self.as_slice().is_empty()
    }
}

impl From<Vec<u8>> for Payload {
    fn from(v: Vec<u8>) -> Self {
        Payload::Owned(v)
    }
}

impl From<std::sync::Arc<Vec<u8>>> for Payload {
    fn from(v: std::sync::Arc<Vec<u8>>) -> Self {
        Payload::Shared(v)
    }
}

/// One stream being sent.
#[derive(Debug)]
struct Sending {
    id: u64,
    payload: Payload,
    sent: usize,
    started: bool,
}

/// The streams this side is sending on one connection: one frame at a time,
/// the streams taking turns.
#[derive(Debug)]
pub struct Outgoing {
    queue: VecDeque<Sending>,
    chunk: usize,
    /// The most bytes the started streams may announce together (the
    /// peer's buffer): a stream that would pass it starts when others end.
    budget: u64,
}

impl Default for Outgoing {
    fn default() -> Self {
        Outgoing {
            queue: VecDeque::new(),
            chunk: MAX_CHUNK,
            budget: u64::MAX,
        }
    }
}

impl Outgoing {
    /// No streams; chunks of [`MAX_CHUNK`].
    pub fn new() -> Self {
        Self::default()
    }

    /// No streams; chunks of at most `chunk` bytes (1 to [`MAX_CHUNK`]).
    pub fn with_chunk(chunk: usize) -> Self {
        Outgoing {
            queue: VecDeque::new(),
            chunk: chunk.clamp(1, MAX_CHUNK),
            budget: u64::MAX,
        }
    }

    /// Lets streams start only while the started ones announce at most
    /// `budget` bytes together (one stream always may), so that the peer's
    /// buffer for open streams is never passed.
    pub fn set_budget(&mut self, budget: u64) {
        self.budget = budget;
    }

    /// Whether stream `id` is still queued (not all of it sent).
    pub fn contains(&self, id: u64) -> bool {
        self.queue.iter().any(|s| s.id == id)
    }

    /// Queues `payload` as stream `id`; refused, with nothing queued, when it
    /// is over the peer's `max_payload` or `id` is already queued.
    pub fn push(
        &mut self,
        id: u64,
        payload: impl Into<Payload>,
        max_payload: u64,
    ) -> Result<(), StreamError> {
        let payload = payload.into();
        check_len(id, payload.len() as u64, max_payload)?;
        if self.queue.iter().any(|s| s.id == id) {
            return Err(StreamError::Duplicate { id });
        }
        self.queue.push_back(Sending {
            id,
            payload,
            sent: 0,
            started: false,
        });
        Ok(())
    }

    /// The next frame to send, or `None` when every stream is sent. A stream
    /// leaves the queue with its last chunk (and its memory with it).
    pub fn next_frame(&mut self) -> Option<StreamFrame> {
        let open: u64 = self
            .queue
            .iter()
            .filter(|s| s.started)
            .map(|s| s.payload.len() as u64)
            .sum();
        let at = self.queue.iter().position(|s| {
            s.started || open == 0 || open.saturating_add(s.payload.len() as u64) <= self.budget
        })?;
        let mut stream = self.queue.remove(at)?;
        if !stream.started {
            stream.started = true;
            let frame = StreamFrame::Start {
                id: stream.id,
                len: stream.payload.len() as u64,
            };
            if !stream.payload.is_empty() {
                self.queue.insert(at, stream);
            }
            return Some(frame);
        }
        let end = stream.payload.len().min(stream.sent + self.chunk);
        let frame = StreamFrame::Chunk {
            id: stream.id,
            offset: stream.sent as u64,
            data: ByteBuf::from(
                stream
                    .payload
                    .as_slice()
                    .get(stream.sent..end)
                    .unwrap_or_default(),
            ),
        };
        stream.sent = end;
        if stream.sent < stream.payload.len() {
            self.queue.push_back(stream);
        }
        Some(frame)
    }

    /// Drops stream `id`; the [`StreamFrame::Abort`] to send if the peer has
    /// seen its start.
    pub fn abort(&mut self, id: u64) -> Option<StreamFrame> {
        let at = self.queue.iter().position(|s| s.id == id)?;
        let stream = self.queue.remove(at)?;
        stream.started.then_some(StreamFrame::Abort { id })
    }

    /// Streams not yet fully sent.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether every stream is sent.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Bytes queued and not yet sent.
    pub fn pending_bytes(&self) -> u64 {
        self.queue
            .iter()
            .map(|s| (s.payload.len() - s.sent) as u64)
            .sum()
    }
}

/// The streams one side of a link sends: each payload cut into chunks,
/// followed at once by the message that names it (its `Run` or `Done`).
#[derive(Debug)]
pub struct Streams<M> {
    out: Outgoing,
    next_id: u64,
    then: HashMap<u64, M>,
}

impl<M> Streams<M> {
    /// No streams; chunks of at most `chunk` bytes.
    pub fn new(chunk: usize) -> Self {
        Streams {
            out: Outgoing::with_chunk(chunk),
            next_id: 1,
            then: HashMap::new(),
        }
    }

    /// Queues `payload` as a new stream, refused (nothing queued) over the
    /// peer's `max_payload`; `then` makes the message that follows its last
    /// chunk from the stream's id.
    pub fn push(
        &mut self,
        payload: impl Into<Payload>,
        max_payload: u64,
        then: impl FnOnce(u64) -> M,
    ) -> Result<u64, StreamError> {
        let id = self.next_id;
        self.out.push(id, payload, max_payload)?;
        self.out.set_budget(max_payload);
        self.next_id += 1;
        self.then.insert(id, then(id));
        Ok(id)
    }

    /// The next frame to send, with the message to send right after it
    /// when it ends its stream.
    pub fn next_frame(&mut self) -> Option<(StreamFrame, Option<M>)> {
        let frame = self.out.next_frame()?;
        let id = match &frame {
            StreamFrame::Start { id, .. }
            | StreamFrame::Chunk { id, .. }
            | StreamFrame::Abort { id } => *id,
        };
        let then = match self.out.contains(id) {
            true => None,
            false => self.then.remove(&id),
        };
        Some((frame, then))
    }

    /// Drops the streams whose message `gone` picks; the frames to send to
    /// tell the peer (for those it has seen start).
    pub fn abort_where(&mut self, gone: impl Fn(&M) -> bool) -> Vec<StreamFrame> {
        let ids: Vec<u64> = self
            .then
            .iter()
            .filter(|(_, m)| gone(m))
            .map(|(&id, _)| id)
            .collect();
        let mut frames = Vec::new();
        for id in ids {
            self.then.remove(&id);
            frames.extend(self.out.abort(id));
        }
        frames
    }

    /// Forgets every stream (the connection is gone).
    pub fn clear(&mut self) {
        self.out.queue.clear();
        self.then.clear();
    }

    /// Whether nothing waits to be sent.
    pub fn is_empty(&self) -> bool {
        self.out.is_empty()
    }

    /// Bytes queued and not yet sent.
    pub fn pending_bytes(&self) -> u64 {
        self.out.pending_bytes()
    }
}

/// The streams one side of a link receives: an [`Assembler`], and the
/// payload of the stream that just completed until the next message, which
/// must name it, claims it. So at most one completed payload waits.
#[derive(Debug)]
pub struct Incoming {
    asm: Assembler,
    complete: Option<(u64, Claimed)>,
}

/// What a completed stream holds for the message that claims it.
#[derive(Debug, PartialEq, Eq)]
pub enum Claimed {
    /// The payload.
    Payload(Vec<u8>),
    /// Nothing: the stream was refused for memory when it started
    /// ([`Assembler::set_room`]); hand its job back.
    Refused,
}

impl Incoming {
    /// Nothing received yet; `limits` bound what the peer may send.
    pub fn new(limits: Limits) -> Self {
        Incoming {
            asm: Assembler::new(limits),
            complete: None,
        }
    }

    /// Takes one stream frame received at `now`. An error means close the
    /// connection.
    pub fn receive(&mut self, frame: StreamFrame, now: Instant) -> Result<(), StreamError> {
        self.check_claimed()?;
        if let Some((id, payload)) = self.asm.receive(frame, now)? {
            self.complete = Some((id, Claimed::Payload(payload)));
        } else if let Some(id) = self.asm.take_refused() {
            self.complete = Some((id, Claimed::Refused));
        }
        Ok(())
    }

    /// See [`Assembler::set_room`].
    pub fn set_room(&mut self, room: u64) {
        self.asm.set_room(room);
    }

    /// The payload of stream `id`, which must have completed just before
    /// (a stream refused for memory is [`StreamError::NotReceived`]: use
    /// [`Incoming::claim_or_refused`] where streams may be refused).
    pub fn claim(&mut self, id: u64) -> Result<Vec<u8>, StreamError> {
        match self.claim_or_refused(id)? {
            Claimed::Payload(payload) => Ok(payload),
            Claimed::Refused => Err(StreamError::NotReceived { id }),
        }
    }

    /// What stream `id` holds, which must have completed just before.
    pub fn claim_or_refused(&mut self, id: u64) -> Result<Claimed, StreamError> {
        match self.complete.take() {
            Some((done, claimed)) if done == id => Ok(claimed),
            Some((done, _)) => Err(StreamError::Unclaimed { id: done }),
            None => Err(StreamError::NotReceived { id }),
        }
    }

    /// An error if a completed payload waits: any message but the one that
    /// claims it breaks the protocol.
    pub fn check_claimed(&self) -> Result<(), StreamError> {
        match &self.complete {
            Some((id, _)) => Err(StreamError::Unclaimed { id: *id }),
            None => Ok(()),
        }
    }

    /// When the next stream stalls unless it makes progress: just past
    /// its limit (a stream is dropped once it has been idle for longer).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.asm
            .poll_timeout()
            .map(|t| t + Duration::from_millis(1))
    }

    /// The first stream stalled at `now`, if any (close the connection).
    pub fn expire(&mut self, now: Instant) -> Option<StreamError> {
        self.asm.expire(now).into_iter().next()
    }

    /// Bytes the open streams have reserved (those kept, not refused).
    pub fn reserved(&self) -> u64 {
        self.asm.reserved()
    }
}

/// One stream being received.
#[derive(Debug)]
struct Receiving {
    len: u64,
    /// The bytes so far; empty for a stream refused for memory.
    data: Vec<u8>,
    /// Bytes received so far (kept or not).
    received: u64,
    /// False for a stream refused for memory: its chunks are checked and
    /// dropped, and it completes as refused.
    kept: bool,
    progress: Instant,
}

/// The streams this side is receiving on one connection.
#[derive(Debug)]
pub struct Assembler {
    limits: Limits,
    open: HashMap<u64, Receiving>,
    reserved: u64,
    /// What the kept open streams may reserve together (see [`Assembler::set_room`]).
    room: u64,
    /// The stream refused for memory that completed last, not yet taken.
    refused_done: Option<u64>,
}

impl Assembler {
    /// No streams open yet; `limits` bound what the peer may send.
    pub fn new(limits: Limits) -> Self {
        Assembler {
            limits,
            open: HashMap::new(),
            reserved: 0,
            room: u64::MAX,
            refused_done: None,
        }
    }

    /// The memory this side may still commit to new streams, in bytes
    /// (beyond what its open streams reserve). A stream that starts over it
    /// is refused for memory: no byte of it is stored, its chunks are
    /// checked and dropped, and it completes as refused (the node hands its
    /// job back, to run later or elsewhere). Unbounded until set.
    pub fn set_room(&mut self, room: u64) {
        self.room = self.reserved.saturating_add(room);
    }

    /// The stream refused for memory that completed with the last frame,
    /// if any.
    pub fn take_refused(&mut self) -> Option<u64> {
        self.refused_done.take()
    }

    /// The limits in force.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Takes one frame received at `now`: the payload of a stream it
    /// completes, if any. An error means close the connection.
    pub fn receive(
        &mut self,
        frame: StreamFrame,
        now: Instant,
    ) -> Result<Option<(u64, Vec<u8>)>, StreamError> {
        match frame {
            StreamFrame::Start { id, len } => self.start(id, len, now),
            StreamFrame::Chunk { id, offset, data } => self.chunk(id, offset, &data, now),
            StreamFrame::Abort { id } => {
                self.close(id);
                Ok(None)
            }
        }
    }

    fn start(
        &mut self,
        id: u64,
        len: u64,
        now: Instant,
    ) -> Result<Option<(u64, Vec<u8>)>, StreamError> {
        check_len(id, len, self.limits.max_payload)?;
        if self.open.contains_key(&id) {
            return Err(StreamError::Duplicate { id });
        }
        if len == 0 {
            // Nothing to wait for: complete at once.
            return Ok(Some((id, Vec::new())));
        }
        if self.open.len() >= self.limits.max_streams {
            return Err(StreamError::TooMany {
                id,
                max: self.limits.max_streams,
            });
        }
        let open = self.reserved.saturating_add(len);
        if open > self.limits.max_buffered {
            return Err(StreamError::OverBudget {
                id,
                len,
                open,
                max: self.limits.max_buffered,
            });
        }
        if open > self.room {
            // Over the memory this side has left: refused, nothing stored.
            self.open.insert(
                id,
                Receiving {
                    len,
                    data: Vec::new(),
                    received: 0,
                    kept: false,
                    progress: now,
                },
            );
            return Ok(None);
        }
        // The buffer is reserved at its announced length (within the limits
        // checked above) so it is never copied to grow: reserving takes
        // address space, and memory only as chunks arrive, so a peer that
        // announces much and sends little still costs little. Where even
        // the address space is refused, it grows as chunks arrive instead.
        let mut data = Vec::new();
        if usize::try_from(len).map_or(true, |n| data.try_reserve_exact(n).is_err()) {
            data.reserve(usize::try_from(len.min(FIRST_RESERVE)).unwrap_or(MAX_CHUNK));
        }
        crate::job::bigbuf::advise(&data);
        self.reserved = open;
        self.open.insert(
            id,
            Receiving {
                len,
                data,
                received: 0,
                kept: true,
                progress: now,
            },
        );
        Ok(None)
    }

    fn chunk(
        &mut self,
        id: u64,
        offset: u64,
        data: &[u8],
        now: Instant,
    ) -> Result<Option<(u64, Vec<u8>)>, StreamError> {
        let stall = self.limits.stall;
        let stream = self.open.get_mut(&id).ok_or(StreamError::Unknown { id })?;
        let idle = now.saturating_duration_since(stream.progress);
        if idle > stall {
            let (received, len) = (stream.received, stream.len);
            self.close(id);
            return Err(StreamError::Stalled {
                id,
                idle,
                received,
                len,
            });
        }
        if data.is_empty() || data.len() > MAX_CHUNK {
            return Err(StreamError::BadChunk {
                id,
                size: data.len(),
                max: MAX_CHUNK,
            });
        }
        let expected = stream.received;
        if offset != expected {
            return Err(StreamError::OutOfOrder {
                id,
                offset,
                expected,
            });
        }
        let received = expected + data.len() as u64;
        if received > stream.len {
            return Err(StreamError::Overflow {
                id,
                len: stream.len,
                received,
            });
        }
        stream.received = received;
        stream.progress = now;
        if !stream.kept {
            if received == stream.len {
                self.open.remove(&id);
                self.refused_done = Some(id);
            }
            return Ok(None);
        }
        let room = stream.data.capacity() - stream.data.len();
        if room < data.len() {
            // Within the announced length, which fits the address space.
            let left = usize::try_from(stream.len - expected).unwrap_or(usize::MAX);
            let more = stream.data.capacity().max(data.len()).min(left);
            stream.data.reserve_exact(more);
            crate::job::bigbuf::advise(&stream.data);
        }
        stream.data.extend_from_slice(data);
        if received < stream.len {
            return Ok(None);
        }
        let done = self.open.remove(&id).map(|s| s.data).unwrap_or_default();
        self.reserved = self.reserved.saturating_sub(received);
        Ok(Some((id, done)))
    }

    /// Frees stream `id`, if open.
    fn close(&mut self, id: u64) {
        if let Some(stream) = self.open.remove(&id) {
            if stream.kept {
                self.reserved = self.reserved.saturating_sub(stream.len);
            }
        }
    }

    /// When the next stream stalls unless it makes progress: arm a timer.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.open
            .values()
            .map(|s| s.progress + self.limits.stall)
            .min()
    }

    /// Drops every stream without progress for longer than the stall limit
    /// at `now`, and says which (close the connection if any).
    pub fn expire(&mut self, now: Instant) -> Vec<StreamError> {
        let stall = self.limits.stall;
        let mut ids: Vec<u64> = self
            .open
            .iter()
            .filter(|(_, s)| now.saturating_duration_since(s.progress) > stall)
            .map(|(&id, _)| id)
            .collect();
        ids.sort_unstable();
        let mut stalled = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(s) = self.open.remove(&id) {
                if s.kept {
                    self.reserved = self.reserved.saturating_sub(s.len);
                }
                stalled.push(StreamError::Stalled {
                    id,
                    idle: now.saturating_duration_since(s.progress),
                    received: s.received,
                    len: s.len,
                });
            }
        }
        stalled
    }

    /// Streams open now.
    pub fn open_streams(&self) -> usize {
        self.open.len()
    }

    /// Bytes the open streams have reserved (their announced lengths).
    pub fn reserved(&self) -> u64 {
        self.reserved
    }

    /// Bytes of memory the open streams' buffers hold now: what arrived.
    /// (Each buffer reserves its announced length as address space when the
    /// stream starts; memory is taken only as bytes are written into it.)
    pub fn held(&self) -> u64 {
        self.open.values().map(|s| s.data.len() as u64).sum()
    }
}
