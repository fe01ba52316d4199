//! Values shared by many jobs: sent once to each node that needs one,
//! decoded once per process there, and named by the SHA-256 of their bytes.
//!
//! A client makes a [`Shared<T>`] from a value (`Server::share` in
//! `ppclient`); jobs take it as an argument like any other. In a job's
//! encoded arguments a shared value is only its 32-byte [`SharedId`]: the
//! value's bytes travel on their own, once per node (see PROTOCOL.md,
//! "Shared values"), and every job there that names the id reads the same
//! decoded value.
//!
//! The pieces:
//! - [`SharedValue`]: the encoded bytes, their id, and the value decoded
//!   once (per type asked for). Every live one in this process is listed by
//!   id ([`lookup`]), which is how a job's arguments find theirs when they
//!   are decoded, on a node, in a worker process or in the client.
//! - [`collect`]: which shared values an encoding named (the client sends
//!   them before the jobs that need them).
//! - [`SharedStore`]: a node's cache, pure: which connection holds which
//!   value, bounded in bytes, least recently used evicted first.

use crate::job::error::{ErrorKind, JobError};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};
use std::any::{Any, TypeId};
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock, Weak};

/// The default cap of a node's shared values, in bytes (`--shared-max`): 2 GiB.
pub const DEFAULT_SHARED_MAX: u64 = 2 << 30;

/// A shared value's identity: the SHA-256 of its encoded bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SharedId(pub [u8; 32]);

impl SharedId {
    /// The id of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        SharedId(Sha256::digest(bytes).into())
    }
}

impl SharedId {
    /// A fresh id nobody can guess: the name a client gives a job's kept
    /// result when it is submitted. SHA-256 of a 32-byte seed from the
    /// operating system (read once per process) and a counter.
    pub fn fresh() -> Result<Self, JobError> {
        static SEED: OnceLock<Result<[u8; 32], String>> = OnceLock::new();
        static COUNT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let seed = SEED.get_or_init(|| {
            let mut seed = [0u8; 32];
            getrandom::getrandom(&mut seed)
                .map(|()| seed)
                .map_err(|e| e.to_string())
        });
        let seed = seed.as_ref().map_err(|e| {
            JobError::new(
                ErrorKind::Codec,
                format!("no randomness for a kept id: {e}"),
            )
        })?;
        let n = COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut h = Sha256::new();
        h.update(b"pp kept id");
        h.update(seed);
        h.update(n.to_le_bytes());
        Ok(SharedId(h.finalize().into()))
    }
}

impl fmt::Display for SharedId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Twelve hex digits name a value in errors and logs.
        for b in &self.0[..6] {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for SharedId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SharedId({self})")
    }
}

/// A value decoded as one type, or why it did not decode.
type Decoded = (TypeId, Result<Arc<dyn Any + Send + Sync>, JobError>);

/// One shared value in this process: its bytes, its id, and the value
/// decoded at most once for the first type asked for.
pub struct SharedValue {
    id: SharedId,
    bytes: Arc<Vec<u8>>,
    decoded: OnceLock<Decoded>,
}

/// Every live [`SharedValue`] of this process, by id.
fn live() -> &'static Mutex<HashMap<SharedId, Weak<SharedValue>>> {
    static LIVE: OnceLock<Mutex<HashMap<SharedId, Weak<SharedValue>>>> = OnceLock::new();
    LIVE.get_or_init(Default::default)
}

fn lock_live() -> std::sync::MutexGuard<'static, HashMap<SharedId, Weak<SharedValue>>> {
    crate::sync::lock(live())
}

/// The live shared value `id` of this process, if any holds it.
pub fn lookup(id: &SharedId) -> Option<Arc<SharedValue>> {
    lock_live().get(id).and_then(Weak::upgrade)
}

impl SharedValue {
    /// The value of these bytes (hashed here, so the id is always theirs).
    /// If this process holds a value of the same id already, that one: the
    /// bytes are the same, and it may be decoded already.
    pub fn from_bytes(bytes: Vec<u8>) -> Arc<Self> {
        let id = SharedId::of(&bytes);
        Self::register(id, Arc::new(bytes), None)
    }

    /// A kept value's bytes under the id its client gave it (a job's kept
    /// result, or one a client sent as kept): not checked against the
    /// bytes, and not listed in this process's table, so only a job whose
    /// scope holds it reads it (see [`scope`]). What a node and a worker
    /// process keep.
    pub fn kept(id: SharedId, bytes: Vec<u8>) -> Arc<Self> {
        Arc::new(SharedValue {
            id,
            bytes: Arc::new(bytes),
            decoded: OnceLock::new(),
        })
    }

    /// A kept value in the client (a job's kept result that came back, or
    /// was made by the local pool), under its kept id and listed in this
    /// process's table, so that the client's own jobs read it. `decoded`:
    /// the value itself, if this process has it (then it is not decoded
    /// again).
    pub fn kept_listed(
        id: SharedId,
        bytes: Vec<u8>,
        decoded: Option<(TypeId, Arc<dyn Any + Send + Sync>)>,
    ) -> Arc<Self> {
        Self::register(id, Arc::new(bytes), decoded.map(|(ty, v)| (ty, Ok(v))))
    }

    /// The value of `value`, encoded as job arguments are: what a client
    /// shares. It counts as decoded already (as `T`).
    pub fn encode<T: Serialize + Send + Sync + 'static>(
        value: T,
    ) -> Result<(Arc<Self>, Arc<T>), JobError> {
        let bytes = crate::job::codec::encode(&value)?;
        let id = SharedId::of(&bytes);
        let value = Arc::new(value);
        let any: Arc<dyn Any + Send + Sync> = value.clone();
        let shared = Self::register(id, Arc::new(bytes), Some((TypeId::of::<T>(), Ok(any))));
        // A value of the same bytes may have been decoded as `T` before.
        let value = shared.cached::<T>().unwrap_or(value);
        Ok((shared, value))
    }

    fn register(id: SharedId, bytes: Arc<Vec<u8>>, decoded: Option<Decoded>) -> Arc<Self> {
        let mut live = lock_live();
        if let Some(old) = live.get(&id).and_then(Weak::upgrade) {
            return old;
        }
        let cell = OnceLock::new();
        if let Some(d) = decoded {
            let _ = cell.set(d);
        }
        let value = Arc::new(SharedValue {
            id,
            bytes,
            decoded: cell,
        });
        live.insert(id, Arc::downgrade(&value));
        value
    }

    /// Its id.
    pub fn id(&self) -> SharedId {
        self.id
    }

    /// Its encoded bytes.
    pub fn bytes(&self) -> &Arc<Vec<u8>> {
        &self.bytes
    }

    /// How many bytes it takes encoded.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether it takes no bytes (never, for an encoded value).
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The value as `T` if it was decoded as `T` already.
    fn cached<T: Send + Sync + 'static>(&self) -> Option<Arc<T>> {
        match self.decoded.get()? {
            (ty, Ok(any)) if *ty == TypeId::of::<T>() => any.clone().downcast::<T>().ok(),
            _ => None,
        }
    }

    /// The value as `T`: decoded on first use, then the same one for every
    /// job of this process. Asked for as another type than the first, it
    /// is decoded again each time (nothing a `job!` signature does).
    pub fn get<T: DeserializeOwned + Send + Sync + 'static>(&self) -> Result<Arc<T>, JobError> {
        let decode = || -> Result<Arc<dyn Any + Send + Sync>, JobError> {
            let value: T = crate::job::codec::decode(&self.bytes)?;
            Ok(Arc::new(value))
        };
        let (ty, decoded) = self.decoded.get_or_init(|| (TypeId::of::<T>(), decode()));
        let any = match *ty == TypeId::of::<T>() {
            true => decoded.clone()?,
            false => decode()?,
        };
        any.downcast::<T>()
            .map_err(|_| JobError::new(ErrorKind::Codec, "a shared value of another type"))
    }
}

impl Drop for SharedValue {
    fn drop(&mut self) {
        let mut live = lock_live();
        // A value of the same id made since this one died stays listed (and
        // an unlisted kept value leaves a listed one of its id alone).
        if live.get(&self.id).is_some_and(|w| w.strong_count() == 0) {
            live.remove(&self.id);
        }
    }
}

impl fmt::Debug for SharedValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SharedValue({}, {} bytes)", self.id, self.bytes.len())
    }
}

/// A job's result kept where it was made, as the client sees it: its id
/// (fixed at submission), and how to get its bytes here. Implemented by the
/// client (`ppclient`), which knows where each kept value lies.
pub trait KeptSource: Send + Sync + 'static {
    /// The value's id.
    fn id(&self) -> SharedId;
    /// The value in this process: fetched from where it lies (waiting for
    /// the job that makes it, if it has not ended), or why it cannot be.
    fn fetch(&self) -> Result<Arc<SharedValue>, JobError>;
}

/// What one encoding named: shared values (their bytes are here) and kept
/// results (they may lie elsewhere).
#[derive(Default)]
pub struct Named {
    /// Shared values, each once, in order.
    pub values: Vec<Arc<SharedValue>>,
    /// Kept results, each once, in order.
    pub kept: Vec<Arc<dyn KeptSource>>,
}

impl Named {
    /// Whether it names nothing.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty() && self.kept.is_empty()
    }
}

impl fmt::Debug for Named {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kept: Vec<SharedId> = self.kept.iter().map(|k| k.id()).collect();
        f.debug_struct("Named")
            .field("values", &self.values)
            .field("kept", &kept)
            .finish()
    }
}

thread_local! {
    /// What the encoding under way on this thread names.
    static NAMED: RefCell<Option<Named>> = const { RefCell::new(None) };
    /// The shared values the job being decoded on this thread may read.
    static SCOPE: RefCell<Option<Vec<Arc<SharedValue>>>> = const { RefCell::new(None) };
}

/// Runs `run` (a job's decoding and run) so that its arguments may name only
/// `values`: the ones its `RunJob.shared` listed and its connection holds.
/// A node runs every job of a client so, so that no job reads another
/// client's value by naming its id. Outside a scope (the client's own
/// local jobs) any value this process holds may be read.
pub fn scope<R>(values: &[Arc<SharedValue>], run: impl FnOnce() -> R) -> R {
    let outer = SCOPE.with(|s| s.borrow_mut().replace(values.to_vec()));
    let result = run();
    SCOPE.with(|s| *s.borrow_mut() = outer);
    result
}

/// Value `id` as the job decoding on this thread may read it: from its
/// scope if it has one, else from this process.
fn resolve(id: &SharedId) -> Result<Arc<SharedValue>, String> {
    let scoped = SCOPE.with(|s| {
        s.borrow()
            .as_ref()
            .map(|values| values.iter().find(|v| v.id == *id).cloned())
    });
    match scoped {
        Some(Some(value)) => Ok(value),
        Some(None) => Err(format!("shared value {id} is not among the job's")),
        None => lookup(id).ok_or_else(|| format!("shared value {id} is not here")),
    }
}

/// Runs `encode` and returns, with its result, the shared values and kept
/// results it named (each once, in order): what must reach a node before
/// the job does.
pub fn collect<R>(encode: impl FnOnce() -> R) -> (R, Named) {
    let outer = NAMED.with(|n| n.borrow_mut().replace(Named::default()));
    let result = encode();
    let named = NAMED.with(|n| std::mem::replace(&mut *n.borrow_mut(), outer));
    (result, named.unwrap_or_default())
}

/// Kept references ([`Shared::kept`]) alive in this process: while there
/// are none, no job's arguments can name a kept result, and a client need
/// not look.
pub fn kept_alive() -> usize {
    KEPT_ALIVE.load(std::sync::atomic::Ordering::Relaxed)
}

static KEPT_ALIVE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// A value shared by many jobs: sent once to each node that runs one of
/// them, decoded once per process there, and read by reference.
///
/// Make one with `Server::share` (ppclient) and pass clones of it as a
/// job's argument; in the job, use it as a `&T` (it derefs). While any
/// clone lives in the client (the caller's, or a job's not yet finished),
/// the nodes keep the value; when the last one is dropped, they free it.
///
/// A job's kept result (`JobHandle::keep` in ppclient) is a `Shared<T>`
/// too: the same parameter takes either kind. Its id is random, given when
/// its job was submitted (a shared value's is the SHA-256 of its bytes);
/// its bytes stay where the job made them, and in the client it is
/// fetched only if read ([`Shared::fetch`]).
///
/// ```
/// use ppcore::Shared;
/// ppcore::job! {
///     /// Sums `table[from..to]`.
///     pub fn part_sum(table: Shared<Vec<f64>>, from: u64, to: u64) -> f64 {
///         table[from as usize..to as usize].iter().sum()
///     }
/// }
/// let table = Shared::new(vec![1.0, 2.0, 3.0]).unwrap();
/// assert_eq!(table.len(), 3); // a `&Vec<f64>`
/// ```
pub struct Shared<T> {
    /// The value; for a kept result in the client, set once fetched.
    value: OnceLock<Arc<T>>,
    source: Source,
    /// The sharer's hold on it ([`is_held`]); `None` in a copy decoded
    /// from a job's arguments.
    held: Option<Arc<Held>>,
}

/// Where a [`Shared`] gets its bytes.
enum Source {
    /// A value whose bytes are here.
    Value(Arc<SharedValue>),
    /// A job's kept result, which may lie on a node.
    Kept(Arc<KeptCount>),
}

/// A kept source, counted in [`kept_alive`] while it lives.
struct KeptCount(Arc<dyn KeptSource>);

impl Drop for KeptCount {
    fn drop(&mut self) {
        KEPT_ALIVE.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A sharer's hold on a value: while one lives, the nodes keep the value.
struct Held(SharedId);

/// A hold on value `id` ([`is_held`]) by something that is not a
/// [`Shared`]: a client's handle of a job whose result is kept.
pub struct Hold(#[allow(dead_code)] Arc<Held>);

/// Holds value `id`: while the returned hold (or any [`Shared`] of `id`
/// made here) lives, [`is_held`] says so.
pub fn hold(id: SharedId) -> Hold {
    Hold(held_for(id))
}

fn held_for(id: SharedId) -> Arc<Held> {
    let mut holds = holds();
    match holds.get(&id).and_then(Weak::upgrade) {
        Some(held) => held,
        None => {
            let held = Arc::new(Held(id));
            holds.insert(id, Arc::downgrade(&held));
            held
        }
    }
}

impl fmt::Debug for Hold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hold({})", self.0 .0)
    }
}

/// Every live hold of this process, by id.
fn holds() -> std::sync::MutexGuard<'static, HashMap<SharedId, Weak<Held>>> {
    static HOLDS: OnceLock<Mutex<HashMap<SharedId, Weak<Held>>>> = OnceLock::new();
    crate::sync::lock(HOLDS.get_or_init(Default::default))
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut holds = holds();
        if holds.get(&self.0).is_some_and(|w| w.strong_count() == 0) {
            holds.remove(&self.0);
        }
    }
}

/// Whether a [`Shared`] made in this process (not one decoded from a job's
/// arguments) still holds value `id`: while one does, the nodes keep it.
/// A node in the same process holding the value does not count.
pub fn is_held(id: &SharedId) -> bool {
    holds().get(id).is_some_and(|w| w.strong_count() > 0)
}

impl<T: Serialize + Send + Sync + 'static> Shared<T> {
    /// `value`, encoded once, to be shared by jobs.
    pub fn new(value: T) -> Result<Self, JobError> {
        let (shared, value) = SharedValue::encode(value)?;
        let held = held_for(shared.id);
        Ok(Shared {
            value: OnceLock::from(value),
            source: Source::Value(shared),
            held: Some(held),
        })
    }
}

impl<T> Shared<T> {
    /// A reference to a job's kept result (what a client's
    /// `JobHandle::keep` gives): it holds the value where it lies, and is
    /// read (fetched here) only if the caller reads it.
    pub fn kept(source: Arc<dyn KeptSource>) -> Self {
        KEPT_ALIVE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let held = held_for(source.id());
        Shared {
            value: OnceLock::new(),
            source: Source::Kept(Arc::new(KeptCount(source))),
            held: Some(held),
        }
    }

    /// Its id: the SHA-256 of its encoded bytes, or, for a kept result,
    /// the id its job was given when it was submitted.
    pub fn id(&self) -> SharedId {
        match &self.source {
            Source::Value(v) => v.id,
            Source::Kept(k) => k.0.id(),
        }
    }

    /// Whether it is a job's kept result (made in this process with
    /// [`Shared::kept`]) rather than a value whose bytes are here.
    pub fn is_kept(&self) -> bool {
        matches!(self.source, Source::Kept(_))
    }
}

impl<T: DeserializeOwned + Send + Sync + 'static> Shared<T> {
    /// Its size encoded, in bytes: what a node is sent, once. A kept
    /// result is fetched first (see [`Shared::fetch`]); 0 if it cannot be.
    pub fn encoded_len(&self) -> usize {
        match &self.source {
            Source::Value(v) => v.len(),
            Source::Kept(k) => k.0.fetch().map_or(0, |v| v.len()),
        }
    }

    /// The value behind it, for as long as the caller needs: a kept result
    /// is fetched here the first time (waiting for its job to end).
    ///
    /// # Errors
    ///
    /// The kept result's job failed, or the value cannot be had: its error.
    pub fn fetch(&self) -> Result<&Arc<T>, JobError> {
        if let Some(value) = self.value.get() {
            return Ok(value);
        }
        let value = match &self.source {
            Source::Value(v) => v.get::<T>()?,
            Source::Kept(k) => k.0.fetch()?.get::<T>()?,
        };
        Ok(self.value.get_or_init(|| value))
    }

    /// The value behind it, for as long as the caller needs (a kept result
    /// is fetched first).
    ///
    /// # Panics
    ///
    /// If a kept result cannot be fetched (its job failed): use
    /// [`Shared::fetch`] to get the error instead.
    pub fn value(&self) -> &Arc<T> {
        match self.fetch() {
            Ok(value) => value,
            Err(e) => panic!("the kept result {} cannot be read: {e}", self.id()),
        }
    }
}

impl<T> Clone for Shared<T> {
    fn clone(&self) -> Self {
        let source = match &self.source {
            Source::Value(v) => Source::Value(Arc::clone(v)),
            Source::Kept(k) => Source::Kept(Arc::clone(k)),
        };
        Shared {
            value: self.value.clone(),
            source,
            held: self.held.clone(),
        }
    }
}

/// Reads the value; a kept result is fetched on first use (see
/// [`Shared::value`], which panics if that fails: in a job, a `Shared`
/// argument is always here already).
impl<T: DeserializeOwned + Send + Sync + 'static> std::ops::Deref for Shared<T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.value()
    }
}

impl<T> fmt::Debug for Shared<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            Source::Value(v) => write!(f, "Shared({}, {} bytes)", v.id, v.len()),
            Source::Kept(k) => write!(f, "Shared({}, kept)", k.0.id()),
        }
    }
}

impl<T> Serialize for Shared<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let id = self.id();
        NAMED.with(|n| {
            if let Some(named) = n.borrow_mut().as_mut() {
                match &self.source {
                    Source::Value(v) if !named.values.iter().any(|x| x.id == id) => {
                        named.values.push(Arc::clone(v))
                    }
                    Source::Kept(k) if !named.kept.iter().any(|x| x.id() == id) => {
                        named.kept.push(Arc::clone(&k.0))
                    }
                    _ => {}
                }
            }
        });
        serializer.serialize_bytes(&id.0)
    }
}

impl<'de, T: DeserializeOwned + Send + Sync + 'static> Deserialize<'de> for Shared<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let raw = serde_bytes::ByteBuf::deserialize(deserializer)?;
        let id: [u8; 32] = raw
            .as_slice()
            .try_into()
            .map_err(|_| D::Error::custom("a shared value's id is 32 bytes"))?;
        let id = SharedId(id);
        let shared = resolve(&id).map_err(D::Error::custom)?;
        let value = shared.get::<T>().map_err(|e| {
            D::Error::custom(format!("shared value {id} does not decode: {}", e.message))
        })?;
        Ok(Shared {
            value: OnceLock::from(value),
            source: Source::Value(shared),
            held: None,
        })
    }
}

/// What a node counts for each value it keeps besides its bytes, so that a
/// flood of tiny values is bounded by `--shared-max` too.
pub const ENTRY_COST: u64 = 256;

/// Why a node did not keep a shared value.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
#[error("a shared value of {len} bytes is over the node's --shared-max of {max} bytes")]
pub struct OverSharedMax {
    /// The value's size.
    pub len: u64,
    /// The node's cap.
    pub max: u64,
}

crate::debug_as_display!(OverSharedMax);

struct Stored {
    value: Arc<SharedValue>,
    holders: HashSet<u64>,
    last_used: u64,
}

/// A node's shared values: which connection holds which, within a cap in
/// bytes. Pure: no lock, no clock (use is counted, not timed).
///
/// A value stays while a connection holds it; when the cap would be
/// passed, the least recently used values go first (a connection that
/// needs one again is asked for it). A job that was given a value keeps its
/// own reference: eviction never takes a value from under a job.
pub struct SharedStore {
    max: u64,
    /// What the values cost: their bytes and [`ENTRY_COST`] each.
    cost: u64,
    used: u64,
    uses: u64,
    entries: HashMap<SharedId, Stored>,
    /// The values by last use, oldest first.
    by_use: std::collections::BTreeMap<u64, SharedId>,
}

impl SharedStore {
    /// An empty store of at most `max` bytes.
    pub fn new(max: u64) -> Self {
        SharedStore {
            max,
            cost: 0,
            used: 0,
            uses: 0,
            entries: HashMap::new(),
            by_use: Default::default(),
        }
    }

    /// Connection `holder` sent `value`: kept (with what was evicted to
    /// make room), or refused if it alone is over the cap.
    pub fn put(
        &mut self,
        holder: u64,
        value: Arc<SharedValue>,
    ) -> Result<Vec<SharedId>, OverSharedMax> {
        self.uses += 1;
        let uses = self.uses;
        if let Some(stored) = self.entries.get_mut(&value.id) {
            stored.holders.insert(holder);
            self.by_use.remove(&stored.last_used);
            stored.last_used = uses;
            self.by_use.insert(uses, value.id);
            return Ok(Vec::new());
        }
        let len = value.len() as u64;
        if len > self.max {
            return Err(OverSharedMax { len, max: self.max });
        }
        let mut evicted = Vec::new();
        while self.cost + len + ENTRY_COST > self.max && !self.entries.is_empty() {
            let Some((_, &oldest)) = self.by_use.first_key_value() else {
                break;
            };
            self.remove(&oldest);
            evicted.push(oldest);
        }
        self.used += len;
        self.cost += len + ENTRY_COST;
        self.by_use.insert(uses, value.id);
        self.entries.insert(
            value.id,
            Stored {
                value,
                holders: HashSet::from([holder]),
                last_used: uses,
            },
        );
        Ok(evicted)
    }

    /// Value `id`, if connection `holder` holds it here (a use, for LRU).
    pub fn get(&mut self, holder: u64, id: &SharedId) -> Option<Arc<SharedValue>> {
        self.uses += 1;
        let stored = self.entries.get_mut(id)?;
        if !stored.holders.contains(&holder) {
            return None;
        }
        self.by_use.remove(&stored.last_used);
        stored.last_used = self.uses;
        self.by_use.insert(self.uses, *id);
        Some(Arc::clone(&stored.value))
    }

    /// Connection `holder` is done with `id`: freed if nobody else holds it.
    pub fn release(&mut self, holder: u64, id: &SharedId) {
        let unheld = self.entries.get_mut(id).is_some_and(|s| {
            s.holders.remove(&holder);
            s.holders.is_empty()
        });
        if unheld {
            self.remove(id);
        }
    }

    /// Connection `holder` closed: everything only it held is freed.
    pub fn release_all(&mut self, holder: u64) {
        let ids: Vec<SharedId> = self
            .entries
            .iter()
            .filter(|(_, s)| s.holders.contains(&holder))
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            self.release(holder, &id);
        }
    }

    fn remove(&mut self, id: &SharedId) {
        if let Some(stored) = self.entries.remove(id) {
            self.by_use.remove(&stored.last_used);
            self.used -= stored.value.len() as u64;
            self.cost -= stored.value.len() as u64 + ENTRY_COST;
        }
    }

    /// Bytes held now.
    pub fn used(&self) -> u64 {
        self.used
    }

    /// Values held now.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests;
