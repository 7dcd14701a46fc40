//! Test certificates made at test time with the `openssl` command line
//! (never committed): a CA, a server certificate for 127.0.0.1/localhost
//! (usable as a client certificate too, as nodes present it to peers), a
//! client certificate, and a second, untrusted CA with its own client
//! certificate.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::TempDir;

/// The files of one test PKI, in a private temporary directory.
pub struct Certs {
    pub dir: TempDir,
    /// CA certificate (PEM).
    pub ca: PathBuf,
    /// Server certificate and key, SAN IP:127.0.0.1, DNS:localhost.
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    /// A client certificate and key signed by `ca`.
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    /// A second CA, trusted by nobody, and a client certificate it signed.
    pub rogue_ca: PathBuf,
    pub rogue_cert: PathBuf,
    pub rogue_key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("the TLS tests need the openssl command line tool");
    assert!(
        out.status.success(),
        "openssl {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A self-signed CA `name`.pem / `name`.key.
fn ca(dir: &Path, name: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN=merklekv test {name}"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.pem"),
        ],
    );
}

/// A leaf certificate `name`.pem / `name`.key signed by CA `ca`.
fn leaf(dir: &Path, ca: &str, name: &str, ext: &str, serial: u32) {
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            &format!("/CN={name}"),
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
        ],
    );
    std::fs::write(dir.join(format!("{name}.ext")), ext).unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            &format!("{ca}.pem"),
            "-CAkey",
            &format!("{ca}.key"),
            "-set_serial",
            &serial.to_string(),
            "-days",
            "2",
            "-extfile",
            &format!("{name}.ext"),
            "-out",
            &format!("{name}.pem"),
        ],
    );
}

const SERVER_EXT: &str = "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n\
    extendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n";
const CLIENT_EXT: &str =
    "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n";

impl Certs {
    /// Generates a fresh PKI.
    pub fn new() -> Certs {
        let dir = TempDir::new("certs");
        let d = dir.path().to_path_buf();
        ca(&d, "ca");
        ca(&d, "rogue-ca");
        leaf(&d, "ca", "server", SERVER_EXT, 1);
        leaf(&d, "ca", "client", CLIENT_EXT, 2);
        leaf(&d, "rogue-ca", "rogue", CLIENT_EXT, 3);
        Certs {
            ca: d.join("ca.pem"),
            server_cert: d.join("server.pem"),
            server_key: d.join("server.key"),
            client_cert: d.join("client.pem"),
            client_key: d.join("client.key"),
            rogue_ca: d.join("rogue-ca.pem"),
            rogue_cert: d.join("rogue.pem"),
            rogue_key: d.join("rogue.key"),
            dir,
        }
    }

    /// A server certificate for 127.0.0.1 signed by the rogue CA, written
    /// as `rogue-server.pem` / `.key` (for certificate reload tests).
    pub fn rogue_server(&self) -> (PathBuf, PathBuf) {
        let d = self.dir.path();
        leaf(d, "rogue-ca", "rogue-server", SERVER_EXT, 4);
        (d.join("rogue-server.pem"), d.join("rogue-server.key"))
    }
}

/// A path as a `&str` (test paths are UTF-8).
pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}
