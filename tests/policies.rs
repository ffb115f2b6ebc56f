//! DENY and ALLOW policies in a real Envoy, compared with Envoy's native RBAC filter configured as
//! Istio generates it (behind Envoy's own path normalization, Istio's default BASE), including
//! the path tricks a client uses to get around a path rule.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::LazyLock;

use serde_json::json;
use testbed::compare::{observe, same};
use testbed::http::Call;
use testbed::scenario::{Bed, Listener};

fn rbac(action: &str, permission: serde_json::Value) -> String {
    json!({
        "@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC",
        "rules": {"action": action, "policies": {"policy": {
            "permissions": [permission],
            "principals": [{"any": true}]
        }}}
    })
    .to_string()
}

static BED: LazyLock<Bed> = LazyLock::new(|| {
    Bed::start(&[
        Listener::wasm(
            "deny-headers",
            r#"{"policies": [{"name": "deny-headers", "action": "DENY", "rules": [{"to": [{"operation": {"paths": ["/headers"]}}]}]}]}"#,
        ),
        Listener::native_rbac(
            "deny-headers-native",
            &rbac("DENY", json!({"url_path": {"path": {"exact": "/headers"}}})),
        ),
        Listener::wasm(
            "allow-get-ip",
            r#"{"policies": [{"name": "get-ip", "action": "ALLOW", "rules": [{"to": [{"operation": {"methods": ["GET"], "paths": ["/ip", "/status/*"]}}]}]}]}"#,
        ),
        Listener::native_rbac(
            "allow-get-ip-native",
            &rbac(
                "ALLOW",
                json!({"and_rules": {"rules": [
                {"header": {"name": ":method", "string_match": {"exact": "GET"}}},
                {"or_rules": {"rules": [
                    {"url_path": {"path": {"exact": "/ip"}}},
                    {"url_path": {"path": {"prefix": "/status/"}}}]}}]}}),
            ),
        ),
        Listener::wasm(
            "deny-by-header",
            r#"{"policies": [{"action": "DENY", "rules": [{"when": [{"key": "request.headers[x-tenant]", "values": ["blocked", "evil-*"]}]}]}]}"#,
        ),
        Listener::wasm(
            "deny-by-source",
            r#"{"policies": [{"action": "DENY", "rules": [{"from": [{"source": {"ipBlocks": ["127.0.0.0/8"], "notRemoteIpBlocks": ["10.0.0.0/8"]}}]}]}]}"#,
        ),
        Listener::wasm(
            "custom-then-allow",
            r#"{"extensionProviders": [{"name": "p", "envoyExtAuthzHttp": {"service": "authz", "port": 8000, "cluster": "authz",
                  "includeRequestHeadersInCheck": ["x-ext-authz"], "headersToUpstreamOnAllow": ["x-ext-authz-check-result"]}}],
                "policies": [
                  {"action": "CUSTOM", "provider": {"name": "p"}, "rules": [{"to": [{"operation": {"paths": ["/headers"]}}]}]},
                  {"action": "ALLOW", "rules": [{"to": [{"operation": {"methods": ["GET"]}}]}]}]}"#,
        ),
    ])
});

/// Paths clients use to slip past a rule on `/headers`.
const TRICKY: [&str; 12] = [
    "/headers",
    "/headers?x=1",
    "/headers/../headers",
    "/ip/../headers",
    "/./headers",
    "/%68eaders",
    "/%2e%2e/headers",
    "/Headers",
    "//headers",
    "/headers/",
    "/headers%2F",
    "/anything",
];

#[test]
fn deny_on_a_path_matches_envoy_rbac_behind_envoy_normalization_for_tricky_paths() {
    for path in TRICKY {
        let seen = same(&BED, "deny-headers", "deny-headers-native", &|m| {
            let sep = if path.contains('?') { '&' } else { '?' };
            Call::get(&format!("{path}{sep}{m}"))
        });
        if seen.status == 403 {
            assert_eq!(seen.body, "RBAC: access denied", "{path}");
            assert!(
                seen.upstream.is_none(),
                "{path} was denied but reached the upstream"
            );
        }
    }
}

#[test]
fn path_tricks_are_denied_and_other_paths_pass() {
    let status =
        |path: &str| observe(&BED, "deny-headers", &|m| Call::get(&format!("{path}?{m}"))).status;
    for path in [
        "/headers",
        "/headers/../headers",
        "/ip/../headers",
        "/./headers",
        "/%68eaders",
        "/%2e%2e/headers",
    ] {
        assert_eq!(status(path), 403, "{path} must be denied");
    }
    for path in ["/Headers", "/headers/", "/anything"] {
        assert_eq!(
            status(path),
            200,
            "{path} is another path (Istio paths are exact and case-sensitive)"
        );
    }
}

#[test]
fn allow_policies_match_envoy_rbac() {
    for (method, path) in [
        ("GET", "/ip"),
        ("POST", "/ip"),
        ("GET", "/status/200"),
        ("GET", "/headers"),
        ("GET", "/status"),
    ] {
        let seen = same(&BED, "allow-get-ip", "allow-get-ip-native", &|m| {
            Call::new(method, &format!("{path}?{m}"))
        });
        let want = if method == "GET" && (path == "/ip" || path.starts_with("/status/")) {
            200
        } else {
            403
        };
        assert_eq!(seen.status, want, "{method} {path}");
    }
}

#[test]
fn when_conditions_on_headers_use_istio_string_matches() {
    let status = |value: &str| {
        observe(&BED, "deny-by-header", &|m| {
            Call::get(&format!("/ip?{m}")).header("x-tenant", value)
        })
        .status
    };
    assert_eq!(status("blocked"), 403);
    assert_eq!(status("evil-corp"), 403);
    assert_eq!(status("good"), 200);
}

#[test]
fn source_ip_blocks_read_the_peer_address() {
    let seen = observe(&BED, "deny-by-source", &|m| Call::get(&format!("/ip?{m}")));
    assert_eq!(
        seen.status, 403,
        "127.0.0.1 is in 127.0.0.0/8 and not in 10.0.0.0/8"
    );
}

#[test]
fn custom_allow_is_followed_by_allow_policies() {
    let get = observe(&BED, "custom-then-allow", &|m| {
        Call::get(&format!("/headers?{m}")).header("x-ext-authz", "allow")
    });
    assert_eq!(get.status, 200);
    let post = observe(&BED, "custom-then-allow", &|m| {
        Call::post(&format!("/headers?{m}"), b"x").header("x-ext-authz", "allow")
    });
    assert_eq!(
        post.status, 403,
        "the service allowed it, but no ALLOW policy matches POST"
    );
    assert_eq!(post.body, "RBAC: access denied");
    assert_eq!(post.authz.len(), 1, "CUSTOM runs first, as in Istio");
    let denied = observe(&BED, "custom-then-allow", &|m| {
        Call::get(&format!("/headers?{m}")).header("x-ext-authz", "no")
    });
    assert_eq!(denied.status, 403);
    assert_eq!(denied.header("x-ext-authz-check-result"), Some("denied"));
}
