//! A job's identity in the journal, and how a result is written there: pure
//! functions of bytes, no I/O (the store is `journal::store`).
//!
//! An identity is the job's name with either a hash of its encoded
//! arguments and which occurrence of that (name, hash) pair it is in
//! submission order, or a key the user gave (`Options::journal_key`). A
//! record is the job's outcome (its encoded result, or its error) followed
//! by a checksum of identity and outcome, so that a record damaged on disk
//! is told apart from a result.

use ppcore::{ErrorKind, JobError};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A job's identity as the journal's table keys it.
pub(crate) type Key = Vec<u8>;

/// The SHA-256 of a job's encoded arguments.
pub(crate) type ArgsHash = [u8; 32];

/// The identity was derived from the arguments.
const DERIVED: u8 = 0;
/// The identity is the user's key.
const GIVEN: u8 = 1;

/// The outcome was a value (its encoded bytes follow).
const VALUE: u8 = 0;
/// The outcome was an error (MessagePack follows).
const ERROR: u8 = 1;

/// Bytes of the checksum at the end of a record.
const CHECK: usize = 16;

/// The hash of encoded arguments.
pub(crate) fn args_hash(args: &[u8]) -> ArgsHash {
    Sha256::digest(args).into()
}

/// Counts each (name, hash) pair in submission order: the same program
/// submitting the same jobs in the same order gets the same occurrences.
#[derive(Debug, Default)]
pub(crate) struct Occurrences {
    seen: HashMap<(&'static str, ArgsHash), u64, BuildHasherDefault<Prehashed>>,
}

/// Hashes a (name, SHA-256) pair by the digest's first bytes (a digest
/// needs no second hash; SipHash over it cost more than a no-op job's run).
#[derive(Debug, Default)]
pub(crate) struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // The name's bytes and the digest's come here: mixed in 8 at a time.
        for chunk in bytes.chunks(8) {
            let mut word = [0; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(word))
                .wrapping_mul(0x517c_c1b7_2722_0a95);
        }
    }
}

impl Occurrences {
    /// The occurrence of this pair (0 for the first), counting it.
    pub(crate) fn next(&mut self, name: &'static str, hash: ArgsHash) -> u64 {
        let n = self.seen.entry((name, hash)).or_insert(0);
        let this = *n;
        *n += 1;
        this
    }
}

/// The name, length first, after the kind byte.
fn with_name(kind: u8, name: &str, rest: usize) -> Key {
    let mut key = Vec::with_capacity(1 + 2 + name.len() + rest);
    key.push(kind);
    // Names are Rust paths: far below 64 KiB.
    let len = u16::try_from(name.len()).unwrap_or(u16::MAX);
    key.extend_from_slice(&len.to_be_bytes());
    key.extend_from_slice(&name.as_bytes()[..usize::from(len)]);
    key
}

/// The identity of the `occurrence`th job `name` with arguments hashing to `hash`.
pub(crate) fn derived(name: &str, hash: &ArgsHash, occurrence: u64) -> Key {
    let mut key = with_name(DERIVED, name, 32 + 8);
    key.extend_from_slice(hash);
    key.extend_from_slice(&occurrence.to_be_bytes());
    key
}

/// The identity the user gave job `name`.
pub(crate) fn given(name: &str, user: &str) -> Key {
    let mut key = with_name(GIVEN, name, user.len());
    key.extend_from_slice(user.as_bytes());
    key
}

/// The job name inside an identity; `None` if it is not one.
pub(crate) fn name_of(key: &[u8]) -> Option<&str> {
    let (&kind, rest) = key.split_first()?;
    if kind != DERIVED && kind != GIVEN {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([*rest.first()?, *rest.get(1)?]));
    std::str::from_utf8(rest.get(2..2 + len)?).ok()
}

/// Whether an outcome is recorded: a value, or the job's own error (it
/// returned one or panicked). The system's errors (shut down, cancelled,
/// timed out, node lost, crashed, refused) are not: the job runs again
/// next time.
pub(crate) fn is_recorded(outcome: &Result<Vec<u8>, &JobError>) -> bool {
    match outcome {
        Ok(_) => true,
        Err(e) => matches!(e.kind, ErrorKind::Failed | ErrorKind::Panicked),
    }
}

fn checksum(key: &[u8], body: &[u8]) -> [u8; CHECK] {
    let mut h = Sha256::new();
    h.update((key.len() as u64).to_be_bytes());
    h.update(key);
    h.update(body);
    let full: [u8; 32] = h.finalize().into();
    let mut out = [0; CHECK];
    out.copy_from_slice(&full[..CHECK]);
    out
}

/// The record of `outcome` under `key`; `None` if it is not recorded
/// ([`is_recorded`]) or the error does not encode.
pub(crate) fn record(key: &[u8], outcome: Result<Vec<u8>, &JobError>) -> Option<Vec<u8>> {
    if !is_recorded(&outcome) {
        return None;
    }
    let mut body = match outcome {
        Ok(mut value) => {
            value.insert(0, VALUE);
            value
        }
        Err(e) => {
            let mut body = vec![ERROR];
            rmp_serde::encode::write(&mut body, e).ok()?;
            body
        }
    };
    let check = checksum(key, &body);
    body.extend_from_slice(&check);
    Some(body)
}

/// Why a record cannot be read back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Damaged {
    /// Too short, an unknown kind, or a checksum that does not match.
    #[error("a damaged record (its checksum does not match)")]
    Checksum,
    /// An error record that does not decode.
    #[error("an error record that does not decode")]
    Error,
}

/// Splits the body of a record whose checksum was checked ([`verify`]):
/// the encoded value, or the error.
pub(crate) fn read_verified(record: &[u8]) -> Result<Result<Vec<u8>, JobError>, Damaged> {
    let body = record
        .get(..record.len().saturating_sub(CHECK))
        .unwrap_or_default();
    match body.split_first() {
        Some((&VALUE, value)) => Ok(Ok(value.to_vec())),
        Some((&ERROR, error)) => rmp_serde::from_slice(error)
            .map(Err)
            .map_err(|_| Damaged::Error),
        _ => Err(Damaged::Checksum),
    }
}

/// The body of a record whose checksum matches.
pub(crate) fn verify<'a>(key: &[u8], record: &'a [u8]) -> Result<&'a [u8], Damaged> {
    let split = record.len().checked_sub(CHECK).ok_or(Damaged::Checksum)?;
    let (body, check) = record.split_at(split);
    if body.is_empty() || checksum(key, body) != check {
        return Err(Damaged::Checksum);
    }
    Ok(body)
}

/// Records committed together, as one value of the store: each as its
/// key's length (u32, big-endian), the key, the record's length, the record.
/// One value per commit, not one per record: a B-tree insert per result
/// cost more than the job it recorded.
pub(crate) fn batch<'a>(rows: impl Iterator<Item = (&'a [u8], &'a [u8])>) -> Vec<u8> {
    let mut out = Vec::new();
    for (key, record) in rows {
        for part in [key, record] {
            let len = u32::try_from(part.len()).unwrap_or(u32::MAX);
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(part);
        }
    }
    out
}

/// A key and its record, inside a batch.
pub(crate) type Pair<'a> = (&'a [u8], &'a [u8]);

/// The (key, record) pairs of a [`batch`]; `Err` if it is cut short. The
/// records' checksums are for [`verify`].
pub(crate) fn unbatch(mut bytes: &[u8]) -> Result<Vec<Pair<'_>>, Damaged> {
    fn part<'a>(bytes: &mut &'a [u8]) -> Result<&'a [u8], Damaged> {
        let (len, rest) = bytes.split_first_chunk::<4>().ok_or(Damaged::Checksum)?;
        let len = usize::try_from(u32::from_be_bytes(*len)).map_err(|_| Damaged::Checksum)?;
        let (part, rest) = rest.split_at_checked(len).ok_or(Damaged::Checksum)?;
        *bytes = rest;
        Ok(part)
    }
    let mut rows = Vec::new();
    while !bytes.is_empty() {
        let key = part(&mut bytes)?;
        let record = part(&mut bytes)?;
        rows.push((key, record));
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checks a record against its key and splits it.
    fn read(key: &[u8], record: &[u8]) -> Result<Result<Vec<u8>, JobError>, Damaged> {
        verify(key, record)?;
        read_verified(record)
    }

    #[test]
    fn batches_split_back_into_their_records() {
        let rows: Vec<(Vec<u8>, Vec<u8>)> = (0..5u8)
            .map(|i| (vec![i; usize::from(i)], vec![i + 1; 3]))
            .collect();
        let bytes = batch(rows.iter().map(|(k, r)| (k.as_slice(), r.as_slice())));
        let back = unbatch(&bytes).unwrap();
        assert_eq!(back.len(), 5);
        for ((k, r), (bk, br)) in rows.iter().zip(back) {
            assert_eq!((k.as_slice(), r.as_slice()), (bk, br));
        }
        assert_eq!(unbatch(&[]), Ok(Vec::new()));
        for cut in 1..bytes.len() {
            let short = unbatch(&bytes[..cut]);
            assert!(
                short.is_err() || short.is_ok_and(|r| r.len() < 5),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn occurrences_count_each_pair_apart() {
        let mut occ = Occurrences::default();
        let (a, b) = (args_hash(b"a"), args_hash(b"b"));
        assert_eq!(occ.next("j", a), 0);
        assert_eq!(occ.next("j", a), 1);
        assert_eq!(occ.next("j", b), 0);
        assert_eq!(occ.next("k", a), 0);
        assert_eq!(occ.next("j", a), 2);
    }

    #[test]
    fn identities_differ_by_every_part_and_give_back_the_name() {
        let h = args_hash(b"args");
        let keys = [
            derived("j", &h, 0),
            derived("j", &h, 1),
            derived("k", &h, 0),
            derived("j", &args_hash(b"other"), 0),
            given("j", "0"),
            given("k", "0"),
        ];
        for (i, a) in keys.iter().enumerate() {
            for b in &keys[i + 1..] {
                assert_ne!(a, b);
            }
        }
        assert_eq!(name_of(&keys[0]), Some("j"));
        assert_eq!(name_of(&keys[5]), Some("k"));
        assert_eq!(name_of(b""), None);
        assert_eq!(name_of(&[7, 0, 1, b'x']), None);
        assert_eq!(name_of(&[0, 0, 9, b'x']), None);
    }

    #[test]
    fn records_read_back_and_damage_is_seen() {
        let key = derived("j", &args_hash(b"x"), 0);
        let value = record(&key, Ok(vec![1, 2, 3])).unwrap();
        assert_eq!(read(&key, &value), Ok(Ok(vec![1, 2, 3])));
        assert_eq!(read_verified(&value), Ok(Ok(vec![1, 2, 3])));
        let err = JobError::new(ErrorKind::Failed, "no");
        let failed = record(&key, Err(&err)).unwrap();
        assert_eq!(read(&key, &failed), Ok(Err(err)));
        // Under another key, flipped, cut short: never read as a result.
        assert_eq!(read(&given("j", "k"), &value), Err(Damaged::Checksum));
        for i in 0..value.len() {
            let mut bad = value.clone();
            bad[i] ^= 0x40;
            assert_eq!(read(&key, &bad), Err(Damaged::Checksum), "byte {i}");
        }
        assert_eq!(
            read(&key, &value[..value.len() - 1]),
            Err(Damaged::Checksum)
        );
        assert_eq!(read(&key, &[]), Err(Damaged::Checksum));
    }

    #[test]
    fn only_values_and_the_jobs_own_errors_are_recorded() {
        let key = given("j", "k");
        for kind in [ErrorKind::Failed, ErrorKind::Panicked] {
            assert!(record(&key, Err(&JobError::new(kind, "x"))).is_some());
        }
        for kind in [
            ErrorKind::Shutdown,
            ErrorKind::Cancelled,
            ErrorKind::TimedOut,
            ErrorKind::NodeLost,
            ErrorKind::Crashed,
        ] {
            assert!(record(&key, Err(&JobError::new(kind, "x"))).is_none());
        }
    }
}
