//! The JSON readers: any input either fails with an error or gives a value that keeps its
//! guarantees, survives every method a reader would call on it, and writes back to JSON that
//! reads as the same value (the check is `memledger-monitor/tests/common/fuzz_json.rs`, which
//! `memledger-monitor/tests/json.rs` also runs over the kept inputs).
#![no_main]

#[path = "../../memledger-monitor/tests/common/fuzz_json.rs"]
mod fuzz_json;

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_json::check(data));
