//! A node's configuration and its command line.

use clap::Parser;
use ppcore::wire::{DEFAULT_MAX_FRAME, DEFAULT_PORT};
use ppcore::{KeyError, KeySet, SECRET_ENV};
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The default cap of the program cache: 2 GiB.
pub const DEFAULT_CACHE_MAX: u64 = 2 << 30;

/// The default `--spill-max`: 4 GiB of spilled kept values.
pub const DEFAULT_SPILL_MAX: u64 = 4 << 30;

/// How a node runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// The address to listen on.
    pub interface: IpAddr,
    /// The TCP port (and UDP port for discovery); 0 picks a free one.
    pub port: u16,
    /// Worker threads.
    pub workers: usize,
    /// What the node offers its jobs besides its workers (those are its
    /// cpus): named resources, tags, memory (`--resources`, `--tags`,
    /// `--memory`; default: nothing named, the machine's memory).
    pub offer: ppcore::resources::Offer,
    /// The cluster's keys (generated: `ppserver --gen-secret FILE`; two
    /// during a rollover). A node does not start without one.
    pub keys: Option<KeySet>,
    /// Exit after this long without a connection.
    pub idle_timeout: Option<Duration>,
    /// Answer discovery probes on UDP.
    pub discovery: bool,
    /// Dial a client that listens (`Server::builder().listen(..)`) instead of waiting.
    pub join: Option<String>,
    /// Where peers reach this node to fetch its kept values (`--advertise`:
    /// `host` or `host:port`; a host alone takes the listening port).
    /// `None`: the listening address if it is a specific, non-loopback
    /// one, or any address at the port if it listens on all of them; a
    /// node on loopback only, or one that joins a client, is unreachable
    /// to peers unless it is given one (its values go through the client).
    pub advertise: Option<String>,
    /// Most authenticated clients at once; more are refused with a reason
    /// (they retry).
    pub max_connections: usize,
    /// Most connections still in their handshake at once, from anywhere:
    /// strangers never take the clients' slots.
    pub max_unauthenticated: usize,
    /// Most connections still in their handshake from one address; a
    /// newcomer from it evicts that address's oldest.
    pub max_per_source: usize,
    /// Jobs in flight (queued or running here) a connection may have: the
    /// credit window announced in `Welcome`; `None`: 4096 + 4 × `workers`.
    pub credit_jobs: Option<usize>,
    /// Bytes of arguments in flight a connection may have (credit window).
    pub credit_bytes: usize,
    /// Bytes of queued arguments and unsent results the whole node may
    /// hold; new work over it is handed back for the client to run elsewhere.
    pub max_memory: u64,
    /// Time a new connection has to authenticate.
    pub handshake_timeout: Duration,
    /// Largest frame accepted.
    pub max_frame: usize,
    /// Largest arguments of one job, in bytes (larger than a frame, they
    /// travel as a stream); also what one client's open streams may hold.
    pub max_payload: u64,
    /// Bytes of shared values the node keeps for its clients' jobs (least
    /// recently used evicted first, and asked for again when needed).
    pub shared_max: u64,
    /// A stream from a client that makes no progress for this long drops
    /// the client.
    pub stream_stall: Duration,
    /// How long a stopping node lets running jobs finish.
    pub grace: Duration,
    /// Where jobs run: worker threads, or worker processes.
    pub isolation: Isolation,
    /// A client whose socket takes no bytes for this long (it stopped
    /// reading) is dropped, and its queued jobs skipped.
    pub write_timeout: Duration,
    /// The longest heartbeat interval clients may use (announced in the
    /// handshake); a client silent for 3 intervals is dropped.
    pub heartbeat: Duration,
    /// Serve Prometheus metrics at `http://ADDR/metrics` (off when `None`),
    /// from one thread: at most 256 connections, the longest idle evicted
    /// for a newcomer, each request head within 10 s and 8 KiB.
    pub metrics: Option<std::net::SocketAddr>,
    /// Where shipped programs are kept. `None`: the node's own directory,
    /// `$XDG_CACHE_HOME/ppserver/programs/port-PORT` (else under
    /// `~/.cache`), keyed by the port it is asked to listen on, so that
    /// nodes on one host never share one by accident and a node restarted
    /// on its port keeps its programs; `ephemeral-TAG` for port 0, removed
    /// by a later node once this one is gone (with neither variable set,
    /// programs are refused). A directory given may be shared by several nodes on
    /// purpose: uploads go to temporary files renamed into place.
    pub cache_dir: Option<PathBuf>,
    /// The most bytes of shipped programs kept, uploads under way included
    /// (each reserves its offered size); least recently used go first.
    pub cache_max: u64,
    /// Whether clients may ship their programs here (`--no-upload` clears it).
    pub uploads: bool,
    /// A shipped program's worker process idle this long ends.
    pub program_idle: Duration,
    /// Where kept values that do not fit `max_memory` are spilled. `None`:
    /// `spill` under `cache_dir` (or under the node's own cache directory).
    /// Several nodes may share one: each deletes only its own files, and at
    /// start those of nodes that are gone.
    pub spill_dir: Option<PathBuf>,
    /// The most bytes of spill files (headers included); 0 turns spill off
    /// (then a kept result over `max_memory` goes back to its client).
    pub spill_max: u64,
    /// How long a journaled client's run outlives its connection (its jobs
    /// run on, their results kept against `max_memory`, for the run's next
    /// client to reclaim); zero: not at all.
    pub orphan_keep: Duration,
}

/// Where a node runs jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
#[non_exhaustive]
pub enum Isolation {
    /// On worker threads: fastest; a job that aborts or segfaults takes the node down.
    #[default]
    Thread,
    /// Each worker thread runs jobs in a worker process of its own: a crash
    /// or a kill costs only that job, and cancelled or timed-out jobs are stopped.
    Process,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            interface: IpAddr::from([127, 0, 0, 1]),
            port: DEFAULT_PORT,
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            offer: {
                let mut offer = ppcore::resources::Offer::new(0);
                offer.set_memory(Some(crate::offer::machine_memory()));
                offer
            },
            keys: None,
            idle_timeout: None,
            discovery: false,
            join: None,
            advertise: None,
            max_connections: 256,
            max_unauthenticated: 64,
            max_per_source: 16,
            credit_jobs: None,
            credit_bytes: 64 << 20,
            max_memory: default_max_memory(),
            handshake_timeout: Duration::from_secs(5),
            max_frame: DEFAULT_MAX_FRAME,
            max_payload: ppcore::stream::DEFAULT_MAX_PAYLOAD,
            shared_max: ppcore::shared::DEFAULT_SHARED_MAX,
            stream_stall: ppcore::stream::DEFAULT_STALL,
            grace: Duration::from_secs(30),
            isolation: Isolation::Thread,
            write_timeout: Duration::from_secs(30),
            heartbeat: Duration::from_secs(5),
            metrics: None,
            cache_dir: None,
            cache_max: DEFAULT_CACHE_MAX,
            uploads: true,
            program_idle: Duration::from_secs(60),
            spill_dir: None,
            spill_max: DEFAULT_SPILL_MAX,
            orphan_keep: Duration::from_secs(600),
        }
    }
}

/// The default credit window's room for a client's pipeline of tiny jobs:
/// a client keeps up to its workers + 4096 jobs in flight when jobs take
/// microseconds (`ppclient`'s `max_prefetch`); with a window of 4 ×
/// workers alone such a client ran at 33k jobs/s against 480k to 560k
/// (docs/NODES.md, `flood` benchmark), and 4096 against 1024 took no-op jobs from
/// 0.60M to 0.85M jobs/s (`overhead --spawn-node`). Queued jobs cost their
/// bytes, which `credit_bytes` and `max_memory` bound.
pub(crate) const DEFAULT_CREDIT_PIPELINE: usize = 4096;

/// A quarter of the machine's memory (`MemTotal` in `/proc/meminfo`), or
/// 1 GiB where that cannot be read.
pub(crate) fn default_max_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| mem_total(&text))
        .map_or(1 << 30, |total| total / 4)
}

/// `MemTotal` of a `/proc/meminfo` text, in bytes.
fn mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

impl Config {
    /// The credit window in jobs: `credit_jobs`, else
    /// [`DEFAULT_CREDIT_PIPELINE`] + 4 × `workers`.
    pub(crate) fn credit_jobs(&self) -> usize {
        self.credit_jobs
            .unwrap_or_else(|| {
                DEFAULT_CREDIT_PIPELINE.saturating_add(self.workers.saturating_mul(4))
            })
            .max(1)
    }

    /// The node's name for itself: `host:port`-like, for logs and errors.
    pub(crate) fn node_id(&self) -> String {
        let host = std::fs::read_to_string("/etc/hostname")
            .ok()
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| self.interface.to_string());
        format!("{host}:{}", self.port)
    }
}

/// The `ppserver` command line.
#[derive(Debug, Parser)]
#[command(
    name = "ppserver",
    version,
    about = "A node of the pp job cluster: runs jobs for clients"
)]
pub struct Cli {
    /// TCP port to listen on (and UDP port for --discovery); 0 picks a free one.
    #[arg(short, long, default_value_t = DEFAULT_PORT)]
    pub port: u16,
    /// Address to listen on.
    #[arg(short, long, default_value = "0.0.0.0")]
    pub interface: IpAddr,
    /// Worker threads (default: the CPUs this process may use).
    #[arg(short, long, value_parser = |s: &str| ppcore::limits::parse_workers(s, false))]
    pub workers: Option<usize>,
    /// File holding the cluster's key (or two during a rollover), as made
    /// by `ppserver --gen-secret FILE` or `ppclient secret new FILE`.
    #[arg(long, value_name = "FILE")]
    pub secret_file: Option<PathBuf>,
    /// Exit after this many seconds without a client connection.
    #[arg(short = 't', long, value_name = "SECS", value_parser = ppcore::limits::parse_whole_secs)]
    pub idle_timeout: Option<u64>,
    /// Answer discovery probes by UDP broadcast (clients' `discover("*")`).
    #[arg(short = 'a', long)]
    pub discovery: bool,
    /// Dial a client that listens, at HOST:PORT, and serve it.
    #[arg(long, value_name = "HOST:PORT")]
    pub join: Option<String>,
    /// Where other nodes reach this one to fetch kept values (HOST or
    /// HOST:PORT; default: the listening address, unless it is loopback or
    /// the node joins a client: then values go through the client).
    #[arg(long, value_name = "HOST[:PORT]")]
    pub advertise: Option<String>,
    /// Most authenticated clients at once; more are refused (they retry).
    #[arg(long, default_value_t = 256, value_parser = ppcore::limits::parse_count)]
    pub max_connections: usize,
    /// Most connections still in their handshake at once (strangers never
    /// take the clients' slots).
    #[arg(long, default_value_t = 64, value_parser = ppcore::limits::parse_count)]
    pub max_unauthenticated: usize,
    /// Most connections still in their handshake from one address (a
    /// newcomer from it evicts that address's oldest).
    #[arg(long, default_value_t = 16, value_parser = ppcore::limits::parse_count)]
    pub max_per_source: usize,
    /// Jobs in flight each connection may have (default: 4096 + 4 × workers).
    #[arg(long, value_name = "N", value_parser = ppcore::limits::parse_count)]
    pub credit_jobs: Option<usize>,
    /// Bytes of arguments in flight each connection may have (64M; suffixes K, M, G).
    #[arg(long, value_name = "SIZE", default_value = "64M", value_parser = ppcore::limits::parse_bytes)]
    pub credit_bytes: u64,
    /// Bytes of queued arguments and unsent results the node may hold
    /// (default: a quarter of RAM; suffixes K, M, G).
    #[arg(long, value_name = "SIZE", value_parser = ppcore::limits::parse_bytes)]
    pub max_memory: Option<u64>,
    /// Largest arguments of one job, in bytes (suffixes K, M, G: powers of
    /// 1024); checked before any of them is sent.
    #[arg(long, default_value = "1G", value_name = "BYTES", value_parser = ppcore::limits::parse_bytes)]
    pub max_payload: u64,
    /// Bytes of shared values kept for clients' jobs (suffixes K, M, G);
    /// the least recently used go first, and are asked for again if needed.
    #[arg(long, default_value = "2G", value_name = "BYTES", value_parser = ppcore::limits::parse_bytes)]
    pub shared_max: u64,
    /// Seconds a stream of arguments may go without progress before the
    /// client is dropped.
    #[arg(long, default_value_t = 30.0, value_name = "SECS", value_parser = ppcore::limits::parse_secs)]
    pub stream_stall: f64,
    /// Seconds a stopping node lets running jobs finish.
    #[arg(long, default_value_t = 30, value_parser = ppcore::limits::parse_whole_secs)]
    pub grace: u64,
    /// Where jobs run: `thread` (fastest) or `process` (a crashing job costs only itself).
    #[arg(long, value_enum, default_value_t = Isolation::Thread)]
    pub isolation: Isolation,
    /// Seconds a new connection has to authenticate.
    #[arg(long, default_value_t = 5.0, value_parser = ppcore::limits::parse_secs)]
    pub handshake_timeout: f64,
    /// Seconds without write progress (the client stopped reading) before a
    /// client is dropped.
    #[arg(long, default_value_t = 30.0, value_name = "SECS", value_parser = ppcore::limits::parse_secs)]
    pub write_timeout: f64,
    /// The longest heartbeat interval, in seconds, clients may use; a
    /// client silent for 3 intervals is dropped.
    #[arg(long, default_value_t = 5.0, value_name = "SECS", value_parser = ppcore::limits::parse_secs)]
    pub heartbeat: f64,
    /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9187);
    /// one thread, at most 256 connections (oldest idle evicted), 10 s per request.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<std::net::SocketAddr>,
    /// Directory for programs clients ship (default: the node's own,
    /// ~/.cache/ppserver/programs/port-PORT, or ephemeral-TAG with --port 0,
    /// removed once the node is gone; one given may be shared by several
    /// nodes on purpose).
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Most bytes of shipped programs kept, uploads under way included
    /// (suffixes K, M, G: 2G is 2 GiB).
    #[arg(long, default_value = "2G", value_parser = ppcore::limits::parse_bytes, value_name = "BYTES")]
    pub cache_max: u64,
    /// Refuse programs shipped by clients: run built-in jobs only.
    #[arg(long)]
    pub no_upload: bool,
    /// Seconds a shipped program's idle worker process lives.
    #[arg(long, default_value_t = 60.0, value_name = "SECS", value_parser = ppcore::limits::parse_secs)]
    pub program_idle: f64,
    /// Directory for kept values that do not fit --max-memory (default:
    /// `spill` under the cache directory); may be shared by several nodes.
    #[arg(long, value_name = "DIR")]
    pub spill_dir: Option<PathBuf>,
    /// Most bytes of spilled kept values on disk (suffixes K, M, G: 4G is
    /// 4 GiB); 0 turns spill off.
    #[arg(long, default_value = "4G", value_parser = parse_spill_max, value_name = "BYTES")]
    pub spill_max: u64,
    /// Seconds a journaled client's run outlives its connection: its jobs
    /// run on and their results are kept (within --max-memory) for the run's
    /// next client to reclaim; 0 turns it off.
    #[arg(long, default_value_t = 600, value_name = "SECS", value_parser = ppcore::limits::parse_whole_secs)]
    pub orphan_keep: u64,
    /// Named resources offered to jobs, whole counts: `gpu=2,licence=4`;
    /// `gpu=auto` counts NVIDIA GPUs (/proc/driver/nvidia/gpus or
    /// `nvidia-smi -L`; --gpu-dir or PP_GPU_DIR names another directory).
    #[arg(long, value_name = "LIST", value_parser = crate::offer::parse_resources)]
    pub resources: Option<String>,
    /// Tags of this node, for jobs that ask for one: `ssd,eu-west`.
    #[arg(long, value_name = "LIST", value_parser = crate::offer::parse_tags)]
    pub tags: Option<String>,
    /// Memory offered to jobs' requests (default: the machine's, or its
    /// cgroup's limit; suffixes K, M, G). --max-memory stays the bound on
    /// the node's own buffers and kept values.
    #[arg(long, value_name = "SIZE", value_parser = ppcore::limits::parse_bytes)]
    pub memory: Option<u64>,
    /// Offer what the Slurm allocation gives this node (set by the Slurm
    /// launcher): workers from SLURM_CPUS_ON_NODE, memory from
    /// SLURM_MEM_PER_NODE, GPUs from SLURM_JOB_GPUS or CUDA_VISIBLE_DEVICES,
    /// unless --workers, --memory or --resources gpu=... say otherwise.
    #[arg(long)]
    pub slurm: bool,
    /// Directory whose entries `gpu=auto` counts, one per GPU (default
    /// PP_GPU_DIR, else /proc/driver/nvidia/gpus).
    #[arg(long, value_name = "DIR")]
    pub gpu_dir: Option<PathBuf>,
    /// Log level: error, warn, info, debug or trace.
    #[arg(long, default_value = "info")]
    pub log_level: String,
    /// Write a new random key to FILE (mode 0600, never overwritten) and exit.
    #[arg(long, value_name = "FILE")]
    pub gen_secret: Option<PathBuf>,
}

impl Cli {
    /// The configuration this command line asks for.
    /// A key that is not a generated key is refused, saying how to make one.
    pub fn config(&self) -> Result<Config, KeyError> {
        let keys = self.keys()?;
        let defaults = Config::default();
        Ok(Config {
            interface: self.interface,
            port: self.port,
            workers: self
                .workers
                .or_else(|| self.slurm.then(|| self.slurm_env().0).flatten())
                .unwrap_or(defaults.workers),
            offer: self.offer(),
            keys,
            idle_timeout: self.idle_timeout.map(Duration::from_secs),
            discovery: self.discovery,
            join: self.join.clone(),
            advertise: self.advertise.clone(),
            max_connections: self.max_connections,
            max_unauthenticated: self.max_unauthenticated,
            max_per_source: self.max_per_source,
            credit_jobs: self.credit_jobs,
            credit_bytes: usize::try_from(self.credit_bytes).unwrap_or(usize::MAX),
            max_memory: self.max_memory.unwrap_or(defaults.max_memory),
            grace: Duration::from_secs(self.grace),
            isolation: self.isolation,
            metrics: self.metrics,
            handshake_timeout: Duration::try_from_secs_f64(self.handshake_timeout)
                .unwrap_or(defaults.handshake_timeout),
            write_timeout: positive_secs(self.write_timeout).unwrap_or(defaults.write_timeout),
            heartbeat: positive_secs(self.heartbeat).unwrap_or(defaults.heartbeat),
            cache_dir: self.cache_dir.clone().or(defaults.cache_dir.clone()),
            cache_max: self.cache_max,
            uploads: !self.no_upload,
            program_idle: positive_secs(self.program_idle).unwrap_or(defaults.program_idle),
            max_payload: self.max_payload,
            shared_max: self.shared_max,
            stream_stall: positive_secs(self.stream_stall).unwrap_or(defaults.stream_stall),
            spill_dir: self.spill_dir.clone(),
            spill_max: self.spill_max,
            orphan_keep: Duration::from_secs(self.orphan_keep),
            ..defaults
        })
    }
}

/// `--spill-max`: a size, or 0 (spill off).
fn parse_spill_max(text: &str) -> Result<u64, String> {
    match text.trim() {
        "0" => Ok(0),
        size => ppcore::limits::parse_bytes(size),
    }
}

/// `secs` as a duration, if it is a positive number of seconds.
fn positive_secs(secs: f64) -> Option<Duration> {
    Duration::try_from_secs_f64(secs)
        .ok()
        .filter(|d| !d.is_zero())
}

impl Cli {
    /// The offer of `--resources`, `--tags`, `--memory` (checked when
    /// parsed: a list that passed cannot fail here, but for a count that
    /// `auto` made too large, which leaves the named resources out).
    fn offer(&self) -> ppcore::resources::Offer {
        let (_, slurm_memory, slurm_gpus) = match self.slurm {
            true => self.slurm_env(),
            false => (None, None, None),
        };
        let memory = self.memory.or(slurm_memory);
        let build = |resources| {
            crate::offer::build(
                resources,
                self.tags.as_deref(),
                memory,
                self.gpu_dir.as_deref(),
            )
        };
        let mut offer = build(self.resources.as_deref())
            .or_else(|_| build(None))
            .unwrap_or_default();
        let named_gpu = offer.named().iter().any(|(n, _)| n == "gpu");
        if let (Some(gpus), false) = (slurm_gpus, named_gpu) {
            let _ = offer.set_named("gpu", gpus.min(ppcore::resources::MAX_INSTANCES));
        }
        offer
    }

    /// What the Slurm allocation gives this node: cpus, memory, GPUs.
    fn slurm_env(&self) -> (Option<usize>, Option<u64>, Option<u32>) {
        crate::offer::slurm_offer(|k| std::env::var(k).ok())
    }

    /// The node's keys, from `--secret-file` or else the `PP_SECRET`
    /// environment variable (one key, or two during a rollover); `None` if
    /// neither is given. A value that is not a generated key is refused with
    /// how to make one. No option takes the key itself: on the command line
    /// `ps` would show it.
    pub fn keys(&self) -> Result<Option<KeySet>, KeyError> {
        let env = std::env::var_os(SECRET_ENV).filter(|v| !v.is_empty());
        self.keys_from(env.as_deref().map(|v| v.to_string_lossy()).as_deref())
    }

    /// [`Cli::keys`] with `env` as the value of `PP_SECRET`.
    fn keys_from(&self, env: Option<&str>) -> Result<Option<KeySet>, KeyError> {
        match (&self.secret_file, env) {
            (Some(path), _) => KeySet::read_file(path).map(Some),
            (None, Some(env)) => KeySet::parse(env).map(Some),
            (None, None) => Ok(None),
        }
    }

    /// Carries out `--gen-secret FILE`: writes a new key and says where,
    /// with its fingerprint (never the key). `None` when not asked.
    pub fn gen_secret(&self) -> Option<Result<String, KeyError>> {
        let path = self.gen_secret.as_ref()?;
        Some(ppcore::write_new_key_file(path).map(|fingerprint| {
            format!(
                "wrote a new key to {} (fingerprint {fingerprint}); copy it to every node and client \
                 and pass it with --secret-file FILE",
                path.display()
            )
        }))
    }
}

/// This build's version, as nodes report it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

impl Config {
    /// Where peers reach this node (`Welcome.reach`), from `--advertise`,
    /// the listening address and `--join` (see [`Config::advertise`]):
    /// `host:port`, `:port` (any address of the node at that port), or
    /// `None` (unreachable to peers).
    pub fn reach(&self) -> Option<String> {
        if let Some(given) = &self.advertise {
            let given = given.trim();
            let has_port = given.parse::<std::net::SocketAddr>().is_ok()
                || (!given.starts_with('[')
                    && given.matches(':').count() == 1
                    && given
                        .rsplit_once(':')
                        .is_some_and(|(_, p)| p.parse::<u16>().is_ok()))
                || given
                    .rsplit_once("]:")
                    .is_some_and(|(_, p)| p.parse::<u16>().is_ok());
            return match (has_port, given.parse::<IpAddr>()) {
                (true, _) => Some(given.to_owned()),
                (false, Ok(IpAddr::V6(ip))) => Some(format!("[{ip}]:{}", self.port)),
                (false, _) => Some(format!("{}:{}", given.trim_matches(['[', ']']), self.port)),
            };
        }
        if self.join.is_some() || self.interface.is_loopback() {
            return None;
        }
        match self.interface.is_unspecified() {
            true => Some(format!(":{}", self.port)),
            false => Some(std::net::SocketAddr::new(self.interface, self.port).to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("ppserver").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn spill_is_on_by_default_within_4_gib_and_0_turns_it_off() {
        let c = cli(&[]).config().unwrap();
        assert_eq!((c.spill_dir, c.spill_max), (None, 4 << 30));
        let c = cli(&["--spill-dir", "/tmp/s", "--spill-max", "0"])
            .config()
            .unwrap();
        assert_eq!((c.spill_dir, c.spill_max), (Some("/tmp/s".into()), 0));
        assert_eq!(
            cli(&["--spill-max", "1G"]).config().unwrap().spill_max,
            1 << 30
        );
        let bad = Cli::try_parse_from(["ppserver", "--spill-max", "-1"]);
        assert!(bad.is_err());
    }

    #[test]
    fn keys_come_from_the_file_or_the_environment_and_must_be_keys() {
        let (a, b) = (
            ppcore::Key::generate().unwrap(),
            ppcore::Key::generate().unwrap(),
        );
        let both = format!("{} {}", a.to_text(), b.to_text());
        let from_env = cli(&[]).keys_from(Some(&both)).unwrap().unwrap();
        assert_eq!(from_env.keys(), &[a, b]);
        assert!(cli(&[]).keys_from(None).unwrap().is_none());
        let err = cli(&[]).keys_from(Some("pp-demo-secret")).unwrap_err();
        assert!(
            err.to_string().contains("ppserver --gen-secret FILE"),
            "{err}"
        );
        assert!(cli(&[]).gen_secret().is_none());
        // No option takes the key itself.
        let err = Cli::try_parse_from(["ppserver", "--secret-env", &both]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::UnknownArgument);
    }

    #[test]
    fn cache_max_takes_bytes_with_a_suffix() {
        assert_eq!(cli(&[]).cache_max, 2 << 30);
        assert_eq!(cli(&["--cache-max", "512m"]).cache_max, 512 << 20);
        assert!(Cli::try_parse_from(["ppserver", "--cache-max", "lots"]).is_err());
        assert!(Cli::try_parse_from(["ppserver", "--cache-max", "99999999999G"]).is_err());
    }

    #[test]
    fn limits_have_defaults_and_refuse_nonsense() {
        let c = cli(&["--workers", "3"]).config().unwrap();
        assert_eq!((c.max_unauthenticated, c.max_per_source), (64, 16));
        assert_eq!((c.credit_jobs(), c.credit_bytes), (4096 + 12, 64 << 20));
        assert!(c.max_memory >= 1 << 20);
        let c = cli(&["--max-memory", "512M", "--credit-jobs", "2"])
            .config()
            .unwrap();
        assert_eq!((c.max_memory, c.credit_jobs()), (512 << 20, 2));
        for bad in [
            ["--max-unauthenticated", "0"],
            ["--max-per-source", "-1"],
            ["--max-memory", "1e99"],
            ["--credit-bytes", "nan"],
            ["--max-connections", "0"],
        ] {
            let args = std::iter::once("ppserver").chain(bad);
            assert!(Cli::try_parse_from(args).is_err(), "{bad:?}");
        }
        assert_eq!(
            mem_total("MemTotal:  2048 kB\nMemFree: 1 kB"),
            Some(2 << 20)
        );
    }

    #[test]
    fn max_payload_takes_bytes_with_a_suffix() {
        assert_eq!(cli(&[]).max_payload, 1 << 30);
        assert_eq!(cli(&["--max-payload", "256M"]).max_payload, 256 << 20);
        assert_eq!(cli(&["--max-payload", "4096"]).max_payload, 4096);
        assert_eq!(cli(&[]).shared_max, 2 << 30);
        assert_eq!(cli(&["--shared-max", "64M"]).shared_max, 64 << 20);
        for bad in ["0", "2P", "-3", "x", "", "1e9"] {
            assert!(
                Cli::try_parse_from(["ppserver", "--max-payload", bad]).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_node_is_reachable_by_peers_where_it_says_or_where_it_listens_but_not_on_loopback_alone() {
        let at = |interface: [u8; 4], advertise: Option<&str>, join: Option<&str>| {
            Config {
                interface: IpAddr::from(interface),
                port: 7000,
                advertise: advertise.map(str::to_owned),
                join: join.map(str::to_owned),
                ..Config::default()
            }
            .reach()
        };
        assert_eq!(at([127, 0, 0, 1], None, None), None);
        assert_eq!(at([0, 0, 0, 0], None, None).as_deref(), Some(":7000"));
        assert_eq!(
            at([10, 1, 2, 3], None, None).as_deref(),
            Some("10.1.2.3:7000")
        );
        assert_eq!(at([0, 0, 0, 0], None, Some("c:1")), None);
        let given = at([127, 0, 0, 1], Some("127.0.0.1"), None);
        assert_eq!(given.as_deref(), Some("127.0.0.1:7000"));
        let given = at([0, 0, 0, 0], Some("node-a.example:9000"), Some("c:1"));
        assert_eq!(given.as_deref(), Some("node-a.example:9000"));
        assert_eq!(
            at([0, 0, 0, 0], Some("node-a"), None).as_deref(),
            Some("node-a:7000")
        );
        assert_eq!(
            at([0, 0, 0, 0], Some("::1"), None).as_deref(),
            Some("[::1]:7000")
        );
        assert_eq!(
            at([0, 0, 0, 0], Some("[::1]:8"), None).as_deref(),
            Some("[::1]:8")
        );
    }
}
