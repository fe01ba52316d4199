//! `ppserver --gen-secret FILE`: a new key, written privately, never twice.

use std::process::Command;

#[test]
fn gen_secret_writes_a_private_key_and_exits() {
    let dir = std::env::temp_dir().join(format!("ppserver-gen-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("node.key");
    let run = || {
        Command::new(env!("CARGO_BIN_EXE_ppserver"))
            .arg("--gen-secret")
            .arg(&file)
            .output()
            .unwrap()
    };
    let out = run();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let keys = ppcore::KeySet::read_file(&file).unwrap();
    let said = String::from_utf8(out.stdout).unwrap();
    assert!(said.contains(&keys.primary().fingerprint()), "{said}");
    assert!(!said.contains(&keys.primary().to_text()), "{said}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let again = run();
    assert!(!again.status.success());
    let err = String::from_utf8(again.stderr).unwrap();
    assert!(err.contains("node.key"), "{err}");
    assert_eq!(
        ppcore::KeySet::read_file(&file).unwrap(),
        keys,
        "overwritten"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
