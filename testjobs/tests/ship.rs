//! Client programs with jobs of their own run them on a stock node by
//! shipping themselves (issue 13): `pp-ship` and `pp-ship-b` against
//! `pp-test-node`, which has only the built-in (and crashing test) jobs.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

/// The cluster's key, made for this test run.
static SECRET: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| ppcore::Key::generate().unwrap().to_text());

/// A node process with a private cache directory; both go when dropped.
struct Node {
    child: Child,
    addr: String,
    cache: PathBuf,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.cache);
    }
}

fn cache_dir(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("pp-ship-test-{}-{name}", std::process::id()))
}

fn node(name: &str, args: &[&str], env: &[(&str, &str)]) -> Node {
    let cache = cache_dir(name);
    let _ = std::fs::remove_dir_all(&cache);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pp-test-node"));
    cmd.args(["--interface", "127.0.0.1", "--log-level", "error"])
        .arg("--cache-dir")
        .arg(&cache)
        .args(args)
        .env("PP_SECRET", SECRET.as_str())
        .stdout(Stdio::piped());
    if !args.contains(&"--port") {
        cmd.args(["--port", "0"]);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let addr = support::ready_addr(&mut child);
    Node { child, addr, cache }
}

/// A node as a user starts it: default options (a loopback interface and
/// an ephemeral port, unless `args` give one, aside) but `args`, `HOME` at
/// `home`.
fn stock_node(home: &std::path::Path, args: &[&str]) -> Node {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pp-test-node"));
    cmd.args(["--interface", "127.0.0.1", "--log-level", "error"])
        .args(args)
        .env("PP_SECRET", SECRET.as_str())
        .env("HOME", home)
        .env_remove("XDG_CACHE_HOME")
        .stdout(Stdio::piped());
    if !args.contains(&"--port") {
        cmd.args(["--port", "0"]);
    }
    let mut child = cmd.spawn().unwrap();
    let addr = support::ready_addr(&mut child);
    Node {
        child,
        addr,
        cache: home.to_path_buf(),
    }
}

fn ship(bin: &str) -> Command {
    let mut cmd = Command::new(bin);
    cmd.env("PP_SECRET", SECRET.as_str())
        .env_remove("PP_SHIP_NO_INIT");
    cmd
}

const PP_SHIP: &str = env!("CARGO_BIN_EXE_pp-ship");
const PP_SHIP_B: &str = env!("CARGO_BIN_EXE_pp-ship-b");

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn status(node: &Node) -> ppclient::NodeStatus {
    ppclient::node_status(&node.addr, SECRET.as_str(), Duration::from_secs(5)).unwrap()
}

/// Asks the node's status until `f` holds, for at most 20 s; the last
/// status seen.
fn status_until(node: &Node, f: impl Fn(&ppclient::NodeStatus) -> bool) -> ppclient::NodeStatus {
    let mut last = status(node);
    let _held = pptest::eventually(Duration::from_secs(20), || {
        last = status(node);
        f(&last)
    });
    last
}

#[test]
fn a_program_is_uploaded_once_and_a_second_client_hits_the_cache() {
    let n = node("cache", &[], &[]);
    for _ in 0..2 {
        let out = ship(PP_SHIP).args(["run", &n.addr, "10"]).output().unwrap();
        assert!(out.status.success(), "{}", stdout(&out));
        assert_eq!(stdout(&out), "sum 135");
    }
    let s = status(&n);
    assert_eq!((s.programs_uploaded, s.programs_cached), (1, 1), "{s:?}");
    // The cache holds one file, named by the program's hash, private.
    let files: Vec<_> = std::fs::read_dir(&n.cache).unwrap().flatten().collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let name = files[0].file_name().to_string_lossy().into_owned();
    assert_eq!(name.len(), 64 + ".bin".len(), "{name}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&n.cache).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700);
}

#[test]
fn a_node_with_no_upload_refuses_naming_itself_and_the_reason() {
    let n = node("noupload", &["--no-upload"], &[]);
    let out = ship(PP_SHIP).args(["run", &n.addr, "3"]).output().unwrap();
    assert!(!out.status.success());
    let text = stdout(&out);
    assert!(text.contains(&n.addr), "{text}");
    assert!(text.contains("--no-upload"), "{text}");
    assert_eq!(status(&n).programs_uploaded, 0);
}

#[test]
fn two_programs_run_on_one_node_at_once() {
    let n = node("two", &["--workers", "2"], &[]);
    let a = ship(PP_SHIP)
        .args(["run", &n.addr, "200"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let b = ship(PP_SHIP_B)
        .args([&n.addr, "200"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert_eq!(stdout(&a), format!("sum {}", 3 * 199 * 200 / 2));
    assert_eq!(stdout(&b), format!("sum {}", 199 * 200 * 399 / 6));
    assert_eq!(status(&n).programs_uploaded, 2);
}

#[test]
fn a_crashing_program_worker_costs_only_its_job() {
    let n = node("crash", &["--workers", "1"], &[]);
    let out = ship(PP_SHIP).args(["crash", &n.addr]).output().unwrap();
    assert!(out.status.success(), "{}", stdout(&out));
    assert_eq!(stdout(&out), "abort: worker crashed; triple: 6");
    // Built-in jobs still run in the node's own process, untouched.
    let server = ppclient::Server::builder()
        .ncpus(0)
        .secret(SECRET.as_str())
        .nodes([n.addr.clone()])
        .build()
        .unwrap();
    assert_eq!(server.submit(jobs::sum_primes, (100,)).wait(), Ok(1060));
}

#[test]
fn a_crash_among_many_jobs_costs_only_that_job() {
    // Many queued jobs travel to program workers in batches: the crash
    // fails its own job; the batch's others run again elsewhere or later.
    let n = node("mixed", &["--workers", "2"], &[]);
    let out = ship(PP_SHIP).args(["mixed", &n.addr]).output().unwrap();
    assert!(out.status.success(), "{}", stdout(&out));
    assert_eq!(
        stdout(&out),
        format!("sum {}; abort: worker crashed", 3 * 199 * 200 / 2)
    );
}

#[test]
fn idle_program_workers_end() {
    let n = node("idle", &["--program-idle", "0.1"], &[]);
    let out = ship(PP_SHIP).args(["run", &n.addr, "4"]).output().unwrap();
    assert!(out.status.success(), "{}", stdout(&out));
    let s = status_until(&n, |s| s.program_workers == 0);
    assert_eq!(s.program_workers, 0, "{s:?}");
}

#[test]
fn a_restarted_node_gets_the_program_again() {
    let first = node("restart-1", &[], &[]);
    let mut client = ship(PP_SHIP)
        .args(["twice", &first.addr])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(client.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "first 3");
    let port = first.addr.rsplit(':').next().unwrap().to_owned();
    drop(first); // killed, its cache removed
    let second = node("restart-2", &["--port", &port], &[]);
    writeln!(client.stdin.take().unwrap()).unwrap();
    assert_eq!(lines.next().unwrap().unwrap(), "second 6");
    assert!(client.wait().unwrap().success());
    assert_eq!(status(&second).programs_uploaded, 1);
}

#[test]
fn a_client_without_init_offers_nothing_and_its_jobs_name_the_fix() {
    let n = node("noinit", &[], &[]);
    let out = ship(PP_SHIP)
        .args(["run", &n.addr, "3"])
        .env("PP_SHIP_NO_INIT", "1")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stdout(&out).contains("call ppclient::init() first in main"),
        "{}",
        stdout(&out)
    );
    assert_eq!(status(&n).programs_cached + status(&n).programs_uploaded, 0);
}

#[test]
fn a_program_that_forgets_init_is_refused_with_the_fix() {
    // Started as a worker, the program goes on to build a Server: it exits
    // with the message naming the fix.
    let out = ship(PP_SHIP)
        .env(ppcore::worker::WORKER_ENV, ppcore::worker::PROGRAM_WORKER)
        .env("PP_SHIP_NO_INIT", "1")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(ppcore::worker::NOT_INITIALIZED_EXIT)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("call ppclient::init() first in main"), "{err}");
    // A node whose workers of the program skip init (its environment says
    // so) reports that to the client as the refusal.
    let n = node("forgets", &[], &[("PP_SHIP_NO_INIT", "1")]);
    let out = ship(PP_SHIP).args(["run", &n.addr, "3"]).output().unwrap();
    assert!(!out.status.success());
    let text = stdout(&out);
    assert!(text.contains("refused this program"), "{text}");
    assert!(
        text.contains("call ppclient::init() first in main"),
        "{text}"
    );
}

#[test]
fn a_node_killed_during_an_upload_costs_no_job() {
    let first = node("upload-kill-1", &[], &[]);
    let port = first.addr.rsplit(':').next().unwrap().to_owned();
    let client = ship(PP_SHIP)
        .args(["run", &first.addr, "50"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // The upload has begun once its partial file is in the cache.
    let uploading = || {
        std::fs::read_dir(&first.cache).is_ok_and(|d| {
            d.flatten()
                .any(|e| e.file_name().to_string_lossy().ends_with(".part"))
        })
    };
    assert!(
        pptest::eventually(Duration::from_secs(60), uploading),
        "the upload never began"
    );
    drop(first); // killed mid-upload, its cache gone
    let second = node("upload-kill-2", &["--port", &port], &[]);
    let out = client.wait_with_output().unwrap();
    assert_eq!(stdout(&out), format!("sum {}", 3 * 49 * 50 / 2));
    assert_eq!(status(&second).programs_uploaded, 1);
}

#[test]
fn a_client_that_goes_away_takes_its_running_program_job_with_it() {
    let n = node("hold", &["--workers", "1"], &[]);
    let path = support::pid_file("ship-hold");
    let mut held = ship(PP_SHIP)
        .args(["hold", &n.addr, &path.display().to_string()])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let (worker, child) = support::pids_in(&path);
    let _reap = support::Reap(vec![worker, child]);
    let _ = held.kill(); // the connection closes with the job running
    let _ = held.wait();
    assert!(
        support::all_gone(&[worker, child]),
        "the program's worker outlived its client"
    );
    // The node's one worker is free for the next client.
    let out = ship(PP_SHIP).args(["run", &n.addr, "3"]).output().unwrap();
    assert_eq!(stdout(&out), "sum 9");
}

#[test]
fn a_shared_value_reaches_program_workers_once_and_is_decoded_once_in_each() {
    let n = node("shared", &["--workers", "2"], &[]);
    let out = ship(PP_SHIP)
        .args(["shared", &n.addr, "200"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stdout(&out));
    let text = stdout(&out);
    // 0 + 1 + ... + 19999.
    assert!(text.starts_with("sum 199990000; "), "{text}");
    let field = |name: &str| -> u64 {
        let at = text
            .find(name)
            .unwrap_or_else(|| panic!("{name} in {text}"));
        text[at + name.len()..]
            .trim_start()
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .and_then(|d| d.parse().ok())
            .unwrap_or_else(|| panic!("{name} in {text}"))
    };
    let (processes, values, sent) = (field("processes"), field("values"), field("sent"));
    assert!((1..=2).contains(&processes), "{text}");
    assert_eq!(
        values, processes,
        "one decoded value per worker process: {text}"
    );
    assert_eq!(sent, 1, "sent to the node once: {text}");
    let s = status(&n);
    assert_eq!(s.shared_received, 1, "{s:?}");
}

#[test]
fn a_shipped_programs_kept_results_stay_on_the_stock_node_and_chain_there() {
    let n = node("kept", &["--workers", "1"], &[]);
    let out = ship(PP_SHIP)
        .args(["kept", &n.addr, "30"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stdout(&out));
    let text = stdout(&out);
    // 3 + (0 + 1 + ... + 29) = 438; 3 * (0 + 1 + 2 + 3) = 18.
    assert!(text.starts_with("chain 438; total 18; "), "{text}");
    // 31 chain links, 4 parts and 2 pairs kept on the node.
    assert!(text.contains("kept 37;"), "{text}");
}

#[test]
fn two_stock_nodes_on_one_host_both_run_a_shipped_program_from_the_first_run() {
    // Issue 25's "done when": ten cold runs (no program cached anywhere),
    // two nodes with default options on one machine, both used each time.
    for run in 0..10 {
        let home = cache_dir(&format!("home-{run}"));
        let _ = std::fs::remove_dir_all(&home);
        std::fs::create_dir_all(&home).unwrap();
        let (a, b) = (stock_node(&home, &[]), stock_node(&home, &[]));
        let both = format!("{},{}", a.addr, b.addr);
        let out = ship(PP_SHIP).args(["spread", &both]).output().unwrap();
        let text = stdout(&out);
        assert!(out.status.success(), "run {run}: {text}");
        assert!(text.contains("nodes used 2 of 2"), "run {run}: {text}");
        assert!(!text.contains("unused"), "run {run}: {text}");
        // Each node kept the program in a directory of its own.
        let programs = home.join(".cache/ppserver/programs");
        let dirs = std::fs::read_dir(&programs).unwrap().flatten().count();
        assert_eq!(dirs, 2, "run {run}: one cache per node under {programs:?}");
        assert_eq!(status(&a).programs_uploaded, 1, "run {run}");
        assert_eq!(status(&b).programs_uploaded, 1, "run {run}");
    }
}

#[test]
fn two_nodes_sharing_one_cache_directory_on_purpose_both_run_the_program() {
    let home = cache_dir("shared-home");
    let shared = home.join("programs");
    let _ = std::fs::remove_dir_all(&home);
    let dir = shared.to_string_lossy().into_owned();
    let a = stock_node(&home, &["--cache-dir", &dir]);
    let b = stock_node(&home, &["--cache-dir", &dir]);
    let both = format!("{},{}", a.addr, b.addr);
    let out = ship(PP_SHIP).args(["spread", &both]).output().unwrap();
    let text = stdout(&out);
    assert!(text.contains("nodes used 2 of 2"), "{text}");
    // One program file, and no temporary file left behind.
    let names: Vec<String> = std::fs::read_dir(&shared)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    assert!(names[0].ends_with(".bin"), "{names:?}");
}

#[test]
fn a_node_that_refuses_the_program_says_why_in_nodes_stats_and_once_on_stderr() {
    let good = node("why-good", &[], &[]);
    let refusing = node("why-refusing", &["--no-upload"], &[]);
    let both = format!("{},{}", good.addr, refusing.addr);
    let out = ship(PP_SHIP).args(["spread", &both]).output().unwrap();
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("nodes used 1 of 2"), "{text}");
    // In nodes(): the reason field of the refusing node.
    let why = format!("unused {}: refused this program: ", refusing.addr);
    assert!(text.contains(&why), "{text}");
    assert!(text.contains("--no-upload"), "{text}");
    // In print_stats: beside the node's row.
    let row = text
        .lines()
        .find(|l| l.ends_with(")") && l.contains(&format!("| {} (", refusing.addr)))
        .unwrap_or_else(|| panic!("no reason beside the row: {text}"));
    assert!(row.contains("refused this program"), "{row}");
    // On stderr, once.
    let err = String::from_utf8_lossy(&out.stderr);
    let said = format!("node {} refused this program", refusing.addr);
    assert_eq!(err.matches(&said).count(), 1, "{err}");
    // And in the node's own status.
    let refused = status(&refusing).program_refused.unwrap_or_default();
    assert!(refused.contains("--no-upload"), "{refused}");
}

#[test]
fn a_stock_node_restarted_on_its_port_keeps_its_programs() {
    let home = cache_dir("restart-home");
    let _ = std::fs::remove_dir_all(&home);
    std::fs::create_dir_all(&home).unwrap();
    // A port nobody listens on now.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port()
        .to_string();
    let first = stock_node(&home, &["--port", &port]);
    let out = ship(PP_SHIP)
        .args(["run", &first.addr, "3"])
        .output()
        .unwrap();
    assert_eq!(stdout(&out), "sum 9");
    assert_eq!(status(&first).programs_uploaded, 1);
    let mut first = first;
    let _ = first.child.kill();
    let _ = first.child.wait();
    let again = stock_node(&home, &["--port", &port]);
    let out = ship(PP_SHIP)
        .args(["run", &again.addr, "3"])
        .output()
        .unwrap();
    assert_eq!(stdout(&out), "sum 9");
    let s = status(&again);
    assert_eq!((s.programs_uploaded, s.programs_cached), (0, 1), "{s:?}");
    assert!(s.program_cache.ends_with(&format!("port-{port}")), "{s:?}");
    drop(first);
}
