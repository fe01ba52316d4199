//! The live dashboard during a run: `/api/status`, the event stream, and the
//! page as headless Chromium renders it, over the local pool and two
//! loopback nodes. Jobs wait on a gate the test opens step by step, so every
//! check waits for an event (a count reached), never for time.

use ppclient::{Options, Server, Shared};
use ppcore::Registry;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// A generated key, shared by the nodes and clients of this test process.
static SECRET: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| ppcore::Key::generate().expect("randomness").to_text());

/// How many gated jobs of each test may finish; signalled when it grows.
static RELEASED: Mutex<[u64; 4]> = Mutex::new([0; 4]);
static OPENED: Condvar = Condvar::new();

ppcore::job! {
    /// Waits (at most 60 s) until job `k` of gate `gate` may finish, then
    /// works 20 ms so that the task stream has something to draw.
    fn gated(gate: usize, k: u64) -> u64 {
        let released = RELEASED.lock().unwrap_or_else(|e| e.into_inner());
        let shut = |r: &mut [u64; 4]| r.get(gate).is_some_and(|&upto| upto <= k);
        drop(OPENED.wait_timeout_while(released, Duration::from_secs(60), shut));
        std::thread::sleep(Duration::from_millis(20));
        k
    }
}

ppclient::job! {
    /// A kept result, plus one.
    fn plus_one(x: Shared<u64>) -> u64 { *x + 1 }
}

fn release(gate: usize, upto: u64) {
    RELEASED.lock().unwrap_or_else(|e| e.into_inner())[gate] = upto;
    OPENED.notify_all();
}

/// Waits until `f` holds, at most 60 s; panics with `what` otherwise.
fn eventually(what: &str, f: impl FnMut() -> bool) {
    assert!(
        pptest::eventually(Duration::from_secs(60), f),
        "timed out waiting for {what}"
    );
}

/// Two loopback nodes of one worker each.
fn nodes() -> Vec<ppserver::Running> {
    (0..2)
        .map(|_| {
            let config = ppserver::Config {
                port: 0,
                workers: 1,
                keys: Some(ppcore::KeySet::parse(&SECRET).expect("a key")),
                ..Default::default()
            };
            ppserver::start(config, Registry::linked().expect("registry")).expect("node starts")
        })
        .collect()
}

fn server(nodes: &[ppserver::Running]) -> Server {
    let server = Server::builder()
        .ncpus(1)
        .secret(&*SECRET)
        .nodes(nodes.iter().map(|n| n.local_addr().to_string()))
        .dashboard("127.0.0.1:0")
        // Pings often enough that a round trip is soon measured.
        .heartbeat(Duration::from_millis(200))
        .build()
        .expect("builds");
    assert_eq!(server.active_nodes().len(), 2, "{:?}", server.nodes());
    server
}

/// One request on loopback: (status line, head, body).
fn request(addr: SocketAddr, method: &str, path: &str, host: &str) -> (String, String, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connects");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    )
    .unwrap();
    // Read the head, then the body by its length, or to the end.
    let mut reader = BufReader::new(s);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        let n = reader.read_line(&mut line).expect("reads the head");
        if n == 0 || line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    let length = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse::<usize>().ok())?
    });
    let mut body = Vec::new();
    match length {
        Some(n) => {
            body.resize(n, 0);
            reader.read_exact(&mut body).expect("reads the body");
        }
        None => {
            reader.read_to_end(&mut body).expect("reads the body");
        }
    }
    let body = String::from_utf8_lossy(&body);
    let status = head.lines().next().unwrap_or_default().to_owned();
    (status, head, body.into_owned())
}

fn status_json(addr: SocketAddr) -> serde_json::Value {
    let (status, head, body) = request(addr, "GET", "/api/status", &addr.to_string());
    assert!(status.contains(" 200 "), "{status}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{head}"
    );
    serde_json::from_str(&body).expect("JSON")
}

fn group<'a>(s: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    s["groups"]
        .as_array()
        .and_then(|g| g.iter().find(|g| g["name"] == name))
        .unwrap_or_else(|| panic!("no group {name} in {s}"))
}

fn submit_gated(server: &Server, gate: usize, n: u64) -> Vec<ppclient::JobHandle<u64>> {
    (0..n)
        .map(|k| server.submit_with(gated, (gate, k), Options::new().group("watch")))
        .collect()
}

#[test]
fn api_status_and_events_follow_a_run() {
    let nodes = nodes();
    let server = server(&nodes);
    let addr = server.dashboard_addr().expect("dashboard address");
    assert!(addr.ip().is_loopback());
    let host = addr.to_string();

    // The page and its assets come from the process itself, locked down.
    let (status, head, body) = request(addr, "GET", "/", &host);
    assert!(status.contains(" 200 "), "{status}");
    assert!(
        head.contains("Content-Security-Policy: default-src 'none'"),
        "{head}"
    );
    assert!(body.contains("/dashboard.js") && body.contains("/dashboard.css"));
    for asset in ["/dashboard.js", "/dashboard.css"] {
        let (status, _, body) = request(addr, "GET", asset, &host);
        assert!(
            status.contains(" 200 ") && !body.is_empty(),
            "{asset}: {status}"
        );
    }
    let (status, _, _) = request(
        addr,
        "GET",
        "/api/status",
        &format!("localhost:{}", addr.port()),
    );
    assert!(
        status.contains(" 200 "),
        "localhost is this server: {status}"
    );
    // DNS rebinding: another name for our address is refused.
    let (status, _, body) = request(
        addr,
        "GET",
        "/api/status",
        &format!("evil.example:{}", addr.port()),
    );
    assert!(status.contains(" 421 "), "{status}");
    assert!(!body.contains("submitted"));
    let (status, _, _) = request(addr, "POST", "/api/status", &host);
    assert!(status.contains(" 405 "), "{status}");
    let (status, _, _) = request(addr, "GET", "/nothing", &host);
    assert!(status.contains(" 404 "), "{status}");

    let handles = submit_gated(&server, 0, 30);
    release(0, 10);
    eventually("10 jobs done", || server.stats().succeeded == 10);

    let s = status_json(addr);
    let names: Vec<&str> = s["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    let mut expected = vec!["local".to_owned()];
    expected.extend(nodes.iter().map(|n| n.local_addr().to_string()));
    assert_eq!(names, expected);
    for n in s["nodes"].as_array().unwrap() {
        assert_eq!(n["state"], "up", "{n}");
        assert_eq!(n["workers"], 1, "{n}");
    }
    let done: u64 = s["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["done"].as_u64().unwrap())
        .sum();
    assert_eq!(done, 10, "{s}");
    // Every slot takes the next gated job: the local worker runs one, each
    // node has at least one sent (a slot that just finished one may not
    // have taken the next yet).
    eventually("every place busy", || {
        status_json(addr)["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["busy"].as_u64() >= Some(1))
    });
    // Each node's traffic, and its round trip once a ping was answered.
    eventually("every node's round trip and bytes", || {
        status_json(addr)["nodes"].as_array().unwrap()[1..]
            .iter()
            .all(|n| {
                n["rtt_ms"].as_f64().is_some_and(|ms| ms > 0.0)
                    && n["bytes_in"].as_u64() > Some(0)
                    && n["bytes_out"].as_u64() > Some(0)
            })
    });
    assert_eq!(s["totals"]["submitted"], 30);
    assert_eq!(s["totals"]["succeeded"], 10);
    let watch = group(&s, "watch");
    assert_eq!(
        (watch["total"].as_u64(), watch["done"].as_u64()),
        (Some(30), Some(10))
    );
    assert!(watch["eta_s"].as_f64().is_some_and(|e| e > 0.0), "{watch}");
    assert_eq!(group(&s, "all jobs")["done"], 10);
    let tasks = s["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 10, "{s}");
    for t in tasks {
        assert_eq!(t["job"], "dashboard::gated");
        assert!(names.contains(&t["node"].as_str().unwrap()), "{t}");
        assert!(t["end_s"].as_f64() >= t["start_s"].as_f64());
    }

    // The event stream: everything first, then what is new, live.
    let mut events = TcpStream::connect(addr).unwrap();
    events
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    write!(
        events,
        "GET /events HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n\r\n"
    )
    .unwrap();
    let mut lines = BufReader::new(events).lines();
    let head = lines.next().unwrap().unwrap();
    assert!(head.contains(" 200 "), "{head}");
    let mut next_event = || -> serde_json::Value {
        for line in lines.by_ref() {
            let line = line.expect("the stream stays open");
            if let Some(data) = line.strip_prefix("data: ") {
                return serde_json::from_str(data).expect("an event is JSON");
            }
        }
        panic!("the stream ended");
    };
    let first = next_event();
    assert_eq!(first["full"], true);
    assert_eq!(first["tasks"].as_array().unwrap().len(), 10);
    release(0, 20);
    let mut new_tasks = 0;
    let mut seen = 0;
    for _ in 0..240 {
        let e = next_event();
        assert_eq!(e["full"], false);
        new_tasks += e["tasks"].as_array().unwrap().len();
        seen = group(&e, "watch")["done"].as_u64().unwrap();
        if seen == 20 && new_tasks == 10 {
            break;
        }
    }
    assert_eq!(
        (seen, new_tasks),
        (20, 10),
        "the stream shows the next 10 jobs, once each"
    );

    release(0, 30);
    for h in handles {
        h.wait().expect("a gated job");
    }
}

/// The browser: `CHROMIUM`, else `chromium` or `chromium-browser` on the PATH.
fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|d| [d.join("chromium"), d.join("chromium-browser")])
        .find(|p| p.is_file())
}

/// Headless Chromium, driven over the DevTools protocol: the page stays
/// open, so the test sees it update from the event stream, not a reload.
/// (`chromium --headless --dump-dom` prints the DOM at the load event, before
/// the first event arrives, and `--virtual-time-budget` never ends while an
/// event stream is open; the DevTools protocol reads the same rendered DOM,
/// and takes the screenshot, whenever the test asks.)
struct Browser {
    child: Child,
    socket: tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<TcpStream>>,
    next_id: u64,
    _profile: TempDir,
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Browser {
    fn launch(binary: &Path) -> Browser {
        let profile = std::env::temp_dir().join(format!("pp-dash-chromium-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&profile);
        std::fs::create_dir_all(&profile).unwrap();
        let mut child = Command::new(binary)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--hide-scrollbars",
                "--window-size=1360,1000",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromium starts");
        let port_file = profile.join("DevToolsActivePort");
        let port: u16 = pptest::eventually_some(Duration::from_secs(60), || {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("chromium exited at start: {status}");
            }
            std::fs::read_to_string(&port_file)
                .ok()
                .and_then(|t| t.lines().next().and_then(|l| l.trim().parse().ok()))
        })
        .expect("chromium never opened its DevTools port");
        let devtools = SocketAddr::from(([127, 0, 0, 1], port));
        let page_ws = pptest::eventually_some(Duration::from_secs(60), || {
            let (_, _, body) = request(devtools, "GET", "/json/list", &devtools.to_string());
            let targets: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            targets.as_array().and_then(|t| {
                t.iter()
                    .find(|t| t["type"] == "page")
                    .and_then(|t| t["webSocketDebuggerUrl"].as_str().map(str::to_owned))
            })
        });
        let url = page_ws.expect("a page target");
        let (socket, _) = tungstenite::connect(url.as_str()).expect("DevTools socket");
        if let tungstenite::stream::MaybeTlsStream::Plain(s) = socket.get_ref() {
            s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        }
        Browser {
            child,
            socket,
            next_id: 0,
            _profile: TempDir(profile),
        }
    }

    /// Sends one DevTools command and returns its result.
    fn call(&mut self, method: &str, params: serde_json::Value) -> serde_json::Value {
        self.next_id += 1;
        let id = self.next_id;
        let msg = serde_json::json!({"id": id, "method": method, "params": params});
        self.socket
            .send(tungstenite::Message::text(msg.to_string()))
            .expect("DevTools send");
        loop {
            let reply = self.socket.read().expect("DevTools reply");
            let Ok(text) = reply.to_text() else { continue };
            let v: serde_json::Value = serde_json::from_str(text).unwrap_or_default();
            if v["id"] == id {
                assert!(v.get("error").is_none(), "{method}: {v}");
                return v["result"].clone();
            }
        }
    }

    /// The rendered DOM, as `--dump-dom` prints it.
    fn dom(&mut self) -> String {
        let r = self.call(
            "Runtime.evaluate",
            serde_json::json!({"expression": "document.documentElement.outerHTML", "returnByValue": true}),
        );
        r["result"]["value"].as_str().unwrap_or_default().to_owned()
    }

    fn eval_u64(&mut self, expression: &str) -> u64 {
        let r = self.call(
            "Runtime.evaluate",
            serde_json::json!({"expression": expression, "returnByValue": true}),
        );
        r["result"]["value"].as_u64().unwrap_or(u64::MAX)
    }

    fn screenshot(&mut self) -> Vec<u8> {
        use base64::Engine;
        let r = self.call(
            "Page.captureScreenshot",
            serde_json::json!({"format": "png", "captureBeyondViewport": true}),
        );
        base64::engine::general_purpose::STANDARD
            .decode(r["data"].as_str().unwrap_or_default())
            .expect("base64 PNG")
    }
}

/// Waits (at most 60 s) until the page's DOM satisfies `f`; returns that DOM.
fn dom_until(browser: &mut Browser, what: &str, f: impl Fn(&str) -> bool) -> String {
    let mut last = String::new();
    let dom = pptest::eventually_some(Duration::from_secs(60), || {
        last = browser.dom();
        f(&last).then(|| last.clone())
    });
    dom.unwrap_or_else(|| panic!("the page never showed {what}:\n{last}"))
}

/// The `watch` group's progress bar as rendered: `aria-valuenow` of the bar
/// in the row for that group.
fn watch_bar(dom: &str) -> Option<u64> {
    let row = &dom[dom.find("data-group=\"watch\"")?..];
    let row = &row[..row.find("</div></div>").unwrap_or(row.len())];
    let at = row.find("aria-valuenow=\"")? + "aria-valuenow=\"".len();
    row[at..].split('"').next()?.parse().ok()
}

#[test]
fn chromium_shows_every_node_and_the_progress_bar_moving() {
    let Some(binary) = chromium() else {
        let ci = std::env::var("CI").is_ok_and(|v| v == "true");
        assert!(
            !ci,
            "CI=true but no chromium on the PATH: apt-get install chromium"
        );
        eprintln!("skipped: no chromium on the PATH (apt-get install chromium)");
        return;
    };
    let nodes = nodes();
    let server = server(&nodes);
    let addr = server.dashboard_addr().expect("dashboard address");
    let hostile = "<img src=x onerror=alert(1)>";
    let failed = server.submit(jobs::fail, (hostile.to_owned(),)).wait();
    assert!(failed.is_err());
    let echoes: Vec<_> = (0..40)
        .map(|i| server.submit(jobs::echo_u64, (i,)))
        .collect();
    for e in echoes {
        e.wait().expect("echo");
    }
    let handles = submit_gated(&server, 1, 60);
    release(1, 9);
    eventually("9 gated jobs done", || server.stats().succeeded == 49);

    let mut browser = Browser::launch(&binary);
    browser.call("Page.enable", serde_json::json!({}));
    browser.call(
        "Page.navigate",
        serde_json::json!({"url": format!("http://{addr}/")}),
    );
    let names: Vec<String> = std::iter::once("local".to_owned())
        .chain(nodes.iter().map(|n| n.local_addr().to_string()))
        .collect();
    let dom = dom_until(&mut browser, "every node and the bar at 9", |dom| {
        names
            .iter()
            .all(|n| dom.contains(&format!("data-node=\"{n}\"")))
            && watch_bar(dom) == Some(9)
    });
    assert!(dom.contains("class=\"live\""), "the event stream is open");
    // The job's hostile message is shown as text, not markup.
    assert!(dom.contains("&lt;img src=x onerror=alert(1)&gt;"), "{dom}");
    assert_eq!(
        browser.eval_u64("document.querySelectorAll('main img').length"),
        0
    );

    // More jobs finish; the same page (no reload) moves its bar.
    release(1, 42);
    eventually("42 gated jobs done", || server.stats().succeeded == 82);
    let dom = dom_until(&mut browser, "the bar at 42", |dom| {
        watch_bar(dom) == Some(42)
    });
    for n in &names {
        assert!(dom.contains(&format!("data-node=\"{n}\"")), "{n} shown");
    }
    let png = browser.screenshot();
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    std::fs::write(&out, &png).expect("screenshot saved");
    if let Some(path) = std::env::var_os("PP_DASHBOARD_SCREENSHOT") {
        std::fs::write(path, &png).expect("screenshot copied");
    }
    eprintln!("screenshot: {}", out.display());

    release(1, 60);
    for h in handles {
        h.wait().expect("a gated job");
    }
}

#[test]
fn a_taken_dashboard_port_fails_the_build_with_the_reason() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let err = Server::builder()
        .ncpus(1)
        .dashboard(addr.to_string())
        .build()
        .expect_err("the port is taken");
    let text = err.to_string();
    assert!(
        text.contains("dashboard on") && text.contains(&addr.to_string()),
        "{text}"
    );
    let err = Server::builder()
        .ncpus(1)
        .dashboard("no such host name:1")
        .build()
        .expect_err("not an address");
    assert!(!err.to_string().is_empty());
}

#[test]
fn a_node_that_runs_none_of_the_queued_jobs_says_why_in_nodes_stats_and_the_dashboard() {
    let key = || Some(ppcore::KeySet::parse(&SECRET).expect("a key"));
    let config = || ppserver::Config {
        port: 0,
        workers: 1,
        keys: key(),
        ..Default::default()
    };
    let full = ppserver::start(config(), Registry::linked().expect("registry")).expect("starts");
    // A node with no jobs at all: up, and of no use to this run.
    let bare = ppserver::start(config(), Registry::new()).expect("starts");
    let bare_name = bare.local_addr().to_string();
    let server = Server::builder()
        .ncpus(0)
        .secret(&*SECRET)
        .nodes([full.local_addr().to_string(), bare_name.clone()])
        .dashboard("127.0.0.1:0")
        .build()
        .expect("builds");
    let addr = server.dashboard_addr().expect("dashboard address");
    // More jobs than the full node takes at once: some wait in the queue.
    let handles = submit_gated(&server, 2, 40);
    let reason = |server: &Server| {
        server
            .nodes()
            .into_iter()
            .find(|n| n.name == bare_name)
            .and_then(|n| n.reason)
    };
    eventually("the bare node's reason", || reason(&server).is_some());
    let why = reason(&server).unwrap_or_default();
    assert!(why.contains("runs none of the queued jobs"), "{why}");
    assert!(why.contains("gated"), "{why}");
    let stats = server.stats();
    let row = stats
        .nodes
        .iter()
        .find(|n| n.node == bare_name)
        .expect("row");
    assert!(
        row.down.as_deref().is_some_and(|d| d.contains("gated")),
        "{row:?}"
    );
    assert!(
        stats.to_string().contains("(runs none of the queued jobs"),
        "{stats}"
    );
    let dash = status_json(addr);
    let view = dash["nodes"]
        .as_array()
        .and_then(|n| n.iter().find(|n| n["name"] == bare_name.as_str()))
        .unwrap_or_else(|| panic!("no node view in {dash}"));
    assert!(
        view["reason"].as_str().is_some_and(|r| r.contains("gated")),
        "{view}"
    );
    // The queue empty, it is no longer a reason.
    release(2, 40);
    for h in handles {
        h.wait().expect("ran on the full node");
    }
    assert_eq!(reason(&server), None);
}

#[test]
fn held_jobs_kept_bytes_and_kept_counts_show_for_a_kept_run_on_the_local_pool() {
    let server = Server::builder()
        .ncpus(1)
        .dashboard("127.0.0.1:0")
        .build()
        .expect("builds");
    let addr = server.dashboard_addr().expect("dashboard address");
    let local = |s: &serde_json::Value| s["nodes"][0].clone();
    let fresh = status_json(addr);
    assert_eq!(fresh["totals"]["held"], 0, "{fresh}");
    assert_eq!(fresh["totals"]["kept_bytes"], 0, "{fresh}");
    for key in [
        "kept",
        "chained",
        "recomputed",
        "transfers",
        "transfer_bytes",
        "fetched",
    ] {
        assert_eq!(local(&fresh)[key], 0, "{key}: {fresh}");
    }

    // The input waits on its gate: its three dependents are held.
    let input = server.submit_with(gated, (3, 41), Options::new().keep());
    let dependents: Vec<_> = (0..3)
        .map(|_| server.submit(plus_one, (input.keep().expect("kept"),)))
        .collect();
    eventually("three jobs held", || {
        status_json(addr)["totals"]["held"] == 3
    });
    let s = status_json(addr);
    assert_eq!(s["totals"]["kept_bytes"], 0, "nothing made yet: {s}");
    assert_eq!(local(&s)["kept"], 0, "{s}");

    release(3, 42);
    for d in dependents {
        assert_eq!(d.wait().expect("a dependent"), 42);
    }
    let s = status_json(addr);
    assert_eq!(s["totals"]["held"], 0, "{s}");
    let bytes = s["totals"]["kept_bytes"].as_u64().expect("kept_bytes");
    assert!(bytes > 0, "the input's result is kept in the client: {s}");
    let view = local(&s);
    assert_eq!(view["done"], 4, "{view}");
    assert_eq!(view["chained"], 0, "chains are a node's: {view}");
    assert_eq!(view["recomputed"], 0, "nothing lost: {view}");
    let stats = server.stats();
    assert_eq!(
        view["kept"].as_u64(),
        Some(stats.nodes[0].kept),
        "as in Server::stats: {stats:?}"
    );

    // Its last handle dropped, the kept value is freed at the client's next
    // turn (here the next fetch): then only the new result, of the same
    // size, is kept.
    drop(input);
    let again = server.submit_with(gated, (3, 41), Options::new().keep());
    assert_eq!(again.wait().expect("the gate is open"), 41);
    let s = status_json(addr);
    assert_eq!(s["totals"]["kept_bytes"], bytes, "{s}");
}

#[test]
fn totals_show_jobs_run_and_taken_from_the_journal() {
    let dir = std::env::temp_dir().join(format!("pp-dash-journal-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("run.journal");
    for (ran, from_journal) in [(3, 0), (0, 3)] {
        let server = Server::builder()
            .ncpus(1)
            .journal(&path)
            .dashboard("127.0.0.1:0")
            .build()
            .unwrap();
        let addr = server.dashboard_addr().unwrap();
        for x in 0..3 {
            assert_eq!(server.submit(jobs::echo_u64, (x,)).wait().unwrap(), x);
        }
        let s = status_json(addr);
        assert_eq!(s["totals"]["ran"], ran, "{s}");
        assert_eq!(s["totals"]["from_journal"], from_journal, "{s}");
    }
}

#[test]
fn every_place_shows_what_it_offers_and_what_its_running_jobs_hold() {
    let mut offer = ppclient::Offer::new(0);
    offer.add_list("licence=3").unwrap();
    let config = ppserver::Config {
        port: 0,
        workers: 2,
        keys: Some(ppcore::KeySet::parse(&SECRET).expect("a key")),
        offer,
        ..Default::default()
    };
    let node = ppserver::start(config, Registry::linked().expect("registry")).expect("node starts");
    let server = Server::builder()
        .ncpus(2)
        .resources("gpu=2")
        .secret(&*SECRET)
        .nodes([node.local_addr().to_string()])
        .require_nodes(1)
        .dashboard("127.0.0.1:0")
        .build()
        .expect("builds");
    let addr = server.dashboard_addr().expect("dashboard address");
    let place = |s: &serde_json::Value, i: usize, key: &str| {
        s["nodes"][i][key].as_str().unwrap_or("").to_owned()
    };
    let s = status_json(addr);
    assert!(place(&s, 0, "offer").contains("gpu=2"), "{s}");
    assert!(place(&s, 1, "offer").contains("licence=3"), "{s}");
    assert_eq!(place(&s, 0, "in_use"), "cpus=0", "{s}");
    // Only the local pool has GPUs, only the node licences: each job runs
    // where its request fits, and holds it until its gate opens.
    let gpu = server.submit_with(gated, (2, 0), Options::new().resource("gpu", 1.0));
    let licences = server.submit_with(gated, (2, 0), Options::new().resource("licence", 2.0));
    eventually("both jobs holding what they asked for", || {
        let s = status_json(addr);
        place(&s, 0, "in_use") == "cpus=1 gpu=1" && place(&s, 1, "in_use") == "cpus=1 licence=2"
    });
    release(2, 1);
    assert_eq!(gpu.wait(), Ok(0));
    assert_eq!(licences.wait(), Ok(0));
    eventually("nothing held once they ended", || {
        let s = status_json(addr);
        place(&s, 0, "in_use") == "cpus=0" && place(&s, 1, "in_use") == "cpus=0"
    });
    drop(node);
}
