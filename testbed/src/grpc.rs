//! The gRPC ext_authz server of the test bed (`testbed/grpc/authz_server.py`, Python `grpcio` +
//! `xds-protos`): `envoy.service.auth.v3.Authorization/Check` on loopback, answering like Istio's
//! sample ext-authz service over gRPC, with the fault modes chosen by the request header
//! `x-grpc-fault` (the script's docstring lists them) and a record of every CheckRequest.
//!
//! ```ignore
//! let authz = GrpcAuthz::start()?;          // python3 testbed/grpc/authz_server.py
//! authz.grpc_port();                        // what the `authz-grpc` cluster points at
//! authz.received(&mark);                    // the CheckRequests whose http.path contains mark
//! ```
//!
//! The process is killed when the `GrpcAuthz` is dropped, and with the test binary should that
//! die first (spawned like Envoy, `PR_SET_PDEATHSIG`).

use std::fs;
use std::path::PathBuf;
use std::process::Child;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;

use serde_json::Value;

use crate::http::Call;
use crate::python;

/// The request header that selects a fault mode of the server.
pub const FAULT_HEADER: &str = "x-grpc-fault";
/// The value the sample sends in `x-ext-authz-additional-header-override` over gRPC.
pub const OVERRIDE_VALUE: &str = "grpc-additional-header-override-value";
/// The Python modules the server needs, as `pip` names them.
pub const PIP_PACKAGES: &str = "grpcio xds-protos";

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A running gRPC ext_authz server.
pub struct GrpcAuthz {
    child: Child,
    grpc_port: u16,
    http_port: u16,
    log: PathBuf,
}

impl GrpcAuthz {
    /// Starts `python3 testbed/grpc/authz_server.py` (`PYTHON` overrides the interpreter) and
    /// waits for its ports. Missing Python or Python packages go through the test bed's
    /// prerequisite check: an error where prerequisites are required (CI, `scripts/test`), else
    /// the test binary stops with one line saying what to install.
    pub fn start() -> Result<GrpcAuthz, String> {
        let log = std::env::temp_dir().join(format!(
            "inline-authz-grpc-{}-{}.log",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        ));
        let started = python::start(
            "the gRPC ext_authz server",
            "testbed/grpc/authz_server.py",
            &[],
            &log,
            PIP_PACKAGES,
            |line| {
                let mut words = line.split_whitespace().map(str::parse::<u16>);
                match (words.next(), words.next()) {
                    (Some(Ok(grpc)), Some(Ok(http))) => Some((grpc, http)),
                    _ => None,
                }
            },
        );
        match started {
            Ok((child, (grpc_port, http_port))) => Ok(GrpcAuthz {
                child,
                grpc_port,
                http_port,
                log,
            }),
            Err(error) => {
                let _ = fs::remove_file(&log);
                Err(error)
            }
        }
    }

    /// The port of the gRPC service (HTTP/2, plaintext).
    pub fn grpc_port(&self) -> u16 {
        self.grpc_port
    }

    /// The port of the record (`GET /received?mark=…`).
    pub fn http_port(&self) -> u16 {
        self.http_port
    }

    /// The CheckRequests whose `attributes.request.http.path` contains `mark`, in arrival order,
    /// as protobuf JSON with the proto field names (`raw_body` in base64, `size` a string).
    pub fn received(&self, mark: &str) -> Vec<Value> {
        self.fetch(&format!("/received?mark={}", percent_encode(mark)))
    }

    /// Every CheckRequest received so far.
    pub fn all(&self) -> Vec<Value> {
        self.fetch("/received")
    }

    fn fetch(&self, target: &str) -> Vec<Value> {
        let response = Call::get(target)
            .send(self.http_port)
            .unwrap_or_else(|e| panic!("gRPC ext_authz record: {e}\n{}", self.log_text()));
        match serde_json::from_slice::<Value>(&response.body) {
            Ok(Value::Array(all)) => all,
            _ => panic!(
                "gRPC ext_authz record: HTTP {}: {}",
                response.status,
                response.text()
            ),
        }
    }

    /// What the server wrote to stderr (Python tracebacks).
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for GrpcAuthz {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !thread::panicking() {
            let _ = fs::remove_file(&self.log);
        }
    }
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A recorded CheckRequest reduced to what must be equal between two listeners sending the same
/// request (the filter and native ext_authz): `mark` becomes `MARK`; taken out are what changes on
/// every request or listener: `http.id`, `request.time`, the `x-request-id` header, and the
/// `port_value` of the source (client's ephemeral port) and destination (listener port)
/// addresses. The addresses themselves and everything else stay.
pub fn tidy_check(check: &Value, mark: &str) -> Value {
    let text = check.to_string().replace(mark, "MARK");
    let mut check: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    let attributes = &mut check["attributes"];
    for peer in ["source", "destination"] {
        if let Some(socket) = attributes
            .get_mut(peer)
            .and_then(|p| p.get_mut("address"))
            .and_then(|a| a.get_mut("socket_address"))
            .and_then(Value::as_object_mut)
        {
            socket.remove("port_value");
        }
    }
    if let Some(request) = attributes.get_mut("request").and_then(Value::as_object_mut) {
        request.remove("time");
        if let Some(http) = request.get_mut("http").and_then(Value::as_object_mut) {
            http.remove("id");
            if let Some(headers) = http.get_mut("headers").and_then(Value::as_object_mut) {
                headers.remove("x-request-id");
            }
        }
    }
    check
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tidy_check_drops_what_changes_per_request_and_listener() {
        let check = json!({"attributes": {
            "source": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 5000}}},
            "destination": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 10000}}},
            "request": {"time": "2026-01-01T00:00:00Z", "http": {"id": "123", "path": "/x?mark=1",
                "headers": {"x-request-id": "r", ":path": "/x?mark=1"}}}}});
        let tidy = tidy_check(&check, "mark=1");
        assert_eq!(
            tidy,
            json!({"attributes": {
            "source": {"address": {"socket_address": {"address": "127.0.0.1"}}},
            "destination": {"address": {"socket_address": {"address": "127.0.0.1"}}},
            "request": {"http": {"path": "/x?MARK", "headers": {":path": "/x?MARK"}}}}})
        );
    }

    #[test]
    fn marks_are_percent_encoded() {
        assert_eq!(percent_encode("mark=01 a"), "mark%3D01%20a");
    }
}
