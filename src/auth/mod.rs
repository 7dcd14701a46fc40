//! Users, passwords and roles (docs/protocol.md §16, Security).
//!
//! * [`Auth`] (in `Shared`) holds the configured users: the built-in user
//!   `default` (role admin) when `security.requirepass` is set, then every
//!   `[[security.users]]` entry. Only SHA-256 digests of passwords are
//!   kept; [`Auth::verify`] hashes the offered password once and compares
//!   it with *every* user's digest in constant time, so neither the
//!   password nor (beyond the name check) which user matched shows in the
//!   timing. Passwords are never logged or shown (settings are `secret`).
//! * Each connection has a [`Session`]: who it is authenticated as and how
//!   many AUTH attempts failed. [`gate::admit`] runs before every command:
//!   it answers AUTH, checks `HELLO … AUTH`, refuses commands before
//!   authentication (NOAUTH) and above the user's role (NOPERM), and
//!   closes a connection after `security.max_auth_failures` failed
//!   attempts. Each failed attempt also holds the connection for
//!   `security.auth_failure_delay_ms` (the worker's timer, not a sleep), so
//!   guessing over one connection runs at most one guess per delay, and a
//!   reconnect per `max_auth_failures` guesses.
//! * What a command needs is its [`Class`], given by [`class::of`], one
//!   exhaustive match over every command: a new command does not compile
//!   until it has a class.
//!
//! Without users (no `requirepass`, no `[[security.users]]`) nothing is
//! checked and every connection may run everything, as before.

pub mod class;
pub mod gate;
pub mod info;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::config::values::sha256;
use crate::config::{Role, SecurityConfig};

pub use class::Class;

/// The name of the built-in user whose password is `requirepass`.
pub const DEFAULT_USER: &str = "default";

/// One user: name, password digest, role.
struct User {
    name: String,
    digest: [u8; 32],
    role: Role,
}

/// The configured users and the authentication counters.
pub struct Auth {
    users: Vec<User>,
    max_failures: u32,
    /// Configured anti-entropy peers (`host:port`): `SYNC` to one of
    /// them needs role readwrite, to any other host role admin.
    peers: Vec<String>,
    /// Failed AUTH / HELLO AUTH attempts.
    pub failures: AtomicU64,
    /// Connections closed after too many failed attempts.
    pub disconnects: AtomicU64,
    /// Commands refused before authentication (NOAUTH).
    pub noauth: AtomicU64,
    /// Commands refused for the user's role (NOPERM).
    pub noperm: AtomicU64,
    /// Successful authentications.
    pub successes: AtomicU64,
    /// Replies held back by the failure delay.
    pub delayed: AtomicU64,
}

impl Auth {
    /// The users of `sec`; `peers` are the configured anti-entropy peers.
    pub fn new(sec: &SecurityConfig, peers: &[String]) -> Auth {
        let mut users = Vec::with_capacity(sec.users.len() + 1);
        if let Some(pw) = &sec.requirepass {
            users.push(User {
                name: DEFAULT_USER.to_string(),
                digest: sha256(pw.as_bytes()),
                role: Role::Admin,
            });
        }
        users.extend(sec.users.iter().map(|u| User {
            name: u.name.clone(),
            digest: u.password_sha256,
            role: u.role,
        }));
        Auth {
            users,
            max_failures: u32::try_from(sec.max_auth_failures.max(1)).unwrap_or(u32::MAX),
            peers: peers.to_vec(),
            failures: AtomicU64::new(0),
            disconnects: AtomicU64::new(0),
            noauth: AtomicU64::new(0),
            noperm: AtomicU64::new(0),
            successes: AtomicU64::new(0),
            delayed: AtomicU64::new(0),
        }
    }

    /// True when clients must authenticate.
    #[inline]
    pub fn enabled(&self) -> bool {
        !self.users.is_empty()
    }

    /// The user `name` with `password`, if that pair is configured: the
    /// user's index. Constant time in the password (see the module docs).
    pub fn verify(&self, name: &[u8], password: &[u8]) -> Option<usize> {
        let offered = sha256(password);
        let mut found = None;
        for (i, u) in self.users.iter().enumerate() {
            let same = ct_eq(&offered, &u.digest);
            if same & (u.name.as_bytes() == name) {
                found = Some(i);
            }
        }
        found
    }

    /// Whether a user called `name` is configured.
    pub fn has_user(&self, name: &[u8]) -> bool {
        self.users.iter().any(|u| u.name.as_bytes() == name)
    }

    /// The name of user `i`.
    pub fn user_name(&self, i: usize) -> &str {
        self.users.get(i).map_or("", |u| u.name.as_str())
    }

    /// The role of user `i`.
    pub fn role(&self, i: usize) -> Role {
        self.users.get(i).map_or(Role::ReadOnly, |u| u.role)
    }

    /// Whether `host:port` is a configured anti-entropy peer.
    pub fn is_peer(&self, host: &str, port: u16) -> bool {
        let addr = crate::client::host_port(host, port);
        self.peers.contains(&addr)
    }

    fn count(c: &AtomicU64) {
        c.fetch_add(1, Relaxed);
    }
}

/// Compares two digests without an early exit.
#[inline(never)]
fn ct_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b) {
        diff |= x ^ y;
    }
    std::hint::black_box(diff) == 0
}

/// One connection's authentication state.
#[derive(Debug, Default)]
pub struct Session {
    /// Index of the authenticated user (`None`: not authenticated).
    user: Option<usize>,
    /// Failed attempts on this connection.
    failures: u32,
}

impl Session {
    /// The authenticated user's index.
    pub fn user(&self) -> Option<usize> {
        self.user
    }
}

/// Whether `role` may run commands of `class`.
pub fn allows(role: Role, class: Class) -> bool {
    match class {
        Class::Open | Class::Read => true,
        Class::Write => role >= Role::ReadWrite,
        Class::Admin => role == Role::Admin,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::UserConfig;

    fn sec(pass: Option<&str>, users: &[(&str, &str, Role)]) -> SecurityConfig {
        SecurityConfig {
            requirepass: pass.map(str::to_string),
            requirepass_file: None,
            users: users
                .iter()
                .map(|(n, p, r)| UserConfig {
                    name: n.to_string(),
                    password_sha256: sha256(p.as_bytes()),
                    role: *r,
                })
                .collect(),
            protected_mode: true,
            max_auth_failures: 3,
            auth_failure_delay: std::time::Duration::ZERO,
        }
    }

    #[test]
    fn without_users_nothing_is_enabled() {
        let a = Auth::new(&sec(None, &[]), &[]);
        assert!(!a.enabled());
        assert_eq!(a.verify(b"default", b""), None);
    }

    #[test]
    fn verify_needs_the_right_name_and_password() {
        let a = Auth::new(&sec(Some("top"), &[("app", "pw", Role::ReadWrite)]), &[]);
        assert!(a.enabled());
        assert_eq!(a.verify(b"default", b"top"), Some(0));
        assert_eq!(a.verify(b"app", b"pw"), Some(1));
        assert_eq!(a.role(1), Role::ReadWrite);
        assert_eq!(a.user_name(1), "app");
        assert_eq!(a.verify(b"app", b"top"), None);
        assert_eq!(a.verify(b"default", b"pw"), None);
        assert_eq!(a.verify(b"nobody", b"pw"), None);
        assert_eq!(a.verify(b"default", b"to"), None);
    }

    #[test]
    fn roles_allow_their_classes() {
        use Class::*;
        let table = [
            (Role::ReadOnly, [true, true, false, false]),
            (Role::ReadWrite, [true, true, true, false]),
            (Role::Admin, [true, true, true, true]),
        ];
        for (role, want) in table {
            let got = [Open, Read, Write, Admin].map(|c| allows(role, c));
            assert_eq!(got, want, "{role:?}");
        }
    }

    #[test]
    fn ct_eq_compares_every_byte() {
        let a = [7u8; 32];
        let mut b = a;
        assert!(ct_eq(&a, &b));
        b[31] ^= 1;
        assert!(!ct_eq(&a, &b));
    }

    #[test]
    fn peers_match_host_and_port() {
        let a = Auth::new(&sec(Some("x"), &[]), &["10.0.0.2:7379".to_string()]);
        assert!(a.is_peer("10.0.0.2", 7379));
        assert!(!a.is_peer("10.0.0.2", 7380));
        assert!(!a.is_peer("10.0.0.3", 7379));
    }
}
