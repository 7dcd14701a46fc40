//! TLS on the client port, against the real binary: redis-cli `--tls`,
//! `openssl s_client`, redis-py `ssl=True`, mutual TLS, `tls.required`,
//! certificate reload on SIGHUP, anti-entropy between nodes over mutual
//! TLS, and replication through a mosquitto TLS listener with a password
//! file. Certificates are generated per test with `openssl`.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::broker::{Broker, info_u64, node_with_config, wait_connected};
use common::certs::{Certs, s};
use common::{DEADLINE, Server, TempDir, cmd, read_n, wait_until};
use merklekv::client::{Client, Options, Reply};

/// `[tls]` lines for `certs`' server certificate plus `extra`.
fn tls_table(c: &Certs, extra: &str) -> String {
    format!(
        "[tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n{extra}\n",
        s(&c.server_cert),
        s(&c.server_key)
    )
}

/// Starts a node from `config` (nested layout) with one worker.
fn start(dir: &TempDir, config: &str) -> Server {
    let conf = dir.file("node.toml", config);
    Server::start(&["--config", s(&conf), "--threads", "1"])
}

/// Runs `redis-cli --tls --cacert ca` with `extra` arguments and `args`
/// against `srv`; returns stdout and stderr together.
fn redis_cli(srv: &Server, ca: &Path, extra: &[&str], args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["--tls", "--cacert", s(ca), "-h", "127.0.0.1"])
        .args(["-p", &srv.addr.port().to_string()])
        .args(extra)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run redis-cli");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A RESP client over TLS (the crate's own client with rustls).
fn tls_client(srv: &Server, ca: &Path) -> Result<Client, merklekv::client::ClientError> {
    let opts = Options {
        tls: Some(merklekv::server::tls::client_config(ca, None).unwrap()),
        ..Options::default()
    };
    Client::connect("127.0.0.1", srv.addr.port(), &opts)
}

fn ping(c: &mut Client) -> bool {
    matches!(c.call(&[b"PING"]), Ok(Reply::Simple(p)) if p == "PONG")
}

/// INFO field `name` read over plaintext.
fn info(srv: &Server, name: &str) -> u64 {
    info_u64(srv, name)
}

#[test]
fn tls_and_plaintext_clients_share_the_port() {
    let certs = Certs::new();
    let dir = TempDir::new("tls-basic");
    let srv = start(&dir, &tls_table(&certs, ""));

    // redis-cli over TLS.
    assert_eq!(
        redis_cli(&srv, &certs.ca, &[], &["SET", "k", "over tls"]),
        "OK\n"
    );
    assert_eq!(redis_cli(&srv, &certs.ca, &[], &["GET", "k"]), "over tls\n");
    // Plaintext on the same port sees the same data.
    let mut plain = srv.connect();
    assert_eq!(cmd(&mut plain, "GET k"), "VALUE over tls");

    // openssl s_client speaking the text protocol.
    let mut child = Command::new("openssl")
        .args(["s_client", "-connect", &srv.addr.to_string()])
        .args(["-CAfile", s(&certs.ca), "-verify_return_error", "-quiet"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run openssl s_client");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"SET t from-openssl\r\nGET t\r\n").unwrap();
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    while lines.len() < 2 {
        match rx.recv_timeout(DEADLINE) {
            Ok(l) => lines.push(l),
            Err(e) => panic!("openssl s_client: {e:?} after {lines:?}"),
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(lines, ["OK", "VALUE from-openssl"]);

    // redis-py with ssl=True (skipped when the redis package is missing).
    let probe = Command::new("python3")
        .args(["-c", "import redis"])
        .output();
    if probe.is_ok_and(|o| o.status.success()) {
        let script = r#"
import sys, redis
r = redis.Redis(host="127.0.0.1", port=int(sys.argv[1]), ssl=True, ssl_ca_certs=sys.argv[2])
assert r.ping()
assert r.set("py", b"a\r\nb")
assert r.get("py") == b"a\r\nb"
assert r.get("t") == b"from-openssl"
print("ok")
"#;
        let out = Command::new("python3")
            .args(["-c", script, &srv.addr.port().to_string(), s(&certs.ca)])
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "ok\n",
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    } else {
        eprintln!("note: python3 with the redis package is not installed; skipping redis-py");
    }

    // A client that does not trust the CA fails the handshake.
    assert!(tls_client(&srv, &certs.rogue_ca).is_ok_and(|mut c| !ping(&mut c)));
    let mut c = tls_client(&srv, &certs.ca).unwrap();
    assert!(ping(&mut c));
    assert!(info(&srv, "tls_connections") >= 5);
    assert_eq!(info(&srv, "tls_enabled"), 1);
}

#[test]
fn mutual_tls_accepts_only_certificates_signed_by_the_client_ca() {
    let certs = Certs::new();
    let dir = TempDir::new("tls-mtls");
    let extra = format!("client_ca_file = \"{}\"", s(&certs.ca));
    let srv = start(&dir, &tls_table(&certs, &extra));
    let signed = [
        "--cert",
        s(&certs.client_cert),
        "--key",
        s(&certs.client_key),
    ];
    assert_eq!(redis_cli(&srv, &certs.ca, &signed, &["PING"]), "PONG\n");

    let errors = info(&srv, "tls_errors");
    let none = redis_cli(&srv, &certs.ca, &[], &["PING"]);
    assert!(!none.contains("PONG"), "{none}");
    let rogue = ["--cert", s(&certs.rogue_cert), "--key", s(&certs.rogue_key)];
    let bad = redis_cli(&srv, &certs.ca, &rogue, &["PING"]);
    assert!(!bad.contains("PONG"), "{bad}");
    assert!(
        wait_until(DEADLINE, || info(&srv, "tls_errors") >= errors + 2),
        "refused handshakes are counted"
    );
    assert_eq!(info(&srv, "tls_client_auth"), 1);
}

#[test]
fn required_tls_refuses_plaintext_with_an_error() {
    let certs = Certs::new();
    let dir = TempDir::new("tls-required");
    let srv = start(&dir, &tls_table(&certs, "required = true"));

    let refusal = "ERROR TLS required: connect with TLS to this port\r\n";
    let mut text = srv.connect();
    text.write_all(b"GET k\r\n").unwrap();
    assert_eq!(
        String::from_utf8_lossy(&read_n(&mut text, refusal.len())),
        refusal
    );
    let mut rest = Vec::new();
    assert_eq!(
        text.read_to_end(&mut rest).unwrap(),
        0,
        "closed after the error"
    );

    let mut resp = srv.connect();
    resp.write_all(b"*1\r\n$4\r\nPING\r\n").unwrap();
    let mut got = Vec::new();
    resp.read_to_end(&mut got).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&got),
        "-ERR TLS required: connect with TLS to this port\r\n"
    );

    assert_eq!(redis_cli(&srv, &certs.ca, &[], &["PING"]), "PONG\n");
    let mut c = tls_client(&srv, &certs.ca).unwrap();
    let info = match c.call(&[b"INFO"]).unwrap() {
        Reply::Bulk(b) => String::from_utf8(b).unwrap(),
        r => panic!("INFO: {r:?}"),
    };
    assert!(info.contains("tls_required:1\r\n"), "{info}");
    assert!(info.contains("tls_plaintext_refused:2\r\n"), "{info}");
}

#[test]
fn sighup_reloads_certificates_and_keeps_connections() {
    let certs = Certs::new();
    let dir = TempDir::new("tls-reload");
    // The node reads copies, so the test can replace them.
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::copy(&certs.server_cert, &cert).unwrap();
    std::fs::copy(&certs.server_key, &key).unwrap();
    let srv = start(
        &dir,
        &format!(
            "[tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
            s(&cert),
            s(&key)
        ),
    );
    let mut old = tls_client(&srv, &certs.ca).unwrap();
    assert!(ping(&mut old));

    // A broken file: the reload fails and the old certificate stays.
    std::fs::write(&cert, "not a certificate").unwrap();
    srv.signal("HUP");
    assert!(wait_until(DEADLINE, || srv
        .stderr
        .lock()
        .unwrap()
        .contains("keeping the previous")));
    assert!(tls_client(&srv, &certs.ca).is_ok_and(|mut c| ping(&mut c)));

    let (new_cert, new_key) = certs.rogue_server();
    std::fs::copy(&new_cert, &cert).unwrap();
    std::fs::copy(&new_key, &key).unwrap();
    srv.signal("HUP");
    assert!(wait_until(DEADLINE, || info(&srv, "tls_reloads") == 1));

    // New handshakes use the new certificate...
    assert!(tls_client(&srv, &certs.rogue_ca).is_ok_and(|mut c| ping(&mut c)));
    assert!(tls_client(&srv, &certs.ca).is_ok_and(|mut c| !ping(&mut c)));
    // ...and the established session is untouched.
    assert!(ping(&mut old));
}

#[test]
fn bad_tls_settings_refuse_to_start() {
    let certs = Certs::new();
    let dir = TempDir::new("tls-bad");
    for (config, wanted) in [
        (
            format!("[tls]\ncert_file = \"{}\"\n", s(&certs.server_cert)),
            "Error: TLS: tls.cert_file and tls.key_file must be given together",
        ),
        (
            format!(
                "[tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
                s(&certs.server_cert),
                s(&dir.path().join("missing.key"))
            ),
            "missing.key",
        ),
        (
            "[anti_entropy]\ntls = true\n".to_string(),
            "Error: TLS: anti_entropy.tls = true needs anti_entropy.ca_file",
        ),
        (
            "[mqtt]\nbroker_address = \"mqtts://127.0.0.1:1\"\n".to_string(),
            "Error: TLS: an mqtts:// broker address needs mqtt.ca_file",
        ),
    ] {
        let conf = dir.file("bad.toml", &config);
        let out = Command::new(common::bin())
            .args(["--config", s(&conf), "--port", "0"])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{config}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(wanted), "{config}: {err}");
    }
}

#[test]
fn anti_entropy_repairs_over_mutual_tls() {
    let certs = Certs::new();
    let dir_a = TempDir::new("tls-ae-a");
    let a = start(
        &dir_a,
        &tls_table(
            &certs,
            &format!("required = true\nclient_ca_file = \"{}\"", s(&certs.ca)),
        ),
    );
    let client = [
        "--cert",
        s(&certs.client_cert),
        "--key",
        s(&certs.client_key),
    ];
    assert_eq!(
        redis_cli(&a, &certs.ca, &client, &["SET", "ae", "repaired"]),
        "OK\n"
    );

    // B presents its own server certificate (which allows client use) and
    // pulls the key from A.
    let dir_b = TempDir::new("tls-ae-b");
    let b = start(
        &dir_b,
        &format!(
            "{}[anti_entropy]\nenabled = true\ninterval_seconds = 1\npeer_list = [\"{}\"]\n\
             tls = true\nca_file = \"{}\"\n",
            tls_table(&certs, ""),
            a.addr,
            s(&certs.ca)
        ),
    );
    let mut plain = b.connect();
    assert!(
        wait_until(Duration::from_secs(20), || cmd(&mut plain, "GET ae")
            == "VALUE repaired"),
        "anti-entropy over TLS never repaired the key; B stderr:\n{}",
        b.stderr.lock().unwrap()
    );
    let a_info = redis_cli(&a, &certs.ca, &client, &["INFO"]);
    assert!(
        a_info.contains("tls_plaintext_refused:0"),
        "B used TLS: {a_info}"
    );
}

#[test]
fn replication_through_a_tls_broker_with_a_password_file() {
    let certs = Certs::new();
    let (broker, tls_port) = Broker::start_tls(&certs, "mkv", "s3cret pass");
    let node = |id: &str, password: &str| {
        let dir = TempDir::new(id);
        let conf = dir.file(
            "node.toml",
            &format!(
                "node_id = \"{id}\"\n[mqtt]\nbroker_address = \"mqtts://127.0.0.1:{tls_port}\"\n\
                 topic_prefix = \"mkv-tls\"\nca_file = \"{}\"\nusername = \"mkv\"\n\
                 password = \"{password}\"\n",
                s(&certs.ca)
            ),
        );
        node_with_config(id, dir, conf)
    };
    let n1 = node("tls-n1", "s3cret pass");
    let n2 = node("tls-n2", "s3cret pass");
    wait_connected(&n1);
    wait_connected(&n2);
    let mut c1 = n1.connect();
    assert_eq!(cmd(&mut c1, "SET over mqtts"), "OK");
    common::broker::wait_value(&n2, "over", "VALUE mqtts");

    // A wrong password is refused by the broker.
    let bad = node("tls-bad", "wrong");
    assert!(wait_until(DEADLINE, || info(
        &bad,
        "replication_connect_failures"
    ) >= 1));
    assert_eq!(info(&bad, "replication_connects"), 0);
    assert_eq!(info(&n1, "replication_connects"), 1);
    drop(broker);
}
