//! What a hostile client sends, end to end in a real Envoy, twice: once with Envoy's own path
//! normalization off (the filter normalizes) and once with it on (`normalize_path: true`, what
//! Istio's default `BASE` sets). Each attack gets its documented answer, the same in both, and a
//! request that is refused never reaches the upstream. docs/security.md lists every row.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::LazyLock;

use serde_json::{json, Value};
use testbed::http::{send_raw, Request, Response};
use testbed::scenario::{marker, Bed, Listener};

static VECTORS: LazyLock<Value> =
    LazyLock::new(|| serde_json::from_str(include_str!("fixtures/jwt/vectors.json")).unwrap());

fn valid(alg: &str) -> String {
    VECTORS["valid"][alg].as_str().unwrap().to_string()
}

fn case(name: &str) -> String {
    VECTORS["cases"][name].as_str().unwrap().to_string()
}

/// A plugin configuration with one policy of `action` and one rule.
fn one_policy(action: &str, rule: Value) -> String {
    json!({"policies": [{"action": action, "rules": [rule]}]}).to_string()
}

fn deny_paths(paths: Value, normalization: &str) -> String {
    json!({"pathNormalization": normalization, "policies": [{"name": "admin", "action": "DENY",
        "rules": [{"to": [{"operation": {"paths": paths}}]}]}]})
    .to_string()
}

fn listeners() -> Vec<Listener> {
    vec![
        // No rules at all: the idle plugin (requests continue untouched).
        Listener::wasm("idle", "{}"),
        Listener::wasm("admin", &deny_paths(json!(["/admin", "/admin/*"]), "BASE")),
        Listener::native_rbac(
            "admin-native",
            &json!({
                "@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC",
                "rules": {"action": "DENY", "policies": {"admin": {
                    "permissions": [{"or_rules": {"rules": [
                        {"url_path": {"path": {"exact": "/admin"}}},
                        {"url_path": {"path": {"prefix": "/admin/"}}}]}}],
                    "principals": [{"any": true}]}}}
            })
            .to_string(),
        ),
        Listener::wasm(
            "admin-strict",
            &deny_paths(json!(["/admin", "/admin/*"]), "DECODE_AND_MERGE_SLASHES"),
        ),
        Listener::wasm("admin-prefix", &deny_paths(json!(["/admin*"]), "BASE")),
        Listener::wasm("only-public", &one_policy("DENY", json!({"to": [{"operation": {"notPaths": ["/public/*"]}}]}))),
        Listener::wasm("no-delete", &one_policy("DENY", json!({"to": [{"operation": {"methods": ["DELETE"]}}]}))),
        Listener::wasm("tenant", &one_policy("DENY", json!({"when": [{"key": "request.headers[x-tenant]", "values": ["blocked"]}]}))),
        Listener::wasm("admin-host", &one_policy("DENY", json!({"to": [{"operation": {"hosts": ["admin.example.com"]}}]}))),
        Listener::wasm(
            "jwt",
            &json!({
                "jwtRules": [{"issuer": VECTORS["issuer"], "jwks": VECTORS["jwks"].to_string(),
                    "outputClaimToHeaders": [{"header": "x-jwt-sub", "claim": "sub"}],
                    "outputPayloadToHeader": "x-jwt-payload"}],
                "policies": [{"action": "ALLOW", "rules": [{"from": [{"source": {"requestPrincipals": ["*"]}}]}]}]
            })
            .to_string(),
        ),
        Listener::wasm(
            "custom",
            &json!({"extensionProviders": [{"name": "p", "envoyExtAuthzHttp": {
                "service": "authz", "port": 8000, "cluster": "authz",
                "includeRequestHeadersInCheck": ["x-ext-authz"],
                "headersToUpstreamOnAllow": ["x-ext-authz-check-result"]}}]})
            .to_string(),
        ),
    ]
}

static FILTER_NORMALIZES: LazyLock<Bed> = LazyLock::new(|| Bed::start_with(&listeners(), false));
static ENVOY_NORMALIZES: LazyLock<Bed> = LazyLock::new(|| Bed::start_with(&listeners(), true));

fn beds() -> [(&'static str, &'static Bed); 2] {
    [
        ("filter normalizes", &FILTER_NORMALIZES),
        ("Envoy normalizes too", &ENVOY_NORMALIZES),
    ]
}

/// One request, written byte for byte, tagged with a marker header; the answer and what the
/// upstream received (if anything).
fn send(
    bed: &Bed,
    listener: &str,
    method: &str,
    target: &[u8],
    headers: &[(&str, &[u8])],
) -> (Response, Option<Request>) {
    let mark = marker(listener);
    let mut raw = Vec::new();
    raw.extend_from_slice(method.as_bytes());
    raw.push(b' ');
    raw.extend_from_slice(target);
    raw.extend_from_slice(b" HTTP/1.1\r\n");
    if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
        raw.extend_from_slice(b"host: localhost\r\n");
    }
    raw.extend_from_slice(b"x-mark: ");
    raw.extend_from_slice(mark.as_bytes());
    raw.extend_from_slice(b"\r\n");
    for (name, value) in headers {
        raw.extend_from_slice(name.as_bytes());
        raw.extend_from_slice(b": ");
        raw.extend_from_slice(value);
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"connection: close\r\n\r\n");
    let response = send_raw(bed.port(listener), &raw, method == "HEAD")
        .unwrap_or_else(|e| panic!("{listener}: {e}\n{}", bed.envoy.log_tail(20)));
    let upstream = bed
        .upstream
        .all()
        .into_iter()
        .find(|r| r.header("x-mark") == Some(mark.as_str()));
    (response, upstream)
}

/// Sends to `listener` on both beds; asserts the same status on both, and that a request got to
/// the upstream exactly when it was let through (2xx).
fn status(listener: &str, method: &str, target: &[u8], headers: &[(&str, &[u8])]) -> u16 {
    let mut seen = Vec::new();
    for (how, bed) in beds() {
        let (response, upstream) = send(bed, listener, method, target, headers);
        let shown = String::from_utf8_lossy(target);
        let shown = if shown.len() > 80 {
            format!("{}… ({} bytes)", &shown[..80], target.len())
        } else {
            shown.to_string()
        };
        assert_eq!(
            upstream.is_some(),
            (200..300).contains(&response.status),
            "{listener} {method} {shown} ({how}): {} but upstream {}",
            response.status,
            if upstream.is_some() {
                "saw it"
            } else {
                "did not"
            }
        );
        seen.push((how, response.status));
    }
    assert_eq!(
        seen[0].1,
        seen[1].1,
        "{listener} {method} {}: {seen:?}",
        String::from_utf8_lossy(target)
    );
    seen[0].1
}

/// Path tricks against `paths` / `notPaths`. Columns: `admin` (DENY `/admin`, `/admin/*`,
/// BASE; native RBAC behind Envoy's normalize_path must agree), `admin-strict` (the same under DECODE_AND_MERGE_SLASHES), `admin-prefix` (DENY
/// `/admin*`), `only-public` (DENY notPaths `/public/*`).
const PATHS: &[(&str, [u16; 4])] = &[
    ("/admin", [403, 403, 403, 403]),
    ("/admin/", [403, 403, 403, 403]),
    ("/admin/users", [403, 403, 403, 403]),
    ("/admin?x=/public/y", [403, 403, 403, 403]),
    ("/./admin", [403, 403, 403, 403]),
    ("/public/../admin", [403, 403, 403, 403]),
    ("/public/../../admin", [403, 403, 403, 403]),
    ("/public/%2e%2e/admin", [403, 403, 403, 403]),
    ("/public/%2E%2E/admin", [403, 403, 403, 403]),
    ("/%61dmin", [403, 403, 403, 403]),
    ("/admin/.", [403, 403, 403, 403]),
    ("/admin/x/..", [403, 403, 403, 403]),
    // Istio paths are case-sensitive: another resource, as for Istio and native RBAC.
    ("/Admin", [200, 200, 200, 403]),
    ("/ADMIN/users", [200, 200, 200, 403]),
    // `//` is kept by BASE, merged by MERGE_SLASHES and DECODE_AND_MERGE_SLASHES.
    ("//admin", [200, 403, 200, 403]),
    // Dot segments are resolved before slashes are merged (as Envoy does): `..` eats the empty
    // segment, and the upstream is sent `/public/admin`, the path that was checked.
    ("/public//../admin", [200, 200, 200, 200]),
    // `%2F` is decoded only by DECODE_AND_MERGE_SLASHES; a prefix rule catches it anyway.
    ("/admin%2Fusers", [200, 403, 403, 403]),
    ("/admin%2fusers", [200, 403, 403, 403]),
    ("/public%2F..%2Fadmin", [200, 403, 200, 403]),
    ("/public/..%2Fadmin", [200, 403, 200, 200]),
    // `;` parameters are part of the path for Istio and Envoy (a Java upstream may strip them).
    ("/admin;x=1", [200, 200, 403, 403]),
    ("/admin;/users", [200, 200, 403, 403]),
    ("/admin/;x", [403, 403, 403, 403]),
    // An escaped NUL is refused with 400 (Envoy's normalize_path does the same); an escaped
    // space is another path; an escaped backslash is a slash only when decoding.
    ("/admin%00", [400, 400, 400, 400]),
    ("/public/%00/../admin", [400, 400, 400, 400]),
    ("/admin%20", [200, 200, 403, 403]),
    ("/public/..%5Cadmin", [200, 403, 200, 200]),
    ("/public/x", [200, 200, 200, 200]),
];

#[test]
fn path_tricks_get_the_documented_answer_with_and_without_envoy_normalization() {
    let mut failures = Vec::new();
    for (path, expected) in PATHS {
        let got: Vec<u16> = ["admin", "admin-strict", "admin-prefix", "only-public"]
            .iter()
            .map(|listener| status(listener, "GET", path.as_bytes(), &[]))
            .collect();
        if got != expected {
            failures.push(format!("{path}: expected {expected:?}, got {got:?}"));
        }
        // Native RBAC as Istio generates it, behind Envoy's normalize_path, answers the same.
        let native = status("admin-native", "GET", path.as_bytes(), &[]);
        if native != expected[0] {
            failures.push(format!(
                "{path}: native RBAC {native}, filter {}",
                expected[0]
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn malformed_and_huge_paths_are_refused_or_normalized_never_passed_unchecked() {
    // A fragment is not sent by browsers; Envoy refuses a path with `#` in it.
    assert_eq!(status("admin", "GET", b"/admin#x", &[]), 400);
    assert_eq!(
        status("only-public", "GET", b"/public/x#/../../admin", &[]),
        400
    );
    // Raw bytes that are not allowed in a path: Envoy's codec refuses them.
    assert_eq!(status("admin", "GET", b"/admin\xff", &[]), 400);
    // Dot segments 8 000 deep resolve to /admin.
    let deep = format!("/{}{}admin", "a/".repeat(4000), "../".repeat(4000));
    assert_eq!(status("admin", "GET", deep.as_bytes(), &[]), 403);
    assert_eq!(status("only-public", "GET", deep.as_bytes(), &[]), 403);
    // Request smuggling: Content-Length and Transfer-Encoding together, refused by Envoy's codec.
    assert_eq!(
        status(
            "admin",
            "POST",
            b"/public/x",
            &[("content-length", b"5"), ("transfer-encoding", b"chunked")]
        ),
        400
    );
    // Past Envoy's 60 KiB header limit (the path counts): refused before any filter.
    let huge = format!("/public/{}", "x".repeat(70 * 1024));
    assert_eq!(status("only-public", "GET", huge.as_bytes(), &[]), 431);
}

#[test]
fn method_case_is_exact_as_in_istio() {
    assert_eq!(status("no-delete", "DELETE", b"/x", &[]), 403);
    assert_eq!(status("no-delete", "GET", b"/x", &[]), 200);
    // Envoy's HTTP/1 codec refuses a method that is not upper case; had it passed, Istio's
    // `methods` (exact, case-sensitive, like RFC 9110 methods) would call it another method.
    assert_eq!(status("no-delete", "delete", b"/x", &[]), 400);
    assert_eq!(status("no-delete", "DeLeTe", b"/x", &[]), 400);
}

#[test]
fn header_tricks_against_when_conditions() {
    for (name, value, expected) in [
        ("x-tenant", &b"blocked"[..], 403),
        ("X-TENANT", b"blocked", 403),
        ("x-tenant", b"Blocked", 200),
        ("x-tenant", b"blocked\xff", 200),
    ] {
        let shown = String::from_utf8_lossy(value);
        assert_eq!(
            status("tenant", "GET", b"/x", &[(name, value)]),
            expected,
            "{name}: {shown}"
        );
    }
    // Two values are matched as Envoy joins them, "ok,blocked": not "blocked" (as native RBAC).
    assert_eq!(
        status(
            "tenant",
            "GET",
            b"/x",
            &[("x-tenant", b"ok"), ("x-tenant", b"blocked")]
        ),
        200
    );
    // A 50 KiB header under Envoy's limit is read like any other; 64 KiB is refused by Envoy.
    let big = vec![b'a'; 50 * 1024];
    assert_eq!(status("tenant", "GET", b"/x", &[("x-big", &big)]), 200);
    let huge = vec![b'a'; 64 * 1024];
    assert_eq!(
        status(
            "tenant",
            "GET",
            b"/x",
            &[("x-tenant", b"blocked"), ("x-big", &huge)]
        ),
        431
    );
}

#[test]
fn host_tricks_against_hosts_rules() {
    let host = |value: &[u8]| status("admin-host", "GET", b"/x", &[("host", value)]);
    for denied in [
        &b"admin.example.com"[..],
        b"ADMIN.Example.COM",
        b"admin.example.com:8080",
        // The root dot of a fully qualified name: the same host (Envoy's routing and most
        // servers agree), so the filter matches it too.
        b"admin.example.com.",
        b"admin.example.com.:8080",
    ] {
        assert_eq!(host(denied), 403, "{}", String::from_utf8_lossy(denied));
    }
    for other in [
        &b"admin.example.com.evil"[..],
        b"xadmin.example.com",
        b"admin.example.co",
    ] {
        assert_eq!(host(other), 200, "{}", String::from_utf8_lossy(other));
    }
    // The authority of an absolute-form target wins over the Host header.
    assert_eq!(
        status(
            "admin-host",
            "GET",
            b"http://admin.example.com/x",
            &[("host", b"other.example.com")]
        ),
        403
    );
    // Two Host headers: Envoy's codec refuses the request.
    assert_eq!(
        status(
            "admin-host",
            "GET",
            b"/x",
            &[
                ("host", b"other.example.com"),
                ("host", b"admin.example.com")
            ]
        ),
        400
    );
}

fn bearer(token: &str) -> Vec<u8> {
    format!("Bearer {token}").into_bytes()
}

/// The token with its signature replaced by three bytes.
fn short(token: &str) -> String {
    let signed = token.rsplit_once('.').map_or(token, |(signed, _)| signed);
    format!("{signed}.c2ln")
}

/// What an attack sends: its name, the request target, the headers.
type Attack = (&'static str, String, Vec<(&'static str, Vec<u8>)>);

#[test]
fn token_attacks_get_401_and_never_reach_the_upstream() {
    let with = |name: &str| vec![("authorization", bearer(&case(name)))];
    let x = || "/x".to_string();
    let attacks: Vec<Attack> = vec![
        ("alg none", x(), with("alg_none")),
        ("alg none, signed", x(), with("alg_none_with_signature")),
        (
            "HS256 keyed with the RSA public key",
            x(),
            with("hs256_with_rsa_public_key"),
        ),
        (
            "HS256 keyed with the RSA modulus",
            x(),
            with("hs256_with_rsa_modulus"),
        ),
        (
            "kid naming a key of another type",
            x(),
            with("es256_naming_the_rsa_key"),
        ),
        (
            "malformed JSON payload",
            x(),
            with("malformed_json_payload"),
        ),
        ("bad signature", x(), with("bad_signature")),
        // Signatures of the wrong length (found by fuzzing: they made jwt-compact panic).
        (
            "HS256 with a 3-byte signature",
            x(),
            vec![("authorization", bearer(&short(&valid("HS256"))))],
        ),
        (
            "EdDSA with a 3-byte signature",
            x(),
            vec![("authorization", bearer(&short(&valid("EdDSA"))))],
        ),
        (
            "invalid UTF-8 token",
            x(),
            vec![("authorization", b"Bearer \xff\xfe.\xfd.\xfc".to_vec())],
        ),
        (
            "two Authorization headers",
            x(),
            vec![
                ("authorization", bearer(&valid("RS256"))),
                ("authorization", bearer(&valid("ES256"))),
            ],
        ),
        (
            "valid header, expired query token",
            format!("/x?access_token={}", case("expired")),
            vec![("authorization", bearer(&valid("RS256")))],
        ),
        ("no token", x(), vec![]),
    ];
    for (what, target, headers) in &attacks {
        let headers: Vec<(&str, &[u8])> = headers.iter().map(|(n, v)| (*n, v.as_slice())).collect();
        assert_eq!(
            status("jwt", "GET", target.as_bytes(), &headers),
            401,
            "{what}"
        );
    }
    let ok = bearer(&valid("EdDSA"));
    assert_eq!(status("jwt", "GET", b"/x", &[("authorization", &ok)]), 200);
    // A 64 KiB token: Envoy's header limit answers first.
    let huge = bearer(&"a".repeat(64 * 1024));
    assert_eq!(
        status("jwt", "GET", b"/x", &[("authorization", &huge)]),
        431
    );
}

#[test]
fn spoofed_identity_and_check_result_headers_never_reach_the_upstream() {
    let ok = bearer(&valid("RS256"));
    for (how, bed) in beds() {
        let spoofed: [(&str, &[u8]); 3] = [
            ("authorization", &ok),
            ("x-jwt-sub", b"admin"),
            ("x-jwt-payload", b"eyJzdWIiOiJhZG1pbiJ9"),
        ];
        let (response, upstream) = send(bed, "jwt", "GET", b"/x", &spoofed);
        assert_eq!(response.status, 200, "{how}");
        let upstream = upstream.unwrap();
        assert_eq!(
            upstream.header_all("x-jwt-sub"),
            vec!["demo@asm.test.io"],
            "{how}"
        );
        assert_eq!(upstream.header_all("x-jwt-payload").len(), 1, "{how}");
        assert_ne!(
            upstream.header("x-jwt-payload"),
            Some("eyJzdWIiOiJhZG1pbiJ9"),
            "{how}"
        );

        // The service denies: a client's "allowed" result header changes nothing.
        let (response, upstream) = send(
            bed,
            "custom",
            "GET",
            b"/x",
            &[
                ("x-ext-authz-check-result", b"allowed"),
                ("x-ext-authz", b"deny"),
            ],
        );
        assert_eq!((response.status, upstream.is_none()), (403, true), "{how}");
        // The service allows: the upstream sees the service's value, once.
        let (response, upstream) = send(
            bed,
            "custom",
            "GET",
            b"/x",
            &[
                ("x-ext-authz-check-result", b"spoofed"),
                ("x-ext-authz", b"allow"),
            ],
        );
        assert_eq!(response.status, 200, "{how}");
        assert_eq!(
            upstream.unwrap().header_all("x-ext-authz-check-result"),
            vec!["allowed"],
            "{how}"
        );
        // A value that is not UTF-8 reaches the service as bytes and is not "allow".
        let (response, upstream) = send(
            bed,
            "custom",
            "GET",
            b"/x",
            &[("x-ext-authz", b"allow\xff")],
        );
        assert_eq!((response.status, upstream.is_none()), (403, true), "{how}");
    }
}

/// Source-address policies: DENY `ipBlocks` / `remoteIpBlocks` 127.0.0.0/8, ALLOW `ipBlocks`
/// 8.8.8.8/32, and native RBAC's `direct_remote_ip` (what Istio generates for `ipBlocks`).
fn address_listeners() -> Vec<Listener> {
    let policy =
        |action: &str, source: Value| one_policy(action, json!({"from": [{"source": source}]}));
    vec![
        Listener::wasm(
            "no-loopback",
            &policy("DENY", json!({"ipBlocks": ["127.0.0.0/8"]})),
        ),
        Listener::wasm(
            "no-loopback-remote",
            &policy("DENY", json!({"remoteIpBlocks": ["127.0.0.0/8"]})),
        ),
        Listener::wasm(
            "only-8888",
            &policy("ALLOW", json!({"ipBlocks": ["8.8.8.8/32"]})),
        ),
        Listener::native_rbac(
            "no-loopback-native",
            &json!({
                "@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC",
                "rules": {"action": "DENY", "policies": {"p": {"permissions": [{"any": true}],
                    "principals": [{"direct_remote_ip": {"address_prefix": "127.0.0.0", "prefix_len": 8}}]}}}
            })
            .to_string(),
        ),
    ]
}

/// Envoy's default, `use_remote_address: false` (also Istio's sidecars): Envoy takes the
/// downstream remote address from the last `X-Forwarded-For` entry.
static XFF_TRUSTED: LazyLock<Bed> = LazyLock::new(|| Bed::start_with(&address_listeners(), false));
/// `use_remote_address: true` (Istio's gateways): the remote address is the peer's.
static PEER_ADDRESS: LazyLock<Bed> = LazyLock::new(|| {
    Bed::start_edited(&address_listeners(), false, |config| {
        let edited = config.replace(
            "          normalize_path:",
            "          use_remote_address: true\n          normalize_path:",
        );
        assert_ne!(edited, config);
        edited
    })
});

#[test]
fn a_spoofed_x_forwarded_for_moves_ip_blocks_only_where_envoy_trusts_it() {
    let xff: [(&str, &[u8]); 1] = [("x-forwarded-for", b"8.8.8.8")];
    let at = |bed: &Bed, listener: &str, headers: &[(&str, &[u8])]| {
        let (response, upstream) = send(bed, listener, "GET", b"/ip", headers);
        assert_eq!(upstream.is_some(), response.status == 200, "{listener}");
        response.status
    };
    // With use_remote_address: true, what the client writes changes nothing.
    for headers in [&[][..], &xff[..]] {
        assert_eq!(at(&PEER_ADDRESS, "no-loopback", headers), 403);
        assert_eq!(at(&PEER_ADDRESS, "no-loopback-remote", headers), 403);
        assert_eq!(at(&PEER_ADDRESS, "only-8888", headers), 403);
        assert_eq!(at(&PEER_ADDRESS, "no-loopback-native", headers), 403);
        assert_eq!(at(&XFF_TRUSTED, "no-loopback-native", headers), 403);
    }
    // With Envoy's default the remote address is the client's last X-Forwarded-For entry, and
    // source.address, the only address a wasm filter can read, is that one: ipBlocks follow it,
    // as remoteIpBlocks (Envoy's remote_ip) do. docs/security.md says to set use_remote_address.
    assert_eq!(at(&XFF_TRUSTED, "no-loopback", &[]), 403);
    assert_eq!(at(&XFF_TRUSTED, "no-loopback", &xff), 200);
    assert_eq!(at(&XFF_TRUSTED, "no-loopback-remote", &xff), 200);
    assert_eq!(at(&XFF_TRUSTED, "only-8888", &xff), 200);
    assert!(
        XFF_TRUSTED
            .envoy
            .wait_for_log("unless this listener has use_remote_address: true"),
        "the filter warns when its policies read ipBlocks"
    );
}

/// The path is normalized only when something reads it (docs/configuration.md, "How a request is
/// handled"): behind a policy on the method alone, the upstream gets the path as the client sent
/// it; behind a path rule, the path that was checked.
#[test]
fn the_path_is_forwarded_as_sent_unless_a_rule_reads_it() {
    let bed = &*FILTER_NORMALIZES;
    let (response, upstream) = send(bed, "idle", "GET", b"/public/../x", &[]);
    assert_eq!(response.status, 200);
    assert_eq!(upstream.unwrap().path(), "/public/../x", "no rules");
    let (response, upstream) = send(bed, "no-delete", "GET", b"/public/../x", &[]);
    assert_eq!(response.status, 200);
    assert_eq!(upstream.unwrap().path(), "/public/../x", "no rule reads it");
    let (response, upstream) = send(bed, "only-public", "GET", b"/public/a/../b", &[]);
    assert_eq!(response.status, 200);
    assert_eq!(upstream.unwrap().path(), "/public/b", "notPaths reads it");
}
