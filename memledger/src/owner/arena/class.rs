//! jemalloc's size classes, computed without a call, and which blocks fill theirs.

/// The largest small size class of jemalloc with 4 KiB pages.
pub(super) const SMALL_MAX: usize = 14 * 1024;

/// jemalloc's page.
pub(super) const PAGE: usize = 4096;

/// The jemalloc size class of a request of `size` bytes at an alignment of at most 16 and at
/// most `size` (sizes up to `isize::MAX`): small classes are 8, 16, then four per doubling with
/// steps of at least 16; a large block takes whole pages (jemalloc's default
/// `disable_large_size_classes`). A wrong answer (another page size, another configuration)
/// costs memory, never exactness: both kinds of block are booked and freed correctly.
#[inline(always)]
pub(crate) const fn size_class(size: usize) -> usize {
    if size <= 16 {
        return if size <= 8 { 8 } else { 16 };
    }
    if size > SMALL_MAX {
        return (size + PAGE - 1) & !(PAGE - 1);
    }
    // `size` lies in (2^(lg - 1), 2^lg]: the classes of that group are 2^(lg - 3) apart.
    let lg = usize::BITS - (size - 1).leading_zeros();
    let step = 1usize << (lg - 3);
    let step = if step < 16 { 16 } else { step };
    (size + step - 1) & !(step - 1)
}

/// Sizes up to this one are looked up in [`FULL`]; above, the arithmetic of [`size_class`] runs.
const TABLE_MAX: usize = 16 * 1024;

/// Bit `s % 8` of byte `s / 8`: a block of `s` bytes fills its size class (fewer spare bytes
/// than the trailer needs). 2 KiB, computed at compile time from [`size_class`].
static FULL: [u8; TABLE_MAX / 8 + 1] = full_table();

const fn full_table() -> [u8; TABLE_MAX / 8 + 1] {
    let mut table = [0u8; TABLE_MAX / 8 + 1];
    let mut size = 1;
    while size <= TABLE_MAX {
        if size_class(size) - size < crate::owner::trailer::TRAILER_SIZE {
            table[size / 8] |= 1 << (size % 8);
        }
        size += 1;
    }
    table
}

/// Whether a block of `size` bytes at `align` goes to its scope's arena: its class leaves fewer
/// spare bytes than the trailer needs, and its alignment is one jemalloc gives without a flag.
/// A table lookup for sizes up to 16 KiB, the same on allocation and free.
#[inline(always)]
pub(crate) fn is_full(size: usize, align: usize) -> bool {
    if align > 16 || align > size {
        return false;
    }
    if size <= TABLE_MAX {
        return FULL[size / 8] & (1 << (size % 8)) != 0;
    }
    size <= isize::MAX as usize / 2 && size_class(size) - size < crate::owner::trailer::TRAILER_SIZE
}

#[cfg(test)]
mod tests {
    use super::*;
    use tikv_jemalloc_sys as ffi;

    /// jemalloc's own size for a request, with no flags.
    fn nallocx(size: usize) -> usize {
        // SAFETY:
        // - `nallocx` only computes; a non-zero size and no flags are valid.
        unsafe { ffi::nallocx(size, 0) }
    }

    #[test]
    fn size_classes_are_jemallocs() {
        for size in 1..=(1 << 20) {
            assert_eq!(size_class(size), nallocx(size), "size {size}");
        }
        let mut size = 1usize << 20;
        while size < 1 << 36 {
            for probe in [
                size - 1,
                size,
                size + 1,
                size + size / 3,
                size + size / 2 + 7,
            ] {
                assert_eq!(size_class(probe), nallocx(probe), "size {probe}");
            }
            size <<= 1;
        }
    }

    #[test]
    fn full_means_no_room_for_the_trailer() {
        for size in 1..=70_000 {
            let full = nallocx(size + crate::owner::trailer::TRAILER_SIZE) != nallocx(size);
            assert_eq!(is_full(size, 1), full, "size {size}");
        }
        // Alignments jemalloc gives only with a flag always take the trailer.
        assert!(is_full(64, 16));
        assert!(!is_full(64, 32));
        assert!(!is_full(8, 16));
    }
}
