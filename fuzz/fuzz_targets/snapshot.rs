#![no_main]
//! Fuzz target: `merklekv::fuzz::snapshot`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| merklekv::fuzz::snapshot(data));
