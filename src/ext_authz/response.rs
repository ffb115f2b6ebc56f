//! What the authorization service's answer means, as Envoy's `ext_authz` HTTP client reads it:
//! 200 allows, 5xx (and no answer at all) is an error, any other status denies.

use super::HttpService;
use crate::headers::{is_protected, HeaderMutation};

/// Lists header names the service wants removed from the upstream request (on 200 only).
pub const HEADERS_TO_REMOVE: &str = "x-envoy-auth-headers-to-remove";

/// The callout's answer as the host hands it over; `None` status when there was no response.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallResponse {
    /// Lowercase names, `:status` included.
    pub headers: Vec<(String, String)>,
    /// Copied from the host only when `uses_body` says the answer's status needs it.
    pub body: Vec<u8>,
}

impl CallResponse {
    /// `:status`, or `None` when absent or not a number.
    pub fn status(&self) -> Option<u32> {
        self.headers
            .iter()
            .find(|(n, _)| n == ":status")
            .and_then(|(_, v)| v.trim().parse().ok())
    }
}

/// Why a check is an error (Envoy `CheckStatus::Error`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Timed out, reset, refused: the host gave no response.
    NoResponse,
    /// A 5xx, or a status that is no HTTP final status.
    BadStatus(u32),
    /// The dispatch itself failed (unknown cluster, bad arguments).
    DispatchFailed,
    /// The gRPC call ended with this non-OK status (UNAVAILABLE, DEADLINE_EXCEEDED …).
    GrpcStatus(u32),
    /// The gRPC answer is no `CheckResponse`.
    Undecodable,
}

/// Envoy's `CheckStatus {Ok, Denied, Error}` with the `Response` of each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckResponse {
    /// 200: the request goes on.
    Ok {
        /// Applied to the upstream request: `headersToUpstreamOnAllow` sets, then removals.
        upstream: Vec<HeaderMutation>,
        /// Added to the response to the client (`headersToDownstreamOnAllow`).
        downstream: Vec<HeaderMutation>,
    },
    /// Any other final status below 500: the service's answer goes to the client.
    Denied {
        /// The service's status, sent as is.
        status: u32,
        /// The service's headers that go with it (`headersToDownstreamOnDeny`, or all but
        /// `host`).
        headers: Vec<(String, String)>,
        /// The service's body.
        body: Vec<u8>,
    },
    /// No usable answer: the provider's failure mode decides.
    Error(ErrorKind),
}

/// A status Envoy's ext_authz treats as an error (5xx, or no final status): the failure mode.
fn is_error_status(status: u32) -> bool {
    !(200..500).contains(&status)
}

/// Whether `interpret` uses the body of an answer with this status: only a denial's body goes
/// back to the caller, so the body of an allow or of an error is never copied into the VM.
pub fn uses_body(status: Option<u32>) -> bool {
    status.is_some_and(|s| s != 200 && !is_error_status(s))
}

/// Reads the service's answer under `provider`'s header rules (`None`: no response at all).
pub fn interpret(provider: &HttpService, response: Option<&CallResponse>) -> CheckResponse {
    let Some(response) = response else {
        return CheckResponse::Error(ErrorKind::NoResponse);
    };
    let status = match response.status() {
        None => return CheckResponse::Error(ErrorKind::NoResponse),
        Some(s) if is_error_status(s) => return CheckResponse::Error(ErrorKind::BadStatus(s)),
        Some(s) => s,
    };
    let headers = response
        .headers
        .iter()
        .filter(|(n, _)| !n.starts_with(':') && n != HEADERS_TO_REMOVE);
    if status == 200 {
        let mut upstream: Vec<HeaderMutation> = headers
            .clone()
            .filter(|(n, _)| provider.upstream_on_allow.matches(n) && !is_protected(n))
            .map(|(n, v)| HeaderMutation::Set {
                name: n.clone(),
                value: v.clone(),
            })
            .collect();
        for (_, list) in response
            .headers
            .iter()
            .filter(|(n, _)| n == HEADERS_TO_REMOVE)
        {
            for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                let name = name.to_ascii_lowercase();
                if !is_protected(&name) {
                    upstream.push(HeaderMutation::Remove { name });
                }
            }
        }
        let downstream = headers
            .filter(|(n, _)| provider.downstream_on_allow.matches(n))
            .map(|(n, v)| HeaderMutation::Append {
                name: n.clone(),
                value: v.clone(),
            })
            .collect();
        return CheckResponse::Ok {
            upstream,
            downstream,
        };
    }
    let headers = headers
        .filter(|(n, _)| match &provider.downstream_on_deny {
            None => n != "host",
            Some(names) => names.matches(n) || DENY_ALWAYS.contains(&n.as_str()),
        })
        .cloned()
        .collect();
    CheckResponse::Denied {
        status,
        headers,
        body: response.body.clone(),
    }
}

/// With `headersToDownstreamOnDeny` set, Envoy still passes these from the service's answer.
const DENY_ALWAYS: [&str; 3] = ["content-length", "www-authenticate", "location"];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::matcher::HeaderNames;

    #[test]
    fn only_a_denial_body_is_read_into_the_vm() {
        for (status, used) in [
            (Some(200), false),
            (Some(403), true),
            (Some(401), true),
            (Some(302), true),
            (Some(499), true),
            (Some(500), false),
            (Some(503), false),
            (Some(100), false),
            (None, false),
        ] {
            assert_eq!(uses_body(status), used, "{status:?}");
        }
    }

    fn provider() -> HttpService {
        HttpService {
            upstream_on_allow: HeaderNames::new(&["x-ext-authz-check-result"]),
            downstream_on_deny: Some(HeaderNames::new(&["x-ext-authz-check-result"])),
            ..HttpService::default()
        }
    }

    fn answer(status: &str, headers: &[(&str, &str)], body: &str) -> CallResponse {
        let mut all = vec![(":status".to_string(), status.to_string())];
        all.extend(headers.iter().map(|(n, v)| (n.to_string(), v.to_string())));
        CallResponse {
            headers: all,
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn ok_sets_listed_upstream_headers_and_removes_named_ones() {
        let r = answer(
            "200",
            &[
                ("x-ext-authz-check-result", "allowed"),
                ("x-other", "no"),
                (HEADERS_TO_REMOVE, "x-secret, :path, host"),
            ],
            "",
        );
        assert_eq!(
            interpret(&provider(), Some(&r)),
            CheckResponse::Ok {
                upstream: vec![
                    HeaderMutation::Set {
                        name: "x-ext-authz-check-result".into(),
                        value: "allowed".into()
                    },
                    HeaderMutation::Remove {
                        name: "x-secret".into()
                    },
                ],
                downstream: vec![],
            }
        );
    }

    #[test]
    fn other_statuses_deny_with_listed_headers_and_body() {
        let r = answer(
            "403",
            &[
                ("x-ext-authz-check-result", "denied"),
                ("content-type", "text/plain"),
                ("location", "/login"),
            ],
            "denied by ext_authz",
        );
        let CheckResponse::Denied {
            status,
            headers,
            body,
        } = interpret(&provider(), Some(&r))
        else {
            panic!("expected a denial");
        };
        assert_eq!(status, 403);
        assert_eq!(
            headers,
            vec![
                ("x-ext-authz-check-result".into(), "denied".into()),
                ("location".into(), "/login".into())
            ]
        );
        assert_eq!(body, b"denied by ext_authz");
    }

    #[test]
    fn without_a_deny_list_every_header_but_host_goes_back() {
        let mut p = provider();
        p.downstream_on_deny = None;
        let r = answer(
            "401",
            &[
                ("host", "authz"),
                ("www-authenticate", "Basic"),
                ("x-a", "1"),
            ],
            "",
        );
        let CheckResponse::Denied {
            status, headers, ..
        } = interpret(&p, Some(&r))
        else {
            panic!("expected a denial");
        };
        assert_eq!(status, 401);
        assert_eq!(
            headers,
            vec![
                ("www-authenticate".into(), "Basic".into()),
                ("x-a".into(), "1".into())
            ]
        );
    }

    #[test]
    fn five_hundreds_and_missing_answers_are_errors() {
        assert_eq!(
            interpret(&provider(), None),
            CheckResponse::Error(ErrorKind::NoResponse)
        );
        assert_eq!(
            interpret(&provider(), Some(&answer("503", &[], ""))),
            CheckResponse::Error(ErrorKind::BadStatus(503))
        );
        assert_eq!(
            interpret(&provider(), Some(&CallResponse::default())),
            CheckResponse::Error(ErrorKind::NoResponse)
        );
        assert_eq!(
            interpret(&provider(), Some(&answer("abc", &[], ""))),
            CheckResponse::Error(ErrorKind::NoResponse)
        );
    }

    #[test]
    fn downstream_on_allow_headers_are_added_to_the_response() {
        let mut p = provider();
        p.downstream_on_allow = HeaderNames::new(&["set-cookie"]);
        let r = answer("200", &[("set-cookie", "a=1"), ("set-cookie", "b=2")], "");
        let CheckResponse::Ok { downstream, .. } = interpret(&p, Some(&r)) else {
            panic!("expected ok");
        };
        assert_eq!(
            downstream,
            vec![
                HeaderMutation::Append {
                    name: "set-cookie".into(),
                    value: "a=1".into()
                },
                HeaderMutation::Append {
                    name: "set-cookie".into(),
                    value: "b=2".into()
                },
            ]
        );
    }
}
