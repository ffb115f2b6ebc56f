//! The docker-compose example (`examples/compose/`), checked without Docker: the compose file is
//! valid against the Compose specification and mounts the Envoy config and the built filter where
//! that config expects them; the mounted Envoy config (`envoy/compose.yaml`) passes
//! `envoy --mode validate` with the filter loaded; and the same file, with the container names and
//! ports replaced by loopback addresses as text, replays the ASM tutorial's three requests in a
//! real Envoy in front of the sample ext-authz service and the httpbin-like echo upstream, and the
//! deny / allow pair of the gRPC provider against the test bed's gRPC server (Istio's sample's
//! answers).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::fs;
use std::path::PathBuf;
use std::process::Command;

use serde_yaml::Value;
use testbed::envoy::{repo_root, validate, wasm_path, Envoy};
use testbed::grpc::{GrpcAuthz, OVERRIDE_VALUE};
use testbed::http::Call;
use testbed::services::{self, DENY_BODY, RESULT_HEADER};

/// Paths as written in the compose file (relative to `examples/compose/`).
const ENVOY_CONFIG_SOURCE: &str = "../../envoy/compose.yaml";
const WASM_SOURCE: &str = "../../target/wasm32-wasip1/release/inline_authz.wasm";
/// Where the container sees them.
const ENVOY_CONFIG_TARGET: &str = "/etc/envoy/envoy.yaml";
const WASM_TARGET: &str = "/etc/envoy/inline_authz.wasm";

/// The Envoy config's addresses, each written once, on one line, in `envoy/compose.yaml`.
const ADMIN_ADDRESS: &str = "{address: 0.0.0.0, port_value: 9901}";
const LISTENER_ADDRESS: &str = "{address: 0.0.0.0, port_value: 10000}";
const EXT_AUTHZ_ADDRESS: &str = "{address: ext-authz, port_value: 8000}";
const EXT_AUTHZ_GRPC_ADDRESS: &str = "{address: ext-authz, port_value: 9000}";
const HTTPBIN_ADDRESS: &str = "{address: httpbin, port_value: 80}";
const LISTENER: &str = "ingress";

fn example_dir() -> PathBuf {
    repo_root().join("examples/compose")
}

fn compose_file() -> PathBuf {
    example_dir().join("compose.yaml")
}

fn compose() -> Value {
    let text = fs::read_to_string(compose_file()).unwrap();
    serde_yaml::from_str(&text).unwrap()
}

/// `envoy/compose.yaml` as text: the file the compose example mounts.
fn envoy_config() -> String {
    fs::read_to_string(example_dir().join(ENVOY_CONFIG_SOURCE)).unwrap()
}

/// Replaces `from` by `to`, which must occur exactly once: if the file changes shape, the test
/// fails here instead of quietly running something other than what the containers run.
fn replace_once(text: &str, from: &str, to: &str) -> String {
    assert_eq!(
        text.matches(from).count(),
        1,
        "envoy/compose.yaml must contain `{from}` exactly once"
    );
    text.replace(from, to)
}

/// The mounted config with the container path of the filter replaced by this machine's.
fn config_for_this_host() -> String {
    let wasm = wasm_path().unwrap();
    replace_once(
        &envoy_config(),
        format!("filename: {WASM_TARGET}").as_str(),
        &format!("filename: {}", wasm.display()),
    )
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_sequence()
        .unwrap_or_else(|| panic!("expected a list, got {value:?}"))
        .iter()
        .map(|v| match v {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            other => panic!("expected a string, got {other:?}"),
        })
        .collect()
}

#[test]
fn compose_file_is_valid_against_the_compose_specification() {
    let output = Command::new("check-jsonschema")
        .args(["--builtin-schema", "vendor.compose-spec"])
        .arg(compose_file())
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run check-jsonschema ({e}): `pip install check-jsonschema`")
        });
    assert!(
        output.status.success(),
        "check-jsonschema refused examples/compose/compose.yaml:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn envoy_service_mounts_the_envoy_config_and_the_built_wasm() {
    let compose = compose();
    let services = &compose["services"];
    let names: BTreeSet<&str> = services
        .as_mapping()
        .unwrap()
        .keys()
        .map(|k| k.as_str().unwrap())
        .collect();
    assert_eq!(names, BTreeSet::from(["envoy", "ext-authz", "httpbin"]));
    assert_eq!(services["ext-authz"]["image"], "istio/ext-authz:0.6");
    assert_eq!(services["httpbin"]["image"], "kennethreitz/httpbin");

    let envoy = &services["envoy"];
    let image = envoy["image"].as_str().unwrap();
    assert!(
        image.starts_with("envoyproxy/envoy:") && image.contains("v1.40"),
        "{image}"
    );
    let command = strings(&envoy["command"]);
    assert!(
        command
            .windows(2)
            .any(|w| w[0] == "-c" && w[1] == ENVOY_CONFIG_TARGET),
        "envoy must be started with -c {ENVOY_CONFIG_TARGET}: {command:?}"
    );

    // Exactly the two read-only bind mounts, long syntax.
    let mounts: BTreeSet<(String, String)> = envoy["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| {
            assert_eq!(v["type"], "bind", "{v:?}");
            assert_eq!(v["read_only"], true, "mounts are read-only: {v:?}");
            (
                v["source"].as_str().unwrap().to_string(),
                v["target"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        mounts,
        BTreeSet::from([
            (ENVOY_CONFIG_SOURCE.into(), ENVOY_CONFIG_TARGET.into()),
            (WASM_SOURCE.into(), WASM_TARGET.into()),
        ])
    );
    assert!(
        example_dir().join(ENVOY_CONFIG_SOURCE).is_file(),
        "{ENVOY_CONFIG_SOURCE} (from examples/compose) is missing"
    );
    assert!(
        example_dir().join(WASM_SOURCE).is_file(),
        "{WASM_SOURCE} (from examples/compose) is missing: run `cargo wasm` first"
    );

    assert!(strings(&envoy["ports"]).contains(&"10000:10000".to_string()));
    let depends: BTreeSet<String> = strings(&envoy["depends_on"]).into_iter().collect();
    assert_eq!(
        depends,
        BTreeSet::from(["ext-authz".into(), "httpbin".into()])
    );

    // The Envoy config agrees with the compose file: the filter where it is mounted, the listener
    // on the published port, the clusters on the services' names and ports.
    let config = envoy_config();
    for address in [
        format!("filename: {WASM_TARGET}").as_str(),
        ADMIN_ADDRESS,
        LISTENER_ADDRESS,
        EXT_AUTHZ_ADDRESS,
        EXT_AUTHZ_GRPC_ADDRESS,
        HTTPBIN_ADDRESS,
    ] {
        assert_eq!(config.matches(address).count(), 1, "{address}");
    }
    assert_eq!(strings(&services["ext-authz"]["expose"]), ["8000", "9000"]);
    assert_eq!(strings(&services["httpbin"]["expose"]), ["80"]);
}

#[test]
fn envoy_validates_the_mounted_config_with_the_filter_loaded() {
    if let Err(output) = validate(&config_for_this_host()) {
        panic!("envoy --mode validate refused envoy/compose.yaml:\n{output}");
    }
}

#[test]
fn the_tutorial_runs_on_the_same_config_over_loopback() {
    let (authz, checks) = services::start_ext_authz().unwrap();
    let (upstream, forwarded) = services::start_echo().unwrap();
    let grpc = GrpcAuthz::start().unwrap();
    let mut config = config_for_this_host();
    for (from, to) in [
        (
            ADMIN_ADDRESS,
            "{address: 127.0.0.1, port_value: 0}".to_string(),
        ),
        (
            LISTENER_ADDRESS,
            "{address: 127.0.0.1, port_value: 0}".to_string(),
        ),
        (
            EXT_AUTHZ_ADDRESS,
            format!("{{address: 127.0.0.1, port_value: {}}}", authz.port()),
        ),
        (
            EXT_AUTHZ_GRPC_ADDRESS,
            format!("{{address: 127.0.0.1, port_value: {}}}", grpc.grpc_port()),
        ),
        (
            HTTPBIN_ADDRESS,
            format!("{{address: 127.0.0.1, port_value: {}}}", upstream.port()),
        ),
    ] {
        config = replace_once(&config, from, &to);
    }
    assert!(!config.contains("0.0.0.0"), "{config}");
    let envoy = Envoy::start(&config).unwrap();
    let port = envoy.port(LISTENER);

    // Test 1: /ip is not protected by the policy.
    let response = Call::get("/ip?test=1").send(port).unwrap();
    assert_eq!(response.status, 200, "{}", response.text());
    assert!(checks.with("test=1").is_empty(), "/ip is never checked");
    assert_eq!(forwarded.with("test=1").len(), 1);

    // Test 2: /headers with x-ext-authz: deny is refused with the service's answer.
    let response = Call::get("/headers?test=2")
        .header("x-ext-authz", "deny")
        .send(port)
        .unwrap();
    assert_eq!(response.status, 403, "{}", response.text());
    assert_eq!(response.get(RESULT_HEADER), Some("denied"));
    assert_eq!(response.text(), DENY_BODY);
    assert_eq!(checks.with("test=2").len(), 1);
    assert!(
        forwarded.with("test=2").is_empty(),
        "a denial never goes up"
    );

    // Test 3: /headers with x-ext-authz: allow reaches httpbin with the service's header.
    let response = Call::get("/headers?test=3")
        .header("x-ext-authz", "allow")
        .send(port)
        .unwrap();
    assert_eq!(response.status, 200, "{}", response.text());
    let headers = &response.json()["headers"];
    assert_eq!(headers["X-Ext-Authz"], "allow", "{headers}");
    assert_eq!(headers["X-Ext-Authz-Check-Result"], "allowed", "{headers}");
    assert_eq!(checks.with("test=3").len(), 1);
    assert_eq!(forwarded.with("test=3").len(), 1);
    assert!(
        grpc.all().is_empty(),
        "/ip and /headers are not checked over gRPC"
    );

    // The gRPC provider, on /anything: the same decision, from the answer's denied_response.
    let response = Call::get("/anything?test=4")
        .header("x-ext-authz", "deny")
        .send(port)
        .unwrap();
    assert_eq!(response.status, 403, "{}", response.text());
    assert_eq!(response.get(RESULT_HEADER), Some("denied"));
    assert_eq!(response.text(), DENY_BODY);
    assert_eq!(grpc.received("test=4").len(), 1);
    assert!(checks.with("test=4").is_empty(), "not checked over HTTP");
    assert!(forwarded.with("test=4").is_empty());

    // ... and its ok_response headers reach httpbin on allow.
    let response = Call::get("/anything?test=5")
        .header("x-ext-authz", "allow")
        .send(port)
        .unwrap();
    assert_eq!(response.status, 200, "{}", response.text());
    let headers = &response.json()["headers"];
    assert_eq!(headers["X-Ext-Authz-Check-Result"], "allowed", "{headers}");
    assert_eq!(
        headers["X-Ext-Authz-Additional-Header-Override"], OVERRIDE_VALUE,
        "{headers}"
    );
    assert_eq!(grpc.received("test=5").len(), 1);
    assert_eq!(forwarded.with("test=5").len(), 1);
}
