//! Side-by-side observation: the same request through the filter and through Envoy's native
//! filter, reduced to what must be equal (status, headers to the client, body, what the
//! authorization service and the upstream received), with volatile values taken out.

use std::io::{self, Write};

use crate::grpc::tidy_check;
use crate::http::{Call, Request, Response};
use crate::scenario::{marker, Bed};

/// Headers whose values change on every request.
const VOLATILE: [&str; 5] = [
    "date",
    "x-request-id",
    "x-envoy-upstream-service-time",
    "server",
    "connection",
];

/// A request as the authorization service received it: method, target, sorted headers, body.
pub type Seen = (String, String, Vec<(String, String)>, String);

/// Everything observable about one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub status: u16,
    /// Lowercase, sorted, volatile ones dropped.
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// What the authorization service received: method, target, sorted headers, body.
    pub authz: Vec<Seen>,
    /// Headers the upstream received, if the request got there.
    pub upstream: Option<Vec<(String, String)>>,
    /// The CheckRequests the gRPC ext_authz server received, as `grpc::tidy_check` leaves them
    /// (empty when the bed runs no gRPC server).
    pub grpc: Vec<serde_json::Value>,
}

impl Observed {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

fn tidy(headers: &[(String, String)], mark: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = headers
        .iter()
        .map(|(n, v)| (n.to_ascii_lowercase(), v.replace(mark, "MARK")))
        .filter(|(n, _)| !VOLATILE.contains(&n.as_str()))
        .collect();
    out.sort();
    out
}

fn tidy_body(body: &str, mark: &str) -> String {
    let body = body.replace(mark, "MARK");
    match serde_json::from_str::<serde_json::Value>(&body) {
        Ok(mut json) => {
            if let Some(headers) = json.get_mut("headers").and_then(|h| h.as_object_mut()) {
                headers.remove("X-Request-Id");
            }
            json.to_string()
        }
        Err(_) => body,
    }
}

fn seen(request: &Request, mark: &str) -> Seen {
    (
        request.method.clone(),
        request.target.replace(mark, "MARK"),
        tidy(&request.headers, mark),
        String::from_utf8_lossy(&request.body).replace(mark, "MARK"),
    )
}

/// Sends `make(marker)` to the listener and gathers what happened.
pub fn observe(bed: &Bed, listener: &str, make: &dyn Fn(&str) -> Call) -> Observed {
    observe_via(bed, listener, make, &|call, port| call.send(port))
}

/// How a request goes to a listener's port: HTTP/1.1 (`Call::send`), HTTP/2, raw bytes …
pub type Send = dyn Fn(&Call, u16) -> io::Result<Response>;

/// As `observe`, with the request sent by `send`.
pub fn observe_via(
    bed: &Bed,
    listener: &str,
    make: &dyn Fn(&str) -> Call,
    send: &Send,
) -> Observed {
    let mark = marker(listener);
    let call = make(&mark);
    let response = send(&call, bed.port(listener))
        .unwrap_or_else(|e| panic!("{listener}: {e}\n{}", bed.envoy.log_tail(30)));
    let authz = bed
        .authz
        .with(&mark)
        .iter()
        .map(|r| seen(r, &mark))
        .collect();
    let upstream = bed
        .upstream
        .with(&mark)
        .first()
        .map(|r| tidy(&r.headers, &mark));
    let grpc = bed
        .grpc
        .as_ref()
        .map(|g| g.received(&mark))
        .unwrap_or_default()
        .iter()
        .map(|check| tidy_check(check, &mark))
        .collect();
    Observed {
        status: response.status,
        headers: tidy(&response.headers, &mark),
        body: tidy_body(&response.text(), &mark),
        authz,
        upstream,
        grpc,
    }
}

/// The same request through two listeners; panics with both sides when they differ.
pub fn same(bed: &Bed, filter: &str, native: &str, make: &dyn Fn(&str) -> Call) -> Observed {
    same_via(bed, filter, native, make, &|call, port| call.send(port))
}

/// As `same`, with the requests sent by `send`.
pub fn same_via(
    bed: &Bed,
    filter: &str,
    native: &str,
    make: &dyn Fn(&str) -> Call,
    send: &Send,
) -> Observed {
    let ours = observe_via(bed, filter, make, send);
    let theirs = observe_via(bed, native, make, send);
    if ours != theirs {
        if let Some(regression) = native_1_37_0_regression(&ours, &theirs) {
            // Straight to the terminal: the test harness captures only print! / eprint!.
            let _ = writeln!(
                std::io::stderr(),
                "{filter} vs {native}: native ext_authz of Envoy 1.37.0 differs by its own \
                 regression ({regression}); the filter's answer, native's on 1.36 and 1.38+, kept"
            );
            return ours;
        }
    }
    assert_eq!(
        ours, theirs,
        "\n{filter} (left) and {native} (right) differ"
    );
    ours
}

/// Envoy 1.37.0's native HTTP ext_authz has two regressions, fixed by 1.37 backports after it
/// (PyPI has no later 1.37): a denial loses the authorization service's headers, Envoy's own
/// `content-type: text/plain` left (envoyproxy/envoy#43043, #43475), and `status_on_error` is
/// ignored on a 5xx or a failed call, always 403 (#43257). Against 1.37.0, a difference that is
/// exactly one of these is named; anything else still fails the comparison.
pub fn native_1_37_0_regression(ours: &Observed, theirs: &Observed) -> Option<&'static str> {
    if crate::envoy::envoy_version() != Some((1, 37, 0))
        || ours.body != theirs.body
        || ours.authz != theirs.authz
        || ours.upstream != theirs.upstream
        || ours.grpc != theirs.grpc
    {
        return None;
    }
    if ours.status != theirs.status {
        return (theirs.status == 403 && ours.headers == theirs.headers)
            .then_some("status_on_error ignored, envoy#43257");
    }
    let only_dropped = theirs
        .headers
        .iter()
        .all(|h| h.0 == "content-type" || ours.headers.contains(h));
    (ours.status != 200 && only_dropped)
        .then_some("the service's headers dropped from a denial, envoy#43043")
}
