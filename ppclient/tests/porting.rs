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
fn node(secret: &str, workers: usize) -> ppclient::node::Running {
    let config = ppclient::node::Config {
        port: 0,
        workers,
        keys: Some(ppclient::KeySet::parse(secret).unwrap()),
        ..Default::default()
    };
    ppclient::node::start(config, ppclient::Registry::linked().unwrap()).unwrap()
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
    assert!(server.wait_for_nodes_where(LONG, one_up), "{:?}", server.nodes());
    assert_eq!(server.workers(), 1 + 3);
}
