//! `ppserver`: a node of the pp job cluster, with the built-in jobs.

use std::process::ExitCode;

// Links the built-in jobs so that `Registry::linked` finds them.
use jobs as _;

fn main() -> ExitCode {
    match ppcore::Registry::linked() {
        Ok(registry) => ppserver::main_with(registry),
        Err(e) => {
            eprintln!("ppserver: {e}");
            ExitCode::FAILURE
        }
    }
}
