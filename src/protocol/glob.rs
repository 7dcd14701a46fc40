//! Redis-style glob patterns for `KEYS`, `SCAN … MATCH` and `CONFIG GET`.
//!
//! Syntax (the same as Redis's `stringmatchlen`):
//!
//! * `*` matches any run of bytes (including none), `?` exactly one byte;
//! * `[abc]` one of the listed bytes, `[^abc]` (or `[!abc]`) any other
//!   byte, `[a-z]` a range (either order: `[z-a]` is the same set);
//! * `\x` matches `x` literally, inside or outside brackets;
//! * an unterminated `[` matches as if the class ended at the pattern end;
//!   a trailing lone `\` matches a literal `\`.
//!
//! Matching works on bytes (keys are binary-safe). A pattern is compiled
//! once per command into a [`Pattern`]: a Shift-And automaton (bit-parallel
//! NFA simulation). State `i` means "the first `i` non-star elements
//! matched"; element `i` moves state `i` to `i + 1` on the bytes it accepts,
//! and a `*` before element `i` is a self-loop on state `i`. One text byte
//! updates every state at once with shifts and masks, so matching costs
//! O(len(text) × ⌈states / 64⌉) whatever the pattern, with no backtracking
//! (hostile patterns like `a*a*a*…b` cost the same as `abc`). Only the
//! words that can hold a live state are touched: states advance at most
//! one per byte, so a short key against a long pattern stays cheap, and
//! dead high words are dropped again. A text shorter than the pattern's
//! non-star elements is refused at once, so is one whose last bytes do not
//! match the elements after the last `*`, and a trailing `*` ends the
//! scan as soon as the rest of the pattern matched.
//!
//! Patterns are at most [`MAX_PATTERN`] bytes (at most 17 words per text
//! byte); the command parsers refuse longer ones with
//! [`PATTERN_TOO_LONG`].

/// Longest accepted pattern, in bytes.
pub const MAX_PATTERN: usize = 1024;

/// The error text for a pattern over [`MAX_PATTERN`] (without `ERR `).
pub const PATTERN_TOO_LONG: &str = "pattern too long (max 1024 bytes)";

/// Words of the largest state set: states `0..=MAX_PATTERN`.
const MAX_WORDS: usize = (MAX_PATTERN + 1).div_ceil(64);

/// A pattern over [`MAX_PATTERN`] bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLong;

impl std::fmt::Display for TooLong {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(PATTERN_TOO_LONG)
    }
}

/// A compiled glob pattern.
#[derive(Debug, Clone)]
pub struct Pattern {
    /// Number of non-star elements; state `accept` is the match.
    accept: usize,
    /// 64-bit words per state set.
    words: usize,
    /// `masks[c * words ..][..words]`: bit `i + 1` set when element `i`
    /// accepts byte `c` (the states byte `c` can enter).
    masks: Box<[u64]>,
    /// States with a self-loop (a `*` right before that element, or at
    /// the end for the accepting state).
    stars: Box<[u64]>,
    /// Matches everything (`*`, `**`, …): skip the automaton.
    all: bool,
    /// The pattern has a `*` (else a match has exactly `accept` bytes).
    any_star: bool,
    /// Byte sets of the elements after the last `*`: they must match the
    /// text's last bytes, checked before the automaton runs.
    suffix: Vec<[u64; 4]>,
}

impl Pattern {
    /// Compiles `pattern` (syntax in the [module docs](self)).
    pub fn new(pattern: &[u8]) -> Result<Pattern, TooLong> {
        if pattern.len() > MAX_PATTERN {
            return Err(TooLong);
        }
        let mut sets: Vec<[u64; 4]> = Vec::new();
        let mut loops: Vec<usize> = Vec::new();
        let mut p = 0;
        while p < pattern.len() {
            if pattern[p] == b'*' {
                // Runs of stars are one self-loop.
                if loops.last() != Some(&sets.len()) {
                    loops.push(sets.len());
                }
                p += 1;
                continue;
            }
            let (set, next) = element(pattern, p);
            sets.push(set);
            p = next;
        }
        let accept = sets.len();
        let words = (accept + 1).div_ceil(64);
        let mut masks = vec![0u64; 256 * words].into_boxed_slice();
        for (i, set) in sets.iter().enumerate() {
            let (w, bit) = ((i + 1) / 64, (i + 1) % 64);
            for c in 0..256 {
                if set[c / 64] >> (c % 64) & 1 == 1 {
                    masks[c * words + w] |= 1 << bit;
                }
            }
        }
        let mut stars = vec![0u64; words].into_boxed_slice();
        for &i in &loops {
            stars[i / 64] |= 1 << (i % 64);
        }
        Ok(Pattern {
            accept,
            words,
            masks,
            stars,
            all: !pattern.is_empty() && accept == 0,
            any_star: !loops.is_empty(),
            suffix: match loops.last() {
                Some(&last) => sets[last..].to_vec(),
                None => Vec::new(),
            },
        })
    }

    /// True when `text` matches. Linear in `text.len()`.
    pub fn matches(&self, text: &[u8]) -> bool {
        if self.all {
            return true;
        }
        // Every non-star element takes one byte; without stars, exactly.
        if text.len() < self.accept || (!self.any_star && text.len() != self.accept) {
            return false;
        }
        let tail = &text[text.len() - self.suffix.len()..];
        if !self
            .suffix
            .iter()
            .zip(tail)
            .all(|(set, &c)| set[c as usize / 64] >> (c % 64) & 1 == 1)
        {
            return false;
        }
        if self.words == 1 {
            return self.matches_one_word(text);
        }
        let words = self.words;
        let (aw, abit) = (self.accept / 64, 1u64 << (self.accept % 64));
        let done = self.stars[aw] & abit != 0;
        let mut d = [0u64; MAX_WORDS];
        d[0] = 1;
        // Words that may hold a live state (states advance one per byte):
        // only those are updated.
        let mut live = 1;
        for &c in text {
            let m = &self.masks[c as usize * words..][..words];
            let mut carry = 0;
            let mut any = 0;
            for w in 0..live {
                let x = d[w];
                let nx = (((x << 1) | carry) & m[w]) | (x & self.stars[w]);
                carry = x >> 63;
                d[w] = nx;
                any |= nx;
            }
            if live < words && carry != 0 {
                d[live] = carry & m[live];
                any |= d[live];
                live += 1;
            }
            if any == 0 {
                return false;
            }
            // A trailing `*` reached: whatever follows matches.
            if done && d[aw] & abit != 0 {
                return true;
            }
            while live > 1 && d[live - 1] == 0 {
                live -= 1;
            }
        }
        d[aw] & abit != 0
    }

    /// [`Pattern::matches`] for patterns of at most 63 elements.
    #[inline]
    fn matches_one_word(&self, text: &[u8]) -> bool {
        let stars = self.stars[0];
        let accept = 1u64 << self.accept;
        let done = stars & accept != 0;
        let mut d: u64 = 1;
        for &c in text {
            d = ((d << 1) & self.masks[c as usize]) | (d & stars);
            if d == 0 {
                return false;
            }
            if done && d & accept != 0 {
                return true;
            }
        }
        d & accept != 0
    }
}

/// The byte set of the element (not `*`) at `p` and the index after it.
fn element(pattern: &[u8], p: usize) -> ([u64; 4], usize) {
    let mut set = [0u64; 4];
    let mut add = |a: u8, z: u8| {
        for c in a..=z {
            set[c as usize / 64] |= 1 << (c % 64);
        }
    };
    let next = match pattern[p] {
        b'?' => {
            add(0, 255);
            p + 1
        }
        b'[' => {
            let (negate, next) = class(pattern, p + 1, &mut add);
            if negate {
                for w in &mut set {
                    *w = !*w;
                }
            }
            next
        }
        b'\\' if p + 1 < pattern.len() => {
            add(pattern[p + 1], pattern[p + 1]);
            p + 2
        }
        lit => {
            add(lit, lit);
            p + 1
        }
    };
    (set, next)
}

/// Reads a bracket class whose body starts at `p` (after `[`), calling
/// `add(lo, hi)` for each byte range it lists. Returns whether it is
/// negated and the index after its `]` (or the pattern end: an
/// unterminated class ends with the pattern).
fn class(pattern: &[u8], mut p: usize, add: &mut impl FnMut(u8, u8)) -> (bool, usize) {
    let negate = matches!(pattern.get(p), Some(b'^') | Some(b'!'));
    if negate {
        p += 1;
    }
    let mut first = true;
    while let Some(&b) = pattern.get(p) {
        if b == b']' && !first {
            return (negate, p + 1);
        }
        first = false;
        let lo = if b == b'\\' && p + 1 < pattern.len() {
            p += 1;
            pattern[p]
        } else {
            b
        };
        // A range `lo-hi` (a `-` before `]` or the end is literal).
        if pattern.get(p + 1) == Some(&b'-') && p + 2 < pattern.len() && pattern[p + 2] != b']' {
            let mut hi_at = p + 2;
            if pattern[hi_at] == b'\\' && hi_at + 1 < pattern.len() {
                hi_at += 1;
            }
            let hi = pattern[hi_at];
            add(lo.min(hi), lo.max(hi));
            p = hi_at + 1;
        } else {
            add(lo, lo);
            p += 1;
        }
    }
    (negate, p)
}

/// The literal prefix of a pattern (bytes before the first special
/// character), usable to skip keys cheaply.
pub fn literal_prefix(pattern: &[u8]) -> &[u8] {
    let end = pattern
        .iter()
        .position(|b| matches!(b, b'*' | b'?' | b'[' | b'\\'))
        .unwrap_or(pattern.len());
    &pattern[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(p: &[u8], t: &[u8]) -> bool {
        Pattern::new(p).unwrap().matches(t)
    }

    fn m(p: &str, t: &str) -> bool {
        matches(p.as_bytes(), t.as_bytes())
    }

    #[test]
    fn stars_and_questions() {
        assert!(m("*", ""));
        assert!(m("*", "anything"));
        assert!(m("", ""));
        assert!(!m("", "a"));
        assert!(m("user:*", "user:1"));
        assert!(m("user:*", "user:"));
        assert!(!m("user:*", "use"));
        assert!(m("*:1", "user:1"));
        assert!(m("h?llo", "hello"));
        assert!(!m("h?llo", "hllo"));
        assert!(m("h*llo", "hllo"));
        assert!(m("h*llo", "heeeello"));
        assert!(m("a*b*c", "aXbYc"));
        assert!(m("a*b*c", "abbbc"));
        assert!(!m("a*b*c", "acb"));
        assert!(m("**a**", "xxaxx"));
        assert!(m("*a", "aaaa"));
        assert!(!m("*a", "aaab"));
    }

    #[test]
    fn classes() {
        assert!(m("h[ae]llo", "hello"));
        assert!(m("h[ae]llo", "hallo"));
        assert!(!m("h[ae]llo", "hillo"));
        assert!(m("h[^e]llo", "hallo"));
        assert!(!m("h[^e]llo", "hello"));
        assert!(m("h[!e]llo", "hallo"));
        assert!(m("h[a-b]llo", "hbllo"));
        assert!(m("h[b-a]llo", "hallo"));
        assert!(!m("h[a-b]llo", "hcllo"));
        assert!(m("[]]", "]"));
        assert!(m("[a-]", "-"));
        assert!(m("[\\]]", "]"));
        assert!(m("[\\-]", "-"));
        assert!(!m("[\\-]", "a"));
        // Unterminated class ends at the pattern end.
        assert!(m("a[bc", "ab"));
        assert!(!m("a[bc", "ad"));
    }

    #[test]
    fn escapes() {
        assert!(m("h\\*llo", "h*llo"));
        assert!(!m("h\\*llo", "hello"));
        assert!(m("\\?", "?"));
        assert!(!m("\\?", "a"));
        assert!(m("a\\", "a\\"));
        assert!(m("\\\\", "\\"));
    }

    #[test]
    fn binary_bytes() {
        assert!(matches(b"k\x00*", b"k\x00\xff\r\n"));
        assert!(matches(b"?", &[0xff]));
        assert!(matches(b"[\x00-\x10]", &[0x05]));
    }

    #[test]
    fn hostile_patterns_and_long_patterns() {
        let text = vec![b'a'; 10_000];
        let mut pat = b"a*".repeat(30);
        pat.push(b'b');
        assert!(!matches(&pat, &text));
        pat.pop();
        assert!(matches(&pat, &text));
        // Multi-word automata: 1000 elements, live words grow with the text.
        let long: Vec<u8> = (0..1000).map(|i| b'a' + (i % 3) as u8).collect();
        let p = Pattern::new(&long).unwrap();
        assert_eq!(p.words, 16);
        assert!(p.matches(&long));
        assert!(!p.matches(&long[..999]));
        let mut star = long.clone();
        star[500] = b'*';
        let mut text = long.clone();
        text.splice(500..501, b"xyz".iter().copied());
        assert!(matches(&star, &text));
        assert!(!matches(&star, &text[1..]));
        // A state crossing a word boundary keeps its star loop.
        let mut p70 = vec![b'?'; 70];
        p70.push(b'*');
        p70.push(b'z');
        assert!(matches(
            &p70,
            &[b'q'; 200].iter().chain(b"z").copied().collect::<Vec<_>>()
        ));
        assert!(!matches(&p70, &[b'q'; 200]));
        // The length limit.
        assert!(Pattern::new(&vec![b'*'; MAX_PATTERN]).is_ok());
        assert_eq!(
            Pattern::new(&vec![b'a'; MAX_PATTERN + 1]).err(),
            Some(TooLong)
        );
        assert!(PATTERN_TOO_LONG.contains(&MAX_PATTERN.to_string()));
    }

    #[test]
    fn helpers() {
        assert_eq!(literal_prefix(b"user:*"), b"user:");
        assert_eq!(literal_prefix(b"a\\*"), b"a");
        assert_eq!(literal_prefix(b"abc"), b"abc");
        assert!(Pattern::new(b"*").unwrap().all);
        assert!(Pattern::new(b"***").unwrap().all);
        assert!(!Pattern::new(b"").unwrap().all);
        assert!(!Pattern::new(b"*a").unwrap().all);
    }

    /// Reference matcher: plain recursion on the pattern (exponential,
    /// for small inputs), with its own reading of elements.
    fn reference(p: &[u8], t: &[u8]) -> bool {
        if p.is_empty() {
            return t.is_empty();
        }
        if p[0] == b'*' {
            return (0..=t.len()).any(|i| reference(&p[1..], &t[i..]));
        }
        if t.is_empty() {
            return false;
        }
        match reference_element(p, t[0]) {
            Some(n) => reference(&p[n..], &t[1..]),
            None => false,
        }
    }

    /// Matches the element at the start of `p` against `c`: the length of
    /// the element when it matches.
    fn reference_element(p: &[u8], c: u8) -> Option<usize> {
        match p[0] {
            b'?' => Some(1),
            b'\\' if p.len() > 1 => (p[1] == c).then_some(2),
            b'[' => {
                let mut i = 1;
                let negate = matches!(p.get(1), Some(b'^' | b'!'));
                if negate {
                    i += 1;
                }
                let body = i;
                let mut hit = false;
                while i < p.len() && !(p[i] == b']' && i > body) {
                    let lo_at = if p[i] == b'\\' && i + 1 < p.len() {
                        i + 1
                    } else {
                        i
                    };
                    let dash = lo_at + 1;
                    if dash + 1 < p.len() && p[dash] == b'-' && p[dash + 1] != b']' {
                        let hi_at = if p[dash + 1] == b'\\' && dash + 2 < p.len() {
                            dash + 2
                        } else {
                            dash + 1
                        };
                        let (a, z) = (p[lo_at].min(p[hi_at]), p[lo_at].max(p[hi_at]));
                        hit |= a <= c && c <= z;
                        i = hi_at + 1;
                    } else {
                        hit |= p[lo_at] == c;
                        i = lo_at + 1;
                    }
                }
                let end = if i < p.len() { i + 1 } else { i };
                (hit != negate).then_some(end)
            }
            lit => (lit == c).then_some(1),
        }
    }

    proptest::proptest! {
        #[test]
        fn agrees_with_reference(
            p in proptest::collection::vec(proptest::sample::select(b"ab*?[]^!-\\".to_vec()), 0..10),
            t in proptest::collection::vec(proptest::sample::select(b"ab-]\\^".to_vec()), 0..10),
        ) {
            proptest::prop_assert_eq!(matches(&p, &t), reference(&p, &t));
        }

        #[test]
        fn agrees_with_reference_on_long_inputs(
            // Over 64 elements: the multi-word automaton.
            p in proptest::collection::vec(proptest::sample::select(b"ab?*".to_vec()), 60..90),
            t in proptest::collection::vec(proptest::sample::select(b"ab".to_vec()), 60..100),
        ) {
            // The reference is exponential in stars: keep a few.
            let mut stars = 0;
            let p: Vec<u8> = p.into_iter().map(|c| {
                if c == b'*' { stars += 1; if stars > 3 { b'?' } else { c } } else { c }
            }).collect();
            proptest::prop_assert_eq!(matches(&p, &t), reference(&p, &t));
        }
    }
}
