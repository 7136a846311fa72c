//! Where a block's owner is kept, so that a free (on any thread, in any scope) is credited to the
//! scope that allocated the block.
//!
//! - [`trailer`]: the owner's [`ScopeId`](crate::books::id::ScopeId) in 2 bytes at
//!   `ptr + layout.size()`. Works over any `GlobalAlloc`; costs a size-class step for blocks that
//!   fill their class.
//! - [`arena`] (feature `arenas`, 64-bit Linux): blocks of up to 16 KiB, and larger ones that fill
//!   their size class, live in a jemalloc arena of their scope and carry nothing; the owner is
//!   found from the address. Each thread's part of the arenas
//!   ([`ThreadArenas`](arena::ThreadArenas)) rides in its counter slab, among the parts that
//!   `crate::thread` composes, so it is handed on with the slab and never freed.
//!
//! Without the `arenas` feature (or off 64-bit Linux), `arena/off.rs` stands in: an empty table
//! and no arena blocks, so that nothing else names the feature.

pub(crate) mod trailer;

#[cfg(all(feature = "arenas", target_os = "linux", target_pointer_width = "64"))]
pub(crate) mod arena;
#[cfg(not(all(feature = "arenas", target_os = "linux", target_pointer_width = "64")))]
#[path = "arena/off.rs"]
pub(crate) mod arena;
