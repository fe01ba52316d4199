//! `ppclient run maclaurin --journal PATH` (issue 30): a second run takes
//! every task from the journal, `--json` says how many ran and how many
//! came from it, and `--journal-reset` starts fresh.

use std::process::Command;

fn run(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ppclient"))
        .args([
            "run",
            "maclaurin",
            "--ncpus",
            "2",
            "--terms",
            "64000",
            "--tasks",
            "64",
            "--json",
        ])
        .args(args)
        .env_remove("PP_SECRET")
        .output()
        .unwrap()
}

fn json(out: &std::process::Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn a_second_run_takes_every_task_from_the_journal_and_reset_starts_fresh() {
    let dir = std::env::temp_dir().join(format!("ppcli-journal-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("maclaurin.journal");
    let path = path.to_str().unwrap();
    let first = json(&run(&["--journal", path]));
    assert_eq!(
        (first["ran"].as_u64(), first["from_journal"].as_u64()),
        (Some(64), Some(0))
    );
    let second = json(&run(&["--journal", path]));
    assert_eq!(
        (second["ran"].as_u64(), second["from_journal"].as_u64()),
        (Some(0), Some(64))
    );
    assert_eq!(second["sum"], first["sum"], "the same sum to the last bit");
    let fresh = json(&run(&["--journal", path, "--journal-reset"]));
    assert_eq!(
        (fresh["ran"].as_u64(), fresh["from_journal"].as_u64()),
        (Some(64), Some(0))
    );
    // Without a journal: every task ran, none from a journal.
    let none = json(&run(&[]));
    assert_eq!(
        (none["ran"].as_u64(), none["from_journal"].as_u64()),
        (Some(64), Some(0))
    );
}

#[test]
fn a_bad_journal_is_one_clear_line_naming_the_file_and_the_reset() {
    let dir = std::env::temp_dir().join(format!("ppcli-journal-bad-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("notes.txt");
    std::fs::write(&path, "not a journal\n".repeat(100)).unwrap();
    let path = path.to_str().unwrap();
    let out = run(&["--journal", path]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(path) && err.contains("--journal-reset"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    let fresh = json(&run(&["--journal", path, "--journal-reset"]));
    assert_eq!(fresh["ran"].as_u64(), Some(64));
}
