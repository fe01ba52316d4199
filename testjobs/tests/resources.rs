//! Resources in process isolation: a job holding a GPU runs in a worker
//! process whose `CUDA_VISIBLE_DEVICES` names it (a fake GPU offer, no GPU
//! needed); a job holding none sees none of them.

mod support;

use ppclient::{Options, Server};
use support::{node_with, Node, SECRET};

fn gpu_node() -> Node {
    node_with("2", &["--resources", "gpu=2"])
}

#[test]
fn cuda_visible_devices_names_the_gpu_a_process_worker_holds() {
    let node = gpu_node();
    let server = Server::builder()
        .ncpus(0)
        .secret(SECRET.as_str())
        .nodes([node.1.clone()])
        .build()
        .unwrap();
    let one_gpu = Options::new().resource("gpu", 1.0);
    let handles: Vec<_> = (0..6)
        .map(|_| server.submit_with(testjobs::visible_gpus, (), &one_gpu))
        .collect();
    for h in handles {
        let (env, held) = h.wait().unwrap();
        assert_eq!(held.len(), 1, "one gpu held: {held:?}");
        assert_eq!(
            env,
            Some(held[0].to_string()),
            "the worker sees the gpu it holds"
        );
    }
    // A job that asked for no GPU runs in a process told of none.
    let (env, held) = server.submit(testjobs::visible_gpus, ()).wait().unwrap();
    assert_eq!((env, held), (None, Vec::new()));
}
