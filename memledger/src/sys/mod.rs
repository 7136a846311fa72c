//! Every platform difference in one place: the atomics (loom's in the model checks, under
//! `cfg(memledger_loom)`), giving a thread's counters back when it exits, and keeping the crate's
//! locks usable across `fork()`.

pub(crate) mod atomic;
pub(crate) mod fork;
pub(crate) mod thread_exit;
