//! The filters' allocator in wasm: freed small blocks are kept by size class and handed out again,
//! in front of the standard allocator (wasi-libc's dlmalloc).
//!
//! Why: a request through the chain allocates and frees some thirty small blocks (stream
//! contexts, header values, keys, rewritten paths), and dlmalloc's general path for each, with
//! its bins, splitting and coalescing, was the largest single share of our own work per request
//! (bench/NOTEBOOK.md, "The host calls alone, timed"). A request's blocks are the same sizes as the
//! previous request's, so a free list per size class serves them in a few instructions, and the
//! code a request runs through stays small. No crate does this: `talc`, a whole allocator made
//! for wasm, measured no cheaper than dlmalloc here ("Tried and left out").
//!
//! What it costs: a block in a class is never given back to dlmalloc, so the memory the filters
//! hold is their peak of small blocks per class, which a steady load reaches within its first
//! requests. Blocks larger than [`LARGEST`] bytes, and blocks that need more alignment than
//! [`ALIGN`], go straight to dlmalloc as before.
//!
//! A proxy-wasm VM is one instance on one thread (`wasm32-wasip1` has no threads), which is what
//! makes the unsynchronised lists sound; the allocator is installed only there (`lib.rs`).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::UnsafeCell;
use std::ptr;

/// Sizes are rounded up to a multiple of this; it is also the alignment every block in a class
/// has (what dlmalloc's `malloc` guarantees on wasm32 without asking for more).
pub const ALIGN: usize = 8;
/// The largest block served from a class: it covers a request's copy of its headers
/// (`headers.rs`, about 700 bytes), the largest block allocated on every request.
pub const LARGEST: usize = 1024;
const CLASSES: usize = LARGEST / ALIGN;

/// Free lists by size class: each free block's first word points to the next free block.
pub struct SizeClassCache {
    free: UnsafeCell<[*mut u8; CLASSES]>,
}

// SAFETY: installed only where there is exactly one thread (see the module's comment); the host
// tests use an instance from one thread at a time.
unsafe impl Sync for SizeClassCache {}

impl SizeClassCache {
    pub const fn new() -> Self {
        Self {
            free: UnsafeCell::new([ptr::null_mut(); CLASSES]),
        }
    }
}

impl Default for SizeClassCache {
    fn default() -> Self {
        Self::new()
    }
}

/// The class of `layout`, or `None` if dlmalloc serves it directly.
fn class_of(layout: Layout) -> Option<usize> {
    if layout.size() == 0 || layout.size() > LARGEST || layout.align() > ALIGN {
        return None;
    }
    Some((layout.size() - 1) / ALIGN)
}

/// The layout every block of `class` is allocated with: the class's whole size, so that a block
/// can serve any request of its class.
fn class_layout(class: usize) -> Option<Layout> {
    Layout::from_size_align((class + 1) * ALIGN, ALIGN).ok()
}

// SAFETY: every block handed out is either fresh from `System` with a layout at least as large
// and as aligned as asked for, or a freed block of the same class (the same size and alignment),
// and a block goes back to the class it came from because `dealloc` gets the caller's layout,
// which maps to the same class as at allocation.
unsafe impl GlobalAlloc for SizeClassCache {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let Some(class) = class_of(layout) else {
            // SAFETY: the caller's layout, as the caller promised it.
            return unsafe { System.alloc(layout) };
        };
        // SAFETY: one thread, and no other reference to the lists lives past this call.
        let free = unsafe { &mut *self.free.get() };
        let head = free[class];
        if head.is_null() {
            return match class_layout(class) {
                // SAFETY: a non-zero size and a valid alignment.
                Some(whole) => unsafe { System.alloc(whole) },
                None => ptr::null_mut(),
            };
        }
        // SAFETY: `head` is a free block of this class, whose first word `dealloc` wrote; blocks
        // are at least `ALIGN` (8) bytes and aligned to it, so the word fits and is aligned.
        free[class] = unsafe { head.cast::<*mut u8>().read() };
        head
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        let Some(class) = class_of(layout) else {
            // SAFETY: a block `System` allocated with this layout (see `alloc`).
            return unsafe { System.dealloc(block, layout) };
        };
        // SAFETY: as in `alloc`; the block is the caller's no longer, so its first word is ours.
        let free = unsafe { &mut *self.free.get() };
        unsafe { block.cast::<*mut u8>().write(free[class]) };
        free[class] = block;
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new_layout = Layout::from_size_align(new_size, layout.align()).ok();
        match (class_of(layout), new_layout.and_then(class_of)) {
            // Both large: dlmalloc may grow the block in place.
            // SAFETY: the caller's block and layout, as the caller promised.
            (None, None) => unsafe { System.realloc(block, layout, new_size) },
            // Within one class the block already has room for the new size.
            (Some(old), Some(new)) if old == new => block,
            _ => {
                let Some(new_layout) = new_layout else {
                    return ptr::null_mut();
                };
                // SAFETY: a valid layout; the copy stays within both blocks.
                unsafe {
                    let moved = self.alloc(new_layout);
                    if !moved.is_null() {
                        ptr::copy_nonoverlapping(block, moved, layout.size().min(new_size));
                        self.dealloc(block, layout);
                    }
                    moved
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(size: usize, align: usize) -> Layout {
        Layout::from_size_align(size, align).unwrap()
    }

    #[test]
    fn sizes_map_to_classes_of_eight_bytes_up_to_the_largest() {
        assert_eq!(class_of(layout(1, 1)), Some(0));
        assert_eq!(class_of(layout(8, 8)), Some(0));
        assert_eq!(class_of(layout(9, 4)), Some(1));
        assert_eq!(class_of(layout(LARGEST, 8)), Some(CLASSES - 1));
        assert_eq!(
            class_of(layout(LARGEST + 1, 8)),
            None,
            "large blocks go to dlmalloc"
        );
        assert_eq!(
            class_of(layout(16, 16)),
            None,
            "so do blocks aligned beyond 8"
        );
        assert_eq!(class_of(layout(0, 1)), None);
    }

    #[test]
    fn a_freed_block_is_handed_out_again_for_its_class_only() {
        let cache = SizeClassCache::new();
        unsafe {
            let a = cache.alloc(layout(20, 4));
            a.write_bytes(0xAB, 20);
            cache.dealloc(a, layout(20, 4));
            assert_eq!(cache.alloc(layout(24, 8)), a, "24 bytes is 20's class");
            let other = cache.alloc(layout(20, 4));
            assert_ne!(other, a, "the list is empty again");
            let small = cache.alloc(layout(8, 8));
            assert_ne!(small, a);
            for (block, l) in [
                (a, layout(24, 8)),
                (other, layout(20, 4)),
                (small, layout(8, 8)),
            ] {
                cache.dealloc(block, l);
            }
        }
    }

    #[test]
    fn blocks_stay_intact_and_aligned_through_churn_and_realloc() {
        let cache = SizeClassCache::new();
        let sizes = [
            1,
            7,
            8,
            9,
            31,
            64,
            100,
            511,
            512,
            513,
            LARGEST,
            LARGEST + 1,
            4096,
        ];
        unsafe {
            for round in 0..3u8 {
                let blocks: Vec<(*mut u8, Layout)> = sizes
                    .iter()
                    .map(|&size| {
                        let l = layout(size, if size % 2 == 0 { 8 } else { 1 });
                        let block = cache.alloc(l);
                        assert!(!block.is_null());
                        assert_eq!(block as usize % l.align(), 0);
                        block.write_bytes(round ^ size as u8, size);
                        (block, l)
                    })
                    .collect();
                let mut grown = Vec::new();
                for (block, l) in blocks {
                    for i in 0..l.size() {
                        assert_eq!(*block.add(i), round ^ l.size() as u8, "size {}", l.size());
                    }
                    // Grow each block across classes (and into dlmalloc's range): the bytes move.
                    let bigger = l.size() * 3;
                    let moved = cache.realloc(block, l, bigger);
                    for i in 0..l.size() {
                        assert_eq!(*moved.add(i), round ^ l.size() as u8, "size {}", l.size());
                    }
                    grown.push((moved, layout(bigger, l.align())));
                }
                for (block, l) in grown {
                    cache.dealloc(block, l);
                }
            }
        }
    }
}
