//! The per-request state machine (Envoy ext_authz's `State {NotStarted, Calling, Complete}`):
//! gather attributes once, run CUSTOM (callout), then DENY and ALLOW, then resume or reply.
//! Every request ends exactly once: it continues, is resumed, or gets one local reply.

use std::net::IpAddr;
use std::rc::Rc;
use std::time::SystemTime;

use crate::config::Config;
use crate::ext_authz::{
    self, build_check_request, interpret, CallResponse, CheckResponse, Provider, RequestBody,
    TemplateSource,
};
use crate::headers::{self, first as find, HeaderMutation};
use crate::host::{unix_seconds, Host};
use crate::policy::path::{is_refused, normalize, PathNormalization};
use crate::policy::{decide, Decision, Refusal, RequestAttributes, Stage, Verdict};

use super::body_watch::{BodyDelivery, BodyWatch};
use super::crypto::HostCrypto;
use super::keys::KeyCache;
use super::metrics::{Metric, Metrics};
use crate::ext_authz::cache::DecisionCache;
use crate::jwt::cache::TokenCache;
use crate::jwt::status::JwtStatus;
use crate::jwt::verify::{PureRust, SignatureBackend};
use crate::jwt::Verifier;
use crate::jwt::{www_authenticate, Outcome};

/// What all requests of one plugin share (owned by the root context).
#[derive(Debug)]
pub struct Shared {
    pub metrics: Metrics,
    pub body_watch: BodyWatch,
    pub keys: KeyCache,
    pub tokens: TokenCache,
    pub decisions: DecisionCache,
    /// RS*/ES* signatures go to the host's `verify_signature` (probed once at start).
    pub host_crypto: bool,
}

impl Shared {
    /// Everything a plugin shares, sized by its configuration.
    pub fn new(config: &Config, metrics: Metrics, host_crypto: bool) -> Shared {
        Shared {
            metrics,
            body_watch: BodyWatch::default(),
            keys: KeyCache::new(&config.jwt),
            tokens: TokenCache::new(config.jwt_cache_size),
            decisions: DecisionCache::new(config.decision_cache_size),
            host_crypto,
        }
    }
}

/// Envoy's reply body when RBAC denies (`RBAC: access denied`).
pub const RBAC_DENIED_BODY: &str = "RBAC: access denied";
/// Envoy's reply body when a buffered request body is over the limit.
pub const PAYLOAD_TOO_LARGE_BODY: &str = "Payload Too Large";

/// What the proxy should do with the stream after a callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Continue,
    Pause,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    NotStarted,
    /// Waiting for the remote keys of this JWT rule.
    WaitingForKeys {
        rule: usize,
    },
    /// Waiting for the request body the check request carries.
    Buffering,
    /// Check request sent; the token matches its answer to this request.
    Calling {
        token: u32,
    },
    /// Allowed and forwarded.
    Allowed,
    /// A local reply was sent.
    Replied,
}

/// Whether the request goes on now, or waits (callout in flight, or answered locally).
enum Verdict2 {
    Proceed,
    Hold,
}

fn action(verdict: Verdict2) -> Action {
    match verdict {
        Verdict2::Proceed => Action::Continue,
        Verdict2::Hold => Action::Pause,
    }
}

/// One HTTP request going through the filter.
pub struct AuthzRequest {
    config: Rc<Config>,
    shared: Rc<Shared>,
    context_id: u32,
    state: State,
    /// The headers arrived with the end of the stream (no body).
    headers_only: bool,
    /// Body seen while waiting for keys: (bytes buffered, complete).
    early_body: Option<(usize, bool)>,
    /// The CUSTOM policy that applies is a dry run: call, count, never enforce.
    custom_dry_run: bool,
    /// Decision-cache key of the check request in flight.
    cache_key: Option<Vec<u8>>,
    attributes: RequestAttributes,
    /// Normalized path with the original query: what policies saw and the check request carries.
    request_path: String,
    call_started: Option<SystemTime>,
    downstream_on_allow: Vec<(String, String)>,
}

impl AuthzRequest {
    pub fn new(config: Rc<Config>, shared: Rc<Shared>, context_id: u32) -> AuthzRequest {
        AuthzRequest {
            config,
            shared,
            context_id,
            state: State::NotStarted,
            headers_only: false,
            early_body: None,
            custom_dry_run: false,
            cache_key: None,
            attributes: RequestAttributes::default(),
            request_path: String::new(),
            call_started: None,
            downstream_on_allow: Vec::new(),
        }
    }

    pub fn on_request_headers(&mut self, host: &dyn Host, end_of_stream: bool) -> Action {
        if self.state != State::NotStarted {
            return Action::Continue;
        }
        self.headers_only = end_of_stream;
        if !self.read_request(host) {
            // As Envoy's own normalize_path: 400, empty body, before any policy.
            log::info!(
                "#{} denied: invalid request (escaped NUL in the path, or more than one host)",
                self.context_id
            );
            return action(self.reply(host, Denial::InvalidRequest, 400, &[], b""));
        }
        self.sanitize(host);
        action(self.evaluate(host))
    }

    /// The JWT rule whose remote keys this request waits for.
    pub fn waiting_for_keys(&self) -> Option<usize> {
        match self.state {
            State::WaitingForKeys { rule } => Some(rule),
            _ => None,
        }
    }

    /// The callout in flight, if any (its answer must come back to this request).
    pub fn call_in_flight(&self) -> Option<u32> {
        match self.state {
            State::Calling { token } => Some(token),
            _ => None,
        }
    }

    /// The keys this request waited for arrived (or their fetch failed): authenticate again and
    /// go on; the request was paused, so it is resumed when it may proceed.
    pub fn on_keys_ready(&mut self, host: &dyn Host) {
        if self.waiting_for_keys().is_none() {
            return;
        }
        self.state = State::NotStarted;
        if let Verdict2::Proceed = self.evaluate(host) {
            host.resume_request();
        }
    }

    /// Removes the headers the filter writes from verified tokens, on every request.
    fn sanitize(&mut self, host: &dyn Host) {
        let config = Rc::clone(&self.config);
        self.apply_to_request(host, config.jwt.sanitize());
    }

    /// Authentication, then CUSTOM, then DENY / ALLOW.
    fn evaluate(&mut self, host: &dyn Host) -> Verdict2 {
        if let Some(verdict) = self.authenticate(host) {
            return verdict;
        }
        let config = Rc::clone(&self.config);
        let check = match decide(&config.policies, &self.attributes, Stage::Authenticated) {
            Decision::Ask(checks) => checks.first().copied(),
            Decision::Local(_) => None,
        };
        let Some(check) = check else {
            return self.decide_locally(host);
        };
        self.custom_dry_run = check.dry_run;
        let Some(provider) = config.providers.get(check.provider) else {
            log::error!("#{} CUSTOM policy without a provider", self.context_id);
            return self.reply_internal_error(host);
        };
        if let Some(body) = provider.body {
            let complete = self.headers_only || self.early_body.is_some_and(|(_, end)| end);
            if !complete {
                let declared = self
                    .header("content-length")
                    .and_then(|v| v.trim().parse::<u64>().ok());
                if !body.allow_partial_message
                    && declared.is_some_and(|len| len > u64::from(body.max_request_bytes))
                {
                    return self.reply_too_large(host);
                }
                if self.early_body.is_none() {
                    if self.shared.body_watch.delivery() == BodyDelivery::Never {
                        log::error!("#{} {BODY_NEVER_DELIVERED}", self.context_id);
                        return self.reply_internal_error(host);
                    }
                    log::debug!("#{} waiting for the request body", self.context_id);
                    self.shared.body_watch.waiting(self.context_id, host.now());
                }
                self.state = State::Buffering;
                return Verdict2::Hold;
            }
            if let Some((size, _)) = self.early_body {
                return self.check_with_body(host, provider, size);
            }
        }
        self.check(host, provider, None)
    }

    /// Verifies tokens; `Some` when the request was answered or must wait for keys.
    fn authenticate(&mut self, host: &dyn Host) -> Option<Verdict2> {
        let jwt = &self.config.jwt;
        if jwt.is_empty() {
            return None;
        }
        let now = host.now();
        self.shared.keys.set_now(now);
        let host_crypto = HostCrypto { host };
        let backend: &dyn SignatureBackend = if self.shared.host_crypto {
            &host_crypto
        } else {
            &PureRust
        };
        let cache = (self.shared.tokens.capacity() > 0).then_some(&self.shared.tokens);
        let verifier = Verifier {
            keys: &self.shared.keys,
            backend,
            cache,
            now: unix_seconds(now),
        };
        match jwt.authenticate(&verifier, &self.attributes.headers) {
            Outcome::NoToken => None,
            Outcome::Verified { auth, mutations } => {
                self.shared.metrics.increment(host, Metric::JwtAllowed);
                self.apply_to_request(host, &mutations);
                self.attributes.auth = Some(auth);
                None
            }
            Outcome::Failed(status) => {
                self.shared.metrics.increment(host, Metric::JwtDenied);
                log::info!("#{} denied: {}", self.context_id, status.message());
                Some(self.reply_jwt(host, status))
            }
            Outcome::Pending { rule } => {
                log::debug!(
                    "#{} waiting for the keys of jwtRules[{rule}]",
                    self.context_id
                );
                self.state = State::WaitingForKeys { rule };
                Some(Verdict2::Hold)
            }
        }
    }

    pub fn on_request_body(
        &mut self,
        host: &dyn Host,
        body_size: usize,
        end_of_stream: bool,
    ) -> Action {
        log::debug!(
            "#{} request body: {body_size} bytes buffered, end of stream {end_of_stream}",
            self.context_id
        );
        self.shared.body_watch.arrived(self.context_id);
        match self.state {
            State::Buffering => {}
            State::WaitingForKeys { .. } => {
                self.early_body = Some((body_size, end_of_stream));
                return Action::Pause;
            }
            State::Calling { .. } => return Action::Pause,
            _ => return Action::Continue,
        }
        let config = Rc::clone(&self.config);
        let Some(provider) = config.custom_provider() else {
            return action(self.reply_internal_error(host));
        };
        let Some(options) = provider.body else {
            return action(self.check(host, provider, None));
        };
        // Over the limit: check_with_body answers 413 or sends what fits.
        if !end_of_stream && body_size < options.max_request_bytes as usize {
            return Action::Pause;
        }
        action(self.check_with_body(host, provider, body_size))
    }

    fn check_with_body(
        &mut self,
        host: &dyn Host,
        provider: &Provider,
        body_size: usize,
    ) -> Verdict2 {
        let max = provider.body.map_or(0, |b| b.max_request_bytes as usize);
        if body_size > max && provider.body.is_some_and(|b| !b.allow_partial_message) {
            return self.reply_too_large(host);
        }
        let bytes = host.request_body(max.min(body_size)).unwrap_or_default();
        let body = RequestBody {
            partial: body_size > bytes.len(),
            bytes,
        };
        self.check(host, provider, Some(&body))
    }

    /// The callout's answer (`None`: no response, as on timeout or reset), read by the caller
    /// while the host still holds it.
    pub fn on_call_response(
        &mut self,
        host: &dyn Host,
        token: u32,
        response: Option<CallResponse>,
    ) {
        match self.state {
            State::Calling { token: expected } if expected == token => {}
            _ => {
                log::warn!(
                    "#{} ignoring callout answer with unknown token {token}",
                    self.context_id
                );
                return;
            }
        }
        // One clock read for the latency and the cache (each hostcall costs about a microsecond).
        let now = host.now();
        if let Some(started) = self.call_started {
            let elapsed = now.duration_since(started).unwrap_or_default();
            self.shared
                .metrics
                .record(host, Metric::ExtAuthzLatencyMs, elapsed.as_millis() as u64);
        }
        let config = Rc::clone(&self.config);
        let Some(provider) = config.custom_provider() else {
            self.reply_internal_error(host);
            return;
        };
        if let (Some(key), Some(answer)) = (self.cache_key.take(), response.as_ref()) {
            if self.shared.decisions.offer(key, answer, unix_seconds(now)) {
                log::debug!("#{} ext_authz answer is cacheable: kept", self.context_id);
            }
        }
        let outcome = interpret(provider, response.as_ref());
        if let Verdict2::Proceed = self.conclude(host, provider, outcome) {
            host.resume_request();
        }
    }

    pub fn on_response_headers(&mut self, host: &dyn Host) -> Action {
        if self.state == State::Allowed {
            for (name, value) in self.downstream_on_allow.drain(..) {
                host.add_response_header(&name, &value);
            }
        }
        Action::Continue
    }

    fn header(&self, name: &str) -> Option<&str> {
        find(&self.attributes.headers, name)
    }

    /// Applies header changes to the request the proxy forwards and to what policies see.
    fn apply_to_request(&mut self, host: &dyn Host, mutations: &[HeaderMutation]) {
        for mutation in mutations {
            match mutation {
                HeaderMutation::Remove { name } if self.header(name).is_none() => continue,
                HeaderMutation::Remove { name } => host.set_request_header(name, None),
                HeaderMutation::Set { name, value } => host.set_request_header(name, Some(value)),
                HeaderMutation::Append { name, value } => host.add_request_header(name, value),
            }
            if let HeaderMutation::Set { name, value } = mutation {
                if name == ":path" {
                    self.request_path = value.clone();
                }
            }
        }
        headers::apply(&mut self.attributes.headers, mutations);
    }

    /// Reads headers once, normalizes the path (rewriting `:path` when it changed) and gathers
    /// only the properties the policies use. False for a request no policy can be asked about:
    /// a path normalization refuses, or two `Host` headers (Envoy joins them with a comma; RFC
    /// 9112 calls that a 400, and a `hosts` rule would otherwise see neither host).
    fn read_request(&mut self, host: &dyn Host) -> bool {
        let mut headers: Vec<(String, String)> = host
            .request_headers()
            .into_iter()
            .map(headers::as_text)
            .collect();
        let raw_path = find(&headers, ":path").unwrap_or("/").to_string();
        if is_refused(&raw_path, self.config.path_normalization)
            || find(&headers, ":authority").is_some_and(|a| a.contains(','))
        {
            return false;
        }
        let normalized = normalize(&raw_path, self.config.path_normalization);
        self.request_path = if self.config.path_normalization == PathNormalization::None {
            raw_path.clone()
        } else {
            normalized.to_request_path()
        };
        if self.request_path != raw_path {
            log::debug!("#{} path normalized", self.context_id);
            host.set_request_header(":path", Some(&self.request_path));
            headers::apply(
                &mut headers,
                &[HeaderMutation::Set {
                    name: ":path".into(),
                    value: self.request_path.clone(),
                }],
            );
        }
        let needs = self.config.needs;
        let source_ip = if needs.source_ip || needs.remote_ip {
            host.property(&["source", "address"])
                .and_then(|a| parse_ip(&a))
        } else {
            None
        };
        self.attributes = RequestAttributes {
            method: find(&headers, ":method").unwrap_or_default().to_string(),
            path: normalized.path,
            authority: find(&headers, ":authority").unwrap_or_default().to_string(),
            headers,
            source_ip,
            remote_ip: source_ip,
            destination_ip: if needs.destination_ip {
                host.property(&["destination", "address"])
                    .and_then(|a| parse_ip(&a))
            } else {
                None
            },
            destination_port: if needs.destination_port {
                host.property(&["destination", "port"])
                    .and_then(|p| parse_port(&p))
            } else {
                None
            },
            sni: if needs.sni {
                host.property(&["connection", "requested_server_name"])
                    .map(|s| String::from_utf8_lossy(&s).into_owned())
                    .filter(|s| !s.is_empty())
            } else {
                None
            },
            peer_principal: if needs.peer_principal {
                host.property(&["connection", "uri_san_peer_certificate"])
                    .map(|s| {
                        String::from_utf8_lossy(&s)
                            .trim_start_matches("spiffe://")
                            .to_string()
                    })
                    .filter(|s| !s.is_empty())
            } else {
                None
            },
            auth: None,
        };
        true
    }

    /// Sends the check request; a failed dispatch is an error under the failure mode.
    fn check(
        &mut self,
        host: &dyn Host,
        provider: &Provider,
        body: Option<&RequestBody>,
    ) -> Verdict2 {
        let source = RequestSource {
            headers: &self.attributes.headers,
            host,
        };
        let request = build_check_request(
            provider,
            &self.attributes.headers,
            &self.request_path,
            body,
            &source,
        );
        // One clock read for the cache and the latency (each hostcall costs about a microsecond).
        let now = host.now();
        // The key copies the whole check request: only built when answers can be cached.
        let key = (self.shared.decisions.capacity() > 0)
            .then(|| crate::ext_authz::cache::key(&provider.cluster, &request));
        let cached = key
            .as_ref()
            .and_then(|key| self.shared.decisions.get(key, unix_seconds(now)));
        if let Some(answer) = cached {
            self.shared
                .metrics
                .increment(host, Metric::ExtAuthzCacheHit);
            log::debug!(
                "#{} ext_authz answer taken from the decision cache",
                self.context_id
            );
            return self.conclude(host, provider, interpret(provider, Some(&answer)));
        }
        self.cache_key = key;
        let headers: Vec<(&str, &str)> = request
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        match host.dispatch_http_call(
            &provider.cluster,
            &headers,
            request.body.as_deref(),
            provider.timeout,
        ) {
            Ok(token) => {
                self.state = State::Calling { token };
                self.call_started = Some(now);
                Verdict2::Hold
            }
            Err(error) => {
                log::warn!(
                    "#{} ext_authz dispatch to cluster {:?} failed: {error}",
                    self.context_id,
                    provider.cluster
                );
                self.conclude(
                    host,
                    provider,
                    CheckResponse::Error(ext_authz::ErrorKind::DispatchFailed),
                )
            }
        }
    }

    /// Applies the authorization service's verdict, then the local policies when it allows.
    /// A dry-run CUSTOM policy only counts and logs what the service said.
    fn conclude(
        &mut self,
        host: &dyn Host,
        provider: &Provider,
        outcome: CheckResponse,
    ) -> Verdict2 {
        let metrics = &self.shared.metrics;
        if self.custom_dry_run {
            match &outcome {
                CheckResponse::Ok { .. } => metrics.increment(host, Metric::ExtAuthzShadowAllowed),
                CheckResponse::Denied { status, .. } => {
                    metrics.increment(host, Metric::ExtAuthzShadowDenied);
                    log::info!(
                        "#{} dry run: ext_authz provider {:?} would deny with status {status}",
                        self.context_id,
                        provider.name
                    );
                }
                CheckResponse::Error(kind) => {
                    metrics.increment(host, Metric::ExtAuthzShadowDenied);
                    log::info!(
                        "#{} dry run: ext_authz error ({kind:?}) would deny",
                        self.context_id
                    );
                }
            }
            return self.decide_locally(host);
        }
        match outcome {
            CheckResponse::Ok {
                upstream,
                downstream,
            } => {
                metrics.increment(host, Metric::ExtAuthzOk);
                self.apply_to_request(host, &upstream);
                self.downstream_on_allow = downstream;
                self.decide_locally(host)
            }
            CheckResponse::Denied {
                status,
                headers,
                body,
            } => {
                metrics.increment(host, Metric::ExtAuthzDenied);
                log::info!(
                    "#{} denied by ext_authz provider {:?} with status {status}",
                    self.context_id,
                    provider.name
                );
                let headers: Vec<(&str, &str)> = headers
                    .iter()
                    .map(|(n, v)| (n.as_str(), v.as_str()))
                    .collect();
                self.reply(host, Denial::ExtAuthz, status, &headers, &body)
            }
            CheckResponse::Error(kind) => {
                metrics.increment(host, Metric::ExtAuthzError);
                if provider.fail_open {
                    metrics.increment(host, Metric::ExtAuthzFailureModeAllowed);
                    log::warn!(
                        "#{} ext_authz error ({kind:?}); failOpen lets the request through",
                        self.context_id
                    );
                    self.decide_locally(host)
                } else {
                    log::info!(
                        "#{} denied: ext_authz error ({kind:?}), statusOnError {}",
                        self.context_id,
                        provider.status_on_error
                    );
                    self.reply(
                        host,
                        Denial::ExtAuthzError,
                        provider.status_on_error,
                        &[],
                        b"",
                    )
                }
            }
        }
    }

    /// DENY then ALLOW policies; the request continues or gets `403 RBAC: access denied`. The
    /// dry-run policies are evaluated on their own and only counted and logged.
    fn decide_locally(&mut self, host: &dyn Host) -> Verdict2 {
        let config = Rc::clone(&self.config);
        let Decision::Local(local) = decide(&config.policies, &self.attributes, Stage::Checked)
        else {
            return self.reply_internal_error(host);
        };
        match local.shadow {
            None => {}
            Some(Verdict::Allowed) => self
                .shared
                .metrics
                .increment(host, Metric::RbacShadowAllowed),
            Some(Verdict::Denied { policy }) => {
                log::info!("#{} dry run: policy {policy:?} would deny", self.context_id);
                self.shared
                    .metrics
                    .increment(host, Metric::RbacShadowDenied);
                self.shared.metrics.policy_denied(host, policy, true);
            }
            Some(Verdict::NoAllowMatch) => {
                log::info!("#{} dry run: no ALLOW policy would match", self.context_id);
                self.shared
                    .metrics
                    .increment(host, Metric::RbacShadowDenied);
            }
        }
        match local.enforced {
            None => {
                self.state = State::Allowed;
                Verdict2::Proceed
            }
            Some(Verdict::Allowed) => {
                self.shared.metrics.increment(host, Metric::RbacAllowed);
                self.state = State::Allowed;
                Verdict2::Proceed
            }
            Some(Verdict::Denied { policy }) => {
                log::info!(
                    "#{} denied by policy {policy:?}: DENY rule matched",
                    self.context_id
                );
                self.shared.metrics.increment(host, Metric::RbacDenied);
                self.shared.metrics.policy_denied(host, policy, false);
                self.reply(
                    host,
                    Denial::Policy(policy),
                    403,
                    &[],
                    RBAC_DENIED_BODY.as_bytes(),
                )
            }
            Some(Verdict::NoAllowMatch) => {
                log::info!("#{} denied: no ALLOW policy matched", self.context_id);
                self.shared.metrics.increment(host, Metric::RbacDenied);
                if local.refusal == Some(Refusal::TokenRequired) {
                    // No token at all: ask for one (RFC 6750), as the ingress tutorial shows.
                    return self.reply_jwt(host, JwtStatus::JwtMissed);
                }
                self.reply(
                    host,
                    Denial::NoAllowMatch,
                    403,
                    &[],
                    RBAC_DENIED_BODY.as_bytes(),
                )
            }
        }
    }

    fn reply_jwt(&mut self, host: &dyn Host, status: JwtStatus) -> Verdict2 {
        let challenge = www_authenticate(&self.attributes.headers, status);
        let body = status.message().as_bytes();
        self.reply(
            host,
            Denial::Jwt(status),
            status.http_status(),
            &[("www-authenticate", &challenge)],
            body,
        )
    }

    fn reply_too_large(&mut self, host: &dyn Host) -> Verdict2 {
        log::info!(
            "#{} denied: request body over maxRequestBytes",
            self.context_id
        );
        self.shared.metrics.increment(host, Metric::RequestTooLarge);
        self.reply(
            host,
            Denial::TooLarge,
            413,
            &[],
            PAYLOAD_TOO_LARGE_BODY.as_bytes(),
        )
    }

    fn reply_internal_error(&mut self, host: &dyn Host) -> Verdict2 {
        self.reply(host, Denial::Internal, 500, &[], b"")
    }

    /// The one local reply of a request: counted by reason, and with `x-inline-authz-denied-by`
    /// when `exposeDenialReason` is on.
    fn reply(
        &mut self,
        host: &dyn Host,
        denial: Denial,
        status: u32,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Verdict2 {
        self.state = State::Replied;
        self.shared.metrics.increment(host, denial.metric());
        if self.config.expose_denial_reason {
            let reason = denial.reason();
            let mut with_reason = headers.to_vec();
            with_reason.push((DENIED_BY_HEADER, &reason));
            host.send_response(status, &with_reason, body);
        } else {
            host.send_response(status, headers, body);
        }
        Verdict2::Hold
    }
}

/// The header naming why a local reply was sent (`exposeDenialReason`).
pub const DENIED_BY_HEADER: &str = "x-inline-authz-denied-by";

/// Why the filter answered a request itself.
enum Denial<'a> {
    Jwt(JwtStatus),
    Policy(&'a str),
    NoAllowMatch,
    ExtAuthz,
    ExtAuthzError,
    TooLarge,
    Internal,
    InvalidRequest,
}

impl Denial<'_> {
    /// `jwt_authn:jwt_expired`, `policy:<name>`, `rbac:no_allow_match`, `ext_authz:denied`,
    /// `ext_authz:error`, `ext_authz:request_too_large`, `internal`, `request:invalid`.
    fn reason(&self) -> String {
        match self {
            Denial::Jwt(status) => format!("jwt_authn:{}", status.code()),
            Denial::Policy(name) => format!("policy:{name}"),
            Denial::NoAllowMatch => "rbac:no_allow_match".into(),
            Denial::ExtAuthz => "ext_authz:denied".into(),
            Denial::ExtAuthzError => "ext_authz:error".into(),
            Denial::TooLarge => "ext_authz:request_too_large".into(),
            Denial::Internal => "internal".into(),
            Denial::InvalidRequest => "request:invalid".into(),
        }
    }

    fn metric(&self) -> Metric {
        match self {
            Denial::Jwt(_) => Metric::DeniedByJwt,
            Denial::Policy(_) => Metric::DeniedByPolicy,
            Denial::NoAllowMatch => Metric::DeniedByNoAllowMatch,
            Denial::ExtAuthz => Metric::DeniedByExtAuthz,
            Denial::ExtAuthzError => Metric::DeniedByExtAuthzError,
            Denial::TooLarge => Metric::DeniedByRequestTooLarge,
            Denial::Internal => Metric::DeniedByInternal,
            Denial::InvalidRequest => Metric::DeniedByInvalidRequest,
        }
    }
}

impl Drop for AuthzRequest {
    fn drop(&mut self) {
        self.shared.body_watch.forget(self.context_id);
    }
}

/// Logged when the host holds request bodies back from a filter that holds the headers.
pub const BODY_NEVER_DELIVERED: &str =
    "request body never reached the filter: includeRequestBodyInCheck needs \
     allow_on_headers_stop_iteration: true in Envoy's wasm PluginConfig; failing closed with 500";

/// Envoy hands addresses over as `ip:port` text.
fn parse_ip(bytes: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(bytes).ok()?;
    if let Ok(ip) = text.parse() {
        return Some(ip);
    }
    if let Some(rest) = text.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    text.rsplit_once(':')?.0.parse().ok()
}

/// Envoy hands ports over as a little-endian 64-bit integer.
fn parse_port(bytes: &[u8]) -> Option<u16> {
    let raw: [u8; 8] = bytes.get(..8)?.try_into().ok()?;
    u16::try_from(u64::from_le_bytes(raw)).ok()
}

/// What header templates read: the client headers and the downstream address.
struct RequestSource<'a> {
    headers: &'a [(String, String)],
    host: &'a dyn Host,
}

impl TemplateSource for RequestSource<'_> {
    fn request_header(&self, name: &str) -> Option<String> {
        find(self.headers, name).map(str::to_string)
    }

    fn remote_address(&self) -> Option<String> {
        self.host
            .property(&["source", "address"])
            .map(|a| String::from_utf8_lossy(&a).into_owned())
    }
}

#[cfg(test)]
mod tests;
