//! Downstream mTLS for the test bed: per-run certificates (`testbed/tls/mtls_certs.py`, Python
//! `cryptography`), the `DownstreamTlsContext` a listener needs to require and check a client
//! certificate, and a `curl` client that presents one over HTTP/1.1 or HTTP/2, with or without SNI.
//!
//! ```ignore
//! let certs = Certificates::generate()?;                      // CA, server, CLIENTS
//! let bed = Bed::start_edited(&listeners, false, |c| with_downstream_tls(&c, &certs));
//! let replies = Client::new(&certs).cert("foo-bar").http2().sni().send(&targets);
//! ```

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;

use serde_json::json;

use crate::envoy::unprepared;
use crate::python;

/// The DNS names of the server certificate (it also holds the IP SAN 127.0.0.1); keep in step
/// with `SERVER_NAMES` in `testbed/tls/mtls_certs.py`.
pub const SERVER_NAMES: [&str; 2] = ["mtls.example", "other.example"];

/// The client certificates `mtls_certs.py` makes, by name (its `CLIENTS` says what each holds).
/// `untrusted` is signed by a CA the listeners do not trust.
pub const CLIENTS: [&str; 11] = [
    "foo-bar",
    "baz-qux",
    "sleep",
    "dns-only",
    "two-dns",
    "subject-only",
    "subject-spiffe",
    "two-uris",
    "https-uri",
    "ns-only-uri",
    "untrusted",
];

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A directory of certificates made for this run (removed on drop).
pub struct Certificates {
    dir: PathBuf,
}

impl Certificates {
    /// Runs `python3 testbed/tls/mtls_certs.py <dir>`; a missing Python or `cryptography` goes
    /// through the test bed's prerequisite check.
    pub fn generate() -> Result<Certificates, String> {
        let dir = std::env::temp_dir().join(format!(
            "inline-authz-mtls-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        ));
        fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let log = dir.join("stderr.log");
        let (mut child, ()) = python::start(
            "the mTLS certificate generator",
            "testbed/tls/mtls_certs.py",
            &[dir.display().to_string()],
            &log,
            "cryptography",
            |line| (line.trim() == "ok").then_some(()),
        )?;
        let status = child.wait().map_err(|e| e.to_string())?;
        if !status.success() {
            return Err(format!("mtls_certs.py exited with {status}"));
        }
        Ok(Certificates { dir })
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// The certificate and key files of one of [`CLIENTS`] (or `server`).
    pub fn pair(&self, name: &str) -> (PathBuf, PathBuf) {
        (
            self.dir.join(format!("{name}.pem")),
            self.dir.join(format!("{name}-key.pem")),
        )
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Certificates {
    fn drop(&mut self) {
        if !thread::panicking() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// The transport socket of a listener that requires a client certificate chaining to the test
/// CA, serves the server certificate and offers ALPN `h2` and `http/1.1` (the HTTP connection
/// manager's `AUTO` codec then speaks what was negotiated).
pub fn downstream_tls(certs: &Certificates) -> serde_json::Value {
    let (chain, key) = certs.pair("server");
    json!({
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
            "require_client_certificate": true,
            "common_tls_context": {
                "alpn_protocols": ["h2", "http/1.1"],
                "tls_certificates": [{
                    "certificate_chain": {"filename": chain.display().to_string()},
                    "private_key": {"filename": key.display().to_string()},
                }],
                "validation_context": {
                    "trusted_ca": {"filename": certs.ca().display().to_string()},
                },
            },
        },
    })
}

/// The listener filter that reads the client's SNI: without it (Istio always adds it) Envoy's
/// `requested_server_name` stays empty, for native RBAC and for the filter's `connection.sni`.
pub const TLS_INSPECTOR: &str = r#"{"name": "envoy.filters.listener.tls_inspector", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"}}"#;

/// A rendered Envoy config (`scenario::render_config`) with [`downstream_tls`] on the filter
/// chain of every listener, behind the [`TLS_INSPECTOR`].
pub fn with_downstream_tls(config: &str, certs: &Certificates) -> String {
    let chain = "    filter_chains:\n    - filters:\n";
    assert!(config.contains(chain), "no filter chain to put TLS on");
    config.replace(
        chain,
        &format!(
            "    listener_filters: [{TLS_INSPECTOR}]\n    filter_chains:\n    - transport_socket: {}\n      filters:\n",
            downstream_tls(certs)
        ),
    )
}

/// What `curl` got for one URL: `status` 0 when no HTTP response came (the handshake failed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    /// `%{http_version}`: `1.1`, `2`, or `0` without a response.
    pub version: String,
    pub body: String,
}

/// A `curl` over TLS to listeners on loopback, trusting the test CA.
pub struct Client<'a> {
    certs: &'a Certificates,
    cert: Option<String>,
    http2: bool,
    sni: bool,
    headers: Vec<String>,
}

/// The separator `curl -w` writes after each body.
const END: &str = "\n@@inline-authz@@ ";

impl<'a> Client<'a> {
    /// HTTP/1.1, no client certificate, no SNI (the URL names 127.0.0.1).
    pub fn new(certs: &'a Certificates) -> Client<'a> {
        Client {
            certs,
            cert: None,
            http2: false,
            sni: false,
            headers: Vec::new(),
        }
    }

    /// Presents the client certificate `name` (one of [`CLIENTS`]).
    pub fn cert(mut self, name: &str) -> Client<'a> {
        self.cert = Some(name.to_string());
        self
    }

    /// HTTP/2 (ALPN `h2`) instead of HTTP/1.1.
    pub fn http2(mut self, on: bool) -> Client<'a> {
        self.http2 = on;
        self
    }

    /// Sends SNI `mtls.example` (the URL names that host, resolved to 127.0.0.1).
    pub fn sni(mut self, on: bool) -> Client<'a> {
        self.sni = on;
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Client<'a> {
        self.headers.push(format!("{name}: {value}"));
        self
    }

    /// One `curl` run for all `(port, path-and-query)` targets, a connection each; the replies in
    /// their order.
    pub fn send(&self, targets: &[(u16, String)]) -> Vec<Reply> {
        let host = if self.sni {
            SERVER_NAMES[0]
        } else {
            "127.0.0.1"
        };
        let mut command = Command::new("curl");
        command
            .args(["--silent", "--show-error", "--max-time", "10"])
            .arg(if self.http2 { "--http2" } else { "--http1.1" })
            .arg("--cacert")
            .arg(self.certs.ca())
            .arg("--write-out")
            .arg(format!("{END}%{{http_code}} %{{http_version}}\n"));
        if let Some(name) = &self.cert {
            let (cert, key) = self.certs.pair(name);
            command.arg("--cert").arg(cert).arg("--key").arg(key);
        }
        for header in &self.headers {
            command.arg("--header").arg(header);
        }
        for (port, _) in targets {
            if self.sni {
                command
                    .arg("--resolve")
                    .arg(format!("{host}:{port}:127.0.0.1"));
            }
        }
        for (port, target) in targets {
            command.arg(format!("https://{host}:{port}{target}"));
        }
        let output = command.output().unwrap_or_else(|e| {
            panic!(
                "{}",
                unprepared(format!("cannot run curl ({e}): install curl (with HTTP/2)"))
            )
        });
        let stdout = String::from_utf8_lossy(&output.stdout);
        let mut replies = Vec::new();
        let mut rest: &str = &stdout;
        while let Some((body, after)) = rest.split_once(END) {
            let (line, next) = after.split_once('\n').unwrap_or((after, ""));
            let mut fields = line.split_whitespace();
            let status = fields.next().and_then(|s| s.parse().ok()).unwrap_or(0);
            let version = fields.next().unwrap_or("0").to_string();
            replies.push(Reply {
                status,
                version,
                body: body.to_string(),
            });
            rest = next;
        }
        assert_eq!(
            replies.len(),
            targets.len(),
            "curl answered {} of {} URLs: {}",
            replies.len(),
            targets.len(),
            String::from_utf8_lossy(&output.stderr)
        );
        replies
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_filter_chain_gets_the_downstream_tls_context() {
        let certs = Certificates {
            dir: PathBuf::from("/nonexistent/certs"),
        };
        let config = "  - name: a\n    filter_chains:\n    - filters:\n      - x\n  - name: b\n    filter_chains:\n    - filters:\n      - y\n";
        let edited = with_downstream_tls(config, &certs);
        assert_eq!(edited.matches("transport_socket:").count(), 2);
        assert_eq!(edited.matches("listener_filters: [").count(), 2);
        assert!(edited.contains("\"require_client_certificate\":true"));
        assert!(edited.contains("/nonexistent/certs/server-key.pem"));
        assert!(edited.contains("    - transport_socket: {"));
        assert!(edited.contains("}\n      filters:\n      - x"));
    }
}
