//! TLS on the client port (rustls, driven by the worker's mio loop).
//!
//! A connection's first byte decides its transport, as it decides its
//! protocol: 0x16 (a TLS handshake record) starts a TLS session when
//! `[tls]` is configured; anything else is plaintext (RESP or text), which
//! `tls.required = true` refuses with one error reply before closing.
//!
//! rustls is used sans-IO: [`Session::read`] moves ciphertext from the
//! socket into the rustls connection and returns decrypted bytes;
//! [`Session::flush`] hands reply bytes to rustls and writes the records.
//! The worker calls these only for TLS connections (one `Option` test per
//! read or write call), so the plaintext path is unchanged.
//!
//! Invariants: [`Session::read`] returns fewer bytes than asked only when
//! the socket reported `WouldBlock` or end of file, so the worker's
//! edge-triggered "a short read means drained" rule holds for TLS too.
//! Handshake records produced while reading stay in rustls (bounded by its
//! buffer limit) until the worker's flush writes them ([`Session::wants_write`]
//! marks the connection dirty).
//!
//! Certificates are read at startup and again on SIGHUP ([`Acceptor::reload`]):
//! a new handshake uses the configuration current at its first byte;
//! established sessions keep theirs.

use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, RwLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig, ServerConnection};

use crate::config::TlsConfig;

/// The first byte of a TLS connection (record type "handshake").
pub const HANDSHAKE: u8 = 0x16;

/// Errors loading certificates, keys or a CA.
#[derive(Debug)]
pub enum TlsError {
    /// A file could not be read or held no usable PEM item.
    File(PathBuf, String),
    /// rustls refused the certificate, key or CA.
    Config(String),
    /// `cert_file` and `key_file` must be given together.
    Incomplete(&'static str),
}

impl std::fmt::Display for TlsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TlsError::File(p, e) => write!(f, "TLS: cannot load {}: {e}", p.display()),
            TlsError::Config(e) => write!(f, "TLS: {e}"),
            TlsError::Incomplete(e) => write!(f, "TLS: {e}"),
        }
    }
}

impl std::error::Error for TlsError {}

/// The crypto provider used everywhere (ring: no C toolchain beyond cc).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Every certificate in the PEM file at `path` (at least one).
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let file = |e: &dyn std::fmt::Display| TlsError::File(path.to_path_buf(), e.to_string());
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file(&e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file(&e))?;
    if certs.is_empty() {
        return Err(file(&"no PEM certificate in the file"));
    }
    Ok(certs)
}

/// The first private key (PKCS#8, PKCS#1 or SEC1) in the PEM file at `path`.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| TlsError::File(path.to_path_buf(), e.to_string()))
}

/// A root store holding every certificate of the PEM file at `path`.
pub fn load_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for c in load_certs(path)? {
        roots
            .add(c)
            .map_err(|e| TlsError::File(path.to_path_buf(), e.to_string()))?;
    }
    Ok(roots)
}

/// A client configuration trusting the CA in `ca` and, with `identity`
/// (certificate and key files), presenting that certificate (mutual TLS).
/// Used by anti-entropy connections to peers and by the MQTT bridge.
pub fn client_config(
    ca: &Path,
    identity: Option<(&Path, &Path)>,
) -> Result<Arc<ClientConfig>, TlsError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(load_roots(ca)?);
    let config = match identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(load_certs(cert)?, load_key(key)?)
            .map_err(|e| TlsError::Config(e.to_string()))?,
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// Builds the server configuration from the files named in `cfg`.
fn server_config(cfg: &TlsConfig) -> Result<ServerConfig, TlsError> {
    let (Some(cert), Some(key)) = (&cfg.cert_file, &cfg.key_file) else {
        return Err(TlsError::Incomplete(
            "tls.cert_file and tls.key_file must be given together",
        ));
    };
    let certs = load_certs(cert)?;
    let key = load_key(key)?;
    let provider = provider();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match &cfg.client_ca_file {
        Some(ca) => {
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(load_roots(ca)?), provider)
                    .build()
                    .map_err(|e| TlsError::Config(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    builder
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Config(e.to_string()))
}

/// The client port's TLS settings in force: the current server
/// configuration (replaced by [`Acceptor::reload`]) and `required`.
pub struct Acceptor {
    files: TlsConfig,
    current: RwLock<Arc<ServerConfig>>,
    /// Plaintext connections are refused.
    pub required: bool,
    /// Counters reported in INFO.
    pub stats: TlsStats,
}

/// TLS counters (INFO `tls_*`).
#[derive(Default)]
pub struct TlsStats {
    /// Connections that started a TLS handshake.
    pub connections: AtomicU64,
    /// Handshakes or sessions ended by a TLS error (bad certificate, no
    /// client certificate under mutual TLS, garbage).
    pub errors: AtomicU64,
    /// Plaintext connections refused under `tls.required`.
    pub plaintext_refused: AtomicU64,
    /// Successful reloads (SIGHUP).
    pub reloads: AtomicU64,
}

impl Acceptor {
    /// The acceptor for `cfg`; `None` when TLS is not configured (no
    /// `cert_file` nor `key_file`).
    pub fn load(cfg: &TlsConfig) -> Result<Option<Acceptor>, TlsError> {
        if cfg.cert_file.is_none() && cfg.key_file.is_none() {
            if cfg.required || cfg.client_ca_file.is_some() {
                return Err(TlsError::Incomplete(
                    "tls.required and tls.client_ca_file need tls.cert_file and tls.key_file",
                ));
            }
            return Ok(None);
        }
        Ok(Some(Acceptor {
            current: RwLock::new(Arc::new(server_config(cfg)?)),
            files: cfg.clone(),
            required: cfg.required,
            stats: TlsStats::default(),
        }))
    }

    /// Reads the certificate, key and CA files again; on success new
    /// handshakes use them. On error the previous configuration stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let fresh = Arc::new(server_config(&self.files)?);
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = fresh;
        self.stats.reloads.fetch_add(1, Relaxed);
        Ok(())
    }

    /// The INFO lines `tls_*` (after `tls_enabled:1`).
    pub fn write_info(&self, s: &mut String) {
        let st = &self.stats;
        let _ = write!(
            s,
            "tls_required:{}\r\ntls_client_auth:{}\r\ntls_connections:{}\r\n\
             tls_errors:{}\r\ntls_plaintext_refused:{}\r\ntls_reloads:{}\r\n",
            self.required as u8,
            self.files.client_ca_file.is_some() as u8,
            st.connections.load(Relaxed),
            st.errors.load(Relaxed),
            st.plaintext_refused.load(Relaxed),
            st.reloads.load(Relaxed),
        );
    }

    /// A session for a connection whose first received bytes are `first`
    /// (starting with [`HANDSHAKE`]).
    pub fn start(&self, first: &[u8]) -> io::Result<Session> {
        let config = self
            .current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let conn = ServerConnection::new(config).map_err(io::Error::other)?;
        let mut s = Session {
            conn,
            eof: false,
            notified: false,
        };
        let mut rest = first;
        while !rest.is_empty() {
            if s.conn.read_tls(&mut rest)? == 0 {
                break;
            }
            s.process()?;
        }
        Ok(s)
    }
}

/// One TLS connection's rustls state.
pub struct Session {
    conn: ServerConnection,
    /// The socket reached end of file.
    eof: bool,
    /// close_notify was queued.
    notified: bool,
}

impl Session {
    fn process(&mut self) -> io::Result<()> {
        self.conn
            .process_new_packets()
            .map(|_| ())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }

    /// Records (handshake, alerts) wait to be written.
    pub fn wants_write(&self) -> bool {
        self.conn.wants_write()
    }

    /// Decrypted bytes into `buf`: fills it, or stops at `WouldBlock` (then
    /// returns what it has, or the `WouldBlock` error when nothing) or at
    /// end of file (`Ok(0)` once everything was returned). A protocol error
    /// queues an alert (written by a best-effort flush) and is returned.
    pub fn read(&mut self, sock: &mut impl ReadWrite, buf: &mut [u8]) -> io::Result<usize> {
        let mut n = 0;
        loop {
            match self.conn.reader().read(&mut buf[n..]) {
                Ok(0) => return Ok(n), // close_notify received
                Ok(k) => {
                    n += k;
                    if n == buf.len() {
                        return Ok(n);
                    }
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // End of file without close_notify: a plain end of input.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(n),
                Err(e) => return Err(e),
            }
            if self.eof {
                return Ok(n);
            }
            match self.conn.read_tls(sock) {
                Ok(0) => self.eof = true,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return if n > 0 { Ok(n) } else { Err(e) };
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            if let Err(e) = self.process() {
                // Tell the peer why (the alert), once, without waiting.
                let _ = self.conn.write_tls(sock);
                return Err(e);
            }
        }
    }

    /// Encrypts `out` and writes records until the socket is full. Returns
    /// how much of `out` rustls took and whether everything (including
    /// earlier records) reached the socket. With `closing`, a close_notify
    /// follows the last reply.
    pub fn flush(
        &mut self,
        sock: &mut impl ReadWrite,
        out: &[u8],
        closing: bool,
    ) -> io::Result<(usize, bool)> {
        let mut used = 0;
        loop {
            if used < out.len() {
                used += self.conn.writer().write(&out[used..])?;
            }
            if used == out.len() && closing && !self.notified {
                self.notified = true;
                self.conn.send_close_notify();
            }
            if !self.conn.wants_write() {
                if used == out.len() {
                    return Ok((used, true));
                }
                // rustls took nothing and has nothing to send: cannot happen
                // (a full buffer wants writing); refuse to spin.
                return Err(io::Error::other("TLS send buffer stalled"));
            }
            match self.conn.write_tls(sock) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok((used, false)),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// A socket (readable and writable).
pub trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_settings_need_both_files() {
        let none = TlsConfig::default();
        assert!(Acceptor::load(&none).unwrap().is_none());
        let required = TlsConfig {
            required: true,
            ..TlsConfig::default()
        };
        assert!(matches!(
            Acceptor::load(&required),
            Err(TlsError::Incomplete(_))
        ));
        let cert_only = TlsConfig {
            cert_file: Some("/nonexistent/cert.pem".into()),
            ..TlsConfig::default()
        };
        assert!(matches!(
            Acceptor::load(&cert_only),
            Err(TlsError::Incomplete(_))
        ));
        let missing = TlsConfig {
            cert_file: Some("/nonexistent/cert.pem".into()),
            key_file: Some("/nonexistent/key.pem".into()),
            ..TlsConfig::default()
        };
        let e = Acceptor::load(&missing).err().unwrap().to_string();
        assert!(e.contains("/nonexistent/cert.pem"), "{e}");
    }
}
