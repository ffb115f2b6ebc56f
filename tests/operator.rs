//! Operator features in a real Envoy: dry-run policies (counted, logged, never enforced), the
//! opt-in denial reason header, and the metrics as Prometheus sees them (with stats_tags).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::LazyLock;

use testbed::compare::observe;
use testbed::http::Call;
use testbed::scenario::{Bed, Listener};

static BED: LazyLock<Bed> = LazyLock::new(|| {
    Bed::start(&[
        Listener::wasm(
            "dry-run",
            r#"{"extensionProviders": [{"name": "p", "envoyExtAuthzHttp": {"service": "authz", "port": 8000, "cluster": "authz",
                  "includeRequestHeadersInCheck": ["x-ext-authz"]}}],
                "policies": [
                  {"name": "try-custom", "action": "CUSTOM", "dryRun": true, "provider": {"name": "p"}, "rules": [{"to": [{"operation": {"paths": ["/headers"]}}]}]},
                  {"name": "try-deny-admin", "action": "DENY", "dryRun": true, "rules": [{"to": [{"operation": {"paths": ["/admin"]}}]}]}]}"#,
        ),
        Listener::wasm(
            "reasons",
            r#"{"exposeDenialReason": true,
                "extensionProviders": [{"name": "p", "envoyExtAuthzHttp": {"service": "authz", "port": 8000, "cluster": "authz",
                  "includeRequestHeadersInCheck": ["x-ext-authz"]}}],
                "policies": [
                  {"name": "check-headers", "action": "CUSTOM", "provider": {"name": "p"}, "rules": [{"to": [{"operation": {"paths": ["/headers"]}}]}]},
                  {"name": "deny-admin", "action": "DENY", "rules": [{"to": [{"operation": {"paths": ["/admin"]}}]}]}]}"#,
        ),
        // Asked only by this listener (native ext_authz uses `authz`): the cluster's stats are
        // the filter's checks alone.
        Listener::wasm(
            "timed",
            r#"{"extensionProviders": [{"name": "p", "envoyExtAuthzHttp": {"service": "ext-authz.default.svc.cluster.local", "port": 8000,
                  "includeRequestHeadersInCheck": ["x-ext-authz"]}}]}"#,
        ),
    ])
});

/// The filter has no latency histogram of its own: the authorization cluster's
/// `upstream_rq_time` times its checks, as it times any request to that cluster (docs/operating.md).
#[test]
fn the_authorization_cluster_times_the_filters_checks() {
    const CLUSTER: &str = "outbound|8000||ext-authz.default.svc.cluster.local";
    // `P0(interval,cumulative) … P100(…)` once a sample was recorded, `No recorded values` before.
    assert!(!BED
        .envoy
        .admin("/stats?filter=upstream_rq_time")
        .unwrap_or_default()
        .contains(&format!("cluster.{CLUSTER}.upstream_rq_time: P0(")));
    let timed = || -> bool {
        let text = BED
            .envoy
            .admin("/stats?filter=upstream_rq_time")
            .unwrap_or_default();
        text.lines()
            .any(|l| l.starts_with(&format!("cluster.{CLUSTER}.upstream_rq_time: P0(")))
    };
    for _ in 0..3 {
        let answer = Call::get("/headers")
            .header("x-ext-authz", "allow")
            .send(BED.port("timed"))
            .unwrap();
        assert_eq!(answer.status, 200);
    }
    assert_eq!(
        BED.envoy
            .stat(&format!("cluster.{CLUSTER}.upstream_rq_total")),
        3,
        "one request to the cluster per check"
    );
    // Histograms reach the admin endpoint when Envoy flushes its stats (every 5 s by default).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !timed() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    assert!(timed(), "the checks are timed by the cluster");
}

#[test]
fn dry_run_policies_never_block_and_are_counted() {
    let shadow = BED.envoy.stat("wasmcustom.inline_authz.rbac.shadow_denied");
    let admin = observe(&BED, "dry-run", &|m| Call::get(&format!("/admin?{m}")));
    assert_eq!(admin.status, 200, "a dry-run DENY does not deny");
    assert!(BED.envoy.stat("wasmcustom.inline_authz.rbac.shadow_denied") > shadow);

    let custom_shadow = BED
        .envoy
        .stat("wasmcustom.inline_authz.ext_authz.shadow_denied");
    let headers = observe(&BED, "dry-run", &|m| {
        Call::get(&format!("/headers?{m}")).header("x-ext-authz", "deny")
    });
    assert_eq!(
        headers.status, 200,
        "a dry-run CUSTOM asks the service but does not enforce its 403"
    );
    assert_eq!(headers.authz.len(), 1);
    assert!(
        BED.envoy
            .stat("wasmcustom.inline_authz.ext_authz.shadow_denied")
            > custom_shadow
    );
    assert!(BED
        .envoy
        .wait_for_log("dry run: policy \"try-deny-admin\" would deny"));
}

#[test]
fn every_local_reply_names_why_when_asked() {
    let admin = observe(&BED, "reasons", &|m| Call::get(&format!("/admin?{m}")));
    assert_eq!(
        (admin.status, admin.header("x-inline-authz-denied-by")),
        (403, Some("policy:deny-admin"))
    );
    let custom = observe(&BED, "reasons", &|m| {
        Call::get(&format!("/headers?{m}")).header("x-ext-authz", "deny")
    });
    assert_eq!(
        (custom.status, custom.header("x-inline-authz-denied-by")),
        (403, Some("ext_authz:denied"))
    );
    assert_eq!(
        custom.header("x-ext-authz-check-result"),
        Some("denied"),
        "the service's own headers stay"
    );
    let fine = observe(&BED, "reasons", &|m| Call::get(&format!("/ip?{m}")));
    assert_eq!(
        (fine.status, fine.header("x-inline-authz-denied-by")),
        (200, None)
    );
}

#[test]
fn prometheus_shows_denials_by_policy_and_reason_as_labels() {
    observe(&BED, "reasons", &|m| Call::get(&format!("/admin?{m}")));
    std::thread::sleep(testbed::envoy::FLUSH);
    let text = BED.envoy.admin("/stats/prometheus").unwrap();
    let line = |needle: &str| {
        text.lines()
            .find(|l| l.contains(needle) && !l.starts_with('#'))
            .map(str::to_string)
    };
    let by_policy = line("inline_authz_policy=\"deny-admin\"")
        .unwrap_or_else(|| panic!("no policy label in:\n{}", grep(&text)));
    assert!(
        by_policy.starts_with("envoy_wasmcustom_inline_authz_policy_denied{")
            || by_policy.contains("inline_authz_policy_denied{"),
        "{by_policy}"
    );
    assert!(
        line("inline_authz_reason=\"policy\"").is_some(),
        "{}",
        grep(&text)
    );
    assert!(
        line("inline_authz_ext_authz_ok").is_some()
            || line("inline_authz_ext_authz_denied").is_some(),
        "{}",
        grep(&text)
    );
}

fn grep(text: &str) -> String {
    text.lines()
        .filter(|l| l.contains("inline_authz"))
        .collect::<Vec<_>>()
        .join("\n")
}
