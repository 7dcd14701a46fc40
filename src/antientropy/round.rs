//! One anti-entropy round with one peer: the tree diff and the repair.
//!
//! # Algorithm
//!
//! 1. `MKV.ROOT`: refuse a peer whose tree parameters (wire version, tree
//!    bits, fan-out) differ; stop if the peer is this very process, or if
//!    the roots are equal.
//! 2. Descend level by level. For every node found differing at one level,
//!    ask for its 16 children's digests — all differing nodes of a level in
//!    one `MKV.NODES` request (chunked at `MAX_NODES`) — and compare each
//!    with the local digest. A child that is equal is done. A child that is
//!    empty on the peer holds nothing to pull (with `--full`, every local
//!    entry under it is dropped). A bucket that is empty locally — or any
//!    subtree empty locally, when the peer's tree is dense (≥ 1 record per
//!    2 buckets, from its record count) — is pulled whole with
//!    `MKV.ENTRIES`: its digests and listings could only say "fetch
//!    everything". Another differing bucket is listed (step 3); anything
//!    else is descended into.
//! 3. For the listed buckets, `MKV.BUCKETS` returns `(key, version)` pairs;
//!    [`diff_bucket`] compares them with the local ones and yields the keys
//!    whose version on the peer is newer (or, with `--full`, different) and
//!    the keys the peer does not have.
//! 4. `MKV.FETCH` those keys (values or tombstones with their versions) and
//!    hand them to the [`Repair`] sink: last-writer-wins normally; with
//!    `--full`, an exact copy — replace (even with an older version) or
//!    delete, but only if the local record is still the one that was
//!    compared, so a client write made during the round is never lost.
//!
//! Every fetched version passes the clock bound first
//! ([`Store::accept_remote`]): one the peer dates too far in the future is
//! refused (counted, under the peer's name) and not applied.
//!
//! `--full` deletes a local-only record by writing a tombstone at a fresh
//! local version (a delete like any other: it is logged, replicates, and
//! wins over the record everywhere). It never removes more than half of
//! the local records (live and tombstones, counted when the round starts)
//! unless forced (`SYNC … --force`): a peer that claims an empty tree
//! cannot wipe the node. Records under subtrees the peer has empty are
//! counted against that budget before anything is changed.
//!
//! Bucket listings are fetched and repaired chunk by chunk, so memory is
//! bounded by one reply whatever the size of the difference. Every node
//! pulls; newer data flows both ways because every node runs rounds.
//!
//! Cost: one round trip for equal trees; otherwise about `depth + 2` round
//! trips and bytes proportional to (differing keys × 16 × 32 bytes per
//! level + the listed buckets' keys + the fetched entries) — not to the
//! size of the data set.
//!
//! The round talks to its peer through the [`Peer`] trait; [`RespPeer`]
//! implements it over any [`Transport`] (a [`Client`] in production; an
//! in-memory loopback through the real RESP parser and server code in the
//! unit tests).

use crate::client::{Client, ClientError, Reply};
use crate::protocol::internal::{
    MAX_BUCKETS, MAX_KEYS, MAX_NODES, WIRE_VERSION, decode_version, decode_version_expiry,
};
use crate::store::merkle::{Digest, FANOUT_BITS, ZERO, hex};
use crate::store::{Applied, Store, Version};

/// What `MKV.ROOT` says about a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootInfo {
    /// Internal command set version.
    pub wire_version: i64,
    /// log2 of the number of buckets.
    pub tree_bits: u32,
    /// log2 of the fan-out.
    pub fanout_bits: u32,
    /// The peer's node id.
    pub node_id: String,
    /// The peer's per-process random instance number.
    pub instance: u64,
    /// The peer's Merkle root.
    pub root: Digest,
    /// The peer's records (live and tombstones).
    pub records: u64,
}

/// A record as the peer holds it: value (`None` = tombstone), version and
/// expiry (Unix ms, 0 = none).
pub type RemoteEntry = (Option<Vec<u8>>, Version, u64);

/// A bucket's `(key, version)` list.
pub type Listing = Vec<(Vec<u8>, Version)>;

/// A bucket's whole records: key, value (`None` = tombstone), version,
/// expiry (Unix ms, 0 = none).
pub type Records = Vec<(Vec<u8>, Option<Vec<u8>>, Version, u64)>;

/// Errors of a round. Each costs that round only.
#[derive(Debug)]
pub enum RoundError {
    /// The peer could not be reached: `addr` (`host:port`) and why.
    Connect { addr: String, reason: String },
    /// A call failed: timeout, disconnect, socket error, malformed RESP.
    Transport(ClientError),
    /// The peer answered a call with an error reply.
    Refused(String),
    /// The peer's reply has the wrong shape.
    BadReply(String),
    /// The trees have different shapes: comparing them is meaningless.
    Mismatch {
        local: (i64, u32, u32),
        peer: (i64, u32, u32),
    },
    /// `--verify`: the roots still differ after the round.
    VerifyFailed { local: Digest, peer: Digest },
    /// `--full` without `--force` would remove more than `limit` of the
    /// `records` local records.
    TooManyRemovals { limit: usize, records: usize },
    /// The node is shutting down.
    Cancelled,
}

impl std::fmt::Display for RoundError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RoundError::Connect { addr, reason } => write!(f, "connect {addr}: {reason}"),
            RoundError::Transport(e) => write!(f, "{e}"),
            RoundError::Refused(m) => write!(f, "peer refused: {m}"),
            RoundError::BadReply(m) => write!(f, "bad reply from peer: {m}"),
            RoundError::Mismatch { local, peer } => write!(
                f,
                "tree parameters differ: local wire_version={} tree_bits={} fanout={}, \
                 peer wire_version={} tree_bits={} fanout={}",
                local.0,
                local.1,
                1u64 << local.2,
                peer.0,
                peer.1,
                1u64 << peer.2.min(63)
            ),
            RoundError::VerifyFailed { local, peer } => write!(
                f,
                "verify failed: roots differ after sync (local {}, peer {})",
                hex(local),
                hex(peer)
            ),
            RoundError::TooManyRemovals { limit, records } => write!(
                f,
                "refused: --full would remove more than half of the {records} local \
                 records (at most {limit} without --force)"
            ),
            RoundError::Cancelled => f.write_str("cancelled: shutting down"),
        }
    }
}

impl std::error::Error for RoundError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RoundError::Transport(e) => Some(e),
            _ => None,
        }
    }
}

impl From<ClientError> for RoundError {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::Connect { addr, source } => RoundError::Connect {
                addr,
                reason: source.to_string(),
            },
            ClientError::Server(m) => RoundError::Refused(m),
            e => RoundError::Transport(e),
        }
    }
}

/// The questions a round asks its peer.
pub trait Peer {
    /// Tree parameters, identity and root.
    fn root(&mut self) -> Result<RootInfo, RoundError>;
    /// Digests of `indices` at `level` (≤ `MAX_NODES`), in order.
    fn nodes(
        &mut self,
        bits: u32,
        level: u32,
        indices: &[usize],
    ) -> Result<Vec<Digest>, RoundError>;
    /// `(key, version)` lists of a prefix of `buckets` (≤ `MAX_BUCKETS`):
    /// at least one, fewer than asked when the reply budget ran out.
    fn buckets(&mut self, bits: u32, buckets: &[usize]) -> Result<Vec<Listing>, RoundError>;
    /// Whole records of a prefix of `buckets` (≤ `MAX_BUCKETS`): at least
    /// one, fewer than asked when the reply budget ran out.
    fn entries(&mut self, bits: u32, buckets: &[usize]) -> Result<Vec<Records>, RoundError>;
    /// Records of a prefix of `keys` (≤ `MAX_KEYS`), `None` for no record:
    /// at least one, fewer than asked when the reply budget ran out.
    fn fetch(&mut self, keys: &[&[u8]]) -> Result<Vec<Option<RemoteEntry>>, RoundError>;
    /// True once the round should stop (shutdown).
    fn cancelled(&self) -> bool {
        false
    }
    /// The peer's name for refusal counters and logs (e.g.
    /// `sync 10.0.0.2:7379`).
    fn source(&self) -> &str {
        "anti-entropy peer"
    }
}

/// Sends one request and returns its reply.
pub trait Transport {
    /// One request/reply exchange.
    fn call(&mut self, args: &[&[u8]]) -> Result<Reply, ClientError>;
}

impl Transport for Client {
    fn call(&mut self, args: &[&[u8]]) -> Result<Reply, ClientError> {
        Client::call(self, args)
    }
}

/// [`Peer`] over the internal RESP commands.
pub struct RespPeer<T> {
    /// The connection.
    pub transport: T,
    /// Checked between calls; true aborts the round.
    pub cancel: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
    /// The peer's name ([`Peer::source`]).
    pub source: String,
}

impl<T: Transport> RespPeer<T> {
    /// A peer over `transport`.
    pub fn new(transport: T) -> Self {
        RespPeer {
            transport,
            cancel: None,
            source: "anti-entropy peer".to_string(),
        }
    }

    fn call(&mut self, args: &[&[u8]]) -> Result<Reply, RoundError> {
        if self.cancelled() {
            return Err(RoundError::Cancelled);
        }
        Ok(self.transport.call(args)?.into_result()?)
    }

    /// Sends `head` followed by `indices` in decimal.
    fn call_indexed(&mut self, head: &[&[u8]], indices: &[usize]) -> Result<Reply, RoundError> {
        let mut b = itoa::Buffer::new();
        let idx: Vec<Vec<u8>> = indices
            .iter()
            .map(|&i| b.format(i).as_bytes().to_vec())
            .collect();
        let mut args = head.to_vec();
        args.extend(idx.iter().map(Vec::as_slice));
        self.call(&args)
    }

    /// `name bits bucket…` (`MKV.BUCKETS`, `MKV.ENTRIES`): per bucket
    /// answered, a flat array of `N` items per record, each record decoded
    /// by `record`.
    fn per_bucket<const N: usize, E>(
        &mut self,
        name: &str,
        bits: u32,
        buckets: &[usize],
        mut record: impl FnMut([Reply; N]) -> Result<E, RoundError>,
    ) -> Result<Vec<Vec<E>>, RoundError> {
        let b = bits.to_string();
        let reply = self.call_indexed(&[name.as_bytes(), b.as_bytes()], buckets)?;
        let mut out = Vec::new();
        for bucket in items(reply, name, buckets.len())? {
            let Reply::Array(flat) = bucket else {
                return Err(bad(&format!("{name} bucket"), &bucket));
            };
            if flat.len() % N != 0 {
                return Err(RoundError::BadReply(format!(
                    "{name}: a list of {} items for records of {N} items",
                    flat.len()
                )));
            }
            let records = flat.len() / N;
            let mut list = Vec::with_capacity(records);
            let mut it = flat.into_iter();
            for _ in 0..records {
                // Never `Nil`: the length was checked above.
                list.push(record(std::array::from_fn(|_| {
                    it.next().unwrap_or(Reply::Nil)
                }))?);
            }
            out.push(list);
        }
        Ok(out)
    }
}

fn bad(what: &str, got: &Reply) -> RoundError {
    RoundError::BadReply(format!("{what}: unexpected {}", got.kind()))
}

fn items(reply: Reply, what: &str, asked: usize) -> Result<Vec<Reply>, RoundError> {
    match reply {
        Reply::Array(v) if !v.is_empty() && v.len() <= asked => Ok(v),
        Reply::Array(v) => Err(RoundError::BadReply(format!(
            "{what}: {} items for {asked} asked",
            v.len()
        ))),
        other => Err(bad(what, &other)),
    }
}

fn version(r: &Reply, what: &str) -> Result<Version, RoundError> {
    match r {
        Reply::Bulk(b) => decode_version(b)
            .ok_or_else(|| RoundError::BadReply(format!("{what}: version of {} bytes", b.len()))),
        other => Err(bad(what, other)),
    }
}

fn version_expiry(r: &Reply, what: &str) -> Result<(Version, u64), RoundError> {
    match r {
        Reply::Bulk(b) => decode_version_expiry(b)
            .ok_or_else(|| RoundError::BadReply(format!("{what}: version of {} bytes", b.len()))),
        other => Err(bad(what, other)),
    }
}

impl<T: Transport> Peer for RespPeer<T> {
    fn root(&mut self) -> Result<RootInfo, RoundError> {
        let reply = self.call(&[b"MKV.ROOT"])?;
        let Reply::Array(v) = reply else {
            return Err(bad("MKV.ROOT", &reply));
        };
        let int = |r: &Reply| match r {
            Reply::Integer(n) => Ok(*n),
            other => Err(bad("MKV.ROOT", other)),
        };
        match v.as_slice() {
            [
                w,
                bits,
                fan,
                Reply::Bulk(id),
                inst,
                Reply::Bulk(root),
                records,
            ] if root.len() == 32 => {
                let small = |n: i64| {
                    u32::try_from(n)
                        .ok()
                        .filter(|&n| n < 64)
                        .ok_or_else(|| RoundError::BadReply(format!("MKV.ROOT: parameter {n}")))
                };
                Ok(RootInfo {
                    wire_version: int(w)?,
                    tree_bits: small(int(bits)?)?,
                    fanout_bits: small(int(fan)?)?,
                    node_id: String::from_utf8_lossy(id).into_owned(),
                    instance: int(inst)? as u64,
                    root: root.as_slice().try_into().unwrap_or(ZERO),
                    records: u64::try_from(int(records)?).map_err(|_| {
                        RoundError::BadReply("MKV.ROOT: negative record count".into())
                    })?,
                })
            }
            _ => Err(RoundError::BadReply(format!(
                "MKV.ROOT: {} items of unexpected kinds",
                v.len()
            ))),
        }
    }

    fn nodes(
        &mut self,
        bits: u32,
        level: u32,
        indices: &[usize],
    ) -> Result<Vec<Digest>, RoundError> {
        let (b, l) = (bits.to_string(), level.to_string());
        match self.call_indexed(&[b"MKV.NODES", b.as_bytes(), l.as_bytes()], indices)? {
            Reply::Bulk(d) if d.len() == 32 * indices.len() => Ok(d
                .chunks_exact(32)
                .map(|c| c.try_into().unwrap_or(ZERO))
                .collect()),
            Reply::Bulk(d) => Err(RoundError::BadReply(format!(
                "MKV.NODES: {} bytes for {} nodes",
                d.len(),
                indices.len()
            ))),
            other => Err(bad("MKV.NODES", &other)),
        }
    }

    fn buckets(&mut self, bits: u32, buckets: &[usize]) -> Result<Vec<Listing>, RoundError> {
        self.per_bucket("MKV.BUCKETS", bits, buckets, |[k, v]| {
            let Reply::Bulk(key) = k else {
                return Err(bad("MKV.BUCKETS key", &k));
            };
            Ok((key, version(&v, "MKV.BUCKETS")?))
        })
    }

    fn entries(&mut self, bits: u32, buckets: &[usize]) -> Result<Vec<Records>, RoundError> {
        self.per_bucket("MKV.ENTRIES", bits, buckets, |[k, v, ver]| {
            let Reply::Bulk(key) = k else {
                return Err(bad("MKV.ENTRIES key", &k));
            };
            let value = match v {
                Reply::Bulk(v) => Some(v),
                Reply::Nil => None,
                other => return Err(bad("MKV.ENTRIES value", &other)),
            };
            let (version, expires) = version_expiry(&ver, "MKV.ENTRIES")?;
            Ok((key, value, version, expires))
        })
    }

    fn fetch(&mut self, keys: &[&[u8]]) -> Result<Vec<Option<RemoteEntry>>, RoundError> {
        let mut args: Vec<&[u8]> = Vec::with_capacity(keys.len() + 1);
        args.push(b"MKV.FETCH");
        args.extend_from_slice(keys);
        let reply = self.call(&args)?;
        items(reply, "MKV.FETCH", keys.len())?
            .into_iter()
            .map(|e| match e {
                Reply::NilArray => Ok(None),
                Reply::Array(pair) => match <[Reply; 2]>::try_from(pair) {
                    Ok([Reply::Bulk(v), ver]) => {
                        let (version, expires) = version_expiry(&ver, "MKV.FETCH")?;
                        Ok(Some((Some(v), version, expires)))
                    }
                    Ok([Reply::Nil, ver]) => {
                        let (version, expires) = version_expiry(&ver, "MKV.FETCH")?;
                        Ok(Some((None, version, expires)))
                    }
                    _ => Err(RoundError::BadReply("MKV.FETCH: malformed entry".into())),
                },
                other => Err(bad("MKV.FETCH entry", &other)),
            })
            .collect()
    }

    fn cancelled(&self) -> bool {
        self.cancel
            .as_ref()
            .is_some_and(|c| c.load(std::sync::atomic::Ordering::Relaxed))
    }

    fn source(&self) -> &str {
        &self.source
    }
}

/// Where a round's repairs go ([`crate::applier::Applier`] in a node; a plain [`Store`] in
/// tests and tools).
pub trait Repair {
    /// Last-writer-wins apply of a record with its expiry (0 = none).
    fn apply(
        &mut self,
        key: &[u8],
        value: Option<&[u8]>,
        version: Version,
        expires: u64,
    ) -> Applied;
    /// `--full`: store exactly this record if the local one is still
    /// `expected` ([`Store::replace_if`]).
    fn replace_if(
        &mut self,
        key: &[u8],
        expected: Option<Version>,
        value: Option<&[u8]>,
        version: Version,
        expires: u64,
    ) -> bool;
    /// `--full`: delete the local record (tombstone at a fresh local
    /// version) if it is still a live value at `expected`
    /// ([`Store::delete_if`]).
    fn delete_if(&mut self, key: &[u8], expected: Version) -> bool;
}

impl Repair for &Store {
    fn apply(
        &mut self,
        key: &[u8],
        value: Option<&[u8]>,
        version: Version,
        expires: u64,
    ) -> Applied {
        Store::apply_expiring(self, key, value, version, expires)
    }
    fn replace_if(
        &mut self,
        key: &[u8],
        expected: Option<Version>,
        value: Option<&[u8]>,
        version: Version,
        expires: u64,
    ) -> bool {
        Store::replace_if_expiring(self, key, expected, value, version, expires)
    }
    fn delete_if(&mut self, key: &[u8], expected: Version) -> bool {
        Store::delete_if(self, key, expected).is_some()
    }
}

/// Round settings.
#[derive(Debug, Clone, Copy, Default)]
pub struct RoundOptions {
    /// Make the local store an exact copy of the peer's (`SYNC --full`).
    pub full: bool,
    /// With `full`, remove even more than half of the local records
    /// (`SYNC --force`).
    pub force: bool,
    /// Compare roots after the round; a difference is an error.
    pub verify: bool,
    /// This process's instance number: a peer reporting it is ourselves.
    pub instance: u64,
}

/// What a round did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoundReport {
    /// The peer is this process; nothing was compared.
    pub self_peer: bool,
    /// The roots were equal at the start.
    pub in_sync: bool,
    /// The peer's node id.
    pub peer_node_id: String,
    /// Tree node digests received.
    pub nodes_compared: usize,
    /// Buckets whose `(key, version)` lists differed.
    pub buckets_differing: usize,
    /// Entries received with `MKV.FETCH`.
    pub keys_fetched: usize,
    /// Entries stored (newer than the local record, or copied with `--full`).
    pub keys_repaired: usize,
    /// Local-only records deleted (`--full`).
    pub keys_removed: usize,
    /// Fetched versions refused by the clock bound.
    pub versions_refused: usize,
    /// Requests sent.
    pub round_trips: usize,
    /// Bytes written to the peer (filled in by the caller that owns the
    /// connection, e.g. [`crate::antientropy::sync_with`]).
    pub bytes_sent: u64,
    /// Bytes read from the peer (idem).
    pub bytes_received: u64,
}

/// Result of comparing one bucket.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct BucketDiff {
    /// Keys to fetch, with the local version they were compared against
    /// (`None`: no local record).
    pub fetch: Vec<(Vec<u8>, Option<Version>)>,
    /// Local records the peer does not have (filled only with `full`).
    pub local_only: Vec<(Vec<u8>, Version)>,
}

/// Compares a bucket's local `(key, version)` list with the peer's. Both
/// must be sorted by key with unique keys ([`sort_listing`]). Without
/// `full`, only keys whose peer version is newer (or missing locally) are
/// fetched; with `full`, every key whose versions differ is fetched and
/// local-only keys are reported.
pub fn diff_bucket(
    local: &[(Vec<u8>, Version)],
    remote: &[(Vec<u8>, Version)],
    full: bool,
) -> BucketDiff {
    let mut d = BucketDiff::default();
    let (mut i, mut j) = (0, 0);
    while i < local.len() || j < remote.len() {
        let ord = match (local.get(i), remote.get(j)) {
            (Some(l), Some(r)) => l.0.cmp(&r.0),
            (Some(_), None) => std::cmp::Ordering::Less,
            _ => std::cmp::Ordering::Greater,
        };
        match ord {
            std::cmp::Ordering::Less => {
                if full {
                    d.local_only.push(local[i].clone());
                }
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                d.fetch.push((remote[j].0.clone(), None));
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                let (lv, rv) = (local[i].1, remote[j].1);
                if rv > lv || (full && rv != lv) {
                    d.fetch.push((remote[j].0.clone(), Some(lv)));
                }
                i += 1;
                j += 1;
            }
        }
    }
    d
}

/// Sorts a peer's listing by key and keeps one (the newest) version per
/// key, so that a confused peer cannot make [`diff_bucket`] misbehave.
pub fn sort_listing(list: &mut Vec<(Vec<u8>, Version)>) {
    list.sort_unstable();
    // Sorted by (key, version): the last of equal keys is the newest.
    list.reverse();
    list.dedup_by(|a, b| a.0 == b.0);
    list.reverse();
}

/// Plan built while descending the tree.
#[derive(Default)]
struct Plan {
    /// The peer holds at least one record per two buckets on average:
    /// subtrees missing locally are then pulled whole (a bucket listing is
    /// cheaper than the digests below it once most buckets are non-empty).
    dense: bool,
    /// Nodes to descend into at the next level.
    descend: Vec<usize>,
    /// Buckets to list and diff.
    list: Vec<usize>,
    /// Buckets empty locally: pull their records whole.
    pull: Vec<usize>,
    /// Buckets empty on the peer whose local records go (`--full`).
    drop: Vec<usize>,
}

fn buckets_under(depth: u32, level: u32, i: usize) -> std::ops::Range<usize> {
    let shift = FANOUT_BITS * (depth - level);
    (i << shift)..((i + 1) << shift)
}

fn classify(
    plan: &mut Plan,
    depth: u32,
    level: u32,
    i: usize,
    local: &Digest,
    remote: &Digest,
    full: bool,
) {
    if local == remote {
        return;
    }
    if *remote == ZERO {
        // Nothing on the peer there: nothing to pull.
        if full {
            plan.drop.extend(buckets_under(depth, level, i));
        }
    } else if *local == ZERO && (level == depth || plan.dense) {
        // A bucket, or (in a dense tree) a subtree we do not have at all:
        // its digests and listings could only say "fetch everything".
        plan.pull.extend(buckets_under(depth, level, i));
    } else if level == depth {
        plan.list.push(i);
    } else {
        plan.descend.push(i);
    }
}

/// Runs one round against `peer`, repairing `store` through `repair`.
pub fn run<P: Peer, R: Repair>(
    peer: &mut P,
    store: &Store,
    repair: &mut R,
    opts: &RoundOptions,
) -> Result<RoundReport, RoundError> {
    let mut report = RoundReport::default();
    let shape = store.shape();
    let info = peer.root()?;
    report.round_trips += 1;
    report.peer_node_id = info.node_id.clone();
    let ours = (WIRE_VERSION, shape.bits, FANOUT_BITS);
    let theirs = (info.wire_version, info.tree_bits, info.fanout_bits);
    if ours != theirs {
        return Err(RoundError::Mismatch {
            local: ours,
            peer: theirs,
        });
    }
    if info.instance == opts.instance {
        report.self_peer = true;
        return Ok(report);
    }
    let depth = shape.depth();
    let local_root = store.root();
    report.in_sync = local_root == info.root;
    if !report.in_sync {
        let mut plan = Plan {
            dense: info.records.saturating_mul(2) >= shape.buckets() as u64,
            ..Plan::default()
        };
        classify(&mut plan, depth, 0, 0, &local_root, &info.root, opts.full);
        for level in 1..=depth {
            if plan.descend.is_empty() {
                break;
            }
            let parents = std::mem::take(&mut plan.descend);
            let children: Vec<usize> = parents
                .iter()
                .flat_map(|&p| (p << FANOUT_BITS)..((p + 1) << FANOUT_BITS))
                .collect();
            for chunk in children.chunks(MAX_NODES) {
                let remote = peer.nodes(shape.bits, level, chunk)?;
                report.round_trips += 1;
                report.nodes_compared += chunk.len();
                for (&i, rd) in chunk.iter().zip(&remote) {
                    let ld = store.node_digest(level, i).unwrap_or(ZERO);
                    classify(&mut plan, depth, level, i, &ld, rd, opts.full);
                }
            }
        }
        let records = store.len() + store.tombstones();
        let mut budget = Budget {
            left: (!opts.force).then_some(records / 2),
            limit: records / 2,
            records,
        };
        if opts.full {
            let doomed: usize = plan
                .drop
                .iter()
                .map(|&b| store.bucket_versions(b).map_or(0, |v| v.len()))
                .sum();
            budget.take(doomed)?;
        }
        repair_buckets(
            peer,
            store,
            repair,
            opts,
            &plan.list,
            &mut budget,
            &mut report,
        )?;
        pull_buckets(peer, store, repair, opts, &plan.pull, &mut report)?;
        if opts.full {
            for &b in &plan.drop {
                for (key, v) in store.bucket_versions(b).unwrap_or_default() {
                    if repair.delete_if(&key, v) {
                        report.keys_removed += 1;
                    }
                }
            }
        }
    }
    if opts.verify {
        let after = peer.root()?;
        report.round_trips += 1;
        let local = store.root();
        if after.root != local {
            return Err(RoundError::VerifyFailed {
                local,
                peer: after.root,
            });
        }
    }
    Ok(report)
}

/// What `--full` may still delete (module docs).
struct Budget {
    /// `None`: no bound (`--force`).
    left: Option<usize>,
    limit: usize,
    records: usize,
}

impl Budget {
    /// Spends `n` deletions, or refuses the round if they exceed the budget.
    fn take(&mut self, n: usize) -> Result<(), RoundError> {
        if let Some(left) = &mut self.left {
            *left = left.checked_sub(n).ok_or(RoundError::TooManyRemovals {
                limit: self.limit,
                records: self.records,
            })?;
        }
        Ok(())
    }
}

/// Lists `buckets` on the peer, diffs them, fetches and repairs — one
/// bucket chunk at a time.
fn repair_buckets<P: Peer, R: Repair>(
    peer: &mut P,
    store: &Store,
    repair: &mut R,
    opts: &RoundOptions,
    buckets: &[usize],
    budget: &mut Budget,
    report: &mut RoundReport,
) -> Result<(), RoundError> {
    let bits = store.shape().bits;
    let mut pos = 0;
    while pos < buckets.len() {
        let chunk = &buckets[pos..buckets.len().min(pos + MAX_BUCKETS)];
        let lists = peer.buckets(bits, chunk)?;
        report.round_trips += 1;
        let mut fetch = Vec::new();
        let mut expected = Vec::new();
        for (&b, mut remote) in chunk.iter().zip(lists) {
            pos += 1;
            check_bucket(store, "MKV.BUCKETS", b, remote.iter().map(|(k, _)| k))?;
            sort_listing(&mut remote);
            let local = store.bucket_versions(b).unwrap_or_default();
            let d = diff_bucket(&local, &remote, opts.full);
            if d.fetch.is_empty() && d.local_only.is_empty() {
                continue;
            }
            report.buckets_differing += 1;
            budget.take(d.local_only.len())?;
            for (key, v) in d.local_only {
                if repair.delete_if(&key, v) {
                    report.keys_removed += 1;
                }
            }
            for (key, v) in d.fetch {
                fetch.push(key);
                expected.push(v);
            }
        }
        fetch_and_repair(peer, store, repair, opts, &fetch, &expected, budget, report)?;
    }
    Ok(())
}

/// Pulls whole buckets that are empty locally, one chunk at a time.
fn pull_buckets<P: Peer, R: Repair>(
    peer: &mut P,
    store: &Store,
    repair: &mut R,
    opts: &RoundOptions,
    buckets: &[usize],
    report: &mut RoundReport,
) -> Result<(), RoundError> {
    let bits = store.shape().bits;
    let mut pos = 0;
    while pos < buckets.len() {
        let chunk = &buckets[pos..buckets.len().min(pos + MAX_BUCKETS)];
        let lists = peer.entries(bits, chunk)?;
        report.round_trips += 1;
        for (&b, records) in chunk.iter().zip(lists) {
            pos += 1;
            check_bucket(store, "MKV.ENTRIES", b, records.iter().map(|(k, ..)| k))?;
            report.buckets_differing += !records.is_empty() as usize;
            for (key, value, version, expires) in records {
                report.keys_fetched += 1;
                if !store.accept_remote(version, peer.source()) {
                    report.versions_refused += 1;
                    continue;
                }
                // With `--full`, only where the bucket is still empty of
                // this key (a client may have written it meanwhile).
                let stored = if opts.full {
                    repair.replace_if(&key, None, value.as_deref(), version, expires)
                } else {
                    repair.apply(&key, value.as_deref(), version, expires) == Applied::Stored
                };
                report.keys_repaired += stored as usize;
            }
        }
    }
    Ok(())
}

/// Refuses a peer's bucket listing that holds a key of another bucket.
fn check_bucket<'k>(
    store: &Store,
    what: &str,
    bucket: usize,
    mut keys: impl Iterator<Item = &'k Vec<u8>>,
) -> Result<(), RoundError> {
    match keys.find(|k| store.bucket_of_key(k) != bucket) {
        Some(k) => Err(RoundError::BadReply(format!(
            "{what}: key {:?} does not belong to bucket {bucket}",
            String::from_utf8_lossy(&k[..k.len().min(64)])
        ))),
        None => Ok(()),
    }
}

#[allow(clippy::too_many_arguments)]
fn fetch_and_repair<P: Peer, R: Repair>(
    peer: &mut P,
    store: &Store,
    repair: &mut R,
    opts: &RoundOptions,
    keys: &[Vec<u8>],
    expected: &[Option<Version>],
    budget: &mut Budget,
    report: &mut RoundReport,
) -> Result<(), RoundError> {
    let mut pos = 0;
    while pos < keys.len() {
        let chunk: Vec<&[u8]> = keys[pos..keys.len().min(pos + MAX_KEYS)]
            .iter()
            .map(Vec::as_slice)
            .collect();
        let entries = peer.fetch(&chunk)?;
        report.round_trips += 1;
        for (entry, key) in entries.into_iter().zip(chunk) {
            let local = expected[pos];
            pos += 1;
            match entry {
                Some((value, version, expires)) => {
                    report.keys_fetched += 1;
                    if !store.accept_remote(version, peer.source()) {
                        report.versions_refused += 1;
                        continue;
                    }
                    let stored = if opts.full {
                        repair.replace_if(key, local, value.as_deref(), version, expires)
                    } else {
                        repair.apply(key, value.as_deref(), version, expires) == Applied::Stored
                    };
                    report.keys_repaired += stored as usize;
                }
                // Gone on the peer since it was listed (collected, cleared).
                None => {
                    if opts.full
                        && let Some(v) = local
                    {
                        budget.take(1)?;
                        if repair.delete_if(key, v) {
                            report.keys_removed += 1;
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::antientropy::serve::{Identity, execute};
    use crate::client::{Limits, encode_request, read_reply};
    use crate::protocol::reply::{Proto, error};
    use crate::protocol::{Command, Parsed, resp};
    use crate::store::{StoreOptions, now_millis};

    fn store(shards: usize, bits: u32, node: &str) -> Store {
        Store::new(StoreOptions {
            shards,
            tree_bits: bits,
            node_id: node.into(),
            tombstone_ttl_ms: 3_600_000,
        })
        .unwrap()
    }

    /// A peer in memory, reached through the real RESP request parser,
    /// the real server code and the real reply parser.
    struct Loopback<'a> {
        store: &'a Store,
        instance: u64,
        bytes: usize,
    }

    impl Transport for Loopback<'_> {
        fn call(&mut self, args: &[&[u8]]) -> Result<Reply, ClientError> {
            let mut req = Vec::new();
            encode_request(&mut req, args);
            let mut spans = Vec::new();
            let mut out = Vec::new();
            match resp::parse(&req, &mut spans) {
                Parsed::Request(Command::Internal(cmd), n) => {
                    assert_eq!(n, req.len());
                    let id = Identity {
                        node_id: "peer",
                        instance: self.instance,
                    };
                    execute(&cmd, self.store, id, &mut out);
                }
                Parsed::Invalid(e, _) => error(&mut out, Proto::Resp, &e.0),
                other => panic!("unexpected parse {other:?}"),
            }
            self.bytes += req.len() + out.len();
            let mut r = &out[..];
            let reply = read_reply(&mut r, &Limits::default())?;
            assert!(r.is_empty(), "one reply per request");
            Ok(reply)
        }
    }

    fn peer(store: &Store) -> RespPeer<Loopback<'_>> {
        RespPeer::new(Loopback {
            store,
            instance: 7,
            bytes: 0,
        })
    }

    /// Records what a round repairs, then applies it to a store.
    struct Recorder<'a> {
        store: &'a Store,
        touched: BTreeSet<Vec<u8>>,
    }

    impl Repair for Recorder<'_> {
        fn apply(
            &mut self,
            key: &[u8],
            value: Option<&[u8]>,
            version: Version,
            expires: u64,
        ) -> Applied {
            self.touched.insert(key.to_vec());
            self.store.apply_expiring(key, value, version, expires)
        }
        fn replace_if(
            &mut self,
            key: &[u8],
            expected: Option<Version>,
            value: Option<&[u8]>,
            version: Version,
            expires: u64,
        ) -> bool {
            self.touched.insert(key.to_vec());
            self.store
                .replace_if_expiring(key, expected, value, version, expires)
        }
        fn delete_if(&mut self, key: &[u8], expected: Version) -> bool {
            self.touched.insert(key.to_vec());
            self.store.delete_if(key, expected).is_some()
        }
    }

    /// A version `t` ticks after a fixed recent time (recent, so that
    /// tombstones are not expired).
    fn ver(t: u64, node: u64) -> Version {
        static BASE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
        Version::new(*BASE.get_or_init(|| now_millis() << 16) + t, node)
    }

    fn value(s: &Store, k: &str) -> Option<Vec<u8>> {
        s.get(k.as_bytes(), |v| v.map(<[u8]>::to_vec))
    }

    fn opts(full: bool) -> RoundOptions {
        RoundOptions {
            full,
            force: false,
            verify: false,
            instance: 1,
        }
    }

    fn forced() -> RoundOptions {
        RoundOptions {
            force: true,
            ..opts(true)
        }
    }

    /// Two stores with the same 2,000 entries, then known differences.
    fn diverged(local_shards: usize, peer_shards: usize) -> (Store, Store, BTreeSet<Vec<u8>>) {
        let (l, p) = (store(local_shards, 16, "l"), store(peer_shards, 16, "p"));
        for i in 0..2000u64 {
            let k = format!("key:{i}");
            l.apply(k.as_bytes(), Some(b"v0"), ver(i, 1));
            p.apply(k.as_bytes(), Some(b"v0"), ver(i, 1));
        }
        let mut newer_on_peer = BTreeSet::new();
        for i in (0..2000u64).step_by(131) {
            let k = format!("key:{i}");
            p.apply(k.as_bytes(), Some(b"peer"), ver(10_000 + i, 2));
            newer_on_peer.insert(k.into_bytes());
        }
        for i in 0..20 {
            let k = format!("peer-only:{i}");
            p.apply(k.as_bytes(), Some(b"p"), ver(i, 2));
            newer_on_peer.insert(k.into_bytes());
        }
        for i in (7..2000u64).step_by(499) {
            let k = format!("key:{i}");
            p.apply(k.as_bytes(), None, ver(20_000 + i, 2));
            newer_on_peer.insert(k.into_bytes());
        }
        // Newer locally: must be kept by a normal round.
        for i in (3..2000u64).step_by(997) {
            l.apply(
                format!("key:{i}").as_bytes(),
                Some(b"local"),
                ver(30_000, 3),
            );
        }
        for i in 0..3 {
            l.apply(format!("local-only:{i}").as_bytes(), Some(b"l"), ver(i, 3));
        }
        (l, p, newer_on_peer)
    }

    #[test]
    fn a_round_fetches_exactly_the_keys_newer_on_the_peer() {
        for (ls, ps) in [(4, 64), (64, 64), (1, 4096)] {
            let (l, p, expected) = diverged(ls, ps);
            let mut rec = Recorder {
                store: &l,
                touched: BTreeSet::new(),
            };
            let r = run(&mut peer(&p), &l, &mut rec, &opts(false)).unwrap();
            assert_eq!(rec.touched, expected, "shards {ls}/{ps}");
            assert_eq!(r.keys_fetched, expected.len());
            assert_eq!(r.keys_repaired, expected.len());
            assert_eq!(r.keys_removed, 0);
            assert!(!r.in_sync && !r.self_peer);
            assert_eq!(value(&l, "key:131").as_deref(), Some(&b"peer"[..]));
            assert_eq!(value(&l, "key:7"), None, "tombstone pulled");
            assert_eq!(value(&l, "peer-only:3").as_deref(), Some(&b"p"[..]));
            assert_eq!(value(&l, "key:3").as_deref(), Some(&b"local"[..]));
            assert_eq!(value(&l, "local-only:0").as_deref(), Some(&b"l"[..]));
            // Pulling again finds nothing new.
            let mut rec = Recorder {
                store: &l,
                touched: BTreeSet::new(),
            };
            let again = run(&mut peer(&p), &l, &mut rec, &opts(false)).unwrap();
            assert!(rec.touched.is_empty());
            assert_eq!(again.keys_fetched, 0);
        }
    }

    #[test]
    fn rounds_both_ways_converge_to_the_same_root() {
        let (l, p, _) = diverged(16, 64);
        assert_ne!(l.root(), p.root());
        run(&mut peer(&p), &l, &mut &l, &opts(false)).unwrap();
        run(&mut peer(&l), &p, &mut &p, &opts(false)).unwrap();
        assert_eq!(l.root(), p.root());
        assert_eq!(l.len(), p.len());
        let r = run(&mut peer(&p), &l, &mut &l, &opts(false)).unwrap();
        assert!(r.in_sync);
        assert_eq!(r.round_trips, 1);
    }

    #[test]
    fn full_makes_an_exact_copy() {
        let (l, p, _) = diverged(8, 64);
        let r = run(&mut peer(&p), &l, &mut &l, &opts(true)).unwrap();
        assert_eq!(r.keys_removed, 3, "local-only keys deleted");
        assert_eq!(value(&l, "local-only:1"), None);
        let t = l.entry(b"local-only:1").unwrap();
        assert!(t.value.is_none(), "deleted with a tombstone");
        assert!(t.version > ver(1_000_000, 0), "at a fresh local version");
        assert_eq!(
            value(&l, "key:3").as_deref(),
            Some(&b"v0"[..]),
            "older copy"
        );
        assert_eq!((l.len(), l.tombstones()), (p.len(), p.tombstones() + 3));
        // The peer learns the deletions from its next round; then the
        // trees are equal and --verify passes.
        run(&mut peer(&l), &p, &mut &p, &opts(false)).unwrap();
        let verify = RoundOptions {
            verify: true,
            ..opts(true)
        };
        let r = run(&mut peer(&p), &l, &mut &l, &verify).unwrap();
        assert_eq!((r.keys_removed, l.root()), (0, p.root()));
    }

    #[test]
    fn full_drops_subtrees_the_peer_does_not_have() {
        let (l, p) = (store(64, 8, "l"), store(4, 8, "p"));
        for i in 0..300u64 {
            l.apply(format!("k{i}").as_bytes(), Some(b"x"), ver(i, 1));
        }
        p.apply(b"k1", Some(b"y"), ver(0, 2));
        // 299 of 300 records would go: refused before anything changes.
        let root = l.root();
        let e = run(&mut peer(&p), &l, &mut &l, &opts(true)).unwrap_err();
        assert!(
            matches!(
                e,
                RoundError::TooManyRemovals {
                    limit: 150,
                    records: 300
                }
            ),
            "{e}"
        );
        assert_eq!((l.root(), l.len()), (root, 300));
        let r = run(&mut peer(&p), &l, &mut &l, &forced()).unwrap();
        assert_eq!((r.keys_removed, l.len(), l.tombstones()), (299, 1, 299));
        assert_eq!(value(&l, "k1").as_deref(), Some(&b"y"[..]));
        // And from an empty peer (forced): everything goes.
        let empty = store(4, 8, "e");
        let e = run(&mut peer(&empty), &l, &mut &l, &opts(true)).unwrap_err();
        assert!(matches!(e, RoundError::TooManyRemovals { .. }), "{e}");
        run(&mut peer(&empty), &l, &mut &l, &forced()).unwrap();
        assert_eq!((l.len(), l.tombstones()), (0, 300));
    }

    #[test]
    fn full_deletes_at_most_half_without_force() {
        // Local-only keys found in bucket listings count as well.
        let (l, p) = (store(4, 8, "l"), store(4, 8, "p"));
        for i in 0..40u64 {
            l.apply(format!("k{i}").as_bytes(), Some(b"x"), ver(i, 1));
            if i % 4 != 0 {
                p.apply(format!("k{i}").as_bytes(), Some(b"x"), ver(i, 1));
            }
        }
        // 10 of 40 go: within the budget.
        let r = run(&mut peer(&p), &l, &mut &l, &opts(true)).unwrap();
        assert_eq!((r.keys_removed, l.len()), (10, 30));
        // 30 of the 40 records left would go: more than half.
        let few = store(4, 8, "f");
        for i in (1..40u64).step_by(4) {
            few.apply(format!("k{i}").as_bytes(), Some(b"x"), ver(i, 1));
        }
        let e = run(&mut peer(&few), &l, &mut &l, &opts(true)).unwrap_err();
        assert!(matches!(e, RoundError::TooManyRemovals { .. }), "{e}");
        assert!(l.len() >= 10, "at most half went: {}", l.len());
    }

    #[test]
    fn versions_past_the_clock_bound_are_refused() {
        // The poison of issue 12: a peer serving (u64::MAX, u64::MAX).
        let (l, p) = (store(4, 8, "l"), store(4, 8, "p"));
        let poison = Version::new(u64::MAX, u64::MAX);
        let ahead = Version::new((now_millis() + 3_600_000) << 16, 2);
        p.apply(b"poisoned", Some(b"x"), poison);
        p.apply(b"ahead", None, ahead);
        p.apply(b"fine", Some(b"y"), ver(1, 2));
        for o in [opts(false), opts(true)] {
            let r = run(&mut peer(&p), &l, &mut &l, &o).unwrap();
            assert_eq!(r.versions_refused, 2, "{r:?}");
            assert_eq!(l.entry(b"poisoned"), None);
            assert_eq!(l.entry(b"ahead"), None);
            assert_eq!(value(&l, "fine").as_deref(), Some(&b"y"[..]));
        }
        // The clock was not dragged along: a new write is dated now.
        let v = l.set(b"new", b"1");
        assert!(v.millis() <= now_millis() + 1000, "{v}");
        let refused = l.refusals();
        assert_eq!(refused.len(), 1);
        assert_eq!(
            (refused[0].0.as_str(), refused[0].1.count),
            ("anti-entropy peer", 4)
        );
    }

    #[test]
    fn full_keeps_writes_made_after_the_comparison() {
        let l = store(4, 8, "l");
        let v = ver(1, 1);
        l.apply(b"k", Some(b"old"), v);
        // The round compared against `v`, then a client wrote.
        let newer = l.set(b"k", b"client");
        assert!(!l.replace_if(b"k", Some(v), Some(b"peer"), ver(0, 2)));
        assert!(!l.remove_if(b"k", v));
        assert_eq!(value(&l, "k").as_deref(), Some(&b"client"[..]));
        assert!(l.remove_if(b"k", newer));
        assert_eq!(l.entry(b"k"), None);
        assert!(l.replace_if(b"k", None, None, ver(5, 2)));
        assert_eq!(l.tombstones(), 1);
    }

    #[test]
    fn tombstones_and_values_resolve_by_version() {
        let (l, p) = (store(4, 8, "l"), store(4, 8, "p"));
        // Peer deleted after our write: the delete wins.
        l.apply(b"a", Some(b"1"), ver(1, 1));
        p.apply(b"a", None, ver(2, 2));
        // We deleted after the peer's write: never resurrected.
        l.apply(b"b", None, ver(4, 1));
        p.apply(b"b", Some(b"old"), ver(3, 2));
        // Peer wrote after our delete: the value comes back.
        l.apply(b"c", None, ver(5, 1));
        p.apply(b"c", Some(b"new"), ver(6, 2));
        let r = run(&mut peer(&p), &l, &mut &l, &opts(false)).unwrap();
        assert_eq!(r.keys_repaired, 2);
        assert_eq!(value(&l, "a"), None);
        assert_eq!(value(&l, "b"), None);
        assert_eq!(l.entry(b"b").unwrap().version, ver(4, 1));
        assert_eq!(value(&l, "c").as_deref(), Some(&b"new"[..]));
    }

    #[test]
    fn one_change_costs_one_path() {
        let (l, p) = (store(64, 16, "l"), store(16, 16, "p"));
        for i in 0..5_000u64 {
            let k = format!("k{i}");
            l.apply(k.as_bytes(), Some(b"v"), ver(i, 1));
            p.apply(k.as_bytes(), Some(b"v"), ver(i, 1));
        }
        p.apply(b"k777", Some(b"changed"), ver(99_999, 2));
        let mut pe = peer(&p);
        let r = run(&mut pe, &l, &mut &l, &opts(false)).unwrap();
        assert_eq!(r.nodes_compared, 16 * 4, "16 children per level, one path");
        assert_eq!((r.buckets_differing, r.keys_fetched), (1, 1));
        assert_eq!(r.round_trips, 1 + 4 + 1 + 1);
        assert!(pe.transport.bytes < 4096, "{} bytes", pe.transport.bytes);
        assert_eq!(l.root(), p.root());
    }

    #[test]
    fn an_empty_node_lists_buckets_without_descending_to_them() {
        let (l, p) = (store(8, 16, "l"), store(64, 16, "p"));
        for i in 0..1000u64 {
            p.apply(format!("k{i}").as_bytes(), Some(b"v"), ver(i, 1));
        }
        // Sparse (1,000 records in 65,536 buckets): descend, pull buckets.
        let r = run(&mut peer(&p), &l, &mut &l, &opts(false)).unwrap();
        // 16 children of every node the peer has something under.
        let non_empty = |level: u32| {
            (0..p.shape().nodes_at(level))
                .filter(|&i| p.node_digest(level, i) != Some(ZERO))
                .count()
        };
        let expected: usize = (0..4).map(|l| 16 * non_empty(l)).sum();
        assert_eq!(r.nodes_compared, expected);
        assert_eq!(r.keys_repaired, 1000);
        assert_eq!(l.root(), p.root());
        // Dense: no digests at all, every bucket pulled whole.
        let (l, p) = (store(8, 8, "l"), store(64, 8, "p"));
        for i in 0..3000u64 {
            p.apply(format!("k{i}").as_bytes(), Some(b"v"), ver(i, 1));
        }
        p.delete(b"k7");
        let r = run(&mut peer(&p), &l, &mut &l, &opts(false)).unwrap();
        assert_eq!((r.nodes_compared, r.round_trips), (0, 2));
        assert_eq!((r.keys_fetched, r.keys_repaired), (3000, 3000));
        assert_eq!(l.root(), p.root());
        assert_eq!((l.len(), l.tombstones()), (2999, 1));
    }

    #[test]
    fn large_entries_are_fetched_in_several_replies() {
        let (l, p) = (store(4, 4, "l"), store(4, 4, "p"));
        let big = vec![b'x'; 1 << 20];
        for i in 0..5u64 {
            p.apply(format!("big{i}").as_bytes(), Some(&big), ver(10 + i, 1));
        }
        // Nothing locally: whole buckets in ≥ 2 replies of ≤ 4 MiB + one.
        let r = run(&mut peer(&p), &l, &mut &l, &opts(false)).unwrap();
        assert_eq!(r.keys_repaired, 5);
        assert!(r.round_trips >= 3, "root, then two replies: {r:?}");
        assert_eq!(l.root(), p.root());
        // Older versions locally: listed, then fetched in ≥ 2 replies.
        let l = store(4, 4, "l");
        for i in 0..5u64 {
            l.apply(format!("big{i}").as_bytes(), Some(b"old"), ver(i, 1));
        }
        let r = run(&mut peer(&p), &l, &mut &l, &opts(false)).unwrap();
        assert_eq!(r.keys_repaired, 5);
        assert!(
            r.round_trips >= 5,
            "root, nodes, buckets, two fetches: {r:?}"
        );
        assert_eq!(l.root(), p.root());
    }

    #[test]
    fn different_tree_parameters_are_refused() {
        let (l, p) = (store(4, 16, "l"), store(4, 8, "p"));
        p.set(b"k", b"v");
        let e = run(&mut peer(&p), &l, &mut &l, &opts(false)).unwrap_err();
        assert!(matches!(e, RoundError::Mismatch { .. }));
        assert_eq!(
            e.to_string(),
            "tree parameters differ: local wire_version=2 tree_bits=16 fanout=16, \
             peer wire_version=2 tree_bits=8 fanout=16"
        );
        assert!(l.is_empty());
        // The server side refuses a request made for another shape, too.
        let mut lb = Loopback {
            store: &p,
            instance: 7,
            bytes: 0,
        };
        let reply = lb.call(&[b"MKV.NODES", b"16", b"1", b"0"]).unwrap();
        assert_eq!(
            reply,
            Reply::Error(
                "ERR tree parameters differ: this node has tree_bits=8 fanout=16, \
                 the request tree_bits=16"
                    .into()
            )
        );
    }

    #[test]
    fn the_node_itself_is_recognised() {
        let l = store(4, 16, "l");
        let self_opts = RoundOptions {
            instance: 7,
            verify: true,
            full: true,
            force: false,
        };
        let r = run(&mut peer(&l), &l, &mut &l, &self_opts).unwrap();
        assert!(r.self_peer);
    }

    #[test]
    fn verify_reports_a_remaining_difference() {
        let (l, p) = (store(4, 8, "l"), store(4, 8, "p"));
        l.set(b"local-only", b"x");
        p.set(b"k", b"v");
        let o = RoundOptions {
            full: false,
            force: false,
            verify: true,
            instance: 1,
        };
        let e = run(&mut peer(&p), &l, &mut &l, &o).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("verify failed: roots differ after sync (local ")
        );
        assert_eq!(value(&l, "k").as_deref(), Some(&b"v"[..]));
    }

    /// A transport that answers with a fixed reply.
    struct Canned(Vec<Reply>);

    impl Transport for Canned {
        fn call(&mut self, _: &[&[u8]]) -> Result<Reply, ClientError> {
            if self.0.is_empty() {
                return Err(ClientError::Closed);
            }
            Ok(self.0.remove(0))
        }
    }

    fn root_reply(bits: i64, root: &[u8]) -> Reply {
        Reply::Array(vec![
            Reply::Integer(1),
            Reply::Integer(bits),
            Reply::Integer(4),
            Reply::Bulk(b"evil".to_vec()),
            Reply::Integer(9),
            Reply::Bulk(root.to_vec()),
            Reply::Integer(1),
        ])
    }

    #[test]
    fn garbage_from_the_peer_fails_the_round_and_changes_nothing() {
        let l = store(4, 4, "l");
        let one = [1u8; 32];
        let cases: Vec<Vec<Reply>> = vec![
            vec![Reply::Integer(5)],
            vec![root_reply(4, &[1; 31])],
            vec![root_reply(-4, &one)],
            vec![root_reply(4, &one), Reply::Bulk(vec![0; 31])],
            vec![
                root_reply(4, &one),
                Reply::Bulk(vec![1; 32 * 16]),
                Reply::Array(vec![]),
            ],
            vec![
                root_reply(4, &one),
                Reply::Bulk(vec![1; 32 * 16]),
                Reply::Array(vec![Reply::Array(vec![Reply::Bulk(b"k".to_vec())])]),
            ],
            vec![
                root_reply(4, &one),
                Reply::Bulk(vec![1; 32 * 16]),
                // A key that does not belong to bucket 0.
                Reply::Array(vec![Reply::Array(vec![
                    Reply::Bulk(b"not-in-bucket-0".to_vec()),
                    Reply::Bulk(vec![0; 16]),
                ])]),
            ],
            vec![root_reply(4, &one), Reply::Error("ERR nope".into())],
            vec![root_reply(4, &one)],
        ];
        for (n, replies) in cases.into_iter().enumerate() {
            let e = run(
                &mut RespPeer::new(Canned(replies)),
                &l,
                &mut &l,
                &opts(false),
            );
            assert!(e.is_err(), "case {n}: {e:?}");
            assert!(l.is_empty() && l.tombstones() == 0, "case {n}");
        }
        assert!(store(4, 4, "x").bucket_of_key(b"not-in-bucket-0") != 0);
    }

    #[test]
    fn diff_bucket_compares_versions_key_by_key() {
        let e = |k: &str, t: u64| (k.as_bytes().to_vec(), Version::new(t, 0));
        let local = vec![e("a", 5), e("b", 5), e("c", 5), e("e", 1)];
        let mut remote = vec![e("d", 1), e("c", 4), e("b", 6), e("a", 5), e("b", 2)];
        sort_listing(&mut remote);
        assert_eq!(remote, vec![e("a", 5), e("b", 6), e("c", 4), e("d", 1)]);
        let d = diff_bucket(&local, &remote, false);
        assert_eq!(
            d.fetch,
            vec![
                (b"b".to_vec(), Some(Version::new(5, 0))),
                (b"d".to_vec(), None)
            ]
        );
        assert!(d.local_only.is_empty());
        let d = diff_bucket(&local, &remote, true);
        assert_eq!(
            d.fetch.iter().map(|f| f.0.clone()).collect::<Vec<_>>(),
            vec![b"b".to_vec(), b"c".to_vec(), b"d".to_vec()]
        );
        assert_eq!(d.local_only, vec![e("e", 1)]);
        assert_eq!(diff_bucket(&local, &local, true), BucketDiff::default());
        assert_eq!(diff_bucket(&[], &[], false), BucketDiff::default());
    }
}
