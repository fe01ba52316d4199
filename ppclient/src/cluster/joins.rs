//! Nodes that join a listening client: the join table (how many at once,
//! which names are served) and each join's place in it. Pure but for the
//! table's lock.

use ppcore::escape;
use ppcore::sync::lock;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// Nodes joining a listening client: how many at once, and the names being
/// served. Pure. (Each join's handshake deadline is its link's.)
#[derive(Debug)]
pub(crate) struct Joins {
    max: usize,
    next_id: u64,
    /// Joins in progress or served: id to the name it is served under.
    open: HashMap<u64, Option<String>>,
    serving: HashSet<String>,
}

impl Joins {
    pub(crate) fn new(max: usize) -> Self {
        Joins {
            max,
            next_id: 0,
            open: HashMap::new(),
            serving: HashSet::new(),
        }
    }

    /// A new connection: its id, or `None` if too many are open.
    pub(crate) fn admit(&mut self) -> Option<u64> {
        if self.open.len() >= self.max {
            return None;
        }
        self.next_id += 1;
        self.open.insert(self.next_id, None);
        Some(self.next_id)
    }

    /// Join `id` authenticated as `name`: whether it may be served (no live
    /// join holds that name).
    pub(crate) fn authenticated(&mut self, id: u64, name: &str) -> bool {
        match self.open.get(&id) {
            Some(None) => {}
            _ => return false,
        }
        if !self.serving.insert(name.to_owned()) {
            return false;
        }
        self.open.insert(id, Some(name.to_owned()));
        true
    }

    /// Join `id` ended (served, refused or cut off): its slot and its name
    /// are free.
    pub(crate) fn closed(&mut self, id: u64) {
        if let Some(Some(name)) = self.open.remove(&id) {
            self.serving.remove(&name);
        }
    }
}

/// The name of a joined node: its claimed id (escaped) and the address it
/// came from, so that nobody can take over another node's link by claiming
/// its id.
pub(crate) fn joined_name(node_id: &str, peer: SocketAddr) -> String {
    format!("{} ({})", escape(node_id), peer.ip())
}

/// One node joining a listening client, for its link's driver: where it
/// came from, and its place in the join table (freed when dropped).
pub(crate) struct Join {
    pub(crate) peer: SocketAddr,
    id: u64,
    table: Arc<Mutex<Joins>>,
}

impl Join {
    /// Join `id` of `table`, from `peer`.
    pub(crate) fn new(peer: SocketAddr, id: u64, table: Arc<Mutex<Joins>>) -> Self {
        Join { peer, id, table }
    }

    /// The node authenticated and said its id: the name to serve it under,
    /// or `None` if a live join holds that name.
    pub(crate) fn claim(&self, node_id: &str) -> Option<String> {
        let name = joined_name(node_id, self.peer);
        lock(&self.table)
            .authenticated(self.id, &name)
            .then_some(name)
    }
}

impl Drop for Join {
    fn drop(&mut self) {
        lock(&self.table).closed(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_are_capped_and_a_closed_join_frees_its_slot() {
        let mut joins = Joins::new(3);
        let ids: Vec<_> = (0..5).map(|_| joins.admit()).collect();
        assert_eq!(ids.iter().filter(|i| i.is_some()).count(), 3);
        let [a, b] = [ids[0].unwrap(), ids[1].unwrap()];
        assert!(joins.authenticated(a, "node (127.0.0.1)"));
        assert!(
            !joins.authenticated(a, "other (127.0.0.1)"),
            "one name per join"
        );
        joins.closed(b);
        assert!(joins.admit().is_some(), "a closed join frees its slot");
        assert!(joins.admit().is_none());
    }

    #[test]
    fn a_joined_name_cannot_take_over_a_live_one() {
        let mut joins = Joins::new(8);
        let peer: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let name = joined_name("node-1", peer);
        let (first, second) = (joins.admit().unwrap(), joins.admit().unwrap());
        assert!(joins.authenticated(first, &name));
        assert!(!joins.authenticated(second, &name), "took over a live link");
        joins.closed(first);
        assert!(
            joins.authenticated(second, &name),
            "may reconnect once the first is gone"
        );
        let elsewhere = joined_name("node-1", "127.0.0.2:4000".parse().unwrap());
        assert_ne!(
            name, elsewhere,
            "the same claimed id from another address is another node"
        );
        assert_eq!(joined_name("a\nb", peer), "a\\nb (127.0.0.1)");
    }
}
