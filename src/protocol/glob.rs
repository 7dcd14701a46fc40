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
//! Matching works on bytes (keys are binary-safe) and runs in
//! O(len(pattern) × len(text)) in the worst case: the classic single
//! backtrack point for the last `*` (a later `*` supersedes an earlier one,
//! which is enough because `*` matches anything), so hostile patterns such
//! as `a*a*a*a*…b` cannot trigger exponential backtracking.

/// Returns true when `text` matches `pattern`.
pub fn matches(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0usize, 0usize);
    // Where to resume after the most recent `*`: (pattern index after the
    // star, text index the star currently stops at).
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() {
            match pattern[p] {
                b'*' => {
                    // Collapse runs of stars.
                    while p < pattern.len() && pattern[p] == b'*' {
                        p += 1;
                    }
                    if p == pattern.len() {
                        return true;
                    }
                    star = Some((p, t));
                    continue;
                }
                _ => {
                    if let Some(next) = single(pattern, p, text[t]) {
                        p = next;
                        t += 1;
                        continue;
                    }
                }
            }
        }
        // Mismatch (or pattern exhausted): let the last star eat one more.
        match star {
            Some((sp, st)) => {
                star = Some((sp, st + 1));
                p = sp;
                t = st + 1;
            }
            None => return false,
        }
    }
    // Text consumed: the rest of the pattern must be stars only.
    pattern[p..].iter().all(|&c| c == b'*')
}

/// Matches one pattern element at `p` (not `*`) against byte `c`.
/// Returns the index after the element on a match.
fn single(pattern: &[u8], p: usize, c: u8) -> Option<usize> {
    match pattern[p] {
        b'?' => Some(p + 1),
        b'[' => class(pattern, p + 1, c),
        b'\\' if p + 1 < pattern.len() => (pattern[p + 1] == c).then_some(p + 2),
        lit => (lit == c).then_some(p + 1),
    }
}

/// Matches a bracket class whose body starts at `p` (after `[`) against
/// `c`. Returns the index after the closing `]` (or the pattern end).
fn class(pattern: &[u8], mut p: usize, c: u8) -> Option<usize> {
    let negate = matches!(pattern.get(p), Some(b'^') | Some(b'!'));
    if negate {
        p += 1;
    }
    let mut hit = false;
    let mut first = true;
    // An unterminated class ends with the pattern.
    while let Some(&b) = pattern.get(p) {
        if b == b']' && !first {
            p += 1;
            break;
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
            let (a, z) = if lo <= hi { (lo, hi) } else { (hi, lo) };
            hit |= (a..=z).contains(&c);
            p = hi_at + 1;
        } else {
            hit |= lo == c;
            p += 1;
        }
    }
    (hit != negate).then_some(p)
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

/// True when the pattern matches every byte string (`*`, `**`, …).
pub fn matches_all(pattern: &[u8]) -> bool {
    !pattern.is_empty() && pattern.iter().all(|&b| b == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn hostile_pattern_is_fast() {
        let text = vec![b'a'; 10_000];
        let mut pat = b"a*".repeat(30);
        pat.push(b'b');
        let start = std::time::Instant::now();
        assert!(!matches(&pat, &text));
        // Generous: quadratic bound is 600k steps.
        assert!(start.elapsed() < std::time::Duration::from_secs(2));
    }

    #[test]
    fn helpers() {
        assert_eq!(literal_prefix(b"user:*"), b"user:");
        assert_eq!(literal_prefix(b"a\\*"), b"a");
        assert_eq!(literal_prefix(b"abc"), b"abc");
        assert!(matches_all(b"*"));
        assert!(matches_all(b"***"));
        assert!(!matches_all(b""));
        assert!(!matches_all(b"*a"));
    }

    /// Reference implementation: plain recursion (exponential, small inputs).
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
        match single(p, 0, t[0]) {
            Some(n) => reference(&p[n..], &t[1..]),
            None => false,
        }
    }

    proptest::proptest! {
        #[test]
        fn agrees_with_reference(
            p in proptest::collection::vec(proptest::sample::select(b"ab*?[]^-\\".to_vec()), 0..8),
            t in proptest::collection::vec(proptest::sample::select(b"ab-]\\".to_vec()), 0..8),
        ) {
            proptest::prop_assert_eq!(matches(&p, &t), reference(&p, &t));
        }
    }
}
