//! The daemon: listener, workers, discovery, `--join`, idle timeout and the
//! graceful stop, wired around the shared [`Node`].

use crate::config::{Cli, Config};
use crate::error::ServeError;
use crate::node::{Node, Ticket};
use ppcore::wire::{discovery_reply, DISCOVERY_PROBE};
use ppcore::{Pool, Registry};
use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};

/// How many times an idle node worker looks at the queue (yielding in
/// between) after a job that kept its result, before it sleeps.
const CHAIN_POLLS: u32 = 64;
use std::time::Duration;

/// How long a stopping node waits for its connections to say goodbye.
const GOODBYE_WAIT: Duration = Duration::from_secs(2);

/// A running node. [`Running::stop`] begins the graceful stop;
/// [`Running::wait`] returns once the node has stopped.
pub struct Running {
    node: Arc<Node>,
    addr: SocketAddr,
    stop: Arc<Stop>,
    _pool: Pool,
}

/// The stop request, shared by whoever may ask for it.
#[derive(Default)]
struct Stop {
    asked: Mutex<bool>,
    cv: Condvar,
}

impl Stop {
    fn ask(&self) {
        *ppcore::sync::lock(&self.asked) = true;
        self.cv.notify_all();
    }

    fn asked(&self) -> bool {
        *ppcore::sync::lock(&self.asked)
    }

    /// Sleeps up to `d`; true if a stop was asked.
    fn sleep(&self, d: Duration) -> bool {
        let guard = ppcore::sync::lock(&self.asked);
        let (guard, _) = self
            .cv
            .wait_timeout_while(guard, d, |asked| !*asked)
            .unwrap_or_else(|e| e.into_inner());
        *guard
    }
}

/// Starts a node from a [`Config`] you built: binds, starts the workers and
/// the accept loop, and returns. Nothing is printed and no signal is caught:
/// [`serve`] does that, or call [`Running::stop_on_signals`] and
/// [`Running::wait`] yourself.
///
/// With [`Isolation::Process`](crate::config::Isolation::Process) this program must
/// call [`init_worker`](crate::init_worker) first in `main`, or this fails
/// with [`ServeError::NoWorkerMode`].
///
/// ```
/// let keys = ppcore::KeySet::one(ppcore::Key::generate()?);
/// let config = ppserver::Config { port: 0, workers: 1, keys: Some(keys), ..Default::default() };
/// let node = ppserver::start(config, ppcore::Registry::linked()?)?;
/// assert!(node.local_addr().ip().is_loopback());
/// node.stop();
/// node.wait();
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn start(config: Config, registry: Registry) -> Result<Running, ServeError> {
    if config.keys.is_none() {
        return Err(ServeError::Key(ppcore::KeyError::Missing));
    }
    if config.isolation == crate::config::Isolation::Process && !ppcore::worker::ready() {
        return Err(ServeError::NoWorkerMode);
    }
    let addr = SocketAddr::new(config.interface, config.port);
    let listener = TcpListener::bind(addr).map_err(|source| ServeError::Bind { addr, source })?;
    let addr = listener.local_addr()?;
    // Keyed by the port asked for: an ephemeral one gets a directory of its own.
    let own_cache = match config.cache_dir {
        None if config.uploads => crate::cache::own_dir(config.port),
        _ => None,
    };
    // `spill` under the cache directory, the node's own if none is given.
    let spill_dir = config.spill_dir.clone().or_else(|| {
        (config.cache_dir.clone())
            .or_else(|| own_cache.clone())
            .or_else(|| crate::cache::own_dir(config.port))
            .map(|dir| dir.join("spill"))
    });
    let spill = crate::node::spill::Spill::open(spill_dir, config.spill_max, addr.port());
    // Times from a caller's Config are capped: deadlines computed from them
    // must not overflow (a week is the most any of them can mean).
    let cap = ppcore::limits::cap;
    let config = Config {
        port: addr.port(),
        handshake_timeout: cap(config.handshake_timeout),
        grace: cap(config.grace),
        write_timeout: cap(config.write_timeout),
        heartbeat: cap(config.heartbeat).max(Duration::from_millis(1)),
        idle_timeout: config.idle_timeout.map(cap),
        program_idle: cap(config.program_idle),
        ..config
    };
    let queue = ppcore::Lanes::<Ticket>::new();
    let workers = config.workers;
    let node = Arc::new(Node::new(config, registry, queue.clone(), own_cache, spill));
    let worker_node = Arc::clone(&node);
    // Jobs arrive a frame at a time: idle workers sleep at once rather than
    // spin beside the connection drivers (ppcore::Pool::start_polling),
    // except after a job that kept its result here: the jobs waiting for it
    // are queued the moment it ends, and a worker that looks for them saves
    // each link of a chain a wake-up.
    let pool = Pool::start_polling(
        "pp-node-worker",
        workers,
        CHAIN_POLLS,
        queue,
        move |Ticket| worker_node.run_next(),
    );
    let stop = Arc::new(Stop::default());
    if !node.config.orphan_keep.is_zero() {
        spawn("pp-runs", {
            let (node, stop) = (Arc::clone(&node), Arc::clone(&stop));
            move || runs_watch(&node, &stop)
        })?;
    }
    spawn("pp-accept", {
        let (node, stop) = (Arc::clone(&node), Arc::clone(&stop));
        move || accept_loop(&listener, &node, &stop)
    })?;
    if node.config.discovery {
        let socket = UdpSocket::bind(addr)?;
        let (node, stop) = (Arc::clone(&node), Arc::clone(&stop));
        spawn("pp-discovery", move || discovery(&socket, &node, &stop))?;
    }
    if let Some(target) = node.config.join.clone() {
        let (node, stop) = (Arc::clone(&node), Arc::clone(&stop));
        spawn("pp-join", move || join(&target, &node, &stop))?;
    }
    if let Some(addr) = node.config.metrics {
        let stop = Arc::clone(&stop);
        crate::metrics::start(addr, &node, move || stop.asked())?;
    }
    if let Some(limit) = node.config.idle_timeout {
        let (node, stop) = (Arc::clone(&node), Arc::clone(&stop));
        spawn("pp-idle", move || idle_watch(limit, &node, &stop))?;
    }
    Ok(Running {
        node,
        addr,
        stop,
        _pool: pool,
    })
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .map(|_| ())
}

impl Running {
    /// The address the node listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where `/metrics` is served (`--metrics`), if it is.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.node.meters.addr.get().copied()
    }

    /// Asks the node to stop: no new jobs, running jobs finish, the rest go
    /// back to their clients.
    pub fn stop(&self) {
        self.stop.ask();
    }

    /// A function that asks this node to stop, for signal handlers and the like.
    pub fn stopper(&self) -> impl Fn() + Send + Sync + 'static {
        let stop = Arc::clone(&self.stop);
        move || stop.ask()
    }

    /// Stops this node gracefully on SIGTERM or SIGINT.
    pub fn stop_on_signals(&self) -> Result<(), ServeError> {
        let stopper = self.stopper();
        let mut signals = signal_hook::iterator::Signals::new([
            signal_hook::consts::SIGTERM,
            signal_hook::consts::SIGINT,
        ])?;
        spawn("pp-signals", move || {
            if let Some(sig) = signals.forever().next() {
                tracing::info!("signal {sig}: stopping");
                stopper();
            }
        })?;
        Ok(())
    }

    /// Waits for a stop request, then drains and stops.
    pub fn wait(self) {
        {
            let guard = ppcore::sync::lock(&self.stop.asked);
            let _guard = self
                .stop
                .cv
                .wait_while(guard, |asked| !*asked)
                .unwrap_or_else(|e| e.into_inner());
        }
        self.drain();
    }

    fn drain(&self) {
        let node = &self.node;
        node.draining.store(true, Ordering::Release);
        // Wake the accept loop so it sees the stop.
        let wake = match self.addr {
            SocketAddr::V4(a) if a.ip().is_unspecified() => {
                SocketAddr::from(([127, 0, 0, 1], a.port()))
            }
            a => a,
        };
        let _ = TcpStream::connect_timeout(&wake, Duration::from_millis(200));
        for conn in node.conns() {
            conn.drain();
        }
        // With no client left (an idle timeout after its client died), no
        // result can be delivered: no grace to wait out. Strangers still
        // in their handshake do not count.
        let quiet = !node.has_clients() || node.wait_quiet(node.config.grace);
        if !quiet {
            tracing::warn!("grace period over with jobs still running");
        }
        for conn in node.conns() {
            conn.stop();
        }
        // Let the goodbyes go out; a client that stopped reading is not
        // waited for beyond this.
        if !node.wait_closed(GOODBYE_WAIT) {
            tracing::warn!("some clients did not take their goodbye");
        }
        tracing::info!("stopped");
    }
}

fn accept_loop(listener: &TcpListener, node: &Arc<Node>, stop: &Stop) {
    for stream in listener.incoming() {
        if stop.asked() {
            return;
        }
        match stream {
            Ok(stream) => {
                // Counted (or refused) here, in the order connections came.
                let Some(admitted) = crate::conn::admit::admit(node, stream) else {
                    continue;
                };
                if let Err(e) = spawn("pp-conn", move || admitted.serve()) {
                    tracing::warn!("cannot start a connection thread: {e}");
                }
            }
            Err(e) => {
                // Out of file descriptors and the like: back off, keep serving.
                tracing::warn!("accept failed: {e}");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// Answers discovery probes with this node's TCP port. Anything else is ignored.
fn discovery(socket: &UdpSocket, node: &Node, stop: &Stop) {
    let _ = socket.set_read_timeout(Some(Duration::from_millis(200)));
    let _ = socket.set_broadcast(true);
    let reply = discovery_reply(node.config.port);
    let mut buf = [0u8; 512];
    while !stop.asked() {
        match socket.recv_from(&mut buf) {
            Ok((n, from)) if &buf[..n] == DISCOVERY_PROBE => {
                if let Err(e) = socket.send_to(reply.as_bytes(), from) {
                    tracing::debug!(%from, "discovery reply failed: {e}");
                }
            }
            Ok((n, from)) => tracing::debug!(%from, "ignored {n} bytes on the discovery port"),
            Err(_) => {} // timeout: look at the stop flag again
        }
    }
}

/// Dials a listening client and serves it, again and again with capped backoff.
fn join(target: &str, node: &Arc<Node>, stop: &Stop) {
    let mut backoff = Duration::from_millis(100);
    while !stop.asked() {
        let connected = resolve(target).and_then(|a| {
            TcpStream::connect_timeout(&a, Duration::from_secs(2)).map_err(|e| e.to_string())
        });
        match connected {
            Ok(stream) => {
                tracing::info!(target, "joined");
                backoff = Duration::from_millis(100);
                if let Some(admitted) = crate::conn::admit::admit(node, stream) {
                    admitted.serve();
                }
            }
            Err(e) => tracing::debug!(target, "cannot join: {e}"),
        }
        if stop.sleep(backoff) {
            return;
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

fn resolve(target: &str) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs;
    target
        .to_socket_addrs()
        .map_err(|e| format!("{target}: {e}"))?
        .next()
        .ok_or_else(|| format!("{target}: no address"))
}

/// Forgets journaled runs orphaned longer than `--orphan-keep`, and what
/// they held, even while no connection comes or goes.
fn runs_watch(node: &Node, stop: &Stop) {
    let tick =
        (node.config.orphan_keep / 10).clamp(Duration::from_millis(10), Duration::from_secs(1));
    while !stop.sleep(tick) {
        node.runs.expire(std::time::Instant::now());
    }
}

fn idle_watch(limit: Duration, node: &Node, stop: &Stop) {
    let tick = (limit / 10).clamp(Duration::from_millis(10), Duration::from_millis(500));
    while !stop.sleep(tick) {
        if node.idle_for().is_some_and(|idle| idle >= limit) {
            tracing::info!("no client for {limit:?}: exiting");
            stop.ask();
        }
    }
}

/// Runs a node from a [`Config`] you built (from your own command line, say)
/// until SIGTERM or SIGINT, then stops gracefully: [`start`], one line on
/// stdout when ready (`ppserver 0.1.0 ready on 127.0.0.1:60000 with 8
/// workers and 9 jobs`), [`Running::stop_on_signals`], [`Running::wait`].
/// Logging is yours to set up (`tracing`); a job's panic is that job's
/// error, not a message on stderr.
///
/// A program that is a client and a node, or has other subcommands, calls
/// [`init_worker`](crate::init_worker) first in `main` (so that process
/// isolation works), then this from its `node` subcommand:
///
/// ```no_run
/// fn main() -> Result<(), Box<dyn std::error::Error>> {
///     ppserver::init_worker();
///     match std::env::args().nth(1).as_deref() {
///         Some("node") => {
///             let config = ppserver::Config {
///                 isolation: ppserver::Isolation::Process,
///                 ..Default::default()
///             };
///             ppserver::serve(config, ppcore::Registry::linked()?)?;
///         }
///         _ => { /* the client part of the program */ }
///     }
///     Ok(())
/// }
/// ```
pub fn serve(config: Config, registry: Registry) -> Result<(), ServeError> {
    ppcore::quiet_job_panics();
    let jobs = registry.len();
    let running = start(config, registry)?;
    running.stop_on_signals()?;
    let mut stdout = std::io::stdout();
    writeln!(
        stdout,
        "ppserver {} ready on {} with {} workers and {jobs} jobs",
        crate::config::VERSION,
        running.local_addr(),
        running.node.config.workers,
    )?;
    stdout.flush()?;
    running.wait();
    Ok(())
}

/// The whole `ppserver` program, with the jobs of `registry`: enters worker
/// mode if this process is a worker process, parses the command line
/// ([`Cli`]), logs to stderr, then [`serve`]s. Build your own node binary
/// with your jobs by calling this from `main`; a program with a command line
/// of its own calls [`init_worker`](crate::init_worker) and [`serve`] instead.
///
/// As a program's `main` would, it prints a fatal error on stderr and returns
/// a failure code.
pub fn main_with(registry: Registry) -> ExitCode {
    use clap::Parser;
    ppcore::init_worker_with(&registry);
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    if let Some(done) = cli.gen_secret() {
        return match done {
            Ok(done) => {
                println!("{done}");
                ExitCode::SUCCESS
            }
            Err(e) => fatal(&e),
        };
    }
    let served = cli
        .config()
        .map_err(ServeError::from)
        .and_then(|config| serve(config, registry));
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fatal(&e),
    }
}

/// [`main_with`] every job linked into this binary: a node binary's whole
/// `main`. Two jobs under one name end it with that error.
pub fn main_linked() -> ExitCode {
    match Registry::linked() {
        Ok(registry) => main_with(registry),
        Err(e) => fatal(&e),
    }
}

/// The one place the whole-program entry points report a fatal error: on
/// stderr, where a command's errors go, before any logger exists.
fn fatal(e: &dyn std::fmt::Display) -> ExitCode {
    let _ = writeln!(std::io::stderr(), "ppserver: {e}");
    ExitCode::FAILURE
}
