//! The byte boundary of a link: the one place on each side where messages
//! become bytes to write and received bytes become messages.
//!
//! A [`Framer`] owns the receive buffer and the frame limit. Every frame a
//! link sends is made by [`Framer::encode`]; every frame it reads comes out
//! of [`Framer::decode`]. Session encryption (an AEAD `seal` / `open` per
//! direction) goes in these two functions and nowhere else.

use crate::wire::{decode_frame, encode_frame, FrameError};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Frames out, frames in, for one connection.
#[derive(Debug)]
pub struct Framer {
    buf: Vec<u8>,
    /// Bytes of `buf` already decoded.
    start: usize,
    max: usize,
}

impl Framer {
    /// A framer that refuses frames over `max` bytes.
    pub fn new(max: usize) -> Self {
        Framer {
            buf: Vec::new(),
            start: 0,
            max,
        }
    }

    /// Changes the frame limit (small during the handshake, larger after).
    pub fn set_max(&mut self, max: usize) {
        self.max = max;
    }

    /// One message as the bytes to write.
    pub fn encode<M: Serialize>(&mut self, msg: &M) -> Result<Vec<u8>, FrameError> {
        encode_frame(msg)
    }

    /// Takes received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole message received, `Ok(None)` if more bytes are needed.
    /// A length over the limit is an error before anything is allocated for it.
    pub fn decode<M: DeserializeOwned>(&mut self) -> Result<Option<M>, FrameError> {
        match decode_frame(&self.buf[self.start..], self.max)? {
            None => {
                self.compact();
                Ok(None)
            }
            Some((msg, used)) => {
                self.start += used;
                Ok(Some(msg))
            }
        }
    }

    /// Bytes received and not yet decoded.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    fn compact(&mut self) {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ClientMsg;

    #[test]
    fn frames_split_anywhere_come_out_whole() {
        let mut out = Framer::new(1024);
        let mut bytes = out.encode(&ClientMsg::Ping(7)).unwrap();
        bytes.extend(out.encode(&ClientMsg::Status).unwrap());
        let mut inn = Framer::new(1024);
        let mut got = Vec::new();
        for b in &bytes {
            inn.push(std::slice::from_ref(b));
            while let Some(m) = inn.decode::<ClientMsg>().unwrap() {
                got.push(m);
            }
        }
        assert_eq!(got, vec![ClientMsg::Ping(7), ClientMsg::Status]);
        assert_eq!(inn.buffered(), 0);
    }

    #[test]
    fn an_oversized_length_is_refused_before_its_body() {
        let mut inn = Framer::new(16);
        inn.push(&1000u32.to_be_bytes());
        assert!(matches!(
            inn.decode::<ClientMsg>(),
            Err(FrameError::TooLarge { len: 1000, max: 16 })
        ));
    }
}
