//! Resolving return addresses to functions, files and lines, with a cache shared by every
//! profile of the process.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::Frame;

/// Resolved frames of each address seen so far (an address gives several frames where functions
/// were inlined into its caller, innermost first).
static CACHE: Mutex<Option<HashMap<usize, Arc<[Frame]>>>> = Mutex::new(None);

/// The frames of a stack of return addresses (innermost first), resolved, with the allocator's
/// own frames left out at the top.
pub(crate) fn frames(addresses: &[usize]) -> Vec<Frame> {
    let mut out = Vec::with_capacity(addresses.len() + 4);
    {
        let _gate = memledger::__private::fork_gate();
        let mut cache = CACHE.lock().unwrap_or_else(|p| p.into_inner());
        let cache = cache.get_or_insert_with(HashMap::new);
        for &address in addresses {
            let frames = cache
                .entry(address)
                .or_insert_with(|| resolve(address))
                .clone();
            out.extend(frames.iter().cloned());
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

fn resolve(address: usize) -> Arc<[Frame]> {
    let mut frames = Vec::new();
    backtrace::resolve(address as *mut core::ffi::c_void, |symbol| {
        let function = match symbol.name() {
            // `{:#}` leaves the hash out.
            Some(name) => format!("{name:#}"),
            None => "??".to_string(),
        };
        frames.push(Frame {
            address: address as u64,
            function,
            file: symbol.filename().map(|p| p.display().to_string()),
            line: symbol.lineno(),
        });
    });
    if frames.is_empty() {
        frames.push(Frame {
            address: address as u64,
            function: "??".to_string(),
            file: None,
            line: None,
        });
    }
    frames.into()
}
