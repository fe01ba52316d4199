//! `ppserver`: a node of the pp job cluster, with the built-in jobs.

// Links the built-in jobs so that `Registry::linked` finds them.
use jobs as _;

fn main() -> std::process::ExitCode {
    if let Some(code) = ppserver::gen_secret_if_asked() {
        return code;
    }
    ppserver::main_linked()
}
