//! The compact JWT parser on arbitrary text, then the whole `jwt_authn` path (extraction,
//! parsing, rule choice, time and audience checks, signature) against the fixture key set.

#![no_main]

use inline_authz::config::Config;
use inline_authz::jwt::jwks::Jwks;
use inline_authz::jwt::token::{base64url_decode, base64url_encode, Jwt};
use inline_authz::jwt::verify::{verify, PureRust};
use inline_authz::jwt::{InlineKeys, Outcome, Verifier};
use libfuzzer_sys::fuzz_target;

const VECTORS: &str = include_str!("../../tests/fixtures/jwt/vectors.json");
/// 2027-01-15: inside the fixtures' `iat`..`exp` window.
const NOW: u64 = 1_800_000_000;

struct Fixture {
    jwks: Jwks,
    config: Config,
}

fn fixture() -> Fixture {
    let vectors: serde_json::Value = serde_json::from_str(VECTORS).expect("vectors.json is JSON");
    let jwks_text = vectors["jwks"].to_string();
    let issuer = vectors["issuer"].as_str().expect("issuer");
    let config = serde_json::json!({
        "jwtRules": [
            {"issuer": issuer, "jwks": jwks_text, "audiences": ["bookstore"],
             "outputPayloadToHeader": "x-payload",
             "outputClaimToHeaders": [{"header": "x-team", "claim": "org.team"}]},
            {"issuer": "any-audience", "jwks": jwks_text,
             "fromHeaders": [{"name": "x-token"}], "fromParams": ["token"], "fromCookies": ["session"]}
        ]
    });
    Fixture {
        jwks: Jwks::parse(&jwks_text).expect("fixture JWKS parses"),
        config: Config::parse(config.to_string().as_bytes()).expect("fixture config parses"),
    }
}

thread_local! {
    static FIXTURE: Fixture = fixture();
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);

    if let Some(decoded) = base64url_decode(&text) {
        let again = base64url_encode(&decoded);
        assert_eq!(
            base64url_decode(&again).as_deref(),
            Some(&decoded[..]),
            "base64url round trip"
        );
    }

    FIXTURE.with(|fixture| {
        if let Ok(jwt) = Jwt::parse(&text) {
            let _ = jwt.check_time(NOW, 60);
            let _ = verify(&jwt, &fixture.jwks, &PureRust);
        }

        let keys = InlineKeys(&fixture.config.jwt);
        let verifier = Verifier {
            keys: &keys,
            backend: &PureRust,
            cache: None,
            now: NOW,
        };
        let headers = vec![
            (":method".to_string(), "GET".to_string()),
            (":path".to_string(), format!("/x?a=1&token={text}")),
            ("authorization".to_string(), format!("Bearer {text}")),
            ("cookie".to_string(), format!("a=b; session={text}")),
        ];
        let outcome = fixture.config.jwt.authenticate(&verifier, &headers);
        assert!(
            !matches!(outcome, Outcome::Pending { .. }),
            "inline keys never wait"
        );
    });
});
