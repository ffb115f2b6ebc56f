//! `policies` (Istio `AuthorizationPolicy.spec` entries): rules, `from[].source`,
//! `to[].operation` and `when[]` compiled into the constraints the evaluator matches, and the
//! entries grouped by action. Errors name fields relative to the policy; `config` adds
//! `policies[i]`.

use super::raw::{
    NumberOrString, RawCondition, RawOperation, RawPolicy, RawProviderRef, RawRule, RawSource,
};
use super::{each, is_header_name, ConfigError};
use crate::ext_authz::Provider;
use crate::policy::matcher::{Cidr, HostMatch, PathMatch, StringMatch};
use crate::policy::{Attribute, Constraint, CustomPolicy, Policies, Policy, Rule, ValueMatch};

/// A compiled `policies[]` entry, before the entries are grouped by action.
pub(super) enum Entry {
    /// CUSTOM: ask the provider (an index into `extensionProviders`).
    Custom(CustomPolicy),
    Deny(Policy),
    Allow(Policy),
}

/// One `policies[]` entry; `place` (`policies[2]`) names it when it has no `name`. `earlier`
/// are the entries before it: every CUSTOM policy must name the same provider.
pub(super) fn compile(
    raw: &RawPolicy,
    place: String,
    providers: &[Provider],
    earlier: &[Entry],
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
    match raw.action.as_deref().unwrap_or("ALLOW") {
        "CUSTOM" => {
            let provider = custom_provider(raw.provider.as_ref(), providers, earlier)?;
            Ok(Entry::Custom(CustomPolicy { policy, provider }))
        }
        action @ ("DENY" | "ALLOW") => {
            if raw.provider.is_some() {
                return Err(ConfigError::new(
                    "provider",
                    "is only allowed with action CUSTOM",
                ));
            }
            Ok(if action == "DENY" {
                Entry::Deny(policy)
            } else {
                Entry::Allow(policy)
            })
        }
        "AUDIT" => Err(ConfigError::new("action", "AUDIT is not supported")),
        other => Err(ConfigError::new(
            "action",
            format!("unknown action {other:?} (CUSTOM, DENY, ALLOW)"),
        )),
    }
}

/// The provider a CUSTOM policy names: one of `extensionProviders`, and the one every CUSTOM
/// policy before it named (Istio allows one per workload).
fn custom_provider(
    named: Option<&RawProviderRef>,
    providers: &[Provider],
    earlier: &[Entry],
) -> Result<usize, ConfigError> {
    let Some(named) = named else {
        return Err(ConfigError::new(
            "provider",
            "is required for a CUSTOM policy",
        ));
    };
    let Some(index) = providers.iter().position(|q| q.name == named.name) else {
        return Err(ConfigError::new(
            "provider.name",
            format!(
                "no extension provider named {:?} in extensionProviders",
                named.name
            ),
        ));
    };
    let first = earlier.iter().find_map(|e| match e {
        Entry::Custom(c) => providers.get(c.provider),
        _ => None,
    });
    if let Some(first) = first.filter(|first| first.name != named.name) {
        return Err(ConfigError::new(
            "provider.name",
            format!(
                "all CUSTOM policies must use one provider (Istio allows one per workload); found {:?} and {:?}",
                first.name, named.name
            ),
        ));
    }
    Ok(index)
}

/// The entries grouped by action. With no policy at all and one provider, every request is
/// checked (the plain "check everything" setup).
pub(super) fn group(entries: Vec<Entry>, providers: &[Provider]) -> Policies {
    let mut policies = Policies::default();
    if entries.is_empty() && providers.len() == 1 {
        policies.custom.push(CustomPolicy {
            policy: Policy {
                name: format!("{}-all-requests", providers[0].name),
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
        non_empty(compile_source(source)).map_err(|e| e.within("source"))
    })?;
    let to = each("to", &raw.to, |to, _| {
        let operation = to
            .operation
            .as_ref()
            .ok_or_else(|| ConfigError::new("operation", "is required"))?;
        non_empty(compile_operation(operation)).map_err(|e| e.within("operation"))
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

/// Adds `field` (and its negation) as constraints when present and non-empty.
fn push(
    out: &mut Vec<Constraint>,
    attribute: Attribute,
    values: Option<&Vec<String>>,
    negated: bool,
    compile: Compile,
    at: &str,
) -> Result<(), ConfigError> {
    let Some(values) = values.filter(|v| !v.is_empty()) else {
        return Ok(());
    };
    let values = values
        .iter()
        .enumerate()
        .map(|(i, v)| compile(v).map_err(|m| ConfigError::new(format!("{at}[{i}]"), m)))
        .collect::<Result<Vec<_>, _>>()?;
    out.push(Constraint {
        attribute,
        values,
        negated,
    });
    Ok(())
}

fn compile_source(s: &RawSource) -> Result<Vec<Constraint>, ConfigError> {
    let mut out = Vec::new();
    push(
        &mut out,
        Attribute::PeerPrincipal,
        s.principals.as_ref(),
        false,
        text_value,
        "principals",
    )?;
    push(
        &mut out,
        Attribute::PeerPrincipal,
        s.not_principals.as_ref(),
        true,
        text_value,
        "notPrincipals",
    )?;
    push(
        &mut out,
        Attribute::RequestPrincipal,
        s.request_principals.as_ref(),
        false,
        text_value,
        "requestPrincipals",
    )?;
    push(
        &mut out,
        Attribute::RequestPrincipal,
        s.not_request_principals.as_ref(),
        true,
        text_value,
        "notRequestPrincipals",
    )?;
    push(
        &mut out,
        Attribute::Namespace,
        s.namespaces.as_ref(),
        false,
        text_value,
        "namespaces",
    )?;
    push(
        &mut out,
        Attribute::Namespace,
        s.not_namespaces.as_ref(),
        true,
        text_value,
        "notNamespaces",
    )?;
    push(
        &mut out,
        Attribute::SourceIp,
        s.ip_blocks.as_ref(),
        false,
        ip_value,
        "ipBlocks",
    )?;
    push(
        &mut out,
        Attribute::SourceIp,
        s.not_ip_blocks.as_ref(),
        true,
        ip_value,
        "notIpBlocks",
    )?;
    push(
        &mut out,
        Attribute::RemoteIp,
        s.remote_ip_blocks.as_ref(),
        false,
        ip_value,
        "remoteIpBlocks",
    )?;
    push(
        &mut out,
        Attribute::RemoteIp,
        s.not_remote_ip_blocks.as_ref(),
        true,
        ip_value,
        "notRemoteIpBlocks",
    )?;
    Ok(out)
}

fn port_strings(ports: Option<&Vec<NumberOrString>>) -> Option<Vec<String>> {
    ports.map(|list| {
        list.iter()
            .map(|p| match p {
                NumberOrString::Number(n) => n.to_string(),
                NumberOrString::Text(t) => t.clone(),
            })
            .collect()
    })
}

fn compile_operation(o: &RawOperation) -> Result<Vec<Constraint>, ConfigError> {
    let mut out = Vec::new();
    push(
        &mut out,
        Attribute::Host,
        o.hosts.as_ref(),
        false,
        host_value,
        "hosts",
    )?;
    push(
        &mut out,
        Attribute::Host,
        o.not_hosts.as_ref(),
        true,
        host_value,
        "notHosts",
    )?;
    push(
        &mut out,
        Attribute::DestinationPort,
        port_strings(o.ports.as_ref()).as_ref(),
        false,
        port_value,
        "ports",
    )?;
    push(
        &mut out,
        Attribute::DestinationPort,
        port_strings(o.not_ports.as_ref()).as_ref(),
        true,
        port_value,
        "notPorts",
    )?;
    push(
        &mut out,
        Attribute::Method,
        o.methods.as_ref(),
        false,
        text_value,
        "methods",
    )?;
    push(
        &mut out,
        Attribute::Method,
        o.not_methods.as_ref(),
        true,
        text_value,
        "notMethods",
    )?;
    push(
        &mut out,
        Attribute::Path,
        o.paths.as_ref(),
        false,
        path_value,
        "paths",
    )?;
    push(
        &mut out,
        Attribute::Path,
        o.not_paths.as_ref(),
        true,
        path_value,
        "notPaths",
    )?;
    Ok(out)
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
    let mut out = Vec::new();
    push(
        &mut out,
        attribute.clone(),
        c.values.as_ref(),
        false,
        compile,
        "values",
    )?;
    push(
        &mut out,
        attribute,
        c.not_values.as_ref(),
        true,
        compile,
        "notValues",
    )?;
    Ok(out)
}
