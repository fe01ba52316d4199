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
