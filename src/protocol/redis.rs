//! Redis-compatibility commands that only the RESP front end knows:
//! introspection (`COMMAND`, `INFO` sections, `CONFIG GET`), client
//! bookkeeping (`CLIENT …`, `HELLO`), cursors and patterns (`SCAN`,
//! `KEYS`), `SET` with options, `TYPE`. They exist so that redis-cli,
//! redis-benchmark and client libraries work unmodified (docs/protocol.md §15);
//! none of them is on the GET/SET hot path, which [`super::resp::command`]
//! matches first and hands the rest here.
//!
//! Parsing is pure and allocation-free except for error texts; execution
//! lives in `exec::redis`. The static command table used by `COMMAND` and
//! `COMMAND DOCS` is [`COMMANDS`].

use std::borrow::Cow;

use super::{Args, Command, ParseError, glob, parse_int};
pub use crate::pubsub::SubKind;

/// A RESP-only command (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redis<'a> {
    /// `COMMAND [COUNT | LIST | INFO name… | DOCS [name…]]`.
    Command(CommandQuery<'a>),
    /// `CONFIG GET pattern [pattern …]`.
    ConfigGet(Args<'a>),
    /// `CONFIG SET parameter value [parameter value …]` (pairs; checked
    /// when it runs, as Redis does).
    ConfigSet(Args<'a>),
    /// `CONFIG RESETSTAT`: INFO's command, error and latency statistics
    /// start again from zero (other counters are monotonic by
    /// docs/protocol.md §6).
    ConfigResetStat,
    /// `CLIENT SETNAME name` (validated).
    ClientSetName(&'a [u8]),
    /// `CLIENT GETNAME`.
    ClientGetName,
    /// `CLIENT SETINFO LIB-NAME|LIB-VER value` (validated).
    ClientSetInfo { lib_ver: bool, value: &'a [u8] },
    /// `CLIENT ID`.
    ClientId,
    /// `CLIENT LIST [TYPE type | ID id …]` (Redis format).
    ClientList(ClientFilter<'a>),
    /// `CLIENT KILL addr` or `CLIENT KILL <filter> <value> …`.
    ClientKill(ClientKill<'a>),
    /// `MONITOR`: stream every command the node runs to this connection.
    Monitor,
    /// `SAVE`: write a snapshot now (persistent engine).
    Save,
    /// `BGSAVE [SCHEDULE]`: ask the snapshot thread for a snapshot.
    BgSave { schedule: bool },
    /// `LASTSAVE`: unix time of the last successful snapshot.
    LastSave,
    /// `CLIENT INFO`.
    ClientInfo,
    /// `CLIENT REPLY ON | OFF | SKIP`.
    ClientReply(crate::stats::ReplyMode),
    /// `CLIENT NO-EVICT ON | OFF`.
    ClientNoEvict(bool),
    /// `HELLO [protover [AUTH user pass] [SETNAME name]]`; `protover` is
    /// 2 or 3 (others are refused with `-NOPROTO` at parse time).
    Hello {
        protover: Option<u8>,
        /// `AUTH user pass`, checked by the connection's gate
        /// (`auth::gate`) before HELLO runs.
        auth: Option<(&'a [u8], &'a [u8])>,
        setname: Option<&'a [u8]>,
    },
    /// `SCAN cursor [MATCH pattern] [COUNT n] [TYPE t]`.
    Scan {
        cursor: u64,
        pattern: Option<&'a [u8]>,
        count: usize,
        /// False when `TYPE` names a type other than `string` (nothing matches).
        any_type: bool,
    },
    /// `KEYS pattern`.
    Keys(&'a [u8]),
    /// `INFO [section …]` (Redis format).
    Info(Args<'a>),
    /// `SET key value [NX | XX] [GET]` (with an expiry option it is an
    /// [`super::expiry::ExpiryCmd::Set`]).
    SetWith {
        key: &'a [u8],
        value: &'a [u8],
        cond: Option<SetCond>,
        get: bool,
    },
    /// `TYPE key`.
    Type(&'a [u8]),
    /// `SETNX key value`: set if absent, reply 1 or 0.
    SetNx(&'a [u8], &'a [u8]),
    /// `GETDEL key`: the value, deleted in the same step.
    GetDel(&'a [u8]),
    /// `MSETNX k v [k v …]`: set all only if none exists, reply 1 or 0.
    MSetNx(Args<'a>),
    /// `MULTI`: start queueing a transaction (see `exec::tx`).
    Multi,
    /// `EXEC`: run the queued transaction.
    Exec,
    /// `DISCARD`: drop the queued transaction.
    Discard,
    /// `WATCH key [key …]`: make the next `EXEC` fail if a key changes.
    Watch(Args<'a>),
    /// `UNWATCH`.
    Unwatch,
    /// String and keyspace commands ([`super::strings`]).
    Str(super::strings::StrCmd<'a>),
    /// `TIME`.
    Time,
    /// `RESET`: drop the connection's transaction and watched keys, its
    /// name, monitor mode and subscriptions, and go back to RESP2 (the
    /// library strings of `CLIENT SETINFO` stay, as in Redis 7.2).
    Reset,
    /// `EVAL`, `EVALSHA`, `FCALL` (and their `_RO` forms): run a Lua
    /// script on the script thread (`crate::script`).
    Run(ScriptRun<'a>),
    /// `SCRIPT …` and `FUNCTION …` (`crate::script`).
    Script(ScriptAdmin<'a>),
    /// `SUBSCRIBE channel…`, `PSUBSCRIBE pattern…`, `SSUBSCRIBE
    /// shardchannel…` (by `kind`).
    Subscribe { kind: SubKind, names: Args<'a> },
    /// `UNSUBSCRIBE [channel…]`, `PUNSUBSCRIBE [pattern…]`, `SUNSUBSCRIBE
    /// [shardchannel…]`; no names: every subscription of that kind.
    Unsubscribe { kind: SubKind, names: Args<'a> },
    /// `PUBLISH channel message` (`shard`: `SPUBLISH`).
    Publish {
        channel: &'a [u8],
        message: &'a [u8],
        shard: bool,
    },
    /// `PUBSUB CHANNELS [pattern] | NUMSUB [channel…] | NUMPAT |
    /// SHARDCHANNELS [pattern] | SHARDNUMSUB [channel…] | HELP`.
    PubSub(PubSubQuery<'a>),
    /// `MEMORY USAGE key [SAMPLES n] | STATS | DOCTOR | PURGE |
    /// MALLOC-STATS | HELP`.
    Memory(MemoryQuery<'a>),
    /// `SLOWLOG GET [count] | LEN | RESET | HELP`.
    SlowLog(SlowLogQuery),
    /// `MODULE LIST`: there are no modules (an empty list).
    ModuleList,
    /// `<container> HELP` of `CLIENT`, `COMMAND`, `CONFIG`, `FUNCTION`,
    /// `MODULE` (the lower-case container name).
    Help(&'static str),
}

/// Which script an [`Redis::Run`] names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunKind {
    /// `EVAL body`.
    Eval,
    /// `EVALSHA sha1`.
    EvalSha,
    /// `FCALL function`.
    Fcall,
}

/// `EVAL`/`EVALSHA`/`FCALL`: the script, its keys and its arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScriptRun<'a> {
    pub kind: RunKind,
    /// The `_RO` form: the script may not write.
    pub ro: bool,
    /// The body, the SHA1 or the function name.
    pub target: &'a [u8],
    /// The first `numkeys` of `rest` are keys (`KEYS`), the others `ARGV`.
    pub numkeys: usize,
    pub rest: Args<'a>,
}

/// `SCRIPT …` / `FUNCTION …` subcommands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScriptAdmin<'a> {
    /// `SCRIPT LOAD body`.
    Load(&'a [u8]),
    /// `SCRIPT EXISTS sha1…`.
    Exists(Args<'a>),
    /// `SCRIPT FLUSH [ASYNC | SYNC]`.
    Flush,
    /// `SCRIPT KILL` (`function`: `FUNCTION KILL`).
    Kill { function: bool },
    /// `FUNCTION LOAD [REPLACE] code`.
    FunctionLoad { replace: bool, code: &'a [u8] },
    /// `FUNCTION DELETE library`.
    FunctionDelete(&'a [u8]),
    /// `FUNCTION FLUSH [ASYNC | SYNC]`.
    FunctionFlush,
    /// `FUNCTION LIST [LIBRARYNAME pattern] [WITHCODE]`.
    FunctionList {
        pattern: Option<&'a [u8]>,
        code: bool,
    },
    /// `FUNCTION STATS`.
    FunctionStats,
}

impl ScriptAdmin<'_> {
    /// True for the subcommands the script thread answers (the others
    /// run on the worker, also while a script is busy).
    pub fn deferred(&self) -> bool {
        !matches!(self, ScriptAdmin::Kill { .. } | ScriptAdmin::FunctionStats)
    }
}

/// What `SLOWLOG` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlowLogQuery {
    /// The newest entries: `None` all (`-1`), else at most that many.
    Get(Option<usize>),
    Len,
    Reset,
    Help,
}

/// What `PUBSUB` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PubSubQuery<'a> {
    /// Channels (sharded ones with `shard`) with subscribers, optionally
    /// only those matching a glob.
    Channels {
        pattern: Option<&'a [u8]>,
        shard: bool,
    },
    /// Subscriber counts of the channels (sharded with `shard`) given.
    NumSub {
        channels: Args<'a>,
        shard: bool,
    },
    /// Distinct patterns subscribed to.
    NumPat,
    Help,
}

/// What `MEMORY` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryQuery<'a> {
    /// Bytes a key's record occupies (`SAMPLES` is accepted and has no
    /// effect: a string is measured exactly).
    Usage(&'a [u8]),
    Stats,
    Doctor,
    Purge,
    MallocStats,
    Help,
}

/// Which connections `CLIENT LIST` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientFilter<'a> {
    /// Every connection.
    All,
    /// `TYPE t`.
    Type(crate::stats::ClientType),
    /// `ID id …` (validated positive integers).
    Ids(Args<'a>),
}

/// The connections `CLIENT KILL` closes: those matching every filter
/// given (Redis semantics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientKill<'a> {
    /// The old form `CLIENT KILL addr` (reply `+OK` or `No such client`,
    /// and the caller may kill itself).
    pub legacy: bool,
    pub id: Option<u64>,
    pub addr: Option<&'a [u8]>,
    pub laddr: Option<&'a [u8]>,
    /// A user name, checked against the configured users when it runs.
    pub user: Option<&'a [u8]>,
    pub kind: Option<crate::stats::ClientType>,
    /// Connections at least this many seconds old.
    pub maxage: Option<u64>,
    /// Leave the calling connection alone (default `yes` in the new form).
    pub skipme: bool,
}

/// `SET … NX` / `XX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetCond {
    /// Only if the key does not exist.
    Nx,
    /// Only if the key exists.
    Xx,
}

/// What `COMMAND` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandQuery<'a> {
    /// Bare `COMMAND`: every command's info.
    All,
    /// `COMMAND COUNT`.
    Count,
    /// `COMMAND LIST [FILTERBY MODULE name | ACLCAT category | PATTERN p]`.
    List(Option<ListFilter<'a>>),
    /// `COMMAND GETKEYS command arg…` (`flags`: `GETKEYSANDFLAGS`).
    GetKeys { args: Args<'a>, flags: bool },
    /// `COMMAND INFO name …` (empty: all).
    Info(Args<'a>),
    /// `COMMAND DOCS [name …]` (empty: all).
    Docs(Args<'a>),
}

/// The filter of `COMMAND LIST … FILTERBY`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListFilter<'a> {
    /// Commands of a module: there are no modules, so none.
    Module(&'a [u8]),
    /// Commands in an ACL category (without the `@`).
    AclCat(&'a [u8]),
    /// Commands and `parent|sub` subcommands whose name matches a glob.
    Pattern(&'a [u8]),
}

/// Largest `COUNT` honoured by `SCAN` (bounds one reply's work).
pub const MAX_SCAN_COUNT: usize = 100_000;

fn err(msg: &'static str) -> ParseError {
    ParseError(Cow::Borrowed(msg))
}

/// `wrong number of arguments for '<cmd>' command` (Redis text).
pub fn wrong_args(name: &[u8]) -> ParseError {
    ParseError(Cow::Owned(format!(
        "wrong number of arguments for '{}' command",
        String::from_utf8_lossy(name).to_lowercase()
    )))
}

fn wrong_sub(name: &[u8], sub: &[u8]) -> ParseError {
    ParseError(Cow::Owned(format!(
        "wrong number of arguments for '{}|{}' command",
        String::from_utf8_lossy(name).to_lowercase(),
        String::from_utf8_lossy(sub).to_lowercase()
    )))
}

fn unknown_sub(name: &[u8], sub: &[u8]) -> ParseError {
    ParseError(Cow::Owned(format!(
        "unknown subcommand '{}'. Try {} HELP.",
        clip(sub, 128),
        String::from_utf8_lossy(name).to_uppercase()
    )))
}

fn clip(b: &[u8], max: usize) -> Cow<'_, str> {
    String::from_utf8_lossy(&b[..b.len().min(max)])
}

/// Redis's text for an unknown command:
/// `unknown command 'x', with args beginning with: 'a' 'b' `.
pub fn unknown_command(name: &[u8], args: impl Iterator<Item = impl AsRef<[u8]>>) -> ParseError {
    let mut s = format!(
        "unknown command '{}', with args beginning with: ",
        clip(name, 128)
    );
    let start = s.len();
    for a in args {
        if s.len() - start >= 128 {
            break;
        }
        let room = 128 - (s.len() - start);
        s.push('\'');
        s.push_str(&clip(a.as_ref(), room));
        s.push_str("' ");
    }
    ParseError(Cow::Owned(s))
}

fn eq(a: &[u8], b: &str) -> bool {
    a.eq_ignore_ascii_case(b.as_bytes())
}

/// Parses a RESP-only command. `upper` is the upper-cased command name
/// (empty if longer than the caller's buffer), `args` the arguments after
/// the name. Unknown names get Redis's unknown-command error.
pub fn command<'a>(
    upper: &[u8],
    name: &'a [u8],
    args: Args<'a>,
) -> Result<Command<'a>, ParseError> {
    let argv = |i: usize| args.iter().nth(i);
    let argc = args.len();
    let r = match upper {
        b"COMMAND" | b"CONFIG" | b"CLIENT" | b"FUNCTION" | b"MODULE"
            if argc == 1 && argv(0).is_some_and(|s| eq(s, "HELP")) =>
        {
            Redis::Help(match upper {
                b"COMMAND" => "command",
                b"CONFIG" => "config",
                b"CLIENT" => "client",
                b"FUNCTION" => "function",
                _ => "module",
            })
        }
        b"MODULE" => {
            let Some(sub) = argv(0) else {
                return Err(wrong_args(name));
            };
            if eq(sub, "LIST") && argc == 1 {
                Redis::ModuleList
            } else if eq(sub, "LIST") || eq(sub, "HELP") {
                return Err(wrong_sub(name, sub));
            } else if eq(sub, "LOAD") || eq(sub, "LOADEX") || eq(sub, "UNLOAD") {
                return Err(err(
                    "MerkleKV has no module system: modules cannot be loaded",
                ));
            } else {
                return Err(unknown_sub(name, sub));
            }
        }
        b"SLOWLOG" => {
            let Some(sub) = argv(0) else {
                return Err(wrong_args(name));
            };
            let q = if eq(sub, "GET") {
                match (argv(1), argc) {
                    (None, _) => SlowLogQuery::Get(Some(10)),
                    (Some(n), 2) => match parse_int::<i64>(n) {
                        Some(-1) => SlowLogQuery::Get(None),
                        Some(n) if n >= 0 => SlowLogQuery::Get(Some(n as usize)),
                        Some(_) => {
                            return Err(err("count should be greater than or equal to -1"));
                        }
                        None => return Err(err("value is not an integer or out of range")),
                    },
                    _ => return Err(wrong_sub(name, sub)),
                }
            } else if eq(sub, "LEN") && argc == 1 {
                SlowLogQuery::Len
            } else if eq(sub, "RESET") && argc == 1 {
                SlowLogQuery::Reset
            } else if eq(sub, "HELP") && argc == 1 {
                SlowLogQuery::Help
            } else if eq(sub, "LEN") || eq(sub, "RESET") || eq(sub, "HELP") {
                return Err(wrong_sub(name, sub));
            } else {
                return Err(unknown_sub(name, sub));
            };
            Redis::SlowLog(q)
        }
        b"COMMAND" => {
            let Some(sub) = argv(0) else {
                return Ok(Command::Redis(Redis::Command(CommandQuery::All)));
            };
            let rest = args.skip(1);
            let q = if eq(sub, "COUNT") && argc == 1 {
                CommandQuery::Count
            } else if eq(sub, "LIST") {
                let f = match (argc, argv(1), argv(2), argv(3)) {
                    (1, ..) => None,
                    (4, Some(by), Some(kind), Some(v)) if eq(by, "FILTERBY") => {
                        if eq(kind, "MODULE") {
                            Some(ListFilter::Module(v))
                        } else if eq(kind, "ACLCAT") {
                            Some(ListFilter::AclCat(v))
                        } else if eq(kind, "PATTERN") {
                            Some(ListFilter::Pattern(v))
                        } else {
                            return Err(err("syntax error"));
                        }
                    }
                    _ => return Err(err("syntax error")),
                };
                CommandQuery::List(f)
            } else if eq(sub, "GETKEYS") || eq(sub, "GETKEYSANDFLAGS") {
                if argc < 2 {
                    return Err(wrong_sub(name, sub));
                }
                CommandQuery::GetKeys {
                    args: rest,
                    flags: sub.len() > 7,
                }
            } else if eq(sub, "INFO") {
                CommandQuery::Info(rest)
            } else if eq(sub, "DOCS") {
                CommandQuery::Docs(rest)
            } else if eq(sub, "COUNT") {
                return Err(wrong_sub(name, sub));
            } else {
                return Err(unknown_sub(name, sub));
            };
            Redis::Command(q)
        }
        b"CONFIG" => {
            let Some(sub) = argv(0) else {
                return Err(wrong_args(name));
            };
            if eq(sub, "GET") {
                if argc < 2 {
                    return Err(wrong_sub(name, sub));
                }
                let patterns = args.skip(1);
                if patterns.iter().any(|p| p.len() > glob::MAX_PATTERN) {
                    return Err(err(glob::PATTERN_TOO_LONG));
                }
                Redis::ConfigGet(patterns)
            } else if eq(sub, "RESETSTAT") {
                Redis::ConfigResetStat
            } else if eq(sub, "SET") {
                if argc < 3 || argc.is_multiple_of(2) {
                    return Err(wrong_sub(name, sub));
                }
                Redis::ConfigSet(args.skip(1))
            } else if eq(sub, "REWRITE") {
                return Err(err(
                    "CONFIG REWRITE is not supported: MerkleKV is configured by its TOML file, command line and environment",
                ));
            } else {
                return Err(unknown_sub(name, sub));
            }
        }
        b"CLIENT" => {
            let Some(sub) = argv(0) else {
                return Err(wrong_args(name));
            };
            let want = |n: usize| {
                if argc == n {
                    Ok(())
                } else {
                    Err(wrong_sub(name, sub))
                }
            };
            if eq(sub, "SETNAME") {
                want(2)?;
                let v = argv(1).unwrap_or_default();
                if !crate::stats::ClientMeta::valid(v) {
                    return Err(err(
                        "Client names cannot contain spaces, newlines or special characters.",
                    ));
                }
                Redis::ClientSetName(v)
            } else if eq(sub, "GETNAME") {
                want(1)?;
                Redis::ClientGetName
            } else if eq(sub, "SETINFO") {
                want(3)?;
                let attr = argv(1).unwrap_or_default();
                let value = argv(2).unwrap_or_default();
                let lib_ver = if eq(attr, "LIB-NAME") {
                    false
                } else if eq(attr, "LIB-VER") {
                    true
                } else {
                    return Err(ParseError(Cow::Owned(format!(
                        "Unrecognized option '{}'",
                        clip(attr, 128)
                    ))));
                };
                if !crate::stats::ClientMeta::valid(value) {
                    return Err(err(
                        "lib-name and lib-ver cannot contain spaces, newlines or special characters.",
                    ));
                }
                Redis::ClientSetInfo { lib_ver, value }
            } else if eq(sub, "ID") {
                want(1)?;
                Redis::ClientId
            } else if eq(sub, "LIST") {
                Redis::ClientList(client_list(args)?)
            } else if eq(sub, "KILL") {
                if argc < 2 {
                    return Err(wrong_sub(name, sub));
                }
                Redis::ClientKill(client_kill(args)?)
            } else if eq(sub, "INFO") {
                want(1)?;
                Redis::ClientInfo
            } else if eq(sub, "NO-EVICT") {
                want(2)?;
                let mode = argv(1).unwrap_or_default();
                Redis::ClientNoEvict(if eq(mode, "ON") {
                    true
                } else if eq(mode, "OFF") {
                    false
                } else {
                    return Err(err("syntax error"));
                })
            } else if eq(sub, "REPLY") {
                want(2)?;
                let mode = argv(1).unwrap_or_default();
                Redis::ClientReply(if eq(mode, "ON") {
                    crate::stats::ReplyMode::On
                } else if eq(mode, "OFF") {
                    crate::stats::ReplyMode::Off
                } else if eq(mode, "SKIP") {
                    crate::stats::ReplyMode::SkipNext
                } else {
                    return Err(err("syntax error"));
                })
            } else {
                return Err(unknown_sub(name, sub));
            }
        }
        b"HELLO" => hello(args)?,
        b"AUTH" => {
            return match (argv(0), argv(1), argc) {
                (Some(password), None, 1) => Ok(Command::Auth {
                    user: None,
                    password,
                }),
                (Some(user), Some(password), 2) => Ok(Command::Auth {
                    user: Some(user),
                    password,
                }),
                (None, ..) => Err(wrong_args(name)),
                _ => Err(err("syntax error")),
            };
        }
        b"SCAN" => scan(name, args)?,
        b"KEYS" => {
            if argc != 1 {
                return Err(wrong_args(name));
            }
            let pattern = argv(0).unwrap_or_default();
            if pattern.len() > glob::MAX_PATTERN {
                return Err(err(glob::PATTERN_TOO_LONG));
            }
            Redis::Keys(pattern)
        }
        b"INFO" => Redis::Info(args),
        b"TYPE" => {
            if argc != 1 {
                return Err(wrong_args(name));
            }
            Redis::Type(argv(0).unwrap_or_default())
        }
        b"SETNX" => {
            if argc != 2 {
                return Err(wrong_args(name));
            }
            Redis::SetNx(argv(0).unwrap_or_default(), argv(1).unwrap_or_default())
        }
        b"GETSET" => {
            if argc != 2 {
                return Err(wrong_args(name));
            }
            Redis::SetWith {
                key: argv(0).unwrap_or_default(),
                value: argv(1).unwrap_or_default(),
                cond: None,
                get: true,
            }
        }
        b"GETDEL" => {
            if argc != 1 {
                return Err(wrong_args(name));
            }
            Redis::GetDel(argv(0).unwrap_or_default())
        }
        b"MSETNX" => {
            if argc == 0 || !argc.is_multiple_of(2) {
                return Err(wrong_args(name));
            }
            Redis::MSetNx(args)
        }
        b"TTL" | b"PTTL" | b"EXPIRETIME" | b"PEXPIRETIME" | b"PERSIST" | b"EXPIRE" | b"PEXPIRE"
        | b"EXPIREAT" | b"PEXPIREAT" | b"SETEX" | b"PSETEX" | b"GETEX" => {
            return match super::expiry::parse(upper, args) {
                Some(Ok(c)) => Ok(Command::Expiry(c)),
                _ => Err(wrong_args(name)),
            };
        }
        b"MULTI" | b"EXEC" | b"DISCARD" | b"UNWATCH" => {
            if argc != 0 {
                return Err(wrong_args(name));
            }
            match upper {
                b"MULTI" => Redis::Multi,
                b"EXEC" => Redis::Exec,
                b"DISCARD" => Redis::Discard,
                _ => Redis::Unwatch,
            }
        }
        b"WATCH" => {
            if argc == 0 {
                return Err(wrong_args(name));
            }
            Redis::Watch(args)
        }
        b"SET" => return set(name, args),
        b"SYNC" => return sync(name, args),
        b"TIME" | b"RESET" => {
            if argc != 0 {
                return Err(wrong_args(name));
            }
            if upper == b"TIME" {
                Redis::Time
            } else {
                Redis::Reset
            }
        }
        b"MONITOR" | b"SAVE" | b"LASTSAVE" => {
            if argc != 0 {
                return Err(wrong_args(name));
            }
            match upper {
                b"MONITOR" => Redis::Monitor,
                b"SAVE" => Redis::Save,
                _ => Redis::LastSave,
            }
        }
        b"BGSAVE" => match (argv(0), argc) {
            (None, _) => Redis::BgSave { schedule: false },
            (Some(o), 1) if eq(o, "SCHEDULE") => Redis::BgSave { schedule: true },
            (Some(_), 1) => return Err(err("syntax error")),
            _ => return Err(wrong_args(name)),
        },
        b"EVAL" | b"EVALSHA" | b"EVAL_RO" | b"EVALSHA_RO" | b"FCALL" | b"FCALL_RO" => {
            let (Some(target), Some(n)) = (argv(0), argv(1)) else {
                return Err(wrong_args(name));
            };
            let n = super::parse_int::<i64>(n)
                .ok_or_else(|| err("value is not an integer or out of range"))?;
            if n < 0 {
                return Err(err("Number of keys can't be negative"));
            }
            if n > argc as i64 - 2 {
                return Err(err("Number of keys can't be greater than number of args"));
            }
            Redis::Run(ScriptRun {
                kind: match upper {
                    b"EVAL" | b"EVAL_RO" => RunKind::Eval,
                    b"EVALSHA" | b"EVALSHA_RO" => RunKind::EvalSha,
                    _ => RunKind::Fcall,
                },
                ro: upper.ends_with(b"_RO"),
                target,
                numkeys: n as usize,
                rest: args.skip(2),
            })
        }
        b"SCRIPT" => {
            let Some(sub) = argv(0) else {
                return Err(wrong_args(name));
            };
            let flush_mode = |i: usize| match argv(i) {
                None => Ok(()),
                Some(m) if argc == i + 1 && (eq(m, "ASYNC") || eq(m, "SYNC")) => Ok(()),
                Some(_) if argc > i + 1 => Err(wrong_sub(name, sub)),
                Some(_) => Err(err("SCRIPT FLUSH only support SYNC|ASYNC option")),
            };
            Redis::Script(if eq(sub, "LOAD") && argc == 2 {
                ScriptAdmin::Load(argv(1).unwrap_or_default())
            } else if eq(sub, "EXISTS") && argc >= 2 {
                ScriptAdmin::Exists(args.skip(1))
            } else if eq(sub, "FLUSH") {
                flush_mode(1)?;
                ScriptAdmin::Flush
            } else if eq(sub, "KILL") && argc == 1 {
                ScriptAdmin::Kill { function: false }
            } else if eq(sub, "HELP") && argc == 1 {
                return Ok(Command::Redis(Redis::Help("script")));
            } else if ["LOAD", "EXISTS", "KILL", "HELP"]
                .iter()
                .any(|s| eq(sub, s))
            {
                return Err(wrong_sub(name, sub));
            } else {
                return Err(unknown_sub(name, sub));
            })
        }
        b"FUNCTION" => {
            let Some(sub) = argv(0) else {
                return Err(wrong_args(name));
            };
            Redis::Script(if eq(sub, "FLUSH") {
                match argv(1) {
                    None => {}
                    Some(m) if argc == 2 && (eq(m, "ASYNC") || eq(m, "SYNC")) => {}
                    Some(_) if argc > 2 => return Err(wrong_sub(name, sub)),
                    Some(_) => return Err(err("FUNCTION FLUSH only supports SYNC|ASYNC option")),
                }
                ScriptAdmin::FunctionFlush
            } else if eq(sub, "LOAD") {
                match (argv(1), argv(2), argc) {
                    (Some(code), None, 2) => ScriptAdmin::FunctionLoad {
                        replace: false,
                        code,
                    },
                    (Some(r), Some(code), 3) if eq(r, "REPLACE") => ScriptAdmin::FunctionLoad {
                        replace: true,
                        code,
                    },
                    (Some(r), Some(_), 3) => {
                        return Err(ParseError(Cow::Owned(format!(
                            "Unknown option given: {}",
                            clip(r, 128)
                        ))));
                    }
                    _ => return Err(wrong_sub(name, sub)),
                }
            } else if eq(sub, "DELETE") && argc == 2 {
                ScriptAdmin::FunctionDelete(argv(1).unwrap_or_default())
            } else if eq(sub, "KILL") && argc == 1 {
                ScriptAdmin::Kill { function: true }
            } else if eq(sub, "STATS") && argc == 1 {
                ScriptAdmin::FunctionStats
            } else if eq(sub, "LIST") {
                let (mut pattern, mut code) = (None, false);
                let mut i = 1;
                while let Some(o) = argv(i) {
                    if eq(o, "WITHCODE") && !code {
                        code = true;
                        i += 1;
                    } else if eq(o, "LIBRARYNAME") && pattern.is_none() {
                        let Some(p) = argv(i + 1) else {
                            return Err(err("library name argument was not given"));
                        };
                        if p.len() > glob::MAX_PATTERN {
                            return Err(err(glob::PATTERN_TOO_LONG));
                        }
                        pattern = Some(p);
                        i += 2;
                    } else {
                        return Err(ParseError(Cow::Owned(format!(
                            "Unknown argument {}",
                            clip(o, 128)
                        ))));
                    }
                }
                ScriptAdmin::FunctionList { pattern, code }
            } else if ["DELETE", "KILL", "STATS"].iter().any(|s| eq(sub, s)) {
                return Err(wrong_sub(name, sub));
            } else {
                return Err(unknown_sub(name, sub));
            })
        }
        b"SUBSCRIBE" | b"PSUBSCRIBE" | b"SSUBSCRIBE" => {
            if argc == 0 {
                return Err(wrong_args(name));
            }
            let kind = sub_kind(upper);
            if kind == SubKind::Pattern && args.iter().any(|p| p.len() > glob::MAX_PATTERN) {
                return Err(err(glob::PATTERN_TOO_LONG));
            }
            Redis::Subscribe { kind, names: args }
        }
        b"UNSUBSCRIBE" | b"PUNSUBSCRIBE" | b"SUNSUBSCRIBE" => Redis::Unsubscribe {
            kind: sub_kind(upper),
            names: args,
        },
        b"PUBLISH" | b"SPUBLISH" => match (argv(0), argv(1), argc) {
            (Some(channel), Some(message), 2) => Redis::Publish {
                channel,
                message,
                shard: upper[0] == b'S',
            },
            _ => return Err(wrong_args(name)),
        },
        b"PUBSUB" => {
            let Some(sub) = argv(0) else {
                return Err(wrong_args(name));
            };
            let shard = eq(sub, "SHARDCHANNELS") || eq(sub, "SHARDNUMSUB");
            Redis::PubSub(if eq(sub, "CHANNELS") || eq(sub, "SHARDCHANNELS") {
                match (argv(1), argc) {
                    (None, _) => PubSubQuery::Channels {
                        pattern: None,
                        shard,
                    },
                    (Some(p), 2) => {
                        if p.len() > glob::MAX_PATTERN {
                            return Err(err(glob::PATTERN_TOO_LONG));
                        }
                        PubSubQuery::Channels {
                            pattern: Some(p),
                            shard,
                        }
                    }
                    _ => return Err(wrong_sub(name, sub)),
                }
            } else if eq(sub, "NUMSUB") || eq(sub, "SHARDNUMSUB") {
                PubSubQuery::NumSub {
                    channels: args.skip(1),
                    shard,
                }
            } else if eq(sub, "NUMPAT") && argc == 1 {
                PubSubQuery::NumPat
            } else if eq(sub, "HELP") && argc == 1 {
                PubSubQuery::Help
            } else if eq(sub, "NUMPAT") || eq(sub, "HELP") {
                return Err(wrong_sub(name, sub));
            } else {
                return Err(unknown_sub(name, sub));
            })
        }
        b"MEMORY" => {
            let Some(sub) = argv(0) else {
                return Err(wrong_args(name));
            };
            if eq(sub, "USAGE") {
                let Some(key) = argv(1) else {
                    return Err(wrong_sub(name, sub));
                };
                match (argv(2), argv(3), argc) {
                    (None, _, 2) => {}
                    (Some(o), Some(n), 4) if eq(o, "SAMPLES") => {
                        if parse_int::<i64>(n).is_none() {
                            return Err(err("value is not an integer or out of range"));
                        }
                    }
                    _ => return Err(err("syntax error")),
                }
                Redis::Memory(MemoryQuery::Usage(key))
            } else {
                let q = if eq(sub, "STATS") {
                    MemoryQuery::Stats
                } else if eq(sub, "DOCTOR") {
                    MemoryQuery::Doctor
                } else if eq(sub, "PURGE") {
                    MemoryQuery::Purge
                } else if eq(sub, "MALLOC-STATS") {
                    MemoryQuery::MallocStats
                } else if eq(sub, "HELP") {
                    MemoryQuery::Help
                } else {
                    return Err(unknown_sub(name, sub));
                };
                if argc != 1 {
                    return Err(wrong_sub(name, sub));
                }
                Redis::Memory(q)
            }
        }
        _ => match super::strings::parse(upper, args) {
            Some(Ok(c)) => Redis::Str(c),
            Some(Err(_)) => return Err(wrong_args(name)),
            None => return Err(unknown_command(name, args.iter())),
        },
    };
    Ok(Command::Redis(r))
}

/// The kind of subscription a (un)subscribe command names by its first
/// letter: `P…` patterns, `S…` sharded channels, else channels.
fn sub_kind(upper: &[u8]) -> SubKind {
    match upper.first() {
        Some(b'P') => SubKind::Pattern,
        Some(b'S') if upper != b"SUBSCRIBE" => SubKind::Shard,
        _ => SubKind::Channel,
    }
}

/// `CLIENT LIST` arguments after `LIST` (`args` starts at `LIST`).
fn client_list(args: Args<'_>) -> Result<ClientFilter<'_>, ParseError> {
    let mut it = args.iter().skip(1);
    match (it.next(), args.len()) {
        (None, _) => Ok(ClientFilter::All),
        (Some(t), 3) if eq(t, "TYPE") => {
            let v = it.next().unwrap_or_default();
            crate::stats::ClientType::parse(v)
                .map(ClientFilter::Type)
                .ok_or_else(|| unknown_type(v))
        }
        (Some(t), n) if n > 2 && eq(t, "ID") => {
            for id in it {
                if parse_int::<i64>(id).is_none_or(|i| i <= 0) {
                    return Err(err("Invalid client ID"));
                }
            }
            Ok(ClientFilter::Ids(args.skip(2)))
        }
        _ => Err(err("syntax error")),
    }
}

fn unknown_type(v: &[u8]) -> ParseError {
    ParseError(Cow::Owned(format!(
        "Unknown client type '{}'",
        clip(v, 128)
    )))
}

/// `CLIENT KILL` arguments after `KILL` (`args` starts at `KILL`).
fn client_kill(args: Args<'_>) -> Result<ClientKill<'_>, ParseError> {
    let mut k = ClientKill {
        legacy: false,
        id: None,
        addr: None,
        laddr: None,
        user: None,
        kind: None,
        maxage: None,
        skipme: true,
    };
    let mut it = args.iter().skip(1);
    if args.len() == 2 {
        k.legacy = true;
        k.skipme = false;
        k.addr = it.next();
        return Ok(k);
    }
    while let Some(opt) = it.next() {
        let Some(v) = it.next() else {
            return Err(err("syntax error"));
        };
        if eq(opt, "ID") {
            match parse_int::<i64>(v) {
                Some(i) if i > 0 => k.id = Some(i as u64),
                _ => return Err(err("client-id should be greater than 0")),
            }
        } else if eq(opt, "TYPE") {
            k.kind = Some(crate::stats::ClientType::parse(v).ok_or_else(|| unknown_type(v))?);
        } else if eq(opt, "ADDR") {
            k.addr = Some(v);
        } else if eq(opt, "LADDR") {
            k.laddr = Some(v);
        } else if eq(opt, "USER") {
            k.user = Some(v);
        } else if eq(opt, "MAXAGE") {
            match parse_int::<i64>(v) {
                Some(i) if i >= 0 => k.maxage = Some(i as u64),
                Some(_) => return Err(err("maxage should be greater than 0")),
                None => return Err(err("value is not an integer or out of range")),
            }
        } else if eq(opt, "SKIPME") {
            k.skipme = if eq(v, "YES") {
                true
            } else if eq(v, "NO") {
                false
            } else {
                return Err(err("syntax error"));
            };
        } else {
            return Err(err("syntax error"));
        }
    }
    Ok(k)
}

fn hello(args: Args<'_>) -> Result<Redis<'_>, ParseError> {
    let mut it = args.iter();
    let mut setname = None;
    let mut protover = None;
    let mut auth = None;
    if let Some(v) = it.next() {
        protover = match parse_int::<u64>(v) {
            Some(p @ (2 | 3)) => Some(p as u8),
            Some(_) => return Err(err(NOPROTO)),
            None => return Err(err("Protocol version is not an integer or out of range")),
        };
        while let Some(opt) = it.next() {
            if eq(opt, "AUTH") {
                let (Some(user), Some(pass)) = (it.next(), it.next()) else {
                    return Err(err("Syntax error in HELLO option 'auth'"));
                };
                auth = Some((user, pass));
            } else if eq(opt, "SETNAME") {
                let Some(n) = it.next() else {
                    return Err(err("Syntax error in HELLO option 'setname'"));
                };
                if !crate::stats::ClientMeta::valid(n) {
                    return Err(err(
                        "Client names cannot contain spaces, newlines or special characters.",
                    ));
                }
                setname = Some(n);
            } else {
                return Err(ParseError(Cow::Owned(format!(
                    "Syntax error in HELLO option '{}'",
                    clip(opt, 128)
                ))));
            }
        }
    }
    Ok(Redis::Hello {
        protover,
        auth,
        setname,
    })
}

/// The refusal of an unknown protocol version. It starts with Redis's error
/// code `NOPROTO`, so the worker sends it as `-NOPROTO …` (not `-ERR …`).
pub const NOPROTO: &str = "NOPROTO unsupported protocol version";

fn scan<'a>(name: &[u8], args: Args<'a>) -> Result<Redis<'a>, ParseError> {
    let mut it = args.iter();
    let Some(c) = it.next() else {
        return Err(wrong_args(name));
    };
    let cursor = parse_int::<u64>(c).ok_or(err("invalid cursor"))?;
    let (mut pattern, mut count, mut any_type) = (None, 10usize, true);
    while let Some(opt) = it.next() {
        let Some(val) = it.next() else {
            return Err(err("syntax error"));
        };
        if eq(opt, "MATCH") {
            if val.len() > glob::MAX_PATTERN {
                return Err(err(glob::PATTERN_TOO_LONG));
            }
            pattern = Some(val);
        } else if eq(opt, "COUNT") {
            count = match parse_int::<u64>(val) {
                Some(0) => return Err(err("syntax error")),
                Some(n) => (n as usize).min(MAX_SCAN_COUNT),
                None => return Err(err("value is not an integer or out of range")),
            };
        } else if eq(opt, "TYPE") {
            any_type = eq(val, "string");
        } else {
            return Err(err("syntax error"));
        }
    }
    Ok(Redis::Scan {
        cursor,
        pattern,
        count,
        any_type,
    })
}

fn set<'a>(name: &[u8], args: Args<'a>) -> Result<Command<'a>, ParseError> {
    let mut it = args.iter();
    let (Some(key), Some(value)) = (it.next(), it.next()) else {
        return Err(wrong_args(name));
    };
    let (mut cond, mut get) = (None, false);
    if it.clone().any(super::expiry::is_set_expiry_option) {
        // Validated when it runs (`exec::expiry`), options and all.
        return Ok(Command::Expiry(super::expiry::ExpiryCmd::Set {
            key,
            value,
            opts: args.skip(2),
        }));
    }
    for opt in it {
        if eq(opt, "NX") || eq(opt, "XX") {
            let c = if eq(opt, "NX") {
                SetCond::Nx
            } else {
                SetCond::Xx
            };
            if cond.is_some_and(|old| old != c) {
                return Err(err("syntax error"));
            }
            cond = Some(c);
        } else if eq(opt, "GET") {
            get = true;
        } else {
            return Err(err("syntax error"));
        }
    }
    if cond.is_none() && !get {
        return Ok(Command::Set(key, value));
    }
    Ok(Command::Redis(Redis::SetWith {
        key,
        value,
        cond,
        get,
    }))
}

/// `SYNC host port [--full] [--verify] [--force] [--rejoin]` over RESP (same meaning and
/// error texts as the text protocol, docs/protocol.md §10).
fn sync<'a>(name: &[u8], args: Args<'a>) -> Result<Command<'a>, ParseError> {
    let mut it = args.iter();
    let Some(host) = it.next() else {
        return Err(wrong_args(name));
    };
    let host = std::str::from_utf8(host).map_err(|_| err("host must be UTF-8"))?;
    let Some(port) = it.next() else {
        return Err(err("SYNC requires <port> as the second argument"));
    };
    let port =
        parse_int::<u16>(port).ok_or(err("Invalid port: must be an integer in 0..=65535"))?;
    let (mut full, mut verify, mut force, mut rejoin) = (false, false, false, false);
    for opt in it {
        let flag = match opt {
            b"--full" => &mut full,
            b"--verify" => &mut verify,
            b"--force" => &mut force,
            b"--rejoin" => &mut rejoin,
            _ => {
                return Err(ParseError(Cow::Owned(format!(
                    "Unknown option: {}",
                    clip(opt, 128)
                ))));
            }
        };
        if *flag {
            return Err(ParseError(Cow::Owned(format!(
                "Duplicate option: {}",
                String::from_utf8_lossy(opt)
            ))));
        }
        *flag = true;
    }
    Ok(Command::Sync {
        host,
        port,
        full,
        verify,
        force,
        rejoin,
    })
}

// ---- the command table (COMMAND, COMMAND DOCS) ----------------------------

/// One argument of a command, for `COMMAND DOCS` (redis-cli hints).
#[derive(Debug, Clone, Copy)]
pub struct ArgSpec {
    /// Argument name (and display text).
    pub name: &'static str,
    /// Redis argument type: `key`, `string`, `integer`, `pattern`,
    /// `pure-token`.
    pub kind: &'static str,
    /// For `pure-token`: the token itself.
    pub token: Option<&'static str>,
    pub optional: bool,
    pub multiple: bool,
}

/// One command for `COMMAND` / `COMMAND DOCS`.
#[derive(Debug, Clone, Copy)]
pub struct CommandSpec {
    /// Lower-case name.
    pub name: &'static str,
    /// Redis arity: the exact argument count including the name, or its
    /// negation for "at least".
    pub arity: i64,
    /// Redis command flags (`readonly`, `write`, `fast`, …).
    pub flags: &'static [&'static str],
    /// First key position, last key position (-1: last argument), step.
    pub keys: (i64, i64, i64),
    /// Redis group (`string`, `keyspace`, `server`, `connection`, `generic`).
    pub group: &'static str,
    pub summary: &'static str,
    /// Redis version the command appeared in.
    pub since: &'static str,
    pub args: &'static [ArgSpec],
}

const fn arg(name: &'static str, kind: &'static str) -> ArgSpec {
    ArgSpec {
        name,
        kind,
        token: None,
        optional: false,
        multiple: false,
    }
}

const fn opt(a: ArgSpec) -> ArgSpec {
    ArgSpec {
        optional: true,
        ..a
    }
}

const fn many(a: ArgSpec) -> ArgSpec {
    ArgSpec {
        multiple: true,
        ..a
    }
}

const fn token(t: &'static str) -> ArgSpec {
    ArgSpec {
        name: t,
        kind: "pure-token",
        token: Some(t),
        optional: true,
        multiple: false,
    }
}

const KEY: ArgSpec = arg("key", "key");
const VALUE: ArgSpec = arg("value", "string");
const RO: &[&str] = &["readonly", "fast"];
const RW: &[&str] = &["write", "denyoom", "fast"];
const ADMIN: &[&str] = &["loading", "stale"];
const SCRIPT_RUN: &[&str] = &[
    "noscript",
    "stale",
    "skip_monitor",
    "may_replicate",
    "no_mandatory_keys",
    "movablekeys",
];
const SCRIPT_RO: &[&str] = &[
    "readonly",
    "noscript",
    "stale",
    "skip_monitor",
    "no_mandatory_keys",
    "movablekeys",
];
const SCRIPT_ARGS: &[ArgSpec] = &[
    arg("script", "string"),
    arg("numkeys", "integer"),
    opt(many(KEY)),
    opt(many(arg("arg", "string"))),
];

/// Every RESP command this server answers (internal anti-entropy commands
/// aside), as `COMMAND` and `COMMAND DOCS` report them.
pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "get",
        arity: 2,
        flags: RO,
        keys: (1, 1, 1),
        group: "string",
        summary: "Returns the string value of a key.",
        since: "1.0.0",
        args: &[KEY],
    },
    CommandSpec {
        name: "set",
        arity: -3,
        flags: &["write", "denyoom"],
        keys: (1, 1, 1),
        group: "string",
        summary: "Sets the string value of a key (NX/XX/GET; no expiry options).",
        since: "1.0.0",
        args: &[KEY, VALUE, token("NX"), token("XX"), token("GET")],
    },
    CommandSpec {
        name: "del",
        arity: -2,
        flags: &["write"],
        keys: (1, -1, 1),
        group: "generic",
        summary: "Deletes one or more keys.",
        since: "1.0.0",
        args: &[many(KEY)],
    },
    CommandSpec {
        name: "unlink",
        arity: -2,
        flags: &["write", "fast"],
        keys: (1, -1, 1),
        group: "generic",
        summary: "Deletes one or more keys (same as DEL).",
        since: "4.0.0",
        args: &[many(KEY)],
    },
    CommandSpec {
        name: "exists",
        arity: -2,
        flags: RO,
        keys: (1, -1, 1),
        group: "generic",
        summary: "Counts how many of the given keys exist.",
        since: "1.0.0",
        args: &[many(KEY)],
    },
    CommandSpec {
        name: "incr",
        arity: 2,
        flags: RW,
        keys: (1, 1, 1),
        group: "string",
        summary: "Increments the integer value of a key by one.",
        since: "1.0.0",
        args: &[KEY],
    },
    CommandSpec {
        name: "decr",
        arity: 2,
        flags: RW,
        keys: (1, 1, 1),
        group: "string",
        summary: "Decrements the integer value of a key by one.",
        since: "1.0.0",
        args: &[KEY],
    },
    CommandSpec {
        name: "incrby",
        arity: 3,
        flags: RW,
        keys: (1, 1, 1),
        group: "string",
        summary: "Increments the integer value of a key by a number.",
        since: "1.0.0",
        args: &[KEY, arg("increment", "integer")],
    },
    CommandSpec {
        name: "decrby",
        arity: 3,
        flags: RW,
        keys: (1, 1, 1),
        group: "string",
        summary: "Decrements the integer value of a key by a number.",
        since: "1.0.0",
        args: &[KEY, arg("decrement", "integer")],
    },
    CommandSpec {
        name: "append",
        arity: 3,
        flags: RW,
        keys: (1, 1, 1),
        group: "string",
        summary: "Appends a string to the value of a key.",
        since: "2.0.0",
        args: &[KEY, VALUE],
    },
    CommandSpec {
        name: "strlen",
        arity: 2,
        flags: RO,
        keys: (1, 1, 1),
        group: "string",
        summary: "Returns the length of a string value.",
        since: "2.2.0",
        args: &[KEY],
    },
    CommandSpec {
        name: "mget",
        arity: -2,
        flags: RO,
        keys: (1, -1, 1),
        group: "string",
        summary: "Returns the values of one or more keys.",
        since: "1.0.0",
        args: &[many(KEY)],
    },
    CommandSpec {
        name: "mset",
        arity: -3,
        flags: &["write", "denyoom"],
        keys: (1, -1, 2),
        group: "string",
        summary: "Sets the values of one or more keys.",
        since: "1.0.1",
        args: &[many(KEY), VALUE],
    },
    CommandSpec {
        name: "msetnx",
        arity: -3,
        flags: &["write", "denyoom"],
        keys: (1, -1, 2),
        group: "string",
        summary: "Atomically sets the values of one or more keys only when none of them exist.",
        since: "1.0.1",
        args: &[many(KEY), VALUE],
    },
    CommandSpec {
        name: "setnx",
        arity: 3,
        flags: RW,
        keys: (1, 1, 1),
        group: "string",
        summary: "Sets the value of a key only when the key doesn't exist.",
        since: "1.0.0",
        args: &[KEY, VALUE],
    },
    CommandSpec {
        name: "getset",
        arity: 3,
        flags: RW,
        keys: (1, 1, 1),
        group: "string",
        summary: "Returns the previous value of a key after setting it to a new value.",
        since: "1.0.0",
        args: &[KEY, VALUE],
    },
    CommandSpec {
        name: "getdel",
        arity: 2,
        flags: &["write", "fast"],
        keys: (1, 1, 1),
        group: "string",
        summary: "Returns the value of a key after deleting the key.",
        since: "6.2.0",
        args: &[KEY],
    },
    CommandSpec {
        name: "persist",
        arity: 2,
        flags: &["write", "fast"],
        keys: (1, 1, 1),
        group: "generic",
        summary: "Removes the expiration time of a key (MerkleKV keys never expire: always 0).",
        since: "2.2.0",
        args: &[KEY],
    },
    CommandSpec {
        name: "type",
        arity: 2,
        flags: RO,
        keys: (1, 1, 1),
        group: "generic",
        summary: "Returns the type of a key (always string or none).",
        since: "1.0.0",
        args: &[KEY],
    },
    CommandSpec {
        name: "ttl",
        arity: 2,
        flags: RO,
        keys: (1, 1, 1),
        group: "generic",
        summary: "Returns the time to live of a key (keys never expire: -1).",
        since: "1.0.0",
        args: &[KEY],
    },
    CommandSpec {
        name: "pttl",
        arity: 2,
        flags: RO,
        keys: (1, 1, 1),
        group: "generic",
        summary: "Returns the time to live of a key in ms (keys never expire: -1).",
        since: "2.6.0",
        args: &[KEY],
    },
    CommandSpec {
        name: "scan",
        arity: -2,
        flags: &["readonly"],
        keys: (0, 0, 0),
        group: "generic",
        summary: "Iterates over the key names with a cursor.",
        since: "2.8.0",
        args: &[
            arg("cursor", "integer"),
            opt(arg("pattern", "pattern")),
            opt(arg("count", "integer")),
        ],
    },
    CommandSpec {
        name: "keys",
        arity: 2,
        flags: &["readonly"],
        keys: (0, 0, 0),
        group: "generic",
        summary: "Returns all key names that match a pattern.",
        since: "1.0.0",
        args: &[arg("pattern", "pattern")],
    },
    CommandSpec {
        name: "dbsize",
        arity: 1,
        flags: RO,
        keys: (0, 0, 0),
        group: "server",
        summary: "Returns the number of keys.",
        since: "1.0.0",
        args: &[],
    },
    CommandSpec {
        name: "flushdb",
        arity: -1,
        flags: &["write"],
        keys: (0, 0, 0),
        group: "server",
        summary: "Removes every key on this node (not replicated).",
        since: "1.0.0",
        args: &[],
    },
    CommandSpec {
        name: "flushall",
        arity: -1,
        flags: &["write"],
        keys: (0, 0, 0),
        group: "server",
        summary: "Removes every key on this node (not replicated).",
        since: "1.0.0",
        args: &[],
    },
    CommandSpec {
        name: "ping",
        arity: -1,
        flags: &["fast"],
        keys: (0, 0, 0),
        group: "connection",
        summary: "Returns the server's liveliness response.",
        since: "1.0.0",
        args: &[opt(arg("message", "string"))],
    },
    CommandSpec {
        name: "echo",
        arity: 2,
        flags: &["fast"],
        keys: (0, 0, 0),
        group: "connection",
        summary: "Returns the given string.",
        since: "1.0.0",
        args: &[arg("message", "string")],
    },
    CommandSpec {
        name: "select",
        arity: 2,
        flags: &["loading", "stale", "fast"],
        keys: (0, 0, 0),
        group: "connection",
        summary: "Selects the database (only 0 exists).",
        since: "1.0.0",
        args: &[arg("index", "integer")],
    },
    CommandSpec {
        name: "multi",
        arity: 1,
        flags: &["noscript", "loading", "stale", "fast", "allow_busy"],
        keys: (0, 0, 0),
        group: "transactions",
        summary: "Starts a transaction.",
        since: "1.2.0",
        args: &[],
    },
    CommandSpec {
        name: "exec",
        arity: 1,
        flags: &["noscript", "loading", "stale", "skip_slowlog"],
        keys: (0, 0, 0),
        group: "transactions",
        summary: "Executes all commands in a transaction.",
        since: "1.2.0",
        args: &[],
    },
    CommandSpec {
        name: "discard",
        arity: 1,
        flags: &["noscript", "loading", "stale", "fast", "allow_busy"],
        keys: (0, 0, 0),
        group: "transactions",
        summary: "Discards a transaction.",
        since: "2.0.0",
        args: &[],
    },
    CommandSpec {
        name: "watch",
        arity: -2,
        flags: &["noscript", "loading", "stale", "fast", "allow_busy"],
        keys: (1, -1, 1),
        group: "transactions",
        summary: "Monitors changes to keys to determine the execution of a transaction.",
        since: "2.2.0",
        args: &[many(KEY)],
    },
    CommandSpec {
        name: "unwatch",
        arity: 1,
        flags: &["noscript", "loading", "stale", "fast", "allow_busy"],
        keys: (0, 0, 0),
        group: "transactions",
        summary: "Forgets about watched keys of a transaction.",
        since: "2.2.0",
        args: &[],
    },
    CommandSpec {
        name: "quit",
        arity: -1,
        flags: &["fast"],
        keys: (0, 0, 0),
        group: "connection",
        summary: "Closes the connection.",
        since: "1.0.0",
        args: &[],
    },
    CommandSpec {
        name: "hello",
        arity: -1,
        flags: &["fast"],
        keys: (0, 0, 0),
        group: "connection",
        summary: "Handshakes with the server (RESP2 only).",
        since: "6.0.0",
        args: &[opt(arg("protover", "integer"))],
    },
    CommandSpec {
        name: "client",
        arity: -2,
        flags: ADMIN,
        keys: (0, 0, 0),
        group: "connection",
        summary: "CLIENT SETNAME|GETNAME|SETINFO|ID|LIST|INFO|REPLY|KILL|NO-EVICT|HELP.",
        since: "2.4.0",
        args: &[arg("subcommand", "string"), opt(many(arg("arg", "string")))],
    },
    CommandSpec {
        name: "command",
        arity: -1,
        flags: ADMIN,
        keys: (0, 0, 0),
        group: "server",
        summary: "Returns details about commands (COUNT, LIST, INFO, DOCS).",
        since: "2.8.13",
        args: &[
            opt(arg("subcommand", "string")),
            opt(many(arg("arg", "string"))),
        ],
    },
    CommandSpec {
        name: "config",
        arity: -2,
        flags: ADMIN,
        keys: (0, 0, 0),
        group: "server",
        summary: "CONFIG GET parameter values (read-only).",
        since: "2.0.0",
        args: &[
            arg("subcommand", "string"),
            opt(many(arg("parameter", "pattern"))),
        ],
    },
    CommandSpec {
        name: "info",
        arity: -1,
        flags: ADMIN,
        keys: (0, 0, 0),
        group: "server",
        summary: "Returns information and statistics about the server.",
        since: "1.0.0",
        args: &[opt(many(arg("section", "string")))],
    },
    CommandSpec {
        name: "stats",
        arity: -1,
        flags: ADMIN,
        keys: (0, 0, 0),
        group: "server",
        summary: "MerkleKV STATS counters (as one bulk string).",
        since: "0.1.0",
        args: &[],
    },
    CommandSpec {
        name: "hash",
        arity: -1,
        flags: &["readonly"],
        keys: (0, 0, 0),
        group: "server",
        summary: "MerkleKV: Merkle root, or a digest of the keys with a prefix.",
        since: "0.1.0",
        args: &[opt(arg("prefix", "string"))],
    },
    CommandSpec {
        name: "sync",
        arity: -3,
        flags: &["admin"],
        keys: (0, 0, 0),
        group: "server",
        summary: "MerkleKV: one anti-entropy round with a peer now.",
        since: "0.1.0",
        args: &[
            arg("host", "string"),
            arg("port", "integer"),
            token("--full"),
            token("--verify"),
            token("--force"),
            token("--rejoin"),
        ],
    },
    CommandSpec {
        name: "shutdown",
        arity: -1,
        flags: &["admin"],
        keys: (0, 0, 0),
        group: "server",
        summary: "Stops the server.",
        since: "1.0.0",
        args: &[],
    },
    CommandSpec {
        name: "incrbyfloat",
        arity: 3,
        flags: RW,
        keys: (1, 1, 1),
        group: "string",
        summary: "Increments the floating point value of a key (Redis's long double formatting).",
        since: "2.6.0",
        args: &[KEY, arg("increment", "double")],
    },
    CommandSpec {
        name: "setrange",
        arity: 4,
        flags: &["write", "denyoom"],
        keys: (1, 1, 1),
        group: "string",
        summary: "Overwrites part of a string at an offset, padding with zero bytes.",
        since: "2.2.0",
        args: &[KEY, arg("offset", "integer"), VALUE],
    },
    CommandSpec {
        name: "getrange",
        arity: 4,
        flags: &["readonly"],
        keys: (1, 1, 1),
        group: "string",
        summary: "Returns a substring of a string.",
        since: "2.4.0",
        args: &[KEY, arg("start", "integer"), arg("end", "integer")],
    },
    CommandSpec {
        name: "substr",
        arity: 4,
        flags: &["readonly"],
        keys: (1, 1, 1),
        group: "string",
        summary: "Returns a substring of a string (old name of GETRANGE).",
        since: "1.0.0",
        args: &[KEY, arg("start", "integer"), arg("end", "integer")],
    },
    CommandSpec {
        name: "setbit",
        arity: 4,
        flags: &["write", "denyoom"],
        keys: (1, 1, 1),
        group: "bitmap",
        summary: "Sets or clears the bit at an offset, growing the string.",
        since: "2.2.0",
        args: &[KEY, arg("offset", "integer"), arg("value", "integer")],
    },
    CommandSpec {
        name: "getbit",
        arity: 3,
        flags: RO,
        keys: (1, 1, 1),
        group: "bitmap",
        summary: "Returns the bit at an offset.",
        since: "2.2.0",
        args: &[KEY, arg("offset", "integer")],
    },
    CommandSpec {
        name: "bitcount",
        arity: -2,
        flags: &["readonly"],
        keys: (1, 1, 1),
        group: "bitmap",
        summary: "Counts the set bits of a string, optionally in a BYTE or BIT range.",
        since: "2.6.0",
        args: &[
            KEY,
            opt(arg("start", "integer")),
            opt(arg("end", "integer")),
            token("BYTE"),
            token("BIT"),
        ],
    },
    CommandSpec {
        name: "lcs",
        arity: -3,
        flags: &["readonly"],
        keys: (1, 2, 1),
        group: "string",
        summary: "Finds the longest common subsequence of two strings.",
        since: "7.0.0",
        args: &[
            KEY,
            KEY,
            token("LEN"),
            token("IDX"),
            opt(arg("min-match-len", "integer")),
            token("WITHMATCHLEN"),
        ],
    },
    CommandSpec {
        name: "rename",
        arity: 3,
        flags: &["write"],
        keys: (1, 2, 1),
        group: "generic",
        summary: "Renames a key, overwriting the destination.",
        since: "1.0.0",
        args: &[KEY, arg("newkey", "key")],
    },
    CommandSpec {
        name: "renamenx",
        arity: 3,
        flags: &["write", "fast"],
        keys: (1, 2, 1),
        group: "generic",
        summary: "Renames a key only if the new name does not exist.",
        since: "1.0.0",
        args: &[KEY, arg("newkey", "key")],
    },
    CommandSpec {
        name: "copy",
        arity: -3,
        flags: &["write", "denyoom"],
        keys: (1, 2, 1),
        group: "generic",
        summary: "Copies the value of a key to a new key (DB 0 only).",
        since: "6.2.0",
        args: &[
            arg("source", "key"),
            arg("destination", "key"),
            opt(arg("destination-db", "integer")),
            token("REPLACE"),
        ],
    },
    CommandSpec {
        name: "randomkey",
        arity: 1,
        flags: &["readonly"],
        keys: (0, 0, 0),
        group: "generic",
        summary: "Returns a random key name.",
        since: "1.0.0",
        args: &[],
    },
    CommandSpec {
        name: "touch",
        arity: -2,
        flags: &["readonly", "fast"],
        keys: (1, -1, 1),
        group: "generic",
        summary: "Counts how many of the given keys exist (no access times are kept).",
        since: "3.2.1",
        args: &[many(KEY)],
    },
    CommandSpec {
        name: "object",
        arity: -2,
        flags: &["readonly"],
        keys: (2, 2, 1),
        group: "generic",
        summary: "OBJECT ENCODING|REFCOUNT|IDLETIME|FREQ|HELP.",
        since: "2.2.3",
        args: &[arg("subcommand", "string"), KEY],
    },
    CommandSpec {
        name: "reset",
        arity: 1,
        flags: &["noscript", "loading", "stale", "fast"],
        keys: (0, 0, 0),
        group: "connection",
        summary: "Resets the connection: transaction, watched keys, name, protocol version.",
        since: "6.2.0",
        args: &[],
    },
    CommandSpec {
        name: "monitor",
        arity: 1,
        flags: &["admin", "noscript", "loading", "stale"],
        keys: (0, 0, 0),
        group: "server",
        summary: "Streams every command the node runs (Redis format).",
        since: "1.0.0",
        args: &[],
    },
    CommandSpec {
        name: "save",
        arity: 1,
        flags: &["admin", "noscript", "no_async_loading", "no_multi"],
        keys: (0, 0, 0),
        group: "server",
        summary: "Writes a snapshot now (persistent engine).",
        since: "1.0.0",
        args: &[],
    },
    CommandSpec {
        name: "bgsave",
        arity: -1,
        flags: &["admin", "noscript", "no_async_loading"],
        keys: (0, 0, 0),
        group: "server",
        summary: "Asks for a snapshot in the background (persistent engine).",
        since: "1.0.0",
        args: &[opt(token("SCHEDULE"))],
    },
    CommandSpec {
        name: "lastsave",
        arity: 1,
        flags: &["loading", "stale", "fast"],
        keys: (0, 0, 0),
        group: "server",
        summary: "Unix time of the last successful snapshot.",
        since: "1.0.0",
        args: &[],
    },
    CommandSpec {
        name: "time",
        arity: 1,
        flags: &["loading", "stale", "fast"],
        keys: (0, 0, 0),
        group: "server",
        summary: "Returns the server time (seconds, microseconds).",
        since: "2.6.0",
        args: &[],
    },
    CommandSpec {
        name: "function",
        arity: -2,
        flags: &["noscript"],
        keys: (0, 0, 0),
        group: "scripting",
        summary: "Loads, lists, deletes and stops Lua function libraries (node-local).",
        since: "7.0.0",
        args: &[arg("subcommand", "string")],
    },
    CommandSpec {
        name: "eval",
        arity: -3,
        flags: SCRIPT_RUN,
        keys: (0, 0, 0),
        group: "scripting",
        summary: "Runs a Lua script atomically; its writes replicate as ordinary writes.",
        since: "2.6.0",
        args: SCRIPT_ARGS,
    },
    CommandSpec {
        name: "evalsha",
        arity: -3,
        flags: SCRIPT_RUN,
        keys: (0, 0, 0),
        group: "scripting",
        summary: "Runs a cached Lua script by its SHA1.",
        since: "2.6.0",
        args: SCRIPT_ARGS,
    },
    CommandSpec {
        name: "eval_ro",
        arity: -3,
        flags: SCRIPT_RO,
        keys: (0, 0, 0),
        group: "scripting",
        summary: "Runs a read-only Lua script.",
        since: "7.0.0",
        args: SCRIPT_ARGS,
    },
    CommandSpec {
        name: "evalsha_ro",
        arity: -3,
        flags: SCRIPT_RO,
        keys: (0, 0, 0),
        group: "scripting",
        summary: "Runs a cached read-only Lua script by its SHA1.",
        since: "7.0.0",
        args: SCRIPT_ARGS,
    },
    CommandSpec {
        name: "fcall",
        arity: -3,
        flags: SCRIPT_RUN,
        keys: (0, 0, 0),
        group: "scripting",
        summary: "Calls a function of a loaded library.",
        since: "7.0.0",
        args: SCRIPT_ARGS,
    },
    CommandSpec {
        name: "fcall_ro",
        arity: -3,
        flags: SCRIPT_RO,
        keys: (0, 0, 0),
        group: "scripting",
        summary: "Calls a read-only function of a loaded library.",
        since: "7.0.0",
        args: SCRIPT_ARGS,
    },
    CommandSpec {
        name: "script",
        arity: -2,
        flags: &["noscript"],
        keys: (0, 0, 0),
        group: "scripting",
        summary: "Loads, checks, flushes and stops cached Lua scripts (node-local).",
        since: "2.6.0",
        args: &[arg("subcommand", "string")],
    },
    CommandSpec {
        name: "subscribe",
        arity: -2,
        flags: PUBSUB,
        keys: (0, 0, 0),
        group: "pubsub",
        summary: "Listens for messages published to channels (on this node).",
        since: "2.0.0",
        args: &[many(arg("channel", "string"))],
    },
    CommandSpec {
        name: "unsubscribe",
        arity: -1,
        flags: PUBSUB,
        keys: (0, 0, 0),
        group: "pubsub",
        summary: "Stops listening to messages posted to channels.",
        since: "2.0.0",
        args: &[opt(many(arg("channel", "string")))],
    },
    CommandSpec {
        name: "psubscribe",
        arity: -2,
        flags: PUBSUB,
        keys: (0, 0, 0),
        group: "pubsub",
        summary: "Listens for messages published to channels that match glob patterns.",
        since: "2.0.0",
        args: &[many(arg("pattern", "pattern"))],
    },
    CommandSpec {
        name: "punsubscribe",
        arity: -1,
        flags: PUBSUB,
        keys: (0, 0, 0),
        group: "pubsub",
        summary: "Stops listening to messages published to channels that match glob patterns.",
        since: "2.0.0",
        args: &[opt(many(arg("pattern", "pattern")))],
    },
    CommandSpec {
        name: "publish",
        arity: 3,
        flags: &["pubsub", "loading", "stale", "fast"],
        keys: (0, 0, 0),
        group: "pubsub",
        summary: "Posts a message to the subscribers of a channel on this node.",
        since: "2.0.0",
        args: &[arg("channel", "string"), arg("message", "string")],
    },
    CommandSpec {
        name: "ssubscribe",
        arity: -2,
        flags: PUBSUB,
        keys: (1, -1, 1),
        group: "pubsub",
        summary: "Listens for messages published to shard channels (on this node).",
        since: "7.0.0",
        args: &[many(arg("shardchannel", "string"))],
    },
    CommandSpec {
        name: "sunsubscribe",
        arity: -1,
        flags: PUBSUB,
        keys: (1, -1, 1),
        group: "pubsub",
        summary: "Stops listening to messages posted to shard channels.",
        since: "7.0.0",
        args: &[opt(many(arg("shardchannel", "string")))],
    },
    CommandSpec {
        name: "spublish",
        arity: 3,
        flags: &["pubsub", "loading", "stale", "fast"],
        keys: (1, 1, 1),
        group: "pubsub",
        summary: "Posts a message to the subscribers of a shard channel on this node.",
        since: "7.0.0",
        args: &[arg("shardchannel", "string"), arg("message", "string")],
    },
    CommandSpec {
        name: "pubsub",
        arity: -2,
        flags: &["pubsub", "loading", "stale"],
        keys: (0, 0, 0),
        group: "pubsub",
        summary: "PUBSUB CHANNELS|NUMSUB|NUMPAT|SHARDCHANNELS|SHARDNUMSUB|HELP.",
        since: "2.8.0",
        args: &[arg("subcommand", "string"), opt(many(arg("arg", "string")))],
    },
    CommandSpec {
        name: "slowlog",
        arity: -2,
        flags: &["admin", "loading", "stale"],
        keys: (0, 0, 0),
        group: "server",
        summary: "SLOWLOG GET|LEN|RESET|HELP: the commands slower than slowlog-log-slower-than.",
        since: "2.2.12",
        args: &[arg("subcommand", "string"), opt(arg("count", "integer"))],
    },
    CommandSpec {
        name: "module",
        arity: -2,
        flags: &["admin", "noscript"],
        keys: (0, 0, 0),
        group: "server",
        summary: "MODULE LIST|HELP: there are no modules.",
        since: "4.0.0",
        args: &[arg("subcommand", "string")],
    },
    CommandSpec {
        name: "memory",
        arity: -2,
        flags: &["readonly"],
        keys: (2, 2, 1),
        group: "server",
        summary: "MEMORY USAGE|STATS|DOCTOR|PURGE|MALLOC-STATS|HELP.",
        since: "4.0.0",
        args: &[arg("subcommand", "string"), opt(KEY)],
    },
];

const PUBSUB: &[&str] = &["pubsub", "noscript", "loading", "stale"];

/// The table entry of a command name (case-insensitive).
pub fn spec(name: &[u8]) -> Option<&'static CommandSpec> {
    COMMANDS.iter().find(|c| eq(name, c.name))
}

/// The subcommands of a container command (`COMMAND LIST` shows them as
/// `parent|sub`).
pub fn subcommands(name: &str) -> &'static [&'static str] {
    match name {
        "client" => &[
            "setname", "getname", "setinfo", "id", "list", "info", "reply", "kill", "no-evict",
            "help",
        ],
        "command" => &[
            "count",
            "list",
            "info",
            "docs",
            "getkeys",
            "getkeysandflags",
            "help",
        ],
        "config" => &["get", "set", "resetstat", "help"],
        "object" => &["encoding", "freq", "idletime", "refcount", "help"],
        "function" => &["delete", "flush", "kill", "list", "load", "stats", "help"],
        "script" => &["exists", "flush", "kill", "load", "help"],
        "slowlog" => &["get", "len", "reset", "help"],
        "module" => &["list", "help"],
        "pubsub" => &[
            "channels",
            "numsub",
            "numpat",
            "shardchannels",
            "shardnumsub",
            "help",
        ],
        "memory" => &["usage", "stats", "doctor", "purge", "malloc-stats", "help"],
        _ => &[],
    }
}

/// The ACL categories of a command, without the `@`.
pub fn categories(c: &CommandSpec) -> Vec<&'static str> {
    let mut cats = vec![match c.group {
        "generic" => "keyspace",
        "server" => "admin",
        "connection" => "connection",
        "bitmap" => "bitmap",
        "scripting" => "scripting",
        "pubsub" => "pubsub",
        _ => "string",
    }];
    for (flag, cat) in [("readonly", "read"), ("write", "write"), ("fast", "fast")] {
        if c.flags.contains(&flag) {
            cats.push(cat);
        }
    }
    cats
}

/// Why `COMMAND GETKEYS` cannot answer (Redis's texts).
pub const GETKEYS_UNKNOWN: &str = "Invalid command specified";
/// See [`GETKEYS_UNKNOWN`].
pub const GETKEYS_NO_KEYS: &str = "The command has no key arguments";
/// See [`GETKEYS_UNKNOWN`].
pub const GETKEYS_BAD_ARGS: &str = "Invalid arguments specified for command";
/// See [`GETKEYS_UNKNOWN`].
pub const GETKEYS_ARITY: &str = "Invalid number of arguments specified for command";

/// The positions (in `argv`, the command name at 0) of the keys of a
/// request, from its command's key range, or Redis's refusal.
pub fn key_positions(argv: &[&[u8]]) -> Result<(&'static CommandSpec, Vec<usize>), &'static str> {
    let c = argv.first().and_then(|n| spec(n)).ok_or(GETKEYS_UNKNOWN)?;
    let (first, last, step) = c.keys;
    if first == 0 && !c.flags.contains(&"movablekeys") {
        return Err(GETKEYS_NO_KEYS);
    }
    let argc = argv.len() as i64;
    if (c.arity > 0 && c.arity != argc) || argc < -c.arity {
        return Err(GETKEYS_ARITY);
    }
    // Scripts: `numkeys` keys after the script and the count.
    if c.flags.contains(&"movablekeys") {
        let n = super::parse_int::<i64>(argv[2]).ok_or(GETKEYS_BAD_ARGS)?;
        if n < 0 || n > argc - 3 {
            return Err(GETKEYS_BAD_ARGS);
        }
        return Ok((c, (3..3 + n as usize).collect()));
    }
    // Of MEMORY's subcommands only USAGE names a key.
    if c.name == "memory" && !argv.get(1).is_some_and(|s| eq(s, "USAGE")) {
        return Err(GETKEYS_NO_KEYS);
    }
    let last = if last < 0 { argc + last } else { last };
    let mut v = Vec::new();
    let mut i = first;
    while i <= last && i < argc {
        v.push(i as usize);
        i += step.max(1);
    }
    Ok((c, v))
}

/// The key flags `COMMAND GETKEYSANDFLAGS` reports for the key at
/// position `pos` of a `c` request (Redis's key-spec flags).
pub fn key_flags(c: &CommandSpec, pos: usize) -> &'static [&'static str] {
    match (c.name, pos) {
        ("del" | "unlink", _) => &["RM", "delete"],
        ("getdel", _) => &["RW", "access", "delete"],
        ("rename" | "renamenx", 1) => &["RW", "access", "delete"],
        ("rename" | "renamenx" | "copy", _) if pos == 2 => &["OW", "insert"],
        ("copy", _) => &["RO", "access"],
        ("set" | "mset" | "msetnx" | "setnx", _) => &["OW", "update"],
        ("getset", _) => &["RW", "access", "update"],
        (
            "incr" | "decr" | "incrby" | "decrby" | "incrbyfloat" | "append" | "setrange"
            | "setbit",
            _,
        ) => &["RW", "access", "update"],
        ("ssubscribe" | "sunsubscribe" | "spublish", _) => &["not_key"],
        ("exists" | "type" | "ttl" | "pttl" | "strlen" | "touch" | "object" | "memory", _) => {
            &["RO"]
        }
        ("persist", _) => &["RW", "update"],
        _ if c.flags.contains(&"write") => &["RW", "update"],
        _ => &["RO", "access"],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_positions_follow_the_key_ranges() {
        let pos = |a: &[&str]| {
            let v: Vec<&[u8]> = a.iter().map(|s| s.as_bytes()).collect();
            key_positions(&v).map(|(_, p)| p)
        };
        assert_eq!(pos(&["get", "k"]), Ok(vec![1]));
        assert_eq!(pos(&["MSET", "a", "1", "b", "2"]), Ok(vec![1, 3]));
        assert_eq!(pos(&["lcs", "a", "b"]), Ok(vec![1, 2]));
        assert_eq!(pos(&["del", "a", "b", "c"]), Ok(vec![1, 2, 3]));
        assert_eq!(pos(&["object", "encoding", "k"]), Ok(vec![2]));
        assert_eq!(pos(&["get"]), Err(GETKEYS_ARITY));
        assert_eq!(pos(&["ping"]), Err(GETKEYS_NO_KEYS));
        assert_eq!(pos(&["nosuch", "k"]), Err(GETKEYS_UNKNOWN));
    }

    fn parse(words: &[&str]) -> Result<Command<'static>, ParseError> {
        let v: Vec<&'static [u8]> = words
            .iter()
            .map(|w| &*Box::leak(w.as_bytes().to_vec().into_boxed_slice()))
            .collect();
        let v: &'static [&'static [u8]] = Box::leak(v.into_boxed_slice());
        let name = v[0];
        let upper = name.to_ascii_uppercase();
        command(&upper, name, Args::List(&v[1..]))
    }

    fn msg(r: Result<Command<'static>, ParseError>) -> String {
        r.unwrap_err().0.into_owned()
    }

    #[test]
    fn unknown_command_text_matches_redis() {
        assert_eq!(
            msg(parse(&["foo", "a", "b"])),
            "unknown command 'foo', with args beginning with: 'a' 'b' "
        );
        assert_eq!(
            msg(parse(&["foo"])),
            "unknown command 'foo', with args beginning with: "
        );
        let long = "x".repeat(300);
        let m = msg(parse(&["foo", &long, "y"]));
        assert!(m.len() < 250, "{m}");
    }

    #[test]
    fn set_options() {
        assert_eq!(parse(&["set", "k", "v"]), Ok(Command::Set(b"k", b"v")));
        assert_eq!(
            parse(&["set", "k", "v", "nx", "GET"]),
            Ok(Command::Redis(Redis::SetWith {
                key: b"k",
                value: b"v",
                cond: Some(SetCond::Nx),
                get: true
            }))
        );
        // With an expiry option it is an expiry command, validated when run.
        assert!(matches!(
            parse(&["set", "k", "v", "NX", "ex", "10"]),
            Ok(Command::Expiry(
                crate::protocol::expiry::ExpiryCmd::Set { .. }
            ))
        ));
        assert_eq!(msg(parse(&["set", "k", "v", "NX", "XX"])), "syntax error");
        assert_eq!(msg(parse(&["set", "k", "v", "bogus"])), "syntax error");
        assert_eq!(
            msg(parse(&["set", "k"])),
            "wrong number of arguments for 'set' command"
        );
    }

    #[test]
    fn scan_options() {
        assert_eq!(
            parse(&["scan", "0"]),
            Ok(Command::Redis(Redis::Scan {
                cursor: 0,
                pattern: None,
                count: 10,
                any_type: true
            }))
        );
        assert_eq!(
            parse(&["scan", "17", "match", "a*", "COUNT", "1000", "type", "hash"]),
            Ok(Command::Redis(Redis::Scan {
                cursor: 17,
                pattern: Some(b"a*"),
                count: 1000,
                any_type: false
            }))
        );
        assert_eq!(msg(parse(&["scan", "x"])), "invalid cursor");
        assert_eq!(msg(parse(&["scan", "-1"])), "invalid cursor");
        assert_eq!(msg(parse(&["scan", "0", "COUNT"])), "syntax error");
        assert_eq!(msg(parse(&["scan", "0", "COUNT", "0"])), "syntax error");
        assert_eq!(msg(parse(&["scan", "0", "FOO", "1"])), "syntax error");
    }

    #[test]
    fn hello_and_client() {
        assert_eq!(
            parse(&["hello"]),
            Ok(Command::Redis(Redis::Hello {
                protover: None,
                auth: None,
                setname: None
            }))
        );
        assert_eq!(
            parse(&["HELLO", "2", "AUTH", "u", "p", "SETNAME", "me"]),
            Ok(Command::Redis(Redis::Hello {
                protover: Some(2),
                auth: Some((b"u", b"p")),
                setname: Some(b"me")
            }))
        );
        assert_eq!(
            parse(&["hello", "3", "SETNAME", "me"]),
            Ok(Command::Redis(Redis::Hello {
                protover: Some(3),
                auth: None,
                setname: Some(b"me")
            }))
        );
        assert_eq!(msg(parse(&["hello", "4"])), NOPROTO);
        assert!(msg(parse(&["hello", "2", "SETNAME"])).contains("setname"));
        assert!(msg(parse(&["hello", "x"])).contains("Protocol version"));
        assert_eq!(
            parse(&["client", "setinfo", "LIB-VER", "5.0.1"]),
            Ok(Command::Redis(Redis::ClientSetInfo {
                lib_ver: true,
                value: b"5.0.1"
            }))
        );
        assert!(msg(parse(&["client", "setname", "a b"])).contains("cannot contain"));
        assert_eq!(
            msg(parse(&["client", "bogus"])),
            "unknown subcommand 'bogus'. Try CLIENT HELP."
        );
        assert_eq!(
            msg(parse(&["client", "id", "x"])),
            "wrong number of arguments for 'client|id' command"
        );
        assert_eq!(
            msg(parse(&["client"])),
            "wrong number of arguments for 'client' command"
        );
    }

    #[test]
    fn command_and_config() {
        assert_eq!(
            parse(&["command"]),
            Ok(Command::Redis(Redis::Command(CommandQuery::All)))
        );
        assert_eq!(
            parse(&["command", "count"]),
            Ok(Command::Redis(Redis::Command(CommandQuery::Count)))
        );
        assert!(matches!(
            parse(&["command", "docs", "get"]),
            Ok(Command::Redis(Redis::Command(CommandQuery::Docs(a)))) if a.len() == 1
        ));
        assert!(matches!(
            parse(&["config", "get", "save", "appendonly"]),
            Ok(Command::Redis(Redis::ConfigGet(a))) if a.len() == 2
        ));
        assert!(matches!(
            parse(&["config", "set", "save", ""]),
            Ok(Command::Redis(Redis::ConfigSet(a))) if a.len() == 2
        ));
        assert!(msg(parse(&["config", "rewrite"])).contains("not supported"));
        assert_eq!(
            msg(parse(&["config", "set", "save"])),
            "wrong number of arguments for 'config|set' command"
        );
        assert_eq!(
            msg(parse(&["config", "get"])),
            "wrong number of arguments for 'config|get' command"
        );
    }

    #[test]
    fn sync_over_resp() {
        assert_eq!(
            parse(&["SYNC", "h", "7000", "--full"]),
            Ok(Command::Sync {
                host: "h",
                port: 7000,
                full: true,
                verify: false,
                force: false,
                rejoin: false
            })
        );
        assert_eq!(
            msg(parse(&["SYNC", "h"])),
            "SYNC requires <port> as the second argument"
        );
        assert_eq!(
            msg(parse(&["SYNC", "h", "1", "--full", "--full"])),
            "Duplicate option: --full"
        );
    }

    #[test]
    fn table_is_consistent() {
        let mut names: Vec<_> = COMMANDS.iter().map(|c| c.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), COMMANDS.len());
        for c in COMMANDS {
            assert_eq!(c.name, c.name.to_lowercase());
            assert!(c.arity != 0);
        }
        assert!(spec(b"GET").is_some());
        assert!(spec(b"nope").is_none());
    }
}
