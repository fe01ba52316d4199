//! What the wire may carry (tampered, replayed frames; pings), refusals,
//! and shipping a program.

use super::*;

/// The next frame the node sends, taken off the wire.
fn node_frame(p: &mut Pair, event: NodeEvent<'_>) -> Vec<u8> {
    let node = p.node.as_mut().unwrap();
    node.handle(event, p.now);
    let mut frame = None;
    while let Some(bytes) = node.poll_transmit() {
        frame.get_or_insert(bytes);
    }
    while node.poll_event().is_some() {}
    frame.unwrap()
}

fn done_event(id: u64) -> NodeEvent<'static> {
    NodeEvent::Finished(vec![DoneJob {
        id,
        attempt: 1,
        result: Ok(ByteBuf::from(vec![2])),
        exec_ns: 1,
        kept: None,
    }])
}

#[test]
fn a_modified_frame_from_the_node_loses_the_link_and_resolves_nothing() {
    let mut p = Pair::new();
    p.pump();
    p.submit(&[(5, 1)]);
    let mut frame = node_frame(&mut p, done_event(5));
    frame[10] ^= 0x40;
    p.client.handle(Event::Received(&frame), p.now);
    p.node = None;
    p.pump();
    let out = p.take_out();
    assert!(done(&out).is_empty(), "a forged result was accepted");
    assert_eq!(returned(&out), vec![(5, true)]);
    assert!(
        matches!(&out[..], [.., Action::Down { reason, .. }] if reason.contains("failed authentication")),
        "{out:?}"
    );
}

#[test]
fn replayed_reordered_injected_and_truncated_frames_are_refused() {
    /// What the attacker makes of two frames in a row.
    type Attack = fn(Vec<u8>, Vec<u8>) -> Vec<u8>;
    let cases: [Attack; 4] = [
        // replayed: the first frame twice
        |a, _| [a.clone(), a].concat(),
        // reordered
        |a, b| [b, a].concat(),
        // injected: a frame sealed by nobody in this session
        |_, b| {
            let mut fake = vec![0, 0, 0, 20];
            fake.extend([7u8; 20]);
            [fake, b].concat()
        },
        // truncated: a frame cut short, its length fixed up
        |a, _| {
            let len = a.len() - 4 - 3;
            let mut cut = (len as u32).to_be_bytes().to_vec();
            cut.extend_from_slice(&a[4..4 + len]);
            cut
        },
    ];
    for (i, case) in cases.iter().enumerate() {
        let mut p = Pair::new();
        p.pump();
        p.submit(&[(5, 1), (6, 1)]);
        let a = node_frame(&mut p, done_event(5));
        let b = node_frame(&mut p, done_event(6));
        let replay = i == 0;
        p.client.handle(Event::Received(&case(a, b)), p.now);
        p.node = None;
        p.pump();
        let out = p.take_out();
        // Only the genuine first frame of the replay case resolves.
        assert_eq!(
            done(&out),
            if replay { vec![5] } else { vec![] },
            "case {i}"
        );
        assert!(
            matches!(&out[..], [.., Action::Down { reason, .. }] if reason.contains("failed authentication")),
            "case {i}: {out:?}"
        );
    }
}

/// The node's answer to the client's next frame (a ping), as sealed bytes.
fn pong_for_next_ping(p: &mut Pair) -> Vec<u8> {
    let Some(Action::Send(ping)) = p.client.poll() else {
        panic!("no ping")
    };
    let node = p.node.as_mut().unwrap();
    node.handle(NodeEvent::Received(&ping), p.now);
    let mut pong = None;
    while let Some(bytes) = node.poll_transmit() {
        pong.get_or_insert(bytes);
    }
    while node.poll_event().is_some() {}
    pong.expect("a pong")
}

#[test]
fn the_round_trip_is_the_last_pings_and_only_its() {
    let mut p = Pair::new();
    p.pump();
    assert_eq!(p.client.rtt(), None, "no ping answered yet");
    // Ping 1 at 1 s; its pong comes back 30 ms later.
    p.now += SECOND;
    p.client.handle(Event::Timer, p.now);
    let pong1 = pong_for_next_ping(&mut p);
    p.now += Duration::from_millis(30);
    p.client.handle(Event::Received(&pong1), p.now);
    assert_eq!(p.client.rtt(), Some(Duration::from_millis(30)));
    // Pings 2 and 3 go out before pong 2 is back: the late pong 2 changes
    // nothing; pong 3, 205 ms after ping 3, does.
    p.now = p.client.poll_timeout().unwrap();
    p.client.handle(Event::Timer, p.now);
    let pong2 = pong_for_next_ping(&mut p);
    p.now = p.client.poll_timeout().unwrap();
    p.client.handle(Event::Timer, p.now);
    let pong3 = pong_for_next_ping(&mut p);
    p.now += Duration::from_millis(200);
    p.client.handle(Event::Received(&pong2), p.now);
    assert_eq!(p.client.rtt(), Some(Duration::from_millis(30)));
    p.now += Duration::from_millis(5);
    p.client.handle(Event::Received(&pong3), p.now);
    assert_eq!(p.client.rtt(), Some(Duration::from_millis(205)));
    assert_eq!(p.client.state(), LinkState::Ready);
}

#[test]
fn a_refusal_is_retried_only_when_the_node_says_so() {
    use crate::session::handshake::{refusal_busy, refusal_reason};
    for (busy, should_retry) in [(true, true), (false, false)] {
        let mut link = ClientLink::<u64>::new(config(), Instant::now());
        let now = Instant::now();
        assert!(matches!(link.poll(), Some(Action::Connect)));
        link.handle(Event::Connected, now);
        // The same text either way: only the refusal's code decides.
        let text = "too many connections (limit 1)";
        let refusal = match busy {
            true => refusal_busy(text),
            false => refusal_reason(text),
        };
        let frame = Framer::new(HANDSHAKE_MAX_FRAME)
            .encode_handshake(&refusal)
            .unwrap();
        link.handle(Event::Received(&frame), now);
        let actions: Vec<_> = std::iter::from_fn(|| link.poll()).collect();
        let down = actions.iter().any(|a| matches!(a, Action::Down { .. }));
        let failed = actions.iter().any(|a| matches!(a, Action::Failed { .. }));
        assert_eq!((down, failed), (should_retry, !should_retry), "busy {busy}");
    }
}

#[test]
fn a_shipped_program_is_offered_uploaded_and_its_jobs_routed_by_program() {
    let mut p = Pair::new();
    p.pump();
    let info = ProgramInfo {
        id: ProgramId::of(b"program"),
        size: 7,
        target: "x86_64-linux".into(),
        linking: crate::wire::program::Linking::Static,
    };
    p.client.offer(&info);
    p.pump();
    assert_eq!(p.node_offers, vec![info.clone()]);
    p.node(NodeEvent::Offered {
        id: info.id,
        answer: OfferAnswer::Need,
    });
    let out = p.take_out();
    assert!(out.iter().any(|a| matches!(a,
        Action::Offered { id, answer: OfferAnswer::Need } if *id == info.id)));
    assert!(p.client.chunk(info.id, 0, b"program".to_vec()));
    p.pump();
    assert_eq!(p.node_chunks, vec![(0, 7)]);
    // Each chunk's ping came back: the window is open again.
    assert!(p.client.upload_room());
    // Before the program is ready, its job is not the node's to run.
    assert!(!p.client.can_run("mine", "s"));
    let jobs = vec![JobInfo {
        name: "mine".into(),
        signature: "s".into(),
    }];
    p.node(NodeEvent::ProgramReady {
        id: info.id,
        jobs: Ok(jobs),
    });
    assert!(p
        .take_out()
        .iter()
        .any(|a| matches!(a, Action::ProgramReady { .. })));
    assert!(p.client.can_run("mine", "s"));
    let mut mine = run(1, 1);
    mine.name = "mine".into();
    p.client
        .handle(Event::Submit(vec![(mine, 1), (run(2, 1), 2)]), p.now);
    p.pump();
    let programs: Vec<_> = p.node_jobs.iter().map(|j| (j.id, j.program)).collect();
    // The built-in `j` stays built-in; `mine` is the program's.
    assert_eq!(programs, vec![(1, Some(info.id)), (2, None)]);
    // A refusal reaches the client with its reason.
    p.node(NodeEvent::ProgramReady {
        id: info.id,
        jobs: Err("hash mismatch".into()),
    });
    assert!(p.take_out().iter().any(|a| matches!(a,
        Action::ProgramRefused { reason, .. } if reason == "hash mismatch")));
}

#[test]
fn an_upload_waits_for_the_node_to_take_its_chunks() {
    let mut p = Pair::new();
    p.pump();
    let id = ProgramId::of(b"x");
    // The node asked for the program (its one upload on this connection).
    let answer = OfferAnswer::Need;
    p.node(NodeEvent::Offered { id, answer });
    p.take_out();
    // The node reads nothing meanwhile: chunks stay in flight.
    for k in 0..UPLOAD_WINDOW as u64 {
        assert!(p.client.upload_room());
        assert!(p.client.chunk(id, k, vec![0; 1]));
    }
    assert!(!p.client.upload_room());
    // Its pongs open the window.
    p.pump();
    assert!(p.client.upload_room());
    assert_eq!(p.node_chunks.len(), UPLOAD_WINDOW);
}
