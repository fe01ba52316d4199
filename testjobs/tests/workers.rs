//! Worker processes never leak a slot: not through a job's output, a job's
//! children, a cancel, a client that goes away, or a node that dies.

mod support;

use ppclient::{ErrorKind, Options};
use support::{all_gone, client, node, pid_file, pids_in, Reap, HOLD_SECS, WAIT};

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

#[test]
fn a_payload_larger_than_a_frame_goes_through_a_worker_process_exact() {
    // 64 MiB each way: over the 16 MiB of one frame, so it crosses the
    // node's link as a stream and the worker's pipes as one large frame.
    let n = node("1");
    let server = client(&n);
    let bytes: Vec<u8> = (0..64usize << 20).map(|i| (i * 7 % 253) as u8).collect();
    let back = server
        .submit(jobs::echo_bytes, (ppclient::ByteBuf::from(bytes.clone()),))
        .wait_timeout(WAIT)
        .expect("answered in time");
    assert!(
        back.as_ref()
            .is_ok_and(|b| b.as_slice() == bytes.as_slice()),
        "{:?}",
        back.err()
    );
    // The worker still serves small jobs afterwards.
    assert_eq!(
        server
            .submit(jobs::echo_u64, (9,))
            .wait_timeout(WAIT)
            .unwrap(),
        Ok(9)
    );
}
