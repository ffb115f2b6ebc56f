//! OIDC discovery in a real Envoy: a `jwtRules[]` entry with an https `issuer` and neither `jwks`
//! nor `jwksUri` makes the proxy fetch `<issuer>/.well-known/openid-configuration` through
//! `outbound|443||<issuer host>`, then the keys at its `jwks_uri` through
//! `outbound|443||<jwks host>`. Both are served over TLS by the test bed's TLS front
//! (testbed/src/tls.rs) in front of the JWKS server, whose host-qualified answers
//! (`keys.example/jwks`) also check the `:authority` of each fetch.
//!
//! The tokens (tests/fixtures/jwt/oidc.json, generate_oidc.py) are HS256 with `oct` keys and carry
//! the https issuers. `native_jwt_authn_verifies_the_https_issuer_tokens` checks the test bed on
//! its own (Envoy's jwt_authn, `remote_jwks` over the same TLS clusters); the other tests need the
//! filter's discovery.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::LazyLock;
use std::thread::sleep;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use testbed::compare::{observe, Observed};
use testbed::envoy::validate;
use testbed::http::Call;
use testbed::scenario::{render_config, Bed, Listener, Ports};
use testbed::services::JwksServer;

static OIDC: LazyLock<Value> =
    LazyLock::new(|| serde_json::from_str(include_str!("fixtures/jwt/oidc.json")).unwrap());

const FETCH_FAILED: &str = "wasmcustom.inline_authz.jwks.fetch_failed";
const FETCH_FAILED_BODY: &str = "Jwks remote fetch is failed";

/// The token for `issuer` signed with the first key (`oidc-1`, in `jwks`).
fn token(issuer: &str) -> &'static str {
    OIDC["tokens"][issuer].as_str().unwrap()
}

/// The token for `issuer` signed with the rotated key (`oidc-2`, in `rotated_jwks`).
fn rotated(issuer: &str) -> &'static str {
    OIDC["rotated"][issuer].as_str().unwrap()
}

fn jwks() -> String {
    OIDC["jwks"].to_string()
}

/// The JWKS server key of `issuer`'s discovery document: host + path, as the TLS front's backend
/// sees it (`issuer.example/slow/.well-known/openid-configuration`).
fn discovery_key(issuer: &str) -> String {
    let rest = issuer.strip_prefix("https://").unwrap();
    format!("{rest}/.well-known/openid-configuration")
}

/// A discovery document naming `jwks_uri`.
fn document(issuer: &str, jwks_uri: &str) -> String {
    json!({"issuer": issuer, "jwks_uri": jwks_uri, "id_token_signing_alg_values_supported": ["HS256"]})
        .to_string()
}

/// One discovered rule and an ALLOW policy that requires a token.
fn discovering(issuer: &str, refresh: &str) -> String {
    json!({
        "jwtRules": [{"issuer": issuer, "audiences": ["bookstore"]}],
        "jwksRefreshInterval": refresh,
        "policies": [{"action": "ALLOW", "rules": [{"from": [{"source": {"requestPrincipals": ["*"]}}]}]}]
    })
    .to_string()
}

const MAIN: &str = "https://issuer.example";
const SLOW: &str = "https://issuer.example/slow";
const ROTATING: &str = "https://issuer.example/rotating";

static BED: LazyLock<Bed> = LazyLock::new(|| {
    Bed::start_prepared(
        &[
            Listener::wasm("main", &discovering(MAIN, "10m")),
            Listener::wasm("slow", &discovering(SLOW, "10m")),
            Listener::wasm("rotating", &discovering(ROTATING, "1s")),
        ],
        false,
        |server| {
            server.set("keys.example/jwks", 200, &jwks());
            server.set(
                &discovery_key(MAIN),
                200,
                &document(MAIN, "https://keys.example/jwks"),
            );
            // 2.5 s: the first request is sent while this is in flight.
            server.set_slow(
                &discovery_key(SLOW),
                200,
                &document(SLOW, "https://keys.example/jwks"),
                2500,
            );
            server.set(
                &discovery_key(ROTATING),
                200,
                &document(ROTATING, "https://keys.example/jwks"),
            );
        },
    )
});

fn call(bed: &Bed, listener: &str, token: Option<&'static str>) -> Observed {
    observe(bed, listener, &move |m: &str| {
        let call = Call::get(&format!("/ip?{m}"));
        match token {
            Some(token) => call.header("authorization", &format!("Bearer {token}")),
            None => call,
        }
    })
}

/// Polls `f` every 200 ms for up to `secs` seconds; whether it became true.
fn eventually(secs: u64, f: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        sleep(Duration::from_millis(200));
    }
    f()
}

#[test]
fn keys_are_discovered_and_tokens_verify() {
    let seen = call(&BED, "main", Some(token(MAIN)));
    assert_eq!(seen.status, 200, "{}", seen.body);
    // Another issuer's token and a key the JWKS does not have are refused; no token: the policy.
    assert_eq!(call(&BED, "main", Some(token(SLOW))).status, 401);
    assert_eq!(call(&BED, "main", Some(rotated(MAIN))).status, 401);
    // No token: the ALLOW policy needs one, so 401 asking for one (DESIGN.md's reply table).
    assert_eq!(call(&BED, "main", None).status, 401);
    // The discovery document and the keys were asked of their own hosts (the host-qualified
    // answers match only then), with GET and the issuer's path.
    let discovery: Vec<_> = BED
        .jwks
        .requests
        .all()
        .into_iter()
        .filter(|r| r.path() == "/.well-known/openid-configuration")
        .collect();
    assert!(!discovery.is_empty(), "the discovery document was fetched");
    for request in &discovery {
        assert_eq!(request.method, "GET");
        assert_eq!(request.header("host"), Some("issuer.example"));
    }
    assert!(BED.jwks.fetches("keys.example/jwks") >= 1);
    // Cached: no fetch per request.
    let documents = BED.jwks.fetches(&discovery_key(MAIN));
    for _ in 0..5 {
        assert_eq!(call(&BED, "main", Some(token(MAIN))).status, 200);
    }
    assert_eq!(BED.jwks.fetches(&discovery_key(MAIN)), documents);
}

#[test]
fn a_request_that_arrives_before_the_keys_are_discovered_waits_for_them() {
    let seen = call(&BED, "slow", Some(token(SLOW)));
    assert_eq!(seen.status, 200, "{}", seen.body);
    assert!(BED.jwks.fetches(&discovery_key(SLOW)) >= 1);
}

#[test]
fn a_changed_jwks_uri_is_followed_at_the_next_refresh() {
    assert_eq!(call(&BED, "rotating", Some(token(ROTATING))).status, 200);
    BED.jwks.set(
        "other-keys.example/jwks",
        200,
        &OIDC["rotated_jwks"].to_string(),
    );
    BED.jwks.set(
        &discovery_key(ROTATING),
        200,
        &document(ROTATING, "https://other-keys.example/jwks"),
    );
    assert!(
        eventually(20, || BED.jwks.fetches("other-keys.example/jwks") >= 1),
        "the new jwks_uri was fetched (refresh 1 s)\n{}",
        BED.envoy.log_tail(30)
    );
    assert!(
        eventually(10, || call(&BED, "rotating", Some(rotated(ROTATING)))
            .status
            == 200),
        "tokens of the new key verify\n{}",
        BED.envoy.log_tail(30)
    );
    assert!(
        eventually(10, || call(&BED, "rotating", Some(token(ROTATING))).status
            == 401),
        "the old key is gone with the old jwks_uri"
    );
}

/// Two workers (three wasm VMs with the main thread): one discovery fetch and one key fetch for
/// the whole proxy.
#[test]
fn one_proxy_discovers_once_for_all_workers() {
    const ONCE: &str = "https://issuer.example/once";
    let bed = Bed::start_on_workers(
        &[Listener::wasm("shared", &discovering(ONCE, "10m"))],
        false,
        2,
        |server| {
            server.set_slow(
                &discovery_key(ONCE),
                200,
                &document(ONCE, "https://keys.example/jwks"),
                300,
            );
            server.set_slow("keys.example/jwks", 200, &jwks(), 300);
        },
    );
    for _ in 0..8 {
        let seen = call(&bed, "shared", Some(token(ONCE)));
        assert_eq!(seen.status, 200, "{}", seen.body);
    }
    assert_eq!(
        bed.jwks.fetches(&discovery_key(ONCE)),
        1,
        "one discovery fetch"
    );
    assert_eq!(bed.jwks.fetches("keys.example/jwks"), 1, "one key fetch");
}

/// A Bed with one discovered rule for `issuer`, whose discovery fails in one way (`prepare`):
/// a token is refused with Envoy's fetch failure, `jwks.fetch_failed` counts it, and the log has a
/// line with every word of `words`.
fn discovery_fails(issuer: &str, prepare: impl FnOnce(&JwksServer), words: &[&str]) {
    let bed = Bed::start_prepared(
        &[Listener::wasm("failing", &discovering(issuer, "10m"))],
        false,
        prepare,
    );
    let seen = call(&bed, "failing", Some(token(issuer)));
    assert_eq!(
        (seen.status, seen.body.as_str()),
        (401, FETCH_FAILED_BODY),
        "{issuer}\n{}",
        bed.envoy.log_tail(30)
    );
    assert!(
        bed.envoy
            .wait_for_stat(FETCH_FAILED, |n| n >= 1, Duration::from_secs(10)),
        "{issuer}: {FETCH_FAILED} counted the failure"
    );
    let logged = eventually(15, || {
        bed.envoy
            .log()
            .lines()
            .any(|line| words.iter().all(|w| line.contains(w)))
    });
    assert!(
        logged,
        "{issuer}: no log line with {words:?}\n{}",
        bed.envoy.log_tail(30)
    );
    // Without a token, nothing to verify: the policy alone decides (401 asking for a token, not
    // the fetch failure's body).
    let tokenless = call(&bed, "failing", None);
    assert_eq!(
        (tokenless.status, tokenless.body.as_str()),
        (401, "Jwt is missing"),
        "{issuer}"
    );
}

#[test]
fn discovery_down_gives_no_keys() {
    // outbound|443||down.example leads to a port nothing listens on.
    discovery_fails(
        "https://down.example",
        |_| {},
        &["discovery", "https://down.example"],
    );
}

#[test]
fn a_discovery_document_that_is_not_json_gives_no_keys() {
    const ISSUER: &str = "https://issuer.example/not-json";
    discovery_fails(
        ISSUER,
        |server| server.set(&discovery_key(ISSUER), 200, "<html>not json</html>"),
        &["discovery", ISSUER],
    );
}

#[test]
fn a_discovery_document_without_jwks_uri_gives_no_keys() {
    const ISSUER: &str = "https://issuer.example/no-jwks-uri";
    discovery_fails(
        ISSUER,
        |server| {
            server.set(
                &discovery_key(ISSUER),
                200,
                &json!({"issuer": ISSUER}).to_string(),
            )
        },
        &["discovery", ISSUER],
    );
}

#[test]
fn a_jwks_uri_that_is_not_https_gives_no_keys() {
    const ISSUER: &str = "https://issuer.example/http-jwks-uri";
    discovery_fails(
        ISSUER,
        |server| {
            server.set(
                &discovery_key(ISSUER),
                200,
                &document(ISSUER, "http://keys.example/jwks"),
            );
            // Served, should a plain-http fetch be attempted: it must not be used.
            server.set("keys.example/jwks", 200, &jwks());
        },
        &["discovery", ISSUER],
    );
}

#[test]
fn a_jwks_uri_without_an_envoy_cluster_gives_no_keys() {
    const ISSUER: &str = "https://issuer.example/no-cluster";
    discovery_fails(
        ISSUER,
        |server| {
            server.set(
                &discovery_key(ISSUER),
                200,
                &document(ISSUER, "https://nowhere.example/jwks"),
            )
        },
        &["outbound|443||nowhere.example"],
    );
}

/// Keys never come without TLS: an `http://` issuer with neither `jwks` nor `jwksUri` is a
/// configuration error, and Envoy refuses the filter.
#[test]
fn an_http_issuer_without_keys_is_refused_at_start() {
    let plugin = discovering("http://issuer.example", "10m");
    let config = render_config(&[Listener::wasm("only", &plugin)], Ports::unused(), false).unwrap();
    let output = validate(&config).expect_err("an http issuer cannot be discovered");
    let line = output
        .lines()
        .find(|l| l.contains("invalid configuration:"))
        .unwrap_or_else(|| panic!("no message in\n{output}"));
    assert!(
        line.contains("invalid configuration: jwtRules[0]"),
        "names the rule: {line}"
    );
}

/// The test bed alone, without the filter: Envoy's own jwt_authn fetches `remote_jwks` over the
/// TLS clusters of all three https hosts (SNI, the per-run CA, the host's SAN) and verifies the
/// https-issuer tokens of oidc.json.
#[test]
fn native_jwt_authn_verifies_the_https_issuer_tokens() {
    const ONCE: &str = "https://issuer.example/once";
    let provider = |issuer: &str, uri: &str, cluster: &str| {
        json!({
            "issuer": issuer,
            "audiences": ["bookstore"],
            "remote_jwks": {
                "http_uri": {"uri": uri, "cluster": cluster, "timeout": "5s"},
                "cache_duration": "600s"
            },
            "forward": true
        })
    };
    let jwt_authn = json!({
        "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
        "providers": {
            "keys": provider(MAIN, "https://keys.example/jwks", "outbound|443||keys.example"),
            "issuer": provider(ONCE, "https://issuer.example/jwks-here", "outbound|443||issuer.example"),
            "other": provider(ROTATING, "https://other-keys.example/jwks", "outbound|443||other-keys.example"),
        },
        "rules": [{"match": {"prefix": "/"}, "requires": {"requires_any": {"requirements": [
            {"provider_name": "keys"}, {"provider_name": "issuer"}, {"provider_name": "other"}
        ]}}}]
    })
    .to_string();
    let bed = Bed::start_prepared(
        &[Listener::native_jwt("native", &jwt_authn)],
        false,
        |server| {
            server.set("keys.example/jwks", 200, &jwks());
            server.set("issuer.example/jwks-here", 200, &jwks());
            server.set(
                "other-keys.example/jwks",
                200,
                &OIDC["rotated_jwks"].to_string(),
            );
        },
    );
    assert!(bed.tls.is_some(), "the TLS front runs for .example hosts");
    for (issuer, token, want) in [
        (MAIN, token(MAIN), 200),
        (ONCE, token(ONCE), 200),
        (ROTATING, rotated(ROTATING), 200),
        (MAIN, rotated(MAIN), 401),
        (ROTATING, token(ROTATING), 401),
    ] {
        let seen = call(&bed, "native", Some(token));
        assert_eq!(
            seen.status,
            want,
            "{issuer}: {}\n{}",
            seen.body,
            bed.envoy.log_tail(30)
        );
    }
    assert_eq!(
        call(&bed, "native", None).status,
        401,
        "a token is required"
    );
    for key in [
        "keys.example/jwks",
        "issuer.example/jwks-here",
        "other-keys.example/jwks",
    ] {
        assert!(bed.jwks.fetches(key) >= 1, "{key} fetched over TLS");
    }
}
