//! What the kernel says: the process's resident memory, its cgroup's usage and limit, and the
//! machine's physical memory.
//!
//! On Linux the resident set is read from `/proc/self/statm` with one `pread` on a file kept
//! open (about a microsecond; see `BENCHMARKS.md`), the cgroup from `/sys/fs/cgroup`, and physical
//! memory from `sysconf`. Elsewhere `sysinfo` reads the own process only.

use core::fmt;
use std::sync::Mutex;

/// Why a reading of the process's memory failed.
///
/// Every reading is validated: a value that cannot be true (a resident set of zero, larger than
/// the address space, or larger than the machine) is an error, not data.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum ReadError {
    /// This platform has no source for the figure.
    Unsupported {
        /// What could not be read.
        what: String,
    },
    /// The process to read is gone.
    ProcessGone,
    /// The source exists but may not be read.
    PermissionDenied {
        /// The file or interface that refused.
        source: String,
    },
    /// Reading the source failed.
    Io {
        /// The file or interface that failed.
        source: String,
        /// The operating system's message.
        message: String,
    },
    /// The source answered something that cannot be true.
    Invalid {
        /// What was read.
        what: String,
        /// Why it was rejected.
        reason: String,
    },
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Unsupported { what } => {
                write!(f, "cannot read {what}: this platform does not report it")
            }
            ReadError::ProcessGone => f.write_str("cannot read memory: the process is gone"),
            ReadError::PermissionDenied { source } => write!(
                f,
                "cannot read {source}: permission denied (is /proc mounted with hidepid, or \
                 the process sandboxed?)"
            ),
            ReadError::Io { source, message } => write!(f, "cannot read {source}: {message}"),
            ReadError::Invalid { what, reason } => {
                write!(f, "rejected a reading of {what}: {reason}")
            }
        }
    }
}

impl std::error::Error for ReadError {}

impl ReadError {
    /// Where `/proc` is read (Linux): what a failed read says about the process.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    fn io(source: &str, error: std::io::Error) -> ReadError {
        match error.kind() {
            std::io::ErrorKind::NotFound => ReadError::ProcessGone,
            std::io::ErrorKind::PermissionDenied => ReadError::PermissionDenied {
                source: source.to_string(),
            },
            _ => ReadError::Io {
                source: source.to_string(),
                message: error.to_string(),
            },
        }
    }

    fn invalid(what: &str, reason: impl Into<String>) -> ReadError {
        ReadError::Invalid {
            what: what.to_string(),
            reason: reason.into(),
        }
    }
}

/// The process's memory as the kernel counts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ProcessMemory {
    /// Resident set size: pages of the process in physical memory.
    pub rss_bytes: u64,
    /// The part of `rss_bytes` backed by files or shared memory (code, libraries, mapped files),
    /// where the platform reports it.
    pub file_backed_bytes: Option<u64>,
    /// Size of the address space.
    pub virtual_bytes: u64,
}

impl ProcessMemory {
    /// The resident set in megabytes (10^6 bytes), for display.
    pub fn rss_mb(&self) -> f64 {
        self.rss_bytes as f64 / 1e6
    }

    /// Reads the calling process's memory.
    ///
    /// ```
    /// let memory = memledger_monitor::ProcessMemory::read().unwrap();
    /// assert!(memory.rss_bytes > 0);
    /// println!("{:.1} MB resident", memory.rss_mb());
    /// ```
    ///
    /// On Linux this is one `pread` of `/proc/self/statm` on a file descriptor kept open (and
    /// reopened after a `fork`), about a microsecond; elsewhere a `sysinfo` refresh of the own
    /// process only, tens of microseconds.
    pub fn read() -> Result<ProcessMemory, ReadError> {
        let memory = imp::read()?;
        memory.validate()?;
        Ok(memory)
    }

    /// Checks that the reading can be true.
    pub(crate) fn validate(&self) -> Result<(), ReadError> {
        if self.rss_bytes == 0 {
            return Err(ReadError::invalid(
                "the resident set",
                "zero bytes, but a running process has pages in memory",
            ));
        }
        if self.rss_bytes > self.virtual_bytes && self.virtual_bytes != 0 {
            return Err(ReadError::invalid(
                "the resident set",
                format!(
                    "{} bytes resident exceeds the {} bytes of address space",
                    self.rss_bytes, self.virtual_bytes
                ),
            ));
        }
        if let Some(file) = self.file_backed_bytes {
            if file > self.rss_bytes {
                return Err(ReadError::invalid(
                    "the resident set",
                    format!(
                        "{file} file-backed bytes exceed the {} resident bytes",
                        self.rss_bytes
                    ),
                ));
            }
        }
        if let Ok(physical) = physical_memory() {
            if self.rss_bytes > physical {
                return Err(ReadError::invalid(
                    "the resident set",
                    format!(
                        "{} bytes resident exceeds the machine's {physical} bytes",
                        self.rss_bytes
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// The memory usage and limit of the process's cgroup (Linux).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct CgroupMemory {
    /// Memory charged to the cgroup: every process in it, page cache included.
    pub usage_bytes: u64,
    /// The cgroup's hard limit, if it has one.
    pub limit_bytes: Option<u64>,
}

impl CgroupMemory {
    /// Reads the calling process's cgroup; `Ok(None)` when it is in none with a memory controller
    /// (or the platform has no cgroups).
    ///
    /// ```
    /// if let Ok(Some(cgroup)) = memledger_monitor::CgroupMemory::read() {
    ///     println!("cgroup: {} bytes used, limit {:?}", cgroup.usage_bytes, cgroup.limit_bytes);
    /// }
    /// ```
    pub fn read() -> Result<Option<CgroupMemory>, ReadError> {
        imp::read_cgroup()
    }
}

/// The machine's physical memory in bytes.
///
/// ```
/// assert!(memledger_monitor::physical_memory().unwrap() > 0);
/// ```
pub fn physical_memory() -> Result<u64, ReadError> {
    static CACHE: Mutex<Option<u64>> = Mutex::new(None);
    let _gate = memledger::__private::fork_gate();
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(bytes) = *cache {
        return Ok(bytes);
    }
    let bytes = imp::physical_memory()?;
    if bytes == 0 {
        return Err(ReadError::invalid("physical memory", "zero bytes"));
    }
    *cache = Some(bytes);
    Ok(bytes)
}

#[cfg(target_os = "linux")]
mod imp {
    use super::{CgroupMemory, ProcessMemory, ReadError};
    use std::fs::File;
    use std::os::unix::fs::FileExt;
    use std::sync::Mutex;

    const STATM: &str = "/proc/self/statm";

    /// `/proc/self/statm`, opened once per process (a child after `fork` reopens its own).
    static STATM_FILE: Mutex<Option<(u32, File)>> = Mutex::new(None);

    pub(super) fn read() -> Result<ProcessMemory, ReadError> {
        let mut buf = [0u8; 256];
        let len = {
            let _gate = memledger::__private::fork_gate();
            let mut file = STATM_FILE.lock().unwrap_or_else(|e| e.into_inner());
            let pid = std::process::id();
            if file.as_ref().map(|(owner, _)| *owner) != Some(pid) {
                let opened = File::open(STATM).map_err(|e| match e.kind() {
                    // The own process cannot be gone: /proc is not there.
                    std::io::ErrorKind::NotFound => ReadError::Unsupported {
                        what: "the resident set (/proc/self/statm is missing: is /proc mounted?)"
                            .to_string(),
                    },
                    _ => ReadError::io(STATM, e),
                })?;
                *file = Some((pid, opened));
            }
            let (_, f) = file.as_ref().expect("opened above");
            f.read_at(&mut buf, 0)
                .map_err(|e| ReadError::io(STATM, e))?
        };
        parse_statm(&buf[..len], page_size())
    }

    /// Parses `size resident shared text lib data dt`, in pages.
    pub(crate) fn parse_statm(text: &[u8], page: u64) -> Result<ProcessMemory, ReadError> {
        let text =
            core::str::from_utf8(text).map_err(|_| ReadError::invalid(STATM, "not UTF-8 text"))?;
        let mut fields = text.split_ascii_whitespace().map(|f| f.parse::<u64>());
        let mut next = |name: &str| match fields.next() {
            Some(Ok(pages)) => pages
                .checked_mul(page)
                .ok_or_else(|| ReadError::invalid(STATM, format!("{name} overflows"))),
            Some(Err(_)) => Err(ReadError::invalid(
                STATM,
                format!("the {name} field is not a number: {text:?}"),
            )),
            None => Err(ReadError::invalid(
                STATM,
                format!("the {name} field is missing: {text:?}"),
            )),
        };
        let virtual_bytes = next("size")?;
        let rss_bytes = next("resident")?;
        let shared = next("shared")?;
        Ok(ProcessMemory {
            rss_bytes,
            file_backed_bytes: Some(shared),
            virtual_bytes,
        })
    }

    fn page_size() -> u64 {
        // SAFETY:
        // - `sysconf` has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        if page > 0 {
            page as u64
        } else {
            4096
        }
    }

    pub(super) fn physical_memory() -> Result<u64, ReadError> {
        // SAFETY:
        // - `sysconf` has no preconditions.
        let pages = unsafe { libc::sysconf(libc::_SC_PHYS_PAGES) };
        if pages <= 0 {
            return Err(ReadError::Unsupported {
                what: "physical memory (sysconf(_SC_PHYS_PAGES))".to_string(),
            });
        }
        Ok((pages as u64).saturating_mul(page_size()))
    }

    /// Reads a cgroup file holding one number (or `max`, read as `None`).
    fn read_value(file: &File, path: &str) -> Result<Option<u64>, ReadError> {
        let mut buf = [0u8; 64];
        let len = file.read_at(&mut buf, 0).map_err(|e| ReadError::Io {
            source: path.to_string(),
            message: e.to_string(),
        })?;
        let text = core::str::from_utf8(&buf[..len])
            .map_err(|_| ReadError::invalid(path, "not UTF-8 text"))?
            .trim();
        if text == "max" {
            return Ok(None);
        }
        text.parse::<u64>()
            .map(Some)
            .map_err(|_| ReadError::invalid(path, format!("not a number: {text:?}")))
    }

    /// The directory of the process's cgroup: v2 (unified) first, else the v1 memory controller.
    fn cgroup_dir() -> Option<(String, bool)> {
        let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
        for line in own.lines() {
            let mut parts = line.splitn(3, ':');
            let (Some(_), Some(controllers), Some(path)) =
                (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            if controllers.is_empty() {
                // cgroup v2. Inside a cgroup namespace the path is "/", and the files are at the
                // mount's root.
                for dir in [
                    format!("/sys/fs/cgroup{path}"),
                    "/sys/fs/cgroup".to_string(),
                ] {
                    if std::path::Path::new(&format!("{dir}/memory.current")).exists() {
                        return Some((dir, true));
                    }
                }
            } else if controllers.split(',').any(|c| c == "memory") {
                for dir in [
                    format!("/sys/fs/cgroup/memory{path}"),
                    "/sys/fs/cgroup/memory".to_string(),
                ] {
                    if std::path::Path::new(&format!("{dir}/memory.usage_in_bytes")).exists() {
                        return Some((dir, false));
                    }
                }
            }
        }
        None
    }

    /// The cgroup's usage and limit files, opened once per process.
    struct CgroupFiles {
        pid: u32,
        usage: Option<(String, File, String, File)>,
    }

    static CGROUP: Mutex<Option<CgroupFiles>> = Mutex::new(None);

    fn open_cgroup() -> Result<Option<(String, File, String, File)>, ReadError> {
        let Some((dir, v2)) = cgroup_dir() else {
            return Ok(None);
        };
        let (usage, limit) = if v2 {
            ("memory.current", "memory.max")
        } else {
            ("memory.usage_in_bytes", "memory.limit_in_bytes")
        };
        let usage_path = format!("{dir}/{usage}");
        let limit_path = format!("{dir}/{limit}");
        // Not `ReadError::io`: a missing cgroup file says nothing about the process.
        let open = |path: &str| {
            File::open(path).map_err(|e| match e.kind() {
                std::io::ErrorKind::PermissionDenied => ReadError::PermissionDenied {
                    source: path.to_string(),
                },
                _ => ReadError::Io {
                    source: path.to_string(),
                    message: e.to_string(),
                },
            })
        };
        let usage = open(&usage_path)?;
        let limit = open(&limit_path)?;
        Ok(Some((usage_path, usage, limit_path, limit)))
    }

    pub(super) fn read_cgroup() -> Result<Option<CgroupMemory>, ReadError> {
        let _gate = memledger::__private::fork_gate();
        let mut cache = CGROUP.lock().unwrap_or_else(|e| e.into_inner());
        let pid = std::process::id();
        if cache.as_ref().map(|c| c.pid) != Some(pid) {
            *cache = Some(CgroupFiles {
                pid,
                usage: open_cgroup()?,
            });
        }
        let Some((usage_path, usage, limit_path, limit)) =
            cache.as_ref().and_then(|c| c.usage.as_ref())
        else {
            return Ok(None);
        };
        let usage_bytes = read_value(usage, usage_path)?
            .ok_or_else(|| ReadError::invalid(usage_path, "usage reads \"max\""))?;
        let mut limit_bytes = read_value(limit, limit_path)?;
        // cgroup v1 writes "no limit" as a huge page-aligned number.
        if limit_bytes.is_some_and(|l| l >= i64::MAX as u64 / 2) {
            limit_bytes = None;
        }
        if limit_bytes == Some(0) {
            return Err(ReadError::invalid(limit_path, "a limit of zero bytes"));
        }
        Ok(Some(CgroupMemory {
            usage_bytes,
            limit_bytes,
        }))
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn statm_parses_and_rejects() {
            let m = parse_statm(b"1000 200 50 1 0 300 0\n", 4096).unwrap();
            assert_eq!(m.virtual_bytes, 4_096_000);
            assert_eq!(m.rss_bytes, 819_200);
            assert_eq!(m.file_backed_bytes, Some(204_800));
            assert!(matches!(
                parse_statm(b"1000 x 50", 4096),
                Err(ReadError::Invalid { .. })
            ));
            assert!(matches!(
                parse_statm(b"1000", 4096),
                Err(ReadError::Invalid { .. })
            ));
            assert!(matches!(
                parse_statm(&[0xff, 0xfe], 4096),
                Err(ReadError::Invalid { .. })
            ));
            assert!(matches!(
                parse_statm(b"18446744073709551615 1 1", 4096),
                Err(ReadError::Invalid { .. })
            ));
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use super::{CgroupMemory, ProcessMemory, ReadError};
    use std::sync::Mutex;
    use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};

    static SYSTEM: Mutex<Option<System>> = Mutex::new(None);

    pub(super) fn read() -> Result<ProcessMemory, ReadError> {
        let pid = Pid::from_u32(std::process::id());
        let mut system = SYSTEM.lock().unwrap_or_else(|e| e.into_inner());
        let system = system.get_or_insert_with(System::new);
        system.refresh_processes_specifics(
            ProcessesToUpdate::Some(&[pid]),
            true,
            ProcessRefreshKind::nothing().with_memory(),
        );
        let process = system.process(pid).ok_or(ReadError::ProcessGone)?;
        Ok(ProcessMemory {
            rss_bytes: process.memory(),
            file_backed_bytes: None,
            virtual_bytes: process.virtual_memory(),
        })
    }

    pub(super) fn physical_memory() -> Result<u64, ReadError> {
        let mut system = System::new();
        system.refresh_memory();
        Ok(system.total_memory())
    }

    pub(super) fn read_cgroup() -> Result<Option<CgroupMemory>, ReadError> {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_rejects_impossible_readings() {
        let ok = ProcessMemory {
            rss_bytes: 1 << 20,
            file_backed_bytes: Some(1 << 10),
            virtual_bytes: 1 << 30,
        };
        assert_eq!(ok.validate(), Ok(()));
        for bad in [
            ProcessMemory { rss_bytes: 0, ..ok },
            ProcessMemory {
                virtual_bytes: 1 << 10,
                ..ok
            },
            ProcessMemory {
                file_backed_bytes: Some(1 << 21),
                ..ok
            },
            ProcessMemory {
                rss_bytes: u64::MAX / 2,
                virtual_bytes: u64::MAX,
                ..ok
            },
        ] {
            let err = bad.validate().unwrap_err();
            assert!(matches!(err, ReadError::Invalid { .. }), "{bad:?}: {err}");
            assert!(err.to_string().contains("resident"), "{err}");
        }
    }

    #[test]
    fn reads_this_process() {
        let m = ProcessMemory::read().unwrap();
        assert!(m.rss_bytes > 0 && m.rss_bytes <= physical_memory().unwrap());
        if let Some(cgroup) = CgroupMemory::read().unwrap() {
            assert!(cgroup.usage_bytes > 0);
        }
    }
}
