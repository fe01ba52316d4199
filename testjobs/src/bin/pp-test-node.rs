//! A node with the built-in jobs and the crashing test jobs.

use jobs as _;
use testjobs as _;

fn main() -> std::process::ExitCode {
    ppserver::main_linked()
}
