//! One program, one dependency: a client and a node of its own jobs, chosen
//! by subcommand, with process isolation on the node.
//!
//! ```sh
//! cargo run -p ppclient --bin ppclient -- secret new pp.key  # or: ppserver --gen-secret pp.key
//! export PP_SECRET=$(cat pp.key)
//! cargo run -p ppclient --example app -- node 127.0.0.1:60001 &
//! cargo run -p ppclient --example app -- client 127.0.0.1:60001
//! ```

use ppclient::node::{Config, Isolation};
use ppclient::{KeySet, Registry, Server};

ppclient::job! {
    /// Upper-cases its text.
    pub fn shout(text: String) -> String {
        text.to_uppercase()
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // First thing: a worker process of the node serves jobs here and never returns.
    ppclient::node::init_worker();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let secret = std::env::var("PP_SECRET").unwrap_or_default();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["node", addr] => {
            let addr: std::net::SocketAddr = addr.parse()?;
            let config = Config {
                interface: addr.ip(),
                port: addr.port(),
                keys: Some(KeySet::parse(&secret)?),
                isolation: Isolation::Process,
                ..Config::default()
            };
            ppclient::node::serve(config, Registry::linked()?)?;
        }
        ["client", addr] => {
            let server = Server::builder()
                .ncpus(0)
                .secret(secret)
                .nodes([addr])
                .build()?;
            println!("{}", server.submit(shout, ("hello".into(),)).wait()?);
        }
        _ => return Err("usage: app node HOST:PORT | app client HOST:PORT".into()),
    }
    Ok(())
}
