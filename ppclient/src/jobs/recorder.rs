//! What the dashboard remembers beyond the server's statistics: the last
//! tasks (a bounded ring), recent errors, group sizes, reruns per node, and
//! per-node traffic and round-trip time.
//!
//! Pure bookkeeping, no I/O. Workers record a finished task into a shard
//! of their own (eight, chosen per thread as in `NodeCounters`), so that
//! recording takes an uncontended lock on a cache line nobody else writes.
//! Tiny jobs are sampled: a thread looks at one job in [`EVERY`] shorter than
//! [`SHORT`], and a shard records at most [`RATE`] tasks a second (in bursts
//! of up to one second's worth; errors always), so that a flood of
//! microsecond jobs costs a thread-local countdown per job, not a lock.
//! (Measured: checking the rate budget on every no-op job, a few clock
//! conversions and a load, cost the local pool about 10%.) The counts,
//! progress and node figures come from the exact statistics, not the ring.
//! A local worker marks itself busy with a plain store to a flag of its own.

use crossbeam_utils::CachePadded;
use ppcore::sync::lock;
use ppcore::{JobError, Pending};
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock, Weak};
use std::time::{Duration, Instant};

/// The name the local pool goes by in errors and stats.
pub(crate) const LOCAL: &str = "local";

/// How many finished tasks the dashboard keeps, in all.
pub(crate) const TASK_RING: usize = 10_000;
const SHARDS: usize = 8;
const PER_SHARD: usize = TASK_RING / SHARDS;
/// Tasks a shard records per second at most, beyond bursts.
pub(crate) const RATE: u64 = 2_000;
const INTERVAL_US: u64 = 1_000_000 / RATE;
/// How far ahead of a task's end a shard's budget may run (one second's worth).
const BURST_US: u64 = 1_000_000;
/// Jobs shorter than this are looked at one in [`EVERY`] before the rate budget.
const SHORT: Duration = Duration::from_micros(100);
const EVERY: u32 = 64;
/// How many recent errors it keeps.
pub(crate) const ERROR_RING: usize = 100;
/// The longest error message kept, in bytes.
const MAX_MESSAGE: usize = 2_000;

thread_local! {
    /// This thread's shard, assigned round-robin on first use (`SHARDS`: not yet).
    static SHARD: Cell<usize> = const { Cell::new(SHARDS) };
    /// Jobs this thread lets pass before it looks at the rate budget again.
    static SKIP: Cell<u32> = const { Cell::new(0) };
    /// This thread's busy flag, for the recorder at the given address.
    static BUSY: RefCell<Option<(usize, Arc<Flag>)>> = const { RefCell::new(None) };
}

/// Whether this thread lets a short job pass unrecorded (all but one in [`EVERY`]).
fn skip() -> bool {
    SKIP.with(|c| match c.get() {
        0 => {
            c.set(EVERY - 1);
            false
        }
        n => {
            c.set(n - 1);
            true
        }
    })
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// One finished task.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TaskRecord {
    /// Order of recording within its shard.
    pub(crate) seq: u64,
    pub(crate) job: &'static str,
    /// Index into the recorder's place names (0 is the local pool).
    pub(crate) place: u32,
    /// Microseconds since the recorder started.
    pub(crate) start_us: u64,
    pub(crate) end_us: u64,
    pub(crate) failed: bool,
}

/// One job error, as the dashboard lists it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ErrorRecord {
    pub(crate) at_us: u64,
    pub(crate) job: &'static str,
    pub(crate) place: u32,
    pub(crate) kind: String,
    pub(crate) message: String,
}

/// A group's size so far.
#[derive(Clone)]
pub(crate) struct GroupRecord {
    pub(crate) total: u64,
    pub(crate) pending: Arc<Pending>,
    pub(crate) first_us: u64,
}

#[derive(Default)]
struct Ring {
    records: VecDeque<TaskRecord>,
    next_seq: u64,
}

#[derive(Default)]
struct Shard {
    /// When the shard may record again (µs since the recorder started;
    /// a generic cell rate: each record moves it on by [`INTERVAL_US`]).
    next_us: AtomicU64,
    ring: Mutex<Ring>,
}

/// A worker's busy flag, on a cache line of its own: two workers' flags
/// side by side would bounce one line between their cores on every job.
type Flag = CachePadded<AtomicBool>;

/// Where to continue reading new tasks from, per shard.
pub(crate) type Cursor = [u64; SHARDS];

/// The dashboard's memory; shared by the server's threads and the dashboard's.
pub(crate) struct Recorder {
    born: Instant,
    shards: [CachePadded<Shard>; SHARDS],
    places: RwLock<Vec<Arc<str>>>,
    errors: Mutex<VecDeque<ErrorRecord>>,
    /// Local workers' busy flags (a thread's goes when it ends).
    busy: Mutex<Vec<Weak<Flag>>>,
    groups: Mutex<HashMap<String, GroupRecord>>,
    reruns: Mutex<HashMap<String, u64>>,
    /// Where the dashboard is served, once it is.
    pub(crate) addr: OnceLock<SocketAddr>,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder {
            born: Instant::now(),
            shards: Default::default(),
            places: RwLock::new(vec![Arc::from(LOCAL)]),
            errors: Mutex::new(VecDeque::new()),
            busy: Mutex::new(Vec::new()),
            groups: Mutex::new(HashMap::new()),
            reruns: Mutex::new(HashMap::new()),
            addr: OnceLock::new(),
        }
    }
}

impl Recorder {
    /// Time since the recorder started.
    pub(crate) fn elapsed(&self) -> Duration {
        self.born.elapsed()
    }

    fn shard(&self) -> &Shard {
        let i = SHARD.with(|s| match s.get() {
            SHARDS => {
                static NEXT: AtomicUsize = AtomicUsize::new(0);
                let i = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
                s.set(i);
                i
            }
            i => i,
        });
        &self.shards[i]
    }

    /// Sets this thread's busy flag.
    fn set_busy(&self, busy: bool) {
        let me = self as *const Recorder as usize;
        BUSY.with(|slot| {
            let mut slot = slot.borrow_mut();
            match &*slot {
                Some((owner, flag)) if *owner == me => flag.store(busy, Ordering::Relaxed),
                _ => {
                    let flag = Arc::new(CachePadded::new(AtomicBool::new(busy)));
                    let mut all = lock(&self.busy);
                    all.retain(|f| f.strong_count() > 0);
                    all.push(Arc::downgrade(&flag));
                    *slot = Some((me, flag));
                }
            }
        });
    }

    /// A local worker starts a job.
    pub(crate) fn local_start(&self) {
        self.set_busy(true);
    }

    /// A local worker ran a job (started by `local_start`) from `started` for `took`.
    pub(crate) fn local_end(
        &self,
        job: &'static str,
        started: Instant,
        took: Duration,
        error: Option<&JobError>,
    ) {
        self.set_busy(false);
        if error.is_none() && took < SHORT && skip() {
            return;
        }
        let start_us = micros(started.saturating_duration_since(self.born));
        self.push(job, 0, start_us, start_us + micros(took), error);
    }

    /// A node's result for `job` arrived now; it ran there for `exec`.
    pub(crate) fn remote_end(
        &self,
        node: &str,
        job: &'static str,
        exec: Duration,
        error: Option<&JobError>,
    ) {
        if error.is_none() && exec < SHORT && skip() {
            return;
        }
        let place = self.place(node);
        let end_us = micros(self.born.elapsed());
        let start_us = end_us.saturating_sub(micros(exec));
        self.push(job, place, start_us, end_us, error);
    }

    fn push(
        &self,
        job: &'static str,
        place: u32,
        start_us: u64,
        end_us: u64,
        error: Option<&JobError>,
    ) {
        let shard = self.shard();
        let next = shard.next_us.load(Ordering::Relaxed);
        if error.is_none() && next > end_us + BURST_US {
            return; // over the rate: sampled out
        }
        shard
            .next_us
            .store(next.max(end_us) + INTERVAL_US, Ordering::Relaxed);
        {
            let mut ring = lock(&shard.ring);
            if ring.records.len() == PER_SHARD {
                ring.records.pop_front();
            }
            let seq = ring.next_seq;
            ring.next_seq += 1;
            ring.records.push_back(TaskRecord {
                seq,
                job,
                place,
                start_us,
                end_us,
                failed: error.is_some(),
            });
        }
        if let Some(e) = error {
            self.error(job, place, end_us, e);
        }
    }

    fn error(&self, job: &'static str, place: u32, at_us: u64, e: &JobError) {
        let mut message = e.message.clone();
        if message.len() > MAX_MESSAGE {
            let mut cut = MAX_MESSAGE;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push('…');
        }
        let record = ErrorRecord {
            at_us,
            job,
            place,
            kind: format!("{:?}", e.kind),
            message,
        };
        let mut errors = lock(&self.errors);
        if errors.len() == ERROR_RING {
            errors.pop_front();
        }
        errors.push_back(record);
    }

    /// The index of place `name`, added if new.
    pub(crate) fn place(&self, name: &str) -> u32 {
        let known = self.places.read().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = known.iter().position(|p| &**p == name) {
            return i as u32;
        }
        drop(known);
        let mut places = self.places.write().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = places.iter().position(|p| &**p == name) {
            return i as u32;
        }
        places.push(Arc::from(name));
        (places.len() - 1) as u32
    }

    /// Every place's name, by index.
    pub(crate) fn places(&self) -> Vec<Arc<str>> {
        self.places
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// A job of group `name` was submitted; `pending` counts its unfinished jobs.
    pub(crate) fn group(&self, name: &str, pending: &Arc<Pending>) {
        let mut groups = lock(&self.groups);
        match groups.get_mut(name) {
            Some(g) => g.total += 1,
            None => {
                let first_us = micros(self.born.elapsed());
                groups.insert(
                    name.to_owned(),
                    GroupRecord {
                        total: 1,
                        pending: Arc::clone(pending),
                        first_us,
                    },
                );
            }
        }
    }

    /// Every group so far, by name.
    pub(crate) fn groups(&self) -> Vec<(String, GroupRecord)> {
        let mut v: Vec<_> = lock(&self.groups)
            .iter()
            .map(|(k, g)| (k.clone(), g.clone()))
            .collect();
        v.sort_by(|a, b| a.1.first_us.cmp(&b.1.first_us).then(a.0.cmp(&b.0)));
        v
    }

    /// A job that was on `node` goes back in line.
    pub(crate) fn rerun(&self, node: &str) {
        *lock(&self.reruns).entry(node.to_owned()).or_default() += 1;
    }

    /// Jobs rerun after they were on `node`.
    pub(crate) fn reruns(&self, node: &str) -> u64 {
        lock(&self.reruns).get(node).copied().unwrap_or(0)
    }

    /// Local jobs running now.
    pub(crate) fn local_busy(&self) -> u64 {
        lock(&self.busy)
            .iter()
            .filter_map(Weak::upgrade)
            .filter(|f| f.load(Ordering::Relaxed))
            .count() as u64
    }

    /// The recent errors, oldest first.
    pub(crate) fn errors(&self) -> Vec<ErrorRecord> {
        lock(&self.errors).iter().cloned().collect()
    }

    /// Tasks recorded after `cursor` (which moves past them), the latest
    /// `max` of them, by end time.
    pub(crate) fn tasks_since(&self, cursor: &mut Cursor, max: usize) -> Vec<TaskRecord> {
        let mut out = Vec::new();
        for (shard, from) in self.shards.iter().zip(cursor.iter_mut()) {
            let ring = lock(&shard.ring);
            out.extend(ring.records.iter().filter(|r| r.seq >= *from).cloned());
            *from = ring.next_seq;
        }
        out.sort_by_key(|r| (r.end_us, r.start_us));
        let drop = out.len().saturating_sub(max);
        out.drain(..drop);
        out
    }
}

/// One node's traffic, jobs in flight and round-trip time, written by its
/// link's driver (the round trip as its link measured it) and read by the
/// dashboard.
#[derive(Default)]
pub(crate) struct LinkMeter {
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    in_flight: AtomicU64,
    /// The last round trip, µs; 0 until a ping was answered.
    rtt_us: AtomicU64,
    /// What the jobs sent there hold of its offer, as the client counts
    /// it (kept only while there is a dashboard).
    in_use: Mutex<Option<InUse>>,
}

/// Cpus, bytes of memory and thousandths of each named resource held.
pub(crate) type InUse = (u32, u64, Vec<(String, u64)>);

impl LinkMeter {
    /// `n` bytes were written to the node.
    pub(crate) fn sent(&self, n: usize) {
        self.bytes_out.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// `n` bytes were read from the node.
    pub(crate) fn received(&self, n: usize) {
        self.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// What the link says now: jobs in flight, and the last round trip.
    pub(crate) fn link(&self, in_flight: usize, rtt: Option<Duration>) {
        self.in_flight.store(in_flight as u64, Ordering::Relaxed);
        let us = rtt.map_or(0, |d| micros(d).max(1));
        self.rtt_us.store(us, Ordering::Relaxed);
    }

    /// What the jobs sent there hold now (`None`: the node made no offer).
    pub(crate) fn set_in_use(&self, in_use: Option<InUse>) {
        *ppcore::sync::lock(&self.in_use) = in_use;
    }

    /// What the jobs sent there held when last told.
    pub(crate) fn in_use(&self) -> Option<InUse> {
        ppcore::sync::lock(&self.in_use).clone()
    }

    /// Bytes (in, out) since the server started.
    pub(crate) fn bytes(&self) -> (u64, u64) {
        (
            self.bytes_in.load(Ordering::Relaxed),
            self.bytes_out.load(Ordering::Relaxed),
        )
    }

    /// Jobs sent to the node and not answered yet.
    pub(crate) fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// The last heartbeat's round trip, once there was one.
    pub(crate) fn rtt(&self) -> Option<Duration> {
        match self.rtt_us.load(Ordering::Relaxed) {
            0 => None,
            us => Some(Duration::from_micros(us)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ppcore::ErrorKind;

    #[test]
    fn the_ring_keeps_the_latest_tasks_and_a_cursor_reads_each_once() {
        let r = Recorder::default();
        let t0 = r.born;
        // Tasks a millisecond apart: the rate allows every one.
        for i in 0..(TASK_RING as u64 + 500) {
            r.local_start();
            r.local_end("j", t0 + Duration::from_millis(i), SHORT, None);
        }
        let mut cursor = Cursor::default();
        let all = r.tasks_since(&mut cursor, usize::MAX);
        // One thread writes one shard: it keeps its share of the ring.
        assert_eq!(all.len(), PER_SHARD);
        let last = (TASK_RING as u64 + 499) * 1000 + 100;
        assert_eq!(all.last().map(|t| t.end_us), Some(last));
        assert_eq!(all[0].end_us, last - (PER_SHARD as u64 - 1) * 1000);
        assert!(r.tasks_since(&mut cursor, usize::MAX).is_empty());
        let later = t0 + Duration::from_secs(100);
        r.local_start();
        assert_eq!(r.local_busy(), 1);
        r.local_end("k", later, SHORT * 3, None);
        assert_eq!(r.local_busy(), 0);
        let new = r.tasks_since(&mut cursor, usize::MAX);
        assert_eq!(new.len(), 1);
        assert_eq!((new[0].job, new[0].end_us), ("k", 100_000_300));
    }

    #[test]
    fn a_flood_of_tiny_tasks_is_sampled_but_errors_are_not() {
        let r = Recorder::default();
        let t0 = r.born;
        // 300,000 tasks within 30 ms: one in 64 is looked at; of those, a
        // burst's worth is kept, then the rate.
        for i in 0..300_000u64 {
            let e = (i % 10_000 == 0).then(|| JobError::new(ErrorKind::Failed, "x"));
            r.local_end(
                "j",
                t0 + Duration::from_nanos(i * 100),
                Duration::ZERO,
                e.as_ref(),
            );
        }
        let kept = r.tasks_since(&mut Cursor::default(), usize::MAX);
        assert!(kept.len() <= PER_SHARD, "{}", kept.len());
        // Recorded at all: a second's burst (2,000), 30 ms at the rate (60), the 30 errors.
        let recorded = kept.last().map_or(0, |t| t.seq + 1);
        assert!(
            (2_060..=2_100).contains(&recorded),
            "{recorded} of 300,000 recorded"
        );
        assert_eq!(r.errors().len(), 30, "every error is kept");
        assert!(
            kept.iter().any(|t| t.failed && t.end_us == 29_000),
            "the last error (task 290,000, at 29 ms) is in the ring"
        );
    }

    #[test]
    fn many_threads_never_keep_more_than_the_ring() {
        let r = Arc::new(Recorder::default());
        let threads: Vec<_> = (0..16)
            .map(|_| {
                let r = Arc::clone(&r);
                std::thread::spawn(move || {
                    for _ in 0..2_000 {
                        r.local_start();
                        r.local_end("j", Instant::now(), SHORT, None);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let mut cursor = Cursor::default();
        let all = r.tasks_since(&mut cursor, usize::MAX);
        assert!(all.len() <= TASK_RING && all.len() >= PER_SHARD);
        assert_eq!(r.tasks_since(&mut Cursor::default(), 10).len(), 10);
        assert_eq!(r.local_busy(), 0);
    }

    #[test]
    fn errors_are_kept_bounded_and_places_by_name() {
        let r = Recorder::default();
        assert_eq!(r.place("local"), 0);
        let big = "x".repeat(10_000);
        for i in 0..(ERROR_RING + 5) {
            let e = JobError::new(
                ErrorKind::Failed,
                if i == 0 { big.clone() } else { format!("e{i}") },
            );
            r.remote_end("10.0.0.2:60000", "j", Duration::from_millis(1), Some(&e));
        }
        assert_eq!(r.place("10.0.0.2:60000"), 1);
        let errors = r.errors();
        assert_eq!(errors.len(), ERROR_RING);
        assert_eq!(errors.last().map(|e| e.message.as_str()), Some("e104"));
        assert_eq!(errors[0].kind, "Failed");
        let r2 = Recorder::default();
        r2.error("j", 0, 0, &JobError::new(ErrorKind::Failed, big));
        assert!(r2.errors()[0].message.len() <= MAX_MESSAGE + 3);
    }

    #[test]
    fn a_link_meter_adds_bytes_and_keeps_the_links_last_figures() {
        let m = LinkMeter::default();
        assert_eq!((m.rtt(), m.in_flight()), (None, 0));
        m.sent(10);
        m.sent(5);
        m.received(7);
        assert_eq!(m.bytes(), (7, 15));
        m.link(3, Some(Duration::from_micros(250)));
        assert_eq!(
            (m.rtt(), m.in_flight()),
            (Some(Duration::from_micros(250)), 3)
        );
        m.link(0, Some(Duration::ZERO));
        assert_eq!(m.rtt(), Some(Duration::from_micros(1)), "0 means none yet");
        m.link(0, None);
        assert_eq!(m.rtt(), None);
    }

    #[test]
    fn groups_count_their_jobs() {
        let r = Recorder::default();
        let p = Arc::new(Pending::default());
        for _ in 0..3 {
            r.group("g", &p);
        }
        let g = r.groups();
        assert_eq!(g.len(), 1);
        assert_eq!((g[0].0.as_str(), g[0].1.total), ("g", 3));
        r.rerun("n");
        r.rerun("n");
        assert_eq!((r.reruns("n"), r.reruns("m")), (2, 0));
    }
}
