//! The simulated clock, the event agenda and the network: no sockets, no
//! threads. Time is nanoseconds since a base `Instant`, handed to the
//! state machines as `base + offset`; it moves only when the next event is
//! taken from the agenda.

use std::time::{Duration, Instant};

/// Something that happens at a simulated time. `node` is the index of the
/// node (and of the client's link to it); `conn` names the connection, so
/// that what was in flight on a closed one is dropped.
pub(crate) enum Ev {
    /// The client's dial of `node` ended (connected, or not: the node is
    /// silent).
    Dialled { node: u32 },
    /// Bytes the client wrote reach the node.
    ToNode {
        node: u32,
        conn: u32,
        bytes: Vec<u8>,
    },
    /// Bytes the node wrote reach the client.
    ToClient {
        node: u32,
        conn: u32,
        bytes: Vec<u8>,
    },
    /// The client closed connection `conn`: the node hears it.
    ClosedToNode { node: u32, conn: u32 },
    /// The node closed connection `conn`: the client hears it.
    ClosedToClient { node: u32, conn: u32 },
    /// The time the client's link asked to be woken at.
    ClientTimer { node: u32 },
    /// The time the node's link asked to be woken at.
    NodeTimer { node: u32, conn: u32 },
    /// A worker of `node` finished job `id`.
    Finished {
        node: u32,
        conn: u32,
        id: u64,
        attempt: u32,
    },
    /// The node's connection driver wakes and hands its finished jobs to
    /// its link (one batch per turn, as ppserver's driver does).
    Flush { node: u32, conn: u32 },
    /// The client's driver of `node` was woken by a push to the queue.
    Turn { node: u32 },
    /// The submitter queues its next batch.
    Submit,
}

/// The agenda's queue: a radix heap over keys (time, sequence). Nothing is
/// scheduled before the last event taken (time only moves forward), so
/// each entry sits in the bucket of the highest bit in which its key
/// differs from the last key taken, and moves only to lower buckets: a
/// push is an append, and with 10,000 nodes (some 100,000 events waiting)
/// a take touches a few contiguous buckets instead of a binary heap's
/// scattered path.
struct Radix {
    last: u128,
    buckets: Vec<Vec<(u128, Ev)>>,
    /// A spare bucket, to redistribute into without allocating.
    spare: Vec<(u128, Ev)>,
}

fn bucket(key: u128, last: u128) -> usize {
    (u128::BITS - (key ^ last).leading_zeros()) as usize
}

impl Radix {
    fn new() -> Self {
        Radix {
            last: 0,
            buckets: (0..=u128::BITS).map(|_| Vec::new()).collect(),
            spare: Vec::new(),
        }
    }

    fn push(&mut self, key: u128, ev: Ev) {
        if key < self.last {
            self.rebase(key);
        }
        self.buckets[bucket(key, self.last)].push((key, ev));
    }

    /// Makes `key` (below the last taken) the new base: every entry is
    /// placed again. Only between runs, when the clock was moved to a time
    /// before the next event.
    fn rebase(&mut self, key: u128) {
        self.last = key;
        let all: Vec<_> = self.buckets.iter_mut().flat_map(std::mem::take).collect();
        for (k, ev) in all {
            self.buckets[bucket(k, key)].push((k, ev));
        }
    }

    /// The smallest key, moved to bucket 0 (the base becomes it).
    fn min(&mut self) -> Option<u128> {
        if let Some((k, _)) = self.buckets[0].last() {
            return Some(*k);
        }
        let i = self.buckets.iter().position(|b| !b.is_empty())?;
        let min = self.buckets[i].iter().map(|(k, _)| *k).min()?;
        self.last = min;
        std::mem::swap(&mut self.buckets[i], &mut self.spare);
        let mut moving = std::mem::take(&mut self.spare);
        for (k, ev) in moving.drain(..) {
            self.buckets[bucket(k, min)].push((k, ev));
        }
        self.spare = moving;
        Some(min)
    }

    fn pop(&mut self) -> Option<(u128, Ev)> {
        self.min()?;
        self.buckets[0].pop()
    }
}

/// The simulated clock and what is due, earliest first.
pub(crate) struct Agenda {
    base: Instant,
    now: u64,
    queue: Radix,
    seq: u64,
}

impl Agenda {
    /// Time zero is `base`.
    pub(crate) fn new(base: Instant) -> Self {
        Agenda {
            base,
            now: 0,
            queue: Radix::new(),
            seq: 0,
        }
    }

    /// Simulated nanoseconds since time zero.
    pub(crate) fn now_ns(&self) -> u64 {
        self.now
    }

    /// The simulated time as the state machines see it.
    pub(crate) fn now(&self) -> Instant {
        self.base + Duration::from_nanos(self.now)
    }

    /// `t` in simulated nanoseconds (0 if before time zero).
    pub(crate) fn ns_of(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.base).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Schedules `ev` at `at` (never in the past).
    pub(crate) fn at(&mut self, at: u64, ev: Ev) {
        self.seq += 1;
        let at = at.max(self.now);
        self.queue
            .push(u128::from(at) << 64 | u128::from(self.seq), ev);
    }

    /// Schedules `ev` `after` nanoseconds from now.
    pub(crate) fn after(&mut self, after: u64, ev: Ev) {
        self.at(self.now.saturating_add(after), ev);
    }

    /// The next event due no later than `until`, the clock moved to it.
    pub(crate) fn next_until(&mut self, until: u64) -> Option<Ev> {
        if (self.queue.min()? >> 64) as u64 > until {
            return None;
        }
        let (key, ev) = self.queue.pop()?;
        self.now = (key >> 64) as u64;
        Some(ev)
    }

    /// Moves the clock to `t` (when nothing is due before it).
    pub(crate) fn advance_to(&mut self, t: u64) {
        self.now = self.now.max(t);
    }
}

/// A small, fast, seeded generator (SplitMix64): the same seed gives the
/// same run.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// How the simulated network behaves.
#[derive(Clone, Copy, Debug)]
pub(crate) struct NetConfig {
    /// One-way latency of a segment.
    pub(crate) latency_ns: u64,
    /// Up to this much more, uniform.
    pub(crate) jitter_ns: u64,
    /// Chance that a segment is lost and sent again.
    pub(crate) loss: f64,
    /// How much later a lost segment arrives: sent again after duplicate
    /// acknowledgements or a tail-loss probe, a few round trips.
    pub(crate) retransmit_ns: u64,
}

/// One direction of one node's connection. TCP delivers in order: a
/// segment held back by a retransmission holds back those behind it.
#[derive(Clone, Copy, Default)]
struct Pipe {
    /// When the last segment sent this way arrives.
    last: u64,
}

/// The network between the client and every node.
pub(crate) struct Net {
    config: NetConfig,
    rng: Rng,
    to_node: Vec<Pipe>,
    to_client: Vec<Pipe>,
    /// Segments lost (and sent again) so far.
    pub(crate) lost: u64,
    /// Bytes sent either way.
    pub(crate) bytes: u64,
}

impl Net {
    pub(crate) fn new(config: NetConfig, nodes: usize, seed: u64) -> Self {
        Net {
            config,
            rng: Rng::new(seed),
            to_node: vec![Pipe::default(); nodes],
            to_client: vec![Pipe::default(); nodes],
            lost: 0,
            bytes: 0,
        }
    }

    /// When a segment of `len` bytes sent at `now` towards the node (or
    /// the client) arrives.
    pub(crate) fn arrival(&mut self, node: usize, to_node: bool, now: u64, len: usize) -> u64 {
        let mut delay = self.config.latency_ns;
        if self.config.jitter_ns > 0 {
            delay += self.rng.next_u64() % self.config.jitter_ns;
        }
        if self.config.loss > 0.0 && self.rng.unit() < self.config.loss {
            self.lost += 1;
            delay += self.config.retransmit_ns;
        }
        self.bytes += len as u64;
        let pipes = match to_node {
            true => &mut self.to_node,
            false => &mut self.to_client,
        };
        let pipe = &mut pipes[node];
        pipe.last = pipe.last.max(now + delay);
        pipe.last
    }

    /// The time a dial takes: one round trip.
    pub(crate) fn dial_ns(&self) -> u64 {
        2 * self.config.latency_ns
    }

    /// A draw in [0, 1) for whoever needs one (job run times).
    pub(crate) fn unit(&mut self) -> f64 {
        self.rng.unit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(ev: &Ev) -> u32 {
        match ev {
            Ev::Turn { node } => *node,
            _ => u32::MAX,
        }
    }

    #[test]
    fn the_agenda_gives_events_by_time_then_in_the_order_scheduled() {
        let mut agenda = Agenda::new(Instant::now());
        let mut rng = Rng::new(7);
        // (time, order scheduled) of what is still due, as a plain list.
        let mut due: Vec<(u64, u32)> = Vec::new();
        let mut next = 0u32;
        for round in 0..2000 {
            for _ in 0..(rng.next_u64() % 4) {
                // Many events at the same times, some far ahead.
                let after = match rng.next_u64() % 3 {
                    0 => 0,
                    1 => rng.next_u64() % 8,
                    _ => rng.next_u64() % 1_000_000_000,
                };
                agenda.after(after, Ev::Turn { node: next });
                due.push((agenda.now_ns() + after, next));
                next += 1;
            }
            // Now and then the clock is moved past nothing (as between runs).
            if round % 97 == 0 {
                let t = agenda.now_ns() + 3;
                if due.iter().all(|(at, _)| *at > t) {
                    agenda.advance_to(t);
                }
            }
            // Now and then only what is due now (the next may lie beyond:
            // what is scheduled after that is at or after now, not after it).
            let until = match round % 13 {
                0 => agenda.now_ns(),
                _ => u64::MAX,
            };
            if let Some(ev) = agenda.next_until(until) {
                due.sort();
                let (at, first) = due.remove(0);
                assert_eq!((agenda.now_ns(), id(&ev)), (at, first));
            }
        }
        due.sort();
        for (at, first) in due {
            let ev = agenda.next_until(u64::MAX).map(|ev| id(&ev));
            assert_eq!((agenda.now_ns(), ev), (at, Some(first)));
        }
        assert!(agenda.next_until(u64::MAX).is_none());
    }

    #[test]
    fn a_lost_segment_holds_back_those_behind_it() {
        let config = NetConfig {
            latency_ns: 100,
            jitter_ns: 50,
            loss: 0.2,
            retransmit_ns: 10_000,
        };
        let mut net = Net::new(config, 2, 3);
        let mut last = 0;
        for t in 0..1000 {
            let at = net.arrival(1, true, t * 1000, 1);
            assert!(at >= last && at >= t * 1000 + 100, "out of order at {t}");
            last = at;
        }
        assert!(net.lost > 100, "{} of 1000 lost", net.lost);
        // The other direction and the other node are not held back (at
        // most one retransmission of their own).
        assert!(last > 999_000);
        assert!(net.arrival(0, true, 0, 1) <= 10_150);
        assert!(net.arrival(1, false, 0, 1) <= 10_150);
    }
}
