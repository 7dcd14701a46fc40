//! The answering side of a round: replies to the internal `MKV.*` commands
//! (wire format in [`crate::protocol::internal`]).
//!
//! Replies are written straight into the connection's output buffer while
//! the shard lock of the node, bucket or key being read is held; nothing
//! here does I/O, so no lock is ever held across the network. `MKV.BUCKETS`,
//! `MKV.ENTRIES` and `MKV.FETCH` stop after the bucket or entry that takes the reply past
//! [`REPLY_BUDGET`] bytes; the requester asks again for the rest.

use crate::protocol::internal::{
    Internal, REPLY_BUDGET, WIRE_VERSION, encode_version, encode_version_expiry, index,
};
use crate::protocol::reply::{
    NIL, NIL_ARRAY, Proto, array, bulk, error, header, insert_counted, integer,
};
use crate::store::Store;
use crate::store::merkle::{FANOUT_BITS, ZERO};

/// Who is answering: reported by `MKV.ROOT`.
#[derive(Debug, Clone, Copy)]
pub struct Identity<'a> {
    /// The node id.
    pub node_id: &'a str,
    /// Random per-process number (self detection).
    pub instance: u64,
}

fn shape_mismatch(store: &Store, bits: u32, out: &mut Vec<u8>) -> bool {
    let ours = store.shape().bits;
    if bits == ours {
        return false;
    }
    error(
        out,
        Proto::Resp,
        &format!(
            "tree parameters differ: this node has tree_bits={ours} fanout={}, \
             the request tree_bits={bits}",
            1 << FANOUT_BITS
        ),
    );
    true
}

/// Executes an internal command, appending its RESP reply to `out`.
pub fn execute(cmd: &Internal<'_>, store: &Store, id: Identity<'_>, out: &mut Vec<u8>) {
    match cmd {
        Internal::Root => {
            array(out, 7);
            integer(out, WIRE_VERSION);
            integer(out, store.shape().bits as i64);
            integer(out, FANOUT_BITS as i64);
            bulk(out, id.node_id.as_bytes());
            integer(out, id.instance as i64);
            bulk(out, &store.root());
            integer(out, (store.len() + store.tombstones()) as i64);
        }
        Internal::Nodes {
            bits,
            level,
            indices,
        } => {
            if shape_mismatch(store, *bits, out) {
                return;
            }
            header(out, b'$', indices.len() * 32);
            for i in indices.iter() {
                // Indices were range-checked against `bits` by the parser.
                let d = store.node_digest(*level, index(i)).unwrap_or(ZERO);
                out.extend_from_slice(&d);
            }
            out.extend_from_slice(b"\r\n");
        }
        Internal::Buckets {
            bits,
            buckets,
            values,
        } => {
            if shape_mismatch(store, *bits, out) {
                return;
            }
            let start = out.len();
            let mut answered = 0;
            let mut items = Vec::new();
            let mut ver = Vec::with_capacity(24);
            let now = crate::store::now_millis();
            for b in buckets.iter() {
                if out.len() - start > REPLY_BUDGET {
                    break;
                }
                items.clear();
                let mut n = 0;
                store.for_each_in_bucket(index(b), |r| {
                    bulk(&mut items, r.key());
                    if *values {
                        // An expired record goes as its tombstone.
                        ver.clear();
                        match r.value_at(now) {
                            Some(v) => {
                                bulk(&mut items, v);
                                encode_version_expiry(r.version(), r.expires(), &mut ver);
                            }
                            None => {
                                items.extend_from_slice(NIL);
                                encode_version_expiry(r.version(), 0, &mut ver);
                            }
                        }
                        bulk(&mut items, &ver);
                        n += 3;
                    } else {
                        bulk(&mut items, &encode_version(r.version()));
                        n += 2;
                    }
                });
                array(out, n);
                out.extend_from_slice(&items);
                answered += 1;
            }
            insert_counted(out, start, b"*", answered);
        }
        Internal::Fetch(keys) => {
            let start = out.len();
            let mut answered = 0;
            for k in keys.iter() {
                if out.len() - start > REPLY_BUDGET {
                    break;
                }
                store.with_entry(k, |e| match e {
                    None => out.extend_from_slice(NIL_ARRAY),
                    Some((value, version, expires)) => {
                        array(out, 2);
                        match value {
                            Some(v) => bulk(out, v),
                            None => out.extend_from_slice(NIL),
                        }
                        let mut ver = Vec::with_capacity(24);
                        encode_version_expiry(version, expires, &mut ver);
                        bulk(out, &ver);
                    }
                });
                answered += 1;
            }
            insert_counted(out, start, b"*", answered);
        }
    }
}
