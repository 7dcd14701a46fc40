//! A real mosquitto per test, on an ephemeral port, plus helpers for
//! replicated nodes: config files, INFO polling, a raw MQTT publisher.
//!
//! Port choice: bind 127.0.0.1:0, release, start mosquitto on that port and
//! read its log until it says "running" (listener open) or exits (port
//! taken meanwhile: try another). No sleeps, no fixed ports.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::certs::Certs;
use super::{DEADLINE, Server, TempDir, free_port, info_fields, wait_until};

/// Path of the mosquitto binary.
pub fn mosquitto_bin() -> &'static str {
    const SBIN: &str = "/usr/sbin/mosquitto";
    if std::path::Path::new(SBIN).exists() {
        SBIN
    } else {
        "mosquitto"
    }
}

/// A running mosquitto.
pub struct Broker {
    child: Option<Child>,
    pub port: u16,
    dir: TempDir,
    /// Extra mosquitto.conf lines.
    extra: String,
    /// Files the configuration refers to (password file).
    keep: Option<TempDir>,
}

impl Broker {
    /// Starts mosquitto on a fresh ephemeral port.
    pub fn start() -> Broker {
        Broker::start_with("")
    }

    /// Starts mosquitto on a fresh ephemeral port with extra config lines.
    pub fn start_with(extra: &str) -> Broker {
        let mut last = String::new();
        for _ in 0..10 {
            match Broker::start_on_with(free_port(), extra) {
                Ok(b) => return b,
                Err(e) if e.starts_with("cannot run") => panic!(
                    "{e}\nThe replication tests need a real MQTT broker: \
                     `apt-get install mosquitto` (or run `.ci/run`, which installs it)."
                ),
                Err(e) => last = e,
            }
        }
        panic!("could not start mosquitto on any port; last attempt: {last}");
    }

    /// Starts mosquitto with a second listener speaking TLS (the server
    /// certificate of `certs`) and a password file holding `user`/`password`
    /// (made with `mosquitto_passwd`); anonymous clients are refused.
    /// Returns the broker and its TLS port.
    pub fn start_tls(certs: &Certs, user: &str, password: &str) -> (Broker, u16) {
        let dir = TempDir::new("mosquitto-pw");
        let pw = dir.path().join("passwd");
        let st = Command::new("mosquitto_passwd")
            .args(["-c", "-b"])
            .arg(&pw)
            .args([user, password])
            .status()
            .expect("the TLS broker test needs mosquitto_passwd");
        assert!(st.success(), "mosquitto_passwd failed");
        let (mut b, tls_port) = Broker::start_with_listener(|tls_port| {
            format!(
                "allow_anonymous false\npassword_file {}\n\
                 listener {tls_port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\n",
                pw.display(),
                certs.ca.display(),
                certs.server_cert.display(),
                certs.server_key.display()
            )
        });
        b.keep = Some(dir);
        (b, tls_port)
    }

    /// Starts mosquitto with the extra configuration `conf(port)`, which
    /// opens a second listener on `port` (a fresh ephemeral port per
    /// attempt). Returns the broker and that port.
    pub fn start_with_listener(conf: impl Fn(u16) -> String) -> (Broker, u16) {
        let mut last = String::new();
        for _ in 0..10 {
            let port = free_port();
            // `user root`: the test files are root's; mosquitto would
            // otherwise drop to its own user before reading them.
            let extra = format!("user root\n{}", conf(port));
            match Broker::start_on_with(free_port(), &extra) {
                Ok(b) => return (b, port),
                Err(e) => last = e,
            }
        }
        panic!("could not start mosquitto with a second listener; last attempt: {last}");
    }

    /// Starts mosquitto on `port`; Err if it cannot listen there.
    pub fn start_on(port: u16) -> Result<Broker, String> {
        Broker::start_on_with(port, "")
    }

    fn start_on_with(port: u16, extra: &str) -> Result<Broker, String> {
        let mut b = Broker {
            child: None,
            port,
            dir: TempDir::new("mosquitto"),
            extra: extra.to_string(),
            keep: None,
        };
        b.launch()?;
        Ok(b)
    }

    fn launch(&mut self) -> Result<(), String> {
        let conf = self.dir.file(
            "mosquitto.conf",
            &format!(
                "listener {} 127.0.0.1\nallow_anonymous true\npersistence false\n\
                 log_dest stderr\nlog_type error\nlog_type warning\nlog_type notice\n\
                 log_type information\n{}\n",
                self.port, self.extra
            ),
        );
        let mut child = Command::new(mosquitto_bin())
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", mosquitto_bin()))?;
        // stderr: unbuffered, so "running" arrives as soon as it is logged.
        let mut out = BufReader::new(child.stderr.take().unwrap());
        let mut log = String::new();
        let mut line = String::new();
        loop {
            line.clear();
            if out.read_line(&mut line).unwrap_or(0) == 0 {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("mosquitto exited:\n{log}"));
            }
            log.push_str(&line);
            if line.contains(" running") {
                break;
            }
        }
        // Keep draining its output so it never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut sink = Vec::new();
            let _ = out.read_to_end(&mut sink);
        });
        self.child = Some(child);
        Ok(())
    }

    /// Kills the broker (SIGKILL): connections drop without a goodbye.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends a signal to the broker (`STOP` freezes it: its sockets stay
    /// open and nothing is delivered until `CONT`).
    pub fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("broker running").id();
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &pid.to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig} {pid} failed");
    }

    /// Starts the broker again on the same port.
    pub fn restart(&mut self) {
        self.kill();
        let mut last = String::new();
        let ok = wait_until(DEADLINE, || match self.launch() {
            Ok(()) => true,
            Err(e) => {
                last = e;
                false
            }
        });
        assert!(
            ok,
            "mosquitto did not restart on port {}: {last}",
            self.port
        );
    }

    /// `tcp://127.0.0.1:<port>`.
    pub fn address(&self) -> String {
        format!("tcp://127.0.0.1:{}", self.port)
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A node's config directory (kept alive as long as the node).
pub struct Node {
    pub server: Server,
    pub id: String,
    _dir: TempDir,
}

impl std::ops::Deref for Node {
    type Target = Server;
    fn deref(&self) -> &Server {
        &self.server
    }
}

impl std::ops::DerefMut for Node {
    fn deref_mut(&mut self) -> &mut Server {
        &mut self.server
    }
}

/// Starts a node with the nested layout: `node_id = id`, `[mqtt]` pointing
/// at 127.0.0.1:`broker_port`, plus `extra_mqtt` lines in `[mqtt]`.
pub fn replicated_node(id: &str, broker_port: u16, extra_mqtt: &str) -> Node {
    let dir = TempDir::new(id);
    let conf = dir.file(
        "node.toml",
        &format!(
            "node_id = \"{id}\"\n[mqtt]\nbroker_address = \"tcp://127.0.0.1:{broker_port}\"\n\
             topic_prefix = \"mkv-test\"\n{extra_mqtt}\n"
        ),
    );
    node_with_config(id, dir, conf)
}

/// Starts a node from a config file inside `dir`, with one worker thread.
pub fn node_with_config(id: &str, dir: TempDir, conf: PathBuf) -> Node {
    let server = Server::start(&["--config", conf.to_str().unwrap(), "--threads", "1"]);
    Node {
        server,
        id: id.to_string(),
        _dir: dir,
    }
}

/// The node's INFO fields.
pub fn info(s: &Server) -> HashMap<String, String> {
    info_fields(&mut s.connect()).into_iter().collect()
}

/// One numeric INFO field (0 when absent).
pub fn info_u64(s: &Server, name: &str) -> u64 {
    info(s).get(name).map_or(0, |v| v.parse().unwrap())
}

/// Waits until the node is connected to the broker and subscribed.
pub fn wait_connected(s: &Server) {
    let mut last = HashMap::new();
    let ok = wait_until(DEADLINE, || {
        last = info(s);
        last.get("replication_broker_state").map(String::as_str) == Some("connected")
    });
    assert!(ok, "node never connected to the broker: {last:?}");
}

/// Sends a text command on a fresh connection and returns the first reply
/// line.
pub fn one(s: &Server, line: &str) -> String {
    let mut c = s.connect();
    super::cmd(&mut c, line)
}

/// Polls GET `key` on `s` until it answers `expected` (a whole reply line).
pub fn wait_value(s: &Server, key: &str, expected: &str) {
    let mut c = s.connect();
    let mut last = String::new();
    let ok = wait_until(DEADLINE, || {
        last = super::cmd(&mut c, &format!("GET {key}"));
        last == expected
    });
    assert!(
        ok,
        "GET {key} on {}: wanted {:.80?}, last {:.80?}",
        s.addr, expected, last
    );
}

/// Publishes raw `payloads` to `topic` at QoS 0 with a minimal hand-written
/// MQTT 3.1.1 client, and returns once the broker has processed them (it
/// closes the connection after our DISCONNECT).
pub fn mqtt_publish(port: u16, topic: &str, payloads: &[Vec<u8>]) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    let id = b"merklekv-test-publisher";
    let mut connect = vec![0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0x02, 0x00, 0x3c];
    connect.extend_from_slice(&(id.len() as u16).to_be_bytes());
    connect.extend_from_slice(id);
    s.write_all(&packet(0x10, &connect)).unwrap();
    let mut ack = [0u8; 4];
    s.read_exact(&mut ack).unwrap();
    assert_eq!(ack, [0x20, 0x02, 0x00, 0x00], "CONNACK");
    for p in payloads {
        let mut body = (topic.len() as u16).to_be_bytes().to_vec();
        body.extend_from_slice(topic.as_bytes());
        body.extend_from_slice(p);
        s.write_all(&packet(0x30, &body)).unwrap();
    }
    s.write_all(&[0xe0, 0x00]).unwrap();
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
}

fn packet(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut p = vec![kind];
    let mut n = body.len();
    loop {
        let mut b = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            b |= 0x80;
        }
        p.push(b);
        if n == 0 {
            break;
        }
    }
    p.extend_from_slice(body);
    p
}

/// Polls until `f` holds, panicking with `what` otherwise.
pub fn eventually(what: &str, f: impl FnMut() -> bool) {
    assert!(wait_until(DEADLINE, f), "timed out waiting for: {what}");
}

/// A long deadline for the slowest waits (reconnect backoff).
pub const SLOW: Duration = Duration::from_secs(20);

/// GET `key` through a buffered reader (fast for multi-megabyte values):
/// the value, or None for NOT_FOUND.
pub fn get_value(s: &Server, key: &str) -> Option<Vec<u8>> {
    let mut c = s.connect();
    c.write_all(format!("GET {key}\r\n").as_bytes()).unwrap();
    let mut r = BufReader::new(c);
    let mut line = Vec::new();
    r.read_until(b'\n', &mut line).unwrap();
    assert!(line.ends_with(b"\r\n"), "unterminated reply");
    line.truncate(line.len() - 2);
    if line == b"NOT_FOUND" {
        return None;
    }
    assert!(
        line.starts_with(b"VALUE "),
        "{:.80?}",
        String::from_utf8_lossy(&line)
    );
    Some(line[6..].to_vec())
}

/// `HASH <prefix>` (or the root for an empty prefix) on `s`.
pub fn hash(s: &Server, prefix: &str) -> String {
    one(s, format!("HASH {prefix}").trim_end())
}

/// Waits until every node reports the same HASH for `prefix`.
pub fn wait_same_hash(nodes: &[&Server], prefix: &str) {
    let mut last = Vec::new();
    let ok = wait_until(DEADLINE, || {
        last = nodes.iter().map(|n| hash(n, prefix)).collect::<Vec<_>>();
        last.windows(2).all(|w| w[0] == w[1])
    });
    assert!(ok, "nodes never converged on HASH {prefix:?}: {last:?}");
}
