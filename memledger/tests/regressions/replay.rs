//! Replays a fuzz target's kept inputs through the target's own check: its seeds
//! (`fuzz/seeds/<target>`) and the inputs that once failed it
//! (`memledger/tests/regressions/<target>`; every file there but the README). Included by `#[path]`
//! in the tests of each crate whose code a target checks.

use std::path::Path;

/// Runs `check` over the kept inputs of `target`, found under the workspace's `root`; panics
/// naming every file that fails it, or if there is none to run.
pub fn replay(root: &Path, target: &str, check: fn(&[u8])) {
    let mut ran = 0;
    let mut failed = Vec::new();
    for dir in [
        format!("fuzz/seeds/{target}"),
        format!("memledger/tests/regressions/{target}"),
    ] {
        let entries = std::fs::read_dir(root.join(&dir)).unwrap_or_else(|e| panic!("{dir}: {e}"));
        for entry in entries {
            let path = entry.unwrap().path();
            if path.file_name().is_some_and(|n| n == "README.md") {
                continue;
            }
            let data = std::fs::read(&path).unwrap();
            if std::panic::catch_unwind(|| check(&data)).is_err() {
                failed.push(path);
            }
            ran += 1;
        }
    }
    assert!(ran > 0, "no kept inputs found for {target}");
    assert!(
        failed.is_empty(),
        "kept inputs that fail the check: {failed:?}"
    );
}
