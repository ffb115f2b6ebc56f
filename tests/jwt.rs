//! JWT authentication in a real Envoy: every test vector through the filter and through Envoy's
//! native jwt_authn (configured as Istio generates it) side by side, the ingress tutorial's
//! tables, claim / payload headers, token forwarding and stripping.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::LazyLock;

use serde_json::{json, Value};
use testbed::compare::{observe, same, Observed};
use testbed::http::Call;
use testbed::scenario::{Bed, Listener};

static VECTORS: LazyLock<Value> =
    LazyLock::new(|| serde_json::from_str(include_str!("fixtures/jwt/vectors.json")).unwrap());

fn issuer() -> &'static str {
    VECTORS["issuer"].as_str().unwrap()
}

fn jwks() -> String {
    VECTORS["jwks"].to_string()
}

fn valid(alg: &str) -> &'static str {
    VECTORS["valid"][alg].as_str().unwrap()
}

fn case(name: &str) -> &'static str {
    VECTORS["cases"][name].as_str().unwrap()
}

fn rule(extra: Value) -> Value {
    let mut rule = json!({"issuer": issuer(), "jwks": jwks()});
    for (k, v) in extra.as_object().unwrap() {
        rule[k] = v.clone();
    }
    rule
}

fn plugin(rule: Value, policies: Value) -> String {
    json!({"jwtRules": [rule], "policies": policies}).to_string()
}

fn native_jwt(audiences: &[&str]) -> String {
    json!({
        "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
        "providers": {"origins-0": {
            "issuer": issuer(), "audiences": audiences,
            "local_jwks": {"inline_string": jwks()},
            "payload_in_metadata": "payload"}},
        "rules": [{"match": {"prefix": "/"}, "requires": {"requires_any": {"requirements": [
            {"provider_name": "origins-0"}, {"allow_missing": {}}]}}}],
        "bypass_cors_preflight": true
    })
    .to_string()
}

static BED: LazyLock<Bed> = LazyLock::new(|| {
    Bed::start(&[
        Listener::wasm(
            "ra",
            &plugin(rule(json!({"audiences": ["bookstore"]})), json!([])),
        ),
        Listener::native_jwt("ra-native", &native_jwt(&["bookstore"])),
        Listener::wasm(
            "ra-rust",
            &json!({"jwtRules": [rule(json!({"audiences": ["bookstore"]}))], "signatureBackend": "rust", "jwtCacheSize": 0}).to_string(),
        ),
        Listener::wasm(
            "require-jwt",
            &plugin(
                rule(json!({})),
                json!([{"name": "require-jwt", "action": "ALLOW",
                "rules": [{"from": [{"source": {"requestPrincipals": ["*"]}}]}]}]),
            ),
        ),
        Listener::wasm(
            "require-principal",
            &plugin(
                rule(json!({})),
                json!([{"name": "demo-only", "action": "ALLOW",
                "rules": [{"from": [{"source": {"requestPrincipals": ["testing@asm.test.io/demo@asm.test.io"]}}]}]}]),
            ),
        ),
        Listener::wasm(
            "claims",
            &plugin(
                rule(
                    json!({"outputPayloadToHeader": "x-jwt-payload", "outputClaimToHeaders": [
                    {"header": "x-jwt-sub", "claim": "sub"}, {"header": "x-jwt-team", "claim": "org.team"},
                    {"header": "x-jwt-groups", "claim": "groups"}, {"header": "x-jwt-level", "claim": "level"}]}),
                ),
                json!([{"action": "DENY", "rules": [{"when": [{"key": "request.auth.claims[org][team]", "values": ["red"]}]}]},
                       {"action": "ALLOW", "rules": [{"when": [{"key": "request.auth.claims[groups]", "values": ["ops"]}]}, {"to": [{"operation": {"paths": ["/ip"]}}]}]}]),
            ),
        ),
        Listener::wasm(
            "forward",
            &plugin(rule(json!({"forwardOriginalToken": true})), json!([])),
        ),
        Listener::wasm(
            "custom-fields",
            &plugin(
                rule(
                    json!({"fromHeaders": [{"name": "x-token", "prefix": "JWT "}], "fromParams": ["t"], "fromCookies": ["session"]}),
                ),
                json!([]),
            ),
        ),
    ])
});

fn with_token(path: &'static str, token: &'static str) -> impl Fn(&str) -> Call {
    move |m: &str| {
        Call::get(&format!("{path}?{m}"))
            .header("host", "gateway.example")
            .header("authorization", &format!("Bearer {token}"))
    }
}

fn without_token(path: &'static str) -> impl Fn(&str) -> Call {
    move |m: &str| Call::get(&format!("{path}?{m}")).header("host", "gateway.example")
}

fn upstream_has(seen: &Observed, name: &str) -> Option<String> {
    seen.upstream
        .as_ref()?
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.clone())
}

#[test]
fn every_vector_gets_the_same_verdict_as_envoys_jwt_authn() {
    let group = |name: &str| -> Vec<(String, &'static str)> {
        VECTORS[name]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap()))
            .collect()
    };
    let mut tokens = group("valid");
    tokens.extend(group("valid_rsa_sizes"));
    let valid: Vec<String> = tokens.iter().map(|(k, _)| k.clone()).collect();
    tokens.extend(group("cases"));
    tokens.push(("invalidToken".into(), "invalidToken"));
    tokens.push(("empty-after-prefix".into(), ""));
    for (name, token) in tokens {
        let seen = same(&BED, "ra", "ra-native", &|m: &str| {
            Call::get(&format!("/headers?{m}"))
                .header("host", "gateway.example")
                .header("authorization", &format!("Bearer {token}"))
        });
        let expect_ok =
            valid.contains(&name) || name == "valid_without_kid" || name == "empty-after-prefix";
        assert_eq!(
            seen.status == 200,
            expect_ok,
            "{name}: {} {}",
            seen.status,
            seen.body
        );
    }
}

#[test]
fn tutorial_request_authentication_table() {
    let valid = same(&BED, "ra", "ra-native", &with_token("/", valid("RS256")));
    assert_eq!(valid.status, 200);
    let invalid = same(&BED, "ra", "ra-native", &with_token("/", "invalidToken"));
    assert_eq!(invalid.status, 401);
    assert_eq!(
        invalid.header("www-authenticate").unwrap(),
        "Bearer realm=\"http://gateway.example/?MARK\", error=\"invalid_token\""
    );
    assert_eq!(
        invalid.header("content-length"),
        Some("79"),
        "the tutorial's content-length"
    );
    assert_eq!(invalid.header("content-type"), Some("text/plain"));
    let missing = same(&BED, "ra", "ra-native", &without_token("/"));
    assert_eq!(
        missing.status, 200,
        "RequestAuthentication alone lets token-less requests through"
    );
}

#[test]
fn tutorial_require_a_valid_jwt() {
    let missing = observe(&BED, "require-jwt", &without_token("/"));
    assert_eq!(missing.status, 401);
    assert_eq!(
        missing.header("www-authenticate").unwrap(),
        "Bearer realm=\"http://gateway.example/?MARK\""
    );
    assert_eq!(
        observe(&BED, "require-jwt", &with_token("/", valid("RS256"))).status,
        200
    );
    assert_eq!(
        observe(&BED, "require-jwt", &with_token("/", case("iss_only"))).status,
        200
    );
    assert_eq!(
        observe(&BED, "require-jwt", &with_token("/", "invalidToken")).status,
        401
    );
}

#[test]
fn tutorial_require_issuer_and_subject() {
    // DESIGN.md decides: a valid token that no ALLOW policy accepts gets 403 (the tutorial shows 401).
    let iss_only = observe(
        &BED,
        "require-principal",
        &with_token("/", case("iss_only")),
    );
    assert_eq!(
        (iss_only.status, iss_only.body.as_str()),
        (403, "RBAC: access denied")
    );
    assert_eq!(
        observe(&BED, "require-principal", &with_token("/", valid("ES256"))).status,
        200
    );
}

#[test]
fn claims_become_headers_and_drive_policies() {
    let seen = observe(&BED, "claims", &with_token("/headers", valid("EdDSA")));
    assert_eq!(seen.status, 200);
    assert_eq!(
        upstream_has(&seen, "x-jwt-sub").as_deref(),
        Some("demo@asm.test.io")
    );
    assert_eq!(upstream_has(&seen, "x-jwt-team").as_deref(), Some("blue"));
    assert_eq!(
        upstream_has(&seen, "x-jwt-groups").as_deref(),
        Some("dev,ops")
    );
    assert_eq!(upstream_has(&seen, "x-jwt-level").as_deref(), Some("3"));
    assert_eq!(
        upstream_has(&seen, "x-jwt-payload").as_deref(),
        Some(valid("EdDSA").split('.').nth(1).unwrap())
    );
    assert_eq!(
        upstream_has(&seen, "authorization"),
        None,
        "the token is not forwarded by default"
    );
}

#[test]
fn spoofed_identity_headers_are_stripped_with_or_without_a_token() {
    let spoofed = |token: Option<&'static str>| {
        observe(&BED, "claims", &move |m: &str| {
            let mut call = Call::get(&format!("/ip?{m}"))
                .header("x-jwt-sub", "admin")
                .header("x-jwt-payload", "e30");
            if let Some(t) = token {
                call = call.header("authorization", &format!("Bearer {t}"));
            }
            call
        })
    };
    let anonymous = spoofed(None);
    assert_eq!(anonymous.status, 200);
    assert_eq!(upstream_has(&anonymous, "x-jwt-sub"), None);
    assert_eq!(upstream_has(&anonymous, "x-jwt-payload"), None);
    let authenticated = spoofed(Some(valid("HS256")));
    let subs: Vec<_> = authenticated
        .upstream
        .as_ref()
        .unwrap()
        .iter()
        .filter(|(n, _)| n == "x-jwt-sub")
        .collect();
    assert_eq!(
        subs,
        vec![&("x-jwt-sub".to_string(), "demo@asm.test.io".to_string())]
    );
}

#[test]
fn token_is_forwarded_when_asked() {
    let seen = observe(&BED, "forward", &with_token("/headers", valid("PS256")));
    assert_eq!(seen.status, 200);
    assert!(upstream_has(&seen, "authorization")
        .unwrap()
        .starts_with("Bearer "));
}

#[test]
fn token_in_the_query_is_checked_and_removed() {
    let token = valid("ES384");
    let seen = observe(&BED, "ra", &move |m: &str| {
        Call::get(&format!("/anything?access_token={token}&{m}"))
    });
    assert_eq!(seen.status, 200);
    let body: Value = serde_json::from_str(&seen.body).unwrap();
    assert_eq!(body["url"], "/anything?MARK");
    let bad = observe(&BED, "ra", &|m: &str| {
        Call::get(&format!("/anything?access_token=invalidToken&{m}"))
    });
    assert_eq!(bad.status, 401);
}

#[test]
fn custom_locations_replace_the_defaults() {
    let token = valid("RS512");
    let header = observe(&BED, "custom-fields", &move |m: &str| {
        Call::get(&format!("/ip?{m}")).header("x-token", &format!("JWT {token}"))
    });
    assert_eq!(header.status, 200);
    let cookie = observe(&BED, "custom-fields", &|m: &str| {
        Call::get(&format!("/ip?{m}")).header("cookie", "a=1; session=invalidToken")
    });
    assert_eq!(cookie.status, 401);
    let param = observe(&BED, "custom-fields", &|m: &str| {
        Call::get(&format!("/ip?t=invalidToken&{m}"))
    });
    assert_eq!(param.status, 401);
    // Authorization is not a location of this rule: its content is not a token here.
    let ignored = observe(&BED, "custom-fields", &with_token("/ip", "invalidToken"));
    assert_eq!(ignored.status, 200);
}

#[test]
fn two_tokens_must_both_be_valid() {
    let good = valid("RS256");
    let bad = case("expired");
    let seen = observe(&BED, "ra", &move |m: &str| {
        Call::get(&format!("/ip?access_token={bad}&{m}"))
            .header("authorization", &format!("Bearer {good}"))
    });
    assert_eq!((seen.status, seen.body.as_str()), (401, "Jwt is expired"));
    // Envoy joins two Authorization headers into one value ("Bearer a,Bearer b"): not a token.
    let two_headers = same(&BED, "ra", "ra-native", &move |m: &str| {
        Call::get(&format!("/ip?{m}"))
            .header("authorization", &format!("Bearer {good}"))
            .header("authorization", &format!("Bearer {}", valid("ES256")))
    });
    assert_eq!(two_headers.status, 401);
    let header_and_query = same(&BED, "ra", "ra-native", &move |m: &str| {
        Call::get(&format!("/ip?access_token={}&{m}", valid("ES256")))
            .header("authorization", &format!("Bearer {good}"))
    });
    assert_eq!(
        header_and_query.status, 200,
        "two valid tokens in two places"
    );
}

#[test]
fn jwt_stats_count_verdicts() {
    let allowed = BED.envoy.stat("wasmcustom.inline_authz.jwt_authn.allowed");
    let denied = BED.envoy.stat("wasmcustom.inline_authz.jwt_authn.denied");
    observe(&BED, "ra", &with_token("/ip", valid("HS512")));
    observe(&BED, "ra", &with_token("/ip", case("bad_signature")));
    assert!(BED.envoy.stat("wasmcustom.inline_authz.jwt_authn.allowed") > allowed);
    assert!(BED.envoy.stat("wasmcustom.inline_authz.jwt_authn.denied") > denied);
}

/// A defined answer for a huge token: Envoy's own header limit (60 KiB by default) answers 431
/// before any filter runs, exactly as with native jwt_authn; in the query, the token is refused
/// like any malformed one.
#[test]
fn a_64_kib_token_gets_a_defined_answer() {
    let huge: &'static str = Box::leak("a".repeat(64 * 1024).into_boxed_str());
    let in_header = same(&BED, "ra", "ra-native", &with_token("/ip", huge));
    assert_eq!(in_header.status, 431);
    let just_under: &'static str = Box::leak(
        format!(
            "{}.{}.{}",
            "a".repeat(20_000),
            "b".repeat(20_000),
            "c".repeat(10_000)
        )
        .into_boxed_str(),
    );
    let big = same(&BED, "ra", "ra-native", &with_token("/ip", just_under));
    assert_eq!(big.status, 401, "{}", big.body);
}

/// Envoy 1.40 offers `verify_signature`: RS*/ES* go to BoringSSL by default. The pure-Rust backend
/// (signatureBackend: rust, no token cache) must give the same verdict, status and body on every
/// vector.
#[test]
fn host_and_pure_rust_backends_agree_on_every_vector() {
    assert!(
        BED.envoy
            .wait_for_log("RS*/ES* signatures checked by Envoy (verify_signature, BoringSSL)"),
        "the host backend is in use"
    );
    assert!(BED
        .envoy
        .wait_for_log("RS*/ES* signatures checked by pure Rust"));
    let mut tokens: Vec<&'static str> = Vec::new();
    for group in ["valid", "valid_rsa_sizes", "cases"] {
        tokens.extend(
            VECTORS[group]
                .as_object()
                .unwrap()
                .values()
                .map(|v| v.as_str().unwrap()),
        );
    }
    for token in tokens {
        for _ in 0..2 {
            // Twice: the second request of the "ra" listener comes from its token cache.
            same(&BED, "ra", "ra-rust", &move |m: &str| {
                Call::get(&format!("/headers?{m}"))
                    .header("authorization", &format!("Bearer {token}"))
            });
        }
    }
}
