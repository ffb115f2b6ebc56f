//! Plugin configuration: Istio field names, parsed strictly (unknown fields, wrong types and
//! impossible combinations are errors naming the field) and compiled once in `on_configure`.
//!
//! This module parses, walks the tree and names the field path of an error; each domain compiles
//! its own entries with paths relative to the entry: [`jwt`] (`jwtRules`, `clockSkew`,
//! `jwksRefreshInterval`), [`providers`] (`extensionProviders`) and [`policies`] (`policies`).

mod duration;
mod json_path;
mod jwt;
mod policies;
mod providers;
mod raw;
pub(crate) mod uri;

use std::fmt;

pub use duration::parse_duration;
use raw::{OneOf, RawConfig};

use crate::ext_authz::Provider;
use crate::jwt::{JwtConfig, JwtRule};
use crate::policy::path::PathNormalization;
use crate::policy::{Needs, Policies};

/// A configuration error: the field path (`policies[1].rules[0].to[0].operation.paths`) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Where in the configuration, as a JSON path (`jwtRules[0].jwksUri`); empty for the whole.
    pub path: String,
    /// What is wrong with it.
    pub message: String,
}

impl ConfigError {
    fn new(path: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            path: path.into(),
            message: message.into(),
        }
    }

    /// An error about the value being compiled as a whole; its caller names where it is.
    fn here(message: impl Into<String>) -> ConfigError {
        ConfigError::new("", message)
    }

    /// The same error seen from the field that holds it: `jwksUri` in `jwtRules[1]` is
    /// `jwtRules[1].jwksUri`, `[0]` in `paths` is `paths[0]`.
    fn within(mut self, parent: &str) -> ConfigError {
        self.path = match self.path.as_str() {
            "" => parent.to_string(),
            child if child.starts_with('[') => format!("{parent}{child}"),
            child => format!("{parent}.{child}"),
        };
        self
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
    /// `jwtRules`, `clockSkew`, `jwksRefreshInterval` (Envoy's `JwtAuthentication`).
    pub jwt: JwtConfig,
    /// `extensionProviders`, in order; CUSTOM policies point into this list.
    pub providers: Vec<Provider>,
    /// `policies`, grouped by action.
    pub policies: Policies,
    /// `pathNormalization` (Istio's `meshConfig.pathNormalization`).
    pub path_normalization: PathNormalization,
    /// The request properties some policy reads (only those are asked of the host).
    pub needs: Needs,
    /// `exposeDenialReason`: local replies carry `x-inline-authz-denied-by`.
    pub expose_denial_reason: bool,
    /// `jwtCacheSize`: verified tokens kept per VM (0 turns the cache off).
    pub jwt_cache_size: usize,
    /// `decisionCacheSize`: cacheable authorization answers kept per VM (0 turns the cache off).
    pub decision_cache_size: usize,
    /// `signatureBackend`.
    pub signature_backend: SignatureBackendChoice,
    /// `auditRecord`: each request's decision goes to Envoy filter state for access logs.
    pub audit_record: bool,
    /// `localReplyBody`.
    pub local_reply_body: LocalReplyBody,
}

impl Config {
    /// Nothing to do for any request: no `jwtRules`, no policy (dry-run ones included), no audit
    /// record. Such a plugin costs what an empty wasm filter costs: no hostcall, no header read,
    /// no path normalization (the request goes on exactly as it came).
    pub fn is_idle(&self) -> bool {
        self.jwt.is_empty() && self.policies.is_empty() && !self.audit_record
    }
}

/// `localReplyBody`: how the filter writes the body of its local replies (what Envoy's
/// `local_reply_config` does for Envoy's own replies, in one switch).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LocalReplyBody {
    /// Envoy's texts (`RBAC: access denied`, `Jwt is expired`, …), as Envoy's filters reply.
    #[default]
    Envoy,
    /// `{"status": 403, "reason": "<code>", "policy": "<name>"}` with
    /// `content-type: application/json`.
    Json,
}

impl From<raw::RawLocalReplyBody> for LocalReplyBody {
    fn from(raw: raw::RawLocalReplyBody) -> LocalReplyBody {
        match raw {
            raw::RawLocalReplyBody::Envoy => LocalReplyBody::Envoy,
            raw::RawLocalReplyBody::Json => LocalReplyBody::Json,
        }
    }
}

/// `signatureBackend`: where RS*/ES* signatures are checked (Envoy's BoringSSL through the host,
/// or pure Rust).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SignatureBackendChoice {
    /// The host's `verify_signature` when it offers one, else pure Rust.
    #[default]
    Auto,
    /// The host's `verify_signature`; the plugin refuses to start without it.
    Host,
    /// Pure Rust, even when the host could verify.
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
            // serde_json ends its message with the position; the field path replaces it.
            let message = e.to_string();
            let position = format!(" at line {} column {}", e.line(), e.column());
            let message = message.strip_suffix(&position).unwrap_or(&message);
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
    let path_normalization = raw
        .path_normalization
        .map_or_else(PathNormalization::default, |OneOf(p)| p.into());

    let providers = each(
        "extensionProviders",
        &raw.extension_providers,
        |p, earlier| {
            if earlier.iter().any(|q: &Provider| q.name == p.name) {
                return Err(ConfigError::new(
                    "name",
                    format!("duplicate provider name {:?}", p.name),
                ));
            }
            Provider::try_from(p)
        },
    )?;

    let entries = each("policies", &raw.policies, |p, earlier| {
        // Istio names a policy by its metadata; without a `name`, it is named by its place
        // (`earlier` holds every entry before it).
        let place = format!("policies[{}]", earlier.len());
        policies::compile(p, place, &providers)
    })?;
    let mut policies = policies::group(entries, &providers);
    let needs = policies.needs();

    let jwt = jwt::config(
        at("clockSkew", jwt::clock_skew(raw.clock_skew.as_deref()))?,
        at(
            "jwksRefreshInterval",
            jwt::refresh_interval(raw.jwks_refresh_interval.as_deref()),
        )?,
        each("jwtRules", &raw.jwt_rules, |r, earlier| {
            if earlier.iter().any(|q: &JwtRule| q.issuer == r.issuer) {
                return Err(ConfigError::new(
                    "issuer",
                    format!("duplicate issuer {:?}", r.issuer),
                ));
            }
            JwtRule::try_from(r)
        })?,
    );
    policies.challenge_tokenless = !jwt.is_empty();
    let local_reply_body = raw
        .local_reply_body
        .map_or_else(LocalReplyBody::default, |OneOf(b)| b.into());
    let needs = Needs {
        headers: needs.headers || !jwt.is_empty() || local_reply_body == LocalReplyBody::Json,
        ..needs
    };

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
        signature_backend: raw
            .signature_backend
            .map_or_else(SignatureBackendChoice::default, |OneOf(s)| s.into()),
        audit_record: raw.audit_record,
        local_reply_body,
    })
}

/// Names `field` in the error of the value compiled from it.
fn at<T>(field: &str, compiled: Result<T, ConfigError>) -> Result<T, ConfigError> {
    compiled.map_err(|e| e.within(field))
}

/// Compiles every entry of the list `field` in order, naming `field[i]` in an error. `compile`
/// also sees the entries compiled before (to refuse duplicates).
fn each<R, T>(
    field: &str,
    entries: &[R],
    mut compile: impl FnMut(&R, &[T]) -> Result<T, ConfigError>,
) -> Result<Vec<T>, ConfigError> {
    let mut compiled = Vec::with_capacity(entries.len());
    for (i, entry) in entries.iter().enumerate() {
        let value = compile(entry, &compiled).map_err(|e| e.within(&format!("{field}[{i}]")))?;
        compiled.push(value);
    }
    Ok(compiled)
}

/// An HTTP field name (RFC 9110 `token`), as headers are named in the configuration.
fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests;
