//! Compiles the crates' lock-free files with their loom arm: `memledger/src/sys/atomic.rs` takes
//! loom's atomics under `cfg(memledger_loom)`, a flag of this crate's own, so that a program that
//! builds everything with `--cfg loom` for its own model checks still gets std's atomics inside
//! memledger.
//!
//! `MEMLEDGER_MUTANT` names a bug seeded on purpose in those files (see `memledger/build.rs`):
//! `.ci/mutants` runs each model against the bug it must catch.
fn main() {
    println!("cargo::rustc-cfg=memledger_loom");
    println!("cargo::rerun-if-env-changed=MEMLEDGER_MUTANT");
    println!("cargo::rustc-check-cfg=cfg(memledger_mutant, values(any()))");
    if let Some(name) = std::env::var("MEMLEDGER_MUTANT")
        .ok()
        .filter(|n| !n.is_empty())
    {
        println!("cargo::rustc-cfg=memledger_mutant=\"{name}\"");
    }
}
