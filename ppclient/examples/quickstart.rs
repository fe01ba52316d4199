//! The README's example.

use ppclient::{Options, Server};

ppclient::job! {
    /// Partial sum of the Maclaurin series of 1/(1-x) over terms [start, end).
    pub fn partial(x: f64, start: u64, end: u64) -> f64 {
        (start..end).map(|n| x.powf(n as f64)).sum()
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = Server::builder().build()?; // ncpus auto-detected
    let jobs: Vec<_> = (0..64)
        .map(|k| server.submit(partial, (0.5, k * 100, (k + 1) * 100)))
        .collect();
    let total: f64 = jobs.into_iter().map(|j| j.wait()).sum::<Result<f64, _>>()?;
    let noted = Options::new()
        .group("g")
        .callback(|r| println!("done: {r:?}"));
    let job = server.submit_with(partial, (0.5, 0, 10), noted);
    server.wait_group("g")?;
    assert!(job.is_finished());
    println!("sum = {total}");
    server.print_stats();
    Ok(())
}
