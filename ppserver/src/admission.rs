//! Who may hold a connection, as pure counting: strangers (connections that
//! have not proved the key yet) have limits of their own, overall
//! (`--max-unauthenticated`) and per source address (`--max-per-source`),
//! apart from the limit on authenticated clients (`--max-connections`). So a
//! stranger, however many sockets it opens, never takes a client's slot,
//! and one address cannot take every stranger's slot.
//!
//! No lock, no socket: the node keeps one [`Admission`] under its
//! connections' lock and asks it at accept, at authentication and at close.

use std::collections::HashMap;
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
    /// Connections in their handshake at their limit.
    #[error("too many unauthenticated connections (limit {0})")]
    Unauthenticated(usize),
    /// Connections in their handshake from this address at their limit.
    #[error("too many unauthenticated connections from {0} (limit {1})")]
    Source(IpAddr, usize),
}

/// The count of connections by kind and source.
#[derive(Debug)]
pub(crate) struct Admission {
    limits: AdmissionLimits,
    strangers: HashMap<IpAddr, usize>,
    unauthenticated: usize,
    clients: usize,
}

impl Admission {
    pub(crate) fn new(limits: AdmissionLimits) -> Self {
        Admission {
            limits,
            strangers: HashMap::new(),
            unauthenticated: 0,
            clients: 0,
        }
    }

    /// Whether a new connection from `source` would be let in now.
    pub(crate) fn check(&self, source: IpAddr) -> Result<(), Refused> {
        let l = &self.limits;
        if self.clients >= l.clients {
            return Err(Refused::Clients(l.clients));
        }
        if self.unauthenticated >= l.unauthenticated {
            return Err(Refused::Unauthenticated(l.unauthenticated));
        }
        if self.strangers.get(&source).copied().unwrap_or(0) >= l.per_source {
            return Err(Refused::Source(source, l.per_source));
        }
        Ok(())
    }

    /// Lets a new connection from `source` in, as a stranger, if it may.
    pub(crate) fn open(&mut self, source: IpAddr) -> Result<(), Refused> {
        self.check(source)?;
        self.unauthenticated += 1;
        *self.strangers.entry(source).or_default() += 1;
        Ok(())
    }

    /// The stranger from `source` proved the key: it becomes a client if
    /// there is room; else it stays a stranger (to be closed).
    pub(crate) fn authenticate(&mut self, source: IpAddr) -> Result<(), Refused> {
        if self.clients >= self.limits.clients {
            return Err(Refused::Clients(self.limits.clients));
        }
        self.forget_stranger(source);
        self.clients += 1;
        Ok(())
    }

    /// A connection from `source` closed; `client`: it had authenticated.
    pub(crate) fn close(&mut self, source: IpAddr, client: bool) {
        match client {
            true => self.clients = self.clients.saturating_sub(1),
            false => self.forget_stranger(source),
        }
    }

    fn forget_stranger(&mut self, source: IpAddr) {
        self.unauthenticated = self.unauthenticated.saturating_sub(1);
        if let Some(n) = self.strangers.get_mut(&source) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.strangers.remove(&source);
            }
        }
    }

    /// Authenticated clients now.
    pub(crate) fn clients(&self) -> usize {
        self.clients
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
    fn one_source_is_capped_while_another_still_gets_in() {
        let mut a = admission(10, 10, 2);
        assert_eq!(a.open(A), Ok(()));
        assert_eq!(a.open(A), Ok(()));
        assert_eq!(a.open(A), Err(Refused::Source(A, 2)));
        assert_eq!(a.open(B), Ok(()));
        a.close(A, false);
        assert_eq!(a.open(A), Ok(()), "a slot of A came back");
    }

    #[test]
    fn strangers_never_take_the_clients_slots() {
        let mut a = admission(1, 2, 2);
        assert_eq!(a.open(A), Ok(()));
        assert_eq!(a.open(A), Ok(()));
        assert_eq!(a.open(B), Err(Refused::Unauthenticated(2)));
        // A client that got in before the strangers authenticates: its
        // slot is its own, the strangers hold only theirs.
        a.close(A, false);
        assert_eq!(a.open(B), Ok(()));
        assert_eq!(a.authenticate(B), Ok(()));
        assert_eq!(a.clients(), 1);
        assert_eq!(a.open(A), Err(Refused::Clients(1)), "clients full");
    }

    #[test]
    fn a_client_over_the_client_limit_stays_a_stranger_until_it_closes() {
        let mut a = admission(1, 4, 4);
        a.open(A).unwrap();
        a.open(B).unwrap();
        a.authenticate(A).unwrap();
        assert_eq!(a.authenticate(B), Err(Refused::Clients(1)));
        a.close(B, false);
        a.close(A, true);
        assert_eq!((a.clients(), a.unauthenticated, a.strangers.len()), (0, 0, 0));
    }
}
