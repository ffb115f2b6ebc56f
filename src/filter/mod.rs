//! The proxy-facing shell: the root context (configuration, metrics) and the HTTP context that
//! hands each callback to `AuthzRequest`. Only this module and `host.rs` name `proxy_wasm`.

pub mod body_watch;
pub mod crypto;
pub mod http;
pub mod keys;
pub mod metrics;

/// Registers the root context; called once per VM from `main!`.
#[cfg(target_arch = "wasm32")]
pub fn start() {
    wasm::start();
}

#[cfg(target_arch = "wasm32")]
mod wasm {
    use std::cell::{Cell, RefCell};
    use std::rc::{Rc, Weak};
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use proxy_wasm::hostcalls;
    use proxy_wasm::traits::{Context, HttpContext, RootContext};
    #[cfg(feature = "panic-probe")]
    use proxy_wasm::types::MapType;
    use proxy_wasm::types::{Action as ProxyAction, BufferType, ContextType, LogLevel};

    use super::http::{Action, AuthzRequest, Shared, BODY_NEVER_DELIVERED};
    use super::metrics::{Metric, Metrics};
    use crate::config::{Config, SignatureBackendChoice};
    use crate::ext_authz::response::uses_body;
    use crate::ext_authz::CallResponse;
    use crate::host::{unix_seconds as seconds, Host, ProxyWasm};
    use crate::jwt::jwks::Jwks;
    use crate::jwt::KeySource;

    /// How often the root context looks at key refreshes and stuck bodies.
    const TICK: Duration = Duration::from_millis(200);
    /// A VM holding the fetch lease of a key set keeps it this long past the fetch timeout.
    const LEASE_MARGIN: Duration = Duration::from_secs(2);
    /// A JWKS larger than this is a failed fetch, left unread (real ones are a few KiB): a
    /// broken or hostile endpoint cannot make every VM hold megabytes it will never give back
    /// (wasm linear memory does not shrink).
    const MAX_JWKS_BYTES: usize = 1 << 20;

    pub fn start() {
        proxy_wasm::set_log_level(LogLevel::Trace);
        std::panic::set_hook(Box::new(|info| {
            let _ = hostcalls::log(
                LogLevel::Critical,
                &format!("inline-authz panicked, failing closed: {info}"),
            );
        }));
        proxy_wasm::set_root_context(|context_id| {
            let started = now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos();
            Box::new(Root {
                id: format!("{started}-{context_id}"),
                memory_pages: Cell::new(0),
                config: None,
                shared: None,
                wakeups: Rc::new(Wakeups::default()),
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

    /// The answer to the callout being delivered (`None`: no response, as on timeout or reset),
    /// its body read only when the decision uses it.
    fn check_answer(num_headers: usize, body_size: usize) -> Option<CallResponse> {
        (num_headers > 0).then(|| ProxyWasm.call_response(body_size, uses_body))
    }

    fn now() -> SystemTime {
        hostcalls::get_current_time().unwrap_or(UNIX_EPOCH)
    }

    /// A request parked with the root context (the HTTP context owns it).
    type Parked = Weak<RefCell<AuthzRequest>>;

    /// Requests the root context must drive: those waiting for keys, and those whose callout was
    /// dispatched while the root was the active context (its answer comes to the root).
    #[derive(Default)]
    struct Wakeups {
        waiting: RefCell<Vec<(u32, Parked)>>,
        forwarded: RefCell<Vec<(u32, u32, Parked)>>,
    }

    /// The plugin: one per configuration, shared by the requests through `Rc`.
    struct Root {
        /// Tells this VM's root context from the other workers' in shared-data leases.
        id: String,
        /// The VM's linear memory when last recorded, in 64 KiB pages.
        memory_pages: Cell<usize>,
        config: Option<Rc<Config>>,
        shared: Option<Rc<Shared>>,
        wakeups: Rc<Wakeups>,
    }

    impl Root {
        /// Shared-data key of a rule's fetched keys, for all workers: one per issuer, URI and
        /// cluster (two plugins fetching the same URI through different clusters stay apart).
        fn shared_key(config: &Config, rule: usize) -> String {
            let r = &config.jwt.rules[rule];
            match &r.keys {
                KeySource::Remote { uri, cluster, .. } => {
                    format!("inline-authz/jwks/{}|{uri}|{cluster}", r.issuer)
                }
                KeySource::Inline(_) => format!("inline-authz/jwks/{}", r.issuer),
            }
        }

        /// Adopts a fresher key set another worker fetched; true when it did.
        fn adopt_shared(
            &self,
            config: &Config,
            shared: &Shared,
            rule: usize,
            at: SystemTime,
        ) -> bool {
            let Ok((Some(bytes), _)) = hostcalls::get_shared_data(&Self::shared_key(config, rule))
            else {
                return false;
            };
            let text = String::from_utf8_lossy(&bytes);
            let Some((stamp, jwks)) = text.split_once('\n') else {
                return false;
            };
            let Ok(fetched_at) = stamp.parse::<u64>() else {
                return false;
            };
            if seconds(at).saturating_sub(fetched_at) >= config.jwt.refresh.as_secs()
                || !shared.keys.older_than(rule, fetched_at)
            {
                return false;
            }
            if jwks.is_empty() {
                // Another VM's fetch failed: a VM still waiting for its first keys takes that answer.
                if shared.keys.is_waiting_for_first(rule) {
                    shared
                        .keys
                        .fetched(rule, at, Err("fetch failed on another worker".into()));
                    return true;
                }
                return false;
            }
            match Jwks::parse(jwks) {
                Ok(keys) => {
                    shared.keys.fetched(
                        rule,
                        UNIX_EPOCH + Duration::from_secs(fetched_at),
                        Ok(keys),
                    );
                    true
                }
                Err(_) => false,
            }
        }

        /// Takes (or renews) the fetch lease of a key set: compare-and-swap on shared data, so
        /// one VM of the proxy fetches and the others adopt what it stored.
        fn take_lease(&self, config: &Config, rule: usize, at: SystemTime) -> bool {
            let key = format!("{}#lease", Self::shared_key(config, rule));
            let (current, cas) = hostcalls::get_shared_data(&key).unwrap_or((None, None));
            if let Some(value) = current {
                let text = String::from_utf8_lossy(&value).into_owned();
                let (until, owner) = text.split_once(' ').unwrap_or((&text, ""));
                let held = until.parse::<u64>().is_ok_and(|until| until > seconds(at));
                if held && owner != self.id {
                    return false;
                }
            }
            let timeout = match &config.jwt.rules[rule].keys {
                KeySource::Remote { timeout, .. } => *timeout,
                KeySource::Inline(_) => Duration::ZERO,
            };
            let lease = format!(
                "{} {}",
                seconds(at) + (timeout + LEASE_MARGIN).as_secs(),
                self.id
            );
            hostcalls::set_shared_data(&key, Some(lease.as_bytes()), cas).is_ok()
        }

        fn fetch_due_keys(&self) {
            let (Some(config), Some(shared)) = (self.config.clone(), self.shared.clone()) else {
                return;
            };
            let at = now();
            for rule in shared.keys.due(at) {
                if self.adopt_shared(&config, &shared, rule, at) {
                    log::info!(
                        "jwks for {:?} taken from another worker",
                        config.jwt.rules[rule].issuer
                    );
                    self.wake(rule);
                    continue;
                }
                let KeySource::Remote {
                    cluster,
                    authority,
                    path,
                    timeout,
                    ..
                } = &config.jwt.rules[rule].keys
                else {
                    continue;
                };
                if !shared.keys.forced(rule) && !self.take_lease(&config, rule, at) {
                    continue;
                }
                let headers = [
                    (":method", "GET"),
                    (":path", path.as_str()),
                    (":authority", authority.as_str()),
                    ("accept", "application/json"),
                ];
                match ProxyWasm.dispatch_http_call(cluster, &headers, None, *timeout) {
                    Ok(token) => shared.keys.started(rule, token),
                    Err(error) => {
                        log::warn!(
                            "jwks fetch for {:?} via cluster {cluster:?} not dispatched: {error}",
                            config.jwt.rules[rule].issuer
                        );
                        shared
                            .metrics
                            .increment(&ProxyWasm, Metric::JwksFetchFailed);
                        shared.keys.fetched(rule, at, Err(error));
                        self.publish_failure(&config, &shared, rule, at);
                        self.wake(rule);
                    }
                }
            }
        }

        /// Tells the other VMs that no keys could be had (only when this VM has none either, so
        /// a failed refresh never hides good keys).
        fn publish_failure(&self, config: &Config, shared: &Shared, rule: usize, at: SystemTime) {
            if shared.keys.has_no_keys(rule) {
                let value = format!("{}\n", seconds(at));
                let _ = hostcalls::set_shared_data(
                    &Self::shared_key(config, rule),
                    Some(value.as_bytes()),
                    None,
                );
            }
        }

        /// Lets the requests waiting for a rule's keys go on.
        fn wake(&self, rule: usize) {
            let waiting: Vec<(u32, Parked)> = {
                let mut all = self.wakeups.waiting.borrow_mut();
                let (now_ready, still): (Vec<_>, Vec<_>) = all.drain(..).partition(|(_, weak)| {
                    weak.upgrade()
                        .is_some_and(|r| r.borrow().waiting_for_keys() == Some(rule))
                });
                *all = still
                    .into_iter()
                    .filter(|(_, w)| w.strong_count() > 0)
                    .collect();
                now_ready
            };
            for (context_id, weak) in waiting {
                let Some(request) = weak.upgrade() else {
                    continue;
                };
                if hostcalls::set_effective_context(context_id).is_err() {
                    continue;
                }
                request.borrow_mut().on_keys_ready(&ProxyWasm);
                if let Some(token) = request.borrow().call_in_flight() {
                    self.wakeups
                        .forwarded
                        .borrow_mut()
                        .push((token, context_id, weak));
                }
                if request.borrow().waiting_for_keys().is_some() {
                    self.wakeups
                        .waiting
                        .borrow_mut()
                        .push((context_id, Rc::downgrade(&request)));
                }
            }
        }

        fn on_keys_answer(&self, rule: usize, num_headers: usize, body_size: usize) {
            let (Some(config), Some(shared)) = (self.config.clone(), self.shared.clone()) else {
                return;
            };
            let issuer = &config.jwt.rules[rule].issuer;
            let too_big = body_size > MAX_JWKS_BYTES;
            let readable = if too_big { 0 } else { body_size };
            let answer = (num_headers > 0)
                .then(|| ProxyWasm.call_response(readable, |status| status == Some(200)));
            let result = match &answer {
                None => Err("no response (timeout, reset or refused)".to_string()),
                Some(_) if too_big => Err(format!(
                    "{body_size} bytes, over the {MAX_JWKS_BYTES}-byte limit"
                )),
                Some(a) if a.status() != Some(200) => Err(format!("status {:?}", a.status())),
                Some(a) => Jwks::parse(&String::from_utf8_lossy(&a.body)),
            };
            let at = now();
            match &result {
                Ok(_) => {
                    log::info!("jwks for {issuer:?} fetched");
                    shared
                        .metrics
                        .increment(&ProxyWasm, Metric::JwksFetchSuccess);
                    if let Some(a) = &answer {
                        let value =
                            format!("{}\n{}", seconds(at), String::from_utf8_lossy(&a.body));
                        let _ = hostcalls::set_shared_data(
                            &Self::shared_key(&config, rule),
                            Some(value.as_bytes()),
                            None,
                        );
                    }
                }
                Err(why) => {
                    log::warn!(
                        "jwks fetch for {issuer:?} failed: {why}; keeping the last good keys"
                    );
                    shared
                        .metrics
                        .increment(&ProxyWasm, Metric::JwksFetchFailed);
                }
            }
            let failed = result.is_err();
            shared.keys.fetched(rule, at, result);
            if failed {
                self.publish_failure(&config, &shared, rule, at);
            }
            self.wake(rule);
        }
    }

    impl Context for Root {
        fn on_http_call_response(
            &mut self,
            token: u32,
            num_headers: usize,
            body_size: usize,
            _trailers: usize,
        ) {
            let Some(shared) = self.shared.clone() else {
                return;
            };
            if let Some(rule) = shared.keys.rule_of(token) {
                self.on_keys_answer(rule, num_headers, body_size);
                return;
            }
            let forwarded = {
                let mut all = self.wakeups.forwarded.borrow_mut();
                let position = all.iter().position(|(t, _, _)| *t == token);
                position.map(|i| all.remove(i))
            };
            if let Some((_, context_id, weak)) = forwarded {
                let response = check_answer(num_headers, body_size);
                if let (Some(request), Ok(())) =
                    (weak.upgrade(), hostcalls::set_effective_context(context_id))
                {
                    request
                        .borrow_mut()
                        .on_call_response(&ProxyWasm, token, response);
                }
            }
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
            let bytes = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
                .ok()
                .flatten()
                .unwrap_or_default();
            let config = match Config::parse(&bytes) {
                Ok(config) => config,
                Err(error) => {
                    log::error!("invalid configuration: {error}");
                    return false;
                }
            };
            log::info!(
                "inline-authz configured: {} JWT rule(s), {} provider(s), {} CUSTOM / {} DENY / {} ALLOW policies",
                config.jwt.rules.len(),
                config.providers.len(),
                config.policies.custom.len(),
                config.policies.deny.len(),
                config.policies.allow.len()
            );
            if config.needs.source_ip {
                log::warn!(
                    "ipBlocks / source.ip match Envoy's downstream remote address, the only one a \
                     wasm filter sees: unless this listener has use_remote_address: true, a \
                     client sets it with X-Forwarded-For (docs/security.md, source addresses)"
                );
            }
            let host_crypto = match config.signature_backend {
                SignatureBackendChoice::Rust => false,
                choice => {
                    let offered = super::crypto::host_offers_verify_signature(&ProxyWasm);
                    if !offered && choice == SignatureBackendChoice::Host {
                        log::error!("invalid configuration: signatureBackend: \"host\", but this Envoy offers no verify_signature");
                        return false;
                    }
                    offered
                }
            };
            log::info!(
                "RS*/ES* signatures checked by {}",
                if host_crypto {
                    "Envoy (verify_signature, BoringSSL)"
                } else {
                    "pure Rust"
                }
            );
            let metrics = Metrics::define(&ProxyWasm, &config.deny_policy_names());
            let shared = Rc::new(Shared::new(&config, metrics, host_crypto));
            let needs_tick = shared.keys.has_remote()
                || config.custom_provider().is_some_and(|p| p.body.is_some());
            if needs_tick {
                let _ = hostcalls::set_tick_period(TICK);
            }
            self.shared = Some(shared);
            self.config = Some(Rc::new(config));
            // Keys are fetched from the first tick, not here: Envoy also configures short-lived
            // VMs that never tick, whose fetch (and lease) would be lost.
            true
        }

        fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
            let config = self.config.clone()?;
            let shared = self.shared.clone()?;
            // Linear memory only grows: the gauge shows the VM's peak, and a leak as a rise
            // that does not stop (a soak watches it). One instruction, a hostcall only on growth.
            let pages = core::arch::wasm32::memory_size(0);
            if pages != self.memory_pages.get() {
                self.memory_pages.set(pages);
                shared
                    .metrics
                    .record(&ProxyWasm, Metric::VmMemoryBytes, pages as u64 * 65_536);
            }
            Some(Box::new(Filter {
                context_id,
                request: Rc::new(RefCell::new(AuthzRequest::new(config, shared, context_id))),
                wakeups: Rc::clone(&self.wakeups),
            }))
        }

        fn get_type(&self) -> Option<ContextType> {
            Some(ContextType::HttpContext)
        }

        fn on_tick(&mut self) {
            let Some(shared) = self.shared.clone() else {
                return;
            };
            for context_id in shared.body_watch.expired(now()) {
                log::error!("#{context_id} {BODY_NEVER_DELIVERED}");
                if hostcalls::set_effective_context(context_id).is_ok() {
                    let _ = hostcalls::send_http_response(500, vec![], None);
                }
            }
            self.fetch_due_keys();
        }
    }

    struct Filter {
        context_id: u32,
        request: Rc<RefCell<AuthzRequest>>,
        wakeups: Rc<Wakeups>,
    }

    impl Filter {
        fn register_if_waiting(&self) {
            if self.request.borrow().waiting_for_keys().is_some() {
                self.wakeups
                    .waiting
                    .borrow_mut()
                    .push((self.context_id, Rc::downgrade(&self.request)));
            }
        }
    }

    impl Context for Filter {
        fn on_http_call_response(
            &mut self,
            token: u32,
            num_headers: usize,
            body_size: usize,
            _trailers: usize,
        ) {
            let response = check_answer(num_headers, body_size);
            self.request
                .borrow_mut()
                .on_call_response(&ProxyWasm, token, response);
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
            self.register_if_waiting();
            to_proxy(action)
        }

        fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> ProxyAction {
            to_proxy(self.request.borrow_mut().on_request_body(
                &ProxyWasm,
                body_size,
                end_of_stream,
            ))
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
