//! A second client program with a job of its own (another program hash),
//! for the test of two programs on one node at once:
//! `pp-ship-b HOST:PORT N` sums `ship_b_square` over 0..N on the node.

use ppclient::Server;
use std::process::ExitCode;

ppclient::job! {
    /// Squares a number: a job no node has built in.
    pub fn ship_b_square(x: u64) -> u64 { x * x }
}

fn main() -> ExitCode {
    ppclient::init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [addr, n] = &args[..] else {
        println!("error: usage: pp-ship-b HOST:PORT N");
        return ExitCode::FAILURE;
    };
    match run(addr, n) {
        Ok(sum) => {
            println!("sum {sum}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(addr: &str, n: &str) -> Result<u64, Box<dyn std::error::Error>> {
    let server = Server::builder()
        .ncpus(0)
        .secret(std::env::var("PP_SECRET").unwrap_or_default())
        .nodes([addr])
        .build()?;
    let n: u64 = n.parse()?;
    let sum = server
        .map(ship_b_square, (0..n).map(|x| (x,)))
        .try_fold(0, |acc, r| r.map(|x| acc + x))?;
    Ok(sum)
}
