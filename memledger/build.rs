//! Tells the crate whether the build keeps frame pointers (`-C force-frame-pointers=yes` in
//! `RUSTFLAGS` or a target's `rustflags`): sampled allocation sites are then captured by walking
//! the frame pointers, which costs a few instructions per frame instead of the unwinder's
//! thousands (`memledger::sampling::StackWalk`).

fn main() {
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
