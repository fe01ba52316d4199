//! A well-behaved client's throughput with and without a flood of idle
//! unauthenticated sockets (issue 10): 256 sockets from 127.0.0.2 to
//! 127.0.0.17 (16 each) that connect and say nothing, held open for the
//! whole measurement, against one loopback node with its default limits
//! (64 strangers at most, 16 per address). The client (from 127.0.0.1)
//! connects after the flood (once the node has taken every socket in),
//! then runs its jobs. Rounds alternate without
//! and with the flood; the ratio of the medians is the figure.
//!
//! `cargo run --release -p benchmarks --bin flood -- --json`
//!
//! With `--non-readers N` the disturbance is instead N authenticated clients
//! (from 127.0.0.2 up) that each submit `--big-jobs` echo jobs of 1 MiB
//! results and never read a byte (issue 10):
//! `cargo run --release -p benchmarks --bin flood -- --non-readers 2 --json`

use anyhow::Result;
use clap::Parser;
use ppclient::Server;
use ppcore::secure::ClientHandshake;
use ppcore::wire::{ClientMsg, NodeMsg, RunJob};
use ppcore::Framer;
use serde_bytes::ByteBuf;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Instant;

#[derive(Parser)]
#[command(about = "Client jobs/s with and without 256 idle unauthenticated sockets")]
struct Args {
    /// Jobs per measurement.
    #[arg(long, default_value_t = 20_000)]
    jobs: u64,
    /// Idle sockets in the flood.
    #[arg(long, default_value_t = 256)]
    sockets: usize,
    /// Rounds of each (without, with), alternating.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Instead of idle sockets: this many clients that submit jobs with
    /// 1 MiB results and never read.
    #[arg(long, default_value_t = 0)]
    non_readers: usize,
    /// Jobs of 1 MiB results each non-reading client submits.
    #[arg(long, default_value_t = 32)]
    big_jobs: u64,
    /// Workers of the node.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// More arguments for the node, such as `--credit-jobs=1024`.
    #[arg(long = "node-arg", value_name = "ARG", allow_hyphen_values = true)]
    node_args: Vec<String>,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

/// Jobs per second of a new client that connects, runs `n` echo jobs and
/// checks every result.
fn client_rate(node: &str, n: u64) -> Result<f64> {
    let started = Instant::now();
    let server = Server::builder()
        .secret(benchmarks::cluster_key()?)
        .ncpus(0)
        .nodes([node])
        .build()?;
    let handles: Vec<_> = (0..n)
        .map(|i| server.submit(jobs::echo_u64, (i,)))
        .collect();
    for (i, h) in handles.into_iter().enumerate() {
        anyhow::ensure!(h.wait()? == i as u64, "wrong result");
    }
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

/// `n` idle sockets to `node` from 127.0.0.2 up, 16 per address.
fn flood(node: SocketAddr, n: usize) -> Result<Vec<TcpStream>> {
    use socket2::{Domain, Socket, Type};
    (0..n)
        .map(|i| {
            let last = u8::try_from(2 + i / 16)?;
            let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
            socket.bind(&SocketAddr::from(([127, 0, 0, last], 0)).into())?;
            socket.connect(&node.into())?;
            Ok(socket.into())
        })
        .collect()
}

/// Reads from `s` until `decode` gives a whole frame.
fn read_frame<T>(
    s: &mut TcpStream,
    framer: &mut Framer,
    mut decode: impl FnMut(&mut Framer) -> Result<Option<T>, ppcore::FrameError>,
) -> Result<T> {
    let mut buf = vec![0u8; 64 << 10];
    for _ in 0..100_000 {
        if let Some(got) = decode(framer)? {
            return Ok(got);
        }
        match s.read(&mut buf)? {
            0 => anyhow::bail!("the node closed the connection"),
            n => framer.push(&buf[..n]),
        }
    }
    anyhow::bail!("no whole frame")
}

/// A client from 127.0.0.`last` that goes through the handshake, submits
/// `n` echo jobs of 1 MiB results (within its credit window: the node
/// hands back the rest) and never reads again.
fn non_reader(node: SocketAddr, last: u8, n: u64) -> Result<TcpStream> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    socket.bind(&SocketAddr::from(([127, 0, 0, last], 0)).into())?;
    socket.connect(&node.into())?;
    let mut s: TcpStream = socket.into();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
    let key = ppcore::KeySet::parse(benchmarks::cluster_key()?)?
        .primary()
        .clone();
    let mut framer = Framer::new(ppcore::link::HANDSHAKE_MAX_FRAME);
    let (mut hs, first) = ClientHandshake::start(&key, &[])?;
    s.write_all(&framer.encode_handshake(&first)?)?;
    let answer = read_frame(&mut s, &mut framer, |f| f.decode_handshake())?;
    hs.read(&answer)?;
    framer.secure(hs.finish()?);
    framer.set_max(1 << 24);
    s.write_all(&framer.encode(&ClientMsg::Ping(0))?)?;
    let welcome = read_frame(&mut s, &mut framer, |f| f.decode::<NodeMsg>())?;
    anyhow::ensure!(
        matches!(welcome, NodeMsg::Welcome { .. }),
        "no Welcome: {welcome:?}"
    );
    let echo = <jobs::echo_bytes as ppcore::Job>::NAME;
    for id in 1..=n {
        let args = ppcore::encode(&(ByteBuf::from(vec![id as u8; 1 << 20]),))?;
        let run = ClientMsg::Run(vec![RunJob {
            id,
            attempt: 1,
            name: echo.into(),
            args: ByteBuf::from(args),
            program: None,
            shared: Vec::new(),
            keep: None,
            journal: None,
            request: None,
        }]);
        s.write_all(&framer.encode(&run)?)?;
    }
    Ok(s)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> Result<std::process::ExitCode> {
    if let Some(code) = benchmarks::run_as_node_if_asked() {
        return Ok(code);
    }
    let args = Args::parse();
    anyhow::ensure!(args.rounds > 0 && args.sockets <= 16 * 250, "bad arguments");
    // Strangers would be closed after 5 s; keep them the whole run.
    let mut node_args = vec!["--handshake-timeout", "600"];
    node_args.extend(args.node_args.iter().map(String::as_str));
    let node = benchmarks::spawn_node_with(0, args.workers, &node_args)?;
    let addr: SocketAddr = node.addr.parse()?;
    let (mut quiet, mut flooded) = (Vec::new(), Vec::new());
    for _ in 0..args.rounds {
        quiet.push(client_rate(&node.addr, args.jobs)?);
        let sockets = if args.non_readers > 0 {
            (0..args.non_readers)
                .map(|i| non_reader(addr, u8::try_from(2 + i)?, args.big_jobs))
                .collect::<Result<Vec<_>>>()?
        } else {
            flood(addr, args.sockets)?
        };
        // The sockets are connected once the kernel took them; let the node
        // accept (and evict or refuse) them all, so that what is measured is
        // a client beside idle strangers, not the node's accept backlog.
        std::thread::sleep(std::time::Duration::from_secs(1));
        flooded.push(client_rate(&node.addr, args.jobs)?);
        drop(sockets);
    }
    let (q, f) = (median(quiet.clone()), median(flooded.clone()));
    if args.json {
        let out = serde_json::json!({
            "jobs": args.jobs,
            "sockets": args.sockets,
            "non_readers": args.non_readers,
            "big_jobs": args.big_jobs,
            "workers": args.workers,
            "node_args": args.node_args,
            "jobs_per_s_quiet": quiet,
            "jobs_per_s_flooded": flooded,
            "median_quiet": q,
            "median_flooded": f,
            "ratio": f / q,
        });
        println!("{out}");
    } else if args.non_readers > 0 {
        println!(
            "{} jobs, {} non-reading clients: {q:.0} jobs/s without, {f:.0} jobs/s with them: ratio {:.2}",
            args.jobs,
            args.non_readers,
            f / q
        );
    } else {
        println!(
            "{} jobs, {} idle sockets: {q:.0} jobs/s without, {f:.0} jobs/s with the flood: ratio {:.2}",
            args.jobs,
            args.sockets,
            f / q
        );
    }
    Ok(std::process::ExitCode::SUCCESS)
}
