//! The plugin (the root context's work, behind `Host`): the configuration, the remote keys'
//! life — fetched by one VM of the proxy under a shared-data lease, adopted by the others,
//! refreshed on the interval, the last good keys kept — and the requests parked with it: those
//! waiting for keys, those waiting for a body the host may never deliver, and those whose callout
//! answer comes to the root. The wasm root context in `mod.rs` only hands callbacks here.

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::crypto::host_offers_verify_signature;
use super::http::{AuthzRequest, CallAnswer, Shared};
use super::keys::Fetch;
use super::metrics::{Metric, Metrics};
use crate::config::uri::Uri;
use crate::config::{Config, SignatureBackendChoice};
use crate::ext_authz::grpc::CallOutcome;
use crate::ext_authz::response::uses_body;
use crate::host::{unix_seconds as seconds, Host, HostResult};
use crate::jwt::jwks::Jwks;
use crate::jwt::sharing::{keys_key, lease_key, Lease, SharedKeys};
use crate::jwt::{JwtRule, KeySource};

/// How often the root context looks at key refreshes and stuck bodies.
pub const TICK: Duration = Duration::from_millis(200);
/// A VM holding the fetch lease of a key set keeps it this long past the fetch timeout.
const LEASE_MARGIN: Duration = Duration::from_secs(2);
/// A JWKS larger than this is a failed fetch, left unread (real ones are a few KiB): a broken or
/// hostile endpoint cannot make every VM hold megabytes it will never give back (wasm linear
/// memory does not shrink).
pub const MAX_JWKS_BYTES: usize = 1 << 20;

/// A request as the plugin holds it: the HTTP context owns it.
pub type Parked = Weak<RefCell<AuthzRequest>>;

/// The requests the plugin must drive later.
#[derive(Default)]
struct Wakeups {
    /// Waiting for keys or for a body: `(context id, request)`.
    parked: RefCell<Vec<(u32, Parked)>>,
    /// Callouts dispatched while the root was the effective context: `(token, context id,
    /// request)` (their answer comes to the root).
    forwarded: RefCell<Vec<(u32, u32, Parked)>>,
}

/// The root context's life (wasm-oidc-plugin's `Uninitialized | Ready`).
enum Life {
    Unconfigured,
    Ready {
        config: Rc<Config>,
        shared: Rc<Shared>,
    },
}

/// One plugin configuration in one VM.
pub struct Plugin {
    /// Tells this VM's root context from the other workers' in shared-data leases.
    id: String,
    /// The VM's linear memory when last recorded, in 64 KiB pages.
    memory_pages: Cell<usize>,
    life: Life,
    wakeups: Wakeups,
}

impl Plugin {
    /// An unconfigured plugin; `id` names this VM in shared-data fetch leases.
    pub fn new(id: String) -> Plugin {
        Plugin {
            id,
            memory_pages: Cell::new(0),
            life: Life::Unconfigured,
            wakeups: Wakeups::default(),
        }
    }

    /// `on_configure`: false (Envoy refuses the plugin) for a configuration that is invalid or
    /// asks for what this host lacks, with one log line saying why.
    pub fn configure(&mut self, host: &dyn Host, bytes: &[u8]) -> bool {
        // What the configuration in force counted goes out before it may be replaced.
        self.on_done(host);
        let config = match Config::parse(bytes) {
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
                let offered = host_offers_verify_signature(host);
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
        let providers: Vec<&str> = config.providers.iter().map(|p| p.name.as_str()).collect();
        let metrics = Metrics::define(host, &config.deny_policy_names(), &providers);
        let shared = Rc::new(Shared::new(&config, metrics, host_crypto));
        // The tick keeps the requests' clock and flushes their counts; remote keys and body
        // checks need it too. An idle plugin needs none of that.
        if !config.is_idle() {
            if let Err(error) = host.set_tick_period(TICK) {
                log::error!(
                    "{error}: the clock, counters, remote keys and body checks need the tick"
                );
                return false;
            }
        }
        self.life = Life::Ready {
            config: Rc::new(config),
            shared,
        };
        // Keys are fetched from the first tick, not here: Envoy also configures short-lived
        // VMs that never tick, whose fetch (and lease) would be lost.
        true
    }

    /// Whether the configuration asks nothing of any request (`Config::is_idle`): its requests
    /// then get a context that continues them untouched, and no `AuthzRequest` at all.
    pub fn is_idle(&self) -> bool {
        matches!(&self.life, Life::Ready { config, .. } if config.is_idle())
    }

    /// A new request, or `None` before a configuration was accepted. `memory_pages` is the VM's
    /// linear memory now: it only grows, so the gauge shows the VM's peak, and a leak as a rise
    /// that does not stop (one hostcall, only on growth).
    pub fn create_request(
        &self,
        host: &dyn Host,
        context_id: u32,
        memory_pages: usize,
    ) -> Option<Rc<RefCell<AuthzRequest>>> {
        let Life::Ready { config, shared } = &self.life else {
            return None;
        };
        if memory_pages != self.memory_pages.get() {
            self.memory_pages.set(memory_pages);
            shared
                .metrics
                .record(host, Metric::VmMemoryBytes, memory_pages as u64 * 65_536);
        }
        Some(Rc::new(RefCell::new(AuthzRequest::new(
            Rc::clone(config),
            Rc::clone(shared),
            context_id,
        ))))
    }

    /// After a request's callback: a request now waiting for keys or for its body is parked.
    pub fn park(&self, context_id: u32, request: &Rc<RefCell<AuthzRequest>>) {
        let waiting = {
            let r = request.borrow();
            r.waiting_for_keys().is_some() || r.waiting_for_body()
        };
        let mut parked = self.wakeups.parked.borrow_mut();
        if waiting && !parked.iter().any(|(id, _)| *id == context_id) {
            parked.push((context_id, Rc::downgrade(request)));
        }
    }

    /// The VM is going away (a new configuration, or Envoy stopping): the counts not yet
    /// flushed go to the host.
    pub fn on_done(&self, host: &dyn Host) {
        if let Life::Ready { shared, .. } = &self.life {
            shared.metrics.flush(host);
        }
    }

    /// The tick: takes the time requests use until the next one, fails the requests whose body
    /// never came, fetches the keys that are due, then flushes the requests' counts.
    pub fn on_tick(&self, host: &dyn Host) {
        let Life::Ready { config, shared } = &self.life else {
            return;
        };
        let now = match host.now() {
            Ok(now) => now,
            Err(error) => {
                log::error!("{error}: tick skipped");
                return;
            }
        };
        shared.set_clock(now);
        for context_id in shared.body_watch.expired(now) {
            self.drive(host, context_id, |request| {
                request.on_body_never_delivered(host)
            });
        }
        self.fetch_due_keys(host, config, shared, now);
        shared.metrics.flush(host);
    }

    /// A callout answer delivered to the root: a JWKS fetch, or a check request dispatched
    /// while the root was the effective context.
    pub fn on_http_call_response(
        &self,
        host: &dyn Host,
        token: u32,
        num_headers: usize,
        body_size: usize,
    ) {
        let Life::Ready { config, shared } = &self.life else {
            return;
        };
        match shared.keys.rule_of(token) {
            Some((rule, Fetch::Keys)) => {
                self.on_keys_answer(host, config, shared, rule, num_headers, body_size);
                return;
            }
            Some((rule, Fetch::Discovery)) => {
                self.on_discovery_answer(host, config, shared, rule, num_headers, body_size);
                return;
            }
            None => {}
        }
        let response = check_answer(host, num_headers, body_size);
        self.deliver_forwarded(host, token, response);
    }

    /// A gRPC answer delivered to the root: a check dispatched while the root was the effective
    /// context.
    pub fn on_grpc_call_response(&self, host: &dyn Host, token: u32, status: u32, size: usize) {
        let response = grpc_answer(host, status, size);
        self.deliver_forwarded(host, token, response);
    }

    /// Hands a callout answer to the request whose check the root dispatched.
    fn deliver_forwarded(&self, host: &dyn Host, token: u32, response: HostResult<CallAnswer>) {
        let forwarded = {
            let mut all = self.wakeups.forwarded.borrow_mut();
            let position = all.iter().position(|(t, _, _)| *t == token);
            position.map(|i| all.remove(i))
        };
        let Some((_, context_id, weak)) = forwarded else {
            return;
        };
        let Some(request) = weak.upgrade() else {
            return;
        };
        match host.set_effective_context(context_id) {
            Ok(()) => request.borrow_mut().on_call_response(host, token, response),
            Err(error) => log::warn!("#{context_id} {error}: callout answer dropped"),
        }
    }

    /// Runs `step` on the parked request `context_id` as the effective context, then keeps it
    /// parked if it still waits, and notes a callout it dispatched (its answer comes here).
    fn drive(&self, host: &dyn Host, context_id: u32, step: impl FnOnce(&mut AuthzRequest)) {
        let found = {
            let mut parked = self.wakeups.parked.borrow_mut();
            parked.retain(|(_, weak)| weak.strong_count() > 0);
            let position = parked.iter().position(|(id, _)| *id == context_id);
            position.map(|i| parked.remove(i))
        };
        let Some((_, weak)) = found else {
            return;
        };
        let Some(request) = weak.upgrade() else {
            return;
        };
        if let Err(error) = host.set_effective_context(context_id) {
            log::warn!("#{context_id} {error}: request left to Envoy's timeouts");
            return;
        }
        step(&mut request.borrow_mut());
        if let Some(token) = request.borrow().call_in_flight() {
            self.wakeups
                .forwarded
                .borrow_mut()
                .push((token, context_id, weak));
        }
        self.park(context_id, &request);
    }

    /// Lets the requests waiting for a rule's keys go on.
    fn wake(&self, host: &dyn Host, rule: usize) {
        let ready: Vec<u32> = self
            .wakeups
            .parked
            .borrow()
            .iter()
            .filter(|(_, weak)| {
                weak.upgrade()
                    .is_some_and(|r| r.borrow().waiting_for_keys() == Some(rule))
            })
            .map(|(id, _)| *id)
            .collect();
        for context_id in ready {
            self.drive(host, context_id, |request| request.on_keys_ready(host));
        }
    }

    fn fetch_due_keys(&self, host: &dyn Host, config: &Config, shared: &Shared, now: SystemTime) {
        for rule in shared.keys.due(now) {
            let Some(jwt_rule) = config.jwt.rules.get(rule) else {
                continue;
            };
            if self.adopt_shared(host, config, shared, rule, jwt_rule, now) {
                log::info!("jwks for {:?} taken from another worker", jwt_rule.issuer);
                self.wake(host, rule);
                continue;
            }
            // With discovery, every refresh reads the discovery document first: a changed
            // `jwks_uri` is followed.
            let (target, fetch) = match &jwt_rule.keys {
                KeySource::Inline(_) => continue,
                KeySource::Remote {
                    cluster,
                    authority,
                    path,
                    timeout,
                    ..
                } => (Target::new(cluster, authority, path, *timeout), Fetch::Keys),
                KeySource::Discovery {
                    cluster,
                    authority,
                    path,
                    timeout,
                    ..
                } => (
                    Target::new(cluster, authority, path, *timeout),
                    Fetch::Discovery,
                ),
            };
            if !shared.keys.forced(rule) && !self.take_lease(host, jwt_rule, now, target.timeout) {
                continue;
            }
            self.dispatch_fetch(host, shared, rule, jwt_rule, &target, fetch, now);
        }
    }

    /// Sends one fetch of a rule's keys (or of its discovery document); a fetch that cannot be
    /// sent (no such cluster) is a failed fetch.
    #[allow(clippy::too_many_arguments)]
    fn dispatch_fetch(
        &self,
        host: &dyn Host,
        shared: &Shared,
        rule: usize,
        jwt_rule: &JwtRule,
        target: &Target,
        fetch: Fetch,
        now: SystemTime,
    ) {
        let headers = [
            (":method", "GET"),
            (":path", target.path.as_str()),
            (":authority", target.authority.as_str()),
            ("accept", "application/json"),
        ];
        match host.dispatch_http_call(&target.cluster, &headers, None, target.timeout) {
            Ok(token) => shared.keys.started(rule, token, fetch),
            Err(error) => {
                let what = match fetch {
                    Fetch::Keys => "jwks fetch",
                    Fetch::Discovery => "jwks discovery",
                };
                log::warn!(
                    "{what} for {:?} via cluster {:?} not dispatched (no cluster of that name?): {}",
                    jwt_rule.issuer,
                    target.cluster,
                    error.status
                );
                self.fetch_failed(host, shared, rule, jwt_rule, now, error.status);
            }
        }
    }

    /// The issuer's discovery document: its `jwks_uri` (https only) is fetched next, through the
    /// rule's `jwksCluster` or Istio's cluster for that host.
    fn on_discovery_answer(
        &self,
        host: &dyn Host,
        config: &Config,
        shared: &Shared,
        rule: usize,
        num_headers: usize,
        body_size: usize,
    ) {
        let Some(jwt_rule) = config.jwt.rules.get(rule) else {
            return;
        };
        let KeySource::Discovery {
            timeout,
            jwks_cluster,
            ..
        } = &jwt_rule.keys
        else {
            return;
        };
        let target = discovered(host, num_headers, body_size).and_then(|uri| {
            let url = Uri::parse(&uri).map_err(|m| format!("jwks_uri {uri:?} {m}"))?;
            if url.scheme != "https" {
                return Err(format!("jwks_uri {uri:?} is not https"));
            }
            let cluster = jwks_cluster.clone().unwrap_or_else(|| url.cluster());
            log::info!(
                "jwks discovery for {:?}: keys at {uri:?} via cluster {cluster:?}",
                jwt_rule.issuer
            );
            Ok(Target::new(&cluster, url.authority, url.path, *timeout))
        });
        let Some(now) =
            self.clock_or_drop(host, shared, rule, format_args!("jwks discovery answer"))
        else {
            return;
        };
        match target {
            Ok(target) => {
                self.dispatch_fetch(host, shared, rule, jwt_rule, &target, Fetch::Keys, now)
            }
            Err(why) => {
                log::warn!(
                    "jwks discovery for {:?} failed: {why}; keeping the last good keys",
                    jwt_rule.issuer
                );
                self.fetch_failed(host, shared, rule, jwt_rule, now, why);
            }
        }
    }

    /// A fetch (or discovery) that came to nothing: counted, the last good keys kept, the other
    /// VMs told when no VM has keys, and the waiting requests let go on.
    fn fetch_failed(
        &self,
        host: &dyn Host,
        shared: &Shared,
        rule: usize,
        jwt_rule: &JwtRule,
        now: SystemTime,
        why: String,
    ) {
        shared.metrics.increment_now(host, Metric::JwksFetchFailed);
        shared.keys.fetched(rule, now, Err(why));
        self.publish_failure(host, shared, rule, jwt_rule, now);
        self.wake(host, rule);
    }

    /// Adopts a fresher key set another worker fetched; true when it did.
    fn adopt_shared(
        &self,
        host: &dyn Host,
        config: &Config,
        shared: &Shared,
        rule: usize,
        jwt_rule: &JwtRule,
        now: SystemTime,
    ) -> bool {
        let Ok((Some(bytes), _)) = host.shared_data(&keys_key(jwt_rule)) else {
            return false;
        };
        let Some(record) = SharedKeys::decode(&bytes) else {
            return false;
        };
        if !record.is_fresh(seconds(now), config.jwt.refresh.as_secs())
            || !shared.keys.older_than(rule, record.fetched_at)
        {
            return false;
        }
        let Some(jwks) = record.jwks else {
            // Another VM's fetch failed: a VM still waiting for its first keys takes that answer.
            if shared.keys.is_waiting_for_first(rule) {
                shared
                    .keys
                    .fetched(rule, now, Err("fetch failed on another worker".into()));
                return true;
            }
            return false;
        };
        match Jwks::parse(&jwks) {
            Ok(keys) => {
                let fetched_at = UNIX_EPOCH + Duration::from_secs(record.fetched_at);
                shared.keys.fetched(rule, fetched_at, Ok(keys));
                true
            }
            Err(_) => false,
        }
    }

    /// Takes (or renews) the fetch lease of a key set: compare-and-swap on shared data, so one
    /// VM of the proxy fetches and the others adopt what it stored.
    fn take_lease(
        &self,
        host: &dyn Host,
        jwt_rule: &JwtRule,
        now: SystemTime,
        timeout: Duration,
    ) -> bool {
        let key = lease_key(jwt_rule);
        let (current, cas) = host.shared_data(&key).unwrap_or((None, None));
        let held = current
            .as_deref()
            .and_then(Lease::decode)
            .is_some_and(|lease| lease.bars(&self.id, seconds(now)));
        if held {
            return false;
        }
        let lease = Lease {
            until: seconds(now) + (timeout + LEASE_MARGIN).as_secs(),
            owner: self.id.clone(),
        };
        host.set_shared_data(&key, &lease.encode(), cas).is_ok()
    }

    /// Tells the other VMs that no keys could be had (only when this VM has none either, so a
    /// failed refresh never hides good keys).
    fn publish_failure(
        &self,
        host: &dyn Host,
        shared: &Shared,
        rule: usize,
        jwt_rule: &JwtRule,
        now: SystemTime,
    ) {
        if shared.keys.has_no_keys(rule) {
            let record = SharedKeys {
                fetched_at: seconds(now),
                jwks: None,
            };
            let _ = host.set_shared_data(&keys_key(jwt_rule), &record.encode(), None);
        }
    }

    fn on_keys_answer(
        &self,
        host: &dyn Host,
        config: &Config,
        shared: &Shared,
        rule: usize,
        num_headers: usize,
        body_size: usize,
    ) {
        let Some(jwt_rule) = config.jwt.rules.get(rule) else {
            return;
        };
        let issuer = &jwt_rule.issuer;
        let too_big = body_size > MAX_JWKS_BYTES;
        let readable = if too_big { 0 } else { body_size };
        let answer = if num_headers > 0 {
            host.call_response(readable, |status| status == Some(200))
                .map(Some)
        } else {
            Ok(None)
        };
        let result = match &answer {
            Err(error) => Err(error.to_string()),
            Ok(None) => Err("no response (timeout, reset or refused)".to_string()),
            Ok(Some(_)) if too_big => Err(format!(
                "{body_size} bytes, over the {MAX_JWKS_BYTES}-byte limit"
            )),
            Ok(Some(a)) if a.status() != Some(200) => Err(format!("status {:?}", a.status())),
            // The key set, and its text for the other VMs.
            Ok(Some(a)) => {
                let text = String::from_utf8_lossy(&a.body).into_owned();
                Jwks::parse(&text).map(|jwks| (jwks, text))
            }
        };
        let what = format_args!("jwks answer for {issuer:?}");
        let Some(now) = self.clock_or_drop(host, shared, rule, what) else {
            return;
        };
        match result {
            Ok((jwks, text)) => {
                log::info!("jwks for {issuer:?} fetched");
                shared.metrics.increment_now(host, Metric::JwksFetchSuccess);
                let record = SharedKeys {
                    fetched_at: seconds(now),
                    jwks: Some(text),
                };
                let _ = host.set_shared_data(&keys_key(jwt_rule), &record.encode(), None);
                shared.keys.fetched(rule, now, Ok(jwks));
                self.wake(host, rule);
            }
            Err(why) => {
                log::warn!("jwks fetch for {issuer:?} failed: {why}; keeping the last good keys");
                self.fetch_failed(host, shared, rule, jwt_rule, now, why);
            }
        }
    }

    /// The host's clock for a key answer, or `None` when it cannot be read: the answer is then
    /// dropped as a failed fetch at the epoch (due again at once), and the waiting requests go on.
    fn clock_or_drop(
        &self,
        host: &dyn Host,
        shared: &Shared,
        rule: usize,
        what: std::fmt::Arguments,
    ) -> Option<SystemTime> {
        match host.now() {
            Ok(now) => Some(now),
            Err(error) => {
                log::error!("{error}: {what} dropped");
                shared
                    .keys
                    .fetched(rule, UNIX_EPOCH, Err(error.to_string()));
                self.wake(host, rule);
                None
            }
        }
    }
}

/// Where a fetch goes.
struct Target {
    cluster: String,
    authority: String,
    path: String,
    timeout: Duration,
}

impl Target {
    fn new(cluster: &str, authority: &str, path: &str, timeout: Duration) -> Target {
        Target {
            cluster: cluster.to_string(),
            authority: authority.to_string(),
            path: path.to_string(),
            timeout,
        }
    }
}

/// The `jwks_uri` of the discovery document being delivered, or why there is none.
fn discovered(host: &dyn Host, num_headers: usize, body_size: usize) -> Result<String, String> {
    if num_headers == 0 {
        return Err("no response (timeout, reset or refused)".into());
    }
    if body_size > MAX_JWKS_BYTES {
        return Err(format!(
            "{body_size} bytes, over the {MAX_JWKS_BYTES}-byte limit"
        ));
    }
    let answer = host
        .call_response(body_size, |status| status == Some(200))
        .map_err(|e| e.to_string())?;
    if answer.status() != Some(200) {
        return Err(format!("status {:?}", answer.status()));
    }
    let document: serde_json::Value = serde_json::from_slice(&answer.body)
        .map_err(|_| "the discovery document is not JSON".to_string())?;
    document
        .get("jwks_uri")
        .and_then(serde_json::Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| "the discovery document has no jwks_uri".to_string())
}

/// The HTTP answer to the callout being delivered (`None`: no response, as on timeout or
/// reset), its body read only when the decision uses it.
pub fn check_answer(
    host: &dyn Host,
    num_headers: usize,
    body_size: usize,
) -> HostResult<CallAnswer> {
    if num_headers == 0 {
        return Ok(CallAnswer::Http(None));
    }
    host.call_response(body_size, uses_body)
        .map(|r| CallAnswer::Http(Some(r)))
}

/// The gRPC answer being delivered: its message when the call's status is OK.
pub fn grpc_answer(host: &dyn Host, status: u32, size: usize) -> HostResult<CallAnswer> {
    if status != 0 {
        return Ok(CallAnswer::Grpc(CallOutcome::Failed(status)));
    }
    let message = if size == 0 {
        Vec::new()
    } else {
        host.grpc_response(size)?
    };
    Ok(CallAnswer::Grpc(CallOutcome::Message(message)))
}

#[cfg(test)]
mod tests;
