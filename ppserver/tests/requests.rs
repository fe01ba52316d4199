//! What a client asks a node for, in raw frames: a request the node can
//! never meet (too many cpus, a resource it lacks or has too little of, or
//! one that breaks the wire rules) is answered at once with
//! `Unsatisfiable`, naming the request and the node's offer, and the node
//! goes on serving the jobs it can run.

mod common;

use common::{authenticated_on, connect_from, Node, Session};
use ppcore::resources::Request;
use ppcore::wire::{ClientMsg, NodeMsg, RunJob};
use ppcore::ErrorKind;
use serde_bytes::ByteBuf;
use std::collections::BTreeMap;

fn echo(id: u64, request: Option<Request>) -> RunJob {
    RunJob {
        id,
        attempt: 1,
        name: <jobs::echo_u64 as ppcore::Job>::NAME.into(),
        args: ByteBuf::from(ppcore::encode(&(id,)).unwrap()),
        program: None,
        shared: Vec::new(),
        keep: None,
        journal: None,
        request,
    }
}

fn asking(edit: impl FnOnce(&mut Request)) -> Option<Request> {
    let mut request = Request::new();
    edit(&mut request);
    Some(request)
}

/// The answers to `n` jobs, by id (bounded: a node that stops answering
/// fails the test instead of hanging it).
fn answers(s: &mut Session, n: usize) -> BTreeMap<u64, Result<u64, (ErrorKind, String)>> {
    let mut out = BTreeMap::new();
    for _ in 0..10_000 {
        if out.len() == n {
            return out;
        }
        match s.recv() {
            Ok(NodeMsg::Done(done)) => {
                for d in done {
                    let result = match d.result {
                        Ok(bytes) => Ok(ppcore::decode::<u64>(&bytes).unwrap()),
                        Err(e) => Err((e.kind, e.message)),
                    };
                    out.insert(d.id, result);
                }
            }
            Ok(_) => {}
            Err(e) => panic!("the node hung up after {out:?}: {e}"),
        }
    }
    panic!("only {} of {n} answers: {out:?}", out.len())
}

/// The same fields as a `Request` on the wire, free of its rules.
#[derive(serde::Serialize)]
struct RawRequest {
    cpus: u32,
    memory: u64,
    named: Vec<(String, u64)>,
    tags: Vec<String>,
}

#[test]
fn requests_a_node_can_never_meet_are_answered_unsatisfiable_and_it_keeps_serving() {
    let node = Node::start(&["--workers", "2", "--resources", "licence=1"]);
    let mut s = authenticated_on(connect_from(&node, [127, 0, 0, 1]));
    // Names out of order and a zero amount: no `Request` method makes
    // these, but any bytes may arrive.
    let raw = RawRequest {
        cpus: 1,
        memory: 0,
        named: vec![("zeta".into(), 1000), ("alpha".into(), 0)],
        tags: vec![],
    };
    let broken: Request = ppcore::decode(&ppcore::encode(&raw).unwrap()).unwrap();
    let jobs = vec![
        echo(1, asking(|r| r.set_named("gpu", 1000).unwrap())),
        echo(2, asking(|r| r.set_cpus(64))),
        echo(3, asking(|r| r.set_named("licence", 2000).unwrap())),
        echo(4, asking(|r| r.add_tag("ssd").unwrap())),
        echo(5, Some(broken)),
        echo(6, asking(|r| r.set_named("licence", 1000).unwrap())),
        echo(7, None),
    ];
    assert!(s.send(&ClientMsg::Run(jobs)));
    let got = answers(&mut s, 7);
    for id in 1..=5 {
        let Err((kind, message)) = &got[&id] else {
            panic!("job {id} ran: {got:?}")
        };
        assert_eq!(*kind, ErrorKind::Unsatisfiable, "job {id}: {message}");
        assert!(
            message.contains("cannot run on node"),
            "job {id}: {message}"
        );
        assert!(
            message.contains("licence=1"),
            "job {id} names the offer: {message}"
        );
    }
    for (id, short) in [(1, "gpu"), (2, "cpus=64"), (3, "licence=2"), (4, "ssd")] {
        let Err((_, message)) = &got[&id] else {
            unreachable!()
        };
        assert!(message.contains(short), "job {id}: {message}");
    }
    // What it can run, it runs, on the same connection.
    assert_eq!(got[&6], Ok(6));
    assert_eq!(got[&7], Ok(7));
    assert!(s.send(&ClientMsg::Run(vec![echo(8, None)])));
    assert_eq!(answers(&mut s, 1)[&8], Ok(8));
}
