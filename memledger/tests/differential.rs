//! The differential check of `tests/common/differential.rs` over the system allocator: random
//! programs from a seeded generator, the `ledger_ops` fuzz target's seeds (`fuzz/seeds`), and the
//! inputs that once found a bug (`memledger/tests/regressions/ledger_ops`).

#[path = "common/differential.rs"]
mod differential;

use std::path::Path;

#[global_allocator]
static GLOBAL: memledger::Ledger<std::alloc::System> = memledger::Ledger::new(std::alloc::System);

#[test]
fn random_programs_keep_exact_books() {
    let count = if cfg!(miri) { 3 } else { 2_000 };
    for program in differential::programs(count, 0x5eed) {
        differential::run(&program);
    }
}

#[test]
#[cfg_attr(miri, ignore = "reads files, which Miri's isolation hides")]
fn kept_inputs_keep_exact_books() {
    // The workspace's root: the fuzz seeds live beside the crates.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut ran = 0;
    for dir in [
        "fuzz/seeds/ledger_ops",
        "memledger/tests/regressions/ledger_ops",
    ] {
        let entries = std::fs::read_dir(root.join(dir)).unwrap_or_else(|e| panic!("{dir}: {e}"));
        for entry in entries {
            let path = entry.unwrap().path();
            // The regressions' folders each hold a README that says what goes there.
            if path.file_name().is_some_and(|n| n == "README.md") {
                continue;
            }
            differential::run(&std::fs::read(&path).unwrap());
            ran += 1;
        }
    }
    assert!(ran > 0, "no kept inputs found");
}
