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

/// The frames of a stack of return addresses (innermost first), resolved, with the allocator's
/// own frames left out at the top.
pub(crate) fn frames(addresses: &[usize]) -> Vec<Frame> {
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
    // The capture's own frames (and the closure shims between them) come first, then the
    // ledger's and the global allocator's.
    let first_outside = out
        .iter()
        .position(|f| {
            !is_allocator_frame(&f.function) && !f.function.starts_with("core::ops::function::")
        })
        .unwrap_or(out.len());
    out.drain(..first_outside);
    out
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
