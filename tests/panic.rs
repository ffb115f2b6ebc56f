//! A panic fails closed. The shipped filter has no reachable panic (clippy denies `panic`,
//! `unwrap` and `expect`, and the parsers are fuzzed); this suite runs the test build
//! `cargo wasm-probe`, in which a request carrying `x-inline-authz-panic-probe` panics, to prove
//! what happens if one ever slips in: the panic hook logs it, the request gets 503 and never
//! reaches the upstream, and the VM stays closed (Envoy's `fail_open: false`) or is reloaded with
//! the configuration in force (`failure_policy: FAIL_RELOAD`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::thread::sleep;
use std::time::{Duration, Instant};

use testbed::envoy::{probe_wasm_path, wasm_path, Envoy};
use testbed::http::{Call, Server};
use testbed::scenario::{marker, render_config, Listener, Ports};
use testbed::services::{start_echo, Recorder};

const DENY_HEADERS: &str = r#"{"policies": [{"name": "deny-headers", "action": "DENY",
    "rules": [{"to": [{"operation": {"paths": ["/headers"]}}]}]}]}"#;

const PROBE: &str = "x-inline-authz-panic-probe";

/// An Envoy running the probe build, with the wasm filter's failure handling set by `failure`
/// (a line of the plugin config: `fail_open: false` or `failure_policy: …`).
fn start(failure: &str) -> (Envoy, Recorder, Server) {
    let probe = probe_wasm_path().unwrap_or_else(|e| panic!("{e}"));
    let shipped = wasm_path().unwrap_or_else(|e| panic!("{e}"));
    let (echo, upstream) = start_echo().unwrap();
    let ports = Ports {
        upstream: echo.port(),
        ..Ports::unused()
    };
    let config = render_config(&[Listener::wasm("guarded", DENY_HEADERS)], ports, false)
        .unwrap()
        .replace(&shipped.display().to_string(), &probe.display().to_string())
        .replace("fail_open: false", failure);
    assert!(config.contains(&probe.display().to_string()));
    let envoy = Envoy::start(&config).unwrap_or_else(|e| panic!("{e}"));
    (envoy, upstream, echo)
}

/// Sends GET `path` (with the probe header when `panic`); the status and whether the upstream
/// saw it.
fn send(envoy: &Envoy, upstream: &Recorder, path: &str, panic: bool) -> (u16, bool) {
    let mark = marker(path);
    let mut call = Call::get(&format!("{path}?{mark}"));
    if panic {
        call = call.header(PROBE, "1");
    }
    let response = call.send(envoy.port("guarded")).unwrap();
    (response.status, !upstream.with(&mark).is_empty())
}

#[test]
fn a_panic_fails_the_request_closed_and_the_vm_stays_closed() {
    let (envoy, upstream, _echo) = start("fail_open: false");
    assert_eq!(send(&envoy, &upstream, "/ip", false), (200, true));
    assert_eq!(send(&envoy, &upstream, "/headers", false), (403, false));

    assert_eq!(
        send(&envoy, &upstream, "/ip", true),
        (503, false),
        "the panicking request is refused, never forwarded"
    );
    assert!(
        envoy.wait_for_log("inline-authz panicked, failing closed"),
        "the panic hook logs"
    );
    // The VM is gone: every later request is refused, none passes unchecked.
    for path in ["/ip", "/headers", "/anything"] {
        assert_eq!(send(&envoy, &upstream, path, false), (503, false), "{path}");
    }
}

#[test]
fn with_fail_reload_the_vm_comes_back_with_its_policies() {
    let (envoy, upstream, _echo) = start("failure_policy: FAIL_RELOAD");
    assert_eq!(send(&envoy, &upstream, "/ip", true), (503, false));
    assert!(envoy.wait_for_log("inline-authz panicked, failing closed"));

    // Until Envoy has reloaded the VM (after a backoff of about a second) requests are refused.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut answer = send(&envoy, &upstream, "/ip", false);
    while answer != (200, true) && Instant::now() < deadline {
        assert_eq!(answer, (503, false), "refused while the VM is down");
        sleep(Duration::from_millis(200));
        answer = send(&envoy, &upstream, "/ip", false);
    }
    assert_eq!(answer, (200, true), "the VM was reloaded");
    assert_eq!(
        send(&envoy, &upstream, "/headers", false),
        (403, false),
        "the reloaded VM enforces the same policy"
    );
    assert!(envoy.stat("wasm.guarded.vm_reload_success") >= 1);
}
