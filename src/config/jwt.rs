//! `jwtRules`, `clockSkew`, `jwksRefreshInterval` and `signatureBackend` compiled into the JWT
//! authenticator's settings (Envoy's `jwt_authn` `JwtAuthentication` and its `JwtProvider`s).
//! Errors name fields relative to the rule; `config` adds `jwtRules[i]`.

use std::rc::Rc;
use std::time::Duration;

use super::raw::{RawJwtRule, RawSignatureBackend};
use super::uri::Uri;
use super::{is_header_name, parse_duration, ConfigError, SignatureBackendChoice};
use crate::jwt::extract::Location;
use crate::jwt::jwks::Jwks;
use crate::jwt::{
    sanitize_audience, JwtConfig, JwtRule, KeySource, DEFAULT_CLOCK_SKEW, DEFAULT_FETCH_TIMEOUT,
    DEFAULT_REFRESH,
};

/// `clockSkew`: leeway for `exp` / `nbf`.
pub(super) fn clock_skew(text: Option<&str>) -> Result<Duration, ConfigError> {
    duration(text, DEFAULT_CLOCK_SKEW)
}

/// `jwksRefreshInterval`: how often `jwksUri` keys are fetched again, at least a second.
pub(super) fn refresh_interval(text: Option<&str>) -> Result<Duration, ConfigError> {
    let refresh = duration(text, DEFAULT_REFRESH)?;
    if refresh.as_secs() == 0 {
        return Err(ConfigError::here("must be at least 1s"));
    }
    Ok(refresh)
}

/// The JWT settings with the location table of `rules` built.
pub(super) fn config(clock_skew: Duration, refresh: Duration, rules: Vec<JwtRule>) -> JwtConfig {
    let mut config = JwtConfig {
        rules,
        clock_skew,
        refresh,
        ..JwtConfig::default()
    };
    config.index_locations();
    config
}

/// `signatureBackend`.
impl From<RawSignatureBackend> for SignatureBackendChoice {
    fn from(raw: RawSignatureBackend) -> SignatureBackendChoice {
        match raw {
            RawSignatureBackend::Auto => SignatureBackendChoice::Auto,
            RawSignatureBackend::Host => SignatureBackendChoice::Host,
            RawSignatureBackend::Rust => SignatureBackendChoice::Rust,
        }
    }
}

fn duration(text: Option<&str>, default: Duration) -> Result<Duration, ConfigError> {
    text.map_or(Ok(default), |t| {
        parse_duration(t).map_err(ConfigError::here)
    })
}

/// `jwtRules[]` (Istio `RequestAuthentication.spec.jwtRules[]`, Envoy's `JwtProvider`).
impl TryFrom<&RawJwtRule> for JwtRule {
    type Error = ConfigError;

    fn try_from(r: &RawJwtRule) -> Result<JwtRule, ConfigError> {
        if r.issuer.trim().is_empty() {
            return Err(ConfigError::new("issuer", "is required"));
        }
        let keys = key_source(r)?;
        if r.jwks.is_some() && r.timeout.is_some() {
            return Err(ConfigError::new("timeout", "only applies with jwksUri"));
        }
        let locations = locations(r)?;
        let payload_header = match &r.output_payload_to_header {
            None => None,
            Some(h) if is_header_name(h) => Some(h.to_ascii_lowercase()),
            Some(_) => {
                return Err(ConfigError::new(
                    "outputPayloadToHeader",
                    "is not a valid header name",
                ))
            }
        };
        let mut claim_headers = Vec::new();
        for (j, c) in r.output_claim_to_headers.iter().flatten().enumerate() {
            if !is_header_name(&c.header) {
                return Err(ConfigError::new(
                    format!("outputClaimToHeaders[{j}].header"),
                    "is not a valid header name",
                ));
            }
            let path: Vec<String> = c.claim.split('.').map(str::to_string).collect();
            if path.iter().any(String::is_empty) {
                return Err(ConfigError::new(
                    format!("outputClaimToHeaders[{j}].claim"),
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
}

/// `jwks` (inline) or `jwksUri` (fetched through `jwksCluster`, within `timeout`).
fn key_source(r: &RawJwtRule) -> Result<KeySource, ConfigError> {
    match (&r.jwks, &r.jwks_uri) {
        (Some(_), Some(_)) => Err(ConfigError::here("set one of jwks or jwksUri, not both")),
        (None, None) => discovery(r),
        (Some(text), None) => {
            if r.jwks_cluster.is_some() {
                return Err(ConfigError::new("jwksCluster", "only applies with jwksUri"));
            }
            let jwks = Jwks::parse(text).map_err(|m| ConfigError::new("jwks", m))?;
            Ok(KeySource::Inline(Rc::new(jwks)))
        }
        (None, Some(uri)) => {
            let url = Uri::parse(uri).map_err(|m| ConfigError::new("jwksUri", m))?;
            let cluster = match jwks_cluster(r)? {
                Some(c) => c,
                None => url.cluster(),
            };
            let timeout = fetch_timeout(r)?;
            Ok(KeySource::Remote {
                uri: uri.clone(),
                cluster,
                authority: url.authority.to_string(),
                path: url.path.to_string(),
                timeout,
            })
        }
    }
}

/// `jwksCluster`, when set (never empty).
fn jwks_cluster(r: &RawJwtRule) -> Result<Option<String>, ConfigError> {
    match &r.jwks_cluster {
        Some(c) if c.trim().is_empty() => Err(ConfigError::new("jwksCluster", "must not be empty")),
        other => Ok(other.clone()),
    }
}

/// `timeout` of a fetch, greater than 0.
fn fetch_timeout(r: &RawJwtRule) -> Result<Duration, ConfigError> {
    let timeout =
        duration(r.timeout.as_deref(), DEFAULT_FETCH_TIMEOUT).map_err(|e| e.within("timeout"))?;
    if timeout.is_zero() {
        return Err(ConfigError::new("timeout", "must be greater than 0"));
    }
    Ok(timeout)
}

/// Neither `jwks` nor `jwksUri`: OpenID discovery from an https `issuer` (as istiod does for such
/// a rule), `<issuer>/.well-known/openid-configuration`.
fn discovery(r: &RawJwtRule) -> Result<KeySource, ConfigError> {
    const NEITHER: &str =
        "one of jwks or jwksUri is required, or an https:// issuer for OpenID discovery";
    let Ok(issuer) = Uri::parse(r.issuer.trim()) else {
        return Err(ConfigError::here(NEITHER));
    };
    if issuer.scheme != "https" {
        return Err(ConfigError::new(
            "issuer",
            "OpenID discovery needs an https:// issuer (keys are never fetched in the clear)",
        ));
    }
    if issuer.path.contains(['?', '#']) {
        return Err(ConfigError::new(
            "issuer",
            "an issuer for OpenID discovery has no query or fragment",
        ));
    }
    let path = format!(
        "{}/.well-known/openid-configuration",
        issuer.path.trim_end_matches('/')
    );
    Ok(KeySource::Discovery {
        uri: format!("https://{}{path}", issuer.authority),
        cluster: issuer.cluster(),
        authority: issuer.authority.to_string(),
        path,
        timeout: fetch_timeout(r)?,
        jwks_cluster: jwks_cluster(r)?,
    })
}

/// `fromHeaders`, `fromParams`, `fromCookies`; Istio's defaults when none is given.
fn locations(r: &RawJwtRule) -> Result<Vec<Location>, ConfigError> {
    let mut locations = Vec::new();
    for (j, h) in r.from_headers.iter().flatten().enumerate() {
        if !is_header_name(&h.name) {
            return Err(ConfigError::new(
                format!("fromHeaders[{j}].name"),
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
                format!("fromParams[{j}]"),
                "must not be empty",
            ));
        }
        locations.push(Location::Param(p.clone()));
    }
    for (j, c) in r.from_cookies.iter().flatten().enumerate() {
        if c.is_empty() || c.contains([';', '=', ' ']) {
            return Err(ConfigError::new(
                format!("fromCookies[{j}]"),
                "is not a cookie name",
            ));
        }
        locations.push(Location::Cookie(c.clone()));
    }
    if locations.is_empty() {
        locations = Location::defaults();
    }
    Ok(locations)
}
