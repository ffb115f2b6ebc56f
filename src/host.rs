//! The one seam between the filter and the proxy: every hostcall the filter makes goes through
//! `Host`. `ProxyWasm` is the real implementation (wasm only); `fake::FakeHost` drives the same
//! code in unit tests.

use std::time::{Duration, SystemTime};

use crate::ext_authz::CallResponse;

/// Proxy-wasm metric kinds (`MetricType`), which Envoy turns into its stat types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// Only goes up.
    Counter,
    /// Set to a value.
    Gauge,
    /// Each recorded value is a sample.
    Histogram,
}

/// Why a foreign function call gave no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForeignError {
    /// The host has no function of that name.
    NotFound,
    /// The function ran and returned an error.
    Failed,
}

/// Whole seconds since the Unix epoch (0 for a clock before it).
pub fn unix_seconds(at: SystemTime) -> u64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// A hostcall that failed: which call, and what the proxy answered. On the request path it ends
/// the request closed (500), with one log line naming the call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostError {
    /// The hostcall, e.g. `get_property` or `get_map_bytes(request headers)`.
    pub call: &'static str,
    /// The proxy's status for it, as `Debug` text.
    pub status: String,
}

impl HostError {
    /// `call` failed with `status` (the proxy-wasm `Status`).
    pub fn new(call: &'static str, status: impl std::fmt::Debug) -> HostError {
        HostError {
            call,
            status: format!("{status:?}"),
        }
    }
}

impl std::fmt::Display for HostError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "hostcall {} failed: {}", self.call, self.status)
    }
}

/// What a hostcall returns: its value, or which call failed.
pub type HostResult<T> = Result<T, HostError>;

/// Why a shared-data write did not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SharedWrite {
    /// Another VM wrote the key since it was read (compare-and-swap lost).
    CasMismatch,
    /// Any other refusal of `set_shared_data`.
    Failed,
}

/// Every hostcall the filter needs, with errors turned into values (never a panic). Metrics are
/// best effort: a counter that cannot be written never changes a decision.
pub trait Host {
    /// Request headers as the proxy holds them: lowercase names, raw value bytes.
    fn request_headers(&self) -> HostResult<Vec<(String, Vec<u8>)>>;
    /// Replaces a request header; `None` removes it.
    fn set_request_header(&self, name: &str, value: Option<&str>) -> HostResult<()>;
    /// Adds a value to a request header, keeping the ones there.
    fn add_request_header(&self, name: &str, value: &str) -> HostResult<()>;
    /// The first `max` bytes of the buffered request body.
    fn request_body(&self, max: usize) -> HostResult<Vec<u8>>;
    /// A property (`source.address` …); `None` when the host has none for this request.
    fn property(&self, path: &[&str]) -> HostResult<Option<Vec<u8>>>;
    /// Sets a property of this request (`proxy_set_property`); Envoy keeps it as filter state
    /// `wasm.<path>`, with the path's segments joined by NUL bytes.
    fn set_property(&self, path: &[&str], value: &[u8]) -> HostResult<()>;
    /// Starts an HTTP callout to Envoy cluster `cluster`; returns the token id its answer will
    /// carry.
    fn dispatch_http_call(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        timeout: Duration,
    ) -> HostResult<u32>;
    /// Calls `service`/`method` on `upstream` (a serialized `GrpcService`, or a cluster name).
    fn dispatch_grpc_call(
        &self,
        upstream: &str,
        service: &str,
        method: &str,
        message: &[u8],
        timeout: Duration,
    ) -> HostResult<u32>;
    /// The message of the gRPC answer now being delivered (`size` bytes).
    fn grpc_response(&self, size: usize) -> HostResult<Vec<u8>>;
    /// The answer to the callout now being delivered; its body is copied into the VM only when
    /// `wants_body(status)` says it will be used.
    fn call_response(
        &self,
        body_size: usize,
        wants_body: fn(Option<u32>) -> bool,
    ) -> HostResult<CallResponse>;
    /// Ends the request with a local reply (`send_http_response`).
    fn send_response(&self, status: u32, headers: &[(&str, &str)], body: &[u8]) -> HostResult<()>;
    /// Lets a paused request go on (`resume_http_request`).
    fn resume_request(&self) -> HostResult<()>;
    /// Adds a header to the response sent downstream.
    fn add_response_header(&self, name: &str, value: &str) -> HostResult<()>;
    /// Sets a header on the response sent downstream (replacing its values).
    fn set_response_header(&self, name: &str, value: &str) -> HostResult<()>;
    /// The host's clock (never the wasm clock).
    fn now(&self) -> HostResult<SystemTime>;
    /// Defines a metric (Envoy prefixes `wasmcustom.`); `None` when the host refuses it.
    fn define_metric(&self, kind: MetricKind, name: &str) -> Option<u32>;
    /// Adds `delta` to a counter or gauge.
    fn increment_metric(&self, id: u32, delta: i64);
    /// Sets a gauge, or records a histogram sample.
    fn record_metric(&self, id: u32, value: u64);
    /// Calls a host foreign function (Envoy's `verify_signature`).
    fn call_foreign(&self, name: &str, arguments: &[u8]) -> Result<Vec<u8>, ForeignError>;
    /// A value shared by every VM of the proxy, with its compare-and-swap token.
    fn shared_data(&self, key: &str) -> HostResult<(Option<Vec<u8>>, Option<u32>)>;
    /// Writes a shared value; with `cas`, only if nobody wrote it since it was read.
    fn set_shared_data(&self, key: &str, value: &[u8], cas: Option<u32>)
        -> Result<(), SharedWrite>;
    /// How often the root context's `on_tick` runs.
    fn set_tick_period(&self, period: Duration) -> HostResult<()>;
    /// Makes the request `context_id` the one later hostcalls act on (from the root context).
    fn set_effective_context(&self, context_id: u32) -> HostResult<()>;
}

/// The real host: proxy-wasm hostcalls, each `Result` handed back.
#[cfg(target_arch = "wasm32")]
pub struct ProxyWasm;

#[cfg(target_arch = "wasm32")]
mod proxy {
    use super::*;
    use proxy_wasm::hostcalls;
    use proxy_wasm::types::{BufferType, MapType, MetricType, Status};

    // The SDK declares the same import returning its `Status` enum; a plain status number here
    // takes any value the host returns.
    #[allow(clashing_extern_declarations)]
    #[link(wasm_import_module = "env")]
    extern "C" {
        fn proxy_set_property(
            path_data: *const u8,
            path_size: usize,
            value_data: *const u8,
            value_size: usize,
        ) -> u32;
    }

    impl Host for ProxyWasm {
        fn request_headers(&self) -> HostResult<Vec<(String, Vec<u8>)>> {
            hostcalls::get_map_bytes(MapType::HttpRequestHeaders)
                .map_err(|s| HostError::new("get_map_bytes(request headers)", s))
        }

        fn set_request_header(&self, name: &str, value: Option<&str>) -> HostResult<()> {
            hostcalls::set_map_value(MapType::HttpRequestHeaders, name, value)
                .map_err(|s| HostError::new("set_map_value(request header)", s))
        }

        fn add_request_header(&self, name: &str, value: &str) -> HostResult<()> {
            hostcalls::add_map_value(MapType::HttpRequestHeaders, name, value)
                .map_err(|s| HostError::new("add_map_value(request header)", s))
        }

        fn request_body(&self, max: usize) -> HostResult<Vec<u8>> {
            hostcalls::get_buffer(BufferType::HttpRequestBody, 0, max)
                .map(Option::unwrap_or_default)
                .map_err(|s| HostError::new("get_buffer(request body)", s))
        }

        fn property(&self, path: &[&str]) -> HostResult<Option<Vec<u8>>> {
            hostcalls::get_property(path.to_vec()).map_err(|s| HostError::new("get_property", s))
        }

        fn set_property(&self, path: &[&str], value: &[u8]) -> HostResult<()> {
            // The SDK's `set_property` panics on any status but `Ok` (Envoy answers `NotFound`
            // without a stream, `BadArgument` for a read-only value): the import is called
            // directly, so that a refusal is a value like every other hostcall's.
            let path = path.join("\0");
            // SAFETY: both pointers and lengths describe live byte slices for the whole call;
            // the host only reads them.
            let status = unsafe {
                proxy_set_property(path.as_ptr(), path.len(), value.as_ptr(), value.len())
            };
            match status {
                0 => Ok(()),
                other => Err(HostError::new("set_property", other)),
            }
        }

        fn dispatch_http_call(
            &self,
            cluster: &str,
            headers: &[(&str, &str)],
            body: Option<&[u8]>,
            timeout: Duration,
        ) -> HostResult<u32> {
            hostcalls::dispatch_http_call(cluster, headers.to_vec(), body, vec![], timeout)
                .map_err(|s| HostError::new("dispatch_http_call", s))
        }

        fn dispatch_grpc_call(
            &self,
            upstream: &str,
            service: &str,
            method: &str,
            message: &[u8],
            timeout: Duration,
        ) -> HostResult<u32> {
            hostcalls::dispatch_grpc_call(upstream, service, method, vec![], Some(message), timeout)
                .map_err(|s| HostError::new("dispatch_grpc_call", s))
        }

        fn grpc_response(&self, size: usize) -> HostResult<Vec<u8>> {
            hostcalls::get_buffer(BufferType::GrpcReceiveBuffer, 0, size)
                .map(Option::unwrap_or_default)
                .map_err(|s| HostError::new("get_buffer(grpc answer)", s))
        }

        fn call_response(
            &self,
            body_size: usize,
            wants_body: fn(Option<u32>) -> bool,
        ) -> HostResult<CallResponse> {
            let headers = hostcalls::get_map_bytes(MapType::HttpCallResponseHeaders)
                .map_err(|s| HostError::new("get_map_bytes(callout response headers)", s))?
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
                        .map_err(|s| HostError::new("get_buffer(callout response body)", s))?
                        .unwrap_or_default();
            }
            Ok(response)
        }

        fn send_response(
            &self,
            status: u32,
            headers: &[(&str, &str)],
            body: &[u8],
        ) -> HostResult<()> {
            let body = (!body.is_empty()).then_some(body);
            hostcalls::send_http_response(status, headers.to_vec(), body)
                .map_err(|s| HostError::new("send_http_response", s))
        }

        fn resume_request(&self) -> HostResult<()> {
            hostcalls::resume_http_request().map_err(|s| HostError::new("resume_http_request", s))
        }

        fn add_response_header(&self, name: &str, value: &str) -> HostResult<()> {
            hostcalls::add_map_value(MapType::HttpResponseHeaders, name, value)
                .map_err(|s| HostError::new("add_map_value(response header)", s))
        }

        fn set_response_header(&self, name: &str, value: &str) -> HostResult<()> {
            hostcalls::set_map_value(MapType::HttpResponseHeaders, name, Some(value))
                .map_err(|s| HostError::new("set_map_value(response header)", s))
        }

        fn now(&self) -> HostResult<SystemTime> {
            hostcalls::get_current_time().map_err(|s| HostError::new("get_current_time", s))
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
                Err(Status::NotFound) => Err(ForeignError::NotFound),
                Err(_) => Err(ForeignError::Failed),
            }
        }

        fn shared_data(&self, key: &str) -> HostResult<(Option<Vec<u8>>, Option<u32>)> {
            hostcalls::get_shared_data(key).map_err(|s| HostError::new("get_shared_data", s))
        }

        fn set_shared_data(
            &self,
            key: &str,
            value: &[u8],
            cas: Option<u32>,
        ) -> Result<(), SharedWrite> {
            hostcalls::set_shared_data(key, Some(value), cas).map_err(|s| match s {
                Status::CasMismatch => SharedWrite::CasMismatch,
                _ => SharedWrite::Failed,
            })
        }

        fn set_tick_period(&self, period: Duration) -> HostResult<()> {
            hostcalls::set_tick_period(period).map_err(|s| HostError::new("set_tick_period", s))
        }

        fn set_effective_context(&self, context_id: u32) -> HostResult<()> {
            hostcalls::set_effective_context(context_id)
                .map_err(|s| HostError::new("set_effective_context", s))
        }
    }
}

#[cfg(test)]
pub mod fake {
    //! A host for unit tests: set it up with builders, then assert on what the filter did.
    #![allow(missing_docs)] // test support: its fields are what the tests read and set

    use std::cell::{Cell, RefCell};
    use std::collections::HashMap;
    use std::rc::Rc;

    use super::*;

    /// A stand-in for the host's foreign functions.
    pub type ForeignFunction = fn(&str, &[u8]) -> Result<Vec<u8>, ForeignError>;

    /// Shared data as the proxy keeps it for all its VMs: value and compare-and-swap token.
    pub type SharedStore = Rc<RefCell<HashMap<String, (Vec<u8>, u32)>>>;

    /// A gRPC call the filter made.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct GrpcCall {
        pub upstream: String,
        pub service: String,
        pub method: String,
        pub message: Vec<u8>,
        pub timeout: Duration,
        pub token: u32,
    }

    /// A request the filter sent with `dispatch_http_call`.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Dispatched {
        pub cluster: String,
        pub headers: Vec<(String, String)>,
        pub body: Option<Vec<u8>>,
        pub timeout: Duration,
        pub token: u32,
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

    /// What a test runs before it reads a count (`FakeHost::before_metric_read`).
    pub type MetricsFlush = Box<dyn Fn(&FakeHost)>;

    pub struct FakeHost {
        pub request_headers: RefCell<Vec<(String, Vec<u8>)>>,
        pub body: RefCell<Vec<u8>>,
        pub properties: HashMap<String, Vec<u8>>,
        /// Every `set_property`, in order: the path's segments joined by NUL, and the value.
        pub properties_set: RefCell<Vec<(String, String)>>,
        pub dispatch_error: Option<String>,
        /// A cluster this Envoy does not have: a dispatch to it fails.
        pub missing_cluster: Option<String>,
        pub dispatched: RefCell<Vec<Dispatched>>,
        pub grpc_calls: RefCell<Vec<GrpcCall>>,
        /// The message of the next gRPC answer.
        pub grpc_answer: RefCell<Vec<u8>>,
        /// Tokens handed out by `dispatch_http_call` start above this (one range per worker).
        pub token_base: u32,
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
        /// The hostcall that fails (by its ledger name), to prove each failure fails closed.
        pub failing: Cell<Option<&'static str>>,
        pub clock: Cell<SystemTime>,
        pub shared: SharedStore,
        pub tick_period: Cell<Option<Duration>>,
        pub effective_context: Cell<Option<u32>>,
        /// Run before `metric` reads a count: the filter keeps its counts until the tick, and a
        /// test flushes them here (as the tick would).
        pub before_metric_read: RefCell<Vec<MetricsFlush>>,
    }

    impl Default for FakeHost {
        fn default() -> Self {
            FakeHost {
                request_headers: RefCell::default(),
                body: RefCell::default(),
                properties: HashMap::new(),
                properties_set: RefCell::default(),
                dispatch_error: None,
                missing_cluster: None,
                dispatched: RefCell::default(),
                grpc_calls: RefCell::default(),
                grpc_answer: RefCell::default(),
                token_base: 100,
                call_answer: RefCell::default(),
                replies: RefCell::default(),
                resumed: Cell::new(0),
                response_headers: RefCell::default(),
                metrics: RefCell::default(),
                counts: RefCell::default(),
                foreign: None,
                hostcalls: RefCell::default(),
                failing: Cell::new(None),
                clock: Cell::new(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
                shared: SharedStore::default(),
                tick_period: Cell::new(None),
                effective_context: Cell::new(None),
                before_metric_read: RefCell::default(),
            }
        }
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

        /// Another VM of the same proxy: it shares this store (two workers).
        pub fn with_shared_store(mut self, store: &SharedStore, token_base: u32) -> FakeHost {
            self.shared = Rc::clone(store);
            self.token_base = token_base;
            self
        }

        /// Makes the named hostcall fail from now on.
        pub fn failing(self, call: &'static str) -> FakeHost {
            self.failing.set(Some(call));
            self
        }

        pub fn advance(&self, by: Duration) {
            self.clock.set(self.clock.get() + by);
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

        /// The last audit record set (`wasm.inline_authz.decision`).
        pub fn decision(&self) -> Option<String> {
            self.properties_set
                .borrow()
                .iter()
                .rev()
                .find(|(path, _)| path == "inline_authz.decision")
                .map(|(_, value)| value.clone())
        }

        pub fn last_dispatch(&self) -> Option<Dispatched> {
            self.dispatched.borrow().last().cloned()
        }

        /// Records the call; `Err` when it is the one set to fail.
        fn note(&self, name: &'static str) -> HostResult<()> {
            self.hostcalls.borrow_mut().push(name);
            match self.failing.get() {
                Some(failing) if failing == name => Err(HostError::new(name, "InternalFailure")),
                _ => Ok(()),
            }
        }

        /// The value of a counter by name.
        pub fn metric(&self, name: &str) -> i64 {
            for flush in self.before_metric_read.borrow().iter() {
                flush(self);
            }
            let id = self.metrics.borrow().iter().position(|m| m == name);
            id.and_then(|id| self.counts.borrow().get(&(id as u32)).copied())
                .unwrap_or(0)
        }
    }

    impl Host for FakeHost {
        fn request_headers(&self) -> HostResult<Vec<(String, Vec<u8>)>> {
            self.note("request_headers")?;
            Ok(self.request_headers.borrow().clone())
        }

        fn set_request_header(&self, name: &str, value: Option<&str>) -> HostResult<()> {
            self.note("set_request_header")?;
            let mut headers = self.request_headers.borrow_mut();
            headers.retain(|(n, _)| n != name);
            if let Some(v) = value {
                headers.push((name.to_string(), v.as_bytes().to_vec()));
            }
            Ok(())
        }

        fn add_request_header(&self, name: &str, value: &str) -> HostResult<()> {
            self.note("add_request_header")?;
            self.request_headers
                .borrow_mut()
                .push((name.to_string(), value.as_bytes().to_vec()));
            Ok(())
        }

        fn request_body(&self, max: usize) -> HostResult<Vec<u8>> {
            self.note("request_body")?;
            let body = self.body.borrow();
            Ok(body.iter().take(max).copied().collect())
        }

        fn property(&self, path: &[&str]) -> HostResult<Option<Vec<u8>>> {
            self.note("property")?;
            Ok(self.properties.get(&path.join(".")).cloned())
        }

        fn set_property(&self, path: &[&str], value: &[u8]) -> HostResult<()> {
            self.note("set_property")?;
            self.properties_set
                .borrow_mut()
                .push((path.join("\0"), String::from_utf8_lossy(value).into_owned()));
            Ok(())
        }

        fn dispatch_http_call(
            &self,
            cluster: &str,
            headers: &[(&str, &str)],
            body: Option<&[u8]>,
            timeout: Duration,
        ) -> HostResult<u32> {
            self.note("dispatch_http_call")?;
            if let Some(e) = &self.dispatch_error {
                return Err(HostError::new("dispatch_http_call", e));
            }
            if self.missing_cluster.as_deref() == Some(cluster) {
                return Err(HostError::new("dispatch_http_call", "BadArgument"));
            }
            let mut dispatched = self.dispatched.borrow_mut();
            let token = dispatched.len() as u32 + 1 + self.token_base;
            dispatched.push(Dispatched {
                cluster: cluster.to_string(),
                headers: headers
                    .iter()
                    .map(|(n, v)| (n.to_string(), v.to_string()))
                    .collect(),
                body: body.map(<[u8]>::to_vec),
                timeout,
                token,
            });
            Ok(token)
        }

        fn dispatch_grpc_call(
            &self,
            upstream: &str,
            service: &str,
            method: &str,
            message: &[u8],
            timeout: Duration,
        ) -> HostResult<u32> {
            self.note("dispatch_grpc_call")?;
            if let Some(e) = &self.dispatch_error {
                return Err(HostError::new("dispatch_grpc_call", e));
            }
            let mut calls = self.grpc_calls.borrow_mut();
            let token = (calls.len() + self.dispatched.borrow().len()) as u32 + 1 + self.token_base;
            calls.push(GrpcCall {
                upstream: upstream.to_string(),
                service: service.to_string(),
                method: method.to_string(),
                message: message.to_vec(),
                timeout,
                token,
            });
            Ok(token)
        }

        fn grpc_response(&self, size: usize) -> HostResult<Vec<u8>> {
            self.note("grpc_response")?;
            Ok(self
                .grpc_answer
                .borrow()
                .iter()
                .take(size)
                .copied()
                .collect())
        }

        fn call_response(
            &self,
            _body_size: usize,
            wants_body: fn(Option<u32>) -> bool,
        ) -> HostResult<CallResponse> {
            self.note("call_response")?;
            let mut response = self.call_answer.borrow().clone();
            if !wants_body(response.status()) {
                response.body.clear();
            }
            Ok(response)
        }

        fn send_response(
            &self,
            status: u32,
            headers: &[(&str, &str)],
            body: &[u8],
        ) -> HostResult<()> {
            self.note("send_response")?;
            self.replies.borrow_mut().push(Reply {
                status,
                headers: headers
                    .iter()
                    .map(|(n, v)| (n.to_string(), v.to_string()))
                    .collect(),
                body: String::from_utf8_lossy(body).into_owned(),
            });
            Ok(())
        }

        fn resume_request(&self) -> HostResult<()> {
            self.note("resume_request")?;
            self.resumed.set(self.resumed.get() + 1);
            Ok(())
        }

        fn add_response_header(&self, name: &str, value: &str) -> HostResult<()> {
            self.note("add_response_header")?;
            self.response_headers
                .borrow_mut()
                .push((name.to_string(), value.to_string()));
            Ok(())
        }

        fn set_response_header(&self, name: &str, value: &str) -> HostResult<()> {
            self.note("set_response_header")?;
            let mut headers = self.response_headers.borrow_mut();
            headers.retain(|(n, _)| n != name);
            headers.push((name.to_string(), value.to_string()));
            Ok(())
        }

        fn now(&self) -> HostResult<SystemTime> {
            self.note("now")?;
            Ok(self.clock.get())
        }

        fn define_metric(&self, _kind: MetricKind, name: &str) -> Option<u32> {
            let mut metrics = self.metrics.borrow_mut();
            metrics.push(name.to_string());
            Some(metrics.len() as u32 - 1)
        }

        fn increment_metric(&self, id: u32, delta: i64) {
            if self.note("increment_metric").is_ok() {
                *self.counts.borrow_mut().entry(id).or_default() += delta;
            }
        }

        fn record_metric(&self, id: u32, value: u64) {
            if self.note("record_metric").is_ok() {
                *self.counts.borrow_mut().entry(id).or_default() = value as i64;
            }
        }

        fn call_foreign(&self, name: &str, arguments: &[u8]) -> Result<Vec<u8>, ForeignError> {
            self.note("call_foreign")
                .map_err(|_| ForeignError::Failed)?;
            match self.foreign {
                Some(answer) => answer(name, arguments),
                None => Err(ForeignError::NotFound),
            }
        }

        fn shared_data(&self, key: &str) -> HostResult<(Option<Vec<u8>>, Option<u32>)> {
            self.note("shared_data")?;
            Ok(match self.shared.borrow().get(key) {
                Some((value, cas)) => (Some(value.clone()), Some(*cas)),
                None => (None, None),
            })
        }

        fn set_shared_data(
            &self,
            key: &str,
            value: &[u8],
            cas: Option<u32>,
        ) -> Result<(), SharedWrite> {
            self.note("set_shared_data")
                .map_err(|_| SharedWrite::Failed)?;
            let mut store = self.shared.borrow_mut();
            let current = store.get(key).map_or(0, |(_, c)| *c);
            if cas.is_some_and(|cas| cas != current) {
                return Err(SharedWrite::CasMismatch);
            }
            store.insert(key.to_string(), (value.to_vec(), current + 1));
            Ok(())
        }

        fn set_tick_period(&self, period: Duration) -> HostResult<()> {
            self.note("set_tick_period")?;
            self.tick_period.set(Some(period));
            Ok(())
        }

        fn set_effective_context(&self, context_id: u32) -> HostResult<()> {
            self.note("set_effective_context")?;
            self.effective_context.set(Some(context_id));
            Ok(())
        }
    }
}
