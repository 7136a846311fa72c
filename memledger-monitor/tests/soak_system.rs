//! The soak test over `Ledger<System>`: every block carries its owner in a 2-byte trailer, over
//! glibc's malloc (the body is `tests/common/soak.rs`). Beyond the books, it reads glibc directly:
//!
//! - every sampler reading: jemalloc's layers absent, and why (the system allocator serves this
//!   binary), no scope arena, and the gaps without jemalloc's;
//! - at each round's end, with the workers alive and again after they exited: every live block
//!   has room for its trailer (`malloc_usable_size` ≥ size + 2), and the soak's blocks with their
//!   trailers fit in glibc's bytes in use (`mallinfo2`: `uordblks + hblkhd`).
//!
//! Ignored by default; run it with
//! `MEMLEDGER_SOAK_SECS=300 cargo test --release -p memledger-monitor --all-features --test soak_system -- --ignored --nocapture`
//! (default 60 s). CI runs it for 20 s.
#![cfg(all(target_os = "linux", target_env = "gnu"))]

use memledger_monitor::{AllocatorStatsUnavailable, GapKind, Reconciliation};

/// The exactness suite's reference ledger and random programs, shared with `memledger`'s tests.
#[path = "../../memledger/tests/common/mod.rs"]
mod common;
#[path = "common/soak.rs"]
mod soak;

use soak::Held;

#[global_allocator]
static GLOBAL: memledger::Ledger<std::alloc::System> = memledger::Ledger::new(std::alloc::System);

const TRAILER: u64 = memledger::__private::TRAILER_SIZE as u64;

#[derive(Default)]
struct SystemChecks {
    /// At the last check: the soak's blocks, their bytes with their trailers, and glibc's bytes
    /// in use.
    blocks: u64,
    bytes: u64,
    in_use: u64,
    checks: u64,
}

impl SystemChecks {
    fn in_use(&mut self, live: &[Held]) {
        let mut bytes = 0;
        for held in live {
            let size = held.block.layout.size() as u64;
            // SAFETY:
            // - a live block that glibc's malloc, memalign or realloc returned.
            let usable = unsafe { libc::malloc_usable_size(held.block.ptr as *mut libc::c_void) };
            assert!(
                usable as u64 >= size + TRAILER,
                "a block of {size} B has {usable} usable bytes: no room for its trailer"
            );
            bytes += size + TRAILER;
        }
        // SAFETY:
        // - `mallinfo2` has no preconditions.
        let info = unsafe { libc::mallinfo2() };
        let in_use = (info.uordblks + info.hblkhd) as u64;
        assert!(
            bytes <= in_use,
            "the soak's blocks with their trailers take {bytes} B, glibc has {in_use} B in use"
        );
        (self.blocks, self.bytes, self.in_use) = (live.len() as u64, bytes, in_use);
        self.checks += 1;
    }
}

impl soak::Checks for SystemChecks {
    fn reading(&mut self, r: &Reconciliation) {
        let why = r.allocator.as_ref().unwrap_err();
        let expected = if cfg!(feature = "jemalloc") {
            AllocatorStatsUnavailable::NotTheGlobalAllocator
        } else {
            AllocatorStatsUnavailable::NotBuilt
        };
        assert_eq!(*why, expected);
        assert!(r.scope_arenas.is_empty(), "{:?}", r.scope_arenas);
        let kinds: Vec<GapKind> = r.gaps().iter().map(|g| g.kind).collect();
        assert_eq!(
            kinds,
            [
                GapKind::AllocatorOverheadAndOutsideHeap,
                GapKind::FileBacked
            ]
        );
    }

    fn paused(&mut self, _round: usize, _scopes: &[String], live: &[Held]) {
        self.in_use(live);
    }

    fn quiescent(&mut self, _round: usize, _scopes: &[String], live: &[Held]) {
        self.in_use(live);
    }

    fn end(&mut self, _scopes: &[String]) {
        assert!(memledger::__private::scope_arenas().is_empty());
    }

    fn summary(&self) -> String {
        format!(
            "system: {} checks; at the last, {} blocks with room for their trailers, {} B with \
             them, within glibc's {} B in use",
            self.checks, self.blocks, self.bytes, self.in_use
        )
    }
}

#[test]
#[ignore = "minutes of load; CI runs it with a bound"]
fn soak() {
    soak::run(&mut SystemChecks::default());
}
