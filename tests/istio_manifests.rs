//! The Istio `WasmPlugin` examples in `examples/istio/` never rot: every manifest matches Istio's
//! CRD schemas (`scripts/check-manifests`), every `pluginConfig` loads with the filter's own
//! parser, and each plugin is deployed the way an authentication plugin must be (phase AUTHN,
//! FAIL_CLOSE, a pinned module, Istio's cluster names). The `in_envoy_*` tests run the manifests'
//! `pluginConfig`s unchanged in a real Envoy (as Istio does: no `allow_on_headers_stop_iteration`,
//! the callout through `outbound|8000||ext-authz.default.svc.cluster.local`, or over gRPC through
//! `outbound|9000||ext-authz.default.svc.cluster.local`) and check the expected results table of
//! `examples/istio/README.md`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::LazyLock;

use inline_authz::config::Config;
use inline_authz::ext_authz::Service;
use inline_authz::jwt::KeySource;
use serde::Deserialize;
use serde_json::{json, Value as Json};
use serde_yaml::Value as Yaml;
use testbed::compare::{observe, Observed};
use testbed::envoy::repo_root;
use testbed::grpc::OVERRIDE_VALUE;
use testbed::http::Call;
use testbed::scenario::{Bed, Listener, GRPC_AUTHORITY, GRPC_CLUSTER};
use testbed::services::DENY_BODY;

const EXPECTED: [&str; 8] = [
    "combined.yaml",
    "custom-authz-grpc.yaml",
    "custom-authz-tutorial-file.yaml",
    "custom-authz-tutorial.yaml",
    "jwks-remote.yaml",
    "jwt-ingress-authn.yaml",
    "jwt-ingress-require-jwt.yaml",
    "jwt-ingress-require-principal.yaml",
];

fn examples_dir() -> PathBuf {
    repo_root().join("examples/istio")
}

fn manifest_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(examples_dir())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

fn file_name(path: &Path) -> String {
    path.file_name().unwrap().to_string_lossy().into_owned()
}

/// Every YAML document of a file, as JSON (what Kubernetes and Istio see).
fn documents(path: &Path) -> Vec<Json> {
    let text = std::fs::read_to_string(path).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| {
            let yaml = Yaml::deserialize(doc)
                .unwrap_or_else(|e| panic!("{}: not YAML: {e}", path.display()));
            serde_json::to_value(yaml).unwrap()
        })
        .filter(|doc| !doc.is_null())
        .collect()
}

/// `(file name, WasmPlugin document)` for every WasmPlugin in examples/istio/.
fn wasm_plugins() -> Vec<(String, Json)> {
    let plugins: Vec<(String, Json)> = manifest_files()
        .iter()
        .flat_map(|path| {
            documents(path)
                .into_iter()
                .filter(|doc| doc["kind"] == "WasmPlugin")
                .map(move |doc| (file_name(path), doc))
        })
        .collect();
    assert!(!plugins.is_empty(), "no WasmPlugin in examples/istio/");
    plugins
}

fn plugin_in(file: &str) -> Json {
    wasm_plugins()
        .into_iter()
        .find(|(name, _)| name == file)
        .unwrap_or_else(|| panic!("no WasmPlugin in {file}"))
        .1
}

fn parse(plugin_config: &Json) -> Result<Config, String> {
    Config::parse(&serde_json::to_vec(plugin_config).unwrap()).map_err(|e| e.to_string())
}

fn check_manifests(files: &[&Path]) -> Output {
    Command::new("python3")
        .arg(repo_root().join("scripts/check-manifests"))
        .args(files)
        .output()
        .expect("python3 runs scripts/check-manifests (needs pyyaml and jsonschema)")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn every_scenario_has_its_manifest() {
    let names: Vec<String> = manifest_files().iter().map(|p| file_name(p)).collect();
    for expected in EXPECTED {
        assert!(
            names.iter().any(|n| n == expected),
            "examples/istio/{expected} is missing (found {names:?})"
        );
    }
}

#[test]
fn every_manifest_matches_the_istio_crd_schemas() {
    let output = check_manifests(&[]);
    assert!(
        output.status.success(),
        "scripts/check-manifests failed:\n{}",
        text(&output)
    );
}

#[test]
fn every_plugin_config_loads_in_the_filter() {
    for (file, plugin) in wasm_plugins() {
        let config = &plugin["spec"]["pluginConfig"];
        assert!(config.is_object(), "{file}: spec.pluginConfig is missing");
        if let Err(e) = parse(config) {
            panic!(
                "{file}: spec.pluginConfig is refused by the filter: invalid configuration: {e}"
            );
        }
    }
}

#[test]
fn every_plugin_authenticates_first_fails_closed_and_pins_its_module() {
    for (file, plugin) in wasm_plugins() {
        let spec = &plugin["spec"];
        assert_eq!(spec["phase"], "AUTHN", "{file}: phase");
        assert_eq!(spec["failStrategy"], "FAIL_CLOSE", "{file}: failStrategy");
        assert!(spec["priority"].is_i64(), "{file}: priority is not set");
        let url = spec["url"].as_str().unwrap_or_default();
        if url.starts_with("oci://") {
            let sha256 = spec["sha256"].as_str().unwrap_or_default();
            assert!(
                sha256.len() == 64 && sha256.bytes().all(|b| b.is_ascii_hexdigit()),
                "{file}: an oci:// module needs sha256 (64 hex digits), got {sha256:?}"
            );
            assert_eq!(spec["imagePullPolicy"], "IfNotPresent", "{file}");
        } else {
            assert!(
                url.starts_with("file://"),
                "{file}: url {url:?} is neither oci:// nor file://"
            );
            assert!(
                spec.get("sha256").is_none() && spec.get("imagePullPolicy").is_none(),
                "{file}: Istio ignores sha256 and imagePullPolicy for a file:// module"
            );
        }
        let selector = &spec["selector"]["matchLabels"];
        assert!(
            selector["istio"] == "ingressgateway" || selector["app"] == "httpbin",
            "{file}: selects {selector}, not the ingress gateway or httpbin"
        );
    }
    let schemes: Vec<String> = wasm_plugins()
        .iter()
        .map(|(_, p)| {
            p["spec"]["url"]
                .as_str()
                .unwrap()
                .split("://")
                .next()
                .unwrap()
                .to_string()
        })
        .collect();
    assert!(schemes.iter().any(|s| s == "oci") && schemes.iter().any(|s| s == "file"));
}

#[test]
fn the_tutorial_manifests_carry_the_tutorial_scenario_tested_in_envoy() {
    let scenario: Json = serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("envoy/scenarios/tutorial.json")).unwrap(),
    )
    .unwrap();
    for file in [
        "custom-authz-tutorial.yaml",
        "custom-authz-tutorial-file.yaml",
    ] {
        assert_eq!(
            plugin_in(file)["spec"]["pluginConfig"],
            scenario,
            "{file}: pluginConfig differs from envoy/scenarios/tutorial.json (tests/tutorial.rs)"
        );
    }
}

#[test]
fn callout_clusters_follow_istio_naming() {
    for file in ["custom-authz-tutorial.yaml", "combined.yaml"] {
        let config = parse(&plugin_in(file)["spec"]["pluginConfig"]).unwrap();
        assert_eq!(
            config.custom_provider().unwrap().cluster,
            "outbound|8000||ext-authz.default.svc.cluster.local",
            "{file}"
        );
    }
    let config = parse(&plugin_in("custom-authz-grpc.yaml")["spec"]["pluginConfig"]).unwrap();
    let provider = config.custom_provider().unwrap();
    assert_eq!(provider.cluster, GRPC_CLUSTER);
    let Service::Grpc(grpc) = &provider.service else {
        panic!("custom-authz-grpc.yaml: the CUSTOM provider is not a gRPC one");
    };
    assert_eq!(grpc.authority, GRPC_AUTHORITY, "Istio's :authority");
}

#[test]
fn remote_keys_come_through_the_service_entry_cluster_with_tls_origination() {
    let path = examples_dir().join("jwks-remote.yaml");
    let docs = documents(&path);
    let plugin = docs.iter().find(|d| d["kind"] == "WasmPlugin").unwrap();
    let config = parse(&plugin["spec"]["pluginConfig"]).unwrap();
    let KeySource::Remote { cluster, uri, .. } = &config.jwt.rules[0].keys else {
        panic!("jwks-remote.yaml: jwtRules[0] does not use jwksUri");
    };
    assert_eq!(uri, "https://issuer.example/.well-known/jwks.json");
    assert_eq!(cluster, "outbound|443||issuer.example");

    let entry = docs.iter().find(|d| d["kind"] == "ServiceEntry").unwrap();
    assert_eq!(entry["spec"]["hosts"], json!(["issuer.example"]));
    assert_eq!(entry["spec"]["ports"][0]["number"], 443);
    let rule = docs
        .iter()
        .find(|d| d["kind"] == "DestinationRule")
        .unwrap();
    assert_eq!(rule["spec"]["host"], "issuer.example");
    assert_eq!(rule["spec"]["trafficPolicy"]["tls"]["mode"], "SIMPLE");
    for doc in [plugin, entry, rule] {
        assert_eq!(doc["metadata"]["namespace"], "istio-system");
    }
}

#[test]
fn inline_keys_are_the_fixture_key_so_the_fixture_tokens_verify() {
    let vectors: Json = serde_json::from_str(include_str!("fixtures/jwt/vectors.json")).unwrap();
    let rsa = vectors["jwks"]["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == "rsa-1")
        .unwrap();
    let mut inline = 0;
    for (file, plugin) in wasm_plugins() {
        let Some(rules) = plugin["spec"]["pluginConfig"]["jwtRules"].as_array() else {
            continue;
        };
        for rule in rules.iter().filter(|r| r.get("jwks").is_some()) {
            let jwks: Json = serde_json::from_str(rule["jwks"].as_str().unwrap()).unwrap();
            assert_eq!(jwks["keys"], json!([rsa]), "{file}: jwks");
            assert_eq!(rule["issuer"], vectors["issuer"], "{file}: issuer");
            inline += 1;
        }
    }
    assert!(inline >= 4, "the JWT scenarios use an inline jwks");
}

#[test]
fn a_misspelled_field_is_refused_by_the_filter() {
    let mut config = plugin_in("jwt-ingress-require-jwt.yaml")["spec"]["pluginConfig"].clone();
    let policies = config.as_object_mut().unwrap().remove("policies").unwrap();
    config["policy"] = policies;
    let error = parse(&config).expect_err("a pluginConfig with `policy` must be refused");
    assert!(
        error.contains("unknown field `policy`"),
        "unexpected message: {error}"
    );
}

#[test]
fn an_unknown_policy_field_is_refused_by_the_schema_check() {
    let mut docs = documents(&examples_dir().join("combined.yaml"));
    docs[0]["spec"]["pluginConfig"]["policies"][1]["rule"] = json!([{}]);
    let yaml = serde_yaml::to_string(&docs[0]).unwrap();
    let path = std::env::temp_dir().join(format!(
        "inline-authz-bad-policy-{}.yaml",
        std::process::id()
    ));
    std::fs::write(&path, yaml).unwrap();
    let output = check_manifests(&[path.as_path()]);
    let _ = std::fs::remove_file(&path);
    let out = text(&output);
    assert_eq!(output.status.code(), Some(1), "{out}");
    assert!(
        out.contains("document 0: spec.pluginConfig.policies[1]: Additional properties are not allowed ('rule' was unexpected)"),
        "{out}"
    );
    // The filter refuses the same field: neither side lets it through silently.
    let error = parse(&docs[0]["spec"]["pluginConfig"]).expect_err("the filter accepted `rule`");
    assert!(
        error.contains("policies[1]") && error.contains("rule"),
        "{error}"
    );
}

/// The manifests that need no cluster but the authorization service's, one listener each, named
/// after the file.
const IN_ENVOY: [&str; 6] = [
    "custom-authz-tutorial.yaml",
    "custom-authz-grpc.yaml",
    "jwt-ingress-authn.yaml",
    "jwt-ingress-require-jwt.yaml",
    "jwt-ingress-require-principal.yaml",
    "combined.yaml",
];

static BED: LazyLock<Bed> = LazyLock::new(|| {
    let listeners: Vec<Listener> = IN_ENVOY
        .iter()
        .map(|file| {
            let config = plugin_in(file)["spec"]["pluginConfig"].to_string();
            Listener::wasm_without_header_hold(file.trim_end_matches(".yaml"), &config)
        })
        .collect();
    Bed::start(&listeners)
});

static VECTORS: LazyLock<Json> =
    LazyLock::new(|| serde_json::from_str(include_str!("fixtures/jwt/vectors.json")).unwrap());

fn token(group: &str, name: &str) -> String {
    VECTORS[group][name].as_str().unwrap().to_string()
}

/// `GET <path>` to the gateway with these extra headers (`authorization: Bearer …` for a token).
fn request(path: &str, token: Option<String>, headers: &[(&str, &str)]) -> impl Fn(&str) -> Call {
    let path = path.to_string();
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    move |mark: &str| {
        let mut call = Call::get(&format!("{path}?{mark}")).header("host", "gateway.example");
        if let Some(token) = &token {
            call = call.header("authorization", &format!("Bearer {token}"));
        }
        for (name, value) in &headers {
            call = call.header(name, value);
        }
        call
    }
}

fn send(manifest: &str, make: impl Fn(&str) -> Call) -> Observed {
    observe(&BED, manifest.trim_end_matches(".yaml"), &make)
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

fn upstream_header(seen: &Observed, name: &str) -> Option<String> {
    header(seen.upstream.as_ref()?, name).map(str::to_string)
}

/// The realm is the request's URL, as Envoy's `jwt_authn` writes it.
fn realm(seen: &Observed) -> String {
    let challenge = seen.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge.starts_with(r#"Bearer realm="http://gateway.example/"#),
        "www-authenticate: {challenge:?}"
    );
    challenge.to_string()
}

fn assert_invalid_token(seen: &Observed) {
    assert_eq!(seen.status, 401);
    assert!(realm(seen).ends_with(r#"", error="invalid_token""#));
    assert_eq!(
        seen.body,
        "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections"
    );
    assert_eq!(seen.body.len(), 79, "the guide's content-length");
}

fn assert_jwt_missing(seen: &Observed) {
    assert_eq!((seen.status, seen.body.as_str()), (401, "Jwt is missing"));
    assert!(
        !realm(seen).contains("error="),
        "no error code without a token (RFC 6750)"
    );
}

#[test]
fn in_envoy_the_tutorial_manifest_answers_as_the_tutorial() {
    let file = "custom-authz-tutorial.yaml";
    let ip = send(file, request("/ip", None, &[]));
    assert_eq!(ip.status, 200);
    assert!(ip.authz.is_empty(), "/ip is not checked");

    let denied = send(file, request("/headers", None, &[("x-ext-authz", "deny")]));
    assert_eq!(denied.status, 403);
    assert_eq!(denied.header("x-ext-authz-check-result"), Some("denied"));
    assert_eq!(denied.body, DENY_BODY);

    let allowed = send(file, request("/headers", None, &[("x-ext-authz", "allow")]));
    assert_eq!(allowed.status, 200);
    assert_eq!(
        upstream_header(&allowed, "x-ext-authz-check-result").as_deref(),
        Some("allowed")
    );
}

#[test]
fn in_envoy_the_grpc_manifest_answers_as_the_tutorial() {
    let file = "custom-authz-grpc.yaml";
    let ip = send(file, request("/ip", None, &[]));
    assert_eq!(ip.status, 200);
    assert!(
        ip.grpc.is_empty() && ip.authz.is_empty(),
        "/ip is not checked"
    );

    let denied = send(file, request("/headers", None, &[("x-ext-authz", "deny")]));
    assert_eq!(denied.status, 403);
    assert_eq!(denied.header("x-ext-authz-check-result"), Some("denied"));
    assert_eq!(denied.body, DENY_BODY);
    assert_eq!(denied.grpc.len(), 1, "one CheckRequest");
    assert!(denied.authz.is_empty(), "nothing over HTTP");
    assert!(denied.upstream.is_none());

    let allowed = send(file, request("/headers", None, &[("x-ext-authz", "allow")]));
    assert_eq!(allowed.status, 200);
    assert_eq!(allowed.grpc.len(), 1);
    assert_eq!(
        allowed.grpc[0]["attributes"]["request"]["http"]["headers"]["x-ext-authz"], "allow",
        "every request header goes to the service"
    );
    assert_eq!(
        upstream_header(&allowed, "x-ext-authz-check-result").as_deref(),
        Some("allowed")
    );
    assert_eq!(
        upstream_header(&allowed, "x-ext-authz-additional-header-override").as_deref(),
        Some(OVERRIDE_VALUE)
    );
}

#[test]
fn in_envoy_the_jwt_manifests_answer_the_ingress_guide_tables() {
    let valid = || Some(token("valid", "RS256"));
    let iss_only = || Some(token("cases", "iss_only"));
    let invalid = || Some("invalidToken".to_string());

    let file = "jwt-ingress-authn.yaml";
    assert_eq!(send(file, request("/", valid(), &[])).status, 200);
    assert_invalid_token(&send(file, request("/", invalid(), &[])));
    assert_eq!(send(file, request("/", None, &[])).status, 200);

    let file = "jwt-ingress-require-jwt.yaml";
    assert_jwt_missing(&send(file, request("/", None, &[])));
    assert_eq!(send(file, request("/", valid(), &[])).status, 200);
    assert_eq!(send(file, request("/", iss_only(), &[])).status, 200);
    assert_invalid_token(&send(file, request("/", invalid(), &[])));

    let file = "jwt-ingress-require-principal.yaml";
    let no_sub = send(file, request("/", iss_only(), &[]));
    assert_eq!(
        (no_sub.status, no_sub.body.as_str()),
        (403, "RBAC: access denied")
    );
    assert_eq!(send(file, request("/", valid(), &[])).status, 200);
    assert_jwt_missing(&send(file, request("/", None, &[])));
}

#[test]
fn in_envoy_the_combined_manifest_sends_the_verified_subject_to_the_authorization_service() {
    let file = "combined.yaml";
    let valid = || Some(token("valid", "RS256"));
    let allow = [("x-ext-authz", "allow")];
    let deny = [("x-ext-authz", "deny")];

    let ip = send(file, request("/ip", valid(), &[]));
    assert_eq!(ip.status, 200);
    assert!(ip.authz.is_empty(), "/ip is not checked");
    assert_jwt_missing(&send(file, request("/ip", None, &[])));

    let allowed = send(file, request("/headers", valid(), &allow));
    assert_eq!(allowed.status, 200);
    assert_eq!(allowed.authz.len(), 1);
    assert_eq!(
        header(&allowed.authz[0].2, "x-jwt-sub"),
        Some("demo@asm.test.io"),
        "the service receives the verified subject"
    );
    assert_eq!(
        upstream_header(&allowed, "x-jwt-sub").as_deref(),
        Some("demo@asm.test.io")
    );
    assert_eq!(
        upstream_header(&allowed, "x-ext-authz-check-result").as_deref(),
        Some("allowed")
    );

    let denied = send(file, request("/headers", valid(), &deny));
    assert_eq!(denied.status, 403);
    assert_eq!(denied.header("x-ext-authz-check-result"), Some("denied"));

    let tokenless = send(file, request("/headers", None, &allow));
    assert_jwt_missing(&tokenless);
    assert_eq!(tokenless.authz.len(), 1, "CUSTOM is evaluated before ALLOW");
    assert_eq!(header(&tokenless.authz[0].2, "x-jwt-sub"), None);
    assert_eq!(send(file, request("/headers", None, &deny)).status, 403);

    let invalid = send(
        file,
        request("/headers", Some("invalidToken".into()), &allow),
    );
    assert_invalid_token(&invalid);
    assert!(
        invalid.authz.is_empty(),
        "an invalid token is refused before the callout"
    );

    let spoofed = send(
        file,
        request(
            "/headers",
            None,
            &[("x-ext-authz", "allow"), ("x-jwt-sub", "admin")],
        ),
    );
    assert_eq!(
        header(&spoofed.authz[0].2, "x-jwt-sub"),
        None,
        "client x-jwt-sub is removed"
    );
}
