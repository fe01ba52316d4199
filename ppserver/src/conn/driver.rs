//! The driver of one client connection: a thin I/O shell around
//! [`ppcore::NodeLink`]. Whatever goes wrong here ends this connection only.
//!
//! One thread per connection, and no hand-off between threads on the way
//! in or out. The driver owns the link and a non-blocking socket; it sleeps
//! in `mio` until the socket is readable or writable, the link's timer is
//! due, or a worker or the daemon wakes it (`node::handle::Conn`: a finished job,
//! drain, stop); while its client's jobs run, and for 100 µs after the last
//! one ended, it first looks for their results and the socket, yielding the
//! core in between, so that a short job costs no wake-up. It reads whatever the socket has (so control frames are
//! always read, even while it waits on a slow client), feeds it to the link
//! and does what it says: write its transmits (what the socket does not
//! take waits in an [`Outbox`]; no progress for `--write-timeout` drops the
//! client), queue or cancel jobs, take an upload's chunks, close. The rules
//! (one upload at a time and its stall limit, shared values, when to stop
//! reading) are the link's: this file only does I/O.
//!
//! Memory per client is bounded. Its queued work is bounded by the credit
//! window the link grants (jobs beyond it go back unrun, and the node keeps
//! reading, so heartbeats and cancels always get through). Its unwritten
//! results: the link frames a result (inline, or queued as a stream) only
//! while the connection's unsent bytes (the outbox and the queued streams)
//! are under its send window (twice the frame limit: 32 MiB by default;
//! see `ppcore::window`); until then the result waits in the link and keeps
//! its job's credit. While the outbox alone exceeds the same limit the
//! driver stops reading from the client ([`NodeLink::may_read`]). A client that does
//! not read its results is held there by TCP until `--write-timeout` drops
//! it. All of it (queued arguments, results waiting or queued as streams,
//! the outbox) is counted against the node's `--max-memory` (`memory`), so
//! new work is handed back while the node is full, whatever a client does
//! or does not read: the node holds at most `--max-memory` plus the results
//! of the jobs running when it filled. An outbox's buffer beyond 64 KiB is
//! given back whenever the driver sleeps with nothing to write, so an idle
//! connection does not keep the memory of a backlog it once had.

use super::spilled::Spilled;
use crate::node::handle::{Conn, ConnIn, Waker};
use crate::node::memory::Held;
use crate::node::runs::Claim;
use crate::node::Node;
use crate::programs::waiting::Waiter;
use crate::programs::{Decision, Upload};
use crossbeam_channel::Receiver;
use mio::net::TcpStream;
use mio::{Events, Poll};
use ppcore::io_driver::{self, ReadOutcome, Spun, READS_PER_TURN, READ_BUF};
use ppcore::program::{OfferAnswer, ProgramId, ProgramInfo};
use ppcore::shared::{SharedId, SharedValue};
use ppcore::{NodeAction, NodeCloseReason, NodeEvent, NodeLink, NodeLinkConfig, Outbox};
use ppcore::{TransportEnd, UploadRefusal};
use std::collections::HashMap;
use std::net::Shutdown;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Finished jobs gathered into one `Done` frame at most.
const MAX_BATCH: usize = 1024;

/// What a driver serves: the socket, the poll it sleeps in and its waker,
/// and the node's news for it.
pub(super) struct Wired {
    pub(super) stream: std::net::TcpStream,
    pub(super) poll: Poll,
    pub(super) waker: Arc<Waker>,
    pub(super) events: Receiver<ConnIn>,
    pub(super) peer: String,
}

/// Serves connection `id` of `node` (`conn`, as the node reaches it) until
/// it closes; logs why it ended.
pub(super) fn serve(node: &Arc<Node>, id: u64, conn: &Arc<Conn>, wired: Wired) {
    let Wired {
        stream,
        poll,
        waker,
        events,
        peer,
    } = wired;
    match io_driver::watch(&poll, stream) {
        Ok(stream) => {
            let mut d = Driver {
                node,
                id,
                conn,
                stream,
                poll,
                waker,
                outbox: Outbox::new(),
                outbox_held: node.memory.hold(0),
                unsent_held: node.memory.hold(0),
                streams_held: node.memory.hold(0),
                kept_held: node.memory.hold(0),
                kept_counted: [0; 3],
                spilled: Spilled::new(Arc::clone(&node.spill), id),
                results_held: Vec::new(),
                readable: true,
                watch_write: false,
                buf: vec![0u8; READ_BUF],
                peer: peer.clone(),
                broken: false,
                upload: None,
                active: Instant::now(),
            };
            d.run(&events);
        }
        Err(e) => tracing::warn!(%peer, "cannot use connection: {e}"),
    }
}

struct Driver<'a> {
    node: &'a Arc<Node>,
    /// This connection's number in the node.
    id: u64,
    conn: &'a Arc<Conn>,
    stream: TcpStream,
    poll: Poll,
    waker: Arc<Waker>,
    outbox: Outbox,
    /// The outbox's bytes, counted against `--max-memory`.
    outbox_held: Held,
    /// Results in the link not yet framed (waiting for the send window, or
    /// queued as streams), counted against `--max-memory`.
    unsent_held: Held,
    /// What the client's incoming streams reserve (their announced
    /// lengths), counted against `--max-memory`: a stream that would go over
    /// it is refused at its start and its job handed back.
    streams_held: Held,
    /// This connection's kept values (`NodeLink::kept`), counted against
    /// `--max-memory`.
    kept_held: Held,
    /// Its kept values, their bytes and its parked jobs, as last added to
    /// the node's meters.
    kept_counted: [u64; 3],
    /// This connection's spill files (kept values over `--max-memory`),
    /// deleted when it ends.
    spilled: Spilled,
    /// Results read from the workers, counted until the link's frames of
    /// them reach the outbox.
    results_held: Vec<Held>,
    /// The socket may have more to read.
    readable: bool,
    /// Whether the poll watches the socket for room to write (only while
    /// the outbox holds bytes).
    watch_write: bool,
    buf: Vec<u8>,
    peer: String,
    /// A write failed: write nothing more.
    broken: bool,
    /// The program upload under way on this connection (the link allows
    /// one at a time).
    upload: Option<Box<Upload>>,
    /// When a job of this client last ended here.
    active: Instant,
}

impl Driver<'_> {
    fn run(&mut self, events: &Receiver<ConnIn>) {
        let config = &self.node.config;
        let Some(keys) = config.keys.clone() else {
            return tracing::warn!(peer = %self.peer, "no key: cannot serve");
        };
        let link_config = NodeLinkConfig {
            keys,
            handshake_timeout: config.handshake_timeout,
            heartbeat: config.heartbeat,
            max_frame: config.max_frame,
            credit_jobs: config.credit_jobs(),
            credit_bytes: config.credit_bytes,
            max_payload: config.max_payload,
            stream_stall: config.stream_stall,
            send_window: ppcore::window::default_window(config.max_frame),
        };
        let mut link = NodeLink::new(link_config, self.node.welcome(), Instant::now());
        if self.node.draining() {
            link.handle(NodeEvent::Drain, Instant::now());
        }
        let mut polled = Events::with_capacity(8);
        while self.settle(&mut link) {
            self.wait(&mut link, events, &mut polled);
        }
        // What this connection uploaded or waited for ends with it.
        self.upload = None;
        self.node.programs.forget(self.id);
        let _ = self.outbox.flush(&mut self.stream, Instant::now());
        let _ = self.poll.registry().deregister(&mut self.stream);
        let _ = self.stream.shutdown(Shutdown::Both);
        if !link.authenticated() {
            self.node.meters.handshake_failed();
        }
        // What was kept here goes with the connection.
        self.node.meters.kept(&mut self.kept_counted, [0; 3]);
    }

    /// Sleeps until the socket, a worker, the daemon or the timer has news,
    /// and feeds it to the link.
    fn wait(&mut self, link: &mut NodeLink, events: &Receiver<ConnIn>, polled: &mut Events) {
        self.spin(link, events, polled);
        // Asleep from here: a worker's news from now on wakes the poll.
        self.waker.going_to_sleep();
        let busy = self.may_read(link) || !events.is_empty();
        let now = Instant::now();
        let mut wake = link
            .poll_timeout()
            .unwrap_or(now + self.node.config.handshake_timeout);
        let write_timeout = self.node.config.write_timeout;
        if let Some(t) = self.outbox.stall_deadline(write_timeout) {
            wake = wake.min(t);
        }
        let timeout = match busy {
            true => Duration::ZERO,
            false => wake.saturating_duration_since(now),
        };
        if !timeout.is_zero() {
            self.outbox.shrink_idle(NodeLink::IDLE_OUTBOX);
        }
        match io_driver::sleep(&mut self.poll, polled, timeout) {
            Ok(socket) => self.readable |= socket,
            Err(e) => tracing::warn!(peer = %self.peer, "poll failed: {e}"),
        }
        self.waker.awake();
        if self.may_read(link) {
            self.read(link);
        }
        self.events(link, events);
        let now = Instant::now();
        if !self.broken
            && self
                .outbox
                .stall_deadline(write_timeout)
                .is_some_and(|t| t <= now)
        {
            self.fail(link, TransportEnd::WriteStalled(write_timeout));
        }
        if link.poll_timeout().is_some_and(|t| t <= now) {
            link.handle(NodeEvent::Timer, now);
        }
    }

    /// While jobs of this client run here, or shortly after the last one
    /// ended, looks at the workers' news and the socket for a short while
    /// (yielding the core in between) before sleeping: a short job's result,
    /// or the client's next job, is then taken without waking this thread.
    fn spin(&mut self, link: &NodeLink, events: &Receiver<ConnIn>, polled: &mut Events) {
        if self.broken || self.may_read(link) || !events.is_empty() {
            return;
        }
        if !io_driver::worth_spinning(self.conn.has_active(), self.active, Instant::now()) {
            return;
        }
        let news = |_: &mut Poll| !events.is_empty();
        if io_driver::spin(&mut self.poll, |poll| poll, polled, news) == Spun::Socket {
            self.readable = true;
        }
    }

    /// Whether to read now: the socket has bytes, and the link lets us (the
    /// client's unwritten results are under the limit).
    fn may_read(&self, link: &NodeLink) -> bool {
        self.readable && link.may_read(self.outbox.len())
    }

    /// Reads what the socket has (a bounded amount per turn).
    fn read(&mut self, link: &mut NodeLink) {
        for _ in 0..READS_PER_TURN {
            if !self.may_read(link) {
                return;
            }
            let now = Instant::now();
            match io_driver::read_once(&mut self.stream, &mut self.buf) {
                ReadOutcome::Closed => {
                    self.readable = false;
                    let why = TransportEnd::ClosedByPeer;
                    return link.handle(NodeEvent::TransportClosed(why), now);
                }
                ReadOutcome::Bytes(n) => {
                    self.node.meters.received(n);
                    link.set_stream_room(self.node.memory.room());
                    link.handle(NodeEvent::Received(&self.buf[..n]), now)
                }
                ReadOutcome::WouldBlock => {
                    self.readable = false;
                    return;
                }
                ReadOutcome::Failed(e) => {
                    self.readable = false;
                    let why = TransportEnd::ReadFailed(e.to_string());
                    return link.handle(NodeEvent::TransportClosed(why), now);
                }
            }
            if !self.settle(link) {
                return;
            }
        }
    }

    /// Feeds what the node said since the last turn, finished jobs in
    /// batches.
    fn events(&mut self, link: &mut NodeLink, events: &Receiver<ConnIn>) {
        // Results stay counted against --max-memory until the link's frames
        // are in the outbox (counted there: `settle`).
        let mut done = Vec::new();
        // One clock read per turn: the link needs `now` only for its timers.
        let now = Instant::now();
        // Results to keep must fit the memory left (theirs is counted already).
        link.set_keep_room(self.node.memory.room());
        link.set_spill_room(self.spilled.room());
        for ev in events.try_iter().take(4 * MAX_BATCH) {
            match ev {
                ConnIn::Finished(d, h) => {
                    self.active = now;
                    done.push(d);
                    self.results_held.push(h);
                    if done.len() == MAX_BATCH {
                        link.handle(NodeEvent::Finished(std::mem::take(&mut done)), now);
                    }
                    continue;
                }
                other => {
                    if !done.is_empty() {
                        link.handle(NodeEvent::Finished(std::mem::take(&mut done)), now);
                    }
                    match other {
                        ConnIn::GiveBack(id, attempt) => {
                            link.handle(NodeEvent::GiveBack(vec![(id, attempt)]), now)
                        }
                        ConnIn::Skipped(id) => link.handle(NodeEvent::Ended(vec![id]), now),
                        ConnIn::Refuse(why) => link.handle(NodeEvent::Refuse(why.to_string()), now),
                        ConnIn::Drain => link.handle(NodeEvent::Drain, now),
                        ConnIn::Stop => link.handle(NodeEvent::Stop, now),
                        ConnIn::Program(id, jobs) => {
                            link.handle(NodeEvent::ProgramReady { id, jobs }, now)
                        }
                        ConnIn::Finished(..) => {}
                    }
                }
            }
        }
        if !done.is_empty() {
            link.handle(NodeEvent::Finished(done), now);
        }
    }

    /// The client is gone or stuck: its jobs here are skipped.
    fn fail(&mut self, link: &mut NodeLink, why: TransportEnd) {
        self.broken = true;
        self.outbox.clear();
        self.conn.mark_closed();
        link.handle(NodeEvent::TransportClosed(why), Instant::now());
    }

    /// Carries out the link's actions and writes what the socket takes;
    /// false once the connection is over.
    fn settle(&mut self, link: &mut NodeLink) -> bool {
        loop {
            // Streams that completed, ended or started since: their
            // reservations, before their jobs are queued and counted.
            self.streams_held
                .resize(usize::try_from(link.stream_reserved()).unwrap_or(usize::MAX));
            let open = self.act(link);
            let (values, bytes) = link.kept();
            self.kept_held
                .resize(usize::try_from(bytes).unwrap_or(usize::MAX));
            let now = [values as u64, bytes, link.jobs_waiting() as u64];
            self.node.meters.kept(&mut self.kept_counted, now);
            // The results are in the link (waiting, or as streams) or their
            // frames in the outbox now: count them there.
            self.unsent_held
                .resize(usize::try_from(link.unsent_results()).unwrap_or(usize::MAX));
            self.results_held.clear();
            self.outbox_held.resize(self.outbox.len());
            if !open {
                return false;
            }
            if self.broken {
                return true;
            }
            let flushed = self.outbox.flush(&mut self.stream, Instant::now());
            self.outbox_held.resize(self.outbox.len());
            match flushed {
                // Results that waited for the window, and the next chunk of
                // a stream when what waits runs low (other frames go in
                // between chunks).
                Ok(_) if link.send_more(self.outbox.len()) => {}
                Ok(all) => {
                    // Room to write matters only while bytes wait.
                    let registry = self.poll.registry();
                    let (stream, watch) = (&mut self.stream, &mut self.watch_write);
                    if let Err(e) = io_driver::watch_writes(registry, stream, watch, all) {
                        tracing::warn!(peer = %self.peer, "poll: {e}");
                    }
                    return true;
                }
                Err(e) => self.fail(link, TransportEnd::WriteFailed(e.to_string())),
            }
        }
    }

    /// Writes the link's transmits into the outbox and does what it says;
    /// false once the connection is over.
    fn act(&mut self, link: &mut NodeLink) -> bool {
        loop {
            while let Some(bytes) = link.poll_transmit() {
                if !self.broken {
                    self.node.meters.sent(bytes.len());
                    self.outbox.push(&bytes, Instant::now())
                }
            }
            let Some(action) = link.poll_event() else {
                // The close may have been seen by an earlier call (the one
                // in `read`, whose answer ends only the reading): a closed
                // link stays over.
                return !link.is_closed();
            };
            match action {
                NodeAction::Run(jobs) => {
                    let (node, id) = (self.node, self.id);
                    // Spilled values are read back once per batch of jobs.
                    let (spilled, mut read) = (&mut self.spilled, HashMap::new());
                    let jobs = link.with_shared(jobs, |ids| {
                        spilled.values_or(ids, &mut read, |rest| node.shared_for(id, rest))
                    });
                    self.node.submit(jobs, self.conn)
                }
                NodeAction::Spill { id, bytes } => {
                    let result = self.spilled.write(id, bytes);
                    link.handle(NodeEvent::Spilled { id, result }, Instant::now())
                }
                NodeAction::ReadBack {
                    value,
                    fetch,
                    attempt,
                } => {
                    let bytes = self.spilled.read(&value);
                    let back = NodeEvent::ReadBack {
                        value,
                        fetch,
                        attempt,
                        bytes,
                    };
                    link.handle(back, Instant::now())
                }
                NodeAction::DropSpilled(ids) => ids.iter().for_each(|id| self.spilled.remove(id)),
                NodeAction::Share { id, bytes } => self.share(link, id, bytes),
                NodeAction::Unshare(ids) => self.node.unshare(self.id, &ids),
                NodeAction::Export(value) => {
                    if let Some(v) = link.kept_value(&value) {
                        self.node.peers.exports.export(&v);
                    }
                }
                NodeAction::FetchExported { id, attempt, value } => {
                    let bytes = self.node.peers.serve(&value);
                    let answer = NodeEvent::Exported {
                        id,
                        attempt,
                        value,
                        bytes,
                    };
                    link.handle(answer, Instant::now());
                }
                NodeAction::Pull {
                    id,
                    attempt,
                    value,
                    from,
                } => self.pull((id, attempt), value, from),
                NodeAction::Cancel(id) => self.node.cancel(self.conn, id),
                NodeAction::Resume(run) => {
                    // Once per connection (the link sees to it).
                    let _ = self.conn.run.set(run);
                    let held = self.node.runs.attach(run, self.id, Instant::now());
                    link.handle(NodeEvent::Orphans(held), Instant::now());
                }
                NodeAction::Recorded(keys) => {
                    if let Some(run) = self.conn.run.get() {
                        self.node.runs.recorded(run, &keys);
                    }
                }
                NodeAction::Reclaim { id, attempt, key } => {
                    let run = self.conn.run.get();
                    match self.node.runs.claim(run, &key, self.conn, (id, attempt)) {
                        Claim::Done(done) => self.conn.finished(done),
                        Claim::Waiting => {}
                    }
                }
                NodeAction::StatusWanted => link.handle(
                    NodeEvent::Status(Box::new(self.node.status())),
                    Instant::now(),
                ),
                NodeAction::Offer(info) => self.offer(link, &info),
                NodeAction::Chunk { id, offset, data } => self.chunk(link, id, offset, &data),
                NodeAction::UploadRefused { id, reason } => self.upload_refused(id, &reason),
                NodeAction::Authenticated => match self.node.authenticated(self.id) {
                    Ok(()) => tracing::debug!(peer = %self.peer, "client authenticated"),
                    Err(full) => link.handle(NodeEvent::Refuse(full.to_string()), Instant::now()),
                },
                NodeAction::Closed(reason) => {
                    if matches!(reason, NodeCloseReason::Goodbye) {
                        self.conn.goodbye.store(true, Ordering::Release);
                    }
                    // What the link sent last (a reject, a goodbye) is in
                    // the outbox, flushed as the connection ends.
                    self.closed(&reason);
                    return false;
                }
            }
        }
    }

    /// Logs why the connection ended.
    fn closed(&self, reason: &NodeCloseReason) {
        match reason {
            NodeCloseReason::Goodbye => tracing::debug!(peer = %self.peer, "connection closed"),
            reason => {
                let reason = reason.to_string();
                let reason = ppcore::escape(&reason);
                tracing::info!(peer = %self.peer, "connection closed: {reason}");
            }
        }
    }
}

impl Driver<'_> {
    /// A shared value from the client (its bytes match its id: the link
    /// checked), kept within `--shared-max`; the link hears how it went.
    fn share(&mut self, link: &mut NodeLink, id: SharedId, bytes: Vec<u8>) {
        let value = SharedValue::from_bytes(bytes);
        let outcome = self.node.share(self.id, value);
        if let Err(over) = &outcome {
            tracing::warn!(peer = %self.peer, %id, "shared value refused: {over}");
        }
        link.handle(NodeEvent::Stored { id, outcome }, Instant::now());
    }

    /// Fetches kept value `value` from the peer at `from`, as job `job`:
    /// on a pull thread, within the memory the node has now.
    fn pull(&mut self, job: (u64, u32), value: SharedId, from: String) {
        let room = self.node.memory.room();
        match self.node.fetch_limits(room) {
            Some(limits) => {
                let asker = Arc::clone(self.conn) as Arc<dyn crate::peer::Asker>;
                self.node.peers.pull(asker, job, value, from, limits)
            }
            None => self.conn.finished(ppcore::wire::DoneJob {
                id: job.0,
                attempt: job.1,
                result: Err(ppcore::JobError::new(
                    ppcore::ErrorKind::NodeLost,
                    "this node holds no key to pull with",
                )),
                exec_ns: 0,
                kept: None,
            }),
        }
    }

    /// Answers a program offer (the link lets one through only while no
    /// upload is under way), and starts the upload or gets the program ready.
    fn offer(&mut self, link: &mut NodeLink, info: &ProgramInfo) {
        let now = Instant::now();
        let id = info.id;
        let who: Arc<dyn Waiter> = Arc::clone(self.conn) as _;
        let answer = match self.node.programs.offer(info, now, self.id, &who) {
            Decision::Answer(answer) => answer,
            Decision::Upload(upload) => {
                self.upload = Some(upload);
                OfferAnswer::Need
            }
        };
        tracing::info!(peer = %self.peer, program = %id, size = info.size, ?answer, "program offered");
        link.handle(NodeEvent::Offered { id, answer }, now);
    }

    /// Takes one piece of the upload under way; once complete and verified,
    /// the program is stored and made ready.
    fn chunk(&mut self, link: &mut NodeLink, id: ProgramId, offset: u64, data: &[u8]) {
        let now = Instant::now();
        let outcome = match self.upload.as_mut() {
            Some(up) if up.id() == id => up
                .chunk(offset, data, now)
                .map_err(|e| format!("upload refused: {e}")),
            // The link passes on chunks of the upload under way only.
            _ => Err(UploadRefusal::NotUnderWay.to_string()),
        };
        let ended = match outcome {
            Err(why) => Err(why),
            Ok(()) if self.upload.as_ref().is_some_and(|u| u.is_complete()) => {
                let who: Arc<dyn Waiter> = Arc::clone(self.conn) as _;
                match self.upload.take() {
                    Some(u) => self.node.programs.finish(*u, self.id, &who).map(|()| true),
                    None => Ok(false),
                }
            }
            Ok(()) => Ok(false),
        };
        match ended {
            Ok(true) => link.handle(NodeEvent::Uploaded(id), now),
            Ok(false) => {}
            Err(reason) => {
                tracing::warn!(peer = %self.peer, program = %id, "{reason}");
                self.node.programs.note_refusal(&reason);
                self.drop_upload(id);
                link.handle(NodeEvent::UploadFailed { id, reason }, now);
            }
        }
    }

    /// The link ended the upload of `id` (it stalled), or refused a chunk
    /// of a program not uploaded here.
    fn upload_refused(&mut self, id: ProgramId, reason: &UploadRefusal) {
        let reason = reason.to_string();
        tracing::warn!(peer = %self.peer, program = %id, "{reason}");
        self.node.programs.note_refusal(&reason);
        self.drop_upload(id);
    }

    /// Drops the upload of `id`, if it is the one under way: its slot goes,
    /// and with it the partial file.
    fn drop_upload(&mut self, id: ProgramId) {
        if self.upload.as_ref().is_some_and(|u| u.id() == id) {
            self.upload = None;
        }
    }
}
