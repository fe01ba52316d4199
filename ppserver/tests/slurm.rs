//! `Builder::slurm_with`: ppservers started as Slurm job steps by the client,
//! against the real one-host Slurm of `scripts/slurm-up.sh`. The one Slurm
//! node runs two steps, so two ppservers.
//!
//! Without Slurm these tests say so and pass, except under `CI=true`, where
//! a missing Slurm fails them.

use ppclient::{NodeState, Options, Server, Slurm};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

mod common;
use common::{close, maclaurin_64};

/// Asks Slurm until `f` holds, for at most `limit` (the test kit's bounded wait).
use pptest::eventually as poll;

/// Whether a Slurm cluster answers; under CI a missing one fails the test.
fn slurm_up() -> bool {
    let up = Command::new("sinfo")
        .args(["-h", "-o", "%a"])
        .output()
        .is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains("up"));
    if !up {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "no Slurm answers `sinfo`: run scripts/slurm-up.sh first"
        );
        eprintln!("skipped: no Slurm (scripts/slurm-up.sh starts one)");
    }
    up
}

fn out(cmd: &str, args: &[&str]) -> String {
    let o = Command::new(cmd)
        .args(args)
        .output()
        .expect("slurm command runs");
    assert!(
        o.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).trim().to_owned()
}

/// A running allocation of one node and 2 CPUs (its batch step just sleeps);
/// cancelled when dropped.
struct Alloc {
    id: String,
}

impl Alloc {
    fn new() -> Alloc {
        let id = out(
            "sbatch",
            &[
                "--parsable",
                "--job-name=pp-test-alloc",
                "--nodes=1",
                "--ntasks=2",
                "--time=10",
                "--output=/dev/null",
                "--wrap=sleep 600",
            ],
        );
        let alloc = Alloc { id };
        let running = poll(Duration::from_secs(60), || {
            out("squeue", &["-h", "-j", &alloc.id, "-o", "%T"]) == "RUNNING"
        });
        assert!(running, "allocation {} did not start", alloc.id);
        alloc
    }

    /// What `sbatch` sets in the allocation.
    fn vars(&self) -> Vec<(String, String)> {
        let line = out("squeue", &["-h", "-j", &self.id, "-o", "%N|%C"]);
        let (nodes, cpus) = line.split_once('|').expect("nodes|cpus");
        vec![
            ("SLURM_JOB_ID".into(), self.id.clone()),
            ("SLURM_JOB_NODELIST".into(), nodes.into()),
            ("SLURM_JOB_CPUS_PER_NODE".into(), cpus.into()),
        ]
    }

    /// The ppserver steps running in it.
    fn steps(&self) -> Vec<String> {
        out("squeue", &["-h", "-s", "-j", &self.id, "-o", "%i %j"])
            .lines()
            .filter(|l| l.contains(" ppserver-"))
            .map(|l| l.split(' ').next().unwrap_or_default().to_owned())
            .collect()
    }
}

impl Drop for Alloc {
    fn drop(&mut self) {
        let _ = Command::new("scancel").arg(&self.id).status();
    }
}

fn key_dir(test: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("pp-slurm-{test}-{}", std::process::id()))
}

/// A client whose two nodes are two Slurm steps in `alloc`.
fn server(alloc: &Alloc, test: &str) -> Server {
    let slurm = Slurm::allocation_from_vars(alloc.vars())
        .program(env!("CARGO_BIN_EXE_ppserver"))
        .servers_per_node(2)
        .key_dir(key_dir(test));
    // No key given: the client makes one for its Slurm nodes.
    Server::builder()
        .listen("127.0.0.1:0")
        .slurm_with(slurm)
        .build()
        .expect("the Slurm nodes join")
}

fn up(server: &Server) -> usize {
    server
        .nodes()
        .iter()
        .filter(|n| matches!(n.state, NodeState::Up { .. }))
        .count()
}

#[test]
fn maclaurin_through_two_slurm_steps_is_exact() {
    if !slurm_up() {
        return;
    }
    let alloc = Alloc::new();
    let server = server(&alloc, "exact");
    assert_eq!(server.slurm_job(), Some(alloc.id.as_str()));
    assert_eq!(server.ncpus(), 0, "the allocation's CPUs are its nodes'");
    assert_eq!(up(&server), 2, "{:?}", server.nodes());
    assert_eq!(alloc.steps().len(), 2, "two ppserver steps");
    // 2 CPUs in the allocation, 2 servers: one worker each.
    assert!(server
        .nodes()
        .iter()
        .all(|n| n.state == NodeState::Up { workers: 1 }));
    let (sum, exact) = maclaurin_64(&server, 6_400_000);
    assert!(close(sum, exact), "{sum} vs {exact}");
    let stats = server.stats();
    assert_eq!(stats.succeeded, 64);
    assert_eq!(stats.nodes[0].jobs, 0, "nothing ran locally");
    // The key file is private while the nodes run, and gone with them.
    let keys: Vec<_> = std::fs::read_dir(key_dir("exact"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(keys.len(), 1);
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = keys[0].metadata().unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    drop(server);
    assert!(
        poll(Duration::from_secs(30), || alloc.steps().is_empty()),
        "steps left: {:?}",
        alloc.steps()
    );
    assert!(!keys[0].path().exists());
}

#[test]
fn a_step_cancelled_mid_run_is_a_lost_node_and_every_job_resolves_once() {
    // A plain `scancel` of a step kills it with SIGKILL.
    cancel_one_step_mid_run("kill", &[], "the node closed the connection");
}

#[test]
fn a_step_stopped_with_sigterm_drains_and_every_job_resolves_once() {
    // As a job cancel or a preemption does: SIGTERM first, SIGKILL after
    // KillWait; the node drains within its grace (below KillWait).
    cancel_one_step_mid_run("term", &["--signal=TERM"], "the node stopped");
}

/// Runs 40 jobs on two steps, cancels one step mid-run with `scancel
/// {how} STEP`; every job must resolve once, and the node end with `reason`.
fn cancel_one_step_mid_run(test: &str, how: &[&str], reason: &str) {
    if !slurm_up() {
        return;
    }
    let alloc = Alloc::new();
    let server = server(&alloc, test);
    assert_eq!(up(&server), 2, "{:?}", server.nodes());
    let n = 40;
    let counts: Arc<Vec<AtomicU32>> = Arc::new((0..n).map(|_| AtomicU32::new(0)).collect());
    let (ended, ends) = std::sync::mpsc::channel::<()>();
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let counts = Arc::clone(&counts);
            let ended = ended.clone();
            let options = Options::new().callback(move |_: &Result<u64, _>| {
                counts[i].fetch_add(1, Ordering::SeqCst);
                let _ = ended.send(());
            });
            server.submit_with(jobs::sleep_ms, (150 + i as u64,), options)
        })
        .collect();
    // Mid-run: some done, many left.
    let done = |c: &[AtomicU32]| c.iter().filter(|c| c.load(Ordering::SeqCst) > 0).count();
    for _ in 0..4 {
        assert!(
            ends.recv_timeout(Duration::from_secs(30)).is_ok(),
            "fewer than 4 jobs ended"
        );
    }
    assert!(
        done(&counts) < n / 2,
        "the run ended too early to cancel mid-run"
    );
    let steps = alloc.steps();
    assert_eq!(steps.len(), 2, "{steps:?}");
    let mut cancel = how.to_vec();
    cancel.push(&steps[0]);
    out("scancel", &cancel);
    for (i, h) in handles.into_iter().enumerate() {
        let result = h.wait_timeout(Duration::from_secs(60)).expect("resolves");
        assert_eq!(result.expect("succeeds"), 150 + i as u64);
    }
    server
        .wait_all()
        .expect("no callback here: wait_all cannot deadlock");
    assert!(counts.iter().all(|c| c.load(Ordering::SeqCst) == 1));
    let stats = server.stats();
    assert_eq!(stats.succeeded, n as u64);
    assert_eq!(stats.failed, 0);
    // The cancelled step is gone; the other one served the rest.
    let gone = poll(Duration::from_secs(30), || {
        !alloc.steps().contains(&steps[0])
    });
    assert!(gone, "the cancelled step stayed: {:?}", alloc.steps());
    assert_eq!(alloc.steps(), [steps[1].clone()]);
    let nodes = server.nodes();
    assert_eq!(up(&server), 1, "{nodes:?}");
    let down =
        |s: &NodeState| matches!(s, NodeState::Down { reason: r } if r.to_string() == reason);
    assert!(nodes.iter().any(|n| down(&n.state)), "{nodes:?}");
}

/// What ends an allocation after its client died: a joined node alone for
/// its idle timeout exits, without waiting out its grace for a job whose
/// result nobody can take any more. (No Slurm needed.)
#[test]
fn a_joined_node_whose_client_is_gone_exits_after_its_idle_timeout_without_its_grace() {
    let server = Server::builder()
        .ncpus(0)
        .secret(&*common::SECRET)
        .listen("127.0.0.1:0")
        .build()
        .unwrap();
    let join = server.listen_addr().unwrap().to_string();
    let mut node = common::Node::start(&[
        "--join",
        &join,
        "--idle-timeout",
        "1",
        "--grace",
        "600",
        "--workers",
        "1",
    ]);
    assert!(server.wait_for_nodes(1, Duration::from_secs(10)));
    let long = server.submit(jobs::sleep_ms, (600_000,));
    let addr = node.name();
    let running = poll(Duration::from_secs(10), || {
        ppclient::node_status(&addr, &*common::SECRET, Duration::from_secs(2))
            .is_ok_and(|s| s.jobs_active == 1)
    });
    assert!(running, "the long job never started");
    drop(server);
    assert!(long.wait().is_err());
    // Far below the 600 s grace: it did not wait for the job.
    assert_eq!(node.wait_exit(Duration::from_secs(60)), Some(0));
}
