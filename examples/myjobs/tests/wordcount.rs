//! The word-count example on a stock node (the `ppserver` library with the
//! built-in jobs only, in this test's process) and on the local pool: the
//! same table either way, and on the node the merges ran where their kept
//! inputs lay.

use std::process::{Command, Output};

mod common;

fn run(args: &[String], key: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wordcount"))
        .args(args)
        .env("PP_SECRET", key)
        .output()
        .expect("the example starts")
}

fn text(out: &Output) -> (String, String) {
    let (stdout, stderr) = (&out.stdout, &out.stderr);
    let stdout = String::from_utf8_lossy(stdout).into_owned();
    let stderr = String::from_utf8_lossy(stderr).into_owned();
    assert!(out.status.success(), "{stdout} {stderr}");
    (stdout, stderr)
}

#[test]
fn the_word_count_gives_the_same_table_on_a_stock_node_and_locally() {
    let node = common::StockNode::start("wordcount");
    let key = node.key.clone();
    let remote = run(&[node.addr()], &key);
    node.stop();
    let (on_node, log) = text(&remote);
    let (local, _) = text(&run(&[], &key));
    assert!(
        on_node.starts_with("words: 3200000, distinct: "),
        "{on_node}"
    );
    assert_eq!(
        on_node, local,
        "the node's table and the local pool's differ"
    );
    let chained: u64 = log
        .lines()
        .find_map(|l| l.strip_prefix("merges started where their inputs lay: "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no count of chained merges: {log}"));
    assert!(
        chained >= 1,
        "no merge started on the node holding its inputs: {log}"
    );
}
