//! What the ledger costs in memory on a realistic workload: not a timing benchmark.
//!
//! The workload is an inverted index: 200 000 distinct symbol names, a
//! `HashMap<String, Vec<u32>>` of 2 000 000 postings whose vectors grow by doubling, and 500 000
//! small boxes, all kept alive. It runs once per allocator, each in a child process of this
//! binary: bare jemalloc (`bare`), the ledger with a trailer on every block
//! (`Ledger<TrailerOnly<Jemalloc>>`, `ledger`), the default `Ledger::new(Jemalloc)` (`arenas`,
//! where the `arenas` feature is on, on 64-bit Linux), the same with
//! `with_arena_decay(0)` (`decay0`) and `slack` (a placement, below). Each child
//! reports jemalloc's own statistics; the parent prints them side by side.
//!
//! The trailer ledger asks jemalloc for 2 bytes more than each block's size (its trailer). Rust's
//! collections grow by doubling, so many requests sit exactly on a jemalloc size class and those
//! 2 bytes push them into the next class: the overhead shows in `allocated`, not only in the
//! bytes of the trailers. `slack` asks for those 2 bytes only where the class has no room for
//! them, and books nothing: it shows where that overhead comes from. The default ledger keeps
//! blocks of up to 16 KiB, and larger ones that fill their class, in an arena of their scope's own
//! instead, with no trailer.
//!
//! A second workload, `handoff`, is a producer and its consumers: one thread builds documents
//! (strings, doubling `Vec`s, small boxes) in one scope and hands them to three threads that free
//! them after building scratch tables of their own (outside any scope), for longer than
//! jemalloc's dirty-page decay time (10 s), keeping every tenth document.
//! What it measures is memory given back after a burst: freed blocks of one scope's thread
//! returned by other threads.
//!
//! A third workload, `mix`, is string-heavy: 300 000 `String`s grown word by word to 20 to 200
//! bytes, 50 000 `Vec<u64>` pushed to 1 to 1 000 elements, and 500 000 `Box<[u64; 2]>`, all kept
//! alive: doubling capacities and 16-byte boxes, which all sit on a size class.
//!
//! Each child also reads its RSS every 100 ms while the workload runs: `rss_mean` and `rss_max`
//! are the mean and the largest of those readings (`rss` is the reading at the end).
//!
//! `MEMLEDGER_OVERHEAD_IDLE_S=11` keeps each child running (allocating a little) for 11 s after
//! its workload before it measures: longer than jemalloc's decay time, as a service goes on after
//! a burst.
//!
//! Run with `cargo bench --bench memory_overhead` (all workloads), or
//! `cargo bench --bench memory_overhead -- index` / `-- handoff` / `-- mix` for one.

use std::alloc::{GlobalAlloc, Layout};
use std::collections::HashMap;
use std::ffi::CStr;
use std::hint::black_box;
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicU8, Ordering};

use memledger::Ledger;
use tikv_jemallocator::Jemalloc;

/// Names the allocator of a child process: `bare`, `ledger`, `arenas` or `slack`. Unset in the
/// parent.
const MODE_VAR: &str = "MEMLEDGER_OVERHEAD_MODE";
/// Names the workload of a child process: `index` (the default), `handoff` or `mix`.
const WORKLOAD_VAR: &str = "MEMLEDGER_OVERHEAD_WORKLOAD";
/// Seconds a child keeps running after the workload before it measures (default 0): its main
/// thread allocates and frees a little scratch every millisecond meanwhile, as a service that
/// goes on after a burst does, which lets a decay driven by allocations run.
const IDLE_VAR: &str = "MEMLEDGER_OVERHEAD_IDLE_S";
/// Set in a child: it also prints jemalloc's figures for every arena that holds pages, to stderr.
const ARENAS_VAR: &str = "MEMLEDGER_OVERHEAD_ARENAS";
const MODE_VAR_C: &CStr = c"MEMLEDGER_OVERHEAD_MODE";

const SYMBOLS: usize = 200_000;
const POSTINGS: usize = 2_000_000;
const BOXES: usize = 500_000;

const UNDECIDED: u8 = 0;
const BARE: u8 = 1;
const LEDGER: u8 = 2;
const SLACK: u8 = 3;
const ARENAS: u8 = 4;
const DECAY0: u8 = 5;

/// Bare jemalloc, a ledger over it or the slack placement, chosen once per process by
/// [`MODE_VAR`].
///
/// The choice has to be made before the first allocation and never change: blocks of the trailer
/// ledger carry a trailer that bare jemalloc's blocks lack, and the default ledger's live in its
/// own arenas, so a block allocated by one must be freed by the same one. The environment is read
/// with `getenv`, which allocates nothing, on the first call into the allocator.
struct Switch {
    mode: AtomicU8,
    ledger: Ledger<memledger::TrailerOnly<Jemalloc>>,
    slack: SlackTag,
    #[cfg(all(feature = "arenas", target_os = "linux", target_pointer_width = "64"))]
    arenas: Ledger<Jemalloc>,
    /// The default ledger with `with_arena_decay(0)`: scope arenas that give freed pages back at
    /// once.
    #[cfg(all(feature = "arenas", target_os = "linux", target_pointer_width = "64"))]
    decay0: Ledger<Jemalloc>,
}

/// Requests the sizes a tag placed in size-class slack would: `size` when jemalloc's class for it
/// leaves at least 2 bytes spare, `size + 2` otherwise. Books nothing and writes no tag: it shows
/// the memory such a placement would cost, not a working mechanism.
struct SlackTag;

impl SlackTag {
    fn outer(layout: Layout) -> Layout {
        // SAFETY:
        // - `nallocx` only computes a size; a non-zero size and no flags are valid.
        let class = unsafe { tikv_jemalloc_sys::nallocx(layout.size(), 0) };
        let size = if class >= layout.size() + 2 {
            layout.size()
        } else {
            layout.size() + 2
        };
        Layout::from_size_align(size, layout.align()).unwrap()
    }
}

// SAFETY:
// - blocks come from jemalloc for at least the caller's size at its alignment, and go back with
//   the same outer layout, a pure function of the caller's layout.
unsafe impl GlobalAlloc for SlackTag {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY:
        // - a non-zero size at a valid alignment.
        unsafe { Jemalloc.alloc(Self::outer(layout)) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY:
        // - `ptr` came from `alloc` with this outer layout.
        unsafe { Jemalloc.dealloc(ptr, Self::outer(layout)) }
    }
}

#[global_allocator]
static GLOBAL: Switch = Switch {
    mode: AtomicU8::new(UNDECIDED),
    ledger: Ledger::new(memledger::TrailerOnly(Jemalloc)),
    slack: SlackTag,
    #[cfg(all(feature = "arenas", target_os = "linux", target_pointer_width = "64"))]
    arenas: Ledger::new(Jemalloc),
    #[cfg(all(feature = "arenas", target_os = "linux", target_pointer_width = "64"))]
    decay0: Ledger::new(Jemalloc).with_arena_decay(0),
};

impl Switch {
    #[inline]
    fn mode(&self) -> u8 {
        // Relaxed: the mode is a pure function of the environment, which nothing in this process
        // changes; threads that race on the first call all compute and store the same value.
        match self.mode.load(Ordering::Relaxed) {
            UNDECIDED => self.decide(),
            mode => mode,
        }
    }

    #[cold]
    #[inline(never)]
    fn decide(&self) -> u8 {
        // SAFETY:
        // - the name is a NUL-terminated C string;
        // - nothing in this program modifies the environment, so no `setenv` races with it.
        let value = unsafe { libc::getenv(MODE_VAR_C.as_ptr()) };
        let mode = if value.is_null() {
            BARE
        } else {
            // SAFETY:
            // - a non-null result of `getenv` points to a NUL-terminated string that stays valid
            //   while the environment is unchanged.
            match unsafe { CStr::from_ptr(value) }.to_bytes() {
                b"ledger" => LEDGER,
                b"slack" => SLACK,
                b"arenas" => ARENAS,
                b"decay0" => DECAY0,
                _ => BARE,
            }
        };
        self.mode.store(mode, Ordering::Relaxed);
        mode
    }

    /// The allocator of this process.
    #[inline]
    fn inner(&self) -> &dyn GlobalAlloc {
        match self.mode() {
            LEDGER => &self.ledger,
            SLACK => &self.slack,
            #[cfg(all(feature = "arenas", target_os = "linux", target_pointer_width = "64"))]
            ARENAS => &self.arenas,
            #[cfg(all(feature = "arenas", target_os = "linux", target_pointer_width = "64"))]
            DECAY0 => &self.decay0,
            _ => &Jemalloc,
        }
    }
}

// SAFETY:
// - every call is forwarded to one of five allocators, and which one never changes after the
//   first call (see `Switch`), so each block is freed and resized by the allocator that made it.
unsafe impl GlobalAlloc for Switch {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY:
        // - the caller's contract is forwarded unchanged.
        unsafe { self.inner().alloc(layout) }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY:
        // - the caller's contract is forwarded unchanged.
        unsafe { self.inner().alloc_zeroed(layout) }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY:
        // - the caller's contract is forwarded to the allocator that made the block.
        unsafe { self.inner().dealloc(ptr, layout) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY:
        // - the caller's contract is forwarded to the allocator that made the block.
        unsafe { self.inner().realloc(ptr, layout, new_size) }
    }
}

/// xorshift64: the same sequence in both children, so they build identical data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// The data the workload keeps alive.
// The boxes are the point: half a million separate small blocks, as a program's objects are.
#[allow(clippy::vec_box)]
struct Index {
    symbols: Vec<String>,
    postings: HashMap<String, Vec<u32>>,
    words: Vec<Box<u64>>,
    records: Vec<Box<[u8; 24]>>,
}

/// Builds the index. Every size is deterministic; only `HashMap`'s hash seed differs between
/// runs, and it does not change what is allocated.
fn build_index() -> Index {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    // Names of 10 to about 50 bytes, so they spread over several small size classes.
    let symbols: Vec<String> = (0..SYMBOLS)
        .map(|i| {
            let suffix_len = (rng.next() % 40) as usize;
            let suffix: String = (0..suffix_len)
                .map(|k| char::from(b'a' + ((i + k) % 26) as u8))
                .collect();
            format!("symbol_{i}_{suffix}")
        })
        .collect();
    let mut postings: HashMap<String, Vec<u32>> = HashMap::new();
    for posting in 0..POSTINGS as u32 {
        // A skewed choice (a uniform index below a uniform bound): a few symbols collect
        // hundreds of postings, most a handful, so the vectors end at many different capacities.
        let r = rng.next();
        let bound = 1 + (r >> 32) as usize % SYMBOLS;
        let symbol = &symbols[(r & 0xffff_ffff) as usize % bound];
        match postings.get_mut(symbol.as_str()) {
            Some(list) => list.push(posting),
            None => {
                postings.insert(symbol.clone(), vec![posting]);
            }
        }
    }
    // Small boxes of the two most common sizes of small Rust objects: one word, and three words
    // (a `String` or `Vec` header).
    let words: Vec<Box<u64>> = (0..BOXES / 2).map(|i| Box::new(i as u64)).collect();
    let records: Vec<Box<[u8; 24]>> = (0..BOXES / 2).map(|i| Box::new([i as u8; 24])).collect();
    Index {
        symbols,
        postings,
        words,
        records,
    }
}

/// Strings, vectors and boxes of the `mix` workload.
const MIX_STRINGS: usize = 300_000;
const MIX_VECS: usize = 50_000;
const MIX_BOXES: usize = 500_000;

/// The `mix` workload, kept alive by the caller.
// The boxes are the point, as in `Index`.
#[allow(clippy::vec_box)]
struct Mix {
    strings: Vec<String>,
    vecs: Vec<Vec<u64>>,
    boxes: Vec<Box<[u64; 2]>>,
}

fn build_mix() -> Mix {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    const WORDS: [&str; 8] = [
        "alpha", "be", "gamma", "delta_", "e", "zeta_eta", "th", "iota",
    ];
    let strings = (0..MIX_STRINGS)
        .map(|_| {
            let target = 20 + (rng.next() % 181) as usize;
            let mut s = String::new();
            while s.len() < target {
                s.push_str(WORDS[(rng.next() % 8) as usize]);
            }
            s
        })
        .collect();
    let vecs = (0..MIX_VECS)
        .map(|_| {
            let len = 1 + rng.next() % 1000;
            let mut v = Vec::new();
            for i in 0..len {
                v.push(i);
            }
            v
        })
        .collect();
    let boxes = (0..MIX_BOXES as u64).map(|i| Box::new([i, !i])).collect();
    Mix {
        strings,
        vecs,
        boxes,
    }
}

/// Batches the handoff workload builds, one every [`HANDOFF_PACE_MS`], so that it runs longer
/// than jemalloc's default `dirty_decay_ms` (10 s) whatever the allocator's speed, and every child
/// builds the same documents.
const HANDOFF_BATCHES: usize = 240;
const HANDOFF_PACE_MS: u64 = 50;
/// Documents per batch handed to a consumer.
const HANDOFF_BATCH: usize = 2_000;
/// Threads that free what the producer built.
const CONSUMERS: usize = 3;

/// One document of the handoff workload: a name, a doubling list of ids, and small boxes.
// The boxes are the point, as in `Index`.
#[allow(clippy::vec_box)]
struct Document {
    name: String,
    ids: Vec<u32>,
    fields: Vec<Box<[u64; 2]>>,
}

fn document(rng: &mut Rng, i: usize) -> Document {
    let r = rng.next();
    let name_len = 10 + (r % 40) as usize;
    let name: String = (0..name_len)
        .map(|k| char::from(b'a' + ((i + k) % 26) as u8))
        .collect();
    let mut ids = Vec::new();
    for id in 0..((r >> 8) % 300) as u32 {
        ids.push(id);
    }
    let fields = (0..(r >> 20) % 8)
        .map(|f| Box::new([f, i as u64]))
        .collect();
    Document { name, ids, fields }
}

/// The handoff workload: documents built in the scope `handoff` on this thread and freed on
/// [`CONSUMERS`] others, [`HANDOFF_BATCHES`] batches paced over 12 s; every tenth is kept.
/// Returns what was kept.
fn handoff() -> Vec<Document> {
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    let consumers: Vec<_> = (0..CONSUMERS)
        .map(|_| {
            let (tx, rx) = mpsc::sync_channel::<Vec<Document>>(2);
            let thread = std::thread::spawn(move || {
                for batch in rx {
                    // The consumer's own work, outside any scope, as an indexing thread's: a
                    // scratch table of doubling lists built from the batch, then dropped.
                    let mut scratch: HashMap<&str, Vec<u32>> = HashMap::new();
                    for doc in &batch {
                        let key = &doc.name[..doc.name.len().min(3)];
                        scratch.entry(key).or_default().extend(&doc.ids);
                    }
                    black_box(&scratch);
                    drop(scratch);
                    drop(black_box(batch));
                }
            });
            (tx, thread)
        })
        .collect();
    let _g = memledger::scope!("handoff");
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut kept = Vec::new();
    let start = Instant::now();
    let mut i = 0;
    for round in 0..HANDOFF_BATCHES {
        let due = start + Duration::from_millis(HANDOFF_PACE_MS * round as u64);
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        let batch: Vec<Document> = (0..HANDOFF_BATCH)
            .map(|_| {
                i += 1;
                document(&mut rng, i)
            })
            .collect();
        let (give, keep): (Vec<_>, Vec<_>) = batch
            .into_iter()
            .enumerate()
            .partition(|(k, _)| k % 10 != 0);
        kept.extend(keep.into_iter().map(|(_, d)| d));
        let give: Vec<Document> = give.into_iter().map(|(_, d)| d).collect();
        consumers[i / HANDOFF_BATCH % CONSUMERS]
            .0
            .send(give)
            .expect("a consumer is there");
    }
    for (tx, thread) in consumers {
        drop(tx);
        thread.join().expect("a consumer finished");
    }
    kept
}

/// One child: runs the workload, then prints jemalloc's figures (and the ledger's) as one line of
/// `key=value` pairs.
fn child(ledger: bool) -> ExitCode {
    let workload = std::env::var(WORKLOAD_VAR).unwrap_or_else(|_| "index".to_string());
    let handoff_workload = workload == "handoff";
    let mut mix = None;
    let rss_over_the_run = RssSampler::start();
    let (index, kept) = if handoff_workload {
        (None, handoff())
    } else if workload == "mix" {
        let _g = memledger::scope!("mix");
        mix = Some(build_mix());
        (None, Vec::new())
    } else {
        // Only thread-locals change when the ledger is not the allocator, so the same code runs
        // in both children.
        let _g = memledger::scope!("index");
        (Some(build_index()), Vec::new())
    };
    black_box((&index, &kept, &mix));
    let (rss_mean, rss_max) = rss_over_the_run.stop();
    let idle_s: u64 = std::env::var(IDLE_VAR)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let idle_until = std::time::Instant::now() + std::time::Duration::from_secs(idle_s);
    while std::time::Instant::now() < idle_until {
        // Under the default ledger these blocks live in the unscoped root's arena (every block of
        // up to 16 KiB outside the crate's own scopes goes to its scope's arena), which in
        // `handoff` also holds the consumers' scratch tables; the workload's own scope arena is
        // left idle, and only a decay driven by the books (this loop's refills) returns its
        // pages. Under the trailer ledger and `slack` they stay in jemalloc's automatic arenas.
        let scratch: Vec<Vec<u8>> = (0..64).map(|i| vec![i as u8; 250]).collect();
        black_box(scratch);
        std::thread::sleep(std::time::Duration::from_millis(1));
    }

    // Refreshes jemalloc's statistics, which are otherwise those of the last epoch.
    let stats = tikv_jemalloc_ctl::epoch::advance().and_then(|_| {
        Ok([
            ("allocated", tikv_jemalloc_ctl::stats::allocated::read()?),
            ("active", tikv_jemalloc_ctl::stats::active::read()?),
            ("resident", tikv_jemalloc_ctl::stats::resident::read()?),
            ("metadata", tikv_jemalloc_ctl::stats::metadata::read()?),
            ("mapped", tikv_jemalloc_ctl::stats::mapped::read()?),
        ])
    });
    let stats = match stats {
        Ok(stats) => stats,
        Err(err) => {
            eprintln!("reading jemalloc's statistics failed: {err}");
            return ExitCode::FAILURE;
        }
    };
    let mut line: Vec<String> = stats.iter().map(|(k, v)| format!("{k}={v}")).collect();
    if std::env::var_os(ARENAS_VAR).is_some() {
        print_arenas();
    }
    match rss_bytes() {
        Ok(rss) => line.push(format!("rss={rss}")),
        Err(err) => eprintln!("reading the RSS failed: {err}"),
    }
    line.push(format!("rss_mean={rss_mean}"));
    line.push(format!("rss_max={rss_max}"));
    if ledger {
        // Taken after jemalloc's figures, so that the snapshot's own memory is not in them.
        let snap = memledger::snapshot();
        let scope = workload.as_str();
        let index_live = snap.scope(scope).map_or(0, |s| s.live_bytes);
        line.push(format!("ledger_total_live={}", snap.total_live_bytes()));
        line.push(format!("ledger_index_live={index_live}"));
        line.push(format!("ledger_own_live={}", snap.own().live_bytes));
    }
    println!("{}", line.join(" "));

    // The workload is what the table's header says it is.
    if let Some(mix) = mix {
        assert_eq!(mix.strings.len(), MIX_STRINGS);
        assert!(mix.strings.iter().all(|s| (20..=210).contains(&s.len())));
        assert!(mix.vecs.iter().all(|v| (1..=1000).contains(&v.len())));
        assert_eq!(mix.boxes.len(), MIX_BOXES);
    } else if let Some(index) = index {
        let postings: usize = index.postings.values().map(Vec::len).sum();
        assert_eq!(postings, POSTINGS);
        assert_eq!(index.symbols.len(), SYMBOLS);
        assert_eq!(index.words.len() + index.records.len(), BOXES);
    } else {
        assert!(!kept.is_empty());
        assert!(kept
            .iter()
            .all(|d| d.name.len() >= 10 && d.ids.len() < 300 && d.fields.len() < 8));
    }
    ExitCode::SUCCESS
}

/// Runs this binary again as a child over the allocator `mode`; returns its figures.
fn run_child(mode: &str, workload: &str) -> Result<HashMap<String, u64>, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this binary: {e}"))?;
    let output = Command::new(&exe)
        .env(IDLE_VAR, std::env::var(IDLE_VAR).unwrap_or_default())
        .env(MODE_VAR, mode)
        .env(WORKLOAD_VAR, workload)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", exe.display()))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(format!(
            "the {mode} child failed ({}):\n{stdout}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let line = stdout
        .lines()
        .last()
        .ok_or_else(|| format!("the {mode} child printed nothing"))?;
    line.split_whitespace()
        .map(|pair| {
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| format!("the {mode} child printed `{pair}`, not key=value"))?;
            let value = value
                .parse()
                .map_err(|e| format!("the {mode} child printed `{pair}`: {e}"))?;
            Ok((key.to_string(), value))
        })
        .collect()
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

fn driver(workload: &str) -> ExitCode {
    let mut modes = vec!["bare", "ledger", "slack"];
    if cfg!(all(
        feature = "arenas",
        target_os = "linux",
        target_pointer_width = "64"
    )) {
        modes.insert(2, "arenas");
        modes.push("decay0");
    }
    let mut figures = Vec::new();
    for mode in &modes {
        match run_child(mode, workload) {
            Ok(f) => figures.push(f),
            Err(err) => {
                eprintln!("{err}");
                return ExitCode::FAILURE;
            }
        }
    }
    let get = |figures: &HashMap<String, u64>, key: &str| figures.get(key).copied().unwrap_or(0);

    if workload == "handoff" {
        println!(
            "memory overhead of the ledger over bare jemalloc, handoff: {HANDOFF_BATCHES} batches \
             of {HANDOFF_BATCH} documents built in one scope over {} s and freed on {CONSUMERS} \
             other threads, one in ten kept",
            HANDOFF_BATCHES as u64 * HANDOFF_PACE_MS / 1000
        );
    } else if workload == "mix" {
        println!(
            "memory overhead of the ledger over bare jemalloc, mix: {MIX_STRINGS} strings grown \
             word by word, {MIX_VECS} Vec<u64> grown by doubling, {MIX_BOXES} Box<[u64; 2]>"
        );
    } else {
        println!(
            "memory overhead of the ledger over bare jemalloc: {SYMBOLS} symbols, \
             {POSTINGS} postings in a HashMap<String, Vec<u32>>, {BOXES} small boxes"
        );
    }
    println!();
    print!("{:<10}", "jemalloc");
    for mode in &modes {
        print!(" {:>10}", format!("{mode} MB"));
        if *mode != "bare" {
            print!(" {:>8}", "increase");
        }
    }
    println!();
    // Dirty pages: freed by the program (the tables a `HashMap` outgrew, the buffers a `Vec`
    // moved out of) but not yet returned to the kernel; jemalloc purges them on a timer, so they
    // and the resident and mapped figures vary from run to run while the others do not.
    let dirty = |figures: &HashMap<String, u64>| {
        get(figures, "resident")
            .saturating_sub(get(figures, "active"))
            .saturating_sub(get(figures, "metadata"))
    };
    let increase = |b: u64, x: u64| {
        if b == 0 {
            f64::NAN
        } else {
            (x as f64 / b as f64 - 1.0) * 100.0
        }
    };
    for label in [
        "allocated",
        "active",
        "metadata",
        "dirty",
        "resident",
        "mapped",
        "rss",
        "rss_mean",
        "rss_max",
    ] {
        let figure = |figures: &HashMap<String, u64>| match label {
            "dirty" => dirty(figures),
            _ => get(figures, label),
        };
        let bare = figure(&figures[0]);
        print!("{label:<10}");
        for (mode, f) in modes.iter().zip(&figures) {
            print!(" {:>10.1}", mb(figure(f)));
            if *mode != "bare" {
                print!(" {:>+7.1}%", increase(bare, figure(f)));
            }
        }
        println!();
    }
    println!(
        "(ledger: Ledger<TrailerOnly<Jemalloc>>, every block with a 2-byte trailer; arenas: the default Ledger<Jemalloc>, blocks of up to 16 KiB \
         and larger full ones in their scope's arena; slack: what jemalloc holds when \
         a tag goes in the size class's spare bytes where there are 2, and 2 bytes are added only \
         where there are not, booking nothing; decay0: the default with \
         Ledger::with_arena_decay(0))"
    );
    println!(
        "(dirty = resident - active - metadata: purged on a timer, so it varies between runs; \
         rss: the process's resident set, /proc/self/statm, at the end of the workload; \
         rss_mean, rss_max: the same read every 100 ms while the workload ran)"
    );
    let ledger = &figures[1];
    let requested = get(ledger, "ledger_total_live");
    println!();
    println!("the ledger's books (bytes requested by the program, trailers not included):");
    let books = [
        ("all scopes".to_string(), requested),
        (format!("{workload:?}"), get(ledger, "ledger_index_live")),
        (
            memledger::OWN_SCOPE.to_string(),
            get(ledger, "ledger_own_live"),
        ),
    ];
    for (label, bytes) in books {
        println!(
            "  live, {label:<12} {:>10.1} MB {:>12} bytes",
            mb(bytes),
            bytes
        );
    }
    if modes.contains(&"arenas") {
        let arenas = &figures[2];
        println!(
            "The default ledger's books: all scopes {} bytes, {workload:?} {} bytes, {} {} bytes",
            get(arenas, "ledger_total_live"),
            get(arenas, "ledger_index_live"),
            memledger::OWN_SCOPE,
            get(arenas, "ledger_own_live"),
        );
    }
    if requested > 0 {
        let over = |allocated: u64| (allocated as f64 / requested as f64 - 1.0) * 100.0;
        print!("jemalloc allocated over requested:");
        for (mode, f) in modes.iter().zip(&figures) {
            print!(" {mode} {:+.1}%", over(get(f, "allocated")));
        }
        println!();
    }
    ExitCode::SUCCESS
}

/// Whether the arguments cargo passes on (`cargo bench -- FILTER`) select `workload` of this
/// benchmark, as criterion's filters would. Flags (`--bench`, `--noplot`) are ignored.
fn selected(workload: &str) -> bool {
    let name = format!("memory_overhead/{workload}");
    std::env::args()
        .skip(1)
        .filter(|arg| !arg.starts_with('-'))
        .all(|filter| name.contains(filter.as_str()))
}

fn main() -> ExitCode {
    match std::env::var(MODE_VAR).as_deref() {
        Err(std::env::VarError::NotPresent) => {
            for workload in ["index", "mix", "handoff"] {
                if selected(workload) && driver(workload) == ExitCode::FAILURE {
                    return ExitCode::FAILURE;
                }
                println!();
            }
            ExitCode::SUCCESS
        }
        Ok("bare") => child(false),
        Ok("ledger") => child(true),
        Ok("slack") => child(false),
        Ok("arenas") => child(true),
        Ok("decay0") => child(true),
        Ok(other) => {
            eprintln!(
                "{MODE_VAR} must be `bare`, `ledger`, `arenas`, `decay0` or `slack`, not `{other}`"
            );
            ExitCode::FAILURE
        }
        Err(err) => {
            eprintln!("{MODE_VAR}: {err}");
            ExitCode::FAILURE
        }
    }
}

/// The process's resident set: the second field of `/proc/self/statm`, in pages.
/// Reads the process's RSS every 100 ms on a thread of its own while the workload runs, for its
/// mean and its maximum over the run (the reading at the end is taken separately).
struct RssSampler {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<(u64, u64)>,
}

impl RssSampler {
    fn start() -> RssSampler {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let (mut sum, mut count, mut max) = (0u64, 0u64, 0u64);
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    if let Ok(rss) = rss_bytes() {
                        sum += rss;
                        count += 1;
                        max = max.max(rss);
                    }
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                (sum / count.max(1), max)
            })
        };
        RssSampler { stop, thread }
    }

    /// The mean and the maximum of the readings.
    fn stop(self) -> (u64, u64) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().expect("the RSS sampler finished")
    }
}

fn rss_bytes() -> std::io::Result<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm")?;
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|field| field.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("unexpected /proc/self/statm: {statm:?}")))?;
    // SAFETY:
    // - `sysconf` only reads a system setting.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Ok(pages * page.max(1) as u64)
}

/// jemalloc's figures for every arena that holds pages (as of the last epoch), one line each: where
/// a child's resident memory sits, automatic arenas and scope arenas alike.
fn print_arenas() {
    let read = |name: String| -> Option<usize> {
        let name = format!("{name}\0");
        // SAFETY:
        // - every statistic read here is a `size_t` (`narenas`, an `unsigned`, is read below).
        unsafe { tikv_jemalloc_ctl::raw::read::<usize>(name.as_bytes()) }.ok()
    };
    // SAFETY:
    // - "arenas.narenas" is an `unsigned`.
    let narenas = unsafe { tikv_jemalloc_ctl::raw::read::<u32>(b"arenas.narenas\0") }.unwrap_or(0);
    for i in 0..narenas {
        let stat = |name: &str| read(format!("stats.arenas.{i}.{name}")).unwrap_or(0);
        if stat("pactive") + stat("pdirty") + stat("pmuzzy") == 0 {
            continue;
        }
        eprintln!(
            "arena {i}: pactive {} pdirty {} pmuzzy {} resident {} base {} tcache_bytes {} \
             dirty_purged {}",
            stat("pactive"),
            stat("pdirty"),
            stat("pmuzzy"),
            stat("resident"),
            stat("base"),
            stat("tcache_bytes"),
            stat("dirty_purged"),
        );
    }
}
