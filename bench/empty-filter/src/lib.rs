//! The floor filters of the benchmark, one `.wasm` chosen by its configuration:
//!
//! - empty configuration: a root context that creates one HTTP context per request, and an HTTP
//!   context that lets the request continue. What it costs is what any proxy-wasm filter costs
//!   before doing anything (VM call-ins, context creation).
//! - `callout`: the smallest ext_authz-style callout a wasm filter can make: two header values
//!   read, one `dispatch_http_call` to the cluster `authz` with the request's path and
//!   `x-ext-authz`, `:status` of the answer read, then resume (200) or a bare 403. What Envoy's
//!   wasm HTTP-call machinery costs, to set beside native `ext_authz` and the filter's CUSTOM.
//! - `callout-grpc`: the smallest gRPC ext_authz callout: one `dispatch_grpc_call` of
//!   `envoy.service.auth.v3.Authorization/Check` to the cluster `authz-grpc` (upstream given as a
//!   serialized `GrpcService{envoy_grpc{cluster_name, authority}}`, as inline-authz and istiod
//!   give it) with a fixed CheckRequest built once (only `attributes.request.http.headers`
//!   `x-ext-authz: allow`), no header read; on the answer, resume when the call succeeded (gRPC
//!   status 0, whatever the CheckResponse says: it is not read) or a bare 403 when it failed.
//!   What Envoy's wasm gRPC-call machinery costs, beside native `ext_authz` in gRPC mode and the
//!   filter's CUSTOM with an `envoyExtAuthzGrpc` provider.
//! - `hostcall <kind>`: the empty filter plus four hostcalls of one kind per request (`headers`:
//!   all request headers; `value`: one header value; `remove`: remove a header; `time`: the clock;
//!   `metric`: increment a counter; `property`: the `source.address` property).
//!   `bench/hostcalls.py` sets them beside the empty filter: what one hostcall costs inside Envoy.

use std::hint::black_box;
use std::time::Duration;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType, MetricType};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root { mode: Mode::Pass }) });
}}

#[derive(Clone, Copy)]
enum Mode {
    Pass,
    Callout,
    CalloutGrpc(&'static GrpcCall),
    Hostcall(Hostcall, u32),
}

/// The hostcalls `hostcall <kind>` repeats.
#[derive(Clone, Copy)]
enum Hostcall {
    Headers,
    Value,
    Remove,
    Time,
    Metric,
    Property,
}

/// Hostcalls per request in `hostcall` mode: enough to stand out of the noise.
const REPEAT: usize = 4;

struct Root {
    mode: Mode,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let configuration = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
            .ok()
            .flatten()
            .unwrap_or_default();
        let configuration = String::from_utf8_lossy(&configuration);
        self.mode = match configuration.split_once(' ') {
            None if configuration == "callout" => Mode::Callout,
            None if configuration == "callout-grpc" => Mode::CalloutGrpc(GrpcCall::leaked()),
            None if configuration.is_empty() => Mode::Pass,
            Some(("hostcall", kind)) => {
                let kind = match kind {
                    "headers" => Hostcall::Headers,
                    "value" => Hostcall::Value,
                    "remove" => Hostcall::Remove,
                    "time" => Hostcall::Time,
                    "metric" => Hostcall::Metric,
                    "property" => Hostcall::Property,
                    _ => return false,
                };
                let counter = hostcalls::define_metric(MetricType::Counter, "bench.hostcalls");
                Mode::Hostcall(kind, counter.unwrap_or(0))
            }
            _ => return false,
        };
        true
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        match self.mode {
            Mode::Pass => Some(Box::new(Pass)),
            Mode::Callout => Some(Box::new(Callout)),
            Mode::CalloutGrpc(call) => Some(Box::new(CalloutGrpc { call })),
            Mode::Hostcall(kind, counter) => Some(Box::new(Repeat { kind, counter })),
        }
    }
}

struct Pass;

impl Context for Pass {}

impl HttpContext for Pass {
    fn on_http_request_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        Action::Continue
    }
}

struct Repeat {
    kind: Hostcall,
    counter: u32,
}

impl Context for Repeat {}

impl HttpContext for Repeat {
    fn on_http_request_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        let headers = MapType::HttpRequestHeaders;
        for _ in 0..REPEAT {
            match self.kind {
                Hostcall::Headers => drop(black_box(hostcalls::get_map_bytes(headers))),
                Hostcall::Value => drop(black_box(hostcalls::get_map_value(headers, ":path"))),
                Hostcall::Remove => drop(hostcalls::set_map_value(headers, "x-absent", None)),
                Hostcall::Time => drop(black_box(hostcalls::get_current_time())),
                Hostcall::Metric => drop(hostcalls::increment_metric(self.counter, 1)),
                Hostcall::Property => drop(black_box(hostcalls::get_property(vec![
                    "source", "address",
                ]))),
            }
        }
        Action::Continue
    }
}

struct Callout;

fn request_header(name: &str) -> String {
    let value = hostcalls::get_map_value(MapType::HttpRequestHeaders, name);
    value.ok().flatten().unwrap_or_default()
}

impl Context for Callout {
    fn on_http_call_response(
        &mut self,
        _token: u32,
        _headers: usize,
        _body: usize,
        _trailers: usize,
    ) {
        let status = hostcalls::get_map_value(MapType::HttpCallResponseHeaders, ":status");
        if let Ok(Some(status)) = status {
            if status == "200" {
                let _ = hostcalls::resume_http_request();
                return;
            }
        }
        let _ = hostcalls::send_http_response(403, vec![], None);
    }
}

impl HttpContext for Callout {
    fn on_http_request_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        let path = request_header(":path");
        let verdict = request_header("x-ext-authz");
        let headers = vec![
            (":method", "GET"),
            (":path", path.as_str()),
            (":authority", "authz"),
            ("x-ext-authz", verdict.as_str()),
        ];
        let timeout = Duration::from_secs(10);
        match hostcalls::dispatch_http_call("authz", headers, None, vec![], timeout) {
            Ok(_) => Action::Pause,
            Err(_) => {
                let _ = hostcalls::send_http_response(500, vec![], None);
                Action::Pause
            }
        }
    }
}

/// The cluster and authority of `callout-grpc`.
const GRPC_CLUSTER: &str = "authz-grpc";

/// What `callout-grpc` sends on every request, encoded once.
struct GrpcCall {
    /// `envoy.config.core.v3.GrpcService{envoy_grpc{cluster_name, authority}}`, serialized (text:
    /// every length in it is below 128).
    upstream: String,
    /// `envoy.service.auth.v3.CheckRequest{attributes{request{http{headers{x-ext-authz: allow}}}}}`.
    message: Vec<u8>,
}

/// A length-delimited protobuf field (wire type 2) whose length is below 128.
fn field(number: u8, bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![number << 3 | 2, bytes.len() as u8];
    out.extend_from_slice(bytes);
    out
}

impl GrpcCall {
    /// Built once per VM, at configuration, and kept for the VM's life.
    fn leaked() -> &'static GrpcCall {
        let envoy_grpc = [
            field(1, GRPC_CLUSTER.as_bytes()),
            field(2, GRPC_CLUSTER.as_bytes()),
        ]
        .concat();
        let upstream = String::from_utf8(field(1, &envoy_grpc)).unwrap_or_default();
        let entry = [field(1, b"x-ext-authz"), field(2, b"allow")].concat();
        let http = field(3, &entry); // HttpRequest.headers (map entry)
        let request = field(2, &http); // Request.http
        let attributes = field(4, &request); // AttributeContext.request
        let message = field(1, &attributes); // CheckRequest.attributes
        Box::leak(Box::new(GrpcCall { upstream, message }))
    }
}

struct CalloutGrpc {
    call: &'static GrpcCall,
}

impl Context for CalloutGrpc {
    fn on_grpc_call_response(&mut self, _token: u32, status_code: u32, _response_size: usize) {
        if status_code == 0 {
            let _ = hostcalls::resume_http_request();
        } else {
            let _ = hostcalls::send_http_response(403, vec![], None);
        }
    }
}

impl HttpContext for CalloutGrpc {
    fn on_http_request_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        let call = hostcalls::dispatch_grpc_call(
            &self.call.upstream,
            "envoy.service.auth.v3.Authorization",
            "Check",
            vec![],
            Some(&self.call.message),
            Duration::from_secs(10),
        );
        if call.is_err() {
            let _ = hostcalls::send_http_response(500, vec![], None);
        }
        Action::Pause
    }
}
