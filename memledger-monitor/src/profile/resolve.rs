//! Resolving return addresses to functions, files and lines, with a cache shared by every
//! profile of the process.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::Frame;

/// Resolved frames of each address seen so far (an address gives several frames where functions
/// were inlined into its caller, innermost first).
static CACHE: Mutex<Option<Cache>> = Mutex::new(None);

/// Frames by address, and each name once.
#[derive(Default)]
struct Cache {
    frames: HashMap<usize, Arc<[Frame]>>,
    names: std::collections::HashSet<Arc<str>>,
}

impl Cache {
    fn name(&mut self, name: &str) -> Arc<str> {
        if let Some(n) = self.names.get(name) {
            return Arc::clone(n);
        }
        let n: Arc<str> = Arc::from(name);
        self.names.insert(Arc::clone(&n));
        n
    }
}

/// What the frames of stacks say about the program's line tables: how many frames of code
/// built with the program's profile resolved a function, and how many of them a file too.
///
/// Those frames are Rust outside the standard library and its test harness (whose precompiled
/// debug information says nothing of the program's build), the ledger's own frames at the top
/// of every stack among them. A build without line tables (Cargo's release profile
/// leaves them out by default) resolves their functions from the symbol table and never a file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct LineEvidence {
    functions: u64,
    with_files: u64,
}

impl LineEvidence {
    pub(crate) fn of(frames: &[Frame]) -> LineEvidence {
        let mut evidence = LineEvidence::default();
        for f in frames {
            let function = &*f.function;
            let built_with_the_program = function.contains("::")
                && !super::is_library_frame(function)
                && !function.starts_with("test::");
            if built_with_the_program {
                evidence.functions += 1;
                evidence.with_files += u64::from(f.file.is_some());
            }
        }
        evidence
    }

    pub(crate) fn add(&mut self, other: LineEvidence) {
        self.functions += other.functions;
        self.with_files += other.with_files;
    }

    /// Whether the program was built without line tables: its functions resolved, never with a
    /// file.
    pub(crate) fn missing(&self) -> bool {
        self.functions > 0 && self.with_files == 0
    }
}

/// The frames of a stack of return addresses (innermost first), resolved, with the allocator's
/// own frames left out at the top, and what they say about the line tables (the allocator's
/// frames included: they are the program's build too).
pub(crate) fn frames(addresses: &[usize]) -> (Vec<Frame>, LineEvidence) {
    let mut out = Vec::with_capacity(addresses.len() + 4);
    let mut resolved = false;
    {
        let _gate = memledger::__private::fork_gate();
        let mut cache = CACHE.lock().unwrap_or_else(|p| p.into_inner());
        let cache = cache.get_or_insert_with(Cache::default);
        for &address in addresses {
            let frames = match cache.frames.get(&address) {
                Some(frames) => Arc::clone(frames),
                None => {
                    resolved = true;
                    let frames = resolve(address, cache);
                    cache.frames.insert(address, Arc::clone(&frames));
                    frames
                }
            };
            out.extend(frames.iter().cloned());
        }
        if resolved {
            // The debug information the resolver parsed (tens of MB for a large binary) is
            // dropped: what it gave is in the cache above, and a later profile reads it again
            // only for addresses not seen yet.
            backtrace::clear_symbol_cache();
        }
    }
    let evidence = LineEvidence::of(&out);
    // The capture's own frames (and the closure shims between them) come first, then the
    // ledger's and the global allocator's.
    let first_outside = out
        .iter()
        .position(|f| {
            !is_allocator_frame(&f.function) && !f.function.starts_with("core::ops::function::")
        })
        .unwrap_or(out.len());
    out.drain(..first_outside);
    (out, evidence)
}

/// The frames of the allocation path itself: the ledger, the global allocator's shims and
/// `alloc::alloc`.
fn is_allocator_frame(function: &str) -> bool {
    let f = function.trim_start_matches('<');
    f.starts_with("memledger::")
        || f.starts_with("__rust")
        || f.starts_with("__rg_")
        || f.starts_with("__rdl_")
        || f.starts_with("alloc::alloc::")
        || f.starts_with("std::alloc::")
        || f.starts_with("tikv_jemallocator::")
        || f.starts_with("_Unwind_")
        || f.starts_with("??")
}

fn resolve(address: usize, cache: &mut Cache) -> Arc<[Frame]> {
    let mut frames = Vec::new();
    backtrace::resolve(address as *mut core::ffi::c_void, |symbol| {
        let function = match symbol.name() {
            // `{:#}` leaves the hash out.
            Some(name) => cache.name(&format!("{name:#}")),
            None => cache.name("??"),
        };
        let file = symbol
            .filename()
            .map(|p| cache.name(&p.display().to_string()));
        frames.push(Frame {
            address: address as u64,
            function,
            file,
            line: symbol.lineno(),
        });
    });
    if frames.is_empty() {
        frames.push(Frame {
            address: address as u64,
            function: cache.name("??"),
            file: None,
            line: None,
        });
    }
    frames.into()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::{Frame, LineEvidence};

    fn frame(function: &str, file: Option<&str>) -> Frame {
        Frame {
            address: 0x1000,
            function: Arc::from(function),
            file: file.map(Arc::from),
            line: file.map(|_| 7),
        }
    }

    /// A stack as a release build without line tables resolves it: symbols, no file, but for
    /// the C library's own debug information.
    #[test]
    fn a_build_without_line_tables_is_told() {
        let stripped = [
            frame(
                "<memledger::ledger::Ledger<A> as core::alloc::global::GlobalAlloc>::alloc",
                None,
            ),
            frame("__rust_alloc", None),
            frame("alloc::raw_vec::finish_grow", None),
            frame("leaky::grow_cache", None),
            frame("test::__rust_begin_short_backtrace", None),
            frame("start_thread", Some("./nptl/pthread_create.c")),
        ];
        assert!(LineEvidence::of(&stripped).missing());

        let mut with_lines = stripped.clone();
        with_lines[3] = frame("leaky::grow_cache", Some("src/lib.rs"));
        assert!(!LineEvidence::of(&with_lines).missing());

        // The standard library's frames alone say nothing: its debug information is its own.
        let library_only = [
            frame("alloc::raw_vec::finish_grow", None),
            frame("std::rt::lang_start_internal", None),
        ];
        assert!(!LineEvidence::of(&library_only).missing());

        let mut all = LineEvidence::of(&stripped);
        all.add(LineEvidence::of(&with_lines));
        assert!(!all.missing(), "one file among the frames is enough");
    }
}
