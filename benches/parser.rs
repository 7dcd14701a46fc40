//! Text parser throughput on pipelined buffers (16-byte keys, 32-byte
//! values), reported per request; and RESP framing of one request with
//! many arguments that arrives in 16 KiB reads (`resp_split`), which must
//! cost time linear in its size: compare the per-argument times of the
//! sizes, and the stateless re-framing (`from_scratch`) that it replaced.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use merklekv::protocol::Parsed;
use merklekv::protocol::resp;
use merklekv::protocol::text::parse;

const REQUESTS: usize = 1024;

fn key(i: usize) -> String {
    format!("key:{i:012}")
}

fn value(i: usize) -> String {
    format!("value-{i:026}")
}

fn buffer(line: impl Fn(usize) -> String) -> Vec<u8> {
    (0..REQUESTS).map(line).collect::<String>().into_bytes()
}

/// Parses every request of `buf`, as a worker drains its read buffer.
fn drain(buf: &[u8]) -> usize {
    let mut pos = 0;
    let mut count = 0;
    while let Some(rest) = buf.get(pos..) {
        match parse(rest) {
            Parsed::Request(cmd, n) => {
                black_box(cmd);
                pos += n;
                count += 1;
            }
            _ => break,
        }
    }
    count
}

fn bench(c: &mut Criterion) {
    assert_eq!(key(1).len(), 16);
    assert_eq!(value(1).len(), 32);
    let gets = buffer(|i| format!("GET {}\r\n", key(i)));
    let sets = buffer(|i| format!("SET {} {}\r\n", key(i), value(i)));
    let mixed = buffer(|i| {
        if i % 2 == 0 {
            format!("GET {}\r\n", key(i))
        } else {
            format!("SET {} {}\r\n", key(i), value(i))
        }
    });

    let mut group = c.benchmark_group("text_parse_pipelined");
    group.throughput(Throughput::Elements(REQUESTS as u64));
    for (name, buf) in [("get", &gets), ("set", &sets), ("get_set_mixed", &mixed)] {
        assert_eq!(drain(buf), REQUESTS);
        group.bench_function(name, |b| b.iter(|| drain(black_box(buf))));
    }
    group.finish();
}

/// Read size of the split benchmark.
const PIECE: usize = 16 << 10;

/// `EXISTS a b c …` with `n` one-byte keys, RESP-encoded.
fn exists_request(n: usize) -> Vec<u8> {
    let mut v = format!("*{}\r\n$6\r\nEXISTS\r\n", n + 1).into_bytes();
    for i in 0..n {
        v.extend_from_slice(b"$1\r\n");
        v.push(b'a' + (i % 26) as u8);
        v.extend_from_slice(b"\r\n");
    }
    v
}

/// Frames `buf` as a connection receives it, `PIECE` bytes per read,
/// resuming where the previous read stopped. Returns the argument count.
fn feed_resumed(buf: &[u8], spans: &mut Vec<(u32, u32)>) -> usize {
    let mut partial = resp::Partial::default();
    let mut have = 0;
    loop {
        have = (have + PIECE).min(buf.len());
        match partial.parse(&buf[..have], spans) {
            Parsed::Incomplete => {}
            Parsed::Request(cmd, _) => {
                black_box(cmd);
                return spans.len();
            }
            p => panic!("{p:?}"),
        }
    }
}

/// The same feed, framing from the request's start on every read (the
/// old, quadratic behaviour).
fn feed_from_scratch(buf: &[u8], spans: &mut Vec<(u32, u32)>) -> usize {
    let mut have = 0;
    loop {
        have = (have + PIECE).min(buf.len());
        if let resp::Frame::Complete(_) = resp::frame(&buf[..have], spans) {
            return spans.len();
        }
    }
}

fn bench_split(c: &mut Criterion) {
    let mut group = c.benchmark_group("resp_split");
    group.sample_size(10);
    let mut spans = Vec::new();
    for n in [62_500usize, 250_000, 1_000_000] {
        let buf = exists_request(n);
        assert_eq!(feed_resumed(&buf, &mut spans), n + 1);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(format!("resumed/{n}"), |b| {
            b.iter(|| feed_resumed(black_box(&buf), &mut spans))
        });
        if n <= 250_000 {
            assert_eq!(feed_from_scratch(&buf, &mut spans), n + 1);
            group.bench_function(format!("from_scratch/{n}"), |b| {
                b.iter(|| feed_from_scratch(black_box(&buf), &mut spans))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench, bench_split);
criterion_main!(benches);
