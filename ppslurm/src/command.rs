//! Runs a short Slurm command (`sbatch`, `squeue`, `scancel`, `scontrol`):
//! its standard output, or a typed failure.

use crate::answers::{parse_kill_wait, unknown_job};
use crate::error::SlurmError;
use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Why a Slurm command failed. Both kinds display as `command: reason`,
/// the reason quoting the command's own error output.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CommandError {
    /// Slurm does not know the job id it was asked about: the job ended
    /// long enough ago to have left its memory.
    #[error("{command}: {reason}")]
    UnknownJob {
        /// The command.
        command: String,
        /// What it said.
        reason: String,
    },
    /// It could not be run, or failed for another reason.
    #[error("{command}: {reason}")]
    Failed {
        /// The command.
        command: String,
        /// What went wrong.
        reason: String,
    },
}

impl CommandError {
    fn failed(command: &str, reason: impl std::fmt::Display) -> Self {
        CommandError::Failed {
            command: command.to_owned(),
            reason: reason.to_string(),
        }
    }
}

impl From<CommandError> for SlurmError {
    fn from(e: CommandError) -> Self {
        match e {
            CommandError::UnknownJob { command, reason }
            | CommandError::Failed { command, reason } => SlurmError::Command { command, reason },
        }
    }
}

/// Runs `argv` (with `stdin` as its standard input, if given); its standard
/// output, or its error output as the error.
pub(crate) fn run(argv: &[String], stdin: Option<&str>) -> Result<String, CommandError> {
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
        .map_err(|e| CommandError::failed(name, format!("cannot run it: {e}")))?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())
            .map_err(|e| CommandError::failed(name, e))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| CommandError::failed(name, e))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let reason = format!("{} ({})", err.trim(), out.status);
        return Err(if unknown_job(&err) {
            CommandError::UnknownJob {
                command: name.to_owned(),
                reason,
            }
        } else {
            CommandError::failed(name, reason)
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `squeue -h -j job -o %T`: the job's state, empty once it left the queue.
pub(crate) fn job_state(job: &str) -> Result<String, CommandError> {
    run(
        &["squeue", "-h", "-j", job, "-o", "%T"].map(str::to_owned),
        None,
    )
}

/// `squeue -h -s -j job -o "%i %j"`: the job's steps, a line each.
pub(crate) fn job_steps(job: &str) -> Result<String, CommandError> {
    run(
        &["squeue", "-h", "-s", "-j", job, "-o", "%i %j"].map(str::to_owned),
        None,
    )
}

/// Slurm's `KillWait`, if `scontrol show config` tells it.
pub(crate) fn kill_wait() -> Option<Duration> {
    let argv = ["scontrol", "show", "config"].map(str::to_owned);
    run(&argv, None).ok().and_then(|c| parse_kill_wait(&c))
}
