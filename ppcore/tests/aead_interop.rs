//! The transport's AEAD backend (ring since issue 33) seals exactly the
//! bytes the RustCrypto crates sealed before it, and opens theirs: nodes and
//! clients of either build talk to each other, frame for frame. Each case
//! seals with one and opens with the other, both ways, for both ciphers,
//! with Noise's nonce layout (32 zero bits, then the frame counter,
//! big-endian for AES-GCM and little-endian for ChaCha20-Poly1305).

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::Aes256Gcm;
use chacha20poly1305::ChaCha20Poly1305;
use ppcore::{Cipher, Transport, SEAL_OVERHEAD};

const SEND: [u8; 32] = [0x11; 32];
const RECV: [u8; 32] = [0x22; 32];

/// The RustCrypto side of one direction: the old `Aead`, as it was.
struct Old {
    cipher: Cipher,
    key: [u8; 32],
    seq: u64,
}

impl Old {
    fn new(cipher: Cipher, key: [u8; 32]) -> Self {
        Old {
            cipher,
            key,
            seq: 0,
        }
    }

    fn nonce(&self) -> [u8; 12] {
        let mut n = [0u8; 12];
        match self.cipher {
            Cipher::AesGcm => n[4..].copy_from_slice(&self.seq.to_be_bytes()),
            _ => n[4..].copy_from_slice(&self.seq.to_le_bytes()),
        }
        n
    }

    /// Ciphertext then tag, as `Transport::seal` returns it.
    fn seal(&mut self, plain: &[u8]) -> Vec<u8> {
        let nonce = self.nonce();
        let mut buf = plain.to_vec();
        let tag = match self.cipher {
            Cipher::AesGcm => Aes256Gcm::new((&self.key).into()).encrypt_in_place_detached(
                (&nonce).into(),
                b"",
                &mut buf,
            ),
            _ => ChaCha20Poly1305::new((&self.key).into()).encrypt_in_place_detached(
                (&nonce).into(),
                b"",
                &mut buf,
            ),
        }
        .expect("RustCrypto seals any frame size used here");
        buf.extend_from_slice(&tag);
        self.seq += 1;
        buf
    }

    /// The plaintext, or `None` if the frame does not authenticate.
    fn open(&mut self, sealed: &[u8]) -> Option<Vec<u8>> {
        let nonce = self.nonce();
        let (body, tag) = sealed.split_at(sealed.len().checked_sub(SEAL_OVERHEAD)?);
        let mut buf = body.to_vec();
        match self.cipher {
            Cipher::AesGcm => Aes256Gcm::new((&self.key).into()).decrypt_in_place_detached(
                (&nonce).into(),
                b"",
                &mut buf,
                tag.into(),
            ),
            _ => ChaCha20Poly1305::new((&self.key).into()).decrypt_in_place_detached(
                (&nonce).into(),
                b"",
                &mut buf,
                tag.into(),
            ),
        }
        .ok()?;
        self.seq += 1;
        Some(buf)
    }
}

/// Frame sizes: empty, small (one job's `Run`), not a multiple of the
/// block size, around the backends' bulk-path thresholds, and a stream chunk.
const SIZES: [usize; 9] = [0, 1, 15, 16, 128, 255, 4097, 65_536 + 7, 1 << 20];

fn plain(len: usize, salt: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ salt)
        .collect()
}

const BOTH: [Cipher; 2] = [Cipher::AesGcm, Cipher::ChaChaPoly];

#[test]
fn the_new_backend_seals_the_same_bytes_as_rustcrypto_did() {
    for cipher in BOTH {
        let mut new = Transport::from_raw_keys(cipher, &SEND, &RECV);
        let mut old = Old::new(cipher, SEND);
        for (i, len) in SIZES.into_iter().enumerate() {
            let p = plain(len, i as u8);
            assert_eq!(
                new.seal(&p).unwrap(),
                old.seal(&p),
                "{cipher:?}, {len} bytes"
            );
        }
    }
}

#[test]
fn frames_sealed_by_rustcrypto_open_with_the_new_backend() {
    for cipher in BOTH {
        let mut new = Transport::from_raw_keys(cipher, &SEND, &RECV);
        let mut old = Old::new(cipher, RECV);
        for (i, len) in SIZES.into_iter().enumerate() {
            let p = plain(len, i as u8);
            let sealed = old.seal(&p);
            // Every opening path: copied, in a Vec, in a borrowed buffer.
            let opened = match i % 3 {
                0 => new.open(&sealed).unwrap(),
                1 => new.open_vec(sealed).unwrap(),
                _ => {
                    let mut buf = sealed;
                    new.open_in_place(&mut buf).unwrap().to_vec()
                }
            };
            assert_eq!(opened, p, "{cipher:?}, {len} bytes");
        }
    }
}

#[test]
fn frames_sealed_by_the_new_backend_open_with_rustcrypto() {
    for cipher in BOTH {
        let mut new = Transport::from_raw_keys(cipher, &SEND, &RECV);
        let mut old = Old::new(cipher, SEND);
        for (i, len) in SIZES.into_iter().enumerate() {
            let p = plain(len, i as u8);
            // Every sealing path: plain, with its length header, in place
            // after 4 reserved bytes.
            let sealed = match i % 3 {
                0 => new.seal(&p).unwrap(),
                1 => {
                    let frame = new.seal_frame(&p).unwrap();
                    let len = u32::from_be_bytes(frame[..4].try_into().unwrap()) as usize;
                    assert_eq!(len, p.len() + SEAL_OVERHEAD);
                    frame[4..].to_vec()
                }
                _ => {
                    let mut buf = vec![0u8; 4];
                    buf.extend_from_slice(&p);
                    new.seal_reserved(buf).unwrap()[4..].to_vec()
                }
            };
            assert_eq!(old.open(&sealed), Some(p), "{cipher:?}, {len} bytes");
        }
    }
}

#[test]
fn a_frame_changed_in_flight_fails_in_both_backends() {
    for cipher in BOTH {
        let mut new = Transport::from_raw_keys(cipher, &SEND, &RECV);
        let mut old = Old::new(cipher, SEND);
        let mut sealed = new.seal(b"Done: 2.0").unwrap();
        sealed[3] ^= 0x80;
        assert_eq!(old.open(&sealed), None, "{cipher:?}: RustCrypto opened it");
        let mut new = Transport::from_raw_keys(cipher, &SEND, &RECV);
        let mut old = Old::new(cipher, RECV);
        let mut sealed = old.seal(b"Done: 2.0");
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        assert!(new.open(&sealed).is_err(), "{cipher:?}: ring opened it");
    }
}
