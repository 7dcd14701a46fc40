//! One client connection: socket, buffers and protocol state.
//!
//! Buffers: input that is read and fully parsed in the same turn never
//! touches the connection (the worker reads into its own scratch buffer);
//! only an unfinished request is kept in `rbuf`. Replies accumulate in
//! `wbuf` and are written once per loop turn, so a pipelined batch costs one
//! `write`. Idle connections therefore hold (almost) no buffer memory.
//!
//! Closing: a connection the server closes (fatal protocol error, a limit,
//! `QUIT`) first sends its last reply, then shuts down its write side and
//! *lingers*: input is read and discarded until the peer closes, for at
//! most [`LINGER_TIME`] and [`LINGER_BYTES`]. Closing a socket with unread
//! input makes the kernel send RST, and the peer would often see
//! "connection reset" instead of the error (issue 11). The deadline also
//! bounds how long the last reply waits for a peer that does not read.
//!
//! Transport: `tls` is `None` for plaintext, whose reads and writes go
//! straight to the socket; a TLS connection's go through its
//! [`Session`] (one `Option` test per read or write call).

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpStream;

use super::tls::Session as TlsSession;
use crate::auth::Session;
use crate::exec::tx::TxState;
use crate::monitor::Feed;
use crate::protocol::reply::{self, Proto};
use crate::protocol::resp;
use crate::pubsub::Subscriptions;
use crate::stats::{ClientInfo, ConnView};

/// Unsent reply bytes above which a connection is not read (backpressure).
pub const WBUF_HIGH: usize = 4 << 20;
/// Output buffer capacity kept after a flush; larger buffers are released.
const WBUF_KEEP: usize = 64 << 10;
/// Longest a closing connection waits for its last reply to be read and
/// for the peer to close.
pub const LINGER_TIME: Duration = Duration::from_secs(2);
/// Most input a lingering connection discards before it is closed anyway.
pub const LINGER_BYTES: usize = 64 << 20;

/// Connection state.
pub struct Conn {
    pub sock: TcpStream,
    pub info: Arc<ClientInfo>,
    /// Chosen by the first byte received (`*` = RESP).
    pub proto: Option<Proto>,
    /// Unprocessed input (an incomplete request, or input left over by the
    /// per-turn fairness cap or backpressure).
    pub rbuf: Vec<u8>,
    /// Replies not yet written; `wbuf[wpos..]` is pending.
    pub wbuf: Vec<u8>,
    pub wpos: usize,
    /// The socket may have unread data (we stopped before WouldBlock).
    pub want_read: bool,
    /// The peer shut down its sending side (we read the EOF).
    pub read_closed: bool,
    /// epoll reported the peer's FIN (EPOLLRDHUP): read until EOF even
    /// after a short read, which would otherwise end reading for this edge.
    pub hup: bool,
    /// Close once `wbuf` is flushed.
    pub closing: bool,
    /// Waiting for a deferred reply (SYNC); input is not processed.
    pub deferred: bool,
    /// Script requests handed to the script thread whose replies have not
    /// come back: while there are some, only further script requests are
    /// taken from the input (their replies come back in order), anything
    /// else waits (`worker::chains`).
    pub script_jobs: u32,
    /// Queued in the worker's pending list.
    pub pending: bool,
    /// Queued in the worker's flush list.
    pub dirty: bool,
    /// Last time input was read or output written (`connection_timeout`).
    pub last_active: Instant,
    /// Set with `closing`: the connection is closed at this time at the
    /// latest, whatever is left to write or read.
    pub close_by: Option<Instant>,
    /// The write side is shut down; input is read and discarded.
    pub lingering: bool,
    /// Input bytes discarded while lingering.
    pub discarded: usize,
    /// Since when unsent output has stayed above the soft output limit.
    pub soft_since: Option<Instant>,
    /// Buffer bytes last reported to the client memory accounting.
    pub mem: usize,
    /// Framing progress of an incomplete RESP request at the front of
    /// `rbuf`, so the next read resumes instead of re-framing it.
    pub resp: resp::Partial,
    /// Bytes at the front of `rbuf` already searched for the end of an
    /// unterminated text line (`text::parse_resume`).
    pub text_scanned: usize,
    /// RESP `MULTI`/`WATCH` state (`exec::tx`), allocated on first use.
    pub tx: Option<Box<TxState>>,
    /// The deferred reply now awaited is to be dropped (`CLIENT REPLY`).
    pub drop_deferred: bool,
    /// The TLS session of a connection that started with a TLS handshake.
    pub tls: Option<Box<TlsSession>>,
    /// Who the connection is authenticated as (`auth::gate`).
    pub session: Session,
    /// The connection's `MONITOR` feed, once it sent `MONITOR`.
    pub monitor: Option<Arc<Feed>>,
    /// The connection's Pub/Sub subscriptions, while it has any.
    pub subs: Option<Box<Subscriptions>>,
    /// What `CLIENT LIST` shows of this connection, kept here and
    /// published to `info` by the worker ([`Conn::publish_view`]).
    pub view: ConnView,
    /// What the view was last published from ([`Conn::publish_view`]).
    shown: ViewKey,
    /// The view changed in a way [`ViewKey`] does not show (the command
    /// name): publish at the next chance.
    pub view_changed: bool,
    /// After a failed AUTH: nothing is processed or written before this
    /// time (`security.auth_failure_delay_ms`; the worker's timer ends it).
    pub held_until: Option<Instant>,
}

impl Conn {
    /// A new connection; `max_bulk`: its RESP bulk string limit.
    pub fn new(sock: TcpStream, info: Arc<ClientInfo>, now: Instant, max_bulk: usize) -> Conn {
        Conn {
            sock,
            info,
            proto: None,
            rbuf: Vec::new(),
            wbuf: Vec::new(),
            wpos: 0,
            want_read: true,
            read_closed: false,
            hup: false,
            closing: false,
            deferred: false,
            script_jobs: 0,
            pending: false,
            dirty: false,
            last_active: now,
            close_by: None,
            lingering: false,
            discarded: 0,
            soft_since: None,
            mem: 0,
            resp: resp::Partial::with_max_bulk(max_bulk),
            text_scanned: 0,
            tx: None,
            drop_deferred: false,
            tls: None,
            session: Session::default(),
            monitor: None,
            subs: None,
            view: ConnView::default(),
            shown: ViewKey::default(),
            view_changed: true,
            held_until: None,
        }
    }

    /// Publishes the connection's state for `CLIENT LIST` / `CLIENT INFO`
    /// (on any worker); `qbuf`: input bytes buffered. With `output` false
    /// (after a batch, before its replies are written) the output side
    /// (`obl`, `rbs`, `omem`, `events=w`, the output part of `tot-mem`)
    /// keeps its published value: the write that follows in the same turn
    /// publishes it. Publishing takes the client-view lock and copies the
    /// view, so it is done only when something shown changed: the few
    /// words the view is computed from ([`ViewKey`]) differ, the command
    /// name changed (`view_changed`), or a transaction is open or a
    /// subscription held (their counts are not in the key). A connection
    /// repeating one command publishes nothing once steady.
    pub fn publish_view(&mut self, qbuf: usize, output: bool) {
        let (wcap, obl) = if output {
            (self.wbuf.capacity(), self.unsent())
        } else {
            (self.shown.wcap, self.shown.obl)
        };
        let key = ViewKey {
            qbuf,
            rcap: self.rbuf.capacity(),
            wcap,
            obl,
            user: self.session.user(),
            readable: !self.blocked(),
            closing: self.closing,
            monitor: self.monitor.is_some(),
            tx: self.tx.is_some(),
            subs: self.subs.is_some(),
        };
        if key == self.shown && !self.view_changed && !key.tx && !key.subs {
            return;
        }
        self.shown = key;
        self.view_changed = false;
        let multi_mem = self.tx.as_ref().map_or(0, |t| t.buffer_bytes());
        let v = &mut self.view;
        v.qbuf = qbuf;
        v.qbuf_free = key.rcap.saturating_sub(qbuf);
        v.multi = self
            .tx
            .as_ref()
            .and_then(|t| t.queued())
            .map_or(-1, |n| n as i64);
        v.multi_mem = multi_mem;
        v.watch = self.tx.as_ref().map_or(0, |t| t.watched());
        v.rbs = wcap;
        v.obl = obl;
        v.omem = wcap.saturating_sub(WBUF_KEEP);
        v.writable = obl > 0;
        v.tot_mem = key.rcap + wcap + multi_mem;
        v.monitor = key.monitor;
        v.sub = self.subs.as_ref().map_or(0, |s| s.channels());
        v.psub = self.subs.as_ref().map_or(0, |s| s.patterns());
        v.ssub = self.subs.as_ref().map_or(0, |s| s.shard_channels());
        v.closing = key.closing;
        v.readable = key.readable;
        v.user = key.user;
        self.info.set_view(v);
    }

    /// Bytes of replies not yet written.
    pub fn unsent(&self) -> usize {
        self.wbuf.len() - self.wpos
    }

    /// Bytes of buffers this connection holds (input, output, transaction
    /// queue): what `maxmemory_clients` budgets.
    pub fn buffer_bytes(&self) -> usize {
        self.rbuf.capacity()
            + self.wbuf.capacity()
            + self.tx.as_ref().map_or(0, |t| t.buffer_bytes())
            + self.subs.as_ref().map_or(0, |s| s.bytes())
    }

    /// Starts closing: no more input is processed; the connection closes
    /// once its output is written (then lingers), or at `now` +
    /// [`LINGER_TIME`] at the latest.
    pub fn start_close(&mut self, now: Instant) {
        if !self.closing {
            self.closing = true;
            self.close_by = Some(now + LINGER_TIME);
        }
    }

    /// Drops everything buffered (unprocessed input, unsent output,
    /// transaction state), writes `msg` as the last reply and starts
    /// closing: for a client disconnected by a limit.
    pub fn fail(&mut self, now: Instant, msg: &str) {
        self.rbuf = Vec::new();
        self.wbuf = Vec::new();
        self.wpos = 0;
        self.tx = None;
        self.resp.reset();
        self.text_scanned = 0;
        reply::error(&mut self.wbuf, self.proto.unwrap_or(Proto::Text), msg);
        self.start_close(now);
    }

    /// Enters the lingering state: shuts down the write side and drops
    /// the buffers. Input is then discarded ([`Conn::discard`]).
    pub fn linger(&mut self) {
        let _ = self.sock.shutdown(Shutdown::Write);
        self.lingering = true;
        self.want_read = true;
        self.rbuf = Vec::new();
        self.wbuf = Vec::new();
        self.wpos = 0;
        self.tx = None;
        self.resp.reset();
    }

    /// Reads and discards input while lingering. `Ok(true)` when the
    /// connection is done (EOF, error, or [`LINGER_BYTES`] discarded);
    /// `Ok(false)` when the socket has nothing more for now.
    pub fn discard(&mut self, scratch: &mut [u8]) -> bool {
        loop {
            match self.sock.read(scratch) {
                Ok(0) => return true,
                Ok(n) => {
                    self.discarded += n;
                    if self.discarded >= LINGER_BYTES {
                        return true;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return true,
            }
        }
    }

    /// True when no more input may be processed for now.
    pub fn blocked(&self) -> bool {
        self.deferred || self.closing || self.held_until.is_some() || self.unsent() >= WBUF_HIGH
    }

    /// TLS records (handshake, alerts) wait to be written.
    pub fn tls_pending(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.wants_write())
    }

    /// Writes as much of `wbuf` as the socket takes. `Ok(true)` when
    /// everything was written.
    pub fn flush(&mut self) -> io::Result<bool> {
        if let Some(tls) = &mut self.tls {
            let (used, done) = tls.flush(&mut self.sock, &self.wbuf[self.wpos..], self.closing)?;
            self.wpos += used;
            if !done {
                return Ok(false);
            }
        }
        while self.wpos < self.wbuf.len() {
            match self.sock.write(&self.wbuf[self.wpos..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.wpos += n;
                    if self.wpos < self.wbuf.len() {
                        // Short write: the socket buffer is full; wait for
                        // the next writable edge.
                        return Ok(false);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.wbuf.clear();
        self.wpos = 0;
        if self.wbuf.capacity() > WBUF_KEEP {
            self.wbuf.shrink_to(WBUF_KEEP / 4);
        }
        Ok(true)
    }
}

/// The connection state a published [`ConnView`] was computed from
/// (besides the command name and the transaction queue).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct ViewKey {
    qbuf: usize,
    rcap: usize,
    wcap: usize,
    obl: usize,
    user: Option<usize>,
    readable: bool,
    closing: bool,
    monitor: bool,
    /// A transaction state or subscriptions exist: while they do, every
    /// publication computes the view (their counts are not in the key);
    /// when they end, the key changes.
    tx: bool,
    subs: bool,
}

/// Reads from a connection's transport into `buf` (plaintext: the socket).
#[inline]
pub fn read(
    sock: &mut TcpStream,
    tls: &mut Option<Box<TlsSession>>,
    buf: &mut [u8],
) -> io::Result<usize> {
    match tls {
        None => sock.read(buf),
        Some(t) => t.read(sock, buf),
    }
}
