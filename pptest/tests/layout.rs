//! The workspace's shape, checked: no import circle between the files of a
//! crate or between its top-level modules, and no source file outside tests
//! over [`MAX_LINES`] lines.
//!
//! A file imports another when it names an item of the other by path, in a
//! `use` or in a qualified path (`crate::wire::Msg`, `super::ledger::Ledger`,
//! `child::Item`); `mod` declarations do not count. A path is charged to the
//! file of the longest module prefix it names, so a name re-exported by a
//! parent module is charged to the parent: import items where they are
//! defined and the graph is the true one.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The longest source file allowed outside tests.
const MAX_LINES: usize = 900;

/// The crates checked, by directory under the workspace root.
const CRATES: &[&str] = &[
    "ppcore",
    "ppclient",
    "ppserver",
    "ppslurm",
    "ppcli",
    "jobs",
    "testjobs",
    "pptest",
    "benchmarks",
    "examples/myjobs",
];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("pptest sits in the workspace")
        .to_path_buf()
}

/// One source file of a crate: its module path and what it names.
struct File {
    path: PathBuf,
    module: Vec<String>,
    children: BTreeSet<String>,
    text: String,
}

/// Comments and string literals blanked out (lengths kept), so paths in
/// docs and messages do not count.
fn code_only(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                    depth += 1;
                    i += 2;
                } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            out.push(' ');
        } else if b[i] == b'r'
            && matches!(b.get(i + 1), Some(b'"') | Some(b'#'))
            && !ident_byte(b, i)
        {
            // A raw string: r"..." or r#"..."#.
            let mut j = i + 1;
            let mut hashes = 0;
            while b.get(j) == Some(&b'#') {
                hashes += 1;
                j += 1;
            }
            if b.get(j) != Some(&b'"') {
                out.push('r');
                i += 1;
                continue;
            }
            j += 1;
            loop {
                if j >= b.len() {
                    break;
                }
                if b[j] == b'"' && (0..hashes).all(|h| b.get(j + 1 + h) == Some(&b'#')) {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            out.push_str("\"\"");
            i = j;
        } else if b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else if b[i] == b'\'' {
            // A char literal ('x', '\n', '\'') or a lifetime ('a).
            if b.get(i + 1) == Some(&b'\\') {
                let mut j = i + 2;
                while j < b.len() && b[j] != b'\'' {
                    j += 1;
                }
                i = j + 1;
                out.push_str("' '");
            } else if b.get(i + 2) == Some(&b'\'') {
                i += 3;
                out.push_str("' '");
            } else {
                out.push('\'');
                i += 1;
            }
        } else {
            let len = utf8_len(b[i]);
            out.push_str(&src[i..i + len]);
            i += len;
        }
    }
    out
}

fn utf8_len(first: u8) -> usize {
    match first {
        0x00..=0x7f => 1,
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        _ => 4,
    }
}

fn ident_byte(b: &[u8], i: usize) -> bool {
    i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_')
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// `mod name;` declarations (not inline modules) of a file.
fn declared_mods(code: &str) -> Vec<String> {
    let mut mods = Vec::new();
    let words: Vec<&str> = code
        .split(|c: char| !is_ident(c) && c != ';' && c != '{')
        .filter(|w| !w.is_empty())
        .collect();
    for pair in words.windows(2) {
        if pair[0] == "mod" {
            if let Some(name) = pair[1].strip_suffix(';') {
                mods.push(name.to_string());
            }
        }
    }
    mods
}

/// Every file of a crate, found from its roots by following `mod` lines.
fn crate_files(dir: &Path) -> Vec<Vec<File>> {
    let src = dir.join("src");
    let mut roots = Vec::new();
    for root in ["lib.rs", "main.rs"] {
        if src.join(root).exists() {
            roots.push(src.join(root));
        }
    }
    if let Ok(bins) = fs::read_dir(src.join("bin")) {
        for bin in bins.flatten() {
            let p = bin.path();
            if p.extension().is_some_and(|e| e == "rs") {
                roots.push(p);
            } else if p.join("main.rs").exists() {
                roots.push(p.join("main.rs"));
            }
        }
    }
    roots.sort();
    roots
        .into_iter()
        .map(|root| {
            let mut files = Vec::new();
            let base = root.parent().expect("a root has a directory").to_path_buf();
            walk(&root, &base, Vec::new(), &mut files);
            files
        })
        .collect()
}

fn walk(path: &Path, dir: &Path, module: Vec<String>, out: &mut Vec<File>) {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let code = code_only(&text);
    let children: BTreeSet<String> = declared_mods(&code).into_iter().collect();
    for child in &children {
        let (file, child_dir) = if dir.join(format!("{child}.rs")).exists() {
            (dir.join(format!("{child}.rs")), dir.join(child))
        } else if dir.join(child).join("mod.rs").exists() {
            (dir.join(child).join("mod.rs"), dir.join(child))
        } else {
            continue;
        };
        let mut m = module.clone();
        m.push(child.clone());
        walk(&file, &child_dir, m, out);
    }
    out.push(File {
        path: path.to_path_buf(),
        module,
        children,
        text: code,
    });
}

/// Inline modules (`mod name { .. }`) of a file: name and byte range.
fn inline_mods(code: &str) -> Vec<(String, usize, usize)> {
    let b = code.as_bytes();
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(at) = find_word(&code[from..], "mod") {
        let at = from + at;
        from = at + 3;
        let rest = &code[at + 3..];
        let name: String = rest
            .trim_start()
            .chars()
            .take_while(|c| is_ident(*c))
            .collect();
        let after = rest.trim_start()[name.len()..].trim_start();
        if name.is_empty() || !after.starts_with('{') {
            continue;
        }
        let open = code.len() - after.len();
        let mut depth = 0;
        let mut end = code.len();
        for (i, c) in b.iter().enumerate().skip(open) {
            match c {
                b'{' => depth += 1,
                b'}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = i;
                        break;
                    }
                }
                _ => {}
            }
        }
        out.push((name, open, end));
    }
    out
}

/// The paths a file names, each with the inline modules it sits in: each
/// `use` tree flattened, and every qualified path.
fn named_paths(file: &File) -> Vec<(Vec<String>, Vec<String>)> {
    let code = &file.text;
    let inline = inline_mods(code);
    let within = |at: usize| -> Vec<String> {
        inline
            .iter()
            .filter(|(_, a, b)| *a <= at && at <= *b)
            .map(|(n, _, _)| n.clone())
            .collect()
    };
    let mut paths = Vec::new();
    let mut blanked = code.clone().into_bytes();
    let mut from = 0;
    while let Some(at) = find_word(&code[from..], "use") {
        let at = from + at;
        let tail = &code[at + 3..];
        let end = tail.find(';').unwrap_or(tail.len());
        let tree = drop_renames(&tail[..end]);
        let mut flat = Vec::new();
        flatten_use(&tree, Vec::new(), &mut flat);
        let scope = within(at);
        paths.extend(flat.into_iter().map(|p| (scope.clone(), p)));
        for byte in &mut blanked[at..(at + 3 + end).min(code.len())] {
            *byte = b' ';
        }
        from = (at + 3 + end).min(code.len());
    }
    let rest = String::from_utf8(blanked).unwrap_or_default();
    let b = rest.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i] as char;
        if is_ident(c) && (i == 0 || !is_ident(b[i - 1] as char)) {
            let start = i;
            let mut j = i;
            loop {
                while j < b.len() && is_ident(b[j] as char) {
                    j += 1;
                }
                if rest[j..].starts_with("::") && rest[j + 2..].starts_with(is_ident) {
                    j += 2;
                } else {
                    break;
                }
            }
            let dollar = start > 0 && b[start - 1] == b'$';
            let after_colons = start >= 2 && &rest[start - 2..start] == "::";
            let segs: Vec<String> = rest[start..j].split("::").map(String::from).collect();
            if !dollar && !after_colons && segs.len() > 1 {
                paths.push((within(start), segs));
            }
            i = j.max(i + 1);
        } else {
            i += 1;
        }
    }
    paths
}

/// A use tree without `as name` renames and whitespace.
fn drop_renames(tree: &str) -> String {
    let mut out = String::new();
    let mut words = tree.split_whitespace().peekable();
    while let Some(w) = words.next() {
        if w == "as" {
            if let Some(name) = words.next() {
                out.extend(name.chars().skip_while(|c| is_ident(*c)));
            }
        } else {
            out.push_str(w);
        }
    }
    out
}

fn find_word(hay: &str, word: &str) -> Option<usize> {
    let b = hay.as_bytes();
    let mut from = 0;
    while let Some(at) = hay[from..].find(word) {
        let at = from + at;
        let before = at == 0 || !is_ident(b[at - 1] as char);
        let after = b.get(at + word.len()).is_none_or(|c| !is_ident(*c as char));
        if before && after {
            return Some(at);
        }
        from = at + word.len();
    }
    None
}

/// `a::{b, c::{d, e as f}, *}` into `a::b`, `a::c::d`, `a::c::e`, `a`.
fn flatten_use(tree: &str, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
    let tree = tree.trim_start_matches("::");
    if let Some(open) = tree.find('{') {
        let mut head = prefix.clone();
        head.extend(
            tree[..open]
                .split("::")
                .filter(|s| !s.is_empty())
                .map(String::from),
        );
        let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
        let mut depth = 0;
        let mut start = 0;
        for (i, c) in inner.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    flatten_use(&inner[start..i], head.clone(), out);
                    start = i + 1;
                }
                _ => {}
            }
        }
        flatten_use(&inner[start..], head, out);
    } else {
        let mut path = prefix;
        for seg in tree.split("::").filter(|s| !s.is_empty()) {
            if seg == "*" {
                break;
            }
            if seg == "self" && !path.is_empty() {
                continue;
            }
            path.push(seg.to_string());
        }
        if !path.is_empty() {
            out.push(path);
        }
    }
}

/// The module a path names, as an absolute module path, or `None` for
/// another crate.
fn resolve(file: &File, scope: &[String], path: &[String]) -> Option<Vec<String>> {
    let here: Vec<String> = file.module.iter().chain(scope).cloned().collect();
    let mut at: Vec<String>;
    let mut segs = path.iter().peekable();
    match segs.peek().map(|s| s.as_str()) {
        Some("crate") => {
            at = Vec::new();
            segs.next();
        }
        Some("self") => {
            at = here;
            segs.next();
        }
        Some("super") => {
            at = here;
            while segs.peek().map(|s| s.as_str()) == Some("super") {
                at.pop();
                segs.next();
            }
        }
        Some(first) if file.children.contains(first) => {
            at = file.module.clone();
        }
        _ => return None,
    }
    at.extend(segs.cloned());
    Some(at)
}

type Graph = BTreeMap<String, BTreeSet<String>>;

/// The file-level and top-level-module graphs of one crate root.
fn graphs(files: &[File], root: &Path) -> (Graph, Graph) {
    let by_module: BTreeMap<&[String], &File> =
        files.iter().map(|f| (f.module.as_slice(), f)).collect();
    let name = |f: &File| {
        f.path
            .strip_prefix(root)
            .unwrap_or(&f.path)
            .display()
            .to_string()
    };
    let top = |m: &[String]| m.first().cloned().unwrap_or_else(|| "(root)".into());
    // `#[macro_export]` macros sit at the crate root wherever they are
    // written: a path to one names no file.
    let macros: BTreeSet<String> = files
        .iter()
        .flat_map(|f| {
            f.text
                .split("macro_rules!")
                .skip(1)
                .map(|t| {
                    t.trim_start()
                        .chars()
                        .take_while(|c| is_ident(*c))
                        .collect::<String>()
                })
                .collect::<Vec<_>>()
        })
        .collect();
    let mut file_graph = Graph::new();
    let mut top_graph = Graph::new();
    for file in files {
        let from = name(file);
        file_graph.entry(from.clone()).or_default();
        for (scope, path) in named_paths(file) {
            if path.len() == 2 && path[0] == "crate" && macros.contains(&path[1]) {
                continue;
            }
            let Some(mut target) = resolve(file, &scope, &path) else {
                continue;
            };
            let to = loop {
                if let Some(f) = by_module.get(target.as_slice()) {
                    break Some(*f);
                }
                if target.pop().is_none() {
                    break None;
                }
            };
            let Some(to) = to else { continue };
            if std::ptr::eq(to, file) {
                continue;
            }
            if std::env::var_os("PP_LAYOUT_EDGES").is_some() {
                eprintln!("edge {from} -> {} ({})", name(to), path.join("::"));
            }
            file_graph.entry(from.clone()).or_default().insert(name(to));
            let (a, b) = (top(&file.module), top(&to.module));
            if a != b {
                top_graph.entry(a).or_default().insert(b);
            }
        }
    }
    (file_graph, top_graph)
}

/// Each circle of a graph, found by Tarjan's strongly connected components.
fn circles(graph: &Graph) -> Vec<Vec<String>> {
    struct State<'a> {
        graph: &'a Graph,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a str) {
        let n = s.index.len();
        s.index.insert(v, n);
        s.low.insert(v, n);
        s.stack.push(v);
        s.on_stack.insert(v);
        let graph = s.graph;
        for w in graph.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !s.index.contains_key(w) {
                visit(s, w);
                let lw = s.low[w];
                let lv = s.low.get_mut(v).expect("visited");
                *lv = (*lv).min(lw);
            } else if s.on_stack.contains(w) {
                let iw = s.index[w];
                let lv = s.low.get_mut(v).expect("visited");
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut scc = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                scc.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if scc.len() > 1 {
                scc.sort();
                s.out.push(scc);
            }
        }
    }
    let mut s = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in graph.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.out
}

fn is_test_file(path: &Path) -> bool {
    path.file_name().is_some_and(|n| n == "tests.rs")
        || path.components().any(|c| c.as_os_str() == "tests")
}

#[test]
fn no_import_circle_between_files_or_top_level_modules() {
    let ws = workspace();
    let mut found = Vec::new();
    for krate in CRATES {
        let dir = ws.join(krate);
        if !dir.exists() {
            continue;
        }
        for files in crate_files(&dir) {
            let (file_graph, top_graph) = graphs(&files, &dir.join("src"));
            for c in circles(&file_graph) {
                found.push(format!("{krate}: files {}", c.join(" ↔ ")));
            }
            for c in circles(&top_graph) {
                found.push(format!("{krate}: modules {}", c.join(" ↔ ")));
            }
        }
    }
    assert!(found.is_empty(), "import circles:\n{}", found.join("\n"));
}

#[test]
fn no_source_file_outside_tests_is_over_the_line_limit() {
    let ws = workspace();
    let mut long = Vec::new();
    for krate in CRATES {
        let dir = ws.join(krate);
        for files in crate_files(&dir) {
            for f in files {
                if is_test_file(&f.path) {
                    continue;
                }
                let lines = fs::read_to_string(&f.path).map_or(0, |t| t.lines().count());
                if lines > MAX_LINES {
                    long.push(format!("{} has {lines} lines", f.path.display()));
                }
            }
        }
    }
    assert!(
        long.is_empty(),
        "over {MAX_LINES} lines:\n{}",
        long.join("\n")
    );
}

#[test]
fn the_checker_sees_a_circle_and_a_clean_chain() {
    let file = |module: &[&str], children: &[&str], text: &str| File {
        path: PathBuf::from(format!("{}.rs", module.join("/"))),
        module: module.iter().map(|s| s.to_string()).collect(),
        children: children.iter().map(|s| s.to_string()).collect(),
        text: code_only(text),
    };
    let root = Path::new("");
    let circle = [
        file(&[], &["a", "b"], "mod a; mod b;"),
        file(&["a"], &[], "use crate::b::{X as W, y::Z};"),
        file(&["b"], &[], "fn f() { super::a::g() } // crate::c::x"),
    ];
    let (files, tops) = graphs(&circle, root);
    assert_eq!(circles(&files).len(), 1, "{files:?}");
    assert_eq!(circles(&tops).len(), 1, "{tops:?}");
    let chain = [
        file(&[], &["a", "b"], "mod a; mod b; pub use a::X;"),
        file(
            &["a"],
            &[],
            "use crate::b::{X, y::Z}; const S: &str = \"crate::lib\";",
        ),
        file(
            &["b"],
            &[],
            "fn f() { std::mem::drop(1) } /* super::a::g() */",
        ),
    ];
    let (files, tops) = graphs(&chain, root);
    assert!(circles(&files).is_empty(), "{files:?}");
    assert!(circles(&tops).is_empty(), "{tops:?}");
}
