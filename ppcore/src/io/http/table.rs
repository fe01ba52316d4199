//! The server's open connections as pure state: who is admitted, who is
//! evicted to make room, whose deadline passed. Time is passed in.

use super::limits::Limits;
use std::collections::HashMap;
use std::time::Instant;

/// What a connection is doing, for its deadline and for eviction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for (the rest of) a request head; ends by
    /// [`Limits::request_timeout`] after it began.
    Reading,
    /// Sending an answer; each write's progress moves its deadline
    /// ([`Limits::write_timeout`]).
    Writing,
    /// An event stream; it has a deadline only while bytes wait to be sent.
    Streaming {
        /// Whether bytes wait for the peer.
        pending: bool,
    },
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    phase: Phase,
    /// When the phase began, or the last write progressed.
    since: Instant,
}

/// What to do with a new connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// There is room: take it.
    Take,
    /// Full: close this connection first, then take the new one. The
    /// victim is the one longest waiting for a request (else the slowest
    /// reader of an answer), so idle and trickling sockets cannot lock a
    /// real request out.
    Evict(usize),
    /// Full of event streams: refuse the new connection.
    Refuse,
}

/// Connections by id (the server's token), each with its phase.
#[derive(Debug)]
pub struct Table {
    limits: Limits,
    conns: HashMap<usize, Entry>,
    streams: usize,
}

impl Table {
    /// An empty table under `limits`.
    pub fn new(limits: Limits) -> Self {
        Table {
            limits,
            conns: HashMap::new(),
            streams: 0,
        }
    }

    /// Connections open.
    pub fn len(&self) -> usize {
        self.conns.len()
    }

    /// Whether no connection is open.
    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    /// Event streams open.
    pub fn streams(&self) -> usize {
        self.streams
    }

    /// Whether a new connection may be taken, and at whose expense.
    pub fn admit(&self) -> Admission {
        if self.conns.len() < self.limits.max_conns {
            return Admission::Take;
        }
        let oldest = |phase: Phase| {
            self.conns
                .iter()
                .filter(|(_, e)| e.phase == phase)
                .min_by_key(|(id, e)| (e.since, **id))
                .map(|(id, _)| *id)
        };
        match oldest(Phase::Reading).or_else(|| oldest(Phase::Writing)) {
            Some(id) => Admission::Evict(id),
            None => Admission::Refuse,
        }
    }

    /// Records a new connection `id`, reading its first request from `now`.
    pub fn insert(&mut self, id: usize, now: Instant) {
        self.remove(id);
        let phase = Phase::Reading;
        self.conns.insert(id, Entry { phase, since: now });
    }

    /// Forgets `id`.
    pub fn remove(&mut self, id: usize) {
        if let Some(e) = self.conns.remove(&id) {
            if matches!(e.phase, Phase::Streaming { .. }) {
                self.streams -= 1;
            }
        }
    }

    /// `id` waits for its next request from `now`.
    pub fn reading(&mut self, id: usize, now: Instant) {
        self.set(id, Phase::Reading, now);
    }

    /// `id` sends an answer, or made progress sending it, at `now`.
    pub fn writing(&mut self, id: usize, now: Instant) {
        self.set(id, Phase::Writing, now);
    }

    /// `id` is (becomes) an event stream, with bytes `pending` or not, at
    /// `now`. False, and nothing changed, if it would be one stream over
    /// [`Limits::max_streams`].
    pub fn streaming(&mut self, id: usize, pending: bool, now: Instant) -> bool {
        let Some(phase) = self.conns.get(&id).map(|e| e.phase) else {
            return false;
        };
        if !matches!(phase, Phase::Streaming { .. }) {
            if self.streams >= self.limits.max_streams {
                return false;
            }
            self.streams += 1;
        }
        self.set(id, Phase::Streaming { pending }, now);
        true
    }

    fn set(&mut self, id: usize, phase: Phase, now: Instant) {
        if let Some(e) = self.conns.get_mut(&id) {
            if matches!(e.phase, Phase::Streaming { .. })
                && !matches!(phase, Phase::Streaming { .. })
            {
                self.streams -= 1;
            }
            *e = Entry { phase, since: now };
        }
    }

    /// The phase of `id`, if it is open.
    pub fn phase(&self, id: usize) -> Option<Phase> {
        self.conns.get(&id).map(|e| e.phase)
    }

    fn deadline(&self, e: &Entry) -> Option<Instant> {
        match e.phase {
            Phase::Reading => Some(e.since + self.limits.request_timeout),
            Phase::Writing | Phase::Streaming { pending: true } => {
                Some(e.since + self.limits.write_timeout)
            }
            Phase::Streaming { pending: false } => None,
        }
    }

    /// The earliest deadline of any connection.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.conns.values().filter_map(|e| self.deadline(e)).min()
    }

    /// The connections whose deadline is at or before `now`, to be closed.
    pub fn expired(&self, now: Instant) -> Vec<usize> {
        let mut ids: Vec<usize> = (self.conns.iter())
            .filter(|(_, e)| self.deadline(e).is_some_and(|d| d <= now))
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        ids
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn table(max_conns: usize, max_streams: usize) -> Table {
        Table::new(Limits {
            max_conns,
            max_streams,
            request_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(5),
            ..Limits::default()
        })
    }

    #[test]
    fn a_full_table_evicts_the_longest_idle_reader_first() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut t = table(3, 1);
        assert_eq!(t.admit(), Admission::Take);
        t.insert(1, t0);
        t.insert(2, t0 + s(1));
        t.insert(3, t0 + s(2));
        // 1 answered a request and waits for the next: its idle time restarts.
        t.writing(1, t0 + s(3));
        t.reading(1, t0 + s(3));
        assert_eq!(t.admit(), Admission::Evict(2));
        t.remove(2);
        t.insert(4, t0 + s(4));
        assert_eq!(t.admit(), Admission::Evict(3));
    }

    #[test]
    fn writers_are_evicted_only_when_no_one_is_reading_and_streams_never() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut t = table(3, 2);
        for id in 1..=3 {
            t.insert(id, t0);
        }
        assert!(t.streaming(1, false, t0));
        t.writing(2, t0 + s(2));
        t.writing(3, t0 + s(1));
        assert_eq!(t.admit(), Admission::Evict(3), "the slowest writer");
        assert!(t.streaming(3, false, t0));
        assert!(!t.streaming(2, false, t0), "two streams at most");
        assert_eq!(t.phase(2), Some(Phase::Writing));
        assert_eq!(t.admit(), Admission::Evict(2));
        t.remove(2);
        t.insert(2, t0);
        t.remove(2);
        assert_eq!((t.len(), t.streams()), (2, 2));
        t.insert(2, t0);
        assert!(!t.streaming(2, true, t0));
        t.remove(1);
        assert_eq!(t.streams(), 1, "a closed stream frees its place");
        assert!(t.streaming(2, true, t0));
        t.reading(2, t0);
        assert_eq!(t.streams(), 1, "a stream that ends frees its place");
        t.insert(1, t0);
        assert!(t.streaming(1, false, t0));
        assert_eq!(t.admit(), Admission::Evict(2), "the one reader");
        let mut t = table(1, 1);
        t.insert(1, t0);
        assert!(t.streaming(1, false, t0));
        assert_eq!(t.admit(), Admission::Refuse, "only streams");
    }

    #[test]
    fn deadlines_follow_the_phase() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut t = table(8, 8);
        assert!(t.is_empty() && t.next_deadline().is_none());
        t.insert(1, t0); // a head due by t0 + 10
        t.insert(2, t0);
        t.writing(2, t0 + s(1)); // progress due by t0 + 6
        t.insert(3, t0);
        assert!(t.streaming(3, false, t0)); // nothing pending: no deadline
        t.insert(4, t0);
        assert!(t.streaming(4, true, t0 + s(2))); // due by t0 + 7
        assert_eq!(t.next_deadline(), Some(t0 + s(6)));
        assert_eq!(t.expired(t0 + s(5)), Vec::<usize>::new());
        assert_eq!(t.expired(t0 + s(6)), vec![2]);
        t.writing(2, t0 + s(6)); // it progressed
        assert_eq!(t.expired(t0 + s(10)), vec![1, 4]);
        assert_eq!(t.expired(t0 + s(3600)), vec![1, 2, 4]);
        assert!(t.streaming(4, false, t0 + s(3)));
        assert_eq!(t.expired(t0 + s(3600)), vec![1, 2]);
    }
}
