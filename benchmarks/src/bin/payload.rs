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
    /// Payload size in MiB.
    #[arg(long, default_value_t = 8)]
    mib: usize,
    /// Round trips per variant (the median counts).
    #[arg(long, default_value_t = 7)]
    round_trips: usize,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// The largest single frame today; a payload and its echo must fit in one.
const FRAME_CAP: usize = ppcore::wire::DEFAULT_MAX_FRAME;

fn main() -> Result<std::process::ExitCode> {
    if let Some(code) = benchmarks::run_as_node_if_asked() {
        return Ok(code);
    }
    let args = Args::parse();
    let size = args.mib << 20;
    ensure!(
        size + 4 * ppcore::wire::PER_JOB_OVERHEAD <= FRAME_CAP,
        "{} MiB does not fit one {} MiB frame, and payloads do not yet travel as streams",
        args.mib,
        FRAME_CAP >> 20
    );
    let rounds = args.round_trips.max(1);
    let raw = raw_tcp(size, rounds)?;

    let node = benchmarks::spawn_node(1)?;
    let server = Server::builder()
        .ncpus(0)
        .nodes([node.addr.clone()])
        .build()?;
    ensure!(
        !server.active_nodes().is_empty(),
        "spawned node unreachable"
    );
    let bytes: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
    let numbers: Vec<f64> = (0..size / 8).map(|i| i as f64 * 1.000_001).collect();

    let mut cases = Vec::new();
    let vec_u8 = measure(&node, rounds, size, || {
        echo(&server, echo_vec_u8, bytes.clone(), &bytes)
    })?;
    cases.push(("vec_u8", "Vec<u8>", vec_u8));
    let byte_buf = measure(&node, rounds, size, || {
        echo(&server, echo_byte_buf, ByteBuf::from(bytes.clone()), &bytes)
    })?;
    cases.push(("bytes", "ByteBuf", byte_buf));
    let array = measure(&node, rounds, size, || {
        echo(
            &server,
            echo_array_f64,
            Array::from(numbers.clone()),
            &numbers,
        )
    })?;
    cases.push(("vec_f64", "Array<f64>", array));
    let plain = measure(&node, rounds, size, || {
        echo(&server, echo_vec_f64, numbers.clone(), &numbers)
    })?;
    cases.push(("vec_f64_plain", "Vec<f64> (plain)", plain));

    let peak_client = cases.iter().map(|c| c.2.client_peak).max().unwrap_or(0);
    let peak_node = cases.iter().map(|c| c.2.node_peak).max().unwrap_or(0);
    if args.json {
        let mut out = serde_json::json!({
            "payload_mib": args.mib,
            "round_trips": rounds,
            "raw_tcp_mb_s": raw,
            "client_peak_rss_mb": peak_client as f64 / 1e6,
            "node_peak_rss_mb": peak_node as f64 / 1e6,
            "streams": false,
            "note": format!(
                "payloads above one {} MiB frame are refused until streams are wired in; \
                 the 256 MiB case is not run; aead_mb_s comes with encrypted sessions",
                FRAME_CAP >> 20
            ),
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
        println!(
            "  (payloads above one {} MiB frame wait for streams: no 256 MiB case yet)",
            FRAME_CAP >> 20
        );
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

/// One warm-up, then `rounds` round trips of `run`: MB/s over the median,
/// and the peak RSS of this process and of the node meanwhile.
fn measure(
    node: &benchmarks::SpawnedNode,
    rounds: usize,
    size: usize,
    mut run: impl FnMut() -> Result<Duration>,
) -> Result<Case> {
    let node_pid = node.pid().to_string();
    benchmarks::reset_peak_rss("self")?;
    benchmarks::reset_peak_rss(&node_pid)?;
    run()?;
    let mut times = (0..rounds).map(|_| run()).collect::<Result<Vec<_>>>()?;
    times.sort();
    let median = times[times.len() / 2].as_secs_f64();
    Ok(Case {
        mb_s: 2.0 * size as f64 / median / 1e6,
        client_peak: benchmarks::peak_rss_of("self")?,
        node_peak: benchmarks::peak_rss_of(&node_pid)?,
    })
}

/// Plain TCP over loopback: `size` bytes to a thread that echoes them back,
/// `rounds` times after a warm-up; MB/s over the median round trip.
fn raw_tcp(size: usize, rounds: usize) -> Result<f64> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let echo = std::thread::spawn(move || -> Result<()> {
        let (mut peer, _) = listener.accept()?;
        peer.set_nodelay(true)?;
        let mut buf = vec![0u8; size];
        for _ in 0..=rounds {
            peer.read_exact(&mut buf)?;
            peer.write_all(&buf)?;
        }
        Ok(())
    });
    let mut stream = TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    let out: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
    let mut back = vec![0u8; size];
    let mut times = Vec::with_capacity(rounds);
    for round in 0..=rounds {
        let started = Instant::now();
        stream.write_all(&out)?;
        stream.read_exact(&mut back)?;
        if round > 0 {
            times.push(started.elapsed());
        }
    }
    ensure!(back == out, "plain TCP echo differs");
    echo.join()
        .map_err(|_| anyhow::anyhow!("echo thread panicked"))?
        .context("echo thread")?;
    times.sort();
    Ok(2.0 * size as f64 / times[times.len() / 2].as_secs_f64() / 1e6)
}
