//! What the dashboard costs: no-op jobs/s through the local pool without
//! and with the dashboard (a page watching its event stream), interleaved
//! runs, the median of each.

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

fn main() -> Result<()> {
    let args = Args::parse();
    ensure!(args.rounds >= 10, "--rounds must be at least 10");
    let build = |dash: bool| {
        let mut b = Server::builder();
        if let Some(n) = args.ncpus {
            b = b.ncpus(n);
        }
        if dash {
            b = b.dashboard("127.0.0.1:0");
        }
        b.build()
    };
    let plain = build(false)?;
    let dashed = build(true)?;
    let addr = dashed.dashboard_addr().context("no dashboard address")?;
    watch(addr)?;
    // Warm both up once.
    throughput(&plain, args.jobs / 4)?;
    throughput(&dashed, args.jobs / 4)?;
    let (mut off, mut on) = (Vec::new(), Vec::new());
    for round in 0..args.rounds {
        // Alternate which goes first, so neither always runs on a warm cache.
        if round % 2 == 0 {
            off.push(throughput(&plain, args.jobs)?);
            on.push(throughput(&dashed, args.jobs)?);
        } else {
            on.push(throughput(&dashed, args.jobs)?);
            off.push(throughput(&plain, args.jobs)?);
        }
    }
    // Each round's pair ran back to back: the median of their ratios is
    // the steadiest figure on a machine whose speed drifts.
    let mut paired: Vec<f64> = on.iter().zip(&off).map(|(a, b)| a / b).collect();
    let paired = median(&mut paired);
    let (m_off, m_on) = (median(&mut off), median(&mut on));
    let ratio = m_on / m_off;
    if args.json {
        let out = serde_json::json!({
            "rounds": args.rounds, "jobs": args.jobs, "ncpus": plain.ncpus(),
            "without_dashboard_jobs_per_s": m_off, "with_dashboard_jobs_per_s": m_on,
            "ratio": ratio, "paired_ratio_median": paired, "paired_ratio_median": paired,
        });
        println!("{out}");
    } else {
        println!(
            "no-op jobs/s through the local pool ({} workers), median of {} interleaved runs of {} jobs:",
            plain.ncpus(),
            args.rounds,
            args.jobs
        );
        println!("  without the dashboard: {m_off:>12.0}");
        println!("  with the dashboard:    {m_on:>12.0}  (a page watching http://{addr}/)");
        println!(
            "  ratio of the medians: {ratio:.3} ({:+.1}%); median of the {} paired ratios: {paired:.3} ({:+.1}%)",
            (ratio - 1.0) * 100.0,
            args.rounds,
            (paired - 1.0) * 100.0
        );
    }
    Ok(())
}
