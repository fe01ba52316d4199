//! A program that is a client and a node, with a command line of its own
//! and only `ppclient` for the cluster: `pp-app node` serves this program's
//! jobs in process isolation; `pp-app client HOST:PORT` runs two of them there.
//! The secret comes from `PP_SECRET`.

use ppclient::node::{Config, Isolation};
use ppclient::{KeySet, Registry, Server};
use std::process::ExitCode;
// The built-in jobs and the crashing ones, linked so that `Registry::linked` finds them.
use jobs as _;

fn main() -> ExitCode {
    // First: in a worker process of the node, this serves jobs and never returns.
    ppclient::node::init_worker();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let secret = std::env::var("PP_SECRET").unwrap_or_default();
    let done = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["node"] => node(secret),
        ["client", addr] => client(secret, addr),
        _ => Err("usage: pp-app node | pp-app client HOST:PORT".into()),
    };
    match done {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pp-app: {e}");
            ExitCode::FAILURE
        }
    }
}

fn node(secret: String) -> Result<(), Box<dyn std::error::Error>> {
    let config = Config {
        port: 0,
        workers: 1,
        keys: Some(KeySet::parse(&secret)?),
        isolation: Isolation::Process,
        ..Config::default()
    };
    ppclient::node::serve(config, Registry::linked()?)?;
    Ok(())
}

fn client(secret: String, addr: &str) -> Result<(), Box<dyn std::error::Error>> {
    let server = Server::builder()
        .ncpus(0)
        .secret(secret)
        .nodes([addr])
        .build()?;
    let crashed = server.submit(testjobs::segfault, ()).wait().unwrap_err();
    let sum = server.submit(jobs::sum_primes, (100,)).wait()?;
    println!("segfault: {}; sum_primes: {sum}", crashed.kind);
    Ok(())
}
