//! Decisions explained, in a real Envoy: the audit record (`auditRecord: true`) as a file access
//! log prints it with `%FILTER_STATE(wasm.inline_authz.decision:PLAIN)%`, and the JSON bodies of
//! `localReplyBody: json`, beside the same configuration with Envoy's texts.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use testbed::http::{Call, Response};
use testbed::scenario::{Bed, Listener};

static VECTORS: LazyLock<Value> =
    LazyLock::new(|| serde_json::from_str(include_str!("fixtures/jwt/vectors.json")).unwrap());

const PRINCIPAL: &str = "testing@asm.test.io/demo@asm.test.io";

fn jwt_rules() -> Value {
    json!([{"issuer": VECTORS["issuer"], "jwks": VECTORS["jwks"].to_string()}])
}

fn token(case: &str) -> String {
    let token = VECTORS["valid"][case]
        .as_str()
        .or(VECTORS["cases"][case].as_str())
        .unwrap();
    format!("Bearer {token}")
}

/// The sample HTTP authorization service of the bed, as the ingress tutorial names it.
fn sample_ext_authz(name: &str) -> Value {
    json!({"name": name, "envoyExtAuthzHttp": {
        "service": "ext-authz.default.svc.cluster.local", "port": 8000,
        "includeRequestHeadersInCheck": ["x-ext-authz"],
        "includeRequestBodyInCheck": {"maxRequestBytes": 4, "allowPartialMessage": false}}})
}

fn policies() -> Value {
    json!([
        {"name": "deny-admin", "action": "DENY", "rules": [{"to": [{"operation": {"paths": ["/admin"]}}]}]},
        {"name": "no-debug", "action": "DENY", "dryRun": true, "rules": [{"to": [{"operation": {"paths": ["/debug"]}}]}]},
        {"name": "public", "action": "ALLOW", "rules": [{"to": [{"operation": {"paths": ["/public", "/debug", "/admin", "/headers", "/upload", "/anything/*"]}}]}]},
        {"name": "signed-in", "action": "ALLOW", "rules": [{"from": [{"source": {"requestPrincipals": ["*"]}}]}]},
        {"name": "ask-the-service", "action": "CUSTOM", "provider": {"name": "sample-ext-authz"},
         "rules": [{"to": [{"operation": {"paths": ["/headers", "/upload"]}}]}]},
        {"name": "shadow-check", "action": "CUSTOM", "dryRun": true, "provider": {"name": "shadow-authz"},
         "rules": [{"to": [{"operation": {"paths": ["/anything/shadow"]}}]}]}
    ])
}

/// One configuration for every case; `extra` adds top-level fields.
fn plugin(extra: Value) -> String {
    let mut config = json!({
        "jwtRules": jwt_rules(),
        "extensionProviders": [sample_ext_authz("sample-ext-authz"), sample_ext_authz("shadow-authz")],
        "policies": policies(),
    });
    for (k, v) in extra.as_object().unwrap() {
        config[k] = v.clone();
    }
    config.to_string()
}

static BED: LazyLock<Bed> = LazyLock::new(|| {
    Bed::start(&[
        Listener::wasm("audit", &plugin(json!({"auditRecord": true}))).with_access_log(),
        Listener::wasm("json", &plugin(json!({"localReplyBody": "json"}))),
        Listener::wasm("envoy-texts", &plugin(json!({}))),
    ])
});

/// One request at a time reads the access log: the line it added.
static LOG: Mutex<()> = Mutex::new(());

/// Sends `call` to listener `audit` and returns the reply and the access-log line it wrote
/// (`%RESPONSE_CODE% <record>`), polled until Envoy flushed it.
fn logged(call: Call) -> (Response, String) {
    let _one = LOG.lock().unwrap_or_else(|e| e.into_inner());
    let before = BED.access_log("audit").len();
    let response = call.send(BED.port("audit")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(line) = BED.access_log("audit").get(before) {
            return (response, line.clone());
        }
        assert!(
            Instant::now() < deadline,
            "no access-log line\n--- envoy log tail ---\n{}",
            BED.envoy.log_tail(30)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn record_of(call: Call) -> String {
    logged(call).1
}

#[test]
fn an_allow_policy_that_matched_is_named() {
    assert_eq!(
        record_of(Call::get("/public")),
        "200 outcome=allowed reason=policy:public"
    );
}

#[test]
fn a_deny_policy_is_named_by_its_reason_code() {
    assert_eq!(
        record_of(Call::get("/admin")),
        "403 outcome=denied reason=policy:deny-admin"
    );
}

#[test]
fn a_verified_token_gives_the_principal_and_a_bad_one_the_jwt_code() {
    assert_eq!(
        record_of(Call::get("/private").header("authorization", &token("RS256"))),
        format!("200 outcome=allowed reason=policy:signed-in principal={PRINCIPAL}")
    );
    let expired = token("expired");
    let line = record_of(Call::get("/private").header("authorization", &expired));
    assert_eq!(line, "401 outcome=denied reason=jwt_authn:jwt_expired");
    assert!(!line.contains(&expired[7..30]), "never the token");
    assert_eq!(
        record_of(Call::get("/private")),
        "401 outcome=denied reason=jwt_authn:jwt_missed"
    );
}

#[test]
fn custom_checks_name_the_provider_and_its_answer() {
    assert_eq!(
        record_of(Call::get("/headers").header("x-ext-authz", "allow")),
        "200 outcome=allowed reason=policy:public providers=sample-ext-authz:ok"
    );
    assert_eq!(
        record_of(Call::get("/headers").header("x-ext-authz", "deny")),
        "403 outcome=denied reason=ext_authz:denied providers=sample-ext-authz:denied"
    );
}

#[test]
fn dry_runs_that_would_deny_make_would_deny() {
    assert_eq!(
        record_of(Call::get("/debug")),
        "200 outcome=would-deny reason=policy:public dry_run=policy:no-debug"
    );
    assert_eq!(
        record_of(Call::get("/anything/shadow")),
        "200 outcome=would-deny reason=policy:public dry_run=ext_authz:denied \
         providers=shadow-authz:shadow_denied"
    );
}

/// The reply's JSON body, checking it comes with one `content-type: application/json`.
fn json_of(response: &Response) -> Value {
    assert_eq!(
        response.get_all("content-type"),
        ["application/json"],
        "{:?}",
        response.headers
    );
    serde_json::from_slice(&response.body).unwrap()
}

fn to(listener: &str, call: Call) -> Response {
    call.send(BED.port(listener)).unwrap()
}

#[test]
fn json_replies_name_status_reason_and_policy() {
    let denied = to("json", Call::get("/admin"));
    assert_eq!(denied.status, 403);
    assert_eq!(
        json_of(&denied),
        json!({"status": 403, "reason": "policy:deny-admin", "policy": "deny-admin"})
    );
    let text = to("envoy-texts", Call::get("/admin"));
    assert_eq!(text.text(), "RBAC: access denied");
    assert_eq!(text.get("content-type"), Some("text/plain"));

    let bad = to(
        "json",
        Call::get("/private").header("authorization", "Bearer invalidToken"),
    );
    assert_eq!(bad.status, 401);
    assert_eq!(
        json_of(&bad),
        json!({"status": 401, "reason": "jwt_authn:jwt_bad_format"})
    );
    assert_eq!(
        bad.get("www-authenticate"),
        to(
            "envoy-texts",
            Call::get("/private").header("authorization", "Bearer invalidToken")
        )
        .get("www-authenticate"),
        "the challenge stays"
    );

    let large = to(
        "json",
        Call::post("/upload", b"hello world").header("x-ext-authz", "allow"),
    );
    assert_eq!(large.status, 413);
    assert_eq!(
        json_of(&large),
        json!({"status": 413, "reason": "ext_authz:request_too_large"})
    );
}

#[test]
fn a_json_listener_keeps_the_services_own_denial() {
    let call = || Call::get("/headers").header("x-ext-authz", "deny");
    let json = to("json", call());
    let text = to("envoy-texts", call());
    assert_eq!(json.status, 403);
    assert_eq!(
        (json.text(), json.get("content-type")),
        (text.text(), text.get("content-type"))
    );
    assert!(json.text().starts_with("denied by ext_authz"));
}

#[test]
fn a_grpc_request_gets_its_grpc_status_as_with_envoy_texts() {
    let call = || {
        Call::post("/admin", b"")
            .header("content-type", "application/grpc")
            .header("te", "trailers")
    };
    let json = to("json", call());
    let text = to("envoy-texts", call());
    assert_eq!(json.status, 200, "{:?}", json.headers);
    assert_eq!(json.get("grpc-status"), Some("7"), "PERMISSION_DENIED");
    for header in ["grpc-status", "grpc-message", "content-type"] {
        assert_eq!(json.get_all(header), text.get_all(header), "{header}");
    }
    assert_eq!(json.get("content-type"), Some("application/grpc"));

    let unauthenticated = to(
        "json",
        Call::post("/private", b"")
            .header("content-type", "application/grpc")
            .header("authorization", "Bearer invalidToken"),
    );
    assert_eq!(
        unauthenticated.get("grpc-status"),
        Some("16"),
        "UNAUTHENTICATED"
    );
}
