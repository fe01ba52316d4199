//! A client `main` written as the README's examples are
//! (`Result<(), Box<dyn Error>>` and `?`), failing on purpose, so that a
//! test reads what a user sees on stderr: `pp-main-error key` (a node named
//! without a key), `pp-main-error job` (a job that fails).

use std::error::Error;

fn main() -> Result<(), Box<dyn Error>> {
    match std::env::args().nth(1).as_deref() {
        Some("key") => {
            let _server = ppclient::Server::builder().nodes(["127.0.0.1:9"]).build()?;
        }
        Some("job") => {
            let server = ppclient::Server::builder().ncpus(1).build()?;
            let n = server
                .submit(jobs::fail, ("the disk is full".into(),))
                .wait()?;
            println!("{n}");
        }
        _ => return Err("usage: pp-main-error key|job".into()),
    }
    Ok(())
}
