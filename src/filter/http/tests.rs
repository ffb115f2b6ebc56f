use std::rc::Rc;

use super::*;
use crate::host::fake::FakeHost;

const TUTORIAL: &str = r#"{
  "extensionProviders": [{"name": "sample-ext-authz", "envoyExtAuthzHttp": {
      "service": "ext-authz", "port": 8000, "timeout": "10s",
      "includeRequestHeadersInCheck": ["x-ext-authz"],
      "headersToUpstreamOnAllow": ["x-ext-authz-check-result"],
      "headersToDownstreamOnDeny": ["x-ext-authz-check-result"]}}],
  "policies": [{"name": "ext-authz-on-headers", "action": "CUSTOM", "provider": {"name": "sample-ext-authz"},
                "rules": [{"to": [{"operation": {"paths": ["/headers"]}}]}]}]
}"#;

fn shared_for(config: &Config, host: &FakeHost) -> Rc<Shared> {
    let shared = Rc::new(Shared::new(
        config,
        Metrics::define(
            host,
            &config.deny_policy_names(),
            &config
                .providers
                .iter()
                .map(|p| p.name.as_str())
                .collect::<Vec<_>>(),
        ),
        host.foreign.is_some(),
    ));
    // The counts stay in the VM until the tick: a test reading one flushes them first (the
    // plugin outlives its requests: so does this).
    let kept = Rc::clone(&shared);
    host.before_metric_read
        .borrow_mut()
        .push(Box::new(move |host: &FakeHost| kept.metrics.flush(host)));
    shared
}

fn request_with(config: &str, host: &FakeHost) -> AuthzRequest {
    let config = Config::parse(config.as_bytes()).unwrap();
    let shared = shared_for(&config, host);
    AuthzRequest::new(Rc::new(config), shared, 7)
}

/// Delivers the answer the fake host was told to give.
fn answer(request: &mut AuthzRequest, host: &FakeHost, token: u32) {
    let response = host.call_answer.borrow().clone();
    request.on_call_response(host, token, Ok(CallAnswer::Http(Some(response))));
}

fn provider_with(options: &str) -> String {
    format!(
        r#"{{"extensionProviders": [{{"name": "p", "envoyExtAuthzHttp": {{"service": "authz", "port": 8000 {options}}}}}]}}"#
    )
}

#[test]
fn unprotected_path_continues_without_a_callout() {
    let host = FakeHost::new().with_request("GET", "/ip", "httpbin");
    let mut request = request_with(TUTORIAL, &host);
    assert_eq!(request.on_request_headers(&host, true), Action::Continue);
    assert!(host.dispatched.borrow().is_empty());
    assert!(host.replies.borrow().is_empty());
}

#[test]
fn protected_path_pauses_and_sends_the_check_request() {
    let host = FakeHost::new()
        .with_request("GET", "/headers?x=1", "httpbin.default:8000")
        .with_request_header("x-ext-authz", "deny")
        .with_request_header("cookie", "session=1");
    let mut request = request_with(TUTORIAL, &host);
    assert_eq!(request.on_request_headers(&host, true), Action::Pause);
    let sent = host.last_dispatch().unwrap();
    assert_eq!(sent.cluster, "outbound|8000||ext-authz");
    assert_eq!(sent.timeout, std::time::Duration::from_secs(10));
    assert_eq!(sent.header(":path"), Some("/headers?x=1"));
    assert_eq!(sent.header(":method"), Some("GET"));
    assert_eq!(sent.header(":authority"), Some("httpbin.default:8000"));
    assert_eq!(sent.header("x-ext-authz"), Some("deny"));
    assert_eq!(sent.header("cookie"), None);
}

#[test]
fn service_denial_is_returned_with_its_status_body_and_listed_headers() {
    let host = FakeHost::new()
        .with_request("GET", "/headers", "httpbin")
        .with_request_header("x-ext-authz", "deny");
    let mut request = request_with(TUTORIAL, &host);
    request.on_request_headers(&host, true);
    host.answering(
        403,
        &[
            ("x-ext-authz-check-result", "denied"),
            ("x-ext-authz-additional-header-override", ""),
        ],
        "denied by ext_authz for not found header `x-ext-authz: allow` in the request",
    );
    answer(&mut request, &host, 101);
    let reply = host.last_reply().unwrap();
    assert_eq!(reply.status, 403);
    assert_eq!(
        reply.headers,
        vec![("x-ext-authz-check-result".to_string(), "denied".to_string())]
    );
    assert!(reply.body.starts_with("denied by ext_authz"));
    assert_eq!(host.resumed.get(), 0);
    assert_eq!(host.metric("inline_authz.ext_authz.denied"), 1);
}

#[test]
fn service_allow_overwrites_upstream_headers_and_resumes() {
    let host = FakeHost::new()
        .with_request("GET", "/headers", "httpbin")
        .with_request_header("x-ext-authz", "allow")
        .with_request_header("x-ext-authz-check-result", "spoofed");
    let mut request = request_with(TUTORIAL, &host);
    request.on_request_headers(&host, true);
    host.answering(
        200,
        &[
            ("x-ext-authz-check-result", "allowed"),
            ("x-not-listed", "1"),
        ],
        "",
    );
    answer(&mut request, &host, 101);
    assert_eq!(host.resumed.get(), 1);
    assert!(host.replies.borrow().is_empty());
    assert_eq!(
        host.request_header("x-ext-authz-check-result").as_deref(),
        Some("allowed")
    );
    assert_eq!(host.request_header("x-not-listed"), None);
    assert_eq!(host.metric("inline_authz.ext_authz.ok"), 1);
}

#[test]
fn answer_with_another_token_is_ignored() {
    let host = FakeHost::new().with_request("GET", "/headers", "h");
    let mut request = request_with(TUTORIAL, &host);
    request.on_request_headers(&host, true);
    host.answering(200, &[], "");
    answer(&mut request, &host, 999);
    assert_eq!(host.resumed.get(), 0);
    assert!(host.replies.borrow().is_empty());
}

#[test]
fn errors_fail_closed_with_status_on_error_and_an_empty_body() {
    for (status, config) in [
        (403, provider_with("")),
        (503, provider_with(r#", "statusOnError": "503""#)),
    ] {
        let host = FakeHost::new().with_request("GET", "/", "h");
        let mut request = request_with(&config, &host);
        request.on_request_headers(&host, true);
        host.answering(500, &[("x-a", "1")], "boom");
        answer(&mut request, &host, 101);
        let reply = host.last_reply().unwrap();
        assert_eq!(
            (reply.status, reply.body.as_str(), reply.headers.len()),
            (status, "", 0)
        );
        assert_eq!(host.metric("inline_authz.ext_authz.error"), 1);
    }
}

#[test]
fn timeouts_and_failed_dispatches_follow_fail_open() {
    let config = provider_with(r#", "failOpen": true"#);
    let host = FakeHost::new().with_request("GET", "/", "h");
    let mut request = request_with(&config, &host);
    request.on_request_headers(&host, true);
    request.on_call_response(&host, 101, Ok(CallAnswer::Http(None)));
    assert_eq!(host.resumed.get(), 1);
    assert_eq!(
        host.metric("inline_authz.ext_authz.failure_mode_allowed"),
        1
    );

    let host = FakeHost::new()
        .with_request("GET", "/", "h")
        .with_dispatch_error("BadArgument");
    let mut request = request_with(&config, &host);
    assert_eq!(request.on_request_headers(&host, true), Action::Continue);

    let host = FakeHost::new()
        .with_request("GET", "/", "h")
        .with_dispatch_error("BadArgument");
    let mut request = request_with(&provider_with(""), &host);
    assert_eq!(request.on_request_headers(&host, true), Action::Pause);
    assert_eq!(host.last_reply().unwrap().status, 403);
}

#[test]
fn body_is_buffered_and_sent_with_the_partial_flag() {
    let config = provider_with(
        r#", "includeRequestBodyInCheck": {"maxRequestBytes": 4, "allowPartialMessage": true}"#,
    );
    let host = FakeHost::new()
        .with_request("POST", "/upload", "h")
        .with_body(b"hello world");
    let mut request = request_with(&config, &host);
    assert_eq!(request.on_request_headers(&host, false), Action::Pause);
    assert!(host.dispatched.borrow().is_empty());
    assert_eq!(request.on_request_body(&host, 2, false), Action::Pause);
    assert!(
        host.dispatched.borrow().is_empty(),
        "waits for max bytes or end of stream"
    );
    assert_eq!(request.on_request_body(&host, 11, false), Action::Pause);
    let sent = host.last_dispatch().unwrap();
    assert_eq!(sent.body.as_deref(), Some(&b"hell"[..]));
    assert_eq!(sent.header("x-envoy-auth-partial-body"), Some("true"));
    assert_eq!(sent.header("content-length"), Some("4"));
}

#[test]
fn upgrade_requests_are_checked_at_once_without_waiting_for_a_body() {
    let config = provider_with(
        r#", "includeRequestBodyInCheck": {"maxRequestBytes": 4, "allowPartialMessage": false}"#,
    );
    let websocket = FakeHost::new()
        .with_request("GET", "/chat", "h")
        .with_request_header("connection", "keep-alive, Upgrade")
        .with_request_header("upgrade", "WebSocket");
    let extended_connect = FakeHost::new()
        .with_request("CONNECT", "/chat", "h")
        .with_request_header(":protocol", "websocket");
    for host in [websocket, extended_connect] {
        let mut request = request_with(&config, &host);
        assert_eq!(request.on_request_headers(&host, false), Action::Pause);
        let sent = host.last_dispatch().expect("checked before any body");
        assert_eq!(sent.body, None);
        assert_eq!(sent.header("x-envoy-auth-partial-body"), None);
        assert!(!request.waiting_for_body());
        host.answering(200, &[], "");
        answer(&mut request, &host, sent.token);
        assert_eq!(host.resumed.get(), 1, "the upgrade goes on");
        assert_eq!(
            request.on_request_body(&host, 100, false),
            Action::Continue,
            "frames after the upgrade pass"
        );
    }
    // Other requests still wait, whatever their `upgrade` header says without `connection`.
    let plain = FakeHost::new()
        .with_request("POST", "/chat", "h")
        .with_request_header("upgrade", "websocket");
    let mut request = request_with(&config, &plain);
    assert_eq!(request.on_request_headers(&plain, false), Action::Pause);
    assert!(plain.dispatched.borrow().is_empty() && request.waiting_for_body());
}

#[test]
fn oversized_body_gets_413_even_when_fail_open() {
    let config = provider_with(
        r#", "failOpen": true, "includeRequestBodyInCheck": {"maxRequestBytes": 4, "allowPartialMessage": false}"#,
    );
    let host = FakeHost::new()
        .with_request("POST", "/upload", "h")
        .with_body(b"hello world");
    let mut request = request_with(&config, &host);
    assert_eq!(request.on_request_headers(&host, false), Action::Pause);
    assert_eq!(request.on_request_body(&host, 11, true), Action::Pause);
    let reply = host.last_reply().unwrap();
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (413, "Payload Too Large")
    );

    let host = FakeHost::new()
        .with_request("POST", "/upload", "h")
        .with_request_header("content-length", "11");
    let mut request = request_with(&config, &host);
    assert_eq!(request.on_request_headers(&host, false), Action::Pause);
    assert_eq!(
        host.last_reply().unwrap().status,
        413,
        "declared length is enough"
    );

    let host = FakeHost::new()
        .with_request("POST", "/upload", "h")
        .with_body(b"hello world");
    let mut request = request_with(&config, &host);
    assert_eq!(request.on_request_headers(&host, false), Action::Pause);
    assert_eq!(request.on_request_body(&host, 11, false), Action::Pause);
    assert_eq!(
        host.last_reply().unwrap().status,
        413,
        "over the limit before the end of the stream"
    );
    assert!(host.dispatched.borrow().is_empty());
}

#[test]
fn deny_policy_replies_rbac_access_denied() {
    let config = r#"{"policies": [{"name": "no-admin", "action": "DENY", "rules": [{"to": [{"operation": {"paths": ["/admin/*"]}}]}]}]}"#;
    let host = FakeHost::new().with_request("GET", "/public/../admin/x", "h");
    let mut request = request_with(config, &host);
    assert_eq!(request.on_request_headers(&host, true), Action::Pause);
    let reply = host.last_reply().unwrap();
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (403, "RBAC: access denied")
    );
    assert_eq!(host.metric("inline_authz.rbac.denied"), 1);
}

#[test]
fn allow_policies_let_matching_requests_through_only() {
    let config = r#"{"policies": [{"action": "ALLOW", "rules": [{"to": [{"operation": {"methods": ["GET"]}}]}]}]}"#;
    let host = FakeHost::new().with_request("GET", "/x", "h");
    assert_eq!(
        request_with(config, &host).on_request_headers(&host, true),
        Action::Continue
    );
    let host = FakeHost::new().with_request("POST", "/x", "h");
    assert_eq!(
        request_with(config, &host).on_request_headers(&host, true),
        Action::Pause
    );
    assert_eq!(host.last_reply().unwrap().status, 403);
}

#[test]
fn custom_allow_is_still_subject_to_deny_policies() {
    let config = r#"{
      "extensionProviders": [{"name": "p", "envoyExtAuthzHttp": {"service": "authz", "port": 8000,
                              "headersToUpstreamOnAllow": ["x-role"]}}],
      "policies": [
        {"action": "CUSTOM", "provider": {"name": "p"}, "rules": [{}]},
        {"action": "DENY", "rules": [{"when": [{"key": "request.headers[x-role]", "values": ["guest"]}]}]}]}"#;
    let host = FakeHost::new().with_request("GET", "/x", "h");
    let mut request = request_with(config, &host);
    request.on_request_headers(&host, true);
    host.answering(200, &[("x-role", "guest")], "");
    answer(&mut request, &host, 101);
    assert_eq!(
        host.last_reply().unwrap().status,
        403,
        "DENY sees the header the service set"
    );
    assert_eq!(host.resumed.get(), 0);
}

#[test]
fn path_is_normalized_before_matching_and_forwarded_normalized() {
    for raw in ["/headers/../headers", "/%68eaders", "/./headers?x=1"] {
        let host = FakeHost::new().with_request("GET", raw, "h");
        let mut request = request_with(TUTORIAL, &host);
        assert_eq!(
            request.on_request_headers(&host, true),
            Action::Pause,
            "{raw} must be checked"
        );
        let forwarded = host.request_header(":path").unwrap();
        assert!(
            forwarded == "/headers" || forwarded == "/headers?x=1",
            "{raw} -> {forwarded}"
        );
        assert_eq!(
            host.last_dispatch().unwrap().header(":path"),
            Some(forwarded.as_str())
        );
    }
    for raw in ["/Headers", "//headers", "/headers/"] {
        let host = FakeHost::new().with_request("GET", raw, "h");
        let mut request = request_with(TUTORIAL, &host);
        assert_eq!(
            request.on_request_headers(&host, true),
            Action::Continue,
            "{raw} is another path"
        );
    }
}

#[test]
fn downstream_on_allow_headers_are_added_to_the_response() {
    let config = provider_with(r#", "headersToDownstreamOnAllow": ["set-cookie"]"#);
    let host = FakeHost::new().with_request("GET", "/", "h");
    let mut request = request_with(&config, &host);
    request.on_request_headers(&host, true);
    host.answering(200, &[("set-cookie", "a=1"), ("x-other", "2")], "");
    answer(&mut request, &host, 101);
    assert_eq!(request.on_response_headers(&host), Action::Continue);
    assert_eq!(
        *host.response_headers.borrow(),
        vec![("set-cookie".to_string(), "a=1".to_string())]
    );
}

#[test]
fn ip_blocks_read_the_source_address_property() {
    let config = r#"{"policies": [{"action": "DENY", "rules": [{"from": [{"source": {"ipBlocks": ["10.0.0.0/8"]}}]}]}]}"#;
    let host = FakeHost::new()
        .with_request("GET", "/", "h")
        .with_property(&["source", "address"], b"10.1.2.3:5555");
    assert_eq!(
        request_with(config, &host).on_request_headers(&host, true),
        Action::Pause
    );
    let host = FakeHost::new()
        .with_request("GET", "/", "h")
        .with_property(&["source", "address"], b"127.0.0.1:5555");
    assert_eq!(
        request_with(config, &host).on_request_headers(&host, true),
        Action::Continue
    );
}

#[test]
fn peer_identity_is_the_uri_san_the_dns_san_or_the_subject_as_in_envoy_rbac() {
    let allow = |source: &str| {
        format!(r#"{{"policies": [{{"rules": [{{"from": [{{"source": {source}}}]}}]}}]}}"#)
    };
    let any = allow(r#"{"principals": ["*"]}"#);
    let exact = allow(r#"{"principals": ["cluster.local/ns/foo/sa/bar"]}"#);
    let namespace = allow(r#"{"namespaces": ["foo"]}"#);
    let spiffe = b"spiffe://cluster.local/ns/foo/sa/bar";
    let subject = b"CN=spiffe://cluster.local/ns/foo/sa/bar";
    let cases: [(&str, &str, &[u8], Action); 8] = [
        (&any, "uri_san_peer_certificate", spiffe, Action::Continue),
        (
            &any,
            "dns_san_peer_certificate",
            b"client.example",
            Action::Continue,
        ),
        (
            &any,
            "subject_peer_certificate",
            b"CN=legacy",
            Action::Continue,
        ),
        (&any, "subject_peer_certificate", b"", Action::Pause),
        (&exact, "uri_san_peer_certificate", spiffe, Action::Continue),
        (
            &exact,
            "dns_san_peer_certificate",
            b"cluster.local/ns/foo/sa/bar",
            Action::Pause,
        ),
        (&exact, "subject_peer_certificate", subject, Action::Pause),
        (
            &namespace,
            "subject_peer_certificate",
            subject,
            Action::Continue,
        ),
    ];
    for (config, property, value, want) in cases {
        let host = FakeHost::new()
            .with_request("GET", "/", "h")
            .with_property(&["connection", property], value);
        assert_eq!(
            request_with(config, &host).on_request_headers(&host, true),
            want,
            "{config} with {property} = {:?}",
            String::from_utf8_lossy(value)
        );
    }
}

#[test]
fn destination_port_property_is_little_endian() {
    assert_eq!(parse_port(&8080u64.to_le_bytes()), Some(8080));
    assert_eq!(parse_port(b"short"), None);
    assert_eq!(parse_ip(b"[::1]:80"), Some("::1".parse().unwrap()));
    assert_eq!(parse_ip(b"127.0.0.1"), Some("127.0.0.1".parse().unwrap()));
}

#[test]
fn when_the_host_never_delivers_bodies_requests_fail_closed_at_once() {
    let config = provider_with(r#", "includeRequestBodyInCheck": {"maxRequestBytes": 4}"#);
    let host = FakeHost::new().with_request("POST", "/upload", "h");
    let parsed = Rc::new(Config::parse(config.as_bytes()).unwrap());
    let shared = shared_for(&parsed, &host);
    let mut first = AuthzRequest::new(Rc::clone(&parsed), Rc::clone(&shared), 1);
    assert_eq!(first.on_request_headers(&host, false), Action::Pause);
    let late = shared
        .body_watch
        .expired(host.clock.get() + crate::filter::body_watch::LIMIT);
    assert_eq!(late, vec![1], "the root context fails this one");
    let mut second = AuthzRequest::new(parsed, shared, 2);
    assert_eq!(second.on_request_headers(&host, false), Action::Pause);
    assert_eq!(host.last_reply().unwrap().status, 500);
    assert!(host.dispatched.borrow().is_empty());
}

fn vectors() -> serde_json::Value {
    serde_json::from_str(include_str!("../../../tests/fixtures/jwt/vectors.json")).unwrap()
}

fn jwt_config(policies: &str, jwks_field: &str) -> String {
    let v = vectors();
    format!(
        r#"{{"jwtRules": [{{"issuer": {}, "audiences": ["bookstore"], {jwks_field}}}], "policies": {policies}}}"#,
        v["issuer"]
    )
}

fn inline_jwks() -> String {
    format!(
        r#""jwks": {}"#,
        serde_json::Value::String(vectors()["jwks"].to_string())
    )
}

#[test]
fn invalid_token_gets_401_with_www_authenticate() {
    let host = FakeHost::new()
        .with_request("GET", "/headers?x=1", "gateway.example")
        .with_request_header("authorization", "Bearer invalidToken");
    let mut request = request_with(&jwt_config("[]", &inline_jwks()), &host);
    assert_eq!(request.on_request_headers(&host, true), Action::Pause);
    let reply = host.last_reply().unwrap();
    assert_eq!(reply.status, 401);
    assert_eq!(
        reply.headers,
        vec![(
            "www-authenticate".to_string(),
            "Bearer realm=\"http://gateway.example/headers?x=1\", error=\"invalid_token\""
                .to_string()
        )]
    );
    assert_eq!(
        reply.body,
        "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections"
    );
    assert_eq!(host.metric("inline_authz.jwt_authn.denied"), 1);
}

#[test]
fn valid_token_for_another_audience_gets_403() {
    let token = vectors()["cases"]["wrong_audience"]
        .as_str()
        .unwrap()
        .to_string();
    let host = FakeHost::new()
        .with_request("GET", "/", "h")
        .with_request_header("authorization", &format!("Bearer {token}"));
    let mut request = request_with(&jwt_config("[]", &inline_jwks()), &host);
    request.on_request_headers(&host, true);
    let reply = host.last_reply().unwrap();
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (403, "Audiences in Jwt are not allowed")
    );
}

#[test]
fn tokenless_request_passes_when_no_policy_requires_one_and_gets_401_when_one_does() {
    let host = FakeHost::new().with_request("GET", "/", "h");
    assert_eq!(
        request_with(&jwt_config("[]", &inline_jwks()), &host).on_request_headers(&host, true),
        Action::Continue
    );
    let require =
        r#"[{"action": "ALLOW", "rules": [{"from": [{"source": {"requestPrincipals": ["*"]}}]}]}]"#;
    let host = FakeHost::new().with_request("GET", "/", "h");
    assert_eq!(
        request_with(&jwt_config(require, &inline_jwks()), &host).on_request_headers(&host, true),
        Action::Pause
    );
    let reply = host.last_reply().unwrap();
    assert_eq!((reply.status, reply.body.as_str()), (401, "Jwt is missing"));
    assert_eq!(reply.headers[0].1, "Bearer realm=\"http://h/\"");
}

#[test]
fn verified_token_is_removed_and_the_principal_reaches_policies() {
    let token = vectors()["valid"]["RS256"].as_str().unwrap().to_string();
    let policy = r#"[{"action": "ALLOW", "rules": [{"from": [{"source": {"requestPrincipals": ["testing@asm.test.io/demo@asm.test.io"]}}]}]}]"#;
    let host = FakeHost::new()
        .with_request("GET", "/", "h")
        .with_request_header("authorization", &format!("Bearer {token}"));
    let mut request = request_with(&jwt_config(policy, &inline_jwks()), &host);
    assert_eq!(request.on_request_headers(&host, true), Action::Continue);
    assert_eq!(host.request_header("authorization"), None);
    assert_eq!(host.metric("inline_authz.jwt_authn.allowed"), 1);
}

#[test]
fn a_request_waits_for_remote_keys_and_resumes_when_they_arrive() {
    let config = jwt_config(
        "[]",
        r#""jwksUri": "http://keys.example/jwks", "jwksCluster": "keys""#,
    );
    let token = vectors()["valid"]["ES384"].as_str().unwrap().to_string();
    let host = FakeHost::new()
        .with_request("GET", "/", "h")
        .with_request_header("authorization", &format!("Bearer {token}"));
    let parsed = Rc::new(Config::parse(config.as_bytes()).unwrap());
    let shared = shared_for(&parsed, &host);
    let mut request = AuthzRequest::new(Rc::clone(&parsed), Rc::clone(&shared), 3);
    assert_eq!(request.on_request_headers(&host, true), Action::Pause);
    assert_eq!(request.waiting_for_keys(), Some(0));
    assert!(host.replies.borrow().is_empty());
    shared.keys.started(0, 9, crate::filter::keys::Fetch::Keys);
    let jwks = crate::jwt::jwks::Jwks::parse(&vectors()["jwks"].to_string()).unwrap();
    shared.keys.fetched(0, host.clock.get(), Ok(jwks));
    request.on_keys_ready(&host);
    assert_eq!(host.resumed.get(), 1);
    assert!(host.replies.borrow().is_empty());

    // The same wait, but the fetch fails and there never were keys: Envoy's fetch failure.
    let host = FakeHost::new()
        .with_request("GET", "/", "h")
        .with_request_header("authorization", &format!("Bearer {token}"));
    let shared = shared_for(&parsed, &host);
    let mut request = AuthzRequest::new(parsed, Rc::clone(&shared), 4);
    request.on_request_headers(&host, true);
    shared.keys.started(0, 10, crate::filter::keys::Fetch::Keys);
    shared
        .keys
        .fetched(0, host.clock.get(), Err("refused".into()));
    request.on_keys_ready(&host);
    let reply = host.last_reply().unwrap();
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (401, "Jwks remote fetch is failed")
    );
    assert_eq!(host.resumed.get(), 0);
}

#[test]
fn claim_headers_are_forwarded_to_the_authorization_service() {
    let v = vectors();
    let token = v["valid"]["HS256"].as_str().unwrap().to_string();
    let config = format!(
        r#"{{"jwtRules": [{{"issuer": {}, {}, "outputClaimToHeaders": [{{"header": "x-jwt-sub", "claim": "sub"}}]}}],
            "extensionProviders": [{{"name": "p", "envoyExtAuthzHttp": {{"service": "authz", "port": 80, "includeRequestHeadersInCheck": ["x-jwt-sub"]}}}}]}}"#,
        v["issuer"],
        inline_jwks()
    );
    let host = FakeHost::new()
        .with_request("GET", "/", "h")
        .with_request_header("authorization", &format!("Bearer {token}"))
        .with_request_header("x-jwt-sub", "spoofed");
    let mut request = request_with(&config, &host);
    assert_eq!(request.on_request_headers(&host, true), Action::Pause);
    assert_eq!(
        host.last_dispatch().unwrap().header("x-jwt-sub"),
        Some("demo@asm.test.io"),
        "one pass from JWT to the callout"
    );
}

#[test]
fn dry_run_deny_is_counted_never_enforced() {
    let config = r#"{"policies": [{"name": "no-admin", "action": "DENY", "dryRun": true,
        "rules": [{"to": [{"operation": {"paths": ["/admin"]}}]}]}]}"#;
    let host = FakeHost::new().with_request("GET", "/admin", "h");
    assert_eq!(
        request_with(config, &host).on_request_headers(&host, true),
        Action::Continue
    );
    assert!(host.replies.borrow().is_empty());
    assert_eq!(host.metric("inline_authz.rbac.shadow_denied"), 1);
    assert_eq!(host.metric("inline_authz.policy.no-admin.shadow_denied"), 1);
}

#[test]
fn dry_run_allow_counts_requests_no_allow_policy_would_accept() {
    let config = r#"{"policies": [{"action": "ALLOW", "dryRun": true, "rules": [{"to": [{"operation": {"methods": ["GET"]}}]}]}]}"#;
    let host = FakeHost::new().with_request("POST", "/", "h");
    assert_eq!(
        request_with(config, &host).on_request_headers(&host, true),
        Action::Continue
    );
    assert_eq!(host.metric("inline_authz.rbac.shadow_denied"), 1);
    let host = FakeHost::new().with_request("GET", "/", "h");
    request_with(config, &host).on_request_headers(&host, true);
    assert_eq!(host.metric("inline_authz.rbac.shadow_allowed"), 1);
}

#[test]
fn dry_run_custom_calls_the_service_but_never_enforces_its_answer() {
    let config = r#"{"extensionProviders": [{"name": "p", "envoyExtAuthzHttp": {"service": "authz", "port": 80,
        "headersToUpstreamOnAllow": ["x-user"]}}],
        "policies": [{"action": "CUSTOM", "dryRun": true, "provider": {"name": "p"}, "rules": [{}]}]}"#;
    let host = FakeHost::new().with_request("GET", "/", "h");
    let mut request = request_with(config, &host);
    assert_eq!(
        request.on_request_headers(&host, true),
        Action::Pause,
        "the service is still asked"
    );
    host.answering(403, &[], "no");
    answer(&mut request, &host, 101);
    assert_eq!(host.resumed.get(), 1);
    assert!(host.replies.borrow().is_empty());
    assert_eq!(host.metric("inline_authz.ext_authz.shadow_denied"), 1);

    let host = FakeHost::new().with_request("GET", "/", "h");
    let mut request = request_with(config, &host);
    request.on_request_headers(&host, true);
    host.answering(200, &[("x-user", "alice")], "");
    answer(&mut request, &host, 101);
    assert_eq!(
        host.request_header("x-user"),
        None,
        "a dry run changes nothing"
    );
    assert_eq!(host.metric("inline_authz.ext_authz.shadow_allowed"), 1);
}

#[test]
fn denial_reason_header_is_opt_in_and_names_the_policy_or_reason() {
    let deny = r#"{"exposeDenialReason": true, "policies": [{"name": "no-admin", "action": "DENY",
        "rules": [{"to": [{"operation": {"paths": ["/admin"]}}]}]}]}"#;
    let host = FakeHost::new().with_request("GET", "/admin", "h");
    request_with(deny, &host).on_request_headers(&host, true);
    let reply = host.last_reply().unwrap();
    assert!(reply.headers.contains(&(
        "x-inline-authz-denied-by".to_string(),
        "policy:no-admin".to_string()
    )));
    assert_eq!(host.metric("inline_authz.denied_by.policy"), 1);
    assert_eq!(host.metric("inline_authz.policy.no-admin.denied"), 1);

    let jwt = jwt_config("[]", &inline_jwks()).replacen('{', r#"{"exposeDenialReason": true, "#, 1);
    let host = FakeHost::new()
        .with_request("GET", "/", "h")
        .with_request_header("authorization", "Bearer invalidToken");
    request_with(&jwt, &host).on_request_headers(&host, true);
    let reply = host.last_reply().unwrap();
    assert!(
        reply.headers.contains(&(
            "x-inline-authz-denied-by".to_string(),
            "jwt_authn:jwt_bad_format".to_string()
        )),
        "{:?}",
        reply.headers
    );
    assert_eq!(host.metric("inline_authz.denied_by.jwt_authn"), 1);

    let host = FakeHost::new().with_request("GET", "/admin", "h");
    request_with(&deny.replace(r#""exposeDenialReason": true, "#, ""), &host)
        .on_request_headers(&host, true);
    assert!(
        host.last_reply().unwrap().headers.is_empty(),
        "off unless asked"
    );
}

#[test]
fn a_cacheable_answer_is_reused_for_an_identical_check_request() {
    let config = provider_with("");
    let parsed = Rc::new(Config::parse(config.as_bytes()).unwrap());
    let host = FakeHost::new()
        .with_request("GET", "/same", "h")
        .with_request_header("authorization", "Bearer a");
    let shared = shared_for(&parsed, &host);
    let mut first = AuthzRequest::new(Rc::clone(&parsed), Rc::clone(&shared), 1);
    assert_eq!(first.on_request_headers(&host, true), Action::Pause);
    host.answering(200, &[("cache-control", "max-age=60")], "");
    answer(&mut first, &host, 101);
    let mut second = AuthzRequest::new(Rc::clone(&parsed), Rc::clone(&shared), 2);
    assert_eq!(
        second.on_request_headers(&host, true),
        Action::Continue,
        "answered from the cache"
    );
    assert_eq!(host.dispatched.borrow().len(), 1);
    assert_eq!(host.metric("inline_authz.ext_authz.cache_hit"), 1);
    // Another Authorization header is another question.
    let other = FakeHost::new()
        .with_request("GET", "/same", "h")
        .with_request_header("authorization", "Bearer b");
    let mut third = AuthzRequest::new(Rc::clone(&parsed), Rc::clone(&shared), 3);
    assert_eq!(third.on_request_headers(&other, true), Action::Pause);
    assert_eq!(other.dispatched.borrow().len(), 1);
}

#[test]
fn an_answer_without_cache_control_is_never_reused() {
    let parsed = Rc::new(Config::parse(provider_with("").as_bytes()).unwrap());
    let host = FakeHost::new().with_request("GET", "/x", "h");
    let shared = shared_for(&parsed, &host);
    let mut first = AuthzRequest::new(Rc::clone(&parsed), Rc::clone(&shared), 1);
    first.on_request_headers(&host, true);
    host.answering(200, &[], "");
    answer(&mut first, &host, 101);
    let mut second = AuthzRequest::new(Rc::clone(&parsed), Rc::clone(&shared), 2);
    assert_eq!(second.on_request_headers(&host, true), Action::Pause);
    assert_eq!(host.dispatched.borrow().len(), 2);
}

#[test]
fn with_decision_cache_size_0_a_cacheable_answer_is_not_reused() {
    let config = provider_with("").replacen('{', r#"{"decisionCacheSize": 0, "#, 1);
    let parsed = Rc::new(Config::parse(config.as_bytes()).unwrap());
    assert_eq!(parsed.decision_cache_size, 0);
    let host = FakeHost::new().with_request("GET", "/same", "h");
    let shared = shared_for(&parsed, &host);
    let mut first = AuthzRequest::new(Rc::clone(&parsed), Rc::clone(&shared), 1);
    first.on_request_headers(&host, true);
    host.answering(200, &[("cache-control", "max-age=60")], "");
    answer(&mut first, &host, 101);
    let mut second = AuthzRequest::new(Rc::clone(&parsed), Rc::clone(&shared), 2);
    assert_eq!(second.on_request_headers(&host, true), Action::Pause);
    assert_eq!(host.dispatched.borrow().len(), 2);
    assert_eq!(host.metric("inline_authz.ext_authz.cache_hit"), 0);
}

#[test]
fn rs_and_es_signatures_go_to_the_host_when_it_offers_verify_signature() {
    fn host_says_yes(name: &str, _: &[u8]) -> Result<Vec<u8>, crate::host::ForeignError> {
        assert_eq!(name, "verify_signature");
        Ok(vec![0x08, 0x01])
    }
    let v = vectors();
    for (alg, host_used) in [
        ("RS256", true),
        ("ES384", true),
        ("ES512", true),
        ("PS256", false),
        ("EdDSA", false),
        ("HS256", false),
    ] {
        let token = v["valid"][alg].as_str().unwrap().to_string();
        let mut host = FakeHost::new()
            .with_request("GET", "/", "h")
            .with_request_header("authorization", &format!("Bearer {token}"));
        host.foreign = Some(host_says_yes);
        let mut request = request_with(&jwt_config("[]", &inline_jwks()), &host);
        assert_eq!(
            request.on_request_headers(&host, true),
            Action::Continue,
            "{alg}"
        );
        let host_called = host.hostcalls.borrow().contains(&"call_foreign");
        assert_eq!(host_called, host_used, "{alg}");
    }
    // A host that says no is believed: the token is refused.
    fn host_says_no(_: &str, _: &[u8]) -> Result<Vec<u8>, crate::host::ForeignError> {
        Ok(vec![0x08, 0x00])
    }
    let token = v["valid"]["RS256"].as_str().unwrap().to_string();
    let mut host = FakeHost::new()
        .with_request("GET", "/", "h")
        .with_request_header("authorization", &format!("Bearer {token}"));
    host.foreign = Some(host_says_no);
    request_with(&jwt_config("[]", &inline_jwks()), &host).on_request_headers(&host, true);
    assert_eq!(host.last_reply().unwrap().status, 401);
}

#[test]
fn the_probe_tells_a_host_with_verify_signature_from_one_without() {
    let mut host = FakeHost::new();
    assert!(!crate::filter::crypto::host_offers_verify_signature(&host));
    fn answers(_: &str, _: &[u8]) -> Result<Vec<u8>, crate::host::ForeignError> {
        Ok(vec![0x08, 0x00])
    }
    host.foreign = Some(answers);
    assert!(crate::filter::crypto::host_offers_verify_signature(&host));
}

/// Requests per callgrind workload: `WORKLOAD_N`, default 1000.
fn workload_n() -> u32 {
    std::env::var("WORKLOAD_N")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1000)
}

/// A GET as the benchmark's wrk sends it.
fn wrk_request(path: &str) -> FakeHost {
    FakeHost::new()
        .with_request("GET", path, "gateway.example")
        .with_request_header("user-agent", "wrk")
        .with_request_header("accept", "*/*")
        .with_request_header("x-request-id", "3f1c5c1e-9a3b-4a59-9f1e-5b0c3a8e7d21")
}

/// Not a check: a workload for `valgrind --tool=callgrind` to count the instructions of the
/// cached-token path per request (run with `--ignored`).
#[test]
#[ignore]
fn workload_cached_token_requests() {
    let v = vectors();
    let token = v["valid"]["RS256"].as_str().unwrap().to_string();
    let parsed = Rc::new(Config::parse(jwt_config("[]", &inline_jwks()).as_bytes()).unwrap());
    let host = wrk_request("/headers?x=1")
        .with_request_header("authorization", &format!("Bearer {token}"));
    let shared = shared_for(&parsed, &host);
    for i in 0..workload_n() {
        let fresh = FakeHost::new();
        *fresh.request_headers.borrow_mut() = host.request_headers.borrow().clone();
        let mut request = AuthzRequest::new(Rc::clone(&parsed), Rc::clone(&shared), i);
        assert_eq!(request.on_request_headers(&fresh, true), Action::Continue);
    }
}

/// Not a check: a workload for `valgrind --tool=callgrind` to count the instructions of the
/// CUSTOM path per request, check request to resumed request (run with `--ignored`).
#[test]
#[ignore]
fn workload_custom_requests() {
    let parsed = Rc::new(
        Config::parse(
            provider_with(r#", "includeRequestHeadersInCheck": ["x-ext-authz"]"#).as_bytes(),
        )
        .unwrap(),
    );
    let host = wrk_request("/bench").with_request_header("x-ext-authz", "allow");
    let shared = shared_for(&parsed, &host);
    for i in 0..workload_n() {
        let fresh = FakeHost::new();
        *fresh.request_headers.borrow_mut() = host.request_headers.borrow().clone();
        fresh.answering(200, &[("x-ext-authz-check-result", "allowed")], "");
        let mut request = AuthzRequest::new(Rc::clone(&parsed), Rc::clone(&shared), i);
        assert_eq!(request.on_request_headers(&fresh, true), Action::Pause);
        answer(&mut request, &fresh, 100 + 1);
        assert_eq!(fresh.resumed.get(), 1);
    }
}

#[test]
fn an_escaped_nul_or_two_hosts_get_400_before_any_policy_or_callout() {
    for (path, authority) in [
        ("/ip%00", "httpbin"),
        ("/headers/%00/..", "httpbin"),
        ("/headers", "other.example.com,httpbin"),
    ] {
        let host = FakeHost::new().with_request("GET", path, authority);
        let mut request = request_with(TUTORIAL, &host);
        assert_eq!(request.on_request_headers(&host, true), Action::Pause);
        let reply = host.last_reply().unwrap();
        assert_eq!((reply.status, reply.body.as_str()), (400, ""), "{path}");
        assert!(host.dispatched.borrow().is_empty(), "{path}");
        assert_eq!(host.metric("inline_authz.denied_by.invalid_request"), 1);
    }
    // Under NONE the path is not normalized, so nothing refuses it.
    let host = FakeHost::new().with_request("GET", "/ip%00", "httpbin");
    let none = TUTORIAL.replacen('{', r#"{"pathNormalization": "NONE","#, 1);
    let mut request = request_with(&none, &host);
    assert_eq!(request.on_request_headers(&host, true), Action::Continue);
}

/// The shared state of a plugin after its first tick: the requests' clock comes from the tick.
fn ticked(config: &Config, host: &FakeHost) -> Rc<Shared> {
    let shared = shared_for(config, host);
    shared.set_clock(host.clock.get());
    shared
}

/// A request of `config` on a fresh host, run through its headers; the hostcalls it made.
fn hostcalls_of(
    config: &Rc<Config>,
    shared: &Rc<Shared>,
    host: &FakeHost,
    expected: Action,
) -> Vec<&'static str> {
    host.hostcalls.borrow_mut().clear();
    let mut request = AuthzRequest::new(Rc::clone(config), Rc::clone(shared), 9);
    assert_eq!(request.on_request_headers(host, true), expected);
    host.hostcalls.borrow().clone()
}

/// Each hostcall costs about a microsecond inside Envoy (`bench/hostcalls.py`): the hostcalls of
/// the common paths are part of the contract, and this test is the guard against a regression.
/// In steady state (after the first tick): headers are read once, the clock comes from the tick,
/// counts stay in the VM until the tick flushes them.
#[test]
fn common_requests_make_the_fewest_hostcalls() {
    // No rules at all: the plugin is idle; its requests get no `AuthzRequest` and no hostcall
    // (the shell gives them a context that only continues), and it sets no tick.
    let host = FakeHost::new();
    let mut plugin = crate::filter::root::Plugin::new("idle".into());
    assert!(plugin.configure(&host, b"{}"));
    assert!(plugin.is_idle());
    assert_eq!(host.tick_period.get(), None);
    for busy in [
        TUTORIAL,
        r#"{"policies": [{"action": "DENY", "dryRun": true, "rules": [{}]}]}"#,
    ] {
        let mut plugin = crate::filter::root::Plugin::new("busy".into());
        assert!(plugin.configure(&host, busy.as_bytes()));
        assert!(!plugin.is_idle(), "{busy}");
    }

    // A repeated token: verified from the cache, then removed from the request.
    let token = vectors()["valid"]["RS256"].as_str().unwrap().to_string();
    let config = Rc::new(Config::parse(jwt_config("[]", &inline_jwks()).as_bytes()).unwrap());
    let with = |token: &str| {
        FakeHost::new()
            .with_request("GET", "/", "h")
            .with_request_header("authorization", &format!("Bearer {token}"))
    };
    let shared = ticked(&config, &with(&token));
    hostcalls_of(&config, &shared, &with(&token), Action::Continue);
    assert_eq!(
        hostcalls_of(&config, &shared, &with(&token), Action::Continue),
        ["request_headers", "set_request_header"],
        "cached token"
    );

    // Distinct tokens: the same, with the signature checked in the VM (pure Rust) or by one
    // `verify_signature` foreign call (the host's crypto).
    let config_nocache =
        jwt_config("[]", &inline_jwks()).replacen('{', r#"{"jwtCacheSize": 0, "#, 1);
    let config_nocache = Rc::new(Config::parse(config_nocache.as_bytes()).unwrap());
    let shared = ticked(&config_nocache, &with(&token));
    assert_eq!(
        hostcalls_of(&config_nocache, &shared, &with(&token), Action::Continue),
        ["request_headers", "set_request_header"],
        "distinct token, pure Rust"
    );
    fn verified(_: &str, _: &[u8]) -> Result<Vec<u8>, crate::host::ForeignError> {
        Ok(vec![0x08, 0x01])
    }
    let host_crypto = || {
        let mut host = with(&token);
        host.foreign = Some(verified);
        host
    };
    let shared = ticked(&config_nocache, &host_crypto());
    assert_eq!(
        hostcalls_of(&config_nocache, &shared, &host_crypto(), Action::Continue),
        ["request_headers", "call_foreign", "set_request_header"],
        "distinct token, Envoy's verify_signature"
    );

    // DENY on a path: headers, then the local reply.
    let deny = r#"{"policies": [{"action": "DENY", "rules": [{"to": [{"operation": {"paths": ["/admin"]}}]}]}]}"#;
    let config = Rc::new(Config::parse(deny.as_bytes()).unwrap());
    let host = FakeHost::new().with_request("GET", "/admin", "h");
    let shared = ticked(&config, &host);
    assert_eq!(
        hostcalls_of(&config, &shared, &host, Action::Pause),
        ["request_headers", "send_response"],
        "DENY on path"
    );

    // DENY on the client's address: no header is read, the address property only.
    let by_ip = r#"{"policies": [{"action": "DENY", "rules": [{"from": [{"source": {"ipBlocks": ["192.0.2.0/24"]}}]}]}]}"#;
    let config = Rc::new(Config::parse(by_ip.as_bytes()).unwrap());
    let host = FakeHost::new()
        .with_request("GET", "/", "h")
        .with_property(&["source", "address"], b"192.0.2.7:5000");
    let shared = ticked(&config, &host);
    assert_eq!(
        hostcalls_of(&config, &shared, &host, Action::Pause),
        ["property", "send_response"],
        "DENY on address"
    );

    // CUSTOM allow: headers, dispatch; then the answer (its status and headers, no body) and the
    // resume.
    let config = Rc::new(Config::parse(TUTORIAL.as_bytes()).unwrap());
    let host = FakeHost::new().with_request("GET", "/headers", "httpbin");
    let shared = ticked(&config, &host);
    let mut request = AuthzRequest::new(Rc::clone(&config), Rc::clone(&shared), 1);
    host.hostcalls.borrow_mut().clear();
    assert_eq!(request.on_request_headers(&host, true), Action::Pause);
    assert_eq!(
        *host.hostcalls.borrow(),
        ["request_headers", "dispatch_http_call"],
        "CUSTOM allow, the check"
    );
    host.hostcalls.borrow_mut().clear();
    host.answering(200, &[], "");
    let response = crate::filter::root::check_answer(&host, 1, 0);
    request.on_call_response(&host, 101, response);
    assert_eq!(
        *host.hostcalls.borrow(),
        ["call_response", "resume_request"],
        "CUSTOM allow, the answer"
    );

    // CUSTOM with a cached answer: headers, and the request goes on.
    let config = Rc::new(Config::parse(provider_with("").as_bytes()).unwrap());
    let host = FakeHost::new().with_request("GET", "/same", "h");
    let shared = ticked(&config, &host);
    let mut first = AuthzRequest::new(Rc::clone(&config), Rc::clone(&shared), 1);
    first.on_request_headers(&host, true);
    host.answering(200, &[("cache-control", "max-age=60")], "");
    answer(&mut first, &host, 101);
    assert_eq!(
        hostcalls_of(&config, &shared, &host, Action::Continue),
        ["request_headers"],
        "CUSTOM, cached answer"
    );
}

/// The path is normalized (and `:path` rewritten) only when a policy or a check request reads
/// it; otherwise the request goes on with the path it came with.
#[test]
fn the_path_is_normalized_only_when_something_reads_it() {
    let by_ip = r#"{"policies": [{"action": "DENY", "rules": [{"from": [{"source": {"ipBlocks": ["192.0.2.0/24"]}}]}]}]}"#;
    let by_path = r#"{"policies": [{"action": "DENY", "rules": [{"to": [{"operation": {"paths": ["/admin"]}}]}]}]}"#;
    for (config, rewritten) in [(by_ip, None), (by_path, Some("/b")), (TUTORIAL, Some("/b"))] {
        let host = FakeHost::new()
            .with_request("GET", "/a/../b", "h")
            .with_property(&["source", "address"], b"10.0.0.1:5000");
        request_with(config, &host).on_request_headers(&host, true);
        let path = host.request_header(":path");
        match rewritten {
            Some(path_seen) => assert_eq!(path.as_deref(), Some(path_seen), "{config}"),
            None => assert_eq!(path.as_deref(), Some("/a/../b"), "{config}"),
        }
    }
}

/// A request, run once on a healthy host to learn its hostcalls, then once more per hostcall with
/// that one failing: every failure ends the request closed, never forwarded.
fn fail_each_hostcall_in_turn(
    config: &str,
    request: fn() -> FakeHost,
    run: fn(&mut AuthzRequest, &FakeHost) -> Action,
) -> Vec<(&'static str, Option<u32>)> {
    let healthy = request();
    let mut first = request_with(config, &healthy);
    assert_eq!(
        run(&mut first, &healthy),
        Action::Continue,
        "healthy: forwarded"
    );
    let mut calls: Vec<&'static str> = Vec::new();
    for call in healthy.hostcalls.borrow().iter() {
        if !calls.contains(call) {
            calls.push(call);
        }
    }
    let mut outcomes = Vec::new();
    for call in calls {
        if matches!(call, "increment_metric" | "record_metric") {
            continue; // best effort: a counter never changes a decision
        }
        let host = request().failing(call);
        let mut request = request_with(config, &host);
        let action = run(&mut request, &host);
        assert_eq!(action, Action::Pause, "{call} failing: the request is held");
        assert_eq!(host.resumed.get(), 0, "{call} failing: never resumed");
        outcomes.push((call, host.last_reply().map(|r| r.status)));
    }
    outcomes
}

#[test]
fn a_failing_hostcall_fails_a_tokened_request_closed_with_500() {
    let config = jwt_config(
        r#"[{"action": "DENY", "rules": [{"from": [{"source": {"ipBlocks": ["192.0.2.0/24"]}}],
            "to": [{"operation": {"paths": ["/admin"]}}]}]}]"#,
        &inline_jwks(),
    );
    fn request() -> FakeHost {
        let token = vectors()["valid"]["RS256"].as_str().unwrap().to_string();
        FakeHost::new()
            .with_request("GET", "/a/../b", "h")
            .with_request_header("authorization", &format!("Bearer {token}"))
            .with_property(&["source", "address"], b"10.0.0.1:5000")
    }
    let outcomes =
        fail_each_hostcall_in_turn(&config, request, |r, host| r.on_request_headers(host, true));
    let calls: Vec<_> = outcomes.iter().map(|(c, _)| *c).collect();
    assert_eq!(
        calls,
        ["request_headers", "set_request_header", "property", "now"],
        "headers, the normalized path (then the token removed), the address, the clock"
    );
    for (call, status) in outcomes {
        assert_eq!(status, Some(500), "{call} failing");
    }
}

#[test]
fn a_failing_hostcall_fails_a_custom_check_closed() {
    fn request() -> FakeHost {
        FakeHost::new().with_request("GET", "/headers", "httpbin")
    }
    let outcomes = fail_each_hostcall_in_turn(TUTORIAL, request, |r, host| {
        if r.on_request_headers(host, true) == Action::Continue {
            return Action::Continue;
        }
        if host.dispatched.borrow().is_empty() {
            return Action::Pause;
        }
        host.answering(200, &[], "");
        let response = crate::filter::root::check_answer(host, 1, 0);
        r.on_call_response(host, 101, response);
        if host.resumed.get() == 1 {
            Action::Continue
        } else {
            Action::Pause
        }
    });
    assert_eq!(
        outcomes,
        [
            ("request_headers", Some(500)),
            // A failed dispatch is an authorization-service error: statusOnError (Envoy's).
            ("dispatch_http_call", Some(403)),
            ("call_response", Some(500)),
            ("resume_request", Some(500)),
        ]
    );
}

#[test]
fn a_local_reply_that_cannot_be_sent_still_ends_the_request() {
    let host = FakeHost::new()
        .with_request("GET", "/headers", "h")
        .failing("send_response");
    let mut request = request_with(
        r#"{"policies": [{"name": "d", "action": "DENY", "rules": [{}]}]}"#,
        &host,
    );
    assert_eq!(request.on_request_headers(&host, true), Action::Pause);
    assert!(host.replies.borrow().is_empty());
    assert_eq!(host.metric("inline_authz.denied_by.policy"), 1);
    assert_eq!(
        request.on_request_headers(&host, true),
        Action::Continue,
        "ended once"
    );
}

const GRPC: &str = r#"{
  "extensionProviders": [{"name": "grpc", "envoyExtAuthzGrpc": {
      "service": "ext-authz.default.svc.cluster.local", "port": 9000, "timeout": "2s"}}],
  "policies": [{"name": "on-headers", "action": "CUSTOM", "provider": {"name": "grpc"},
                "rules": [{"to": [{"operation": {"paths": ["/headers"]}}]}]}]
}"#;

fn grpc_allow(headers: &[(&str, &str)]) -> Vec<u8> {
    use crate::ext_authz::grpc::proto;
    use prost::Message;
    proto::CheckResponse {
        status: Some(proto::Status::default()),
        ok_response: Some(proto::OkHttpResponse {
            headers: headers
                .iter()
                .map(|(k, v)| proto::HeaderValueOption {
                    header: Some(proto::HeaderValue {
                        key: k.to_string(),
                        value: v.to_string(),
                        raw_value: vec![],
                    }),
                    append: None,
                })
                .collect(),
            ..Default::default()
        }),
        ..Default::default()
    }
    .encode_to_vec()
}

fn sent_http(call: &crate::host::fake::GrpcCall) -> crate::ext_authz::grpc::proto::HttpRequest {
    use prost::Message;
    crate::ext_authz::grpc::proto::CheckRequest::decode(call.message.as_slice())
        .unwrap()
        .attributes
        .unwrap()
        .request
        .unwrap()
        .http
        .unwrap()
}

#[test]
fn a_grpc_provider_gets_a_check_request_and_its_allow_resumes_with_its_headers() {
    let host = FakeHost::new()
        .with_request("GET", "/headers?x=1", "httpbin")
        .with_request_header(":scheme", "http")
        .with_request_header("x-ext-authz", "allow")
        .with_property(&["source", "address"], b"127.0.0.1:5555")
        .with_property(&["request", "protocol"], b"HTTP/1.1");
    let mut request = request_with(GRPC, &host);
    assert_eq!(request.on_request_headers(&host, true), Action::Pause);
    let call = host.grpc_calls.borrow().last().cloned().unwrap();
    assert_eq!(
        (call.service.as_str(), call.method.as_str(), call.timeout),
        (
            "envoy.service.auth.v3.Authorization",
            "Check",
            std::time::Duration::from_secs(2)
        )
    );
    assert_eq!(
        call.upstream.as_bytes(),
        crate::ext_authz::grpc::grpc_service(
            "outbound|9000||ext-authz.default.svc.cluster.local",
            "ext-authz.default.svc.cluster.local"
        )
    );
    let http = sent_http(&call);
    assert_eq!(http.path, "/headers?x=1");
    assert_eq!(http.protocol, "HTTP/1.1");
    assert_eq!(
        http.headers.get("x-ext-authz").map(String::as_str),
        Some("allow")
    );
    *host.grpc_answer.borrow_mut() = grpc_allow(&[("x-ext-authz-check-result", "allowed")]);
    let size = host.grpc_answer.borrow().len();
    let delivered = crate::filter::root::grpc_answer(&host, 0, size);
    request.on_call_response(&host, call.token, delivered);
    assert_eq!(host.resumed.get(), 1);
    assert_eq!(
        host.request_header("x-ext-authz-check-result").as_deref(),
        Some("allowed")
    );
    assert_eq!(host.metric("inline_authz.ext_authz.ok"), 1);
}

#[test]
fn a_failed_grpc_call_follows_the_failure_mode() {
    for (status, fail_open) in [(14, false), (4, false), (14, true)] {
        let config = GRPC.replace(r#""timeout": "2s""#, &format!(r#""failOpen": {fail_open}"#));
        let host = FakeHost::new().with_request("GET", "/headers", "h");
        let mut request = request_with(&config, &host);
        request.on_request_headers(&host, true);
        let token = host.grpc_calls.borrow()[0].token;
        let delivered = crate::filter::root::grpc_answer(&host, status, 0);
        request.on_call_response(&host, token, delivered);
        if fail_open {
            assert_eq!(host.resumed.get(), 1);
        } else {
            let reply = host.last_reply().unwrap();
            assert_eq!((reply.status, reply.body.as_str()), (403, ""), "{status}");
        }
        assert_eq!(host.metric("inline_authz.ext_authz.error"), 1);
    }
}

#[test]
fn two_providers_are_asked_in_order_and_the_first_allow_feeds_the_second_check() {
    let config = r#"{
      "extensionProviders": [
        {"name": "http", "envoyExtAuthzHttp": {"service": "authz", "port": 8000,
           "headersToUpstreamOnAllow": ["x-tenant"]}},
        {"name": "grpc", "envoyExtAuthzGrpc": {"service": "ext-authz", "port": 9000}}],
      "policies": [
        {"action": "CUSTOM", "provider": {"name": "grpc"}, "rules": [{}]},
        {"action": "CUSTOM", "provider": {"name": "http"}, "rules": [{}]}]
    }"#;
    let host = FakeHost::new().with_request("GET", "/a", "h");
    let mut request = request_with(config, &host);
    assert_eq!(request.on_request_headers(&host, true), Action::Pause);
    assert_eq!(
        host.dispatched.borrow().len(),
        1,
        "HTTP first: extensionProviders order"
    );
    assert!(host.grpc_calls.borrow().is_empty());
    host.answering(200, &[("x-tenant", "blue")], "");
    answer(&mut request, &host, 101);
    assert_eq!(
        host.resumed.get(),
        0,
        "the second provider is still to be asked"
    );
    let call = host.grpc_calls.borrow()[0].clone();
    assert_eq!(
        sent_http(&call).headers.get("x-tenant").map(String::as_str),
        Some("blue"),
        "the first allow's headers are in the second check"
    );
    *host.grpc_answer.borrow_mut() = grpc_allow(&[]);
    let size = host.grpc_answer.borrow().len();
    let delivered = crate::filter::root::grpc_answer(&host, 0, size);
    request.on_call_response(&host, call.token, delivered);
    assert_eq!(host.resumed.get(), 1);
    assert_eq!(host.metric("inline_authz.ext_authz.ok"), 2);
    assert_eq!(host.metric("inline_authz.provider.http.ok"), 1);
    assert_eq!(host.metric("inline_authz.provider.grpc.ok"), 1);

    // A denial by the first ends it: the second is never asked.
    let host = FakeHost::new().with_request("GET", "/a", "h");
    let mut request = request_with(config, &host);
    request.on_request_headers(&host, true);
    host.answering(403, &[], "no");
    answer(&mut request, &host, 101);
    assert_eq!(host.last_reply().unwrap().status, 403);
    assert!(host.grpc_calls.borrow().is_empty());
    assert_eq!(host.metric("inline_authz.provider.http.denied"), 1);
    assert_eq!(host.metric("inline_authz.provider.grpc.denied"), 0);
}

/// The hostcalls of a gRPC check without TLS: headers, clock, the connection's properties
/// (addresses, TLS, protocol, start time), the call; then clock, latency, verdict, resume.
#[test]
fn a_grpc_check_makes_the_fewest_hostcalls() {
    let host = FakeHost::new().with_request("GET", "/headers", "httpbin");
    let mut request = request_with(GRPC, &host);
    host.hostcalls.borrow_mut().clear();
    assert_eq!(request.on_request_headers(&host, true), Action::Pause);
    assert_eq!(
        *host.hostcalls.borrow(),
        // The connection's TLS version and protocol, the clock for `request.time` (a property
        // read costs about 5 µs: bench/results/hostcalls.md), the two addresses.
        [
            "request_headers",
            "property",
            "property",
            "now",
            "property",
            "property",
            "dispatch_grpc_call"
        ]
    );
    host.hostcalls.borrow_mut().clear();
    *host.grpc_answer.borrow_mut() = grpc_allow(&[]);
    let size = host.grpc_answer.borrow().len();
    let delivered = crate::filter::root::grpc_answer(&host, 0, size);
    request.on_call_response(&host, 101, delivered);
    assert_eq!(
        *host.hostcalls.borrow(),
        ["grpc_response", "resume_request"]
    );
}

#[test]
fn a_body_that_arrives_during_the_first_check_goes_to_a_later_provider_that_reads_it() {
    let config = r#"{
      "extensionProviders": [
        {"name": "http", "envoyExtAuthzHttp": {"service": "authz", "port": 8000}},
        {"name": "grpc", "envoyExtAuthzGrpc": {"service": "ext-authz", "port": 9000,
           "includeRequestBodyInCheck": {"maxRequestBytes": 64}}}],
      "policies": [
        {"action": "CUSTOM", "provider": {"name": "http"}, "rules": [{}]},
        {"action": "CUSTOM", "provider": {"name": "grpc"}, "rules": [{}]}]
    }"#;
    let host = FakeHost::new()
        .with_request("POST", "/upload", "h")
        .with_body(b"hello");
    let mut request = request_with(config, &host);
    assert_eq!(request.on_request_headers(&host, false), Action::Pause);
    assert_eq!(
        host.dispatched.borrow().len(),
        1,
        "the HTTP check needs no body"
    );
    assert_eq!(request.on_request_body(&host, 5, true), Action::Pause);
    host.answering(200, &[], "");
    answer(&mut request, &host, 101);
    let call = host.grpc_calls.borrow()[0].clone();
    assert_eq!(sent_http(&call).body, "hello");
    assert_eq!(sent_http(&call).size, 5);
}

/// `TUTORIAL` with these top-level fields added (`"auditRecord": true, …`).
fn tutorial_with(fields: &str) -> String {
    TUTORIAL.replacen('{', &format!("{{{fields}, "), 1)
}

#[test]
fn the_audit_record_is_opt_in_and_costs_one_hostcall_where_the_request_ends() {
    let host = FakeHost::new().with_request("GET", "/ip", "httpbin");
    request_with(TUTORIAL, &host).on_request_headers(&host, true);
    assert!(host.properties_set.borrow().is_empty(), "off unless asked");

    let config = tutorial_with(r#""auditRecord": true"#);
    let host = FakeHost::new().with_request("GET", "/ip", "httpbin");
    let mut request = request_with(&config, &host);
    assert_eq!(request.on_request_headers(&host, true), Action::Continue);
    assert_eq!(
        *host.properties_set.borrow(),
        [(
            "inline_authz.decision".to_string(),
            "outcome=allowed".to_string()
        )],
        "one segment: Envoy keeps it as filter state wasm.inline_authz.decision"
    );
    assert_eq!(
        *host.hostcalls.borrow(),
        ["request_headers", "set_property"]
    );

    // A cached token: the two hostcalls of `common_requests_make_the_fewest_hostcalls`, plus one.
    let token = vectors()["valid"]["RS256"].as_str().unwrap().to_string();
    let config = jwt_config("[]", &inline_jwks()).replacen('{', r#"{"auditRecord": true, "#, 1);
    let config = Rc::new(Config::parse(config.as_bytes()).unwrap());
    let with_token = || {
        FakeHost::new()
            .with_request("GET", "/", "h")
            .with_request_header("authorization", &format!("Bearer {token}"))
    };
    let first = with_token();
    let shared = ticked(&config, &first);
    AuthzRequest::new(Rc::clone(&config), Rc::clone(&shared), 1).on_request_headers(&first, true);
    let again = with_token();
    AuthzRequest::new(Rc::clone(&config), shared, 2).on_request_headers(&again, true);
    assert_eq!(
        *again.hostcalls.borrow(),
        ["request_headers", "set_request_header", "set_property"]
    );
    assert_eq!(
        again.decision().as_deref(),
        Some("outcome=allowed principal=testing@asm.test.io/demo@asm.test.io")
    );

    // A CUSTOM check: the record is written once, with the answer, before the request resumes.
    let config = tutorial_with(r#""auditRecord": true"#);
    let host = FakeHost::new().with_request("GET", "/headers", "httpbin");
    let mut request = request_with(&config, &host);
    request.on_request_headers(&host, true);
    assert!(host.properties_set.borrow().is_empty(), "not decided yet");
    host.hostcalls.borrow_mut().clear();
    host.answering(200, &[], "");
    answer(&mut request, &host, 101);
    assert_eq!(*host.hostcalls.borrow(), ["set_property", "resume_request"]);
    assert_eq!(
        host.decision().as_deref(),
        Some("outcome=allowed providers=sample-ext-authz:ok")
    );
}

#[test]
fn the_audit_record_names_the_deciding_policy_reason_principal_and_providers() {
    let record = |config: &str, host: FakeHost| {
        let config = config.replacen('{', r#"{"auditRecord": true, "#, 1);
        request_with(&config, &host).on_request_headers(&host, true);
        host.decision().unwrap()
    };
    let deny = r#"{"policies": [{"name": "deny-admin", "action": "DENY",
        "rules": [{"to": [{"operation": {"paths": ["/admin"]}}]}]}]}"#;
    assert_eq!(
        record(deny, FakeHost::new().with_request("GET", "/admin", "h")),
        "outcome=denied reason=policy:deny-admin"
    );
    assert_eq!(
        record(deny, FakeHost::new().with_request("GET", "/ip", "h")),
        "outcome=allowed"
    );

    let token = vectors()["valid"]["RS256"].as_str().unwrap().to_string();
    let require_jwt = jwt_config(
        r#"[{"name": "require-jwt", "action": "ALLOW", "rules": [{"from": [{"source": {"requestPrincipals": ["*"]}}]}]}]"#,
        &inline_jwks(),
    );
    assert_eq!(
        record(
            &require_jwt,
            FakeHost::new()
                .with_request("GET", "/", "h")
                .with_request_header("authorization", &format!("Bearer {token}"))
        ),
        "outcome=allowed reason=policy:require-jwt principal=testing@asm.test.io/demo@asm.test.io"
    );
    assert_eq!(
        record(&require_jwt, FakeHost::new().with_request("GET", "/", "h")),
        "outcome=denied reason=jwt_authn:jwt_missed"
    );
    let expired = vectors()["cases"]["expired"].as_str().unwrap().to_string();
    let host = FakeHost::new()
        .with_request("GET", "/", "h")
        .with_request_header("authorization", &format!("Bearer {expired}"));
    let written = record(&require_jwt, host);
    assert_eq!(written, "outcome=denied reason=jwt_authn:jwt_expired");
    assert!(!written.contains(&expired[..20]), "never the token");

    let dry = r#"{"policies": [{"name": "no-admin", "action": "DENY", "dryRun": true,
        "rules": [{"to": [{"operation": {"paths": ["/admin"]}}]}]}]}"#;
    assert_eq!(
        record(dry, FakeHost::new().with_request("GET", "/admin", "h")),
        "outcome=would-deny dry_run=policy:no-admin"
    );
}

#[test]
fn the_audit_record_names_each_provider_asked_and_its_answer() {
    let config = tutorial_with(r#""auditRecord": true"#);
    let host = FakeHost::new().with_request("GET", "/headers", "httpbin");
    let mut request = request_with(&config, &host);
    request.on_request_headers(&host, true);
    host.answering(403, &[], "denied");
    answer(&mut request, &host, 101);
    assert_eq!(
        host.decision().as_deref(),
        Some("outcome=denied reason=ext_authz:denied providers=sample-ext-authz:denied")
    );

    let failing = tutorial_with(r#""auditRecord": true"#);
    let host = FakeHost::new()
        .with_request("GET", "/headers", "httpbin")
        .with_dispatch_error("BadArgument");
    request_with(&failing, &host).on_request_headers(&host, true);
    assert_eq!(
        host.decision().as_deref(),
        Some("outcome=denied reason=ext_authz:error providers=sample-ext-authz:error")
    );

    let dry = r#"{"auditRecord": true, "extensionProviders": [{"name": "p", "envoyExtAuthzHttp": {"service": "authz", "port": 80}}],
        "policies": [{"action": "CUSTOM", "dryRun": true, "provider": {"name": "p"}, "rules": [{}]}]}"#;
    let host = FakeHost::new().with_request("GET", "/", "h");
    let mut request = request_with(dry, &host);
    request.on_request_headers(&host, true);
    host.answering(403, &[], "no");
    answer(&mut request, &host, 101);
    assert_eq!(host.resumed.get(), 1);
    assert_eq!(
        host.decision().as_deref(),
        Some("outcome=would-deny dry_run=ext_authz:denied providers=p:shadow_denied")
    );
}

#[test]
fn an_audit_record_that_cannot_be_written_changes_no_decision() {
    let config = tutorial_with(r#""auditRecord": true"#);
    let host = FakeHost::new()
        .with_request("GET", "/ip", "httpbin")
        .failing("set_property");
    assert_eq!(
        request_with(&config, &host).on_request_headers(&host, true),
        Action::Continue
    );
    assert!(host.replies.borrow().is_empty());
}

#[test]
fn json_reply_bodies_name_status_reason_and_policy() {
    let json = |reply: &crate::host::fake::Reply| -> serde_json::Value {
        assert!(
            reply
                .headers
                .contains(&("content-type".into(), "application/json".into())),
            "{:?}",
            reply.headers
        );
        serde_json::from_str(&reply.body).unwrap()
    };
    let deny = r#"{"localReplyBody": "json", "policies": [{"name": "deny-admin", "action": "DENY",
        "rules": [{"to": [{"operation": {"paths": ["/admin"]}}]}]}]}"#;
    let host = FakeHost::new().with_request("GET", "/admin", "h");
    request_with(deny, &host).on_request_headers(&host, true);
    let reply = host.last_reply().unwrap();
    assert_eq!(reply.status, 403);
    assert_eq!(
        json(&reply),
        serde_json::json!({"status": 403, "reason": "policy:deny-admin", "policy": "deny-admin"})
    );

    let jwt = jwt_config("[]", &inline_jwks()).replacen('{', r#"{"localReplyBody": "json", "#, 1);
    let host = FakeHost::new()
        .with_request("GET", "/", "h")
        .with_request_header("authorization", "Bearer invalidToken");
    request_with(&jwt, &host).on_request_headers(&host, true);
    let reply = host.last_reply().unwrap();
    assert_eq!(reply.status, 401);
    assert_eq!(
        json(&reply),
        serde_json::json!({"status": 401, "reason": "jwt_authn:jwt_bad_format"})
    );
    assert!(reply.headers.iter().any(|(n, _)| n == "www-authenticate"));

    let large = provider_with(
        r#", "includeRequestBodyInCheck": {"maxRequestBytes": 4, "allowPartialMessage": false}"#,
    )
    .replacen('{', r#"{"localReplyBody": "json", "#, 1);
    let host = FakeHost::new()
        .with_request("POST", "/upload", "h")
        .with_request_header("content-length", "11");
    request_with(&large, &host).on_request_headers(&host, false);
    let reply = host.last_reply().unwrap();
    assert_eq!(
        json(&reply),
        serde_json::json!({"status": 413, "reason": "ext_authz:request_too_large"})
    );
}

#[test]
fn json_replies_keep_the_services_own_denial_and_grpc_replies_as_envoy_writes_them() {
    let config = tutorial_with(r#""localReplyBody": "json""#);
    let host = FakeHost::new().with_request("GET", "/headers", "httpbin");
    let mut request = request_with(&config, &host);
    request.on_request_headers(&host, true);
    host.answering(403, &[("x-ext-authz-check-result", "denied")], "go away");
    answer(&mut request, &host, 101);
    let reply = host.last_reply().unwrap();
    assert_eq!(
        reply.body, "go away",
        "the service's answer, not the filter's"
    );
    assert!(!reply.headers.iter().any(|(n, _)| n == "content-type"));

    let deny = r#"{"localReplyBody": "json", "policies": [{"name": "deny-admin", "action": "DENY",
        "rules": [{"to": [{"operation": {"paths": ["/admin"]}}]}]}]}"#;
    let host = FakeHost::new()
        .with_request("POST", "/admin", "h")
        .with_request_header("content-type", "application/grpc+proto");
    request_with(deny, &host).on_request_headers(&host, true);
    let reply = host.last_reply().unwrap();
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (403, RBAC_DENIED_BODY),
        "Envoy turns it into grpc-status 7 and grpc-message"
    );
    assert!(reply.headers.is_empty());
}
