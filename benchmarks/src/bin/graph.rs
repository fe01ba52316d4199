//! Kept results (issue 28, docs/KEPT.md): a chain of dependent jobs on one
//! node and on the local pool, against the plain submit-then-wait round
//! trip to the same node; and a map-reduce whose maps keep their results on
//! two nodes, one of which is killed (SIGKILL) before the reduce: the lost
//! maps are made again from their recipes and the total must be exact.
//! And a map-reduce of large values over four nodes that peers can reach
//! (issue 29): kept results moving node to node, against the same work
//! with every map result brought to the client and sent out again.

use anyhow::{Context, Result};
use clap::Parser;
use ppclient::{Array, JobHandle, Options, Server, Shared};
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

ppclient::job! {
    /// A map job of the large map-reduce: `len` numbers made from `seed`.
    pub fn fill(seed: u64, len: u64) -> Array<f64> { fill_values(seed, len) }
}

ppclient::job! {
    /// A reduce job: the element-wise sum of kept map results.
    pub fn sum_kept(parts: Vec<Shared<Array<f64>>>) -> Array<f64> {
        sum_of(parts.iter().map(|p| p.as_slice()))
    }
}

ppclient::job! {
    /// The same reduce, its inputs sent as values.
    pub fn sum_sent(parts: Vec<Array<f64>>) -> Array<f64> {
        sum_of(parts.iter().map(|p| p.as_slice()))
    }
}

ppclient::job! {
    /// The final job: the total of kept partial sums.
    pub fn total_kept(parts: Vec<Shared<Array<f64>>>) -> f64 {
        parts.iter().flat_map(|p| p.iter()).sum()
    }
}

ppclient::job! {
    /// The same final job, its inputs sent as values.
    pub fn total_sent(parts: Vec<Array<f64>>) -> f64 {
        parts.iter().flat_map(|p| p.iter()).sum()
    }
}

/// `len` numbers made from `seed` (cheap to make: the benchmark is the
/// moving of them).
fn fill_values(seed: u64, len: u64) -> Array<f64> {
    (0..len)
        .map(|i| ((seed * 7919 + i) % 1024) as f64 * 0.25)
        .collect()
}

/// The element-wise sum of `parts`.
fn sum_of<'a>(mut parts: impl Iterator<Item = &'a [f64]>) -> Array<f64> {
    let mut out = parts.next().map(<[f64]>::to_vec).unwrap_or_default();
    for p in parts {
        out.iter_mut().zip(p).for_each(|(o, x)| *o += x);
    }
    Array::from(out)
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
    /// Nodes of the large map-reduce (peers reach each other on loopback).
    #[arg(long, default_value_t = 4)]
    mr_nodes: usize,
    /// Map jobs of the large map-reduce.
    #[arg(long, default_value_t = 64)]
    mr_maps: usize,
    /// Map results each reduce job takes (the final job takes the reduces').
    #[arg(long, default_value_t = 8)]
    mr_fan_in: usize,
    /// MiB of f64 each map job returns.
    #[arg(long, default_value_t = 16)]
    mr_map_mib: u64,
    /// Skip the large map-reduce.
    #[arg(long)]
    no_mapreduce: bool,
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
        drop(nodes);
        if !args.no_mapreduce {
            large_mapreduce(&args, &mut out, timeout)?;
        }
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

/// The large map-reduce both ways on fresh nodes, into `out`.
fn large_mapreduce(args: &Args, out: &mut serde_json::Value, timeout: Duration) -> Result<()> {
    anyhow::ensure!(
        args.mr_maps > 0 && args.mr_fan_in > 0 && args.mr_nodes > 0,
        "--mr-maps, --mr-fan-in and --mr-nodes must be at least 1"
    );
    let nodes = (0..args.mr_nodes)
        .map(|_| benchmarks::spawn_node_with(0, 1, &["--advertise", "127.0.0.1"]))
        .collect::<Result<Vec<_>>>()?;
    let nodes: Vec<&benchmarks::SpawnedNode> = nodes.iter().collect();
    let len = args.mr_map_mib * (1 << 20) / 8;
    // Each way on its own client, so each counts its own bytes.
    let via_client = mapreduce_via_client(args, &nodes, len, timeout)?;
    let kept = mapreduce_kept(args, &nodes, len, timeout)?;
    anyhow::ensure!(
        kept.total == via_client.total,
        "the two ways disagree: {} kept, {} via the client",
        kept.total,
        via_client.total
    );
    // The map results as they travel: raw little-endian f64 and a header.
    let map_bytes = ppcore::encode(&fill_values(0, len))?.len() as u64;
    let intermediate = map_bytes * args.mr_maps as u64;
    out["mr_nodes"] = args.mr_nodes.into();
    out["mr_maps"] = args.mr_maps.into();
    out["mr_fan_in"] = args.mr_fan_in.into();
    out["mapreduce_s"] = kept.seconds.into();
    out["via_client_s"] = via_client.seconds.into();
    out["mapreduce_over_via_client"] = (kept.seconds / via_client.seconds).into();
    out["intermediate_bytes"] = intermediate.into();
    out["client_bytes"] = kept.client_bytes.into();
    out["client_bytes_over_intermediate"] = (kept.client_bytes as f64 / intermediate as f64).into();
    out["via_client_bytes"] = via_client.client_bytes.into();
    out["transfers"] = kept.transfers.into();
    out["transfer_bytes"] = kept.transfer_bytes.into();
    out["fetched_through_client"] = kept.fetched.into();
    out["mapreduce_total"] = kept.total.into();
    Ok(())
}

struct MrRun {
    seconds: f64,
    total: f64,
    /// Bytes the client's links sent and received during the run.
    client_bytes: u64,
    transfers: u64,
    transfer_bytes: u64,
    fetched: u64,
}

/// Bytes the client's links have sent and received so far.
fn link_bytes(server: &Server) -> u64 {
    let nodes = server.stats().nodes;
    nodes.iter().map(|n| n.bytes_sent + n.bytes_received).sum()
}

/// Maps keep their results; reduces take them where they lie (moved node
/// to node), and the final job the reduces'.
fn mapreduce_kept(
    args: &Args,
    nodes: &[&benchmarks::SpawnedNode],
    len: u64,
    timeout: Duration,
) -> Result<MrRun> {
    let server = client_of(nodes)?;
    let keep = || Options::new().keep();
    let before = link_bytes(&server);
    let started = Instant::now();
    let maps: Vec<Shared<Array<f64>>> = (0..args.mr_maps as u64)
        .map(|i| server.submit_with(fill, (i, len), keep()).keep())
        .collect::<Result<_, _>>()
        .context("a map's kept result")?;
    let partials: Vec<Shared<Array<f64>>> = maps
        .chunks(args.mr_fan_in)
        .map(|c| server.submit_with(sum_kept, (c.to_vec(),), keep()).keep())
        .collect::<Result<_, _>>()
        .context("a reduce's kept result")?;
    drop(maps);
    let last = server.submit(total_kept, (partials,));
    let total = wait_for(&last, timeout, "the final job")?;
    let seconds = started.elapsed().as_secs_f64();
    let client_bytes = link_bytes(&server) - before;
    let stats = server.stats();
    let sum = |f: fn(&ppclient::NodeStats) -> u64| stats.nodes.iter().map(f).sum::<u64>();
    Ok(MrRun {
        seconds,
        total,
        client_bytes,
        transfers: sum(|n| n.transfers),
        transfer_bytes: sum(|n| n.transfer_bytes),
        fetched: sum(|n| n.fetched),
    })
}

/// The same work the pp way: the client waits for each map result and
/// sends the values with the reduces, then the reduces' with the final job.
fn mapreduce_via_client(
    args: &Args,
    nodes: &[&benchmarks::SpawnedNode],
    len: u64,
    timeout: Duration,
) -> Result<MrRun> {
    let server = client_of(nodes)?;
    let before = link_bytes(&server);
    let started = Instant::now();
    let maps: Vec<JobHandle<Array<f64>>> = (0..args.mr_maps as u64)
        .map(|i| server.submit(fill, (i, len)))
        .collect();
    let mut reduces = Vec::new();
    for chunk in maps.chunks(args.mr_fan_in) {
        let values = chunk
            .iter()
            .map(|h| wait_for(h, timeout, "a map"))
            .collect::<Result<Vec<_>>>()?;
        reduces.push(server.submit(sum_sent, (values,)));
    }
    drop(maps);
    let partials = reduces
        .iter()
        .map(|h| wait_for(h, timeout, "a reduce"))
        .collect::<Result<Vec<_>>>()?;
    drop(reduces);
    let last = server.submit(total_sent, (partials,));
    let total = wait_for(&last, timeout, "the final job")?;
    let seconds = started.elapsed().as_secs_f64();
    Ok(MrRun {
        seconds,
        total,
        client_bytes: link_bytes(&server) - before,
        transfers: 0,
        transfer_bytes: 0,
        fetched: 0,
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
    if out.get("mapreduce_s").is_none() {
        return;
    }
    println!(
        "map-reduce of {} maps on {} nodes, {} inputs per reduce, {} MB of map results",
        out["mr_maps"],
        out["mr_nodes"],
        out["mr_fan_in"],
        f("intermediate_bytes") / 1e6
    );
    println!(
        "  kept, node to node: {:>8.3} s, client bytes {} ({:.4} of the map results; goal <= 0.01), {} transfers",
        f("mapreduce_s"),
        out["client_bytes"],
        f("client_bytes_over_intermediate"),
        out["transfers"]
    );
    println!(
        "  via the client:     {:>8.3} s, client bytes {} (ratio {:.3}; goal <= 0.7)",
        f("via_client_s"),
        out["via_client_bytes"],
        f("mapreduce_over_via_client")
    );
}
