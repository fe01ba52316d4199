//! Who may hold a connection, as pure counting: strangers (connections that
//! have not proved the key yet) have limits of their own, overall
//! (`--max-unauthenticated`) and per source address (`--max-per-source`),
//! apart from the limit on authenticated clients (`--max-connections`). So a
//! stranger, however many sockets it opens, never takes a client's slot,
//! and one address cannot take every stranger's slot.
//!
//! When the strangers' slots are all taken, overall or from one address, a
//! newcomer does not wait behind idle sockets: the oldest stranger is
//! evicted to make room (the oldest from the newcomer's own address when
//! that address is at its limit, else the oldest of all). A client
//! completes its handshake in a round trip or two, so only a flood of
//! newcomers faster than that could evict it, and a neighbour behind the
//! same address (a shared NAT, a login node) holding idle sockets only
//! loses its own oldest ones. Evicted connections still count until their
//! threads have closed them, up to as many again as the strangers' limit,
//! so threads stay bounded: at most `clients + 2 × unauthenticated`
//! connections are ever open.
//!
//! No lock, no socket: the node keeps one [`Admission`] under its
//! connections' lock and asks it at accept, at authentication and at close.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::IpAddr;

/// The limits a node admits connections under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AdmissionLimits {
    /// Authenticated clients at once.
    pub(crate) clients: usize,
    /// Connections still in their handshake, from anywhere.
    pub(crate) unauthenticated: usize,
    /// Connections still in their handshake, from one address.
    pub(crate) per_source: usize,
}

/// Why a connection is refused (for now: the client retries).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Refused {
    /// Authenticated clients at their limit.
    #[error("too many connections (limit {0})")]
    Clients(usize),
    /// Connections in their handshake at their limit (and as many evicted
    /// ones still closing).
    #[error("too many unauthenticated connections (limit {0})")]
    Unauthenticated(usize),
    /// Connections in their handshake from this address at their limit
    /// (and as many evicted ones still closing).
    #[error("too many unauthenticated connections from {0} (limit {1})")]
    Source(IpAddr, usize),
    /// Evicted to make room for a newer stranger.
    #[error("evicted: too many unauthenticated connections (limit {0}), the oldest go first")]
    Evicted(usize),
}

/// The connections by kind and source; connections are named by ids that
/// grow with their age.
#[derive(Debug)]
pub(crate) struct Admission {
    limits: AdmissionLimits,
    /// Strangers, oldest first, with their source.
    strangers: BTreeMap<u64, IpAddr>,
    /// Strangers by source, oldest first.
    per_source: HashMap<IpAddr, BTreeSet<u64>>,
    clients: HashSet<u64>,
    /// Evicted strangers not closed yet.
    evicted: HashSet<u64>,
}

impl Admission {
    pub(crate) fn new(limits: AdmissionLimits) -> Self {
        Admission {
            limits,
            strangers: BTreeMap::new(),
            per_source: HashMap::new(),
            clients: HashSet::new(),
            evicted: HashSet::new(),
        }
    }

    /// Whether a new connection from `source` would be let in now.
    pub(crate) fn check(&self, source: IpAddr) -> Result<(), Refused> {
        self.victim(source).map(|_| ())
    }

    /// Whom a new connection from `source` would evict (`Ok(None)`: it fits
    /// without evicting anyone), or why it is refused.
    fn victim(&self, source: IpAddr) -> Result<Option<u64>, Refused> {
        let l = &self.limits;
        if self.clients.len() >= l.clients {
            return Err(Refused::Clients(l.clients));
        }
        let mine = self.per_source.get(&source);
        let (victim, refused) = if mine.map_or(0, BTreeSet::len) >= l.per_source {
            let oldest = mine.and_then(|ids| ids.first().copied());
            (oldest, Refused::Source(source, l.per_source))
        } else if self.strangers.len() >= l.unauthenticated {
            let oldest = self.strangers.keys().next().copied();
            (oldest, Refused::Unauthenticated(l.unauthenticated))
        } else {
            return Ok(None);
        };
        match victim {
            Some(old) if self.evicted.len() < l.unauthenticated => Ok(Some(old)),
            // A limit of 0, or as many evicted ones as strangers still
            // closing: no room.
            _ => Err(refused),
        }
    }

    /// Lets connection `id` from `source` in, as a stranger, if it may
    /// (`id` larger than any before); `Ok(Some(oldest))` if the stranger
    /// `oldest` was evicted to make room: close it.
    pub(crate) fn open(&mut self, id: u64, source: IpAddr) -> Result<Option<u64>, Refused> {
        let evict = self.victim(source)?;
        if let Some(old) = evict {
            self.forget_stranger(old);
            self.evicted.insert(old);
        }
        self.strangers.insert(id, source);
        self.per_source.entry(source).or_default().insert(id);
        Ok(evict)
    }

    /// Stranger `id` proved the key: it becomes a client if there is room;
    /// else (or if it was evicted) it is refused, to be closed.
    pub(crate) fn authenticate(&mut self, id: u64) -> Result<(), Refused> {
        if self.evicted.contains(&id) {
            return Err(Refused::Evicted(self.limits.unauthenticated));
        }
        if self.clients.len() >= self.limits.clients {
            return Err(Refused::Clients(self.limits.clients));
        }
        if self.forget_stranger(id) {
            self.clients.insert(id);
        }
        Ok(())
    }

    /// Connection `id` closed.
    pub(crate) fn close(&mut self, id: u64) {
        if !self.clients.remove(&id) && !self.evicted.remove(&id) {
            self.forget_stranger(id);
        }
    }

    /// Takes `id` off the strangers; false if it was not one.
    fn forget_stranger(&mut self, id: u64) -> bool {
        let Some(source) = self.strangers.remove(&id) else {
            return false;
        };
        if let Some(ids) = self.per_source.get_mut(&source) {
            ids.remove(&id);
            if ids.is_empty() {
                self.per_source.remove(&source);
            }
        }
        true
    }

    /// Authenticated clients now.
    pub(crate) fn clients(&self) -> usize {
        self.clients.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1));

    fn admission(clients: usize, unauthenticated: usize, per_source: usize) -> Admission {
        Admission::new(AdmissionLimits {
            clients,
            unauthenticated,
            per_source,
        })
    }

    #[test]
    fn a_source_at_its_limit_evicts_its_own_oldest_and_no_other_sources() {
        let mut a = admission(10, 10, 2);
        assert_eq!(a.open(1, B), Ok(None));
        assert_eq!(a.open(2, A), Ok(None));
        assert_eq!(a.open(3, A), Ok(None));
        assert_eq!(a.open(4, A), Ok(Some(2)), "A's oldest goes, not B's");
        assert_eq!(a.authenticate(2), Err(Refused::Evicted(10)));
        assert_eq!(a.authenticate(4), Ok(()), "the newcomer gets through");
        assert_eq!(a.open(5, A), Ok(None), "a slot of A came back");
        assert_eq!(a.open(6, A), Ok(Some(3)));
        assert_eq!(a.authenticate(1), Ok(()), "B was never touched");
    }

    #[test]
    fn a_client_behind_a_neighbours_idle_sockets_gets_in_every_time() {
        // The neighbour holds 16 idle sockets from the client's address and
        // opens one more before each of the client's 40 handshakes.
        let mut a = admission(100, 64, 16);
        let mut id = 0;
        let mut next = || {
            id += 1;
            id
        };
        for _ in 0..16 {
            a.open(next(), A).unwrap();
        }
        let mut done = 0;
        for _ in 0..40 {
            let idle = next();
            if let Ok(Some(old)) = a.open(idle, A) {
                a.close(old); // its thread closes it
            }
            let client = next();
            if let Some(old) = a.open(client, A).unwrap() {
                a.close(old);
            }
            if a.authenticate(client).is_ok() {
                done += 1;
                a.close(client);
            }
        }
        assert_eq!(done, 40);
        // The neighbour held 16 at each of the client's opens; the last
        // client took one of them.
        assert_eq!(a.per_source[&A].len(), 15);
    }

    #[test]
    fn evictions_from_one_source_are_bounded_while_evicted_ones_close() {
        let mut a = admission(10, 2, 1);
        assert_eq!(a.open(1, A), Ok(None));
        assert_eq!(a.open(2, A), Ok(Some(1)));
        assert_eq!(a.open(3, A), Ok(Some(2)));
        assert_eq!(a.open(4, A), Err(Refused::Source(A, 1)), "2 still closing");
        assert_eq!(a.open(5, B), Ok(None), "another source has room");
        a.close(1);
        assert_eq!(a.open(6, A), Ok(Some(3)));
    }

    #[test]
    fn a_newcomer_evicts_the_oldest_stranger_and_evictions_are_bounded() {
        let mut a = admission(10, 2, 10);
        assert_eq!(a.open(1, A), Ok(None));
        assert_eq!(a.open(2, A), Ok(None));
        assert_eq!(a.open(3, B), Ok(Some(1)), "the oldest goes");
        assert_eq!(a.authenticate(1), Err(Refused::Evicted(2)));
        assert_eq!(a.open(4, A), Ok(Some(2)));
        // Two evicted ones still closing: no more evictions until they go.
        assert_eq!(a.open(5, A), Err(Refused::Unauthenticated(2)));
        a.close(1);
        assert_eq!(a.open(6, B), Ok(Some(3)));
        // The newest stranger authenticates: a client, out of the strangers.
        assert_eq!(a.authenticate(6), Ok(()));
        assert_eq!(a.clients(), 1);
        assert_eq!(a.open(7, A), Ok(None), "room among the strangers");
    }

    #[test]
    fn clients_hold_their_own_slots() {
        let mut a = admission(1, 4, 4);
        a.open(1, A).unwrap();
        a.open(2, B).unwrap();
        a.authenticate(1).unwrap();
        assert_eq!(a.authenticate(2), Err(Refused::Clients(1)));
        assert_eq!(a.open(3, A), Err(Refused::Clients(1)), "clients full");
        a.close(2);
        a.close(1);
        assert_eq!(a.clients(), 0);
        assert!(a.strangers.is_empty() && a.per_source.is_empty() && a.evicted.is_empty());
    }
}
