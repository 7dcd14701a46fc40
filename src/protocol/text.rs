//! Text protocol parser (PROTOCOL.md §1–§5).

use super::Parsed;

/// Parses the first request of `buf`.
pub fn parse(_buf: &[u8]) -> Parsed<'_> {
    Parsed::Incomplete
}

/// Parses a final unterminated request after EOF.
pub fn parse_eof(_buf: &[u8]) -> Parsed<'_> {
    Parsed::Incomplete
}
