//! A simulation of a cluster of up to 10,000 nodes in one process and one
//! thread (issue 34): the real client link ([`ppcore::ClientLink`]) and
//! the client's job queue ([`ppcore::Lanes`], pulled from the way
//! ppclient's drivers do), the real node link ([`ppcore::NodeLink`]), a
//! simulated network (latency, jitter, lost segments sent again after
//! TCP's retransmission timeout, a node that stops answering) and a
//! simulated clock. No sockets, no thread per node: one agenda of events,
//! earliest first.
//!
//! It measures, with the same number of jobs at each node count, the
//! client's scheduling cost per job (`per_job_ns_N`: wall time spent in the
//! queue, the pick and the client's links, encoding and decoding included);
//! how many events a second the whole simulation handles (`events_per_s`,
//! with the most nodes); after how many heartbeat intervals the client
//! declares a silent node lost (`lost_after_intervals`); and the memory the
//! client holds per connected idle node (`client_bytes_per_idle_node`,
//! from a counting global allocator: live bytes, minus live bytes once the
//! client's side of every link is dropped).
//!
//! | file | owns |
//! | --- | --- |
//! | `net` | the clock and agenda, the network, a seeded generator |
//! | `world` | what the world holds and how an event is dispatched; `world/client` the client's side (the drivers), `world/node` the nodes' side |
//! | `alloc` | the counting allocator |

mod alloc;
mod net;
mod world;

use anyhow::{ensure, Result};
use clap::Parser;
use net::NetConfig;
use std::time::{Duration, Instant};
use world::{Params, World};

#[global_allocator]
static ALLOC: alloc::Counting = alloc::Counting;

#[derive(Parser)]
#[command(
    about = "A cluster of up to 10,000 simulated nodes in one thread: scheduling cost, events/s, loss detection, memory"
)]
struct Args {
    /// Node counts to run, in order (the largest is `nodes`).
    #[arg(long, value_delimiter = ',', default_values_t = [10, 100, 1000, 10_000])]
    nodes: Vec<usize>,
    /// Jobs run at each node count.
    #[arg(long, default_value_t = 400_000)]
    jobs: u64,
    /// Jobs per submitted batch.
    #[arg(long, default_value_t = 1024)]
    batch: usize,
    /// Worker slots per node.
    #[arg(long, default_value_t = 4)]
    workers: usize,
    /// A job's mean run time on a node, in µs (uniform in ±50 %).
    #[arg(long, default_value_t = 1000)]
    exec_us: u64,
    /// One-way network latency, in µs (plus up to half as much jitter).
    #[arg(long, default_value_t = 100)]
    latency_us: u64,
    /// Chance that a segment is lost (and arrives `--retransmit-us`
    /// late, holding back those behind it: TCP delivers in order).
    #[arg(long, default_value_t = 0.001)]
    loss: f64,
    /// How much later a lost segment arrives, in µs (a fast retransmit or
    /// a tail-loss probe: a few round trips; 200,000 for Linux's minimum
    /// retransmission timeout).
    #[arg(long, default_value_t = 1000)]
    retransmit_us: u64,
    /// Seed of the simulation's random draws.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

const SECOND: u64 = 1_000_000_000;

impl Args {
    fn params(&self, nodes: usize) -> Params {
        Params {
            nodes,
            workers: self.workers,
            exec_ns: self.exec_us * 1000,
            flush_ns: 20_000,
            wake_ns: 20_000,
            connect_timeout_ns: 2 * SECOND,
            net: NetConfig {
                latency_ns: self.latency_us * 1000,
                jitter_ns: self.latency_us * 500,
                loss: self.loss,
                retransmit_ns: self.retransmit_us * 1000,
            },
            seed: self.seed,
        }
    }
}

/// One node count's run.
struct JobRun {
    nodes: usize,
    connect: Duration,
    /// Events and wall time while the jobs ran.
    events: u64,
    wall: Duration,
    client: Duration,
    sim_ns: u64,
    returned: u64,
    downs: u64,
    empty_turns: u64,
}

/// Connects every link of a new world, within 30 simulated seconds.
fn connected(params: Params) -> Result<(World, Duration)> {
    let started = Instant::now();
    let mut w = World::new(params);
    let n = params.nodes;
    let until = w.agenda.now_ns() + 30 * SECOND;
    let up = w.run_until(until, |w| w.stats.up == n);
    ensure!(up, "only {} of {n} links came up", w.stats.up);
    Ok((w, started.elapsed()))
}

/// Runs `jobs` jobs through a world of `params.nodes` nodes.
fn run_jobs(args: &Args, params: Params) -> Result<(World, JobRun)> {
    let (mut w, connect) = connected(params)?;
    let before = w.stats;
    let t0 = w.agenda.now_ns();
    let started = Instant::now();
    w.submit(args.jobs, args.batch, 1 << 18);
    let target = before.resolved + args.jobs;
    let done = w.run_until(t0 + 3600 * SECOND, |w| w.stats.resolved >= target);
    let wall = started.elapsed();
    ensure!(
        done,
        "{} of {} jobs resolved",
        w.stats.resolved - before.resolved,
        args.jobs
    );
    ensure!(
        w.stats.duplicates == 0,
        "{} jobs resolved twice",
        w.stats.duplicates
    );
    let run = JobRun {
        nodes: params.nodes,
        connect,
        events: w.stats.events - before.events,
        wall,
        client: w.stats.client - before.client,
        sim_ns: w.agenda.now_ns() - t0,
        returned: w.stats.returned - before.returned,
        downs: w.stats.downs - before.downs,
        empty_turns: w.stats.empty_turns - before.empty_turns,
    };
    Ok((w, run))
}

/// Idles for `intervals` heartbeat intervals: events and wall time.
fn idle(w: &mut World, intervals: u32) -> (u64, Duration) {
    let before = w.stats.events;
    let started = Instant::now();
    let until = w.agenda.now_ns() + w.heartbeat().as_nanos() as u64 * u64::from(intervals);
    w.run_until(until, |_| false);
    (w.stats.events - before, started.elapsed())
}

/// What happened to a node that stopped answering.
struct Loss {
    /// Heartbeat intervals from its last word to its link's loss (rounded
    /// up).
    intervals: u64,
    /// The same in simulated seconds.
    seconds: f64,
    /// Jobs it held, handed back and run elsewhere.
    returned: u64,
}

/// Gives the nodes a round of jobs, silences `node` right after the
/// client next hears from it (it holds jobs then), and counts the
/// heartbeat intervals until its link declares it lost; then every job,
/// those it held too, must resolve elsewhere.
fn lost_after(w: &mut World, node: usize, jobs: u64) -> Result<Loss> {
    let hb = w.heartbeat().as_nanos() as u64;
    let before = w.stats;
    w.submit(jobs, 1024, 1 << 18);
    w.silence_after_next_word(node);
    let until = w.agenda.now_ns() + 10 * hb;
    ensure!(
        w.run_until(until, |w| w.nodes[node].silent),
        "node {node} said nothing for 10 intervals"
    );
    let silenced = w.agenda.now_ns();
    let lost_before = w.client.ends[node].lost_at;
    let lost = |w: &World| {
        w.client.ends[node]
            .lost_at
            .filter(|_| w.client.ends[node].lost_at != lost_before)
    };
    // Interval by interval; what it sent before it fell silent still
    // arrives (and counts as a word from it).
    for k in 1..=20 {
        if w.run_until(silenced + k * hb, |w| lost(w).is_some()) {
            break;
        }
    }
    let Some(lost_at) = lost(w) else {
        anyhow::bail!("node {node}, silent for 20 intervals, was never declared lost");
    };
    let silent_for = lost_at - w.client.ends[node].heard_at;
    let (intervals, seconds) = (silent_for.div_ceil(hb), silent_for as f64 / SECOND as f64);
    let target = before.resolved + jobs;
    let until = w.agenda.now_ns() + 60 * SECOND;
    ensure!(
        w.run_until(until, |w| w.stats.resolved >= target),
        "{} of {jobs} jobs resolved after the loss",
        w.stats.resolved - before.resolved
    );
    ensure!(
        w.stats.duplicates == 0,
        "{} jobs resolved twice",
        w.stats.duplicates
    );
    Ok(Loss {
        intervals,
        seconds,
        returned: w.stats.returned - before.returned,
    })
}

/// Bytes per idle node that the client's side, then the nodes' side,
/// hold: `params.nodes` links connected and idle for three heartbeat
/// intervals, then each side dropped.
fn idle_bytes(params: Params) -> Result<(f64, f64)> {
    let (mut w, _) = connected(params)?;
    idle(&mut w, 3);
    let n = params.nodes as f64;
    let live = alloc::live();
    drop(w.take_client());
    let without_client = alloc::live();
    drop(w.take_nodes());
    let without_nodes = alloc::live();
    Ok((
        (live - without_client) as f64 / n,
        (without_client - without_nodes) as f64 / n,
    ))
}

fn main() -> Result<()> {
    let args = Args::parse();
    ensure!(!args.nodes.is_empty(), "no node counts given");
    let largest = args.nodes.iter().copied().max().unwrap_or(0);
    let started = Instant::now();
    let mut runs = Vec::new();
    let mut big = None;
    for &n in &args.nodes {
        let (w, run) = run_jobs(&args, args.params(n))?;
        if !args.json {
            println!(
                "{n:>6} nodes: connected in {:.2} s; {} jobs in {:.2} s wall ({:.3} s simulated), {} events ({:.2}M/s), client {:.0} ns/job, {} jobs handed back, {} links lost, {} driver turns found nothing",
                run.connect.as_secs_f64(),
                args.jobs,
                run.wall.as_secs_f64(),
                run.sim_ns as f64 / SECOND as f64,
                run.events,
                run.events as f64 / run.wall.as_secs_f64() / 1e6,
                run.client.as_nanos() as f64 / args.jobs as f64,
                run.returned,
                run.downs,
                run.empty_turns,
            );
        }
        if n == largest && big.is_none() {
            big = Some(w);
        }
        runs.push(run);
    }
    let mut w = big.ok_or_else(|| anyhow::anyhow!("no run with {largest} nodes"))?;
    let (idle_events, idle_wall) = idle(&mut w, 3);
    let loss = lost_after(&mut w, largest / 2, 16 * largest as u64)?;
    let (lost_intervals, lost_s) = (loss.intervals, loss.seconds);
    let segments_lost = w.net.lost;
    drop(w);
    let (client_bytes, node_bytes) = idle_bytes(args.params(largest))?;
    let big_run = runs
        .iter()
        .find(|r| r.nodes == largest)
        .ok_or_else(|| anyhow::anyhow!("no run with {largest} nodes"))?;
    let events_per_s = big_run.events as f64 / big_run.wall.as_secs_f64();
    let idle_events_per_s = idle_events as f64 / idle_wall.as_secs_f64();
    if args.json {
        let mut out = serde_json::json!({
            "nodes": largest,
            "events_per_s": events_per_s.round() as u64,
            "lost_after_intervals": lost_intervals,
            "client_bytes_per_idle_node": client_bytes.round() as u64,
            "node_bytes_per_idle_node": node_bytes.round() as u64,
            "idle_events_per_s": idle_events_per_s.round() as u64,
            "lost_after_s": lost_s,
            "lost_node_jobs_returned": loss.returned,
            "connect_s": big_run.connect.as_secs_f64(),
            "empty_turns": big_run.empty_turns,
            "jobs": args.jobs,
            "workers": args.workers,
            "exec_us": args.exec_us,
            "latency_us": args.latency_us,
            "loss": args.loss,
            "retransmit_us": args.retransmit_us,
            "segments_lost": segments_lost,
            "wall_s": started.elapsed().as_secs_f64(),
        });
        for r in &runs {
            let ns = r.client.as_nanos() as f64 / args.jobs as f64;
            out[format!("per_job_ns_{}", r.nodes)] = (ns.round() as u64).into();
        }
        println!("{out}");
    } else {
        println!(
            "{largest} nodes idle: {:.2}M events/s; a silent node lost after {lost_intervals} heartbeat intervals ({lost_s:.3} s), the {} jobs it held run elsewhere; the client holds {client_bytes:.0} bytes per idle node, each node {node_bytes:.0}",
            idle_events_per_s / 1e6,
            loss.returned,
        );
    }
    Ok(())
}
