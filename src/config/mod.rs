//! Plugin configuration: Istio field names, parsed strictly (unknown fields, wrong types and
//! impossible combinations are errors naming the field) and compiled once in `on_configure`.

mod duration;
mod json_path;
mod raw;

use std::fmt;

pub use duration::parse_duration;
use raw::{
    NumberOrString, RawCondition, RawConfig, RawExtAuthzHttp, RawJwtRule, RawOperation, RawPolicy,
    RawRule, RawSource,
};

use crate::ext_authz::{
    BodyOptions, HeaderValueTemplate, Provider, DEFAULT_STATUS_ON_ERROR, DEFAULT_TIMEOUT,
};
use crate::jwt::extract::Location;
use crate::jwt::jwks::Jwks;
use crate::jwt::{
    sanitize_audience, JwtConfig, JwtRule, KeySource, DEFAULT_CLOCK_SKEW, DEFAULT_FETCH_TIMEOUT,
    DEFAULT_REFRESH,
};
use crate::policy::matcher::{Cidr, HeaderNames, HostMatch, PathMatch, StringMatch};
use crate::policy::path::PathNormalization;
use crate::policy::{
    Attribute, Constraint, CustomPolicy, Needs, Policies, Policy, Rule, ValueMatch,
};

/// A configuration error: the field path (`policies[1].rules[0].to[0].operation.paths`) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

impl ConfigError {
    fn new(path: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() || self.path == "." {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// The compiled, validated configuration (Envoy's immutable `FilterConfig`).
#[derive(Debug, Clone)]
pub struct Config {
    pub jwt: JwtConfig,
    pub providers: Vec<Provider>,
    pub policies: Policies,
    pub path_normalization: PathNormalization,
    pub needs: Needs,
    /// `exposeDenialReason`: local replies carry `x-inline-authz-denied-by`.
    pub expose_denial_reason: bool,
    pub jwt_cache_size: usize,
    pub decision_cache_size: usize,
    pub signature_backend: SignatureBackendChoice,
}

/// `signatureBackend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureBackendChoice {
    Auto,
    Host,
    Rust,
}

/// The JSON Schema of the plugin configuration, derived from the types `Config::parse` reads.
#[cfg(feature = "schema")]
pub fn json_schema() -> serde_json::Value {
    let mut schema = serde_json::to_value(schemars::schema_for!(RawConfig)).unwrap_or_default();
    if let Some(object) = schema.as_object_mut() {
        object.insert("title".into(), "inline-authz plugin configuration".into());
    }
    schema
}

impl Config {
    /// Parses the plugin configuration (JSON). An empty configuration is `{}`.
    pub fn parse(bytes: &[u8]) -> Result<Config, ConfigError> {
        let bytes = if bytes.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            bytes
        };
        let raw: RawConfig = serde_json::from_slice(bytes).map_err(|e| {
            let message = e.to_string();
            let message = match message.find(" at line ") {
                Some(i) => message[..i].to_string(),
                None => message,
            };
            ConfigError::new(json_path::path_at(bytes, e.line(), e.column()), message)
        })?;
        compile(raw)
    }

    /// Names of the DENY policies (dry-run ones included), for their metrics.
    pub fn deny_policy_names(&self) -> Vec<&str> {
        self.policies
            .deny
            .iter()
            .chain(&self.policies.dry_deny)
            .map(|p| p.name.as_str())
            .collect()
    }

    /// The provider the first CUSTOM policy names, if any.
    pub fn custom_provider(&self) -> Option<&Provider> {
        let first = self.policies.custom.first()?;
        self.providers.get(first.provider)
    }
}

fn compile(raw: RawConfig) -> Result<Config, ConfigError> {
    let path_normalization = match &raw.path_normalization {
        None => PathNormalization::default(),
        Some(text) => {
            PathNormalization::parse(text).map_err(|m| ConfigError::new("pathNormalization", m))?
        }
    };

    let mut providers = Vec::with_capacity(raw.extension_providers.len());
    for (i, p) in raw.extension_providers.iter().enumerate() {
        let at = format!("extensionProviders[{i}]");
        if p.name.trim().is_empty() {
            return Err(ConfigError::new(format!("{at}.name"), "must not be empty"));
        }
        if providers.iter().any(|q: &Provider| q.name == p.name) {
            return Err(ConfigError::new(
                format!("{at}.name"),
                format!("duplicate provider name {:?}", p.name),
            ));
        }
        let Some(http) = &p.envoy_ext_authz_http else {
            return Err(ConfigError::new(
                at,
                "envoyExtAuthzHttp is required (the only provider kind supported)",
            ));
        };
        providers.push(compile_provider(
            &p.name,
            http,
            &format!("{at}.envoyExtAuthzHttp"),
        )?);
    }

    let mut policies = Policies::default();
    let mut custom_provider: Option<(usize, String)> = None;
    for (i, p) in raw.policies.iter().enumerate() {
        let at = format!("policies[{i}]");
        let name = p.name.clone().unwrap_or_else(|| at.clone());
        let action = p.action.as_deref().unwrap_or("ALLOW");
        let rules = compile_rules(p, &at)?;
        let policy = Policy {
            name,
            rules,
            dry_run: p.dry_run,
        };
        match action {
            "CUSTOM" => {
                let Some(provider) = &p.provider else {
                    return Err(ConfigError::new(
                        format!("{at}.provider"),
                        "is required for a CUSTOM policy",
                    ));
                };
                let Some(index) = providers.iter().position(|q| q.name == provider.name) else {
                    return Err(ConfigError::new(
                        format!("{at}.provider.name"),
                        format!(
                            "no extension provider named {:?} in extensionProviders",
                            provider.name
                        ),
                    ));
                };
                if let Some((_, first)) = &custom_provider {
                    if *first != provider.name {
                        return Err(ConfigError::new(
                            format!("{at}.provider.name"),
                            format!("all CUSTOM policies must use one provider (Istio allows one per workload); found {first:?} and {:?}", provider.name),
                        ));
                    }
                }
                custom_provider = Some((index, provider.name.clone()));
                policies.custom.push(CustomPolicy {
                    policy,
                    provider: index,
                });
            }
            "DENY" | "ALLOW" => {
                if p.provider.is_some() {
                    return Err(ConfigError::new(
                        format!("{at}.provider"),
                        "is only allowed with action CUSTOM",
                    ));
                }
                match (action, policy.dry_run) {
                    ("DENY", false) => policies.deny.push(policy),
                    ("DENY", true) => policies.dry_deny.push(policy),
                    (_, false) => policies.allow.push(policy),
                    (_, true) => policies.dry_allow.push(policy),
                }
            }
            "AUDIT" => {
                return Err(ConfigError::new(
                    format!("{at}.action"),
                    "AUDIT is not supported",
                ))
            }
            other => {
                return Err(ConfigError::new(
                    format!("{at}.action"),
                    format!("unknown action {other:?} (CUSTOM, DENY, ALLOW)"),
                ))
            }
        }
    }

    // The plain "check everything" setup: one provider, no policy at all.
    if raw.policies.is_empty() && providers.len() == 1 {
        policies.custom.push(CustomPolicy {
            policy: Policy {
                name: format!("{}-all-requests", providers[0].name),
                rules: vec![Rule::default()],
                dry_run: false,
            },
            provider: 0,
        });
    }

    let needs = policies.needs();
    let jwt = compile_jwt(&raw)?;
    policies.challenge_tokenless = !jwt.is_empty();
    Ok(Config {
        jwt,
        providers,
        policies,
        path_normalization,
        needs,
        expose_denial_reason: raw.expose_denial_reason,
        jwt_cache_size: raw
            .jwt_cache_size
            .map_or(crate::jwt::cache::DEFAULT_SIZE, |s| s as usize),
        decision_cache_size: raw
            .decision_cache_size
            .map_or(crate::ext_authz::cache::DEFAULT_SIZE, |s| s as usize),
        signature_backend: match raw.signature_backend.as_deref() {
            None | Some("auto") => SignatureBackendChoice::Auto,
            Some("host") => SignatureBackendChoice::Host,
            Some("rust") => SignatureBackendChoice::Rust,
            Some(other) => {
                return Err(ConfigError::new(
                    "signatureBackend",
                    format!("unknown value {other:?} (auto, host, rust)"),
                ))
            }
        },
    })
}

fn duration_field(
    text: &Option<String>,
    at: &str,
    default: std::time::Duration,
) -> Result<std::time::Duration, ConfigError> {
    match text {
        None => Ok(default),
        Some(t) => parse_duration(t).map_err(|m| ConfigError::new(at, m)),
    }
}

fn compile_jwt(raw: &RawConfig) -> Result<JwtConfig, ConfigError> {
    let clock_skew = duration_field(&raw.clock_skew, "clockSkew", DEFAULT_CLOCK_SKEW)?;
    let refresh = duration_field(
        &raw.jwks_refresh_interval,
        "jwksRefreshInterval",
        DEFAULT_REFRESH,
    )?;
    if refresh.as_secs() == 0 {
        return Err(ConfigError::new(
            "jwksRefreshInterval",
            "must be at least 1s",
        ));
    }
    let mut config = JwtConfig {
        rules: Vec::with_capacity(raw.jwt_rules.len()),
        clock_skew,
        refresh,
        ..JwtConfig::default()
    };
    for (i, r) in raw.jwt_rules.iter().enumerate() {
        let at = format!("jwtRules[{i}]");
        if r.issuer.trim().is_empty() {
            return Err(ConfigError::new(format!("{at}.issuer"), "is required"));
        }
        if config.rules.iter().any(|q| q.issuer == r.issuer) {
            return Err(ConfigError::new(
                format!("{at}.issuer"),
                format!("duplicate issuer {:?}", r.issuer),
            ));
        }
        config.rules.push(compile_jwt_rule(r, &at)?);
    }
    config.index_locations();
    Ok(config)
}

fn compile_jwt_rule(r: &RawJwtRule, at: &str) -> Result<JwtRule, ConfigError> {
    let field = |f: &str| format!("{at}.{f}");
    let keys = match (&r.jwks, &r.jwks_uri) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::new(at, "set one of jwks or jwksUri, not both"))
        }
        (None, None) => {
            return Err(ConfigError::new(
                at,
                "one of jwks or jwksUri is required (no OpenID discovery)",
            ))
        }
        (Some(text), None) => {
            if r.jwks_cluster.is_some() {
                return Err(ConfigError::new(
                    field("jwksCluster"),
                    "only applies with jwksUri",
                ));
            }
            KeySource::Inline(std::rc::Rc::new(
                Jwks::parse(text).map_err(|m| ConfigError::new(field("jwks"), m))?,
            ))
        }
        (None, Some(uri)) => {
            let (scheme, rest) = uri
                .split_once("://")
                .filter(|(s, _)| *s == "http" || *s == "https")
                .ok_or_else(|| {
                    ConfigError::new(field("jwksUri"), "must be an http:// or https:// URL")
                })?;
            let (authority, path) = match rest.find('/') {
                Some(i) => (&rest[..i], &rest[i..]),
                None => (rest, "/"),
            };
            let (host, port) = match authority.rsplit_once(':') {
                Some((h, p)) => (
                    h,
                    p.parse::<u16>()
                        .map_err(|_| ConfigError::new(field("jwksUri"), "has an invalid port"))?,
                ),
                None => (authority, if scheme == "https" { 443 } else { 80 }),
            };
            if host.is_empty() || authority.contains('@') {
                return Err(ConfigError::new(field("jwksUri"), "must name a host"));
            }
            let cluster = match &r.jwks_cluster {
                Some(c) if c.trim().is_empty() => {
                    return Err(ConfigError::new(field("jwksCluster"), "must not be empty"))
                }
                Some(c) => c.clone(),
                None => format!("outbound|{port}||{host}"),
            };
            let timeout = duration_field(&r.timeout, &field("timeout"), DEFAULT_FETCH_TIMEOUT)?;
            if timeout.is_zero() {
                return Err(ConfigError::new(field("timeout"), "must be greater than 0"));
            }
            KeySource::Remote {
                uri: uri.clone(),
                cluster,
                authority: authority.to_string(),
                path: path.to_string(),
                timeout,
            }
        }
    };
    if r.jwks.is_some() && r.timeout.is_some() {
        return Err(ConfigError::new(
            field("timeout"),
            "only applies with jwksUri",
        ));
    }
    let mut locations = Vec::new();
    for (j, h) in r.from_headers.iter().flatten().enumerate() {
        if !is_header_name(&h.name) {
            return Err(ConfigError::new(
                format!("{at}.fromHeaders[{j}].name"),
                "is not a valid header name",
            ));
        }
        locations.push(Location::Header {
            name: h.name.to_ascii_lowercase(),
            prefix: h.prefix.clone().unwrap_or_default(),
        });
    }
    for (j, p) in r.from_params.iter().flatten().enumerate() {
        if p.is_empty() {
            return Err(ConfigError::new(
                format!("{at}.fromParams[{j}]"),
                "must not be empty",
            ));
        }
        locations.push(Location::Param(p.clone()));
    }
    for (j, c) in r.from_cookies.iter().flatten().enumerate() {
        if c.is_empty() || c.contains([';', '=', ' ']) {
            return Err(ConfigError::new(
                format!("{at}.fromCookies[{j}]"),
                "is not a cookie name",
            ));
        }
        locations.push(Location::Cookie(c.clone()));
    }
    if locations.is_empty() {
        locations = Location::defaults();
    }
    let payload_header = match &r.output_payload_to_header {
        None => None,
        Some(h) if is_header_name(h) => Some(h.to_ascii_lowercase()),
        Some(_) => {
            return Err(ConfigError::new(
                field("outputPayloadToHeader"),
                "is not a valid header name",
            ))
        }
    };
    let mut claim_headers = Vec::new();
    for (j, c) in r.output_claim_to_headers.iter().flatten().enumerate() {
        if !is_header_name(&c.header) {
            return Err(ConfigError::new(
                format!("{at}.outputClaimToHeaders[{j}].header"),
                "is not a valid header name",
            ));
        }
        let path: Vec<String> = c.claim.split('.').map(str::to_string).collect();
        if path.iter().any(String::is_empty) {
            return Err(ConfigError::new(
                format!("{at}.outputClaimToHeaders[{j}].claim"),
                "must be a claim name or a.b path",
            ));
        }
        claim_headers.push((c.header.to_ascii_lowercase(), path));
    }
    Ok(JwtRule {
        issuer: r.issuer.clone(),
        audiences: r
            .audiences
            .iter()
            .flatten()
            .map(|a| sanitize_audience(a))
            .collect(),
        keys,
        locations,
        forward: r.forward_original_token,
        payload_header,
        claim_headers,
    })
}

fn compile_provider(name: &str, raw: &RawExtAuthzHttp, at: &str) -> Result<Provider, ConfigError> {
    let field = |f: &str| format!("{at}.{f}");
    let service = raw.service.trim();
    if service.is_empty() {
        return Err(ConfigError::new(field("service"), "must not be empty"));
    }
    let port = raw
        .port
        .as_u64()
        .filter(|p| (1..=65535).contains(p))
        .ok_or_else(|| ConfigError::new(field("port"), "must be a port number in [1, 65535]"))?;
    // Istio accepts `<namespace>/<hostname>`; the cluster is named after the hostname.
    let host = service.rsplit('/').next().unwrap_or(service);
    let cluster = match &raw.cluster {
        Some(c) if c.trim().is_empty() => {
            return Err(ConfigError::new(field("cluster"), "must not be empty"))
        }
        Some(c) => c.clone(),
        None => format!("outbound|{port}||{host}"),
    };
    let timeout = match &raw.timeout {
        None => DEFAULT_TIMEOUT,
        Some(t) => {
            let d = parse_duration(t).map_err(|m| ConfigError::new(field("timeout"), m))?;
            if d.is_zero() || d.as_millis() > u128::from(u32::MAX) {
                return Err(ConfigError::new(
                    field("timeout"),
                    "must be greater than 0 and fit in 32-bit milliseconds",
                ));
            }
            d
        }
    };
    let path_prefix = raw.path_prefix.clone().unwrap_or_default();
    if !path_prefix.is_empty() && !path_prefix.starts_with('/') {
        return Err(ConfigError::new(
            field("pathPrefix"),
            format!("must begin with '/', found {path_prefix:?}"),
        ));
    }
    if path_prefix.contains(['?', '#'])
        || path_prefix
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(ConfigError::new(
            field("pathPrefix"),
            "must be a plain path (no query, fragment or spaces)",
        ));
    }
    let status_on_error = match &raw.status_on_error {
        None => DEFAULT_STATUS_ON_ERROR,
        Some(s) => s
            .as_u64()
            .filter(|s| (200..=599).contains(s))
            .map(|s| s as u32)
            .ok_or_else(|| {
                ConfigError::new(
                    field("statusOnError"),
                    "must be an HTTP status code in [200, 599]",
                )
            })?,
    };
    let listed = raw
        .include_request_headers_in_check
        .as_ref()
        .or(raw.include_headers_in_check.as_ref());
    let request_headers = header_names(
        listed.map(Vec::as_slice).unwrap_or(&[]),
        &field("includeRequestHeadersInCheck"),
    )?;
    let mut additional_headers = Vec::with_capacity(raw.include_additional_headers_in_check.len());
    for (name, value) in &raw.include_additional_headers_in_check {
        let at = field(&format!("includeAdditionalHeadersInCheck.{name}"));
        if !is_header_name(name) {
            return Err(ConfigError::new(at, "is not a valid header name"));
        }
        if value.contains(['\r', '\n', '\0']) {
            return Err(ConfigError::new(at, "value must not contain CR, LF or NUL"));
        }
        let template = HeaderValueTemplate::parse(value).map_err(|m| ConfigError::new(at, m))?;
        additional_headers.push((name.to_ascii_lowercase(), template));
    }
    let body = match &raw.include_request_body_in_check {
        None => None,
        Some(b) => {
            let max = b.max_request_bytes.filter(|m| *m > 0).ok_or_else(|| {
                ConfigError::new(
                    field("includeRequestBodyInCheck.maxRequestBytes"),
                    "is required and must be greater than 0",
                )
            })?;
            Some(BodyOptions {
                max_request_bytes: max,
                allow_partial_message: b.allow_partial_message,
            })
        }
    };
    Ok(Provider {
        name: name.to_string(),
        cluster,
        timeout,
        path_prefix,
        fail_open: raw.fail_open,
        status_on_error,
        request_headers,
        additional_headers,
        body,
        upstream_on_allow: header_names(
            &raw.headers_to_upstream_on_allow,
            &field("headersToUpstreamOnAllow"),
        )?,
        downstream_on_allow: header_names(
            &raw.headers_to_downstream_on_allow,
            &field("headersToDownstreamOnAllow"),
        )?,
        downstream_on_deny: match &raw.headers_to_downstream_on_deny {
            None => None,
            Some(list) if list.is_empty() => None,
            Some(list) => Some(header_names(list, &field("headersToDownstreamOnDeny"))?),
        },
    })
}

fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn header_names(patterns: &[String], at: &str) -> Result<HeaderNames, ConfigError> {
    for (i, p) in patterns.iter().enumerate() {
        let bare = p.trim_matches('*');
        if !(p == "*"
            || is_header_name(bare)
            || bare.starts_with(':') && is_header_name(&bare[1..]))
        {
            return Err(ConfigError::new(
                format!("{at}[{i}]"),
                format!("{p:?} is not a header name or pattern"),
            ));
        }
    }
    Ok(HeaderNames::new(patterns))
}

fn compile_rules(policy: &RawPolicy, at: &str) -> Result<Vec<Rule>, ConfigError> {
    let Some(rules) = &policy.rules else {
        return Ok(Vec::new());
    };
    rules
        .iter()
        .enumerate()
        .map(|(i, r)| compile_rule(r, &format!("{at}.rules[{i}]")))
        .collect()
}

fn compile_rule(raw: &RawRule, at: &str) -> Result<Rule, ConfigError> {
    let mut rule = Rule::default();
    for (i, from) in raw.from.iter().enumerate() {
        let at = format!("{at}.from[{i}].source");
        let source = from
            .source
            .as_ref()
            .ok_or_else(|| ConfigError::new(at.clone(), "is required"))?;
        let constraints = compile_source(source, &at)?;
        if constraints.is_empty() {
            return Err(ConfigError::new(at, "must not be empty"));
        }
        rule.from.push(constraints);
    }
    for (i, to) in raw.to.iter().enumerate() {
        let at = format!("{at}.to[{i}].operation");
        let operation = to
            .operation
            .as_ref()
            .ok_or_else(|| ConfigError::new(at.clone(), "is required"))?;
        let constraints = compile_operation(operation, &at)?;
        if constraints.is_empty() {
            return Err(ConfigError::new(at, "must not be empty"));
        }
        rule.to.push(constraints);
    }
    for (i, condition) in raw.when.iter().enumerate() {
        rule.when
            .extend(compile_condition(condition, &format!("{at}.when[{i}]"))?);
    }
    Ok(rule)
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

fn compile_source(s: &RawSource, at: &str) -> Result<Vec<Constraint>, ConfigError> {
    let mut out = Vec::new();
    let f = |name: &str| format!("{at}.{name}");
    push(
        &mut out,
        Attribute::PeerPrincipal,
        s.principals.as_ref(),
        false,
        text_value,
        &f("principals"),
    )?;
    push(
        &mut out,
        Attribute::PeerPrincipal,
        s.not_principals.as_ref(),
        true,
        text_value,
        &f("notPrincipals"),
    )?;
    push(
        &mut out,
        Attribute::RequestPrincipal,
        s.request_principals.as_ref(),
        false,
        text_value,
        &f("requestPrincipals"),
    )?;
    push(
        &mut out,
        Attribute::RequestPrincipal,
        s.not_request_principals.as_ref(),
        true,
        text_value,
        &f("notRequestPrincipals"),
    )?;
    push(
        &mut out,
        Attribute::Namespace,
        s.namespaces.as_ref(),
        false,
        text_value,
        &f("namespaces"),
    )?;
    push(
        &mut out,
        Attribute::Namespace,
        s.not_namespaces.as_ref(),
        true,
        text_value,
        &f("notNamespaces"),
    )?;
    push(
        &mut out,
        Attribute::SourceIp,
        s.ip_blocks.as_ref(),
        false,
        ip_value,
        &f("ipBlocks"),
    )?;
    push(
        &mut out,
        Attribute::SourceIp,
        s.not_ip_blocks.as_ref(),
        true,
        ip_value,
        &f("notIpBlocks"),
    )?;
    push(
        &mut out,
        Attribute::RemoteIp,
        s.remote_ip_blocks.as_ref(),
        false,
        ip_value,
        &f("remoteIpBlocks"),
    )?;
    push(
        &mut out,
        Attribute::RemoteIp,
        s.not_remote_ip_blocks.as_ref(),
        true,
        ip_value,
        &f("notRemoteIpBlocks"),
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

fn compile_operation(o: &RawOperation, at: &str) -> Result<Vec<Constraint>, ConfigError> {
    let mut out = Vec::new();
    let f = |name: &str| format!("{at}.{name}");
    push(
        &mut out,
        Attribute::Host,
        o.hosts.as_ref(),
        false,
        host_value,
        &f("hosts"),
    )?;
    push(
        &mut out,
        Attribute::Host,
        o.not_hosts.as_ref(),
        true,
        host_value,
        &f("notHosts"),
    )?;
    push(
        &mut out,
        Attribute::DestinationPort,
        port_strings(o.ports.as_ref()).as_ref(),
        false,
        port_value,
        &f("ports"),
    )?;
    push(
        &mut out,
        Attribute::DestinationPort,
        port_strings(o.not_ports.as_ref()).as_ref(),
        true,
        port_value,
        &f("notPorts"),
    )?;
    push(
        &mut out,
        Attribute::Method,
        o.methods.as_ref(),
        false,
        text_value,
        &f("methods"),
    )?;
    push(
        &mut out,
        Attribute::Method,
        o.not_methods.as_ref(),
        true,
        text_value,
        &f("notMethods"),
    )?;
    push(
        &mut out,
        Attribute::Path,
        o.paths.as_ref(),
        false,
        path_value,
        &f("paths"),
    )?;
    push(
        &mut out,
        Attribute::Path,
        o.not_paths.as_ref(),
        true,
        path_value,
        &f("notPaths"),
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

fn compile_condition(c: &RawCondition, at: &str) -> Result<Vec<Constraint>, ConfigError> {
    let (attribute, compile) =
        condition_attribute(&c.key).map_err(|m| ConfigError::new(format!("{at}.key"), m))?;
    let has = |v: &Option<Vec<String>>| v.as_ref().is_some_and(|v| !v.is_empty());
    if !has(&c.values) && !has(&c.not_values) {
        return Err(ConfigError::new(
            at,
            "one of values or notValues must be set",
        ));
    }
    let mut out = Vec::new();
    push(
        &mut out,
        attribute.clone(),
        c.values.as_ref(),
        false,
        compile,
        &format!("{at}.values"),
    )?;
    push(
        &mut out,
        attribute,
        c.not_values.as_ref(),
        true,
        compile,
        &format!("{at}.notValues"),
    )?;
    Ok(out)
}

#[cfg(test)]
mod tests;
