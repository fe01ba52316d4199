//! Built-in jobs: every `ppserver` can run them, and the benchmarks and tests use them.
//!
//! Each item is a job made with [`ppcore::job!`]: pass it to `Server::submit`
//! with its arguments as a tuple, or call it here with `name::call(...)`.

use std::time::Duration;

ppcore::job! {
    /// Partial sum of the Maclaurin series of 1/(1-x): the sum of x^n for n in
    /// [start, end). Computes x^start once, then multiplies.
    pub fn maclaurin(x: f64, start: u64, end: u64) -> f64 {
        let mut term = x.powf(start as f64);
        let mut sum = 0.0;
        for _ in start..end {
            sum += term;
            term *= x;
        }
        sum
    }
}

ppcore::job! {
    /// The sum of the primes below `n`, by trial division (deliberately CPU-bound).
    pub fn sum_primes(n: u64) -> u64 {
        (2..n).filter(|&k| is_prime(k)).sum()
    }
}

fn is_prime(k: u64) -> bool {
    k >= 2
        && (2..)
            .take_while(|d| d * d <= k)
            .all(|d| !k.is_multiple_of(d))
}

ppcore::job! {
    /// Sleeps for `ms` milliseconds and returns `ms`.
    pub fn sleep_ms(ms: u64) -> u64 {
        std::thread::sleep(Duration::from_millis(ms));
        ms
    }
}

ppcore::job! {
    /// Does nothing: the cost of a job itself.
    pub fn noop() {}
}

ppcore::job! {
    /// Returns its argument.
    pub fn echo_u64(value: u64) -> u64 {
        value
    }
}

ppcore::job! {
    /// Returns its bytes.
    pub fn echo_bytes(bytes: serde_bytes::ByteBuf) -> serde_bytes::ByteBuf {
        bytes
    }
}

ppcore::job! {
    /// Returns its text.
    pub fn echo_string(text: String) -> String {
        text
    }
}

ppcore::job! {
    /// Fails on purpose: returns an error carrying `message`.
    pub fn fail(message: String) -> Result<u64, String> {
        Err(message)
    }
}

ppcore::job! {
    /// Panics on purpose with `message`.
    pub fn panic(message: String) -> u64 {
        panic!("{message}")
    }
}

ppcore::job! {
    /// Fails on purpose the first `failures` times it runs with `key` in this
    /// process, then returns how many times it ran: for retry tests.
    pub fn flaky(key: String, failures: u32) -> Result<u32, String> {
        use std::collections::HashMap;
        use std::sync::Mutex;
        static RUNS: Mutex<Option<HashMap<String, u32>>> = Mutex::new(None);
        let mut runs = RUNS.lock().unwrap_or_else(|e| e.into_inner());
        let n = runs.get_or_insert_with(HashMap::new).entry(key).or_insert(0);
        *n += 1;
        if *n <= failures {
            Err(format!("failure {n} of {failures}, on purpose"))
        } else {
            Ok(*n)
        }
    }
}

ppcore::job! {
    /// The sum of `bytes[from..to]` of a shared buffer (clamped to its
    /// length): a job that reads a large value shared once per node.
    pub fn shared_byte_sum(bytes: ppcore::Shared<serde_bytes::ByteBuf>, from: u64, to: u64) -> u64 {
        let to = (to as usize).min(bytes.len());
        let from = (from as usize).min(to);
        bytes[from..to].iter().map(|&b| u64::from(b)).sum()
    }
}

/// The Maclaurin sum of x^n for n in [0, terms), in closed form: (1 - x^terms)/(1 - x).
pub fn maclaurin_exact(x: f64, terms: u64) -> f64 {
    (1.0 - x.powf(terms as f64)) / (1.0 - x)
}

/// The `[start, end)` term range of task `k` when `terms` are split into `tasks` parts.
pub fn task_range(terms: u64, tasks: u64, k: u64) -> (u64, u64) {
    let tasks = tasks.max(1);
    (terms * k / tasks, terms * (k + 1) / tasks)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ppcore::{ErrorKind, Job, Registry};

    #[test]
    fn maclaurin_slices_sum_to_closed_form() {
        let (x, terms) = (0.999, 100_000);
        let sum: f64 = (0..64)
            .map(|k| {
                let (lo, hi) = task_range(terms, 64, k);
                maclaurin::call(x, lo, hi)
            })
            .sum();
        let exact = maclaurin_exact(x, terms);
        assert!(((sum - exact) / exact).abs() < 1e-9, "{sum} vs {exact}");
    }

    #[test]
    fn sum_primes_is_right() {
        assert_eq!(sum_primes::call(10), 2 + 3 + 5 + 7);
        assert_eq!(sum_primes::call(2), 0);
    }

    #[test]
    fn linked_registry_runs_jobs_from_bytes() {
        let registry = Registry::linked().unwrap();
        assert!(registry.has::<maclaurin>());
        assert!(registry.has::<fail>());
        let args = ppcore::encode(&(20u64,)).unwrap();
        let out = registry.run(sum_primes::NAME, args.clone()).unwrap();
        assert_eq!(ppcore::decode::<u64>(&out).unwrap(), 77);
    }

    #[test]
    fn failing_and_panicking_jobs_are_typed_errors() {
        let registry = Registry::linked().unwrap();
        let args = ppcore::encode(&("boom".to_string(),)).unwrap();
        let err = registry.run(fail::NAME, args.clone()).unwrap_err();
        assert_eq!(
            (err.kind, err.message.as_str()),
            (ErrorKind::Failed, "boom")
        );
        let err = registry.run(panic::NAME, args.clone()).unwrap_err();
        assert_eq!(
            (err.kind, err.message.as_str()),
            (ErrorKind::Panicked, "boom")
        );
        let err = registry.run("no::such", args.clone()).unwrap_err();
        assert_eq!(err.kind, ErrorKind::UnknownJob);
        let err = registry.run(sum_primes::NAME, b"\xc1").unwrap_err();
        assert_eq!(err.kind, ErrorKind::Codec);
    }

    mod other {
        ppcore::job! {
            /// A job whose name collides with `jobs::maclaurin` but not its type.
            pub fn maclaurin(x: f64) -> f64 { x }
        }
    }

    #[test]
    fn name_collision_is_an_error() {
        let mut registry = Registry::new();
        registry.add::<maclaurin>().unwrap();
        registry.add::<maclaurin>().unwrap();
        let clash = ppcore::JobEntry {
            name: maclaurin::NAME,
            ..ppcore::JobEntry::of::<other::maclaurin>()
        };
        let err = registry.insert(clash).unwrap_err();
        assert_eq!(err.name, "jobs::maclaurin");
        assert!(err.to_string().contains("rename one"), "{err}");
    }
}
