//! The byte boundary of a link: the one place on each side where messages
//! become bytes to write and received bytes become messages.
//!
//! A [`Framer`] owns the receive buffer, the frame limit and, once the
//! handshake is done, the session ([`Transport`]). A frame is a u32
//! big-endian length, then that many bytes. During the handshake the bytes
//! are the handshake's own messages ([`Framer::encode_handshake`],
//! [`Framer::decode_handshake`]); after it, every frame is one MessagePack
//! message sealed with the session's AEAD ([`Framer::encode`],
//! [`Framer::decode`]). There is no plaintext mode: before
//! [`Framer::secure`] a message cannot be encoded or decoded at all, and
//! after it a frame that does not open (modified, injected, replayed,
//! reordered, truncated) is an error, as is every frame after it.

use crate::session::error::SecureError;
use crate::session::transport::{Transport, SEAL_OVERHEAD};
use crate::wire::frame::FrameError;
use serde::de::DeserializeOwned;
use serde::Serialize;

const HEADER: usize = 4;
/// The receive buffer capacity kept once everything in it is decoded: a
/// connection that once received a large frame does not hold its buffer
/// for the rest of its life (a stream's chunks, 1 MiB, fit in it).
const KEEP: usize = 2 << 20;

/// Frames out, frames in, for one connection.
#[derive(Debug)]
pub struct Framer {
    buf: Vec<u8>,
    /// Bytes of `buf` already decoded.
    start: usize,
    max: usize,
    session: Option<Transport>,
}

impl Framer {
    /// A framer that refuses frames over `max` bytes (of plaintext, once
    /// sealed), with no session yet: only handshake frames pass.
    pub fn new(max: usize) -> Self {
        Framer {
            buf: Vec::new(),
            start: 0,
            max,
            session: None,
        }
    }

    /// Changes the frame limit (small during the handshake, larger after).
    pub fn set_max(&mut self, max: usize) {
        self.max = max;
    }

    /// From now on every frame is sealed and opened with `session`.
    pub fn secure(&mut self, session: Transport) {
        self.session = Some(session);
    }

    /// Whether the session is set (the handshake is done).
    pub fn is_secure(&self) -> bool {
        self.session.is_some()
    }

    /// A handshake message as a frame; refused once the session is set.
    pub fn encode_handshake(&self, msg: &[u8]) -> Result<Vec<u8>, FrameError> {
        if self.session.is_some() {
            return Err(SecureError::State.into());
        }
        let len = u32::try_from(msg.len()).map_err(|_| FrameError::TooLarge {
            len: msg.len(),
            max: u32::MAX as usize,
        })?;
        let mut out = Vec::with_capacity(HEADER + msg.len());
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(msg);
        Ok(out)
    }

    /// The next whole handshake frame received, `Ok(None)` if more bytes
    /// are needed; refused once the session is set.
    pub fn decode_handshake(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        if self.session.is_some() {
            return Err(SecureError::State.into());
        }
        let Some(len) = self.next_len(self.max)? else {
            return Ok(None);
        };
        let body = self.buf[self.start + HEADER..self.start + HEADER + len].to_vec();
        self.start += HEADER + len;
        Ok(Some(body))
    }

    /// One message as the sealed frame to write.
    pub fn encode<M: Serialize>(&mut self, msg: &M) -> Result<Vec<u8>, FrameError> {
        self.encode_sized(msg, 0)
    }

    /// [`encode`](Self::encode) for a message of about `size` bytes: the
    /// frame is written into one buffer of its final size (no growing
    /// copies, the tag included).
    pub fn encode_sized<M: Serialize>(
        &mut self,
        msg: &M,
        size: usize,
    ) -> Result<Vec<u8>, FrameError> {
        let session = self.session.as_mut().ok_or(SecureError::State)?;
        let mut buf = Vec::with_capacity(HEADER + size + SEAL_OVERHEAD);
        buf.extend_from_slice(&[0u8; HEADER]);
        rmp_serde::encode::write(&mut buf, msg)
            .map_err(|e| FrameError::Malformed(e.to_string()))?;
        Ok(session.seal_reserved(buf)?)
    }

    /// Takes received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.start == self.buf.len() {
            self.buf.clear();
            self.buf.shrink_to(KEEP);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole message received, opened and decoded; `Ok(None)` if
    /// more bytes are needed. A length over the limit is an error before
    /// anything is allocated for it; a frame that does not open is an error.
    pub fn decode<M: DeserializeOwned>(&mut self) -> Result<Option<M>, FrameError> {
        if self.session.is_none() {
            return Err(SecureError::State.into());
        }
        let Some(len) = self.next_len(self.max.saturating_add(SEAL_OVERHEAD))? else {
            return Ok(None);
        };
        let from = self.start + HEADER;
        let session = self.session.as_mut().ok_or(SecureError::State)?;
        let plain = session.open_in_place(&mut self.buf[from..from + len])?;
        let msg = rmp_serde::from_slice(plain).map_err(|e| FrameError::Malformed(e.to_string()))?;
        self.start = from + len;
        if self.start == self.buf.len() {
            self.buf.clear();
            self.buf.shrink_to(KEEP);
            self.start = 0;
        }
        Ok(Some(msg))
    }

    /// The length of the next frame if it is all here; checks the limit.
    fn next_len(&mut self, max: usize) -> Result<Option<usize>, FrameError> {
        let avail = &self.buf[self.start..];
        let Some(header) = avail.get(..HEADER) else {
            self.compact();
            return Ok(None);
        };
        let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
        if len > max {
            return Err(FrameError::TooLarge { len, max });
        }
        if avail.len() < HEADER + len {
            self.compact();
            return Ok(None);
        }
        Ok(Some(len))
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
    use crate::session::transport::CIPHER;
    use crate::wire::messages::ClientMsg;

    /// Two framers holding the two ends of one session.
    fn pair(max: usize) -> (Framer, Framer) {
        let (a, b) = ([1u8; 32], [2u8; 32]);
        let (mut out, mut inn) = (Framer::new(max), Framer::new(max));
        out.secure(Transport::from_raw_keys(CIPHER, &a, &b));
        inn.secure(Transport::from_raw_keys(CIPHER, &b, &a));
        (out, inn)
    }

    #[test]
    fn frames_split_anywhere_come_out_whole() {
        let (mut out, mut inn) = pair(1024);
        let mut bytes = out.encode(&ClientMsg::Ping(7)).unwrap();
        bytes.extend(out.encode(&ClientMsg::Status).unwrap());
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
    fn a_big_frame_once_decoded_does_not_keep_its_buffer() {
        let (mut out, mut inn) = pair(16 << 20);
        let big = ClientMsg::Ping(1);
        let mut bytes = out.encode(&big).unwrap();
        // A 12 MiB frame (a run of a job with big arguments), pushed in
        // 64 KiB reads as a connection gets it, then a small one.
        let run = crate::wire::RunJob {
            id: 1,
            attempt: 1,
            name: "j".into(),
            args: serde_bytes::ByteBuf::from(vec![5u8; 12 << 20]),
            program: None,
            shared: Vec::new(),
            keep: None,
            journal: None,
            request: None,
        };
        bytes.extend(out.encode(&ClientMsg::Run(vec![run])).unwrap());
        let mut got = 0;
        for part in bytes.chunks(64 << 10) {
            inn.push(part);
            while inn.decode::<ClientMsg>().unwrap().is_some() {
                got += 1;
            }
        }
        assert_eq!(got, 2);
        assert!(
            inn.buf.capacity() <= KEEP,
            "{} bytes kept",
            inn.buf.capacity()
        );
        inn.push(&out.encode(&ClientMsg::Ping(2)).unwrap());
        assert_eq!(inn.decode::<ClientMsg>().unwrap(), Some(ClientMsg::Ping(2)));
        assert!(inn.buf.capacity() <= KEEP);
    }

    #[test]
    fn an_oversized_length_is_refused_before_its_body() {
        let mut inn = Framer::new(16);
        inn.push(&1000u32.to_be_bytes());
        assert!(matches!(
            inn.decode_handshake(),
            Err(FrameError::TooLarge { len: 1000, max: 16 })
        ));
    }

    #[test]
    fn no_message_passes_without_a_session() {
        let mut f = Framer::new(1024);
        assert!(f.encode(&ClientMsg::Status).is_err());
        f.push(&f.encode_handshake(b"hi").unwrap());
        assert!(f.decode::<ClientMsg>().is_err(), "no plaintext decoding");
    }

    #[test]
    fn frames_go_out_sealed_and_a_changed_bit_is_refused_for_good() {
        let (mut out, mut inn) = pair(1024);
        let mut frame = out.encode(&ClientMsg::Ping(0xABCDEF)).unwrap();
        // The plaintext MessagePack is nowhere in the frame.
        let plain = rmp_serde::to_vec(&ClientMsg::Ping(0xABCDEF)).unwrap();
        assert!(!frame.windows(plain.len()).any(|w| w == plain));
        let last = frame.len() - 1;
        frame[last] ^= 1;
        inn.push(&frame);
        assert!(matches!(
            inn.decode::<ClientMsg>(),
            Err(FrameError::Secure(SecureError::Forged))
        ));
        inn.push(&out.encode(&ClientMsg::Status).unwrap());
        assert!(
            inn.decode::<ClientMsg>().is_err(),
            "everything after is refused"
        );
    }

    #[test]
    fn replayed_and_reordered_frames_are_refused() {
        let (mut out, mut inn) = pair(1024);
        let one = out.encode(&ClientMsg::Ping(1)).unwrap();
        inn.push(&one);
        assert_eq!(inn.decode::<ClientMsg>().unwrap(), Some(ClientMsg::Ping(1)));
        inn.push(&one);
        assert!(inn.decode::<ClientMsg>().is_err(), "replay");
        let (mut out, mut inn) = pair(1024);
        let one = out.encode(&ClientMsg::Ping(1)).unwrap();
        let two = out.encode(&ClientMsg::Ping(2)).unwrap();
        inn.push(&two);
        inn.push(&one);
        assert!(inn.decode::<ClientMsg>().is_err(), "reorder");
    }
}
