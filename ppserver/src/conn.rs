//! The driver of one client connection: a thin I/O shell around
//! [`ppcore::NodeLink`]. Whatever goes wrong here ends this connection only.
//!
//! One thread per connection, and no hand-off between threads on the way
//! in or out. The driver owns the link and a non-blocking socket; it sleeps
//! in `mio` until the socket is readable or writable, the link's timer is
//! due, or a worker or the daemon wakes it (`out::Conn`: a finished job,
//! drain, stop); while its client's jobs run, and for 100 µs after the last
//! one ended, it first looks for their results and the socket, yielding the
//! core in between, so that a short job costs no wake-up. It reads whatever the socket has (so control frames are
//! always read, even while it waits on a slow client), feeds it to the link
//! and carries out the actions: write (what the socket does not take waits
//! in an [`Outbox`]; no progress for `--write-timeout` drops the client),
//! queue or cancel jobs, close.
//!
//! Memory per client is bounded. Its queued work is bounded by the credit
//! window the link grants (jobs beyond it go back unrun, and the node keeps
//! reading, so heartbeats and cancels always get through). Its unwritten
//! results: the link frames a result (inline, or queued as a stream) only
//! while the connection's unsent bytes (the outbox and the queued streams)
//! are under its send window ([`backlog_limit`], twice the frame limit: 32
//! MiB by default; see `ppcore::window`); until then the result waits in
//! the link and keeps its job's credit. While the outbox alone exceeds the
//! same limit the driver stops reading from the client. A client that does
//! not read its results is held there by TCP until `--write-timeout` drops
//! it. All of it (queued arguments, results waiting or queued as streams,
//! the outbox) is counted against the node's `--max-memory` (`memory`), so
//! new work is handed back while the node is full, whatever a client does
//! or does not read: the node holds at most `--max-memory` plus the results
//! of the jobs running when it filled. An outbox's buffer beyond 64 KiB is
//! given back whenever the driver sleeps with nothing to write, so an idle
//! connection does not keep the memory of a backlog it once had.

use crate::memory::Held;
use crate::node::Node;
use crate::out::{Conn, ConnIn, Waker};
use crossbeam_channel::Receiver;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use ppcore::program::ProgramId;
use ppcore::shared::{OverSharedMax, SharedId, SharedValue};
use ppcore::wire::DoneJob;
use ppcore::{ErrorKind, JobError};
use ppcore::{NodeAction, NodeEvent, NodeLink, NodeLinkConfig, Outbox};
use std::collections::HashMap;
use std::io::Read;
use std::net::Shutdown;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

const READ_BUF: usize = 64 << 10;
/// Reads per wake-up before the driver looks at its other work.
const READS_PER_TURN: usize = 16;
/// Finished jobs gathered into one `Done` frame at most.
const MAX_BATCH: usize = 1024;
const SOCKET: Token = Token(1);
/// How long a driver looks for news before it sleeps, while its client's
/// jobs run here or after the last one ended.
const SPIN: Duration = Duration::from_micros(100);
/// An upload with no chunk for this long is ended.
const UPLOAD_STALL: Duration = Duration::from_secs(30);
/// The outbox's buffer kept while the driver sleeps with nothing to write:
/// an idle connection does not hold the memory of a backlog it once had.
const IDLE_OUTBOX: usize = 64 << 10;

/// Bytes of unwritten results beyond which a connection is not read until
/// they shrink; also its send window (results wait while this much is
/// unsent).
fn backlog_limit(max_frame: usize) -> usize {
    usize::try_from(ppcore::window::default_window(max_frame)).unwrap_or(usize::MAX)
}

/// A connection let in and registered with the node, to be served.
pub(crate) struct Admitted {
    registered: Registered,
    stream: std::net::TcpStream,
    poll: Poll,
    waker: Arc<Waker>,
    events: Receiver<ConnIn>,
    peer: String,
}

/// A connection's place in the node, given back when dropped (whether it
/// was served or its thread never started).
struct Registered {
    node: Arc<Node>,
    conn: Arc<Conn>,
    id: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.conn.mark_closed();
        self.node.close(self.id);
    }
}

/// Lets a new connection in, on the calling thread (the accept thread, so
/// connections are counted in the order they came and a refused one costs
/// no thread), or refuses it with a reason (`None`).
pub(crate) fn admit(node: &Arc<Node>, stream: std::net::TcpStream) -> Option<Admitted> {
    let peer = stream
        .peer_addr()
        .map_or_else(|_| "unknown peer".to_owned(), |a| a.to_string());
    let source = stream
        .peer_addr()
        .map_or(std::net::IpAddr::from([0, 0, 0, 0]), |a| a.ip());
    // Refused before anything is made for it: a flood costs a write each.
    if let Some(refused) = node.refuses(source) {
        tracing::debug!(%peer, "refused: {refused}");
        crate::daemon::refuse(stream, refused.to_string());
        return None;
    }
    let watched = Poll::new().and_then(|poll| Ok((Waker::new(&poll)?, poll)));
    let (waker, poll) = match watched {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(%peer, "cannot watch connection: {e}");
            return None;
        }
    };
    let (ev_tx, events) = crossbeam_channel::unbounded();
    let conn = Arc::new(Conn::new(
        ev_tx,
        Arc::clone(&waker),
        Arc::clone(&node.memory),
    ));
    let id = match node.open(&conn, source) {
        Ok(id) => id,
        Err(refused) => {
            tracing::debug!(%peer, "refused: {refused}");
            crate::daemon::refuse(stream, refused.to_string());
            return None;
        }
    };
    let registered = Registered {
        node: Arc::clone(node),
        conn,
        id,
    };
    Some(Admitted {
        registered,
        stream,
        poll,
        waker,
        events,
        peer,
    })
}

impl Admitted {
    /// Serves the connection until it closes; logs why it ended.
    pub(crate) fn serve(self) {
        let Admitted {
            registered,
            stream,
            poll,
            waker,
            events,
            peer,
        } = self;
        let node = &registered.node;
        match setup(&poll, stream) {
            Ok(stream) => {
                let mut d = Driver {
                    node,
                    id: registered.id,
                    conn: &registered.conn,
                    stream,
                    poll,
                    waker,
                    outbox: Outbox::new(),
                    outbox_held: node.memory.hold(0),
                    unsent_held: node.memory.hold(0),
                    streams_held: node.memory.hold(0),
                    results_held: Vec::new(),
                    readable: true,
                    watch_write: false,
                    buf: vec![0u8; READ_BUF],
                    peer: peer.clone(),
                    broken: false,
                    upload: None,
                    over_shared_max: HashMap::new(),
                    active: Instant::now(),
                };
                d.run(&events);
            }
            Err(e) => tracing::warn!(%peer, "cannot use connection: {e}"),
        }
    }
}

/// Socket options, and the socket watched for reading and writing.
fn setup(poll: &Poll, stream: std::net::TcpStream) -> std::io::Result<TcpStream> {
    stream.set_nodelay(true)?;
    stream.set_nonblocking(true)?;
    let mut stream = TcpStream::from_std(stream);
    poll.registry()
        .register(&mut stream, SOCKET, Interest::READABLE)?;
    Ok(stream)
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
    /// The program upload under way on this connection (one at a time).
    upload: Option<Box<crate::programs::Upload>>,
    /// Shared values of this client refused for `--shared-max`: jobs that
    /// name one fail with the reason (asking again would not help).
    over_shared_max: HashMap<SharedId, OverSharedMax>,
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
            send_window: backlog_limit(config.max_frame) as u64,
        };
        let mut link = NodeLink::new(link_config, self.node.welcome(), Instant::now());
        if self.node.draining() {
            link.handle(NodeEvent::Drain, Instant::now());
        }
        let mut polled = Events::with_capacity(8);
        while self.settle(&mut link) {
            self.check_upload(&mut link);
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
    }

    /// Sleeps until the socket, a worker, the daemon or the timer has news,
    /// and feeds it to the link.
    fn wait(&mut self, link: &mut NodeLink, events: &Receiver<ConnIn>, polled: &mut Events) {
        self.spin(events, polled);
        // Asleep from here: a worker's news from now on wakes the poll.
        self.waker.asleep.store(true, Ordering::SeqCst);
        let busy = self.may_read() || !events.is_empty();
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
            self.outbox.shrink_idle(IDLE_OUTBOX);
        }
        if let Err(e) = self.poll.poll(polled, Some(timeout)) {
            if e.kind() != std::io::ErrorKind::Interrupted {
                tracing::warn!(peer = %self.peer, "poll failed: {e}");
            }
        }
        self.waker.asleep.store(false, Ordering::SeqCst);
        for ev in polled.iter() {
            if ev.token() == SOCKET && (ev.is_readable() || ev.is_read_closed() || ev.is_error()) {
                self.readable = true;
            }
        }
        if self.may_read() {
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
            let why =
                format!("no write progress for {write_timeout:?}: the client stopped reading");
            self.fail(link, why);
        }
        if link.poll_timeout().is_some_and(|t| t <= now) {
            link.handle(NodeEvent::Timer, now);
        }
    }

    /// While jobs of this client run here, or shortly after the last one
    /// ended, looks at the workers' news and the socket for a short while
    /// (yielding the core in between) before sleeping: a short job's result,
    /// or the client's next job, is then taken without waking this thread.
    fn spin(&mut self, events: &Receiver<ConnIn>, polled: &mut Events) {
        if self.broken || self.may_read() || !events.is_empty() {
            return;
        }
        let now = Instant::now();
        let recent = now.saturating_duration_since(self.active) < SPIN;
        if !self.conn.has_active() && !recent {
            return;
        }
        let until = now + SPIN;
        while Instant::now() < until {
            std::thread::yield_now();
            if !events.is_empty() {
                return;
            }
            if self.poll.poll(polled, Some(Duration::ZERO)).is_ok()
                && polled.iter().any(|ev| ev.token() == SOCKET)
            {
                self.readable = true;
                return;
            }
        }
    }

    /// Whether to read now: the socket has bytes, and the client's unwritten
    /// results are under the limit (its queued work is bounded by its credit
    /// window, and always read: control frames get through).
    fn may_read(&self) -> bool {
        self.readable && self.outbox.len() <= backlog_limit(self.node.config.max_frame)
    }

    /// Reads what the socket has (a bounded amount per turn).
    fn read(&mut self, link: &mut NodeLink) {
        for _ in 0..READS_PER_TURN {
            if !self.may_read() {
                return;
            }
            let now = Instant::now();
            match self.stream.read(&mut self.buf) {
                Ok(0) => {
                    self.readable = false;
                    let why = "the client closed the connection".to_owned();
                    return link.handle(NodeEvent::TransportClosed(why), now);
                }
                Ok(n) => {
                    self.node.meters.received(n);
                    link.set_stream_room(self.node.memory.room());
                    link.handle(NodeEvent::Received(&self.buf[..n]), now)
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    self.readable = false;
                    return;
                }
                Err(e) => {
                    self.readable = false;
                    let why = format!("read failed: {e}");
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
                        ConnIn::Refuse(why) => link.handle(NodeEvent::Refuse(why), now),
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
    fn fail(&mut self, link: &mut NodeLink, why: String) {
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
                    if all == self.watch_write {
                        let interest = match all {
                            true => Interest::READABLE,
                            false => Interest::READABLE | Interest::WRITABLE,
                        };
                        let registry = self.poll.registry();
                        match registry.reregister(&mut self.stream, SOCKET, interest) {
                            Ok(()) => self.watch_write = !all,
                            Err(e) => tracing::warn!(peer = %self.peer, "poll: {e}"),
                        }
                    }
                    return true;
                }
                Err(e) => self.fail(link, format!("write failed: {e}")),
            }
        }
    }

    /// Carries out the link's actions; false once the connection is over.
    fn act(&mut self, link: &mut NodeLink) -> bool {
        while let Some(action) = link.poll() {
            match action {
                NodeAction::Send(_) if self.broken => {}
                NodeAction::Send(bytes) => {
                    self.node.meters.sent(bytes.len());
                    self.outbox.push(&bytes, Instant::now())
                }
                NodeAction::Run(jobs) => {
                    let jobs = self.with_shared(link, jobs);
                    self.node.submit(jobs, self.conn)
                }
                NodeAction::Share { id, bytes } => self.share(link, id, bytes),
                NodeAction::Unshare(ids) => {
                    self.over_shared_max.retain(|id, _| !ids.contains(id));
                    self.node.unshare(self.id, &ids)
                }
                NodeAction::Cancel(id) => self.node.cancel(self.conn, id),
                NodeAction::StatusWanted => {
                    link.handle(NodeEvent::Status(self.node.status()), Instant::now())
                }
                NodeAction::Offer(info) => self.offer(link, &info),
                NodeAction::Chunk { id, offset, data } => self.chunk(link, id, offset, &data),
                NodeAction::Authenticated => match self.node.authenticated(self.id) {
                    Ok(()) => tracing::debug!(peer = %self.peer, "client authenticated"),
                    Err(full) => link.handle(NodeEvent::Refuse(full.to_string()), Instant::now()),
                },
                NodeAction::Close { reason: None } => {
                    tracing::debug!(peer = %self.peer, "connection closed");
                    return false;
                }
                NodeAction::Close {
                    reason: Some(reason),
                } => {
                    let reason = ppcore::escape(&reason);
                    tracing::info!(peer = %self.peer, "connection closed: {reason}");
                    return false;
                }
            }
        }
        // The Close may have been carried out by an earlier call (the one
        // in `read`, whose answer ends only the reading): a closed link
        // stays over.
        !link.is_closed()
    }
}

impl Driver<'_> {
    /// A shared value from the client: its bytes must hash to its id (else
    /// the client is dropped); kept within `--shared-max`, else noted so that
    /// jobs naming it fail with the reason.
    fn share(&mut self, link: &mut NodeLink, id: SharedId, bytes: Vec<u8>) {
        let value = SharedValue::from_bytes(bytes);
        if value.id() != id {
            let why = format!("shared value {id} does not match its bytes");
            return link.handle(NodeEvent::Misbehaved(why), Instant::now());
        }
        match self.node.share(self.id, value) {
            Ok(()) => {
                self.over_shared_max.remove(&id);
            }
            Err(over) => {
                tracing::warn!(peer = %self.peer, %id, "shared value refused: {over}");
                self.over_shared_max.insert(id, over);
            }
        }
    }

    /// Jobs from the client with the shared values they name. A job that
    /// names a value the node does not hold is handed back, and the value
    /// asked for; one that names a value over `--shared-max` fails.
    fn with_shared(
        &mut self,
        link: &mut NodeLink,
        jobs: Vec<ppcore::wire::RunJob>,
    ) -> Vec<(ppcore::wire::RunJob, Vec<Arc<SharedValue>>)> {
        let mut ready = Vec::with_capacity(jobs.len());
        let (mut need, mut back, mut failed) = (Vec::new(), Vec::new(), Vec::new());
        for job in jobs {
            if job.shared.is_empty() {
                ready.push((job, Vec::new()));
                continue;
            }
            if let Some(over) = job
                .shared
                .iter()
                .find_map(|id| self.over_shared_max.get(id))
            {
                failed.push(DoneJob {
                    id: job.id,
                    attempt: job.attempt,
                    result: Err(JobError::new(ErrorKind::Codec, over.to_string())
                        .on(&self.node.node_id, job.attempt)),
                    exec_ns: 0,
                });
                continue;
            }
            match self.node.shared_for(self.id, &job.shared) {
                Ok(values) => ready.push((job, values)),
                Err(missing) => {
                    need.extend(missing);
                    back.push((job.id, job.attempt));
                }
            }
        }
        let now = Instant::now();
        if !failed.is_empty() {
            link.handle(NodeEvent::Finished(failed), now);
        }
        if !back.is_empty() {
            need.sort_unstable();
            need.dedup();
            link.handle(
                NodeEvent::NeedShared {
                    ids: need,
                    jobs: back,
                },
                now,
            );
        }
        ready
    }

    /// Answers a program offer, and starts the upload or gets the program ready.
    fn offer(&mut self, link: &mut NodeLink, info: &ppcore::program::ProgramInfo) {
        use crate::programs::Decision;
        use ppcore::program::OfferAnswer;
        let now = Instant::now();
        let id = info.id;
        let decision = match self.upload {
            Some(_) => Decision::Answer(OfferAnswer::Refuse(
                "an upload is under way on this connection: one at a time".into(),
            )),
            None => self.node.programs.offer(info, now, self.id, self.conn),
        };
        let answer = match decision {
            Decision::Answer(answer) => answer,
            Decision::Upload(upload) => {
                self.upload = Some(upload);
                OfferAnswer::Need
            }
        };
        tracing::info!(peer = %self.peer, program = %id, size = info.size, ?answer, "program offered");
        link.handle(NodeEvent::Offered { id, answer }, now);
    }

    /// Takes one piece of the upload; once complete and verified, the program
    /// is stored and made ready.
    fn chunk(&mut self, link: &mut NodeLink, id: ProgramId, offset: u64, data: &[u8]) {
        let now = Instant::now();
        let outcome = match self.upload.as_mut() {
            Some(up) if up.id() == id => up.chunk(offset, data, now).map_err(|e| e.to_string()),
            _ => Err("no upload of this program under way".to_owned()),
        };
        let failed = match outcome {
            Err(why) => Some(format!("upload refused: {why}")),
            Ok(()) if self.upload.as_ref().is_some_and(|u| u.is_complete()) => {
                let upload = self.upload.take();
                let programs = &self.node.programs;
                upload.and_then(|u| programs.finish(*u, self.id, self.conn).err())
            }
            Ok(()) => None,
        };
        if let Some(reason) = failed {
            tracing::warn!(peer = %self.peer, program = %id, "{reason}");
            self.node.programs.note_refusal(&reason);
            if self.upload.as_ref().is_some_and(|u| u.id() == id) {
                self.upload = None; // the slot goes, and with it the partial file
            }
            link.handle(
                NodeEvent::ProgramReady {
                    id,
                    jobs: Err(reason),
                },
                now,
            );
        }
    }

    /// Ends an upload that made no progress for [`UPLOAD_STALL`] (a client
    /// that keeps pinging but sends nothing must not hold the program's one
    /// upload slot, which other clients of the program wait for).
    fn check_upload(&mut self, link: &mut NodeLink) {
        let now = Instant::now();
        let Some(upload) = &self.upload else { return };
        if let Err(e) = upload.check_progress(now, UPLOAD_STALL) {
            let id = upload.id();
            self.upload = None;
            let why = format!("upload refused: {e}");
            self.node.programs.note_refusal(&why);
            link.handle(NodeEvent::ProgramReady { id, jobs: Err(why) }, now);
        }
    }
}
