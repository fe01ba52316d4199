//! What the dashboard costs: no-op jobs/s through the local pool without
//! and with the dashboard (a page watching its event stream), interleaved
//! runs, the median of each.
//!
//! Each run is a fresh process (this binary with `--child off|on`): two
//! servers in one process differ in more than the dashboard (memory layout,
//! which pool warmed up first), which alone can move the ratio by a few percent.

use anyhow::{ensure, Context, Result};
use clap::Parser;
use ppclient::Server;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Instant;

#[derive(Parser)]
#[command(about = "No-op jobs/s through the local pool without and with the dashboard")]
struct Args {
    /// Interleaved runs of each (at least 10).
    #[arg(long, default_value_t = 21)]
    rounds: usize,
    /// No-op jobs per run.
    #[arg(long, default_value_t = 300_000)]
    jobs: u64,
    /// Local worker threads (default: all CPUs).
    #[arg(long)]
    ncpus: Option<usize>,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
    /// Internal: run once in this process, without (`off`) or with (`on`)
    /// the dashboard, and print the jobs/s.
    #[arg(long, hide = true)]
    child: Option<String>,
}

/// CPU time this process has used, all threads, in ns (Linux `schedstat`).
fn cpu_ns() -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

fn throughput(server: &Server, jobs: u64) -> Result<f64> {
    let started = Instant::now();
    let handles: Vec<_> = (0..jobs).map(|_| server.submit(jobs::noop, ())).collect();
    for h in handles {
        h.wait()?;
    }
    Ok(jobs as f64 / started.elapsed().as_secs_f64())
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Reads the dashboard's event stream on a thread, as an open page would.
fn watch(addr: std::net::SocketAddr) -> Result<()> {
    let mut s = TcpStream::connect(addr).context("connecting to the dashboard")?;
    write!(
        s,
        "GET /events HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n"
    )?;
    std::thread::spawn(move || {
        let mut buf = [0u8; 64 << 10];
        while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
    });
    Ok(())
}

/// One measured run in this process: a warm-up, then `jobs` no-op jobs;
/// (jobs/s, CPU ns per job).
fn child(args: &Args, dash: bool) -> Result<(f64, f64)> {
    let mut b = Server::builder();
    if let Some(n) = args.ncpus {
        b = b.ncpus(n);
    }
    if dash {
        b = b.dashboard("127.0.0.1:0");
    }
    let server = b.build()?;
    if let Some(addr) = server.dashboard_addr() {
        watch(addr)?;
    }
    throughput(&server, args.jobs / 4)?;
    let cpu = cpu_ns();
    let rate = throughput(&server, args.jobs)?;
    let cpu_per_job = cpu_ns().saturating_sub(cpu) as f64 / args.jobs as f64;
    Ok((rate, cpu_per_job))
}

/// Runs this binary as a child and reads its jobs/s and CPU ns per job.
fn spawn(args: &Args, dash: bool) -> Result<(f64, f64)> {
    let mut cmd = std::process::Command::new(std::env::current_exe()?);
    cmd.args(["--child", if dash { "on" } else { "off" }]);
    cmd.args(["--jobs", &args.jobs.to_string()]);
    if let Some(n) = args.ncpus {
        cmd.args(["--ncpus", &n.to_string()]);
    }
    let out = cmd.output().context("running a measurement")?;
    ensure!(
        out.status.success(),
        "a measurement failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let mut figures = text.split_whitespace().map(str::parse::<f64>);
    match (figures.next(), figures.next()) {
        (Some(Ok(rate)), Some(Ok(cpu))) => Ok((rate, cpu)),
        _ => anyhow::bail!("a measurement printed {text:?}"),
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    if let Some(mode) = &args.child {
        let (rate, cpu) = child(&args, mode == "on")?;
        println!("{rate} {cpu}");
        return Ok(());
    }
    ensure!(args.rounds >= 10, "--rounds must be at least 10");
    let ncpus = args.ncpus.unwrap_or_else(ppclient::detect_ncpus);
    let (mut off, mut on) = (Vec::new(), Vec::new());
    let (mut cpu_off, mut cpu_on) = (Vec::new(), Vec::new());
    let mut run = |dash: bool| -> Result<()> {
        let (rate, cpu) = spawn(&args, dash)?;
        let (rates, cpus) = match dash {
            false => (&mut off, &mut cpu_off),
            true => (&mut on, &mut cpu_on),
        };
        rates.push(rate);
        cpus.push(cpu);
        Ok(())
    };
    for round in 0..args.rounds {
        // Alternate which goes first.
        run(round % 2 == 1)?;
        run(round % 2 == 0)?;
    }
    // Each round's pair ran back to back: the median of their ratios is
    // the steadiest figure on a machine whose speed drifts.
    let mut paired: Vec<f64> = on.iter().zip(&off).map(|(a, b)| a / b).collect();
    let paired = median(&mut paired);
    let (m_off, m_on) = (median(&mut off), median(&mut on));
    let ratio = m_on / m_off;
    let (c_off, c_on) = (median(&mut cpu_off), median(&mut cpu_on));
    if args.json {
        let out = serde_json::json!({
            "rounds": args.rounds, "jobs": args.jobs, "ncpus": ncpus,
            "without_dashboard_jobs_per_s": m_off, "with_dashboard_jobs_per_s": m_on,
            "ratio": ratio, "paired_ratio_median": paired,
            "cpu_ns_per_job_without": c_off, "cpu_ns_per_job_with": c_on,
        });
        println!("{out}");
    } else {
        println!(
            "no-op jobs/s through the local pool ({ncpus} workers), median of {} interleaved runs (a process each) of {} jobs:",
            args.rounds, args.jobs
        );
        println!("  without the dashboard: {m_off:>12.0}");
        println!("  with the dashboard:    {m_on:>12.0}  (a page watching its event stream)");
        println!(
            "  ratio of the medians: {ratio:.3} ({:+.1}%); median of the {} paired ratios: {paired:.3} ({:+.1}%)",
            (ratio - 1.0) * 100.0,
            args.rounds,
            (paired - 1.0) * 100.0
        );
        println!(
            "  CPU time per job (all threads): {c_off:.0} ns without, {c_on:.0} ns with ({:+.1}%)",
            (c_on / c_off - 1.0) * 100.0
        );
    }
    Ok(())
}
