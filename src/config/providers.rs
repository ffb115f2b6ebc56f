//! `extensionProviders` (Istio `meshConfig.extensionProviders[]`: `envoyExtAuthzHttp` and
//! `envoyExtAuthzGrpc`) compiled into the callout's settings, with Envoy's `ext_authz` defaults.
//! Errors name fields relative to the provider; `config` adds `extensionProviders[i]`.

use std::time::Duration;

use super::raw::{
    NumberOrString, RawBodyInCheck, RawExtAuthzGrpc, RawExtAuthzHttp, RawExtensionProvider,
};
use super::{is_header_name, parse_duration, ConfigError};
use crate::ext_authz::grpc::grpc_service;
use crate::ext_authz::{
    BodyOptions, GrpcService, HeaderValueTemplate, HttpService, Provider, Service,
    DEFAULT_STATUS_ON_ERROR, DEFAULT_TIMEOUT,
};
use crate::policy::matcher::HeaderNames;

/// `extensionProviders[]`: a named `envoyExtAuthzHttp` or `envoyExtAuthzGrpc` service.
impl TryFrom<&RawExtensionProvider> for Provider {
    type Error = ConfigError;

    fn try_from(raw: &RawExtensionProvider) -> Result<Provider, ConfigError> {
        if raw.name.trim().is_empty() {
            return Err(ConfigError::new("name", "must not be empty"));
        }
        match (&raw.envoy_ext_authz_http, &raw.envoy_ext_authz_grpc) {
            (Some(http), None) => {
                ext_authz_http(&raw.name, http).map_err(|e| e.within("envoyExtAuthzHttp"))
            }
            (None, Some(grpc)) => {
                ext_authz_grpc(&raw.name, grpc).map_err(|e| e.within("envoyExtAuthzGrpc"))
            }
            (Some(_), Some(_)) => Err(ConfigError::here(
                "set one of envoyExtAuthzHttp or envoyExtAuthzGrpc, not both",
            )),
            (None, None) => Err(ConfigError::here(
                "envoyExtAuthzHttp or envoyExtAuthzGrpc is required",
            )),
        }
    }
}

/// What both kinds share: where the service is, how long a check may take, what happens when it
/// fails, and the body it gets.
struct Common {
    cluster: String,
    /// The service's host name (`<namespace>/` cut off).
    host: String,
    timeout: Duration,
    status_on_error: u32,
    body: Option<BodyOptions>,
}

impl Common {
    /// The provider, with what is particular to its kind.
    fn provider(self, name: &str, fail_open: bool, service: Service) -> Provider {
        Provider {
            name: name.to_string(),
            cluster: self.cluster,
            timeout: self.timeout,
            fail_open,
            status_on_error: self.status_on_error,
            body: self.body,
            service,
        }
    }
}

fn common(
    service: &str,
    port: &NumberOrString,
    cluster: &Option<String>,
    timeout: &Option<String>,
    status_on_error: &Option<NumberOrString>,
    body: &Option<RawBodyInCheck>,
) -> Result<Common, ConfigError> {
    let service = service.trim();
    if service.is_empty() {
        return Err(ConfigError::new("service", "must not be empty"));
    }
    let port = port
        .as_u64()
        .filter(|p| (1..=65535).contains(p))
        .ok_or_else(|| ConfigError::new("port", "must be a port number in [1, 65535]"))?;
    // Istio accepts `<namespace>/<hostname>`; the cluster is named after the hostname.
    let host = service.rsplit('/').next().unwrap_or(service);
    let cluster = match cluster {
        Some(c) if c.trim().is_empty() => {
            return Err(ConfigError::new("cluster", "must not be empty"))
        }
        Some(c) => c.clone(),
        None => format!("outbound|{port}||{host}"),
    };
    let timeout = match timeout {
        None => DEFAULT_TIMEOUT,
        Some(t) => {
            let d = parse_duration(t).map_err(|m| ConfigError::new("timeout", m))?;
            if d.is_zero() || d.as_millis() > u128::from(u32::MAX) {
                return Err(ConfigError::new(
                    "timeout",
                    "must be greater than 0 and fit in 32-bit milliseconds",
                ));
            }
            d
        }
    };
    let status_on_error = match status_on_error {
        None => DEFAULT_STATUS_ON_ERROR,
        Some(s) => s
            .as_u64()
            .filter(|s| (200..=599).contains(s))
            .map(|s| s as u32)
            .ok_or_else(|| {
                ConfigError::new("statusOnError", "must be an HTTP status code in [200, 599]")
            })?,
    };
    let body = match body {
        None => None,
        Some(b) => {
            let max = b.max_request_bytes.filter(|m| *m > 0).ok_or_else(|| {
                ConfigError::new(
                    "includeRequestBodyInCheck.maxRequestBytes",
                    "is required and must be greater than 0",
                )
            })?;
            Some(BodyOptions {
                max_request_bytes: max,
                allow_partial_message: b.allow_partial_message,
                pack_as_bytes: b.pack_as_bytes,
            })
        }
    };
    Ok(Common {
        cluster,
        host: host.to_string(),
        timeout,
        status_on_error,
        body,
    })
}

/// `envoyExtAuthzHttp` (Envoy's `ext_authz` filter in HTTP mode, as Istio configures it).
fn ext_authz_http(name: &str, raw: &RawExtAuthzHttp) -> Result<Provider, ConfigError> {
    let common = common(
        &raw.service,
        &raw.port,
        &raw.cluster,
        &raw.timeout,
        &raw.status_on_error,
        &raw.include_request_body_in_check,
    )?;
    let path_prefix = raw.path_prefix.clone().unwrap_or_default();
    if !path_prefix.is_empty() && !path_prefix.starts_with('/') {
        return Err(ConfigError::new(
            "pathPrefix",
            format!("must begin with '/', found {path_prefix:?}"),
        ));
    }
    if path_prefix.contains(['?', '#'])
        || path_prefix
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(ConfigError::new(
            "pathPrefix",
            "must be a plain path (no query, fragment or spaces)",
        ));
    }
    let listed = raw
        .include_request_headers_in_check
        .as_ref()
        .or(raw.include_headers_in_check.as_ref());
    let request_headers = header_names(
        "includeRequestHeadersInCheck",
        listed.map(Vec::as_slice).unwrap_or(&[]),
    )?;
    let mut additional_headers = Vec::with_capacity(raw.include_additional_headers_in_check.len());
    for (name, value) in &raw.include_additional_headers_in_check {
        let at = format!("includeAdditionalHeadersInCheck.{name}");
        if !is_header_name(name) {
            return Err(ConfigError::new(at, "is not a valid header name"));
        }
        if value.contains(['\r', '\n', '\0']) {
            return Err(ConfigError::new(at, "value must not contain CR, LF or NUL"));
        }
        let template = HeaderValueTemplate::parse(value).map_err(|m| ConfigError::new(at, m))?;
        additional_headers.push((name.to_ascii_lowercase(), template));
    }
    let http = HttpService {
        path_prefix,
        request_headers,
        additional_headers,
        upstream_on_allow: header_names(
            "headersToUpstreamOnAllow",
            &raw.headers_to_upstream_on_allow,
        )?,
        downstream_on_allow: header_names(
            "headersToDownstreamOnAllow",
            &raw.headers_to_downstream_on_allow,
        )?,
        downstream_on_deny: match &raw.headers_to_downstream_on_deny {
            None => None,
            Some(list) if list.is_empty() => None,
            Some(list) => Some(header_names("headersToDownstreamOnDeny", list)?),
        },
    };
    Ok(common.provider(name, raw.fail_open, Service::Http(http)))
}

/// `envoyExtAuthzGrpc` (Envoy's `ext_authz` filter in gRPC mode, as Istio configures it: the
/// cluster's `envoy_grpc` with the service's host name as `:authority`).
fn ext_authz_grpc(name: &str, raw: &RawExtAuthzGrpc) -> Result<Provider, ConfigError> {
    let common = common(
        &raw.service,
        &raw.port,
        &raw.cluster,
        &raw.timeout,
        &raw.status_on_error,
        &raw.include_request_body_in_check,
    )?;
    if !common.cluster.is_ascii() || common.cluster.chars().any(|c| c.is_ascii_control()) {
        return Err(ConfigError::new(
            "cluster",
            "must be printable ASCII (an Envoy cluster name)",
        ));
    }
    if !common.host.is_ascii() || common.host.chars().any(|c| c.is_ascii_control()) {
        return Err(ConfigError::new(
            "service",
            "must be a printable ASCII host name",
        ));
    }
    // The SDK takes the upstream as text: a serialized GrpcService is text while every length
    // in it is below 128. Past that, the bare cluster name (Envoy then uses it as the authority).
    let serialized = grpc_service(&common.cluster, &common.host);
    let upstream = match String::from_utf8(serialized) {
        Ok(text) => text,
        Err(_) => {
            log::warn!(
                "extension provider {name:?}: cluster and service names too long to carry \
                 :authority {:?}; the gRPC call's authority is the cluster name",
                common.host
            );
            common.cluster.clone()
        }
    };
    let service = Service::Grpc(GrpcService {
        authority: common.host.clone(),
        upstream,
    });
    Ok(common.provider(name, raw.fail_open, service))
}

/// A list of header names or patterns (`x-a`, `x-b-*`, `*`, `:path`), as Envoy's matchers.
fn header_names(field: &str, patterns: &[String]) -> Result<HeaderNames, ConfigError> {
    for (i, p) in patterns.iter().enumerate() {
        let bare = p.trim_matches('*');
        if !(p == "*" || is_header_name(bare) || bare.strip_prefix(':').is_some_and(is_header_name))
        {
            return Err(ConfigError::new(
                format!("{field}[{i}]"),
                format!("{p:?} is not a header name or pattern"),
            ));
        }
    }
    Ok(HeaderNames::new(patterns))
}
