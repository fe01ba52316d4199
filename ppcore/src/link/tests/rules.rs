//! The rules the link keeps for its driver, on the fake clock: the write
//! stall, the ended-job sweep, when to offer our program, one upload at a
//! time.

use super::*;
use crate::wire::messages::CAP_SHIP;
use std::collections::HashSet;

const MS: Duration = Duration::from_millis(1);

fn downs_why(actions: &[Action<u64>]) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Down { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_node_that_takes_no_bytes_for_three_heartbeats_is_lost_as_not_reading() {
    let mut p = Pair::new();
    p.pump();
    p.submit(&[(1, 1)]);
    p.take_out();
    let t0 = p.now;
    // The driver's outbox holds bytes the socket does not take.
    p.client.wrote(0, 100, t0);
    p.tick();
    p.tick();
    assert_eq!(p.now, t0 + 2 * SECOND);
    // Some are taken: the 3 s (three 1 s heartbeats) count from here.
    p.client.wrote(50, 50, p.now);
    while p.client.state() == LinkState::Ready && p.now < t0 + 10 * SECOND {
        p.tick();
    }
    assert_eq!(p.now, t0 + 5 * SECOND, "3 s after the last progress");
    let out = p.take_out();
    assert_eq!(
        downs_why(&out),
        vec!["no write progress for 3s: the node stopped reading".to_owned()]
    );
    assert_eq!(returned(&out), vec![(1, true)], "lost with the node");
}

#[test]
fn written_out_bytes_end_the_write_stall() {
    let mut p = Pair::new();
    p.pump();
    let t0 = p.now;
    p.client.wrote(0, 100, t0);
    p.client.wrote(100, 0, t0 + SECOND);
    for _ in 0..10 {
        p.tick();
    }
    assert!(p.now >= t0 + 10 * SECOND);
    assert_eq!(
        p.client.state(),
        LinkState::Ready,
        "pings answered, all written"
    );
}

#[test]
fn the_sweep_every_50_ms_takes_back_ended_jobs_and_frees_dropped_values() {
    let mut p = Pair::new();
    p.pump();
    let t0 = p.now;
    let bytes = Arc::new(vec![7u8; 10]);
    let id = SharedId::of(&bytes[..]);
    p.client.share(id, Arc::clone(&bytes), false).unwrap();
    p.submit(&[(1, 1), (2, 1)]);
    let ended = |job: &u64| *job == 1;
    assert!(p.client.sweep(t0 + 49 * MS, ended, |_| true).is_none());
    let gone = p.client.sweep(t0 + 50 * MS, ended, |_| true);
    p.pump();
    assert_eq!(gone, Some(vec![1]));
    assert_eq!(p.node_cancels, vec![1], "the node is told to stop it");
    assert_eq!(p.client.in_flight(), 1);
    assert!(
        p.client.sweep(t0 + 60 * MS, |_| true, |_| false).is_none(),
        "swept 10 ms ago"
    );
    assert_eq!(p.client.next_sweep(), t0 + 100 * MS);
    // Nobody holds the value any more: the next sweep frees it.
    let gone = p.client.sweep(t0 + 100 * MS, |_| false, |_| false);
    p.pump();
    assert_eq!(gone, Some(vec![]));
    assert_eq!(p.node_unshared, vec![id]);
}

fn own(names: &[&str]) -> HashSet<(String, String)> {
    names.iter().map(|n| (n.to_string(), "s".into())).collect()
}

#[test]
fn our_program_is_offered_to_a_node_that_lacks_its_jobs_and_speaks_ship() {
    let mut p = Pair::new();
    p.pump();
    let now = p.now;
    assert!(
        !p.client.plan_offer(&own(&["j", "mine"]), true, now),
        "no ship capability"
    );
    let mut p = Pair::new();
    p.node_caps = vec![CAP_SHIP.to_owned()];
    p.pump();
    assert!(!p.client.plan_offer(&own(&["j"]), true, now), "it has them");
    assert!(
        !p.client.plan_offer(&own(&["j", "mine"]), false, now),
        "init not called"
    );
    assert!(p.client.plan_offer(&own(&["j", "mine"]), true, now));
    assert!(p.client.offer_due(now));
}

#[test]
fn an_offer_waiting_for_the_program_hash_is_due_again_after_5_ms() {
    let mut p = Pair::new();
    p.node_caps = vec![CAP_SHIP.to_owned()];
    p.pump();
    let t0 = p.now;
    assert!(p.client.plan_offer(&own(&["mine"]), true, t0));
    p.client.offer_later(t0);
    assert!(!p.client.offer_due(t0 + 4 * MS));
    assert_eq!(
        p.client.poll_timeout(),
        Some(t0 + OFFER_POLL),
        "a timer for it"
    );
    assert!(p.client.offer_due(t0 + 5 * MS));
    p.client.drop_offer();
    assert!(!p.client.offer_due(t0 + 10 * MS));
}

#[test]
fn one_upload_runs_at_a_time_and_waits_while_four_chunks_are_unanswered() {
    let mut p = Pair::new();
    p.pump();
    let (a, b) = (ProgramId::of(b"a"), ProgramId::of(b"b"));
    assert!(!p.client.chunk_due(), "no upload asked for");
    p.node(NodeEvent::Offered {
        id: a,
        answer: OfferAnswer::Need,
    });
    p.node(NodeEvent::Offered {
        id: b,
        answer: OfferAnswer::Need,
    });
    let offered: Vec<ProgramId> = p
        .take_out()
        .iter()
        .filter_map(|x| match x {
            Action::Offered { id, .. } => Some(*id),
            _ => None,
        })
        .collect();
    assert_eq!(offered, vec![a], "one at a time: the second is not started");
    // The node reads nothing meanwhile: chunks stay unanswered.
    for k in 0..UPLOAD_WINDOW as u64 {
        assert!(p.client.chunk_due());
        assert!(p.client.chunk(a, k, vec![0; 1]));
    }
    assert!(!p.client.chunk_due(), "the stall limit");
    p.pump();
    assert!(p.client.chunk_due(), "its pongs came");
    p.client.upload_over();
    assert!(!p.client.chunk_due());
}
