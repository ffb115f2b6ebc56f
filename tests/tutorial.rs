//! The ASM custom authorization tutorial, replayed in a real Envoy: the filter configured with the
//! pasted Istio provider and policy, side by side with Envoy's native ext_authz configured the same
//! way (as Istio translates it). Every observable must match, and match the tutorial.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::LazyLock;

use testbed::compare::same;
use testbed::envoy::repo_root;
use testbed::http::Call;
use testbed::scenario::{Bed, Listener};
use testbed::services::DENY_BODY;

static BED: LazyLock<Bed> = LazyLock::new(|| {
    let native =
        std::fs::read_to_string(repo_root().join("envoy/scenarios/tutorial.native.json")).unwrap();
    Bed::start(&[
        Listener::wasm_file("filter", "tutorial.json"),
        Listener::native("native", &native, "/headers"),
    ])
});

fn call<'a>(path: &'a str, check_header: Option<&'a str>) -> impl Fn(&str) -> Call + 'a {
    move |mark: &str| {
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut call = Call::get(&format!("{path}{sep}{mark}"))
            .header("host", "httpbin.default:8000")
            .header("user-agent", "curl/8.5.0")
            .header("accept", "*/*");
        if let Some(value) = check_header {
            call = call.header("x-ext-authz", value);
        }
        call
    }
}

#[test]
fn test_1_unprotected_path_passes_without_a_check() {
    let seen = same(&BED, "filter", "native", &call("/ip", None));
    assert_eq!(seen.status, 200);
    assert!(
        seen.authz.is_empty(),
        "/ip must not be sent to the authorization service"
    );
    assert!(seen.upstream.is_some());
}

#[test]
fn test_2_protected_path_with_deny_header_gets_the_services_403() {
    let seen = same(&BED, "filter", "native", &call("/headers", Some("deny")));
    assert_eq!(seen.status, 403);
    assert_eq!(seen.header("x-ext-authz-check-result"), Some("denied"));
    assert_eq!(seen.body, DENY_BODY);
    assert_eq!(seen.authz.len(), 1);
    assert!(
        seen.upstream.is_none(),
        "a denied request never reaches the upstream"
    );
    // headersToDownstreamOnDeny lists one header: the service's other headers stay behind.
    assert_eq!(seen.header("x-ext-authz-check-received"), None);
}

#[test]
fn test_3_protected_path_with_allow_header_reaches_upstream_with_the_result_header() {
    let seen = same(&BED, "filter", "native", &call("/headers", Some("allow")));
    assert_eq!(seen.status, 200);
    let body: serde_json::Value = serde_json::from_str(&seen.body).unwrap();
    assert_eq!(body["headers"]["X-Ext-Authz-Check-Result"], "allowed");
    assert_eq!(body["headers"]["X-Ext-Authz"], "allow");
    assert_eq!(body["headers"]["Host"], "httpbin.default:8000");
    assert_eq!(body["headers"]["User-Agent"], "curl/8.5.0");
    // headersToUpstreamOnAllow lists one header: the service's other headers stay behind.
    assert!(body["headers"].get("X-Ext-Authz-Check-Received").is_none());
}

#[test]
fn check_request_carries_method_path_query_authority_and_listed_headers_only() {
    let seen = same(&BED, "filter", "native", &|mark: &str| {
        Call::post(&format!("/headers?x=1&{mark}"), b"body")
            .header("host", "httpbin.default:8000")
            .header("x-ext-authz", "allow")
            .header("authorization", "Bearer abc")
            .header("cookie", "secret=1")
    });
    let (method, target, headers, body) = &seen.authz[0];
    assert_eq!(method, "POST");
    assert_eq!(target, "/headers?x=1&MARK");
    let names: Vec<&str> = headers.iter().map(|(n, _)| n.as_str()).collect();
    assert!(
        names.contains(&"authorization")
            && names.contains(&"x-ext-authz")
            && names.contains(&"host")
    );
    assert!(
        !names.contains(&"cookie"),
        "cookie is not in includeRequestHeadersInCheck"
    );
    assert_eq!(body, "", "no body without includeRequestBodyInCheck");
}
