//! The soak test over `Ledger<TrailerOnly<Jemalloc>>`: every block carries its owner in a 2-byte
//! trailer, over jemalloc's automatic arenas (the body is `tests/common/soak.rs`). Beyond the
//! books, it reads jemalloc directly:
//!
//! - every sampler reading: the ledger and its tags within jemalloc's `allocated`, and no scope
//!   arena;
//! - at each round's end, with the workers alive and again after they exited: every live block
//!   lives in one of jemalloc's automatic arenas (`arenas.lookup`), and the size classes of the
//!   soak's blocks with their trailers (`nallocx(size + 2)`) fit in jemalloc's `allocated`.
//!
//! Ignored by default; run it with
//! `MEMLEDGER_SOAK_SECS=300 cargo test --release -p memledger-monitor --all-features --test soak_trailer -- --ignored --nocapture`
//! (default 60 s). CI runs it for 20 s.

use memledger_monitor::Reconciliation;

/// The exactness suite's reference ledger and random programs, shared with `memledger`'s tests.
#[path = "../../memledger/tests/common/mod.rs"]
mod common;
#[path = "common/jemalloc.rs"]
mod jemalloc;
#[path = "common/soak.rs"]
mod soak;

use soak::Held;

#[global_allocator]
static GLOBAL: memledger::Ledger<memledger::TrailerOnly<memledger::Jemalloc>> =
    memledger::Ledger::new(memledger::TrailerOnly(memledger::Jemalloc));

const TRAILER: u64 = memledger::__private::TRAILER_SIZE as u64;

#[derive(Default)]
struct TrailerChecks {
    /// At the last check: the soak's blocks, their bytes in size classes with their trailers, and
    /// jemalloc's `allocated`.
    blocks: u64,
    class_bytes: u64,
    allocated: u64,
    checks: u64,
}

impl TrailerChecks {
    /// Every live block in an automatic arena, and their classes within `allocated`.
    fn placed(&mut self, live: &[Held]) {
        let automatic = jemalloc::automatic_arenas();
        let mut class_bytes = 0;
        for held in live {
            let index = jemalloc::arena_of(held.block.ptr);
            assert!(
                index < automatic,
                "a block lives in arena {index}, not one of jemalloc's {automatic} automatic ones"
            );
            let layout = held.block.layout;
            class_bytes += jemalloc::class(layout.size() + TRAILER as usize, layout.align());
        }
        jemalloc::refresh();
        let allocated = jemalloc::size("stats.allocated");
        assert!(
            class_bytes <= allocated,
            "the soak's blocks with their trailers take {class_bytes} B, jemalloc's allocated is \
             {allocated} B"
        );
        assert!(memledger::__private::scope_arenas().is_empty());
        (self.blocks, self.class_bytes, self.allocated) =
            (live.len() as u64, class_bytes, allocated);
        self.checks += 1;
    }
}

impl soak::Checks for TrailerChecks {
    fn reading(&mut self, r: &Reconciliation) {
        soak::ledger_within_allocated(r);
        assert!(r.scope_arenas.is_empty(), "{:?}", r.scope_arenas);
    }

    fn paused(&mut self, _round: usize, _scopes: &[String], live: &[Held]) {
        self.placed(live);
    }

    fn quiescent(&mut self, _round: usize, _scopes: &[String], live: &[Held]) {
        self.placed(live);
    }

    fn end(&mut self, _scopes: &[String]) {
        assert!(memledger::__private::scope_arenas().is_empty());
    }

    fn summary(&self) -> String {
        format!(
            "trailer: {} checks; at the last, {} blocks in automatic arenas, {} B in size classes \
             with their trailers, within jemalloc's allocated {} B",
            self.checks, self.blocks, self.class_bytes, self.allocated
        )
    }
}

#[test]
#[ignore = "minutes of load; CI runs it with a bound"]
fn soak() {
    soak::run(&mut TrailerChecks::default());
}
