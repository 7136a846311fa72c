//! The process's memory as `/proc/self/smaps_rollup` counts it: the kernel walks the process's
//! page tables for it, a second source beside `/proc/self/statm` (the per-process counters the
//! reconciliation reads).

/// Resident bytes, all and anonymous; the rest are file-backed or shared memory, as statm's
/// `shared` counts them.
#[derive(Clone, Copy, Debug)]
pub struct Rollup {
    pub rss: u64,
    pub anonymous: u64,
}

impl Rollup {
    pub fn read() -> Rollup {
        let text = std::fs::read_to_string("/proc/self/smaps_rollup").unwrap();
        let field = |name: &str| {
            let line = text
                .lines()
                .find(|l| l.starts_with(name))
                .unwrap_or_else(|| panic!("no {name} in smaps_rollup: {text}"));
            let kib: u64 = line[name.len()..]
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .unwrap();
            kib * 1024
        };
        Rollup {
            rss: field("Rss:"),
            anonymous: field("Anonymous:"),
        }
    }

    /// Resident bytes that are not anonymous: file-backed pages and shared memory.
    pub fn file_backed(&self) -> u64 {
        self.rss - self.anonymous
    }
}

/// Whether `value` lies within `[low - slack, high + slack]`, where `low` and `high` are two
/// readings of a second source taken before and after it (in either order).
pub fn within(value: u64, a: u64, b: u64, slack: u64) -> bool {
    value + slack >= a.min(b) && value <= a.max(b) + slack
}
