//! Pure semantics of Redis's string commands beyond GET/SET/APPEND:
//! `INCRBYFLOAT` arithmetic and formatting ([`longdouble`]), byte ranges
//! (`GETRANGE`/`SUBSTR`/`SETRANGE`, [`range`]), bits (`SETBIT`/`GETBIT`/
//! `BITCOUNT`, [`bits`]) and `LCS` ([`lcs`]).
//!
//! Nothing here touches the store, a socket or a reply buffer: each
//! function maps byte strings and arguments to a result or to an error
//! whose `Display` is Redis's error text, so the executor only reads the
//! old value, calls in, and stores/replicates the new value like any other
//! write (the resulting value travels, never the operation).

pub mod bits;
pub mod lcs;
pub mod longdouble;
pub mod range;
