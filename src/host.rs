//! The one seam between the filter and the proxy: every hostcall the filter makes goes through
//! `Host`. `ProxyWasm` is the real implementation (wasm only); `fake::FakeHost` drives the same
//! code in unit tests.

use std::time::{Duration, SystemTime};

use crate::ext_authz::CallResponse;

/// Proxy-wasm metric kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
    Histogram,
}

/// Why a foreign function call gave no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForeignError {
    /// The host has no function of that name.
    NotFound,
    Failed,
}

/// Whole seconds since the Unix epoch (0 for a clock before it).
pub fn unix_seconds(at: SystemTime) -> u64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// Every hostcall the filter needs, with errors turned into values (never a panic).
pub trait Host {
    /// Request headers as the proxy holds them: lowercase names, raw value bytes.
    fn request_headers(&self) -> Vec<(String, Vec<u8>)>;
    fn set_request_header(&self, name: &str, value: Option<&str>);
    fn add_request_header(&self, name: &str, value: &str);
    /// The first `max` bytes of the buffered request body.
    fn request_body(&self, max: usize) -> Option<Vec<u8>>;
    fn property(&self, path: &[&str]) -> Option<Vec<u8>>;
    fn dispatch_http_call(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<u32, String>;
    /// The answer to the callout now being delivered; its body is copied into the VM only when
    /// `wants_body(status)` says it will be used.
    fn call_response(&self, body_size: usize, wants_body: fn(Option<u32>) -> bool) -> CallResponse;
    fn send_response(&self, status: u32, headers: &[(&str, &str)], body: &[u8]);
    fn resume_request(&self);
    fn add_response_header(&self, name: &str, value: &str);
    fn now(&self) -> SystemTime;
    fn define_metric(&self, kind: MetricKind, name: &str) -> Option<u32>;
    fn increment_metric(&self, id: u32, delta: i64);
    fn record_metric(&self, id: u32, value: u64);
    /// Calls a host foreign function (Envoy's `verify_signature`).
    fn call_foreign(&self, name: &str, arguments: &[u8]) -> Result<Vec<u8>, ForeignError>;
}

/// The real host: proxy-wasm hostcalls, each `Result` handled.
#[cfg(target_arch = "wasm32")]
pub struct ProxyWasm;

#[cfg(target_arch = "wasm32")]
mod proxy {
    use super::*;
    use proxy_wasm::hostcalls;
    use proxy_wasm::types::{BufferType, MapType, MetricType};

    impl Host for ProxyWasm {
        fn request_headers(&self) -> Vec<(String, Vec<u8>)> {
            hostcalls::get_map_bytes(MapType::HttpRequestHeaders).unwrap_or_default()
        }

        fn set_request_header(&self, name: &str, value: Option<&str>) {
            if let Err(status) = hostcalls::set_map_value(MapType::HttpRequestHeaders, name, value)
            {
                log::warn!("set request header {name}: {status:?}");
            }
        }

        fn add_request_header(&self, name: &str, value: &str) {
            if let Err(status) = hostcalls::add_map_value(MapType::HttpRequestHeaders, name, value)
            {
                log::warn!("add request header {name}: {status:?}");
            }
        }

        fn request_body(&self, max: usize) -> Option<Vec<u8>> {
            hostcalls::get_buffer(BufferType::HttpRequestBody, 0, max)
                .ok()
                .flatten()
        }

        fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
            hostcalls::get_property(path.to_vec()).ok().flatten()
        }

        fn dispatch_http_call(
            &self,
            cluster: &str,
            headers: &[(&str, &str)],
            body: Option<&[u8]>,
            timeout: Duration,
        ) -> Result<u32, String> {
            hostcalls::dispatch_http_call(cluster, headers.to_vec(), body, vec![], timeout)
                .map_err(|status| format!("{status:?}"))
        }

        fn call_response(
            &self,
            body_size: usize,
            wants_body: fn(Option<u32>) -> bool,
        ) -> CallResponse {
            let headers = hostcalls::get_map_bytes(MapType::HttpCallResponseHeaders)
                .unwrap_or_default()
                .into_iter()
                .map(crate::headers::as_text)
                .collect();
            let mut response = CallResponse {
                headers,
                body: Vec::new(),
            };
            if body_size > 0 && wants_body(response.status()) {
                response.body =
                    hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size)
                        .ok()
                        .flatten()
                        .unwrap_or_default();
            }
            response
        }

        fn send_response(&self, status: u32, headers: &[(&str, &str)], body: &[u8]) {
            let body = (!body.is_empty()).then_some(body);
            if let Err(status) = hostcalls::send_http_response(status, headers.to_vec(), body) {
                log::error!("send local reply failed: {status:?}");
            }
        }

        fn resume_request(&self) {
            if let Err(status) = hostcalls::resume_http_request() {
                log::error!("resume request failed: {status:?}");
            }
        }

        fn add_response_header(&self, name: &str, value: &str) {
            if let Err(status) = hostcalls::add_map_value(MapType::HttpResponseHeaders, name, value)
            {
                log::warn!("add response header {name}: {status:?}");
            }
        }

        fn now(&self) -> SystemTime {
            hostcalls::get_current_time().unwrap_or(SystemTime::UNIX_EPOCH)
        }

        fn define_metric(&self, kind: MetricKind, name: &str) -> Option<u32> {
            let kind = match kind {
                MetricKind::Counter => MetricType::Counter,
                MetricKind::Gauge => MetricType::Gauge,
                MetricKind::Histogram => MetricType::Histogram,
            };
            hostcalls::define_metric(kind, name).ok()
        }

        fn increment_metric(&self, id: u32, delta: i64) {
            let _ = hostcalls::increment_metric(id, delta);
        }

        fn record_metric(&self, id: u32, value: u64) {
            let _ = hostcalls::record_metric(id, value);
        }

        fn call_foreign(&self, name: &str, arguments: &[u8]) -> Result<Vec<u8>, ForeignError> {
            match hostcalls::call_foreign_function(name, Some(arguments)) {
                Ok(result) => Ok(result.unwrap_or_default()),
                Err(proxy_wasm::types::Status::NotFound) => Err(ForeignError::NotFound),
                Err(_) => Err(ForeignError::Failed),
            }
        }
    }
}

#[cfg(test)]
pub mod fake {
    //! A host for unit tests: set it up with builders, then assert on what the filter did.

    use std::cell::{Cell, RefCell};
    use std::collections::HashMap;

    use super::*;

    /// A stand-in for the host's foreign functions.
    pub type ForeignFunction = fn(&str, &[u8]) -> Result<Vec<u8>, ForeignError>;

    /// A request the filter sent with `dispatch_http_call`.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Dispatched {
        pub cluster: String,
        pub headers: Vec<(String, String)>,
        pub body: Option<Vec<u8>>,
        pub timeout: Duration,
    }

    impl Dispatched {
        pub fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        }
    }

    /// A local reply the filter sent.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Reply {
        pub status: u32,
        pub headers: Vec<(String, String)>,
        pub body: String,
    }

    #[derive(Default)]
    pub struct FakeHost {
        pub request_headers: RefCell<Vec<(String, Vec<u8>)>>,
        pub body: RefCell<Vec<u8>>,
        pub properties: HashMap<String, Vec<u8>>,
        pub dispatch_error: Option<String>,
        pub dispatched: RefCell<Vec<Dispatched>>,
        pub call_answer: RefCell<CallResponse>,
        pub replies: RefCell<Vec<Reply>>,
        pub resumed: Cell<u32>,
        pub response_headers: RefCell<Vec<(String, String)>>,
        pub metrics: RefCell<Vec<String>>,
        pub counts: RefCell<HashMap<u32, i64>>,
        /// Answers `verify_signature` when set (the host's crypto), else NotFound.
        pub foreign: Option<ForeignFunction>,
        /// Every hostcall made, by name, in order (each costs about a microsecond in Envoy).
        pub hostcalls: RefCell<Vec<&'static str>>,
    }

    impl FakeHost {
        pub fn new() -> FakeHost {
            FakeHost::default()
        }

        pub fn with_request(self, method: &str, path: &str, authority: &str) -> FakeHost {
            self.with_request_header(":method", method)
                .with_request_header(":path", path)
                .with_request_header(":authority", authority)
        }

        pub fn with_request_header(self, name: &str, value: &str) -> FakeHost {
            self.request_headers
                .borrow_mut()
                .push((name.to_ascii_lowercase(), value.as_bytes().to_vec()));
            self
        }

        pub fn with_body(self, body: &[u8]) -> FakeHost {
            *self.body.borrow_mut() = body.to_vec();
            self
        }

        pub fn with_property(mut self, path: &[&str], value: &[u8]) -> FakeHost {
            self.properties.insert(path.join("."), value.to_vec());
            self
        }

        pub fn with_dispatch_error(mut self, error: &str) -> FakeHost {
            self.dispatch_error = Some(error.to_string());
            self
        }

        /// The authorization service's answer delivered on the next `call_response`.
        pub fn answering(&self, status: u32, headers: &[(&str, &str)], body: &str) {
            let mut all = vec![(":status".to_string(), status.to_string())];
            all.extend(headers.iter().map(|(n, v)| (n.to_string(), v.to_string())));
            *self.call_answer.borrow_mut() = CallResponse {
                headers: all,
                body: body.as_bytes().to_vec(),
            };
        }

        pub fn request_header(&self, name: &str) -> Option<String> {
            self.request_headers
                .borrow()
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
        }

        pub fn last_reply(&self) -> Option<Reply> {
            self.replies.borrow().last().cloned()
        }

        pub fn last_dispatch(&self) -> Option<Dispatched> {
            self.dispatched.borrow().last().cloned()
        }

        fn note(&self, name: &'static str) {
            self.hostcalls.borrow_mut().push(name);
        }

        /// The value of a counter by name.
        pub fn metric(&self, name: &str) -> i64 {
            let id = self.metrics.borrow().iter().position(|m| m == name);
            id.and_then(|id| self.counts.borrow().get(&(id as u32)).copied())
                .unwrap_or(0)
        }
    }

    impl Host for FakeHost {
        fn request_headers(&self) -> Vec<(String, Vec<u8>)> {
            self.note("request_headers");
            self.request_headers.borrow().clone()
        }

        fn set_request_header(&self, name: &str, value: Option<&str>) {
            self.note("set_request_header");
            let mut headers = self.request_headers.borrow_mut();
            headers.retain(|(n, _)| n != name);
            if let Some(v) = value {
                headers.push((name.to_string(), v.as_bytes().to_vec()));
            }
        }

        fn add_request_header(&self, name: &str, value: &str) {
            self.note("add_request_header");
            self.request_headers
                .borrow_mut()
                .push((name.to_string(), value.as_bytes().to_vec()));
        }

        fn request_body(&self, max: usize) -> Option<Vec<u8>> {
            self.note("request_body");
            let body = self.body.borrow();
            Some(body[..body.len().min(max)].to_vec())
        }

        fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
            self.note("property");
            self.properties.get(&path.join(".")).cloned()
        }

        fn dispatch_http_call(
            &self,
            cluster: &str,
            headers: &[(&str, &str)],
            body: Option<&[u8]>,
            timeout: Duration,
        ) -> Result<u32, String> {
            self.note("dispatch_http_call");
            if let Some(e) = &self.dispatch_error {
                return Err(e.clone());
            }
            let mut dispatched = self.dispatched.borrow_mut();
            dispatched.push(Dispatched {
                cluster: cluster.to_string(),
                headers: headers
                    .iter()
                    .map(|(n, v)| (n.to_string(), v.to_string()))
                    .collect(),
                body: body.map(<[u8]>::to_vec),
                timeout,
            });
            Ok(dispatched.len() as u32 + 100)
        }

        fn call_response(
            &self,
            _body_size: usize,
            wants_body: fn(Option<u32>) -> bool,
        ) -> CallResponse {
            self.note("call_response");
            let mut response = self.call_answer.borrow().clone();
            if !wants_body(response.status()) {
                response.body.clear();
            }
            response
        }

        fn send_response(&self, status: u32, headers: &[(&str, &str)], body: &[u8]) {
            self.note("send_response");
            self.replies.borrow_mut().push(Reply {
                status,
                headers: headers
                    .iter()
                    .map(|(n, v)| (n.to_string(), v.to_string()))
                    .collect(),
                body: String::from_utf8_lossy(body).into_owned(),
            });
        }

        fn resume_request(&self) {
            self.note("resume_request");
            self.resumed.set(self.resumed.get() + 1);
        }

        fn add_response_header(&self, name: &str, value: &str) {
            self.note("add_response_header");
            self.response_headers
                .borrow_mut()
                .push((name.to_string(), value.to_string()));
        }

        fn now(&self) -> SystemTime {
            self.note("now");
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
        }

        fn define_metric(&self, _kind: MetricKind, name: &str) -> Option<u32> {
            let mut metrics = self.metrics.borrow_mut();
            metrics.push(name.to_string());
            Some(metrics.len() as u32 - 1)
        }

        fn increment_metric(&self, id: u32, delta: i64) {
            self.note("increment_metric");
            *self.counts.borrow_mut().entry(id).or_default() += delta;
        }

        fn record_metric(&self, id: u32, value: u64) {
            self.note("record_metric");
            *self.counts.borrow_mut().entry(id).or_default() = value as i64;
        }

        fn call_foreign(&self, name: &str, arguments: &[u8]) -> Result<Vec<u8>, ForeignError> {
            self.note("call_foreign");
            match self.foreign {
                Some(answer) => answer(name, arguments),
                None => Err(ForeignError::NotFound),
            }
        }
    }
}
