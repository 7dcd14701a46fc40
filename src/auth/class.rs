//! What each command needs: its [`Class`], from one exhaustive match over
//! every [`Command`] (a new command does not compile until it has one).

use crate::protocol::expiry::ExpiryCmd;
use crate::protocol::redis::{Redis, ScriptAdmin};
use crate::protocol::strings::StrCmd;
use crate::protocol::{Command, ReadOnlyAction, ReplicateAction};

/// The class of a command; a role allows some classes ([`super::allows`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Allowed before authentication: AUTH, HELLO, QUIT, RESET.
    Open,
    /// Reads, introspection, connection state: every authenticated user.
    Read,
    /// Data writes: roles readwrite and admin.
    Write,
    /// Node administration and bulk data access: role admin.
    Admin,
}

/// The class of `cmd`. `SYNC` is [`Class::Admin`] here; the gate lowers it
/// to [`Class::Write`] for a configured peer.
pub fn of(cmd: &Command<'_>) -> Class {
    use Class::*;
    match cmd {
        Command::Auth { .. } | Command::Quit => Open,
        Command::Get(_)
        | Command::MGet(_)
        | Command::Exists(_)
        | Command::Scan(_)
        | Command::Ping(_)
        | Command::Echo(_)
        | Command::DbSize
        | Command::Memory
        | Command::Stats
        | Command::Info
        | Command::Version
        | Command::Hash(_)
        | Command::Strlen(_)
        | Command::Select(_) => Read,
        Command::Set(..)
        | Command::Delete(_)
        | Command::Append(..)
        | Command::Prepend(..)
        | Command::Numeric { .. }
        | Command::MSet(_) => Write,
        Command::Replicate(ReplicateAction::Status) | Command::ReadOnly(ReadOnlyAction::Status) => {
            Read
        }
        Command::Truncate
        | Command::FlushDb
        | Command::ClientList
        | Command::Sync { .. }
        | Command::Replicate(_)
        | Command::Nodes
        | Command::ReadOnly(_)
        | Command::Shutdown
        | Command::Internal(_) => Admin,
        Command::Redis(r) => redis(r),
        Command::Expiry(e) => expiry(e),
    }
}

fn expiry(e: &ExpiryCmd<'_>) -> Class {
    use Class::*;
    match e {
        ExpiryCmd::Ttl { .. } | ExpiryCmd::TextTtl { .. } => Read,
        // GETEX is a write in Redis too (with an option it changes the TTL).
        ExpiryCmd::Set { .. }
        | ExpiryCmd::SetEx { .. }
        | ExpiryCmd::GetEx { .. }
        | ExpiryCmd::Expire { .. }
        | ExpiryCmd::Persist(_)
        | ExpiryCmd::TextExpire { .. }
        | ExpiryCmd::TextPersist(_)
        | ExpiryCmd::TextSetEx { .. } => Write,
    }
}

fn redis(r: &Redis<'_>) -> Class {
    use Class::*;
    match r {
        // RESET also ends the authentication (auth::gate).
        Redis::Hello { .. } | Redis::Reset => Open,
        // Acts on the whole process's allocator.
        Redis::Memory(crate::protocol::redis::MemoryQuery::Purge) => Admin,
        Redis::Command(_)
        | Redis::ClientSetName(_)
        | Redis::ClientReply(_)
        | Redis::ClientGetName
        | Redis::ClientSetInfo { .. }
        | Redis::ClientId
        | Redis::ClientInfo
        | Redis::Scan { .. }
        | Redis::Keys(_)
        | Redis::Info(_)
        | Redis::Type(_)
        | Redis::Multi
        | Redis::Exec
        | Redis::Discard
        | Redis::Watch(_)
        | Redis::Unwatch
        | Redis::LastSave
        | Redis::Subscribe { .. }
        | Redis::Unsubscribe { .. }
        | Redis::Publish { .. }
        | Redis::PubSub(_)
        | Redis::Memory(_)
        | Redis::ModuleList
        | Redis::Help(_)
        | Redis::Time => Read,
        Redis::SetWith { .. } | Redis::SetNx(..) | Redis::GetDel(_) | Redis::MSetNx(_) => Write,
        // A read-only script (`EVAL_RO`, `FCALL_RO`) cannot write.
        Redis::Run(r) if r.ro => Read,
        Redis::Run(_) => Write,
        Redis::Script(
            ScriptAdmin::Exists(_)
            | ScriptAdmin::FunctionList { .. }
            | ScriptAdmin::FunctionStats
            | ScriptAdmin::Kill { .. },
        ) => Read,
        // Loading code is running code.
        Redis::Script(_) => Write,
        // MONITOR shows every client's commands and data.
        Redis::ConfigGet(_)
        | Redis::ConfigSet(_)
        | Redis::ConfigResetStat
        | Redis::ClientList(_)
        | Redis::ClientKill(_)
        | Redis::ClientNoEvict(_)
        | Redis::Monitor
        | Redis::Save
        | Redis::BgSave { .. }
        | Redis::SlowLog(_) => Admin,
        Redis::Str(s) => string(s),
    }
}

fn string(s: &StrCmd<'_>) -> Class {
    use Class::*;
    match s {
        StrCmd::GetRange { .. }
        | StrCmd::GetBit { .. }
        | StrCmd::BitCount { .. }
        | StrCmd::Lcs { .. }
        | StrCmd::RandomKey
        | StrCmd::Touch(_)
        | StrCmd::Object(_) => Read,
        StrCmd::IncrByFloat { .. }
        | StrCmd::SetRange { .. }
        | StrCmd::SetBit { .. }
        | StrCmd::Rename { .. }
        | StrCmd::Copy { .. } => Write,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Parsed, resp, text};

    fn resp_class(args: &[&str]) -> Class {
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        let mut spans = Vec::new();
        let mut partial = resp::Partial::default();
        match partial.parse(req.as_bytes(), &mut spans) {
            Parsed::Request(cmd, _) => of(&cmd),
            other => panic!("{args:?}: {other:?}"),
        }
    }

    fn text_class(line: &str) -> Class {
        match text::parse(format!("{line}\r\n").as_bytes()) {
            Parsed::Request(cmd, _) => of(&cmd),
            other => panic!("{line:?}: {other:?}"),
        }
    }

    #[test]
    fn the_issue_lists_hold() {
        use Class::*;
        for (args, want) in [
            (&["GET", "k"][..], Read),
            (&["MGET", "a", "b"], Read),
            (&["EXISTS", "k"], Read),
            (&["SCAN", "0"], Read),
            (&["KEYS", "*"], Read),
            (&["DBSIZE"], Read),
            (&["TTL", "k"], Read),
            (&["HASH"], Read),
            (&["PING"], Read),
            (&["ECHO", "x"], Read),
            (&["INFO"], Read),
            (&["SET", "k", "v"], Write),
            (&["DEL", "k"], Write),
            (&["INCR", "k"], Write),
            (&["SHUTDOWN"], Admin),
            (&["FLUSHDB"], Admin),
            (&["FLUSHALL"], Admin),
            (&["SYNC", "h", "1"], Admin),
            (&["CONFIG", "GET", "*"], Admin),
            (&["MKV.ROOT"], Admin),
            (&["AUTH", "p"], Open),
            (&["AUTH", "u", "p"], Open),
            (&["HELLO", "3", "AUTH", "u", "p"], Open),
            (&["QUIT"], Open),
            (&["MONITOR"], Admin),
            (&["CLIENT", "KILL", "ID", "3"], Admin),
            (&["CLIENT", "LIST"], Admin),
            (&["SAVE"], Admin),
            (&["BGSAVE"], Admin),
            (&["LASTSAVE"], Read),
        ] {
            assert_eq!(resp_class(args), want, "{args:?}");
        }
        assert_eq!(text_class("TRUNCATE"), Admin);
        assert_eq!(text_class("REPLICATE status"), Read);
        assert_eq!(text_class("REPLICATE disable"), Admin);
        assert_eq!(text_class("READONLY status"), Read);
        assert_eq!(text_class("READONLY on"), Admin);
        assert_eq!(resp_class(&["MKV.READONLY"]), Read);
        assert_eq!(resp_class(&["MKV.READONLY", "off"]), Admin);
        assert_eq!(text_class("AUTH pw"), Open);
        assert_eq!(text_class("SET k v"), Write);
        assert_eq!(text_class("GET k"), Read);
    }
}
