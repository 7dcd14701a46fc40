//! The check in front of every command ([`admit`]): AUTH, `HELLO … AUTH`,
//! NOAUTH before authentication, NOPERM above the user's role, and the cap
//! on failed attempts per connection. Replies follow Redis 7's texts in
//! RESP; the text protocol gets the same codes after `ERROR `.
//!
//! A failed attempt is reported as [`Admit::Failed`]: the worker then holds
//! the connection (its `WRONGPASS` reply and everything after it) for
//! `security.auth_failure_delay_ms` on its event-loop timer, without
//! blocking the thread (`server::worker`).

use std::sync::atomic::Ordering::Relaxed;

use super::{Auth, Class, DEFAULT_USER, Session, allows, class};
use crate::protocol::Command;
use crate::protocol::redis::Redis;
use crate::protocol::reply::{self, Proto};

/// What the connection does with the command after [`admit`].
#[derive(Debug, PartialEq, Eq)]
pub enum Admit {
    /// Execute it.
    Run,
    /// Answered (or refused) here: go on with the next request.
    Done,
    /// A failed AUTH / `HELLO … AUTH`, answered `WRONGPASS`: hold the
    /// connection for the failure delay, then go on, or close it when
    /// `close` (too many failed attempts).
    Failed { close: bool },
}

/// Redis's refusal of AUTH when no password is configured.
const NO_PASSWORD: &str = "AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?";
const HELLO_NOAUTH: &str = "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time";

/// Checks `cmd` (whose request bytes are `raw`) for the connection with
/// `session`; writes any reply it gives itself to `out`.
pub fn admit(
    auth: &Auth,
    session: &mut Session,
    cmd: &Command<'_>,
    raw: &[u8],
    proto: Proto,
    out: &mut Vec<u8>,
) -> Admit {
    if !auth.enabled() {
        if let Command::Auth { .. } = cmd {
            reply::error(out, proto, NO_PASSWORD);
            return Admit::Done;
        }
        return Admit::Run;
    }
    match cmd {
        Command::Auth { user, password } => {
            let user = user.unwrap_or(DEFAULT_USER.as_bytes());
            return match login(auth, session, user, password, proto, out) {
                Ok(()) => {
                    reply::ok(out, proto);
                    Admit::Done
                }
                Err(refused) => refused,
            };
        }
        Command::Redis(Redis::Hello {
            auth: Some((user, password)),
            ..
        }) => {
            return match login(auth, session, user, password, proto, out) {
                Ok(()) => Admit::Run,
                Err(refused) => refused,
            };
        }
        _ => {}
    }
    // RESET returns the connection to its initial state: not authenticated
    // (Redis does the same when the default user has a password).
    if let Command::Redis(Redis::Reset) = cmd {
        session.user = None;
        return Admit::Run;
    }
    let mut class = class::of(cmd);
    if let Command::Sync { host, port, .. } = cmd
        && auth.is_peer(host, *port)
    {
        class = Class::Write;
    }
    let Some(user) = session.user() else {
        if class == Class::Open && !matches!(cmd, Command::Redis(Redis::Hello { .. })) {
            return Admit::Run;
        }
        Auth::count(&auth.noauth);
        let msg = match (cmd, proto) {
            (Command::Redis(Redis::Hello { .. }), _) => HELLO_NOAUTH,
            (_, Proto::Resp) => "NOAUTH Authentication required.",
            (_, Proto::Text) => "NOAUTH Authentication required",
        };
        reply::error(out, proto, msg);
        return Admit::Done;
    };
    if allows(auth.role(user), class) {
        return Admit::Run;
    }
    Auth::count(&auth.noperm);
    let msg = format!(
        "NOPERM User {} has no permissions to run the '{}' command",
        auth.user_name(user),
        command_name(raw, proto)
    );
    reply::error(out, proto, &msg);
    Admit::Done
}

/// Whether a script run by `user` (the caller's session user, `None`
/// without authentication) may run `cmd` (`name`: its command word):
/// a script cannot do more than its caller. The refusal is counted and
/// worded like the gate's.
pub fn script_admits(
    auth: &Auth,
    user: Option<usize>,
    cmd: &Command<'_>,
    name: &[u8],
) -> Result<(), String> {
    if !auth.enabled() {
        return Ok(());
    }
    let class = class::of(cmd);
    if let Some(u) = user
        && allows(auth.role(u), class)
    {
        return Ok(());
    }
    Auth::count(&auth.noperm);
    let who = user.map_or(crate::auth::DEFAULT_USER, |u| auth.user_name(u));
    Err(format!(
        "NOPERM User {who} has no permissions to run the '{}' command",
        String::from_utf8_lossy(name).to_lowercase()
    ))
}

/// Checks `user`/`password`; on success the session is that user's, on
/// failure `WRONGPASS` is written, the attempt counted, and the error says
/// what the connection does next.
fn login(
    auth: &Auth,
    session: &mut Session,
    user: &[u8],
    password: &[u8],
    proto: Proto,
    out: &mut Vec<u8>,
) -> Result<(), Admit> {
    if let Some(i) = auth.verify(user, password) {
        session.user = Some(i);
        Auth::count(&auth.successes);
        return Ok(());
    }
    Auth::count(&auth.failures);
    session.failures = session.failures.saturating_add(1);
    let msg = match proto {
        Proto::Resp => "WRONGPASS invalid username-password pair or user is disabled.",
        Proto::Text => "WRONGPASS invalid username-password pair or user is disabled",
    };
    reply::error(out, proto, msg);
    let close = session.failures >= auth.max_failures();
    if close {
        auth.disconnects.fetch_add(1, Relaxed);
    }
    Err(Admit::Failed { close })
}

/// The command's name as typed, lower-cased (at most 64 bytes), from the
/// raw request: the first bulk string in RESP, the first word in text.
fn command_name(raw: &[u8], proto: Proto) -> String {
    // RESP inline commands are words, like the text protocol.
    let name: &[u8] = match proto {
        Proto::Resp if raw.first() == Some(&b'*') => resp_name(raw).unwrap_or_default(),
        _ => raw
            .split(|b| b.is_ascii_whitespace())
            .find(|w| !w.is_empty())
            .unwrap_or_default(),
    };
    String::from_utf8_lossy(&name[..name.len().min(64)]).to_lowercase()
}

/// The first bulk string of a RESP array request.
fn resp_name(raw: &[u8]) -> Option<&[u8]> {
    let line_end = |from: usize| {
        raw.get(from..)?
            .windows(2)
            .position(|w| w == b"\r\n")
            .map(|p| from + p)
    };
    let first = line_end(0)?;
    let header = raw.get(first + 2..line_end(first + 2)?)?;
    let len: usize = std::str::from_utf8(header.strip_prefix(b"$")?)
        .ok()?
        .parse()
        .ok()?;
    let start = line_end(first + 2)? + 2;
    raw.get(start..start + len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::values::sha256;
    use crate::config::{Role, SecurityConfig, UserConfig};

    fn auth() -> Auth {
        Auth::new(
            &SecurityConfig {
                requirepass: Some("top".into()),
                requirepass_file: None,
                users: vec![UserConfig {
                    name: "ro".into(),
                    password_sha256: sha256(b"pw"),
                    role: Role::ReadOnly,
                }],
                protected_mode: true,
                max_auth_failures: 2,
                auth_failure_delay: std::time::Duration::ZERO,
            },
            &[],
        )
    }

    fn run(a: &Auth, s: &mut Session, cmd: Command<'_>, raw: &[u8]) -> (Admit, String) {
        let mut out = Vec::new();
        let r = admit(a, s, &cmd, raw, Proto::Resp, &mut out);
        (r, String::from_utf8(out).unwrap())
    }

    #[test]
    fn noauth_then_auth_then_noperm() {
        let a = auth();
        let mut s = Session::default();
        let raw = b"*1\r\n$7\r\nFLUSHDB\r\n";
        let (r, out) = run(&a, &mut s, Command::FlushDb, raw);
        assert_eq!(
            (r, out.as_str()),
            (Admit::Done, "-NOAUTH Authentication required.\r\n")
        );
        let (r, _) = run(&a, &mut s, Command::Quit, b"");
        assert_eq!(r, Admit::Run);
        let login = Command::Auth {
            user: Some(b"ro"),
            password: b"pw",
        };
        assert_eq!(run(&a, &mut s, login, b"").1, "+OK\r\n");
        assert_eq!(run(&a, &mut s, Command::Get(b"k"), b"").0, Admit::Run);
        let (r, out) = run(&a, &mut s, Command::FlushDb, raw);
        assert_eq!(r, Admit::Done);
        assert_eq!(
            out,
            "-NOPERM User ro has no permissions to run the 'flushdb' command\r\n"
        );
        assert_eq!(a.noperm.load(Relaxed), 1);
        assert_eq!(a.noauth.load(Relaxed), 1);
    }

    #[test]
    fn failures_are_counted_and_close_the_connection() {
        let a = auth();
        let mut s = Session::default();
        let bad = || Command::Auth {
            user: None,
            password: b"nope",
        };
        let (r, out) = run(&a, &mut s, bad(), b"");
        assert_eq!(r, Admit::Failed { close: false });
        assert_eq!(
            out,
            "-WRONGPASS invalid username-password pair or user is disabled.\r\n"
        );
        assert_eq!(run(&a, &mut s, bad(), b"").0, Admit::Failed { close: true });
        assert_eq!(a.failures.load(Relaxed), 2);
        assert_eq!(a.disconnects.load(Relaxed), 1);
        assert_eq!(s.user(), None);
    }

    #[test]
    fn hello_auth_is_checked_and_hello_alone_refused() {
        let a = auth();
        let mut s = Session::default();
        let hello = |auth| {
            Command::Redis(Redis::Hello {
                protover: Some(3),
                auth,
                setname: None,
            })
        };
        let (r, out) = run(&a, &mut s, hello(None), b"");
        assert_eq!(r, Admit::Done);
        assert!(out.starts_with("-NOAUTH HELLO must be called"), "{out}");
        let (r, out) = run(&a, &mut s, hello(Some((b"default", b"x"))), b"");
        assert_eq!(r, Admit::Failed { close: false });
        assert!(out.starts_with("-WRONGPASS"), "{out}");
        let (r, out) = run(&a, &mut s, hello(Some((b"default", b"top"))), b"");
        assert_eq!((r, out.as_str()), (Admit::Run, ""));
        assert_eq!(s.user(), Some(0));
    }

    #[test]
    fn without_users_everything_runs_and_auth_is_refused() {
        let a = Auth::new(
            &SecurityConfig {
                requirepass: None,
                requirepass_file: None,
                users: Vec::new(),
                protected_mode: true,
                max_auth_failures: 2,
                auth_failure_delay: std::time::Duration::ZERO,
            },
            &[],
        );
        let mut s = Session::default();
        assert_eq!(run(&a, &mut s, Command::Shutdown, b"").0, Admit::Run);
        let (r, out) = run(
            &a,
            &mut s,
            Command::Auth {
                user: None,
                password: b"x",
            },
            b"",
        );
        assert_eq!(r, Admit::Done);
        assert!(
            out.starts_with("-ERR AUTH <password> called without"),
            "{out}"
        );
    }

    #[test]
    fn command_names_come_from_the_request() {
        assert_eq!(
            command_name(b"*2\r\n$6\r\nCONFIG\r\n$3\r\nGET\r\n", Proto::Resp),
            "config"
        );
        assert_eq!(command_name(b"  FLUSHDB now\r\n", Proto::Text), "flushdb");
        assert_eq!(command_name(b"*1\r\n$9\r\nSHU", Proto::Resp), "");
        assert_eq!(command_name(b"FlushAll\r\n", Proto::Resp), "flushall");
    }
}
