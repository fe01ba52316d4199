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
    /// Writes through a null pointer: a segmentation fault.
    pub fn segfault() -> u64 {
        let p = std::hint::black_box(std::ptr::null_mut::<u64>());
        // SAFETY: none; this is the bug the test needs. The write faults
        // before anything else happens, and only ever in a worker process.
        unsafe { p.write_volatile(1) };
        0
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
