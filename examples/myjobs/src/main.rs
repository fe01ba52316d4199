//! Jobs of our own, run on stock `ppserver` nodes: this program ships
//! itself to the nodes that lack its jobs.
//!
//! ```sh
//! ppclient secret new pp.key && export PP_SECRET=$(cat pp.key)
//! ppserver --port 60000 &                       # a stock node, no custom build
//! cargo run -p myjobs -- 127.0.0.1:60000
//! ```

use ppclient::Server;

ppclient::job! {
    /// How many numbers in [from, to) have a digit sum divisible by 7.
    pub fn lucky_count(from: u64, to: u64) -> u64 {
        (from..to).filter(|n| digit_sum(*n).is_multiple_of(7)).count() as u64
    }
}

ppclient::job! {
    /// A greeting from the machine that runs the job.
    pub fn greet(name: String) -> String {
        format!("hello {name}, from process {}", std::process::id())
    }
}

fn digit_sum(mut n: u64) -> u64 {
    let mut sum = 0;
    while n > 0 {
        sum += n % 10;
        n /= 10;
    }
    sum
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // First line: on a node, this program runs as a worker and serves the
    // jobs above; here it returns at once.
    ppclient::init();
    let nodes: Vec<String> = std::env::args().skip(1).collect();
    let server = Server::builder()
        .ncpus(0) // every job on the nodes
        .nodes(nodes)
        .build()?;
    let parts: Vec<_> = (0..8u64)
        .map(|k| server.submit(lucky_count, (k * 125_000, (k + 1) * 125_000)))
        .collect();
    let lucky: u64 = parts.into_iter().map(|h| h.wait()).sum::<Result<_, _>>()?;
    println!("lucky numbers below 1000000: {lucky}");
    println!("{}", server.submit(greet, ("myjobs".into(),)).wait()?);
    Ok(())
}
