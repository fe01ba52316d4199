//! The codec's second try: MessagePack with every binary rewritten as an
//! array of small integers, the way byte sequences were written before they
//! became binaries.
//!
//! [`encode`](crate::job::codec::encode) writes a `Vec<u8>` as one binary. serde's
//! buffering types (`#[serde(untagged)]`, internally tagged enums,
//! `#[serde(flatten)]`) read a binary as "bytes", which a `Vec<u8>` does not
//! accept; as an array of integers it does. So when a first decode fails,
//! [`decode`](crate::job::codec::decode) rewrites the input here and tries once more.
//! [`Array`](crate::Array) knows the second try ([`in_second_try`]) and reads
//! its rewritten bytes back as raw bytes.

use std::cell::Cell;

/// Nesting deeper than this is refused (rmp-serde's own limit).
const MAX_DEPTH: u32 = 1024;

thread_local! {
    static SECOND_TRY: Cell<bool> = const { Cell::new(false) };
}

/// Whether this thread is decoding a rewritten input now.
pub(crate) fn in_second_try() -> bool {
    SECOND_TRY.get()
}

/// Runs `f` marked as a second try.
pub(crate) fn as_second_try<R>(f: impl FnOnce() -> R) -> R {
    let outer = SECOND_TRY.replace(true);
    let result = f();
    SECOND_TRY.set(outer);
    result
}

/// `input` with each binary as an array of integers; `None` when it holds no
/// binary (nothing to try) or is not well-formed MessagePack. The result is
/// at most twice as long as the input.
pub(crate) fn bins_as_arrays(input: &[u8]) -> Option<Vec<u8>> {
    let mut walk = Walk {
        input,
        pos: 0,
        out: Vec::with_capacity(input.len()),
        changed: false,
    };
    walk.value(0)?;
    walk.out.extend_from_slice(input.get(walk.pos..)?);
    walk.changed.then_some(walk.out)
}

struct Walk<'a> {
    input: &'a [u8],
    pos: usize,
    out: Vec<u8>,
    changed: bool,
}

impl<'a> Walk<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let input: &'a [u8] = self.input;
        let end = self.pos.checked_add(n)?;
        let bytes = input.get(self.pos..end)?;
        self.pos = end;
        Some(bytes)
    }

    fn uint(&mut self, n: usize) -> Option<usize> {
        let bytes = self.take(n)?;
        let value = bytes.iter().fold(0u64, |v, &b| (v << 8) | u64::from(b));
        let value = usize::try_from(value).ok()?;
        self.out.extend_from_slice(bytes);
        Some(value)
    }

    /// Copies `n` bytes as they are.
    fn copy(&mut self, n: usize) -> Option<()> {
        let bytes = self.take(n)?;
        self.out.extend_from_slice(bytes);
        Some(())
    }

    fn values(&mut self, count: usize, depth: u32) -> Option<()> {
        for _ in 0..count {
            self.value(depth + 1)?;
        }
        Some(())
    }

    fn value(&mut self, depth: u32) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        let marker = *self.take(1)?.first()?;
        match marker {
            0xc4..=0xc6 => return self.bin(marker),
            _ => self.out.push(marker),
        }
        match marker {
            0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => Some(()),
            0x80..=0x8f => self.values(2 * usize::from(marker & 0x0f), depth),
            0x90..=0x9f => self.values(usize::from(marker & 0x0f), depth),
            0xa0..=0xbf => self.copy(usize::from(marker & 0x1f)),
            0xc7..=0xc9 => {
                let len = self.uint(1 << (marker - 0xc7))?;
                self.copy(1 + len)
            }
            0xca => self.copy(4),
            0xcb => self.copy(8),
            0xcc..=0xcf => self.copy(1 << (marker - 0xcc)),
            0xd0..=0xd3 => self.copy(1 << (marker - 0xd0)),
            0xd4..=0xd8 => self.copy(1 + (1 << (marker - 0xd4))),
            0xd9..=0xdb => {
                let len = self.uint(1 << (marker - 0xd9))?;
                self.copy(len)
            }
            0xdc | 0xdd => {
                let count = self.uint(if marker == 0xdc { 2 } else { 4 })?;
                self.values(count, depth)
            }
            0xde | 0xdf => {
                let count = self.uint(if marker == 0xde { 2 } else { 4 })?;
                self.values(count.checked_mul(2)?, depth)
            }
            0xc1 => None,
            0xc4..=0xc6 => None,
        }
    }

    /// A binary of marker `marker` (already taken), written as an array.
    fn bin(&mut self, marker: u8) -> Option<()> {
        let len_bytes = self.take(1 << (marker - 0xc4))?;
        let len = len_bytes
            .iter()
            .fold(0usize, |v, &b| (v << 8) | usize::from(b));
        let bytes = self.take(len)?;
        let out = &mut self.out;
        match len {
            0..=15 => out.push(0x90 | len as u8),
            16..=0xffff => {
                out.push(0xdc);
                out.extend_from_slice(&(len as u16).to_be_bytes());
            }
            _ => {
                out.push(0xdd);
                out.extend_from_slice(&(len as u32).to_be_bytes());
            }
        }
        for &b in bytes {
            if b >= 0x80 {
                out.push(0xcc);
            }
            out.push(b);
        }
        self.changed = true;
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binaries_become_arrays_and_the_rest_stays() {
        let value = (
            serde_bytes::ByteBuf::from(vec![1u8, 200]),
            "s",
            7u64,
            -3i8,
            0.5f64,
        );
        let written = rmp_serde::to_vec(&value).unwrap();
        let rewritten = bins_as_arrays(&written).unwrap();
        let plain = rmp_serde::to_vec(&(vec![1u8, 200], "s", 7u64, -3i8, 0.5f64)).unwrap();
        assert_eq!(rewritten, plain);
    }

    #[test]
    fn nothing_to_rewrite_or_bad_input_is_none() {
        assert_eq!(
            bins_as_arrays(&rmp_serde::to_vec(&(1u8, "x")).unwrap()),
            None
        );
        assert_eq!(bins_as_arrays(&[0xc4, 5, 1]), None, "truncated binary");
        assert_eq!(bins_as_arrays(&[0xc1]), None, "reserved marker");
        assert_eq!(bins_as_arrays(&[0xdd, 0xff, 0xff, 0xff, 0xff]), None);
        assert_eq!(bins_as_arrays(&[0x91; 2000]), None, "too deep");
    }

    #[test]
    fn long_binaries_get_long_array_headers() {
        for len in [15usize, 16, 0xffff, 0x10000] {
            let bytes = vec![0xabu8; len];
            let written = rmp_serde::to_vec(&serde_bytes::ByteBuf::from(bytes.clone())).unwrap();
            let rewritten = bins_as_arrays(&written).unwrap();
            assert_eq!(rewritten, rmp_serde::to_vec(&bytes).unwrap(), "{len}");
        }
    }
}
