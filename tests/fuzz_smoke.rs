//! A short run of every fuzzing entry point (`merklekv::fuzz`, the same
//! functions the `cargo fuzz` targets in `fuzz/` call) on arbitrary bytes,
//! so `cargo test` replays what the fuzzers explore. Long runs: see
//! docs/fuzzing.md.

use proptest::prelude::*;
use proptest::test_runner::Config;

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..64),
        proptest::collection::vec(any::<u8>(), 0..600),
    ]
}

/// Bytes drawn mostly from `alphabet`, so that parsers get past their
/// first checks.
fn words(alphabet: &'static [u8]) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(
        prop_oneof![
            4 => proptest::sample::select(alphabet),
            1 => any::<u8>(),
        ],
        0..300,
    )
}

const TEXT: &[u8] = b"SET GET DEL MSET INC APPEND TRUNCATE k v 1 -5 \r\n\n\t \"";
const RESP: &[u8] = b"*$+-:123\r\n SET GET MKV.ROOT MKV.FETCH k v 0 8";
const INTERNAL: &[u8] = b"\x00\x01\x02\x03\x04\x05\x06 0 1 8 16 255 k1 k2 -";
const REPLIES: &[u8] = b"\x05\x06*7\r\n:1\r\n:8\r\n:4\r\n$4\r\npeer\r\n:2\r\n$32\r\n*-1\r\n$-1\r\n";

proptest! {
    #![proptest_config(Config { cases: 300, ..Config::default() })]

    #[test]
    fn text_parser(data in prop_oneof![bytes(), words(TEXT)]) {
        merklekv::fuzz::text(&data);
    }

    #[test]
    fn resp_parser(data in prop_oneof![bytes(), words(RESP)]) {
        merklekv::fuzz::resp(&data);
    }

    #[test]
    fn internal_commands(data in prop_oneof![bytes(), words(INTERNAL), words(REPLIES)]) {
        merklekv::fuzz::internal(&data);
    }

    #[test]
    fn cbor_events(data in bytes()) {
        merklekv::fuzz::cbor(&data);
    }

    #[test]
    fn log_segments(data in bytes()) {
        merklekv::fuzz::log_segment(&data);
    }

    #[test]
    fn snapshots(data in bytes()) {
        merklekv::fuzz::snapshot(&data);
    }
}
