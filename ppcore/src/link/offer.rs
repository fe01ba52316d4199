//! The program offer and upload policy of one link: offer our program to
//! a node that came up lacking some of its jobs and speaking
//! [`CAP_SHIP`](crate::wire::messages::CAP_SHIP), once the program is hashed (looking
//! again every [`OFFER_POLL`] meanwhile); one upload at a time, started by
//! the node's `Need` answer and over when the node has the program, refuses
//! it, or the driver's reading of it ends. (The upload's pace, at most
//! [`UPLOAD_WINDOW`](crate::link::UPLOAD_WINDOW) chunks the node has not
//! answered, is the link's.)

use crate::wire::program::ProgramId;
use std::collections::HashSet;
use std::time::{Duration, Instant};

/// How often a link looks again whether our program is hashed, to offer it.
pub const OFFER_POLL: Duration = Duration::from_millis(5);

/// Whether a node holding `has` lacks any of `own`: then our program is
/// worth offering.
pub(crate) fn lacks_any(own: &HashSet<(String, String)>, has: &HashSet<(String, String)>) -> bool {
    own.iter().any(|job| !has.contains(job))
}

/// Where shipping our program to the node stands on this connection.
#[derive(Debug, Clone, Default)]
pub(crate) struct Shipping {
    /// An offer is due from then (the program may not be hashed yet).
    offer_at: Option<Instant>,
    /// The upload under way: one at a time.
    uploading: Option<ProgramId>,
}

impl Shipping {
    /// A fresh connection: an offer due at `now` if `due`, no upload.
    pub(crate) fn plan(&mut self, due: bool, now: Instant) {
        self.offer_at = due.then_some(now);
        self.uploading = None;
    }

    /// Whether the offer is due at `now`.
    pub(crate) fn offer_due(&self, now: Instant) -> bool {
        self.offer_at.is_some_and(|t| now >= t)
    }

    /// The program is not hashed yet: look again in [`OFFER_POLL`].
    pub(crate) fn offer_later(&mut self, now: Instant) {
        if self.offer_at.is_some() {
            self.offer_at = Some(now + OFFER_POLL);
        }
    }

    /// The offer went out, or cannot (the program cannot be described).
    pub(crate) fn offer_done(&mut self) {
        self.offer_at = None;
    }

    /// When to look again for the offer, while it waits.
    pub(crate) fn next_look(&self) -> Option<Instant> {
        self.offer_at
    }

    /// The node asked for program `id`: true if its upload starts now,
    /// false while another runs.
    pub(crate) fn start_upload(&mut self, id: ProgramId) -> bool {
        match self.uploading {
            Some(_) => false,
            None => {
                self.uploading = Some(id);
                true
            }
        }
    }

    /// Whether an upload is under way.
    pub(crate) fn uploading(&self) -> bool {
        self.uploading.is_some()
    }

    /// The upload is over (done, refused, or it could not be read).
    pub(crate) fn upload_over(&mut self) {
        self.uploading = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn jobs(names: &[&str]) -> HashSet<(String, String)> {
        names.iter().map(|n| (n.to_string(), "s".into())).collect()
    }

    #[test]
    fn a_program_is_worth_offering_only_to_a_node_lacking_one_of_its_jobs() {
        assert!(lacks_any(&jobs(&["a", "b"]), &jobs(&["a"])));
        assert!(!lacks_any(&jobs(&["a"]), &jobs(&["a", "b"])));
        assert!(!lacks_any(&jobs(&[]), &jobs(&[])));
    }

    #[test]
    fn an_offer_waiting_for_the_hash_looks_again_every_5_ms() {
        let t0 = Instant::now();
        let mut s = Shipping::default();
        s.plan(true, t0);
        assert!(s.offer_due(t0));
        s.offer_later(t0);
        assert!(!s.offer_due(t0 + 4 * MS), "not hashed: wait");
        assert_eq!(s.next_look(), Some(t0 + 5 * MS));
        assert!(s.offer_due(t0 + 5 * MS));
        s.offer_done();
        assert!(!s.offer_due(t0 + 10 * MS));
        assert_eq!(s.next_look(), None);
        s.offer_later(t0 + 10 * MS);
        assert_eq!(s.next_look(), None, "no offer to look for");
    }

    #[test]
    fn one_upload_runs_at_a_time() {
        let mut s = Shipping::default();
        let (a, b) = (ProgramId::of(b"a"), ProgramId::of(b"b"));
        assert!(s.start_upload(a));
        assert!(!s.start_upload(b), "one runs");
        assert!(s.uploading());
        s.upload_over();
        assert!(s.start_upload(b));
        s.plan(false, Instant::now());
        assert!(!s.uploading(), "a new connection has none");
    }
}
