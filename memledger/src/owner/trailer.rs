//! The trailer: how a block that carries its owner remembers it.
//!
//! Each such block carries its owner's [`ScopeId`] in a 2-byte trailer at `ptr + layout.size()`.
//! `dealloc` and `realloc` receive the caller's layout, so the trailer is found without any
//! lookup, and the pointer and alignment handed to the caller are exactly those of the inner
//! allocator.
//!
//! Everything that knows where the trailer lives is in this module. The books do not depend on
//! it: they take the owner as a [`ScopeId`] from whichever strategy found it. The other strategy,
//! the arenas (`owner/arena/`), keeps a part per thread (`ThreadArenas`), which the composition
//! point (`crate::thread`) carries in each counter slab, so that it passes to the next thread
//! with the slab.

use core::alloc::Layout;

use crate::books::id::{self, ScopeId};

/// Bytes added to every block.
pub(crate) const TRAILER_SIZE: usize = core::mem::size_of::<ScopeId>();

pub(crate) use crate::books::id::{tag, Tag};

/// The layout the inner allocator is asked for when the caller asks for `size` bytes at `align`.
///
/// Returns `None` when `size + TRAILER_SIZE`, rounded up to `align`, would exceed `isize::MAX`:
/// the allocation then fails (null), as it would for a layout that is too large.
#[inline(always)]
pub(crate) fn outer_layout(size: usize, align: usize) -> Option<Layout> {
    // `size + TRAILER_SIZE` rounded up to `align` stays within `isize::MAX` exactly when
    // `size + TRAILER_SIZE <= 2^63 - align` (the largest multiple of `align` that fits), that is
    // when `size + TRAILER_SIZE - 1 + align`, as an `isize`, is not negative. Both callers pass the
    // parts of a valid layout (`size <= isize::MAX`, and `align <= 2^62` for a non-zero size), so
    // the sum cannot wrap: one add and one sign test.
    if (size.wrapping_add(align).wrapping_add(TRAILER_SIZE - 1) as isize) < 0 {
        return None;
    }
    // SAFETY:
    // - `align` comes from a valid `Layout`, so it is a non-zero power of two;
    // - the check above keeps `size + TRAILER_SIZE`, rounded up to `align`, within `isize::MAX`.
    Some(unsafe { Layout::from_size_align_unchecked(size + TRAILER_SIZE, align) })
}

/// [`outer_layout`] of a block smaller than 64 KiB, without the check.
///
/// # Safety
///
/// - `size` and `align` are the parts of a valid `Layout` with `size < 65_536`.
#[inline(always)]
pub(crate) unsafe fn small_outer_layout(size: usize, align: usize) -> Layout {
    debug_assert!(size < 1 << 16);
    // SAFETY:
    // - `align` is a valid alignment; `size` rounded up to it is within `isize::MAX`, and so is
    //   `size + TRAILER_SIZE` rounded up: it is at most `max(align, 2^17)`, and `align` is at most
    //   `2^62` for a non-zero size (and a zero size can never be asked of a `GlobalAlloc`).
    unsafe { Layout::from_size_align_unchecked(size + TRAILER_SIZE, align) }
}

/// [`outer_layout`] of a block that exists: its outer layout was checked when it was made.
///
/// # Safety
///
/// - `outer_layout(size, align)` is `Some`: `size` and `align` are those of a live block of this
///   crate's allocator.
#[inline(always)]
pub(crate) unsafe fn existing_outer_layout(size: usize, align: usize) -> Layout {
    // SAFETY:
    // - the caller guarantees that the block was allocated with this outer layout, which
    //   `outer_layout` checked then.
    unsafe { Layout::from_size_align_unchecked(size + TRAILER_SIZE, align) }
}

/// The trailer of the block at `ptr` whose caller-visible size is `size`, as a pointer that may
/// reach it.
///
/// The pointer a caller hands to `dealloc` or `realloc` may carry provenance over its own
/// `size` bytes only (a `Box<T>` is retagged for `size_of::<T>()`), so the trailer just past them
/// cannot be reached through it. [`write`] exposes the provenance of the whole block, as the inner
/// allocator returned it, by casting its address to an integer; the trailer's pointer is then made
/// from an integer, which takes back an exposed provenance, the block's. The casts cost nothing at
/// run time; they tell the compiler (and Miri) which memory the access may touch.
#[inline(always)]
fn trailer(ptr: *const u8, size: usize) -> *mut ScopeId {
    (ptr as usize).wrapping_add(size) as *mut ScopeId
}

/// The block at `ptr` (a pointer from a caller) with the provenance of the whole block, trailer
/// included, as [`write`] exposed it: what the inner allocator must be given back, since freeing
/// or resizing a block touches all of it.
#[inline(always)]
pub(crate) fn whole_block(ptr: *mut u8) -> *mut u8 {
    ptr as usize as *mut u8
}

/// Writes the owner's `tag` (see [`tag`]) into the block at `ptr` whose caller-visible size is
/// `size`.
///
/// # Safety
///
/// - `ptr` points to a block of at least `size + TRAILER_SIZE` writable bytes.
#[inline(always)]
pub(crate) unsafe fn write(ptr: *mut u8, size: usize, tag: Tag) {
    // SAFETY:
    // - the caller guarantees `size + TRAILER_SIZE` bytes, so the trailer is in bounds, and `ptr`
    //   is the block as the inner allocator returned it, so `trailer` exposes its whole provenance;
    // - the trailer has no alignment of its own: an unaligned write is always allowed.
    unsafe { trailer(ptr, size).write_unaligned(tag) }
}

/// Reads the owner's tag of the block at `ptr` whose caller-visible size is `size`: any value
/// it holds is a valid tag (see [`Tag`]), even one damaged by a buffer overrun in user code.
///
/// # Safety
///
/// - `ptr` was returned by this crate's allocator for a layout of size `size` (so a trailer was
///   written at `ptr + size`), and the block has not been freed.
#[inline(always)]
pub(crate) unsafe fn read_tag(ptr: *const u8, size: usize) -> Tag {
    // SAFETY:
    // - the caller guarantees the block holds a trailer at `ptr + size`, written by `write`,
    //   which exposed the provenance of the whole block;
    // - an unaligned read is always allowed.
    unsafe { trailer(ptr, size).read_unaligned() }
}

/// Reads the owner of the block at `ptr` whose caller-visible size is `size`.
///
/// # Safety
///
/// - as for [`read_tag`].
#[inline(always)]
pub(crate) unsafe fn read(ptr: *const u8, size: usize) -> ScopeId {
    // SAFETY:
    // - the caller's guarantee.
    id::scope_of(unsafe { read_tag(ptr, size) })
}

/// Bytes a sampled block carries past its trailer: the index of its sample record.
pub(crate) const SAMPLE_INDEX_SIZE: usize = core::mem::size_of::<u32>();

/// The layout the inner allocator is asked for when a block of `size` bytes at `align` is
/// sampled: room for the trailer and the record's index after it. `None` as for
/// [`outer_layout`].
#[inline]
pub(crate) fn sampled_outer_layout(size: usize, align: usize) -> Option<Layout> {
    let outer = size.checked_add(TRAILER_SIZE + SAMPLE_INDEX_SIZE)?;
    Layout::from_size_align(outer, align).ok()
}

/// [`sampled_outer_layout`] of a sampled block that exists.
///
/// # Safety
///
/// - `size` and `align` are those of a live sampled block of this crate's allocator, whose
///   outer layout was checked when it was made.
#[inline]
pub(crate) unsafe fn existing_sampled_outer_layout(size: usize, align: usize) -> Layout {
    // SAFETY:
    // - the caller guarantees the block was allocated with this layout, checked then.
    unsafe { Layout::from_size_align_unchecked(size + TRAILER_SIZE + SAMPLE_INDEX_SIZE, align) }
}

/// Marks the block at `ptr` (caller-visible size `size`) as sampled, with its record's `index`:
/// the trailer holds the reserved sampled id, the index follows it.
///
/// # Safety
///
/// - `ptr` points to a block of at least `size + TRAILER_SIZE + SAMPLE_INDEX_SIZE` writable
///   bytes, as the inner allocator returned it.
#[inline]
pub(crate) unsafe fn write_sampled(ptr: *mut u8, size: usize, index: u32) {
    // SAFETY:
    // - as in `write`, for the trailer and the 4 bytes after it, which the caller guarantees.
    unsafe {
        write(ptr, size, id::tag(id::SAMPLED_SCOPE_ID));
        (trailer(ptr, size).cast::<u8>().wrapping_add(TRAILER_SIZE) as *mut u32)
            .write_unaligned(index);
    }
}

/// The record index of the sampled block at `ptr` (caller-visible size `size`).
///
/// # Safety
///
/// - `ptr` was returned by this crate's allocator for a layout of size `size`, is live, and its
///   trailer holds the sampled id (so [`write_sampled`] wrote the index).
#[inline]
pub(crate) unsafe fn read_sample_index(ptr: *const u8, size: usize) -> u32 {
    // SAFETY:
    // - the caller's guarantee: the index lies past the trailer, written by `write_sampled`,
    //   which exposed the whole block's provenance.
    unsafe {
        (trailer(ptr, size).cast::<u8>().wrapping_add(TRAILER_SIZE) as *const u32).read_unaligned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The outer layout is the caller's with room for the trailer, and exists exactly when
    /// `Layout` can hold that size at that alignment: checked at the edge of the address space
    /// for every alignment, and for small sizes.
    #[test]
    fn outer_layouts_fail_exactly_where_layouts_do() {
        for shift in 0..63 {
            let align = 1usize << shift;
            // The largest size whose outer layout still fits, and its neighbours.
            let edge = isize::MAX as usize - (align - 1) - TRAILER_SIZE;
            for size in [0, 1, 100, edge - 1, edge, edge + 1, isize::MAX as usize] {
                let expected = Layout::from_size_align(size + TRAILER_SIZE, align).ok();
                assert_eq!(outer_layout(size, align), expected, "{size} at {align}");
            }
            assert!(outer_layout(edge, align).is_some());
            assert!(outer_layout(edge + 1, align).is_none());
        }
    }

    /// A sampled block has room for its trailer and the 4-byte index after it.
    #[test]
    fn sampled_layouts_hold_the_trailer_and_the_index() {
        let layout = sampled_outer_layout(100, 8).unwrap();
        assert_eq!((layout.size(), layout.align()), (106, 8));
        assert_eq!(sampled_outer_layout(usize::MAX - 1, 1), None);
    }
}
