//! The gRPC authorization service's answer: any bytes as a `CheckResponse` message, read as
//! Envoy's gRPC ext_authz client reads it. Never a panic; an allow never touches a pseudo-header
//! or `host`; a denial's status is an HTTP status.

#![no_main]

use arbitrary::Arbitrary;
use inline_authz::ext_authz::grpc::{interpret, CallOutcome};
use inline_authz::ext_authz::CheckResponse;
use inline_authz::headers::{is_protected, HeaderMutation};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    message: Vec<u8>,
    headers: Vec<(String, String)>,
    path: String,
}

fuzz_target!(|input: Input| {
    let headers: Vec<(String, String)> = input
        .headers
        .into_iter()
        .map(|(n, v)| (n.to_ascii_lowercase(), v))
        .collect();
    let path = format!("/{}", input.path);
    match interpret(&CallOutcome::Message(input.message), &headers, &path) {
        CheckResponse::Ok { upstream, .. } => {
            for mutation in &upstream {
                let name = mutation.name();
                if let HeaderMutation::Set { name, value } = mutation {
                    if name == ":path" {
                        assert!(value.starts_with('/'), "{value:?}");
                        continue;
                    }
                }
                assert!(!is_protected(name), "{mutation:?}");
            }
        }
        CheckResponse::Denied { status, .. } => assert!((100..=599).contains(&status)),
        CheckResponse::Error(_) => {}
    }
});
