//! Configuration as Envoy sees it: a bad plugin configuration makes Envoy refuse the filter with
//! the filter's one-line message naming the field; every shipped scenario configuration loads.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use testbed::envoy::{repo_root, validate, Envoy};
use testbed::scenario::{render_config, Listener, Ports};

fn config_with(plugin: &str) -> String {
    render_config(&[Listener::wasm("only", plugin)], Ports::unused(), false).unwrap()
}

#[test]
fn bad_configurations_are_refused_with_the_field_named() {
    let cases = [
        (r#"{"policies": [{"action": "ALOW"}]}"#, r#"invalid configuration: policies[0].action: unknown action "ALOW""#),
        (r#"{"policies": [{"action": "CUSTOM", "provider": {"name": "missing"}}]}"#, "invalid configuration: policies[0].provider.name: no extension provider named \"missing\""),
        (r#"{"policies": [{"rules": [{"from": [{"source": {"ipBlocks": ["300.1.1.1"]}}]}]}]}"#, "invalid configuration: policies[0].rules[0].from[0].source.ipBlocks[0]"),
        (r#"{"extensionProviders": [{"name": "p", "envoyExtAuthzHttp": {"service": "s", "port": 1, "timeout": "ten"}}]}"#, "invalid configuration: extensionProviders[0].envoyExtAuthzHttp.timeout"),
        (r#"{"extensionProvider": []}"#, "invalid configuration: extensionProvider: unknown field `extensionProvider`, expected one of"),
        ("{not json", "invalid configuration:"),
    ];
    for (plugin, message) in cases {
        let output = validate(&config_with(plugin)).expect_err(plugin);
        let line = output
            .lines()
            .find(|l| l.contains("invalid configuration:"))
            .unwrap_or_else(|| panic!("{plugin}: no message in\n{output}"));
        assert!(
            line.contains(message),
            "{plugin}\n  want: {message}\n  got:  {line}"
        );
    }
}

#[test]
fn a_running_envoy_with_a_bad_configuration_does_not_start_the_listener() {
    let error = match Envoy::start(&config_with(r#"{"policies": [{"action": "AUDIT"}]}"#)) {
        Ok(_) => panic!("Envoy must refuse the listener"),
        Err(error) => error,
    };
    assert!(
        error.contains("invalid configuration: policies[0].action: AUDIT is not supported"),
        "{error}"
    );
}

#[test]
fn every_scenario_configuration_loads_in_envoy() {
    let dir = repo_root().join("envoy/scenarios");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if !name.ends_with(".json") || name.ends_with(".native.json") {
            continue;
        }
        let plugin = std::fs::read_to_string(&path).unwrap();
        validate(&config_with(&plugin)).unwrap_or_else(|e| panic!("{name}: {e}"));
        checked += 1;
    }
    assert!(checked >= 3, "scenario files found: {checked}");
}
