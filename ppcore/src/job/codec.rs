//! The MessagePack codec of arguments and results: [`encode`], [`decode`],
//! and [`check_size`] that counts without allocating.

use crate::job::error::{ErrorKind, JobError};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Encodes a value as MessagePack, the format of arguments and results on the wire.
///
/// Byte sequences (`Vec<u8>`, `&[u8]`, `Box<[u8]>`, as well as
/// `serde_bytes::ByteBuf`) are written as one MessagePack binary, not as one
/// number per byte, so a plain `Vec<u8>` takes on the wire what a `ByteBuf`
/// takes (serde still hands it over byte by byte, so `ByteBuf` is faster).
/// [`decode`] reads them back as the same types, and still reads byte
/// sequences written as arrays of numbers. (Fixed-size arrays such as
/// `[u8; 32]` stay arrays.) Numeric vectors go fastest as [`Array`](crate::Array).
///
/// ```
/// let bytes = ppcore::encode(&vec![0xFFu8; 1000])?;
/// assert_eq!(bytes.len(), 1000 + 3);                 // bin16 header, then the bytes
/// assert_eq!(ppcore::decode::<Vec<u8>>(&bytes)?, vec![0xFFu8; 1000]);
/// # Ok::<(), ppcore::JobError>(())
/// ```
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, JobError> {
    let mut out = crate::job::bigbuf::Writer::default();
    write_to(&mut out, value)?;
    Ok(out.into_inner())
}

/// Writes `value` as [`encode`] does: the one place the codec's settings live.
pub(crate) fn write_to<W: std::io::Write, T: Serialize + ?Sized>(
    out: W,
    value: &T,
) -> Result<(), JobError> {
    let mut serializer =
        rmp_serde::Serializer::new(out).with_bytes(rmp_serde::config::BytesMode::ForceIterables);
    value
        .serialize(&mut serializer)
        .map_err(|e| JobError::new(ErrorKind::Codec, e.to_string()))
}

/// Checks that `value`, encoded as [`encode`] would, takes at most `limit`
/// bytes, and returns how many it takes. Only counts: nothing is allocated,
/// and counting stops at the limit. Over the limit is an
/// [`ErrorKind::Codec`] error that says so.
///
/// ```
/// use serde_bytes::ByteBuf;
/// let args = (ByteBuf::from(vec![0u8; 1000]),);
/// assert_eq!(ppcore::check_size(&args, 2000), Ok(ppcore::encode(&args)?.len()));
/// assert_eq!(ppcore::check_size(&args, 999).unwrap_err().kind, ppcore::ErrorKind::Codec);
/// # Ok::<(), ppcore::JobError>(())
/// ```
pub fn check_size<T: Serialize + ?Sized>(value: &T, limit: usize) -> Result<usize, JobError> {
    let mut counter = Counter { bytes: 0, limit };
    match write_to(&mut counter, value) {
        Ok(()) => Ok(counter.bytes),
        Err(_) if counter.bytes > limit => Err(over_limit(limit)),
        Err(e) => Err(e),
    }
}

pub(crate) fn over_limit(limit: usize) -> JobError {
    JobError::new(
        ErrorKind::Codec,
        format!("the arguments are over the {limit}-byte payload limit"),
    )
}

/// A sink that counts what is written to it and refuses once past `limit`.
pub(crate) struct Counter {
    pub(crate) bytes: usize,
    pub(crate) limit: usize,
}

impl std::io::Write for Counter {
    #[inline]
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.bytes = self.bytes.saturating_add(buf.len());
        if self.bytes > self.limit {
            return Err(std::io::Error::other("over the limit"));
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Decodes a MessagePack value; a mismatch is an [`ErrorKind::Codec`] error.
///
/// serde's buffering types (`#[serde(untagged)]`, internally tagged enums,
/// `#[serde(flatten)]`) see a binary as bytes, which a `Vec<u8>` inside them
/// does not accept: when the first try fails and the input holds binaries,
/// they are read a second time as arrays of numbers.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, JobError> {
    let first = match rmp_serde::from_slice(bytes) {
        Ok(value) => return Ok(value),
        Err(e) => JobError::new(ErrorKind::Codec, e.to_string()),
    };
    match crate::job::binaries_as_arrays::bins_as_arrays(bytes) {
        Some(rewritten) => {
            crate::job::binaries_as_arrays::as_second_try(|| rmp_serde::from_slice(&rewritten))
                .map_err(|_| first)
        }
        None => Err(first),
    }
}
