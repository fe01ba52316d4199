//! A tree of partial sums with kept results (docs/KEPT.md): 16 parts of
//! `0..N`, added pairwise until one is left. Each part and each sum stays
//! where it was made; the client fetches only the total.
//!
//! ```sh
//! cargo run -p ppclient --example partial_sums                 # the local pool
//! export PP_SECRET=$(cat pp.key)                                # on nodes (stock ppserver):
//! cargo run -p ppclient --example partial_sums -- --nodes 127.0.0.1:60000,127.0.0.1:60001
//! ```

use ppclient::{JobHandle, Options, Server, Shared};

ppclient::job! {
    /// The sum of `from..to`.
    pub fn part(from: u64, to: u64) -> u64 {
        (from..to).sum()
    }
}

ppclient::job! {
    /// The sum of two kept partial sums.
    pub fn add(a: Shared<u64>, b: Shared<u64>) -> u64 {
        *a + *b
    }
}

/// Numbers added in all, and the parts they are split in.
const N: u64 = 16_000_000;
const PARTS: u64 = 16;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // First line: on a stock node this program runs as a worker serving
    // the jobs above (it ships itself there); here it returns at once.
    ppclient::init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let nodes: Vec<String> = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        [] => Vec::new(),
        ["--nodes", list] => list.split(',').map(str::to_owned).collect(),
        _ => return Err("usage: partial_sums [--nodes HOST:PORT,...]".into()),
    };
    let server = match nodes.is_empty() {
        // The key comes from PP_SECRET.
        false => Server::builder().ncpus(0).nodes(nodes).build()?,
        true => Server::builder().build()?,
    };

    // The leaves: each keeps its result where it runs.
    let step = N / PARTS;
    let mut level: Vec<JobHandle<u64>> = (0..PARTS)
        .map(|i| server.submit_with(part, (i * step, (i + 1) * step), Options::new().keep()))
        .collect();
    // Each level adds the one below pairwise; a job waits in the scheduler
    // until its two inputs are ready, and runs where they lie.
    while level.len() > 1 {
        let mut next = Vec::with_capacity(level.len().div_ceil(2));
        for pair in level.chunks(2) {
            let a = pair[0].keep()?;
            // An odd one out goes up plus a shared zero.
            let b = match pair.get(1) {
                Some(b) => b.keep()?,
                None => Shared::new(0)?,
            };
            next.push(server.submit_with(add, (a, b), Options::new().keep()));
        }
        // The handles below may go: the jobs above hold their inputs.
        level = next;
    }
    let top = level.pop().ok_or("no parts")?;
    let total = top.wait()?; // fetched now, once
    let expected = N * (N - 1) / 2;
    println!("sum of 0..{N} = {total} (expected {expected})");
    if total != expected {
        return Err(format!("wrong sum: {total} != {expected}").into());
    }
    server.print_stats();
    Ok(())
}
