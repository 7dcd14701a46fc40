#![no_main]
//! Fuzz target: `merklekv::fuzz::resp`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| merklekv::fuzz::resp(data));
