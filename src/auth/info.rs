//! The authentication lines of INFO.

use std::fmt::Write as _;
use std::sync::atomic::Ordering::Relaxed;

use crate::state::{InfoSection, Shared};
use crate::store::Db;

/// INFO lines: whether authentication is on, the users, and the counters.
pub struct AuthInfo;

impl InfoSection for AuthInfo {
    fn write_info(&self, shared: &Shared, _db: Db<'_>, s: &mut String) {
        let a = &shared.auth;
        let _ = write!(
            s,
            "auth_enabled:{}\r\nauth_users:{}\r\nauth_successes:{}\r\nauth_failures:{}\r\n\
             auth_failure_disconnects:{}\r\nauth_max_failures:{}\r\nauth_noauth_refusals:{}\r\n\
             auth_noperm_refusals:{}\r\nauth_failure_delay_ms:{}\r\nauth_failure_delays:{}\r\n",
            u8::from(a.enabled()),
            a.users.len(),
            a.successes.load(Relaxed),
            a.failures.load(Relaxed),
            a.disconnects.load(Relaxed),
            a.max_failures,
            a.noauth.load(Relaxed),
            a.noperm.load(Relaxed),
            shared.live.auth_failure_delay().as_millis(),
            a.delayed.load(Relaxed),
        );
    }
}
