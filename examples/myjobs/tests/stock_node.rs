//! The example against a stock node (the `ppserver` library with the
//! built-in jobs only, in this test's process): its own jobs run there.

use std::process::Command;

mod common;

#[test]
fn the_example_runs_its_own_jobs_on_a_stock_node() {
    let node = common::StockNode::start("myjobs");
    let out = Command::new(env!("CARGO_BIN_EXE_myjobs"))
        .arg(node.addr())
        .env("PP_SECRET", &node.key)
        .output()
        .unwrap();
    node.stop();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expected = (0..1_000_000u64)
        .filter(|n| {
            n.to_string()
                .bytes()
                .map(|b| u64::from(b - b'0'))
                .sum::<u64>()
                % 7
                == 0
        })
        .count();
    assert!(
        text.contains(&format!("lucky numbers below 1000000: {expected}")),
        "{text}"
    );
    // The greeting came from a program worker, not from the node's own
    // process (this test's).
    let pid = std::process::id();
    assert!(text.contains("hello myjobs, from process"), "{text}");
    assert!(!text.contains(&format!("from process {pid}\n")), "{text}");
}
