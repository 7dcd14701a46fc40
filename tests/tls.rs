//! TLS on the client port, against the real binary: redis-cli `--tls`,
//! `openssl s_client`, redis-py `ssl=True`, mutual TLS, `tls.required`,
//! passwords over TLS (redis-cli `-a`, redis-py `password=`), certificate
//! reload on SIGHUP, anti-entropy between nodes over mutual TLS,
//! replication through a mosquitto TLS listener with a password file, and
//! the secure three-node cluster of `configs/secure/` end to end.
//! Certificates are generated per test with `openssl`.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::broker::{Broker, info_u64, node_with_config, wait_connected};
use common::certs::{Certs, s};
use common::{DEADLINE, Server, TempDir, cmd, python_has, read_n, wait_until};
use merklekv::client::{Client, Options, Reply};
use merklekv::replication::auth::Keys;
use merklekv::replication::{ChangeEvent, wire};
use merklekv::store::{Version, node_hash, now_millis};

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
    if python_has("redis") {
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
fn password_and_tls_together_with_redis_cli_and_redis_py() {
    let certs = Certs::new();
    let dir = TempDir::new("tls-auth");
    let srv = start(
        &dir,
        &format!(
            "[security]\nrequirepass = \"s3cret pw\"\n{}",
            tls_table(&certs, "required = true")
        ),
    );
    let pw = ["-a", "s3cret pw", "--no-auth-warning"];
    assert_eq!(redis_cli(&srv, &certs.ca, &pw, &["SET", "k", "v"]), "OK\n");
    assert_eq!(redis_cli(&srv, &certs.ca, &pw, &["GET", "k"]), "v\n");
    let none = redis_cli(&srv, &certs.ca, &[], &["GET", "k"]);
    assert!(none.contains("NOAUTH Authentication required."), "{none}");
    let wrong = ["-a", "guess", "--no-auth-warning"];
    let bad = redis_cli(&srv, &certs.ca, &wrong, &["GET", "k"]);
    assert!(!bad.contains("v\n"), "{bad}");

    if python_has("redis") {
        let script = r#"
import sys, redis
from redis.backoff import NoBackoff
from redis.retry import Retry
port, ca = int(sys.argv[1]), sys.argv[2]
r = redis.Redis(host="127.0.0.1", port=port, ssl=True, ssl_ca_certs=ca, password="s3cret pw")
assert r.get("k") == b"v"
try:
    # No retries: an authentication error would be retried with backoff.
    redis.Redis(host="127.0.0.1", port=port, ssl=True, ssl_ca_certs=ca,
                retry=Retry(NoBackoff(), 0)).get("k")
    raise SystemExit("no NOAUTH without a password")
except redis.exceptions.AuthenticationError:
    pass
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

// ---- the secure three-node cluster of configs/secure/ -----------------------

/// Whether `tool` is installed.
fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A TLS connection to `node` authenticated as `default` with `password`.
fn secure_client(node: &Server, ca: &Path, password: &str) -> Client {
    let mut c = tls_client(node, ca).expect("TLS connection");
    c.auth("default", password).expect("AUTH");
    c
}

/// INFO of `node`, over TLS with the password.
fn secure_info(node: &Server, ca: &Path, password: &str) -> HashMap<String, String> {
    match secure_client(node, ca, password).call(&[b"INFO"]).unwrap() {
        Reply::Bulk(b) => String::from_utf8(b)
            .unwrap()
            .lines()
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        r => panic!("INFO: {r:?}"),
    }
}

/// GET `key` on `node` over TLS with the password.
fn secure_get(node: &Server, ca: &Path, password: &str, key: &str) -> Reply {
    secure_client(node, ca, password)
        .call(&[b"GET", key.as_bytes()])
        .unwrap()
}

/// Publishes `payload` on `topic` with `mosquitto_pub` over TLS with the
/// broker's credentials (QoS 1: it returns once the broker has it).
fn mosquitto_pub(tls_port: u16, ca: &Path, password: &str, topic: &str, payload: &[u8]) {
    let dir = TempDir::new("mosquitto-pub");
    let file = dir.path().join("payload");
    std::fs::write(&file, payload).unwrap();
    let out = Command::new("mosquitto_pub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &tls_port.to_string(),
            "--cafile",
            s(ca),
        ])
        .args([
            "-u",
            "merklekv",
            "-P",
            password,
            "-q",
            "1",
            "-t",
            topic,
            "-f",
            s(&file),
        ])
        .output()
        .expect("run mosquitto_pub");
    assert!(
        out.status.success(),
        "mosquitto_pub: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An event batch from origin `origin` setting `key` to `value`.
fn batch(origin: &str, key: &str, value: &str) -> Vec<u8> {
    let ev = ChangeEvent {
        key: key.as_bytes().to_vec(),
        value: Some(value.as_bytes().to_vec()),
        version: Version::new(now_millis() << 16, node_hash(origin)),
        expires: 0,
    };
    let mut out = Vec::new();
    wire::encode(origin, &[ev], &mut out);
    out
}

/// configs/secure/ as shipped, end to end: the certificates and secrets
/// made by `make-certs.sh`, mosquitto with `mosquitto.conf` (TLS listener,
/// password file), three nodes with `node1..3.toml` (password, TLS
/// required, mqtts:// with a password, cluster key, anti-entropy over TLS
/// with AUTH, peers discovered through signed presence). Only the ports and
/// the directory of the generated files are changed.
#[test]
fn secure_three_node_cluster_end_to_end() {
    let broker_bin = common::broker::mosquitto_bin();
    let missing: Vec<&str> = ["openssl", "mosquitto_passwd", "mosquitto_pub", broker_bin]
        .into_iter()
        .filter(|t| !have(t))
        .collect();
    if !missing.is_empty() {
        eprintln!(
            "note: skipping the secure cluster test: {missing:?} not installed \
             (apt-get install openssl mosquitto mosquitto-clients; .ci/run installs them)"
        );
        return;
    }
    let slow = Duration::from_secs(30);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/secure");
    let generated = TempDir::new("secure-generated");
    let out = Command::new("sh")
        .arg(root.join("make-certs.sh"))
        .arg(generated.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "make-certs.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let secret = |name: &str| {
        std::fs::read_to_string(generated.path().join(name))
            .unwrap()
            .trim()
            .to_string()
    };
    let (pw, mqtt_pw, cluster_key) = (
        secret("requirepass"),
        secret("mqtt-password"),
        secret("cluster.key"),
    );
    let ca = generated.path().join("ca.pem");
    let local = |text: &str| text.replace("configs/secure/generated", s(generated.path()));

    let conf = std::fs::read_to_string(root.join("mosquitto.conf")).unwrap();
    assert!(conf.contains("listener 8883 "), "{conf}");
    let (_broker, tls_port) = Broker::start_with_listener(|port| {
        local(&conf.replace("listener 8883 ", &format!("listener {port} ")))
    });

    // Each node binds a free port (`--port 0`) and announces it.
    let nodes_dir = TempDir::new("secure-nodes");
    let start_node = |n: usize| {
        let text = std::fs::read_to_string(root.join(format!("node{n}.toml"))).unwrap();
        assert!(text.contains("mqtts://127.0.0.1:8883"), "{text}");
        let text = local(&text).replace(
            "mqtts://127.0.0.1:8883",
            &format!("mqtts://127.0.0.1:{tls_port}"),
        );
        let conf = nodes_dir.file(&format!("node{n}.toml"), &text);
        let mut env = vec![
            ("MERKLE_KV_MQTT_PASSWORD", mqtt_pw.as_str()),
            ("MERKLE_KV_ANTI_ENTROPY_INTERVAL_SECONDS", "1"),
        ];
        // Node 3 keeps no session on the broker: what it misses while
        // down can only come back by anti-entropy.
        if n == 3 {
            env.push(("MERKLE_KV_MQTT_CLEAN_SESSION", "true"));
        }
        Server::start_with(&["--config", s(&conf), "--threads", "1"], &env)
    };
    let n1 = start_node(1);
    let n2 = start_node(2);
    let mut n3 = start_node(3);
    let info = |n: &Server| secure_info(n, &ca, &pw);
    let online_peers = |n: &Server| {
        info(n)
            .iter()
            .filter(|(k, v)| k.starts_with("cluster_member") && v.contains(" online "))
            .count()
    };
    for n in [&n1, &n2, &n3] {
        assert!(
            wait_until(slow, || info(n)["replication_broker_state"] == "connected"
                && online_peers(n) == 2),
            "node {} never connected and found its peers: {:?}\n{}",
            n.addr,
            info(n),
            n.stderr.lock().unwrap()
        );
    }

    // A write over TLS + AUTH (redis-cli -a --tls) on node 1 is readable
    // on nodes 2 and 3.
    let cli = |n: &Server, args: &[&str]| {
        redis_cli(n, &ca, &["-a", pw.as_str(), "--no-auth-warning"], args)
    };
    assert_eq!(cli(&n1, &["SET", "colour", "blue"]), "OK\n");
    for n in [&n2, &n3] {
        assert!(
            wait_until(slow, || secure_get(n, &ca, &pw, "colour")
                == Reply::Bulk(b"blue".to_vec())),
            "colour never reached {}",
            n.addr
        );
    }
    assert_eq!(cli(&n3, &["GET", "colour"]), "blue\n");

    // Without the password: NOAUTH for everything but AUTH, HELLO, QUIT.
    let mut anon = tls_client(&n1, &ca).unwrap();
    let requests: &[&[&[u8]]] = &[
        &[b"GET", b"colour"],
        &[b"SET", b"colour", b"red"],
        &[b"DEL", b"colour"],
        &[b"PING"],
        &[b"INFO"],
        &[b"DBSIZE"],
        &[b"KEYS", b"*"],
        &[b"FLUSHDB"],
        &[b"CONFIG", b"GET", b"*"],
        &[b"MKV.ROOT"],
        &[b"SHUTDOWN"],
    ];
    for r in requests {
        assert_eq!(
            anon.call(r).unwrap(),
            Reply::Error("NOAUTH Authentication required.".into()),
            "{:?}",
            String::from_utf8_lossy(r[0])
        );
    }
    match anon.call(&[b"HELLO", b"3"]).unwrap() {
        Reply::Error(e) => assert!(e.starts_with("NOAUTH HELLO must be called"), "{e}"),
        r => panic!("HELLO without AUTH: {r:?}"),
    }
    let wrongpass =
        Reply::Error("WRONGPASS invalid username-password pair or user is disabled.".into());
    assert_eq!(anon.call(&[b"AUTH", b"guess"]).unwrap(), wrongpass);
    assert_eq!(
        anon.call(&[b"HELLO", b"3", b"AUTH", b"default", b"guess"])
            .unwrap(),
        wrongpass
    );
    assert_eq!(anon.call(&[b"QUIT"]).unwrap(), Reply::Simple("OK".into()));
    let no_pw = redis_cli(&n2, &ca, &[], &["SET", "colour", "red"]);
    assert!(no_pw.contains("NOAUTH"), "{no_pw}");
    // Plaintext is refused outright (tls.required).
    let mut plain = n1.connect();
    assert_eq!(
        cmd(&mut plain, "AUTH x"),
        "ERROR TLS required: connect with TLS to this port"
    );
    assert_eq!(
        secure_get(&n1, &ca, &pw, "colour"),
        Reply::Bulk(b"blue".to_vec())
    );

    // A publisher with the broker's credentials but without the cluster
    // key changes nothing: neither keys nor members.
    mosquitto_pub(
        tls_port,
        &ca,
        &mqtt_pw,
        "merkle_kv/events",
        &batch("intruder", "colour", "hacked"),
    );
    let fake = merklekv::replication::members::Presence {
        format: merklekv::replication::members::PRESENCE_FORMAT,
        node_id: "intruder".into(),
        address: "127.0.0.1:1".into(),
        version: "0".into(),
        wire_version: 1,
        tree_bits: 16,
        fanout_bits: 4,
        started_ms: now_millis(),
        status: "online".into(),
    };
    mosquitto_pub(
        tls_port,
        &ca,
        &mqtt_pw,
        "merkle_kv/nodes/intruder",
        &fake.encode(),
    );
    // Then a batch signed with the cluster key: once it is applied, the
    // unsigned messages before it have had their turn.
    let mut signed = batch("operator", "signed", "yes");
    Keys::new(std::slice::from_ref(&cluster_key)).sign(&mut signed);
    mosquitto_pub(tls_port, &ca, &mqtt_pw, "merkle_kv/events", &signed);
    for n in [&n1, &n2, &n3] {
        assert!(
            wait_until(slow, || secure_get(n, &ca, &pw, "signed")
                == Reply::Bulk(b"yes".to_vec())),
            "the signed batch never reached {}",
            n.addr
        );
        let i = info(n);
        assert_eq!(i["replication_events_unauthenticated"], "1", "{}", n.addr);
        assert_eq!(i["replication_presence_unauthenticated"], "1", "{}", n.addr);
        assert_eq!(
            secure_get(n, &ca, &pw, "colour"),
            Reply::Bulk(b"blue".to_vec())
        );
        assert!(
            !i.values().any(|v| v.contains("intruder")),
            "a fake member on {}",
            n.addr
        );
    }

    // Node 3 is down while writes happen; it catches up by anti-entropy
    // over TLS with AUTH (it has no MQTT session to receive them from).
    n3.kill9();
    let mut c1 = secure_client(&n1, &ca, &pw);
    for i in 0..50 {
        let key = format!("while-down:{i}");
        assert_eq!(
            c1.call(&[b"SET", key.as_bytes(), b"v"]).unwrap(),
            Reply::Simple("OK".into())
        );
    }
    assert!(wait_until(slow, || secure_get(
        &n2,
        &ca,
        &pw,
        "while-down:49"
    ) == Reply::Bulk(b"v".to_vec())));
    let n3 = start_node(3);
    let dbsize = |n: &Server| secure_client(n, &ca, &pw).call(&[b"DBSIZE"]).unwrap();
    let want = dbsize(&n1);
    assert_eq!(want, Reply::Integer(52), "colour, signed, 50 keys");
    assert!(
        wait_until(slow, || dbsize(&n3) == want),
        "node 3 never caught up: {:?} keys\n{}",
        dbsize(&n3),
        n3.stderr.lock().unwrap()
    );
    assert_eq!(
        secure_get(&n3, &ca, &pw, "while-down:0"),
        Reply::Bulk(b"v".to_vec())
    );
    let i3 = info(&n3);
    assert_eq!(
        i3["replication_events_applied"], "0",
        "nothing came by MQTT"
    );
    assert!(
        i3["ae_keys_repaired"].parse::<u64>().unwrap() >= 52,
        "{i3:?}"
    );
    // Every connection between the nodes used TLS: the one plaintext
    // connection refused is this test's own, on node 1.
    for (n, refused) in [(&n1, "1"), (&n2, "0"), (&n3, "0")] {
        assert_eq!(info(n)["tls_plaintext_refused"], refused, "{}", n.addr);
    }
}
