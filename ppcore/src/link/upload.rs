//! A program upload as pure state: the sender cuts the file into chunks of at
//! most [`CHUNK`] bytes; the receiver takes them in order into any writer,
//! hashing as it goes, and accepts the result only if size and SHA-256 match
//! what was offered. Memory on either side is one chunk.

use crate::wire::program::{ProgramId, CHUNK};
use sha2::{Digest, Sha256};
use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

/// Why an upload was refused.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum UploadError {
    /// A chunk did not start where the previous one ended.
    #[error("chunk at offset {got}, expected {expected}")]
    OutOfOrder {
        /// Where the next chunk had to start.
        expected: u64,
        /// Where it started.
        got: u64,
    },
    /// A chunk was larger than [`CHUNK`].
    #[error("chunk of {0} bytes, more than the 1 MiB limit")]
    ChunkTooLarge(usize),
    /// More bytes arrived than were offered.
    #[error("more than the {0} bytes offered")]
    TooLong(u64),
    /// The upload ended early.
    #[error("upload ended after {got} of {expected} bytes")]
    Short {
        /// Bytes offered.
        expected: u64,
        /// Bytes received.
        got: u64,
    },
    /// The bytes are not the program offered.
    #[error("hash mismatch: offered {expected}, received {got}")]
    HashMismatch {
        /// The hash offered.
        expected: ProgramId,
        /// The hash of what arrived.
        got: ProgramId,
    },
    /// No chunk arrived within the progress deadline.
    #[error("no progress for {0:?}")]
    Stalled(Duration),
    /// Writing the received bytes failed.
    #[error("cannot store the upload: {0}")]
    Io(#[from] io::Error),
}

crate::debug_as_display!(UploadError);

/// The receiving side of one upload.
#[derive(Debug)]
pub struct Receiver<W> {
    id: ProgramId,
    size: u64,
    received: u64,
    hasher: Sha256,
    sink: W,
    progressed: Instant,
}

impl<W: Write> Receiver<W> {
    /// Expects `size` bytes hashing to `id`, written into `sink`.
    pub fn new(id: ProgramId, size: u64, sink: W, now: Instant) -> Self {
        Receiver {
            id,
            size,
            received: 0,
            hasher: Sha256::new(),
            sink,
            progressed: now,
        }
    }

    /// Bytes received so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// The program this upload is of.
    pub fn id(&self) -> ProgramId {
        self.id
    }

    /// Whether every byte offered has arrived (then call [`finish`](Self::finish)).
    pub fn is_complete(&self) -> bool {
        self.received == self.size
    }

    /// Takes the chunk starting at `offset`.
    pub fn chunk(&mut self, offset: u64, bytes: &[u8], now: Instant) -> Result<(), UploadError> {
        if offset != self.received {
            return Err(UploadError::OutOfOrder {
                expected: self.received,
                got: offset,
            });
        }
        if bytes.len() > CHUNK {
            return Err(UploadError::ChunkTooLarge(bytes.len()));
        }
        let end = self.received + bytes.len() as u64;
        if end > self.size {
            return Err(UploadError::TooLong(self.size));
        }
        self.sink.write_all(bytes)?;
        self.hasher.update(bytes);
        self.received = end;
        self.progressed = now;
        Ok(())
    }

    /// An error if no chunk arrived for `limit`.
    pub fn check_progress(&self, now: Instant, limit: Duration) -> Result<(), UploadError> {
        if now.saturating_duration_since(self.progressed) > limit {
            return Err(UploadError::Stalled(limit));
        }
        Ok(())
    }

    /// Ends the upload: the sink back if every byte arrived and the hash matches.
    pub fn finish(mut self) -> Result<W, UploadError> {
        if self.received != self.size {
            return Err(UploadError::Short {
                expected: self.size,
                got: self.received,
            });
        }
        let got = ProgramId(self.hasher.finalize().into());
        if got != self.id {
            return Err(UploadError::HashMismatch {
                expected: self.id,
                got,
            });
        }
        self.sink.flush()?;
        Ok(self.sink)
    }
}

/// The sending side: the next chunk of a file each call.
#[derive(Debug)]
pub struct Sender<R> {
    source: R,
    offset: u64,
}

impl<R: Read> Sender<R> {
    /// Sends `source` from its start.
    pub fn new(source: R) -> Self {
        Sender { source, offset: 0 }
    }

    /// The next chunk and its offset; `None` at the end.
    pub fn next_chunk(&mut self) -> io::Result<Option<(u64, Vec<u8>)>> {
        let mut chunk = Vec::with_capacity(CHUNK);
        (&mut self.source)
            .take(CHUNK as u64)
            .read_to_end(&mut chunk)?;
        if chunk.is_empty() {
            return Ok(None);
        }
        let at = self.offset;
        self.offset += chunk.len() as u64;
        Ok(Some((at, chunk)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn program(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 % 251) as u8).collect()
    }

    fn send_all(bytes: &[u8]) -> Result<Vec<u8>, UploadError> {
        let now = Instant::now();
        let mut rx = Receiver::new(ProgramId::of(bytes), bytes.len() as u64, Vec::new(), now);
        let mut tx = Sender::new(bytes);
        while let Some((at, chunk)) = tx.next_chunk()? {
            assert!(chunk.len() <= CHUNK);
            rx.chunk(at, &chunk, now)?;
        }
        rx.finish()
    }

    #[test]
    fn upload_of_several_chunks_arrives_exact() {
        let bytes = program(2 * CHUNK + 17);
        assert_eq!(send_all(&bytes).expect("upload"), bytes);
        assert_eq!(send_all(&[]).expect("empty upload"), Vec::<u8>::new());
    }

    #[test]
    fn corrupted_upload_is_refused_by_hash() {
        let bytes = program(1000);
        let now = Instant::now();
        let mut rx = Receiver::new(ProgramId::of(&bytes), 1000, Vec::new(), now);
        let mut bad = bytes.clone();
        bad[500] ^= 1;
        rx.chunk(0, &bad, now).expect("chunk");
        assert!(matches!(rx.finish(), Err(UploadError::HashMismatch { .. })));
    }

    #[test]
    fn out_of_order_oversized_long_and_short_uploads_are_refused() {
        let now = Instant::now();
        let id = ProgramId::of(b"x");
        let mut rx = Receiver::new(id, 10, Vec::new(), now);
        assert!(matches!(
            rx.chunk(5, b"abc", now),
            Err(UploadError::OutOfOrder {
                expected: 0,
                got: 5
            })
        ));
        assert!(matches!(
            rx.chunk(0, &vec![0; CHUNK + 1], now),
            Err(UploadError::ChunkTooLarge(_))
        ));
        assert!(matches!(
            rx.chunk(0, &[0; 11], now),
            Err(UploadError::TooLong(10))
        ));
        rx.chunk(0, b"abc", now).expect("in order");
        assert!(matches!(
            rx.finish(),
            Err(UploadError::Short {
                expected: 10,
                got: 3
            })
        ));
    }

    #[test]
    fn stalled_upload_is_reported_after_its_deadline() {
        let t0 = Instant::now();
        let mut rx = Receiver::new(ProgramId::of(b""), 4, Vec::new(), t0);
        let limit = Duration::from_secs(10);
        rx.chunk(0, b"ab", t0 + Duration::from_secs(5))
            .expect("chunk");
        assert!(rx
            .check_progress(t0 + Duration::from_secs(15), limit)
            .is_ok());
        assert!(matches!(
            rx.check_progress(t0 + Duration::from_secs(16), limit),
            Err(UploadError::Stalled(_))
        ));
    }
}
