//! What jemalloc's own ways of telling owners apart cost on one thread, before any bookkeeping:
//! the measurements that an arena-per-scope design has to start from.
//!
//! Each variant allocates and frees through jemalloc's non-standard API, with a different choice
//! of arena and thread cache:
//!
//! - `malloc`: `Jemalloc` as a `GlobalAlloc` (plain `malloc` / `sdallocx`): the fast path;
//! - `arena_auto_tcache`: `mallocx(MALLOCX_ARENA(a))` with the thread's automatic cache. Fast, but
//!   the cache hands out blocks of any arena, so it cannot keep owners apart;
//! - `arena_explicit_tcache`: `MALLOCX_ARENA(a) | MALLOCX_TCACHE(tc)`, a cache created for this
//!   (thread, arena) pair, for allocation and free: what keeps owners apart with caching;
//! - `arena_no_tcache`: `MALLOCX_ARENA(a) | MALLOCX_TCACHE_NONE`: owners apart, no cache.
//!
//! Same two shapes as `alloc_pairs`: `pair/<variant>/<size>` and `churn/<variant>`.
//!
//! For instruction counts, `MEMLEDGER_ARENA_LOOP=<variant>:<steps>` (a variant above, or
//! `ledger` for `Ledger<TrailerOnly<Jemalloc>>` (every block with a trailer), `tag_only` for its
//! trailer without the books, `arenas` / `arenas_scoped` for the default `Ledger::new(Jemalloc)`
//! (scope arenas), or `pair<size>_<malloc|ledger|exact|arenas>` for one allocation and free at
//! once, in a scope; `exact` puts the scope in exact mode) runs only a churn of that many steps
//! and exits: run it under `valgrind --tool=callgrind` at two lengths and divide the difference by
//! the difference of steps.

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;
use std::hint::black_box;

use criterion::{criterion_group, BenchmarkId, Criterion};
use tikv_jemalloc_sys as sys;
use tikv_jemallocator::Jemalloc;

#[path = "support/mod.rs"]
mod support;
use support::{churn_layouts, Churn, JEMALLOC, LEDGER_JEMALLOC, TAG_ONLY_JEMALLOC};

#[global_allocator]
static GLOBAL: Jemalloc = Jemalloc;

/// Reads an `unsigned` through `mallctl` (`arenas.create`, `tcache.create`).
fn mallctl_create(name: &str) -> usize {
    let name = std::ffi::CString::new(name).unwrap();
    let mut value: u32 = 0;
    let mut len = std::mem::size_of::<u32>();
    // SAFETY:
    // - `name` is NUL-terminated; `value` and `len` describe a writable `unsigned`, which is
    //   what both keys return.
    let rc = unsafe {
        sys::mallctl(
            name.as_ptr(),
            (&mut value as *mut u32).cast::<c_void>(),
            &mut len,
            std::ptr::null_mut(),
            0,
        )
    };
    assert_eq!(rc, 0, "mallctl {name:?} failed: {rc}");
    value as usize
}

/// jemalloc through `mallocx` / `sdallocx` with fixed flags.
struct Flags {
    alloc: i32,
    free: i32,
}

// SAFETY:
// - blocks come from jemalloc for the caller's size and alignment (`MALLOCX_ALIGN` is added for
//   alignments above 16, as `tikv-jemallocator` does), and go back with the same size and
//   alignment to `sdallocx`, which accepts any arena's block with any tcache flag.
unsafe impl GlobalAlloc for Flags {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let align = if layout.align() > 16 {
            sys::MALLOCX_ALIGN(layout.align())
        } else {
            0
        };
        // SAFETY:
        // - a non-zero size (the caller's layout), valid flags.
        unsafe { sys::mallocx(layout.size(), self.alloc | align).cast() }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let align = if layout.align() > 16 {
            sys::MALLOCX_ALIGN(layout.align())
        } else {
            0
        };
        // SAFETY:
        // - `ptr` came from `mallocx` with this size and alignment.
        unsafe { sys::sdallocx(ptr.cast(), layout.size(), self.free | align) };
    }
}

fn variants() -> Vec<(&'static str, Flags)> {
    let arena = mallctl_create("arenas.create");
    let tcache = mallctl_create("tcache.create");
    let a = sys::MALLOCX_ARENA(arena);
    vec![
        ("arena_auto_tcache", Flags { alloc: a, free: 0 }),
        (
            "arena_explicit_tcache",
            Flags {
                alloc: a | sys::MALLOCX_TCACHE(tcache),
                free: sys::MALLOCX_TCACHE(tcache),
            },
        ),
        (
            "arena_no_tcache",
            Flags {
                alloc: a | sys::MALLOCX_TCACHE_NONE,
                free: sys::MALLOCX_TCACHE_NONE,
            },
        ),
    ]
}

/// One allocation and its free.
fn pair<A: GlobalAlloc>(allocator: &A, layout: Layout) {
    let ptr = support::alloc_via(allocator, layout);
    // SAFETY:
    // - `ptr` is a live block of `allocator` for `layout`.
    unsafe { support::dealloc_via(allocator, black_box(ptr), layout) };
}

fn pairs(c: &mut Criterion) {
    let variants = variants();
    let mut group = c.benchmark_group("pair");
    for size in [16usize, 64, 256, 4096] {
        let layout = Layout::from_size_align(size, 8).unwrap();
        group.bench_function(BenchmarkId::new("malloc", size), |b| {
            b.iter(|| pair(&JEMALLOC, layout))
        });
        for (name, flags) in &variants {
            group.bench_function(BenchmarkId::new(*name, size), |b| {
                b.iter(|| pair(flags, layout))
            });
        }
    }
    group.finish();
}

fn churn(c: &mut Criterion) {
    let variants = variants();
    let layouts = churn_layouts();
    let mut group = c.benchmark_group("churn");
    let mut jemalloc = Churn::new(&JEMALLOC, &layouts, 0);
    group.bench_function("malloc", |b| b.iter(|| jemalloc.step()));
    drop(jemalloc);
    for (name, flags) in &variants {
        let mut churn = Churn::new(flags, &layouts, 0);
        group.bench_function(*name, |b| b.iter(|| churn.step()));
        drop(black_box(churn));
    }
    group.finish();
}

/// The churn alone, for callgrind: `variant:steps`.
fn churn_loop(spec: &str) {
    let (name, steps) = spec
        .split_once(':')
        .expect("MEMLEDGER_ARENA_LOOP=<variant>:<steps>");
    let steps: usize = steps.parse().expect("a number of steps");
    let layouts = churn_layouts();
    let variants = variants();
    match variants.iter().find(|(n, _)| *n == name) {
        Some((_, flags)) => {
            let mut churn = Churn::new(flags, &layouts, 0);
            (0..steps).for_each(|_| churn.step());
        }
        None if name == "malloc" => {
            let mut churn = Churn::new(&JEMALLOC, &layouts, 0);
            (0..steps).for_each(|_| churn.step());
        }
        None if name == "ledger" => {
            let mut churn = Churn::new(&LEDGER_JEMALLOC, &layouts, 0);
            (0..steps).for_each(|_| churn.step());
        }
        #[cfg(all(feature = "arenas", target_os = "linux", target_pointer_width = "64"))]
        None if name == "arenas" || name == "arenas_scoped" => {
            let _guard = (name == "arenas_scoped").then(|| memledger::scope!("bench"));
            let mut churn = Churn::new(&support::LEDGER_ARENAS, &layouts, 0);
            (0..steps).for_each(|_| churn.step());
        }
        None if name.starts_with("pair") => {
            // `pair<size>_<malloc|ledger|arenas>`: allocate and free one block at once.
            let (size, variant) = name["pair".len()..]
                .split_once('_')
                .expect("pair<size>_<malloc|ledger|arenas>");
            let size: usize = size.parse().expect("a size in bytes");
            let layout = Layout::from_size_align(size, 8).unwrap();
            let _guard = memledger::scope!("bench");
            // The variant is chosen once, outside the loop, so that every variant's loop is the
            // same code around its own calls.
            match variant {
                "malloc" => pair_loop(
                    layout,
                    steps,
                    |l| support::alloc_via(&JEMALLOC, l),
                    |p, l| {
                        // SAFETY:
                        // - `p` was just allocated by the same allocator with `l`.
                        unsafe { support::dealloc_via(&JEMALLOC, p, l) }
                    },
                ),
                "ledger" | "exact" => {
                    // `exact`: the scope in exact mode, every booking on the cold path.
                    memledger::ScopeHandle::current().set_exact(variant == "exact");
                    pair_loop(
                        layout,
                        steps,
                        |l| support::alloc_via(&LEDGER_JEMALLOC, l),
                        |p, l| {
                            // SAFETY:
                            // - `p` was just allocated by the same allocator with `l`.
                            unsafe { support::dealloc_via(&LEDGER_JEMALLOC, p, l) }
                        },
                    )
                }
                _ => pair_loop(layout, steps, pair_arenas, |p, l| {
                    // SAFETY:
                    // - `p` was just allocated by `pair_arenas` with `l`.
                    unsafe { pair_arenas_free(p, l) }
                }),
            }
        }
        None if name == "tag_only" => {
            let mut churn = Churn::new(&TAG_ONLY_JEMALLOC, &layouts, 0);
            (0..steps).for_each(|_| churn.step());
        }
        None => panic!("unknown variant {name}"),
    }
}

/// Allocates and frees one block of `layout` at once, `steps` times.
fn pair_loop(
    layout: Layout,
    steps: usize,
    alloc: impl Fn(Layout) -> *mut u8,
    free: impl Fn(*mut u8, Layout),
) {
    for _ in 0..steps {
        let ptr = black_box(alloc(layout));
        free(ptr, layout);
    }
}

/// The default ledger's allocation, or jemalloc's where the feature is off.
fn pair_arenas(layout: Layout) -> *mut u8 {
    #[cfg(all(feature = "arenas", target_os = "linux", target_pointer_width = "64"))]
    return support::alloc_via(&support::LEDGER_ARENAS, layout);
    #[cfg(not(all(feature = "arenas", target_os = "linux", target_pointer_width = "64")))]
    support::alloc_via(&JEMALLOC, layout)
}

/// Frees a block of [`pair_arenas`].
///
/// # Safety
///
/// - `ptr` came from `pair_arenas` with `layout`.
unsafe fn pair_arenas_free(ptr: *mut u8, layout: Layout) {
    #[cfg(all(feature = "arenas", target_os = "linux", target_pointer_width = "64"))]
    // SAFETY:
    // - the caller's guarantee.
    return unsafe { support::dealloc_via(&support::LEDGER_ARENAS, ptr, layout) };
    #[cfg(not(all(feature = "arenas", target_os = "linux", target_pointer_width = "64")))]
    // SAFETY:
    // - the caller's guarantee.
    unsafe {
        support::dealloc_via(&JEMALLOC, ptr, layout)
    }
}

criterion_group! {
    name = benches;
    config = support::config(30);
    targets = pairs, churn
}
fn main() {
    // The samples a run takes are the same in every run, as before processes drew their seeds
    // from the system's entropy: instruction counts of one binary stay comparable.
    memledger::sampling::set_seed(0);
    if let Ok(spec) = std::env::var("MEMLEDGER_ARENA_LOOP") {
        return churn_loop(&spec);
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
