//! The frame codec, as pure functions over bytes.
//!
//! A frame is a u32 big-endian length, then one MessagePack message of that
//! length. A length above the limit is refused before anything is allocated.

use crate::session::error::SecureError;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::io::{self, Read};

/// The default largest frame, in bytes.
pub const DEFAULT_MAX_FRAME: usize = 16 << 20;

/// What one job adds to a frame besides its payload, at most (ids, attempt,
/// name, MessagePack headers), for splitting batches by size.
pub const PER_JOB_OVERHEAD: usize = 512;

/// The largest payload (arguments or result) of one job in a frame of at
/// most `max_frame` bytes.
pub fn max_payload(max_frame: usize) -> usize {
    max_frame.saturating_sub(4 * PER_JOB_OVERHEAD)
}

/// Splits `items` into batches whose payloads (as `size` tells) plus
/// [`PER_JOB_OVERHEAD`] each stay within `budget` bytes; an item alone over
/// the budget gets a batch of its own.
pub fn batches_by_size<T>(items: Vec<T>, size: impl Fn(&T) -> usize, budget: usize) -> Vec<Vec<T>> {
    let mut batches = Vec::new();
    let mut current = Vec::new();
    let mut used = 0;
    for item in items {
        let cost = size(&item) + PER_JOB_OVERHEAD;
        if !current.is_empty() && used + cost > budget {
            batches.push(std::mem::take(&mut current));
            used = 0;
        }
        used += cost;
        current.push(item);
    }
    if !current.is_empty() {
        batches.push(current);
    }
    batches
}

/// Why a frame could not be read.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The length prefix is over the limit.
    #[error("frame of {len} bytes is over the {max}-byte limit")]
    TooLarge {
        /// The announced length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The body is not a valid message.
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// The peer closed the connection in the middle of a frame.
    #[error("connection closed in the middle of a frame")]
    Truncated,
    /// Reading or writing failed.
    #[error(transparent)]
    Io(#[from] io::Error),
    /// A sealed frame did not open (modified, injected, replayed, reordered
    /// or truncated), or a message was framed outside a session.
    #[error(transparent)]
    Secure(#[from] SecureError),
}

crate::debug_as_display!(FrameError);

/// Encodes `msg` as one frame: length prefix and body in one buffer.
pub fn encode_frame<M: Serialize>(msg: &M) -> Result<Vec<u8>, FrameError> {
    let mut buf = vec![0u8; 4];
    rmp_serde::encode::write(&mut buf, msg).map_err(|e| FrameError::Malformed(e.to_string()))?;
    let len = u32::try_from(buf.len() - 4).map_err(|_| FrameError::TooLarge {
        len: buf.len() - 4,
        max: u32::MAX as usize,
    })?;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    Ok(buf)
}

/// Decodes the first frame of `buf`: `Ok(None)` if more bytes are needed,
/// else the message and how many bytes it took.
pub fn decode_frame<M: DeserializeOwned>(
    buf: &[u8],
    max: usize,
) -> Result<Option<(M, usize)>, FrameError> {
    let Some(header) = buf.get(..4) else {
        return Ok(None);
    };
    let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    let Some(body) = buf.get(4..4 + len) else {
        return Ok(None);
    };
    let msg = rmp_serde::from_slice(body).map_err(|e| FrameError::Malformed(e.to_string()))?;
    Ok(Some((msg, 4 + len)))
}

/// Reads frames from a byte stream, growing its buffer only as far as the
/// frame limit allows.
pub struct FrameReader<R> {
    inner: R,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    max: usize,
    deadline: Option<std::time::Instant>,
}

impl<R: Read> FrameReader<R> {
    /// A reader of frames of at most `max` bytes.
    pub fn new(inner: R, max: usize) -> Self {
        FrameReader {
            inner,
            buf: vec![0; 16 << 10],
            start: 0,
            end: 0,
            max,
            deadline: None,
        }
    }

    /// Changes the largest frame accepted from now on.
    pub fn set_max(&mut self, max: usize) {
        self.max = max;
    }

    /// Fails reads that would go on past `deadline` (checked between the
    /// reads of the stream, so a trickling peer cannot stretch a frame forever;
    /// a blocking stream also needs its own read timeout).
    pub fn set_deadline(&mut self, deadline: Option<std::time::Instant>) {
        self.deadline = deadline;
    }

    /// The next message; `Ok(None)` if the stream ended cleanly between frames.
    pub fn read<M: DeserializeOwned>(&mut self) -> Result<Option<M>, FrameError> {
        loop {
            if let Some((msg, used)) = decode_frame(&self.buf[self.start..self.end], self.max)? {
                self.start += used;
                if self.start == self.end {
                    (self.start, self.end) = (0, 0);
                }
                return Ok(Some(msg));
            }
            if self
                .deadline
                .is_some_and(|d| std::time::Instant::now() >= d)
            {
                return Err(FrameError::Io(io::ErrorKind::TimedOut.into()));
            }
            self.make_room();
            let n = self.inner.read(&mut self.buf[self.end..])?;
            if n == 0 {
                return if self.start == self.end {
                    Ok(None)
                } else {
                    Err(FrameError::Truncated)
                };
            }
            self.end += n;
        }
    }

    /// Ensures free space after `end`: moves the partial frame to the front,
    /// then doubles the buffer, never past one largest frame.
    fn make_room(&mut self) {
        if self.end < self.buf.len() {
            return;
        }
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            (self.start, self.end) = (0, self.end - self.start);
            return;
        }
        let grown = (self.buf.len() * 2)
            .min(self.max + 4)
            .max(self.buf.len() + 1);
        self.buf.resize(grown, 0);
    }

    /// The stream underneath.
    pub fn get_ref(&self) -> &R {
        &self.inner
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Any message type will do: the length is refused before the body.
    #[test]
    fn oversized_length_is_refused_before_reading_the_body() {
        let header = (u32::MAX).to_be_bytes();
        let err = decode_frame::<Vec<u8>>(&header, DEFAULT_MAX_FRAME).unwrap_err();
        assert!(matches!(err, FrameError::TooLarge { len, .. } if len == u32::MAX as usize));
        let mut reader = FrameReader::new(&header[..], 1024);
        assert!(matches!(
            reader.read::<Vec<u8>>(),
            Err(FrameError::TooLarge { .. })
        ));
        assert!(reader.buf.len() < 1 << 20);
    }
}
