//! The I/O shell: one thread, one `mio` poll, every connection a value in a
//! map. Decisions (admission, eviction, deadlines, parsing) are made by the
//! pure [`Table`] and [`parse`]; this file only reads, writes and sleeps.

use super::head::{parse, Request};
use super::limits::Limits;
use super::reply::{EventSource, Reply, Response};
use super::table::{Admission, Phase, Table};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// How often the loop looks at its stop condition while nothing happens.
const STOP_CHECK: Duration = Duration::from_millis(200);
const LISTENER: Token = Token(0);
/// Bytes an event stream's reader or a closing peer may send (dropped)
/// before it is cut off: neither has anything to say.
const MAX_DISCARD: usize = 64 * 1024;
/// Connections accepted per turn of the loop, so that a flood of them
/// cannot starve the open ones.
const ACCEPT_BATCH: usize = 64;

/// Answers requests, on the server's one thread: it must not block.
pub trait Handler: Send + 'static {
    /// The answer to `request`.
    fn answer(&mut self, request: &Request) -> Reply;
}

impl<F: FnMut(&Request) -> Reply + Send + 'static> Handler for F {
    fn answer(&mut self, request: &Request) -> Reply {
        self(request)
    }
}

/// A bound, not yet serving, HTTP listener.
#[derive(Debug)]
pub struct Listener {
    inner: TcpListener,
    addr: SocketAddr,
}

impl Listener {
    /// Binds `addr` (port 0 picks one).
    pub fn bind(addr: SocketAddr) -> io::Result<Self> {
        let inner = TcpListener::bind(addr)?;
        let addr = inner.local_addr()?;
        Ok(Listener { inner, addr })
    }

    /// The address bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves on a thread called `name` until `stopped` says so (it is
    /// asked at least every 200 ms), then closes every connection.
    pub fn spawn(
        self,
        name: &str,
        limits: Limits,
        handler: impl Handler,
        stopped: impl Fn() -> bool + Send + 'static,
    ) -> io::Result<std::thread::JoinHandle<()>> {
        let mut server = Server::new(self.inner, limits, handler)?;
        std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || server.run(&stopped))
    }
}

struct Conn {
    sock: TcpStream,
    inbuf: Vec<u8>,
    out: Vec<u8>,
    sent: usize,
    close_after: bool,
    eof: bool,
    /// Answered and shut for writing: reads are dropped until the end.
    lingering: bool,
    /// Bytes read and dropped (from an event stream's or a lingering peer).
    discarded: usize,
    events: Option<Box<dyn EventSource>>,
}

impl Conn {
    fn unsent(&self) -> bool {
        self.sent < self.out.len()
    }

    fn queue(&mut self, bytes: Vec<u8>) {
        self.out.drain(..self.sent);
        self.sent = 0;
        self.out.extend_from_slice(&bytes);
    }

    /// Writes until done or the socket is full: whether any byte went.
    fn flush(&mut self) -> io::Result<bool> {
        let mut progressed = false;
        while self.unsent() {
            match self.sock.write(&self.out[self.sent..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.sent += n;
                    progressed = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if !self.unsent() {
            self.out.clear();
            self.sent = 0;
        }
        Ok(progressed)
    }

    /// Reads what is there, keeping at most `cap` bytes (`keep` false:
    /// none, and past [`MAX_DISCARD`] in all the connection is an error);
    /// sets `eof` when the peer is done sending.
    fn read(&mut self, cap: usize, keep: bool) -> io::Result<()> {
        let mut chunk = [0u8; 4096];
        while !self.eof && (!keep || self.inbuf.len() < cap) {
            let room = if keep {
                cap - self.inbuf.len()
            } else {
                chunk.len()
            };
            let n = room.min(chunk.len());
            match self.sock.read(&mut chunk[..n]) {
                Ok(0) => self.eof = true,
                Ok(n) if keep => self.inbuf.extend_from_slice(&chunk[..n]),
                Ok(n) => {
                    self.discarded += n;
                    if self.discarded > MAX_DISCARD {
                        return Err(io::ErrorKind::InvalidData.into());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

struct Server<H> {
    poll: Poll,
    listener: TcpListener,
    limits: Limits,
    handler: H,
    table: Table,
    conns: HashMap<usize, Conn>,
    next_id: usize,
    next_tick: Instant,
    /// Whether the last accept stopped at its batch with more maybe waiting.
    backlog: bool,
}

impl<H: Handler> Server<H> {
    fn new(mut listener: TcpListener, limits: Limits, handler: H) -> io::Result<Self> {
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        Ok(Server {
            poll,
            listener,
            limits,
            handler,
            table: Table::new(limits),
            conns: HashMap::new(),
            next_id: 1,
            next_tick: Instant::now() + limits.tick,
            backlog: false,
        })
    }

    fn run(&mut self, stopped: &dyn Fn() -> bool) {
        let mut events = Events::with_capacity(256);
        while !stopped() {
            let now = Instant::now();
            let mut wake = now + STOP_CHECK;
            wake = wake.min(self.table.next_deadline().unwrap_or(wake));
            if self.table.streams() > 0 {
                wake = wake.min(self.next_tick);
            }
            let mut timeout = wake.saturating_duration_since(now);
            if self.backlog {
                timeout = Duration::ZERO;
            }
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    return;
                }
            }
            let now = Instant::now();
            // Accepting on every turn also retries after an error such as
            // too many open files, which no new readiness would report.
            self.accept(now);
            for event in events.iter() {
                if event.token() != LISTENER {
                    self.drive(event.token().0, now);
                }
            }
            for id in self.table.expired(now) {
                self.close(id);
            }
            if now >= self.next_tick {
                self.next_tick = now + self.limits.tick;
                self.tick(now);
            }
        }
    }

    fn accept(&mut self, now: Instant) {
        self.backlog = false;
        for _ in 0..ACCEPT_BATCH {
            let sock = match self.listener.accept() {
                Ok((sock, _)) => sock,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return,
            };
            match self.table.admit() {
                Admission::Take => {}
                Admission::Evict(victim) => self.close(victim),
                Admission::Refuse => continue,
            }
            self.add(sock, now);
        }
        // The batch is full: more may wait, which no new readiness would say.
        self.backlog = true;
    }

    fn add(&mut self, mut sock: TcpStream, now: Instant) {
        let id = self.next_id;
        self.next_id += 1;
        let _ = sock.set_nodelay(true);
        let interest = Interest::READABLE | Interest::WRITABLE;
        if self
            .poll
            .registry()
            .register(&mut sock, Token(id), interest)
            .is_err()
        {
            return;
        }
        let conn = Conn {
            sock,
            inbuf: Vec::new(),
            out: Vec::new(),
            sent: 0,
            close_after: false,
            eof: false,
            lingering: false,
            discarded: 0,
            events: None,
        };
        self.conns.insert(id, conn);
        self.table.insert(id, now);
        self.drive(id, now);
    }

    fn close(&mut self, id: usize) {
        if let Some(mut conn) = self.conns.remove(&id) {
            let _ = self.poll.registry().deregister(&mut conn.sock);
        }
        self.table.remove(id);
    }

    /// Moves connection `id` as far as it can go now: writes what waits,
    /// then reads and answers requests until it must wait for its peer.
    fn drive(&mut self, id: usize, now: Instant) {
        let cap = self.limits.max_head + self.limits.max_body + 1;
        loop {
            let Some(conn) = self.conns.get_mut(&id) else {
                return;
            };
            let progressed = match conn.flush() {
                Ok(p) => p,
                Err(_) => return self.close(id),
            };
            let pending = conn.unsent();
            if conn.events.is_some() {
                if conn.read(0, false).is_err() || conn.eof {
                    return self.close(id);
                }
                let was = self.table.phase(id);
                if progressed || was != Some(Phase::Streaming { pending }) {
                    self.table.streaming(id, pending, now);
                }
                return;
            }
            if pending {
                if progressed {
                    self.table.writing(id, now);
                }
                return;
            }
            if conn.close_after {
                // Lingering close: stop sending, then drop what the peer
                // still sends until it closes too (or the request timeout),
                // so that closing on unread bytes does not reset the
                // connection before the peer has read the answer.
                if !conn.lingering {
                    conn.lingering = true;
                    let _ = conn.sock.shutdown(std::net::Shutdown::Write);
                    self.table.reading(id, now);
                }
                if conn.read(0, false).is_err() || conn.eof {
                    return self.close(id);
                }
                return;
            }
            if conn.read(cap, true).is_err() {
                return self.close(id);
            }
            match parse(&conn.inbuf, &self.limits) {
                Ok(Some((request, used))) => {
                    conn.inbuf.drain(..used);
                    self.answer(id, &request, now);
                }
                Ok(None) if conn.eof => return self.close(id),
                Ok(None) => {
                    if self.table.phase(id) != Some(Phase::Reading) {
                        self.table.reading(id, now);
                    }
                    return;
                }
                Err(e) => {
                    let body = format!("{e}\n");
                    conn.queue(Response::text(e.status(), body).encode(false, false));
                    conn.close_after = true;
                    self.table.writing(id, now);
                }
            }
        }
    }

    /// Queues the handler's answer to `request` on connection `id`.
    fn answer(&mut self, id: usize, request: &Request, now: Instant) {
        let head_only = request.method == "HEAD";
        let handler = &mut self.handler;
        let reply =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handler.answer(request)))
                .unwrap_or_else(|_| Response::text(500, "the handler failed\n").into());
        let (bytes, close, events) = match reply {
            Reply::Full(r) => (
                r.encode(head_only, request.keep_alive),
                !request.keep_alive,
                None,
            ),
            Reply::Stream { head, .. } if head_only => (head.encode(true, false), true, None),
            Reply::Stream { head, mut events } if self.table.streaming(id, true, now) => {
                let mut bytes = head.encode_stream_head();
                bytes.extend(events.next_event().unwrap_or_default());
                (bytes, false, Some(events))
            }
            Reply::Stream { .. } => {
                let busy = Response::text(503, "too many open event streams\n");
                (busy.encode(false, false), true, None)
            }
        };
        if events.is_none() {
            self.table.writing(id, now);
        }
        if let Some(conn) = self.conns.get_mut(&id) {
            conn.queue(bytes);
            conn.close_after = close;
            conn.events = events;
        }
    }

    /// Gives every event stream that has sent everything its next event.
    fn tick(&mut self, now: Instant) {
        let mut ready = Vec::new();
        for (id, conn) in &mut self.conns {
            if conn.unsent() {
                continue;
            }
            let Some(events) = conn.events.as_mut() else {
                continue;
            };
            match events.next_event() {
                Some(bytes) => conn.queue(bytes),
                None => conn.close_after = true,
            }
            ready.push(*id);
        }
        for id in ready {
            let ended = self.conns.get(&id).is_some_and(|c| c.close_after);
            match ended {
                true => self.close(id),
                false => self.drive(id, now),
            }
        }
    }
}
