//! Text parser throughput on pipelined buffers (16-byte keys, 32-byte
//! values), reported per request.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use merklekv::protocol::Parsed;
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

criterion_group!(benches, bench);
criterion_main!(benches);
