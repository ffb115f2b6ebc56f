//! The floor filters of the benchmark, one `.wasm` chosen by its configuration:
//!
//! - empty configuration: a root context that creates one HTTP context per request, and an HTTP
//!   context that lets the request continue. What it costs is what any proxy-wasm filter costs
//!   before doing anything (VM call-ins, context creation).
//! - `callout`: the smallest ext_authz-style callout a wasm filter can make: two header values
//!   read, one `dispatch_http_call` to the cluster `authz` with the request's path and
//!   `x-ext-authz`, `:status` of the answer read, then resume (200) or a bare 403. What Envoy's
//!   wasm HTTP-call machinery costs, to set beside native `ext_authz` and the filter's CUSTOM.

use std::rc::Rc;
use std::time::Duration;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root { callout: false }) });
}}

struct Root {
    callout: bool,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let configuration = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
            .ok()
            .flatten()
            .unwrap_or_default();
        self.callout = configuration.as_slice() == b"callout";
        true
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        if self.callout {
            Some(Box::new(Callout))
        } else {
            Some(Box::new(Pass))
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

struct Callout;

fn request_header(name: &str) -> Rc<str> {
    let value = hostcalls::get_map_value(MapType::HttpRequestHeaders, name);
    Rc::from(value.ok().flatten().unwrap_or_default())
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
            (":path", &*path),
            (":authority", "authz"),
            ("x-ext-authz", &*verdict),
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
