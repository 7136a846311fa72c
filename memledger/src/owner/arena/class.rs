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

/// The largest block size the threads' front caches keep (see `thread.rs`): jemalloc's small
/// classes and the first large one.
pub(crate) const BIN_MAX: usize = 16 * 1024;

/// Bins that a front cache keeps: bin 0 stands for "not full", bins `1..BINS` for the full classes
/// up to [`BIN_MAX`], [`BIG`] for the full sizes above it.
pub(crate) const BINS: usize = count_bins() + 1;

/// Bins of a front cache row: [`BINS`] rounded up to a power of two, so that a row is found with
/// a shift and a bin is reduced into it with a mask.
pub(crate) const ROW_BINS: usize = BINS.next_power_of_two();

/// The class of a full block larger than [`BIN_MAX`]: in its scope's arena, never cached.
pub(crate) const BIG: usize = BINS;

/// Full size classes up to [`BIN_MAX`].
const fn count_bins() -> usize {
    let mut count = 0;
    let mut size = 1;
    while size <= BIN_MAX {
        if size_class(size) == size {
            count += 1;
        }
        size += 1;
    }
    count
}

/// Per size up to [`BIN_MAX`]: the bin of a full block of that size, or 0. 16 KiB, computed at
/// compile time from [`size_class`]; a workload touches the lines of the sizes it uses.
static BIN_OF: [u8; BIN_MAX + 1] = bin_table();

const fn bin_table() -> [u8; BIN_MAX + 1] {
    const { assert!(count_bins() < 64) };
    let mut table = [0u8; BIN_MAX + 1];
    let mut bin = 0u8;
    let mut size = 1;
    while size <= BIN_MAX {
        if size_class(size) == size {
            bin += 1;
        }
        if size_class(size) - size < crate::owner::trailer::TRAILER_SIZE {
            // `size` is its class or one below it: the bin of its class (counted above for the
            // class itself, at the next size for the one below).
            table[size] = if size_class(size) == size {
                bin
            } else {
                bin + 1
            };
        }
        size += 1;
    }
    table
}

/// Per bin: the size of its class (0 for bin 0).
static BIN_SIZE: [u32; BINS] = bin_sizes();

const fn bin_sizes() -> [u32; BINS] {
    let mut sizes = [0u32; BINS];
    let mut bin = 0;
    let mut size = 1;
    while size <= BIN_MAX {
        if size_class(size) == size {
            bin += 1;
            sizes[bin] = size as u32;
        }
        size += 1;
    }
    sizes
}

/// The size of the class of `bin` (in `1..BINS`).
pub(crate) fn bin_size(bin: usize) -> usize {
    BIN_SIZE[bin % BINS] as usize
}

/// Where a block of `size` bytes at `align` lives: 0 for a block with a trailer, a bin in
/// `1..BINS` for a full block that the front caches keep, [`BIG`] for a larger full block. One
/// table load for sizes up to [`BIN_MAX`], the same on allocation and free.
///
/// An alignment of at most 8 needs no test of the size: every full block has at least 7 bytes,
/// in a class of at least 8, whose blocks jemalloc aligns to 8. An alignment of 16 needs a class
/// of at least 16 (a size of at least 16, to keep to what `tikv_jemallocator` passes without a
/// flag); above 16, the trailer.
#[inline(always)]
pub(crate) fn arena_class(size: usize, align: usize) -> usize {
    if align > 8 && (align > 16 || size < 16) {
        return 0;
    }
    if size <= BIN_MAX {
        return usize::from(BIN_OF[size]);
    }
    if is_full(size, align) {
        BIG
    } else {
        0
    }
}

/// The size class of a full block of `size` bytes (in bin 1.. or [`BIG`] of [`arena_class`]) up
/// to [`BIN_MAX`]: a full size is its class or one below it, and classes are multiples of 8.
#[inline(always)]
pub(crate) const fn full_class_size(size: usize) -> usize {
    (size + 1) & !7
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

    #[test]
    fn bins_name_the_full_classes_in_order() {
        let mut classes = Vec::new();
        for size in 1..=70_000 {
            let class = arena_class(size, 1);
            assert_eq!(class != 0, is_full(size, 1), "size {size}");
            if size > BIN_MAX {
                assert!(class == 0 || class == BIG, "size {size}");
                continue;
            }
            if class != 0 {
                assert!(class < BINS, "size {size}");
                assert_eq!(full_class_size(size), nallocx(size), "size {size}");
                if classes.last() != Some(&class) {
                    classes.push(class);
                }
            }
        }
        for (i, &bin) in classes.iter().enumerate() {
            assert_eq!(bin_size(bin), nallocx(bin_size(bin)), "bin {bin}");
            if i > 0 {
                assert!(bin_size(bin) > bin_size(classes[i - 1]));
            }
        }
        // One bin per full class, numbered from 1 in size order.
        assert_eq!(classes, (1..BINS).collect::<Vec<_>>());
        assert_ne!(arena_class(4096, 16), 0);
        assert_eq!(arena_class(4096, 16), arena_class(4095, 1));
        assert_ne!(arena_class(4096, 1), arena_class(4097, 1));
        assert_eq!(arena_class(64, 32), 0);
        assert_eq!(arena_class(8, 16), 0);
    }
}
