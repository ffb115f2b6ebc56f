//! Envoy stats defined through proxy-wasm (they show as `wasmcustom.inline_authz.*` in `/stats`),
//! named after Envoy's own `ext_authz` and `rbac` stats.

use crate::host::{Host, MetricKind};

/// Metric ids, defined once per plugin configuration.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    ids: [Option<u32>; Metric::COUNT],
}

/// Every metric the filter records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
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
}

impl Metric {
    const COUNT: usize = 12;
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
        }
    }

    fn kind(self) -> MetricKind {
        match self {
            Metric::ExtAuthzLatencyMs => MetricKind::Histogram,
            _ => MetricKind::Counter,
        }
    }
}

impl Metrics {
    pub fn define(host: &dyn Host) -> Metrics {
        let mut ids = [None; Metric::COUNT];
        for (slot, metric) in ids.iter_mut().zip(Metric::ALL) {
            *slot = host.define_metric(metric.kind(), metric.name());
        }
        Metrics { ids }
    }

    pub fn increment(&self, host: &dyn Host, metric: Metric) {
        if let Some(id) = self.ids[metric as usize] {
            host.increment_metric(id, 1);
        }
    }

    pub fn record(&self, host: &dyn Host, metric: Metric, value: u64) {
        if let Some(id) = self.ids[metric as usize] {
            host.record_metric(id, value);
        }
    }
}
