//! An in-test TCP proxy whose link can be cut, stalled and healed.
//!
//! A [`Proxy`] listens on a fixed ephemeral front port and forwards every
//! connection to its current target (which can change: a restarted node
//! listens on a new port, but its peers keep the proxy's address).
//!
//! Link states ([`Link`]):
//! * `Up`: bytes flow both ways.
//! * `Reset`: every open connection is shut down at once, and new ones are
//!   accepted and closed immediately (what a crashed router or a firewall
//!   sending RSTs looks like to both ends).
//! * `Stalled`: nothing flows and nothing is closed; bytes wait in the
//!   socket buffers and new connections wait in the accept queue (a silent
//!   partition: only timeouts notice it). Healing lets everything resume.
//!
//! Threads: one accept loop, two pumps per connection. They poll the
//! state every few milliseconds (short socket timeouts), so a state change
//! takes effect within that, and dropping the proxy stops them all.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often idle threads look at the link state.
const TICK: Duration = Duration::from_millis(5);

/// The state of a proxied link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    Up,
    Reset,
    Stalled,
}

struct State {
    link: Mutex<Link>,
    target: Mutex<Option<SocketAddr>>,
    /// Open connections (both sockets), shut down on `Reset`.
    conns: Mutex<Vec<(TcpStream, TcpStream)>>,
    stop: AtomicBool,
    /// Connections forwarded so far.
    accepted: AtomicU64,
}

impl State {
    fn link(&self) -> Link {
        *self.link.lock().unwrap()
    }
}

/// A running proxy; stops when dropped.
pub struct Proxy {
    state: Arc<State>,
    /// The address clients connect to.
    pub addr: SocketAddr,
}

impl Proxy {
    /// Starts forwarding a fresh ephemeral port on 127.0.0.1 to `target`
    /// (`None`: no target yet, connections are closed at once).
    pub fn start(target: Option<SocketAddr>) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State {
            link: Mutex::new(Link::Up),
            target: Mutex::new(target),
            conns: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
            accepted: AtomicU64::new(0),
        });
        let st = state.clone();
        std::thread::spawn(move || accept_loop(listener, st));
        Proxy { state, addr }
    }

    /// Points new connections at `target`; open ones are reset (their
    /// upstream is gone anyway when the target moved).
    pub fn retarget(&self, target: Option<SocketAddr>) {
        *self.state.target.lock().unwrap() = target;
        self.reset_open();
    }

    /// Changes the link state (see the module docs).
    pub fn set(&self, link: Link) {
        *self.state.link.lock().unwrap() = link;
        if link == Link::Reset {
            self.reset_open();
        }
    }

    /// The current link state.
    pub fn link(&self) -> Link {
        self.state.link()
    }

    /// Connections forwarded so far.
    pub fn accepted(&self) -> u64 {
        self.state.accepted.load(Ordering::Relaxed)
    }

    fn reset_open(&self) {
        for (a, b) in self.state.conns.lock().unwrap().drain(..) {
            let _ = a.shutdown(Shutdown::Both);
            let _ = b.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::Relaxed);
        self.reset_open();
    }
}

fn accept_loop(listener: TcpListener, st: Arc<State>) {
    while !st.stop.load(Ordering::Relaxed) {
        if st.link() == Link::Stalled {
            std::thread::sleep(TICK);
            continue;
        }
        let client = match listener.accept() {
            Ok((c, _)) => c,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(TICK);
                continue;
            }
            Err(_) => continue,
        };
        if st.link() != Link::Up {
            let _ = client.shutdown(Shutdown::Both);
            continue;
        }
        let Some(target) = *st.target.lock().unwrap() else {
            continue;
        };
        let Ok(upstream) = TcpStream::connect_timeout(&target, Duration::from_secs(1)) else {
            // Target down: the client sees its connection closed.
            continue;
        };
        st.accepted.fetch_add(1, Ordering::Relaxed);
        let _ = client.set_nonblocking(false);
        for s in [&client, &upstream] {
            let _ = s.set_nodelay(true);
            let _ = s.set_read_timeout(Some(TICK));
        }
        let pair = (client.try_clone().unwrap(), upstream.try_clone().unwrap());
        st.conns.lock().unwrap().push(pair);
        let (c2, u2) = (client.try_clone().unwrap(), upstream.try_clone().unwrap());
        let st1 = st.clone();
        std::thread::spawn(move || pump(client, upstream, st1));
        let st2 = st.clone();
        std::thread::spawn(move || pump(u2, c2, st2));
    }
}

/// Copies `from` to `to` while the link is up; on EOF or error closes
/// both directions (the other pump then ends too).
fn pump(mut from: TcpStream, mut to: TcpStream, st: Arc<State>) {
    let mut buf = vec![0u8; 64 << 10];
    loop {
        if st.stop.load(Ordering::Relaxed) {
            break;
        }
        if st.link() == Link::Stalled {
            std::thread::sleep(TICK);
            continue;
        }
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                // A stall that starts mid-copy holds these bytes until healed.
                while st.link() == Link::Stalled && !st.stop.load(Ordering::Relaxed) {
                    std::thread::sleep(TICK);
                }
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}
