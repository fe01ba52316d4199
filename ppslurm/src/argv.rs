//! Pure: the command lines (`srun` for one step, `sbatch`, the node's own),
//! the batch script, where the nodes dial, and the nodes' grace below
//! Slurm's `KillWait`.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

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
            // Offer what the allocation gives: memory, GPUs.
            "--slurm",
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
