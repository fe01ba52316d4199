//! `ppclient ... --slurm` and `ppclient slurm submit`: nodes started by Slurm.

use ppclient::Slurm;
use std::path::PathBuf;
use std::time::Duration;

/// How Slurm starts the nodes, for `run ... --slurm` and `slurm submit`.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct SlurmArgs {
    /// `ppserver`s per Slurm node, each its own job step with a share of the node's CPUs.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub(crate) servers_per_node: usize,
    /// The node program on the nodes (default: `ppserver` beside this program, else on PATH).
    #[arg(long, value_name = "PATH")]
    pub(crate) node_program: Option<PathBuf>,
    /// A directory the nodes can read, for the key file (default: ~/.pp).
    #[arg(long, value_name = "DIR")]
    pub(crate) key_dir: Option<PathBuf>,
    /// Host name or address the nodes dial back to (default: this machine's host name).
    #[arg(long, value_name = "HOST")]
    pub(crate) advertise: Option<String>,
    /// Seconds a Slurm node lets running jobs finish when Slurm stops it (kept below KillWait).
    #[arg(long, default_value_t = 20, value_name = "SECS")]
    pub(crate) node_grace: u64,
    /// Seconds a Slurm node lives without its client before it exits.
    #[arg(long, default_value_t = 15, value_name = "SECS")]
    pub(crate) node_idle_timeout: u64,
}

/// `ppclient slurm ...`.
#[derive(clap::Subcommand)]
pub(crate) enum SlurmCommand {
    /// From a login node: submit an allocation with sbatch whose nodes join
    /// this client, run the Maclaurin job on them, cancel the allocation.
    Submit {
        /// Nodes to allocate.
        #[arg(long, short = 'N')]
        node_count: u32,
        /// Time limit, in Slurm's format (`30`, `1:00:00`, `1-0`).
        #[arg(long, short = 't')]
        time: String,
        /// The partition.
        #[arg(long, short = 'p')]
        partition: Option<String>,
        #[command(flatten)]
        cluster: crate::ClusterArgs,
        #[command(flatten)]
        job: crate::MaclaurinArgs,
        /// More sbatch arguments, after `--`.
        #[arg(last = true, value_name = "SBATCH_ARGS")]
        sbatch_args: Vec<String>,
    },
}

impl SlurmArgs {
    /// The options common to both ways, on top of `base`.
    pub(crate) fn apply(&self, base: Slurm) -> Slurm {
        let mut s = base
            .servers_per_node(self.servers_per_node)
            .grace(Duration::from_secs(self.node_grace))
            .idle_timeout(Duration::from_secs(self.node_idle_timeout));
        if let Some(p) = &self.node_program {
            s = s.program(p);
        }
        if let Some(d) = &self.key_dir {
            s = s.key_dir(d);
        }
        if let Some(h) = &self.advertise {
            s = s.advertise(h);
        }
        s
    }
}
