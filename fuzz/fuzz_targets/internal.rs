#![no_main]
//! Fuzz target: `merklekv::fuzz::internal`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| merklekv::fuzz::internal(data));
