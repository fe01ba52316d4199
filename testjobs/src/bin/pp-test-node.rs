//! A node with the built-in jobs and the crashing test jobs.

use std::process::ExitCode;

use jobs as _;
use testjobs as _;

fn main() -> ExitCode {
    match ppcore::Registry::linked() {
        Ok(registry) => ppserver::main_with(registry),
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
