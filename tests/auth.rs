//! Users, passwords and roles against the real binary (docs/protocol.md
//! §16): NOAUTH / WRONGPASS / NOPERM in both protocols, every role against
//! every command class, the cap on failed attempts, protected mode,
//! redis-cli / redis-benchmark / redis-py with passwords, and two
//! password-protected nodes synchronising.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{DEADLINE, Server, TempDir, cmd, python_has, read_line, wait_until};

/// A node whose `default` password is `adminpw`, with users `ro`
/// (readonly, password `ropw`), `rw` (readwrite, given by its SHA-256)
/// and `ad` (admin), at most 3 failed attempts per connection.
fn secured(dir: &TempDir) -> Server {
    let conf = dir.file(
        "node.toml",
        &format!(
            "[security]\nrequirepass = \"adminpw\"\nmax_auth_failures = 3\n\n\
             [[security.users]]\nname = \"ro\"\npassword = \"ropw\"\nrole = \"readonly\"\n\n\
             [[security.users]]\nname = \"rw\"\npassword_sha256 = \"{}\"\nrole = \"readwrite\"\n\n\
             [[security.users]]\nname = \"ad\"\npassword = \"adpw\"\nrole = \"admin\"\n",
            sha256_hex("rwpw")
        ),
    );
    Server::start(&["--config", conf.to_str().unwrap(), "--threads", "1"])
}

/// SHA-256 in hex through `sha256sum` (the test does not reuse the
/// server's own code for the digest it checks).
fn sha256_hex(s: &str) -> String {
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("sha256sum");
    child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8(out.stdout).unwrap()[..64].to_string()
}

fn req(args: &[&str]) -> Vec<u8> {
    let mut r = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        r.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
    }
    r
}

/// Sends one RESP request and returns the first reply line.
fn resp(s: &mut TcpStream, args: &[&str]) -> String {
    s.write_all(&req(args)).unwrap();
    read_line(s)
}

/// A RESP connection authenticated as `user`.
fn login(srv: &Server, user: &str, pass: &str) -> TcpStream {
    let mut s = srv.connect();
    assert_eq!(resp(&mut s, &["AUTH", user, pass]), "+OK");
    s
}

fn noperm(user: &str, cmd: &str) -> String {
    format!("-NOPERM User {user} has no permissions to run the '{cmd}' command")
}

/// INFO field `name` read with the admin password.
fn info_field(srv: &Server, name: &str) -> String {
    let mut s = srv.connect();
    assert_eq!(cmd(&mut s, "AUTH adminpw"), "OK");
    common::info_fields(&mut s)
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
        .unwrap_or_default()
}

#[test]
fn nothing_but_auth_before_authenticating() {
    let dir = TempDir::new("auth-noauth");
    let srv = secured(&dir);
    let mut s = srv.connect();
    for args in [
        &["GET", "k"][..],
        &["SET", "k", "v"],
        &["PING"],
        &["INFO"],
        &["FLUSHDB"],
        &["MKV.ROOT"],
        &["SHUTDOWN"],
        &["CLIENT", "LIST"],
    ] {
        assert_eq!(
            resp(&mut s, args),
            "-NOAUTH Authentication required.",
            "{args:?}"
        );
    }
    assert!(resp(&mut s, &["HELLO", "3"]).starts_with("-NOAUTH HELLO must be called"));
    assert_eq!(
        resp(&mut s, &["AUTH", "wrong"]),
        "-WRONGPASS invalid username-password pair or user is disabled."
    );
    assert_eq!(
        resp(&mut s, &["AUTH", "ro", "adminpw"]),
        "-WRONGPASS invalid username-password pair or user is disabled."
    );
    assert_eq!(resp(&mut s, &["AUTH", "adminpw"]), "+OK");
    assert_eq!(resp(&mut s, &["SET", "k", "v"]), "+OK");
    assert_eq!(resp(&mut s, &["GET", "k"]), "$1");
    // QUIT works before authenticating.
    let mut q = srv.connect();
    assert_eq!(resp(&mut q, &["QUIT"]), "+OK");

    // The text protocol: the same codes after ERROR.
    let mut t = srv.connect();
    assert_eq!(cmd(&mut t, "GET k"), "ERROR NOAUTH Authentication required");
    assert_eq!(
        cmd(&mut t, "AUTH nope"),
        "ERROR WRONGPASS invalid username-password pair or user is disabled"
    );
    assert_eq!(cmd(&mut t, "AUTH ro ropw"), "OK");
    assert_eq!(cmd(&mut t, "GET k"), "VALUE v");
    assert_eq!(
        cmd(&mut t, "SET k w"),
        "ERROR NOPERM User ro has no permissions to run the 'set' command"
    );
    assert_eq!(cmd(&mut t, "AUTH adminpw"), "OK");
    assert_eq!(cmd(&mut t, "SET k w"), "OK");

    // Counted in INFO (two RESP failures, one text failure).
    assert_eq!(info_field(&srv, "auth_enabled"), "1");
    assert_eq!(info_field(&srv, "auth_failures"), "3");
    assert_eq!(info_field(&srv, "auth_noauth_refusals"), "10");
    assert_eq!(info_field(&srv, "auth_noperm_refusals"), "1");
}

#[test]
fn each_role_against_each_command_class() {
    let dir = TempDir::new("auth-roles");
    let srv = secured(&dir);
    // (request, lower-case name, class): 0 read, 1 write, 2 admin.
    let sync_target = format!("{}", srv.addr.port());
    let cases: Vec<(Vec<&str>, &str, u8)> = vec![
        (vec!["GET", "k"], "get", 0),
        (vec!["MGET", "k", "j"], "mget", 0),
        (vec!["EXISTS", "k"], "exists", 0),
        (vec!["SCAN", "0"], "scan", 0),
        (vec!["KEYS", "*"], "keys", 0),
        (vec!["DBSIZE"], "dbsize", 0),
        (vec!["TTL", "k"], "ttl", 0),
        (vec!["HASH"], "hash", 0),
        (vec!["PING"], "ping", 0),
        (vec!["ECHO", "x"], "echo", 0),
        (vec!["INFO"], "info", 0),
        (vec!["SET", "k", "v"], "set", 1),
        (vec!["DEL", "j"], "del", 1),
        (vec!["INCR", "n"], "incr", 1),
        (vec!["APPEND", "k", "x"], "append", 1),
        (vec!["MSET", "a", "1"], "mset", 1),
        (vec!["CONFIG", "GET", "save"], "config", 2),
        (vec!["CONFIG", "SET", "maxmemory", "0"], "config", 2),
        (vec!["CLIENT", "LIST"], "client", 2),
        (vec!["MKV.ROOT"], "mkv.root", 2),
        (vec!["SYNC", "127.0.0.1", &sync_target], "sync", 2),
        (vec!["FLUSHDB"], "flushdb", 2),
        (vec!["FLUSHALL"], "flushall", 2),
    ];
    for (user, pass, level) in [("ro", "ropw", 0u8), ("rw", "rwpw", 1), ("ad", "adpw", 2)] {
        let mut s = login(&srv, user, pass);
        for (args, name, class) in &cases {
            let got = resp(&mut s, args);
            // Drain the rest of a multi-line reply.
            let mut rest = Vec::new();
            s.set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            let mut buf = [0u8; 65536];
            while let Ok(n) = std::io::Read::read(&mut s, &mut buf) {
                if n == 0 {
                    break;
                }
                rest.extend_from_slice(&buf[..n]);
            }
            s.set_read_timeout(Some(DEADLINE)).unwrap();
            if class <= &level {
                assert!(!got.starts_with("-NOPERM"), "{user} {args:?}: {got}");
            } else {
                assert_eq!(got, noperm(user, name), "{user} {args:?}");
            }
        }
    }
    // Text-only admin commands.
    let mut t = srv.connect();
    assert_eq!(cmd(&mut t, "AUTH rw rwpw"), "OK");
    assert_eq!(cmd(&mut t, "REPLICATE status"), "REPLICATION disabled");
    for (line, name) in [("REPLICATE disable", "replicate"), ("TRUNCATE", "truncate")] {
        assert_eq!(
            cmd(&mut t, line),
            format!("ERROR NOPERM User rw has no permissions to run the '{name}' command")
        );
    }
    assert_eq!(cmd(&mut t, "AUTH ad adpw"), "OK");
    assert_eq!(cmd(&mut t, "REPLICATE disable"), "OK");
    // SHUTDOWN: refused for readwrite, allowed for admin.
    let mut s = login(&srv, "rw", "rwpw");
    assert_eq!(resp(&mut s, &["SHUTDOWN"]), noperm("rw", "shutdown"));
    let mut s = login(&srv, "ad", "adpw");
    assert_eq!(resp(&mut s, &["SHUTDOWN"]), "+OK");
}

#[test]
fn too_many_failed_attempts_close_the_connection() {
    let dir = TempDir::new("auth-cap");
    let srv = secured(&dir);
    let mut s = srv.connect();
    for _ in 0..3 {
        assert!(resp(&mut s, &["AUTH", "guess"]).starts_with("-WRONGPASS"));
    }
    let mut b = [0u8; 1];
    assert_eq!(
        std::io::Read::read(&mut s, &mut b).unwrap(),
        0,
        "not closed"
    );
    assert_eq!(info_field(&srv, "auth_failure_disconnects"), "1");
    assert_eq!(info_field(&srv, "auth_max_failures"), "3");
}

#[test]
fn a_failed_auth_delays_the_connection_but_not_the_worker() {
    const DELAY_MS: u64 = 5_000;
    let dir = TempDir::new("auth-delay");
    let conf = dir.file(
        "node.toml",
        &format!("[security]\nrequirepass = \"adminpw\"\nauth_failure_delay_ms = {DELAY_MS}\n"),
    );
    let srv = Server::start(&["--config", conf.to_str().unwrap(), "--threads", "1"]);

    // A wrong guess with a command pipelined behind it.
    let mut guesser = srv.connect();
    let sent = std::time::Instant::now();
    guesser.write_all(b"AUTH guess\r\nPING\r\n").unwrap();

    // The one worker still serves another connection meanwhile ...
    let mut other = srv.connect();
    assert_eq!(cmd(&mut other, "AUTH adminpw"), "OK");
    assert_eq!(cmd(&mut other, "SET k v"), "OK");
    // ... while the guesser has no reply yet (the delay is far longer
    // than the exchange above takes).
    guesser.set_nonblocking(true).unwrap();
    let mut b = [0u8; 1];
    let early = std::io::Read::read(&mut guesser, &mut b);
    assert!(
        early
            .as_ref()
            .is_err_and(|e| e.kind() == std::io::ErrorKind::WouldBlock),
        "a reply arrived before the delay: {early:?}"
    );
    guesser.set_nonblocking(false).unwrap();

    // The refusal comes after the delay, then the pipelined command's.
    assert_eq!(
        read_line(&mut guesser),
        "ERROR WRONGPASS invalid username-password pair or user is disabled"
    );
    assert!(
        sent.elapsed() >= Duration::from_millis(DELAY_MS),
        "WRONGPASS after {:?}",
        sent.elapsed()
    );
    assert_eq!(
        read_line(&mut guesser),
        "ERROR NOAUTH Authentication required"
    );
    // The connection works normally afterwards.
    assert_eq!(cmd(&mut guesser, "AUTH adminpw"), "OK");
    assert_eq!(cmd(&mut guesser, "GET k"), "VALUE v");
    let fields: std::collections::HashMap<_, _> =
        common::info_fields(&mut other).into_iter().collect();
    assert_eq!(fields["auth_failure_delay_ms"], DELAY_MS.to_string());
    assert_eq!(fields["auth_failure_delays"], "1");
    assert_eq!(fields["auth_failures"], "1");
}

#[test]
fn hello_auth_is_checked() {
    let dir = TempDir::new("auth-hello");
    let srv = secured(&dir);
    let mut s = srv.connect();
    assert!(resp(&mut s, &["HELLO", "3", "AUTH", "ro", "bad"]).starts_with("-WRONGPASS"));
    assert_eq!(
        resp(&mut s, &["GET", "k"]),
        "-NOAUTH Authentication required."
    );
    // A good HELLO AUTH answers the HELLO map and authenticates.
    s.write_all(&req(&["HELLO", "2", "AUTH", "rw", "rwpw"]))
        .unwrap();
    assert!(read_line(&mut s).starts_with('*'));
    let mut c = srv.connect();
    assert_eq!(resp(&mut c, &["AUTH", "rw", "rwpw"]), "+OK");
    assert_eq!(resp(&mut c, &["SET", "h", "1"]), "+OK");
    // RESET ends the authentication.
    assert_eq!(resp(&mut c, &["RESET"]), "+RESET");
    assert_eq!(
        resp(&mut c, &["GET", "h"]),
        "-NOAUTH Authentication required."
    );
}

#[test]
fn without_a_password_nothing_changes() {
    let srv = Server::start(&[]);
    let mut s = srv.connect();
    assert_eq!(resp(&mut s, &["SET", "k", "v"]), "+OK");
    assert!(resp(&mut s, &["AUTH", "x"]).starts_with("-ERR AUTH <password> called without"));
    assert!(!resp(&mut s, &["MKV.ROOT"]).starts_with('-'));
}

#[test]
fn requirepass_from_the_command_line_file_and_environment() {
    let srv = Server::start(&["--requirepass", "clipw"]);
    let mut s = srv.connect();
    assert_eq!(cmd(&mut s, "GET k"), "ERROR NOAUTH Authentication required");
    assert_eq!(cmd(&mut s, "AUTH clipw"), "OK");

    let srv = Server::start_with(&[], &[("MERKLE_KV_SECURITY_REQUIREPASS", "envpw")]);
    let mut s = srv.connect();
    assert_eq!(cmd(&mut s, "AUTH envpw"), "OK");

    let dir = TempDir::new("auth-file");
    let secret = dir.file("secret", "filepw\nignored\n");
    let conf = dir.file(
        "node.toml",
        &format!(
            "[security]\nrequirepass = \"inline\"\nrequirepass_file = \"{}\"\n",
            secret.display()
        ),
    );
    let srv = Server::start(&["--config", conf.to_str().unwrap()]);
    let mut s = srv.connect();
    assert!(cmd(&mut s, "AUTH inline").starts_with("ERROR WRONGPASS"));
    assert_eq!(cmd(&mut s, "AUTH filepw"), "OK");
    // The password never reaches the log.
    assert!(!srv.stderr.lock().unwrap().contains("filepw"));
}

#[test]
fn protected_mode_refuses_a_public_address_without_a_password() {
    let out = Command::new(common::bin())
        .args(["--bind", "0.0.0.0", "--port", "0"])
        .output()
        .expect("run merklekv");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Error: refusing to listen on 0.0.0.0"),
        "{err}"
    );
    assert!(
        err.contains("requirepass") && err.contains("protected_mode = false"),
        "{err}"
    );
    // With a password, or protected mode off, it starts.
    let srv = Server::start(&["--bind", "0.0.0.0", "--requirepass", "pw"]);
    assert!(srv.addr.ip().is_unspecified());
    let srv = Server::start_with(
        &["--bind", "0.0.0.0"],
        &[("MERKLE_KV_SECURITY_PROTECTED_MODE", "false")],
    );
    assert!(srv.addr.ip().is_unspecified());
}

// ---- real Redis tools -------------------------------------------------------

fn have(tool: &str) -> bool {
    let ok = Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("note: {tool} is not installed; skipping this test");
    }
    ok
}

fn redis_cli(srv: &Server, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &srv.addr.port().to_string()])
        .args(args)
        .output()
        .expect("run redis-cli");
    assert!(out.status.success(), "redis-cli {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn redis_cli_and_benchmark_with_a_password() {
    if !have("redis-cli") {
        return;
    }
    let dir = TempDir::new("auth-cli");
    let srv = secured(&dir);
    let a = ["-a", "adminpw", "--no-auth-warning"];
    assert_eq!(
        redis_cli(&srv, &[&a[..], &["SET", "k", "v"]].concat()),
        "OK\n"
    );
    assert_eq!(redis_cli(&srv, &[&a[..], &["GET", "k"]].concat()), "v\n");
    assert_eq!(
        redis_cli(&srv, &["GET", "k"]).trim_end(),
        "NOAUTH Authentication required."
    );
    let ro = ["--user", "ro", "--pass", "ropw", "--no-auth-warning"];
    assert_eq!(redis_cli(&srv, &[&ro[..], &["GET", "k"]].concat()), "v\n");
    assert_eq!(
        redis_cli(&srv, &[&ro[..], &["DEL", "k"]].concat()).trim_end(),
        "NOPERM User ro has no permissions to run the 'del' command"
    );
    let wrong = redis_cli(&srv, &["-a", "bad", "--no-auth-warning", "GET", "k"]);
    assert!(
        wrong.contains("NOAUTH") || wrong.contains("WRONGPASS"),
        "{wrong}"
    );

    if !have("redis-benchmark") {
        return;
    }
    let out = Command::new("redis-benchmark")
        .args(["-h", "127.0.0.1", "-p", &srv.addr.port().to_string()])
        .args([
            "-a", "adminpw", "-n", "200", "-c", "2", "-t", "set,get", "-q",
        ])
        .output()
        .expect("run redis-benchmark");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout.contains("SET:") && stdout.contains("GET:"),
        "{stdout}"
    );
    assert!(!stdout.contains("NOAUTH"), "{stdout}");
}

#[test]
fn redis_py_with_a_password() {
    if !python_has("redis") {
        eprintln!("note: python3 with the redis package is not installed; skipping this test");
        return;
    }
    let dir = TempDir::new("auth-py");
    let srv = secured(&dir);
    let script = r#"
import sys, redis
port = int(sys.argv[1])
for proto in (3, 2):
    r = redis.Redis(port=port, password="adminpw", protocol=proto)
    assert r.set("k", "v") and r.get("k") == b"v"
    ro = redis.Redis(port=port, username="ro", password="ropw", protocol=proto)
    assert ro.get("k") == b"v"
    try:
        ro.set("k", "w")
        raise SystemExit("readonly user could write")
    except redis.exceptions.NoPermissionError as e:
        assert "has no permissions to run the 'set' command" in str(e), e
    try:
        redis.Redis(port=port, username="ro", password="bad", protocol=proto).get("k")
        raise SystemExit("wrong password accepted")
    except redis.exceptions.AuthenticationError:
        pass
    try:
        redis.Redis(port=port, protocol=proto).get("k")
        raise SystemExit("no password accepted")
    except redis.exceptions.AuthenticationError:
        pass
print("ok")
"#;
    let out = Command::new("python3")
        .args(["-c", script, &srv.addr.port().to_string()])
        .output()
        .expect("python3");
    assert!(
        out.status.success() && out.stdout.ends_with(b"ok\n"),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---- peers ------------------------------------------------------------------

/// A node with password `pw`, anti-entropy credentials `ae`, and `peers`.
fn peer_node(dir: &TempDir, name: &str, ae: &str, peers: &[u16]) -> Server {
    let list: Vec<String> = peers.iter().map(|p| format!("\"127.0.0.1:{p}\"")).collect();
    let conf = dir.file(
        &format!("{name}.toml"),
        &format!(
            "[security]\nrequirepass = \"pw\"\n[[security.users]]\nname = \"app\"\n\
             password = \"apppw\"\nrole = \"readwrite\"\n\
             [anti_entropy]\ninterval_seconds = 1\npeer_list = [{}]\n{ae}\n",
            list.join(", ")
        ),
    );
    Server::start(&["--config", conf.to_str().unwrap(), "--threads", "1"])
}

#[test]
fn password_protected_peers_synchronise() {
    let dir = TempDir::new("auth-peers");
    let b = peer_node(&dir, "b", "", &[]);
    let mut cb = b.connect();
    assert_eq!(cmd(&mut cb, "AUTH pw"), "OK");
    assert_eq!(cmd(&mut cb, "SET from-b 1"), "OK");

    // A: the default credentials (the default user's password) work; the
    // peer B is configured, so a readwrite user may SYNC with it.
    let a = peer_node(&dir, "a", "", &[b.addr.port()]);
    let mut ca = a.connect();
    assert_eq!(cmd(&mut ca, "AUTH app apppw"), "OK");
    let r = cmd(&mut ca, &format!("SYNC 127.0.0.1 {}", b.addr.port()));
    assert!(r.starts_with("OK"), "{r}");
    assert_eq!(cmd(&mut ca, "GET from-b"), "VALUE 1");
    // A host that is not a peer needs role admin.
    assert_eq!(
        cmd(&mut ca, &format!("SYNC 127.0.0.1 {}", a.addr.port())),
        "ERROR NOPERM User app has no permissions to run the 'sync' command"
    );

    // C: explicit, wrong credentials: the round fails with B's refusal.
    let c = peer_node(
        &dir,
        "c",
        "username = \"app\"\npassword = \"wrong\"",
        &[b.addr.port()],
    );
    let mut cc = c.connect();
    assert_eq!(cmd(&mut cc, "AUTH pw"), "OK");
    let r = cmd(&mut cc, &format!("SYNC 127.0.0.1 {}", b.addr.port()));
    assert!(r.starts_with("ERROR") && r.contains("WRONGPASS"), "{r}");
    assert!(!r.contains("wrong"), "the password leaked: {r}");

    // Background rounds authenticate too: a write on B reaches A.
    assert_eq!(cmd(&mut cb, "SET later 2"), "OK");
    let ok = wait_until(Duration::from_secs(30), || {
        cmd(&mut ca, "GET later") == "VALUE 2"
    });
    assert!(ok, "A never repaired from B");
}

/// `CONFIG SET security.max_auth_failures` and
/// `security.auth_failure_delay_ms` take effect for the next attempt.
#[test]
fn auth_limits_change_at_run_time() {
    let srv = Server::start(&["--requirepass", "adminpw"]);
    let mut admin = srv.connect();
    assert_eq!(resp(&mut admin, &["AUTH", "adminpw"]), "+OK");
    assert_eq!(
        resp(
            &mut admin,
            &[
                "CONFIG",
                "SET",
                "security.max_auth_failures",
                "1",
                "security.auth_failure_delay_ms",
                "0",
            ],
        ),
        "+OK"
    );
    // One wrong password is now the last one.
    let mut guesser = srv.connect();
    assert!(resp(&mut guesser, &["AUTH", "guess"]).starts_with("-WRONGPASS"));
    // Closed by the server: end of stream, nothing more.
    let mut rest = Vec::new();
    let end = std::io::Read::read_to_end(&mut guesser, &mut rest);
    assert!(matches!(end, Ok(0)), "{end:?} {rest:?}");
    assert_eq!(info_field(&srv, "auth_failure_disconnects"), "1");
    assert_eq!(info_field(&srv, "auth_max_failures"), "1");
    assert_eq!(info_field(&srv, "auth_failure_delay_ms"), "0");
}

/// A script runs with its caller's role: a readwrite user cannot reach an
/// admin command through `redis.call`, a readonly user cannot run `EVAL`
/// at all but may run `EVAL_RO`.
#[test]
fn a_script_cannot_do_more_than_its_caller() {
    let dir = TempDir::new("auth-scripts");
    let srv = secured(&dir);
    let mut rw = login(&srv, "rw", "rwpw");
    assert_eq!(
        resp(
            &mut rw,
            &["EVAL", "return redis.call('SET', 'k', 'v')", "0"]
        ),
        "+OK"
    );
    assert_eq!(
        resp(&mut rw, &["EVAL", "return redis.call('FLUSHALL')", "0"]),
        noperm("rw", "flushall")
    );
    assert_eq!(
        resp(
            &mut rw,
            &[
                "EVAL",
                "return redis.call('CONFIG', 'SET', 'maxclients', '5')",
                "0"
            ]
        ),
        noperm("rw", "config")
    );
    let mut ro = login(&srv, "ro", "ropw");
    assert_eq!(
        resp(&mut ro, &["EVAL", "return 1", "0"]),
        noperm("ro", "eval")
    );
    assert_eq!(
        resp(&mut ro, &["EVAL_RO", "return redis.call('GET', 'k')", "0"]),
        "$1"
    );
    let mut ad = login(&srv, "ad", "adpw");
    assert_eq!(
        resp(&mut ad, &["EVAL", "return redis.call('DBSIZE')", "0"]),
        ":1"
    );
    assert_eq!(
        resp(&mut ad, &["EVAL", "return redis.call('FLUSHALL')", "0"]),
        "+OK"
    );
}
