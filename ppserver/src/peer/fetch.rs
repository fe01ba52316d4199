//! The fetching side of a peer session: a node dials the peer that exports
//! a kept value, authenticates with the cluster key as a client does, asks
//! for the value (`RunJob` with `KeepOp::Fetch`) and reads the answer: a
//! `Done`, or a stream and its `DoneStreamed`. Blocking, on one of the
//! node's pull threads; every read and write is bounded in time (the
//! session's stall limit) and what the peer may send in size (`max`).

use ppcore::link::HANDSHAKE_MAX_FRAME;
use ppcore::secure::ClientHandshake;
use ppcore::shared::SharedId;
use ppcore::stream::{Claimed, Incoming, Limits};
use ppcore::wire::{ClientMsg, KeepOp, NodeMsg, RunJob};
use ppcore::{escape, Framer, Key, KeySet, SecureError};
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// The id the one fetch of a peer session carries.
const FETCH_ID: u64 = 1;

/// How often the fetching side pings while it waits: the peer drops a
/// client silent for three of its heartbeat intervals (5 s by default),
/// and a large value can take longer than that to arrive.
const PING_EVERY: Duration = Duration::from_secs(1);

/// Why a fetch from a peer failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PeerError {
    /// No connection: the address does not resolve, or nobody listens.
    #[error("cannot reach peer {addr}: {reason}")]
    Unreachable {
        /// The peer.
        addr: String,
        /// Why.
        reason: String,
    },
    /// The peer holds none of our keys, or refused the session.
    #[error("peer {addr} refused the session: {reason}")]
    Refused {
        /// The peer.
        addr: String,
        /// Why.
        reason: String,
    },
    /// The session broke, timed out or carried nonsense.
    #[error("session with peer {addr} failed: {reason}")]
    Broken {
        /// The peer.
        addr: String,
        /// Why.
        reason: String,
    },
    /// The peer answered, but without the value (not exported there, or
    /// over our limit).
    #[error("peer {addr} did not give kept value {value}: {reason}")]
    NotGiven {
        /// The peer.
        addr: String,
        /// The value.
        value: SharedId,
        /// What it said.
        reason: String,
    },
}

/// How a fetch behaves.
#[derive(Debug, Clone)]
pub(crate) struct FetchLimits {
    /// The cluster's keys: each is tried in turn (a rollover).
    pub(crate) keys: KeySet,
    /// How long to connect, and how long any read or write may wait.
    pub(crate) connect: Duration,
    pub(crate) stall: Duration,
    /// The largest frame, and the largest value taken.
    pub(crate) max_frame: usize,
    pub(crate) max: u64,
}

/// Fetches kept value `value` from the peer at `addr` (`host:port`).
pub(crate) fn fetch(
    addr: &str,
    value: SharedId,
    limits: &FetchLimits,
) -> Result<Vec<u8>, PeerError> {
    let mut last = None;
    for key in limits.keys.keys() {
        let stream = dial(addr, limits.connect)?;
        match fetch_over(&stream, addr, key, value, limits) {
            Err(e @ PeerError::Refused { .. }) => last = Some(e),
            other => return other,
        }
    }
    Err(last.unwrap_or_else(|| PeerError::Refused {
        addr: addr.to_owned(),
        reason: "no key to offer".into(),
    }))
}

fn dial(addr: &str, timeout: Duration) -> Result<TcpStream, PeerError> {
    let unreachable = |reason: String| PeerError::Unreachable {
        addr: addr.to_owned(),
        reason,
    };
    let addrs = addr
        .to_socket_addrs()
        .map_err(|e| unreachable(format!("cannot resolve: {e}")))?;
    let mut last = unreachable("no address".into());
    for a in addrs {
        match TcpStream::connect_timeout(&a, timeout) {
            Ok(s) => return Ok(s),
            Err(e) => last = unreachable(format!("cannot connect: {e}")),
        }
    }
    Err(last)
}

/// One session with `key` on `stream`: the handshake, the fetch, goodbye.
fn fetch_over(
    stream: &TcpStream,
    addr: &str,
    key: &Key,
    value: SharedId,
    limits: &FetchLimits,
) -> Result<Vec<u8>, PeerError> {
    let broken = |reason: String| PeerError::Broken {
        addr: addr.to_owned(),
        reason,
    };
    let io = |e: std::io::Error| broken(e.to_string());
    stream.set_nodelay(true).map_err(io)?;
    stream.set_read_timeout(Some(PING_EVERY)).map_err(io)?;
    stream.set_write_timeout(Some(limits.stall)).map_err(io)?;
    let mut framer = Framer::new(HANDSHAKE_MAX_FRAME);
    let (mut hs, first) = ClientHandshake::start(key, &[]).map_err(|e| broken(e.to_string()))?;
    let frame = framer
        .encode_handshake(&first)
        .map_err(|e| broken(e.to_string()))?;
    (&*stream).write_all(&frame).map_err(io)?;
    let mut reader = Reader::new(stream, addr, limits.stall);
    let answer = reader.next(&mut framer, |f| f.decode_handshake())?;
    match hs.read(&answer).and_then(|_| hs.finish()) {
        Ok(session) => framer.secure(session),
        Err(e @ SecureError::WrongKey) => {
            return Err(PeerError::Refused {
                addr: addr.to_owned(),
                reason: e.to_string(),
            })
        }
        Err(e) => {
            return Err(PeerError::Refused {
                addr: addr.to_owned(),
                reason: e.to_string(),
            })
        }
    }
    framer.set_max(limits.max_frame);
    let job = RunJob {
        id: FETCH_ID,
        attempt: 1,
        name: String::new(),
        args: Default::default(),
        program: None,
        shared: Vec::new(),
        keep: Some(KeepOp::Fetch(value)),
        journal: None,
        request: None,
    };
    let ask = [
        ClientMsg::Limits {
            max_payload: limits.max,
        },
        ClientMsg::Run(vec![job]),
    ];
    for msg in ask {
        let frame = framer.encode(&msg).map_err(|e| broken(e.to_string()))?;
        (&*stream).write_all(&frame).map_err(io)?;
    }
    let got = read_answer(&mut reader, &mut framer, value, limits);
    if let Ok(bye) = framer.encode(&ClientMsg::Goodbye) {
        let _ = (&*stream).write_all(&bye);
    }
    got
}

/// Reads until the fetch is answered.
fn read_answer(
    reader: &mut Reader<'_>,
    framer: &mut Framer,
    value: SharedId,
    limits: &FetchLimits,
) -> Result<Vec<u8>, PeerError> {
    let addr = reader.addr.to_owned();
    let broken = |reason: String| PeerError::Broken {
        addr: addr.clone(),
        reason,
    };
    let mut incoming = Incoming::new(Limits {
        max_payload: limits.max,
        max_buffered: limits.max,
        max_streams: 1,
        stall: limits.stall,
    });
    let not_given = |reason: String| PeerError::NotGiven {
        addr: addr.clone(),
        value,
        reason: escape(&reason).into_owned(),
    };
    loop {
        let msg = reader.next(framer, |f| f.decode::<NodeMsg>())?;
        match msg {
            NodeMsg::Done(done) => {
                let Some(d) = done.into_iter().find(|d| d.id == FETCH_ID) else {
                    continue;
                };
                return d
                    .result
                    .map(|b| b.into_vec())
                    .map_err(|e| not_given(e.message));
            }
            NodeMsg::Stream(frame) => incoming
                .receive(frame, Instant::now())
                .map_err(|e| broken(e.to_string()))?,
            NodeMsg::DoneStreamed { stream, job } => {
                let claimed = incoming
                    .claim_or_refused(stream)
                    .map_err(|e| broken(e.to_string()))?;
                match (job.id == FETCH_ID, claimed) {
                    (true, Claimed::Payload(bytes)) => return Ok(bytes),
                    (true, Claimed::Refused) => return Err(not_given("over our room".into())),
                    (false, _) => continue,
                }
            }
            NodeMsg::Reject { reason, .. } => {
                return Err(PeerError::Refused {
                    addr: addr.clone(),
                    reason: escape(&reason).into_owned(),
                })
            }
            NodeMsg::Returned(_) => return Err(not_given("handed back (the peer is full)".into())),
            NodeMsg::Goodbye => return Err(broken("the peer said goodbye".into())),
            _ => continue, // its Welcome, a Pong, Draining, NeedShared
        }
    }
}

/// Reads whole frames from the peer; pings it while it waits (once the
/// session is sealed), and gives up after `stall` without a byte.
struct Reader<'a> {
    stream: &'a TcpStream,
    addr: &'a str,
    buf: Vec<u8>,
    stall: Duration,
    heard: Instant,
    pinged: Instant,
}

impl<'a> Reader<'a> {
    fn new(stream: &'a TcpStream, addr: &'a str, stall: Duration) -> Self {
        let now = Instant::now();
        Reader {
            stream,
            addr,
            buf: vec![0u8; 64 << 10],
            stall,
            heard: now,
            pinged: now,
        }
    }

    /// Nothing came for a while: ping (the peer keeps us), or give up.
    fn idle(&mut self, framer: &mut Framer) -> Result<(), PeerError> {
        let now = Instant::now();
        if now.duration_since(self.heard) >= self.stall {
            return Err(PeerError::Broken {
                addr: self.addr.to_owned(),
                reason: format!("nothing for {:?}", self.stall),
            });
        }
        if framer.is_secure() && now.duration_since(self.pinged) >= PING_EVERY {
            self.pinged = now;
            if let Ok(ping) = framer.encode(&ClientMsg::Ping(0)) {
                let written = (&*self.stream).write_all(&ping);
                written.map_err(|e| PeerError::Broken {
                    addr: self.addr.to_owned(),
                    reason: format!("write failed: {e}"),
                })?;
            }
        }
        Ok(())
    }

    fn next<T>(
        &mut self,
        framer: &mut Framer,
        mut decode: impl FnMut(&mut Framer) -> Result<Option<T>, ppcore::FrameError>,
    ) -> Result<T, PeerError> {
        let broken = |reason: String| PeerError::Broken {
            addr: self.addr.to_owned(),
            reason,
        };
        loop {
            match decode(framer) {
                Ok(Some(got)) => return Ok(got),
                Ok(None) => {}
                Err(e) => return Err(broken(escape(&e.to_string()).into_owned())),
            }
            match self.stream.read(&mut self.buf) {
                Ok(0) => return Err(broken("the peer closed the connection".into())),
                Ok(n) => {
                    self.heard = Instant::now();
                    framer.push(&self.buf[..n]);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    self.idle(framer)?
                }
                Err(e) => return Err(broken(format!("read failed: {e}"))),
            }
        }
    }
}
