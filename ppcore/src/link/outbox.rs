//! Bytes waiting to be written to a non-blocking socket, and how long the
//! peer has made no progress taking them. No socket in here: the writer is
//! any [`Write`], the time is passed in.

use std::io::{ErrorKind, Write};
use std::time::{Duration, Instant};

/// What is left to write, and since when the peer took nothing.
#[derive(Debug, Default)]
pub struct Outbox {
    buf: Vec<u8>,
    /// Bytes of `buf` already written.
    done: usize,
    /// When the writer last took bytes (or when bytes began to wait).
    progress: Option<Instant>,
}

impl Outbox {
    /// An empty outbox.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `bytes` behind what waits.
    pub fn push(&mut self, bytes: &[u8], now: Instant) {
        if self.is_empty() {
            self.progress = Some(now);
        }
        // Written bytes leave the buffer once they are at least half of it:
        // a writer that never quite catches up (a stream's chunks are added
        // before the last is all written) keeps a buffer of about what
        // waits, not of everything it ever sent.
        if self.done > 0 && self.done >= self.buf.len() - self.done {
            self.buf.drain(..self.done);
            self.done = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.done == self.buf.len()
    }

    /// Bytes waiting.
    pub fn len(&self) -> usize {
        self.buf.len() - self.done
    }

    /// Writes as much as `w` takes without blocking. `Ok(true)` if all is
    /// written, `Ok(false)` if `w` would block (wait until it is writable).
    ///
    /// # Errors
    ///
    /// The writer's error (other than would-block or interrupted); also
    /// `WriteZero` if it took nothing.
    pub fn flush(&mut self, w: &mut impl Write, now: Instant) -> std::io::Result<bool> {
        while !self.is_empty() {
            match w.write(&self.buf[self.done..]) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.done += n;
                    self.progress = Some(now);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        self.buf.clear();
        self.done = 0;
        self.progress = None;
        Ok(true)
    }

    /// When the peer has made no progress for `limit`: the moment it will be
    /// (or was) too slow, while bytes wait; `None` when nothing waits.
    pub fn stall_deadline(&self, limit: Duration) -> Option<Instant> {
        match self.is_empty() {
            true => None,
            false => self.progress.map(|t| t + limit),
        }
    }

    /// While nothing waits, gives back the buffer's memory beyond `keep`
    /// bytes: a connection that once held a large backlog (a client that
    /// read its results late) does not keep it for the rest of its life.
    /// The driver calls it when it is about to sleep, so a busy writer keeps
    /// its buffer.
    pub fn shrink_idle(&mut self, keep: usize) {
        if self.is_empty() {
            self.buf.clear();
            self.done = 0;
            self.buf.shrink_to(keep);
        }
    }

    /// The bytes the buffer holds room for (what it takes in memory).
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Forgets everything waiting (the connection is gone).
    pub fn clear(&mut self) {
        self.buf.clear();
        self.done = 0;
        self.progress = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Takes at most `room` bytes, then would block.
    struct Slow {
        got: Vec<u8>,
        room: usize,
    }

    impl Write for Slow {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            if self.room == 0 {
                return Err(ErrorKind::WouldBlock.into());
            }
            let n = b.len().min(self.room);
            self.room -= n;
            self.got.extend_from_slice(&b[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn partial_writes_keep_the_rest_and_the_stall_clock() {
        let t0 = Instant::now();
        let limit = Duration::from_secs(30);
        let mut out = Outbox::new();
        let mut w = Slow {
            got: Vec::new(),
            room: 3,
        };
        assert_eq!(out.stall_deadline(limit), None);
        out.push(b"hello", t0);
        out.push(b" world", t0 + Duration::from_secs(1));
        assert_eq!(out.stall_deadline(limit), Some(t0 + limit));
        // Three bytes taken at t0+2: the clock restarts there.
        let t2 = t0 + Duration::from_secs(2);
        assert!(!out.flush(&mut w, t2).unwrap());
        assert_eq!(out.len(), 8);
        assert_eq!(out.stall_deadline(limit), Some(t2 + limit));
        // Nothing taken: the deadline stays.
        assert!(!out.flush(&mut w, t2 + Duration::from_secs(5)).unwrap());
        assert_eq!(out.stall_deadline(limit), Some(t2 + limit));
        w.room = 100;
        assert!(out.flush(&mut w, t2 + Duration::from_secs(6)).unwrap());
        assert_eq!(w.got, b"hello world");
        assert!(out.is_empty());
        assert_eq!(out.stall_deadline(limit), None);
    }

    #[test]
    fn a_writer_that_never_catches_up_keeps_only_what_waits() {
        let t0 = Instant::now();
        let mut out = Outbox::new();
        let mut w = Slow {
            got: Vec::new(),
            room: 0,
        };
        let chunk = vec![5u8; 1000];
        for _ in 0..1000 {
            out.push(&chunk, t0);
            w.room = 900;
            assert!(!out.flush(&mut w, t0).unwrap());
        }
        assert_eq!(out.len(), 1000 * 100);
        assert!(
            out.buf.len() <= 2 * out.len() + chunk.len(),
            "{}",
            out.buf.len()
        );
        w.room = usize::MAX;
        assert!(out.flush(&mut w, t0).unwrap());
        assert_eq!(w.got.len(), 1000 * 1000);
    }

    #[test]
    fn an_idle_outbox_gives_back_a_large_backlogs_memory() {
        let t0 = Instant::now();
        let mut out = Outbox::new();
        let mut w = Slow {
            got: Vec::new(),
            room: 0,
        };
        out.push(&vec![1u8; 8 << 20], t0);
        assert!(!out.flush(&mut w, t0).unwrap());
        // Bytes wait: nothing is given back.
        out.shrink_idle(64 << 10);
        assert!(out.capacity() >= 8 << 20);
        w.room = usize::MAX;
        assert!(out.flush(&mut w, t0).unwrap());
        assert!(out.capacity() >= 8 << 20, "a busy writer keeps its buffer");
        out.shrink_idle(64 << 10);
        assert!(out.capacity() <= 64 << 10, "{}", out.capacity());
        out.push(b"more", t0);
        assert!(out.flush(&mut w, t0).unwrap());
        assert_eq!(w.got.len(), (8 << 20) + 4);
    }

    #[test]
    fn a_writer_error_is_returned() {
        struct Broken;
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                Err(ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let mut out = Outbox::new();
        out.push(b"x", Instant::now());
        let err = out.flush(&mut Broken, Instant::now()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BrokenPipe);
    }
}
