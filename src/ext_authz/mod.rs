//! The external authorization callout: Istio's `envoyExtAuthzHttp` provider with the request and
//! response rules of Envoy's `ext_authz` HTTP service (`check`, `response`), and its
//! `envoyExtAuthzGrpc` provider with Envoy's gRPC ones (`grpc`). Pure functions only.

pub mod cache;
pub mod check;
pub mod grpc;
pub mod response;

use std::time::Duration;

use crate::policy::matcher::HeaderNames;

pub use check::{build_check_request, CheckRequest, RequestBody};
pub use response::{interpret, CallResponse, CheckResponse, ErrorKind};

/// Istio's default when `timeout` is left out (its translation sets Envoy's `server_uri.timeout`).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);
/// Envoy's `status_on_error` default: 403 Forbidden.
pub const DEFAULT_STATUS_ON_ERROR: u32 = 403;

/// A compiled extension provider (Envoy's `ext_authz` filter options and its service).
#[derive(Debug, Clone, PartialEq)]
pub struct Provider {
    /// `extensionProviders[].name`, which CUSTOM policies refer to.
    pub name: String,
    /// Envoy cluster the callout goes to: `cluster`, else `outbound|<port>||<service>`.
    pub cluster: String,
    /// `timeout` of one check request.
    pub timeout: Duration,
    /// `failOpen` (Envoy `failure_mode_allow`): a check that errs lets the request through.
    pub fail_open: bool,
    /// `statusOnError`: the reply status when a check errs and the provider fails closed.
    pub status_on_error: u32,
    /// `includeRequestBodyInCheck` (Envoy `with_request_body`).
    pub body: Option<BodyOptions>,
    /// HTTP or gRPC, with the options of each.
    pub service: Service,
}

/// How the provider is asked: Envoy's `http_service` or `grpc_service`.
#[derive(Debug, Clone, PartialEq)]
pub enum Service {
    /// `envoyExtAuthzHttp`.
    Http(HttpService),
    /// `envoyExtAuthzGrpc`.
    Grpc(GrpcService),
}

/// The options of an `envoyExtAuthzHttp` provider (Envoy's `ext_authz` `HttpService`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HttpService {
    /// `pathPrefix`, put before the request's path in the check request.
    pub path_prefix: String,
    /// `includeRequestHeadersInCheck`; `authorization`, `:method`, `:path`, `:authority` always go.
    pub request_headers: HeaderNames,
    /// `includeAdditionalHeadersInCheck`, names lowercase, overwriting client headers.
    pub additional_headers: Vec<(String, HeaderValueTemplate)>,
    /// `headersToUpstreamOnAllow`: the service's headers set on the request going upstream.
    pub upstream_on_allow: HeaderNames,
    /// `headersToDownstreamOnAllow`: the service's headers added to the client's response.
    pub downstream_on_allow: HeaderNames,
    /// `None`: every header of the service's response except Host (Envoy's default).
    pub downstream_on_deny: Option<HeaderNames>,
}

/// The options of an `envoyExtAuthzGrpc` provider (Envoy's `ext_authz` `grpc_service`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GrpcService {
    /// The `:authority` of the call: the service's host name, as Istio sets it.
    pub authority: String,
    /// The serialized `GrpcService` handed to `proxy_grpc_call`, or the bare cluster name when
    /// that would not be valid UTF-8 (the SDK takes the upstream as text).
    pub upstream: String,
}

impl Provider {
    /// The HTTP options, for an `envoyExtAuthzHttp` provider.
    pub fn http(&self) -> Option<&HttpService> {
        match &self.service {
            Service::Http(http) => Some(http),
            Service::Grpc(_) => None,
        }
    }
}

/// `includeRequestBodyInCheck` (Envoy `with_request_body`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyOptions {
    /// `maxRequestBytes`: at most this much of the body is buffered and sent.
    pub max_request_bytes: u32,
    /// `allowPartialMessage`: a longer body is sent cut (and flagged); otherwise the request
    /// gets 413.
    pub allow_partial_message: bool,
    /// gRPC only: the body goes in `raw_body` (bytes) instead of `body` (text).
    pub pack_as_bytes: bool,
}

/// A header value with Envoy's substitution commands: `%REQ(name)%`, `%DOWNSTREAM_REMOTE_ADDRESS%`,
/// `%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%`, and `%%` for a literal `%`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderValueTemplate(Vec<TemplatePart>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum TemplatePart {
    Literal(String),
    RequestHeader(String),
    RemoteAddress,
    RemoteAddressWithoutPort,
}

/// What a header template may read from the request.
pub trait TemplateSource {
    /// `%REQ(name)%`: the client's header (`name` lowercase).
    fn request_header(&self, name: &str) -> Option<String>;
    /// `%DOWNSTREAM_REMOTE_ADDRESS%`: the client's `ip:port`.
    fn remote_address(&self) -> Option<String>;
}

impl HeaderValueTemplate {
    /// Compiles an `includeAdditionalHeadersInCheck` value; an unknown or unterminated command
    /// is an error that says so.
    pub fn parse(text: &str) -> Result<HeaderValueTemplate, String> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some((before, after)) = rest.split_once('%') {
            literal.push_str(before);
            rest = after;
            if let Some(after) = rest.strip_prefix('%') {
                literal.push('%');
                rest = after;
                continue;
            }
            let (command, after) = rest
                .split_once('%')
                .ok_or_else(|| format!("{text:?}: unterminated '%' (write %% for a literal %)"))?;
            rest = after;
            let part = if let Some(name) = command
                .strip_prefix("REQ(")
                .and_then(|c| c.strip_suffix(')'))
            {
                TemplatePart::RequestHeader(name.to_ascii_lowercase())
            } else if command == "DOWNSTREAM_REMOTE_ADDRESS" {
                TemplatePart::RemoteAddress
            } else if command == "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT" {
                TemplatePart::RemoteAddressWithoutPort
            } else {
                return Err(format!(
                    "{text:?}: unsupported command %{command}% (supported: %REQ(name)%, \
                     %DOWNSTREAM_REMOTE_ADDRESS%, %DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%, %%)"
                ));
            };
            if !literal.is_empty() {
                parts.push(TemplatePart::Literal(std::mem::take(&mut literal)));
            }
            parts.push(part);
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            parts.push(TemplatePart::Literal(literal));
        }
        Ok(HeaderValueTemplate(parts))
    }

    /// Whether the value needs the request (else it is a constant).
    pub fn is_literal(&self) -> bool {
        self.0.iter().all(|p| matches!(p, TemplatePart::Literal(_)))
    }

    /// The value for one request; what the request lacks renders empty.
    pub fn render(&self, source: &dyn TemplateSource) -> String {
        let mut out = String::new();
        for part in &self.0 {
            match part {
                TemplatePart::Literal(l) => out.push_str(l),
                TemplatePart::RequestHeader(name) => {
                    out.push_str(&source.request_header(name).unwrap_or_default())
                }
                TemplatePart::RemoteAddress => {
                    out.push_str(&source.remote_address().unwrap_or_default())
                }
                TemplatePart::RemoteAddressWithoutPort => {
                    let address = source.remote_address().unwrap_or_default();
                    out.push_str(strip_port(&address));
                }
            }
        }
        out
    }
}

fn strip_port(address: &str) -> &str {
    if let Some(rest) = address.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match address.rsplit_once(':') {
        Some((host, _)) if !host.contains(':') => host,
        _ => address,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Source;
    impl TemplateSource for Source {
        fn request_header(&self, name: &str) -> Option<String> {
            (name == ":path").then(|| "/headers?x=1".to_string())
        }
        fn remote_address(&self) -> Option<String> {
            Some("10.0.0.1:5555".into())
        }
    }

    #[test]
    fn templates_render_envoy_commands() {
        let t = HeaderValueTemplate::parse("ingress").unwrap();
        assert!(t.is_literal());
        assert_eq!(t.render(&Source), "ingress");
        let t = HeaderValueTemplate::parse(
            "p=%REQ(:PATH)% ip=%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT% 100%%",
        )
        .unwrap();
        assert_eq!(t.render(&Source), "p=/headers?x=1 ip=10.0.0.1 100%");
        assert_eq!(
            HeaderValueTemplate::parse("%DOWNSTREAM_REMOTE_ADDRESS%")
                .unwrap()
                .render(&Source),
            "10.0.0.1:5555"
        );
    }

    #[test]
    fn bad_templates_are_config_errors() {
        assert!(HeaderValueTemplate::parse("50%").is_err());
        assert!(HeaderValueTemplate::parse("%START_TIME%").is_err());
    }
}
