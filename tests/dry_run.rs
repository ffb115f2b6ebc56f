//! Dry-run DENY policies (`"dryRun": true`) in a real Envoy: for every kind of request property a
//! policy matches on, the dry-run policy lets every request through and counts in
//! `rbac.shadow_denied` and `policy.<name>.shadow_denied` exactly the requests the same policy,
//! enforced, answers `403 RBAC: access denied`; the others count in `rbac.shadow_allowed`.
//!
//! Each kind has two listeners, `<kind>` (enforced) and `<kind>-dry` (the same policy, dry run).
//! The policy has two rules: one whose value for the kind matches every request (loopback
//! addresses, the listener's own port, the request's host / method / path / header) and one
//! whose value matches none (192.0.2.0/24, port 9, ...); a request header `x-case: hit` or
//! `x-case: miss` picks the rule, so only the kind's own value tells the `hit` requests (denied)
//! from the `miss` ones (let through). A dry-run policy that does not get the property (before
//! de4113c only enforced policies were scanned for the addresses and ports to read) counts none
//! of the hits where the kind is a value list, and the misses too where it is a `not*` list.
//!
//! The stats are per Envoy, not per listener: every plugin of the wasm VM shares a counter of a
//! given name. So each test measures its deltas holding `STATS`, one kind at a time.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{LazyLock, Mutex};

use serde_json::{json, Value};
use testbed::compare::{observe, Observed};
use testbed::http::Call;
use testbed::scenario::{Bed, Listener};

/// Every kind, in the order of the tests below.
const KINDS: [&str; 14] = [
    "ip-blocks",
    "remote-ip-blocks",
    "not-ip-blocks",
    "not-remote-ip-blocks",
    "ports",
    "not-ports",
    "when-source-ip",
    "when-remote-ip",
    "when-destination-ip",
    "when-destination-port",
    "hosts",
    "methods",
    "paths",
    "when-header",
];

/// The kinds whose policies match on the listener's port: their listeners get a port chosen
/// before Envoy starts, so that the policy can name it.
const PINNED: [&str; 3] = ["ports", "not-ports", "when-destination-port"];

/// The request every test sends (with `x-case` set or not): what the contrast kinds match on.
const HOST: &str = "shop.example";
const PATH: &str = "/anything/dry-run";
const TENANT: &str = "blocked";

/// `x-case` of each request sent, in order: 3 hits, 4 others (`None`: no `x-case` header).
const CASES: [Option<&str>; 7] = [
    Some("hit"),
    Some("miss"),
    Some("hit"),
    None,
    Some("miss"),
    Some("hit"),
    None,
];

/// The ports of the two listeners of a pinned kind (any port of theirs matches).
fn listener_ports(ports: &[(String, u16)], kind: &str) -> Vec<String> {
    ports
        .iter()
        .filter(|(name, _)| name == kind || *name == format!("{kind}-dry"))
        .map(|(_, port)| port.to_string())
        .collect()
}

/// The rule part of one kind: `hit` is the value that matches the test's requests, else one
/// that does not; `own` are the ports of the kind's listeners (pinned kinds only).
fn rule_for(kind: &str, hit: bool, own: &[String]) -> Value {
    let pick = |yes: Value, no: Value| if hit { yes } else { no };
    let loopback = || json!(["127.0.0.0/8"]);
    let test_net = || json!(["192.0.2.0/24"]);
    let other_port = || json!(["9"]);
    let source = |source: Value| json!({"from": [{"source": source}]});
    let operation = |operation: Value| json!({"to": [{"operation": operation}]});
    let when = |key: &str, values: Value| json!({"when": [{"key": key, "values": values}]});
    match kind {
        "ip-blocks" => source(json!({"ipBlocks": pick(loopback(), test_net())})),
        "remote-ip-blocks" => source(json!({"remoteIpBlocks": pick(loopback(), test_net())})),
        "not-ip-blocks" => source(json!({"notIpBlocks": pick(test_net(), loopback())})),
        "not-remote-ip-blocks" => {
            source(json!({"notRemoteIpBlocks": pick(test_net(), loopback())}))
        }
        "ports" => operation(json!({"ports": pick(json!(own), other_port())})),
        "not-ports" => operation(json!({"notPorts": pick(other_port(), json!(own))})),
        "when-source-ip" => when("source.ip", pick(loopback(), test_net())),
        "when-remote-ip" => when("remote.ip", pick(loopback(), test_net())),
        "when-destination-ip" => when(
            "destination.ip",
            pick(json!(["127.0.0.1"]), json!(["192.0.2.1"])),
        ),
        "when-destination-port" => when("destination.port", pick(json!(own), other_port())),
        "hosts" => operation(json!({"hosts": pick(json!([HOST]), json!(["other.example"]))})),
        "methods" => operation(json!({"methods": pick(json!(["GET"]), json!(["DELETE"]))})),
        "paths" => operation(json!({"paths": pick(json!(["/anything/*"]), json!(["/admin"]))})),
        "when-header" => when(
            "request.headers[x-tenant]",
            pick(json!([TENANT]), json!(["other"])),
        ),
        other => panic!("no kind {other:?}"),
    }
}

/// A DENY policy named after the kind: its kind's rule with the matching value for `x-case:
/// hit`, with the other value for `x-case: miss`.
fn policy(kind: &str, dry_run: bool, own: &[String]) -> String {
    let rule = |case: &str| {
        let mut rule = rule_for(kind, case == "hit", own);
        let selector = json!({"key": "request.headers[x-case]", "values": [case]});
        match rule.get_mut("when").and_then(Value::as_array_mut) {
            Some(conditions) => conditions.push(selector),
            None => rule["when"] = json!([selector]),
        }
        rule
    };
    json!({"policies": [{"name": kind, "action": "DENY", "dryRun": dry_run,
        "rules": [rule("hit"), rule("miss")]}]})
    .to_string()
}

/// Free loopback ports, one per listener of the pinned kinds, below the ephemeral range
/// (`scenario::free_port`): an ephemeral port released here could be handed to another socket
/// before Envoy binds it (it was, once, in CI: "Address already in use").
fn free_ports() -> Vec<(String, u16)> {
    let names: Vec<String> = PINNED
        .iter()
        .flat_map(|kind| [kind.to_string(), format!("{kind}-dry")])
        .collect();
    let mut ports: Vec<u16> = Vec::new();
    while ports.len() < names.len() {
        let port = testbed::scenario::free_port();
        if !ports.contains(&port) {
            ports.push(port);
        }
    }
    names.into_iter().zip(ports).collect()
}

static PORTS: LazyLock<Vec<(String, u16)>> = LazyLock::new(free_ports);

static BED: LazyLock<Bed> = LazyLock::new(|| {
    let listeners: Vec<Listener> = KINDS
        .iter()
        .flat_map(|kind| {
            let own = listener_ports(&PORTS, kind);
            [
                Listener::wasm(kind, &policy(kind, false, &own)),
                Listener::wasm(&format!("{kind}-dry"), &policy(kind, true, &own)),
            ]
        })
        .collect();
    let bed = Bed::start_edited(&listeners, false, |mut config| {
        for (name, port) in PORTS.iter() {
            let ephemeral = format!(
                "- name: \"{name}\"\n    address:\n      socket_address: {{address: 127.0.0.1, port_value: 0}}"
            );
            assert!(config.contains(&ephemeral), "listener {name} not found");
            config = config.replace(
                &ephemeral,
                &ephemeral.replace("port_value: 0", &format!("port_value: {port}")),
            );
        }
        config
    });
    for (name, port) in PORTS.iter() {
        assert_eq!(bed.port(name), *port, "{name}");
    }
    bed
});

/// Held while a test measures the stats, which every listener of the Envoy shares.
static STATS: Mutex<()> = Mutex::new(());

const SHADOW_DENIED: &str = "wasmcustom.inline_authz.rbac.shadow_denied";
const SHADOW_ALLOWED: &str = "wasmcustom.inline_authz.rbac.shadow_allowed";
const RBAC_DENIED: &str = "wasmcustom.inline_authz.rbac.denied";

/// The counters one kind moves: the shared ones and its policy's own.
fn counters(kind: &str) -> [(String, u64); 5] {
    [
        SHADOW_DENIED.to_string(),
        SHADOW_ALLOWED.to_string(),
        RBAC_DENIED.to_string(),
        format!("wasmcustom.inline_authz.policy.{kind}.shadow_denied"),
        format!("wasmcustom.inline_authz.policy.{kind}.denied"),
    ]
    .map(|name| {
        let value = BED.envoy.stat(&name);
        (name, value)
    })
}

/// How much each counter rose since `before`, as (name, delta).
fn rise(kind: &str, before: &[(String, u64); 5]) -> Vec<(String, u64)> {
    counters(kind)
        .iter()
        .zip(before)
        .map(|((name, after), (_, before))| (name.clone(), after - before))
        .collect()
}

fn send_all(listener: &str) -> Vec<Observed> {
    CASES
        .iter()
        .map(|case| {
            observe(&BED, listener, &|m| {
                let call = Call::get(&format!("{PATH}?{m}"))
                    .header("host", HOST)
                    .header("x-tenant", TENANT);
                match case {
                    Some(case) => call.header("x-case", case),
                    None => call,
                }
            })
        })
        .collect()
}

/// The enforced listener denies the `hit` requests and nothing else; the dry-run one lets all
/// through and counts exactly those as shadow denials, the rest as shadow allows.
fn dry_run_counts_what_the_enforced_policy_denies(kind: &str) {
    let dry = format!("{kind}-dry");
    let hits = CASES.iter().filter(|c| **c == Some("hit")).count() as u64;
    let rest = CASES.len() as u64 - hits;
    let _serial = STATS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());

    let before = counters(kind);
    let enforced = send_all(kind);
    let enforced_rise = rise(kind, &before);
    for (case, seen) in CASES.iter().zip(&enforced) {
        if *case == Some("hit") {
            assert_eq!(
                (seen.status, seen.body.as_str(), seen.upstream.is_none()),
                (403, "RBAC: access denied", true),
                "{kind}: x-case {case:?} must be denied"
            );
        } else {
            assert_eq!(
                (seen.status, seen.upstream.is_some()),
                (200, true),
                "{kind}: x-case {case:?} must pass"
            );
        }
    }

    let before = counters(kind);
    let dry_run = send_all(&dry);
    let dry_rise = rise(kind, &before);
    for (case, seen) in CASES.iter().zip(&dry_run) {
        assert_eq!(
            (seen.status, seen.upstream.is_some()),
            (200, true),
            "{dry}: x-case {case:?} must pass (dry run)"
        );
    }

    let policy = |stat: &str| format!("wasmcustom.inline_authz.policy.{kind}.{stat}");
    let want = |shadow_denied, shadow_allowed, denied| {
        vec![
            (SHADOW_DENIED.to_string(), shadow_denied),
            (SHADOW_ALLOWED.to_string(), shadow_allowed),
            (RBAC_DENIED.to_string(), denied),
            (policy("shadow_denied"), shadow_denied),
            (policy("denied"), denied),
        ]
    };
    assert_eq!(
        enforced_rise,
        want(0, 0, hits),
        "{kind}: the enforced policy counts its {hits} denials, no shadow"
    );
    assert_eq!(
        dry_rise,
        want(hits, rest, 0),
        "{dry}: the dry-run policy counts the {hits} requests the enforced one denied"
    );
}

#[test]
fn dry_run_ip_blocks_count_what_the_enforced_policy_denies() {
    dry_run_counts_what_the_enforced_policy_denies("ip-blocks");
}

#[test]
fn dry_run_remote_ip_blocks_count_what_the_enforced_policy_denies() {
    dry_run_counts_what_the_enforced_policy_denies("remote-ip-blocks");
}

#[test]
fn dry_run_not_ip_blocks_count_what_the_enforced_policy_denies() {
    dry_run_counts_what_the_enforced_policy_denies("not-ip-blocks");
}

#[test]
fn dry_run_not_remote_ip_blocks_count_what_the_enforced_policy_denies() {
    dry_run_counts_what_the_enforced_policy_denies("not-remote-ip-blocks");
}

#[test]
fn dry_run_ports_count_what_the_enforced_policy_denies() {
    dry_run_counts_what_the_enforced_policy_denies("ports");
}

#[test]
fn dry_run_not_ports_count_what_the_enforced_policy_denies() {
    dry_run_counts_what_the_enforced_policy_denies("not-ports");
}

#[test]
fn dry_run_source_ip_conditions_count_what_the_enforced_policy_denies() {
    dry_run_counts_what_the_enforced_policy_denies("when-source-ip");
}

#[test]
fn dry_run_remote_ip_conditions_count_what_the_enforced_policy_denies() {
    dry_run_counts_what_the_enforced_policy_denies("when-remote-ip");
}

#[test]
fn dry_run_destination_ip_conditions_count_what_the_enforced_policy_denies() {
    dry_run_counts_what_the_enforced_policy_denies("when-destination-ip");
}

#[test]
fn dry_run_destination_port_conditions_count_what_the_enforced_policy_denies() {
    dry_run_counts_what_the_enforced_policy_denies("when-destination-port");
}

#[test]
fn dry_run_hosts_count_what_the_enforced_policy_denies() {
    dry_run_counts_what_the_enforced_policy_denies("hosts");
}

#[test]
fn dry_run_methods_count_what_the_enforced_policy_denies() {
    dry_run_counts_what_the_enforced_policy_denies("methods");
}

#[test]
fn dry_run_paths_count_what_the_enforced_policy_denies() {
    dry_run_counts_what_the_enforced_policy_denies("paths");
}

#[test]
fn dry_run_header_conditions_count_what_the_enforced_policy_denies() {
    dry_run_counts_what_the_enforced_policy_denies("when-header");
}
