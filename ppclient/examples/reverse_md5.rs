//! pp's `reverse_md5.py`: find the number whose MD5 hash is given, by
//! splitting the range over jobs, and stop at the first hit: the jobs not
//! started yet are cancelled.
//!
//! ```sh
//! cargo run --release -p ppclient --example reverse_md5 -- 1829182
//! ```

use md5::{Digest, Md5};
use std::error::Error;

ppclient::job! {
    /// The number in `[start, end)` whose decimal text hashes to `hash`.
    pub fn md5_search(hash: String, start: u64, end: u64) -> Option<u64> {
        (start..end).find(|n| hex(&Md5::digest(n.to_string())) == hash)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn main() -> Result<(), Box<dyn Error>> {
    ppclient::init();
    let secret: u64 = std::env::args()
        .nth(1)
        .map_or(Ok(1_829_182), |a| a.parse())?;
    let hash = hex(&Md5::digest(secret.to_string()));
    let server = ppclient::Server::builder().build()?;
    println!(
        "looking for the number whose MD5 is {hash} with {} workers",
        server.workers()
    );
    let (parts, step) = (128, 100_000);
    let handles: Vec<_> = (0..parts)
        .map(|i| {
            let options = ppclient::Options::default().group("md5");
            server.submit_with(
                md5_search,
                (hash.clone(), i * step, (i + 1) * step),
                options,
            )
        })
        .collect();
    for (_, found) in server.as_completed(handles) {
        if let Some(n) = found? {
            let cancelled = server.cancel_group("md5");
            println!("reverse md5 of {hash} is {n}; {cancelled} jobs left unrun");
            return Ok(());
        }
    }
    println!("no number below {} hashes to {hash}", parts * step);
    Ok(())
}
