//! Signed payloads: HMAC-SHA256 over the encoded batch or presence.
//!
//! When `mqtt.cluster_key` (or `mqtt.cluster_key_file`) names at least one
//! key, every payload this node publishes — event batches on
//! `<prefix>/events`, its presence (and last will) on `<prefix>/nodes/<id>`
//! — is
//!
//! ```text
//! body || "MKVS" || HMAC-SHA256(first key, body)
//! ```
//!
//! a 36-byte trailer after the CBOR body ([`TRAILER_LEN`]). The trailer
//! goes *after* the body so the own-origin prefix check and the CBOR
//! decoder see the batch unchanged.
//!
//! Invariants:
//! * a node with keys accepts a payload only if it carries the trailer and
//!   the MAC verifies with *one* of its keys (rotation: list the new key
//!   first, keep the old one until every node signs with the new one);
//!   unsigned payloads and wrong MACs are refused before decoding;
//! * MACs are compared in constant time (`Mac::verify_slice`);
//! * a node without keys strips a trailer it finds and decodes the batch
//!   without checking it ([`unsigned_body`]).

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Separates the batch from the MAC.
pub const MARKER: &[u8; 4] = b"MKVS";
/// Length of an HMAC-SHA256 tag.
pub const MAC_LEN: usize = 32;
/// Bytes a signature adds to a payload.
pub const TRAILER_LEN: usize = MARKER.len() + MAC_LEN;

/// Why a payload was refused by a node with keys.
#[derive(Debug, PartialEq, Eq)]
pub enum AuthError {
    /// No `MKVS` trailer: published by a node (or client) without a key.
    Unsigned,
    /// A trailer whose MAC matches none of the keys.
    BadMac,
}

impl std::fmt::Display for AuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AuthError::Unsigned => "unsigned payload",
            AuthError::BadMac => "MAC matches no cluster key",
        })
    }
}

/// The cluster keys: the first signs, any verifies.
pub struct Keys(Vec<HmacSha256>);

impl Keys {
    /// Keys from the configured strings (any length is a valid HMAC key).
    pub fn new(keys: &[String]) -> Keys {
        Keys(
            keys.iter()
                .map(|k| {
                    HmacSha256::new_from_slice(k.as_bytes()).expect("HMAC takes any key length")
                })
                .collect(),
        )
    }

    /// No key configured: payloads are neither signed nor checked.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Appends the trailer signing `payload` (the encoded batch) with the
    /// first key; does nothing without keys.
    pub fn sign(&self, payload: &mut Vec<u8>) {
        if let Some(k) = self.0.first() {
            let mut m = k.clone();
            m.update(payload);
            let tag = m.finalize().into_bytes();
            payload.extend_from_slice(MARKER);
            payload.extend_from_slice(&tag);
        }
    }

    /// The batch inside `payload` if its MAC verifies with one of the keys.
    /// Without keys, [`unsigned_body`].
    pub fn verify<'a>(&self, payload: &'a [u8]) -> Result<&'a [u8], AuthError> {
        if self.is_empty() {
            return Ok(unsigned_body(payload));
        }
        let (body, tag) = split(payload).ok_or(AuthError::Unsigned)?;
        for k in &self.0 {
            let mut m = k.clone();
            m.update(body);
            if m.verify_slice(tag).is_ok() {
                return Ok(body);
            }
        }
        Err(AuthError::BadMac)
    }
}

/// `(batch, mac)` if `payload` ends in a trailer.
fn split(payload: &[u8]) -> Option<(&[u8], &[u8])> {
    let cut = payload.len().checked_sub(TRAILER_LEN)?;
    let (body, trailer) = payload.split_at(cut);
    (trailer[..MARKER.len()] == MARKER[..]).then(|| (body, &trailer[MARKER.len()..]))
}

/// For a node without keys: the batch without its trailer, if it has one.
/// (A trailer-looking tail on an unsigned batch makes it undecodable,
/// which the CBOR decoder reports; encoded batches end in an event field,
/// so in practice this does not happen for batches from MerkleKV nodes.)
pub fn unsigned_body(payload: &[u8]) -> &[u8] {
    split(payload).map_or(payload, |(body, _)| body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(k: &[&str]) -> Keys {
        Keys::new(&k.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn rfc4231_case_2() {
        let mut p = b"what do ya want for nothing?".to_vec();
        keys(&["Jefe"]).sign(&mut p);
        assert_eq!(&p[28..32], MARKER);
        assert_eq!(
            hex(&p[32..]),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn signed_payload_verifies_and_yields_the_batch() {
        let k = keys(&["secret"]);
        let mut p = b"batch bytes".to_vec();
        k.sign(&mut p);
        assert_eq!(p.len(), 11 + TRAILER_LEN);
        assert_eq!(k.verify(&p), Ok(&b"batch bytes"[..]));
    }

    #[test]
    fn unsigned_wrong_key_and_tampered_payloads_are_refused() {
        let k = keys(&["secret"]);
        assert_eq!(k.verify(b"batch bytes"), Err(AuthError::Unsigned));
        assert_eq!(k.verify(b""), Err(AuthError::Unsigned));
        let mut p = b"batch bytes".to_vec();
        keys(&["other"]).sign(&mut p);
        assert_eq!(k.verify(&p), Err(AuthError::BadMac));
        let mut p = b"batch bytes".to_vec();
        k.sign(&mut p);
        p[0] ^= 1;
        assert_eq!(k.verify(&p), Err(AuthError::BadMac));
        let mut p = b"batch bytes".to_vec();
        k.sign(&mut p);
        let last = p.len() - 1;
        p[last] ^= 1;
        assert_eq!(k.verify(&p), Err(AuthError::BadMac));
    }

    #[test]
    fn any_key_verifies_the_first_signs() {
        let receiver = keys(&["new", "old"]);
        let mut p = b"x".to_vec();
        keys(&["old"]).sign(&mut p);
        assert_eq!(receiver.verify(&p), Ok(&b"x"[..]));
        let mut q = b"x".to_vec();
        receiver.sign(&mut q);
        assert_eq!(keys(&["new"]).verify(&q), Ok(&b"x"[..]));
        assert_eq!(keys(&["old"]).verify(&q), Err(AuthError::BadMac));
    }

    #[test]
    fn keyless_nodes_strip_the_trailer_and_sign_nothing() {
        let none = keys(&[]);
        let mut p = b"batch".to_vec();
        none.sign(&mut p);
        assert_eq!(p, b"batch");
        keys(&["k"]).sign(&mut p);
        assert_eq!(none.verify(&p), Ok(&b"batch"[..]));
        assert_eq!(none.verify(b"plain"), Ok(&b"plain"[..]));
    }
}
