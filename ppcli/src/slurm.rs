//! `ppclient slurm submit`: nodes in an allocation it submits with sbatch.

use crate::args::{ClusterArgs, MaclaurinArgs, SlurmArgs};
use ppclient::Slurm;

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
        cluster: ClusterArgs,
        #[command(flatten)]
        job: MaclaurinArgs,
        /// More sbatch arguments, after `--`.
        #[arg(last = true, value_name = "SBATCH_ARGS")]
        sbatch_args: Vec<String>,
    },
}

/// The allocation `slurm submit` asks for: `node_count` nodes for `time`,
/// in `partition`, with more `sbatch_args`, and the options both ways share.
pub(crate) fn submission(
    node_count: u32,
    time: String,
    partition: Option<String>,
    sbatch_args: Vec<String>,
    args: &SlurmArgs,
) -> Slurm {
    let mut submit = Slurm::submit(node_count, time).sbatch_args(sbatch_args);
    if let Some(p) = partition {
        submit = submit.partition(p);
    }
    args.apply(submit)
}
