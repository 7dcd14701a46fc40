//! A small blocking RESP2 client: anti-entropy rounds, tests, benches and
//! tools use it to talk to a node's client port.
//!
//! * Requests are arrays of bulk strings (binary-safe), buffered by
//!   [`Client::send`] and written by [`Client::flush`], so several can be
//!   pipelined; [`Client::call`] is one request and its reply.
//! * Replies ([`Reply`]) are read by [`read_reply`], a streaming parser over
//!   any [`BufRead`]: simple strings, errors, integers, bulk strings, nulls
//!   and (nested) arrays. It reads exactly one reply, never past it, and it
//!   is linear in the reply's size however the bytes are split across
//!   reads.
//! * Nothing a peer sends can make it allocate without bound: bulk strings,
//!   array lengths, nesting depth, header lines and the whole reply are
//!   capped by [`Limits`], checked on the declared sizes *before* anything
//!   is allocated for them (array capacity is reserved in small steps).
//! * Every socket operation has a timeout: connecting, each write, and each
//!   read (the I/O timeout, shortened to an optional overall deadline set
//!   with [`Client::set_deadline`]), so a peer that stalls or trickles bytes
//!   costs at most that long.
//!
//! The client counts the bytes it sends and receives (anti-entropy reports
//! them). With [`Options::tls`] it speaks TLS (rustls; the handshake runs
//! on the first write), verifying the server's certificate for the host
//! name or IP it connected to.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A RESP2 reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+text`.
    Simple(String),
    /// `-text` (the server's error message, without the `-`).
    Error(String),
    /// `:n`.
    Integer(i64),
    /// `$n` followed by n bytes.
    Bulk(Vec<u8>),
    /// `$-1`.
    Nil,
    /// `*n` followed by n replies.
    Array(Vec<Reply>),
    /// `*-1`.
    NilArray,
}

impl Reply {
    /// `Err(ClientError::Server)` for an error reply, the reply otherwise.
    pub fn into_result(self) -> Result<Reply, ClientError> {
        match self {
            Reply::Error(e) => Err(ClientError::Server(e)),
            r => Ok(r),
        }
    }

    /// A short description of the reply's kind, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Reply::Simple(_) => "simple string",
            Reply::Error(_) => "error",
            Reply::Integer(_) => "integer",
            Reply::Bulk(_) => "bulk string",
            Reply::Nil => "null bulk string",
            Reply::Array(_) => "array",
            Reply::NilArray => "null array",
        }
    }
}

/// Bounds on what one reply may contain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest bulk string.
    pub max_bulk: usize,
    /// Most elements of one array.
    pub max_array: usize,
    /// Deepest array nesting (a top-level array is depth 1).
    pub max_depth: usize,
    /// Most bytes of one whole reply on the wire.
    pub max_reply: usize,
    /// Longest header, simple-string or error line (without CRLF).
    pub max_line: usize,
}

impl Default for Limits {
    /// Room for the largest value a node stores and the largest internal
    /// anti-entropy reply (budget plus one bucket or entry).
    fn default() -> Self {
        Limits {
            max_bulk: 16 << 20,
            max_array: 1 << 22,
            max_depth: 8,
            max_reply: 64 << 20,
            max_line: 64 << 10,
        }
    }
}

/// Connection settings.
#[derive(Debug, Clone)]
pub struct Options {
    /// Bound on establishing the TCP connection (per resolved address).
    pub connect_timeout: Duration,
    /// Bound on each blocking read or write.
    pub io_timeout: Duration,
    /// Reply limits.
    pub limits: Limits,
    /// Connect with TLS (the server name checked is the host connected to).
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            connect_timeout: Duration::from_secs(2),
            io_timeout: Duration::from_secs(5),
            limits: Limits::default(),
            tls: None,
        }
    }
}

/// Client errors.
#[derive(Debug)]
pub enum ClientError {
    /// No connection could be made to `addr` (`host:port`).
    Connect { addr: String, source: io::Error },
    /// A read or write did not complete in time.
    Timeout,
    /// The peer closed the connection (possibly mid-reply).
    Closed,
    /// Another socket error.
    Io(io::Error),
    /// The peer sent something that is not RESP2.
    Protocol(String),
    /// The reply exceeds a [`Limits`] bound.
    TooLarge(String),
    /// The server answered with an error reply.
    Server(String),
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::Connect { addr, source } => write!(f, "connect {addr}: {source}"),
            ClientError::Timeout => f.write_str("timed out"),
            ClientError::Closed => f.write_str("connection closed by peer"),
            ClientError::Io(e) => write!(f, "I/O error: {e}"),
            ClientError::Protocol(m) => write!(f, "protocol error: {m}"),
            ClientError::TooLarge(m) => write!(f, "reply too large: {m}"),
            ClientError::Server(m) => write!(f, "server error: {m}"),
        }
    }
}

impl std::error::Error for ClientError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ClientError::Connect { source, .. } => Some(source),
            ClientError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for ClientError {
    fn from(e: io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::UnexpectedEof => ClientError::Closed,
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => ClientError::Timeout,
            _ => ClientError::Io(e),
        }
    }
}

// ---- reply parsing ---------------------------------------------------------

struct Reader<'r, R> {
    r: &'r mut R,
    limits: &'r Limits,
    /// Wire bytes still allowed for this reply.
    budget: usize,
}

impl<R: BufRead> Reader<'_, R> {
    fn charge(&mut self, n: usize) -> Result<(), ClientError> {
        self.budget = self.budget.checked_sub(n).ok_or_else(|| {
            ClientError::TooLarge(format!(
                "more than {} bytes in one reply",
                self.limits.max_reply
            ))
        })?;
        Ok(())
    }

    /// One CRLF-terminated line, without the CRLF.
    fn line(&mut self) -> Result<Vec<u8>, ClientError> {
        let mut line = Vec::new();
        loop {
            let avail = self.r.fill_buf()?;
            if avail.is_empty() {
                return Err(ClientError::Closed);
            }
            let (take, done) = match memchr::memchr(b'\n', avail) {
                Some(i) => (i + 1, true),
                None => (avail.len(), false),
            };
            if line.len() + take > self.limits.max_line + 2 {
                return Err(ClientError::TooLarge(format!(
                    "line longer than {} bytes",
                    self.limits.max_line
                )));
            }
            line.extend_from_slice(&avail[..take]);
            self.r.consume(take);
            if done {
                break;
            }
        }
        self.charge(line.len())?;
        if line.len() < 2 || line[line.len() - 2] != b'\r' {
            return Err(ClientError::Protocol("line not terminated by CRLF".into()));
        }
        line.truncate(line.len() - 2);
        Ok(line)
    }

    fn int(line: &[u8]) -> Result<i64, ClientError> {
        crate::protocol::parse_int(line).ok_or_else(|| {
            ClientError::Protocol(format!(
                "invalid integer {:?}",
                String::from_utf8_lossy(&line[..line.len().min(32)])
            ))
        })
    }

    fn value(&mut self, depth: usize) -> Result<Reply, ClientError> {
        let line = self.line()?;
        let Some((&kind, rest)) = line.split_first() else {
            return Err(ClientError::Protocol("empty line".into()));
        };
        match kind {
            b'+' => Ok(Reply::Simple(String::from_utf8_lossy(rest).into_owned())),
            b'-' => Ok(Reply::Error(String::from_utf8_lossy(rest).into_owned())),
            b':' => Ok(Reply::Integer(Self::int(rest)?)),
            b'$' => {
                let n = Self::int(rest)?;
                if n == -1 {
                    return Ok(Reply::Nil);
                }
                let n = usize::try_from(n)
                    .map_err(|_| ClientError::Protocol(format!("invalid bulk length {n}")))?;
                if n > self.limits.max_bulk {
                    return Err(ClientError::TooLarge(format!(
                        "bulk string of {n} bytes (limit {})",
                        self.limits.max_bulk
                    )));
                }
                self.charge(n + 2)?;
                let mut data = vec![0; n + 2];
                self.r.read_exact(&mut data)?;
                if !data.ends_with(b"\r\n") {
                    return Err(ClientError::Protocol(
                        "bulk string not terminated by CRLF".into(),
                    ));
                }
                data.truncate(n);
                Ok(Reply::Bulk(data))
            }
            b'*' => {
                let n = Self::int(rest)?;
                if n == -1 {
                    return Ok(Reply::NilArray);
                }
                let n = usize::try_from(n)
                    .map_err(|_| ClientError::Protocol(format!("invalid array length {n}")))?;
                if n > self.limits.max_array {
                    return Err(ClientError::TooLarge(format!(
                        "array of {n} elements (limit {})",
                        self.limits.max_array
                    )));
                }
                if depth >= self.limits.max_depth {
                    return Err(ClientError::TooLarge(format!(
                        "arrays nested deeper than {}",
                        self.limits.max_depth
                    )));
                }
                // Each element takes at least 3 wire bytes (`:0` CRLF has
                // 4): a length the budget cannot hold is refused up front.
                if n.saturating_mul(3) > self.budget {
                    return Err(ClientError::TooLarge(format!(
                        "array of {n} elements exceeds the reply budget"
                    )));
                }
                let mut items = Vec::with_capacity(n.min(1024));
                for _ in 0..n {
                    items.push(self.value(depth + 1)?);
                }
                Ok(Reply::Array(items))
            }
            other => Err(ClientError::Protocol(format!(
                "unexpected reply type byte 0x{other:02x}"
            ))),
        }
    }
}

/// Reads exactly one reply from `r`.
pub fn read_reply<R: BufRead>(r: &mut R, limits: &Limits) -> Result<Reply, ClientError> {
    Reader {
        r,
        limits,
        budget: limits.max_reply,
    }
    .value(0)
}

/// `host:port`, with an IPv6 host in brackets (`[::1]:7379`).
pub fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Appends a request (array of bulk strings) to `out`.
pub use crate::protocol::reply::request as encode_request;

// ---- the connection --------------------------------------------------------

/// The socket (and its TLS session) plus byte counters and the read
/// deadline.
struct Conn {
    stream: TcpStream,
    tls: Option<Box<rustls::ClientConnection>>,
    io_timeout: Duration,
    deadline: Option<Instant>,
    read_timeout: Option<Duration>,
    received: u64,
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut timeout = self.io_timeout;
        if let Some(d) = self.deadline {
            let left = d.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::ErrorKind::TimedOut.into());
            }
            timeout = timeout.min(left);
        }
        if self.read_timeout != Some(timeout) {
            self.stream.set_read_timeout(Some(timeout))?;
            self.read_timeout = Some(timeout);
        }
        let n = match &mut self.tls {
            None => self.stream.read(buf)?,
            Some(tls) => rustls::Stream::new(tls.as_mut(), &mut self.stream).read(buf)?,
        };
        self.received += n as u64;
        Ok(n)
    }
}

impl Conn {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match &mut self.tls {
            None => self.stream.write_all(buf),
            Some(tls) => {
                let mut s = rustls::Stream::new(tls.as_mut(), &mut self.stream);
                s.write_all(buf)?;
                s.flush()
            }
        }
    }
}

/// A blocking RESP2 connection (see the module docs).
pub struct Client {
    reader: BufReader<Conn>,
    wbuf: Vec<u8>,
    sent: u64,
    limits: Limits,
}

impl Client {
    /// Connects to `host:port`, trying each resolved address in turn.
    pub fn connect(host: &str, port: u16, opts: &Options) -> Result<Client, ClientError> {
        let name = host_port(host, port);
        let fail = |source| ClientError::Connect {
            addr: name.clone(),
            source,
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let addrs: Vec<SocketAddr> = (host, port).to_socket_addrs().map_err(fail)?.collect();
        let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, opts.connect_timeout) {
                Ok(s) => {
                    let mut c = Self::from_stream(s, opts).map_err(fail)?;
                    if let Some(cfg) = &opts.tls {
                        let name = rustls::pki_types::ServerName::try_from(host.to_string())
                            .map_err(|e| fail(io::Error::new(io::ErrorKind::InvalidInput, e)))?;
                        let session = rustls::ClientConnection::new(cfg.clone(), name)
                            .map_err(|e| fail(io::Error::other(e)))?;
                        c.reader.get_mut().tls = Some(Box::new(session));
                    }
                    return Ok(c);
                }
                Err(e) => last = e,
            }
        }
        Err(fail(last))
    }

    /// Wraps an already connected stream.
    pub fn from_stream(stream: TcpStream, opts: &Options) -> io::Result<Client> {
        stream.set_nodelay(true)?;
        stream.set_write_timeout(Some(opts.io_timeout))?;
        Ok(Client {
            reader: BufReader::with_capacity(
                64 << 10,
                Conn {
                    stream,
                    tls: None,
                    io_timeout: opts.io_timeout,
                    deadline: None,
                    read_timeout: None,
                    received: 0,
                },
            ),
            wbuf: Vec::new(),
            sent: 0,
            limits: opts.limits,
        })
    }

    /// Authenticates as `user` with `password` (`AUTH user password`).
    /// The password is sent as is; it is never part of an error.
    pub fn auth(&mut self, user: &str, password: &str) -> Result<(), ClientError> {
        match self.call(&[b"AUTH", user.as_bytes(), password.as_bytes()])? {
            Reply::Simple(_) => Ok(()),
            Reply::Error(e) => Err(ClientError::Server(e)),
            other => Err(ClientError::Server(format!(
                "unexpected reply to AUTH: {}",
                other.kind()
            ))),
        }
    }

    /// Sets (or clears) a deadline for every later read: each read waits at
    /// most until then, even if the I/O timeout is longer.
    pub fn set_deadline(&mut self, deadline: Option<Instant>) {
        self.reader.get_mut().deadline = deadline;
    }

    /// Buffers one request.
    pub fn send(&mut self, args: &[&[u8]]) {
        encode_request(&mut self.wbuf, args);
    }

    /// Writes every buffered request.
    pub fn flush(&mut self) -> Result<(), ClientError> {
        let conn = self.reader.get_mut();
        let res = conn.write_all(&self.wbuf);
        self.sent += self.wbuf.len() as u64;
        self.wbuf.clear();
        res.map_err(ClientError::from)
    }

    /// Reads the next reply.
    pub fn read(&mut self) -> Result<Reply, ClientError> {
        read_reply(&mut self.reader, &self.limits)
    }

    /// Sends one request and reads its reply (error replies are returned as
    /// [`Reply::Error`], not as `Err`).
    pub fn call(&mut self, args: &[&[u8]]) -> Result<Reply, ClientError> {
        self.send(args);
        self.flush()?;
        self.read()
    }

    /// Bytes written so far.
    pub fn bytes_sent(&self) -> u64 {
        self.sent
    }

    /// Bytes read from the socket so far.
    pub fn bytes_received(&self) -> u64 {
        self.reader.get_ref().received
    }

    /// A handle that can abort this connection from another thread
    /// ([`TcpStream::shutdown`] makes a blocked read return at once).
    pub fn abort_handle(&self) -> io::Result<TcpStream> {
        self.reader.get_ref().stream.try_clone()
    }

    /// Closes both directions of the connection.
    pub fn close(&self) {
        let _ = self.reader.get_ref().stream.shutdown(Shutdown::Both);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8]) -> Result<Reply, ClientError> {
        read_reply(&mut &bytes[..], &Limits::default())
    }

    /// A reader that hands out its data in the given pieces, one per read.
    struct Pieces(Vec<Vec<u8>>);

    impl Read for Pieces {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let Some(first) = self.0.first_mut() else {
                return Ok(0);
            };
            let n = first.len().min(buf.len());
            buf[..n].copy_from_slice(&first[..n]);
            first.drain(..n);
            if first.is_empty() {
                self.0.remove(0);
            }
            Ok(n)
        }
    }

    const SAMPLE: &[u8] = b"*7\r\n+OK\r\n-ERR boom\r\n:-42\r\n$5\r\na\r\nb\0\r\n$-1\r\n*-1\r\n\
        *2\r\n*1\r\n$0\r\n\r\n*0\r\n";

    fn sample() -> Reply {
        Reply::Array(vec![
            Reply::Simple("OK".into()),
            Reply::Error("ERR boom".into()),
            Reply::Integer(-42),
            Reply::Bulk(b"a\r\nb\0".to_vec()),
            Reply::Nil,
            Reply::NilArray,
            Reply::Array(vec![
                Reply::Array(vec![Reply::Bulk(vec![])]),
                Reply::Array(vec![]),
            ]),
        ])
    }

    #[test]
    fn parses_every_kind_and_nesting() {
        assert_eq!(parse(SAMPLE).unwrap(), sample());
    }

    #[test]
    fn every_split_point_gives_the_same_reply() {
        for cut in 0..=SAMPLE.len() {
            let pieces = [&SAMPLE[..cut], &SAMPLE[cut..]];
            let src = Pieces(
                pieces
                    .iter()
                    .filter(|p| !p.is_empty())
                    .map(|p| p.to_vec())
                    .collect(),
            );
            let mut r = BufReader::with_capacity(4, src);
            assert_eq!(
                read_reply(&mut r, &Limits::default()).unwrap(),
                sample(),
                "cut {cut}"
            );
        }
        let bytes = SAMPLE.iter().map(|&b| vec![b]).collect();
        let mut r = BufReader::with_capacity(1, Pieces(bytes));
        assert_eq!(read_reply(&mut r, &Limits::default()).unwrap(), sample());
    }

    #[test]
    fn every_truncation_is_an_error_not_a_value() {
        for cut in 0..SAMPLE.len() {
            let err = parse(&SAMPLE[..cut]).unwrap_err();
            assert!(matches!(err, ClientError::Closed), "cut {cut}: {err:?}");
        }
    }

    #[test]
    fn reads_exactly_one_reply_of_a_pipeline() {
        let two = b"+A\r\n$1\r\nB\r\n";
        let mut r = BufReader::new(&two[..]);
        let l = Limits::default();
        assert_eq!(read_reply(&mut r, &l).unwrap(), Reply::Simple("A".into()));
        assert_eq!(read_reply(&mut r, &l).unwrap(), Reply::Bulk(b"B".to_vec()));
        assert!(matches!(read_reply(&mut r, &l), Err(ClientError::Closed)));
    }

    #[test]
    fn garbage_is_a_protocol_error() {
        for bad in [
            &b"?\r\n"[..],
            b"\r\n",
            b"+OK\n",
            b":12x\r\n",
            b"$-2\r\n",
            b"$3\r\nabcd\r\n",
            b"*-5\r\n",
            b"*1\r\n!\r\n",
            b"$ 1\r\na\r\n",
        ] {
            let e = parse(bad).unwrap_err();
            assert!(
                matches!(e, ClientError::Protocol(_)),
                "{:?}: {e:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn limits_are_checked_before_allocating() {
        let tight = Limits {
            max_bulk: 4,
            max_array: 3,
            max_depth: 2,
            max_reply: 64,
            max_line: 8,
        };
        let p = |b: &[u8]| read_reply(&mut &b[..], &tight);
        assert!(matches!(
            p(b"$5\r\nabcde\r\n"),
            Err(ClientError::TooLarge(_))
        ));
        assert!(p(b"$4\r\nabcd\r\n").is_ok());
        // A huge declared length is refused without waiting for the data.
        assert!(matches!(
            p(b"$999999999999\r\n"),
            Err(ClientError::TooLarge(_))
        ));
        assert!(matches!(p(b"*4\r\n"), Err(ClientError::TooLarge(_))));
        assert!(matches!(
            p(b"*1\r\n*1\r\n*1\r\n:1\r\n"),
            Err(ClientError::TooLarge(_))
        ));
        assert!(p(b"*1\r\n*1\r\n:1\r\n").is_ok());
        assert!(matches!(
            p(b"+123456789\r\n"),
            Err(ClientError::TooLarge(_))
        ));
        let big = Limits {
            max_array: usize::MAX,
            ..tight
        };
        assert!(matches!(
            read_reply(&mut &b"*1000000000\r\n"[..], &big),
            Err(ClientError::TooLarge(_))
        ));
        // The whole-reply budget spans elements.
        let many = b"*3\r\n$4\r\nabcd\r\n$4\r\nabcd\r\n$4\r\nabcd\r\n";
        let small = Limits {
            max_reply: 20,
            ..tight
        };
        assert!(matches!(
            read_reply(&mut &many[..], &small),
            Err(ClientError::TooLarge(_))
        ));
    }

    #[test]
    fn encodes_binary_safe_requests() {
        let mut out = Vec::new();
        encode_request(&mut out, &[b"SET", b"k\r\n", b""]);
        assert_eq!(out, b"*3\r\n$3\r\nSET\r\n$3\r\nk\r\n\r\n$0\r\n\r\n");
    }

    #[test]
    fn timeouts_and_eof_map_to_their_errors() {
        assert!(matches!(
            ClientError::from(io::Error::from(io::ErrorKind::WouldBlock)),
            ClientError::Timeout
        ));
        assert!(matches!(
            ClientError::from(io::Error::from(io::ErrorKind::UnexpectedEof)),
            ClientError::Closed
        ));
    }

    #[test]
    fn talks_to_a_socket_with_timeouts() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut buf = [0u8; 64];
            let n = s.read(&mut buf).unwrap();
            assert_eq!(&buf[..n], b"*1\r\n$4\r\nPING\r\n");
            s.write_all(b"+PONG\r\n").unwrap();
            // Then stall (read without answering until the client closes):
            // the next call must time out.
            while s.read(&mut buf).is_ok_and(|n| n > 0) {}
        });
        let opts = Options {
            io_timeout: Duration::from_millis(100),
            ..Options::default()
        };
        let mut c = Client::connect("127.0.0.1", port, &opts).unwrap();
        assert_eq!(c.call(&[b"PING"]).unwrap(), Reply::Simple("PONG".into()));
        assert_eq!((c.bytes_sent(), c.bytes_received()), (14, 7));
        assert!(matches!(c.call(&[b"PING"]), Err(ClientError::Timeout)));
        c.close();
        server.join().unwrap();
    }

    #[test]
    fn connect_failure_names_the_address() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let e = Client::connect("127.0.0.1", port, &Options::default())
            .err()
            .unwrap();
        assert!(
            e.to_string()
                .starts_with(&format!("connect 127.0.0.1:{port}"))
        );
    }
}
