//! The node's side of a connection on a fake clock.

use super::*;
use crate::handshake::ClientHandshake;
use crate::wire::{decode_frame, encode_frame, JobInfo, MAGIC, PROTOCOL_VERSION};
use serde_bytes::ByteBuf;

const SECOND: Duration = Duration::from_secs(1);

fn link(now: Instant) -> NodeLink {
    let config = NodeLinkConfig {
        secret: Secret::new("s"),
        handshake_timeout: 5 * SECOND,
        heartbeat: SECOND,
        max_frame: 4096,
    };
    let welcome = NodeMsg::Welcome {
        node_id: "n".into(),
        version: "v".into(),
        workers: 1,
        jobs: vec![JobInfo {
            name: "j".into(),
            signature: "s".into(),
        }],
        heartbeat_ms: 0,
        caps: vec![],
    };
    NodeLink::new(config, [3; 32], welcome, now)
}

/// Every message the link sent, and every other action.
fn drain(l: &mut NodeLink) -> (Vec<NodeMsg>, Vec<NodeAction>) {
    let (mut sent, mut other) = (Vec::new(), Vec::new());
    while let Some(a) = l.poll() {
        match a {
            NodeAction::Send(bytes) => {
                let (msg, used) = decode_frame::<NodeMsg>(&bytes, usize::MAX)
                    .unwrap()
                    .unwrap();
                assert_eq!(used, bytes.len(), "one frame per Send");
                sent.push(msg);
            }
            a => other.push(a),
        }
    }
    (sent, other)
}

fn feed(l: &mut NodeLink, msg: &ClientMsg, now: Instant) {
    l.handle(NodeEvent::Received(&encode_frame(msg).unwrap()), now);
}

/// A link through the handshake.
fn ready(now: Instant) -> NodeLink {
    let mut l = link(now);
    let (hs, hello) = ClientHandshake::start(Secret::new("s"), [4; 32]);
    feed(&mut l, &hello, now);
    let (sent, _) = drain(&mut l);
    let auth = hs.on_challenge(sent[0].clone()).unwrap();
    feed(&mut l, &auth, now);
    let (sent, other) = drain(&mut l);
    assert!(
        matches!(
            sent[0],
            NodeMsg::Welcome {
                heartbeat_ms: 1000,
                ..
            }
        ),
        "{sent:?}"
    );
    assert_eq!(other, vec![NodeAction::Authenticated]);
    l
}

#[test]
fn a_silent_client_is_closed_after_exactly_three_intervals() {
    let t0 = Instant::now();
    let mut l = ready(t0);
    feed(&mut l, &ClientMsg::Ping(1), t0 + SECOND);
    assert_eq!(l.poll_timeout(), Some(t0 + 4 * SECOND));
    l.handle(NodeEvent::Timer, t0 + 4 * SECOND - Duration::from_millis(1));
    assert!(!l.is_closed());
    l.handle(NodeEvent::Timer, t0 + 4 * SECOND);
    let (sent, other) = drain(&mut l);
    assert!(
        matches!(&sent[..], [NodeMsg::Pong(1), NodeMsg::Reject { reason }] if reason.contains("silent"))
    );
    assert!(matches!(
        &other[..],
        [NodeAction::Close { reason: Some(_) }]
    ));
    assert!(l.is_closed());
}

#[test]
fn a_client_that_does_not_authenticate_in_time_is_closed() {
    let t0 = Instant::now();
    let mut l = link(t0);
    l.handle(NodeEvent::Timer, t0 + 5 * SECOND);
    let (sent, other) = drain(&mut l);
    assert!(matches!(&sent[..], [NodeMsg::Reject { reason }] if reason.contains("handshake")));
    assert!(matches!(&other[..], [NodeAction::Close { .. }]));
}

#[test]
fn another_protocol_version_is_refused_naming_both() {
    let t0 = Instant::now();
    let mut l = link(t0);
    let hello = ClientMsg::Hello {
        magic: MAGIC.into(),
        version: PROTOCOL_VERSION + 1,
        nonce: ByteBuf::from(vec![0; 32]),
    };
    feed(&mut l, &hello, t0);
    let (sent, _) = drain(&mut l);
    let [NodeMsg::Reject { reason }] = &sent[..] else {
        panic!("{sent:?}")
    };
    assert!(
        reason.contains(&format!("version {}", PROTOCOL_VERSION + 1)),
        "{reason}"
    );
    assert!(
        reason.contains(&format!("version {PROTOCOL_VERSION}")),
        "{reason}"
    );
    assert!(l.is_closed());
}

#[test]
fn a_draining_node_still_reads_control_frames_and_gives_jobs_back() {
    let t0 = Instant::now();
    let mut l = ready(t0);
    l.handle(NodeEvent::Drain, t0);
    let run = RunJob {
        id: 1,
        attempt: 2,
        name: "j".into(),
        args: ByteBuf::new(),
        program: None,
    };
    feed(&mut l, &ClientMsg::Run(vec![run]), t0);
    feed(&mut l, &ClientMsg::Ping(5), t0);
    feed(&mut l, &ClientMsg::Cancel { id: 9 }, t0);
    let (sent, other) = drain(&mut l);
    assert_eq!(
        sent,
        vec![
            NodeMsg::Draining,
            NodeMsg::Returned(vec![(1, 2)]),
            NodeMsg::Pong(5)
        ]
    );
    assert_eq!(other, vec![NodeAction::Cancel(9)]);
    l.handle(NodeEvent::Stop, t0);
    let (sent, other) = drain(&mut l);
    assert_eq!(sent, vec![NodeMsg::Goodbye]);
    assert_eq!(other, vec![NodeAction::Close { reason: None }]);
}

#[test]
fn results_too_big_become_codec_errors_and_batches_fit_the_frame() {
    let t0 = Instant::now();
    let mut l = ready(t0);
    let done = |id, n| DoneJob {
        id,
        attempt: 1,
        result: Ok(ByteBuf::from(vec![0u8; n])),
        exec_ns: 0,
    };
    l.handle(
        NodeEvent::Finished(vec![done(1, 10_000), done(2, 10), done(3, 10)]),
        t0,
    );
    let (sent, _) = drain(&mut l);
    let all: Vec<DoneJob> = sent
        .into_iter()
        .flat_map(|m| match m {
            NodeMsg::Done(d) => d,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(all.len(), 3);
    assert_eq!(all[0].result.as_ref().unwrap_err().kind, ErrorKind::Codec);
    assert!(all[1].result.is_ok());
}

#[test]
fn garbage_before_the_handshake_closes_with_a_reason() {
    let t0 = Instant::now();
    let mut l = link(t0);
    l.handle(NodeEvent::Received(&[0, 0, 0, 3, 0xc1, 0xc1, 0xc1]), t0);
    let (sent, other) = drain(&mut l);
    assert!(matches!(&sent[..], [NodeMsg::Reject { reason }] if reason.contains("handshake")));
    assert!(matches!(
        &other[..],
        [NodeAction::Close { reason: Some(_) }]
    ));
}
