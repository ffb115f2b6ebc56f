//! The `inline-authz` command: checks configurations and manifests with the filter's own parser,
//! and prints a JSON Schema that stays in sync with the committed copy.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_inline-authz"))
        .args(args)
        .current_dir(root())
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn the_committed_schema_is_the_generated_one() {
    let output = run(&["schema"]);
    assert!(output.status.success());
    let generated: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let committed: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("schema/plugin-config.schema.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        generated, committed,
        "run `cargo run -p inline-authz-cli -- schema > schema/plugin-config.schema.json`"
    );
}

#[test]
fn the_schema_accepts_every_shipped_configuration_and_refuses_unknown_fields() {
    let script = r#"
import glob, json, sys, jsonschema
schema = json.load(open("schema/plugin-config.schema.json"))
validator = jsonschema.Draft202012Validator(schema)
files = [f for f in glob.glob("envoy/scenarios/*.json") if not f.endswith(".native.json")]
assert files, "no scenario files"
for f in files:
    errors = list(validator.iter_errors(json.load(open(f))))
    assert not errors, (f, [e.message for e in errors])
bad = {"policies": [{"action": "ALLOW", "rules": [{"to": [{"operation": {"pahts": ["/x"]}}]}]}]}
assert list(validator.iter_errors(bad)), "an unknown field must be refused"
print("checked", len(files), "files")
"#;
    let output = Command::new("python3")
        .arg("-c")
        .arg(script)
        .current_dir(root())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}{}",
        stdout(&output),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn good_configurations_and_manifests_pass() {
    let output = run(&[
        "check",
        "envoy/scenarios/tutorial.json",
        "cli/tests/fixtures/wasmplugin.yaml",
    ]);
    let text = stdout(&output);
    assert!(output.status.success(), "{text}");
    assert!(
        text.contains(
            "envoy/scenarios/tutorial.json: document 0: ok (0 JWT rule(s), 1 provider(s), 1 CUSTOM"
        ),
        "{text}"
    );
    assert!(
        text.contains("WasmPlugin inline-authz (document 0): ok"),
        "{text}"
    );
    assert!(
        !text.contains("document 1"),
        "the Service is not a plugin configuration: {text}"
    );
}

#[test]
fn a_bad_configuration_is_explained_with_its_field_path() {
    let output = run(&["check", "cli/tests/fixtures/bad-config.yaml"]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stdout(&output).trim(),
        "cli/tests/fixtures/bad-config.yaml: document 0: invalid configuration: policies[1].action: unknown action \"ALOW\" (CUSTOM, DENY, ALLOW)"
    );
}

#[test]
fn usage_errors_and_missing_files_fail() {
    assert_eq!(run(&[]).status.code(), Some(2));
    assert_eq!(run(&["check"]).status.code(), Some(2));
    let missing = run(&["check", "no/such/file.yaml"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(stdout(&missing).contains("cannot read"));
}

#[test]
fn every_istio_example_manifest_passes_the_checker() {
    let mut files: Vec<String> = std::fs::read_dir(root().join("examples/istio"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .map(|p| p.strip_prefix(root()).unwrap().display().to_string())
        .collect();
    files.sort();
    assert!(files.len() >= 5, "{files:?}");
    let mut args = vec!["check"];
    args.extend(files.iter().map(String::as_str));
    let output = run(&args);
    assert!(output.status.success(), "{}", stdout(&output));
    assert_eq!(
        stdout(&output)
            .lines()
            .filter(|l| l.contains(": ok ("))
            .count(),
        files.len()
    );
}

#[test]
fn the_schema_lists_the_closed_sets_the_parser_accepts() {
    use inline_authz::config::Config;
    let schema = inline_authz::config::json_schema();
    let values = |definition: &str| -> Vec<String> {
        schema["$defs"][definition]["enum"]
            .as_array()
            .unwrap_or_else(|| panic!("$defs.{definition}.enum"))
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(values("Action"), ["CUSTOM", "DENY", "ALLOW"]);
    assert_eq!(
        values("PathNormalization"),
        [
            "NONE",
            "BASE",
            "MERGE_SLASHES",
            "DECODE_AND_MERGE_SLASHES",
            "DEFAULT"
        ]
    );
    assert_eq!(values("SignatureBackend"), ["auto", "host", "rust"]);
    let provider = r#""extensionProviders": [{"name": "p", "envoyExtAuthzHttp": {"service": "s", "port": 80}}]"#;
    let mut configs = Vec::new();
    for action in values("Action") {
        let named = if action == "CUSTOM" {
            r#", "provider": {"name": "p"}"#
        } else {
            ""
        };
        configs.push(format!(
            r#"{{{provider}, "policies": [{{"action": "{action}"{named}}}]}}"#
        ));
    }
    configs.extend(
        values("PathNormalization")
            .iter()
            .map(|v| format!(r#"{{"pathNormalization": "{v}"}}"#)),
    );
    configs.extend(
        values("SignatureBackend")
            .iter()
            .map(|v| format!(r#"{{"signatureBackend": "{v}"}}"#)),
    );
    for config in &configs {
        if let Err(e) = Config::parse(config.as_bytes()) {
            panic!("{config}: {e}");
        }
    }

    let script = r#"
import json, jsonschema
validator = jsonschema.Draft202012Validator(json.load(open("schema/plugin-config.schema.json")))
for bad in [{"policies": [{"action": "ALOW"}]}, {"policies": [{"action": "AUDIT"}]},
            {"pathNormalization": "base"}, {"signatureBackend": "Rust"}]:
    assert list(validator.iter_errors(bad)), ("the schema must refuse", bad)
for good in [{"policies": [{"action": None}]}, {"pathNormalization": None}, {"signatureBackend": None}]:
    assert not list(validator.iter_errors(good)), ("the schema must accept", good)
"#;
    let output = Command::new("python3")
        .arg("-c")
        .arg(script)
        .current_dir(root())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}{}",
        stdout(&output),
        String::from_utf8_lossy(&output.stderr)
    );
}
