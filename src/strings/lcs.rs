//! `LCS`: the longest common subsequence of two byte strings, its length,
//! and the matching ranges (Redis 7.0's algorithm and tie-breaking, so the
//! same inputs give the same string and ranges as Redis).
//!
//! The classic dynamic-programming table has `(len(a)+1) * (len(b)+1)`
//! 32-bit cells; its size is checked against a caller-given budget before
//! anything is allocated (Redis bounds it by `proto-max-bulk-len`).

use std::fmt;

/// One matching range: inclusive byte ranges in `a` and `b`, and its length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Match {
    pub a: (usize, usize),
    pub b: (usize, usize),
    pub len: usize,
}

/// The result of [`lcs`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lcs {
    /// Length of the longest common subsequence.
    pub len: usize,
    /// The subsequence itself (empty unless asked for).
    pub string: Vec<u8>,
    /// Matching ranges from the end of the strings backwards, those shorter
    /// than the minimum left out (empty unless asked for).
    pub matches: Vec<Match>,
}

/// Why `LCS` is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LcsError {
    /// The table would exceed the memory budget.
    TooLarge,
}

impl fmt::Display for LcsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Insufficient memory, transient memory for LCS exceeds proto-max-bulk-len")
    }
}

/// Computes the LCS of `a` and `b`. With `detail`, also the subsequence
/// and the ranges of at least `min_match` bytes. `max_table` bounds the
/// table's bytes.
pub fn lcs(
    a: &[u8],
    b: &[u8],
    detail: bool,
    min_match: usize,
    max_table: usize,
) -> Result<Lcs, LcsError> {
    let (alen, blen) = (a.len(), b.len());
    let cells = (alen as u128 + 1) * (blen as u128 + 1);
    if cells * 4 > max_table as u128
        || alen >= u32::MAX as usize - 1
        || blen >= u32::MAX as usize - 1
    {
        return Err(LcsError::TooLarge);
    }
    let w = blen + 1;
    let mut t = vec![0u32; cells as usize];
    for i in 1..=alen {
        for j in 1..=blen {
            t[i * w + j] = if a[i - 1] == b[j - 1] {
                t[(i - 1) * w + j - 1] + 1
            } else {
                t[(i - 1) * w + j].max(t[i * w + j - 1])
            };
        }
    }
    let len = t[alen * w + blen] as usize;
    let mut out = Lcs {
        len,
        string: Vec::new(),
        matches: Vec::new(),
    };
    if !detail {
        return Ok(out);
    }
    let mut string = vec![0u8; len];
    let mut idx = len;
    // The current range, as (a_start, a_end, b_start, b_end), if any.
    let mut range: Option<(usize, usize, usize, usize)> = None;
    let (mut i, mut j) = (alen, blen);
    while i > 0 && j > 0 {
        let mut emit = false;
        if a[i - 1] == b[j - 1] {
            string[idx - 1] = a[i - 1];
            range = Some(match range {
                None => (i - 1, i - 1, j - 1, j - 1),
                // Contiguous with the current range: extend it backwards.
                Some((as_, ae, bs, be)) if as_ == i && bs == j => (as_ - 1, ae, bs - 1, be),
                Some(r) => {
                    emit = true;
                    r
                }
            });
            if let Some((as_, _, bs, _)) = range
                && (as_ == 0 || bs == 0)
            {
                emit = true;
            }
            idx -= 1;
            i -= 1;
            j -= 1;
        } else {
            if t[(i - 1) * w + j] > t[i * w + j - 1] {
                i -= 1;
            } else {
                j -= 1;
            }
            emit = range.is_some();
        }
        if emit && let Some((as_, ae, bs, be)) = range.take() {
            let m = ae - as_ + 1;
            if m >= min_match {
                out.matches.push(Match {
                    a: (as_, ae),
                    b: (bs, be),
                    len: m,
                });
            }
        }
    }
    out.string = string;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BIG: usize = 1 << 30;

    #[test]
    fn redis_documentation_example() {
        let r = lcs(b"ohmytext", b"mynewtext", true, 0, BIG).unwrap();
        assert_eq!(r.string, b"mytext");
        assert_eq!(r.len, 6);
        assert_eq!(
            r.matches,
            vec![
                Match {
                    a: (4, 7),
                    b: (5, 8),
                    len: 4
                },
                Match {
                    a: (2, 3),
                    b: (0, 1),
                    len: 2
                },
            ]
        );
        let r = lcs(b"ohmytext", b"mynewtext", true, 4, BIG).unwrap();
        assert_eq!(
            r.matches,
            vec![Match {
                a: (4, 7),
                b: (5, 8),
                len: 4
            }]
        );
    }

    #[test]
    fn length_only_and_empty() {
        let r = lcs(b"ohmytext", b"mynewtext", false, 0, BIG).unwrap();
        assert_eq!((r.len, r.string.len(), r.matches.len()), (6, 0, 0));
        let r = lcs(b"", b"abc", true, 0, BIG).unwrap();
        assert_eq!((r.len, r.string, r.matches), (0, vec![], vec![]));
        let r = lcs(b"abc", b"xyz", true, 0, BIG).unwrap();
        assert_eq!((r.len, r.matches.len()), (0, 0));
    }

    #[test]
    fn identical_strings_are_one_range() {
        let r = lcs(b"hello", b"hello", true, 0, BIG).unwrap();
        assert_eq!(r.string, b"hello");
        assert_eq!(
            r.matches,
            vec![Match {
                a: (0, 4),
                b: (0, 4),
                len: 5
            }]
        );
    }

    #[test]
    fn budget() {
        // 4 * 4 cells of 4 bytes.
        assert!(lcs(b"abc", b"abc", false, 0, 64).is_ok());
        assert_eq!(lcs(b"abc", b"abc", false, 0, 63), Err(LcsError::TooLarge));
    }
}
