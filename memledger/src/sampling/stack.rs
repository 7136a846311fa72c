//! Capturing a sampled allocation's call stack into a fixed buffer, without allocating.
//!
//! The walk is the platform unwinder's (`_Unwind_Backtrace`, from libgcc_s on Linux and
//! libSystem on Apple's systems), which reads the unwind tables every Rust binary carries. It
//! allocates nothing and takes no lock an allocation needs (glibc finds a return address's object
//! without one since 2.35, and before that takes only the loader's list lock, which no
//! allocation path holds). A frame-pointer walk would cost a few nanoseconds instead of about a
//! microsecond (`BENCHMARKS.md`), but Rust's standard library and most crates are built without
//! frame pointers, so it stops at the first frame that has none: the unwinder is the one that
//! gives whole stacks in an ordinary build.

/// Return addresses kept per sampled stack; deeper stacks are cut and marked truncated.
pub const MAX_DEPTH: usize = 32;

/// Frames of the capture itself and of the allocator's cold path left out of every stack: the
/// walk's own frame and the ledger's cold functions.
const SKIP: usize = 2;

/// A captured stack: return addresses, innermost first.
pub(crate) struct Captured {
    pub frames: [usize; MAX_DEPTH],
    pub depth: usize,
    pub truncated: bool,
}

/// Captures the calling thread's stack, innermost frame first, leaving out [`SKIP`] frames.
#[inline(never)]
pub(crate) fn capture() -> Captured {
    let mut out = Captured {
        frames: [0; MAX_DEPTH],
        depth: 0,
        truncated: false,
    };
    walk(&mut out);
    out
}

#[cfg(all(unix, not(miri)))]
fn walk(out: &mut Captured) {
    use core::ffi::{c_int, c_void};

    /// `_Unwind_Context`, opaque.
    #[repr(C)]
    struct UnwindContext {
        _opaque: [u8; 0],
    }

    /// `_URC_NO_REASON`: go on to the next frame.
    const CONTINUE: c_int = 0;
    /// Any other value stops the walk (`_URC_END_OF_STACK`).
    const STOP: c_int = 5;

    extern "C" {
        fn _Unwind_Backtrace(
            trace: extern "C" fn(*mut UnwindContext, *mut c_void) -> c_int,
            arg: *mut c_void,
        ) -> c_int;
        fn _Unwind_GetIP(context: *mut UnwindContext) -> usize;
    }

    struct Walk<'a> {
        out: &'a mut Captured,
        skip: usize,
    }

    extern "C" fn frame(context: *mut UnwindContext, arg: *mut c_void) -> c_int {
        // SAFETY:
        // - `arg` is the `Walk` that `walk` passed to `_Unwind_Backtrace` below, alive and not
        //   otherwise borrowed for the whole walk, which calls this on the same thread.
        let walk = unsafe { &mut *arg.cast::<Walk<'_>>() };
        // SAFETY:
        // - `context` is the unwinder's context for the current frame, valid during this call.
        let ip = unsafe { _Unwind_GetIP(context) };
        if ip == 0 {
            return STOP;
        }
        if walk.skip > 0 {
            walk.skip -= 1;
            return CONTINUE;
        }
        if walk.out.depth == MAX_DEPTH {
            walk.out.truncated = true;
            return STOP;
        }
        walk.out.frames[walk.out.depth] = ip;
        walk.out.depth += 1;
        CONTINUE
    }

    let mut state = Walk { out, skip: SKIP };
    // SAFETY:
    // - `frame` has the signature the unwinder calls back with, never unwinds (it contains no
    //   panicking operation: the index is checked against `MAX_DEPTH` first), and `state` lives
    //   across the call.
    unsafe {
        _Unwind_Backtrace(frame, (&mut state as *mut Walk<'_>).cast::<c_void>());
    }
}

/// No unwinder to call: samples are still taken and weighted, with an empty stack.
#[cfg(not(all(unix, not(miri))))]
fn walk(_out: &mut Captured) {}
