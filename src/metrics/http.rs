//! The metrics listener (`metrics.bind`): a tiny HTTP/1.1 server on its
//! own thread, never on the workers.
//!
//! One connection at a time, one request per connection (`Connection:
//! close`). Bounded in every direction: the request head is at most
//! [`MAX_HEAD`] bytes (431 past it) and must arrive within [`IO_TIMEOUT`];
//! a write blocked for [`IO_TIMEOUT`] drops the connection. Only `GET`
//! (405 otherwise, with `Allow: GET`); `/metrics` (the Prometheus text
//! format, [`super::export`]), `/health`, `/ready`; 404 for other paths;
//! 400 for a request line that is not `METHOD SP target SP HTTP/1.x`.
//!
//! The listener is bound before the store is recovered, so `/health`
//! answers while a large log replays and `/ready` says why the node is
//! not ready yet. [`Gate`] carries the node's state into the thread once
//! it exists.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token, Waker};

use crate::state::Shared;

/// Largest request head (request line and headers) read.
pub const MAX_HEAD: usize = 8192;
/// Deadline for reading a request head, and for each write.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);

/// What the metrics thread knows about the node.
pub struct Gate {
    shared: OnceLock<Arc<Shared>>,
    stop: AtomicBool,
    waker: Arc<Waker>,
}

impl Gate {
    /// The node is built and recovered: serve its metrics, stop with it.
    pub fn serve(&self, shared: &Arc<Shared>) -> io::Result<()> {
        let _ = self.shared.set(shared.clone());
        shared.shutdown.add_waker(self.waker.clone());
        self.waker.wake()
    }

    /// Stops the thread (the node failed to start, or stops).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        let _ = self.waker.wake();
    }
}

/// Errors starting the listener.
#[derive(Debug)]
pub enum HttpError {
    /// `metrics.bind` is not `host:port`.
    Address(String),
    /// Binding or starting the thread failed.
    Io(SocketAddr, io::Error),
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HttpError::Address(a) => write!(
                f,
                "metrics.bind: expected host:port (e.g. 127.0.0.1:9121), got {a:?}"
            ),
            HttpError::Io(a, e) => write!(f, "metrics.bind: cannot listen on {a}: {e}"),
        }
    }
}

impl std::error::Error for HttpError {}

/// A started listener: its address, its gate and its thread.
pub struct Listener {
    pub addr: SocketAddr,
    pub gate: Arc<Gate>,
    pub thread: std::thread::JoinHandle<()>,
}

/// Binds `bind` (`host:port`) and starts the `metrics-http` thread.
pub fn start(bind: &str) -> Result<Listener, HttpError> {
    use std::net::ToSocketAddrs;
    let addr = bind
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| HttpError::Address(bind.to_string()))?;
    let io = |e| HttpError::Io(addr, e);
    let mut listener = TcpListener::bind(addr).map_err(io)?;
    let addr = listener.local_addr().map_err(io)?;
    let poll = Poll::new().map_err(io)?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)
        .map_err(io)?;
    let gate = Arc::new(Gate {
        shared: OnceLock::new(),
        stop: AtomicBool::new(false),
        waker: Arc::new(Waker::new(poll.registry(), WAKER).map_err(io)?),
    });
    let g = gate.clone();
    let thread = std::thread::Builder::new()
        .name("metrics-http".into())
        .spawn(move || run(poll, listener, &g))
        .map_err(io)?;
    log::info!("metrics listening on http://{addr}/metrics");
    Ok(Listener { addr, gate, thread })
}

fn stopping(gate: &Gate) -> bool {
    gate.stop.load(Ordering::Acquire)
        || gate.shared.get().is_some_and(|s| s.shutdown.is_triggered())
}

fn run(mut poll: Poll, listener: TcpListener, gate: &Gate) {
    let mut events = Events::with_capacity(8);
    while !stopping(gate) {
        if let Err(e) = poll.poll(&mut events, None) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            log::error!("metrics listener: poll failed: {e}");
            return;
        }
        // Accept until the backlog is empty; one connection at a time.
        while !stopping(gate) {
            match listener.accept() {
                Ok((sock, _)) => {
                    let fd = std::os::fd::OwnedFd::from(sock);
                    let sock = TcpStream::from(fd);
                    if let Err(e) = handle(sock, gate) {
                        log::debug!("metrics request: {e}");
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    log::warn!("metrics listener: accept failed: {e}");
                    break;
                }
            }
        }
    }
}

/// A parsed request head: method and path (without the query).
#[derive(Debug, PartialEq, Eq)]
pub enum Head<'a> {
    Request {
        method: &'a str,
        path: &'a str,
    },
    /// Not an HTTP/1.x request line.
    Bad,
}

/// Parses the request line of a complete head.
pub fn parse_head(head: &[u8]) -> Head<'_> {
    let Ok(text) = std::str::from_utf8(head) else {
        return Head::Bad;
    };
    let line = text.split("\r\n").next().unwrap_or("");
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Head::Bad;
    };
    let token = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphabetic());
    if !token(method) || !target.starts_with('/') || !version.starts_with("HTTP/1.") {
        return Head::Bad;
    }
    let path = target.split(['?', '#']).next().unwrap_or(target);
    Head::Request { method, path }
}

/// The response to a head: status, reason, content type, body.
pub fn respond(
    head: Head<'_>,
    shared: Option<&Shared>,
) -> (u16, &'static str, &'static str, String) {
    const TEXT: &str = "text/plain; charset=utf-8";
    let (method, path) = match head {
        Head::Bad => return (400, "Bad Request", TEXT, "bad request\n".into()),
        Head::Request { method, path } => (method, path),
    };
    if !matches!(path, "/metrics" | "/health" | "/ready") {
        return (404, "Not Found", TEXT, "not found\n".into());
    }
    if method != "GET" {
        return (405, "Method Not Allowed", TEXT, "only GET\n".into());
    }
    match (path, shared) {
        ("/health", _) => (200, "OK", TEXT, "ok\n".into()),
        ("/ready", s) => match not_ready(s) {
            None => (200, "OK", TEXT, "ready\n".into()),
            Some(why) => (503, "Service Unavailable", TEXT, format!("{why}\n")),
        },
        (_, Some(s)) => (
            200,
            "OK",
            super::prom::CONTENT_TYPE,
            super::export::render(s),
        ),
        (_, None) => (
            503,
            "Service Unavailable",
            TEXT,
            "recovering: the store is being loaded\n".into(),
        ),
    }
}

/// Why the node is not ready, in one line; `None` when it is.
pub fn not_ready(shared: Option<&Shared>) -> Option<String> {
    let Some(s) = shared else {
        return Some("recovering: the store is being loaded".into());
    };
    if s.shutdown.is_triggered() {
        return Some("shutting down".into());
    }
    if s.outbox.is_enabled() {
        let state = s.outbox.metrics.state();
        if state != crate::replication::BrokerState::Connected {
            return Some(format!(
                "replication: broker {}:{} not connected (state {})",
                s.config.replication.broker_host,
                s.config.replication.broker_port,
                state.name()
            ));
        }
    }
    None
}

/// Reads one request head and answers it.
fn handle(mut sock: TcpStream, gate: &Gate) -> io::Result<()> {
    sock.set_nonblocking(false)?;
    sock.set_write_timeout(Some(IO_TIMEOUT))?;
    let deadline = Instant::now() + IO_TIMEOUT;
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    let complete = loop {
        if let Some(end) = find_end(&head) {
            head.truncate(end);
            break true;
        }
        if head.len() > MAX_HEAD {
            break false;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "request head timed out",
            ));
        }
        sock.set_read_timeout(Some(left))?;
        let n = sock.read(&mut buf)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "closed before a full head",
            ));
        }
        head.extend_from_slice(&buf[..n]);
    };
    let (status, reason, ctype, body) = if complete {
        respond(parse_head(&head), gate.shared.get().map(|s| &**s))
    } else {
        (
            431,
            "Request Header Fields Too Large",
            "text/plain; charset=utf-8",
            format!("request head over {MAX_HEAD} bytes\n"),
        )
    };
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if status == 405 {
        out.push_str("Allow: GET\r\n");
    }
    out.push_str("\r\n");
    out.push_str(&body);
    sock.write_all(out.as_bytes())?;
    let _ = sock.shutdown(std::net::Shutdown::Write);
    Ok(())
}

/// End of the head (after the blank line), if complete.
fn find_end(buf: &[u8]) -> Option<usize> {
    memchr::memmem::find(buf, b"\r\n\r\n").map(|i| i + 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines() {
        assert_eq!(
            parse_head(b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\n"),
            Head::Request {
                method: "GET",
                path: "/metrics"
            }
        );
        assert_eq!(
            parse_head(b"POST /ready HTTP/1.0\r\n\r\n"),
            Head::Request {
                method: "POST",
                path: "/ready"
            }
        );
        for bad in [
            &b"GARBAGE\r\n\r\n"[..],
            b"GET /metrics\r\n\r\n",
            b"GET metrics HTTP/1.1\r\n\r\n",
            b"GET /metrics HTTP/2\r\n\r\n",
            b"GET  /metrics HTTP/1.1\r\n\r\n",
            b"G3T /metrics HTTP/1.1\r\n\r\n",
            b"\xff\xfe /x HTTP/1.1\r\n\r\n",
        ] {
            assert_eq!(parse_head(bad), Head::Bad, "{bad:?}");
        }
    }

    #[test]
    fn responses_without_a_node() {
        let r = |h| respond(h, None);
        assert_eq!(r(Head::Bad).0, 400);
        let get = |path| Head::Request {
            method: "GET",
            path,
        };
        assert_eq!(r(get("/nope")).0, 404);
        assert_eq!(
            r(Head::Request {
                method: "PUT",
                path: "/metrics"
            })
            .0,
            405
        );
        assert_eq!(r(get("/health")).0, 200);
        let (status, _, _, body) = r(get("/ready"));
        assert_eq!(
            (status, body.as_str()),
            (503, "recovering: the store is being loaded\n")
        );
        assert_eq!(r(get("/metrics")).0, 503);
        assert_eq!(find_end(b"a\r\n\r\nb"), Some(5));
        assert_eq!(find_end(b"a\r\n"), None);
    }
}
