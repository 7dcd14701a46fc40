//! Wire protocols: the [`Command`] type shared by every front end, the
//! parsers that produce it, and the reply encoders that consume results.
//!
//! Design (after mini-redis and Pelikan):
//!
//! * Parsers are pure functions over a connection's read buffer. They return
//!   a [`Parsed`] outcome: a complete request plus the number of bytes it
//!   consumed, a cheap `Incomplete` (read more, nothing allocated), a
//!   recoverable error reply, or a fatal framing error that closes the
//!   connection.
//! * A [`Command`] borrows its keys and values from the read buffer, so
//!   parsing allocates nothing; the store copies what it keeps.
//! * Every front end (text, RESP) produces the same [`Command`] and is
//!   answered by the same executor (`exec::execute`), which says what it
//!   answers through a [`reply::Reply`]; [`reply`] encodes it in the
//!   connection's [`reply::Proto`]. Every reply byte is written there.

pub mod expiry;
pub mod glob;
pub mod internal;
pub mod redis;
pub mod reply;
pub mod resp;
pub mod strings;
pub mod text;

/// A decimal argument: what `T::from_str` accepts (for integers: an
/// optional sign, then ASCII digits, in range), from bytes.
#[inline]
pub fn parse_int<T: std::str::FromStr>(arg: &[u8]) -> Option<T> {
    std::str::from_utf8(arg).ok()?.parse().ok()
}

/// Maximum size of one text request line, terminator included
/// (docs/protocol.md §1). Also the bound on one RESP bulk string.
pub const MAX_LINE: usize = 1_048_576;

/// A parsed request. Borrowed slices point into the connection's buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command<'a> {
    /// `GET key`.
    Get(&'a [u8]),
    /// `SET key value`.
    Set(&'a [u8], &'a [u8]),
    /// `DEL`/`DELETE key` (text: exactly one key; RESP: one or more).
    Delete(Args<'a>),
    /// `APPEND key value`.
    Append(&'a [u8], &'a [u8]),
    /// `PREPEND key value`.
    Prepend(&'a [u8], &'a [u8]),
    /// `INC`/`INCR`/`DEC`/`DECR key [amount]`: `new = old + amount`, or
    /// `old - amount` when `decrement`; wrapping on overflow.
    Numeric {
        key: &'a [u8],
        amount: i64,
        decrement: bool,
    },
    /// `MGET k1 [k2 …]`.
    MGet(Args<'a>),
    /// `MSET k1 v1 [k2 v2 …]`; the parser guarantees an even count >= 2.
    MSet(Args<'a>),
    /// `EXISTS k1 [k2 …]`.
    Exists(Args<'a>),
    /// `SCAN [prefix]` (empty prefix = all keys).
    Scan(&'a [u8]),
    /// `TRUNCATE`: remove every key, local only.
    Truncate,
    /// `FLUSHDB` / `FLUSH`: remove every key, local only.
    FlushDb,
    /// `PING [message]`; `None` for a bare PING (reply `PONG`).
    Ping(Option<&'a [u8]>),
    /// `ECHO message`.
    Echo(&'a [u8]),
    /// `DBSIZE`.
    DbSize,
    /// `MEMORY`.
    Memory,
    /// `STATS`.
    Stats,
    /// `INFO`.
    Info,
    /// `VERSION`.
    Version,
    /// `CLIENT LIST` (or bare `CLIENT`).
    ClientList,
    /// `HASH [prefix]`; `None` for bare `HASH` (or an empty argument).
    /// The text parser hands `HASH *` over as `Some(b"*")`, because the reply
    /// echoes the argument (`HASH * <hex64>`, docs/protocol.md §3.2): the executor
    /// treats a `*` argument as "all keys".
    Hash(Option<&'a [u8]>),
    /// `SYNC host port [--full] [--verify] [--force] [--rejoin]`.
    Sync {
        host: &'a str,
        port: u16,
        full: bool,
        verify: bool,
        /// Let `--full` remove more than half of the local records.
        force: bool,
        /// End this node's stale state first (`crate::contact`).
        rejoin: bool,
    },
    /// `REPLICATE enable|disable|status`.
    Replicate(ReplicateAction),
    /// `NODES` (text) / `MKV.MEMBERS` (RESP): the member table.
    Nodes,
    /// `READONLY on|off|status` (text) / `MKV.READONLY [ON|OFF]` (RESP):
    /// switch or report read-only mode (`crate::readonly`).
    ReadOnly(ReadOnlyAction),
    /// `SHUTDOWN`.
    Shutdown,
    /// RESP `STRLEN key`.
    Strlen(&'a [u8]),
    /// RESP `SELECT db` (only 0 exists).
    Select(&'a [u8]),
    /// RESP `QUIT`: reply `+OK` and close.
    Quit,
    /// `AUTH [user] password`; answered by the connection's gate
    /// (`auth::gate`), never by the executor.
    Auth {
        user: Option<&'a [u8]>,
        password: &'a [u8],
    },
    /// RESP-only internal anti-entropy commands (`MKV.*`, [`internal`]).
    Internal(internal::Internal<'a>),
    /// A RESP-only Redis-compatibility command ([`redis::Redis`]).
    Redis(redis::Redis<'a>),
    /// A key-expiry command, RESP or text ([`expiry::ExpiryCmd`]).
    Expiry(expiry::ExpiryCmd<'a>),
}

/// The action of a `REPLICATE` command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicateAction {
    Enable,
    Disable,
    Status,
}

/// The action of a `READONLY` / `MKV.READONLY` command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadOnlyAction {
    On,
    Off,
    Status,
}

/// A list of arguments (keys, or alternating keys and values) without
/// allocating: the text protocol keeps the raw remainder of the line and
/// splits it on demand; other front ends hand over a slice of slices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Args<'a> {
    /// Tokens separated by runs of Unicode whitespace (`str::split_whitespace`).
    Words(&'a str),
    /// Exactly one argument, taken verbatim (it may contain whitespace).
    One(&'a [u8]),
    /// Already separated arguments.
    List(&'a [&'a [u8]]),
    /// Arguments as `(start, end)` byte ranges of a buffer (RESP framing).
    Spans(&'a [u8], &'a [(u32, u32)]),
}

impl<'a> Args<'a> {
    /// Iterates over the arguments in order.
    pub fn iter(&self) -> ArgsIter<'a> {
        match *self {
            Args::Words(s) => ArgsIter::Words(s.split_whitespace()),
            Args::One(a) => ArgsIter::One(Some(a)),
            Args::List(l) => ArgsIter::List(l.iter()),
            Args::Spans(b, s) => ArgsIter::Spans(b, s.iter()),
        }
    }

    /// Number of arguments (O(n) for `Words`).
    pub fn len(&self) -> usize {
        match *self {
            Args::Words(s) => s.split_whitespace().count(),
            Args::One(_) => 1,
            Args::List(l) => l.len(),
            Args::Spans(_, s) => s.len(),
        }
    }

    /// True when there are no arguments.
    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }

    /// The arguments after the first `n`.
    pub fn skip(self, n: usize) -> Args<'a> {
        match self {
            Args::Spans(b, s) => Args::Spans(b, &s[n.min(s.len())..]),
            Args::List(l) => Args::List(&l[n.min(l.len())..]),
            Args::One(a) if n == 0 => Args::One(a),
            Args::One(_) => Args::List(&[]),
            Args::Words(w) => {
                let mut rest = w;
                for _ in 0..n {
                    rest = rest.trim_start();
                    let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
                    rest = &rest[end..];
                }
                Args::Words(rest)
            }
        }
    }
}

/// Iterator returned by [`Args::iter`].
#[derive(Clone)]
pub enum ArgsIter<'a> {
    Words(std::str::SplitWhitespace<'a>),
    One(Option<&'a [u8]>),
    List(std::slice::Iter<'a, &'a [u8]>),
    Spans(&'a [u8], std::slice::Iter<'a, (u32, u32)>),
}

impl<'a> Iterator for ArgsIter<'a> {
    type Item = &'a [u8];

    #[inline]
    fn next(&mut self) -> Option<&'a [u8]> {
        match self {
            ArgsIter::Words(w) => w.next().map(str::as_bytes),
            ArgsIter::One(a) => a.take(),
            ArgsIter::List(l) => l.next().copied(),
            ArgsIter::Spans(b, s) => s.next().map(|&(a, e)| &b[a as usize..e as usize]),
        }
    }
}

/// Outcome of parsing the front of a read buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// A complete request that consumed `usize` bytes.
    Request(Command<'a>, usize),
    /// No complete request yet: read more bytes. Nothing was consumed.
    Incomplete,
    /// `usize` bytes held nothing to execute or answer (RESP `*0`).
    Skip(usize),
    /// A complete but invalid request that consumed `usize` bytes: answer
    /// with the error message (without the `ERROR ` prefix) and go on.
    Invalid(ParseError, usize),
    /// Framing is broken: the connection must be closed (after sending the
    /// reply for [`Fatal::LineTooLong`]).
    Fatal(Fatal),
}

/// A recoverable parse error; `Display` gives the exact protocol text
/// (without the `ERROR ` prefix).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError(pub std::borrow::Cow<'static, str>);

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Errors that end a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fatal {
    /// The request exceeds [`MAX_LINE`]: reply `ERROR line too long`, close.
    LineTooLong,
    /// The line is not valid UTF-8: close without a reply (1.x behaviour).
    InvalidUtf8,
    /// Broken binary framing (RESP): reply with the message, close.
    Protocol(resp::ProtocolError),
}
