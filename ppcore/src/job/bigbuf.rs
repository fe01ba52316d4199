//! Large buffers backed by huge pages where the kernel offers them.
//!
//! A payload written into fresh memory pays one page fault per 4 KiB page:
//! 65,536 of them for 256 MiB, each taken, zeroed and charged on its own.
//! Measured on a 2-core VM (`payload` benchmark), that cost as much as the
//! copy itself, and it falls on the one thread that encodes, assembles or
//! decodes a big payload while the other side waits. Buffers of at least
//! [`HUGE_FROM`] bytes therefore ask the kernel (`madvise(MADV_HUGEPAGE)`)
//! to back them with 2 MiB pages: 128 faults instead of 65,536. It is a
//! hint: where transparent huge pages are off, nothing changes, and the
//! memory is the allocator's as always (freed the usual way).
//!
//! Every buffer this crate fills with a whole payload comes from here: the
//! encoded arguments and results, the buffers streams are assembled in,
//! and decoded byte and number vectors.

/// Buffers from this size up ask for huge pages.
pub(crate) const HUGE_FROM: usize = 4 << 20;
/// The size of a huge page: only whole, aligned ones inside a buffer count.
#[cfg(target_os = "linux")]
const HUGE_PAGE: usize = 2 << 20;

/// An empty vector with room for `n` elements, asking for huge pages when
/// that room is large.
pub(crate) fn with_capacity<T>(n: usize) -> Vec<T> {
    let v = Vec::with_capacity(n);
    advise(&v);
    v
}

/// Asks the kernel to back the room of `v` with huge pages, if it is large.
/// Pages already touched stay as they are, so call it before filling `v`.
pub(crate) fn advise<T>(v: &Vec<T>) {
    let bytes = v.capacity().saturating_mul(std::mem::size_of::<T>());
    if bytes < HUGE_FROM {
        return;
    }
    #[cfg(target_os = "linux")]
    {
        let start = v.as_ptr() as usize;
        let from = start.next_multiple_of(HUGE_PAGE);
        let to = start.saturating_add(bytes) / HUGE_PAGE * HUGE_PAGE;
        if to > from {
            // SAFETY: [from, to) lies inside the allocation `v` owns, and
            // MADV_HUGEPAGE only changes how the kernel backs those pages:
            // never their contents, their validity or who owns them. A
            // failure (no THP here) changes nothing, so it is ignored.
            #[allow(unsafe_code)]
            let _ = unsafe {
                rustix::mm::madvise(
                    from as *mut std::ffi::c_void,
                    to - from,
                    rustix::mm::Advice::LinuxHugepage,
                )
            };
        }
    }
}

/// A growing byte buffer for encoding: when it must grow past
/// [`HUGE_FROM`], its new room asks for huge pages before any byte lands in
/// it (a plain `Vec` would grow into fresh 4 KiB pages).
#[derive(Debug, Default)]
pub(crate) struct Writer(Vec<u8>);

impl Writer {
    /// A writer with room for `n` bytes.
    pub(crate) fn with_capacity(n: usize) -> Self {
        Writer(with_capacity(n))
    }

    /// The bytes written.
    pub(crate) fn into_inner(self) -> Vec<u8> {
        self.0
    }
}

impl std::io::Write for Writer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let need = self.0.len().saturating_add(buf.len());
        if need > self.0.capacity() {
            let room = need.max(self.0.capacity().saturating_mul(2));
            if room >= HUGE_FROM {
                let mut grown = with_capacity(room);
                grown.extend_from_slice(&self.0);
                self.0 = grown;
            }
        }
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_writer_keeps_every_byte_across_growth_into_a_large_buffer() {
        let mut w = Writer::with_capacity(3);
        w.write_all(b"abc").unwrap();
        let big: Vec<u8> = (0..HUGE_FROM + 12_345).map(|i| (i % 251) as u8).collect();
        w.write_all(&big).unwrap();
        w.write_all(b"z").unwrap();
        let out = w.into_inner();
        assert_eq!(out.len(), 3 + big.len() + 1);
        assert_eq!(&out[..3], b"abc");
        assert_eq!(&out[3..3 + big.len()], &big[..]);
        assert_eq!(out.last(), Some(&b'z'));
    }

    #[test]
    fn large_buffers_are_usable_after_the_advice() {
        let mut v: Vec<u64> = with_capacity(HUGE_FROM);
        v.extend((0..HUGE_FROM as u64).map(|i| i * 3));
        assert_eq!(v.len(), HUGE_FROM);
        assert!(v.iter().enumerate().all(|(i, &x)| x == i as u64 * 3));
    }
}
