//! The differential check shared by the `ledger_ops` fuzz target and `tests/differential.rs`:
//! bytes are read as a program of allocations, zeroed allocations, resizes and frees (on this
//! thread, on a helper thread, and from threads that exit) in random scopes with random sizes and
//! alignments, run through the global allocator (a `memledger::Ledger`), and the ledger's books
//! must equal a naive reference ledger's to the byte after every checkpoint.
//!
//! The books are process-wide and only grow, so each run compares the change since its start.

use std::alloc::{alloc, alloc_zeroed, dealloc, realloc, Layout};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Mutex, OnceLock};

/// The scopes a program books to.
pub const SCOPES: [&str; 4] = ["fuzz/a", "fuzz/b", "fuzz/a/c", "fuzz/d"];

/// Operations per run at most, so that every input runs quickly.
const MAX_OPS: usize = 256;

/// What one scope's books say: live bytes and the operation counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Books {
    pub live: u64,
    pub allocs: u64,
    pub frees: u64,
    pub reallocs: u64,
    pub allocated: u64,
    pub freed: u64,
}

/// The books of one scope as the ledger has them.
pub fn books_of(s: &memledger::ScopeStats) -> Books {
    Books {
        live: s.live_bytes,
        allocs: s.allocations,
        frees: s.deallocations,
        reallocs: s.reallocations,
        allocated: s.allocated_bytes,
        freed: s.freed_bytes,
    }
}

fn books_now() -> [Books; SCOPES.len()] {
    let snap = memledger::snapshot();
    // Taken at a checkpoint, with the program's threads idle: no scope of it reads below zero.
    assert!(
        snap.clamped_scopes()
            .all(|s| !SCOPES.contains(&s.path.as_str())),
        "a scope read below zero at a checkpoint"
    );
    SCOPES.map(|path| snap.scope(path).map(books_of).unwrap_or_default())
}

/// A live block of the program.
#[derive(Clone, Copy, Debug)]
struct Block {
    ptr: usize,
    layout: Layout,
    scope: usize,
}

/// Reads operands from the program, zeros once it runs out.
struct Program<'a>(&'a [u8]);

impl Program<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }

    fn scope(&mut self) -> usize {
        usize::from(self.byte()) % SCOPES.len()
    }

    /// Mostly small sizes; one in eight past the ledger's byte grant (64 KiB).
    fn size(&mut self) -> usize {
        let raw = usize::from(self.u16());
        if raw % 8 == 7 {
            (raw << 4) + 1
        } else {
            raw % 4096 + 1
        }
    }

    /// 1 to 4096.
    fn align(&mut self) -> usize {
        1 << (self.byte() % 13)
    }
}

/// Allocates a block booked to `path`, with nothing else allocated while the scope is current.
pub fn alloc_in(path: &str, layout: Layout, zeroed: bool) -> *mut u8 {
    let guard = memledger::enter(path);
    // SAFETY: `layout` has a non-zero size (every caller passes one).
    let ptr = unsafe {
        if zeroed {
            alloc_zeroed(layout)
        } else {
            alloc(layout)
        }
    };
    drop(guard);
    assert!(!ptr.is_null(), "allocation of {layout:?} failed");
    assert_eq!(ptr as usize % layout.align(), 0, "misaligned block");
    ptr
}

/// A helper thread that frees the blocks it is sent, so that frees cross threads.
fn helper() -> &'static Mutex<(Sender<Block>, Receiver<()>)> {
    static HELPER: OnceLock<Mutex<(Sender<Block>, Receiver<()>)>> = OnceLock::new();
    HELPER.get_or_init(|| {
        let (blocks, inbox) = mpsc::channel::<Block>();
        let (done, acks) = mpsc::channel();
        std::thread::spawn(move || {
            for block in inbox {
                let _g = memledger::enter("fuzz/elsewhere");
                // SAFETY: a live block of the program, with its layout, sent once.
                unsafe { dealloc(block.ptr as *mut u8, block.layout) };
                done.send(()).unwrap();
            }
        });
        Mutex::new((blocks, acks))
    })
}

/// `count` programs from xorshift64*: the same programs on every run. `MEMLEDGER_PROGRAMS` sets
/// another count (`scripts/mutation` runs fewer, so that each mutant is tested in seconds).
pub fn programs(count: usize, seed: u64) -> impl Iterator<Item = Vec<u8>> {
    let count = std::env::var("MEMLEDGER_PROGRAMS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(count);
    let mut state = seed;
    let mut next = move || {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    (0..count).map(move |_| {
        let len = (next() % 600) as usize;
        (0..len).map(|_| next() as u8).collect()
    })
}

/// Runs one program and checks the books against the reference.
pub fn run(program: &[u8]) {
    // One program at a time: the books of the program's scopes are compared as a whole.
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let helper = helper().lock().unwrap();
    let start = books_now();
    let mut expected = start;
    let mut blocks: Vec<Block> = Vec::with_capacity(MAX_OPS);
    let mut program = Program(program);
    let check = |expected: &[Books; SCOPES.len()], what: &str| {
        let got = books_now();
        for (i, path) in SCOPES.iter().enumerate() {
            assert_eq!(got[i], expected[i], "{what}: scope {path}");
        }
    };
    for _ in 0..MAX_OPS {
        if program.0.is_empty() {
            break;
        }
        let op = program.byte() % 8;
        if blocks.is_empty() && matches!(op, 2..=5) {
            continue;
        }
        match op {
            0 | 1 => {
                let scope = program.scope();
                let layout = Layout::from_size_align(program.size(), program.align()).unwrap();
                let zeroed = op == 1;
                let ptr = alloc_in(SCOPES[scope], layout, zeroed);
                if zeroed {
                    // SAFETY: a live block of `layout.size()` bytes.
                    let bytes = unsafe { std::slice::from_raw_parts(ptr, layout.size()) };
                    assert!(bytes.iter().all(|&b| b == 0), "not zeroed");
                }
                // SAFETY: the last byte of the live block.
                unsafe { ptr.add(layout.size() - 1).write(0xA5) };
                let e = &mut expected[scope];
                e.live += layout.size() as u64;
                e.allocs += 1;
                e.allocated += layout.size() as u64;
                blocks.push(Block {
                    ptr: ptr as usize,
                    layout,
                    scope,
                });
            }
            2 => {
                let block = blocks.swap_remove(usize::from(program.u16()) % blocks.len());
                let elsewhere = program.scope();
                let e = &mut expected[block.scope];
                e.live -= block.layout.size() as u64;
                e.frees += 1;
                e.freed += block.layout.size() as u64;
                let _g = memledger::enter(SCOPES[elsewhere]);
                // SAFETY: a live block with its layout, freed once.
                unsafe { dealloc(block.ptr as *mut u8, block.layout) };
            }
            3 => {
                let index = usize::from(program.u16()) % blocks.len();
                let block = blocks[index];
                let new = program.size();
                let elsewhere = program.scope();
                let guard = memledger::enter(SCOPES[elsewhere]);
                // SAFETY: a live block with its layout, and a non-zero new size.
                let moved = unsafe { realloc(block.ptr as *mut u8, block.layout, new) };
                drop(guard);
                assert!(!moved.is_null());
                assert_eq!(moved as usize % block.layout.align(), 0, "misaligned");
                if new >= block.layout.size() {
                    // SAFETY: the old last byte is within the resized block.
                    let last = unsafe { *moved.add(block.layout.size() - 1) };
                    assert_eq!(last, 0xA5, "contents lost");
                }
                // SAFETY: the last byte of the resized block.
                unsafe { moved.add(new - 1).write(0xA5) };
                let e = &mut expected[block.scope];
                e.reallocs += 1;
                let (old, new_u) = (block.layout.size() as u64, new as u64);
                if new_u >= old {
                    e.live += new_u - old;
                    e.allocated += new_u - old;
                } else {
                    e.live -= old - new_u;
                    e.freed += old - new_u;
                }
                blocks[index] = Block {
                    ptr: moved as usize,
                    layout: Layout::from_size_align(new, block.layout.align()).unwrap(),
                    scope: block.scope,
                };
            }
            4 => {
                let block = blocks.swap_remove(usize::from(program.u16()) % blocks.len());
                let e = &mut expected[block.scope];
                e.live -= block.layout.size() as u64;
                e.frees += 1;
                e.freed += block.layout.size() as u64;
                helper.0.send(block).unwrap();
                helper.1.recv().unwrap();
            }
            5 => check(&expected, "checkpoint"),
            _ => {
                // A thread that allocates in a scope and exits; its block lives on here.
                let scope = program.scope();
                let layout = Layout::from_size_align(program.size(), program.align()).unwrap();
                let ptr = std::thread::spawn(move || {
                    let _g = memledger::enter(SCOPES[scope]);
                    // SAFETY: a non-zero size.
                    let ptr = unsafe { alloc(layout) };
                    assert!(!ptr.is_null());
                    // SAFETY: the last byte of the live block.
                    unsafe { ptr.add(layout.size() - 1).write(0xA5) };
                    ptr as usize
                })
                .join()
                .unwrap();
                assert_ne!(ptr, 0);
                let e = &mut expected[scope];
                e.live += layout.size() as u64;
                e.allocs += 1;
                e.allocated += layout.size() as u64;
                blocks.push(Block { ptr, layout, scope });
            }
        }
    }
    check(&expected, "after the program");
    for block in blocks.drain(..) {
        let e = &mut expected[block.scope];
        e.live -= block.layout.size() as u64;
        e.frees += 1;
        e.freed += block.layout.size() as u64;
        // SAFETY: a live block with its layout, freed once.
        unsafe { dealloc(block.ptr as *mut u8, block.layout) };
    }
    check(&expected, "after freeing every block");
    for (now, before) in expected.iter().zip(&start) {
        assert_eq!(now.live, before.live, "a program leaves nothing live");
    }
}
