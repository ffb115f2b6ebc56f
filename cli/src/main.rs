//! `inline-authz`: host-side tooling built from the filter's own configuration code.
//!
//! - `inline-authz check FILE...` validates plugin configurations (JSON or YAML) and Istio
//!   manifests (every `WasmPlugin` document's `spec.pluginConfig`), naming the field of each error.
//! - `inline-authz schema` prints the JSON Schema of the plugin configuration.

use std::process::ExitCode;

use inline_authz::config::Config;

const USAGE: &str =
    "usage: inline-authz check FILE...   validate plugin configurations or WasmPlugin manifests
       inline-authz schema          print the JSON Schema of the plugin configuration";

/// One configuration found in a file, with where it came from.
struct Found {
    place: String,
    config: serde_json::Value,
}

/// The configurations in a file: the file itself (JSON or a YAML document that is not a
/// Kubernetes object), or the `spec.pluginConfig` of each `WasmPlugin` document.
fn configurations(path: &str, text: &str) -> Result<Vec<Found>, String> {
    let mut found = Vec::new();
    for (index, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let value = serde_yaml::Value::deserialize(document)
            .map_err(|e| format!("{path}: not YAML or JSON: {e}"))?;
        if value.is_null() {
            continue;
        }
        let json =
            serde_json::to_value(&value).map_err(|e| format!("{path}: document {index}: {e}"))?;
        match json.get("kind").and_then(|k| k.as_str()) {
            Some("WasmPlugin") => {
                let name = json["metadata"]["name"].as_str().unwrap_or("?");
                let config = json["spec"]
                    .get("pluginConfig")
                    .cloned()
                    .unwrap_or(serde_json::json!({}));
                found.push(Found {
                    place: format!("{path}: WasmPlugin {name} (document {index})"),
                    config,
                });
            }
            Some(_) => {}
            None => found.push(Found {
                place: format!("{path}: document {index}"),
                config: json,
            }),
        }
    }
    Ok(found)
}

use serde::Deserialize as _;

fn check(paths: &[String]) -> ExitCode {
    if paths.is_empty() {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    }
    let mut failed = false;
    for path in paths {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) => {
                println!("{path}: cannot read: {e}");
                failed = true;
                continue;
            }
        };
        let found = match configurations(path, &text) {
            Ok(found) => found,
            Err(e) => {
                println!("{e}");
                failed = true;
                continue;
            }
        };
        if found.is_empty() {
            println!("{path}: no plugin configuration (no WasmPlugin document)");
            failed = true;
        }
        for Found { place, config } in found {
            let bytes = serde_json::to_vec(&config).unwrap_or_default();
            match Config::parse(&bytes) {
                Ok(config) => println!(
                    "{place}: ok ({} JWT rule(s), {} provider(s), {} CUSTOM / {} DENY / {} ALLOW policies)",
                    config.jwt.rules.len(),
                    config.providers.len(),
                    config.policies.custom.len(),
                    config.policies.deny.len() + config.policies.dry_deny.len(),
                    config.policies.allow.len() + config.policies.dry_allow.len()
                ),
                Err(error) => {
                    println!("{place}: invalid configuration: {error}");
                    failed = true;
                }
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("check") => check(&args[1..]),
        Some("schema") => {
            println!(
                "{}",
                serde_json::to_string_pretty(&inline_authz::config::json_schema())
                    .unwrap_or_default()
            );
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}
