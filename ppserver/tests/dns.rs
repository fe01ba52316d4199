//! `Builder::nodes_from_dns`: every address a name resolves to is a node,
//! and the name is resolved again as nodes come and go.

use ppclient::{NodeState, Server};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod common;
use common::{close, maclaurin_64};

use jobs as _;

/// A generated key, shared by the nodes and clients of this test process.
static SECRET: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| ppcore::Key::generate().expect("randomness").to_text());

fn node() -> ppserver::Running {
    let config = ppserver::Config {
        port: 0,
        workers: 1,
        keys: Some(ppcore::KeySet::parse(&SECRET).expect("a key")),
        ..Default::default()
    };
    ppserver::start(config, ppcore::Registry::linked().unwrap()).unwrap()
}

fn up(nodes: &[ppclient::NodeInfo]) -> Vec<String> {
    let mut names: Vec<_> = nodes
        .iter()
        .filter(|n| matches!(n.state, NodeState::Up { .. }))
        .map(|n| n.name.clone())
        .collect();
    names.sort();
    names
}

#[test]
fn localhost_resolves_to_a_node_that_runs_the_jobs() {
    let node = node();
    let port = node.local_addr().port();
    let server = Server::builder()
        .ncpus(0)
        .secret(&*SECRET)
        .nodes_from_dns(format!("localhost:{port}"))
        .build()
        .unwrap();
    let want = format!("127.0.0.1:{port}");
    assert!(server.wait_for_nodes_where(Duration::from_secs(10), |n| up(n).contains(&want)));
    let (sum, exact) = maclaurin_64(&server, 640_000);
    assert!(close(sum, exact));
    let stats = server.stats();
    let ran: u64 = stats
        .nodes
        .iter()
        .filter(|n| n.node == want)
        .map(|n| n.jobs)
        .sum();
    assert_eq!(ran, 64, "{stats}");
}

#[test]
fn addresses_that_appear_later_become_nodes_and_each_address_is_one_node() {
    let (a, b) = (node(), node());
    let answer: Arc<Mutex<Vec<SocketAddr>>> = Arc::new(Mutex::new(vec![a.local_addr()]));
    let asked = Arc::new(Mutex::new(Vec::new()));
    let (ask, asks) = std::sync::mpsc::channel();
    let resolver = {
        let (answer, asked) = (Arc::clone(&answer), Arc::clone(&asked));
        let ask = Mutex::new(ask);
        move |name: &str| {
            asked.lock().unwrap().push(name.to_owned());
            let _ = ask.lock().unwrap().send(());
            Ok(answer.lock().unwrap().clone())
        }
    };
    let server = Server::builder()
        .ncpus(0)
        .secret(&*SECRET)
        .dns_interval(Duration::from_millis(20))
        .nodes_from_dns_with("pp-nodes.default.svc", resolver)
        .build()
        .unwrap();
    let (na, nb) = (a.local_addr().to_string(), b.local_addr().to_string());
    assert!(server.wait_for_nodes_where(Duration::from_secs(10), |n| up(n) == [na.clone()]));
    // The name gets the default port; the resolver is asked again and again.
    assert_eq!(asked.lock().unwrap()[0], "pp-nodes.default.svc:60000");
    // A second pod: its address becomes a second node.
    answer.lock().unwrap().push(b.local_addr());
    let mut both = vec![na.clone(), nb.clone()];
    both.sort();
    assert!(server.wait_for_nodes_where(Duration::from_secs(10), |n| up(n) == both));
    let (sum, exact) = maclaurin_64(&server, 640_000);
    assert!(close(sum, exact));
    // Answers repeat: still one link per address.
    for _ in 0..3 {
        assert!(
            asks.recv_timeout(Duration::from_secs(10)).is_ok(),
            "asked no more"
        );
    }
    assert_eq!(server.nodes().len(), 2, "{:?}", server.nodes());
    // A pod goes away: its node is lost like any other; the jobs still run.
    answer.lock().unwrap().retain(|x| *x != a.local_addr());
    a.stop();
    a.wait();
    assert!(server.wait_for_nodes_where(Duration::from_secs(10), |n| up(n) == [nb.clone()]));
    let (sum, exact) = maclaurin_64(&server, 640_000);
    assert!(close(sum, exact));
}
