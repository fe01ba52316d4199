//! Worker processes: how a program that runs jobs in processes of its own
//! (a node in process isolation) re-runs itself as a job server.
//!
//! The parent starts its own executable with [`WORKER_ENV`] set and talks
//! frames over the child's stdin and stdout. The child must notice that
//! before doing anything else: [`init_worker`], called first in `main`, is
//! that one mechanism. A program that never calls it cannot run jobs in
//! processes, and [`ready`] lets the parent refuse with a clear reason
//! instead of starting children that do something else.

use crate::registry::Registry;
use crate::wire::{ClientMsg, DoneJob, JobInfo, NodeMsg, DEFAULT_MAX_FRAME};
use crate::{encode_frame, FrameError, FrameReader};
use serde_bytes::ByteBuf;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};

/// Set in a worker process's environment by the process that starts it.
pub const WORKER_ENV: &str = "PP_WORKER_PROCESS";
/// The value of [`WORKER_ENV`] for a shipped program started by a node: the
/// worker first lists its jobs (one `Welcome` frame), then serves them.
pub const PROGRAM_WORKER: &str = "program";
/// What a program started as a worker without having called
/// `ppclient::init()` says (on stderr) before it exits with
/// [`NOT_INITIALIZED_EXIT`]; the node reports it to the client.
pub const NOT_INITIALIZED: &str = "this program was started as a pp worker but did not call \
    ppclient::init() first in main: call ppclient::init() first in main";
/// The exit code of a program started as a worker without `init()`.
pub const NOT_INITIALIZED_EXIT: i32 = 3;

static READY: AtomicBool = AtomicBool::new(false);

/// Whether this process was started as a worker process.
pub fn is_worker() -> bool {
    std::env::var_os(WORKER_ENV).is_some()
}

/// Whether this program called [`init_worker`] (or [`init_worker_with`]), so
/// that its executable, re-run as a worker, becomes one.
pub fn ready() -> bool {
    READY.load(Ordering::Acquire)
}

/// Call first in `main` of any program that may run a node with process
/// isolation. In a worker process it serves jobs (every job linked into the
/// program) until its parent goes away, then exits the process: it does not
/// return. Otherwise it returns at once, having noted that the program can
/// be re-run as a worker.
///
/// ```
/// fn main() {
///     ppcore::init_worker(); // a worker process never gets past this line
///     // ... parse your own command line, start a node or a client ...
/// }
/// # main();
/// ```
pub fn init_worker() {
    if is_worker() {
        // Jobs of the worker may build clients of their own.
        READY.store(true, Ordering::Release);
        let code = match Registry::linked() {
            Ok(registry) => exit_code(serve_stdio(&registry)),
            Err(_) => 3,
        };
        std::process::exit(code);
    }
    READY.store(true, Ordering::Release);
}

/// [`init_worker`] serving the jobs of `registry` instead of every linked job.
pub fn init_worker_with(registry: &Registry) {
    if is_worker() {
        READY.store(true, Ordering::Release);
        std::process::exit(exit_code(serve_stdio(registry)));
    }
    READY.store(true, Ordering::Release);
}

fn exit_code(served: Result<(), WorkerError>) -> i32 {
    match served {
        Ok(()) => 0,
        Err(_) => 2,
    }
}

/// The worker's whole life on stdin and stdout. A job's panic is its error,
/// sent back as such: printed only with `RUST_BACKTRACE`, as everywhere.
fn serve_stdio(registry: &Registry) -> Result<(), WorkerError> {
    crate::quiet_job_panics();
    let mut output = std::io::stdout().lock();
    if std::env::var_os(WORKER_ENV).is_some_and(|v| v == PROGRAM_WORKER) {
        output.write_all(&program_hello(registry)?)?;
        output.flush()?;
    }
    serve_worker(registry, std::io::stdin().lock(), output)
}

/// The first frame of a program worker: a `Welcome` listing its jobs.
pub fn program_hello(registry: &Registry) -> Result<Vec<u8>, WorkerError> {
    let jobs = registry
        .entries()
        .map(|e| JobInfo {
            name: e.name.to_owned(),
            signature: e.signature.to_owned(),
        })
        .collect();
    let hello = NodeMsg::Welcome {
        node_id: "program-worker".into(),
        version: String::new(),
        workers: 1,
        jobs,
        heartbeat_ms: 0,
        caps: Vec::new(),
    };
    encode_frame(&hello).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e).into())
}

/// Ends a program that was started as a worker but never called the init
/// function: prints [`NOT_INITIALIZED`] and exits. Call it where such a
/// program would otherwise go on (building a client or a node).
pub fn exit_if_uninitialized_worker() {
    if is_worker() && !ready() {
        eprintln!("{NOT_INITIALIZED}");
        std::process::exit(NOT_INITIALIZED_EXIT);
    }
}

/// Why a worker stopped serving before its input ended.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkerError {
    /// The input was not a frame of jobs.
    #[error("bad input: {0}")]
    Input(#[from] FrameError),
    /// The input was a frame, but not `Run`.
    #[error("a worker takes only Run messages")]
    Unexpected,
    /// The answer could not be written.
    #[error("cannot answer: {0}")]
    Output(#[from] std::io::Error),
}

/// Runs each job that arrives on `input` (`Run` frames) and answers each on
/// `output` (`Done` frames, flushed one by one), until `input` ends.
pub fn serve_worker(
    registry: &Registry,
    input: impl Read,
    mut output: impl Write,
) -> Result<(), WorkerError> {
    let mut input = FrameReader::new(input, DEFAULT_MAX_FRAME);
    while let Some(msg) = input.read::<ClientMsg>()? {
        let ClientMsg::Run(jobs) = msg else {
            return Err(WorkerError::Unexpected);
        };
        for job in jobs {
            let started = std::time::Instant::now();
            let result = registry.run(&job.name, &job.args).map(ByteBuf::from);
            let done = NodeMsg::Done(vec![DoneJob {
                id: job.id,
                attempt: job.attempt,
                result,
                exec_ns: u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX),
            }]);
            let frame = encode_frame(&done)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
            output.write_all(&frame)?;
            output.flush()?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::RunJob;
    use crate::{decode_frame, encode, ErrorKind};

    crate::job! {
        /// Doubles.
        fn double(x: u64) -> u64 { x * 2 }
    }

    fn run(id: u64, name: &str, args: Vec<u8>) -> Vec<u8> {
        let msg = ClientMsg::Run(vec![RunJob {
            id,
            attempt: 1,
            name: name.into(),
            args: ByteBuf::from(args),
            program: None,
        }]);
        encode_frame(&msg).unwrap()
    }

    #[test]
    fn answers_each_job_until_the_input_ends() {
        let mut registry = Registry::new();
        registry.add::<double>().unwrap();
        let mut input = run(1, <double as crate::Job>::NAME, encode(&(21u64,)).unwrap());
        input.extend(run(2, "nope", Vec::new()));
        let mut output = Vec::new();
        serve_worker(&registry, input.as_slice(), &mut output).unwrap();
        let mut rest = output.as_slice();
        let mut answers = Vec::new();
        while let Some((NodeMsg::Done(done), used)) =
            decode_frame::<NodeMsg>(rest, DEFAULT_MAX_FRAME).unwrap()
        {
            answers.extend(done);
            rest = &rest[used..];
        }
        assert_eq!(answers.len(), 2);
        assert_eq!(
            answers[0].result,
            Ok(ByteBuf::from(encode(&42u64).unwrap()))
        );
        let err = answers[1].result.clone().unwrap_err();
        assert_eq!(err.kind, ErrorKind::UnknownJob);
    }

    #[test]
    fn garbage_input_is_an_error_not_a_panic() {
        let registry = Registry::new();
        let err = serve_worker(&registry, &[0u8, 0, 0, 3, 1, 2, 3][..], Vec::new());
        assert!(matches!(err, Err(WorkerError::Input(_))), "{err:?}");
    }
}
