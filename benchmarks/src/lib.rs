//! Shared helpers of the benchmark binaries: timing and the results table.
#![allow(missing_docs)]

use std::time::Instant;

/// Runs `f` `n` times (at least once); the fastest time in seconds and its value.
pub fn best_of<T>(n: usize, mut f: impl FnMut() -> anyhow::Result<T>) -> anyhow::Result<(f64, T)> {
    let mut best: Option<(f64, T)> = None;
    for _ in 0..n.max(1) {
        let started = Instant::now();
        let value = f()?;
        let s = started.elapsed().as_secs_f64();
        if best.as_ref().is_none_or(|(b, _)| s < *b) {
            best = Some((s, value));
        }
    }
    best.ok_or_else(|| anyhow::anyhow!("no run"))
}

/// One line of a results table.
pub struct Row {
    pub name: String,
    pub seconds: f64,
    /// Sequential time over this time.
    pub speedup: f64,
    /// Rayon's time over this time: 1.0 means as fast as rayon.
    pub efficiency: f64,
}

impl Row {
    pub fn new(name: &str, seconds: f64, sequential: f64, rayon: f64) -> Self {
        Row {
            name: name.to_owned(),
            seconds,
            speedup: sequential / seconds,
            efficiency: rayon / seconds,
        }
    }
}

pub fn print_rows(rows: &[Row]) {
    println!(
        "  {:<34} {:>10} {:>8} {:>15}",
        "variant", "time (s)", "speedup", "vs rayon"
    );
    for r in rows {
        println!(
            "  {:<34} {:>10.4} {:>7.2}x {:>15.3}",
            r.name, r.seconds, r.speedup, r.efficiency
        );
    }
}

/// The frame size of [`aead_mb_s`]: 1 MiB, the stream chunk size.
pub const AEAD_FRAME: usize = 1 << 20;

/// CPU time this thread has used, in seconds: "per core" figures that a
/// busy shared machine does not shrink the way it shrinks wall time.
/// (Linux: the first field of `/proc/thread-self/schedstat`, nanoseconds
/// on a CPU; NaN where that cannot be read.)
pub fn thread_cpu_s() -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(f64::NAN, |ns| ns as f64 / 1e9)
}

/// Runs `f` and returns (wall seconds, this thread's CPU seconds).
pub fn timed(f: impl FnOnce() -> anyhow::Result<()>) -> anyhow::Result<(f64, f64)> {
    let (started, cpu) = (Instant::now(), thread_cpu_s());
    f()?;
    Ok((started.elapsed().as_secs_f64(), thread_cpu_s() - cpu))
}

/// Seal + open of `frames` 1 MiB frames on this thread: MB per CPU second
/// (and per wall second).
pub fn aead_mb_s(cipher: ppcore::Cipher, frames: usize) -> anyhow::Result<(f64, f64)> {
    let mut a = ppcore::Transport::from_raw_keys(cipher, &[1; 32], &[2; 32]);
    let mut b = ppcore::Transport::from_raw_keys(cipher, &[2; 32], &[1; 32]);
    let frame = vec![0x5a; AEAD_FRAME];
    let (wall, cpu) = timed(|| {
        for _ in 0..frames {
            let plain = b.open_vec(a.seal(&frame)?)?;
            anyhow::ensure!(plain.len() == AEAD_FRAME, "short frame");
        }
        Ok(())
    })?;
    let mb = (frames * AEAD_FRAME) as f64 / 1e6;
    Ok((mb / cpu, mb / wall))
}

/// A plain TCP echo over loopback for baselines: a thread echoes what it
/// reads, `size` bytes at a time, until the client closes; returns the
/// client's connected stream (both ends with `TCP_NODELAY`) and the thread.
pub fn tcp_echo(
    size: usize,
) -> anyhow::Result<(
    std::net::TcpStream,
    std::thread::JoinHandle<anyhow::Result<()>>,
)> {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let echo = std::thread::spawn(move || -> anyhow::Result<()> {
        let (mut peer, _) = listener.accept()?;
        peer.set_nodelay(true)?;
        let mut buf = vec![0u8; size];
        loop {
            match peer.read_exact(&mut buf) {
                Ok(()) => peer.write_all(&buf)?,
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
                Err(e) => return Err(e.into()),
            }
        }
    });
    let stream = std::net::TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    Ok((stream, echo))
}

/// The keys of [`SealedTcp`]'s two directions (benchmark keys, never a
/// session's: a session's come from its handshake).
const ECHO_KEYS: ([u8; 32], [u8; 32]) = ([3; 32], [4; 32]);

/// Writes `payload` as sealed frames of at most [`AEAD_FRAME`] bytes of
/// plaintext each (length header, ciphertext, tag), each sealed in place in
/// `frame` with the session's AEAD.
fn write_sealed(
    out: &mut impl std::io::Write,
    seal: &mut ppcore::Sealer,
    payload: &[u8],
    frame: &mut Vec<u8>,
) -> anyhow::Result<()> {
    for chunk in payload.chunks(AEAD_FRAME) {
        frame.clear();
        frame.extend_from_slice(&[0u8; 4]);
        frame.extend_from_slice(chunk);
        *frame = seal.seal_reserved(std::mem::take(frame))?;
        out.write_all(frame)?;
    }
    Ok(())
}

/// Reads sealed frames (as [`write_sealed`] writes them) until `into` is
/// full, opening each in place in `frame`, then copying the plaintext out.
fn read_sealed(
    input: &mut impl std::io::Read,
    open: &mut ppcore::Opener,
    into: &mut [u8],
    frame: &mut Vec<u8>,
) -> anyhow::Result<()> {
    let mut at = 0;
    while at < into.len() {
        let mut len = [0u8; 4];
        input.read_exact(&mut len)?;
        let len = u32::from_be_bytes(len) as usize;
        anyhow::ensure!(
            len <= AEAD_FRAME + ppcore::SEAL_OVERHEAD,
            "frame of {len} bytes"
        );
        frame.resize(len, 0);
        input.read_exact(frame)?;
        let plain = open.open_in_place(frame)?;
        let to = at + plain.len();
        anyhow::ensure!(
            to <= into.len() && !plain.is_empty(),
            "frame past the payload"
        );
        into[at..to].copy_from_slice(plain);
        at = to;
    }
    Ok(())
}

/// The plain TCP echo of [`tcp_echo`] with every byte sealed: each
/// [`AEAD_FRAME`] chunk is sealed by its sender and opened by its receiver
/// with the session's AEAD ([`ppcore::CIPHER`]), both ways; the echo thread
/// opens the whole payload, then seals it back. What a node's echo would
/// cost with nothing but the framing and the cipher.
pub struct SealedTcp {
    stream: std::net::TcpStream,
    seal: ppcore::Sealer,
    open: ppcore::Opener,
    frame: Vec<u8>,
    echo: std::thread::JoinHandle<anyhow::Result<()>>,
}

impl SealedTcp {
    /// Connects to a fresh echo thread that echoes `size` bytes at a time.
    pub fn start(size: usize) -> anyhow::Result<Self> {
        let (send, recv) = ECHO_KEYS;
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let echo = std::thread::spawn(move || -> anyhow::Result<()> {
            let (mut peer, _) = listener.accept()?;
            peer.set_nodelay(true)?;
            let (mut seal, mut open) =
                ppcore::Transport::from_raw_keys(ppcore::CIPHER, &recv, &send).split();
            let (mut buf, mut frame) = (vec![0u8; size], Vec::new());
            loop {
                match read_sealed(&mut peer, &mut open, &mut buf, &mut frame) {
                    Ok(()) => write_sealed(&mut peer, &mut seal, &buf, &mut frame)?,
                    Err(e) => match e.downcast_ref::<std::io::Error>() {
                        Some(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
                        _ => return Err(e),
                    },
                }
            }
        });
        let stream = std::net::TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        let (seal, open) = ppcore::Transport::from_raw_keys(ppcore::CIPHER, &send, &recv).split();
        Ok(SealedTcp {
            stream,
            seal,
            open,
            frame: Vec::new(),
            echo,
        })
    }

    /// Sends `out` sealed and reads the echo back, opened, into `back`
    /// (of the same length).
    pub fn round_trip(&mut self, out: &[u8], back: &mut [u8]) -> anyhow::Result<()> {
        anyhow::ensure!(out.len() == back.len(), "echo sizes differ");
        write_sealed(&mut self.stream, &mut self.seal, out, &mut self.frame)?;
        read_sealed(&mut self.stream, &mut self.open, back, &mut self.frame)
    }

    /// Closes the connection and waits for the echo thread.
    pub fn finish(self) -> anyhow::Result<()> {
        drop(self.stream);
        self.echo
            .join()
            .map_err(|_| anyhow::anyhow!("echo thread panicked"))?
    }
}

/// This process's resident set size, from /proc (Linux).
pub fn rss_bytes() -> anyhow::Result<u64> {
    rss_of("self")
}

/// The resident set size of process `pid` (or `self`), from /proc (Linux).
pub fn rss_of(pid: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .ok_or_else(|| anyhow::anyhow!("no VmRSS in /proc/self/status"))?;
    Ok(kb * 1024)
}

/// The peak resident set size of process `pid` (or `self`) since it started
/// or since [`reset_peak_rss`], from /proc (Linux).
pub fn peak_rss_of(pid: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .ok_or_else(|| anyhow::anyhow!("no VmHWM in /proc/{pid}/status"))?;
    Ok(kb * 1024)
}

/// Starts a new peak for [`peak_rss_of`] at the present RSS (Linux 4.0+).
pub fn reset_peak_rss(pid: &str) -> anyhow::Result<()> {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5")?;
    Ok(())
}

/// Set in the environment of a benchmark binary re-run as a node.
const AS_NODE: &str = "PP_BENCH_AS_NODE";

/// If this process was started by [`spawn_node`], runs as a ppserver node
/// and returns its exit code.
pub fn run_as_node_if_asked() -> Option<std::process::ExitCode> {
    let how = std::env::var_os(AS_NODE)?;
    let registry = match ppcore::Registry::linked() {
        Ok(r) if how == STOCK => stock(&r),
        Ok(r) => r,
        Err(e) => {
            eprintln!("{e}");
            return Some(std::process::ExitCode::FAILURE);
        }
    };
    Some(ppserver::main_with(registry))
}

/// [`AS_NODE`]'s value for a stock node: the built-in jobs only.
const STOCK: &str = "stock";

/// The jobs a stock `ppserver` has: those of the `jobs` crate.
fn stock(linked: &ppcore::Registry) -> ppcore::Registry {
    let mut registry = ppcore::Registry::new();
    for entry in linked.entries().filter(|e| e.name.starts_with("jobs::")) {
        // Names are unique in `linked` already.
        let _ = registry.insert(*entry);
    }
    registry
}

/// Like [`spawn_node_with`], a node with only the built-in jobs (as a stock
/// `ppserver` has them), whatever else this binary links.
pub fn spawn_stock_node(workers: usize, extra: &[&str]) -> anyhow::Result<SpawnedNode> {
    spawn(STOCK, 0, workers, extra)
}

/// Like [`spawn_stock_node`], on a given port (0: any).
pub fn spawn_stock_node_on(
    port: u16,
    workers: usize,
    extra: &[&str],
) -> anyhow::Result<SpawnedNode> {
    spawn(STOCK, port, workers, extra)
}

/// A ppserver node on 127.0.0.1 started by a benchmark; stopped when dropped.
pub struct SpawnedNode {
    child: std::process::Child,
    pub addr: String,
    /// From spawning the process to its ready line.
    pub ready: std::time::Duration,
}

impl SpawnedNode {
    /// The node's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (a name such as `STOP`) to the node.
    pub fn signal(&self, signal: &str) -> anyhow::Result<()> {
        let ok = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()?
            .success();
        anyhow::ensure!(ok, "kill -{signal} {} failed", self.child.id());
        Ok(())
    }

    /// The node's resident set size now.
    pub fn rss_bytes(&self) -> anyhow::Result<u64> {
        rss_of(&self.child.id().to_string())
    }
}

impl Drop for SpawnedNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The key this benchmark process and the nodes it spawns share: generated
/// once per process (`PP_SECRET` for the nodes, [`ppclient::Builder::secret`]
/// for the client).
pub fn cluster_key() -> anyhow::Result<&'static str> {
    static KEY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    if KEY.get().is_none() {
        let _ = KEY.set(ppcore::Key::generate()?.to_text());
    }
    KEY.get()
        .map(String::as_str)
        .ok_or_else(|| anyhow::anyhow!("no key"))
}

/// Starts this same binary as a ppserver node on an ephemeral loopback port
/// (so that one `cargo run` measures the remote path, no other build needed).
pub fn spawn_node(workers: usize) -> anyhow::Result<SpawnedNode> {
    spawn_node_with(0, workers, &[])
}

/// Like [`spawn_node`], on a given port (0: any).
pub fn spawn_node_on(port: u16, workers: usize) -> anyhow::Result<SpawnedNode> {
    spawn_node_with(port, workers, &[])
}

/// Like [`spawn_node_on`], with more `ppserver` arguments.
pub fn spawn_node_with(port: u16, workers: usize, extra: &[&str]) -> anyhow::Result<SpawnedNode> {
    spawn("1", port, workers, extra)
}

fn spawn(how: &str, port: u16, workers: usize, extra: &[&str]) -> anyhow::Result<SpawnedNode> {
    use std::io::BufRead;
    let started = std::time::Instant::now();
    let mut child = std::process::Command::new(std::env::current_exe()?)
        .env(AS_NODE, how)
        .env("PP_SECRET", cluster_key()?)
        .args(["--interface", "127.0.0.1", "--log-level", "error"])
        .args(["--port", &port.to_string()])
        .args(["--workers", &workers.to_string()])
        .args(extra)
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
    let mut line = String::new();
    std::io::BufReader::new(stdout).read_line(&mut line)?;
    let ready = started.elapsed();
    let addr = line
        .split_whitespace()
        .find(|w| w.parse::<std::net::SocketAddr>().is_ok())
        .ok_or_else(|| anyhow::anyhow!("node did not start: {line:?}"))?
        .to_owned();
    Ok(SpawnedNode { child, addr, ready })
}
