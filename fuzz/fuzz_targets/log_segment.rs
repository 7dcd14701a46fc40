#![no_main]
//! Fuzz target: `merklekv::fuzz::log_segment`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| merklekv::fuzz::log_segment(data));
