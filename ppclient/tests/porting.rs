//! What a user porting pp's own examples meets (issue 31): a result read
//! twice, cancelling what is left, counting workers.

use ppclient::{ErrorKind, Server};
use std::time::Duration;

const LONG: Duration = Duration::from_secs(30);

/// A result type that is not `Clone`.
#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(crate = "ppclient::serde")]
pub struct Token(u64);

ppclient::job! {
    /// A result that cannot be copied.
    pub fn token(n: u64) -> Token { Token(n) }
}

#[test]
fn a_clone_result_read_again_is_given_again_as_pps_job_call_does() {
    let server = Server::builder().ncpus(1).build().unwrap();
    let h = server.submit(jobs::echo_u64, (7,));
    assert_eq!(h.wait_timeout(LONG), Some(Ok(7)));
    assert_eq!(h.wait_timeout(LONG), Some(Ok(7)));
    assert_eq!(h.try_result(), Some(Ok(7)));
    assert_eq!(h.wait(), Ok(7), "wait takes what the handle kept");
    // An error is given again too, with its kind.
    let f = server.submit(jobs::fail, ("no".into(),));
    let first = f.wait_timeout(LONG).expect("ends").unwrap_err();
    assert_eq!(first.kind, ErrorKind::Failed);
    assert_eq!(f.try_result(), Some(Err(first.clone())));
    assert_eq!(f.wait(), Err(first));
}

#[test]
fn a_result_that_is_not_clone_read_again_is_taken_not_cancelled() {
    let server = Server::builder().ncpus(1).build().unwrap();
    let h = server.submit(token, (3,));
    assert_eq!(h.wait_timeout(LONG), Some(Ok(Token(3))));
    let again = h.try_result().expect("ended").unwrap_err();
    assert_eq!(again.kind, ErrorKind::Taken);
    assert!(again.message.contains("not Clone"), "{again}");
    assert_eq!(h.wait().unwrap_err().kind, ErrorKind::Taken);
}

/// A node of `workers` in this process.
fn node(secret: &str, workers: usize) -> ppserver::Running {
    let config = ppserver::Config {
        port: 0,
        workers,
        keys: Some(ppclient::KeySet::parse(secret).unwrap()),
        ..Default::default()
    };
    ppserver::start(config, ppclient::Registry::linked().unwrap()).unwrap()
}

#[test]
fn workers_counts_the_local_pool_and_the_nodes_that_are_up() {
    let secret = ppclient::Key::generate().unwrap().to_text();
    let (a, b) = (node(&secret, 3), node(&secret, 2));
    let server = Server::builder()
        .ncpus(1)
        .secret(&secret)
        .nodes([a.local_addr().to_string(), b.local_addr().to_string()])
        .build()
        .unwrap();
    assert!(server.wait_for_nodes(2, LONG), "{:?}", server.nodes());
    assert_eq!(server.ncpus(), 1, "ncpus keeps meaning the local pool");
    assert_eq!(server.workers(), 1 + 3 + 2);
    b.stop();
    b.wait();
    let one_up = |nodes: &[ppclient::NodeInfo]| {
        nodes
            .iter()
            .filter(|n| matches!(n.state, ppclient::NodeState::Up { .. }))
            .count()
            == 1
    };
    assert!(
        server.wait_for_nodes_where(LONG, one_up),
        "{:?}",
        server.nodes()
    );
    assert_eq!(server.workers(), 1 + 3);
}

/// Told each time a `held` job starts.
static STARTED: std::sync::LazyLock<(
    crossbeam_channel::Sender<()>,
    crossbeam_channel::Receiver<()>,
)> = std::sync::LazyLock::new(crossbeam_channel::unbounded);

ppclient::job! {
    /// Says it started, then sleeps `ms`.
    pub fn held(ms: u64) -> u64 {
        let _ = STARTED.0.send(());
        std::thread::sleep(Duration::from_millis(ms));
        ms
    }
}

/// Counts the handles that resolved `Cancelled`, checking each resolves.
fn cancelled(handles: Vec<ppclient::JobHandle<u64>>) -> usize {
    handles
        .into_iter()
        .map(|h| h.wait_timeout(LONG).expect("every handle resolves"))
        .filter(|r| matches!(r, Err(e) if e.kind == ErrorKind::Cancelled))
        .count()
}

#[test]
fn cancel_group_cancels_that_groups_queued_and_remote_jobs_and_says_how_many() {
    let secret = ppclient::Key::generate().unwrap().to_text();
    let n = node(&secret, 1);
    let server = Server::builder()
        .ncpus(0)
        .secret(&secret)
        .nodes([n.local_addr().to_string()])
        .build()
        .unwrap();
    assert!(server.wait_for_nodes(1, LONG));
    let in_group = |g: &str| ppclient::Options::default().group(g);
    // 40 long jobs in "slow": once one runs on the node's only worker, the
    // others wait on the node (its window) or in the client's queue.
    let slow: Vec<_> = (0..40)
        .map(|_| server.submit_with(held, (2_000,), in_group("slow")))
        .collect();
    STARTED.1.recv_timeout(LONG).expect("the node starts a job");
    let other = server.submit_with(jobs::echo_u64, (5,), in_group("other"));
    let n_cancelled = server.cancel_group("slow");
    assert_eq!(n_cancelled, 40, "queued and on the node, all cancelled");
    assert_eq!(cancelled(slow), 40);
    assert_eq!(
        other.wait_timeout(LONG),
        Some(Ok(5)),
        "another group runs on"
    );
    assert_eq!(server.cancel_group("no such group"), 0);
    // cancel_all takes everything still pending, in a group or not.
    let rest: Vec<_> = (0..10).map(|_| server.submit(held, (2_000,))).collect();
    assert_eq!(server.cancel_all(), 10);
    assert_eq!(cancelled(rest), 10);
    assert_eq!(server.cancel_all(), 0, "nothing left");
    // The node still serves (its worker is free once the running job,
    // which a thread cannot be stopped in, has slept its time).
    assert_eq!(
        server.submit(jobs::echo_u64, (6,)).wait_timeout(LONG),
        Some(Ok(6))
    );
}

#[test]
fn the_first_hit_of_as_completed_cancels_the_rest() {
    // pp's reverse_md5: the first job to find the answer wins.
    let server = Server::builder().ncpus(1).build().unwrap();
    let mut handles = vec![server.submit(jobs::echo_u64, (42,))];
    handles.extend((0..20).map(|_| server.submit(jobs::sleep_ms, (20_000,))));
    let mut done = server.as_completed(handles);
    let (index, first) = done.next().expect("one result");
    assert_eq!((index, first), (0, Ok(42)));
    // The one worker is busy with the first sleep (it cannot be stopped);
    // the 19 queued behind it are cancelled.
    let n = done.cancel_rest();
    assert!(n >= 19, "{n} cancelled");
    let left = done.into_unfinished();
    assert_eq!(left.len(), 20);
    assert_eq!(left[0].0, 1, "places in the input are kept");
    let queued: Vec<_> = left
        .into_iter()
        .map(|(_, h)| h)
        .filter(|h| h.is_finished())
        .collect();
    assert_eq!(cancelled(queued), n);
}
