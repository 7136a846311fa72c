//! Recordings and the HTML report: any input either fails to read with an error that names a
//! line of the input (or none), or reads as a recording that renders to one whole page, with
//! nothing from the input left unescaped (the check is
//! `memledger-report/tests/report/fuzz_recording.rs`, which the report's tests also run over the
//! kept inputs).
#![no_main]

#[path = "../../memledger-report/tests/report/fuzz_recording.rs"]
mod fuzz_recording;

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_recording::check(data));
