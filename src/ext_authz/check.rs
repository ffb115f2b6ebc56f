//! The check request sent to the authorization service, as Envoy's `ext_authz` HTTP client
//! builds it: the original method, `pathPrefix` + path and query, the original authority, the
//! always-sent headers plus `includeRequestHeadersInCheck`, then `includeAdditionalHeadersInCheck`
//! (overwriting), and the body when configured.

use super::{HttpService, TemplateSource};

/// Headers Envoy's HTTP `ext_authz` client sends whatever the allow list says.
const ALWAYS_SENT: [&str; 4] = [":method", ":path", ":authority", "authorization"];

/// The header that tells the service whether the body was cut at `maxRequestBytes`.
pub const PARTIAL_BODY_HEADER: &str = "x-envoy-auth-partial-body";

/// The buffered request body to forward, and whether it was cut.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestBody {
    pub(crate) bytes: Vec<u8>,
    pub(crate) partial: bool,
}

/// An HTTP request ready for `dispatch_http_call`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckRequest {
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Option<Vec<u8>>,
}

impl CheckRequest {
    /// The first value of header `name` (lowercase), pseudo-headers included.
    pub fn header(&self, name: &str) -> Option<&str> {
        crate::headers::first(&self.headers, name)
    }
}

/// Builds the check request. `request_headers` are the client's (lowercase names, pseudo-headers
/// included); `request_path` is the path and query the policies saw (normalized).
pub fn build_check_request(
    cluster: &str,
    provider: &HttpService,
    request_headers: &[(String, String)],
    request_path: &str,
    body: Option<&RequestBody>,
    source: &dyn TemplateSource,
) -> CheckRequest {
    let mut headers: Vec<(String, String)> = Vec::with_capacity(8);
    for (name, value) in request_headers {
        if name == "content-length" || name == PARTIAL_BODY_HEADER {
            continue;
        }
        if !(ALWAYS_SENT.contains(&name.as_str()) || provider.request_headers.matches(name)) {
            continue;
        }
        let value = if name == ":path" {
            format!("{}{}", provider.path_prefix, request_path)
        } else {
            value.clone()
        };
        // A repeated header travels once, its values joined by ',' (Envoy's CheckRequest map).
        match headers.iter_mut().find(|(n, _)| n == name) {
            Some((_, existing)) => {
                existing.push(',');
                existing.push_str(&value);
            }
            None => headers.push((name.clone(), value)),
        }
    }
    if !headers.iter().any(|(n, _)| n == ":authority") {
        headers.push((":authority".into(), cluster.to_string()));
    }
    let body_bytes = body.map(|b| b.bytes.clone()).filter(|b| !b.is_empty());
    headers.push((
        "content-length".into(),
        body_bytes.as_ref().map_or(0, Vec::len).to_string(),
    ));
    if let Some(b) = body {
        headers.push((PARTIAL_BODY_HEADER.into(), b.partial.to_string()));
    }
    for (name, template) in &provider.additional_headers {
        let value = template.render(source);
        headers.retain(|(n, _)| n != name);
        headers.push((name.clone(), value));
    }
    CheckRequest {
        headers,
        body: body_bytes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ext_authz::HeaderValueTemplate;
    use crate::policy::matcher::HeaderNames;

    struct NoSource;
    impl TemplateSource for NoSource {
        fn request_header(&self, _: &str) -> Option<String> {
            None
        }
        fn remote_address(&self) -> Option<String> {
            None
        }
    }

    const CLUSTER: &str = "outbound|8000||ext-authz";

    fn provider() -> HttpService {
        HttpService {
            request_headers: HeaderNames::new(&["x-ext-authz"]),
            ..HttpService::default()
        }
    }

    fn client_headers() -> Vec<(String, String)> {
        [
            (":method", "POST"),
            (":path", "/raw/../headers?x=1"),
            (":authority", "httpbin.default:8000"),
            (":scheme", "http"),
            ("authorization", "Bearer abc"),
            ("x-ext-authz", "allow"),
            ("X-Ext-Authz", "again"),
            ("cookie", "secret"),
            ("content-length", "5"),
            ("x-gateway", "spoofed"),
        ]
        .iter()
        .map(|(n, v)| (n.to_ascii_lowercase(), v.to_string()))
        .collect()
    }

    #[test]
    fn forwards_always_sent_and_listed_headers_only() {
        let check = build_check_request(
            CLUSTER,
            &provider(),
            &client_headers(),
            "/headers?x=1",
            None,
            &NoSource,
        );
        assert_eq!(check.header(":method"), Some("POST"));
        assert_eq!(check.header(":path"), Some("/headers?x=1"));
        assert_eq!(check.header(":authority"), Some("httpbin.default:8000"));
        assert_eq!(check.header("authorization"), Some("Bearer abc"));
        assert_eq!(check.header("x-ext-authz"), Some("allow,again"));
        assert_eq!(check.header("content-length"), Some("0"));
        assert_eq!(check.header("cookie"), None);
        assert_eq!(check.header(":scheme"), None);
        assert_eq!(check.header(PARTIAL_BODY_HEADER), None);
        assert_eq!(check.body, None);
    }

    #[test]
    fn path_prefix_and_additional_headers_overwrite() {
        let mut p = provider();
        p.path_prefix = "/check".into();
        p.request_headers = HeaderNames::new(&["x-gateway"]);
        p.additional_headers = vec![(
            "x-gateway".into(),
            HeaderValueTemplate::parse("ingress").unwrap(),
        )];
        let check = build_check_request(
            CLUSTER,
            &p,
            &client_headers(),
            "/headers?x=1",
            None,
            &NoSource,
        );
        assert_eq!(check.header(":path"), Some("/check/headers?x=1"));
        let gateway: Vec<_> = check
            .headers
            .iter()
            .filter(|(n, _)| n == "x-gateway")
            .collect();
        assert_eq!(
            gateway,
            vec![&("x-gateway".to_string(), "ingress".to_string())]
        );
    }

    #[test]
    fn body_travels_with_its_length_and_partial_flag() {
        let p = provider();
        let body = RequestBody {
            bytes: b"hell".to_vec(),
            partial: true,
        };
        let check = build_check_request(
            CLUSTER,
            &p,
            &client_headers(),
            "/headers",
            Some(&body),
            &NoSource,
        );
        assert_eq!(check.header("content-length"), Some("4"));
        assert_eq!(check.header(PARTIAL_BODY_HEADER), Some("true"));
        assert_eq!(check.body.as_deref(), Some(&b"hell"[..]));
    }
}
