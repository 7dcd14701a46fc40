//! Text protocol parser (docs/protocol.md §1–§5).
//!
//! [`parse`] is a pure function over the front of a connection's read
//! buffer. It never allocates on the success path: the returned
//! [`Command`] borrows keys and values from the buffer, and multi-key
//! arguments stay as the raw remainder of the line ([`Args::Words`]).
//! Only error replies that echo user input (`Unknown command: <word>`, …)
//! allocate their message.
//!
//! # Algorithm
//!
//! 1. **Framing** (§1). Find the first LF in the first [`MAX_LINE`] bytes
//!    (memchr). Found at index `i` → the request is `buf[..=i]`, consumed =
//!    `i + 1` (so a line of exactly `MAX_LINE` bytes including its LF is
//!    accepted). Not found → [`Fatal::LineTooLong`] once `MAX_LINE` bytes
//!    are buffered (the LF can only come later: too long), otherwise
//!    [`Parsed::Incomplete`]. A CR before the LF is not special: it is
//!    removed by the whole-line trim; a lone CR elsewhere is data.
//! 2. The line (LF excluded) must be UTF-8, else [`Fatal::InvalidUtf8`]
//!    (1.x closes without a reply).
//! 3. **Parsing** (§2), on `T` = the line trimmed of Unicode whitespace at
//!    both ends (ASCII fast path):
//!    * empty → `Empty command`;
//!    * find the first SP or TAB (8 bytes at a time): a TAB first is the
//!      command-word TAB error (it lies in the single word, or in `C`);
//!    * no SP → single word: case-insensitive keyword lookup,
//!      `<U> command requires arguments`, argument-less commands, or
//!      `Unknown command: <T>`;
//!    * otherwise split at the first SP into the command word `C` and the
//!      rest `R`: keyword lookup, then one small helper per argument style
//!      (one-token, key+rest, words, verbatim).
//!
//! # Invariants
//!
//! * `Request` / `Invalid` always consume exactly up to and including the
//!   first LF (> 0 bytes); `Incomplete` is returned only when there is no
//!   LF and fewer than `MAX_LINE` bytes are buffered.
//! * `R` is never empty and never ends in whitespace (it is the tail of a
//!   trimmed line after an SP), so every `Args::Words` handed out has at
//!   least one token, and one-token arguments are never empty.
//! * Keywords are matched on the Unicode uppercase of the word, computed in
//!   a 9-byte stack buffer (no keyword is longer); a word whose uppercase is
//!   not short pure ASCII cannot be a keyword.
//! * No input can make the parser panic: no unchecked indexing, no unwrap
//!   on input-derived values.

use std::borrow::Cow;

use super::expiry::{ExpiryCmd, Unit};
use super::{Args, Command, Fatal, MAX_LINE, ParseError, Parsed, ReadOnlyAction, ReplicateAction};

/// Parses the first request line of `buf`.
///
/// See the [module docs](self) for the outcomes.
#[inline]
pub fn parse(buf: &[u8]) -> Parsed<'_> {
    parse_resume(buf, &mut 0)
}

/// [`parse`] for a line that arrives over several reads: the first
/// `*scanned` bytes of `buf` are known to hold no LF (an earlier call saw
/// them) and are not searched again, so an unterminated line costs linear
/// time however it is split. Sets `*scanned` to `buf.len()` when the result
/// is `Incomplete`, to 0 otherwise.
pub fn parse_resume<'a>(buf: &'a [u8], scanned: &mut usize) -> Parsed<'a> {
    let window = buf.get(..MAX_LINE).unwrap_or(buf);
    let from = (*scanned).min(window.len());
    *scanned = 0;
    match memchr::memchr(b'\n', &window[from..]) {
        Some(i) => {
            let lf = from + i;
            let (line, _) = buf.split_at(lf);
            parse_line(line, lf + 1)
        }
        None if buf.len() >= MAX_LINE => Parsed::Fatal(Fatal::LineTooLong),
        None => {
            *scanned = buf.len();
            Parsed::Incomplete
        }
    }
}

/// Like [`parse`], for a buffer after the peer half-closed (§1 "EOF"): a
/// non-empty unterminated tail is parsed as if it ended with LF and
/// consumes the whole buffer. An empty buffer is `Incomplete`.
///
/// A whitespace-only tail (e.g. a stray `\r`) yields `Empty command`, as
/// it would with an LF: the spec says the last line "is executed and
/// answered", and 1.x's line reader hands such a tail to the parser too.
pub fn parse_eof(buf: &[u8]) -> Parsed<'_> {
    match parse(buf) {
        Parsed::Incomplete if !buf.is_empty() => parse_line(buf, buf.len()),
        other => other,
    }
}

/// Parses one line (LF excluded) that consumed `consumed` bytes.
fn parse_line(line: &[u8], consumed: usize) -> Parsed<'_> {
    let Ok(line) = std::str::from_utf8(line) else {
        return Parsed::Fatal(Fatal::InvalidUtf8);
    };
    match parse_request(line) {
        Ok(cmd) => Parsed::Request(cmd, consumed),
        Err(err) => Parsed::Invalid(err, consumed),
    }
}

/// §2 on one decoded line.
fn parse_request(line: &str) -> Result<Command<'_>, ParseError> {
    let t = trim_ws(line);
    if t.is_empty() {
        return Err(fixed("Empty command"));
    }
    // §2 steps 3.1 and 4.1 in one scan: a TAB before any SP means the
    // single word, or the command word before the first SP, has a TAB.
    match split_at_sep(t) {
        None => single_word(t),
        Some((_, Sep::Tab, _)) => Err(fixed(TAB_IN_COMMAND)),
        Some((c, Sep::Sp, r)) => with_args(c, r),
    }
}

// ---------------------------------------------------------------------------
// Error texts (§4), without the `ERROR ` prefix.

const TAB_IN_COMMAND: &str = "Invalid character: tab character not allowed in command";
const TAB_IN_KEY: &str = "Invalid character: tab character not allowed in key";
const TAB_IN_PREFIX: &str = "Invalid character: tab character not allowed in prefix";
const TAB_IN_MESSAGE: &str = "Invalid character: tab character not allowed in message";

fn fixed(text: &'static str) -> ParseError {
    ParseError(Cow::Borrowed(text))
}

fn unknown_command(word: &str) -> ParseError {
    ParseError(Cow::Owned(format!("Unknown command: {word}")))
}

// ---------------------------------------------------------------------------
// Whitespace and keywords.

/// ASCII bytes that are `char::is_whitespace`: TAB, LF, VT, FF, CR, SP.
/// (Not `u8::is_ascii_whitespace`, which omits VT.)
#[inline]
fn is_ascii_ws(b: u8) -> bool {
    matches!(b, b'\t'..=b'\r' | b' ')
}

/// `str::trim` (Unicode White_Space at both ends) with an ASCII fast path:
/// strip ASCII whitespace bytes, and only fall back to the char-decoding
/// trim when an end of what is left is a non-ASCII byte.
#[inline]
fn trim_ws(s: &str) -> &str {
    let bytes = s.as_bytes();
    let start = bytes
        .iter()
        .position(|&b| !is_ascii_ws(b))
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|&b| !is_ascii_ws(b))
        .map_or(start, |i| i + 1);
    // Only ASCII bytes were skipped, so both are char boundaries.
    let inner = s.get(start..end).unwrap_or("");
    match (inner.as_bytes().first(), inner.as_bytes().last()) {
        (Some(f), Some(l)) if f.is_ascii() && l.is_ascii() => inner,
        _ => inner.trim(),
    }
}

fn has_tab(s: &str) -> bool {
    memchr::memchr(b'\t', s.as_bytes()).is_some()
}

fn has_sp(s: &str) -> bool {
    memchr::memchr(b' ', s.as_bytes()).is_some()
}

/// The separator bytes of §2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sep {
    Sp,
    Tab,
}

const LOW_BITS: u64 = u64::from_ne_bytes([0x01; 8]);
const HIGH_BITS: u64 = u64::from_ne_bytes([0x80; 8]);

/// Whether one of the 8 bytes of `word` is an SP or a TAB (the classic
/// "has a zero byte" test on `word ^ SP…` and `word ^ TAB…`).
#[inline]
fn has_sp_or_tab(word: u64) -> bool {
    let zero_byte = |x: u64| x.wrapping_sub(LOW_BITS) & !x & HIGH_BITS != 0;
    zero_byte(word ^ (LOW_BITS * u64::from(b' ')))
        || zero_byte(word ^ (LOW_BITS * u64::from(b'\t')))
}

/// Splits `s` around its first SP or TAB: (before, which, after).
#[inline]
fn split_at_sep(s: &str) -> Option<(&str, Sep, &str)> {
    let (i, sep) = find_sp_or_tab(s)?;
    // SP and TAB are ASCII, so both sides are char boundaries.
    let (head, tail) = s.split_at_checked(i)?;
    Some((head, sep, tail.get(1..)?))
}

/// Index and kind of the first SP or TAB in `s`. Skips 8 bytes at a time
/// (SWAR), then looks at single bytes: command words and keys are short,
/// so memchr's setup would cost more than the whole scan.
#[inline]
fn find_sp_or_tab(s: &str) -> Option<(usize, Sep)> {
    let bytes = s.as_bytes();
    let (chunks, _) = bytes.as_chunks::<8>();
    let start = 8 * chunks
        .iter()
        .take_while(|chunk| !has_sp_or_tab(u64::from_ne_bytes(**chunk)))
        .count();
    // The flagged chunk, or the tail: at most 8 bytes.
    let window = bytes.get(start..).unwrap_or_default();
    window
        .iter()
        .take(8)
        .enumerate()
        .find_map(|(j, &b)| match b {
            b' ' => Some((start + j, Sep::Sp)),
            b'\t' => Some((start + j, Sep::Tab)),
            _ => None,
        })
}

/// Longest keyword (`REPLICATE`).
const KW_MAX: usize = 9;

/// The Unicode uppercase of `word` (what 1.x compares), written into `out`,
/// or `None` if it is longer than [`KW_MAX`] bytes or not pure ASCII — such
/// a word matches no keyword. Non-ASCII input can still match: `ſet` → `SET`,
/// `ﬂushdb` → `FLUSHDB`.
#[inline]
fn upper_ascii<'b>(word: &str, out: &'b mut [u8; KW_MAX]) -> Option<&'b [u8]> {
    let bytes = word.as_bytes();
    // Non-ASCII chars whose uppercase is ASCII take at most 2 bytes per
    // uppercase char (`ſ` → `S`, `ı` → `I`, `ﬀ` → `FF`), so a longer word
    // cannot fit (checked by the `keyword_case_folding…` property test).
    if bytes.len() > 2 * KW_MAX {
        return None;
    }
    if bytes.is_ascii() {
        let dst = out.get_mut(..bytes.len())?;
        dst.copy_from_slice(bytes);
        dst.make_ascii_uppercase();
        return Some(dst);
    }
    let mut n = 0;
    for c in word.chars().flat_map(char::to_uppercase) {
        if !c.is_ascii() {
            return None;
        }
        *out.get_mut(n)? = c as u8;
        n += 1;
    }
    out.get(..n)
}

/// Case-insensitive (Unicode uppercase) comparison with an uppercase ASCII
/// word.
fn eq_upper(word: &str, upper: &[u8]) -> bool {
    let mut buf = [0; KW_MAX];
    upper_ascii(word, &mut buf) == Some(upper)
}

/// Command words (after uppercasing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kw {
    Get,
    Set,
    Del,
    Delete,
    Append,
    Prepend,
    Inc,
    Incr,
    Dec,
    Decr,
    MGet,
    MSet,
    Exists,
    Scan,
    Truncate,
    FlushDb,
    Flush,
    Ping,
    Echo,
    DbSize,
    Memory,
    Stats,
    Info,
    Version,
    Shutdown,
    Client,
    Hash,
    Sync,
    Replicate,
    Nodes,
    ReadOnly,
    Auth,
    Expire,
    Pexpire,
    Ttl,
    Pttl,
    Persist,
    SetEx,
}

#[inline]
fn keyword(word: &str) -> Option<Kw> {
    let mut buf = [0; KW_MAX];
    Some(match upper_ascii(word, &mut buf)? {
        b"GET" => Kw::Get,
        b"SET" => Kw::Set,
        b"DEL" => Kw::Del,
        b"DELETE" => Kw::Delete,
        b"APPEND" => Kw::Append,
        b"PREPEND" => Kw::Prepend,
        b"INC" => Kw::Inc,
        b"INCR" => Kw::Incr,
        b"DEC" => Kw::Dec,
        b"DECR" => Kw::Decr,
        b"MGET" => Kw::MGet,
        b"MSET" => Kw::MSet,
        b"EXISTS" => Kw::Exists,
        b"SCAN" => Kw::Scan,
        b"TRUNCATE" => Kw::Truncate,
        b"FLUSHDB" => Kw::FlushDb,
        b"FLUSH" => Kw::Flush,
        b"PING" => Kw::Ping,
        b"ECHO" => Kw::Echo,
        b"DBSIZE" => Kw::DbSize,
        b"MEMORY" => Kw::Memory,
        b"STATS" => Kw::Stats,
        b"INFO" => Kw::Info,
        b"VERSION" => Kw::Version,
        b"SHUTDOWN" => Kw::Shutdown,
        b"CLIENT" => Kw::Client,
        b"HASH" => Kw::Hash,
        b"SYNC" => Kw::Sync,
        b"REPLICATE" => Kw::Replicate,
        b"NODES" => Kw::Nodes,
        b"READONLY" => Kw::ReadOnly,
        b"AUTH" => Kw::Auth,
        b"EXPIRE" => Kw::Expire,
        b"PEXPIRE" => Kw::Pexpire,
        b"TTL" => Kw::Ttl,
        b"PTTL" => Kw::Pttl,
        b"PERSIST" => Kw::Persist,
        b"SETEX" => Kw::SetEx,
        _ => return None,
    })
}

// ---------------------------------------------------------------------------
// §2 step 3: a single word.

/// `t`: the trimmed line, without SP or TAB.
fn single_word(t: &str) -> Result<Command<'_>, ParseError> {
    let requires = |text| Err(fixed(text));
    match keyword(t) {
        Some(Kw::Get) => requires("GET command requires arguments"),
        Some(Kw::Set) => requires("SET command requires arguments"),
        Some(Kw::Delete) => requires("DELETE command requires arguments"),
        Some(Kw::Del) => requires("DEL command requires arguments"),
        Some(Kw::Echo) => requires("ECHO command requires arguments"),
        Some(Kw::Exists) => requires("EXISTS command requires arguments"),
        Some(Kw::Sync) => requires("SYNC command requires arguments"),
        Some(Kw::Replicate) => requires("REPLICATE command requires arguments"),
        Some(Kw::ReadOnly) => requires("READONLY command requires arguments"),
        Some(Kw::Auth) => requires("AUTH command requires arguments"),
        Some(Kw::Expire) => requires("EXPIRE command requires arguments"),
        Some(Kw::Pexpire) => requires("PEXPIRE command requires arguments"),
        Some(Kw::Ttl) => requires("TTL command requires arguments"),
        Some(Kw::Pttl) => requires("PTTL command requires arguments"),
        Some(Kw::Persist) => requires("PERSIST command requires arguments"),
        Some(Kw::SetEx) => requires("SETEX command requires arguments"),
        Some(Kw::Truncate) => Ok(Command::Truncate),
        Some(Kw::Stats) => Ok(Command::Stats),
        Some(Kw::Info) => Ok(Command::Info),
        Some(Kw::Version) => Ok(Command::Version),
        // FLUSH: this project's alias of FLUSHDB (§3.2, §12); unknown on 1.x.
        Some(Kw::FlushDb | Kw::Flush) => Ok(Command::FlushDb),
        Some(Kw::Memory) => Ok(Command::Memory),
        Some(Kw::Shutdown) => Ok(Command::Shutdown),
        Some(Kw::DbSize) => Ok(Command::DbSize),
        Some(Kw::Scan) => Ok(Command::Scan(b"")),
        Some(Kw::Hash) => Ok(Command::Hash(None)),
        Some(Kw::Ping) => Ok(Command::Ping(None)),
        Some(Kw::Client) => Ok(Command::ClientList),
        Some(Kw::Nodes) => Ok(Command::Nodes),
        // INC, DEC, APPEND, PREPEND, MGET, MSET (and the INCR/DECR aliases)
        // alone are unknown commands (§2 step 3.5).
        Some(
            Kw::Inc
            | Kw::Incr
            | Kw::Dec
            | Kw::Decr
            | Kw::Append
            | Kw::Prepend
            | Kw::MGet
            | Kw::MSet,
        )
        | None => Err(unknown_command(t)),
    }
}

// ---------------------------------------------------------------------------
// §2 step 4: command word `c` (without TAB), first SP, rest `r` (non-empty,
// no trailing WS).

fn with_args<'a>(c: &'a str, r: &'a str) -> Result<Command<'a>, ParseError> {
    let Some(kw) = keyword(c) else {
        return Err(unknown_command(c));
    };
    match kw {
        Kw::Get => one_token(r, "GET command accepts only one argument", TAB_IN_KEY)
            .map(|key| Command::Get(key.as_bytes())),
        Kw::Set => key_value(r, &SET_ERRORS).map(|(k, v)| Command::Set(k, v)),
        Kw::Append => key_value(r, &APPEND_ERRORS).map(|(k, v)| Command::Append(k, v)),
        Kw::Prepend => key_value(r, &PREPEND_ERRORS).map(|(k, v)| Command::Prepend(k, v)),
        Kw::Del | Kw::Delete => delete(r),
        Kw::Inc => numeric(r, &INC_ERRORS, false),
        Kw::Incr => numeric(r, &INCR_ERRORS, false),
        Kw::Dec => numeric(r, &DEC_ERRORS, true),
        Kw::Decr => numeric(r, &DECR_ERRORS, true),
        Kw::MGet => words(r, "MGET command requires at least one key").map(Command::MGet),
        Kw::Exists => words(r, "EXISTS command requires at least one key").map(Command::Exists),
        Kw::MSet => mset(r),
        Kw::Scan => one_token(r, "SCAN command accepts only one argument", TAB_IN_PREFIX)
            .map(|prefix| Command::Scan(prefix.as_bytes())),
        // "any arguments ignored"; FLUSH is this project's alias of FLUSHDB.
        Kw::Truncate => Ok(Command::Truncate),
        Kw::FlushDb | Kw::Flush => Ok(Command::FlushDb),
        Kw::Stats => Ok(Command::Stats),
        Kw::Info => Ok(Command::Info),
        Kw::Ping => verbatim(r).map(|msg| Command::Ping(Some(msg))),
        Kw::Echo => verbatim(r).map(Command::Echo),
        Kw::DbSize => Err(fixed("DBSIZE command does not accept any arguments")),
        Kw::Memory => Err(fixed("MEMORY command does not accept any arguments")),
        // Single word only: with arguments they are unknown, named as typed.
        Kw::Version | Kw::Shutdown => Err(unknown_command(c)),
        Kw::Client => client(r),
        // `HASH *` is returned as `Some(b"*")`: the reply echoes the
        // argument (`HASH * <hex64>`), the executor treats `*` as all keys.
        Kw::Hash => one_token(r, "HASH command accepts only one argument", TAB_IN_KEY)
            .map(|prefix| Command::Hash(Some(prefix.as_bytes()))),
        Kw::Sync => sync(r),
        Kw::Replicate => replicate(r),
        Kw::ReadOnly => read_only(r),
        Kw::Nodes => Err(fixed("NODES command does not accept any arguments")),
        Kw::Expire => expire(r, "EXPIRE", Unit::Seconds),
        Kw::Pexpire => expire(r, "PEXPIRE", Unit::Millis),
        Kw::Ttl => one_token(r, "TTL command accepts only one argument", TAB_IN_KEY).map(|key| {
            Command::Expiry(ExpiryCmd::TextTtl {
                key: key.as_bytes(),
                unit: Unit::Seconds,
            })
        }),
        Kw::Pttl => one_token(r, "PTTL command accepts only one argument", TAB_IN_KEY).map(|key| {
            Command::Expiry(ExpiryCmd::TextTtl {
                key: key.as_bytes(),
                unit: Unit::Millis,
            })
        }),
        Kw::Persist => one_token(r, "PERSIST command accepts only one argument", TAB_IN_KEY)
            .map(|key| Command::Expiry(ExpiryCmd::TextPersist(key.as_bytes()))),
        Kw::SetEx => setex(r),
        Kw::Auth => auth(r),
    }
}

/// `AUTH password` or `AUTH user password` (words separated by spaces).
fn auth(r: &str) -> Result<Command<'_>, ParseError> {
    let mut words = r.split(' ').filter(|w| !w.is_empty());
    match (words.next(), words.next(), words.next()) {
        (Some(p), None, None) => Ok(Command::Auth {
            user: None,
            password: p.as_bytes(),
        }),
        (Some(u), Some(p), None) => Ok(Command::Auth {
            user: Some(u.as_bytes()),
            password: p.as_bytes(),
        }),
        _ => Err(fixed(
            "AUTH command accepts a password, or a user name and a password",
        )),
    }
}

/// `EXPIRE key seconds` / `PEXPIRE key ms`: words, exactly two; the time
/// is what `i64::from_str` accepts.
fn expire<'a>(r: &'a str, word: &str, unit: Unit) -> Result<Command<'a>, ParseError> {
    let mut tokens = r.split_whitespace();
    let (Some(key), Some(amount), None) = (tokens.next(), tokens.next(), tokens.next()) else {
        return Err(ParseError(Cow::Owned(format!(
            "{word} command requires a key and a time"
        ))));
    };
    let Ok(amount) = amount.parse::<i64>() else {
        return Err(ParseError(Cow::Owned(format!(
            "{word} command time must be a valid integer"
        ))));
    };
    Ok(Command::Expiry(ExpiryCmd::TextExpire {
        key: key.as_bytes(),
        amount,
        unit,
    }))
}

/// `SETEX key seconds value`: key and seconds are words separated by one
/// SP each, the value is the rest of the line, verbatim (as for SET).
fn setex(r: &str) -> Result<Command<'_>, ParseError> {
    const MISSING: &str = "SETEX command requires a key, seconds and value";
    let Some((key, Sep::Sp, rest)) = split_at_sep(r) else {
        return Err(fixed(MISSING));
    };
    if key.is_empty() {
        return Err(fixed("SETEX command key cannot be empty"));
    }
    let Some((secs, Sep::Sp, value)) = split_at_sep(rest) else {
        return Err(fixed(MISSING));
    };
    let Ok(seconds) = secs.parse::<i64>() else {
        return Err(fixed("SETEX command seconds must be a valid integer"));
    };
    Ok(Command::Expiry(ExpiryCmd::TextSetEx {
        key: key.as_bytes(),
        seconds,
        value: value.as_bytes(),
    }))
}

// ---------------------------------------------------------------------------
// Argument styles.

/// **one-token**: `r` is the argument; an SP in it is the "accepts only one
/// argument" error, a TAB is `tab_err`. When both occur the SP error wins
/// (the spec does not order them; this is the order the style table lists).
#[inline]
fn one_token<'a>(
    r: &'a str,
    too_many: &'static str,
    tab_err: &'static str,
) -> Result<&'a str, ParseError> {
    match split_at_sep(r) {
        None => Ok(r),
        Some((_, Sep::Sp, _)) => Err(fixed(too_many)),
        Some((_, Sep::Tab, rest)) if has_sp(rest) => Err(fixed(too_many)),
        Some((_, Sep::Tab, _)) => Err(fixed(tab_err)),
    }
}

/// Error texts of one key+rest command.
struct KeyValueErrors {
    missing: &'static str,
    empty_key: &'static str,
}

const SET_ERRORS: KeyValueErrors = KeyValueErrors {
    missing: "SET command requires a key and value",
    empty_key: "SET command key cannot be empty",
};
const APPEND_ERRORS: KeyValueErrors = KeyValueErrors {
    missing: "APPEND command requires a key and value",
    empty_key: "APPEND command key cannot be empty",
};
const PREPEND_ERRORS: KeyValueErrors = KeyValueErrors {
    missing: "PREPEND command requires a key and value",
    empty_key: "PREPEND command key cannot be empty",
};

/// **key+rest**: key = `r` up to its first SP, value = everything after it,
/// verbatim (leading spaces, TABs, quotes kept).
#[inline]
fn key_value<'a>(r: &'a str, errs: &KeyValueErrors) -> Result<(&'a [u8], &'a [u8]), ParseError> {
    // Scan to the first SP or TAB: a TAB first means the key (which ends at
    // the first SP) holds a TAB, if there is an SP at all.
    match split_at_sep(r) {
        None => Err(fixed(errs.missing)),
        Some((_, Sep::Tab, rest)) if has_sp(rest) => Err(fixed(TAB_IN_KEY)),
        Some((_, Sep::Tab, _)) => Err(fixed(errs.missing)),
        Some(("", Sep::Sp, _)) => Err(fixed(errs.empty_key)),
        Some((key, Sep::Sp, value)) => Ok((key.as_bytes(), value.as_bytes())),
    }
}

/// `DEL`/`DELETE`: one-token, returned as `Args::One`.
///
/// The key is one token split at SP only, so it may contain other
/// whitespace (NBSP, VT, a lone CR) exactly like a key stored by SET; it is
/// passed as `Args::One`, never re-split.
#[inline]
fn delete(r: &str) -> Result<Command<'_>, ParseError> {
    const TOO_MANY: &str = "DELETE command accepts only one argument";
    let key = one_token(r, TOO_MANY, TAB_IN_KEY)?;
    Ok(Command::Delete(Args::One(key.as_bytes())))
}

/// **words** for MGET/EXISTS. `r` always holds a word (see module
/// invariants); `none` is the † text of §4 kept for robustness.
fn words<'a>(r: &'a str, none: &'static str) -> Result<Args<'a>, ParseError> {
    if r.split_whitespace().next().is_none() {
        return Err(fixed(none));
    }
    Ok(Args::Words(r))
}

/// MSET: words, an even count >= 2.
fn mset(r: &str) -> Result<Command<'_>, ParseError> {
    match r.split_whitespace().count() {
        0 => Err(fixed("MSET command requires at least one key-value pair")),
        n if n % 2 != 0 => Err(fixed(
            "MSET command requires an even number of arguments (key-value pairs)",
        )),
        _ => Ok(Command::MSet(Args::Words(r))),
    }
}

/// **verbatim** for PING/ECHO: `r` as is, TAB rejected.
#[inline]
fn verbatim(r: &str) -> Result<&[u8], ParseError> {
    if has_tab(r) {
        Err(fixed(TAB_IN_MESSAGE))
    } else {
        Ok(r.as_bytes())
    }
}

/// Error texts of one counter command.
///
/// §3.2: INCR/DECR are aliases "with the same replies and error texts
/// (naming the word as typed)". The texts name the *command word* the
/// client used — `INC`, `INCR`, `DEC` or `DECR` — uppercased like every
/// other `<WORD> command …` text (§2 uses the uppercased word `<U>` in
/// `… requires arguments`), so `incr k x` →
/// `INCR command amount must be a valid number`.
struct NumericErrors {
    requires_key: &'static str,
    bad_amount: &'static str,
}

const INC_ERRORS: NumericErrors = NumericErrors {
    requires_key: "INC command requires a key",
    bad_amount: "INC command amount must be a valid number",
};
const INCR_ERRORS: NumericErrors = NumericErrors {
    requires_key: "INCR command requires a key",
    bad_amount: "INCR command amount must be a valid number",
};
const DEC_ERRORS: NumericErrors = NumericErrors {
    requires_key: "DEC command requires a key",
    bad_amount: "DEC command amount must be a valid number",
};
const DECR_ERRORS: NumericErrors = NumericErrors {
    requires_key: "DECR command requires a key",
    bad_amount: "DECR command amount must be a valid number",
};

/// INC/DEC (§5): words; `key [amount]`, tokens after the second ignored.
/// A lone token that parses as an i64 is "requires a key" (`INC 5`).
/// Amounts are exactly what `i64::from_str` accepts.
fn numeric<'a>(
    r: &'a str,
    errs: &NumericErrors,
    decrement: bool,
) -> Result<Command<'a>, ParseError> {
    let mut tokens = r.split_whitespace();
    let (key, amount) = match (tokens.next(), tokens.next()) {
        (None, _) => return Err(fixed(errs.requires_key)),
        (Some(only), None) => {
            if only.parse::<i64>().is_ok() {
                return Err(fixed(errs.requires_key));
            }
            (only, 1)
        }
        (Some(key), Some(amount)) => match amount.parse::<i64>() {
            Ok(amount) => (key, amount),
            Err(_) => return Err(fixed(errs.bad_amount)),
        },
    };
    Ok(Command::Numeric {
        key: key.as_bytes(),
        amount,
        decrement,
    })
}

/// `CLIENT LIST`: first word case-insensitively `LIST`, rest ignored.
fn client(r: &str) -> Result<Command<'_>, ParseError> {
    match r.split_whitespace().next() {
        Some(sub) if eq_upper(sub, b"LIST") => Ok(Command::ClientList),
        _ => Err(fixed("Unknown CLIENT subcommand")),
    }
}

/// `SYNC host port [--full] [--verify] [--force] [--rejoin]`: words. Options are matched
/// case-sensitively, as written in §3.2.
fn sync(r: &str) -> Result<Command<'_>, ParseError> {
    let mut tokens = r.split_whitespace();
    let (Some(host), Some(port)) = (tokens.next(), tokens.next()) else {
        return Err(fixed("SYNC requires <port> as the second argument"));
    };
    let Ok(port) = port.parse::<u16>() else {
        return Err(fixed("Invalid port: must be an integer in 0..=65535"));
    };
    let (mut full, mut verify, mut force, mut rejoin) = (false, false, false, false);
    for option in tokens {
        let (flag, duplicate) = match option {
            "--full" => (&mut full, "Duplicate option: --full"),
            "--verify" => (&mut verify, "Duplicate option: --verify"),
            "--force" => (&mut force, "Duplicate option: --force"),
            "--rejoin" => (&mut rejoin, "Duplicate option: --rejoin"),
            other => {
                return Err(ParseError(Cow::Owned(format!("Unknown option: {other}"))));
            }
        };
        if *flag {
            return Err(fixed(duplicate));
        }
        *flag = true;
    }
    Ok(Command::Sync {
        host,
        port,
        full,
        verify,
        force,
        rejoin,
    })
}

/// `REPLICATE enable|disable|status`: `r` trimmed, case-insensitive.
fn replicate(r: &str) -> Result<Command<'_>, ParseError> {
    let action = trim_ws(r);
    let mut buf = [0; KW_MAX];
    match upper_ascii(action, &mut buf) {
        Some(b"ENABLE") => Ok(Command::Replicate(ReplicateAction::Enable)),
        Some(b"DISABLE") => Ok(Command::Replicate(ReplicateAction::Disable)),
        Some(b"STATUS") => Ok(Command::Replicate(ReplicateAction::Status)),
        _ => Err(ParseError(Cow::Owned(format!(
            "Unknown REPLICATE action: {action}"
        )))),
    }
}

/// `READONLY on|off|status` (action case-insensitive, like REPLICATE).
fn read_only(r: &str) -> Result<Command<'_>, ParseError> {
    let action = trim_ws(r);
    let mut buf = [0; KW_MAX];
    match upper_ascii(action, &mut buf) {
        Some(b"ON") => Ok(Command::ReadOnly(ReadOnlyAction::On)),
        Some(b"OFF") => Ok(Command::ReadOnly(ReadOnlyAction::Off)),
        Some(b"STATUS") => Ok(Command::ReadOnly(ReadOnlyAction::Status)),
        _ => Err(ParseError(Cow::Owned(format!(
            "Unknown READONLY action: {action}"
        )))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resumed_line_search_skips_what_was_searched() {
        let line = b"SET k vvvvvvvvvv\r\nGET k\r\n";
        let mut scanned = 0;
        for cut in 0..17 {
            assert_eq!(parse_resume(&line[..cut], &mut scanned), Parsed::Incomplete);
            assert_eq!(scanned, cut);
        }
        assert_eq!(
            parse_resume(line, &mut scanned),
            Parsed::Request(Command::Set(b"k", b"vvvvvvvvvv"), 18)
        );
        assert_eq!(scanned, 0);
        // The line limit still applies to a resumed line.
        let long = vec![b'a'; MAX_LINE];
        let mut scanned = MAX_LINE - 1;
        assert_eq!(
            parse_resume(&long, &mut scanned),
            Parsed::Fatal(Fatal::LineTooLong)
        );
        // Skipping the searched prefix is what makes it linear: a prefix
        // claimed searched is not searched (here it does hold an LF).
        let mut scanned = 3;
        assert_eq!(parse_resume(b"a\nbc", &mut scanned), Parsed::Incomplete);
    }

    /// Parses `line`, expecting a request that consumes all of it.
    #[track_caller]
    fn req(line: &str) -> Command<'_> {
        match parse(line.as_bytes()) {
            Parsed::Request(cmd, n) => {
                assert_eq!(n, line.len(), "consumed for {line:?}");
                cmd
            }
            other => panic!("{line:?}: expected a request, got {other:?}"),
        }
    }

    /// Parses `line`, expecting an error reply that consumes all of it.
    #[track_caller]
    fn err(line: &str) -> String {
        err_bytes(line.as_bytes())
    }

    #[track_caller]
    fn err_bytes(line: &[u8]) -> String {
        match parse(line) {
            Parsed::Invalid(e, n) => {
                assert_eq!(n, line.len(), "consumed for {line:?}");
                e.to_string()
            }
            other => panic!("{line:?}: expected an error, got {other:?}"),
        }
    }

    fn words(s: &str) -> Args<'_> {
        Args::Words(s)
    }

    fn num(key: &str, amount: i64, decrement: bool) -> Command<'_> {
        Command::Numeric {
            key: key.as_bytes(),
            amount,
            decrement,
        }
    }

    // -- §14 byte-exact session, request by request ------------------------

    #[test]
    fn session_of_section_14() {
        use Command::*;
        assert_eq!(req("SET user:1 Alice\r\n"), Set(b"user:1", b"Alice"));
        assert_eq!(req("get user:1\r\n"), Get(b"user:1"));
        assert_eq!(req("GET nope\r\n"), Get(b"nope"));
        assert_eq!(req("SET e \"\"\r\n"), Set(b"e", b"\"\""));
        assert_eq!(req("GET e\r\n"), Get(b"e"));
        assert_eq!(req("SET k2  two\r\n"), Set(b"k2", b" two"));
        assert_eq!(req("GET k2\r\n"), Get(b"k2"));
        assert_eq!(err("SET  v\r\n"), "SET command key cannot be empty");
        assert_eq!(err("SET k\r\n"), "SET command requires a key and value");
        assert_eq!(err("SET\r\n"), "SET command requires arguments");
        assert_eq!(err("\r\n"), "Empty command");
        assert_eq!(err("FOO bar\r\n"), "Unknown command: FOO");
        assert_eq!(err("GET a b\r\n"), "GET command accepts only one argument");
        assert_eq!(err("GET\tkey\r\n"), TAB_IN_COMMAND);
        assert_eq!(err("SET k\tx v\r\n"), TAB_IN_KEY);
        assert_eq!(req("INC c\r\n"), num("c", 1, false));
        assert_eq!(req("INC c 5\r\n"), num("c", 5, false));
        assert_eq!(req("DEC d\r\n"), num("d", 1, true));
        assert_eq!(
            err("INC c abc\r\n"),
            "INC command amount must be a valid number"
        );
        assert_eq!(req("INC user:1\r\n"), num("user:1", 1, false));
        assert_eq!(err("INC\r\n"), "Unknown command: INC");
        assert_eq!(req("SET g Hello\r\n"), Set(b"g", b"Hello"));
        assert_eq!(req("APPEND g  World!\r\n"), Append(b"g", b" World!"));
        assert_eq!(req("PREPEND g Hi, \r\n"), Prepend(b"g", b"Hi,"));
        assert_eq!(req("APPEND g \"\"\r\n"), Append(b"g", b"\"\""));
        assert_eq!(req("DEL g\r\n"), Delete(Args::One(b"g")));
        assert_eq!(req("DELETE g\r\n"), Delete(Args::One(b"g")));
        assert_eq!(req("TRUNCATE\r\n"), Truncate);
        assert_eq!(req("MSET a 1 b 2\r\n"), MSet(words("a 1 b 2")));
        assert_eq!(req("MGET a b zz\r\n"), MGet(words("a b zz")));
        assert_eq!(req("MGET x y\r\n"), MGet(words("x y")));
        assert_eq!(
            err("MSET a\r\n"),
            "MSET command requires an even number of arguments (key-value pairs)"
        );
        assert_eq!(req("SCAN a\r\n"), Scan(b"a"));
        assert_eq!(req("SCAN nosuch\r\n"), Scan(b"nosuch"));
        assert_eq!(req("EXISTS a b a zz\r\n"), Exists(words("a b a zz")));
        assert_eq!(req("DBSIZE\r\n"), DbSize);
        assert_eq!(req("PING\r\n"), Ping(None));
        assert_eq!(req("PING hello world\r\n"), Ping(Some(b"hello world")));
        assert_eq!(req("ECHO test\r\n"), Echo(b"test"));
        assert_eq!(req("HASH nosuch\r\n"), Hash(Some(b"nosuch")));
        assert_eq!(
            req("REPLICATE status\r\n"),
            Replicate(ReplicateAction::Status)
        );
        assert_eq!(req("VERSION\r\n"), Version);
        assert_eq!(req("FLUSH\r\n"), FlushDb);
        assert_eq!(req("SHUTDOWN\r\n"), Shutdown);
    }

    #[test]
    fn pipelined_buffer_consumed_offsets() {
        let buf = b"SET a 1\r\nGET a\r\nDEL a\r\n";
        let mut pos = 0;
        let mut seen = Vec::new();
        while let Parsed::Request(cmd, n) = parse(&buf[pos..]) {
            seen.push((cmd, n));
            pos += n;
        }
        assert_eq!(
            seen,
            vec![
                (Command::Set(b"a", b"1"), 9),
                (Command::Get(b"a"), 7),
                (Command::Delete(Args::One(b"a")), 7),
            ]
        );
        assert_eq!(pos, buf.len());
        assert_eq!(parse(&buf[pos..]), Parsed::Incomplete);
    }

    #[test]
    fn pipelined_mixed_outcomes_and_partial_tail() {
        let buf = b"GET a\n\nFOO\r\nPING x\nSET k v";
        let mut pos = 0;
        let mut consumed = Vec::new();
        loop {
            match parse(&buf[pos..]) {
                Parsed::Request(_, n) | Parsed::Invalid(_, n) => {
                    consumed.push(n);
                    pos += n;
                }
                Parsed::Incomplete => break,
                Parsed::Skip(_) | Parsed::Fatal(_) => panic!("unexpected outcome"),
            }
        }
        assert_eq!(consumed, [6, 1, 5, 7]);
        assert_eq!(&buf[pos..], b"SET k v");
        assert_eq!(
            parse_eof(&buf[pos..]),
            Parsed::Request(Command::Set(b"k", b"v"), 7)
        );
    }

    // -- §1 framing ---------------------------------------------------------

    #[test]
    fn incomplete_without_lf() {
        assert_eq!(parse(b""), Parsed::Incomplete);
        assert_eq!(parse(b"GET a"), Parsed::Incomplete);
        assert_eq!(parse(b"GET a\r"), Parsed::Incomplete);
        // Invalid UTF-8 in an unterminated line is not judged yet.
        assert_eq!(parse(b"GET \xff"), Parsed::Incomplete);
    }

    #[test]
    fn lf_without_cr_and_lone_cr() {
        assert_eq!(req("SET a 1\n"), Command::Set(b"a", b"1"));
        assert_eq!(req("SET k x\ry\r\n"), Command::Set(b"k", b"x\ry"));
        assert_eq!(req("GET a\r\r\n"), Command::Get(b"a"));
        // A lone CR is not a terminator.
        assert_eq!(parse(b"GET a\rGET b"), Parsed::Incomplete);
    }

    #[test]
    fn lf_inside_value_splits_requests() {
        let buf = b"SET k a\nb\r\n";
        assert_eq!(parse(buf), Parsed::Request(Command::Set(b"k", b"a"), 8));
        assert_eq!(
            parse(&buf[8..]),
            Parsed::Invalid(ParseError("Unknown command: b".into()), 3)
        );
    }

    #[test]
    fn max_line_exactly_accepted() {
        // "SET k " + value + "\r\n" == MAX_LINE bytes.
        let mut line = b"SET k ".to_vec();
        line.resize(MAX_LINE - 2, b'v');
        line.extend_from_slice(b"\r\n");
        assert_eq!(line.len(), MAX_LINE);
        match parse(&line) {
            Parsed::Request(Command::Set(b"k", v), n) => {
                assert_eq!(n, MAX_LINE);
                assert_eq!(v.len(), MAX_LINE - 8);
            }
            other => panic!("{:?}", std::mem::discriminant(&other)),
        }
        // With more data behind it, still accepted and only the line eaten.
        line.extend_from_slice(b"GET k\r\n");
        assert!(matches!(parse(&line), Parsed::Request(_, MAX_LINE)));
    }

    #[test]
    fn max_line_plus_one_rejected() {
        let mut line = b"SET k ".to_vec();
        line.resize(MAX_LINE - 1, b'v');
        line.extend_from_slice(b"\r\n");
        assert_eq!(line.len(), MAX_LINE + 1);
        assert_eq!(parse(&line), Parsed::Fatal(Fatal::LineTooLong));
        // Rejected as soon as MAX_LINE bytes without LF are buffered.
        assert_eq!(parse(&line[..MAX_LINE]), Parsed::Fatal(Fatal::LineTooLong));
        assert_eq!(parse(&line[..MAX_LINE - 1]), Parsed::Incomplete);
        assert_eq!(
            parse_eof(&line[..MAX_LINE]),
            Parsed::Fatal(Fatal::LineTooLong)
        );
        // A tail of MAX_LINE - 1 bytes plus the implied LF fits.
        assert!(matches!(
            parse_eof(&line[..MAX_LINE - 1]),
            Parsed::Request(_, n) if n == MAX_LINE - 1
        ));
    }

    #[test]
    fn invalid_utf8_is_fatal() {
        assert_eq!(parse(b"SET k \xff\r\n"), Parsed::Fatal(Fatal::InvalidUtf8));
        assert_eq!(parse(b"\xc3\n"), Parsed::Fatal(Fatal::InvalidUtf8));
        assert_eq!(
            parse(b"GET \xed\xa0\x80\n"),
            Parsed::Fatal(Fatal::InvalidUtf8)
        );
        assert_eq!(parse_eof(b"GET \xff"), Parsed::Fatal(Fatal::InvalidUtf8));
        // Only the first line is judged.
        assert!(matches!(parse(b"GET a\n\xff\n"), Parsed::Request(_, 6)));
        // Valid multibyte UTF-8 is fine.
        assert_eq!(
            req("SET proj:αβγ ünï ☃\r\n"),
            Command::Set("proj:αβγ".as_bytes(), "ünï ☃".as_bytes())
        );
    }

    #[test]
    fn nul_and_control_bytes_are_data() {
        assert_eq!(req("SET k a\0b\x01\r\n"), Command::Set(b"k", b"a\0b\x01"));
        assert_eq!(req("GET \0\r\n"), Command::Get(b"\0"));
    }

    #[test]
    fn eof_tail() {
        assert_eq!(parse_eof(b""), Parsed::Incomplete);
        assert_eq!(parse_eof(b"PING"), Parsed::Request(Command::Ping(None), 4));
        assert_eq!(
            parse_eof(b"GET a\r"),
            Parsed::Request(Command::Get(b"a"), 6)
        );
        assert_eq!(
            parse_eof(b"  "),
            Parsed::Invalid(ParseError("Empty command".into()), 2)
        );
        // A complete line is parsed as by `parse`.
        assert_eq!(
            parse_eof(b"GET a\nGET b"),
            Parsed::Request(Command::Get(b"a"), 6)
        );
    }

    // -- whitespace ---------------------------------------------------------

    #[test]
    fn whole_line_trim() {
        assert_eq!(req("SET k v   \r\n"), Command::Set(b"k", b"v"));
        assert_eq!(req("  GET a  \r\n"), Command::Get(b"a"));
        assert_eq!(req("\t GET a\t\r\n"), Command::Get(b"a"));
        assert_eq!(req("\x0b\x0cGET a\x0b\x0c\r\n"), Command::Get(b"a"));
        assert_eq!(err(" \t \r\n"), "Empty command");
        assert_eq!(err("\x0b\n"), "Empty command");
    }

    #[test]
    fn unicode_whitespace_trim() {
        // NBSP, ideographic space, NEL, line separator, en quad.
        assert_eq!(req("\u{a0}GET a\u{a0}\r\n"), Command::Get(b"a"));
        assert_eq!(
            req("\u{3000} SET k v \u{3000}\r\n"),
            Command::Set(b"k", b"v")
        );
        assert_eq!(req("\u{85}PING\u{2028}\n"), Command::Ping(None));
        assert_eq!(req("PING x\u{2000} \u{a0}\n"), Command::Ping(Some(b"x")));
        assert_eq!(err("\u{a0}\u{3000} \u{2029}\r\n"), "Empty command");
        // Inside a line, non-SP whitespace is data for key+rest/one-token...
        assert_eq!(
            req("SET a\u{a0}b v\u{a0}w\r\n"),
            Command::Set("a\u{a0}b".as_bytes(), "v\u{a0}w".as_bytes())
        );
        assert_eq!(req("GET a\u{a0}b\r\n"), Command::Get("a\u{a0}b".as_bytes()));
        // ...and a word without SP is one (unknown) command word.
        assert_eq!(err("GET\u{a0}a\r\n"), "Unknown command: GET\u{a0}a");
        // ...but a separator for the words style.
        assert_eq!(
            req("MGET a\u{a0}b\tc\r\n"),
            Command::MGet(Args::Words("a\u{a0}b\tc"))
        );
        assert_eq!(Args::Words("a\u{a0}b\tc").len(), 3);
    }

    #[test]
    fn trim_fast_path_matches_std_trim() {
        for s in [
            "",
            " ",
            "a",
            " a ",
            "\u{a0}",
            "a\u{a0}",
            "\u{a0}a",
            " \u{a0} a \u{a0} ",
            "\x0b a \x0c",
            "é",
            " é ",
            "\u{85}x\u{85}",
            "x\r",
            "\r\n",
        ] {
            assert_eq!(trim_ws(s), s.trim(), "{s:?}");
        }
    }

    #[test]
    fn leading_spaces_of_value_kept() {
        assert_eq!(req("SET k  x\r\n"), Command::Set(b"k", b" x"));
        assert_eq!(req("SET k \t x\r\n"), Command::Set(b"k", b"\t x"));
        assert_eq!(req("PING  x\r\n"), Command::Ping(Some(b" x")));
        assert_eq!(req("ECHO   a  b\r\n"), Command::Echo(b"  a  b"));
    }

    // -- TAB rules ------------------------------------------------------------

    #[test]
    fn tab_rules() {
        // In the command word.
        assert_eq!(err("GET\tkey\r\n"), TAB_IN_COMMAND);
        assert_eq!(err("G\tET key\r\n"), TAB_IN_COMMAND);
        assert_eq!(err("FOO\tBAR\r\n"), TAB_IN_COMMAND);
        assert_eq!(err("SET\tk v\r\n"), TAB_IN_COMMAND);
        // In keys.
        assert_eq!(err("GET a\tb\r\n"), TAB_IN_KEY);
        assert_eq!(err("SET k\tx v\r\n"), TAB_IN_KEY);
        assert_eq!(err("APPEND k\tx v\r\n"), TAB_IN_KEY);
        assert_eq!(err("PREPEND k\tx v\r\n"), TAB_IN_KEY);
        assert_eq!(err("DEL a\tb\r\n"), TAB_IN_KEY);
        assert_eq!(err("HASH a\tb\r\n"), TAB_IN_KEY);
        // In a SCAN prefix, a PING/ECHO message.
        assert_eq!(err("SCAN a\tb\r\n"), TAB_IN_PREFIX);
        assert_eq!(err("PING a\tb\r\n"), TAB_IN_MESSAGE);
        assert_eq!(err("ECHO a\tb\r\n"), TAB_IN_MESSAGE);
        // Allowed in values.
        assert_eq!(req("SET k a\tb\r\n"), Command::Set(b"k", b"a\tb"));
        assert_eq!(req("APPEND k \tb\r\n"), Command::Append(b"k", b"\tb"));
        // key+rest without SP: the missing value is reported first.
        assert_eq!(err("SET k\tv\r\n"), "SET command requires a key and value");
        // one-token with both SP and TAB: the SP error wins.
        assert_eq!(
            err("GET a\tb c\r\n"),
            "GET command accepts only one argument"
        );
        // words style: TAB separates.
        assert_eq!(req("INC k\t5\r\n"), num("k", 5, false));
        // Ignored arguments may contain anything.
        assert_eq!(req("STATS a\tb\r\n"), Command::Stats);
    }

    // -- case ---------------------------------------------------------------

    #[test]
    fn command_words_case_insensitive() {
        assert_eq!(req("set K V\r\n"), Command::Set(b"K", b"V"));
        assert_eq!(req("SeT k v\r\n"), Command::Set(b"k", b"v"));
        assert_eq!(req("mget A b\r\n"), Command::MGet(Args::Words("A b")));
        assert_eq!(req("dbsize\r\n"), Command::DbSize);
        assert_eq!(req("Ping\r\n"), Command::Ping(None));
        assert_eq!(req("client list\r\n"), Command::ClientList);
        assert_eq!(req("CLIENT LiSt extra\r\n"), Command::ClientList);
        assert_eq!(
            req("replicate EnAbLe\r\n"),
            Command::Replicate(ReplicateAction::Enable)
        );
        // Unicode uppercase, as 1.x: `ſ` uppercases to `S`, `ﬂ` to `FL`.
        assert_eq!(req("ſet k v\r\n"), Command::Set(b"k", b"v"));
        assert_eq!(req("ﬂushdb\r\n"), Command::FlushDb);
        assert_eq!(err("ſet\r\n"), "SET command requires arguments");
        // Other non-ASCII words are unknown, echoed as typed.
        assert_eq!(err("GÉT a\r\n"), "Unknown command: GÉT");
        assert_eq!(err("ßcan\r\n"), "Unknown command: ßcan");
    }

    // -- every command and every §4 text ---------------------------------------

    #[test]
    fn requires_arguments() {
        for (line, text) in [
            ("GET", "GET command requires arguments"),
            ("get", "GET command requires arguments"),
            ("SET", "SET command requires arguments"),
            ("DELETE", "DELETE command requires arguments"),
            ("del", "DEL command requires arguments"),
            ("Echo", "ECHO command requires arguments"),
            ("EXISTS", "EXISTS command requires arguments"),
            ("SYNC", "SYNC command requires arguments"),
            ("replicate", "REPLICATE command requires arguments"),
            ("TTL", "TTL command requires arguments"),
            ("pexpire", "PEXPIRE command requires arguments"),
            ("SETEX", "SETEX command requires arguments"),
        ] {
            assert_eq!(err(&format!("{line}\r\n")), text);
        }
    }

    #[test]
    fn single_word_unknown_as_typed() {
        for word in [
            "INC", "inc", "INCR", "DEC", "Decr", "APPEND", "PREPEND", "MGET", "mset", "foo",
            "HEALTH", "KEYS", "*",
        ] {
            assert_eq!(
                err(&format!("{word}\r\n")),
                format!("Unknown command: {word}")
            );
        }
    }

    #[test]
    fn expiry_commands() {
        fn cmd(line: &'static str) -> Command<'static> {
            match parse(line.as_bytes()) {
                Parsed::Request(c, _) => c,
                other => panic!("{line:?}: {other:?}"),
            }
        }
        assert_eq!(
            cmd("EXPIRE k 10\r\n"),
            Command::Expiry(ExpiryCmd::TextExpire {
                key: b"k",
                amount: 10,
                unit: Unit::Seconds
            })
        );
        assert_eq!(
            cmd("pexpire k -5\r\n"),
            Command::Expiry(ExpiryCmd::TextExpire {
                key: b"k",
                amount: -5,
                unit: Unit::Millis
            })
        );
        assert_eq!(
            cmd("SETEX k 7 a  b\tc\r\n"),
            Command::Expiry(ExpiryCmd::TextSetEx {
                key: b"k",
                seconds: 7,
                value: b"a  b\tc"
            })
        );
        assert_eq!(
            cmd("PTTL k\r\n"),
            Command::Expiry(ExpiryCmd::TextTtl {
                key: b"k",
                unit: Unit::Millis
            })
        );
        assert_eq!(
            cmd("PERSIST k\r\n"),
            Command::Expiry(ExpiryCmd::TextPersist(b"k"))
        );
        for (line, text) in [
            ("EXPIRE k\r\n", "EXPIRE command requires a key and a time"),
            (
                "EXPIRE k 1 2\r\n",
                "EXPIRE command requires a key and a time",
            ),
            (
                "EXPIRE k x\r\n",
                "EXPIRE command time must be a valid integer",
            ),
            (
                "SETEX k 5\r\n",
                "SETEX command requires a key, seconds and value",
            ),
            (
                "SETEX k x v\r\n",
                "SETEX command seconds must be a valid integer",
            ),
            ("TTL a b\r\n", "TTL command accepts only one argument"),
        ] {
            assert_eq!(err(line), text);
        }
    }

    #[test]
    fn argument_less_commands() {
        use Command::*;
        for (line, cmd) in [
            ("TRUNCATE", Truncate),
            ("STATS", Stats),
            ("INFO", Info),
            ("VERSION", Version),
            ("FLUSHDB", FlushDb),
            ("FLUSH", FlushDb),
            ("MEMORY", Memory),
            ("SHUTDOWN", Shutdown),
            ("DBSIZE", DbSize),
            ("SCAN", Scan(b"")),
            ("HASH", Hash(None)),
            ("PING", Ping(None)),
            ("CLIENT", ClientList),
        ] {
            assert_eq!(req(&format!("{line}\r\n")), cmd, "{line}");
            assert_eq!(req(&format!("{}\n", line.to_lowercase())), cmd, "{line}");
        }
    }

    #[test]
    fn ignored_arguments() {
        use Command::*;
        assert_eq!(req("TRUNCATE all now\r\n"), Truncate);
        assert_eq!(req("FLUSHDB x\r\n"), FlushDb);
        assert_eq!(req("FLUSH x\r\n"), FlushDb);
        assert_eq!(req("STATS x\r\n"), Stats);
        assert_eq!(req("INFO server\r\n"), Info);
    }

    #[test]
    fn single_word_only_commands() {
        assert_eq!(err("VERSION x\r\n"), "Unknown command: VERSION");
        assert_eq!(err("version x\r\n"), "Unknown command: version");
        assert_eq!(err("SHUTDOWN now\r\n"), "Unknown command: SHUTDOWN");
        assert_eq!(
            err("DBSIZE x\r\n"),
            "DBSIZE command does not accept any arguments"
        );
        assert_eq!(
            err("memory usage\r\n"),
            "MEMORY command does not accept any arguments"
        );
    }

    #[test]
    fn unknown_command_with_arguments() {
        assert_eq!(err("FOO bar\r\n"), "Unknown command: FOO");
        assert_eq!(err("foo bar baz\r\n"), "Unknown command: foo");
        assert_eq!(err("KEYS *\r\n"), "Unknown command: KEYS");
        assert_eq!(err("REPLICATEX a\r\n"), "Unknown command: REPLICATEX");
        assert_eq!(err("αβγ δ\r\n"), "Unknown command: αβγ");
    }

    #[test]
    fn get_one_token() {
        assert_eq!(req("GET a\r\n"), Command::Get(b"a"));
        assert_eq!(err("GET  a\r\n"), "GET command accepts only one argument");
        assert_eq!(err("GET a b\r\n"), "GET command accepts only one argument");
        assert_eq!(req("GET \"\"\r\n"), Command::Get(b"\"\""));
    }

    #[test]
    fn delete_one_token() {
        let too_many = "DELETE command accepts only one argument";
        assert_eq!(req("del k\r\n"), Command::Delete(Args::One(b"k")));
        assert_eq!(err("DEL a b\r\n"), too_many);
        assert_eq!(err("DELETE a b\r\n"), too_many);
        assert_eq!(err("DEL  a\r\n"), too_many);
        // Keys may hold non-SP whitespace, as with SET: one verbatim key.
        let one = |k: &'static str| Command::Delete(Args::One(k.as_bytes()));
        assert_eq!(req("DEL a\u{a0}b\r\n"), one("a\u{a0}b"));
        assert_eq!(req("DEL a\rb\r\n"), one("a\rb"));
        assert_eq!(req("DEL \u{a0}a\r\n"), one("\u{a0}a"));
    }

    #[test]
    fn key_value_commands() {
        use Command::*;
        assert_eq!(req("APPEND k v w\r\n"), Append(b"k", b"v w"));
        assert_eq!(
            req("PREPEND k \"Hello \"\r\n"),
            Prepend(b"k", b"\"Hello \"")
        );
        assert_eq!(
            req("SET k \"Alice Johnson\"\r\n"),
            Set(b"k", b"\"Alice Johnson\"")
        );
        assert_eq!(err("SET k  \r\n"), "SET command requires a key and value");
        for cmd in ["SET", "APPEND", "PREPEND"] {
            assert_eq!(
                err(&format!("{cmd} k\r\n")),
                format!("{cmd} command requires a key and value")
            );
            assert_eq!(
                err(&format!("{} k\n", cmd.to_lowercase())),
                format!("{cmd} command requires a key and value")
            );
            assert_eq!(
                err(&format!("{cmd}  v\r\n")),
                format!("{cmd} command key cannot be empty")
            );
            assert_eq!(
                err(&format!("{cmd}   v w\r\n")),
                format!("{cmd} command key cannot be empty")
            );
        }
    }

    #[test]
    fn numeric_commands() {
        assert_eq!(req("INC k\r\n"), num("k", 1, false));
        assert_eq!(req("DEC k\r\n"), num("k", 1, true));
        assert_eq!(req("INCR k 7\r\n"), num("k", 7, false));
        assert_eq!(req("decr k 7\r\n"), num("k", 7, true));
        assert_eq!(req("INC k -3\r\n"), num("k", -3, false));
        assert_eq!(req("DEC k -3\r\n"), num("k", -3, true));
        // Tokens after the second are ignored.
        assert_eq!(req("INC k 2 junk more\r\n"), num("k", 2, false));
        // Words style: any whitespace run separates.
        assert_eq!(req("INC   k \u{a0} 4\r\n"), num("k", 4, false));
        // A key that looks numeric (§5).
        assert_eq!(err("INC 5\r\n"), "INC command requires a key");
        assert_eq!(err("INC -5\r\n"), "INC command requires a key");
        assert_eq!(err("INC +5\r\n"), "INC command requires a key");
        assert_eq!(err("DEC 0\r\n"), "DEC command requires a key");
        assert_eq!(req("INC 5 3\r\n"), num("5", 3, false));
        // A lone token that is not an i64 is a key.
        assert_eq!(req("INC 1.5\r\n"), num("1.5", 1, false));
        assert_eq!(
            req("INC 9223372036854775808\r\n"),
            num("9223372036854775808", 1, false)
        );
        assert_eq!(
            err("INC c abc\r\n"),
            "INC command amount must be a valid number"
        );
        assert_eq!(
            err("DEC c abc\r\n"),
            "DEC command amount must be a valid number"
        );
    }

    /// §3.2: INCR/DECR name the word the client used, uppercased.
    #[test]
    fn numeric_alias_error_texts() {
        assert_eq!(err("INCR 5\r\n"), "INCR command requires a key");
        assert_eq!(err("incr 5\r\n"), "INCR command requires a key");
        assert_eq!(err("DECR 5\r\n"), "DECR command requires a key");
        assert_eq!(err("inc 5\r\n"), "INC command requires a key");
        assert_eq!(err("dec 5\r\n"), "DEC command requires a key");
        assert_eq!(
            err("INCR k x\r\n"),
            "INCR command amount must be a valid number"
        );
        assert_eq!(
            err("decr k x\r\n"),
            "DECR command amount must be a valid number"
        );
        assert_eq!(
            err("Inc k x\r\n"),
            "INC command amount must be a valid number"
        );
    }

    /// §5: an amount is exactly what `i64::from_str` accepts.
    #[test]
    fn numeric_amount_edge_cases() {
        let bad = "INC command amount must be a valid number";
        assert_eq!(req("INC k +5\r\n"), num("k", 5, false));
        assert_eq!(req("INC k -3\r\n"), num("k", -3, false));
        assert_eq!(req("INC k 0\r\n"), num("k", 0, false));
        assert_eq!(req("INC k 007\r\n"), num("k", 7, false));
        assert_eq!(
            req("INC k 9223372036854775807\r\n"),
            num("k", i64::MAX, false)
        );
        assert_eq!(
            req("DEC k -9223372036854775808\r\n"),
            num("k", i64::MIN, true)
        );
        for amount in [
            "1.5",
            "1e3",
            "0x10",
            "9223372036854775808",
            "-9223372036854775809",
            "99999999999999999999999",
            "+",
            "-",
            "--1",
            "+-1",
            "1_000",
            "١٢",
            "１２",
            "5a",
            "abc",
        ] {
            assert_eq!(err(&format!("INC k {amount}\r\n")), bad, "{amount}");
        }
        // ` 12` (leading space) cannot reach the amount through the words
        // style, but the rule holds: std rejects it.
        assert!(" 12".parse::<i64>().is_err());
        assert_eq!(req("INC k  12\r\n"), num("k", 12, false));
    }

    #[test]
    fn bulk_commands() {
        let odd = "MSET command requires an even number of arguments (key-value pairs)";
        assert_eq!(req("MSET a 1\r\n"), Command::MSet(Args::Words("a 1")));
        assert_eq!(
            req("MSET  a 1\tb 2\r\n"),
            Command::MSet(Args::Words(" a 1\tb 2"))
        );
        assert_eq!(err("MSET a\r\n"), odd);
        assert_eq!(err("MSET a 1 b\r\n"), odd);
        assert_eq!(err("MSET a\u{a0}1 b\r\n"), odd);
        assert_eq!(req("MGET a\r\n"), Command::MGet(Args::Words("a")));
        assert_eq!(req("EXISTS a a\r\n"), Command::Exists(Args::Words("a a")));
        let Command::MGet(args) = req("MGET a  b\t c\r\n") else {
            panic!()
        };
        assert_eq!(args.iter().collect::<Vec<_>>(), [b"a", b"b", b"c"]);
    }

    #[test]
    fn scan_and_hash() {
        use Command::*;
        assert_eq!(req("SCAN user:\r\n"), Scan(b"user:"));
        assert_eq!(req("scan\r\n"), Scan(b""));
        assert_eq!(
            err("SCAN a b\r\n"),
            "SCAN command accepts only one argument"
        );
        assert_eq!(err("SCAN  a\r\n"), "SCAN command accepts only one argument");
        assert_eq!(req("HASH\r\n"), Hash(None));
        assert_eq!(req("HASH *\r\n"), Hash(Some(b"*")));
        assert_eq!(req("hash user:\r\n"), Hash(Some(b"user:")));
        assert_eq!(
            err("HASH a b\r\n"),
            "HASH command accepts only one argument"
        );
    }

    #[test]
    fn ping_and_echo() {
        use Command::*;
        assert_eq!(req("PING hello world\r\n"), Ping(Some(b"hello world")));
        assert_eq!(req("ping  x\r\n"), Ping(Some(b" x")));
        assert_eq!(req("ECHO a \"b\" c\r\n"), Echo(b"a \"b\" c"));
        assert_eq!(err("ECHO\r\n"), "ECHO command requires arguments");
    }

    #[test]
    fn client() {
        assert_eq!(req("CLIENT LIST\r\n"), Command::ClientList);
        assert_eq!(req("CLIENT  list x y\r\n"), Command::ClientList);
        assert_eq!(err("CLIENT KILL\r\n"), "Unknown CLIENT subcommand");
        assert_eq!(err("CLIENT LISTS\r\n"), "Unknown CLIENT subcommand");
        assert_eq!(err("CLIENT SETNAME x\r\n"), "Unknown CLIENT subcommand");
    }

    #[test]
    fn sync() {
        let sync = |host, port, full, verify| Command::Sync {
            host,
            port,
            full,
            verify,
            force: false,
            rejoin: false,
        };
        assert_eq!(
            req("SYNC 127.0.0.1 7380\r\n"),
            sync("127.0.0.1", 7380, false, false)
        );
        assert_eq!(req("sync h 0 --full\r\n"), sync("h", 0, true, false));
        assert_eq!(
            req("SYNC h 1 --rejoin\r\n"),
            Command::Sync {
                host: "h",
                port: 1,
                full: false,
                verify: false,
                force: false,
                rejoin: true
            }
        );
        assert_eq!(
            req("SYNC h 65535 --verify --full\r\n"),
            sync("h", 65535, true, true)
        );
        assert_eq!(req("SYNC  h\t1  --verify\r\n"), sync("h", 1, false, true));
        assert_eq!(
            req("SYNC h 1 --force --full\r\n"),
            Command::Sync {
                host: "h",
                port: 1,
                full: true,
                verify: false,
                force: true,
                rejoin: false,
            }
        );
        assert_eq!(
            err("SYNC h 1 --force --force\r\n"),
            "Duplicate option: --force"
        );
        let no_port = "SYNC requires <port> as the second argument";
        assert_eq!(err("SYNC h\r\n"), no_port);
        let bad_port = "Invalid port: must be an integer in 0..=65535";
        for port in ["65536", "-1", "x", "80.0", "99999999999"] {
            assert_eq!(err(&format!("SYNC h {port}\r\n")), bad_port, "{port}");
        }
        assert_eq!(
            err("SYNC h 1 --full --full\r\n"),
            "Duplicate option: --full"
        );
        assert_eq!(
            err("SYNC h 1 --verify --full --verify\r\n"),
            "Duplicate option: --verify"
        );
        assert_eq!(err("SYNC h 1 --fast\r\n"), "Unknown option: --fast");
        assert_eq!(err("SYNC h 1 --FULL\r\n"), "Unknown option: --FULL");
        assert_eq!(err("SYNC h 1 --full x\r\n"), "Unknown option: x");
    }

    #[test]
    fn replicate() {
        use ReplicateAction::*;
        assert_eq!(req("REPLICATE enable\r\n"), Command::Replicate(Enable));
        assert_eq!(req("REPLICATE DISABLE\r\n"), Command::Replicate(Disable));
        assert_eq!(req("replicate  Status\r\n"), Command::Replicate(Status));
        assert_eq!(
            req("REPLICATE \u{a0}status\r\n"),
            Command::Replicate(Status)
        );
        assert_eq!(err("REPLICATE on\r\n"), "Unknown REPLICATE action: on");
        assert_eq!(
            err("REPLICATE  enable now\r\n"),
            "Unknown REPLICATE action: enable now"
        );
        assert_eq!(
            err("REPLICATE statusstatus\r\n"),
            "Unknown REPLICATE action: statusstatus"
        );
    }

    #[test]
    fn read_only() {
        use ReadOnlyAction::*;
        assert_eq!(req("READONLY on\r\n"), Command::ReadOnly(On));
        assert_eq!(req("readonly OFF\r\n"), Command::ReadOnly(Off));
        assert_eq!(req("ReadOnly  status\r\n"), Command::ReadOnly(Status));
        assert_eq!(err("READONLY\r\n"), "READONLY command requires arguments");
        assert_eq!(err("READONLY yes\r\n"), "Unknown READONLY action: yes");
        assert_eq!(
            err("READONLY on now\r\n"),
            "Unknown READONLY action: on now"
        );
    }

    /// Fixed texts are borrowed; only texts echoing input allocate.
    #[test]
    fn error_texts_borrowed_unless_echoing_input() {
        let cow = |line: &str| match parse(line.as_bytes()) {
            Parsed::Invalid(ParseError(c), _) => c,
            other => panic!("{other:?}"),
        };
        for line in [
            "\r\n",
            "GET a b\r\n",
            "SET\r\n",
            "SET k\r\n",
            "INC 5\r\n",
            "MSET a\r\n",
            "GET\tx\r\n",
            "SYNC h\r\n",
            "SYNC h 1 --full --full\r\n",
            "CLIENT x\r\n",
            "DBSIZE x\r\n",
        ] {
            assert!(matches!(cow(line), Cow::Borrowed(_)), "{line:?}");
        }
        for line in ["FOO\r\n", "FOO x\r\n", "SYNC h 1 -x\r\n", "REPLICATE x\r\n"] {
            assert!(matches!(cow(line), Cow::Owned(_)), "{line:?}");
        }
    }

    /// Every non-† text of the §4 catalogue that the parser produces.
    #[test]
    fn error_catalogue() {
        let mut long = b"GET ".to_vec();
        long.resize(MAX_LINE + 10, b'k');
        assert_eq!(parse(&long), Parsed::Fatal(Fatal::LineTooLong));
        for (line, text) in [
            ("\r\n", "Empty command"),
            ("GET\tk\r\n", TAB_IN_COMMAND),
            ("GET\r\n", "GET command requires arguments"),
            ("nope\r\n", "Unknown command: nope"),
            ("GET a\tb\r\n", TAB_IN_KEY),
            ("SCAN a\tb\r\n", TAB_IN_PREFIX),
            ("PING a\tb\r\n", TAB_IN_MESSAGE),
            ("GET a b\r\n", "GET command accepts only one argument"),
            ("DEL a b\r\n", "DELETE command accepts only one argument"),
            ("SCAN a b\r\n", "SCAN command accepts only one argument"),
            ("HASH a b\r\n", "HASH command accepts only one argument"),
            ("SET k\r\n", "SET command requires a key and value"),
            ("SET  v\r\n", "SET command key cannot be empty"),
            ("APPEND k\r\n", "APPEND command requires a key and value"),
            ("APPEND  v\r\n", "APPEND command key cannot be empty"),
            ("PREPEND k\r\n", "PREPEND command requires a key and value"),
            ("PREPEND  v\r\n", "PREPEND command key cannot be empty"),
            ("INC 1\r\n", "INC command requires a key"),
            ("INC k x\r\n", "INC command amount must be a valid number"),
            ("DEC 1\r\n", "DEC command requires a key"),
            ("DEC k x\r\n", "DEC command amount must be a valid number"),
            (
                "MSET a b c\r\n",
                "MSET command requires an even number of arguments (key-value pairs)",
            ),
            (
                "DBSIZE x\r\n",
                "DBSIZE command does not accept any arguments",
            ),
            (
                "MEMORY x\r\n",
                "MEMORY command does not accept any arguments",
            ),
            ("CLIENT x\r\n", "Unknown CLIENT subcommand"),
            ("REPLICATE x\r\n", "Unknown REPLICATE action: x"),
            ("SYNC h\r\n", "SYNC requires <port> as the second argument"),
            (
                "SYNC h p\r\n",
                "Invalid port: must be an integer in 0..=65535",
            ),
            ("SYNC h 1 --full --full\r\n", "Duplicate option: --full"),
            (
                "SYNC h 1 --verify --verify\r\n",
                "Duplicate option: --verify",
            ),
            ("SYNC h 1 -v\r\n", "Unknown option: -v"),
        ] {
            assert_eq!(err(line), text, "{line:?}");
        }
    }

    #[test]
    fn dagger_texts_reachable_only_through_helpers() {
        // R is never empty through `parse`; the helpers still answer sanely.
        assert_eq!(
            super::words("", "MGET command requires at least one key")
                .unwrap_err()
                .to_string(),
            "MGET command requires at least one key"
        );
        assert_eq!(
            mset(" ").unwrap_err().to_string(),
            "MSET command requires at least one key-value pair"
        );
        assert_eq!(
            numeric("", &INC_ERRORS, false).unwrap_err().to_string(),
            "INC command requires a key"
        );
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    /// Fragments the streams are built from: command words, separators,
    /// line ends, Unicode whitespace and letters, numbers.
    #[rustfmt::skip]
    const FRAGMENTS: &[&[u8]] = &[
        b"GET", b"get", b"SET", b"set", b"DEL", b"DELETE", b"APPEND", b"PREPEND", b"INC", b"incr",
        b"DEC", b"DECR", b"MGET", b"MSET", b"EXISTS", b"SCAN", b"TRUNCATE", b"FLUSHDB", b"FLUSH",
        b"PING", b"ECHO", b"DBSIZE", b"MEMORY", b"STATS", b"INFO", b"VERSION", b"SHUTDOWN",
        b"CLIENT", b"LIST", b"HASH", b"*", b"SYNC", b"--full", b"--verify", b"REPLICATE",
        b"status", b"k", b"key", b"v", b"5", b"-3", b"+7", b"65536", b"9223372036854775808",
        b"\"\"", b" ", b" ", b" ", b"  ", b"\t", b"\r", b"\r\n", b"\n", b"\n", b"\x0b", b"\0",
        b"\xce\xb1", b"\xc2\xa0", b"\xe3\x80\x80", b"\xc2\x85", b"\xc5\xbf", b"\xef\xac\x82",
        b"\xe2\x98\x83",
    ];

    /// Invalid UTF-8: a stray byte, a truncated sequence, a continuation
    /// byte, an encoded surrogate.
    const INVALID: &[&[u8]] = &[b"\xff", b"\xc3", b"\x80", b"\xed\xa0\x80"];

    /// Mostly valid fragments, so that most lines get past the UTF-8 check.
    fn fragment() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            60 => proptest::sample::select(FRAGMENTS).prop_map(<[u8]>::to_vec),
            1 => proptest::sample::select(INVALID).prop_map(<[u8]>::to_vec),
            1 => any::<u8>().prop_map(|b| vec![b]),
        ]
    }

    #[rustfmt::skip]
    const WORDS: &[&[u8]] = &[
        b"GET", b"set", b"DEL", b"APPEND", b"PREPEND", b"INC", b"DECR", b"MGET", b"MSET",
        b"EXISTS", b"SCAN", b"FLUSH", b"PING", b"ECHO", b"DBSIZE", b"CLIENT", b"HASH", b"SYNC",
        b"REPLICATE",
    ];

    /// A line without LF plus its terminator, usually starting with a
    /// command word and an SP so that many lines parse.
    fn line() -> impl Strategy<Value = Vec<u8>> {
        (
            proptest::option::weighted(0.8, proptest::sample::select(WORDS)),
            proptest::collection::vec(fragment(), 0..10),
            prop_oneof![Just(&b"\n"[..]), Just(&b"\r\n"[..])],
        )
            .prop_map(|(word, parts, end)| {
                let mut l = word.map_or(Vec::new(), |w| [w, b" "].concat());
                l.extend(parts.concat());
                l.retain(|&b| b != b'\n');
                l.extend_from_slice(end);
                l
            })
    }

    /// Random fragments, or whole lines followed by a random tail.
    fn stream() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            proptest::collection::vec(fragment(), 0..48).prop_map(|v| v.concat()),
            (
                proptest::collection::vec(line(), 0..8),
                proptest::collection::vec(fragment(), 0..6),
            )
                .prop_map(|(lines, tail)| [lines.concat(), tail.concat()].concat()),
        ]
    }

    fn is_ws_end(s: &[u8]) -> bool {
        std::str::from_utf8(s)
            .ok()
            .and_then(|s| s.chars().next_back())
            .is_some_and(char::is_whitespace)
    }

    fn within(part: &[u8], line: &[u8]) -> bool {
        let (p, l) = (part.as_ptr() as usize, line.as_ptr() as usize);
        p >= l && p + part.len() <= l + line.len()
    }

    /// Semantic invariants of a successfully parsed command of `line`.
    fn check_command(cmd: &Command<'_>, line: &[u8]) {
        let key_ok = |k: &[u8]| {
            !k.is_empty() && !k.contains(&b' ') && !k.contains(&b'\t') && within(k, line)
        };
        match cmd {
            Command::Get(k) => assert!(key_ok(k)),
            Command::Set(k, v) | Command::Append(k, v) | Command::Prepend(k, v) => {
                assert!(key_ok(k));
                assert!(!v.is_empty() && !is_ws_end(v) && within(v, line));
            }
            Command::Delete(a) => {
                assert_eq!(a.len(), 1);
                assert!(a.iter().all(key_ok));
            }
            Command::MSet(a) => assert!(a.len() >= 2 && a.len() % 2 == 0),
            Command::MGet(a) | Command::Exists(a) => assert!(!a.is_empty()),
            Command::Numeric { key, .. } => assert!(!key.is_empty() && within(key, line)),
            Command::Scan(p) => assert!(!p.contains(&b' ') && !p.contains(&b'\t')),
            Command::Hash(Some(p)) => assert!(key_ok(p)),
            Command::Ping(Some(m)) | Command::Echo(m) => {
                assert!(!m.is_empty() && !m.contains(&b'\t') && within(m, line));
            }
            _ => {}
        }
    }

    /// Parses `buf` to the end, checking every outcome against the framing
    /// contract. Returns the number of non-Incomplete outcomes and whether
    /// parsing stopped on a Fatal.
    fn drive(buf: &[u8]) -> (usize, bool) {
        let mut pos = 0;
        let mut outcomes = 0;
        loop {
            let rest = &buf[pos..];
            let lf = rest.iter().position(|&b| b == b'\n');
            match parse(rest) {
                Parsed::Request(cmd, n) => {
                    assert_eq!(Some(n - 1), lf);
                    check_command(&cmd, &rest[..n]);
                    pos += n;
                }
                Parsed::Invalid(_, n) => {
                    assert_eq!(Some(n - 1), lf);
                    pos += n;
                }
                Parsed::Skip(_) => panic!("the text protocol never skips"),
                Parsed::Incomplete => {
                    assert!(lf.is_none() && rest.len() < MAX_LINE);
                    // At EOF the tail is answered unless empty.
                    match parse_eof(rest) {
                        Parsed::Incomplete => assert!(rest.is_empty()),
                        Parsed::Request(_, n) | Parsed::Invalid(_, n) => {
                            assert_eq!(n, rest.len())
                        }
                        Parsed::Fatal(f) => {
                            assert_eq!(f, Fatal::InvalidUtf8);
                            assert!(std::str::from_utf8(rest).is_err());
                        }
                        Parsed::Skip(_) => panic!("the text protocol never skips"),
                    }
                    return (outcomes, false);
                }
                Parsed::Fatal(Fatal::InvalidUtf8) => {
                    let lf = lf.expect("a judged line has an LF");
                    assert!(std::str::from_utf8(&rest[..lf]).is_err());
                    return (outcomes + 1, true);
                }
                Parsed::Fatal(f) => panic!("unexpected {f:?}"),
            }
            outcomes += 1;
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        #[test]
        fn random_streams_keep_the_framing_contract(buf in stream()) {
            drive(&buf);
        }

        #[test]
        fn trim_matches_std_trim(s in "[ \t\r\x0b\x0ca\u{a0}\u{85}\u{3000}\u{2028}é☃]{0,12}") {
            prop_assert_eq!(trim_ws(&s), s.trim());
        }

        #[test]
        fn keyword_case_folding_is_unicode_uppercase(
            s in "[a-zA-Z\u{17f}\u{131}\u{df}\u{fb00}-\u{fb06}é]{0,12}"
        ) {
            let mut buf = [0; KW_MAX];
            let upper = s.to_uppercase();
            let expected = (upper.is_ascii() && upper.len() <= KW_MAX).then_some(upper.as_bytes());
            prop_assert_eq!(upper_ascii(&s, &mut buf), expected);
        }

        #[test]
        fn swar_scan_matches_naive(s in "[a \t\u{a0}é]{0,40}") {
            let naive = s.bytes().enumerate().find_map(|(i, b)| match b {
                b' ' => Some((i, Sep::Sp)),
                b'\t' => Some((i, Sep::Tab)),
                _ => None,
            });
            prop_assert_eq!(find_sp_or_tab(&s), naive);
        }

        #[test]
        fn random_bytes_never_panic(buf in proptest::collection::vec(any::<u8>(), 0..256)) {
            drive(&buf);
        }

        #[test]
        fn n_lines_give_n_outcomes(lines in proptest::collection::vec(line(), 0..16)) {
            let buf = lines.concat();
            let (outcomes, fatal) = drive(&buf);
            if fatal {
                // Stopped at the first line that is not UTF-8.
                let first_bad = lines
                    .iter()
                    .position(|l| std::str::from_utf8(l).is_err())
                    .expect("a fatal needs an invalid line");
                prop_assert_eq!(outcomes, first_bad + 1);
            } else {
                prop_assert_eq!(outcomes, lines.len());
            }
        }
    }
}
