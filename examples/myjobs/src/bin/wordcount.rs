//! Word counts as a map-reduce with kept results (docs/KEPT.md): each map
//! job counts the words of one chunk of generated text and keeps its table
//! where it ran; merge jobs take two kept tables each, pairwise up a tree,
//! so the tables travel between jobs, not through this program; only the
//! final table comes back. The jobs are this program's own: it ships
//! itself to stock nodes.
//!
//! ```sh
//! ppclient secret new pp.key && export PP_SECRET=$(cat pp.key)
//! ppserver --port 60000 &                    # a stock node
//! cargo run --release -p myjobs --bin wordcount -- 127.0.0.1:60000
//! cargo run --release -p myjobs --bin wordcount  # no nodes: the local pool
//! ```

use ppclient::{JobHandle, Options, Server, Shared};
use std::collections::BTreeMap;

/// Word -> how often it occurs.
type Counts = BTreeMap<String, u64>;

/// Chunks of text, one map job each.
const CHUNKS: u64 = 32;
/// Words in each chunk.
const WORDS: u64 = 100_000;

ppclient::job! {
    /// The word counts of chunk `seed` of the generated text.
    pub fn count_words(seed: u64, words: u64) -> Counts {
        let mut counts = Counts::new();
        for word in text(seed, words).split_whitespace() {
            *counts.entry(word.to_owned()).or_default() += 1;
        }
        counts
    }
}

ppclient::job! {
    /// Two tables of counts made one.
    pub fn merge(a: Shared<Counts>, b: Shared<Counts>) -> Counts {
        let mut out = Counts::clone(&a);
        for (word, n) in b.iter() {
            *out.entry(word.clone()).or_default() += n;
        }
        out
    }
}

/// `words` words of text, the same for the same `seed`: a made-up
/// vocabulary drawn with a skew, so a few words are common.
fn text(seed: u64, words: u64) -> String {
    const SYLLABLES: [&str; 16] = [
        "ka", "lo", "mi", "ne", "po", "ru", "sa", "ti", "vo", "we", "xa", "yu", "ze", "bo", "da",
        "fi",
    ];
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        // xorshift64*
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_F491_4F6C_DD1D)
    };
    let mut out = String::with_capacity(words as usize * 6);
    for _ in 0..words {
        // The smaller of two draws: small word numbers come more often.
        let id = (next() % 4096).min(next() % 4096);
        out.push_str(SYLLABLES[(id % 16) as usize]);
        out.push_str(SYLLABLES[(id / 16 % 16) as usize]);
        if id >= 256 {
            out.push_str(SYLLABLES[(id / 256) as usize]);
        }
        out.push(' ');
    }
    out
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // First line: on a node, this program runs as a worker and serves the
    // jobs above; here it returns at once.
    ppclient::init();
    let nodes: Vec<String> = std::env::args().skip(1).collect();
    let server = match nodes.is_empty() {
        true => Server::builder().build()?, // the local pool
        false => Server::builder().ncpus(0).nodes(nodes).build()?,
    };
    let keep = || Options::new().keep();
    // Map: one kept table per chunk.
    let mut level: Vec<JobHandle<Counts>> = (0..CHUNKS)
        .map(|seed| server.submit_with(count_words, (seed, WORDS), keep()))
        .collect();
    // Reduce: pairs of kept tables merged, up to one.
    while level.len() > 1 {
        let mut next = Vec::with_capacity(level.len().div_ceil(2));
        let mut tables = level.into_iter();
        while let Some(a) = tables.next() {
            match tables.next() {
                Some(b) => {
                    let args = (a.keep()?, b.keep()?);
                    next.push(server.submit_with(merge, args, keep()));
                }
                None => next.push(a),
            }
        }
        level = next;
    }
    let Some(last) = level.pop() else {
        return Err("no chunks".into());
    };
    let counts = last.wait()?; // the one table that comes back
    let total: u64 = counts.values().sum();
    let mut top: Vec<(&String, &u64)> = counts.iter().collect();
    top.sort_by(|x, y| y.1.cmp(x.1).then(x.0.cmp(y.0)));
    println!("words: {total}, distinct: {}", counts.len());
    for (word, n) in top.iter().take(5) {
        println!("{word} {n}");
    }
    let stats = server.stats();
    let chained: u64 = stats.nodes.iter().map(|n| n.chained).sum();
    let moved: u64 = stats.nodes.iter().map(|n| n.transfers).sum();
    eprintln!("merges started where their inputs lay: {chained}");
    eprintln!("tables moved node to node: {moved}");
    Ok(())
}
