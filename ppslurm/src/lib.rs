//! Nodes started by Slurm: one `ppserver` per allocated node (or several),
//! each dialing back to the listening client (`ppserver --join`).
//!
//! Users reach this crate through `ppclient`, which re-exports [`Slurm`] and
//! [`SlurmError`] (`ppclient::Slurm`) and starts the nodes when a server is
//! built with `Builder::slurm` or `Builder::slurm_with`. The client hands
//! itself to [`start`] as a [`Client`]: what Slurm mode needs of it (how many
//! nodes are up or down, a wait on its condvar for their changes, failing
//! the jobs it has queued), so that this crate does not depend on `ppclient`.
//!
//! Two ways in:
//! - [`Slurm::allocation`] (what `Builder::slurm` uses): the client runs
//!   inside an allocation (`salloc`, an `sbatch` script) and starts one job
//!   step per node with `srun`, workers from that node's CPUs.
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
//! | module | owns |
//! | --- | --- |
//! | `config` | [`Slurm`]: how the nodes are started (in this allocation or a submitted one) and their options |
//! | `error` | [`SlurmError`] |
//! | `client` | [`Client`] and [`NodeCounts`]: what Slurm mode needs of the client |
//! | `hostlist` | pure: the allocation from Slurm's variables (host lists, CPUs per node) |
//! | `argv` | pure: the `srun`, `sbatch` and node command lines, the batch script, where nodes dial, the grace below `KillWait` |
//! | `answers` | pure: what `sbatch`, `squeue` and `scontrol` answer |
//! | `command` | runs a Slurm command; its typed failure (the job id is unknown to Slurm, or another) |
//! | `keyfile` | the key file the nodes read (0600, removed on drop) |
//! | `steps` | the `srun` steps a client started, watched until they end |
//! | `launch` | [`start`]: writes the key, starts the nodes, waits for them to join, watches a submitted allocation; [`Launched`] stops them on drop |
#![deny(missing_docs)]
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

mod answers;
mod argv;
mod client;
mod command;
mod config;
mod error;
mod hostlist;
mod keyfile;
mod launch;
mod steps;

pub use client::{Client, NodeCounts};
pub use config::Slurm;
pub use error::SlurmError;
pub use keyfile::key_file_text;
pub use launch::{start, Launched};
