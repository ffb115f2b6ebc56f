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
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;

use crate::python;

/// The names of the server certificate, each with an Envoy cluster `outbound|443||<name>` to the
/// front (keep in step with `HOSTS` in `testbed/tls/tls_front.py`).
pub const TLS_HOSTS: [&str; 3] = ["issuer.example", "keys.example", "other-keys.example"];
/// A host whose cluster `outbound|443||down.example` leads to a port nothing listens on.
pub const DOWN_HOST: &str = "down.example";
/// The Python module the front needs, as `pip` names it.
pub const PIP_PACKAGES: &str = "cryptography";

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
        let dir = std::env::temp_dir().join(format!(
            "inline-authz-tls-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        ));
        fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let started = python::start(
            "the TLS front",
            "testbed/tls/tls_front.py",
            &[backend_port.to_string(), dir.display().to_string()],
            &dir.join("stderr.log"),
            PIP_PACKAGES,
            |line| line.trim().parse::<u16>().ok(),
        );
        match started {
            Ok((child, port)) => Ok(TlsFront { child, port, dir }),
            Err(error) => {
                let _ = fs::remove_dir_all(&dir);
                Err(error)
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
