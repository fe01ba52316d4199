//! Job statistics: lock-free counters while jobs run, plain data to read.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How many ways the counters are split: threads that finish jobs at the
/// same time write different cache lines.
const SHARDS: usize = 8;

#[derive(Debug, Default)]
#[repr(align(128))]
struct Shard {
    jobs: AtomicU64,
    failed: AtomicU64,
    busy_ns: AtomicU64,
}

/// Counters of one place jobs run (the local pool or one node), updated
/// without locks by whoever finishes a job there.
///
/// Split in cache-line-aligned shards, one per thread (eight, round-robin):
/// workers write them for every job, and a shared line would bounce between
/// them (measured: local throughput fell from about 3M to 1M jobs/s when
/// these counters shared a line with fields that submitters read).
#[derive(Debug, Default)]
pub struct NodeCounters {
    shards: [Shard; SHARDS],
    /// Shared values sent there, and their bytes.
    shared: [AtomicU64; 2],
    /// Kept results: made again there after a loss, jobs sent there before
    /// their inputs were ready (started there without a round trip), and
    /// results kept there.
    kept: [AtomicU64; 3],
    /// Job results kept there now for this client, and their bytes.
    kept_here: [AtomicU64; 2],
    /// Kept values moved there from other nodes (node to node) and their
    /// bytes; kept values brought from there to the client and theirs.
    moved: [AtomicU64; 4],
}

thread_local! {
    /// This thread's shard, assigned round-robin on first use.
    static SHARD: usize = {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS
    };
}

impl NodeCounters {
    /// Records one job that ran for `time`; `failed` if it returned an error or panicked.
    pub fn record(&self, time: Duration, failed: bool) {
        let shard = &self.shards[SHARD.with(|s| *s)];
        shard.jobs.fetch_add(1, Ordering::Relaxed);
        let ns = u64::try_from(time.as_nanos()).unwrap_or(u64::MAX);
        shard.busy_ns.fetch_add(ns, Ordering::Relaxed);
        if failed {
            shard.failed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Sets the shared values sent there so far, and their bytes.
    pub fn set_shared(&self, (values, bytes): (u64, u64)) {
        self.shared[0].store(values, Ordering::Relaxed);
        self.shared[1].store(bytes, Ordering::Relaxed);
    }

    /// Records a job that made a lost kept result again here.
    pub fn recomputed(&self) {
        self.kept[0].fetch_add(1, Ordering::Relaxed);
    }

    /// Records a job sent here before the inputs it takes were ready: the
    /// node starts it when they are, without a round trip to the client.
    pub fn chained(&self) {
        self.kept[1].fetch_add(1, Ordering::Relaxed);
    }

    /// Sets the job results kept there now, and their bytes.
    pub fn set_kept_here(&self, (values, bytes): (u64, u64)) {
        self.kept_here[0].store(values, Ordering::Relaxed);
        self.kept_here[1].store(bytes, Ordering::Relaxed);
    }

    /// Records a job result kept here.
    pub fn kept(&self) {
        self.kept[2].fetch_add(1, Ordering::Relaxed);
    }

    /// Records kept value of `bytes` moved here from another node, node to node.
    pub fn transferred(&self, bytes: u64) {
        self.moved[0].fetch_add(1, Ordering::Relaxed);
        self.moved[1].fetch_add(bytes, Ordering::Relaxed);
    }

    /// Records a kept value of `bytes` brought from here to the client.
    pub fn fetched(&self, bytes: u64) {
        self.moved[2].fetch_add(1, Ordering::Relaxed);
        self.moved[3].fetch_add(bytes, Ordering::Relaxed);
    }

    /// A snapshot under the name `node`.
    pub fn snapshot(&self, node: &str, workers: usize) -> NodeStats {
        let sum = |f: fn(&Shard) -> &AtomicU64| -> u64 {
            self.shards
                .iter()
                .map(|s| f(s).load(Ordering::Relaxed))
                .sum()
        };
        NodeStats {
            node: node.to_owned(),
            workers,
            jobs: sum(|s| &s.jobs),
            failed: sum(|s| &s.failed),
            job_time: Duration::from_nanos(sum(|s| &s.busy_ns)),
            down: None,
            shared_sent: self.shared[0].load(Ordering::Relaxed),
            shared_bytes: self.shared[1].load(Ordering::Relaxed),
            recomputed: self.kept[0].load(Ordering::Relaxed),
            chained: self.kept[1].load(Ordering::Relaxed),
            kept: self.kept[2].load(Ordering::Relaxed),
            kept_values: self.kept_here[0].load(Ordering::Relaxed),
            kept_bytes: self.kept_here[1].load(Ordering::Relaxed),
            transfers: self.moved[0].load(Ordering::Relaxed),
            transfer_bytes: self.moved[1].load(Ordering::Relaxed),
            fetched: self.moved[2].load(Ordering::Relaxed),
            fetched_bytes: self.moved[3].load(Ordering::Relaxed),
            bytes_sent: 0,
            bytes_received: 0,
        }
    }
}

/// What one node (or the local pool) did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeStats {
    /// `local`, or the node's `host:port`.
    pub node: String,
    /// Its worker slots.
    pub workers: usize,
    /// Jobs it ran to the end, failed ones included.
    pub jobs: u64,
    /// Of those, jobs that returned an error or panicked.
    pub failed: u64,
    /// The sum of the jobs' run times.
    pub job_time: Duration,
    /// Why the node takes no jobs now (unreachable, refused us), or, up,
    /// runs none of ours (refused this program, lacks the queued jobs), if
    /// so; printed beside its row.
    #[serde(default)]
    pub down: Option<String>,
    /// Shared values sent there (each at most once per connection, again
    /// after the node evicted one or the connection was lost).
    #[serde(default)]
    pub shared_sent: u64,
    /// Their bytes.
    #[serde(default)]
    pub shared_bytes: u64,
    /// Jobs run there again to make a kept result that was lost with its
    /// node (lineage).
    #[serde(default)]
    pub recomputed: u64,
    /// Jobs sent there before the kept results they take were ready (made
    /// there by jobs still running): started without a client round trip.
    #[serde(default)]
    pub chained: u64,
    /// Job results kept there (`Options::keep`) instead of sent back.
    #[serde(default)]
    pub kept: u64,
    /// Of those, the ones it keeps now (still referenced), and their bytes.
    #[serde(default)]
    pub kept_values: u64,
    /// Their bytes.
    #[serde(default)]
    pub kept_bytes: u64,
    /// Kept values moved there node to node (fetched by it from the node
    /// that held them, not through the client).
    #[serde(default)]
    pub transfers: u64,
    /// Their bytes.
    #[serde(default)]
    pub transfer_bytes: u64,
    /// Kept values brought from there to the client (a job elsewhere
    /// needed them and its node could not fetch them itself, or the
    /// program asked for the value).
    #[serde(default)]
    pub fetched: u64,
    /// Their bytes.
    #[serde(default)]
    pub fetched_bytes: u64,
    /// Bytes the client's link sent to the node (every frame: jobs,
    /// values, heartbeats), and received from it.
    #[serde(default)]
    pub bytes_sent: u64,
    /// Bytes received from it.
    #[serde(default)]
    pub bytes_received: u64,
}

/// A server's statistics, as `Server::stats` returns them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Per node, the local pool first.
    pub nodes: Vec<NodeStats>,
    /// Time since the server was created.
    pub elapsed: Duration,
    /// Jobs submitted and not yet resolved.
    pub active: u64,
    /// Local worker threads.
    pub ncpus: usize,
    /// Jobs submitted.
    pub submitted: u64,
    /// Jobs whose handle got a value.
    pub succeeded: u64,
    /// Jobs whose handle got an error from the job (returned or panicked).
    pub failed: u64,
    /// Jobs cancelled before they finished.
    pub cancelled: u64,
    /// Jobs that ran past their timeout.
    pub timed_out: u64,
    /// Jobs failed because the server shut down first.
    pub shut_down: u64,
    /// Jobs run again after their node was lost (or after a failure, when asked).
    pub retried: u64,
    /// The mean time jobs waited in the queue before they started.
    #[serde(default)]
    pub queue_wait: Duration,
    /// Jobs that ran (started on a local worker or a node), each counted
    /// once however many times it was retried.
    #[serde(default)]
    pub ran: u64,
    /// Jobs resolved from the client's journal at `submit`, without
    /// running (recorded by an earlier run of the program).
    #[serde(default)]
    pub from_journal: u64,
    /// Jobs whose outcome a node held for the journaled run (sent there by
    /// an earlier client of it, which vanished), taken back without
    /// running again.
    #[serde(default)]
    pub reclaimed: u64,
}

impl fmt::Display for Stats {
    /// Parallel Python's table, then what pp lacks.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total: u64 = self.nodes.iter().map(|n| n.jobs).sum();
        writeln!(f, "Job execution statistics:")?;
        writeln!(
            f,
            " job count | % of all jobs | job time sum | time per job | job server"
        )?;
        for n in &self.nodes {
            let share = if total == 0 {
                0.0
            } else {
                100.0 * n.jobs as f64 / total as f64
            };
            let sum = n.job_time.as_secs_f64();
            let per = if n.jobs == 0 {
                0.0
            } else {
                sum / n.jobs as f64
            };
            write!(
                f,
                " {:>9} | {:>13.2} | {:>12.4} | {:>12.6} | {}",
                n.jobs, share, sum, per, n.node
            )?;
            match &n.down {
                Some(why) => writeln!(f, " ({why})")?,
                None => writeln!(f)?,
            }
        }
        writeln!(
            f,
            "Time elapsed since server creation {:.4}",
            self.elapsed.as_secs_f64()
        )?;
        writeln!(f, "{} active tasks, {} cores", self.active, self.ncpus)?;
        writeln!(
            f,
            "{} submitted: {} succeeded, {} failed, {} cancelled, {} timed out, {} shut down, {} retried",
            self.submitted,
            self.succeeded,
            self.failed,
            self.cancelled,
            self.timed_out,
            self.shut_down,
            self.retried
        )?;
        write!(
            f,
            "mean wait in the queue {:.6} s",
            self.queue_wait.as_secs_f64()
        )?;
        if self.from_journal + self.reclaimed > 0 {
            write!(
                f,
                "\n{} from the journal (not run again), {} reclaimed from nodes, {} ran",
                self.from_journal, self.reclaimed, self.ran
            )?;
        }
        for n in self.nodes.iter().filter(|n| n.kept + n.recomputed > 0) {
            write!(
                f,
                "\nkept results on {}: {} kept, {} chained, {} recomputed",
                n.node, n.kept, n.chained, n.recomputed
            )?;
        }
        for n in self.nodes.iter().filter(|n| n.shared_sent > 0) {
            write!(
                f,
                "\nshared values sent to {}: {} ({} bytes)",
                n.node, n.shared_sent, n.shared_bytes
            )?;
        }
        Ok(())
    }
}
