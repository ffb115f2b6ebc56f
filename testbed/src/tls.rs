//! The https side of the test bed (`testbed/tls/tls_front.py`, Python `ssl` + `cryptography`): a
//! TLS front on loopback for the JWKS server, so that OIDC discovery documents and https
//! `jwks_uri`s are served over real TLS, with the same answers, faults and fetch counts as
//! [`crate::services::JwksServer`] (the front copies bytes to it; the `host` header reaches it).
//!
//! At start the script makes a fresh test CA and one server certificate (SANs [`TLS_HOSTS`]) in
//! a temporary directory; the Envoy clusters `outbound|443||<host>` trust that CA
//! ([`TlsFront::ca`]) and match the SAN of their own host (`crate::scenario`, `TLS_CLUSTERS`).
//!
//! ```ignore
//! let front = TlsFront::start(jwks_server.port())?;  // python3 testbed/tls/tls_front.py
//! front.port();                                      // what the .example clusters point at
//! front.ca();                                        // the CA the clusters trust
//! ```
//!
//! The process is killed when the `TlsFront` is dropped, and with the test binary should that die
//! first (spawned like Envoy, `PR_SET_PDEATHSIG`); its directory is removed on drop.

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::channel;
use std::thread;
use std::time::Duration;

use crate::envoy::{repo_root, spawn_tied_to_us, unprepared};

/// The names of the server certificate, each with an Envoy cluster `outbound|443||<name>` to the
/// front (keep in step with `HOSTS` in `testbed/tls/tls_front.py`).
pub const TLS_HOSTS: [&str; 3] = ["issuer.example", "keys.example", "other-keys.example"];
/// A host whose cluster `outbound|443||down.example` leads to a port nothing listens on.
pub const DOWN_HOST: &str = "down.example";
/// The Python module the front needs, as `pip` names it.
pub const PIP_PACKAGES: &str = "cryptography";

/// The exit code of the script when a Python module is missing.
const MISSING_MODULE: i32 = 3;

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A running TLS front.
pub struct TlsFront {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl TlsFront {
    /// Starts `python3 testbed/tls/tls_front.py <backend_port> <dir>` (`PYTHON` overrides the
    /// interpreter) and waits for its port. A missing Python or `cryptography` goes through the
    /// test bed's prerequisite check, as for the gRPC server.
    pub fn start(backend_port: u16) -> Result<TlsFront, String> {
        let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_string());
        let script = repo_root().join("testbed/tls/tls_front.py");
        let dir = std::env::temp_dir().join(format!(
            "inline-authz-tls-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        ));
        fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let log = dir.join("stderr.log");
        let stderr = fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let mut command = Command::new(&python);
        command
            .arg("-u")
            .arg(&script)
            .arg(backend_port.to_string())
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr);
        let mut child = spawn_tied_to_us(command).map_err(|e| {
            unprepared(format!(
                "cannot start {python} for the TLS front ({e}): install Python 3, then pip install \
                 {PIP_PACKAGES}"
            ))
        })?;
        let Some(stdout) = child.stdout.take() else {
            let _ = child.kill();
            return Err("the TLS front has no stdout".into());
        };
        let (tx, rx) = channel();
        thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut first = String::new();
            let read = reader.read_line(&mut first).map(|_| first);
            let _ = tx.send(read);
            let _ = std::io::copy(&mut reader, &mut std::io::sink());
        });
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .map_err(|_| "the TLS front printed no port within 30 s".to_string())
            .and_then(|read| read.map_err(|e| e.to_string()));
        match line
            .as_deref()
            .ok()
            .and_then(|l| l.trim().parse::<u16>().ok())
        {
            Some(port) => Ok(TlsFront { child, port, dir }),
            None => {
                let _ = child.kill();
                let status = child.wait().ok().and_then(|s| s.code());
                let mut errors = String::new();
                let _ = fs::File::open(&log).and_then(|mut f| f.read_to_string(&mut errors));
                let _ = fs::remove_dir_all(&dir);
                if status == Some(MISSING_MODULE) {
                    return Err(unprepared(format!(
                        "Python package of the TLS front missing ({python}): pip install \
                         {PIP_PACKAGES}"
                    )));
                }
                Err(format!(
                    "the TLS front did not start (first line {line:?}, exit {status:?}):\n{errors}"
                ))
            }
        }
    }

    /// The TLS port (every `.example` host of [`TLS_HOSTS`] is served there).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The PEM file of the test CA that signed the server certificate.
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// The directory of the certificates (removed on drop).
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !thread::panicking() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}
