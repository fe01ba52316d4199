//! The journal (`Builder::journal`, issue 30): results recorded and given
//! back at `submit` by the next run, and journals that cannot be used.

use ppclient::{BuildError, ErrorKind, JournalError, Options, Registry, Server};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;

static RUNS: AtomicU64 = AtomicU64::new(0);

/// `cargo test` runs this file's tests on threads of one process, and
/// `RUNS` counts them all: each test runs alone.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

ppclient::job! {
    /// Doubles `x`, counting its runs in this process.
    pub fn counted_double(x: u64) -> u64 {
        RUNS.fetch_add(1, Ordering::SeqCst);
        x * 2
    }
}

ppclient::job! {
    /// Fails for odd `x`.
    pub fn even_only(x: u64) -> Result<u64, String> {
        if x % 2 == 1 { Err(format!("{x} is odd")) } else { Ok(x) }
    }
}

ppclient::job! {
    /// A job of "another program".
    pub fn other_job(x: u64) -> u64 { x + 1 }
}

/// A fresh directory for one test's journal.
fn journal_path(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pp-journal-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("run.journal")
}

fn registry() -> Registry {
    let mut r = Registry::new();
    r.add::<counted_double>().unwrap();
    r.add::<even_only>().unwrap();
    r
}

fn server(path: &PathBuf) -> Result<Server, BuildError> {
    Server::builder()
        .ncpus(2)
        .registry(registry())
        .journal(path)
        .build()
}

/// Runs jobs 0..n of `even_only` and 0..n of `counted_double` (twice each
/// with the same arguments, so occurrences count) and returns their results.
fn run(path: &PathBuf, n: u64) -> (Vec<Result<u64, ErrorKind>>, ppclient::Stats) {
    let server = server(path).unwrap();
    let mut handles = Vec::new();
    for x in 0..n {
        handles.push(server.submit(even_only, (x,)));
        handles.push(server.submit(counted_double, (x,)));
        handles.push(server.submit(counted_double, (x,)));
    }
    let results = handles
        .into_iter()
        .map(|h| h.wait().map_err(|e| e.kind))
        .collect();
    let stats = server.stats();
    (results, stats)
}

#[test]
fn a_second_run_gets_every_result_from_the_journal_without_running() {
    let _serial = serial();
    let path = journal_path("replay");
    let before = RUNS.load(Ordering::SeqCst);
    let (first, stats) = run(&path, 20);
    assert_eq!((stats.ran, stats.from_journal), (60, 0));
    assert_eq!(RUNS.load(Ordering::SeqCst) - before, 40);
    let (second, stats) = run(&path, 20);
    assert_eq!(second, first);
    assert_eq!((stats.ran, stats.from_journal), (0, 60));
    assert_eq!(
        RUNS.load(Ordering::SeqCst) - before,
        40,
        "nothing ran again"
    );
    assert_eq!(
        first[3],
        Err(ErrorKind::Failed),
        "the job's own error is recorded"
    );
    // More jobs than recorded: only the new ones run.
    let (third, stats) = run(&path, 25);
    assert_eq!(&third[..60], &first[..]);
    assert_eq!((stats.ran, stats.from_journal), (15, 60));
}

#[test]
fn a_recorded_jobs_callback_runs_again() {
    let _serial = serial();
    let path = journal_path("callback");
    for round in 0..2 {
        let server = server(&path).unwrap();
        let (tx, rx) = mpsc::channel();
        let options = Options::new().callback(move |r: &Result<u64, _>| {
            tx.send(r.clone()).unwrap();
        });
        let handle = server.submit_with(counted_double, (21,), options);
        assert_eq!(rx.recv().unwrap(), Ok(42), "round {round}");
        assert_eq!(handle.wait().unwrap(), 42);
        assert_eq!(server.stats().from_journal, round);
    }
}

#[test]
fn journal_keys_name_jobs_whatever_their_order() {
    let _serial = serial();
    let path = journal_path("keys");
    let submit = |order: &[u64]| {
        let server = server(&path).unwrap();
        let handles: Vec<_> = order
            .iter()
            .map(|&x| {
                let key = Options::new().journal_key(format!("item-{x}"));
                (x, server.submit_with(counted_double, (x,), key))
            })
            .collect();
        for (x, h) in handles {
            assert_eq!(h.wait().unwrap(), x * 2);
        }
        server.stats()
    };
    assert_eq!(submit(&[1, 2, 3]).from_journal, 0);
    let again = submit(&[3, 1, 2, 4]);
    assert_eq!((again.ran, again.from_journal), (1, 3));
}

#[test]
fn a_journal_of_another_program_is_refused_naming_its_jobs() {
    let _serial = serial();
    let path = journal_path("other");
    {
        let mut r = Registry::new();
        r.add::<other_job>().unwrap();
        let s = Server::builder()
            .ncpus(1)
            .registry(r)
            .journal(&path)
            .build()
            .unwrap();
        assert_eq!(s.submit(other_job, (1,)).wait().unwrap(), 2);
    }
    let err = server(&path).unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, BuildError::Journal(JournalError::OtherProgram { .. })),
        "{text}"
    );
    assert!(
        text.contains("other_job") && text.contains(&path.display().to_string()),
        "{text}"
    );
    assert!(text.contains("--journal-reset"), "{text}");
    reset_starts_fresh(&path);
}

/// A journal `build` refused starts fresh with `journal_reset`.
fn reset_starts_fresh(path: &PathBuf) {
    let server = Server::builder()
        .ncpus(1)
        .registry(registry())
        .journal_reset(path)
        .build()
        .unwrap();
    assert_eq!(server.submit(counted_double, (5,)).wait().unwrap(), 10);
    assert_eq!(server.stats().ran, 1);
    drop(server);
    let again = server_with_stats(path);
    assert_eq!(again.from_journal, 1);
}

fn server_with_stats(path: &PathBuf) -> ppclient::Stats {
    let server = server(path).unwrap();
    assert_eq!(server.submit(counted_double, (5,)).wait().unwrap(), 10);
    server.stats()
}

/// Asserts that `build` refuses the journal at `path` as unreadable,
/// naming the file and the way out.
fn refused_as_unreadable(path: &PathBuf) {
    let err = server(path).unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, BuildError::Journal(JournalError::Unreadable { .. })),
        "{text}"
    );
    assert!(text.contains(&path.display().to_string()), "{text}");
    assert!(text.contains("--journal-reset"), "{text}");
}

#[test]
fn a_truncated_journal_is_refused_and_can_be_reset() {
    let _serial = serial();
    let path = journal_path("truncated");
    run(&path, 50);
    let len = std::fs::metadata(&path).unwrap().len();
    for cut in [len / 2, 100, 0] {
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        file.set_len(cut).unwrap();
        drop(file);
        if cut == 0 {
            // An empty file is a new journal, as a missing one.
            assert_eq!(server_with_stats(&path).from_journal, 0);
        } else {
            refused_as_unreadable(&path);
        }
    }
    reset_starts_fresh(&path);
}

#[test]
fn a_corrupt_record_is_refused_never_read_as_a_result() {
    let _serial = serial();
    let path = journal_path("corrupt");
    run(&path, 50);
    let mut bytes = std::fs::read(&path).unwrap();
    // Damage the bytes of one recorded error message ("7 is odd"), in
    // every copy of its page the file holds (redb writes pages anew).
    let mut found = 0;
    while let Some(at) = bytes.windows(8).position(|w| w == b"7 is odd") {
        bytes[at] = b'9';
        found += 1;
    }
    assert!(found > 0, "the record is in the file");
    std::fs::write(&path, &bytes).unwrap();
    refused_as_unreadable(&path);
    reset_starts_fresh(&path);
}

#[test]
fn a_file_that_is_not_a_journal_is_refused() {
    let _serial = serial();
    let path = journal_path("text");
    std::fs::write(&path, "these are notes, not a journal\n".repeat(200)).unwrap();
    refused_as_unreadable(&path);
    reset_starts_fresh(&path);
}

#[test]
fn a_journal_of_a_newer_version_is_refused() {
    let _serial = serial();
    let path = journal_path("newer");
    run(&path, 2);
    // The format version, as docs/JOURNAL.md describes the file.
    {
        let db = redb::Database::create(&path).unwrap();
        let meta: redb::TableDefinition<&str, u64> = redb::TableDefinition::new("meta");
        let txn = db.begin_write().unwrap();
        txn.open_table(meta).unwrap().insert("format", 2).unwrap();
        txn.commit().unwrap();
    }
    let err = server(&path).unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(
            err,
            BuildError::Journal(JournalError::Newer { found: 2, .. })
        ),
        "{text}"
    );
    assert!(
        text.contains("newer version") && text.contains("--journal-reset"),
        "{text}"
    );
    reset_starts_fresh(&path);
}

#[test]
fn a_journal_open_in_another_server_is_refused() {
    let _serial = serial();
    let path = journal_path("in-use");
    let first = server(&path).unwrap();
    let err = server(&path).unwrap_err();
    assert!(
        matches!(err, BuildError::Journal(JournalError::InUse { .. })),
        "{err}"
    );
    drop(first);
    assert!(server(&path).is_ok());
}
