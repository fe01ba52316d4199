//! What the link's state machines cost per job, without sockets or threads:
//! a client link and a node link wired together in one thread, no-op jobs
//! submitted in batches, answered, and resolved. Every cost in it (framing,
//! MessagePack, sealing, the ledger and the credit window) is paid once per
//! job on each side of every remote job; this measures it alone, free of
//! the scheduling noise of a shared machine.

use anyhow::{ensure, Result};
use clap::Parser;
use ppcore::link::{Action, ClientLink, Event, LinkConfig};
use ppcore::wire::{DoneJob, JobInfo, NodeMsg, RunJob};
use ppcore::{Key, KeySet, NodeAction, NodeEvent, NodeLink, NodeLinkConfig};
use serde_bytes::ByteBuf;
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
        max_payload: 0,
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
        while let Some(a) = client.poll() {
            busy = true;
            match a {
                Action::Send(bytes) => to_node.push(bytes),
                Action::Done { .. } => spent.resolved += 1,
                _ => {}
            }
        }
        spent.client += started.elapsed();
        let started = Instant::now();
        let mut to_client = Vec::new();
        for bytes in &to_node {
            node.handle(NodeEvent::Received(bytes), now);
        }
        while let Some(a) = node.poll() {
            busy = true;
            match a {
                NodeAction::Send(bytes) => to_client.push(bytes),
                NodeAction::Run(jobs) => {
                    let done = jobs
                        .into_iter()
                        .map(|j| DoneJob {
                            id: j.id,
                            attempt: j.attempt,
                            result: Ok(ByteBuf::from(vec![0xc0])),
                            exec_ns: 100,
                        })
                        .collect();
                    node.handle(NodeEvent::Finished(done), now);
                }
                _ => {}
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

fn main() -> Result<()> {
    let args = Args::parse();
    let now = Instant::now();
    let config = LinkConfig {
        keys: keys(),
        heartbeat: Duration::from_secs(5),
        handshake_timeout: Duration::from_secs(5),
        max_frame: 16 << 20,
        max_payload: ppcore::stream::DEFAULT_MAX_PAYLOAD,
        stream_stall: Duration::from_secs(30),
        max_prefetch: 4096,
        backoff_min: Duration::from_millis(100),
        backoff_max: Duration::from_secs(5),
        reconnect: false,
        give_up_after: None,
    };
    let mut client: ClientLink<u64> = ClientLink::new(config, now);
    let node_config = NodeLinkConfig {
        keys: keys(),
        handshake_timeout: Duration::from_secs(5),
        heartbeat: Duration::from_secs(5),
        max_frame: 16 << 20,
        credit_jobs: 1 << 20,
        credit_bytes: 1 << 30,
        max_payload: ppcore::stream::DEFAULT_MAX_PAYLOAD,
        stream_stall: Duration::from_secs(30),
    };
    let mut node = NodeLink::new(node_config, welcome(), now);
    // The dial, the handshake and the welcome.
    while let Some(a) = client.poll() {
        if let Action::Connect = a {
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
    let (c, n) = (per_job(spent.client), per_job(spent.node));
    if args.json {
        let out = serde_json::json!({
            "jobs": args.jobs,
            "batch": args.batch,
            "client_ns_per_job": c,
            "node_ns_per_job": n,
            "total_ns_per_job": per_job(wall),
        });
        println!("{out}");
    } else {
        println!(
            "{} no-op jobs in batches of {}: client link {c:.0} ns/job, node link {n:.0} ns/job, {:.0} ns/job in all",
            args.jobs,
            args.batch,
            per_job(wall)
        );
    }
    Ok(())
}
