//! Remote JWKS (`jwksUri`) in a real Envoy, served by a local JWKS server: the first fetch,
//! requests that arrive before it, a key rotation picked up through an unknown `kid`, a failing
//! endpoint that leaves the last good keys in place, and endpoints that never give keys.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::LazyLock;
use std::thread::sleep;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use testbed::compare::observe;
use testbed::http::Call;
use testbed::scenario::{Bed, Listener};

static VECTORS: LazyLock<Value> =
    LazyLock::new(|| serde_json::from_str(include_str!("fixtures/jwt/vectors.json")).unwrap());

fn token(group: &str, name: &str) -> &'static str {
    VECTORS[group][name].as_str().unwrap()
}

fn remote(path: &str, cluster: &str, refresh: &str) -> String {
    json!({
        "jwtRules": [{"issuer": VECTORS["issuer"], "jwksUri": format!("http://jwks.example{path}"), "jwksCluster": cluster}],
        "jwksRefreshInterval": refresh
    })
    .to_string()
}

static BED: LazyLock<Bed> = LazyLock::new(|| {
    let jwks = VECTORS["jwks"].to_string();
    Bed::start_prepared(
        &[
            Listener::wasm("remote", &remote("/keys", "jwks", "10m")),
            Listener::wasm("rotate", &remote("/rotate", "jwks", "10m")),
            Listener::wasm("failing", &remote("/failing", "jwks", "1s")),
            Listener::wasm("slow", &remote("/slow", "jwks", "10m")),
            Listener::wasm("dead", &remote("/keys", "dead", "10m")),
            Listener::wasm("empty", &remote("/empty", "jwks", "10m")),
        ],
        false,
        |server| {
            server.set("/keys", 200, &jwks);
            server.set("/rotate", 200, &jwks);
            server.set("/failing", 200, &jwks);
            server.set_slow("/slow", 200, &jwks, 2500);
            server.set("/empty", 200, r#"{"keys": []}"#);
        },
    )
});

fn with(listener: &str, token: &'static str) -> testbed::compare::Observed {
    observe(&BED, listener, &move |m: &str| {
        Call::get(&format!("/ip?{m}")).header("authorization", &format!("Bearer {token}"))
    })
}

#[test]
fn keys_are_fetched_by_the_proxy_and_tokens_verify() {
    assert_eq!(with("remote", token("valid", "RS256")).status, 200);
    assert_eq!(with("remote", token("valid", "ES256")).status, 200);
    assert_eq!(with("remote", token("cases", "bad_signature")).status, 401);
    let fetches = BED.jwks.fetches("/keys");
    for _ in 0..5 {
        with("remote", token("valid", "EdDSA"));
    }
    assert_eq!(
        BED.jwks.fetches("/keys"),
        fetches,
        "keys are cached, not fetched per request"
    );
}

#[test]
fn a_request_that_arrives_before_the_first_fetch_waits_for_it() {
    // The first answer of /slow takes 2.5 s: this request is sent while it is in flight.
    let seen = with("slow", token("valid", "PS384"));
    assert_eq!(seen.status, 200, "{}", seen.body);
    assert!(BED.jwks.fetches("/slow") >= 1);
    assert!(
        BED.envoy
            .wait_for_log("waiting for the keys of jwtRules[0]"),
        "the request was parked, not refused"
    );
}

#[test]
fn a_rotated_key_is_fetched_when_a_token_names_it() {
    assert_eq!(with("rotate", token("valid", "RS256")).status, 200);
    BED.jwks
        .set("/rotate", 200, &VECTORS["rotated_jwks"].to_string());
    let before = BED.jwks.fetches("/rotate");
    let rotated = with("rotate", token("cases", "signed_by_rotated_key"));
    assert_eq!(
        rotated.status, 200,
        "unknown kid triggers a refetch: {}",
        rotated.body
    );
    assert!(BED.jwks.fetches("/rotate") > before);
    // The old key is gone now, and the refetch is rate limited: a token for it is refused.
    let old = with("rotate", token("valid", "RS256"));
    assert_eq!(
        (old.status, old.body.as_str()),
        (401, "Jwks doesn't have key to match kid or alg from Jwt")
    );
}

#[test]
fn a_failing_endpoint_leaves_the_last_good_keys_in_place() {
    assert_eq!(with("failing", token("valid", "RS256")).status, 200);
    let failed_before = BED.envoy.stat("wasmcustom.inline_authz.jwks.fetch_failed");
    BED.jwks.set("/failing", 500, "oops");
    let deadline = Instant::now() + Duration::from_secs(20);
    while BED.envoy.stat("wasmcustom.inline_authz.jwks.fetch_failed") == failed_before
        && Instant::now() < deadline
    {
        sleep(Duration::from_millis(200));
    }
    assert!(
        BED.envoy.stat("wasmcustom.inline_authz.jwks.fetch_failed") > failed_before,
        "a refresh failed"
    );
    assert_eq!(
        with("failing", token("valid", "RS256")).status,
        200,
        "old keys still verify"
    );
    BED.jwks.set("/failing", 200, &VECTORS["jwks"].to_string());
}

#[test]
fn without_keys_tokens_are_refused_with_envoys_fetch_failure() {
    for listener in ["dead", "empty"] {
        let seen = with(listener, token("valid", "RS256"));
        assert_eq!(
            (seen.status, seen.body.as_str()),
            (401, "Jwks remote fetch is failed"),
            "{listener}"
        );
        let anonymous = observe(&BED, listener, &|m: &str| Call::get(&format!("/ip?{m}")));
        assert_eq!(
            anonymous.status, 200,
            "{listener}: no token, nothing to verify"
        );
    }
}

/// Two workers (three wasm VMs with the main thread): the keys are fetched once for the whole
/// proxy and shared through proxy-wasm shared data.
#[test]
fn one_proxy_fetches_the_keys_once_for_all_workers() {
    let jwks = VECTORS["jwks"].to_string();
    let bed = Bed::start_on_workers(
        &[Listener::wasm("shared", &remote("/once", "jwks", "10m"))],
        false,
        2,
        |server| {
            server.set_slow("/once", 200, &jwks, 500);
        },
    );
    for _ in 0..8 {
        let seen = observe(&bed, "shared", &|m: &str| {
            Call::get(&format!("/ip?{m}")).header(
                "authorization",
                &format!("Bearer {}", token("valid", "ES256")),
            )
        });
        assert_eq!(seen.status, 200, "{}", seen.body);
    }
    assert_eq!(bed.jwks.fetches("/once"), 1, "one fetch for the proxy");
}
