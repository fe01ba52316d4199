//! What a user sees when a README-style `main` returns an error: the
//! error's message (`Debug` prints `Display`), not its fields.

use std::process::Command;

fn stderr_of(what: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_pp-main-error"))
        .arg(what)
        .env_remove(ppclient::SECRET_ENV)
        .output()
        .expect("runs");
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_missing_key_returned_from_main_prints_how_to_make_one() {
    let err = stderr_of("key");
    assert!(err.contains("no key given"), "{err}");
    assert!(err.contains("ppserver --gen-secret FILE"), "{err}");
    assert!(!err.contains("Missing"), "{err}");
}

#[test]
fn a_failed_job_returned_from_main_prints_its_message() {
    let err = stderr_of("job");
    assert!(err.contains("job failed on local"), "{err}");
    assert!(err.contains("the disk is full"), "{err}");
    assert!(!err.contains("JobError {"), "{err}");
}
