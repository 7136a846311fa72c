//! Where a block's owner is kept, so that a free (on any thread, in any scope) is credited to the
//! scope that allocated the block.
//!
//! - [`trailer`]: the owner's [`ScopeId`](crate::books::id::ScopeId) in 2 bytes at
//!   `ptr + layout.size()`. Works over any `GlobalAlloc`; costs a size-class step for blocks that
//!   fill their class.
//! - [`arena`] (feature `arenas`, 64-bit Linux): blocks of up to 16 KiB, and larger ones that fill
//!   their size class, live in a jemalloc arena of their scope and carry nothing; the owner is found from the address. Each thread's
//!   tables for it ([`ThreadTables`]) ride in its counter slab ([`crate::books::cells::Slab`]), so
//!   they are handed on with the slab and never freed: that is the one place where the books know
//!   of an owner strategy.
//!
//! Without the `arenas` feature (or off 64-bit Linux), `arena/off.rs` stands in: an empty table and no
//! arena blocks, so that nothing else names the feature.

pub(crate) mod trailer;

#[cfg(all(feature = "arenas", target_os = "linux", target_pointer_width = "64"))]
pub(crate) mod arena;
#[cfg(not(all(feature = "arenas", target_os = "linux", target_pointer_width = "64")))]
#[path = "arena/off.rs"]
pub(crate) mod arena;

/// What each thread's counter slab carries for the owner strategy.
pub(crate) use arena::ThreadArenas as ThreadTables;
/// Each thread's front cache of owner-strategy blocks (the arenas'), and the one of threads
/// without a slab.
pub(crate) use arena::{Front, COLD_FRONT};
