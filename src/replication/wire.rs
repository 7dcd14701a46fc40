//! The replication wire format: one MQTT message = one CBOR batch
//! (docs/protocol.md §9.2), encoded and decoded with ciborium.
//!
//! # Batch (format 1)
//!
//! A CBOR map with exactly these text keys, in this order:
//!
//! | key      | CBOR type            | meaning                                        |
//! |----------|----------------------|------------------------------------------------|
//! | `origin` | text                 | node id of the publishing node (loop prevention) |
//! | `format` | unsigned int         | [`FORMAT`] (= 1); a receiver refuses others     |
//! | `events` | array of events      | the change events, in the order they were made |
//!
//! Each event is a CBOR array `[key, value, hlc, node]` or, for a record
//! with an expiry, `[key, value, hlc, node, expires]`:
//!
//! | index | CBOR type               | meaning                                      |
//! |-------|-------------------------|----------------------------------------------|
//! | 0     | byte string             | the key                                      |
//! | 1     | byte string, or null    | the value; null is a tombstone (a delete)    |
//! | 2     | unsigned int (64 bit)   | version: HLC timestamp (ms << 16 \| logical) |
//! | 3     | unsigned int (64 bit)   | version: XXH3-64 of the writing node's id    |
//! | 4     | unsigned int (64 bit)   | optional: absolute expiry, Unix ms (absent or 0 = none) |
//!
//! The expiry is absolute, so every receiver expires the record at the same
//! moment whenever the event arrives; an event whose expiry has passed is
//! applied as the tombstone of its version (`store/expiry.rs`). Readers
//! that predate the field skip it (trailing elements are ignored).
//!
//! Arrays are used for events (not maps) because an event is the hot path:
//! four fixed fields cost 1 header byte instead of four key strings. Extra
//! trailing array elements and unknown map keys are ignored, so a later
//! format can add fields without breaking this reader.
//!
//! `origin` is the first key so that a node can recognise its own batches
//! (which the broker echoes back to every subscriber, itself included) by a
//! byte-prefix comparison ([`OwnPrefix`]) without decoding them.
//!
//! # 1.x single events (optional compatibility, receive only)
//!
//! 1.x nodes publish one event per message: a map
//! `{v, op, key, val, ts, src, op_id, prev, ttl}` with `key` text, `val` an
//! array of byte values (or null), `ts` Unix nanoseconds and `src` the
//! origin. [`decode`] accepts it as a one-event batch: `op = "del"` (any
//! case) is a tombstone, any other op needs a `val`; the version is
//! `ts` converted to an HLC (milliseconds in the upper 48 bits, the
//! sub-millisecond part scaled into the 16 logical bits, so order is kept)
//! with `node_hash(src)`. A `ttl` (seconds, relative to `ts`) becomes the
//! absolute expiry `ts_ms + ttl * 1000`, the same on every receiver;
//! `ttl` absent, null or 0 means none. This node never emits that form.
//!
//! # Decoding
//!
//! [`decode_ref`] reads this node's own encoding (definite lengths, the
//! three keys once each, four-element events) with ciborium's low-level
//! decoder and *borrows* keys and values from the payload: no allocation
//! per event, which was about a third of a receiving node's CPU at
//! 400k events/s. Anything else — another encoder's choices, unknown keys,
//! 1.x events, errors — falls back to the general serde decoder
//! ([`decode`]), which also produces the error to report.
//!
//! # Robustness
//!
//! [`decode`] never panics on any input (property-tested): the payload is
//! bounded by the MQTT packet limit, ciborium bounds nesting depth, and a
//! batch may hold at most [`MAX_EVENTS`] events.

use std::fmt;

use ciborium_ll::{Decoder, Header, simple};
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, SerializeTuple, Serializer};
use serde::{Deserialize, Serialize};

use super::ChangeEvent;
use crate::store::version::LOGICAL_BITS;
use crate::store::{Version, node_hash};

/// The batch format version this node writes and reads.
pub const FORMAT: u64 = 1;

/// Most events a received batch may carry (this node cuts batches far
/// below it); bounds the memory a hostile payload can make a node allocate.
pub const MAX_EVENTS: usize = 1 << 16;

/// Encoded size of the fixed part of one event (array header, two byte
/// string headers, three 64-bit integers), an upper bound used to size
/// batches before encoding them.
pub const EVENT_OVERHEAD: usize = 1 + 9 + 9 + 9 + 9 + 9;

/// Upper bound of the encoded size of one event.
pub fn encoded_len(ev: &ChangeEvent) -> usize {
    EVENT_OVERHEAD + ev.key.len() + ev.value.as_ref().map_or(0, Vec::len)
}

// ---- encoding -------------------------------------------------------------

struct BatchOut<'a> {
    origin: &'a str,
    events: &'a [ChangeEvent],
}

struct EventsOut<'a>(&'a [ChangeEvent]);

struct EventOut<'a>(&'a ChangeEvent);

struct BytesOut<'a>(&'a [u8]);

impl Serialize for BatchOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(3))?;
        m.serialize_entry("origin", self.origin)?;
        m.serialize_entry("format", &FORMAT)?;
        m.serialize_entry("events", &EventsOut(self.events))?;
        m.end()
    }
}

impl Serialize for EventsOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(EventOut))
    }
}

impl Serialize for EventOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let ev = self.0;
        let expires = ev.value.is_some() && ev.expires != 0;
        let mut t = s.serialize_tuple(if expires { 5 } else { 4 })?;
        t.serialize_element(&BytesOut(&ev.key))?;
        t.serialize_element(&ev.value.as_deref().map(BytesOut))?;
        t.serialize_element(&ev.version.hlc)?;
        t.serialize_element(&ev.version.node)?;
        if expires {
            t.serialize_element(&ev.expires)?;
        }
        t.end()
    }
}

impl Serialize for BytesOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

/// Encodes one batch of `events` from node `origin` into `out` (cleared
/// first).
pub fn encode(origin: &str, events: &[ChangeEvent], out: &mut Vec<u8>) {
    out.clear();
    // Writing into a Vec cannot fail, and every value here is serialisable.
    if let Err(e) = ciborium::into_writer(&BatchOut { origin, events }, &mut *out) {
        unreachable!("CBOR encoding into memory failed: {e}");
    }
}

/// The first bytes of every batch this node encodes: recognises this
/// node's own batches without decoding them.
#[derive(Debug, Clone)]
pub struct OwnPrefix(Vec<u8>);

impl OwnPrefix {
    /// The prefix of batches published by node `origin`.
    pub fn new(origin: &str) -> OwnPrefix {
        let mut full = Vec::new();
        encode(origin, &[], &mut full);
        // Everything up to and including the origin string: the map header
        // (1 byte) + "origin" + the origin text item.
        let mut head = Vec::new();
        let _ = ciborium::into_writer(&"origin", &mut head);
        let mut text = Vec::new();
        let _ = ciborium::into_writer(&origin, &mut text);
        OwnPrefix(full[..1 + head.len() + text.len()].to_vec())
    }

    /// True if `payload` starts like a batch published by this origin.
    #[inline]
    pub fn matches(&self, payload: &[u8]) -> bool {
        payload.starts_with(&self.0)
    }
}

// ---- decoding -------------------------------------------------------------

/// A received batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// Node id of the publisher.
    pub origin: String,
    /// The events, in publication order.
    pub events: Vec<ChangeEvent>,
    /// True if this was a 1.x single-event message.
    pub legacy: bool,
}

/// Why a payload could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// Not well-formed CBOR, or a field of the wrong type.
    Cbor(String),
    /// Well-formed, but not a batch or 1.x event: the reason.
    Shape(&'static str),
    /// A batch of a format version this node does not read.
    Format(u64),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Cbor(e) => write!(f, "invalid CBOR: {e}"),
            DecodeError::Shape(e) => write!(f, "not a change batch: {e}"),
            DecodeError::Format(v) => write!(f, "unsupported batch format {v}"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// Decodes a batch (or a 1.x single event). Never panics.
pub fn decode(payload: &[u8]) -> Result<Batch, DecodeError> {
    let w: WireIn = ciborium::from_reader(payload).map_err(|e| DecodeError::Cbor(e.to_string()))?;
    if let Some(events) = w.events {
        let origin = w.origin.ok_or(DecodeError::Shape("batch without origin"))?;
        let format = w.format.ok_or(DecodeError::Shape("batch without format"))?;
        if format != FORMAT {
            return Err(DecodeError::Format(format));
        }
        return Ok(Batch {
            origin,
            events: events.0,
            legacy: false,
        });
    }
    legacy(w)
}

/// One received event, borrowing from the payload (or from an owned
/// [`Batch`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventRef<'a> {
    pub key: &'a [u8],
    /// `None` for a tombstone.
    pub value: Option<&'a [u8]>,
    pub version: Version,
    /// Absolute expiry (Unix ms), 0 if none.
    pub expires: u64,
}

/// A received batch, decoded without copying when possible.
#[derive(Debug)]
pub enum Decoded<'a> {
    /// This node's own encoding, read in place.
    Borrowed {
        origin: &'a str,
        events: Vec<EventRef<'a>>,
    },
    /// Anything else the general decoder accepted.
    Owned(Batch),
}

impl Decoded<'_> {
    /// Node id of the publisher.
    pub fn origin(&self) -> &str {
        match self {
            Decoded::Borrowed { origin, .. } => origin,
            Decoded::Owned(b) => &b.origin,
        }
    }

    /// Number of events.
    pub fn len(&self) -> usize {
        match self {
            Decoded::Borrowed { events, .. } => events.len(),
            Decoded::Owned(b) => b.events.len(),
        }
    }

    /// True if the batch has no events.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The events in publication order.
    pub fn events(&self) -> Box<dyn Iterator<Item = EventRef<'_>> + '_> {
        match self {
            Decoded::Borrowed { events, .. } => Box::new(events.iter().copied()),
            Decoded::Owned(b) => Box::new(b.events.iter().map(|e| EventRef {
                key: &e.key,
                value: e.value.as_deref(),
                version: e.version,
                expires: e.expires,
            })),
        }
    }
}

/// Decodes a batch, borrowing keys and values from `payload` when it is in
/// this node's own encoding (see the module docs). Never panics.
pub fn decode_ref(payload: &[u8]) -> Result<Decoded<'_>, DecodeError> {
    match decode_in_place(payload) {
        Some((origin, events)) => Ok(Decoded::Borrowed { origin, events }),
        None => decode(payload).map(Decoded::Owned),
    }
}

/// The fast path: exactly the format [`encode`] writes, or `None`.
fn decode_in_place(payload: &[u8]) -> Option<(&str, Vec<EventRef<'_>>)> {
    let mut r = Reader(payload);
    let Header::Map(Some(3)) = r.header()? else {
        return None;
    };
    let (mut origin, mut format, mut events) = (None, None, None);
    for _ in 0..3 {
        match r.text()? {
            "origin" if origin.is_none() => origin = Some(r.text()?),
            "format" if format.is_none() => match r.header()? {
                Header::Positive(FORMAT) => format = Some(()),
                _ => return None,
            },
            "events" if events.is_none() => events = Some(r.events()?),
            _ => return None,
        }
    }
    if !r.0.is_empty() {
        return None;
    }
    Some((origin?, events?))
}

/// A CBOR reader over a slice that hands out byte and text strings in place.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn header(&mut self) -> Option<Header> {
        let mut d = Decoder::from(&mut self.0);
        d.pull().ok()
    }

    fn take(&mut self, len: usize) -> Option<&'a [u8]> {
        if len > self.0.len() {
            return None;
        }
        let (head, rest) = self.0.split_at(len);
        self.0 = rest;
        Some(head)
    }

    fn text(&mut self) -> Option<&'a str> {
        let Header::Text(Some(len)) = self.header()? else {
            return None;
        };
        std::str::from_utf8(self.take(len)?).ok()
    }

    fn u64(&mut self) -> Option<u64> {
        match self.header()? {
            Header::Positive(v) => Some(v),
            _ => None,
        }
    }

    fn events(&mut self) -> Option<Vec<EventRef<'a>>> {
        let Header::Array(Some(n)) = self.header()? else {
            return None;
        };
        if n > MAX_EVENTS {
            return None;
        }
        // Each event takes at least 5 bytes: no allocation beyond what the
        // payload could hold.
        let mut v = Vec::with_capacity(n.min(self.0.len() / 5));
        for _ in 0..n {
            let fields = match self.header()? {
                Header::Array(Some(n @ (4 | 5))) => n,
                _ => return None,
            };
            let Header::Bytes(Some(klen)) = self.header()? else {
                return None;
            };
            let key = self.take(klen)?;
            let value = match self.header()? {
                Header::Bytes(Some(vlen)) => Some(self.take(vlen)?),
                Header::Simple(simple::NULL) => None,
                _ => return None,
            };
            let hlc = self.u64()?;
            let node = self.u64()?;
            let expires = if fields == 5 { self.u64()? } else { 0 };
            v.push(EventRef {
                key,
                value,
                version: Version::new(hlc, node),
                expires,
            });
        }
        Some(v)
    }
}

/// A 1.x single event → a one-event batch.
fn legacy(w: WireIn) -> Result<Batch, DecodeError> {
    let op = w.op.ok_or(DecodeError::Shape("neither events nor op"))?;
    let src = w.src.ok_or(DecodeError::Shape("1.x event without src"))?;
    let ts = w.ts.ok_or(DecodeError::Shape("1.x event without ts"))?;
    let key = w.key.ok_or(DecodeError::Shape("1.x event without key"))?.0;
    let value = if op.eq_ignore_ascii_case("del") || op.eq_ignore_ascii_case("delete") {
        None
    } else {
        Some(w.val.ok_or(DecodeError::Shape("1.x write without val"))?.0)
    };
    let version = Version::new(legacy_hlc(ts), node_hash(&src));
    let expires = match w.ttl {
        Some(ttl) if ttl > 0 && value.is_some() => {
            (ts / 1_000_000).saturating_add(ttl.saturating_mul(1000))
        }
        _ => 0,
    };
    Ok(Batch {
        origin: src,
        events: vec![ChangeEvent {
            key,
            value,
            version,
            expires,
        }],
        legacy: true,
    })
}

/// Unix nanoseconds → HLC: whole milliseconds in the physical part, the
/// sub-millisecond remainder scaled into the logical counter (monotonic).
fn legacy_hlc(ts_ns: u64) -> u64 {
    let ms = ts_ns / 1_000_000;
    let sub = (ts_ns % 1_000_000) * (1 << LOGICAL_BITS) / 1_000_000;
    (ms << LOGICAL_BITS) | sub
}

/// Everything a payload may hold; absent fields stay `None`, unknown ones
/// are skipped.
#[derive(Deserialize)]
struct WireIn {
    origin: Option<String>,
    format: Option<u64>,
    events: Option<EventsIn>,
    // 1.x single event.
    op: Option<String>,
    key: Option<BytesOrText>,
    val: Option<Bytes>,
    ts: Option<u64>,
    src: Option<String>,
    ttl: Option<u64>,
}

/// The events array, capped at [`MAX_EVENTS`].
struct EventsIn(Vec<ChangeEvent>);

impl<'de> Deserialize<'de> for EventsIn {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = EventsIn;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array of events")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<EventsIn, A::Error> {
                let mut v = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
                while let Some(EventIn(ev)) = seq.next_element()? {
                    if v.len() == MAX_EVENTS {
                        return Err(de::Error::custom(format_args!(
                            "more than {MAX_EVENTS} events in one batch"
                        )));
                    }
                    v.push(ev);
                }
                Ok(EventsIn(v))
            }
        }
        d.deserialize_seq(V)
    }
}

/// One `[key, value|null, hlc, node]` event.
struct EventIn(ChangeEvent);

impl<'de> Deserialize<'de> for EventIn {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = EventIn;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an event array [key, value, hlc, node, expires?]")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<EventIn, A::Error> {
                let short = || de::Error::custom("event array shorter than 4");
                let key: Bytes = seq.next_element()?.ok_or_else(short)?;
                let value: Option<Bytes> = seq.next_element()?.ok_or_else(short)?;
                let hlc: u64 = seq.next_element()?.ok_or_else(short)?;
                let node: u64 = seq.next_element()?.ok_or_else(short)?;
                let expires: Option<u64> = seq.next_element()?;
                // Later formats may append fields.
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(EventIn(ChangeEvent {
                    key: key.0,
                    value: value.map(|b| b.0),
                    version: Version::new(hlc, node),
                    expires: expires.unwrap_or(0),
                }))
            }
            fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<EventIn, A::Error> {
                Err(de::Error::custom("event must be an array"))
            }
        }
        d.deserialize_seq(V)
    }
}

/// A CBOR byte string (or, for 1.x, an array of byte values).
struct Bytes(Vec<u8>);

struct BytesVisitor;

impl<'de> Visitor<'de> for BytesVisitor {
    type Value = Bytes;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a byte string")
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Bytes, E> {
        Ok(Bytes(v.to_vec()))
    }
    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Bytes, E> {
        Ok(Bytes(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Bytes, A::Error> {
        let mut v = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(b) = seq.next_element::<u8>()? {
            v.push(b);
        }
        Ok(Bytes(v))
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_byte_buf(BytesVisitor)
    }
}

/// A 1.x key: text (or bytes).
struct BytesOrText(Vec<u8>);

impl<'de> Deserialize<'de> for BytesOrText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = BytesOrText;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a text or byte string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<BytesOrText, E> {
                Ok(BytesOrText(v.as_bytes().to_vec()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<BytesOrText, E> {
                Ok(BytesOrText(v.into_bytes()))
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<BytesOrText, E> {
                Ok(BytesOrText(v.to_vec()))
            }
            fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<BytesOrText, E> {
                Ok(BytesOrText(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<BytesOrText, A::Error> {
                BytesVisitor.visit_seq(seq).map(|b| BytesOrText(b.0))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ev(key: &[u8], value: Option<&[u8]>, hlc: u64, node: u64) -> ChangeEvent {
        ChangeEvent {
            key: key.to_vec(),
            value: value.map(<[u8]>::to_vec),
            version: Version::new(hlc, node),
            expires: 0,
        }
    }

    #[test]
    fn batch_round_trips_and_has_the_documented_shape() {
        let events = vec![
            ev(b"k1", Some(b"v1"), 1 << 20, 7),
            ev(b"gone", None, u64::MAX, 0),
            ev(b"\x00\xff", Some(b""), 0, u64::MAX),
        ];
        let mut buf = Vec::new();
        encode("node-a", &events, &mut buf);
        let b = decode(&buf).unwrap();
        assert_eq!(b.origin, "node-a");
        assert_eq!(b.events, events);
        assert!(!b.legacy);

        // The documented layout, checked through ciborium's generic Value.
        let v: ciborium::Value = ciborium::from_reader(&buf[..]).unwrap();
        let map = v.as_map().unwrap();
        let keys: Vec<_> = map.iter().map(|(k, _)| k.as_text().unwrap()).collect();
        assert_eq!(keys, ["origin", "format", "events"]);
        assert_eq!(map[1].1.as_integer().unwrap(), 1.into());
        let evs = map[2].1.as_array().unwrap();
        let first = evs[0].as_array().unwrap();
        assert_eq!(first[0].as_bytes().unwrap(), b"k1");
        assert_eq!(first[1].as_bytes().unwrap(), b"v1");
        assert_eq!(first[2].as_integer().unwrap(), (1u64 << 20).into());
        assert!(evs[1].as_array().unwrap()[1].is_null());
    }

    #[test]
    fn encoded_len_bounds_the_encoding() {
        let events = vec![
            ev(&[b'k'; 300], Some(&[b'v'; 70_000]), u64::MAX, u64::MAX),
            ev(b"x", None, 1, 1),
        ];
        let mut buf = Vec::new();
        encode("n", &events, &mut buf);
        let bound: usize = events.iter().map(encoded_len).sum();
        assert!(buf.len() <= bound + 64, "{} > {bound}", buf.len());
    }

    #[test]
    fn own_prefix_recognises_exactly_this_origin() {
        let mut buf = Vec::new();
        encode("node1", &[ev(b"k", Some(b"v"), 1, 2)], &mut buf);
        assert!(OwnPrefix::new("node1").matches(&buf));
        assert!(!OwnPrefix::new("node").matches(&buf));
        assert!(!OwnPrefix::new("node10").matches(&buf));
        assert!(!OwnPrefix::new("node2").matches(&buf));
        let mut other = Vec::new();
        encode("node10", &[], &mut other);
        assert!(!OwnPrefix::new("node1").matches(&other));
        assert!(!OwnPrefix::new("node1").matches(b""));
    }

    #[test]
    fn legacy_single_event_is_accepted() {
        #[derive(Serialize)]
        struct Old<'a> {
            v: u8,
            op: &'a str,
            key: &'a str,
            val: Option<Vec<u8>>,
            ts: u64,
            src: &'a str,
            op_id: [u8; 4],
            prev: Option<u8>,
            ttl: Option<u64>,
        }
        let ts = 1_700_000_000_123_456_789u64;
        let mut buf = Vec::new();
        let set = Old {
            v: 1,
            op: "set",
            key: "user:1",
            val: Some(b"alice".to_vec()),
            ts,
            src: "old-node",
            op_id: [1, 2, 3, 4],
            prev: None,
            ttl: None,
        };
        ciborium::into_writer(&set, &mut buf).unwrap();
        let b = decode(&buf).unwrap();
        assert!(b.legacy);
        assert_eq!(b.origin, "old-node");
        let e = &b.events[0];
        assert_eq!(e.key, b"user:1");
        assert_eq!(e.value.as_deref(), Some(&b"alice"[..]));
        assert_eq!(e.version.millis(), 1_700_000_000_123);
        assert_eq!(e.version.node, node_hash("old-node"));
        assert_eq!(e.expires, 0);
        // Later nanoseconds within the same millisecond order later.
        assert!(legacy_hlc(ts + 1000) > legacy_hlc(ts));
        assert!(legacy_hlc(ts) < legacy_hlc(1_700_000_000_124_000_000));

        buf.clear();
        let del = Old {
            op: "del",
            val: None,
            ..set
        };
        ciborium::into_writer(&del, &mut buf).unwrap();
        assert_eq!(decode(&buf).unwrap().events[0].value, None);

        buf.clear();
        let bad = Old {
            op: "set",
            val: None,
            ..del
        };
        ciborium::into_writer(&bad, &mut buf).unwrap();
        assert_eq!(
            decode(&buf),
            Err(DecodeError::Shape("1.x write without val"))
        );

        // `ttl` (seconds after `ts`) becomes an absolute expiry; 0 is none.
        for (ttl, expires) in [(Some(30), 1_700_000_030_123), (Some(0), 0), (None, 0)] {
            buf.clear();
            let op = "set";
            let val = Some(b"alice".to_vec());
            ciborium::into_writer(
                &Old {
                    ttl,
                    op,
                    val,
                    ..del
                },
                &mut buf,
            )
            .unwrap();
            assert_eq!(decode(&buf).unwrap().events[0].expires, expires);
        }
    }

    #[test]
    fn expiry_is_a_fifth_element_only_when_set() {
        let mut with = ev(b"k", Some(b"v"), 5, 6);
        with.expires = 1_700_000_000_000;
        let mut tomb = ev(b"t", None, 5, 6);
        tomb.expires = 99; // a tombstone never carries one
        let events = vec![with.clone(), ev(b"p", Some(b"v"), 5, 6), tomb];
        let mut buf = Vec::new();
        encode("n", &events, &mut buf);
        let v: ciborium::Value = ciborium::from_reader(&buf[..]).unwrap();
        let evs = v.as_map().unwrap()[2].1.as_array().unwrap().clone();
        let lens: Vec<_> = evs.iter().map(|e| e.as_array().unwrap().len()).collect();
        assert_eq!(lens, [5, 4, 4]);
        // Both decoders read it back.
        let b = decode(&buf).unwrap();
        assert_eq!(b.events[0], with);
        assert_eq!(b.events[2].expires, 0);
        let Decoded::Borrowed { events: refs, .. } = decode_ref(&buf).unwrap() else {
            panic!("own encoding must decode in place");
        };
        assert_eq!(refs[0].expires, with.expires);
        assert_eq!((refs[1].expires, refs[2].expires), (0, 0));
    }

    #[test]
    fn malformed_payloads_are_errors() {
        assert!(matches!(decode(b""), Err(DecodeError::Cbor(_))));
        assert!(matches!(decode(b"hello"), Err(DecodeError::Cbor(_))));
        assert!(matches!(decode(b"{\"json\":1}"), Err(DecodeError::Cbor(_))));
        let mut buf = Vec::new();
        ciborium::into_writer(&42u32, &mut buf).unwrap();
        assert!(decode(&buf).is_err());
        // A map with none of the fields.
        buf.clear();
        ciborium::into_writer(&std::collections::BTreeMap::<u8, u8>::new(), &mut buf).unwrap();
        assert_eq!(
            decode(&buf),
            Err(DecodeError::Shape("neither events nor op"))
        );
        // Unknown format.
        buf.clear();
        encode("n", &[], &mut buf);
        let pos = buf.windows(6).position(|w| w == b"format").unwrap() + 6;
        buf[pos] = 0x02;
        assert_eq!(decode(&buf), Err(DecodeError::Format(2)));
        // Truncated batch.
        buf.clear();
        encode("n", &[ev(b"k", Some(b"value"), 5, 6)], &mut buf);
        for cut in 0..buf.len() {
            assert!(decode(&buf[..cut]).is_err(), "cut at {cut}");
        }
        // Deep nesting is refused, not a stack overflow.
        let deep = [&[0xA1, 0x66][..], b"events", &[0x81; 100_000]].concat();
        assert!(decode(&deep).is_err());
    }

    #[test]
    fn oversized_batches_are_refused() {
        let events: Vec<_> = (0..MAX_EVENTS + 1).map(|_| ev(b"", None, 0, 0)).collect();
        let mut buf = Vec::new();
        encode("n", &events, &mut buf);
        assert!(matches!(decode(&buf), Err(DecodeError::Cbor(_))));
        encode("n", &events[..MAX_EVENTS], &mut buf);
        assert_eq!(decode(&buf).unwrap().events.len(), MAX_EVENTS);
    }

    /// `decode_ref` agrees with `decode` on everything.
    fn same_as_decode(payload: &[u8]) {
        let slow = decode(payload);
        match decode_ref(payload) {
            Ok(fast) => {
                let slow = slow.expect("fast path accepted what decode refuses");
                assert_eq!(fast.origin(), slow.origin);
                assert_eq!(fast.len(), slow.events.len());
                let evs: Vec<_> = fast.events().collect();
                for (a, b) in evs.iter().zip(&slow.events) {
                    assert_eq!(a.key, &b.key[..]);
                    assert_eq!(a.value, b.value.as_deref());
                    assert_eq!(a.version, b.version);
                }
            }
            Err(e) => assert_eq!(Err(e), slow.map(|_| ())),
        }
    }

    #[test]
    fn own_encoding_is_read_in_place_and_others_fall_back() {
        let mut buf = Vec::new();
        encode(
            "n",
            &[ev(b"k", Some(b"v"), 1, 2), ev(b"d", None, 3, 4)],
            &mut buf,
        );
        let d = decode_ref(&buf).unwrap();
        assert!(matches!(d, Decoded::Borrowed { .. }));
        same_as_decode(&buf);
        // Another key order is read in place too; an unknown key (a later
        // format's addition) goes through serde, which ignores it.
        let mut fields = vec![
            ("format".into(), 1.into()),
            ("events".into(), ciborium::Value::Array(vec![])),
            ("origin".into(), "x".into()),
        ];
        for (extra, in_place) in [(false, true), (true, false)] {
            if extra {
                fields.push(("later".into(), 7.into()));
            }
            buf.clear();
            ciborium::into_writer(&ciborium::Value::Map(fields.clone()), &mut buf).unwrap();
            let d = decode_ref(&buf).unwrap();
            assert_eq!(matches!(d, Decoded::Borrowed { .. }), in_place);
            assert_eq!(d.origin(), "x");
            same_as_decode(&buf);
        }
        // Trailing bytes after the map are not the fast path's business.
        buf.clear();
        encode("n", &[], &mut buf);
        buf.push(0);
        same_as_decode(&buf);
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode(&bytes);
            let _ = decode_ref(&bytes);
        }

        #[test]
        fn in_place_decoding_matches_serde_on_mutated_batches(
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
            cut in any::<usize>(),
        ) {
            let mut buf = Vec::new();
            encode("node", &[ev(b"key", Some(b"value"), 99, 3), ev(b"d", None, 1, 2)], &mut buf);
            for (i, b) in flips {
                let n = buf.len();
                buf[i % n] = b;
            }
            let n = buf.len();
            buf.truncate(n - cut % 4);
            same_as_decode(&buf);
        }

        #[test]
        fn decode_never_panics_on_mutated_batches(
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        ) {
            let mut buf = Vec::new();
            encode("node", &[ev(b"key", Some(b"value"), 99, 3), ev(b"d", None, 1, 2)], &mut buf);
            for (i, b) in flips {
                let n = buf.len();
                buf[i % n] = b;
            }
            let _ = decode(&buf);
        }

        #[test]
        fn round_trip(events in proptest::collection::vec(
            (proptest::collection::vec(any::<u8>(), 0..40),
             proptest::option::of(proptest::collection::vec(any::<u8>(), 0..80)),
             any::<u64>(), any::<u64>()), 0..20),
            origin in "[a-z0-9-]{0,30}",
        ) {
            let events: Vec<_> = events.into_iter().map(|(k, v, h, n)| ChangeEvent {
                expires: if v.is_some() && h % 2 == 0 { n } else { 0 },
                key: k, value: v, version: Version::new(h, n),
            }).collect();
            let mut buf = Vec::new();
            encode(&origin, &events, &mut buf);
            prop_assert!(OwnPrefix::new(&origin).matches(&buf));
            let b = decode(&buf).unwrap();
            prop_assert_eq!(&b.origin, &origin);
            prop_assert_eq!(&b.events, &events);
            let fast = decode_ref(&buf).unwrap();
            prop_assert!(matches!(fast, Decoded::Borrowed { .. }), "not read in place");
            same_as_decode(&buf);
        }
    }
}
