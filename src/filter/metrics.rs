//! Envoy stats defined through proxy-wasm (they show as `wasmcustom.inline_authz.*` in `/stats`),
//! named after Envoy's own `ext_authz` and `rbac` stats.

use crate::host::{Host, MetricKind};

/// Metric ids, defined once per plugin configuration.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    ids: [Option<u32>; Metric::COUNT],
    /// Per DENY policy (dry-run ones too): name, `…denied` id, `…shadow_denied` id.
    policies: Vec<(String, Option<u32>, Option<u32>)>,
    /// Per provider, by its index, when a plugin has more than one: `…ok`, `…denied`, `…error`.
    providers: Vec<[Option<u32>; 3]>,
}

/// What one provider's check came to, for its own counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CheckOutcome {
    Ok = 0,
    Denied = 1,
    Error = 2,
}

/// `[A-Za-z0-9_-]` of a name; anything else becomes `_` (Envoy stat names).
fn stat_safe(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Every metric the filter records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Metric {
    ExtAuthzOk,
    ExtAuthzDenied,
    ExtAuthzError,
    ExtAuthzFailureModeAllowed,
    ExtAuthzLatencyMs,
    RbacAllowed,
    RbacDenied,
    RequestTooLarge,
    JwtAllowed,
    JwtDenied,
    JwksFetchSuccess,
    JwksFetchFailed,
    ExtAuthzShadowAllowed,
    ExtAuthzShadowDenied,
    RbacShadowAllowed,
    RbacShadowDenied,
    DeniedByJwt,
    DeniedByPolicy,
    DeniedByNoAllowMatch,
    DeniedByExtAuthz,
    DeniedByExtAuthzError,
    DeniedByRequestTooLarge,
    DeniedByInternal,
    ExtAuthzCacheHit,
    VmMemoryBytes,
    DeniedByInvalidRequest,
}

impl Metric {
    const COUNT: usize = 26;
    const ALL: [Metric; Metric::COUNT] = [
        Metric::ExtAuthzOk,
        Metric::ExtAuthzDenied,
        Metric::ExtAuthzError,
        Metric::ExtAuthzFailureModeAllowed,
        Metric::ExtAuthzLatencyMs,
        Metric::RbacAllowed,
        Metric::RbacDenied,
        Metric::RequestTooLarge,
        Metric::JwtAllowed,
        Metric::JwtDenied,
        Metric::JwksFetchSuccess,
        Metric::JwksFetchFailed,
        Metric::ExtAuthzShadowAllowed,
        Metric::ExtAuthzShadowDenied,
        Metric::RbacShadowAllowed,
        Metric::RbacShadowDenied,
        Metric::DeniedByJwt,
        Metric::DeniedByPolicy,
        Metric::DeniedByNoAllowMatch,
        Metric::DeniedByExtAuthz,
        Metric::DeniedByExtAuthzError,
        Metric::DeniedByRequestTooLarge,
        Metric::DeniedByInternal,
        Metric::ExtAuthzCacheHit,
        Metric::VmMemoryBytes,
        Metric::DeniedByInvalidRequest,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Metric::ExtAuthzOk => "inline_authz.ext_authz.ok",
            Metric::ExtAuthzDenied => "inline_authz.ext_authz.denied",
            Metric::ExtAuthzError => "inline_authz.ext_authz.error",
            Metric::ExtAuthzFailureModeAllowed => "inline_authz.ext_authz.failure_mode_allowed",
            Metric::ExtAuthzLatencyMs => "inline_authz.ext_authz.latency_ms",
            Metric::RbacAllowed => "inline_authz.rbac.allowed",
            Metric::RbacDenied => "inline_authz.rbac.denied",
            Metric::RequestTooLarge => "inline_authz.ext_authz.request_too_large",
            Metric::JwtAllowed => "inline_authz.jwt_authn.allowed",
            Metric::JwtDenied => "inline_authz.jwt_authn.denied",
            Metric::JwksFetchSuccess => "inline_authz.jwks.fetch_success",
            Metric::JwksFetchFailed => "inline_authz.jwks.fetch_failed",
            Metric::ExtAuthzShadowAllowed => "inline_authz.ext_authz.shadow_allowed",
            Metric::ExtAuthzShadowDenied => "inline_authz.ext_authz.shadow_denied",
            Metric::RbacShadowAllowed => "inline_authz.rbac.shadow_allowed",
            Metric::RbacShadowDenied => "inline_authz.rbac.shadow_denied",
            Metric::DeniedByJwt => "inline_authz.denied_by.jwt_authn",
            Metric::DeniedByPolicy => "inline_authz.denied_by.policy",
            Metric::DeniedByNoAllowMatch => "inline_authz.denied_by.no_allow_match",
            Metric::DeniedByExtAuthz => "inline_authz.denied_by.ext_authz",
            Metric::DeniedByExtAuthzError => "inline_authz.denied_by.ext_authz_error",
            Metric::DeniedByRequestTooLarge => "inline_authz.denied_by.request_too_large",
            Metric::DeniedByInternal => "inline_authz.denied_by.internal",
            Metric::ExtAuthzCacheHit => "inline_authz.ext_authz.cache_hit",
            Metric::VmMemoryBytes => "inline_authz.vm.memory_bytes",
            Metric::DeniedByInvalidRequest => "inline_authz.denied_by.invalid_request",
        }
    }

    fn kind(self) -> MetricKind {
        match self {
            Metric::ExtAuthzLatencyMs => MetricKind::Histogram,
            Metric::VmMemoryBytes => MetricKind::Gauge,
            _ => MetricKind::Counter,
        }
    }
}

impl Metrics {
    /// Defines every metric, two per DENY policy: `inline_authz.policy.<name>.denied` and
    /// `….shadow_denied`, and, when there are several providers, three per provider:
    /// `inline_authz.provider.<name>.ok|denied|error` (names reduced to `[A-Za-z0-9_-]`).
    pub fn define(host: &dyn Host, deny_policies: &[&str], providers: &[&str]) -> Metrics {
        let mut ids = [None; Metric::COUNT];
        for (slot, metric) in ids.iter_mut().zip(Metric::ALL) {
            *slot = host.define_metric(metric.kind(), metric.name());
        }
        let policies = deny_policies
            .iter()
            .map(|name| {
                let safe = stat_safe(name);
                let denied = host.define_metric(
                    MetricKind::Counter,
                    &format!("inline_authz.policy.{safe}.denied"),
                );
                let shadow = host.define_metric(
                    MetricKind::Counter,
                    &format!("inline_authz.policy.{safe}.shadow_denied"),
                );
                (name.to_string(), denied, shadow)
            })
            .collect();
        let providers = if providers.len() > 1 {
            providers
                .iter()
                .map(|name| {
                    let safe = stat_safe(name);
                    ["ok", "denied", "error"].map(|outcome| {
                        host.define_metric(
                            MetricKind::Counter,
                            &format!("inline_authz.provider.{safe}.{outcome}"),
                        )
                    })
                })
                .collect()
        } else {
            Vec::new()
        };
        Metrics {
            ids,
            policies,
            providers,
        }
    }

    /// Counts a check of provider `index` by its outcome (only with several providers; with one,
    /// `ext_authz.ok|denied|error` say it all).
    pub(crate) fn provider(&self, host: &dyn Host, index: usize, outcome: CheckOutcome) {
        let id = self
            .providers
            .get(index)
            .and_then(|ids| ids.get(outcome as usize).copied().flatten());
        if let Some(id) = id {
            host.increment_metric(id, 1);
        }
    }

    /// Counts a denial by a DENY policy (or a dry-run one's "would deny").
    pub fn policy_denied(&self, host: &dyn Host, name: &str, dry_run: bool) {
        if let Some((_, denied, shadow)) = self.policies.iter().find(|(n, _, _)| n == name) {
            if let Some(id) = if dry_run { shadow } else { denied } {
                host.increment_metric(*id, 1);
            }
        }
    }

    pub(crate) fn increment(&self, host: &dyn Host, metric: Metric) {
        if let Some(id) = self.ids[metric as usize] {
            host.increment_metric(id, 1);
        }
    }

    pub(crate) fn record(&self, host: &dyn Host, metric: Metric, value: u64) {
        if let Some(id) = self.ids[metric as usize] {
            host.record_metric(id, value);
        }
    }
}
