//! Lua scripting: `EVAL`, `EVALSHA`, `FCALL` (and their `_RO` forms),
//! `SCRIPT …` and `FUNCTION …`, with Redis's semantics where this store can
//! give them (docs/protocol.md §15.4).
//!
//! Design:
//!
//! * Scripts run on one **script thread** ([`engine`]), which owns the Lua
//!   5.1 state (the `mlua` crate, Lua built from source: Redis embeds Lua
//!   5.1 too, so scripts written for Redis behave the same). A worker turns
//!   a script request into a [`Call`], hands it over as a deferred job
//!   (`Flow::Defer`, like `SYNC`) and goes on serving its other
//!   connections; the reply comes back through the worker's completion
//!   channel.
//! * **Atomicity.** The script thread closes the [`gate`] (no worker runs a
//!   keyspace command while a script runs) and runs the script inside
//!   `Store::exclusive`, so nothing interleaves with it: not other clients,
//!   not replication, not anti-entropy, not expiry.
//! * **Effects replication.** `redis.call` runs the command through the
//!   ordinary executor on the held shards, so every write a script makes is
//!   a versioned, logged, published write like any other (Redis 7's
//!   effects replication); other nodes never run the script.
//! * **Bounded.** The Lua heap is limited (`scripting.max_memory`); cached
//!   script and library source is limited to the same number of bytes; a
//!   script that runs longer than `busy-reply-threshold` makes other
//!   clients' requests fail with `-BUSY` and can be stopped with `SCRIPT
//!   KILL` (unless it wrote: `-UNKILLABLE`, as in Redis) or `SHUTDOWN`.
//!   Library code given to `FUNCTION LOAD` has 500 ms to register its
//!   functions.
//! * **Sandbox.** Only Lua's base, table, string and math libraries are
//!   loaded, without `dofile`, `loadfile`, `loadstring`, `load`, `print`,
//!   `getfenv`/`setfenv` and `module`/`require`; globals cannot be created
//!   or read when absent (Redis's errors). Node-local: the script cache and
//!   function libraries are neither replicated nor persisted (load them
//!   on every node, as `SCRIPT LOAD` must be on every Redis).

pub mod bit;
pub mod cjson;
pub mod engine;
pub mod gate;
pub mod pattern;
pub mod shared;
pub mod strlib;

use crate::protocol::Command;
use crate::protocol::redis::{Redis, RunKind};

/// A script request, owned, as the worker hands it to the script thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// A script to run (run in batches, `engine.rs`).
    Run(Run),
    /// Cache and library management.
    Admin(Admin),
}

/// `EVAL` / `EVALSHA` / `FCALL` (`ro`: the `_RO` form).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub kind: RunKind,
    pub ro: bool,
    pub target: Vec<u8>,
    pub keys: Vec<Vec<u8>>,
    pub args: Vec<Vec<u8>>,
    /// The client asked for RESP3 (`HELLO 3`): nulls are encoded so.
    pub resp3: bool,
    /// The caller's authenticated user (set by the worker from the
    /// connection's session): the script runs with its role.
    pub user: Option<usize>,
}

/// The `SCRIPT` / `FUNCTION` subcommands the script thread answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admin {
    /// `SCRIPT LOAD`.
    Load(Vec<u8>),
    /// `SCRIPT EXISTS`.
    Exists(Vec<Vec<u8>>),
    /// `SCRIPT FLUSH`.
    Flush,
    /// `FUNCTION LOAD`.
    FunctionLoad { replace: bool, code: Vec<u8> },
    /// `FUNCTION DELETE`.
    FunctionDelete(Vec<u8>),
    /// `FUNCTION FLUSH`.
    FunctionFlush,
    /// `FUNCTION LIST`.
    FunctionList {
        pattern: Option<Vec<u8>>,
        code: bool,
        resp3: bool,
    },
}

/// The `-BUSY` reply to a request refused while an `EVAL` script is busy
/// (Redis's text, without the `-`).
pub const BUSY_EVAL: &str =
    "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.";
/// The same while a function is busy.
pub const BUSY_FUNCTION: &str =
    "BUSY Redis is busy running a script. You can only call FUNCTION KILL or SHUTDOWN NOSAVE.";
/// The reply when scripting is switched off (`scripting.enabled`).
pub const DISABLED: &str = "scripting is disabled on this node (scripting.enabled = false)";

/// Whether `cmd` only hands a job to the script thread (`EVAL`, `FCALL`,
/// `SCRIPT LOAD|EXISTS|FLUSH`, `FUNCTION LOAD|DELETE|FLUSH|LIST`): a worker
/// may take it while a script runs, without touching the keyspace.
pub fn queues_for_script_thread(cmd: &Command<'_>) -> bool {
    match cmd {
        Command::Redis(Redis::Run(_)) => true,
        Command::Redis(Redis::Script(a)) => a.deferred(),
        _ => false,
    }
}

/// Whether `cmd` may run while a script is busy: the commands that touch
/// no key and that Redis flags `allow-busy` (`SCRIPT KILL`, `FUNCTION
/// KILL|STATS`, `SHUTDOWN`, `MULTI`, `DISCARD`, `UNWATCH`, `QUIT`,
/// `RESET`, `AUTH`, `HELLO`). `WATCH`, which Redis allows too, reads key
/// versions here and waits like the others.
pub fn allowed_while_busy(cmd: &Command<'_>) -> bool {
    use crate::protocol::redis::ScriptAdmin;
    matches!(
        cmd,
        Command::Shutdown
            | Command::Quit
            | Command::Auth { .. }
            | Command::Redis(
                Redis::Script(ScriptAdmin::Kill { .. } | ScriptAdmin::FunctionStats)
                    | Redis::Multi
                    | Redis::Discard
                    | Redis::Unwatch
                    | Redis::Reset
                    | Redis::Hello { .. }
            )
    )
}
