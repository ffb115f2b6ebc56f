//! The gRPC test fixture proven against Envoy's native ext_authz in gRPC mode, configured as istiod
//! configures it from an `envoyExtAuthzGrpc` provider (`scenario::native_grpc_ext_authz`), with
//! the gRPC ext_authz server of `testbed/grpc/authz_server.py`. No filter runs here: every
//! assertion is a fact about native Envoy (1.40) that the filter's gRPC provider has to match.
//!
//! The client speaks HTTP/1.1; a request of the fault tests is `GET /anything?drop=1&q=orig&MARK`
//! with `x-ext-authz: allow`, `x-append: one`, `x-remove-me: yes` and `x-grpc-fault: <mode>`.
//!
//! What native does, per server answer (closed = failure_mode_allow false, open = true):
//!
//! | server answer | closed | open |
//! |---|---|---|
//! | sample allow (status 0, ok_response headers) | 200, headers set on the upstream request | same |
//! | sample deny (status 7, denied 403 + body + headers) | 403, that body, every denied header on the reply, `content-type: text/plain` | same |
//! | `unavailable` / `internal` (the call fails) | 403, empty body, only `content-length: 0` | 200, upstream untouched |
//! | `garbage` (undecodable message) | 403, empty | 200, untouched |
//! | `slow:2000` past a 1 s timeout | 403 after 1 s, empty | 200 after 1 s, untouched |
//! | cluster down (`dead-grpc`) | 403 at once, empty, no check arrives | 200, untouched |
//! | cluster unknown to Envoy | config accepted; 403 per request | 200 |
//! | `deny-status:418` / `:503` | 418 / 503, body, `x-denied-by`, `content-type: text/plain`; the denied header with `append: true` is dropped | same (a 5xx denial is no error) |
//! | `status:14` / `:7` / `:16` (status only, no denied_response) | 403, empty body | same (a denial, not an error) |
//! | `deny-zero` (denied status 0) | 403, body, headers | same |
//! | `empty` CheckResponse | 200, upstream untouched | same |
//! | `ok-with-denied` (status 0 + denied_response) | 200, denied_response ignored entirely | same |
//! | `mutations` | 200: see `mutations_are_applied_to_the_upstream_request_and_the_reply` | same |
//! | `remove-protected` | 200: `:path`, `host`, `:authority`, `:method` stay, `x-remove-me` goes | same |
//!
//! `status_on_error` replaces the 403 of the error rows only (503 here), never a denial's status.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use testbed::compare::{observe, Observed};
use testbed::grpc::OVERRIDE_VALUE;
use testbed::http::Call;
use testbed::scenario::{
    marker, native_grpc_ext_authz, Bed, Listener, GRPC_AUTHORITY, GRPC_CLUSTER,
};
use testbed::services::DENY_BODY;

fn grpc(cluster: &str, timeout: &str, fail_open: bool, status_on_error: Option<u16>) -> String {
    native_grpc_ext_authz(
        cluster,
        GRPC_AUTHORITY,
        timeout,
        fail_open,
        status_on_error,
        None,
    )
}

fn with_body(max: u32, allow_partial: bool, pack_as_bytes: bool) -> String {
    native_grpc_ext_authz(
        "authz-grpc",
        GRPC_AUTHORITY,
        "5s",
        false,
        None,
        Some((max, allow_partial, pack_as_bytes)),
    )
}

static BED: LazyLock<Bed> = LazyLock::new(|| {
    Bed::start(&[
        // The tutorial: CUSTOM on /headers, the provider at Istio's name with its default timeout.
        Listener::native(
            "tutorial",
            &native_grpc_ext_authz(GRPC_CLUSTER, GRPC_AUTHORITY, "600s", false, None, None),
            "/headers",
        ),
        Listener::native_everywhere("closed", &grpc("authz-grpc", "5s", false, None)),
        Listener::native_everywhere("open", &grpc("authz-grpc", "5s", true, None)),
        Listener::native_everywhere("closed-503", &grpc("authz-grpc", "5s", false, Some(503))),
        Listener::native_everywhere("dead-closed", &grpc("dead-grpc", "5s", false, None)),
        Listener::native_everywhere("dead-open", &grpc("dead-grpc", "5s", true, None)),
        Listener::native_everywhere(
            "unknown-closed",
            &grpc("no-such-cluster", "5s", false, None),
        ),
        Listener::native_everywhere("unknown-open", &grpc("no-such-cluster", "5s", true, None)),
        Listener::native_everywhere("timeout-closed", &grpc("authz-grpc", "1s", false, None)),
        Listener::native_everywhere("timeout-open", &grpc("authz-grpc", "1s", true, None)),
        Listener::native_everywhere("body-text", &with_body(1024, false, false)),
        Listener::native_everywhere("body-bytes", &with_body(1024, false, true)),
        Listener::native_everywhere("body-strict", &with_body(8, false, false)),
        Listener::native_everywhere("body-partial", &with_body(8, true, false)),
    ])
});

/// The tutorial's curl, with the check header when given.
fn tutorial(path: &'static str, check: Option<&'static str>) -> impl Fn(&str) -> Call {
    move |mark: &str| {
        let mut call = Call::get(&format!("{path}?{mark}"))
            .header("host", "httpbin.default:8000")
            .header("user-agent", "curl/8.5.0")
            .header("accept", "*/*");
        if let Some(value) = check {
            call = call.header("x-ext-authz", value);
        }
        call
    }
}

/// A fault-test request carrying `x-grpc-fault: mode`.
fn faulty(listener: &str, mode: &str) -> Observed {
    observe(&BED, listener, &|mark: &str| {
        Call::get(&format!("/anything?drop=1&q=orig&{mark}"))
            .header("x-ext-authz", "allow")
            .header("x-grpc-fault", mode)
            .header("x-append", "one")
            .header("x-remove-me", "yes")
    })
}

/// The headers the client sent, as the upstream sees them when nothing changed them.
fn untouched() -> Vec<(String, String)> {
    [
        ("host", "localhost"),
        ("x-append", "one"),
        ("x-envoy-expected-rq-timeout-ms", "15000"),
        ("x-ext-authz", "allow"),
        ("x-forwarded-proto", "http"),
        ("x-remove-me", "yes"),
    ]
    .iter()
    .map(|(n, v)| (n.to_string(), v.to_string()))
    .collect()
}

fn with_fault(mut headers: Vec<(String, String)>, mode: &str) -> Vec<(String, String)> {
    headers.push(("x-grpc-fault".into(), mode.into()));
    headers.sort();
    headers
}

fn names(observed: &Observed) -> Vec<&str> {
    observed.headers.iter().map(|(n, _)| n.as_str()).collect()
}

/// The error reply: the status, an empty body, no header but content-length.
fn assert_error_reply(seen: &Observed, status: u16, what: &str) {
    assert_eq!(seen.status, status, "{what}: {seen:?}");
    assert_eq!(seen.body, "", "{what}");
    assert_eq!(names(seen), ["content-length"], "{what}");
    assert!(
        seen.upstream.is_none(),
        "{what}: nothing reaches the upstream"
    );
}

/// Fail-open: the request goes on exactly as the client sent it.
fn assert_passed_untouched(seen: &Observed, mode: &str, what: &str) {
    assert_eq!(seen.status, 200, "{what}: {seen:?}");
    assert_eq!(
        seen.upstream,
        Some(with_fault(untouched(), mode)),
        "{what}: the upstream sees the request unchanged"
    );
    assert_eq!(
        names(seen),
        ["content-length", "content-type"],
        "{what}: no header added to the reply"
    );
}

/// `attributes.request.http` of the one CheckRequest this observation made.
fn http_of(seen: &Observed) -> &Value {
    assert_eq!(seen.grpc.len(), 1, "one CheckRequest: {:?}", seen.grpc);
    &seen.grpc[0]["attributes"]["request"]["http"]
}

// --- The tutorial's three requests -------------------------------------------------------------

/// Not protected: no check at all, straight to the upstream.
#[test]
fn tutorial_1_unprotected_ip_passes_without_a_check() {
    let seen = observe(&BED, "tutorial", &tutorial("/ip", None));
    assert_eq!(seen.status, 200);
    assert!(seen.grpc.is_empty(), "/ip is not sent to the gRPC service");
    assert!(seen.upstream.is_some());
}

/// Denied: the service's 403, body and every denied_response header reach the client (gRPC mode
/// has no allowed_client_headers: nothing is filtered), plus Envoy's `content-type: text/plain`.
#[test]
fn tutorial_2_deny_header_gets_the_services_403_body_and_headers() {
    let seen = observe(&BED, "tutorial", &tutorial("/headers", Some("deny")));
    assert_eq!(seen.status, 403);
    assert_eq!(seen.body, DENY_BODY);
    assert_eq!(seen.header("x-ext-authz-check-result"), Some("denied"));
    assert_eq!(
        seen.header("x-ext-authz-additional-header-override"),
        Some(OVERRIDE_VALUE)
    );
    assert_eq!(seen.header("content-type"), Some("text/plain"));
    assert!(seen
        .header("x-ext-authz-check-received")
        .is_some_and(|r| r.contains(r#"headers { key: "x-ext-authz" value: "deny" }"#)));
    assert_eq!(seen.grpc.len(), 1);
    assert!(seen.upstream.is_none());
}

/// Allowed: the ok_response headers are set on the request to the upstream; the reply to the
/// client gets none of them.
#[test]
fn tutorial_3_allow_header_reaches_the_upstream_with_the_result_header() {
    let seen = observe(&BED, "tutorial", &tutorial("/headers", Some("allow")));
    assert_eq!(seen.status, 200);
    let upstream = seen.upstream.clone().unwrap();
    let get = |name: &str| {
        upstream
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(get("x-ext-authz-check-result"), Some("allowed"));
    assert_eq!(
        get("x-ext-authz-additional-header-override"),
        Some(OVERRIDE_VALUE)
    );
    // What the server saw, in its one-line text (authz_server.py: `id` and `x-request-id` left
    // out). Every header the proxy has at that point goes to the service, pseudo-headers
    // included; the client's `host` is `:authority`; `user-agent`, `accept` come as sent.
    assert_eq!(
        get("x-ext-authz-check-received"),
        Some(concat!(
            r#"method: "GET" "#,
            r#"headers { key: ":authority" value: "httpbin.default:8000" } "#,
            r#"headers { key: ":method" value: "GET" } "#,
            r#"headers { key: ":path" value: "/headers?MARK" } "#,
            r#"headers { key: ":scheme" value: "http" } "#,
            r#"headers { key: "accept" value: "*/*" } "#,
            r#"headers { key: "user-agent" value: "curl/8.5.0" } "#,
            r#"headers { key: "x-ext-authz" value: "allow" } "#,
            r#"headers { key: "x-forwarded-proto" value: "http" } "#,
            r#"path: "/headers?MARK" host: "httpbin.default:8000" scheme: "http" "#,
            r#"protocol: "HTTP/1.1""#
        ))
    );
    assert!(seen.header("x-ext-authz-check-result").is_none());
    let body: Value = serde_json::from_str(&seen.body).unwrap();
    assert_eq!(body["headers"]["X-Ext-Authz-Check-Result"], "allowed");
}

// --- The CheckRequest native sends ------------------------------------------------------------

/// Sends `call` on a connection of our own, to know the client's port; the reply's status.
fn send_from_known_port(port: u16, call: &Call) -> (u16, u16) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let local = stream.local_addr().unwrap().port();
    stream.write_all(&call.to_bytes()).unwrap();
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).unwrap();
    let status = String::from_utf8_lossy(&reply)
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, local)
}

/// The whole CheckRequest of one request, untidied: what the filter must send.
///
/// - `source.address.socket_address`: the client's address and port; `destination`: the
///   listener's. No `principal`, `service`, `labels`, `certificate` (no mTLS here).
/// - `request.time`: present (RFC 3339 in JSON). `request.http.id`: Envoy's stream id, decimal.
/// - `http`: `method`, `path` with the query, `host` (= `:authority`), `scheme`, `protocol`
///   `HTTP/1.1`; `size` absent (0) without a body; no `query`, `fragment`, `header_map`, `body`.
/// - `http.headers`: `:authority`, `:method`, `:path`, `:scheme`, `x-forwarded-proto`,
///   `x-request-id` (both added by the connection manager), and the client's headers; a repeated
///   name is joined with `,` (cookies too: `a=1,b=2`, not `; `).
/// - `metadata_context` and `route_metadata_context`: present and empty (JSON `{}`), on the wire
///   as empty submessages (fields 11 and 13). No `context_extensions`, no `tls_session`.
#[test]
fn native_check_request_carries_these_fields() {
    let mark = marker("fields");
    let listener = BED.port("tutorial");
    let call = Call::get(&format!("/headers?a=1&{mark}"))
        .header("host", "httpbin.default:8000")
        .header("x-ext-authz", "allow")
        .header("x-dup", "1")
        .header("x-dup", "2")
        .header("cookie", "a=1")
        .header("cookie", "b=2");
    let (status, client_port) = send_from_known_port(listener, &call);
    assert_eq!(status, 200);
    let checks = BED.grpc().received(&mark);
    assert_eq!(checks.len(), 1, "{checks:?}");
    let check = &checks[0];
    let attributes = check["attributes"].as_object().unwrap();
    let mut keys: Vec<&str> = attributes.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "destination",
            "metadata_context",
            "request",
            "route_metadata_context",
            "source"
        ]
    );
    assert_eq!(
        attributes["source"],
        json!({"address": {"socket_address": {"address": "127.0.0.1", "port_value": client_port}}})
    );
    assert_eq!(
        attributes["destination"],
        json!({"address": {"socket_address": {"address": "127.0.0.1", "port_value": listener}}})
    );
    assert_eq!(attributes["metadata_context"], json!({}));
    assert_eq!(attributes["route_metadata_context"], json!({}));
    let request = &attributes["request"];
    let time = request["time"].as_str().unwrap();
    assert!(time.ends_with('Z') && time.contains('T'), "{time}");
    let http = request["http"].as_object().unwrap();
    let id = http["id"].as_str().unwrap();
    assert!(
        !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()),
        "{id}"
    );
    let request_id = http["headers"]["x-request-id"].as_str().unwrap();
    assert_eq!(request_id.len(), 36, "a UUID: {request_id}");
    let mut without_volatile = Value::Object(http.clone());
    without_volatile.as_object_mut().unwrap().remove("id");
    without_volatile["headers"]
        .as_object_mut()
        .unwrap()
        .remove("x-request-id");
    let path = format!("/headers?a=1&{mark}");
    assert_eq!(
        without_volatile,
        json!({
            "method": "GET",
            "path": path,
            "host": "httpbin.default:8000",
            "scheme": "http",
            "protocol": "HTTP/1.1",
            "headers": {
                ":authority": "httpbin.default:8000",
                ":method": "GET",
                ":path": path,
                ":scheme": "http",
                "cookie": "a=1,b=2",
                "x-dup": "1,2",
                "x-ext-authz": "allow",
                "x-forwarded-proto": "http",
            },
        })
    );
}

// --- Fault modes, fail closed and fail open ---------------------------------------------------

/// The gRPC call fails (UNAVAILABLE, INTERNAL) or its answer does not decode: an error. Closed:
/// 403 (or status_on_error), empty body. Open: the request goes on untouched.
#[test]
fn call_failures_are_errors() {
    for mode in ["unavailable", "internal", "garbage"] {
        let closed = faulty("closed", mode);
        assert_error_reply(&closed, 403, mode);
        assert_eq!(closed.grpc.len(), 1, "{mode}: the check was sent");
        assert_error_reply(&faulty("closed-503", mode), 503, mode);
        assert_passed_untouched(&faulty("open", mode), mode, mode);
    }
}

/// A denial with a status of its own: that status (a 5xx too: still a denial, not an error, so
/// neither failure_mode_allow nor status_on_error touch it), its body, its headers, and
/// `content-type: text/plain` added by Envoy's local reply. The denied header with
/// `append: true` (`x-denied-append`) is not on the reply at all: there is nothing to append to.
#[test]
fn deny_status_is_used_as_is_even_a_5xx() {
    for code in [418u16, 503] {
        let mode = format!("deny-status:{code}");
        let seen = faulty("closed", &mode);
        assert_eq!(seen.status, code);
        assert_eq!(seen.body, "custom denial");
        assert_eq!(
            seen.headers,
            [
                ("content-length", "13"),
                ("content-type", "text/plain"),
                ("x-denied-by", "grpc")
            ]
            .map(|(n, v)| (n.to_string(), v.to_string()))
        );
        assert!(seen.upstream.is_none());
        assert_eq!(
            faulty("open", &mode),
            seen,
            "{mode}: fail-open changes nothing"
        );
        assert_eq!(
            faulty("closed-503", &mode),
            seen,
            "{mode}: status_on_error changes nothing"
        );
    }
}

/// A CheckResponse with only a non-zero `status` (no denied_response), whatever the code
/// (PERMISSION_DENIED 7, UNAVAILABLE 14, UNAUTHENTICATED 16): a denial, 403 with an empty body.
/// The call itself succeeded, so it is no error: fail-open and status_on_error do not apply.
#[test]
fn status_only_is_a_plain_403_denial() {
    for mode in ["status:7", "status:14", "status:16"] {
        let seen = faulty("closed", mode);
        assert_error_reply(&seen, 403, mode);
        assert_eq!(seen.grpc.len(), 1);
        assert_eq!(
            faulty("open", mode),
            seen,
            "{mode}: fail-open changes nothing"
        );
        assert_eq!(
            faulty("closed-503", mode),
            seen,
            "{mode}: status_on_error neither"
        );
    }
}

/// status 7 with `denied_response.status` 0 (HttpStatus `Empty`): 403, the body and headers kept.
#[test]
fn deny_with_status_zero_is_a_403_with_the_body_and_headers() {
    let seen = faulty("closed", "deny-zero");
    assert_eq!(seen.status, 403);
    assert_eq!(seen.body, "zero status denial");
    assert_eq!(seen.header("x-denied-by"), Some("grpc"));
    assert_eq!(seen.header("content-type"), Some("text/plain"));
    assert!(seen.upstream.is_none());
    assert_eq!(faulty("open", "deny-zero"), seen);
    assert_eq!(faulty("closed-503", "deny-zero"), seen);
}

/// An empty CheckResponse (no status: code 0) allows and changes nothing.
#[test]
fn empty_response_allows_untouched() {
    let seen = faulty("closed", "empty");
    assert_passed_untouched(&seen, "empty", "empty");
    assert_eq!(faulty("open", "empty"), seen);
}

/// Status 0 beside a denied_response: allowed, and nothing of the denied_response is used.
#[test]
fn ok_status_with_a_denied_response_still_allows_untouched() {
    let seen = faulty("closed", "ok-with-denied");
    assert_passed_untouched(&seen, "ok-with-denied", "ok-with-denied");
    assert!(!seen.body.contains("should not be seen"));
    assert_eq!(faulty("open", "ok-with-denied"), seen);
}

/// A slow answer within the timeout: the sample's allow.
#[test]
fn slow_answer_within_the_timeout_allows() {
    let seen = faulty("closed", "slow:100");
    assert_eq!(seen.status, 200);
    assert!(seen
        .upstream
        .unwrap()
        .contains(&("x-ext-authz-check-result".into(), "allowed".into())));
}

/// The mutations of an ok_response, as native applies them:
/// - `x-set` (append unset): set on the upstream request.
/// - `x-append` with `append: true`: appended with `,` to the client's `x-append: one` →
///   `one,two`; without one from the client, not added at all.
/// - `headers_to_remove [x-remove-me]`: gone upstream.
/// - `response_headers_to_add [x-resp: added]`: on the reply to the client.
/// - `query_parameters_to_set [q=set]`, `query_parameters_to_remove [drop]`: `:path` rebuilt as
///   `/anything?mark=…&q=set`: `drop` removed, the kept parameters in their order, and the set
///   `q` moved to the end (its old value replaced).
#[test]
fn mutations_are_applied_to_the_upstream_request_and_the_reply() {
    let seen = faulty("closed", "mutations");
    assert_eq!(seen.status, 200);
    assert_eq!(seen.header("x-resp"), Some("added"));
    let expected: Vec<(String, String)> = [
        ("host", "localhost"),
        ("x-append", "one,two"),
        ("x-envoy-expected-rq-timeout-ms", "15000"),
        ("x-ext-authz", "allow"),
        ("x-forwarded-proto", "http"),
        ("x-grpc-fault", "mutations"),
        ("x-set", "one"),
    ]
    .iter()
    .map(|(n, v)| (n.to_string(), v.to_string()))
    .collect();
    assert_eq!(seen.upstream, Some(expected));
    let body: Value = serde_json::from_str(&seen.body).unwrap();
    assert_eq!(body["url"], "/anything?MARK&q=set");
    // The CheckRequest still had the client's path: mutations come after the check.
    assert_eq!(http_of(&seen)["path"], "/anything?drop=1&q=orig&MARK");
    assert_eq!(faulty("open", "mutations"), seen);

    let fresh = observe(&BED, "closed", &|mark: &str| {
        Call::get(&format!("/anything?{mark}"))
            .header("x-ext-authz", "allow")
            .header("x-grpc-fault", "mutations")
    });
    assert_eq!(fresh.status, 200);
    let upstream = fresh.upstream.unwrap();
    assert!(
        !upstream.iter().any(|(n, _)| n == "x-append"),
        "append: true adds nothing when the header is absent: {upstream:?}"
    );
    assert!(upstream.contains(&("x-set".into(), "one".into())));
}

/// `headers_to_remove` naming `:path`, `host`, `:authority`, `:method`: ignored; `x-remove-me`
/// in the same list is removed.
#[test]
fn pseudo_headers_and_host_are_never_removed() {
    let seen = faulty("closed", "remove-protected");
    assert_eq!(seen.status, 200);
    let mut expected = with_fault(untouched(), "remove-protected");
    expected.retain(|(n, _)| n != "x-remove-me");
    assert_eq!(seen.upstream, Some(expected));
    let body: Value = serde_json::from_str(&seen.body).unwrap();
    assert_eq!(body["url"], "/anything?drop=1&q=orig&MARK");
    assert_eq!(body["method"], "GET");
}

// --- The service unreachable or slow ------------------------------------------------------------

/// Nothing listens on the cluster's port: an error at once, no check arrives anywhere.
#[test]
fn dead_cluster_is_an_error() {
    let closed = faulty("dead-closed", "none");
    assert_error_reply(&closed, 403, "dead-closed");
    assert!(closed.grpc.is_empty());
    assert_passed_untouched(&faulty("dead-open", "none"), "none", "dead-open");
}

/// A cluster name Envoy does not know: the config is accepted (Envoy 1.40 starts with it), and
/// every request is an error.
#[test]
fn unknown_cluster_is_an_error_per_request() {
    assert_error_reply(&faulty("unknown-closed", "none"), 403, "unknown-closed");
    assert_passed_untouched(&faulty("unknown-open", "none"), "none", "unknown-open");
}

/// `grpc_service.timeout` 1 s against an answer after 2 s: an error after 1 s (the check did
/// arrive); the late answer is dropped.
#[test]
fn timeout_is_an_error_after_the_timeout() {
    for (listener, fail_open) in [("timeout-closed", false), ("timeout-open", true)] {
        let start = Instant::now();
        let seen = faulty(listener, "slow:2000");
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_millis(1900),
            "{listener}: {took:?}"
        );
        assert_eq!(seen.grpc.len(), 1, "{listener}: the check was sent");
        if fail_open {
            assert_passed_untouched(&seen, "slow:2000", listener);
        } else {
            assert_error_reply(&seen, 403, listener);
        }
    }
}

// --- The request body in the check ------------------------------------------------------------

fn post(listener: &str, body: &[u8]) -> Observed {
    observe(&BED, listener, &|mark: &str| {
        Call::post(&format!("/anything?{mark}"), body).header("x-ext-authz", "allow")
    })
}

/// `pack_as_bytes` false: the body as text in `body`; true: as bytes in `raw_body` (base64 in
/// JSON), `body` absent. Either way `size` = the body's length (a string in JSON: int64) and
/// `x-envoy-auth-partial-body: false` is added to the headers sent.
#[test]
fn body_goes_to_body_or_raw_body() {
    let text = post("body-text", b"hello body");
    let http = http_of(&text);
    assert_eq!(http["body"], "hello body");
    assert!(http.get("raw_body").is_none());
    assert_eq!(http["size"], "10");
    assert_eq!(http["headers"]["x-envoy-auth-partial-body"], "false");
    assert_eq!(http["headers"]["content-length"], "10");

    let bytes = post("body-bytes", b"hello body");
    let http = http_of(&bytes);
    assert_eq!(http["raw_body"], "aGVsbG8gYm9keQ==");
    assert!(http.get("body").is_none());
    assert_eq!(http["size"], "10");
    assert_eq!(http["headers"]["x-envoy-auth-partial-body"], "false");
    // The upstream gets the whole body either way.
    for seen in [&text, &bytes] {
        let echoed: Value = serde_json::from_str(&seen.body).unwrap();
        assert_eq!(echoed["data"], "hello body");
    }
}

/// Bytes that are not UTF-8 become `!` in `body` (one per byte); valid UTF-8 is kept.
#[test]
fn body_text_is_utf8_sanitized() {
    let seen = post("body-text", b"caf\xc3\xa9 \xff\xfe end");
    assert_eq!(http_of(&seen)["body"], "caf\u{e9} !! end");
}

/// Over `max_request_bytes` without `allow_partial_message`: 413 `Payload Too Large` from Envoy,
/// no check sent. With it: the first `max_request_bytes` bytes, `x-envoy-auth-partial-body:
/// true`, `size` still the whole length received; the upstream gets the whole body.
#[test]
fn body_over_the_limit_is_413_or_partial() {
    let strict = post("body-strict", b"hello body, longer than 8");
    assert_eq!(strict.status, 413);
    assert_eq!(strict.body, "Payload Too Large");
    assert_eq!(strict.header("content-type"), Some("text/plain"));
    assert!(strict.grpc.is_empty());
    assert!(strict.upstream.is_none());

    let partial = post("body-partial", b"hello body, longer than 8");
    assert_eq!(partial.status, 200);
    let http = http_of(&partial);
    assert_eq!(http["body"], "hello bo");
    assert_eq!(http["size"], "25");
    assert_eq!(http["headers"]["x-envoy-auth-partial-body"], "true");
    let echoed: Value = serde_json::from_str(&partial.body).unwrap();
    assert_eq!(echoed["data"], "hello body, longer than 8");
}

/// No body (a GET, even with `content-length: 0`): no `body`, no `size`, and no
/// `x-envoy-auth-partial-body` header. A client's own `x-envoy-auth-partial-body` is never sent.
#[test]
fn no_body_means_no_body_fields_and_a_client_partial_header_is_dropped() {
    for header in ["content-length", "x-envoy-auth-partial-body"] {
        let seen = observe(&BED, "body-text", &|mark: &str| {
            Call::get(&format!("/anything?{mark}"))
                .header("x-ext-authz", "allow")
                .header(
                    header,
                    if header == "content-length" {
                        "0"
                    } else {
                        "spoof"
                    },
                )
        });
        assert_eq!(seen.status, 200);
        let http = http_of(&seen);
        assert!(
            http.get("body").is_none() && http.get("size").is_none(),
            "{http}"
        );
        assert!(
            http["headers"].get("x-envoy-auth-partial-body").is_none(),
            "{http}"
        );
    }
}
