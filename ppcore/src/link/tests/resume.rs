//! A journaled client's run on the link (PROTOCOL.md, "Runs that outlive
//! their client"): `Resume` after `Limits`, up only once the node's
//! `Orphans` came (in parts), `Recorded` and `Reclaim` reach the node.

use super::*;
use crate::wire::run::{JobKey, RunId, KEYS_PER_MESSAGE};

const RUN: RunId = RunId([9; 32]);

fn journaled() -> Pair {
    let mut cfg = config();
    cfg.run = Some(RUN);
    Pair::with(cfg, keys(1))
}

fn key(n: u32) -> JobKey {
    let mut k = [0u8; 32];
    k[..4].copy_from_slice(&n.to_be_bytes());
    JobKey(k)
}

#[test]
fn a_journaled_client_names_its_run_and_is_up_with_every_orphan_the_node_holds() {
    let mut p = journaled();
    // More than one message's worth: the link waits for the last part.
    p.node_orphans = (0..KEYS_PER_MESSAGE as u32 + 5).map(key).collect();
    p.pump();
    assert_eq!(p.node_runs, vec![RUN]);
    let out = p.take_out();
    assert_eq!(p.client.state(), LinkState::Ready, "{out:?}");
    let ups: Vec<_> = out
        .iter()
        .filter_map(|a| match a {
            Action::Up(hello) => Some(hello),
            _ => None,
        })
        .collect();
    assert_eq!(ups.len(), 1, "{out:?}");
    assert_eq!(ups[0].orphans, p.node_orphans);
}

#[test]
fn a_client_without_a_journal_names_no_run_and_hears_no_orphans() {
    let mut p = Pair::new();
    p.node_orphans = vec![key(1)];
    p.pump();
    assert!(p.node_runs.is_empty());
    let out = p.take_out();
    assert!(
        matches!(out.first(), Some(Action::Up(h)) if h.orphans.is_empty()),
        "{out:?}"
    );
}

#[test]
fn recorded_results_and_reclaims_reach_the_node() {
    let mut p = journaled();
    p.pump();
    p.client.recorded(&[key(1), key(2)]);
    let mut reclaim = run(7, 1);
    reclaim.args = ByteBuf::new();
    reclaim.keep = Some(crate::wire::messages::KeepOp::Reclaim(key(3)));
    p.client.handle(Event::Submit(vec![(reclaim, 7)]), p.now);
    p.pump();
    assert_eq!(p.node_recorded, vec![key(1), key(2)]);
    assert_eq!(p.node_reclaims, vec![(7, key(3))]);
    // It holds a job's credit until the node answers it.
    assert_eq!(p.client.in_flight(), 1);
    p.answer(7, 1);
    assert_eq!(done(&p.take_out()), vec![7]);
}
