//! `ppserver`: a node of the pp job cluster, with the built-in jobs.

// Links the built-in jobs so that `Registry::linked` finds them.
use jobs as _;

fn main() -> std::process::ExitCode {
    ppserver::main_linked()
}
