//! Durable before visible (issue 30, part 3): a client killed (SIGKILL) at
//! random points of a run, then run again with the same journal, ends with
//! the exact answer; no job whose result the killed client had seen runs
//! again, and the journal opens again as the killed client left it.
//!
//! The client is this test binary itself, run again as a child process
//! (`child_entry`, which does nothing unless the parent set its variables).

use ppclient::{Registry, Server};
use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The jobs of one run.
const JOBS: u64 = 640;
/// Runs killed before the one that completes.
const KILLS: usize = 3;

ppclient::job! {
    /// `i * i`, noting in the file `log` that job `i` ran.
    pub fn logged_square(i: u64, log: String) -> u64 {
        let mut file = std::fs::OpenOptions::new().append(true).create(true).open(&log)
            .expect("the run log opens");
        // One write per line: lines of jobs on other threads never mix.
        file.write_all(format!("{i}\n").as_bytes()).expect("the run log takes a line");
        std::thread::sleep(std::time::Duration::from_millis(1));
        i * i
    }
}

/// The child: runs the 640 jobs with the journal, telling the parent each
/// result it sees (`seen i`), then the totals (`done sum ran from_journal`).
#[test]
fn child_entry() {
    let (Ok(journal), Ok(log)) = (
        std::env::var("PP_KILL_JOURNAL"),
        std::env::var("PP_KILL_LOG"),
    ) else {
        return; // not a child: the parent is `killed_clients_resume_exactly`
    };
    let mut registry = Registry::new();
    registry.add::<logged_square>().unwrap();
    let server = Server::builder()
        .ncpus(2)
        .registry(registry)
        .journal(&journal)
        .build()
        .unwrap();
    let handles: Vec<_> = (0..JOBS)
        .map(|i| server.submit(logged_square, (i, log.clone())))
        .collect();
    let mut out = std::io::stdout().lock();
    writeln!(out, "journal-kill: ready").unwrap();
    out.flush().unwrap();
    let mut sum = 0;
    for (index, result) in server.as_completed(handles) {
        sum += result.unwrap();
        writeln!(out, "journal-kill: seen {index}").unwrap();
        out.flush().unwrap();
    }
    let stats = server.stats();
    writeln!(
        out,
        "journal-kill: done {sum} {} {}",
        stats.ran, stats.from_journal
    )
    .unwrap();
    out.flush().unwrap();
}

/// A random number below `n`, without a random crate.
fn random_below(n: u64) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(n);
    h.finish() % n
}

/// The jobs the run log lists, from line `from` on.
fn runs(log: &Path, from: usize) -> Vec<u64> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .skip(from)
        .map(|l| l.parse().unwrap())
        .collect()
}

/// Runs the child; kills it after it has seen `kill_after` results (if
/// given). Returns the results it saw and its `done` line, if it got there.
fn child(journal: &Path, log: &Path, kill_after: Option<u64>) -> (Vec<u64>, Option<Vec<u64>>) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_entry", "--nocapture", "--test-threads=1"])
        .env("PP_KILL_JOURNAL", journal)
        .env("PP_KILL_LOG", log)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut seen = Vec::new();
    let mut done = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        let Some(said) = line.strip_prefix("journal-kill: ") else {
            continue;
        };
        if let Some(i) = said.strip_prefix("seen ") {
            seen.push(i.parse().unwrap());
        } else if let Some(totals) = said.strip_prefix("done ") {
            done = Some(totals.split(' ').map(|n| n.parse().unwrap()).collect());
        }
        if kill_after.is_some_and(|k| seen.len() as u64 >= k) {
            child.kill().unwrap(); // SIGKILL
            break;
        }
    }
    child.wait().unwrap();
    (seen, done)
}

#[test]
fn killed_clients_resume_exactly() {
    let dir: PathBuf = std::env::temp_dir().join(format!("pp-journal-kill-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (journal, log) = (dir.join("run.journal"), dir.join("runs.log"));
    let mut seen_before: HashSet<u64> = HashSet::new();
    let mut lines = 0;
    let check_runs = |lines: &mut usize, seen_before: &HashSet<u64>| {
        let ran = runs(&log, *lines);
        *lines += ran.len();
        for i in &ran {
            assert!(
                !seen_before.contains(i),
                "job {i} ran again after its result was seen"
            );
        }
    };
    for round in 0..KILLS {
        // The first kill comes before any result is seen, the others anywhere.
        let at = if round == 0 {
            0
        } else {
            random_below(JOBS - 1)
        };
        let (seen, done) = child(&journal, &log, Some(at));
        check_runs(&mut lines, &seen_before);
        if done.is_none() {
            assert!(seen.len() as u64 >= at);
        }
        seen_before.extend(seen);
    }
    // Opened again as the killed clients left it: no reset.
    let (seen, done) = child(&journal, &log, None);
    check_runs(&mut lines, &seen_before);
    let done = done.expect("the last run completes");
    let exact: u64 = (0..JOBS).map(|i| i * i).sum();
    assert_eq!(done[0], exact, "the sum is exact");
    assert_eq!(done[1] + done[2], JOBS, "ran + from_journal");
    assert!(
        done[2] >= seen_before.len() as u64,
        "every result seen was recorded"
    );
    assert_eq!(seen.len() as u64, JOBS);
    // And once more: everything from the journal.
    let (_, done) = child(&journal, &log, None);
    check_runs(&mut lines, &(0..JOBS).collect());
    assert_eq!(done.expect("completes")[1..], [0, JOBS]);
}
