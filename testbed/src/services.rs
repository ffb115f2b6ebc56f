//! The sample services around the filter: an authorization service that behaves like Istio's
//! sample `ext-authz` (HTTP side), and an echo upstream that answers like httpbin's `/headers`,
//! `/ip` and `/anything`. Both record what they received.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Map, Value};

use crate::http::{Handler, Reply, Request, Response, Server};

pub const CHECK_HEADER: &str = "x-ext-authz";
pub const ALLOWED_VALUE: &str = "allow";
pub const RESULT_HEADER: &str = "x-ext-authz-check-result";
pub const RECEIVED_HEADER: &str = "x-ext-authz-check-received";
pub const OVERRIDE_HEADER: &str = "x-ext-authz-additional-header-override";
pub const DENY_BODY: &str =
    "denied by ext_authz for not found header `x-ext-authz: allow` in the request";

/// Requests a service received, for assertions.
#[derive(Clone, Default)]
pub struct Recorder(Arc<Mutex<Vec<Request>>>);

impl Recorder {
    fn push(&self, request: &Request) {
        if let Ok(mut all) = self.0.lock() {
            all.push(request.clone());
        }
    }

    pub fn all(&self) -> Vec<Request> {
        self.0.lock().map(|a| a.clone()).unwrap_or_default()
    }

    /// The requests whose target contains `marker` (tests tag requests with a unique query).
    pub fn with(&self, marker: &str) -> Vec<Request> {
        self.all()
            .into_iter()
            .filter(|r| r.target.contains(marker))
            .collect()
    }
}

/// Go's `%v` of an `http.Header`: `map[Name:[value] ...]`, names canonical and sorted.
fn go_header_map(request: &Request) -> String {
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in &request.headers {
        map.entry(canonical(name)).or_default().push(value.clone());
    }
    let entries: Vec<String> = map
        .iter()
        .map(|(n, v)| format!("{n}:[{}]", v.join(" ")))
        .collect();
    format!("map[{}]", entries.join(" "))
}

/// `x-ext-authz` → `X-Ext-Authz`, as Go and httpbin print header names.
pub fn canonical(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut chars = part.chars();
            match chars.next() {
                Some(first) => {
                    first.to_ascii_uppercase().to_string() + &chars.as_str().to_ascii_lowercase()
                }
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}

/// The decision of Istio's sample `ext-authz` service (`samples/extauthz`), HTTP side.
pub fn sample_decision(request: &Request) -> Response {
    let host = request.header("host").unwrap_or("");
    let body = String::from_utf8_lossy(&request.body);
    let received = format!(
        "{} {}{}, headers: {}, body: [{}]",
        request.method,
        host,
        request.target,
        go_header_map(request),
        body
    );
    let override_value = request.header(OVERRIDE_HEADER).unwrap_or("").to_string();
    if request.header(CHECK_HEADER) == Some(ALLOWED_VALUE) {
        Response::new(200)
            .header(RESULT_HEADER, "allowed")
            .header(OVERRIDE_HEADER, &override_value)
            .header(RECEIVED_HEADER, &received)
    } else {
        Response::new(403)
            .header(RESULT_HEADER, "denied")
            .header(OVERRIDE_HEADER, &override_value)
            .header(RECEIVED_HEADER, &received)
            .header("content-type", "text/plain; charset=utf-8")
            .body(DENY_BODY)
    }
}

/// The size of the `/_big/…` answers.
pub const BIG_BODY: usize = 10 << 20;

/// Faults selected by the check path, so one service can play every failure:
/// `/_status/<code>/…`, `/_sleep/<ms>/…`, `/_close/…`, `/_reset/…` (half an answer, then a TCP
/// reset), `/_big/<code>/…` (a 10 MiB body), `/_garbage/…`, `/_set/…` (allow, with the
/// headers named in the `x-answer-*` request headers copied into the answer), `/_cacheable/…` (the
/// sample decision, marked `cache-control: max-age=60`).
fn fault(request: &Request) -> Option<Reply> {
    let mut segments = request.target.trim_start_matches('/').split('/');
    match segments.next()? {
        "_status" => {
            let code: u16 = segments.next()?.parse().ok()?;
            Some(Reply::Respond(
                Response::new(code)
                    .header("x-fault", &code.to_string())
                    .header("content-type", "text/plain")
                    .body(format!("fault {code}")),
            ))
        }
        "_sleep" => {
            let ms: u64 = segments.next()?.parse().ok()?;
            Some(Reply::After(
                Duration::from_millis(ms),
                sample_decision(request),
            ))
        }
        "_cacheable" => Some(Reply::Respond(
            sample_decision(request).header("cache-control", "max-age=60"),
        )),
        "_close" => Some(Reply::Close),
        "_reset" => Some(Reply::Reset(
            b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial".to_vec(),
        )),
        "_big" => {
            // `/_big/<status>/…`: that status with a 10 MiB body.
            let code: u16 = segments.next()?.parse().ok()?;
            Some(Reply::Respond(
                Response::new(code)
                    .header("content-type", "text/plain")
                    .body(vec![b'x'; BIG_BODY]),
            ))
        }
        "_garbage" => Some(Reply::Raw(b"HTTP/1.1 banana\r\n\r\n".to_vec())),
        "_answer" => {
            // Answer with the status in x-answer-status and every x-answer-set-<name> header as <name>.
            let status = request
                .header("x-answer-status")
                .and_then(|s| s.parse().ok())
                .unwrap_or(200);
            let mut response = Response::new(status);
            for (name, value) in &request.headers {
                if let Some(real) = name.to_ascii_lowercase().strip_prefix("x-answer-set-") {
                    response = response.header(real, value);
                }
            }
            if let Some(body) = request.header("x-answer-body") {
                response = response.body(body.to_string());
            }
            Some(Reply::Respond(response))
        }
        _ => None,
    }
}

/// Starts the sample authorization service on an ephemeral loopback port.
pub fn start_ext_authz() -> std::io::Result<(Server, Recorder)> {
    let recorder = Recorder::default();
    let seen = recorder.clone();
    let handler: Handler = Arc::new(move |request: &Request| {
        seen.push(request);
        fault(request).unwrap_or_else(|| Reply::Respond(sample_decision(request)))
    });
    Ok((Server::start(handler)?, recorder))
}

/// What a JWKS path answers: status, body, delay in milliseconds.
type Answer = (u16, String, u64);

/// A JWKS server: each path answers with the status, body and delay set for it (404 otherwise).
/// A key is a path (`/keys`: any host) or a host and a path (`keys.example/jwks`: only requests
/// whose `host` header is `keys.example`), the host-qualified key chosen first; so one server
/// plays several https hosts behind the TLS front (`crate::tls`) and checks their authority.
#[derive(Clone, Default)]
pub struct JwksServer {
    answers: Arc<Mutex<BTreeMap<String, Answer>>>,
    faults: Arc<Mutex<BTreeMap<String, Reply>>>,
    pub requests: Recorder,
}

impl JwksServer {
    /// Sets what `path` answers from now on.
    pub fn set(&self, path: &str, status: u16, body: &str) {
        self.set_slow(path, status, body, 0);
    }

    /// As `set`, answering after `delay_ms`.
    pub fn set_slow(&self, path: &str, status: u16, body: &str, delay_ms: u64) {
        if let Ok(mut answers) = self.answers.lock() {
            answers.insert(path.to_string(), (status, body.to_string(), delay_ms));
        }
    }

    /// Makes `path` answer with `reply` (a reset, garbage …) until `clear_fault`.
    pub fn set_fault(&self, path: &str, reply: Reply) {
        if let Ok(mut faults) = self.faults.lock() {
            faults.insert(path.to_string(), reply);
        }
    }

    pub fn clear_fault(&self, path: &str) {
        if let Ok(mut faults) = self.faults.lock() {
            faults.remove(path);
        }
    }

    /// How many times `path` was fetched (a key as for `set`: `keys.example/jwks` counts only
    /// the requests with that `host`).
    pub fn fetches(&self, path: &str) -> usize {
        self.requests
            .all()
            .iter()
            .filter(|r| r.path() == path || host_path(r) == path)
            .count()
    }
}

/// `host` + path of a request (`keys.example/jwks`), the host-qualified key of [`JwksServer`].
fn host_path(request: &Request) -> String {
    format!("{}{}", request.header("host").unwrap_or(""), request.path())
}

/// Starts a JWKS server on an ephemeral loopback port.
pub fn start_jwks() -> std::io::Result<(Server, JwksServer)> {
    let jwks = JwksServer::default();
    let state = jwks.clone();
    let handler: Handler = Arc::new(move |request: &Request| {
        state.requests.push(request);
        let qualified = host_path(request);
        if let Some(fault) = state
            .faults
            .lock()
            .ok()
            .and_then(|f| f.get(&qualified).or_else(|| f.get(request.path())).cloned())
        {
            return fault;
        }
        let answer = state
            .answers
            .lock()
            .ok()
            .and_then(|a| a.get(&qualified).or_else(|| a.get(request.path())).cloned());
        match answer {
            Some((status, body, delay)) => {
                let response = Response::new(status)
                    .header("content-type", "application/json")
                    .body(body);
                if delay > 0 {
                    Reply::After(Duration::from_millis(delay), response)
                } else {
                    Reply::Respond(response)
                }
            }
            None => Reply::Respond(Response::new(404)),
        }
    });
    Ok((Server::start(handler)?, jwks))
}

/// httpbin-like answers: `/headers`, `/ip`, everything else as `/anything`.
pub fn echo(request: &Request) -> Response {
    let mut headers = Map::new();
    for (name, value) in &request.headers {
        let key = canonical(name);
        let joined = match headers.get(&key).and_then(Value::as_str) {
            Some(existing) => format!("{existing},{value}"),
            None => value.clone(),
        };
        headers.insert(key, Value::String(joined));
    }
    let origin = request.peer.map(|p| p.ip().to_string()).unwrap_or_default();
    let body = match request.path() {
        "/headers" => json!({ "headers": headers }),
        "/ip" => json!({ "origin": origin }),
        _ => json!({
            "method": request.method,
            "url": request.target,
            "headers": headers,
            "data": String::from_utf8_lossy(&request.body),
            "origin": origin,
        }),
    };
    Response::new(200)
        .header("content-type", "application/json")
        .body(serde_json::to_vec_pretty(&body).unwrap_or_default())
}

/// Starts the echo upstream on an ephemeral loopback port.
pub fn start_echo() -> std::io::Result<(Server, Recorder)> {
    let recorder = Recorder::default();
    let seen = recorder.clone();
    let handler: Handler = Arc::new(move |request: &Request| {
        seen.push(request);
        Reply::Respond(echo(request))
    });
    Ok((Server::start(handler)?, recorder))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, &str)]) -> Request {
        Request {
            method: "GET".into(),
            target: "/headers?x=1".into(),
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn sample_service_allows_only_the_allow_header() {
        let allowed = sample_decision(&request(&[("host", "h"), ("x-ext-authz", "allow")]));
        assert_eq!(allowed.status, 200);
        assert_eq!(allowed.get(RESULT_HEADER), Some("allowed"));
        let denied = sample_decision(&request(&[("x-ext-authz", "deny")]));
        assert_eq!(denied.status, 403);
        assert_eq!(denied.get(RESULT_HEADER), Some("denied"));
        assert_eq!(denied.text(), DENY_BODY);
        assert!(denied
            .get(RECEIVED_HEADER)
            .unwrap()
            .starts_with("GET /headers?x=1, headers: map[X-Ext-Authz:[deny]]"));
    }

    #[test]
    fn echo_answers_like_httpbin() {
        let r = echo(&request(&[("x-a", "1"), ("X-A", "2"), ("host", "h")]));
        let json = r.json();
        assert_eq!(json["headers"]["X-A"], "1,2");
        assert_eq!(json["headers"]["Host"], "h");
        assert_eq!(
            canonical("x-ext-authz-check-result"),
            "X-Ext-Authz-Check-Result"
        );
    }

    #[test]
    fn faults_are_chosen_by_path() {
        let mut r = request(&[]);
        r.target = "/_status/503/headers".into();
        assert!(matches!(fault(&r), Some(Reply::Respond(resp)) if resp.status == 503));
        r.target = "/_close/x".into();
        assert!(matches!(fault(&r), Some(Reply::Close)));
        r.target = "/headers".into();
        assert!(fault(&r).is_none());
    }

    #[test]
    fn cacheable_path_answers_like_the_sample_service_with_max_age() {
        let mut allow = request(&[("x-ext-authz", "allow")]);
        allow.target = "/_cacheable/headers".into();
        let Some(Reply::Respond(allowed)) = fault(&allow) else {
            panic!("not a response")
        };
        assert_eq!(allowed.status, 200);
        assert_eq!(allowed.get(RESULT_HEADER), Some("allowed"));
        assert_eq!(allowed.get("cache-control"), Some("max-age=60"));
        let mut deny = request(&[("x-ext-authz", "deny")]);
        deny.target = "/_cacheable/headers".into();
        let Some(Reply::Respond(denied)) = fault(&deny) else {
            panic!("not a response")
        };
        assert_eq!(denied.status, 403);
        assert_eq!(denied.text(), DENY_BODY);
        assert_eq!(denied.get("cache-control"), Some("max-age=60"));
    }
}
