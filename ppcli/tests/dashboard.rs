//! `ppclient run ... --dashboard`: the run serves its dashboard and says where.

use std::process::Command;

#[test]
fn run_with_dashboard_prints_its_address_and_finishes() {
    let out = Command::new(env!("CARGO_BIN_EXE_ppclient"))
        .args([
            "run",
            "maclaurin",
            "--ncpus",
            "1",
            "--terms",
            "100000",
            "--tasks",
            "4",
            "--dashboard",
            "127.0.0.1:0",
        ])
        .env_remove("PP_SECRET")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let line = err
        .lines()
        .find(|l| l.starts_with("dashboard: http://127.0.0.1:"))
        .unwrap_or_else(|| panic!("no dashboard line in {err:?}"));
    let port: u16 = line
        .trim_start_matches("dashboard: http://127.0.0.1:")
        .trim_end_matches('/')
        .parse()
        .unwrap();
    assert_ne!(port, 0, "the port picked is shown");
    assert!(String::from_utf8_lossy(&out.stdout).contains("sum"));
}

#[test]
fn a_dashboard_address_that_cannot_be_bound_is_one_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_ppclient"))
        .args(["run", "maclaurin", "--ncpus", "1", "--dashboard", &addr])
        .env_remove("PP_SECRET")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("ppclient: dashboard on") && err.contains(&addr),
        "{err}"
    );
}
