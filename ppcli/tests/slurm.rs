//! `ppclient run ... --slurm` inside an allocation and `ppclient slurm submit`
//! from outside one, against the real one-host Slurm of `scripts/slurm-up.sh`.
//!
//! Without Slurm these tests say so and pass, except under `CI=true`, where
//! a missing Slurm fails them.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

/// A generated key for the nodes Slurm starts.
static SECRET: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| ppcore::Key::generate().unwrap().to_text());

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

/// The `ppserver` binary beside `ppclient` (built here if this test run did not).
fn ppserver() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_BIN_EXE_ppclient")).with_file_name("ppserver");
    if !path.is_file() {
        let built = Command::new(env!("CARGO"))
            .args(["build", "-p", "ppserver", "--bin", "ppserver"])
            .status()
            .expect("cargo runs");
        assert!(built.success(), "cannot build ppserver");
    }
    assert!(path.is_file(), "no {}", path.display());
    path
}

fn key_dir(test: &str) -> String {
    let dir = std::env::temp_dir().join(format!("pp-cli-slurm-{test}-{}", std::process::id()));
    dir.display().to_string()
}

/// Asks Slurm until `f` holds, for at most `limit` (the test kit's bounded wait).
use pptest::eventually as poll;

/// The job's state in `squeue`, empty once it has left the queue.
fn squeue_state(job: &str) -> String {
    let out = Command::new("squeue")
        .args(["-h", "-j", job, "-o", "%T"])
        .output()
        .expect("squeue runs");
    // An id Slurm has forgotten is an error: not in the queue either.
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The job id in the client's line `ppclient: nodes in Slurm job J join at ...`.
fn job_of(line: &str) -> Option<String> {
    let rest = line.split("Slurm job ").nth(1)?;
    Some(rest.split_whitespace().next()?.to_owned())
}

#[test]
fn maclaurin_inside_an_allocation_runs_on_two_slurm_steps_exactly() {
    if !slurm_up() {
        return;
    }
    let node = ppserver();
    let dir = key_dir("inside");
    let out = Command::new("salloc")
        .args([
            "--nodes=1",
            "--ntasks=2",
            "--time=5",
            "--job-name=pp-cli-test",
        ])
        .arg(env!("CARGO_BIN_EXE_ppclient"))
        .args(["run", "maclaurin", "--slurm", "--servers-per-node", "2"])
        .args(["--terms", "2000000", "--json"])
        .args(["--listen", "127.0.0.1:0", "--key-dir", &dir])
        .arg("--node-program")
        .arg(&node)
        .env("PP_SECRET", &*SECRET)
        .stdin(Stdio::null())
        .output()
        .expect("salloc runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    let (sum, exact) = (v["sum"].as_f64().unwrap(), v["exact"].as_f64().unwrap());
    assert!(((sum - exact) / exact).abs() < 1e-9, "{sum} vs {exact}");
    assert_eq!(v["succeeded"], 64);
    let nodes = v["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 3, "local + two Slurm steps: {nodes:?}");
    assert_eq!(nodes[0]["jobs"], 0);
    let job = stderr
        .lines()
        .find_map(job_of)
        .expect("the Slurm job is named");
    assert!(
        poll(Duration::from_secs(60), || squeue_state(&job).is_empty()),
        "job {job} still queued"
    );
}

#[test]
fn slurm_submit_runs_the_job_and_leaves_no_job_queued() {
    if !slurm_up() {
        return;
    }
    let node = ppserver();
    let dir = key_dir("submit");
    // The node program is a wrapper that notes its environment first: the
    // key travels to the nodes as a file, never in their environment.
    let seen = PathBuf::from(key_dir("submit-env"));
    std::fs::create_dir_all(&seen).unwrap();
    let wrapper = seen.join("node.sh");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nenv > {}/env.$$\nexec {} \"$@\"\n",
            seen.display(),
            node.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ppclient"))
        .args(["slurm", "submit", "--node-count", "1", "--time", "5"])
        .args(["--terms", "2000000", "--json"])
        .args(["--listen", "127.0.0.1:0", "--key-dir", &dir])
        .arg("--node-program")
        .arg(&wrapper)
        .args(["--", "--job-name=pp-cli-submit"])
        .env("PP_SECRET", &*SECRET)
        .stdin(Stdio::null())
        .output()
        .expect("ppclient runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    let (sum, exact) = (v["sum"].as_f64().unwrap(), v["exact"].as_f64().unwrap());
    assert!(((sum - exact) / exact).abs() < 1e-9, "{sum} vs {exact}");
    assert_eq!(
        v["ncpus"], 0,
        "a login node leaves the work to the allocation"
    );
    assert_eq!(v["nodes"][1]["jobs"], 64);
    let job = stderr
        .lines()
        .find_map(job_of)
        .expect("the Slurm job is named");
    assert!(
        poll(Duration::from_secs(60), || squeue_state(&job).is_empty()),
        "job {job} still queued after the client ended"
    );
    // The key file went with the client; the node's output stays for the user.
    let left: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, [format!("slurm-{job}.out")]);
    let envs: Vec<String> = std::fs::read_dir(&seen)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("env."))
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .collect();
    assert!(!envs.is_empty(), "the node never started");
    for env in envs {
        assert!(env.contains("SLURM_JOB_ID="), "not a Slurm step: {env}");
        assert!(
            !env.contains("PP_SECRET"),
            "the key reached a node's environment"
        );
        assert!(
            !env.contains(SECRET.as_str()),
            "the key reached a node's environment"
        );
    }
    let _ = std::fs::remove_dir_all(&seen);
}

#[test]
fn a_killed_client_leaves_no_job_queued_within_60_s() {
    if !slurm_up() {
        return;
    }
    let node = ppserver();
    // The defaults: a node gives up on its client after 15 s, and lets its
    // running job go on for its 20 s grace; then it exits, and so does the job.
    let dir = key_dir("sigkill");
    let mut client = Command::new(env!("CARGO_BIN_EXE_ppclient"))
        .args(["slurm", "submit", "--node-count", "1", "--time", "5"])
        // Far more terms than this run will get to.
        .args(["--terms", "1000000000000", "--json"])
        .args(["--listen", "127.0.0.1:0", "--key-dir", &dir])
        .arg("--node-program")
        .arg(&node)
        .env("PP_SECRET", &*SECRET)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ppclient runs");
    let mut stderr = BufReader::new(client.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    let Some(job) = job_of(&line) else {
        let _ = client.kill();
        panic!("no job id in {line:?}");
    };
    // The node has joined and is working when its output says it is ready
    // and its job is running.
    let out = PathBuf::from(&dir).join(format!("slurm-{job}.out"));
    let working = poll(Duration::from_secs(60), || {
        squeue_state(&job) == "RUNNING"
            && std::fs::read_to_string(&out).is_ok_and(|t| t.contains("ready on"))
    });
    client.kill().unwrap();
    client.wait().unwrap();
    assert!(working, "job {job} never ran its node");
    assert!(
        poll(Duration::from_secs(60), || squeue_state(&job).is_empty()),
        "job {job} still queued 60 s after the client was killed: {}",
        squeue_state(&job)
    );
}

#[test]
fn slurm_outside_an_allocation_is_a_one_line_error() {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ppclient"));
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("SLURM_")) {
        cmd.env_remove(k);
    }
    let out = cmd
        .args(["run", "maclaurin", "--slurm", "--ncpus", "0"])
        .output()
        .expect("ppclient runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.trim(),
        "ppclient: not inside a usable Slurm allocation: SLURM_JOB_ID is not set (run inside salloc or an sbatch script)"
    );
}

#[test]
fn a_node_program_that_fails_fails_the_run_at_once_and_cleans_up() {
    if !slurm_up() {
        return;
    }
    let dir = key_dir("false");
    let out = Command::new("salloc")
        .args([
            "--nodes=1",
            "--ntasks=1",
            "--time=2",
            "--job-name=pp-cli-false",
        ])
        .arg(env!("CARGO_BIN_EXE_ppclient"))
        .args([
            "run",
            "maclaurin",
            "--slurm",
            "--node-program",
            "/bin/false",
        ])
        .args(["--listen", "127.0.0.1:0", "--key-dir", &dir])
        .stdin(Stdio::null())
        .output()
        .expect("salloc runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("ppclient: 0 of 1 Slurm nodes joined 127.0.0.1:")
            && stderr.contains("1 step(s) ended: exit status: 1"),
        "{stderr}"
    );
    // The key file is gone with the client.
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
}

#[test]
fn a_submitted_allocation_that_ends_without_nodes_fails_the_jobs_with_the_reason() {
    if !slurm_up() {
        return;
    }
    let dir = key_dir("ended");
    let out = Command::new(env!("CARGO_BIN_EXE_ppclient"))
        .args(["slurm", "submit", "--node-count", "1", "--time", "5"])
        .args(["--node-program", "/bin/false", "--terms", "100000"])
        .args(["--listen", "127.0.0.1:0", "--key-dir", &dir])
        .stdin(Stdio::null())
        .output()
        .expect("ppclient runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let job = stderr
        .lines()
        .find_map(job_of)
        .expect("the Slurm job is named");
    let want = format!(
        "ppclient: job node lost: Slurm job {job} ended (it left the queue) and no node is left; its nodes' output: {dir}/slurm-{job}.out"
    );
    assert!(stderr.contains(&want), "{stderr}");
}

#[test]
fn sbatch_task_options_do_not_break_the_node_step() {
    if !slurm_up() {
        return;
    }
    // sbatch's --ntasks-per-node lands in the batch script's environment;
    // the nodes' srun must still start one ppserver per node, with the CPUs.
    let node = ppserver();
    let dir = key_dir("ntasks");
    let out = Command::new(env!("CARGO_BIN_EXE_ppclient"))
        .args(["slurm", "submit", "--node-count", "1", "--time", "5"])
        .args(["--terms", "200000", "--json"])
        .args(["--listen", "127.0.0.1:0", "--key-dir", &dir])
        .arg("--node-program")
        .arg(&node)
        .args(["--", "--ntasks-per-node=2"])
        .stdin(Stdio::null())
        .output()
        .expect("ppclient runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(v["nodes"][1]["workers"], 2);
    assert_eq!(v["nodes"][1]["jobs"], 64);
}
