use super::*;
use ppcore::upload::Receiver;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pp-cache-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    dir
}

fn nothing() -> Box<dyn FnOnce() + Send> {
    Box::new(|| {})
}

fn upload(cache: &Arc<ProgramCache>, bytes: &[u8]) -> io::Result<PathBuf> {
    let id = ProgramId::of(bytes);
    if let Some(path) = cache.get(&id) {
        return Ok(path);
    }
    let slot = cache.reserve(id, bytes.len() as u64, nothing())?;
    let now = Instant::now();
    let mut rx = Receiver::new(id, bytes.len() as u64, slot, now);
    rx.chunk(0, bytes, now).map_err(io::Error::other)?;
    rx.finish().map_err(io::Error::other)?.commit()
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn cached_program_is_private_named_by_hash_and_found_again() {
    let dir = temp_dir("hit");
    let cache = ProgramCache::open(dir.clone(), 1 << 20, false).expect("open");
    let path = upload(&cache, b"program one").expect("upload");
    let id = ProgramId::of(b"program one");
    assert_eq!(path, dir.join(format!("{}.bin", id.hex())));
    assert_eq!(fs::read(&path).expect("read"), b"program one");
    let mode = |p: &Path| fs::metadata(p).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&path), 0o700);
    assert_eq!(cache.get(&id), Some(path));
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn an_upload_is_written_under_a_name_of_its_own_and_renamed_into_place() {
    let dir = temp_dir("rename");
    let id = ProgramId::of(b"same program");
    // Two nodes sharing one directory upload the same program at once.
    let a = ProgramCache::open(dir.clone(), 1 << 20, false).expect("open a");
    let b = ProgramCache::open(dir.clone(), 1 << 20, false).expect("open b");
    let mut slot_a = a.reserve(id, 12, nothing()).expect("slot a");
    let mut slot_b = b.reserve(id, 12, nothing()).expect("slot b");
    let parts = names(&dir);
    assert_eq!(parts.len(), 2, "two temporary files: {parts:?}");
    assert!(parts.iter().all(|n| n.ends_with(".part")), "{parts:?}");
    assert!(parts.iter().all(|n| n.starts_with(&id.hex())), "{parts:?}");
    slot_a.write_all(b"same program").expect("write a");
    slot_b.write_all(b"same").expect("write b");
    let path = slot_a.commit().expect("commit a");
    // Under its final name it is complete, and nobody writes it.
    assert_eq!(fs::read(&path).expect("read"), b"same program");
    slot_b.write_all(b" program").expect("write b");
    assert_eq!(slot_b.commit().expect("commit b"), path);
    assert_eq!(names(&dir), vec![format!("{}.bin", id.hex())]);
    assert_eq!(fs::read(&path).expect("read"), b"same program");
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn an_abandoned_upload_leaves_nothing_frees_its_room_and_says_so() {
    let dir = temp_dir("abandon");
    let cache = ProgramCache::open(dir.clone(), 100, false).expect("open");
    let id = ProgramId::of(b"never finished");
    let told = Arc::new(AtomicBool::new(false));
    let hook = {
        let told = Arc::clone(&told);
        Box::new(move || told.store(true, Ordering::SeqCst))
    };
    let mut slot = cache.reserve(id, 100, hook).expect("slot");
    slot.write_all(b"never").expect("write");
    // Its whole offered size is reserved: nothing more fits meanwhile.
    let other = ProgramId::of(b"other");
    let err = cache.reserve(other, 1, nothing()).err().expect("no room");
    assert!(err.to_string().contains("--cache-max"), "{err}");
    drop(slot);
    assert!(told.load(Ordering::SeqCst));
    assert!(names(&dir).is_empty(), "{:?}", names(&dir));
    drop(cache.reserve(other, 100, nothing()).expect("room again"));
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn another_process_partial_upload_is_counted_and_kept_while_locked_removed_when_stale() {
    let dir = temp_dir("stale");
    let writer = ProgramCache::open(dir.clone(), 100, false).expect("open writer");
    let mut slot = writer
        .reserve(ProgramId::of(b"live"), 60, nothing())
        .expect("slot");
    slot.write_all(&[7; 60]).expect("write");
    let part = dir.join(&names(&dir)[0]);
    let past = SystemTime::now() - 2 * STALE_PART;
    File::options()
        .write(true)
        .open(&part)
        .and_then(|f| f.set_modified(past))
        .expect("age it");
    // Another process opening the directory keeps a live upload (locked),
    // however old, and counts it against the cap.
    let other = ProgramCache::open(dir.clone(), 100, false).expect("open other");
    assert!(part.exists(), "a live upload was removed");
    let err = other
        .reserve(ProgramId::of(b"x"), 50, nothing())
        .err()
        .expect("counted");
    assert!(err.to_string().contains("--cache-max"), "{err}");
    // Its writer gone (killed: the file stays, unlocked), it is stale.
    let file = slot.file.take().expect("file");
    drop(file);
    slot.part = PathBuf::new();
    drop(slot);
    assert!(part.exists());
    drop(
        other
            .reserve(ProgramId::of(b"x"), 50, nothing())
            .expect("room"),
    );
    assert!(!part.exists(), "a stale upload stays");
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn least_recently_used_program_is_evicted_but_never_one_in_use() {
    let dir = temp_dir("lru");
    let cache = ProgramCache::open(dir.clone(), 250, false).expect("open");
    let a = vec![b'a'; 100];
    let b = vec![b'b'; 100];
    let c = vec![b'c'; 100];
    let path_a = upload(&cache, &a).expect("a");
    let past = SystemTime::now() - Duration::from_secs(60);
    File::options()
        .write(true)
        .open(&path_a)
        .and_then(|f| f.set_modified(past))
        .expect("age a");
    let pin_a = cache.pin(ProgramId::of(&a));
    upload(&cache, &b).expect("b");
    // a is older but pinned: b goes instead.
    upload(&cache, &c).expect("c");
    assert!(cache.get(&ProgramId::of(&a)).is_some());
    assert!(cache.get(&ProgramId::of(&b)).is_none());
    drop(pin_a);
    assert!(cache.bytes() <= 250);
    // Everything pinned and no room: a clear error, nothing half-stored.
    let _pins = (cache.pin(ProgramId::of(&a)), cache.pin(ProgramId::of(&c)));
    let err = upload(&cache, &[b'd'; 100]).expect_err("no room");
    assert!(err.to_string().contains("in use"), "{err}");
    assert_eq!(cache.bytes(), 200);
    assert_eq!(names(&dir).len(), 2);
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn evictions_take_the_oldest_unpinned_until_the_incoming_bytes_fit() {
    let t = |s| SystemTime::UNIX_EPOCH + Duration::from_secs(s);
    let programs = vec![
        (t(3), 10, "c".to_owned()),
        (t(1), 10, "a".to_owned()),
        (t(2), 10, "b".to_owned()),
    ];
    let pinned: HashSet<String> = ["a".to_owned()].into();
    assert_eq!(
        evictions(programs.clone(), 0, 5, 30, &pinned),
        Some(vec!["b".to_owned()])
    );
    assert_eq!(evictions(programs.clone(), 0, 0, 30, &pinned), Some(vec![]));
    // Other processes' partial uploads count, and cannot be evicted.
    assert_eq!(
        evictions(programs.clone(), 15, 5, 30, &pinned),
        Some(vec!["b".to_owned(), "c".to_owned()])
    );
    assert_eq!(evictions(programs, 16, 5, 30, &pinned), None);
}

#[test]
fn own_directory_is_keyed_by_the_port_asked_for_and_unique_for_an_ephemeral_one() {
    // Read from the environment of this test process: HOME or XDG_CACHE_HOME.
    let Some(a) = own_dir(60000) else {
        return assert!(own_dir(0).is_none(), "no default, which `Programs` reports");
    };
    assert!(
        a.ends_with("ppserver/programs/port-60000"),
        "{}",
        a.display()
    );
    assert_eq!(own_dir(60000), Some(a.clone()));
    assert_ne!(own_dir(60001), Some(a));
    let (e1, e2) = (own_dir(0).expect("e1"), own_dir(0).expect("e2"));
    assert_ne!(e1, e2);
    let name = e1.file_name().expect("name").to_string_lossy().into_owned();
    assert!(name.starts_with(EPHEMERAL), "{name}");
}

#[test]
fn a_gone_nodes_ephemeral_directory_is_removed_by_the_next_node_never_a_live_ones() {
    let base = temp_dir("ephemeral");
    let (one, two) = (base.join("ephemeral-one"), base.join("ephemeral-two"));
    let foreign = base.join("ephemeral-not-ours");
    fs::create_dir_all(&foreign).expect("foreign");
    let first = ProgramCache::open(one.clone(), 100, true).expect("one");
    upload(&first, b"kept while its node lives").expect("upload");
    let second = ProgramCache::open(two.clone(), 100, true).expect("two");
    assert!(
        one.join(OWNER).exists(),
        "a live node's directory was removed"
    );
    drop(first); // its node is gone
    let third = ProgramCache::open(base.join("port-7"), 100, true).expect("port");
    assert!(!one.exists(), "a gone node's directory stays");
    assert!(two.exists() && foreign.exists());
    drop((second, third));
    let _ = fs::remove_dir_all(base);
}
