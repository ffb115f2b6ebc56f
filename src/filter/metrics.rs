//! Envoy stats defined through proxy-wasm (they show as `wasmcustom.inline_authz.*` in `/stats`),
//! named after Envoy's own `ext_authz` and `rbac` stats.
//!
//! A request's counts stay in the VM and go to Envoy on the root context's tick (every
//! `root::TICK`) and when the VM is done: a hostcall costs about a microsecond, a count in the VM
//! a few nanoseconds. `/stats` therefore lags the traffic by up to one tick; a VM that ends without
//! its `on_done` loses at most one tick's counts.

use std::cell::Cell;

use crate::host::{Host, MetricKind};

/// One counter: its id at the host, and what was counted since the last flush.
#[derive(Debug, Clone, Default)]
struct Counter {
    id: Option<u32>,
    pending: Cell<u32>,
}

impl Counter {
    fn new(id: Option<u32>) -> Counter {
        Counter {
            id,
            pending: Cell::new(0),
        }
    }

    fn add(&self) {
        if self.id.is_some() {
            self.pending.set(self.pending.get().saturating_add(1));
        }
    }

    fn flush(&self, host: &dyn Host) {
        let pending = self.pending.replace(0);
        if let (Some(id), true) = (self.id, pending > 0) {
            host.increment_metric(id, i64::from(pending));
        }
    }
}

/// Metric ids, defined once per plugin configuration, with the counts not yet flushed.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    ids: [Counter; Metric::COUNT],
    /// Per DENY policy (dry-run ones too): name, `…denied`, `…shadow_denied`.
    policies: Vec<(String, Counter, Counter)>,
    /// Per provider, by its index, when a plugin has more than one: `…ok`, `…denied`, `…error`.
    providers: Vec<[Counter; 3]>,
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
    const COUNT: usize = 25;
    const ALL: [Metric; Metric::COUNT] = [
        Metric::ExtAuthzOk,
        Metric::ExtAuthzDenied,
        Metric::ExtAuthzError,
        Metric::ExtAuthzFailureModeAllowed,
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
        let ids = Metric::ALL
            .map(|metric| Counter::new(host.define_metric(metric.kind(), metric.name())));
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
                (name.to_string(), Counter::new(denied), Counter::new(shadow))
            })
            .collect();
        let providers = if providers.len() > 1 {
            providers
                .iter()
                .map(|name| {
                    let safe = stat_safe(name);
                    ["ok", "denied", "error"].map(|outcome| {
                        Counter::new(host.define_metric(
                            MetricKind::Counter,
                            &format!("inline_authz.provider.{safe}.{outcome}"),
                        ))
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
    pub(crate) fn provider(&self, index: usize, outcome: CheckOutcome) {
        if let Some(counter) = self
            .providers
            .get(index)
            .and_then(|counters| counters.get(outcome as usize))
        {
            counter.add();
        }
    }

    /// Counts a denial by a DENY policy (or a dry-run one's "would deny").
    pub fn policy_denied(&self, name: &str, dry_run: bool) {
        if let Some((_, denied, shadow)) = self.policies.iter().find(|(n, _, _)| n == name) {
            if dry_run { shadow } else { denied }.add();
        }
    }

    /// Counts one event; Envoy sees it at the next `flush`.
    pub(crate) fn increment(&self, metric: Metric) {
        if let Some(counter) = self.ids.get(metric as usize) {
            counter.add();
        }
    }

    /// Counts one event at the host now (the root's rare events: key fetches).
    pub(crate) fn increment_now(&self, host: &dyn Host, metric: Metric) {
        if let Some(counter) = self.ids.get(metric as usize) {
            counter.add();
            counter.flush(host);
        }
    }

    /// Hands every count made since the last flush to the host: one hostcall per counter that
    /// moved (the root context's tick, and its `on_done`).
    pub fn flush(&self, host: &dyn Host) {
        let policies = self.policies.iter().flat_map(|(_, d, s)| [d, s]);
        for counter in self
            .ids
            .iter()
            .chain(policies)
            .chain(self.providers.iter().flatten())
        {
            counter.flush(host);
        }
    }

    /// Sets a gauge at the host (not counted in the VM: it is a value, not a sum).
    pub(crate) fn record(&self, host: &dyn Host, metric: Metric, value: u64) {
        if let Some(id) = self.ids.get(metric as usize).and_then(|c| c.id) {
            host.record_metric(id, value);
        }
    }
}
