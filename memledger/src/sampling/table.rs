//! The records of sampled blocks and of their stacks: lock-free, allocated in chunks from the
//! inner allocator as they fill, booked to the crate's own scope.
//!
//! - A *live record* per sampled block: its owner, stack, size and sampling probability. A record
//!   is found from its block without a search: the block keeps the record's index after its
//!   trailer (`owner::trailer::write_sampled`). Free records are kept on a lock-free stack whose
//!   head carries a tag against ABA. Only the thread that holds the block writes its record, and
//!   readers copy it under a sequence count, so a record is never read half written.
//! - A *stack entry* per distinct (scope, stack): the return addresses and the sums of what was
//!   sampled there, found through a static open-addressing index of its hash. Entries are never
//!   removed, so that a site keeps what it allocated after its blocks are freed.
//!
//! Both tables have fixed limits ([`LIVE_LIMIT`], [`STACK_LIMIT`]); a sample that finds no room
//! is counted as dropped (its block is booked as any other), and a stack that finds none goes to
//! its scope's entry for unknown sites, so estimates per scope stay whole.

use core::alloc::GlobalAlloc;
use core::ptr;

use crate::books::id::ScopeId;
use crate::books::shared::{alloc_zeroed_internal, dealloc_internal};
use crate::sampling::stack::{Captured, MAX_DEPTH};
// The tables are static and touched only on sampled operations: core's atomics, never loom's.
use core::sync::atomic::{fence, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering};

/// Records per chunk of live records.
const LIVE_CHUNK: usize = 1024;
/// Chunks of live records at most.
const LIVE_CHUNKS: usize = 64;
/// Sampled blocks that can be live at once: 65,536, which at the default rate is a heap of
/// 32 GiB.
pub const LIVE_LIMIT: usize = LIVE_CHUNK * LIVE_CHUNKS;

/// Stack entries per chunk.
const STACK_CHUNK: usize = 128;
/// Chunks of stack entries at most.
const STACK_CHUNKS: usize = 64;
/// Distinct (scope, stack) pairs kept at most.
pub const STACK_LIMIT: usize = STACK_CHUNK * STACK_CHUNKS;
/// Slots of the stack index: twice the entries, so probes stay short.
const INDEX_SLOTS: usize = 2 * STACK_LIMIT;
/// Probes before a stack is given up as unknown.
const MAX_PROBES: usize = 64;

/// A stack entry's index that stands for "no stack kept": the sample counts for its scope's
/// unknown sites.
pub(crate) const UNKNOWN_STACK: u32 = u32::MAX;

/// What a reader copies out of a live record.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LiveRecord {
    pub scope: ScopeId,
    pub stack: u32,
    pub size: u64,
    /// Probability that the block is in the sample, as `f64` bits.
    pub probability: f64,
}

/// One sampled block's record.
#[repr(C)]
struct LiveEntry {
    /// Even while stable, odd while its holder writes it.
    seq: AtomicU64,
    /// `scope | stack << 16 | 1 << 63` while the record is live; 0 when free.
    site: AtomicU64,
    size: AtomicU64,
    /// Bytes the block brought in since it was sampled, its first size included.
    brought_in: AtomicU64,
    /// The probability that the block is in the sample, as `f64` bits.
    probability: AtomicU64,
    /// The next free record on the free stack, plus one.
    next_free: AtomicU32,
}

const LIVE_BIT: u64 = 1 << 63;

/// One (scope, stack) and what was sampled there.
#[repr(C)]
struct StackEntry {
    hash: AtomicU64,
    /// `scope | depth << 16 | truncated << 31`.
    shape: AtomicU32,
    frames: [AtomicUsize; MAX_DEPTH],
    /// Estimated bytes and blocks (in 1/1024ths) allocated here, and the samples behind them.
    allocated_bytes: AtomicU64,
    allocated_blocks_fixed: AtomicU64,
    allocated_samples: AtomicU64,
}

/// Fixed-point scale of block estimates.
const BLOCK_SCALE: f64 = 1024.0;

type LiveChunk = [LiveEntry; LIVE_CHUNK];
type StackChunk = [StackEntry; STACK_CHUNK];

static LIVE: [AtomicPtr<LiveChunk>; LIVE_CHUNKS] =
    [const { AtomicPtr::new(ptr::null_mut()) }; LIVE_CHUNKS];
/// Records handed out so far from fresh chunks.
static LIVE_FRESH: AtomicU32 = AtomicU32::new(0);
/// Head of the free stack: `tag << 32 | (index + 1)`, or a tag and 0 when empty.
static LIVE_FREE: AtomicU64 = AtomicU64::new(0);
static LIVE_COUNT: AtomicU64 = AtomicU64::new(0);

static STACKS: [AtomicPtr<StackChunk>; STACK_CHUNKS] =
    [const { AtomicPtr::new(ptr::null_mut()) }; STACK_CHUNKS];
static STACK_NEXT: AtomicU32 = AtomicU32::new(0);
/// `entry + 1` per slot, 0 for an empty one.
static STACK_INDEX: [AtomicU32; INDEX_SLOTS] = [const { AtomicU32::new(0) }; INDEX_SLOTS];

/// Samples that found no record free.
static DROPPED: AtomicU64 = AtomicU64::new(0);
/// Bytes of chunks allocated.
static TABLE_BYTES: AtomicU64 = AtomicU64::new(0);

/// The chunk `k` of `chunks`, allocated from `inner` (booked to the crate's own scope) if it is
/// not there yet; `None` if the allocation failed.
fn chunk<T, A: GlobalAlloc>(chunks: &[AtomicPtr<T>], k: usize, inner: &A) -> Option<&'static T> {
    let slot = &chunks[k];
    // Acquire: the chunk's zeroed memory is seen before it is used.
    let mut p = slot.load(Ordering::Acquire);
    if p.is_null() {
        let fresh = alloc_zeroed_internal::<T, A>(inner)?;
        match slot.compare_exchange(ptr::null_mut(), fresh, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => {
                TABLE_BYTES.fetch_add(core::mem::size_of::<T>() as u64, Ordering::Relaxed);
                p = fresh;
            }
            Err(theirs) => {
                // Another thread made it first: ours was never seen by anyone.
                // SAFETY:
                // - `fresh` came from `alloc_zeroed_internal::<T, A>(inner)` and the failed
                //   exchange published it nowhere.
                unsafe { dealloc_internal::<T, A>(inner, fresh) };
                p = theirs;
            }
        }
    }
    // SAFETY:
    // - `p` is a zeroed `T` allocated for the tables and never freed; all-zero is a valid `T`
    //   (atomics only).
    Some(unsafe { &*p })
}

/// A chunk that exists: every index handed out lies in one.
fn existing<T>(chunks: &[AtomicPtr<T>], k: usize) -> Option<&'static T> {
    let p = chunks.get(k)?.load(Ordering::Acquire);
    // SAFETY:
    // - as in `chunk`: non-null pointers are zeroed `T`s never freed.
    (!p.is_null()).then(|| unsafe { &*p })
}

fn live_entry(index: u32) -> Option<&'static LiveEntry> {
    let i = index as usize;
    existing(&LIVE, i / LIVE_CHUNK).map(|c| &c[i % LIVE_CHUNK])
}

/// Takes a free live record; `None` when all [`LIVE_LIMIT`] are taken.
fn take_record<A: GlobalAlloc>(inner: &A) -> Option<u32> {
    let mut head = LIVE_FREE.load(Ordering::Acquire);
    loop {
        let top = (head & 0xffff_ffff) as u32;
        if top == 0 {
            break;
        }
        let next = live_entry(top - 1)?.next_free.load(Ordering::Relaxed);
        let new = ((head >> 32).wrapping_add(1) << 32) | u64::from(next);
        match LIVE_FREE.compare_exchange_weak(head, new, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return Some(top - 1),
            Err(actual) => head = actual,
        }
    }
    let index = LIVE_FRESH.fetch_add(1, Ordering::Relaxed);
    if index as usize >= LIVE_LIMIT {
        LIVE_FRESH.fetch_sub(1, Ordering::Relaxed);
        return None;
    }
    chunk(&LIVE, index as usize / LIVE_CHUNK, inner)?;
    Some(index)
}

/// Puts a record back on the free stack.
fn give_back(index: u32, entry: &LiveEntry) {
    let mut head = LIVE_FREE.load(Ordering::Relaxed);
    loop {
        entry
            .next_free
            .store((head & 0xffff_ffff) as u32, Ordering::Relaxed);
        let new = ((head >> 32).wrapping_add(1) << 32) | u64::from(index + 1);
        // Release: the record's last writes and its `next_free` are seen by the next taker.
        match LIVE_FREE.compare_exchange_weak(head, new, Ordering::AcqRel, Ordering::Relaxed) {
            Ok(_) => return,
            Err(actual) => head = actual,
        }
    }
}

/// Writes a record as its only writer, under its sequence count.
fn write_record(entry: &LiveEntry, f: impl FnOnce(&LiveEntry)) {
    let seq = entry.seq.load(Ordering::Relaxed);
    entry.seq.store(seq.wrapping_add(1), Ordering::Relaxed);
    // Release fence: a reader that sees any of the writes below also sees the odd count.
    fence(Ordering::Release);
    f(entry);
    entry.seq.store(seq.wrapping_add(2), Ordering::Release);
}

fn hash_stack(scope: ScopeId, stack: &Captured) -> u64 {
    let mut h = 0x9e37_79b9_7f4a_7c15u64 ^ u64::from(scope);
    for &ip in &stack.frames[..stack.depth] {
        h = (h ^ ip as u64).wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 29;
    }
    (h ^ stack.truncated as u64) | 1
}

fn shape(scope: ScopeId, stack: &Captured) -> u32 {
    u32::from(scope) | (stack.depth as u32) << 16 | u32::from(stack.truncated) << 31
}

fn stack_entry(index: u32) -> Option<&'static StackEntry> {
    let i = index as usize;
    existing(&STACKS, i / STACK_CHUNK).map(|c| &c[i % STACK_CHUNK])
}

fn same_stack(entry: &StackEntry, hash: u64, shape: u32, stack: &Captured) -> bool {
    entry.hash.load(Ordering::Relaxed) == hash
        && entry.shape.load(Ordering::Relaxed) == shape
        && entry.frames[..stack.depth]
            .iter()
            .zip(&stack.frames[..stack.depth])
            .all(|(a, &b)| a.load(Ordering::Relaxed) == b)
}

/// The entry of (`scope`, `stack`), made if it is new; [`UNKNOWN_STACK`] if there is no room.
fn find_or_add_stack<A: GlobalAlloc>(inner: &A, scope: ScopeId, stack: &Captured) -> u32 {
    let hash = hash_stack(scope, stack);
    let shape = shape(scope, stack);
    let mut made: Option<u32> = None;
    for probe in 0..MAX_PROBES {
        let at = &STACK_INDEX[(hash as usize).wrapping_add(probe) % INDEX_SLOTS];
        // Acquire: an entry published by another thread is seen whole.
        let v = at.load(Ordering::Acquire);
        if v != 0 {
            if let Some(entry) = stack_entry(v - 1) {
                if same_stack(entry, hash, shape, stack) {
                    return v - 1;
                }
            }
            continue;
        }
        let index = match made {
            Some(index) => index,
            None => {
                let index = STACK_NEXT.fetch_add(1, Ordering::Relaxed);
                if index as usize >= STACK_LIMIT {
                    STACK_NEXT.fetch_sub(1, Ordering::Relaxed);
                    return UNKNOWN_STACK;
                }
                let Some(chunk) = chunk(&STACKS, index as usize / STACK_CHUNK, inner) else {
                    return UNKNOWN_STACK;
                };
                let entry = &chunk[index as usize % STACK_CHUNK];
                entry.hash.store(hash, Ordering::Relaxed);
                entry.shape.store(shape, Ordering::Relaxed);
                for (f, &ip) in entry.frames.iter().zip(&stack.frames[..stack.depth]) {
                    f.store(ip, Ordering::Relaxed);
                }
                made = Some(index);
                index
            }
        };
        // Release: the entry's fields are seen by whoever finds it in the index.
        match at.compare_exchange(0, index + 1, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return index,
            Err(theirs) => {
                // Another stack took the slot first: it may be this very stack.
                if let Some(entry) = stack_entry(theirs - 1) {
                    if same_stack(entry, hash, shape, stack) {
                        // Ours stays unpublished, an entry nobody reads: rare, and bounded by
                        // the limit.
                        return theirs - 1;
                    }
                }
            }
        }
    }
    // Every probe was taken: an entry made on the way was never published, and stays unread.
    UNKNOWN_STACK
}

/// Records a sampled block of `scope` and `size` whose sampling probability is `probability`,
/// at the stack `capture` gives (called only once a record is taken, so that a full table costs
/// no walk); the index of its live record, or `None` if none is free (the sample is dropped and
/// counted).
// Always inlined into `sampling::record`, its one caller: the stack walk that `capture` makes
// starts below it, so a frame of its own would be one more frame to walk on every sample.
#[inline(always)]
pub(crate) fn record<A: GlobalAlloc>(
    inner: &A,
    scope: ScopeId,
    size: u64,
    probability: f64,
    capture: impl FnOnce() -> Captured,
) -> Option<u32> {
    let Some(index) = take_record(inner) else {
        DROPPED.fetch_add(1, Ordering::Relaxed);
        return None;
    };
    // A record handed out lies in a chunk that exists.
    let entry = live_entry(index)?;
    let stack = capture();
    let stack_index = find_or_add_stack(inner, scope, &stack);
    write_record(entry, |s| {
        s.site.store(
            u64::from(scope) | u64::from(stack_index) << 16 | LIVE_BIT,
            Ordering::Relaxed,
        );
        s.size.store(size, Ordering::Relaxed);
        s.brought_in.store(size, Ordering::Relaxed);
        s.probability
            .store(probability.to_bits(), Ordering::Relaxed);
    });
    LIVE_COUNT.fetch_add(1, Ordering::Relaxed);
    Some(index)
}

/// The block of the record at `index` exists: what it stands for counts in its site's (or its
/// scope's unknown sites') allocations. Only the thread that took the record calls it.
pub(crate) fn commit(index: u32) {
    let Some(record) = live_entry(index) else {
        return;
    };
    let site = record.site.load(Ordering::Relaxed);
    let size = record.size.load(Ordering::Relaxed);
    let probability = f64::from_bits(record.probability.load(Ordering::Relaxed));
    let scope = (site & 0xffff) as ScopeId;
    match stack_entry(((site >> 16) & 0xffff_ffff) as u32) {
        Some(entry) => {
            entry
                .allocated_bytes
                .fetch_add((size as f64 / probability) as u64, Ordering::Relaxed);
            entry
                .allocated_blocks_fixed
                .fetch_add((BLOCK_SCALE / probability) as u64, Ordering::Relaxed);
            entry.allocated_samples.fetch_add(1, Ordering::Relaxed);
        }
        None => unknown_site(scope).add(size, probability),
    }
}

/// Removes the record at `index` of a block being freed; its owner.
pub(crate) fn forget(index: u32) -> Option<ScopeId> {
    let entry = live_entry(index)?;
    let site = entry.site.load(Ordering::Relaxed);
    if site & LIVE_BIT == 0 {
        return None;
    }
    write_record(entry, |s| s.site.store(0, Ordering::Relaxed));
    LIVE_COUNT.fetch_sub(1, Ordering::Relaxed);
    give_back(index, entry);
    Some((site & 0xffff) as ScopeId)
}

/// The owner of the live record at `index`.
pub(crate) fn owner(index: u32) -> Option<ScopeId> {
    let site = live_entry(index)?.site.load(Ordering::Relaxed);
    (site & LIVE_BIT != 0).then_some((site & 0xffff) as ScopeId)
}

/// A sampled block resized to `new_size`: its record follows, its probability recomputed for
/// the bytes it brought in (`probability_of` of them).
pub(crate) fn resize(index: u32, new_size: u64, probability_of: impl FnOnce(u64) -> f64) {
    let Some(entry) = live_entry(index) else {
        return;
    };
    let old = entry.size.load(Ordering::Relaxed);
    let brought_in = entry
        .brought_in
        .load(Ordering::Relaxed)
        .saturating_add(new_size.saturating_sub(old));
    let probability = probability_of(brought_in);
    write_record(entry, |s| {
        s.size.store(new_size, Ordering::Relaxed);
        s.brought_in.store(brought_in, Ordering::Relaxed);
        s.probability
            .store(probability.to_bits(), Ordering::Relaxed);
    });
}

/// Estimates of the samples without a kept stack, per scope.
struct UnknownSite {
    bytes: AtomicU64,
    blocks_fixed: AtomicU64,
    samples: AtomicU64,
}

impl UnknownSite {
    fn add(&self, size: u64, probability: f64) {
        self.bytes
            .fetch_add((size as f64 / probability) as u64, Ordering::Relaxed);
        self.blocks_fixed
            .fetch_add((BLOCK_SCALE / probability) as u64, Ordering::Relaxed);
        self.samples.fetch_add(1, Ordering::Relaxed);
    }
}

/// Scopes whose unknown sites are counted: all of them (a static table, touched only when the
/// stack table is full).
const UNKNOWN_SCOPES: usize = crate::books::id::MAX_SCOPES;

static UNKNOWN: [UnknownSite; UNKNOWN_SCOPES] = [const {
    UnknownSite {
        bytes: AtomicU64::new(0),
        blocks_fixed: AtomicU64::new(0),
        samples: AtomicU64::new(0),
    }
}; UNKNOWN_SCOPES];

fn unknown_site(scope: ScopeId) -> &'static UnknownSite {
    &UNKNOWN[usize::from(scope).min(UNKNOWN_SCOPES - 1)]
}

/// A stack entry as a reader copies it.
pub(crate) struct StackCopy {
    pub index: u32,
    pub scope: ScopeId,
    pub frames: Vec<usize>,
    pub truncated: bool,
    pub allocated_bytes: u64,
    pub allocated_blocks: u64,
    pub allocated_samples: u64,
}

/// Every published stack entry.
pub(crate) fn stacks() -> Vec<StackCopy> {
    let mut out = Vec::new();
    for at in &STACK_INDEX {
        let v = at.load(Ordering::Acquire);
        if v == 0 {
            continue;
        }
        let Some(entry) = stack_entry(v - 1) else {
            continue;
        };
        let shape = entry.shape.load(Ordering::Relaxed);
        let depth = ((shape >> 16) & 0x7fff) as usize;
        out.push(StackCopy {
            index: v - 1,
            scope: (shape & 0xffff) as ScopeId,
            frames: entry.frames[..depth.min(MAX_DEPTH)]
                .iter()
                .map(|f| f.load(Ordering::Relaxed))
                .collect(),
            truncated: shape >> 31 != 0,
            allocated_bytes: entry.allocated_bytes.load(Ordering::Relaxed),
            allocated_blocks: (entry.allocated_blocks_fixed.load(Ordering::Relaxed) as f64
                / BLOCK_SCALE)
                .round() as u64,
            allocated_samples: entry.allocated_samples.load(Ordering::Relaxed),
        });
    }
    out
}

/// What was sampled without a kept stack, per scope id: (scope, bytes, blocks, samples).
pub(crate) fn unknown_sites() -> Vec<(ScopeId, u64, u64, u64)> {
    UNKNOWN
        .iter()
        .enumerate()
        .filter(|(_, u)| u.samples.load(Ordering::Relaxed) != 0)
        .map(|(i, u)| {
            (
                i as ScopeId,
                u.bytes.load(Ordering::Relaxed),
                (u.blocks_fixed.load(Ordering::Relaxed) as f64 / BLOCK_SCALE).round() as u64,
                u.samples.load(Ordering::Relaxed),
            )
        })
        .collect()
}

/// Every live record, each copied whole.
pub(crate) fn live_records() -> Vec<LiveRecord> {
    let fresh = (LIVE_FRESH.load(Ordering::Relaxed) as usize).min(LIVE_LIMIT);
    let mut out = Vec::with_capacity(LIVE_COUNT.load(Ordering::Relaxed) as usize + 16);
    for i in 0..fresh {
        let Some(entry) = live_entry(i as u32) else {
            continue;
        };
        for _ in 0..4 {
            let before = entry.seq.load(Ordering::Acquire);
            if before & 1 == 1 {
                core::hint::spin_loop();
                continue;
            }
            let site = entry.site.load(Ordering::Relaxed);
            let size = entry.size.load(Ordering::Relaxed);
            let probability = f64::from_bits(entry.probability.load(Ordering::Relaxed));
            // Acquire fence: the loads above are done before the count is read again.
            fence(Ordering::Acquire);
            if entry.seq.load(Ordering::Relaxed) != before {
                continue;
            }
            if site & LIVE_BIT != 0 && probability > 0.0 {
                out.push(LiveRecord {
                    scope: (site & 0xffff) as ScopeId,
                    stack: ((site >> 16) & 0xffff_ffff) as u32,
                    size,
                    probability,
                });
            }
            break;
        }
    }
    out
}

/// (live records, stack entries, dropped samples, bytes of chunks).
pub(crate) fn usage() -> (u64, u64, u64, u64) {
    (
        LIVE_COUNT.load(Ordering::Relaxed),
        u64::from(STACK_NEXT.load(Ordering::Relaxed)),
        DROPPED.load(Ordering::Relaxed),
        TABLE_BYTES.load(Ordering::Relaxed),
    )
}
