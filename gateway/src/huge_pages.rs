//! The gateway's global allocator: the system allocator, except that large allocations are aligned to
//! 2 MiB and advised as transparent huge pages (`madvise(MADV_HUGEPAGE)`, which Linux honours in its
//! default `madvise` THP mode).
//!
//! Why: the guardrails dictionary (vibrato's lexicon trie and IPADIC's connection matrix, ≈50 MB
//! allocated once at start-up) is read at random places by every detection, and between two requests
//! it falls out of the caches and out of the TLB. With 4 KiB pages each of those reads can also need a
//! page-table walk (costly in a virtual machine); with 2 MiB pages the whole dictionary fits in a few
//! dozen TLB entries. Perf showed the analyser's memory stalls as the largest cost of a guarded request.
//! Small allocations — everything the request path allocates — go to the system allocator unchanged.

use std::alloc::{GlobalAlloc, Layout, System};

/// Size of a transparent huge page on x86-64 and the usual arm64 configuration.
const HUGE_PAGE: usize = 2 << 20;

/// Allocations of at least this many bytes get huge pages.
const THRESHOLD: usize = 2 << 20;

/// The system allocator with huge pages for allocations of 2 MiB and more (see the module docs).
pub struct HugePageAlloc;

/// The layout actually requested from the system for `layout`: aligned to a huge page when large.
fn system_layout(layout: Layout) -> Layout {
    if layout.size() < THRESHOLD {
        return layout;
    }
    Layout::from_size_align(layout.size(), layout.align().max(HUGE_PAGE)).unwrap_or(layout)
}

/// Advises the kernel to back `len` bytes at `ptr` with huge pages. Best effort: the advice is only
/// a hint, and an error (e.g. THP disabled) leaves ordinary pages.
fn advise(ptr: *mut u8, len: usize) {
    #[cfg(target_os = "linux")]
    if !ptr.is_null() {
        // SAFETY: `ptr..ptr+len` is an allocation we just received; MADV_HUGEPAGE changes no contents.
        unsafe {
            libc::madvise(ptr.cast(), len, libc::MADV_HUGEPAGE);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (ptr, len);
}

// SAFETY: every block is allocated and freed by `System` with the same (possibly re-aligned) layout,
// which `system_layout` computes from the caller's layout alone.
unsafe impl GlobalAlloc for HugePageAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let sys = system_layout(layout);
        // SAFETY: `sys` has the caller's non-zero size and an alignment at least the caller's.
        let ptr = unsafe { System.alloc(sys) };
        if sys != layout {
            advise(ptr, sys.size());
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let sys = system_layout(layout);
        if sys == layout {
            // SAFETY: forwarded unchanged.
            return unsafe { System.alloc_zeroed(layout) };
        }
        // Advise before the pages are first touched (by the zeroing), so they are huge from the start.
        // SAFETY: as in `alloc`.
        let ptr = unsafe { System.alloc(sys) };
        if !ptr.is_null() {
            advise(ptr, sys.size());
            // SAFETY: `ptr` points to `sys.size()` writable bytes.
            unsafe { ptr.write_bytes(0, sys.size()) };
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc`/`realloc` with this layout, hence from `System` with
        // `system_layout(layout)`.
        unsafe { System.dealloc(ptr, system_layout(layout)) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return std::ptr::null_mut();
        };
        if system_layout(layout) == layout && system_layout(new_layout) == new_layout {
            // SAFETY: both layouts are the caller's own; forwarded unchanged.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        // SAFETY: `new_layout` has a non-zero size (the caller's contract for `realloc`).
        let new = unsafe { self.alloc(new_layout) };
        if !new.is_null() {
            // SAFETY: both blocks are valid for the copied length and do not overlap.
            unsafe {
                std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
        }
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_layouts_are_unchanged_and_large_ones_aligned_to_huge_pages() {
        let small = Layout::from_size_align(4096, 8).expect("layout");
        assert_eq!(system_layout(small), small);
        let large = Layout::from_size_align(3 << 20, 8).expect("layout");
        assert_eq!(system_layout(large).align(), HUGE_PAGE);
        assert_eq!(system_layout(large).size(), large.size());
    }

    #[test]
    fn large_blocks_keep_their_contents_across_realloc() {
        let a = HugePageAlloc;
        let l = Layout::from_size_align(1 << 20, 8).expect("layout");
        // SAFETY: sizes are non-zero; every block is freed with the layout it was allocated with.
        unsafe {
            let p = a.alloc(l);
            assert!(!p.is_null());
            p.write_bytes(7, l.size());
            let q = a.realloc(p, l, 5 << 20);
            assert!(!q.is_null());
            assert_eq!(q as usize % HUGE_PAGE, 0);
            assert_eq!(*q.add(l.size() - 1), 7);
            let r = a.realloc(q, Layout::from_size_align(5 << 20, 8).expect("layout"), 64);
            assert_eq!(*r.add(63), 7);
            a.dealloc(r, Layout::from_size_align(64, 8).expect("layout"));
            let z = a.alloc_zeroed(Layout::from_size_align(3 << 20, 8).expect("layout"));
            assert_eq!(*z.add((3 << 20) - 1), 0);
            a.dealloc(z, Layout::from_size_align(3 << 20, 8).expect("layout"));
        }
    }
}
