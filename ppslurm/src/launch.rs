//! Starting the nodes: [`start`] writes the key file, `srun`s one step per
//! node (inside an allocation) or `sbatch`es an allocation, waits for the
//! nodes of an allocation to join, and watches a submitted one;
//! [`Launched`] stops them when it drops.

use crate::answers::{job_ended, parse_sbatch, parse_steps};
use crate::argv::{batch_script, fit_grace, join_target, sbatch_argv, srun_step, NodeArgs};
use crate::client::{Client, NodeCounts};
use crate::command::{job_state, job_steps, kill_wait, run, CommandError};
use crate::config::{Mode, Slurm};
use crate::error::{command_error, SlurmError};
use crate::hostlist::Allocation;
use crate::keyfile::{random_tag, KeyFile};
use crate::steps::Steps;
use ppcore::{ErrorKind, JobError};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Nodes a client started through Slurm; dropping this stops them.
pub struct Launched {
    job_id: String,
    /// Where a submitted job's nodes write (`slurm-J.out`).
    output: PathBuf,
    /// Where its nodes join.
    join: String,
    /// The name of its steps (inside an allocation).
    step_name: String,
    submitted: bool,
    steps: Arc<Steps>,
    expected: usize,
    _key: KeyFile,
}

impl Launched {
    /// The Slurm job the nodes run in.
    pub fn job_id(&self) -> &str {
        &self.job_id
    }

    /// For a submitted allocation: watches it on a thread of its own, so
    /// that once it has ended (time limit, cancelled, its nodes failed)
    /// jobs nobody else can run fail with the reason instead of waiting.
    fn watch(&self, client: Arc<dyn Client>) -> std::io::Result<()> {
        if !self.submitted {
            return Ok(());
        }
        let (job, output) = (self.job_id.clone(), self.output.clone());
        std::thread::Builder::new()
            .name("pp-slurm-watch".into())
            .spawn(move || watch_allocation(&*client, &job, &output))
            .map(|_| ())
    }
}

/// How often a submitted allocation is looked at.
const WATCH_EVERY: Duration = Duration::from_secs(3);

/// Asks `squeue` about `job` every [`WATCH_EVERY`] and whenever the
/// client's nodes change, until the client stops; once the job has ended and
/// nobody is left, fails the queued jobs with the reason.
fn watch_allocation(client: &dyn Client, job: &str, output: &Path) {
    let mut ended: Option<String> = None;
    let mut seen = client.node_counts();
    loop {
        client.wait_nodes_until(WATCH_EVERY, &mut |now| *now != seen);
        if client.stopping() {
            return;
        }
        if ended.is_none() {
            ended = match job_state(job) {
                Ok(out) => job_ended(&out),
                Err(CommandError::UnknownJob { .. }) => Some("it left the queue".into()),
                Err(e) => {
                    tracing::debug!("cannot ask squeue about job {job}: {e}");
                    None
                }
            };
            if let Some(how) = &ended {
                tracing::warn!(
                    "Slurm job {job} ended ({how}); its nodes' output: {}",
                    output.display()
                );
            }
        }
        seen = client.node_counts();
        if let Some(reason) = orphaned(job, ended.as_deref(), output, &seen) {
            client.fail_queued(&JobError::new(ErrorKind::NodeLost, reason));
        }
    }
}

/// Why the queued jobs fail, if they do: the submitted `job` ended (`how`)
/// and nobody is left to run them.
fn orphaned(job: &str, how: Option<&str>, output: &Path, now: &NodeCounts) -> Option<String> {
    let how = how?;
    now.nobody_left().then(|| {
        format!(
            "Slurm job {job} ended ({how}) and no node is left; its nodes' output: {}",
            output.display()
        )
    })
}

impl Drop for Launched {
    fn drop(&mut self) {
        if self.submitted {
            let argv = ["scancel".to_owned(), self.job_id.clone()];
            if let Err(e) = run(&argv, None) {
                tracing::warn!("cannot cancel Slurm job {}: {e}", self.job_id);
            }
        } else {
            // SIGTERM to the steps: each ppserver drains and exits 0. (A
            // plain `scancel` of a step, or SIGTERM to `srun`, is a SIGKILL.)
            let ids = job_steps(&self.job_id)
                .map_or_else(|_| Vec::new(), |out| parse_steps(&out, &self.step_name));
            if !ids.is_empty() {
                let mut argv = vec!["scancel".to_owned(), "--signal=TERM".to_owned()];
                argv.extend(ids.iter().cloned());
                if let Err(e) = run(&argv, None) {
                    tracing::debug!("cannot stop the steps gently: {e}");
                }
            }
            if !self.steps.wait(Duration::from_secs(5)) {
                self.steps.signal("-TERM");
                if !self.steps.wait(Duration::from_secs(2)) {
                    self.steps.signal("-KILL");
                }
            }
        }
    }
}

impl std::fmt::Debug for Launched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Launched")
            .field("job_id", &self.job_id)
            .field("submitted", &self.submitted)
            .finish()
    }
}

/// This machine's host name.
fn host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
}

/// The node program: as given, else `ppserver` beside this executable, else on `PATH`.
fn program(given: Option<&PathBuf>) -> String {
    if let Some(p) = given {
        return p.display().to_string();
    }
    std::env::current_exe()
        .ok()
        .map(|exe| exe.with_file_name("ppserver"))
        .filter(|p| p.is_file())
        .map_or_else(|| "ppserver".to_owned(), |p| p.display().to_string())
}

/// Starts the nodes: writes the key, then `srun`s one step per node (inside
/// an allocation) or `sbatch`es an allocation. `listen` is where the client
/// listens for them; a step that ends wakes the client's waiters.
fn launch(
    slurm: &Slurm,
    secret: &[u8],
    listen: SocketAddr,
    client: &Arc<dyn Client>,
) -> Result<Launched, SlurmError> {
    let join = join_target(slurm.advertise.as_deref(), listen, host_name())
        .map_err(SlurmError::Allocation)?;
    let dir = match &slurm.key_dir {
        Some(d) => d.clone(),
        None => std::env::var_os("HOME")
            .map(|h| PathBuf::from(h).join(".pp"))
            .ok_or_else(|| SlurmError::Allocation("HOME is not set: give Slurm::key_dir".into()))?,
    };
    let tag = random_tag();
    let key = KeyFile::write(&dir, &tag, secret)?;
    let kill_wait = kill_wait();
    let grace = fit_grace(slurm.grace, kill_wait);
    if grace != slurm.grace {
        tracing::warn!(
            "node grace {:?} is not below Slurm's KillWait {:?}: using {grace:?}",
            slurm.grace,
            kill_wait.unwrap_or_default()
        );
    }
    let node = NodeArgs {
        program: program(slurm.program.as_ref()),
        join,
        key_file: key.path().display().to_string(),
        grace,
        idle_timeout: slurm.idle_timeout,
    };
    let per = slurm.servers_per_node;
    match &slurm.mode {
        Mode::Submit(s) => {
            let output = dir.join("slurm-%j.out").display().to_string();
            let argv = sbatch_argv(s.nodes, &s.time, s.partition.as_deref(), &output, &s.extra);
            let out = run(&argv, Some(&batch_script(&node, per)))?;
            let job_id = parse_sbatch(&out)
                .ok_or_else(|| command_error("sbatch", format!("no job id in {out:?}")))?;
            tracing::info!(job = %job_id, nodes = s.nodes, join = %node.join, "submitted Slurm job");
            Ok(Launched {
                output: dir.join(format!("slurm-{job_id}.out")),
                job_id,
                step_name: String::new(),
                join: node.join.clone(),
                submitted: true,
                steps: Arc::default(),
                expected: 0,
                _key: key,
            })
        }
        Mode::Allocation(vars) => {
            let alloc = match vars {
                Some(vars) => Allocation::from_vars(|k| {
                    vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
                }),
                None => Allocation::from_vars(|k| std::env::var(k).ok()),
            }
            .map_err(SlurmError::Allocation)?;
            let steps = Arc::new(Steps::default());
            let mut launched = Launched {
                job_id: alloc.job_id.clone(),
                step_name: format!("ppserver-{tag}"),
                output: PathBuf::new(),
                join: node.join.clone(),
                submitted: false,
                steps: Arc::clone(&steps),
                expected: 0,
                _key: key,
            };
            for n in &alloc.nodes {
                for _ in 0..per {
                    let argv = srun_step(
                        &alloc.job_id,
                        &n.host,
                        n.cpus / per,
                        &launched.step_name,
                        &node,
                    );
                    let child = Command::new(&argv[0])
                        .args(&argv[1..])
                        .env_remove(ppcore::SECRET_ENV)
                        .stdin(Stdio::null())
                        .stdout(Stdio::null())
                        .stderr(Stdio::inherit())
                        .spawn()
                        .map_err(|e| command_error("srun", format!("cannot run it: {e}")))?;
                    let client = Arc::downgrade(client);
                    let ended = move || {
                        if let Some(client) = client.upgrade() {
                            client.wake();
                        }
                    };
                    steps
                        .watch(child, ended)
                        .map_err(|e| command_error("srun", e))?;
                    launched.expected += 1;
                }
            }
            Ok(launched)
        }
    }
}

/// Waits until `expected` nodes are up, a step ends, or `timeout` passes:
/// on the client's condvar, woken by every change of its nodes and by every
/// step that ends.
fn wait_joined(
    expected: usize,
    join: &str,
    steps: &Steps,
    timeout: Duration,
    client: &dyn Client,
) -> Result<(), SlurmError> {
    let started = Instant::now();
    let (mut joined, mut ended) = (0, Vec::new());
    client.wait_nodes_until(timeout, &mut |now| {
        joined = now.up;
        ended = steps.ended();
        joined >= expected || !ended.is_empty()
    });
    if joined >= expected {
        return Ok(());
    }
    Err(SlurmError::Join {
        target: join.to_owned(),
        joined,
        expected,
        waited: started.elapsed(),
        why: steps_ended(&ended),
    })
}

/// What the steps that ended say, for [`SlurmError::Join`]: how many ended
/// and each way they ended, once.
fn steps_ended(ended: &[ExitStatus]) -> String {
    if ended.is_empty() {
        return String::new();
    }
    let how: HashSet<String> = ended.iter().map(ToString::to_string).collect();
    let mut how: Vec<_> = how.into_iter().collect();
    how.sort();
    format!("; {} step(s) ended: {}", ended.len(), how.join(", "))
}

/// Starts the nodes `slurm` says for `client`, which listens at `listen`
/// and whose nodes read `secret` (a [`key_file_text`](crate::keyfile::key_file_text))
/// from their key file. Inside an allocation it waits (up to
/// [`Slurm::start_timeout`]) until the nodes have joined, failing at once if
/// a step ends first; a submitted allocation is watched, and once it has
/// ended with nobody left the client's queued jobs fail with the reason.
pub fn start(
    slurm: &Slurm,
    secret: &[u8],
    listen: SocketAddr,
    client: Arc<dyn Client>,
) -> Result<Launched, SlurmError> {
    let launched = launch(slurm, secret, listen, &client)?;
    if !launched.submitted {
        wait_joined(
            launched.expected,
            &launched.join,
            &launched.steps,
            slurm.start_timeout,
            &*client,
        )?;
    }
    launched
        .watch(client)
        .map_err(|e| command_error("squeue", format!("cannot watch the job: {e}")))?;
    Ok(launched)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    /// A client whose nodes pass through `counts`, one change each; its
    /// wait asks `done` of each in turn, as the client's condvar would.
    struct Fake(Vec<NodeCounts>);

    impl Client for Fake {
        fn node_counts(&self) -> NodeCounts {
            self.0.last().copied().unwrap_or_default()
        }
        fn wait_nodes_until(
            &self,
            _limit: Duration,
            done: &mut dyn FnMut(&NodeCounts) -> bool,
        ) -> bool {
            self.0.iter().any(done)
        }
        fn wake(&self) {}
        fn stopping(&self) -> bool {
            false
        }
        fn fail_queued(&self, _error: &JobError) {}
    }

    fn up(up: usize) -> NodeCounts {
        NodeCounts {
            local_workers: 0,
            nodes: 2,
            up,
            down: 0,
        }
    }

    #[test]
    fn an_allocation_has_started_once_its_nodes_have_joined() {
        let client = Fake(vec![up(0), up(1), up(2)]);
        let steps = Steps::default();
        assert!(wait_joined(2, "login1:4000", &steps, Duration::ZERO, &client).is_ok());
    }

    #[test]
    fn nodes_that_do_not_all_join_fail_the_start_with_the_count() {
        let client = Fake(vec![up(0), up(1)]);
        let steps = Steps::default();
        let e = wait_joined(2, "login1:4000", &steps, Duration::ZERO, &client).unwrap_err();
        let text = e.to_string();
        assert!(
            text.starts_with("1 of 2 Slurm nodes joined login1:4000 within "),
            "{text}"
        );
        assert!(!text.contains("step(s) ended"), "{text}");
    }

    #[test]
    fn the_steps_that_ended_are_told_once_per_way() {
        let one = ExitStatus::from_raw(1 << 8);
        let killed = ExitStatus::from_raw(9);
        assert_eq!(steps_ended(&[]), "");
        assert_eq!(
            steps_ended(&[one, one, killed]),
            format!("; 3 step(s) ended: {one}, {killed}")
        );
    }

    #[test]
    fn queued_jobs_fail_only_once_the_job_ended_and_nobody_is_left() {
        let out = Path::new("/h/.pp/slurm-7.out");
        let nobody = NodeCounts {
            local_workers: 0,
            nodes: 2,
            up: 0,
            down: 2,
        };
        assert_eq!(orphaned("7", None, out, &nobody), None);
        assert_eq!(
            orphaned("7", Some("TIMEOUT"), out, &nobody).as_deref(),
            Some("Slurm job 7 ended (TIMEOUT) and no node is left; its nodes' output: /h/.pp/slurm-7.out")
        );
        assert_eq!(orphaned("7", Some("TIMEOUT"), out, &up(1)), None);
        let workers = NodeCounts {
            local_workers: 2,
            ..nobody
        };
        assert_eq!(orphaned("7", Some("TIMEOUT"), out, &workers), None);
        // No node at all and no workers: nobody either.
        assert!(NodeCounts::default().nobody_left());
    }
}
