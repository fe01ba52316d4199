//! Kept results on node processes (issue 28): a holder killed with SIGKILL
//! after its maps ended is made up for by running them again (lineage),
//! and the answer is exact; kept results work the same in process
//! isolation.

mod support;

use ppclient::{Options, Server};
use support::{node, SECRET, WAIT};
use testjobs::{plus_one, range_sum, sum4};

fn client(nodes: &[&support::Node]) -> Server {
    let server = Server::builder()
        .ncpus(0)
        .secret(SECRET.as_str())
        .nodes(nodes.iter().map(|n| n.1.clone()))
        .build()
        .unwrap();
    assert_eq!(
        server.active_nodes().len(),
        nodes.len(),
        "{:?}",
        server.nodes()
    );
    server
}

#[test]
fn a_chain_of_kept_results_runs_in_process_isolation() {
    let n = node("1");
    let server = client(&[&n]);
    let mut last = server.submit_with(range_sum, (0, 10), Options::new().keep());
    for _ in 0..20 {
        let next = server.submit_with(plus_one, (last.keep().unwrap(),), Options::new().keep());
        last = next;
    }
    assert_eq!(last.wait().unwrap(), 45 + 20);
}

#[test]
fn a_holder_killed_after_its_maps_is_recomputed_and_the_answer_is_exact() {
    let (a, mut b) = (node("1"), node("1"));
    let server = client(&[&a, &b]);
    let keep = Options::new().keep();
    let maps: Vec<_> = (0..16u64)
        .map(|i| server.submit_with(range_sum, (i * 1000, (i + 1) * 1000), &keep))
        .collect();
    server.wait_all().unwrap();
    assert!(maps.iter().all(|m| m.is_finished()));
    let on_b = server
        .stats()
        .nodes
        .iter()
        .find(|s| s.node == b.1)
        .map_or(0, |s| s.kept);
    assert!(on_b > 0, "both nodes keep maps: {:?}", server.stats());
    // SIGKILL: the maps b kept are gone with it.
    b.0.kill().unwrap();
    b.0.wait().unwrap();
    let reduces: Vec<_> = maps
        .chunks(4)
        .map(|m| {
            let k = |i: usize| m[i].keep().unwrap();
            server.submit_with(sum4, (k(0), k(1), k(2), k(3)), &keep)
        })
        .collect();
    let k = |i: usize| reduces[i].keep().unwrap();
    let total = server.submit(sum4, (k(0), k(1), k(2), k(3)));
    let got = total
        .wait_timeout(WAIT)
        .expect("the final job ends")
        .unwrap();
    assert_eq!(got, (0..16_000u64).sum::<u64>());
    let recomputed: u64 = server.stats().nodes.iter().map(|s| s.recomputed).sum();
    assert!(
        recomputed >= 1 && recomputed <= on_b,
        "recomputed {recomputed} of {on_b} lost"
    );
}
