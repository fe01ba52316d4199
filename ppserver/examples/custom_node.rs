//! A node binary with your own jobs: the built-in ones plus `shout`.
//!
//! ```sh
//! PP_SECRET=s3cret cargo run --release -p ppserver --example custom_node -- --port 60001
//! ```
//! A client that links the same `shout` (same crate, same module path) can
//! then `server.submit(shout, ("hi".into(),))` on this node.

// The built-in jobs, linked so that `Registry::linked` finds them too.
use jobs as _;

ppcore::job! {
    /// Upper-cases its text.
    pub fn shout(text: String) -> String {
        text.to_uppercase()
    }
}

fn main() -> std::process::ExitCode {
    ppserver::main_linked()
}
