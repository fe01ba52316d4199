//! Many loopback nodes at once (issue 34, part 1): `--nodes` ppserver
//! processes of one worker each, spawned by this binary, run the Maclaurin
//! series in `--tasks` tasks beside rayon on the same terms; then many tiny
//! tasks go through all of them and, in the same sitting, through one node
//! with two workers.
//!
//! `nodes_over_rayon` is `rayon_s / nodes_s` (best of `--repeat` each; the
//! goal is 0.95) and `tiny_nodes_over_one_node` the rate of the tiny tasks
//! through the many nodes over their rate through the one node (best of
//! `--repeat` each; the goal is 0.75).

use anyhow::{ensure, Result};
use clap::Parser;
use jobs::{maclaurin, maclaurin_exact, task_range};
use ppclient::Server;
use rayon::prelude::*;
use std::time::Instant;

#[derive(Parser)]
#[command(about = "The Maclaurin series through many loopback nodes, beside rayon")]
struct Args {
    /// Nodes of one worker each.
    #[arg(long, default_value_t = 64)]
    nodes: usize,
    /// Tasks of the large run.
    #[arg(long, default_value_t = 6400)]
    tasks: u64,
    /// Terms of the large run, in all.
    #[arg(long, default_value_t = 1_280_000_000)]
    terms: u64,
    /// Tasks of the tiny run.
    #[arg(long, default_value_t = 640_000)]
    tiny_tasks: u64,
    /// Terms of the tiny run, in all.
    #[arg(long, default_value_t = 640_000)]
    tiny_terms: u64,
    /// Runs of each; the best counts.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

const X: f64 = 0.999_999;

/// The series over `tasks` tasks on `server`, checked against the closed
/// form; its wall time in seconds.
fn run(server: &Server, terms: u64, tasks: u64) -> Result<f64> {
    let started = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|k| {
            let (a, b) = task_range(terms, tasks, k);
            server.submit(maclaurin, (X, a, b))
        })
        .collect();
    let mut sum = 0.0;
    for h in handles {
        sum += h.wait()?;
    }
    let secs = started.elapsed().as_secs_f64();
    let exact = maclaurin_exact(X, terms);
    ensure!(
        ((sum - exact) / exact).abs() <= 1e-9,
        "sum {sum} is off {exact}"
    );
    Ok(secs)
}

/// A client of `nodes` (no local workers), every one of them up.
fn client(nodes: &[benchmarks::SpawnedNode]) -> Result<Server> {
    let server = Server::builder()
        .secret(benchmarks::cluster_key()?)
        .ncpus(0)
        .nodes(nodes.iter().map(|n| n.addr.clone()))
        .require_nodes(nodes.len())
        .build()?;
    Ok(server)
}

fn main() -> Result<std::process::ExitCode> {
    if let Some(code) = benchmarks::run_as_node_if_asked() {
        return Ok(code);
    }
    let args = Args::parse();
    let many = (0..args.nodes)
        .map(|_| benchmarks::spawn_node(1))
        .collect::<Result<Vec<_>>>()?;
    let one = vec![benchmarks::spawn_node(2)?];
    let (many_client, one_client) = (client(&many)?, client(&one)?);
    let ranges: Vec<(u64, u64)> = (0..args.tasks)
        .map(|k| task_range(args.terms, args.tasks, k))
        .collect();
    let mut rayon_s = f64::INFINITY;
    let mut nodes_s = f64::INFINITY;
    for _ in 0..args.repeat.max(1) {
        // Alternating, so that both see the same moments of a noisy machine.
        let started = Instant::now();
        let sum: f64 = ranges
            .par_iter()
            .map(|&(a, b)| maclaurin::call(X, a, b))
            .sum();
        rayon_s = rayon_s.min(started.elapsed().as_secs_f64());
        std::hint::black_box(sum);
        nodes_s = nodes_s.min(run(&many_client, args.terms, args.tasks)?);
    }
    let mut tiny_many_s = f64::INFINITY;
    let mut tiny_one_s = f64::INFINITY;
    for _ in 0..args.repeat.max(1) {
        tiny_many_s = tiny_many_s.min(run(&many_client, args.tiny_terms, args.tiny_tasks)?);
        tiny_one_s = tiny_one_s.min(run(&one_client, args.tiny_terms, args.tiny_tasks)?);
    }
    let tiny = args.tiny_tasks as f64;
    let out = serde_json::json!({
        "nodes": args.nodes,
        "tasks": args.tasks,
        "terms": args.terms,
        "rayon_s": rayon_s,
        "nodes_s": nodes_s,
        "nodes_over_rayon": rayon_s / nodes_s,
        "tiny_tasks": args.tiny_tasks,
        "tiny_nodes_jobs_per_s": tiny / tiny_many_s,
        "tiny_one_node_jobs_per_s": tiny / tiny_one_s,
        "tiny_nodes_over_one_node": tiny_one_s / tiny_many_s,
    });
    match args.json {
        true => println!("{out}"),
        false => {
            println!(
                "{} nodes: {nodes_s:.3} s for {} tasks against rayon's {rayon_s:.3} s ({:.2} x)",
                args.nodes,
                args.tasks,
                rayon_s / nodes_s
            );
            println!(
                "tiny tasks: {:.0} jobs/s through {} nodes, {:.0} through one node of 2 workers ({:.2} x)",
                tiny / tiny_many_s,
                args.nodes,
                tiny / tiny_one_s,
                tiny_one_s / tiny_many_s
            );
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}
