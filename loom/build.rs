//! Compiles the crates' lock-free files with their loom arm: `memledger/src/sys/atomic.rs` takes
//! loom's atomics under `cfg(memledger_loom)`, a flag of this crate's own, so that a program that
//! builds everything with `--cfg loom` for its own model checks still gets std's atomics inside
//! memledger.
fn main() {
    println!("cargo:rustc-cfg=memledger_loom");
}
