//! A counting global allocator: the system's, with a running count of the
//! bytes live, so that the simulation can say what the client holds per
//! idle node (`client_bytes_per_idle_node`): live bytes with the client's
//! side of every link, minus live bytes once that side is dropped.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

/// The system allocator, counting.
pub(crate) struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// The only unsafe code outside ppcore's huge-page buffer: a global
// allocator cannot be written without it. Every call is passed unchanged
// to `System`; the count is a side effect that touches no memory given out.
#[allow(unsafe_code)]
// SAFETY: each method forwards its arguments, unchanged, to the same method
// of `System`, which upholds `GlobalAlloc`'s contract; the layouts counted
// are the ones the caller passed (for `realloc`, the old size and `new`).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract for `alloc` is the one `System` needs.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was given out by this allocator (so by `System`)
        // with `layout`, as the caller guarantees.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new: usize) -> *mut u8 {
        // SAFETY: `ptr` and `layout` come from this allocator (so from
        // `System`), and `new` is valid for `layout`'s alignment, as the
        // caller guarantees.
        let p = unsafe { System.realloc(ptr, layout, new) };
        if !p.is_null() {
            LIVE.fetch_add(new as isize - layout.size() as isize, Ordering::Relaxed);
        }
        p
    }
}

/// Bytes allocated and not yet freed, process-wide.
pub(crate) fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}
