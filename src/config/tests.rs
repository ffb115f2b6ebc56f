use super::*;
use crate::ext_authz::BodyOptions;
use crate::policy::{decide, Decision, RequestAttributes, Stage};
use std::time::Duration;

const TUTORIAL: &str = r#"{
  "extensionProviders": [{
    "name": "sample-ext-authz",
    "envoyExtAuthzHttp": {
      "service": "ext-authz.default.svc.cluster.local",
      "port": "8000",
      "timeout": "10s",
      "includeRequestHeadersInCheck": ["x-ext-authz"],
      "headersToUpstreamOnAllow": ["x-ext-authz-check-result"],
      "headersToDownstreamOnDeny": ["x-ext-authz-check-result"]
    }
  }],
  "policies": [{
    "name": "ext-authz-on-headers",
    "action": "CUSTOM",
    "provider": {"name": "sample-ext-authz"},
    "rules": [{"to": [{"operation": {"paths": ["/headers"]}}]}]
  }]
}"#;

fn error_of(json: &str) -> String {
    match Config::parse(json.as_bytes()) {
        Ok(_) => panic!("config should be rejected: {json}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn tutorial_config_compiles_with_istio_defaults() {
    let config = Config::parse(TUTORIAL.as_bytes()).unwrap();
    let provider = config.custom_provider().unwrap();
    assert_eq!(
        provider.cluster,
        "outbound|8000||ext-authz.default.svc.cluster.local"
    );
    assert_eq!(provider.timeout, Duration::from_secs(10));
    assert_eq!(provider.status_on_error, 403);
    assert!(!provider.fail_open);
    let http = provider.http().unwrap();
    assert!(http.request_headers.matches("x-ext-authz"));
    assert!(http.downstream_on_deny.is_some());
    assert_eq!(config.policies.custom.len(), 1);
    assert_eq!(config.path_normalization, PathNormalization::Base);
    let request = RequestAttributes {
        path: "/headers".into(),
        ..Default::default()
    };
    assert!(matches!(
        decide(&config.policies, &request, Stage::Authenticated),
        Decision::Ask(_)
    ));
}

#[test]
fn defaults_follow_envoy_when_options_are_left_out() {
    let config = Config::parse(
        br#"{"extensionProviders":[{"name":"a","envoyExtAuthzHttp":{"service":"authz","port":9000}}]}"#,
    )
    .unwrap();
    let provider = config.custom_provider().unwrap();
    assert_eq!(provider.timeout, Duration::from_secs(600));
    assert_eq!(provider.status_on_error, 403);
    let http = provider.http().unwrap();
    assert!(http.downstream_on_deny.is_none());
    assert!(http.upstream_on_allow.is_empty());
    assert_eq!(provider.body, None);
    // One provider and no policy: every request is checked.
    assert!(matches!(
        decide(
            &config.policies,
            &RequestAttributes::default(),
            Stage::Authenticated
        ),
        Decision::Ask(_)
    ));
}

#[test]
fn empty_configuration_authorizes_nothing_and_starts() {
    let config = Config::parse(b"").unwrap();
    assert!(config.policies.is_empty());
    assert!(config.custom_provider().is_none());
}

#[test]
fn every_option_parses() {
    let config = Config::parse(
        br#"{
      "extensionProviders": [{"name": "p", "envoyExtAuthzHttp": {
        "service": "ns/authz.example", "port": 8000, "cluster": "authz", "timeout": "250ms",
        "pathPrefix": "/check", "failOpen": true, "statusOnError": "503",
        "includeRequestHeadersInCheck": ["x-a", "x-b-*"],
        "includeAdditionalHeadersInCheck": {"X-Gateway": "ingress", "x-path": "%REQ(:path)%"},
        "includeRequestBodyInCheck": {"maxRequestBytes": 4096, "allowPartialMessage": true, "packAsBytes": false},
        "headersToUpstreamOnAllow": ["x-u"], "headersToDownstreamOnAllow": ["set-cookie"],
        "headersToDownstreamOnDeny": ["x-d"]}}],
      "policies": [
        {"name": "c", "action": "CUSTOM", "provider": {"name": "p"}, "rules": [{}]},
        {"name": "d", "action": "DENY", "rules": [{"from": [{"source": {"ipBlocks": ["10.0.0.0/8"], "notNamespaces": ["prod"]}}],
          "to": [{"operation": {"ports": ["8080", 9090], "methods": ["POST"], "notPaths": ["/public/*"], "hosts": ["*.example.com"]}}],
          "when": [{"key": "request.headers[x-env]", "values": ["dev"]}, {"key": "remote.ip", "notValues": ["127.0.0.1"]},
                   {"key": "destination.port", "values": ["80"]}, {"key": "connection.sni", "values": ["a.example"]},
                   {"key": "request.auth.claims[groups][0]", "values": ["x"]}]}]},
        {"action": "ALLOW", "rules": [{"to": [{"operation": {"paths": ["/users/{*}/profile"]}}]}]}
      ],
      "pathNormalization": "MERGE_SLASHES"
    }"#,
    )
    .unwrap();
    let p = &config.providers[0];
    assert_eq!(p.cluster, "authz");
    assert_eq!(p.timeout, Duration::from_millis(250));
    assert_eq!(p.status_on_error, 503);
    assert_eq!(
        p.body,
        Some(BodyOptions {
            max_request_bytes: 4096,
            allow_partial_message: true,
            pack_as_bytes: false
        })
    );
    assert_eq!(p.http().unwrap().additional_headers[0].0, "x-gateway");
    assert_eq!(config.policies.allow[0].name, "policies[2]");
    assert!(
        config.needs.source_ip
            && config.needs.remote_ip
            && config.needs.destination_port
            && config.needs.sni
    );
    assert!(config.needs.peer_principal);
    assert_eq!(config.path_normalization, PathNormalization::MergeSlashes);
}

#[test]
fn bad_configurations_name_the_field() {
    let provider =
        r#""extensionProviders":[{"name":"p","envoyExtAuthzHttp":{"service":"s","port":80}}]"#;
    let cases: Vec<(String, &str)> = vec![
        (r#"{"policy": []}"#.into(), "unknown field `policy`"),
        (r#"{"policies": [{"action": "ALOW"}]}"#.into(), "policies[0].action: unknown action \"ALOW\""),
        (r#"{"policies": [{"action": "AUDIT"}]}"#.into(), "policies[0].action: AUDIT is not supported"),
        (r#"{"policies": [{"action": "CUSTOM", "provider": {"name": "nope"}}]}"#.into(), "policies[0].provider.name: no extension provider named \"nope\""),
        (r#"{"policies": [{"action": "CUSTOM"}]}"#.into(), "policies[0].provider: is required"),
        (format!(r#"{{{provider},"policies":[{{"action":"DENY","provider":{{"name":"p"}}}}]}}"#), "policies[0].provider: is only allowed with action CUSTOM"),
        (r#"{"policies": [{"rules": [{"from": [{"source": {"ipBlocks": ["10.0.0.0/33"]}}]}]}]}"#.into(), "policies[0].rules[0].from[0].source.ipBlocks[0]: \"10.0.0.0/33\" has an invalid prefix length"),
        (r#"{"policies": [{"rules": [{"from": [{"source": {}}]}]}]}"#.into(), "policies[0].rules[0].from[0].source: must not be empty"),
        (r#"{"policies": [{"rules": [{"to": [{}]}]}]}"#.into(), "policies[0].rules[0].to[0].operation: is required"),
        (r#"{"policies": [{"rules": [{"to": [{"operation": {"paths": ["/a/{**}/b"]}}]}]}]}"#.into(), "policies[0].rules[0].to[0].operation.paths[0]"),
        (r#"{"policies": [{"rules": [{"to": [{"operation": {"ports": ["http"]}}]}]}]}"#.into(), "policies[0].rules[0].to[0].operation.ports[0]: \"http\" is not a port number"),
        (r#"{"policies": [{"rules": [{"when": [{"key": "request.time", "values": ["1"]}]}]}]}"#.into(), "policies[0].rules[0].when[0].key: unsupported key"),
        (r#"{"policies": [{"rules": [{"when": [{"key": "source.ip"}]}]}]}"#.into(), "policies[0].rules[0].when[0]: one of values or notValues must be set"),
        (r#"{"policies": [{"rules": [{"to": [{"operation": {"paths": "/x"}}]}]}]}"#.into(), "policies[0].rules[0].to[0].operation.paths: invalid type"),
        (r#"{"extensionProviders":[{"name":"p","envoyExtAuthzHttp":{"service":"s","port":80,"timeout":"10"}}]}"#.into(), "extensionProviders[0].envoyExtAuthzHttp.timeout: \"10\" has no unit"),
        (r#"{"extensionProviders":[{"name":"p","envoyExtAuthzHttp":{"service":"s","port":80,"timeot":"1s"}}]}"#.into(), "extensionProviders[0].envoyExtAuthzHttp.timeot: unknown field `timeot`"),
        (r#"{"extensionProviders":[{"name":"p","envoyExtAuthzHttp":{"service":"s","port":0}}]}"#.into(), "extensionProviders[0].envoyExtAuthzHttp.port: must be a port number"),
        (r#"{"extensionProviders":[{"name":"p","envoyExtAuthzHttp":{"service":"s","port":80,"pathPrefix":"check"}}]}"#.into(), "extensionProviders[0].envoyExtAuthzHttp.pathPrefix: must begin with '/'"),
        (r#"{"extensionProviders":[{"name":"p","envoyExtAuthzHttp":{"service":"s","port":80,"statusOnError":"abc"}}]}"#.into(), "extensionProviders[0].envoyExtAuthzHttp.statusOnError"),
        (r#"{"extensionProviders":[{"name":"p","envoyExtAuthzHttp":{"service":"s","port":80,"includeRequestBodyInCheck":{}}}]}"#.into(), "extensionProviders[0].envoyExtAuthzHttp.includeRequestBodyInCheck.maxRequestBytes: is required"),
        (r#"{"extensionProviders":[{"name":"p","envoyExtAuthzHttp":{"service":"s","port":80,"includeAdditionalHeadersInCheck":{"x-a":"50%"}}}]}"#.into(), "extensionProviders[0].envoyExtAuthzHttp.includeAdditionalHeadersInCheck.x-a"),
        (r#"{"extensionProviders":[{"name":"p","envoyExtAuthzHttp":{"service":"s","port":80,"includeRequestHeadersInCheck":["bad header"]}}]}"#.into(), "extensionProviders[0].envoyExtAuthzHttp.includeRequestHeadersInCheck[0]"),
        (r#"{"extensionProviders":[{"name":"p","envoyExtAuthzHttp":{"service":"","port":80}}]}"#.into(), "extensionProviders[0].envoyExtAuthzHttp.service: must not be empty"),
        (r#"{"extensionProviders":[{"name":"p"}]}"#.into(), "extensionProviders[0]: envoyExtAuthzHttp or envoyExtAuthzGrpc is required"),
        (r#"{"extensionProviders":[{"name":"p","envoyExtAuthzHttp":{"service":"s","port":80}},{"name":"p","envoyExtAuthzHttp":{"service":"s","port":80}}]}"#.into(), "extensionProviders[1].name: duplicate provider name"),
        (r#"{"pathNormalization": "base"}"#.into(), "pathNormalization: unknown value"),
        ("not json".into(), "expected"),
    ];
    for (json, want) in cases {
        let error = error_of(&json);
        assert!(
            error.contains(want),
            "for {json}\n  got:  {error}\n  want: {want}"
        );
        assert!(!error.contains('\n'), "one line: {error}");
    }
}

#[test]
fn each_custom_policy_names_its_own_provider_http_or_grpc() {
    let json = r#"{"extensionProviders":[
        {"name":"a","envoyExtAuthzHttp":{"service":"s","port":80}},
        {"name":"b","envoyExtAuthzGrpc":{"service":"ns/t.example","port":9000}}],
      "policies":[{"action":"CUSTOM","provider":{"name":"b"},"rules":[{}]},
                  {"action":"CUSTOM","provider":{"name":"a"},"rules":[{}]}]}"#;
    let config = Config::parse(json.as_bytes()).unwrap();
    let named: Vec<usize> = config.policies.custom.iter().map(|c| c.provider).collect();
    assert_eq!(named, [1, 0]);
    let Decision::Ask(checks) = decide(
        &config.policies,
        &RequestAttributes::default(),
        Stage::Authenticated,
    ) else {
        panic!("both CUSTOM policies match");
    };
    let order: Vec<usize> = checks.iter().map(|c| c.provider).collect();
    assert_eq!(order, [0, 1], "asked in extensionProviders order");
    let grpc = &config.providers[1];
    assert_eq!(grpc.cluster, "outbound|9000||t.example");
    assert_eq!(grpc.timeout, Duration::from_secs(600));
    let crate::ext_authz::Service::Grpc(service) = &grpc.service else {
        panic!("a gRPC provider");
    };
    assert_eq!(service.authority, "t.example");
    assert_eq!(
        service.upstream.as_bytes(),
        crate::ext_authz::grpc::grpc_service("outbound|9000||t.example", "t.example")
    );
}

#[test]
fn grpc_provider_options_and_their_refusals() {
    let config = Config::parse(
        br#"{"extensionProviders":[{"name":"g","envoyExtAuthzGrpc":{
          "service":"ext-authz.default.svc.cluster.local","port":"9000","cluster":"authz-grpc",
          "timeout":"250ms","failOpen":true,"statusOnError":"503","clearRouteCache":true,
          "includeRequestBodyInCheck":{"maxRequestBytes":64,"allowPartialMessage":true,"packAsBytes":true}}}]}"#,
    )
    .unwrap();
    let p = &config.providers[0];
    assert_eq!(
        (
            p.cluster.as_str(),
            p.timeout,
            p.fail_open,
            p.status_on_error
        ),
        ("authz-grpc", Duration::from_millis(250), true, 503)
    );
    assert_eq!(
        p.body,
        Some(BodyOptions {
            max_request_bytes: 64,
            allow_partial_message: true,
            pack_as_bytes: true
        })
    );
    for (json, want) in [
        (
            r#"{"name":"g","envoyExtAuthzGrpc":{"service":"s","port":0}}"#,
            "extensionProviders[0].envoyExtAuthzGrpc.port: must be a port number in [1, 65535]",
        ),
        (
            r#"{"name":"g","envoyExtAuthzGrpc":{"service":"s","port":9000,"pathPrefix":"/x"}}"#,
            "extensionProviders[0].envoyExtAuthzGrpc.pathPrefix: unknown field `pathPrefix`",
        ),
        (
            r#"{"name":"g","envoyExtAuthzGrpc":{"service":"s","port":9000,"timeout":"0s"}}"#,
            "extensionProviders[0].envoyExtAuthzGrpc.timeout: must be greater than 0",
        ),
        (
            r#"{"name":"g","envoyExtAuthzGrpc":{"service":"s","port":9000,"statusOnError":99}}"#,
            "extensionProviders[0].envoyExtAuthzGrpc.statusOnError: must be an HTTP status code",
        ),
        (
            r#"{"name":"g","envoyExtAuthzGrpc":{"service":"s","port":9000},
               "envoyExtAuthzHttp":{"service":"s","port":8000}}"#,
            "extensionProviders[0]: set one of envoyExtAuthzHttp or envoyExtAuthzGrpc, not both",
        ),
    ] {
        let error = error_of(&format!(r#"{{"extensionProviders":[{json}]}}"#));
        assert!(
            error.starts_with(want),
            "got: {error}
want: {want}"
        );
    }
}

#[test]
fn jwt_rules_parse_with_istio_defaults() {
    let config = Config::parse(
        br#"{"jwtRules": [
          {"issuer": "a", "jwks": "{\"keys\":[{\"kty\":\"oct\",\"k\":\"c2VjcmV0\"}]}"},
          {"issuer": "b", "jwksUri": "https://b.example:8443/keys.json", "audiences": ["https://api/"],
           "fromHeaders": [{"name": "X-Token"}], "fromParams": ["t"], "fromCookies": ["s"],
           "outputPayloadToHeader": "x-payload", "forwardOriginalToken": true,
           "outputClaimToHeaders": [{"header": "x-team", "claim": "org.team"}], "timeout": "2s"}],
         "clockSkew": "30s", "jwksRefreshInterval": "5m"}"#,
    )
    .unwrap();
    let jwt = &config.jwt;
    assert_eq!(jwt.clock_skew, Duration::from_secs(30));
    assert_eq!(jwt.refresh, Duration::from_secs(300));
    assert_eq!(
        jwt.rules[0].locations,
        crate::jwt::extract::Location::defaults()
    );
    assert!(!jwt.rules[0].forward);
    match &jwt.rules[1].keys {
        crate::jwt::KeySource::Remote {
            cluster,
            authority,
            path,
            timeout,
            ..
        } => {
            assert_eq!(cluster, "outbound|8443||b.example");
            assert_eq!(
                (authority.as_str(), path.as_str()),
                ("b.example:8443", "/keys.json")
            );
            assert_eq!(*timeout, Duration::from_secs(2));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(jwt.rules[1].audiences, vec!["api"]);
    assert_eq!(jwt.rules[1].locations.len(), 3);
    assert_eq!(
        jwt.rules[1].claim_headers,
        vec![(
            "x-team".to_string(),
            vec!["org".to_string(), "team".to_string()]
        )]
    );
    assert_eq!(jwt.sanitize().len(), 2);
}

#[test]
fn bad_jwt_rules_name_the_field() {
    let cases = [
        (
            r#"{"jwtRules": [{"issuer": ""}]}"#,
            "jwtRules[0].issuer: is required",
        ),
        (
            r#"{"jwtRules": [{"issuer": "a"}]}"#,
            "jwtRules[0]: one of jwks or jwksUri is required",
        ),
        (
            r#"{"jwtRules": [{"issuer": "a", "jwks": "{}", "jwksUri": "http://x/k"}]}"#,
            "jwtRules[0]: set one of jwks or jwksUri, not both",
        ),
        (
            r#"{"jwtRules": [{"issuer": "a", "jwks": "{\"keys\": []}"}]}"#,
            "jwtRules[0].jwks: no usable key",
        ),
        (
            r#"{"jwtRules": [{"issuer": "a", "jwks": "{\"keys\": [{\"kty\": \"RSA\", \"n\": \"*\", \"e\": \"AQAB\"}]}"}]}"#,
            "jwtRules[0].jwks: keys[0]",
        ),
        (
            r#"{"jwtRules": [{"issuer": "a", "jwksUri": "ftp://x/k"}]}"#,
            "jwtRules[0].jwksUri: must be an http:// or https:// URL",
        ),
        (
            r#"{"jwtRules": [{"issuer": "a", "jwksUri": "http://x:99999/k"}]}"#,
            "jwtRules[0].jwksUri: has an invalid port",
        ),
        (
            r#"{"jwtRules": [{"issuer": "a", "jwksUri": "http://x/k"}, {"issuer": "a", "jwksUri": "http://y/k"}]}"#,
            "jwtRules[1].issuer: duplicate issuer",
        ),
        (
            r#"{"jwtRules": [{"issuer": "a", "jwksUri": "http://x/k", "fromHeaders": [{"name": "bad header"}]}]}"#,
            "jwtRules[0].fromHeaders[0].name",
        ),
        (
            r#"{"jwtRules": [{"issuer": "a", "jwksUri": "http://x/k", "outputClaimToHeaders": [{"header": "x", "claim": "a..b"}]}]}"#,
            "jwtRules[0].outputClaimToHeaders[0].claim",
        ),
        (
            r#"{"jwtRules": [{"issuer": "a", "jwksUri": "http://x/k", "forward": true}]}"#,
            "jwtRules[0].forward: unknown field `forward`",
        ),
        (r#"{"jwtRules": [], "clockSkew": "soon"}"#, "clockSkew:"),
        (
            r#"{"jwtRules": [], "jwksRefreshInterval": "0s"}"#,
            "jwksRefreshInterval: must be at least 1s",
        ),
    ];
    for (json, want) in cases {
        let error = error_of(json);
        assert!(
            error.contains(want),
            "for {json}\n  got:  {error}\n  want: {want}"
        );
    }
}

#[test]
fn only_the_position_serde_json_appends_is_cut_from_its_message() {
    assert_eq!(
        error_of(r#"{"policies": [{"nmae at line 1": "x"}]}"#),
        "policies[0].nmae at line 1: unknown field `nmae at line 1`, expected one of `name`, `action`, `provider`, `rules`, `dryRun`"
    );
    assert_eq!(
        error_of("{\n  \"clockSkew\": 1\n}"),
        "clockSkew: invalid type: integer `1`, expected a string"
    );
}

#[test]
fn closed_sets_refuse_other_names_in_the_filter_s_own_words() {
    let cases = [
        (
            r#"{"policies": [{"action": "ALOW"}]}"#,
            r#"policies[0].action: unknown action "ALOW" (CUSTOM, DENY, ALLOW)"#,
        ),
        (
            r#"{"policies": [{"action": "allow"}]}"#,
            r#"policies[0].action: unknown action "allow" (CUSTOM, DENY, ALLOW)"#,
        ),
        (
            r#"{"policies": [{"name": "a"}, {"action": "AUDIT"}]}"#,
            "policies[1].action: AUDIT is not supported",
        ),
        (
            r#"{"policies": [{"action": 1}]}"#,
            "policies[0].action: invalid type: integer `1`, expected a string",
        ),
        (
            r#"{"pathNormalization": "base"}"#,
            r#"pathNormalization: unknown value "base" (NONE, BASE, MERGE_SLASHES, DECODE_AND_MERGE_SLASHES)"#,
        ),
        (
            r#"{"pathNormalization": ["BASE"]}"#,
            "pathNormalization: invalid type: sequence, expected a string",
        ),
        (
            r#"{"signatureBackend": "Rust"}"#,
            r#"signatureBackend: unknown value "Rust" (auto, host, rust)"#,
        ),
        (
            "{\n  \"jwtRules\": [],\n  \"signatureBackend\": \"boringssl\"\n}",
            r#"signatureBackend: unknown value "boringssl" (auto, host, rust)"#,
        ),
        (
            r#"{"localReplyBody": "JSON"}"#,
            r#"localReplyBody: unknown value "JSON" (envoy, json)"#,
        ),
        (
            r#"{"auditRecord": "yes"}"#,
            "auditRecord: invalid type: string \"yes\", expected a boolean",
        ),
    ];
    for (json, want) in cases {
        assert_eq!(error_of(json), want, "for {json}");
    }
}

#[test]
fn closed_sets_accept_each_name_and_null_for_the_default() {
    let normalization = |json: &str| Config::parse(json.as_bytes()).unwrap().path_normalization;
    assert_eq!(
        normalization(r#"{"pathNormalization": "NONE"}"#),
        PathNormalization::None
    );
    assert_eq!(
        normalization(r#"{"pathNormalization": "BASE"}"#),
        PathNormalization::Base
    );
    assert_eq!(
        normalization(r#"{"pathNormalization": "DEFAULT"}"#),
        PathNormalization::Base
    );
    assert_eq!(
        normalization(r#"{"pathNormalization": "MERGE_SLASHES"}"#),
        PathNormalization::MergeSlashes
    );
    assert_eq!(
        normalization(r#"{"pathNormalization": "DECODE_AND_MERGE_SLASHES"}"#),
        PathNormalization::DecodeAndMergeSlashes
    );
    assert_eq!(
        normalization(r#"{"pathNormalization": null}"#),
        PathNormalization::Base
    );

    let backend = |json: &str| Config::parse(json.as_bytes()).unwrap().signature_backend;
    assert_eq!(
        backend(r#"{"signatureBackend": "auto"}"#),
        SignatureBackendChoice::Auto
    );
    assert_eq!(
        backend(r#"{"signatureBackend": "host"}"#),
        SignatureBackendChoice::Host
    );
    assert_eq!(
        backend(r#"{"signatureBackend": "rust"}"#),
        SignatureBackendChoice::Rust
    );
    assert_eq!(
        backend(r#"{"signatureBackend": null}"#),
        SignatureBackendChoice::Auto
    );
    assert_eq!(backend("{}"), SignatureBackendChoice::Auto);

    let body = |json: &str| Config::parse(json.as_bytes()).unwrap().local_reply_body;
    assert_eq!(body(r#"{"localReplyBody": "json"}"#), LocalReplyBody::Json);
    assert_eq!(
        body(r#"{"localReplyBody": "envoy"}"#),
        LocalReplyBody::Envoy
    );
    assert_eq!(body(r#"{"localReplyBody": null}"#), LocalReplyBody::Envoy);
    assert_eq!(body("{}"), LocalReplyBody::Envoy);

    let audit = |json: &str| Config::parse(json.as_bytes()).unwrap().audit_record;
    assert!(audit(r#"{"auditRecord": true}"#));
    assert!(!audit("{}"), "opt-in");

    let policies = Config::parse(
        br#"{"extensionProviders": [{"name": "p", "envoyExtAuthzHttp": {"service": "s", "port": 80}}],
             "policies": [{"action": "CUSTOM", "provider": {"name": "p"}}, {"action": "DENY"},
                          {"action": "ALLOW"}, {"action": null}, {}]}"#,
    )
    .unwrap()
    .policies;
    assert_eq!(
        (
            policies.custom.len(),
            policies.deny.len(),
            policies.allow.len()
        ),
        (1, 1, 3)
    );
}

#[test]
fn an_https_issuer_without_keys_is_found_by_openid_discovery() {
    let config = Config::parse(
        br#"{"jwtRules": [{"issuer": "https://accounts.example:8443/realms/x", "timeout": "2s"}]}"#,
    )
    .unwrap();
    let crate::jwt::KeySource::Discovery {
        uri,
        cluster,
        authority,
        path,
        timeout,
        jwks_cluster,
    } = &config.jwt.rules[0].keys
    else {
        panic!("discovery");
    };
    assert_eq!(
        uri,
        "https://accounts.example:8443/realms/x/.well-known/openid-configuration"
    );
    assert_eq!(cluster, "outbound|8443||accounts.example");
    assert_eq!(authority, "accounts.example:8443");
    assert_eq!(path, "/realms/x/.well-known/openid-configuration");
    assert_eq!(*timeout, Duration::from_secs(2));
    assert_eq!(*jwks_cluster, None);
    for (json, want) in [
        (
            r#"{"jwtRules": [{"issuer": "http://issuer.example"}]}"#,
            "jwtRules[0].issuer: OpenID discovery needs an https:// issuer",
        ),
        (
            r#"{"jwtRules": [{"issuer": "https://issuer.example/?x=1"}]}"#,
            "jwtRules[0].issuer: an issuer for OpenID discovery has no query or fragment",
        ),
        (
            r#"{"jwtRules": [{"issuer": "testing@asm.test.io"}]}"#,
            "jwtRules[0]: one of jwks or jwksUri is required, or an https:// issuer",
        ),
    ] {
        let error = error_of(json);
        assert!(error.starts_with(want), "got: {error}\nwant: {want}");
    }
}
