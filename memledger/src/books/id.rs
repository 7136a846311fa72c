//! Scope ids: the type, the size of the table, and the reserved ids and paths.
//!
//! A leaf: it imports nothing of the crate, so every module may import it (the model checks in
//! `loom/` stand in their own copy with a smaller table).

/// A scope id, as the books index it and as a block's trailer stores it. Always below
/// [`MAX_SCOPES`].
pub(crate) type ScopeId = u16;

/// Number of scope ids, the four reserved ones included. A power of two (a block's tag holds the id
/// shifted up, so that shifting any 16-bit value down gives a valid id), at least 1024 (the free
/// path's cell lookup folds the shift into an address scale) and at most 2^13 (the tag keeps 3
/// low bits for that scale; call-site caches pack two ids in 31 bits).
pub const MAX_SCOPES: usize = 8192;

/// Id of the unscoped root: blocks allocated outside every guard.
pub(crate) const ROOT_SCOPE_ID: ScopeId = 0;
/// Id of the crate's own scope: the registry, the per-thread counters, snapshots.
pub(crate) const OWN_SCOPE_ID: ScopeId = 1;
/// Id of the scope that takes the allocations of scopes refused for lack of room.
pub(crate) const OVERFLOW_SCOPE_ID: ScopeId = 2;
/// Id a sampled block's trailer holds instead of its owner's (which the block's sample record
/// keeps): nothing is ever booked to it, so every thread's cell of it has no budget and the free
/// or resize of a sampled block takes the cold path with no test on the hot one.
pub(crate) const SAMPLED_SCOPE_ID: ScopeId = 3;

/// Path of the crate's own scope, where its registry, per-thread counters and snapshots are
/// booked.
pub const OWN_SCOPE: &str = "<memledger>";
/// Path of the scope that takes allocations made in scopes that could not be registered because
/// the table of [`MAX_SCOPES`] ids was full.
pub const OVERFLOW_SCOPE: &str = "<overflow>";
/// Path of the unscoped root: allocations made outside every guard.
pub const UNSCOPED: &str = "";
/// Name, under [`OWN_SCOPE`], of the reserved id that sampled blocks carry in their trailer
/// (their bytes are booked to their owners: this scope always reads zero). It ends in a `/`, which
/// no segment of a path can hold and no normalised path ends with, so no guard can enter it and
/// no other scope can have its path.
pub(crate) const SAMPLED_SCOPE: &str = "<sampled>/";

/// How far a scope id is shifted up in a [`Tag`].
pub(crate) const TAG_SHIFT: u32 = 16 - MAX_SCOPES.trailing_zeros();

/// A scope id as owners store it in a block (the trailer): `scope << TAG_SHIFT`. Reading a scope
/// back is one shift down, which maps *any* 16-bit value into the scope table, so a tag damaged by
/// a buffer overrun in user code is booked to some scope instead of indexing out of bounds. The
/// free path finds the owner's 64-byte counter cell from the raw tag with a mask and a scaled
/// index, without a shift of its own.
pub(crate) type Tag = u16;

const _: () =
    assert!(MAX_SCOPES.is_power_of_two() && MAX_SCOPES >= 1 << 10 && MAX_SCOPES <= 1 << 13);

/// The tag of `scope`.
#[inline(always)]
pub(crate) const fn tag(scope: ScopeId) -> Tag {
    scope << TAG_SHIFT
}

/// The scope of `tag`, whatever its value.
#[inline(always)]
pub(crate) const fn scope_of(tag: Tag) -> ScopeId {
    tag >> TAG_SHIFT
}

/// `path` with empty segments dropped (`"/a//b/"` is `"a/b"`), as scope paths are kept.
pub fn normalize(path: &str) -> String {
    path.split('/')
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("/")
}
