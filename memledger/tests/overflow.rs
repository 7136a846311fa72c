//! Filling the scope table: past `MAX_SCOPES`, entries go to the overflow scope and are counted,
//! and their blocks are still booked exactly. Its own binary, since the table never empties.

use std::alloc::{alloc, dealloc, Layout};

#[global_allocator]
static GLOBAL: memledger::Ledger<std::alloc::System> = memledger::Ledger::new(std::alloc::System);

#[test]
fn a_full_table_books_to_the_overflow_scope() {
    let registered = memledger::snapshot().scopes().len();
    let room = memledger::MAX_SCOPES - registered;
    // Fill every remaining id: `room - 1` scopes under one parent, plus the parent.
    let parent = memledger::enter("many");
    for i in 0..room - 1 {
        let _g = memledger::enter(&format!("s{i}"));
    }
    drop(parent);
    let snap = memledger::snapshot();
    assert_eq!(snap.scopes().len(), memledger::MAX_SCOPES);
    assert_eq!(snap.refused_scopes(), 0);
    let overflow_before = snap.scope(memledger::OVERFLOW_SCOPE).unwrap().clone();

    let layout = Layout::from_size_align(1234, 8).unwrap();
    let blocks: Vec<*mut u8> = (0..3)
        .map(|i| {
            let _g = memledger::enter(&format!("one_too_many_{i}"));
            // Nested inside a refused scope: refused too.
            let _inner = memledger::scope!("inner");
            // SAFETY: non-zero size.
            unsafe { alloc(layout) }
        })
        .collect();
    // A path of several new segments is one refused entry.
    let deep = {
        let _g = memledger::enter("new_a/new_b/new_c");
        // SAFETY: non-zero size.
        unsafe { alloc(layout) }
    };
    // An existing scope can still be entered.
    let existing = {
        let _g = memledger::enter("many/s0");
        // SAFETY: non-zero size.
        unsafe { alloc(layout) }
    };
    let snap = memledger::snapshot();
    assert_eq!(snap.scopes().len(), memledger::MAX_SCOPES);
    assert_eq!(snap.refused_scopes(), 7);
    let overflow = snap.scope(memledger::OVERFLOW_SCOPE).unwrap();
    assert_eq!(overflow.live_bytes - overflow_before.live_bytes, 4 * 1234);
    assert_eq!(overflow.allocations - overflow_before.allocations, 4);
    assert_eq!(snap.scope("many/s0").unwrap().live_bytes, 1234);
    assert!(snap.to_string().contains("7 scope entries refused"));
    // A limit cannot be set on a scope that finds no room, and says why.
    let err = memledger::limit_scope("no_room_for_me", Some(1 << 20)).unwrap_err();
    if cfg!(feature = "enforce") {
        assert!(matches!(err, memledger::Error::ScopeTableFull { .. }));
        assert!(err.to_string().contains("\"no_room_for_me\""), "{err}");
        // An existing scope can still be limited.
        memledger::limit_scope("many/s1", Some(1 << 20)).unwrap();
    } else {
        assert!(matches!(err, memledger::Error::EnforcementNotBuilt));
        assert!(err.to_string().contains("`enforce` feature"), "{err}");
    }
    for ptr in blocks.into_iter().chain([existing, deep]) {
        // SAFETY: live blocks allocated with `layout`.
        unsafe { dealloc(ptr, layout) };
    }
    let snap = memledger::snapshot();
    let overflow = snap.scope(memledger::OVERFLOW_SCOPE).unwrap();
    assert_eq!(overflow.live_bytes, overflow_before.live_bytes);
    assert_eq!(snap.scope("many/s0").unwrap().live_bytes, 0);
}
