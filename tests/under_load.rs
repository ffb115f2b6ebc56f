//! Faults of the authorization service and of the JWKS endpoint under a bounded load in a real
//! Envoy: every request must get an answer, and every answer must be the one the configured
//! failure mode promises. Afterwards the filter's memory has not grown, no VM has crashed and
//! Envoy is still ready.
//!
//! `INLINE_AUTHZ_LOAD_SECONDS` (default 2) and `INLINE_AUTHZ_LOAD_CONNECTIONS` (default 64) size
//! each phase; `scripts/soak` runs this suite for 30 s a phase and records the tallies it prints
//! (`INLINE_AUTHZ_LOAD_REPORT` names the file they are appended to).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::net::TcpStream;
use std::sync::{Arc, LazyLock, Mutex};
use std::thread::sleep;
use std::time::Duration;

use serde_json::{json, Value};
use testbed::http::{reset, Call, Reply};
use testbed::load::{self, Tally};
use testbed::scenario::{Bed, Listener};

static VECTORS: LazyLock<Value> =
    LazyLock::new(|| serde_json::from_str(include_str!("fixtures/jwt/vectors.json")).unwrap());

fn token(group: &str, name: &str) -> String {
    VECTORS[group][name].as_str().unwrap().to_string()
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn phase() -> Duration {
    Duration::from_secs(env_number("INLINE_AUTHZ_LOAD_SECONDS", 2))
}

fn connections() -> usize {
    env_number("INLINE_AUTHZ_LOAD_CONNECTIONS", 64) as usize
}

/// A fault of the authorization service, played by the sample service's check path.
struct Fault {
    name: &'static str,
    cluster: &'static str,
    path_prefix: &'static str,
    timeout: &'static str,
    /// The answer with `failOpen: false`, and with `failOpen: true`.
    closed: u16,
    open: u16,
}

const fn fault(name: &'static str, path_prefix: &'static str, closed: u16, open: u16) -> Fault {
    Fault {
        name,
        cluster: "authz",
        path_prefix,
        timeout: "5s",
        closed,
        open,
    }
}

const FAULTS: [Fault; 9] = [
    fault("healthy", "", 200, 200),
    fault("status-503", "/_status/503", 403, 200),
    Fault {
        timeout: "0.2s",
        ..fault("slow", "/_sleep/1000", 403, 200)
    },
    fault("reset", "/_reset", 403, 200),
    fault("closed", "/_close", 403, 200),
    fault("garbage", "/_garbage", 403, 200),
    Fault {
        cluster: "dead",
        ..fault("down", "", 403, 200)
    },
    // A denial is an answer, not an error: its 10 MiB body goes back to the caller.
    fault("10-MiB-denial", "/_big/403", 403, 403),
    fault("10-MiB-allow", "/_big/200", 200, 200),
];

/// A fault of the gRPC authorization service (`x-grpc-fault` on the request picks it).
struct GrpcFault {
    name: &'static str,
    mode: &'static str,
    cluster: &'static str,
    timeout: &'static str,
    closed: u16,
    open: u16,
}

const fn grpc_fault(name: &'static str, mode: &'static str, closed: u16, open: u16) -> GrpcFault {
    GrpcFault {
        name,
        mode,
        cluster: "authz-grpc",
        timeout: "5s",
        closed,
        open,
    }
}

const GRPC_FAULTS: [GrpcFault; 7] = [
    grpc_fault("healthy", "none", 200, 200),
    grpc_fault("unavailable", "unavailable", 403, 200),
    grpc_fault("internal", "internal", 403, 200),
    GrpcFault {
        timeout: "0.2s",
        ..grpc_fault("slow", "slow:1000", 403, 200)
    },
    grpc_fault("garbage", "garbage", 403, 200),
    GrpcFault {
        cluster: "dead-grpc",
        ..grpc_fault("down", "none", 403, 200)
    },
    // A denial is an answer, not an error.
    grpc_fault("denial", "deny-status:418", 418, 418),
];

fn grpc_listener_name(f: &GrpcFault, fail_open: bool) -> String {
    format!(
        "grpc-{}-{}",
        f.name,
        if fail_open { "open" } else { "closed" }
    )
}

fn grpc_custom(f: &GrpcFault, fail_open: bool) -> String {
    json!({"extensionProviders": [{"name": "g", "envoyExtAuthzGrpc": {
        "service": "ext-authz", "port": 9000, "cluster": f.cluster,
        "timeout": f.timeout, "failOpen": fail_open}}]})
    .to_string()
}

fn listener_name(f: &Fault, fail_open: bool) -> String {
    format!("{}-{}", f.name, if fail_open { "open" } else { "closed" })
}

fn custom(f: &Fault, fail_open: bool) -> String {
    json!({"extensionProviders": [{"name": "p", "envoyExtAuthzHttp": {
        "service": "authz", "port": 8000, "cluster": f.cluster, "pathPrefix": f.path_prefix,
        "timeout": f.timeout, "failOpen": fail_open,
        "includeRequestHeadersInCheck": ["x-ext-authz"]}}]})
    .to_string()
}

fn jwt(refresh: &str) -> String {
    json!({
        "jwtRules": [{"issuer": VECTORS["issuer"], "jwksUri": "http://jwks.example/keys",
                      "jwksCluster": "jwks", "timeout": "0.5s"}],
        "jwksRefreshInterval": refresh,
        "policies": [{"action": "ALLOW", "rules": [{"from": [{"source": {"requestPrincipals": ["*"]}}]}]}]
    })
    .to_string()
}

static BED: LazyLock<Bed> = LazyLock::new(|| {
    let mut listeners = Vec::new();
    for f in &FAULTS {
        for fail_open in [false, true] {
            listeners.push(Listener::wasm(
                &listener_name(f, fail_open),
                &custom(f, fail_open),
            ));
        }
    }
    for f in &GRPC_FAULTS {
        for fail_open in [false, true] {
            listeners.push(Listener::wasm(
                &grpc_listener_name(f, fail_open),
                &grpc_custom(f, fail_open),
            ));
        }
    }
    listeners.push(Listener::wasm("jwt", &jwt("1s")));
    Bed::start_prepared(&listeners, false, |jwks| {
        jwks.set("/keys", 200, &VECTORS["jwks"].to_string());
    })
});

/// Puts the JWKS endpoint into one of its faults.
type JwksFault<'a> = Box<dyn Fn() + 'a>;

const FETCH_FAILED: &str = "wasmcustom.inline_authz.jwks.fetch_failed";
const FETCH_SUCCESS: &str = "wasmcustom.inline_authz.jwks.fetch_success";
/// How long a JWKS refresh (every second) may take to show in the stats.
const WAIT: Duration = Duration::from_secs(10);

/// One phase at a time: the phases share two cores.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Prints a result line, and appends it to `INLINE_AUTHZ_LOAD_REPORT` when that is set.
fn report(line: &str) {
    println!("{line}");
    if let Ok(path) = std::env::var("INLINE_AUTHZ_LOAD_REPORT") {
        if let Ok(mut file) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(file, "{line}");
        }
    }
}

/// Runs a phase of load on `listener` and checks every answer is in `expected`.
fn phase_on(listener: &str, what: &str, expected: &[u16], make: Arc<load::MakeRequest>) -> Tally {
    let connections = if what.contains("10-MiB") {
        8
    } else {
        connections()
    };
    let tally = load::run(
        BED.port(listener),
        connections,
        phase(),
        Duration::from_secs(10),
        make,
    );
    let line = format!(
        "| {what} | {} | {connections} | {} |",
        expected
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        tally.summary()
    );
    report(&line);
    assert!(tally.answered() > 0, "{what}: no answer at all");
    assert_eq!(
        tally.lost(),
        0,
        "{what}: requests without an answer: {line}"
    );
    assert_eq!(
        tally.unexpected(expected),
        0,
        "{what}: unexpected answers: {line}"
    );
    tally
}

fn checked_get() -> Arc<load::MakeRequest> {
    Arc::new(|n| {
        Call::get(&format!("/anything?n={n}"))
            .header("x-ext-authz", "allow")
            .wire(true)
    })
}

fn with_tokens(tokens: Vec<String>) -> Arc<load::MakeRequest> {
    Arc::new(move |n| {
        let token = &tokens[n as usize % tokens.len()];
        Call::get(&format!("/ip?n={n}"))
            .header("authorization", &format!("Bearer {token}"))
            .wire(true)
    })
}

fn memory() -> u64 {
    BED.envoy.stat("wasmcustom.inline_authz.vm.memory_bytes")
}

fn assert_envoy_healthy() {
    assert!(
        BED.envoy
            .admin("/ready")
            .is_ok_and(|r| r.starts_with("LIVE")),
        "Envoy is still ready"
    );
    let log = BED.envoy.log();
    assert!(!log.contains("panicked"), "no panic in the filter");
    assert!(
        !log.contains("Uncaught") && !log.contains("Function: proxy_on_"),
        "no VM failure:\n{}",
        BED.envoy.log_tail(30)
    );
}

#[test]
fn authorization_service_faults_under_load_get_the_failure_mode_answer() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    for fail_open in [false, true] {
        for f in &FAULTS {
            let expected = if fail_open { f.open } else { f.closed };
            let name = listener_name(f, fail_open);
            phase_on(&name, &name, &[expected], checked_get());
        }
    }
    assert_envoy_healthy();
}

#[test]
fn grpc_authorization_service_faults_under_load_get_the_failure_mode_answer() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    for fail_open in [false, true] {
        for f in &GRPC_FAULTS {
            let expected = if fail_open { f.open } else { f.closed };
            let name = grpc_listener_name(f, fail_open);
            let mode = f.mode;
            let make: Arc<load::MakeRequest> = Arc::new(move |n| {
                Call::get(&format!("/anything?n={n}"))
                    .header("x-ext-authz", "allow")
                    .header("x-grpc-fault", mode)
                    .wire(true)
            });
            phase_on(&name, &name, &[expected], make);
        }
    }
    assert_envoy_healthy();
}

#[test]
fn jwks_faults_under_load_keep_the_last_good_keys_and_rotation_takes_over() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let jwks = &BED.jwks;
    let good = VECTORS["jwks"].to_string();
    let valid = || {
        with_tokens(vec![
            token("valid", "RS256"),
            token("valid", "ES256"),
            token("valid", "EdDSA"),
        ])
    };
    phase_on("jwt", "jwks healthy", &[200], valid());

    let big = format!("{{\"keys\": [], \"pad\": \"{}\"}}", "x".repeat(10 << 20));
    let faults: [(&str, JwksFault); 6] = [
        ("jwks 500", Box::new(|| jwks.set("/keys", 500, "oops"))),
        (
            "jwks slow past its timeout",
            Box::new(|| jwks.set_slow("/keys", 200, &good, 2000)),
        ),
        (
            "jwks reset mid-response",
            Box::new(|| {
                jwks.set_fault(
                    "/keys",
                    Reply::Reset(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 900\r\n\r\n{\"keys\": [".to_vec(),
                    ),
                );
            }),
        ),
        (
            "jwks garbage",
            Box::new(|| jwks.set("/keys", 200, "<html>not a key set</html>")),
        ),
        ("jwks 10 MiB", Box::new(|| jwks.set("/keys", 200, &big))),
        (
            "jwks empty",
            Box::new(|| jwks.set("/keys", 200, r#"{"keys": []}"#)),
        ),
    ];
    for (what, set) in &faults {
        let failed = BED.envoy.stat(FETCH_FAILED);
        set();
        let tally = phase_on("jwt", what, &[200], valid());
        jwks.clear_fault("/keys");
        assert!(
            BED.envoy.wait_for_stat(FETCH_FAILED, |n| n > failed, WAIT),
            "{what}: the refresh failed during the phase ({})",
            tally.summary()
        );
    }
    let limit = format!("{} bytes, over the 1048576-byte limit", big.len());
    assert!(
        BED.envoy.wait_for_log(&limit),
        "the 10 MiB JWKS was refused by its size, unread"
    );

    // Rotation: the endpoint now has only the new key. While the proxy catches up, a token of
    // either key may get 200 or 401; once it has, the new key's tokens pass and the old key's
    // are refused.
    let fetched = BED.envoy.stat(FETCH_SUCCESS);
    jwks.set("/keys", 200, &VECTORS["rotated_jwks"].to_string());
    let old = token("valid", "RS256");
    let new = token("cases", "signed_by_rotated_key");
    phase_on(
        "jwt",
        "jwks rotating",
        &[200, 401],
        with_tokens(vec![old.clone(), new.clone()]),
    );
    BED.envoy
        .wait_for_stat(FETCH_SUCCESS, |n| n > fetched + 1, WAIT);
    phase_on(
        "jwt",
        "jwks rotated: new key",
        &[200],
        with_tokens(vec![new]),
    );
    phase_on(
        "jwt",
        "jwks rotated: old key",
        &[401],
        with_tokens(vec![old]),
    );
    // Back to the first keys, and wait until the proxy has them again.
    let fetched = BED.envoy.stat(FETCH_SUCCESS);
    jwks.set("/keys", 200, &good);
    BED.envoy
        .wait_for_stat(FETCH_SUCCESS, |n| n > fetched + 1, WAIT);
    sleep(Duration::from_millis(500));
    assert_envoy_healthy();
}

#[test]
fn memory_does_not_grow_over_repeated_load() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    // Warm up every path once (callout allowed and denied, tokens), then the same load twice more:
    // the VM's linear memory may not grow past what the first round took.
    let round = || {
        phase_on("healthy-closed", "memory: callout", &[200], checked_get());
        phase_on(
            "status-503-closed",
            "memory: callout error",
            &[403],
            checked_get(),
        );
        phase_on(
            "jwt",
            "memory: tokens",
            &[200],
            with_tokens(vec![
                token("valid", "RS256"),
                token("valid", "PS256"),
                token("valid", "ES384"),
            ]),
        );
    };
    round();
    let warm = memory();
    round();
    round();
    let after = memory();
    report(&format!(
        "| memory | - | - | VM linear memory {warm} B after the first round, {after} B after two more; Envoy allocated {} B |",
        BED.envoy.stat("server.memory_allocated")
    ));
    assert!(warm > 0, "the filter records inline_authz.vm.memory_bytes");
    assert!(
        after <= warm + 256 * 1024,
        "the VM's memory grew from {warm} to {after} bytes under the same load"
    );
    assert_envoy_healthy();
}

#[test]
fn clients_that_hang_up_during_the_check_leave_nothing_behind() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    // Each client sends a request whose check is in flight (slow service, or a healthy one) and
    // leaves at once: with a FIN, or with a reset. Envoy cancels the callout with the stream.
    for listener in ["slow-closed", "healthy-closed", "slow-open"] {
        for n in 0..200u64 {
            let Ok(mut stream) = TcpStream::connect(("127.0.0.1", BED.port(listener))) else {
                continue;
            };
            let _ = stream.write_all(&checked_get()(n));
            if n % 2 == 0 {
                reset(&stream);
            }
            drop(stream);
        }
    }
    sleep(Duration::from_millis(1500));
    for (listener, expected) in [
        ("slow-closed", 403),
        ("healthy-closed", 200),
        ("slow-open", 200),
    ] {
        let what = format!("{listener} after 200 hang-ups");
        phase_on(listener, &what, &[expected], checked_get());
    }
    assert_envoy_healthy();
}
