//! Jobs that take their process down on purpose: only for the tests of
//! isolation mode, and only in the `pp-test-node` binary. Never link them
//! into a real node.

use std::time::{Duration, Instant};

ppcore::job! {
    /// Aborts the process.
    pub fn abort_process() -> u64 {
        std::process::abort()
    }
}

ppcore::job! {
    /// Dies of SIGSEGV, as a wild pointer would make it, without undefined
    /// behaviour: the default action of the signal, raised on purpose.
    pub fn segfault() -> u64 {
        // Resets SIGSEGV to its default action (std installs a handler for
        // stack overflows) and raises it: the process ends here.
        let raised = signal_hook::low_level::emulate_default_handler(signal_hook::consts::SIGSEGV);
        panic!("SIGSEGV did not end the process: {raised:?}")
    }
}

ppcore::job! {
    /// Spins like a runaway loop (for at most `secs` seconds, so that a
    /// forgotten test process still ends).
    pub fn spin(secs: u64) -> u64 {
        let until = Instant::now() + Duration::from_secs(secs);
        let mut n = 0u64;
        while Instant::now() < until {
            n = std::hint::black_box(n.wrapping_add(1));
        }
        n
    }
}

ppcore::job! {
    /// Prints to stdout and stderr, some of it shaped like a frame, and
    /// returns `n + 1`.
    pub fn print_to_stdio(n: u64) -> u64 {
        use std::io::Write;
        let frame_like = [0, 0, 0, 4, 0x92, 0x01, 0x02, 0x03];
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(&frame_like);
        let _ = writeln!(out, "job {n} says hello on stdout");
        let _ = out.flush();
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(&frame_like);
        let _ = writeln!(err, "job {n} says hello on stderr");
        n + 1
    }
}

/// The descriptors of this process that a program it starts would inherit
/// (those without close-on-exec), from `/proc/self/fdinfo`.
pub fn inheritable_fds() -> Vec<u32> {
    const O_CLOEXEC: u32 = 0o2000000;
    let mut fds: Vec<u32> = std::fs::read_dir("/proc/self/fd")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|fd| {
            std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}"))
                .ok()
                .and_then(|info| {
                    let flags = info.lines().find_map(|l| l.strip_prefix("flags:"))?;
                    u32::from_str_radix(flags.trim(), 8).ok()
                })
                .is_some_and(|flags| flags & O_CLOEXEC == 0)
        })
        .collect();
    fds.sort_unstable();
    fds
}

ppcore::job! {
    /// [`inheritable_fds`] of the process that runs the job.
    pub fn inheritable_descriptors() -> Vec<u32> {
        inheritable_fds()
    }
}

/// Starts `sleep secs` (which inherits stdout and stderr, as a job's child
/// would), and writes this process's pid and the child's to `path`.
fn start_child(path: &str, secs: u64) -> u32 {
    let child = std::process::Command::new("sleep")
        .arg(secs.to_string())
        .spawn()
        .map_or(0, |c| c.id());
    let tmp = format!("{path}.tmp");
    let written = std::fs::write(&tmp, format!("{} {child}", std::process::id()))
        .and_then(|()| std::fs::rename(&tmp, path));
    assert!(written.is_ok(), "cannot write {path}: {written:?}");
    child
}

ppcore::job! {
    /// Leaves a child process holding its stdout and stderr, notes both
    /// pids in `path`, and holds its slot for `secs` seconds.
    pub fn hold_with_child(path: String, secs: u64) -> u32 {
        let child = start_child(&path, secs);
        std::thread::sleep(Duration::from_secs(secs));
        child
    }
}

ppcore::job! {
    /// Leaves a child process (alive `secs` seconds) holding its stdout and
    /// stderr, notes both pids in `path`, and aborts.
    pub fn abort_leaving_child(path: String, secs: u64) -> u32 {
        start_child(&path, secs);
        std::process::abort()
    }
}

ppcore::job! {
    /// The sum of `from..to`: a map job whose result is kept.
    pub fn range_sum(from: u64, to: u64) -> u64 {
        (from..to).sum()
    }
}

ppcore::job! {
    /// The sum of four kept results: a reduce job.
    pub fn sum4(a: ppcore::Shared<u64>, b: ppcore::Shared<u64>, c: ppcore::Shared<u64>, d: ppcore::Shared<u64>) -> u64 {
        *a + *b + *c + *d
    }
}

ppcore::job! {
    /// A kept result plus one.
    pub fn plus_one(x: ppcore::Shared<u64>) -> u64 {
        *x + 1
    }
}

ppcore::job! {
    /// What the process running it was told of its GPUs
    /// (`CUDA_VISIBLE_DEVICES`) and what the job's context says it holds:
    /// for the tests of resources in process isolation.
    pub fn visible_gpus() -> (Option<String>, Vec<u32>) {
        let ctx = ppcore::job_context();
        (std::env::var("CUDA_VISIBLE_DEVICES").ok(), ctx.instances("gpu").to_vec())
    }
}

ppcore::job! {
    /// Allocates `mib` MiB, writes every page, and returns `mib`: for the
    /// tests of a process worker held to its job's memory request.
    pub fn allocate(mib: u64) -> u64 {
        let len = usize::try_from(mib << 20).unwrap_or(usize::MAX);
        let mut block = vec![0u8; len];
        for page in block.chunks_mut(4096) {
            page[0] = 1;
        }
        std::hint::black_box(&block);
        block.iter().step_by(1 << 20).map(|&b| u64::from(b)).sum()
    }
}
