//! Passes on `MEMLEDGER_MUTANT`, the name of a bug seeded on purpose (see `memledger/build.rs`):
//! `.ci/mutants` builds the crate with one at a time to show that the check meant to catch it
//! fails. Unset in every other build.
fn main() {
    println!("cargo::rerun-if-env-changed=MEMLEDGER_MUTANT");
    println!("cargo::rustc-check-cfg=cfg(memledger_mutant, values(any()))");
    if let Some(name) = std::env::var("MEMLEDGER_MUTANT")
        .ok()
        .filter(|n| !n.is_empty())
    {
        println!("cargo::rustc-cfg=memledger_mutant=\"{name}\"");
    }
}
