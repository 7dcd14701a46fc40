//! Software x87 extended precision ("long double": a 64-bit significand,
//! 15-bit exponent), just enough for Redis's `INCRBYFLOAT`.
//!
//! Redis parses both operands with `strtold`, adds them as C `long double`
//! and stores the sum printed with `%.17Lf`, trailing zeros removed. On
//! x86-64 that is the 80-bit format, whose 64-bit significand is why
//! `0.1 + 0.2` gives `0.3` there (an `f64` sum prints as
//! `0.30000000000000004`). Rust has no such type, so this module computes
//! exactly what the hardware would: every operation is exact on big
//! integers and then rounded once, to nearest with ties to even, to a
//! 64-bit significand (subnormals and overflow included). Parsing and
//! printing are exact as well, as glibc's are.
//!
//! Invariants: a finite value is `mant * 2^exp` with `mant < 2^64` and
//! `EXP_MIN <= exp <= EXP_MAX`; a normal value has the top bit of `mant`
//! set; zero has `mant == 0` (and a sign).

use std::cmp::Ordering;

/// Smallest exponent: the subnormal scale, 2^-16445.
const EXP_MIN: i64 = -16445;
/// Largest exponent of a finite value (`mant * 2^exp < 2^16384`).
const EXP_MAX: i64 = 16320;
/// Longest accepted input (Redis's `MAX_LONG_DOUBLE_CHARS`, exclusive).
pub const MAX_CHARS: usize = 5 * 1024;

/// An 80-bit extended-precision value (NaN is not representable: an
/// operation that would produce it returns `None`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LongDouble {
    /// `(-1)^neg * mant * 2^exp`.
    Finite { neg: bool, mant: u64, exp: i64 },
    /// Positive or negative infinity.
    Inf { neg: bool },
}

/// Unsigned big integer, little-endian 32-bit limbs, no leading zero limbs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Big(Vec<u32>);

impl Big {
    fn from_u128(mut v: u128) -> Big {
        let mut b = Big(Vec::new());
        while v != 0 {
            b.0.push(v as u32);
            v >>= 32;
        }
        b
    }

    fn is_zero(&self) -> bool {
        self.0.is_empty()
    }

    fn trim(&mut self) {
        while self.0.last() == Some(&0) {
            self.0.pop();
        }
    }

    /// `self = self * m + a`.
    fn mul_add_small(&mut self, m: u32, a: u32) {
        let mut carry = u64::from(a);
        for limb in &mut self.0 {
            let v = u64::from(*limb) * u64::from(m) + carry;
            *limb = v as u32;
            carry = v >> 32;
        }
        if carry != 0 {
            self.0.push(carry as u32);
        }
        self.trim();
    }

    fn mul_pow10(&mut self, mut k: u64) {
        while k >= 9 {
            self.mul_add_small(1_000_000_000, 0);
            k -= 9;
        }
        if k > 0 {
            self.mul_add_small(10u32.pow(k as u32), 0);
        }
    }

    fn bit_len(&self) -> u64 {
        match self.0.last() {
            None => 0,
            Some(&top) => (self.0.len() as u64 - 1) * 32 + u64::from(32 - top.leading_zeros()),
        }
    }

    fn bit(&self, i: u64) -> bool {
        self.0
            .get((i / 32) as usize)
            .is_some_and(|l| (l >> (i % 32)) & 1 == 1)
    }

    /// True when any of the `n` lowest bits is set.
    fn any_below(&self, n: u64) -> bool {
        let full = (n / 32) as usize;
        if self.0.iter().take(full).any(|&l| l != 0) {
            return true;
        }
        let rest = n % 32;
        rest != 0
            && self
                .0
                .get(full)
                .is_some_and(|&l| l & ((1u32 << rest) - 1) != 0)
    }

    fn shl(&self, n: u64) -> Big {
        if self.is_zero() {
            return Big::default();
        }
        let (words, bits) = ((n / 32) as usize, (n % 32) as u32);
        let mut v = vec![0u32; words];
        let mut carry = 0u32;
        for &l in &self.0 {
            if bits == 0 {
                v.push(l);
            } else {
                v.push((l << bits) | carry);
                carry = l >> (32 - bits);
            }
        }
        if carry != 0 {
            v.push(carry);
        }
        Big(v)
    }

    fn shr(&self, n: u64) -> Big {
        let (words, bits) = ((n / 32) as usize, (n % 32) as u32);
        if words >= self.0.len() {
            return Big::default();
        }
        let src = &self.0[words..];
        let mut v = Vec::with_capacity(src.len());
        for (i, &l) in src.iter().enumerate() {
            let hi = src.get(i + 1).copied().unwrap_or(0);
            v.push(if bits == 0 {
                l
            } else {
                (l >> bits) | (hi << (32 - bits))
            });
        }
        let mut b = Big(v);
        b.trim();
        b
    }

    fn cmp(&self, o: &Big) -> Ordering {
        self.0
            .len()
            .cmp(&o.0.len())
            .then_with(|| self.0.iter().rev().cmp(o.0.iter().rev()))
    }

    fn add(&self, o: &Big) -> Big {
        let mut v = Vec::with_capacity(self.0.len().max(o.0.len()) + 1);
        let mut carry = 0u64;
        for i in 0..self.0.len().max(o.0.len()) {
            let s = u64::from(*self.0.get(i).unwrap_or(&0))
                + u64::from(*o.0.get(i).unwrap_or(&0))
                + carry;
            v.push(s as u32);
            carry = s >> 32;
        }
        if carry != 0 {
            v.push(carry as u32);
        }
        Big(v)
    }

    /// `self - o`; requires `self >= o`.
    fn sub(&self, o: &Big) -> Big {
        let mut v = Vec::with_capacity(self.0.len());
        let mut borrow = 0i64;
        for (i, &l) in self.0.iter().enumerate() {
            let mut d = i64::from(l) - i64::from(*o.0.get(i).unwrap_or(&0)) - borrow;
            borrow = 0;
            if d < 0 {
                d += 1 << 32;
                borrow = 1;
            }
            v.push(d as u32);
        }
        let mut b = Big(v);
        b.trim();
        b
    }

    /// `(self / d, self % d != 0)` for a quotient below 2^128.
    fn div_small_quotient(&self, d: &Big) -> (u128, bool) {
        if self.cmp(d) == Ordering::Less {
            return (0, !self.is_zero());
        }
        let shift = self.bit_len() - d.bit_len();
        debug_assert!(shift < 128);
        let mut rem = self.clone();
        let mut q = 0u128;
        for i in (0..=shift).rev() {
            let ds = d.shl(i);
            if rem.cmp(&ds) != Ordering::Less {
                rem = rem.sub(&ds);
                q |= 1 << i;
            }
        }
        (q, !rem.is_zero())
    }

    /// Decimal digits (no sign, "0" for zero).
    fn to_decimal(&self) -> String {
        if self.is_zero() {
            return "0".into();
        }
        let mut limbs = self.0.clone();
        let mut chunks = Vec::new();
        while !limbs.is_empty() {
            let mut rem = 0u64;
            for l in limbs.iter_mut().rev() {
                let cur = (rem << 32) | u64::from(*l);
                *l = (cur / 1_000_000_000) as u32;
                rem = cur % 1_000_000_000;
            }
            while limbs.last() == Some(&0) {
                limbs.pop();
            }
            chunks.push(rem as u32);
        }
        let mut s = chunks.pop().map(|c| c.to_string()).unwrap_or_default();
        for c in chunks.iter().rev() {
            s.push_str(&format!("{c:09}"));
        }
        s
    }
}

/// Rounds `big * 2^exp2` (plus a positive amount smaller than one unit of
/// `big` when `sticky`) to the nearest long double, ties to even.
fn round(neg: bool, big: &Big, exp2: i64, sticky: bool) -> LongDouble {
    if big.is_zero() {
        return LongDouble::Finite {
            neg,
            mant: 0,
            exp: 0,
        };
    }
    let len = big.bit_len() as i64;
    let exp = (exp2 + len - 64).max(EXP_MIN);
    let shift = exp - exp2;
    let (mant, mut exp) = if shift <= 0 {
        // Exact: fewer than 64 significant bits (sticky bits are below
        // half a unit here by construction of the callers).
        let m = big.shl((-shift) as u64);
        (
            m.0.iter()
                .rev()
                .fold(0u64, |a, &l| (a << 32) | u64::from(l)),
            exp,
        )
    } else {
        let s = shift as u64;
        let m = big.shr(s);
        let mant =
            m.0.iter()
                .rev()
                .fold(0u64, |a, &l| (a << 32) | u64::from(l));
        let half = big.bit(s - 1);
        let rest = sticky || big.any_below(s - 1);
        if half && (rest || mant & 1 == 1) {
            match mant.checked_add(1) {
                Some(m) => (m, exp),
                None => (1 << 63, exp + 1),
            }
        } else {
            (mant, exp)
        }
    };
    if mant == 0 {
        exp = 0;
    }
    if exp > EXP_MAX {
        return LongDouble::Inf { neg };
    }
    LongDouble::Finite { neg, mant, exp }
}

fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

impl LongDouble {
    /// Parses a whole argument the way Redis's `string2ld` does: what glibc
    /// `strtold` accepts (decimal, `0x` hexadecimal with a `p` exponent,
    /// `inf`/`infinity`), all of it, no leading white space, no NaN, not
    /// overflowing to infinity and not underflowing to zero.
    pub fn parse(s: &[u8]) -> Option<LongDouble> {
        if s.is_empty() || s.len() >= MAX_CHARS || is_c_space(s[0]) {
            return None;
        }
        let (neg, body) = match s[0] {
            b'-' => (true, &s[1..]),
            b'+' => (false, &s[1..]),
            _ => (false, s),
        };
        if body.eq_ignore_ascii_case(b"inf") || body.eq_ignore_ascii_case(b"infinity") {
            return Some(LongDouble::Inf { neg });
        }
        let v = if body.len() > 2 && body[0] == b'0' && (body[1] | 0x20) == b'x' {
            parse_hex(neg, &body[2..])?
        } else {
            parse_decimal(neg, body)?
        };
        match v {
            // Overflow (ERANGE with HUGE_VAL) is refused.
            LongDouble::Inf { .. } => None,
            LongDouble::Finite { mant: 0, .. } if !is_literal_zero(body) => None,
            v => Some(v),
        }
    }

    /// `self + other` rounded once; `None` for NaN (`inf + -inf`).
    pub fn checked_add(self, other: LongDouble) -> Option<LongDouble> {
        use LongDouble::{Finite, Inf};
        match (self, other) {
            (Inf { neg: a }, Inf { neg: b }) if a != b => None,
            (Inf { neg }, _) | (_, Inf { neg }) => Some(Inf { neg }),
            (
                Finite {
                    mant: 0, neg: a, ..
                },
                Finite {
                    mant: 0, neg: b, ..
                },
            ) => Some(Finite {
                neg: a && b,
                mant: 0,
                exp: 0,
            }),
            (Finite { mant: 0, .. }, x) | (x, Finite { mant: 0, .. }) => Some(x),
            (
                Finite {
                    neg: na,
                    mant: ma,
                    exp: ea,
                },
                Finite {
                    neg: nb,
                    mant: mb,
                    exp: eb,
                },
            ) => {
                // Far apart: the smaller is below a quarter unit of the
                // larger, which is then the correctly rounded sum.
                if ea - eb > 200 {
                    return Some(self);
                }
                if eb - ea > 200 {
                    return Some(other);
                }
                let e = ea.min(eb);
                let a = Big::from_u128(u128::from(ma)).shl((ea - e) as u64);
                let b = Big::from_u128(u128::from(mb)).shl((eb - e) as u64);
                if na == nb {
                    return Some(round(na, &a.add(&b), e, false));
                }
                Some(match a.cmp(&b) {
                    Ordering::Equal => Finite {
                        neg: false,
                        mant: 0,
                        exp: 0,
                    },
                    Ordering::Greater => round(na, &a.sub(&b), e, false),
                    Ordering::Less => round(nb, &b.sub(&a), e, false),
                })
            }
        }
    }

    /// True for positive or negative infinity.
    pub fn is_inf(self) -> bool {
        matches!(self, LongDouble::Inf { .. })
    }

    /// `printf("%.17Lf")` with trailing zeros (and a trailing `.`) removed
    /// and `-0` printed as `0`: Redis's "human" long double format.
    pub fn to_human(self) -> String {
        let (neg, mant, exp) = match self {
            LongDouble::Inf { neg } => return if neg { "-inf" } else { "inf" }.into(),
            LongDouble::Finite { neg, mant, exp } => (neg, mant, exp),
        };
        let m = Big::from_u128(u128::from(mant));
        let digits = if exp >= 0 {
            let mut s = m.shl(exp as u64).to_decimal();
            s.push_str(&"0".repeat(17));
            s
        } else {
            // round(mant * 10^17 / 2^-exp), ties to even.
            let mut n = m;
            n.mul_pow10(17);
            let s = (-exp) as u64;
            let mut q = n.shr(s);
            let half = n.bit(s - 1);
            let rest = n.any_below(s - 1);
            if half && (rest || q.bit(0)) {
                q = q.add(&Big::from_u128(1));
            }
            q.to_decimal()
        };
        let digits = format!("{digits:0>18}");
        let (int, frac) = digits.split_at(digits.len() - 17);
        let frac = frac.trim_end_matches('0');
        let mut out = String::with_capacity(digits.len() + 2);
        if neg && !(int == "0" && frac.is_empty()) {
            out.push('-');
        }
        out.push_str(int);
        if !frac.is_empty() {
            out.push('.');
            out.push_str(frac);
        }
        out
    }
}

/// True when the (unsigned) literal denotes zero exactly, so that rounding
/// to zero is not an underflow.
fn is_literal_zero(body: &[u8]) -> bool {
    let mant = if body.len() > 2 && body[0] == b'0' && (body[1] | 0x20) == b'x' {
        let b = &body[2..];
        &b[..b.iter().position(|c| (c | 0x20) == b'p').unwrap_or(b.len())]
    } else {
        &body[..body
            .iter()
            .position(|c| (c | 0x20) == b'e')
            .unwrap_or(body.len())]
    };
    mant.iter().all(|&c| c == b'0' || c == b'.')
}

/// Parses an optional sign and decimal digits of an exponent, saturating
/// far outside any representable range.
fn parse_exp(s: &[u8]) -> Option<i64> {
    let (neg, digits) = match s.first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let v = digits
        .iter()
        .fold(0i64, |a, &d| (a * 10 + i64::from(d - b'0')).min(1 << 40));
    Some(if neg { -v } else { v })
}

/// Splits `digits[.digits]` into (all digits, count after the point);
/// at least one digit.
fn split_mantissa(m: &[u8], is_digit: impl Fn(u8) -> bool) -> Option<(Vec<u8>, i64)> {
    let mut digits = Vec::with_capacity(m.len());
    let mut frac = None;
    for &c in m {
        if c == b'.' && frac.is_none() {
            frac = Some(0i64);
        } else if is_digit(c) {
            digits.push(c);
            if let Some(f) = frac.as_mut() {
                *f += 1;
            }
        } else {
            return None;
        }
    }
    if digits.is_empty() {
        return None;
    }
    Some((digits, frac.unwrap_or(0)))
}

fn parse_decimal(neg: bool, body: &[u8]) -> Option<LongDouble> {
    let e_at = body.iter().position(|c| (c | 0x20) == b'e');
    let (m, e) = match e_at {
        Some(i) => (&body[..i], parse_exp(&body[i + 1..])?),
        None => (body, 0),
    };
    let (digits, frac) = split_mantissa(m, |c| c.is_ascii_digit())?;
    let digits = {
        let first = digits.iter().position(|&c| c != b'0');
        match first {
            None => {
                return Some(LongDouble::Finite {
                    neg,
                    mant: 0,
                    exp: 0,
                });
            }
            Some(i) => &digits[i..],
        }
    };
    let e10 = e - frac;
    // Decimal magnitude: value is in [10^(mag-1), 10^mag).
    let mag = digits.len() as i64 + e10;
    if mag > 4934 {
        return Some(LongDouble::Inf { neg });
    }
    if mag < -4952 {
        return Some(LongDouble::Finite {
            neg,
            mant: 0,
            exp: 0,
        });
    }
    let mut d = Big::default();
    for &c in digits {
        d.mul_add_small(10, u32::from(c - b'0'));
    }
    if e10 >= 0 {
        d.mul_pow10(e10 as u64);
        return Some(round(neg, &d, 0, false));
    }
    let mut b = Big::from_u128(1);
    b.mul_pow10((-e10) as u64);
    // At least 67 quotient bits: 64 kept, then the rounding bits.
    let s = (b.bit_len() as i64 - d.bit_len() as i64 + 67).max(0) as u64;
    let (q, sticky) = d.shl(s).div_small_quotient(&b);
    Some(round(neg, &Big::from_u128(q), -(s as i64), sticky))
}

fn parse_hex(neg: bool, body: &[u8]) -> Option<LongDouble> {
    let p_at = body.iter().position(|c| (c | 0x20) == b'p');
    let (m, p) = match p_at {
        Some(i) => (&body[..i], parse_exp(&body[i + 1..])?),
        None => (body, 0),
    };
    let (digits, frac) = split_mantissa(m, |c| c.is_ascii_hexdigit())?;
    let mut h = Big::default();
    for &c in &digits {
        h.mul_add_small(16, (c as char).to_digit(16).unwrap_or(0));
    }
    if h.is_zero() {
        return Some(LongDouble::Finite {
            neg,
            mant: 0,
            exp: 0,
        });
    }
    let exp2 = p - 4 * frac;
    let top = exp2 + h.bit_len() as i64;
    if top > 16400 {
        return Some(LongDouble::Inf { neg });
    }
    if top < -16500 {
        return Some(LongDouble::Finite {
            neg,
            mant: 0,
            exp: 0,
        });
    }
    Some(round(neg, &h, exp2, false))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ld(s: &str) -> LongDouble {
        LongDouble::parse(s.as_bytes()).unwrap_or_else(|| panic!("{s} should parse"))
    }

    fn sum(a: &str, b: &str) -> String {
        ld(a).checked_add(ld(b)).unwrap().to_human()
    }

    #[test]
    fn redis_documented_examples() {
        // The INCRBYFLOAT examples of Redis's documentation.
        assert_eq!(sum("10.50", "0.1"), "10.6");
        assert_eq!(sum("10.6", "-5"), "5.6");
        assert_eq!(sum("5.0e3", "2.0e2"), "5200");
    }

    #[test]
    fn extended_precision_not_double() {
        // f64 would print 0.30000000000000004 here.
        assert_eq!(sum("0.1", "0.2"), "0.3");
        assert_eq!(sum("1", "-1.1"), "-0.1");
        assert_eq!(sum("17179869184", "1.5"), "17179869185.5");
        assert_eq!(sum("17179869184", "17179869184"), "34359738368");
        assert_eq!(sum("0", "1"), "1");
        assert_eq!(sum("1", "0.25"), "1.25");
    }

    #[test]
    fn printing_rounds_at_17_decimals() {
        // 1/3 has more digits than 17 decimals can show.
        let third = ld("1")
            .checked_add(ld("-0.66666666666666666666666"))
            .unwrap();
        assert_eq!(third.to_human(), "0.33333333333333333");
        assert_eq!(ld("1e-18").to_human(), "0");
        assert_eq!(ld("-1e-18").to_human(), "0");
        assert_eq!(ld("-0").to_human(), "0");
        assert_eq!(ld("6e-18").to_human(), "0.00000000000000001");
        assert_eq!(ld("4e-18").to_human(), "0");
        // 64 significant bits: the nearest long double, printed exactly.
        assert_eq!(
            ld("123456789012345678901234567890").to_human(),
            "123456789012345678899921813504"
        );
        assert_eq!(ld("1e20").to_human(), "100000000000000000000");
    }

    #[test]
    fn negative_zero_never_printed() {
        let a = ld("0.024390243902439025");
        let b = ld("-0.024390243902439025");
        let z = a.checked_add(b).unwrap();
        assert_eq!(z.to_human(), "0");
        assert_eq!(ld("-0").checked_add(ld("-0")).unwrap().to_human(), "0");
    }

    #[test]
    fn what_strtold_accepts() {
        assert_eq!(ld("+1.5").to_human(), "1.5");
        assert_eq!(ld(".5").to_human(), "0.5");
        assert_eq!(ld("5.").to_human(), "5");
        assert_eq!(ld("1E3").to_human(), "1000");
        assert_eq!(ld("1e+3").to_human(), "1000");
        assert_eq!(ld("0x10").to_human(), "16");
        assert_eq!(ld("0x1.8p1").to_human(), "3");
        assert_eq!(ld("-0X.8").to_human(), "-0.5");
        assert!(ld("inf").is_inf());
        assert!(ld("-Infinity").is_inf());
        assert_eq!(ld("0e999999999999").to_human(), "0");
    }

    #[test]
    fn what_redis_refuses() {
        for bad in [
            "",
            " 11",
            "11 ",
            " 11 ",
            "1\x002",
            "abc",
            "1e",
            "1e+",
            "e5",
            ".",
            "-",
            "nan",
            "NaN",
            "1.2.3",
            "0x",
            "0xp1",
            "1e99999",
            "-1e5000",
            "1e-99999",
            "0x1p99999",
            "--1",
            "1_0",
        ] {
            assert_eq!(LongDouble::parse(bad.as_bytes()), None, "{bad:?}");
        }
        assert_eq!(LongDouble::parse(&vec![b'1'; MAX_CHARS]), None);
        let mut longest = b"1.".to_vec();
        longest.resize(MAX_CHARS - 1, b'0');
        assert_eq!(LongDouble::parse(&longest).unwrap().to_human(), "1");
    }

    #[test]
    fn range_edges() {
        // Largest finite long double ~1.18973e4932; 1e4932 is finite.
        let big = ld("1e4932");
        assert!(!big.is_inf());
        assert!(big.checked_add(big).unwrap().is_inf());
        assert!(ld("inf").checked_add(ld("1")).unwrap().is_inf());
        assert_eq!(ld("inf").checked_add(ld("-inf")), None);
        // Smallest subnormal ~3.6e-4951 parses; far below does not.
        assert!(LongDouble::parse(b"4e-4951").is_some());
        assert!(LongDouble::parse(b"1e-4960").is_none());
        assert_eq!(big.to_human().len(), 4933);
    }

    #[test]
    fn huge_and_tiny_addends() {
        // 1e30 is not exact in 64 bits; the tiny addend changes nothing.
        assert_eq!(sum("1e30", "1e-30"), "1000000000000000000024696061952");
        assert_eq!(sum("1e-30", "1"), "1");
        assert_eq!(sum("9223372036854775807", "1"), "9223372036854775808");
        assert_eq!(sum("18446744073709551615", "1"), "18446744073709551616");
    }

    #[test]
    fn agrees_with_f64_where_f64_is_exact() {
        for (a, b) in [
            (1.5f64, 2.25f64),
            (-3.0, 0.125),
            (1024.0, -2048.5),
            (0.5, 0.25),
        ] {
            let got = sum(&a.to_string(), &b.to_string());
            assert_eq!(got, (a + b).to_string());
        }
    }
}
