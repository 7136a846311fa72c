//! How the crate writes figures for people: bytes with a binary unit, shares in percent. One
//! place, so that a snapshot, a footprint, a status and a report say `12.5 MiB` alike.

use core::fmt;

/// A byte count written with a binary unit, as every figure of the crate is: `512 B`,
/// `12.5 MiB`. Width and alignment apply (`{:>10}`).
///
/// ```
/// use memledger::HumanBytes;
///
/// assert_eq!(HumanBytes(512).to_string(), "512 B");
/// assert_eq!(HumanBytes(13_107_200).to_string(), "12.5 MiB");
/// assert_eq!(format!("[{:>9}]", HumanBytes(2048)), "[  2.0 KiB]");
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HumanBytes(pub u64);

impl fmt::Display for HumanBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&human_bytes(self.0))
    }
}

/// Formats a byte count with a binary unit (`12.5 MiB`).
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// `part` as a percentage of `whole` (0 when `whole` is 0).
pub fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}
