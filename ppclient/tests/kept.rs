//! Kept results (issue 28): a job's result kept where it was made and
//! passed to other jobs as a `Shared<T>`; dependents held until their
//! inputs are ready; errors and cancels flowing along the edges. These run
//! on the local pool; `kept_nodes.rs` runs them on nodes.

use ppclient::{ErrorKind, Options, Server, Shared};
use std::time::Duration;

ppclient::job! {
    /// `x + 1`, after `ms` milliseconds.
    pub fn step(x: Shared<u64>, ms: u64) -> u64 {
        std::thread::sleep(Duration::from_millis(ms));
        *x + 1
    }
}

ppclient::job! {
    /// The first link of a chain.
    pub fn start(x: u64) -> u64 { x }
}

ppclient::job! {
    /// The sum of `from..to`.
    pub fn part(from: u64, to: u64) -> u64 { (from..to).sum() }
}

ppclient::job! {
    /// The sum of two partial sums.
    pub fn add(a: Shared<u64>, b: Shared<u64>) -> u64 { *a + *b }
}

ppclient::job! {
    #[fallible]
    /// Fails when `x` is odd.
    pub fn even_only(x: u64) -> Result<u64, String> {
        match x % 2 {
            0 => Ok(x),
            _ => Err(format!("{x} is odd")),
        }
    }
}

fn local(n: usize) -> Server {
    Server::builder().ncpus(n).build().unwrap()
}

fn keep() -> Options {
    Options::new().keep()
}

#[test]
fn a_chain_of_kept_results_on_the_local_pool_ends_exact() {
    let server = local(2);
    let first = server.submit_with(start, (5,), keep());
    let mut last = first;
    for _ in 0..200 {
        let next = server.submit_with(step, (last.keep().unwrap(), 0), keep());
        last = next;
    }
    assert_eq!(last.wait().unwrap(), 205);
}

#[test]
fn a_tree_of_partial_sums_adds_up_without_the_client_touching_the_parts() {
    let server = local(2);
    // 16 parts of 0..16000, added pairwise up to one.
    let mut level: Vec<_> = (0..16u64)
        .map(|i| server.submit_with(part, (i * 1000, (i + 1) * 1000), keep()))
        .collect();
    while level.len() > 1 {
        level = level
            .chunks(2)
            .map(|pair| {
                let (a, b) = (pair[0].keep().unwrap(), pair[1].keep().unwrap());
                server.submit_with(add, (a, b), keep())
            })
            .collect();
    }
    let total = level.pop().unwrap().wait().unwrap();
    assert_eq!(total, (0..16000u64).sum::<u64>());
}

#[test]
fn a_failed_input_fails_its_dependents_naming_the_input_job() {
    let server = local(1);
    let bad = server.submit_with(even_only, (3,), keep());
    let bad_id = bad.id();
    let dependent = server.submit(step, (bad.keep().unwrap(), 0));
    let second = server.submit(step, (bad.keep().unwrap(), 0));
    let err = dependent.wait().unwrap_err();
    assert_eq!(err.kind, ErrorKind::Dependency, "{err}");
    assert!(
        err.message.contains(&format!("input job {bad_id} (")),
        "{err}"
    );
    assert!(err.message.contains("even_only"), "{err}");
    assert!(err.message.contains("3 is odd"), "{err}");
    assert_eq!(second.wait().unwrap_err().kind, ErrorKind::Dependency);
    // The input's own handle gives its own error.
    assert_eq!(bad.wait().unwrap_err().kind, ErrorKind::Failed);
}

#[test]
fn a_cancelled_input_cancels_its_dependents_and_wait_all_covers_held_jobs() {
    let server = local(1);
    // The one worker is busy: the input stays queued, its dependents held.
    let busy = server.submit(step, (Shared::new(0u64).unwrap(), 300));
    let input = server.submit_with(start, (1,), keep());
    let dependents: Vec<_> = (0..3)
        .map(|_| server.submit(step, (input.keep().unwrap(), 0)))
        .collect();
    assert!(input.cancel());
    server.wait_all().unwrap();
    for d in dependents {
        let err = d.wait().unwrap_err();
        assert_eq!(err.kind, ErrorKind::Cancelled, "{err}");
    }
    assert_eq!(busy.wait().unwrap(), 1);
}

#[test]
fn wait_all_waits_for_jobs_held_for_their_inputs() {
    let server = local(1);
    let input = server.submit_with(step, (Shared::new(1u64).unwrap(), 100), keep());
    let held = server.submit(step, (input.keep().unwrap(), 0));
    server.wait_all().unwrap();
    assert!(held.is_finished(), "held jobs are in wait_all");
    assert_eq!(held.wait().unwrap(), 3);
}

#[test]
fn keep_is_refused_for_a_result_not_kept_and_for_a_kept_job_with_a_callback() {
    let server = local(1);
    let plain = server.submit(start, (1,));
    let err = plain.keep().unwrap_err();
    assert!(err.message.contains("Options::new().keep()"), "{err}");
    let with_callback = server.submit_with(
        start,
        (1,),
        Options::new().keep().callback(|_: &Result<u64, _>| {}),
    );
    let err = with_callback.wait().unwrap_err();
    assert!(err.message.contains("takes no callback"), "{err}");
    assert_eq!(plain.wait().unwrap(), 1);
}

#[test]
fn a_kept_result_reads_as_a_shared_value_in_the_client_too() {
    let server = local(1);
    let a = server.submit_with(part, (0, 10), keep());
    let kept = a.keep().unwrap();
    assert!(kept.is_kept());
    assert_eq!(*kept, 45, "fetched when read");
    assert_eq!(**kept.fetch().unwrap(), 45);
    assert_eq!(a.wait().unwrap(), 45);
}
