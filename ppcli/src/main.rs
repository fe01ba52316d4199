//! `ppclient`: run a built-in job on a pp cluster, or show a node's status.
//!
//! | module | owns |
//! | --- | --- |
//! | `main` | the commands (`run`, `status`, `slurm`, `secret`) and running them |
//! | `args` | the arguments `run maclaurin` and `slurm submit` share: nodes, the job's, Slurm's |
//! | `slurm` | `slurm submit`: its arguments and the allocation it asks for |

use crate::args::ClusterArgs;
use anyhow::{bail, Result};
use clap::{Parser, Subcommand};
use ppclient::{KeySet, NodeState, Server};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

mod args;
mod slurm;

#[derive(Parser)]
#[command(
    name = "ppclient",
    version,
    about = "Run jobs on a pp cluster; ask a node how it is"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// File holding the cluster's key (`ppclient secret new FILE` makes
    /// one); default: the `PP_SECRET` environment variable. No option takes
    /// the key itself: on the command line `ps` would show it.
    #[arg(long, global = true, value_name = "FILE")]
    secret_file: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Run a built-in job split into tasks over the local pool and nodes.
    Run {
        #[command(subcommand)]
        job: RunJob,
    },
    /// Print a node's version, workers, jobs, uptime and counters.
    Status {
        /// The node, as host or host:port.
        node: String,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
        /// Seconds to wait for the node.
        #[arg(long, default_value_t = 3.0, value_parser = ppcore::limits::parse_secs)]
        timeout: f64,
    },
    /// Run on nodes that Slurm starts in an allocation it is asked for.
    Slurm {
        #[command(subcommand)]
        command: slurm::SlurmCommand,
    },
    /// Make and inspect keys.
    Secret {
        #[command(subcommand)]
        action: SecretCmd,
    },
}

#[derive(Subcommand)]
enum SecretCmd {
    /// Write a new random key to FILE (mode 0600; an existing file is never overwritten).
    New {
        /// Where to write the key.
        file: PathBuf,
    },
    /// Print the fingerprints of the keys in FILE (never the keys), to compare
    /// machines without showing a key.
    Fingerprint {
        /// A key file.
        file: PathBuf,
    },
}

#[derive(Subcommand)]
enum RunJob {
    /// The Maclaurin series of 1/(1-x), split into tasks.
    Maclaurin {
        #[command(flatten)]
        cluster: ClusterArgs,
        /// Terms of the series.
        #[arg(long, default_value_t = 12_800_000)]
        terms: u64,
        /// Tasks the terms are split into.
        #[arg(long, default_value_t = 64)]
        tasks: u64,
        /// The x of 1/(1-x).
        #[arg(long, default_value_t = 0.999999)]
        x: f64,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Errors quote peers (reasons, job errors): one escaped line.
            eprintln!("ppclient: {}", ppcore::escape(&format!("{e:#}")));
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    if let Command::Secret { action } = &cli.command {
        return secret(action);
    }
    let env = std::env::var(ppclient::SECRET_ENV)
        .ok()
        .filter(|v| !v.is_empty());
    let secret = match (&cli.secret_file, env) {
        (Some(path), _) => Some(KeySet::read_file(path)?),
        (None, Some(s)) => Some(KeySet::parse(&s)?),
        (None, None) => None,
    };
    let secret = secret.as_ref();
    match cli.command {
        Command::Status {
            node,
            json,
            timeout,
        } => status(&node, secret, json, timeout),
        Command::Run {
            job:
                RunJob::Maclaurin {
                    cluster,
                    terms,
                    tasks,
                    x,
                },
        } => maclaurin(&cluster, secret, terms, tasks, x),
        Command::Slurm {
            command:
                slurm::SlurmCommand::Submit {
                    node_count,
                    time,
                    partition,
                    cluster,
                    job,
                    sbatch_args,
                },
        } => {
            let submit = slurm::submission(
                node_count,
                time,
                partition,
                sbatch_args,
                &cluster.slurm_args,
            );
            let server = connect(&cluster, &Via::Nodes(&cluster.nodes), secret, Some(submit))?;
            maclaurin_on(&server, cluster.json, job.terms, job.tasks, job.x)
        }
        Command::Secret { .. } => Ok(()),
    }
}

fn secret(action: &SecretCmd) -> Result<()> {
    match action {
        SecretCmd::New { file } => {
            let fingerprint = ppcore::write_new_key_file(file)?;
            println!(
                "wrote a new key to {} (fingerprint {fingerprint}); copy it to every node and client \
                 and pass it with --secret-file FILE",
                file.display()
            );
        }
        SecretCmd::Fingerprint { file } => {
            for key in ppcore::KeySet::read_file(file)?.keys() {
                println!("{}", key.fingerprint());
            }
        }
    }
    Ok(())
}

fn status(node: &str, keys: Option<&KeySet>, json: bool, timeout: f64) -> Result<()> {
    let keys = keys.ok_or(ppcore::KeyError::Missing)?;
    let s = ppclient::node_status_with(node, keys, Duration::from_secs_f64(timeout))?;
    if json {
        let jobs: Vec<_> = s.jobs.iter().map(|j| &j.name).collect();
        let out = serde_json::json!({
            "node": node, "version": s.version, "workers": s.workers, "jobs": jobs,
            "uptime_s": s.uptime_s, "connections": s.connections, "jobs_done": s.jobs_done,
            "jobs_failed": s.jobs_failed, "jobs_active": s.jobs_active,
            "programs_uploaded": s.programs_uploaded, "programs_cached": s.programs_cached,
            "program_workers": s.program_workers, "programs_waiting": s.programs_waiting,
            "program_cache": s.program_cache, "program_refused": s.program_refused,
            "kept_values": s.kept_values, "kept_bytes": s.kept_bytes,
            "jobs_waiting": s.jobs_waiting,
            "transfers_in": s.transfers_in, "transfer_in_bytes": s.transfer_in_bytes,
            "transfers_out": s.transfers_out, "transfer_out_bytes": s.transfer_out_bytes,
            "spilled_bytes": s.spilled_bytes, "spill_reads": s.spill_reads,
            "resources": resources_json(&s), "tags": s.offer.as_ref().map_or(&[][..], |o| o.tags()),
            "cpus_in_use": s.cpus_in_use, "memory": s.offer.as_ref().and_then(|o| o.memory()),
            "memory_in_use": s.memory_in_use,
        });
        println!("{out}");
    } else {
        println!("node        {node}");
        println!("version     {}", ppcore::escape(&s.version));
        println!("workers     {}", s.workers);
        println!("uptime      {:.1} s", s.uptime_s);
        println!("connections {}", s.connections);
        println!(
            "jobs done   {} ({} failed), {} active",
            s.jobs_done, s.jobs_failed, s.jobs_active
        );
        println!(
            "jobs        {}",
            s.jobs
                .iter()
                .map(|j| ppcore::escape(&j.name))
                .collect::<Vec<_>>()
                .join(", ")
        );
        println!(
            "programs    {} uploaded, {} cached, {} workers, {} waiting; cache {}",
            s.programs_uploaded,
            s.programs_cached,
            s.program_workers,
            s.programs_waiting,
            ppcore::escape(&s.program_cache)
        );
        if let Some(why) = &s.program_refused {
            println!("refused     {}", ppcore::escape(why));
        }
        println!(
            "kept        {} results ({} bytes), {} jobs waiting for inputs",
            s.kept_values, s.kept_bytes, s.jobs_waiting
        );
        println!(
            "transfers   {} in ({} bytes), {} out ({} bytes), node to node",
            s.transfers_in, s.transfer_in_bytes, s.transfers_out, s.transfer_out_bytes
        );
        println!(
            "spilled     {} bytes on disk, {} read back",
            s.spilled_bytes, s.spill_reads
        );
        if let Some(offer) = &s.offer {
            println!("offer       {}", ppcore::escape(&offer.to_string()));
            let used: Vec<String> = s
                .resources_in_use
                .iter()
                .map(|(name, m)| format!("{}={}", ppcore::escape(name), *m as f64 / 1000.0))
                .collect();
            println!(
                "in use      cpus={} memory={} {}",
                s.cpus_in_use,
                ppcore::resources::bytes_text(s.memory_in_use),
                used.join(" ")
            );
        }
    }
    Ok(())
}

/// `{"gpu": {"offered": 2, "in_use": 0.5}, ...}` of a node's status.
fn resources_json(s: &ppclient::NodeStatus) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    for (name, count) in s.offer.as_ref().map_or(&[][..], |o| o.named()) {
        let used = s
            .resources_in_use
            .iter()
            .find(|(n, _)| n == name)
            .map_or(0, |(_, m)| *m);
        out.insert(
            name.clone(),
            serde_json::json!({"offered": count, "in_use": used as f64 / 1000.0}),
        );
    }
    serde_json::Value::Object(out)
}

/// How a run finds its nodes.
enum Via<'a> {
    Nodes(&'a [String]),
    Discovery(&'a str),
}

/// The runs asked for: by name, by discovery, or both one after the other.
fn vias(cluster: &ClusterArgs) -> Vec<Via<'_>> {
    let mut vias = Vec::new();
    if !cluster.nodes.is_empty() || cluster.discover.is_none() {
        vias.push(Via::Nodes(&cluster.nodes));
    }
    if let Some(pattern) = &cluster.discover {
        vias.push(Via::Discovery(pattern));
    }
    vias
}

fn connect(
    cluster: &ClusterArgs,
    via: &Via<'_>,
    keys: Option<&KeySet>,
    submit: Option<ppclient::Slurm>,
) -> Result<Server> {
    // Refusals are this command's one error line (below), not the library's.
    let mut builder = Server::builder().report_refusals(false);
    if let Some(keys) = keys {
        builder = builder.keys(keys.clone());
    }
    // With Slurm the builder's default is no local workers.
    if let Some(n) = cluster.ncpus {
        builder = builder.ncpus(n);
    }
    if let Some(addr) = &cluster.dashboard {
        builder = builder.dashboard(addr.as_str());
    }
    if let Some(addr) = &cluster.listen {
        builder = builder.listen(addr.clone());
    }
    for name in &cluster.nodes_from_dns {
        builder = builder.nodes_from_dns(name.clone());
    }
    builder = match (&cluster.journal, cluster.journal_reset) {
        (Some(path), false) => builder.journal(path),
        (Some(path), true) => builder.journal_reset(path),
        (None, _) => builder,
    };
    let open_ended =
        submit.is_some() || !cluster.nodes_from_dns.is_empty() || cluster.listen.is_some();
    if let Some(submit) = submit {
        builder = builder.slurm_with(submit);
    } else if cluster.slurm {
        builder = builder.slurm_with(cluster.slurm_args.apply(ppclient::Slurm::allocation()));
    }
    builder = match *via {
        Via::Nodes(nodes) => builder.nodes(nodes.iter().cloned()),
        Via::Discovery(pattern) => match cluster.discover_via {
            Some(target) => builder.discover_via(pattern, target),
            None => builder.discover(pattern),
        },
    };
    let server = builder.build()?;
    if let Some(addr) = server.dashboard_addr() {
        eprintln!("dashboard: http://{addr}/");
    }
    if let Some(job) = server.slurm_job() {
        let at = server
            .listen_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        eprintln!("ppclient: nodes in Slurm job {job} join at {at}");
    }
    for node in server.nodes() {
        if let NodeState::Failed { reason } = node.state {
            // A node named on the command line must work; a discovered one
            // is only a hint (anyone can answer a probe): warn and go on.
            match via {
                Via::Nodes(_) => bail!("node {} refused: {reason}", node.name),
                // (Reasons quote peers escaped already.)
                Via::Discovery(_) => eprintln!(
                    "ppclient: skipping discovered node {}: {reason}",
                    ppcore::escape(&node.name),
                ),
            }
        }
    }
    if server.ncpus() == 0 && server.active_nodes().is_empty() && !open_ended {
        match via {
            Via::Nodes(nodes) => {
                bail!("no local workers (--ncpus 0) and no node reachable among {nodes:?}")
            }
            Via::Discovery(p) => {
                bail!("no local workers (--ncpus 0) and no node found by discovery ({p})")
            }
        }
    }
    Ok(server)
}

fn maclaurin(
    cluster: &ClusterArgs,
    secret: Option<&KeySet>,
    terms: u64,
    tasks: u64,
    x: f64,
) -> Result<()> {
    for via in vias(cluster) {
        if !cluster.json {
            match via {
                Via::Nodes(n) if !n.is_empty() => println!("== nodes by name: {}", n.join(", ")),
                Via::Nodes(_) => {}
                Via::Discovery(p) => println!("== nodes by UDP discovery ({p})"),
            }
        }
        let server = connect(cluster, &via, secret, None)?;
        maclaurin_on(&server, cluster.json, terms, tasks, x)?;
    }
    Ok(())
}

fn maclaurin_on(server: &Server, json: bool, terms: u64, tasks: u64, x: f64) -> Result<()> {
    let started = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|k| {
            let (lo, hi) = jobs::task_range(terms, tasks, k);
            server.submit(jobs::maclaurin, (x, lo, hi))
        })
        .collect();
    let bar =
        (!json && std::io::stdout().is_terminal()).then(|| indicatif::ProgressBar::new(tasks));
    // Summed in task order, not as they finish: the same terms give the
    // same sum to the last bit, however the run went (or was resumed from
    // a journal).
    let mut parts = vec![0.0; handles.len()];
    for (k, result) in server.as_completed(handles) {
        parts[k] = result?;
        if let Some(bar) = &bar {
            bar.inc(1);
        }
    }
    let sum: f64 = parts.iter().sum();
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let seconds = started.elapsed().as_secs_f64();
    let exact = jobs::maclaurin_exact(x, terms);
    let rel = ((sum - exact) / exact).abs();
    let stats = server.stats();
    if json {
        let states = server.nodes();
        let nodes: Vec<_> = stats
            .nodes
            .iter()
            .map(|n| {
                let state = states
                    .iter()
                    .find(|s| s.name == n.node)
                    .map_or_else(|| "local".to_owned(), |s| state_text(&s.state));
                serde_json::json!({
                    "node": n.node, "workers": n.workers, "jobs": n.jobs,
                    "failed": n.failed, "job_time_s": n.job_time.as_secs_f64(),
                    "state": state,
                })
            })
            .collect();
        let out = serde_json::json!({
            "job": "maclaurin", "x": x, "terms": terms, "tasks": tasks,
            "sum": sum, "exact": exact, "relative_error": rel, "seconds": seconds,
            "ncpus": server.ncpus(), "nodes": nodes, "retried": stats.retried,
            "submitted": stats.submitted, "succeeded": stats.succeeded,
            "failed": stats.failed, "active": stats.active,
            "ran": stats.ran, "from_journal": stats.from_journal,
            "reclaimed": stats.reclaimed,
        });
        println!("{out}");
    } else {
        println!("Maclaurin series of 1/(1-x), x = {x}, {terms} terms, {tasks} tasks");
        println!("sum   = {sum:.12}");
        println!("exact = {exact:.12} (relative error {rel:.1e})");
        println!("time  = {seconds:.4} s");
        println!("{stats}");
    }
    if rel > 1e-9 {
        bail!("the sum is off the closed form by {rel:e}");
    }
    Ok(())
}

/// A node's state in `--json` output, as it always read: the state's
/// `Debug` form, with a refusal's reason quoted as the text it is.
fn state_text(state: &NodeState) -> String {
    match state {
        NodeState::Failed { reason } => format!("Failed {{ reason: {:?} }}", reason.to_string()),
        NodeState::Down { reason } => format!("Down {{ reason: {:?} }}", reason.to_string()),
        other => format!("{other:?}"),
    }
}
