//! What the link's state machines cost per job, without sockets or threads:
//! a client link and a node link wired together in one thread, no-op jobs
//! submitted in batches, answered, and resolved. Every cost in it (framing,
//! MessagePack, sealing, the ledger and the credit window) is paid once per
//! job on each side of every remote job; this measures it alone, free of
//! the scheduling noise of a shared machine.
//!
//! With `--round-trips N` it also measures the round trip of one echo job
//! through the two links over loopback TCP with no hand-off between threads:
//! each end is one thread blocked in `read`, and the node answers on the
//! thread that read the job. Beside it, in alternating blocks, a plain
//! ping-pong of frames of the same size. The gap between the two is what
//! the protocol itself costs a round trip; the gap between this and
//! `overhead`'s `remote_rtt_p50_us` is what the hand-offs between threads
//! (submitter, drivers, node worker) cost.

use anyhow::{ensure, Result};
use clap::Parser;
use ppcore::link::{ClientLink, Event, LinkConfig, LinkEvent, LinkIo};
use ppcore::wire::{DoneJob, JobInfo, NodeMsg, RunJob};
use ppcore::{Key, KeySet, NodeAction, NodeEvent, NodeLink, NodeLinkConfig};
use serde_bytes::ByteBuf;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(about = "CPU cost per job of the client and node links, in one thread")]
struct Args {
    /// No-op jobs to run through the pair.
    #[arg(long, default_value_t = 2_000_000)]
    jobs: u64,
    /// Jobs per batch (as a driver takes them from its queue).
    #[arg(long, default_value_t = 1024)]
    batch: usize,
    /// Also time this many echo round trips over loopback TCP (0: none).
    #[arg(long, default_value_t = 0)]
    round_trips: usize,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

const NAME: &str = "jobs::noop";

fn keys() -> KeySet {
    KeySet::one(Key::from_bytes([7; 32]))
}

fn welcome() -> NodeMsg {
    NodeMsg::Welcome {
        node_id: "bench".into(),
        version: "bench".into(),
        workers: 2,
        jobs: vec![JobInfo {
            name: NAME.into(),
            signature: "()->()".into(),
        }],
        heartbeat_ms: 0,
        caps: vec![],
        credit_jobs: 0,
        credit_bytes: 0,
        shared_max: 0,
        reach: None,
        max_payload: 0,
        offer: None,
    }
}

/// Time spent in each link, and jobs resolved.
#[derive(Default)]
struct Spent {
    client: Duration,
    node: Duration,
    resolved: u64,
}

/// Carries the actions of both links out until both are quiet; the node
/// answers every job it is given at once.
fn pump(client: &mut ClientLink<u64>, node: &mut NodeLink, now: Instant, spent: &mut Spent) {
    loop {
        let mut busy = false;
        let mut to_node = Vec::new();
        let started = Instant::now();
        while let Some(bytes) = client.poll_transmit() {
            busy = true;
            to_node.push(bytes);
        }
        while let Some(event) = client.poll_event() {
            busy = true;
            if let LinkEvent::Done { .. } = event {
                spent.resolved += 1;
            }
        }
        spent.client += started.elapsed();
        let started = Instant::now();
        let mut to_client = Vec::new();
        for bytes in &to_node {
            node.handle(NodeEvent::Received(bytes), now);
        }
        loop {
            while let Some(bytes) = node.poll_transmit() {
                busy = true;
                to_client.push(bytes);
            }
            let Some(a) = node.poll_event() else { break };
            busy = true;
            if let NodeAction::Run(jobs) = a {
                let done = jobs
                    .into_iter()
                    .map(|j| DoneJob {
                        id: j.id,
                        attempt: j.attempt,
                        result: Ok(ByteBuf::from(vec![0xc0])),
                        exec_ns: 100,
                        kept: None,
                    })
                    .collect();
                node.handle(NodeEvent::Finished(done), now);
            }
        }
        spent.node += started.elapsed();
        let started = Instant::now();
        for bytes in &to_client {
            client.handle(Event::Received(bytes), now);
        }
        spent.client += started.elapsed();
        if !busy {
            return;
        }
    }
}

fn client_config() -> LinkConfig {
    LinkConfig {
        keys: keys(),
        heartbeat: Duration::from_secs(5),
        max_frame: 16 << 20,
        max_prefetch: 4096,
        reconnect: false,
        send_window: ppcore::window::default_window(16 << 20),
        ..LinkConfig::for_tests()
    }
}

fn node_config() -> NodeLinkConfig {
    NodeLinkConfig {
        keys: keys(),
        heartbeat: Duration::from_secs(5),
        max_frame: 16 << 20,
        credit_jobs: 1 << 20,
        send_window: ppcore::window::default_window(16 << 20),
        ..NodeLinkConfig::for_tests()
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    let (c, n, all) = per_job(&args)?;
    let rtt = match args.round_trips {
        0 => None,
        n => Some(round_trips(n)?),
    };
    if args.json {
        let mut out = serde_json::json!({
            "jobs": args.jobs,
            "batch": args.batch,
            "client_ns_per_job": c,
            "node_ns_per_job": n,
            "total_ns_per_job": all,
        });
        if let Some((link, tcp)) = rtt {
            out["link_rtt_p50_us"] = link.into();
            out["tcp_rtt_p50_us"] = tcp.into();
            out["link_rtt_over_tcp"] = (link / tcp).into();
        }
        println!("{out}");
    } else {
        println!(
            "{} no-op jobs in batches of {}: client link {c:.0} ns/job, node link {n:.0} ns/job, {all:.0} ns/job in all",
            args.jobs, args.batch,
        );
        if let Some((link, tcp)) = rtt {
            println!(
                "echo round trip through both links, no hand-offs: p50 {link:.1} µs; plain ping-pong of the same frames {tcp:.1} µs ({:.2}x)",
                link / tcp
            );
        }
    }
    Ok(())
}

/// CPU nanoseconds per job in the client link, in the node link, and in all.
fn per_job(args: &Args) -> Result<(f64, f64, f64)> {
    let now = Instant::now();
    let mut client: ClientLink<u64> = ClientLink::new(client_config(), now);
    let mut node = NodeLink::new(node_config(), welcome(), now);
    // The dial, the handshake and the welcome.
    while let Some(io) = client.poll_io() {
        if io == LinkIo::Connect {
            client.handle(Event::Connected, now);
            break;
        }
    }
    let mut spent = Spent::default();
    pump(&mut client, &mut node, now, &mut spent);
    ensure!(client.free() > 0, "the link did not come up");
    let args_bytes = ByteBuf::from(vec![0x90]); // an empty MessagePack array: ()
    spent = Spent::default();
    let mut next = 0u64;
    let wall = Instant::now();
    while next < args.jobs {
        let n = (args.jobs - next)
            .min(args.batch as u64)
            .min(client.free() as u64);
        ensure!(n > 0, "the window stayed shut");
        let started = Instant::now();
        let batch = (next..next + n)
            .map(|id| {
                let run = RunJob {
                    id,
                    attempt: 1,
                    name: NAME.to_owned(),
                    args: args_bytes.clone(),
                    program: None,
                    shared: Vec::new(),
                    keep: None,
                    journal: None,
                    request: None,
                };
                (run, id)
            })
            .collect();
        client.handle(Event::Submit(batch), now);
        spent.client += started.elapsed();
        next += n;
        pump(&mut client, &mut node, now, &mut spent);
    }
    let wall = wall.elapsed();
    ensure!(
        spent.resolved == args.jobs,
        "{} of {} jobs resolved",
        spent.resolved,
        args.jobs
    );
    let per_job = |d: Duration| d.as_nanos() as f64 / args.jobs as f64;
    Ok((per_job(spent.client), per_job(spent.node), per_job(wall)))
}

/// Round trips timed per block, the two kinds alternating.
const BLOCK: usize = 500;

/// Median round trip (µs) of one echo job through both links over loopback
/// TCP, and of a plain ping-pong of frames of the same size.
fn round_trips(n: usize) -> Result<(f64, f64)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let node = std::thread::spawn(move || serve_node(listener));
    let mut link = LinkEnd::connect(addr)?;
    let frame = link.echo(0)?; // the sealed Run frame of one job
    let (mut tcp, echo) = PingPong::start(frame.len())?;
    let (mut link_times, mut tcp_times) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let mut i = 1u64;
    while link_times.len() < n {
        for _ in 0..BLOCK.min(n - link_times.len()) {
            let started = Instant::now();
            link.echo(i)?;
            link_times.push(started.elapsed());
            i += 1;
            let started = Instant::now();
            tcp.round_trip(&frame)?;
            tcp_times.push(started.elapsed());
        }
    }
    drop(link);
    drop(tcp);
    node.join()
        .map_err(|_| anyhow::anyhow!("the node thread panicked"))??;
    echo.join()
        .map_err(|_| anyhow::anyhow!("the echo thread panicked"))??;
    Ok((p50_us(&mut link_times), p50_us(&mut tcp_times)))
}

fn p50_us(times: &mut [Duration]) -> f64 {
    times.sort_unstable();
    times
        .get(times.len() / 2)
        .map_or(f64::NAN, |d| d.as_secs_f64() * 1e6)
}

/// The node's end: one thread that reads, feeds its link, runs each job
/// (an echo: the arguments are the result) and writes, until the client
/// closes.
fn serve_node(listener: TcpListener) -> Result<()> {
    let (mut s, _) = listener.accept()?;
    s.set_nodelay(true)?;
    let mut node = NodeLink::new(node_config(), welcome(), Instant::now());
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let (mut out, mut done) = (Vec::new(), Vec::new());
        loop {
            while let Some(bytes) = node.poll_transmit() {
                out.extend_from_slice(&bytes);
            }
            match node.poll_event() {
                Some(NodeAction::Run(jobs)) => done.extend(jobs.into_iter().map(|j| DoneJob {
                    id: j.id,
                    attempt: j.attempt,
                    result: Ok(j.args),
                    exec_ns: 0,
                    kept: None,
                })),
                Some(NodeAction::Closed(_)) => return Ok(()),
                Some(_) => {}
                None => break,
            }
        }
        let answered = !done.is_empty();
        if answered {
            node.handle(NodeEvent::Finished(done), Instant::now());
        }
        if !out.is_empty() {
            s.write_all(&out)?;
        }
        if answered {
            continue; // the answers' frames go out first
        }
        let n = s.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        node.handle(NodeEvent::Received(&buf[..n]), Instant::now());
    }
}

/// The client's end: its link and a blocking socket, on this thread.
struct LinkEnd {
    link: ClientLink<u64>,
    s: TcpStream,
    buf: Vec<u8>,
}

impl LinkEnd {
    /// Dials the node and waits until the link is up.
    fn connect(addr: std::net::SocketAddr) -> Result<Self> {
        let s = TcpStream::connect(addr)?;
        s.set_nodelay(true)?;
        let mut link = ClientLink::new(client_config(), Instant::now());
        while let Some(io) = link.poll_io() {
            if io == LinkIo::Connect {
                break;
            }
        }
        link.handle(Event::Connected, Instant::now());
        let mut end = LinkEnd {
            link,
            s,
            buf: vec![0u8; 64 << 10],
        };
        end.until(|e| matches!(e, LinkEvent::Up(_)))?;
        Ok(end)
    }

    /// Carries out the link's actions until `stop` says one is the one
    /// awaited, reading from the socket when it has none; returns the
    /// bytes written meanwhile.
    fn until(&mut self, mut stop: impl FnMut(&LinkEvent<u64>) -> bool) -> Result<Vec<u8>> {
        let mut written = Vec::new();
        for _ in 0..1000 {
            let mut out = Vec::new();
            let mut found = false;
            while let Some(bytes) = self.link.poll_transmit() {
                out.extend_from_slice(&bytes);
            }
            while let Some(event) = self.link.poll_event() {
                match &event {
                    LinkEvent::Failed { reason } => anyhow::bail!("the link went down: {reason}"),
                    LinkEvent::Down { reason, .. } => anyhow::bail!("the link went down: {reason}"),
                    _ => {}
                }
                found |= stop(&event);
            }
            if !out.is_empty() {
                self.s.write_all(&out)?;
                written.extend_from_slice(&out);
            }
            if found {
                return Ok(written);
            }
            let n = self.s.read(&mut self.buf)?;
            ensure!(n > 0, "the node closed the connection");
            self.link
                .handle(Event::Received(&self.buf[..n]), Instant::now());
        }
        anyhow::bail!("no answer after 1000 reads")
    }

    /// One echo job, there and back; the bytes written for it.
    fn echo(&mut self, i: u64) -> Result<Vec<u8>> {
        let run = RunJob {
            id: i,
            attempt: 1,
            name: NAME.to_owned(),
            args: ppcore::encode(&(i,))?.into(),
            program: None,
            shared: Vec::new(),
            keep: None,
            journal: None,
            request: None,
        };
        self.link
            .handle(Event::Submit(vec![(run, i)]), Instant::now());
        let mut answer = None;
        let written = self.until(|a| match a {
            LinkEvent::Done { job, result, .. } if *job == i => {
                answer = Some(result.clone());
                true
            }
            _ => false,
        })?;
        let echoed = answer.and_then(|r| r.ok()).map(|b| b.into_vec());
        ensure!(
            echoed == Some(ppcore::encode(&(i,))?),
            "the echo of job {i} came back wrong"
        );
        Ok(written)
    }
}

/// The plain ping-pong: frames of one size, echoed by a thread blocked in
/// `read`.
struct PingPong {
    s: TcpStream,
    buf: Vec<u8>,
}

impl PingPong {
    fn start(len: usize) -> Result<(Self, std::thread::JoinHandle<Result<()>>)> {
        let (s, echo) = benchmarks::tcp_echo(len)?;
        Ok((
            PingPong {
                s,
                buf: vec![0u8; len],
            },
            echo,
        ))
    }

    fn round_trip(&mut self, frame: &[u8]) -> Result<()> {
        self.s.write_all(frame)?;
        self.s.read_exact(&mut self.buf)?;
        Ok(())
    }
}
