//! jemalloc's size classes, computed without a call, and which blocks live in scope arenas.

/// The largest small size class of jemalloc with 4 KiB pages.
pub(super) const SMALL_MAX: usize = 14 * 1024;

/// jemalloc's page.
pub(super) const PAGE: usize = 4096;

/// The jemalloc size class of a request of `size` bytes at an alignment of at most 16 and at
/// most `size` (sizes up to `isize::MAX`): small classes are 8, 16, then four per doubling with
/// steps of at least 16; a large block takes whole pages (jemalloc's default
/// `disable_large_size_classes`).
///
/// The front caches rely on it up to [`BIN_MAX`]: a block is handed out again for any request of
/// its bin, and flushed with the bin's size. So before the first arena is made,
/// [`classes_are_jemallocs`] checks every bin's bounds against jemalloc's own (`nallocx`), and a
/// jemalloc built otherwise (another quantum, another page size) gets no arenas: every block then
/// carries the trailer. Above [`BIN_MAX`] a wrong answer only costs memory.
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

/// Whether a block of `size` bytes fills its size class: fewer spare bytes than the trailer
/// needs, so that the trailer would push it into the next class.
#[inline(always)]
pub(crate) const fn is_full(size: usize) -> bool {
    size <= isize::MAX as usize / 2 && size_class(size) - size < crate::owner::trailer::TRAILER_SIZE
}

/// Blocks up to this size live in their scope's arena whatever their size, and the threads'
/// front caches keep them: jemalloc's small classes and the first large one.
pub(crate) const BIN_MAX: usize = 16 * 1024;

/// Bins that a front cache keeps: bin 0 stands for "not in an arena", bins `1..BINS` for the size
/// classes up to [`BIN_MAX`], [`BIG`] for the full sizes above it.
pub(crate) const BINS: usize = count_bins() + 1;

/// Bins of a front cache row: [`BINS`] rounded up to a power of two, so that a row is found with
/// a shift and a bin is reduced into it with a mask.
pub(crate) const ROW_BINS: usize = BINS.next_power_of_two();

/// The class of a full block larger than [`BIN_MAX`]: in its scope's arena, never cached.
pub(crate) const BIG: usize = BINS;

/// Size classes up to [`BIN_MAX`].
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

/// Per size up to [`BIN_MAX`]: the bin of its size class (0 for size 0). 16 KiB, computed at
/// compile time from [`size_class`]; a workload touches the lines of the sizes it uses.
static BIN_OF: [u8; BIN_MAX + 1] = bin_table();

const fn bin_table() -> [u8; BIN_MAX + 1] {
    const { assert!(count_bins() < ROW_BINS && ROW_BINS <= 64) };
    let mut table = [0u8; BIN_MAX + 1];
    let mut bin = 1u8;
    let mut size = 1;
    while size <= BIN_MAX {
        table[size] = bin;
        if size_class(size) == size {
            bin += 1;
        }
        size += 1;
    }
    table
}

/// Per bin: the size of its class (0 for bin 0 and past the last).
static BIN_SIZE: [u32; ROW_BINS] = bin_sizes();

const fn bin_sizes() -> [u32; ROW_BINS] {
    let mut sizes = [0u32; ROW_BINS];
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
#[inline(always)]
pub(crate) fn bin_size(bin: usize) -> usize {
    BIN_SIZE[bin % ROW_BINS] as usize
}

/// Whether every bin's class is one of jemalloc's, with the same bounds: for each bin, jemalloc
/// rounds the bin's size to itself and the size just above the previous bin's to the bin's size
/// (`nallocx` is monotonic, so every size between lands in the bin too).
pub(crate) fn classes_are_jemallocs() -> bool {
    (1..BINS).all(|bin| {
        let size = bin_size(bin);
        let below = bin_size(bin - 1);
        // SAFETY:
        // - `nallocx` only computes a size; non-zero sizes and no flags are valid.
        unsafe {
            tikv_jemalloc_sys::nallocx(size, 0) == size
                && tikv_jemalloc_sys::nallocx(below + 1, 0) == size
        }
    })
}

/// Where a block of `size` bytes at `align` lives: a bin in `1..BINS` for a block of up to
/// [`BIN_MAX`] (in its scope's arena, kept by the front caches), [`BIG`] for a larger block that
/// fills its class (in its scope's arena, never cached), 0 for any other (with a trailer, which
/// costs it no memory). One table load for sizes up to [`BIN_MAX`], the same on allocation and
/// free.
///
/// The alignment must be one that jemalloc gives every block of the class without a flag. An
/// alignment of at most 8 needs no test of the size: every class is at least 8, and jemalloc
/// aligns its blocks to 8. An alignment of 16 needs a class of at least 16 (a size of at least 16,
/// to keep to what `tikv_jemallocator` passes without a flag); above 16, the trailer.
#[inline(always)]
pub(crate) fn arena_class(size: usize, align: usize) -> usize {
    if align > 8 && (align > 16 || size < 16) {
        return 0;
    }
    if size <= BIN_MAX {
        return usize::from(BIN_OF[size]);
    }
    if is_full(size) {
        BIG
    } else {
        0
    }
}

/// Whether `bin`, as [`arena_class`] gives it, is a class of up to [`BIN_MAX`], kept in the front
/// cache (neither the trailer's 0 nor [`BIG`]).
#[inline(always)]
pub(crate) fn is_bin(bin: usize) -> bool {
    bin != 0 && bin != BIG
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
    fn this_jemalloc_has_the_classes_of_the_bins() {
        assert!(classes_are_jemallocs());
    }

    #[test]
    fn full_means_no_room_for_the_trailer() {
        for size in 1..=70_000 {
            let full = nallocx(size + crate::owner::trailer::TRAILER_SIZE) != nallocx(size);
            assert_eq!(is_full(size), full, "size {size}");
        }
    }

    #[test]
    fn bins_name_the_size_classes_in_order() {
        let mut bins = Vec::new();
        for size in 1..=70_000 {
            let class = arena_class(size, 1);
            if size > BIN_MAX {
                assert_eq!(class == BIG, is_full(size), "size {size}");
                assert!(class == 0 || class == BIG, "size {size}");
                continue;
            }
            assert!((1..BINS).contains(&class), "size {size}");
            // The bin's class holds the size, and the class below would not.
            assert_eq!(bin_size(class), nallocx(size), "size {size}");
            if bins.last() != Some(&class) {
                bins.push(class);
            }
        }
        // One bin per class, numbered from 1 in size order.
        assert_eq!(bins, (1..BINS).collect::<Vec<_>>());
        for pair in bins.windows(2) {
            assert!(bin_size(pair[0]) < bin_size(pair[1]));
        }
        // Alignments that jemalloc gives only with a flag take the trailer.
        assert_eq!(arena_class(64, 16), arena_class(64, 1));
        assert_eq!(arena_class(7, 8), arena_class(8, 1));
        assert_eq!(arena_class(64, 32), 0);
        assert_eq!(arena_class(8, 16), 0);
        assert_eq!(arena_class(15, 16), 0);
        assert_eq!(arena_class(32768, 16), BIG);
        assert_eq!(arena_class(32768, 32), 0);
    }
}
