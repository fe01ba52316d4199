//! The `ppclient` command against a node started in this process.

use std::process::Command;

// Links the built-in jobs into this test binary, so the node has them.
use jobs as _;

static SECRET: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| ppcore::Key::generate().unwrap().to_text());

fn node() -> ppserver::Running {
    let config = ppserver::Config {
        port: 0,
        workers: 2,
        keys: Some(ppcore::KeySet::parse(&SECRET).unwrap()),
        ..Default::default()
    };
    ppserver::start(config, ppcore::Registry::linked().unwrap()).unwrap()
}

fn ppclient(args: &[&str], secret: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ppclient"))
        .args(args)
        .env("PP_SECRET", secret)
        .output()
        .unwrap()
}

#[test]
fn status_prints_version_workers_jobs_and_counters() {
    let node = node();
    let addr = node.local_addr().to_string();
    let out = ppclient(&["status", &addr], SECRET.as_str());
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for want in [
        "version     0.1.0",
        "workers     2",
        "jobs::maclaurin",
        "uptime",
        "jobs done   0 (0 failed), 0 active",
        "programs    0 uploaded, 0 cached, 0 workers, 0 waiting; cache ",
        "transfers   0 in (0 bytes), 0 out (0 bytes), node to node",
    ] {
        assert!(text.contains(want), "{want:?} not in:\n{text}");
    }
    let out = ppclient(&["status", &addr, "--json"], SECRET.as_str());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["workers"], 2);
    assert_eq!(v["programs_waiting"], 0);
    assert_eq!(
        (v["transfers_in"].as_u64(), v["transfer_out_bytes"].as_u64()),
        (Some(0), Some(0))
    );
    assert!(v["program_refused"].is_null(), "{v}");
}

#[test]
fn status_shows_the_nodes_offer_resources_and_tags() {
    let mut offer = ppcore::resources::Offer::new(0);
    offer.add_list("gpu=2,licence=4").unwrap();
    offer.add_tag("ssd").unwrap();
    offer.set_memory(Some(1 << 30));
    let config = ppserver::Config {
        port: 0,
        workers: 3,
        keys: Some(ppcore::KeySet::parse(&SECRET).unwrap()),
        offer,
        ..Default::default()
    };
    let node = ppserver::start(config, ppcore::Registry::linked().unwrap()).unwrap();
    let addr = node.local_addr().to_string();
    let out = ppclient(&["status", &addr], SECRET.as_str());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("offer       cpus=3 memory=1.0 GiB gpu=2 licence=4 tags=ssd"),
        "{text}"
    );
    assert!(text.contains("in use      cpus=0"), "{text}");
    let out = ppclient(&["status", &addr, "--json"], SECRET.as_str());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["resources"]["gpu"]["offered"], 2, "{v}");
    assert_eq!(v["resources"]["licence"]["in_use"], 0.0, "{v}");
    assert_eq!(v["tags"], serde_json::json!(["ssd"]), "{v}");
    assert_eq!(v["memory"], 1u64 << 30, "{v}");
}

#[test]
fn run_maclaurin_prints_the_sum_and_the_stats_table() {
    let node = node();
    let addr = node.local_addr().to_string();
    let out = ppclient(
        &[
            "run",
            "maclaurin",
            "--nodes",
            &addr,
            "--ncpus",
            "0",
            "--terms",
            "1000000",
            "--json",
        ],
        SECRET.as_str(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let (sum, exact) = (v["sum"].as_f64().unwrap(), v["exact"].as_f64().unwrap());
    assert!(((sum - exact) / exact).abs() < 1e-9);
    assert!(v["seconds"].as_f64().unwrap() > 0.0);
    assert_eq!(v["nodes"][1]["node"], addr);
    assert_eq!(v["nodes"][1]["jobs"], 64);
    let out = ppclient(
        &["run", "maclaurin", "--nodes", &addr, "--terms", "100000"],
        SECRET.as_str(),
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("job count | % of all jobs"), "{text}");
    assert!(text.contains(&addr), "{text}");
}

#[test]
fn wrong_key_is_one_clear_line_and_a_failure_exit() {
    let node = node();
    let addr = node.local_addr().to_string();
    let other = ppcore::Key::generate().unwrap().to_text();
    let out = ppclient(
        &["run", "maclaurin", "--nodes", &addr, "--ncpus", "0"],
        &other,
    );
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(&addr) && err.contains("wrong key"), "{err}");
    let out = ppclient(&["status", &addr], &other);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains(&addr) && err.contains("wrong key"), "{err}");
    // A value that is not a generated key never reaches the network.
    let out = ppclient(&["status", &addr], "hunter2");
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("ppclient secret new FILE"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
}

/// Numbers that used to panic or start a billion threads are usage errors
/// that name the option, before anything connects.
#[test]
fn absurd_numbers_are_usage_errors_not_panics() {
    for args in [
        &["status", "127.0.0.1:1", "--timeout=-1"][..],
        &["status", "127.0.0.1:1", "--timeout", "nan"],
        &["status", "127.0.0.1:1", "--timeout", "inf"],
        &["status", "127.0.0.1:1", "--timeout", "1e300"],
        &["run", "maclaurin", "--ncpus", "1000000000"],
    ] {
        let out = ppclient(args, &SECRET);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("out of range"), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}
