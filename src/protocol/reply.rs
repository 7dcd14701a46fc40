//! Reply encoding: every byte a node writes back on the wire, in the text
//! protocol and in RESP, is produced here.
//!
//! Two layers:
//!
//! * **Encoders** ([`ok`], [`error`], [`bulk`], [`array()`], [`integer`],
//!   [`header`], [`insert_counted`], [`NIL`] …): plain functions appending
//!   one RESP item (or the text/RESP form of `OK` and errors) to a buffer.
//!   The RESP-only code (Redis-compatibility commands, `MKV.*` answers,
//!   the client's requests) writes with these; there is one RESP encoder.
//! * **[`Reply`]**: a writer that knows the connection's [`Proto`] and
//!   offers one method per *kind* of answer (a value or its absence, a
//!   count, a key list, …). The executor says what it answers; how each
//!   kind looks in each protocol is decided here, in one place.
//!
//! Byte-exact forms: see docs/protocol.md.

use std::fmt::Display;

/// The wire protocol of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// The MerkleKV text protocol.
    Text,
    /// RESP2 (RESP3 after `HELLO 3`).
    Resp,
}

// ---- encoders --------------------------------------------------------------

/// Appends CRLF.
#[inline]
pub fn crlf(out: &mut Vec<u8>) {
    out.extend_from_slice(b"\r\n");
}

/// `OK` / `+OK`.
pub fn ok(out: &mut Vec<u8>, proto: Proto) {
    out.extend_from_slice(match proto {
        Proto::Text => b"OK\r\n",
        Proto::Resp => b"+OK\r\n",
    });
}

/// Redis error codes other than `ERR` that messages may start with.
pub const CODES: &[&str] = &[
    "NOPROTO",
    "OOM",
    "NOAUTH",
    "WRONGPASS",
    "NOPERM",
    "READONLY",
    "EXECABORT",
    "BUSY",
    "NOTBUSY",
    "UNKILLABLE",
    "NOSCRIPT",
];

/// Whether `msg` starts with one of [`CODES`] (sent as `-<msg>`).
pub fn has_code(msg: &str) -> bool {
    msg.split_once(' ')
        .is_some_and(|(code, _)| CODES.contains(&code))
}

/// `ERROR <msg>` / `-ERR <msg>`. A RESP message that starts with a Redis
/// error code other than ERR ([`CODES`]) is sent as `-<msg>`, the way
/// Redis clients expect to see the code.
pub fn error(out: &mut Vec<u8>, proto: Proto, msg: &str) {
    out.extend_from_slice(match proto {
        Proto::Text => b"ERROR ",
        Proto::Resp if has_code(msg) => b"-",
        Proto::Resp => b"-ERR ",
    });
    // A reply line must stay one line whatever the message holds.
    out.extend(
        msg.bytes()
            .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
    );
    crlf(out);
}

/// A RESP header: the type byte, then `n`, then CRLF (`$5`, `*2`, `%1`).
pub fn header(out: &mut Vec<u8>, kind: u8, n: usize) {
    let mut b = itoa::Buffer::new();
    out.push(kind);
    out.extend_from_slice(b.format(n).as_bytes());
    crlf(out);
}

/// Inserts the line `<prefix><n>\r\n` at `at`, in front of the bytes
/// written since: for replies whose count is known only at their end.
/// Allocates nothing (the inserted bytes come from an exact-size iterator).
pub fn insert_counted(out: &mut Vec<u8>, at: usize, prefix: &[u8], n: usize) {
    let mut b = itoa::Buffer::new();
    let line = prefix.iter().chain(b.format(n).as_bytes()).chain(b"\r\n");
    out.splice(at..at, line.copied());
}

/// RESP bulk string.
pub fn bulk(out: &mut Vec<u8>, v: &[u8]) {
    header(out, b'$', v.len());
    out.extend_from_slice(v);
    crlf(out);
}

/// RESP integer.
pub fn integer(out: &mut Vec<u8>, n: i64) {
    let mut b = itoa::Buffer::new();
    out.push(b':');
    out.extend_from_slice(b.format(n).as_bytes());
    crlf(out);
}

/// RESP array header.
pub fn array(out: &mut Vec<u8>, n: usize) {
    header(out, b'*', n);
}

/// A map of `n` pairs: `%n` in RESP3, a flat array of `2n` in RESP2.
pub fn map(out: &mut Vec<u8>, n: usize, resp3: bool) {
    if resp3 {
        header(out, b'%', n);
    } else {
        array(out, 2 * n);
    }
}

/// A RESP request: an array of bulk strings.
pub fn request(out: &mut Vec<u8>, args: &[&[u8]]) {
    array(out, args.len());
    for a in args {
        bulk(out, a);
    }
}

/// RESP2 null bulk string.
pub const NIL: &[u8] = b"$-1\r\n";
/// RESP2 null array.
pub const NIL_ARRAY: &[u8] = b"*-1\r\n";
/// RESP3 null.
pub const NULL3: &[u8] = b"_\r\n";

/// The RESP null reply: `$-1` in RESP2, `_` in RESP3 (the only data-reply
/// difference between the two for the commands this server has).
#[inline]
pub fn null(resp3: bool) -> &'static [u8] {
    if resp3 { NULL3 } else { NIL }
}

/// A text line `<word> <value>`.
fn word_line(out: &mut Vec<u8>, word: &[u8], v: &[u8]) {
    out.reserve(word.len() + v.len() + 3);
    out.extend_from_slice(word);
    out.push(b' ');
    out.extend_from_slice(v);
    crlf(out);
}

// ---- the reply writer --------------------------------------------------------

/// Writes the answer to one command in the connection's protocol.
pub struct Reply<'a> {
    /// The connection's output buffer.
    pub out: &'a mut Vec<u8>,
    proto: Proto,
    resp3: bool,
}

impl<'a> Reply<'a> {
    /// A writer appending to `out` for a connection speaking `proto`
    /// (`resp3`: the client chose RESP3 with `HELLO 3`).
    #[inline]
    pub fn new(out: &'a mut Vec<u8>, proto: Proto, resp3: bool) -> Reply<'a> {
        Reply { out, proto, resp3 }
    }

    /// The connection's protocol.
    #[inline]
    pub fn proto(&self) -> Proto {
        self.proto
    }

    /// Success without data: `OK` / `+OK`.
    #[inline]
    pub fn ok(&mut self) {
        ok(self.out, self.proto);
    }

    /// A refusal: `ERROR <msg>` / `-ERR <msg>`.
    pub fn error(&mut self, msg: &str) {
        error(self.out, self.proto, msg);
    }

    /// An error whose wording differs per protocol (text, RESP).
    pub fn error_per_proto(&mut self, text: impl Display, resp: &str) {
        match self.proto {
            Proto::Text => error(self.out, Proto::Text, &text.to_string()),
            Proto::Resp => error(self.out, Proto::Resp, resp),
        }
    }

    /// A stored value: `VALUE <v>` / bulk string.
    #[inline]
    pub fn value(&mut self, v: &[u8]) {
        match self.proto {
            Proto::Text => word_line(self.out, b"VALUE", v),
            Proto::Resp => bulk(self.out, v),
        }
    }

    /// An absent value: `NOT_FOUND` / null.
    #[inline]
    pub fn not_found(&mut self) {
        self.out.extend_from_slice(match self.proto {
            Proto::Text => b"NOT_FOUND\r\n",
            Proto::Resp => null(self.resp3),
        });
    }

    /// A value or its absence.
    #[inline]
    pub fn value_or_not_found(&mut self, v: Option<&[u8]>) {
        match v {
            Some(v) => self.value(v),
            None => self.not_found(),
        }
    }

    /// A number produced by a command (INC/DEC): `VALUE <n>` / integer.
    pub fn number(&mut self, n: i64) {
        match self.proto {
            Proto::Text => word_line(self.out, b"VALUE", itoa::Buffer::new().format(n).as_bytes()),
            Proto::Resp => integer(self.out, n),
        }
    }

    /// The result of APPEND/PREPEND: the new value in text, its length in
    /// RESP.
    pub fn grown(&mut self, new: &[u8]) {
        match self.proto {
            Proto::Text => self.value(new),
            Proto::Resp => integer(self.out, new.len() as i64),
        }
    }

    /// A count of deleted keys: `DELETED` / `NOT_FOUND` in text, an
    /// integer in RESP.
    pub fn deleted(&mut self, n: i64) {
        match self.proto {
            Proto::Text if n > 0 => self.out.extend_from_slice(b"DELETED\r\n"),
            Proto::Text => self.out.extend_from_slice(b"NOT_FOUND\r\n"),
            Proto::Resp => integer(self.out, n),
        }
    }

    /// A count: `<WORD> <n>` in text, an integer in RESP.
    pub fn count(&mut self, word: &str, n: i64) {
        match self.proto {
            Proto::Text => word_line(
                self.out,
                word.as_bytes(),
                itoa::Buffer::new().format(n).as_bytes(),
            ),
            Proto::Resp => integer(self.out, n),
        }
    }

    /// An integer in both protocols (STRLEN is RESP-only).
    pub fn integer(&mut self, n: i64) {
        integer(self.out, n);
    }

    /// A list of keys: `KEYS <n>` and one key per line in text, an array
    /// of bulk strings in RESP.
    pub fn keys<K: AsRef<[u8]>>(&mut self, keys: &[K]) {
        match self.proto {
            Proto::Text => {
                self.count("KEYS", keys.len() as i64);
                for k in keys {
                    self.out.extend_from_slice(k.as_ref());
                    crlf(self.out);
                }
            }
            Proto::Resp => {
                array(self.out, keys.len());
                for k in keys {
                    bulk(self.out, k.as_ref());
                }
            }
        }
    }

    /// A listing of lines: `<WORD> <n>` and one line each in text, an
    /// array of bulk strings in RESP (`NODES`).
    pub fn lines(&mut self, word: &str, lines: &[String]) {
        match self.proto {
            Proto::Text => {
                self.count(word, lines.len() as i64);
                for l in lines {
                    self.out.extend_from_slice(l.as_bytes());
                    crlf(self.out);
                }
            }
            Proto::Resp => {
                array(self.out, lines.len());
                for l in lines {
                    bulk(self.out, l.as_bytes());
                }
            }
        }
    }

    /// Starts the answer to MGET of `n` keys; feed it every key's value
    /// in order with [`Values::item`], then [`Values::finish`].
    pub fn values(&mut self, n: usize) -> Values<'_> {
        let start = self.out.len();
        if self.proto == Proto::Resp {
            array(self.out, n);
        }
        Values {
            out: self.out,
            proto: self.proto,
            resp3: self.resp3,
            start,
            found: 0,
        }
    }

    /// A short answer line: `<line>` in text, a bulk string in RESP.
    pub fn line(&mut self, line: &[u8]) {
        match self.proto {
            Proto::Text => {
                self.out.extend_from_slice(line);
                crlf(self.out);
            }
            Proto::Resp => bulk(self.out, line),
        }
    }

    /// An answer tagged with a word in text (`<WORD> <data>`), the bare
    /// data as a bulk string in RESP (ECHO, VERSION).
    pub fn tagged(&mut self, word: &[u8], data: &[u8]) {
        match self.proto {
            Proto::Text => word_line(self.out, word, data),
            Proto::Resp => bulk(self.out, data),
        }
    }

    /// PING's answer: `PONG [msg]` in text; `+PONG` or the message as a
    /// bulk string in RESP.
    pub fn pong(&mut self, msg: Option<&[u8]>) {
        match (self.proto, msg) {
            (Proto::Text, None) => self.out.extend_from_slice(b"PONG\r\n"),
            (Proto::Text, Some(m)) => word_line(self.out, b"PONG", m),
            (Proto::Resp, None) => self.out.extend_from_slice(b"+PONG\r\n"),
            (Proto::Resp, Some(m)) => bulk(self.out, m),
        }
    }

    /// HASH's answer: `HASH [<label> ]<hex>` in text, the hex digest as a
    /// bulk string in RESP.
    pub fn hash(&mut self, label: Option<&[u8]>, hex: &str) {
        match self.proto {
            Proto::Text => {
                self.out.extend_from_slice(b"HASH ");
                if let Some(l) = label {
                    self.out.extend_from_slice(l);
                    self.out.push(b' ');
                }
                self.out.extend_from_slice(hex.as_bytes());
                crlf(self.out);
            }
            Proto::Resp => bulk(self.out, hex.as_bytes()),
        }
    }

    /// A multi-line block (STATS, INFO): the text as is in text, one bulk
    /// string in RESP.
    pub fn block(&mut self, text: &str) {
        match self.proto {
            Proto::Text => self.out.extend_from_slice(text.as_bytes()),
            Proto::Resp => bulk(self.out, text.as_bytes()),
        }
    }

    /// A listing framed by a head and an `END` line in text
    /// (`CLIENT LIST`), the bare body as one bulk string in RESP.
    pub fn framed(&mut self, head: &str, body: &str) {
        match self.proto {
            Proto::Text => {
                self.out.extend_from_slice(head.as_bytes());
                crlf(self.out);
                self.out.extend_from_slice(body.as_bytes());
                self.out.extend_from_slice(b"END\r\n");
            }
            Proto::Resp => bulk(self.out, body.as_bytes()),
        }
    }
}

/// An MGET answer being written ([`Reply::values`]).
pub struct Values<'a> {
    out: &'a mut Vec<u8>,
    proto: Proto,
    resp3: bool,
    start: usize,
    found: usize,
}

impl Values<'_> {
    /// The next key and its value (or absence).
    pub fn item(&mut self, key: &[u8], v: Option<&[u8]>) {
        let out = &mut *self.out;
        match self.proto {
            Proto::Text => {
                out.extend_from_slice(key);
                match v {
                    Some(v) => {
                        self.found += 1;
                        out.push(b' ');
                        out.extend_from_slice(v);
                    }
                    None => out.extend_from_slice(b" NOT_FOUND"),
                }
                crlf(out);
            }
            Proto::Resp => match v {
                Some(v) => bulk(out, v),
                None => out.extend_from_slice(null(self.resp3)),
            },
        }
    }

    /// Ends the answer. Text: `VALUES <found>` goes in front of the lines
    /// once the count is known; no value found at all is `NOT_FOUND`.
    /// Length of the output buffer so far (for output limits).
    pub fn written(&self) -> usize {
        self.out.len()
    }

    pub fn finish(self) {
        if self.proto == Proto::Text {
            let out = self.out;
            if self.found == 0 {
                out.truncate(self.start);
                out.extend_from_slice(b"NOT_FOUND\r\n");
            } else {
                insert_counted(out, self.start, b"VALUES ", self.found);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn both(f: impl Fn(&mut Reply<'_>)) -> (Vec<u8>, Vec<u8>) {
        let (mut t, mut r) = (Vec::new(), Vec::new());
        f(&mut Reply::new(&mut t, Proto::Text, false));
        f(&mut Reply::new(&mut r, Proto::Resp, false));
        (t, r)
    }

    #[test]
    fn each_kind_has_its_text_and_resp_form() {
        assert_eq!(both(|r| r.ok()), (b"OK\r\n".to_vec(), b"+OK\r\n".to_vec()));
        assert_eq!(
            both(|r| r.value(b"v")),
            (b"VALUE v\r\n".to_vec(), b"$1\r\nv\r\n".to_vec())
        );
        assert_eq!(
            both(|r| r.not_found()),
            (b"NOT_FOUND\r\n".to_vec(), b"$-1\r\n".to_vec())
        );
        assert_eq!(
            both(|r| r.count("DBSIZE", 12)),
            (b"DBSIZE 12\r\n".to_vec(), b":12\r\n".to_vec())
        );
        assert_eq!(
            both(|r| r.deleted(0)),
            (b"NOT_FOUND\r\n".to_vec(), b":0\r\n".to_vec())
        );
        assert_eq!(
            both(|r| r.keys(&[b"a".to_vec(), b"bc".to_vec()])),
            (
                b"KEYS 2\r\na\r\nbc\r\n".to_vec(),
                b"*2\r\n$1\r\na\r\n$2\r\nbc\r\n".to_vec()
            )
        );
        assert_eq!(
            both(|r| r.error("bad\r\nthing")),
            (
                b"ERROR bad  thing\r\n".to_vec(),
                b"-ERR bad  thing\r\n".to_vec()
            )
        );
        let mut out = Vec::new();
        Reply::new(&mut out, Proto::Resp, true).not_found();
        assert_eq!(out, b"_\r\n");
    }

    #[test]
    fn mget_counts_found_values_in_text() {
        let run = |proto, items: &[(&[u8], Option<&[u8]>)]| {
            let mut out = b"x".to_vec();
            let mut r = Reply::new(&mut out, proto, false);
            let mut v = r.values(items.len());
            for (k, val) in items {
                v.item(k, *val);
            }
            v.finish();
            out
        };
        let items: &[(&[u8], Option<&[u8]>)] = &[(b"a", Some(b"1")), (b"b", None)];
        assert_eq!(
            run(Proto::Text, items),
            b"xVALUES 1\r\na 1\r\nb NOT_FOUND\r\n"
        );
        assert_eq!(run(Proto::Resp, items), b"x*2\r\n$1\r\n1\r\n$-1\r\n");
        assert_eq!(run(Proto::Text, &[(b"b", None)]), b"xNOT_FOUND\r\n");
    }

    #[test]
    fn a_request_is_an_array_of_bulks() {
        let mut out = Vec::new();
        request(&mut out, &[b"GET", b"k"]);
        assert_eq!(out, b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n");
    }
}
