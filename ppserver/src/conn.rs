//! The driver of one client connection: a thin I/O shell around
//! [`ppcore::NodeLink`]. Whatever goes wrong here ends this connection only.
//!
//! Two threads per connection. The reader only reads the socket and
//! forwards the bytes (so control frames are always read, even while the
//! driver waits on a slow client). The driver owns the link: it waits for
//! bytes, for events from workers and the daemon (`out::ConnIn`), or for the
//! link's timer, feeds them in, and carries out the actions: write (with a
//! no-progress timeout), queue or cancel jobs, close.

use crate::node::Node;
use crate::out::{Conn, ConnIn};
use crossbeam_channel::{Receiver, Sender};
use ppcore::program::ProgramId;
use ppcore::{NodeAction, NodeEvent, NodeLink, NodeLinkConfig};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::time::Instant;

/// Received chunks waiting for the driver; beyond this the reader waits
/// (and TCP pushes back on the client).
const INBOX: usize = 64;
const READ_BUF: usize = 64 << 10;
/// Finished jobs gathered into one `Done` frame at most.
const MAX_BATCH: usize = 1024;
/// An upload with no chunk for this long is ended.
const UPLOAD_STALL: std::time::Duration = std::time::Duration::from_secs(30);

enum Got {
    Bytes(Vec<u8>),
    Closed(String),
}

/// Serves one connection until it closes; logs why it ended.
pub(crate) fn serve(node: &Arc<Node>, stream: TcpStream) {
    let peer = stream
        .peer_addr()
        .map_or_else(|_| "unknown peer".to_owned(), |a| a.to_string());
    let (ev_tx, ev_rx) = crossbeam_channel::unbounded();
    let conn = Arc::new(Conn::new(ev_tx));
    let Some(id) = node.open(&conn) else {
        let reason = format!(
            "too many connections (limit {})",
            node.config.max_connections
        );
        tracing::warn!(%peer, "refused: {reason}");
        crate::daemon::refuse(stream, reason);
        return;
    };
    match setup(node, &stream) {
        Ok(reader) => {
            let mut d = Driver {
                node,
                conn: &conn,
                stream,
                peer: peer.clone(),
                broken: false,
                upload: None,
            };
            d.run(reader, &ev_rx);
        }
        Err(e) => tracing::warn!(%peer, "cannot use connection: {e}"),
    }
    conn.mark_closed();
    node.close(id);
}

/// Socket options and the reader thread; the reader's channel.
fn setup(node: &Node, stream: &TcpStream) -> std::io::Result<Receiver<Got>> {
    stream.set_nodelay(true)?;
    // No progress for this long on a write: the client is dropped.
    stream.set_write_timeout(Some(node.config.write_timeout))?;
    let reader = stream.try_clone()?;
    let (tx, rx) = crossbeam_channel::bounded(INBOX);
    std::thread::Builder::new()
        .name("pp-conn-reader".into())
        .spawn(move || read_loop(reader, &tx))?;
    Ok(rx)
}

struct Driver<'a> {
    node: &'a Arc<Node>,
    conn: &'a Arc<Conn>,
    stream: TcpStream,
    peer: String,
    /// A write failed: write nothing more.
    broken: bool,
    /// The program upload under way on this connection (one at a time).
    upload: Option<Box<crate::programs::Upload>>,
}

impl Driver<'_> {
    fn run(&mut self, reader: Receiver<Got>, events: &Receiver<ConnIn>) {
        let config = &self.node.config;
        let link_config = NodeLinkConfig {
            secret: config.secret.clone(),
            handshake_timeout: config.handshake_timeout,
            heartbeat: config.heartbeat,
            max_frame: config.max_frame,
        };
        let nonce = match ppcore::nonce() {
            Ok(n) => n,
            Err(e) => return tracing::warn!(peer = %self.peer, "no randomness: {e}"),
        };
        let mut link = NodeLink::new(link_config, nonce, self.node.welcome(), Instant::now());
        if self.node.draining() {
            link.handle(NodeEvent::Drain, Instant::now());
        }
        let mut stashed = None;
        loop {
            if !self.act(&mut link) {
                break;
            }
            self.check_upload(&mut link);
            if let Some(ev) = stashed.take() {
                self.event(&mut link, ev, events, &mut stashed);
                continue;
            }
            let timeout = link.poll_timeout().map_or(config.handshake_timeout, |t| {
                t.saturating_duration_since(Instant::now())
            });
            crossbeam_channel::select! {
                recv(reader) -> r => {
                    let now = Instant::now();
                    match r {
                        Ok(Got::Bytes(b)) => link.handle(NodeEvent::Received(&b), now),
                        Ok(Got::Closed(why)) => link.handle(NodeEvent::TransportClosed(why), now),
                        Err(_) => link.handle(NodeEvent::TransportClosed("reader gone".into()), now),
                    }
                }
                recv(events) -> ev => if let Ok(ev) = ev {
                    self.event(&mut link, ev, events, &mut stashed);
                },
                default(timeout) => link.handle(NodeEvent::Timer, Instant::now()),
            }
        }
        let _ = self.stream.shutdown(Shutdown::Both);
    }

    /// Feeds one event from the node (gathering finished jobs that are
    /// already waiting into one batch); an event that is not a finished
    /// job, met while gathering, is left in `stashed`.
    fn event(
        &self,
        link: &mut NodeLink,
        ev: ConnIn,
        events: &Receiver<ConnIn>,
        stashed: &mut Option<ConnIn>,
    ) {
        let now = Instant::now();
        match ev {
            ConnIn::Finished(first) => {
                let mut done = vec![first];
                while done.len() < MAX_BATCH {
                    match events.try_recv() {
                        Ok(ConnIn::Finished(d)) => done.push(d),
                        Ok(other) => {
                            *stashed = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                link.handle(NodeEvent::Finished(done), now);
            }
            ConnIn::GiveBack(id, attempt) => {
                link.handle(NodeEvent::GiveBack(vec![(id, attempt)]), now)
            }
            ConnIn::Drain => link.handle(NodeEvent::Drain, now),
            ConnIn::Stop => link.handle(NodeEvent::Stop, now),
            ConnIn::Program(id, jobs) => link.handle(NodeEvent::ProgramReady { id, jobs }, now),
        }
    }

    /// Carries out the link's actions; false once the connection is over.
    fn act(&mut self, link: &mut NodeLink) -> bool {
        while let Some(action) = link.poll() {
            match action {
                NodeAction::Send(_) if self.broken => {}
                NodeAction::Send(bytes) => {
                    if let Err(e) = self.stream.write_all(&bytes) {
                        self.broken = true;
                        let why = match e.kind() {
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
                                format!(
                                    "no write progress for {:?}: the client stopped reading",
                                    self.node.config.write_timeout
                                )
                            }
                            _ => format!("write failed: {e}"),
                        };
                        // The link closes; its jobs here are skipped.
                        self.conn.mark_closed();
                        link.handle(NodeEvent::TransportClosed(why), Instant::now());
                    }
                }
                NodeAction::Run(jobs) => self.node.submit(jobs, self.conn),
                NodeAction::Cancel(id) => self.node.cancel(self.conn, id),
                NodeAction::StatusWanted => {
                    link.handle(NodeEvent::Status(self.node.status()), Instant::now())
                }
                NodeAction::Offer(info) => self.offer(link, &info),
                NodeAction::Chunk { id, offset, data } => self.chunk(link, id, offset, &data),
                NodeAction::Authenticated => {
                    tracing::debug!(peer = %self.peer, "client authenticated")
                }
                NodeAction::Close { reason: None } => {
                    tracing::debug!(peer = %self.peer, "connection closed");
                    return false;
                }
                NodeAction::Close {
                    reason: Some(reason),
                } => {
                    tracing::info!(peer = %self.peer, "connection closed: {reason}");
                    return false;
                }
            }
        }
        true
    }
}

impl Driver<'_> {
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
            None => self.node.programs.offer(info, now),
        };
        let answer = match decision {
            Decision::Answer(answer) => answer,
            Decision::Have(ready) => {
                self.get_ready(id, ready);
                OfferAnswer::Have
            }
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
                match upload.map(|u| self.node.programs.finish(*u)) {
                    Some(Ok(path)) => {
                        self.get_ready(id, crate::programs::Ready::Cached(path));
                        None
                    }
                    Some(Err(why)) => Some(why),
                    None => None,
                }
            }
            Ok(()) => None,
        };
        if let Some(reason) = failed {
            tracing::warn!(peer = %self.peer, program = %id, "{reason}");
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
            let jobs = Err(format!("upload refused: {e}"));
            link.handle(NodeEvent::ProgramReady { id, jobs }, now);
        }
    }

    /// Gets program `id` ready off this thread; the outcome comes back as an event.
    fn get_ready(&self, id: ProgramId, ready: crate::programs::Ready) {
        let programs = Arc::clone(&self.node.programs);
        let conn = Arc::clone(self.conn);
        let spawned = std::thread::Builder::new()
            .name("pp-program-ready".into())
            .spawn(move || conn.program(id, programs.ready(id, ready)));
        if let Err(e) = spawned {
            self.conn
                .program(id, Err(format!("cannot start the program: {e}")));
        }
    }
}

/// Reads one connection until it ends, forwarding what it reads.
fn read_loop(mut stream: TcpStream, tx: &Sender<Got>) {
    let mut buf = vec![0u8; READ_BUF];
    loop {
        let msg = match stream.read(&mut buf) {
            Ok(0) => Got::Closed("the client closed the connection".into()),
            Ok(n) => Got::Bytes(buf[..n].to_vec()),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => Got::Closed(format!("read failed: {e}")),
        };
        let last = matches!(msg, Got::Closed(_));
        if tx.send(msg).is_err() || last {
            return;
        }
    }
}
