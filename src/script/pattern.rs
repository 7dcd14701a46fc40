//! Lua 5.1 pattern matching (`string.find`, `match`, `gmatch`, `gsub`)
//! that a running script can be stopped in.
//!
//! Lua's own matcher is C code that backtracks: `string.find(string.rep('a',
//! 50), string.rep('a*', 12) .. 'b')` runs for hours, and the Lua hook that
//! checks `SCRIPT KILL` and the busy threshold is never called inside a C
//! function, so one such call would hold the node (every shard, every
//! worker) until it returned. This module is the same algorithm, step for
//! step (lstrlib.c of Lua 5.1.5: `match`, `max_expand`, `min_expand`,
//! captures, `%b`, `%f`, back-references), with two additions:
//!
//! * every [`CHECK_EVERY`] steps it calls the caller's `check`, which
//!   returns an error when the script must stop (`SCRIPT KILL`, shutdown,
//!   the `FUNCTION LOAD` deadline) and marks the script busy past the
//!   threshold, exactly like the instruction hook;
//! * recursion is bounded at [`MAX_DEPTH`] (Lua 5.1 has no bound: a long
//!   enough pattern overflows the C stack), with Lua 5.2's error.
//!
//! Semantics kept from 5.1: a pattern ends at its first NUL byte; classes
//! are ASCII (`%a`, `%d`, … as the C locale); `-` after a class is the lazy
//! repetition; `%z` matches NUL. The engine checks the results against the
//! C functions on a corpus (`engine.rs` tests).

/// Steps between two calls of the caller's check.
pub const CHECK_EVERY: u32 = 1 << 12;
/// Deepest recursion of the matcher (Lua 5.2's `MAXCCALLS`).
pub const MAX_DEPTH: usize = 200;
/// Captures per pattern (Lua's `LUA_MAXCAPTURES`).
pub const MAX_CAPTURES: usize = 32;

const ESC: u8 = b'%';
const SPECIALS: &[u8] = b"^$*+?.([%-";

/// A capture's length, or its kind while it has none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Len {
    Unfinished,
    Position,
    Bytes(usize),
}

/// What a capture holds once the match succeeded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Capture<'a> {
    /// A substring of the subject.
    Str(&'a [u8]),
    /// A position capture `()`: a 1-based index.
    Pos(usize),
}

/// Why matching stopped without a result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PatError {
    /// The pattern is malformed (Lua's message).
    Malformed(String),
    /// The caller's check asked to stop (its message).
    Stopped(String),
}

impl std::fmt::Display for PatError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PatError::Malformed(m) | PatError::Stopped(m) => f.write_str(m),
        }
    }
}

type Res<T> = Result<T, PatError>;

fn malformed<T>(m: &str) -> Res<T> {
    Err(PatError::Malformed(m.to_string()))
}

/// One match attempt's state (lstrlib's `MatchState`).
pub struct Matcher<'a, F> {
    src: &'a [u8],
    pat: &'a [u8],
    level: usize,
    caps: [(usize, Len); MAX_CAPTURES],
    depth: usize,
    steps: u32,
    check: F,
}

/// The pattern as Lua 5.1 sees it: up to its first NUL.
pub fn effective(pat: &[u8]) -> &[u8] {
    match memchr::memchr(0, pat) {
        Some(i) => &pat[..i],
        None => pat,
    }
}

/// True when `pat` has no special character (a plain `find`).
pub fn is_plain(pat: &[u8]) -> bool {
    !effective(pat).iter().any(|b| SPECIALS.contains(b))
}

fn class(c: u8, cl: u8) -> bool {
    let res = match cl.to_ascii_lowercase() {
        b'a' => c.is_ascii_alphabetic(),
        b'c' => c.is_ascii_control(),
        b'd' => c.is_ascii_digit(),
        b'l' => c.is_ascii_lowercase(),
        b'p' => c.is_ascii_punctuation(),
        b's' => matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r'),
        b'u' => c.is_ascii_uppercase(),
        b'w' => c.is_ascii_alphanumeric(),
        b'x' => c.is_ascii_hexdigit(),
        b'z' => c == 0,
        _ => return cl == c,
    };
    if cl.is_ascii_lowercase() { res } else { !res }
}

impl<'a, F: FnMut() -> Result<(), String>> Matcher<'a, F> {
    /// A matcher of `pat` (already cut at NUL, without a leading `^`)
    /// over `src`.
    pub fn new(src: &'a [u8], pat: &'a [u8], check: F) -> Self {
        Matcher {
            src,
            pat,
            level: 0,
            caps: [(0, Len::Unfinished); MAX_CAPTURES],
            depth: 0,
            steps: 0,
            check,
        }
    }

    fn p(&self, i: usize) -> u8 {
        self.pat.get(i).copied().unwrap_or(0)
    }

    fn step(&mut self) -> Res<()> {
        self.steps += 1;
        if self.steps >= CHECK_EVERY {
            self.steps = 0;
            (self.check)().map_err(PatError::Stopped)?;
        }
        Ok(())
    }

    fn class_end(&self, mut p: usize) -> Res<usize> {
        let c = self.p(p);
        p += 1;
        if c == ESC {
            if p >= self.pat.len() {
                return malformed("malformed pattern (ends with '%')");
            }
            return Ok(p + 1);
        }
        if c == b'[' {
            if self.p(p) == b'^' {
                p += 1;
            }
            loop {
                if p >= self.pat.len() {
                    return malformed("malformed pattern (missing ']')");
                }
                let c = self.pat[p];
                p += 1;
                if c == ESC && p < self.pat.len() {
                    p += 1;
                }
                if self.p(p) == b']' {
                    break;
                }
            }
            return Ok(p + 1);
        }
        Ok(p)
    }

    /// `p` at the `[`, `ec` at the closing `]`.
    fn bracket(&self, c: u8, mut p: usize, ec: usize) -> bool {
        let mut sig = true;
        if self.p(p + 1) == b'^' {
            sig = false;
            p += 1;
        }
        loop {
            p += 1;
            if p >= ec {
                break;
            }
            if self.p(p) == ESC {
                p += 1;
                if class(c, self.p(p)) {
                    return sig;
                }
            } else if self.p(p + 1) == b'-' && p + 2 < ec {
                p += 2;
                if self.p(p - 2) <= c && c <= self.p(p) {
                    return sig;
                }
            } else if self.p(p) == c {
                return sig;
            }
        }
        !sig
    }

    fn single(&self, s: usize, p: usize, ep: usize) -> bool {
        let Some(&c) = self.src.get(s) else {
            return false;
        };
        match self.p(p) {
            b'.' => true,
            ESC => class(c, self.p(p + 1)),
            b'[' => self.bracket(c, p, ep - 1),
            x => x == c,
        }
    }

    /// Matches the pattern from `p` against the subject from `s`: the end
    /// of the match, or `None`.
    pub fn do_match(&mut self, s: usize, p: usize) -> Res<Option<usize>> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            self.depth -= 1;
            return malformed("pattern too complex");
        }
        let r = self.match_inner(s, p);
        self.depth -= 1;
        r
    }

    fn match_inner(&mut self, mut s: usize, mut p: usize) -> Res<Option<usize>> {
        loop {
            self.step()?;
            if p >= self.pat.len() {
                return Ok(Some(s));
            }
            match self.pat[p] {
                b'(' => {
                    return if self.p(p + 1) == b')' {
                        self.start_capture(s, p + 2, Len::Position)
                    } else {
                        self.start_capture(s, p + 1, Len::Unfinished)
                    };
                }
                b')' => return self.end_capture(s, p + 1),
                b'$' if p + 1 == self.pat.len() => {
                    return Ok((s == self.src.len()).then_some(s));
                }
                ESC if self.p(p + 1) == b'b' => match self.balance(s, p + 2)? {
                    Some(e) => {
                        s = e;
                        p += 4;
                        continue;
                    }
                    None => return Ok(None),
                },
                ESC if self.p(p + 1) == b'f' => {
                    p += 2;
                    if self.p(p) != b'[' {
                        return malformed("missing '[' after '%f' in pattern");
                    }
                    let ep = self.class_end(p)?;
                    let prev = if s == 0 { 0 } else { self.src[s - 1] };
                    let cur = self.src.get(s).copied().unwrap_or(0);
                    if self.bracket(prev, p, ep - 1) || !self.bracket(cur, p, ep - 1) {
                        return Ok(None);
                    }
                    p = ep;
                    continue;
                }
                ESC if self.p(p + 1).is_ascii_digit() => {
                    match self.match_capture(s, self.p(p + 1))? {
                        Some(e) => {
                            s = e;
                            p += 2;
                            continue;
                        }
                        None => return Ok(None),
                    }
                }
                _ => {}
            }
            // A single-character class, maybe with a quantifier.
            let ep = self.class_end(p)?;
            let m = self.single(s, p, ep);
            match self.p(ep) {
                b'?' if ep < self.pat.len() => {
                    if m && let Some(r) = self.do_match(s + 1, ep + 1)? {
                        return Ok(Some(r));
                    }
                    p = ep + 1;
                }
                b'*' if ep < self.pat.len() => return self.max_expand(s, p, ep),
                b'+' if ep < self.pat.len() => {
                    return if m {
                        self.max_expand(s + 1, p, ep)
                    } else {
                        Ok(None)
                    };
                }
                b'-' if ep < self.pat.len() => return self.min_expand(s, p, ep),
                _ => {
                    if !m {
                        return Ok(None);
                    }
                    s += 1;
                    p = ep;
                }
            }
        }
    }

    fn max_expand(&mut self, s: usize, p: usize, ep: usize) -> Res<Option<usize>> {
        let mut i = 0;
        while self.single(s + i, p, ep) {
            i += 1;
            self.step()?;
        }
        loop {
            if let Some(r) = self.do_match(s + i, ep + 1)? {
                return Ok(Some(r));
            }
            if i == 0 {
                return Ok(None);
            }
            i -= 1;
        }
    }

    fn min_expand(&mut self, mut s: usize, p: usize, ep: usize) -> Res<Option<usize>> {
        loop {
            if let Some(r) = self.do_match(s, ep + 1)? {
                return Ok(Some(r));
            }
            if self.single(s, p, ep) {
                s += 1;
            } else {
                return Ok(None);
            }
        }
    }

    fn start_capture(&mut self, s: usize, p: usize, what: Len) -> Res<Option<usize>> {
        if self.level >= MAX_CAPTURES {
            return malformed("too many captures");
        }
        self.caps[self.level] = (s, what);
        self.level += 1;
        let r = self.do_match(s, p)?;
        if r.is_none() {
            self.level -= 1;
        }
        Ok(r)
    }

    fn end_capture(&mut self, s: usize, p: usize) -> Res<Option<usize>> {
        let Some(l) = (0..self.level)
            .rev()
            .find(|&l| self.caps[l].1 == Len::Unfinished)
        else {
            return malformed("invalid pattern capture");
        };
        self.caps[l].1 = Len::Bytes(s - self.caps[l].0);
        let r = self.do_match(s, p)?;
        if r.is_none() {
            self.caps[l].1 = Len::Unfinished;
        }
        Ok(r)
    }

    fn match_capture(&mut self, s: usize, l: u8) -> Res<Option<usize>> {
        let l = (l as usize).wrapping_sub(b'1' as usize);
        if l >= self.level || self.caps[l].1 == Len::Unfinished {
            return malformed("invalid capture index");
        }
        let (start, len) = match self.caps[l].1 {
            Len::Bytes(n) => (self.caps[l].0, n),
            // A position capture compares as an empty string in 5.1
            // (its length field is negative, so the test never passes).
            _ => return Ok(None),
        };
        let cap = &self.src[start..start + len];
        Ok(self.src[s..].starts_with(cap).then_some(s + len))
    }

    fn balance(&mut self, s: usize, p: usize) -> Res<Option<usize>> {
        if p + 1 >= self.pat.len() {
            return malformed("unbalanced pattern");
        }
        let (b, e) = (self.pat[p], self.pat[p + 1]);
        if self.src.get(s) != Some(&b) {
            return Ok(None);
        }
        let mut cont = 1usize;
        let mut i = s;
        loop {
            i += 1;
            if i >= self.src.len() {
                return Ok(None);
            }
            self.step()?;
            let c = self.src[i];
            if c == e {
                cont -= 1;
                if cont == 0 {
                    return Ok(Some(i + 1));
                }
            } else if c == b {
                cont += 1;
            }
        }
    }

    /// The whole match `src[s..e]`.
    pub fn capture_whole(&self, s: usize, e: usize) -> &'a [u8] {
        &self.src[s..e]
    }

    /// Resets the captures before an attempt at another position.
    pub fn reset(&mut self) {
        self.level = 0;
    }

    /// Capture `i` of a successful match of `src[s..e]` (the whole match
    /// when the pattern has no capture and `i == 0`).
    pub fn capture(&self, i: usize, s: usize, e: usize) -> Res<Capture<'a>> {
        if i >= self.level {
            if i == 0 {
                return Ok(Capture::Str(&self.src[s..e]));
            }
            return malformed("invalid capture index");
        }
        match self.caps[i] {
            (_, Len::Unfinished) => malformed("unfinished capture"),
            (start, Len::Position) => Ok(Capture::Pos(start + 1)),
            (start, Len::Bytes(n)) => Ok(Capture::Str(&self.src[start..start + n])),
        }
    }

    /// The captures of a successful match of `src[s..e]`: the whole
    /// match when the pattern has none (`whole`), else each capture.
    pub fn captures(&self, s: usize, e: usize, whole: bool) -> Res<Vec<Capture<'a>>> {
        let n = if self.level == 0 && whole {
            1
        } else {
            self.level
        };
        (0..n).map(|i| self.capture(i, s, e)).collect()
    }
}

/// Lua's `posrelat` and the clamp of `str_find_aux`: a 1-based, possibly
/// negative `init` as a 0-based start within `0..=len`.
pub fn start_of(init: i64, len: usize) -> usize {
    let pos = if init < 0 {
        init + len as i64 + 1
    } else {
        init
    };
    let pos = pos.max(0);
    ((pos - 1).max(0) as usize).min(len)
}

/// The first match of [`find_at`] (0-based start, exclusive end), if
/// any, and the matcher holding its captures.
pub type Found<'a, F> = (Option<(usize, usize)>, Matcher<'a, F>);

/// `string.find` / `string.match` without the Lua values: the first match
/// at or after `start`, with the matcher holding its captures.
pub fn find_at<'a, F: FnMut() -> Result<(), String>>(
    src: &'a [u8],
    pat: &'a [u8],
    start: usize,
    check: F,
) -> Res<Found<'a, F>> {
    let pat = effective(pat);
    let (anchor, pat) = match pat.first() {
        Some(b'^') => (true, &pat[1..]),
        _ => (false, pat),
    };
    let mut m = Matcher::new(src, pat, check);
    let mut s = start;
    loop {
        m.reset();
        if let Some(e) = m.do_match(s, 0)? {
            return Ok((Some((s, e)), m));
        }
        s += 1;
        if anchor || s > src.len() {
            return Ok((None, m));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn never() -> Result<(), String> {
        Ok(())
    }

    fn find(src: &str, pat: &str) -> Option<(usize, usize)> {
        find_at(src.as_bytes(), pat.as_bytes(), 0, never).unwrap().0
    }

    #[test]
    fn matches_like_lua_on_the_basics() {
        assert_eq!(find("hello world", "o w"), Some((4, 7)));
        assert_eq!(find("hello", "l+"), Some((2, 4)));
        assert_eq!(find("hello", "^h.-o$"), Some((0, 5)));
        assert_eq!(find("hello", "^e"), None);
        assert_eq!(find("x = 42", "%d+"), Some((4, 6)));
        assert_eq!(find("f(a(b)c)d", "%b()"), Some((1, 8)));
        assert_eq!(find("THE (quick) fox", "%f[%a]%a+"), Some((0, 3)));
        assert_eq!(find("abcabc", "(abc)%1"), Some((0, 6)));
        assert_eq!(find("", ""), Some((0, 0)));
        assert_eq!(find("a]b", "[]]"), Some((1, 2)));
        assert_eq!(find("a\0b", "%z"), Some((1, 2)));
    }

    #[test]
    fn malformed_patterns_are_errors_not_panics() {
        for (p, msg) in [
            ("%", "malformed pattern (ends with '%')"),
            ("[a", "malformed pattern (missing ']')"),
            ("(a", "unfinished capture"),
            ("a)", "invalid pattern capture"),
            ("%1", "invalid capture index"),
            ("%b", "unbalanced pattern"),
            ("%fx", "missing '[' after '%f' in pattern"),
        ] {
            let r = find_at(b"aaa", p.as_bytes(), 0, never).and_then(|(hit, m)| match hit {
                Some((s, e)) => m.captures(s, e, true).map(|_| ()),
                None => Ok(()),
            });
            assert_eq!(r, Err(PatError::Malformed(msg.into())), "{p}");
        }
        let deep = "(".repeat(300) + &")".repeat(300);
        assert!(find_at(b"x", deep.as_bytes(), 0, never).is_err());
    }

    #[test]
    fn a_pathological_pattern_is_stopped_by_the_check() {
        let src = "a".repeat(60);
        let pat = "a*".repeat(20) + "b";
        let mut calls = 0;
        let r = find_at(src.as_bytes(), pat.as_bytes(), 0, || {
            calls += 1;
            if calls > 10 {
                Err("stop".into())
            } else {
                Ok(())
            }
        });
        assert_eq!(r.err(), Some(PatError::Stopped("stop".into())));
    }

    #[test]
    fn start_positions_follow_posrelat() {
        assert_eq!(start_of(1, 5), 0);
        assert_eq!(start_of(0, 5), 0);
        assert_eq!(start_of(-2, 5), 3);
        assert_eq!(start_of(-100, 5), 0);
        assert_eq!(start_of(100, 5), 5);
    }
}
