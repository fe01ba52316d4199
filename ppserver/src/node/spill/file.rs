//! The spill file format: one kept value per file, checked when read back.
//!
//! ```text
//!  magic "PPSPILL1" (8) | value id (32) | length, u64 LE (8) | SHA-256 of the bytes (32) | bytes
//! ```
//!
//! A file that is short, long, of another value, or whose bytes do not
//! hash to the header's checksum is refused: the caller treats the value
//! as lost (it is made again from lineage), never as a wrong value.

use ppcore::shared::SharedId;
use sha2::{Digest, Sha256};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// The first bytes of every spill file.
const MAGIC: &[u8; 8] = b"PPSPILL1";
/// The header's length: magic, id, length, checksum.
pub(crate) const HEADER: u64 = 8 + 32 + 8 + 32;

/// Why a spill file was not read back.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum SpillError {
    /// It could not be opened or read (missing, say).
    #[error("cannot read the spill file: {0}")]
    Io(#[from] io::Error),
    /// It is not a spill file, or not of this value.
    #[error("the spill file's header is not this value's")]
    Header,
    /// It holds more or fewer bytes than its header says.
    #[error("the spill file holds {found} bytes, its header says {said}")]
    Length {
        /// What the header says.
        said: u64,
        /// What the file holds after its header.
        found: u64,
    },
    /// Its bytes do not match their checksum.
    #[error("the spill file's bytes do not match their checksum")]
    Checksum,
}

/// The header of `bytes` kept as `id`.
fn header(id: &SharedId, bytes: &[u8]) -> Vec<u8> {
    let mut h = Vec::with_capacity(HEADER as usize);
    h.extend_from_slice(MAGIC);
    h.extend_from_slice(&id.0);
    h.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
    h.extend_from_slice(&Sha256::digest(bytes));
    h
}

/// Writes `bytes` as value `id` to a new file at `path` (mode 0600); on an
/// error nothing is left there.
pub(crate) fn write(path: &Path, id: &SharedId, bytes: &[u8]) -> io::Result<()> {
    let written = (|| {
        let mut file = File::options()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)?;
        file.write_all(&header(id, bytes))?;
        file.write_all(bytes)?;
        file.flush()
    })();
    if written.is_err() {
        let _ = fs::remove_file(path);
    }
    written
}

/// Reads value `id` back from `path`, checked against its header.
pub(crate) fn read(path: &Path, id: &SharedId) -> Result<Vec<u8>, SpillError> {
    let mut file = File::open(path)?;
    let mut head = [0u8; HEADER as usize];
    file.read_exact(&mut head).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => SpillError::Header,
        _ => SpillError::Io(e),
    })?;
    if &head[..8] != MAGIC || head[8..40] != id.0 {
        return Err(SpillError::Header);
    }
    let mut said = [0u8; 8];
    said.copy_from_slice(&head[40..48]);
    let said = u64::from_le_bytes(said);
    let found = file.metadata()?.len().saturating_sub(HEADER);
    if said != found {
        return Err(SpillError::Length { said, found });
    }
    let mut bytes = Vec::with_capacity(usize::try_from(said).unwrap_or(0));
    file.read_to_end(&mut bytes)?;
    if bytes.len() as u64 != said {
        let found = bytes.len() as u64;
        return Err(SpillError::Length { said, found });
    }
    match Sha256::digest(&bytes)[..] == head[48..80] {
        true => Ok(bytes),
        false => Err(SpillError::Checksum),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!(
            "pp-spill-format-{}-{}",
            std::process::id(),
            SharedId::fresh().unwrap()
        ));
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn a_value_written_reads_back_the_same() {
        let d = dir();
        let (id, path) = (SharedId::of(b"v"), d.join("v.spill"));
        let bytes: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        write(&path, &id, &bytes).unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().len(),
            HEADER + bytes.len() as u64
        );
        assert_eq!(read(&path, &id).unwrap(), bytes);
        write(&path, &id, b"").unwrap();
        assert_eq!(read(&path, &id).unwrap(), b"");
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn a_truncated_file_is_refused() {
        let d = dir();
        let (id, path) = (SharedId::of(b"v"), d.join("v.spill"));
        write(&path, &id, &[7u8; 1000]).unwrap();
        let file = File::options().write(true).open(&path).unwrap();
        file.set_len(HEADER + 999).unwrap();
        let err = read(&path, &id).unwrap_err();
        assert!(
            matches!(
                err,
                SpillError::Length {
                    said: 1000,
                    found: 999
                }
            ),
            "{err}"
        );
        file.set_len(20).unwrap();
        assert!(matches!(read(&path, &id), Err(SpillError::Header)));
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn a_flipped_byte_anywhere_is_refused() {
        let d = dir();
        let (id, path) = (SharedId::of(b"v"), d.join("v.spill"));
        let bytes = vec![3u8; 500];
        write(&path, &id, &bytes).unwrap();
        let good = fs::read(&path).unwrap();
        // In the bytes, in the checksum, in the id, in the magic.
        for at in [HEADER as usize + 250, 60, 20, 0] {
            let mut bad = good.clone();
            bad[at] ^= 0x01;
            fs::write(&path, &bad).unwrap();
            assert!(read(&path, &id).is_err(), "flipped at {at}");
        }
        fs::write(&path, &good).unwrap();
        assert!(
            matches!(read(&path, &SharedId::of(b"w")), Err(SpillError::Header)),
            "another value's file"
        );
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn a_missing_file_is_an_error_and_a_failed_write_leaves_nothing() {
        let d = dir();
        let id = SharedId::of(b"v");
        let err = read(&d.join("none.spill"), &id).unwrap_err();
        assert!(matches!(err, SpillError::Io(_)), "{err}");
        let nowhere = d.join("no-such-dir").join("v.spill");
        assert!(write(&nowhere, &id, b"abc").is_err());
        assert!(!nowhere.exists());
        fs::remove_dir_all(d).unwrap();
    }
}
