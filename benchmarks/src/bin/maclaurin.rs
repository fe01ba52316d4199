//! The benchmark that sells pp: the Maclaurin series of 1/(1-x) split into
//! tasks, run sequentially, on std threads, on rayon and on our Server.

use anyhow::{ensure, Result};
use benchmarks::{best_of, Row};
use clap::Parser;
use jobs::{maclaurin, maclaurin_exact, task_range};
use ppclient::Server;
use rayon::prelude::*;

#[derive(Parser)]
#[command(about = "Maclaurin series of 1/(1-x): sequential, threads, rayon and pp side by side")]
struct Args {
    /// Terms of the series; default: the talk's 12,800,000 and 100 times that.
    #[arg(long)]
    terms: Option<u64>,
    /// Tasks the terms are split into.
    #[arg(long, default_value_t = 64)]
    tasks: u64,
    /// Local worker threads (default: all CPUs).
    #[arg(long)]
    ncpus: Option<usize>,
    /// The x of 1/(1-x).
    #[arg(long, default_value_t = 0.999999)]
    x: f64,
    /// Runs of each variant; the fastest counts (at least 20 for runs of a
    /// few milliseconds).
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
    /// Also run on these nodes (comma-separated host:port), nodes only.
    #[arg(long, value_delimiter = ',')]
    nodes: Vec<String>,
    /// Start a ppserver on 127.0.0.1 and add rows for it: all work through
    /// the node, and local pool plus node.
    #[arg(long)]
    spawn_node: bool,
    /// Serve a live web dashboard of the local pp Server at ADDR
    /// (e.g. 127.0.0.1:8787) to watch its runs.
    #[arg(long, value_name = "ADDR")]
    dashboard: Option<String>,
    /// File holding the key the nodes given with --nodes share (default:
    /// the `PP_SECRET` environment variable; never the key itself on the
    /// command line, where `ps` shows it).
    #[arg(long, value_name = "FILE")]
    secret_file: Option<std::path::PathBuf>,
}

/// The pp servers measured, by row name and JSON key.
struct Servers {
    list: Vec<(String, &'static str, Server)>,
    _node: Option<benchmarks::SpawnedNode>,
}

/// A sequential run shorter than this makes every variant repeat at least
/// [`SHORT_REPEAT`] times.
const SHORT_RUN: f64 = 0.05;
const SHORT_REPEAT: usize = 20;

/// One size's measurements.
struct Run {
    terms: u64,
    rows: Vec<Row>,
    sum: f64,
    exact: f64,
}

fn main() -> Result<std::process::ExitCode> {
    if let Some(code) = benchmarks::run_as_node_if_asked() {
        return Ok(code);
    }
    let args = Args::parse();
    let servers = servers(&args)?;
    let server = &servers.list[0].2;
    let sizes = match args.terms {
        Some(t) => vec![t],
        None => vec![12_800_000, 1_280_000_000],
    };
    let runs = sizes
        .into_iter()
        .map(|terms| measure(&args, &servers, terms))
        .collect::<Result<Vec<_>>>()?;
    if args.json {
        println!("{}", json(&args, &servers, &runs));
    } else {
        for run in &runs {
            print_table(&args, server, run);
        }
        for (name, _, s) in &servers.list {
            println!("{name}:");
            s.print_stats();
        }
    }
    for run in &runs {
        let err = ((run.sum - run.exact) / run.exact).abs();
        ensure!(
            err <= 1e-9,
            "sum {} differs from the closed form {} by {err:e} (relative)",
            run.sum,
            run.exact
        );
    }
    Ok(std::process::ExitCode::SUCCESS)
}

fn servers(args: &Args) -> Result<Servers> {
    let local = |b: ppclient::Builder| match args.ncpus {
        Some(n) => b.ncpus(n),
        None => b,
    };
    let mut main = local(Server::builder());
    if let Some(addr) = &args.dashboard {
        main = main.dashboard(addr.as_str());
    }
    let main = main.build()?;
    if let Some(addr) = main.dashboard_addr() {
        eprintln!("dashboard: http://{addr}/ (the pp rows run after the sequential, threads and rayon ones)");
    }
    let mut list = vec![(
        format!("pp Server, local ({} jobs)", args.tasks),
        "pp_local_s",
        main,
    )];
    if !args.nodes.is_empty() {
        let mut builder = Server::builder().ncpus(0);
        if let Some(path) = &args.secret_file {
            builder = builder.secret_file(path);
        }
        let s = builder.nodes(args.nodes.iter().cloned()).build()?;
        ensure!(
            !s.active_nodes().is_empty(),
            "no node reachable: {:?}",
            s.nodes()
        );
        list.push(("pp cluster (--nodes)".into(), "pp_cluster_s", s));
    }
    let mut node = None;
    if args.spawn_node {
        let n = benchmarks::spawn_node(ppclient::detect_ncpus())?;
        let key = benchmarks::cluster_key()?;
        let remote = Server::builder()
            .secret(key)
            .ncpus(0)
            .nodes([n.addr.clone()])
            .build()?;
        ensure!(
            !remote.active_nodes().is_empty(),
            "spawned node unreachable"
        );
        list.push(("pp Server, remote (1 node)".into(), "pp_remote_s", remote));
        let mixed = local(Server::builder().secret(key))
            .nodes([n.addr.clone()])
            .build()?;
        list.push(("pp Server, local + node".into(), "pp_mixed_s", mixed));
        node = Some(n);
    }
    Ok(Servers { list, _node: node })
}

/// Sums the task ranges as jobs on `server`.
fn pp_sum(server: &Server, x: f64, ranges: &[(u64, u64)]) -> Result<f64> {
    let handles: Vec<_> = ranges
        .iter()
        .map(|&(a, b)| server.submit(maclaurin, (x, a, b)))
        .collect();
    let mut sum = 0.0;
    for h in handles {
        sum += h.wait()?;
    }
    Ok(sum)
}

fn measure(args: &Args, servers: &Servers, terms: u64) -> Result<Run> {
    let server = &servers.list[0].2;
    let (x, tasks, n) = (args.x, args.tasks, args.repeat);
    let ranges: Vec<(u64, u64)> = (0..tasks).map(|k| task_range(terms, tasks, k)).collect();
    let exact = maclaurin_exact(x, terms);
    let (seq_s, seq) = best_of(n, || Ok(maclaurin::call(x, 0, terms)))?;
    // Runs of a few milliseconds are at the mercy of one scheduler hiccup:
    // take the best of more of them.
    let n = if seq_s < SHORT_RUN {
        n.max(SHORT_REPEAT)
    } else {
        n
    };
    let (threads_s, threads) = best_of(n, || Ok(std_threads(x, terms, server.ncpus())))?;
    let (rayon_s, rayon) = best_of(n, || {
        Ok(ranges
            .par_iter()
            .map(|&(a, b)| maclaurin::call(x, a, b))
            .sum::<f64>())
    })?;
    for (name, value) in [("threads", threads), ("rayon", rayon), ("sequential", seq)] {
        let err = ((value - exact) / exact).abs();
        ensure!(
            err <= 1e-9,
            "{name} sum {value} is off the closed form {exact}"
        );
    }
    let mut rows = vec![
        Row::new("sequential loop", seq_s, seq_s, rayon_s),
        Row::new("std threads (static split)", threads_s, seq_s, rayon_s),
        Row::new(&format!("rayon ({tasks} tasks)"), rayon_s, seq_s, rayon_s),
    ];
    let mut sum = f64::NAN;
    for (i, (name, _, s)) in servers.list.iter().enumerate() {
        let (secs, value) = best_of(n, || pp_sum(s, x, &ranges))?;
        let err = ((value - exact) / exact).abs();
        ensure!(
            err <= 1e-9,
            "{name} sum {value} is off the closed form {exact}"
        );
        if i == 0 {
            sum = value;
        }
        rows.push(Row::new(name, secs, seq_s, rayon_s));
    }
    Ok(Run {
        terms,
        rows,
        sum,
        exact,
    })
}

/// One thread per CPU, each summing a contiguous share of the terms.
fn std_threads(x: f64, terms: u64, ncpus: usize) -> f64 {
    let n = ncpus.max(1) as u64;
    std::thread::scope(|s| {
        let parts: Vec<_> = (0..n)
            .map(|k| {
                let (a, b) = task_range(terms, n, k);
                s.spawn(move || maclaurin::call(x, a, b))
            })
            .collect();
        parts
            .into_iter()
            .map(|h| h.join().unwrap_or(f64::NAN))
            .sum()
    })
}

fn print_table(args: &Args, server: &Server, run: &Run) {
    println!(
        "Maclaurin series of 1/(1-x), x = {}, {} terms, {} tasks, {} workers",
        args.x,
        run.terms,
        args.tasks,
        server.ncpus()
    );
    benchmarks::print_rows(&run.rows);
    println!(
        "sum = {:.12}, exact (1 - x^N)/(1 - x) = {:.12}, relative error {:.1e}\n",
        run.sum,
        run.exact,
        ((run.sum - run.exact) / run.exact).abs()
    );
}

fn json(args: &Args, servers: &Servers, runs: &[Run]) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    out.insert("tasks".into(), args.tasks.into());
    out.insert("ncpus".into(), servers.list[0].2.ncpus().into());
    out.insert("x".into(), args.x.into());
    let mut keys = vec!["sequential_s", "threads_s", "rayon_s"];
    keys.extend(servers.list.iter().map(|(_, key, _)| *key));
    // The larger size goes under the plain keys, the talk's size under `*_small`.
    for (i, run) in runs.iter().rev().enumerate() {
        let suffix = if i == 0 { "" } else { "_small" };
        out.insert(format!("terms{suffix}"), run.terms.into());
        for (key, row) in keys.iter().zip(&run.rows) {
            out.insert(format!("{key}{suffix}"), row.seconds.into());
        }
        out.insert(format!("sum{suffix}"), run.sum.into());
        out.insert(format!("exact{suffix}"), run.exact.into());
        for (key, row) in keys.iter().zip(&run.rows).skip(3) {
            let name = key.trim_end_matches("_s");
            out.insert(format!("{name}_efficiency{suffix}"), row.efficiency.into());
        }
    }
    serde_json::Value::Object(out)
}
