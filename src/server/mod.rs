//! Networking: listeners and the per-core worker event loops.
//!
//! `threads` workers each own a `mio::Poll`, a listener bound with
//! SO_REUSEPORT to the node's address (the kernel spreads new connections
//! across them) and the connections they accept. Nothing is shared between
//! workers on the request path except the store's shard locks.
//!
//! Binding: the address is first probe-bound *without* SO_REUSEPORT, so a
//! second process on a busy port fails instead of silently joining the
//! port group; the probe stays bound (not listening) until the real
//! listeners exist, which closes the race between two starting processes.

mod conn;
pub mod tls;
mod worker;

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::thread::JoinHandle;

use socket2::{Domain, Protocol, Socket, Type};

use crate::state::Shared;

pub use worker::Worker;

/// The client-limit lines of INFO: used memory and `maxmemory`, client
/// buffers and their budget, and how often each limit was hit
/// (`rejected_connections`: refused at `max_connections`); heap trims
/// (`heap.rs`).
pub struct ClientLimitsInfo;

impl crate::state::InfoSection for ClientLimitsInfo {
    fn write_info(&self, shared: &Shared, _db: crate::store::Db<'_>, s: &mut String) {
        use std::fmt::Write as _;
        let m = &shared.memory;
        let (refused, evicted, output) = m.counters();
        let (trims, returned, trim_ms) = m.trims.get();
        let _ = write!(
            s,
            "used_memory:{}\r\nmaxmemory:{}\r\nmaxmemory_refused_writes:{refused}\r\n\
             clients_memory:{}\r\nmaxmemory_clients:{}\r\nevicted_clients:{evicted}\r\n\
             client_output_limit_disconnections:{output}\r\nrejected_connections:{}\r\n\
             proto_max_bulk_len:{}\r\nproto_max_bulk_len_disconnections:{}\r\n\
             heap_trim_threshold:{}\r\nheap_trims:{trims}\r\nheap_trim_returned_kb:{returned}\r\n\
             heap_trim_ms:{trim_ms}\r\n",
            m.used(),
            m.maxmemory(),
            m.clients(),
            m.clients_budget(),
            shared.stats.rejected_connections(),
            m.proto_max_bulk_len(),
            m.bulk_refused(),
            shared.live.heap_trim_threshold(),
        );
    }
}

/// The busy-polling lines of INFO: the setting in force, polls without
/// sleeping that found an event, and the time of those that found none.
pub struct BusyPollInfo;

impl crate::state::InfoSection for BusyPollInfo {
    fn write_info(&self, shared: &Shared, _db: crate::store::Db<'_>, s: &mut String) {
        use std::fmt::Write as _;
        let (hits, idle_ms) = shared.stats.busy_poll();
        let _ = write!(
            s,
            "busy_poll_us:{}\r\nbusy_poll_hits:{hits}\r\nbusy_poll_idle_ms:{idle_ms}\r\n",
            shared.live.busy_poll().as_micros(),
        );
    }
}

/// Errors binding the client port.
#[derive(Debug)]
pub enum BindError {
    /// The host name did not resolve.
    Resolve(String, io::Error),
    /// Another process holds the address.
    InUse(SocketAddr),
    /// Any other socket error.
    Io(SocketAddr, io::Error),
}

impl std::fmt::Display for BindError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BindError::Resolve(h, e) => write!(f, "cannot resolve bind address {h}: {e}"),
            BindError::InUse(a) => write!(f, "cannot bind {a}: address in use"),
            BindError::Io(a, e) => write!(f, "cannot bind {a}: {e}"),
        }
    }
}

impl std::error::Error for BindError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BindError::Resolve(_, e) | BindError::Io(_, e) => Some(e),
            BindError::InUse(_) => None,
        }
    }
}

fn socket_for(addr: SocketAddr, reuse_port: bool) -> io::Result<Socket> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    if reuse_port {
        s.set_reuse_port(true)?;
    }
    s.set_nonblocking(true)?;
    Ok(s)
}

/// Binds `n` SO_REUSEPORT listeners to `host:port` (port 0: one ephemeral
/// port shared by all of them). Returns the listeners and the bound address.
pub fn bind(
    host: &str,
    port: u16,
    n: usize,
) -> Result<(Vec<mio::net::TcpListener>, SocketAddr), BindError> {
    let addr = (host, port)
        .to_socket_addrs()
        .map_err(|e| BindError::Resolve(host.to_string(), e))?
        .next()
        .ok_or_else(|| BindError::Resolve(host.to_string(), io::Error::other("no addresses")))?;
    let map = |a: SocketAddr| {
        move |e: io::Error| {
            if e.kind() == io::ErrorKind::AddrInUse {
                BindError::InUse(a)
            } else {
                BindError::Io(a, e)
            }
        }
    };
    let probe = socket_for(addr, false).map_err(map(addr))?;
    probe.bind(&addr.into()).map_err(map(addr))?;
    let bound = probe
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .unwrap_or(addr);
    let mut listeners = Vec::with_capacity(n);
    for _ in 0..n.max(1) {
        let s = socket_for(bound, true).map_err(map(bound))?;
        s.bind(&bound.into()).map_err(map(bound))?;
        s.listen(1024).map_err(map(bound))?;
        listeners.push(mio::net::TcpListener::from_std(s.into()));
    }
    drop(probe);
    Ok((listeners, bound))
}

/// Starts one worker thread per listener.
pub fn spawn_workers(
    shared: &Arc<Shared>,
    listeners: Vec<mio::net::TcpListener>,
) -> io::Result<Vec<JoinHandle<()>>> {
    let mut handles = Vec::with_capacity(listeners.len());
    for (i, l) in listeners.into_iter().enumerate() {
        let mut w = Worker::new(i, l, shared.clone())?;
        handles.push(
            std::thread::Builder::new()
                .name(format!("worker-{i}"))
                .spawn(move || w.run())?,
        );
    }
    Ok(handles)
}

/// INFO lines of TLS on the client port (`tls_enabled:0` alone when off).
pub struct TlsInfo;

impl crate::state::InfoSection for TlsInfo {
    fn write_info(&self, shared: &Shared, _db: crate::store::Db<'_>, s: &mut String) {
        match &shared.tls {
            None => s.push_str("tls_enabled:0\r\n"),
            Some(a) => {
                s.push_str("tls_enabled:1\r\n");
                a.write_info(s);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_bind_on_a_busy_port_fails_but_workers_share_it() {
        let (ls, addr) = bind("127.0.0.1", 0, 2).unwrap();
        assert_eq!(ls.len(), 2);
        assert_ne!(addr.port(), 0);
        match bind("127.0.0.1", addr.port(), 1) {
            Err(BindError::InUse(a)) => assert_eq!(a, addr),
            other => panic!("expected InUse, got {other:?}"),
        }
        drop(ls);
        // The port is free again at once (SO_REUSEADDR).
        let (_ls, again) = bind("127.0.0.1", addr.port(), 1).unwrap();
        assert_eq!(again, addr);
    }
}
