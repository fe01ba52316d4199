//! Nodes started by Slurm: one `ppserver` per allocated node (or several),
//! each dialing back to the listening client (`ppserver --join`).
//!
//! Two ways in:
//! - [`Slurm::allocation`] (what [`Builder::slurm`](crate::Builder::slurm) uses): the
//!   client runs inside an allocation (`salloc`, an `sbatch` script) and starts
//!   one job step per node with `srun`, workers from that node's CPUs.
//! - [`Slurm::submit`]: from a login node, `sbatch` an allocation whose batch
//!   script starts the nodes; they join as they start.
//!
//! Either way the shared secret travels as a key file (mode 0600) in a
//! directory the nodes can read, never on a command line, and the nodes stop
//! when the client ends: on drop the client stops its steps (or `scancel`s
//! its allocation), and a client that dies without cleaning up (SIGKILL)
//! leaves nodes that find no client to rejoin and exit after their
//! `--idle-timeout`, which ends the steps and the allocation.
//!
//! The parsing of Slurm's variables and outputs, and the `srun` and `sbatch`
//! command lines, are pure functions below; the few functions at the end run
//! the commands.

use crate::cluster::node::NodeState;
use crate::cluster::state::Core;
use ppcore::{ErrorKind, JobError};
use std::collections::HashSet;
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Why the Slurm nodes could not be started.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum SlurmError {
    /// Not inside an allocation, or its variables make no sense.
    #[error("not inside a usable Slurm allocation: {0}")]
    Allocation(String),
    /// A Slurm command could not be run or failed.
    #[error("{command}: {reason}")]
    Command {
        /// The command (`srun`, `sbatch`, ...).
        command: String,
        /// What went wrong, with the command's own error output.
        reason: String,
    },
    /// The key file could not be written.
    #[error("cannot write the key file {path}: {source}")]
    KeyFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The nodes did not all join in time.
    #[error("{joined} of {expected} Slurm nodes joined {target} within {waited:?}{why}")]
    Join {
        /// Where the nodes were told to join (see [`Slurm::advertise`]).
        target: String,
        /// How many joined.
        joined: usize,
        /// How many were started.
        expected: usize,
        /// How long the client waited.
        waited: Duration,
        /// What the steps said, if they ended.
        why: String,
    },
}

ppcore::debug_as_display!(SlurmError);

/// How a client starts its nodes through Slurm; give it to
/// [`Builder::slurm_with`](crate::Builder::slurm_with).
#[derive(Debug, Clone)]
pub struct Slurm {
    mode: Mode,
    program: Option<PathBuf>,
    servers_per_node: usize,
    grace: Duration,
    idle_timeout: Duration,
    key_dir: Option<PathBuf>,
    advertise: Option<String>,
    start_timeout: Duration,
}

#[derive(Debug, Clone)]
enum Mode {
    /// Inside an allocation: its variables (`None`: this process's environment).
    Allocation(Option<Vec<(String, String)>>),
    /// Submit an allocation with `sbatch`.
    Submit(Submit),
}

#[derive(Debug, Clone)]
struct Submit {
    nodes: u32,
    time: String,
    partition: Option<String>,
    extra: Vec<String>,
}

impl Slurm {
    fn new(mode: Mode) -> Self {
        Slurm {
            mode,
            program: None,
            servers_per_node: 1,
            grace: Duration::from_secs(20),
            idle_timeout: Duration::from_secs(15),
            key_dir: None,
            advertise: None,
            start_timeout: Duration::from_secs(60),
        }
    }

    /// Nodes in the allocation this process runs in (`salloc`, `sbatch`):
    /// one job step per allocated node, read from `SLURM_JOB_ID`,
    /// `SLURM_JOB_NODELIST` and `SLURM_JOB_CPUS_PER_NODE` when the server is built.
    pub fn allocation() -> Self {
        Self::new(Mode::Allocation(None))
    }

    /// Like [`Slurm::allocation`], with the allocation's variables given
    /// (as `salloc` or `sbatch` would set them) instead of read from this
    /// process's environment: for a client started outside the allocation.
    pub fn allocation_from_vars<K: Into<String>, V: Into<String>>(
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        let vars = vars
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        Self::new(Mode::Allocation(Some(vars)))
    }

    /// Submits an allocation of `nodes` nodes for `time` (Slurm's format:
    /// `30`, `1:00:00`, `2-0`) with `sbatch`; its nodes join as they start,
    /// and it is cancelled when the client ends.
    pub fn submit(nodes: u32, time: impl Into<String>) -> Self {
        Self::new(Mode::Submit(Submit {
            nodes,
            time: time.into(),
            partition: None,
            extra: Vec::new(),
        }))
    }

    /// The partition to submit to (`sbatch --partition`).
    pub fn partition(mut self, partition: impl Into<String>) -> Self {
        if let Mode::Submit(s) = &mut self.mode {
            s.partition = Some(partition.into());
        }
        self
    }

    /// More `sbatch` arguments (`--account=x`, `--constraint=y`); they come
    /// after ours, so they win.
    pub fn sbatch_args<S: Into<String>>(mut self, args: impl IntoIterator<Item = S>) -> Self {
        if let Mode::Submit(s) = &mut self.mode {
            s.extra.extend(args.into_iter().map(Into::into));
        }
        self
    }

    /// The node program the nodes run (default: `ppserver` beside this
    /// executable if there is one, else `ppserver` on the nodes' `PATH`).
    pub fn program(mut self, path: impl Into<PathBuf>) -> Self {
        self.program = Some(path.into());
        self
    }

    /// `ppserver`s per Slurm node, each a job step of its own with an equal
    /// share of the node's CPUs (default 1).
    pub fn servers_per_node(mut self, n: usize) -> Self {
        self.servers_per_node = n.max(1);
        self
    }

    /// The nodes' `--grace` (default 20 s): kept below Slurm's `KillWait`
    /// so that a cancelled node hands its jobs back before Slurm kills it.
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// How long a node stays without its client before it exits (default
    /// 15 s): what ends the allocation when the client died without cleaning up.
    pub fn idle_timeout(mut self, limit: Duration) -> Self {
        self.idle_timeout = limit.max(Duration::from_secs(1));
        self
    }

    /// Where the key file goes: a directory the nodes can read (default
    /// `$HOME/.pp`, on a cluster's shared home).
    pub fn key_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.key_dir = Some(dir.into());
        self
    }

    /// The host name or address the nodes dial (default: the listening
    /// address if it is a specific one, else this machine's host name).
    pub fn advertise(mut self, host: impl Into<String>) -> Self {
        self.advertise = Some(host.into());
        self
    }

    /// How long [`Builder::build`](crate::Builder::build) waits for the
    /// nodes of an allocation to join (default 60 s); a step that ends
    /// first fails the build at once.
    pub fn start_timeout(mut self, limit: Duration) -> Self {
        self.start_timeout = limit;
        self
    }
}

// ---------------------------------------------------------------------------
// Pure: Slurm's variables and outputs.

/// One allocated node: its name and its CPUs in the allocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AllocNode {
    pub(crate) host: String,
    pub(crate) cpus: usize,
}

/// An allocation, from the variables Slurm sets in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Allocation {
    pub(crate) job_id: String,
    pub(crate) nodes: Vec<AllocNode>,
}

impl Allocation {
    /// Reads `SLURM_JOB_ID` (or `SLURM_JOBID`), `SLURM_JOB_NODELIST` (or
    /// `SLURM_NODELIST`) and `SLURM_JOB_CPUS_PER_NODE`.
    pub(crate) fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let first = |names: &[&str]| names.iter().find_map(|n| var(n)).filter(|v| !v.is_empty());
        let job_id = first(&["SLURM_JOB_ID", "SLURM_JOBID"])
            .ok_or("SLURM_JOB_ID is not set (run inside salloc or an sbatch script)")?;
        if !job_id.chars().all(|c| c.is_ascii_digit()) {
            return Err(format!("SLURM_JOB_ID={job_id:?} is not a job id"));
        }
        let list = first(&["SLURM_JOB_NODELIST", "SLURM_NODELIST"])
            .ok_or("SLURM_JOB_NODELIST is not set")?;
        let hosts = expand_hostlist(&list)?;
        let cpus = match first(&["SLURM_JOB_CPUS_PER_NODE"]) {
            Some(v) => expand_counts(&v)?,
            None => vec![1; hosts.len()],
        };
        if cpus.len() != hosts.len() {
            return Err(format!(
                "SLURM_JOB_CPUS_PER_NODE names {} nodes, SLURM_JOB_NODELIST {}",
                cpus.len(),
                hosts.len()
            ));
        }
        let nodes = hosts
            .into_iter()
            .zip(cpus)
            .map(|(host, cpus)| AllocNode { host, cpus })
            .collect();
        Ok(Allocation { job_id, nodes })
    }
}

/// Expands a Slurm host list (`node[01-03,7],gpu1`, `r[1-2]n[1-2]`) into
/// host names, in order.
pub(crate) fn expand_hostlist(list: &str) -> Result<Vec<String>, String> {
    let mut hosts = Vec::new();
    for item in split_top(list)? {
        let mut names = vec![String::new()];
        let mut rest = item;
        while !rest.is_empty() {
            let (prefix, after) = match rest.find('[') {
                Some(i) => (&rest[..i], &rest[i..]),
                None => (rest, ""),
            };
            for n in &mut names {
                n.push_str(prefix);
            }
            if after.is_empty() {
                break;
            }
            let close = after
                .find(']')
                .ok_or_else(|| format!("unclosed '[' in host list {list:?}"))?;
            let parts = expand_ranges(&after[1..close], list)?;
            names = names
                .iter()
                .flat_map(|n| parts.iter().map(move |p| format!("{n}{p}")))
                .collect();
            if names.len() > 100_000 {
                return Err(format!("host list {list:?} is too long"));
            }
            rest = &after[close + 1..];
        }
        hosts.extend(names.into_iter().filter(|n| !n.is_empty()));
    }
    if hosts.is_empty() {
        return Err(format!("empty host list {list:?}"));
    }
    Ok(hosts)
}

/// Splits on commas outside brackets.
fn split_top(list: &str) -> Result<Vec<&str>, String> {
    let (mut parts, mut depth, mut start) = (Vec::new(), 0i32, 0);
    for (i, c) in list.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&list[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        if !(0..=1).contains(&depth) {
            return Err(format!("unbalanced brackets in host list {list:?}"));
        }
    }
    parts.push(&list[start..]);
    Ok(parts
        .into_iter()
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect())
}

/// `01-03,7` to `["01", "02", "03", "7"]`, keeping zero padding.
fn expand_ranges(ranges: &str, list: &str) -> Result<Vec<String>, String> {
    let bad = || format!("bad range [{ranges}] in host list {list:?}");
    let mut out = Vec::new();
    for r in ranges.split(',') {
        let (lo, hi) = r.split_once('-').unwrap_or((r, r));
        let (a, b) = (
            lo.parse::<u64>().map_err(|_| bad())?,
            hi.parse::<u64>().map_err(|_| bad())?,
        );
        if b < a || b - a > 100_000 {
            return Err(bad());
        }
        let width = lo.len();
        out.extend((a..=b).map(|n| format!("{n:0width$}")));
    }
    Ok(out)
}

/// `SLURM_JOB_CPUS_PER_NODE` (`4(x2),2`) to one count per node (`[4, 4, 2]`).
pub(crate) fn expand_counts(v: &str) -> Result<Vec<usize>, String> {
    let bad = || format!("bad SLURM_JOB_CPUS_PER_NODE {v:?}");
    let mut out = Vec::new();
    for part in v.split(',') {
        let part = part.trim();
        let (n, times) = match part.split_once("(x") {
            Some((n, t)) => (n, t.strip_suffix(')').ok_or_else(bad)?),
            None => (part, "1"),
        };
        let n: usize = n.parse().map_err(|_| bad())?;
        let times: usize = times.parse().map_err(|_| bad())?;
        if times > 100_000 || out.len() + times > 100_000 {
            return Err(bad());
        }
        out.extend(std::iter::repeat_n(n, times));
    }
    Ok(out)
}

/// The job id in `sbatch --parsable`'s answer (`1234` or `1234;cluster`).
pub(crate) fn parse_sbatch(out: &str) -> Option<String> {
    let id = out.trim().split(';').next()?.trim();
    (!id.is_empty() && id.chars().all(|c| c.is_ascii_digit())).then(|| id.to_owned())
}

/// The ids of the steps named `name` in `squeue -h -s -o "%i %j"`'s answer.
pub(crate) fn parse_steps(out: &str, name: &str) -> Vec<String> {
    out.lines()
        .filter_map(|l| l.trim().split_once(' '))
        .filter(|(id, n)| n.trim() == name && id.contains('.'))
        .map(|(id, _)| id.to_owned())
        .collect()
}

/// Whether `squeue -h -j J -o %T`'s answer says the job has ended: it is
/// no longer listed, or listed in a final state.
pub(crate) fn job_ended(states: &str) -> Option<String> {
    const FINAL: [&str; 9] = [
        "COMPLETED",
        "CANCELLED",
        "FAILED",
        "TIMEOUT",
        "NODE_FAIL",
        "BOOT_FAIL",
        "DEADLINE",
        "OUT_OF_MEMORY",
        "PREEMPTED",
    ];
    let state = states.lines().next().unwrap_or("").trim();
    if state.is_empty() {
        Some("it left the queue".to_owned())
    } else {
        FINAL.contains(&state).then(|| state.to_owned())
    }
}

/// `KillWait` from `scontrol show config` (`KillWait = 30 sec`).
pub(crate) fn parse_kill_wait(config: &str) -> Option<Duration> {
    config.lines().find_map(|line| {
        let (key, value) = line.split_once('=')?;
        if key.trim() != "KillWait" {
            return None;
        }
        let secs = value.split_whitespace().next()?.parse::<u64>().ok()?;
        Some(Duration::from_secs(secs))
    })
}

/// The node's grace, below `kill_wait` (with 5 s to spare when it can) so
/// that a drain can finish before Slurm sends SIGKILL.
pub(crate) fn fit_grace(grace: Duration, kill_wait: Option<Duration>) -> Duration {
    match kill_wait {
        Some(kw) if grace >= kw => {
            let spare = if kw > Duration::from_secs(10) {
                Duration::from_secs(5)
            } else {
                kw / 2
            };
            kw.saturating_sub(spare)
        }
        _ => grace,
    }
}

/// A word quoted for `sh`.
pub(crate) fn sh_quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@%+,".contains(c));
    if plain {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// What every node is told: where to join, where the key is, how to stop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NodeArgs {
    pub(crate) program: String,
    pub(crate) join: String,
    pub(crate) key_file: String,
    pub(crate) grace: Duration,
    pub(crate) idle_timeout: Duration,
}

impl NodeArgs {
    /// The node's command line, with `workers` worker threads.
    fn argv(&self, workers: &str) -> Vec<String> {
        [
            self.program.as_str(),
            "--join",
            &self.join,
            "--secret-file",
            &self.key_file,
            "--workers",
            workers,
            "--grace",
            &self.grace.as_secs().to_string(),
            "--idle-timeout",
            &self.idle_timeout.as_secs().max(1).to_string(),
            // A joining node needs no listener reachable from elsewhere.
            "--interface",
            "127.0.0.1",
            "--port",
            "0",
            "--log-level",
            "warn",
        ]
        .map(str::to_owned)
        .to_vec()
    }
}

/// `srun` for one step of `job` on `host`, named `name`: one `ppserver`
/// with `cpus` workers.
pub(crate) fn srun_step(
    job: &str,
    host: &str,
    cpus: usize,
    name: &str,
    node: &NodeArgs,
) -> Vec<String> {
    let cpus = cpus.max(1).to_string();
    let name = format!("--job-name={name}");
    let mut argv: Vec<String> = [
        "srun",
        "--jobid",
        job,
        "--nodes=1",
        "--ntasks=1",
        "--nodelist",
        host,
        "--cpus-per-task",
        &cpus,
        // Steps share the node with each other and with the client.
        "--overlap",
        "--kill-on-bad-exit=0",
        &name,
        "--quiet",
    ]
    .map(str::to_owned)
    .to_vec();
    argv.extend(node.argv(&cpus));
    argv
}

/// The `sbatch` command line (the script comes on standard input).
pub(crate) fn sbatch_argv(
    nodes: u32,
    time: &str,
    partition: Option<&str>,
    output: &str,
    extra: &[String],
) -> Vec<String> {
    let mut argv = vec![
        "sbatch".to_owned(),
        "--parsable".to_owned(),
        "--job-name=pp-nodes".to_owned(),
        format!("--nodes={nodes}"),
        format!("--time={time}"),
        format!("--output={output}"),
    ];
    if let Some(p) = partition {
        argv.push(format!("--partition={p}"));
    }
    argv.extend(extra.iter().cloned());
    argv
}

/// The batch script: one step over the allocation, `per_node` `ppserver`s on
/// each node sharing its CPUs (the nodes of an allocation are taken to be alike).
pub(crate) fn batch_script(node: &NodeArgs, per_node: usize) -> String {
    let mut s = String::from("#!/bin/sh\n");
    let _ = writeln!(
        s,
        "# pp nodes for the client at {} (written by ppclient)",
        node.join
    );
    let _ = writeln!(s, "W=$(( ${{SLURM_CPUS_ON_NODE:-1}} / {per_node} ))");
    s.push_str("[ \"$W\" -ge 1 ] || W=1\n");
    // Explicit counts: sbatch options such as --ntasks are in the
    // environment too, and srun would take them.
    s.push_str("N=${SLURM_JOB_NUM_NODES:-1}\n");
    let _ = write!(
        s,
        "exec srun --nodes=\"$N\" --ntasks=$(( N * {per_node} )) --ntasks-per-node={per_node} --cpus-per-task=\"$W\" --kill-on-bad-exit=0 --quiet"
    );
    for word in node.argv("$W") {
        s.push(' ');
        if word == "$W" {
            s.push_str("\"$W\"");
        } else {
            s.push_str(&sh_quote(&word));
        }
    }
    s.push('\n');
    s
}

/// This machine's host name.
fn host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
}

/// Where nodes dial: the advertised host, else the listening IP if specific,
/// else the host name; with the listening port.
pub(crate) fn join_target(
    advertise: Option<&str>,
    listen: SocketAddr,
    host: Option<String>,
) -> Result<String, String> {
    let host = match advertise {
        Some(h) => h.to_owned(),
        None if !listen.ip().is_unspecified() => listen.ip().to_string(),
        None => host.ok_or("cannot tell this machine's host name: set Slurm::advertise")?,
    };
    Ok(match host.parse::<std::net::Ipv6Addr>() {
        Ok(v6) => SocketAddr::from((v6, listen.port())).to_string(),
        Err(_) => format!("{host}:{}", listen.port()),
    })
}

// ---------------------------------------------------------------------------
// I/O: key file, srun, sbatch, scancel.

/// The key file: written with mode 0600 on start, removed on drop.
#[derive(Debug)]
pub(crate) struct KeyFile(PathBuf);

impl KeyFile {
    /// Writes `secret` to a new file in `dir` (made 0700 if missing), mode
    /// 0600, named with `tag`.
    pub(crate) fn write(dir: &Path, tag: &str, secret: &[u8]) -> Result<Self, SlurmError> {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        let err = |path: &Path| {
            let path = path.to_owned();
            move |source| SlurmError::KeyFile { path, source }
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(err(dir))?;
        let path = dir.join(format!("slurm-{}-{tag}.key", std::process::id()));
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(err(&path))?;
        let key = KeyFile(path);
        file.write_all(secret).map_err(err(&key.0))?;
        file.sync_all().map_err(err(&key.0))?;
        Ok(key)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for KeyFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A few random hex digits, to tell this client's files and steps apart.
fn random_tag() -> String {
    ppcore::Key::generate()
        .map(|k| k.fingerprint())
        .unwrap_or_default()
}

/// The text of a key file for the nodes: one `ppk1-` key a line.
pub(crate) fn key_file_text(keys: &ppcore::KeySet) -> Vec<u8> {
    keys.keys()
        .iter()
        .map(|k| k.to_text() + "\n")
        .collect::<String>()
        .into_bytes()
}

fn command_error(command: &str, reason: impl std::fmt::Display) -> SlurmError {
    SlurmError::Command {
        command: command.to_owned(),
        reason: reason.to_string(),
    }
}

/// Runs a short Slurm command; its standard output, or its error output as the error.
fn run(argv: &[String], stdin: Option<&str>) -> Result<String, SlurmError> {
    let name = argv.first().map_or("", String::as_str);
    let mut child = Command::new(name)
        .args(argv.get(1..).unwrap_or_default())
        // The key travels as a file: sbatch would otherwise hand it to the
        // job's environment, where every process of the job can read it.
        .env_remove(ppcore::SECRET_ENV)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| command_error(name, format!("cannot run it: {e}")))?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())
            .map_err(|e| command_error(name, e))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| command_error(name, e))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(command_error(
            name,
            format!("{} ({})", err.trim(), out.status),
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn kill_wait() -> Option<Duration> {
    let argv = ["scontrol", "show", "config"].map(str::to_owned);
    run(&argv, None).ok().and_then(|c| parse_kill_wait(&c))
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

/// The `srun` steps a client started, watched until they end.
#[derive(Default)]
struct Steps {
    /// Per step: its pid and, once it ended, how.
    state: Mutex<Vec<(u32, Option<ExitStatus>)>>,
    cv: Condvar,
}

impl Steps {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(u32, Option<ExitStatus>)>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Watches `child` on a thread of its own until it exits.
    fn watch(self: &Arc<Self>, mut child: Child) -> std::io::Result<()> {
        let i = {
            let mut state = self.lock();
            state.push((child.id(), None));
            state.len() - 1
        };
        let steps = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name("pp-slurm-step".into())
            .spawn(move || {
                let status = child.wait().ok();
                let mut state = steps.lock();
                state[i].1 = Some(status.unwrap_or_else(|| {
                    use std::os::unix::process::ExitStatusExt;
                    ExitStatus::from_raw(1 << 8)
                }));
                steps.cv.notify_all();
            });
        spawned.map(|_| ())
    }

    /// How the steps that ended so far ended.
    fn ended(&self) -> Vec<ExitStatus> {
        self.lock().iter().filter_map(|(_, s)| *s).collect()
    }

    /// Sends `sig` (`-TERM`) to every `srun` still running.
    fn signal(&self, sig: &str) {
        let pids: Vec<u32> = self
            .lock()
            .iter()
            .filter(|(_, s)| s.is_none())
            .map(|(pid, _)| *pid)
            .collect();
        for pid in pids {
            let _ = Command::new("kill")
                .args([sig, &pid.to_string()])
                .stderr(Stdio::null())
                .status();
        }
    }

    /// Waits up to `limit` for every `srun` to end; true if they all did.
    fn wait(&self, limit: Duration) -> bool {
        let deadline = ppcore::limits::deadline(Instant::now(), limit);
        let mut state = self.lock();
        while state.iter().any(|(_, s)| s.is_none()) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            state = self
                .cv
                .wait_timeout(state, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }
}

/// Nodes a client started through Slurm; dropping this stops them.
pub(crate) struct Launched {
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
    pub(crate) fn job_id(&self) -> &str {
        &self.job_id
    }

    /// For a submitted allocation: watches it on a thread of its own, so
    /// that once it has ended (time limit, cancelled, its nodes failed)
    /// jobs nobody else can run fail with the reason instead of waiting.
    pub(crate) fn watch(&self, core: &Arc<Core>) -> std::io::Result<()> {
        if !self.submitted {
            return Ok(());
        }
        let (core, job, output) = (Arc::clone(core), self.job_id.clone(), self.output.clone());
        std::thread::Builder::new()
            .name("pp-slurm-watch".into())
            .spawn(move || watch_allocation(&core, &job, &output))
            .map(|_| ())
    }
}

/// How often a submitted allocation is looked at.
const WATCH_EVERY: Duration = Duration::from_secs(3);

fn watch_allocation(core: &Arc<Core>, job: &str, output: &Path) {
    let argv = ["squeue", "-h", "-j", job, "-o", "%T"].map(str::to_owned);
    let mut ended: Option<String> = None;
    while !core.sleep(WATCH_EVERY) {
        if ended.is_none() {
            ended = match run(&argv, None) {
                Ok(out) => job_ended(&out),
                Err(e) if e.to_string().contains("Invalid job id") => {
                    Some("it left the queue".into())
                }
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
        let Some(how) = &ended else { continue };
        let nobody = core.ncpus.load(std::sync::atomic::Ordering::Acquire) == 0
            && core
                .links()
                .iter()
                .all(|l| matches!(l.state(), NodeState::Down { .. } | NodeState::Failed { .. }));
        if nobody {
            let reason = format!(
                "Slurm job {job} ended ({how}) and no node is left; its nodes' output: {}",
                output.display()
            );
            while let Some(task) = core.queue.try_pop() {
                task.abandon(JobError::new(ErrorKind::NodeLost, reason.clone()));
            }
        }
    }
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
            let list = ["squeue", "-h", "-s", "-j", &self.job_id, "-o", "%i %j"].map(str::to_owned);
            let ids = run(&list, None)
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

/// Starts the nodes: writes the key, then `srun`s one step per node (inside
/// an allocation) or `sbatch`es an allocation. `listen` is where the client
/// listens for them.
pub(crate) fn launch(
    slurm: &Slurm,
    secret: &[u8],
    listen: SocketAddr,
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
                    steps.watch(child).map_err(|e| command_error("srun", e))?;
                    launched.expected += 1;
                }
            }
            Ok(launched)
        }
    }
}

/// Waits until `expected` nodes are up (counted by `up`), a step ends, or
/// the start timeout passes.
pub(crate) fn wait_joined(
    launched: &Launched,
    timeout: Duration,
    up: impl Fn() -> usize,
) -> Result<(), SlurmError> {
    if launched.submitted {
        return Ok(());
    }
    let started = Instant::now();
    let deadline = started + timeout;
    loop {
        let joined = up();
        if joined >= launched.expected {
            return Ok(());
        }
        let ended = launched.steps.ended();
        if !ended.is_empty() || Instant::now() >= deadline {
            let why = if ended.is_empty() {
                String::new()
            } else {
                let how: HashSet<String> = ended.iter().map(ToString::to_string).collect();
                let mut how: Vec<_> = how.into_iter().collect();
                how.sort();
                format!("; {} step(s) ended: {}", ended.len(), how.join(", "))
            };
            return Err(SlurmError::Join {
                target: launched.join.clone(),
                joined,
                expected: launched.expected,
                waited: started.elapsed(),
                why,
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Starts the nodes ([`launch`]), waits for those of an allocation to join
/// ([`wait_joined`]), and watches a submitted one.
pub(crate) fn start(
    slurm: &Slurm,
    secret: &[u8],
    listen: SocketAddr,
    core: &Arc<Core>,
) -> Result<Launched, SlurmError> {
    let launched = launch(slurm, secret, listen)?;
    let up = || {
        core.nodes()
            .iter()
            .filter(|n| matches!(n.state, NodeState::Up { .. }))
            .count()
    };
    wait_joined(&launched, slurm.start_timeout, up)?;
    launched
        .watch(core)
        .map_err(|e| command_error("squeue", format!("cannot watch the job: {e}")))?;
    Ok(launched)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_lists_expand_like_slurm() {
        assert_eq!(expand_hostlist("vm").unwrap(), ["vm"]);
        assert_eq!(
            expand_hostlist("node[01-03,7],gpu1").unwrap(),
            ["node01", "node02", "node03", "node7", "gpu1"]
        );
        assert_eq!(
            expand_hostlist("r[1-2]n[8-9]").unwrap(),
            ["r1n8", "r1n9", "r2n8", "r2n9"]
        );
        assert_eq!(expand_hostlist("a,b").unwrap(), ["a", "b"]);
        for bad in ["", "n[1-", "n[3-1]", "n[a-b]", "n]1[", "n[1-999999999]"] {
            assert!(expand_hostlist(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn cpu_counts_expand_like_slurm() {
        assert_eq!(expand_counts("4(x2),2").unwrap(), [4, 4, 2]);
        assert_eq!(expand_counts("8").unwrap(), [8]);
        for bad in ["", "4(x", "x(x2)", "4(x999999999)"] {
            assert!(expand_counts(bad).is_err(), "{bad:?}");
        }
    }

    fn vars<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn an_allocation_comes_from_slurms_variables() {
        let a = Allocation::from_vars(vars(&[
            ("SLURM_JOB_ID", "42"),
            ("SLURM_JOB_NODELIST", "n[1-3]"),
            ("SLURM_JOB_CPUS_PER_NODE", "4(x2),2"),
        ]))
        .unwrap();
        assert_eq!(a.job_id, "42");
        let got: Vec<_> = a.nodes.iter().map(|n| (n.host.as_str(), n.cpus)).collect();
        assert_eq!(got, [("n1", 4), ("n2", 4), ("n3", 2)]);
        // The old names work too.
        let a = Allocation::from_vars(vars(&[("SLURM_JOBID", "7"), ("SLURM_NODELIST", "x")]));
        assert_eq!(
            a.unwrap().nodes,
            [AllocNode {
                host: "x".into(),
                cpus: 1
            }]
        );
    }

    #[test]
    fn a_missing_or_odd_allocation_is_a_clear_error() {
        let e = Allocation::from_vars(vars(&[])).unwrap_err();
        assert!(e.contains("SLURM_JOB_ID is not set"), "{e}");
        let e = Allocation::from_vars(vars(&[
            ("SLURM_JOB_ID", "1;rm -rf"),
            ("SLURM_JOB_NODELIST", "a"),
        ]))
        .unwrap_err();
        assert!(e.contains("not a job id"), "{e}");
        let e = Allocation::from_vars(vars(&[
            ("SLURM_JOB_ID", "1"),
            ("SLURM_JOB_NODELIST", "a,b"),
            ("SLURM_JOB_CPUS_PER_NODE", "2"),
        ]))
        .unwrap_err();
        assert!(e.contains("names 1 nodes"), "{e}");
    }

    #[test]
    fn sbatch_and_scontrol_answers_parse() {
        assert_eq!(parse_sbatch("1234\n").as_deref(), Some("1234"));
        assert_eq!(parse_sbatch("77;cluster\n").as_deref(), Some("77"));
        assert_eq!(parse_sbatch("Submitted batch job 5"), None);
        assert_eq!(parse_sbatch(""), None);
        let conf = "JobCompType = none\nKillWait                = 30 sec\nKillOnBadExit = 0\n";
        assert_eq!(parse_kill_wait(conf), Some(Duration::from_secs(30)));
        assert_eq!(parse_kill_wait("nothing here"), None);
    }

    #[test]
    fn a_job_has_ended_when_it_left_the_queue_or_is_final() {
        assert_eq!(job_ended("").as_deref(), Some("it left the queue"));
        assert_eq!(job_ended("TIMEOUT\n").as_deref(), Some("TIMEOUT"));
        assert_eq!(job_ended("RUNNING\n"), None);
        assert_eq!(job_ended("PENDING"), None);
        // Preempted and requeued: it comes back.
        assert_eq!(job_ended("REQUEUED"), None);
    }

    #[test]
    fn our_steps_are_found_by_name() {
        let out = "42.0 ppserver-ab12\n42.1 ppserver-ab12\n42.2 ppserver-ffff\n42.batch batch\n42 ppserver-ab12\n";
        assert_eq!(parse_steps(out, "ppserver-ab12"), ["42.0", "42.1"]);
        assert!(parse_steps("", "ppserver-ab12").is_empty());
    }

    #[test]
    fn grace_stays_below_kill_wait() {
        let s = Duration::from_secs;
        assert_eq!(fit_grace(s(20), Some(s(30))), s(20));
        assert_eq!(fit_grace(s(30), Some(s(30))), s(25));
        assert_eq!(fit_grace(s(60), Some(s(8))), s(4));
        assert_eq!(fit_grace(s(60), None), s(60));
    }

    fn node() -> NodeArgs {
        NodeArgs {
            program: "/shared/bin/ppserver".into(),
            join: "login1:40000".into(),
            key_file: "/home/me/.pp/it's.key".into(),
            grace: Duration::from_secs(20),
            idle_timeout: Duration::from_secs(15),
        }
    }

    #[test]
    fn a_step_runs_one_ppserver_with_the_nodes_cpus_and_no_secret_in_argv() {
        let argv = srun_step("42", "n7", 4, "ppserver-ab12", &node());
        let line = argv.join(" ");
        assert!(
            line.starts_with(
                "srun --jobid 42 --nodes=1 --ntasks=1 --nodelist n7 --cpus-per-task 4 --overlap"
            ),
            "{line}"
        );
        assert!(line.contains(" --job-name=ppserver-ab12 "), "{line}");
        assert!(line.contains("/shared/bin/ppserver --join login1:40000 --secret-file /home/me/.pp/it's.key --workers 4 --grace 20 --idle-timeout 15"), "{line}");
        assert!(!line.contains("--secret "), "{line}");
    }

    #[test]
    fn the_batch_script_starts_the_nodes_with_quoted_words() {
        let script = batch_script(&node(), 2);
        assert!(script.starts_with("#!/bin/sh\n"), "{script}");
        assert!(
            script.contains("W=$(( ${SLURM_CPUS_ON_NODE:-1} / 2 ))"),
            "{script}"
        );
        assert!(
            script.contains("exec srun --nodes=\"$N\" --ntasks=$(( N * 2 )) --ntasks-per-node=2 --cpus-per-task=\"$W\""),
            "{script}"
        );
        assert!(
            script.contains("--secret-file '/home/me/.pp/it'\\''s.key' --workers \"$W\""),
            "{script}"
        );
        let argv = sbatch_argv(
            3,
            "1:00:00",
            Some("short"),
            "/h/.pp/slurm-%j.out",
            &["--account=x".into()],
        );
        assert_eq!(
            argv.join(" "),
            "sbatch --parsable --job-name=pp-nodes --nodes=3 --time=1:00:00 --output=/h/.pp/slurm-%j.out --partition=short --account=x"
        );
    }

    #[test]
    fn words_are_quoted_for_sh() {
        assert_eq!(sh_quote("plain/path-1.0"), "plain/path-1.0");
        assert_eq!(sh_quote("a b"), "'a b'");
        assert_eq!(sh_quote("$(rm -rf /)"), "'$(rm -rf /)'");
        assert_eq!(sh_quote(""), "''");
    }

    #[test]
    fn nodes_dial_the_advertised_or_listening_address() {
        let any: SocketAddr = "0.0.0.0:4000".parse().unwrap();
        let lo: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        assert_eq!(
            join_target(None, any, Some("login1".into())).unwrap(),
            "login1:4000"
        );
        assert_eq!(
            join_target(None, lo, Some("login1".into())).unwrap(),
            "127.0.0.1:4000"
        );
        assert_eq!(
            join_target(Some("10.1.2.3"), any, None).unwrap(),
            "10.1.2.3:4000"
        );
        assert_eq!(
            join_target(Some("fe80::1"), any, None).unwrap(),
            "[fe80::1]:4000"
        );
        assert!(join_target(None, any, None).is_err());
    }

    #[test]
    fn the_key_file_is_private_and_removed_on_drop() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("pp-key-test-{}", std::process::id()));
        let key = KeyFile::write(&dir, "ab12", b"s3cret").unwrap();
        let path = key.path().to_owned();
        assert_eq!(std::fs::read(&path).unwrap(), b"s3cret");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        drop(key);
        assert!(!path.exists());
        let _ = std::fs::remove_dir(&dir);
    }
}
