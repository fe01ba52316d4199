//! Every frame after the handshake: sealed with an AEAD, one key per
//! direction, the frame's sequence number as the nonce.
//!
//! This is Noise's `CipherState` (same keys from `Split()`, same nonce
//! layout), applied to whole frames instead of Noise's 64 KiB messages: the
//! AEADs themselves take messages of gigabytes, and one seal per frame costs
//! one pass over the bytes. Nonces are never sent: both sides count frames,
//! so a frame that is modified, injected, replayed, reordered or truncated
//! fails to open, and after one failure the opener refuses everything
//! (the connection must close).
//!
//! The cipher is ChaCha20-Poly1305 or AES-256-GCM; [`CIPHER`] is the one the
//! protocol uses, chosen by measurement (see there).

use crate::session::error::SecureError;
use ring::aead::{Aad, LessSafeKey, Nonce, Tag, UnboundKey, AES_256_GCM, CHACHA20_POLY1305};
use zeroize::Zeroize;

/// Bytes a sealed frame has more than its plaintext (the tag).
pub const SEAL_OVERHEAD: usize = 16;

/// An AEAD the transport can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Cipher {
    /// ChaCha20-Poly1305 (RFC 8439); fast everywhere, constant-time in software.
    ChaChaPoly,
    /// AES-256-GCM; fastest where the CPU has AES and carry-less multiply
    /// instructions (x86-64 AES-NI + PCLMULQDQ, ARMv8 crypto extensions).
    AesGcm,
}

/// The protocol's cipher: AES-256-GCM (since protocol version 6; before,
/// ChaCha20-Poly1305). Measured with `cargo run --release -p benchmarks
/// --bin crypto -- --json` (seal + open in place on one core, per CPU
/// second of the measuring thread; RustCrypto crates, hardware paths
/// detected at run time):
/// - on the project's VM on an AMD EPYC host (AES-NI, PCLMULQDQ, AVX2),
///   2026-12-05: 1 MiB frames, AES-256-GCM 330 MB/s against 233;
///   a 128-byte frame (one job's `Run` or `Done`), 781 ns against 5,194.
///   A remote round trip seals and opens two such frames, and ChaCha20-
///   Poly1305's per-frame set-up (a Poly1305 key per frame, with the AVX2
///   back end's precomputed powers) cost about 10 µs of it;
/// - on the same VM type on an earlier host, 1 MiB frames gave
///   ChaCha20-Poly1305 761 to 769 MB/s against 672 to 692: there, bulk
///   data was about a tenth slower with AES-GCM;
/// - with ring (issue 33), on the VM on an AMD EPYC host with VAES,
///   2026-12-07: 1 MiB frames 2,240 MB/s against 770; a 128-byte frame
///   234 ns against 546.
///
/// Every x86-64 server of the last decade has AES-NI and carry-less
/// multiply, and ARMv8 servers have the same in their crypto extensions.
/// Since issue 33 both ciphers come from `ring` (this file's `Aead`), whose
/// AES-GCM seals and opens 1 MiB frames about 4 times as fast as the
/// RustCrypto crates did on the same VM (`aesgcm_mb_s` against
/// `rustcrypto_aesgcm_mb_s`, docs/BENCHMARKS.md); without the instructions
/// ring's software AES and GHASH are slower but constant-time.
pub const CIPHER: Cipher = Cipher::AesGcm;

impl Cipher {
    /// The cipher's name in a Noise protocol name.
    pub(crate) fn noise_name(self) -> &'static str {
        match self {
            Cipher::ChaChaPoly => "ChaChaPoly",
            Cipher::AesGcm => "AESGCM",
        }
    }
}

/// One direction's key, expanded, in `ring` (see `docs/SECURITY.md`, "The
/// AEAD backend", for why `ring`): its AES-GCM picks AES-NI + PCLMULQDQ,
/// AVX or VAES + AVX2 at run time on x86-64 (ARMv8 crypto extensions on
/// aarch64), and a constant-time software path elsewhere. The bytes are the
/// standard RFC 5116 / RFC 8439 AEADs, so frames are byte for byte what the
/// RustCrypto crates sealed before (`ppcore/tests/aead_interop.rs`).
struct Aead {
    cipher: Cipher,
    key: LessSafeKey,
}

impl Aead {
    fn new(cipher: Cipher, key: &[u8; 32]) -> Self {
        let algorithm = match cipher {
            Cipher::ChaChaPoly => &CHACHA20_POLY1305,
            Cipher::AesGcm => &AES_256_GCM,
        };
        // Both take exactly 32-byte keys, which `key` is by its type: ring
        // refuses only a key of the wrong length.
        let unbound = UnboundKey::new(algorithm, key)
            .unwrap_or_else(|_| unreachable!("a 32-byte key for a 256-bit AEAD"));
        Aead {
            cipher,
            key: LessSafeKey::new(unbound),
        }
    }

    /// Noise's nonce: 32 zero bits, then the counter (little-endian for
    /// ChaChaPoly, big-endian for AESGCM).
    fn nonce(&self, seq: u64) -> Nonce {
        let mut n = [0u8; 12];
        match self.cipher {
            Cipher::ChaChaPoly => n[4..].copy_from_slice(&seq.to_le_bytes()),
            Cipher::AesGcm => n[4..].copy_from_slice(&seq.to_be_bytes()),
        }
        Nonce::assume_unique_for_key(n)
    }

    /// Encrypts `buf` in place; returns the tag.
    fn seal(&self, seq: u64, buf: &mut [u8]) -> Result<[u8; SEAL_OVERHEAD], SecureError> {
        let tag = self
            .key
            .seal_in_place_separate_tag(self.nonce(seq), Aad::empty(), buf)
            .map_err(|_| SecureError::TooLarge)?;
        tag.as_ref().try_into().map_err(|_| SecureError::State)
    }

    /// Decrypts `buf` in place if `tag` authenticates it.
    fn open(&self, seq: u64, buf: &mut [u8], tag: &[u8]) -> bool {
        let Ok(tag) = Tag::try_from(tag) else {
            return false;
        };
        self.key
            .open_in_place_separate_tag(self.nonce(seq), Aad::empty(), tag, buf, 0..)
            .is_ok()
    }
}

/// The sending half of a [`Transport`].
pub struct Sealer {
    aead: Aead,
    seq: u64,
}

impl Sealer {
    /// Seals the next frame's plaintext; returns ciphertext and tag, to be
    /// sent as one frame body (in order: the peer counts frames).
    pub fn seal(&mut self, plain: &[u8]) -> Result<Vec<u8>, SecureError> {
        let mut buf = Vec::with_capacity(plain.len() + SEAL_OVERHEAD);
        buf.extend_from_slice(plain);
        self.seal_in_place(&mut buf, 0)?;
        Ok(buf)
    }

    /// Seals `plain` into one buffer that starts with the u32 big-endian
    /// length of what follows: a whole frame for one write.
    pub fn seal_frame(&mut self, plain: &[u8]) -> Result<Vec<u8>, SecureError> {
        let len = u32::try_from(plain.len() + SEAL_OVERHEAD).map_err(|_| SecureError::TooLarge)?;
        let mut buf = Vec::with_capacity(4 + plain.len() + SEAL_OVERHEAD);
        buf.extend_from_slice(&len.to_be_bytes());
        buf.extend_from_slice(plain);
        self.seal_in_place(&mut buf, 4)?;
        Ok(buf)
    }

    /// Seals `buf[4..]` in place, appends the tag and writes the length of
    /// what follows the header into `buf[..4]`: a whole frame made from a
    /// buffer that was serialised with 4 bytes reserved in front (no copy).
    pub fn seal_reserved(&mut self, mut buf: Vec<u8>) -> Result<Vec<u8>, SecureError> {
        if buf.len() < 4 {
            return Err(SecureError::State);
        }
        let len =
            u32::try_from(buf.len() - 4 + SEAL_OVERHEAD).map_err(|_| SecureError::TooLarge)?;
        self.seal_in_place(&mut buf, 4)?;
        buf[..4].copy_from_slice(&len.to_be_bytes());
        Ok(buf)
    }

    /// Seals `buf[from..]` in place and appends the tag.
    fn seal_in_place(&mut self, buf: &mut Vec<u8>, from: usize) -> Result<(), SecureError> {
        let seq = self.seq;
        self.seq = seq.checked_add(1).ok_or(SecureError::Exhausted)?;
        let tag = self.aead.seal(seq, &mut buf[from..])?;
        buf.extend_from_slice(&tag);
        Ok(())
    }
}

/// The receiving half of a [`Transport`].
pub struct Opener {
    aead: Aead,
    seq: u64,
    broken: bool,
}

impl Opener {
    /// Opens the next frame body; any frame that is not exactly the peer's
    /// next sealed frame is an error, and so is everything after it.
    pub fn open(&mut self, sealed: &[u8]) -> Result<Vec<u8>, SecureError> {
        self.open_vec(sealed.to_vec())
    }

    /// [`open`](Self::open) in place: decrypts the buffer a frame was read
    /// into and returns it without its tag (no copy).
    pub fn open_vec(&mut self, mut buf: Vec<u8>) -> Result<Vec<u8>, SecureError> {
        if self.broken || buf.len() < SEAL_OVERHEAD {
            self.broken = true;
            return Err(SecureError::Forged);
        }
        let body_len = buf.len() - SEAL_OVERHEAD;
        let tag: [u8; SEAL_OVERHEAD] = buf[body_len..]
            .try_into()
            .map_err(|_| SecureError::Forged)?;
        buf.truncate(body_len);
        if !self.aead.open(self.seq, &mut buf, &tag) {
            self.broken = true;
            buf.zeroize();
            return Err(SecureError::Forged);
        }
        self.seq = self.seq.checked_add(1).ok_or(SecureError::Exhausted)?;
        Ok(buf)
    }
}

impl Opener {
    /// [`open`](Self::open) in place in a borrowed buffer (a frame body
    /// still in the receive buffer): returns the plaintext part of `sealed`.
    pub fn open_in_place<'a>(&mut self, sealed: &'a mut [u8]) -> Result<&'a [u8], SecureError> {
        if self.broken || sealed.len() < SEAL_OVERHEAD {
            self.broken = true;
            return Err(SecureError::Forged);
        }
        let (body, tag) = sealed.split_at_mut(sealed.len() - SEAL_OVERHEAD);
        if !self.aead.open(self.seq, body, tag) {
            self.broken = true;
            body.zeroize();
            return Err(SecureError::Forged);
        }
        self.seq = self.seq.checked_add(1).ok_or(SecureError::Exhausted)?;
        Ok(body)
    }
}

/// An encrypted session's two directions, from a finished handshake.
pub struct Transport {
    sealer: Sealer,
    opener: Opener,
}

impl Transport {
    /// A transport from raw keys: for benchmarks and fuzzing. A session's
    /// transport comes from a handshake, never from this.
    pub fn from_raw_keys(cipher: Cipher, send: &[u8; 32], recv: &[u8; 32]) -> Self {
        Transport {
            sealer: Sealer {
                aead: Aead::new(cipher, send),
                seq: 0,
            },
            opener: Opener {
                aead: Aead::new(cipher, recv),
                seq: 0,
                broken: false,
            },
        }
    }

    /// Seals the next outgoing frame (see [`Sealer::seal`]).
    pub fn seal(&mut self, plain: &[u8]) -> Result<Vec<u8>, SecureError> {
        self.sealer.seal(plain)
    }

    /// Seals the next outgoing frame with its length header (see [`Sealer::seal_frame`]).
    pub fn seal_frame(&mut self, plain: &[u8]) -> Result<Vec<u8>, SecureError> {
        self.sealer.seal_frame(plain)
    }

    /// Opens the next incoming frame body (see [`Opener::open`]).
    pub fn open(&mut self, sealed: &[u8]) -> Result<Vec<u8>, SecureError> {
        self.opener.open(sealed)
    }

    /// Opens the next incoming frame body in place (see [`Opener::open_vec`]).
    pub fn open_vec(&mut self, sealed: Vec<u8>) -> Result<Vec<u8>, SecureError> {
        self.opener.open_vec(sealed)
    }

    /// Seals a buffer serialised after 4 reserved bytes (see [`Sealer::seal_reserved`]).
    pub fn seal_reserved(&mut self, buf: Vec<u8>) -> Result<Vec<u8>, SecureError> {
        self.sealer.seal_reserved(buf)
    }

    /// Opens the next incoming frame body where it lies (see [`Opener::open_in_place`]).
    pub fn open_in_place<'a>(&mut self, sealed: &'a mut [u8]) -> Result<&'a [u8], SecureError> {
        self.opener.open_in_place(sealed)
    }

    /// The two halves, for a writer thread and a reader thread.
    pub fn split(self) -> (Sealer, Opener) {
        (self.sealer, self.opener)
    }
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("sent", &self.sealer.seq)
            .field("received", &self.opener.seq)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(cipher: Cipher) -> (Transport, Transport) {
        let (a, b) = ([7u8; 32], [9u8; 32]);
        (
            Transport::from_raw_keys(cipher, &a, &b),
            Transport::from_raw_keys(cipher, &b, &a),
        )
    }

    const BOTH: [Cipher; 2] = [Cipher::ChaChaPoly, Cipher::AesGcm];

    #[test]
    fn frames_round_trip_in_order_both_ways() {
        for cipher in BOTH {
            let (mut a, mut b) = pair(cipher);
            for i in 0..5u8 {
                let frame = a.seal(&[i; 100]).unwrap();
                assert_eq!(frame.len(), 100 + SEAL_OVERHEAD);
                assert_ne!(&frame[..100], &[i; 100][..], "not encrypted");
                assert_eq!(b.open(&frame).unwrap(), vec![i; 100]);
                assert_eq!(a.open(&b.seal(b"").unwrap()).unwrap(), b"");
            }
        }
    }

    #[test]
    fn seal_frame_prefixes_the_length() {
        let (mut a, mut b) = pair(CIPHER);
        let frame = a.seal_frame(b"hello").unwrap();
        assert_eq!(frame[..4], 21u32.to_be_bytes());
        assert_eq!(b.open(&frame[4..]).unwrap(), b"hello");
    }

    #[test]
    fn the_same_plaintext_seals_differently_each_time() {
        let (mut a, _) = pair(CIPHER);
        assert_ne!(a.seal(b"Run").unwrap(), a.seal(b"Run").unwrap());
    }

    #[test]
    fn a_modified_frame_fails_and_breaks_the_opener() {
        for cipher in BOTH {
            for at in [0, 5, 10 + SEAL_OVERHEAD - 1] {
                let (mut a, mut b) = pair(cipher);
                let mut frame = a.seal(b"Done: 2.0").unwrap();
                let at = at.min(frame.len() - 1);
                frame[at] ^= 1;
                assert!(matches!(b.open(&frame), Err(SecureError::Forged)));
                let next = a.seal(b"next").unwrap();
                assert!(b.open(&next).is_err(), "opener kept going after a forgery");
            }
        }
    }

    #[test]
    fn injected_replayed_reordered_and_truncated_frames_fail() {
        // Injected: sealed under a key the peer does not have.
        let (_, mut b) = pair(CIPHER);
        let mut stranger = Transport::from_raw_keys(CIPHER, &[1; 32], &[2; 32]);
        assert!(b.open(&stranger.seal(b"Run evil").unwrap()).is_err());
        // Reordered: the second frame first.
        let (mut a, mut b) = pair(CIPHER);
        let one = a.seal(b"one").unwrap();
        let two = a.seal(b"two").unwrap();
        assert!(b.open(&two).is_err());
        assert!(b.open(&one).is_err(), "broken after the first failure");
        // Replayed: the same frame twice.
        let (mut a, mut b) = pair(CIPHER);
        let once = a.seal(b"one").unwrap();
        assert!(b.open(&once).is_ok());
        assert!(b.open(&once).is_err());
        // Truncated: a byte short, only the tag, less than a tag.
        for cut in [one.len() - 1, SEAL_OVERHEAD, 3, 0] {
            let (_, mut b) = pair(CIPHER);
            assert!(b.open(&one[..cut]).is_err(), "cut to {cut}");
        }
        // Reflected: our own frame sent back to us.
        let (mut a, _) = pair(CIPHER);
        let mine = a.seal(b"mine").unwrap();
        assert!(a.open(&mine).is_err());
    }

    #[test]
    fn a_dropped_frame_makes_the_next_one_fail() {
        let (mut a, mut b) = pair(CIPHER);
        assert!(b.open(&a.seal(b"Run 1").unwrap()).is_ok());
        let _dropped = a.seal(b"Cancel 1").unwrap();
        assert_eq!(b.open(&a.seal(b"Run 2").unwrap()), Err(SecureError::Forged));
    }

    #[test]
    fn halves_work_apart() {
        let (a, b) = pair(Cipher::ChaChaPoly);
        let ((mut seal_a, _), (_, mut open_b)) = (a.split(), b.split());
        let big = vec![0xab; 1 << 20];
        assert_eq!(open_b.open(&seal_a.seal(&big).unwrap()).unwrap(), big);
        let sealed = seal_a.seal(b"in place").unwrap();
        assert_eq!(open_b.open_vec(sealed.clone()).unwrap(), b"in place");
        assert!(open_b.open_vec(sealed).is_err(), "replayed in place");
    }
}
