//! Lua scripting against the real binary (docs/protocol.md §15.3): RESP
//! bytes of `EVAL`/`EVALSHA`/`SCRIPT`/`FUNCTION`/`FCALL`, the sandbox and
//! its limits, `-BUSY` and `SCRIPT KILL` while a script loops, MONITOR's
//! `lua` lines, and a script's writes replicating through a real broker.

mod common;

use std::io::Write;
use std::net::TcpStream;

use common::broker::{Broker, info_u64, replicated_node, wait_connected, wait_value};
use common::{DEADLINE, Server, expect, read_line, req, wait_until};

fn eval(script: &str, keys: &[&str], args: &[&str]) -> Vec<u8> {
    let n = keys.len().to_string();
    let mut v: Vec<&[u8]> = vec![b"EVAL", script.as_bytes(), n.as_bytes()];
    v.extend(keys.iter().map(|k| k.as_bytes()));
    v.extend(args.iter().map(|a| a.as_bytes()));
    req(&v)
}

/// Sends `request` and returns the first reply line (for errors whose
/// tail names a line number).
fn first_line(s: &mut TcpStream, request: &[u8]) -> String {
    s.write_all(request).unwrap();
    read_line(s)
}

#[test]
fn eval_converts_replies_and_values_as_redis_does() {
    let server = Server::start(&[]);
    let mut s = server.connect();
    expect(&mut s, &eval("return 1", &[], &[]), b":1\r\n");
    expect(
        &mut s,
        &eval("return {1, 'two', {3}, false, 'after'}", &[], &[]),
        b"*5\r\n:1\r\n$3\r\ntwo\r\n*1\r\n:3\r\n$-1\r\n$5\r\nafter\r\n",
    );
    // A table ends at its first nil; 3.9 is truncated; true is 1.
    expect(
        &mut s,
        &eval("return {3.9, true, nil, 4}", &[], &[]),
        b"*2\r\n:3\r\n:1\r\n",
    );
    expect(
        &mut s,
        &eval(
            "redis.call('SET', KEYS[1], ARGV[1]); return redis.call('GET', KEYS[1])",
            &["k"],
            &["v1"],
        ),
        b"$2\r\nv1\r\n",
    );
    // Replies come back to Lua as Redis converts them.
    expect(
        &mut s,
        &eval(
            "local ok = redis.call('SET', 'n', 10); local n = redis.call('INCRBY', 'n', 5); \
             local miss = redis.call('GET', 'nope'); return {ok.ok, n, tostring(miss)}",
            &[],
            &[],
        ),
        b"*3\r\n$2\r\nOK\r\n:15\r\n$5\r\nfalse\r\n",
    );
    expect(
        &mut s,
        &eval("return redis.status_reply('FINE')", &[], &[]),
        b"+FINE\r\n",
    );
    expect(
        &mut s,
        &eval("return redis.error_reply('MY failure')", &[], &[]),
        b"-MY failure\r\n",
    );
    // redis.call raises a command's error, redis.pcall returns it.
    expect(
        &mut s,
        &eval("return redis.call('INCR', KEYS[1])", &["k"], &[]),
        b"-ERR value is not an integer or out of range\r\n",
    );
    expect(
        &mut s,
        &eval(
            "local r = redis.pcall('INCR', KEYS[1]); return r.err",
            &["k"],
            &[],
        ),
        b"$43\r\nERR value is not an integer or out of range\r\n",
    );
    expect(
        &mut s,
        &eval("return redis.call('MULTI')", &[], &[]),
        b"-ERR This Redis command is not allowed from script\r\n",
    );
    expect(
        &mut s,
        &eval("return redis.call('NOSUCH')", &[], &[]),
        b"-ERR Unknown Redis command called from script\r\n",
    );
    expect(
        &mut s,
        &req(&[b"EVAL", b"return 1", b"3", b"a", b"b"]),
        b"-ERR Number of keys can't be greater than number of args\r\n",
    );
    expect(
        &mut s,
        &req(&[b"EVAL", b"return 1", b"-1"]),
        b"-ERR Number of keys can't be negative\r\n",
    );
    assert_eq!(
        first_line(&mut s, &eval("x = 1", &[], &[])),
        "-ERR user_script:1: Attempt to modify a readonly table"
    );
    assert_eq!(
        first_line(&mut s, &eval("return undefined_thing", &[], &[])),
        "-ERR user_script:1: Script attempted to access nonexistent global variable 'undefined_thing'"
    );
    // The sandbox has no file or module loading.
    assert!(
        first_line(&mut s, &eval("return dofile('/etc/passwd')", &[], &[]))
            .contains("nonexistent global variable 'dofile'")
    );
    // Library tables are read-only, so no script changes another's.
    assert!(
        first_line(&mut s, &eval("string.rep = nil", &[], &[]))
            .contains("Attempt to modify a readonly table")
    );
    // Recursion through a C function ends in Lua's error, not a crash of
    // the script thread's stack.
    expect(
        &mut s,
        &eval(
            "local function f() return (string.gsub('a', 'a', f)) end return f()",
            &[],
            &[],
        ),
        b"-ERR C stack overflow\r\n",
    );
    assert_eq!(
        first_line(&mut s, &eval("return string.find('a', '%')", &[], &[])),
        "-ERR malformed pattern (ends with '%')"
    );
    expect(
        &mut s,
        &eval("return string.rep('ab', 3)", &[], &[]),
        b"$6\r\nababab\r\n",
    );
    assert!(
        first_line(&mut s, &eval("coroutine.create = nil", &[], &[]))
            .contains("Attempt to modify a readonly table")
    );
    // A script's KEYS and ARGV are gone once it ended.
    expect(&mut s, &eval("return #KEYS", &["k1", "k2"], &[]), b":2\r\n");
    let lib = b"#!lua name=peek\nredis.register_function('peek', function() return tostring(rawget(_G, 'KEYS')) end)";
    expect(
        &mut s,
        &req(&[b"FUNCTION", b"LOAD", lib]),
        b"$4\r\npeek\r\n",
    );
    expect(&mut s, &req(&[b"FCALL", b"peek", b"0"]), b"$3\r\nnil\r\n");
    // What one script slips past them with rawset is gone for the next.
    expect(
        &mut s,
        &eval(
            "rawset(_G, 'leak', 1) rawset(redis, 'call', function() return 'evil' end) \
             rawset(_G, 'string', {}) return 1",
            &[],
            &[],
        ),
        b":1\r\n",
    );
    expect(
        &mut s,
        &eval(
            "return {redis.call('PING').ok, tostring(rawget(_G, 'leak')), string.upper('a')}",
            &[],
            &[],
        ),
        b"*3\r\n$4\r\nPONG\r\n$3\r\nnil\r\n$1\r\nA\r\n",
    );
    assert!(
        first_line(&mut s, &eval("return (", &[], &[]))
            .starts_with("-ERR Error compiling script (new function): user_script:1:")
    );
    // Every global is read-only, existing ones too (Redis 7): replacing
    // `redis` or `string`, or `_G` itself, or its metatable, is refused,
    // so no script can break the sandbox for the ones after it.
    for script in [
        "redis = function() return 1 end",
        "string = nil",
        "_G = {}",
        "setmetatable(_G, {})",
        "local g = getmetatable(_G) g.__index = {}",
        "setmetatable(redis, {})",
    ] {
        let line = first_line(&mut s, &eval(script, &[], &[]));
        assert!(
            line.starts_with("-ERR user_script:1: Attempt to modify a readonly table"),
            "{script}: {line}"
        );
    }
    expect(
        &mut s,
        &eval(
            "return {redis.call('PING').ok, string.upper('b'), type(_G)}",
            &[],
            &[],
        ),
        b"*3\r\n$4\r\nPONG\r\n$1\r\nB\r\n$5\r\ntable\r\n",
    );
}

/// A pipeline of scripts is handed over without waiting for each reply;
/// whatever else is pipelined behind them (a command, a malformed
/// request) waits, so every reply comes back in request order.
#[test]
fn pipelined_scripts_reply_in_request_order() {
    let server = Server::start(&[]);
    let mut s = server.connect();
    let mut pipeline = Vec::new();
    let mut expected = Vec::new();
    for i in 0..40 {
        pipeline.extend(eval("return redis.call('INCR', KEYS[1])", &["ctr"], &[]));
        expected.extend(format!(":{}\r\n", i + 1).into_bytes());
        if i % 7 == 3 {
            pipeline.extend(req(&[b"GET", b"ctr"]));
            let v = (i + 1).to_string();
            expected.extend(format!("${}\r\n{v}\r\n", v.len()).into_bytes());
        }
        if i % 11 == 5 {
            pipeline.extend(req(&[b"NOSUCHCMD"]));
            expected.extend(b"-ERR unknown command 'NOSUCHCMD', with args beginning with: \r\n");
        }
    }
    pipeline.extend(req(&[b"PING"]));
    expected.extend(b"+PONG\r\n");
    expect(&mut s, &pipeline, &expected);
}

#[test]
fn script_cache_evalsha_and_read_only_scripts() {
    let server = Server::start(&[]);
    let mut s = server.connect();
    let sha = "e0e1f9fabfc9d4800c877a703b823ac0578ff8db"; // SHA1("return 1")
    expect(
        &mut s,
        &req(&[b"EVALSHA", sha.as_bytes(), b"0"]),
        b"-NOSCRIPT No matching script. Please use EVAL.\r\n",
    );
    expect(
        &mut s,
        &req(&[b"SCRIPT", b"LOAD", b"return 1"]),
        format!("$40\r\n{sha}\r\n").as_bytes(),
    );
    expect(&mut s, &req(&[b"EVALSHA", sha.as_bytes(), b"0"]), b":1\r\n");
    expect(
        &mut s,
        &req(&[b"EVALSHA", sha.to_uppercase().as_bytes(), b"0"]),
        b":1\r\n",
    );
    expect(
        &mut s,
        &req(&[b"SCRIPT", b"EXISTS", sha.as_bytes(), b"ffff"]),
        b"*2\r\n:1\r\n:0\r\n",
    );
    expect(&mut s, &req(&[b"SCRIPT", b"FLUSH"]), b"+OK\r\n");
    expect(
        &mut s,
        &req(&[b"SCRIPT", b"EXISTS", sha.as_bytes()]),
        b"*1\r\n:0\r\n",
    );
    expect(
        &mut s,
        &req(&[b"EVAL_RO", b"return redis.call('SET', 'a', 'b')", b"0"]),
        b"-ERR Write commands are not allowed from read-only scripts.\r\n",
    );
    expect(
        &mut s,
        &req(&[b"EVAL_RO", b"return redis.call('EXISTS', 'a')", b"0"]),
        b":0\r\n",
    );
    // Not inside MULTI (EXEC runs on a worker holding every shard).
    expect(&mut s, &req(&[b"MULTI"]), b"+OK\r\n");
    expect(
        &mut s,
        &eval("return 1", &[], &[]),
        b"-ERR Command not allowed inside a transaction\r\n",
    );
    expect(&mut s, &req(&[b"DISCARD"]), b"+OK\r\n");
    expect(
        &mut s,
        &req(&[
            b"COMMAND",
            b"GETKEYS",
            b"EVAL",
            b"return 1",
            b"2",
            b"k1",
            b"k2",
            b"arg",
        ]),
        b"*2\r\n$2\r\nk1\r\n$2\r\nk2\r\n",
    );
    expect(
        &mut s,
        &req(&[b"COMMAND", b"GETKEYS", b"EVAL", b"return 1", b"0"]),
        b"*0\r\n",
    );
}

#[test]
fn eval_keeps_at_most_500_scripts_and_evicts_the_oldest() {
    let server = Server::start(&[]);
    let mut s = server.connect();
    assert_eq!(
        first_line(&mut s, &req(&[b"SCRIPT", b"LOAD", b"return 'kept'"])),
        "$40"
    );
    let kept = read_line(&mut s);
    assert_eq!(
        first_line(&mut s, &eval("return redis.sha1hex('return 0')", &[], &[])),
        "$40"
    );
    let first = read_line(&mut s);
    for i in 0..600 {
        expect(
            &mut s,
            &eval(&format!("return {i}"), &[], &[]),
            format!(":{i}\r\n").as_bytes(),
        );
    }
    // 601 scripts cached by EVAL: the oldest 101 are gone, SCRIPT LOAD's
    // stays.
    assert_eq!(info_u64(&server, "number_of_cached_scripts"), 501);
    assert_eq!(info_u64(&server, "evicted_scripts"), 101);
    expect(
        &mut s,
        &req(&[b"EVALSHA", kept.as_bytes(), b"0"]),
        b"$4\r\nkept\r\n",
    );
    expect(
        &mut s,
        &req(&[b"SCRIPT", b"EXISTS", first.as_bytes()]),
        b"*1\r\n:0\r\n",
    );
}

#[test]
fn functions_load_call_list_and_delete() {
    let server = Server::start(&[]);
    let mut s = server.connect();
    let lib = b"#!lua name=mylib\n\
        redis.register_function('setit', function(keys, args) return redis.call('SET', keys[1], args[1]) end)\n\
        redis.register_function{function_name='getit', callback=function(keys) return redis.call('GET', keys[1]) end, flags={'no-writes'}}\n";
    expect(
        &mut s,
        &req(&[b"FUNCTION", b"LOAD", lib]),
        b"$5\r\nmylib\r\n",
    );
    expect(
        &mut s,
        &req(&[b"FUNCTION", b"LOAD", lib]),
        b"-ERR Library 'mylib' already exists\r\n",
    );
    expect(
        &mut s,
        &req(&[b"FUNCTION", b"LOAD", b"REPLACE", lib]),
        b"$5\r\nmylib\r\n",
    );
    expect(
        &mut s,
        &req(&[b"FCALL", b"setit", b"1", b"fk", b"fv"]),
        b"+OK\r\n",
    );
    expect(
        &mut s,
        &req(&[b"FCALL_RO", b"getit", b"1", b"fk"]),
        b"$2\r\nfv\r\n",
    );
    expect(
        &mut s,
        &req(&[b"FCALL_RO", b"setit", b"1", b"fk", b"x"]),
        b"-ERR Write commands are not allowed from read-only scripts.\r\n",
    );
    expect(
        &mut s,
        &req(&[b"FUNCTION", b"LIST"]),
        b"*1\r\n*6\r\n$12\r\nlibrary_name\r\n$5\r\nmylib\r\n$6\r\nengine\r\n$3\r\nLUA\r\n\
          $9\r\nfunctions\r\n*2\r\n\
          *6\r\n$4\r\nname\r\n$5\r\nsetit\r\n$11\r\ndescription\r\n$-1\r\n$5\r\nflags\r\n*0\r\n\
          *6\r\n$4\r\nname\r\n$5\r\ngetit\r\n$11\r\ndescription\r\n$-1\r\n$5\r\nflags\r\n*1\r\n$9\r\nno-writes\r\n",
    );
    expect(
        &mut s,
        &req(&[b"FUNCTION", b"LOAD", b"#!lua name=bad\nreturn 1"]),
        b"-ERR No functions registered\r\n",
    );
    expect(
        &mut s,
        &req(&[b"FUNCTION", b"LOAD", b"return 1"]),
        b"-ERR Missing library metadata\r\n",
    );
    // Library code that never ends is stopped at load.
    expect(
        &mut s,
        &req(&[b"FUNCTION", b"LOAD", b"#!lua name=spin\nwhile true do end"]),
        b"-ERR Error registering functions: ERR FUNCTION LOAD timeout\r\n",
    );
    expect(
        &mut s,
        &req(&[b"FUNCTION", b"DELETE", b"mylib"]),
        b"+OK\r\n",
    );
    expect(
        &mut s,
        &req(&[b"FCALL", b"setit", b"0"]),
        b"-ERR Function not found\r\n",
    );
    expect(&mut s, &req(&[b"FUNCTION", b"FLUSH"]), b"+OK\r\n");
    expect(&mut s, &req(&[b"FUNCTION", b"LIST"]), b"*0\r\n");
}

#[test]
fn a_busy_script_gets_busy_replies_and_script_kill_stops_it() {
    let server = Server::start_with(
        &["--threads", "2"],
        &[("MERKLE_KV_SCRIPTING_BUSY_REPLY_THRESHOLD_MS", "50")],
    );
    let mut runner = server.connect();
    let mut other = server.connect();
    let mut tx = server.connect();
    expect(&mut tx, &req(&[b"SET", b"xx", b"1"]), b"+OK\r\n");
    expect(&mut tx, &req(&[b"MULTI"]), b"+OK\r\n");
    expect(&mut tx, &req(&[b"INCR", b"xx"]), b"+QUEUED\r\n");
    runner
        .write_all(&eval("while true do end", &[], &[]))
        .unwrap();
    let busy = b"-BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.\r\n";
    // Other clients wait, then get -BUSY once the threshold passed (a
    // one-line reply: the script may not have started yet).
    let ok = wait_until(DEADLINE, || {
        other.write_all(&req(&[b"EXISTS", b"xx"])).unwrap();
        read_line(&mut other).starts_with("-BUSY")
    });
    assert!(ok, "no -BUSY while a script loops");
    expect(&mut other, &req(&[b"PING"]), busy);
    // EXEC during a busy script discards the transaction.
    expect(
        &mut tx,
        &req(&[b"EXEC"]),
        b"-EXECABORT Transaction discarded because of: BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.\r\n",
    );
    expect(&mut other, &req(&[b"FUNCTION", b"KILL"]), busy);
    expect(&mut other, &req(&[b"SCRIPT", b"KILL"]), b"+OK\r\n");
    expect(
        &mut runner,
        b"",
        b"-ERR Script killed by user with SCRIPT KILL...\r\n",
    );
    expect(&mut other, &req(&[b"GET", b"xx"]), b"$1\r\n1\r\n");
    expect(
        &mut other,
        &req(&[b"SCRIPT", b"KILL"]),
        b"-NOTBUSY No scripts in execution right now.\r\n",
    );
    assert_eq!(info_u64(&server, "scripts_killed"), 1);
    assert!(info_u64(&server, "script_busy_replies") >= 3);

    // A script that wrote cannot be killed (atomicity); SHUTDOWN stops it.
    runner
        .write_all(&eval(
            "redis.call('SET', 'w', '1') while true do end",
            &[],
            &[],
        ))
        .unwrap();
    let ok = wait_until(DEADLINE, || {
        other.write_all(&req(&[b"SCRIPT", b"KILL"])).unwrap();
        read_line(&mut other).starts_with("-UNKILLABLE")
    });
    assert!(ok, "a script that wrote was not reported unkillable");
    other.write_all(&req(&[b"SHUTDOWN"])).unwrap();
    let mut server = server;
    assert!(
        server.wait_exit(DEADLINE).is_some(),
        "SHUTDOWN did not stop a busy script"
    );
}

/// Lua's own pattern matcher is C code the instruction hook never
/// interrupts; a backtracking pattern would hold the node for hours. The
/// script's `string.find` (here as a method of the subject) checks for
/// `SCRIPT KILL` as it goes.
#[test]
fn script_kill_stops_a_backtracking_pattern_match() {
    let server = Server::start_with(
        &["--threads", "1"],
        &[("MERKLE_KV_SCRIPTING_BUSY_REPLY_THRESHOLD_MS", "50")],
    );
    let mut runner = server.connect();
    // Without an interruptible matcher the reply would never come.
    runner.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut other = server.connect();
    runner
        .write_all(&eval(
            "return (string.rep('a', 60)):find(string.rep('a*', 20) .. 'b')",
            &[],
            &[],
        ))
        .unwrap();
    let ok = wait_until(DEADLINE, || {
        other.write_all(&req(&[b"SCRIPT", b"KILL"])).unwrap();
        read_line(&mut other) == "+OK"
    });
    assert!(ok, "SCRIPT KILL never reached the pattern match");
    let reply = read_line(&mut runner);
    assert!(
        reply.contains("Script killed by user with SCRIPT KILL..."),
        "{reply}"
    );
    expect(&mut other, &req(&[b"PING"]), b"+PONG\r\n");
}

#[test]
fn helper_errors_and_nested_replies_are_redis_s() {
    let server = Server::start(&[]);
    let mut s = server.connect();
    let line = |s: &mut TcpStream, script: &str| first_line(s, &eval(script, &[], &[]));
    assert_eq!(
        line(&mut s, "return redis.sha1hex()"),
        "-ERR wrong number of arguments"
    );
    // A table hashes as the empty string (Redis's lua_tolstring gives NULL).
    assert_eq!(line(&mut s, "return redis.sha1hex({})"), "$40");
    assert_eq!(
        read_line(&mut s),
        "da39a3ee5e6b4b0d3255bfef95601890afd80709"
    );
    assert_eq!(
        line(&mut s, "return redis.status_reply(12)"),
        "-ERR wrong number or type of arguments"
    );
    assert_eq!(
        line(&mut s, "return redis.error_reply()"),
        "-ERR wrong number or type of arguments"
    );
    for script in [
        "return redis.call('set', 'a')",
        "return redis.call('get', 'a', 'b')",
    ] {
        assert_eq!(
            line(&mut s, script),
            "-ERR Wrong number of args calling Redis command from script",
            "{script}"
        );
    }
    // 1,000 levels convert as they are.
    let mut want = "*1\r\n".repeat(1000).into_bytes();
    want.extend_from_slice(b"*0\r\n");
    expect(
        &mut s,
        &eval(
            "local t = {} local c = t for i = 1, 1000 do c[1] = {} c = c[1] end return t",
            &[],
            &[],
        ),
        &want,
    );
    // A table that contains itself: one-element arrays down to the
    // limit, then the error in place of the table; the connection and
    // the node go on.
    s.write_all(&eval(
        "local a = {} local b = {a} a[1] = b return a",
        &[],
        &[],
    ))
    .unwrap();
    let mut levels = 0;
    let last = loop {
        let l = read_line(&mut s);
        if l != "*1" {
            break l;
        }
        levels += 1;
    };
    assert_eq!(last, "-ERR reached lua stack limit");
    assert!((1000..=7995).contains(&levels), "{levels}");
    expect(&mut s, &req(&[b"PING"]), b"+PONG\r\n");
}

/// The `cjson` and `bit` libraries of Redis's Lua, bytes as redis-server
/// 7.0.15 gives them.
#[test]
fn cjson_and_bit_libraries() {
    let server = Server::start(&[]);
    let mut s = server.connect();
    expect(
        &mut s,
        &eval(
            "return cjson.encode({KEYS[1], {n = 1.5}, true})",
            &["a/b"],
            &[],
        ),
        b"$23\r\n[\"a\\/b\",{\"n\":1.5},true]\r\n",
    );
    expect(
        &mut s,
        &eval(
            "local d = cjson.decode(ARGV[1]) return {d.k, d.list[2], d.list[3] == cjson.null and 'null' or 'x'}",
            &[],
            &[r#"{"k": "v", "list": [1, 2.5e1, null]}"#],
        ),
        b"*3\r\n$1\r\nv\r\n:25\r\n$4\r\nnull\r\n",
    );
    assert!(
        first_line(&mut s, &eval("return cjson.decode('[1,')", &[], &[]))
            .contains("Expected value but found T_END at character 4")
    );
    expect(
        &mut s,
        &eval(
            "return {bit.band(7, 3), bit.bor(1, 2, 4, 8, 16, 32, 64, 128), bit.bxor(1, 2), \
             bit.lshift(1, 4), bit.tobit(4294967297), bit.tohex(255)}",
            &[],
            &[],
        ),
        b"*6\r\n:3\r\n:255\r\n:3\r\n:16\r\n:1\r\n$8\r\n000000ff\r\n",
    );
    for script in ["cjson.encode = function() return 1 end", "bit.lshift = nil"] {
        assert!(
            first_line(&mut s, &eval(script, &[], &[]))
                .contains("Attempt to modify a readonly table"),
            "{script}"
        );
    }
}

/// Redis 7's `#!lua` shebang on EVAL: errors as redis-server 7.0.15
/// words them, line numbers kept, `flags=no-writes` makes a read-only
/// script (also when run again by EVALSHA).
#[test]
fn eval_reads_a_lua_shebang() {
    let server = Server::start(&[]);
    let mut s = server.connect();
    let line = |s: &mut TcpStream, script: &str| first_line(s, &eval(script, &["x"], &[]));
    assert_eq!(
        line(&mut s, "#!not-lua\nreturn 1"),
        "-ERR Unexpected engine in script shebang: #!not-lua"
    );
    assert_eq!(
        line(&mut s, "#!lua badger=data\nreturn 1"),
        "-ERR Unknown lua shebang option: badger=data"
    );
    assert_eq!(
        line(&mut s, "#!lua flags=allow-oom,what?\nreturn 1"),
        "-ERR Unexpected flag in script shebang: what?"
    );
    assert_eq!(line(&mut s, "#!lua"), "-ERR Invalid script shebang");
    assert_eq!(line(&mut s, "#!lua flags=allow-oom\nreturn 1"), ":1");
    assert_eq!(
        line(&mut s, "#!lua\nreturn x +"),
        "-ERR Error compiling script (new function): user_script:2: unexpected symbol near '<eof>'"
    );
    let ro = "#!lua flags=no-writes\nredis.call('set', KEYS[1], 1) return 1";
    assert_eq!(
        line(&mut s, ro),
        "-ERR Write commands are not allowed from read-only scripts."
    );
    let sha = first_line(&mut s, &req(&[b"SCRIPT", b"LOAD", ro.as_bytes()]));
    assert_eq!(sha, "$40");
    let sha = read_line(&mut s);
    assert_eq!(
        first_line(&mut s, &req(&[b"EVALSHA", sha.as_bytes(), b"1", b"x"])),
        "-ERR Write commands are not allowed from read-only scripts."
    );
    expect(&mut s, &req(&[b"EXISTS", b"x"]), b":0\r\n");
}

/// Scripts that try to outlive `SCRIPT KILL`: catching the kill error with
/// `pcall`/`xpcall` and looping on (after the kill every line raises it
/// again and those pass it on), or looping inside a coroutine (which does
/// not run the state's hook by itself). Afterwards scripts run as before.
#[test]
fn script_kill_stops_scripts_that_catch_it_or_hide_in_coroutines() {
    let server = Server::start_with(
        &["--threads", "1"],
        &[("MERKLE_KV_SCRIPTING_BUSY_REPLY_THRESHOLD_MS", "10")],
    );
    let mut runner = server.connect();
    runner.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut other = server.connect();
    for script in [
        "local f = function() while 1 do redis.call('ping') end end while 1 do pcall(f) end",
        "coroutine.wrap(function() while 1 do end end)()",
        "local co = coroutine.create(function() while 1 do \
           pcall(function() while 1 do end end) end end) \
         while 1 do pcall(coroutine.resume, co) end",
        "while 1 do xpcall(function() while 1 do end end, function(e) return e end) end",
    ] {
        runner.write_all(&eval(script, &[], &[])).unwrap();
        let ok = wait_until(DEADLINE, || {
            other.write_all(&req(&[b"SCRIPT", b"KILL"])).unwrap();
            read_line(&mut other) == "+OK"
        });
        assert!(ok, "never busy: {script}");
        assert_eq!(
            read_line(&mut runner),
            "-ERR Script killed by user with SCRIPT KILL...",
            "{script}"
        );
        expect(&mut other, &req(&[b"PING"]), b"+PONG\r\n");
    }
    // The hook is the ordinary one again: a long script runs to its end,
    // a script's own pcall still catches its own errors, and coroutines
    // work as Lua's.
    expect(
        &mut runner,
        &eval(
            "local n = 0 for i = 1, 100000 do n = n + i end return n",
            &[],
            &[],
        ),
        b":5000050000\r\n",
    );
    expect(
        &mut runner,
        &eval(
            "local ok, e = pcall(function() error('mine') end) return {tostring(ok), e}",
            &[],
            &[],
        ),
        b"*2\r\n$5\r\nfalse\r\n$19\r\nuser_script:1: mine\r\n",
    );
    expect(
        &mut runner,
        &eval(
            "local co = coroutine.create(function(a) local b = coroutine.yield(a + 1) return b * 2 end) \
             local _, x = coroutine.resume(co, 1) local _, y = coroutine.resume(co, 10) \
             local g = coroutine.wrap(function() for i = 1, 2 do coroutine.yield(i) end end) \
             return {x, y, coroutine.status(co), g(), g()}",
            &[],
            &[],
        ),
        b"*5\r\n:2\r\n:20\r\n$4\r\ndead\r\n:1\r\n:2\r\n",
    );
}

/// Lua 5.1 bytecode can be crafted to reach memory outside the VM: a
/// script body that is bytecode (here `string.dump`'s own output) is
/// refused, with redis-server 7.0.15's error.
#[test]
fn bytecode_is_never_loaded() {
    let server = Server::start(&[]);
    let mut s = server.connect();
    s.write_all(&eval(
        "return string.dump(function() return 42 end)",
        &[],
        &[],
    ))
    .unwrap();
    let head = read_line(&mut s);
    let n: usize = head[1..].parse().unwrap();
    let mut dump = common::read_n(&mut s, n + 2);
    dump.truncate(n);
    assert_eq!(dump[0], 0x1b, "string.dump gives bytecode");
    let refused =
        b"-ERR Error compiling script (new function): user_script:1: unexpected symbol near 'char(27)'\r\n";
    expect(&mut s, &req(&[b"EVAL", &dump, b"0"]), refused);
    expect(&mut s, &req(&[b"SCRIPT", b"LOAD", &dump]), refused);
    expect(&mut s, &eval("return 1", &[], &[]), b":1\r\n");
}

#[test]
fn deep_pcall_recursion_is_the_scripts_error_not_a_crash() {
    // Lua 5.1 stops at 200 nested C calls: each level returns `true`, the
    // innermost `false, "C stack overflow"`. redis-server 7.0.15 answers
    // 200 elements; here the script itself starts one C call deeper (mlua
    // calls it through a protected C function), so 199. (Debug builds once
    // aborted here on a Lua API assertion.)
    let server = Server::start(&[]);
    let mut s = server.connect();
    let mut want = b"*199\r\n".to_vec();
    for _ in 0..197 {
        want.extend_from_slice(b":1\r\n");
    }
    want.extend_from_slice(b"$-1\r\n$16\r\nC stack overflow\r\n");
    expect(
        &mut s,
        &eval(
            "local function f() return pcall(f) end return {f()}",
            &[],
            &[],
        ),
        &want,
    );
    expect(&mut s, &eval("return 7", &[], &[]), b":7\r\n");
}

#[test]
fn script_limits_are_enforced_counted_and_reported() {
    let server = Server::start_with(&[], &[("MERKLE_KV_SCRIPTING_MAX_MEMORY", "2097152")]);
    let mut s = server.connect();
    expect(
        &mut s,
        &eval(
            "local t = {} for i = 1, 10000000 do t[i] = 'value' .. i end return #t",
            &[],
            &[],
        ),
        b"-ERR script used more than scripting.max_memory (Lua heap limit)\r\n",
    );
    // The state is usable afterwards.
    expect(&mut s, &eval("return 7", &[], &[]), b":7\r\n");
    // Cached scripts live in the same bounded heap: loading ever more is
    // refused, and the node goes on serving.
    let refused = (0..8).find_map(|i| {
        let body = format!("return '{}{i}'", "x".repeat(600 << 10));
        let line = first_line(&mut s, &req(&[b"SCRIPT", b"LOAD", body.as_bytes()]));
        if line.starts_with('$') {
            let _ = read_line(&mut s);
            None
        } else {
            Some(line)
        }
    });
    let refused = refused.expect("8 scripts of 600 KiB fit in a 2 MiB script heap");
    assert!(refused.contains("scripting.max_memory"), "{refused}");
    expect(&mut s, &eval("return 8", &[], &[]), b":8\r\n");
    expect(&mut s, &req(&[b"SCRIPT", b"FLUSH"]), b"+OK\r\n");
    let body = format!("return '{}'", "z".repeat(600 << 10));
    assert!(first_line(&mut s, &req(&[b"SCRIPT", b"LOAD", body.as_bytes()])).starts_with("$40"));
    let _ = read_line(&mut s);
    // EVAL of ever new scripts evicts the oldest it cached when the heap
    // is full, instead of failing from then on.
    for i in 0..12 {
        let body = format!("return #'{}{i}'", "e".repeat(300 << 10));
        assert!(
            first_line(&mut s, &eval(&body, &[], &[])).starts_with(':'),
            "EVAL {i} failed on a full script heap"
        );
    }
    assert!(info_u64(&server, "evicted_scripts") >= 1);
    assert!(info_u64(&server, "script_memory_limit_hits") >= 1);
    assert_eq!(info_u64(&server, "script_max_memory"), 2097152);

    let off = Server::start_with(&[], &[("MERKLE_KV_SCRIPTING_ENABLED", "false")]);
    let mut o = off.connect();
    expect(
        &mut o,
        &eval("return 1", &[], &[]),
        b"-ERR scripting is disabled on this node (scripting.enabled = false)\r\n",
    );
}

#[test]
fn monitor_shows_the_commands_a_script_runs() {
    let server = Server::start(&[]);
    let mut mon = server.connect();
    expect(&mut mon, &req(&[b"MONITOR"]), b"+OK\r\n");
    let mut s = server.connect();
    expect(
        &mut s,
        &eval(
            "return redis.call('SET', KEYS[1], ARGV[1])",
            &["mk"],
            &["mv"],
        ),
        b"+OK\r\n",
    );
    let first = read_line(&mut mon);
    assert!(first.contains("\"EVAL\""), "{first}");
    let second = read_line(&mut mon);
    assert!(second.contains("[0 lua] \"SET\" \"mk\" \"mv\""), "{second}");
}

/// Reads one whole reply (any RESP2/RESP3 type) and returns its bytes.
fn read_reply(s: &mut TcpStream) -> Vec<u8> {
    let line = read_line(s);
    let mut out = format!("{line}\r\n").into_bytes();
    let n = || line[1..].parse::<i64>().unwrap();
    match line.as_bytes()[0] {
        b'$' if n() >= 0 => out.extend(common::read_n(s, n() as usize + 2)),
        b'*' | b'>' if n() > 0 => (0..n()).for_each(|_| out.extend(read_reply(s))),
        b'%' if n() > 0 => (0..2 * n()).for_each(|_| out.extend(read_reply(s))),
        _ => {}
    }
    out
}

#[test]
fn a_script_publishing_to_its_own_caller_gets_its_reply_first() {
    let server = Server::start(&[]);
    let mut s = server.connect();
    s.write_all(&req(&[b"HELLO", b"3"])).unwrap();
    let hello = read_reply(&mut s);
    assert!(
        hello.starts_with(b"%"),
        "{}",
        String::from_utf8_lossy(&hello)
    );
    expect(
        &mut s,
        &req(&[b"SUBSCRIBE", b"foo"]),
        b">3\r\n$9\r\nsubscribe\r\n$3\r\nfoo\r\n:1\r\n",
    );
    expect(
        &mut s,
        &eval(
            "redis.call('PUBLISH', 'foo', 'bar') redis.call('PUBLISH', 'foo', 'vaz') return 'bla'",
            &[],
            &[],
        ),
        b"$3\r\nbla\r\n\
          >3\r\n$7\r\nmessage\r\n$3\r\nfoo\r\n$3\r\nbar\r\n\
          >3\r\n$7\r\nmessage\r\n$3\r\nfoo\r\n$3\r\nvaz\r\n",
    );
}

#[test]
fn script_writes_replicate_like_any_write() {
    let broker = Broker::start();
    let a = replicated_node("script-a", broker.port, "");
    let b = replicated_node("script-b", broker.port, "");
    wait_connected(&a);
    wait_connected(&b);
    let mut s = a.connect();
    expect(
        &mut s,
        &eval(
            "redis.call('SET', KEYS[1], ARGV[1]); redis.call('INCRBY', KEYS[2], 5); return 1",
            &["sk", "sn"],
            &["from-lua"],
        ),
        b":1\r\n",
    );
    wait_value(&b, "sk", "VALUE from-lua");
    wait_value(&b, "sn", "VALUE 5");
    // Node b never ran the script: its own cache is empty.
    let mut t = b.connect();
    expect(
        &mut t,
        &req(&[
            b"SCRIPT",
            b"EXISTS",
            b"e0e1f9fabfc9d4800c877a703b823ac0578ff8db",
        ]),
        b"*1\r\n:0\r\n",
    );
}

/// A script's writes go to its own log segment and are committed before
/// its reply (`fsync = "always"`): they survive kill -9.
#[test]
fn script_writes_are_durable_before_the_reply() {
    let mut node = common::durable::DurableNode::new("script-durable", 2, 3600, "");
    node.start();
    let mut s = node.server().connect();
    expect(
        &mut s,
        &eval(
            "redis.call('SET', 'dk', 'dv') return redis.call('INCRBY', 'dn', 7)",
            &[],
            &[],
        ),
        b":7\r\n",
    );
    node.kill9();
    node.start();
    let mut t = node.server().connect();
    expect(
        &mut t,
        &req(&[b"MGET", b"dk", b"dn"]),
        b"*2\r\n$2\r\ndv\r\n$1\r\n7\r\n",
    );
}
