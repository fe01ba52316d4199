use super::*;
use ppcore::upload::Receiver;

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pp-cache-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    dir
}

fn upload(cache: &Arc<ProgramCache>, bytes: &[u8]) -> io::Result<PathBuf> {
    let id = ProgramId::of(bytes);
    match cache.claim(id)? {
        Claim::Ready(path) => Ok(path),
        Claim::Busy => Err(io::Error::other("busy")),
        Claim::Upload(slot) => {
            let now = Instant::now();
            let mut rx = Receiver::new(id, bytes.len() as u64, slot, now);
            rx.chunk(0, bytes, now).map_err(io::Error::other)?;
            rx.finish().map_err(io::Error::other)?.commit()
        }
    }
}

#[test]
fn cached_program_is_private_named_by_hash_and_found_again() {
    let dir = temp_dir("hit");
    let cache = ProgramCache::open(dir.clone(), 1 << 20).expect("open");
    let path = upload(&cache, b"program one").expect("upload");
    let id = ProgramId::of(b"program one");
    assert_eq!(path, dir.join(format!("{}.bin", id.hex())));
    assert_eq!(fs::read(&path).expect("read"), b"program one");
    let mode = |p: &Path| fs::metadata(p).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&path), 0o700);
    assert!(matches!(cache.claim(id), Ok(Claim::Ready(p)) if p == path));
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn a_second_upload_of_the_same_program_waits_for_the_first() {
    let dir = temp_dir("dedup");
    let cache = ProgramCache::open(dir.clone(), 1 << 20).expect("open");
    let id = ProgramId::of(b"shared");
    let Ok(Claim::Upload(mut slot)) = cache.claim(id) else {
        panic!("first claim uploads");
    };
    assert!(matches!(cache.claim(id), Ok(Claim::Busy)));
    let waiter = {
        let cache = Arc::clone(&cache);
        std::thread::spawn(move || cache.wait_ready(&id, Duration::from_secs(30)))
    };
    slot.write_all(b"shared").expect("write");
    let path = slot.commit().expect("commit");
    assert_eq!(waiter.join().expect("waiter"), Some(path));
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn an_abandoned_upload_leaves_nothing_and_frees_the_hash() {
    let dir = temp_dir("abandon");
    let cache = ProgramCache::open(dir.clone(), 1 << 20).expect("open");
    let id = ProgramId::of(b"never finished");
    let Ok(Claim::Upload(mut slot)) = cache.claim(id) else {
        panic!("claim");
    };
    slot.write_all(b"never").expect("write");
    drop(slot);
    assert_eq!(cache.wait_ready(&id, Duration::from_secs(1)), None);
    assert_eq!(fs::read_dir(&dir).expect("dir").count(), 0);
    assert!(matches!(cache.claim(id), Ok(Claim::Upload(_))));
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn least_recently_used_program_is_evicted_but_never_one_in_use() {
    let dir = temp_dir("lru");
    let cache = ProgramCache::open(dir.clone(), 250).expect("open");
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
    let _ = fs::remove_dir_all(dir);
}
