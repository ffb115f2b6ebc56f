//! The proxy-facing shell: `root::Plugin` (configuration, remote keys, parked requests) and
//! `http::AuthzRequest` (one request), both driven through `Host`; the proxy-wasm contexts at the
//! end of this file only hand callbacks to them. Only this module and `host.rs` name `proxy_wasm`.

pub mod body_watch;
pub mod crypto;
pub mod http;
pub mod keys;
pub mod metrics;
pub mod root;

/// Registers the root context; called once per VM from `main!`.
#[cfg(target_arch = "wasm32")]
pub fn start() {
    wasm::start();
}

#[cfg(target_arch = "wasm32")]
mod wasm {
    //! The proxy-wasm contexts: each callback is handed to `Plugin` or `AuthzRequest` with the
    //! real host. Nothing is decided here.

    use std::cell::RefCell;
    use std::rc::Rc;

    use proxy_wasm::hostcalls;
    use proxy_wasm::traits::{Context, HttpContext, RootContext};
    #[cfg(feature = "panic-probe")]
    use proxy_wasm::types::MapType;
    use proxy_wasm::types::{Action as ProxyAction, BufferType, ContextType, LogLevel};

    use super::http::{Action, AuthzRequest};
    use super::root::{check_answer, grpc_answer, Plugin};
    use crate::host::{Host, ProxyWasm};

    pub fn start() {
        proxy_wasm::set_log_level(LogLevel::Trace);
        std::panic::set_hook(Box::new(|info| {
            let _ = hostcalls::log(
                LogLevel::Critical,
                &format!("inline-authz panicked, failing closed: {info}"),
            );
        }));
        proxy_wasm::set_root_context(|context_id| {
            // Nanoseconds: the VMs of one proxy start within the same second, with the same
            // root context id, and the id must tell them apart in the fetch lease.
            let started = ProxyWasm
                .now()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .unwrap_or_default()
                .as_nanos();
            Box::new(Root {
                plugin: Rc::new(RefCell::new(Plugin::new(format!("{started}-{context_id}")))),
            })
        });
    }

    /// Test builds only (`--features panic-probe`): a request carrying `x-inline-authz-panic-probe`
    /// panics, so a test can prove that a panic fails closed. Never in the shipped `.wasm`.
    #[cfg(feature = "panic-probe")]
    #[allow(clippy::panic)]
    fn panic_probe() {
        let probe = "x-inline-authz-panic-probe";
        if let Ok(Some(_)) = hostcalls::get_map_value(MapType::HttpRequestHeaders, probe) {
            panic!("panic probe");
        }
    }

    fn to_proxy(action: Action) -> ProxyAction {
        match action {
            Action::Continue => ProxyAction::Continue,
            Action::Pause => ProxyAction::Pause,
        }
    }

    struct Root {
        plugin: Rc<RefCell<Plugin>>,
    }

    impl Context for Root {
        fn on_done(&mut self) -> bool {
            self.plugin.borrow().on_done(&ProxyWasm);
            true
        }

        fn on_http_call_response(
            &mut self,
            token: u32,
            num_headers: usize,
            body_size: usize,
            _trailers: usize,
        ) {
            self.plugin
                .borrow()
                .on_http_call_response(&ProxyWasm, token, num_headers, body_size);
        }

        fn on_grpc_call_response(&mut self, token: u32, status_code: u32, response_size: usize) {
            self.plugin.borrow().on_grpc_call_response(
                &ProxyWasm,
                token,
                status_code,
                response_size,
            );
        }
    }

    impl RootContext for Root {
        fn on_vm_start(&mut self, _size: usize) -> bool {
            log::info!("inline-authz {} starting", env!("CARGO_PKG_VERSION"));
            true
        }

        fn on_configure(&mut self, _size: usize) -> bool {
            // Log at Envoy's level for the wasm component: a debug line Envoy would drop is then
            // not even formatted (the hot path has some). Set again at every configuration.
            proxy_wasm::set_log_level(hostcalls::get_log_level().unwrap_or(LogLevel::Info));
            let bytes = match hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
            {
                Ok(bytes) => bytes.unwrap_or_default(),
                Err(status) => {
                    log::error!("plugin configuration not readable: {status:?}");
                    return false;
                }
            };
            self.plugin.borrow_mut().configure(&ProxyWasm, &bytes)
        }

        fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
            if self.plugin.borrow().is_idle() {
                return Some(Box::new(Idle));
            }
            let pages = core::arch::wasm32::memory_size(0);
            let request = self
                .plugin
                .borrow()
                .create_request(&ProxyWasm, context_id, pages)?;
            Some(Box::new(Filter {
                context_id,
                request,
                plugin: Rc::clone(&self.plugin),
            }))
        }

        fn get_type(&self) -> Option<ContextType> {
            Some(ContextType::HttpContext)
        }

        fn on_tick(&mut self) {
            self.plugin.borrow().on_tick(&ProxyWasm);
        }
    }

    /// A request of a plugin with nothing to do (`Plugin::is_idle`): every callback continues.
    struct Idle;

    impl Context for Idle {}

    impl HttpContext for Idle {}

    struct Filter {
        context_id: u32,
        request: Rc<RefCell<AuthzRequest>>,
        plugin: Rc<RefCell<Plugin>>,
    }

    impl Context for Filter {
        fn on_http_call_response(
            &mut self,
            token: u32,
            num_headers: usize,
            body_size: usize,
            _trailers: usize,
        ) {
            let response = check_answer(&ProxyWasm, num_headers, body_size);
            self.request
                .borrow_mut()
                .on_call_response(&ProxyWasm, token, response);
            self.plugin.borrow().park(self.context_id, &self.request);
        }

        fn on_grpc_call_response(&mut self, token: u32, status_code: u32, response_size: usize) {
            let response = grpc_answer(&ProxyWasm, status_code, response_size);
            self.request
                .borrow_mut()
                .on_call_response(&ProxyWasm, token, response);
            self.plugin.borrow().park(self.context_id, &self.request);
        }
    }

    impl HttpContext for Filter {
        fn on_http_request_headers(
            &mut self,
            _num_headers: usize,
            end_of_stream: bool,
        ) -> ProxyAction {
            #[cfg(feature = "panic-probe")]
            panic_probe();
            let action = self
                .request
                .borrow_mut()
                .on_request_headers(&ProxyWasm, end_of_stream);
            self.plugin.borrow().park(self.context_id, &self.request);
            to_proxy(action)
        }

        fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> ProxyAction {
            let action =
                self.request
                    .borrow_mut()
                    .on_request_body(&ProxyWasm, body_size, end_of_stream);
            to_proxy(action)
        }

        fn on_http_response_headers(
            &mut self,
            _num_headers: usize,
            _end_of_stream: bool,
        ) -> ProxyAction {
            to_proxy(self.request.borrow_mut().on_response_headers(&ProxyWasm))
        }
    }
}
