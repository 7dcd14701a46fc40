//! `SETBIT`, `GETBIT` and `BITCOUNT` on byte strings (Redis 7.0 rules):
//! bit 0 is the most significant bit of the first byte; a string grows
//! with zero bytes to hold the bit being set; ranges are in bytes or, with
//! `BIT`, in bits, negative indexes counting from the end.

use std::fmt;

/// Why a bit command is refused (Redis's texts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BitError {
    /// The offset is not a non-negative integer below the size limit.
    Offset,
    /// The bit value is not 0 or 1.
    Value,
}

impl fmt::Display for BitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BitError::Offset => "bit offset is not an integer or out of range",
            BitError::Value => "bit is not an integer or out of range",
        })
    }
}

/// Parses a bit offset: a non-negative integer whose byte (`offset / 8`)
/// lies below `max_bytes`.
pub fn parse_offset(arg: &[u8], max_bytes: usize) -> Result<u64, BitError> {
    let n: i64 = crate::protocol::parse_int(arg).ok_or(BitError::Offset)?;
    if n < 0 || (n as u64 >> 3) >= max_bytes as u64 {
        return Err(BitError::Offset);
    }
    Ok(n as u64)
}

/// Parses a bit value: `0` or `1`.
pub fn parse_value(arg: &[u8]) -> Result<bool, BitError> {
    match crate::protocol::parse_int::<i64>(arg) {
        Some(0) => Ok(false),
        Some(1) => Ok(true),
        _ => Err(BitError::Value),
    }
}

/// The bit at `offset` (0 past the end).
pub fn getbit(v: &[u8], offset: u64) -> bool {
    v.get((offset >> 3) as usize)
        .is_some_and(|b| b & (0x80 >> (offset & 7)) != 0)
}

/// Writes into `out` the value `old` (`None`: missing) with the bit at
/// `offset` set to `on`. Returns the previous bit and whether the value
/// changed (created, grown, or the bit flipped); an unchanged value need
/// not be written.
pub fn setbit(old: Option<&[u8]>, offset: u64, on: bool, out: &mut Vec<u8>) -> (bool, bool) {
    let byte = (offset >> 3) as usize;
    let mask = 0x80u8 >> (offset & 7);
    let old_bytes = old.unwrap_or(&[]);
    let prev = getbit(old_bytes, offset);
    let grows = old.is_none() || old_bytes.len() <= byte;
    out.clear();
    out.extend_from_slice(old_bytes);
    if out.len() <= byte {
        out.resize(byte + 1, 0);
    }
    if on {
        out[byte] |= mask;
    } else {
        out[byte] &= !mask;
    }
    (prev, grows || prev != on)
}

/// `BITCOUNT` over `v`: the whole string, or `start..=end` in bytes (or in
/// bits when `bit`), with Redis's index rules.
pub fn bitcount(v: &[u8], range: Option<(i64, i64, bool)>) -> u64 {
    let Some((start, end, bit)) = range else {
        return popcount(v);
    };
    if start < 0 && end < 0 && start > end {
        return 0;
    }
    let total = if bit {
        (v.len() as i64) << 3
    } else {
        v.len() as i64
    };
    let start = if start < 0 { total + start } else { start }.max(0);
    let end = if end < 0 { total + end } else { end }
        .max(0)
        .min(total - 1);
    if start > end {
        return 0;
    }
    if !bit {
        return popcount(&v[start as usize..=end as usize]);
    }
    let (first, last) = ((start >> 3) as usize, (end >> 3) as usize);
    let mut n = popcount(&v[first..=last]);
    // Take away the bits of the edge bytes that lie outside the range.
    let head = !(0xffu8 >> (start & 7));
    let tail = (0xffu16 >> ((end & 7) + 1)) as u8;
    n -= u64::from((v[first] & head).count_ones());
    n -= u64::from((v[last] & tail).count_ones());
    n
}

fn popcount(v: &[u8]) -> u64 {
    let mut chunks = v.chunks_exact(8);
    let mut n: u64 = chunks
        .by_ref()
        .map(|c| u64::from(u64::from_ne_bytes(c.try_into().unwrap_or([0; 8])).count_ones()))
        .sum();
    n += chunks
        .remainder()
        .iter()
        .map(|b| u64::from(b.count_ones()))
        .sum::<u64>();
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(v: &[u8], from: usize, to: usize) -> u64 {
        (from..=to).filter(|&i| getbit(v, i as u64)).count() as u64
    }

    #[test]
    fn set_and_get_bits_msb_first() {
        let mut out = Vec::new();
        assert_eq!(setbit(None, 1, true, &mut out), (false, true));
        assert_eq!(out, [0x40]);
        let old = out.clone();
        assert_eq!(setbit(Some(&old), 1, true, &mut out), (true, false));
        assert_eq!(setbit(Some(&old), 1, false, &mut out), (true, true));
        assert_eq!(out, [0]);
        assert_eq!(setbit(Some(b"\x00"), 17, false, &mut out), (false, true));
        assert_eq!(out, [0, 0, 0]);
        assert!(getbit(b"\x80", 0));
        assert!(!getbit(b"\x80", 1));
        assert!(!getbit(b"\x80", 800));
        // "1" is 0x31 = 00110001.
        let bits: Vec<bool> = (0..8).map(|i| getbit(b"1", i)).collect();
        assert_eq!(bits, [false, false, true, true, false, false, false, true]);
    }

    #[test]
    fn offsets_and_values() {
        let max = 512 << 20;
        assert_eq!(parse_offset(b"0", max), Ok(0));
        assert_eq!(parse_offset(b"4294967295", max), Ok(4294967295));
        assert_eq!(parse_offset(b"4294967296", max), Err(BitError::Offset));
        assert_eq!(parse_offset(b"-1", max), Err(BitError::Offset));
        assert_eq!(parse_offset(b"x", max), Err(BitError::Offset));
        for bad in ["-1", "2", "10", "x", ""] {
            assert_eq!(parse_value(bad.as_bytes()), Err(BitError::Value));
        }
        assert_eq!(parse_value(b"1"), Ok(true));
        assert!(BitError::Value.to_string().contains("out of range"));
    }

    #[test]
    fn bitcount_bytes_and_bits() {
        let v = b"foobar";
        assert_eq!(bitcount(v, None), 26);
        assert_eq!(bitcount(v, Some((0, 0, false))), 4);
        assert_eq!(bitcount(v, Some((1, 1, false))), 6);
        assert_eq!(bitcount(v, Some((1, 1, true))), 1);
        assert_eq!(bitcount(v, Some((5, 30, true))), 17);
        assert_eq!(bitcount(v, Some((-1, -2, false))), 0);
        assert_eq!(bitcount(v, Some((2, 1, false))), 0);
        assert_eq!(bitcount(v, Some((0, 1000, false))), 26);
        assert_eq!(bitcount(b"", Some((0, -1, false))), 0);
        assert_eq!(bitcount(b"", Some((0, -1, true))), 0);
        for s in 0..48i64 {
            for e in s..48 {
                assert_eq!(
                    bitcount(v, Some((s, e, true))),
                    naive(v, s as usize, e as usize),
                    "{s}..{e}"
                );
            }
        }
        let long: Vec<u8> = (0..100u8).collect();
        assert_eq!(bitcount(&long, None), naive(&long, 0, 799));
    }
}
