//! Worker processes never leak a slot: not through a job's output, a job's
//! children, a cancel, a client that goes away, or a node that dies.

mod support;

use ppclient::{ErrorKind, Options};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use support::{client, node, WAIT};

/// Longer than [`WAIT`]: a test that passes cannot have waited for it.
const HOLD_SECS: u64 = 300;

/// A fresh path for a job to write its pids to.
fn pid_file(test: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("{test}-{}.pids", std::process::id()));
    let _ = std::fs::remove_file(&path);
    path
}

/// Waits (bounded by [`WAIT`]) for a job to write "worker child" to `path`.
fn pids_in(path: &PathBuf) -> (u32, u32) {
    let until = Instant::now() + WAIT;
    while Instant::now() < until {
        if let Ok(text) = std::fs::read_to_string(path) {
            let pids: Vec<u32> = text.split(' ').filter_map(|p| p.parse().ok()).collect();
            if let [worker, child] = pids[..] {
                return (worker, child);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("no pids in {} after {WAIT:?}", path.display())
}

/// Whether process `pid` is gone (or a zombie nobody reaped yet).
fn gone(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |stat| {
        // The state follows the command, which is in parentheses.
        stat.rsplit(')')
            .next()
            .map(str::trim_start)
            .is_some_and(|rest| rest.starts_with('Z'))
    })
}

/// Waits (bounded by [`WAIT`]) until every process in `pids` is gone.
fn all_gone(pids: &[u32]) -> bool {
    let until = Instant::now() + WAIT;
    while Instant::now() < until {
        if pids.iter().all(|&p| gone(p)) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Kills what a failed test may have left behind.
struct Reap(Vec<u32>);

impl Drop for Reap {
    fn drop(&mut self) {
        for pid in &self.0 {
            if !gone(*pid) {
                let _ = std::process::Command::new("kill")
                    .args(["-9", &pid.to_string()])
                    .status();
            }
        }
    }
}

#[test]
fn job_printing_to_stdout_and_stderr_keeps_its_slot_and_its_result() {
    let n = node("1");
    let server = client(&n);
    for k in 0..3 {
        let got = server
            .submit(testjobs::print_to_stdio, (k,))
            .wait_timeout(WAIT);
        assert_eq!(got.unwrap(), Ok(k + 1));
    }
    assert_eq!(
        server
            .submit(jobs::echo_u64, (7,))
            .wait_timeout(WAIT)
            .unwrap(),
        Ok(7)
    );
}

#[test]
fn worker_inherits_no_descriptor_the_node_opened() {
    let n = node("1");
    let server = client(&n);
    // A few connections open on the node while the worker starts.
    let others: Vec<_> = (0..3).map(|_| client(&n)).collect();
    let fds = server
        .submit(testjobs::inheritable_descriptors, ())
        .wait_timeout(WAIT)
        .unwrap()
        .unwrap();
    // What this test was given (stdio, and whatever its own parent leaked
    // to it) the node and its workers are given too; nothing more.
    assert_eq!(fds, testjobs::inheritable_fds());
    assert!(fds.starts_with(&[0, 1, 2]), "{fds:?}");
    drop(others);
}

#[test]
fn worker_dying_with_a_child_on_its_output_frees_the_slot_and_the_child() {
    let n = node("1");
    let server = client(&n);
    let path = pid_file("abort-child");
    let opts = Options::new().crash_retries(1);
    let handle = server.submit_with(
        testjobs::abort_leaving_child,
        (path.display().to_string(), HOLD_SECS),
        opts,
    );
    let (worker, child) = pids_in(&path);
    let _reap = Reap(vec![worker, child]);
    let err = handle.wait_timeout(WAIT).unwrap().unwrap_err();
    assert_eq!(err.kind, ErrorKind::Crashed);
    assert!(err.message.contains("SIGABRT"), "{err}");
    assert!(all_gone(&[worker, child]), "the worker's group outlived it");
    let next = server.submit(jobs::echo_u64, (8,)).wait_timeout(WAIT);
    assert_eq!(next.unwrap(), Ok(8));
}

#[test]
fn cancel_kills_the_jobs_whole_process_group() {
    let n = node("1");
    let server = client(&n);
    let path = pid_file("cancel-group");
    let handle = server.submit(
        testjobs::hold_with_child,
        (path.display().to_string(), HOLD_SECS),
    );
    let (worker, child) = pids_in(&path);
    let _reap = Reap(vec![worker, child]);
    handle.cancel();
    let err = handle.wait_timeout(WAIT).unwrap().unwrap_err();
    assert_eq!(err.kind, ErrorKind::Cancelled);
    assert!(all_gone(&[worker, child]), "cancel left the group alive");
    // One worker: this runs only because the slot came back.
    let next = server.submit(jobs::echo_u64, (9,)).wait_timeout(WAIT);
    assert_eq!(next.unwrap(), Ok(9));
}

#[test]
fn client_disconnect_kills_its_running_job_and_frees_the_slot() {
    let n = node("1");
    let first = client(&n);
    let path = pid_file("disconnect");
    let _held = first.submit(
        testjobs::hold_with_child,
        (path.display().to_string(), HOLD_SECS),
    );
    let (worker, child) = pids_in(&path);
    let _reap = Reap(vec![worker, child]);
    drop(first);
    // A second client's job runs on the node's one worker.
    let second = client(&n);
    let got = second.submit(jobs::echo_u64, (10,)).wait_timeout(WAIT);
    assert_eq!(got.unwrap(), Ok(10));
    assert!(all_gone(&[worker, child]), "the job outlived its client");
}

#[test]
fn workers_die_with_their_node() {
    let n = node("2");
    let server = client(&n);
    let path = pid_file("node-killed");
    let _held = server.submit(
        testjobs::hold_with_child,
        (path.display().to_string(), HOLD_SECS),
    );
    let (worker, child) = pids_in(&path);
    // The job's own child is not the node's: only its worker must go.
    let _reap = Reap(vec![worker, child]);
    drop(n); // SIGKILL: the node cleans up nothing itself
    assert!(all_gone(&[worker]), "worker {worker} outlived its node");
}
