//! Shipped programs at the protocol level (issue 13), against a real
//! `ppserver`: uploads are verified before anything runs, a program's job
//! never runs as a built-in, and bad input costs only its own request.

mod common;

use common::{authenticated, connect, eventually, reject_reason, Node, SECRET};
use ppcore::link::HANDSHAKE_MAX_FRAME;
use ppcore::program::{Linking, OfferAnswer, ProgramId, ProgramInfo, CHUNK};
use ppcore::secure::ClientHandshake;
use ppcore::wire::{ClientMsg, NodeMsg, RunJob};
use ppcore::{encode_frame, ErrorKind, Framer, Key};
use serde_bytes::ByteBuf;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

struct Cache(PathBuf);

impl Cache {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("pp-ship-raw-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        Cache(dir)
    }

    fn programs(&self) -> usize {
        std::fs::read_dir(&self.0)
            .map(|d| d.flatten().count())
            .unwrap_or(0)
    }
}

impl Drop for Cache {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn node(cache: &Cache) -> Node {
    let dir = cache.0.to_string_lossy().into_owned();
    Node::start(&["--cache-dir", &dir])
}

/// A raw authenticated (encrypted) session: send messages, read the node's.
struct Session(common::Session);

impl Session {
    fn new(node: &Node) -> Self {
        Session(authenticated(node))
    }

    fn send(&mut self, msg: &ClientMsg) {
        assert!(self.0.send(msg), "the node closed the connection");
    }

    /// Waits until the node has read everything sent before: its pong.
    fn sync(&mut self, n: u64) {
        self.send(&ClientMsg::Ping(n));
        for _ in 0..10_000 {
            if self.0.recv().expect("a message") == NodeMsg::Pong(n) {
                return;
            }
        }
        panic!("no pong")
    }

    /// The next message other than a pong.
    fn next(&mut self) -> NodeMsg {
        for _ in 0..10_000 {
            match self.0.recv().expect("a message") {
                NodeMsg::Pong(_) => continue,
                msg => return msg,
            }
        }
        panic!("only pongs")
    }
}

/// A real executable of this machine, offered as a program.
fn program() -> (Vec<u8>, ProgramInfo) {
    // Any executable that is no pp worker: it exits without listing jobs.
    let bytes = std::fs::read("/bin/true").unwrap();
    let info = ProgramInfo {
        id: ProgramId::of(&bytes),
        size: bytes.len() as u64,
        target: format!("{}-{}", std::env::consts::ARCH, std::env::consts::OS),
        linking: Linking::Static,
    };
    (bytes, info)
}

/// The node process's threads now.
fn threads(node: &Node) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{}/status", node.child.id())).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("a thread count")
}

/// Bytes of every file in `dir`.
fn disk(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

fn upload(session: &mut Session, id: ProgramId, bytes: &[u8]) {
    for (k, chunk) in bytes.chunks(CHUNK).enumerate() {
        session.send(&ClientMsg::Chunk {
            id,
            offset: (k * CHUNK) as u64,
            data: ByteBuf::from(chunk.to_vec()),
        });
    }
}

#[test]
fn a_corrupted_upload_is_refused_and_nothing_is_kept() {
    let cache = Cache::new("corrupt");
    let n = node(&cache);
    let (mut bytes, info) = program();
    let mut s = Session::new(&n);
    s.send(&ClientMsg::Offer(info.clone()));
    assert_eq!(
        s.next(),
        NodeMsg::Offered {
            id: info.id,
            answer: OfferAnswer::Need
        }
    );
    bytes[1000] ^= 0xff;
    upload(&mut s, info.id, &bytes);
    match s.next() {
        NodeMsg::ProgramRefused { id, reason } => {
            assert_eq!(id, info.id);
            assert!(reason.contains("hash mismatch"), "{reason}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(cache.programs(), 0, "nothing of it stays in the cache");
    // The connection serves on; the same program may be offered again.
    s.send(&ClientMsg::Offer(info.clone()));
    assert!(matches!(
        s.next(),
        NodeMsg::Offered {
            answer: OfferAnswer::Need,
            ..
        }
    ));
    let status = ppclient::node_status(&n.name(), SECRET.as_str(), Duration::from_secs(5)).unwrap();
    assert_eq!(status.programs_uploaded, 0);
}

#[test]
fn a_verified_program_that_is_no_pp_worker_is_refused_then_found_in_the_cache() {
    let cache = Cache::new("noworker");
    let n = node(&cache);
    let (bytes, info) = program();
    let mut s = Session::new(&n);
    s.send(&ClientMsg::Offer(info.clone()));
    assert!(matches!(
        s.next(),
        NodeMsg::Offered {
            answer: OfferAnswer::Need,
            ..
        }
    ));
    upload(&mut s, info.id, &bytes);
    // `true` lists no jobs: it is refused, with what became of it.
    let NodeMsg::ProgramRefused { reason, .. } = s.next() else {
        panic!("expected a refusal");
    };
    assert!(reason.contains("did not start as a pp worker"), "{reason}");
    assert_eq!(cache.programs(), 1, "verified: kept, named by hash");
    // A second offer of it needs no upload.
    let mut again = Session::new(&n);
    again.send(&ClientMsg::Offer(info.clone()));
    assert!(matches!(
        again.next(),
        NodeMsg::Offered {
            answer: OfferAnswer::Have,
            ..
        }
    ));
    let status = ppclient::node_status(&n.name(), SECRET.as_str(), Duration::from_secs(5)).unwrap();
    assert_eq!((status.programs_uploaded, status.programs_cached), (1, 1));
}

#[test]
fn a_programs_job_never_runs_as_the_built_in_of_its_name() {
    let cache = Cache::new("names");
    let n = node(&cache);
    let mut s = Session::new(&n);
    let job = |program| RunJob {
        id: 1,
        attempt: 1,
        name: "jobs::echo_u64".into(),
        args: ByteBuf::from(ppcore::encode(&(5u64,)).unwrap()),
        program,
        shared: Vec::new(),
        keep: None,
        journal: None,
        request: None,
    };
    s.send(&ClientMsg::Run(vec![job(Some(ProgramId::of(b"not here")))]));
    let NodeMsg::Done(done) = s.next() else {
        panic!("expected a result");
    };
    let err = done[0].result.clone().unwrap_err();
    assert_eq!(err.kind, ErrorKind::UnknownJob);
    assert!(err.message.contains("program"), "{err}");
    // The built-in of that name runs as before.
    s.send(&ClientMsg::Run(vec![job(None)]));
    let NodeMsg::Done(done) = s.next() else {
        panic!("expected a result");
    };
    assert_eq!(
        done[0].result,
        Ok(ByteBuf::from(ppcore::encode(&5u64).unwrap()))
    );
}

#[test]
fn chunks_without_an_offer_and_offers_before_the_handshake_are_refused() {
    let cache = Cache::new("order");
    let n = node(&cache);
    let mut s = Session::new(&n);
    let id = ProgramId::of(b"x");
    upload(&mut s, id, b"x");
    let NodeMsg::ProgramRefused { reason, .. } = s.next() else {
        panic!("expected a refusal");
    };
    assert!(reason.contains("no upload"), "{reason}");
    // A wrong target is refused with the reason, before any upload.
    let (_, mut info) = program();
    info.target = "riscv64-linux".into();
    s.send(&ClientMsg::Offer(info));
    let NodeMsg::Offered {
        answer: OfferAnswer::Refuse(reason),
        ..
    } = s.next()
    else {
        panic!("expected a refusal");
    };
    assert!(reason.contains("riscv64-linux"), "{reason}");
    // Before authentication, an offer ends the connection.
    let mut raw = connect(&n);
    let (_, info) = program();
    raw.write_all(&encode_frame(&ClientMsg::Offer(info)).unwrap())
        .unwrap();
    let reason = reject_reason(raw);
    assert!(!reason.is_empty());
    assert_eq!(cache.programs(), 0);
}

#[test]
fn offers_too_big_or_without_their_loader_are_refused_with_the_reason() {
    let cache = Cache::new("caps");
    let dir = cache.0.to_string_lossy().into_owned();
    let n = Node::start(&["--cache-dir", &dir, "--cache-max", "1K"]);
    let mut s = Session::new(&n);
    let (_, info) = program();
    let refusal = |s: &mut Session, info: ProgramInfo| {
        s.send(&ClientMsg::Offer(info));
        match s.next() {
            NodeMsg::Offered {
                answer: OfferAnswer::Refuse(reason),
                ..
            } => reason,
            other => panic!("expected a refusal, got {other:?}"),
        }
    };
    let reason = refusal(&mut s, info.clone());
    assert!(reason.contains("--cache-max"), "{reason}");
    let dynamic = ProgramInfo {
        size: 10,
        linking: Linking::Dynamic {
            interpreter: "/no/such/ld-linux.so".into(),
        },
        ..info
    };
    let reason = refusal(&mut s, dynamic);
    assert!(reason.contains("/no/such/ld-linux.so"), "{reason}");
    assert!(reason.contains("crt-static"), "{reason}");
    // The node's status says why it refused last, and where its cache is.
    let status = ppclient::node_status(&n.name(), SECRET.as_str(), Duration::from_secs(5)).unwrap();
    let refused = status.program_refused.unwrap_or_default();
    assert!(refused.contains("/no/such/ld-linux.so"), "{refused}");
    assert_eq!(status.program_cache, dir);
}

#[test]
fn offers_waiting_for_another_upload_take_no_thread_and_end_with_their_connections() {
    const CONNECTIONS: usize = 40;
    const OFFERS: usize = 10;
    let cache = Cache::new("waiting");
    let n = node(&cache);
    let (bytes, info) = program();
    let mut uploader = Session::new(&n);
    uploader.send(&ClientMsg::Offer(info.clone()));
    let need = NodeMsg::Offered {
        id: info.id,
        answer: OfferAnswer::Need,
    };
    assert_eq!(uploader.next(), need);
    let alone = threads(&n);
    let mut waiting: Vec<Session> = (0..CONNECTIONS).map(|_| Session::new(&n)).collect();
    let connected = threads(&n);
    // Each of them offers the program, again and again, while the upload
    // has not begun: each hears `Have`, and waits.
    let have = NodeMsg::Offered {
        id: info.id,
        answer: OfferAnswer::Have,
    };
    for s in &mut waiting {
        for _ in 0..OFFERS {
            s.send(&ClientMsg::Offer(info.clone()));
        }
    }
    for s in &mut waiting {
        for _ in 0..OFFERS {
            assert_eq!(s.next(), have);
        }
    }
    let offered = threads(&n);
    assert!(
        offered < connected + 8,
        "{} waiting offers took {} threads",
        CONNECTIONS * OFFERS,
        offered.saturating_sub(connected)
    );
    let status = || ppclient::node_status(&n.name(), SECRET.as_str(), Duration::from_secs(5));
    assert_eq!(status().unwrap().programs_waiting, CONNECTIONS as u64);
    // Closed, they wait no more, and their threads are gone.
    let mut last = waiting.pop().expect("a waiting connection");
    drop(waiting);
    assert!(
        eventually(Duration::from_secs(20), || threads(&n) <= alone + 4),
        "threads: {} with one upload, {} after the waiting connections closed",
        alone,
        threads(&n)
    );
    assert!(eventually(Duration::from_secs(20), || status()
        .is_ok_and(|s| s.programs_waiting == 1)));
    // The one left hears how the upload ended: `true` is no pp worker.
    upload(&mut uploader, info.id, &bytes);
    for s in [&mut uploader, &mut last] {
        match s.next() {
            NodeMsg::ProgramRefused { id, reason } => {
                assert_eq!(id, info.id);
                assert!(reason.contains("did not start as a pp worker"), "{reason}");
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
    }
    assert_eq!(status().unwrap().programs_waiting, 0);
}

#[test]
fn an_offer_waiting_for_an_upload_hears_when_that_upload_fails() {
    let cache = Cache::new("waitfail");
    let n = node(&cache);
    let (_, info) = program();
    let mut uploader = Session::new(&n);
    uploader.send(&ClientMsg::Offer(info.clone()));
    assert!(matches!(
        uploader.next(),
        NodeMsg::Offered {
            answer: OfferAnswer::Need,
            ..
        }
    ));
    let mut waiter = Session::new(&n);
    waiter.send(&ClientMsg::Offer(info.clone()));
    assert!(matches!(
        waiter.next(),
        NodeMsg::Offered {
            answer: OfferAnswer::Have,
            ..
        }
    ));
    drop(uploader); // its upload ends with its connection
    match waiter.next() {
        NodeMsg::ProgramRefused { reason, .. } => {
            assert!(reason.contains("offer it again"), "{reason}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    // Offered again, the program is this connection's to upload.
    waiter.send(&ClientMsg::Offer(info));
    assert!(matches!(
        waiter.next(),
        NodeMsg::Offered {
            answer: OfferAnswer::Need,
            ..
        }
    ));
    assert!(eventually(Duration::from_secs(10), || cache.programs() == 1));
}

#[test]
fn partial_uploads_count_against_the_cache_cap_and_go_with_their_connection() {
    const CAP: u64 = 1 << 20;
    const SIZE: usize = 400 << 10;
    let cache = Cache::new("partials");
    let dir = cache.0.to_string_lossy().into_owned();
    let n = Node::start(&["--cache-dir", &dir, "--cache-max", "1M"]);
    let (_, template) = program();
    let (mut uploading, mut refused) = (Vec::new(), Vec::new());
    for k in 0..10u8 {
        // Ten programs of 400 KiB, each sent but for its last byte.
        let bytes = vec![k + 1; SIZE];
        let info = ProgramInfo {
            id: ProgramId::of(&bytes),
            size: SIZE as u64,
            ..template.clone()
        };
        let mut s = Session::new(&n);
        s.send(&ClientMsg::Offer(info.clone()));
        match s.next() {
            NodeMsg::Offered {
                answer: OfferAnswer::Need,
                ..
            } => {
                upload(&mut s, info.id, &bytes[..SIZE - 1]);
                s.sync(u64::from(k));
                uploading.push(s);
            }
            NodeMsg::Offered {
                answer: OfferAnswer::Refuse(reason),
                ..
            } => refused.push(reason),
            other => panic!("unexpected {other:?}"),
        }
        let used = disk(&cache.0);
        assert!(used <= 2 * CAP, "{used} bytes on disk under a cap of {CAP}");
    }
    assert_eq!(uploading.len(), 2, "as many as fit: {refused:?}");
    assert!(refused[0].contains("--cache-max"), "{}", refused[0]);
    assert_eq!(cache.programs(), 2, "the partial files live in the cache");
    // Their connections closed, they are gone, and their room is free.
    drop(uploading);
    assert!(
        eventually(Duration::from_secs(20), || cache.programs() == 0),
        "partial uploads outlived their connections"
    );
    let mut s = Session::new(&n);
    let bytes = vec![99; SIZE];
    s.send(&ClientMsg::Offer(ProgramInfo {
        id: ProgramId::of(&bytes),
        size: SIZE as u64,
        ..template
    }));
    assert!(matches!(
        s.next(),
        NodeMsg::Offered {
            answer: OfferAnswer::Need,
            ..
        }
    ));
}

#[test]
fn a_stranger_without_the_key_cannot_offer_or_upload() {
    let cache = Cache::new("stranger");
    let n = node(&cache);
    let (bytes, info) = program();
    // A handshake with a key the node does not hold, then an offer and the
    // whole upload in the clear, all in one write.
    let mut raw = connect(&n);
    let framer = Framer::new(HANDSHAKE_MAX_FRAME);
    let (_, first) = ClientHandshake::start(&Key::generate().unwrap(), &[]).unwrap();
    let mut out = framer.encode_handshake(&first).unwrap();
    out.extend(encode_frame(&ClientMsg::Offer(info.clone())).unwrap());
    for (k, chunk) in bytes.chunks(CHUNK).enumerate() {
        let data = ByteBuf::from(chunk.to_vec());
        let offset = (k * CHUNK) as u64;
        let msg = ClientMsg::Chunk {
            id: info.id,
            offset,
            data,
        };
        out.extend(encode_frame(&msg).unwrap());
    }
    // The node may close before it has read it all.
    let _ = raw.write_all(&out);
    let reason = reject_reason(raw);
    assert!(!reason.is_empty());
    assert_eq!(cache.programs(), 0, "nothing of the stranger's is kept");
    // A client with the key finds the node never heard of the program.
    let mut s = Session::new(&n);
    s.send(&ClientMsg::Offer(info.clone()));
    assert_eq!(
        s.next(),
        NodeMsg::Offered {
            id: info.id,
            answer: OfferAnswer::Need
        }
    );
    let status = ppclient::node_status(&n.name(), SECRET.as_str(), Duration::from_secs(5)).unwrap();
    assert_eq!((status.programs_uploaded, status.programs_cached), (0, 0));
}
