//! Shipped programs at the protocol level (issue 13), against a real
//! `ppserver`: uploads are verified before anything runs, a program's job
//! never runs as a built-in, and bad input costs only its own request.

mod common;

use common::{authenticated, connect, reject_reason, Node, SECRET};
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
