#![no_main]
//! Fuzz target: `merklekv::fuzz::cbor`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| merklekv::fuzz::cbor(data));
