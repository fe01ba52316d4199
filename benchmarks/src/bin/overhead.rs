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
    /// Also measure through a ppserver started on 127.0.0.1 (all work remote).
    #[arg(long)]
    spawn_node: bool,
    /// How the spawned node runs jobs: thread or process.
    #[arg(long, default_value = "thread")]
    node_isolation: String,
    /// No-op jobs for the remote throughput run.
    #[arg(long, default_value_t = 1_000_000)]
    remote_jobs: u64,
    /// Also measure no-op jobs on the local pool with a journal at PATH
    /// (deleted first, and again after): every result committed before
    /// it is seen; then a second run that takes them all from it.
    #[arg(long, value_name = "PATH")]
    journal: Option<std::path::PathBuf>,
    /// Also measure no-op jobs on the local pool each asking for
    /// `cpus(1)` and `resource("licence", 1)`, the pool offering
    /// `licence=2` (prints `resources_jobs_per_s`).
    #[arg(long)]
    resources: bool,
}

fn main() -> Result<std::process::ExitCode> {
    if let Some(code) = benchmarks::run_as_node_if_asked() {
        return Ok(code);
    }
    let args = Args::parse();
    // First, while the heap is fresh: freed memory would hide the growth.
    let queued_mb = queued_memory(args.jobs)?;
    let mut builder = Server::builder();
    if let Some(n) = args.ncpus {
        builder = builder.ncpus(n);
    }
    let ncpus = args.ncpus.unwrap_or_else(ppclient::detect_ncpus);
    // The baselines, in the same run: rayon with a channel back, and a
    // plain TCP ping-pong of one small frame on loopback.
    let rayon_per_s = rayon_throughput(args.jobs, ncpus)?;
    let tcp_p50 = tcp_rtt_p50(args.round_trips)?;
    let server = builder.build()?;
    let jobs_per_s = throughput(&server, args.jobs)?;
    let (p50, p99) = latency(&server, args.round_trips)?;
    drop(server);
    let resources = match args.resources {
        true => Some(resources_throughput(args.ncpus, args.jobs)?),
        false => None,
    };
    let journal = match &args.journal {
        Some(path) => Some(journal_throughput(args.ncpus, path, args.jobs)?),
        None => None,
    };
    let remote = if args.spawn_node {
        let isolation = ["--isolation", args.node_isolation.as_str()];
        let node = benchmarks::spawn_node_with(0, ppclient::detect_ncpus(), &isolation)?;
        std::thread::sleep(Duration::from_millis(100));
        let idle_rss = node.rss_bytes()? as f64 / 1e6;
        let server = Server::builder()
            .secret(benchmarks::cluster_key()?)
            .ncpus(0)
            .nodes([node.addr.clone()])
            .build()?;
        anyhow::ensure!(
            !server.active_nodes().is_empty(),
            "spawned node unreachable"
        );
        let jobs_per_s = throughput(&server, args.remote_jobs)?;
        let (p50, p99) = latency(&server, args.round_trips)?;
        // Round trips judged by their floor: the best of 5 medians of each,
        // alternating, so both see the same moments of a noisy machine.
        let (mut remote_best, mut tcp_best) = (f64::INFINITY, f64::INFINITY);
        for _ in 0..RTT_ROUNDS {
            tcp_best = tcp_best.min(tcp_rtt_p50(args.round_trips)?);
            remote_best = remote_best.min(latency(&server, args.round_trips)?.0);
        }
        Some(Remote {
            jobs_per_s,
            p50,
            p99,
            ready_ms: node.ready.as_secs_f64() * 1e3,
            idle_rss,
            remote_best,
            tcp_best,
        })
    } else {
        None
    };
    if args.json {
        let mut out = serde_json::json!({
            "ncpus": ncpus,
            "jobs": args.jobs,
            "local_jobs_per_s": jobs_per_s,
            "local_rtt_p50_us": p50,
            "local_rtt_p99_us": p99,
            "queued_rss_mb": queued_mb,
            "rayon_jobs_per_s": rayon_per_s,
            "tcp_rtt_p50_us": tcp_p50,
            "local_over_rayon": jobs_per_s / rayon_per_s,
        });
        if let Some(per_s) = resources {
            out["resources_jobs_per_s"] = per_s.into();
            out["resources_over_local"] = (per_s / jobs_per_s).into();
        }
        if let Some((written, replayed)) = journal {
            out["journal_jobs_per_s"] = written.into();
            out["journal_over_local"] = (written / jobs_per_s).into();
            out["journal_replay_jobs_per_s"] = replayed.into();
        }
        if let Some(r) = &remote {
            out["node_ready_ms"] = r.ready_ms.into();
            out["node_idle_rss_mb"] = r.idle_rss.into();
            out["remote_jobs_per_s"] = r.jobs_per_s.into();
            out["remote_rtt_p50_us"] = r.p50.into();
            out["remote_rtt_p99_us"] = r.p99.into();
            out["remote_rtt_over_tcp"] = (r.p50 / tcp_p50).into();
            out["remote_rtt_best_us"] = r.remote_best.into();
            out["tcp_rtt_best_us"] = r.tcp_best.into();
            out["remote_rtt_best_over_tcp"] = (r.remote_best / r.tcp_best).into();
            out["remote_over_local"] = (remote_per_s_ratio(r.jobs_per_s, &out)).into();
        }
        println!("{out}");
    } else {
        println!("local pool, {ncpus} workers");
        println!(
            "  throughput: {:>12.0} no-op jobs/s ({} jobs)",
            jobs_per_s, args.jobs
        );
        println!("  submit-then-wait: p50 {p50:.1} µs, p99 {p99:.1} µs");
        println!(
            "  rayon with a channel back: {rayon_per_s:>12.0} no-op jobs/s (local = {:.2}x)",
            jobs_per_s / rayon_per_s
        );
        println!("  plain TCP ping-pong on loopback: p50 {tcp_p50:.1} µs");
        println!(
            "  {} queued no-op jobs: {queued_mb:.0} MB of RSS",
            args.jobs
        );
        if let Some(per_s) = resources {
            println!("local pool, jobs with cpus(1) + resource(\"licence\", 1), licence=2 offered");
            println!(
                "  throughput: {per_s:>12.0} no-op jobs/s ({:.2}x without; goal >= 0.8)",
                per_s / jobs_per_s
            );
        }
        if let Some((written, replayed)) = journal {
            println!("local pool with a journal");
            println!(
                "  throughput: {written:>12.0} no-op jobs/s recorded ({:.2}x without; goal >= 0.5)",
                written / jobs_per_s
            );
            println!("  second run: {replayed:>12.0} jobs/s taken from the journal");
        }
        if let Some(r) = remote {
            println!("one loopback node, all work remote");
            println!(
                "  node: ready {:.1} ms after start, {:.1} MB RSS idle",
                r.ready_ms, r.idle_rss
            );
            println!(
                "  throughput: {:>12.0} no-op jobs/s ({} jobs)",
                r.jobs_per_s, args.remote_jobs
            );
            println!(
                "  submit-then-wait: p50 {:.1} µs ({:.2}x TCP), p99 {:.1} µs",
                r.p50,
                r.p50 / tcp_p50,
                r.p99
            );
            println!(
                "  best of {RTT_ROUNDS} medians, alternating: {:.1} µs remote, {:.1} µs TCP ({:.2}x; goal <= 2)",
                r.remote_best,
                r.tcp_best,
                r.remote_best / r.tcp_best
            );
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// Medians of each round trip taken, alternating, for the best-of figures.
const RTT_ROUNDS: usize = 5;

/// What the run through a spawned node measured.
struct Remote {
    jobs_per_s: f64,
    p50: f64,
    p99: f64,
    ready_ms: f64,
    idle_rss: f64,
    /// The best of [`RTT_ROUNDS`] medians of each, alternating.
    remote_best: f64,
    tcp_best: f64,
}

fn throughput(server: &Server, jobs: u64) -> Result<f64> {
    let started = Instant::now();
    let handles: Vec<_> = (0..jobs).map(|_| server.submit(jobs::noop, ())).collect();
    for h in handles {
        h.wait()?;
    }
    Ok(jobs as f64 / started.elapsed().as_secs_f64())
}

/// No-op jobs on the local pool, each asking for a cpu and a licence of
/// the two the pool offers, in jobs/s.
fn resources_throughput(ncpus: Option<usize>, jobs: u64) -> Result<f64> {
    let b = Server::builder().resources("licence=2");
    let server = match ncpus {
        Some(n) => b.ncpus(n),
        None => b,
    }
    .build()?;
    let asks = ppclient::Options::new().cpus(1).resource("licence", 1.0);
    let started = Instant::now();
    let handles: Vec<_> = (0..jobs)
        .map(|_| server.submit_with(jobs::noop, (), &asks))
        .collect();
    for h in handles {
        h.wait()?;
    }
    Ok(jobs as f64 / started.elapsed().as_secs_f64())
}

/// No-op jobs on the local pool with a fresh journal at `path` (each result
/// committed before its handle resolves), then the same jobs again, taken
/// from it: both in jobs/s. The file is deleted after.
fn journal_throughput(
    ncpus: Option<usize>,
    path: &std::path::Path,
    jobs: u64,
) -> Result<(f64, f64)> {
    let build = |reset: bool| {
        let b = Server::builder();
        let b = match ncpus {
            Some(n) => b.ncpus(n),
            None => b,
        };
        match reset {
            true => b.journal_reset(path).build(),
            false => b.journal(path).build(),
        }
    };
    let server = build(true)?;
    let written = throughput(&server, jobs)?;
    anyhow::ensure!(server.stats().ran == jobs, "every job ran");
    drop(server);
    let server = build(false)?;
    let replayed = throughput(&server, jobs)?;
    anyhow::ensure!(
        server.stats().from_journal == jobs,
        "every job from the journal"
    );
    drop(server);
    std::fs::remove_file(path)?;
    Ok((written, replayed))
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

/// Remote throughput over local throughput, from the JSON being built.
fn remote_per_s_ratio(remote_per_s: f64, out: &serde_json::Value) -> f64 {
    let local = out["local_jobs_per_s"].as_f64().unwrap_or(f64::NAN);
    remote_per_s / local
}

/// No-op jobs through a rayon pool of `ncpus` threads, each result sent
/// back on a channel: the floor for a local job pool.
fn rayon_throughput(jobs: u64, ncpus: usize) -> Result<f64> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(ncpus.max(1))
        .build()?;
    let (tx, rx) = std::sync::mpsc::channel::<u64>();
    let started = Instant::now();
    for i in 0..jobs {
        let tx = tx.clone();
        pool.spawn_fifo(move || {
            let _ = tx.send(std::hint::black_box(i));
        });
    }
    drop(tx);
    let got = rx.iter().count() as u64;
    anyhow::ensure!(got == jobs, "rayon ran {got} of {jobs} jobs");
    Ok(jobs as f64 / started.elapsed().as_secs_f64())
}

/// The median round trip of one small frame over loopback TCP, the floor
/// for a remote round trip, measured the way the real path runs: both ends
/// set `TCP_NODELAY`; the frame is as large as the sealed `Run` frame of
/// the latency run's `echo_u64` job (the answer is the same size); the echo
/// end sleeps in `mio` until the socket is readable and reads without
/// blocking, like the node's connection driver; the asking end blocks in
/// its read, like a thread waiting on its handle.
fn tcp_rtt_p50(round_trips: usize) -> Result<f64> {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let frame = echo_frame()?;
    let len = frame.len();
    let echo = std::thread::spawn(move || -> std::io::Result<()> {
        let (s, _) = listener.accept()?;
        s.set_nodelay(true)?;
        s.set_nonblocking(true)?;
        let mut s = mio::net::TcpStream::from_std(s);
        let mut poll = mio::Poll::new()?;
        let mut events = mio::Events::with_capacity(8);
        poll.registry()
            .register(&mut s, mio::Token(0), mio::Interest::READABLE)?;
        let mut buf = vec![0u8; len];
        let mut have = 0;
        loop {
            match s.read(&mut buf[have..]) {
                Ok(0) => return Ok(()),
                Ok(n) => have += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    poll.poll(&mut events, None)?;
                    continue;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            if have == len {
                // The answer fits the socket's buffer: one write.
                s.write_all(&buf)?;
                have = 0;
            }
        }
    });
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_nodelay(true)?;
    let mut buf = vec![0u8; len];
    let mut times = Vec::with_capacity(round_trips);
    for _ in 0..round_trips {
        let started = Instant::now();
        s.write_all(&frame)?;
        s.read_exact(&mut buf)?;
        times.push(started.elapsed());
    }
    drop(s);
    let _ = echo.join();
    times.sort();
    let mid = times
        .get(times.len() / 2)
        .copied()
        .unwrap_or(Duration::ZERO);
    Ok(mid.as_secs_f64() * 1e6)
}

/// A frame the size of the sealed `Run` frame that carries one `echo_u64`
/// job of the latency run.
fn echo_frame() -> Result<Vec<u8>> {
    let run = ppcore::wire::RunJob {
        id: u64::MAX,
        attempt: 1,
        name: <jobs::echo_u64 as ppcore::Job>::NAME.to_owned(),
        args: ppcore::encode(&(u64::MAX,))?.into(),
        program: None,
        shared: Vec::new(),
        keep: None,
        journal: None,
        request: None,
    };
    let mut frame = ppcore::encode_frame(&ppcore::wire::ClientMsg::Run(vec![run]))?;
    frame.resize(frame.len() + ppcore::SEAL_OVERHEAD, 0);
    Ok(frame)
}
