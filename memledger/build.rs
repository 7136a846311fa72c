//! Tells the crate whether the build keeps frame pointers (`-C force-frame-pointers=yes` in
//! `RUSTFLAGS` or a target's `rustflags`): sampled allocation sites are then captured by walking
//! the frame pointers, which costs a few instructions per frame instead of the unwinder's
//! thousands (`memledger::sampling::StackWalk`).
//!
//! It also passes on `MEMLEDGER_MUTANT`, the name of a bug seeded on purpose: `.ci/mutants` builds
//! the crate with one at a time (`cfg(memledger_mutant = "...")` arms at the places they break) to
//! show that the check meant to catch it fails. Unset in every other build.

fn main() {
    mutant();
    println!("cargo::rerun-if-env-changed=CARGO_ENCODED_RUSTFLAGS");
    let flags = std::env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    let mut previous = "";
    let mut frame_pointers = false;
    for flag in flags.split('\x1f') {
        // `-Cforce-frame-pointers=yes`, or `-C` then `force-frame-pointers=yes`; the last one set
        // wins.
        let value = flag
            .strip_prefix("-C")
            .filter(|v| !v.is_empty())
            .or((previous == "-C").then_some(flag));
        if let Some(setting) = value.and_then(|v| v.strip_prefix("force-frame-pointers")) {
            frame_pointers = matches!(setting, "" | "=yes" | "=y" | "=on" | "=true");
        }
        previous = flag;
    }
    if frame_pointers {
        println!("cargo::rustc-cfg=memledger_frame_pointers");
    }
}

/// Sets `cfg(memledger_mutant = "<name>")` from `MEMLEDGER_MUTANT`.
fn mutant() {
    println!("cargo::rerun-if-env-changed=MEMLEDGER_MUTANT");
    println!("cargo::rustc-check-cfg=cfg(memledger_mutant, values(any()))");
    if let Some(name) = std::env::var("MEMLEDGER_MUTANT")
        .ok()
        .filter(|n| !n.is_empty())
    {
        println!("cargo::rustc-cfg=memledger_mutant=\"{name}\"");
    }
}
