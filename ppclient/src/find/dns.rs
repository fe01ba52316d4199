//! Nodes from a DNS name: every address the name resolves to is a node of
//! its own (a Kubernetes headless Service, a round-robin name), resolved
//! again every few seconds so that nodes that appear are used.
//!
//! An address that no longer resolves is left to its link: when its node is
//! gone the link goes down like any lost node (its jobs run elsewhere), and
//! it is used again if the address comes back.

use crate::cluster::state::Core;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Resolves `host:port` to its addresses.
pub(crate) type Resolver = Arc<dyn Fn(&str) -> std::io::Result<Vec<SocketAddr>> + Send + Sync>;

/// A name to expand into nodes, and how to resolve it.
#[derive(Clone)]
pub(crate) struct DnsName {
    pub(crate) name: String,
    pub(crate) resolver: Resolver,
}

impl std::fmt::Debug for DnsName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("DnsName").field(&self.name).finish()
    }
}

/// What one answer changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Change {
    /// Addresses seen for the first time: new nodes.
    pub(crate) added: Vec<SocketAddr>,
    /// Addresses in the last answer that are missing from this one.
    pub(crate) gone: Vec<SocketAddr>,
}

/// The addresses of one name, across answers. Pure: fed answers, says what changed.
#[derive(Debug, Default)]
pub(crate) struct DnsNodes {
    /// Every address ever seen (each has a link).
    seen: BTreeSet<SocketAddr>,
    /// The last answer.
    current: BTreeSet<SocketAddr>,
}

/// At most this many nodes from one name.
pub(crate) const MAX_NODES: usize = 4096;

impl DnsNodes {
    /// Takes one answer. A failed lookup changes nothing (a resolver hiccup
    /// must not look like every node leaving).
    pub(crate) fn update(&mut self, answer: std::io::Result<Vec<SocketAddr>>) -> Change {
        let Ok(answer) = answer else {
            return Change::default();
        };
        let now: BTreeSet<SocketAddr> = answer.into_iter().collect();
        let mut change = Change {
            gone: self.current.difference(&now).copied().collect(),
            ..Change::default()
        };
        for addr in &now {
            if self.seen.len() >= MAX_NODES {
                break;
            }
            if self.seen.insert(*addr) {
                change.added.push(*addr);
            }
        }
        self.current = now;
        change
    }
}

/// Resolves `name` now and every `every`, starting a link to each new
/// address, until the server stops.
pub(crate) fn watch(core: &Arc<Core>, name: &str, resolver: &Resolver, every: Duration) {
    let mut nodes = DnsNodes::default();
    loop {
        let answer = resolver(name);
        if let Err(e) = &answer {
            tracing::debug!(name, "cannot resolve: {e}");
        }
        let change = nodes.update(answer);
        for addr in change.added {
            let node = addr.to_string();
            if core.link(&node).is_none() {
                tracing::info!(name, %node, "node found by DNS");
                crate::link::spawn::start_static(core, node);
            }
        }
        for addr in change.gone {
            tracing::info!(name, node = %addr, "no longer in DNS");
        }
        if core.sleep(every) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(list: &[&str]) -> std::io::Result<Vec<SocketAddr>> {
        Ok(list.iter().map(|a| a.parse().unwrap()).collect())
    }

    #[test]
    fn every_address_is_a_node_and_new_ones_are_added_once() {
        let mut n = DnsNodes::default();
        let c = n.update(addrs(&["10.0.0.1:60000", "10.0.0.2:60000"]));
        assert_eq!(
            c.added,
            addrs(&["10.0.0.1:60000", "10.0.0.2:60000"]).unwrap()
        );
        assert!(c.gone.is_empty());
        // The same answer in another order: nothing new.
        assert_eq!(
            n.update(addrs(&["10.0.0.2:60000", "10.0.0.1:60000"])),
            Change::default()
        );
        // A pod goes, another comes.
        let c = n.update(addrs(&["10.0.0.2:60000", "10.0.0.3:60000"]));
        assert_eq!(c.added, addrs(&["10.0.0.3:60000"]).unwrap());
        assert_eq!(c.gone, addrs(&["10.0.0.1:60000"]).unwrap());
        // It comes back: its link still exists, so it is not added again.
        let c = n.update(addrs(&[
            "10.0.0.1:60000",
            "10.0.0.2:60000",
            "10.0.0.3:60000",
        ]));
        assert!(c.added.is_empty() && c.gone.is_empty(), "{c:?}");
    }

    #[test]
    fn a_failed_lookup_changes_nothing() {
        let mut n = DnsNodes::default();
        n.update(addrs(&["10.0.0.1:60000"]));
        let failed = Err(std::io::Error::other("SERVFAIL"));
        assert_eq!(n.update(failed), Change::default());
        // An empty answer is an answer: the node is gone.
        let c = n.update(Ok(Vec::new()));
        assert_eq!(c.gone, addrs(&["10.0.0.1:60000"]).unwrap());
    }

    #[test]
    fn nodes_from_one_name_are_bounded() {
        let mut n = DnsNodes::default();
        let many: Vec<SocketAddr> = (0..MAX_NODES as u32 + 10)
            .map(|i| SocketAddr::from((std::net::Ipv4Addr::from(0x0a00_0000 + i), 60000)))
            .collect();
        assert_eq!(n.update(Ok(many)).added.len(), MAX_NODES);
    }
}
