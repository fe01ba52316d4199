//! The node's rule for program uploads on one connection, as plain state:
//! one upload at a time (an offer while one is under way is refused), the
//! chunks of that program only, and an upload that makes no progress for
//! [`UPLOAD_STALL`] is ended (a client that keeps pinging but sends
//! nothing must not hold the program's one upload slot on the node, which
//! other clients of the program wait for). No clock: times are passed in.
//! The bytes themselves go to the driver's receiver (`ppcore::upload`).

use super::reason::UploadRefusal;
use crate::wire::program::ProgramId;
use std::time::{Duration, Instant};

/// An upload with no chunk for this long is ended.
pub(crate) const UPLOAD_STALL: Duration = Duration::from_secs(30);

/// The refusal of an offer made while an upload is under way.
pub(crate) const ONE_AT_A_TIME: &str = "an upload is under way on this connection: one at a time";

/// The upload under way on a connection, if any.
#[derive(Debug, Default)]
pub(crate) struct OneUpload {
    /// The program, and when its last chunk came (or the upload began).
    current: Option<(ProgramId, Instant)>,
}

impl OneUpload {
    /// Whether an upload is under way: a new offer is refused
    /// ([`ONE_AT_A_TIME`]).
    pub(crate) fn busy(&self) -> bool {
        self.current.is_some()
    }

    /// The node asked for program `id` (`Need`): its upload begins, unless
    /// another one is under way (one at a time: the client, too, takes the
    /// first `Need` and ignores the next, so both ends agree on the upload).
    pub(crate) fn begin(&mut self, id: ProgramId, now: Instant) {
        match self.current {
            Some((current, _)) if current != id => {}
            _ => self.current = Some((id, now)),
        }
    }

    /// A chunk of program `id` came: progress if it is the upload under
    /// way, else refused.
    pub(crate) fn chunk(&mut self, id: ProgramId, now: Instant) -> Result<(), UploadRefusal> {
        match &mut self.current {
            Some((current, progressed)) if *current == id => {
                *progressed = now;
                Ok(())
            }
            _ => Err(UploadRefusal::NotUnderWay),
        }
    }

    /// The upload of `id` ended (stored, or failed): none is under way.
    pub(crate) fn end(&mut self, id: ProgramId) {
        if self.current.is_some_and(|(current, _)| current == id) {
            self.current = None;
        }
    }

    /// When the upload under way stalls, if one is.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.current
            .map(|(_, progressed)| progressed + UPLOAD_STALL)
    }

    /// The upload under way, ended if it stalled by `now`.
    pub(crate) fn expire(&mut self, now: Instant) -> Option<(ProgramId, UploadRefusal)> {
        let (id, _) = self
            .current
            .filter(|_| self.deadline().is_some_and(|t| now >= t))?;
        self.current = None;
        Some((id, UploadRefusal::Stalled(UPLOAD_STALL)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> ProgramId {
        ProgramId([n; 32])
    }

    #[test]
    fn one_upload_at_a_time_and_only_its_chunks() {
        let t0 = Instant::now();
        let mut up = OneUpload::default();
        assert!(!up.busy());
        assert_eq!(up.chunk(id(1), t0), Err(UploadRefusal::NotUnderWay));
        up.begin(id(1), t0);
        assert!(up.busy(), "a second offer is refused");
        assert_eq!(up.chunk(id(1), t0), Ok(()));
        assert_eq!(up.chunk(id(2), t0), Err(UploadRefusal::NotUnderWay));
        up.begin(id(2), t0);
        assert_eq!(
            up.chunk(id(1), t0),
            Ok(()),
            "a second Need does not take over"
        );
        assert_eq!(up.chunk(id(2), t0), Err(UploadRefusal::NotUnderWay));
        up.end(id(2));
        assert!(up.busy(), "another program's end is not this one's");
        up.end(id(1));
        assert!(!up.busy());
        assert_eq!(up.deadline(), None);
    }

    #[test]
    fn an_upload_without_a_chunk_for_the_stall_limit_is_ended() {
        let t0 = Instant::now();
        let mut up = OneUpload::default();
        up.begin(id(1), t0);
        let second = Duration::from_secs(1);
        // A chunk at 20 s moves the limit to 50 s.
        assert_eq!(up.chunk(id(1), t0 + 20 * second), Ok(()));
        assert_eq!(up.deadline(), Some(t0 + 50 * second));
        assert_eq!(up.expire(t0 + 50 * second - Duration::from_millis(1)), None);
        assert_eq!(
            up.expire(t0 + 50 * second),
            Some((id(1), UploadRefusal::Stalled(UPLOAD_STALL)))
        );
        assert!(!up.busy(), "the slot is free again");
        assert_eq!(up.expire(t0 + 100 * second), None);
    }
}
