//! The JWKS parser on arbitrary bytes; every key set it accepts is then asked to verify the
//! fixture tokens of every algorithm (fuzzing key material through the signature code).

#![no_main]

use inline_authz::jwt::jwks::Jwks;
use inline_authz::jwt::token::Jwt;
use inline_authz::jwt::verify::{verify, PureRust};
use libfuzzer_sys::fuzz_target;

const VECTORS: &str = include_str!("../../tests/fixtures/jwt/vectors.json");

fn tokens() -> Vec<Jwt> {
    let vectors: serde_json::Value = serde_json::from_str(VECTORS).expect("vectors.json is JSON");
    vectors["valid"]
        .as_object()
        .expect("valid tokens")
        .values()
        .filter_map(|t| Jwt::parse(t.as_str()?).ok())
        .collect()
}

thread_local! {
    static TOKENS: Vec<Jwt> = tokens();
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(jwks) = Jwks::parse(text) else {
        return;
    };
    assert!(!jwks.keys.is_empty(), "an accepted key set has a key");
    TOKENS.with(|tokens| {
        for jwt in tokens {
            let _ = verify(jwt, &jwks, &PureRust);
        }
    });
});
