//! `policies` (Istio `AuthorizationPolicy.spec` entries): rules, `from[].source`,
//! `to[].operation` and `when[]` compiled into the constraints the evaluator matches, and the
//! entries grouped by action; also `pathNormalization`, which says what the paths they match
//! are. Errors name fields relative to the policy; `config` adds `policies[i]`.

use super::raw::{
    OneOf, RawAction, RawCondition, RawOperation, RawPathNormalization, RawPolicy, RawProviderRef,
    RawRule, RawSource,
};
use super::{each, is_header_name, ConfigError};
use crate::ext_authz::Provider;
use crate::policy::matcher::{Cidr, HostMatch, PathMatch, StringMatch};
use crate::policy::path::PathNormalization;
use crate::policy::{Attribute, Constraint, CustomPolicy, Policies, Policy, Rule, ValueMatch};

/// A compiled `policies[]` entry, before the entries are grouped by action.
pub(super) enum Entry {
    /// CUSTOM: ask the provider (an index into `extensionProviders`).
    Custom(CustomPolicy),
    Deny(Policy),
    Allow(Policy),
}

/// One `policies[]` entry; `place` (`policies[2]`) names it when it has no `name`.
pub(super) fn compile(
    raw: &RawPolicy,
    place: String,
    providers: &[Provider],
) -> Result<Entry, ConfigError> {
    let rules = match &raw.rules {
        None => Vec::new(),
        Some(rules) => each("rules", rules, |r, _| compile_rule(r))?,
    };
    let policy = Policy {
        name: raw.name.clone().unwrap_or(place),
        rules,
        dry_run: raw.dry_run,
    };
    match raw.action.map_or_else(RawAction::default, |OneOf(a)| a) {
        RawAction::Custom => {
            let provider = custom_provider(raw.provider.as_ref(), providers)?;
            Ok(Entry::Custom(CustomPolicy { policy, provider }))
        }
        _ if raw.provider.is_some() => Err(ConfigError::new(
            "provider",
            "is only allowed with action CUSTOM",
        )),
        RawAction::Deny => Ok(Entry::Deny(policy)),
        RawAction::Allow => Ok(Entry::Allow(policy)),
    }
}

/// `pathNormalization`, Istio's names for the modes the filter applies.
impl From<RawPathNormalization> for PathNormalization {
    fn from(raw: RawPathNormalization) -> PathNormalization {
        match raw {
            RawPathNormalization::None => PathNormalization::None,
            RawPathNormalization::Base | RawPathNormalization::Default => PathNormalization::Base,
            RawPathNormalization::MergeSlashes => PathNormalization::MergeSlashes,
            RawPathNormalization::DecodeAndMergeSlashes => PathNormalization::DecodeAndMergeSlashes,
        }
    }
}

/// The provider a CUSTOM policy names: one of `extensionProviders` (each CUSTOM policy may name
/// its own, HTTP or gRPC; Istio allows only one per workload unless a pilot flag is set).
fn custom_provider(
    named: Option<&RawProviderRef>,
    providers: &[Provider],
) -> Result<usize, ConfigError> {
    let Some(named) = named else {
        return Err(ConfigError::new(
            "provider",
            "is required for a CUSTOM policy",
        ));
    };
    providers
        .iter()
        .position(|q| q.name == named.name)
        .ok_or_else(|| {
            ConfigError::new(
                "provider.name",
                format!(
                    "no extension provider named {:?} in extensionProviders",
                    named.name
                ),
            )
        })
}

/// The entries grouped by action. With no policy at all and one provider, every request is
/// checked (the plain "check everything" setup).
pub(super) fn group(entries: Vec<Entry>, providers: &[Provider]) -> Policies {
    let mut policies = Policies::default();
    if let ([], [only]) = (entries.as_slice(), providers) {
        policies.custom.push(CustomPolicy {
            policy: Policy {
                name: format!("{}-all-requests", only.name),
                rules: vec![Rule::default()],
                dry_run: false,
            },
            provider: 0,
        });
    }
    for entry in entries {
        match entry {
            Entry::Custom(custom) => policies.custom.push(custom),
            Entry::Deny(p) if p.dry_run => policies.dry_deny.push(p),
            Entry::Deny(p) => policies.deny.push(p),
            Entry::Allow(p) if p.dry_run => policies.dry_allow.push(p),
            Entry::Allow(p) => policies.allow.push(p),
        }
    }
    policies
}

fn compile_rule(raw: &RawRule) -> Result<Rule, ConfigError> {
    let from = each("from", &raw.from, |from, _| {
        let source = from
            .source
            .as_ref()
            .ok_or_else(|| ConfigError::new("source", "is required"))?;
        non_empty(constraints(source, SOURCE)).map_err(|e| e.within("source"))
    })?;
    let to = each("to", &raw.to, |to, _| {
        let operation = to
            .operation
            .as_ref()
            .ok_or_else(|| ConfigError::new("operation", "is required"))?;
        non_empty(constraints(operation, OPERATION)).map_err(|e| e.within("operation"))
    })?;
    let when = each("when", &raw.when, |c, _| compile_condition(c))?;
    Ok(Rule {
        from,
        to,
        when: when.into_iter().flatten().collect(),
    })
}

/// A `source` or `operation` must set at least one field.
fn non_empty(
    constraints: Result<Vec<Constraint>, ConfigError>,
) -> Result<Vec<Constraint>, ConfigError> {
    match constraints {
        Ok(c) if c.is_empty() => Err(ConfigError::here("must not be empty")),
        other => other,
    }
}

/// How one value of a field compiles; the message is about the value, the caller adds its path.
type Compile = fn(&str) -> Result<ValueMatch, String>;

fn text_value(v: &str) -> Result<ValueMatch, String> {
    Ok(ValueMatch::Text(StringMatch::parse(v)))
}
fn host_value(v: &str) -> Result<ValueMatch, String> {
    Ok(ValueMatch::Host(HostMatch::parse(v)))
}
fn path_value(v: &str) -> Result<ValueMatch, String> {
    PathMatch::parse(v).map(ValueMatch::Path)
}
fn ip_value(v: &str) -> Result<ValueMatch, String> {
    Cidr::parse(v).map(ValueMatch::Ip)
}
fn port_value(v: &str) -> Result<ValueMatch, String> {
    v.trim()
        .parse::<u16>()
        .ok()
        .filter(|p| *p > 0)
        .map(ValueMatch::Port)
        .ok_or_else(|| format!("{v:?} is not a port number"))
}

/// One field of a `source` or `operation`: its name, whether it is the `not*` form, the request
/// attribute it matches, how a value compiles, and where the raw entry holds its values.
struct Field<R> {
    name: &'static str,
    negated: bool,
    attribute: Attribute,
    value: Compile,
    values: fn(&R) -> Option<&[String]>,
}

/// `from[].source`, Istio's `Source` fields.
#[rustfmt::skip]
const SOURCE: &[Field<RawSource>] = &[
    Field { name: "principals",           negated: false, attribute: Attribute::PeerPrincipal,    value: text_value, values: |s| s.principals.as_deref() },
    Field { name: "notPrincipals",        negated: true,  attribute: Attribute::PeerPrincipal,    value: text_value, values: |s| s.not_principals.as_deref() },
    Field { name: "requestPrincipals",    negated: false, attribute: Attribute::RequestPrincipal, value: text_value, values: |s| s.request_principals.as_deref() },
    Field { name: "notRequestPrincipals", negated: true,  attribute: Attribute::RequestPrincipal, value: text_value, values: |s| s.not_request_principals.as_deref() },
    Field { name: "namespaces",           negated: false, attribute: Attribute::Namespace,        value: text_value, values: |s| s.namespaces.as_deref() },
    Field { name: "notNamespaces",        negated: true,  attribute: Attribute::Namespace,        value: text_value, values: |s| s.not_namespaces.as_deref() },
    Field { name: "ipBlocks",             negated: false, attribute: Attribute::SourceIp,         value: ip_value,   values: |s| s.ip_blocks.as_deref() },
    Field { name: "notIpBlocks",          negated: true,  attribute: Attribute::SourceIp,         value: ip_value,   values: |s| s.not_ip_blocks.as_deref() },
    Field { name: "remoteIpBlocks",       negated: false, attribute: Attribute::RemoteIp,         value: ip_value,   values: |s| s.remote_ip_blocks.as_deref() },
    Field { name: "notRemoteIpBlocks",    negated: true,  attribute: Attribute::RemoteIp,         value: ip_value,   values: |s| s.not_remote_ip_blocks.as_deref() },
];

/// `to[].operation`, Istio's `Operation` fields (`ports` are read as text, numbers or not).
#[rustfmt::skip]
const OPERATION: &[Field<RawOperation>] = &[
    Field { name: "hosts",      negated: false, attribute: Attribute::Host,            value: host_value, values: |o| o.hosts.as_deref() },
    Field { name: "notHosts",   negated: true,  attribute: Attribute::Host,            value: host_value, values: |o| o.not_hosts.as_deref() },
    Field { name: "ports",      negated: false, attribute: Attribute::DestinationPort, value: port_value, values: |o| o.ports.as_deref() },
    Field { name: "notPorts",   negated: true,  attribute: Attribute::DestinationPort, value: port_value, values: |o| o.not_ports.as_deref() },
    Field { name: "methods",    negated: false, attribute: Attribute::Method,          value: text_value, values: |o| o.methods.as_deref() },
    Field { name: "notMethods", negated: true,  attribute: Attribute::Method,          value: text_value, values: |o| o.not_methods.as_deref() },
    Field { name: "paths",      negated: false, attribute: Attribute::Path,            value: path_value, values: |o| o.paths.as_deref() },
    Field { name: "notPaths",   negated: true,  attribute: Attribute::Path,            value: path_value, values: |o| o.not_paths.as_deref() },
];

/// The constraints of the fields `raw` sets, in table order.
fn constraints<R>(raw: &R, fields: &[Field<R>]) -> Result<Vec<Constraint>, ConfigError> {
    let mut out = Vec::new();
    for field in fields {
        let values = (field.values)(raw);
        out.extend(constraint(
            field.name,
            &field.attribute,
            field.negated,
            field.value,
            values,
        )?);
    }
    Ok(out)
}

/// The constraint of one field, `None` when it is absent or empty; an error names `field[i]`.
fn constraint(
    field: &str,
    attribute: &Attribute,
    negated: bool,
    compile: Compile,
    values: Option<&[String]>,
) -> Result<Option<Constraint>, ConfigError> {
    let Some(values) = values.filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let values = each(field, values, |v, _| compile(v).map_err(ConfigError::here))?;
    Ok(Some(Constraint {
        attribute: attribute.clone(),
        values,
        negated,
    }))
}

/// `when` keys as Istio names them: `request.headers[x]`, `source.ip`, `request.auth.claims[a][b]` …
fn condition_attribute(key: &str) -> Result<(Attribute, Compile), String> {
    if let Some(name) = key
        .strip_prefix("request.headers[")
        .and_then(|k| k.strip_suffix(']'))
    {
        if !is_header_name(name) {
            return Err(format!("{name:?} is not a header name"));
        }
        return Ok((Attribute::Header(name.to_ascii_lowercase()), text_value));
    }
    if let Some(rest) = key.strip_prefix("request.auth.claims[") {
        let inner = rest
            .strip_suffix(']')
            .ok_or("claims key must look like request.auth.claims[a][b]")?;
        let path: Vec<String> = inner.split("][").map(str::to_string).collect();
        if path.iter().any(|p| p.is_empty() || p.contains(['[', ']'])) {
            return Err("claims key must look like request.auth.claims[a][b]".into());
        }
        return Ok((Attribute::AuthClaim(path), text_value));
    }
    Ok(match key {
        "source.ip" => (Attribute::SourceIp, ip_value),
        "remote.ip" => (Attribute::RemoteIp, ip_value),
        "destination.ip" => (Attribute::DestinationIp, ip_value),
        "destination.port" => (Attribute::DestinationPort, port_value),
        "source.namespace" => (Attribute::Namespace, text_value),
        "source.principal" => (Attribute::PeerPrincipal, text_value),
        "connection.sni" => (Attribute::Sni, text_value),
        "request.auth.principal" => (Attribute::RequestPrincipal, text_value),
        "request.auth.audiences" => (Attribute::AuthAudiences, text_value),
        "request.auth.presenter" => (Attribute::AuthPresenter, text_value),
        other => return Err(format!("unsupported key {other:?}")),
    })
}

fn compile_condition(c: &RawCondition) -> Result<Vec<Constraint>, ConfigError> {
    let (attribute, compile) =
        condition_attribute(&c.key).map_err(|m| ConfigError::new("key", m))?;
    let has = |v: &Option<Vec<String>>| v.as_ref().is_some_and(|v| !v.is_empty());
    if !has(&c.values) && !has(&c.not_values) {
        return Err(ConfigError::here("one of values or notValues must be set"));
    }
    let values = constraint("values", &attribute, false, compile, c.values.as_deref())?;
    let not_values = constraint(
        "notValues",
        &attribute,
        true,
        compile,
        c.not_values.as_deref(),
    )?;
    Ok(values.into_iter().chain(not_values).collect())
}

#[cfg(test)]
#[allow(clippy::string_slice)]
mod tests {
    use super::*;
    use crate::config::Config;

    /// An Istio `Source` or `Operation` field as Istio defines it: the attribute it matches, a
    /// value it accepts and the kind of matcher that value compiles to.
    struct Istio {
        kind: &'static str,
        field: &'static str,
        attribute: Attribute,
        value: &'static str,
        compiles_to: fn(&ValueMatch) -> bool,
    }

    /// The positive fields; each `not*` form is their negation.
    #[rustfmt::skip]
    const ISTIO: &[Istio] = &[
        Istio { kind: "source",    field: "principals",        attribute: Attribute::PeerPrincipal,    value: "spiffe://a", compiles_to: |v| matches!(v, ValueMatch::Text(_)) },
        Istio { kind: "source",    field: "requestPrincipals", attribute: Attribute::RequestPrincipal, value: "iss/sub",    compiles_to: |v| matches!(v, ValueMatch::Text(_)) },
        Istio { kind: "source",    field: "namespaces",        attribute: Attribute::Namespace,        value: "prod",       compiles_to: |v| matches!(v, ValueMatch::Text(_)) },
        Istio { kind: "source",    field: "ipBlocks",          attribute: Attribute::SourceIp,         value: "10.0.0.0/8", compiles_to: |v| matches!(v, ValueMatch::Ip(_)) },
        Istio { kind: "source",    field: "remoteIpBlocks",    attribute: Attribute::RemoteIp,         value: "10.0.0.1",   compiles_to: |v| matches!(v, ValueMatch::Ip(_)) },
        Istio { kind: "operation", field: "hosts",             attribute: Attribute::Host,             value: "a.example",  compiles_to: |v| matches!(v, ValueMatch::Host(_)) },
        Istio { kind: "operation", field: "ports",             attribute: Attribute::DestinationPort,  value: "8080",       compiles_to: |v| matches!(v, ValueMatch::Port(8080)) },
        Istio { kind: "operation", field: "methods",           attribute: Attribute::Method,           value: "GET",        compiles_to: |v| matches!(v, ValueMatch::Text(_)) },
        Istio { kind: "operation", field: "paths",             attribute: Attribute::Path,             value: "/a/*",       compiles_to: |v| matches!(v, ValueMatch::Path(_)) },
    ];

    fn only_constraint(kind: &str, field: &str, value: &str) -> Constraint {
        let list = if kind == "source" { "from" } else { "to" };
        let json = format!(
            r#"{{"policies": [{{"rules": [{{"{list}": [{{"{kind}": {{"{field}": ["{value}"]}}}}]}}]}}]}}"#
        );
        let config = Config::parse(json.as_bytes()).unwrap_or_else(|e| panic!("{json}: {e}"));
        let rule = &config.policies.allow[0].rules[0];
        let entry = if kind == "source" {
            &rule.from
        } else {
            &rule.to
        };
        assert_eq!(entry.len(), 1, "{json}");
        assert_eq!(entry[0].len(), 1, "{json}");
        entry[0][0].clone()
    }

    #[test]
    fn every_source_and_operation_field_reads_its_key_and_only_not_fields_negate() {
        for istio in ISTIO {
            let positive = istio.field;
            let negative = format!("not{}{}", positive[..1].to_uppercase(), &positive[1..]);
            for (field, negated) in [(positive.to_string(), false), (negative, true)] {
                let constraint = only_constraint(istio.kind, &field, istio.value);
                assert_eq!(constraint.attribute, istio.attribute, "{field}");
                assert_eq!(constraint.negated, negated, "{field}");
                assert!(
                    (istio.compiles_to)(&constraint.values[0]),
                    "{field}: {constraint:?}"
                );
            }
        }
        let sources = ISTIO.iter().filter(|f| f.kind == "source").count();
        assert_eq!(SOURCE.len(), 2 * sources);
        assert_eq!(OPERATION.len(), 2 * (ISTIO.len() - sources));
    }

    #[test]
    fn ports_are_numbers_or_strings_alike() {
        for ports in [r#"[8080]"#, r#"["8080"]"#, r#"[" 8080 "]"#] {
            let json = format!(
                r#"{{"policies": [{{"rules": [{{"to": [{{"operation": {{"notPorts": {ports}}}}}]}}]}}]}}"#
            );
            let config = Config::parse(json.as_bytes()).unwrap();
            let constraint = &config.policies.allow[0].rules[0].to[0][0];
            assert_eq!(constraint.values, vec![ValueMatch::Port(8080)], "{ports}");
            assert!(constraint.negated);
        }
    }
}
