//! Chaos: three loopback nodes killed, stopped and restarted on a fixed seed
//! while 10,000 mixed jobs run through them (Maclaurin slices, sleeps, and
//! one in 500 an 8 MiB echo, whose argument and result travel as streams). Every job must resolve exactly
//! once with the right value. `--soak` pushes 1,000,000 jobs through two nodes
//! and reports memory at start and end instead.
//!
//! Then the upload case: the client submits jobs of its own registry
//! (`chaos_square`, which stock nodes lack) to a stock node, so it ships
//! itself; the node is killed (SIGKILL) as soon as the upload's partial file
//! shows in its cache, and restarted on the same port. Every job must still
//! resolve exactly once with the right value.

use anyhow::{ensure, Result};
use benchmarks::{rss_bytes, spawn_node_on, SpawnedNode};
use clap::Parser;
use ppclient::{ByteBuf, Options, Server};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(about = "Kill, stop and restart nodes while jobs run; count lost and duplicated results")]
struct Args {
    /// Seed of the chaos schedule.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Jobs to run (half Maclaurin slices, half sleeps).
    #[arg(long, default_value_t = 10_000)]
    jobs: u64,
    /// Workers per node.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Give up waiting for results after this many seconds.
    #[arg(long, default_value_t = 300)]
    limit: u64,
    /// Push 1,000,000 jobs through two nodes and report RSS instead.
    #[arg(long)]
    soak: bool,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

/// xorshift64*: a fixed, seeded schedule without another dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// A node slot: a fixed port and the process serving it, if any.
struct Slot {
    port: u16,
    node: Option<SpawnedNode>,
    stopped: bool,
}

ppclient::job! {
    /// Squares a number: a job of this program's own, no stock node has it.
    pub fn chaos_square(x: u64) -> u64 { x * x }
}

fn main() -> Result<std::process::ExitCode> {
    // First: as a node's program worker, this serves `chaos_square`.
    ppclient::init();
    if let Some(code) = benchmarks::run_as_node_if_asked() {
        return Ok(code);
    }
    let args = Args::parse();
    if args.soak {
        return soak(&args);
    }
    chaos(&args)
}

fn chaos(args: &Args) -> Result<std::process::ExitCode> {
    let mut slots: Vec<Slot> = (0..3)
        .map(|_| {
            let node = spawn_node_on(0, args.workers)?;
            let port = node.addr.rsplit(':').next().unwrap_or("0").parse()?;
            Ok(Slot {
                port,
                node: Some(node),
                stopped: false,
            })
        })
        .collect::<Result<_>>()?;
    let server = Server::builder()
        .secret(benchmarks::cluster_key()?)
        .ncpus(0)
        .nodes(slots.iter().map(|s| format!("127.0.0.1:{}", s.port)))
        .heartbeat(Duration::from_millis(100))
        .node_retries(1_000)
        .build()?;
    let n = args.jobs as usize;
    let calls: Arc<Vec<AtomicU8>> = Arc::new((0..n).map(|_| AtomicU8::new(0)).collect());
    let (x, terms, slices) = (0.999_999, 200_000_000u64, n as u64 / 2);
    // One value shared by every SHARED_EVERY-th job: nodes die holding it,
    // restarted nodes and new connections are sent it again.
    let table: Vec<u8> = (0..SHARED_LEN).map(|k| (k % 253) as u8).collect();
    let shared = server.share(ByteBuf::from(table.clone()))?;
    let started = Instant::now();
    let handles: Vec<Handle> = (0..n)
        .map(|i| {
            let calls = Arc::clone(&calls);
            let count = move || {
                calls[i].fetch_add(1, Ordering::Relaxed);
            };
            if (i as u64) < slices {
                let (lo, hi) = jobs::task_range(terms, slices, i as u64);
                let opts = Options::new().callback(move |_: &Result<f64, _>| count());
                Handle::Slice(server.submit_with(jobs::maclaurin, (x, lo, hi), opts))
            } else if i % BIG_EVERY == 0 {
                // Arguments and result that travel as streams of chunks:
                // nodes die with them in flight too.
                let opts = Options::new().callback(move |_: &Result<ByteBuf, _>| count());
                let bytes = ByteBuf::from(big_payload(i));
                Handle::Big(server.submit_with(jobs::echo_bytes, (bytes,), opts), i)
            } else if i % SHARED_EVERY == 1 {
                let opts = Options::new().callback(move |_: &Result<u64, _>| count());
                let (from, to) = shared_range(i);
                let want: u64 = table[from as usize..to as usize]
                    .iter()
                    .map(|&b| u64::from(b))
                    .sum();
                let args = (shared.clone(), from, to);
                Handle::Shared(server.submit_with(jobs::shared_byte_sum, args, opts), want)
            } else {
                let opts = Options::new().callback(move |_: &Result<u64, _>| count());
                Handle::Sleep(server.submit_with(jobs::sleep_ms, (1 + i as u64 % 5,), opts))
            }
        })
        .collect();

    let done = Arc::new(AtomicBool::new(false));
    let mut rng = Rng(args.seed.max(1));
    let (mut kills, mut stops, mut restarts) = (0u32, 0u32, 0u32);
    let monkey_done = Arc::clone(&done);
    let waiter = std::thread::spawn(move || {
        let results: Vec<_> = handles
            .into_iter()
            .map(|h| h.wait_timeout(Duration::from_secs(600)))
            .collect();
        monkey_done.store(true, Ordering::Release);
        results
    });
    let deadline = started + Duration::from_secs(args.limit);
    while !done.load(Ordering::Acquire) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100 + rng.below(300)));
        let slot = &mut slots[rng.below(3) as usize];
        match (&slot.node, slot.stopped, rng.below(3)) {
            (None, _, _) => {
                slot.node = Some(spawn_node_on(slot.port, args.workers)?);
                restarts += 1;
            }
            (Some(node), true, _) => {
                node.signal("CONT")?;
                slot.stopped = false;
            }
            (Some(_), false, 0) => {
                slot.node = None; // dropping kills it (SIGKILL)
                kills += 1;
            }
            (Some(node), false, 1) => {
                node.signal("STOP")?;
                slot.stopped = true;
                stops += 1;
            }
            (Some(_), false, _) => {}
        }
        // Never leave the cluster with no node able to work for long.
        if slots.iter().all(|s| s.node.is_none() || s.stopped) {
            for s in slots.iter_mut() {
                match &s.node {
                    Some(node) => node.signal("CONT")?,
                    None => s.node = Some(spawn_node_on(s.port, args.workers)?),
                }
                s.stopped = false;
            }
        }
    }
    for s in slots.iter_mut().filter(|s| s.stopped) {
        if let Some(node) = &s.node {
            node.signal("CONT")?;
        }
        s.stopped = false;
    }
    let results = waiter
        .join()
        .map_err(|_| anyhow::anyhow!("waiter panicked"))?;
    let seconds = started.elapsed().as_secs_f64();
    // Callbacks run before handles resolve; give the last ones a moment.
    std::thread::sleep(Duration::from_millis(100));

    let resolved = results.iter().filter(|r| r.is_some()).count();
    let failed = results.iter().filter(|r| matches!(r, Some(Err(_)))).count();
    let lost = n - resolved;
    let duplicates = calls
        .iter()
        .filter(|c| c.load(Ordering::Relaxed) > 1)
        .count();
    let uncalled = calls
        .iter()
        .filter(|c| c.load(Ordering::Relaxed) == 0)
        .count();
    let mut sum = 0.0;
    let mut sleeps_ok = true;
    for (i, r) in results.iter().enumerate() {
        if let Some(Ok(v)) = r {
            if (i as u64) < slices {
                sum += v;
            } else if i % BIG_EVERY == 0 || i % SHARED_EVERY == 1 {
                sleeps_ok &= *v == 1.0;
            } else {
                sleeps_ok &= *v == (1 + i as u64 % 5) as f64;
            }
        }
    }
    let exact = jobs::maclaurin_exact(x, terms);
    let sum_ok = failed == 0 && sleeps_ok && ((sum - exact) / exact).abs() <= 1e-9;
    let stats = server.stats();
    let retries = stats.retried;
    // Sent once per connection: again to a restarted node, or after a kill.
    let shared_sent: u64 = stats.nodes.iter().map(|n| n.shared_sent).sum();
    let upload = upload_kill(args)?;
    if args.json {
        let out = serde_json::json!({
            "seed": args.seed, "jobs": n, "resolved": resolved, "lost": lost,
            "duplicates": duplicates, "callbacks_missing": uncalled, "failed": failed,
            "retries": retries, "sum_ok": sum_ok, "seconds": seconds,
            "kills": kills, "stops": stops, "restarts": restarts,
            "shared_values_sent": shared_sent,
            "upload_kill": upload.json(),
        });
        println!("{out}");
    } else {
        println!(
            "chaos, seed {}: {n} jobs over 3 loopback nodes in {seconds:.1} s",
            args.seed
        );
        println!(
            "  chaos: {kills} kill -9, {stops} SIGSTOP (each later SIGCONT), {restarts} restarts"
        );
        println!("  resolved {resolved}, lost {lost}, resolved twice {duplicates}, callbacks missing {uncalled}");
        println!("  failed {failed}, retries {retries}, sums, sleeps and echoes ok: {sum_ok}");
        println!("  the shared value was sent {shared_sent} time(s) (once per connection that needed it)");
        server.print_stats();
        println!("{}", upload.text());
    }
    let ok = lost == 0 && duplicates == 0 && uncalled == 0 && sum_ok && upload.ok();
    Ok(if ok {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    })
}

/// Jobs of the upload case.
const UPLOAD_JOBS: u64 = 200;

/// What the upload case saw.
struct Upload {
    jobs: u64,
    resolved: usize,
    lost: usize,
    duplicates: usize,
    callbacks_missing: usize,
    failed: usize,
    sum_ok: bool,
    /// Whether the node was killed with the upload's partial file present.
    killed_mid_upload: bool,
    /// Uploads the restarted node received.
    uploads_after_restart: u64,
    seconds: f64,
}

impl Upload {
    fn ok(&self) -> bool {
        self.killed_mid_upload
            && self.lost == 0
            && self.duplicates == 0
            && self.callbacks_missing == 0
            && self.failed == 0
            && self.sum_ok
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "jobs": self.jobs, "resolved": self.resolved, "lost": self.lost,
            "duplicates": self.duplicates, "callbacks_missing": self.callbacks_missing,
            "failed": self.failed, "sum_ok": self.sum_ok,
            "killed_mid_upload": self.killed_mid_upload,
            "uploads_after_restart": self.uploads_after_restart, "seconds": self.seconds,
        })
    }

    fn text(&self) -> String {
        format!(
            "  upload case: {} own jobs, node killed mid-upload: {}, restarted node got {} upload(s);\n  \
             resolved {}, lost {}, resolved twice {}, callbacks missing {}, failed {}, sum ok: {} ({:.1} s)",
            self.jobs, self.killed_mid_upload, self.uploads_after_restart, self.resolved,
            self.lost, self.duplicates, self.callbacks_missing, self.failed, self.sum_ok, self.seconds
        )
    }
}

/// The upload case: a stock node killed while this program uploads itself to
/// it, then restarted on the same port with the same cache.
fn upload_kill(args: &Args) -> Result<Upload> {
    let cache = std::env::temp_dir().join(format!("pp-chaos-upload-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&cache);
    let cache_arg = cache.to_string_lossy().into_owned();
    let extra = ["--cache-dir", cache_arg.as_str()];
    let first = benchmarks::spawn_stock_node_on(0, args.workers, &extra)?;
    let port: u16 = first.addr.rsplit(':').next().unwrap_or("0").parse()?;
    let server = Server::builder()
        .secret(benchmarks::cluster_key()?)
        .ncpus(0)
        .nodes([first.addr.clone()])
        .heartbeat(Duration::from_millis(100))
        .node_retries(1_000)
        .build()?;
    let calls: Arc<Vec<AtomicU8>> = Arc::new((0..UPLOAD_JOBS).map(|_| AtomicU8::new(0)).collect());
    let started = Instant::now();
    let handles: Vec<_> = (0..UPLOAD_JOBS)
        .map(|i| {
            let calls = Arc::clone(&calls);
            let opts = Options::new().callback(move |_: &Result<u64, _>| {
                calls[i as usize].fetch_add(1, Ordering::Relaxed);
            });
            server.submit_with(chaos_square, (i,), opts)
        })
        .collect();
    // The upload is under way once its partial file is in the node's cache.
    let uploading = || {
        std::fs::read_dir(&cache).is_ok_and(|d| {
            d.flatten()
                .any(|e| e.file_name().to_string_lossy().ends_with(".part"))
        })
    };
    let until = Instant::now() + Duration::from_secs(60);
    while !uploading() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(2));
    }
    let killed_mid_upload = uploading();
    drop(first); // SIGKILL, the upload in flight
    let second = benchmarks::spawn_stock_node_on(port, args.workers, &extra)?;
    let results: Vec<_> = handles
        .into_iter()
        .map(|h| h.wait_timeout(Duration::from_secs(args.limit)))
        .collect();
    let seconds = started.elapsed().as_secs_f64();
    // Callbacks run before handles resolve; give the last ones a moment.
    std::thread::sleep(Duration::from_millis(100));
    let status = ppclient::node_status(
        &second.addr,
        benchmarks::cluster_key()?,
        Duration::from_secs(5),
    )?;
    drop(server);
    drop(second);
    let _ = std::fs::remove_dir_all(&cache);
    let resolved = results.iter().filter(|r| r.is_some()).count();
    let failed = results.iter().filter(|r| matches!(r, Some(Err(_)))).count();
    let sum: u64 = results.iter().flatten().flatten().sum();
    let load = |c: &AtomicU8| c.load(Ordering::Relaxed);
    Ok(Upload {
        jobs: UPLOAD_JOBS,
        resolved,
        lost: UPLOAD_JOBS as usize - resolved,
        duplicates: calls.iter().filter(|c| load(c) > 1).count(),
        callbacks_missing: calls.iter().filter(|c| load(c) == 0).count(),
        failed,
        sum_ok: sum == (0..UPLOAD_JOBS).map(|i| i * i).sum::<u64>(),
        killed_mid_upload,
        uploads_after_restart: status.programs_uploaded,
        seconds,
    })
}

/// One job in this many (of the second half) echoes a large payload.
const BIG_EVERY: usize = 500;

/// The 8 MiB payload of job `i`.
fn big_payload(i: usize) -> Vec<u8> {
    let mut v = vec![(i % 251) as u8; 8 << 20];
    for (k, block) in v.chunks_mut(4096).enumerate() {
        block[0] = (k % 241) as u8;
    }
    v
}

/// One job in this many (of the second half) sums a range of a shared value.
const SHARED_EVERY: usize = 50;

/// The shared value's size: 4 MiB, a stream of four chunks.
const SHARED_LEN: usize = 4 << 20;

/// The range of the shared value job `i` sums.
fn shared_range(i: usize) -> (u64, u64) {
    let from = (i * 7919) % (SHARED_LEN - 4096);
    (from as u64, (from + 4096) as u64)
}

/// A job of any kind, resolving to a number.
enum Handle {
    Slice(ppclient::JobHandle<f64>),
    Sleep(ppclient::JobHandle<u64>),
    /// An echo of `big_payload(i)`: 1 if it came back exact.
    Big(ppclient::JobHandle<ByteBuf>, usize),
    /// A sum over the shared value, and what it must be: 1 if it is.
    Shared(ppclient::JobHandle<u64>, u64),
}

impl Handle {
    /// The result, or `None` if it did not come within `limit`.
    fn wait_timeout(self, limit: Duration) -> Option<Result<f64, ppclient::JobError>> {
        match self {
            Handle::Slice(h) => h.wait_timeout(limit),
            Handle::Sleep(h) => h.wait_timeout(limit).map(|r| r.map(|ms| ms as f64)),
            Handle::Big(h, i) => h
                .wait_timeout(limit)
                .map(|r| r.map(|b| f64::from(u8::from(*b == big_payload(i)[..])))),
            Handle::Shared(h, want) => h
                .wait_timeout(limit)
                .map(|r| r.map(|sum| f64::from(u8::from(sum == want)))),
        }
    }
}

fn soak(args: &Args) -> Result<std::process::ExitCode> {
    let nodes = [
        spawn_node_on(0, args.workers)?,
        spawn_node_on(0, args.workers)?,
    ];
    let server = Server::builder()
        .secret(benchmarks::cluster_key()?)
        .ncpus(0)
        .nodes(nodes.iter().map(|n| n.addr.clone()))
        .build()?;
    ensure!(
        server.active_nodes().len() == 2,
        "nodes unreachable: {:?}",
        server.nodes()
    );
    let rss = |n: &SpawnedNode| n.rss_bytes().map(|b| b as f64 / 1e6);
    let before = (rss_bytes()? as f64 / 1e6, rss(&nodes[0])?, rss(&nodes[1])?);
    let started = Instant::now();
    let total = 1_000_000u64;
    let mut sum = 0u64;
    // In waves, as a long-running client would, rather than all at once.
    for wave in 0..100 {
        let handles: Vec<_> = (0..total / 100)
            .map(|i| server.submit(jobs::echo_u64, (wave * 10_000 + i,)))
            .collect();
        for h in handles {
            sum += h.wait()?;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let after = (rss_bytes()? as f64 / 1e6, rss(&nodes[0])?, rss(&nodes[1])?);
    let sum_ok = sum == total * (total - 1) / 2;
    if args.json {
        let out = serde_json::json!({
            "jobs": total, "seconds": seconds, "sum_ok": sum_ok,
            "client_rss_mb_start": before.0, "client_rss_mb_end": after.0,
            "node_rss_mb_start": [before.1, before.2], "node_rss_mb_end": [after.1, after.2],
        });
        println!("{out}");
    } else {
        println!("soak: {total} jobs through 2 loopback nodes in {seconds:.1} s, sum ok: {sum_ok}");
        println!("  client RSS {:.1} MB -> {:.1} MB", before.0, after.0);
        println!(
            "  node RSS {:.1} / {:.1} MB -> {:.1} / {:.1} MB",
            before.1, before.2, after.1, after.2
        );
    }
    Ok(if sum_ok {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    })
}
