//! The `ppserver` command line: numbers a user can get wrong.

use std::process::Command;

#[test]
fn ppserver_refuses_absurd_times_and_worker_counts_with_usage_errors() {
    for args in [
        &["--grace", "18446744073709551615"][..],
        &["--handshake-timeout", "1e19"],
        &["--write-timeout=-5"],
        &["--heartbeat", "nan"],
        &["--idle-timeout", "99999999999"],
        &["--workers", "1000000000"],
        &["--workers", "0"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_ppserver"))
            .args(["--interface", "127.0.0.1", "--port", "0"])
            .args(args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("out of range"), "{args:?}: {err}");
    }
}
