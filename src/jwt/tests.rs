//! Verification against the committed vectors (tests/fixtures/jwt, signed by Python's
//! `cryptography`, not by this code), with the fake clock at 2023-11-14.

use super::*;
use crate::headers::HeaderMutation;

const VECTORS: &str = include_str!("../../tests/fixtures/jwt/vectors.json");
const NOW: u64 = 1_700_000_000;

fn vectors() -> serde_json::Value {
    serde_json::from_str(VECTORS).unwrap()
}

fn rule(jwks: &serde_json::Value, audiences: &[&str]) -> JwtRule {
    JwtRule {
        issuer: vectors()["issuer"].as_str().unwrap().to_string(),
        audiences: audiences.iter().map(|a| sanitize_audience(a)).collect(),
        keys: KeySource::Inline(Rc::new(Jwks::parse(&jwks.to_string()).unwrap())),
        locations: Location::defaults(),
        forward: false,
        payload_header: Some("x-jwt-payload".into()),
        claim_headers: vec![
            ("x-jwt-sub".into(), vec!["sub".into()]),
            ("x-jwt-team".into(), vec!["org".into(), "team".into()]),
            ("x-jwt-groups".into(), vec!["groups".into()]),
            ("x-jwt-level".into(), vec!["level".into()]),
            ("x-jwt-admin".into(), vec!["admin".into()]),
        ],
    }
}

fn config_with(rules: Vec<JwtRule>) -> JwtConfig {
    let mut config = JwtConfig {
        rules,
        clock_skew: DEFAULT_CLOCK_SKEW,
        refresh: DEFAULT_REFRESH,
        ..JwtConfig::default()
    };
    config.index_locations();
    config
}

fn config() -> JwtConfig {
    config_with(vec![rule(&vectors()["jwks"], &["bookstore"])])
}

fn bearer(token: &str) -> Vec<(String, String)> {
    vec![
        (":method".into(), "GET".into()),
        (":path".into(), "/headers".into()),
        (":authority".into(), "example.com".into()),
        ("authorization".into(), format!("Bearer {token}")),
    ]
}

fn outcome(config: &JwtConfig, headers: &[(String, String)]) -> Outcome {
    let keys = InlineKeys(config);
    config.authenticate(
        &Verifier {
            keys: &keys,
            backend: &verify::PureRust,
            cache: None,
            now: NOW,
        },
        headers,
    )
}

fn status_of(name: &str) -> Option<JwtStatus> {
    let v = vectors();
    let token = v["cases"][name]
        .as_str()
        .unwrap_or_else(|| panic!("no case {name}"));
    match outcome(&config(), &bearer(token)) {
        Outcome::Failed(status) => Some(status),
        _ => None,
    }
}

#[test]
fn every_algorithm_verifies() {
    let v = vectors();
    let config = config();
    let all = v["valid"]
        .as_object()
        .unwrap()
        .iter()
        .chain(v["valid_rsa_sizes"].as_object().unwrap());
    for (alg, token) in all {
        match outcome(&config, &bearer(token.as_str().unwrap())) {
            Outcome::Verified { auth, .. } => {
                assert_eq!(
                    auth.principal, "testing@asm.test.io/demo@asm.test.io",
                    "{alg}"
                );
                assert_eq!(auth.audiences, vec!["bookstore"]);
                assert_eq!(auth.presenter.as_deref(), Some("web-app"));
            }
            other => panic!("{alg}: {other:?}"),
        }
    }
}

#[test]
fn every_failure_kind_gets_envoys_status() {
    let cases = [
        ("expired", JwtStatus::JwtExpired),
        ("not_yet_valid", JwtStatus::JwtNotYetValid),
        ("bad_signature", JwtStatus::JwtVerificationFail),
        ("unknown_kid", JwtStatus::JwksKidAlgMismatch),
        ("other_issuer", JwtStatus::JwtUnknownIssuer),
        ("wrong_audience", JwtStatus::JwtAudienceNotAllowed),
        ("no_audience", JwtStatus::JwtAudienceNotAllowed),
        ("signed_by_rotated_key", JwtStatus::JwksKidAlgMismatch),
        ("hs256_with_rsa_public_key", JwtStatus::JwtVerificationFail),
        ("hs256_with_rsa_modulus", JwtStatus::JwtVerificationFail),
        ("es256_naming_the_rsa_key", JwtStatus::JwtVerificationFail),
        ("es512_bad_signature", JwtStatus::JwtVerificationFail),
        ("es512_naming_the_p384_key", JwtStatus::JwtVerificationFail),
        ("alg_none", JwtStatus::JwtBadFormat),
        (
            "alg_none_with_signature",
            JwtStatus::JwtHeaderNotImplementedAlg,
        ),
        (
            "malformed_json_payload",
            JwtStatus::JwtPayloadParseErrorBadJson,
        ),
    ];
    for (name, want) in cases {
        assert_eq!(status_of(name), Some(want), "{name}");
    }
    assert_eq!(JwtStatus::JwtAudienceNotAllowed.http_status(), 403);
    assert_eq!(JwtStatus::JwtExpired.http_status(), 401);
}

#[test]
fn a_token_without_kid_tries_every_key_and_an_invalid_string_is_bad_format() {
    let v = vectors();
    assert!(matches!(
        outcome(
            &config(),
            &bearer(v["cases"]["valid_without_kid"].as_str().unwrap())
        ),
        Outcome::Verified { .. }
    ));
    assert_eq!(
        outcome(&config(), &bearer("invalidToken")),
        Outcome::Failed(JwtStatus::JwtBadFormat)
    );
}

#[test]
fn no_token_continues_and_a_cors_preflight_is_not_checked() {
    let mut headers = bearer("x");
    headers.retain(|(n, _)| n != "authorization");
    assert_eq!(outcome(&config(), &headers), Outcome::NoToken);
    let mut preflight = bearer("invalidToken");
    preflight[0].1 = "OPTIONS".into();
    preflight.push(("origin".into(), "https://app".into()));
    preflight.push(("access-control-request-method".into(), "GET".into()));
    assert_eq!(outcome(&config(), &preflight), Outcome::NoToken);
}

#[test]
fn verified_token_is_removed_and_claims_become_headers() {
    let v = vectors();
    let token = v["valid"]["RS256"].as_str().unwrap();
    let Outcome::Verified { mutations, .. } = outcome(&config(), &bearer(token)) else {
        panic!()
    };
    let payload = token.split('.').nth(1).unwrap();
    assert_eq!(
        mutations,
        vec![
            HeaderMutation::Remove {
                name: "authorization".into()
            },
            HeaderMutation::Append {
                name: "x-jwt-payload".into(),
                value: payload.into()
            },
            HeaderMutation::Append {
                name: "x-jwt-sub".into(),
                value: "demo@asm.test.io".into()
            },
            HeaderMutation::Append {
                name: "x-jwt-team".into(),
                value: "blue".into()
            },
            HeaderMutation::Append {
                name: "x-jwt-groups".into(),
                value: "dev,ops".into()
            },
            HeaderMutation::Append {
                name: "x-jwt-level".into(),
                value: "3".into()
            },
            HeaderMutation::Append {
                name: "x-jwt-admin".into(),
                value: "true".into()
            },
        ]
    );
    let config = config();
    let sanitize = config.sanitize();
    assert!(sanitize.contains(&HeaderMutation::Remove {
        name: "x-jwt-payload".into()
    }));
    assert_eq!(sanitize.len(), 6);
}

#[test]
fn token_in_the_query_is_removed_from_the_path() {
    let v = vectors();
    let token = v["valid"]["ES256"].as_str().unwrap();
    let mut headers = bearer("x");
    headers.retain(|(n, _)| n != "authorization");
    headers[1].1 = format!("/headers?a=1&access_token={token}");
    let Outcome::Verified { mutations, .. } = outcome(&config(), &headers) else {
        panic!()
    };
    assert_eq!(
        mutations[0],
        HeaderMutation::Set {
            name: ":path".into(),
            value: "/headers?a=1".into()
        }
    );
}

#[test]
fn every_token_in_a_request_must_verify() {
    let v = vectors();
    let good = v["valid"]["RS256"].as_str().unwrap();
    let bad = v["cases"]["expired"].as_str().unwrap();
    let mut headers = bearer(good);
    headers[1].1 = format!("/headers?access_token={bad}");
    assert_eq!(
        outcome(&config(), &headers),
        Outcome::Failed(JwtStatus::JwtExpired)
    );
    let mut two = bearer(good);
    two.push(("authorization".into(), format!("Bearer {bad}")));
    assert_eq!(
        outcome(&config(), &two),
        Outcome::Failed(JwtStatus::JwtExpired)
    );
    let mut same_twice = bearer(good);
    same_twice[1].1 = format!("/headers?access_token={good}");
    assert!(matches!(
        outcome(&config(), &same_twice),
        Outcome::Verified { .. }
    ));
}

#[test]
fn audiences_compare_without_scheme_and_trailing_slash() {
    assert_eq!(sanitize_audience("https://bookstore/"), "bookstore");
    assert_eq!(sanitize_audience("http://a.example"), "a.example");
    let config = config_with(vec![rule(&vectors()["jwks"], &["https://bookstore/"])]);
    let v = vectors();
    assert!(matches!(
        outcome(&config, &bearer(v["valid"]["HS256"].as_str().unwrap())),
        Outcome::Verified { .. }
    ));
}

#[test]
fn two_issuers_each_verify_their_own_tokens() {
    let v = vectors();
    let mut other = rule(&v["rotated_jwks"], &[]);
    other.issuer = v["other_issuer"].as_str().unwrap().into();
    let config = config_with(vec![rule(&v["jwks"], &["bookstore"]), other]);
    assert!(matches!(
        outcome(&config, &bearer(v["valid"]["PS256"].as_str().unwrap())),
        Outcome::Verified { .. }
    ));
    // The other issuer is configured now, but its keys do not know rsa-1.
    assert_eq!(
        outcome(
            &config,
            &bearer(v["cases"]["other_issuer"].as_str().unwrap())
        ),
        Outcome::Failed(JwtStatus::JwksKidAlgMismatch)
    );
}

#[test]
fn www_authenticate_names_the_realm_and_the_error() {
    let headers = bearer("x");
    assert_eq!(
        www_authenticate(&headers, JwtStatus::JwtExpired),
        "Bearer realm=\"http://example.com/headers\", error=\"invalid_token\""
    );
    assert_eq!(
        www_authenticate(&headers, JwtStatus::JwtMissed),
        "Bearer realm=\"http://example.com/headers\""
    );
    let mut long = bearer("x");
    long[1].1 = format!("/{}", "a".repeat(400));
    let realm = www_authenticate(&long, JwtStatus::JwtMissed);
    assert_eq!(
        realm.len(),
        "Bearer realm=\"http://example.com\"".len() + 256
    );
}

#[test]
fn jwks_parsing_rejects_what_cannot_be_a_key() {
    assert!(Jwks::parse("{}").is_err());
    assert!(Jwks::parse(r#"{"keys": []}"#).is_err());
    assert!(Jwks::parse(r#"{"keys": [{"kty": "RSA", "n": "!!", "e": "AQAB"}]}"#).is_err());
    assert!(
        Jwks::parse(r#"{"keys": [{"kty": "EC", "crv": "P-521", "x": "AA", "y": "AA"}]}"#).is_err(),
        "no usable key"
    );
    let v = vectors();
    let mut short = v["jwks"]["keys"][1].clone();
    // A P-256 coordinate one byte short is left-padded, as Envoy accepts it.
    let x = token::base64url_decode(short["x"].as_str().unwrap()).unwrap();
    if x[0] == 0 {
        short["x"] = serde_json::Value::String(token::base64url_encode(&x[1..]));
    }
    assert!(Jwks::parse(&serde_json::json!({"keys": [short]}).to_string()).is_ok());
    assert!(format!(
        "{:?}",
        Jwks::parse(&serde_json::json!({"keys": [v["jwks"]["keys"][4]]}).to_string()).unwrap()
    )
    .contains("redacted"));
}

/// Published JOSE examples: RFC 7515 A.1 (HS256), A.3 (ES256) and RFC 8037 A.4 (Ed25519).
/// Their payloads are expired (2011) or not JSON, so the signature path is checked directly.
#[test]
fn rfc_example_signatures_verify_and_tampered_ones_do_not() {
    let cases = [
        (
            r#"{"kty":"oct","k":"AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow"}"#,
            token::Alg::Hs256,
            "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
        ),
        (
            r#"{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}"#,
            token::Alg::Es256,
            "eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q",
        ),
        (
            r#"{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}"#,
            token::Alg::EdDsa,
            "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc.hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg",
        ),
    ];
    for (jwk, alg, jws) in cases {
        let key = &Jwks::parse(jwk).unwrap().keys[0].material;
        let (input, signature) = jws.rsplit_once('.').unwrap();
        let signature = token::base64url_decode(signature).unwrap();
        assert!(
            verify::verify_signature(alg, key, input.as_bytes(), &signature),
            "{alg:?}"
        );
        let mut tampered = signature.clone();
        tampered[5] ^= 0x40;
        assert!(
            !verify::verify_signature(alg, key, input.as_bytes(), &tampered),
            "{alg:?} tampered"
        );
        assert!(
            !verify::verify_signature(alg, key, format!("{input}x").as_bytes(), &signature),
            "{alg:?} other input"
        );
    }
}

/// Found by `fuzz/fuzz_targets/token.rs`: jwt-compact panicked on an HMAC signature that is not
/// the digest's length, which aborts the VM in the proxy.
#[test]
fn wrong_length_hmac_and_ed25519_signatures_fail_verification_without_panicking() {
    let hmac = &Jwks::parse(r#"{"kty":"oct","k":"c2VjcmV0"}"#).unwrap().keys[0].material;
    for (alg, length) in [
        (token::Alg::Hs256, 32),
        (token::Alg::Hs384, 48),
        (token::Alg::Hs512, 64),
    ] {
        for wrong in [0, 1, length - 1, length + 1, 3] {
            assert!(
                !verify::verify_signature(alg, hmac, b"a.b", &vec![7; wrong]),
                "{alg:?} with {wrong} bytes"
            );
        }
    }
    let ed = r#"{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}"#;
    let ed = &Jwks::parse(ed).unwrap().keys[0].material;
    assert!(!verify::verify_signature(
        token::Alg::EdDsa,
        ed,
        b"a.b",
        &[7; 63]
    ));

    // The fuzzer's input: the valid HS256 fixture with a 3-byte signature, through the filter.
    let v = vectors();
    let valid = v["valid"]["HS256"].as_str().unwrap();
    let (signed, _) = valid.rsplit_once('.').unwrap();
    assert_eq!(
        outcome(&config(), &bearer(&format!("{signed}.c2ln"))),
        Outcome::Failed(JwtStatus::JwtVerificationFail)
    );
}

/// Counts signature checks and answers like pure Rust.
struct Counting(std::cell::Cell<u32>);

impl verify::SignatureBackend for Counting {
    fn verify(
        &self,
        alg: token::Alg,
        key: &jwks::Jwk,
        input: &[u8],
        signature: &[u8],
    ) -> Option<bool> {
        self.0.set(self.0.get() + 1);
        Some(verify::verify_signature(
            alg,
            &key.material,
            input,
            signature,
        ))
    }
}

#[test]
fn a_cached_token_is_not_verified_again_until_it_expires_or_keys_change() {
    let config = config();
    let keys = InlineKeys(&config);
    let backend = Counting(std::cell::Cell::new(0));
    let cache = cache::TokenCache::new(10);
    let v = vectors();
    let token = v["valid"]["PS256"].as_str().unwrap();
    let verifier = Verifier {
        keys: &keys,
        backend: &backend,
        cache: Some(&cache),
        now: NOW,
    };
    for _ in 0..3 {
        assert!(matches!(
            config.authenticate(&verifier, &bearer(token)),
            Outcome::Verified { .. }
        ));
    }
    assert_eq!(
        backend.0.get(),
        1,
        "verified once, then served from the cache"
    );
    // A tampered token is another cache key, and fails; failures are not cached.
    let bad = v["cases"]["bad_signature"].as_str().unwrap();
    assert_eq!(
        config.authenticate(&verifier, &bearer(bad)),
        Outcome::Failed(JwtStatus::JwtVerificationFail)
    );
    assert_eq!(cache.len(), 1);
    // Time is still checked on a hit: far in the future the cached token is expired.
    let later = Verifier {
        now: 5_000_000_000,
        ..verifier
    };
    assert_eq!(
        config.authenticate(&later, &bearer(token)),
        Outcome::Failed(JwtStatus::JwtExpired)
    );
}

#[test]
fn the_token_cache_is_bounded() {
    let cache = cache::TokenCache::new(2);
    let jwt = std::rc::Rc::new(Jwt::parse(vectors()["valid"]["HS256"].as_str().unwrap()).unwrap());
    for name in ["a", "b", "c"] {
        cache.insert(
            name,
            cache::Cached {
                jwt: std::rc::Rc::clone(&jwt),
                rule: 0,
                generation: 0,
                expires: u64::MAX,
            },
        );
    }
    assert_eq!(cache.len(), 2);
    assert!(cache.get("a", 0).is_none(), "the oldest went first");
    assert!(cache.get("c", 0).is_some());
    assert!(cache::TokenCache::new(0).get("c", 0).is_none());
}

#[test]
fn a_cached_token_is_good_through_its_expiry_second() {
    let cache = cache::TokenCache::new(4);
    let jwt = std::rc::Rc::new(Jwt::parse(vectors()["valid"]["HS256"].as_str().unwrap()).unwrap());
    cache.insert(
        "t",
        cache::Cached {
            jwt,
            rule: 0,
            generation: 0,
            expires: 1000,
        },
    );
    assert!(cache.get("t", 1000).is_some());
    assert!(cache.get("t", 1001).is_none());
}
