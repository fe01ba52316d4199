//! Payload throughput: how fast large arguments and results move through one
//! loopback node, against plain TCP on the same machine in the same run.
//!
//! Each figure is an echo: the payload goes to the node as the argument and
//! comes back as the result, so a round trip moves it twice; MB/s is
//! 2 × payload / the median round trip (plain TCP: the same bytes echoed by
//! a thread over one loopback connection).
//!
//! Two baselines run in the same rounds, over the same loopback: plain TCP
//! (`raw_tcp_mb_s`) and the same echo with each 1 MiB chunk sealed by its
//! sender and opened by its receiver with the session's AEAD
//! (`sealed_tcp_mb_s`: what the cipher and the framing alone cost). Each
//! variant's `*_vs_raw_tcp` and `*_vs_sealed_tcp` is its MB/s over those.
//! The older limit L is the smaller of plain TCP and `aead_mb_s`, the
//! session cipher's seal + open of 1 MiB frames on one core, and
//! `*_vs_limit` is MB/s over L. A second, large payload (`--big-mib`,
//! 256 MiB by default) is echoed through a fresh node, and the peak RSS of
//! the client and the node during those echoes is reported, also as a
//! multiple of the payload.
//!
//! `cargo run --release -p benchmarks --bin payload -- --json`

use anyhow::{ensure, Context, Result};
use clap::Parser;
use ppclient::{Array, ByteBuf, Server};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

ppclient::job! {
    /// Returns its bytes (a plain `Vec<u8>`).
    pub fn echo_vec_u8(bytes: Vec<u8>) -> Vec<u8> { bytes }
}

ppclient::job! {
    /// Returns its bytes (a `ByteBuf`).
    pub fn echo_byte_buf(bytes: ByteBuf) -> ByteBuf { bytes }
}

ppclient::job! {
    /// Returns its numbers (an `Array<f64>`: raw little-endian bytes).
    pub fn echo_array_f64(numbers: Array<f64>) -> Array<f64> { numbers }
}

ppclient::job! {
    /// Returns its numbers (a plain `Vec<f64>`: raw little-endian bytes too,
    /// through `job!`'s fast path).
    pub fn echo_vec_f64(numbers: Vec<f64>) -> Vec<f64> { numbers }
}

#[derive(Parser)]
#[command(about = "Payload throughput of the pp job cluster through one loopback node")]
struct Args {
    /// Payload size in MiB (over 1 MiB, payloads travel as streams; at most
    /// the 1 GiB default limit).
    #[arg(long, default_value_t = 8)]
    mib: usize,
    /// A second, large payload size in MiB, measured after the first through
    /// a fresh node, with peak memory; 0 skips it.
    #[arg(long, default_value_t = 256)]
    big_mib: usize,
    /// Round trips per variant (the median counts).
    #[arg(long, default_value_t = 7)]
    round_trips: usize,
    /// Round trips per variant of the large payload.
    #[arg(long, default_value_t = 2)]
    big_round_trips: usize,
    /// The size in MiB of one value shared by `--shared-jobs` jobs through a
    /// fresh node (`shared_bytes_sent` says what went over the wire); 0
    /// skips it.
    #[arg(long, default_value_t = 64)]
    shared_mib: usize,
    /// Jobs that read the shared value.
    #[arg(long, default_value_t = 100)]
    shared_jobs: u64,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// Measure only these variants (keys as in the JSON output, e.g.
    /// `bytes,vec_u8`); all by default.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
}

/// The variants: the JSON key and what is sent.
const VARIANTS: [(&str, &str); 4] = [
    ("vec_u8", "Vec<u8>"),
    ("bytes", "ByteBuf"),
    ("vec_f64", "Vec<f64>"),
    ("array_f64", "Array<f64>"),
];

/// The byte at `i` of every byte payload.
fn byte_at(i: usize) -> u8 {
    (i * 31 % 251) as u8
}

/// The number at `i` of every number payload.
fn number_at(i: usize) -> f64 {
    i as f64 * 1.000_001
}

fn main() -> Result<std::process::ExitCode> {
    if let Some(code) = benchmarks::run_as_node_if_asked() {
        return Ok(code);
    }
    let args = Args::parse();
    for mib in [args.mib, args.big_mib] {
        ensure!(
            mib <= 1024,
            "payload sizes are at most 1024 MiB (the default 1 GiB payload limit)"
        );
    }
    ensure!(args.mib >= 1, "--mib must be at least 1");
    let variants: Vec<(&str, &str)> = VARIANTS
        .into_iter()
        .filter(|(key, _)| args.only.is_empty() || args.only.iter().any(|o| o == key))
        .collect();
    ensure!(!variants.is_empty(), "--only names no known variant");

    // The session cipher's seal + open on this thread, per CPU second: with
    // plain TCP, the limit L the payload figures are held against.
    let (aead, _) = benchmarks::aead_mb_s(ppcore::CIPHER, 128)?;
    let mut baselines = Baselines::start(args.mib << 20)?;
    let small = measure(args.mib, args.round_trips, &variants, Some(&mut baselines))?;
    baselines.finish()?;
    let (raw, sealed) = (small.raw_mb_s, small.sealed_mb_s);
    let limit = raw.min(aead);
    let big = match args.big_mib {
        0 => None,
        mib => Some(measure(mib, args.big_round_trips, &variants, None)?),
    };
    let shared = match args.shared_mib {
        0 => None,
        mib => Some(measure_shared(mib, args.shared_jobs)?),
    };

    if args.json {
        let mut out = serde_json::json!({
            "payload_mib": args.mib,
            "round_trips": args.round_trips.max(1),
            "raw_tcp_mb_s": raw,
            "sealed_tcp_mb_s": sealed,
            "aead_mb_s": aead,
            "cipher": format!("{:?}", ppcore::CIPHER),
            "limit_mb_s": limit,
        });
        for (key, c) in variants.iter().map(|v| v.0).zip(&small.cases) {
            out[format!("{key}_mb_s")] = c.mb_s.into();
            out[format!("{key}_vs_limit")] = (c.mb_s / limit).into();
            out[format!("{key}_vs_raw_tcp")] = (c.mb_s / raw).into();
            out[format!("{key}_vs_sealed_tcp")] = (c.mb_s / sealed).into();
        }
        if let Some(big) = &big {
            let size = (big.mib << 20) as f64;
            out["big_payload_mib"] = big.mib.into();
            out["big_round_trips"] = args.big_round_trips.max(1).into();
            for (key, c) in variants.iter().map(|v| v.0).zip(&big.cases) {
                out[format!("{key}_big_mb_s")] = c.mb_s.into();
                out[format!("{key}_big_vs_limit")] = (c.mb_s / limit).into();
            }
            let client = big.cases.iter().map(|c| c.client_peak).max().unwrap_or(0);
            let node = big.cases.iter().map(|c| c.node_peak).max().unwrap_or(0);
            out["client_peak_rss_mb"] = (client as f64 / 1e6).into();
            out["node_peak_rss_mb"] = (node as f64 / 1e6).into();
            out["client_peak_rss_x_payload"] = (client as f64 / size).into();
            out["node_peak_rss_x_payload"] = (node as f64 / size).into();
        }
        if let Some(s) = &shared {
            out["shared_mib"] = s.mib.into();
            out["shared_jobs"] = s.jobs.into();
            out["shared_bytes_sent"] = s.bytes_sent.into();
            out["shared_values_sent"] = s.values_sent.into();
            out["shared_jobs_s"] = s.took.as_secs_f64().into();
        }
        println!("{out}");
    } else {
        if let Some(s) = &shared {
            println!(
                "{} jobs on one shared {} MiB value: {} value(s), {} bytes sent, {:.3} s",
                s.jobs,
                s.mib,
                s.values_sent,
                s.bytes_sent,
                s.took.as_secs_f64()
            );
        }
        println!(
            "plain TCP {raw:.0} MB/s, sealed TCP {sealed:.0} MB/s, {:?} seal + open {aead:.0} MB/s on one core: L = {limit:.0} MB/s",
            ppcore::CIPHER
        );
        for m in std::iter::once(&small).chain(&big) {
            println!(
                "{} MiB echoed through one loopback node, median of {} round trips",
                m.mib, m.rounds
            );
            println!(
                "  {:<12} {:>8} {:>6} {:>6} {:>6}",
                "", "MB/s", "vs L", "vs raw", "vs sealed"
            );
            for ((_, name), c) in variants.iter().zip(&m.cases) {
                println!(
                    "  {:<12} {:>8.0} {:>6.2} {:>6.2} {:>6.2}   peak RSS client {:.0} MB, node {:.0} MB",
                    name,
                    c.mb_s,
                    c.mb_s / limit,
                    c.mb_s / raw,
                    c.mb_s / sealed,
                    c.client_peak as f64 / 1e6,
                    c.node_peak as f64 / 1e6
                );
            }
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// What the shared-value run measured.
struct SharedRun {
    mib: usize,
    jobs: u64,
    values_sent: u64,
    bytes_sent: u64,
    took: Duration,
}

/// A fresh loopback node of one worker, and a client that uses only it.
fn fresh_node() -> Result<(benchmarks::SpawnedNode, Server)> {
    let node = benchmarks::spawn_node(1)?;
    let server = Server::builder()
        .ncpus(0)
        .secret(benchmarks::cluster_key()?)
        .nodes([node.addr.clone()])
        .build()?;
    ensure!(
        !server.active_nodes().is_empty(),
        "spawned node unreachable"
    );
    Ok((node, server))
}

/// `jobs` jobs on one shared value of `mib` MiB through a fresh node: what
/// the client sent it (the value once, not once per job), how long it took,
/// and every job's sum checked.
fn measure_shared(mib: usize, jobs: u64) -> Result<SharedRun> {
    let size = mib << 20;
    let (node, server) = fresh_node()?;
    let bytes: Vec<u8> = (0..size).map(byte_at).collect();
    let started = Instant::now();
    let value = server.share(ByteBuf::from(bytes.clone()))?;
    let step = (size as u64 / jobs.max(1)).max(1);
    let handles: Vec<_> = (0..jobs)
        .map(|i| {
            server.submit(
                jobs::shared_byte_sum,
                (value.clone(), i * step, (i + 1) * step),
            )
        })
        .collect();
    for (i, h) in handles.into_iter().enumerate() {
        let (from, to) = (i * step as usize, ((i + 1) * step as usize).min(size));
        let want: u64 = bytes[from.min(to)..to].iter().map(|&b| u64::from(b)).sum();
        ensure!(h.wait()? == want, "job {i} summed the shared value wrong");
    }
    let took = started.elapsed();
    let stats = server.stats();
    let node = stats
        .nodes
        .iter()
        .find(|n| n.node == node.addr)
        .context("the node's statistics")?;
    Ok(SharedRun {
        mib,
        jobs,
        values_sent: node.shared_sent,
        bytes_sent: node.shared_bytes,
        took,
    })
}

/// What one payload size measured.
struct Measured {
    mib: usize,
    rounds: usize,
    /// Plain TCP, when it was measured with this size.
    raw_mb_s: f64,
    /// Sealed TCP, when it was measured with this size.
    sealed_mb_s: f64,
    /// One per variant, in order.
    cases: Vec<Case>,
}

/// What one variant measured.
struct Case {
    mb_s: f64,
    client_peak: u64,
    node_peak: u64,
}

/// Echoes every variant of `mib` MiB through a fresh node, round by round
/// (every variant once per round, plain then sealed TCP first when given, so that each
/// round's figures see the same conditions on a noisy machine); the first
/// round warms up. Peak RSS is measured per echo, from the RSS just before
/// it: the client's own copy of the payload is made inside, and compared
/// element by element with its pattern, so it holds what a user's program
/// would.
fn measure(
    mib: usize,
    rounds: usize,
    variants: &[(&str, &str)],
    mut baselines: Option<&mut Baselines>,
) -> Result<Measured> {
    let size = mib << 20;
    let rounds = rounds.max(1);
    let (node, server) = fresh_node()?;
    let node_pid = node.pid().to_string();
    let (mut raw_times, mut sealed_times) = (Vec::new(), Vec::new());
    let mut times = vec![Vec::new(); variants.len()];
    let mut peaks = vec![(0u64, 0u64); variants.len()];
    for round in 0..=rounds {
        if let Some(b) = baselines.as_deref_mut() {
            let (raw, sealed) = (b.raw_round_trip()?, b.sealed_round_trip()?);
            if round > 0 {
                raw_times.push(raw);
                sealed_times.push(sealed);
            }
        }
        for (i, (key, _)) in variants.iter().enumerate() {
            benchmarks::reset_peak_rss("self")?;
            benchmarks::reset_peak_rss(&node_pid)?;
            let took = match *key {
                "vec_u8" => echo(
                    &server,
                    echo_vec_u8,
                    (0..size).map(byte_at).collect(),
                    byte_at,
                )?,
                "bytes" => echo(
                    &server,
                    echo_byte_buf,
                    ByteBuf::from((0..size).map(byte_at).collect::<Vec<u8>>()),
                    byte_at,
                )?,
                "vec_f64" => echo(
                    &server,
                    echo_vec_f64,
                    (0..size / 8).map(number_at).collect(),
                    number_at,
                )?,
                _ => echo(
                    &server,
                    echo_array_f64,
                    (0..size / 8).map(number_at).collect(),
                    number_at,
                )?,
            };
            let (client, node) = (
                benchmarks::peak_rss_of("self")?,
                benchmarks::peak_rss_of(&node_pid)?,
            );
            if round > 0 {
                times[i].push(took);
                peaks[i] = (peaks[i].0.max(client), peaks[i].1.max(node));
            }
        }
    }
    let mb_s = |mut t: Vec<Duration>| {
        t.sort();
        t.get(t.len() / 2)
            .map_or(0.0, |d| 2.0 * size as f64 / d.as_secs_f64() / 1e6)
    };
    Ok(Measured {
        mib,
        rounds,
        raw_mb_s: mb_s(raw_times),
        sealed_mb_s: mb_s(sealed_times),
        cases: times
            .into_iter()
            .zip(peaks)
            .map(|(t, (client_peak, node_peak))| Case {
                mb_s: mb_s(t),
                client_peak,
                node_peak,
            })
            .collect(),
    })
}

/// Submits `value` to `job`, waits, and checks the echo element by element
/// against `pattern`; the time from submit to result.
fn echo<J, A, T>(server: &Server, job: J, value: A, pattern: fn(usize) -> T) -> Result<Duration>
where
    J: ppclient::Job<Args = (A,), Output = A>,
    A: AsRef<[T]> + Send + 'static,
    T: PartialEq,
{
    let len = value.as_ref().len();
    let started = Instant::now();
    let back = server.submit(job, (value,)).wait()?;
    let took = started.elapsed();
    let back = back.as_ref();
    ensure!(
        back.len() == len && back.iter().enumerate().all(|(i, x)| *x == pattern(i)),
        "the echo differs from what was sent"
    );
    Ok(took)
}

/// The two baselines over loopback, each a thread that echoes `size` bytes
/// at a time over one connection with `TCP_NODELAY`: plain TCP, and the same
/// with every 1 MiB chunk sealed and opened ([`benchmarks::SealedTcp`]).
struct Baselines {
    stream: TcpStream,
    out: Vec<u8>,
    back: Vec<u8>,
    echo: std::thread::JoinHandle<Result<()>>,
    sealed: benchmarks::SealedTcp,
}

impl Baselines {
    fn start(size: usize) -> Result<Self> {
        let (stream, echo) = benchmarks::tcp_echo(size)?;
        Ok(Baselines {
            stream,
            out: (0..size).map(byte_at).collect(),
            back: vec![0u8; size],
            echo,
            sealed: benchmarks::SealedTcp::start(size)?,
        })
    }

    /// One plain echo of the payload; checks it came back exact.
    fn raw_round_trip(&mut self) -> Result<Duration> {
        self.back.fill(0);
        let started = Instant::now();
        self.stream.write_all(&self.out)?;
        self.stream.read_exact(&mut self.back)?;
        let took = started.elapsed();
        ensure!(self.back == self.out, "plain TCP echo differs");
        Ok(took)
    }

    /// One sealed echo of the payload; checks it came back exact.
    fn sealed_round_trip(&mut self) -> Result<Duration> {
        self.back.fill(0);
        let started = Instant::now();
        self.sealed.round_trip(&self.out, &mut self.back)?;
        let took = started.elapsed();
        ensure!(self.back == self.out, "sealed TCP echo differs");
        Ok(took)
    }

    fn finish(self) -> Result<()> {
        drop(self.stream);
        self.echo
            .join()
            .map_err(|_| anyhow::anyhow!("echo thread panicked"))?
            .context("echo thread")?;
        self.sealed.finish().context("sealed echo thread")
    }
}
