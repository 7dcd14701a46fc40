//! `GETRANGE`/`SUBSTR` and `SETRANGE` on byte strings (Redis's rules;
//! `GETRANGE` as Redis 7.4 answers it, see [`getrange`]).

use std::fmt;

/// Why a `SETRANGE` is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeError {
    /// A negative offset.
    NegativeOffset,
    /// `offset + len(value)` exceeds the largest string allowed.
    TooLong,
}

impl fmt::Display for RangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RangeError::NegativeOffset => "offset is out of range",
            RangeError::TooLong => "string exceeds maximum allowed size (proto-max-bulk-len)",
        })
    }
}

/// The bytes of `v` from `start` to `end` inclusive; negative indexes count
/// from the end. A range that ends before the string starts (an `end`
/// still negative after counting from the end), starts past its end, or is
/// inverted is empty; otherwise it is clamped to the string. This is Redis
/// 7.4's rule: 7.0 clamped a too-negative `end` to 0, so `GETRANGE k 0
/// -100` gave the first byte (nothing else differs).
pub fn getrange(v: &[u8], start: i64, end: i64) -> &[u8] {
    let len = v.len() as i64;
    let start = if start < 0 {
        start.saturating_add(len)
    } else {
        start
    };
    let end = if end < 0 {
        end.saturating_add(len)
    } else {
        end
    };
    if len == 0 || start >= len || end < 0 || start > end {
        return &[];
    }
    &v[start.max(0) as usize..=end.min(len - 1) as usize]
}

/// Checks a `SETRANGE` before touching the value: `offset` must be
/// non-negative and, when `value` is not empty, `offset + len(value)` at
/// most `max_len`. Returns the offset as an index.
pub fn check_setrange(offset: i64, value_len: usize, max_len: usize) -> Result<usize, RangeError> {
    if offset < 0 {
        return Err(RangeError::NegativeOffset);
    }
    let total = (offset as u64).checked_add(value_len as u64);
    if value_len > 0 && total.is_none_or(|t| t > max_len as u64) {
        return Err(RangeError::TooLong);
    }
    Ok(offset as usize)
}

/// Writes into `out` the result of overwriting `old` at `offset` with
/// `value`, padding with zero bytes when `offset` lies past the end.
/// Call only with a non-empty `value` and a checked offset.
pub fn setrange(old: &[u8], offset: usize, value: &[u8], out: &mut Vec<u8>) {
    let end = offset + value.len();
    out.clear();
    out.reserve(end.max(old.len()));
    out.extend_from_slice(old);
    if out.len() < end {
        out.resize(end, 0);
    }
    out[offset..end].copy_from_slice(value);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn getrange_like_redis() {
        let v = b"Hello World";
        assert_eq!(getrange(v, 0, 3), b"Hell");
        assert_eq!(getrange(v, 0, -1), v);
        assert_eq!(getrange(v, -3, -1), b"rld");
        assert_eq!(getrange(v, 5, 3), b"");
        assert_eq!(getrange(v, 5, 5000), b" World");
        assert_eq!(getrange(v, -5000, 10000), v);
        assert_eq!(getrange(v, -1, -5), b"");
        assert_eq!(getrange(b"", 0, -1), b"");
        assert_eq!(getrange(b"bar", 0, 4294967297), b"bar");
        assert_eq!(getrange(b"1234", 0, -100), b"");
        assert_eq!(getrange(v, 1, -100), b"");
        assert_eq!(getrange(v, -1, -100), b"");
        assert_eq!(getrange(v, -100, -99), b"");
        assert_eq!(getrange(v, -100, -100), b"");
        assert_eq!(getrange(v, -100, -101), b"");
        assert_eq!(getrange(v, -100, 0), b"H");
        assert_eq!(getrange(b"1234", i64::MIN, i64::MAX), b"1234");
        assert_eq!(getrange(b"1234", i64::MAX, i64::MIN), b"");
    }

    #[test]
    fn setrange_pads_and_overwrites() {
        let mut out = Vec::new();
        setrange(b"Hello World", 6, b"Redis", &mut out);
        assert_eq!(out, b"Hello Redis");
        setrange(b"", 1, b"foo", &mut out);
        assert_eq!(out, b"\0foo");
        setrange(b"abc", 1, b"x", &mut out);
        assert_eq!(out, b"axc");
        setrange(b"ab", 5, b"z", &mut out);
        assert_eq!(out, b"ab\0\0\0z");
    }

    #[test]
    fn setrange_limits() {
        assert_eq!(check_setrange(-1, 1, 10), Err(RangeError::NegativeOffset));
        assert_eq!(check_setrange(-1, 0, 10), Err(RangeError::NegativeOffset));
        assert_eq!(check_setrange(9, 1, 10), Ok(9));
        assert_eq!(check_setrange(10, 1, 10), Err(RangeError::TooLong));
        assert_eq!(check_setrange(i64::MAX, 1, 10), Err(RangeError::TooLong));
        // Nothing written: no size check (Redis replies the length).
        assert_eq!(check_setrange(i64::MAX, 0, 10), Ok(i64::MAX as usize));
        assert_eq!(
            RangeError::TooLong.to_string(),
            "string exceeds maximum allowed size (proto-max-bulk-len)"
        );
    }
}
