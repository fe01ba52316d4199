//! Clients that submit jobs with big results and never read them (issue 10):
//! results wait in the node's per-connection writer, never in a worker, so
//! other clients keep being served, and SIGTERM still ends the node within
//! its grace although those sockets never take another byte.

mod common;

use common::{authenticated_on, connect_from, still_serves, Node, Session};
use ppcore::wire::{ClientMsg, RunJob};
use serde_bytes::ByteBuf;
use std::time::Duration;

const MIB: usize = 1 << 20;

/// Submits `n` jobs whose results are 1 MiB each, and never reads.
fn submit_big_results(s: &mut Session, n: u64) {
    let echo = <jobs::echo_bytes as ppcore::Job>::NAME;
    for id in 1..=n {
        let args = ppcore::encode(&(ByteBuf::from(vec![id as u8; MIB]),)).unwrap();
        assert!(s.send(&ClientMsg::Run(vec![RunJob {
            id,
            attempt: 1,
            name: echo.into(),
            args: ByteBuf::from(args),
            program: None,
            shared: Vec::new(),
            keep: None,
            journal: None,
            request: None,
        }])));
    }
}

#[test]
fn two_clients_that_never_read_starve_nobody_and_sigterm_ends_within_grace() {
    // The write timeout is longer than the whole test: only the grace can
    // end the node in time.
    let mut node = Node::start(&["--workers", "2", "--grace", "2", "--write-timeout", "120"]);
    let mut stuck: Vec<Session> = [[127, 0, 0, 2], [127, 0, 0, 3]]
        .into_iter()
        .map(|from| authenticated_on(connect_from(&node, from)))
        .collect();
    for s in &mut stuck {
        submit_big_results(s, 24);
    }
    // Far more result bytes than the sockets' buffers take have been
    // produced: both stuck clients' writers are full.
    node.wait_lines("job ended", 2 * 12);

    still_serves(&node, 40);

    node.signal("TERM");
    // Grace 2 s; the bound leaves room for a loaded machine, far below the
    // write timeout.
    assert_eq!(
        node.wait_exit(Duration::from_secs(30)),
        Some(0),
        "the node did not exit cleanly on SIGTERM while clients never read"
    );
    drop(stuck);
}
