//! The text parser allocates nothing on the success path (the invariant in
//! `src/protocol/text.rs`): checked with a counting global allocator, in
//! its own test binary so the allocator affects no other test.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use merklekv::protocol::Parsed;
use merklekv::protocol::text::{parse, parse_eof};

struct Counting;

thread_local! {
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: defers to `System`; the counter is a const-initialised
// thread-local without a destructor, so touching it never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let before = ALLOCS.with(Cell::get);
    let out = f();
    (out, ALLOCS.with(Cell::get) - before)
}

#[test]
fn successful_parses_do_not_allocate() {
    let lines: &[&[u8]] = &[
        b"SET user:1 Alice\r\n",
        b"get user:1\r\n",
        b"\xc2\xa0SET proj:\xce\xb1 x\ry \xe3\x80\x80\r\n",
        b"\xc5\xbfet k v\n",
        b"DEL k\r\n",
        b"APPEND g  World!\r\n",
        b"INCR c -5 ignored\r\n",
        b"DEC c\r\n",
        b"MSET a 1 b 2\r\n",
        b"MGET a b zz\r\n",
        b"EXISTS a\r\n",
        b"SCAN user:\r\n",
        b"HASH *\r\n",
        b"PING hello world\r\n",
        b"ECHO x\r\n",
        b"CLIENT list\r\n",
        b"SYNC 127.0.0.1 7380 --full --verify\r\n",
        b"REPLICATE status\r\n",
        b"FLUSH x\r\n",
        b"STATS\r\n",
        b"GET a\r\n\xff\xff",
    ];
    for line in lines {
        let (parsed, n) = allocations(|| parse(line));
        assert!(matches!(parsed, Parsed::Request(..)), "{parsed:?}");
        assert_eq!(n, 0, "{:?} allocated", String::from_utf8_lossy(line));
    }
    let (parsed, n) = allocations(|| parse_eof(b"SET k v"));
    assert!(matches!(parsed, Parsed::Request(..)));
    assert_eq!(n, 0);
    // Fixed error texts and framing outcomes do not allocate either.
    for buf in [&b"GET a b\r\n"[..], b"\r\n", b"GET", b"SET k \xff\n"] {
        let (parsed, n) = allocations(|| parse(buf));
        assert!(!matches!(parsed, Parsed::Request(..)));
        assert_eq!(n, 0, "{parsed:?}");
    }
    // Sanity check of the counter: echoing input allocates.
    let (_, n) = allocations(|| parse(b"FOO\r\n"));
    assert!(n > 0);
}
