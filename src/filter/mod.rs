//! The proxy-facing shell: the root context (configuration, metrics) and the HTTP context that
//! hands each callback to `AuthzRequest`. Only this module and `host.rs` name `proxy_wasm`.

pub mod body_watch;
pub mod http;
pub mod metrics;

/// Registers the root context; called once per VM from `main!`.
#[cfg(target_arch = "wasm32")]
pub fn start() {
    wasm::start();
}

#[cfg(target_arch = "wasm32")]
mod wasm {
    use std::rc::Rc;

    use proxy_wasm::traits::{Context, HttpContext, RootContext};
    use proxy_wasm::types::{Action as ProxyAction, BufferType, ContextType, LogLevel};

    use super::body_watch::{BodyWatch, LIMIT};
    use super::http::{Action, AuthzRequest, BODY_NEVER_DELIVERED};
    use super::metrics::Metrics;
    use crate::config::Config;
    use crate::host::ProxyWasm;

    pub fn start() {
        proxy_wasm::set_log_level(LogLevel::Trace);
        std::panic::set_hook(Box::new(|info| {
            let _ = proxy_wasm::hostcalls::log(
                LogLevel::Critical,
                &format!("inline-authz panicked, failing closed: {info}"),
            );
        }));
        proxy_wasm::set_root_context(|_| {
            Box::new(Root {
                config: None,
                metrics: Rc::new(Metrics::default()),
                body_watch: Rc::new(BodyWatch::default()),
            })
        });
    }

    fn to_proxy(action: Action) -> ProxyAction {
        match action {
            Action::Continue => ProxyAction::Continue,
            Action::Pause => ProxyAction::Pause,
        }
    }

    /// The plugin: one per configuration, shared by the requests through `Rc`.
    struct Root {
        config: Option<Rc<Config>>,
        metrics: Rc<Metrics>,
        body_watch: Rc<BodyWatch>,
    }

    impl Context for Root {}

    impl RootContext for Root {
        fn on_vm_start(&mut self, _size: usize) -> bool {
            log::info!("inline-authz {} starting", env!("CARGO_PKG_VERSION"));
            true
        }

        fn on_configure(&mut self, _size: usize) -> bool {
            let bytes =
                proxy_wasm::hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
                    .ok()
                    .flatten()
                    .unwrap_or_default();
            match Config::parse(&bytes) {
                Ok(config) => {
                    log::info!(
                        "inline-authz configured: {} provider(s), {} CUSTOM / {} DENY / {} ALLOW policies",
                        config.providers.len(),
                        config.policies.custom.len(),
                        config.policies.deny.len(),
                        config.policies.allow.len()
                    );
                    self.metrics = Rc::new(Metrics::define(&ProxyWasm));
                    if config.custom_provider().is_some_and(|p| p.body.is_some()) {
                        let _ = proxy_wasm::hostcalls::set_tick_period(LIMIT / 5);
                    }
                    self.config = Some(Rc::new(config));
                    true
                }
                Err(error) => {
                    log::error!("invalid configuration: {error}");
                    false
                }
            }
        }

        fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
            let config = self.config.clone()?;
            Some(Box::new(Filter {
                request: AuthzRequest::new(
                    config,
                    Rc::clone(&self.metrics),
                    Rc::clone(&self.body_watch),
                    context_id,
                ),
            }))
        }

        fn on_tick(&mut self) {
            let now = proxy_wasm::hostcalls::get_current_time().unwrap_or(std::time::UNIX_EPOCH);
            for context_id in self.body_watch.expired(now) {
                log::error!("#{context_id} {BODY_NEVER_DELIVERED}");
                if proxy_wasm::hostcalls::set_effective_context(context_id).is_ok() {
                    let _ = proxy_wasm::hostcalls::send_http_response(500, vec![], None);
                }
            }
        }

        fn get_type(&self) -> Option<ContextType> {
            Some(ContextType::HttpContext)
        }
    }

    struct Filter {
        request: AuthzRequest,
    }

    impl Context for Filter {
        fn on_http_call_response(
            &mut self,
            token: u32,
            num_headers: usize,
            body_size: usize,
            _trailers: usize,
        ) {
            self.request
                .on_call_response(&ProxyWasm, token, num_headers, body_size);
        }
    }

    impl HttpContext for Filter {
        fn on_http_request_headers(
            &mut self,
            _num_headers: usize,
            end_of_stream: bool,
        ) -> ProxyAction {
            to_proxy(self.request.on_request_headers(&ProxyWasm, end_of_stream))
        }

        fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> ProxyAction {
            to_proxy(
                self.request
                    .on_request_body(&ProxyWasm, body_size, end_of_stream),
            )
        }

        fn on_http_response_headers(
            &mut self,
            _num_headers: usize,
            _end_of_stream: bool,
        ) -> ProxyAction {
            to_proxy(self.request.on_response_headers(&ProxyWasm))
        }
    }
}
