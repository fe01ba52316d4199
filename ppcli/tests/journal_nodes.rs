//! A run that survives its client (issue 30, part 2): `ppclient run
//! maclaurin --nodes ... --journal PATH`, killed (SIGKILL) halfway through
//! 640 tasks on two nodes, then run again with the same journal: the sum is
//! exact, every task is counted once as ran, from the journal or reclaimed
//! from the nodes, and no task ran twice on the nodes. A client with
//! another journal gets nothing of the killed run.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

// Links the built-in jobs into this test binary, so the nodes have them.
use jobs as _;

const TASKS: u64 = 640;
/// Enough work that a kill lands while tasks are queued on the nodes.
const TERMS: &str = "640000000";

static SECRET: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| ppcore::Key::generate().unwrap().to_text());

fn node() -> ppserver::Running {
    let config = ppserver::Config {
        port: 0,
        workers: 1,
        keys: Some(ppcore::KeySet::parse(&SECRET).unwrap()),
        ..Default::default()
    };
    ppserver::start(config, ppcore::Registry::linked().unwrap()).unwrap()
}

fn maclaurin(nodes: &str, journal: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ppclient"));
    cmd.args(["run", "maclaurin", "--ncpus", "0", "--nodes", nodes])
        .args(["--tasks", &TASKS.to_string(), "--terms", TERMS, "--json"])
        .args(["--journal", journal])
        .env("PP_SECRET", SECRET.as_str())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

fn json(out: std::process::Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Jobs the node has run since it started (`ppclient status --json`).
fn jobs_done(addr: &str) -> u64 {
    let out = Command::new(env!("CARGO_BIN_EXE_ppclient"))
        .args(["status", addr, "--json"])
        .env("PP_SECRET", SECRET.as_str())
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    v["jobs_done"].as_u64().unwrap_or(0)
}

/// A kill point between a tenth and three quarters of the run, different
/// each time.
fn kill_point() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::from(d.subsec_nanos()));
    TASKS / 10 + nanos % (TASKS * 3 / 4 - TASKS / 10)
}

/// Starts the run and SIGKILLs it once the nodes have run `at` jobs (or
/// it ended by itself first: then it is not killed). True if killed.
fn kill_when(mut child: Child, addrs: &[String], at: u64) -> bool {
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        if addrs.iter().map(|a| jobs_done(a)).sum::<u64>() >= at {
            child.kill().unwrap(); // SIGKILL: no goodbye, no last commit
            child.wait().unwrap();
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!("the run neither ended nor reached {at} jobs in 120 s");
}

fn temp_dir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("ppcli-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn a_run_killed_on_two_nodes_resumes_exactly_and_no_task_runs_twice() {
    let (a, b) = (node(), node());
    let addrs = [a.local_addr().to_string(), b.local_addr().to_string()];
    let nodes = addrs.join(",");
    let dir = temp_dir("journal-nodes");
    let journal = dir.join("run.journal");
    let journal = journal.to_str().unwrap();
    let at = kill_point();
    let child = maclaurin(&nodes, journal).spawn().unwrap();
    assert!(
        kill_when(child, &addrs, at),
        "the run ended before job {at}"
    );
    let again = json(maclaurin(&nodes, journal).output().unwrap());
    let counts = ["ran", "from_journal", "reclaimed"].map(|k| again[k].as_u64().unwrap());
    assert_eq!(
        counts.iter().sum::<u64>(),
        TASKS,
        "each task counted once: {again}"
    );
    assert!(
        counts[2] > 0,
        "tasks queued on the nodes are reclaimed: {again}"
    );
    let rel = again["relative_error"].as_f64().unwrap();
    assert!(rel < 1e-9, "the sum is exact: {again}");
    // Every task ran on a node exactly once, over both runs.
    let done: u64 = addrs.iter().map(|a| jobs_done(a)).sum();
    assert_eq!(done, TASKS, "no task ran twice (killed at {at}): {again}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_client_with_another_journal_gets_nothing_of_a_killed_run() {
    let (a, b) = (node(), node());
    let addrs = [a.local_addr().to_string(), b.local_addr().to_string()];
    let nodes = addrs.join(",");
    let dir = temp_dir("journal-other");
    let (killed, other) = (dir.join("killed.journal"), dir.join("other.journal"));
    let (killed, other) = (killed.to_str().unwrap(), other.to_str().unwrap());
    let child = maclaurin(&nodes, killed).spawn().unwrap();
    assert!(kill_when(child, &addrs, TASKS / 4), "the run ended first");
    // Same cluster key, same program, same tasks, another journal: all run.
    let stranger = json(maclaurin(&nodes, other).output().unwrap());
    assert_eq!(
        (stranger["ran"].as_u64(), stranger["reclaimed"].as_u64()),
        (Some(TASKS), Some(0)),
        "{stranger}"
    );
    // The killed run's own journal still finds its results on the nodes.
    let owner = json(maclaurin(&nodes, killed).output().unwrap());
    assert!(owner["reclaimed"].as_u64().unwrap() > 0, "{owner}");
    assert_eq!(owner["sum"], stranger["sum"]);
    let _ = std::fs::remove_dir_all(&dir);
}
