//! Tests of shared values and kept results in this process.
use super::*;

fn value(fill: u8, len: usize) -> Arc<SharedValue> {
    SharedValue::from_bytes(vec![fill; len])
}

#[test]
fn a_value_is_named_by_its_bytes_and_listed_while_it_lives() {
    let a = value(1, 10);
    assert_eq!(a.id(), SharedId::of(&[1; 10]));
    assert!(lookup(&a.id()).is_some_and(|v| Arc::ptr_eq(&v, &a)));
    // The same bytes again: the same value.
    let b = value(1, 10);
    assert!(Arc::ptr_eq(&a, &b));
    let id = a.id();
    drop((a, b));
    assert!(lookup(&id).is_none());
}

#[test]
fn a_value_is_held_while_a_sharer_keeps_a_clone_not_a_decoded_copy() {
    let table = Shared::new(vec![9u8; 33]).unwrap();
    let id = table.id();
    let copy = table.clone();
    drop(table);
    assert!(is_held(&id));
    let bytes = crate::job::codec::encode(&copy).unwrap();
    let decoded: Shared<Vec<u8>> = crate::job::codec::decode(&bytes).unwrap();
    drop(copy);
    assert!(!is_held(&id), "a decoded copy does not hold it");
    assert!(lookup(&id).is_some(), "though the value lives on with it");
    drop(decoded);
    assert!(lookup(&id).is_none());
}

#[test]
fn a_shared_argument_is_its_id_on_the_wire_and_the_same_value_once_decoded() {
    let table = Shared::new(vec![1.5f64; 1000]).unwrap();
    let (bytes, named) = collect(|| crate::job::codec::encode(&(table.clone(), 7u32)).unwrap());
    assert!(bytes.len() < 64, "{} bytes", bytes.len());
    assert_eq!((named.values.len(), named.kept.len()), (1, 0));
    assert_eq!(named.values[0].id(), table.id());
    let (back, n): (Shared<Vec<f64>>, u32) = crate::job::codec::decode(&bytes).unwrap();
    assert_eq!(n, 7);
    assert!(Arc::ptr_eq(back.value(), table.value()), "decoded once");
    // Outside `collect`, nothing is gathered; nested, each sees its own.
    let ((_, inner), outer) = collect(|| collect(|| crate::job::codec::encode(&table).unwrap()));
    assert_eq!((inner.values.len(), outer.values.len()), (1, 0));
}

impl<T> Shared<T> {
    fn value_of(&self) -> Arc<SharedValue> {
        match &self.source {
            Source::Value(v) => Arc::clone(v),
            Source::Kept(_) => panic!("a kept result"),
        }
    }
}

struct Remote(SharedId, Arc<SharedValue>);
impl KeptSource for Remote {
    fn id(&self) -> SharedId {
        self.0
    }
    fn fetch(&self) -> Result<Arc<SharedValue>, JobError> {
        Ok(Arc::clone(&self.1))
    }
}

#[test]
fn a_kept_result_is_its_id_on_the_wire_is_held_and_is_fetched_when_read() {
    let id = SharedId([42; 32]);
    let bytes = crate::job::codec::encode(&vec![5u16, 6]).unwrap();
    let source = Arc::new(Remote(id, SharedValue::kept(id, bytes)));
    let before = kept_alive();
    let kept: Shared<Vec<u16>> = Shared::kept(source);
    assert!(kept.is_kept() && is_held(&id));
    assert_eq!(kept_alive(), before + 1);
    let (encoded, named) = collect(|| crate::job::codec::encode(&(kept.clone(),)).unwrap());
    assert!(named.values.is_empty());
    assert_eq!(named.kept.len(), 1);
    assert_eq!(named.kept[0].id(), id);
    let raw: (serde_bytes::ByteBuf,) = crate::job::codec::decode(&encoded).unwrap();
    assert_eq!(raw.0.as_slice(), &id.0, "the id alone travels");
    assert_eq!(**kept.fetch().unwrap(), vec![5, 6]);
    assert_eq!(kept[1], 6, "deref reads the fetched value");
    drop((kept, named));
    assert!(!is_held(&id));
    assert_eq!(kept_alive(), before);
}

#[test]
fn a_kept_value_is_unlisted_on_a_node_and_listed_in_the_client() {
    let id = SharedId([43; 32]);
    let node_side = SharedValue::kept(id, vec![0x91, 0x01]);
    assert!(lookup(&id).is_none(), "only a job's scope reads it");
    let client_side = SharedValue::kept_listed(id, vec![0x91, 0x01], None);
    assert!(lookup(&id).is_some_and(|v| Arc::ptr_eq(&v, &client_side)));
    drop(node_side);
    assert!(
        lookup(&id).is_some(),
        "an unlisted one leaves the listed alone"
    );
}

#[test]
fn a_scoped_job_reads_only_the_values_it_was_given() {
    let mine = Shared::new(vec![1u32, 2]).unwrap();
    let theirs = Shared::new(vec![3u32, 4]).unwrap();
    let args = crate::job::codec::encode(&(theirs.clone(),)).unwrap();
    let read = |values: &[Arc<SharedValue>]| {
        scope(values, || {
            crate::job::codec::decode::<(Shared<Vec<u32>>,)>(&args)
        })
    };
    let err = read(&[Arc::clone(&mine.value_of())]).unwrap_err();
    assert!(err.message.contains("not among the job's"), "{err}");
    assert_eq!(
        *read(&[Arc::clone(&theirs.value_of())]).unwrap().0,
        vec![3, 4]
    );
    // Outside a scope: anything this process holds.
    assert!(crate::job::codec::decode::<(Shared<Vec<u32>>,)>(&args).is_ok());
}

#[test]
fn bytes_received_decode_once_for_every_job() {
    let bytes = crate::job::codec::encode(&vec![3u64, 4, 5]).unwrap();
    let v = SharedValue::from_bytes(bytes);
    let first = v.get::<Vec<u64>>().unwrap();
    let second = v.get::<Vec<u64>>().unwrap();
    assert!(Arc::ptr_eq(&first, &second));
    assert_eq!(*first, vec![3, 4, 5]);
    // Asked for as a type it is not: an error, not a panic.
    assert_eq!(v.get::<String>().unwrap_err().kind, ErrorKind::Codec);
}

#[test]
fn an_id_nobody_holds_is_a_clear_error() {
    let id = SharedId::of(b"never shared");
    let bytes = crate::job::codec::encode(&serde_bytes::ByteBuf::from(id.0.to_vec())).unwrap();
    let err = crate::job::codec::decode::<Shared<u32>>(&bytes).unwrap_err();
    assert!(err.message.contains("is not here"), "{err}");
    let short = crate::job::codec::encode(&serde_bytes::ByteBuf::from(vec![1, 2])).unwrap();
    assert!(crate::job::codec::decode::<Shared<u32>>(&short).is_err());
}

#[test]
fn the_store_evicts_the_least_recently_used_within_its_cap() {
    let mut store = SharedStore::new(100 + 2 * ENTRY_COST);
    let (a, b, c) = (value(10, 40), value(11, 40), value(12, 40));
    assert_eq!(store.put(1, a.clone()), Ok(vec![]));
    assert_eq!(store.put(1, b.clone()), Ok(vec![]));
    // `a` used last: `b` goes to make room for `c`.
    assert!(store.get(1, &a.id()).is_some());
    assert_eq!(store.put(1, c.clone()), Ok(vec![b.id()]));
    assert_eq!((store.len(), store.used()), (2, 80));
    assert!(store.get(1, &b.id()).is_none());
    // Alone over the cap: refused, nothing evicted.
    let big = value(13, 101 + 2 * ENTRY_COST as usize);
    let max = 100 + 2 * ENTRY_COST;
    assert_eq!(store.put(1, big), Err(OverSharedMax { len: max + 1, max }));
    assert_eq!(store.len(), 2);
}

#[test]
fn a_value_lives_while_any_connection_holds_it_and_only_for_them() {
    let mut store = SharedStore::new(1000);
    let a = value(20, 10);
    store.put(1, a.clone()).unwrap();
    assert!(store.get(2, &a.id()).is_none(), "not connection 2's");
    store.put(2, a.clone()).unwrap();
    store.release(1, &a.id());
    assert!(store.get(2, &a.id()).is_some());
    store.release_all(2);
    assert!(store.is_empty());
    assert_eq!(store.used(), 0);
}
