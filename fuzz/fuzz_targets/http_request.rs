//! memledger-http's request parsing: any bytes as a request head either fail with an error or
//! give a method and an absolute-path target; any method, path and query either name a route
//! or fail with a 4xx status, and a route's query values stay inside their caps. Never a panic
//! (the check is `memledger-http/tests/http/fuzz_request.rs`, which memledger-http's tests also
//! run over the kept inputs).
#![no_main]

#[path = "../../memledger-http/tests/http/fuzz_request.rs"]
mod fuzz_request;

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_request::check(data));
