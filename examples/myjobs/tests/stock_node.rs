//! The example against a stock node (the `ppserver` library with the
//! built-in jobs only, in this test's process): its own jobs run there.

use std::process::Command;

#[test]
fn the_example_runs_its_own_jobs_on_a_stock_node() {
    let cache = std::env::temp_dir().join(format!("pp-myjobs-test-{}", std::process::id()));
    let key = ppclient::Key::generate().unwrap().to_text();
    let config = ppserver::Config {
        port: 0,
        workers: 2,
        keys: Some(ppclient::KeySet::parse(&key).unwrap()),
        cache_dir: Some(cache.clone()),
        ..ppserver::Config::default()
    };
    use jobs as _; // the built-in jobs, as the stock node has them
    let node = ppserver::start(config, ppclient::Registry::linked().unwrap()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_myjobs"))
        .arg(node.local_addr().to_string())
        .env("PP_SECRET", &key)
        .output()
        .unwrap();
    node.stop();
    let _ = std::fs::remove_dir_all(&cache);
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
