//! Redis's data-type encoding parameters (`list-max-listpack-size`,
//! `hash-max-listpack-entries`, …): accepted by `CONFIG SET`, reported by
//! `CONFIG GET`, and without effect, because this store holds strings
//! only (docs/redis-compat.md).
//!
//! Why keep them at all: tools and test harnesses written for Redis tune
//! them around their own work (Redis's test suite sets
//! `list-max-listpack-size` outside any test, and a refusal there aborts
//! the rest of the file). A value set is remembered, so `CONFIG GET`
//! answers what was set, as on Redis; nothing else reads it.
//!
//! Invariant: [`PARAMS`] and the slots of [`TypeParams`] correspond by
//! index. Each slot is one relaxed atomic: there is no ordering between
//! parameters to preserve.

use std::sync::atomic::{AtomicI64, Ordering::Relaxed};

/// A parameter: its name, its older alias (Redis 6's `ziplist` name, if
/// any), Redis's default, and the smallest and largest values accepted.
pub struct Param {
    pub name: &'static str,
    pub alias: Option<&'static str>,
    pub default: i64,
    pub min: i64,
    pub max: i64,
}

const INT_MAX: i64 = i32::MAX as i64;

/// The parameters, with Redis 7's defaults and ranges.
pub const PARAMS: &[Param] = &[
    Param {
        name: "list-max-listpack-size",
        alias: Some("list-max-ziplist-size"),
        default: -2,
        min: i32::MIN as i64,
        max: INT_MAX,
    },
    Param {
        name: "list-compress-depth",
        alias: None,
        default: 0,
        min: 0,
        max: INT_MAX,
    },
    Param {
        name: "hash-max-listpack-entries",
        alias: Some("hash-max-ziplist-entries"),
        default: 128,
        min: 0,
        max: i64::MAX,
    },
    Param {
        name: "hash-max-listpack-value",
        alias: Some("hash-max-ziplist-value"),
        default: 64,
        min: 0,
        max: i64::MAX,
    },
    Param {
        name: "set-max-intset-entries",
        alias: None,
        default: 512,
        min: 0,
        max: i64::MAX,
    },
    Param {
        name: "set-max-listpack-entries",
        alias: None,
        default: 128,
        min: 0,
        max: i64::MAX,
    },
    Param {
        name: "set-max-listpack-value",
        alias: None,
        default: 64,
        min: 0,
        max: i64::MAX,
    },
    Param {
        name: "zset-max-listpack-entries",
        alias: Some("zset-max-ziplist-entries"),
        default: 128,
        min: 0,
        max: i64::MAX,
    },
    Param {
        name: "zset-max-listpack-value",
        alias: Some("zset-max-ziplist-value"),
        default: 64,
        min: 0,
        max: i64::MAX,
    },
    Param {
        name: "stream-node-max-bytes",
        alias: None,
        default: 4096,
        min: 0,
        max: i64::MAX,
    },
    Param {
        name: "stream-node-max-entries",
        alias: None,
        default: 100,
        min: 0,
        max: i64::MAX,
    },
];

/// The index in [`PARAMS`] of the parameter called `name` (or its
/// alias), ignoring case.
pub fn find(name: &[u8]) -> Option<usize> {
    PARAMS.iter().position(|p| {
        p.name.as_bytes().eq_ignore_ascii_case(name)
            || p.alias
                .is_some_and(|a| a.as_bytes().eq_ignore_ascii_case(name))
    })
}

/// Why a value is refused (Redis's texts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueError {
    NotInteger,
    OutOfRange,
}

impl std::fmt::Display for ValueError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ValueError::NotInteger => "argument couldn't be parsed into an integer",
            ValueError::OutOfRange => "argument must be within the allowed range",
        })
    }
}

/// Parses a value for parameter `i` (a decimal integer within its range).
pub fn parse(i: usize, v: &[u8]) -> Result<i64, ValueError> {
    let n = std::str::from_utf8(v)
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .ok_or(ValueError::NotInteger)?;
    let p = &PARAMS[i];
    if n < p.min || n > p.max {
        return Err(ValueError::OutOfRange);
    }
    Ok(n)
}

/// The current values (see the module docs).
pub struct TypeParams {
    values: Vec<AtomicI64>,
}

impl Default for TypeParams {
    fn default() -> TypeParams {
        TypeParams {
            values: PARAMS.iter().map(|p| AtomicI64::new(p.default)).collect(),
        }
    }
}

impl TypeParams {
    /// The value of parameter `i`.
    pub fn get(&self, i: usize) -> i64 {
        self.values[i].load(Relaxed)
    }

    /// Sets parameter `i` (a value checked by [`parse`]).
    pub fn set(&self, i: usize, v: i64) {
        self.values[i].store(v, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_aliases_find_the_same_slot() {
        let a = find(b"list-max-listpack-size").unwrap();
        assert_eq!(find(b"LIST-MAX-ZIPLIST-SIZE"), Some(a));
        assert_eq!(find(b"list-max-size"), None);
        let p = TypeParams::default();
        assert_eq!(p.get(a), -2);
        p.set(a, -1);
        assert_eq!(p.get(a), -1);
    }

    #[test]
    fn values_are_integers_in_range() {
        let l = find(b"list-max-listpack-size").unwrap();
        assert_eq!(parse(l, b"-1"), Ok(-1));
        assert_eq!(parse(l, b"x"), Err(ValueError::NotInteger));
        assert_eq!(parse(l, b"4294967296"), Err(ValueError::OutOfRange));
        let h = find(b"hash-max-ziplist-entries").unwrap();
        assert_eq!(parse(h, b"0"), Ok(0));
        assert_eq!(parse(h, b"-1"), Err(ValueError::OutOfRange));
    }
}
