//! The per-request state machine (Envoy ext_authz's `State {NotStarted, Calling, Complete}`):
//! read the request once, authenticate, then carry out what `policy::decide` says: ask the
//! CUSTOM providers one after another, then DENY / ALLOW. Every request ends exactly once, in
//! `AuthzRequest::end`: it is forwarded (continued or resumed) or gets one local reply. A hostcall
//! that fails on the way ends it there too, closed, with a 500.

use std::cell::Cell;
use std::net::IpAddr;
use std::rc::Rc;
use std::time::SystemTime;

use crate::config::{Config, LocalReplyBody};
use crate::explain::{json_body, Answer, Trail};
use crate::ext_authz::grpc::{self, CallOutcome, Connection, Peer};
use crate::ext_authz::{
    self, build_check_request, interpret, CallResponse, CheckResponse, GrpcService, HttpService,
    Provider, RequestBody, Service, TemplateSource,
};
use crate::headers::{self, first as find, HeaderMutation};
use crate::host::{unix_seconds, Host, HostError, HostResult};
use crate::policy::path::{is_refused, normalize, PathNormalization};
use crate::policy::{decide, Check, Decision, Refusal, RequestAttributes, Stage, Verdict};

use super::body_watch::{BodyDelivery, BodyWatch};
use super::crypto::HostCrypto;
use super::keys::KeyCache;
use super::metrics::{CheckOutcome, Metric, Metrics};
use crate::ext_authz::cache::DecisionCache;
use crate::jwt::cache::TokenCache;
use crate::jwt::status::JwtStatus;
use crate::jwt::verify::{PureRust, SignatureBackend};
use crate::jwt::Verifier;
use crate::jwt::{www_authenticate, Outcome};

/// What all requests of one plugin share (owned by the root context).
#[derive(Debug)]
pub struct Shared {
    pub(crate) metrics: Metrics,
    pub(crate) body_watch: BodyWatch,
    pub(crate) keys: KeyCache,
    pub(crate) tokens: TokenCache,
    pub(crate) decisions: DecisionCache,
    /// RS*/ES* signatures go to the host's `verify_signature` (probed once at start).
    pub host_crypto: bool,
    /// The time of the root context's last tick: what requests take as "now" (`exp`, `nbf`,
    /// cache lifetimes) instead of a clock hostcall each. Unset until the first tick.
    clock: Cell<Option<SystemTime>>,
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
            clock: Cell::new(None),
        }
    }

    /// The tick's time (one-second precision is all `exp`, `nbf` and cache lifetimes need; the
    /// tick comes every `root::TICK`), or the host's clock before the first tick.
    pub(crate) fn now(&self, host: &dyn Host) -> HostResult<SystemTime> {
        match self.clock.get() {
            Some(now) => Ok(now),
            None => host.now(),
        }
    }

    /// The root context's tick: the time requests take from now on.
    pub(crate) fn set_clock(&self, now: SystemTime) {
        self.clock.set(Some(now));
    }
}

/// Envoy's reply body when RBAC denies (`RBAC: access denied`).
pub const RBAC_DENIED_BODY: &str = "RBAC: access denied";
/// Envoy's reply body when a buffered request body is over the limit.
pub const PAYLOAD_TOO_LARGE_BODY: &str = "Payload Too Large";

/// What the proxy should do with the stream after a callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The stream goes on (proxy-wasm `Action::Continue`).
    Continue,
    /// The stream is held until the filter resumes or answers it (keys, body or a callout
    /// awaited).
    Pause,
}

/// The request body as far as the filter has seen it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Body {
    /// The headers ended the stream: there is none.
    None,
    /// Not seen yet.
    Coming,
    /// This many bytes are buffered; `complete` once the stream ended.
    Buffered { size: usize, complete: bool },
}

/// The CUSTOM providers a request is asked by, and what the allowing ones said so far.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Checks {
    list: Vec<Check>,
    /// The next check to make (index in `list`).
    next: usize,
    /// `headersToDownstreamOnAllow` of every provider that allowed.
    downstream: Vec<HeaderMutation>,
    /// The request body as last seen.
    body: Body,
}

/// Where a request is (Envoy ext_authz's `State`), with what that step needs.
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    NotStarted,
    /// Waiting for the remote keys of this JWT rule.
    WaitingForKeys {
        rule: usize,
        body: Body,
    },
    /// Waiting for the request body the check requests carry.
    Buffering {
        checks: Checks,
    },
    /// A check request is out; `token` matches its answer to this request.
    Calling {
        token: u32,
        /// Decision-cache key of the check request (only when answers can be cached).
        cache: Option<CacheKey>,
        checks: Checks,
    },
    /// Forwarded; these header changes go on the response.
    Allowed {
        downstream: Vec<HeaderMutation>,
    },
    /// A local reply was sent.
    Replied,
}

/// The answer to a check request, as the host delivers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallAnswer {
    /// The HTTP answer (`None`: no response, as on timeout or reset).
    Http(Option<CallResponse>),
    /// The gRPC answer: a message, or the call's failure status.
    Grpc(CallOutcome),
}

/// Why the filter answered a request itself (the reason code and the `denied_by` metric).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Denial {
    Jwt(JwtStatus),
    Policy(String),
    NoAllowMatch,
    ExtAuthz,
    ExtAuthzError,
    TooLarge,
    Internal,
    InvalidRequest,
}

/// One local reply.
#[derive(Debug, Clone, PartialEq, Eq)]
struct LocalReply {
    denial: Denial,
    status: u32,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl LocalReply {
    fn new(denial: Denial, status: u32, body: &str) -> LocalReply {
        LocalReply {
            denial,
            status,
            headers: Vec::new(),
            body: body.as_bytes().to_vec(),
        }
    }

    fn internal() -> LocalReply {
        LocalReply::new(Denial::Internal, 500, "")
    }
}

/// What happens next to the request: it waits (a callout, keys, its body), or it ends.
#[derive(Debug)]
enum Next {
    Wait,
    /// Forward the request; these header changes go on its response.
    Forward(Vec<HeaderMutation>),
    Reply(LocalReply),
}

/// How the callback that ends a request lets it go on: by returning `Continue` (the request
/// never paused), or by resuming it (it was paused; a callout answer or a wake-up).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resume {
    No,
    Yes,
}

/// The decision-cache key of a check request in flight: made for the lookup, or made from the
/// request if its answer is cacheable (most answers are not: no key is copied for them).
#[derive(Debug, Clone, PartialEq, Eq)]
enum CacheKey {
    Built(Vec<u8>),
    Later(ext_authz::CheckRequest),
}

/// What sending a check request came to.
enum Dispatch {
    Sent {
        token: u32,
        cache: Option<CacheKey>,
    },
    /// An identical HTTP check was answered cacheably before.
    Cached(Rc<CallResponse>),
    Failed(HostError),
}

/// One HTTP request going through the filter.
pub struct AuthzRequest {
    config: Rc<Config>,
    shared: Rc<Shared>,
    context_id: u32,
    state: State,
    attributes: RequestAttributes,
    /// Normalized path with the original query: what policies saw and the check request carries.
    request_path: String,
    /// What the decision went through, for the audit record (kept only with `auditRecord`).
    trail: Trail,
}

impl AuthzRequest {
    /// A request of HTTP context `context_id`, not started.
    pub fn new(config: Rc<Config>, shared: Rc<Shared>, context_id: u32) -> AuthzRequest {
        AuthzRequest {
            config,
            shared,
            context_id,
            state: State::NotStarted,
            attributes: RequestAttributes::default(),
            request_path: String::new(),
            trail: Trail::default(),
        }
    }

    /// `on_http_request_headers`: authenticate, decide, and reply, ask the providers or continue
    /// (once per request; a repeated call continues).
    pub fn on_request_headers(&mut self, host: &dyn Host, end_of_stream: bool) -> Action {
        if self.state != State::NotStarted {
            return Action::Continue;
        }
        let body = if end_of_stream {
            Body::None
        } else {
            Body::Coming
        };
        let next = self.start(host, body);
        self.end(host, next, Resume::No)
    }

    /// The JWT rule whose remote keys this request waits for.
    pub fn waiting_for_keys(&self) -> Option<usize> {
        match self.state {
            State::WaitingForKeys { rule, .. } => Some(rule),
            _ => None,
        }
    }

    /// Whether the request waits for its body (the root context's tick watches it).
    pub fn waiting_for_body(&self) -> bool {
        matches!(self.state, State::Buffering { .. })
    }

    /// The callout in flight, if any (its answer must come back to this request).
    pub fn call_in_flight(&self) -> Option<u32> {
        match self.state {
            State::Calling { token, .. } => Some(token),
            _ => None,
        }
    }

    /// The keys this request waited for arrived (or their fetch failed): authenticate again and
    /// go on; the request was paused, so it is resumed when it may proceed.
    pub fn on_keys_ready(&mut self, host: &dyn Host) {
        let State::WaitingForKeys { body, .. } = self.state else {
            return;
        };
        self.state = State::NotStarted;
        let next = self.authorize(host, body);
        self.end(host, next, Resume::Yes);
    }

    /// The host never delivered the body this request waits for (the root context's tick).
    pub fn on_body_never_delivered(&mut self, host: &dyn Host) {
        if !self.waiting_for_body() {
            return;
        }
        log::error!("#{} {BODY_NEVER_DELIVERED}", self.context_id);
        self.end(host, Next::Reply(LocalReply::internal()), Resume::Yes);
    }

    /// `on_http_request_body`: `body_size` bytes buffered so far; the check that waits for the
    /// body (`includeRequestBodyInCheck`) is sent once it is complete or reaches `maxRequestBytes`.
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
        let seen = Body::Buffered {
            size: body_size,
            complete: end_of_stream,
        };
        match &mut self.state {
            State::WaitingForKeys { body, .. } => {
                *body = seen;
                Action::Pause
            }
            // A later provider may read the body: keep what arrived while this check is out.
            State::Calling { checks, .. } => {
                checks.body = seen;
                Action::Pause
            }
            State::Buffering { checks } => {
                let mut checks = checks.clone();
                checks.body = seen;
                let next = self.ask(host, checks);
                self.end(host, next, Resume::No)
            }
            _ => Action::Continue,
        }
    }

    /// The callout's answer, read by the caller while the host still holds it.
    pub fn on_call_response(
        &mut self,
        host: &dyn Host,
        token: u32,
        response: HostResult<CallAnswer>,
    ) {
        if self.call_in_flight() != Some(token) {
            log::warn!(
                "#{} ignoring callout answer with unknown token {token}",
                self.context_id
            );
            return;
        }
        let State::Calling { cache, checks, .. } =
            std::mem::replace(&mut self.state, State::Replied)
        else {
            return;
        };
        let next = self.answered(host, cache, checks, response);
        let next = self.or_fail_closed(next);
        self.end(host, next, Resume::Yes);
    }

    /// `on_http_response_headers`: adds the headers an allowing provider sent for the client
    /// (`headersToDownstreamOnAllow`).
    pub fn on_response_headers(&mut self, host: &dyn Host) -> Action {
        if let State::Allowed { downstream } = &mut self.state {
            for mutation in downstream.drain(..) {
                let done = match &mutation {
                    HeaderMutation::Set { name, value } => host.set_response_header(name, value),
                    HeaderMutation::Append { name, value } => host.add_response_header(name, value),
                    HeaderMutation::Remove { .. } => Ok(()),
                };
                if let Err(error) = done {
                    log::warn!(
                        "#{} {error}: header {:?} not added",
                        self.context_id,
                        mutation.name()
                    );
                }
            }
        }
        Action::Continue
    }

    /// The one way a request ends: forwarded (continued, or resumed when it was paused) or
    /// answered with one local reply, counted by reason and carrying `x-inline-authz-denied-by`
    /// when `exposeDenialReason` is on. With `auditRecord`, the decision is written to filter
    /// state first, for forwarded requests too.
    fn end(&mut self, host: &dyn Host, next: Next, resume: Resume) -> Action {
        match next {
            Next::Wait => Action::Pause,
            Next::Forward(downstream) => {
                self.audit(host, None);
                self.state = State::Allowed { downstream };
                if resume == Resume::No {
                    return Action::Continue;
                }
                match host.resume_request() {
                    Ok(()) => Action::Continue,
                    Err(error) => {
                        log::error!("#{} {error}; failing closed", self.context_id);
                        self.end(host, Next::Reply(LocalReply::internal()), Resume::No)
                    }
                }
            }
            Next::Reply(reply) => {
                self.state = State::Replied;
                self.shared.body_watch.forget(self.context_id);
                self.shared.metrics.increment(reply.denial.metric());
                let reason = reply.denial.reason();
                self.audit(host, Some(&reason));
                let json = self.json_reply(&reply, &reason);
                let mut headers: Vec<(&str, &str)> = reply
                    .headers
                    .iter()
                    .map(|(n, v)| (n.as_str(), v.as_str()))
                    .collect();
                if json.is_some() {
                    headers.push(("content-type", "application/json"));
                }
                if self.config.expose_denial_reason {
                    headers.push((DENIED_BY_HEADER, &reason));
                }
                let body = json.as_deref().unwrap_or(&reply.body);
                if let Err(error) = host.send_response(reply.status, &headers, body) {
                    log::error!("#{} {error}: local reply not sent", self.context_id);
                }
                Action::Pause
            }
        }
    }

    /// With `auditRecord`, writes the decision where access logs read it
    /// (`%FILTER_STATE(wasm.inline_authz.decision:PLAIN)%`); `denied` is the reason code of a
    /// local reply. Best effort, as metrics: a record that cannot be written changes nothing.
    fn audit(&self, host: &dyn Host, denied: Option<&str>) {
        if !self.config.audit_record {
            return;
        }
        let principal = self.attributes.auth.as_ref().map(|a| a.principal.as_str());
        let record = self.trail.record(denied, principal);
        if let Err(error) = host.set_property(&[DECISION_PROPERTY], record.as_bytes()) {
            log::warn!("#{} {error}: audit record not written", self.context_id);
        }
    }

    /// The JSON body of a local reply under `localReplyBody: json`; `None` keeps the reply as it
    /// is: Envoy's texts, the authorization service's own denial (its answer, not the filter's),
    /// and gRPC requests (Envoy turns the reply into `grpc-status` and `grpc-message` itself).
    fn json_reply(&self, reply: &LocalReply, reason: &str) -> Option<Vec<u8>> {
        if self.config.local_reply_body != LocalReplyBody::Json
            || reply.denial == Denial::ExtAuthz
            || self.is_grpc()
        {
            return None;
        }
        let policy = match &reply.denial {
            Denial::Policy(name) => Some(name.as_str()),
            _ => None,
        };
        Some(json_body(reply.status, reason, policy))
    }

    /// A gRPC request (`content-type: application/grpc…`), as Envoy's `Grpc::Common::isGrpcRequestHeaders`.
    fn is_grpc(&self) -> bool {
        self.header("content-type")
            .is_some_and(|t| t.starts_with("application/grpc"))
    }

    /// A WebSocket upgrade (`connection: …upgrade…` with `upgrade: websocket`) or an HTTP/2
    /// extended CONNECT (`:protocol` set, not `bytestream`): as Envoy's ext_authz, its body is
    /// never awaited, since the client sends nothing before the upgrade is answered.
    fn is_upgrade(&self) -> bool {
        let websocket = self.header("connection").is_some_and(|c| {
            c.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
        }) && self
            .header("upgrade")
            .is_some_and(|u| u.trim().eq_ignore_ascii_case("websocket"));
        let extended_connect = self.attributes.method == "CONNECT"
            && self
                .header(":protocol")
                .is_some_and(|p| !p.is_empty() && p != "bytestream");
        websocket || extended_connect
    }

    /// A hostcall failure on the request path ends the request closed (one log line naming it).
    fn or_fail_closed(&self, next: HostResult<Next>) -> Next {
        next.unwrap_or_else(|error| {
            log::error!("#{} {error}; failing closed with 500", self.context_id);
            Next::Reply(LocalReply::internal())
        })
    }

    /// Reads the request, strips identity headers, then authenticates and authorizes.
    fn start(&mut self, host: &dyn Host, body: Body) -> Next {
        let read = self.read_request(host);
        match self.or_fail_closed(read) {
            Next::Forward(_) => {}
            ended => return ended,
        }
        let config = Rc::clone(&self.config);
        let sanitized = self.apply_to_request(host, config.jwt.sanitize());
        if let Err(error) = sanitized {
            return self.or_fail_closed(Err(error));
        }
        self.authorize(host, body)
    }

    /// Authentication, then what `policy::decide` says.
    fn authorize(&mut self, host: &dyn Host, body: Body) -> Next {
        let next = self.authorize_or_fail(host, body);
        self.or_fail_closed(next)
    }

    fn authorize_or_fail(&mut self, host: &dyn Host, body: Body) -> HostResult<Next> {
        if let Some(next) = self.authenticate(host, body)? {
            return Ok(next);
        }
        let config = Rc::clone(&self.config);
        match decide(&config.policies, &self.attributes, Stage::Authenticated) {
            Decision::Ask(list) => {
                let checks = Checks {
                    list,
                    next: 0,
                    downstream: Vec::new(),
                    body,
                };
                Ok(self.ask(host, checks))
            }
            Decision::Local(_) => Ok(self.decide_locally(Vec::new())),
        }
    }

    /// Verifies tokens; `Some` when the request was answered or must wait for keys.
    fn authenticate(&mut self, host: &dyn Host, body: Body) -> HostResult<Option<Next>> {
        let jwt = &self.config.jwt;
        if jwt.is_empty() {
            return Ok(None);
        }
        let now = self.shared.now(host)?;
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
            Outcome::NoToken => Ok(None),
            Outcome::Verified { auth, mutations } => {
                self.shared.metrics.increment(Metric::JwtAllowed);
                self.apply_to_request(host, &mutations)?;
                self.attributes.auth = Some(auth);
                Ok(None)
            }
            Outcome::Failed(status) => {
                self.shared.metrics.increment(Metric::JwtDenied);
                log::info!("#{} denied: {}", self.context_id, status.message());
                Ok(Some(self.jwt_reply(status)))
            }
            Outcome::Pending { rule } => {
                log::debug!(
                    "#{} waiting for the keys of jwtRules[{rule}]",
                    self.context_id
                );
                self.state = State::WaitingForKeys { rule, body };
                Ok(Some(Next::Wait))
            }
        }
    }

    /// Makes the next check of `checks`, or decides locally when none is left. A check whose
    /// provider reads bodies waits for the body first (413 when it is over the limit and
    /// `allowPartialMessage` is off).
    fn ask(&mut self, host: &dyn Host, checks: Checks) -> Next {
        let config = Rc::clone(&self.config);
        let Some(check) = checks.list.get(checks.next).copied() else {
            return self.decide_locally(checks.downstream);
        };
        let Some(provider) = config.providers.get(check.provider) else {
            log::error!("#{} CUSTOM policy without a provider", self.context_id);
            return Next::Reply(LocalReply::internal());
        };
        // No body to carry (the headers ended the stream, or an upgrade whose bytes flow only
        // after the 101): the check request has none either.
        let Some(options) = provider
            .body
            .filter(|_| checks.body != Body::None && !self.is_upgrade())
        else {
            let next = self.check(host, provider, checks, None);
            return self.or_fail_closed(next);
        };
        let max = options.max_request_bytes as usize;
        let body = checks.body;
        let buffered = match body {
            Body::Buffered { size, complete } if complete || size >= max => Some(size),
            _ => None,
        };
        let Some(size) = buffered else {
            let declared = self
                .header("content-length")
                .and_then(|v| v.trim().parse::<u64>().ok());
            if !options.allow_partial_message
                && declared.is_some_and(|len| len > u64::from(options.max_request_bytes))
            {
                return self.too_large();
            }
            if body == Body::Coming && !self.waiting_for_body() {
                if self.shared.body_watch.delivery() == BodyDelivery::Never {
                    log::error!("#{} {BODY_NEVER_DELIVERED}", self.context_id);
                    return Next::Reply(LocalReply::internal());
                }
                log::debug!("#{} waiting for the request body", self.context_id);
                match self.shared.now(host) {
                    Ok(now) => self.shared.body_watch.waiting(self.context_id, now),
                    Err(error) => return self.or_fail_closed(Err(error)),
                }
            }
            self.state = State::Buffering { checks };
            return Next::Wait;
        };
        if size > max && !options.allow_partial_message {
            return self.too_large();
        }
        let next = match host.request_body(max.min(size)) {
            Ok(bytes) => {
                let body = RequestBody {
                    partial: size > bytes.len(),
                    bytes,
                };
                self.check(host, provider, checks, Some(&body))
            }
            Err(error) => Err(error),
        };
        self.or_fail_closed(next)
    }

    /// Sends the check request (or, over HTTP, takes a cached answer); a failed dispatch is an
    /// error under the provider's failure mode.
    fn check(
        &mut self,
        host: &dyn Host,
        provider: &Provider,
        checks: Checks,
        body: Option<&RequestBody>,
    ) -> HostResult<Next> {
        let dispatched = match &provider.service {
            Service::Http(http) => self.check_http(host, provider, http, body)?,
            Service::Grpc(grpc) => self.check_grpc(host, provider, grpc, &checks, body)?,
        };
        match dispatched {
            Dispatch::Sent { token, cache } => {
                self.state = State::Calling {
                    token,
                    cache,
                    checks,
                };
                Ok(Next::Wait)
            }
            Dispatch::Cached(answer) => {
                let Service::Http(http) = &provider.service else {
                    return Ok(Next::Reply(LocalReply::internal()));
                };
                self.conclude(host, provider, checks, interpret(http, Some(&answer)))
            }
            Dispatch::Failed(error) => {
                log::warn!(
                    "#{} ext_authz dispatch to cluster {:?} failed: {}",
                    self.context_id,
                    provider.cluster,
                    error.status
                );
                self.conclude(
                    host,
                    provider,
                    checks,
                    CheckResponse::Error(ext_authz::ErrorKind::DispatchFailed),
                )
            }
        }
    }

    /// The HTTP check request, or the cached answer to an identical one.
    fn check_http(
        &self,
        host: &dyn Host,
        provider: &Provider,
        http: &HttpService,
        body: Option<&RequestBody>,
    ) -> HostResult<Dispatch> {
        let source = RequestSource {
            headers: &self.attributes.headers,
            host,
            failed: std::cell::RefCell::new(None),
        };
        let request = build_check_request(
            &provider.cluster,
            http,
            &self.attributes.headers,
            &self.request_path,
            body,
            &source,
        );
        if let Some(error) = source.failed.into_inner() {
            return Err(error);
        }
        // The key copies the whole check request: built for a lookup only when the cache holds
        // answers; otherwise the request itself is kept, and the key made only if the answer
        // turns out cacheable.
        let decisions = &self.shared.decisions;
        let cache_key = (decisions.capacity() > 0 && !decisions.is_empty())
            .then(|| crate::ext_authz::cache::key(&provider.cluster, &request));
        let cached = match &cache_key {
            Some(key) => {
                let now = unix_seconds(self.shared.now(host)?);
                decisions.get(key, now)
            }
            None => None,
        };
        if let Some(answer) = cached {
            self.shared.metrics.increment(Metric::ExtAuthzCacheHit);
            log::debug!(
                "#{} ext_authz answer taken from the decision cache",
                self.context_id
            );
            return Ok(Dispatch::Cached(answer));
        }
        let dispatched = {
            let headers: Vec<(&str, &str)> = request
                .headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str()))
                .collect();
            host.dispatch_http_call(
                &provider.cluster,
                &headers,
                request.body.as_deref(),
                provider.timeout,
            )
        };
        let cache = match cache_key {
            Some(key) => Some(CacheKey::Built(key)),
            None if decisions.capacity() > 0 => Some(CacheKey::Later(request)),
            None => None,
        };
        Ok(match dispatched {
            Ok(token) => Dispatch::Sent { token, cache },
            Err(error) => Dispatch::Failed(error),
        })
    }

    /// The gRPC `CheckRequest`, with the connection's attributes read from the host.
    fn check_grpc(
        &self,
        host: &dyn Host,
        provider: &Provider,
        grpc: &GrpcService,
        checks: &Checks,
        body: Option<&RequestBody>,
    ) -> HostResult<Dispatch> {
        let size = match checks.body {
            Body::Buffered { size, .. } => i64::try_from(size).unwrap_or(i64::MAX),
            _ => 0,
        };
        let connection = self.connection(host, size)?;
        let message = grpc::check_request(
            &connection,
            &self.attributes.headers,
            &self.request_path,
            body,
            provider.body.is_some_and(|b| b.pack_as_bytes),
        );
        Ok(
            match host.dispatch_grpc_call(
                &grpc.upstream,
                grpc::SERVICE,
                grpc::METHOD,
                &message,
                provider.timeout,
            ) {
                Ok(token) => Dispatch::Sent { token, cache: None },
                Err(error) => Dispatch::Failed(error),
            },
        )
    }

    /// The connection as Envoy describes it in a `CheckRequest`: both addresses, and the
    /// principals of both certificates when the connection has TLS.
    fn connection(&self, host: &dyn Host, size: i64) -> HostResult<Connection> {
        let address = |path: &[&str]| -> HostResult<Option<(String, u32)>> {
            Ok(host.property(path)?.and_then(|a| parse_socket(&a)))
        };
        let tls = host.property(&["connection", "tls_version"])?.is_some();
        // The first identity only (Envoy's CheckRequest principal): the others are not read.
        let principal = |side: &str| -> HostResult<String> {
            if !tls {
                return Ok(String::new());
            }
            Ok(certificate_identities(host, side)
                .next()
                .transpose()?
                .unwrap_or_default())
        };
        let protocol = host
            .property(&["request", "protocol"])?
            .map(|p| String::from_utf8_lossy(&p).into_owned())
            .unwrap_or_default();
        // The host's clock when the filter sees the headers, not the `request.time` property
        // (Envoy's stream start): a property read costs about 5 µs, the clock next to nothing, and
        // they differ by the time the headers took to arrive.
        let time = host.now()?;
        Ok(Connection {
            source: Peer {
                address: address(&["source", "address"])?,
                principal: principal("peer")?,
            },
            destination: Peer {
                address: address(&["destination", "address"])?,
                principal: principal("local")?,
            },
            time,
            protocol,
            id: self.context_id.to_string(),
            size,
        })
    }

    /// The answer to the check in flight: the decision cache, then its verdict. (How long the
    /// check took is the provider cluster's own `upstream_rq_time`: nothing to measure here.)
    fn answered(
        &mut self,
        host: &dyn Host,
        cache: Option<CacheKey>,
        checks: Checks,
        answer: HostResult<CallAnswer>,
    ) -> HostResult<Next> {
        let answer = answer?;
        let config = Rc::clone(&self.config);
        let Some(provider) = checks
            .list
            .get(checks.next)
            .and_then(|c| config.providers.get(c.provider))
        else {
            return Ok(Next::Reply(LocalReply::internal()));
        };
        let outcome = match (&provider.service, &answer) {
            (Service::Http(http), CallAnswer::Http(response)) => {
                let cacheable = response
                    .as_ref()
                    .filter(|r| self.shared.decisions.accepts(r));
                if let (Some(cache), Some(response)) = (cache, cacheable) {
                    let now = unix_seconds(self.shared.now(host)?);
                    let key = || match cache {
                        CacheKey::Built(key) => key,
                        CacheKey::Later(request) => {
                            crate::ext_authz::cache::key(&provider.cluster, &request)
                        }
                    };
                    if self.shared.decisions.offer(key, response, now) {
                        log::debug!("#{} ext_authz answer is cacheable: kept", self.context_id);
                    }
                }
                interpret(http, response.as_ref())
            }
            (Service::Grpc(_), CallAnswer::Grpc(outcome)) => {
                grpc::interpret(outcome, &self.attributes.headers, &self.request_path)
            }
            _ => {
                log::error!(
                    "#{} answer of the wrong kind for provider {:?}",
                    self.context_id,
                    provider.name
                );
                return Ok(Next::Reply(LocalReply::internal()));
            }
        };
        self.conclude(host, provider, checks, outcome)
    }

    /// Applies a provider's verdict; on allow (or fail open, or a dry run) the next check, or
    /// the local policies when it was the last. A dry-run check only counts and logs.
    fn conclude(
        &mut self,
        host: &dyn Host,
        provider: &Provider,
        mut checks: Checks,
        outcome: CheckResponse,
    ) -> HostResult<Next> {
        let metrics = &self.shared.metrics;
        let check = checks.list.get(checks.next).copied();
        let dry_run = check.is_some_and(|c| c.dry_run);
        if self.config.audit_record {
            let answer = match &outcome {
                CheckResponse::Ok { .. } => Answer::Ok,
                CheckResponse::Denied { .. } => Answer::Denied,
                CheckResponse::Error(_) => Answer::Error,
            };
            self.trail
                .providers
                .push((provider.name.clone(), answer, dry_run));
            if dry_run && answer != Answer::Ok {
                let code = match answer {
                    Answer::Denied => Denial::ExtAuthz.reason(),
                    _ => Denial::ExtAuthzError.reason(),
                };
                self.trail.dry_run.push(code);
            }
        }
        if let Some(check) = check.filter(|c| !c.dry_run) {
            let outcome = match &outcome {
                CheckResponse::Ok { .. } => CheckOutcome::Ok,
                CheckResponse::Denied { .. } => CheckOutcome::Denied,
                CheckResponse::Error(_) => CheckOutcome::Error,
            };
            metrics.provider(check.provider, outcome);
        }
        checks.next += 1;
        if dry_run {
            match &outcome {
                CheckResponse::Ok { .. } => metrics.increment(Metric::ExtAuthzShadowAllowed),
                CheckResponse::Denied { status, .. } => {
                    metrics.increment(Metric::ExtAuthzShadowDenied);
                    log::info!(
                        "#{} dry run: ext_authz provider {:?} would deny with status {status}",
                        self.context_id,
                        provider.name
                    );
                }
                CheckResponse::Error(kind) => {
                    metrics.increment(Metric::ExtAuthzShadowDenied);
                    log::info!(
                        "#{} dry run: ext_authz error ({kind:?}) would deny",
                        self.context_id
                    );
                }
            }
            return Ok(self.ask(host, checks));
        }
        match outcome {
            CheckResponse::Ok {
                upstream,
                downstream,
            } => {
                metrics.increment(Metric::ExtAuthzOk);
                self.apply_to_request(host, &upstream)?;
                checks.downstream.extend(downstream);
                Ok(self.ask(host, checks))
            }
            CheckResponse::Denied {
                status,
                headers,
                body,
            } => {
                metrics.increment(Metric::ExtAuthzDenied);
                log::info!(
                    "#{} denied by ext_authz provider {:?} with status {status}",
                    self.context_id,
                    provider.name
                );
                Ok(Next::Reply(LocalReply {
                    denial: Denial::ExtAuthz,
                    status,
                    headers,
                    body,
                }))
            }
            CheckResponse::Error(kind) => {
                metrics.increment(Metric::ExtAuthzError);
                if provider.fail_open {
                    metrics.increment(Metric::ExtAuthzFailureModeAllowed);
                    log::warn!(
                        "#{} ext_authz error ({kind:?}); failOpen lets the request through",
                        self.context_id
                    );
                    return Ok(self.ask(host, checks));
                }
                log::info!(
                    "#{} denied: ext_authz error ({kind:?}), statusOnError {}",
                    self.context_id,
                    provider.status_on_error
                );
                Ok(Next::Reply(LocalReply::new(
                    Denial::ExtAuthzError,
                    provider.status_on_error,
                    "",
                )))
            }
        }
    }

    /// DENY then ALLOW as `decide` says at `Stage::Checked`; the dry-run verdict is counted and
    /// logged only.
    fn decide_locally(&mut self, downstream: Vec<HeaderMutation>) -> Next {
        let config = Rc::clone(&self.config);
        let Decision::Local(local) = decide(&config.policies, &self.attributes, Stage::Checked)
        else {
            return Next::Reply(LocalReply::internal());
        };
        if config.audit_record {
            self.note_local(&local.enforced, &local.shadow);
        }
        let metrics = &self.shared.metrics;
        match local.shadow {
            None => {}
            Some(Verdict::Allowed { .. }) => metrics.increment(Metric::RbacShadowAllowed),
            Some(Verdict::Denied { policy }) => {
                log::info!("#{} dry run: policy {policy:?} would deny", self.context_id);
                metrics.increment(Metric::RbacShadowDenied);
                metrics.policy_denied(policy, true);
            }
            Some(Verdict::NoAllowMatch) => {
                log::info!("#{} dry run: no ALLOW policy would match", self.context_id);
                metrics.increment(Metric::RbacShadowDenied);
            }
        }
        match local.enforced {
            None => {}
            Some(Verdict::Allowed { .. }) => metrics.increment(Metric::RbacAllowed),
            Some(Verdict::Denied { policy }) => {
                log::info!(
                    "#{} denied by policy {policy:?}: DENY rule matched",
                    self.context_id
                );
                metrics.increment(Metric::RbacDenied);
                metrics.policy_denied(policy, false);
            }
            Some(Verdict::NoAllowMatch) => {
                log::info!("#{} denied: no ALLOW policy matched", self.context_id);
                metrics.increment(Metric::RbacDenied);
            }
        }
        match local.refusal {
            None => Next::Forward(downstream),
            Some(Refusal::Policy(policy)) => Next::Reply(LocalReply::new(
                Denial::Policy(policy.to_string()),
                403,
                RBAC_DENIED_BODY,
            )),
            Some(Refusal::NoAllowMatch) => {
                Next::Reply(LocalReply::new(Denial::NoAllowMatch, 403, RBAC_DENIED_BODY))
            }
            // No token at all: ask for one (RFC 6750), as the ingress tutorial shows.
            Some(Refusal::TokenRequired) => self.jwt_reply(JwtStatus::JwtMissed),
        }
    }

    /// Keeps for the audit record the ALLOW policy that matched and what the dry-run set would
    /// deny for.
    fn note_local(&mut self, enforced: &Option<Verdict>, shadow: &Option<Verdict>) {
        if let Some(Verdict::Allowed {
            policy: Some(policy),
        }) = enforced
        {
            self.trail.allowed_by = Some(policy.to_string());
        }
        match shadow {
            Some(Verdict::Denied { policy }) => self
                .trail
                .dry_run
                .push(Denial::Policy(policy.to_string()).reason()),
            Some(Verdict::NoAllowMatch) => self.trail.dry_run.push(Denial::NoAllowMatch.reason()),
            _ => {}
        }
    }

    fn jwt_reply(&self, status: JwtStatus) -> Next {
        let challenge = www_authenticate(&self.attributes.headers, status);
        Next::Reply(LocalReply {
            denial: Denial::Jwt(status),
            status: status.http_status(),
            headers: vec![("www-authenticate".into(), challenge)],
            body: status.message().as_bytes().to_vec(),
        })
    }

    fn too_large(&self) -> Next {
        log::info!(
            "#{} denied: request body over maxRequestBytes",
            self.context_id
        );
        self.shared.metrics.increment(Metric::RequestTooLarge);
        Next::Reply(LocalReply::new(
            Denial::TooLarge,
            413,
            PAYLOAD_TOO_LARGE_BODY,
        ))
    }

    fn header(&self, name: &str) -> Option<&str> {
        find(&self.attributes.headers, name)
    }

    /// Applies header changes to the request the proxy forwards and to what policies see.
    fn apply_to_request(
        &mut self,
        host: &dyn Host,
        mutations: &[HeaderMutation],
    ) -> HostResult<()> {
        for mutation in mutations {
            match mutation {
                HeaderMutation::Remove { name } if self.header(name).is_none() => continue,
                HeaderMutation::Remove { name } => host.set_request_header(name, None)?,
                HeaderMutation::Set { name, value } => {
                    host.set_request_header(name, Some(value))?;
                    if name == ":path" {
                        self.request_path = value.clone();
                    }
                }
                HeaderMutation::Append { name, value } => host.add_request_header(name, value)?,
            }
        }
        headers::apply(&mut self.attributes.headers, mutations);
        Ok(())
    }

    /// Reads the headers once and normalizes the path (rewriting `:path` when it changed and
    /// anything reads it): the headers and the path policies match. A request no policy can be
    /// asked about gets 400: a path normalization refuses, or two `Host` headers (Envoy joins
    /// them with a comma; RFC 9112 calls that a 400, and a `hosts` rule would otherwise see
    /// neither host).
    #[allow(clippy::type_complexity)]
    fn read_headers(
        &mut self,
        host: &dyn Host,
    ) -> HostResult<Result<(Vec<(String, String)>, String), LocalReply>> {
        let mut headers: Vec<(String, String)> = host
            .request_headers()?
            .into_iter()
            .map(headers::as_text)
            .collect();
        let raw_path = find(&headers, ":path").unwrap_or("/").to_string();
        if is_refused(&raw_path, self.config.path_normalization)
            || find(&headers, ":authority").is_some_and(|a| a.contains(','))
        {
            // As Envoy's own normalize_path: 400, empty body, before any policy.
            log::info!(
                "#{} denied: invalid request (escaped NUL in the path, or more than one host)",
                self.context_id
            );
            // Kept for the reply: a gRPC request still gets its gRPC local reply.
            self.attributes.headers = headers;
            return Ok(Err(LocalReply::new(Denial::InvalidRequest, 400, "")));
        }
        let needs = self.config.needs;
        // Normalized only when a policy or a check request reads the path; otherwise the request
        // goes on with the path it came with (Envoy's own `normalize_path`, if set, still applies).
        let mode = if needs.path {
            self.config.path_normalization
        } else {
            PathNormalization::None
        };
        let normalized = normalize(&raw_path, mode);
        self.request_path = if mode == PathNormalization::None {
            raw_path.clone()
        } else {
            normalized.to_request_path()
        };
        if self.request_path != raw_path {
            log::debug!("#{} path normalized", self.context_id);
            host.set_request_header(":path", Some(&self.request_path))?;
            headers::apply(
                &mut headers,
                &[HeaderMutation::Set {
                    name: ":path".into(),
                    value: self.request_path.clone(),
                }],
            );
        }
        Ok(Ok((headers, normalized.path)))
    }

    /// Reads headers once (when anything reads them), normalizes the path (when anything reads
    /// it) and gathers only the properties the policies use.
    fn read_request(&mut self, host: &dyn Host) -> HostResult<Next> {
        let needs = self.config.needs;
        let (headers, path) = if needs.headers {
            match self.read_headers(host)? {
                Ok(read) => read,
                Err(refused) => return Ok(Next::Reply(refused)),
            }
        } else {
            (Vec::new(), String::new())
        };
        let property = |wanted: bool, path: &[&str]| -> HostResult<Option<Vec<u8>>> {
            if wanted {
                host.property(path)
            } else {
                Ok(None)
            }
        };
        let source_ip = property(needs.source_ip || needs.remote_ip, &["source", "address"])?
            .and_then(|a| parse_ip(&a));
        let destination_ip =
            property(needs.destination_ip, &["destination", "address"])?.and_then(|a| parse_ip(&a));
        let destination_port = property(needs.destination_port, &["destination", "port"])?
            .and_then(|p| parse_port(&p));
        let sni = property(needs.sni, &["connection", "requested_server_name"])?
            .map(|s| String::from_utf8_lossy(&s).into_owned())
            .filter(|s| !s.is_empty());
        let peer_identities = if needs.peer_principal {
            certificate_identities(host, "peer").collect::<HostResult<_>>()?
        } else {
            Vec::new()
        };
        self.attributes = RequestAttributes {
            method: find(&headers, ":method").unwrap_or_default().to_string(),
            path,
            authority: find(&headers, ":authority").unwrap_or_default().to_string(),
            headers,
            source_ip,
            remote_ip: source_ip,
            destination_ip,
            destination_port,
            sni,
            peer_identities,
            auth: None,
        };
        Ok(Next::Forward(Vec::new()))
    }
}

/// The identities of one side's certificate (`peer` or `local`), in the order Envoy tries them
/// (RBAC's `authenticated` matcher, the CheckRequest's principal): URI SAN, DNS SAN, subject;
/// empty ones left out. proxy-wasm gives the first SAN of each kind only. Each is read when the
/// iterator reaches it, so a caller that wants the first reads no more.
fn certificate_identities<'a>(
    host: &'a dyn Host,
    side: &'a str,
) -> impl Iterator<Item = HostResult<String>> + 'a {
    ["uri_san", "dns_san", "subject"]
        .into_iter()
        .filter_map(move |kind| {
            let name = format!("{kind}_{side}_certificate");
            match host.property(&["connection", &name]) {
                Ok(Some(value)) => {
                    let value = String::from_utf8_lossy(&value).into_owned();
                    (!value.is_empty()).then_some(Ok(value))
                }
                Ok(None) => None,
                Err(error) => Some(Err(error)),
            }
        })
}

/// The property the audit record is set under: Envoy keeps it as filter state
/// `wasm.inline_authz.decision`. One segment: a path of two would be joined with a NUL byte.
pub const DECISION_PROPERTY: &str = "inline_authz.decision";

/// The header naming why a local reply was sent (`exposeDenialReason`).
pub const DENIED_BY_HEADER: &str = "x-inline-authz-denied-by";

impl Denial {
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

/// `ip:port` (or `[ip]:port`) as Envoy hands addresses over.
fn parse_socket(bytes: &[u8]) -> Option<(String, u32)> {
    let text = std::str::from_utf8(bytes).ok()?;
    let (ip, port) = text.rsplit_once(':')?;
    let ip = ip.trim_start_matches('[').trim_end_matches(']');
    Some((ip.to_string(), port.parse().ok()?))
}

/// Envoy hands ports over as a little-endian 64-bit integer.
fn parse_port(bytes: &[u8]) -> Option<u16> {
    let raw: [u8; 8] = bytes.get(..8)?.try_into().ok()?;
    u16::try_from(u64::from_le_bytes(raw)).ok()
}

/// What header templates read: the client headers and the downstream address (a failed read
/// is kept, and fails the request once the check request is built).
struct RequestSource<'a> {
    headers: &'a [(String, String)],
    host: &'a dyn Host,
    failed: std::cell::RefCell<Option<HostError>>,
}

impl TemplateSource for RequestSource<'_> {
    fn request_header(&self, name: &str) -> Option<String> {
        find(self.headers, name).map(str::to_string)
    }

    fn remote_address(&self) -> Option<String> {
        match self.host.property(&["source", "address"]) {
            Ok(address) => address.map(|a| String::from_utf8_lossy(&a).into_owned()),
            Err(error) => {
                *self.failed.borrow_mut() = Some(error);
                None
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::string_slice)]
mod tests;
