//! Routes that match on claims, in a real Envoy: a route config that sends `x-jwt-sub` of one
//! user to one upstream cluster and of another user to another, and a route on a header the
//! authorization service set (`headersToUpstreamOnAllow`). The filter's claim headers choose the
//! route (Envoy chooses it again after a proxy-wasm ABI 0.2.1 filter changes request headers), and
//! a client-sent `x-jwt-sub` never does (the filter strips it first). Envoy's own `jwt_authn`,
//! side by side with `clear_route_cache: true` and the same `claim_to_headers`, lets a tokenless
//! request with a spoofed `x-jwt-sub` through to that user's route (it removes the header, but
//! after the route was chosen).
//! The example is docs/configuration.md, "Routes that match on claims".

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::LazyLock;

use serde_json::{json, Value};
use testbed::compare::{observe, Observed};
use testbed::http::Call;
use testbed::scenario::{Bed, Listener};

static VECTORS: LazyLock<Value> =
    LazyLock::new(|| serde_json::from_str(include_str!("fixtures/jwt/vectors.json")).unwrap());
/// One HS256 token per subject, signed by tests/fixtures/jwt/generate_subjects.py.
static SUBJECTS: LazyLock<Value> =
    LazyLock::new(|| serde_json::from_str(include_str!("fixtures/jwt/subjects.json")).unwrap());

const ALICE: &str = "alice@asm.test.io";
const BOB: &str = "bob@asm.test.io";

fn token(sub: &str) -> &'static str {
    SUBJECTS["tokens"][sub].as_str().unwrap()
}

fn issuer() -> &'static str {
    VECTORS["issuer"].as_str().unwrap()
}

fn jwks() -> String {
    VECTORS["jwks"].to_string()
}

/// The route config of every listener here, in place of the templates' single `prefix: /` route:
/// `x-jwt-sub` picks `upstream-alice` or `upstream-bob`, `x-ext-authz-check-result: allowed`
/// picks `upstream-checked`, anything else the default `upstream`. Each route adds `x-route` to
/// the request the upstream gets, and the virtual host tells the client which cluster answered.
const ROUTES: &str = r#"              response_headers_to_add:
              - header: {key: x-upstream-cluster, value: "%UPSTREAM_CLUSTER%"}
              routes:
              - match:
                  prefix: "/"
                  headers: [{name: x-jwt-sub, string_match: {exact: "alice@asm.test.io"}}]
                route: {cluster: upstream-alice}
                request_headers_to_add: [{header: {key: x-route, value: alice}}]
              - match:
                  prefix: "/"
                  headers: [{name: x-jwt-sub, string_match: {exact: "bob@asm.test.io"}}]
                route: {cluster: upstream-bob}
                request_headers_to_add: [{header: {key: x-route, value: bob}}]
              - match:
                  prefix: "/"
                  headers: [{name: x-ext-authz-check-result, string_match: {exact: allowed}}]
                route: {cluster: upstream-checked}
                request_headers_to_add: [{header: {key: x-route, value: checked}}]
              - match: {prefix: "/"}
                route: {cluster: upstream}
                request_headers_to_add: [{header: {key: x-route, value: default}}]
"#;

/// The templates' route config (envoy/listener-wasm.yaml, envoy/listener-native-jwt.yaml).
const TEMPLATE_ROUTES: &str = "              routes:
              - match: {prefix: \"/\"}
                route: {cluster: upstream}
";

/// Gives every listener `ROUTES` and adds the clusters they name: copies of `upstream` (the one
/// echo server), under other names.
fn claim_routes(config: String) -> String {
    let listeners = config.matches(TEMPLATE_ROUTES).count();
    assert_eq!(listeners, LISTENERS, "every listener's routes are replaced");
    let config = config.replace(TEMPLATE_ROUTES, ROUTES);
    let start = config
        .find("  - name: upstream\n")
        .expect("the upstream cluster");
    let len = config[start + 1..]
        .find("\n  - name: ")
        .expect("a cluster after it")
        + 2;
    let upstream = &config[start..start + len];
    let copies: String = ["upstream-alice", "upstream-bob", "upstream-checked"]
        .iter()
        .map(|name| {
            upstream
                .replace("name: upstream\n", &format!("name: {name}\n"))
                .replace(
                    "cluster_name: upstream\n",
                    &format!("cluster_name: {name}\n"),
                )
        })
        .collect();
    let mut edited = config.clone();
    edited.insert_str(start, &copies);
    edited
}

/// The filter's rule: the vectors' issuer and keys, `sub` in `x-jwt-sub`.
fn jwt_rule() -> Value {
    json!({"issuer": issuer(), "jwks": jwks(),
           "outputClaimToHeaders": [{"header": "x-jwt-sub", "claim": "sub"}]})
}

/// Envoy's jwt_authn as istiod generates it for the same RequestAuthentication (any of the
/// providers, or no token: `requires_any` + `allow_missing`), with `claim_to_headers` and
/// `clear_route_cache` set as given.
fn native_jwt(clear_route_cache: bool) -> String {
    json!({
        "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
        "providers": {"origins-0": {
            "issuer": issuer(),
            "local_jwks": {"inline_string": jwks()},
            "claim_to_headers": [{"header_name": "x-jwt-sub", "claim_name": "sub"}],
            "clear_route_cache": clear_route_cache,
            "payload_in_metadata": "payload"}},
        "rules": [{"match": {"prefix": "/"}, "requires": {"requires_any": {"requirements": [
            {"provider_name": "origins-0"}, {"allow_missing": {}}]}}}],
        "bypass_cors_preflight": true
    })
    .to_string()
}

const LISTENERS: usize = 5;

static BED: LazyLock<Bed> = LazyLock::new(|| {
    let listeners = [
        // RequestAuthentication alone: a request without a token goes on, unauthenticated.
        Listener::wasm(
            "claims",
            &json!({"jwtRules": [jwt_rule()]}).to_string(),
        ),
        // And an ALLOW policy that wants a token.
        Listener::wasm(
            "claims-required",
            &json!({"jwtRules": [jwt_rule()], "policies": [{"name": "require-jwt", "action": "ALLOW",
                "rules": [{"from": [{"source": {"requestPrincipals": ["*"]}}]}]}]})
            .to_string(),
        ),
        // The tutorial's provider, asked for every request (one provider, no policy).
        Listener::wasm(
            "checked",
            &json!({"extensionProviders": [{"name": "sample-ext-authz", "envoyExtAuthzHttp": {
                "service": "ext-authz.default.svc.cluster.local", "port": 8000,
                "includeRequestHeadersInCheck": ["x-ext-authz"],
                "headersToUpstreamOnAllow": ["x-ext-authz-check-result"]}}]})
            .to_string(),
        ),
        Listener::native_jwt("claims-native", &native_jwt(true)),
        Listener::native_jwt("claims-native-cached", &native_jwt(false)),
    ];
    assert_eq!(listeners.len(), LISTENERS);
    Bed::start_edited(&listeners, false, claim_routes)
});

fn call(headers: &[(&'static str, String)]) -> impl Fn(&str) -> Call {
    let headers = headers.to_vec();
    move |m: &str| {
        headers.iter().fold(
            Call::get(&format!("/headers?{m}")).header("host", "gateway.example"),
            |call, (name, value)| call.header(name, value),
        )
    }
}

fn bearer(sub: &str) -> (&'static str, String) {
    ("authorization", format!("Bearer {}", token(sub)))
}

fn spoofed_sub(sub: &str) -> (&'static str, String) {
    ("x-jwt-sub", sub.to_string())
}

/// Every value of header `name` the upstream received (none when the request never got there).
fn upstream_got(seen: &Observed, name: &str) -> Vec<String> {
    seen.upstream
        .iter()
        .flatten()
        .filter(|(n, _)| n == name)
        .map(|(_, v)| v.clone())
        .collect()
}

/// Asserts the request got 200 through `route` from `cluster`.
fn routed(seen: &Observed, route: &str, cluster: &str, what: &str) {
    assert_eq!(seen.status, 200, "{what}: {seen:?}");
    assert_eq!(upstream_got(seen, "x-route"), [route], "{what}: {seen:?}");
    assert_eq!(
        seen.header("x-upstream-cluster"),
        Some(cluster),
        "{what}: {seen:?}"
    );
}

#[test]
fn each_user_is_routed_to_their_own_upstream_by_the_claim_header() {
    for (sub, route, cluster) in [
        (ALICE, "alice", "upstream-alice"),
        (BOB, "bob", "upstream-bob"),
    ] {
        let seen = observe(&BED, "claims", &call(&[bearer(sub)]));
        routed(&seen, route, cluster, sub);
        assert_eq!(upstream_got(&seen, "x-jwt-sub"), [sub]);
        assert!(
            upstream_got(&seen, "authorization").is_empty(),
            "token removed"
        );
        // The policy that wants a token lets both through, to the same routes.
        let seen = observe(&BED, "claims-required", &call(&[bearer(sub)]));
        routed(&seen, route, cluster, sub);
    }
}

#[test]
fn a_client_sent_claim_header_never_chooses_the_route() {
    // No token: the spoofed header is stripped before the route is chosen again; the request
    // takes the default route and the upstream never sees the header.
    let seen = observe(&BED, "claims", &call(&[spoofed_sub(ALICE)]));
    routed(&seen, "default", "upstream", "tokenless, spoofed alice");
    assert!(upstream_got(&seen, "x-jwt-sub").is_empty(), "{seen:?}");
    // With an ALLOW policy that wants a token: 401, nothing reaches any upstream.
    let seen = observe(&BED, "claims-required", &call(&[spoofed_sub(ALICE)]));
    assert_eq!(seen.status, 401, "{seen:?}");
    assert_eq!(seen.upstream, None);
    // The reply is sent from the default route (its virtual host's response headers say so).
    assert_eq!(seen.header("x-upstream-cluster"), Some("upstream"));
    // Bob's token with a spoofed `x-jwt-sub: alice`: Bob's route, with Bob's subject only.
    for listener in ["claims", "claims-required"] {
        let seen = observe(&BED, listener, &call(&[bearer(BOB), spoofed_sub(ALICE)]));
        routed(&seen, "bob", "upstream-bob", listener);
        assert_eq!(upstream_got(&seen, "x-jwt-sub"), [BOB], "{listener}");
    }
}

#[test]
fn a_header_the_authorization_service_set_chooses_the_route() {
    let allow = ("x-ext-authz", "allow".to_string());
    let seen = observe(&BED, "checked", &call(std::slice::from_ref(&allow)));
    routed(&seen, "checked", "upstream-checked", "allowed");
    assert_eq!(upstream_got(&seen, "x-ext-authz-check-result"), ["allowed"]);
    assert_eq!(seen.authz.len(), 1, "one check");
    // The service's answer overwrites what the client sent, and that value routes.
    let spoofed = ("x-ext-authz-check-result", "spoofed".to_string());
    let seen = observe(&BED, "checked", &call(&[allow, spoofed]));
    routed(
        &seen,
        "checked",
        "upstream-checked",
        "allowed, client sent spoofed",
    );
    assert_eq!(upstream_got(&seen, "x-ext-authz-check-result"), ["allowed"]);
    // A client writing the value the route matches is still checked, and denied.
    let forged = ("x-ext-authz-check-result", "allowed".to_string());
    let seen = observe(&BED, "checked", &call(&[forged]));
    assert_eq!(seen.status, 403, "{seen:?}");
    assert_eq!(seen.upstream, None);
}

#[test]
fn native_jwt_authn_routes_on_claims_only_with_clear_route_cache() {
    // With clear_route_cache: true, native jwt_authn's claim headers choose the route as the
    // filter's do.
    for (sub, route, cluster) in [
        (ALICE, "alice", "upstream-alice"),
        (BOB, "bob", "upstream-bob"),
    ] {
        let seen = observe(&BED, "claims-native", &call(&[bearer(sub)]));
        routed(&seen, route, cluster, sub);
        assert_eq!(upstream_got(&seen, "x-jwt-sub"), [sub]);
    }
    // Without it, the route was chosen before the claim header was written: the default route,
    // though the upstream gets the header.
    let seen = observe(&BED, "claims-native-cached", &call(&[bearer(ALICE)]));
    routed(
        &seen,
        "default",
        "upstream",
        "native without clear_route_cache",
    );
    assert_eq!(upstream_got(&seen, "x-jwt-sub"), [ALICE]);
}

#[test]
fn native_jwt_authn_lets_a_tokenless_spoofed_claim_header_reach_the_claim_route() {
    // The documented difference. Envoy 1.40's jwt_authn removes a client's `x-jwt-sub` (so
    // Alice's upstream does not see the spoofed value), but the route was chosen while it was
    // there and, with no token verified, is not chosen again even with clear_route_cache: the
    // client picks Alice's route and upstream. The filter sends the same request to the default
    // route (`a_client_sent_claim_header_never_chooses_the_route`).
    for listener in ["claims-native", "claims-native-cached"] {
        let seen = observe(&BED, listener, &call(&[spoofed_sub(ALICE)]));
        routed(&seen, "alice", "upstream-alice", listener);
        assert!(upstream_got(&seen, "x-jwt-sub").is_empty(), "{listener}");
    }
    let ours = observe(&BED, "claims", &call(&[spoofed_sub(ALICE)]));
    routed(&ours, "default", "upstream", "the filter, same request");
    // Bob's token with a spoofed `x-jwt-sub: alice`: with clear_route_cache, Bob's route; without
    // it, Alice's route, though the upstream gets Bob's subject.
    let bob_as_alice = [bearer(BOB), spoofed_sub(ALICE)];
    let seen = observe(&BED, "claims-native", &call(&bob_as_alice));
    routed(&seen, "bob", "upstream-bob", "native, clear_route_cache");
    assert_eq!(upstream_got(&seen, "x-jwt-sub"), [BOB]);
    let seen = observe(&BED, "claims-native-cached", &call(&bob_as_alice));
    routed(
        &seen,
        "alice",
        "upstream-alice",
        "native, no clear_route_cache",
    );
    assert_eq!(upstream_got(&seen, "x-jwt-sub"), [BOB]);
}
