//! `ppclient secret new|fingerprint`, and discovery runs that a bad
//! discovered node cannot abort.

use std::net::{TcpListener, UdpSocket};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

// Links the built-in jobs into this test binary, so the node has them.
use jobs as _;

fn ppclient(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ppclient"))
        .args(args)
        .env_remove("PP_SECRET")
        .output()
        .unwrap()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ppcli-secret-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn secret_new_writes_a_private_key_once_and_prints_only_its_fingerprint() {
    let dir = scratch("new");
    let file = dir.join("cluster.key");
    let path = file.to_str().unwrap();
    let out = ppclient(&["secret", "new", path]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let written = std::fs::read_to_string(&file).unwrap();
    let key_line = written.lines().find(|l| l.starts_with("ppk1-")).unwrap();
    let keys = ppcore::KeySet::parse(&written).unwrap();
    let fingerprint = keys.primary().fingerprint();
    let said = text(&out.stdout);
    assert!(
        said.contains(&fingerprint) && !said.contains(key_line),
        "{said}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let again = ppclient(&["secret", "new", path]);
    assert!(!again.status.success());
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        written,
        "overwritten"
    );
    let shown = ppclient(&["secret", "fingerprint", path]);
    assert_eq!(text(&shown.stdout).trim(), fingerprint);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_password_file_is_refused_with_how_to_make_a_key_and_not_echoed() {
    let dir = scratch("password");
    let file = dir.join("secret.txt");
    std::fs::write(&file, "correct horse battery staple\n").unwrap();
    let out = ppclient(&["secret", "fingerprint", file.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("ppclient secret new FILE"), "{err}");
    assert!(err.contains("ppserver --gen-secret FILE"), "{err}");
    assert!(!err.contains("horse"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

static SECRET: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| ppcore::Key::generate().unwrap().to_text());

/// Answers discovery probes on loopback with the given TCP ports, for a
/// bounded number of probes and time.
fn fake_discovery(ports: Vec<u16>) -> std::net::SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    std::thread::spawn(move || {
        let until = Instant::now() + Duration::from_secs(60);
        let mut buf = [0u8; 64];
        for _ in 0..1000 {
            if Instant::now() > until {
                return;
            }
            if let Ok((_, from)) = socket.recv_from(&mut buf) {
                for &port in &ports {
                    let reply = ppcore::wire::discovery_reply(port);
                    let _ = socket.send_to(reply.as_bytes(), from);
                }
            }
        }
    });
    addr
}

/// A TCP "node" that refuses every handshake with a hostile reason.
fn hostile_node() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // Blocks in accept (no polling); answers at most 64 connections.
    std::thread::spawn(move || {
        for _ in 0..64 {
            if let Ok((mut stream, _)) = listener.accept() {
                let refusal = ppcore::secure::refusal_reason("evil\n\x1b[31mFORGED LINE");
                let frame = ppcore::Framer::new(4096)
                    .encode_handshake(&refusal)
                    .unwrap();
                let _ = std::io::Write::write_all(&mut stream, &frame);
            }
        }
    });
    port
}

#[test]
fn a_bad_discovered_node_is_skipped_not_fatal_and_its_words_are_escaped() {
    let config = ppserver::Config {
        port: 0,
        workers: 2,
        keys: Some(ppcore::KeySet::parse(&SECRET).unwrap()),
        ..Default::default()
    };
    let node = ppserver::start(config, ppcore::Registry::linked().unwrap()).unwrap();
    let via = fake_discovery(vec![hostile_node(), node.local_addr().port()]);
    let out = Command::new(env!("CARGO_BIN_EXE_ppclient"))
        .args(["run", "maclaurin", "--discover", "*", "--discover-via"])
        .arg(via.to_string())
        .args(["--ncpus", "0", "--terms", "100000", "--json"])
        .env("PP_SECRET", SECRET.as_str())
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["submitted"], 64, "{v}");
    assert!(err.contains("skipping discovered node"), "{err}");
    assert!(err.contains("evil\\n\\u{1b}[31m"), "{err}");
    assert!(!err.contains('\x1b') && !err.contains("\nFORGED"), "{err}");
}
