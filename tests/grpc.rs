//! The gRPC provider (`envoyExtAuthzGrpc`) in a real Envoy, side by side with Envoy's native
//! ext_authz in gRPC mode configured as istiod configures it from the same provider, against the
//! gRPC authorization server of `testbed/grpc/authz_server.py` (Istio's sample's behaviour plus
//! faults chosen per request with `x-grpc-fault`). Each pair must give the same status, reply
//! headers, body, upstream request and CheckRequest (`compare::same`; ids, times and ports aside).
//! What native does in each case is written down in `tests/grpc_native.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::LazyLock;

use serde_json::json;
use testbed::compare::{observe, same, Observed};
use testbed::http::Call;
use testbed::scenario::{native_grpc_ext_authz, Bed, Listener, GRPC_AUTHORITY, GRPC_CLUSTER};
use testbed::services::DENY_BODY;

/// The provider as a user writes it, and what istiod makes of it for native Envoy.
struct Provider {
    cluster: &'static str,
    timeout: &'static str,
    fail_open: bool,
    status_on_error: Option<u16>,
    body: Option<(u32, bool, bool)>,
}

const DEFAULT: Provider = Provider {
    cluster: "authz-grpc",
    timeout: "5s",
    fail_open: false,
    status_on_error: None,
    body: None,
};

impl Provider {
    fn plugin(&self, paths: Option<&str>) -> String {
        let mut provider = json!({
            "service": GRPC_AUTHORITY, "port": 9000, "cluster": self.cluster,
            "timeout": self.timeout, "failOpen": self.fail_open,
        });
        if let Some(status) = self.status_on_error {
            provider["statusOnError"] = json!(status);
        }
        if let Some((max, partial, bytes)) = self.body {
            provider["includeRequestBodyInCheck"] = json!({
                "maxRequestBytes": max, "allowPartialMessage": partial, "packAsBytes": bytes});
        }
        let rules = match paths {
            Some(path) => json!([{"to": [{"operation": {"paths": [path]}}]}]),
            None => json!([{}]),
        };
        json!({
            "extensionProviders": [{"name": "grpc", "envoyExtAuthzGrpc": provider}],
            "policies": [{"name": "check", "action": "CUSTOM", "provider": {"name": "grpc"},
                          "rules": rules}],
        })
        .to_string()
    }

    fn native(&self) -> String {
        native_grpc_ext_authz(
            self.cluster,
            GRPC_AUTHORITY,
            self.timeout,
            self.fail_open,
            self.status_on_error,
            self.body,
        )
    }
}

/// A filter listener `<name>` and a native one `<name>-native` for the provider.
fn pair(name: &str, provider: &Provider) -> [Listener; 2] {
    [
        Listener::wasm(name, &provider.plugin(None)),
        Listener::native_everywhere(&format!("{name}-native"), &provider.native()),
    ]
}

static BED: LazyLock<Bed> = LazyLock::new(|| {
    let tutorial = Provider {
        cluster: GRPC_CLUSTER,
        timeout: "600s",
        ..DEFAULT
    };
    let mut listeners = vec![
        // The tutorial over gRPC: CUSTOM on /headers, Istio's cluster name, no `cluster` set.
        Listener::wasm(
            "tutorial",
            &json!({
                "extensionProviders": [{"name": "sample-ext-authz-grpc", "envoyExtAuthzGrpc": {
                    "service": GRPC_AUTHORITY, "port": 9000}}],
                "policies": [{"name": "ext-authz-on-headers", "action": "CUSTOM",
                              "provider": {"name": "sample-ext-authz-grpc"},
                              "rules": [{"to": [{"operation": {"paths": ["/headers"]}}]}]}],
            })
            .to_string(),
        ),
        Listener::native("tutorial-native", &tutorial.native(), "/headers"),
    ];
    let cases: [(&str, Provider); 13] = [
        ("closed", DEFAULT),
        (
            "open",
            Provider {
                fail_open: true,
                ..DEFAULT
            },
        ),
        (
            "closed-503",
            Provider {
                status_on_error: Some(503),
                ..DEFAULT
            },
        ),
        (
            "dead-closed",
            Provider {
                cluster: "dead-grpc",
                ..DEFAULT
            },
        ),
        (
            "dead-open",
            Provider {
                cluster: "dead-grpc",
                fail_open: true,
                ..DEFAULT
            },
        ),
        (
            "timeout-closed",
            Provider {
                timeout: "1s",
                ..DEFAULT
            },
        ),
        (
            "timeout-open",
            Provider {
                timeout: "1s",
                fail_open: true,
                ..DEFAULT
            },
        ),
        (
            "body-text",
            Provider {
                body: Some((1024, false, false)),
                ..DEFAULT
            },
        ),
        (
            "body-bytes",
            Provider {
                body: Some((1024, false, true)),
                ..DEFAULT
            },
        ),
        (
            "body-strict",
            Provider {
                body: Some((8, false, false)),
                ..DEFAULT
            },
        ),
        (
            "body-partial",
            Provider {
                body: Some((8, true, false)),
                ..DEFAULT
            },
        ),
        (
            "body-strict-open",
            Provider {
                body: Some((8, false, false)),
                fail_open: true,
                ..DEFAULT
            },
        ),
        (
            "body-partial-bytes",
            Provider {
                body: Some((8, true, true)),
                ..DEFAULT
            },
        ),
    ];
    for (name, provider) in &cases {
        listeners.extend(pair(name, provider));
    }
    // Two providers in one plugin: an HTTP one (the sample HTTP service) first, then gRPC; the
    // HTTP allow's header reaches the gRPC check.
    listeners.push(Listener::wasm(
        "two-providers",
        &json!({
            "extensionProviders": [
                {"name": "http", "envoyExtAuthzHttp": {"service": "authz", "port": 8000,
                  "cluster": "authz", "includeRequestHeadersInCheck": ["x-ext-authz"],
                  "headersToUpstreamOnAllow": ["x-ext-authz-check-result"],
                  "headersToDownstreamOnDeny": ["x-ext-authz-check-result"]}},
                {"name": "grpc", "envoyExtAuthzGrpc": {"service": GRPC_AUTHORITY, "port": 9000,
                  "cluster": "authz-grpc"}}],
            "policies": [
                {"name": "by-grpc", "action": "CUSTOM", "provider": {"name": "grpc"}, "rules": [{}]},
                {"name": "by-http", "action": "CUSTOM", "provider": {"name": "http"},
                 "rules": [{"to": [{"operation": {"paths": ["/headers"]}}]}]}],
        })
        .to_string(),
    ));
    Bed::start(&listeners)
});

/// A fault-test request carrying `x-grpc-fault: mode` (the same request as tests/grpc_native.rs).
fn faulty(mode: &'static str) -> impl Fn(&str) -> Call {
    move |mark: &str| {
        Call::get(&format!("/anything?drop=1&q=orig&{mark}"))
            .header("x-ext-authz", "allow")
            .header("x-grpc-fault", mode)
            .header("x-append", "one")
            .header("x-remove-me", "yes")
    }
}

fn both(name: &str, make: &dyn Fn(&str) -> Call) -> Observed {
    same(&BED, name, &format!("{name}-native"), make)
}

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

#[test]
fn the_tutorials_three_requests_over_grpc_match_native() {
    let unprotected = both("tutorial", &tutorial("/ip", None));
    assert_eq!(unprotected.status, 200);
    assert!(unprotected.grpc.is_empty(), "/ip is not checked");
    let denied = both("tutorial", &tutorial("/headers", Some("deny")));
    assert_eq!(denied.status, 403);
    assert_eq!(denied.body, DENY_BODY);
    assert_eq!(denied.header("x-ext-authz-check-result"), Some("denied"));
    assert!(denied.upstream.is_none());
    assert_eq!(
        denied.grpc.len(),
        1,
        "one CheckRequest, the same as native's"
    );
    let allowed = both("tutorial", &tutorial("/headers", Some("allow")));
    assert_eq!(allowed.status, 200);
    let upstream = allowed.upstream.unwrap();
    assert!(upstream.contains(&("x-ext-authz-check-result".into(), "allowed".into())));
}

#[test]
fn every_server_answer_is_read_as_native_reads_it_in_both_failure_modes() {
    let modes = [
        "none",
        "unavailable",
        "internal",
        "garbage",
        "deny-status:418",
        "deny-status:503",
        "status:7",
        "status:14",
        "deny-zero",
        "empty",
        "ok-with-denied",
        "mutations",
        "remove-protected",
    ];
    for name in ["closed", "open", "closed-503"] {
        for mode in modes {
            let seen = both(name, &faulty(mode));
            assert_eq!(seen.grpc.len(), 1, "{name} {mode}: one check");
        }
    }
    assert_eq!(both("closed", &faulty("unavailable")).status, 403);
    assert_eq!(both("open", &faulty("unavailable")).status, 200);
    assert_eq!(both("closed-503", &faulty("internal")).status, 503);
    assert_eq!(both("closed-503", &faulty("deny-status:418")).status, 418);
    let mutated = both("closed", &faulty("mutations"));
    assert_eq!(mutated.header("x-resp"), Some("added"));
    let upstream = mutated.upstream.unwrap();
    assert!(upstream.contains(&("x-append".into(), "one,two".into())));
    assert!(!upstream.iter().any(|(n, _)| n == "x-remove-me"));
}

#[test]
fn a_provider_that_cannot_be_reached_or_answers_late_follows_the_failure_mode() {
    for name in ["dead-closed", "dead-open"] {
        let seen = both(name, &faulty("none"));
        assert_eq!(seen.status, if name.ends_with("open") { 200 } else { 403 });
        assert!(seen.grpc.is_empty(), "no check arrives at a dead cluster");
    }
    for name in ["timeout-closed", "timeout-open"] {
        let seen = both(name, &faulty("slow:2000"));
        if name.ends_with("open") {
            assert_eq!(seen.status, 200);
        } else {
            assert_eq!((seen.status, seen.body.as_str()), (403, ""));
        }
    }
}

#[test]
fn request_bodies_go_as_text_or_bytes_cut_or_refused_as_native() {
    let post = |body: &'static [u8]| {
        move |mark: &str| {
            Call::post(&format!("/anything?{mark}"), body)
                .header("x-ext-authz", "allow")
                .header("content-type", "application/octet-stream")
        }
    };
    for name in ["body-text", "body-bytes"] {
        let seen = both(name, &post(b"hello \xffworld"));
        assert_eq!(seen.status, 200, "{name}");
        let http = &seen.grpc[0]["attributes"]["request"]["http"];
        if name == "body-text" {
            assert_eq!(http["body"], "hello !world");
        } else {
            assert!(http["raw_body"].is_string());
        }
    }
    let refused = both("body-strict", &post(b"longer than eight"));
    assert_eq!(
        (refused.status, refused.body.as_str()),
        (413, "Payload Too Large")
    );
    assert!(refused.grpc.is_empty());
    assert_eq!(
        both("body-strict-open", &post(b"longer than eight")).status,
        413
    );
    for name in ["body-partial", "body-partial-bytes"] {
        let cut = both(name, &post(b"longer than eight"));
        assert_eq!(cut.status, 200, "{name}");
        let http = &cut.grpc[0]["attributes"]["request"]["http"];
        assert_eq!(http["headers"]["x-envoy-auth-partial-body"], "true");
    }
    // A request without a body sends none, and no partial-body header.
    let get = both("body-text", &faulty("none"));
    assert!(get.grpc[0]["attributes"]["request"]["http"]["headers"]
        .get("x-envoy-auth-partial-body")
        .is_none());
}

#[test]
fn repeated_headers_and_odd_values_reach_the_service_as_native_sends_them() {
    let seen = both("closed", &|mark: &str| {
        // (No dot segments: the native listener here runs without Istio's path normalization,
        // which the filter does itself; tests/policies.rs compares the two.)
        Call::get(&format!("/anything/b?{mark}&x=%20y"))
            .header("x-ext-authz", "allow")
            .header("cookie", "a=1")
            .header("cookie", "b=2")
            .header("x-envoy-auth-partial-body", "spoofed")
            .header("x-long", &"v".repeat(4096))
    });
    assert_eq!(seen.status, 200);
    let headers = &seen.grpc[0]["attributes"]["request"]["http"]["headers"];
    assert_eq!(headers["cookie"], "a=1,b=2");
    assert!(headers.get("x-envoy-auth-partial-body").is_none());
}

#[test]
fn two_providers_are_asked_in_order_and_the_first_denial_ends_it() {
    // /headers: gRPC first (extensionProviders order puts HTTP first), so HTTP then gRPC.
    let both_allow = observe(&BED, "two-providers", &|mark: &str| {
        Call::get(&format!("/headers?{mark}")).header("x-ext-authz", "allow")
    });
    assert_eq!(both_allow.status, 200);
    assert_eq!(both_allow.authz.len(), 1, "the HTTP provider was asked");
    assert_eq!(both_allow.grpc.len(), 1, "then the gRPC one");
    let http_headers = &both_allow.grpc[0]["attributes"]["request"]["http"]["headers"];
    assert_eq!(
        http_headers["x-ext-authz-check-result"], "allowed",
        "the HTTP allow's header is in the gRPC check"
    );
    let denied = observe(&BED, "two-providers", &|mark: &str| {
        Call::get(&format!("/headers?{mark}")).header("x-ext-authz", "deny")
    });
    assert_eq!(denied.status, 403);
    assert_eq!(denied.authz.len(), 1);
    assert!(denied.grpc.is_empty(), "the HTTP denial ends it");
    // /ip: only the gRPC provider's policy matches.
    let only_grpc = observe(&BED, "two-providers", &|mark: &str| {
        Call::get(&format!("/ip?{mark}")).header("x-ext-authz", "allow")
    });
    assert_eq!(only_grpc.status, 200);
    assert!(only_grpc.authz.is_empty());
    assert_eq!(only_grpc.grpc.len(), 1);
}

/// What `tidy_check` leaves out of the comparison, checked on its own: the request's start time
/// and the source address with its port, as the filter reads them from Envoy.
#[test]
fn the_check_request_carries_the_start_time_and_the_client_address() {
    let mark = testbed::scenario::marker("time");
    let before = std::time::SystemTime::now();
    let response = Call::get(&format!("/anything?{mark}"))
        .header("x-ext-authz", "allow")
        .send(BED.port("closed"))
        .unwrap();
    assert_eq!(response.status, 200);
    let checks = BED.grpc().received(&mark);
    let attributes = &checks[0]["attributes"];
    let time = attributes["request"]["time"].as_str().unwrap();
    let seconds = chrono_free_seconds(time);
    let now = before
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!((seconds - now).abs() <= 5, "{time} is not now ({now})");
    let source = &attributes["source"]["address"]["socket_address"];
    assert_eq!(source["address"], "127.0.0.1");
    assert!(source["port_value"].as_u64().unwrap() > 0);
}

/// Seconds since the epoch of an RFC 3339 UTC timestamp (`2026-12-01T22:50:00.123Z`).
fn chrono_free_seconds(text: &str) -> i64 {
    let (date, time) = text.split_once('T').unwrap();
    let mut d = date.split('-').map(|p| p.parse::<i64>().unwrap());
    let (y, m, day) = (d.next().unwrap(), d.next().unwrap(), d.next().unwrap());
    let mut t = time.trim_end_matches('Z').split(':');
    let (h, min) = (
        t.next().unwrap().parse::<i64>().unwrap(),
        t.next().unwrap().parse::<i64>().unwrap(),
    );
    let s = t
        .next()
        .unwrap()
        .split('.')
        .next()
        .unwrap()
        .parse::<i64>()
        .unwrap();
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    days * 86_400 + h * 3600 + min * 60 + s
}
