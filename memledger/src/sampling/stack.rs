//! Capturing a sampled allocation's call stack into a fixed buffer, without allocating.
//!
//! Three walks:
//!
//! - **The unwinder** (`_Unwind_Backtrace`, from libgcc_s on Linux and libSystem on Apple's
//!   systems) reads the unwind tables every Rust binary carries, so it gives whole stacks in any
//!   build. It allocates nothing and takes no lock an allocation needs (glibc finds a return
//!   address's object without one since 2.35, and before that takes only the loader's list lock,
//!   which no allocation path holds). It interprets each frame's unwind rules on every walk:
//!   about 2,000 instructions per frame (`BENCHMARKS.md`).
//! - **Frame sizes learnt from it** (Linux on x86-64 with glibc, the default there): at a call
//!   site, a function's frame is a fixed number of bytes from the stack pointer to the return
//!   address, which the unwinder's walks tell (the difference of two frames' canonical frame
//!   addresses). A table keyed by return address keeps that size, so the next walk through known
//!   call sites is two loads per frame. A walk that meets an unknown return address goes to the
//!   unwinder, which learns it; one capture in 64 goes to the unwinder anyway, and a return
//!   address seen with two sizes (a frame realigned or sized at run time) is never trusted again:
//!   the learnt walk stops there and marks the stack cut.
//! - **Frame pointers**: a few instructions per frame, right only where every frame keeps its
//!   frame pointer. Rust's standard library is built with them; a program's own crates only with
//!   `-C force-frame-pointers=yes`, where the build script makes it the default.
//!
//! The last two read nothing outside the calling thread's live stack: between its stack pointer
//! and the top of its stack, with the thread's bounds from glibc (`pthread_getattr_np`, asked once
//! per thread), and only when the stack pointer lies within them. So a wrong frame size or a frame
//! without a frame pointer can only cut or garble a stack, never fault; on an alternate signal
//! stack, a coroutine's or a segmented stack, or where glibc does not tell, they leave the walk to
//! the unwinder. A frame interrupted by a signal is never walked by size.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Return addresses kept per sampled stack; deeper stacks are cut and marked truncated.
pub const MAX_DEPTH: usize = 32;

/// A captured stack: return addresses, innermost first.
pub(crate) struct Captured {
    pub frames: [usize; MAX_DEPTH],
    pub depth: usize,
    pub truncated: bool,
}

impl Captured {
    fn new() -> Captured {
        Captured {
            frames: [0; MAX_DEPTH],
            depth: 0,
            truncated: false,
        }
    }

    /// Adds a frame; `false` once the stack is full (it is then marked truncated).
    #[cfg_attr(not(all(unix, not(miri))), allow(dead_code))]
    fn push(&mut self, ip: usize) -> bool {
        if self.depth == MAX_DEPTH {
            self.truncated = true;
            return false;
        }
        self.frames[self.depth] = ip;
        self.depth += 1;
        true
    }
}

/// How a sampled allocation's stack is captured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StackWalk {
    /// The platform's unwinder, with the frame sizes it finds kept for the next walks (on Linux
    /// x86-64 with glibc; elsewhere the unwinder alone): whole stacks in any build.
    Unwinder,
    /// The frame-pointer chain: a few instructions a frame, whole stacks only in a build with
    /// `-C force-frame-pointers=yes` (the standard library has them); elsewhere stacks are cut
    /// short or garbled, never unsafe. Linux on x86-64 and AArch64 with glibc; elsewhere the
    /// unwinder is used.
    FramePointers,
}

/// The walk in use: `true` for frame pointers.
static FRAME_POINTERS: AtomicBool = AtomicBool::new(cfg!(memledger_frame_pointers));

/// Sets how sampled stacks are captured from now on (see [`StackWalk`]; the default is
/// [`StackWalk::FramePointers`] in a build with `-C force-frame-pointers=yes`, else
/// [`StackWalk::Unwinder`]).
pub fn set_stack_walk(walk: StackWalk) {
    FRAME_POINTERS.store(walk == StackWalk::FramePointers, Ordering::Relaxed);
}

/// How sampled stacks are captured.
pub fn stack_walk() -> StackWalk {
    if FRAME_POINTERS.load(Ordering::Relaxed) {
        StackWalk::FramePointers
    } else {
        StackWalk::Unwinder
    }
}

/// Stacks captured by each walk: the unwinder, the learnt frame sizes, frame pointers.
static WALKS: [AtomicU64; 3] = [const { AtomicU64::new(0) }; 3];

/// Stacks captured so far by (the unwinder, learnt frame sizes, frame pointers).
pub(crate) fn walks() -> (u64, u64, u64) {
    let n = |i: usize| WALKS[i].load(Ordering::Relaxed);
    (n(0), n(1), n(2))
}

/// Captures the calling thread's stack, innermost frame first: the return addresses from
/// `capture`'s own on.
#[inline(never)]
pub(crate) fn capture() -> Captured {
    let sp = direct::pointer();
    let mut out = Captured::new();
    // Relaxed: statistics, counted only on sampled allocations.
    if FRAME_POINTERS.load(Ordering::Relaxed) {
        if direct::frame_pointer_walk(sp, &mut out) {
            WALKS[2].fetch_add(1, Ordering::Relaxed);
            return out;
        }
    } else if direct::learnt_walk(sp, &mut out) {
        WALKS[1].fetch_add(1, Ordering::Relaxed);
        return out;
    }
    let mut out = Captured::new();
    unwind(sp, &mut out);
    WALKS[0].fetch_add(1, Ordering::Relaxed);
    out
}

/// The unwinder's walk from `capture` (whose stack pointer is `sp`): the frames above it go to
/// `out`, and the frame sizes it finds are kept for [`direct::learnt_walk`].
#[cfg(all(unix, not(miri)))]
#[inline(never)]
fn unwind(sp: usize, out: &mut Captured) {
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
        fn _Unwind_GetIPInfo(context: *mut UnwindContext, ip_before_insn: *mut c_int) -> usize;
        fn _Unwind_GetCFA(context: *mut UnwindContext) -> usize;
    }

    struct Walk<'a> {
        out: &'a mut Captured,
        /// `capture`'s stack pointer.
        sp: usize,
        /// Past the unwinder's and this function's frames.
        above: bool,
        /// The last frame's return address and canonical frame address.
        previous: Option<(usize, usize)>,
    }

    extern "C" fn frame(context: *mut UnwindContext, arg: *mut c_void) -> c_int {
        // SAFETY:
        // - `arg` is the `Walk` that `unwind` passed to `_Unwind_Backtrace` below, alive and not
        //   otherwise borrowed for the whole walk, which calls this on the same thread.
        let walk = unsafe { &mut *arg.cast::<Walk<'_>>() };
        // Each frame as the unwinder gives it: its return address (into its caller) and its
        // canonical frame address (its caller's stack pointer at the call).
        // `signal` is set for a frame interrupted by a signal.
        let mut signal: c_int = 0;
        // SAFETY:
        // - `context` is the unwinder's context for the current frame, valid during this call;
        //   `signal` is a writable `int`.
        let (ip, cfa) = unsafe {
            (
                _Unwind_GetIPInfo(context, &mut signal),
                _Unwind_GetCFA(context),
            )
        };
        if ip == 0 {
            return STOP;
        }
        if !walk.above {
            // The unwinder's own frames and this function's lie below `capture`'s stack
            // pointer; this function's canonical frame address is that stack pointer, so the
            // next frame is `capture`'s.
            walk.above = cfa == walk.sp;
            if !walk.above && cfa > walk.sp {
                // `capture`'s stack pointer moved (no frame is learnt here, and the learnt walk
                // never starts): the frames from here on are still captured.
                walk.above = true;
                walk.previous = Some((0, 0));
            } else {
                return CONTINUE;
            }
        }
        match walk.previous {
            // `capture`'s own frame: its size from its stack pointer.
            None => direct::learn_capture_frame(cfa.wrapping_sub(walk.sp)),
            // The size of the frame the last return address leads into.
            // A frame interrupted by a signal has no return address below its canonical frame
            // address: the frame that leads into it is never walked by size.
            Some((previous_ip, previous_cfa)) if previous_ip != 0 => direct::learn(
                previous_ip,
                cfa.wrapping_sub(previous_cfa),
                false,
                signal != 0,
            ),
            Some(_) => {}
        }
        walk.previous = Some((ip, cfa));
        if walk.out.push(ip) {
            CONTINUE
        } else {
            walk.previous = None;
            STOP
        }
    }

    let mut state = Walk {
        out,
        sp,
        above: false,
        previous: None,
    };
    // SAFETY:
    // - `frame` has the signature the unwinder calls back with, never unwinds (it contains no
    //   panicking operation: `push` checks its index), and `state` lives across the call.
    unsafe {
        _Unwind_Backtrace(frame, (&mut state as *mut Walk<'_>).cast::<c_void>());
    }
    // The last return address leads into the outermost frame: a walk that reaches it stops.
    if let Some((ip, _)) = state.previous.filter(|(ip, _)| *ip != 0) {
        direct::learn(ip, 0, true, false);
    }
}

/// No unwinder to call: samples are still taken and weighted, with an empty stack.
#[cfg(not(all(unix, not(miri))))]
fn unwind(_sp: usize, _out: &mut Captured) {}

/// The walks that read the stack directly, where the top of a thread's stack is known.
#[cfg(all(
    target_os = "linux",
    target_env = "gnu",
    any(target_arch = "x86_64", target_arch = "aarch64"),
    not(miri)
))]
mod direct {
    use core::cell::Cell;
    use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

    use super::Captured;

    std::thread_local! {
        /// The calling thread's stack, `[low, high)`, as glibc reports it; `(0, 0)` until the
        /// thread's first sample asks. A `const` thread-local without a destructor, readable to
        /// the end of the thread.
        static BOUNDS: Cell<(usize, usize)> = const { Cell::new((0, 0)) };
    }

    /// The calling thread's stack bounds from glibc (`pthread_getattr_np`, which reads the main
    /// thread's from `/proc/self/maps` and allocates with the C library's `malloc`, never
    /// through the Rust global allocator); `None` if glibc does not tell.
    fn ask_bounds() -> Option<(usize, usize)> {
        let mut attr = core::mem::MaybeUninit::<libc::pthread_attr_t>::uninit();
        // SAFETY:
        // - `attr` is written by `pthread_getattr_np` before it is read, and destroyed once.
        unsafe {
            if libc::pthread_getattr_np(libc::pthread_self(), attr.as_mut_ptr()) != 0 {
                return None;
            }
            let mut base = core::ptr::null_mut();
            let mut size = 0;
            let got = libc::pthread_attr_getstack(attr.as_ptr(), &mut base, &mut size);
            libc::pthread_attr_destroy(attr.as_mut_ptr());
            (got == 0 && size != 0).then(|| (base as usize, (base as usize).wrapping_add(size)))
        }
    }

    /// The top of the calling thread's stack if `sp` lies on it; `None` otherwise (an alternate
    /// signal stack, a stack of a coroutine or a segmented stack, bounds glibc does not know), and
    /// the caller leaves the walk to the unwinder.
    fn top(sp: usize) -> Option<usize> {
        let (mut low, mut high) = BOUNDS.try_with(Cell::get).ok()?;
        if high == 0 {
            (low, high) = ask_bounds()?;
            let _ = BOUNDS.try_with(|b| b.set((low, high)));
        }
        (low <= sp && sp < high).then_some(high)
    }

    /// The caller's stack pointer.
    #[inline(always)]
    pub(super) fn pointer() -> usize {
        let sp: usize;
        // SAFETY:
        // - reads a register into a local; touches no memory and no flags.
        #[cfg(target_arch = "x86_64")]
        unsafe {
            core::arch::asm!("mov {}, rsp", out(reg) sp, options(nomem, nostack, preserves_flags))
        };
        // SAFETY:
        // - as above, for AArch64's stack pointer.
        #[cfg(target_arch = "aarch64")]
        unsafe {
            core::arch::asm!("mov {}, sp", out(reg) sp, options(nomem, nostack, preserves_flags))
        };
        sp
    }

    /// The caller's frame pointer.
    #[inline(always)]
    fn frame_pointer() -> usize {
        let fp: usize;
        // SAFETY:
        // - reads a register into a local; touches no memory and no flags.
        #[cfg(target_arch = "x86_64")]
        unsafe {
            core::arch::asm!("mov {}, rbp", out(reg) fp, options(nomem, nostack, preserves_flags))
        };
        // SAFETY:
        // - as above, for AArch64's frame pointer, x29.
        #[cfg(target_arch = "aarch64")]
        unsafe {
            core::arch::asm!("mov {}, x29", out(reg) fp, options(nomem, nostack, preserves_flags))
        };
        fp
    }

    /// Reads the word at `at` if it lies within the live stack `[sp, top)`.
    #[inline(always)]
    fn read(at: usize, sp: usize, top: usize) -> Option<usize> {
        if at < sp || at % core::mem::size_of::<usize>() != 0 || at > top.wrapping_sub(8) {
            return None;
        }
        // SAFETY:
        // - `at` lies within this thread's live stack, between its stack pointer and the top of
        //   its stack, which is mapped and readable, and is aligned. The value may be anything:
        //   it is only compared and kept as a number.
        Some(unsafe { (at as *const usize).read_volatile() })
    }

    /// Walks the frame-pointer chain from the caller of `capture` (whose stack pointer is `sp`)
    /// into `out`; `false` (nothing captured) where the top of the stack is unknown.
    #[inline(always)]
    pub(super) fn frame_pointer_walk(sp: usize, out: &mut Captured) -> bool {
        let Some(top) = top(sp) else {
            return false;
        };
        // `capture`'s own record, then its callers': two words each, the caller's frame pointer
        // then the return address, on both targets.
        let mut fp = frame_pointer();
        while let (Some(next), Some(ip)) = (read(fp, sp, top), read(fp.wrapping_add(8), sp, top)) {
            if ip == 0 || !out.push(ip) || next <= fp {
                break;
            }
            fp = next;
        }
        // No frame at all: not a frame pointer there; the unwinder walks instead.
        out.depth > 0
    }

    /// Slots of the table of frame sizes: 32 KiB.
    const SLOTS: usize = 4096;
    /// Per slot: `return address << 16 | size`, or 0.
    static SIZES: [AtomicU64; SLOTS] = [const { AtomicU64::new(0) }; SLOTS];
    /// The size of a frame seen with two sizes: never trusted.
    const VARIES: u64 = 0xffff;
    /// The size of the outermost frame: a walk ends there.
    const OUTERMOST: u64 = 0xfffe;
    /// The size of `capture`'s own frame, from its stack pointer to its canonical frame address;
    /// 0 until the unwinder has walked once.
    static CAPTURE_FRAME: AtomicUsize = AtomicUsize::new(0);
    /// Captures so far: one in [`CHECK_EVERY`] goes to the unwinder.
    static CAPTURES: AtomicU64 = AtomicU64::new(0);
    const CHECK_EVERY: u64 = 64;

    /// Slots an address may take: four in a row from its hash, so that a few return addresses
    /// with the same hash do not push each other out.
    const WAYS: usize = 4;

    /// The first of `ip`'s slots.
    fn first_slot(ip: usize) -> usize {
        // splitmix64's finaliser: nearby addresses scatter.
        let mut z = ip as u64;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) as usize % SLOTS
    }

    /// The slot holding `ip`'s entry, if any.
    fn find(ip: usize) -> Option<u64> {
        let first = first_slot(ip);
        (0..WAYS)
            .map(|i| SIZES[(first + i) % SLOTS].load(Ordering::Relaxed))
            .find(|entry| entry >> 16 == ip as u64)
    }

    /// Keeps the size of the frame whose return address is `ip` (`outermost` for the last
    /// frame of a walk; `varies` for a frame never to be trusted, such as a signal frame's).
    pub(super) fn learn(ip: usize, size: usize, outermost: bool, varies: bool) {
        if ip >> 48 != 0 {
            return;
        }
        let size = if varies {
            VARIES
        } else if outermost {
            OUTERMOST
        } else if size == 0 || size >= OUTERMOST as usize || size % 8 != 0 {
            VARIES
        } else {
            size as u64
        };
        let first = first_slot(ip);
        let slots = (0..WAYS).map(|i| &SIZES[(first + i) % SLOTS]);
        // Relaxed: each slot is one word, read and written whole. Its own slot if it has one,
        // else an empty one, else one that does not say "varies" (which is never pushed out).
        let Some(slot) = slots
            .clone()
            .find(|s| s.load(Ordering::Relaxed) >> 16 == ip as u64)
            .or_else(|| slots.clone().find(|s| s.load(Ordering::Relaxed) == 0))
            .or_else(|| {
                slots
                    .clone()
                    .find(|s| s.load(Ordering::Relaxed) & 0xffff != VARIES)
            })
        else {
            return;
        };
        let old = slot.load(Ordering::Relaxed);
        let new = if old >> 16 == ip as u64 && (old & 0xffff == VARIES || old & 0xffff != size) {
            (ip as u64) << 16 | VARIES
        } else {
            (ip as u64) << 16 | size
        };
        // A lost exchange is a concurrent learning of the same slot: the next walk learns again,
        // and "varies" stays once it is there.
        if new != old {
            let _ = slot.compare_exchange(old, new, Ordering::Relaxed, Ordering::Relaxed);
        }
    }

    pub(super) fn learn_capture_frame(size: usize) {
        CAPTURE_FRAME.store(size, Ordering::Relaxed);
    }

    /// Walks the stack from the caller of `capture` (whose stack pointer is `sp`) with the frame
    /// sizes learnt so far; `false` where it cannot (an unknown frame, a frame of varying size,
    /// the top of the stack unknown, or a capture that checks the table), and the unwinder
    /// walks instead.
    #[inline(always)]
    pub(super) fn learnt_walk(sp: usize, out: &mut Captured) -> bool {
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = (sp, out);
            false
        }
        #[cfg(target_arch = "x86_64")]
        {
            // Relaxed: a count, to pick the captures that check.
            if CAPTURES.fetch_add(1, Ordering::Relaxed) % CHECK_EVERY == 0 {
                return false;
            }
            let frame = CAPTURE_FRAME.load(Ordering::Relaxed);
            let Some(top) = top(sp).filter(|_| frame != 0) else {
                return false;
            };
            // On x86-64 a frame's canonical frame address is its caller's stack pointer, and the
            // return address lies just below it.
            let mut cfa = sp.wrapping_add(frame);
            loop {
                let Some(ip) = read(cfa.wrapping_sub(8), sp, top) else {
                    return false;
                };
                if ip == 0 {
                    return true;
                }
                if !out.push(ip) {
                    return true;
                }
                let Some(entry) = find(ip).filter(|_| ip >> 48 == 0) else {
                    return false;
                };
                let size = entry & 0xffff;
                if size == VARIES {
                    // A frame realigned or sized at run time: the stack is cut above it rather
                    // than walked by the unwinder every time.
                    out.truncated = true;
                    return true;
                }
                if size == OUTERMOST {
                    return true;
                }
                cfa = cfa.wrapping_add(size as usize);
            }
        }
    }
}

/// No direct walk here: the unwinder alone.
#[cfg(not(all(
    target_os = "linux",
    target_env = "gnu",
    any(target_arch = "x86_64", target_arch = "aarch64"),
    not(miri)
)))]
mod direct {
    use super::Captured;

    #[inline(always)]
    pub(super) fn pointer() -> usize {
        0
    }

    pub(super) fn frame_pointer_walk(_sp: usize, _out: &mut Captured) -> bool {
        false
    }

    pub(super) fn learnt_walk(_sp: usize, _out: &mut Captured) -> bool {
        false
    }

    #[allow(dead_code)]
    pub(super) fn learn(_ip: usize, _size: usize, _outermost: bool, _varies: bool) {}

    #[allow(dead_code)]
    pub(super) fn learn_capture_frame(_size: usize) {}
}

#[cfg(all(test, target_os = "linux", target_env = "gnu", target_arch = "x86_64"))]
mod tests {
    use super::*;

    #[inline(never)]
    fn nested(depth: usize) -> Vec<Vec<usize>> {
        if depth > 0 {
            return std::hint::black_box(nested(depth - 1));
        }
        (0..200)
            .map(|_| {
                let c = capture();
                c.frames[..c.depth].to_vec()
            })
            .collect()
    }

    /// The learnt walk gives the very stack the unwinder gives, and is the one used once the
    /// unwinder has walked the call sites.
    #[test]
    fn learnt_walks_give_the_unwinders_stacks() {
        set_stack_walk(StackWalk::Unwinder);
        let (unwound, learnt, _) = walks();
        let stacks = nested(5);
        let (unwound_after, learnt_after, _) = walks();
        assert!(stacks[0].len() >= 8, "{:x?}", stacks[0]);
        for s in &stacks[1..] {
            assert_eq!(s, &stacks[0]);
        }
        // One in 64 checks against the unwinder; the others are learnt.
        assert!(learnt_after - learnt > 150, "{learnt} -> {learnt_after}");
        assert!(unwound_after - unwound >= 3);
    }
}
