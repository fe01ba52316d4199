//! Payload throughput: how fast large arguments and results move through one
//! loopback node, against plain TCP on the same machine in the same run.
//!
//! Each figure is an echo: the payload goes to the node as the argument and
//! comes back as the result, so a round trip moves it twice; MB/s is
//! 2 × payload / the median round trip (plain TCP: the same bytes echoed by
//! a thread over one loopback connection).

use anyhow::{ensure, Context, Result};
use clap::Parser;
use ppclient::{Array, ByteBuf, Server};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
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
    /// Returns its numbers (a plain `Vec<f64>`: one MessagePack float each).
    pub fn echo_vec_f64(numbers: Vec<f64>) -> Vec<f64> { numbers }
}

#[derive(Parser)]
#[command(about = "Payload throughput of the pp job cluster through one loopback node")]
struct Args {
    /// Payload size in MiB (over 1 MiB, payloads travel as streams; at most
    /// the 1 GiB default limit).
    #[arg(long, default_value_t = 8)]
    mib: usize,
    /// Round trips per variant (the median counts).
    #[arg(long, default_value_t = 7)]
    round_trips: usize,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// Measure only these variants (keys as in the JSON output, e.g.
    /// `bytes,vec_u8`); all by default.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
}

fn main() -> Result<std::process::ExitCode> {
    if let Some(code) = benchmarks::run_as_node_if_asked() {
        return Ok(code);
    }
    let args = Args::parse();
    let size = args.mib << 20;
    ensure!(
        (1..=1024).contains(&args.mib),
        "--mib must be 1 to 1024 (the default 1 GiB payload limit)"
    );
    let rounds = args.round_trips.max(1);
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
    let bytes: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
    let numbers: Vec<f64> = (0..size / 8).map(|i| i as f64 * 1.000_001).collect();
    let mut raw = RawTcp::start(size)?;

    type Run<'a> = Box<dyn FnMut() -> Result<Duration> + 'a>;
    let mut variants: Vec<(&str, &str, Run)> = vec![
        (
            "vec_u8",
            "Vec<u8>",
            Box::new(|| echo(&server, echo_vec_u8, bytes.clone(), &bytes)),
        ),
        (
            "bytes",
            "ByteBuf",
            Box::new(|| echo(&server, echo_byte_buf, ByteBuf::from(bytes.clone()), &bytes)),
        ),
        (
            "vec_f64",
            "Array<f64>",
            Box::new(|| {
                echo(
                    &server,
                    echo_array_f64,
                    Array::from(numbers.clone()),
                    &numbers,
                )
            }),
        ),
        (
            "vec_f64_plain",
            "Vec<f64> (plain)",
            Box::new(|| echo(&server, echo_vec_f64, numbers.clone(), &numbers)),
        ),
    ];
    if !args.only.is_empty() {
        variants.retain(|(key, _, _)| args.only.iter().any(|o| o == key));
        ensure!(!variants.is_empty(), "--only names no known variant");
    }
    // Round by round, every variant once, plain TCP first: on a shared,
    // noisy machine each round's figures see the same conditions.
    let node_pid = node.pid().to_string();
    let mut raw_times = Vec::new();
    let mut times = vec![Vec::new(); variants.len()];
    let mut peaks = vec![(0u64, 0u64); variants.len()];
    for round in 0..=rounds {
        let raw_time = raw.round_trip()?;
        for (i, (_, _, run)) in variants.iter_mut().enumerate() {
            benchmarks::reset_peak_rss("self")?;
            benchmarks::reset_peak_rss(&node_pid)?;
            let took = run()?;
            let (client, node) = (
                benchmarks::peak_rss_of("self")?,
                benchmarks::peak_rss_of(&node_pid)?,
            );
            // Round 0 warms up.
            if round > 0 {
                times[i].push(took);
                peaks[i] = (peaks[i].0.max(client), peaks[i].1.max(node));
            }
        }
        if round > 0 {
            raw_times.push(raw_time);
        }
    }
    raw.finish()?;
    let mb_s = |mut t: Vec<Duration>| {
        t.sort();
        2.0 * size as f64 / t[t.len() / 2].as_secs_f64() / 1e6
    };
    let raw = mb_s(raw_times);
    let cases: Vec<(&str, &str, Case)> = variants
        .iter()
        .zip(times)
        .zip(&peaks)
        .map(|(((key, name, _), t), &(client_peak, node_peak))| {
            (
                *key,
                *name,
                Case {
                    mb_s: mb_s(t),
                    client_peak,
                    node_peak,
                },
            )
        })
        .collect();

    let peak_client = cases.iter().map(|c| c.2.client_peak).max().unwrap_or(0);
    let peak_node = cases.iter().map(|c| c.2.node_peak).max().unwrap_or(0);
    if args.json {
        let mut out = serde_json::json!({
            "payload_mib": args.mib,
            "round_trips": rounds,
            "raw_tcp_mb_s": raw,
            "client_peak_rss_mb": peak_client as f64 / 1e6,
            "node_peak_rss_mb": peak_node as f64 / 1e6,
            "streams": size > ppcore::stream::MAX_CHUNK,
        });
        for (key, _, c) in &cases {
            out[format!("{key}_mb_s")] = c.mb_s.into();
            out[format!("{key}_vs_raw")] = (c.mb_s / raw).into();
            out[format!("{key}_client_peak_rss_mb")] = (c.client_peak as f64 / 1e6).into();
            out[format!("{key}_node_peak_rss_mb")] = (c.node_peak as f64 / 1e6).into();
        }
        println!("{out}");
    } else {
        println!(
            "{} MiB echoed through one loopback node, median of {rounds} round trips",
            args.mib
        );
        println!("  {:<18} {:>10} {:>8}", "", "MB/s", "vs TCP");
        println!("  {:<18} {:>10.0} {:>8.2}", "plain TCP", raw, 1.0);
        for (_, name, c) in &cases {
            println!(
                "  {:<18} {:>10.0} {:>8.2}   peak RSS client {:.0} MB, node {:.0} MB",
                name,
                c.mb_s,
                c.mb_s / raw,
                c.client_peak as f64 / 1e6,
                c.node_peak as f64 / 1e6
            );
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// What one variant measured.
struct Case {
    mb_s: f64,
    client_peak: u64,
    node_peak: u64,
}

/// Submits `value` to `job`, waits, and checks the echo is exact; the time
/// from submit to result.
fn echo<J, A, T>(server: &Server, job: J, value: A, expected: &[T]) -> Result<Duration>
where
    J: ppclient::Job<Args = (A,), Output = A>,
    A: AsRef<[T]> + Send + 'static,
    T: PartialEq,
{
    let started = Instant::now();
    let back = server.submit(job, (value,)).wait()?;
    let took = started.elapsed();
    ensure!(
        back.as_ref() == expected,
        "the echo differs from what was sent"
    );
    Ok(took)
}

/// Plain TCP over loopback: a thread echoes what it reads, `size` bytes at
/// a time, over one connection with `TCP_NODELAY`.
struct RawTcp {
    stream: TcpStream,
    out: Vec<u8>,
    back: Vec<u8>,
    echo: std::thread::JoinHandle<Result<()>>,
}

impl RawTcp {
    fn start(size: usize) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let echo = std::thread::spawn(move || -> Result<()> {
            let (mut peer, _) = listener.accept()?;
            peer.set_nodelay(true)?;
            let mut buf = vec![0u8; size];
            // Until the client closes: then read_exact fails with EOF.
            while peer.read_exact(&mut buf).is_ok() {
                peer.write_all(&buf)?;
            }
            Ok(())
        });
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        Ok(RawTcp {
            stream,
            out: (0..size).map(|i| (i * 31 % 251) as u8).collect(),
            back: vec![0u8; size],
            echo,
        })
    }

    /// One echo of the payload; checks it came back exact.
    fn round_trip(&mut self) -> Result<Duration> {
        let started = Instant::now();
        self.stream.write_all(&self.out)?;
        self.stream.read_exact(&mut self.back)?;
        let took = started.elapsed();
        ensure!(self.back == self.out, "plain TCP echo differs");
        Ok(took)
    }

    fn finish(self) -> Result<()> {
        drop(self.stream);
        self.echo
            .join()
            .map_err(|_| anyhow::anyhow!("echo thread panicked"))?
            .context("echo thread")
    }
}
