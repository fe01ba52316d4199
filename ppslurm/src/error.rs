//! [`SlurmError`]: why the Slurm nodes could not be started.

use std::path::PathBuf;
use std::time::Duration;

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
        /// Where the nodes were told to join (see [`Slurm::advertise`](crate::config::Slurm::advertise)).
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

/// A [`SlurmError::Command`]: `command` failed for `reason`.
pub(crate) fn command_error(command: &str, reason: impl std::fmt::Display) -> SlurmError {
    SlurmError::Command {
        command: command.to_owned(),
        reason: reason.to_string(),
    }
}
