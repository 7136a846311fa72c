//! Where each scope's memory was allocated: the facade's sampled sites
//! ([`memledger::sampling`]) with their symbols resolved, compared against a baseline, and
//! exported as pprof and folded stacks.
//!
//! ```
//! #[global_allocator]
//! static GLOBAL: memledger::Ledger<memledger::Jemalloc> = memledger::Ledger::new(memledger::Jemalloc);
//!
//! #[inline(never)]
//! fn fill_cache() -> Vec<Vec<u8>> {
//!     (0..512).map(|_| std::hint::black_box(vec![7u8; 8 * 1024])).collect()
//! }
//!
//! fn main() {
//!     memledger::sampling::set_rate(64 * 1024).unwrap();
//!     let cache = memledger::in_scope("cache", fill_cache);
//!     let profile = memledger_monitor::profile();
//!     let top = &profile.scope("cache").unwrap().sites[0];
//!     assert!(top.frames.iter().any(|f| f.function.ends_with("fill_cache")), "{top:?}");
//!     let pprof: Vec<u8> = profile.to_pprof();          // gzipped profile.proto
//!     let folded: String = profile.to_folded(memledger_monitor::ProfileValue::LiveBytes);
//!     assert!(!pprof.is_empty() && folded.contains("fill_cache"));
//!     drop(cache);
//! }
//! ```

mod pprof;
mod resolve;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

pub use memledger::sampling::Estimate;

/// One frame of a site's stack, resolved.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Frame {
    /// The return address the frame was found at (frames inlined into one function share it).
    pub address: u64,
    /// The function, demangled without its hash; `"??"` when no symbol was found. Shared by
    /// every frame of the process that names it.
    pub function: Arc<str>,
    /// The source file, where the binary has line tables.
    #[cfg_attr(feature = "serde", serde(default))]
    pub file: Option<Arc<str>>,
    /// The line in `file`.
    #[cfg_attr(feature = "serde", serde(default))]
    pub line: Option<u32>,
}

impl fmt::Display for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.function)?;
        if let Some(file) = &self.file {
            let short = file.rsplit('/').next().unwrap_or(file);
            write!(f, " ({short}")?;
            if let Some(line) = self.line {
                write!(f, ":{line}")?;
            }
            f.write_str(")")?;
        }
        Ok(())
    }
}

/// One allocation site of a scope: a resolved call stack and what was sampled there.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Site {
    /// Frames, innermost first, from the first frame outside the allocator (the ledger's own
    /// frames, `__rust_alloc` and `alloc::alloc` are left out). Empty for samples whose stack
    /// found no room in the tables.
    pub frames: Vec<Frame>,
    /// The stack was cut: deeper than [`memledger::sampling::MAX_DEPTH`], or at a frame whose
    /// size varies between calls, or not kept (no frames).
    pub truncated: bool,
    /// What the site's live sampled blocks stand for.
    pub live: Estimate,
    /// What was allocated there: since the program started, or since the baseline for a profile
    /// made by [`Profile::since`].
    pub allocated: Estimate,
    /// How the site's estimated live bytes changed since the baseline ([`Profile::since`]); its
    /// live bytes for a profile without one.
    pub live_change: i64,
}

impl Site {
    /// The innermost frame of the program's own code, where the site is best named: the
    /// function that asked for the memory. Frames of the standard library (`alloc::vec`,
    /// `alloc::raw_vec`, `hashbrown`...) and of the runtime around the program (thread and
    /// process start, the test harness, closure shims, the allocator: see [`Frame::is_program`])
    /// are looked past; `None` when the stack holds no frame of the program, as when a build
    /// without line tables inlined the program's functions into the runtime's.
    pub fn caller(&self) -> Option<&Frame> {
        self.frames.iter().find(|f| f.is_program())
    }

    /// The site's name for people: its caller, with its file and line; `(other sites)` for the
    /// sites a trimmed profile merged ([`Profile::trimmed`]), `(unknown site)` for samples
    /// whose stack was not kept, and [`NO_PROGRAM_FRAME`] for a stack without a frame of the
    /// program.
    pub fn label(&self) -> String {
        match self.caller() {
            Some(frame) => frame.to_string(),
            None if self.frames.is_empty() && !self.truncated => "(other sites)".to_string(),
            None if self.frames.is_empty() => "(unknown site)".to_string(),
            None => NO_PROGRAM_FRAME.to_string(),
        }
    }

    /// The site's key: the addresses of its frames.
    fn key(&self) -> Vec<u64> {
        let mut key: Vec<u64> = self.frames.iter().map(|f| f.address).collect();
        key.dedup();
        key
    }
}

/// The label of a site whose stack holds no frame of the program's own code.
pub const NO_PROGRAM_FRAME: &str = "(no frame of the program resolved)";

impl Frame {
    /// Whether the frame is the program's own code: resolved, and neither the standard
    /// library's (`alloc::raw_vec::finish_grow`, `<alloc::vec::Vec<T> as
    /// core::clone::Clone>::clone`) nor the runtime's around the program (`start_thread`,
    /// `clone3`, `std::rt::lang_start`, `test::__rust_begin_short_backtrace`, `FnOnce::call_once`
    /// shims, the allocator's own frames). The crates the program depends on count as its own.
    pub fn is_program(&self) -> bool {
        !is_library_frame(&self.function) && !is_runtime_frame(&self.function)
    }
}

/// The frames of the runtime around the program, which no site is named after: where a stack
/// shows only these and the library's, a build without line tables inlined the program's own
/// functions into them, and naming them would put every site at `start_thread`.
fn is_runtime_frame(function: &str) -> bool {
    // C functions of thread and process start (glibc, musl, Apple's and Windows' libraries),
    // the allocators' entry points, and `??` for an address no symbol covers.
    const NAMES: [&str; 25] = [
        "??",
        "_start",
        "main",
        "__libc_start_main",
        "__libc_start_main_impl",
        "__libc_start_call_main",
        "start_thread",
        "thread_start",
        "_pthread_start",
        "clone",
        "clone3",
        "__clone",
        "__clone3",
        "__thread_start",
        "BaseThreadInitThunk",
        "RtlUserThreadStart",
        "mainCRTStartup",
        "malloc",
        "calloc",
        "realloc",
        "free",
        "posix_memalign",
        "aligned_alloc",
        "memalign",
        "__rust_try",
    ];
    // The runtime's Rust: process and thread start, unwinding guards, the test harness, the
    // global allocator's shims, the ledger and jemalloc.
    const PREFIXES: [&str; 16] = [
        "std::rt::",
        "std::panicking::",
        "std::panic::",
        "std::thread::",
        "std::sys::",
        "std::sys_common::",
        "test::",
        "core::ops::function::",
        "memledger::",
        "tikv_jemallocator::",
        "__rust_",
        "__rg_",
        "__rdl_",
        "_rjem_",
        "_Unwind_",
        "__rustc::",
    ];
    if NAMES.contains(&function) || PREFIXES.iter().any(|p| function.starts_with(p)) {
        return true;
    }
    // `<alloc::boxed::Box<F,A> as core::ops::function::FnOnce<Args>>::call_once` and a
    // closure's `<app::main::{{closure}} as core::ops::function::FnOnce<()>>::call_once`: the
    // shims that call a closure, whose own frame follows where there are line tables.
    // `<memledger::ledger::Ledger<A> as core::alloc::global::GlobalAlloc>::alloc`: the
    // runtime's type, whatever the trait.
    function
        .strip_prefix('<')
        .and_then(|f| f.split_once(" as "))
        .is_some_and(|(ty, tr)| {
            bare(tr).starts_with("core::ops::function::")
                || PREFIXES.iter().any(|p| bare(ty).starts_with(p))
        })
        // A `dyn FnOnce`'s shim: `{{vtable.shim}}` in legacy names, `{shim:vtable#0}` in v0's.
        || function.contains("{{vtable.shim}}")
        || function.contains("{shim:vtable")
}

/// The library frames a site's label looks past.
fn is_library_frame(function: &str) -> bool {
    // `<&mut alloc::string::String as core::fmt::Write>::write_fmt` and
    // `<u8 as alloc::vec::spec_from_elem::SpecFromElem>::from_elem` are the library's too: a
    // library trait implemented for a library or primitive type.
    if let Some((ty, rest)) = function
        .strip_prefix('<')
        .and_then(|f| f.split_once(" as "))
    {
        let ty = bare(ty);
        let primitive = ty.starts_with(['[', '(']) || ty.chars().all(|c| c.is_ascii_alphanumeric());
        return (primitive || is_library_path(ty)) && is_library_path(bare(rest));
    }
    is_library_path(bare(function))
}

/// `path` without leading `<`, references, pointers, `mut`, `const` and `dyn`.
fn bare(mut path: &str) -> &str {
    loop {
        let trimmed = path
            .trim_start_matches(['<', '&', '*'])
            .trim_start_matches("mut ")
            .trim_start_matches("const ")
            .trim_start_matches("dyn ");
        if trimmed == path {
            return path;
        }
        path = trimmed;
    }
}

fn is_library_path(path: &str) -> bool {
    ["alloc::", "core::", "std::", "hashbrown::"]
        .iter()
        .any(|p| path.starts_with(p))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::{Estimate, Frame, Site, NO_PROGRAM_FRAME};

    #[test]
    fn library_frames_are_told_apart() {
        for f in [
            "alloc::raw_vec::finish_grow",
            "<alloc::vec::Vec<T> as core::clone::Clone>::clone",
            "<&mut alloc::string::String as core::fmt::Write>::write_fmt",
            "<u8 as alloc::vec::spec_from_elem::SpecFromElem>::from_elem",
            "<[u8] as alloc::slice::hack::ConvertVec>::to_vec",
        ] {
            assert!(super::is_library_frame(f), "{f}");
        }
        for f in [
            "demo::Service::log_query",
            "<demo::Index as core::fmt::Display>::fmt",
            "<alloc::string::String as demo::Render>::render",
            "stdlib_like::alloc",
        ] {
            assert!(!super::is_library_frame(f), "{f}");
        }
    }

    fn frame(function: &str) -> Frame {
        Frame {
            address: 0x1000,
            function: Arc::from(function),
            file: None,
            line: None,
        }
    }

    /// Names as `backtrace` gives them (`{:#}`) in stacks of a test, a spawned thread and a
    /// program's main thread, built with and without line tables.
    #[test]
    fn runtime_frames_are_not_the_program() {
        for f in [
            "start_thread",
            "clone3",
            "__clone",
            "_start",
            "main",
            "__libc_start_main",
            "__libc_start_call_main",
            "??",
            "std::rt::lang_start_internal",
            "std::rt::lang_start::{{closure}}",
            "std::sys::backtrace::__rust_begin_short_backtrace",
            "std::sys_common::backtrace::__rust_begin_short_backtrace",
            "std::sys::pal::unix::thread::Thread::new::thread_start",
            "std::sys::thread::unix::Thread::new::thread_start",
            "std::thread::Builder::spawn_unchecked_::{{closure}}::{{closure}}",
            "std::panicking::try::do_call",
            "std::panicking::catch_unwind::do_call",
            "__rust_try",
            "test::__rust_begin_short_backtrace",
            "test::run_test::{{closure}}",
            "test::run_test_in_process",
            "core::ops::function::FnOnce::call_once",
            "core::ops::function::FnOnce::call_once{{vtable.shim}}",
            "<alloc::boxed::Box<F,A> as core::ops::function::FnOnce<Args>>::call_once",
            "<F as core::ops::function::FnOnce<A>>::call_once",
            "<demo::main::{{closure}} as core::ops::function::FnOnce<()>>::call_once",
            // v0 names, as a toolchain that mangles its standard library so gives them.
            "std::thread::lifecycle::spawn_unchecked::{closure#1}::{closure#0}",
            "<std::thread::lifecycle::spawn_unchecked::{closure#1} as \
             core::ops::function::FnOnce<()>>::call_once::{shim:vtable#0}",
            "app::main::{closure#0}::{shim:vtable#0}",
            "test::run_test::{closure#0}",
            "memledger::scope::in_scope",
            "<memledger::ledger::Ledger<A> as core::alloc::global::GlobalAlloc>::alloc",
            "__rust_alloc",
            "__rg_alloc",
            "__rustc::__rust_alloc",
            "_rjem_malloc",
            "malloc",
            "tikv_jemallocator::layout_to_flags",
        ] {
            assert!(super::is_runtime_frame(f), "{f}");
            assert!(!frame(f).is_program(), "{f}");
        }
        for f in [
            "demo::Service::log_query",
            "demo::main",
            "profile::allocate_blocks",
            "profile::estimates_per_site_fall_within_the_derived_bound::{{closure}}",
            "<demo::Index as core::fmt::Display>::fmt",
            "<alloc::string::String as demo::Render>::render",
            "rayon_core::registry::WorkerThread::wait_until_cold",
            "mainly::run",
            "tester::run",
            "app::main::{closure#0}",
            "sqlite3_exec",
        ] {
            assert!(!super::is_runtime_frame(f), "{f}");
            assert!(frame(f).is_program(), "{f}");
        }
    }

    fn site(functions: &[&str]) -> Site {
        Site {
            frames: functions.iter().map(|f| frame(f)).collect(),
            truncated: false,
            live: Estimate::default(),
            allocated: Estimate::default(),
            live_change: 0,
        }
    }

    /// A test's stack built without line tables (its closures inlined into the harness's
    /// frames), and the same with them.
    #[test]
    fn labels_name_the_program_or_say_there_is_none() {
        let inlined = site(&[
            "alloc::raw_vec::finish_grow",
            "test::__rust_begin_short_backtrace",
            "core::ops::function::FnOnce::call_once{{vtable.shim}}",
            "std::sys::pal::unix::thread::Thread::new::thread_start",
            "start_thread",
            "clone3",
        ]);
        assert_eq!(inlined.caller(), None);
        assert_eq!(inlined.label(), NO_PROGRAM_FRAME);
        let whole = site(&[
            "alloc::raw_vec::finish_grow",
            "alloc::vec::Vec<T,A>::push",
            "leaky::grow_cache",
            "leaky::main::{{closure}}",
            "test::__rust_begin_short_backtrace",
            "start_thread",
        ]);
        assert_eq!(whole.label(), "leaky::grow_cache");
        assert_eq!(site(&[]).label(), "(other sites)");
        let mut cut = site(&[]);
        cut.truncated = true;
        assert_eq!(cut.label(), "(unknown site)");
    }
}

/// The sites of one scope.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ScopeProfile {
    /// The scope's path.
    pub path: String,
    /// Its sites, the largest live first.
    pub sites: Vec<Site>,
    /// The sum of its sites' live estimates.
    pub live: Estimate,
    /// The sum of its sites' allocated estimates.
    pub allocated: Estimate,
}

impl ScopeProfile {
    /// The `n` sites whose live bytes grew the most since the baseline (growing ones only).
    pub fn growing_sites(&self, n: usize) -> Vec<&Site> {
        let mut sites: Vec<&Site> = self.sites.iter().filter(|s| s.live_change > 0).collect();
        sites.sort_by_key(|s| core::cmp::Reverse(s.live_change));
        sites.truncate(n);
        sites
    }
}

/// What the sampling tables hold, when the profile was taken.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ProfileUsage {
    /// Sampled blocks live.
    pub live_samples: u64,
    /// Distinct (scope, stack) pairs kept.
    pub stacks: u64,
    /// Samples dropped for lack of room: while above 0, estimates are too low.
    pub dropped_samples: u64,
    /// Bytes the tables hold (booked to the crate's own scope).
    pub table_bytes: u64,
}

/// Sampled allocation sites of every scope, resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(try_from = "ProfileFields"))]
pub struct Profile {
    /// The sampling rate, in bytes (the mean bytes between samples); 0 if sampling was off.
    pub rate: u64,
    /// Scopes with sampled sites, the largest live first.
    pub scopes: Vec<ScopeProfile>,
    /// The tables.
    pub usage: ProfileUsage,
    /// The program was built without line tables: its functions resolved, never a file or a
    /// line, and functions inlined into their callers are not seen ([`LINE_TABLES_NOTE`] says
    /// how to build it with them). False in profiles written before it was recorded.
    #[cfg_attr(feature = "serde", serde(default))]
    pub missing_line_tables: bool,
}

/// What a profile of a program built without line tables says about it, once: what is lost and
/// the line of `Cargo.toml` that keeps them.
pub const LINE_TABLES_NOTE: &str = "the program was built without line tables, so sites name \
    functions without files or lines, and functions inlined into their callers are not seen: \
    add `debug = \"line-tables-only\"` (or `debug = 1`) under `[profile.release]` in Cargo.toml";

/// A profile as read from outside, checked before it becomes a [`Profile`].
#[cfg(feature = "serde")]
#[derive(serde::Deserialize)]
struct ProfileFields {
    rate: u64,
    scopes: Vec<ScopeProfile>,
    usage: ProfileUsage,
    #[serde(default)]
    missing_line_tables: bool,
}

#[cfg(feature = "serde")]
impl TryFrom<ProfileFields> for Profile {
    type Error = String;

    fn try_from(f: ProfileFields) -> Result<Profile, String> {
        for (i, scope) in f.scopes.iter().enumerate() {
            if f.scopes[..i].iter().any(|s| s.path == scope.path) {
                return Err(format!(
                    "scope {:?} appears twice in the profile: each scope has one entry",
                    scope.path
                ));
            }
            let live: u64 = scope.sites.iter().map(|s| s.live.bytes).sum();
            if live != scope.live.bytes {
                return Err(format!(
                    "scope {:?} says {} live bytes but its sites add up to {live}",
                    scope.path, scope.live.bytes
                ));
            }
        }
        Ok(Profile {
            rate: f.rate,
            scopes: f.scopes,
            usage: f.usage,
            missing_line_tables: f.missing_line_tables,
        })
    }
}

/// Which figure of each site an export or a flame graph shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProfileValue {
    /// Estimated live bytes.
    LiveBytes,
    /// Estimated live blocks.
    LiveBlocks,
    /// Estimated bytes allocated (since the baseline, for [`Profile::since`]).
    AllocatedBytes,
    /// Estimated growth of live bytes since the baseline (sites that shrank count 0).
    GrowthBytes,
}

impl ProfileValue {
    /// The figure of `site`.
    pub fn of(self, site: &Site) -> u64 {
        match self {
            ProfileValue::LiveBytes => site.live.bytes,
            ProfileValue::LiveBlocks => site.live.blocks,
            ProfileValue::AllocatedBytes => site.allocated.bytes,
            ProfileValue::GrowthBytes => site.live_change.max(0) as u64,
        }
    }
}

/// Takes a profile of every scope now: the sampled sites, resolved (through a cache of symbols
/// shared by every call), their memory booked to the crate's own scope. Cold: copies the tables
/// and resolves the addresses it has not seen (the first profile of a process reads the binary's
/// debug information, which takes a while); the allocation path is never blocked.
pub fn profile() -> Profile {
    let _own = memledger::__private::own_scope();
    Profile::from_sites(&memledger::sampling::sites())
}

impl Profile {
    /// Resolves `sites` (see [`profile`]).
    pub fn from_sites(sites: &memledger::sampling::Sites) -> Profile {
        let mut scopes: Vec<ScopeProfile> = Vec::new();
        let mut index: HashMap<&str, usize> = HashMap::new();
        let mut lines = resolve::LineEvidence::default();
        for raw in &sites.sites {
            let at = *index.entry(raw.scope.as_str()).or_insert_with(|| {
                scopes.push(ScopeProfile {
                    path: raw.scope.clone(),
                    sites: Vec::new(),
                    live: Estimate::default(),
                    allocated: Estimate::default(),
                });
                scopes.len() - 1
            });
            let (frames, evidence) = resolve::frames(&raw.frames);
            lines.add(evidence);
            scopes[at].sites.push(Site {
                frames,
                truncated: raw.truncated,
                live: raw.live,
                allocated: raw.allocated,
                live_change: raw.live.bytes as i64,
            });
        }
        // Stacks that differ only inside the allocator are one site.
        for scope in &mut scopes {
            merge_same_sites(&mut scope.sites);
        }
        let mut profile = Profile {
            rate: sites.usage.rate,
            scopes,
            usage: ProfileUsage {
                live_samples: sites.usage.live_samples,
                stacks: sites.usage.stacks,
                dropped_samples: sites.usage.dropped_samples,
                table_bytes: sites.usage.table_bytes,
            },
            missing_line_tables: lines.missing(),
        };
        profile.sort_and_sum();
        profile
    }

    /// The profile with at most `sites` sites per scope: the largest live ones, and as many of
    /// the largest allocators; the rest of each scope is merged into one site without frames,
    /// so that the scope's sums stay whole. What the sampler keeps and records.
    pub fn trimmed(&self, sites: usize) -> Profile {
        let mut out = self.clone();
        for scope in &mut out.scopes {
            if scope.sites.len() <= sites {
                continue;
            }
            // Sorted by live bytes; the allocators among the rest come next.
            let by_live = sites.div_ceil(2);
            scope.sites[by_live..].sort_by_key(|s| core::cmp::Reverse(s.allocated.bytes));
            let mut other = Site {
                frames: Vec::new(),
                truncated: false,
                live: Estimate::default(),
                allocated: Estimate::default(),
                live_change: 0,
            };
            for site in scope.sites.drain(sites.saturating_sub(1).max(by_live)..) {
                other.live = sum([other.live, site.live].into_iter());
                other.allocated = sum([other.allocated, site.allocated].into_iter());
                other.live_change += site.live_change;
            }
            scope.sites.push(other);
        }
        out.sort_and_sum();
        out
    }

    /// The scope at `path`.
    pub fn scope(&self, path: &str) -> Option<&ScopeProfile> {
        let path = memledger::__private::normalize(path);
        self.scopes.iter().find(|s| s.path == path)
    }

    /// This profile against an earlier one of the same process: each site's `allocated` becomes
    /// what it allocated since `baseline`, and its `live_change` how its live bytes changed.
    /// Sites of the baseline that are gone count as shrunk to zero.
    pub fn since(&self, baseline: &Profile) -> Profile {
        let mut before: HashMap<(String, Vec<u64>), &Site> = HashMap::new();
        for scope in &baseline.scopes {
            for site in &scope.sites {
                before.insert((scope.path.clone(), site.key()), site);
            }
        }
        let mut out = self.clone();
        for scope in &mut out.scopes {
            for site in &mut scope.sites {
                match before.remove(&(scope.path.clone(), site.key())) {
                    Some(old) => {
                        site.allocated = Estimate {
                            bytes: site.allocated.bytes.saturating_sub(old.allocated.bytes),
                            blocks: site.allocated.blocks.saturating_sub(old.allocated.blocks),
                            samples: site.allocated.samples.saturating_sub(old.allocated.samples),
                        };
                        site.live_change = site.live.bytes as i64 - old.live.bytes as i64;
                    }
                    None => site.live_change = site.live.bytes as i64,
                }
            }
        }
        for ((path, _), old) in before {
            let Some(scope) = out.scopes.iter_mut().find(|s| s.path == path) else {
                continue;
            };
            scope.sites.push(Site {
                live: Estimate::default(),
                allocated: Estimate::default(),
                live_change: -(old.live.bytes as i64),
                ..old.clone()
            });
        }
        out.sort_and_sum();
        out
    }

    /// Sorts sites and scopes, the largest live first, and sums each scope.
    fn sort_and_sum(&mut self) {
        for scope in &mut self.scopes {
            scope.sites.sort_by(|a, b| {
                b.live
                    .bytes
                    .cmp(&a.live.bytes)
                    .then(b.allocated.bytes.cmp(&a.allocated.bytes))
            });
            scope.live = sum(scope.sites.iter().map(|s| s.live));
            scope.allocated = sum(scope.sites.iter().map(|s| s.allocated));
        }
        self.scopes.sort_by(|a, b| {
            b.live
                .bytes
                .cmp(&a.live.bytes)
                .then_with(|| a.path.cmp(&b.path))
        });
    }

    /// The profile as collapsed stacks ("folded" text, one line per site: the scope, then the
    /// frames outermost first, separated by `;`, a space and `value`), as inferno's and
    /// Brendan Gregg's flame graph tools read it. Sites whose value is 0 are left out.
    pub fn to_folded(&self, value: ProfileValue) -> String {
        let mut out = String::new();
        for scope in &self.scopes {
            for site in &scope.sites {
                let v = value.of(site);
                if v == 0 {
                    continue;
                }
                out.push_str(&folded_name(scope_label(&scope.path)));
                for frame in site.frames.iter().rev() {
                    out.push(';');
                    out.push_str(&folded_name(&frame.function));
                }
                if site.frames.is_empty() {
                    out.push(';');
                    out.push_str(&site.label());
                }
                out.push(' ');
                out.push_str(&v.to_string());
                out.push('\n');
            }
        }
        out
    }

    /// The profile as a gzipped `profile.proto` (pprof's format), readable by `go tool pprof`,
    /// pyroscope and speedscope: sample types `live_bytes`, `live_blocks`, `allocated_bytes`
    /// and `allocated_blocks` (estimates, in bytes and counts), one sample per site, with the
    /// scope as the label `scope` and as the outermost frame (`[scope <path>]`), so that
    /// `pprof -top` and flame graphs split by scope too. Function names drop generic arguments
    /// and qualified paths' brackets, which pprof would cut out as C++ templates
    /// (`alloc::vec::Vec as core::clone::Clone::clone`); system names are the whole demangled
    /// names. The main binary is the first mapping; a build without line tables gets a comment
    /// saying so.
    pub fn to_pprof(&self) -> Vec<u8> {
        pprof::encode(self)
    }
}

/// The scope's name in a stack: its path, or `<unscoped>` for the root.
pub(crate) fn scope_label(path: &str) -> &str {
    if path.is_empty() {
        "<unscoped>"
    } else {
        path
    }
}

/// A name in a folded line: `;` separates frames and the last space the value, so neither may
/// appear inside one.
fn folded_name(name: &str) -> String {
    name.replace(';', ":").replace([' ', '\n'], "_")
}

fn sum(estimates: impl Iterator<Item = Estimate>) -> Estimate {
    estimates.fold(Estimate::default(), |a, b| Estimate {
        bytes: a.bytes + b.bytes,
        blocks: a.blocks + b.blocks,
        samples: a.samples + b.samples,
    })
}

/// Merges sites with the same frames (stacks that differed only in the allocator's frames).
fn merge_same_sites(sites: &mut Vec<Site>) {
    let mut seen: HashMap<Vec<u64>, usize> = HashMap::new();
    let mut out: Vec<Site> = Vec::with_capacity(sites.len());
    for site in sites.drain(..) {
        match seen.get(&site.key()) {
            Some(&at) if !site.frames.is_empty() || out[at].frames.is_empty() => {
                let into = &mut out[at];
                into.live = sum([into.live, site.live].into_iter());
                into.allocated = sum([into.allocated, site.allocated].into_iter());
                into.live_change += site.live_change;
                into.truncated |= site.truncated;
            }
            _ => {
                seen.insert(site.key(), out.len());
                out.push(site);
            }
        }
    }
    *sites = out;
}

impl fmt::Display for Profile {
    /// The top sites of each scope, as a table.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use memledger::__private::human_bytes;
        writeln!(
            f,
            "sampled sites (one sample per {} on average; {} live samples)",
            human_bytes(self.rate),
            self.usage.live_samples
        )?;
        if self.missing_line_tables {
            writeln!(f, "note: {LINE_TABLES_NOTE}")?;
        }
        for scope in &self.scopes {
            writeln!(
                f,
                "{}: {} live in {} blocks (estimated)",
                scope_label(&scope.path),
                human_bytes(scope.live.bytes),
                scope.live.blocks
            )?;
            for site in scope.sites.iter().take(5) {
                writeln!(
                    f,
                    "  {:>10}  {:>8} blocks  {}",
                    human_bytes(site.live.bytes),
                    site.live.blocks,
                    site.label()
                )?;
            }
        }
        Ok(())
    }
}
