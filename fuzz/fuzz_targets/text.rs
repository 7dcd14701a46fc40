#![no_main]
//! Fuzz target: `merklekv::fuzz::text`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| merklekv::fuzz::text(data));
