//! A client program with jobs of its own, for the tests of shipping a
//! program to stock nodes (issue 13). `pp-ship run HOST:PORT N` sums
//! `ship_triple` over 0..N on the node; `pp-ship crash HOST:PORT` runs a job
//! that aborts its worker, then another; `pp-ship twice HOST:PORT` runs one
//! job, waits for a line on stdin, runs another; `pp-ship mixed HOST:PORT`
//! runs 200 jobs with one that aborts among them; with no arguments it runs
//! one job locally; `pp-ship spread A,B,...` runs short jobs in rounds until
//! every node ran some or says why not (150 rounds at most), then prints how many nodes it
//! used, each node's reason for being unused, and the stats table.
//! `pp-ship kept HOST:PORT N` chains N kept results of its own jobs on the
//! node and sums pairs of kept parts there, printing both answers and the
//! node's kept and chained counts.
//! `PP_SHIP_NO_INIT` set: the program "forgets"
//! `ppclient::init()`.

use ppclient::{Server, Shared};
use std::io::BufRead;
use std::process::ExitCode;

ppclient::job! {
    /// Triples a number: a job no node has built in.
    pub fn ship_triple(x: u64) -> u64 { 3 * x }
}

ppclient::job! {
    /// Aborts the process that runs it.
    pub fn ship_abort() -> u64 { std::process::abort() }
}

ppclient::job! {
    /// `testjobs::hold_with_child`, as this program's own job.
    pub fn ship_hold(path: String, secs: u64) -> u32 {
        testjobs::hold_with_child::call(path, secs)
    }
}

ppclient::job! {
    /// Sums `table[i * 100..(i + 1) * 100]`; says which process ran it and
    /// where the decoded table lives there.
    pub fn ship_shared_sum(table: Shared<Vec<u64>>, i: u64) -> (u64, u32, u64) {
        let part = &table[i as usize * 100..(i as usize + 1) * 100];
        let at = std::sync::Arc::as_ptr(table.value()) as u64;
        (part.iter().sum(), std::process::id(), at)
    }
}

ppclient::job! {
    /// Sleeps `ms` milliseconds: a job long enough for several nodes to
    /// take part.
    pub fn ship_nap(ms: u64) -> u64 {
        std::thread::sleep(std::time::Duration::from_millis(ms));
        ms
    }
}

ppclient::job! {
    /// A kept result of this program plus `k`.
    pub fn ship_add_kept(x: Shared<u64>, k: u64) -> u64 { *x + k }
}

ppclient::job! {
    /// The sum of two kept results of this program.
    pub fn ship_pair(a: Shared<u64>, b: Shared<u64>) -> u64 { *a + *b }
}

fn main() -> ExitCode {
    if std::env::var_os("PP_SHIP_NO_INIT").is_none() {
        ppclient::init();
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let done = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        [] => local(),
        ["run", addr, n] => run(addr, n),
        ["crash", addr] => crash(addr),
        ["twice", addr] => twice(addr),
        ["mixed", addr] => mixed(addr),
        ["hold", addr, path] => hold(addr, path),
        ["shared", addr, n] => shared(addr, n),
        ["kept", addr, n] => kept(addr, n),
        ["spread", addrs] => spread(addrs),
        _ => Err("usage: pp-ship [run HOST:PORT N | crash | twice | mixed HOST:PORT]".into()),
    };
    match done {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            println!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

type Res = Result<(), Box<dyn std::error::Error>>;

fn client(addr: &str) -> Result<Server, Box<dyn std::error::Error>> {
    let secret = std::env::var("PP_SECRET").unwrap_or_default();
    Ok(Server::builder()
        .ncpus(0)
        .secret(secret)
        .nodes([addr])
        .build()?)
}

fn local() -> Res {
    let server = Server::builder().ncpus(1).build()?;
    println!("local: {}", server.submit(ship_triple, (5,)).wait()?);
    Ok(())
}

fn run(addr: &str, n: &str) -> Res {
    let server = client(addr)?;
    let n: u64 = n.parse()?;
    let sum = server
        .map(ship_triple, (0..n).map(|x| (x,)))
        .try_fold(0, |acc, r| r.map(|x| acc + x))?;
    println!("sum {sum}");
    Ok(())
}

/// Runs `ship_hold` on the node and waits for it (to be killed meanwhile).
fn hold(addr: &str, path: &str) -> Res {
    let server = client(addr)?;
    let held = server.submit(ship_hold, (path.to_owned(), 300)).wait()?;
    println!("held {held}");
    Ok(())
}

/// Runs `n` jobs on one shared table of `n * 100` numbers: prints their
/// sum, and how many worker processes ran them and how many decoded tables
/// they used.
fn kept(addr: &str, n: &str) -> Res {
    let server = client(addr)?;
    let n: u64 = n.parse()?;
    let keep = ppclient::Options::new().keep();
    let mut last = server.submit_with(ship_triple, (1,), &keep);
    for k in 0..n {
        let next = server.submit_with(ship_add_kept, (last.keep()?, k), &keep);
        last = next;
    }
    let parts: Vec<_> = (0..4)
        .map(|i| server.submit_with(ship_triple, (i,), &keep))
        .collect();
    let left = server.submit_with(ship_pair, (parts[0].keep()?, parts[1].keep()?), &keep);
    let right = server.submit_with(ship_pair, (parts[2].keep()?, parts[3].keep()?), &keep);
    let total = server.submit(ship_pair, (left.keep()?, right.keep()?));
    let (chain, total) = (last.wait()?, total.wait()?);
    let node = &server.stats().nodes[1];
    println!(
        "chain {chain}; total {total}; kept {}; chained {}",
        node.kept, node.chained
    );
    Ok(())
}

fn shared(addr: &str, n: &str) -> Res {
    let server = client(addr)?;
    let n: u64 = n.parse()?;
    let table = server.share((0..n * 100).collect::<Vec<u64>>())?;
    let handles: Vec<_> = (0..n)
        .map(|i| server.submit(ship_shared_sum, (table.clone(), i)))
        .collect();
    let (mut sum, mut pids, mut values) = (
        0,
        std::collections::HashSet::new(),
        std::collections::HashSet::new(),
    );
    for h in handles {
        let (part, pid, at) = h.wait()?;
        sum += part;
        pids.insert(pid);
        values.insert((pid, at));
    }
    let sent: u64 = server.stats().nodes.iter().map(|n| n.shared_sent).sum();
    println!(
        "sum {sum}; processes {}; values {}; sent {sent}",
        pids.len(),
        values.len()
    );
    Ok(())
}

fn spread(addrs: &str) -> Res {
    let names: Vec<&str> = addrs.split(',').collect();
    let server = Server::builder()
        .ncpus(0)
        .secret(std::env::var("PP_SECRET").unwrap_or_default())
        .nodes(names.iter().copied())
        .build()?;
    // Every node used, or saying why not (a node still getting the program
    // ready says nothing yet: it may take part in a later round).
    let settled = |s: &ppclient::Stats| {
        s.nodes
            .iter()
            .skip(1)
            .all(|n| n.jobs > 0 || n.down.is_some())
    };
    for _ in 0..150 {
        let round: Vec<_> = (0..8).map(|_| server.submit(ship_nap, (20,))).collect();
        for h in round {
            h.wait()?;
        }
        if settled(&server.stats()) {
            break;
        }
    }
    let stats = server.stats();
    let used = stats.nodes.iter().skip(1).filter(|n| n.jobs > 0).count();
    println!("nodes used {used} of {}", names.len());
    for node in server.nodes() {
        if let Some(reason) = node.reason {
            println!("unused {}: {reason}", node.name);
        }
    }
    println!("{stats}");
    Ok(())
}

fn crash(addr: &str) -> Res {
    let server = client(addr)?;
    let crashed = server.submit(ship_abort, ()).wait().unwrap_err();
    let after = server.submit(ship_triple, (2,)).wait()?;
    println!("abort: {}; triple: {after}", crashed.kind);
    Ok(())
}

fn twice(addr: &str) -> Res {
    let server = client(addr)?;
    println!("first {}", server.submit(ship_triple, (1,)).wait()?);
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    println!("second {}", server.submit(ship_triple, (2,)).wait()?);
    Ok(())
}

fn mixed(addr: &str) -> Res {
    let server = client(addr)?;
    let before: Vec<_> = (0..100).map(|x| server.submit(ship_triple, (x,))).collect();
    let crashed = server.submit(ship_abort, ());
    let after: Vec<_> = (100..200)
        .map(|x| server.submit(ship_triple, (x,)))
        .collect();
    let mut sum = 0;
    for h in before.into_iter().chain(after) {
        sum += h.wait()?;
    }
    let kind = crashed.wait().unwrap_err().kind;
    println!("sum {sum}; abort: {kind}");
    Ok(())
}
