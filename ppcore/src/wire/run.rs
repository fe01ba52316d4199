//! A journaled run's identity and its jobs' identities on the wire
//! (PROTOCOL.md, "Runs that outlive their client"): random or hashed
//! 32-byte names, nothing else.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The most job keys in one `Orphans` or `Recorded` message (about
/// 0.5 MiB encoded, well within any frame).
pub(crate) const KEYS_PER_MESSAGE: usize = 8192;

/// A journaled run: a random name the client's journal keeps, so that the
/// same program run again (with the same journal) is the same run. Only a
/// client holding the journal knows it: a node gives a run's results to no
/// connection but one that names it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RunId(pub [u8; 32]);

/// A journaled job within its run: the SHA-256 of its journal key (its
/// name, the hash of its arguments and its occurrence, or the user's key),
/// the same in every run of the same program.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct JobKey(pub [u8; 32]);

fn short(f: &mut fmt::Formatter<'_>, what: &str, bytes: &[u8; 32]) -> fmt::Result {
    // Enough to tell them apart in a log; a run's name stays mostly secret.
    write!(f, "{what}(")?;
    bytes[..4].iter().try_for_each(|b| write!(f, "{b:02x}"))?;
    write!(f, "..)")
}

impl fmt::Debug for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        short(f, "RunId", &self.0)
    }
}

impl fmt::Debug for JobKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        short(f, "JobKey", &self.0)
    }
}
