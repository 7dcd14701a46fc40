//! RESP2 front end against the real binary: byte-exact pipelined
//! exchanges, bad framing, the Redis-compatibility commands, and real
//! redis-cli / redis-benchmark / redis-py runs (each skipped with a note
//! when the tool is not installed; `.ci/run` installs redis-tools).

mod common;

use common::req;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;

use common::{Server, expect, python_has, read_n};

/// Reads one complete RESP reply (any type, nested) and returns its bytes.
fn read_reply(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    read_into(s, &mut out);
    out
}

fn read_line_raw(s: &mut TcpStream, out: &mut Vec<u8>) -> Vec<u8> {
    let start = out.len();
    let mut b = [0u8; 1];
    while !out[start..].ends_with(b"\r\n") {
        s.read_exact(&mut b).expect("read reply");
        out.push(b[0]);
    }
    out[start..out.len() - 2].to_vec()
}

fn read_into(s: &mut TcpStream, out: &mut Vec<u8>) {
    let line = read_line_raw(s, out);
    let n: i64 = std::str::from_utf8(&line[1..])
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    match line[0] {
        b'$' if n >= 0 => out.extend(read_n(s, n as usize + 2)),
        b'*' | b'%' => {
            let items = if line[0] == b'%' { 2 * n } else { n };
            for _ in 0..items.max(0) {
                read_into(s, out);
            }
        }
        _ => {}
    }
}

fn call(s: &mut TcpStream, args: &[&[u8]]) -> Vec<u8> {
    s.write_all(&req(args)).unwrap();
    read_reply(s)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Bulk strings of an array reply, in order (nested arrays flattened).
fn bulks(reply: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < reply.len() {
        let end = pos + reply[pos..].windows(2).position(|w| w == b"\r\n").unwrap();
        let head = &reply[pos..end];
        pos = end + 2;
        if head[0] == b'$' {
            let n: i64 = text(&head[1..]).parse().unwrap();
            if n >= 0 {
                out.push(reply[pos..pos + n as usize].to_vec());
                pos += n as usize + 2;
            }
        }
    }
    out
}

#[test]
fn pipelined_exchange_is_byte_exact() {
    let srv = Server::start(&[]);
    let mut s = srv.connect();
    let mut batch = Vec::new();
    for r in [
        &[&b"PING"[..]][..],
        &[b"SET", b"k", b"v1"],
        &[b"GET", b"k"],
        &[b"GET", b"missing"],
        &[b"SET", b"bin", b"a\r\nb\x00c"],
        &[b"GET", b"bin"],
        &[b"INCR", b"n"],
        &[b"INCRBY", b"n", b"41"],
        &[b"DECRBY", b"n", b"2"],
        &[b"INCR", b"k"],
        &[b"APPEND", b"k", b"23"],
        &[b"STRLEN", b"k"],
        &[b"MSET", b"a", b"1", b"b", b"2"],
        &[b"MGET", b"a", b"nope", b"b"],
        &[b"EXISTS", b"a", b"a", b"zz"],
        &[b"DEL", b"a", b"b", b"zz"],
        &[b"DBSIZE"],
        &[b"ECHO", b"hi"],
        &[b"PING", b"msg"],
        &[b"SELECT", b"0"],
        &[b"SELECT", b"1"],
        &[b"get"],
        &[b"NOSUCH", b"x", b"y"],
        &[b"SET", b"k", b"v", b"EX", b"0"],
        &[b"SET", b"nx", b"1", b"NX"],
        &[b"SET", b"nx", b"2", b"NX"],
        &[b"SET", b"nx", b"3", b"XX", b"GET"],
        &[b"TYPE", b"nx"],
        &[b"TTL", b"nope"],
    ] {
        batch.extend(req(r));
    }
    let want: &[u8] = b"+PONG\r\n+OK\r\n$2\r\nv1\r\n$-1\r\n+OK\r\n$6\r\na\r\nb\x00c\r\n:1\r\n:42\r\n:40\r\n\
-ERR value is not an integer or out of range\r\n:4\r\n:4\r\n+OK\r\n*3\r\n$1\r\n1\r\n$-1\r\n$1\r\n2\r\n\
:2\r\n:2\r\n:3\r\n$2\r\nhi\r\n$3\r\nmsg\r\n+OK\r\n-ERR DB index is out of range\r\n\
-ERR wrong number of arguments for 'get' command\r\n\
-ERR unknown command 'NOSUCH', with args beginning with: 'x' 'y' \r\n\
-ERR invalid expire time in 'set' command\r\n\
+OK\r\n$-1\r\n$1\r\n1\r\n+string\r\n:-2\r\n";
    // One write for the whole pipeline; the replies come back in order.
    expect(&mut s, &batch, want);
}

/// A RESP request may be far larger than one text line (up to
/// `MAX_REQUEST`): a 12 MiB MSET is read in ordinary chunks, not one byte
/// per `read` once the first MiB is buffered (that took ~2 µs per byte).
#[test]
fn a_request_of_many_megabytes_is_read_at_full_speed() {
    let srv = Server::start(&["--threads", "1"]);
    let mut s = srv.connect();
    let values: Vec<Vec<u8>> = (0..12u8).map(|i| vec![b'a' + i; 1 << 20]).collect();
    let keys: Vec<Vec<u8>> = (0..12).map(|i| format!("big{i}").into_bytes()).collect();
    let mut args: Vec<&[u8]> = vec![b"MSET"];
    for (k, v) in keys.iter().zip(&values) {
        args.push(k);
        args.push(v);
    }
    assert_eq!(call(&mut s, &args), b"+OK\r\n");
    let mut want = format!("${}\r\n", 1 << 20).into_bytes();
    want.extend_from_slice(&values[11]);
    want.extend_from_slice(b"\r\n");
    assert!(call(&mut s, &[b"GET", b"big11"]) == want, "GET big11");
}

#[test]
fn value_with_crlf_is_raw_bytes_on_one_text_reply() {
    let srv = Server::start(&[]);
    let mut r = srv.connect();
    expect(
        &mut r,
        &req(&[b"SET", b"multi", b"line1\r\nline2"]),
        b"+OK\r\n",
    );
    let mut t = srv.connect();
    expect(&mut t, b"GET multi\r\n", b"VALUE line1\r\nline2\r\n");
}

#[test]
fn bad_framing_gets_an_error_and_closes() {
    let srv = Server::start(&[]);
    for (bad, msg) in [
        (&b"*1\r\n$-5\r\n"[..], "invalid bulk length"),
        (b"*1\r\n$2000000000\r\n", "invalid bulk length"),
        (b"*2\r\n:5\r\n", "expected '$', got ':'"),
        (&[b'x'; 65_536][..], "too big inline request"),
        (b"*x\r\n", "invalid multibulk length"),
        (b"*1\r\nfoo\r\n", "expected '$', got 'f'"),
        (b"*1\r\n$1\r\nab\r\n", "not terminated by CRLF"),
        (b"*99999999999\r\n", "invalid multibulk length"),
    ] {
        let mut s = srv.connect();
        // A valid request first: its reply still arrives.
        s.write_all(&req(&[b"PING"])).unwrap();
        s.write_all(bad).unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got)
            .expect("server closes the connection");
        let got = text(&got);
        assert!(got.starts_with("+PONG\r\n-ERR Protocol error: "), "{got}");
        assert!(got.contains(msg), "{got}");
        assert!(got.ends_with("\r\n"));
    }
    // The server is unaffected.
    let mut s = srv.connect();
    expect(&mut s, &req(&[b"PING"]), b"+PONG\r\n");
}

#[test]
fn hello_resp3_and_noproto() {
    let srv = Server::start(&[]);
    let mut s = srv.connect();
    expect(
        &mut s,
        &req(&[b"HELLO", b"4"]),
        b"-NOPROTO unsupported protocol version\r\n",
    );
    let h2 = call(&mut s, &[b"HELLO", b"2", b"SETNAME", b"me"]);
    assert!(h2.starts_with(b"*16\r\n$6\r\nserver\r\n"), "{}", text(&h2));
    assert!(text(&h2).contains("$5\r\nproto\r\n:2\r\n"));
    expect(&mut s, &req(&[b"CLIENT", b"GETNAME"]), b"$2\r\nme\r\n");
    let h3 = call(&mut s, &[b"HELLO", b"3"]);
    assert!(h3.starts_with(b"%8\r\n"), "{}", text(&h3));
    assert!(text(&h3).contains("$5\r\nproto\r\n:3\r\n"));
    // RESP3 nulls and maps.
    expect(&mut s, &req(&[b"GET", b"nope"]), b"_\r\n");
    expect(
        &mut s,
        &req(&[b"CONFIG", b"GET", b"appendonly"]),
        b"%1\r\n$10\r\nappendonly\r\n$2\r\nno\r\n",
    );
    expect(
        &mut s,
        &req(&[b"MGET", b"nope", b"nope"]),
        b"*2\r\n_\r\n_\r\n",
    );
}

#[test]
fn client_and_config_and_command() {
    let srv = Server::start(&[]);
    let mut s = srv.connect();
    expect(&mut s, &req(&[b"CLIENT", b"GETNAME"]), b"$-1\r\n");
    expect(&mut s, &req(&[b"CLIENT", b"SETNAME", b"app-1"]), b"+OK\r\n");
    expect(
        &mut s,
        &req(&[b"CLIENT", b"SETINFO", b"LIB-NAME", b"mylib"]),
        b"+OK\r\n",
    );
    let id = text(&call(&mut s, &[b"CLIENT", b"ID"]));
    assert!(id.starts_with(':'), "{id}");
    let id = id.trim()[1..].to_string();
    let list = text(&call(&mut s, &[b"CLIENT", b"LIST"]));
    assert!(
        list.contains(&format!("id={id} addr=127.0.0.1:")) && list.contains(" name=app-1 "),
        "{list}"
    );
    assert!(list.contains("lib-name=mylib"), "{list}");
    expect(
        &mut s,
        &req(&[b"CLIENT", b"SETNAME", b"has space"]),
        b"-ERR Client names cannot contain spaces, newlines or special characters.\r\n",
    );
    expect(
        &mut s,
        &req(&[b"CONFIG", b"GET", b"save"]),
        b"*2\r\n$4\r\nsave\r\n$0\r\n\r\n",
    );
    let all = bulks(&call(&mut s, &[b"CONFIG", b"GET", b"*"]));
    assert!(all.len() >= 10 && all.len().is_multiple_of(2));
    let count = text(&call(&mut s, &[b"COMMAND", b"COUNT"]));
    let n: usize = count.trim()[1..].parse().unwrap();
    let all = text(&call(&mut s, &[b"COMMAND"]));
    assert!(
        all.starts_with(&format!("*{n}\r\n*10\r\n$3\r\nget\r\n:2\r\n")),
        "{all}"
    );
    let info = text(&call(&mut s, &[b"COMMAND", b"INFO", b"get", b"nope"]));
    assert!(info.starts_with("*2\r\n*10\r\n$3\r\nget\r\n") && info.ends_with("*-1\r\n"));
    let docs = text(&call(&mut s, &[b"COMMAND", b"DOCS", b"set"]));
    assert!(
        docs.starts_with("*2\r\n$3\r\nset\r\n*10\r\n$7\r\nsummary\r\n"),
        "{docs}"
    );
    assert!(docs.contains("$5\r\ntoken\r\n$2\r\nNX\r\n"), "{docs}");
    expect(
        &mut s,
        &req(&[b"CLIENT", b"PAUSE", b"10"]),
        b"-ERR unknown subcommand 'PAUSE'. Try CLIENT HELP.\r\n",
    );
}

#[test]
fn info_is_redis_style() {
    let srv = Server::start(&[]);
    let mut s = srv.connect();
    call(&mut s, &[b"SET", b"a", b"1"]);
    let all = text(&bulks(&call(&mut s, &[b"INFO"]))[0]);
    for want in [
        "# Server\r\nredis_version:",
        "redis_mode:standalone\r\n",
        "# Clients\r\nconnected_clients:",
        "# Keyspace\r\ndb0:keys=1,expires=0,avg_ttl=0\r\n",
        "# MerkleKV\r\nversion:0.1.0\r\n",
        "db_keys:1\r\n",
    ] {
        assert!(all.contains(want), "{want:?} missing in {all}");
    }
    let server = text(&bulks(&call(&mut s, &[b"INFO", b"server"]))[0]);
    assert!(server.starts_with("# Server\r\n") && !server.contains("# Clients"));
    // Membership has its own section (docs/protocol.md §9.5), not part of
    // `# MerkleKV`; a standalone node lists itself only.
    let cluster = text(&bulks(&call(&mut s, &[b"INFO", b"CLUSTER"]))[0]);
    let (head, me) = cluster.split_at(cluster.find("cluster_member0:").unwrap());
    assert_eq!(
        head,
        "# Cluster\r\ncluster_members:1\r\ncluster_members_online:0\r\n\
         cluster_members_offline:0\r\ncluster_members_incompatible:0\r\n\
         cluster_members_forgotten:0\r\ncluster_forget_offline_after_seconds:86400\r\n\
         cluster_presence_ignored:0\r\n"
    );
    let me: Vec<&str> = me.trim_end_matches("\r\n").split(' ').collect();
    assert_eq!(me[1], srv.addr.to_string(), "{cluster}");
    assert_eq!(
        (me[2], me[4], me[5], me[6]),
        ("self", "-", "-", "-"),
        "{cluster}"
    );
    let at = |h: &str| {
        all.find(h)
            .unwrap_or_else(|| panic!("{h} missing in {all}"))
    };
    assert!(at("# CPU") < at("# Cluster") && at("# Cluster") < at("# Keyspace"));
    assert!(
        !all[at("# MerkleKV")..].contains("cluster_members"),
        "{all}"
    );
    // The text protocol keeps its own INFO format (docs/protocol.md §6).
    let mut t = srv.connect();
    t.write_all(b"INFO\r\n").unwrap();
    assert_eq!(common::read_line(&mut t), "INFO");
    assert!(common::read_line(&mut t).starts_with("version:"));
}

#[test]
fn scan_visits_every_key_once_and_keys_matches_globs() {
    let srv = Server::start(&[]);
    let mut s = srv.connect();
    let mut batch = Vec::new();
    for i in 0..3000 {
        let k = format!("user:{i}");
        batch.extend(req(&[b"SET", k.as_bytes(), b"x"]));
    }
    batch.extend(req(&[b"SET", b"other", b"y"]));
    s.write_all(&batch).unwrap();
    read_n(&mut s, 5 * 3001);
    let mut cursor = b"0".to_vec();
    let mut seen = Vec::new();
    let mut calls = 0;
    loop {
        let r = call(
            &mut s,
            &[b"SCAN", &cursor, b"MATCH", b"user:*", b"COUNT", b"100"],
        );
        let items = bulks(&r);
        cursor = items[0].clone();
        seen.extend(items[1..].iter().cloned());
        calls += 1;
        assert!(calls < 1000, "SCAN must terminate");
        if cursor == b"0" {
            break;
        }
    }
    let n = seen.len();
    seen.sort();
    seen.dedup();
    assert_eq!((n, seen.len()), (3000, 3000));
    let keys = bulks(&call(&mut s, &[b"KEYS", b"user:1?9"]));
    let mut keys: Vec<String> = keys.iter().map(|k| text(k)).collect();
    keys.sort();
    let want: Vec<String> = (0..10).map(|d| format!("user:1{d}9")).collect();
    assert_eq!(keys, want);
    assert_eq!(
        bulks(&call(&mut s, &[b"KEYS", b"[o]the?"])),
        vec![b"other".to_vec()]
    );
    assert_eq!(bulks(&call(&mut s, &[b"KEYS", b"*"])).len(), 3001);
    expect(&mut s, &req(&[b"SCAN", b"abc"]), b"-ERR invalid cursor\r\n");
    // Patterns are bounded; a hostile one within the bound is answered.
    let long = vec![b'a'; 1025];
    let too_long = b"-ERR pattern too long (max 1024 bytes)\r\n";
    expect(&mut s, &req(&[b"KEYS", &long]), too_long);
    expect(&mut s, &req(&[b"SCAN", b"0", b"MATCH", &long]), too_long);
    expect(&mut s, &req(&[b"CONFIG", b"GET", &long]), too_long);
    let mut hostile = b"u*".repeat(500);
    hostile.extend_from_slice(b"?x");
    assert_eq!(hostile.len(), 1002);
    assert!(bulks(&call(&mut s, &[b"KEYS", &hostile])).is_empty());
}

// ---- real Redis tools ---------------------------------------------------------------

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
    text(&out.stdout)
}

#[test]
fn redis_cli_works_unmodified() {
    if !have("redis-cli") {
        return;
    }
    let srv = Server::start(&[]);
    assert_eq!(redis_cli(&srv, &["PING"]), "PONG\n");
    assert_eq!(redis_cli(&srv, &["SET", "greeting", "hello world"]), "OK\n");
    assert_eq!(redis_cli(&srv, &["GET", "greeting"]), "hello world\n");
    assert_eq!(redis_cli(&srv, &["GET", "nope"]), "\n");
    assert_eq!(redis_cli(&srv, &["INCRBY", "c", "5"]), "5\n");
    assert_eq!(redis_cli(&srv, &["MSET", "a", "1", "b", "2"]), "OK\n");
    assert_eq!(redis_cli(&srv, &["MGET", "a", "x", "b"]), "1\n\n2\n");
    assert_eq!(redis_cli(&srv, &["DBSIZE"]), "4\n");
    // --scan drives SCAN with a cursor to the end.
    let mut keys: Vec<String> = redis_cli(&srv, &["--scan"])
        .lines()
        .map(String::from)
        .collect();
    keys.sort();
    assert_eq!(keys, ["a", "b", "c", "greeting"]);
    let keys = redis_cli(&srv, &["--scan", "--pattern", "g*"]);
    assert_eq!(keys, "greeting\n");
    assert!(redis_cli(&srv, &["INFO", "server"]).contains("redis_version:"));
    // Errors come back as errors.
    let err = redis_cli(&srv, &["NOSUCH"]);
    assert!(err.starts_with("ERR unknown command 'NOSUCH'"), "{err}");
    // Binary-safe values from stdin (-x takes the last argument from stdin).
    let mut child = Command::new("redis-cli")
        .args(["-p", &srv.addr.port().to_string(), "-x", "SET", "bin"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"l1\r\nl2\x00")
        .unwrap();
    assert!(child.wait_with_output().unwrap().status.success());
    assert_eq!(redis_cli(&srv, &["STRLEN", "bin"]), "7\n");
    // --pipe: raw RESP through redis-cli's mass-insert mode.
    let mut payload = Vec::new();
    for i in 0..500 {
        payload.extend(req(&[b"SET", format!("p{i}").as_bytes(), b"v"]));
    }
    let mut child = Command::new("redis-cli")
        .args(["-p", &srv.addr.port().to_string(), "--pipe"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&payload).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert!(
        text(&out.stdout).contains("errors: 0, replies: 500"),
        "{out:?}"
    );
    assert_eq!(redis_cli(&srv, &["DBSIZE"]), "505\n");
}

#[test]
fn redis_benchmark_runs_against_it() {
    if !have("redis-benchmark") {
        return;
    }
    let srv = Server::start(&[]);
    let out = Command::new("redis-benchmark")
        .args(["-h", "127.0.0.1", "-p", &srv.addr.port().to_string()])
        .args(["-n", "2000", "-c", "4", "-P", "4", "-q", "--csv"])
        .args(["-t", "set,get,incr,mset,ping_mbulk"])
        .output()
        .expect("run redis-benchmark");
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    for t in [
        "\"SET\"",
        "\"GET\"",
        "\"INCR\"",
        "\"MSET (10 keys)\"",
        "\"PING_MBULK\"",
    ] {
        assert!(stdout.contains(t), "{t} missing:\n{stdout}");
    }
    // It fetched CONFIG without a warning.
    assert!(!text(&out.stderr).contains("Could not fetch"), "{out:?}");
}

#[test]
fn redis_py_works_unmodified() {
    if !python_has("redis") {
        eprintln!("note: python3 with the redis package is not installed; skipping this test");
        return;
    }
    let srv = Server::start(&[]);
    // redis-py 8 speaks RESP3 by default (HELLO 3); check both versions.
    let script = r#"
import sys, redis
port = int(sys.argv[1])
for proto in (3, 2):
    r = redis.Redis(port=port, protocol=proto)
    assert r.ping()
    assert r.set("k", b"a\r\nb")
    assert r.get("k") == b"a\r\nb"
    assert r.get("missing") is None
    assert r.incr("n") == (1 if proto == 3 else 2)
    assert r.mget(["k", "zz"]) == [b"a\r\nb", None]
    assert r.set(f"nx{proto}", "1", nx=True) and r.set(f"nx{proto}", "2", nx=True) is None
    assert r.info()["redis_version"]
    assert r.config_get("save") == {"save": ""}
    p = r.pipeline(transaction=False)
    for i in range(50):
        p.set(f"p{i}", i)
    assert all(p.execute())
    # The default pipeline is a MULTI/EXEC transaction.
    p = r.pipeline()
    p.set(f"t{proto}", "1").incr(f"t{proto}").get(f"t{proto}")
    assert p.execute() == [True, 2, b"2"]
    # WATCH-based check-and-set; a concurrent write aborts the EXEC.
    w = redis.Redis(port=port, protocol=proto)
    with r.pipeline() as p:
        p.watch("cas")
        w.set("cas", "other")
        p.multi()
        p.set("cas", "mine")
        try:
            p.execute()
            raise SystemExit("EXEC ran despite a changed watched key")
        except redis.WatchError:
            pass
    assert r.get("cas") == b"other"
    assert sorted(r.scan_iter(match="p1*", count=7)) == sorted(
        f"p1{d}".encode() for d in [""] + list(range(10)))
    r.client_setname("py")
    assert r.client_getname() in ("py", b"py")
    assert r.set("x", "1", ex=50)
    assert 49 <= r.ttl("x") <= 50
    assert r.expire("x", 100) and r.ttl("x") == 100
    assert r.persist("x") and r.ttl("x") == -1
    assert r.setex("y", 30, "v") and r.getex("y", persist=True) == b"v"
print("ok")
"#;
    let out = Command::new("python3")
        .args(["-c", script, &srv.addr.port().to_string()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(text(&out.stdout), "ok\n");
}

#[test]
fn multi_exec_discard_watch_are_byte_exact() {
    let srv = Server::start(&[]);
    let mut s = srv.connect();
    let r = |a: &[&[u8]]| req(a);
    expect(&mut s, &r(&[b"EXEC"]), b"-ERR EXEC without MULTI\r\n");
    expect(&mut s, &r(&[b"DISCARD"]), b"-ERR DISCARD without MULTI\r\n");
    // Queue, then run: replies come back as one array, in order.
    let mut w = r(&[b"MULTI"]);
    w.extend(r(&[b"SET", b"a", b"1"]));
    w.extend(r(&[b"INCR", b"a"]));
    w.extend(r(&[b"GET", b"a"]));
    w.extend(r(&[b"MULTI"]));
    w.extend(r(&[b"WATCH", b"a"]));
    w.extend(r(&[b"EXEC"]));
    expect(
        &mut s,
        &w,
        b"+OK\r\n+QUEUED\r\n+QUEUED\r\n+QUEUED\r\n\
          -ERR MULTI calls can not be nested\r\n\
          -ERR WATCH inside MULTI is not allowed\r\n\
          *3\r\n+OK\r\n:2\r\n$1\r\n2\r\n",
    );
    // A queueing error aborts the whole transaction; nothing runs.
    let mut w = r(&[b"MULTI"]);
    w.extend(r(&[b"SET", b"a", b"9"]));
    w.extend(r(&[b"GET"]));
    w.extend(r(&[b"HASH"]));
    w.extend(r(&[b"EXEC"]));
    w.extend(r(&[b"GET", b"a"]));
    expect(
        &mut s,
        &w,
        b"+OK\r\n+QUEUED\r\n-ERR wrong number of arguments for 'get' command\r\n\
          -ERR Command not allowed inside a transaction\r\n\
          -EXECABORT Transaction discarded because of previous errors.\r\n$1\r\n2\r\n",
    );
    // DISCARD drops the queue.
    let mut w = r(&[b"MULTI"]);
    w.extend(r(&[b"SET", b"a", b"9"]));
    w.extend(r(&[b"DISCARD"]));
    w.extend(r(&[b"GET", b"a"]));
    expect(&mut s, &w, b"+OK\r\n+QUEUED\r\n+OK\r\n$1\r\n2\r\n");
    // WATCH: a write from another connection (even of the same value)
    // makes EXEC answer a null array without running anything.
    let mut other = srv.connect();
    expect(&mut s, &r(&[b"WATCH", b"a", b"nokey"]), b"+OK\r\n");
    expect(&mut other, &r(&[b"SET", b"a", b"2"]), b"+OK\r\n");
    let mut w = r(&[b"MULTI"]);
    w.extend(r(&[b"SET", b"a", b"mine"]));
    w.extend(r(&[b"EXEC"]));
    w.extend(r(&[b"GET", b"a"]));
    expect(&mut s, &w, b"+OK\r\n+QUEUED\r\n*-1\r\n$1\r\n2\r\n");
    // Unchanged watched keys (one still missing) let it run; UNWATCH
    // forgets them.
    expect(&mut s, &r(&[b"WATCH", b"a", b"nokey"]), b"+OK\r\n");
    let mut w = r(&[b"MULTI"]);
    w.extend(r(&[b"SET", b"a", b"mine"]));
    w.extend(r(&[b"EXEC"]));
    expect(&mut s, &w, b"+OK\r\n+QUEUED\r\n*1\r\n+OK\r\n");
    expect(&mut s, &r(&[b"WATCH", b"a"]), b"+OK\r\n");
    expect(&mut other, &r(&[b"DEL", b"a"]), b":1\r\n");
    expect(&mut s, &r(&[b"UNWATCH"]), b"+OK\r\n");
    let mut w = r(&[b"MULTI"]);
    w.extend(r(&[b"EXISTS", b"a"]));
    w.extend(r(&[b"EXEC"]));
    expect(&mut s, &w, b"+OK\r\n+QUEUED\r\n*1\r\n:0\r\n");
    // What one connection may watch is bounded.
    let keys: Vec<Vec<u8>> = (0..100_001).map(|i| format!("w{i}").into_bytes()).collect();
    let mut args: Vec<&[u8]> = vec![b"WATCH"];
    args.extend(keys.iter().map(Vec::as_slice));
    expect(
        &mut s,
        &r(&args),
        b"-ERR too many watched keys (at most 100000 keys, 16 MiB)\r\n",
    );
    expect(&mut s, &r(&[b"PING"]), b"+PONG\r\n");
}

#[test]
fn exec_is_isolated_from_other_connections() {
    // One client moves a unit from `x` to `y` in transactions; readers
    // on other connections (other workers) must always see x + y = 0.
    let srv = Server::start(&["--threads", "2"]);
    let mut w = srv.connect();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let mut s = srv.connect();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut reads = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let v = bulks(&call(&mut s, &[b"MGET", b"x", b"y"]));
                    let n = |b: &Vec<u8>| text(b).parse::<i64>().unwrap();
                    if v.len() == 2 {
                        assert_eq!(n(&v[0]) + n(&v[1]), 0, "saw half a transaction");
                    }
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    for _ in 0..2000 {
        let mut t = req(&[b"MULTI"]);
        t.extend(req(&[b"DECR", b"x"]));
        t.extend(req(&[b"INCR", b"y"]));
        t.extend(req(&[b"EXEC"]));
        w.write_all(&t).unwrap();
        for _ in 0..4 {
            read_reply(&mut w);
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let reads: usize = readers.into_iter().map(|h| h.join().unwrap()).sum();
    assert!(reads > 0);
    assert_eq!(
        call(&mut w, &[b"MGET", b"x", b"y"]),
        b"*2\r\n$5\r\n-2000\r\n$4\r\n2000\r\n"
    );
}

#[test]
fn setnx_getset_getdel_msetnx_persist_and_expire() {
    let srv = Server::start(&[]);
    let mut s = srv.connect();
    let mut w = Vec::new();
    for a in [
        &[&b"SETNX"[..], b"a", b"1"][..],
        &[b"SETNX", b"a", b"2"],
        &[b"GETSET", b"a", b"3"],
        &[b"GETSET", b"new", b"x"],
        &[b"GETDEL", b"a"],
        &[b"GETDEL", b"a"],
        &[b"EXISTS", b"a"],
        &[b"MSETNX", b"m1", b"1", b"m2", b"2"],
        &[b"MSETNX", b"m2", b"x", b"m3", b"y"],
        &[b"MGET", b"m1", b"m2", b"m3"],
        &[b"PERSIST", b"m1"],
        &[b"EXPIRE", b"m1", b"10"],
        &[b"MSETNX", b"odd"],
    ] {
        w.extend(req(a));
    }
    expect(
        &mut s,
        &w,
        b":1\r\n:0\r\n$1\r\n1\r\n$-1\r\n$1\r\n3\r\n$-1\r\n:0\r\n:1\r\n:0\r\n\
          *3\r\n$1\r\n1\r\n$1\r\n2\r\n$-1\r\n:0\r\n:1\r\n\
          -ERR wrong number of arguments for 'msetnx' command\r\n",
    );
}

// ---- Pub/Sub ------------------------------------------------------------------

/// A `*3 subscribe|unsubscribe… name :count` confirmation.
fn confirm(kind: &str, name: &str, count: usize) -> Vec<u8> {
    format!(
        "*3\r\n${}\r\n{kind}\r\n${}\r\n{name}\r\n:{count}\r\n",
        kind.len(),
        name.len()
    )
    .into_bytes()
}

/// `PUBLISH` reaches subscribers on every worker, framed as Redis frames
/// messages; a RESP2 subscriber is limited to the subscription commands,
/// PING, QUIT and RESET; `PUBSUB`, `CLIENT LIST` and INFO report the
/// subscriptions; unsubscribing everything ends subscribed mode.
#[test]
fn publish_reaches_subscribers_of_every_worker() {
    let srv = Server::start(&["--threads", "2"]);
    let mut sub = srv.connect();
    let mut want = confirm("subscribe", "a", 1);
    want.extend(confirm("subscribe", "b", 2));
    expect(&mut sub, &req(&[b"SUBSCRIBE", b"a", b"b"]), &want);
    expect(
        &mut sub,
        &req(&[b"PSUBSCRIBE", b"n*"]),
        &confirm("psubscribe", "n*", 3),
    );
    expect(
        &mut sub,
        &req(&[b"GET", b"x"]),
        b"-ERR Can't execute 'get': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context\r\n",
    );
    expect(
        &mut sub,
        &req(&[b"PING"]),
        b"*2\r\n$4\r\npong\r\n$0\r\n\r\n",
    );
    // Publishers on several connections, so both workers publish.
    let mut pubs: Vec<TcpStream> = (0..6).map(|_| srv.connect()).collect();
    for (i, p) in pubs.iter_mut().enumerate() {
        let m = format!("m{i}");
        expect(p, &req(&[b"PUBLISH", b"a", m.as_bytes()]), b":1\r\n");
        let want = format!("*3\r\n$7\r\nmessage\r\n$1\r\na\r\n$2\r\n{m}\r\n");
        expect(&mut sub, b"", want.as_bytes());
        expect(p, &req(&[b"PUBLISH", b"news", b"z"]), b":1\r\n");
        expect(
            &mut sub,
            b"",
            b"*4\r\n$8\r\npmessage\r\n$2\r\nn*\r\n$4\r\nnews\r\n$1\r\nz\r\n",
        );
    }
    let p = &mut pubs[0];
    expect(p, &req(&[b"PUBLISH", b"other", b"z"]), b":0\r\n");
    expect(
        p,
        &req(&[b"PUBSUB", b"CHANNELS"]),
        b"*2\r\n$1\r\na\r\n$1\r\nb\r\n",
    );
    expect(
        p,
        &req(&[b"PUBSUB", b"CHANNELS", b"b*"]),
        b"*1\r\n$1\r\nb\r\n",
    );
    expect(
        p,
        &req(&[b"PUBSUB", b"NUMSUB", b"a", b"zz"]),
        b"*4\r\n$1\r\na\r\n:1\r\n$2\r\nzz\r\n:0\r\n",
    );
    expect(p, &req(&[b"PUBSUB", b"NUMPAT"]), b":1\r\n");
    let list = text(&call(p, &[b"CLIENT", b"LIST", b"TYPE", b"pubsub"]));
    assert_eq!(list.matches("id=").count(), 1, "{list}");
    assert!(
        list.contains(" flags=P db=0 sub=2 psub=1 ssub=0 "),
        "{list}"
    );
    let info = text(&call(p, &[b"INFO", b"stats"]));
    assert!(
        info.contains("pubsub_channels:2\r\npubsub_patterns:1\r\n"),
        "{info}"
    );
    let info = text(&call(p, &[b"INFO", b"clients"]));
    assert!(info.contains("pubsub_clients:1\r\n"), "{info}");
    // UNSUBSCRIBE without names ends every channel subscription (in no
    // particular order); the pattern stays until PUNSUBSCRIBE.
    sub.write_all(&req(&[b"UNSUBSCRIBE"])).unwrap();
    let mut got = read_reply(&mut sub);
    got.extend(read_reply(&mut sub));
    let (ab, ba) = (
        [
            confirm("unsubscribe", "a", 2),
            confirm("unsubscribe", "b", 1),
        ]
        .concat(),
        [
            confirm("unsubscribe", "b", 2),
            confirm("unsubscribe", "a", 1),
        ]
        .concat(),
    );
    assert!(got == ab || got == ba, "{}", text(&got));
    expect(
        &mut sub,
        &req(&[b"PUNSUBSCRIBE"]),
        &confirm("punsubscribe", "n*", 0),
    );
    expect(
        &mut sub,
        &req(&[b"UNSUBSCRIBE"]),
        b"*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n",
    );
    expect(&mut sub, &req(&[b"GET", b"x"]), b"$-1\r\n");
    expect(p, &req(&[b"PUBSUB", b"NUMPAT"]), b":0\r\n");
    let info = text(&call(p, &[b"INFO", b"clients"]));
    assert!(info.contains("pubsub_clients:0\r\n"), "{info}");
    expect(p, &req(&[b"PUBLISH", b"a", b"z"]), b":0\r\n");
}

/// RESET ends subscriptions silently; RESP3 subscribers get pushes and
/// may run any command; (un)subscribing is refused inside MULTI.
#[test]
fn reset_resp3_and_multi_with_subscriptions() {
    let srv = Server::start(&[]);
    let mut sub = srv.connect();
    let mut p = srv.connect();
    expect(
        &mut sub,
        &req(&[b"SUBSCRIBE", b"c"]),
        &confirm("subscribe", "c", 1),
    );
    expect(&mut sub, &req(&[b"RESET"]), b"+RESET\r\n");
    expect(&mut p, &req(&[b"PUBLISH", b"c", b"x"]), b":0\r\n");
    expect(&mut sub, &req(&[b"GET", b"x"]), b"$-1\r\n");
    call(&mut sub, &[b"HELLO", b"3"]);
    expect(
        &mut sub,
        &req(&[b"SUBSCRIBE", b"c"]),
        b">3\r\n$9\r\nsubscribe\r\n$1\r\nc\r\n:1\r\n",
    );
    expect(&mut sub, &req(&[b"GET", b"x"]), b"_\r\n");
    expect(&mut p, &req(&[b"PUBLISH", b"c", b"hello"]), b":1\r\n");
    expect(
        &mut sub,
        b"",
        b">3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$5\r\nhello\r\n",
    );
    expect(&mut p, &req(&[b"MULTI"]), b"+OK\r\n");
    expect(
        &mut p,
        &req(&[b"SUBSCRIBE", b"c"]),
        b"-ERR Command not allowed inside a transaction\r\n",
    );
    expect(&mut p, &req(&[b"PUBLISH", b"c", b"in-tx"]), b"+QUEUED\r\n");
    expect(
        &mut p,
        &req(&[b"EXEC"]),
        b"-EXECABORT Transaction discarded because of previous errors.\r\n",
    );
    expect(&mut p, &req(&[b"PUBLISH", b"c", b"after"]), b":1\r\n");
    expect(
        &mut sub,
        b"",
        b">3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$5\r\nafter\r\n",
    );
}

/// A subscriber that does not read is disconnected at the hard output
/// limit, and counted, instead of buffering without bound.
#[test]
fn a_subscriber_that_does_not_read_is_disconnected_at_the_output_limit() {
    let srv = Server::start_with(
        &["--threads", "2"],
        &[("MERKLE_KV_LIMITS_CLIENT_OUTPUT_BUFFER_LIMIT", "200000")],
    );
    let mut sub = srv.connect();
    expect(
        &mut sub,
        &req(&[b"SUBSCRIBE", b"c"]),
        &confirm("subscribe", "c", 1),
    );
    let mut p = srv.connect();
    let value = vec![b'v'; 10_000];
    let mut disconnected = false;
    for _ in 0..200 {
        for _ in 0..10 {
            p.write_all(&req(&[b"PUBLISH", b"c", &value])).unwrap();
            read_reply(&mut p);
        }
        let info = text(&call(&mut p, &[b"INFO", b"stats"]));
        if info.contains("client_output_buffer_limit_disconnections:1\r\n") {
            disconnected = true;
            break;
        }
    }
    assert!(disconnected, "no disconnection");
    expect(
        &mut p,
        &req(&[b"PUBSUB", b"NUMSUB", b"c"]),
        b"*2\r\n$1\r\nc\r\n:0\r\n",
    );
    let mut rest = Vec::new();
    let _ = sub.read_to_end(&mut rest);
    assert!(
        text(&rest).contains("-ERR output buffer limit reached"),
        "{} bytes",
        rest.len()
    );
}

/// Sharded Pub/Sub: a namespace of its own (`SPUBLISH` reaches only
/// `SSUBSCRIBE`rs, framed as `smessage`), counted apart in the
/// confirmations, `CLIENT LIST`'s `ssub` and INFO.
#[test]
fn sharded_pubsub_is_a_namespace_of_its_own() {
    let srv = Server::start(&["--threads", "2"]);
    let mut sub = srv.connect();
    let mut p = srv.connect();
    expect(
        &mut sub,
        &req(&[b"SSUBSCRIBE", b"s1", b"s2"]),
        &[
            confirm("ssubscribe", "s1", 1),
            confirm("ssubscribe", "s2", 2),
        ]
        .concat(),
    );
    expect(
        &mut sub,
        &req(&[b"SUBSCRIBE", b"s1"]),
        &confirm("subscribe", "s1", 1),
    );
    expect(&mut p, &req(&[b"SPUBLISH", b"s1", b"hi"]), b":1\r\n");
    expect(
        &mut sub,
        b"",
        b"*3\r\n$8\r\nsmessage\r\n$2\r\ns1\r\n$2\r\nhi\r\n",
    );
    expect(&mut p, &req(&[b"PUBLISH", b"s2", b"x"]), b":0\r\n");
    expect(
        &mut p,
        &req(&[b"PUBSUB", b"SHARDCHANNELS"]),
        b"*2\r\n$2\r\ns1\r\n$2\r\ns2\r\n",
    );
    expect(
        &mut p,
        &req(&[b"PUBSUB", b"SHARDNUMSUB", b"s1", b"zz"]),
        b"*4\r\n$2\r\ns1\r\n:1\r\n$2\r\nzz\r\n:0\r\n",
    );
    expect(
        &mut p,
        &req(&[b"COMMAND", b"GETKEYS", b"SSUBSCRIBE", b"a", b"b"]),
        b"*2\r\n$1\r\na\r\n$1\r\nb\r\n",
    );
    let list = text(&call(&mut p, &[b"CLIENT", b"LIST", b"TYPE", b"pubsub"]));
    assert!(list.contains(" sub=1 psub=0 ssub=2 "), "{list}");
    let info = text(&call(&mut p, &[b"INFO", b"stats"]));
    assert!(info.contains("pubsubshard_channels:2\r\n"), "{info}");
    expect(
        &mut sub,
        &req(&[b"SUNSUBSCRIBE", b"s1"]),
        &confirm("sunsubscribe", "s1", 1),
    );
    expect(&mut p, &req(&[b"SPUBLISH", b"s1", b"hi"]), b":0\r\n");
    expect(&mut sub, &req(&[b"RESET"]), b"+RESET\r\n");
    let info = text(&call(&mut p, &[b"INFO", b"stats"]));
    assert!(info.contains("pubsubshard_channels:0\r\n"), "{info}");
}
