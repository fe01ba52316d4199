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

#[test]
fn a_process_worker_is_held_to_the_memory_its_job_asked_for() {
    let node = node_with("1", &["--memory", "4G"]);
    let server = Server::builder()
        .ncpus(0)
        .secret(SECRET.as_str())
        .nodes([node.1.clone()])
        .crash_retries(1)
        .build()
        .unwrap();
    let ask = Options::new().memory(64 << 20);
    // Within its request, the job runs.
    assert_eq!(
        server.submit_with(testjobs::allocate, (16,), &ask).wait(),
        Ok(16)
    );
    // Far past it, its process is stopped, not the node, and the error
    // says under what limit it ran.
    let err = server
        .submit_with(testjobs::allocate, (1024,), &ask)
        .wait()
        .unwrap_err();
    assert_eq!(err.kind, ppclient::ErrorKind::Crashed, "{err}");
    assert!(err.message.contains("memory request of 64.0 MiB"), "{err}");
    // A job that asked for no memory runs in a process with no such limit.
    assert_eq!(server.submit(testjobs::allocate, (256,)).wait(), Ok(256));
    assert_eq!(
        server.submit_with(testjobs::allocate, (8,), &ask).wait(),
        Ok(8),
        "and the node still serves jobs with a request"
    );
}
