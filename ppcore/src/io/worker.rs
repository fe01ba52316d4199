//! Worker processes: how a program that runs jobs in processes of its own
//! (a node in process isolation) re-runs itself as a job server.
//!
//! The parent starts its own executable with [`WORKER_ENV`] set. The child
//! must notice that before doing anything else: [`init_worker`], called
//! first in `main`, is that one mechanism. A program that never calls it
//! cannot run jobs in processes, and [`ready`] lets the parent refuse with a
//! clear reason instead of starting children that do something else.
//!
//! What the parent hands the worker (ppserver's `isolate::spawn_with` does
//! it for every worker it starts):
//! - a pipe pair carries the frames: jobs arrive on fd 0, answers leave on
//!   fd 2 (either side sees end-of-file or a broken pipe when the other
//!   process is gone). Pipes, not a socketpair: a no-op job costs half as
//!   much through them (`overhead --node-isolation process`). Fd 0 and 2,
//!   because fd 0 to 2 are the only slots the standard library can place a
//!   descriptor in without an unsafe `pre_exec`, which this workspace
//!   forbids. Before any job runs, the worker moves both to close-on-exec
//!   descriptors of its own, puts `/dev/null` at fd 0 and its stdout at
//!   fd 2: jobs, and programs they start, never see the pipes;
//! - stdout is the node's stderr (and so, once the pipes are taken, is the
//!   worker's stderr), so whatever a job prints cannot corrupt the frames;
//! - [`PARENT_ENV`], the parent's pid: the worker asks the kernel for
//!   SIGKILL when its parent dies (`PR_SET_PDEATHSIG`), then checks that the
//!   parent is still the one that started it, which closes the race of a
//!   parent that died before the request. Setting it here, in the worker,
//!   keeps the parent free of unsafe code; the signal fires when the
//!   parent's *spawning thread* ends, which is why the node spawns from one
//!   thread that lives as long as it does.

use crate::job::registry::Registry;
use crate::wire::frame::{encode_frame, FrameError, FrameReader, DEFAULT_MAX_FRAME};
use crate::wire::messages::{ClientMsg, DoneJob, JobInfo, NodeMsg};
use serde_bytes::ByteBuf;
use std::io::{PipeReader, PipeWriter};
use std::io::{Read, Write};
use std::os::fd::AsFd;
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
/// The pid of the process that started the worker, in its environment: a
/// worker whose parent is already someone else exits at once.
pub const PARENT_ENV: &str = "PP_WORKER_PARENT";

/// The largest frame on a worker's pipes, in bytes, in its environment: the
/// node's payload limit and room for the message around it. Without it,
/// [`DEFAULT_MAX_FRAME`].
pub const MAX_FRAME_ENV: &str = "PP_WORKER_MAX_FRAME";

/// The largest frame on a worker's pipes for a payload limit of
/// `max_payload` bytes: the payload, 1 MiB for the message around it, and
/// never less than [`DEFAULT_MAX_FRAME`] nor more than a frame's length
/// field can say.
pub fn pipe_max_frame(max_payload: u64) -> usize {
    let frame = max_payload.saturating_add(1 << 20).min(u64::from(u32::MAX));
    usize::try_from(frame)
        .unwrap_or(u32::MAX as usize)
        .max(DEFAULT_MAX_FRAME)
}

/// The pipe frame limit this worker was started with.
fn own_max_frame() -> usize {
    std::env::var(MAX_FRAME_ENV)
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(DEFAULT_MAX_FRAME, pipe_max_frame)
}

/// The exit code of a worker whose parent died before it could serve.
const ORPHAN_EXIT: i32 = 4;

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
        let code = match attach() {
            Ok(parent) => match Registry::linked() {
                Ok(registry) => serve_parent(parent, &registry),
                Err(_) => 3,
            },
            Err(code) => code,
        };
        std::process::exit(code);
    }
    READY.store(true, Ordering::Release);
}

/// [`init_worker`] serving the jobs of `registry` instead of every linked job.
pub fn init_worker_with(registry: &Registry) {
    if is_worker() {
        READY.store(true, Ordering::Release);
        let code = match attach() {
            Ok(parent) => serve_parent(parent, registry),
            Err(code) => code,
        };
        std::process::exit(code);
    }
    READY.store(true, Ordering::Release);
}

/// The pipes to and from the parent.
struct Parent {
    jobs: PipeReader,
    answers: PipeWriter,
}

/// Ties the worker to its parent and takes the pipes, first of all (before
/// anything could print to stderr); the exit code if it cannot.
fn attach() -> Result<Parent, i32> {
    if !die_with_parent() {
        return Err(ORPHAN_EXIT);
    }
    take_pipes().map_err(|_| 2)
}

/// The worker's whole life, on the pipes from its parent. A job's panic is
/// its error, sent back as such: printed only with `RUST_BACKTRACE`, as
/// everywhere. Returns the exit code.
fn serve_parent(parent: Parent, registry: &Registry) -> i32 {
    crate::job::definition::quiet_job_panics();
    let Parent { jobs, mut answers } = parent;
    // A shipped program's worker first lists its jobs.
    if std::env::var_os(WORKER_ENV).is_some_and(|v| v == PROGRAM_WORKER) {
        let hello = program_hello(registry);
        if hello.and_then(|h| Ok(answers.write_all(&h)?)).is_err() {
            return 2;
        }
    }
    match serve_worker(registry, jobs, answers) {
        Ok(()) => 0,
        Err(_) => 2,
    }
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
        max_payload: 0,
        credit_jobs: 0,
        credit_bytes: 0,
        shared_max: 0,
        reach: None,
        offer: None,
    };
    encode_frame(&hello).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e).into())
}

/// Ends a program that was started as a worker but never called the init
/// function: sends [`NOT_INITIALIZED`] and exits. Call it where such a
/// program would otherwise go on (building a client or a node).
pub fn exit_if_uninitialized_worker() {
    if is_worker() && !ready() {
        // Nobody took the answers pipe (still at fd 2): the message goes
        // there as a `Reject` frame, which the node reads as the reason.
        let reject = NodeMsg::Reject {
            reason: NOT_INITIALIZED.to_owned(),
            retry: false,
        };
        if let Ok(frame) = encode_frame(&reject) {
            let _ = std::io::stderr().write_all(&frame);
        }
        std::process::exit(NOT_INITIALIZED_EXIT);
    }
}

/// Asks for SIGKILL when the parent dies; false if it already has (the
/// worker's parent is no longer the pid in [`PARENT_ENV`]).
fn die_with_parent() -> bool {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        use rustix::process::{getppid, set_parent_process_death_signal, Signal};
        if set_parent_process_death_signal(Some(Signal::KILL)).is_err() {
            return false;
        }
        let expected = std::env::var(PARENT_ENV)
            .ok()
            .and_then(|pid| pid.parse::<i32>().ok());
        if let Some(expected) = expected {
            return getppid().map(|p| p.as_raw_pid()) == Some(expected);
        }
    }
    true
}

/// The pipes from and to the parent, moved off fd 0 and 2: fd 0 becomes
/// `/dev/null`, fd 2 the same as stdout (the parent's stderr).
fn take_pipes() -> std::io::Result<Parent> {
    let jobs = std::io::stdin().as_fd().try_clone_to_owned()?;
    let answers = std::io::stderr().as_fd().try_clone_to_owned()?;
    let null = std::fs::File::open("/dev/null")?;
    rustix::stdio::dup2_stdin(&null)?;
    rustix::stdio::dup2_stderr(std::io::stdout())?;
    Ok(Parent {
        jobs: PipeReader::from(jobs),
        answers: PipeWriter::from(answers),
    })
}

/// Why a worker stopped serving before its input ended.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum WorkerError {
    /// The input was not a frame of jobs.
    #[error("bad input: {0}")]
    Input(#[from] FrameError),
    /// The input was a frame, but not `Run`, `Shared` or `Unshare`.
    #[error("a worker takes only Run, Shared and Unshare messages")]
    Unexpected,
    /// A shared value's bytes do not hash to its id.
    #[error("shared value {0} does not match its bytes")]
    SharedMismatch(crate::job::shared::SharedId),
    /// The answer could not be written.
    #[error("cannot answer: {0}")]
    Output(#[from] std::io::Error),
}

crate::debug_as_display!(WorkerError);

/// Runs each job that arrives on `input` (`Run` frames) and answers each on
/// `output` (`Done` frames, flushed one by one), until `input` ends. The
/// shared values the jobs name arrive before them (`Shared` frames), are
/// decoded once here for all the jobs, and kept until `Unshare`.
pub fn serve_worker(
    registry: &Registry,
    input: impl Read,
    mut output: impl Write,
) -> Result<(), WorkerError> {
    let mut input = FrameReader::new(input, own_max_frame());
    let mut shared = std::collections::HashMap::new();
    while let Some(msg) = input.read::<ClientMsg>()? {
        let jobs = match msg {
            ClientMsg::Run(jobs) => jobs,
            ClientMsg::Shared { id, value, kept } => {
                // A kept value's id is its client's name for it: no hash.
                let value = match kept {
                    true => crate::job::shared::SharedValue::kept(id, value.into_vec()),
                    false => crate::job::shared::SharedValue::from_bytes(value.into_vec()),
                };
                if value.id() != id {
                    return Err(WorkerError::SharedMismatch(id));
                }
                shared.insert(id, value);
                continue;
            }
            ClientMsg::Unshare(ids) => {
                ids.iter().for_each(|id| drop(shared.remove(id)));
                continue;
            }
            _ => return Err(WorkerError::Unexpected),
        };
        for job in jobs {
            let started = std::time::Instant::now();
            // The job may read only the shared values it named (sent
            // before it): never another client's.
            let values: Vec<_> = job
                .shared
                .iter()
                .filter_map(|id| shared.get(id).cloned())
                .collect();
            let result =
                crate::job::shared::scope(&values, || registry.run(&job.name, job.args.into_vec()))
                    .map(ByteBuf::from);
            let done = NodeMsg::Done(vec![DoneJob {
                id: job.id,
                attempt: job.attempt,
                result,
                exec_ns: u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX),
                kept: None,
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
    use crate::job::codec::encode;
    use crate::job::error::ErrorKind;
    use crate::wire::frame::decode_frame;
    use crate::wire::messages::RunJob;

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
            shared: Vec::new(),
            keep: None,
            journal: None,
            request: None,
        }]);
        encode_frame(&msg).unwrap()
    }

    #[test]
    fn answers_each_job_until_the_input_ends() {
        let mut registry = Registry::new();
        registry.add::<double>().unwrap();
        let mut input = run(
            1,
            <double as crate::job::definition::Job>::NAME,
            encode(&(21u64,)).unwrap(),
        );
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
