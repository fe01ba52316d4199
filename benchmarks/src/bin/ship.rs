//! Shipping a client's program to a stock node (issue 13): what starting
//! costs (built-in job, cold upload, warm cache hit), and what running jobs
//! in the shipped program's worker processes costs against built-in jobs
//! and against rayon. One run; the node is this binary re-run with only the
//! built-in jobs, so every job of this program's own registry is shipped.

use anyhow::{ensure, Result};
use clap::Parser;
use ppclient::Server;
use rayon::prelude::*;
use std::time::{Duration, Instant};

ppclient::job! {
    /// Does nothing: this program's own no-op.
    pub fn ship_noop() {}
}

ppclient::job! {
    /// The Maclaurin partial sum, as this program's own job.
    pub fn ship_maclaurin(x: f64, start: u64, end: u64) -> f64 {
        jobs::maclaurin::call(x, start, end)
    }
}

#[derive(Parser)]
#[command(about = "Cost of shipping a client's program to a stock ppserver")]
struct Args {
    /// No-op jobs for each throughput run.
    #[arg(long, default_value_t = 100_000)]
    jobs: u64,
    /// Maclaurin terms (64 tasks).
    #[arg(long, default_value_t = 1_280_000_000)]
    terms: u64,
    /// Runs of each Maclaurin variant; the best counts.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Node workers (default: all CPUs).
    #[arg(long)]
    workers: Option<usize>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

const X: f64 = 0.999_999_999;
const TASKS: u64 = 64;

fn main() -> Result<std::process::ExitCode> {
    // First: as the node's program worker, this serves the jobs above.
    ppclient::init();
    if let Some(code) = benchmarks::run_as_node_if_asked() {
        return Ok(code);
    }
    let args = Args::parse();
    let workers = args.workers.unwrap_or_else(ppclient::detect_ncpus);
    let cache = std::env::temp_dir().join(format!("pp-bench-ship-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&cache);
    let cache_arg = cache.to_string_lossy().into_owned();
    let node = benchmarks::spawn_stock_node(workers, &["--cache-dir", &cache_arg])?;
    let program_mb = std::fs::metadata(std::env::current_exe()?)?.len() as f64 / 1e6;
    let result = measure(&node.addr, &args, workers, program_mb);
    drop(node);
    let _ = std::fs::remove_dir_all(&cache);
    let m = result?;
    if args.json {
        println!("{}", serde_json::to_string(&m)?);
    } else {
        println!("{}", serde_json::to_string_pretty(&m)?);
    }
    Ok(std::process::ExitCode::SUCCESS)
}

fn client(addr: &str) -> Result<Server> {
    let server = Server::builder()
        .secret(benchmarks::cluster_key()?)
        .ncpus(0)
        .nodes([addr])
        .build()?;
    ensure!(!server.active_nodes().is_empty(), "node {addr} unreachable");
    Ok(server)
}

/// A new client's time from building to its first result of `first`.
fn start(addr: &str, first: impl FnOnce(&Server) -> Result<()>) -> Result<(f64, Server)> {
    let started = Instant::now();
    let server = client(addr)?;
    first(&server)?;
    Ok((started.elapsed().as_secs_f64(), server))
}

fn measure(addr: &str, args: &Args, workers: usize, program_mb: f64) -> Result<serde_json::Value> {
    let shipped_first = |s: &Server| Ok(s.submit(ship_noop, ()).wait()?);
    let builtin_first = |s: &Server| Ok(s.submit(jobs::noop, ()).wait()?);
    // Cold: nothing cached; connect, offer, upload, start a worker, run.
    let (cold_start_s, cold) = start(addr, shipped_first)?;
    drop(cold);
    // Warm: a second client of the same program; the node has it.
    let (warm_start_s, warm) = start(addr, shipped_first)?;
    drop(warm);
    let (builtin_start_s, server) = start(addr, builtin_first)?;
    let remote_jobs_per_s = throughput(args.jobs, || server.submit(jobs::noop, ()))?;
    let shipped_jobs_per_s = throughput(args.jobs, || server.submit(ship_noop, ()))?;
    let ranges: Vec<(u64, u64)> = (0..TASKS)
        .map(|k| jobs::task_range(args.terms, TASKS, k))
        .collect();
    let exact = jobs::maclaurin_exact(X, args.terms);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(workers)
        .build()?;
    // Best of 3 each, alternating, on a machine others share.
    let (rayon_s, rayon_sum) = benchmarks::best_of(args.repeat, || {
        Ok(pool.install(|| {
            ranges
                .par_iter()
                .map(|&(a, b)| jobs::maclaurin::call(X, a, b))
                .sum::<f64>()
        }))
    })?;
    let (shipped_s, shipped_sum) = benchmarks::best_of(args.repeat, || {
        let handles: Vec<_> = ranges
            .iter()
            .map(|&(a, b)| server.submit(ship_maclaurin, (X, a, b)))
            .collect();
        Ok(handles
            .into_iter()
            .map(|h| h.wait())
            .sum::<Result<f64, _>>()?)
    })?;
    for (name, sum) in [("rayon", rayon_sum), ("shipped", shipped_sum)] {
        ensure!(
            ((sum - exact) / exact).abs() <= 1e-9,
            "{name} sum {sum} is off {exact}"
        );
    }
    let status = ppclient::node_status(addr, benchmarks::cluster_key()?, Duration::from_secs(5))?;
    ensure!(
        status.programs_uploaded == 1,
        "uploaded {} times",
        status.programs_uploaded
    );
    Ok(serde_json::json!({
        "program_mb": program_mb,
        "builtin_start_s": builtin_start_s,
        "cold_start_s": cold_start_s,
        "warm_start_s": warm_start_s,
        "remote_jobs_per_s": remote_jobs_per_s,
        "shipped_jobs_per_s": shipped_jobs_per_s,
        "rayon_s": rayon_s,
        "shipped_s": shipped_s,
        "workers": workers,
        "ratios": {
            "rayon_over_shipped": rayon_s / shipped_s,
            "shipped_over_remote_jobs_per_s": shipped_jobs_per_s / remote_jobs_per_s,
            "warm_over_builtin_start": warm_start_s / builtin_start_s,
            "cold_minus_builtin_s_per_mb": (cold_start_s - builtin_start_s) / program_mb,
        },
        "uploads": status.programs_uploaded,
    }))
}

fn throughput<T>(jobs: u64, submit: impl Fn() -> ppclient::JobHandle<T>) -> Result<f64>
where
    T: Send + 'static,
{
    let started = Instant::now();
    let handles: Vec<_> = (0..jobs).map(|_| submit()).collect();
    for h in handles {
        h.wait()?;
    }
    Ok(jobs as f64 / started.elapsed().as_secs_f64())
}
