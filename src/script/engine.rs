//! The script thread: one Lua state, the script cache, the function
//! libraries, and the run of one script at a time (module docs of
//! [`crate::script`]).
//!
//! Conversions follow Redis (RESP2 replies of `redis.call` to Lua values,
//! Lua return values to replies):
//!
//! | reply | Lua | | Lua | reply |
//! |---|---|---|---|---|
//! | integer | number | | number | integer (truncated) |
//! | bulk string | string | | string | bulk string |
//! | nil bulk / nil array | `false` | | `false`, `nil` | nil |
//! | array | table (sequence) | | `true` | integer 1 |
//! | status | `{ok = s}` | | table with `err` / `ok` | error / status |
//! | error | `{err = s}` (raised by `redis.call`) | | other table | array up to its first `nil` |

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use mlua::{
    Function, HookTriggers, Lua, LuaOptions, StdLib, Table, Value, Variadic, VmState,
    chunk::ChunkMode,
};
use sha1::{Digest, Sha1};

use super::gate;
use super::{Admin, Call, Run};
use crate::exec::{self, Ctx, Flow};
use crate::jobs::{Job, Responder, Task};
use crate::protocol::redis::RunKind;
use crate::protocol::reply::{self, Proto};
use crate::protocol::{Parsed, resp};
use crate::state::Shared;
use crate::stats::{ClientInfo, WorkerStats};

/// Time library code may run at `FUNCTION LOAD` (Redis's limit).
const LOAD_TIMEOUT: Duration = Duration::from_millis(500);
/// Lua instructions between two calls of the kill/busy hook.
const HOOK_EVERY: u32 = 10_000;
/// The error of a script (or a compilation) past the Lua heap limit.
const MEMORY_ERROR: &str = "ERR script used more than scripting.max_memory (Lua heap limit)";
/// Scripts `EVAL` keeps cached before it evicts the oldest (Redis 7.4's
/// number).
pub const MAX_EVAL_SCRIPTS: usize = 500;
/// Stack of the script thread (see `spawn`).
const SCRIPT_STACK: usize = 64 << 20;
/// Deepest reply a command run by a script may give it (deeper is an
/// error; this server's replies nest two levels at most).
const MAX_DEPTH: usize = 64;
/// Deepest table a script may return: as in Redis, where its Lua stack
/// runs out there, the reply holds the arrays down to this depth and an
/// error in place of the table below (a table that contains itself ends
/// the same way).
const MAX_REPLY_DEPTH: usize = 7995;

/// INFO `# Scripting`: the limits in force, what the cache holds, and how
/// often each limit was hit.
pub struct ScriptingInfo;

impl crate::state::InfoSection for ScriptingInfo {
    fn title(&self) -> Option<&'static str> {
        Some("Scripting")
    }

    fn write_info(&self, shared: &Shared, _db: crate::store::Db<'_>, s: &mut String) {
        use std::fmt::Write as _;
        let sc = &shared.scripting;
        let c = &sc.counters;
        let g = |a: &AtomicU64| a.load(Relaxed);
        let _ = write!(
            s,
            "scripting_enabled:{}\r\nbusy_reply_threshold_ms:{}\r\nscript_max_memory:{}\r\n\
             used_memory_lua:{}\r\nused_memory_scripts_source:{}\r\nnumber_of_cached_scripts:{}\r\n\
             number_of_libraries:{}\r\nnumber_of_functions:{}\r\nscript_running:{}\r\n\
             scripts_run:{}\r\nscripts_failed:{}\r\nscripts_killed:{}\r\nscript_busy_replies:{}\r\n\
             script_memory_limit_hits:{}\r\nscript_cache_full_refusals:{}\r\nevicted_scripts:{}\r\n",
            u8::from(shared.config.scripting.enabled),
            sc.threshold().as_millis(),
            shared.config.scripting.max_memory,
            g(&c.lua_memory),
            g(&c.source_bytes),
            g(&c.cached_scripts),
            g(&c.libraries),
            g(&c.functions),
            u8::from(sc.gate.running()),
            g(&c.scripts_run),
            g(&c.scripts_failed),
            g(&c.scripts_killed),
            g(&c.busy_replies),
            g(&c.memory_limit_hits),
            g(&c.cache_full_refusals),
            g(&c.evicted_scripts),
        );
    }
}

/// A cached script.
struct Script {
    func: Function,
    bytes: usize,
    /// Cached by `EVAL` (evictable), not by `SCRIPT LOAD`.
    by_eval: bool,
    /// Compiled for one run only (the source space was full): `run_call`
    /// drops it after the run.
    transient: bool,
    /// Its `#!lua flags=no-writes` shebang: it runs as a read-only script.
    no_writes: bool,
}

/// Flags a `#!lua` shebang may give (Redis 7.0's). Only `no-writes`
/// changes anything here: the others concern OOM, stale replicas and
/// cluster slots, which this server's scripts do not distinguish.
const SHEBANG_FLAGS: [&str; 5] = [
    "no-writes",
    "allow-oom",
    "allow-stale",
    "no-cluster",
    "allow-cross-slot-keys",
];

/// An `EVAL` script's `#!` line, as Redis 7.0 reads it: `None` without
/// one, else the length of the line (its newline stays in the source, so
/// line numbers do not move) and whether it says `no-writes`.
fn shebang(body: &[u8]) -> Result<Option<(usize, bool)>, String> {
    if !body.starts_with(b"#!") {
        return Ok(None);
    }
    let Some(end) = memchr::memchr(b'\n', body) else {
        return Err("ERR Invalid script shebang".into());
    };
    let line = String::from_utf8_lossy(&body[..end]);
    let mut parts = line.split_ascii_whitespace();
    match parts.next() {
        Some("#!lua") => {}
        Some(other) => {
            return Err(format!("ERR Unexpected engine in script shebang: {other}"));
        }
        None => return Err("ERR Invalid engine in script shebang".into()),
    }
    let mut no_writes = false;
    for part in parts {
        let Some(flags) = part.strip_prefix("flags=") else {
            return Err(format!("ERR Unknown lua shebang option: {part}"));
        };
        for flag in flags.split(',') {
            if !SHEBANG_FLAGS.contains(&flag) {
                return Err(format!("ERR Unexpected flag in script shebang: {flag}"));
            }
            no_writes |= flag == "no-writes";
        }
    }
    Ok(Some((end, no_writes)))
}

/// A library loaded by `FUNCTION LOAD`.
struct Library {
    code: Vec<u8>,
    /// Its functions: name and whether it is flagged `no-writes`.
    functions: Vec<(String, bool)>,
}

/// A registered function.
struct Func {
    func: Function,
    no_writes: bool,
}

/// The script thread's state.
pub struct Engine {
    shared: Arc<Shared>,
    lua: Lua,
    stats: Arc<WorkerStats>,
    client: Arc<ClientInfo>,
    log: Option<crate::persist::LogWriter>,
    scratch: Vec<u8>,
    scripts: HashMap<String, Script>,
    /// The scripts `EVAL` cached, oldest first: past [`MAX_EVAL_SCRIPTS`]
    /// (or when the heap is full) the oldest are evicted, as Redis 7.4
    /// does, so applications that build a new script per call do not fill
    /// the cache. May hold names already flushed or reloaded.
    eval_order: std::collections::VecDeque<String>,
    libs: BTreeMap<String, Library>,
    funcs: HashMap<String, Func>,
    source_bytes: usize,
    /// What stops a running script, and why the running one was stopped.
    stop: Rc<Stop>,
    /// Lua's `pcall`, to run a script and keep its error value.
    pcall: Function,
    /// The sandbox's globals, behind the read-only globals table (see
    /// [`LOCK_GLOBALS`]); scripts cannot reach it.
    backing: Table,
    /// The read-only proxies (`redis` and the libraries: PRELUDE's
    /// `readonly`): fields a script `rawset` into them are removed after
    /// every run.
    proxies: Vec<Table>,
    /// A script called `rawset` or `collectgarbage`: the next
    /// `clean_globals` restores everything (else it only drops `KEYS` and
    /// `ARGV`).
    dirty: Rc<Cell<bool>>,
}

/// Starts the script thread.
pub fn spawn(shared: Arc<Shared>) -> std::io::Result<std::thread::JoinHandle<()>> {
    let stats = shared.stats.worker(shared.config.threads.max(1));
    std::thread::Builder::new()
        .name("script".into())
        // Lua bounds nested C calls at 200 (`C stack overflow`), but each
        // level through a Rust callback (a `gsub` replacement calling
        // `gsub` …) takes more than the default 2 MiB / 200; only the
        // pages used are backed by memory.
        .stack_size(SCRIPT_STACK)
        .spawn(move || {
            crate::failfast::checkpoint();
            let stop = shared.shutdown.subscribe();
            let jobs = shared.scripts.1.clone();
            run(shared, jobs, stop, stats);
        })
}

/// Runs the script thread until shutdown.
fn run(shared: Arc<Shared>, jobs: Receiver<Job>, stop: Receiver<()>, stats: Arc<WorkerStats>) {
    let mut engine = match Engine::new(shared, stats) {
        Ok(e) => e,
        Err(e) => {
            log::error!("scripting unavailable: Lua state: {e}");
            loop {
                crossbeam_channel::select! {
                    recv(stop) -> _ => return,
                    recv(jobs) -> job => match job {
                        Ok(job) => job.responder.respond(Err(format!("scripting unavailable: {e}"))),
                        Err(_) => return,
                    },
                }
            }
        }
    };
    // Work taken from the channel but not done yet (a batch cut short).
    let mut pending: std::collections::VecDeque<Work> = Default::default();
    loop {
        let work = match pending.pop_front() {
            Some(w) => w,
            None => crossbeam_channel::select! {
                recv(stop) -> _ => break,
                recv(jobs) -> job => match job {
                    Ok(job) => Work::Job(job),
                    Err(_) => break,
                },
            },
        };
        let first = match work {
            Work::Job(job) if !is_run(&job) => {
                let Task::Script(Call::Admin(call)) = job.task else {
                    job.responder.respond(Err("not a script job".into()));
                    continue;
                };
                let bytes = engine.handle(call);
                engine.commit();
                job.responder.send(bytes);
                continue;
            }
            w => engine.ready(w),
        };
        // The scripts already queued behind this one run under the same
        // closed gate and exclusive hold (module docs: batches).
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            let next = pending
                .pop_front()
                .or_else(|| jobs.try_recv().ok().map(Work::Job));
            match next {
                Some(Work::Job(j)) if !is_run(&j) => {
                    pending.push_front(Work::Job(j));
                    break;
                }
                Some(w) => batch.push(engine.ready(w)),
                None => break,
            }
        }
        let answered = engine.run_batch(&mut batch);
        // Group commit: every script's writes are in the log (fsynced
        // under `fsync = always`) before any of their replies leaves.
        engine.commit();
        for (bytes, responder) in answered {
            responder.send(bytes);
        }
        // Scripts left when the batch ran out of time go first next.
        for (r, responder) in batch.into_iter().rev() {
            pending.push_front(Work::Ready(r, responder));
        }
    }
}

/// A job of the script thread: as received, or a script already prepared
/// (put back by a batch that ran out of time).
enum Work {
    Job(Job),
    Ready(Result<Prepared, Vec<u8>>, Responder),
}

/// Scripts run under one closed gate at most (then the workers get a turn).
const MAX_BATCH: usize = 64;
/// Time after which a batch stops starting scripts.
const BATCH_TIME: Duration = Duration::from_millis(1);

fn is_run(job: &Job) -> bool {
    matches!(job.task, Task::Script(Call::Run(_)))
}

/// A script ready to run: its function and how.
struct Prepared {
    func: Function,
    ro: bool,
    function: bool,
    name: String,
    keys: Vec<Vec<u8>>,
    args: Vec<Vec<u8>>,
    resp3: bool,
    user: Option<usize>,
}

/// What stops a running script: the check the Lua hook, the pattern
/// matcher and the reply conversion make, and the reason it found, kept
/// until the run ends (`Engine::end_run`).
struct Stop {
    shared: Arc<Shared>,
    /// Monotonic nanoseconds at which running library code is stopped
    /// (`FUNCTION LOAD`); 0: none.
    load_deadline: Cell<u64>,
    /// Why the running script was stopped (kill, shutdown, load timeout);
    /// `None` while it runs normally.
    reason: Cell<Option<&'static str>>,
}

impl Stop {
    /// The `FUNCTION LOAD` deadline, shutdown, `SCRIPT KILL`; past the busy
    /// threshold it marks the script busy (`Gate::check`).
    fn check(&self) -> Result<(), &'static str> {
        let d = self.load_deadline.get();
        let r = if d != 0 && crate::clock::mono_nanos() > d {
            Err("FUNCTION LOAD timeout")
        } else if self.shared.shutdown.is_triggered() {
            Err(gate::SHUTTING_DOWN)
        } else {
            let s = &self.shared.scripting;
            s.gate.check(s.threshold()).map_or(Ok(()), Err)
        };
        if let Err(m) = r {
            self.reason.set(Some(m));
        }
        r
    }
}

/// The Lua hook: every [`HOOK_EVERY`] instructions it runs [`Stop::check`].
/// Once that stops the script, the hook raises the same error at every
/// line and instruction until the script has ended (`Engine::end_run`
/// restores this one), so a script cannot survive `SCRIPT KILL` by
/// catching the error with `pcall`: the next line outside the `pcall`
/// raises it again (Redis does the same with a line hook).
fn install_hook(lua: &Lua, stop: &Rc<Stop>) -> mlua::Result<()> {
    lua.set_hook(
        HookTriggers::new().every_nth_instruction(HOOK_EVERY),
        hook(stop),
    )
}

/// The hook's function (see [`install_hook`]); also given to every
/// coroutine a script creates, which does not run the state's hook.
fn hook(stop: &Rc<Stop>) -> impl Fn(&Lua, &mlua::debug::Debug) -> mlua::Result<VmState> + 'static {
    let stop = stop.clone();
    move |lua, _| match stop.check() {
        Err(msg) => {
            lua.set_hook(
                HookTriggers::new().every_line().every_nth_instruction(1),
                move |_, _| Err(mlua::Error::runtime(msg)),
            )?;
            Err(mlua::Error::runtime(msg))
        }
        Ok(()) => Ok(VmState::Continue),
    }
}

/// Compiles a script's or a library's code, named `name` in its errors.
/// Source only: Lua 5.1 bytecode can be crafted to read and write memory
/// outside the VM. A chunk that starts with bytecode's escape byte gets
/// the error Redis's text-only parser gives it, and the chunk is loaded
/// in text mode whatever it starts with.
fn load_source(lua: &Lua, body: &[u8], name: &str) -> mlua::Result<Function> {
    if body.first() == Some(&0x1b) {
        return Err(mlua::Error::SyntaxError {
            message: format!("{name}:1: unexpected symbol near 'char(27)'"),
            incomplete_input: false,
        });
    }
    lua.load(body)
        .set_mode(ChunkMode::Text)
        .set_name(format!("@{name}"))
        .into_function()
}

fn hex_sha1(data: &[u8]) -> String {
    let d = Sha1::digest(data);
    let mut s = String::with_capacity(40);
    for b in d.iter() {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// The Lua side of the sandbox: `redis.call`/`pcall` over the Rust
/// callback, read-only library tables, protected globals.
const PRELUDE: &str = r#"
local rawget, error, type, setmetatable, tostring = rawget, error, type, setmetatable, tostring
local R = __mkv_redis
__mkv_redis = nil
-- Once the hook stopped the script, whatever catches errors (pcall,
-- xpcall, coroutine.resume) raises the stop again instead of returning,
-- in any coroutine, so a script cannot catch its way past SCRIPT KILL.
local stopped = __mkv_stopped
__mkv_stopped = nil
local function after(...)
  local m = stopped()
  if m then error(m, 0) end
  return ...
end
local raw_pcall, raw_xpcall, raw_resume = pcall, xpcall, coroutine.resume
pcall = function(...) return after(raw_pcall(...)) end
xpcall = function(...) return after(raw_xpcall(...)) end
coroutine.resume = function(...) return after(raw_resume(...)) end
local create = coroutine.create
-- The coroutine's error, raised again in the caller (Lua's own wrap also
-- prefixes the caller's position to a string error; this does not).
local function rethrow(ok, ...)
  if not ok then error((...), 0) end
  return ...
end
coroutine.wrap = function(f)
  local co = create(f)
  return function(...) return rethrow(after(raw_resume(co, ...))) end
end
R.call = function(...)
  local r = rawget(R, '__mkv')(...)
  if type(r) == 'table' and r.err ~= nil then error(r, 0) end
  return r
end
R.pcall = function(...) return rawget(R, '__mkv')(...) end
-- The read-only proxies, returned to the engine as a set.
local protected = {}
local function readonly(t)
  local p = setmetatable({}, {__index = t, __metatable = false,
    __newindex = function() error("Attempt to modify a readonly table", 2) end})
  protected[p] = true
  return p
end
redis = readonly(R)
string = readonly(string)
table = readonly(table)
math = readonly(math)
coroutine = readonly(coroutine)
cjson = readonly(cjson)
bit = readonly(bit)
return protected
"#;

/// Makes the globals read-only, as Redis 7 does: every global has moved to
/// a backing table `B` the (now empty) globals table `G` reads through, so
/// assigning any global, new or existing, raises `Attempt to modify a
/// readonly table`; reading an undefined one raises Redis's error.
/// `getmetatable(_G)` gives a read-only stand-in, and `setmetatable` on
/// `_G` or a read-only table raises the same error.
const LOCK_GLOBALS: &str = r#"
local G, B, protected = ...
local error, tostring, rawequal = B.error, B.tostring, B.rawequal
local raw_setmetatable = B.setmetatable
local function ro() error("Attempt to modify a readonly table", 2) end
-- B itself is out of scripts' reach: only its reads need a metatable.
raw_setmetatable(B, {
  __index = function(_, k) error("Script attempted to access nonexistent global variable '" .. tostring(k) .. "'", 2) end})
B.setmetatable = function(t, mt)
  if rawequal(t, G) or protected[t] then error("Attempt to modify a readonly table", 2) end
  return raw_setmetatable(t, mt)
end
local shown = raw_setmetatable({}, {__metatable = false, __newindex = ro})
raw_setmetatable(G, {__index = B, __newindex = ro, __metatable = shown})
"#;

impl Engine {
    fn new(shared: Arc<Shared>, stats: Arc<WorkerStats>) -> mlua::Result<Engine> {
        let lua = Lua::new_with(
            StdLib::TABLE | StdLib::STRING | StdLib::MATH,
            LuaOptions::new(),
        )?;
        let g = lua.globals();
        for name in [
            "dofile",
            "loadfile",
            "loadstring",
            "load",
            "print",
            "getfenv",
            "setfenv",
            "module",
            "require",
            "newproxy",
            "gcinfo",
        ] {
            g.raw_set(name, Value::Nil)?;
        }
        // Pattern matching the interrupt check reaches (script/strlib.rs),
        // in the real string table (also behind `("x"):find`).
        let stop = Rc::new(Stop {
            shared: shared.clone(),
            load_deadline: Cell::new(0),
            reason: Cell::new(None),
        });
        let check: super::strlib::Check = {
            let stop = stop.clone();
            Rc::new(move || stop.check().map_err(str::to_string))
        };
        let string: Table = g.raw_get("string")?;
        super::strlib::install(&lua, &string, check)?;
        // The string metatable's __index is the real string table: hide it.
        let smt: Table = lua.load("return getmetatable('')").eval()?;
        smt.raw_set("__metatable", false)?;

        let redis = lua.create_table()?;
        // Redis's argument checks and error texts for its helpers.
        redis.raw_set(
            "sha1hex",
            // A string or a number; any other value hashes as "".
            lua.create_function(|lua, v: Variadic<Value>| match v.as_slice() {
                [Value::String(s)] => Ok(hex_sha1(&s.as_bytes())),
                [n] => Ok(match lua.coerce_string(n.clone()) {
                    Ok(Some(s)) => hex_sha1(&s.as_bytes()),
                    _ => hex_sha1(b""),
                }),
                _ => Err(mlua::Error::runtime("wrong number of arguments")),
            })?,
        )?;
        for (name, field) in [("error_reply", "err"), ("status_reply", "ok")] {
            redis.raw_set(
                name,
                lua.create_function(move |lua, v: Variadic<Value>| {
                    let [Value::String(s)] = v.as_slice() else {
                        return Err(mlua::Error::runtime("wrong number or type of arguments"));
                    };
                    let t = lua.create_table()?;
                    t.raw_set(field, s)?;
                    Ok(t)
                })?,
            )?;
        }
        redis.raw_set(
            "log",
            lua.create_function(|_, (level, msg): (i64, Variadic<mlua::LuaString>)| {
                let text: Vec<String> = msg.iter().map(|s| s.to_string_lossy()).collect();
                let text = text.join(" ");
                match level {
                    0 => log::debug!("script: {text}"),
                    1 | 2 => log::info!("script: {text}"),
                    _ => log::warn!("script: {text}"),
                }
                Ok(())
            })?,
        )?;
        for (k, v) in [
            ("LOG_DEBUG", 0),
            ("LOG_VERBOSE", 1),
            ("LOG_NOTICE", 2),
            ("LOG_WARNING", 3),
            ("REPL_NONE", 0),
            ("REPL_AOF", 1),
            ("REPL_SLAVE", 2),
            ("REPL_REPLICA", 2),
            ("REPL_ALL", 3),
        ] {
            redis.raw_set(k, v)?;
        }
        redis.raw_set("REDIS_VERSION", crate::exec::REDIS_COMPAT_VERSION)?;
        redis.raw_set("REDIS_VERSION_NUM", 0x0007_0000)?;
        redis.raw_set(
            "setresp",
            lua.create_function(|_, n: i64| match n {
                2 => Ok(()),
                3 => Err(mlua::Error::runtime(
                    "RESP3 replies inside scripts are not supported by MerkleKV",
                )),
                _ => Err(mlua::Error::runtime("RESP version must be 2 or 3.")),
            })?,
        )?;
        redis.raw_set(
            "set_repl",
            lua.create_function(|_, n: i64| {
                if n == 3 {
                    Ok(())
                } else {
                    Err(mlua::Error::runtime(
                        "MerkleKV always replicates a script's writes (only redis.REPL_ALL)",
                    ))
                }
            })?,
        )?;
        redis.raw_set("replicate_commands", lua.create_function(|_, ()| Ok(true))?)?;
        redis.raw_set("breakpoint", lua.create_function(|_, ()| Ok(false))?)?;
        redis.raw_set(
            "debug",
            lua.create_function(|_, _: Variadic<Value>| Ok(()))?,
        )?;
        // Filled per library load.
        redis.raw_set(
            "register_function",
            lua.create_function(|_, _: Variadic<Value>| -> mlua::Result<()> {
                Err(mlua::Error::runtime(
                    "redis.register_function can only be called on FUNCTION LOAD command",
                ))
            })?,
        )?;
        redis.raw_set(
            "__mkv",
            lua.create_function(|_, _: Variadic<Value>| -> mlua::Result<()> {
                Err(mlua::Error::runtime(
                    "redis.call can only be called inside a script invocation",
                ))
            })?,
        )?;
        g.raw_set("__mkv_redis", redis)?;
        g.raw_set(
            "cjson",
            super::cjson::table(&lua, shared.config.scripting.max_memory)?,
        )?;
        g.raw_set("bit", super::bit::table(&lua)?)?;
        let pcall: Function = g.raw_get("pcall")?;
        // A coroutine does not run the state's hook: each one a script
        // creates gets it itself, or a loop inside it could never be
        // stopped (`coroutine.wrap` is built on this in PRELUDE).
        let co: Table = g.raw_get("coroutine")?;
        let st = stop.clone();
        co.raw_set(
            "create",
            lua.create_function(move |lua, f: Function| {
                let t = lua.create_thread(f)?;
                t.set_hook(
                    HookTriggers::new().every_nth_instruction(HOOK_EVERY),
                    hook(&st),
                )?;
                Ok(t)
            })?,
        )?;
        let st = stop.clone();
        g.raw_set(
            "__mkv_stopped",
            lua.create_function(move |_, ()| Ok(st.reason.get()))?,
        )?;
        let protected: Table = lua.load(PRELUDE).set_name("@mkv_prelude").eval()?;
        // The only ways past the read-only tables and the protected
        // globals are `rawset` and the collector's controls: they mark the
        // state for a full cleanup after the run (`clean_globals`).
        let dirty = Rc::new(Cell::new(false));
        for name in ["rawset", "collectgarbage"] {
            let real: Function = g.raw_get(name)?;
            let d = dirty.clone();
            g.raw_set(
                name,
                lua.create_function(move |_, args: mlua::MultiValue| {
                    d.set(true);
                    real.call::<mlua::MultiValue>(args)
                })?,
            )?;
        }
        let proxies = protected
            .pairs::<Table, bool>()
            .map(|pair| pair.map(|(p, _)| p))
            .collect::<mlua::Result<Vec<Table>>>()?;
        // Every global moves to the backing table (see LOCK_GLOBALS).
        let backing = lua.create_table()?;
        let globals = g
            .pairs::<Value, Value>()
            .collect::<mlua::Result<Vec<(Value, Value)>>>()?;
        for (k, v) in globals {
            g.raw_set(k.clone(), Value::Nil)?;
            backing.raw_set(k, v)?;
        }
        backing.raw_set("_G", g.clone())?;
        lua.load(LOCK_GLOBALS)
            .set_name("@mkv_globals")
            .call::<()>((g.clone(), backing.clone(), protected))?;
        lua.set_memory_limit(shared.config.scripting.max_memory)?;

        install_hook(&lua, &stop)?;
        let client = shared.stats.script_client();
        let log = shared.persist.as_ref().map(|p| p.worker_writer("lua"));
        Ok(Engine {
            shared,
            lua,
            stats,
            client,
            log,
            scratch: Vec::new(),
            scripts: HashMap::new(),
            eval_order: Default::default(),
            libs: BTreeMap::new(),
            funcs: HashMap::new(),
            source_bytes: 0,
            stop,
            pcall,
            backing,
            proxies,
            dirty,
        })
    }

    /// After a run that was stopped: a kill is counted (once, whichever
    /// check found it) and the ordinary hook is back.
    fn end_run(&self) {
        let Some(reason) = self.stop.reason.take() else {
            return;
        };
        if reason == gate::KILLED {
            let c = &self.shared.scripting.counters;
            c.scripts_killed.fetch_add(1, Relaxed);
        }
        if let Err(e) = install_hook(&self.lua, &self.stop) {
            log::error!("scripting: cannot restore the Lua hook: {e}");
        }
    }

    fn publish_counters(&self) {
        let c = &self.shared.scripting.counters;
        c.cached_scripts.store(self.scripts.len() as u64, Relaxed);
        c.libraries.store(self.libs.len() as u64, Relaxed);
        c.functions.store(self.funcs.len() as u64, Relaxed);
        c.lua_memory.store(self.lua.used_memory() as u64, Relaxed);
        c.source_bytes.store(self.source_bytes as u64, Relaxed);
    }

    /// Answers one call (RESP bytes).
    fn handle(&mut self, call: Admin) -> Vec<u8> {
        match call {
            Admin::Load(body) => match self.cache(&body, true) {
                Ok(sha) => {
                    let mut out = Vec::new();
                    reply::bulk(&mut out, sha.as_bytes());
                    out
                }
                Err(e) => err_line(&e),
            },
            Admin::Exists(shas) => {
                let mut out = Vec::new();
                reply::array(&mut out, shas.len());
                for s in shas {
                    let known = std::str::from_utf8(&s)
                        .is_ok_and(|s| self.scripts.contains_key(&s.to_ascii_lowercase()));
                    reply::integer(&mut out, i64::from(known));
                }
                out
            }
            Admin::Flush => {
                for (_, s) in self.scripts.drain() {
                    self.source_bytes -= s.bytes;
                }
                self.eval_order.clear();
                let _ = self.lua.gc_collect();
                let mut out = Vec::new();
                reply::ok(&mut out, Proto::Resp);
                out
            }
            Admin::FunctionLoad { replace, code } => match self.load_library(&code, replace) {
                Ok(name) => {
                    let mut out = Vec::new();
                    reply::bulk(&mut out, name.as_bytes());
                    out
                }
                Err(e) => err_line(&e),
            },
            Admin::FunctionDelete(name) => {
                let name = String::from_utf8_lossy(&name).into_owned();
                if self.libs.contains_key(&name) {
                    self.drop_library(&name);
                    let mut out = Vec::new();
                    reply::ok(&mut out, Proto::Resp);
                    out
                } else {
                    err_line("ERR Library not found")
                }
            }
            Admin::FunctionFlush => {
                let names: Vec<String> = self.libs.keys().cloned().collect();
                for n in names {
                    self.drop_library(&n);
                }
                let _ = self.lua.gc_collect();
                let mut out = Vec::new();
                reply::ok(&mut out, Proto::Resp);
                out
            }
            Admin::FunctionList {
                pattern,
                code,
                resp3,
            } => self.function_list(pattern.as_deref(), code, resp3),
        }
    }

    /// Compiles `body` and caches it under its SHA1; `explicit`: `SCRIPT
    /// LOAD` (a full cache is an error; for `EVAL` the script runs
    /// uncached).
    fn cache(&mut self, body: &[u8], explicit: bool) -> Result<String, String> {
        let sha = hex_sha1(body);
        if let Some(s) = self.scripts.get_mut(&sha) {
            // SCRIPT LOAD of a script EVAL cached makes it permanent.
            s.by_eval &= !explicit;
            return Ok(sha);
        }
        let (skip, no_writes) = shebang(body)?.unwrap_or((0, false));
        let code = &body[skip..];
        let func = match self.compile(code) {
            // A heap full of EVAL-cached scripts: evict them and retry.
            Err(e) if e == MEMORY_ERROR && !self.eval_order.is_empty() => {
                while self.evict_oldest_eval() {}
                let _ = self.lua.gc_collect();
                self.compile(code)?
            }
            r => r?,
        };
        if !explicit {
            self.eval_order.push_back(sha.clone());
            let mut evictable = self.scripts.values().filter(|s| s.by_eval).count();
            while evictable >= MAX_EVAL_SCRIPTS && self.evict_oldest_eval() {
                evictable -= 1;
            }
        }
        let max = self.shared.config.scripting.max_memory;
        if self.source_bytes + body.len() > max {
            self.shared
                .scripting
                .counters
                .cache_full_refusals
                .fetch_add(1, Relaxed);
            if explicit {
                return Err(format!(
                    "ERR script cache full: cached scripts and libraries hold {} of scripting.max_memory = {max} bytes; SCRIPT FLUSH frees it",
                    self.source_bytes
                ));
            }
            // Runs uncached: `run_call` drops it again.
            self.scripts.insert(
                sha.clone(),
                Script {
                    func,
                    bytes: 0,
                    by_eval: true,
                    transient: true,
                    no_writes,
                },
            );
            return Ok(sha);
        }
        self.source_bytes += body.len();
        self.scripts.insert(
            sha.clone(),
            Script {
                func,
                bytes: body.len(),
                by_eval: !explicit,
                transient: false,
                no_writes,
            },
        );
        Ok(sha)
    }

    /// Evicts the oldest script `EVAL` cached; false when there is none.
    fn evict_oldest_eval(&mut self) -> bool {
        while let Some(sha) = self.eval_order.pop_front() {
            if self.scripts.get(&sha).is_some_and(|s| s.by_eval) {
                if let Some(s) = self.scripts.remove(&sha) {
                    self.source_bytes -= s.bytes;
                }
                self.shared
                    .scripting
                    .counters
                    .evicted_scripts
                    .fetch_add(1, Relaxed);
                return true;
            }
        }
        false
    }

    /// Compiles an `EVAL` script.
    fn compile(&self, body: &[u8]) -> Result<Function, String> {
        load_source(&self.lua, body, "user_script").map_err(|e| {
            self.count_memory(&e);
            if matches!(e, mlua::Error::MemoryError(_)) {
                return MEMORY_ERROR.to_string();
            }
            format!(
                "ERR Error compiling script (new function): {}",
                lua_message(&e)
            )
        })
    }

    fn count_memory(&self, e: &mlua::Error) {
        if matches!(e, mlua::Error::MemoryError(_)) {
            self.shared
                .scripting
                .counters
                .memory_limit_hits
                .fetch_add(1, Relaxed);
        }
    }

    /// Writes the log records of the last job(s) (group commit).
    fn commit(&self) {
        if let Some(log) = &self.log {
            log.commit();
        }
        self.publish_counters();
    }

    /// A script job made ready to run (or its error reply).
    fn ready(&mut self, w: Work) -> (Result<Prepared, Vec<u8>>, Responder) {
        match w {
            Work::Ready(r, responder) => (r, responder),
            Work::Job(job) => match job.task {
                Task::Script(Call::Run(run)) => (self.prepare(run), job.responder),
                _ => (Err(err_line("ERR not a script job")), job.responder),
            },
        }
    }

    /// Looks up or compiles the script of a [`Run`]: ready to run, or
    /// its error reply.
    fn prepare(&mut self, run: Run) -> Result<Prepared, Vec<u8>> {
        let Run {
            kind,
            ro,
            target,
            keys,
            args,
            resp3,
            user,
        } = run;
        let (func, ro, function, name) = match kind {
            RunKind::Eval => match self.cache(&target, false) {
                Ok(sha) => {
                    let s = &self.scripts[&sha];
                    let (f, no_writes) = (s.func.clone(), s.no_writes);
                    if s.transient {
                        self.scripts.remove(&sha);
                    }
                    (f, ro || no_writes, false, sha)
                }
                Err(e) => return Err(err_line(&e)),
            },
            RunKind::EvalSha => {
                let sha = String::from_utf8_lossy(&target).to_ascii_lowercase();
                match self.scripts.get(&sha) {
                    Some(s) => (s.func.clone(), ro || s.no_writes, false, sha),
                    None => {
                        return Err(err_line("NOSCRIPT No matching script. Please use EVAL."));
                    }
                }
            }
            RunKind::Fcall => {
                let name = String::from_utf8_lossy(&target).into_owned();
                match self.funcs.get(&name) {
                    Some(f) => (f.func.clone(), ro || f.no_writes, true, name),
                    None => return Err(err_line("ERR Function not found")),
                }
            }
        };
        Ok(Prepared {
            func,
            ro,
            function,
            name,
            keys,
            args,
            resp3,
            user,
        })
    }

    /// Runs the scripts of `batch` in order under one closed gate and one
    /// exclusive hold, and returns the replies of those done, removed from
    /// the front of `batch`: all of them, or fewer when [`BATCH_TIME`]
    /// passed (the workers then get a turn before the rest).
    fn run_batch(
        &mut self,
        batch: &mut Vec<(Result<Prepared, Vec<u8>>, Responder)>,
    ) -> Vec<(Vec<u8>, Responder)> {
        let shared = self.shared.clone();
        let sc = &shared.scripting;
        let mut done: Vec<Vec<u8>> = Vec::with_capacity(batch.len());
        if batch.iter().all(|(r, _)| r.is_err()) {
            // Nothing to run: every reply is an error.
            return batch
                .drain(..)
                .map(|(r, responder)| (r.err().unwrap_or_default(), responder))
                .collect();
        }
        let started = Instant::now();
        sc.gate.close();
        shared.store.exclusive(|ex| {
            for (r, _) in batch.iter_mut() {
                if !done.is_empty() && started.elapsed() >= BATCH_TIME {
                    break;
                }
                let p = match std::mem::replace(r, Err(Vec::new())) {
                    Ok(p) => p,
                    Err(bytes) => {
                        done.push(bytes);
                        continue;
                    }
                };
                sc.counters.scripts_run.fetch_add(1, Relaxed);
                sc.gate.next(p.function);
                if p.function {
                    let mut cmd = vec![b"fcall".to_vec(), p.name.clone().into_bytes()];
                    cmd.push(p.keys.len().to_string().into_bytes());
                    cmd.extend(p.keys.iter().cloned());
                    cmd.extend(p.args.iter().cloned());
                    sc.set_running(Some((p.name.clone(), cmd)));
                }
                let reply = self.run_held(
                    &p.func,
                    p.function,
                    ex.db(),
                    p.ro,
                    p.user,
                    &p.keys,
                    &p.args,
                    p.resp3,
                );
                sc.set_running(None);
                self.clean_globals();
                done.push(reply);
            }
        });
        sc.gate.open();
        let n = done.len();
        done.into_iter()
            .zip(batch.drain(..n).map(|(_, responder)| responder))
            .collect()
    }

    /// Runs `func` on the held shards.
    #[allow(clippy::too_many_arguments)]
    fn run_held(
        &mut self,
        func: &Function,
        function: bool,
        db: crate::store::Db<'_>,
        ro: bool,
        user: Option<usize>,
        keys: &[Vec<u8>],
        args: &[Vec<u8>],
        resp3: bool,
    ) -> Vec<u8> {
        let lua = &self.lua;
        let shared = &self.shared;
        let stats = &self.stats;
        let client = &self.client;
        let log = self.log.as_ref();
        let scratch = &mut self.scratch;
        let pcall = &self.pcall;
        let stop = &*self.stop;
        let res = lua.scope(|scope| {
            let call = scope.create_function_mut(|lua, argv: Variadic<Value>| {
                redis_call(lua, shared, db, stats, client, log, scratch, ro, user, argv)
            })?;
            let g = lua.globals();
            let redis_proxy: Table = self.backing.raw_get("redis")?;
            let mt = redis_proxy
                .metatable()
                .ok_or_else(|| mlua::Error::runtime("sandbox: redis table"))?;
            let real: Table = mt.raw_get("__index")?;
            real.raw_set("__mkv", call)?;
            let strings = |v: &[Vec<u8>]| -> mlua::Result<Table> {
                let t = lua.create_table_with_capacity(v.len(), 0)?;
                for (i, a) in v.iter().enumerate() {
                    t.raw_set(i + 1, lua.create_string(a)?)?;
                }
                Ok(t)
            };
            let (k, a) = (strings(keys)?, strings(args)?);
            // EVAL scripts read globals; functions get (keys, args).
            let r: mlua::MultiValue = if function {
                pcall.call((func.clone(), k, a))?
            } else {
                g.raw_set("KEYS", k)?;
                g.raw_set("ARGV", a)?;
                pcall.call(func.clone())?
            };
            let mut vals = r.into_iter();
            let ok = matches!(vals.next(), Some(Value::Boolean(true)));
            let v = vals.next().unwrap_or(Value::Nil);
            let mut out = Vec::new();
            if ok {
                let mut w = ReplyWriter {
                    out: Vec::new(),
                    resp3,
                    limit: shared.config.scripting.max_memory,
                    written: 0,
                    stop,
                };
                out = match w.value(&v, 0) {
                    Ok(()) => w.out,
                    Err(stop) => {
                        let msg = match stop {
                            ReplyStop::TooLarge => {
                                "reply too large for a script (scripting.max_memory)"
                            }
                            ReplyStop::Stopped(m) => m,
                        };
                        let mut e = Vec::new();
                        reply::error(&mut e, Proto::Resp, msg);
                        e
                    }
                };
            } else {
                out.extend_from_slice(&error_reply(&v, shared));
            }
            // The real redis table gets back its inert callback.
            real.raw_set("__mkv", Value::Nil)?;
            Ok(out)
        });
        let out = match res {
            Ok(out) => out,
            Err(e) => {
                self.count_memory(&e);
                err_line(&format!("ERR {}", lua_message(&e)))
            }
        };
        self.end_run();
        out
    }

    /// Undoes what a script may have slipped past the read-only tables
    /// with `rawset`: whatever it put into the globals table (where it
    /// would shadow the sandbox's globals) and into the proxies is
    /// removed, and a stopped garbage collector restarted, so no script
    /// sees another's leftovers.
    fn clean_globals(&self) {
        let g = self.lua.globals();
        // The arguments of one script are not the next one's (a function
        // gets its own as parameters and would otherwise see these).
        let _ = g.raw_set("KEYS", Value::Nil);
        let _ = g.raw_set("ARGV", Value::Nil);
        if !self.dirty.replace(false) {
            return;
        }
        // The globals table itself holds nothing but a run's KEYS and ARGV:
        // anything `rawset` put there (shadowing a global) goes.
        let extra: Vec<Value> = g
            .pairs::<Value, Value>()
            .flatten()
            .map(|(k, _)| k)
            .collect();
        for k in extra {
            let _ = g.raw_set(k, Value::Nil);
        }
        for p in &self.proxies {
            let keys: Vec<Value> = p
                .pairs::<Value, Value>()
                .flatten()
                .map(|(k, _)| k)
                .collect();
            for k in keys {
                let _ = p.raw_set(k, Value::Nil);
            }
        }
        // A script may have stopped the collector (`collectgarbage("stop")`):
        // the next one starts with it running.
        self.lua.gc_restart();
    }

    // ---- functions ------------------------------------------------------

    fn load_library(&mut self, code: &[u8], replace: bool) -> Result<String, String> {
        let (name, body) = parse_shebang(code)?;
        if self.libs.contains_key(&name) && !replace {
            return Err(format!("ERR Library '{name}' already exists"));
        }
        let old_bytes = self.libs.get(&name).map_or(0, |l| l.code.len());
        let max = self.shared.config.scripting.max_memory;
        if self.source_bytes - old_bytes + code.len() > max {
            self.shared
                .scripting
                .counters
                .cache_full_refusals
                .fetch_add(1, Relaxed);
            return Err(format!(
                "ERR library space full: cached scripts and libraries hold {} of scripting.max_memory = {max} bytes",
                self.source_bytes
            ));
        }
        let chunk =
            load_source(&self.lua, body, &format!("user_function:{name}")).map_err(|e| {
                self.count_memory(&e);
                format!("ERR Error compiling function: {}", lua_message(&e))
            })?;
        let mut registered: Vec<(String, Function, bool)> = Vec::new();
        let lua = &self.lua;
        let res = lua.scope(|scope| {
            let reg = scope.create_function_mut(|_, argv: Variadic<Value>| {
                let f = registration(&argv).map_err(mlua::Error::runtime)?;
                if registered.iter().any(|(n, _, _)| *n == f.0) {
                    return Err(mlua::Error::runtime(format!(
                        "Function {} already exists",
                        f.0
                    )));
                }
                registered.push(f);
                Ok(())
            })?;
            let proxy: Table = self.backing.raw_get("redis")?;
            let real: Table = proxy
                .metatable()
                .ok_or_else(|| mlua::Error::runtime("sandbox: redis table"))?
                .raw_get("__index")?;
            let inert: Value = real.raw_get("register_function")?;
            real.raw_set("register_function", reg)?;
            self.stop
                .load_deadline
                .set(crate::clock::mono_nanos() + LOAD_TIMEOUT.as_nanos() as u64);
            let r: mlua::MultiValue = self.pcall.call(chunk)?;
            self.stop.load_deadline.set(0);
            real.raw_set("register_function", inert)?;
            let mut vals = r.into_iter();
            if !matches!(vals.next(), Some(Value::Boolean(true))) {
                let e = vals.next().unwrap_or(Value::Nil);
                let msg = String::from_utf8_lossy(&error_reply(&e, &self.shared)).into_owned();
                let msg = msg.trim_start_matches('-').trim_end().to_string();
                return Ok(Err(format!("ERR Error registering functions: {msg}")));
            }
            Ok(Ok(()))
        });
        self.stop.load_deadline.set(0);
        self.clean_globals();
        self.end_run();
        match res {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(e) => {
                self.count_memory(&e);
                return Err(format!("ERR {}", lua_message(&e)));
            }
        }
        if registered.is_empty() {
            return Err("ERR No functions registered".into());
        }
        for (n, _, _) in &registered {
            if self.funcs.contains_key(n)
                && !self
                    .libs
                    .get(&name)
                    .is_some_and(|l| l.functions.iter().any(|(f, _)| f == n))
            {
                return Err(format!("ERR Function {n} already exists"));
            }
        }
        if self.libs.contains_key(&name) {
            self.drop_library(&name);
        }
        let mut lib = Library {
            code: code.to_vec(),
            functions: Vec::new(),
        };
        for (n, f, no_writes) in registered {
            lib.functions.push((n.clone(), no_writes));
            self.funcs.insert(n, Func { func: f, no_writes });
        }
        self.source_bytes += code.len();
        self.libs.insert(name.clone(), lib);
        Ok(name)
    }

    fn drop_library(&mut self, name: &str) {
        if let Some(lib) = self.libs.remove(name) {
            for (f, _) in &lib.functions {
                self.funcs.remove(f);
            }
            self.source_bytes -= lib.code.len();
        }
    }

    fn function_list(&self, pattern: Option<&[u8]>, code: bool, resp3: bool) -> Vec<u8> {
        let pat = pattern.and_then(|p| crate::protocol::glob::Pattern::new(p).ok());
        let libs: Vec<(&String, &Library)> = self
            .libs
            .iter()
            .filter(|(n, _)| pat.as_ref().is_none_or(|p| p.matches(n.as_bytes())))
            .collect();
        let mut out = Vec::new();
        reply::array(&mut out, libs.len());
        for (name, lib) in libs {
            reply::map(&mut out, if code { 4 } else { 3 }, resp3);
            reply::bulk(&mut out, b"library_name");
            reply::bulk(&mut out, name.as_bytes());
            reply::bulk(&mut out, b"engine");
            reply::bulk(&mut out, b"LUA");
            reply::bulk(&mut out, b"functions");
            reply::array(&mut out, lib.functions.len());
            for (f, no_writes) in &lib.functions {
                reply::map(&mut out, 3, resp3);
                reply::bulk(&mut out, b"name");
                reply::bulk(&mut out, f.as_bytes());
                reply::bulk(&mut out, b"description");
                out.extend_from_slice(if resp3 { b"_\r\n" } else { b"$-1\r\n" });
                reply::bulk(&mut out, b"flags");
                if *no_writes {
                    reply::array(&mut out, 1);
                    reply::bulk(&mut out, b"no-writes");
                } else {
                    reply::array(&mut out, 0);
                }
            }
            if code {
                reply::bulk(&mut out, b"library_code");
                reply::bulk(&mut out, &lib.code);
            }
        }
        out
    }
}

/// `#!lua name=<lib>` and the code after that line.
fn parse_shebang(code: &[u8]) -> Result<(String, &[u8]), String> {
    let Some(rest) = code.strip_prefix(b"#!") else {
        return Err("ERR Missing library metadata".into());
    };
    let end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
    let line = String::from_utf8_lossy(&rest[..end]);
    let mut words = line.split_whitespace();
    let engine = words.next().unwrap_or("");
    if !engine.eq_ignore_ascii_case("lua") {
        return Err(format!("ERR Engine '{engine}' not found"));
    }
    let mut name = None;
    for w in words {
        match w.strip_prefix("name=") {
            Some(n) => name = Some(n.to_string()),
            None => return Err(format!("ERR Invalid metadata value given: {w}")),
        }
    }
    let name = name.ok_or("ERR Library name was not given")?;
    if !valid_name(&name) {
        return Err(
            "ERR Library names can only contain letters, numbers, or underscores(_) and must be at least one character long"
                .into(),
        );
    }
    // The shebang line is replaced by an empty line, so line numbers in
    // errors stay those of the code given.
    Ok((name, &code[(2 + end).min(code.len())..]))
}

fn valid_name(n: &str) -> bool {
    !n.is_empty() && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// The arguments of `redis.register_function`: `(name, callback)` or
/// `{function_name=, callback=, flags=, description=}`.
fn registration(argv: &[Value]) -> Result<(String, Function, bool), String> {
    let (name, func, no_writes) = match argv {
        [Value::String(n), Value::Function(f)] => (n.to_string_lossy(), f.clone(), false),
        [Value::Table(t)] => {
            let n: Option<mlua::LuaString> =
                t.raw_get("function_name").map_err(|e| e.to_string())?;
            let f: Option<Function> = t.raw_get("callback").map_err(|e| e.to_string())?;
            let (Some(n), Some(f)) = (n, f) else {
                return Err("redis.register_function must get a function name argument".into());
            };
            let mut no_writes = false;
            if let Ok(Some(flags)) = t.raw_get::<Option<Table>>("flags") {
                for v in flags.sequence_values::<mlua::LuaString>() {
                    let v = v.map_err(|e| e.to_string())?;
                    match &*v.to_string_lossy() {
                        "no-writes" => no_writes = true,
                        "allow-oom" | "allow-stale" | "no-cluster" | "allow-cross-slot-keys" => {}
                        other => return Err(format!("unknown flag given: {other}")),
                    }
                }
            }
            (n.to_string_lossy(), f, no_writes)
        }
        _ => return Err("wrong number of arguments to redis.register_function".into()),
    };
    if !valid_name(&name) {
        return Err("Function names can only contain letters, numbers, or underscores(_) and must be at least one character long".into());
    }
    Ok((name, func, no_writes))
}

/// `redis.call`/`redis.pcall`: runs one command on the held shards and
/// returns its reply as a Lua value (an error reply as `{err = …}`).
#[allow(clippy::too_many_arguments)]
fn redis_call(
    lua: &Lua,
    shared: &Shared,
    db: crate::store::Db<'_>,
    stats: &WorkerStats,
    client: &ClientInfo,
    log: Option<&crate::persist::LogWriter>,
    scratch: &mut Vec<u8>,
    ro: bool,
    user: Option<usize>,
    argv: Variadic<Value>,
) -> mlua::Result<Value> {
    let err = |msg: &str| -> mlua::Result<Value> {
        let t = lua.create_table()?;
        t.raw_set("err", msg)?;
        Ok(Value::Table(t))
    };
    if argv.is_empty() {
        return err("ERR Please specify at least one argument for this redis lib call");
    }
    // The request as a RESP frame, parsed by the ordinary parser.
    let mut frame = Vec::with_capacity(64);
    reply::array(&mut frame, argv.len());
    for v in argv.iter() {
        match v {
            Value::String(s) => reply::bulk(&mut frame, &s.as_bytes()),
            Value::Integer(i) => reply::bulk(&mut frame, itoa::Buffer::new().format(*i).as_bytes()),
            Value::Number(f) => reply::bulk(&mut frame, lua_number(*f).as_bytes()),
            _ => return err("ERR Lua redis lib command arguments must be strings or integers"),
        }
    }
    let mut spans = Vec::with_capacity(argv.len());
    // Framed, then decoded, so that `spans` stays readable (the words).
    let parsed = match resp::frame(&frame, &mut spans) {
        resp::Frame::Complete(n) => resp::decode(&frame, n, &spans),
        _ => return err("ERR malformed command"),
    };
    let cmd = match parsed {
        Parsed::Request(cmd, _) => cmd,
        Parsed::Invalid(e, _) => {
            if e.0.starts_with("unknown command") {
                return err("ERR Unknown Redis command called from script");
            }
            if e.0.starts_with("wrong number of arguments") {
                return err("ERR Wrong number of args calling Redis command from script");
            }
            return err(&format!("ERR {}", e.0));
        }
        _ => return err("ERR malformed command"),
    };
    if !allowed_in_script(&cmd) {
        return err("ERR This Redis command is not allowed from script");
    }
    let word = |i: usize| {
        let (s, e) = spans[i];
        &frame[s as usize..e as usize]
    };
    if let Err(e) = crate::auth::gate::script_admits(&shared.auth, user, &cmd, word(0)) {
        return err(&e);
    }
    // A write: a data write, or a command the table flags `write` (the
    // clears, which are admin-class).
    let write = crate::auth::class::of(&cmd) == crate::auth::class::Class::Write
        || crate::protocol::redis::spec(word(0)).is_some_and(|c| c.flags.contains(&"write"));
    if ro && write {
        return err("ERR Write commands are not allowed from read-only scripts.");
    }
    if shared.stats.monitors.active() {
        let args: Vec<&[u8]> = (0..spans.len()).map(word).collect();
        let mut line = Vec::new();
        crate::monitor::format_line(&mut line, crate::clock::since_epoch(), &"lua", &args);
        shared.stats.monitors.publish(&line);
    }
    let mut out = Vec::new();
    let limit = shared.config.scripting.max_memory;
    let mut ctx = Ctx {
        shared,
        db,
        stats,
        client,
        scratch,
        now: Instant::now(),
        log,
        out_limit: limit,
        cut: false,
    };
    let flow = exec::execute(cmd, &mut ctx, &mut out, Proto::Resp);
    if ctx.cut {
        return err("ERR reply too large for a script (scripting.max_memory)");
    }
    if flow != Flow::Continue {
        return err("ERR This Redis command is not allowed from script");
    }
    if write && out.first() != Some(&b'-') {
        shared.scripting.gate.wrote();
    }
    let mut pos = 0;
    from_reply(lua, &out, &mut pos, 0)
}

/// Whether a script may run `cmd`: not transactions, subscriptions,
/// MONITOR, scripts, connection state, or what `EXEC` refuses.
fn allowed_in_script(cmd: &crate::protocol::Command<'_>) -> bool {
    use crate::protocol::Command;
    use crate::protocol::redis::Redis;
    if exec::tx::is_tx_command(cmd) || exec::tx::refused_in_multi(cmd) {
        return false;
    }
    !matches!(
        cmd,
        Command::Quit
            | Command::Auth { .. }
            | Command::Redis(
                Redis::Run(_)
                    | Redis::Script(_)
                    | Redis::Monitor
                    | Redis::Subscribe { .. }
                    | Redis::Unsubscribe { .. }
                    | Redis::Reset
                    | Redis::Hello { .. }
                    | Redis::ClientKill(_)
                    | Redis::ClientReply(_)
                    | Redis::ClientSetName(_)
                    | Redis::ClientSetInfo { .. }
                    | Redis::ClientNoEvict(_)
                    | Redis::Save
                    | Redis::BgSave { .. }
            )
    )
}

/// Lua's `%.17g` formatting of a non-integral number.
fn lua_number(f: f64) -> String {
    if f.fract() == 0.0 && f.abs() < 1e17 {
        format!("{}", f as i64)
    } else {
        format!("{f}")
    }
}

/// One RESP2 reply at `buf[*pos..]` as a Lua value.
fn from_reply(lua: &Lua, buf: &[u8], pos: &mut usize, depth: usize) -> mlua::Result<Value> {
    let rest = &buf[*pos..];
    let nl = memchr::memchr(b'\n', rest).ok_or_else(|| mlua::Error::runtime("truncated reply"))?;
    let line = &rest[1..nl.saturating_sub(1).max(1)];
    *pos += nl + 1;
    let num = || -> mlua::Result<i64> {
        crate::protocol::parse_int::<i64>(line).ok_or_else(|| mlua::Error::runtime("bad reply"))
    };
    Ok(match rest[0] {
        b'+' => {
            let t = lua.create_table()?;
            t.raw_set("ok", lua.create_string(line)?)?;
            Value::Table(t)
        }
        b'-' => {
            let t = lua.create_table()?;
            t.raw_set("err", lua.create_string(line)?)?;
            Value::Table(t)
        }
        b':' => Value::Integer(num()?),
        b'$' => {
            let n = num()?;
            if n < 0 {
                Value::Boolean(false)
            } else {
                let n = n as usize;
                let s = lua.create_string(&buf[*pos..*pos + n])?;
                *pos += n + 2;
                Value::String(s)
            }
        }
        b'*' => {
            let n = num()?;
            if n < 0 {
                Value::Boolean(false)
            } else {
                if depth > MAX_DEPTH {
                    return Err(mlua::Error::runtime("reply nested too deep"));
                }
                let t = lua.create_table()?;
                for i in 0..n as usize {
                    t.raw_set(i + 1, from_reply(lua, buf, pos, depth + 1)?)?;
                }
                Value::Table(t)
            }
        }
        _ => Value::Nil,
    })
}

/// Converts a script's returned value into its reply.
struct ReplyWriter<'a> {
    out: Vec<u8>,
    resp3: bool,
    /// `scripting.max_memory`: a table that holds itself many times would
    /// otherwise grow the reply exponentially.
    limit: usize,
    /// Values written; every [`HOOK_EVERY`] the stop check runs, so
    /// `SCRIPT KILL` and shutdown reach a long conversion too.
    written: u64,
    stop: &'a Stop,
}

/// Why a reply was abandoned.
#[derive(Debug)]
enum ReplyStop {
    /// It passed `scripting.max_memory`.
    TooLarge,
    /// The interrupt check stopped it (kill, shutdown).
    Stopped(&'static str),
}

impl ReplyWriter<'_> {
    /// A Lua value returned by a script, as a reply. Tables nest at most
    /// [`MAX_REPLY_DEPTH`] levels, and no deeper than the Lua stack that
    /// holds one reference per level allows; past either an error element
    /// stands in for the table, as in Redis.
    fn value(&mut self, v: &Value, depth: usize) -> Result<(), ReplyStop> {
        if self.out.len() > self.limit {
            return Err(ReplyStop::TooLarge);
        }
        self.written += 1;
        if self.written.is_multiple_of(u64::from(HOOK_EVERY)) {
            self.stop.check().map_err(ReplyStop::Stopped)?;
        }
        if depth >= MAX_REPLY_DEPTH {
            self.out.extend_from_slice(STACK_LIMIT);
            return Ok(());
        }
        let out = &mut self.out;
        match v {
            Value::Integer(i) => reply::integer(out, *i),
            Value::Number(f) => reply::integer(out, if f.is_finite() { *f as i64 } else { 0 }),
            Value::String(s) => reply::bulk(out, &s.as_bytes()),
            Value::Boolean(true) => reply::integer(out, 1),
            Value::Table(t) => {
                for (field, prefix) in [("err", b'-'), ("ok", b'+')] {
                    if let Ok(Value::String(e)) = t.raw_get::<Value>(field) {
                        let e = e.to_string_lossy().replace(['\r', '\n'], " ");
                        out.push(prefix);
                        out.extend_from_slice(e.as_bytes());
                        out.extend_from_slice(b"\r\n");
                        return Ok(());
                    }
                }
                // The length first, then one element at a time: only one
                // reference per level is held. A failed read is the Lua
                // stack's limit.
                let mut n = 0;
                loop {
                    match t.raw_get::<Value>(n + 1) {
                        Ok(Value::Nil) => break,
                        Ok(_) => n += 1,
                        Err(_) => {
                            out.extend_from_slice(STACK_LIMIT);
                            return Ok(());
                        }
                    }
                }
                reply::array(out, n);
                for i in 1..=n {
                    match t.raw_get::<Value>(i) {
                        Ok(v) => self.value(&v, depth + 1)?,
                        Err(_) => self.out.extend_from_slice(STACK_LIMIT),
                    }
                }
            }
            _ => out.extend_from_slice(if self.resp3 { b"_\r\n" } else { b"$-1\r\n" }),
        }
        Ok(())
    }
}

/// The element that stands in for a table nested too deep.
const STACK_LIMIT: &[u8] = b"-ERR reached lua stack limit\r\n";

/// The error reply of a script that raised `v`.
fn error_reply(v: &Value, shared: &Shared) -> Vec<u8> {
    let c = &shared.scripting.counters;
    let msg = match v {
        Value::Table(t) => match t.raw_get::<Value>("err") {
            Ok(Value::String(e)) => {
                let e = e.to_string_lossy();
                // An error reply's text already carries its code.
                return err_line(&e);
            }
            _ => "ERR unknown error".to_string(),
        },
        // Lua's own allocation failure, caught by the pcall.
        Value::String(s) if &*s.as_bytes() == b"not enough memory" => {
            c.memory_limit_hits.fetch_add(1, Relaxed);
            MEMORY_ERROR.to_string()
        }
        Value::String(s) => format!("ERR {}", s.to_string_lossy()),
        Value::Error(e) => {
            let m = lua_message(e);
            if matches!(**e, mlua::Error::MemoryError(_)) || m.contains("not enough memory") {
                c.memory_limit_hits.fetch_add(1, Relaxed);
                MEMORY_ERROR.to_string()
            } else {
                format!("ERR {m}")
            }
        }
        other => format!("ERR {}", other.to_string().unwrap_or_default()),
    };
    c.scripts_failed.fetch_add(1, Relaxed);
    err_line(&msg)
}

/// An error reply whose text starts with its code (`ERR …`, `NOSCRIPT …`),
/// on one line.
fn err_line(msg: &str) -> Vec<u8> {
    // mlua appends a Lua traceback to errors raised through Rust
    // callbacks; a reply line keeps the message.
    let msg = msg.split("\nstack traceback:").next().unwrap_or(msg);
    let mut out = Vec::with_capacity(msg.len() + 3);
    out.push(b'-');
    out.extend_from_slice(msg.replace(['\r', '\n'], " ").as_bytes());
    out.extend_from_slice(b"\r\n");
    out
}

/// The message of an mlua error, without its Rust wrapping.
fn lua_message(e: &mlua::Error) -> String {
    match e {
        mlua::Error::RuntimeError(m) | mlua::Error::SyntaxError { message: m, .. } => m.clone(),
        mlua::Error::CallbackError { cause, .. } => lua_message(cause),
        mlua::Error::MemoryError(_) => "not enough memory".into(),
        other => other.to_string(),
    }
}
