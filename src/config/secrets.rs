//! The last step of loading: secrets read from files and derived
//! credentials; and protected mode, checked when a node starts
//! (docs/protocol.md §16, Security).
//!
//! [`resolve`] runs after every layer (file, environment, command line) is
//! applied, so a `requirepass_file` given anywhere wins over an inline
//! `requirepass` given anywhere.

use std::net::IpAddr;
use std::path::Path;

use super::error::ConfigError;
use super::types::Config;

/// Reads the secret files and fills in the anti-entropy credentials.
pub fn resolve(c: &mut Config) -> Result<(), ConfigError> {
    if let Some(path) = c.security.requirepass_file.clone() {
        let text = read("security.requirepass_file", &path)?;
        let first = text.lines().next().unwrap_or("").trim_end_matches('\r');
        if first.is_empty() {
            return Err(ConfigError::SecretFile {
                setting: "security.requirepass_file",
                path,
                error: "the first line is empty".to_string(),
            });
        }
        c.security.requirepass = Some(first.to_string());
    }
    if let Some(path) = c.replication.cluster_key_file.clone() {
        let text = read("mqtt.cluster_key_file", &path)?;
        let before = c.replication.cluster_keys.len();
        c.replication.cluster_keys.extend(
            text.lines()
                .map(|l| l.trim_end_matches('\r'))
                .filter(|l| !l.is_empty())
                .map(str::to_string),
        );
        if c.replication.cluster_keys.len() == before {
            return Err(ConfigError::SecretFile {
                setting: "mqtt.cluster_key_file",
                path,
                error: "the file holds no key".to_string(),
            });
        }
    }
    if c.anti_entropy.password.is_none() {
        c.anti_entropy.password.clone_from(&c.security.requirepass);
    }
    Ok(())
}

/// Protected mode: a node without a password may only listen on a
/// loopback address unless `security.protected_mode = false`.
pub fn check_protected(c: &Config) -> Result<(), ConfigError> {
    if c.security.protected_mode && !c.security.enabled() && !is_loopback(&c.host) {
        return Err(ConfigError::Unprotected {
            host: c.host.clone(),
        });
    }
    Ok(())
}

fn read(setting: &'static str, path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|e| ConfigError::SecretFile {
        setting,
        path: path.to_path_buf(),
        error: e.to_string(),
    })
}

/// Whether `host` names only this machine: `localhost`, or a loopback IP.
pub fn is_loopback(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost") || h.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}
