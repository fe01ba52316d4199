//! Kept results (issue 28, docs/KEPT.md): a chain of dependent jobs on one
//! node and on the local pool, against the plain submit-then-wait round
//! trip to the same node; and a map-reduce whose maps keep their results on
//! two nodes, one of which is killed (SIGKILL) before the reduce: the lost
//! maps are made again from their recipes and the total must be exact.

use anyhow::{Context, Result};
use clap::Parser;
use ppclient::{JobHandle, Options, Server, Shared};
use std::time::{Duration, Instant};

ppclient::job! {
    /// The first link of a chain.
    pub fn start(x: u64) -> u64 { x }
}

ppclient::job! {
    /// One link of a chain: the previous link's kept result, plus one.
    pub fn step(x: Shared<u64>) -> u64 { *x + 1 }
}

ppclient::job! {
    /// A map job: the sum of `from..to`.
    pub fn part(from: u64, to: u64) -> u64 { (from..to).sum() }
}

ppclient::job! {
    /// A reduce job: the sum of four kept results.
    pub fn add4(a: Shared<u64>, b: Shared<u64>, c: Shared<u64>, d: Shared<u64>) -> u64 {
        *a + *b + *c + *d
    }
}

#[derive(Parser)]
#[command(about = "Chains of kept results and a map-reduce that survives a killed node")]
struct Args {
    /// Dependent jobs in each chain.
    #[arg(long, default_value_t = 10_000)]
    steps: u64,
    /// Chain runs on the node, alternating with as many round-trip runs
    /// (the best of each is reported).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Submit-then-wait round trips in each round-trip run (its median counts).
    #[arg(long, default_value_t = 2_000)]
    round_trips: usize,
    /// Local worker threads for the local chain.
    #[arg(long, default_value_t = 1)]
    local_ncpus: usize,
    /// Worker slots of each spawned node.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Map jobs of the map-reduce (a multiple of 4: four reduce jobs).
    #[arg(long, default_value_t = 16)]
    maps: u64,
    /// Numbers each map job adds up.
    #[arg(long, default_value_t = 1_000_000)]
    map_len: u64,
    /// The longest any one wait may take, in seconds, before the run fails.
    #[arg(long, default_value_t = 120)]
    timeout_s: u64,
    /// Only the local chain (no nodes spawned).
    #[arg(long)]
    local_only: bool,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

fn main() -> std::process::ExitCode {
    if let Some(code) = benchmarks::run_as_node_if_asked() {
        return code;
    }
    match run(Args::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("graph: {}", shorten(&format!("{e:#}"), 2_000));
            std::process::ExitCode::FAILURE
        }
    }
}

/// `text`, its middle cut out if it is longer than `max` characters (an
/// error that fails a long chain names every link's input).
fn shorten(text: &str, max: usize) -> String {
    let chars: Vec<char> = text.chars().collect();
    if chars.len() <= max {
        return text.to_owned();
    }
    let half = max / 2;
    let head: String = chars[..half].iter().collect();
    let tail: String = chars[chars.len() - half..].iter().collect();
    format!("{head} […{} characters…] {tail}", chars.len() - max)
}

fn run(args: Args) -> Result<()> {
    anyhow::ensure!(args.steps > 0, "--steps must be at least 1");
    anyhow::ensure!(args.runs > 0, "--runs must be at least 1");
    anyhow::ensure!(args.round_trips > 0, "--round-trips must be at least 1");
    anyhow::ensure!(
        args.maps > 0 && args.maps.is_multiple_of(4),
        "--maps must be a positive multiple of 4"
    );
    let timeout = Duration::from_secs(args.timeout_s);
    let mut out = serde_json::json!({
        "machine": machine(),
        "steps": args.steps,
        "runs": args.runs,
        "local_ncpus": args.local_ncpus,
    });

    let local = Server::builder()
        .ncpus(args.local_ncpus)
        .build()
        .context("starting the local pool")?;
    let mut local_best = f64::INFINITY;
    for _ in 0..args.runs {
        local_best = local_best.min(chain_us_per_step(&local, args.steps, timeout)?);
    }
    drop(local);
    out["chain_local_us_per_step"] = local_best.into();

    if !args.local_only {
        let nodes = [
            benchmarks::spawn_node_with(0, args.workers, &[])?,
            benchmarks::spawn_node_with(0, args.workers, &[])?,
        ];
        out["nodes"] = nodes.len().into();
        out["node_workers"] = args.workers.into();
        let chain = on_one_node(&args, &nodes[0], timeout)?;
        out["chain_node_us_per_step"] = chain.best_chain.into();
        out["chain_node_runs_us_per_step"] = chain.chains.into();
        out["remote_rtt_best_us"] = chain.best_rtt.into();
        out["remote_rtt_medians_us"] = chain.rtts.into();
        out["chain_node_over_rtt"] = (chain.best_chain / chain.best_rtt).into();
        out["chained"] = chain.chained.into();
        let mr = killed_mapreduce(&args, &nodes, timeout)?;
        out["killed_mapreduce_exact"] = (mr.got == mr.expected).into();
        out["mapreduce_value"] = mr.got.into();
        out["mapreduce_expected"] = mr.expected.into();
        out["maps"] = args.maps.into();
        out["maps_lost"] = mr.lost.into();
        out["recomputed"] = mr.recomputed.into();
        out["max_runs_per_map"] = max_runs_per_map(mr.recomputed, args.maps).into();
        out["no_map_run_more_than_twice"] = (mr.recomputed <= args.maps).into();
    } else {
        out["nodes"] = 0.into();
    }

    if args.json {
        println!("{out}");
    } else {
        print_table(&out);
    }
    Ok(())
}

/// One chain: a kept `start` then `steps` kept `step` jobs, each taking the
/// previous one's result; microseconds per step from the first submit to
/// the last result fetched.
fn chain_us_per_step(server: &Server, steps: u64, timeout: Duration) -> Result<f64> {
    let keep = || Options::new().keep();
    let started = Instant::now();
    let mut last: JobHandle<u64> = server.submit_with(start, (0,), keep());
    for _ in 0..steps {
        let input = last.keep().context("a chain link's kept result")?;
        last = server.submit_with(step, (input,), keep());
    }
    let got = wait_for(&last, timeout, "the last link of the chain")?;
    let us = started.elapsed().as_secs_f64() * 1e6 / steps as f64;
    anyhow::ensure!(got == steps, "the chain ended at {got}, expected {steps}");
    Ok(us)
}

/// The median of `round_trips` plain submit-then-wait round trips, in µs.
fn rtt_median_us(server: &Server, round_trips: usize, timeout: Duration) -> Result<f64> {
    let mut times = Vec::with_capacity(round_trips);
    for i in 0..round_trips as u64 {
        let started = Instant::now();
        let h = server.submit(jobs::echo_u64, (i,));
        let v = wait_for(&h, timeout, "a round trip")?;
        times.push(started.elapsed());
        anyhow::ensure!(v == i, "echo returned {v}, sent {i}");
    }
    times.sort();
    let mid = times.get(times.len() / 2).copied().unwrap_or_default();
    Ok(mid.as_secs_f64() * 1e6)
}

/// Waits at most `timeout` for `h`; an error naming `what` otherwise.
fn wait_for<T: Send + 'static>(h: &JobHandle<T>, timeout: Duration, what: &str) -> Result<T> {
    match h.wait_timeout(timeout) {
        Some(r) => r.with_context(|| format!("{what} (job {}) failed", h.id())),
        None => anyhow::bail!("{what} (job {}) not done in {timeout:?}", h.id()),
    }
}

/// The connected client of `nodes` with no local workers.
fn client_of(nodes: &[&benchmarks::SpawnedNode]) -> Result<Server> {
    let server = Server::builder()
        .secret(benchmarks::cluster_key()?)
        .ncpus(0)
        .nodes(nodes.iter().map(|n| n.addr.clone()))
        .build()
        .context("starting the client")?;
    let up = server.active_nodes().len();
    anyhow::ensure!(
        up == nodes.len(),
        "{up} of {} spawned nodes reachable",
        nodes.len()
    );
    Ok(server)
}

struct OneNode {
    chains: Vec<f64>,
    rtts: Vec<f64>,
    best_chain: f64,
    best_rtt: f64,
    /// Jobs the node started without a client round trip (its stats).
    chained: u64,
}

/// `runs` round-trip medians alternating with `runs` chains on one node.
fn on_one_node(args: &Args, node: &benchmarks::SpawnedNode, timeout: Duration) -> Result<OneNode> {
    let server = client_of(&[node])?;
    // Warm the connection up.
    rtt_median_us(&server, 100, timeout)?;
    let (mut chains, mut rtts) = (Vec::new(), Vec::new());
    for _ in 0..args.runs {
        rtts.push(rtt_median_us(&server, args.round_trips, timeout)?);
        chains.push(chain_us_per_step(&server, args.steps, timeout)?);
    }
    let best = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
    let chained = server.stats().nodes.iter().map(|n| n.chained).sum();
    Ok(OneNode {
        best_chain: best(&chains),
        best_rtt: best(&rtts),
        chains,
        rtts,
        chained,
    })
}

struct MapReduce {
    got: u64,
    expected: u64,
    /// Map results the killed node held.
    lost: u64,
    recomputed: u64,
}

/// Maps kept on two nodes, all finished; one node killed; then the reduces
/// and the final job. The node killed is the one holding more map results.
fn killed_mapreduce(
    args: &Args,
    nodes: &[benchmarks::SpawnedNode; 2],
    timeout: Duration,
) -> Result<MapReduce> {
    let server = client_of(&[&nodes[0], &nodes[1]])?;
    let keep = || Options::new().keep();
    let maps: Vec<JobHandle<u64>> = (0..args.maps)
        .map(|i| {
            let range = (i * args.map_len, (i + 1) * args.map_len);
            server.submit_with(part, range, keep())
        })
        .collect();
    let all_done = server
        .wait_all_timeout(timeout)
        .map_err(|e| anyhow::anyhow!("waiting for the maps: {e}"))?;
    anyhow::ensure!(all_done, "the maps were not done in {timeout:?}");
    anyhow::ensure!(
        maps.iter().all(JobHandle::is_finished),
        "wait_all returned before every map finished"
    );
    // Which node holds how many map results (by its stats' `kept`).
    let stats = server.stats();
    let kept_on = |n: &benchmarks::SpawnedNode| -> u64 {
        stats
            .nodes
            .iter()
            .filter(|s| s.node == n.addr)
            .map(|s| s.kept)
            .sum()
    };
    let held = [kept_on(&nodes[0]), kept_on(&nodes[1])];
    anyhow::ensure!(
        held[0] + held[1] == args.maps,
        "the nodes say they keep {held:?} results, {} maps ran",
        args.maps
    );
    let victim = usize::from(held[1] >= held[0]);
    nodes[victim].signal("KILL")?;
    let inputs: Vec<Shared<u64>> = maps
        .iter()
        .map(JobHandle::keep)
        .collect::<Result<_, _>>()
        .context("a map's kept result")?;
    let reduces: Vec<JobHandle<u64>> = inputs
        .chunks(4)
        .map(|c| {
            let four = (c[0].clone(), c[1].clone(), c[2].clone(), c[3].clone());
            server.submit_with(add4, four, keep())
        })
        .collect();
    // The final job: the partial sums of four reduces at a time, then of
    // those, until one is left.
    let mut level = reduces;
    while level.len() > 1 {
        let partials: Vec<Shared<u64>> = level
            .iter()
            .map(JobHandle::keep)
            .collect::<Result<_, _>>()
            .context("a reduce's kept result")?;
        level = partials
            .chunks(4)
            .map(|c| {
                let zero = || Shared::new(0u64);
                let at = |i: usize| c.get(i).cloned().map_or_else(zero, Ok);
                Ok(server.submit_with(add4, (at(0)?, at(1)?, at(2)?, at(3)?), keep()))
            })
            .collect::<Result<_, ppclient::JobError>>()
            .context("a zero to pad the final job")?;
    }
    let last = level.pop().context("no final job")?;
    let got = wait_for(&last, timeout, "the final job")?;
    let n = args.maps * args.map_len;
    // 0 + 1 + … + (n - 1), in u64 as the jobs add it (wrapping alike).
    let expected = (0..n).fold(0u64, u64::wrapping_add);
    let recomputed = server.stats().nodes.iter().map(|s| s.recomputed).sum();
    Ok(MapReduce {
        got,
        expected,
        lost: held[victim],
        recomputed,
    })
}

/// The most times one map job ran, derived from the stats: each ran once,
/// and again once per loss of its result. With one node lost, recomputes
/// up to `maps` mean at most twice each; more mean (by pigeonhole) at least
/// one map ran `1 + ceil(recomputed / maps)` times.
fn max_runs_per_map(recomputed: u64, maps: u64) -> u64 {
    match recomputed {
        0 => 1,
        r => 1 + r.div_ceil(maps.max(1)),
    }
}

/// The CPU model and the number of cores, from /proc/cpuinfo.
fn machine() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = info
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|m| m.trim_start_matches([' ', '\t', ':']).trim().to_owned())
        .unwrap_or_else(|| std::env::consts::ARCH.to_owned());
    let cores = info
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count()
        .max(1);
    format!("{model}, {cores} cores")
}

fn print_table(out: &serde_json::Value) {
    let f = |k: &str| out[k].as_f64().unwrap_or(f64::NAN);
    println!("machine: {}", out["machine"].as_str().unwrap_or("?"));
    println!(
        "chains of {} kept jobs, best of {}",
        out["steps"], out["runs"]
    );
    println!(
        "  local pool ({} workers):      {:>8.2} µs per step",
        out["local_ncpus"],
        f("chain_local_us_per_step")
    );
    if out.get("chain_node_us_per_step").is_none() {
        return;
    }
    println!(
        "  one loopback node:            {:>8.2} µs per step ({} chained)",
        f("chain_node_us_per_step"),
        out["chained"]
    );
    println!(
        "  submit-then-wait to the node: {:>8.2} µs (best median)",
        f("remote_rtt_best_us")
    );
    println!(
        "  chain step over round trip:   {:>8.3} (goal <= 0.5)",
        f("chain_node_over_rtt")
    );
    println!(
        "map-reduce of {} kept maps on {} nodes, one killed after the maps",
        out["maps"], out["nodes"]
    );
    println!(
        "  exact: {} ({} of {})",
        out["killed_mapreduce_exact"], out["mapreduce_value"], out["mapreduce_expected"]
    );
    println!(
        "  maps lost: {}, recomputed: {}, at most {} runs per map (no map run more than twice: {})",
        out["maps_lost"],
        out["recomputed"],
        out["max_runs_per_map"],
        out["no_map_run_more_than_twice"]
    );
}
