//! Overhead of the job machinery: throughput of no-op jobs and the latency of
//! one submit-then-wait round trip.

use anyhow::Result;
use clap::Parser;
use ppclient::Server;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(about = "Job throughput and round-trip latency of the pp job cluster")]
struct Args {
    /// No-op jobs for the throughput run.
    #[arg(long, default_value_t = 1_000_000)]
    jobs: u64,
    /// Submit-then-wait round trips for the latency run.
    #[arg(long, default_value_t = 10_000)]
    round_trips: usize,
    /// Local worker threads (default: all CPUs).
    #[arg(long)]
    ncpus: Option<usize>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

fn main() -> Result<()> {
    let args = Args::parse();
    // First, while the heap is fresh: freed memory would hide the growth.
    let queued_mb = queued_memory(args.jobs)?;
    let mut builder = Server::builder();
    if let Some(n) = args.ncpus {
        builder = builder.ncpus(n);
    }
    let server = builder.build()?;
    let jobs_per_s = throughput(&server, args.jobs)?;
    let (p50, p99) = latency(&server, args.round_trips)?;
    if args.json {
        let out = serde_json::json!({
            "ncpus": server.ncpus(),
            "jobs": args.jobs,
            "local_jobs_per_s": jobs_per_s,
            "local_rtt_p50_us": p50,
            "local_rtt_p99_us": p99,
            "queued_rss_mb": queued_mb,
        });
        println!("{out}");
    } else {
        println!("local pool, {} workers", server.ncpus());
        println!(
            "  throughput: {:>12.0} no-op jobs/s ({} jobs)",
            jobs_per_s, args.jobs
        );
        println!("  submit-then-wait: p50 {p50:.1} µs, p99 {p99:.1} µs");
        println!(
            "  {} queued no-op jobs: {queued_mb:.0} MB of RSS",
            args.jobs
        );
    }
    Ok(())
}

fn throughput(server: &Server, jobs: u64) -> Result<f64> {
    let started = Instant::now();
    let handles: Vec<_> = (0..jobs).map(|_| server.submit(jobs::noop, ())).collect();
    for h in handles {
        h.wait()?;
    }
    Ok(jobs as f64 / started.elapsed().as_secs_f64())
}

fn latency(server: &Server, round_trips: usize) -> Result<(f64, f64)> {
    let mut times = Vec::with_capacity(round_trips);
    for i in 0..round_trips {
        let started = Instant::now();
        let v = server.submit(jobs::echo_u64, (i as u64,)).wait()?;
        times.push(started.elapsed());
        anyhow::ensure!(v == i as u64, "echo returned {v}, sent {i}");
    }
    times.sort();
    let at = |q: f64| -> f64 {
        let i = ((times.len() as f64 - 1.0) * q).round() as usize;
        times
            .get(i)
            .copied()
            .unwrap_or(Duration::ZERO)
            .as_secs_f64()
            * 1e6
    };
    Ok((at(0.5), at(0.99)))
}

/// RSS growth while `jobs` no-op jobs sit queued (no workers), in MB.
fn queued_memory(jobs: u64) -> Result<f64> {
    let server = Server::builder().ncpus(0).build()?;
    let before = benchmarks::rss_bytes()?;
    let handles: Vec<_> = (0..jobs).map(|_| server.submit(jobs::noop, ())).collect();
    let after = benchmarks::rss_bytes()?;
    server.set_ncpus(ppclient::detect_ncpus());
    for h in handles {
        h.wait()?;
    }
    Ok(after.saturating_sub(before) as f64 / 1e6)
}
