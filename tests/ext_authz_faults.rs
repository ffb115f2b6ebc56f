//! Faults of the authorization service in a real Envoy: 5xx, slow past the timeout, connection
//! closed, garbage, not listening, unknown cluster, each with failOpen off and on, each request
//! compared with native ext_authz configured the same way.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::LazyLock;

use serde_json::json;
use testbed::compare::{observe, same};
use testbed::http::Call;
use testbed::scenario::{Bed, Listener};

struct Fault {
    name: &'static str,
    cluster: &'static str,
    path_prefix: &'static str,
    timeout: &'static str,
}

const FAULTS: [Fault; 7] = [
    Fault {
        name: "status-503",
        cluster: "authz",
        path_prefix: "/_status/503",
        timeout: "5s",
    },
    Fault {
        name: "status-500",
        cluster: "authz",
        path_prefix: "/_status/500",
        timeout: "5s",
    },
    Fault {
        name: "slow",
        cluster: "authz",
        path_prefix: "/_sleep/1500",
        timeout: "0.3s",
    },
    Fault {
        name: "closed",
        cluster: "authz",
        path_prefix: "/_close",
        timeout: "5s",
    },
    Fault {
        name: "garbage",
        cluster: "authz",
        path_prefix: "/_garbage",
        timeout: "5s",
    },
    Fault {
        name: "down",
        cluster: "dead",
        path_prefix: "",
        timeout: "5s",
    },
    Fault {
        name: "no-cluster",
        cluster: "no-such-cluster",
        path_prefix: "",
        timeout: "5s",
    },
];

fn wasm(f: &Fault, fail_open: bool, status_on_error: Option<u16>) -> String {
    let mut provider = json!({"service": "authz", "port": 8000, "cluster": f.cluster,
        "pathPrefix": f.path_prefix, "timeout": f.timeout, "failOpen": fail_open});
    if let Some(status) = status_on_error {
        provider["statusOnError"] = json!(status.to_string());
    }
    json!({"extensionProviders": [{"name": "p", "envoyExtAuthzHttp": provider}]}).to_string()
}

fn native(f: &Fault, fail_open: bool, status_on_error: Option<u16>) -> String {
    let mut config = json!({
        "@type": "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz",
        "failure_mode_allow": fail_open,
        "http_service": {"server_uri": {"uri": "http://authz", "cluster": f.cluster, "timeout": f.timeout},
                         "path_prefix": f.path_prefix}
    });
    if let Some(status) = status_on_error {
        config["status_on_error"] = json!({"code": status});
    }
    config.to_string()
}

fn name(f: &Fault, fail_open: bool) -> String {
    format!("{}-{}", f.name, if fail_open { "open" } else { "closed" })
}

static BED: LazyLock<Bed> = LazyLock::new(|| {
    let mut listeners = Vec::new();
    for f in &FAULTS {
        for fail_open in [false, true] {
            let n = name(f, fail_open);
            listeners.push(Listener::wasm(&n, &wasm(f, fail_open, None)));
            listeners.push(Listener::native_everywhere(
                &format!("{n}-native"),
                &native(f, fail_open, None),
            ));
        }
    }
    let down = &FAULTS[5];
    listeners.push(Listener::wasm("down-503", &wasm(down, false, Some(503))));
    listeners.push(Listener::native_everywhere(
        "down-503-native",
        &native(down, false, Some(503)),
    ));
    Bed::start(&listeners)
});

fn get(m: &str) -> Call {
    Call::get(&format!("/anything?{m}")).header("x-ext-authz", "allow")
}

#[test]
fn every_fault_fails_closed_with_403_and_an_empty_body() {
    for f in &FAULTS {
        let listener = name(f, false);
        let seen = same(&BED, &listener, &format!("{listener}-native"), &get);
        assert_eq!(seen.status, 403, "{listener}");
        assert_eq!(seen.body, "", "{listener}");
        assert!(
            seen.upstream.is_none(),
            "{listener}: nothing reaches the upstream"
        );
    }
}

#[test]
fn every_fault_lets_the_request_through_with_fail_open() {
    for f in &FAULTS {
        let listener = name(f, true);
        let seen = same(&BED, &listener, &format!("{listener}-native"), &get);
        assert_eq!(seen.status, 200, "{listener}");
        assert!(seen.upstream.is_some(), "{listener}");
    }
}

#[test]
fn status_on_error_sets_the_reply_status() {
    let seen = same(&BED, "down-503", "down-503-native", &get);
    assert_eq!(seen.status, 503);
    assert_eq!(seen.body, "");
}

#[test]
fn faults_are_counted_as_errors_and_fail_open_passes() {
    let errors = BED.envoy.stat("wasmcustom.inline_authz.ext_authz.error");
    let allowed = BED
        .envoy
        .stat("wasmcustom.inline_authz.ext_authz.failure_mode_allowed");
    observe(&BED, "status-503-closed", &get);
    observe(&BED, "status-503-open", &get);
    assert!(BED.envoy.stat("wasmcustom.inline_authz.ext_authz.error") >= errors + 2);
    assert!(
        BED.envoy
            .stat("wasmcustom.inline_authz.ext_authz.failure_mode_allowed")
            > allowed
    );
}

#[test]
fn the_slow_service_is_cut_at_the_timeout() {
    let started = std::time::Instant::now();
    let seen = observe(&BED, "slow-closed", &get);
    assert_eq!(seen.status, 403);
    assert!(
        started.elapsed() < std::time::Duration::from_millis(1400),
        "the 0.3 s timeout applies, not the 1.5 s delay"
    );
}
